/*
 * gRPC core event loop of quiverd (server/rpc.h): method registration,
 * request slots, worker threads on one shared completion queue, the per-call
 * state machine, decoding each call's request and the shutdown order. It
 * serves the method table it is given (server/methods.c) and knows no
 * handler by name; the handlers live in the svc_*.c files.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <omp.h>

#include "quiver/log.h"
#include "rpc.h"
#include "wirecheck.h"

#define SLOTS 8

/* The table and hooks rpc_serve was given (read-only once serving). */
static const rpc_method *g_methods;
static int g_nmethods;
static void **g_handles; /* grpc_server_register_method's, per method */
static void (*g_call_begin)(int method);
static void (*g_call_end)(int method, int code, double seconds);
#define M_UNKNOWN (-1)

qv_db *g_db;
static grpc_server *g_server;
static grpc_completion_queue *g_cq;
static rpc_tag g_shutdown_tag = {TAG_SHUTDOWN, NULL};
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static int g_shutdown_done;
/* rpc objects alive (pending slots + calls): the queue may be shut down only
 * when this is 0, not merely when the shutdown tag arrives */
static atomic_long g_outstanding;
static atomic_int g_stopping;

static void post_request(int method);

/* Write calls are not taken from the network while the writer's queue is at
 * its budget (--max-queued-writes): their request slots wait here (one count
 * per method), and gRPC's flow control holds the senders back instead of
 * quiverd buffering them. */
static atomic_int *g_deferred;

static int is_write_method(int m)
{
    return m >= 0 && (g_methods[m].flags & RPC_WRITE);
}

/* What a request of wire_bytes holds once decoded, by method m's measure. */
static size_t held_bytes(int m, size_t wire_bytes)
{
    return g_methods[m].held_bytes ? g_methods[m].held_bytes(wire_bytes) : wire_bytes;
}

static void repost_deferred(void)
{
    for (int m = 0; m < g_nmethods; m++)
        for (int n = atomic_exchange(&g_deferred[m], 0); n > 0; n--)
            if (!atomic_load(&g_stopping)) post_request(m);
}

static void on_write_room(void *ctx)
{
    (void)ctx;
    repost_deferred();
}

