/*
 * Peer calls (cluster/peer.h). One channel per address, created on first use
 * and kept: gRPC reconnects it by itself when the peer comes back. A batch of
 * calls shares one completion queue, so a fan-out to every shard costs the
 * slowest call, not the sum.
 */
#include "peer.h"
#include "pbcall.h"

#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct chan {
    char *addr;
    grpc_channel *ch;
} chan;

struct qc_peers {
    pthread_mutex_t mu;
    chan *chans;
    size_t n, cap;
    grpc_channel_credentials *creds;
    grpc_metadata md[2];
    size_t nmd;
    char *self;
    qc_local_fn local;
};

int64_t qc_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            char *nb = realloc(buf, cap);
            if (!nb) break;
            buf = nb;
        }
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0) break;
    }
    fclose(f);
    if (buf) buf[len] = 0;
    return buf;
}

int qc_peers_new(const qc_peer_security *sec, qc_peers **out)
{
    qc_peers *p = calloc(1, sizeof *p);
    if (!p) return -1;
    pthread_mutex_init(&p->mu, NULL);
    grpc_init();
    if (sec && sec->tls) {
        char *roots = sec->ca ? read_file(sec->ca) : NULL;
        char *cert = sec->cert ? read_file(sec->cert) : NULL;
        char *key = sec->key ? read_file(sec->key) : NULL;
        grpc_ssl_pem_key_cert_pair pair = {key, cert};
        p->creds = grpc_ssl_credentials_create(roots, cert && key ? &pair : NULL, NULL, NULL);
        free(roots), free(cert), free(key);
    } else {
        p->creds = grpc_insecure_credentials_create();
    }
    if (sec && sec->self_addr && sec->local) {
        p->self = strdup(sec->self_addr);
        p->local = sec->local;
    }
    p->md[p->nmd].key = grpc_slice_from_static_string(QC_PEER_MD);
    p->md[p->nmd++].value = grpc_slice_from_static_string("1");
    if (sec && sec->api_key && sec->api_key[0]) {
        char hdr[600];
        snprintf(hdr, sizeof hdr, "Bearer %s", sec->api_key);
        p->md[p->nmd].key = grpc_slice_from_static_string("authorization");
        p->md[p->nmd++].value = grpc_slice_from_copied_string(hdr);
    }
    *out = p;
    return 0;
}

void qc_peers_free(qc_peers *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->n; i++) {
        grpc_channel_destroy(p->chans[i].ch);
        free(p->chans[i].addr);
    }
    free(p->chans);
    for (size_t i = 0; i < p->nmd; i++) grpc_slice_unref(p->md[i].value);
    grpc_channel_credentials_release(p->creds);
    pthread_mutex_destroy(&p->mu);
    free(p->self);
    free(p);
    grpc_shutdown();
}

