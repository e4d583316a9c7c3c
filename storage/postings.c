/*
 * Attribute posting lists in LMDB (include/quiver/postings.h): key encoding,
 * the pending list of a write transaction and its flush, and lookups.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <roaring/roaring.h>

#include "quiver/codec.h"
#include "quiver/error.h"
#include "postings.h"
#include "lmdb_err.h"

#define K_ALL 0x00
#define K_TYPE 0x01
#define K_VALUE 0x02
#define CHUNK_BITS 16
/* coll, kind, keylen, key, vtype, u16 len, string */
#define MAX_PREFIX (4 + 1 + 2 + QV_MAX_ATTR_KEY + 1 + 2 + QV_POST_MAX_STR)

/* A pending change: the posting list with prefix keys[koff..koff+klen) gains
 * (add) or loses id. seq keeps the order of changes to one list. */
typedef struct pdelta {
    uint32_t koff;
    uint16_t klen;
    uint8_t add;
    uint64_t id, seq;
} pdelta;

struct qv_postings {
    qv_buf keys;
    pdelta *d;
    size_t n, cap;
    uint64_t seq;
};

int qv_postings_new(qv_postings **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? 0 : QV_NOMEM;
}

void qv_postings_free(qv_postings *p)
{
    if (!p) return;
    qv_buf_free(&p->keys);
    free(p->d);
    free(p);
}

size_t qv_postings_mark(const qv_postings *p) { return p->n; }

void qv_postings_rollback(qv_postings *p, size_t mark)
{
    if (mark >= p->n) return;
    p->n = mark;
    p->keys.len = mark ? p->d[mark - 1].koff + p->d[mark - 1].klen : 0;
}

size_t qv_postings_pending(const qv_postings *p) { return p->n; }

/* ------------------------------------------------------------ key encoding */
static void be16(uint8_t *o, uint16_t v) { o[0] = (uint8_t)(v >> 8), o[1] = (uint8_t)v; }
static void be32(uint8_t *o, uint32_t v)
{
    for (int i = 0; i < 4; i++) o[i] = (uint8_t)(v >> (24 - 8 * i));
}
static void be64(uint8_t *o, uint64_t v)
{
    for (int i = 0; i < 8; i++) o[i] = (uint8_t)(v >> (56 - 8 * i));
}
static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | p[i];
    return v;
}

static uint64_t enc_int(int64_t v) { return (uint64_t)v ^ ((uint64_t)1 << 63); }
static uint64_t enc_double(double d)
{
    if (d == 0) d = 0; /* -0.0 and 0.0 are one value */
    uint64_t b;
    memcpy(&b, &d, 8);
    return b >> 63 ? ~b : b | ((uint64_t)1 << 63);
}

static uint64_t fnv64(const void *p, size_t n)
{
    const uint8_t *s = p;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ULL;
    return h;
}

/* prefix u32 coll, kind, u16 keylen, key; returns its length */
static size_t key_head(uint8_t *o, uint32_t coll, int kind, const char *key, size_t klen)
{
    be32(o, coll);
    o[4] = (uint8_t)kind;
    be16(o + 5, (uint16_t)klen);
    memcpy(o + 7, key, klen);
    return 7 + klen;
}

static size_t key_string(uint8_t *o, uint32_t coll, const char *key, size_t klen, const char *s,
                         size_t slen, int *hashed)
{
    size_t n = key_head(o, coll, K_VALUE, key, klen);
    if (slen <= QV_POST_MAX_STR) {
        o[n++] = 's';
        be16(o + n, (uint16_t)slen);
        memcpy(o + n + 2, s, slen);
        *hashed = 0;
        return n + 2 + slen;
    }
    o[n++] = 'h';
    memcpy(o + n, s, 24);
    be64(o + n + 24, fnv64(s, slen));
    *hashed = 1;
    return n + 32;
}

static size_t key_num(uint8_t *o, uint32_t coll, const char *key, size_t klen, char vt,
                      uint64_t enc)
{
    size_t n = key_head(o, coll, K_VALUE, key, klen);
    o[n++] = (uint8_t)vt;
    be64(o + n, enc);
    return n + 8;
}

/* --------------------------------------------------------- item changes */
/* The prefixes of one item's posting lists, in one buffer. */
typedef struct plist {
    qv_buf buf;
    size_t *off; /* n + 1 */
    size_t n, cap;
} plist;

