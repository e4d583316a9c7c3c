/*
 * The engine, part: the group-commit writer thread: the bounded queue, batches, applying and publishing writes.
 * Private declarations in db_int.h.
 */
#include "db_int.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif

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
        return qv_store_tombstones_prune(db->st, txn, w->coll->cfg.id, WI(w)->seq_to, &n);
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
    WI(w)->seq_from = seq + 1;
    w->affected = 0;
    /* a replica applies each log entry once: one at or below what this
     * collection has applied (a redelivery after a restart) changes nothing */
    if (w->log_seq && w->log_seq <= c->w_log_seq) {
        WI(w)->seq_to = seq;
        return 0;
    }
    for (size_t i = 0; i < w->n && !rc; i++) {
        if (skip && skip[i]) continue;
        if (w->kind == QV_W_UPSERT) {
            const uint8_t *a = w->attr_off ? w->attrs + w->attr_off[i] : NULL;
            size_t alen = w->attr_off ? w->attr_off[i + 1] - w->attr_off[i] : 0;
            rc = qv_store_item_put(db->st, txn, c->cfg.id, w->ids[i], ++seq, c->cfg.dim,
                                   w->vecs + i * c->cfg.dim, a, alen, &WI(w)->existed[i]);
            if (!rc && !WI(w)->existed[i]) count++;
            w->affected++;
        } else {
            rc = qv_store_item_delete(db->st, txn, c->cfg.id, w->ids[i], seq + 1);
            if (rc == QV_NOTFOUND) {
                rc = 0;
                WI(w)->existed[i] = 0;
                continue;
            }
            seq++;
            WI(w)->existed[i] = 1;
            count--;
            w->affected++;
        }
    }
    if (rc) return rc;
    WI(w)->seq_to = seq;
    uint64_t log_seq = w->log_seq ? w->log_seq : c->w_log_seq;
    if (seq != c->w_seq || log_seq != c->w_log_seq) {
        /* the log sequence commits in the same transaction as the items */
        qv_coll_stats s = {seq, count, log_seq};
        if ((rc = qv_store_stats_put(db->st, txn, c->cfg.id, &s))) return rc;
    }
    c->w_seq = seq;
    c->w_count = count;
    c->w_log_seq = log_seq;
    return 0;
}

/* After commit: make the op visible (registry, index). */
static void publish_op(qv_db *db, qv_write *w, const char *skip)
{
    if (w->kind == QV_W_CREATE) {
        qv_coll *c = qv_reg_coll_new(db, &w->config);
        qv_index_params fp = {.kind = QV_KIND_FLAT};
        qv_metric m = w->config.metric;
        if (!c || qv_index_new(w->config.dim, m, &fp, &c->index) || qv_reg_add(db, c)) {
            qv_error("collection %s: created on disk but not in memory; restart quiverd",
                     w->config.name);
            w->rc = QV_NOMEM;
            qv_coll_release(c);
        }
        return;
    }
    if (w->kind == QV_W_DROP) {
        qv_coll *c = qv_reg_remove(db, w->config.name);
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
    w->seq = WI(w)->seq_to;
    atomic_store(&c->last_seq, c->w_seq);
    atomic_store(&c->count, c->w_count);
    atomic_store(&c->log_seq, c->w_log_seq);
    if (w->affected == 0) return;
    uint32_t dim = c->cfg.dim;
    pthread_rwlock_wrlock(&c->ilock);
    if (WI(w)->seq_to > c->index_seq) {
        int64_t *rm = malloc(w->n * sizeof *rm);
        size_t nrm = 0;
        int rc = rm ? 0 : QV_NOMEM;
        /* tests: this update fails before touching the index, as a real one would */
        if (!rc && db->opts.test_fail_update && ++db->updates == db->opts.test_fail_update) rc = QV_NOMEM;
        for (size_t i = 0; !rc && i < w->n; i++)
            if ((!skip || !skip[i]) && WI(w)->existed[i]) rm[nrm++] = (int64_t)w->ids[i];
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
        if (rc) {
            /* committed but not searchable: rebuild from LMDB, whatever
             * --no-auto-rebuild says (db->auto_rebuild after the reply) */
            qv_error("collection %s: index update failed (%s); searches miss writes up to seq "
                     "%llu until the rebuild from LMDB that starts now", c->cfg.name,
                     qv_strerror(rc), (unsigned long long)WI(w)->seq_to);
            atomic_store(&c->index_stale, 1);
        }
        c->index_seq = WI(w)->seq_to;
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

/* The CLOCK_REALTIME instant ms from now, for pthread_cond_timedwait. */
static struct timespec after_ms(long ms)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) t.tv_sec++, t.tv_nsec -= 1000000000L;
    return t;
}

static void enqueue_locked(qv_db *db, qv_write *w)
{
    WI(w)->next = NULL;
    if (db->qtail) WI(db->qtail)->next = w;
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
            db->whead = WI(w)->next;
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
            *pp = WI(w)->next;
            WI(w)->next = NULL;
            *ftail = w;
            ftail = &WI(w)->next;
        } else {
            last = w;
            pp = &WI(w)->next;
        }
    }
    db->wtail = last;
    return failed;
}

