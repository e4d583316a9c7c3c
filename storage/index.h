/*
 * qv_index: one collection's in-memory ANN index, on the FAISS C API.
 * Kinds: exact (flat, ids mapped with IndexIDMap) and the IVF family (ivf_flat,
 * ivf_pq, ivf_pq_fs, ivf_sq8; ids stored in the inverted lists, a hashtable
 * direct map so that removal by id costs O(removed)). Compressed kinds with
 * refine > 1 also keep the vectors in RAM (an id -> row hash and a row array,
 * what FAISS's IndexRefineFlat does for sequential ids) and re-rank refine x k
 * candidates with FAISS's SIMD distance kernels.
 *
 * Caveats:
 *  - Not thread-safe for writers: qv_index_add/remove/train must not run while
 *    any other call uses the same index. Concurrent qv_index_search calls on
 *    one index are safe (nprobe travels in per-call search parameters).
 *  - COSINE: vectors added and trained on are normalised inside (copies);
 *    queries must come unit length (the engine normalises them once, in
 *    qv_query_run). The index itself runs inner product. Scores are what the API promises: squared L2
 *    distance (ascending), inner product / cosine similarity (descending).
 *  - ids are 0 .. INT64_MAX; -1 marks "no result" in label arrays.
 *  - Adding an id that is already in the index makes a duplicate: callers
 *    remove replaced ids first (the engine knows which ids exist).
 */
#ifndef QUIVER_INDEX_H
#define QUIVER_INDEX_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "quiver/types.h"

/* refine for ivf_pq_fs when the spec says 0: re-rank 10 x k candidates */
#define QV_PQ_FS_DEFAULT_REFINE 10
/* Re-ranking takes refine x max(k, QV_REFINE_MIN_K) candidates: recall@10
 * then does not depend on k below it (calibration runs at k = 11), and small
 * k still get enough candidates from 4-bit codes (re-ranking is cheap next
 * to the scan). */
#define QV_REFINE_MIN_K 50

typedef struct qv_index qv_index;

/* Check that params can work for dim: [in] p, whose kind must be resolved
 * (QV_KIND_AUTO is rejected); returns 0 or QV_INVALID with a message naming
 * the field and value in err (errlen bytes), e.g.
 * "index.pq_m 7 does not divide dim 100". Limits: dim 1..65536, nlist
 * 1..2^20 for IVF kinds, pq_nbits <= 8 (FAISS's IndexIVFPQ limit). */
int qv_index_params_check(uint32_t dim, const qv_index_params *p, char *err, size_t errlen);

/* Create an empty index. Flat indexes are trained at once; IVF kinds need
 * qv_index_train. [out] out: free with qv_index_free.
 * Returns 0, QV_INVALID (bad params), QV_FAISS, QV_NOMEM. */
int qv_index_new(uint32_t dim, qv_metric metric, const qv_index_params *p, qv_index **out);

/* Free an index; NULL is a no-op. */
void qv_index_free(qv_index *ix);

/* Train an IVF index on x: n*dim floats. No-op for flat. Returns 0, QV_INVALID
 * (n < nlist, ivf_pq: n < 2^pq_nbits, or the index already holds items),
 * QV_NOMEM, QV_FAISS. */
int qv_index_train(qv_index *ix, size_t n, const float *x);

/* Add n vectors x (n*dim floats) with ids (n). Returns 0, QV_INVALID (not
 * trained, negative id), QV_NOMEM, QV_FAISS (the index may then hold part of
 * the batch). */
int qv_index_add(qv_index *ix, size_t n, const int64_t *ids, const float *x);

/* Remove the ids (n) that are present; absent ids are ignored; [out] removed
 * (may be NULL) counts them. Returns 0, QV_INVALID, QV_FAISS. */
int qv_index_remove(qv_index *ix, size_t n, const int64_t *ids, size_t *removed);

/* k nearest neighbours of nq queries q (nq*dim floats). nprobe 0 = the index's
 * default nprobe (qv_index_set_nprobe); ignored for flat. [out] scores,
 * labels: nq*k each, best first; missing results have label -1 (and an
 * unspecified score). Fewer than 16 queries run on the calling thread only;
 * larger batches may use OpenMP. Returns 0, QV_INVALID (k == 0, not trained),
 * QV_NOMEM, QV_FAISS. */
int qv_index_search(const qv_index *ix, size_t nq, const float *q, size_t k, uint32_t nprobe,
                    float *scores, int64_t *labels);

