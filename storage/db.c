/*
 * The engine (include/quiver/db.h): collections and their live indexes, the
 * group-commit writer thread, searches, background rebuilds and start-up.
 * LMDB access goes through store.c, FAISS through index.c, files through
 * indexfile.c. Not for wire formats: the server translates those.
 */
#include <dirent.h>
#include <malloc.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "quiver/db.h"
#include "quiver/error.h"
#include "quiver/log.h"

#define DEFAULT_AUTO_IVF_MIN 20000
#define DEFAULT_MAX_BATCH 50000
#define TRAIN_MIN_PER_LIST 39   /* FAISS's minimum training points per list */
#define TRAIN_MAX_PER_LIST 50   /* sample at most this many per list (memory: the sample
                                   * lives beside the old and the new index) */
#define CALIB_POOL 600    /* sampled items whose exact neighbours are found: the
                           * calibration queries */
#define DEFAULT_MIN_RECALL 0.95f
#define AUTO_PQ_FS_MIN 100000 /* "auto" builds ivf_pq_fs from this many items on */
/* lists from which IVF builds get an HNSW coarse quantizer: never by default
 * (glove-100, nlist 4096: 0.89x the QPS of the AVX-512 scan of the centroids
 * at nprobe 64, and recall capped at 0.94; README "Indexes") */
#define DEFAULT_HNSW_COARSE_MIN UINT32_MAX
#define REBUILD_GROWTH 2   /* retrain when a collection doubles */
#define CATCHUP_SMALL 2000      /* log entries small enough to apply under the lock */

typedef struct rebuild rebuild;

struct qv_coll {
    qv_db *db;
    qv_coll_config cfg;
    atomic_int refs;
    atomic_int dropped;
    /* writer thread only: counters including uncommitted work */
    uint64_t w_seq, w_count;
    /* published after commit */
    _Atomic uint64_t last_seq, count;
    /* the live index and what it covers, under ilock */
    pthread_rwlock_t ilock;
    qv_index *index;
    uint64_t index_seq;
    uint64_t trained_for;
    uint64_t deleted_since; /* deletes since the index was trained */
    atomic_int index_stale; /* an update of the live index failed after its commit:
                             * a rebuild from LMDB is forced (cleared at install) */
    uint32_t nprobe;
    uint32_t n_recall;
    qv_recall_point recall[QV_MAX_RECALL_POINTS];
    /* rebuild state, under rmu */
    pthread_mutex_t rmu;
    rebuild *rb;
    char phase[16];
    uint64_t done, total;
};

struct rebuild {
    qv_coll *c;
    qv_rebuild_req req;
    qv_index_params params; /* resolved */
    atomic_int cancel;
    int automatic;
    struct timespec t0;
    pthread_t th;
    uint64_t train_total; /* training: sample size, for progress */
    double last_tick;     /* elapsed seconds at the last training progress */
    rebuild *next;        /* a requested rebuild that cancelled this automatic
                           * one: it starts when this one has ended (under rmu) */
};

struct qv_db {
    qv_db_opts opts;
    qv_store *st;
    char ixdir[4096];
    /* registry, sorted by name */
    pthread_mutex_t cmu;
    qv_coll **colls;
    size_t ncolls, capcolls;
    /* writer queue */
    pthread_mutex_t qmu;
    pthread_cond_t qcv;
    qv_write *qhead, *qtail;
    /* bytes of the writes queued and being applied (w->bytes), bounded by
     * opts.max_queued_bytes; writes over it wait in order in `waiting` until
     * there is room or their deadline passes */
    size_t queued;
    qv_write *whead, *wtail;
    void (*room_cb)(void *ctx);
    void *room_ctx;
    int stopping;
    pthread_t writer;
    int writer_started;
    /* rebuild threads alive */
    pthread_mutex_t rbmu;
    pthread_cond_t rbcv;
    int nrebuilds;
    int building; /* rebuilds past their "queued" phase (at most opts.max_rebuilds) */
    atomic_int closing;
    size_t written_since_release; /* writer only */
    /* tests: the test_fail_update-th index update fails (QUIVER_TEST_FAIL_INDEX_UPDATE) */
    unsigned long test_fail_update, updates;
};

/* internal write kinds: drop tombstones covered by an index file; store the
 * index spec a requested rebuild used */
#define QV_W_PRUNE 100
#define QV_W_SPEC 101

static double elapsed_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

uint32_t qv_auto_nlist(uint64_t n)
{
    /* about 8*sqrt(n) lists, a power of two, each list trained on at least
     * TRAIN_MIN_PER_LIST points. The benchmark on glove-100 (331k) found
     * nlist 4096 fastest at recall 0.95 (ahead of 2048 and 1024) */
    double want = 8.0 * sqrt((double)n);
    uint32_t nlist = 16;
    while (nlist < 65536 && (double)nlist * 1.5 < want) nlist *= 2;
    while (nlist > 16 && (uint64_t)nlist * TRAIN_MIN_PER_LIST > n) nlist /= 2;
    return nlist;
}

/* ------------------------------------------------------------ collections */
static qv_coll *coll_new(qv_db *db, const qv_coll_config *cfg)
{
    qv_coll *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->db = db;
    c->cfg = *cfg;
    atomic_init(&c->refs, 1);
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    /* searches must not starve the writer */
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&c->ilock, &a);
    pthread_rwlockattr_destroy(&a);
    pthread_mutex_init(&c->rmu, NULL);
    c->nprobe = 1;
    return c;
}

static void coll_ref(qv_coll *c) { atomic_fetch_add(&c->refs, 1); }

/* The collection's index spec (requested rebuilds change it). */
static qv_index_params coll_spec(qv_coll *c)
{
    pthread_mutex_lock(&c->rmu);
    qv_index_params p = c->cfg.spec;
    pthread_mutex_unlock(&c->rmu);
    return p;
}

void qv_coll_release(qv_coll *c)
{
    if (!c || atomic_fetch_sub(&c->refs, 1) != 1) return;
    qv_index_free(c->index);
    pthread_rwlock_destroy(&c->ilock);
    pthread_mutex_destroy(&c->rmu);
    free(c);
}

const qv_coll_config *qv_coll_config_of(const qv_coll *c) { return &c->cfg; }

static size_t reg_find(qv_db *db, const char *name, int *found)
{
    size_t lo = 0, hi = db->ncolls;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int cmp = strcmp(db->colls[mid]->cfg.name, name);
        if (cmp == 0) {
            *found = 1;
            return mid;
        }
        if (cmp < 0) lo = mid + 1;
        else hi = mid;
    }
    *found = 0;
    return lo;
}

static int reg_add(qv_db *db, qv_coll *c)
{
    pthread_mutex_lock(&db->cmu);
    int found;
    size_t at = reg_find(db, c->cfg.name, &found);
    if (found) {
        pthread_mutex_unlock(&db->cmu);
        return QV_EXISTS;
    }
    if (db->ncolls == db->capcolls) {
        size_t cap = db->capcolls ? db->capcolls * 2 : 16;
        qv_coll **n = realloc(db->colls, cap * sizeof *n);
        if (!n) {
            pthread_mutex_unlock(&db->cmu);
            return QV_NOMEM;
        }
        db->colls = n;
        db->capcolls = cap;
    }
    memmove(db->colls + at + 1, db->colls + at, (db->ncolls - at) * sizeof *db->colls);
    db->colls[at] = c;
    db->ncolls++;
    pthread_mutex_unlock(&db->cmu);
    return 0;
}

/* Removes name from the registry; returns its reference (or NULL). */
static qv_coll *reg_remove(qv_db *db, const char *name)
{
    pthread_mutex_lock(&db->cmu);
    int found;
    size_t at = reg_find(db, name, &found);
    qv_coll *c = NULL;
    if (found) {
        c = db->colls[at];
        memmove(db->colls + at, db->colls + at + 1, (db->ncolls - at - 1) * sizeof *db->colls);
        db->ncolls--;
    }
    pthread_mutex_unlock(&db->cmu);
    return c;
}

int qv_db_coll_get(qv_db *db, const char *name, qv_coll **out)
{
    pthread_mutex_lock(&db->cmu);
    int found;
    size_t at = reg_find(db, name, &found);
    *out = found ? db->colls[at] : NULL;
    if (found) coll_ref(*out);
    pthread_mutex_unlock(&db->cmu);
    return found ? 0 : QV_NOTFOUND;
}

int qv_db_coll_list(qv_db *db, qv_coll ***out, size_t *n)
{
    pthread_mutex_lock(&db->cmu);
    *out = malloc((db->ncolls ? db->ncolls : 1) * sizeof **out);
    if (!*out) {
        pthread_mutex_unlock(&db->cmu);
        return QV_NOMEM;
    }
    for (size_t i = 0; i < db->ncolls; i++) {
        (*out)[i] = db->colls[i];
        coll_ref(db->colls[i]);
    }
    *n = db->ncolls;
    pthread_mutex_unlock(&db->cmu);
    return 0;
}

