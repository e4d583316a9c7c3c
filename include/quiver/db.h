/*
 * qv_db: the engine. Owns the store (LMDB), one qv_coll per collection with
 * its live index, the single writer thread that group-commits every write,
 * background index builds, and index files. The server translates gRPC
 * messages into calls here; nothing here knows about gRPC or protobuf.
 *
 * Caveats:
 *  - Writes are asynchronous: qv_db_submit queues a qv_write and its done()
 *    runs later on the writer thread, after the commit (fsync) and after the
 *    index has the change. done() must not block for long.
 *  - qv_coll handles are reference-counted: qv_db_coll_get/_list give a
 *    reference, release it with qv_coll_release. A dropped collection stays
 *    valid for holders but refuses writes and searches with QV_NOTFOUND.
 *  - Vectors passed in for COSINE collections are normalised by the caller
 *    (qv_vec_normalize), so that what is stored is what is indexed.
 */
#ifndef QUIVER_DB_H
#define QUIVER_DB_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "quiver/codec.h"
#include "quiver/types.h"

typedef struct qv_db qv_db;
typedef struct qv_coll qv_coll;

typedef struct qv_db_opts {
    qv_store_opts store;
    size_t auto_ivf_min;    /* "auto" switches from flat to IVF at this count (0 = 10000) */
    size_t max_batch_items; /* items per group commit (0 = 50000) */
    uint32_t hnsw_coarse_min; /* IVF builds of this many lists or more get an HNSW
                               * coarse quantizer (0 or UINT32_MAX: never) */
    size_t max_queued_bytes; /* bytes of writes queued for the writer (0 = 256 MiB);
                              * writes over it wait in order (qv_db_submit) */
    unsigned max_rebuilds;  /* rebuilds building at once (0 = 1); the others wait
                             * in phase "queued" */
    int no_auto_rebuild;    /* 1: never start rebuilds on its own */
    int no_index_files;     /* 1: never write/read index files */
    uint64_t exact_max;     /* the planner's exact cut (0 = QV_EXACT_MAX, quiver/query.h) */
    size_t attr_cache_bytes; /* attribute blobs kept in memory for hits, all
                              * collections together (0 = 256 MiB) */
    int no_attr_cache;      /* 1: hits' attributes are always read from LMDB */
    /* fault injection, set only by test builds (quiverd-test, unit tests):
     * the test_fail_update-th index update after a commit fails; each group
     * commit first waits test_writer_delay_ms (a slow disk) */
    unsigned long test_fail_update;
    unsigned test_writer_delay_ms;
} qv_db_opts;

/* Open the data directory: the store, every collection, its index (from the
 * newest index file plus the writes after it, else built from LMDB), and the
 * writer thread. [out] out: close with qv_db_close.
 * Returns 0 or the store's codes. */
int qv_db_open(const qv_db_opts *opts, qv_db **out);
/* Stop accepting writes, finish queued ones, cancel and join rebuilds, free.
 * NULL is a no-op. */
void qv_db_close(qv_db *db);

/* How many parts a read of collection `name` is merged from (the shards of a
 * cluster collection whose replica it is; 0 or no hook: 1). Calibration then
 * measures recall as one part contributes to the merged top 10 (of the true
 * top 10, a part holds its own top j with j ~ Binomial(10, 1/parts)), so a
 * min_recall asked of every part is what the merged answer reaches. The hook
 * is called from rebuild threads; qv_db_set_merge_parts(db, NULL, NULL)
 * returns once no call is under way. */
void qv_db_set_merge_parts(qv_db *db, uint32_t (*parts)(void *ctx, const char *name), void *ctx);

/* ------------------------------------------------------------ collections */
/* Reference to a live collection. Returns 0 or QV_NOTFOUND. */
int qv_db_coll_get(qv_db *db, const char *name, qv_coll **out);
/* References to every live collection in name order. [out] out: array of n
 * handles; release each, then free(array). */
