/*
 * qv_query: the engine's read side. One call, qv_query_run, answers a read
 * from request to hits in one LMDB snapshot: searches by vector or by stored
 * item, composed ones (filter, exclusions, k, grouping, MMR, fusion, score
 * threshold) and recommendations, with the hits' attributes and vectors when
 * asked. Items by id (qv_items_get) and in id order (qv_scan_*) read the
 * same way. The server only translates protobuf to these structs and hits to
 * the wire; it never opens a transaction itself.
 *
 * How a request runs: query and example ids are resolved to their stored
 * vectors; cosine vectors are normalised (once, here); a plain search (no
 * composition) goes to FAISS as one batch; otherwise the filter becomes an id
 * set (posting lists in LMDB; cached per collection until its next write);
 * excluded ids, query ids and example ids are left out by the same selector;
 * a selective filter (at most QV_EXACT_MAX ids when the index holds the
 * vectors in RAM, 2,000 when they are read from LMDB) is answered exactly
 * from the ids' vectors, a broad one by the IVF index with the set as
 * FAISS's IDSelector, probing further until k hits (or the filter's matches
 * run out); then fusion, threshold, MMR and groups, in that order.
 *
 * Caveats:
 *  - Structs point into the caller's memory (e.g. the unpacked protobuf); the
 *    call copies nothing it keeps.
 *  - Errors come with a message in err naming the request's field by its path
 *    (filter.must[1].field.range: ..., positive[0].id ...).
 */
#ifndef QUIVER_QUERY_H
#define QUIVER_QUERY_H

#include <stddef.h>
#include <stdint.h>

#include "quiver/codec.h"
#include "quiver/db.h"
#include "quiver/filter.h"

/* Filters with at most this many matching ids are answered exactly (the cut
 * chosen by quiver-bench --filter-selectivity; README "Filters"). */
#define QV_EXACT_MAX 10000
/* Limit of exclusions. */
#define QV_MAX_EXCLUDE 100000

typedef enum { QV_FUSION_NONE = 0, QV_FUSION_RRF = 1, QV_FUSION_MAX = 2 } qv_fusion;
typedef enum { QV_REC_AVERAGE = 0, QV_REC_BEST = 1, QV_REC_SUM = 2 } qv_rec_strategy;

/* The options of a read request (all but k and the limits are
 * composition: any of them set makes the search a composed one). */
typedef struct qv_query_opts {
    size_t k;
    uint32_t nprobe;  /* 0 = from min_recall */
    float min_recall; /* 0 = 0.95 */
    const qv_filter *filter; /* NULL = none */
    const void *filter_key;  /* canonical bytes of the filter (the cache's key) */
    size_t filter_key_len;
    const uint64_t *exclude;
    size_t n_exclude;
    int has_threshold;
    float threshold;
    const char *group_by; /* NULL or "" = no grouping */
    size_t group_by_len;
    uint32_t group_size;  /* 0 = 1 */
    int has_mmr;
    float mmr_diversity;
    uint32_t mmr_candidates; /* 0 = 10 x k */
    /* checked between queries and chunks of work (NULL: never): non-zero
     * stops the call with QV_CANCELLED (its deadline passed, or cancelled) */
    int (*stop)(void *ctx);
    void *stop_ctx;
} qv_query_opts;

typedef struct qv_example {
    int64_t id;       /* >= 0: a stored item */
    const float *vec; /* id < 0: dim floats (normalised by the engine for cosine) */
    float weight;     /* 0 = 1 */
} qv_example;

/* One query: a vector, or a stored item ("more like this": the item itself
 * is never among its hits). */
typedef struct qv_query {
    const float *vec; /* dim floats (normalised by the engine for cosine), or NULL */
    uint64_t id;      /* when vec is NULL: the stored item */
} qv_query;

typedef enum { QV_READ_SEARCH = 0, QV_READ_RECOMMEND = 1 } qv_read_kind;

/* One read request over one collection. */
typedef struct qv_read {
    qv_coll *coll;
    qv_read_kind kind;
    /* SEARCH: nq queries; fusion NONE gives one list per query, else one
     * fused list (rrf_k 0 = 60) */
    const qv_query *queries;
    size_t nq;
    qv_fusion fusion;
    uint32_t rrf_k;
    /* RECOMMEND: examples (README "Recommend" has each strategy's formula);
     * one list */
    const qv_example *positive, *negative;
    size_t npos, nneg;
    qv_rec_strategy strategy;
    qv_query_opts opts;
    /* what each hit carries besides id and score */
    int with_attributes, with_vectors;
} qv_read;