void qv_coll_info_get(qv_coll *c, qv_coll_info *o)
{
    memset(o, 0, sizeof *o);
    pthread_mutex_lock(&c->rmu);
    o->config = c->cfg; /* the spec changes after requested rebuilds */
    pthread_mutex_unlock(&c->rmu);
    o->count = atomic_load(&c->count);
    o->last_seq = atomic_load(&c->last_seq);
    pthread_rwlock_rdlock(&c->ilock);
    if (c->index) {
        o->params = *qv_index_get_params(c->index);
        o->trained = qv_index_is_trained(c->index);
        o->indexed = qv_index_count(c->index);
    }
    o->nprobe = o->params.kind == QV_KIND_FLAT ? 0 : c->nprobe;
    o->trained_for = c->trained_for;
    o->covered_seq = c->index_seq;
    o->n_recall = c->n_recall;
    memcpy(o->recall, c->recall, sizeof o->recall);
    pthread_rwlock_unlock(&c->ilock);
    pthread_mutex_lock(&c->rmu);
    o->rebuilding = c->rb != NULL;
    if (c->rb) {
        snprintf(o->phase, sizeof o->phase, "%s", c->phase);
        o->done = c->done;
        o->total = c->total;
    }
    pthread_mutex_unlock(&c->rmu);
}

/* ------------------------------------------------------- index replay */
/* Applies log entries after `after` to ix (which the caller owns or holds
 * exclusively), reading vectors from txn. [out] last: newest seq applied,
 * napplied: entries. */
typedef struct replay {
    qv_coll *c;
    MDB_txn *txn;
    qv_index *ix;
    int64_t *rm, *add;
    float *vecs;
    size_t nrm, nadd, cap;
    uint64_t last, napplied;
    int rc;
} replay;

static int replay_flush(replay *r)
{
    if (r->nrm) {
        int rc = qv_index_remove(r->ix, r->nrm, r->rm, NULL);
        if (rc) return rc;
    }
    if (r->nadd) {
        int rc = qv_index_add(r->ix, r->nadd, r->add, r->vecs);
        if (rc) return rc;
    }
    r->nrm = r->nadd = 0;
    return 0;
}

static int replay_entry(void *ctx, uint64_t seq, qv_op op, uint64_t id)
{
    replay *r = ctx;
    uint32_t dim = r->c->cfg.dim;
    r->rm[r->nrm++] = (int64_t)id;
    if (op == QV_OP_UPSERT) {
        qv_item_view v;
        int rc = qv_store_item_get(r->c->db->st, r->txn, r->c->cfg.id, id, &v);
        if (rc == 0 && v.dim == dim) {
            qv_item_vector(&v, r->vecs + r->nadd * dim);
            r->add[r->nadd++] = (int64_t)id;
        } else if (rc != QV_NOTFOUND) {
            return rc ? rc : QV_CORRUPT;
        }
    }
    r->last = seq;
    r->napplied++;
    if (r->nrm == r->cap) return replay_flush(r);
    return 0;
}

static int replay_log(qv_coll *c, MDB_txn *txn, qv_index *ix, uint64_t after, uint64_t *last,
                      uint64_t *napplied)
{
    replay r = {.c = c, .txn = txn, .ix = ix, .cap = 4096, .last = after};
    r.rm = malloc(r.cap * sizeof *r.rm);
    r.add = malloc(r.cap * sizeof *r.add);
    r.vecs = malloc(r.cap * (size_t)c->cfg.dim * sizeof *r.vecs);
    int rc = QV_NOMEM;
    if (r.rm && r.add && r.vecs) {
        rc = qv_store_log_foreach(c->db->st, txn, c->cfg.id, after, replay_entry, &r);
        if (!rc) rc = replay_flush(&r);
    }
    free(r.rm);
    free(r.add);
    free(r.vecs);
    if (last) *last = r.last;
    if (napplied) *napplied = r.napplied;
    return rc;
}

/* ------------------------------------------------------------ scanning items */
/* Reads a collection's items in chunks (bounded memory, whatever its size)
 * and hands each chunk to fn. */
typedef int (*chunk_fn)(void *ctx, size_t n, const int64_t *ids, const float *vecs);

typedef struct scanner {
    qv_coll *c;
    rebuild *rb;
    const char *phase;
    uint64_t total, seen;
    size_t n, cap;
    int64_t *ids;
    float *vecs;
    chunk_fn fn;
    void *ctx;
} scanner;

#define SCAN_CHUNK 20000

static void set_phase(qv_coll *c, rebuild *rb, const char *phase, uint64_t done, uint64_t total)
{
    if (!rb) return;
    pthread_mutex_lock(&c->rmu);
    snprintf(c->phase, sizeof c->phase, "%s", phase);
    c->done = done;
    c->total = total;
    pthread_mutex_unlock(&c->rmu);
    if (rb->req.progress) {
        qv_rebuild_progress p = {phase, done, total, elapsed_since(&rb->t0)};
        rb->req.progress(rb->req.ctx, &p);
    }
}

/* Called by FAISS during training (each k-means iteration or so): stop when
 * cancelled, and keep the progress stream alive about once a second (FAISS
 * tells no fraction: done stays 0, elapsed grows). */
static int training_tick(void *ctx)
{
    rebuild *rb = ctx;
    if (atomic_load(&rb->cancel)) return 1;
    double now = elapsed_since(&rb->t0);
    if (now - rb->last_tick >= 1.0) {
        rb->last_tick = now;
        set_phase(rb->c, rb, "training", 0, rb->train_total);
    }
    return 0;
}

static int scan_flush(scanner *s)
{
    if (s->n == 0) return 0;
    if (s->rb && atomic_load(&s->rb->cancel)) return QV_CANCELLED;
    int rc = s->fn(s->ctx, s->n, s->ids, s->vecs);
    s->seen += s->n;
    s->n = 0;
    /* the scanned LMDB pages are page cache, not ours to keep resident */
    qv_store_release_pages(s->c->db->st);
    set_phase(s->c, s->rb, s->phase, s->seen, s->total);
    return rc;
}

static int scan_item(void *ctx, uint64_t id, const qv_item_view *v)
{
    scanner *s = ctx;
    uint32_t dim = s->c->cfg.dim;
    if (v->dim != dim) return QV_CORRUPT;
    qv_item_vector(v, s->vecs + s->n * dim);
    s->ids[s->n++] = (int64_t)id;
    return s->n == s->cap ? scan_flush(s) : 0;
}

static int scan_items(qv_coll *c, MDB_txn *txn, rebuild *rb, const char *phase, uint64_t total,
                      chunk_fn fn, void *ctx)
{
    scanner s = {.c = c, .rb = rb, .phase = phase, .total = total, .cap = SCAN_CHUNK, .fn = fn,
                 .ctx = ctx};
    s.ids = malloc(s.cap * sizeof *s.ids);
    s.vecs = malloc(s.cap * (size_t)c->cfg.dim * sizeof *s.vecs);
    int rc = QV_NOMEM;
    if (s.ids && s.vecs) {
        set_phase(c, rb, phase, 0, total);
        rc = qv_store_item_foreach(c->db->st, txn, c->cfg.id, 0, scan_item, &s);
        if (!rc) rc = scan_flush(&s);
    }
    free(s.ids);
    free(s.vecs);
    return rc;
}

/* Reservoir sample of up to cap rows (fixed seed: rebuilds are repeatable). */
typedef struct sample {
    uint32_t dim;
    size_t cap, n;
    uint64_t seen, rng;
    int64_t *ids;
    float *vecs;
} sample;

static int sample_chunk(void *ctx, size_t n, const int64_t *ids, const float *vecs)
{
    sample *s = ctx;
    for (size_t i = 0; i < n; i++) {
        size_t slot = s->n;
        s->seen++;
        if (s->n == s->cap) {
            s->rng = s->rng * 6364136223846793005ULL + 1442695040888963407ULL;
            uint64_t r = (s->rng >> 11) % s->seen;
            if (r >= s->cap) continue;
            slot = (size_t)r;
        } else {
            s->n++;
        }
        s->ids[slot] = ids[i];
        memcpy(s->vecs + slot * s->dim, vecs + i * s->dim, s->dim * sizeof *vecs);
    }
    return 0;
}

/* ----------------------------------------------------------------- search */
/* The smallest nprobe whose calibrated recall reaches min_recall, interpolated
 * linearly between the two ladder points around it (recall grows concavely
 * with nprobe, so the line under-estimates it: the pick errs on the safe
 * side, by less than the ladder's steps would). */
static uint32_t nprobe_for(const qv_recall_point *pts, uint32_t n, float min_recall)
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

