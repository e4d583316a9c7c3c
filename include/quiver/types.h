/*
 * The engine's small shared types: metrics, index kinds and their
 * parameters, calibrated recall points, the store's options. Public (the
 * server fills specs and options with them); the functions that use them are
 * the engine's (quiver/db.h, quiver/query.h).
 */
#ifndef QUIVER_TYPES_H
#define QUIVER_TYPES_H

#include <stddef.h>
#include <stdint.h>

/* Values reach disk: never renumber. */
typedef enum {
    QV_METRIC_L2 = 1,
    QV_METRIC_IP = 2,
    QV_METRIC_COSINE = 3,
} qv_metric;

typedef enum {
    QV_KIND_AUTO = 0,     /* only in specs: resolved before building */
    QV_KIND_FLAT = 1,
    QV_KIND_IVF_FLAT = 2,
    QV_KIND_IVF_PQ = 3,
    QV_KIND_IVF_SQ8 = 4,
    QV_KIND_IVF_PQ_FS = 5, /* 4-bit fast-scan PQ (SIMD lookup tables) */
} qv_index_kind;

typedef struct qv_index_params {
    qv_index_kind kind;
    uint32_t nlist;    /* IVF kinds: number of lists (> 0) */
    uint32_t pq_m;     /* ivf_pq, ivf_pq_fs: sub-quantizers, divides dim */
    uint32_t pq_nbits; /* ivf_pq: bits per sub-code, 1..8 (0 = 8); ivf_pq_fs: 4 */
    uint32_t refine;   /* ivf_pq, ivf_pq_fs, ivf_sq8: > 1 keeps a copy of the
                        * vectors in RAM and re-ranks refine x k candidates
                        * by exact distance (ivf_flat, flat: ignored) */
    uint32_t hnsw_coarse; /* IVF kinds, at creation: 1 = find the nearest lists
                           * through an HNSW graph of the centroids (M 32)
                           * instead of scanning them; not stored (the FAISS
                           * file holds the quantizer) */
} qv_index_params;

typedef struct qv_recall_point {
    float recall;   /* recall@10 measured at this nprobe */
    uint32_t nprobe;
} qv_recall_point;

#define QV_MAX_RECALL_POINTS 24

/* The default cap on the store's size: LMDB's map is reserved at the cap as
 * address space only (the file grows with the data). */
#define QV_STORE_MAP_CAP ((size_t)1 << 40)

typedef struct qv_store_opts {
    const char *dir;     /* data directory; created if missing */
    size_t map_size;     /* the most the store may grow to (0 = QV_STORE_MAP_CAP) */
    int nosync;          /* 1: no fsync on commit (unsafe: loses recent writes on crash) */
    unsigned max_readers;/* 0 = 1024 */
} qv_store_opts;

/* Name of a kind ("auto", "flat", "ivf_flat", "ivf_pq", "ivf_sq8", "ivf_pq_fs"; "unknown"
 * for other values, never NULL), and back; parse returns -1 if unknown. */
const char *qv_index_kind_name(qv_index_kind kind);
int qv_index_kind_parse(const char *name);

/* Normalise x (dim floats) to unit length in place; a zero vector stays zero,
 * and one already of unit length (within 1e-6 in squared norm) is left as it
 * is, bit for bit. */
void qv_vec_normalize(float *x, uint32_t dim);

#endif