int64_t rpc_deadline_ms(const rpc *r)
{
    gpr_timespec t = gpr_convert_clock_type(r->deadline, GPR_CLOCK_REALTIME);
    if (gpr_time_cmp(t, gpr_inf_future(GPR_CLOCK_REALTIME)) >= 0 || t.tv_sec <= 0) return 0;
    int64_t at = (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
    /* a tenth of what is left (at least 30 ms) before it: a reply sent at the
     * deadline itself reaches a caller that has already given up */
    gpr_timespec now = gpr_now(GPR_CLOCK_REALTIME);
    int64_t left = at - ((int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000);
    int64_t margin = left / 10 > 30 ? left / 10 : 30;
    return at - margin > 0 ? at - margin : 1;
}

void rpc_unreserve(rpc *r)
{
    if (r->reserved) qv_db_write_unreserve(g_db, r->reserved);
    r->reserved = 0;
}

static void rpc_free(rpc *r)
{
    if (r->accepted) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        double sec = (double)(t.tv_sec - r->t0.tv_sec) + (double)(t.tv_nsec - r->t0.tv_nsec) / 1e9;
        if (g_call_end)
            g_call_end(r->method, r->status >= 0 ? r->status : GRPC_STATUS_CANCELLED, sec);
    }
    rpc_unreserve(r);
    if (r->state_free) r->state_free(r->state);
    auth_release(&r->auth);
    if (r->call) grpc_call_unref(r->call);
    grpc_metadata_array_destroy(&r->req_md);
    if (r->method == M_UNKNOWN) grpc_call_details_destroy(&r->details);
    if (r->payload) grpc_byte_buffer_destroy(r->payload);
    if (r->req) protobuf_c_message_free_unpacked(r->req, NULL);
    if (r->recv_bb) grpc_byte_buffer_destroy(r->recv_bb);
    if (r->send_bb) grpc_byte_buffer_destroy(r->send_bb);
    grpc_slice_unref(r->status_details);
    int local = r->local;
    free(r->local_reply);
    free(r);
    if (local) return; /* never counted among the calls taken in */
    if (atomic_fetch_sub(&g_outstanding, 1) == 1 && atomic_load(&g_stopping)) {
        pthread_mutex_lock(&g_mu);
        pthread_cond_broadcast(&g_cv);
        pthread_mutex_unlock(&g_mu);
    }
}

void rpc_ref(rpc *r) { atomic_fetch_add(&r->refs, 1); }

void rpc_unref(rpc *r)
{
    if (atomic_fetch_sub(&r->refs, 1) == 1) rpc_free(r);
}

/* Starts a batch on the step tag: the caller's last touch of r. */
static void start_step(rpc *r, const grpc_op *ops, size_t n)
{
    rpc_ref(r);
    grpc_call_error e = grpc_call_start_batch(r->call, ops, n, &r->t_step, NULL);
    if (e != GRPC_CALL_OK) {
        qv_error("start_batch: %s", grpc_call_error_to_string(e));
        rpc_unref(r);
    }
}

static grpc_op op_send_md(rpc *r)
{
    grpc_op o;
    memset(&o, 0, sizeof o);
    o.op = GRPC_OP_SEND_INITIAL_METADATA;
    r->md_sent = 1;
    return o;
}

static void free_slice_buf(void *p, size_t len)
{
    (void)len;
    free(p);
}

/* The message m packed for sending; 0, or -1 when memory ran out (malloc, not
 * grpc_slice_malloc: gRPC's allocator aborts the process instead). */
static int op_send_msg(rpc *r, const ProtobufCMessage *m, grpc_op *out)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) return -1;
    protobuf_c_message_pack(m, buf);
    grpc_slice s = grpc_slice_new_with_len(buf, len, free_slice_buf);
    if (r->send_bb) grpc_byte_buffer_destroy(r->send_bb);
    r->send_bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    memset(out, 0, sizeof *out);
    out->op = GRPC_OP_SEND_MESSAGE;
    out->data.send_message.send_message = r->send_bb;
    return 0;
}

#define OOM_REPLY "out of memory for the reply"

static grpc_op op_recv_msg(rpc *r)
{
    grpc_op o;
    memset(&o, 0, sizeof o);
    o.op = GRPC_OP_RECV_MESSAGE;
    o.data.recv_message.recv_message = &r->recv_bb;
    return o;
}

static grpc_op op_send_status(rpc *r, grpc_status_code code, const char *details)
{
    r->status = (int)code;
    grpc_op o;
    memset(&o, 0, sizeof o);
    o.op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    o.data.send_status_from_server.status = code;
    if (details) {
        grpc_slice_unref(r->status_details);
        r->status_details = grpc_slice_from_copied_string(details);
        o.data.send_status_from_server.status_details = &r->status_details;
    }
    r->done = 1;
    return o;
}

/* A local call's answer: kept for rpc_call_local. */
static void local_finish(rpc *r, const ProtobufCMessage *reply, grpc_status_code code, const char *details)
{
    if (reply && code == GRPC_STATUS_OK) {
        size_t len = protobuf_c_message_get_packed_size(reply);
        if ((r->local_reply = malloc(len ? len : 1))) {
            protobuf_c_message_pack(reply, r->local_reply);
            r->local_len = len;
        } else {
            code = GRPC_STATUS_RESOURCE_EXHAUSTED, details = OOM_REPLY;
        }
    }
    r->status = (int)code;
    snprintf(r->local_msg, sizeof r->local_msg, "%s", details ? details : "");
    r->done = 1;
}

