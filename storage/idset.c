/*
 * Id sets (include/quiver/idset.h): a sorted array of (high 32 bits, 32-bit
 * roaring bitmap of the low bits). Ids of one collection are usually below
 * 2^32, so most sets hold one bitmap and every operation is CRoaring's.
 */
#include <stdlib.h>
#include <string.h>

#include <roaring/roaring.h>

#include "quiver/error.h"
#include "idset.h"

typedef struct part {
    uint32_t high;
    roaring_bitmap_t *bm;
} part;

struct qv_idset {
    part *p;
    size_t n, cap;
};

qv_idset *qv_idset_new(void) { return calloc(1, sizeof(qv_idset)); }

void qv_idset_free(qv_idset *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->n; i++) roaring_bitmap_free(s->p[i].bm);
    free(s->p);
    free(s);
}

/* Index of the part for high, or where it would go (*found 0). */
static size_t find(const qv_idset *s, uint32_t high, int *found)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (s->p[mid].high < high) lo = mid + 1;
        else hi = mid;
    }
    *found = lo < s->n && s->p[lo].high == high;
    return lo;
}

/* The part for high, created empty if missing (bm NULL: take it as is). */
static part *get_part(qv_idset *s, uint32_t high, roaring_bitmap_t *bm)
{
    int found;
    size_t i = find(s, high, &found);
    if (found) return &s->p[i];
    if (s->n == s->cap) {
        size_t nc = s->cap ? 2 * s->cap : 2;
        part *np = realloc(s->p, nc * sizeof *np);
        if (!np) return NULL;
        s->p = np;
        s->cap = nc;
    }
    if (!bm && !(bm = roaring_bitmap_create())) return NULL;
    memmove(&s->p[i + 1], &s->p[i], (s->n - i) * sizeof *s->p);
    s->p[i].high = high;
    s->p[i].bm = bm;
    s->n++;
    return &s->p[i];
}

static void drop_empty(qv_idset *s)
{
    size_t o = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (roaring_bitmap_is_empty(s->p[i].bm)) roaring_bitmap_free(s->p[i].bm);
        else s->p[o++] = s->p[i];
    }
    s->n = o;
}

qv_idset *qv_idset_copy(const qv_idset *s)
{
    qv_idset *c = qv_idset_new();
    if (!c) return NULL;
    if (qv_idset_or(c, s)) {
        qv_idset_free(c);
        return NULL;
    }
    return c;
}

int qv_idset_add(qv_idset *s, uint64_t id)
{
    part *p = get_part(s, (uint32_t)(id >> 32), NULL);
    if (!p) return QV_NOMEM;
    roaring_bitmap_add(p->bm, (uint32_t)id);
    return 0;
}

int qv_idset_add_many(qv_idset *s, const uint64_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (qv_idset_add(s, ids[i])) return QV_NOMEM;
    return 0;
}

void qv_idset_remove(qv_idset *s, uint64_t id)
{
    int found;
    size_t i = find(s, (uint32_t)(id >> 32), &found);
    if (found) roaring_bitmap_remove(s->p[i].bm, (uint32_t)id);
}

int qv_idset_contains(const qv_idset *s, uint64_t id)
{
    int found;
    size_t i = find(s, (uint32_t)(id >> 32), &found);
    return found && roaring_bitmap_contains(s->p[i].bm, (uint32_t)id);
}

uint64_t qv_idset_count(const qv_idset *s)
{
    uint64_t n = 0;
    for (size_t i = 0; i < s->n; i++) n += roaring_bitmap_get_cardinality(s->p[i].bm);
    return n;
}

uint64_t qv_idset_max(const qv_idset *s)
{
    for (size_t i = s->n; i > 0; i--)
        if (!roaring_bitmap_is_empty(s->p[i - 1].bm))
            return (uint64_t)s->p[i - 1].high << 32 | roaring_bitmap_maximum(s->p[i - 1].bm);
    return 0;
}

int qv_idset_or(qv_idset *s, const qv_idset *o)
{
    for (size_t i = 0; i < o->n; i++) {
        int found;
        size_t j = find(s, o->p[i].high, &found);
        if (found) {
            roaring_bitmap_or_inplace(s->p[j].bm, o->p[i].bm);
        } else {
            roaring_bitmap_t *c = roaring_bitmap_copy(o->p[i].bm);
            if (!c || !get_part(s, o->p[i].high, c)) {
                roaring_bitmap_free(c);
                return QV_NOMEM;
            }
        }
    }
    return 0;
}

int qv_idset_and(qv_idset *s, const qv_idset *o)
{
    for (size_t i = 0; i < s->n; i++) {
        int found;
        size_t j = find(o, s->p[i].high, &found);
        if (found) roaring_bitmap_and_inplace(s->p[i].bm, o->p[j].bm);
        else roaring_bitmap_clear(s->p[i].bm);
    }
    drop_empty(s);
    return 0;
}

int qv_idset_andnot(qv_idset *s, const qv_idset *o)
{
    for (size_t i = 0; i < s->n; i++) {
        int found;
        size_t j = find(o, s->p[i].high, &found);
        if (found) roaring_bitmap_andnot_inplace(s->p[i].bm, o->p[j].bm);
    }
    drop_empty(s);
    return 0;
}

int qv_idset_or_portable(qv_idset *s, uint32_t high, const void *buf, size_t len)
{
    roaring_bitmap_t *b = roaring_bitmap_portable_deserialize_safe(buf, len);
    if (!b) return QV_CORRUPT;
    int found;
    size_t i = find(s, high, &found);
    if (found) {
        roaring_bitmap_or_inplace(s->p[i].bm, b);
        roaring_bitmap_free(b);
        return 0;
    }
    if (!get_part(s, high, b)) {
        roaring_bitmap_free(b);
        return QV_NOMEM;
    }
    return 0;
}

typedef struct arr_ctx {
    uint64_t *out, high;
} arr_ctx;

static bool arr_cb(uint32_t v, void *ctx)
{
    arr_ctx *a = ctx;
    *a->out++ = a->high | v;
    return true;
}

void qv_idset_to_array(const qv_idset *s, uint64_t *out)
{
    arr_ctx a = {out, 0};
    for (size_t i = 0; i < s->n; i++) {
        a.high = (uint64_t)s->p[i].high << 32;
        roaring_iterate(s->p[i].bm, arr_cb, &a);
    }
}

typedef struct bit_ctx {
    uint8_t *out;
    uint64_t high, nbits;
} bit_ctx;

static bool bit_cb(uint32_t v, void *ctx)
{
    bit_ctx *b = ctx;
    uint64_t id = b->high | v;
    if (id >= b->nbits) return false; /* ascending: nothing further fits */
    b->out[id >> 3] |= (uint8_t)(1u << (id & 7));
    return true;
}

void qv_idset_to_bitmap(const qv_idset *s, uint8_t *out, uint64_t nbits)
{
    bit_ctx b = {out, 0, nbits};
    for (size_t i = 0; i < s->n; i++) {
        b.high = (uint64_t)s->p[i].high << 32;
        if (b.high >= nbits) break;
        roaring_iterate(s->p[i].bm, bit_cb, &b);
    }
}
