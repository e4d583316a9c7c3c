/*
 * qc_etcd: a small etcd v3 client for the cluster's metadata, spoken over
 * etcd's gRPC API (gRPC core + protobuf-c, protos compiled by etcd.cmake).
 * Key/values, create-if-absent and compare-and-swap transactions, leases
 * kept alive in the background, and prefix watches that survive reconnects.
 *
 * Caveats (read these first):
 * - Thread safety: one qc_etcd may be used by any number of threads at once.
 *   qc_etcd_close must come last, after every other call on it has returned
 *   and every qc_watch has been cancelled.
 * - Endpoints: the client holds one channel per URL and sends each call to the
 *   endpoint that last answered. While an endpoint cannot serve (down,
 *   stopped, refusing, "no leader") the call waits for it at most its share
 *   of the time left (time left / URLs still to try) and moves on to the
 *   next URL, so a dead etcd cannot eat the whole budget and a dead first URL
 *   costs only the first call some time. When no endpoint answers, rounds
 *   repeat until the timeout given at open, which rides out a leader
 *   election or an etcd restart; then the call returns QV_IO. No call ever
 *   blocks longer than that timeout (watch and keepalive threads aside).
 * - Retries and writes: a write whose attempt timed out may still have been
 *   applied before the client moved on; the retry then sees its own effect
 *   (qc_etcd_create -> QV_EXISTS, qc_etcd_cas -> QV_BUSY). After QV_IO the
 *   outcome of a write is unknown: re-read before deciding.
 * - Callbacks (watch events, lease loss) run on the client's background
 *   threads. They may call qc_etcd_* functions, but must not cancel their own
 *   watch, revoke their own lease or close the client.
 * - Keys are C strings; values are bytes. Memory returned in a qc_kv belongs
 *   to the caller (qc_kv_free / qc_kvs_free); memory passed to a callback is
 *   valid only during the callback.
 * - gRPC: qc_etcd_open calls grpc_init() and qc_etcd_close grpc_shutdown()
 *   (reference counted), so callers need neither.
 *
 * Errors: 0 on success or a negative code of include/quiver/error.h:
 * QV_NOTFOUND (no such key or lease), QV_EXISTS (create of an existing key),
 * QV_BUSY (compare-and-swap lost: the key changed), QV_IO (etcd unreachable or
 * no answer within the timeout), QV_INVALID (bad argument, or etcd refused the
 * request), QV_LIMIT (etcd refused the size), QV_NOMEM, QV_SHUTDOWN (the
 * client is closing). qc_etcd_errmsg() tells the calling thread why its last
 * call failed.
 */
#ifndef QUIVER_CLUSTER_ETCD_H
#define QUIVER_CLUSTER_ETCD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qc_etcd qc_etcd;   /* a client of one etcd cluster */
typedef struct qc_watch qc_watch; /* a live prefix watch */

/* TLS for the etcd connections: PEM file paths. ca NULL = the system roots;
 * cert and key both set = mutual TLS (client certificate). */
typedef struct qc_etcd_tls {
    const char *ca;
    const char *cert;
    const char *key;
} qc_etcd_tls;

/* One key and its value. Revisions are etcd's: create_rev of the key's
 * creation, mod_rev of its last change; lease 0 = none. */
typedef struct qc_kv {
    char *key;    /* NUL-terminated */
    uint8_t *val; /* val_len bytes, plus a NUL after them for convenience */
    size_t val_len;
    int64_t create_rev, mod_rev, lease;
} qc_kv;

/* Watch event types. QC_RESET: events were lost (the revision the watch had
 * to resume from was compacted); the watch goes on from kv->mod_rev, the
 * oldest revision etcd still has (kv->key is NULL). Re-read the prefix with
 * qc_etcd_range and ignore later events whose mod_rev is <= its header_rev. */
enum { QC_PUT = 1, QC_DELETE = 2, QC_RESET = 3 };

/* Connect to etcd. No call is made here: a cluster that is down now is not
 * an error (calls fail with QV_IO until it is up).
 * [in] urls "http://host:port" or "https://host:port", comma-separated
 * [in] tls NULL = plaintext, or TLS with the system roots for https URLs;
 *          else TLS/mTLS files (URLs https:// or without a scheme)
 * [in] timeout_ms bound of every call (<= 0: 5000)
 * [out] out the client, for qc_etcd_close
 * [out] err message on failure (may be NULL)
 * Returns 0, QV_INVALID (bad URL, http and https mixed, TLS files for http,
 * unreadable PEM file, cert without key), QV_NOMEM. */
int qc_etcd_open(const char *urls, const qc_etcd_tls *tls, int timeout_ms, qc_etcd **out,
                 char *err, size_t errlen);
/* Stop every lease keepalive, close the channels and free. NULL is a no-op. */
void qc_etcd_close(qc_etcd *e);