grpc_status_code rpc_call_local(const char *path, const ProtobufCMessage *req, uint8_t **reply,
                                size_t *len, char *msg, size_t msglen)
{
    int m = -1;
    for (int i = 0; i < g_nmethods && m < 0; i++)
        if (!strcmp(g_methods[i].path, path) && !(g_methods[i].flags & RPC_STREAM_IN)) m = i;
    rpc *r = m >= 0 ? calloc(1, sizeof *r) : NULL;
    if (!r) {
        snprintf(msg, msglen, m < 0 ? "no method %s" : "out of memory", path);
        return m < 0 ? GRPC_STATUS_UNIMPLEMENTED : GRPC_STATUS_RESOURCE_EXHAUSTED;
    }
    r->local = 1;
    r->method = m;
    r->req = (ProtobufCMessage *)req; /* the caller's: never freed here */
    r->deadline = gpr_inf_future(GPR_CLOCK_REALTIME);
    r->status_details = grpc_empty_slice();
    r->status = -1;
    r->db = g_db;
    grpc_metadata_array_init(&r->req_md);
    atomic_init(&r->refs, 1);
    /* the node's own call: no caller's key scopes it (the router checked
     * the caller's before it came here) */
    const auth_ctx *outer = auth_current();
    auth_set_current(NULL);
    g_methods[m].start(r);
    auth_set_current(outer);
    grpc_status_code code = GRPC_STATUS_INTERNAL;
    if (!r->done) { /* an answer later is not supported: the call stays the handler's */
        snprintf(msg, msglen, "%s did not answer in place", path);
        r->req = NULL;
        rpc_unref(r);
        return code;
    }
    code = (grpc_status_code)r->status;
    if (code == GRPC_STATUS_OK) {
        *reply = r->local_reply;
        *len = r->local_len;
        r->local_reply = NULL;
    } else {
        snprintf(msg, msglen, "%s", r->local_msg);
    }
    r->req = NULL;
    rpc_unref(r);
    return code;
}

void rpc_finish(rpc *r, const ProtobufCMessage *reply, grpc_status_code code, const char *details)
{
    if (r->local) {
        local_finish(r, reply, code, details);
        return;
    }
    grpc_op ops[3];
    size_t n = 0;
    if (!r->md_sent) ops[n++] = op_send_md(r);
    if (reply && op_send_msg(r, reply, &ops[n]) == 0) n++;
    else if (reply) code = GRPC_STATUS_RESOURCE_EXHAUSTED, details = OOM_REPLY;
    ops[n++] = op_send_status(r, code, details);
    start_step(r, ops, n);
}

void rpc_finish_encoded(rpc *r, size_t len, void (*fill)(void *ctx, uint8_t *buf), void *ctx)
{
    /* malloc, not grpc_slice_malloc: gRPC's allocator aborts the process
     * when memory runs out; here that is this call's failure only */
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory for a reply of %zu bytes", len);
        return;
    }
    fill(ctx, buf);
    if (r->local) {
        r->local_reply = buf;
        r->local_len = len;
        r->status = GRPC_STATUS_OK;
        r->done = 1;
        return;
    }
    grpc_slice s = grpc_slice_new_with_len(buf, len, free_slice_buf);
    if (r->send_bb) grpc_byte_buffer_destroy(r->send_bb);
    r->send_bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    grpc_op ops[3];
    size_t n = 0;
    if (!r->md_sent) ops[n++] = op_send_md(r);
    memset(&ops[n], 0, sizeof ops[n]);
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = r->send_bb;
    ops[n++] = op_send_status(r, GRPC_STATUS_OK, NULL);
    start_step(r, ops, n);
}

void rpc_fail(rpc *r, grpc_status_code code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (code == GRPC_STATUS_INTERNAL) qv_error("%s: %s", r->method >= 0 ? g_methods[r->method].path : "?", msg);
    rpc_finish(r, NULL, code, msg);
}

