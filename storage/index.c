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

#include "quiver/error.h"
#include "quiver/faiss_ext.h"
#include "quiver/index.h"
#include "quiver/log.h"

/* Searches of fewer queries than this run on the calling thread only. */
#define QV_INDEX_SERIAL_NQ 16
#define QV_INDEX_MAX_DIM 65536u
#define QV_INDEX_MAX_NLIST (1u << 20)

struct qv_index {
    FaissIndex *fi;
    FaissIndexIVF *ivf; /* fi seen as IVF; NULL for flat */
    uint32_t dim;
    qv_metric metric;
    qv_index_params params; /* as resolved (pq_nbits 0 -> 8) */
    _Atomic uint32_t nprobe; /* default nprobe; searches read it concurrently */
};

static const char *const kind_names[] = {
    [QV_KIND_AUTO] = "auto",         [QV_KIND_FLAT] = "flat",
    [QV_KIND_IVF_FLAT] = "ivf_flat", [QV_KIND_IVF_PQ] = "ivf_pq",
    [QV_KIND_IVF_SQ8] = "ivf_sq8",
};

static bool is_ivf_kind(qv_index_kind k)
{
    return k == QV_KIND_IVF_FLAT || k == QV_KIND_IVF_PQ || k == QV_KIND_IVF_SQ8;
}

