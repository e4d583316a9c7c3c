/*
 * Log entries (cluster/entry.h): a flat little-endian layout, checked on
 * decode as strictly as a request from the network, since a damaged entry
 * must stop a replica rather than write garbage.
 */
#include "entry.h"

#include <stdlib.h>
#include <string.h>

#include "quiver/error.h"

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static size_t attr_bytes(const qc_entry *w, uint32_t from, uint32_t to)
{
    return w->attr_off ? w->attr_off[to] - w->attr_off[from] : 0;
}

size_t qc_entry_size(const qc_entry *w, uint32_t from, uint32_t to)
{
    size_t n = to - from, s = QC_ENTRY_HEADER + n * 8;
    if (w->kind == QC_ENTRY_UPSERT) s += n * w->dim * 4 + (n + 1) * 4 + attr_bytes(w, from, to);
    return s;
}

uint32_t qc_entry_split(const qc_entry *w, uint32_t from, size_t max)
{
    /* sizes grow with each item: extend while the next one still fits */
    uint32_t to = from + 1;
    while (to < w->n && qc_entry_size(w, from, to + 1) <= max) to++;
    return to;
}

size_t qc_entry_encode(const qc_entry *w, uint32_t from, uint32_t to, uint8_t *out)
{
    uint32_t n = to - from, dim = w->kind == QC_ENTRY_UPSERT ? w->dim : 0;
    uint8_t *p = out;
    *p++ = 'Q';
    *p++ = 'E';
    *p++ = 1;
    *p++ = (uint8_t)w->kind;
    put32(p, n);
    put32(p + 4, dim);
    p += 8;
    for (uint32_t i = from; i < to; i++, p += 8) {
        uint64_t id = w->ids[i];
        for (int b = 0; b < 8; b++) p[b] = (uint8_t)(id >> (8 * b));
    }
    if (w->kind == QC_ENTRY_UPSERT) {
        /* floats as their bits, little-endian like everything else */
        for (size_t i = (size_t)from * dim; i < (size_t)to * dim; i++, p += 4) {
            uint32_t bits;
            memcpy(&bits, &w->vecs[i], 4);
            put32(p, bits);
        }
        size_t base = w->attr_off ? w->attr_off[from] : 0;
        for (uint32_t i = from; i <= to; i++, p += 4)
            put32(p, (uint32_t)(w->attr_off ? w->attr_off[i] - base : 0));
        size_t ab = attr_bytes(w, from, to);
        if (ab) memcpy(p, w->attrs + base, ab);
        p += ab;
    }
    return (size_t)(p - out);
}

int qc_entry_decode(const void *buf, size_t len, qc_entry *out, void **mem)
{
    const uint8_t *p = buf;
    *mem = NULL;
    memset(out, 0, sizeof *out);
    if (len < QC_ENTRY_HEADER || p[0] != 'Q' || p[1] != 'E') return QV_CORRUPT;
    if (p[2] != 1) return QV_VERSION;
    if (p[3] != QC_ENTRY_UPSERT && p[3] != QC_ENTRY_DELETE) return QV_CORRUPT;
    uint32_t n = get32(p + 4), dim = get32(p + 8);
    int up = p[3] == QC_ENTRY_UPSERT;
    if (n == 0 || (up && (dim == 0 || dim > 65536)) || (!up && dim != 0)) return QV_CORRUPT;
    /* sizes in 64 bits: n and dim come from the entry */
    uint64_t need = QC_ENTRY_HEADER + (uint64_t)n * 8;
    if (up) need += (uint64_t)n * dim * 4 + ((uint64_t)n + 1) * 4;
    if (need > len) return QV_CORRUPT;
    size_t block = (size_t)n * 8 + (up ? (size_t)n * dim * 4 + ((size_t)n + 1) * sizeof(size_t) : 0);
    uint8_t *m = malloc(block);
    if (!m) return QV_NOMEM;
    uint64_t *ids = (uint64_t *)(void *)m;
    const uint8_t *q = p + QC_ENTRY_HEADER;
    for (uint32_t i = 0; i < n; i++, q += 8) {
        uint64_t id = 0;
        for (int b = 0; b < 8; b++) id |= (uint64_t)q[b] << (8 * b);
        ids[i] = id;
    }
    out->kind = (qc_entry_kind)p[3];
    out->n = n;
    out->dim = dim;
    out->ids = ids;
    if (up) {
        /* the block: ids, offsets (8-byte aligned after the ids), vectors */
        size_t *off = (size_t *)(void *)(m + (size_t)n * 8);
        float *vecs = (float *)(void *)(m + (size_t)n * 8 + ((size_t)n + 1) * sizeof(size_t));
        for (size_t i = 0; i < (size_t)n * dim; i++, q += 4) {
            uint32_t bits = get32(q);
            memcpy(&vecs[i], &bits, 4);
        }
        for (uint32_t i = 0; i <= n; i++, q += 4) off[i] = get32(q);
        size_t attrs_len = len - (size_t)(q - p);
        /* offsets start at 0, never go down, and end exactly at the end */
        int ok = off[0] == 0 && off[n] == attrs_len;
        for (uint32_t i = 0; ok && i < n; i++) ok = off[i] <= off[i + 1];
        if (!ok) {
            free(m);
            return QV_CORRUPT;
        }
        out->vecs = vecs;
        out->attr_off = off;
        out->attrs = q;
    } else if (need != len) {
        free(m);
        return QV_CORRUPT;
    }
    *mem = m;
    return 0;
}
