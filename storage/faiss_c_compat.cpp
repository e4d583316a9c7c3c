/*
 * FAISS C API compatibility unit: Debian ships the c_api headers but not
 * libfaiss_c, so this file implements, on the FAISS C++ library, exactly the
 * C API functions Quiver calls (upstream names, signatures and error codes)
 * plus the extensions of include/quiver/faiss_ext.h. Not a general libfaiss_c.
 * Build with -DQV_FAISS_COMPAT_EXT_ONLY when a real libfaiss_c is linked.
 */
#include <exception>
#include <mutex>
#include <stdexcept>
#include <string>

#include <faiss/Index.h>
#include <faiss/IndexFlat.h>
#include <faiss/IndexIDMap.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/IndexScalarQuantizer.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/FaissAssert.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>
#include <faiss/invlists/InvertedLists.h>

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

#include "quiver/faiss_ext.h"

#ifdef QV_FAISS_COMPAT_EXT_ONLY
#include <faiss/c_api/error_impl.h>
#endif

namespace {

#ifdef QV_FAISS_COMPAT_EXT_ONLY
/* libfaiss_c owns faiss_get_last_error(): record errors where it looks. */
void set_error(const char* what) noexcept {
    try {
        faiss_last_exception = std::current_exception();
        if (!faiss_last_exception)
            faiss_last_exception = std::make_exception_ptr(std::runtime_error(what));
    } catch (...) {
    }
}
#else
/* Message of the last failed call on this thread (faiss_get_last_error);
 * like upstream, a successful call does not clear it. */
thread_local std::string last_error;

void set_error(const char* what) noexcept {
    try {
        last_error = what ? what : "";
    } catch (...) {
        last_error.clear(); /* out of memory while copying: no message */
    }
}
#endif

/* Run f, translating exceptions to the upstream codes: -2 FaissException,
 * -4 other std::exception, -1 anything else. */
template <typename F>
int guarded(F&& f) noexcept {
    try {
        f();
        return 0;
    } catch (const faiss::FaissException& e) {
        set_error(e.what());
        return FAISS_EXCEPT;
    } catch (const std::exception& e) {
        set_error(e.what());
        return STD_EXCEPT;
    } catch (...) {
        set_error("Unknown error");
        return UNKNOWN_EXCEPT;
    }
}

[[maybe_unused]] faiss::Index* idx(FaissIndex* p) {
    return reinterpret_cast<faiss::Index*>(p);
}
[[maybe_unused]] const faiss::Index* idx(const FaissIndex* p) {
    return reinterpret_cast<const faiss::Index*>(p);
}
[[maybe_unused]] faiss::IndexIVF* ivf(FaissIndexIVF* p) {
    return reinterpret_cast<faiss::IndexIVF*>(p);
}
[[maybe_unused]] const faiss::IndexIVF* ivf(const FaissIndexIVF* p) {
    return reinterpret_cast<const faiss::IndexIVF*>(p);
}
[[maybe_unused]] const faiss::IDSelector* sel_of(const FaissIDSelector* p) {
    return reinterpret_cast<const faiss::IDSelector*>(p);
}
[[maybe_unused]] faiss::IDSelector* sel_of(FaissIDSelector* p) {
    return reinterpret_cast<faiss::IDSelector*>(p);
}

/* FaissSearchParametersIVF is FaissSearchParameters (inherited typedef): the
 * object behind it must really be a SearchParametersIVF, as upstream assumes. */
[[maybe_unused]] const faiss::SearchParametersIVF* spivf(const FaissSearchParametersIVF* p) {
    return static_cast<const faiss::SearchParametersIVF*>(
            reinterpret_cast<const faiss::SearchParameters*>(p));
}
[[maybe_unused]] faiss::SearchParametersIVF* spivf(FaissSearchParametersIVF* p) {
    return static_cast<faiss::SearchParametersIVF*>(
            reinterpret_cast<faiss::SearchParameters*>(p));
}

/* Downcast a FaissIndex* to a C++ subclass T, returned as the opaque R*. */
template <typename T, typename R>
R* downcast(FaissIndex* p) {
    return reinterpret_cast<R*>(dynamic_cast<T*>(idx(p)));
}

} // namespace

