/*
 * The engine, part: searches of a collection's live index (nprobe from the calibrated table).
 * Private declarations in db_int.h.
 */
#include "db_int.h"

/* ----------------------------------------------------------------- search */
/* The smallest nprobe whose calibrated recall reaches min_recall, interpolated
 * linearly between the two ladder points around it (recall grows concavely
 * with nprobe, so the line under-estimates it: the pick errs on the safe
 * side, by less than the ladder's steps would). */
uint32_t nprobe_for(const qv_recall_point *pts, uint32_t n, float min_recall)
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

static uint32_t pick_nprobe(const qv_coll *c, float min_recall)
{
    if (min_recall <= 0 || c->n_recall == 0) return c->nprobe;
    return nprobe_for(c->recall, c->n_recall, min_recall);
}

size_t qv_coll_search_scratch(qv_coll *c, size_t nq, size_t k)
{
    size_t per = k + 1; /* + the excluded query id */
    pthread_rwlock_rdlock(&c->ilock);
    size_t cand = qv_index_candidates(c->index, per);
    pthread_rwlock_unlock(&c->ilock);
    size_t each = sizeof(float) + sizeof(int64_t);
    if (cand > SIZE_MAX / each / 2 || nq > SIZE_MAX / each / 2 / (cand + per)) return SIZE_MAX;
    return nq * (cand + per) * each;
}

int qv_coll_search(qv_coll *c, size_t nq, const float *q, const int64_t *exclude, size_t k,
                   uint32_t nprobe, float min_recall, float *scores, int64_t *labels)
{
    if (atomic_load(&c->dropped)) return QV_NOTFOUND;
    pthread_rwlock_rdlock(&c->ilock);
    const qv_index_params *p = qv_index_get_params(c->index);
    int is_ivf = p->kind != QV_KIND_FLAT;
    /* refine: the index re-ranks from its copy of the vectors in RAM (the
     * benchmark found it 1.8x the QPS of reading them from LMDB) */
    size_t kk = k + (exclude ? 1 : 0);
    if (is_ivf && nprobe == 0) nprobe = pick_nprobe(c, min_recall);
    float *ts = malloc(nq * kk * sizeof *ts);
    int64_t *tl = malloc(nq * kk * sizeof *tl);
    int rc = ts && tl ? qv_index_search(c->index, nq, q, kk, nprobe, ts, tl) : QV_NOMEM;
    pthread_rwlock_unlock(&c->ilock);
    if (rc) goto out;
    for (size_t i = 0; i < nq; i++) {
        size_t o = 0;
        for (size_t j = 0; j < kk && o < k; j++) {
            int64_t id = tl[i * kk + j];
            if (exclude && id == exclude[i] && id >= 0) continue;
            scores[i * k + o] = ts[i * kk + j];
            labels[i * k + o] = id;
            o++;
        }
        for (; o < k; o++) {
            scores[i * k + o] = 0;
            labels[i * k + o] = -1;
        }
    }
out:
    free(ts);
    free(tl);
    return rc;
}