static void fail_waiting(qv_write *failed)
{
    while (failed) {
        qv_write *w = failed;
        failed = WI(w)->next;
        WI(w)->next = NULL;
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
    db->untrimmed += bytes;
    qv_write *failed = admit_waiting_locked(db);
    int room = !db->whead && db->queued + db->pending < db->opts.max_queued_bytes;
    void (*cb)(void *) = db->room_cb;
    void *ctx = db->room_ctx;
    pthread_mutex_unlock(&db->qmu);
    fail_waiting(failed);
    if (room && cb) cb(ctx);
}

/* Writes waiting for room give up at their deadline even while the writer is
 * busy with a long batch (a slow disk is when the queue fills): this thread
 * looks at them every 20 ms while any wait, and sleeps otherwise. */
void *qv_writer_reaper_main(void *arg)
{
    qv_db *db = arg;
    pthread_mutex_lock(&db->qmu);
    while (!db->stopping) {
        if (!db->whead) {
            pthread_cond_wait(&db->wcv, &db->qmu);
            continue;
        }
        struct timespec t = after_ms(20);
        pthread_cond_timedwait(&db->wcv, &db->qmu, &t);
        qv_write *failed = admit_waiting_locked(db);
        if (failed) {
            pthread_mutex_unlock(&db->qmu);
            fail_waiting(failed);
            pthread_mutex_lock(&db->qmu);
        }
    }
    pthread_mutex_unlock(&db->qmu);
    return NULL;
}

int qv_db_write_pressure(qv_db *db)
{
    pthread_mutex_lock(&db->qmu);
    int full = db->whead != NULL || db->queued + db->pending >= db->opts.max_queued_bytes;
    pthread_mutex_unlock(&db->qmu);
    return full;
}

void qv_db_write_reserve(qv_db *db, size_t bytes)
{
    pthread_mutex_lock(&db->qmu);
    db->pending += bytes;
    pthread_mutex_unlock(&db->qmu);
}

void qv_db_write_unreserve(qv_db *db, size_t bytes)
{
    pthread_mutex_lock(&db->qmu);
    db->pending = db->pending > bytes ? db->pending - bytes : 0;
    int room = !db->whead && db->queued + db->pending < db->opts.max_queued_bytes;
    void (*cb)(void *) = db->room_cb;
    void *ctx = db->room_ctx;
    pthread_mutex_unlock(&db->qmu);
    if (room && cb) cb(ctx);
}

void qv_db_on_room(qv_db *db, void (*cb)(void *ctx), void *ctx)
{
    pthread_mutex_lock(&db->qmu);
    db->room_cb = cb;
    db->room_ctx = ctx;
    pthread_mutex_unlock(&db->qmu);
}

/* w failed: its stream's writes after it must not apply */
static void chain_fail(qv_write *w)
{
    uint64_t cur = atomic_load(w->chain);
    while (w->chain_pos < cur && !atomic_compare_exchange_weak(w->chain, &cur, w->chain_pos)) {
    }
}

static void run_batch(qv_db *db, qv_write *batch)
{
    MDB_txn *txn = NULL;
    int rc = qv_store_write_begin(db->st, NULL, &txn);
    size_t nops = 0;
    for (qv_write *w = batch; w; w = WI(w)->next) nops++;
    char **skips = calloc(nops ? nops : 1, sizeof *skips);
    size_t i = 0;
    for (qv_write *w = batch; w; w = WI(w)->next, i++) {
        if (rc) {
            w->rc = rc;
            continue;
        }
        if (w->kind == QV_W_UPSERT || w->kind == QV_W_DELETE) {
            WI(w)->existed = calloc(w->n ? w->n : 1, sizeof *WI(w)->existed);
            if (!WI(w)->existed) {
                w->rc = QV_NOMEM;
                continue;
            }
            if (skips) skips[i] = dup_skips(w);
        }
        qv_coll *c = w->coll;
        if (w->chain && w->chain_pos >= atomic_load(w->chain)) { /* an earlier write of its stream failed */
            w->rc = QV_CANCELLED;
            continue;
        }
        uint64_t seq0 = c ? c->w_seq : 0, cnt0 = c ? c->w_count : 0, log0 = c ? c->w_log_seq : 0;
        MDB_txn *child = NULL;
        w->rc = qv_store_write_begin(db->st, txn, &child);
        if (!w->rc) w->rc = apply_op(db, child, w, skips ? skips[i] : NULL);
        if (!w->rc) w->rc = qv_store_commit(child);
        else qv_store_abort(child);
        if (w->rc && w->chain) chain_fail(w);
        if (w->rc && c) { /* the op wrote nothing: roll its counters back */
            c->w_seq = seq0;
            c->w_count = cnt0;
            c->w_log_seq = log0;
        }
    }
    /* the attribute caches let go of what this commit changes before any
     * snapshot can see it, and take nothing read before it (acache.h) */
    uint64_t txnid = rc ? 0 : qv_store_txn_id(txn);
    for (qv_write *w = batch; w; w = WI(w)->next)
        if ((w->kind == QV_W_UPSERT || w->kind == QV_W_DELETE) && w->coll)
            qv_acache_forget(w->coll->ac, txnid, w->ids, w->n);
    struct timespec tc;
    clock_gettime(CLOCK_MONOTONIC, &tc);
    if (!rc) rc = qv_store_commit(txn);
    double csec = elapsed_since(&tc);
    size_t nitems = 0;
    for (qv_write *w = batch; w; w = WI(w)->next)
        if (!w->rc && (w->kind == QV_W_UPSERT || w->kind == QV_W_DELETE)) nitems += w->affected;
    pthread_mutex_lock(&db->qmu);
    db->stats.commits++;
    db->stats.commit_seconds += csec;
    int cb = 0;
    while (cb < QV_COMMIT_BUCKETS - 1 && csec > qv_commit_bounds[cb]) cb++;
    db->stats.commit_hist[cb]++;
    db->stats.batch_writes += nops;
    int bb = 0;
    while (bb < QV_BATCH_BUCKETS - 1 && (double)nops > qv_batch_bounds[bb]) bb++;
    db->stats.batch_hist[bb]++;
    if (!rc) db->stats.items_written += nitems;
    pthread_mutex_unlock(&db->qmu);
    /* the B-tree pages the writer looked up stay mapped: every 64 MiB of
     * writes, let them go (they are page cache, not process memory) */
    for (qv_write *w = batch; w; w = WI(w)->next)
        if (w->kind == QV_W_UPSERT && w->coll)
            db->written_since_release += w->n * ((size_t)w->coll->cfg.dim * 4 + 64);
    if (db->written_since_release > ((size_t)64 << 20)) {
        qv_store_release_pages(db->st);
        db->written_since_release = 0;
    }
    i = 0;
    for (qv_write *w = batch; w; w = WI(w)->next, i++) {
        if (rc && !w->rc) w->rc = rc;
        if (rc && w->chain) chain_fail(w);
        if (rc && w->coll) { /* nothing committed: back to the published state */
            w->coll->w_seq = atomic_load(&w->coll->last_seq);
            w->coll->w_count = atomic_load(&w->coll->count);
            w->coll->w_log_seq = atomic_load(&w->coll->log_seq);
        }
    }
    i = 0;
    for (qv_write *w = batch; w; w = WI(w)->next, i++)
        if (!w->rc) publish_op(db, w, skips ? skips[i] : NULL);
    /* replies go out only now: committed and searchable */
    size_t freed = 0;
    for (qv_write *w = batch; w; w = WI(w)->next) freed += w->bytes;
    i = 0;
    qv_write *next;
    for (qv_write *w = batch; w; w = next, i++) {
        next = WI(w)->next;
        qv_coll *c = w->coll;
        int check = !w->rc && c && (w->kind == QV_W_UPSERT || w->kind == QV_W_DELETE);
        if (c && check) qv_reg_coll_ref(c);
        free(WI(w)->existed);
        WI(w)->existed = NULL;
        if (skips) free(skips[i]);
        if (w->done) w->done(w);
        if (check) {
            db->auto_rebuild(c);
            qv_coll_release(c);
        }
    }
    free(skips);
    if (freed) release_queued(db, freed);
}

void *qv_writer_main(void *arg)
{
    qv_db *db = arg;
    size_t max_items = db->opts.max_batch_items;
    for (;;) {
        pthread_mutex_lock(&db->qmu);
        while (!db->qhead && !db->stopping) {
            if (db->untrimmed < TRIM_AFTER_BYTES) {
                pthread_cond_wait(&db->qcv, &db->qmu);
                continue;
            }
            /* A burst of writes is over (an import: up to the queue's 256 MB
             * of requests at once). malloc keeps what they freed in its
             * arenas (measured: 48 concurrent 8 MB upserts left 251 MB
             * resident for 8 MB of data). Once the queue has stayed empty a
             * moment (the calls' replies, which free the requests, have
             * gone), give the free pages back to the system. */
            struct timespec t = after_ms(200);
            if (pthread_cond_timedwait(&db->qcv, &db->qmu, &t) != ETIMEDOUT) continue;
            db->untrimmed = 0;
            pthread_mutex_unlock(&db->qmu);
#ifdef __GLIBC__
            malloc_trim(0);
#endif
            pthread_mutex_lock(&db->qmu);
        }
        if (!db->qhead) {
            /* closing: writes still waiting for room are not taken */
            qv_write *w = db->whead;
            db->whead = db->wtail = NULL;
            pthread_mutex_unlock(&db->qmu);
            while (w) {
                qv_write *nx = WI(w)->next;
                WI(w)->next = NULL;
                w->rc = QV_SHUTDOWN;
                if (w->done) w->done(w);
                w = nx;
            }
            break;
        }
        /* group commit: everything queued, up to max_items items */
        qv_write *batch = db->qhead, *last = db->qhead;
        size_t items = last->n + 1;
        while (WI(last)->next && items + WI(last)->next->n <= max_items) {
            last = WI(last)->next;
            items += last->n + 1;
        }
        db->qhead = WI(last)->next;
        if (!db->qhead) db->qtail = NULL;
        WI(last)->next = NULL;
        pthread_mutex_unlock(&db->qmu);
        if (db->opts.test_writer_delay_ms) usleep(db->opts.test_writer_delay_ms * 1000u);
        run_batch(db, batch);
    }
    return NULL;
}

void qv_db_submit(qv_db *db, qv_write *w)
{
    WI(w)->next = NULL;
    WI(w)->existed = NULL;
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
        if (db->wtail) WI(db->wtail)->next = w;
        else db->whead = w;
        db->wtail = w;
        pthread_cond_signal(&db->wcv); /* the reaper watches its deadline */
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

void qv_writer_submit_prune(qv_db *db, qv_coll *c, uint64_t upto)
{
    qv_write *w = calloc(1, sizeof *w);
    if (!w) return;
    w->kind = (qv_write_kind)QV_W_PRUNE;
    w->coll = c;
    qv_reg_coll_ref(c);
    WI(w)->seq_to = upto;
    w->done = prune_done;
    qv_db_submit(db, w);
}

const double qv_commit_bounds[QV_COMMIT_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                    0.05,   0.1,   0.25,   0.5,   1,    INFINITY};
const double qv_batch_bounds[QV_BATCH_BUCKETS] = {1, 2, 4, 8, 16, 32, 64, 128, 256, INFINITY};

void qv_db_stats_get(qv_db *db, qv_db_stats *out)
{
    pthread_mutex_lock(&db->qmu);
    *out = db->stats;
    out->queued_bytes = db->queued;
    out->pending_bytes = db->pending;
    pthread_mutex_unlock(&db->qmu);
    MDB_envinfo ei;
    MDB_stat ms;
    MDB_env *env = qv_store_env(db->st);
    mdb_env_info(env, &ei);
    mdb_env_stat(env, &ms);
    out->map_size = ei.me_mapsize;
    out->map_used = (size_t)(ei.me_last_pgno + 1) * ms.ms_psize;
}