extern "C" {

#ifndef QV_FAISS_COMPAT_EXT_ONLY

/* ---- error_c.h ---- */

const char* faiss_get_last_error() {
    return last_error.empty() ? nullptr : last_error.c_str();
}

/* ---- Index_c.h ---- */

void faiss_Index_free(FaissIndex* obj) { delete idx(obj); }

int faiss_Index_d(const FaissIndex* index) { return idx(index)->d; }

int faiss_Index_is_trained(const FaissIndex* index) { return idx(index)->is_trained ? 1 : 0; }

idx_t faiss_Index_ntotal(const FaissIndex* index) { return idx(index)->ntotal; }

FaissMetricType faiss_Index_metric_type(const FaissIndex* index) {
    return static_cast<FaissMetricType>(idx(index)->metric_type);
}

int faiss_Index_train(FaissIndex* index, idx_t n, const float* x) {
    return guarded([&] { idx(index)->train(n, x); });
}

int faiss_Index_add_with_ids(FaissIndex* index, idx_t n, const float* x, const idx_t* xids) {
    return guarded([&] { idx(index)->add_with_ids(n, x, xids); });
}

int faiss_Index_search(const FaissIndex* index, idx_t n, const float* x, idx_t k,
                       float* distances, idx_t* labels) {
    return guarded([&] { idx(index)->search(n, x, k, distances, labels); });
}

int faiss_Index_remove_ids(FaissIndex* index, const FaissIDSelector* sel, size_t* n_removed) {
    return guarded([&] {
        size_t n = idx(index)->remove_ids(*sel_of(sel));
        if (n_removed) *n_removed = n;
    });
}

int faiss_Index_sa_code_size(const FaissIndex* index, size_t* size) {
    return guarded([&] { *size = idx(index)->sa_code_size(); });
}

/* ---- IndexFlat_c.h, IndexIVF_c.h, IndexIVFFlat_c.h, IndexScalarQuantizer_c.h,
 *      MetaIndexes_c.h ---- */

FaissIndexFlat* faiss_IndexFlat_cast(FaissIndex* index) {
    return downcast<faiss::IndexFlat, FaissIndexFlat>(index);
}

FaissIndexIVF* faiss_IndexIVF_cast(FaissIndex* index) {
    return downcast<faiss::IndexIVF, FaissIndexIVF>(index);
}

size_t faiss_IndexIVF_nlist(const FaissIndexIVF* index) { return ivf(index)->nlist; }

FaissIndexIVFFlat* faiss_IndexIVFFlat_cast(FaissIndex* index) {
    return downcast<faiss::IndexIVFFlat, FaissIndexIVFFlat>(index);
}

FaissIndexIVFScalarQuantizer* faiss_IndexIVFScalarQuantizer_cast(FaissIndex* index) {
    return downcast<faiss::IndexIVFScalarQuantizer, FaissIndexIVFScalarQuantizer>(index);
}

FaissIndexIDMap* faiss_IndexIDMap_cast(FaissIndex* index) {
    return downcast<faiss::IndexIDMap, FaissIndexIDMap>(index);
}

FaissIndex* faiss_IndexIDMap_sub_index(FaissIndexIDMap* index) {
    return reinterpret_cast<FaissIndex*>(reinterpret_cast<faiss::IndexIDMap*>(index)->index);
}

/* ---- impl/AuxIndexStructures_c.h ---- */

void faiss_IDSelector_free(FaissIDSelector* obj) { delete sel_of(obj); }

int faiss_IDSelectorBatch_new(FaissIDSelectorBatch** p_sel, size_t n, const idx_t* indices) {
    return guarded([&] {
        *p_sel = reinterpret_cast<FaissIDSelectorBatch*>(new faiss::IDSelectorBatch(n, indices));
    });
}

/* ---- index_factory_c.h, index_io_c.h ---- */

int faiss_index_factory(FaissIndex** p_index, int d, const char* description,
                        FaissMetricType metric) {
    return guarded([&] {
        *p_index = reinterpret_cast<FaissIndex*>(
                faiss::index_factory(d, description, static_cast<faiss::MetricType>(metric)));
    });
}

int faiss_write_index(const FaissIndex* index, FILE* f) {
    return guarded([&] { faiss::write_index(idx(index), f); });
}

int faiss_read_index(FILE* f, int io_flags, FaissIndex** p_out) {
    return guarded([&] { *p_out = reinterpret_cast<FaissIndex*>(faiss::read_index(f, io_flags)); });
}

#endif /* QV_FAISS_COMPAT_EXT_ONLY */

/* ---- newer upstream C API (include/quiver/faiss_ext.h) ---- */

/* Defined whenever this unit is the C API implementation, even if newer
 * headers declared them (the signatures are upstream's). */
#ifndef QV_FAISS_COMPAT_EXT_ONLY

void faiss_SearchParameters_free(FaissSearchParameters* obj) {
    delete reinterpret_cast<faiss::SearchParameters*>(obj);
}

int faiss_SearchParameters_new(FaissSearchParameters** p_sp, FaissIDSelector* sel) {
    return guarded([&] {
        auto* sp = new faiss::SearchParameters;
        sp->sel = sel_of(sel);
        *p_sp = reinterpret_cast<FaissSearchParameters*>(sp);
    });
}

int faiss_Index_search_with_params(const FaissIndex* index, idx_t n, const float* x, idx_t k,
                                   const FaissSearchParameters* params, float* distances,
                                   idx_t* labels) {
    return guarded([&] {
        idx(index)->search(n, x, k, distances, labels,
                           reinterpret_cast<const faiss::SearchParameters*>(params));
    });
}

void faiss_SearchParametersIVF_free(FaissSearchParametersIVF* obj) {
    delete reinterpret_cast<faiss::SearchParametersIVF*>(obj);
}

int faiss_SearchParametersIVF_new(FaissSearchParametersIVF** p_sp) {
    return guarded([&] {
        *p_sp = reinterpret_cast<FaissSearchParametersIVF*>(new faiss::SearchParametersIVF);
    });
}

int faiss_SearchParametersIVF_new_with(FaissSearchParametersIVF** p_sp, FaissIDSelector* sel,
                                       size_t nprobe, size_t max_codes) {
    return guarded([&] {
        auto* sp = new faiss::SearchParametersIVF;
        sp->sel = sel_of(sel);
        sp->nprobe = nprobe;
        sp->max_codes = max_codes;
        *p_sp = reinterpret_cast<FaissSearchParametersIVF*>(sp);
    });
}

const FaissIDSelector* faiss_SearchParametersIVF_sel(const FaissSearchParametersIVF* sp) {
    return reinterpret_cast<const FaissIDSelector*>(spivf(sp)->sel);
}

size_t faiss_SearchParametersIVF_nprobe(const FaissSearchParametersIVF* sp) {
    return spivf(sp)->nprobe;
}

void faiss_SearchParametersIVF_set_nprobe(FaissSearchParametersIVF* sp, size_t nprobe) {
    spivf(sp)->nprobe = nprobe;
}

size_t faiss_SearchParametersIVF_max_codes(const FaissSearchParametersIVF* sp) {
    return spivf(sp)->max_codes;
}

void faiss_SearchParametersIVF_set_max_codes(FaissSearchParametersIVF* sp, size_t max_codes) {
    spivf(sp)->max_codes = max_codes;
}

int faiss_IDSelectorNot_new(FaissIDSelectorNot** p_sel, const FaissIDSelector* sel) {
    return guarded([&] {
        *p_sel = reinterpret_cast<FaissIDSelectorNot*>(new faiss::IDSelectorNot(sel_of(sel)));
    });
}

#endif /* QV_FAISS_COMPAT_EXT_ONLY */

/* ---- extensions, not in mainline libfaiss_c (include/quiver/faiss_ext.h) ---- */

int faiss_IndexIVF_set_direct_map(FaissIndexIVF* index, int direct_map_type) {
    return guarded([&] {
        if (direct_map_type != faiss::DirectMap::NoMap &&
            direct_map_type != faiss::DirectMap::Array &&
            direct_map_type != faiss::DirectMap::Hashtable)
            FAISS_THROW_FMT("unknown direct map type %d", direct_map_type);
        ivf(index)->set_direct_map_type(static_cast<faiss::DirectMap::Type>(direct_map_type));
    });
}

int faiss_IDSelectorArray_new(FaissIDSelectorArray** p_sel, size_t n, const idx_t* ids) {
    return guarded([&] {
        *p_sel = reinterpret_cast<FaissIDSelectorArray*>(new faiss::IDSelectorArray(n, ids));
    });
}

namespace {
/* The interrupt hook of the calling thread (NULL: never interrupt). FAISS's
 * InterruptCallback is process-wide and polled by long computations (each
 * k-means iteration, blocks of exhaustive searches); this one answers per
 * thread, so that cancelling one build does not stop another, and lets the
 * caller report progress on the way. */
thread_local int (*tls_hook)(void*) = nullptr;
thread_local void* tls_hook_ctx = nullptr;

struct ThreadHookInterrupt : faiss::InterruptCallback {
    bool want_interrupt() override {
        return tls_hook && tls_hook(tls_hook_ctx) != 0;
    }
};
} // namespace

int faiss_set_thread_interrupt_hook(int (*hook)(void* ctx), void* ctx) {
    return guarded([&] {
        static std::once_flag once;
        std::call_once(once, [] {
            faiss::InterruptCallback::instance.reset(new ThreadHookInterrupt());
        });
        tls_hook = hook;
        tls_hook_ctx = ctx;
    });
}

int faiss_IndexIVF_shrink_to_fit(FaissIndexIVF* index) {
    return guarded([&] {
        /* std::vector grows its capacity geometrically while lists fill up:
         * give the slack back, one list at a time */
        auto* al = dynamic_cast<faiss::ArrayInvertedLists*>(ivf(index)->invlists);
        if (!al) return;
        for (size_t i = 0; i < al->nlist; i++) {
            al->codes[i].shrink_to_fit();
            al->ids[i].shrink_to_fit();
        }
    });
}

} /* extern "C" */
