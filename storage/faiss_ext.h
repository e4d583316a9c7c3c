/*
 * What FAISS's C API (1.15) lacks and Quiver needs, in upstream style: the
 * faiss_ prefix, the C++ names, an int error code (0 = ok, the message in
 * faiss_get_last_error()). Implemented on the C++ library by
 * storage/faiss_ext.cpp; everything else Quiver calls is libfaiss_c itself.
 *
 * Why each one:
 *  - faiss_IndexIVF_set_direct_map: the C API has make_direct_map(bool), which
 *    builds an *array* map only; an array map forbids add_with_ids of
 *    arbitrary ids. Quiver needs the *hashtable* map (removal in O(removed)).
 *  - faiss_IDSelectorArray_new: a hashtable-mapped IVF index removes only
 *    through an IDSelectorArray (it throws on any other selector); the C API
 *    has Range, Batch, Not, And, Or, Xor but not Array.
 *  - faiss_IndexIVF_shrink_to_fit, faiss_Index_shrink_to_fit: no equivalent
 *    in FAISS at all; inverted lists and flat codes are std::vectors that keep
 *    up to half their memory as slack.
 *  - faiss_IndexIVF_reserve_lists: no equivalent in FAISS; filling lists of
 *    known (estimated) sizes without std::vector's doubling keeps a build's
 *    peak memory near the index's final size.
 *  - faiss_set_thread_interrupt_hook: the C API has no InterruptCallback; it is
 *    how a cancelled rebuild stops k-means, per thread.
 *  - faiss_fvec_inner_products_by_idx / faiss_fvec_L2sqr_by_idx: the SIMD
 *    kernels IndexRefineFlat re-ranks with (the C API has only the _ny
 *    variants over contiguous rows).
 *  - faiss_IndexIVFPQFastScan_cast: to recognise a fast-scan index read back
 *    from a file (the C API has casts for IVFFlat and IVFScalarQuantizer only).
 *  - faiss_IndexIVF_count_members, faiss_IndexIVF_rank_lists: what a filter
 *    leaves of each inverted list, and the lists in the coarse quantizer's
 *    order for one query (the planner's evidence for a filtered search).
 *  - faiss_IndexIVF_search_coarse_blas: FAISS scans the coarse quantizer for
 *    fewer than distance_compute_blas_threshold / d queries (1,280 at d 100)
 *    one dot product at a time; here a query is one BLAS matrix-vector
 *    product (1.2-1.6x faster at 1,024-4,096 lists) and a batch of 16 or more
 *    one matrix product (1.5-2.5x), then search_preassigned as
 *    IndexIVF::search would.
 *  - faiss_get_simd_level: the SIMD level the dynamic dispatch chose, for the
 *    start-up log (the C API has no SIMDConfig).
 *
 * Caveat: selectors are not copied; keep them (and the id arrays they point
 * to) alive while they are used.
 */
#ifndef QUIVER_FAISS_EXT_H
#define QUIVER_FAISS_EXT_H

#include <stddef.h>
#include <stdint.h>

#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/IndexIVF_c.h>
#include <faiss/c_api/faiss_c.h>
#include <faiss/c_api/impl/AuxIndexStructures_c.h>

/* DirectMap::Type values (faiss/invlists/DirectMap.h); they reach FAISS files. */
#define QV_FAISS_DIRECT_MAP_NONE 0
#define QV_FAISS_DIRECT_MAP_ARRAY 1
#define QV_FAISS_DIRECT_MAP_HASHTABLE 2