/* --------------------------------------------------------- calibration */
/* Exact top-11 of a few of the collection's own vectors, accumulated chunk by
 * chunk while the index is filled; then recall@10 (each query's own id left
 * out) for a ladder of nprobe values. */
typedef struct calib {
    qv_metric m; /* L2 or IP (cosine vectors are unit length) */
    uint32_t dim;
    size_t nq;
    float *qs;
    int64_t *qid;
    float *bs;   /* nq*11 best scores so far */
    int64_t *bl; /* nq*11 their ids (-1 empty) */
    int rc;
} calib;

#define CAL_K 11

static int better(qv_metric m, float a, float b) { return m == QV_METRIC_L2 ? a < b : a > b; }

static int calib_init(calib *cal, qv_coll *c, const sample *s)
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
static size_t hold_out(sample *s, size_t want)
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

static void calib_free(calib *cal)
{
    free(cal->qs);
    free(cal->qid);
    free(cal->bs);
    free(cal->bl);
}

/* Merges the exact top-11 of the queries within one chunk. */
static int calib_chunk(calib *cal, size_t n, const int64_t *ids, const float *vecs)
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

static double recall_at10(const int64_t *got, const int64_t *truth, size_t nq)
{
    size_t hit = 0, want = 0;
    for (size_t i = 0; i < nq; i++)
        for (size_t b = 0; b < 10; b++) {
            if (truth[i * 10 + b] < 0) continue;
            want++;
            for (size_t a = 0; a < 10; a++)
                if (got[i * 10 + a] == truth[i * 10 + b]) {
                    hit++;
                    break;
                }
        }
    return want ? (double)hit / (double)want : 1.0;
}

/* Ladder of nprobe values against the exact top-10s gathered in cal: the
 * pool is a uniform sample of the collection, each item searched with its own
 * id left out, which is what a query from the same distribution as the data
 * meets (a held-out item). Queries from far outside it (a rare word against a
 * collection of frequent ones) need more probes: they ask for a higher
 * min_recall. */
static int calibrate(qv_coll *c, qv_index *ix, const calib *cal, const atomic_int *cancel,
                     qv_recall_point *pts, uint32_t *npts, uint32_t *def_nprobe)
{
    (void)c;
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
        if ((rc = qv_index_search(ix, nq, qs, kk, np, sc, lb))) goto out;
        for (size_t i = 0; i < nq; i++) {
            size_t o = 0;
            for (size_t j = 0; j < kk && o < 10; j++)
                if (lb[i * kk + j] != qid[i]) got[i * 10 + o++] = lb[i * kk + j];
            while (o < 10) got[i * 10 + o++] = -2;
        }
        double r = recall_at10(got, truth, nq);
        pts[*npts].nprobe = np;
        pts[*npts].recall = (float)r;
        (*npts)++;
        if (r >= 0.9995 || np >= p->nlist) break;
    }
    *def_nprobe = nprobe_for(pts, *npts, DEFAULT_MIN_RECALL);
    rc = 0;
out:
    free(sc);
    free(lb);
    free(truth);
    free(got);
    return rc;
}

/* ----------------------------------------------------------------- builds */
/* Resolves spec (AUTO, nlist 0) for n items. Returns 0 or QV_INVALID with a
 * message naming the field. */
static int resolve_params(const qv_db *db, const qv_coll_config *cfg, const qv_index_params *spec,
                          uint64_t n, qv_index_params *out, char *err, size_t errlen)
{
    *out = *spec;
    size_t auto_min = db->opts.auto_ivf_min;
    if (out->kind == QV_KIND_AUTO) {
        if (n < auto_min) {
            memset(out, 0, sizeof *out);
            out->kind = QV_KIND_FLAT;
            return 0;
        }
        /* measured on glove-100 (README "Indexes"): IVF-Flat is the fastest
         * at recall@10 0.95 up to 50k items, fast-scan PQ with refine from
         * 100k on (1.19x single, 1.11x batched at 100k; 1.20x and 1.37x at
         * 331k) */
        out->kind = n >= AUTO_PQ_FS_MIN ? QV_KIND_IVF_PQ_FS : QV_KIND_IVF_FLAT;
    }
    if (out->kind == QV_KIND_FLAT) {
        out->nlist = out->pq_m = out->pq_nbits = out->refine = 0;
        return 0;
    }
    if (out->nlist == 0) out->nlist = qv_auto_nlist(n);
    out->hnsw_coarse = out->nlist >= db->opts.hnsw_coarse_min;
    if (out->kind == QV_KIND_IVF_PQ_FS) {
        if (out->pq_nbits == 0) out->pq_nbits = 4;
        if (out->refine == 0) out->refine = QV_PQ_FS_DEFAULT_REFINE;
        if (out->pq_m == 0) {
            /* 2 floats per 4-bit sub-code (glove-100: 50, as FAISS's PQ50x4fs) */
            out->pq_m = 1;
            for (uint32_t m = cfg->dim / 2; m >= 1; m--)
                if (cfg->dim % m == 0 && m <= 256) {
                    out->pq_m = m;
                    break;
                }
        }
    }
    if (out->kind == QV_KIND_IVF_PQ) {
        if (out->pq_nbits == 0) out->pq_nbits = 8;
        if (out->pq_m == 0) {
            /* largest divisor of dim giving sub-vectors of at least 2 floats */
            out->pq_m = 1;
            for (uint32_t m = cfg->dim / 2; m >= 1; m--)
                if (cfg->dim % m == 0 && m <= 64) {
                    out->pq_m = m;
                    break;
                }
        }
    }
    int rc = qv_index_params_check(cfg->dim, out, err, errlen);
    if (rc) return rc;
    if (n < out->nlist) {
        snprintf(err, errlen, "index.nlist %u is larger than the %llu items to train on",
                 out->nlist, (unsigned long long)n);
        return QV_INVALID;
    }
    if (out->kind == QV_KIND_IVF_PQ && n < (1ULL << out->pq_nbits)) {
        snprintf(err, errlen, "index.pq_nbits %u needs at least %llu items to train on, have %llu",
                 out->pq_nbits, 1ULL << out->pq_nbits, (unsigned long long)n);
        return QV_INVALID;
    }
    return 0;
}

typedef struct adder {
    qv_index *ix;
    calib *cal;
} adder;

static int add_chunk(void *ctx, size_t n, const int64_t *ids, const float *vecs)
{
    adder *a = ctx;
    int rc = qv_index_add(a->ix, n, ids, vecs);
    if (!rc && a->cal) rc = calib_chunk(a->cal, n, ids, vecs);
    return rc;
}

/* Builds a new index with params p over the items of c as txn sees them
 * (n of them): for IVF kinds sample, train, add (gathering exact neighbours
 * of the calibration queries on the way), calibrate; for flat just add.
 * Memory beyond the index: one chunk and the training sample. */
static int build_index(qv_coll *c, rebuild *rb, MDB_txn *txn, uint64_t n,
                       const qv_index_params *p, qv_index **out, qv_ixfile_meta *meta)
{
    qv_index *ix = NULL;
    int rc = qv_index_new(c->cfg.dim, c->cfg.metric, p, &ix);
    if (rc) return rc;
    memset(meta, 0, sizeof *meta);
    meta->coll_id = c->cfg.id;
    snprintf(meta->name, sizeof meta->name, "%s", c->cfg.name);
    meta->dim = c->cfg.dim;
    meta->metric = c->cfg.metric;
    meta->params = *qv_index_get_params(ix);
    meta->trained_for = n;
    meta->nprobe = 1;
    uint32_t dim = c->cfg.dim;
    int ivf = p->kind != QV_KIND_FLAT;
    sample smp = {.dim = dim, .rng = 12345};
    calib cal;
    memset(&cal, 0, sizeof cal);
    if (ivf) {
        smp.cap = (size_t)p->nlist * TRAIN_MAX_PER_LIST;
        if (p->kind == QV_KIND_IVF_PQ && smp.cap < ((size_t)TRAIN_MAX_PER_LIST << p->pq_nbits))
            smp.cap = (size_t)TRAIN_MAX_PER_LIST << p->pq_nbits;
        if (smp.cap < 10000) smp.cap = 10000;
        if (smp.cap > n) smp.cap = n ? n : 1;
        smp.ids = malloc(smp.cap * sizeof *smp.ids);
        smp.vecs = malloc(smp.cap * dim * sizeof *smp.vecs);
        if (!smp.ids || !smp.vecs) {
            rc = QV_NOMEM;
            goto out;
        }
        if ((rc = scan_items(c, txn, rb, "sampling", n, sample_chunk, &smp))) goto out;
        if (smp.n < p->nlist) {
            rc = QV_INVALID;
            goto out;
        }
        set_phase(c, rb, "training", 0, smp.n);
        if (rb) {
            rb->train_total = smp.n;
            rb->last_tick = 0;
            qv_index_cancel_hook(training_tick, rb);
        }
        /* The calibration items are left out of training: the quantizer
         * never saw them, as it never sees the queries (trained on them, the
         * table promised 0.95 and glove-100's held-out words got 0.87) */
        size_t held = hold_out(&smp, CALIB_POOL);
        if (smp.n - held < p->nlist || smp.n - held < (size_t)TRAIN_MIN_PER_LIST * p->nlist / 2)
            held = 0; /* too few items to spare them: train on all */
        rc = qv_index_train(ix, smp.n - held, smp.vecs + held * dim);
        qv_index_cancel_hook(NULL, NULL);
        if (rc) goto out;
        set_phase(c, rb, "training", smp.n, smp.n);
        if ((rc = calib_init(&cal, c, &smp))) goto out;
        if ((rc = qv_index_reserve(ix, n, smp.n, smp.vecs))) goto out;
        free(smp.vecs);
        smp.vecs = NULL;
    }
    adder a = {ix, ivf ? &cal : NULL};
    if ((rc = scan_items(c, txn, rb, "adding", n, add_chunk, &a))) goto out;
    if ((rc = qv_index_compact(ix))) goto out;
    if (ivf) {
        if (rb && atomic_load(&rb->cancel)) {
            rc = QV_CANCELLED;
            goto out;
        }
        if ((rc = calibrate(c, ix, &cal, rb ? &rb->cancel : NULL, meta->recall,
                            &meta->n_recall, &meta->nprobe)))
            goto out;
        qv_index_set_nprobe(ix, meta->nprobe);
    }
out:
    calib_free(&cal);
    free(smp.ids);
    free(smp.vecs);
    if (rc) qv_index_free(ix);
    else *out = ix;
    return rc;
}

