/*
 * qv_index: one collection's in-memory ANN index (include/quiver/index.h) on
 * the FAISS C API only. Builds, trains, fills, searches and (de)serialises an
 * index; it knows nothing of LMDB, index files' headers, locking or rebuilds.
 * FAISS errors are translated here: logged with faiss_get_last_error(), QV_FAISS.
 */
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <faiss/c_api/IndexFlat_c.h>
#include <faiss/c_api/IndexIVFFlat_c.h>
#include <faiss/c_api/IndexIVF_c.h>
#include <faiss/c_api/IndexScalarQuantizer_c.h>
#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/MetaIndexes_c.h>
#include <faiss/c_api/error_c.h>
#include <faiss/c_api/impl/AuxIndexStructures_c.h>
#include <faiss/c_api/index_factory_c.h>
#include <faiss/c_api/index_io_c.h>
#include <faiss/c_api/utils/distances_c.h>

#include "quiver/error.h"
#include "coarse.h"
#include "faiss_ext.h"
#include "index.h"
#include "pages.h"
#include "quiver/log.h"

/* Searches of fewer queries than this run on the calling thread only. */
#define QV_INDEX_SERIAL_NQ 16
/* An exact scan of more queries than this runs in chunks of it. */
#define QV_FLAT_CHUNK 1024
#define QV_INDEX_MAX_DIM 65536u
#define QV_INDEX_MAX_NLIST (1u << 20)

/* The refine copy: rows of dim floats (unit length for cosine) and an
 * open-addressing hash id -> row (linear probing, -1 empty, backward-shift
 * deletion). Rows stay dense: removal moves the last row into the hole. */
typedef struct rstore {
    float *vec;    /* cap * dim */
    int64_t *ids;  /* cap: id of each row */
    size_t n, cap;
    struct rslot {
        int64_t key; /* id, or -1 */
        uint64_t row;
    } *h;          /* hsize slots: key and row in one cache line */
    size_t hsize;  /* power of two, >= 2 * n */
} rstore;

struct qv_index {
    rstore *rs; /* refine copy, or NULL */
    FaissIndex *fi;
    FaissIndexIVF *ivf; /* fi seen as IVF; NULL for flat */
    uint32_t dim;
    qv_metric metric;
    qv_index_params params; /* as resolved (pq_nbits 0 -> 8) */
    _Atomic uint32_t nprobe; /* default nprobe; searches read it concurrently */
    qv_coarse *coarse; /* one query's coarse scan in half precision, or NULL */
};

static const char *const kind_names[] = {
    [QV_KIND_AUTO] = "auto",         [QV_KIND_FLAT] = "flat",
    [QV_KIND_IVF_FLAT] = "ivf_flat", [QV_KIND_IVF_PQ] = "ivf_pq",
    [QV_KIND_IVF_SQ8] = "ivf_sq8",   [QV_KIND_IVF_PQ_FS] = "ivf_pq_fs",
};

static bool is_ivf_kind(qv_index_kind k)
{
    return k == QV_KIND_IVF_FLAT || k == QV_KIND_IVF_PQ || k == QV_KIND_IVF_SQ8 ||
           k == QV_KIND_IVF_PQ_FS;
}

static bool is_pq_kind(qv_index_kind k) { return k == QV_KIND_IVF_PQ || k == QV_KIND_IVF_PQ_FS; }

/* Compressed kinds re-rank from a copy when refine > 1. */
static bool wants_refine(const qv_index_params *p)
{
    return p->refine > 1 &&
           (p->kind == QV_KIND_IVF_PQ || p->kind == QV_KIND_IVF_PQ_FS || p->kind == QV_KIND_IVF_SQ8);
}

/* ------------------------------------------------------------ refine copy */
static size_t rs_slot(const rstore *r, int64_t id)
{
    uint64_t h = (uint64_t)id * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 17) & (r->hsize - 1);
}

/* Row of id, or -1. */
static int64_t rs_find(const rstore *r, int64_t id)
{
    if (!r->hsize) return -1;
    for (size_t i = rs_slot(r, id);; i = (i + 1) & (r->hsize - 1)) {
        if (r->h[i].key == id) return (int64_t)r->h[i].row;
        if (r->h[i].key < 0) return -1;
    }
}

static void rs_hput(rstore *r, int64_t id, uint32_t row)
{
    size_t i = rs_slot(r, id);
    while (r->h[i].key >= 0 && r->h[i].key != id) i = (i + 1) & (r->hsize - 1);
    r->h[i].key = id;
    r->h[i].row = row;
}

static int rs_rehash(rstore *r, size_t hsize)
{
    struct rslot *h = malloc(hsize * sizeof *h);
    if (!h) return QV_NOMEM;
    for (size_t i = 0; i < hsize; i++) h[i].key = -1;
    free(r->h);
    r->h = h;
    r->hsize = hsize;
    for (size_t i = 0; i < r->n; i++) rs_hput(r, r->ids[i], (uint32_t)i);
    return 0;
}

/* Room for n rows in all (rows grow by half: glibc's realloc of big blocks
 * remaps pages rather than copying them). */
static int rs_reserve(rstore *r, uint32_t dim, size_t n)
{
    if (n > UINT32_MAX) return QV_NOMEM;
    if (n > r->cap) {
        size_t cap = r->cap + r->cap / 2;
        if (cap < n) cap = n;
        if (cap < 1024) cap = 1024;
        if (cap > UINT32_MAX) cap = UINT32_MAX;
        float *v = realloc(r->vec, cap * dim * sizeof *v);
        if (!v) return QV_NOMEM;
        r->vec = v;
        int64_t *ids = realloc(r->ids, cap * sizeof *ids);
        if (!ids) return QV_NOMEM;
        r->ids = ids;
        r->cap = cap;
    }
    size_t hs = r->hsize ? r->hsize : 2048;
    while (hs < 2 * n) hs *= 2;
    return hs != r->hsize ? rs_rehash(r, hs) : 0;
}

static void rs_free(rstore *r)
{
    if (!r) return;
    free(r->vec);
    free(r->ids);
    free(r->h);
    free(r);
}

static void rs_remove(rstore *r, uint32_t dim, int64_t id)
{
    if (!r->hsize) return;
    size_t i = rs_slot(r, id);
    while (r->h[i].key != id) {
        if (r->h[i].key < 0) return;
        i = (i + 1) & (r->hsize - 1);
    }
    uint32_t row = (uint32_t)r->h[i].row;
    /* backward-shift deletion keeps every probe chain unbroken */
    size_t mask = r->hsize - 1, j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (r->h[j].key < 0) break;
        size_t home = rs_slot(r, r->h[j].key);
        /* move j back to i when its home is not in (i, j] cyclically */
        if (((j - home) & mask) >= ((j - i) & mask)) {
            r->h[i].key = r->h[j].key;
            r->h[i].row = r->h[j].row;
            i = j;
        }
    }
    r->h[i].key = -1;
    size_t last = r->n - 1;
    if (row != last) {
        memcpy(r->vec + (size_t)row * dim, r->vec + last * dim, dim * sizeof(float));
        r->ids[row] = r->ids[last];
        rs_hput(r, r->ids[row], row);
    }
    r->n--;
}