/* Log the FAISS error of the call that just returned frc; return QV_FAISS. */
static int faiss_fail(int frc, const char *what)
{
    const char *msg = faiss_get_last_error();
    qv_error("index: %s failed (FAISS %d): %s", what, frc, msg ? msg : "no message");
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
    case QV_KIND_IVF_PQ: return ((size_t)p->pq_m * p->pq_nbits + 7) / 8;
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

/* Copy of n vectors normalised to unit length (cosine); NULL if out of memory. */
static float *normalized_copy(size_t n, uint32_t dim, const float *x)
{
    if (n > SIZE_MAX / sizeof(float) / dim) return NULL;
    float *c = malloc(n * dim * sizeof(float));
    if (!c) return NULL;
    memcpy(c, x, n * dim * sizeof(float));
    for (size_t i = 0; i < n; i++) qv_vec_normalize(c + i * dim, dim);
    return c;
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
    double s = 0;
    for (uint32_t i = 0; i < dim; i++) s += (double)x[i] * x[i];
    if (!(s > 0) || !isfinite(s)) return;
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
    case QV_KIND_IVF_SQ8: break;
    case QV_KIND_AUTO: CHECK_FAIL("index.kind auto must be resolved to a kind before building");
    default: CHECK_FAIL("index.kind %d is unknown", (int)p->kind);
    }
    const char *kn = qv_index_kind_name(p->kind);
    if (p->nlist == 0) CHECK_FAIL("index.nlist 0 must be > 0 for kind %s", kn);
    if (p->nlist > QV_INDEX_MAX_NLIST)
        CHECK_FAIL("index.nlist %u is over %u", p->nlist, QV_INDEX_MAX_NLIST);
    if (p->kind == QV_KIND_IVF_PQ) {
        if (p->pq_m == 0) CHECK_FAIL("index.pq_m 0 must be > 0 for kind %s", kn);
        if (dim % p->pq_m != 0) CHECK_FAIL("index.pq_m %u does not divide dim %u", p->pq_m, dim);
        /* FAISS's IndexIVFPQ takes at most 8 bits per sub-quantizer code */
        if (p->pq_nbits > 8) CHECK_FAIL("index.pq_nbits %u is over 8", p->pq_nbits);
    }
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
         * the index, so this is a no-op after a read of our own files. */
        if ((frc = faiss_IndexIVF_set_direct_map(ivf, QV_FAISS_DIRECT_MAP_HASHTABLE)) != 0) {
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
    if (!is_ivf_kind(p->kind)) ix->params.nlist = ix->params.pq_m = ix->params.pq_nbits = 0;
    if (p->kind != QV_KIND_IVF_PQ) ix->params.pq_m = ix->params.pq_nbits = 0;
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
    switch (p->kind) {
    case QV_KIND_FLAT: snprintf(desc, sizeof desc, "IDMap,Flat"); break;
    case QV_KIND_IVF_FLAT: snprintf(desc, sizeof desc, "IVF%u,Flat", p->nlist); break;
    case QV_KIND_IVF_SQ8: snprintf(desc, sizeof desc, "IVF%u,SQ8", p->nlist); break;
    default: /* ivf_pq; "np": no polysemous training (slow, unused by our searches) */
        snprintf(desc, sizeof desc, "IVF%u,PQ%ux%unp", p->nlist, p->pq_m, nbits);
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
    faiss_Index_free(ix->fi);
    free(ix);
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
    if (ix->metric == QV_METRIC_COSINE) {
        if (!(copy = normalized_copy(n, ix->dim, x))) return QV_NOMEM;
        x = copy;
    }
    int frc = faiss_Index_train(ix->fi, (idx_t)n, x);
    free(copy);
    if (frc && tls_hook && tls_hook(tls_hook_ctx)) return QV_CANCELLED;
    return frc ? faiss_fail(frc, "train") : 0;
}

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
    if (ix->metric == QV_METRIC_COSINE) {
        if (!(copy = normalized_copy(n, ix->dim, x))) return QV_NOMEM;
        x = copy;
    }
    int frc = faiss_Index_add_with_ids(ix->fi, (idx_t)n, x, ids);
    free(copy);
    return frc ? faiss_fail(frc, "add_with_ids") : 0;
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
    if (ix->ivf) {
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
    if (removed) *removed = nr;
    return 0;
}

int qv_index_search(const qv_index *ix, size_t nq, const float *q, size_t k, uint32_t nprobe,
                    float *scores, int64_t *labels)
{
    if (!ix || !q || !scores || !labels) return QV_INVALID;
    if (nq == 0) return 0;
    if (k == 0 || k > (size_t)INT64_MAX / nq) return QV_INVALID;
    if (!faiss_Index_is_trained(ix->fi)) return QV_INVALID;

    float *copy = NULL;
    if (ix->metric == QV_METRIC_COSINE) {
        if (!(copy = normalized_copy(nq, ix->dim, q))) return QV_NOMEM;
        q = copy;
    }
    FaissSearchParametersIVF *sp = NULL;
    int frc = 0;
    if (ix->ivf) {
        size_t np = nprobe ? nprobe : atomic_load_explicit(&ix->nprobe, memory_order_relaxed);
        if ((frc = faiss_SearchParametersIVF_new_with(&sp, NULL, np, 0)) != 0) {
            free(copy);
            return faiss_fail(frc, "search parameters");
        }
    }
    /* Concurrent callers bring the parallelism: a small search must not
     * start an OpenMP team. omp_set_num_threads sets this thread's ICV only. */
    int saved_threads = 0;
    if (nq < QV_INDEX_SERIAL_NQ) {
        saved_threads = omp_get_max_threads();
        omp_set_num_threads(1);
    }
    if (sp)
        frc = faiss_Index_search_with_params(ix->fi, (idx_t)nq, q, (idx_t)k, sp, scores, labels);
    else
        frc = faiss_Index_search(ix->fi, (idx_t)nq, q, (idx_t)k, scores, labels);
    if (nq < QV_INDEX_SERIAL_NQ) omp_set_num_threads(saved_threads);
    faiss_SearchParametersIVF_free(sp);
    free(copy);
    return frc ? faiss_fail(frc, "search") : 0;
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

int qv_index_write(const qv_index *ix, FILE *f)
{
    if (!ix || !f) return QV_INVALID;
    int frc = faiss_write_index(ix->fi, f);
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
    bool kind_ok = p->kind == QV_KIND_IVF_FLAT ? is_flat
                   : p->kind == QV_KIND_IVF_SQ8 ? is_sq
                                                : !is_flat && !is_sq;
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
    return wrap(fi, dim, metric, &rp, out);
}

int qv_index_compact(qv_index *ix)
{
    if (!ix || !ix->ivf) return 0;
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
    bytes += n * 40;                                     /* hashtable direct map */
    if (p->kind == QV_KIND_IVF_SQ8) bytes += 2 * d * sizeof(float);
    if (p->kind == QV_KIND_IVF_PQ) {
        size_t ksub = (size_t)1 << p->pq_nbits;
        bytes += ksub * d * sizeof(float); /* PQ centroids */
        if (ix->metric == QV_METRIC_L2)    /* precomputed residual table */
            bytes += (size_t)p->nlist * p->pq_m * ksub * sizeof(float);
    }
    return bytes;
}
