/*
 * Unit tests for storage/index.c (include/quiver/index.h): results against a
 * brute force computed here, IVF recall, removal and upsert, cosine and L2
 * scores, write/read round trips of every kind, parameter checks, and
 * concurrent searches. Small data (dim 16-32, a few thousand vectors).
 */
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "quiver/error.h"
#include "coarse.h"
#include "index.h"
#include "quiver/log.h"

/* Searches as the engine makes them: COSINE queries normalised first. */
static int unit_search_sel(const qv_index *ix, size_t nq, const float *q, size_t k,
                           uint32_t nprobe, const qv_idsel *sel, float *scores, int64_t *labels)
{
    if (qv_index_metric(ix) != QV_METRIC_COSINE || !q)
        return qv_index_search_sel(ix, nq, q, k, nprobe, sel, scores, labels);
    uint32_t dim = qv_index_dim(ix);
    float *u = malloc((nq ? nq : 1) * dim * sizeof *u);
    if (!u) return QV_NOMEM;
    memcpy(u, q, nq * dim * sizeof *u);
    for (size_t i = 0; i < nq; i++) qv_vec_normalize(u + i * dim, dim);
    int rc = qv_index_search_sel(ix, nq, u, k, nprobe, sel, scores, labels);
    free(u);
    return rc;
}

static int unit_search(const qv_index *ix, size_t nq, const float *q, size_t k, uint32_t nprobe,
                       float *scores, int64_t *labels)
{
    return unit_search_sel(ix, nq, q, k, nprobe, NULL, scores, labels);
}

/* rc must be 0; prints file, line, expression and qv_strerror(rc). */
#define CHECK_OK(expr)                                                                       \
    do {                                                                                     \
        int rc_ = (expr);                                                                    \
        if (rc_ != 0) fail_msg("%s:%d: %s -> %d (%s)", __FILE__, __LINE__, #expr, rc_,      \
                               qv_strerror(rc_));                                            \
    } while (0)

