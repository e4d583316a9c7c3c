/*
 * The cluster's write log on NATS JetStream (cluster/log.h): connection,
 * per-shard streams, publish with retries, and followers that replay a shard
 * in order. libnats statuses and JetStream error codes are translated to
 * Quiver's codes here and nowhere else. It does not know what a message
 * means; node.c does.
 */
#include "log.h"

#include <errno.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "quiver/error.h"
#include "quiver/log.h"

enum {
    QC_LOG_MAX_COLL = 128,
    QC_LOG_MAX_URLS = 64,
    /* one publish attempt of a small message: what a request to a dead
     * leader costs before the retry; plus this per MiB (R3 stores ~48 MB/s) */
    QC_LOG_ATTEMPT_MS = 1000,
    QC_LOG_ATTEMPT_MS_PER_MIB = 128,
    QC_LOG_ADMIN_ATTEMPT_MS = 2000, /* one stream request (create, delete, info, purge) */
    /* retry backoff of publish and stream requests; the cap bounds the wait
     * after a new stream leader is up (until then: "no responders") */
    QC_LOG_BACKOFF_MIN_MS = 25,
    QC_LOG_BACKOFF_MAX_MS = 500,
    QC_FOLLOW_POLL_MS = 200, /* longest wait for a message: bounds stop latency */
    /* follower backoff: subscribing again, and re-delivering a refused batch */
    QC_FOLLOW_RETRY_MIN_MS = 100,
    QC_FOLLOW_RETRY_MAX_MS = 2000,
    QC_FOLLOW_IDLE_CHECK_MS = 5000, /* idle this long: ask whether the stream moved on */
    QC_FOLLOW_SUBSCRIBE_MS = 2000,  /* longest wait for a consumer to be created */
};

/* The server's heartbeat to an ordered consumer; libnats resets the consumer
 * after two are missed, so this bounds how long a lost consumer goes unseen. */
#define QC_FOLLOW_HEARTBEAT_NS ((int64_t)1000 * 1000 * 1000)
#define QC_LOG_DEDUP_NS ((int64_t)120 * 1000 * 1000 * 1000)
#define QC_LOG_STREAM_MAX_MSG ((int32_t)(8 << 20))

struct qc_log {
    natsConnection *nc;
    jsCtx *js;
    int timeout_ms;
    int64_t max_bytes; /* each stream's cap (0: none) */
};

struct qc_follow {
    qc_log *lg;
    char stream[QC_LOG_NAME_MAX];
    char subject[QC_LOG_NAME_MAX];
    qc_log_apply_fn apply;
    void *ctx;
    pthread_t thread;
    pthread_mutex_t mu; /* guards stop, for the backoff waits */
    pthread_cond_t cv;
    bool stop;
    _Atomic uint64_t position; /* last sequence apply accepted */
    /* owned by the follower thread */
    natsSubscription *sub;
    uint64_t handed;   /* last sequence put in a batch from this subscription */
    natsMsg *carry;    /* a message that did not fit the last batch */
    natsMsg *held[QC_LOG_BATCH_MSGS];
    qc_log_msg msgs[QC_LOG_BATCH_MSGS];
    size_t n, bytes;
    int64_t active_ms; /* monotonic time a message last arrived */
};

/* ------------------------------------------------------------- helpers */

static _Thread_local char qc_log_tls_err[256];

const char *qc_log_errmsg(void) { return qc_log_tls_err; }

static void qc_log_seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes the message to err (if given) and to the thread's qc_log_errmsg. */
static void qc_log_seterr(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(qc_log_tls_err, sizeof qc_log_tls_err, fmt, ap);
    va_end(ap);
    if (err && errlen) snprintf(err, errlen, "%s", qc_log_tls_err);
}

