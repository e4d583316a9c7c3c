/*
 * qc_etcd: etcd v3 over gRPC core + protobuf-c (see etcd.h for the API and
 * its caveats).
 *
 * Layout: one channel per endpoint URL with the methods registered on it;
 * unary calls wait on a pluck queue of their own (so any thread may call);
 * each lease keepalive and each watch owns a thread, a stream and a qc_ctl
 * through which another thread stops it (cancel the live call, wake a sleep).
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/status.h>
#include <grpc/support/time.h>

#include "etcd.h"
#include "pbcall.h"
#include "etcd/etcdserver/etcdserverpb/rpc.pb-c.h"
#include "quiver/error.h"
#include "quiver/log.h"

#define QC_ETCD_DEFAULT_TIMEOUT_MS 5000
#define QC_ETCD_RANGE_PAGE 1000      /* keys per Range reply: bounded messages */
#define QC_ETCD_RETRY_PAUSE_MS 100   /* between rounds over every endpoint */
#define QC_ETCD_STREAM_PAUSE_MS 250  /* before a broken stream is reopened */
#define QC_ETCD_MAX_MESSAGE (64 << 20)
#define QC_ETCD_MAX_PEM (1 << 20)

/* Every call waits for its channel to connect (within its deadline) instead
 * of failing at once while the channel is in TRANSIENT_FAILURE. Why: gRPC
 * core only polls a connection attempt for a call that waits on it; a
 * fail-fast call leaves the attempt to the 5 s backup poller, and pick_first
 * stays in TRANSIENT_FAILURE until then, so a restarted etcd went unnoticed
 * for seconds (seen in test_etcd). */
#define QC_WAIT_FOR_READY \
    (GRPC_INITIAL_METADATA_WAIT_FOR_READY | GRPC_INITIAL_METADATA_WAIT_FOR_READY_EXPLICITLY_SET)

/* ----------------------------------------------------------------- methods */
enum {
    M_RANGE,
    M_PUT,
    M_DELETE,
    M_TXN,
    M_LEASE_GRANT,
    M_LEASE_REVOKE,
    M_LEASE_TTL,
    M_LEASE_KEEPALIVE,
    M_WATCH,
    M_COUNT
};

/* static: grpc_channel_register_call needs strings that outlive the channel */
static const char *const qc_etcd_method_path[M_COUNT] = {
    "/etcdserverpb.KV/Range",
    "/etcdserverpb.KV/Put",
    "/etcdserverpb.KV/DeleteRange",
    "/etcdserverpb.KV/Txn",
    "/etcdserverpb.Lease/LeaseGrant",
    "/etcdserverpb.Lease/LeaseRevoke",
    "/etcdserverpb.Lease/LeaseTimeToLive",
    "/etcdserverpb.Lease/LeaseKeepAlive",
    "/etcdserverpb.Watch/Watch",
};

/* ------------------------------------------------------------------- types */
typedef struct qc_etcd_ep {
    char *target; /* host:port */
    grpc_channel *ch;
    void *method[M_COUNT];
} qc_etcd_ep;

/* Stop control of a background stream thread. */
typedef struct qc_ctl {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* on CLOCK_MONOTONIC; signalled on stop */
    int stop;
    grpc_call *call; /* the thread's live call, cancelled by a stop */
} qc_ctl;

/* One lease kept alive by a thread. State fields are guarded by ctl.mu. */
typedef struct qc_lease_ka {
    struct qc_lease_ka *next; /* in qc_etcd.leases, guarded by qc_etcd.mu */
    qc_etcd *e;
    int64_t id;
    int64_t expires_ms; /* our conservative view of the server's expiry */
    int lost;           /* etcd answered that the lease is gone */
    qc_ctl ctl;
    pthread_t thread;
} qc_lease_ka;

struct qc_etcd {
    qc_etcd_ep *eps;
    size_t n_eps;
    atomic_size_t cur; /* endpoint that answered last: tried first */
    int timeout_ms;
    atomic_int closing;
    pthread_mutex_t mu; /* guards leases and the lost callback */
    qc_lease_ka *leases;
    void (*lost_cb)(void *ctx, int64_t id);
    void *lost_ctx;
};

struct qc_watch {
    qc_etcd *e;
    uint8_t *key, *end; /* the watched range [key, end) */
    size_t key_len, end_len;
    int64_t next_rev; /* where a (re)opened stream starts: last seen + 1 */
    void (*cb)(void *ctx, int type, const qc_kv *kv);
    void *ctx;
    qc_ctl ctl;
    pthread_t thread;
};

/* A bidi stream of one background thread. */
typedef struct qc_stream {
    grpc_completion_queue *cq;
    grpc_call *call;
    qc_ctl *ctl;
    grpc_metadata_array initial;
    int sent_md, asked_md;
    int64_t timed_out; /* > 0: we cancelled after waiting this many ms */
} qc_stream;

/* ------------------------------------------------------------ small helpers */
static _Thread_local char qc_etcd_msg[512];

const char *qc_etcd_errmsg(void)
{
    return qc_etcd_msg;
}

