/*
 * Hand-written protobuf encoder of SearchResponse (see wire.h). Field
 * numbers follow proto/quiver/v1/quiver.proto; tests compare its output with
 * what protobuf-c and Python decode.
 */
#include <string.h>

#include "quiver/codec.h"
#include "wire.h"

/* wire types */
#define VARINT 0
#define FIXED64 1
#define LEN 2
#define FIXED32 5
#define TAG(field, type) ((uint8_t)(((field) << 3) | (type)))

static size_t vsize(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

static size_t len_field(size_t len) { return 1 + vsize(len) + len; }

/* StringList message body: repeated string values = 1. */
static size_t list_size(const qv_attr *a)
{
    size_t n = 0, l;
    const char *s;
    qv_attr copy = *a;
    while (qv_attr_list_next(&copy, &s, &l) == 1) n += len_field(l);
    return n;
}

/* Value message body of one attribute. */
static size_t value_size(qv_attr *a)
{
    switch (a->type) {
    case QV_ATTR_STRING: return len_field(a->str_len);
    case QV_ATTR_INT: return 1 + vsize((uint64_t)a->i);
    case QV_ATTR_DOUBLE: return 1 + 8;
    case QV_ATTR_BOOL: return 1 + 1;
    case QV_ATTR_STRING_LIST: return len_field(list_size(a));
    }
    return 0;
}

static size_t entry_size(qv_attr *a) { return len_field(a->key_len) + len_field(value_size(a)); }

/* map<string, Value> attributes = 3 of a Hit: the entries' total size. */
static size_t attrs_size(const uint8_t *blob, size_t len)
{
    qv_attr_iter it;
    qv_attr a;
    size_t n = 0;
    if (!len || qv_attr_iter_init(&it, blob, len)) return 0;
    while (qv_attr_next(&it, &a) == 1) n += len_field(entry_size(&a));
    return n;
}

static uint8_t *put_bytes(uint8_t *p, uint8_t tag, const void *s, size_t len)
{
    *p++ = tag;
    p = put_varint(p, len);
    memcpy(p, s, len);
    return p + len;
}

static uint8_t *put_attrs(uint8_t *p, const uint8_t *blob, size_t len)
{
    qv_attr_iter it;
    qv_attr a;
    if (!len || qv_attr_iter_init(&it, blob, len)) return p;
    while (qv_attr_next(&it, &a) == 1) {
        size_t vs = value_size(&a);
        *p++ = TAG(3, LEN); /* Hit.attributes entry */
        p = put_varint(p, len_field(a.key_len) + len_field(vs));
        p = put_bytes(p, TAG(1, LEN), a.key, a.key_len); /* entry.key */
        *p++ = TAG(2, LEN);                               /* entry.value */
        p = put_varint(p, vs);
        switch (a.type) {
        case QV_ATTR_STRING: p = put_bytes(p, TAG(1, LEN), a.str, a.str_len); break;
        case QV_ATTR_INT:
            *p++ = TAG(2, VARINT);
            p = put_varint(p, (uint64_t)a.i);
            break;
        case QV_ATTR_DOUBLE: {
            uint64_t u;
            memcpy(&u, &a.d, 8);
            *p++ = TAG(3, FIXED64);
            qv_put_le64(p, u);
            p += 8;
            break;
        }
        case QV_ATTR_BOOL:
            *p++ = TAG(4, VARINT);
            *p++ = a.b ? 1 : 0;
            break;
        case QV_ATTR_STRING_LIST: {
            const char *str;
            size_t l;
            *p++ = TAG(5, LEN);
            p = put_varint(p, list_size(&a));
            while (qv_attr_list_next(&a, &str, &l) == 1) p = put_bytes(p, TAG(1, LEN), str, l);
            break;
        }
        }
    }
    return p;
}

/* Vector message body: repeated float values = 1, packed. */
static size_t vector_size(const wire_hit *h) { return len_field((size_t)h->dim * 4); }

/* Hit body: id = 1, score = 2, attributes = 3, vector = 4 (cached in
 * h->size). */
static size_t hit_size(wire_hit *h)
{
    return h->size = 1 + vsize(h->id) + 1 + 4 + attrs_size(h->attrs, h->attrs_len) +
                     (h->vector ? len_field(vector_size(h)) : 0);
}

static size_t hits_size(const wire_hit *hits, size_t n)
{
    size_t s = 0;
    for (size_t i = 0; i < n; i++) s += len_field(hits[i].size);
    return s;
}

size_t wire_search_response_size(wire_hit *hits, const size_t *off, size_t nq)
{
    size_t s = 0;
    for (size_t i = 0; i < off[nq]; i++) hit_size(&hits[i]);
    for (size_t q = 0; q < nq; q++) s += len_field(hits_size(hits + off[q], off[q + 1] - off[q]));
    return s;
}

/* The body of a Hits message: its n hits. Returns the end. */
static uint8_t *put_hits(uint8_t *p, const wire_hit *hits, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        *p++ = TAG(1, LEN); /* Hits.hits */
        p = put_varint(p, hits[i].size);
        *p++ = TAG(1, VARINT);
        p = put_varint(p, hits[i].id);
        uint32_t u;
        memcpy(&u, &hits[i].score, 4);
        *p++ = TAG(2, FIXED32);
        qv_put_le32(p, u);
        p += 4;
        p = put_attrs(p, hits[i].attrs, hits[i].attrs_len);
        if (hits[i].vector) {
            *p++ = TAG(4, LEN); /* Hit.vector */
            p = put_varint(p, vector_size(&hits[i]));
            *p++ = TAG(1, LEN); /* Vector.values, packed */
            p = put_varint(p, (size_t)hits[i].dim * 4);
            for (uint32_t d = 0; d < hits[i].dim; d++) {
                memcpy(&u, &hits[i].vector[d], 4);
                qv_put_le32(p, u);
                p += 4;
            }
        }
    }
    return p;
}

void wire_search_response(uint8_t *p, const wire_hit *hits, const size_t *off, size_t nq)
{
    for (size_t q = 0; q < nq; q++) {
        const wire_hit *hq = hits + off[q];
        size_t n = off[q + 1] - off[q];
        *p++ = TAG(1, LEN); /* SearchResponse.results */
        p = put_varint(p, hits_size(hq, n));
        p = put_hits(p, hq, n);
    }
}

size_t wire_hits_size(wire_hit *hits, size_t n)
{
    for (size_t i = 0; i < n; i++) hit_size(&hits[i]);
    return hits_size(hits, n);
}

void wire_hits(uint8_t *p, const wire_hit *hits, size_t n) { put_hits(p, hits, n); }