static int64_t qc_log_clock_ms(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t qc_log_now_ms(void) { return qc_log_clock_ms(CLOCK_REALTIME); }
static int64_t qc_log_mono_ms(void) { return qc_log_clock_ms(CLOCK_MONOTONIC); }

static void qc_log_sleep_ms(int64_t ms)
{
    if (ms <= 0) return;
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* libnats' last error text for this thread if it is about s (a call that
 * fails without setting one leaves an older text there), else s's name. */
static const char *qc_log_nats_text(natsStatus s)
{
    natsStatus last = NATS_OK;
    const char *t = nats_GetLastError(&last);
    return t && *t && last == s ? t : natsStatus_GetText(s);
}

/* Failures worth another attempt: the server is away, restarting, electing a
 * leader or short of peers for a moment. Everything else is final. */
static bool qc_log_transient(natsStatus s, jsErrCode jerr)
{
    switch (s) {
    case NATS_TIMEOUT:
    case NATS_NO_RESPONDERS:
    case NATS_CONNECTION_DISCONNECTED:
    case NATS_NOT_YET_CONNECTED:
    case NATS_IO_ERROR:
    case NATS_STALE_CONNECTION:
    case NATS_NO_SERVER:
    case NATS_INSUFFICIENT_BUFFER: /* reconnect buffer full during an outage */
        return true;
    case NATS_ERR:
    case NATS_NOT_FOUND:
        return jerr == 0 || jerr == JSClusterNoPeersErr || jerr == JSClusterNotAvailErr ||
               jerr == JSClusterNotLeaderErr || jerr == JSInsufficientResourcesErr;
    default:
        return false;
    }
}

/* Quiver's code for a final libnats failure. */
static int qc_log_code(natsStatus s, jsErrCode jerr)
{
    if (jerr == JSStreamNotFoundErr) return QV_NOTFOUND;
    if (jerr == JSStreamMessageExceedsMaximumErr || s == NATS_MAX_PAYLOAD) return QV_LIMIT;
    if (s == NATS_CONNECTION_CLOSED) return QV_SHUTDOWN;
    if (s == NATS_NO_MEMORY) return QV_NOMEM;
    if (qc_log_transient(s, jerr)) return QV_IO;
    return QV_INVALID;
}

/* Sleep before retry number `attempt` (1-based): doubling from min to max,
 * never past the deadline (monotonic or realtime, as the caller counts). */
static void qc_log_backoff(int attempt, int64_t left_ms)
{
    int64_t ms = QC_LOG_BACKOFF_MIN_MS;
    for (int i = 1; i < attempt && ms < QC_LOG_BACKOFF_MAX_MS; i++) ms *= 2;
    if (ms > QC_LOG_BACKOFF_MAX_MS) ms = QC_LOG_BACKOFF_MAX_MS;
    qc_log_sleep_ms(ms < left_ms ? ms : left_ms);
}

/* ---------------------------------------------------------------- names */

static bool qc_log_coll_ok(const char *coll)
{
    size_t n = coll ? strlen(coll) : 0;
    if (n == 0 || n > QC_LOG_MAX_COLL || coll[0] == '.') return false;
    for (size_t i = 0; i < n; i++) {
        char c = coll[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == '-';
        if (!ok) return false;
    }
    return true;
}

/* Escapes coll for a stream name or subject token: '_' -> "__", '.' -> "_2E".
 * Returns the length written, or 0 if it does not fit. */
static size_t qc_log_escape(const char *coll, char *out, size_t cap)
{
    size_t n = 0;
    for (const char *p = coll; *p; p++) {
        const char *rep = *p == '_' ? "__" : *p == '.' ? "_2E" : NULL;
        size_t k = rep ? strlen(rep) : 1;
        if (n + k >= cap) return 0;
        if (rep)
            memcpy(out + n, rep, k);
        else
            out[n] = *p;
        n += k;
    }
    out[n] = '\0';
    return n;
}

int qc_log_names(const char *coll, uint32_t shard, char stream[QC_LOG_NAME_MAX],
                 char subject[QC_LOG_NAME_MAX])
{
    char esc[QC_LOG_NAME_MAX];
    if (!qc_log_coll_ok(coll) || !qc_log_escape(coll, esc, sizeof esc)) {
        qc_log_seterr(NULL, 0, "collection name \"%s\" is not [A-Za-z0-9_.-]{1,128} or too long once escaped",
                      coll ? coll : "(null)");
        return QV_INVALID;
    }
    char st[2 * QC_LOG_NAME_MAX], sj[2 * QC_LOG_NAME_MAX];
    int a = snprintf(st, sizeof st, "QV_%s_%u", esc, shard);
    int b = snprintf(sj, sizeof sj, "quiver.%s.%u", esc, shard);
    if (a >= QC_LOG_NAME_MAX || b >= QC_LOG_NAME_MAX) {
        qc_log_seterr(NULL, 0, "collection name \"%s\" makes a stream name over %d bytes", coll,
                      QC_LOG_NAME_MAX - 1);
        return QV_INVALID;
    }
    if (stream) memcpy(stream, st, (size_t)a + 1);
    if (subject) memcpy(subject, sj, (size_t)b + 1);
    return 0;
}

/* ----------------------------------------------------------- connection */

static void qc_log_on_disconnect(natsConnection *nc, void *closure)
{
    (void)closure;
    if (!natsConnection_IsClosed(nc)) qv_warn("nats: disconnected, reconnecting in the background");
}

static void qc_log_on_reconnect(natsConnection *nc, void *closure)
{
    (void)closure;
    char url[256] = "";
    natsConnection_GetConnectedUrl(nc, url, sizeof url);
    qv_info("nats: connected to %s", url);
}

/* Asynchronous errors (missed heartbeats, a consumer being recreated, slow
 * consumers) are handled by the follower itself; they are only logged. */
static void qc_log_on_async_error(natsConnection *nc, natsSubscription *sub, natsStatus s, void *closure)
{
    (void)nc;
    (void)sub;
    (void)closure;
    qv_debug("nats: asynchronous error: %s", natsStatus_GetText(s));
}

/* Splits the comma list into opts' server list. */
static natsStatus qc_log_set_servers(natsOptions *o, const char *urls)
{
    char *copy = strdup(urls);
    if (!copy) return NATS_NO_MEMORY;
    const char *list[QC_LOG_MAX_URLS];
    int n = 0;
    for (char *save = NULL, *t = strtok_r(copy, ", ", &save); t && n < QC_LOG_MAX_URLS;
         t = strtok_r(NULL, ", ", &save))
        list[n++] = t;
    natsStatus s = n ? natsOptions_SetServers(o, list, n) : NATS_INVALID_ARG;
    free(copy);
    return s;
}

/* Options: every URL, reconnect forever with a short wait, pings that notice
 * a silent server in about 10 s, and a first connect that keeps retrying in
 * the background so open can wait for it. */
static natsStatus qc_log_options(natsOptions **out, const char *urls, const char *creds, int timeout_ms)
{
    natsOptions *o = NULL;
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK) s = qc_log_set_servers(o, urls);
    if (s == NATS_OK) s = natsOptions_SetName(o, "quiverd");
    if (s == NATS_OK) s = natsOptions_SetTimeout(o, timeout_ms < 2000 ? timeout_ms : 2000);
    if (s == NATS_OK) s = natsOptions_SetMaxReconnect(o, -1);
    if (s == NATS_OK) s = natsOptions_SetReconnectWait(o, 250);
    if (s == NATS_OK) s = natsOptions_SetReconnectJitter(o, 100, 1000);
    if (s == NATS_OK) s = natsOptions_SetPingInterval(o, 5000);
    if (s == NATS_OK) s = natsOptions_SetMaxPingsOut(o, 2);
    /* with a callback the first connect goes on in the background (without
     * one libnats would retry inside natsConnection_Connect, forever) */
    if (s == NATS_OK) s = natsOptions_SetRetryOnFailedConnect(o, true, qc_log_on_reconnect, NULL);
    if (s == NATS_OK) s = natsOptions_SetDisconnectedCB(o, qc_log_on_disconnect, NULL);
    if (s == NATS_OK) s = natsOptions_SetReconnectedCB(o, qc_log_on_reconnect, NULL);
    if (s == NATS_OK) s = natsOptions_SetErrorHandler(o, qc_log_on_async_error, NULL);
    if (s == NATS_OK && creds) s = natsOptions_SetUserCredentialsFromFiles(o, creds, NULL);
    if (s != NATS_OK) {
        natsOptions_Destroy(o);
        return s;
    }
    *out = o;
    return NATS_OK;
}

/* Waits until nc is connected or timeout_ms passes (polling: this happens
 * once per process, and libnats offers no blocking wait for it). */
static bool qc_log_wait_connected(natsConnection *nc, int timeout_ms)
{
    int64_t end = qc_log_mono_ms() + timeout_ms;
    while (natsConnection_Status(nc) != NATS_CONN_STATUS_CONNECTED) {
        if (qc_log_mono_ms() >= end) return false;
        qc_log_sleep_ms(20);
    }
    return true;
}

int qc_log_open(const char *urls, const char *creds_file, int timeout_ms, qc_log **out, char *err,
                size_t errlen)
{
    if (out) *out = NULL;
    if (!out || !urls || !*urls || timeout_ms <= 0) {
        qc_log_seterr(err, errlen, "qc_log_open: urls and out are required, timeout_ms > 0");
        return QV_INVALID;
    }
    /* libnats reads the file only when it connects, and would report a
     * missing one as an unreachable server */
    if (creds_file && access(creds_file, R_OK) != 0) {
        qc_log_seterr(err, errlen, "NATS credentials file %s: %s", creds_file, strerror(errno));
        return QV_INVALID;
    }
    natsOptions *o = NULL;
    natsStatus s = qc_log_options(&o, urls, creds_file, timeout_ms);
    if (s != NATS_OK) {
        qc_log_seterr(err, errlen, "NATS options for \"%s\": %s", urls, qc_log_nats_text(s));
        return s == NATS_NO_MEMORY ? QV_NOMEM : QV_INVALID;
    }
    qc_log *lg = calloc(1, sizeof *lg);
    if (!lg) {
        natsOptions_Destroy(o);
        return QV_NOMEM;
    }
    lg->timeout_ms = timeout_ms;
    s = natsConnection_Connect(&lg->nc, o);
    natsOptions_Destroy(o);
    int rc = 0;
    if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED) {
        qc_log_seterr(err, errlen, "NATS connect to %s: %s", urls, qc_log_nats_text(s));
        rc = s == NATS_NO_MEMORY ? QV_NOMEM : s == NATS_INVALID_ARG || s == NATS_ADDRESS_MISSING ? QV_INVALID : QV_IO;
    } else if (!qc_log_wait_connected(lg->nc, timeout_ms)) {
        qc_log_seterr(err, errlen, "NATS at %s: no server answered within %d ms", urls, timeout_ms);
        rc = QV_IO;
    } else {
        jsOptions jo;
        jsOptions_Init(&jo);
        jo.Wait = timeout_ms;
        s = natsConnection_JetStream(&lg->js, lg->nc, &jo);
        if (s != NATS_OK) {
            qc_log_seterr(err, errlen, "JetStream context: %s", qc_log_nats_text(s));
            rc = QV_NOMEM;
        }
    }
    if (rc) {
        qc_log_close(lg);
        return rc;
    }
    *out = lg;
    return 0;
}

