/*
 * Write tokens (quiver/token.h): a small varint format, checked strictly on
 * decode because a token comes back from a client.
 */
#include "quiver/token.h"

#include <stdio.h>

static uint32_t name_hash(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

/* Returns the bytes read, 0 when the varint is cut short or too long. */
static size_t get_varint(const uint8_t *p, size_t len, uint64_t *v)
{
    *v = 0;
    for (size_t i = 0; i < len && i < 10; i++) {
        *v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
        if (!(p[i] & 0x80)) return i + 1;
    }
    return 0;
}

size_t qv_token_encode(const char *coll, const qv_token_part *parts, size_t n, uint8_t *out)
{
    uint32_t h = name_hash(coll);
    size_t o = 0;
    out[o++] = 'q';
    out[o++] = 1;
    for (int i = 0; i < 4; i++) out[o++] = (uint8_t)(h >> (8 * i));
    o += put_varint(out + o, n);
    for (size_t i = 0; i < n; i++) {
        o += put_varint(out + o, parts[i].shard);
        o += put_varint(out + o, parts[i].seq);
    }
    return o;
}

int qv_token_decode(const char *coll, const uint8_t *tok, size_t len, qv_token_part *parts,
                    size_t max, char *err, size_t errlen)
{
    if (len < 7 || tok[0] != 'q') {
        snprintf(err, errlen, "is not a write token (%zu bytes; pass a write_token as it was returned)",
                 len);
        return -1;
    }
    if (tok[1] != 1) {
        snprintf(err, errlen, "is a write token of format %u; this quiverd reads format 1", tok[1]);
        return -1;
    }
    uint32_t h = 0;
    for (int i = 0; i < 4; i++) h |= (uint32_t)tok[2 + i] << (8 * i);
    if (h != name_hash(coll)) {
        snprintf(err, errlen, "is a write token of another collection, not \"%s\"", coll);
        return -1;
    }
    size_t o = 6, k;
    uint64_t n, shard, seq;
    if (!(k = get_varint(tok + o, len - o, &n)) || n > max || n > QV_TOKEN_MAX_PARTS) goto bad;
    o += k;
    for (uint64_t i = 0; i < n; i++) {
        if (!(k = get_varint(tok + o, len - o, &shard)) || shard > UINT32_MAX) goto bad;
        o += k;
        if (!(k = get_varint(tok + o, len - o, &seq))) goto bad;
        o += k;
        if (i > 0 && shard <= parts[i - 1].shard) goto bad;
        parts[i].shard = (uint32_t)shard;
        parts[i].seq = seq;
    }
    if (o != len) goto bad;
    return (int)n;
bad:
    snprintf(err, errlen, "is a damaged write token (%zu bytes)", len);
    return -1;
}
