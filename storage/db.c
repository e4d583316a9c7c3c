/*
 * The engine, part: start-up and shut-down of the engine: opening every collection (index file or LMDB), orphan files.
 * Private declarations in db_int.h.
 */
#include "db_int.h"
#include "faiss_ext.h"
#include "quiver/query.h"

/* --------------------------------------------------------------- start-up */
static int open_coll(void *ctx, const qv_coll_config *cfg)
{
    qv_db *db = ctx;
    qv_coll *c = qv_reg_coll_new(db, cfg);
    if (!c) return QV_NOMEM;
    MDB_txn *txn = NULL;
    qv_coll_stats s = {0, 0, 0};
    int rc = qv_store_read_begin(db->st, &txn);
    if (!rc) rc = qv_store_stats_get(db->st, txn, cfg->id, &s);
    if (rc) goto fail;
    c->w_seq = s.last_seq;
    c->w_count = s.count;
    c->w_log_seq = s.log_seq;
    atomic_store(&c->last_seq, s.last_seq);
    atomic_store(&c->count, s.count);
    atomic_store(&c->log_seq, s.log_seq);
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
    if (frc == 0 && qv_build_spec_mismatch(&cfg->spec, &meta.params, why, sizeof why)) {
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
        rc = qv_build_replay_log(c, txn, ix, meta.covered_seq, &last, &n);
        if (rc) {
            qv_index_free(ix);
            goto fail;
        }
        qv_build_install(c, ix, &meta, s.last_seq);
        qv_index_huge_pages(ix);
        qv_info("collection %s: loaded %s index file (%llu items, replayed %llu writes, %.2f s)",
                cfg->name, qv_index_kind_name(meta.params.kind),
                (unsigned long long)qv_index_count(ix), (unsigned long long)n, elapsed_since(&t0));
    } else {
        if (frc != QV_NOTFOUND)
            qv_warn("collection %s: index file not used: %s; rebuilding from LMDB", cfg->name,
                    why[0] ? why : qv_strerror(frc));
        /* exact index from LMDB now; an IVF one follows in the background */
        qv_index_params fp = {.kind = QV_KIND_FLAT};
        if ((rc = qv_build_index(c, NULL, txn, s.count, &fp, &ix, &meta))) goto fail;
        qv_build_install(c, ix, &meta, s.last_seq);
        c->trained_for = 0;
    }
    qv_store_abort(txn);
    return qv_reg_add(db, c);
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
    /* the working folders of backups a crash interrupted */
    if (!(d = opendir(db->opts.store.dir))) return;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, ".backup-", 8) != 0) continue;
        char p[4096], q[4400];
        snprintf(p, sizeof p, "%s/%s", db->opts.store.dir, e->d_name);
        DIR *b = opendir(p);
        struct dirent *f;
        while (b && (f = readdir(b))) {
            snprintf(q, sizeof q, "%s/%s", p, f->d_name);
            if (f->d_name[0] != '.') unlink(q);
        }
        if (b) closedir(b);
        if (rmdir(p) == 0) qv_info("removed %s: an interrupted backup's copy", p);
    }
    closedir(d);
}

int qv_db_open(const qv_db_opts *opts, qv_db **out)
{
    *out = NULL;
    qv_db *db = calloc(1, sizeof *db);
    if (!db) return QV_NOMEM;
    db->opts = *opts;
    db->auto_rebuild = qv_rebuild_maybe_auto;
    if (!db->opts.auto_ivf_min) db->opts.auto_ivf_min = DEFAULT_AUTO_IVF_MIN;
    if (!db->opts.hnsw_coarse_min) db->opts.hnsw_coarse_min = DEFAULT_HNSW_COARSE_MIN;
    if (!db->opts.max_queued_bytes) db->opts.max_queued_bytes = (size_t)256 << 20;
    if (!db->opts.max_rebuilds) db->opts.max_rebuilds = 1;
    if (!db->opts.exact_max) db->opts.exact_max = QV_EXACT_MAX;
    if (!db->opts.max_batch_items) db->opts.max_batch_items = DEFAULT_MAX_BATCH;
    if (!db->opts.attr_cache_bytes) db->opts.attr_cache_bytes = DEFAULT_ATTR_CACHE;
    atomic_init(&db->acache_left, db->opts.attr_cache_bytes);
    pthread_mutex_init(&db->cmu, NULL);
    pthread_mutex_init(&db->pmu, NULL);
    pthread_rwlock_init(&db->flock, NULL);
    pthread_mutex_init(&db->qmu, NULL);
    pthread_cond_init(&db->qcv, NULL);
    pthread_cond_init(&db->wcv, NULL);
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
    if (pthread_create(&db->writer, NULL, qv_writer_main, db)) {
        rc = QV_NOMEM;
        goto fail;
    }
    db->writer_started = 1;
    if (pthread_create(&db->reaper, NULL, qv_writer_reaper_main, db)) {
        rc = QV_NOMEM;
        goto fail;
    }
    db->reaper_started = 1;
    for (size_t i = 0; i < db->ncolls; i++) qv_rebuild_maybe_auto(db->colls[i]);
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
        pthread_cond_broadcast(&db->wcv);
        pthread_mutex_unlock(&db->qmu);
        pthread_join(db->writer, NULL);
        if (db->reaper_started) pthread_join(db->reaper, NULL);
    }
    for (size_t i = 0; i < db->ncolls; i++) qv_coll_release(db->colls[i]);
    free(db->colls);
    qv_store_close(db->st);
    pthread_mutex_destroy(&db->cmu);
    pthread_mutex_destroy(&db->pmu);
    pthread_mutex_destroy(&db->qmu);
    pthread_cond_destroy(&db->qcv);
    pthread_cond_destroy(&db->wcv);
    pthread_mutex_destroy(&db->rbmu);
    pthread_cond_destroy(&db->rbcv);
    free(db);
}

qv_store *qv_db_store(qv_db *db) { return db->st; }

int qv_db_simd_level(char *name, size_t len, int *dynamic_dispatch)
{
    return faiss_get_simd_level(name, len, dynamic_dispatch);
}