/* An id selector for filtered searches: ids allowed by a dense bitmap
 * (bit i of byte i/8 for ids below nbits; the bitmap must outlive the
 * selector) or, without one, by member(ctx, id) != 0 (NULL: every id); minus
 * the ndeny ids deny (copied). [out] out: free with qv_idsel_free.
 * Returns 0, QV_NOMEM, QV_FAISS. */
typedef struct qv_idsel qv_idsel;
int qv_idsel_new(const uint8_t *bitmap, uint64_t nbits, int (*member)(void *ctx, int64_t id),
                 void *ctx, const int64_t *deny, size_t ndeny, qv_idsel **out);
void qv_idsel_free(qv_idsel *s);

/* qv_index_search over the ids sel allows only (NULL: all). IVF kinds scan
 * nprobe lists (capped at nlist) and return fewer than k hits when those
 * lists hold fewer allowed items. */
int qv_index_search_sel(const qv_index *ix, size_t nq, const float *q, size_t k, uint32_t nprobe,
                        const qv_idsel *sel, float *scores, int64_t *labels);

/* The vector of id (dim floats; unit length for cosine) from the index's own
 * memory: the refine copy, or ivf_flat's lists. Returns 0, QV_NOTFOUND,
 * QV_INVALID (this kind keeps no exact vectors: read them from the store). */
int qv_index_get_vector(const qv_index *ix, int64_t id, float *out);

/* Exact scores of q (normalised for cosine) against the n ids from the
 * index's own vectors (as qv_index_get_vector): found[j] 0 where id j is not
 * in the index. Returns 0, QV_NOMEM, QV_INVALID (no exact vectors here). */
int qv_index_score_ids(const qv_index *ix, const float *q, size_t n, const int64_t *ids,
                       float *scores, uint8_t *found);

/* Items held. */
size_t qv_index_count(const qv_index *ix);
int qv_index_is_trained(const qv_index *ix);
uint32_t qv_index_dim(const qv_index *ix);
qv_metric qv_index_metric(const qv_index *ix);
/* Params the index was built with (nlist etc. as resolved). */
const qv_index_params *qv_index_get_params(const qv_index *ix);
/* Default nprobe for IVF kinds (ignored for flat; get returns 0 for flat).
 * 0 restores the built-in default, max(8, ceil(sqrt(nlist))) capped at nlist,
 * which is also the value after qv_index_new and qv_index_read. Safe to call
 * while searches run. */
void qv_index_set_nprobe(qv_index *ix, uint32_t nprobe);
uint32_t qv_index_get_nprobe(const qv_index *ix);

/* Write the FAISS index to an open file at its current position / read one
 * back from the current position; the caller owns the file, its header, fflush,
 * fsync and atomicity. Reading checks that the FAISS index matches dim, metric
 * and kind, nlist and code size (pq_m * pq_nbits) of p. The default nprobe is
 * not stored: the caller sets it again after reading (qv_index_set_nprobe).
 * Returns 0, QV_INVALID (bad arguments), QV_IO (stdio error), QV_CORRUPT
 * (mismatch, truncated or unreadable), QV_NOMEM, QV_FAISS. FAISS 1.7.3 leaks
 * the partly read index when it fails mid-file (bounded by the file's size). */
int qv_index_write(const qv_index *ix, FILE *f);
int qv_index_read(FILE *f, uint32_t dim, qv_metric metric, const qv_index_params *p,
                  qv_index **out);

/* For the calling thread: training (and other long FAISS work) calls
 * hook(ctx) now and then (at least once per k-means iteration: a place to
 * report progress) and stops with QV_CANCELLED when it returns non-zero.
 * NULL clears it. */
void qv_index_cancel_hook(int (*hook)(void *ctx), void *ctx);

/* Searches rank the coarse lists with BLAS products (on, the default) or
 * with FAISS's own scan (off): process-wide, for tests and A/B runs. */
void qv_index_set_coarse_blas(int on);
/* One query's coarse scan in half precision, rescored (coarse.h): on by
 * default where the CPU can; off for tests and A/Bs. */
void qv_index_set_coarse_half(int on);

/* The refine copy: does the index keep one (refine > 1 on a compressed kind)? */
int qv_index_has_refine(const qv_index *ix);
/* The refine copy and its id -> row hash (the blocks a search reads at
 * random: 1,000 rows for k 100) onto transparent huge pages (pages.h), once
 * filled: after a load or a build, not during the build (a build's peak RSS
 * is not raised by its last partly filled 2 MiB pages). The caller keeps
 * writers out (the rows do not move meanwhile). */
