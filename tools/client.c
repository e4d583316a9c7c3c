/*
 * qvc: gRPC client calls over the gRPC core C API with protobuf-c messages
 * (see client.h for the API and its ownership rules). Not for server-side
 * code, and free of Quiver's message types: callers pass descriptors.
 *
 * Every call waits on a completion queue of its own, taken from a small pool
 * per connection (pluck queues are reusable once every tag started on them
 * has been plucked), so one channel serves many threads.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/status.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "client.h"
#include "pbcall.h"

typedef struct method_reg {
    char *path;   /* must outlive the channel: freed in qvc_close */
    void *handle; /* grpc_channel_register_call */
} method_reg;

struct qvc {
    grpc_channel *ch;
    char *addr;
    grpc_metadata auth; /* authorization: Bearer KEY */
    size_t n_md;        /* 1 with an API key */
    pthread_mutex_t mu; /* guards methods and pool */
    method_reg *methods;
    size_t n_methods, cap_methods;
    grpc_completion_queue **pool; /* idle pluck queues */
    size_t n_pool, cap_pool;
};

struct qvc_stream {
    qvc *c;
    grpc_call *call;
    grpc_completion_queue *cq;
    grpc_byte_buffer *request;
    grpc_metadata_array initial;
    int start_pending; /* the start batch is not plucked yet */
    int ended;         /* end of stream seen (or cancelled after a bad message) */
    int bad_message;
    char tag_start, tag_recv, tag_status; /* addresses are the tags */
};

struct qvc_upload {
    qvc *c;
    grpc_call *call;
    grpc_completion_queue *cq;
    grpc_byte_buffer *inflight; /* message of the pending send */
    int md_pending, send_pending, recv_pending;
    int broken; /* a send failed or could not be encoded */
    int encode_failed;
    grpc_metadata_array initial, trailing;
    grpc_byte_buffer *reply;
    grpc_status_code status;
    grpc_slice details;
    char tag_md, tag_send, tag_recv, tag_close;
};

/* ---------------------------------------------------------------- helpers */
static const char *const status_names[] = {
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
    "UNAUTHENTICATED"};

const char *qvc_status_name(int code)
{
    if (code < 0 || code >= (int)(sizeof status_names / sizeof *status_names))
        return "UNKNOWN_STATUS";
    return status_names[code];
}