/* Installs a freshly built index (caller holds the write lock). */
static void install_index(qv_coll *c, qv_index *ix, const qv_ixfile_meta *meta, uint64_t seq)
{
    qv_index_free(c->index);
    c->index = ix;
    c->index_seq = seq;
    c->trained_for = meta->trained_for;
    c->deleted_since = 0;
    atomic_store(&c->index_stale, 0); /* built from LMDB up to seq */
    c->nprobe = meta->nprobe ? meta->nprobe : 1;
    c->n_recall = meta->n_recall;
    memcpy(c->recall, meta->recall, sizeof c->recall);
}

static void submit_prune(qv_db *db, qv_coll *c, uint64_t upto);

static int do_rebuild(rebuild *rb, char *msg, size_t msglen)
{
    qv_coll *c = rb->c;
    qv_db *db = c->db;
    MDB_txn *txn = NULL;
    qv_coll_stats s;
    /* The serving index lives beside the new one until the swap: give back
     * the slack its arrays grew while items arrived (a flat index filled by
     * an import holds up to twice its vectors) before building the next. */
    pthread_rwlock_wrlock(&c->ilock);
    qv_index_compact(c->index);
    pthread_rwlock_unlock(&c->ilock);
    /* one snapshot for sampling, adding and calibration */
    int rc = qv_store_read_begin(db->st, &txn);
    if (!rc) rc = qv_store_stats_get(db->st, txn, c->cfg.id, &s);
    if (rc) goto out;
    qv_index_params p;
    if ((rc = resolve_params(db, &c->cfg, &rb->req.spec, s.count, &p, msg, msglen))) goto out;
    rb->params = p;
    uint64_t covered = s.last_seq;
    qv_index *ix = NULL;
    qv_ixfile_meta meta;
    rc = build_index(c, rb, txn, s.count, &p, &ix, &meta);
    qv_store_abort(txn);
    txn = NULL;
    if (rc) goto out;
    /* the file is written now but takes effect only with the swap: a cancel
     * until then leaves the old index in force, also after a restart */
    char tmp[4300] = "";
    uint64_t file_seq = covered;
    if (!db->opts.no_index_files && p.kind != QV_KIND_FLAT) {
        set_phase(c, rb, "saving", 0, 1);
        meta.covered_seq = file_seq;
        int src = qv_ixfile_write_temp(db->ixdir, &meta, ix, tmp, sizeof tmp);
        if (src) qv_warn("collection %s: index file not saved (%s); a restart will rebuild it",
                         c->cfg.name, qv_strerror(src));
        set_phase(c, rb, "saving", 1, 1);
    }
    /* catch up with the writes that arrived meanwhile, off the lock while the
     * backlog is large, then the rest under the write lock, and swap */
    for (int round = 0; round < 8; round++) {
        if (atomic_load(&rb->cancel)) {
            rc = QV_CANCELLED;
            break;
        }
        uint64_t n = 0;
        if ((rc = qv_store_read_begin(db->st, &txn))) break;
        set_phase(c, rb, "catching_up", 0, atomic_load(&c->last_seq) - covered);
        rc = replay_log(c, txn, ix, covered, &covered, &n);
        qv_store_abort(txn);
        txn = NULL;
        if (rc || n < CATCHUP_SMALL) break;
    }
    if (rc || atomic_load(&rb->cancel) || atomic_load(&c->dropped)) {
        qv_index_free(ix);
        if (tmp[0]) unlink(tmp);
        rc = rc ? rc : QV_CANCELLED;
        goto out;
    }
    /* point of no return. A requested spec becomes the collection's, durably
     * and before the new file: a crash in between finds a file of another
     * kind than the spec and rebuilds from LMDB, never serves a mix. */
    if (!rb->automatic) {
        qv_index_params cur = coll_spec(c);
        if (memcmp(&rb->req.spec, &cur, sizeof cur) != 0) {
            qv_write w;
            memset(&w, 0, sizeof w);
            w.kind = (qv_write_kind)QV_W_SPEC;
            w.coll = c;
            w.config.spec = rb->req.spec;
            if ((rc = qv_db_write_sync(db, &w))) {
                qv_index_free(ix);
                if (tmp[0]) unlink(tmp);
                snprintf(msg, msglen, "cannot store the new index spec: %s", qv_strerror(rc));
                goto out;
            }
        }
        pthread_mutex_lock(&c->rmu);
        c->cfg.spec = rb->req.spec;
        pthread_mutex_unlock(&c->rmu);
    }
    /* the new file replaces the old one (a flat index has none: an older IVF
     * file must not come back at the next start) */
    int saved = 0;
    if (tmp[0]) saved = qv_ixfile_commit(db->ixdir, c->cfg.id, tmp) == 0;
    else if (p.kind == QV_KIND_FLAT) qv_ixfile_remove(db->ixdir, c->cfg.id);
    /* dropped meanwhile: its Drop sets the flag, then removes the file; seen
     * here or not, one of the two removes what was just renamed */
    if (saved && atomic_load(&c->dropped)) qv_ixfile_remove(db->ixdir, c->cfg.id);
    pthread_rwlock_wrlock(&c->ilock);
    if (!(rc = qv_store_read_begin(db->st, &txn))) {
        rc = replay_log(c, txn, ix, covered, &covered, NULL);
        qv_store_abort(txn);
        txn = NULL;
    }
    if (!rc) {
        /* the writer applies only what is newer than index_seq */
        if (covered < c->index_seq) covered = c->index_seq;
        install_index(c, ix, &meta, covered);
    }
    pthread_rwlock_unlock(&c->ilock);
    if (rc) {
        qv_index_free(ix);
        goto out;
    }
    if (saved) submit_prune(db, c, file_seq);
    float reached = 1.0f;
    for (uint32_t i = 0; i < meta.n_recall; i++)
        if (meta.recall[i].nprobe == meta.nprobe) reached = meta.recall[i].recall;
    qv_info("collection %s: %s index built (nlist %u, default nprobe %u: calibrated recall@10 %.3f, "
            "%llu items, %.1f s)", c->cfg.name, qv_index_kind_name(p.kind), p.nlist, meta.nprobe,
            reached, (unsigned long long)meta.trained_for, elapsed_since(&rb->t0));
out:
    qv_store_abort(txn);
    return rc;
}

static void maybe_auto_rebuild(qv_coll *c);

static int launch_rebuild(qv_coll *c, rebuild *rb, int notify);