int qv_db_coll_list(qv_db *db, qv_coll ***out, size_t *n);
void qv_coll_release(qv_coll *c);
const qv_coll_config *qv_coll_config_of(const qv_coll *c);

typedef struct qv_coll_info {
    qv_coll_config config;
    uint64_t count, last_seq;
    uint64_t log_seq; /* cluster replicas: the log's last sequence applied (0 single node) */
    /* live index */
    qv_index_params params; /* kind in use + resolved nlist etc. */
    int trained;
    uint64_t indexed;     /* items in the index */
    uint32_t nprobe;      /* default nprobe (for recall 0.95) */
    uint64_t trained_for; /* collection size when trained */
    size_t attr_cache_bytes; /* memory holding its attributes for hits (--attr-cache) */
    uint64_t covered_seq; /* last sequence number applied */
    size_t n_recall;
    qv_recall_point recall[QV_MAX_RECALL_POINTS];
    /* rebuild */
    int rebuilding;
    char phase[16];
    uint64_t done, total;
} qv_coll_info;

void qv_coll_info_get(qv_coll *c, qv_coll_info *out);

/* ----------------------------------------------------------------- writes */
typedef enum {
    QV_W_CREATE = 1,
    QV_W_DROP = 2,
    QV_W_UPSERT = 3,
    QV_W_DELETE = 4,
} qv_write_kind;

typedef struct qv_write qv_write;
struct qv_write {
    qv_write_kind kind;
    /* CREATE: config.name/dim/metric/spec; DROP: config.name */
    qv_coll_config config;
    /* UPSERT, DELETE: a referenced collection, n items */
    qv_coll *coll;
    size_t n;
    const uint64_t *ids;    /* n */
    const float *vecs;      /* UPSERT: n*dim floats (normalised for cosine) */
    const size_t *attr_off; /* UPSERT: n+1 offsets into attrs (NULL = none) */
    const uint8_t *attrs;
    /* UPSERT, DELETE on a cluster replica: the log sequence this write
     * applies, committed with it (qv_coll_info.log_seq); a write whose
     * log_seq is not above the collection's is skipped (applied already).
     * 0 on a single node. */
    uint64_t log_seq;
    /* results, valid in done() */
    int rc;             /* 0, QV_EXISTS, QV_NOTFOUND, QV_FULL, QV_LMDB, QV_SHUTDOWN ... */
    uint64_t affected;  /* upserted / deleted (existing) items */
    uint64_t seq;       /* UPSERT, DELETE: the collection's last sequence number
                         * once the write is applied (its write token) */
    void (*done)(qv_write *w);
    void *ctx;
    /* what the write holds in memory until done (counted against
     * max_queued_bytes; 0 = not counted), and when to give up waiting for
     * room in the queue (CLOCK_REALTIME ms; 0 = never): QV_OVERLOAD then */
    size_t bytes;
    int64_t deadline_ms;
    /* writes of one stream, in order (chain NULL: none): a write is applied
     * only while its chain_pos is below *chain (start it at UINT64_MAX); one
     * that fails lowers *chain to its chain_pos, so that the stream's later
     * writes end with QV_CANCELLED and its earlier ones still apply */
    _Atomic uint64_t *chain;
    uint64_t chain_pos;
    /* the engine's own bookkeeping while the write is queued and applied */
    void *engine_[4];
};

/* Queue a write; w stays the caller's and must live until done() runs (on
 * the writer thread, or inline with QV_SHUTDOWN when the db is closing).
 * When the bytes queued would go over max_queued_bytes, w waits (no thread
 * blocked) until there is room, in submission order, or until its deadline:
 * done() with QV_OVERLOAD. */
void qv_db_submit(qv_db *db, qv_write *w);
/* 1 while writes wait for room or the queue is at its budget: the server
 * stops taking write calls from the network then. */
int qv_db_write_pressure(qv_db *db);
/* Bytes of a write call taken in but not yet submitted (the server decodes
 * it meanwhile): counted by qv_db_write_pressure until unreserved, which is
 * done just before the write is submitted or when the call fails. */