/* Log the FAISS error of the call that just returned frc; return QV_FAISS. */
static int faiss_fail(int frc, const char *what)
{
    const char *msg = faiss_get_last_error();
    qv_error("index: %s failed (FAISS %d): %s", what, frc, msg ? msg : "no message");
    /* memory ran out inside FAISS: that call's failure (RESOURCE_EXHAUSTED),
     * not a bug */
    if (msg && strstr(msg, "bad_alloc")) return QV_NOMEM;
    return QV_FAISS;
}

static FaissMetricType faiss_metric(qv_metric m)
{
    return m == QV_METRIC_L2 ? METRIC_L2 : METRIC_INNER_PRODUCT;
}

static bool metric_valid(qv_metric m)
{
    return m == QV_METRIC_L2 || m == QV_METRIC_IP || m == QV_METRIC_COSINE;
}

static uint32_t default_nprobe(uint32_t nlist)
{
    uint32_t np = (uint32_t)ceil(sqrt((double)nlist));
    if (np < 8) np = 8;
    return np < nlist ? np : nlist;
}

/* Bytes of one vector's code in the inverted lists (flat: the vector). */
static size_t code_size(uint32_t dim, const qv_index_params *p)
{
    switch (p->kind) {
    case QV_KIND_IVF_SQ8: return dim;
    case QV_KIND_IVF_PQ:
    case QV_KIND_IVF_PQ_FS: return ((size_t)p->pq_m * p->pq_nbits + 7) / 8;
    default: return (size_t)dim * sizeof(float);
    }
}

/* Bytes FAISS uses to store a list number (IndexIVF::coarse_code_size). */
static size_t coarse_code_size(uint32_t nlist)
{
    size_t nbytes = 0;
    for (uint32_t nl = nlist - 1; nl > 0; nl >>= 8) nbytes++;
    return nbytes;
}

static double sq_norm(const float *x, uint32_t dim)
{
    double s = 0;
    for (uint32_t i = 0; i < dim; i++) s += (double)x[i] * x[i];
    return s;
}

/* Whether qv_vec_normalize leaves a row of squared norm s as it is: zero,
 * not finite, or unit length to float precision (e.g. a vector exported from
 * a cosine collection: kept bit for bit, so that export and import give back
 * the same vectors). */
static int norm_kept(double s) { return !(s > 0) || !isfinite(s) || fabs(s - 1.0) < 1e-6; }

static int is_unit(const float *x, uint32_t dim) { return norm_kept(sq_norm(x, dim)); }

/* n vectors normalised to unit length (cosine): x itself when every row is
 * already (what a collection stores: the writer normalises, db.h), else a
 * copy in *copy, to be freed. NULL if out of memory. A build hands over the
 * training sample and whole chunks (the sample's copy was 78 MiB of a
 * glove-100 build's training phase). */
static const float *unit_rows(size_t n, uint32_t dim, const float *x, float **copy)
{
    *copy = NULL;
    size_t i = 0;
    while (i < n && is_unit(x + i * dim, dim)) i++;
    if (i == n) return x;
    if (n > SIZE_MAX / sizeof(float) / dim) return NULL;
    float *c = malloc(n * dim * sizeof(float));
    if (!c) return NULL;
    memcpy(c, x, n * dim * sizeof(float));
    for (; i < n; i++) qv_vec_normalize(c + i * dim, dim);
    return *copy = c;
}

const char *qv_index_kind_name(qv_index_kind kind)
{
    if ((unsigned)kind < sizeof kind_names / sizeof kind_names[0]) return kind_names[kind];
    return "unknown";
}

int qv_index_kind_parse(const char *name)
{
    if (!name) return -1;
    for (size_t i = 0; i < sizeof kind_names / sizeof kind_names[0]; i++)
        if (strcmp(name, kind_names[i]) == 0) return (int)i;
    return -1;
}

void qv_vec_normalize(float *x, uint32_t dim)
{
    double s = sq_norm(x, dim);
    if (norm_kept(s)) return;
    float inv = (float)(1.0 / sqrt(s));
    for (uint32_t i = 0; i < dim; i++) x[i] *= inv;
}

#define CHECK_FAIL(...)                                        \
    do {                                                       \
        if (err && errlen) snprintf(err, errlen, __VA_ARGS__); \
        return QV_INVALID;                                     \
    } while (0)

int qv_index_params_check(uint32_t dim, const qv_index_params *p, char *err, size_t errlen)
{
    if (err && errlen) err[0] = '\0';
    if (!p) CHECK_FAIL("index params missing");
    if (dim == 0) CHECK_FAIL("dim 0 must be > 0");
    if (dim > QV_INDEX_MAX_DIM) CHECK_FAIL("dim %u is over %u", dim, QV_INDEX_MAX_DIM);
    switch (p->kind) {
    case QV_KIND_FLAT: return 0;
    case QV_KIND_IVF_FLAT:
    case QV_KIND_IVF_PQ:
    case QV_KIND_IVF_SQ8:
    case QV_KIND_IVF_PQ_FS: break;
    case QV_KIND_AUTO: CHECK_FAIL("index.kind auto must be resolved to a kind before building");
    default: CHECK_FAIL("index.kind %d is unknown", (int)p->kind);
    }
    const char *kn = qv_index_kind_name(p->kind);
    if (p->nlist == 0) CHECK_FAIL("index.nlist 0 must be > 0 for kind %s", kn);
    if (p->nlist > QV_INDEX_MAX_NLIST)
        CHECK_FAIL("index.nlist %u is over %u", p->nlist, QV_INDEX_MAX_NLIST);
    if (is_pq_kind(p->kind)) {
        if (p->pq_m == 0) CHECK_FAIL("index.pq_m 0 must be > 0 for kind %s", kn);
        if (dim % p->pq_m != 0) CHECK_FAIL("index.pq_m %u does not divide dim %u", p->pq_m, dim);
    }
    /* FAISS's IndexIVFPQ takes at most 8 bits per sub-quantizer code */
    if (p->kind == QV_KIND_IVF_PQ && p->pq_nbits > 8)
        CHECK_FAIL("index.pq_nbits %u is over 8", p->pq_nbits);
    /* fast scan: 4-bit codes looked up 32 at a time from SIMD registers */
    if (p->kind == QV_KIND_IVF_PQ_FS && p->pq_nbits != 0 && p->pq_nbits != 4)
        CHECK_FAIL("index.pq_nbits %u: kind ivf_pq_fs has 4-bit codes only", p->pq_nbits);
    if (p->refine > 1000) CHECK_FAIL("index.refine %u is over 1000", p->refine);
    return 0;
}

