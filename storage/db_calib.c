/*
 * The engine, part: calibration: exact neighbours of held-out items, recall per nprobe.
 * Private declarations in db_int.h.
 */
#include <math.h>

#include "db_int.h"

/* --------------------------------------------------------- calibration */


static int better(qv_metric m, float a, float b) { return m == QV_METRIC_L2 ? a < b : a > b; }

int qv_calib_init(calib *cal, qv_coll *c, const sample *s)
{
    memset(cal, 0, sizeof *cal);
    cal->m = c->cfg.metric == QV_METRIC_COSINE ? QV_METRIC_IP : c->cfg.metric;
    cal->dim = c->cfg.dim;
    cal->nq = s->n < CALIB_POOL ? s->n : CALIB_POOL;
    cal->qs = malloc((cal->nq ? cal->nq : 1) * cal->dim * sizeof *cal->qs);
    cal->qid = malloc((cal->nq ? cal->nq : 1) * sizeof *cal->qid);
    cal->bs = malloc((cal->nq ? cal->nq : 1) * CAL_K * sizeof *cal->bs);
    cal->bl = malloc((cal->nq ? cal->nq : 1) * CAL_K * sizeof *cal->bl);
    if (!cal->qs || !cal->qid || !cal->bs || !cal->bl) return QV_NOMEM;
    /* the head of the sample was shuffled (hold_out): a uniform sample */
    memcpy(cal->qs, s->vecs, cal->nq * cal->dim * sizeof *cal->qs);
    memcpy(cal->qid, s->ids, cal->nq * sizeof *cal->qid);
    for (size_t i = 0; i < cal->nq * CAL_K; i++) cal->bl[i] = -1;
    return 0;
}

/* Move a uniform random choice of min(want, n) of the sample's items to its
 * head (a partial Fisher-Yates shuffle; a reservoir's slots are not in random
 * order: slot i keeps the i-th item scanned with probability cap/n). Returns
 * how many. */
size_t qv_calib_hold_out(sample *s, size_t want)
{
    size_t h = want < s->n ? want : s->n;
    float *tmp = malloc(s->dim * sizeof *tmp);
    if (!tmp) return 0;
    for (size_t i = 0; i < h; i++) {
        s->rng = s->rng * 6364136223846793005ULL + 1442695040888963407ULL;
        size_t j = i + (size_t)((s->rng >> 11) % (s->n - i));
        int64_t id = s->ids[i];
        s->ids[i] = s->ids[j];
        s->ids[j] = id;
        memcpy(tmp, s->vecs + i * s->dim, s->dim * sizeof *tmp);
        memcpy(s->vecs + i * s->dim, s->vecs + j * s->dim, s->dim * sizeof *tmp);
        memcpy(s->vecs + j * s->dim, tmp, s->dim * sizeof *tmp);
    }
    free(tmp);
    return h;
}

void qv_calib_free(calib *cal)
{
    free(cal->qs);
    free(cal->qid);
    free(cal->bs);
    free(cal->bl);
}

/* Merges the exact top-11 of the queries within one chunk. */
int qv_calib_chunk(calib *cal, size_t n, const int64_t *ids, const float *vecs)
{
    if (cal->nq == 0 || n == 0) return 0;
    qv_index *flat = NULL;
    qv_index_params fp = {.kind = QV_KIND_FLAT};
    size_t k = n < CAL_K ? n : CAL_K;
    float *s = malloc(cal->nq * k * sizeof *s);
    int64_t *l = malloc(cal->nq * k * sizeof *l);
    int rc = s && l ? qv_index_new(cal->dim, cal->m, &fp, &flat) : QV_NOMEM;
    if (!rc) rc = qv_index_add(flat, n, ids, vecs);
    if (!rc) rc = qv_index_search(flat, cal->nq, cal->qs, k, 0, s, l);
    for (size_t q = 0; !rc && q < cal->nq; q++) {
        float ms[CAL_K];
        int64_t ml[CAL_K];
        float *bs = cal->bs + q * CAL_K;
        int64_t *bl = cal->bl + q * CAL_K;
        size_t a = 0, b = 0;
        for (size_t o = 0; o < CAL_K; o++) {
            int take_a = a < CAL_K && bl[a] >= 0;
            int take_b = b < k && l[q * k + b] >= 0;
            if (take_a && take_b) take_a = !better(cal->m, s[q * k + b], bs[a]);
            if (take_a) {
                ms[o] = bs[a];
                ml[o] = bl[a++];
            } else if (take_b) {
                ms[o] = s[q * k + b];
                ml[o] = l[q * k + b++];
            } else {
                ml[o] = -1;
                ms[o] = 0;
            }
        }
        memcpy(bs, ms, sizeof ms);
        memcpy(bl, ml, sizeof ml);
    }
    qv_index_free(flat);
    free(s);
    free(l);
    return rc;
}