static void *rebuild_main(void *arg)
{
    rebuild *rb = arg;
    qv_coll *c = rb->c;
    qv_db *db = c->db;
    char msg[256] = "";
    /* at most max_rebuilds build at once: the others wait, phase "queued" */
    int rc = 0;
    pthread_mutex_lock(&db->rbmu);
    if (db->building >= (int)db->opts.max_rebuilds) {
        pthread_mutex_unlock(&db->rbmu);
        set_phase(c, rb, "queued", 0, 0);
        pthread_mutex_lock(&db->rbmu);
        while (db->building >= (int)db->opts.max_rebuilds && !atomic_load(&rb->cancel) &&
               !atomic_load(&db->closing)) {
            struct timespec t;
            clock_gettime(CLOCK_REALTIME, &t);
            t.tv_nsec += 100 * 1000000L; /* cancels are flags: look now and then */
            if (t.tv_nsec >= 1000000000L) t.tv_sec++, t.tv_nsec -= 1000000000L;
            pthread_cond_timedwait(&db->rbcv, &db->rbmu, &t);
        }
        if (atomic_load(&rb->cancel) || atomic_load(&db->closing)) rc = QV_CANCELLED;
    }
    if (!rc) db->building++;
    pthread_mutex_unlock(&db->rbmu);
    int counted = !rc;
    if (!rc) rc = do_rebuild(rb, msg, sizeof msg);
    if (counted) {
        pthread_mutex_lock(&db->rbmu);
        db->building--;
        pthread_cond_broadcast(&db->rbcv);
        pthread_mutex_unlock(&db->rbmu);
    }
    if (rc && !msg[0]) snprintf(msg, sizeof msg, "%s", qv_strerror(rc));
    if (rc && rc != QV_CANCELLED)
        qv_error("collection %s: index rebuild failed: %s", c->cfg.name, msg);
    else if (rc == QV_CANCELLED)
        qv_info("collection %s: index rebuild cancelled", c->cfg.name);
    if (!rc) set_phase(c, rb, "done", 1, 1);
    malloc_trim(0); /* give the build's scratch memory back to the system */
    qv_store_release_pages(db->st);
    pthread_mutex_lock(&c->rmu);
    /* a requested rebuild waiting for this (cancelled automatic) one takes
     * its place at once: no other can start in between */
    rebuild *next = rb->next;
    c->rb = next;
    if (next) {
        snprintf(c->phase, sizeof c->phase, "sampling");
        c->done = c->total = 0;
    }
    pthread_mutex_unlock(&c->rmu);
    if (rb->req.finished) rb->req.finished(rb->req.ctx, rc, msg);
    if (next) launch_rebuild(c, next, 1);
    /* writes that arrived during the build may already call for the next one */
    if (!rc) maybe_auto_rebuild(c);
    qv_coll_release(c);
    free(rb);
    pthread_mutex_lock(&db->rbmu);
    db->nrebuilds--;
    pthread_cond_broadcast(&db->rbcv);
    pthread_mutex_unlock(&db->rbmu);
    return NULL;
}

/* Start the thread of rb, already c->rb (set under rmu by the caller).
 * Returns 0 or QV_NOMEM (then c->rb is cleared, rb freed and, with notify,
 * its caller told through req.finished). */
static int launch_rebuild(qv_coll *c, rebuild *rb, int notify)
{
    qv_db *db = c->db;
    coll_ref(c);
    pthread_mutex_lock(&db->rbmu);
    db->nrebuilds++;
    pthread_mutex_unlock(&db->rbmu);
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&rb->th, &a, rebuild_main, rb);
    pthread_attr_destroy(&a);
    if (!rc) return 0;
    pthread_mutex_lock(&c->rmu);
    if (c->rb == rb) c->rb = NULL;
    pthread_mutex_unlock(&c->rmu);
    pthread_mutex_lock(&db->rbmu);
    db->nrebuilds--;
    pthread_cond_broadcast(&db->rbcv);
    pthread_mutex_unlock(&db->rbmu);
    qv_coll_release(c);
    if (notify && rb->req.finished) rb->req.finished(rb->req.ctx, QV_NOMEM, "cannot start a thread");
    free(rb);
    return QV_NOMEM;
}

static int start_rebuild(qv_coll *c, const qv_rebuild_req *req, int automatic, char *err,
                         size_t errlen)
{
    qv_db *db = c->db;
    if (atomic_load(&c->dropped)) return QV_NOTFOUND;
    if (atomic_load(&db->closing)) return QV_SHUTDOWN;
    /* reject specs that cannot work before starting anything */
    qv_index_params resolved;
    qv_index_params spec = req->spec;
    if (spec.kind == QV_KIND_AUTO && !automatic) spec = coll_spec(c);
    int rc = resolve_params(db, &c->cfg, &spec, atomic_load(&c->count), &resolved, err, errlen);
    if (rc) return rc;
    rebuild *rb = calloc(1, sizeof *rb);
    if (!rb) return QV_NOMEM;
    rb->c = c;
    rb->req = *req;
    rb->req.spec = spec;
    rb->automatic = automatic;
    clock_gettime(CLOCK_MONOTONIC, &rb->t0);
    pthread_mutex_lock(&c->rmu);
    if (c->rb && c->rb->automatic && !automatic && !c->rb->next) {
        /* an operator's request wins over an automatic rebuild: cancel it;
         * this one starts as soon as it has stopped (rebuild_main) */
        c->rb->next = rb;
        atomic_store(&c->rb->cancel, 1);
        pthread_mutex_unlock(&c->rmu);
        qv_info("collection %s: requested index rebuild (%s, nlist %u) cancels the automatic one",
                c->cfg.name, qv_index_kind_name(resolved.kind), resolved.nlist);
        return 0;
    }
    if (c->rb) {
        snprintf(err, errlen, "collection \"%s\" already has %s rebuild running (phase %s, %llu/%llu)",
                 c->cfg.name, c->rb->automatic ? "an automatic" : "a requested", c->phase,
                 (unsigned long long)c->done, (unsigned long long)c->total);
        pthread_mutex_unlock(&c->rmu);
        free(rb);
        return QV_BUSY;
    }
    c->rb = rb;
    snprintf(c->phase, sizeof c->phase, "sampling");
    c->done = c->total = 0;
    pthread_mutex_unlock(&c->rmu);
    rc = launch_rebuild(c, rb, 0);
    if (!rc)
        qv_info("collection %s: %s index rebuild started (%s, nlist %u)", c->cfg.name,
                automatic ? "automatic" : "requested", qv_index_kind_name(resolved.kind),
                resolved.nlist);
    return rc;
}

int qv_coll_rebuild(qv_coll *c, const qv_rebuild_req *req, char *err, size_t errlen)
{
    return start_rebuild(c, req, 0, err, errlen);
}

void qv_coll_rebuild_cancel(qv_coll *c, void *ctx)
{
    pthread_mutex_lock(&c->rmu);
    if (c->rb && c->rb->req.ctx == ctx) atomic_store(&c->rb->cancel, 1);
    /* still waiting for the automatic one to stop: it will stop at once */
    if (c->rb && c->rb->next && c->rb->next->req.ctx == ctx) atomic_store(&c->rb->next->cancel, 1);
    pthread_mutex_unlock(&c->rmu);
}

/* After a commit: start a rebuild when the collection outgrew its index. */
static void maybe_auto_rebuild(qv_coll *c)
{
    qv_db *db = c->db;
    int stale = atomic_load(&c->index_stale);
    if ((db->opts.no_auto_rebuild && !stale) || atomic_load(&c->dropped)) return;
    pthread_mutex_lock(&c->rmu);
    int running = c->rb != NULL;
    pthread_mutex_unlock(&c->rmu);
    if (running) return;
    uint64_t n = atomic_load(&c->count);
    size_t auto_min = db->opts.auto_ivf_min;
    pthread_rwlock_rdlock(&c->ilock);
    qv_index_kind kind = qv_index_get_params(c->index)->kind;
    uint64_t trained_for = c->trained_for, deleted = c->deleted_since;
    pthread_rwlock_unlock(&c->ilock);
    qv_index_params cur = coll_spec(c);
    const qv_index_params *spec = &cur;
    int want = 0;
    if (kind == QV_KIND_FLAT) {
        if (spec->kind == QV_KIND_AUTO) want = n >= auto_min;
        else if (spec->kind != QV_KIND_FLAT)
            want = n >= (uint64_t)(spec->nlist ? spec->nlist : qv_auto_nlist(n)) * TRAIN_MIN_PER_LIST &&
                   n >= 1000;
    } else {
        /* grown REBUILD_GROWTH x past training (the data drifts: GloVe at 50k
         * on an index trained at 20k loses 3 points of recall), or half of
         * what it was trained on deleted */
        want = n >= REBUILD_GROWTH * trained_for || (trained_for > 0 && deleted * 2 > trained_for);
    }
    if (stale) {
        want = 1;
        qv_info("collection %s: rebuilding the index from LMDB after a failed update",
                c->cfg.name);
    }
    if (!want) return;
    qv_rebuild_req req = {.spec = *spec};
    char err[256];
    int rc = start_rebuild(c, &req, 1, err, sizeof err);
    if (rc && rc != QV_BUSY && rc != QV_SHUTDOWN)
        qv_warn("collection %s: automatic rebuild not started: %s", c->cfg.name,
                rc == QV_INVALID ? err : qv_strerror(rc));
}