void qc_log_close(qc_log *lg)
{
    if (!lg) return;
    jsCtx_Destroy(lg->js);
    if (lg->nc) {
        natsConnection_Close(lg->nc);
        natsConnection_Destroy(lg->nc);
    }
    free(lg);
}

/* ------------------------------------------------------ stream requests */

/* One JetStream request about a stream, retried by qc_log_admin. */
typedef struct qc_log_req {
    const char *stream;
    const char *subject;
    int replicas;
    int64_t max_bytes;    /* ensure: the stream's cap (0: none) */
    uint64_t below;       /* trim */
    uint64_t last, first; /* last_seq */
} qc_log_req;

typedef natsStatus (*qc_log_req_fn)(qc_log *lg, qc_log_req *rq, jsOptions *jo, jsErrCode *jerr);

/* Runs fn until it succeeds, fails for good, or the open timeout passes.
 * Each attempt waits at most QC_LOG_ADMIN_ATTEMPT_MS, so one request lost
 * with a dying server does not use up the whole timeout. A retried delete
 * whose first attempt did land answers QV_NOTFOUND, which callers ignore. */
static int qc_log_admin(qc_log *lg, const char *what, qc_log_req_fn fn, qc_log_req *rq)
{
    if (!lg) {
        qc_log_seterr(NULL, 0, "%s: no log", what);
        return QV_INVALID;
    }
    int64_t end = qc_log_mono_ms() + lg->timeout_ms;
    for (int attempt = 1;; attempt++) {
        int64_t left = end - qc_log_mono_ms();
        jsOptions jo;
        jsOptions_Init(&jo);
        jo.Wait = left < QC_LOG_ADMIN_ATTEMPT_MS ? (left > 0 ? left : 1) : QC_LOG_ADMIN_ATTEMPT_MS;
        jsErrCode jerr = 0;
        natsStatus s = fn(lg, rq, &jo, &jerr);
        if (s == NATS_OK) return 0;
        int code = qc_log_code(s, jerr);
        qc_log_seterr(NULL, 0, "%s %s: %s (js error %d)", what, rq->stream, qc_log_nats_text(s), (int)jerr);
        left = end - qc_log_mono_ms();
        if (!qc_log_transient(s, jerr) || left <= 0) return code;
        qc_log_backoff(attempt, left);
    }
}