static int pl_add(plist *l, const uint8_t *k, size_t n)
{
    if (l->n + 2 > l->cap) {
        size_t nc = l->cap ? 2 * l->cap : 16;
        size_t *no = realloc(l->off, nc * sizeof *no);
        if (!no) return QV_NOMEM;
        l->off = no;
        l->cap = nc;
    }
    if (l->n == 0) l->off[0] = 0;
    if (qv_buf_append(&l->buf, k, n)) return QV_NOMEM;
    l->off[++l->n] = l->buf.len;
    return 0;
}

static int item_prefixes(plist *l, uint32_t coll, const void *blob, size_t len)
{
    uint8_t k[MAX_PREFIX];
    be32(k, coll);
    k[4] = K_ALL;
    int rc = pl_add(l, k, 5);
    qv_attr_iter it;
    if (rc || (rc = qv_attr_iter_init(&it, blob, len))) return rc;
    qv_attr a;
    int hashed;
    while ((rc = qv_attr_next(&it, &a)) == 1) {
        if (a.key_len > QV_MAX_ATTR_KEY) return QV_CORRUPT;
        size_t n = key_head(k, coll, K_TYPE, a.key, a.key_len);
        k[n] = (uint8_t)a.type;
        if ((rc = pl_add(l, k, n + 1))) return rc;
        switch (a.type) {
        case QV_ATTR_STRING:
            n = key_string(k, coll, a.key, a.key_len, a.str, a.str_len, &hashed);
            break;
        case QV_ATTR_INT: n = key_num(k, coll, a.key, a.key_len, 'i', enc_int(a.i)); break;
        case QV_ATTR_DOUBLE:
            if (isnan(a.d)) continue; /* NaN matches no test */
            n = key_num(k, coll, a.key, a.key_len, 'd', enc_double(a.d));
            break;
        case QV_ATTR_BOOL:
            n = key_head(k, coll, K_VALUE, a.key, a.key_len);
            k[n++] = 'b';
            k[n++] = a.b ? 1 : 0;
            break;
        case QV_ATTR_STRING_LIST: {
            const char *s;
            size_t sl;
            int r;
            while ((r = qv_attr_list_next(&a, &s, &sl)) == 1) {
                n = key_string(k, coll, a.key, a.key_len, s, sl, &hashed);
                if ((rc = pl_add(l, k, n))) return rc;
            }
            if (r < 0) return r;
            continue;
        }
        default: continue;
        }
        if ((rc = pl_add(l, k, n))) return rc;
    }
    return rc < 0 ? rc : 0;
}

static int cmp_bytes(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    return c ? c : (an > bn) - (an < bn);
}

static int cmp_pl(const void *x, const void *y, void *ctx)
{
    const plist *l = ctx;
    size_t i = *(const size_t *)x, j = *(const size_t *)y;
    return cmp_bytes(l->buf.data + l->off[i], l->off[i + 1] - l->off[i], l->buf.data + l->off[j],
                     l->off[j + 1] - l->off[j]);
}

/* indexes of l's prefixes in sorted order, duplicates removed ([out] n) */
static size_t *pl_sorted(const plist *l, size_t *n)
{
    size_t *ix = malloc((l->n ? l->n : 1) * sizeof *ix);
    if (!ix) return NULL;
    for (size_t i = 0; i < l->n; i++) ix[i] = i;
    qsort_r(ix, l->n, sizeof *ix, cmp_pl, (void *)l);
    size_t o = 0;
    for (size_t i = 0; i < l->n; i++)
        if (o == 0 || cmp_pl(&ix[o - 1], &ix[i], (void *)l) != 0) ix[o++] = ix[i];
    *n = o;
    return ix;
}

static int push(qv_postings *p, const uint8_t *k, size_t kn, uint64_t id, int add)
{
    if (p->n == p->cap) {
        size_t nc = p->cap ? 2 * p->cap : 1024;
        pdelta *nd = realloc(p->d, nc * sizeof *nd);
        if (!nd) return QV_NOMEM;
        p->d = nd;
        p->cap = nc;
    }
    if (p->keys.len > UINT32_MAX - kn) return QV_NOMEM;
    pdelta *d = &p->d[p->n];
    d->koff = (uint32_t)p->keys.len;
    d->klen = (uint16_t)kn;
    d->add = (uint8_t)add;
    d->id = id;
    d->seq = p->seq++;
    if (qv_buf_append(&p->keys, k, kn)) return QV_NOMEM;
    p->n++;
    return 0;
}