void qv_db_write_reserve(qv_db *db, size_t bytes);
void qv_db_write_unreserve(qv_db *db, size_t bytes);
/* cb(ctx) runs (on the writer thread) each time a batch leaves room with no
 * write waiting; the server takes write calls again. */
void qv_db_on_room(qv_db *db, void (*cb)(void *ctx), void *ctx);
/* Submit and wait; returns w->rc. w->done must be NULL. */
int qv_db_write_sync(qv_db *db, qv_write *w);

/* ------------------------------------------------------------ statistics */
/* Upper bounds of the histogram buckets (the last is +Inf). */
#define QV_COMMIT_BUCKETS 12 /* seconds: 0.0005 .. 5, +Inf */
#define QV_BATCH_BUCKETS 10  /* writes per group commit: 1 .. 256, +Inf */
extern const double qv_commit_bounds[QV_COMMIT_BUCKETS];
extern const double qv_batch_bounds[QV_BATCH_BUCKETS];

typedef struct qv_db_stats {
    size_t queued_bytes;  /* bytes of writes queued and being applied (w->bytes) */
    size_t pending_bytes; /* write calls taken in, not yet submitted */
    uint64_t commits;     /* group commits (one LMDB transaction and fsync each) */
    double commit_seconds;                  /* their total duration */
    uint64_t commit_hist[QV_COMMIT_BUCKETS]; /* per bucket (not cumulative) */
    uint64_t batch_writes;                  /* writes committed in them */
    uint64_t batch_hist[QV_BATCH_BUCKETS];   /* writes per commit, per bucket */
    uint64_t items_written;                 /* items upserted or deleted */
    size_t map_size, map_used;              /* LMDB: the map (cap) and the bytes in use */
} qv_db_stats;

/* A consistent snapshot of the counters. */
void qv_db_stats_get(qv_db *db, qv_db_stats *out);

/* Reads (searches, recommendations, items by id, scans) are in
 * quiver/query.h. */

/* --------------------------------------------------------------- rebuilds */
typedef struct qv_rebuild_progress {
    const char *phase; /* queued, sampling, training, adding, saving, catching_up, done */
    uint64_t done, total;
    double elapsed;
} qv_rebuild_progress;

typedef struct qv_rebuild_req {
    qv_index_params spec;  /* kind AUTO = the collection's spec */
    /* progress callback, from the rebuild thread; may be NULL */
    void (*progress)(void *ctx, const qv_rebuild_progress *p);
    /* completion, from the rebuild thread: rc 0, QV_CANCELLED, QV_INVALID... */
    void (*finished)(void *ctx, int rc, const char *msg);
    void *ctx;
    /* an index file of the same items from elsewhere (a peer replica's in a
     * cluster): its trained structure and calibration are kept and it is
     * refilled from LMDB, no sampling, training or calibrating; NULL: build */
    const char *template_path;
} qv_rebuild_req;

/* Start a background rebuild of c. Returns 0 (finished() will be called),
 * QV_BUSY (one is running: its description in err), QV_INVALID (spec cannot
 * work: message naming the field in err), QV_NOTFOUND. */
int qv_coll_rebuild(qv_coll *c, const qv_rebuild_req *req, char *err, size_t errlen);
/* The path of c's index file into path (len bytes): 0, or QV_NOTFOUND when
 * it has none (flat, not built yet; path still set), or index files are off
 * (path ""). */
int qv_coll_index_file(qv_coll *c, char *path, size_t len);
/* Ask the running rebuild started with ctx to stop (no-op if none). */
void qv_coll_rebuild_cancel(qv_coll *c, void *ctx);

/* The SIMD level FAISS's kernels run with ("AVX2", "AVX512", "NONE"...) into
 * name (at most len bytes, NUL-terminated), and whether it was chosen at run
 * time (dynamic dispatch): for the start-up log. Returns 0. */
int qv_db_simd_level(char *name, size_t len, int *dynamic_dispatch);

/* The rule for "auto" and nlist 0: nlist for n items. */
uint32_t qv_auto_nlist(uint64_t n);

#endif
