/*
 * The gRPC core call machinery of quiverd: worker threads polling one shared
 * completion queue, a per-call object (struct rpc) driven by two tags, request
 * slots per method, and the shutdown order of GRPC-CORE.md section 6. Service
 * files implement handlers against this header; they never see the queue.
 * This layer knows handlers only through the method table it is given
 * (rpc_server_opts.methods, server/methods.c) and the hooks beside it: it
 * calls no handler, health or metrics function by name.
 *
 * Rules for handlers:
 *  - A call's first message (unary and server-streaming methods) is decoded
 *    before start runs, with the method's request descriptor, and handed over
 *    as r->req; one that does not decode is answered INVALID_ARGUMENT
 *    ("cannot decode SearchRequest: <reason>") and never reaches start.
 *    r->req is the loop's: it lives as long as r and is freed with it, so it
 *    stays valid through start and every step (the loop holds a reference
 *    while they run), after rpc_finish too, and for a write in flight (which
 *    holds its own reference).
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

/* Flags of a method (Redis's CMD_WRITE), checked by the loop only. */
enum {
    /* A write: its first message counts against --max-queued-writes from the
     * moment it is taken in (held_bytes), and no call of it is taken from the
     * network while the write queue is at that budget. */
    RPC_WRITE = 1 << 0,
    /* Client streaming or bidi: there is no first message; the handler reads
     * each one with rpc_recv and rpc_recv_unpack. */
    RPC_STREAM_IN = 1 << 1,
};

/* One entry of the method table. */
typedef struct rpc_method {
    const char *path;                          /* "/quiver.v1.Search/Search" */
    const ProtobufCMessageDescriptor *request; /* what each request message is */
    int flags;                                 /* RPC_WRITE, RPC_STREAM_IN */
    /* What a decoded request of wire_bytes holds until its reply (NULL: as
     * many bytes as its wire form). */
    size_t (*held_bytes)(size_t wire_bytes);
    void (*start)(rpc *r);
    void (*step)(rpc *r, int ok); /* may be NULL: nothing to do */
    void (*closed)(rpc *r);       /* call ended (cancelled or not); may be NULL */
} rpc_method;

struct rpc {
    rpc_tag t_step, t_close;
    int method; /* index into the method table, or -1 for unknown methods */
    int accepted;
    grpc_call *call;
    gpr_timespec deadline;
    grpc_call_details details; /* unknown methods */
    grpc_metadata_array req_md;
    grpc_byte_buffer *payload; /* first message on the wire (freed once decoded) */
    ProtobufCMessage *req;     /* first message decoded (NULL: RPC_STREAM_IN); freed with r */
    size_t held;               /* what req holds, by the method's held_bytes:
                                * a write's charge to the queue (qv_write.bytes) */
    grpc_byte_buffer *recv_bb; /* target of rpc_recv */
    grpc_byte_buffer *send_bb; /* kept until its batch completes */
    int cancelled;             /* from RECV_CLOSE_ON_SERVER */
    atomic_int refs;
    atomic_int closed;
    size_t reserved;           /* write bytes reserved at accept (RPC_WRITE; rpc_unreserve) */
    int md_sent;
    atomic_int done;           /* status sent: read by other workers (on_step) */
    grpc_slice status_details;
    qv_db *db;
    struct timespec t0; /* taken in (CLOCK_MONOTONIC), for the latency metric */
    int status;         /* the status sent (-1: none: the call was cancelled) */
    auth_ctx auth;      /* the API key the call was admitted with */
    /* a call made inside this process (rpc_call_local): no gRPC call; the
     * reply is captured here */
    int local;
    uint8_t *local_reply;
    size_t local_len;
    char local_msg[1024];
    void *state;
    void (*state_free)(void *state);
};

/* The db every handler uses (opened by main before rpc_serve). */
extern qv_db *g_db;

/* Give back the write bytes reserved when the call was taken in (before its
 * write is submitted; done at the latest when r is freed). */
void rpc_unreserve(rpc *r);

/* When to give up on the call's behalf (CLOCK_REALTIME ms, 0 = never): its
 * deadline less a margin for the reply to reach the caller. */
int64_t rpc_deadline_ms(const rpc *r);

void rpc_ref(rpc *r);
void rpc_unref(rpc *r);

/* Decode the message a step received (r->recv_bb, taken and destroyed here)
 * with the method's request descriptor: strings are checked first (valid
 * UTF-8, no NUL), then protobuf-c unpacks it. Returns the message, which the
 * caller frees (protobuf_c_message_free_unpacked), or NULL when there was none
 * or it does not decode: rpc_unpack_error says why. held (may be NULL): what
 * the decoded message holds, by the method's held_bytes. */
ProtobufCMessage *rpc_recv_unpack(rpc *r, size_t *held);
/* Why this thread's last decode failed: a string field's path and what is
 * wrong with it (invalid UTF-8, a NUL byte), a malformed message, or no
 * message. Valid until the thread's next decode. */
const char *rpc_unpack_error(void);

/* Run a unary method's handler inside this process, on this thread, as if
 * a peer had called it (the cluster's router reading a replica this node
 * holds: no network, no copy of the request). For handlers that answer
 * before they return (the reads). Returns the status; on OK the packed
 * reply in *reply (malloc'd, *len bytes), else the message in msg. */
grpc_status_code rpc_call_local(const char *path, const ProtobufCMessage *req, uint8_t **reply,
                                size_t *len, char *msg, size_t msglen);

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
    const rpc_method *methods;      /* the method table: nmethods entries, */
    int nmethods;                   /* alive until rpc_serve returns */
    /* Hooks, each may be NULL. method is an index into methods, or -1 for a
     * method quiverd does not serve; code is the status sent (CANCELLED when
     * none was). */
    void (*call_begin)(int method);
    void (*call_end)(int method, int code, double seconds);
    void (*serving)(int on); /* 1 once calls are taken, 0 when shutdown begins */
} rpc_server_opts;
/* Is a listen address a unix socket (unix:PATH, unix-abstract:NAME)? It has
 * no port, and only this host reaches it. */
int rpc_listen_is_unix(const char *listen);

int rpc_serve(const rpc_server_opts *o);

#endif
