/*
 * Strings of an incoming request, checked on the wire before protobuf-c
 * decodes it: valid UTF-8 and no NUL byte (protobuf-c's C strings end at the
 * first one, so a NUL would silently cut the string). The walk follows the
 * message descriptors, so every string field of every message is covered
 * (collection names, attribute keys, string and string-list values...), and
 * the error names the field by its path, e.g.
 *   items[3].attributes["lang"].string_value is not valid UTF-8 (byte 0xff at offset 2)
 * Malformed wire data is left to protobuf-c's decoder to refuse.
 */
#include <stdio.h>
#include <string.h>

#include "wirecheck.h"

#define MAX_DEPTH 32

typedef struct walker {
    char *err;
    size_t errlen;
    char path[512];
} walker;

static int read_varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*pos >= len) return -1;
        uint8_t b = p[(*pos)++];
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

/* Offset of the first byte that breaks UTF-8 (or a NUL), or len if none;
 * *nul says which. Rejects overlong forms, surrogates and code points over
 * U+10FFFF, as protobuf's own runtimes do. */
static size_t utf8_bad(const uint8_t *s, size_t len, int *nul)
{
    size_t i = 0;
    *nul = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c == 0) {
            *nul = 1;
            return i;
        }
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp, min;
        if ((c & 0xe0) == 0xc0) n = 1, cp = c & 0x1f, min = 0x80;
        else if ((c & 0xf0) == 0xe0) n = 2, cp = c & 0x0f, min = 0x800;
        else if ((c & 0xf8) == 0xf0) n = 3, cp = c & 0x07, min = 0x10000;
        else return i;
        if (len - i <= n) return i;
        for (size_t j = 1; j <= n; j++) {
            if ((s[i + j] & 0xc0) != 0x80) return i;
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
        i += n + 1;
    }
    return len;
}

/* A map entry message: fields key (1) and value (2), named so by protoc. */
static int is_map_entry(const ProtobufCMessageDescriptor *d)
{
    return d->n_fields == 2 && strcmp(d->fields[0].name, "key") == 0 &&
           strcmp(d->fields[1].name, "value") == 0 && d->fields[0].id == 1;
}

/* The key of a map entry encoded in p (a string key), for the path. */
static void entry_key(const uint8_t *p, size_t len, char *out, size_t outlen)
{
    size_t pos = 0;
    out[0] = '\0';
    while (pos < len) {
        uint64_t tag, l;
        if (read_varint(p, len, &pos, &tag)) return;
        switch (tag & 7) {
        case 0:
            if (read_varint(p, len, &pos, &l)) return;
            break;
        case 1: pos += 8; break;
        case 5: pos += 4; break;
        case 2:
            if (read_varint(p, len, &pos, &l) || l > len - pos) return;
            if ((tag >> 3) == 1) {
                size_t n = l < outlen - 1 ? (size_t)l : outlen - 1;
                /* printable ASCII only: the key itself may be what is wrong */
                for (size_t i = 0; i < n; i++)
                    out[i] = p[pos + i] >= 0x20 && p[pos + i] < 0x7f ? (char)p[pos + i] : '?';
                out[n] = '\0';
            }
            pos += l;
            break;
        default: return;
        }
    }
}

static int walk(walker *w, const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t len,
                int depth)
{
    if (depth > MAX_DEPTH) return 0; /* protobuf-c refuses it */
    size_t base = strlen(w->path);
    unsigned counts[64] = {0}; /* occurrences of the first 64 fields, for [i] */
    size_t pos = 0;
    while (pos < len) {
        uint64_t tag, l;
        if (read_varint(p, len, &pos, &tag)) return 0;
        switch (tag & 7) {
        case 0:
            if (read_varint(p, len, &pos, &l)) return 0;
            continue;
        case 1:
            if (len - pos < 8) return 0;
            pos += 8;
            continue;
        case 5:
            if (len - pos < 4) return 0;
            pos += 4;
            continue;
        case 2: break;
        default: return 0;
        }
        if (read_varint(p, len, &pos, &l) || l > len - pos) return 0;
        const uint8_t *v = p + pos;
        pos += l;
        const ProtobufCFieldDescriptor *f =
            tag >> 3 <= 0xffffffffu ? protobuf_c_message_descriptor_get_field(d, (unsigned)(tag >> 3))
                                    : NULL;
        if (!f || (f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE))
            continue;
        size_t fi = (size_t)(f - d->fields);
        unsigned idx = fi < 64 ? counts[fi]++ : 0;
        /* the path of this field: .name, [i] when repeated, ["key"] for map entries */
        const char *dot = base ? "." : "";
        if (f->type == PROTOBUF_C_TYPE_MESSAGE && f->label == PROTOBUF_C_LABEL_REPEATED &&
            is_map_entry(f->descriptor)) {
            char key[48];
            entry_key(v, (size_t)l, key, sizeof key);
            snprintf(w->path + base, sizeof w->path - base, "%s%s[\"%s\"]", dot, f->name, key);
        } else if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            snprintf(w->path + base, sizeof w->path - base, "%s%s[%u]", dot, f->name, idx);
        } else {
            snprintf(w->path + base, sizeof w->path - base, "%s%s", dot, f->name);
        }
        if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
            const ProtobufCMessageDescriptor *sd = f->descriptor;
            /* inside a map entry, name the value by the entry, not ".value" */
            if (is_map_entry(d) && f->id == 2) w->path[base] = '\0';
            if (walk(w, sd, v, (size_t)l, depth + 1)) return -1;
        } else {
            int nul;
            size_t bad = utf8_bad(v, (size_t)l, &nul);
            if (bad < l) {
                if (nul)
                    snprintf(w->err, w->errlen,
                             "%s holds a NUL byte at offset %zu (strings cannot hold U+0000)",
                             w->path, bad);
                else
                    snprintf(w->err, w->errlen,
                             "%s is not valid UTF-8 (byte 0x%02x at offset %zu)", w->path, v[bad],
                             bad);
                return -1;
            }
        }
        w->path[base] = '\0';
    }
    return 0;
}

int wire_check_strings(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len,
                       char *err, size_t errlen)
{
    walker w = {.err = err, .errlen = errlen};
    w.path[0] = '\0';
    return walk(&w, d, buf, len, 0);
}