/* Weight of the true neighbour at rank b (0-based) of one part of `parts`:
 * the chance that it is in the merged top 10, i.e. that the part holds at
 * least b+1 of the merged top 10, which falls in it ~ Binomial(10, 1/parts)
 * (items are spread by a hash of their id). 1 for every rank when whole. */
static void rank_weights(uint32_t parts, double w[10])
{
    double p = 1.0 / parts, pmf[11];
    for (int j = 0; j <= 10; j++) {
        double c = 1;
        for (int i = 0; i < j; i++) c = c * (10 - i) / (i + 1);
        pmf[j] = c * pow(p, j) * pow(1 - p, 10 - j);
    }
    for (int b = 0; b < 10; b++) {
        w[b] = 0;
        for (int j = b + 1; j <= 10; j++) w[b] += pmf[j];
    }
}

/* Recall@10, each true neighbour weighted as rank_weights says. */
static double recall_at10(const int64_t *got, const int64_t *truth, size_t nq, const double w[10])
{
    double hit = 0, want = 0;
    for (size_t i = 0; i < nq; i++)
        for (size_t b = 0; b < 10; b++) {
            if (truth[i * 10 + b] < 0) continue;
            want += w[b];
            for (size_t a = 0; a < 10; a++)
                if (got[i * 10 + a] == truth[i * 10 + b]) {
                    hit += w[b];
                    break;
                }
        }
    return want > 0 ? hit / want : 1.0;
}

/* Ladder of nprobe values against the exact top-10s gathered in cal: the
 * pool is a uniform sample of the collection, each item searched with its own
 * id left out, which is what a query from the same distribution as the data
 * meets (a held-out item). Queries from far outside it (a rare word against a
 * collection of frequent ones) need more probes: they ask for a higher
 * min_recall. With parts > 1 (a shard of a cluster collection) recall counts
 * what this part contributes to the merged top 10 (rank_weights). */
