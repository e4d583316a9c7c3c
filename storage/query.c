/*
 * The engine's reads (include/quiver/query.h): qv_query_run resolves a
 * request's ids and vectors in one snapshot, sends plain searches to FAISS
 * as one batch, and composes the others: the filter as an id set (cached per
 * collection), the planner (exact over the set's vectors, or the index with
 * the set as IDSelector, probing further until k hits), then fusion,
 * threshold, MMR and groups; recommendation strategies on top; last, each
 * hit's attributes and vector from the same snapshot. Not here: item reads
 * by id and scans (db_read.c).
 */
#include <omp.h>

#include <faiss/c_api/utils/distances_c.h>

#include "db_int.h"
#include "postings.h"
#include "quiver/compose.h"
#include "quiver/query.h"

#define DEEPEN 4              /* a search that needs more candidates asks this many times more */
#define MAX_INDEX_DEPTH 16384 /* deeper than this, score every allowed item instead */
#define EXACT_MAX_SLOW 2000   /* the exact cut when vectors come from LMDB */
#define DENSE_MAX ((uint64_t)16 << 20) /* largest dense bitmap of a cached filter, bytes */
/* nprobe under a filter keeping fraction f: f^-0.33 times the calibrated one
 * (f^-0.25 held recall@10 >= 0.95 from 10% to 90% on glove-100's ivf_pq_fs
 * but gave 0.949 at 20% on the MNIST-shaped 60k set's ivf_flat, under its
 * unfiltered 0.959; f^-0.33: 0.958 there, 0.967 on glove at 20%, QPS within
 * the noise; 1/sqrt(f) overshot to 0.98 at 10%, at 0.66x the QPS;
 * bench/results/2026-12-07-filters-batch-keys) */
#define NPROBE_WIDEN 0.33
/* A query whose own lists hold none of what the filter allows lies far from
 * it, where IVF needs more lists for the same recall than calibration (on
 * the collection's own items) shows: the walk looks for FAR_FACTOR times the
 * allowed vectors then (glove-100, 10 k-means clusters, a filter keeping 3 of
 * them, ivf_pq_fs: recall@10 0.976 at 2, 0.985 at 4, 0.988 at 8; 4 keeps a
 * margin for data unlike it; bench/results/2026-12-07-deep-walks) */
#define FAR_FACTOR 4.0
/* lists ranked at first, per list the independent rule would probe: ranking
 * (a heap over nlist) is all the walk costs besides FAISS's own coarse scan,
 * and most walks end within the first lists (in one profile of deep walks,
 * ranking every one of 4,096 lists per query took 17%; a same-run comparison
 * of the two ways was too noisy here to give a figure) */
#define RANK_FIRST 4
#define BATCH_KEYS_MAX ((size_t)4 << 20) /* a batch's coarse keys: at most 16 MiB */
#define PAR_MIN_QUERIES 32 /* batches this large may use the cores that concurrent
                            * reads leave idle (more threads than cores would only
                            * preempt each other) */

static atomic_int g_active_reads;

/* ------------------------------------------------------------ filter cache */
typedef struct qv_filt {
    atomic_int refs;
    qv_idset *set;
    uint64_t count;
    uint8_t *bits; /* dense bitmap of the ids below nbits, or NULL */
    uint64_t nbits;
    /* what the filter leaves of each inverted list of one index (lc_ix as
     * of lc_seq), made at its first IVF search: the planner's evidence */
    pthread_mutex_t mu;
    const qv_index *lc_ix;
    uint64_t lc_seq;
    uint32_t *lcounts;
} filt;

