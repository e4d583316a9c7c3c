/*
 * The steps that turn ranked candidates into a read's hits, as functions over
 * candidate lists: fusion of several queries' lists (RRF, best score), and
 * the selection of k hits (groups capped per value, MMR diversification).
 * The engine (one node, storage/query.c) and the cluster's router (the
 * shards' merged lists, cluster/router.c) call the same functions, so that a
 * cluster composes exactly as one node does.
 */
#ifndef QUIVER_COMPOSE_H
#define QUIVER_COMPOSE_H

#include <stddef.h>
#include <stdint.h>

#include "quiver/query.h"

/* A ranked candidate: the score reported, and the similarity that orders
 * (higher is better: -distance for L2) and that MMR and thresholds read. */
typedef struct qv_cand {
    int64_t id;
    float score;
    float sim;
} qv_cand;

/* qsort order: sim descending, then id ascending. */
int qv_cand_cmp(const void *a, const void *b);

/* Fuse nq ranked lists into one (QV_FUSION_RRF: score = sum of 1/(rrf_k +
 * rank), rrf_k 0 = 60; QV_FUSION_MAX: an item's best similarity), each item
 * once, in fused order. [out] out (malloc'd, *nout entries). Returns 0 or
 * QV_NOMEM. */
int qv_fuse(qv_fusion fusion, uint32_t rrf_k, qv_cand *const *lists, const size_t *ns, size_t nq,
            qv_cand **out, size_t *nout);

/* Where the selection reads what it needs beyond the candidates. */
typedef struct qv_select_src {
    /* MMR: the vectors of ids[0..n) into vec (n*dim floats), found[i] 0
     * when an item has none; and the similarity of two items (the
     * collection's: -distance for L2) */
    void (*vectors)(void *ctx, const int64_t *ids, size_t n, float *vec, uint8_t *found);
    float (*item_sim)(void *ctx, const float *a, const float *b);
    uint32_t dim;
    /* groups: id's value of the group_by attribute as bytes (type +
     * payload) into buf (cap bytes); 0 = it has none */
    size_t (*group_value)(void *ctx, int64_t id, uint8_t *buf, size_t cap);
    void *ctx;
} qv_select_src;

/* Pick up to k of the n ranked candidates cs into out (k entries): with
 * grouping, at most group_size (0 = 1) per group value and none without a
 * value; with MMR, among the first mmr_candidates (0 = 10k) by
 * (1 - diversity) x sim - diversity x (the most similar pick so far).
 * Returns how many, or a negative error code. */
typedef struct qv_select_opts {
    size_t k;
    int grouping;
    uint32_t group_size;
    int has_mmr;
    float mmr_diversity;
    uint32_t mmr_candidates;
} qv_select_opts;
long qv_select(const qv_select_opts *o, const qv_select_src *src, const qv_cand *cs, size_t n,
               qv_cand *out);

/* The longest group value qv_select compares (longer ones are cut). */
#define QV_GROUP_VALUE_MAX 202

#endif
