/*
 * qvc: the small C client library shared by Quiver's tools (the `quiver` CLI
 * and the benchmark's quiver-bench-load). It speaks gRPC through the gRPC core C API
 * and protobuf-c: unary calls, server-streaming calls (RebuildIndex) and
 * client-streaming calls (Import). It knows nothing about Quiver's messages
 * beyond method paths; callers pass protobuf-c messages and descriptors.
 *
 * Caveats (read these first):
 * - Thread safety: one qvc (one channel) may be shared by any number of
 *   threads; every call waits on its own completion queue. A qvc_stream or
 *   qvc_upload belongs to one thread at a time, except qvc_stream_cancel,
 *   which any thread may call while the stream is live (before
 *   qvc_stream_finish returns).
 * - qvc_close must come after every stream/upload of the connection has been
 *   finished.
 * - The library calls grpc_init() in qvc_open_secure and grpc_shutdown() in
 *   qvc_close (both are reference counted by gRPC), so callers need neither.
 * - Calls do not wait for the server to become reachable (gRPC's
 *   wait_for_ready is off): a down server fails at once with UNAVAILABLE, or
 *   with DEADLINE_EXCEEDED when a connection attempt outlives the deadline.
 *   qvc_wait_ready gives a connect timeout before the first call.
 * - Signals: gRPC starts threads in qvc_open_secure; block signals you want to
 *   handle yourself (sigwait) before calling it, so those threads inherit the
 *   mask.
 *
 * Error convention: functions that talk to the server return the gRPC status
 * code (0 = GRPC_STATUS_OK, otherwise a positive grpc_status_code from
 * <grpc/status.h>) and fill a qvc_status with the code and the server's
 * message. Failures on the client side (cannot encode, reply does not decode,
 * out of memory) are reported as GRPC_STATUS_INTERNAL or
 * GRPC_STATUS_RESOURCE_EXHAUSTED with a message starting "client: ".
 */
#ifndef QUIVER_TOOLS_CLIENT_H
#define QUIVER_TOOLS_CLIENT_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Method paths of Quiver's services (and the standard health check). Any
 * other "/package.Service/Method" string works too. */
#define QVC_COLLECTIONS_CREATE   "/quiver.v1.Collections/Create"
#define QVC_COLLECTIONS_DESCRIBE "/quiver.v1.Collections/Describe"
#define QVC_COLLECTIONS_LIST     "/quiver.v1.Collections/List"
#define QVC_COLLECTIONS_DROP     "/quiver.v1.Collections/Drop"
#define QVC_ITEMS_UPSERT         "/quiver.v1.Items/Upsert"
#define QVC_ITEMS_IMPORT         "/quiver.v1.Items/Import"
#define QVC_ITEMS_GET            "/quiver.v1.Items/Get"
#define QVC_ITEMS_SCAN           "/quiver.v1.Items/Scan"
#define QVC_ITEMS_DELETE         "/quiver.v1.Items/Delete"
#define QVC_SEARCH_SEARCH        "/quiver.v1.Search/Search"
#define QVC_SEARCH_RECOMMEND     "/quiver.v1.Search/Recommend"
#define QVC_SEARCH_RECOMMEND_BATCH "/quiver.v1.Search/RecommendBatch"
#define QVC_ADMIN_REBUILD_INDEX  "/quiver.v1.Admin/RebuildIndex"
#define QVC_ADMIN_BACKUP         "/quiver.v1.Admin/Backup"
#define QVC_ADMIN_CLUSTER_STATUS "/quiver.v1.Admin/ClusterStatus"
#define QVC_ADMIN_DRAIN_NODE     "/quiver.v1.Admin/DrainNode"
#define QVC_ADMIN_REBALANCE      "/quiver.v1.Admin/Rebalance"
#define QVC_ADMIN_RESTORE        "/quiver.v1.Admin/Restore"
#define QVC_HEALTH_CHECK         "/grpc.health.v1.Health/Check"

/* Largest message sent or received: 64 MiB. */
#define QVC_MAX_MESSAGE_BYTES (64 << 20)

/* Flags of qvc_open_secure. */
#define QVC_OWN_CONNECTION 1 /* a TCP connection of its own instead of the one
                                shared by channels with the same target */

typedef struct qvc qvc;               /* a connection (channel) to one server */
typedef struct qvc_stream qvc_stream; /* a live server-streaming call */
typedef struct qvc_upload qvc_upload; /* a live client-streaming call */

/* Outcome of a call. details is the server's message, or the library's own
 * (starting "client: "), truncated to fit; "" when there is none. */
typedef struct qvc_status {
    int code; /* grpc_status_code; 0 = OK */
    char details[1024];
} qvc_status;

/* Name of a gRPC status code: "OK", "NOT_FOUND", ...; "UNKNOWN_STATUS" for
 * a code outside 0..16. A static string, never NULL. */
const char *qvc_status_name(int code);

/* How to reach a server that wants API keys or TLS. */
typedef struct qvc_security {
    const char *api_key; /* sent as "authorization: Bearer KEY" on every call (NULL: none) */
    int tls;             /* 1: TLS, trusting the system's roots unless tls_ca */
    const char *tls_ca;  /* PEM file of the CA to trust (implies tls) */
    const char *tls_cert, *tls_key; /* PEM files: a client certificate (mTLS) */
} qvc_security;