/* ----------------------------------------------------------------- writer */
static int cmp_i64_idx(const void *a, const void *b, void *ids)
{
    const uint64_t *v = ids;
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    if (v[x] != v[y]) return v[x] < v[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

/* Applies one write op inside txn (a nested txn of the batch). */
/* Does w's collection still exist in txn? A Drop earlier in the same group
 * commit is only in the transaction, not yet in the registry. */
static int coll_alive_in(qv_db *db, MDB_txn *txn, const qv_coll *c)
{
    qv_coll_config cfg;
    if (atomic_load(&c->dropped)) return 0;
    return qv_store_coll_get(db->st, txn, c->cfg.name, &cfg) == 0 && cfg.id == c->cfg.id;
}

static int apply_op(qv_db *db, MDB_txn *txn, qv_write *w, char *skip)
{
    int rc = 0;
    switch ((int)w->kind) {
    case QV_W_CREATE:
        w->config.created = (uint64_t)time(NULL);
        return qv_store_coll_create(db->st, txn, &w->config);
    case QV_W_DROP: {
        uint64_t n = 0;
        rc = qv_store_coll_drop(db->st, txn, w->config.name, &n);
        w->affected = n;
        return rc;
    }
    case QV_W_PRUNE: {
        size_t n = 0;
        if (!coll_alive_in(db, txn, w->coll)) return QV_NOTFOUND;
        return qv_store_tombstones_prune(db->st, txn, w->coll->cfg.id, w->seq_to, &n);
    }
    case QV_W_SPEC: {
        if (!coll_alive_in(db, txn, w->coll)) return QV_NOTFOUND;
        qv_coll_config cfg = w->coll->cfg; /* name, id, dim, metric never change */
        cfg.spec = w->config.spec;
        return qv_store_coll_update(db->st, txn, &cfg);
    }
    case QV_W_UPSERT:
    case QV_W_DELETE:
        break;
    default:
        return QV_INVALID;
    }
    qv_coll *c = w->coll;
    /* a Drop of this collection earlier in this group commit wins: the write
     * fails NOT_FOUND instead of leaving rows under a dropped id */
    if (!coll_alive_in(db, txn, c)) return QV_NOTFOUND;
    uint64_t seq = c->w_seq, count = c->w_count;
    w->seq_from = seq + 1;
    w->affected = 0;
    for (size_t i = 0; i < w->n && !rc; i++) {
        if (skip && skip[i]) continue;
        if (w->kind == QV_W_UPSERT) {
            const uint8_t *a = w->attr_off ? w->attrs + w->attr_off[i] : NULL;
            size_t alen = w->attr_off ? w->attr_off[i + 1] - w->attr_off[i] : 0;
            rc = qv_store_item_put(db->st, txn, c->cfg.id, w->ids[i], ++seq, c->cfg.dim,
                                   w->vecs + i * c->cfg.dim, a, alen, &w->existed[i]);
            if (!rc && !w->existed[i]) count++;
            w->affected++;
        } else {
            rc = qv_store_item_delete(db->st, txn, c->cfg.id, w->ids[i], seq + 1);
            if (rc == QV_NOTFOUND) {
                rc = 0;
                w->existed[i] = 0;
                continue;
            }
            seq++;
            w->existed[i] = 1;
            count--;
            w->affected++;
        }
    }
    if (rc) return rc;
    w->seq_to = seq;
    if (seq != c->w_seq) {
        qv_coll_stats s = {seq, count};
        if ((rc = qv_store_stats_put(db->st, txn, c->cfg.id, &s))) return rc;
    }
    c->w_seq = seq;
    c->w_count = count;
    return 0;
}

/* After commit: make the op visible (registry, index). */
static void publish_op(qv_db *db, qv_write *w, const char *skip)
{
    if (w->kind == QV_W_CREATE) {
        qv_coll *c = coll_new(db, &w->config);
        qv_index_params fp = {.kind = QV_KIND_FLAT};
        qv_metric m = w->config.metric;
        if (!c || qv_index_new(w->config.dim, m, &fp, &c->index) || reg_add(db, c)) {
            qv_error("collection %s: created on disk but not in memory; restart quiverd",
                     w->config.name);
            w->rc = QV_NOMEM;
            qv_coll_release(c);
        }
        return;
    }
    if (w->kind == QV_W_DROP) {
        qv_coll *c = reg_remove(db, w->config.name);
        if (c) {
            atomic_store(&c->dropped, 1);
            pthread_mutex_lock(&c->rmu);
            if (c->rb) atomic_store(&c->rb->cancel, 1);
            pthread_mutex_unlock(&c->rmu);
            qv_ixfile_remove(db->ixdir, c->cfg.id);
            qv_coll_release(c);
        }
        return;
    }
    if ((int)w->kind == QV_W_PRUNE) return;
    if ((int)w->kind == QV_W_SPEC) return; /* memory was updated at the swap */
    qv_coll *c = w->coll;
    atomic_store(&c->last_seq, c->w_seq);
    atomic_store(&c->count, c->w_count);
    if (w->affected == 0) return;
    uint32_t dim = c->cfg.dim;
    pthread_rwlock_wrlock(&c->ilock);
    if (w->seq_to > c->index_seq) {
        int64_t *rm = malloc(w->n * sizeof *rm);
        size_t nrm = 0;
        int rc = rm ? 0 : QV_NOMEM;
        for (size_t i = 0; rm && i < w->n; i++)
            if ((!skip || !skip[i]) && w->existed[i]) rm[nrm++] = (int64_t)w->ids[i];
        if (!rc && nrm) rc = qv_index_remove(c->index, nrm, rm, NULL);
        if (w->kind == QV_W_DELETE) {
            c->deleted_since += nrm;
        } else if (!rc) {
            if (skip) { /* duplicates in one batch: the last one wins */
                size_t na = 0;
                float *v = malloc(w->n * dim * sizeof *v);
                if (!v) rc = QV_NOMEM;
                for (size_t i = 0; v && i < w->n; i++)
                    if (!skip[i]) {
                        rm[na] = (int64_t)w->ids[i];
                        memcpy(v + na * dim, w->vecs + i * dim, dim * sizeof *v);
                        na++;
                    }
                if (v) rc = qv_index_add(c->index, na, rm, v);
                free(v);
            } else {
                for (size_t i = 0; i < w->n; i++) rm[i] = (int64_t)w->ids[i];
                rc = qv_index_add(c->index, w->n, rm, w->vecs);
            }
        }
        if (!rc && db->test_fail_update && ++db->updates == db->test_fail_update) rc = QV_NOMEM;
        if (rc) {
            /* committed but not searchable: rebuild from LMDB, whatever
             * --no-auto-rebuild says (maybe_auto_rebuild after the reply) */
            qv_error("collection %s: index update failed (%s); searches miss writes up to seq "
                     "%llu until the rebuild from LMDB that starts now", c->cfg.name,
                     qv_strerror(rc), (unsigned long long)w->seq_to);
            atomic_store(&c->index_stale, 1);
        }
        c->index_seq = w->seq_to;
        free(rm);
    }
    pthread_rwlock_unlock(&c->ilock);
}

/* Marks all but the last occurrence of each id (NULL when all are unique). */
static char *dup_skips(const qv_write *w)
{
    if (w->kind != QV_W_UPSERT || w->n < 2) return NULL;
    size_t *ord = malloc(w->n * sizeof *ord);
    if (!ord) return NULL;
    for (size_t i = 0; i < w->n; i++) ord[i] = i;
    qsort_r(ord, w->n, sizeof *ord, cmp_i64_idx, (void *)w->ids);
    char *skip = NULL;
    for (size_t i = 0; i + 1 < w->n; i++)
        if (w->ids[ord[i]] == w->ids[ord[i + 1]]) {
            if (!skip && !(skip = calloc(w->n, 1))) break;
            skip[ord[i]] = 1; /* ord is stable by position: ord[i] is earlier */
        }
    free(ord);
    return skip;
}

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void enqueue_locked(qv_db *db, qv_write *w)
{
    w->next = NULL;
    if (db->qtail) db->qtail->next = w;
    else db->qhead = w;
    db->qtail = w;
    db->queued += w->bytes;
}

/* Room for w in the queue? One write bigger than the whole budget still goes
 * alone, when nothing else is queued. */
static int has_room_locked(const qv_db *db, const qv_write *w)
{
    return db->queued == 0 || db->queued + w->bytes <= db->opts.max_queued_bytes;
}

/* Admit the waiting writes that fit now (in order), fail those whose deadline
 * has passed; returns the failed ones (linked) to complete outside the lock. */
static qv_write *admit_waiting_locked(qv_db *db)
{
    qv_write *failed = NULL, **ftail = &failed;
    int64_t now = db->whead ? now_ms() : 0;
    while (db->whead) {
        qv_write *w = db->whead;
        if (has_room_locked(db, w)) {
            db->whead = w->next;
            enqueue_locked(db, w);
            pthread_cond_signal(&db->qcv);
            continue;
        }
        /* the head waits for room; later ones past their deadline give up */
        break;
    }
    qv_write **pp = &db->whead, *last = NULL;
    while (*pp) {
        qv_write *w = *pp;
        if (w->deadline_ms && w->deadline_ms <= now) {
            *pp = w->next;
            w->next = NULL;
            *ftail = w;
            ftail = &w->next;
        } else {
            last = w;
            pp = &w->next;
        }
    }
    db->wtail = last;
    return failed;
}

static void fail_waiting(qv_write *failed)
{
    while (failed) {
        qv_write *w = failed;
        failed = w->next;
        w->next = NULL;
        w->rc = QV_OVERLOAD;
        if (w->done) w->done(w);
    }
}

/* After a batch: its bytes leave the budget; waiting writes move up; the
 * server hears that there is room again (it takes write calls again). */
static void release_queued(qv_db *db, size_t bytes)
{
    pthread_mutex_lock(&db->qmu);
    db->queued = db->queued > bytes ? db->queued - bytes : 0;
    qv_write *failed = admit_waiting_locked(db);
    int room = !db->whead && db->queued < db->opts.max_queued_bytes;
    void (*cb)(void *) = db->room_cb;
    void *ctx = db->room_ctx;
    pthread_mutex_unlock(&db->qmu);
    fail_waiting(failed);
    if (room && cb) cb(ctx);
}

int qv_db_write_pressure(qv_db *db)
{
    pthread_mutex_lock(&db->qmu);
    int full = db->whead != NULL || db->queued >= db->opts.max_queued_bytes;
    pthread_mutex_unlock(&db->qmu);
    return full;
}

void qv_db_on_room(qv_db *db, void (*cb)(void *ctx), void *ctx)
{
    pthread_mutex_lock(&db->qmu);
    db->room_cb = cb;
    db->room_ctx = ctx;
    pthread_mutex_unlock(&db->qmu);
}

static void run_batch(qv_db *db, qv_write *batch)
{
    MDB_txn *txn = NULL;
    int rc = qv_store_write_begin(db->st, NULL, &txn);
    size_t nops = 0;
    for (qv_write *w = batch; w; w = w->next) nops++;
    char **skips = calloc(nops ? nops : 1, sizeof *skips);
    size_t i = 0;
    for (qv_write *w = batch; w; w = w->next, i++) {
        if (rc) {
            w->rc = rc;
            continue;
        }
        if (w->kind == QV_W_UPSERT || w->kind == QV_W_DELETE) {
            w->existed = calloc(w->n ? w->n : 1, sizeof *w->existed);
            if (!w->existed) {
                w->rc = QV_NOMEM;
                continue;
            }
            if (skips) skips[i] = dup_skips(w);
        }
        qv_coll *c = w->coll;
        uint64_t seq0 = c ? c->w_seq : 0, cnt0 = c ? c->w_count : 0;
        MDB_txn *child = NULL;
        w->rc = qv_store_write_begin(db->st, txn, &child);
        if (!w->rc) w->rc = apply_op(db, child, w, skips ? skips[i] : NULL);
        if (!w->rc) w->rc = qv_store_commit(child);
        else qv_store_abort(child);
        if (w->rc && c) { /* the op wrote nothing: roll its counters back */
            c->w_seq = seq0;
            c->w_count = cnt0;
        }
    }
    if (!rc) rc = qv_store_commit(txn);
    /* the B-tree pages the writer looked up stay mapped: every 64 MiB of
     * writes, let them go (they are page cache, not process memory) */
    for (qv_write *w = batch; w; w = w->next)
        if (w->kind == QV_W_UPSERT && w->coll)
            db->written_since_release += w->n * ((size_t)w->coll->cfg.dim * 4 + 64);
    if (db->written_since_release > ((size_t)64 << 20)) {
        qv_store_release_pages(db->st);
        db->written_since_release = 0;
    }
    i = 0;
    for (qv_write *w = batch; w; w = w->next, i++) {
        if (rc && !w->rc) w->rc = rc;
        if (rc && w->coll) { /* nothing committed: back to the published state */
            w->coll->w_seq = atomic_load(&w->coll->last_seq);
            w->coll->w_count = atomic_load(&w->coll->count);
        }
    }
    i = 0;
    for (qv_write *w = batch; w; w = w->next, i++)
        if (!w->rc) publish_op(db, w, skips ? skips[i] : NULL);
    /* replies go out only now: committed and searchable */
    size_t freed = 0;
    for (qv_write *w = batch; w; w = w->next) freed += w->bytes;
    i = 0;
    qv_write *next;
    for (qv_write *w = batch; w; w = next, i++) {
        next = w->next;
        qv_coll *c = w->coll;
        int check = !w->rc && c && (w->kind == QV_W_UPSERT || w->kind == QV_W_DELETE);
        if (c && check) coll_ref(c);
        free(w->existed);
        w->existed = NULL;
        if (skips) free(skips[i]);
        if (w->done) w->done(w);
        if (check) {
            maybe_auto_rebuild(c);
            qv_coll_release(c);
        }
    }
    free(skips);
    if (freed) release_queued(db, freed);
}

static void *writer_main(void *arg)
{
    qv_db *db = arg;
    size_t max_items = db->opts.max_batch_items;
    for (;;) {
        pthread_mutex_lock(&db->qmu);
        while (!db->qhead && !db->stopping) {
            if (!db->whead) {
                pthread_cond_wait(&db->qcv, &db->qmu);
                continue;
            }
            /* writes wait for room: look at their deadlines now and then */
            struct timespec t;
            clock_gettime(CLOCK_REALTIME, &t);
            t.tv_nsec += 50 * 1000000L;
            if (t.tv_nsec >= 1000000000L) t.tv_sec++, t.tv_nsec -= 1000000000L;
            pthread_cond_timedwait(&db->qcv, &db->qmu, &t);
            qv_write *failed = admit_waiting_locked(db);
            if (failed) {
                pthread_mutex_unlock(&db->qmu);
                fail_waiting(failed);
                pthread_mutex_lock(&db->qmu);
            }
        }
        if (!db->qhead) {
            /* closing: writes still waiting for room are not taken */
            qv_write *w = db->whead;
            db->whead = db->wtail = NULL;
            pthread_mutex_unlock(&db->qmu);
            while (w) {
                qv_write *nx = w->next;
                w->next = NULL;
                w->rc = QV_SHUTDOWN;
                if (w->done) w->done(w);
                w = nx;
            }
            break;
        }
        /* group commit: everything queued, up to max_items items */
        qv_write *batch = db->qhead, *last = db->qhead;
        size_t items = last->n + 1;
        while (last->next && items + last->next->n <= max_items) {
            last = last->next;
            items += last->n + 1;
        }
        db->qhead = last->next;
        if (!db->qhead) db->qtail = NULL;
        last->next = NULL;
        pthread_mutex_unlock(&db->qmu);
        run_batch(db, batch);
    }
    return NULL;
}

void qv_db_submit(qv_db *db, qv_write *w)
{
    w->next = NULL;
    w->existed = NULL;
    pthread_mutex_lock(&db->qmu);
    if (db->stopping) {
        pthread_mutex_unlock(&db->qmu);
        w->rc = QV_SHUTDOWN;
        if (w->done) w->done(w);
        return;
    }
    if (!db->whead && has_room_locked(db, w)) {
        enqueue_locked(db, w);
    } else {
        /* over the budget: wait in order, no worker thread held */
        if (db->wtail) db->wtail->next = w;
        else db->whead = w;
        db->wtail = w;
    }
    pthread_cond_signal(&db->qcv);
    pthread_mutex_unlock(&db->qmu);
}

typedef struct sync_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
} sync_wait;

static void sync_done(qv_write *w)
{
    sync_wait *s = w->ctx;
    pthread_mutex_lock(&s->mu);
    s->done = 1;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

int qv_db_write_sync(qv_db *db, qv_write *w)
{
    sync_wait s = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    w->done = sync_done;
    w->ctx = &s;
    qv_db_submit(db, w);
    pthread_mutex_lock(&s.mu);
    while (!s.done) pthread_cond_wait(&s.cv, &s.mu);
    pthread_mutex_unlock(&s.mu);
    return w->rc;
}

static void prune_done(qv_write *w)
{
    qv_coll_release(w->coll);
    free(w);
}

static void submit_prune(qv_db *db, qv_coll *c, uint64_t upto)
{
    qv_write *w = calloc(1, sizeof *w);
    if (!w) return;
    w->kind = (qv_write_kind)QV_W_PRUNE;
    w->coll = c;
    coll_ref(c);
    w->seq_to = upto;
    w->done = prune_done;
    qv_db_submit(db, w);
}

/* --------------------------------------------------------------- start-up */
static int open_coll(void *ctx, const qv_coll_config *cfg)
{
    qv_db *db = ctx;
    qv_coll *c = coll_new(db, cfg);
    if (!c) return QV_NOMEM;
    MDB_txn *txn = NULL;
    qv_coll_stats s = {0, 0};
    int rc = qv_store_read_begin(db->st, &txn);
    if (!rc) rc = qv_store_stats_get(db->st, txn, cfg->id, &s);
    if (rc) goto fail;
    c->w_seq = s.last_seq;
    c->w_count = s.count;
    atomic_store(&c->last_seq, s.last_seq);
    atomic_store(&c->count, s.count);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    qv_ixfile_meta meta;
    qv_index *ix = NULL;
    char why[256] = "";
    int frc = db->opts.no_index_files ? QV_NOTFOUND
                                      : qv_ixfile_load(db->ixdir, cfg, &meta, &ix, why, sizeof why);
    /* The spec is committed before a requested build's file is renamed into
     * place: a crash in between leaves the old file under the new spec. Any
     * parameter the spec sets must match the file's, not only the kind. */
    const qv_index_params *sp = &cfg->spec, *fp = &meta.params;
    if (frc == 0 && sp->kind != QV_KIND_AUTO &&
        (fp->kind != sp->kind || (sp->nlist && fp->nlist != sp->nlist) ||
         (sp->pq_m && fp->pq_m != sp->pq_m) ||
         (sp->pq_nbits && sp->kind == QV_KIND_IVF_PQ && fp->pq_nbits != sp->pq_nbits) ||
         (sp->kind != QV_KIND_IVF_FLAT && sp->refine > 1 && fp->refine != sp->refine))) {
        snprintf(why, sizeof why,
                 "it holds %s nlist %u pq_m %u refine %u but the collection's spec is %s nlist %u "
                 "pq_m %u refine %u", qv_index_kind_name(fp->kind), fp->nlist, fp->pq_m, fp->refine,
                 qv_index_kind_name(sp->kind), sp->nlist, sp->pq_m, sp->refine);
        qv_index_free(ix);
        ix = NULL;
        frc = QV_CORRUPT;
    }
    if (frc == 0 && meta.covered_seq > s.last_seq) {
        snprintf(why, sizeof why, "it covers seq %llu but the store ends at %llu",
                 (unsigned long long)meta.covered_seq, (unsigned long long)s.last_seq);
        qv_index_free(ix);
        ix = NULL;
        frc = QV_CORRUPT;
    }
    if (frc == 0) {
        uint64_t last = meta.covered_seq, n = 0;
        rc = replay_log(c, txn, ix, meta.covered_seq, &last, &n);
        if (rc) {
            qv_index_free(ix);
            goto fail;
        }
        install_index(c, ix, &meta, s.last_seq);
        qv_info("collection %s: loaded %s index file (%llu items, replayed %llu writes, %.2f s)",
                cfg->name, qv_index_kind_name(meta.params.kind),
                (unsigned long long)qv_index_count(ix), (unsigned long long)n, elapsed_since(&t0));
    } else {
        if (frc != QV_NOTFOUND)
            qv_warn("collection %s: index file not used: %s; rebuilding from LMDB", cfg->name,
                    why[0] ? why : qv_strerror(frc));
        /* exact index from LMDB now; an IVF one follows in the background */
        qv_index_params fp = {.kind = QV_KIND_FLAT};
        if ((rc = build_index(c, NULL, txn, s.count, &fp, &ix, &meta))) goto fail;
        install_index(c, ix, &meta, s.last_seq);
        c->trained_for = 0;
    }
    qv_store_abort(txn);
    return reg_add(db, c);
fail:
    qv_error("collection %s: cannot load: %s", cfg->name, qv_strerror(rc));
    qv_store_abort(txn);
    qv_coll_release(c);
    return rc;
}

/* Temp files of index saves interrupted by a crash. */
static void remove_stale_temps(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strstr(e->d_name, ".qvi.tmp.")) continue;
        char p[8192];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (unlink(p) == 0) qv_info("removed %s, left by an interrupted index save", p);
    }
    closedir(d);
}