static void qc_log_stream_config(jsStreamConfig *c, qc_log_req *rq, const char **subjects)
{
    jsStreamConfig_Init(c);
    subjects[0] = rq->subject;
    c->Name = rq->stream;
    c->Subjects = subjects;
    c->SubjectsLen = 1;
    c->Storage = js_FileStorage;
    c->Replicas = rq->replicas;
    c->MaxMsgSize = QC_LOG_STREAM_MAX_MSG;
    c->Duplicates = QC_LOG_DEDUP_NS;
    /* a safety cap: the oldest entries go first (a replica further behind
     * catches up by snapshot) */
    if (rq->max_bytes > 0) {
        c->MaxBytes = rq->max_bytes;
        c->Discard = js_DiscardOld;
    }
}

/* Add; if a stream of that name exists with another configuration, update it
 * to this one (the server accepts an identical add as a no-op). */
static natsStatus qc_log_req_ensure(qc_log *lg, qc_log_req *rq, jsOptions *jo, jsErrCode *jerr)
{
    jsStreamConfig c;
    const char *subjects[1];
    qc_log_stream_config(&c, rq, subjects);
    jsStreamInfo *si = NULL;
    natsStatus s = js_AddStream(&si, lg->js, &c, jo, jerr);
    if (s != NATS_OK && *jerr == JSStreamNameExistErr) {
        *jerr = 0;
        s = js_UpdateStream(&si, lg->js, &c, jo, jerr);
    }
    jsStreamInfo_Destroy(si);
    return s;
}