/* Record why the calling thread's call fails; returns rc. */
static int qc_etcd_fail(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int qc_etcd_fail(int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(qc_etcd_msg, sizeof qc_etcd_msg, fmt, ap);
    va_end(ap);
    return rc;
}

static int64_t qc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A gRPC deadline ms from now (< 0: none). gpr's monotonic clock has its own
 * origin, so deadlines are always built from a relative time. */
static gpr_timespec qc_deadline(int64_t ms)
{
    if (ms < 0) return gpr_inf_future(GPR_CLOCK_REALTIME);
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

/* protobuf-c wants non-const pointers for data it only reads when packing. */
static ProtobufCBinaryData qc_bin(const void *p, size_t n)
{
    ProtobufCBinaryData b = {n, (uint8_t *)(uintptr_t)p};
    return b;
}

/* The range end of a prefix: the prefix with its last byte below 0xff
 * incremented and the rest dropped; "\0" (every key from the prefix on) when
 * no byte can be incremented. end holds strlen(prefix) + 1 bytes. */
static size_t qc_prefix_end(const char *prefix, uint8_t *end)
{
    size_t n = strlen(prefix);
    memcpy(end, prefix, n);
    for (; n > 0; n--)
        if (end[n - 1] < 0xff) {
            end[n - 1]++;
            return n;
        }
    end[0] = 0;
    return 1;
}

/* A NUL-terminated copy of n bytes (NULL when out of memory). */
static void *qc_dup0(const uint8_t *p, size_t n)
{
    uint8_t *d = malloc(n + 1);
    if (!d) return NULL;
    if (n) memcpy(d, p, n);
    d[n] = 0;
    return d;
}

/* Copy an etcd KeyValue into kv (which then owns its memory). */
static int qc_kv_copy(qc_kv *kv, const Mvccpb__KeyValue *src)
{
    memset(kv, 0, sizeof *kv);
    kv->key = qc_dup0(src->key.data, src->key.len);
    kv->val = qc_dup0(src->value.data, src->value.len);
    if (!kv->key || !kv->val) {
        qc_kv_free(kv);
        return qc_etcd_fail(QV_NOMEM, "etcd: out of memory");
    }
    kv->val_len = src->value.len;
    kv->create_rev = src->create_revision;
    kv->mod_rev = src->mod_revision;
    kv->lease = src->lease;
    return 0;
}

void qc_kv_free(qc_kv *kv)
{
    if (!kv) return;
    free(kv->key);
    free(kv->val);
    memset(kv, 0, sizeof *kv);
}

void qc_kvs_free(qc_kv *kvs, size_t n)
{
    if (!kvs) return;
    for (size_t i = 0; i < n; i++) qc_kv_free(&kvs[i]);
    free(kvs);
}

static const char *qc_status_name(grpc_status_code c)
{
    static const char *const names[] = {
        "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
        "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
        "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
        "UNAUTHENTICATED"};
    if ((int)c < 0 || (size_t)c >= sizeof names / sizeof *names) return "UNKNOWN_STATUS";
    return names[c];
}

/* Statuses after which another endpoint (or a later try) may succeed: the
 * endpoint is unreachable, slow, or has no leader ("etcdserver: no leader",
 * "leader changed" and "request timed out" come as UNAVAILABLE). */
static int qc_retryable(grpc_status_code c)
{
    return c == GRPC_STATUS_UNAVAILABLE || c == GRPC_STATUS_DEADLINE_EXCEEDED;
}

/* Project code of an etcd status that will not get better by retrying. */
static int qc_code_of(grpc_status_code c)
{
    switch (c) {
    case GRPC_STATUS_OK: return 0;
    case GRPC_STATUS_NOT_FOUND: return QV_NOTFOUND;
    case GRPC_STATUS_INVALID_ARGUMENT:
    case GRPC_STATUS_FAILED_PRECONDITION:
    case GRPC_STATUS_OUT_OF_RANGE: return QV_INVALID;
    case GRPC_STATUS_RESOURCE_EXHAUSTED: return QV_LIMIT;
    default: return QV_IO;
    }
}

/* Copy a received status into buf and release the details slice. */
static void qc_status_text(char *buf, size_t len, const char *target, grpc_status_code code,
                           grpc_slice details)
{
    snprintf(buf, len, "%s: %s: %.*s", target, qc_status_name(code),
             (int)GRPC_SLICE_LENGTH(details), (const char *)GRPC_SLICE_START_PTR(details));
    grpc_slice_unref(details);
}

static void qc_cq_destroy(grpc_completion_queue *cq)
{
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(cq);
}

/* --------------------------------------------------------------- stop control */
static void qc_ctl_init(qc_ctl *c)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cv, &a);
    pthread_condattr_destroy(&a);
    pthread_mutex_init(&c->mu, NULL);
    c->stop = 0;
    c->call = NULL;
}

static void qc_ctl_destroy(qc_ctl *c)
{
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
}

/* Ask the thread to stop: its live call is cancelled (a blocked receive
 * returns) and its sleep ends. */
static void qc_ctl_stop(qc_ctl *c)
{
    pthread_mutex_lock(&c->mu);
    c->stop = 1;
    if (c->call) grpc_call_cancel(c->call, NULL);
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static int qc_ctl_stopped(qc_ctl *c)
{
    pthread_mutex_lock(&c->mu);
    int s = c->stop;
    pthread_mutex_unlock(&c->mu);
    return s;
}

/* Sleep ms unless stopped first; returns 1 when stopped. */
static int qc_ctl_sleep(qc_ctl *c, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&c->mu);
    while (!c->stop && pthread_cond_timedwait(&c->cv, &c->mu, &ts) != ETIMEDOUT) {
    }
    int s = c->stop;
    pthread_mutex_unlock(&c->mu);
    return s;
}