int qv_postings_item(qv_postings *p, uint32_t coll, uint64_t id, int old_exists,
                     const void *old_attrs, size_t old_len, int new_exists, const void *new_attrs,
                     size_t new_len)
{
    /* the common cases without building lists: unchanged attributes, and a
     * new item without any */
    if (old_exists && new_exists && old_len == new_len &&
        (old_len == 0 || memcmp(old_attrs, new_attrs, old_len) == 0))
        return 0;
    if (old_exists == !new_exists && (old_exists ? old_len : new_len) == 0) {
        uint8_t k[5];
        be32(k, coll);
        k[4] = K_ALL;
        return push(p, k, 5, id, new_exists);
    }
    plist o = {0}, n = {0};
    size_t *oi = NULL, *ni = NULL, on = 0, nn = 0;
    int rc = 0;
    if (old_exists) rc = item_prefixes(&o, coll, old_attrs, old_len);
    if (!rc && new_exists) rc = item_prefixes(&n, coll, new_attrs, new_len);
    if (!rc && (!(oi = pl_sorted(&o, &on)) || !(ni = pl_sorted(&n, &nn)))) rc = QV_NOMEM;
    /* merge: in old only -> remove, in new only -> add */
    size_t i = 0, j = 0;
    while (!rc && (i < on || j < nn)) {
        int c;
        if (i == on) c = 1;
        else if (j == nn) c = -1;
        else
            c = cmp_bytes(o.buf.data + o.off[oi[i]], o.off[oi[i] + 1] - o.off[oi[i]],
                          n.buf.data + n.off[ni[j]], n.off[ni[j] + 1] - n.off[ni[j]]);
        if (c < 0) {
            rc = push(p, o.buf.data + o.off[oi[i]], o.off[oi[i] + 1] - o.off[oi[i]], id, 0);
            i++;
        } else if (c > 0) {
            rc = push(p, n.buf.data + n.off[ni[j]], n.off[ni[j] + 1] - n.off[ni[j]], id, 1);
            j++;
        } else {
            i++;
            j++;
        }
    }
    free(oi);
    free(ni);
    qv_buf_free(&o.buf);
    qv_buf_free(&n.buf);
    free(o.off);
    free(n.off);
    return rc;
}