static natsStatus qc_log_req_delete(qc_log *lg, qc_log_req *rq, jsOptions *jo, jsErrCode *jerr)
{
    return js_DeleteStream(lg->js, rq->stream, jo, jerr);
}

static natsStatus qc_log_req_info(qc_log *lg, qc_log_req *rq, jsOptions *jo, jsErrCode *jerr)
{
    jsStreamInfo *si = NULL;
    natsStatus s = js_GetStreamInfo(&si, lg->js, rq->stream, jo, jerr);
    if (s == NATS_OK) {
        rq->last = si->State.LastSeq;
        rq->first = si->State.FirstSeq;
        /* an empty stream reports first = last + 1 (or 0 before any write) */
        if (si->State.Msgs == 0) rq->first = rq->last + 1;
    }
    jsStreamInfo_Destroy(si);
    return s;
}

static natsStatus qc_log_req_trim(qc_log *lg, qc_log_req *rq, jsOptions *jo, jsErrCode *jerr)
{
    jo->Stream.Purge.Sequence = rq->below; /* purge everything below, keep below.. */
    return js_PurgeStream(lg->js, rq->stream, jo, jerr);
}

/* Fills rq's names from coll/shard (QV_INVALID for a bad name). */
static int qc_log_req_init(qc_log_req *rq, char *stream, char *subject, const char *coll, uint32_t shard)
{
    memset(rq, 0, sizeof *rq);
    rq->stream = stream;
    rq->subject = subject;
    return qc_log_names(coll, shard, stream, subject);
}

int qc_log_stream_ensure(qc_log *lg, const char *coll, uint32_t shard, int replicas)
{
    char stream[QC_LOG_NAME_MAX], subject[QC_LOG_NAME_MAX];
    qc_log_req rq;
    int rc = qc_log_req_init(&rq, stream, subject, coll, shard);
    if (rc) return rc;
    if (replicas != 1 && replicas != 3) {
        qc_log_seterr(NULL, 0, "replicas is %d, must be 1 or 3", replicas);
        return QV_INVALID;
    }
    rq.replicas = replicas;
    rq.max_bytes = lg->max_bytes;
    return qc_log_admin(lg, "ensure stream", qc_log_req_ensure, &rq);
}

int qc_log_stream_delete(qc_log *lg, const char *coll, uint32_t shard)
{
    char stream[QC_LOG_NAME_MAX], subject[QC_LOG_NAME_MAX];
    qc_log_req rq;
    int rc = qc_log_req_init(&rq, stream, subject, coll, shard);
    return rc ? rc : qc_log_admin(lg, "delete stream", qc_log_req_delete, &rq);
}

int qc_log_last_seq(qc_log *lg, const char *coll, uint32_t shard, uint64_t *last, uint64_t *first)
{
    char stream[QC_LOG_NAME_MAX], subject[QC_LOG_NAME_MAX];
    qc_log_req rq;
    int rc = qc_log_req_init(&rq, stream, subject, coll, shard);
    if (!rc) rc = qc_log_admin(lg, "stream info", qc_log_req_info, &rq);
    if (rc) return rc;
    if (last) *last = rq.last;
    if (first) *first = rq.first;
    return 0;
}

int qc_log_trim(qc_log *lg, const char *coll, uint32_t shard, uint64_t below_seq)
{
    char stream[QC_LOG_NAME_MAX], subject[QC_LOG_NAME_MAX];
    qc_log_req rq;
    int rc = qc_log_req_init(&rq, stream, subject, coll, shard);
    if (rc || below_seq <= 1) return rc;
    rq.below = below_seq;
    return qc_log_admin(lg, "trim stream", qc_log_req_trim, &rq);
}

/* ------------------------------------------------------------- publish */

static bool qc_log_id_ok(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    return n > 0 && n <= QC_LOG_MAX_ID && !strpbrk(id, "\r\n");
}

/* After "no responders" the stream may simply not exist: ask once, so a
 * missing stream fails now rather than at the deadline. An outage answers
 * with another error and the publish keeps retrying. */
static bool qc_log_stream_missing(qc_log *lg, const char *stream, int64_t left_ms)
{
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = left_ms < 1000 ? (left_ms > 0 ? left_ms : 1) : 1000;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, lg->js, stream, &jo, &jerr);
    jsStreamInfo_Destroy(si);
    return s != NATS_OK && jerr == JSStreamNotFoundErr;
}