/* rc must be want. */
#define CHECK_RC(want, expr)                                                                 \
    do {                                                                                     \
        int rc_ = (expr);                                                                    \
        if (rc_ != (want)) fail_msg("%s:%d: %s -> %d (%s), expected %s", __FILE__, __LINE__, \
                                    #expr, rc_, qv_strerror(rc_), qv_strerror(want));        \
    } while (0)

/* ---- data ---- */

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double rng_unit(uint64_t *s) { return ((rng_next(s) >> 11) + 0.5) / 9007199254740992.0; }

static float rng_gauss(uint64_t *s)
{
    double u = rng_unit(s), v = rng_unit(s);
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

/* n points around nc centres (N(0, spread^2) per coordinate; noise N(0, 1)):
 * n*dim floats, caller frees. */
static float *clustered_spread(size_t n, uint32_t dim, uint32_t nc, float spread, uint64_t seed)
{
    uint64_t s = seed, cs = 12345; /* same centres for every call */
    float *c = malloc((size_t)nc * dim * sizeof(float));
    float *x = malloc(n * dim * sizeof(float));
    assert_non_null(c);
    assert_non_null(x);
    for (size_t i = 0; i < (size_t)nc * dim; i++) c[i] = spread * rng_gauss(&cs);
    for (size_t i = 0; i < n; i++) {
        uint32_t k = (uint32_t)(rng_next(&s) % nc);
        for (uint32_t j = 0; j < dim; j++) x[i * dim + j] = c[k * dim + j] + rng_gauss(&s);
    }
    free(c);
    return x;
}

static float *clustered(size_t n, uint32_t dim, uint32_t nc, uint64_t seed)
{
    return clustered_spread(n, dim, nc, 4.0f, seed);
}

static int64_t *seq_ids(size_t n, int64_t base)
{
    int64_t *ids = malloc(n * sizeof *ids);
    assert_non_null(ids);
    for (size_t i = 0; i < n; i++) ids[i] = base + (int64_t)(7 * i); /* not 0..n-1 */
    return ids;
}

/* ---- brute force ---- */

static double score_of(qv_metric m, const float *a, const float *b, uint32_t dim)
{
    double s = 0, na = 0, nb = 0;
    for (uint32_t j = 0; j < dim; j++) {
        if (m == QV_METRIC_L2) {
            double d = (double)a[j] - b[j];
            s += d * d;
        } else {
            s += (double)a[j] * b[j];
            na += (double)a[j] * a[j];
            nb += (double)b[j] * b[j];
        }
    }
    if (m == QV_METRIC_COSINE) s = (na > 0 && nb > 0) ? s / sqrt(na * nb) : 0;
    return s;
}

/* Is score a better than b under metric m? */
static int better(qv_metric m, double a, double b) { return m == QV_METRIC_L2 ? a < b : a > b; }

/* k best of the n live vectors (alive[i] != 0, or all when alive is NULL) for q. */
static void brute(qv_metric m, const float *x, const int64_t *ids, const char *alive, size_t n,
                  uint32_t dim, const float *q, size_t k, int64_t *lab, double *sc)
{
    for (size_t i = 0; i < k; i++) {
        lab[i] = -1;
        sc[i] = m == QV_METRIC_L2 ? INFINITY : -INFINITY;
    }
    for (size_t i = 0; i < n; i++) {
        if (alive && !alive[i]) continue;
        double s = score_of(m, q, x + i * dim, dim);
        if (!better(m, s, sc[k - 1])) continue;
        size_t p = k - 1;
        while (p > 0 && better(m, s, sc[p - 1])) {
            sc[p] = sc[p - 1];
            lab[p] = lab[p - 1];
            p--;
        }
        sc[p] = s;
        lab[p] = ids[i];
    }
}

static int close_to(double a, double b) { return fabs(a - b) <= 1e-3 * (1.0 + fabs(b)); }

/* Same results as the brute force: scores position by position, and labels
 * wherever the brute-force score is not tied with a neighbour. */
static void expect_exact(qv_metric m, const float *scores, const int64_t *labels,
                         const double *bsc, const int64_t *blab, size_t k, const char *what)
{
    for (size_t i = 0; i < k; i++) {
        if (!close_to(scores[i], bsc[i]))
            fail_msg("%s: rank %zu score %.6f, brute force %.6f", what, i, scores[i], bsc[i]);
        int tied = (i > 0 && close_to(bsc[i - 1], bsc[i])) ||
                   (i + 1 < k && close_to(bsc[i + 1], bsc[i]));
        if (!tied && labels[i] != blab[i])
            fail_msg("%s: rank %zu label %lld, brute force %lld", what, i, (long long)labels[i],
                     (long long)blab[i]);
    }
    (void)m;
}

static qv_index *build(uint32_t dim, qv_metric metric, qv_index_params p, size_t n,
                       const float *x, const int64_t *ids)
{
    qv_index *ix = NULL;
    CHECK_OK(qv_index_new(dim, metric, &p, &ix));
    CHECK_OK(qv_index_train(ix, n, x));
    assert_true(qv_index_is_trained(ix));
    CHECK_OK(qv_index_add(ix, n, ids, x));
    assert_int_equal(qv_index_count(ix), n);
    return ix;
}

static const qv_index_params P_FLAT = {.kind = QV_KIND_FLAT};
static const qv_index_params P_IVF32 = {.kind = QV_KIND_IVF_FLAT, .nlist = 32};

/* ---- id selectors ---- */

/* A bitmap selector of nbits bits allows the ids below nbits whose bit is
 * set, and no id at or past nbits, whatever the memory after the bitmap
 * holds: here 0xff bytes, as if the bitmap's buffer were followed by
 * another's. (FAISS's bitmap selector counts bytes; given the bit count, it
 * read past the bitmap and let through items the filter refused.) Every
 * kind, every list probed, hits from the allowed ids only, and the brute
 * force's best among them. */
static void test_bitmap_selector_bounds(void **state)
{
    (void)state;
    const uint32_t dim = 16;
    const size_t n = 3000, nq = 20, k = 10;
    float *x = clustered_spread(n, dim, 32, 1.0f, 41);
    float *q = clustered_spread(nq, dim, 32, 1.0f, 42);
    int64_t *ids = malloc(n * sizeof *ids);
    assert_non_null(ids);
    for (size_t i = 0; i < n; i++) ids[i] = (int64_t)i;
    /* allowed: every third id below 1000 */
    const uint64_t nbits = 1000;
    uint8_t *buf = malloc(n);
    assert_non_null(buf);
    memset(buf, 0xff, n);
    memset(buf, 0, nbits / 8);
    char *alive = calloc(n, 1);
    assert_non_null(alive);
    for (size_t i = 0; i < nbits; i += 3) {
        buf[i >> 3] |= (uint8_t)(1u << (i & 7));
        alive[i] = 1;
    }
    const qv_index_params kinds[] = {P_FLAT, P_IVF32,
                                     {.kind = QV_KIND_IVF_PQ_FS, .nlist = 32, .pq_m = 8, .refine = 10}};
    for (size_t t = 0; t < sizeof kinds / sizeof kinds[0]; t++) {
        qv_index *ix = build(dim, QV_METRIC_L2, kinds[t], n, x, ids);
        qv_idsel *sel = NULL;
        CHECK_OK(qv_idsel_new(buf, nbits, NULL, NULL, NULL, 0, &sel));
        for (size_t i = 0; i < nq; i++) {
            float sc[10];
            int64_t lab[10], bl[10];
            double bs[10];
            CHECK_OK(unit_search_sel(ix, 1, q + i * dim, k, 32, sel, sc, lab));
            for (size_t j = 0; j < k; j++)
                if (lab[j] < 0 || lab[j] >= (int64_t)nbits || lab[j] % 3)
                    fail_msg("%s: query %zu hit %zu is id %lld, which the bitmap does not allow",
                             qv_index_kind_name(kinds[t].kind), i, j, (long long)lab[j]);
            brute(QV_METRIC_L2, x, ids, alive, n, dim, q + i * dim, k, bl, bs);
            if (kinds[t].kind != QV_KIND_IVF_PQ_FS) expect_exact(QV_METRIC_L2, sc, lab, bs, bl, k, "bitmap");
        }
        qv_idsel_free(sel);
        qv_index_free(ix);
    }
    free(alive);
    free(buf);
    free(ids);
    free(q);
    free(x);
}

/* ---- names, normalisation, parameter checks ---- */

static void test_kind_names(void **state)
{
    (void)state;
    const char *names[] = {"flat", "ivf_flat", "ivf_pq", "ivf_sq8", "ivf_pq_fs"};
    for (int k = 1; k <= 5; k++) {
        assert_string_equal(qv_index_kind_name((qv_index_kind)k), names[k - 1]);
        assert_int_equal(qv_index_kind_parse(names[k - 1]), k);
    }
    assert_int_equal(qv_index_kind_parse("auto"), QV_KIND_AUTO);
    assert_int_equal(qv_index_kind_parse("hnsw"), -1);
    assert_int_equal(qv_index_kind_parse("FLAT"), -1);
    assert_int_equal(qv_index_kind_parse(""), -1);
    assert_int_equal(qv_index_kind_parse(NULL), -1);
    assert_string_equal(qv_index_kind_name((qv_index_kind)99), "unknown");
}

static void test_normalize(void **state)
{
    (void)state;
    float v[3] = {3, 0, 4};
    qv_vec_normalize(v, 3);
    assert_float_equal(v[0], 0.6f, 1e-6);
    assert_float_equal(v[1], 0.0f, 1e-6);
    assert_float_equal(v[2], 0.8f, 1e-6);
    float z[4] = {0, 0, 0, 0};
    qv_vec_normalize(z, 4);
    for (int i = 0; i < 4; i++) assert_true(z[i] == 0.0f);
    float big[2] = {1e20f, 1e20f}; /* the norm overflows float, not double */
    qv_vec_normalize(big, 2);
    assert_float_equal(big[0], 0.70710678f, 1e-6);
}

static void test_params_check(void **state)
{
    (void)state;
    char err[128];
    qv_index_params p = {.kind = QV_KIND_FLAT};
    CHECK_OK(qv_index_params_check(100, &p, err, sizeof err));
    assert_string_equal(err, "");

    p = (qv_index_params){.kind = QV_KIND_IVF_FLAT, .nlist = 0};
    CHECK_RC(QV_INVALID, qv_index_params_check(100, &p, err, sizeof err));
    assert_non_null(strstr(err, "index.nlist 0"));

    p = (qv_index_params){.kind = QV_KIND_IVF_SQ8, .nlist = 0};
    CHECK_RC(QV_INVALID, qv_index_params_check(100, &p, err, sizeof err));
    assert_non_null(strstr(err, "index.nlist 0"));

    p = (qv_index_params){.kind = QV_KIND_IVF_PQ, .nlist = 16, .pq_m = 7, .pq_nbits = 8};
    CHECK_RC(QV_INVALID, qv_index_params_check(100, &p, err, sizeof err));
    assert_string_equal(err, "index.pq_m 7 does not divide dim 100");

    p.pq_m = 0;
    CHECK_RC(QV_INVALID, qv_index_params_check(100, &p, err, sizeof err));
    assert_non_null(strstr(err, "index.pq_m 0"));

    p = (qv_index_params){.kind = QV_KIND_IVF_PQ, .nlist = 16, .pq_m = 10, .pq_nbits = 17};
    CHECK_RC(QV_INVALID, qv_index_params_check(100, &p, err, sizeof err));
    assert_string_equal(err, "index.pq_nbits 17 is over 8");
    p.pq_nbits = 9; /* FAISS 1.7.3 IndexIVFPQ: nbits <= 8 */
    CHECK_RC(QV_INVALID, qv_index_params_check(100, &p, err, sizeof err));
    assert_string_equal(err, "index.pq_nbits 9 is over 8");

    p.pq_nbits = 8;
    CHECK_OK(qv_index_params_check(100, &p, err, sizeof err));
    p.pq_nbits = 0; /* = 8 */
    CHECK_OK(qv_index_params_check(100, &p, err, sizeof err));

    p = (qv_index_params){.kind = (qv_index_kind)9, .nlist = 16};
    CHECK_RC(QV_INVALID, qv_index_params_check(100, &p, err, sizeof err));
    assert_non_null(strstr(err, "index.kind 9"));

    p = (qv_index_params){.kind = QV_KIND_AUTO};
    CHECK_RC(QV_INVALID, qv_index_params_check(100, &p, err, sizeof err));
    assert_non_null(strstr(err, "index.kind auto"));

    p = (qv_index_params){.kind = QV_KIND_FLAT};
    CHECK_RC(QV_INVALID, qv_index_params_check(0, &p, err, sizeof err));
    assert_non_null(strstr(err, "dim 0"));
    CHECK_RC(QV_INVALID, qv_index_params_check(100, NULL, NULL, 0)); /* no buffer: fine */

    /* qv_index_new applies the same checks */
    qv_index *ix = (qv_index *)&p;
    p = (qv_index_params){.kind = QV_KIND_IVF_PQ, .nlist = 16, .pq_m = 7};
    CHECK_RC(QV_INVALID, qv_index_new(100, QV_METRIC_L2, &p, &ix));
    assert_null(ix);
    p = (qv_index_params){.kind = QV_KIND_FLAT};
    CHECK_RC(QV_INVALID, qv_index_new(16, (qv_metric)7, &p, &ix));
}

/* ---- exact search ---- */

static void flat_vs_brute(qv_metric m)
{
    const uint32_t dim = 24;
    const size_t n = 2000, nq = 25, k = 10;
    float *x = clustered(n, dim, 20, 1);
    float *q = clustered(nq, dim, 20, 2);
    int64_t *ids = seq_ids(n, 100);
    qv_index *ix = build(dim, m, P_FLAT, n, x, ids);

    float sc[25 * 10];
    int64_t lab[25 * 10];
    /* nq = 25 goes through FAISS's batched (BLAS) path, single queries not */
    CHECK_OK(unit_search(ix, nq, q, k, 0, sc, lab));
    for (size_t i = 0; i < nq; i++) {
        int64_t bl[10];
        double bs[10];
        brute(m, x, ids, NULL, n, dim, q + i * dim, k, bl, bs);
        expect_exact(m, sc + i * k, lab + i * k, bs, bl, k, "flat batch");
        float s1[10];
        int64_t l1[10];
        CHECK_OK(unit_search(ix, 1, q + i * dim, k, 0, s1, l1));
        expect_exact(m, s1, l1, bs, bl, k, "flat single");
    }
    /* more than held: padded with -1 */
    float *sa = malloc((n + 5) * sizeof(float));
    int64_t *la = malloc((n + 5) * sizeof(int64_t));
    CHECK_OK(unit_search(ix, 1, q, n + 5, 0, sa, la));
    for (size_t i = 0; i < n; i++) assert_true(la[i] >= 100);
    for (size_t i = n; i < n + 5; i++) assert_int_equal(la[i], -1);
    free(sa);
    free(la);
    qv_index_free(ix);
    free(x);
    free(q);
    free(ids);
}

static void test_flat_l2_exact(void **state)
{
    (void)state;
    flat_vs_brute(QV_METRIC_L2);
}

static void test_flat_ip_exact(void **state)
{
    (void)state;
    flat_vs_brute(QV_METRIC_IP);
}

static void test_flat_cosine_exact(void **state)
{
    (void)state;
    flat_vs_brute(QV_METRIC_COSINE);
}

static void test_l2_scores_are_squared(void **state)
{
    (void)state;
    const uint32_t dim = 16;
    float x[3 * 16] = {0};
    int64_t ids[3] = {5, 6, 7};
    for (uint32_t j = 0; j < dim; j++) {
        x[0 * dim + j] = 0;
        x[1 * dim + j] = 1;    /* squared distance from origin: 16 (not 4) */
        x[2 * dim + j] = 0.5f; /* 4 */
    }
    qv_index *ix = build(dim, QV_METRIC_L2, P_FLAT, 3, x, ids);
    float sc[3];
    int64_t lab[3];
    CHECK_OK(unit_search(ix, 1, x, 3, 0, sc, lab));
    assert_int_equal(lab[0], 5);
    assert_int_equal(lab[1], 7);
    assert_int_equal(lab[2], 6);
    assert_float_equal(sc[0], 0.0f, 1e-6);
    assert_float_equal(sc[1], 4.0f, 1e-5);
    assert_float_equal(sc[2], 16.0f, 1e-5);
    qv_index_free(ix);
}

static void cosine_checks(qv_index_params p)
{
    const uint32_t dim = 32;
    const size_t n = 3000, k = 10;
    float *x = clustered(n, dim, 40, 3);
    int64_t *ids = seq_ids(n, 0);
    qv_index *ix = build(dim, QV_METRIC_COSINE, p, n, x, ids);
    uint32_t nprobe = p.nlist; /* exhaustive for IVF */
    /* A scaled copy of a stored vector scores 1 and comes first. */
    for (size_t t = 0; t < 20; t++) {
        size_t i = (t * 149) % n;
        float q[32];
        for (uint32_t j = 0; j < dim; j++) q[j] = 7.5f * x[i * dim + j];
        float sc[10];
        int64_t lab[10];
        CHECK_OK(unit_search(ix, 1, q, k, nprobe, sc, lab));
        assert_int_equal(lab[0], ids[i]);
        assert_float_equal(sc[0], 1.0f, 1e-5);
        for (size_t r = 0; r < k; r++) {
            assert_true(sc[r] <= 1.0f + 1e-5f && sc[r] >= -1.0f - 1e-5f);
            if (r) assert_true(sc[r] <= sc[r - 1]);
            /* the score is the true cosine with the stored vector */
            size_t pos = (size_t)lab[r] / 7;
            assert_float_equal(sc[r], score_of(QV_METRIC_COSINE, q, x + pos * dim, dim), 1e-4);
        }
    }
    /* The opposite vector scores -1 against it; a zero query is harmless. */
    float neg[32], zero[32] = {0};
    for (uint32_t j = 0; j < dim; j++) neg[j] = -x[j];
    float sc[3000];
    int64_t lab[3000];
    CHECK_OK(unit_search(ix, 1, neg, n, nprobe, sc, lab));
    assert_int_equal(lab[n - 1], ids[0]);
    assert_float_equal(sc[n - 1], -1.0f, 1e-5);
    CHECK_OK(unit_search(ix, 1, zero, k, nprobe, sc, lab));
    qv_index_free(ix);
    free(x);
    free(ids);
}

static void test_cosine_flat(void **state)
{
    (void)state;
    cosine_checks(P_FLAT);
}

static void test_cosine_ivf(void **state)
{
    (void)state;
    cosine_checks(P_IVF32);
}

/* An exact scan of more queries than a chunk (1,024) answers each query as a
 * search of it alone does: the chunks' answers land in their own rows. */
static void test_flat_batch_in_chunks(void **state)
{
    (void)state;
    enum { DIM = 8, NQ = 2600, K = 5 };
    const size_t n = 1500;
    float *x = clustered_spread(n, DIM, 16, 1.0f, 21);
    float *q = clustered_spread(NQ, DIM, 16, 1.0f, 22);
    int64_t *ids = seq_ids(n, 1000);
    qv_index *ix = build(DIM, QV_METRIC_L2, P_FLAT, n, x, ids);
    float *bs = malloc(NQ * K * sizeof *bs), ss[K];
    int64_t *bl = malloc(NQ * K * sizeof *bl), sl[K];
    CHECK_OK(unit_search(ix, NQ, q, K, 0, bs, bl));
    for (size_t i = 0; i < NQ; i += 7) {
        CHECK_OK(unit_search(ix, 1, q + i * DIM, K, 0, ss, sl));
        for (size_t j = 0; j < K; j++) {
            assert_true(bl[i * K + j] == sl[j]);
            assert_true(fabsf(bs[i * K + j] - ss[j]) <= 1e-4f * (1 + fabsf(ss[j])));
        }
    }
    qv_index_free(ix);
    free(bs), free(bl), free(x), free(q), free(ids);
}

/* ---- IVF ---- */

/* Every way a search finds its lists answers as FAISS's own scan does
 * (the reference: qv_index_set_coarse_blas(0)), same ids up to a centroid
 * tie and same scores, for every metric and for IVF kinds with and without
 * refine, fast-scan included: the BLAS scan for a batch (a matrix product)
 * and for one query (the half-precision scan of coarse.h where the CPU has
 * it, and a matrix-vector product), and the filtered walk's path,
 * lists ranked once (qv_index_rank_lists: nearest first, real lists with
 * their sizes) and searched as given (qv_index_search_lists). */
static void test_coarse_scans_match_faiss(void **state)
{
    (void)state;
    enum { DIM = 24, NQ = 40, K = 10, NLIST = 32 };
    const size_t n = 3000;
    float *x = clustered_spread(n, DIM, 48, 1.0f, 7);
    float *q = clustered_spread(NQ, DIM, 48, 1.0f, 8);
    float qn[NQ * DIM], keys[NQ * NLIST]; /* unit length for COSINE, as the engine gives them */
    int64_t *ids = seq_ids(n, 7);
    const qv_index_params kinds[] = {P_IVF32, {.kind = QV_KIND_IVF_SQ8, .nlist = NLIST},
                                     {.kind = QV_KIND_IVF_PQ, .nlist = NLIST, .pq_m = 8, .refine = 4},
                                     {.kind = QV_KIND_IVF_PQ_FS, .nlist = NLIST, .pq_m = 12, .pq_nbits = 4, .refine = 10}};
    const qv_metric metrics[] = {QV_METRIC_L2, QV_METRIC_IP, QV_METRIC_COSINE};
    /* one query's scan in half precision (coarse.h, where the CPU has it), then the BLAS one */
    for (int half = 1; half >= 0; half--)
    for (size_t a = 0; a < sizeof kinds / sizeof *kinds; a++)
        for (size_t m = 0; m < 3; m++) {
            qv_index_set_coarse_half(half);
            qv_index *ix = build(DIM, metrics[m], kinds[a], n, x, ids);
            memcpy(qn, q, sizeof qn);
            for (size_t i = 0; metrics[m] == QV_METRIC_COSINE && i < NQ; i++) qv_vec_normalize(qn + i * DIM, DIM);
            CHECK_OK(qv_index_coarse_keys(ix, NQ, qn, keys)); /* a batch's keys, one matrix product */
            for (uint32_t np = 1; np <= 16; np *= 2) {
                float fs[NQ * K], bs[NQ * K], ss[K], rs[K], ks[K], dis[NLIST], kdis[NLIST];
                int64_t fl[NQ * K], bl[NQ * K], sl[K], rl[K], kl[K], lists[NLIST], klists[NLIST];
                uint32_t sizes[NLIST], ksizes[NLIST];
                qv_index_set_coarse_blas(0);
                CHECK_OK(unit_search(ix, NQ, q, K, np, fs, fl));
                qv_index_set_coarse_blas(1);
                CHECK_OK(unit_search(ix, NQ, q, K, np, bs, bl));
                size_t same[4] = {0}; /* batch, one at a time, ranked lists, ranked from the batch's keys */
                for (size_t i = 0; i < NQ; i++) {
                    const float *qi = qn + i * DIM;
                    CHECK_OK(qv_index_search(ix, 1, qi, K, np, ss, sl));
                    CHECK_OK(qv_index_rank_lists(ix, qi, NULL, 2 * np, lists, dis, sizes));
                    uint32_t total = 0;
                    for (uint32_t j = 0; j < 2 * np; j++) {
                        assert_true(lists[j] >= 0 && lists[j] < NLIST);
                        if (j) /* nearest first */
                            assert_true(metrics[m] == QV_METRIC_L2 ? dis[j] >= dis[j - 1] : dis[j] <= dis[j - 1]);
                        total += sizes[j];
                    }
                    assert_true(total > 0);
                    CHECK_OK(qv_index_search_lists(ix, qi, K, np, lists, dis, NULL, rs, rl));
                    CHECK_OK(qv_index_rank_lists(ix, qi, keys + i * NLIST, 2 * np, klists, kdis, ksizes));
                    for (uint32_t j = 0; j < 2 * np; j++) /* the same ranking, up to rounding */
                        assert_true(fabsf(kdis[j] - dis[j]) <= 1e-4f * (1 + fabsf(dis[j])));
                    CHECK_OK(qv_index_search_lists(ix, qi, K, np, klists, kdis, NULL, ks, kl));
                    for (size_t j = 0; j < K; j++) {
                        const size_t o = i * K + j;
                        const float got[4] = {bs[o], ss[j], rs[j], ks[j]};
                        const int64_t gid[4] = {bl[o], sl[j], rl[j], kl[j]};
                        for (int w = 0; w < 4; w++) {
                            same[w] += gid[w] == fl[o];
                            if (fl[o] >= 0 && !(fabsf(got[w] - fs[o]) <= 1e-3f * (1 + fabsf(fs[o]))))
                                fail_msg("kind %d metric %d nprobe %u way %d: query %zu rank %zu scores %g, "
                                         "FAISS's own %g (half %d)", kinds[a].kind, metrics[m], np, w, i, j, got[w],
                                         fs[o], half);
                        }
                    }
                }
                /* rounding may swap a centroid tie, nothing more */
                for (int w = 0; w < 4; w++)
                    if (same[w] < NQ * K * 99 / 100)
                        fail_msg("kind %d metric %d nprobe %u way %d: %zu of %d ids as FAISS's own scan",
                                 kinds[a].kind, metrics[m], np, w, same[w], NQ * K);
            }
            /* nprobe 0, or no ranking: refused */
            int64_t lists[4] = {0, 1, 2, 3}, rl[K];
            float dis[4] = {0}, rs[K];
            assert_int_equal(qv_index_search_lists(ix, q, K, 0, lists, dis, NULL, rs, rl), QV_INVALID);
            assert_int_equal(qv_index_search_lists(ix, q, K, 2, NULL, dis, NULL, rs, rl), QV_INVALID);
            qv_index_free(ix);
        }
    qv_index_set_coarse_half(1);
    /* no coarse quantizer: no keys */
    qv_index *flat = build(DIM, QV_METRIC_L2, P_FLAT, n, x, ids);
    assert_int_equal(qv_index_coarse_keys(flat, NQ, q, keys), QV_INVALID);
    qv_index_free(flat);
    free(x);
    free(q);
    free(ids);
}

/* The half-precision coarse scan of one query (coarse.h) returns the lists
 * a float32 scan in double precision ranks, nearest first, with their exact
 * distances: for L2 and inner product, a dimension that is not a multiple of
 * 8 and a list count that is not a multiple of 4, from one list to all. */
static void test_coarse_half_ranks_as_float32(void **state)
{
    (void)state;
    enum { NQ = 60 };
    const size_t dims[] = {37, 100}, nls[] = {1003, 64};
    int checked = 0;
    for (size_t a = 0; a < 2; a++)
        for (int ip = 0; ip < 2; ip++) {
            size_t dim = dims[a], nl = nls[a];
            float *c = clustered_spread(nl, (uint32_t)dim, 16, 1.0f, (unsigned)(40 + a));
            float *q = clustered_spread(NQ, (uint32_t)dim, 16, 1.0f, (unsigned)(50 + a));
            qv_coarse *cq = qv_coarse_new(c, nl, (uint32_t)dim, ip);
            if (!cq) { /* no AVX2/F16C here: the float32 scan serves */
                free(c), free(q);
                continue;
            }
            double *exact = malloc(nl * sizeof *exact);
            int64_t *order = malloc(nl * sizeof *order), *lists = malloc(nl * sizeof *lists);
            float *dis = malloc(nl * sizeof *dis);
            const size_t nps[] = {1, 7, 100, nl};
            size_t same = 0, total = 0;
            for (size_t i = 0; i < NQ; i++) {
                const float *x = q + i * dim;
                double xn = 0;
                for (size_t j = 0; j < dim; j++) xn += (double)x[j] * x[j];
                for (size_t l = 0; l < nl; l++) {
                    double d = 0, cn = 0;
                    for (size_t j = 0; j < dim; j++) {
                        d += (double)x[j] * c[l * dim + j];
                        cn += (double)c[l * dim + j] * c[l * dim + j];
                    }
                    exact[l] = ip ? -d : xn + cn - 2 * d; /* smaller is nearer */
                    order[l] = (int64_t)l;
                }
                for (size_t u = 1; u < nl; u++) /* insertion sort by exact key */
                    for (size_t v = u; v > 0 && exact[order[v]] < exact[order[v - 1]]; v--) {
                        int64_t t = order[v];
                        order[v] = order[v - 1];
                        order[v - 1] = t;
                    }
                for (size_t w = 0; w < 4; w++) {
                    size_t np = nps[w] < nl ? nps[w] : nl;
                    CHECK_OK(qv_coarse_rank(cq, x, np, lists, dis));
                    for (size_t j = 0; j < np; j++) {
                        assert_true(lists[j] >= 0 && (size_t)lists[j] < nl);
                        double want = ip ? -exact[lists[j]] : exact[lists[j]];
                        if (!(fabs(dis[j] - want) <= 1e-4 * (1 + fabs(want))))
                            fail_msg("dim %zu ip %d np %zu rank %zu: distance %g, exact %g", dim, ip, np, j,
                                     dis[j], want);
                        if (j) /* nearest first */
                            assert_true(ip ? dis[j] <= dis[j - 1] + 1e-6f : dis[j] >= dis[j - 1] - 1e-6f);
                        /* the list at this rank, or one tied with it */
                        int tied = fabs(exact[order[j]] - exact[lists[j]]) <= 1e-5 * (1 + fabs(exact[order[j]]));
                        same += lists[j] == order[j] || tied;
                        total++;
                    }
                }
            }
            if (same < total) fail_msg("dim %zu ip %d: %zu of %zu ranks as float32", dim, ip, same, total);
            checked++;
            qv_coarse_free(cq);
            free(exact), free(order), free(lists), free(dis), free(c), free(q);
        }
    if (!checked) print_message("coarse: no AVX2/F16C on this CPU, half precision not checked\n");
}

static void test_ivf_recall(void **state)
{
    (void)state;
    const uint32_t dim = 32, nlist = 32;
    const size_t n = 4000, nq = 100, k = 10;
    /* overlapping clusters, so that nprobe matters */
    float *x = clustered_spread(n, dim, 64, 1.0f, 4);
    float *q = clustered_spread(nq, dim, 64, 1.0f, 5);
    int64_t *ids = seq_ids(n, 1000);
    qv_index *ix = build(dim, QV_METRIC_L2, P_IVF32, n, x, ids);
    assert_int_equal(qv_index_get_params(ix)->nlist, nlist);

    size_t hits = 0, hits1 = 0;
    for (size_t i = 0; i < nq; i++) {
        int64_t bl[10];
        double bs[10];
        brute(QV_METRIC_L2, x, ids, NULL, n, dim, q + i * dim, k, bl, bs);
        float sc[10];
        int64_t lab[10];
        /* nprobe == nlist: IVF-Flat is exhaustive and exact */
        CHECK_OK(unit_search(ix, 1, q + i * dim, k, nlist, sc, lab));
        expect_exact(QV_METRIC_L2, sc, lab, bs, bl, k, "ivf nprobe=nlist");
        CHECK_OK(unit_search(ix, 1, q + i * dim, k, 8, sc, lab));
        for (size_t a = 0; a < k; a++)
            for (size_t b = 0; b < k; b++) hits += lab[a] == bl[b];
        CHECK_OK(unit_search(ix, 1, q + i * dim, k, 1, sc, lab));
        for (size_t a = 0; a < k; a++)
            for (size_t b = 0; b < k; b++) hits1 += lab[a] == bl[b];
    }
    double recall = (double)hits / (nq * k), recall1 = (double)hits1 / (nq * k);
    print_message("ivf_flat recall@10: nprobe 8 %.3f, nprobe 1 %.3f\n", recall, recall1);
    assert_true(recall >= 0.9);
    assert_true(recall1 < recall); /* nprobe really travels with the call */

    /* the default nprobe is used for nprobe 0 and can be changed */
    float s0[10], s8[10];
    int64_t l0[10], l8[10];
    qv_index_set_nprobe(ix, 3);
    assert_int_equal(qv_index_get_nprobe(ix), 3);
    CHECK_OK(unit_search(ix, 1, q, k, 0, s0, l0));
    CHECK_OK(unit_search(ix, 1, q, k, 3, s8, l8));
    assert_memory_equal(l0, l8, sizeof l0);
    qv_index_set_nprobe(ix, 0);
    assert_int_equal(qv_index_get_nprobe(ix), 8); /* max(8, sqrt(32)) */
    qv_index_free(ix);
    free(x);
    free(q);
    free(ids);
}

/* ---- removal and upsert ---- */

static void removal(qv_index_params p)
{
    const uint32_t dim = 16;
    const size_t n = 3000, k = 20;
    float *x = clustered(n, dim, 30, 6);
    int64_t *ids = seq_ids(n, 0);
    qv_index *ix = build(dim, QV_METRIC_L2, p, n, x, ids);
    uint32_t nprobe = p.nlist ? p.nlist : 0;

    /* remove every 10th id, plus absent ids and a duplicate */
    int64_t rm[310];
    size_t nrm = 0;
    char *alive = malloc(n);
    memset(alive, 1, n);
    for (size_t i = 0; i < n; i += 10) {
        rm[nrm++] = ids[i];
        alive[i] = 0;
    }
    rm[nrm++] = 1; /* ids are multiples of 7: absent */
    rm[nrm++] = 999999;
    rm[nrm++] = ids[0];
    size_t removed = 0;
    CHECK_OK(qv_index_remove(ix, nrm, rm, &removed));
    assert_int_equal(removed, n / 10);
    assert_int_equal(qv_index_count(ix), n - n / 10);

    /* removed ids never come back, even when queried with their own vector */
    for (size_t i = 0; i < n; i += 50) {
        float sc[20];
        int64_t lab[20], bl[20];
        double bs[20];
        CHECK_OK(unit_search(ix, 1, x + i * dim, k, nprobe, sc, lab));
        for (size_t r = 0; r < k; r++)
            if (lab[r] >= 0) assert_true(alive[lab[r] / 7]);
        if (p.kind != QV_KIND_IVF_PQ && p.kind != QV_KIND_IVF_SQ8 && p.kind != QV_KIND_IVF_PQ_FS) {
            brute(QV_METRIC_L2, x, ids, alive, n, dim, x + i * dim, k, bl, bs);
            expect_exact(QV_METRIC_L2, sc, lab, bs, bl, k, "after remove");
        }
    }
    /* removing again, or nothing, is harmless */
    CHECK_OK(qv_index_remove(ix, nrm, rm, &removed));
    assert_int_equal(removed, 0);
    CHECK_OK(qv_index_remove(ix, 0, NULL, &removed));
    assert_int_equal(removed, 0);
    CHECK_OK(qv_index_remove(ix, 2, rm, NULL));
    assert_int_equal(qv_index_count(ix), n - n / 10);

    /* upsert: remove then add the same id with a new vector, next to the live
     * vector farthest from its old one */
    int64_t up = ids[123];
    size_t far = 0;
    for (size_t i = 0; i < n; i++)
        if (alive[i] && score_of(QV_METRIC_L2, x + i * dim, x + 123 * dim, dim) >
                            score_of(QV_METRIC_L2, x + far * dim, x + 123 * dim, dim))
            far = i;
    float nv[16];
    for (uint32_t j = 0; j < dim; j++) nv[j] = x[far * dim + j] + 0.25f;
    CHECK_OK(qv_index_remove(ix, 1, &up, &removed));
    assert_int_equal(removed, 1);
    CHECK_OK(qv_index_add(ix, 1, &up, nv));
    assert_int_equal(qv_index_count(ix), n - n / 10);
    float sc[20];
    int64_t lab[20];
    CHECK_OK(unit_search(ix, 1, nv, k, nprobe, sc, lab));
    if (p.kind != QV_KIND_IVF_PQ && (p.kind != QV_KIND_IVF_PQ_FS || p.refine > 1))
        assert_int_equal(lab[0], up); /* PQ without refine: approximate */
    if (p.refine > 1) assert_float_equal(sc[0], 0.0f, 1e-4); /* exact from the copy */
    if (p.kind == QV_KIND_FLAT || p.kind == QV_KIND_IVF_FLAT) assert_float_equal(sc[0], 0.0f, 1e-5);
    int seen = 0;
    for (size_t r = 0; r < k; r++) seen += lab[r] == up;
    assert_int_equal(seen, 1);
    /* the old place no longer finds it */
    CHECK_OK(unit_search(ix, 1, x + (size_t)123 * dim, 5, nprobe, sc, lab));
    for (size_t r = 0; r < 5; r++) assert_true(lab[r] != up);
    /* and it is removable again: the direct map followed the moves */
    CHECK_OK(qv_index_remove(ix, 1, &up, &removed));
    assert_int_equal(removed, 1);
    CHECK_OK(unit_search(ix, 1, nv, k, nprobe, sc, lab));
    for (size_t r = 0; r < k; r++) assert_true(lab[r] != up);

    /* remove everything that is left */
    CHECK_OK(qv_index_remove(ix, n, ids, &removed));
    assert_int_equal(removed, n - n / 10 - 1);
    assert_int_equal(qv_index_count(ix), 0);
    CHECK_OK(unit_search(ix, 1, x, 3, nprobe, sc, lab));
    for (size_t r = 0; r < 3; r++) assert_int_equal(lab[r], -1);

    free(alive);
    qv_index_free(ix);
    free(x);
    free(ids);
}

static void test_remove_flat(void **state)
{
    (void)state;
    removal(P_FLAT);
}

static void test_remove_ivf_flat(void **state)
{
    (void)state;
    removal(P_IVF32);
}

static void test_remove_ivf_sq8(void **state)
{
    (void)state;
    removal((qv_index_params){.kind = QV_KIND_IVF_SQ8, .nlist = 16});
}

static void test_remove_ivf_pq(void **state)
{
    (void)state;
    removal((qv_index_params){.kind = QV_KIND_IVF_PQ, .nlist = 16, .pq_m = 4, .pq_nbits = 6});
}

/* the refine copy follows removals and re-adds (rows move, the hash shifts) */
static void test_remove_ivf_pq_refine(void **state)
{
    (void)state;
    removal((qv_index_params){
        .kind = QV_KIND_IVF_PQ, .nlist = 16, .pq_m = 4, .pq_nbits = 6, .refine = 4});
}

static void test_remove_ivf_pq_fs(void **state)
{
    (void)state;
    removal((qv_index_params){.kind = QV_KIND_IVF_PQ_FS, .nlist = 16, .pq_m = 8});
    removal((qv_index_params){.kind = QV_KIND_IVF_PQ_FS, .nlist = 16, .pq_m = 8, .refine = 10});
}

/* Fast-scan PQ with refine: every returned score is the exact score of its
 * label, results are sorted, and refine lifts recall over the bare codes. */
static void refine_case(qv_metric m)
{
    const uint32_t dim = 32;
    const size_t n = 4000, nq = 50, k = 10;
    float *x = clustered_spread(n, dim, 64, 1.0f, 21);
    float *q = clustered_spread(nq, dim, 64, 1.0f, 22);
    int64_t *ids = seq_ids(n, 3);
    qv_index *bare = build(dim, m, (qv_index_params){.kind = QV_KIND_IVF_PQ_FS, .nlist = 16,
                                                      .pq_m = 16}, n, x, ids);
    qv_index *ref = build(dim, m, (qv_index_params){.kind = QV_KIND_IVF_PQ_FS, .nlist = 16,
                                                     .pq_m = 16, .refine = 10}, n, x, ids);
    assert_false(qv_index_has_refine(bare));
    assert_true(qv_index_has_refine(ref));
    assert_int_equal(qv_index_get_params(ref)->pq_nbits, 4);
    size_t hb = 0, hr = 0;
    for (size_t i = 0; i < nq; i++) {
        int64_t bl[10], lb[10], lr[10];
        double bs[10];
        float sb[10], sr[10];
        brute(m, x, ids, NULL, n, dim, q + i * dim, k, bl, bs);
        CHECK_OK(unit_search(bare, 1, q + i * dim, k, 16, sb, lb));
        CHECK_OK(unit_search(ref, 1, q + i * dim, k, 16, sr, lr));
        for (size_t a = 0; a < k; a++) {
            assert_true(lr[a] >= 0);
            double exact = score_of(m, q + i * dim, x + (size_t)(lr[a] - 3) / 7 * dim, dim);
            if (!close_to(sr[a], exact))
                fail_msg("rank %zu: score %.6f, exact %.6f", a, sr[a], exact);
            if (a > 0) assert_false(better(m, sr[a], sr[a - 1]));
            for (size_t b = 0; b < k; b++) {
                hb += lb[a] == bl[b];
                hr += lr[a] == bl[b];
            }
        }
    }
    double rb = (double)hb / (nq * k), rr = (double)hr / (nq * k);
    print_message("ivf_pq_fs recall@10 (nprobe = nlist): bare %.3f, refine 10 %.3f\n", rb, rr);
    assert_true(rr >= 0.95);
    assert_true(rr > rb);
    /* a batch gives the same as single queries */
    float s1[50 * 10];
    int64_t l1[50 * 10], l0[10];
    float s0[10];
    CHECK_OK(unit_search(ref, nq, q, k, 16, s1, l1));
    CHECK_OK(unit_search(ref, 1, q + 7 * dim, k, 16, s0, l0));
    assert_memory_equal(l1 + 7 * k, l0, sizeof l0);
    /* k beyond the item count: padded with -1 */
    float *sk = malloc(n * 2 * sizeof *sk);
    int64_t *lk = malloc(n * 2 * sizeof *lk);
    CHECK_OK(unit_search(ref, 1, q, n + 5, 16, sk, lk));
    for (size_t a = 0; a < n; a++) assert_true(lk[a] >= 0);
    for (size_t a = n; a < n + 5; a++) assert_int_equal(lk[a], -1);
    free(sk);
    free(lk);
    qv_index_free(bare);
    qv_index_free(ref);
    free(x);
    free(q);
    free(ids);
}

static void test_refine_l2(void **state)
{
    (void)state;
    refine_case(QV_METRIC_L2);
}

static void test_refine_cosine(void **state)
{
    (void)state;
    refine_case(QV_METRIC_COSINE);
}

/* ---- write / read ---- */

static size_t file_size(FILE *f)
{
    long pos = ftell(f);
    fseek(f, 0, SEEK_END);
    long end = ftell(f);
    fseek(f, pos, SEEK_SET);
    return (size_t)end;
}

/* A new tmpfile holding the first len bytes of f. */
static FILE *prefix_copy(FILE *f, size_t len)
{
    FILE *t = tmpfile();
    assert_non_null(t);
    char *buf = malloc(len + 1);
    fseek(f, 0, SEEK_SET);
    assert_int_equal(fread(buf, 1, len, f), len);
    assert_int_equal(fwrite(buf, 1, len, t), len);
    free(buf);
    fflush(t);
    return t;
}

static void roundtrip(qv_metric metric, qv_index_params p)
{
    const uint32_t dim = 32;
    const size_t n = 3000, nq = 20, k = 10;
    float *x = clustered(n, dim, 50, 7);
    float *q = clustered(nq, dim, 50, 8);
    int64_t *ids = seq_ids(n, 5);
    qv_index *ix = build(dim, metric, p, n, x, ids);
    qv_index_set_nprobe(ix, 5);
    size_t removed;
    CHECK_OK(qv_index_remove(ix, 3, ids, &removed)); /* state after removals too */
    assert_int_equal(removed, 3);

    float s1[20 * 10], s2[20 * 10];
    int64_t l1[20 * 10], l2[20 * 10];
    CHECK_OK(unit_search(ix, nq, q, k, 5, s1, l1));

    /* at an offset, with bytes after it: the index sits between the caller's data */
    FILE *f = tmpfile();
    assert_non_null(f);
    assert_int_equal(fwrite("QVHDR", 1, 5, f), 5);
    CHECK_OK(qv_index_write(ix, f));
    long end = ftell(f);
    assert_int_equal(fwrite("TAIL", 1, 4, f), 4);
    fflush(f);

    fseek(f, 5, SEEK_SET);
    qv_index *rx = NULL;
    CHECK_OK(qv_index_read(f, dim, metric, &p, &rx));
    assert_int_equal(ftell(f), end);
    assert_int_equal(qv_index_count(rx), n - 3);
    assert_int_equal(qv_index_dim(rx), dim);
    assert_int_equal(qv_index_metric(rx), metric);
    assert_int_equal(qv_index_is_trained(rx), 1);
    const qv_index_params *a = qv_index_get_params(ix), *b = qv_index_get_params(rx);
    assert_int_equal(a->kind, b->kind);
    assert_int_equal(a->nlist, b->nlist);
    assert_int_equal(a->pq_m, b->pq_m);
    assert_int_equal(a->pq_nbits, b->pq_nbits);
    qv_index_set_nprobe(rx, 5); /* the caller restores its default */
    CHECK_OK(unit_search(rx, nq, q, k, 0, s2, l2));
    assert_memory_equal(l1, l2, sizeof l1);
    assert_memory_equal(s1, s2, sizeof s1);

    /* the loaded index keeps working: removal by id, add */
    CHECK_OK(qv_index_remove(rx, 2, ids + 10, &removed));
    assert_int_equal(removed, 2);
    CHECK_OK(qv_index_add(rx, 1, ids + 10, x + 10 * dim));
    assert_int_equal(qv_index_count(rx), n - 4);
    qv_index_free(rx);

    /* mismatches are QV_CORRUPT */
    qv_index_params bad = p;
    fseek(f, 5, SEEK_SET);
    CHECK_RC(QV_CORRUPT, qv_index_read(f, dim + 4, metric, &p, &rx));
    assert_null(rx);
    fseek(f, 5, SEEK_SET);
    CHECK_RC(QV_CORRUPT, qv_index_read(f, dim, metric == QV_METRIC_L2 ? QV_METRIC_IP : QV_METRIC_L2,
                                       &p, &rx));
    bad.kind = p.kind == QV_KIND_IVF_FLAT ? QV_KIND_IVF_SQ8 : QV_KIND_IVF_FLAT;
    bad.nlist = p.nlist ? p.nlist : 16;
    fseek(f, 5, SEEK_SET);
    CHECK_RC(QV_CORRUPT, qv_index_read(f, dim, metric, &bad, &rx));
    if (p.kind != QV_KIND_FLAT) {
        bad = p;
        bad.nlist = p.nlist + 1;
        fseek(f, 5, SEEK_SET);
        CHECK_RC(QV_CORRUPT, qv_index_read(f, dim, metric, &bad, &rx));
        bad = (qv_index_params){.kind = QV_KIND_FLAT};
        fseek(f, 5, SEEK_SET);
        CHECK_RC(QV_CORRUPT, qv_index_read(f, dim, metric, &bad, &rx));
    }
    if (p.kind == QV_KIND_IVF_PQ) {
        bad = p;
        bad.pq_m = 8;
        fseek(f, 5, SEEK_SET);
        CHECK_RC(QV_CORRUPT, qv_index_read(f, dim, metric, &bad, &rx));
        bad = p;
        bad.pq_nbits = 8;
        fseek(f, 5, SEEK_SET);
        CHECK_RC(QV_CORRUPT, qv_index_read(f, dim, metric, &bad, &rx));
    }
    if (p.kind == QV_KIND_IVF_SQ8) { /* ivf_pq with the same code size */
        bad = (qv_index_params){
            .kind = QV_KIND_IVF_PQ, .nlist = p.nlist, .pq_m = 32, .pq_nbits = 8};
        fseek(f, 5, SEEK_SET);
        CHECK_RC(QV_CORRUPT, qv_index_read(f, dim, metric, &bad, &rx));
    }

    fclose(f);

    qv_index_free(ix);
    free(x);
    free(q);
    free(ids);
}

/* Truncated or garbage files: an error, never a crash. (FAISS 1.7.3's
 * read_index leaks the partly read index when it throws: run this test
 * without leak detection, the others with it.) */
static void test_read_corrupt(void **state)
{
    (void)state;
    const uint32_t dim = 16;
    const size_t n = 2600;
    float *x = clustered(n, dim, 20, 13);
    int64_t *ids = seq_ids(n, 0);
    const qv_index_params kinds[] = {
        {.kind = QV_KIND_FLAT},
        {.kind = QV_KIND_IVF_FLAT, .nlist = 16},
        {.kind = QV_KIND_IVF_PQ, .nlist = 16, .pq_m = 4, .pq_nbits = 6},
        {.kind = QV_KIND_IVF_SQ8, .nlist = 16},
        {.kind = QV_KIND_IVF_PQ_FS, .nlist = 16, .pq_m = 8, .refine = 5},
    };
    for (size_t kd = 0; kd < sizeof kinds / sizeof kinds[0]; kd++) {
        const qv_index_params *p = &kinds[kd];
        qv_index *ix = build(dim, QV_METRIC_L2, *p, n, x, ids), *rx;
        FILE *f = tmpfile();
        assert_non_null(f);
        assert_int_equal(fwrite("QVHDR", 1, 5, f), 5);
        CHECK_OK(qv_index_write(ix, f));
        size_t end = (size_t)ftell(f);
        fflush(f);
        assert_int_equal(file_size(f), end);
        size_t cuts[] = {5, 6, 9, 20, 64, 5 + (end - 5) / 3, 5 + (end - 5) / 2, end - 100, end - 1};
        for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
            FILE *t = prefix_copy(f, cuts[c]);
            fseek(t, 5, SEEK_SET);
            rx = ix;
            int rc = qv_index_read(t, dim, QV_METRIC_L2, p, &rx);
            if (rc != QV_CORRUPT)
                fail_msg("%s: read truncated at %zu of %zu -> %d (%s)", qv_index_kind_name(p->kind),
                         cuts[c], end, rc, qv_strerror(rc));
            assert_null(rx);
            fclose(t);
        }
        /* the whole file still reads */
        FILE *t = prefix_copy(f, end);
        fseek(t, 5, SEEK_SET);
        CHECK_OK(qv_index_read(t, dim, QV_METRIC_L2, p, &rx));
        assert_int_equal(qv_index_count(rx), n);
        qv_index_free(rx);
        fclose(t);
        fclose(f);
        qv_index_free(ix);
    }
    /* garbage */
    FILE *g = tmpfile();
    assert_non_null(g);
    for (int i = 0; i < 4096; i++) fputc((int)((i * 2654435761u) >> 13) & 0xff, g);
    fseek(g, 0, SEEK_SET);
    qv_index *rx = NULL;
    CHECK_RC(QV_CORRUPT, qv_index_read(g, dim, QV_METRIC_L2, &kinds[0], &rx));
    fclose(g);
    free(x);
    free(ids);
}

static void test_roundtrip_flat(void **state)
{
    (void)state;
    roundtrip(QV_METRIC_IP, P_FLAT);
}

static void test_roundtrip_ivf_flat(void **state)
{
    (void)state;
    roundtrip(QV_METRIC_COSINE, (qv_index_params){.kind = QV_KIND_IVF_FLAT, .nlist = 24});
}

static void test_roundtrip_ivf_pq(void **state)
{
    (void)state;
    roundtrip(QV_METRIC_L2,
              (qv_index_params){.kind = QV_KIND_IVF_PQ, .nlist = 20, .pq_m = 4, .pq_nbits = 6});
}

static void test_roundtrip_ivf_sq8(void **state)
{
    (void)state;
    roundtrip(QV_METRIC_IP, (qv_index_params){.kind = QV_KIND_IVF_SQ8, .nlist = 12});
}

static void test_roundtrip_ivf_pq_fs(void **state)
{
    (void)state;
    roundtrip(QV_METRIC_COSINE, (qv_index_params){.kind = QV_KIND_IVF_PQ_FS, .nlist = 20,
                                                   .pq_m = 4, .refine = 10});
    roundtrip(QV_METRIC_L2, (qv_index_params){.kind = QV_KIND_IVF_PQ_FS, .nlist = 20, .pq_m = 4});
    roundtrip(QV_METRIC_L2, (qv_index_params){.kind = QV_KIND_IVF_PQ, .nlist = 20, .pq_m = 4,
                                               .pq_nbits = 6, .refine = 3});
}

/* ---- misuse ---- */

static void test_errors(void **state)
{
    (void)state;
    const uint32_t dim = 16;
    float *x = clustered(1300, dim, 10, 9);
    int64_t *ids = seq_ids(1300, 0);
    qv_index *ix = NULL;
    CHECK_OK(qv_index_new(dim, QV_METRIC_L2, &P_IVF32, &ix));
    assert_false(qv_index_is_trained(ix));
    float sc[4];
    int64_t lab[4];
    CHECK_RC(QV_INVALID, qv_index_add(ix, 10, ids, x));    /* not trained */
    CHECK_RC(QV_INVALID, unit_search(ix, 1, x, 4, 0, sc, lab));
    CHECK_RC(QV_INVALID, qv_index_train(ix, 31, x));       /* n < nlist */
    CHECK_OK(qv_index_train(ix, 1300, x));
    CHECK_OK(qv_index_add(ix, 10, ids, x));
    CHECK_RC(QV_INVALID, qv_index_train(ix, 1300, x));     /* holds items */
    CHECK_RC(QV_INVALID, unit_search(ix, 1, x, 0, 0, sc, lab)); /* k = 0 */
    CHECK_OK(unit_search(ix, 0, x, 4, 0, sc, lab));   /* nq = 0: nothing to do */
    int64_t neg = -5;
    CHECK_RC(QV_INVALID, qv_index_add(ix, 1, &neg, x));
    assert_int_equal(qv_index_count(ix), 10);
    qv_index_free(ix);

    qv_index_params pq = {.kind = QV_KIND_IVF_PQ, .nlist = 4, .pq_m = 4, .pq_nbits = 0};
    CHECK_OK(qv_index_new(dim, QV_METRIC_L2, &pq, &ix));
    assert_int_equal(qv_index_get_params(ix)->pq_nbits, 8); /* resolved */
    CHECK_RC(QV_INVALID, qv_index_train(ix, 200, x));      /* n < 2^8 */
    qv_index_free(ix);
    qv_index_free(NULL);

    /* flat: training is a no-op, nprobe is ignored */
    CHECK_OK(qv_index_new(dim, QV_METRIC_L2, &P_FLAT, &ix));
    assert_true(qv_index_is_trained(ix));
    CHECK_OK(qv_index_train(ix, 0, NULL));
    qv_index_set_nprobe(ix, 5);
    assert_int_equal(qv_index_get_nprobe(ix), 0);
    size_t m0 = qv_index_memory(ix);
    CHECK_OK(qv_index_add(ix, 500, ids, x));
    size_t m1 = qv_index_memory(ix);
    assert_true(m1 >= m0 + 500 * (dim * sizeof(float) + 8));
    assert_true(m1 < m0 + 500 * (dim * sizeof(float) + 8) * 2);
    qv_index_free(ix);
    free(x);
    free(ids);
}

/* A small search leaves this thread's OpenMP setting as it found it. */
static void test_omp_restored(void **state)
{
    (void)state;
    const uint32_t dim = 16;
    float *x = clustered(300, dim, 5, 10);
    int64_t *ids = seq_ids(300, 0);
    qv_index *ix = build(dim, QV_METRIC_L2, P_FLAT, 300, x, ids);
    int before = omp_get_max_threads();
    omp_set_num_threads(3);
    float sc[5];
    int64_t lab[5];
    CHECK_OK(unit_search(ix, 1, x, 5, 0, sc, lab));
    assert_int_equal(omp_get_max_threads(), 3);
    omp_set_num_threads(before);
    qv_index_free(ix);
    free(x);
    free(ids);
}

/* ---- concurrency ---- */

#define CQ 150
#define CK 10

struct worker {
    const qv_index *ix;
    const float *q;
    uint32_t dim, nprobe;
    const int64_t *want_l; /* CQ*CK */
    const float *want_s;
    int rounds, mismatches, errors;
};

static void *worker_run(void *arg)
{
    struct worker *w = arg;
    for (int r = 0; r < w->rounds; r++) {
        for (size_t i = 0; i < CQ; i++) {
            float sc[CK];
            int64_t lab[CK];
            if (unit_search(w->ix, 1, w->q + i * w->dim, CK, w->nprobe, sc, lab) != 0) {
                w->errors++;
                continue;
            }
            if (memcmp(lab, w->want_l + i * CK, sizeof lab) ||
                memcmp(sc, w->want_s + i * CK, sizeof sc))
                w->mismatches++;
        }
    }
    return NULL;
}

static void test_concurrent_search(void **state)
{
    (void)state;
    const uint32_t dim = 32;
    const size_t n = 4000;
    float *x = clustered(n, dim, 64, 11);
    float *q = clustered(CQ, dim, 64, 12);
    int64_t *ids = seq_ids(n, 0);
    qv_index *ix = build(dim, QV_METRIC_L2, P_IVF32, n, x, ids);

    enum { NT = 4 };
    const uint32_t nprobes[NT] = {1, 4, 12, 32};
    static int64_t want_l[NT][CQ * CK];
    static float want_s[NT][CQ * CK];
    for (int t = 0; t < NT; t++)
        for (size_t i = 0; i < CQ; i++)
            CHECK_OK(unit_search(ix, 1, q + i * dim, CK, nprobes[t], want_s[t] + i * CK,
                                     want_l[t] + i * CK));
    /* different nprobe values really give different results */
    assert_true(memcmp(want_l[0], want_l[3], sizeof want_l[0]) != 0);

    struct worker w[NT];
    pthread_t th[NT];
    for (int t = 0; t < NT; t++) {
        w[t] = (struct worker){.ix = ix, .q = q, .dim = dim, .nprobe = nprobes[t],
                               .want_l = want_l[t], .want_s = want_s[t], .rounds = 4};
        assert_int_equal(pthread_create(&th[t], NULL, worker_run, &w[t]), 0);
    }
    /* meanwhile, a batched search on this thread (may use OpenMP) */
    float *bs = malloc(CQ * CK * sizeof(float));
    int64_t *bl = malloc(CQ * CK * sizeof(int64_t));
    CHECK_OK(unit_search(ix, CQ, q, CK, 12, bs, bl));
    for (int t = 0; t < NT; t++) assert_int_equal(pthread_join(th[t], NULL), 0);
    for (int t = 0; t < NT; t++) {
        assert_int_equal(w[t].errors, 0);
        assert_int_equal(w[t].mismatches, 0);
    }
    /* the batch gives the same labels as the single-query searches */
    assert_memory_equal(bl, want_l[2], CQ * CK * sizeof(int64_t));
    free(bs);
    free(bl);
    qv_index_free(ix);
    free(x);
    free(q);
    free(ids);
}

int main(void)
{
    qv_log_set_level(getenv("QV_TEST_VERBOSE") ? QV_LOG_DEBUG : -1); /* tests provoke errors */
    /* QV_TEST_ONLY / QV_TEST_SKIP: cmocka name patterns, e.g. for the ASan run
     * QV_TEST_SKIP=test_read_corrupt (leak check on), then QV_TEST_ONLY=... */
    if (getenv("QV_TEST_ONLY")) cmocka_set_test_filter(getenv("QV_TEST_ONLY"));
    if (getenv("QV_TEST_SKIP")) cmocka_set_skip_filter(getenv("QV_TEST_SKIP"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kind_names),
        cmocka_unit_test(test_normalize),
        cmocka_unit_test(test_params_check),
        cmocka_unit_test(test_flat_l2_exact),
        cmocka_unit_test(test_flat_ip_exact),
        cmocka_unit_test(test_flat_cosine_exact),
        cmocka_unit_test(test_l2_scores_are_squared),
        cmocka_unit_test(test_cosine_flat),
        cmocka_unit_test(test_cosine_ivf),
        cmocka_unit_test(test_ivf_recall),
        cmocka_unit_test(test_flat_batch_in_chunks),
        cmocka_unit_test(test_coarse_scans_match_faiss),
        cmocka_unit_test(test_bitmap_selector_bounds),
        cmocka_unit_test(test_remove_flat),
        cmocka_unit_test(test_remove_ivf_flat),
        cmocka_unit_test(test_remove_ivf_sq8),
        cmocka_unit_test(test_remove_ivf_pq),
        cmocka_unit_test(test_remove_ivf_pq_refine),
        cmocka_unit_test(test_remove_ivf_pq_fs),
        cmocka_unit_test(test_refine_l2),
        cmocka_unit_test(test_refine_cosine),
        cmocka_unit_test(test_roundtrip_ivf_pq_fs),
        cmocka_unit_test(test_roundtrip_flat),
        cmocka_unit_test(test_roundtrip_ivf_flat),
        cmocka_unit_test(test_roundtrip_ivf_pq),
        cmocka_unit_test(test_roundtrip_ivf_sq8),
        cmocka_unit_test(test_read_corrupt),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_omp_restored),
        cmocka_unit_test(test_concurrent_search),
        cmocka_unit_test(test_coarse_half_ranks_as_float32),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
