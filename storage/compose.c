/*
 * Fusion and selection over candidate lists (quiver/compose.h): no store, no
 * index; what they need of the items comes through qv_select_src.
 */
#include "quiver/compose.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quiver/error.h"

int qv_cand_cmp(const void *a, const void *b)
{
    const qv_cand *p = a, *q = b;
    if (p->sim != q->sim) return p->sim > q->sim ? -1 : 1;
    return (p->id > q->id) - (p->id < q->id);
}

/* ----------------------------------------------------------------- groups */
/* Groups seen so far: value bytes -> hits taken (a small linear table: k is
 * at most a few thousand). */
typedef struct groups {
    uint8_t (*val)[QV_GROUP_VALUE_MAX];
    size_t *len;
    uint32_t *cnt;
    size_t n, cap;
} groups;

/* May id join (its group is not full)? Counts it when take. -1: no value. */
static int group_take(const qv_select_opts *o, const qv_select_src *src, groups *g, int64_t id, int take)
{
    uint8_t buf[QV_GROUP_VALUE_MAX];
    size_t len = src->group_value(src->ctx, id, buf, sizeof buf);
    if (!len) return -1;
    uint32_t gsize = o->group_size ? o->group_size : 1;
    for (size_t i = 0; i < g->n; i++)
        if (g->len[i] == len && memcmp(g->val[i], buf, len) == 0) {
            if (g->cnt[i] >= gsize) return 0;
            if (take) g->cnt[i]++;
            return 1;
        }
    if (!take) return 1;
    if (g->n == g->cap) {
        size_t nc = g->cap ? 2 * g->cap : 16;
        void *v = realloc(g->val, nc * sizeof *g->val);
        if (v) g->val = v;
        size_t *l = realloc(g->len, nc * sizeof *l);
        if (l) g->len = l;
        uint32_t *c = realloc(g->cnt, nc * sizeof *c);
        if (c) g->cnt = c;
        if (!v || !l || !c) return 0;
        g->cap = nc;
    }
    memcpy(g->val[g->n], buf, len);
    g->len[g->n] = len;
    g->cnt[g->n++] = 1;
    return 1;
}

static void groups_free(groups *g)
{
    free(g->val);
    free(g->len);
    free(g->cnt);
}

/* -------------------------------------------------------------- selection */
long qv_select(const qv_select_opts *o, const qv_select_src *src, const qv_cand *cs, size_t n,
               qv_cand *out)
{
    size_t k = o->k;
    int grouping = o->grouping;
    groups g = {0};
    size_t got = 0;
    if (!o->has_mmr) {
        for (size_t i = 0; i < n && got < k; i++) {
            if (grouping && group_take(o, src, &g, cs[i].id, 1) != 1) continue;
            out[got++] = cs[i];
        }
        groups_free(&g);
        return (long)got;
    }
    size_t m = o->mmr_candidates ? o->mmr_candidates : 10 * k;
    if (m < k) m = k;
    if (m > n) m = n;
    float lambda = 1 - o->mmr_diversity;
    size_t dim = src->dim;
    float *vec = malloc((m ? m : 1) * dim * sizeof *vec);
    int64_t *ids = malloc((m ? m : 1) * sizeof *ids);
    uint8_t *found = malloc(m ? m : 1), *used = calloc(m ? m : 1, 1);
    float *maxsim = malloc((m ? m : 1) * sizeof *maxsim);
    if (!vec || !ids || !found || !used || !maxsim) {
        free(vec), free(ids), free(found), free(used), free(maxsim);
        return -QV_NOMEM;
    }
    for (size_t i = 0; i < m; i++) {
        ids[i] = cs[i].id;
        maxsim[i] = -INFINITY;
    }
    src->vectors(src->ctx, ids, m, vec, found);
    while (got < k) {
        long best = -1;
        float bv = 0;
        for (size_t i = 0; i < m; i++) {
            if (used[i] || !found[i]) continue;
            float v = got == 0 ? cs[i].sim : lambda * cs[i].sim - (1 - lambda) * maxsim[i];
            if (best < 0 || v > bv) {
                if (grouping && group_take(o, src, &g, cs[i].id, 0) != 1) {
                    used[i] = 1; /* its group is full, or it has no value */
                    continue;
                }
                best = (long)i;
                bv = v;
            }
        }
        if (best < 0) break;
        used[best] = 1;
        if (grouping) group_take(o, src, &g, cs[best].id, 1);
        out[got++] = cs[best];
        for (size_t i = 0; i < m; i++) {
            if (used[i] || !found[i]) continue;
            float s = src->item_sim(src->ctx, vec + i * dim, vec + (size_t)best * dim);
            if (s > maxsim[i]) maxsim[i] = s;
        }
    }
    free(vec), free(ids), free(found), free(used), free(maxsim);
    groups_free(&g);
    return (long)got;
}