/* ------------------------------------------------------------------ flush */
static int cmp_delta(const void *x, const void *y, void *ctx)
{
    const qv_postings *p = ctx;
    const pdelta *a = x, *b = y;
    int c = cmp_bytes(p->keys.data + a->koff, a->klen, p->keys.data + b->koff, b->klen);
    if (c) return c;
    uint64_t ca = a->id >> CHUNK_BITS, cb = b->id >> CHUNK_BITS;
    if (ca != cb) return ca < cb ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static int same_chunk(const qv_postings *p, const pdelta *a, const pdelta *b)
{
    return a->klen == b->klen && (a->id >> CHUNK_BITS) == (b->id >> CHUNK_BITS) &&
           memcmp(p->keys.data + a->koff, p->keys.data + b->koff, a->klen) == 0;
}

int qv_postings_flush(qv_postings *p, MDB_txn *txn, MDB_dbi dbi, MDB_dbi stats)
{
    qsort_r(p->d, p->n, sizeof *p->d, cmp_delta, p);
    int rc = 0;
    uint8_t k[MAX_PREFIX + 8];
    uint8_t coll[4] = {0};
    int have_coll = 0, coll_alive = 0;
    for (size_t i = 0; i < p->n && !rc;) {
        size_t j = i + 1;
        while (j < p->n && same_chunk(p, &p->d[i], &p->d[j])) j++;
        /* sorted by key: one collection after another */
        const uint8_t *kc = p->keys.data + p->d[i].koff;
        if (!have_coll || memcmp(kc, coll, 4) != 0) {
            memcpy(coll, kc, 4);
            have_coll = 1;
            MDB_val sk = {4, coll}, sv;
            int g = mdb_get(txn, stats, &sk, &sv);
            if (g && g != MDB_NOTFOUND) {
                rc = qv_store_err(g, "stats get");
                break;
            }
            coll_alive = g == 0;
        }
        if (!coll_alive) {
            i = j;
            continue;
        }
        memcpy(k, p->keys.data + p->d[i].koff, p->d[i].klen);
        be64(k + p->d[i].klen, p->d[i].id >> CHUNK_BITS);
        MDB_val kv = {p->d[i].klen + 8u, k}, v;
        roaring_bitmap_t *bm = NULL;
        int g = mdb_get(txn, dbi, &kv, &v);
        if (g == 0) {
            if (!(bm = roaring_bitmap_portable_deserialize_safe(v.mv_data, v.mv_size))) {
                rc = QV_CORRUPT;
                break;
            }
        } else if (g != MDB_NOTFOUND) {
            rc = qv_store_err(g, "postings get");
            break;
        } else if (!(bm = roaring_bitmap_create())) {
            rc = QV_NOMEM;
            break;
        }
        for (size_t t = i; t < j; t++) {
            if (p->d[t].add) roaring_bitmap_add(bm, (uint32_t)p->d[t].id);
            else roaring_bitmap_remove(bm, (uint32_t)p->d[t].id);
        }
        if (roaring_bitmap_is_empty(bm)) {
            if (g == 0 && (g = mdb_del(txn, dbi, &kv, NULL))) rc = qv_store_err(g, "postings del");
        } else {
            roaring_bitmap_run_optimize(bm);
            v.mv_size = roaring_bitmap_portable_size_in_bytes(bm);
            v.mv_data = NULL;
            if ((g = mdb_put(txn, dbi, &kv, &v, MDB_RESERVE))) rc = qv_store_err(g, "postings put");
            else roaring_bitmap_portable_serialize(bm, v.mv_data);
        }
        roaring_bitmap_free(bm);
        i = j;
    }
    p->n = 0;
    p->keys.len = 0;
    return rc;
}

/* --------------------------------------------------------------- lookups */
/* OR every chunk of keys prefix .. (with 8-byte value bounds lo..hi right
 * after the prefix when ranged) into out. */
static int scan(MDB_txn *txn, MDB_dbi dbi, const uint8_t *prefix, size_t plen, int ranged,
                uint64_t lo, uint64_t hi, qv_idset *out)
{
    if (ranged && lo > hi) return 0;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc) return qv_store_err(rc, "cursor");
    uint8_t k[MAX_PREFIX + 16];
    memcpy(k, prefix, plen);
    size_t start = plen;
    if (ranged) be64(k + plen, lo), start += 8;
    MDB_val kv = {start, k}, v;
    int ret = 0;
    size_t want = plen + (ranged ? 8 : 0) + 8;
    for (rc = mdb_cursor_get(cur, &kv, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &kv, &v, MDB_NEXT)) {
        const uint8_t *kb = kv.mv_data;
        if (kv.mv_size < plen || memcmp(kb, prefix, plen) != 0) break;
        if (kv.mv_size != want) continue;
        if (ranged && get_be64(kb + plen) > hi) break;
        uint64_t chunk = get_be64(kb + kv.mv_size - 8);
        if ((ret = qv_idset_or_portable(out, (uint32_t)(chunk >> (32 - CHUNK_BITS)), v.mv_data,
                                        v.mv_size)))
            break;
    }
    mdb_cursor_close(cur);
    if (ret) return ret;
    return rc == 0 || rc == MDB_NOTFOUND ? 0 : qv_store_err(rc, "postings scan");
}

int qv_postings_all(MDB_txn *txn, MDB_dbi dbi, uint32_t coll, qv_idset *out)
{
    uint8_t k[5];
    be32(k, coll);
    k[4] = K_ALL;
    return scan(txn, dbi, k, 5, 0, 0, 0, out);
}

int qv_postings_exists(MDB_txn *txn, MDB_dbi dbi, uint32_t coll, const char *key, size_t klen,
                       qv_idset *out)
{
    if (klen > QV_MAX_ATTR_KEY) return 0;
    uint8_t k[MAX_PREFIX];
    size_t n = key_head(k, coll, K_TYPE, key, klen);
    for (int t = QV_ATTR_STRING; t <= QV_ATTR_STRING_LIST; t++) {
        k[n] = (uint8_t)t;
        int rc = scan(txn, dbi, k, n + 1, 0, 0, 0, out);
        if (rc) return rc;
    }
    return 0;
}

int qv_postings_types(MDB_txn *txn, MDB_dbi dbi, uint32_t coll, const char *key, size_t klen,
                      unsigned *mask)
{
    *mask = 0;
    if (klen > QV_MAX_ATTR_KEY) return 0;
    uint8_t k[MAX_PREFIX];
    size_t n = key_head(k, coll, K_TYPE, key, klen);
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc) return qv_store_err(rc, "cursor");
    for (int t = QV_ATTR_STRING; t <= QV_ATTR_STRING_LIST; t++) {
        k[n] = (uint8_t)t;
        MDB_val kv = {n + 1, k}, v;
        rc = mdb_cursor_get(cur, &kv, &v, MDB_SET_RANGE);
        if (rc == MDB_NOTFOUND) continue;
        if (rc) break;
        if (kv.mv_size >= n + 1 && memcmp(kv.mv_data, k, n + 1) == 0) *mask |= 1u << t;
    }
    mdb_cursor_close(cur);
    return rc == 0 || rc == MDB_NOTFOUND ? 0 : qv_store_err(rc, "postings types");
}