/* Checks the arguments of a publish; 0 or the code (message set). */
static int qc_log_publish_check(qc_log *lg, const char *msg_id, const void *data, size_t len, char *err,
                                size_t errlen)
{
    if (!lg || (!data && len)) {
        qc_log_seterr(err, errlen, "publish: no log or no data");
        return QV_INVALID;
    }
    if (!qc_log_id_ok(msg_id)) {
        qc_log_seterr(err, errlen, "publish: message id must be 1..%d bytes without CR/LF", QC_LOG_MAX_ID);
        return QV_INVALID;
    }
    if (len > QC_LOG_MAX_MSG) {
        qc_log_seterr(err, errlen, "publish: message of %zu bytes is over the log's cap of %zu bytes; split it",
                      len, QC_LOG_MAX_MSG);
        return QV_LIMIT;
    }
    return 0;
}

/* One attempt of a publish, waiting at most wait_ms for the ack. */
static natsStatus qc_log_publish_once(qc_log *lg, const char *stream, const char *subject, const char *msg_id,
                                      const void *data, size_t len, int64_t wait_ms, uint64_t *seq,
                                      int *duplicate, jsErrCode *jerr)
{
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = msg_id;
    po.ExpectStream = stream; /* an ack from any other stream is a config error */
    po.MaxWait = wait_ms;
    jsPubAck *pa = NULL;
    natsStatus s = js_Publish(&pa, lg->js, subject, data, (int)len, &po, jerr);
    if (s == NATS_OK) {
        if (seq) *seq = pa->Sequence;
        if (duplicate) *duplicate = pa->Duplicate ? 1 : 0;
        jsPubAck_Destroy(pa);
    }
    return s;
}

int qc_log_publish(qc_log *lg, const char *coll, uint32_t shard, const char *msg_id, const void *data,
                   size_t len, int64_t deadline_ms, uint64_t *seq, int *duplicate, char *err,
                   size_t errlen)
{
    char stream[QC_LOG_NAME_MAX], subject[QC_LOG_NAME_MAX];
    int rc = qc_log_publish_check(lg, msg_id, data, len, err, errlen);
    if (!rc && (rc = qc_log_names(coll, shard, stream, subject)) != 0 && err && errlen)
        snprintf(err, errlen, "%s", qc_log_tls_err);
    if (rc) return rc;
    bool asked = false;
    int64_t attempt_ms = QC_LOG_ATTEMPT_MS + (int64_t)(len >> 20) * QC_LOG_ATTEMPT_MS_PER_MIB;
    int attempt = 1;
    for (int64_t left; (left = deadline_ms - qc_log_now_ms()) > 0; attempt++) {
        jsErrCode jerr = 0;
        natsStatus s = qc_log_publish_once(lg, stream, subject, msg_id, data, len,
                                           left < attempt_ms ? left : attempt_ms, seq, duplicate, &jerr);
        if (s == NATS_OK) return 0;
        qc_log_seterr(err, errlen, "publish %s to %s: %s (js error %d)", msg_id, stream, qc_log_nats_text(s),
                      (int)jerr);
        if (!qc_log_transient(s, jerr)) return qc_log_code(s, jerr);
        qv_debug("%s (attempt %d)", qc_log_tls_err, attempt);
        if (s == NATS_NO_RESPONDERS && !asked && natsConnection_Status(lg->nc) == NATS_CONN_STATUS_CONNECTED) {
            asked = true; /* once per publish: during an outage it costs a round trip */
            if (qc_log_stream_missing(lg, stream, left)) {
                qc_log_seterr(err, errlen, "publish %s: stream %s does not exist", msg_id, stream);
                return QV_NOTFOUND;
            }
        }
        qc_log_backoff(attempt, deadline_ms - qc_log_now_ms());
    }
    char last[sizeof qc_log_tls_err];
    snprintf(last, sizeof last, "%s", attempt > 1 ? qc_log_tls_err : "none");
    qc_log_seterr(err, errlen,
                  "publish %s to %s: not acknowledged before the deadline after %d attempts; last error: %s",
                  msg_id, stream, attempt - 1, last);
    return QV_IO;
}

/* ------------------------------------------------------------ follower */

/* Waits up to ms unless stopped; returns true when stopped. */
static bool qc_follow_wait(qc_follow *f, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&f->mu);
    while (!f->stop && pthread_cond_timedwait(&f->cv, &f->mu, &ts) == 0) {
    }
    bool stop = f->stop;
    pthread_mutex_unlock(&f->mu);
    return stop;
}

static bool qc_follow_stopped(qc_follow *f)
{
    pthread_mutex_lock(&f->mu);
    bool stop = f->stop;
    pthread_mutex_unlock(&f->mu);
    return stop;
}

