/*
 * qc_log: the cluster's write log on NATS JetStream (libnats). One stream per
 * shard; writers publish with a message id (the stream drops duplicates from
 * retries), replicas follow a shard's stream in order from a sequence. It
 * knows bytes and sequences only: what a message means is the caller's.
 *
 * Caveats (read these first):
 * - Thread safety: one qc_log may be used by any number of threads at once.
 *   qc_log_close must come last, after every other call on it has returned
 *   and every qc_follow made from it has been stopped.
 * - Threads that call qc_log_* (other than the follower's own, which does it)
 *   should call nats_ReleaseThreadMemory() before they exit: libnats keeps a
 *   per-thread error buffer. A process that is done with NATS may call
 *   nats_CloseAndWait() after qc_log_close (the test does).
 * - Names: collections are [A-Za-z0-9_.-]{1,128}, not starting with '.'.
 *   Stream names may not hold '.', and subject tokens split on it, so the
 *   collection is escaped the same way in both: '_' -> "__", '.' -> "_2E",
 *   everything else kept. The escaping is reversible (a lone '_' never appears
 *   in an escaped name), so "a.b" and "a_2Eb" can never share a stream.
 *     stream   QV_<escaped>_<shard>      e.g. QV_pins_2Ev2_0 for "pins.v2"
 *     subject  quiver.<escaped>.<shard>  e.g. quiver.pins_2Ev2.0
 *   A name whose stream name would exceed QC_LOG_NAME_MAX is QV_INVALID.
 * - Streams: file storage, 1 or 3 replicas, MaxMsgSize 8 MiB, a 2-minute
 *   duplicate window. A retry with the same message id inside the window is
 *   answered with the original's sequence and stored once; after the window
 *   it would be stored again.
 * - Size: a message's data may be at most QC_LOG_MAX_MSG bytes, 8 MiB less
 *   4 KiB kept for its headers (NATS max_payload counts headers and data).
 *   Callers split larger writes. The servers need max_payload: 8MB. Larger
 *   messages are refused because JetStream 2.9 acknowledges a 32 MiB message
 *   and then loses it.
 * - Durability: nats-server 2.9 acknowledges before fsync (its store flushes
 *   every 2 minutes; it refuses sync_interval). A process crash loses nothing
 *   (the page cache survives); a power loss can lose acknowledged writes on
 *   all replicas. Production should run nats-server >= 2.10.23 with
 *   sync_interval: always.
 * - Outages: the connection reconnects forever in the background. Publish
 *   retries with backoff until its deadline; a follower re-subscribes on its
 *   own. Nothing spins while NATS is down.
 *
 * Errors: 0 on success or a negative code of include/quiver/error.h:
 * QV_NOTFOUND (no such stream), QV_INVALID (bad argument, or the server
 * refused the request, e.g. 3 replicas on a 1-node NATS), QV_LIMIT (a message
 * over the cap, or the server's max_payload is below it), QV_IO (NATS
 * unreachable or no answer in time), QV_NOMEM, QV_SHUTDOWN (the connection is
 * closed). Functions without an err buffer leave the reason of their last
 * failure in qc_log_errmsg() for the calling thread.
 */
#ifndef QUIVER_CLUSTER_LOG_H
#define QUIVER_CLUSTER_LOG_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Largest message data accepted by qc_log_publish (8 MiB - 4 KiB). */
#define QC_LOG_MAX_MSG ((size_t)(8u << 20) - 4096u)
/* Longest message id (bytes, no CR or LF). */
#define QC_LOG_MAX_ID 128
/* Buffer size that holds any stream name or subject, with its NUL. */
#define QC_LOG_NAME_MAX 256
/* Most messages and bytes handed to one apply call (a single message larger
 * than QC_LOG_BATCH_BYTES still comes, alone). */
#define QC_LOG_BATCH_MSGS 256
#define QC_LOG_BATCH_BYTES ((size_t)8u << 20)

typedef struct qc_log qc_log;       /* a connection to one NATS (cluster) */
typedef struct qc_follow qc_follow; /* a running follower of one shard */

/* One message handed to apply: data is valid only during that apply call. */
typedef struct qc_log_msg {
    uint64_t seq; /* stream sequence, increasing within a shard */
    const void *data;
    size_t len;
} qc_log_msg;

/* Called from the follower's thread with n >= 1 messages in stream order.
 * Return 0 when applied (the follower moves past them), non-zero when they
 * could not be applied yet: the same batch comes again after a short backoff
 * (the follower stops re-delivering only when stopped). */
typedef int (*qc_log_apply_fn)(void *ctx, const qc_log_msg *msgs, size_t n);

/* Connects to NATS.
 * [in] urls: comma-separated server URLs, "nats://127.0.0.1:4222,nats://...".
 * [in] creds_file: a NATS user credentials file (JWT + seed), or NULL.
 * [in] timeout_ms: how long to wait for the first connection; also the
 *      time limit of the stream calls (ensure/delete/last_seq/trim), > 0.
 * [out] out: the log, to be closed with qc_log_close.
 * [out] err: a message on failure (errlen bytes, may be NULL/0).
 * Returns 0, QV_INVALID (bad URL list or credentials file), QV_IO (no server
 * answered within timeout_ms), QV_NOMEM. */
int qc_log_open(const char *urls, const char *creds_file, int timeout_ms, qc_log **out, char *err,
                size_t errlen);