typedef struct qv_hit {
    uint64_t id;
    float score;
    uint32_t dim;         /* floats at vector (0: none) */
    const uint8_t *attrs; /* with_attributes: the stored attribute blob (quiver/codec.h), */
    size_t attrs_len;     /*   attrs_len 0 = none (or deleted since the index saw it) */
    const float *vector;  /* with_vectors: the stored vector (cosine: unit length) */
} qv_hit;

/* Hits of nlists lists: list i is hits[off[i] .. off[i+1]). The attribute
 * and vector views stay valid until qv_query_result_free. */
typedef struct qv_query_result {
    size_t nlists;
    size_t *off;
    qv_hit *hits;
    /* the engine's: the read snapshot the views point into, the vectors,
     * the attribute blobs held from memory */
    void *snap_;
    float *vecs_;
    void **arefs_;
    size_t narefs_;
} qv_query_result;
/* Free a result (its snapshot ends); a zeroed result or NULL is a no-op.
 * Results hold an LMDB read snapshot: free them when the reply is sent. */
void qv_query_result_free(qv_query_result *r);

/* Answer nreq read requests in one read snapshot: resolve query and example
 * ids, normalise cosine vectors once, plan (plain searches batched in FAISS;
 * composed ones through filters, exclusions, fusion, threshold, MMR and
 * groups), search, and attach what each request asks to return. Lists come
 * in request order: a SEARCH gives nq lists (one with fusion), a RECOMMEND
 * one. Requests may name different collections of one database. The
 * requests' opts.stop is checked between chunks of work (FAISS's interrupt
 * hook is set for the call). Large plain batches may use the cores that
 * concurrent calls leave idle.
 * [out] out: free with qv_query_result_free (also after a failure).
 * [out] failed: index of the request that failed.
 * Returns 0, QV_INVALID, QV_NOTFOUND (collection dropped, or a query or
 * example id that does not exist), QV_CANCELLED, QV_NOMEM, QV_FAISS,
 * QV_LMDB, QV_CORRUPT; err names the field (queries[2].id ...,
 * filter.must[1]..., positive[0].weight ...). */
int qv_query_run(const qv_read *reqs, size_t nreq, qv_query_result *out, size_t *failed,
                 char *err, size_t errlen);

/* Bytes of scratch (candidate scores and ids, refine's included) a search of
 * nq queries for k would allocate: what a caller bounds before asking. */
size_t qv_query_scratch(qv_coll *c, size_t nq, size_t k);

/* ------------------------------------------------------------------ items */
/* One item read by id: found 0 when there is none. v's vector (copy it out
 * with qv_item_vector) and attrs (the attribute blob, attrs_len 0 = none)
 * point into the read's snapshot. */
typedef struct qv_item_ref {
    uint64_t id;
    int found;
    qv_item_view v;
    const uint8_t *attrs;
    size_t attrs_len;
} qv_item_ref;

typedef struct qv_items {
    size_t n;
    qv_item_ref *items;
    void *snap_; /* the engine's */
} qv_items;

/* Read n items of c by id in one snapshot (ids over QV_MAX_ID are not
 * found). [out] out: n refs in the order of ids; free with qv_items_free
 * (also after a failure). Returns 0, QV_NOTFOUND (collection dropped),
 * QV_NOMEM, QV_LMDB, QV_CORRUPT (an item cannot be read: *bad_id names it). */
int qv_items_get(qv_coll *c, const uint64_t *ids, size_t n, qv_items *out, uint64_t *bad_id);
void qv_items_free(qv_items *r);

/* A scan of c in id order, every step in the one snapshot taken at open
 * (hold it only as long as the scan runs: LMDB keeps the pages it sees). */
typedef struct qv_scan qv_scan;
/* [out] out: close with qv_scan_close. Returns 0, QV_NOTFOUND (dropped),
 * QV_NOMEM, QV_LMDB. */
int qv_scan_open(qv_coll *c, qv_scan **out);
/* Items with id >= from, in id order, to cb (it->attrs set when with_attrs;
 * the views are valid until the next step or close) until cb returns
 * non-zero. Returns 0 (no more items), 1 (cb stopped it), cb's negative
 * code, QV_LMDB, QV_CORRUPT. */
int qv_scan_step(qv_scan *s, uint64_t from, int with_attrs,
                 int (*cb)(void *ctx, const qv_item_ref *it), void *ctx);
/* NULL is a no-op. */
void qv_scan_close(qv_scan *s);

#endif
