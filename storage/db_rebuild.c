/*
 * The engine, part: background rebuilds: the queue of builds, requested vs automatic, saving, catching up, the swap.
 * Private declarations in db_int.h.
 */
#include "db_int.h"

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
    if ((rc = qv_build_resolve_params(db, &c->cfg, &rb->req.spec, s.count, &p, msg, msglen))) goto out;
    uint64_t covered = s.last_seq;
    qv_index *ix = NULL;
    qv_ixfile_meta meta;
    if (rb->tmpl[0]) {
        qv_index *t = NULL;
        qv_ixfile_meta tm;
        char why[300] = "";
        rc = qv_ixfile_load_path(rb->tmpl, &c->cfg, 0, &tm, &t, why, sizeof why);
        if (!rc && qv_build_spec_mismatch(&c->cfg.spec, &tm.params, why, sizeof why)) {
            qv_index_free(t);
            rc = QV_INVALID;
        }
        if (rc) {
            snprintf(msg, msglen, "the index file given cannot serve: %s", why[0] ? why : qv_strerror(rc));
            goto out;
        }
        p = tm.params;
        rb->params = p;
        rc = qv_build_from_template(c, rb, txn, s.count, t, &tm, &ix, &meta);
    } else {
        rb->params = p;
        rc = qv_build_index(c, rb, txn, s.count, &p, &ix, &meta);
    }
    qv_store_abort(txn);
    txn = NULL;
    if (rc) goto out;
    /* the file is written now but takes effect only with the swap: a cancel
     * until then leaves the old index in force, also after a restart */
    char tmp[4300] = "";
    uint64_t file_seq = covered;
    if (!db->opts.no_index_files && p.kind != QV_KIND_FLAT) {
        qv_build_set_phase(c, rb, "saving", 0, 1);
        meta.covered_seq = file_seq;
        int src = qv_ixfile_write_temp(db->ixdir, &meta, ix, tmp, sizeof tmp);
        if (src) qv_warn("collection %s: index file not saved (%s); a restart will rebuild it",
                         c->cfg.name, qv_strerror(src));
        qv_build_set_phase(c, rb, "saving", 1, 1);
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
        qv_build_set_phase(c, rb, "catching_up", 0, atomic_load(&c->last_seq) - covered);
        rc = qv_build_replay_log(c, txn, ix, covered, &covered, &n);
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
        qv_index_params cur = qv_reg_coll_spec(c);
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
    pthread_rwlock_rdlock(&db->flock); /* not while a backup links the files */
    if (tmp[0]) saved = qv_ixfile_commit(db->ixdir, c->cfg.id, tmp) == 0;
    else if (p.kind == QV_KIND_FLAT) qv_ixfile_remove(db->ixdir, c->cfg.id);
    pthread_rwlock_unlock(&db->flock);
    /* dropped meanwhile: its Drop sets the flag, then removes the file; seen
     * here or not, one of the two removes what was just renamed */
    if (saved && atomic_load(&c->dropped)) qv_ixfile_remove(db->ixdir, c->cfg.id);
    pthread_rwlock_wrlock(&c->ilock);
    if (!(rc = qv_store_read_begin(db->st, &txn))) {
        rc = qv_build_replay_log(c, txn, ix, covered, &covered, NULL);
        qv_store_abort(txn);
        txn = NULL;
    }
    if (!rc) {
        /* the writer applies only what is newer than index_seq */
        if (covered < c->index_seq) covered = c->index_seq;
        qv_build_install(c, ix, &meta, covered);
    }
    pthread_rwlock_unlock(&c->ilock);
    if (rc) {
        qv_index_free(ix);
        goto out;
    }
    /* a step at a time under the read lock: searches go on, a writer
     * (which may move the rows) waits for one step at most */
    for (size_t step = 0, more = 1; more; step++) {
        pthread_rwlock_rdlock(&c->ilock);
        more = qv_index_huge_pages_step(c->index, step);
        pthread_rwlock_unlock(&c->ilock);
    }
    if (saved) qv_writer_submit_prune(db, c, file_seq);
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
        qv_build_set_phase(c, rb, "queued", 0, 0);
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
    if (!rc) qv_build_set_phase(c, rb, "done", 1, 1);
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
    /* writes that arrived during the build may already call for the next one;
     * a requested build that failed may have cancelled an automatic one that
     * is still wanted (a peer's index file that could not serve) */
    if (!rc || (!rb->automatic && rc != QV_CANCELLED)) qv_rebuild_maybe_auto(c);
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
    qv_reg_coll_ref(c);
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
    if (spec.kind == QV_KIND_AUTO && !automatic) spec = qv_reg_coll_spec(c);
    int rc = qv_build_resolve_params(db, &c->cfg, &spec, atomic_load(&c->count), &resolved, err, errlen);
    if (rc) return rc;
    rebuild *rb = calloc(1, sizeof *rb);
    if (!rb) return QV_NOMEM;
    rb->c = c;
    rb->req = *req;
    rb->req.spec = spec;
    if (req->template_path) snprintf(rb->tmpl, sizeof rb->tmpl, "%s", req->template_path);
    rb->req.template_path = NULL;
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

int qv_coll_index_file(qv_coll *c, char *path, size_t len)
{
    if (len) path[0] = 0;
    if (c->db->opts.no_index_files) return QV_NOTFOUND;
    qv_ixfile_path(c->db->ixdir, c->cfg.id, path, len);
    return access(path, R_OK) == 0 ? 0 : QV_NOTFOUND;
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
void qv_rebuild_maybe_auto(qv_coll *c)
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
    qv_index_params cur = qv_reg_coll_spec(c);
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