/* Wrap fi (owned from now on) in a qv_index; frees fi on failure. */
static int wrap(FaissIndex *fi, uint32_t dim, qv_metric metric, const qv_index_params *p,
                qv_index **out)
{
    int frc;
    FaissIndexIVF *ivf = NULL;
    if (is_ivf_kind(p->kind)) {
        ivf = faiss_IndexIVF_cast(fi);
        if (!ivf) {
            qv_error("index: FAISS index of kind %s is not an IVF index",
                     qv_index_kind_name(p->kind));
            faiss_Index_free(fi);
            return QV_FAISS;
        }
        /* Hashtable direct map: removal by id in O(removed). It is saved with
         * the index, so this is a no-op after a read of our own files. Fast
         * scan's block lists take no direct map: removal scans the lists. */
        if (p->kind != QV_KIND_IVF_PQ_FS &&
            (frc = faiss_IndexIVF_set_direct_map(ivf, QV_FAISS_DIRECT_MAP_HASHTABLE)) != 0) {
            int rc = faiss_fail(frc, "set_direct_map");
            faiss_Index_free(fi);
            return rc;
        }
    }
    qv_index *ix = calloc(1, sizeof *ix);
    if (!ix) {
        faiss_Index_free(fi);
        return QV_NOMEM;
    }
    ix->fi = fi;
    ix->ivf = ivf;
    ix->dim = dim;
    ix->metric = metric;
    ix->params = *p;
    if (p->kind == QV_KIND_IVF_PQ && ix->params.pq_nbits == 0) ix->params.pq_nbits = 8;
    if (p->kind == QV_KIND_IVF_PQ_FS) ix->params.pq_nbits = 4;
    if (!is_ivf_kind(p->kind)) ix->params.nlist = ix->params.pq_m = ix->params.pq_nbits = 0;
    if (!is_pq_kind(p->kind)) ix->params.pq_m = ix->params.pq_nbits = 0;
    if (!wants_refine(&ix->params)) ix->params.refine = 0;
    if (wants_refine(&ix->params) && !(ix->rs = calloc(1, sizeof *ix->rs))) {
        faiss_Index_free(fi);
        free(ix);
        return QV_NOMEM;
    }
    atomic_init(&ix->nprobe, ivf ? default_nprobe(p->nlist) : 0);
    *out = ix;
    return 0;
}

int qv_index_new(uint32_t dim, qv_metric metric, const qv_index_params *p, qv_index **out)
{
    char msg[160];
    if (!out) return QV_INVALID;
    *out = NULL;
    if (!metric_valid(metric)) {
        qv_warn("index: metric %d is unknown", (int)metric);
        return QV_INVALID;
    }
    if (qv_index_params_check(dim, p, msg, sizeof msg) != 0) {
        qv_warn("index: %s", msg);
        return QV_INVALID;
    }
    char desc[96];
    unsigned nbits = p->pq_nbits ? p->pq_nbits : 8;
    const char *coarse = p->hnsw_coarse ? "_HNSW32" : "";
    switch (p->kind) {
    case QV_KIND_FLAT: snprintf(desc, sizeof desc, "IDMap,Flat"); break;
    case QV_KIND_IVF_FLAT: snprintf(desc, sizeof desc, "IVF%u%s,Flat", p->nlist, coarse); break;
    case QV_KIND_IVF_SQ8: snprintf(desc, sizeof desc, "IVF%u%s,SQ8", p->nlist, coarse); break;
    case QV_KIND_IVF_PQ_FS:
        snprintf(desc, sizeof desc, "IVF%u%s,PQ%ux4fs", p->nlist, coarse, p->pq_m);
        break;
    default: /* ivf_pq; "np": no polysemous training (slow, unused by our searches) */
        snprintf(desc, sizeof desc, "IVF%u%s,PQ%ux%unp", p->nlist, coarse, p->pq_m, nbits);
        break;
    }
    FaissIndex *fi = NULL;
    int frc = faiss_index_factory(&fi, (int)dim, desc, faiss_metric(metric));
    if (frc != 0) return faiss_fail(frc, desc);
    return wrap(fi, dim, metric, p, out);
}

void qv_index_free(qv_index *ix)
{
    if (!ix) return;
    qv_coarse_free(ix->coarse);
    faiss_Index_free(ix->fi);
    rs_free(ix->rs);
    free(ix);
}

/* The half-precision copy of a trained IVF index's flat quantizer
 * (coarse.h); none for other quantizers, or where the CPU cannot. */
static void coarse_init(qv_index *ix)
{
    qv_coarse_free(ix->coarse);
    ix->coarse = NULL;
    FaissIndex *q = ix->ivf ? faiss_IndexIVF_quantizer(ix->ivf) : NULL;
    FaissIndexFlat *flat = q ? faiss_IndexFlat_cast(q) : NULL;
    if (!flat || faiss_Index_ntotal(q) <= 0) return;
    float *xb = NULL;
    size_t size = 0;
    faiss_IndexFlat_xb(flat, &xb, &size);
    size_t nl = (size_t)faiss_Index_ntotal(q);
    if (!xb || size < nl * ix->dim) return;
    ix->coarse = qv_coarse_new(xb, nl, ix->dim, faiss_Index_metric_type(q) == METRIC_INNER_PRODUCT);
}

static _Thread_local int (*tls_hook)(void *ctx);
static _Thread_local void *tls_hook_ctx;

int qv_index_train(qv_index *ix, size_t n, const float *x)
{
    if (!ix) return QV_INVALID;
    if (!ix->ivf) return 0;
    if (!x && n > 0) return QV_INVALID;
    if (faiss_Index_ntotal(ix->fi) > 0) {
        qv_warn("index: cannot train an index that holds %lld items",
                (long long)faiss_Index_ntotal(ix->fi));
        return QV_INVALID;
    }
    if (n < ix->params.nlist) {
        qv_warn("index: %zu training vectors for nlist %u", n, ix->params.nlist);
        return QV_INVALID;
    }
    if (ix->params.kind == QV_KIND_IVF_PQ && n < ((size_t)1 << ix->params.pq_nbits)) {
        qv_warn("index: %zu training vectors for pq_nbits %u (needs %zu)", n, ix->params.pq_nbits,
                (size_t)1 << ix->params.pq_nbits);
        return QV_INVALID;
    }
    float *copy = NULL;
    if (ix->metric == QV_METRIC_COSINE && !(x = unit_rows(n, ix->dim, x, &copy))) return QV_NOMEM;
    int frc = faiss_Index_train(ix->fi, (idx_t)n, x);
    free(copy);
    if (frc && tls_hook && tls_hook(tls_hook_ctx)) return QV_CANCELLED;
    if (!frc) frc = faiss_IndexIVF_cache_coarse_norms(ix->ivf);
    if (!frc) coarse_init(ix);
    return frc ? faiss_fail(frc, "train") : 0;
}

