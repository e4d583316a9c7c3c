/* Unit tests of the engine (storage/db.c): group-committed writes from many
 * threads, searches, rebuilds, index files and restarts, on a real LMDB and
 * FAISS in a temp dir. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "quiver/db.h"
#include "quiver/error.h"
#include "quiver/log.h"
#include "quiver/query.h"
#include "db_int.h" /* white-box: the store under the db */

#define DIM 16

typedef struct fixture {
    char dir[64];
    qv_db *db;
    qv_db_opts opts;
} fixture;

static void db_open(fixture *f)
{
    assert_int_equal(qv_db_open(&f->opts, &f->db), 0);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/qv_test_db.XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    f->opts.store.dir = f->dir;
    f->opts.store.map_size = 256 << 20;
    f->opts.store.nosync = 1; /* durability is the crash test's job */
    f->opts.auto_ivf_min = 1000000; /* no automatic builds unless a test asks */
    db_open(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    qv_db_close(f->db);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    if (system(cmd)) return -1;
    free(f);
    return 0;
}

static void create(fixture *f, const char *name, qv_metric m, qv_index_kind kind, uint32_t nlist)
{
    qv_write w;
    memset(&w, 0, sizeof w);
    w.kind = QV_W_CREATE;
    snprintf(w.config.name, sizeof w.config.name, "%s", name);
    w.config.dim = DIM;
    w.config.metric = m;
    w.config.spec.kind = kind;
    w.config.spec.nlist = nlist;
    assert_int_equal(qv_db_write_sync(f->db, &w), 0);
}

/* Deterministic clustered vectors: id -> vector. */
static void vec_of(uint64_t id, float *v)
{
    uint64_t s = id * 0x9e3779b97f4a7c15ULL + 1;
    uint32_t cluster = (uint32_t)(id % 37);
    for (int i = 0; i < DIM; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        float noise = (float)((s >> 40) % 1000) / 1000.0f - 0.5f;
        v[i] = (float)((cluster * (i + 3)) % 11) + 0.3f * noise;
    }
}

/* One upsert of n items, waited for (off, attrs: NULL for none). */
static int write_upsert(fixture *f, qv_coll *c, size_t n, const uint64_t *ids, const float *v,
                        const size_t *off, const uint8_t *attrs)
{
    qv_write w;
    memset(&w, 0, sizeof w);
    w.kind = QV_W_UPSERT;
    w.coll = c;
    w.n = n;
    w.ids = ids;
    w.vecs = v;
    w.attr_off = off;
    w.attrs = attrs;
    return qv_db_write_sync(f->db, &w);
}

static int upsert_range(fixture *f, qv_coll *c, uint64_t from, uint64_t n)
{
    uint64_t *ids = malloc(n * sizeof *ids);
    float *v = malloc(n * DIM * sizeof *v);
    for (uint64_t i = 0; i < n; i++) {
        ids[i] = from + i;
        vec_of(from + i, v + i * DIM);
    }
    int rc = write_upsert(f, c, n, ids, v, NULL, NULL);
    free(ids);
    free(v);
    return rc;
}

/* k nearest of nq queries (DIM floats each; self[i] >= 0: query i is that
 * stored item instead) through the engine's read call, as arrays: scores
 * and labels nq*k, label -1 past the end. */
static int csearch(qv_coll *c, size_t nq, const float *q, const int64_t *self, size_t k,
                   uint32_t nprobe, float min_recall, float *s, int64_t *l)
{
    qv_query qs[8];
    assert_true(nq <= 8);
    for (size_t i = 0; i < nq; i++)
        qs[i] = self && self[i] >= 0 ? (qv_query){.id = (uint64_t)self[i]}
                                     : (qv_query){.vec = q + i * DIM};
    qv_read r = {.coll = c, .kind = QV_READ_SEARCH, .queries = qs, .nq = nq,
                 .opts = {.k = k, .nprobe = nprobe, .min_recall = min_recall}};
    qv_query_result res;
    size_t failed;
    char err[256];
    int rc = qv_query_run(&r, 1, &res, &failed, err, sizeof err);
    for (size_t i = 0; !rc && i < nq; i++)
        for (size_t j = 0; j < k; j++) {
            size_t h = res.off[i] + j;
            int in = h < res.off[i + 1];
            l[i * k + j] = in ? (int64_t)res.hits[h].id : -1;
            s[i * k + j] = in ? res.hits[h].score : 0;
        }
    qv_query_result_free(&res);
    return rc;
}

static int64_t top1(qv_coll *c, uint64_t id, uint32_t nprobe)
{
    float q[DIM], s;
    int64_t l;
    vec_of(id, q);
    assert_int_equal(csearch(c, 1, q, NULL, 1, nprobe, 0, &s, &l), 0);
    return l;
}

typedef struct writer_arg {
    fixture *f;
    qv_coll *c;
    uint64_t from;
} writer_arg;

static void *writer_thread(void *p)
{
    writer_arg *a = p;
    for (uint64_t b = 0; b < 20; b++)
        if (upsert_range(a->f, a->c, a->from + b * 25, 25)) return (void *)1;
    return NULL;
}

/* Eight threads write at once: every write lands, counts and seqs add up. */
static void test_concurrent_writes(void **state)
{
    fixture *f = *state;
    create(f, "conc", QV_METRIC_L2, QV_KIND_FLAT, 0);
    qv_coll *c;
    assert_int_equal(qv_db_coll_get(f->db, "conc", &c), 0);
    pthread_t th[8];
    writer_arg args[8];
    for (int i = 0; i < 8; i++) {
        args[i] = (writer_arg){f, c, (uint64_t)i * 100000};
        pthread_create(&th[i], NULL, writer_thread, &args[i]);
    }
    for (int i = 0; i < 8; i++) {
        void *ret;
        pthread_join(th[i], &ret);
        assert_null(ret);
    }
    qv_coll_info info;
    qv_coll_info_get(c, &info);
    assert_int_equal(info.count, 8 * 500);
    assert_int_equal(info.last_seq, 8 * 500);
    assert_int_equal(info.indexed, 8 * 500);
    for (int i = 0; i < 8; i++) assert_int_equal(top1(c, args[i].from + 499, 0), args[i].from + 499);
    qv_coll_release(c);
}

/* Upsert replaces, duplicates in one request keep the last, deletes vanish. */
static void test_upsert_replace_delete(void **state)
{
    fixture *f = *state;
    create(f, "rep", QV_METRIC_L2, QV_KIND_FLAT, 0);
    qv_coll *c;
    assert_int_equal(qv_db_coll_get(f->db, "rep", &c), 0);
    assert_int_equal(upsert_range(f, c, 0, 100), 0);
    /* id 5 twice in one batch: the second vector (that of 77) wins */
    uint64_t ids[2] = {5, 5};
    float v[2 * DIM];
    vec_of(66, v);
    vec_of(77, v + DIM);
    qv_write w;
    memset(&w, 0, sizeof w);
    w.kind = QV_W_UPSERT;
    w.coll = c;
    w.n = 2;
    w.ids = ids;
    w.vecs = v;
    assert_int_equal(qv_db_write_sync(f->db, &w), 0);
    float q[DIM], s[3];
    int64_t l[3];
    vec_of(77, q);
    assert_int_equal(csearch(c, 1, q, NULL, 3, 0, 0, s, l), 0);
    assert_true(l[0] == 5 || l[0] == 77);
    assert_true(l[1] == 5 || l[1] == 77);
    assert_true(s[0] < 1e-6f && s[1] < 1e-6f);
    qv_coll_info info;
    qv_coll_info_get(c, &info);
    assert_int_equal(info.count, 100);
    assert_int_equal(info.indexed, 100);
    /* delete */
    uint64_t del[3] = {5, 77, 5000};
    memset(&w, 0, sizeof w);
    w.kind = QV_W_DELETE;
    w.coll = c;
    w.n = 3;
    w.ids = del;
    assert_int_equal(qv_db_write_sync(f->db, &w), 0);
    assert_int_equal(w.affected, 2);
    assert_int_equal(csearch(c, 1, q, NULL, 3, 0, 0, s, l), 0);
    for (int i = 0; i < 3; i++) assert_true(l[i] != 5 && l[i] != 77);
    /* more like this: the excluded id never comes back */
    int64_t ex = 10;
    vec_of(10, q);
    assert_int_equal(csearch(c, 1, q, &ex, 3, 0, 0, s, l), 0);
    for (int i = 0; i < 3; i++) assert_true(l[i] != 10 && l[i] >= 0);
    qv_coll_release(c);
}

/* A cluster replica's writes carry the log sequence they apply: it commits
 * with them, survives a restart, and a redelivered entry changes nothing. */
static void test_log_seq_applied_once(void **state)
{
    fixture *f = *state;
    create(f, "replica", QV_METRIC_L2, QV_KIND_FLAT, 0);
    qv_coll *c;
    assert_int_equal(qv_db_coll_get(f->db, "replica", &c), 0);
    uint64_t ids[2] = {1, 2};
    float v[2 * DIM];
    vec_of(1, v);
    vec_of(2, v + DIM);
    qv_write w;
    memset(&w, 0, sizeof w);
    w.kind = QV_W_UPSERT;
    w.coll = c;
    w.n = 2;
    w.ids = ids;
    w.vecs = v;
    w.log_seq = 5;
    assert_int_equal(qv_db_write_sync(f->db, &w), 0);
    assert_int_equal(w.affected, 2);
    assert_int_equal(w.seq, 2); /* the collection's own sequence: 2 items */
    qv_coll_info info;
    qv_coll_info_get(c, &info);
    assert_int_equal(info.log_seq, 5);
    /* the same entry again (a redelivery) and an older one: skipped */
    w.affected = 99;
    assert_int_equal(qv_db_write_sync(f->db, &w), 0);
    assert_int_equal(w.affected, 0);
    uint64_t del = 1;
    qv_write d;
    memset(&d, 0, sizeof d);
    d.kind = QV_W_DELETE;
    d.coll = c;
    d.n = 1;
    d.ids = &del;
    d.log_seq = 4;
    assert_int_equal(qv_db_write_sync(f->db, &d), 0);
    assert_int_equal(d.affected, 0);
    qv_coll_info_get(c, &info);
    assert_int_equal(info.count, 2);
    assert_int_equal(info.last_seq, 2);
    /* a delete that finds nothing still records that entry 9 was applied */
    del = 777;
    d.log_seq = 9;
    assert_int_equal(qv_db_write_sync(f->db, &d), 0);
    assert_int_equal(d.affected, 0);
    qv_coll_info_get(c, &info);
    assert_int_equal(info.log_seq, 9);
    qv_coll_release(c);
    /* restart: the applied sequence was committed with the items */
    qv_db_close(f->db);
    db_open(f);
    assert_int_equal(qv_db_coll_get(f->db, "replica", &c), 0);
    qv_coll_info_get(c, &info);
    assert_int_equal(info.log_seq, 9);
    assert_int_equal(info.count, 2);
    d.coll = c;
    del = 1;
    d.log_seq = 10;
    assert_int_equal(qv_db_write_sync(f->db, &d), 0);
    assert_int_equal(d.affected, 1);
    qv_coll_info_get(c, &info);
    assert_int_equal(info.log_seq, 10);
    assert_int_equal(info.count, 1);
    qv_coll_release(c);
}

typedef struct progress_log {
    char phases[16][16];
    int n;
    int finished, rc;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} progress_log;

static void on_progress(void *ctx, const qv_rebuild_progress *p)
{
    progress_log *pl = ctx;
    pthread_mutex_lock(&pl->mu);
    if (pl->n == 0 || strcmp(pl->phases[pl->n - 1], p->phase) != 0)
        if (pl->n < 16) snprintf(pl->phases[pl->n++], 16, "%s", p->phase);
    pthread_mutex_unlock(&pl->mu);
}

static void on_finished(void *ctx, int rc, const char *msg)
{
    (void)msg;
    progress_log *pl = ctx;
    pthread_mutex_lock(&pl->mu);
    pl->finished = 1;
    pl->rc = rc;
    pthread_cond_signal(&pl->cv);
    pthread_mutex_unlock(&pl->mu);
}

static int rebuild_wait_from(qv_coll *c, qv_index_params spec, const char *tmpl, progress_log *pl)
{
    memset(pl, 0, sizeof *pl);
    pthread_mutex_init(&pl->mu, NULL);
    pthread_cond_init(&pl->cv, NULL);
    qv_rebuild_req req = {spec, on_progress, on_finished, pl, tmpl};
    char err[256];
    int rc = qv_coll_rebuild(c, &req, err, sizeof err);
    if (rc) return rc;
    pthread_mutex_lock(&pl->mu);
    while (!pl->finished) pthread_cond_wait(&pl->cv, &pl->mu);
    pthread_mutex_unlock(&pl->mu);
    return pl->rc;
}

static int rebuild_wait(qv_coll *c, qv_index_params spec, progress_log *pl)
{
    return rebuild_wait_from(c, spec, NULL, pl);
}

/* A replica's index file from another node: its training and calibration
 * are kept, its items are this collection's (refilled from LMDB), and a file
 * of another collection is refused. */
static void test_rebuild_from_template(void **state)
{
    fixture *f = *state, *g = NULL;
    create(f, "rep", QV_METRIC_L2, QV_KIND_AUTO, 0);
    qv_coll *c, *d;
    assert_int_equal(qv_db_coll_get(f->db, "rep", &c), 0);
    assert_int_equal(upsert_range(f, c, 0, 5000), 0);
    progress_log pl;
    assert_int_equal(rebuild_wait(c, (qv_index_params){.kind = QV_KIND_IVF_FLAT, .nlist = 32}, &pl), 0);
    qv_coll_info src;
    qv_coll_info_get(c, &src);
    char path[4200];
    assert_int_equal(qv_coll_index_file(c, path, sizeof path), 0);
    /* the other node: another db whose "rep" has another id and other items */
    void *st;
    assert_int_equal(setup(&st), 0);
    g = st;
    create(g, "other", QV_METRIC_L2, QV_KIND_AUTO, 0);
    create(g, "rep", QV_METRIC_L2, QV_KIND_AUTO, 0);
    assert_int_equal(qv_db_coll_get(g->db, "rep", &d), 0);
    assert_int_not_equal(qv_coll_config_of(d)->id, qv_coll_config_of(c)->id);
    assert_int_equal(upsert_range(g, d, 0, 3000), 0);
    assert_int_equal(upsert_range(g, d, 200000, 500), 0);
    assert_int_equal(rebuild_wait_from(d, (qv_index_params){0}, path, &pl), 0);
    for (int i = 0; i < pl.n; i++) {
        assert_string_not_equal(pl.phases[i], "training");
        assert_string_not_equal(pl.phases[i], "sampling");
    }
    qv_coll_info info;
    qv_coll_info_get(d, &info);
    assert_int_equal(info.params.kind, QV_KIND_IVF_FLAT);
    assert_int_equal(info.params.nlist, 32);
    assert_int_equal(info.indexed, 3500);
    assert_int_equal(info.trained_for, src.trained_for);
    assert_int_equal(info.nprobe, src.nprobe);
    assert_int_equal(info.n_recall, src.n_recall);
    for (uint32_t i = 0; i < info.n_recall; i++) assert_int_equal(info.recall[i].nprobe, src.recall[i].nprobe);
    assert_int_equal(top1(d, 200123, 32), 200123);
    float q[DIM], s[5];
    int64_t l[5];
    vec_of(4000, q); /* held by the source only */
    assert_int_equal(csearch(d, 1, q, NULL, 5, 32, 0, s, l), 0);
    for (int i = 0; i < 5; i++) assert_true(l[i] != 4000 && l[i] >= 0);
    /* its own file now: a restart loads it */
    char mine[4200];
    assert_int_equal(qv_coll_index_file(d, mine, sizeof mine), 0);
    assert_string_not_equal(mine, path);
    /* a file of another collection (name) is refused, the index unchanged */
    qv_coll *o;
    assert_int_equal(qv_db_coll_get(g->db, "other", &o), 0);
    assert_int_equal(upsert_range(g, o, 0, 100), 0);
    assert_int_not_equal(rebuild_wait_from(o, (qv_index_params){0}, path, &pl), 0);
    qv_coll_info_get(o, &info);
    assert_int_equal(info.params.kind, QV_KIND_FLAT);
    qv_coll_release(o);
    /* a refused file does not leave a collection that wants an IVF index
     * without one: the automatic build it cancelled starts again */
    create(g, "o2", QV_METRIC_L2, QV_KIND_IVF_FLAT, 16);
    assert_int_equal(qv_db_coll_get(g->db, "o2", &o), 0);
    assert_int_equal(upsert_range(g, o, 0, 1000), 0);
    assert_int_not_equal(rebuild_wait_from(o, (qv_index_params){0}, path, &pl), 0);
    for (int i = 0; i < 600; i++) {
        qv_coll_info_get(o, &info);
        if (info.params.kind == QV_KIND_IVF_FLAT && !info.rebuilding) break;
        usleep(50000);
    }
    assert_int_equal(info.params.kind, QV_KIND_IVF_FLAT);
    qv_coll_release(o);
    qv_coll_release(d);
    qv_coll_release(c);
    teardown(&st);
}

static uint32_t four_parts(void *ctx, const char *name)
{
    (void)ctx;
    return strcmp(name, "part") == 0 ? 4 : 0;
}

/* A collection that is one of four parts of a merged read is calibrated for
 * what it contributes to the merged top 10: its nearest neighbours count
 * more, so the same index reaches a higher recall at the same nprobe. */
static void test_calibration_of_a_part(void **state)
{
    fixture *f = *state;
    qv_db_set_merge_parts(f->db, four_parts, NULL);
    create(f, "whole", QV_METRIC_L2, QV_KIND_AUTO, 0);
    create(f, "part", QV_METRIC_L2, QV_KIND_AUTO, 0);
    qv_coll_info in[2];
    const char *names[2] = {"whole", "part"};
    for (int i = 0; i < 2; i++) {
        qv_coll *c;
        assert_int_equal(qv_db_coll_get(f->db, names[i], &c), 0);
        assert_int_equal(upsert_range(f, c, 0, 8000), 0);
        progress_log pl;
        assert_int_equal(rebuild_wait(c, (qv_index_params){.kind = QV_KIND_IVF_FLAT, .nlist = 64}, &pl), 0);
        qv_coll_info_get(c, &in[i]);
        qv_coll_release(c);
    }
    qv_db_set_merge_parts(f->db, NULL, NULL);
    int higher = 0;
    for (uint32_t i = 0; i < in[0].n_recall && i < in[1].n_recall; i++) {
        assert_int_equal(in[0].recall[i].nprobe, in[1].recall[i].nprobe);
        assert_true(in[1].recall[i].recall >= in[0].recall[i].recall - 1e-6);
        higher += in[1].recall[i].recall > in[0].recall[i].recall + 1e-4;
    }
    assert_true(higher >= 1);
}

/* Rebuild to IVF, calibrate, save; restart loads the file and replays the
 * writes made after it. */
static void test_rebuild_and_restart(void **state)
{
    fixture *f = *state;
    create(f, "ivf", QV_METRIC_COSINE, QV_KIND_AUTO, 0);
    qv_coll *c;
    assert_int_equal(qv_db_coll_get(f->db, "ivf", &c), 0);
    assert_int_equal(upsert_range(f, c, 0, 5000), 0);
    progress_log pl;
    qv_index_params spec = {.kind = QV_KIND_IVF_FLAT, .nlist = 32};
    assert_int_equal(rebuild_wait(c, spec, &pl), 0);
    assert_string_equal(pl.phases[0], "sampling");
    assert_string_equal(pl.phases[pl.n - 1], "done");
    qv_coll_info info;
    qv_coll_info_get(c, &info);
    assert_int_equal(info.params.kind, QV_KIND_IVF_FLAT);
    assert_int_equal(info.params.nlist, 32);
    assert_int_equal(info.indexed, 5000);
    assert_int_equal(info.trained_for, 5000);
    assert_true(info.n_recall > 0 && info.nprobe >= 1 && info.nprobe <= 32);
    for (uint32_t i = 1; i < info.n_recall; i++)
        assert_true(info.recall[i].nprobe > info.recall[i - 1].nprobe);
    /* a spec that cannot work is refused up front */
    char err[256];
    qv_rebuild_req bad = {.spec = {.kind = QV_KIND_IVF_FLAT, .nlist = 6000}};
    assert_int_equal(qv_coll_rebuild(c, &bad, err, sizeof err), QV_INVALID);
    assert_non_null(strstr(err, "nlist"));
    /* writes after the save: replayed at restart */
    assert_int_equal(upsert_range(f, c, 100000, 50), 0);
    uint64_t del = 7;
    qv_write w;
    memset(&w, 0, sizeof w);
    w.kind = QV_W_DELETE;
    w.coll = c;
    w.n = 1;
    w.ids = &del;
    assert_int_equal(qv_db_write_sync(f->db, &w), 0);
    qv_coll_release(c);
    qv_db_close(f->db);
    db_open(f);
    assert_int_equal(qv_db_coll_get(f->db, "ivf", &c), 0);
    qv_coll_info_get(c, &info);
    assert_int_equal(info.params.kind, QV_KIND_IVF_FLAT);
    assert_int_equal(info.count, 5049);
    assert_int_equal(info.indexed, 5049);
    assert_int_equal(info.trained_for, 5000);
    assert_int_equal(info.config.spec.kind, QV_KIND_IVF_FLAT); /* the requested spec stuck */
    assert_int_equal(top1(c, 100049, 32), 100049);
    float q[DIM], s[5];
    int64_t l[5];
    vec_of(7, q);
    assert_int_equal(csearch(c, 1, q, NULL, 5, 32, 0, s, l), 0);
    for (int i = 0; i < 5; i++) assert_true(l[i] != 7);
    qv_coll_release(c);
}

/* A corrupt index file is noticed at start-up and not used. */
static void test_corrupt_index_file(void **state)
{
    fixture *f = *state;
    create(f, "cor", QV_METRIC_L2, QV_KIND_IVF_FLAT, 16);
    qv_coll *c;
    assert_int_equal(qv_db_coll_get(f->db, "cor", &c), 0);
    assert_int_equal(upsert_range(f, c, 0, 2000), 0);
    /* an explicit IVF spec trains by itself once there are 39 x nlist items */
    qv_coll_info info;
    for (int i = 0; i < 600; i++) {
        qv_coll_info_get(c, &info);
        if (info.params.kind == QV_KIND_IVF_FLAT && !info.rebuilding) break;
        usleep(50000);
    }
    assert_int_equal(info.params.kind, QV_KIND_IVF_FLAT);
    assert_int_equal(info.indexed, 2000);
    uint32_t id = qv_coll_config_of(c)->id;
    qv_coll_release(c);
    qv_db_close(f->db);
    char path[256];
    snprintf(path, sizeof path, "%s/indexes/%u.qvi", f->dir, id);
    FILE *fp = fopen(path, "r+b");
    assert_non_null(fp);
    fseek(fp, 4000, SEEK_SET);
    fputc(0x5a, fp);
    fputc(0xa5, fp);
    fclose(fp);
    f->opts.no_auto_rebuild = 1;
    db_open(f);
    assert_int_equal(qv_db_coll_get(f->db, "cor", &c), 0);
    qv_coll_info_get(c, &info);
    assert_int_equal(info.params.kind, QV_KIND_FLAT); /* exact until rebuilt */
    assert_int_equal(info.indexed, 2000);
    assert_int_equal(top1(c, 1234, 0), 1234);
    qv_coll_release(c);
}

/* Dropping a collection removes its data and index file. */
static void test_drop(void **state)
{
    fixture *f = *state;
    create(f, "gone", QV_METRIC_IP, QV_KIND_FLAT, 0);
    qv_coll *c;
    assert_int_equal(qv_db_coll_get(f->db, "gone", &c), 0);
    assert_int_equal(upsert_range(f, c, 0, 10), 0);
    qv_write w;
    memset(&w, 0, sizeof w);
    w.kind = QV_W_DROP;
    snprintf(w.config.name, sizeof w.config.name, "gone");
    assert_int_equal(qv_db_write_sync(f->db, &w), 0);
    assert_int_equal(qv_db_write_sync(f->db, &w), QV_NOTFOUND);
    /* the handle stays valid but refuses work */
    float q[DIM] = {0}, s;
    int64_t l;
    assert_int_equal(csearch(c, 1, q, NULL, 1, 0, 0, &s, &l), QV_NOTFOUND);
    assert_int_equal(upsert_range(f, c, 0, 1), QV_NOTFOUND);
    qv_coll_release(c);
    assert_int_equal(qv_db_coll_get(f->db, "gone", &c), QV_NOTFOUND);
    create(f, "gone", QV_METRIC_IP, QV_KIND_FLAT, 0);
    assert_int_equal(qv_db_coll_get(f->db, "gone", &c), 0);
    qv_coll_info info;
    qv_coll_info_get(c, &info);
    assert_int_equal(info.count, 0);
    qv_coll_release(c);
}

/* ---- the write queue's byte budget (max_queued_bytes) ---- */
typedef struct qw {
    qv_write w;
    uint64_t id;
    float v[DIM];
    int done, order;
    pthread_mutex_t *mu;
    pthread_cond_t *cv;
    int *gate;    /* the first write's done() waits here: the writer is held */
    int *counter; /* completion order */
} qw;

static void qw_done(qv_write *w)
{
    qw *q = w->ctx;
    pthread_mutex_lock(q->mu);
    q->order = ++*q->counter;
    q->done = 1;
    pthread_cond_broadcast(q->cv);
    if (q->gate)
        while (!*q->gate) pthread_cond_wait(q->cv, q->mu);
    pthread_mutex_unlock(q->mu);
}

/* q as a one-item upsert of id to c, completing through qw_done. */
static void qw_upsert(qw *q, qv_coll *c, uint64_t id, pthread_mutex_t *mu, pthread_cond_t *cv,
                      int *counter)
{
    q->id = id;
    vec_of(id, q->v);
    q->w.kind = QV_W_UPSERT;
    q->w.coll = c;
    q->w.n = 1;
    q->w.ids = &q->id;
    q->w.vecs = q->v;
    q->w.done = qw_done;
    q->w.ctx = q;
    q->mu = mu;
    q->cv = cv;
    q->counter = counter;
}

static int rooms;
static void on_room(void *ctx)
{
    (void)ctx;
    __atomic_add_fetch(&rooms, 1, __ATOMIC_SEQ_CST);
}

static int64_t wall_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void test_write_queue_budget(void **state)
{
    fixture *f = *state;
    qv_db_close(f->db);
    f->opts.max_queued_bytes = 1000;
    db_open(f);
    qv_db_on_room(f->db, on_room, NULL);
    create(f, "q", QV_METRIC_L2, QV_KIND_FLAT, 0);
    qv_coll *c;
    assert_int_equal(qv_db_coll_get(f->db, "q", &c), 0);
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
    int gate = 0, counter = 0;
    enum { N = 6 };
    qw q[N];
    memset(q, 0, sizeof q);
    for (int i = 0; i < N; i++) {
        qw_upsert(&q[i], c, 100 + (uint64_t)i, &mu, &cv, &counter);
        q[i].w.bytes = 600; /* two never fit together */
    }
    /* 0 holds the writer in its done() (and counts for nothing: a write's
     * bytes leave the budget only after its batch) */
    q[0].gate = &gate;
    q[0].w.bytes = 0;
    assert_false(qv_db_write_pressure(f->db));
    qv_db_submit(f->db, &q[0].w);
    pthread_mutex_lock(&mu);
    while (!q[0].done) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    /* the writer is held: 1 is queued (600 <= 1000), 2.. wait for room */
    qv_db_submit(f->db, &q[1].w);
    assert_false(qv_db_write_pressure(f->db)); /* 600 of 1000 */
    q[3].w.deadline_ms = wall_ms() + 100;      /* gives up while it waits */
    for (int i = 2; i < N; i++) qv_db_submit(f->db, &q[i].w);
    assert_true(qv_db_write_pressure(f->db));
    /* 3's deadline passes while the writer is held: it gives up then (the writer
     * being busy does not delay it); nothing else moved */
    pthread_mutex_lock(&mu);
    while (!q[3].done) pthread_cond_wait(&cv, &mu);
    assert_int_equal(q[3].w.rc, QV_OVERLOAD);
    assert_false(q[1].done || q[2].done || q[4].done || q[5].done);
    /* let the writer go: the rest complete in submission order */
    gate = 1;
    pthread_cond_broadcast(&cv);
    while (!(q[1].done && q[2].done && q[4].done && q[5].done)) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    for (int i = 0; i < N; i++)
        if (i != 3) assert_int_equal(q[i].w.rc, 0);
    assert_true(q[1].order < q[2].order && q[2].order < q[4].order && q[4].order < q[5].order);
    assert_false(qv_db_write_pressure(f->db));
    assert_true(__atomic_load_n(&rooms, __ATOMIC_SEQ_CST) >= 1);
    qv_coll_info info;
    qv_coll_info_get(c, &info);
    assert_int_equal(info.count, N - 1); /* all but the one that gave up */
    assert_true(top1(c, 103, 0) != 103); /* never written */
    assert_int_equal(top1(c, 104, 0), 104);
    /* one write over the whole budget still goes, alone */
    upsert_range(f, c, 1000, 1);
    qv_coll_release(c);
}

/* A Drop and an Upsert of the same collection in one group commit: the Upsert
 * fails NOT_FOUND, no row lands under the dropped collection's id. */
static void test_drop_and_upsert_in_one_batch(void **state)
{
    fixture *f = *state;
    create(f, "hold", QV_METRIC_L2, QV_KIND_FLAT, 0);
    create(f, "gone", QV_METRIC_L2, QV_KIND_FLAT, 0);
    qv_coll *hold, *gone;
    assert_int_equal(qv_db_coll_get(f->db, "hold", &hold), 0);
    assert_int_equal(qv_db_coll_get(f->db, "gone", &gone), 0);
    uint32_t gone_id = qv_coll_config_of(gone)->id;
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
    int gate = 0, counter = 0;
    qw q[3];
    memset(q, 0, sizeof q);
    /* 0: an upsert to "hold" whose done() holds the writer */
    qw_upsert(&q[0], hold, 1, &mu, &cv, &counter);
    q[0].gate = &gate;
    qv_db_submit(f->db, &q[0].w);
    pthread_mutex_lock(&mu);
    while (!q[0].done) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    /* 1: drop "gone"; 2: upsert to "gone": queued together, one batch */
    qw_upsert(&q[1], gone, 0, &mu, &cv, &counter); /* for the completion fields */
    q[1].w.kind = QV_W_DROP;
    q[1].w.coll = NULL;
    q[1].w.n = 0;
    snprintf(q[1].w.config.name, sizeof q[1].w.config.name, "gone");
    qw_upsert(&q[2], gone, 7, &mu, &cv, &counter);
    qv_db_submit(f->db, &q[1].w);
    qv_db_submit(f->db, &q[2].w);
    pthread_mutex_lock(&mu);
    gate = 1;
    pthread_cond_broadcast(&cv);
    while (!(q[1].done && q[2].done)) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    assert_int_equal(q[1].w.rc, 0);
    assert_int_equal(q[2].w.rc, QV_NOTFOUND);
    /* nothing under the dropped id */
    MDB_txn *txn;
    assert_int_equal(qv_store_read_begin(qv_db_store(f->db), &txn), 0);
    qv_item_view v;
    assert_int_equal(qv_store_item_get(qv_db_store(f->db), txn, gone_id, 7, &v), QV_NOTFOUND);
    qv_store_abort(txn);
    qv_coll_release(hold);
    qv_coll_release(gone);
}

/* Upsert n items (vectors v, attribute blobs in b at off) and free them. */
static void upsert_built(fixture *f, qv_coll *c, size_t n, const uint64_t *ids, float *v, size_t *off,
                         qv_buf *b)
{
    assert_int_equal(write_upsert(f, c, n, ids, v, off, b->data), 0);
    free(v);
    free(off);
    free(b->data);
}

/* Upsert ids[0..n) with attribute "v" = vals[i] (NULL: no attributes). */
static void upsert_attrs(fixture *f, qv_coll *c, size_t n, const uint64_t *ids, const char *const *vals)
{
    float *v = malloc(n * DIM * sizeof *v);
    size_t *off = malloc((n + 1) * sizeof *off);
    qv_buf b = {0};
    off[0] = 0;
    for (size_t i = 0; i < n; i++) {
        vec_of(ids[i], v + i * DIM);
        if (vals[i]) {
            qv_attr_builder ab;
            assert_int_equal(qv_attrs_begin(&ab, &b), 0);
            assert_int_equal(qv_attrs_add_string(&ab, "v", vals[i], strlen(vals[i])), 0);
            qv_attrs_end(&ab);
        }
        off[i + 1] = b.len;
    }
    upsert_built(f, c, n, ids, v, off, &b);
}

/* The "v" attribute a search by the item's vector returns with its first hit
 * (the item itself), into out; "-" when it has none, "?" when the item is
 * not the first hit. */
static void hit_attr(qv_coll *c, uint64_t id, char *out, size_t cap)
{
    float v[DIM];
    vec_of(id, v);
    qv_query q = {.vec = v};
    qv_read r = {.coll = c, .kind = QV_READ_SEARCH, .queries = &q, .nq = 1, .opts = {.k = 1},
                 .with_attributes = 1};
    qv_query_result res;
    size_t failed;
    char err[256];
    int rc = qv_query_run(&r, 1, &res, &failed, err, sizeof err);
    snprintf(out, cap, "?");
    if (!rc && res.off[1] > 0 && res.hits[0].id == id) {
        qv_attr_iter it;
        qv_attr a;
        snprintf(out, cap, "-");
        if (res.hits[0].attrs_len && qv_attr_iter_init(&it, res.hits[0].attrs, res.hits[0].attrs_len) == 0 &&
            qv_attr_next(&it, &a) == 1)
            snprintf(out, cap, "%.*s", (int)a.str_len, a.str);
    }
    qv_query_result_free(&res);
}

static void assert_hit_attr(qv_coll *c, uint64_t id, const char *want)
{
    char got[64];
    hit_attr(c, id, got, sizeof got);
    assert_string_equal(got, want);
}

/* Whether c's attribute cache holds id for a snapshot begun now (or for
 * snap, when given). */
static int cached(fixture *f, qv_coll *c, uint64_t id, MDB_txn *snap)
{
    MDB_txn *txn = snap;
    if (!txn) assert_int_equal(qv_store_read_begin(qv_db_store(f->db), &txn), 0);
    const uint8_t *b;
    size_t len;
    void *ref = NULL;
    qv_acache_read_begin(c->ac);
    int r = qv_acache_find(c->ac, id, qv_store_txn_id(txn), &b, &len, &ref);
    qv_acache_read_end(c->ac);
    qv_acache_unref(ref);
    if (!snap) qv_store_abort(txn);
    return r;
}

/* Hits' attributes come from memory once a search has read them, as the
 * writes left them: replaced, removed, deleted, duplicated in one batch; a
 * snapshot older than a write never takes an entry read after it; within a
 * budget too small for all of them after a restart; and with the cache off,
 * from LMDB. */
static void test_hit_attributes_follow_writes(void **state)
{
    fixture *f = *state;
    create(f, "at", QV_METRIC_L2, QV_KIND_FLAT, 0);
    qv_coll *c;
    assert_int_equal(qv_db_coll_get(f->db, "at", &c), 0);
    assert_non_null(c->ac);
    enum { N = 300 };
    uint64_t ids[N];
    char vals[N][16];
    const char *vp[N];
    for (size_t i = 0; i < N; i++) {
        ids[i] = i;
        snprintf(vals[i], sizeof vals[i], "first-%zu", i);
        vp[i] = vals[i];
    }
    upsert_attrs(f, c, N, ids, vp);
    assert_int_equal(cached(f, c, 3, NULL), 0); /* nothing read yet */
    assert_hit_attr(c, 3, "first-3");
    assert_int_equal(cached(f, c, 3, NULL), 1);
    assert_hit_attr(c, 3, "first-3"); /* from memory */
    /* a write forgets it; a snapshot begun before the write never takes
     * what a later one read */
    MDB_txn *old;
    assert_int_equal(qv_store_read_begin(qv_db_store(f->db), &old), 0);
    const char *nv[] = {"second-3"};
    upsert_attrs(f, c, 1, (uint64_t[]){3}, nv);
    assert_int_equal(cached(f, c, 3, NULL), 0);
    assert_hit_attr(c, 3, "second-3");
    assert_int_equal(cached(f, c, 3, NULL), 1);
    assert_int_equal(cached(f, c, 3, old), 0);
    qv_store_abort(old);
    assert_hit_attr(c, 3, "second-3");
    /* attributes removed by an upsert without any */
    assert_hit_attr(c, 4, "first-4");
    const char *none[] = {NULL};
    upsert_attrs(f, c, 1, (uint64_t[]){4}, none);
    assert_hit_attr(c, 4, "-");
    assert_int_equal(cached(f, c, 4, NULL), 1);
    assert_hit_attr(c, 4, "-");
    /* the same id three times in one batch: the last one */
    assert_hit_attr(c, 5, "first-5");
    const char *three[] = {"x", "y", "z"};
    upsert_attrs(f, c, 3, (uint64_t[]){5, 5, 5}, three);
    assert_hit_attr(c, 5, "z");
    assert_hit_attr(c, 5, "z");
    /* a delete leaves nothing in memory */
    assert_hit_attr(c, 6, "first-6");
    uint64_t del = 6;
    qv_write w;
    memset(&w, 0, sizeof w);
    w.kind = QV_W_DELETE;
    w.coll = c;
    w.n = 1;
    w.ids = &del;
    assert_int_equal(qv_db_write_sync(f->db, &w), 0);
    assert_int_equal(cached(f, c, 6, NULL), 0);
    assert_hit_attr(c, 6, "?");
    qv_coll_release(c);

    /* restart with room for part of them: every hit the same, read twice
     * (LMDB, then memory where it fits) */
    qv_db_close(f->db);
    f->opts.attr_cache_bytes = 40 << 10; /* the table (32 KiB) and about 180 of them */
    db_open(f);
    assert_int_equal(qv_db_coll_get(f->db, "at", &c), 0);
    assert_int_equal(cached(f, c, 3, NULL), 0);
    for (int pass = 0; pass < 2; pass++)
        for (uint64_t i = 0; i < N; i++)
            if (i != 6) assert_hit_attr(c, i, i == 3 ? "second-3" : i == 4 ? "-" : i == 5 ? "z" : vals[i]);
    size_t in = 0;
    for (uint64_t i = 0; i < N; i++) in += cached(f, c, i, NULL) == 1;
    assert_true(in > 100 && in < 250);
    assert_true(qv_acache_bytes(c->ac) <= (size_t)40 << 10);
    qv_coll_release(c);

    /* the cache off */
    qv_db_close(f->db);
    f->opts.no_attr_cache = 1;
    db_open(f);
    assert_int_equal(qv_db_coll_get(f->db, "at", &c), 0);
    assert_null(c->ac);
    assert_hit_attr(c, 3, "second-3");
    assert_hit_attr(c, 4, "-");
    assert_hit_attr(c, 100, "first-100");
    qv_coll_release(c);
}

typedef struct race {
    fixture *f;
    qv_coll *c;
    atomic_int stop;
    long checked, bad;
} race;

/* Readers: every hit's attribute names the version its vector carries (both
 * read in the call's snapshot; the vector from LMDB, the attribute from
 * memory when the cache holds it). */
static void *race_reader(void *p)
{
    race *r = p;
    float q[DIM];
    uint64_t s = (uint64_t)(uintptr_t)&q;
    while (!atomic_load(&r->stop)) {
        s = s * 6364136223846793005ULL + 1;
        vec_of((s >> 33) % 200, q);
        qv_query qq = {.vec = q};
        qv_read rd = {.coll = r->c, .kind = QV_READ_SEARCH, .queries = &qq, .nq = 1, .opts = {.k = 50},
                      .with_attributes = 1, .with_vectors = 1};
        qv_query_result res;
        size_t failed;
        char err[256];
        if (qv_query_run(&rd, 1, &res, &failed, err, sizeof err) == 0)
            for (size_t h = 0; h < res.off[1]; h++) {
                const qv_hit *x = &res.hits[h];
                qv_attr_iter it;
                qv_attr a;
                if (!x->vector || !x->attrs_len) continue; /* deleted since the index saw it */
                long ver = -1;
                if (qv_attr_iter_init(&it, x->attrs, x->attrs_len) == 0 && qv_attr_next(&it, &a) == 1)
                    ver = a.i;
                __atomic_add_fetch(&r->checked, 1, __ATOMIC_RELAXED);
                if (ver != (long)x->vector[DIM - 1]) __atomic_add_fetch(&r->bad, 1, __ATOMIC_RELAXED);
            }
        qv_query_result_free(&res);
    }
    return NULL;
}

/* Upsert n ids at version ver: the vector's last value and attribute "ver". */
static void upsert_version(fixture *f, qv_coll *c, size_t n, const uint64_t *ids, long ver)
{
    float *v = malloc(n * DIM * sizeof *v);
    size_t *off = malloc((n + 1) * sizeof *off);
    qv_buf b = {0};
    off[0] = 0;
    for (size_t i = 0; i < n; i++) {
        vec_of(ids[i], v + i * DIM);
        v[i * DIM + DIM - 1] = (float)ver;
        qv_attr_builder ab;
        assert_int_equal(qv_attrs_begin(&ab, &b), 0);
        assert_int_equal(qv_attrs_add_int(&ab, "ver", ver), 0);
        qv_attrs_end(&ab);
        off[i + 1] = b.len;
    }
    upsert_built(f, c, n, ids, v, off, &b);
}

/* Searches racing writes that change items' attributes: no hit ever comes
 * with attributes of another version than its vector's, in the same snapshot. */
/* cache_bytes: 0 keeps the fixture's cache (room for all), else the
 * database is reopened with that budget */
static void race_writes(fixture *f, size_t cache_bytes)
{
    if (cache_bytes) {
        qv_db_close(f->db);
        f->opts.attr_cache_bytes = cache_bytes;
        db_open(f);
    }
    create(f, "race", QV_METRIC_L2, QV_KIND_FLAT, 0);
    race r = {.f = f};
    assert_int_equal(qv_db_coll_get(f->db, "race", &r.c), 0);
    uint64_t ids[200];
    for (uint64_t i = 0; i < 200; i++) ids[i] = i;
    upsert_version(f, r.c, 200, ids, 0);
    pthread_t th[2];
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, race_reader, &r);
    uint64_t s = 42;
    for (long ver = 1; ver <= 400; ver++) {
        uint64_t some[16];
        for (int j = 0; j < 16; j++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            some[j] = (s >> 33) % 200;
        }
        upsert_version(f, r.c, 16, some, ver);
        if (ver % 50 == 0) { /* and some deletes */
            qv_write w;
            memset(&w, 0, sizeof w);
            w.kind = QV_W_DELETE;
            w.coll = r.c;
            w.n = 4;
            w.ids = some;
            assert_int_equal(qv_db_write_sync(f->db, &w), 0);
        }
    }
    atomic_store(&r.stop, 1);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    assert_true(r.checked > 1000);
    assert_int_equal(r.bad, 0);
    if (cache_bytes) assert_true(qv_acache_bytes(r.c->ac) <= cache_bytes);
    qv_coll_release(r.c);
}

static void test_hit_attributes_under_concurrent_writes(void **state) { race_writes(*state, 0); }

/* The same with room for about 60 of the 200 items: searches evict one
 * another's entries all along, while the writer forgets them */
static void test_hit_attributes_under_writes_and_eviction(void **state)
{
    race_writes(*state, 36 << 10);
}

int main(void)
{
    qv_log_set_level(getenv("QV_TEST_VERBOSE") ? QV_LOG_DEBUG : QV_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_concurrent_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upsert_replace_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rebuild_and_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_index_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rebuild_from_template, setup, teardown),
        cmocka_unit_test_setup_teardown(test_calibration_of_a_part, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_seq_applied_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_queue_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drop_and_upsert_in_one_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hit_attributes_follow_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hit_attributes_under_concurrent_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hit_attributes_under_writes_and_eviction, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
