/*
 * The gRPC core call machinery of quiverd: worker threads polling one shared
 * completion queue, a per-call object (struct rpc) driven by two tags, request
 * slots per method, and the shutdown order of GRPC-CORE.md section 6. Service
 * files implement handlers against this header; they never see the queue.
 *
 * Rules for handlers:
 *  - start(r) runs once when a call arrives; step(r, ok) runs when the batch
 *    the handler started completes (at most one step batch in flight).
 *  - rpc_finish/rpc_send/rpc_recv start a batch and must be the handler's last
 *    touch of r: another worker may already be running its completion. A
 *    handler that answers later (from the writer or a rebuild thread) holds a
 *    reference (rpc_ref) until then and drops it (rpc_unref) after finishing.
 *  - r->state is the handler's; r->state_free (if set) frees it with r.
 */
#ifndef QUIVERD_RPC_H
#define QUIVERD_RPC_H

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>
#include <stdatomic.h>
#include <time.h>

#include "auth.h"
#include "quiver/db.h"

typedef struct rpc rpc;
typedef enum { TAG_STEP, TAG_CLOSE, TAG_SHUTDOWN } tag_kind;
typedef struct {
    tag_kind kind;
    rpc *r;
} rpc_tag;

typedef struct rpc_method {
    const char *path;
    int streaming_request; /* 1: client streaming / bidi (no initial payload) */
    void (*start)(rpc *r);
    void (*step)(rpc *r, int ok);     /* may be NULL: nothing to do */
    void (*closed)(rpc *r);           /* call ended (cancelled or not); may be NULL */
    void *handle;
} rpc_method;

struct rpc {
    rpc_tag t_step, t_close;
    int method; /* index into the method table, or -1 for unknown methods */
    int accepted;
    grpc_call *call;
    gpr_timespec deadline;
    grpc_call_details details; /* unknown methods */
    grpc_metadata_array req_md;
    grpc_byte_buffer *payload; /* first message of unary/server-streaming calls */
    grpc_byte_buffer *recv_bb; /* target of rpc_recv */
    grpc_byte_buffer *send_bb; /* kept until its batch completes */
    int cancelled;             /* from RECV_CLOSE_ON_SERVER */
    atomic_int refs;
    atomic_int closed;
    size_t reserved;           /* write bytes reserved at accept (rpc_unreserve) */
    int md_sent;
    atomic_int done;           /* status sent: read by other workers (on_step) */
    grpc_slice status_details;
    qv_db *db;
    struct timespec t0; /* taken in (CLOCK_MONOTONIC), for the latency metric */
    int status;         /* the status sent (-1: none: the call was cancelled) */
    auth_ctx auth;      /* the API key the call was admitted with */
    void *state;
    void (*state_free)(void *state);
};

/* The method table (server/rpc.c) and the db every handler uses. */
extern qv_db *g_db;
/* Largest k a search may ask for (--max-k). */
extern unsigned g_max_k;
extern size_t g_max_reply; /* --max-reply: bytes a reply may take */

/* Give back the write bytes reserved when the call was taken in (before its
 * write is submitted; done at the latest when r is freed). */
void rpc_unreserve(rpc *r);

/* When to give up on the call's behalf (CLOCK_REALTIME ms, 0 = never): its
 * deadline less a margin for the reply to reach the caller. */
int64_t rpc_deadline_ms(const rpc *r);

void rpc_ref(rpc *r);
void rpc_unref(rpc *r);

/* Decode a byte buffer into a protobuf-c message (NULL if malformed). */
ProtobufCMessage *rpc_unpack(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *d);
/* Why the last rpc_unpack of this thread returned NULL: a string field's path
 * and what is wrong with it (invalid UTF-8, a NUL byte), or a malformed
 * message. */
const char *rpc_unpack_error(void);

/* [initial metadata] [+ reply] + status, in one batch. details may be NULL. */
void rpc_finish(rpc *r, const ProtobufCMessage *reply, grpc_status_code code, const char *details);
/* Like rpc_finish with a reply already encoded (len bytes): fill(ctx, buf)
 * writes it straight into the message buffer. */
void rpc_finish_encoded(rpc *r, size_t len, void (*fill)(void *ctx, uint8_t *buf), void *ctx);
/* printf-style error status. */
void rpc_fail(rpc *r, grpc_status_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Send one message of a server stream (with status when last). */
void rpc_send(rpc *r, const ProtobufCMessage *msg, int last);
/* Send a message and post RECV_MESSAGE in one batch (bidi request/reply). */
void rpc_send_recv(rpc *r, const ProtobufCMessage *msg);
/* Post a RECV_MESSAGE (client streaming); step() sees r->recv_bb (NULL = end). */
void rpc_recv(rpc *r);
/* Send initial metadata and post RECV_MESSAGE in one batch (first step of a
 * client stream). */
void rpc_start_stream(rpc *r);

/* Run the server until SIGINT/SIGTERM. Returns the process exit code. */
typedef struct rpc_server_opts {
    const char *listen;
    int threads;
    int max_recv;   /* bytes */
    int grace_ms;
    grpc_server_credentials *creds; /* TLS (taken over), or NULL: plain text */
    const char *auth_keys;          /* re-read on SIGHUP (NULL: none) */
} rpc_server_opts;
int rpc_serve(const rpc_server_opts *o);

/* The method table: how many, and each one's path ("/quiver.v1.Search/Search"). */
int rpc_method_count(void);
const char *rpc_method_path(int m);

/* Health: serving state for Check/Watch. */
void health_set_serving(int serving);

#endif
