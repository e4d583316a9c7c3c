/*
 * FAISS C API declarations that Debian's FAISS 1.7.3 headers lack, with the
 * names and signatures of newer releases, so the code builds unchanged
 * against a newer FAISS. Include this instead of the individual c_api headers.
 * Implemented by storage/faiss_c_compat.cpp (or by a real libfaiss_c).
 *
 * Two groups:
 *  - Upstream (FAISS >= 1.7.4 C API): search parameters, search with
 *    parameters, the IVF search parameters, IDSelectorNot. Declared only when
 *    the FAISS headers do not declare them already (detected through the
 *    FAISS_DECLARE_SEARCH_PARAMETERS_DOWNCAST macro that came with them, or
 *    forced by defining QV_FAISS_HAVE_SEARCH_PARAMS); the declarations are
 *    identical to upstream's, so a redeclaration would be harmless anyway.
 *  - Not in mainline FAISS's C API (libfaiss_c lacks them even in 1.8):
 *    faiss_IndexIVF_set_direct_map (signature of the blevesearch/faiss fork's
 *    c_api/IndexIVF_c_ex.h) and faiss_IDSelectorArray_new (named after the
 *    C++ class, in upstream style). The compatibility unit must provide these
 *    two even when a real libfaiss_c is linked (build it with
 *    -DQV_FAISS_COMPAT_EXT_ONLY then).
 *
 * Caveats (FAISS 1.7.3):
 *  - Search parameters are honoured by the IVF family and plain flat indexes;
 *    IndexIDMap::search THROWS when given any parameters ("search params not
 *    supported for this index"), so a filtered search cannot go through an
 *    "IDMap,Flat" index on 1.7.3.
 *  - Selectors and parameters are not copied: keep them (and the id arrays
 *    they point to) alive for the duration of the call that uses them.
 */
#ifndef QUIVER_FAISS_EXT_H
#define QUIVER_FAISS_EXT_H

#include <stddef.h>

#include <faiss/c_api/faiss_c.h>
#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/IndexIVF_c.h>
#include <faiss/c_api/impl/AuxIndexStructures_c.h>

#if !defined(QV_FAISS_HAVE_SEARCH_PARAMS) && defined(FAISS_DECLARE_SEARCH_PARAMETERS_DOWNCAST)
#define QV_FAISS_HAVE_SEARCH_PARAMS 1
#endif

/* DirectMap::Type values (faiss/invlists/DirectMap.h); they reach FAISS files. */
#define QV_FAISS_DIRECT_MAP_NONE 0
#define QV_FAISS_DIRECT_MAP_ARRAY 1
#define QV_FAISS_DIRECT_MAP_HASHTABLE 2

#ifdef __cplusplus
extern "C" {
#endif

#ifndef QV_FAISS_HAVE_SEARCH_PARAMS

/* Optional search parameters; sel (may be NULL) restricts the ids considered.
 * Free with faiss_SearchParameters_free. */
FAISS_DECLARE_CLASS(SearchParameters)
FAISS_DECLARE_DESTRUCTOR(SearchParameters)

int faiss_SearchParameters_new(FaissSearchParameters** p_sp, FaissIDSelector* sel);

/* faiss_Index_search with parameters (NULL = none): x: n*d floats,
 * distances and labels: n*k each, missing results padded with label -1. */
int faiss_Index_search_with_params(
        const FaissIndex* index,
        idx_t n,
        const float* x,
        idx_t k,
        const FaissSearchParameters* params,
        float* distances,
        idx_t* labels);

/* IVF search parameters: nprobe lists to visit, max_codes (0 = no limit). A
 * FaissSearchParametersIVF* is a FaissSearchParameters*. */
FAISS_DECLARE_CLASS_INHERITED(SearchParametersIVF, SearchParameters)
FAISS_DECLARE_DESTRUCTOR(SearchParametersIVF)

int faiss_SearchParametersIVF_new(FaissSearchParametersIVF** p_sp);
int faiss_SearchParametersIVF_new_with(
        FaissSearchParametersIVF** p_sp,
        FaissIDSelector* sel,
        size_t nprobe,
        size_t max_codes);

FAISS_DECLARE_GETTER(SearchParametersIVF, const FaissIDSelector*, sel)
FAISS_DECLARE_GETTER_SETTER(SearchParametersIVF, size_t, nprobe)
FAISS_DECLARE_GETTER_SETTER(SearchParametersIVF, size_t, max_codes)

/* Ids not selected by sel (not owned: keep sel alive). Free with
 * faiss_IDSelector_free. */
FAISS_DECLARE_CLASS(IDSelectorNot)
int faiss_IDSelectorNot_new(FaissIDSelectorNot** p_sel, const FaissIDSelector* sel);

#endif /* QV_FAISS_HAVE_SEARCH_PARAMS */

/* Extensions (not in mainline libfaiss_c), always declared. */

/* Set the direct map (QV_FAISS_DIRECT_MAP_*) of an IVF index, building it
 * from the inverted lists. A hashtable map makes remove_ids cost O(removed),
 * but then remove_ids accepts only an IDSelectorArray. */
int faiss_IndexIVF_set_direct_map(FaissIndexIVF* index, int direct_map_type);

/* Selector over the n ids of ids (not copied: keep ids alive while the
 * selector is used). is_member is a linear scan: use it for removal from
 * hashtable-mapped IVF indexes, IDSelectorBatch elsewhere. Free with
 * faiss_IDSelector_free. */
FAISS_DECLARE_CLASS(IDSelectorArray)
int faiss_IDSelectorArray_new(FaissIDSelectorArray** p_sel, size_t n, const idx_t* ids);

/* Quiver extension (no upstream equivalent): release the spare capacity of
 * an IVF index's inverted lists (array lists only; others are left alone).
 * (std::vector doubles its capacity as a list grows, so up to half of a
 * list's memory can be unused after many adds.) */
int faiss_IndexIVF_shrink_to_fit(FaissIndexIVF* index);

/* Quiver extension: long computations of the calling thread (k-means
 * training, exhaustive searches) call hook(ctx) now and then (each k-means
 * iteration at least) and stop with an error ("computation interrupted") when
 * it returns non-zero. NULL clears it. Other threads are not affected. */
int faiss_set_thread_interrupt_hook(int (*hook)(void* ctx), void* ctx);

#ifdef __cplusplus
}
#endif

#endif