/* Why the calling thread's last failed call failed ("" if none); valid until
 * that thread's next qc_etcd call. */
const char *qc_etcd_errmsg(void);

/* ------------------------------------------------------------- key/values */
/* Read one key. [out] out filled on 0 (qc_kv_free it). Returns 0, QV_NOTFOUND. */
int qc_etcd_get(qc_etcd *e, const char *key, qc_kv *out);
/* Every key starting with prefix ("" = every key), in key order, read at one
 * revision. [out] kvs *n entries (qc_kvs_free; NULL when n is 0)
 * [out] header_rev the store revision they were read at (may be NULL). */
int qc_etcd_range(qc_etcd *e, const char *prefix, qc_kv **kvs, size_t *n, int64_t *header_rev);
/* Free what a qc_kv holds (not the struct) and zero it. NULL is a no-op. */
void qc_kv_free(qc_kv *kv);
/* Free an array from qc_etcd_range. */
void qc_kvs_free(qc_kv *kvs, size_t n);

/* Set key to val[0..len) (len 0 is an empty value); lease 0 = none.
 * Returns 0, QV_NOTFOUND (no such lease). */
int qc_etcd_put(qc_etcd *e, const char *key, const void *val, size_t len, int64_t lease);
/* Set key only if it does not exist. Returns 0 or QV_EXISTS. */
int qc_etcd_create(qc_etcd *e, const char *key, const void *val, size_t len, int64_t lease);
/* Set key only if its mod revision is still mod_rev (from a get or range).
 * Returns 0 or QV_BUSY (changed or deleted since). The key keeps its lease. */
int qc_etcd_cas(qc_etcd *e, const char *key, const void *val, size_t len, int64_t mod_rev);
/* Delete one key. Returns 0 or QV_NOTFOUND (there was none). */
int qc_etcd_delete(qc_etcd *e, const char *key);
/* Delete every key under prefix (none is fine). "" is refused (QV_INVALID). */
int qc_etcd_delete_prefix(qc_etcd *e, const char *prefix);

/* ------------------------------------------------------------------ leases */
/* Grant a lease of ttl_s seconds (etcd raises very small TTLs to its
 * minimum). [out] id the lease. */
int qc_etcd_lease_grant(qc_etcd *e, int ttl_s, int64_t *id);
/* Keep lease id alive from a background thread (one LeaseKeepAlive stream,
 * a refresh every TTL/3, reconnecting to any endpoint after errors) until
 * qc_etcd_lease_revoke or qc_etcd_close. Returns 0 (also when already kept
 * alive), QV_NOTFOUND (no such lease, or expired), QV_IO. */
int qc_etcd_lease_keepalive(qc_etcd *e, int64_t id);
/* 1 while lease id is kept alive and its last refresh was acknowledged less
 * than one TTL ago; 0 when it is lost (etcd said so), overdue, or not kept
 * alive by this client. Overdue is not lost: an etcd that was down and comes
 * back usually extends its leases, and this turns 1 again. */
int qc_etcd_lease_alive(qc_etcd *e, int64_t id);
/* Called once, from the keepalive thread, when etcd answers that a kept-alive
 * lease no longer exists (expired while unreachable, or revoked elsewhere);
 * the keepalive of that lease then stops. Read at the time of the loss, so
 * it may be set before or after starting keepalives; cb NULL = none. */
void qc_etcd_on_lease_lost(qc_etcd *e, void (*cb)(void *ctx, int64_t id), void *ctx);
/* Stop keeping lease id alive and revoke it (its keys are deleted).
 * Returns 0, QV_NOTFOUND (no such lease; the keepalive is stopped anyway). */
int qc_etcd_lease_revoke(qc_etcd *e, int64_t id);

/* ------------------------------------------------------------------- watch */
/* Watch every key under prefix from start_rev (0 = from now: every change
 * after this call returns is reported). A background thread calls
 * cb(ctx, QC_PUT or QC_DELETE, kv) for each event, in revision order; on a
 * DELETE kv->val is empty and kv->mod_rev is the deletion's revision. When
 * the stream breaks the thread reconnects (any endpoint) and resumes after
 * the last revision seen, so no event is lost or repeated, except after a
 * compaction (QC_RESET, see above). [out] out the watch, for qc_watch_cancel.
 * Returns 0, QV_IO (start_rev 0 needs etcd now to learn the revision). */
int qc_etcd_watch(qc_etcd *e, const char *prefix, int64_t start_rev,
                  void (*cb)(void *ctx, int type, const qc_kv *kv), void *ctx, qc_watch **out);
/* Stop the watch, wait for its thread (no callback runs after this returns)
 * and free it. NULL is a no-op. */
void qc_watch_cancel(qc_watch *w);

#ifdef __cplusplus
}
#endif

#endif