/* ------------------------------------------------------------------ fusion */
static int cmp_perm(const void *a, const void *b, void *ctx)
{
    const qv_cand *all = ctx;
    int64_t x = all[*(const size_t *)a].id, y = all[*(const size_t *)b].id;
    if (x != y) return (x > y) - (x < y);
    return (*(const size_t *)a > *(const size_t *)b) - (*(const size_t *)a < *(const size_t *)b);
}

int qv_fuse(qv_fusion fusion, uint32_t rrf_k, qv_cand *const *lists, const size_t *ns, size_t nq,
            qv_cand **out, size_t *nout)
{
    size_t total = 0;
    for (size_t i = 0; i < nq; i++) total += ns[i];
    qv_cand *all = malloc((total ? total : 1) * sizeof *all);
    float *rrf = malloc((total ? total : 1) * sizeof *rrf);
    if (!all || !rrf) {
        free(all), free(rrf);
        return QV_NOMEM;
    }
    size_t t = 0;
    for (size_t i = 0; i < nq; i++)
        for (size_t j = 0; j < ns[i]; j++) {
            all[t] = lists[i][j];
            rrf[t] = 1.0f / (float)((rrf_k ? rrf_k : 60) + j + 1);
            t++;
        }
    /* group by id: sort a permutation by id */
    size_t *perm = malloc((t ? t : 1) * sizeof *perm);
    if (!perm) {
        free(all), free(rrf);
        return QV_NOMEM;
    }
    for (size_t i = 0; i < t; i++) perm[i] = i;
    qsort_r(perm, t, sizeof *perm, cmp_perm, all);
    qv_cand *uniq = malloc((t ? t : 1) * sizeof *uniq);
    if (!uniq) {
        free(all), free(rrf), free(perm);
        return QV_NOMEM;
    }
    size_t o = 0;
    for (size_t i = 0; i < t;) {
        size_t j = i;
        qv_cand best = all[perm[i]];
        double sum = 0;
        while (j < t && all[perm[j]].id == best.id) {
            const qv_cand *cj = &all[perm[j]];
            sum += rrf[perm[j]];
            if (cj->sim > best.sim) best = *cj;
            j++;
        }
        if (fusion == QV_FUSION_RRF) {
            /* sim keeps the best raw similarity for the rescale below */
            best.score = (float)sum;
        }
        uniq[o++] = best;
        i = j;
    }
    free(perm);
    free(rrf);
    free(all);
    all = uniq;
    if (fusion == QV_FUSION_RRF && o) {
        /* order by RRF; MMR's relevance: RRF rescaled onto the similarities'
         * range (monotone, so diversity 0 keeps RRF's order) */
        float smin = INFINITY, smax = -INFINITY, rmin = INFINITY, rmax = -INFINITY;
        for (size_t i = 0; i < o; i++) {
            smin = fminf(smin, all[i].sim), smax = fmaxf(smax, all[i].sim);
            rmin = fminf(rmin, all[i].score), rmax = fmaxf(rmax, all[i].score);
        }
        for (size_t i = 0; i < o; i++)
            all[i].sim = rmax > rmin ? smin + (all[i].score - rmin) * (smax - smin) / (rmax - rmin)
                                     : all[i].score;
        /* ties of the rescaled value must keep RRF's order: sort on the score */
        for (size_t i = 0; i < o; i++) {
            float s = all[i].sim;
            all[i].sim = all[i].score;
            all[i].score = s;
        }
        qsort(all, o, sizeof *all, qv_cand_cmp);
        for (size_t i = 0; i < o; i++) {
            float s = all[i].sim;
            all[i].sim = all[i].score;
            all[i].score = s;
        }
    } else {
        qsort(all, o, sizeof *all, qv_cand_cmp);
    }
    *out = all;
    *nout = o;
    return 0;
}