/* Fill st (may be NULL) with a code and a printf-style message; returns code. */
static int set_status(qvc_status *st, int code, const char *fmt, ...)
{
    if (st) {
        st->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(st->details, sizeof st->details, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* Fill st from a received status; takes over (unrefs) the details slice. */
static int set_status_slice(qvc_status *st, grpc_status_code code, grpc_slice details)
{
    if (st) {
        size_t n = GRPC_SLICE_LENGTH(details);
        if (n >= sizeof st->details) n = sizeof st->details - 1;
        memcpy(st->details, GRPC_SLICE_START_PTR(details), n);
        st->details[n] = '\0';
        st->code = (int)code;
    }
    grpc_slice_unref(details);
    return (int)code;
}

static gpr_timespec deadline_in(int timeout_ms)
{
    if (timeout_ms <= 0) return gpr_inf_future(GPR_CLOCK_REALTIME);
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                        gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
}

/* Wait for the completion of tag (its batch was started on cq). */
static int wait_tag(grpc_completion_queue *cq, void *tag)
{
    grpc_event ev = grpc_completion_queue_pluck(cq, tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    return ev.type == GRPC_OP_COMPLETE && ev.success;
}

/* Take an idle completion queue from the pool, or make one. */
static grpc_completion_queue *cq_get(qvc *c)
{
    grpc_completion_queue *cq = NULL;
    pthread_mutex_lock(&c->mu);
    if (c->n_pool) cq = c->pool[--c->n_pool];
    pthread_mutex_unlock(&c->mu);
    return cq ? cq : grpc_completion_queue_create_for_pluck(NULL);
}

static void cq_destroy(grpc_completion_queue *cq)
{
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(cq);
}

/* Give back a queue on which every started tag has been plucked. */
static void cq_put(qvc *c, grpc_completion_queue *cq)
{
    pthread_mutex_lock(&c->mu);
    if (c->n_pool == c->cap_pool) {
        size_t cap = c->cap_pool ? 2 * c->cap_pool : 8;
        grpc_completion_queue **p = realloc(c->pool, cap * sizeof *p);
        if (!p) {
            pthread_mutex_unlock(&c->mu);
            cq_destroy(cq);
            return;
        }
        c->pool = p;
        c->cap_pool = cap;
    }
    c->pool[c->n_pool++] = cq;
    pthread_mutex_unlock(&c->mu);
}

/* The registered-call handle of a method (NULL when out of memory). */
static void *method_handle(qvc *c, const char *path)
{
    void *h = NULL;
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->n_methods; i++)
        if (strcmp(c->methods[i].path, path) == 0) {
            h = c->methods[i].handle;
            goto out;
        }
    if (c->n_methods == c->cap_methods) {
        size_t cap = c->cap_methods ? 2 * c->cap_methods : 16;
        method_reg *m = realloc(c->methods, cap * sizeof *m);
        if (!m) goto out;
        c->methods = m;
        c->cap_methods = cap;
    }
    char *copy = strdup(path);
    if (!copy) goto out;
    h = grpc_channel_register_call(c->ch, copy, NULL, NULL);
    c->methods[c->n_methods].path = copy;
    c->methods[c->n_methods].handle = h;
    c->n_methods++;
out:
    pthread_mutex_unlock(&c->mu);
    return h;
}

/* Create a call of method on cq; NULL (with st filled) on failure. */
static grpc_call *call_new(qvc *c, const char *method, grpc_completion_queue *cq, int timeout_ms,
                           qvc_status *st)
{
    if (!method || method[0] != '/') {
        set_status(st, GRPC_STATUS_INVALID_ARGUMENT, "client: bad method path \"%s\"",
                   method ? method : "(null)");
        return NULL;
    }
    void *h = method_handle(c, method);
    if (!h) {
        set_status(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "client: out of memory");
        return NULL;
    }
    grpc_call *call = grpc_channel_create_registered_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                                          h, deadline_in(timeout_ms), NULL);
    if (!call) set_status(st, GRPC_STATUS_INTERNAL, "client: cannot create a call of %s", method);
    return call;
}

/* ------------------------------------------------------------- connection */
static char *read_pem(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0;
    if (f) {
        buf = malloc((1 << 20) + 1);
        n = buf ? fread(buf, 1, 1 << 20, f) : 0;
        fclose(f);
    }
    if (!buf || !n) {
        if (err) snprintf(err, errlen, "cannot read %s", path);
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    return buf;
}

int qvc_open_secure(const char *addr, int flags, const qvc_security *sec, qvc **out, char *err,
                    size_t errlen)
{
    *out = NULL;
    if (!addr || !addr[0]) return GRPC_STATUS_INVALID_ARGUMENT;
    qvc *c = calloc(1, sizeof *c);
    if (!c) return GRPC_STATUS_RESOURCE_EXHAUSTED;
    c->addr = strdup(addr);
    if (!c->addr) {
        free(c);
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    }
    pthread_mutex_init(&c->mu, NULL);
    grpc_init();
    grpc_arg args[] = {
        {GRPC_ARG_INTEGER, (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
         {.integer = QVC_MAX_MESSAGE_BYTES}},
        {GRPC_ARG_INTEGER, (char *)GRPC_ARG_MAX_SEND_MESSAGE_LENGTH,
         {.integer = QVC_MAX_MESSAGE_BYTES}},
        {GRPC_ARG_INTEGER, (char *)GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, {.integer = 1}},
    };
    grpc_channel_args ca = {(flags & QVC_OWN_CONNECTION) ? 3 : 2, args};
    grpc_channel_credentials *creds = NULL;
    if (sec && (sec->tls || sec->tls_ca || sec->tls_cert)) {
        char *roots = sec->tls_ca ? read_pem(sec->tls_ca, err, errlen) : NULL;
        char *cert = sec->tls_cert ? read_pem(sec->tls_cert, err, errlen) : NULL;
        char *key = sec->tls_key ? read_pem(sec->tls_key, err, errlen) : NULL;
        if ((sec->tls_ca && !roots) || (sec->tls_cert && !cert) || (sec->tls_key && !key)) {
            free(roots), free(cert), free(key);
            free(c->addr);
            free(c);
            grpc_shutdown();
            return GRPC_STATUS_INVALID_ARGUMENT;
        }
        grpc_ssl_pem_key_cert_pair pair = {key, cert};
        creds = grpc_ssl_credentials_create(roots, cert && key ? &pair : NULL, NULL, NULL);
        free(roots), free(cert), free(key);
    } else {
        creds = grpc_insecure_credentials_create();
    }
    c->ch = grpc_channel_create(addr, creds, &ca);
    grpc_channel_credentials_release(creds);
    if (sec && sec->api_key && sec->api_key[0]) {
        char hdr[4200];
        snprintf(hdr, sizeof hdr, "Bearer %s", sec->api_key);
        c->auth.key = grpc_slice_from_static_string("authorization");
        c->auth.value = grpc_slice_from_copied_string(hdr);
        c->n_md = 1;
    }
    *out = c;
    return 0;
}

void qvc_close(qvc *c)
{
    if (!c) return;
    grpc_channel_destroy(c->ch);
    if (c->n_md) grpc_slice_unref(c->auth.value);
    for (size_t i = 0; i < c->n_pool; i++) cq_destroy(c->pool[i]);
    free(c->pool);
    for (size_t i = 0; i < c->n_methods; i++) free(c->methods[i].path);
    free(c->methods);
    pthread_mutex_destroy(&c->mu);
    free(c->addr);
    free(c);
    grpc_shutdown();
}

int qvc_wait_ready(qvc *c, int timeout_ms, qvc_status *st)
{
    gpr_timespec deadline = deadline_in(timeout_ms > 0 ? timeout_ms : 1);
    grpc_connectivity_state s = grpc_channel_check_connectivity_state(c->ch, 1);
    grpc_completion_queue *cq = NULL;
    int rc = 0;
    char tag;
    while (s != GRPC_CHANNEL_READY) {
        if (s == GRPC_CHANNEL_TRANSIENT_FAILURE || s == GRPC_CHANNEL_SHUTDOWN) {
            rc = set_status(st, GRPC_STATUS_UNAVAILABLE,
                            "cannot connect to %s (is quiverd running there?)", c->addr);
            break;
        }
        if (!cq) cq = cq_get(c);
        grpc_channel_watch_connectivity_state(c->ch, s, deadline, cq, &tag);
        if (!wait_tag(cq, &tag)) { /* deadline before any change */
            rc = set_status(st, GRPC_STATUS_DEADLINE_EXCEEDED,
                            "no connection to %s within %d ms", c->addr, timeout_ms);
            break;
        }
        s = grpc_channel_check_connectivity_state(c->ch, 1);
    }
    if (cq) cq_put(c, cq);
    if (!rc) set_status(st, GRPC_STATUS_OK, "");
    return rc;
}

/* ------------------------------------------------------------------ unary */
/* One unary call; on OK the reply's byte buffer goes to take(ctx, bb), which
 * returns 0 or a status (with st filled). */
static int unary_call(qvc *c, const char *method, const ProtobufCMessage *req, qvc_status *st,
                      int timeout_ms, int (*take)(void *ctx, grpc_byte_buffer *bb, qvc_status *st),
                      void *ctx)
{
    grpc_completion_queue *cq = cq_get(c);
    grpc_call *call = call_new(c, method, cq, timeout_ms, st);
    if (!call) {
        cq_put(c, cq);
        return st->code;
    }
    qv_unary u;
    grpc_op ops[6];
    qv_unary_ops(&u, req, &c->auth, c->n_md, 0, ops);
    int rc;
    grpc_call_error e = grpc_call_start_batch(call, ops, 6, ops, NULL);
    if (e != GRPC_CALL_OK) {
        rc = set_status(st, GRPC_STATUS_INTERNAL, "client: start_batch: %s",
                        grpc_call_error_to_string(e));
    } else {
        wait_tag(cq, ops); /* the status, not the batch's success, tells */
        rc = set_status_slice(st, u.code, grpc_slice_ref(u.details));
        if (rc == GRPC_STATUS_OK) {
            if (!u.recv)
                rc = set_status(st, GRPC_STATUS_INTERNAL, "client: %s returned no message", method);
            else
                rc = take(ctx, u.recv, st);
        }
    }
    qv_unary_free(&u);
    grpc_call_unref(call);
    cq_put(c, cq);
    return rc;
}

typedef struct unpack_ctx {
    const char *method;
    const ProtobufCMessageDescriptor *desc;
    ProtobufCMessage **reply;
} unpack_ctx;

static int take_unpack(void *ctx, grpc_byte_buffer *bb, qvc_status *st)
{
    unpack_ctx *u = ctx;
    if ((*u->reply = qv_pb_unpack(bb, u->desc))) return 0;
    return set_status(st, GRPC_STATUS_INTERNAL, "client: reply of %s does not decode as %s",
                      u->method, u->desc->name);
}

int qvc_unary(qvc *c, const char *method, const ProtobufCMessage *req,
              const ProtobufCMessageDescriptor *reply_desc, ProtobufCMessage **reply,
              qvc_status *st, int timeout_ms)
{
    qvc_status dummy;
    if (!st) st = &dummy;
    *reply = NULL;
    unpack_ctx u = {method, reply_desc, reply};
    return unary_call(c, method, req, st, timeout_ms, take_unpack, &u);
}

typedef struct raw_ctx {
    const char *method;
    int (*decode)(void *ctx, const uint8_t *buf, size_t len);
    void *ctx;
} raw_ctx;

static int take_raw(void *ctx, grpc_byte_buffer *bb, qvc_status *st)
{
    raw_ctx *r = ctx;
    grpc_byte_buffer_reader rd;
    if (!grpc_byte_buffer_reader_init(&rd, bb))
        return set_status(st, GRPC_STATUS_INTERNAL, "client: unreadable reply of %s", r->method);
    grpc_slice s = grpc_byte_buffer_reader_readall(&rd);
    grpc_byte_buffer_reader_destroy(&rd);
    int bad = r->decode(r->ctx, GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s));
    grpc_slice_unref(s);
    return bad ? set_status(st, GRPC_STATUS_INTERNAL, "client: reply of %s does not decode", r->method)
               : 0;
}

int qvc_unary_decode(qvc *c, const char *method, const ProtobufCMessage *req,
                     int (*decode)(void *ctx, const uint8_t *buf, size_t len), void *ctx,
                     qvc_status *st, int timeout_ms)
{
    qvc_status dummy;
    if (!st) st = &dummy;
    raw_ctx r = {method, decode, ctx};
    return unary_call(c, method, req, st, timeout_ms, take_raw, &r);
}

/* ------------------------------------------------------- server streaming */
int qvc_stream_start(qvc *c, const char *method, const ProtobufCMessage *req, int timeout_ms,
                     qvc_stream **out, qvc_status *st)
{
    qvc_status dummy;
    if (!st) st = &dummy;
    *out = NULL;
    qvc_stream *s = calloc(1, sizeof *s);
    if (!s) return set_status(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "client: out of memory");
    s->c = c;
    s->cq = cq_get(c);
    s->call = call_new(c, method, s->cq, timeout_ms, st);
    if (!s->call) {
        cq_put(c, s->cq);
        free(s);
        return st->code;
    }
    s->request = qv_pb_pack(req);
    grpc_metadata_array_init(&s->initial);
    grpc_op ops[4];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = c->n_md;
    ops[0].data.send_initial_metadata.metadata = c->n_md ? &c->auth : NULL;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = s->request;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &s->initial;
    grpc_call_error e = grpc_call_start_batch(s->call, ops, 4, &s->tag_start, NULL);
    if (e != GRPC_CALL_OK) {
        set_status(st, GRPC_STATUS_INTERNAL, "client: start_batch: %s", grpc_call_error_to_string(e));
        grpc_call_unref(s->call);
        grpc_byte_buffer_destroy(s->request);
        grpc_metadata_array_destroy(&s->initial);
        cq_put(c, s->cq);
        free(s);
        return GRPC_STATUS_INTERNAL;
    }
    s->start_pending = 1;
    *out = s;
    return set_status(st, GRPC_STATUS_OK, "");
}

int qvc_stream_next(qvc_stream *s, const ProtobufCMessageDescriptor *desc, ProtobufCMessage **msg)
{
    *msg = NULL;
    if (s->ended) return 0;
    grpc_byte_buffer *bb = NULL;
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &bb;
    if (grpc_call_start_batch(s->call, &op, 1, &s->tag_recv, NULL) != GRPC_CALL_OK ||
        !wait_tag(s->cq, &s->tag_recv) || !bb) {
        if (bb) grpc_byte_buffer_destroy(bb);
        s->ended = 1;
        return 0;
    }
    *msg = qv_pb_unpack(bb, desc);
    grpc_byte_buffer_destroy(bb);
    if (!*msg) {
        s->bad_message = 1;
        s->ended = 1;
        grpc_call_cancel(s->call, NULL);
        return -1;
    }
    return 1;
}

void qvc_stream_cancel(qvc_stream *s)
{
    if (s) grpc_call_cancel(s->call, NULL);
}

int qvc_stream_finish(qvc_stream *s, qvc_status *st)
{
    if (!s) return set_status(st, GRPC_STATUS_OK, "");
    if (!s->ended) grpc_call_cancel(s->call, NULL);
    grpc_metadata_array trailing;
    grpc_metadata_array_init(&trailing);
    grpc_status_code code = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    op.data.recv_status_on_client.status = &code;
    op.data.recv_status_on_client.status_details = &details;
    op.data.recv_status_on_client.trailing_metadata = &trailing;
    int rc;
    grpc_call_error e = grpc_call_start_batch(s->call, &op, 1, &s->tag_status, NULL);
    if (e != GRPC_CALL_OK) {
        grpc_slice_unref(details);
        rc = set_status(st, GRPC_STATUS_INTERNAL, "client: start_batch: %s",
                        grpc_call_error_to_string(e));
    } else {
        wait_tag(s->cq, &s->tag_status);
        rc = set_status_slice(st, code, details);
    }
    if (s->start_pending) wait_tag(s->cq, &s->tag_start);
    if (s->bad_message)
        rc = set_status(st, GRPC_STATUS_INTERNAL, "client: a stream message does not decode");
    grpc_metadata_array_destroy(&trailing);
    grpc_metadata_array_destroy(&s->initial);
    grpc_byte_buffer_destroy(s->request);
    grpc_call_unref(s->call);
    cq_put(s->c, s->cq);
    free(s);
    return rc;
}

/* ------------------------------------------------------- client streaming */
static void upload_free(qvc_upload *u)
{
    if (u->inflight) grpc_byte_buffer_destroy(u->inflight);
    if (u->reply) grpc_byte_buffer_destroy(u->reply);
    grpc_metadata_array_destroy(&u->initial);
    grpc_metadata_array_destroy(&u->trailing);
    grpc_call_unref(u->call);
    cq_put(u->c, u->cq);
    free(u);
}

int qvc_upload_start(qvc *c, const char *method, int timeout_ms, qvc_upload **out, qvc_status *st)
{
    qvc_status dummy;
    if (!st) st = &dummy;
    *out = NULL;
    qvc_upload *u = calloc(1, sizeof *u);
    if (!u) return set_status(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "client: out of memory");
    u->c = c;
    u->cq = cq_get(c);
    u->call = call_new(c, method, u->cq, timeout_ms, st);
    if (!u->call) {
        cq_put(c, u->cq);
        free(u);
        return st->code;
    }
    grpc_metadata_array_init(&u->initial);
    grpc_metadata_array_init(&u->trailing);
    u->status = GRPC_STATUS_UNKNOWN;
    u->details = grpc_empty_slice();
    grpc_op md;
    memset(&md, 0, sizeof md);
    md.op = GRPC_OP_SEND_INITIAL_METADATA;
    md.data.send_initial_metadata.count = c->n_md;
    md.data.send_initial_metadata.metadata = c->n_md ? &c->auth : NULL;
    /* The receiving side is posted at once, so that an early answer of the
     * server (an error before the stream ends) is noticed by the sender. */
    grpc_op rv[3];
    memset(rv, 0, sizeof rv);
    rv[0].op = GRPC_OP_RECV_INITIAL_METADATA;
    rv[0].data.recv_initial_metadata.recv_initial_metadata = &u->initial;
    rv[1].op = GRPC_OP_RECV_MESSAGE;
    rv[1].data.recv_message.recv_message = &u->reply;
    rv[2].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    rv[2].data.recv_status_on_client.status = &u->status;
    rv[2].data.recv_status_on_client.status_details = &u->details;
    rv[2].data.recv_status_on_client.trailing_metadata = &u->trailing;
    grpc_call_error e = grpc_call_start_batch(u->call, &md, 1, &u->tag_md, NULL);
    if (e == GRPC_CALL_OK) {
        u->md_pending = 1;
        e = grpc_call_start_batch(u->call, rv, 3, &u->tag_recv, NULL);
        if (e == GRPC_CALL_OK) u->recv_pending = 1;
    }
    if (e != GRPC_CALL_OK) {
        set_status(st, GRPC_STATUS_INTERNAL, "client: start_batch: %s", grpc_call_error_to_string(e));
        grpc_call_cancel(u->call, NULL);
        if (u->md_pending) wait_tag(u->cq, &u->tag_md);
        upload_free(u);
        return GRPC_STATUS_INTERNAL;
    }
    *out = u;
    return set_status(st, GRPC_STATUS_OK, "");
}

/* Wait for the pending send, if any; returns 0 when it went out. */
static int upload_wait_send(qvc_upload *u)
{
    if (!u->send_pending) return 0;
    int ok = wait_tag(u->cq, &u->tag_send);
    u->send_pending = 0;
    grpc_byte_buffer_destroy(u->inflight);
    u->inflight = NULL;
    return ok ? 0 : -1;
}

int qvc_upload_send(qvc_upload *u, const ProtobufCMessage *msg)
{
    if (u->broken) return -1;
    if (u->recv_pending) { /* has the server already ended the call? */
        grpc_event ev =
            grpc_completion_queue_pluck(u->cq, &u->tag_recv, gpr_inf_past(GPR_CLOCK_MONOTONIC), NULL);
        if (ev.type == GRPC_OP_COMPLETE) {
            u->recv_pending = 0;
            u->broken = 1;
            return -1;
        }
    }
    if (upload_wait_send(u)) {
        u->broken = 1;
        return -1;
    }
    u->inflight = qv_pb_pack(msg);
    if (!u->inflight) {
        u->broken = u->encode_failed = 1;
        grpc_call_cancel(u->call, NULL);
        return -1;
    }
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_SEND_MESSAGE;
    op.data.send_message.send_message = u->inflight;
    if (grpc_call_start_batch(u->call, &op, 1, &u->tag_send, NULL) != GRPC_CALL_OK) {
        grpc_byte_buffer_destroy(u->inflight);
        u->inflight = NULL;
        u->broken = 1;
        grpc_call_cancel(u->call, NULL);
        return -1;
    }
    u->send_pending = 1;
    return 0;
}

int qvc_upload_finish(qvc_upload *u, const ProtobufCMessageDescriptor *reply_desc,
                      ProtobufCMessage **reply, qvc_status *st)
{
    if (reply) *reply = NULL;
    if (!u) return set_status(st, GRPC_STATUS_OK, "");
    upload_wait_send(u);
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    if (grpc_call_start_batch(u->call, &op, 1, &u->tag_close, NULL) == GRPC_CALL_OK)
        wait_tag(u->cq, &u->tag_close);
    if (u->recv_pending) wait_tag(u->cq, &u->tag_recv);
    if (u->md_pending) wait_tag(u->cq, &u->tag_md);
    u->recv_pending = u->md_pending = 0;
    int rc = set_status_slice(st, u->status, u->details);
    u->details = grpc_empty_slice();
    if (u->encode_failed)
        rc = set_status(st, GRPC_STATUS_INTERNAL, "client: a message could not be encoded");
    else if (rc == GRPC_STATUS_OK && reply_desc) {
        if (!u->reply)
            rc = set_status(st, GRPC_STATUS_INTERNAL, "client: the call returned no message");
        else if (!(*reply = qv_pb_unpack(u->reply, reply_desc)))
            rc = set_status(st, GRPC_STATUS_INTERNAL, "client: reply does not decode as %s",
                            reply_desc->name);
    }
    upload_free(u);
    return rc;
}