void rpc_send(rpc *r, const ProtobufCMessage *msg, int last)
{
    if (r->local) { /* streams are not called in place */
        local_finish(r, NULL, GRPC_STATUS_UNIMPLEMENTED, "a stream cannot be called in place");
        (void)msg, (void)last;
        return;
    }
    grpc_op ops[3];
    size_t n = 0;
    if (!r->md_sent) ops[n++] = op_send_md(r);
    if (op_send_msg(r, msg, &ops[n]) != 0) {
        /* the stream ends here, with the reason */
        ops[n++] = op_send_status(r, GRPC_STATUS_RESOURCE_EXHAUSTED, OOM_REPLY);
        start_step(r, ops, n);
        return;
    }
    n++;
    if (last) ops[n++] = op_send_status(r, GRPC_STATUS_OK, NULL);
    start_step(r, ops, n);
}

void rpc_send_recv(rpc *r, const ProtobufCMessage *msg)
{
    grpc_op ops[3];
    size_t n = 0;
    if (!r->md_sent) ops[n++] = op_send_md(r);
    if (op_send_msg(r, msg, &ops[n]) != 0) {
        ops[n++] = op_send_status(r, GRPC_STATUS_RESOURCE_EXHAUSTED, OOM_REPLY);
        start_step(r, ops, n);
        return;
    }
    n++;
    ops[n++] = op_recv_msg(r);
    start_step(r, ops, n);
}

void rpc_recv(rpc *r)
{
    grpc_op op = op_recv_msg(r);
    start_step(r, &op, 1);
}

void rpc_start_stream(rpc *r)
{
    grpc_op ops[2];
    ops[0] = op_send_md(r);
    ops[1] = op_recv_msg(r);
    start_step(r, ops, 2);
}

static _Thread_local char unpack_err[600];

const char *rpc_unpack_error(void) { return unpack_err; }

/* Decode a byte buffer into a message of d: strings checked first, then
 * protobuf-c. NULL with the reason in unpack_err. */
static ProtobufCMessage *unpack(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *d)
{
    snprintf(unpack_err, sizeof unpack_err, "no message");
    if (!bb) return NULL;
    grpc_byte_buffer_reader rd;
    if (!grpc_byte_buffer_reader_init(&rd, bb)) return NULL;
    grpc_slice s = grpc_byte_buffer_reader_readall(&rd);
    grpc_byte_buffer_reader_destroy(&rd);
    ProtobufCMessage *m = NULL;
    /* strings first: protobuf-c would keep invalid UTF-8 and cut at a NUL */
    if (wire_check_strings(d, GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s), unpack_err,
                           sizeof unpack_err) == 0) {
        m = protobuf_c_message_unpack(d, NULL, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
        if (!m) snprintf(unpack_err, sizeof unpack_err, "malformed protobuf message");
    }
    grpc_slice_unref(s);
    return m;
}

ProtobufCMessage *rpc_recv_unpack(rpc *r, size_t *held)
{
    size_t wire = r->recv_bb ? grpc_byte_buffer_length(r->recv_bb) : 0;
    ProtobufCMessage *m = unpack(r->recv_bb, g_methods[r->method].request);
    if (r->recv_bb) grpc_byte_buffer_destroy(r->recv_bb);
    r->recv_bb = NULL;
    if (held) *held = held_bytes(r->method, wire);
    return m;
}

/* Decode the call's first message into r->req (RPC_STREAM_IN methods have
 * none); the wire copy goes once decoded. 0, or -1 with the call failed. */
static int decode_first(rpc *r)
{
    const rpc_method *m = &g_methods[r->method];
    if (m->flags & RPC_STREAM_IN) return 0;
    r->req = unpack(r->payload, m->request);
    if (r->payload) grpc_byte_buffer_destroy(r->payload);
    r->payload = NULL;
    if (r->req) return 0;
    rpc_fail(r, GRPC_STATUS_INVALID_ARGUMENT, "cannot decode %s: %s", m->request->short_name,
             unpack_err);
    return -1;
}

