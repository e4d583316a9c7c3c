/*
 * The engine's private declarations, shared by its files (storage/db*.c;
 * include/quiver/db.h is the public manual): tuning constants, the
 * collection, rebuild and database structures, and the functions one part
 * calls in another. Not for use outside storage/.
 */
#ifndef QUIVER_DB_INT_H
#define QUIVER_DB_INT_H

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
#include "acache.h"
#include "index.h"
#include "indexfile.h"
#include "store.h"

#define DEFAULT_AUTO_IVF_MIN 10000
#define DEFAULT_MAX_BATCH 50000
#define DEFAULT_ATTR_CACHE ((size_t)256 << 20) /* bytes of attributes kept in memory */
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
#define FCACHE_SLOTS 16 /* evaluated filters kept per collection */

struct qv_coll {
    qv_db *db;
    qv_coll_config cfg;
    atomic_int refs;
    atomic_int dropped;
    /* writer thread only: counters including uncommitted work */
    uint64_t w_seq, w_count, w_log_seq;
    /* published after commit (log_seq: the cluster log's last sequence
     * applied, 0 on a single node) */
    _Atomic uint64_t last_seq, count, log_seq;
    /* the live index and what it covers, under ilock */
    pthread_rwlock_t ilock;
    qv_index *index;
    uint64_t index_gen; /* which index that is: one more at every install */
    uint64_t index_seq;
    uint64_t trained_for;
    uint64_t deleted_since; /* deletes since the index was trained */
    atomic_int index_stale; /* an update of the live index failed after its commit:
                             * a rebuild from LMDB is forced (cleared at install) */
    uint32_t nprobe;
    uint32_t n_recall;
    qv_recall_point recall[QV_MAX_RECALL_POINTS];
    /* evaluated filters, valid while last_seq is what they were evaluated
     * at (storage/query.c), under fmu */
    pthread_mutex_t fmu;
    struct fslot {
        void *key;
        size_t klen;
        uint64_t seq, used;
        struct qv_filt *f;
    } fcache[FCACHE_SLOTS];
    uint64_t fclock;
    /* frees the cache when the collection goes (set by query.c, which owns
     * the cache: the registry below it never calls into it by name) */
    void (*cache_free)(qv_coll *c);
    /* hits' attribute blobs in memory (acache.h; NULL: none) */
    qv_acache *ac;
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
    char tmpl[4200];      /* req.template_path, copied ("" = none) */
    rebuild *next;        /* a requested rebuild that cancelled this automatic
                           * one: it starts when this one has ended (under rmu) */
};

struct qv_db {
    qv_db_opts opts;
    qv_store *st;
    char ixdir[4096];
    /* qv_db_set_merge_parts, under pmu */
    pthread_mutex_t pmu;
    uint32_t (*merge_parts)(void *ctx, const char *name);
    void *merge_ctx;
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
    size_t untrimmed; /* bytes of writes done since the writer last gave the heap back */
    qv_db_stats stats; /* counters, under qmu (queued/pending filled in at read) */
    size_t pending; /* bytes of write calls taken in but not yet submitted
                     * (qv_db_write_reserve): they count toward the pressure */
    qv_write *whead, *wtail;
    pthread_cond_t wcv;  /* wakes the reaper: a write started waiting, or closing */
    pthread_t reaper;
    int reaper_started;
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
    /* the writer asks for rebuilds through this (qv_rebuild_maybe_auto, set
     * at open): the writer sits below the rebuilds, which write through it */
    void (*auto_rebuild)(qv_coll *c);
    /* index files: rebuilds replace or remove them under rdlock, a backup
     * links them and copies LMDB under wrlock (storage/backup.c) */
    pthread_rwlock_t flock;
    atomic_int backup_busy;
    size_t written_since_release; /* writer only */
    unsigned long updates; /* index updates after commits (opts.test_fail_update) */
    _Atomic size_t acache_left; /* the attribute caches' budget left */
};

/* internal write kinds: drop tombstones covered by an index file; store the
 * index spec a requested rebuild used */
