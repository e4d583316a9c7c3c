/*
 * The coarse scan of one query in half precision (coarse.h).
 */
#include "coarse.h"

#include <cpuid.h>
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include <faiss/c_api/utils/distances_c.h>

#include "faiss_ext.h"
#include "quiver/error.h"

struct qv_coarse {
    uint16_t *half;    /* nl rows of stride halves, zero padded */
    float *norms;      /* L2: the float32 rows' squared norms; NULL for ip */
    const float *cent; /* the float32 rows (FAISS's) */
    size_t nl, stride;
    uint32_t dim;
    int ip;
};

/* The candidates scored again in float32: np and a margin of a quarter of
 * it and 16 more, for the ranks half precision may have swapped. */
static size_t candidates(size_t np, size_t nl)
{
    size_t m = np + np / 4 + 16;
    return m < nl ? m : nl;
}

static int cpu_has_f16c(void)
{
    unsigned a, b, c, d;
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return 0;
    return __get_cpuid(1, &a, &b, &c, &d) && (c >> 29 & 1);
}

__attribute__((target("avx2,fma,f16c"))) static void to_half(const float *src, uint32_t dim, uint16_t *dst)
{
    uint32_t j = 0;
    for (; j + 8 <= dim; j += 8)
        _mm_storeu_si128((__m128i *)(dst + j), _mm256_cvtps_ph(_mm256_loadu_ps(src + j), _MM_FROUND_TO_NEAREST_INT));
    if (j < dim) {
        float tail[8] = {0};
        memcpy(tail, src + j, (dim - j) * sizeof *tail);
        _mm_storeu_si128((__m128i *)(dst + j), _mm256_cvtps_ph(_mm256_loadu_ps(tail), _MM_FROUND_TO_NEAREST_INT));
    }
}

/* out[i] = row i . xp for the nl rows of h (stride halves each, a multiple
 * of 8; xp padded with zeros to stride), four rows at a time. */
__attribute__((target("avx2,fma,f16c"))) static void dots_half(const uint16_t *h, size_t nl, size_t stride,
                                                              const float *xp, float *out)
{
    size_t i = 0;
    for (; i + 4 <= nl; i += 4) {
        const uint16_t *r = h + i * stride;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (size_t j = 0; j < stride; j += 8) {
            __m256 xv = _mm256_loadu_ps(xp + j);
            a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(r + j))), xv, a0);
            a1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(r + stride + j))), xv, a1);
            a2 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(r + 2 * stride + j))), xv, a2);
            a3 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(r + 3 * stride + j))), xv, a3);
        }
        /* the four sums side by side: lane halves added after two rounds of
         * pairwise adds */
        __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
        _mm_storeu_ps(out + i, _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1)));
    }
    for (; i < nl; i++) {
        const uint16_t *r = h + i * stride;
        __m256 a = _mm256_setzero_ps();
        for (size_t j = 0; j < stride; j += 8)
            a = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(r + j))), _mm256_loadu_ps(xp + j), a);
        __m128 t = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
        t = _mm_hadd_ps(t, t);
        out[i] = _mm_cvtss_f32(_mm_hadd_ps(t, t));
    }
}

qv_coarse *qv_coarse_new(const float *cent, size_t nl, uint32_t dim, int ip)
{
    if (!cent || nl == 0 || dim == 0 || !cpu_has_f16c()) return NULL;
    qv_coarse *cq = calloc(1, sizeof *cq);
    if (!cq) return NULL;
    cq->cent = cent;
    cq->nl = nl;
    cq->dim = dim;
    cq->ip = ip;
    cq->stride = ((size_t)dim + 7) & ~(size_t)7;
    cq->half = calloc(nl * cq->stride, sizeof *cq->half);
    if (!ip) cq->norms = malloc(nl * sizeof *cq->norms);
    if (!cq->half || (!ip && !cq->norms)) {
        qv_coarse_free(cq);
        return NULL;
    }
    for (size_t i = 0; i < nl; i++) {
        to_half(cent + i * dim, dim, cq->half + i * cq->stride);
        if (!ip) cq->norms[i] = faiss_fvec_norm_L2sqr(cent + i * dim, dim);
    }
    return cq;
}

void qv_coarse_free(qv_coarse *cq)
{
    if (!cq) return;
    free(cq->half);
    free(cq->norms);
    free(cq);
}

typedef struct scored {
    float key; /* smaller is nearer */
    int32_t id;
} scored;

/* Wirth's selection: afterwards s[0..m-1] hold the m smallest keys, in no
 * order (1 <= m <= n). */
static void select_smallest(scored *s, ptrdiff_t n, ptrdiff_t m)
{
    ptrdiff_t l = 0, r = n - 1, t = m - 1;
    while (l < r) {
        float x = s[t].key;
        ptrdiff_t i = l, j = r;
        do {
            while (s[i].key < x) i++;
            while (x < s[j].key) j--;
            if (i <= j) {
                scored tmp = s[i];
                s[i++] = s[j];
                s[j--] = tmp;
            }
        } while (i <= j);
        if (j < t) l = i;
        if (t < i) r = j;
    }
}

static int cmp_scored(const void *a, const void *b)
{
    const scored *p = a, *q = b;
    if (p->key != q->key) return p->key < q->key ? -1 : 1;
    return (p->id > q->id) - (p->id < q->id);
}

int qv_coarse_rank(const qv_coarse *cq, const float *x, size_t np, int64_t *lists, float *dis)
{
    size_t nl = cq->nl, m = candidates(np, nl);
    if (np > nl) np = nl;
    float *xp = calloc(cq->stride, sizeof *xp);
    float *d = malloc(nl * sizeof *d);
    scored *s = malloc(nl * sizeof *s);
    int64_t *rows = malloc(m * sizeof *rows);
    if (!xp || !d || !s || !rows) {
        free(xp), free(d), free(s), free(rows);
        return QV_NOMEM;
    }
    memcpy(xp, x, cq->dim * sizeof *xp);
    dots_half(cq->half, nl, cq->stride, xp, d);
    for (size_t i = 0; i < nl; i++) {
        s[i].key = cq->ip ? -d[i] : cq->norms[i] - 2 * d[i];
        s[i].id = (int32_t)i;
    }
    if (m < nl) select_smallest(s, (ptrdiff_t)nl, (ptrdiff_t)m);
    /* the candidates again, in float32 (FAISS's SIMD kernel, as the refine) */
    for (size_t i = 0; i < m; i++) rows[i] = s[i].id;
    faiss_fvec_inner_products_by_idx(d, x, cq->cent, rows, cq->dim, m);
    for (size_t i = 0; i < m; i++) s[i].key = cq->ip ? -d[i] : cq->norms[s[i].id] - 2 * d[i];
    qsort(s, m, sizeof *s, cmp_scored);
    float xn = cq->ip ? 0 : faiss_fvec_norm_L2sqr(x, cq->dim);
    for (size_t i = 0; i < np; i++) {
        lists[i] = s[i].id;
        dis[i] = cq->ip ? -s[i].key : xn + s[i].key;
    }
    free(xp), free(d), free(s), free(rows);
    return 0;
}