/* ------------------------------------------------------------ dispatcher */
static void unknown_start(rpc *r)
{
    char *m = grpc_slice_to_c_string(r->details.method);
    char msg[512];
    snprintf(msg, sizeof msg, "Method not found: %s", m);
    gpr_free(m);
    rpc_finish(r, NULL, GRPC_STATUS_UNIMPLEMENTED, msg);
}

static void post_request(int method)
{
    rpc *r = calloc(1, sizeof *r);
    if (!r) {
        qv_error("out of memory posting a request slot");
        return;
    }
    atomic_fetch_add(&g_outstanding, 1);
    r->t_step = (rpc_tag){TAG_STEP, r};
    r->t_close = (rpc_tag){TAG_CLOSE, r};
    r->method = method;
    r->db = g_db;
    r->status_details = grpc_empty_slice();
    r->status = -1;
    atomic_init(&r->refs, 1); /* held by the pending request */
    grpc_metadata_array_init(&r->req_md);
    grpc_call_error e;
    if (method == M_UNKNOWN) {
        grpc_call_details_init(&r->details);
        e = grpc_server_request_call(g_server, &r->call, &r->details, &r->req_md, g_cq, g_cq,
                                     &r->t_step);
    } else {
        e = grpc_server_request_registered_call(
            g_server, g_handles[method], &r->call, &r->deadline, &r->req_md,
            (g_methods[method].flags & RPC_STREAM_IN) ? NULL : &r->payload, g_cq, g_cq,
            &r->t_step);
    }
    if (e != GRPC_CALL_OK) {
        qv_error("request_call: %s", grpc_call_error_to_string(e));
        rpc_unref(r);
    }
}

static void on_accept(rpc *r, int ok)
{
    if (!ok) { /* shutting down: the slot is cancelled */
        rpc_unref(r);
        return;
    }
    r->accepted = 1;
    clock_gettime(CLOCK_MONOTONIC, &r->t0);
    if (g_call_begin) g_call_begin(r->method);
    /* a unary write's message is in memory from now on: it counts until it is
     * submitted, so that the next slot is not taken on an empty queue's word */
    if (r->payload) r->held = held_bytes(r->method, grpc_byte_buffer_length(r->payload));
    if (is_write_method(r->method) && r->payload) {
        r->reserved = r->held;
        qv_db_write_reserve(g_db, r->reserved);
    }
    if (!atomic_load(&g_stopping)) {
        if (is_write_method(r->method) && qv_db_write_pressure(g_db)) {
            atomic_fetch_add(&g_deferred[r->method], 1);
            /* room may have come back in between: never leave a slot behind */
            if (!qv_db_write_pressure(g_db)) repost_deferred();
        } else {
            post_request(r->method);
        }
    }
    /* cancellation watcher in its own batch (never with SEND_STATUS) */
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &r->cancelled;
    rpc_ref(r);
    if (grpc_call_start_batch(r->call, &op, 1, &r->t_close, NULL) != GRPC_CALL_OK) rpc_unref(r);
    rpc_ref(r); /* the handler's start runs with its own reference */
    rpc_unref(r); /* the request slot's */
    if (r->method == M_UNKNOWN) {
        unknown_start(r);
    } else {
        /* the API key first: a call without the role it needs never reaches
         * its handler */
        char err[512];
        const char *path = g_methods[r->method].path;
        grpc_status_code code = auth_check(&r->req_md, path, auth_method_role(path), &r->auth, err,
                                           sizeof err);
        if (code != GRPC_STATUS_OK) {
            rpc_fail(r, code, "%s", err);
        } else if (decode_first(r) == 0) {
            auth_set_current(&r->auth);
            g_methods[r->method].start(r);
            auth_set_current(NULL);
        }
    }
    rpc_unref(r);
}