#define QV_W_PRUNE 100
#define QV_W_SPEC 101

static inline double elapsed_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

typedef struct sample {
    uint32_t dim;
    size_t cap, n;
    uint64_t seen, rng;
    int64_t *ids;
    float *vecs;
} sample;

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

#define TRIM_AFTER_BYTES ((size_t)64 << 20) /* writes done before the idle writer trims the heap */
#define CALIB_CHUNK_PAIRS (1u << 18) /* queries x lists probed per calibration search */
#define CAL_K 11

/* The writer's bookkeeping of a write, kept in qv_write.engine_ (the public
 * header does not show it). */
typedef struct qv_write_int {
    qv_write *next;            /* queue and batch links */
    uint64_t seq_from, seq_to; /* sequence numbers the write took */
    int *existed;              /* per item: was there before (upsert/delete) */
} qv_write_int;
_Static_assert(sizeof(qv_write_int) <= sizeof(((qv_write *)0)->engine_),
               "qv_write.engine_ too small");
#define WI(w) ((qv_write_int *)(void *)(w)->engine_)

/* ---- functions one part of the engine calls in another ---- */
/* The store under db (db.c). */
qv_store *qv_db_store(qv_db *db);
qv_coll *qv_reg_coll_new(qv_db *db, const qv_coll_config *cfg);
void qv_reg_coll_ref(qv_coll *c);
/* The collection's index spec (requested rebuilds change it). */
qv_index_params qv_reg_coll_spec(qv_coll *c);
int qv_reg_add(qv_db *db, qv_coll *c);
qv_coll *qv_reg_remove(qv_db *db, const char *name);
int qv_build_replay_log(qv_coll *c, MDB_txn *txn, qv_index *ix, uint64_t after, uint64_t *last,
               uint64_t *napplied);
void qv_build_set_phase(qv_coll *c, rebuild *rb, const char *phase, uint64_t done, uint64_t total);
int qv_build_resolve_params(const qv_db *db, const qv_coll_config *cfg, const qv_index_params *spec,
                          uint64_t n, qv_index_params *out, char *err, size_t errlen);
int qv_build_index(qv_coll *c, rebuild *rb, MDB_txn *txn, uint64_t n,
                       const qv_index_params *p, qv_index **out, qv_ixfile_meta *meta);
/* 1 (reason in why) when an index of params fp does not serve spec sp: any
 * parameter the spec sets must match, not only the kind. */
int qv_build_spec_mismatch(const qv_index_params *sp, const qv_index_params *fp, char *why, size_t len);
int qv_build_from_template(qv_coll *c, rebuild *rb, MDB_txn *txn, uint64_t n, qv_index *tmpl,
                           const qv_ixfile_meta *tmeta, qv_index **out, qv_ixfile_meta *meta);
void qv_build_install(qv_coll *c, qv_index *ix, const qv_ixfile_meta *meta, uint64_t seq);
uint32_t qv_calib_nprobe_for(const qv_recall_point *pts, uint32_t n, float min_recall);
int qv_calib_init(calib *cal, qv_coll *c, const sample *s);
size_t qv_calib_hold_out(sample *s, size_t want);
void qv_calib_free(calib *cal);
int qv_calib_chunk(calib *cal, size_t n, const int64_t *ids, const float *vecs);
int qv_calib_run(qv_index *ix, const calib *cal, uint32_t parts, const atomic_int *cancel,
                     qv_recall_point *pts, uint32_t *npts, uint32_t *def_nprobe);
uint32_t qv_calib_parts(qv_db *db, const char *name);
void qv_rebuild_maybe_auto(qv_coll *c);
void *qv_writer_main(void *arg);
void *qv_writer_reaper_main(void *arg);
void qv_writer_submit_prune(qv_db *db, qv_coll *c, uint64_t upto);
/* The nprobe for min_recall (0 = 0.95) from the collection's calibrated
 * table (its default when it has none); under c->ilock. */
uint32_t qv_calib_nprobe(const qv_coll *c, float min_recall);

#endif