/* Index files of collections that no longer exist (a Drop during a build's
 * save, or a crash between a Drop's commit and the file's removal). */
static void remove_orphan_files(qv_db *db)
{
    DIR *d = opendir(db->ixdir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end;
        unsigned long id = strtoul(e->d_name, &end, 10);
        if (end == e->d_name || strcmp(end, ".qvi") != 0) continue;
        int known = 0;
        for (size_t i = 0; i < db->ncolls && !known; i++) known = db->colls[i]->cfg.id == id;
        if (known) continue;
        char p[8192];
        snprintf(p, sizeof p, "%s/%s", db->ixdir, e->d_name);
        if (unlink(p) == 0)
            qv_info("removed %s: no collection has id %lu (dropped)", p, id);
    }
    closedir(d);
}

int qv_db_open(const qv_db_opts *opts, qv_db **out)
{
    *out = NULL;
    qv_db *db = calloc(1, sizeof *db);
    if (!db) return QV_NOMEM;
    db->opts = *opts;
    if (!db->opts.auto_ivf_min) db->opts.auto_ivf_min = DEFAULT_AUTO_IVF_MIN;
    if (!db->opts.hnsw_coarse_min) db->opts.hnsw_coarse_min = DEFAULT_HNSW_COARSE_MIN;
    if (!db->opts.max_queued_bytes) db->opts.max_queued_bytes = (size_t)256 << 20;
    if (!db->opts.max_rebuilds) db->opts.max_rebuilds = 1;
    const char *tf = getenv("QUIVER_TEST_FAIL_INDEX_UPDATE");
    if (tf) db->test_fail_update = strtoul(tf, NULL, 10);
    if (!db->opts.max_batch_items) db->opts.max_batch_items = DEFAULT_MAX_BATCH;
    pthread_mutex_init(&db->cmu, NULL);
    pthread_mutex_init(&db->qmu, NULL);
    pthread_cond_init(&db->qcv, NULL);
    pthread_mutex_init(&db->rbmu, NULL);
    pthread_cond_init(&db->rbcv, NULL);
    int rc = qv_store_open(&opts->store, &db->st);
    if (rc) goto fail;
    snprintf(db->ixdir, sizeof db->ixdir, "%s/indexes", opts->store.dir);
    if (mkdir(db->ixdir, 0755) != 0 && errno != EEXIST) {
        qv_error("cannot create %s: %s", db->ixdir, strerror(errno));
        rc = QV_IO;
        goto fail;
    }
    remove_stale_temps(db->ixdir);
    MDB_txn *txn;
    if ((rc = qv_store_read_begin(db->st, &txn))) goto fail;
    rc = qv_store_coll_foreach(db->st, txn, open_coll, db);
    qv_store_abort(txn);
    if (rc) goto fail;
    remove_orphan_files(db);
    if (pthread_create(&db->writer, NULL, writer_main, db)) {
        rc = QV_NOMEM;
        goto fail;
    }
    db->writer_started = 1;
    for (size_t i = 0; i < db->ncolls; i++) maybe_auto_rebuild(db->colls[i]);
    *out = db;
    return 0;
fail:
    qv_db_close(db);
    return rc;
}