/* -------------------------------------------------------------- connection */
static char *qc_read_pem(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0;
    if (f) {
        buf = malloc(QC_ETCD_MAX_PEM + 1);
        n = buf ? fread(buf, 1, QC_ETCD_MAX_PEM, f) : 0;
        fclose(f);
    }
    if (!buf || !n) {
        if (err) snprintf(err, errlen, "etcd: cannot read %s", path);
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    return buf;
}

/* Credentials for every endpoint: TLS when tls is given or a URL says https. */
static grpc_channel_credentials *qc_creds(const qc_etcd_tls *tls, int https, char *err,
                                          size_t errlen)
{
    if (!tls && !https) return grpc_insecure_credentials_create();
    qc_etcd_tls none = {0};
    if (!tls) tls = &none;
    if (!tls->cert != !tls->key) {
        if (err) snprintf(err, errlen, "etcd: a client certificate needs both cert and key");
        return NULL;
    }
    char *ca = tls->ca ? qc_read_pem(tls->ca, err, errlen) : NULL;
    char *cert = tls->cert ? qc_read_pem(tls->cert, err, errlen) : NULL;
    char *key = tls->key ? qc_read_pem(tls->key, err, errlen) : NULL;
    grpc_channel_credentials *c = NULL;
    if ((!tls->ca || ca) && (!tls->cert || cert) && (!tls->key || key)) {
        grpc_ssl_pem_key_cert_pair pair = {key, cert};
        c = grpc_ssl_credentials_create(ca, cert ? &pair : NULL, NULL, NULL);
    }
    free(ca);
    free(cert);
    free(key);
    return c;
}

/* Split "http://h:p,https://h:p" into targets "h:p"; *https / *http set
 * when a URL names that scheme. Returns 0 or QV_INVALID / QV_NOMEM with err
 * filled. */
static int qc_parse_urls(qc_etcd *e, const char *urls, int *https, int *http, char *err,
                         size_t errlen)
{
    size_t cap = 1;
    for (const char *p = urls; *p; p++) cap += *p == ',';
    e->eps = calloc(cap, sizeof *e->eps);
    if (!e->eps) return QV_NOMEM;
    *https = *http = 0;
    for (const char *p = urls; *p;) {
        const char *comma = strchr(p, ','), *stop = comma ? comma : p + strlen(p);
        while (p < stop && *p == ' ') p++;
        if (strncmp(p, "http://", 7) == 0) {
            p += 7;
            *http = 1;
        } else if (strncmp(p, "https://", 8) == 0) {
            p += 8;
            *https = 1;
        }
        size_t n = (size_t)(stop - p);
        while (n && (p[n - 1] == '/' || p[n - 1] == ' ')) n--;
        if (n) {
            if (!memchr(p, ':', n)) {
                if (err) snprintf(err, errlen, "etcd: URL \"%.*s\" has no port", (int)n, p);
                return QV_INVALID;
            }
            if (!(e->eps[e->n_eps].target = strndup(p, n))) return QV_NOMEM;
            e->n_eps++;
        }
        p = comma ? comma + 1 : stop;
    }
    if (!e->n_eps) {
        if (err) snprintf(err, errlen, "etcd: no endpoint in \"%s\"", urls);
        return QV_INVALID;
    }
    if (*http && *https) {
        if (err) snprintf(err, errlen, "etcd: \"%s\" mixes http and https endpoints", urls);
        return QV_INVALID;
    }
    return 0;
}

static void qc_open_channels(qc_etcd *e, grpc_channel_credentials *creds)
{
    int ka_timeout = e->timeout_ms < 1000 ? 1000 : e->timeout_ms;
    grpc_arg args[] = {
        {GRPC_ARG_INTEGER, (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
         {.integer = QC_ETCD_MAX_MESSAGE}},
        /* a restarted etcd is found again within a second, not after the
         * default backoff that grows to two minutes */
        {GRPC_ARG_INTEGER, (char *)GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, {.integer = 100}},
        {GRPC_ARG_INTEGER, (char *)GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, {.integer = 1000}},
        /* pings find a dead peer under an idle watch; etcd refuses pings more
         * often than every 5 s (--grpc-keepalive-min-time) */
        {GRPC_ARG_INTEGER, (char *)GRPC_ARG_KEEPALIVE_TIME_MS, {.integer = 10000}},
        {GRPC_ARG_INTEGER, (char *)GRPC_ARG_KEEPALIVE_TIMEOUT_MS, {.integer = ka_timeout}},
        {GRPC_ARG_INTEGER, (char *)GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, {.integer = 0}},
        /* a connection of its own: clients in one process do not share fate */
        {GRPC_ARG_INTEGER, (char *)GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, {.integer = 1}},
    };
    grpc_channel_args ca = {sizeof args / sizeof *args, args};
    for (size_t i = 0; i < e->n_eps; i++) {
        qc_etcd_ep *ep = &e->eps[i];
        ep->ch = grpc_channel_create(ep->target, creds, &ca);
        for (int m = 0; m < M_COUNT; m++)
            ep->method[m] = grpc_channel_register_call(ep->ch, qc_etcd_method_path[m], NULL, NULL);
    }
}

static void qc_free_endpoints(qc_etcd *e)
{
    for (size_t i = 0; i < e->n_eps; i++) {
        if (e->eps[i].ch) grpc_channel_destroy(e->eps[i].ch);
        free(e->eps[i].target);
    }
    free(e->eps);
}

int qc_etcd_open(const char *urls, const qc_etcd_tls *tls, int timeout_ms, qc_etcd **out,
                 char *err, size_t errlen)
{
    *out = NULL;
    if (err && errlen) err[0] = 0;
    if (!urls) return QV_INVALID;
    qc_etcd *e = calloc(1, sizeof *e);
    if (!e) return QV_NOMEM;
    e->timeout_ms = timeout_ms > 0 ? timeout_ms : QC_ETCD_DEFAULT_TIMEOUT_MS;
    int https = 0, http = 0;
    int rc = qc_parse_urls(e, urls, &https, &http, err, errlen);
    if (!rc && http && tls) { /* a quiet switch to TLS would hide a config mistake */
        if (err) snprintf(err, errlen, "etcd: TLS files given for http:// endpoints");
        rc = QV_INVALID;
    }
    if (rc) {
        qc_free_endpoints(e);
        free(e);
        return rc;
    }
    grpc_init();
    grpc_channel_credentials *creds = qc_creds(tls, https, err, errlen);
    if (!creds) {
        qc_free_endpoints(e);
        free(e);
        grpc_shutdown();
        return QV_INVALID;
    }
    qc_open_channels(e, creds);
    grpc_channel_credentials_release(creds); /* each channel keeps a reference */
    pthread_mutex_init(&e->mu, NULL);
    *out = e;
    return 0;
}

static void qc_lease_ka_stop(qc_lease_ka *ka);

void qc_etcd_close(qc_etcd *e)
{
    if (!e) return;
    atomic_store(&e->closing, 1);
    pthread_mutex_lock(&e->mu);
    qc_lease_ka *list = e->leases;
    e->leases = NULL;
    pthread_mutex_unlock(&e->mu);
    while (list) {
        qc_lease_ka *next = list->next;
        qc_lease_ka_stop(list);
        list = next;
    }
    qc_free_endpoints(e);
    pthread_mutex_destroy(&e->mu);
    free(e);
    grpc_shutdown();
}

/* ------------------------------------------------------------------- unary */
/* One try of a unary call on one endpoint, bounded by deadline_ms from now.
 * On OK *reply is the decoded answer; otherwise why says what happened. */
static grpc_status_code qc_attempt(qc_etcd_ep *ep, int m, const ProtobufCMessage *req,
                                   const ProtobufCMessageDescriptor *rd, int64_t deadline_ms,
                                   ProtobufCMessage **reply, char *why, size_t whylen)
{
    *reply = NULL;
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_call *call = grpc_channel_create_registered_call(
        ep->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, ep->method[m], qc_deadline(deadline_ms), NULL);
    if (!call) {
        qc_cq_destroy(cq);
        snprintf(why, whylen, "%s: cannot create a call", ep->target);
        return GRPC_STATUS_INTERNAL;
    }
    qv_unary u;
    grpc_op ops[6];
    qv_unary_ops(&u, req, NULL, 0, QC_WAIT_FOR_READY, ops);
    grpc_status_code code;
    grpc_call_error ce = grpc_call_start_batch(call, ops, 6, ops, NULL);
    if (ce != GRPC_CALL_OK) {
        snprintf(why, whylen, "%s: start_batch: %s", ep->target, grpc_call_error_to_string(ce));
        code = GRPC_STATUS_INTERNAL;
    } else {
        /* the call's deadline bounds this wait; the status tells the outcome */
        grpc_completion_queue_pluck(cq, ops, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        code = u.code;
        qc_status_text(why, whylen, ep->target, code, grpc_slice_ref(u.details));
        if (code == GRPC_STATUS_DEADLINE_EXCEEDED &&
            grpc_channel_check_connectivity_state(ep->ch, 0) != GRPC_CHANNEL_READY)
            snprintf(why, whylen, "%s: cannot connect", ep->target);
        if (code == GRPC_STATUS_OK && !(*reply = qv_pb_unpack(u.recv, rd))) {
            snprintf(why, whylen, "%s: the reply does not decode as %s", ep->target, rd->name);
            code = GRPC_STATUS_INTERNAL;
        }
    }
    qv_unary_free(&u);
    grpc_call_unref(call);
    qc_cq_destroy(cq);
    return code;
}

/* A unary call that ends by end (a qc_now_ms time). Starts at the endpoint that
 * answered last and moves on while endpoints are unreachable; each try gets
 * the remaining time divided by the endpoints still to try in this round, so
 * one stopped etcd cannot take all of it. Rounds repeat (after a short pause)
 * until then, which rides out a leader election or an etcd
 * restart. Returns 0 with *reply set (protobuf_c_message_free_unpacked it) or a code. */
static int qc_unary_until(qc_etcd *e, int64_t end, int m, const ProtobufCMessage *req,
                          const ProtobufCMessageDescriptor *rd, ProtobufCMessage **reply)
{
    qc_etcd_msg[0] = 0;
    if (atomic_load(&e->closing)) return qc_etcd_fail(QV_SHUTDOWN, "etcd: client closing");
    const char *name = qc_etcd_method_path[m] + strlen("/etcdserverpb.");
    char why[384] = "no try";
    for (;;) {
        size_t first = atomic_load(&e->cur);
        for (size_t k = 0; k < e->n_eps; k++) {
            size_t i = (first + k) % e->n_eps;
            int64_t left = end - qc_now_ms();
            if (left <= 0) goto timeout;
            int64_t share = k + 1 < e->n_eps ? left / (int64_t)(e->n_eps - k) : left;
            grpc_status_code c = qc_attempt(&e->eps[i], m, req, rd, share, reply, why, sizeof why);
            if (qc_retryable(c)) continue;
            if (i != first) atomic_store(&e->cur, i);
            if (c == GRPC_STATUS_OK) return 0;
            return qc_etcd_fail(qc_code_of(c), "etcd %s: %s", name, why);
        }
        int64_t left = end - qc_now_ms();
        if (left <= 0) break;
        if (atomic_load(&e->closing)) return qc_etcd_fail(QV_SHUTDOWN, "etcd: client closing");
        struct timespec ts = {0, (left < QC_ETCD_RETRY_PAUSE_MS ? left : QC_ETCD_RETRY_PAUSE_MS) *
                                     1000000};
        nanosleep(&ts, NULL);
    }
timeout:
    return qc_etcd_fail(QV_IO, "etcd %s: no endpoint answered within %d ms (last: %s)", name,
                        e->timeout_ms, why);
}

/* A call ending by the client's timeout from now (end_ms: by that time). */
#define QC_UNARY(e, m, req, type, reply)                                                       \
    QC_UNARY_UNTIL(e, qc_now_ms() + (e)->timeout_ms, m, req, type, reply)
#define QC_UNARY_UNTIL(e, end_ms, m, req, type, reply)                                         \
    qc_unary_until((e), (end_ms), (m), &(req)->base, &type##__descriptor,                     \
                   (ProtobufCMessage **)(reply))

/* -------------------------------------------------------------- key/values */
int qc_etcd_get(qc_etcd *e, const char *key, qc_kv *out)
{
    memset(out, 0, sizeof *out);
    if (!key || !key[0]) return qc_etcd_fail(QV_INVALID, "etcd: empty key");
    Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
    req.key = qc_bin(key, strlen(key));
    Etcdserverpb__RangeResponse *r;
    int rc = QC_UNARY(e, M_RANGE, &req, etcdserverpb__range_response, &r);
    if (rc) return rc;
    if (r->n_kvs == 0)
        rc = qc_etcd_fail(QV_NOTFOUND, "etcd: no key \"%s\"", key);
    else
        rc = qc_kv_copy(out, r->kvs[0]);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return rc;
}

/* Append a reply's keys to *kvs (*n of them, room for *cap). */
static int qc_kvs_append(qc_kv **kvs, size_t *n, size_t *cap, Etcdserverpb__RangeResponse *r)
{
    if (*n + r->n_kvs > *cap) {
        size_t c = *cap ? *cap : 16;
        while (c < *n + r->n_kvs) c *= 2;
        qc_kv *p = realloc(*kvs, c * sizeof *p);
        if (!p) return qc_etcd_fail(QV_NOMEM, "etcd: out of memory");
        *kvs = p;
        *cap = c;
    }
    for (size_t i = 0; i < r->n_kvs; i++) {
        int rc = qc_kv_copy(&(*kvs)[*n], r->kvs[i]);
        if (rc) return rc;
        (*n)++;
    }
    return 0;
}

int qc_etcd_range(qc_etcd *e, const char *prefix, qc_kv **kvs, size_t *n, int64_t *header_rev)
{
    *kvs = NULL;
    *n = 0;
    size_t plen = strlen(prefix), cap = 0;
    uint8_t *end = malloc(plen + 1), *from = malloc(plen + 1);
    if (!end || !from) {
        free(end);
        free(from);
        return qc_etcd_fail(QV_NOMEM, "etcd: out of memory");
    }
    size_t end_len = qc_prefix_end(prefix, end);
    /* an empty key is refused by etcd; "\0" with range end "\0" is every key */
    size_t from_len = plen ? plen : 1;
    memcpy(from, plen ? prefix : "", from_len);
    Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
    req.range_end = qc_bin(end, end_len);
    req.limit = QC_ETCD_RANGE_PAGE;
    int rc = 0;
    int64_t until = qc_now_ms() + e->timeout_ms; /* one bound for all pages */
    for (;;) {
        req.key = qc_bin(from, from_len);
        Etcdserverpb__RangeResponse *r;
        if ((rc = QC_UNARY_UNTIL(e, until, M_RANGE, &req, etcdserverpb__range_response, &r)))
            break;
        /* later pages are read at the first page's revision: one snapshot */
        if (!req.revision) req.revision = r->header ? r->header->revision : 0;
        rc = qc_kvs_append(kvs, n, &cap, r);
        int more = r->more && r->n_kvs;
        if (!rc && more) { /* next page: the keys after the last one */
            const Mvccpb__KeyValue *last = r->kvs[r->n_kvs - 1];
            uint8_t *p = realloc(from, last->key.len + 1);
            if (!p) rc = qc_etcd_fail(QV_NOMEM, "etcd: out of memory");
            else {
                from = p;
                memcpy(from, last->key.data, last->key.len);
                from[last->key.len] = 0;
                from_len = last->key.len + 1;
            }
        }
        protobuf_c_message_free_unpacked(&r->base, NULL);
        if (rc || !more) break;
    }
    free(end);
    free(from);
    if (rc) {
        qc_kvs_free(*kvs, *n);
        *kvs = NULL;
        *n = 0;
    } else if (header_rev) {
        *header_rev = req.revision;
    }
    return rc;
}

int qc_etcd_put(qc_etcd *e, const char *key, const void *val, size_t len, int64_t lease)
{
    if (!key || !key[0]) return qc_etcd_fail(QV_INVALID, "etcd: empty key");
    Etcdserverpb__PutRequest req = ETCDSERVERPB__PUT_REQUEST__INIT;
    req.key = qc_bin(key, strlen(key));
    req.value = qc_bin(val, len);
    req.lease = lease;
    Etcdserverpb__PutResponse *r;
    int rc = QC_UNARY(e, M_PUT, &req, etcdserverpb__put_response, &r);
    if (!rc) protobuf_c_message_free_unpacked(&r->base, NULL);
    return rc;
}

/* Put key only if a compare on it holds: target CREATE with rev 0 (absent) or
 * MOD with rev. *ok tells whether the compare held. */
static int qc_txn_put(qc_etcd *e, const char *key, const void *val, size_t len, int64_t lease,
                      Etcdserverpb__Compare__CompareTarget target, int64_t rev, int *ok)
{
    *ok = 0;
    if (!key || !key[0]) return qc_etcd_fail(QV_INVALID, "etcd: empty key");
    Etcdserverpb__Compare cmp = ETCDSERVERPB__COMPARE__INIT;
    cmp.key = qc_bin(key, strlen(key));
    cmp.target = target;
    cmp.result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL;
    if (target == ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE) {
        cmp.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION;
        cmp.create_revision = rev;
    } else {
        cmp.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION;
        cmp.mod_revision = rev;
    }
    Etcdserverpb__PutRequest put = ETCDSERVERPB__PUT_REQUEST__INIT;
    put.key = cmp.key;
    put.value = qc_bin(val, len);
    put.lease = lease;
    /* a compare-and-swap changes the value, not the key's lease */
    put.ignore_lease = target == ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD;
    Etcdserverpb__RequestOp op = ETCDSERVERPB__REQUEST_OP__INIT;
    op.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
    op.request_put = &put;
    Etcdserverpb__Compare *cmps[1] = {&cmp};
    Etcdserverpb__RequestOp *ops[1] = {&op};
    Etcdserverpb__TxnRequest req = ETCDSERVERPB__TXN_REQUEST__INIT;
    req.n_compare = 1;
    req.compare = cmps;
    req.n_success = 1;
    req.success = ops;
    Etcdserverpb__TxnResponse *r;
    int rc = QC_UNARY(e, M_TXN, &req, etcdserverpb__txn_response, &r);
    if (rc) return rc;
    *ok = r->succeeded;
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return 0;
}

int qc_etcd_create(qc_etcd *e, const char *key, const void *val, size_t len, int64_t lease)
{
    int ok;
    int rc = qc_txn_put(e, key, val, len, lease, ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE, 0,
                        &ok);
    if (rc) return rc;
    return ok ? 0 : qc_etcd_fail(QV_EXISTS, "etcd: key \"%s\" exists", key);
}

int qc_etcd_cas(qc_etcd *e, const char *key, const void *val, size_t len, int64_t mod_rev)
{
    int ok;
    int rc = qc_txn_put(e, key, val, len, 0, ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD, mod_rev,
                        &ok);
    if (rc) return rc;
    return ok ? 0
              : qc_etcd_fail(QV_BUSY, "etcd: key \"%s\" changed since revision %lld", key,
                             (long long)mod_rev);
}

static int qc_delete_range(qc_etcd *e, const uint8_t *key, size_t key_len, const uint8_t *end,
                           size_t end_len, int64_t *deleted)
{
    Etcdserverpb__DeleteRangeRequest req = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    req.key = qc_bin(key, key_len);
    req.range_end = qc_bin(end, end_len);
    Etcdserverpb__DeleteRangeResponse *r;
    int rc = QC_UNARY(e, M_DELETE, &req, etcdserverpb__delete_range_response, &r);
    if (rc) return rc;
    *deleted = r->deleted;
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return 0;
}

int qc_etcd_delete(qc_etcd *e, const char *key)
{
    if (!key || !key[0]) return qc_etcd_fail(QV_INVALID, "etcd: empty key");
    int64_t deleted = 0;
    int rc = qc_delete_range(e, (const uint8_t *)key, strlen(key), NULL, 0, &deleted);
    if (rc) return rc;
    return deleted ? 0 : qc_etcd_fail(QV_NOTFOUND, "etcd: no key \"%s\"", key);
}

int qc_etcd_delete_prefix(qc_etcd *e, const char *prefix)
{
    /* refused: one typo away from wiping the cluster's metadata */
    if (!prefix || !prefix[0]) return qc_etcd_fail(QV_INVALID, "etcd: empty prefix");
    size_t plen = strlen(prefix);
    uint8_t *end = malloc(plen + 1);
    if (!end) return qc_etcd_fail(QV_NOMEM, "etcd: out of memory");
    size_t end_len = qc_prefix_end(prefix, end);
    int64_t deleted = 0;
    int rc = qc_delete_range(e, (const uint8_t *)prefix, plen, end, end_len, &deleted);
    free(end);
    return rc;
}

/* ------------------------------------------------------------------ streams */
/* Open a stream of method m on endpoint ep for the thread controlled by ctl.
 * Returns 0, or -1 when stopped or the call cannot be made. */
static int qc_stream_open(qc_etcd *e, size_t ep, int m, qc_ctl *ctl, qc_stream *s)
{
    memset(s, 0, sizeof *s);
    s->ctl = ctl;
    grpc_metadata_array_init(&s->initial);
    s->cq = grpc_completion_queue_create_for_pluck(NULL);
    /* no deadline: the stream lives until it breaks or is stopped */
    s->call = grpc_channel_create_registered_call(e->eps[ep].ch, NULL, GRPC_PROPAGATE_DEFAULTS,
                                                  s->cq, e->eps[ep].method[m],
                                                  gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    pthread_mutex_lock(&ctl->mu);
    int ok = s->call && !ctl->stop;
    if (ok) ctl->call = s->call;
    pthread_mutex_unlock(&ctl->mu);
    if (ok) return 0;
    if (s->call) grpc_call_unref(s->call);
    grpc_metadata_array_destroy(&s->initial);
    qc_cq_destroy(s->cq);
    return -1;
}

/* Run a batch and wait for it at most timeout_ms (< 0: until it completes;
 * a stop cancels the call, which completes it). On timeout the call is
 * cancelled. Returns 1 when the batch succeeded. */
static int qc_stream_batch(qc_stream *s, grpc_op *ops, size_t n, int64_t timeout_ms)
{
    char tag;
    if (grpc_call_start_batch(s->call, ops, n, &tag, NULL) != GRPC_CALL_OK) return 0;
    grpc_event ev = grpc_completion_queue_pluck(s->cq, &tag, qc_deadline(timeout_ms), NULL);
    if (ev.type == GRPC_QUEUE_TIMEOUT) {
        if (!s->timed_out) s->timed_out = timeout_ms;
        grpc_call_cancel(s->call, NULL);
        grpc_completion_queue_pluck(s->cq, &tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        return 0;
    }
    return ev.type == GRPC_OP_COMPLETE && ev.success;
}

static int qc_stream_send(qc_stream *s, const ProtobufCMessage *msg, int64_t timeout_ms)
{
    /* etcd ends a stream whose member has lost the leader (instead of
     * leaving it silent) when asked to: then we move to another member */
    grpc_metadata hasleader = {.key = grpc_slice_from_static_string("hasleader"),
                               .value = grpc_slice_from_static_string("true")};
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    if (!s->sent_md) {
        ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[n].flags = QC_WAIT_FOR_READY;
        ops[n].data.send_initial_metadata.count = 1;
        ops[n].data.send_initial_metadata.metadata = &hasleader;
        n++;
        s->sent_md = 1;
    }
    grpc_byte_buffer *bb = qv_pb_pack(msg);
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n].data.send_message.send_message = bb;
    n++;
    int ok = qc_stream_batch(s, ops, n, timeout_ms);
    grpc_byte_buffer_destroy(bb);
    return ok;
}

/* The next message, or NULL when the stream ended, broke, timed out or the
 * message does not decode. */
static ProtobufCMessage *qc_stream_recv(qc_stream *s, const ProtobufCMessageDescriptor *d,
                                        int64_t timeout_ms)
{
    grpc_byte_buffer *bb = NULL;
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    if (!s->asked_md) {
        ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
        ops[n].data.recv_initial_metadata.recv_initial_metadata = &s->initial;
        n++;
        s->asked_md = 1;
    }
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n].data.recv_message.recv_message = &bb;
    n++;
    int ok = qc_stream_batch(s, ops, n, timeout_ms);
    ProtobufCMessage *m = ok && bb ? qv_pb_unpack(bb, d) : NULL;
    if (bb) grpc_byte_buffer_destroy(bb);
    return m;
}

/* End the stream (cancel if still open), describe its status in why, and
 * release everything. */
static void qc_stream_close(qc_stream *s, const char *target, char *why, size_t whylen)
{
    pthread_mutex_lock(&s->ctl->mu);
    s->ctl->call = NULL; /* from here no stop touches the call */
    pthread_mutex_unlock(&s->ctl->mu);
    grpc_status_code code = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    grpc_metadata_array trailing;
    grpc_metadata_array_init(&trailing);
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    if (!s->asked_md) { /* without it the status never arrives */
        ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
        ops[n].data.recv_initial_metadata.recv_initial_metadata = &s->initial;
        n++;
    }
    ops[n].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[n].data.recv_status_on_client.status = &code;
    ops[n].data.recv_status_on_client.status_details = &details;
    ops[n].data.recv_status_on_client.trailing_metadata = &trailing;
    n++;
    /* a broken stream has its status (the reason) at once; one we leave
     * while it is open is cancelled after a short wait */
    int64_t waited = s->timed_out;
    if (qc_stream_batch(s, ops, n, 100)) {
        qc_status_text(why, whylen, target, code, details);
        if (waited) snprintf(why, whylen, "%s: no answer within %lld ms", target, (long long)waited);
    } else {
        grpc_slice_unref(details);
        snprintf(why, whylen, "%s: stream failed", target);
    }
    grpc_metadata_array_destroy(&trailing);
    grpc_metadata_array_destroy(&s->initial);
    grpc_call_unref(s->call);
    qc_cq_destroy(s->cq);
}

/* ------------------------------------------------------------------- leases */
int qc_etcd_lease_grant(qc_etcd *e, int ttl_s, int64_t *id)
{
    *id = 0;
    if (ttl_s <= 0) return qc_etcd_fail(QV_INVALID, "etcd: lease TTL %d s", ttl_s);
    Etcdserverpb__LeaseGrantRequest req = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
    req.ttl = ttl_s;
    Etcdserverpb__LeaseGrantResponse *r;
    int rc = QC_UNARY(e, M_LEASE_GRANT, &req, etcdserverpb__lease_grant_response, &r);
    if (rc) return rc;
    if (r->error && r->error[0])
        rc = qc_etcd_fail(QV_INVALID, "etcd LeaseGrant: %s", r->error);
    else
        *id = r->id;
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return rc;
}

/* Remaining TTL of a lease in seconds (QV_NOTFOUND when gone). */
static int qc_lease_ttl(qc_etcd *e, int64_t id, int64_t *ttl)
{
    Etcdserverpb__LeaseTimeToLiveRequest req = ETCDSERVERPB__LEASE_TIME_TO_LIVE_REQUEST__INIT;
    req.id = id;
    Etcdserverpb__LeaseTimeToLiveResponse *r;
    int rc = QC_UNARY(e, M_LEASE_TTL, &req, etcdserverpb__lease_time_to_live_response, &r);
    if (rc) return rc;
    *ttl = r->ttl; /* -1: expired or never granted */
    protobuf_c_message_free_unpacked(&r->base, NULL);
    if (*ttl <= 0) return qc_etcd_fail(QV_NOTFOUND, "etcd: no lease %llx", (unsigned long long)id);
    return 0;
}

/* etcd said the lease is gone: record it, tell the owner, end the thread. */
static void qc_lease_ka_lost(qc_lease_ka *ka)
{
    qc_etcd *e = ka->e;
    pthread_mutex_lock(&ka->ctl.mu);
    ka->lost = 1;
    pthread_mutex_unlock(&ka->ctl.mu);
    qv_warn("etcd: lease %llx is gone (expired or revoked)", (unsigned long long)ka->id);
    pthread_mutex_lock(&e->mu);
    void (*cb)(void *, int64_t) = e->lost_cb;
    void *ctx = e->lost_ctx;
    pthread_mutex_unlock(&e->mu);
    if (cb) cb(ctx, ka->id);
}

/* Refresh the lease over one open stream until it breaks or we stop.
 * Returns 1 when the lease is gone, 0 otherwise; *refreshed counts replies. */
static int qc_lease_ka_run(qc_lease_ka *ka, qc_stream *s, int *refreshed)
{
    Etcdserverpb__LeaseKeepAliveRequest req = ETCDSERVERPB__LEASE_KEEP_ALIVE_REQUEST__INIT;
    req.id = ka->id;
    int64_t timeout = ka->e->timeout_ms;
    for (;;) {
        int64_t sent = qc_now_ms();
        if (!qc_stream_send(s, &req.base, timeout)) return 0;
        Etcdserverpb__LeaseKeepAliveResponse *r = (Etcdserverpb__LeaseKeepAliveResponse *)
            qc_stream_recv(s, &etcdserverpb__lease_keep_alive_response__descriptor, timeout);
        if (!r) return 0;
        int64_t ttl = r->ttl;
        protobuf_c_message_free_unpacked(&r->base, NULL);
        if (ttl <= 0) return 1;
        (*refreshed)++;
        pthread_mutex_lock(&ka->ctl.mu);
        /* counted from the send: the server's clock started no earlier */
        ka->expires_ms = sent + ttl * 1000;
        pthread_mutex_unlock(&ka->ctl.mu);
        /* a third of the TTL leaves two more tries before expiry */
        if (qc_ctl_sleep(&ka->ctl, ttl * 1000 / 3)) return 0;
    }
}

static void *qc_lease_ka_main(void *arg)
{
    qc_lease_ka *ka = arg;
    qc_etcd *e = ka->e;
    size_t ep = atomic_load(&e->cur);
    int failing = 0;
    while (!qc_ctl_stopped(&ka->ctl)) {
        qc_stream s;
        int refreshed = 0, gone = 0;
        char why[384] = "";
        if (qc_stream_open(e, ep, M_LEASE_KEEPALIVE, &ka->ctl, &s) == 0) {
            gone = qc_lease_ka_run(ka, &s, &refreshed);
            qc_stream_close(&s, e->eps[ep].target, why, sizeof why);
        }
        if (gone) {
            qc_lease_ka_lost(ka);
            break;
        }
        if (qc_ctl_stopped(&ka->ctl)) break;
        if (refreshed && failing) {
            qv_info("etcd: lease %llx kept alive again", (unsigned long long)ka->id);
            failing = 0;
        }
        if (!failing++)
            qv_warn("etcd: lease %llx keepalive: %s; trying other endpoints",
                    (unsigned long long)ka->id, why);
        ep = (ep + 1) % e->n_eps;
        if (qc_ctl_sleep(&ka->ctl, QC_ETCD_STREAM_PAUSE_MS)) break;
    }
    return NULL;
}

static void qc_lease_ka_stop(qc_lease_ka *ka)
{
    qc_ctl_stop(&ka->ctl);
    pthread_join(ka->thread, NULL);
    qc_ctl_destroy(&ka->ctl);
    free(ka);
}

/* The keepalive of lease id (e->mu held); NULL when none. */
static qc_lease_ka *qc_lease_find(qc_etcd *e, int64_t id)
{
    for (qc_lease_ka *ka = e->leases; ka; ka = ka->next)
        if (ka->id == id) return ka;
    return NULL;
}

int qc_etcd_lease_keepalive(qc_etcd *e, int64_t id)
{
    pthread_mutex_lock(&e->mu);
    int running = qc_lease_find(e, id) != NULL;
    pthread_mutex_unlock(&e->mu);
    if (running) return 0;
    /* one synchronous look first: a bad id is the caller's to hear now */
    int64_t ttl = 0, asked = qc_now_ms();
    int rc = qc_lease_ttl(e, id, &ttl);
    if (rc) return rc;
    qc_lease_ka *ka = calloc(1, sizeof *ka);
    if (!ka) return qc_etcd_fail(QV_NOMEM, "etcd: out of memory");
    ka->e = e;
    ka->id = id;
    ka->expires_ms = asked + ttl * 1000;
    qc_ctl_init(&ka->ctl);
    pthread_mutex_lock(&e->mu);
    if (qc_lease_find(e, id)) { /* another thread won the race */
        pthread_mutex_unlock(&e->mu);
        qc_ctl_destroy(&ka->ctl);
        free(ka);
        return 0;
    }
    if (pthread_create(&ka->thread, NULL, qc_lease_ka_main, ka)) {
        pthread_mutex_unlock(&e->mu);
        qc_ctl_destroy(&ka->ctl);
        free(ka);
        return qc_etcd_fail(QV_NOMEM, "etcd: cannot start a keepalive thread");
    }
    ka->next = e->leases;
    e->leases = ka;
    pthread_mutex_unlock(&e->mu);
    return 0;
}

int qc_etcd_lease_alive(qc_etcd *e, int64_t id)
{
    pthread_mutex_lock(&e->mu);
    qc_lease_ka *ka = qc_lease_find(e, id);
    int alive = 0;
    if (ka) {
        pthread_mutex_lock(&ka->ctl.mu);
        alive = !ka->lost && qc_now_ms() < ka->expires_ms;
        pthread_mutex_unlock(&ka->ctl.mu);
    }
    pthread_mutex_unlock(&e->mu);
    return alive;
}

void qc_etcd_on_lease_lost(qc_etcd *e, void (*cb)(void *ctx, int64_t id), void *ctx)
{
    pthread_mutex_lock(&e->mu);
    e->lost_cb = cb;
    e->lost_ctx = ctx;
    pthread_mutex_unlock(&e->mu);
}

int qc_etcd_lease_revoke(qc_etcd *e, int64_t id)
{
    pthread_mutex_lock(&e->mu);
    qc_lease_ka **pp = &e->leases, *ka = NULL;
    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->id == id) {
            ka = *pp;
            *pp = ka->next;
            break;
        }
    pthread_mutex_unlock(&e->mu);
    if (ka) qc_lease_ka_stop(ka); /* first: a refresh must not race the revoke */
    Etcdserverpb__LeaseRevokeRequest req = ETCDSERVERPB__LEASE_REVOKE_REQUEST__INIT;
    req.id = id;
    Etcdserverpb__LeaseRevokeResponse *r;
    int rc = QC_UNARY(e, M_LEASE_REVOKE, &req, etcdserverpb__lease_revoke_response, &r);
    if (!rc) protobuf_c_message_free_unpacked(&r->base, NULL);
    return rc;
}

/* -------------------------------------------------------------------- watch */
/* Hand one event to the callback with NUL-terminated copies of key and value. */
static void qc_watch_deliver(qc_watch *w, const Mvccpb__Event *ev)
{
    qc_kv kv;
    if (qc_kv_copy(&kv, ev->kv)) {
        qv_error("etcd watch: out of memory; an event is lost");
        return;
    }
    w->cb(w->ctx, ev->type == MVCCPB__EVENT__EVENT_TYPE__DELETE ? QC_DELETE : QC_PUT, &kv);
    qc_kv_free(&kv);
}

/* What a watch stream ended with. */
enum { QC_WATCH_BROKEN, QC_WATCH_COMPACTED, QC_WATCH_STOPPED };

/* Create the watch on an open stream and pass its events on until the stream
 * ends. *got counts responses (0: this endpoint did not serve us). */
static int qc_watch_run(qc_watch *w, qc_stream *s, int *got)
{
    Etcdserverpb__WatchCreateRequest cr = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
    cr.key = qc_bin(w->key, w->key_len);
    cr.range_end = qc_bin(w->end, w->end_len);
    cr.start_revision = w->next_rev;
    /* idle periods still advance next_rev, so a resume after a long quiet
     * spell is less likely to hit a compaction */
    cr.progress_notify = 1;
    Etcdserverpb__WatchRequest req = ETCDSERVERPB__WATCH_REQUEST__INIT;
    req.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
    req.create_request = &cr;
    if (!qc_stream_send(s, &req.base, w->e->timeout_ms)) return QC_WATCH_BROKEN;
    for (;;) {
        /* the first answer (created) is due within the timeout; after that
         * quiet is normal, and gRPC keepalive pings catch a dead peer */
        Etcdserverpb__WatchResponse *r = (Etcdserverpb__WatchResponse *)qc_stream_recv(
            s, &etcdserverpb__watch_response__descriptor, *got ? -1 : w->e->timeout_ms);
        if (!r) return qc_ctl_stopped(&w->ctl) ? QC_WATCH_STOPPED : QC_WATCH_BROKEN;
        (*got)++;
        int end = -1;
        if (r->compact_revision > 0) {
            /* events from next_rev on are gone: tell the user, go on from
             * the oldest revision etcd still has */
            qc_kv kv = {.mod_rev = r->compact_revision};
            qv_warn("etcd watch: revision %lld compacted (now %lld); reset",
                    (long long)w->next_rev, (long long)r->compact_revision);
            w->next_rev = r->compact_revision;
            w->cb(w->ctx, QC_RESET, &kv);
            end = QC_WATCH_COMPACTED;
        } else if (r->canceled) {
            qv_warn("etcd watch cancelled by the server: %s", r->cancel_reason);
            end = QC_WATCH_BROKEN;
        } else {
            /* one reply holds every event of a revision (a transaction's
             * several keys), so next_rev moves once the reply is done */
            int64_t from = w->next_rev;
            for (size_t i = 0; i < r->n_events; i++) {
                const Mvccpb__Event *ev = r->events[i];
                if (!ev->kv || ev->kv->mod_revision < from) continue; /* seen */
                qc_watch_deliver(w, ev);
                if (ev->kv->mod_revision >= w->next_rev) w->next_rev = ev->kv->mod_revision + 1;
            }
            /* a progress notice: everything up to its revision was sent */
            if (!r->n_events && !r->created && r->header && r->header->revision >= w->next_rev)
                w->next_rev = r->header->revision + 1;
        }
        protobuf_c_message_free_unpacked(&r->base, NULL);
        if (end >= 0) return end;
    }
}

static void *qc_watch_main(void *arg)
{
    qc_watch *w = arg;
    qc_etcd *e = w->e;
    size_t ep = atomic_load(&e->cur);
    int failing = 0;
    while (!qc_ctl_stopped(&w->ctl)) {
        qc_stream s;
        int got = 0, end = QC_WATCH_BROKEN;
        char why[384] = "";
        if (qc_stream_open(e, ep, M_WATCH, &w->ctl, &s) == 0) {
            end = qc_watch_run(w, &s, &got);
            qc_stream_close(&s, e->eps[ep].target, why, sizeof why);
        }
        if (end == QC_WATCH_STOPPED || qc_ctl_stopped(&w->ctl)) break;
        if (end == QC_WATCH_COMPACTED) continue; /* at once, same endpoint */
        if (got && failing) failing = 0;
        if (!failing++)
            qv_warn("etcd watch: %s; resuming from revision %lld", why, (long long)w->next_rev);
        /* a stream that served events broke: its endpoint may come back, but
         * another one is likelier to be up now */
        ep = (ep + 1) % e->n_eps;
        if (qc_ctl_sleep(&w->ctl, QC_ETCD_STREAM_PAUSE_MS)) break;
    }
    return NULL;
}

static void qc_watch_free(qc_watch *w)
{
    free(w->key);
    free(w->end);
    free(w);
}

/* The store's current revision (a count-only read of the watched range). */
static int qc_current_rev(qc_etcd *e, const qc_watch *w, int64_t *rev)
{
    Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
    req.key = qc_bin(w->key, w->key_len);
    req.range_end = qc_bin(w->end, w->end_len);
    req.count_only = 1;
    Etcdserverpb__RangeResponse *r;
    int rc = QC_UNARY(e, M_RANGE, &req, etcdserverpb__range_response, &r);
    if (rc) return rc;
    *rev = r->header ? r->header->revision : 0;
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return 0;
}

int qc_etcd_watch(qc_etcd *e, const char *prefix, int64_t start_rev,
                  void (*cb)(void *ctx, int type, const qc_kv *kv), void *ctx, qc_watch **out)
{
    *out = NULL;
    qc_etcd_msg[0] = 0;
    if (!prefix || !cb || start_rev < 0) return qc_etcd_fail(QV_INVALID, "etcd: bad watch");
    qc_watch *w = calloc(1, sizeof *w);
    size_t plen = strlen(prefix);
    if (w) {
        w->key = malloc(plen + 1);
        w->end = malloc(plen + 1);
    }
    if (!w || !w->key || !w->end) {
        if (w) qc_watch_free(w);
        return qc_etcd_fail(QV_NOMEM, "etcd: out of memory");
    }
    w->e = e;
    w->cb = cb;
    w->ctx = ctx;
    w->end_len = qc_prefix_end(prefix, w->end);
    w->key_len = plen ? plen : 1; /* "" watches every key: from "\0" */
    memcpy(w->key, plen ? prefix : "", w->key_len);
    /* "now" is pinned to a revision here, so whatever happens after this
     * call returns is reported even if the stream is slow to open */
    if (start_rev == 0) {
        int rc = qc_current_rev(e, w, &start_rev);
        if (rc) {
            qc_watch_free(w);
            return rc;
        }
        start_rev++;
    }
    w->next_rev = start_rev;
    qc_ctl_init(&w->ctl);
    if (pthread_create(&w->thread, NULL, qc_watch_main, w)) {
        qc_ctl_destroy(&w->ctl);
        qc_watch_free(w);
        return qc_etcd_fail(QV_NOMEM, "etcd: cannot start a watch thread");
    }
    *out = w;
    return 0;
}

void qc_watch_cancel(qc_watch *w)
{
    if (!w) return;
    qc_ctl_stop(&w->ctl);
    pthread_join(w->thread, NULL);
    qc_ctl_destroy(&w->ctl);
    qc_watch_free(w);
}