void qv_index_huge_pages(qv_index *ix);
/* The same in steps of up to 64 MiB (a writer waits for one step at most):
 * step i of it; returns 1 while steps remain. */
int qv_index_huge_pages_step(qv_index *ix, size_t step);
/* How many vectors a filtered walk of this index may scan per allowed id
 * before scoring the allowed ids exactly (refine copy or IVF-Flat's lists)
 * costs less. A walk reads its lists in order, the exact path looks every
 * allowed id up, which costs several times more per vector (inferred, not
 * timed per vector: on glove's ivf_flat, walks of up to 9 vectors per
 * allowed one beat the exact path) except against SQ8's walk, which decodes
 * every vector. Glove-100, a filter keeping 3 of 10 k-means clusters (20%),
 * CPU per query at 2 / 16: ivf_pq_fs 10.1 / 4.3 ms, ivf_flat 21 / 6.7 ms,
 * ivf_pq (refine) 9.0 / 5.5 ms, ivf_sq8 (refine) 9.9 / 10.8 ms; the
 * MNIST-shaped set (784-d, ivf_flat) 1.01 / 0.84 ms; recall@10 the same
 * (bench/results/2026-12-07-deep-walks). */
double qv_index_walk_exact_ratio(const qv_index *ix);

/* IVF kinds: counts[l] (params.nlist counts) = the ids of inverted list l
 * that a filter keeps: bit id of bitmap (nbits bits), or member(ctx, id)
 * when bitmap is NULL. O(items). Returns 0, QV_INVALID (flat), QV_FAISS. */
int qv_index_list_members(const qv_index *ix, const uint8_t *bitmap, uint64_t nbits,
                          int (*member)(void *ctx, int64_t id), void *ctx, uint32_t *counts);
/* IVF kinds with a flat coarse quantizer: the coarse keys of nq queries (q,
 * unit length for COSINE) against every list, one BLAS product for them
 * all: keys, nq rows of nlist floats, each for qv_index_rank_lists. Returns
 * 0, QV_INVALID (another kind or quantizer), QV_FAISS. */
int qv_index_coarse_keys(const qv_index *ix, size_t nq, const float *q, float *keys);
/* IVF kinds: the k lists nearest q (unit length for COSINE), nearest first,
 * as the coarse quantizer ranks them: lists (k, -1 past nlist), their coarse
 * distances (dis, k floats) and their sizes. keys: q's row of
 * qv_index_coarse_keys (no scan then), or NULL. Returns 0, QV_INVALID,
 * QV_FAISS. */
int qv_index_rank_lists(const qv_index *ix, const float *q, const float *keys, size_t k, int64_t *lists,
                        float *dis, uint32_t *sizes);

/* qv_index_search_sel for one query of an IVF kind over the first nprobe
 * lists of a ranking qv_index_rank_lists gave (lists, dis): the same answer
 * without a second coarse scan. */
int qv_index_search_lists(const qv_index *ix, const float *q, size_t k, uint32_t nprobe,
                          const int64_t *lists, const float *dis, const qv_idsel *sel, float *scores,
                          int64_t *labels);

/* Candidates FAISS returns for a search of k: refine x max(k,
 * QV_REFINE_MIN_K) with a refine copy, else k (SIZE_MAX on overflow). */
size_t qv_index_candidates(const qv_index *ix, size_t k);

/* Room for n items in all, before filling a trained index of known size, so
 * that no std::vector doubling leaves slack: the refine copy exactly, and
 * (array-list IVF kinds) each inverted list as estimated from where the ns
 * sample vectors xs (ns*dim floats, e.g. the training sample; NULL/0: lists
 * are left alone) fall, scaled to n with a margin. Returns 0, QV_NOMEM,
 * QV_FAISS. */
int qv_index_reserve(qv_index *ix, size_t n, size_t ns, const float *xs);

/* Remove every item, keeping what training learnt (quantizer, codebooks):
 * a trained index from elsewhere refilled with this collection's items.
 * Returns 0 or QV_FAISS. */
int qv_index_clear(qv_index *ix);

/* Give back the spare capacity the inverted lists grew while items were
 * added (no-op for flat). Returns 0 or QV_FAISS. */
int qv_index_compact(qv_index *ix);

/* Bytes of memory the index holds (approximate: codes + ids + centroids). */
size_t qv_index_memory(const qv_index *ix);

#endif