#ifdef __cplusplus
extern "C" {
#endif

/* Set the direct map (QV_FAISS_DIRECT_MAP_*) of an IVF index, building it
 * from the inverted lists. */
int faiss_IndexIVF_set_direct_map(FaissIndexIVF* index, int direct_map_type);

/* Selector over the n ids of ids (not copied). is_member is a linear scan:
 * use it for removal from hashtable-mapped IVF indexes. Free with
 * faiss_IDSelector_free. */
FAISS_DECLARE_CLASS(IDSelectorArray)
int faiss_IDSelectorArray_new(FaissIDSelectorArray** p_sel, size_t n, const idx_t* ids);

/* An IDSelector asking is_member(ctx, id) (FAISS has no selector on a
 * caller's function; filtered searches over sparse ids need one). */
int faiss_IDSelectorCallback_new(FaissIDSelector** p_sel, int (*is_member)(void* ctx, idx_t id),
                                 void* ctx);

/* Release the spare capacity of an IVF index's inverted lists (array lists
 * only; others are left alone). */
int faiss_IndexIVF_shrink_to_fit(FaissIndexIVF* index);

/* Reserve room for sizes[i] entries in list i (nlist sizes) of an IVF
 * index's inverted lists (array lists only; others are left alone). */
int faiss_IndexIVF_reserve_lists(FaissIndexIVF* index, const size_t* sizes);

/* The same for an IVF index, a flat (codes) index or an IDMap around one;
 * other kinds are left alone. */
int faiss_Index_shrink_to_fit(FaissIndex* index);

/* Long computations of the calling thread (k-means training, exhaustive
 * searches) call hook(ctx) now and then (each k-means iteration at least) and
 * stop with an error when it returns non-zero. NULL clears it. Other threads
 * are not affected. */
int faiss_set_thread_interrupt_hook(int (*hook)(void* ctx), void* ctx);

/* ip[j] = <x, y[ids[j]]> / dis[j] = |x - y[ids[j]]|^2 for j < ny, y rows of d
 * floats; ids[j] < 0 gives -inf / +inf (FAISS leaves those untouched: we set
 * them). */
void faiss_fvec_inner_products_by_idx(float* ip, const float* x, const float* y,
                                      const int64_t* ids, size_t d, size_t ny);
void faiss_fvec_L2sqr_by_idx(float* dis, const float* x, const float* y,
                             const int64_t* ids, size_t d, size_t ny);

/* counts[l] = how many ids of inverted list l (nlist counts) are members:
 * bit id of bitmap (nbits bits) when bitmap is not NULL, else is_member(ctx,
 * id). What a filter leaves of each list, for the planner's probe depth. */
int faiss_IndexIVF_count_members(const FaissIndexIVF* index, const uint8_t* bitmap,
                                 uint64_t nbits, int (*is_member)(void* ctx, idx_t id),
                                 void* ctx, uint32_t* counts);

/* The coarse keys of n queries x against every centroid (keys: n rows of
 * nlist floats; smaller is nearer: the L2 distance, or minus the dot
 * product), a block of queries at a time as one BLAS matrix product.
 * Returns 1 (nothing written) when the quantizer is not flat. */
int faiss_IndexIVF_coarse_keys(const FaissIndexIVF* index, size_t n, const float* x, float* keys);

/* The k lists (at most nlist) nearest x as the coarse quantizer ranks them,
 * nearest first, into lists (k ids, -1 past the end), their coarse
 * distances (dis, k floats) and their sizes. A flat quantizer's scan is
 * a BLAS matrix-vector product, as in faiss_IndexIVF_search_coarse_blas;
 * keys (x's row of faiss_IndexIVF_coarse_keys, or NULL) spares it. */
int faiss_IndexIVF_rank_lists(const FaissIndexIVF* index, const float* x, const float* keys, size_t k,
                              idx_t* lists, float* dis, uint32_t* sizes);

/* One query searched in the lists given (params->nprobe of them, nearest
 * first, with their coarse distances, as faiss_IndexIVF_rank_lists gives
 * them): IndexIVF::search_preassigned, no second coarse scan. */
int faiss_IndexIVF_search_lists(const FaissIndexIVF* index, const float* x, idx_t k, const idx_t* lists,
                                const float* dis, const FaissSearchParametersIVF* params, float* distances,
                                idx_t* labels);

/* The index as an IVFPQFastScan, or NULL. */
FAISS_DECLARE_CLASS_INHERITED(IndexIVFPQFastScan, Index)
FaissIndexIVFPQFastScan* faiss_IndexIVFPQFastScan_cast(FaissIndex* index);

/* The SIMD level FAISS's kernels run with ("AVX2", "AVX512", "NONE"...) and
 * whether it was chosen at run time (dynamic dispatch); copies at most len
 * bytes (NUL-terminated) to name. */
int faiss_get_simd_level(char* name, size_t len, int* dynamic_dispatch);

/* Cache the squared norms of an L2 flat quantizer's centroids (after
 * training or reading; the quantizer never changes after): the L2 coarse
 * scan below and FAISS's own read them instead of computing them per search. */
int faiss_IndexIVF_cache_coarse_norms(FaissIndexIVF* index);

/* IndexIVF::search with the coarse quantizer's scan (a flat quantizer) done
 * as one matrix product per block of queries; any other quantizer, or
 * params with quantizer_params: IndexIVF::search itself. params may be NULL.
 * Fast-scan indexes take the lists through their search_preassigned too
 * (FAISS 1.15: a given assignment is used, not recomputed). */
int faiss_IndexIVF_search_coarse_blas(const FaissIndexIVF* index, idx_t n, const float* x, idx_t k,
                                      const FaissSearchParametersIVF* params, float* distances,
                                      idx_t* labels);

#ifdef __cplusplus
}
#endif

#endif
