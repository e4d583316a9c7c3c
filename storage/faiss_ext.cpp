/*
 * The functions FAISS's C API lacks (include/quiver/faiss_ext.h says which and
 * why), on the FAISS C++ library. Errors are reported the way libfaiss_c does:
 * an error code, and the exception kept where faiss_get_last_error() reads it.
 */
#include <cmath>
#include <cstring>
#include <exception>
#include <mutex>
#include <string>
#include <algorithm>
#include <vector>

#include <faiss/IndexFlat.h>
#include <faiss/IndexFlatCodes.h>
#include <faiss/IndexIDMap.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFPQFastScan.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/FaissAssert.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/invlists/InvertedLists.h>
#include <faiss/utils/Heap.h>
#include <faiss/utils/distances.h>
#include <faiss/utils/simd_levels.h>
#include <faiss/utils/utils.h>

#include <faiss/c_api/error_c.h>
#include <faiss/c_api/error_impl.h>

#include "faiss_ext.h"

/* BLAS (OpenBLAS, the one FAISS is built with), Fortran interface */
extern "C" int sgemv_(const char* trans, const int* m, const int* n, const float* alpha, const float* a,
                      const int* lda, const float* x, const int* incx, const float* beta, float* y,
                      const int* incy);
extern "C" int sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
                      const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
                      const float* beta, float* c, const int* ldc);

namespace {

/* Run f; on an exception, keep it for faiss_get_last_error() and return the
 * C API's code (-2 FaissException, -4 other std::exception, -1 other). */
template <typename F>
int guarded(F&& f) noexcept {
    try {
        f();
        return 0;
    } catch (const faiss::FaissException&) {
        faiss_last_exception = std::current_exception();
        return FAISS_EXCEPT;
    } catch (const std::exception&) {
        faiss_last_exception = std::current_exception();
        return STD_EXCEPT;
    } catch (...) {
        faiss_last_exception = std::current_exception();
        return UNKNOWN_EXCEPT;
    }
}

/* Lists are MaybeOwnedVectors: only owned ones (not views of a mapped file)
 * have slack to give back. */
template <typename T>
void shrink(faiss::MaybeOwnedVector<T>& v) {
    if (!v.is_owned) return;
    v.owned_data.shrink_to_fit();
    v.c_ptr = v.owned_data.data();
    v.c_size = v.owned_data.size();
}

faiss::IndexIVF* ivf(FaissIndexIVF* p) {
    return reinterpret_cast<faiss::IndexIVF*>(p);
}

/* The interrupt hook of the calling thread (NULL: never interrupt). FAISS's
 * InterruptCallback is process-wide and polled by long computations; this one
 * answers per thread, so that cancelling one build does not stop another. */
thread_local int (*tls_hook)(void*) = nullptr;
thread_local void* tls_hook_ctx = nullptr;

struct ThreadHookInterrupt : faiss::InterruptCallback {
    bool want_interrupt() override {
        return tls_hook && tls_hook(tls_hook_ctx) != 0;
    }
};

struct IDSelectorCallback : faiss::IDSelector {
    int (*fn)(void*, faiss::idx_t);
    void* ctx;
    IDSelectorCallback(int (*f)(void*, faiss::idx_t), void* c) : fn(f), ctx(c) {}
    bool is_member(faiss::idx_t id) const override { return fn(ctx, id) != 0; }
};

} // namespace