static void qc_follow_drop_batch(qc_follow *f)
{
    for (size_t i = 0; i < f->n; i++) natsMsg_Destroy(f->held[i]);
    f->n = 0;
    f->bytes = 0;
}

/* Forgets the subscription and everything read from it; the next one starts
 * after the last accepted sequence. Destroy (not Unsubscribe) so that an
 * outage cannot block here: the server drops the ephemeral consumer once its
 * interest is gone. */
static void qc_follow_reset(qc_follow *f)
{
    qc_follow_drop_batch(f);
    natsMsg_Destroy(f->carry);
    f->carry = NULL;
    natsSubscription_Destroy(f->sub);
    f->sub = NULL;
    f->handed = atomic_load(&f->position);
}

static int qc_follow_subscribe(qc_follow *f)
{
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = f->stream;
    so.Ordered = true;
    so.Config.DeliverPolicy = js_DeliverByStartSequence;
    so.Config.OptStartSeq = atomic_load(&f->position) + 1;
    so.Config.Heartbeat = QC_FOLLOW_HEARTBEAT_NS;
    jsOptions jo;
    jsOptions_Init(&jo);
    /* short, so that stop is not held up long by an outage */
    jo.Wait = f->lg->timeout_ms < QC_FOLLOW_SUBSCRIBE_MS ? f->lg->timeout_ms : QC_FOLLOW_SUBSCRIBE_MS;
    jsErrCode jerr = 0;
    natsStatus s = js_SubscribeSync(&f->sub, f->lg->js, f->subject, &jo, &so, &jerr);
    if (s != NATS_OK) {
        f->sub = NULL;
        qv_debug("follow %s: subscribe from %llu: %s (js error %d)", f->stream,
                 (unsigned long long)so.Config.OptStartSeq, qc_log_nats_text(s), (int)jerr);
        return qc_log_code(s, jerr);
    }
    /* Never let libnats drop a message for being slow: the ordered consumer
     * would skip it silently. Flow control bounds what the server sends. */
    natsSubscription_SetPendingLimits(f->sub, -1, -1);
    f->handed = atomic_load(&f->position);
    f->active_ms = qc_log_mono_ms();
    return 0;
}

/* Adds msg to the batch if it fits; returns false (keeping msg) if not.
 * Messages at or below the last handed sequence are dropped (a consumer
 * reset may resend them). */
static bool qc_follow_take(qc_follow *f, natsMsg *msg)
{
    jsMsgMetaData *meta = NULL;
    if (natsMsg_GetMetaData(&meta, msg) != NATS_OK) {
        natsMsg_Destroy(msg); /* not a stream message: nothing to apply */
        return true;
    }
    uint64_t seq = meta->Sequence.Stream;
    jsMsgMetaData_Destroy(meta);
    if (seq <= f->handed) {
        natsMsg_Destroy(msg);
        return true;
    }
    size_t len = (size_t)natsMsg_GetDataLength(msg);
    if (f->n == QC_LOG_BATCH_MSGS || (f->n > 0 && f->bytes + len > QC_LOG_BATCH_BYTES)) return false;
    f->held[f->n] = msg;
    f->msgs[f->n] = (qc_log_msg){.seq = seq, .data = natsMsg_GetData(msg), .len = len};
    f->n++;
    f->bytes += len;
    f->handed = seq;
    return true;
}

/* Fills an empty batch with what is available: waits up to the poll time
 * for the first message, then takes only what is already buffered.
 * Returns NATS_OK (batch may still be empty), or the subscription's error. */
static natsStatus qc_follow_fill(qc_follow *f)
{
    if (f->carry) {
        natsMsg *m = f->carry;
        f->carry = NULL;
        if (!qc_follow_take(f, m)) f->carry = m; /* cannot happen on an empty batch */
    }
    int64_t wait = f->n ? 0 : QC_FOLLOW_POLL_MS;
    while (!f->carry) {
        natsMsg *m = NULL;
        natsStatus s = natsSubscription_NextMsg(&m, f->sub, wait); /* 0: only what is buffered */
        if (s == NATS_TIMEOUT) break;
        if (s != NATS_OK) return s;
        f->active_ms = qc_log_mono_ms();
        if (!qc_follow_take(f, m)) f->carry = m;
        wait = 0;
    }
    int64_t dropped = 0;
    if (natsSubscription_GetDropped(f->sub, &dropped) == NATS_OK && dropped > 0) return NATS_SLOW_CONSUMER;
    return NATS_OK;
}