/* The coarse scan as BLAS products (faiss_ext.h) unless a test or an A/B
 * asks for FAISS's own. */
static atomic_int coarse_blas = 1;
/* One query's coarse scan in half precision (coarse.h) where it can. */
static atomic_int coarse_half = 1;

void qv_index_set_coarse_blas(int on) { atomic_store(&coarse_blas, on != 0); }
void qv_index_set_coarse_half(int on) { atomic_store(&coarse_half, on != 0); }

void qv_index_cancel_hook(int (*hook)(void *ctx), void *ctx)
{
    tls_hook = hook;
    tls_hook_ctx = ctx;
    faiss_set_thread_interrupt_hook(hook, ctx);
}

int qv_index_add(qv_index *ix, size_t n, const int64_t *ids, const float *x)
{
    if (!ix) return QV_INVALID;
    if (n == 0) return 0;
    if (!ids || !x) return QV_INVALID;
    if (!faiss_Index_is_trained(ix->fi)) {
        qv_warn("index: add to an untrained %s index", qv_index_kind_name(ix->params.kind));
        return QV_INVALID;
    }
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0) {
            qv_warn("index: add of negative id %lld", (long long)ids[i]);
            return QV_INVALID;
        }
    }
    float *copy = NULL;
    if (ix->metric == QV_METRIC_COSINE && !(x = unit_rows(n, ix->dim, x, &copy))) return QV_NOMEM;
    int rc = 0;
    if (ix->rs) {
        /* room first: a failed allocation leaves both untouched */
        if ((rc = rs_reserve(ix->rs, ix->dim, ix->rs->n + n))) {
            free(copy);
            return rc;
        }
    }
    int frc = faiss_Index_add_with_ids(ix->fi, (idx_t)n, x, ids);
    if (!frc && ix->rs) {
        rstore *r = ix->rs;
        for (size_t i = 0; i < n; i++) {
            int64_t row = rs_find(r, ids[i]);
            if (row < 0) {
                row = (int64_t)r->n++;
                r->ids[row] = ids[i];
                rs_hput(r, ids[i], (uint32_t)row);
            }
            memcpy(r->vec + (size_t)row * ix->dim, x + i * ix->dim, ix->dim * sizeof(float));
        }
    }
    free(copy);
    return frc ? faiss_fail(frc, "add_with_ids") : 0;
}

int qv_index_clear(qv_index *ix)
{
    if (!ix) return QV_INVALID;
    int frc = faiss_Index_reset(ix->fi);
    if (frc) return faiss_fail(frc, "reset");
    if (ix->rs) {
        rstore *r = ix->rs;
        r->n = 0;
        for (size_t i = 0; i < r->hsize; i++) r->h[i].key = -1;
    }
    return 0;
}

int qv_index_remove(qv_index *ix, size_t n, const int64_t *ids, size_t *removed)
{
    if (removed) *removed = 0;
    if (!ix) return QV_INVALID;
    if (n == 0) return 0;
    if (!ids) return QV_INVALID;
    /* A hashtable-mapped IVF index removes only through an IDSelectorArray
     * (FAISS throws otherwise); flat (IDMap) scans every stored id, so it
     * needs the hashed IDSelectorBatch. */
    FaissIDSelector *sel = NULL;
    int frc;
    if (ix->ivf && ix->params.kind != QV_KIND_IVF_PQ_FS) {
        FaissIDSelectorArray *a = NULL;
        frc = faiss_IDSelectorArray_new(&a, n, ids);
        sel = (FaissIDSelector *)a;
    } else {
        FaissIDSelectorBatch *b = NULL;
        frc = faiss_IDSelectorBatch_new(&b, n, ids);
        sel = (FaissIDSelector *)b;
    }
    if (frc != 0) return faiss_fail(frc, "id selector");
    size_t nr = 0;
    frc = faiss_Index_remove_ids(ix->fi, sel, &nr);
    faiss_IDSelector_free(sel);
    if (frc != 0) return faiss_fail(frc, "remove_ids");
    if (ix->rs)
        for (size_t i = 0; i < n; i++) rs_remove(ix->rs, ix->dim, ids[i]);
    if (removed) *removed = nr;
    return 0;
}

/* Heap of the k best (score, id) so far, worst on top. */
typedef struct hit {
    float s;
    int64_t id;
} hit;

static bool worse(bool l2, const hit *a, const hit *b) { return l2 ? a->s > b->s : a->s < b->s; }