/* Open a connection. Nothing is sent until the first call or qvc_wait_ready.
 * [in]  addr   gRPC target: "host:port", "ipv4:1.2.3.4:5", "dns:///h:p",
 *              "unix:/path". Copied.
 * [in]  flags  0 or QVC_OWN_CONNECTION.
 * [in]  sec    API key and TLS; NULL: plain text, no key.
 * [out] out    the connection; free it with qvc_close.
 * [out] err    errlen bytes, naming a PEM file that cannot be read (may be NULL).
 * Returns 0, or GRPC_STATUS_INVALID_ARGUMENT (empty addr, an unreadable PEM
 * file), GRPC_STATUS_RESOURCE_EXHAUSTED (out of memory). */
int qvc_open_secure(const char *addr, int flags, const qvc_security *sec, qvc **out, char *err,
                    size_t errlen);

/* Close the connection. Every call made on it must have ended. NULL is a
 * no-op. */
void qvc_close(qvc *c);

/* Connect now and wait until the channel is ready.
 * [in]  timeout_ms  how long to wait (> 0).
 * [out] st          may be NULL.
 * Returns 0 when ready; GRPC_STATUS_UNAVAILABLE when the connection attempt
 * failed (refused, unknown host...) or the channel is shut down;
 * GRPC_STATUS_DEADLINE_EXCEEDED when it is still connecting at the timeout. */
int qvc_wait_ready(qvc *c, int timeout_ms, qvc_status *st);

/* One unary call.
 * [in]  method      "/package.Service/Method" (e.g. QVC_SEARCH_SEARCH); the
 *                   string is copied on its first use on this connection.
 * [in]  req         the request message (not modified, still the caller's).
 * [in]  reply_desc  descriptor of the reply type.
 * [out] reply       on 0: the decoded reply, owned by the caller, freed with
 *                   protobuf_c_message_free_unpacked(*reply, NULL). On error:
 *                   NULL.
 * [out] st          may be NULL.
 * [in]  timeout_ms  deadline from now; <= 0 means none.
 * Returns the status code (0 = OK). */
int qvc_unary(qvc *c, const char *method, const ProtobufCMessage *req,
              const ProtobufCMessageDescriptor *reply_desc, ProtobufCMessage **reply,
              qvc_status *st, int timeout_ms);

/* ---------------------------------------------------- server streaming */

/* Like qvc_unary, but the reply's bytes go to decode(ctx, buf, len) (valid
 * during the call only), which returns 0 if it understood them: for clients
 * that read part of a large reply without building it (the benchmark reads
 * hit ids, not attributes). Same return values. */
int qvc_unary_decode(qvc *c, const char *method, const ProtobufCMessage *req,
                     int (*decode)(void *ctx, const uint8_t *buf, size_t len), void *ctx,
                     qvc_status *st, int timeout_ms);

/* Start a server-streaming call: sends the request and returns without
 * waiting for the server. Errors the server answers with (unknown
 * collection, ...) show up as the end of the stream, then in
 * qvc_stream_finish.
 * [in]  method, req, timeout_ms  as for qvc_unary.
 * [out] out  the stream; end it with qvc_stream_finish (always, also when
 *            qvc_stream_next fails). NULL on error.
 * [out] st   may be NULL.
 * Returns 0, or a client-side error code (nothing to finish then). */
int qvc_stream_start(qvc *c, const char *method, const ProtobufCMessage *req, int timeout_ms,
                     qvc_stream **out, qvc_status *st);

/* Wait for the next message of the stream.
 * [in]  desc  descriptor of the message type.
 * [out] msg   on 1: the message, owned by the caller
 *             (protobuf_c_message_free_unpacked); otherwise NULL.
 * Returns 1 for a message, 0 at the end of the stream (normal or not: the
 * status tells), -1 when a message does not decode (the call is cancelled;
 * qvc_stream_finish then reports INTERNAL). */
int qvc_stream_next(qvc_stream *s, const ProtobufCMessageDescriptor *desc, ProtobufCMessage **msg);

/* Cancel the call (the server sees the cancellation; the client gets
 * CANCELLED). Any thread, any time before qvc_stream_finish returns; a
 * blocked qvc_stream_next then returns 0. */
void qvc_stream_cancel(qvc_stream *s);

/* Receive the final status and free the stream. Called before the end of the
 * stream, it cancels the call first. NULL is a no-op returning 0.
 * Returns the status code (0 = OK). */
int qvc_stream_finish(qvc_stream *s, qvc_status *st);

/* ---------------------------------------------------- client streaming */

/* Start a client-streaming call (e.g. QVC_ITEMS_IMPORT).
 * [out] out  the upload; end it with qvc_upload_finish. NULL on error.
 * Returns 0 or a client-side error code. */
int qvc_upload_start(qvc *c, const char *method, int timeout_ms, qvc_upload **out,
                     qvc_status *st);

/* Send one message. One send stays in flight while the caller prepares the
 * next one: the call waits for the previous send, not for this one. msg is
 * encoded at once and stays the caller's (free it whenever).
 * Returns 0; or -1 when the call has already ended (the server answered
 * early, e.g. with an error, the deadline passed, the call was cancelled) or
 * msg could not be encoded: stop sending and call qvc_upload_finish for the
 * status. */
int qvc_upload_send(qvc_upload *u, const ProtobufCMessage *msg);

/* Half-close, wait for the reply and the status, free the upload.
 * [out] reply  on 0: the decoded reply (caller frees it with
 *              protobuf_c_message_free_unpacked); NULL on error. May be NULL
 *              when reply_desc is NULL (reply ignored).
 * Returns the status code (0 = OK). */
int qvc_upload_finish(qvc_upload *u, const ProtobufCMessageDescriptor *reply_desc,
                      ProtobufCMessage **reply, qvc_status *st);

#ifdef __cplusplus
}
#endif
#endif
