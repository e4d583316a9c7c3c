/*
 * qv_query: composed queries over one collection. A plain C description of a
 * request (queries or recommendation examples, filter, exclusions, k,
 * grouping, MMR, fusion, score threshold) in; hits out. The server only
 * translates protobuf to these structs and hits to the wire.
 *
 * How a request runs: the filter becomes an id set (posting lists in LMDB,
 * quiver/postings.h; cached per collection until its next write); excluded
 * ids, query ids and example ids are left out by the same selector; a
 * selective filter (QV_EXACT_MAX ids or fewer) is answered exactly from the
 * ids' vectors, a broad one by the IVF index with the set as FAISS's
 * IDSelector, probing further until k hits (or the filter's matches run
 * out); then fusion, threshold, MMR and groups, in that order.
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
#include "quiver/idset.h"

/* Filters with at most this many matching ids are answered exactly (the cut
 * chosen by quiver-bench --filter-selectivity; README "Filters"). */
#define QV_EXACT_MAX 10000
/* Limits of a filter and of exclusions. */
#define QV_FILTER_MAX_DEPTH 4
#define QV_FILTER_MAX_CONDS 1000
#define QV_MAX_EXCLUDE 100000

/* A Value to compare with: type 0 = unset (invalid), QV_ATTR_STRING_LIST is
 * refused. */
typedef struct qv_value {
    qv_attr_type type;
    const char *s;
    size_t len;
    int64_t i;
    double d;
    int b;
} qv_value;

typedef enum { QV_TEST_NONE = 0, QV_TEST_EQUALS, QV_TEST_ANY_OF, QV_TEST_RANGE, QV_TEST_EXISTS } qv_test;
typedef enum { QV_COND_NONE = 0, QV_COND_FIELD, QV_COND_IDS, QV_COND_FILTER } qv_cond_kind;

typedef struct qv_filter qv_filter;

typedef struct qv_cond {
    qv_cond_kind kind;
    /* FIELD */
    const char *key;
    size_t key_len;
    qv_test test;
    const qv_value *values; /* EQUALS: 1, ANY_OF: n */
    size_t n_values;
    int has_lo, lo_incl, has_hi, hi_incl; /* RANGE */
    double lo, hi;
    int exists; /* EXISTS */
    /* IDS */
    const uint64_t *ids;
    size_t n_ids;
    /* FILTER */
    const qv_filter *filter;
} qv_cond;

struct qv_filter {
    const qv_cond *must, *should, *must_not;
    size_t n_must, n_should, n_must_not;
};

/* Check a filter's shape and its tests against the attribute types the
 * collection holds; evaluate it to the set of matching ids (from a snapshot
 * of the store). prefix names it in messages ("filter"). Returns 0, QV_INVALID
 * (err says which condition and why), QV_NOMEM, QV_LMDB, QV_CORRUPT. */
int qv_filter_eval(qv_store *st, MDB_txn *txn, uint32_t coll_id, const qv_filter *f,
                   const char *prefix, qv_idset **out, char *err, size_t errlen);

typedef enum { QV_FUSION_NONE = 0, QV_FUSION_RRF = 1, QV_FUSION_MAX = 2 } qv_fusion;
typedef enum { QV_REC_AVERAGE = 0, QV_REC_BEST = 1, QV_REC_SUM = 2 } qv_rec_strategy;

/* What every composed request shares. */
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

typedef struct qv_hit {
    uint64_t id;
    float score;
} qv_hit;

/* Hits of nlists lists: list i is hits[off[i] .. off[i+1]). Free with
 * qv_query_result_free. */
typedef struct qv_query_result {
    size_t nlists;
    size_t *off;
    qv_hit *hits;
} qv_query_result;
void qv_query_result_free(qv_query_result *r);

/* Search nq queries q (nq*dim floats, normalised for cosine; qids[i] >= 0:
 * query i is that stored item, never returned). fusion NONE: one list per
 * query; else one fused list (rrf_k 0 = 60). Returns 0, QV_INVALID,
 * QV_NOTFOUND (collection dropped), QV_NOMEM, QV_FAISS, QV_LMDB; err says why. */
int qv_query_search(qv_coll *c, size_t nq, const float *q, const int64_t *qids,
                    const qv_query_opts *o, qv_fusion fusion, uint32_t rrf_k,
                    qv_query_result *out, char *err, size_t errlen);

typedef struct qv_example {
    int64_t id;       /* >= 0: a stored item */
    const float *vec; /* id < 0: dim floats */
    float weight;     /* 0 = 1 */
} qv_example;

/* Recommend from examples (README "Recommend" has each strategy's formula).
 * Returns as qv_query_search, and QV_NOTFOUND naming an example id. */
int qv_query_recommend(qv_coll *c, const qv_example *pos, size_t npos, const qv_example *neg,
                       size_t nneg, qv_rec_strategy strategy, const qv_query_opts *o,
                       qv_query_result *out, char *err, size_t errlen);

#endif