static void on_step(rpc *r, int ok)
{
    if (!r->accepted) {
        on_accept(r, ok);
        return;
    }
    if (r->send_bb) { /* the batch that carried it is complete */
        grpc_byte_buffer_destroy(r->send_bb);
        r->send_bb = NULL;
    }
    if (!r->done && r->method >= 0 && g_methods[r->method].step) {
        auth_set_current(&r->auth);
        g_methods[r->method].step(r, ok);
        auth_set_current(NULL);
    }
    rpc_unref(r);
}

static void on_close(rpc *r)
{
    atomic_store(&r->closed, 1);
    if (r->method >= 0 && g_methods[r->method].closed) g_methods[r->method].closed(r);
    rpc_unref(r);
}

static void *worker_main(void *arg)
{
    (void)arg;
    /* parallelism comes from concurrent calls: one OpenMP thread per search */
    omp_set_num_threads(1);
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(g_cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
        if (ev.type != GRPC_OP_COMPLETE) continue;
        rpc_tag *t = ev.tag;
        switch (t->kind) {
        case TAG_STEP: on_step(t->r, ev.success); break;
        case TAG_CLOSE: on_close(t->r); break;
        case TAG_SHUTDOWN:
            pthread_mutex_lock(&g_mu);
            g_shutdown_done = 1;
            pthread_cond_broadcast(&g_cv);
            pthread_mutex_unlock(&g_mu);
            break;
        }
    }
    return NULL;
}

static int wait_shutdown(int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&g_mu);
    while (!g_shutdown_done || atomic_load(&g_outstanding) != 0)
        if (pthread_cond_timedwait(&g_cv, &g_mu, &ts) == ETIMEDOUT) break;
    int done = g_shutdown_done && atomic_load(&g_outstanding) == 0;
    pthread_mutex_unlock(&g_mu);
    return done;
}

int rpc_listen_is_unix(const char *listen)
{
    return !strncmp(listen, "unix:", 5) || !strncmp(listen, "unix-abstract:", 14);
}