int qv_postings_string(MDB_txn *txn, MDB_dbi dbi, uint32_t coll, const char *key, size_t klen,
                       const char *s, size_t slen, qv_idset *out, int *verify)
{
    *verify = 0;
    if (klen > QV_MAX_ATTR_KEY) return 0;
    uint8_t k[MAX_PREFIX];
    size_t n = key_string(k, coll, key, klen, s, slen, verify);
    return scan(txn, dbi, k, n, 0, 0, 0, out);
}

int qv_postings_bool(MDB_txn *txn, MDB_dbi dbi, uint32_t coll, const char *key, size_t klen,
                     int b, qv_idset *out)
{
    if (klen > QV_MAX_ATTR_KEY) return 0;
    uint8_t k[MAX_PREFIX];
    size_t n = key_head(k, coll, K_VALUE, key, klen);
    k[n++] = 'b';
    k[n++] = b ? 1 : 0;
    return scan(txn, dbi, k, n, 0, 0, 0, out);
}

#define TWO63 9223372036854775808.0

int qv_postings_range(MDB_txn *txn, MDB_dbi dbi, uint32_t coll, const char *key, size_t klen,
                      int has_lo, double lo, int lo_incl, int has_hi, double hi, int hi_incl,
                      qv_idset *out)
{
    if (klen > QV_MAX_ATTR_KEY || (has_lo && isnan(lo)) || (has_hi && isnan(hi))) return 0;
    uint8_t k[MAX_PREFIX];
    size_t n = key_head(k, coll, K_VALUE, key, klen);
    /* ints: the bounds rounded inwards */
    int64_t ilo = INT64_MIN, ihi = INT64_MAX;
    int empty = 0;
    /* the step past an exclusive integral bound is taken in integers: in
     * doubles, +1 is lost from 2^53 on */
    if (has_lo) {
        double c = lo_incl ? ceil(lo) : floor(lo);
        if (c >= TWO63) empty = 1;
        else if (c >= -TWO63) {
            ilo = (int64_t)c;
            if (!lo_incl) {
                if (ilo == INT64_MAX) empty = 1;
                else ilo++;
            }
        }
    }
    if (has_hi) {
        double f = hi_incl ? floor(hi) : ceil(hi);
        if (f < -TWO63) empty = 1;
        else if (f < TWO63) {
            ihi = (int64_t)f;
            if (!hi_incl) {
                if (ihi == INT64_MIN) empty = 1;
                else ihi--;
            }
        }
    }
    int rc = 0;
    k[n] = 'i';
    if (!empty && ilo <= ihi) rc = scan(txn, dbi, k, n + 1, 1, enc_int(ilo), enc_int(ihi), out);
    if (rc) return rc;
    /* doubles: the encoded bounds, one step inwards when exclusive */
    uint64_t dlo = 0, dhi = UINT64_MAX;
    if (has_lo) {
        dlo = enc_double(lo);
        if (!lo_incl) {
            if (dlo == UINT64_MAX) return 0;
            dlo++;
        }
    }
    if (has_hi) {
        dhi = enc_double(hi);
        if (!hi_incl) {
            if (dhi == 0) return 0;
            dhi--;
        }
    }
    k[n] = 'd';
    return scan(txn, dbi, k, n + 1, 1, dlo, dhi, out);
}

int qv_postings_int(MDB_txn *txn, MDB_dbi dbi, uint32_t coll, const char *key, size_t klen,
                    int64_t v, qv_idset *out)
{
    if (klen > QV_MAX_ATTR_KEY) return 0;
    uint8_t k[MAX_PREFIX];
    size_t n = key_head(k, coll, K_VALUE, key, klen);
    k[n] = 'i';
    int rc = scan(txn, dbi, k, n + 1, 1, enc_int(v), enc_int(v), out);
    double d = (double)v;
    /* a double equal to v exists only if v is exactly representable */
    if (!rc && d > -TWO63 && d < TWO63 && (int64_t)d == v) {
        k[n] = 'd';
        rc = scan(txn, dbi, k, n + 1, 1, enc_double(d), enc_double(d), out);
    }
    return rc;
}