static grpc_channel *channel_of(qc_peers *p, const char *addr)
{
    pthread_mutex_lock(&p->mu);
    grpc_channel *ch = NULL;
    for (size_t i = 0; i < p->n && !ch; i++)
        if (!strcmp(p->chans[i].addr, addr)) ch = p->chans[i].ch;
    if (!ch && (p->n < p->cap || (p->chans = realloc(p->chans, (p->cap = p->cap ? 2 * p->cap : 8) *
                                                                  sizeof *p->chans)))) {
        grpc_arg args[] = {
            {GRPC_ARG_INTEGER, (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, {.integer = 64 << 20}},
            {GRPC_ARG_INTEGER, (char *)GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, {.integer = 64 << 20}},
            /* a dead peer is retried soon after it comes back */
            {GRPC_ARG_INTEGER, (char *)GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, {.integer = 1000}},
        };
        grpc_channel_args ca = {3, args};
        ch = grpc_channel_create(addr, p->creds, &ca);
        p->chans[p->n].addr = strdup(addr);
        p->chans[p->n++].ch = ch;
    }
    pthread_mutex_unlock(&p->mu);
    return ch;
}

typedef struct inflight {
    grpc_call *call;
    qv_unary u;
} inflight;

/* A read of quiver.v1 to this node runs in place (those answer before
 * they return; Peer/WaitApplied answers later and goes over the wire). */
static int in_place(const qc_peers *p, const qc_call *c)
{
    return p->local && !strcmp(c->addr, p->self) && !strncmp(c->method, "/quiver.v1.", 11);
}

static void set_msg(qc_call *c, grpc_status_code code, const char *m)
{
    c->code = code;
    snprintf(c->msg, sizeof c->msg, "%s", m);
}

void qc_peer_call_all(qc_peers *p, qc_call *calls, size_t n, int64_t deadline_ms)
{
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
    inflight *fl = calloc(n ? n : 1, sizeof *fl);
    size_t started = 0;
    int64_t now = qc_now_ms();
    for (size_t i = 0; i < n; i++) {
        qc_call *c = &calls[i];
        c->reply = NULL;
        c->raw = NULL;
        c->raw_len = 0;
        c->msg[0] = 0;
        c->code = GRPC_STATUS_UNKNOWN;
        if (in_place(p, c)) continue; /* answered in place, below */
        grpc_channel *ch = fl ? channel_of(p, c->addr) : NULL;
        if (!ch) {
            set_msg(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
            continue;
        }
        inflight *f = &fl[i];
        int64_t left = (c->deadline_ms ? c->deadline_ms : deadline_ms) - now;
        gpr_timespec dl = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                       gpr_time_from_millis(left > 1 ? left : 1, GPR_TIMESPAN));
        grpc_slice method = grpc_slice_from_static_string(c->method);
        f->call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, method, NULL, dl, NULL);
        grpc_op ops[6];
        qv_unary_ops(&f->u, c->req, p->md, p->nmd, 0, ops);
        if (grpc_call_start_batch(f->call, ops, 6, f, NULL) != GRPC_CALL_OK) {
            set_msg(c, GRPC_STATUS_INTERNAL, "cannot start a call to a peer");
            continue;
        }
        started++;
    }
    /* calls to this node run here while the others are on the wire */
    for (size_t i = 0; p->local && i < n; i++) {
        qc_call *c = &calls[i];
        if (!in_place(p, c)) continue;
        uint8_t *buf = NULL;
        size_t len = 0;
        c->code = p->local(c->method, c->req, &buf, &len, c->msg, sizeof c->msg);
        if (c->code == GRPC_STATUS_OK && !c->reply_desc) { /* the bytes themselves */
            c->raw = buf;
            c->raw_len = len;
            continue;
        }
        if (c->code == GRPC_STATUS_OK) {
            c->reply = protobuf_c_message_unpack(c->reply_desc, NULL, len, buf);
            if (!c->reply) set_msg(c, GRPC_STATUS_INTERNAL, "a reply made here does not decode");
        }
        free(buf);
    }
    /* every started call completes (by status or deadline) */
    while (started > 0) {
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type != GRPC_OP_COMPLETE) continue;
        started--;
        inflight *f = ev.tag;
        qc_call *c = &calls[f - fl];
        c->code = f->u.code;
        char *d = grpc_slice_to_c_string(f->u.details);
        snprintf(c->msg, sizeof c->msg, "%s", d ? d : "");
        gpr_free(d);
        if (c->code != GRPC_STATUS_OK) continue;
        if (!f->u.recv) {
            set_msg(c, GRPC_STATUS_INTERNAL, "a peer replied with no message");
        } else if (!c->reply_desc) { /* the bytes themselves */
            if (qv_pb_bytes(f->u.recv, &c->raw, &c->raw_len))
                set_msg(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory for a peer's reply");
        } else if (!(c->reply = qv_pb_unpack(f->u.recv, c->reply_desc))) {
            set_msg(c, GRPC_STATUS_INTERNAL, "a peer's reply does not decode");
        }
    }
    for (size_t i = 0; fl && i < n; i++) {
        inflight *f = &fl[i];
        if (!f->call) continue;
        qv_unary_free(&f->u);
        grpc_call_unref(f->call);
    }
    free(fl);
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(cq);
}

static int next_event(grpc_completion_queue *cq, void *tag)
{
    grpc_event ev;
    do ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    while (ev.type == GRPC_OP_COMPLETE && ev.tag != tag);
    return ev.type == GRPC_OP_COMPLETE ? ev.success : 0;
}

grpc_status_code qc_peer_stream(qc_peers *p, const char *addr, const char *method,
                                const ProtobufCMessage *req, const ProtobufCMessageDescriptor *desc,
                                int64_t deadline_ms, int (*take)(void *ctx, ProtobufCMessage *m),
                                void *ctx, char *msg, size_t msglen)
{
    grpc_channel *ch = channel_of(p, addr);
    msg[0] = 0;
    if (!ch) {
        snprintf(msg, msglen, "out of memory");
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    }
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
    int64_t left = deadline_ms - qc_now_ms();
    gpr_timespec dl = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                   gpr_time_from_millis(left > 1 ? left : 1, GPR_TIMESPAN));
    grpc_call *call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                               grpc_slice_from_static_string(method), NULL, dl, NULL);
    /* a unary call's operations, the one message received apart: the
     * first four start it, then each message, then the status (ops[5]) */
    qv_unary u;
    grpc_op ops[6];
    qv_unary_ops(&u, req, p->md, p->nmd, 0, ops);
    char t_start, t_msg, t_status;
    int stop = grpc_call_start_batch(call, ops, 4, &t_start, NULL) != GRPC_CALL_OK || !next_event(cq, &t_start);
    /* every message until the end of the stream (or take says stop) */
    while (!stop) {
        grpc_byte_buffer *bb = NULL;
        grpc_op op;
        memset(&op, 0, sizeof op);
        op.op = GRPC_OP_RECV_MESSAGE;
        op.data.recv_message.recv_message = &bb;
        if (grpc_call_start_batch(call, &op, 1, &t_msg, NULL) != GRPC_CALL_OK || !next_event(cq, &t_msg) || !bb)
            break;
        ProtobufCMessage *m = qv_pb_unpack(bb, desc);
        grpc_byte_buffer_destroy(bb);
        if (!m || take(ctx, m)) {
            grpc_call_cancel(call, NULL);
            if (!m) snprintf(msg, msglen, "a peer's message does not decode");
            break;
        }
    }
    if (grpc_call_start_batch(call, &ops[5], 1, &t_status, NULL) == GRPC_CALL_OK) next_event(cq, &t_status);
    if (!msg[0]) {
        char *d = grpc_slice_to_c_string(u.details);
        snprintf(msg, msglen, "%s", d ? d : "");
        gpr_free(d);
    }
    grpc_status_code code = u.code;
    qv_unary_free(&u);
    grpc_call_unref(call);
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(cq);
    return code;
}