static void filt_release(filt *f)
{
    if (!f || atomic_fetch_sub(&f->refs, 1) != 1) return;
    qv_idset_free(f->set);
    free(f->bits);
    free(f->lcounts);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

/* The collection's cached filters go with it (db_registry.c calls this
 * through c->cache_free, set at the first cached filter). */
static void fcache_clear(qv_coll *c)
{
    for (int i = 0; i < FCACHE_SLOTS; i++) {
        free(c->fcache[i].key);
        filt_release(c->fcache[i].f);
        memset(&c->fcache[i], 0, sizeof c->fcache[i]);
    }
}

/* The filter's id set for c as of now: from the cache when no write was
 * published since it was evaluated, else evaluated in a new snapshot. */
static int filter_get(qv_coll *c, MDB_txn *txn, const qv_query_opts *o, filt **out, char *err,
                      size_t errlen)
{
    *out = NULL;
    uint64_t seq = atomic_load(&c->last_seq);
    int cacheable = o->filter_key && o->filter_key_len;
    if (cacheable) {
        pthread_mutex_lock(&c->fmu);
        for (int i = 0; i < FCACHE_SLOTS; i++) {
            struct fslot *s = &c->fcache[i];
            if (s->f && s->seq == seq && s->klen == o->filter_key_len &&
                memcmp(s->key, o->filter_key, s->klen) == 0) {
                s->used = ++c->fclock;
                atomic_fetch_add(&s->f->refs, 1);
                *out = s->f;
                break;
            }
        }
        pthread_mutex_unlock(&c->fmu);
        if (*out) return 0;
    }
    qv_store *st = qv_db_store(c->db);
    int rc = 0;
    filt *f = calloc(1, sizeof *f);
    if (!f) rc = QV_NOMEM;
    if (!rc) rc = qv_filter_eval(st, txn, c->cfg.id, o->filter, "filter", &f->set, err, errlen);
    if (rc) {
        if (f) free(f);
        return rc;
    }
    atomic_init(&f->refs, 1);
    pthread_mutex_init(&f->mu, NULL);
    f->count = qv_idset_count(f->set);
    uint64_t max = qv_idset_max(f->set);
    if (f->count && max / 8 + 1 <= DENSE_MAX) {
        f->nbits = max + 1;
        if ((f->bits = calloc(max / 8 + 1, 1))) qv_idset_to_bitmap(f->set, f->bits, f->nbits);
    }
    if (cacheable) {
        void *key = malloc(o->filter_key_len);
        if (key) {
            memcpy(key, o->filter_key, o->filter_key_len);
            pthread_mutex_lock(&c->fmu);
            c->cache_free = fcache_clear;
            int v = 0;
            for (int i = 1; i < FCACHE_SLOTS; i++)
                if (c->fcache[i].used < c->fcache[v].used) v = i;
            struct fslot *s = &c->fcache[v];
            free(s->key);
            filt_release(s->f);
            s->key = key;
            s->klen = o->filter_key_len;
            s->seq = seq;
            s->used = ++c->fclock;
            s->f = f;
            atomic_fetch_add(&f->refs, 1);
            pthread_mutex_unlock(&c->fmu);
        }
    }
    *out = f;
    return 0;
}

/* ------------------------------------------------------------- the context */
/* a candidate: its score as reported, and sim (higher is better: the
 * order, threshold and MMR relevance); quiver/compose.h */
typedef qv_cand cand;

typedef struct qctx {
    qv_coll *c;
    const qv_query_opts *o;
    uint32_t dim;
    int l2;
    filt *f;
    int64_t *deny; /* sorted, unique */
    size_t ndeny;
    int64_t *allowed;  /* exact path: filter minus deny, ascending */
    size_t nallowed;
    int have_allowed;
    uint64_t allowed_est; /* items that can be returned (estimate without a filter) */
    int exact;
    qv_idsel *sel;
    int sel_built;
    /* a batch's coarse keys (nq rows of keys_nlist) for its filtered
     * walks, made for index generation keys_gen (query_keys) */
    const float *keys;
    uint64_t keys_gen;
    uint32_t keys_nlist;
    MDB_txn *txn; /* the call's read snapshot (not owned) */
    char *err;
    size_t errlen;
} qctx;

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int denied(const qctx *x, int64_t id)
{
    return x->ndeny && bsearch(&id, x->deny, x->ndeny, sizeof *x->deny, cmp_i64) != NULL;
}

static int fail(qctx *x, int rc, const char *what)
{
    snprintf(x->err, x->errlen, "%s: %s", what, qv_strerror(rc));
    return rc;
}

/* Vectors of n ids into out (n*dim), found[j] 0 for ids that do not exist. */
static int get_vectors(qctx *x, size_t n, const int64_t *ids, float *out, uint8_t *found)
{
    qv_store *st = qv_db_store(x->c->db);
    pthread_rwlock_rdlock(&x->c->ilock);
    for (size_t j = 0; j < n; j++) {
        int rc = x->c->index ? qv_index_get_vector(x->c->index, ids[j], out + j * x->dim) : QV_INVALID;
        found[j] = rc == 0;
    }
    pthread_rwlock_unlock(&x->c->ilock);
    for (size_t j = 0; j < n; j++) {
        if (found[j]) continue;
        qv_item_view v;
        if (ids[j] >= 0 && qv_store_item_get(st, x->txn, x->c->cfg.id, (uint64_t)ids[j], &v) == 0 &&
            v.dim == x->dim) {
            qv_item_vector(&v, out + j * x->dim);
            found[j] = 1;
        }
    }
    return 0;
}

/* metric score of a against b: squared distance (L2) or inner product */
static float raw_score(const qctx *x, const float *a, const float *b)
{
    float s;
    if (x->l2) faiss_fvec_L2sqr_ny(&s, a, b, x->dim, 1);
    else faiss_fvec_inner_products_ny(&s, a, b, x->dim, 1);
    return s;
}

static float sim_of(const qctx *x, float raw) { return x->l2 ? -raw : raw; }

#define cmp_cand qv_cand_cmp

/* the ids the exact path scores: the filter's minus the denied */
static int build_allowed(qctx *x)
{
    if (x->have_allowed) return 0;
    qv_idset *s = NULL;
    int rc = 0;
    if (x->f) {
        s = x->f->set;
    } else {
        /* every item: the postings of the collection */
        qv_idset *all = qv_idset_new();
        if (!all) return QV_NOMEM;
        if ((rc = qv_postings_all(x->txn, qv_store_postings_dbi(qv_db_store(x->c->db)),
                                  x->c->cfg.id, all))) {
            qv_idset_free(all);
            return fail(x, rc, "cannot read the collection's ids");
        }
        s = all;
    }
    uint64_t n = qv_idset_count(s);
    uint64_t *ids = malloc((n ? n : 1) * sizeof *ids);
    if (!ids) rc = QV_NOMEM;
    else {
        qv_idset_to_array(s, ids);
        size_t o = 0;
        for (uint64_t i = 0; i < n; i++)
            if (ids[i] <= (uint64_t)INT64_MAX && !denied(x, (int64_t)ids[i])) ids[o++] = ids[i];
        x->allowed = (int64_t *)ids;
        x->nallowed = o;
        x->have_allowed = 1;
    }
    if (!x->f) qv_idset_free(s);
    return rc;
}

/* is a worse than b (lower sim, or equal and a larger id)? */
static inline int cand_worse(const cand *a, const cand *b)
{
    return a->sim < b->sim || (a->sim == b->sim && a->id > b->id);
}

static void sift_down(cand *h, size_t n, size_t i)
{
    for (;;) {
        size_t w = i, l = 2 * i + 1, r = l + 1;
        if (l < n && cand_worse(&h[l], &h[w])) w = l;
        if (r < n && cand_worse(&h[r], &h[w])) w = r;
        if (w == i) return;
        cand t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

/* The best D of n scored candidates, in order, at the front of cs. A few of
 * many (the exact path keeps k of thousands) through a heap of D, worst on
 * top; else one sort. */
static size_t top(cand *cs, size_t n, size_t D)
{
    if (D >= n / 4) {
        qsort(cs, n, sizeof *cs, cmp_cand);
        return n < D ? n : D;
    }
    for (size_t i = D / 2; i-- > 0;) sift_down(cs, D, i);
    for (size_t i = D; i < n; i++)
        if (cand_worse(&cs[0], &cs[i])) {
            cs[0] = cs[i];
            sift_down(cs, D, 0);
        }
    /* pop worst-first to the back */
    for (size_t m = D; m > 1; m--) {
        cand t = cs[0];
        cs[0] = cs[m - 1];
        cs[m - 1] = t;
        sift_down(cs, m - 1, 0);
    }
    return D;
}

/* Exact: every allowed item scored against q. [out] *out (malloc), *n. */
static int stopped(const qctx *x) { return x->o->stop && x->o->stop(x->o->stop_ctx); }

static int knn_exact(qctx *x, const float *q, size_t D, cand **out, size_t *n)
{
    if (stopped(x)) return QV_CANCELLED;
    int rc = build_allowed(x);
    if (rc) return rc;
    size_t m = x->nallowed;
    cand *cs = malloc((m ? m : 1) * sizeof *cs);
    float *sc = malloc((m ? m : 1) * sizeof *sc);
    uint8_t *found = malloc(m ? m : 1);
    if (!cs || !sc || !found) {
        free(cs), free(sc), free(found);
        return QV_NOMEM;
    }
    pthread_rwlock_rdlock(&x->c->ilock);
    rc = x->c->index ? qv_index_score_ids(x->c->index, q, m, x->allowed, sc, found) : QV_INVALID;
    pthread_rwlock_unlock(&x->c->ilock);
    if (rc == QV_INVALID) {
        memset(found, 0, m);
        rc = 0;
    }
    qv_store *st = qv_db_store(x->c->db);
    float *v = malloc(x->dim * sizeof *v);
    if (!v) rc = QV_NOMEM;
    size_t o = 0;
    for (size_t j = 0; j < m && !rc; j++) {
        if ((j & 65535) == 65535 && stopped(x)) rc = QV_CANCELLED;
        if (!found[j]) {
            qv_item_view iv;
            if (qv_store_item_get(st, x->txn, x->c->cfg.id, (uint64_t)x->allowed[j], &iv) ||
                iv.dim != x->dim)
                continue; /* not an item (a has_id of nothing, or deleted) */
            qv_item_vector(&iv, v);
            sc[j] = raw_score(x, q, v);
        }
        cs[o].id = x->allowed[j];
        cs[o].score = sc[j];
        cs[o].sim = sim_of(x, sc[j]);
        o++;
    }
    free(v);
    free(sc);
    free(found);
    if (rc) {
        free(cs);
        return rc;
    }
    *n = top(cs, o, D);
    *out = cs;
    return 0;
}

/* Is id in the filter (ctx: a filt)? The selector's and the list counts'
 * test when the filter's ids are too sparse for a bitmap. */
static int filt_member(void *ctx, int64_t id)
{
    const filt *f = ctx;
    return qv_idset_contains(f->set, (uint64_t)id);
}

/* The filter rule for a fraction f allowed when the filter is spread evenly:
 * f^-NPROBE_WIDEN times np lists (at most nlist). */
static uint32_t widen(uint32_t np, double frac, uint32_t nlist)
{
    uint32_t w = (uint32_t)ceil(np / pow(frac, NPROBE_WIDEN));
    return w > nlist ? nlist : w;
}

static int build_sel(qctx *x)
{
    if (x->sel_built) return 0;
    x->sel_built = 1;
    if (!x->f && !x->ndeny) return 0;
    int rc;
    if (x->f && x->f->bits)
        rc = qv_idsel_new(x->f->bits, x->f->nbits, NULL, NULL, x->deny, x->ndeny, &x->sel);
    else if (x->f)
        rc = qv_idsel_new(NULL, 0, filt_member, x->f, x->deny, x->ndeny, &x->sel);
    else
        rc = qv_idsel_new(NULL, 0, NULL, NULL, x->deny, x->ndeny, &x->sel);
    return rc ? fail(x, rc, "cannot build the id selector") : 0;
}

static int knn_all(qctx *x, const float *q, const float *qkeys, size_t D, cand **out, size_t *n);

/* The filter's count per inverted list of c's live index (caller holds
 * c->ilock), made once per index state; NULL when it cannot be made. */
static const uint32_t *list_counts(filt *f, qv_coll *c, uint32_t nlist)
{
    pthread_mutex_lock(&f->mu);
    if (!f->lcounts || f->lc_ix != c->index || f->lc_seq != c->index_seq) {
        uint32_t *n = malloc((nlist ? nlist : 1) * sizeof *n);
        free(f->lcounts);
        f->lcounts = NULL;
        if (n && qv_index_list_members(c->index, f->bits, f->nbits, f->bits ? NULL : filt_member, f,
                                       n) == 0) {
            f->lcounts = n;
            f->lc_ix = c->index;
            f->lc_seq = c->index_seq;
        } else {
            free(n);
        }
    }
    const uint32_t *r = f->lcounts;
    pthread_mutex_unlock(&f->mu);
    return r;
}

/* A filtered walk's ranking of lists, kept for the search that follows:
 * it probes the same lists without ranking them again. */
typedef struct ranking {
    int64_t *lists; /* n lists nearest the query, nearest first */
    float *dis;     /* their coarse distances */
    uint32_t n;
} ranking;

static void ranking_free(ranking *rk)
{
    free(rk->lists);
    free(rk->dis);
    memset(rk, 0, sizeof *rk);
}

/* How many lists a filtered IVF search of q probes, on evidence rather than
 * on "k hits found": lists in the order the coarse quantizer ranks them for
 * q, until the allowed vectors in them reach a target. An unfiltered search
 * of the calibrated np0 lists scans T vectors. A filter keeping a fraction f
 * of the items spread evenly over them is searched well over np0
 * f^-NPROBE_WIDEN lists, which hold about T f^(1-NPROBE_WIDEN) allowed
 * vectors: the target then. A filter correlated with the query leaves
 * fewer allowed vectors in the query's own np0 lists than f of them: with r
 * their share of allowed vectors over f (capped at 1), the target moves
 * from T f^(1-NPROBE_WIDEN) (r = 1) to FAR_FACTOR T (r = 0, the query's
 * neighbourhood wholly filtered out), so the walk goes on to where the
 * allowed items are and searches them as deep as a query among them would
 * need. Never fewer lists than the independent rule's. qkeys: q's coarse
 * keys when its batch made them (query_keys), else NULL. [out] rk: the
 * lists ranked on the way (left empty when ranking failed). Under c->ilock. */
static uint32_t probe_depth(qctx *x, const float *q, const float *qkeys, uint32_t np0,
                            double frac, uint32_t nlist, ranking *rk)
{
    qv_coll *c = x->c;
    if (x->keys_gen != c->index_gen) qkeys = NULL; /* made for an index since replaced */
    uint32_t np = widen(np0, frac, nlist);
    if (np0 > nlist) np0 = nlist;
    const uint32_t *counts = list_counts(x->f, c, nlist);
    int64_t *lists = malloc(nlist * sizeof *lists);
    float *dis = malloc(nlist * sizeof *dis);
    uint32_t *sizes = malloc(nlist * sizeof *sizes);
    /* rank a few times the lists the independent rule probes first (a
     * partial ranking is cheaper), all of them when the walk needs more */
    size_t k = (size_t)np * RANK_FIRST;
    if (k < np0) k = np0;
    if (k > nlist) k = nlist;
    double want = -1, seen = 0;
    uint32_t j = 0;
    size_t ranked = 0; /* lists the last ranking holds (0: none, or it failed) */
    while (counts && lists && dis && sizes) {
        if (qv_index_rank_lists(c->index, q, qkeys, k, lists, dis, sizes)) {
            ranked = 0;
            break;
        }
        ranked = k;
        if (want < 0) {
            double scanned = 0, near = 0;
            for (uint32_t i = 0; i < np0 && lists[i] >= 0; i++) {
                scanned += sizes[i];
                near += counts[lists[i]];
            }
            /* r: the allowed share of the query's own lists against the
             * filter's overall share (1: spread evenly, 0: none) */
            double r = scanned > 0 ? near / scanned / frac : 1;
            if (r > 1) r = 1;
            want = scanned * pow(frac, (1 - NPROBE_WIDEN) * r) * pow(FAR_FACTOR, 1 - r);
        }
        /* the ranking of k lists starts as the shorter one did: go on */
        while (j < k && lists[j] >= 0 && seen < want) seen += counts[lists[j++]];
        if (seen >= want || k == nlist || (j < k && lists[j] < 0)) {
            if (j > np) np = j;
            break;
        }
        k = k * 4 > nlist ? nlist : k * 4;
    }
    free(sizes);
    if (ranked) { /* the search probes these lists: it need not rank them again */
        rk->lists = lists;
        rk->dis = dis;
        rk->n = (uint32_t)ranked;
    } else {
        free(lists);
        free(dis);
    }
    return np;
}

/* The one rule for a query's own item (self >= 0): the search goes one
 * deeper (depth_with), the item is left out of its ranked candidates and the
 * rest cut to D (keep_others). Plain and composed searches both use it. */
static size_t depth_with(size_t D, int64_t self) { return self >= 0 ? D + 1 : D; }

static size_t keep_others(cand *cs, size_t n, int64_t self, size_t D)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o < D; i++)
        if (self < 0 || cs[i].id != self) cs[o++] = cs[i];
    return o;
}

/* The D nearest allowed items of q (fewer only when fewer are allowed),
 * leaving out self (>= 0: the query's own item); qkeys: q's coarse keys
 * (query_keys) or NULL. */
static int knn(qctx *x, const float *q, const float *qkeys, size_t D, int64_t self, cand **out,
               size_t *n)
{
    int rc = knn_all(x, q, qkeys, depth_with(D, self), out, n);
    if (!rc) *n = keep_others(*out, *n, self, D);
    return rc;
}

static int knn_all(qctx *x, const float *q, const float *qkeys, size_t D, cand **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (x->exact || D > MAX_INDEX_DEPTH) return knn_exact(x, q, D, out, n);
    int rc = build_sel(x);
    if (rc) return rc;
    float *sc = malloc(D * sizeof *sc);
    int64_t *lb = malloc(D * sizeof *lb);
    cand *cs = malloc(D * sizeof *cs);
    if (!sc || !lb || !cs) {
        free(sc), free(lb), free(cs);
        return QV_NOMEM;
    }
    qv_coll *c = x->c;
    size_t m = 0;
    ranking rk = {0};
    pthread_rwlock_rdlock(&c->ilock);
    const qv_index_params *p = qv_index_get_params(c->index);
    int ivf = p->kind != QV_KIND_FLAT;
    uint32_t np = 0;
    if (ivf) {
        /* exclusions take the nearest items away: the answer lies further
         * out, where a calibrated nprobe finds less of it; aim halfway
         * between the recall asked for and 1 */
        float want = x->o->min_recall > 0 ? x->o->min_recall : DEFAULT_MIN_RECALL;
        if (x->ndeny) want = (1 + want) / 2;
        np = x->o->nprobe ? x->o->nprobe : qv_calib_nprobe(c, want);
        /* a filter keeping a fraction f of the items: its k nearest lie
         * further out. An nprobe given by the caller is widened by
         * f^-NPROBE_WIDEN; the calibrated one goes as deep as the evidence
         * of the query's own lists says (probe_depth) */
        if (x->f && c->count) {
            double frac = (double)x->allowed_est / (double)atomic_load(&c->count);
            if (frac > 0 && frac < 1) {
                if (x->o->nprobe) np = widen(np, frac, p->nlist);
                else np = probe_depth(x, q, qkeys, np, frac, p->nlist, &rk);
                /* a walk so deep that scoring the allowed ones exactly
                 * costs less (index.h, qv_index_walk_exact_ratio): exact */
                double scan = (double)np * (double)atomic_load(&c->count) / p->nlist;
                if (!x->o->nprobe && scan > qv_index_walk_exact_ratio(c->index) * (double)x->allowed_est &&
                    (qv_index_has_refine(c->index) || p->kind == QV_KIND_IVF_FLAT)) {
                    pthread_rwlock_unlock(&c->ilock);
                    free(sc), free(lb), free(cs);
                    ranking_free(&rk);
                    return knn_exact(x, q, D, out, n);
                }
            }
        }
        if (np > p->nlist) np = p->nlist;
        if (np < 1) np = 1;
    }
    for (;;) {
        if (rk.lists && np <= rk.n) rc = qv_index_search_lists(c->index, q, D, np, rk.lists, rk.dis, x->sel, sc, lb);
        else rc = qv_index_search_sel(c->index, 1, q, D, np, x->sel, sc, lb);
        if (rc) break;
        m = 0;
        while (m < D && lb[m] >= 0) m++;
        /* k hits whenever k items match: probe further while short */
        if (m >= D || !ivf || np >= p->nlist || m >= x->allowed_est) break;
        np = np * 2 > p->nlist ? p->nlist : np * 2;
    }
    pthread_rwlock_unlock(&c->ilock);
    ranking_free(&rk);
    if (rc) {
        free(sc), free(lb), free(cs);
        return fail(x, rc, "search failed");
    }
    size_t o = 0;
    for (size_t j = 0; j < m; j++) {
        cs[o].id = lb[j];
        cs[o].score = sc[j];
        cs[o].sim = sim_of(x, sc[j]);
        o++;
    }
    free(sc);
    free(lb);
    /* still short of what the filter holds (items not yet in the index):
     * exact over the filter's ids */
    if (o < D && x->f && o < x->allowed_est) {
        free(cs);
        return knn_exact(x, q, D, out, n);
    }
    *out = cs;
    *n = o;
    return 0;
}

static void ctx_free(qctx *x)
{
    filt_release(x->f);
    free(x->deny);
    free(x->allowed);
    qv_idsel_free(x->sel);
}

/* Filter, exclusions (plus extra ids: queries', examples'), plan. */
static int ctx_init(qctx *x, qv_coll *c, MDB_txn *txn, const qv_query_opts *o,
                    const int64_t *extra, size_t nextra, char *err, size_t errlen)
{
    memset(x, 0, sizeof *x);
    x->c = c;
    x->o = o;
    x->dim = c->cfg.dim;
    x->l2 = c->cfg.metric == QV_METRIC_L2;
    x->err = err;
    x->errlen = errlen;
    x->txn = txn;
    if (o->n_exclude > QV_MAX_EXCLUDE) {
        snprintf(err, errlen, "exclude_ids has %zu ids, over the limit of %d", o->n_exclude,
                 QV_MAX_EXCLUDE);
        return QV_INVALID;
    }
    if (o->has_mmr && !(o->mmr_diversity >= 0 && o->mmr_diversity <= 1)) {
        snprintf(err, errlen, "mmr.diversity %g is out of range 0..1", (double)o->mmr_diversity);
        return QV_INVALID;
    }
    if (o->has_threshold && isnan(o->threshold)) {
        snprintf(err, errlen, "score_threshold.value is NaN");
        return QV_INVALID;
    }
    int rc;
    if (o->group_by && o->group_by_len) {
        unsigned mask;
        rc = qv_postings_types(x->txn, qv_store_postings_dbi(qv_db_store(c->db)), c->cfg.id,
                               o->group_by, o->group_by_len, &mask);
        if (rc) return fail(x, rc, "cannot read attribute types");
        if (mask & (1u << QV_ATTR_STRING_LIST)) {
            snprintf(err, errlen,
                     "group_by: attribute \"%.*s\" holds string lists; group by a string, int or "
                     "bool attribute", (int)(o->group_by_len < 64 ? o->group_by_len : 64),
                     o->group_by);
            return QV_INVALID;
        }
    }
    size_t nd = o->n_exclude + nextra;
    x->deny = malloc((nd ? nd : 1) * sizeof *x->deny);
    if (!x->deny) return QV_NOMEM;
    for (size_t i = 0; i < o->n_exclude; i++)
        if (o->exclude[i] <= (uint64_t)INT64_MAX) x->deny[x->ndeny++] = (int64_t)o->exclude[i];
    for (size_t i = 0; i < nextra; i++)
        if (extra[i] >= 0) x->deny[x->ndeny++] = extra[i];
    qsort(x->deny, x->ndeny, sizeof *x->deny, cmp_i64);
    size_t u = 0;
    for (size_t i = 0; i < x->ndeny; i++)
        if (u == 0 || x->deny[u - 1] != x->deny[i]) x->deny[u++] = x->deny[i];
    x->ndeny = u;
    if (o->filter && (rc = filter_get(c, txn, o, &x->f, err, errlen))) return rc;
    uint64_t count = atomic_load(&c->count);
    if (x->f) {
        uint64_t gone = 0;
        for (size_t i = 0; i < x->ndeny; i++) gone += qv_idset_contains(x->f->set, (uint64_t)x->deny[i]);
        x->allowed_est = x->f->count - gone;
        pthread_rwlock_rdlock(&c->ilock);
        int fast = c->index && (qv_index_has_refine(c->index) ||
                                qv_index_get_params(c->index)->kind == QV_KIND_IVF_FLAT);
        pthread_rwlock_unlock(&c->ilock);
        uint64_t cut = c->db->opts.exact_max;
        x->exact = x->allowed_est <= (fast || cut < EXACT_MAX_SLOW ? cut : EXACT_MAX_SLOW);
    } else {
        x->allowed_est = count > x->ndeny ? count - x->ndeny : 0;
    }
    return 0;
}

/* --------------------------------------------------------------- finishing */
/* The group value of id as bytes (type + payload) into buf; 0 = no value. */
static size_t group_value(qctx *x, int64_t id, uint8_t *buf, size_t cap)
{
    const uint8_t *blob;
    size_t len;
    if (qv_store_attrs_get(qv_db_store(x->c->db), x->txn, x->c->cfg.id, (uint64_t)id, &blob, &len))
        return 0;
    qv_attr_iter it;
    qv_attr a;
    if (qv_attr_iter_init(&it, blob, len)) return 0;
    while (qv_attr_next(&it, &a) == 1) {
        if (a.key_len != x->o->group_by_len || memcmp(a.key, x->o->group_by, a.key_len) != 0) continue;
        buf[0] = (uint8_t)a.type;
        switch (a.type) {
        case QV_ATTR_STRING: {
            size_t n = a.str_len < cap - 1 ? a.str_len : cap - 1;
            memcpy(buf + 1, a.str, n);
            return n + 1;
        }
        case QV_ATTR_INT: memcpy(buf + 1, &a.i, 8); return 9;
        case QV_ATTR_DOUBLE: {
            double d = a.d == 0 ? 0 : a.d;
            memcpy(buf + 1, &d, 8);
            return 9;
        }
        case QV_ATTR_BOOL: buf[1] = (uint8_t)(a.b != 0); return 2;
        default: return 0;
        }
    }
    return 0;
}

/* similarity between two items in the collection's terms */
static float item_sim(const qctx *x, const float *a, const float *b)
{
    return sim_of(x, raw_score(x, a, b));
}

/* qv_select's view of the items, through the read's snapshot */
static void src_vectors(void *ctx, const int64_t *ids, size_t n, float *vec, uint8_t *found)
{
    get_vectors(ctx, n, ids, vec, found);
}

static float src_item_sim(void *ctx, const float *a, const float *b) { return item_sim(ctx, a, b); }

static size_t src_group_value(void *ctx, int64_t id, uint8_t *buf, size_t cap)
{
    return group_value(ctx, id, buf, cap);
}

/* Groups and MMR over the ranked candidates (quiver/compose.h). */
static long select_cands(qctx *x, const cand *cs, size_t n, size_t k, cand *out)
{
    const qv_query_opts *o = x->o;
    qv_select_opts so = {k, o->group_by && o->group_by_len, o->group_size, o->has_mmr,
                         o->mmr_diversity, o->mmr_candidates};
    qv_select_src src = {src_vectors, src_item_sim, x->dim, src_group_value, x};
    return qv_select(&so, &src, cs, n, out);
}

/* Pick up to k of the n ranked candidates into out: MMR and/or groups.
 * Returns how many, or a negative code. */
static long select_hits(qctx *x, const cand *cs, size_t n, size_t k, qv_hit *out)
{
    cand *tmp = malloc((k ? k : 1) * sizeof *tmp);
    if (!tmp) return -QV_NOMEM;
    long got = select_cands(x, cs, n, k, tmp);
    for (long i = 0; i < got; i++) {
        out[i].id = (uint64_t)tmp[i].id;
        out[i].score = tmp[i].score;
    }
    free(tmp);
    return got;
}

static size_t cut_threshold(const qctx *x, cand *cs, size_t n, int dist_units)
{
    if (!x->o->has_threshold) return n;
    float t = dist_units ? -x->o->threshold : x->o->threshold;
    size_t o = 0;
    for (size_t i = 0; i < n; i++)
        if (cs[i].sim >= t) cs[o++] = cs[i];
    return o;
}

/* ---------------------------------------------------------------- results */
static int result_init(qv_query_result *r, size_t nlists, size_t k)
{
    memset(r, 0, sizeof *r);
    r->nlists = nlists;
    r->off = calloc(nlists + 1, sizeof *r->off);
    r->hits = malloc((nlists * k > 0 ? nlists * k : 1) * sizeof *r->hits);
    if (!r->off || !r->hits) {
        qv_query_result_free(r);
        return QV_NOMEM;
    }
    return 0;
}

void qv_query_result_free(qv_query_result *r)
{
    if (!r) return;
    free(r->off);
    free(r->hits);
    free(r->vecs_);
    for (size_t i = 0; i < r->narefs_; i++) qv_acache_unref(r->arefs_[i]);
    free(r->arefs_);
    qv_store_abort(r->snap_);
    memset(r, 0, sizeof *r);
}

/* ----------------------------------------------------------------- search */
/* Query i's row of its batch's coarse keys (batch_keys), NULL without. */
static const float *query_keys(const qctx *x, size_t i)
{
    return x->keys ? x->keys + i * x->keys_nlist : NULL;
}

/* The hits of list li (query li's, or with fusion every query's fused) into
 * out (k), their number in *got. */
static int one_list(qctx *x, size_t li, size_t nq, const float *q, const int64_t *qids,
                    qv_fusion fusion, uint32_t rrf_k, size_t D, cand **lists, size_t *ns,
                    qv_hit *out, size_t *got)
{
    size_t k = x->o->k, depth = D;
    int grouping = x->o->group_by && x->o->group_by_len, rc = 0;
    for (;;) {
        if (stopped(x)) return QV_CANCELLED;
        size_t from = fusion ? 0 : li, to = fusion ? nq : li + 1;
        int exhausted = 1;
        for (size_t i = from; i < to && !rc; i++) {
            free(lists[i]);
            lists[i] = NULL;
            rc = knn(x, q + i * x->dim, query_keys(x, i), depth, qids && !fusion ? qids[i] : -1,
                     &lists[i], &ns[i]);
            if (!rc && ns[i] >= depth && depth < x->allowed_est) exhausted = 0;
            if (!rc) ns[i] = cut_threshold(x, lists[i], ns[i], x->l2);
        }
        if (rc) return rc;
        cand *cs = lists[li];
        size_t n = ns[li];
        cand *fused = NULL;
        if (fusion) {
            if ((rc = qv_fuse(fusion, rrf_k, lists, ns, nq, &fused, &n))) return rc;
            cs = fused;
        }
        long g = select_hits(x, cs, n, k, out);
        free(fused);
        if (g < 0) return (int)-g;
        if ((size_t)g < k && grouping && !exhausted) {
            depth *= DEEPEN;
            continue;
        }
        *got = (size_t)g;
        return 0;
    }
}

/* The coarse keys of a batch whose queries each walk the lists under a
 * filter (probe_depth), made in one BLAS product rather than one
 * matrix-vector product per query, into x->keys (returned, to free). NULL
 * when the walks will not run, or on any failure (each walk then ranks its
 * own lists). */
static float *batch_keys(qctx *x, size_t nq, const float *q)
{
    qv_coll *c = x->c;
    if (nq < 2 || !x->f || x->exact || x->o->nprobe || !atomic_load(&c->count)) return NULL;
    double frac = (double)x->allowed_est / (double)atomic_load(&c->count);
    if (!(frac > 0 && frac < 1)) return NULL;
    float *keys = NULL;
    pthread_rwlock_rdlock(&c->ilock);
    const qv_index_params *p = c->index ? qv_index_get_params(c->index) : NULL;
    if (p && p->kind != QV_KIND_FLAT && p->nlist && nq <= (BATCH_KEYS_MAX / p->nlist) &&
        (keys = malloc(nq * p->nlist * sizeof *keys)) && qv_index_coarse_keys(c->index, nq, q, keys)) {
        free(keys);
        keys = NULL;
    }
    x->keys = keys;
    x->keys_gen = c->index_gen;
    x->keys_nlist = p ? p->nlist : 0;
    pthread_rwlock_unlock(&c->ilock);
    return keys;
}

/* A composed search of nq queries (q: nq*dim, qids[i] >= 0: query i is that
 * item) in the snapshot txn. */
static int search_composed(qv_coll *c, MDB_txn *txn, size_t nq, const float *q,
                           const int64_t *qids, const qv_query_opts *o, qv_fusion fusion,
                           uint32_t rrf_k, qv_query_result *out, char *err, size_t errlen)
{
    qctx x;
    /* fused: no query's item is returned; else each list leaves out its own */
    int rc = ctx_init(&x, c, txn, o, qids, qids && fusion ? nq : 0, err, errlen);
    size_t k = o->k, nlists = fusion ? 1 : nq;
    if (!rc) rc = result_init(out, nlists, k);
    cand **lists = calloc(nq ? nq : 1, sizeof *lists);
    size_t *ns = calloc(nq ? nq : 1, sizeof *ns);
    if (!rc && (!lists || !ns)) rc = QV_NOMEM;
    size_t D = k;
    if (o->has_mmr) D = o->mmr_candidates ? o->mmr_candidates : 10 * k;
    else if (fusion) D = 10 * k;
    if (D < k) D = k;
    /* a batch without fusion: its lists are independent, and may run on
     * the threads qv_query_run allows, sharing the call's snapshot; the sets
     * every list reads are built first */
    int par = !rc && !fusion && nq >= PAR_MIN_QUERIES && omp_get_max_threads() > 1;
    if (!rc) rc = build_sel(&x);
    float *keys = NULL;
    if (!rc) keys = batch_keys(&x, nq, q);
    if (par && !rc && (x.exact || x.f)) rc = build_allowed(&x);
    if (par && !rc) rc = qv_store_read_share(qv_db_store(c->db), txn);
    int *rcs = calloc(nlists ? nlists : 1, sizeof *rcs);
    size_t *got = calloc(nlists ? nlists : 1, sizeof *got);
    qv_hit *hits = malloc((nlists * k > 0 ? nlists * k : 1) * sizeof *hits);
    if (!rc && (!rcs || !got || !hits)) rc = QV_NOMEM;
    if (!rc) {
#pragma omp parallel if (par)
        {
            /* each thread's own context: what it builds late (a deeper
             * search's set of every item) is its own */
            qctx tx = x;
#pragma omp for schedule(dynamic)
            for (size_t li = 0; li < nlists; li++)
                rcs[li] = one_list(&tx, li, nq, q, qids, fusion, rrf_k, D, lists, ns,
                                   hits + li * k, &got[li]);
            if (tx.allowed != x.allowed) free(tx.allowed);
            if (tx.sel != x.sel) qv_idsel_free(tx.sel);
        }
        size_t n = 0;
        for (size_t li = 0; li < nlists && !rc; li++) {
            rc = rcs[li];
            out->off[li] = n;
            memmove(out->hits + n, hits + li * k, got[li] * sizeof *hits);
            n += got[li];
        }
        out->off[nlists] = n;
    }
    free(rcs);
    free(got);
    free(hits);
    free(keys);
    for (size_t i = 0; lists && i < nq; i++) free(lists[i]);
    free(lists);
    free(ns);
    if (rc && !err[0]) snprintf(err, errlen, "search in \"%s\" failed: %s", c->cfg.name, qv_strerror(rc));
    if (rc) qv_query_result_free(out);
    ctx_free(&x);
    return rc;
}

/* -------------------------------------------------------------- recommend */
typedef struct recx {
    qctx *x;
    qv_rec_strategy strategy;
    const float *pv, *nv; /* example vectors, npos*dim / nneg*dim */
    const float *pw, *nw; /* weights */
    size_t np, nn;
} recx;

/* score of an item vector v under the strategy; *drop for BEST_SCORE's rule */
static float rec_score(const recx *r, const float *v, int *drop)
{
    const qctx *x = r->x;
    *drop = 0;
    if (r->strategy == QV_REC_BEST) {
        float best = -INFINITY, neg = -INFINITY;
        for (size_t i = 0; i < r->np; i++) best = fmaxf(best, item_sim(x, v, r->pv + i * x->dim));
        for (size_t i = 0; i < r->nn; i++) neg = fmaxf(neg, item_sim(x, v, r->nv + i * x->dim));
        *drop = neg > best;
        return best;
    }
    double s = 0;
    for (size_t i = 0; i < r->np; i++) s += r->pw[i] * item_sim(x, v, r->pv + i * x->dim);
    for (size_t i = 0; i < r->nn; i++) s -= r->nw[i] * item_sim(x, v, r->nv + i * x->dim);
    return (float)s;
}

/* Rescore candidate ids (n) by the strategy from their vectors into cs,
 * dropping what the strategy drops; sorted best first. */
static int rescore(const recx *r, const int64_t *ids, size_t n, cand *cs, size_t *nout)
{
    qctx *x = r->x;
    enum { CH = 1024 };
    float *v = malloc((size_t)CH * x->dim * sizeof *v);
    uint8_t *found = malloc(CH);
    if (!v || !found) {
        free(v), free(found);
        return QV_NOMEM;
    }
    size_t o = 0;
    for (size_t b = 0; b < n; b += CH) {
        size_t m = n - b < CH ? n - b : CH;
        if (stopped(x)) {
            free(v), free(found);
            return QV_CANCELLED;
        }
        get_vectors(x, m, ids + b, v, found);
        for (size_t j = 0; j < m; j++) {
            int drop;
            if (!found[j]) continue;
            float sc = rec_score(r, v + j * x->dim, &drop);
            if (drop) continue;
            cs[o].id = ids[b + j];
            cs[o].score = cs[o].sim = sc;
            o++;
        }
    }
    free(v);
    free(found);
    qsort(cs, o, sizeof *cs, cmp_cand);
    *nout = o;
    return 0;
}

/* Ranked candidates of depth D for BEST_SCORE / SUM_SCORES. *exhausted: no
 * deeper search can change the answer. */
static int rec_candidates(const recx *r, const float *qv, int exhaustive, size_t D, cand **out,
                          size_t *n, int *exhausted, size_t k)
{
    qctx *x = r->x;
    int rc;
    *out = NULL;
    *n = 0;
    if (exhaustive) { /* every allowed item */
        if ((rc = build_allowed(x))) return rc;
        cand *cs = malloc((x->nallowed ? x->nallowed : 1) * sizeof *cs);
        if (!cs) return QV_NOMEM;
        if ((rc = rescore(r, x->allowed, x->nallowed, cs, n))) {
            free(cs);
            return rc;
        }
        *out = cs;
        *exhausted = 1;
        return 0;
    }
    size_t nl = r->strategy == QV_REC_BEST ? r->np : 1;
    cand **lists = calloc(nl, sizeof *lists);
    size_t *ns = calloc(nl, sizeof *ns), total = 0;
    float bound = -INFINITY; /* no unseen item scores above it (BEST_SCORE) */
    *exhausted = 1;
    rc = lists && ns ? 0 : QV_NOMEM;
    for (size_t i = 0; i < nl && !rc; i++) {
        const float *q = r->strategy == QV_REC_BEST ? r->pv + i * x->dim : qv;
        if ((rc = knn(x, q, NULL, D, -1, &lists[i], &ns[i]))) break;
        total += ns[i];
        if (ns[i] >= D && D < x->allowed_est) {
            *exhausted = 0;
            bound = fmaxf(bound, lists[i][ns[i] - 1].sim);
        }
    }
    int64_t *ids = rc ? NULL : malloc((total ? total : 1) * sizeof *ids);
    cand *cs = rc ? NULL : malloc((total ? total : 1) * sizeof *cs);
    if (!rc && (!ids || !cs)) rc = QV_NOMEM;
    if (!rc) {
        size_t t = 0;
        for (size_t i = 0; i < nl; i++)
            for (size_t j = 0; j < ns[i]; j++) ids[t++] = lists[i][j].id;
        qsort(ids, t, sizeof *ids, cmp_i64);
        size_t u = 0;
        for (size_t i = 0; i < t; i++)
            if (u == 0 || ids[u - 1] != ids[i]) ids[u++] = ids[i];
        rc = rescore(r, ids, u, cs, n);
    }
    /* BEST_SCORE is exact once the k-th score is at least what any unseen
     * item could reach: its similarity to every positive is below the last
     * one of that positive's list */
    if (!rc && r->strategy == QV_REC_BEST && !*exhausted && *n >= k && cs[k - 1].sim >= bound)
        *exhausted = 1;
    for (size_t i = 0; lists && i < nl; i++) free(lists[i]);
    free(lists);
    free(ns);
    free(ids);
    if (rc) {
        free(cs);
        return rc;
    }
    *out = cs;
    return 0;
}

static int bad_example(char *err, size_t errlen, const char *side, size_t i, const char *fmt,
                       double v)
{
    char msg[200];
    snprintf(msg, sizeof msg, fmt, v);
    snprintf(err, errlen, "%s[%zu].%s", side, i, msg);
    return QV_INVALID;
}

/* A recommendation from examples in the snapshot txn: one list. */
static int recommend(qv_coll *c, MDB_txn *txn, const qv_example *pos, size_t npos,
                     const qv_example *neg, size_t nneg, qv_rec_strategy strategy,
                     const qv_query_opts *o, qv_query_result *out, char *err, size_t errlen)
{
    if (npos == 0) {
        snprintf(err, errlen, "positive is empty: give at least one example to recommend from");
        return QV_INVALID;
    }
    if (strategy != QV_REC_AVERAGE && strategy != QV_REC_BEST && strategy != QV_REC_SUM) {
        snprintf(err, errlen, "strategy %d is unknown", (int)strategy);
        return QV_INVALID;
    }
    uint32_t dim = c->cfg.dim;
    size_t ne = npos + nneg;
    float *ev = malloc(ne * dim * sizeof *ev), *w = malloc(ne * sizeof *w);
    int64_t *eids = malloc(ne * sizeof *eids);
    if (!ev || !w || !eids) {
        free(ev), free(w), free(eids);
        return QV_NOMEM;
    }
    int rc = 0;
    qv_store *st = qv_db_store(c->db);
    for (size_t i = 0; i < ne && !rc; i++) {
        const qv_example *e = i < npos ? &pos[i] : &neg[i - npos];
        const char *side = i < npos ? "positive" : "negative";
        size_t j = i < npos ? i : i - npos;
        float wt = e->weight == 0 ? 1 : e->weight;
        if (!(wt > 0) || isinf(wt)) {
            rc = bad_example(err, errlen, side, j, "weight %g must be positive and finite (0 = 1)",
                             (double)e->weight);
            break;
        }
        w[i] = wt;
        eids[i] = e->id;
        if (e->id >= 0) {
            qv_item_view v;
            rc = qv_store_item_get(st, txn, c->cfg.id, (uint64_t)e->id, &v);
            if (rc == QV_NOTFOUND) {
                snprintf(err, errlen, "%s[%zu].id %lld does not exist in collection \"%s\"", side, j,
                         (long long)e->id, c->cfg.name);
                break;
            }
            if (rc || v.dim != dim) {
                rc = rc ? rc : QV_CORRUPT;
                snprintf(err, errlen, "%s[%zu].id %lld cannot be read: %s", side, j,
                         (long long)e->id, qv_strerror(rc));
                break;
            }
            qv_item_vector(&v, ev + i * dim);
        } else {
            memcpy(ev + i * dim, e->vec, dim * sizeof *ev);
            if (c->cfg.metric == QV_METRIC_COSINE) qv_vec_normalize(ev + i * dim, dim);
        }
    }
    if (rc) {
        free(ev), free(w), free(eids);
        return rc;
    }
    qctx x;
    rc = ctx_init(&x, c, txn, o, eids, ne, err, errlen);
    size_t k = o->k;
    int grouping = o->group_by && o->group_by_len;
    recx r = {&x, strategy, ev, ev + npos * dim, w, w + npos, npos, nneg};
    float *q = calloc(dim, sizeof *q);
    if (!rc && !q) rc = QV_NOMEM;
    if (!rc) rc = result_init(out, 1, k);
    /* the query vector of AVERAGE_VECTOR and SUM_SCORES */
    int exhaustive = 0;
    if (!rc && strategy != QV_REC_BEST) {
        double wp = 0, wn = 0;
        for (size_t i = 0; i < npos; i++) wp += w[i];
        for (size_t i = 0; i < nneg; i++) wn += w[npos + i];
        for (uint32_t d = 0; d < dim; d++) {
            double sp = 0, sn = 0;
            for (size_t i = 0; i < npos; i++) sp += w[i] * ev[i * dim + d];
            for (size_t i = 0; i < nneg; i++) sn += w[npos + i] * ev[(npos + i) * dim + d];
            if (strategy == QV_REC_AVERAGE) q[d] = (float)(sp / wp - (nneg ? sn / wn : 0));
            else q[d] = (float)(sp - sn);
        }
        if (strategy == QV_REC_AVERAGE && c->cfg.metric == QV_METRIC_COSINE) qv_vec_normalize(q, dim);
        /* SUM_SCORES on L2: -sum w_i |v - e_i|^2 = -W |v - q/W|^2 + const with
         * W = sum w_p - sum w_n: a search for q/W when W > 0; otherwise every
         * allowed item is scored */
        if (strategy == QV_REC_SUM && x.l2) {
            double W = wp - wn;
            if (W > 0)
                for (uint32_t d = 0; d < dim; d++) q[d] = (float)(q[d] / W);
            else exhaustive = 1;
        }
    }
    size_t depth = grouping ? 4 * k : k;
    if (strategy != QV_REC_AVERAGE && depth < 2 * k) depth = 2 * k;
    while (!rc) {
        cand *cs = NULL;
        size_t n = 0;
        int exhausted = 1;
        if (stopped(&x)) {
            rc = QV_CANCELLED;
            break;
        }
        if (strategy == QV_REC_AVERAGE) {
            rc = knn(&x, q, NULL, depth, -1, &cs, &n);
            if (!rc) {
                exhausted = !(n >= depth && depth < x.allowed_est);
                n = cut_threshold(&x, cs, n, x.l2);
            }
        } else {
            rc = rec_candidates(&r, q, exhaustive, depth, &cs, &n, &exhausted, k);
            if (!rc) n = cut_threshold(&x, cs, n, 0);
        }
        if (rc) {
            free(cs);
            break;
        }
        long got = select_hits(&x, cs, n, k, out->hits);
        free(cs);
        if (got < 0) {
            rc = (int)-got;
            break;
        }
        /* deeper while short of k (groups, BEST_SCORE's drops) and more can
         * be had; BEST_SCORE also until its bound proves the answer exact,
         * up to the depth an index search goes to */
        int inexact = strategy == QV_REC_BEST && depth <= MAX_INDEX_DEPTH;
        if (!exhausted && ((size_t)got < k || inexact)) {
            depth *= DEEPEN;
            continue;
        }
        out->off[1] = (size_t)got;
        break;
    }
    free(q);
    free(ev), free(w), free(eids);
    if (rc && !err[0]) snprintf(err, errlen, "recommend in \"%s\" failed: %s", c->cfg.name, qv_strerror(rc));
    if (rc) qv_query_result_free(out);
    ctx_free(&x);
    return rc;
}

/* ------------------------------------------------------------ plain search */
/* A search without composition: every query in one FAISS batch (q: nq*dim;
 * qids NULL, or qids[i] >= 0: query i is that item, left out of its list). */
static int search_plain(qv_coll *c, size_t nq, const float *q, const int64_t *qids,
                        const qv_query_opts *o, qv_query_result *out, char *err, size_t errlen)
{
    size_t k = o->k, kk = k;
    for (size_t i = 0; qids && i < nq; i++)
        if (depth_with(k, qids[i]) > kk) kk = depth_with(k, qids[i]);
    int rc = result_init(out, nq, k);
    float *ts = malloc(nq * kk * sizeof *ts);
    int64_t *tl = malloc(nq * kk * sizeof *tl);
    cand *row = malloc(kk * sizeof *row);
    if (!rc && (!ts || !tl || !row)) rc = QV_NOMEM;
    if (!rc) {
        pthread_rwlock_rdlock(&c->ilock);
        uint32_t np = o->nprobe;
        if (np == 0 && qv_index_get_params(c->index)->kind != QV_KIND_FLAT)
            np = qv_calib_nprobe(c, o->min_recall);
        rc = qv_index_search(c->index, nq, q, kk, np, ts, tl);
        pthread_rwlock_unlock(&c->ilock);
    }
    for (size_t i = 0, n = 0; !rc && i < nq; i++) {
        size_t m = 0;
        while (m < kk && tl[i * kk + m] >= 0) {
            row[m].id = tl[i * kk + m];
            row[m].score = ts[i * kk + m];
            m++;
        }
        m = keep_others(row, m, qids ? qids[i] : -1, k);
        out->off[i] = n;
        for (size_t j = 0; j < m; j++, n++) {
            out->hits[n].id = (uint64_t)row[j].id;
            out->hits[n].score = row[j].score;
        }
        out->off[i + 1] = n;
    }
    free(ts);
    free(tl);
    free(row);
    if (rc) {
        qv_query_result_free(out);
        if (rc == QV_CANCELLED) snprintf(err, errlen, "search in \"%s\" stopped", c->cfg.name);
        else snprintf(err, errlen, "search in \"%s\" failed: %s", c->cfg.name, qv_strerror(rc));
    }
    return rc;
}

size_t qv_query_scratch(qv_coll *c, size_t nq, size_t k)
{
    size_t per = k + 1; /* + the query's own item */
    pthread_rwlock_rdlock(&c->ilock);
    size_t cand = qv_index_candidates(c->index, per);
    pthread_rwlock_unlock(&c->ilock);
    size_t each = sizeof(float) + sizeof(int64_t);
    if (cand > SIZE_MAX / each / 2 || nq > SIZE_MAX / each / 2 / (cand + per)) return SIZE_MAX;
    return nq * (cand + per) * each;
}

/* ------------------------------------------------------------------ reads */
/* The queries' vectors (q: nq*dim, normalised for cosine) and item ids
 * (qids: -1 for a vector; *any_id when some query is an item), read in the
 * call's snapshot. */
static int resolve_queries(qv_coll *c, MDB_txn *txn, const qv_read *r, float *q, int64_t *qids,
                           int *any_id, char *err, size_t errlen)
{
    uint32_t dim = c->cfg.dim;
    qv_store *st = qv_db_store(c->db);
    *any_id = 0;
    for (size_t i = 0; i < r->nq; i++) {
        const qv_query *qu = &r->queries[i];
        qids[i] = -1;
        if (qu->vec) {
            memcpy(q + i * dim, qu->vec, dim * sizeof *q);
            if (c->cfg.metric == QV_METRIC_COSINE) qv_vec_normalize(q + i * dim, dim);
            continue;
        }
        qv_item_view v;
        int rc = qu->id > (uint64_t)QV_MAX_ID ? QV_NOTFOUND
                                             : qv_store_item_get(st, txn, c->cfg.id, qu->id, &v);
        if (rc == QV_NOTFOUND) {
            snprintf(err, errlen, "queries[%zu].id %llu does not exist in collection \"%s\"", i,
                     (unsigned long long)qu->id, c->cfg.name);
            return rc;
        }
        if (rc || v.dim != dim) {
            rc = rc ? rc : QV_CORRUPT;
            snprintf(err, errlen, "queries[%zu].id %llu cannot be read: %s", i,
                     (unsigned long long)qu->id, qv_strerror(rc));
            return rc;
        }
        qv_item_vector(&v, q + i * dim);
        qids[i] = (int64_t)qu->id;
        *any_id = 1;
    }
    return 0;
}

static int composed(const qv_read *r)
{
    const qv_query_opts *o = &r->opts;
    return o->filter || o->n_exclude || o->has_threshold || (o->group_by && o->group_by_len) ||
           o->has_mmr || r->fusion != QV_FUSION_NONE;
}

/* One request into part (its lists, ids and scores only). */
static int run_one(const qv_read *r, MDB_txn *txn, qv_query_result *part, char *err, size_t errlen)
{
    qv_coll *c = r->coll;
    if (atomic_load(&c->dropped)) {
        snprintf(err, errlen, "collection \"%s\" does not exist", c->cfg.name);
        return QV_NOTFOUND;
    }
    qv_query_opts o = r->opts;
    if (o.k == 0) o.k = 10;
    if (!(o.min_recall >= 0 && o.min_recall <= 1)) {
        snprintf(err, errlen, "min_recall %g is out of range 0..1", (double)o.min_recall);
        return QV_INVALID;
    }
    if (r->kind == QV_READ_RECOMMEND)
        return recommend(c, txn, r->positive, r->npos, r->negative, r->nneg, r->strategy, &o, part,
                         err, errlen);
    if (r->kind != QV_READ_SEARCH) {
        snprintf(err, errlen, "read kind %d is unknown", (int)r->kind);
        return QV_INVALID;
    }
    if (r->nq == 0) {
        snprintf(err, errlen, "queries is empty: nothing to search");
        return QV_INVALID;
    }
    if (r->fusion != QV_FUSION_NONE && r->fusion != QV_FUSION_RRF && r->fusion != QV_FUSION_MAX) {
        snprintf(err, errlen, "fusion %d is unknown", (int)r->fusion);
        return QV_INVALID;
    }
    size_t nq = r->nq;
    float *q = malloc(nq * c->cfg.dim * sizeof *q);
    int64_t *qids = malloc(nq * sizeof *qids);
    int any_id = 0, rc = q && qids ? 0 : QV_NOMEM;
    if (rc) snprintf(err, errlen, "out of memory for %zu queries", nq);
    if (!rc) rc = resolve_queries(c, txn, r, q, qids, &any_id, err, errlen);
    if (!rc && composed(r))
        rc = search_composed(c, txn, nq, q, any_id ? qids : NULL, &o, r->fusion, r->rrf_k, part,
                             err, errlen);
    else if (!rc)
        rc = search_plain(c, nq, q, any_id ? qids : NULL, &o, part, err, errlen);
    free(q);
    free(qids);
    return rc;
}

/* The parts' lists into out, each hit with what its request asks for,
 * read in the call's snapshot (out->snap_). */
static int gather(const qv_read *reqs, size_t nreq, qv_query_result *parts, qv_query_result *out)
{
    qv_store *st = qv_db_store(reqs[0].coll->db);
    MDB_txn *txn = out->snap_;
    size_t nlists = 0, nhits = 0, nfloats = 0;
    for (size_t i = 0; i < nreq; i++) {
        size_t n = parts[i].off[parts[i].nlists];
        nlists += parts[i].nlists;
        nhits += n;
        if (reqs[i].with_vectors) nfloats += n * reqs[i].coll->cfg.dim;
    }
    out->nlists = nlists;
    out->off = malloc((nlists + 1) * sizeof *out->off);
    out->hits = malloc((nhits ? nhits : 1) * sizeof *out->hits);
    out->vecs_ = nfloats ? malloc(nfloats * sizeof *out->vecs_) : NULL;
    if (!out->off || !out->hits || (nfloats && !out->vecs_)) return QV_NOMEM;
    size_t l = 0, h = 0;
    float *v = out->vecs_;
    /* attribute blobs the collection's cache holds as of this snapshot are
     * held from there (a reference each, out->arefs_); the others are read
     * in the snapshot and offered to the cache, a list at a time */
    uint64_t txnid = qv_store_txn_id(txn);
    uint64_t *mid = NULL;
    const uint8_t **mblob = NULL;
    size_t *mlen = NULL;
    for (size_t i = 0; i < nreq && !out->arefs_; i++)
        if (reqs[i].with_attributes && reqs[i].coll->ac) {
            out->arefs_ = malloc((nhits ? nhits : 1) * sizeof *out->arefs_);
            mid = malloc((nhits ? nhits : 1) * sizeof *mid);
            mblob = malloc((nhits ? nhits : 1) * sizeof *mblob);
            mlen = malloc((nhits ? nhits : 1) * sizeof *mlen);
            if (!out->arefs_ || !mid || !mblob || !mlen) {
                free(mid);
                free(mblob);
                free(mlen);
                return QV_NOMEM;
            }
        }
    for (size_t i = 0; i < nreq; i++) {
        const qv_coll *c = reqs[i].coll;
        qv_acache *ac = reqs[i].with_attributes ? c->ac : NULL;
        for (size_t pl = 0; pl < parts[i].nlists; pl++) {
            out->off[l++] = h;
            /* a list at a time: a write waits at most that long to commit */
            qv_acache_read_begin(ac);
            size_t nmiss = 0;
            int offer = qv_acache_wants(ac, txnid);
            for (size_t j = parts[i].off[pl]; j < parts[i].off[pl + 1]; j++, h++) {
                qv_hit *o = &out->hits[h];
                o->id = parts[i].hits[j].id;
                o->score = parts[i].hits[j].score;
                o->dim = 0;
                o->attrs = NULL;
                o->attrs_len = 0;
                o->vector = NULL;
                /* hits are as the index saw them: an item deleted since
                 * comes without attributes and vector */
                void **ref = out->arefs_ ? &out->arefs_[out->narefs_] : NULL;
                if (ac && qv_acache_find(ac, o->id, txnid, &o->attrs, &o->attrs_len, ref)) {
                    if (*ref) out->narefs_++;
                } else if (reqs[i].with_attributes) {
                    int g = qv_store_attrs_get(st, txn, c->cfg.id, o->id, &o->attrs, &o->attrs_len);
                    if (g) {
                        o->attrs = NULL;
                        o->attrs_len = 0;
                    }
                    if (offer && (g == 0 || g == QV_NOTFOUND)) {
                        mid[nmiss] = o->id;
                        mblob[nmiss] = o->attrs;
                        mlen[nmiss++] = o->attrs_len;
                    }
                }
                qv_item_view iv;
                if (reqs[i].with_vectors &&
                    qv_store_item_get(st, txn, c->cfg.id, o->id, &iv) == 0 && iv.dim == c->cfg.dim) {
                    qv_item_vector(&iv, v);
                    o->vector = v;
                    o->dim = iv.dim;
                    v += iv.dim;
                }
            }
            qv_acache_read_end(ac);
            qv_acache_offer(ac, txnid, nmiss, mid, mblob, mlen);
        }
    }
    out->off[nlists] = h;
    free(mid);
    free(mblob);
    free(mlen);
    return 0;
}

int qv_query_run(const qv_read *reqs, size_t nreq, qv_query_result *out, size_t *failed,
                 char *err, size_t errlen)
{
    static long ncpu;
    memset(out, 0, sizeof *out);
    *failed = 0;
    if (errlen) err[0] = '\0';
    if (nreq == 0) {
        out->off = calloc(1, sizeof *out->off);
        return out->off ? 0 : QV_NOMEM;
    }
    if (!ncpu && (ncpu = sysconf(_SC_NPROCESSORS_ONLN)) < 1) ncpu = 1;
    MDB_txn *txn;
    int rc = qv_store_read_begin(qv_db_store(reqs[0].coll->db), &txn);
    if (rc) {
        snprintf(err, errlen, "cannot start a read: %s", qv_strerror(rc));
        return rc;
    }
    out->snap_ = txn;
    qv_query_result *parts = calloc(nreq, sizeof *parts);
    if (!parts) rc = QV_NOMEM;
    int active = atomic_fetch_add(&g_active_reads, 1) + 1;
    int saved = omp_get_max_threads();
    qv_index_cancel_hook(reqs[0].opts.stop, reqs[0].opts.stop_ctx);
    for (size_t i = 0; i < nreq && !rc; i++) {
        const qv_read *r = &reqs[i];
        int threads = 1;
        if (r->kind == QV_READ_SEARCH && r->nq >= PAR_MIN_QUERIES) {
            threads = (int)ncpu / active;
            if (threads < 1) threads = 1;
        }
        omp_set_num_threads(threads);
        if (r->coll->db != reqs[0].coll->db) {
            snprintf(err, errlen, "requests name collections of two databases");
            rc = QV_INVALID;
        } else {
            rc = run_one(r, txn, &parts[i], err, errlen);
        }
        if (rc) *failed = i;
    }
    qv_index_cancel_hook(NULL, NULL);
    omp_set_num_threads(saved);
    atomic_fetch_sub(&g_active_reads, 1);
    if (!rc && (rc = gather(reqs, nreq, parts, out)))
        snprintf(err, errlen, "out of memory for the hits");
    for (size_t i = 0; parts && i < nreq; i++) qv_query_result_free(&parts[i]);
    free(parts);
    if (rc) qv_query_result_free(out);
    return rc;
}