static void heap_down(hit *h, size_t n, size_t i, bool l2)
{
    for (;;) {
        size_t w = i, l = 2 * i + 1, r = l + 1;
        if (l < n && worse(l2, &h[l], &h[w])) w = l;
        if (r < n && worse(l2, &h[r], &h[w])) w = r;
        if (w == i) return;
        hit t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

/* Exact re-rank of ncand candidates (labels cand, -1 = none) of query q from
 * the refine copy; best k to scores/labels (-1 past the end). rows, dis: ncand
 * scratch; h: k scratch. */
static void refine_one(const qv_index *ix, const float *q, const int64_t *cand, size_t ncand,
                       size_t k, float *scores, int64_t *labels, int64_t *rows, float *dis, hit *h)
{
    const rstore *r = ix->rs;
    bool l2 = ix->metric == QV_METRIC_L2;
    /* hash slots and then rows are scattered: prefetch a few ahead */
    enum { AHEAD = 8 };
    for (size_t j = 0; j < ncand && j < AHEAD; j++)
        if (cand[j] >= 0) __builtin_prefetch(&r->h[rs_slot(r, cand[j])]);
    for (size_t j = 0; j < ncand; j++) {
        if (j + AHEAD < ncand && cand[j + AHEAD] >= 0)
            __builtin_prefetch(&r->h[rs_slot(r, cand[j + AHEAD])]);
        rows[j] = cand[j] < 0 ? -1 : rs_find(r, cand[j]);
        if (rows[j] >= 0) __builtin_prefetch(r->vec + (size_t)rows[j] * ix->dim);
    }
    if (l2)
        faiss_fvec_L2sqr_by_idx(dis, q, r->vec, rows, ix->dim, ncand);
    else
        faiss_fvec_inner_products_by_idx(dis, q, r->vec, rows, ix->dim, ncand);
    size_t n = 0;
    for (size_t j = 0; j < ncand; j++) {
        if (rows[j] < 0) continue;
        hit c = {dis[j], cand[j]};
        if (n < k) {
            /* sift up */
            size_t i = n++;
            h[i] = c;
            while (i > 0 && worse(l2, &h[i], &h[(i - 1) / 2])) {
                hit t = h[i];
                h[i] = h[(i - 1) / 2];
                h[(i - 1) / 2] = t;
                i = (i - 1) / 2;
            }
        } else if (worse(l2, &h[0], &c)) {
            h[0] = c;
            heap_down(h, n, 0, l2);
        }
    }
    /* pop worst-first into the tail */
    for (size_t i = k; i > n; i--) {
        scores[i - 1] = l2 ? INFINITY : -INFINITY;
        labels[i - 1] = -1;
    }
    for (size_t i = n; i > 0; i--) {
        scores[i - 1] = h[0].s;
        labels[i - 1] = h[0].id;
        h[0] = h[i - 1];
        heap_down(h, i - 1, 0, l2);
    }
}

struct qv_idsel {
    FaissIDSelector *sel;             /* what searches use */
    FaissIDSelector *allow, *deny, *not_deny;
    int (*member)(void *ctx, int64_t id);
    void *ctx;
};

static int cb_member(void *ctx, idx_t id)
{
    const qv_idsel *s = ctx;
    return s->member(s->ctx, id);
}

int qv_idsel_new(const uint8_t *bitmap, uint64_t nbits, int (*member)(void *ctx, int64_t id),
                 void *ctx, const int64_t *deny, size_t ndeny, qv_idsel **out)
{
    *out = NULL;
    qv_idsel *s = calloc(1, sizeof *s);
    if (!s) return QV_NOMEM;
    s->member = member;
    s->ctx = ctx;
    int frc = 0;
    /* FAISS's bitmap selector takes the bitmap's length in bytes: ids past
     * them are not members */
    if (bitmap)
        frc = faiss_IDSelectorBitmap_new((FaissIDSelectorBitmap **)&s->allow,
                                         (size_t)(nbits / 8 + (nbits % 8 != 0)), bitmap);
    else if (member)
        frc = faiss_IDSelectorCallback_new(&s->allow, cb_member, s);
    if (!frc && ndeny) {
        frc = faiss_IDSelectorBatch_new((FaissIDSelectorBatch **)&s->deny, ndeny, deny);
        if (!frc) frc = faiss_IDSelectorNot_new((FaissIDSelectorNot **)&s->not_deny, s->deny);
    }
    if (!frc) {
        if (s->allow && s->not_deny)
            frc = faiss_IDSelectorAnd_new((FaissIDSelectorAnd **)&s->sel, s->allow, s->not_deny);
        else s->sel = s->allow ? s->allow : s->not_deny;
    }
    if (frc) {
        qv_idsel_free(s);
        return faiss_fail(frc, "id selector");
    }
    *out = s;
    return 0;
}

void qv_idsel_free(qv_idsel *s)
{
    if (!s) return;
    if (s->sel != s->allow && s->sel != s->not_deny) faiss_IDSelector_free(s->sel);
    faiss_IDSelector_free(s->not_deny);
    faiss_IDSelector_free(s->deny);
    faiss_IDSelector_free(s->allow);
    free(s);
}

int qv_index_get_vector(const qv_index *ix, int64_t id, float *out)
{
    if (ix->rs) {
        int64_t row = rs_find(ix->rs, id);
        if (row < 0) return QV_NOTFOUND;
        memcpy(out, ix->rs->vec + (size_t)row * ix->dim, ix->dim * sizeof *out);
        return 0;
    }
    /* ivf_flat keeps the vectors whole; its direct map finds them by id */
    if (ix->params.kind != QV_KIND_IVF_FLAT) return QV_INVALID;
    int frc = faiss_Index_reconstruct(ix->fi, id, out);
    return frc ? QV_NOTFOUND : 0;
}

int qv_index_list_members(const qv_index *ix, const uint8_t *bitmap, uint64_t nbits,
                          int (*member)(void *ctx, int64_t id), void *ctx, uint32_t *counts)
{
    if (!ix || !ix->ivf || (!bitmap && !member)) return QV_INVALID;
    int frc = faiss_IndexIVF_count_members(ix->ivf, bitmap, nbits, member, ctx, counts);
    return frc ? faiss_fail(frc, "count list members") : 0;
}

int qv_index_coarse_keys(const qv_index *ix, size_t nq, const float *q, float *keys)
{
    if (!ix || !ix->ivf || !q || !keys) return QV_INVALID;
    int frc = faiss_IndexIVF_coarse_keys(ix->ivf, nq, q, keys);
    if (frc == 1) return QV_INVALID; /* not a flat quantizer */
    return frc ? faiss_fail(frc, "coarse keys") : 0;
}

int qv_index_rank_lists(const qv_index *ix, const float *q, const float *keys, size_t k, int64_t *lists,
                        float *dis, uint32_t *sizes)
{
    if (!ix || !ix->ivf || !q || k == 0) return QV_INVALID;
    if (!keys && ix->coarse && atomic_load_explicit(&coarse_half, memory_order_relaxed)) {
        if (k > ix->params.nlist) k = ix->params.nlist;
        if (qv_coarse_rank(ix->coarse, q, k, lists, dis)) return QV_NOMEM;
        for (size_t j = 0; j < k; j++) sizes[j] = (uint32_t)faiss_IndexIVF_get_list_size(ix->ivf, (size_t)lists[j]);
        return 0;
    }
    int frc = faiss_IndexIVF_rank_lists(ix->ivf, q, keys, k, lists, dis, sizes);
    return frc ? faiss_fail(frc, "rank lists") : 0;
}

int qv_index_score_ids(const qv_index *ix, const float *q, size_t n, const int64_t *ids,
                       float *scores, uint8_t *found)
{
    bool l2 = ix->metric == QV_METRIC_L2;
    if (ix->rs) {
        enum { CH = 256 };
        int64_t rows[CH];
        for (size_t o = 0; o < n; o += CH) {
            size_t m = n - o < CH ? n - o : CH;
            for (size_t j = 0; j < m; j++) {
                rows[j] = rs_find(ix->rs, ids[o + j]);
                found[o + j] = rows[j] >= 0;
            }
            if (l2) faiss_fvec_L2sqr_by_idx(scores + o, q, ix->rs->vec, rows, ix->dim, m);
            else faiss_fvec_inner_products_by_idx(scores + o, q, ix->rs->vec, rows, ix->dim, m);
        }
        return 0;
    }
    if (ix->params.kind != QV_KIND_IVF_FLAT) return QV_INVALID;
    float *v = malloc(ix->dim * sizeof *v);
    if (!v) return QV_NOMEM;
    for (size_t j = 0; j < n; j++) {
        found[j] = faiss_Index_reconstruct(ix->fi, ids[j], v) == 0;
        if (!found[j]) continue;
        if (l2) faiss_fvec_L2sqr_ny(&scores[j], q, v, ix->dim, 1);
        else faiss_fvec_inner_products_ny(&scores[j], q, v, ix->dim, 1);
    }
    free(v);
    return 0;
}

int qv_index_search(const qv_index *ix, size_t nq, const float *q, size_t k, uint32_t nprobe,
                    float *scores, int64_t *labels)
{
    return qv_index_search_sel(ix, nq, q, k, nprobe, NULL, scores, labels);
}

static int search_impl(const qv_index *ix, size_t nq, const float *q, size_t k, uint32_t nprobe,
                       const int64_t *lists, const float *ldis, const qv_idsel *sel, float *scores,
                       int64_t *labels);

int qv_index_search_sel(const qv_index *ix, size_t nq, const float *q, size_t k, uint32_t nprobe,
                        const qv_idsel *sel, float *scores, int64_t *labels)
{
    return search_impl(ix, nq, q, k, nprobe, NULL, NULL, sel, scores, labels);
}

int qv_index_search_lists(const qv_index *ix, const float *q, size_t k, uint32_t nprobe,
                          const int64_t *lists, const float *dis, const qv_idsel *sel, float *scores,
                          int64_t *labels)
{
    if (!ix || !ix->ivf || !lists || !dis || nprobe == 0) return QV_INVALID;
    return search_impl(ix, 1, q, k, nprobe, lists, dis, sel, scores, labels);
}

/* One query's IVF search over the np lists the half-precision scan ranks:
 * FAISS's status, or QV_NOMEM in *rc. */
static int search_half(const qv_index *ix, const float *q, size_t k, size_t np, const FaissSearchParametersIVF *sp,
                       float *scores, int64_t *labels, int *rc)
{
    int64_t *lists = malloc(np * sizeof *lists);
    float *dis = malloc(np * sizeof *dis);
    int frc = 0;
    if (!lists || !dis || qv_coarse_rank(ix->coarse, q, np, lists, dis)) *rc = QV_NOMEM;
    else frc = faiss_IndexIVF_search_lists(ix->ivf, q, (idx_t)k, lists, dis, sp, scores, labels);
    free(lists);
    free(dis);
    return frc;
}

/* The search, over the lists the coarse quantizer ranks (lists NULL), or
 * over the first nprobe of lists / ldis (one query, IVF kinds). */
static int search_impl(const qv_index *ix, size_t nq, const float *q, size_t k, uint32_t nprobe,
                       const int64_t *lists, const float *ldis, const qv_idsel *sel, float *scores,
                       int64_t *labels)
{
    if (!ix || !q || !scores || !labels) return QV_INVALID;
    if (nq == 0) return 0;
    if (k == 0 || k > (size_t)INT64_MAX / nq) return QV_INVALID;
    if (!faiss_Index_is_trained(ix->fi)) return QV_INVALID;

    /* COSINE queries come unit length: the engine normalised them (once) */
    float *copy = NULL;
    FaissSearchParametersIVF *sp = NULL;
    FaissSearchParameters *fp = NULL;
    FaissIDSelector *fsel = sel ? sel->sel : NULL;
    int frc = 0;
    size_t np = 0;
    if (ix->ivf) {
        np = nprobe ? nprobe : atomic_load_explicit(&ix->nprobe, memory_order_relaxed);
        if (np > ix->params.nlist) np = ix->params.nlist;
        if ((frc = faiss_SearchParametersIVF_new_with(&sp, fsel, np, 0)) != 0) {
            free(copy);
            return faiss_fail(frc, "search parameters");
        }
    } else if (fsel && (frc = faiss_SearchParameters_new(&fp, fsel)) != 0) {
        free(copy);
        return faiss_fail(frc, "search parameters");
    }
    /* Concurrent callers bring the parallelism: a small search must not
     * start an OpenMP team. omp_set_num_threads sets this thread's ICV only. */
    int saved_threads = 0;
    if (nq < QV_INDEX_SERIAL_NQ) {
        saved_threads = omp_get_max_threads();
        omp_set_num_threads(1);
    }
    /* with a refine copy: refine x k candidates from FAISS, re-ranked here */
    size_t kk = k;
    float *cs = scores;
    int64_t *cl = labels, *rows = NULL;
    hit *h = NULL;
    if (ix->rs) {
        kk = qv_index_candidates(ix, k);
        if (kk < k || kk > SIZE_MAX / sizeof(float) / nq) frc = QV_NOMEM;
        cs = frc ? NULL : malloc(nq * kk * sizeof *cs);
        cl = frc ? NULL : malloc(nq * kk * sizeof *cl);
        rows = malloc(kk * sizeof *rows);
        h = malloc(k * sizeof *h);
        if (!cs || !cl || !rows || !h) frc = QV_NOMEM;
    }
    int rc = frc;
    if (!rc) {
        if (sp && lists)
            /* the lists the caller ranked (the filtered walk): no second scan */
            frc = faiss_IndexIVF_search_lists(ix->ivf, q, (idx_t)kk, lists, ldis, sp, cs, cl);
        else if (sp && nq == 1 && ix->coarse && atomic_load_explicit(&coarse_half, memory_order_relaxed))
            frc = search_half(ix, q, kk, np, sp, cs, cl, &rc);
        else if (sp && atomic_load_explicit(&coarse_blas, memory_order_relaxed))
            /* the coarse scan as matrix products (faiss_ext.h); fast-scan's
             * search_preassigned takes the lists as IVF-Flat's does */
            frc = faiss_IndexIVF_search_coarse_blas(ix->ivf, (idx_t)nq, q, (idx_t)kk, sp, cs, cl);
        else if (sp)
            frc = faiss_Index_search_with_params(ix->fi, (idx_t)nq, q, (idx_t)kk,
                                                 (FaissSearchParameters *)sp, cs, cl);
        else
            /* the exact scan checks for a stop once per block of queries
             * FAISS multiplies at once (4,096): in chunks of fewer, a
             * search past its deadline stops sooner */
            for (size_t i = 0; i < nq && !frc; i += QV_FLAT_CHUNK) {
                size_t m = nq - i < QV_FLAT_CHUNK ? nq - i : QV_FLAT_CHUNK;
                frc = fp ? faiss_Index_search_with_params(ix->fi, (idx_t)m, q + i * ix->dim, (idx_t)kk, fp,
                                                          cs + i * kk, cl + i * kk)
                         : faiss_Index_search(ix->fi, (idx_t)m, q + i * ix->dim, (idx_t)kk, cs + i * kk,
                                              cl + i * kk);
            }
        /* stopped by the thread's hook (a call's deadline or cancel) */
        if (frc && tls_hook && tls_hook(tls_hook_ctx)) rc = QV_CANCELLED;
        else if (frc) rc = faiss_fail(frc, "search");
    }
    if (!rc && ix->rs)
        for (size_t i = 0; i < nq; i++)
            refine_one(ix, q + i * ix->dim, cl + i * kk, kk, k, scores + i * k, labels + i * k,
                       rows, cs + i * kk, h);
    if (nq < QV_INDEX_SERIAL_NQ) omp_set_num_threads(saved_threads);
    faiss_SearchParametersIVF_free(sp);
    faiss_SearchParameters_free(fp);
    if (ix->rs) {
        free(cs);
        free(cl);
        free(rows);
        free(h);
    }
    free(copy);
    return rc;
}

size_t qv_index_count(const qv_index *ix)
{
    return ix ? (size_t)faiss_Index_ntotal(ix->fi) : 0;
}

int qv_index_is_trained(const qv_index *ix)
{
    return ix ? faiss_Index_is_trained(ix->fi) : 0;
}

uint32_t qv_index_dim(const qv_index *ix) { return ix->dim; }

qv_metric qv_index_metric(const qv_index *ix) { return ix->metric; }

const qv_index_params *qv_index_get_params(const qv_index *ix) { return &ix->params; }

void qv_index_set_nprobe(qv_index *ix, uint32_t nprobe)
{
    if (!ix || !ix->ivf) return;
    if (nprobe == 0) nprobe = default_nprobe(ix->params.nlist);
    atomic_store_explicit(&ix->nprobe, nprobe, memory_order_relaxed);
}

uint32_t qv_index_get_nprobe(const qv_index *ix)
{
    return ix ? atomic_load_explicit(&ix->nprobe, memory_order_relaxed) : 0;
}

/* The refine copy after the FAISS index: "QVRF", dim (u32), rows (u64), the
 * ids (i64 each), the vectors (dim floats each), host byte order (x86-64 and
 * arm64 are little-endian, like FAISS's own files). */
#define RS_MAGIC 0x46525651u /* "QVRF" */

static int rs_write(const rstore *r, uint32_t dim, FILE *f)
{
    uint32_t h[2] = {RS_MAGIC, dim};
    uint64_t n = r->n;
    if (fwrite(h, sizeof h, 1, f) != 1 || fwrite(&n, sizeof n, 1, f) != 1 ||
        fwrite(r->ids, sizeof *r->ids, r->n, f) != r->n ||
        fwrite(r->vec, (size_t)dim * sizeof(float), r->n, f) != r->n) {
        qv_error("index: writing the refine copy failed");
        return QV_IO;
    }
    return 0;
}

static int rs_read(rstore *r, uint32_t dim, size_t ntotal, FILE *f)
{
    uint32_t h[2];
    uint64_t n;
    if (fread(h, sizeof h, 1, f) != 1 || fread(&n, sizeof n, 1, f) != 1) {
        qv_error("index: file ends before the refine copy");
        return ferror(f) ? QV_IO : QV_CORRUPT;
    }
    if (h[0] != RS_MAGIC || h[1] != dim || n != ntotal) {
        qv_error("index: refine copy has a bad header (dim %u, %llu rows for %zu items)", h[1],
                 (unsigned long long)n, ntotal);
        return QV_CORRUPT;
    }
    int rc = rs_reserve(r, dim, (size_t)n);
    if (rc) return rc;
    if (fread(r->ids, sizeof *r->ids, n, f) != n ||
        fread(r->vec, (size_t)dim * sizeof(float), n, f) != n) {
        qv_error("index: file ends inside the refine copy");
        return ferror(f) ? QV_IO : QV_CORRUPT;
    }
    r->n = (size_t)n;
    for (size_t i = 0; i < r->n; i++) {
        if (r->ids[i] < 0 || rs_find(r, r->ids[i]) >= 0) {
            qv_error("index: refine copy holds a bad or repeated id %lld", (long long)r->ids[i]);
            return QV_CORRUPT;
        }
        rs_hput(r, r->ids[i], (uint32_t)i);
    }
    return 0;
}

int qv_index_write(const qv_index *ix, FILE *f)
{
    if (!ix || !f) return QV_INVALID;
    int frc = faiss_write_index(ix->fi, f);
    if (frc == 0 && ix->rs) return rs_write(ix->rs, ix->dim, f);
    if (frc == 0) return 0;
    if (ferror(f)) {
        const char *msg = faiss_get_last_error();
        qv_error("index: write failed: %s", msg ? msg : "no message");
        return QV_IO;
    }
    return faiss_fail(frc, "write_index");
}

/* Does fi (just read) have the layout of an index built for dim/p? */
static int check_read(FaissIndex *fi, uint32_t dim, qv_metric metric, const qv_index_params *p)
{
    const char *kn = qv_index_kind_name(p->kind);
    if (faiss_Index_d(fi) != (int)dim) {
        qv_error("index: file has dim %d, expected %u", faiss_Index_d(fi), dim);
        return QV_CORRUPT;
    }
    if (faiss_Index_metric_type(fi) != faiss_metric(metric)) {
        qv_error("index: file has FAISS metric %d, expected %d", (int)faiss_Index_metric_type(fi),
                 (int)faiss_metric(metric));
        return QV_CORRUPT;
    }
    if (!is_ivf_kind(p->kind)) {
        FaissIndexIDMap *map = faiss_IndexIDMap_cast(fi);
        FaissIndex *sub = map ? faiss_IndexIDMap_sub_index(map) : NULL;
        if (!sub || !faiss_IndexFlat_cast(sub)) {
            qv_error("index: file does not hold an index of kind %s", kn);
            return QV_CORRUPT;
        }
        return 0;
    }
    FaissIndexIVF *ivf = faiss_IndexIVF_cast(fi);
    if (!ivf) {
        qv_error("index: file does not hold an index of kind %s", kn);
        return QV_CORRUPT;
    }
    if (faiss_IndexIVF_nlist(ivf) != p->nlist) {
        qv_error("index: file has nlist %zu, expected %u", faiss_IndexIVF_nlist(ivf), p->nlist);
        return QV_CORRUPT;
    }
    bool is_flat = faiss_IndexIVFFlat_cast(fi) != NULL;
    bool is_sq = faiss_IndexIVFScalarQuantizer_cast(fi) != NULL;
    bool is_fs = faiss_IndexIVFPQFastScan_cast(fi) != NULL;
    bool kind_ok = p->kind == QV_KIND_IVF_FLAT    ? is_flat
                   : p->kind == QV_KIND_IVF_SQ8   ? is_sq
                   : p->kind == QV_KIND_IVF_PQ_FS ? is_fs
                                                  : !is_flat && !is_sq && !is_fs;
    if (!kind_ok) {
        qv_error("index: file does not hold an index of kind %s", kn);
        return QV_CORRUPT;
    }
    /* The code size pins down the encoding: SQ8 vs other SQ types, PQ m*nbits. */
    size_t cs = 0;
    int frc = faiss_Index_sa_code_size(fi, &cs);
    if (frc != 0) {
        faiss_fail(frc, "sa_code_size");
        return QV_CORRUPT;
    }
    size_t want = coarse_code_size(p->nlist) + code_size(dim, p);
    if (cs != want) {
        qv_error("index: file's %s codes take %zu bytes, expected %zu", kn, cs, want);
        return QV_CORRUPT;
    }
    return 0;
}

int qv_index_read(FILE *f, uint32_t dim, qv_metric metric, const qv_index_params *p,
                  qv_index **out)
{
    char msg[160];
    if (!out) return QV_INVALID;
    *out = NULL;
    if (!f || !metric_valid(metric)) return QV_INVALID;
    if (qv_index_params_check(dim, p, msg, sizeof msg) != 0) {
        qv_warn("index: read: %s", msg);
        return QV_INVALID;
    }
    qv_index_params rp = *p;
    if (rp.kind == QV_KIND_IVF_PQ && rp.pq_nbits == 0) rp.pq_nbits = 8;
    if (rp.kind == QV_KIND_IVF_PQ_FS) rp.pq_nbits = 4;

    FaissIndex *fi = NULL;
    int frc = faiss_read_index(f, 0, &fi);
    if (frc != 0) {
        const char *fmsg = faiss_get_last_error();
        int rc = ferror(f) ? QV_IO : QV_CORRUPT;
        qv_error("index: read failed: %s", fmsg ? fmsg : "no message");
        return rc;
    }
    int rc = check_read(fi, dim, metric, &rp);
    if (rc != 0) {
        faiss_Index_free(fi);
        return rc;
    }
    if ((rc = wrap(fi, dim, metric, &rp, out))) return rc;
    if ((*out)->ivf && (rc = faiss_IndexIVF_cache_coarse_norms((*out)->ivf))) {
        qv_index_free(*out);
        *out = NULL;
        return faiss_fail(rc, "coarse norms");
    }
    coarse_init(*out);
    if ((*out)->rs && (rc = rs_read((*out)->rs, dim, (size_t)faiss_Index_ntotal(fi), f))) {
        qv_index_free(*out);
        *out = NULL;
    }
    return rc;
}

double qv_index_walk_exact_ratio(const qv_index *ix)
{
    return ix->params.kind == QV_KIND_IVF_SQ8 ? 2.0 : 16.0;
}

int qv_index_has_refine(const qv_index *ix) { return ix && ix->rs; }

int qv_index_huge_pages_step(qv_index *ix, size_t step)
{
    if (!ix || !ix->rs) return 0;
    const rstore *r = ix->rs;
    /* the rows' steps, then the hash's */
    size_t rows = r->n * ix->dim * sizeof(float), hash = r->hsize * sizeof *r->h;
    size_t nr = qv_pages_steps(r->vec, rows), nh = qv_pages_steps(r->h, hash);
    if (step < nr) qv_pages_huge_step(r->vec, rows, step);
    else if (step < nr + nh) qv_pages_huge_step(r->h, hash, step - nr);
    return step + 1 < nr + nh;
}

void qv_index_huge_pages(qv_index *ix)
{
    for (size_t i = 0; qv_index_huge_pages_step(ix, i); i++)
        ;
}

size_t qv_index_candidates(const qv_index *ix, size_t k)
{
    if (!ix || !ix->rs) return k;
    size_t kr = k > QV_REFINE_MIN_K ? k : QV_REFINE_MIN_K;
    if (kr > SIZE_MAX / ix->params.refine) return SIZE_MAX;
    return kr * ix->params.refine;
}

int qv_index_reserve(qv_index *ix, size_t n, size_t ns, const float *xs)
{
    if (!ix) return QV_INVALID;
    int rc = ix->rs ? rs_reserve(ix->rs, ix->dim, n) : 0;
    /* fast scan's block lists are small next to its refine copy */
    if (rc || !ix->ivf || ns == 0 || !xs || ix->params.kind == QV_KIND_IVF_PQ_FS) return rc;
    uint32_t nlist = ix->params.nlist;
    idx_t *lab = malloc(ns * sizeof *lab);
    size_t *sizes = calloc(nlist, sizeof *sizes);
    float *copy = NULL;
    if (ix->metric == QV_METRIC_COSINE && !(xs = unit_rows(ns, ix->dim, xs, &copy))) rc = QV_NOMEM;
    if (!lab || !sizes) rc = QV_NOMEM;
    FaissIndex *cq = faiss_IndexIVF_quantizer(ix->ivf);
    int frc = rc ? 0 : faiss_Index_assign(cq, (idx_t)ns, xs, lab, 1);
    if (frc) rc = faiss_fail(frc, "assign");
    if (!rc) {
        for (size_t i = 0; i < ns; i++)
            if (lab[i] >= 0 && (size_t)lab[i] < nlist) sizes[lab[i]]++;
        /* scaled to n, with a margin for the sample's noise: about two
         * standard deviations of a binomial count, plus a few */
        double f = (double)n / (double)ns;
        for (uint32_t l = 0; l < nlist; l++) {
            double est = (double)sizes[l] * f;
            sizes[l] = (size_t)(est + 2.0 * sqrt(est + 1.0) * sqrt(f) + 4.0);
        }
        if ((frc = faiss_IndexIVF_reserve_lists(ix->ivf, sizes))) rc = faiss_fail(frc, "reserve");
    }
    free(copy);
    free(lab);
    free(sizes);
    return rc;
}

int qv_index_compact(qv_index *ix)
{
    if (!ix) return 0;
    if (!ix->ivf) {
        if (faiss_Index_shrink_to_fit(ix->fi) != 0) {
            qv_error("FAISS shrink_to_fit: %s", faiss_get_last_error());
            return QV_FAISS;
        }
        return 0;
    }
    rstore *r = ix->rs;
    if (r && r->cap > r->n && r->n > 0) {
        /* shrinking never fails for lack of memory; keep the old block if so */
        float *v = realloc(r->vec, r->n * ix->dim * sizeof *v);
        int64_t *ids = v ? realloc(r->ids, r->n * sizeof *ids) : NULL;
        if (v) r->vec = v;
        if (ids) r->ids = ids;
        if (v && ids) r->cap = r->n;
    }
    if (faiss_IndexIVF_shrink_to_fit(ix->ivf) != 0) {
        qv_error("FAISS shrink_to_fit: %s", faiss_get_last_error());
        return QV_FAISS;
    }
    return 0;
}

size_t qv_index_memory(const qv_index *ix)
{
    if (!ix) return 0;
    size_t n = qv_index_count(ix), d = ix->dim;
    const qv_index_params *p = &ix->params;
    size_t bytes = sizeof *ix + n * (code_size(ix->dim, p) + sizeof(int64_t));
    if (!ix->ivf) return bytes;
    bytes += (size_t)p->nlist * (d * sizeof(float) + 48); /* centroids, list heads */
    if (p->kind != QV_KIND_IVF_PQ_FS) bytes += n * 40;   /* hashtable direct map */
    if (p->kind == QV_KIND_IVF_SQ8) bytes += 2 * d * sizeof(float);
    if (ix->rs) bytes += ix->rs->cap * (d * sizeof(float) + 8) + ix->rs->hsize * 16;
    if (is_pq_kind(p->kind)) {
        size_t ksub = (size_t)1 << p->pq_nbits;
        bytes += ksub * d * sizeof(float); /* PQ centroids */
        if (ix->metric == QV_METRIC_L2)    /* precomputed residual table */
            bytes += (size_t)p->nlist * p->pq_m * ksub * sizeof(float);
    }
    return bytes;
}