/* Closes the connection and frees the log. NULL is a no-op. */
void qc_log_close(qc_log *lg);

/* The reason of the calling thread's last failed qc_log_* call that has no
 * err buffer ("" if none). Valid until that thread's next qc_log_* call. */
const char *qc_log_errmsg(void);

/* The stream name and subject of a shard (see the naming caveat).
 * [out] stream, subject: buffers of QC_LOG_NAME_MAX bytes; either may be NULL.
 * Returns 0 or QV_INVALID (bad collection name). */
int qc_log_names(const char *coll, uint32_t shard, char stream[QC_LOG_NAME_MAX],
                 char subject[QC_LOG_NAME_MAX]);

/* Creates the shard's stream, or brings an existing one to this
 * configuration (e.g. a changed replica count). Idempotent.
 * [in] replicas: 1 or 3 (3 needs a 3-node JetStream cluster with all up).
 * Retries transient failures (no leader yet, no responders) up to the
 * timeout given at open.
 * Returns 0, QV_INVALID, QV_IO, QV_SHUTDOWN. */
int qc_log_stream_ensure(qc_log *lg, const char *coll, uint32_t shard, int replicas);

/* Streams created (ensured) from now on keep at most max_bytes (0: no cap),
 * dropping their oldest entries past it (--log-max-bytes). */
void qc_log_set_max_bytes(qc_log *lg, int64_t max_bytes);

/* Deletes the shard's stream and its messages.
 * Returns 0, QV_NOTFOUND (there was none: fine to ignore), QV_INVALID, QV_IO. */
int qc_log_stream_delete(qc_log *lg, const char *coll, uint32_t shard);

/* The shard's sequence range.
 * [out] last: the last sequence assigned (0 for a stream never written).
 * [out] first: the first sequence still stored (last + 1 when empty); may be
 *       NULL.
 * Returns 0, QV_NOTFOUND, QV_INVALID, QV_IO. */
int qc_log_last_seq(qc_log *lg, const char *coll, uint32_t shard, uint64_t *last, uint64_t *first);

/* Drops the shard's messages with sequence < below_seq (below_seq <= 1 does
 * nothing). Sequences are never reused: later messages keep counting on.
 * Returns 0, QV_NOTFOUND, QV_INVALID, QV_IO. */
int qc_log_trim(qc_log *lg, const char *coll, uint32_t shard, uint64_t below_seq);

/* Appends one message to the shard's stream and waits for its acknowledgement.
 * Retries with backoff (25 ms doubling to 500 ms) on no responders, timeouts,
 * disconnections and leader changes until the deadline. Safe to retry with
 * the same msg_id (even after QV_IO): the stream keeps one copy.
 * [in] msg_id: the message id (Nats-Msg-Id), 1..QC_LOG_MAX_ID bytes, no CR/LF.
 * [in] data: len bytes, len <= QC_LOG_MAX_MSG (len 0 is allowed).
 * [in] deadline_ms: CLOCK_REALTIME milliseconds; the last attempt ends by it.
 * [out] seq: the stream sequence (for a duplicate: the original's); may be NULL.
 * [out] duplicate: 1 if the stream already held msg_id, else 0; may be NULL.
 * [out] err: a message on failure (errlen bytes, may be NULL/0).
 * Returns 0, QV_LIMIT (len over the cap: split), QV_INVALID, QV_NOTFOUND (the
 * stream does not exist), QV_IO (not acknowledged by the deadline: the
 * message may or may not be stored), QV_SHUTDOWN. */
int qc_log_publish(qc_log *lg, const char *coll, uint32_t shard, const char *msg_id, const void *data,
                   size_t len, int64_t deadline_ms, uint64_t *seq, int *duplicate, char *err,
                   size_t errlen);

/* Starts a follower: a thread that hands the shard's messages with sequence
 * >= from_seq to apply, strictly in stream order, in batches of what is
 * available (up to QC_LOG_BATCH_MSGS messages / QC_LOG_BATCH_BYTES, never
 * waiting to fill one). It uses an ordered, ephemeral push consumer with no
 * acks; on any error (server restart, leader change, consumer lost, missed
 * heartbeats, nothing arriving while the stream has more) it subscribes
 * again from the sequence after the last batch apply accepted, after a
 * backoff. Sequences may have gaps (trimmed or deleted messages); a
 * sequence is never handed out again once apply accepted it.
 * [in] from_seq: the first sequence wanted, >= 1.
 * [in] apply, ctx: see qc_log_apply_fn; called only from the follower thread.
 * [out] out: stop it with qc_follow_stop before closing the log.
 * The stream need not exist yet: the follower waits for it.
 * Returns 0, QV_INVALID, QV_NOMEM. */
int qc_log_follow(qc_log *lg, const char *coll, uint32_t shard, uint64_t from_seq, qc_log_apply_fn apply,
                  void *ctx, qc_follow **out);

/* The last sequence apply accepted (from_seq - 1 before the first batch).
 * Any thread. */
uint64_t qc_follow_position(qc_follow *f);

/* Stops the follower (within about 200 ms; up to 2 s while it is subscribing
 * again during an outage; and not before a running apply returns),
 * joins its thread and frees it. NULL is a no-op. Not from inside apply. */
void qc_follow_stop(qc_follow *f);

#ifdef __cplusplus
}
#endif

#endif