int qv_calib_run(qv_index *ix, const calib *cal, uint32_t parts, const atomic_int *cancel,
                     qv_recall_point *pts, uint32_t *npts, uint32_t *def_nprobe)
{
    double w[10];
    rank_weights(parts ? parts : 1, w);
    const qv_index_params *p = qv_index_get_params(ix);
    size_t nq = cal->nq;
    *npts = 0;
    *def_nprobe = 1;
    if (nq == 0) return 0;
    size_t kk = CAL_K;
    float *sc = malloc(nq * kk * sizeof *sc);
    int64_t *lb = malloc(nq * kk * sizeof *lb);
    int64_t *truth = malloc(nq * 10 * sizeof *truth);
    int64_t *got = malloc(nq * 10 * sizeof *got);
    const float *qs = cal->qs;
    const int64_t *qid = cal->qid;
    int rc = QV_NOMEM;
    if (!sc || !lb || !truth || !got) goto out;
    for (size_t i = 0; i < nq; i++) {
        size_t o = 0;
        for (size_t j = 0; j < CAL_K && o < 10; j++)
            if (cal->bl[i * CAL_K + j] != qid[i]) truth[i * 10 + o++] = cal->bl[i * CAL_K + j];
        while (o < 10) truth[i * 10 + o++] = -1;
    }
    static const uint32_t ladder[] = {1,   2,   3,   4,   6,    8,    12,   16,
                                      24,  32,  48,  64,  96,   128,  192,  256,
                                      384, 512, 768, 1024, 1536, 2048, 4096, 65536};
    for (size_t s = 0; s < sizeof ladder / sizeof *ladder && *npts < QV_MAX_RECALL_POINTS; s++) {
        uint32_t np = ladder[s] < p->nlist ? ladder[s] : p->nlist;
        if (cancel && atomic_load(cancel)) {
            rc = QV_CANCELLED;
            goto out;
        }
        /* in chunks of queries: a search's transient memory grows with
         * queries x lists probed (the coarse ranks, FAISS's pairs sorted by
         * list), ~70 MB for all 600 at nprobe 4,096, which was the peak of a
         * whole first build of glove-100; a chunk keeps it near 7 MB */
        size_t chunk = CALIB_CHUNK_PAIRS / np;
        if (chunk < 16) chunk = 16;
        for (size_t i = 0; i < nq; i += chunk) {
            size_t m = nq - i < chunk ? nq - i : chunk;
            if ((rc = qv_index_search(ix, m, qs + i * cal->dim, kk, np, sc + i * kk, lb + i * kk))) goto out;
        }
        for (size_t i = 0; i < nq; i++) {
            size_t o = 0;
            for (size_t j = 0; j < kk && o < 10; j++)
                if (lb[i * kk + j] != qid[i]) got[i * 10 + o++] = lb[i * kk + j];
            while (o < 10) got[i * 10 + o++] = -2;
        }
        double r = recall_at10(got, truth, nq, w);
        pts[*npts].nprobe = np;
        pts[*npts].recall = (float)r;
        (*npts)++;
        if (r >= 0.9995 || np >= p->nlist) break;
    }
    *def_nprobe = qv_calib_nprobe_for(pts, *npts, DEFAULT_MIN_RECALL);
    rc = 0;
out:
    free(sc);
    free(lb);
    free(truth);
    free(got);
    return rc;
}

/* ---------------------------------------------------------------- nprobe */
/* The smallest nprobe whose calibrated recall reaches min_recall, interpolated
 * linearly between the two ladder points around it (recall grows concavely
 * with nprobe, so the line under-estimates it: the pick errs on the safe
 * side, by less than the ladder's steps would). */
uint32_t qv_calib_nprobe_for(const qv_recall_point *pts, uint32_t n, float min_recall)
{
    float want = min_recall;
    for (uint32_t i = 0; i < n; i++) {
        if (pts[i].recall < want) continue;
        if (i == 0 || pts[i].recall <= pts[i - 1].recall) return pts[i].nprobe;
        double f = (want - pts[i - 1].recall) / (pts[i].recall - pts[i - 1].recall);
        double np = pts[i - 1].nprobe + f * (pts[i].nprobe - pts[i - 1].nprobe);
        uint32_t r = (uint32_t)ceil(np);
        return r < pts[i - 1].nprobe + 1 ? pts[i - 1].nprobe + 1 : r;
    }
    /* not reached by any calibrated point: the largest measured */
    return n ? pts[n - 1].nprobe : 1;
}

uint32_t qv_calib_nprobe(const qv_coll *c, float min_recall)
{
    if (c->n_recall == 0) return c->nprobe;
    return qv_calib_nprobe_for(c->recall, c->n_recall, min_recall > 0 ? min_recall : DEFAULT_MIN_RECALL);
}

/* ------------------------------------------------------ parts of a merge */
void qv_db_set_merge_parts(qv_db *db, uint32_t (*parts)(void *ctx, const char *name), void *ctx)
{
    pthread_mutex_lock(&db->pmu);
    db->merge_parts = parts;
    db->merge_ctx = ctx;
    pthread_mutex_unlock(&db->pmu);
}

uint32_t qv_calib_parts(qv_db *db, const char *name)
{
    pthread_mutex_lock(&db->pmu);
    uint32_t n = db->merge_parts ? db->merge_parts(db->merge_ctx, name) : 1;
    pthread_mutex_unlock(&db->pmu);
    return n ? n : 1;
}