extern "C" {

int faiss_IDSelectorCallback_new(FaissIDSelector** p_sel, int (*is_member)(void* ctx, idx_t id),
                                 void* ctx) {
    return guarded([&] {
        *p_sel = reinterpret_cast<FaissIDSelector*>(new IDSelectorCallback(is_member, ctx));
    });
}

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

int faiss_IndexIVF_shrink_to_fit(FaissIndexIVF* index) {
    return guarded([&] {
        auto* al = dynamic_cast<faiss::ArrayInvertedLists*>(ivf(index)->invlists);
        if (!al) return;
        for (size_t i = 0; i < al->nlist; i++) {
            shrink(al->codes[i]);
            shrink(al->ids[i]);
        }
    });
}

int faiss_Index_shrink_to_fit(FaissIndex* index) {
    return guarded([&] {
        auto* fi = reinterpret_cast<faiss::Index*>(index);
        if (auto* m = dynamic_cast<faiss::IndexIDMap*>(fi)) {
            m->id_map.shrink_to_fit();
            fi = m->index;
        }
        if (auto* fc = dynamic_cast<faiss::IndexFlatCodes*>(fi)) shrink(fc->codes);
        if (auto* iv = dynamic_cast<faiss::IndexIVF*>(fi))
            faiss_IndexIVF_shrink_to_fit(reinterpret_cast<FaissIndexIVF*>(iv));
    });
}

int faiss_IndexIVF_reserve_lists(FaissIndexIVF* index, const size_t* sizes) {
    return guarded([&] {
        auto* al = dynamic_cast<faiss::ArrayInvertedLists*>(ivf(index)->invlists);
        if (!al) return;
        for (size_t i = 0; i < al->nlist; i++) {
            auto& c = al->codes[i];
            auto& d = al->ids[i];
            if (!c.is_owned || !d.is_owned) continue;
            c.owned_data.reserve(sizes[i] * al->code_size);
            c.c_ptr = c.owned_data.data();
            d.owned_data.reserve(sizes[i]);
            d.c_ptr = d.owned_data.data();
        }
    });
}

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

void faiss_fvec_inner_products_by_idx(float* ip, const float* x, const float* y,
                                      const int64_t* ids, size_t d, size_t ny) {
    faiss::fvec_inner_products_by_idx(ip, x, y, ids, d, 1, ny);
    for (size_t j = 0; j < ny; j++)
        if (ids[j] < 0) ip[j] = -INFINITY;
}

void faiss_fvec_L2sqr_by_idx(float* dis, const float* x, const float* y, const int64_t* ids,
                             size_t d, size_t ny) {
    faiss::fvec_L2sqr_by_idx(dis, x, y, ids, d, 1, ny);
    for (size_t j = 0; j < ny; j++)
        if (ids[j] < 0) dis[j] = INFINITY;
}

FaissIndexIVFPQFastScan* faiss_IndexIVFPQFastScan_cast(FaissIndex* index) {
    return reinterpret_cast<FaissIndexIVFPQFastScan*>(
            dynamic_cast<faiss::IndexIVFPQFastScan*>(reinterpret_cast<faiss::Index*>(index)));
}

int faiss_IndexIVF_count_members(const FaissIndexIVF* index, const uint8_t* bitmap,
                                 uint64_t nbits, int (*is_member)(void* ctx, idx_t id),
                                 void* ctx, uint32_t* counts) {
    return guarded([&] {
        const faiss::IndexIVF* ix = reinterpret_cast<const faiss::IndexIVF*>(index);
        const faiss::InvertedLists* il = ix->invlists;
        for (size_t l = 0; l < ix->nlist; l++) {
            size_t n = il->list_size(l);
            uint32_t c = 0;
            if (n) {
                faiss::InvertedLists::ScopedIds ids(il, l);
                for (size_t j = 0; j < n; j++) {
                    idx_t id = ids[j];
                    if (bitmap) c += id >= 0 && (uint64_t)id < nbits && (bitmap[id >> 3] >> (id & 7)) & 1;
                    else c += is_member(ctx, id) != 0;
                }
            }
            counts[l] = c;
        }
    });
}

namespace {

/* The np smallest of the nl keys of row (smaller is nearer) into dv/iv,
 * nearest first; ip: the keys are minus dot products, turned back. */
void select_nearest(const float* row, size_t nl, size_t np, bool ip, float* dv, idx_t* iv) {
    if (np >= 256 || np * 8 > nl) { /* many of them (a filtered walk's ranking): select, then sort */
        thread_local std::vector<std::pair<float, idx_t>> all;
        all.resize(nl);
        for (size_t j = 0; j < nl; j++) all[j] = {row[j], (idx_t)j};
        std::nth_element(all.begin(), all.begin() + (np - 1), all.end());
        std::sort(all.begin(), all.begin() + np);
        for (size_t j = 0; j < np; j++) {
            dv[j] = all[j].first;
            iv[j] = all[j].second;
        }
    } else { /* a few: a heap of the np nearest */
        using C = faiss::CMax<float, idx_t>;
        faiss::heap_heapify<C>(np, dv, iv);
        for (size_t j = 0; j < nl; j++)
            if (C::cmp(dv[0], row[j])) faiss::heap_replace_top<C>(np, dv, iv, row[j], (idx_t)j);
        faiss::heap_reorder<C>(np, dv, iv);
    }
    if (ip)
        for (size_t j = 0; j < np; j++) dv[j] = -dv[j];
}

/* The coarse keys of the n queries x against every centroid of a flat
 * quantizer, one row of nl per query, smaller is nearer (the L2 distance,
 * or minus the dot product): a block of queries at a time as one matrix
 * product (a matrix-vector product below 16 queries). With np > 0, each
 * row's np nearest lists go to assign/cdis (nearest first, as the
 * quantizer's own search gives them) and keys may be NULL; else every row
 * goes to keys. */
void coarse_scan(const faiss::IndexIVF* ix, const faiss::IndexFlat* flat, size_t n, const float* x, size_t np,
                 idx_t* assign, float* cdis, float* keys) {
    const size_t nl = ix->nlist, d = (size_t)ix->d;
    const bool ip = flat->metric_type == faiss::METRIC_INNER_PRODUCT;
    const float* c = flat->get_xb();
    std::vector<float> own;
    const float* cn = nullptr;
    if (!ip) { /* the centroids' norms: cached at training (faiss_IndexIVF_cache_coarse_norms) */
        const faiss::IndexFlatL2* l2 = dynamic_cast<const faiss::IndexFlatL2*>(flat);
        if (l2 && l2->cached_l2norms.size() == nl) {
            cn = l2->cached_l2norms.data();
        } else {
            own.resize(nl);
            faiss::fvec_norms_L2sqr(own.data(), c, d, nl);
            cn = own.data();
        }
    }
    /* column-major: dots[nl x m] = C^T x */
    size_t bq = n < 64 ? n : 64;
    if (bq * nl > ((size_t)4 << 20)) bq = std::max<size_t>(1, ((size_t)4 << 20) / nl); /* <= 16 MiB */
    /* scratch up to 1 MiB stays with the thread for its next search (no
     * malloc per call); bigger blocks are the call's own */
    thread_local std::vector<float> kept;
    std::vector<float> own_dots;
    std::vector<float>& dv_all = bq * nl <= ((size_t)1 << 18) ? kept : own_dots;
    dv_all.resize(bq * nl);
    float* dots = dv_all.data();
    for (size_t i0 = 0; i0 < n; i0 += bq) {
        const int m = (int)std::min(bq, n - i0), nli = (int)nl, di = (int)d;
        const float one = 1, zero = 0;
        if (n < 16) { /* a few queries: one matrix-vector product each */
            const int inc = 1;
            for (int i = 0; i < m; i++)
                sgemv_("T", &di, &nli, &one, c, &di, x + (i0 + i) * d, &inc, &zero, dots + (size_t)i * nl,
                       &inc);
        } else {
            sgemm_("T", "N", &nli, &m, &di, &one, c, &di, x + i0 * d, &di, &zero, dots, &nli);
        }
        for (int i = 0; i < m; i++) {
            float* row = dots + (size_t)i * nl;
            if (ip) {
                for (size_t j = 0; j < nl; j++) row[j] = -row[j];
            } else {
                const float xn = faiss::fvec_norm_L2sqr(x + (i0 + i) * d, d);
                for (size_t j = 0; j < nl; j++) row[j] = xn + cn[j] - 2 * row[j];
            }
            if (np)
                select_nearest(row, nl, np, ip, cdis + (i0 + i) * np, assign + (i0 + i) * np);
            else
                std::copy(row, row + nl, keys + (i0 + i) * nl);
        }
    }
}

/* The flat quantizer of an IVF index, or NULL. */
const faiss::IndexFlat* flat_quantizer(const faiss::IndexIVF* ix) {
    return dynamic_cast<const faiss::IndexFlat*>(ix->quantizer);
}

} // namespace

int faiss_IndexIVF_coarse_keys(const FaissIndexIVF* index, size_t n, const float* x, float* keys) {
    const faiss::IndexIVF* ix = reinterpret_cast<const faiss::IndexIVF*>(index);
    const faiss::IndexFlat* flat = flat_quantizer(ix);
    if (!flat) return 1;
    return guarded([&] { coarse_scan(ix, flat, n, x, 0, nullptr, nullptr, keys); });
}

int faiss_IndexIVF_rank_lists(const FaissIndexIVF* index, const float* x, const float* keys, size_t k,
                              idx_t* lists, float* dis, uint32_t* sizes) {
    return guarded([&] {
        const faiss::IndexIVF* ix = reinterpret_cast<const faiss::IndexIVF*>(index);
        if (k > ix->nlist) k = ix->nlist;
        const faiss::IndexFlat* flat = flat_quantizer(ix);
        if (flat && keys)
            select_nearest(keys, ix->nlist, k, flat->metric_type == faiss::METRIC_INNER_PRODUCT, dis, lists);
        else if (flat)
            coarse_scan(ix, flat, 1, x, k, lists, dis, nullptr);
        else
            ix->quantizer->search(1, x, (idx_t)k, dis, lists);
        for (size_t j = 0; j < k; j++)
            sizes[j] = lists[j] >= 0 ? (uint32_t)ix->invlists->list_size((size_t)lists[j]) : 0;
    });
}

int faiss_IndexIVF_search_coarse_blas(const FaissIndexIVF* index, idx_t n, const float* x, idx_t k,
                                      const FaissSearchParametersIVF* params, float* distances,
                                      idx_t* labels) {
    return guarded([&] {
        const faiss::IndexIVF* ix = reinterpret_cast<const faiss::IndexIVF*>(index);
        const faiss::SearchParametersIVF* sp = reinterpret_cast<const faiss::SearchParametersIVF*>(params);
        const faiss::IndexFlat* flat = flat_quantizer(ix);
        if (!flat || n <= 0 || (sp && sp->quantizer_params)) {
            ix->search(n, x, k, distances, labels, sp);
            return;
        }
        const size_t np = std::min(ix->nlist, sp && sp->nprobe ? sp->nprobe : ix->nprobe);
        std::vector<idx_t> assign((size_t)n * np);
        std::vector<float> cdis((size_t)n * np);
        coarse_scan(ix, flat, (size_t)n, x, np, assign.data(), cdis.data(), nullptr);
        ix->search_preassigned(n, x, k, assign.data(), cdis.data(), distances, labels, false, sp);
    });
}

int faiss_IndexIVF_search_lists(const FaissIndexIVF* index, const float* x, idx_t k, const idx_t* lists,
                                const float* dis, const FaissSearchParametersIVF* params, float* distances,
                                idx_t* labels) {
    return guarded([&] {
        const faiss::IndexIVF* ix = reinterpret_cast<const faiss::IndexIVF*>(index);
        const faiss::SearchParametersIVF* sp = reinterpret_cast<const faiss::SearchParametersIVF*>(params);
        ix->search_preassigned(1, x, k, lists, dis, distances, labels, false, sp);
    });
}

int faiss_IndexIVF_cache_coarse_norms(FaissIndexIVF* index) {
    return guarded([&] {
        faiss::IndexIVF* ix = reinterpret_cast<faiss::IndexIVF*>(index);
        faiss::IndexFlatL2* l2 = dynamic_cast<faiss::IndexFlatL2*>(ix->quantizer);
        if (l2 && ix->is_trained && l2->cached_l2norms.size() != (size_t)l2->ntotal) l2->sync_l2norms();
    });
}

int faiss_get_simd_level(char* name, size_t len, int* dynamic_dispatch) {
    return guarded([&] {
        std::string s = faiss::SIMDConfig::get_level_name();
        if (name && len) {
            size_t n = s.size() < len - 1 ? s.size() : len - 1;
            memcpy(name, s.data(), n);
            name[n] = '\0';
        }
        /* has_dynamic_dispatch() is inline: it would answer for this unit's
         * flags, not the library's; the library's own options say it */
        if (dynamic_dispatch)
            *dynamic_dispatch = faiss::get_compile_options().find("DD ") != std::string::npos;
    });
}

} /* extern "C" */