int rpc_serve(const rpc_server_opts *o)
{
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    /* the caller blocked these before any thread started */
    grpc_arg args[] = {
        {GRPC_ARG_INTEGER, (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, {.integer = o->max_recv}},
        {GRPC_ARG_INTEGER, (char *)GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, {.integer = -1}},
        {GRPC_ARG_INTEGER, (char *)GRPC_ARG_KEEPALIVE_TIME_MS, {.integer = 60000}},
        {GRPC_ARG_INTEGER, (char *)GRPC_ARG_KEEPALIVE_TIMEOUT_MS, {.integer = 20000}},
        {GRPC_ARG_INTEGER, (char *)GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, {.integer = 10000}},
        {GRPC_ARG_INTEGER, (char *)GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, {.integer = 1}},
        /* flow control is the backpressure: without BDP probing a stream's window
         * stays at 64 KB, so a call quiverd has not taken (write queue full) holds
         * that much of its message here, not all of it */
        {GRPC_ARG_INTEGER, (char *)GRPC_ARG_HTTP2_BDP_PROBE, {.integer = 0}},
    };
    grpc_channel_args cargs = {sizeof args / sizeof args[0], args};
    g_methods = o->methods;
    g_nmethods = o->nmethods;
    g_call_begin = o->call_begin;
    g_call_end = o->call_end;
    g_handles = calloc((size_t)g_nmethods + 1, sizeof *g_handles);
    g_deferred = calloc((size_t)g_nmethods + 1, sizeof *g_deferred);
    if (!g_handles || !g_deferred) {
        qv_error("out of memory for %d methods", g_nmethods);
        free(g_handles);
        free(g_deferred);
        if (o->creds) grpc_server_credentials_release(o->creds);
        return 1;
    }
    g_server = grpc_server_create(&cargs, NULL);
    for (int m = 0; m < g_nmethods; m++) {
        g_handles[m] = grpc_server_register_method(
            g_server, g_methods[m].path, NULL,
            (g_methods[m].flags & RPC_STREAM_IN) ? GRPC_SRM_PAYLOAD_NONE
                                                 : GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER,
            0);
        if (!g_handles[m]) {
            qv_error("cannot register method %s", g_methods[m].path);
            grpc_server_destroy(g_server);
            free(g_handles);
            free(g_deferred);
            if (o->creds) grpc_server_credentials_release(o->creds);
            return 1;
        }
    }
    g_cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(g_server, g_cq, NULL);
    grpc_server_credentials *creds = o->creds ? o->creds : grpc_insecure_server_credentials_create();
    int port = grpc_server_add_http2_port(g_server, o->listen, creds);
    grpc_server_credentials_release(creds);
    if (port == 0) {
        qv_error("cannot listen on %s", o->listen);
        grpc_server_destroy(g_server);
        grpc_completion_queue_shutdown(g_cq);
        while (grpc_completion_queue_next(g_cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
               GRPC_QUEUE_SHUTDOWN)
            ;
        grpc_completion_queue_destroy(g_cq);
        free(g_handles);
        free(g_deferred);
        return 1;
    }
    qv_db_on_room(g_db, on_write_room, NULL);
    grpc_server_start(g_server);
    for (int m = 0; m < g_nmethods; m++)
        for (int s = 0; s < SLOTS; s++) post_request(m);
    for (int s = 0; s < SLOTS; s++) post_request(M_UNKNOWN);

    pthread_t *ws = calloc((size_t)o->threads, sizeof *ws);
    for (int i = 0; i < o->threads; i++) pthread_create(&ws[i], NULL, worker_main, NULL);
    if (o->serving) o->serving(1);
    int unix_socket = rpc_listen_is_unix(o->listen);
    char where[32] = "unix socket";
    if (!unix_socket) snprintf(where, sizeof where, "port %d", port);
    qv_info("serving on %s (%s, %d worker threads, grpc core %s, %s, %s)", o->listen, where,
            o->threads, grpc_version_string(), o->creds ? "TLS" : "plain text",
            o->auth_keys ? "API keys required" : "no API keys");
    if (unix_socket) printf("listening on %s\n", o->listen);
    else printf("listening on port %d\n", port);
    fflush(stdout);

    int sig;
    for (;;) {
        sigwait(&sigs, &sig);
        if (sig != SIGHUP) break;
        /* SIGHUP: keys and certificates are re-read; a bad file keeps the
         * ones in force (and says why) */
        char err[512];
        if (o->auth_keys && auth_load(o->auth_keys, err, sizeof err))
            qv_error("SIGHUP: %s; the keys in force stay", err);
        if (o->creds) auth_tls_reload();
        qv_info("SIGHUP: %s%s re-read", o->auth_keys ? "API keys" : "",
                o->creds ? (o->auth_keys ? " and TLS certificates" : "TLS certificates") : "");
    }
    qv_info("%s: shutting down (draining calls for up to %d ms)",
            sig == SIGINT ? "SIGINT" : "SIGTERM", o->grace_ms);
    if (o->serving) o->serving(0);
    atomic_store(&g_stopping, 1);
    grpc_server_shutdown_and_notify(g_server, g_cq, &g_shutdown_tag);
    if (!wait_shutdown(o->grace_ms)) {
        grpc_server_cancel_all_calls(g_server);
        wait_shutdown(1 << 30);
    }
    grpc_completion_queue_shutdown(g_cq);
    for (int i = 0; i < o->threads; i++) pthread_join(ws[i], NULL);
    free(ws);
    grpc_server_destroy(g_server);
    grpc_completion_queue_destroy(g_cq);
    free(g_handles);
    g_handles = NULL;
    /* g_deferred stays: the writer may still call on_write_room until the
     * db is closed */
    return 0;
}