/* Nothing arrived for a while: if the stream holds more than we were given,
 * the consumer is gone without an error (libnats retries its reset only on
 * its heartbeat timer); start a new one. (If the stream's last message was
 * deleted this fires every QC_FOLLOW_IDLE_CHECK_MS: a harmless resubscribe.) */
static bool qc_follow_stale(qc_follow *f)
{
    int64_t now = qc_log_mono_ms();
    if (now - f->active_ms < QC_FOLLOW_IDLE_CHECK_MS) return false;
    f->active_ms = now;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 1000;
    jsStreamInfo *si = NULL;
    bool stale = js_GetStreamInfo(&si, f->lg->js, f->stream, &jo, NULL) == NATS_OK &&
                 si->State.LastSeq > f->handed && si->State.Msgs > 0 && si->State.LastSeq >= si->State.FirstSeq;
    jsStreamInfo_Destroy(si);
    return stale;
}

/* Hands the batch to apply; on acceptance moves the position past it. */
static bool qc_follow_deliver(qc_follow *f)
{
    if (f->apply(f->ctx, f->msgs, f->n) != 0) return false;
    atomic_store(&f->position, f->msgs[f->n - 1].seq);
    qc_follow_drop_batch(f);
    return true;
}

static int64_t qc_follow_more(int64_t ms)
{
    return ms * 2 > QC_FOLLOW_RETRY_MAX_MS ? QC_FOLLOW_RETRY_MAX_MS : ms * 2;
}

/* Subscribes if needed and fills the empty batch. Returns false when the
 * subscription could not be made or broke (it is then reset, to start again
 * after the last accepted sequence); true otherwise, batch possibly empty. */
static bool qc_follow_next_batch(qc_follow *f)
{
    if (!f->sub && qc_follow_subscribe(f) != 0) return false;
    natsStatus s = qc_follow_fill(f);
    if (s == NATS_OK && (f->n > 0 || !qc_follow_stale(f))) return true;
    qv_warn("follow %s: %s; subscribing again after %llu", f->stream,
            s != NATS_OK ? qc_log_nats_text(s) : "consumer silent while the stream grew",
            (unsigned long long)atomic_load(&f->position));
    qc_follow_reset(f);
    return false;
}

static void *qc_follow_main(void *arg)
{
    qc_follow *f = arg;
    int64_t retry_ms = QC_FOLLOW_RETRY_MIN_MS, reject_ms = QC_FOLLOW_RETRY_MIN_MS;
    bool stop = false;
    while (!stop && !qc_follow_stopped(f)) {
        if (f->n == 0 && !qc_follow_next_batch(f)) {
            stop = qc_follow_wait(f, retry_ms);
            retry_ms = qc_follow_more(retry_ms);
        } else if (f->n == 0) {
            continue; /* nothing new within the poll time */
        } else if (qc_follow_deliver(f)) {
            retry_ms = reject_ms = QC_FOLLOW_RETRY_MIN_MS;
        } else {
            stop = qc_follow_wait(f, reject_ms); /* apply could not take it yet */
            reject_ms = qc_follow_more(reject_ms);
        }
    }
    qc_follow_reset(f);
    nats_ReleaseThreadMemory(); /* libnats' per-thread error buffer */
    return NULL;
}

int qc_log_follow(qc_log *lg, const char *coll, uint32_t shard, uint64_t from_seq, qc_log_apply_fn apply,
                  void *ctx, qc_follow **out)
{
    if (out) *out = NULL;
    if (!lg || !apply || !out || from_seq < 1) {
        qc_log_seterr(NULL, 0, "follow: log, apply and out are required, from_seq >= 1");
        return QV_INVALID;
    }
    qc_follow *f = calloc(1, sizeof *f);
    if (!f) return QV_NOMEM;
    int rc = qc_log_names(coll, shard, f->stream, f->subject);
    if (rc) {
        free(f);
        return rc;
    }
    f->lg = lg;
    f->apply = apply;
    f->ctx = ctx;
    atomic_init(&f->position, from_seq - 1);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&f->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&f->mu, NULL);
    if (pthread_create(&f->thread, NULL, qc_follow_main, f) != 0) {
        pthread_cond_destroy(&f->cv);
        pthread_mutex_destroy(&f->mu);
        free(f);
        qc_log_seterr(NULL, 0, "follow: cannot start a thread");
        return QV_NOMEM;
    }
    *out = f;
    return 0;
}

uint64_t qc_follow_position(qc_follow *f) { return f ? atomic_load(&f->position) : 0; }

void qc_follow_stop(qc_follow *f)
{
    if (!f) return;
    pthread_mutex_lock(&f->mu);
    f->stop = true;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    pthread_join(f->thread, NULL);
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

void qc_log_set_max_bytes(qc_log *lg, int64_t max_bytes) { lg->max_bytes = max_bytes; }