void qv_db_close(qv_db *db)
{
    if (!db) return;
    atomic_store(&db->closing, 1);
    /* cancel rebuilds and wait for their threads */
    pthread_mutex_lock(&db->cmu);
    for (size_t i = 0; i < db->ncolls; i++) {
        qv_coll *c = db->colls[i];
        pthread_mutex_lock(&c->rmu);
        if (c->rb) atomic_store(&c->rb->cancel, 1);
        pthread_mutex_unlock(&c->rmu);
    }
    pthread_mutex_unlock(&db->cmu);
    /* the writer finishes what is queued (rebuilds may queue prunes) */
    pthread_mutex_lock(&db->rbmu);
    while (db->nrebuilds > 0) pthread_cond_wait(&db->rbcv, &db->rbmu);
    pthread_mutex_unlock(&db->rbmu);
    if (db->writer_started) {
        pthread_mutex_lock(&db->qmu);
        db->stopping = 1;
        pthread_cond_broadcast(&db->qcv);
        pthread_mutex_unlock(&db->qmu);
        pthread_join(db->writer, NULL);
    }
    for (size_t i = 0; i < db->ncolls; i++) qv_coll_release(db->colls[i]);
    free(db->colls);
    qv_store_close(db->st);
    pthread_mutex_destroy(&db->cmu);
    pthread_mutex_destroy(&db->qmu);
    pthread_cond_destroy(&db->qcv);
    pthread_mutex_destroy(&db->rbmu);
    pthread_cond_destroy(&db->rbcv);
    free(db);
}

qv_store *qv_db_store(qv_db *db) { return db->st; }
