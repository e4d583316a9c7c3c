/*
 * Unit tests of the JetStream write log (cluster/log.c) against real
 * nats-server processes on free loopback ports in a temp dir: one node for
 * publish/follow/trim/delete/restart, three for a stream leader kill.
 * Every server started here is killed at the end, also when a test fails
 * (teardowns, atexit, and PR_SET_PDEATHSIG if this process dies).
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <nats/nats.h>

#include "log.h"
#include "quiver/error.h"
#include "quiver/log.h"

/* ------------------------------------------------------------ servers */

typedef struct natsd {
    char name[8];
    pid_t pid;
    int port, cport, hport; /* client, cluster route, monitoring */
    char conf[160], store[160], logf[160];
} natsd;

static char g_dir[64];
static const char *g_bin;
static natsd g_one;    /* the single node */
static natsd g_cl[3];  /* the 3-node cluster */
static qc_log *g_log;  /* connected to g_one */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* A loopback port nobody listens on right now. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) || getsockname(fd, (struct sockaddr *)&a, &len)) {
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

static bool port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0) close(fd);
    return ok;
}

/* Writes d's config; with peers, a cluster node routing to all of them. */
static int natsd_conf(natsd *d, const natsd *peers, int npeers)
{
    FILE *f = fopen(d->conf, "w");
    if (!f) return -1;
    fprintf(f, "server_name: %s\nlisten: 127.0.0.1:%d\nhttp: 127.0.0.1:%d\nmax_payload: 8MB\n", d->name,
            d->port, d->hport);
    fprintf(f, "jetstream { store_dir: \"%s\", max_memory_store: 256MB, max_file_store: 8GB }\n", d->store);
    if (npeers) {
        fprintf(f, "cluster { name: qv, listen: 127.0.0.1:%d, routes: [", d->cport);
        for (int i = 0; i < npeers; i++)
            fprintf(f, "%snats-route://127.0.0.1:%d", i ? ", " : "", peers[i].cport);
        fprintf(f, "] }\n");
    }
    return fclose(f);
}

static void natsd_init(natsd *d, const char *name)
{
    memset(d, 0, sizeof *d);
    snprintf(d->name, sizeof d->name, "%s", name);
    d->port = free_port();
    d->cport = free_port();
    d->hport = free_port();
    snprintf(d->conf, sizeof d->conf, "%s/%s.conf", g_dir, name);
    snprintf(d->store, sizeof d->store, "%s/%s", g_dir, name);
    snprintf(d->logf, sizeof d->logf, "%s/%s.log", g_dir, name);
}

/* Starts nats-server on d's config and waits until it takes connections. */
static int natsd_start(natsd *d)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        /* die with the test, even if it is killed */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(1);
        int null = open("/dev/null", O_RDWR);
        dup2(null, 1);
        dup2(null, 2);
        execlp(g_bin, g_bin, "-c", d->conf, "-l", d->logf, (char *)NULL);
        _exit(127);
    }
    d->pid = pid;
    for (int i = 0; i < 1000; i++) {
        if (port_open(d->port)) return 0;
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            d->pid = 0;
            return -1;
        }
        sleep_ms(10);
    }
    return -1;
}

static void natsd_kill(natsd *d)
{
    if (d->pid <= 0) return;
    kill(d->pid, SIGKILL);
    waitpid(d->pid, NULL, 0);
    d->pid = 0;
}

static void kill_all(void)
{
    natsd_kill(&g_one);
    for (int i = 0; i < 3; i++) natsd_kill(&g_cl[i]);
}

static char *url_of(const natsd *d, char *buf, size_t n)
{
    snprintf(buf, n, "nats://127.0.0.1:%d", d->port);
    return buf;
}

/* ---------------------------------------------------------------- sink */

/* What a follower's apply saw, checked by the tests. */
typedef struct sink {
    pthread_mutex_t mu;
    uint64_t *seq;
    long *val;      /* the number in a "msg %ld" payload, -1 otherwise */
    size_t *len;
    uint64_t *hash; /* FNV-1a of the data */
    size_t n, cap;
    int reject;     /* reject this many calls first */
    size_t calls;
    uint64_t call_first[8];
    size_t call_n[8];
    size_t max_batch;
} sink;

static uint64_t fnv(const void *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ ((const unsigned char *)p)[i]) * 1099511628211ull;
    return h;
}

static long payload_val(const qc_log_msg *m)
{
    char buf[32];
    if (m->len < 5 || m->len >= sizeof buf || memcmp(m->data, "msg ", 4)) return -1;
    memcpy(buf, m->data, m->len);
    buf[m->len] = 0;
    return strtol(buf + 4, NULL, 10);
}

static int sink_apply(void *ctx, const qc_log_msg *msgs, size_t n)
{
    sink *s = ctx;
    pthread_mutex_lock(&s->mu);
    if (s->calls < 8) {
        s->call_first[s->calls] = msgs[0].seq;
        s->call_n[s->calls] = n;
    }
    s->calls++;
    if (s->reject > 0) {
        s->reject--;
        pthread_mutex_unlock(&s->mu);
        return 1;
    }
    if (n > s->max_batch) s->max_batch = n;
    if (s->n + n > s->cap) {
        s->cap = (s->n + n) * 2;
        s->seq = realloc(s->seq, s->cap * sizeof *s->seq);
        s->val = realloc(s->val, s->cap * sizeof *s->val);
        s->len = realloc(s->len, s->cap * sizeof *s->len);
        s->hash = realloc(s->hash, s->cap * sizeof *s->hash);
    }
    for (size_t i = 0; i < n; i++) {
        s->seq[s->n] = msgs[i].seq;
        s->val[s->n] = payload_val(&msgs[i]);
        s->len[s->n] = msgs[i].len;
        s->hash[s->n] = fnv(msgs[i].data, msgs[i].len);
        s->n++;
    }
    pthread_mutex_unlock(&s->mu);
    return 0;
}

static void sink_init(sink *s) { *s = (sink){.mu = PTHREAD_MUTEX_INITIALIZER}; }

static void sink_free(sink *s)
{
    free(s->seq);
    free(s->val);
    free(s->len);
    free(s->hash);
}

static size_t sink_count(sink *s)
{
    pthread_mutex_lock(&s->mu);
    size_t n = s->n;
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* Waits until the sink holds at least n messages; false after ms. */
static bool sink_wait(sink *s, size_t n, int ms)
{
    for (int64_t end = now_ms() + ms; now_ms() < end; sleep_ms(10))
        if (sink_count(s) >= n) return true;
    return sink_count(s) >= n;
}

/* ------------------------------------------------------------- helpers */

#define assert_rc(call)                                                                                \
    do {                                                                                               \
        int rc_ = (call);                                                                              \
        if (rc_) fail_msg("%s = %d (%s)", #call, rc_, qc_log_errmsg());                                \
    } while (0)

/* Publishes "msg <i>" for i in [from, to) with ids "<prefix>-<i>"; checks
 * that sequences follow first_seq on. */
static void publish_range(qc_log *lg, const char *coll, const char *prefix, long from, long to,
                          uint64_t first_seq)
{
    for (long i = from; i < to; i++) {
        char id[64], data[32], err[256] = "";
        snprintf(id, sizeof id, "%s-%ld", prefix, i);
        int len = snprintf(data, sizeof data, "msg %ld", i);
        uint64_t seq = 0;
        int dup = -1;
        int rc = qc_log_publish(lg, coll, 0, id, data, (size_t)len, now_ms() + 10000, &seq, &dup, err, sizeof err);
        if (rc) fail_msg("publish %s: %d %s", id, rc, err);
        assert_int_equal(seq, first_seq + (uint64_t)(i - from));
        assert_int_equal(dup, 0);
    }
}

/* Checks that the sink holds exactly values [from, to) in order with
 * consecutive sequences from first_seq. */
static void check_range(sink *s, long from, long to, uint64_t first_seq)
{
    pthread_mutex_lock(&s->mu);
    size_t n = s->n;
    pthread_mutex_unlock(&s->mu);
    assert_int_equal(n, (size_t)(to - from));
    for (size_t i = 0; i < n; i++) {
        if (s->val[i] != from + (long)i || s->seq[i] != first_seq + i)
            fail_msg("message %zu: value %ld seq %llu, want %ld seq %llu", i, s->val[i],
                     (unsigned long long)s->seq[i], from + (long)i, (unsigned long long)(first_seq + i));
    }
}

/* ------------------------------------------------------------ fixtures */

static int group_setup(void **state)
{
    (void)state;
    g_bin = getenv("NATS_SERVER");
    if (!g_bin || !*g_bin) g_bin = access("/usr/sbin/nats-server", X_OK) ? "nats-server" : "/usr/sbin/nats-server";
    snprintf(g_dir, sizeof g_dir, "/tmp/qv_test_log.XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    atexit(kill_all);
    natsd_init(&g_one, "one");
    if (natsd_conf(&g_one, NULL, 0) || natsd_start(&g_one)) {
        fprintf(stderr, "cannot start %s -c %s\n", g_bin, g_one.conf);
        return -1;
    }
    char url[64], err[256] = "";
    if (qc_log_open(url_of(&g_one, url, sizeof url), NULL, 5000, &g_log, err, sizeof err)) {
        fprintf(stderr, "open: %s\n", err);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    qc_log_close(g_log);
    g_log = NULL;
    kill_all();
    nats_CloseAndWait(5000);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    return system(cmd) ? -1 : 0;
}

/* --------------------------------------------------------------- tests */

static void test_names(void **state)
{
    (void)state;
    char st[QC_LOG_NAME_MAX], sj[QC_LOG_NAME_MAX];
    assert_rc(qc_log_names("pins.v2", 0, st, sj));
    assert_string_equal(st, "QV_pins_2Ev2_0");
    assert_string_equal(sj, "quiver.pins_2Ev2.0");
    assert_rc(qc_log_names("a_2Eb", 7, st, sj));
    assert_string_equal(st, "QV_a__2Eb_7"); /* never the same as "a.b" */
    assert_string_equal(sj, "quiver.a__2Eb.7");
    assert_rc(qc_log_names("A-z_9", 4294967295u, st, NULL));
    assert_string_equal(st, "QV_A-z__9_4294967295");
    const char *bad[] = {"", ".hidden", "a b", "a*", "a>", "é", NULL};
    for (int i = 0; bad[i]; i++) assert_int_equal(qc_log_names(bad[i], 0, st, sj), QV_INVALID);
    assert_int_equal(qc_log_names(NULL, 0, st, sj), QV_INVALID);
    char longname[130];
    memset(longname, 'x', 129);
    longname[129] = 0;
    assert_int_equal(qc_log_names(longname, 0, st, sj), QV_INVALID);
    longname[128] = 0;
    assert_rc(qc_log_names(longname, 0, st, sj));
    memset(longname, '.', 128);
    longname[0] = 'x'; /* 127 dots escape to 381 bytes: too long for a stream name */
    assert_int_equal(qc_log_names(longname, 0, st, sj), QV_INVALID);
}

static void test_publish_follow(void **state)
{
    (void)state;
    assert_rc(qc_log_stream_ensure(g_log, "pf", 0, 1));
    assert_rc(qc_log_stream_ensure(g_log, "pf", 0, 1)); /* idempotent */
    publish_range(g_log, "pf", "pf", 0, 1000, 1);

    sink s;
    sink_init(&s);
    qc_follow *f = NULL;
    assert_rc(qc_log_follow(g_log, "pf", 0, 1, sink_apply, &s, &f));
    assert_true(sink_wait(&s, 1000, 10000));
    sleep_ms(100); /* nothing more may come */
    check_range(&s, 0, 1000, 1);
    assert_int_equal(qc_follow_position(f), 1000);
    printf("      follow from 1: %zu messages in %zu calls (largest batch %zu)\n", s.n, s.calls, s.max_batch);
    assert_true(s.max_batch > 1 && s.max_batch <= QC_LOG_BATCH_MSGS);
    qc_follow_stop(f);
    sink_free(&s);

    sink_init(&s);
    assert_rc(qc_log_follow(g_log, "pf", 0, 500, sink_apply, &s, &f));
    assert_int_equal(qc_follow_position(f), 499);
    assert_true(sink_wait(&s, 501, 10000));
    /* new messages reach a running follower */
    publish_range(g_log, "pf", "pf", 1000, 1010, 1001);
    assert_true(sink_wait(&s, 511, 10000));
    sleep_ms(100);
    check_range(&s, 499, 1010, 500);
    qc_follow_stop(f);
    sink_free(&s);
}

static void test_duplicate(void **state)
{
    (void)state;
    assert_rc(qc_log_stream_ensure(g_log, "dup", 0, 1));
    publish_range(g_log, "dup", "d", 0, 3, 1);
    uint64_t seq = 0, last = 0;
    int dup = -1;
    char err[256];
    /* the retry of "d-1" carries other bytes: the stream keeps the first */
    assert_rc(qc_log_publish(g_log, "dup", 0, "d-1", "other", 5, now_ms() + 5000, &seq, &dup, err, sizeof err));
    assert_int_equal(seq, 2);
    assert_int_equal(dup, 1);
    assert_rc(qc_log_last_seq(g_log, "dup", 0, &last, NULL));
    assert_int_equal(last, 3);
    sink s;
    sink_init(&s);
    qc_follow *f = NULL;
    assert_rc(qc_log_follow(g_log, "dup", 0, 1, sink_apply, &s, &f));
    assert_true(sink_wait(&s, 3, 10000));
    sleep_ms(200);
    qc_follow_stop(f);
    check_range(&s, 0, 3, 1);
    sink_free(&s);
    /* bad ids */
    assert_int_equal(qc_log_publish(g_log, "dup", 0, "", "x", 1, now_ms() + 1000, NULL, NULL, err, sizeof err),
                     QV_INVALID);
    assert_int_equal(qc_log_publish(g_log, "dup", 0, "a\r\nb", "x", 1, now_ms() + 1000, NULL, NULL, NULL, 0),
                     QV_INVALID);
}

static void test_limit(void **state)
{
    (void)state;
    assert_rc(qc_log_stream_ensure(g_log, "big", 0, 1));
    size_t cap = QC_LOG_MAX_MSG;
    unsigned char *buf = malloc((8u << 20) + 1);
    assert_non_null(buf);
    for (size_t i = 0; i < (8u << 20) + 1; i++) buf[i] = (unsigned char)(i * 2654435761u >> 24);
    char err[256] = "";
    uint64_t seq = 0;
    assert_int_equal(qc_log_publish(g_log, "big", 0, "b1", buf, (8u << 20) + 1, now_ms() + 5000, &seq, NULL, err,
                                    sizeof err),
                     QV_LIMIT);
    printf("      over 8 MiB: %s\n", err);
    assert_int_equal(qc_log_publish(g_log, "big", 0, "b2", buf, cap + 1, now_ms() + 5000, &seq, NULL, err, sizeof err),
                     QV_LIMIT);
    /* the cap itself goes through and comes back intact */
    int rc = qc_log_publish(g_log, "big", 0, "b3", buf, cap, now_ms() + 10000, &seq, NULL, err, sizeof err);
    if (rc) fail_msg("publish of %zu bytes: %s", cap, err);
    assert_int_equal(seq, 1);
    assert_rc(qc_log_publish(g_log, "big", 0, "b4", "msg 7", 5, now_ms() + 5000, &seq, NULL, err, sizeof err));
    sink s;
    sink_init(&s);
    qc_follow *f = NULL;
    assert_rc(qc_log_follow(g_log, "big", 0, 1, sink_apply, &s, &f));
    assert_true(sink_wait(&s, 2, 10000));
    qc_follow_stop(f);
    assert_int_equal(s.len[0], cap);
    assert_true(s.hash[0] == fnv(buf, cap));
    assert_int_equal(s.val[1], 7);
    sink_free(&s);
    free(buf);
}

static void test_last_seq_trim(void **state)
{
    (void)state;
    uint64_t last = 99, first = 99;
    assert_rc(qc_log_stream_ensure(g_log, "t.rim", 2, 1));
    assert_rc(qc_log_last_seq(g_log, "t.rim", 2, &last, &first));
    assert_int_equal(last, 0);
    assert_int_equal(first, 1);
    for (long i = 0; i < 10; i++) {
        char id[32], data[32];
        snprintf(id, sizeof id, "t%ld", i);
        int len = snprintf(data, sizeof data, "msg %ld", i);
        assert_rc(qc_log_publish(g_log, "t.rim", 2, id, data, (size_t)len, now_ms() + 5000, NULL, NULL, NULL, 0));
    }
    assert_rc(qc_log_last_seq(g_log, "t.rim", 2, &last, &first));
    assert_int_equal(last, 10);
    assert_int_equal(first, 1);
    assert_rc(qc_log_trim(g_log, "t.rim", 2, 1)); /* nothing below 1 */
    assert_rc(qc_log_trim(g_log, "t.rim", 2, 6));
    assert_rc(qc_log_last_seq(g_log, "t.rim", 2, &last, &first));
    assert_int_equal(last, 10);
    assert_int_equal(first, 6);
    /* and one message deleted in the middle (by another client) */
    char url[64], stream[QC_LOG_NAME_MAX];
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    assert_int_equal(natsConnection_ConnectTo(&nc, url_of(&g_one, url, sizeof url)), NATS_OK);
    assert_int_equal(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
    assert_rc(qc_log_names("t.rim", 2, stream, NULL));
    assert_int_equal(js_DeleteMsg(js, stream, 8, NULL, NULL), NATS_OK);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    /* a follower from before the trim starts at what is left, over the gap */
    sink s;
    sink_init(&s);
    qc_follow *f = NULL;
    assert_rc(qc_log_follow(g_log, "t.rim", 2, 1, sink_apply, &s, &f));
    assert_true(sink_wait(&s, 4, 10000));
    sleep_ms(100);
    qc_follow_stop(f);
    assert_int_equal(s.n, 4);
    const uint64_t want[4] = {6, 7, 9, 10};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(s.seq[i], want[i]);
        assert_int_equal(s.val[i], (long)want[i] - 1);
    }
    sink_free(&s);
    /* trimming everything keeps the sequence counting */
    assert_rc(qc_log_trim(g_log, "t.rim", 2, 11));
    assert_rc(qc_log_last_seq(g_log, "t.rim", 2, &last, &first));
    assert_int_equal(last, 10);
    assert_int_equal(first, 11);
    assert_int_equal(qc_log_last_seq(g_log, "nope", 0, &last, &first), QV_NOTFOUND);
    assert_int_equal(qc_log_trim(g_log, "nope", 0, 5), QV_NOTFOUND);
}

static void test_stream_delete(void **state)
{
    (void)state;
    assert_rc(qc_log_stream_ensure(g_log, "gone", 0, 1));
    assert_rc(qc_log_publish(g_log, "gone", 0, "g1", "msg 1", 5, now_ms() + 5000, NULL, NULL, NULL, 0));
    assert_rc(qc_log_stream_delete(g_log, "gone", 0));
    assert_int_equal(qc_log_stream_delete(g_log, "gone", 0), QV_NOTFOUND);
    uint64_t last;
    assert_int_equal(qc_log_last_seq(g_log, "gone", 0, &last, NULL), QV_NOTFOUND);
    /* publishing to a missing stream fails now, not at the deadline */
    char err[256] = "";
    int64_t t0 = now_ms();
    assert_int_equal(qc_log_publish(g_log, "gone", 0, "g2", "x", 1, now_ms() + 5000, NULL, NULL, err, sizeof err),
                     QV_NOTFOUND);
    assert_true(now_ms() - t0 < 2000);
    printf("      %s\n", err);
    /* 3 replicas on a 1-node NATS is refused */
    assert_int_equal(qc_log_stream_ensure(g_log, "r3", 0, 3), QV_INVALID);
    assert_int_equal(qc_log_stream_ensure(g_log, "r2", 0, 2), QV_INVALID);
}

static void test_redeliver(void **state)
{
    (void)state;
    assert_rc(qc_log_stream_ensure(g_log, "rd", 0, 1));
    publish_range(g_log, "rd", "rd", 0, 300, 1);
    sink s;
    sink_init(&s);
    s.reject = 2;
    qc_follow *f = NULL;
    assert_rc(qc_log_follow(g_log, "rd", 0, 1, sink_apply, &s, &f));
    assert_true(sink_wait(&s, 300, 10000));
    sleep_ms(100);
    qc_follow_stop(f);
    /* the rejected batch came back the same, twice */
    assert_true(s.calls >= 3);
    assert_int_equal(s.call_first[0], 1);
    assert_int_equal(s.call_first[1], 1);
    assert_int_equal(s.call_first[2], 1);
    assert_int_equal(s.call_n[1], s.call_n[0]);
    assert_int_equal(s.call_n[2], s.call_n[0]);
    check_range(&s, 0, 300, 1);
    sink_free(&s);
}

static void test_open_errors(void **state)
{
    (void)state;
    qc_log *lg = (qc_log *)1;
    char err[256] = "", url[64];
    assert_int_equal(qc_log_open("", NULL, 1000, &lg, err, sizeof err), QV_INVALID);
    assert_null(lg);
    assert_int_equal(qc_log_open("nats://127.0.0.1:1", NULL, 0, &lg, err, sizeof err), QV_INVALID);
    /* nobody listens: QV_IO once the timeout has passed, nothing left behind */
    snprintf(url, sizeof url, "nats://127.0.0.1:%d", free_port());
    int64_t t0 = now_ms();
    assert_int_equal(qc_log_open(url, NULL, 700, &lg, err, sizeof err), QV_IO);
    int64_t took = now_ms() - t0;
    printf("      unreachable: %lld ms: %s\n", (long long)took, err);
    assert_true(took >= 650 && took < 3000);
    assert_null(lg);
    char creds[200];
    snprintf(creds, sizeof creds, "%s/missing.creds", g_dir);
    int rc = qc_log_open(url_of(&g_one, url, sizeof url), creds, 700, &lg, err, sizeof err);
    printf("      missing credentials file: %d %s\n", rc, err);
    assert_int_equal(rc, QV_INVALID);
    assert_null(lg);
    qc_log_close(NULL);
    qc_follow_stop(NULL);
}

/* One of several threads publishing to the same shard at once. */
typedef struct mt_job {
    int t;
    uint64_t seq[250];
    int failures;
} mt_job;

static void *mt_thread(void *arg)
{
    mt_job *j = arg;
    for (int i = 0; i < 250; i++) {
        char id[32], data[32];
        snprintf(id, sizeof id, "mt-%d-%d", j->t, i);
        int len = snprintf(data, sizeof data, "msg %d", j->t * 1000 + i);
        if (qc_log_publish(g_log, "mt", 0, id, data, (size_t)len, now_ms() + 10000, &j->seq[i], NULL, NULL, 0))
            j->failures++;
    }
    nats_ReleaseThreadMemory();
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    assert_rc(qc_log_stream_ensure(g_log, "mt", 0, 1));
    sink s;
    sink_init(&s);
    qc_follow *f = NULL;
    /* started before anything is written: it waits for messages */
    assert_rc(qc_log_follow(g_log, "mt", 0, 1, sink_apply, &s, &f));
    mt_job jobs[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (mt_job){.t = i};
        assert_int_equal(pthread_create(&t[i], NULL, mt_thread, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    assert_true(sink_wait(&s, 1000, 10000));
    sleep_ms(100);
    qc_follow_stop(f);
    /* each thread's messages in its own order; every sequence once */
    unsigned char seen[1001] = {0};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(jobs[i].failures, 0);
        for (int k = 0; k < 250; k++) {
            assert_true(jobs[i].seq[k] >= 1 && jobs[i].seq[k] <= 1000 && !seen[jobs[i].seq[k]]);
            seen[jobs[i].seq[k]] = 1;
            if (k) assert_true(jobs[i].seq[k] > jobs[i].seq[k - 1]);
        }
    }
    assert_int_equal(s.n, 1000);
    int next[4] = {0};
    for (size_t k = 0; k < s.n; k++) {
        assert_int_equal(s.seq[k], k + 1);
        int th = (int)(s.val[k] / 1000);
        assert_true(th >= 0 && th < 4);
        assert_int_equal(s.val[k] % 1000, next[th]++);
    }
    sink_free(&s);
}

static void test_follow_before_stream(void **state)
{
    (void)state;
    sink s;
    sink_init(&s);
    qc_follow *f = NULL;
    assert_rc(qc_log_follow(g_log, "later", 0, 1, sink_apply, &s, &f));
    sleep_ms(300); /* the follower finds no stream and backs off */
    assert_rc(qc_log_stream_ensure(g_log, "later", 0, 1));
    publish_range(g_log, "later", "la", 0, 20, 1);
    assert_true(sink_wait(&s, 20, 10000));
    qc_follow_stop(f);
    check_range(&s, 0, 20, 1);
    sink_free(&s);
}

/* A publisher on another thread during an outage. */
typedef struct pub_job {
    const char *coll;
    long from, to;
    int64_t deadline_ms;
    int failures;
    char err[256];
} pub_job;

static void *pub_thread(void *arg)
{
    pub_job *j = arg;
    for (long i = j->from; i < j->to; i++) {
        char id[32], data[32];
        snprintf(id, sizeof id, "rs-%ld", i);
        int len = snprintf(data, sizeof data, "msg %ld", i);
        if (qc_log_publish(g_log, j->coll, 0, id, data, (size_t)len, j->deadline_ms, NULL, NULL, j->err,
                           sizeof j->err))
            j->failures++;
    }
    nats_ReleaseThreadMemory();
    return NULL;
}

static void test_restart(void **state)
{
    (void)state;
    assert_rc(qc_log_stream_ensure(g_log, "rs", 0, 1));
    publish_range(g_log, "rs", "rs", 0, 300, 1);
    sink s;
    sink_init(&s);
    qc_follow *f = NULL;
    assert_rc(qc_log_follow(g_log, "rs", 0, 1, sink_apply, &s, &f));
    assert_true(sink_wait(&s, 300, 10000));

    /* kill -9; publishes wait for the restart on the same store */
    natsd_kill(&g_one);
    pub_job job = {.coll = "rs", .from = 300, .to = 600, .deadline_ms = now_ms() + 20000};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, pub_thread, &job), 0);
    double cpu0 = cpu_ms();
    sleep_ms(1500);
    double outage_cpu = cpu_ms() - cpu0;
    int64_t t0 = now_ms();
    assert_int_equal(natsd_start(&g_one), 0);
    pthread_join(t, NULL);
    if (job.failures) fail_msg("%d publishes failed across the restart: %s", job.failures, job.err);
    printf("      restart: publishes resumed %lld ms after the server was started; CPU during a 1.5 s "
           "outage %.0f ms\n",
           (long long)(now_ms() - t0), outage_cpu);
    assert_true(outage_cpu < 500); /* backing off, not spinning */
    publish_range(g_log, "rs", "rs", 600, 650, 601);
    if (!sink_wait(&s, 650, 20000)) fail_msg("follower has %zu of 650 after the restart", sink_count(&s));
    sleep_ms(200);
    qc_follow_stop(f);
    check_range(&s, 0, 650, 1);
    sink_free(&s);

    /* down past the deadline: fails cleanly, on time */
    natsd_kill(&g_one);
    char err[256] = "";
    t0 = now_ms();
    cpu0 = cpu_ms();
    int rc = qc_log_publish(g_log, "rs", 0, "late", "x", 1, now_ms() + 1500, NULL, NULL, err, sizeof err);
    int64_t took = now_ms() - t0;
    double cpu = cpu_ms() - cpu0;
    printf("      down: rc %d after %lld ms, CPU %.0f ms: %s\n", rc, (long long)took, cpu, err);
    assert_int_equal(rc, QV_IO);
    assert_true(took >= 1400 && took < 3000);
    assert_true(cpu < 500);
    assert_int_equal(natsd_start(&g_one), 0);
    /* and the log works again once it is back */
    assert_rc(qc_log_publish(g_log, "rs", 0, "rs-650", "msg 650", 7, now_ms() + 15000, NULL, NULL, NULL, 0));
}

/* ------------------------------------------------------ 3-node cluster */

static int cluster_setup(void **state)
{
    (void)state;
    const char *names[3] = {"n1", "n2", "n3"};
    for (int i = 0; i < 3; i++) natsd_init(&g_cl[i], names[i]);
    for (int i = 0; i < 3; i++)
        if (natsd_conf(&g_cl[i], g_cl, 3)) return -1;
    for (int i = 0; i < 3; i++)
        if (natsd_start(&g_cl[i])) return -1;
    return 0;
}

static int cluster_teardown(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++) natsd_kill(&g_cl[i]);
    return 0;
}

/* The name of the stream's leader, asked through our own connection. */
static bool stream_leader(jsCtx *js, const char *stream, char *out, size_t n)
{
    jsStreamInfo *si = NULL;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 2000;
    bool ok = js_GetStreamInfo(&si, js, stream, &jo, NULL) == NATS_OK && si->Cluster && si->Cluster->Leader;
    if (ok) snprintf(out, n, "%s", si->Cluster->Leader);
    jsStreamInfo_Destroy(si);
    return ok;
}

static void test_cluster_leader_kill(void **state)
{
    (void)state;
    if (getenv("QC_LOG_DEBUG")) qv_log_set_level(QV_LOG_DEBUG);
    char urls[256], u[3][64];
    snprintf(urls, sizeof urls, "%s,%s,%s", url_of(&g_cl[0], u[0], 64), url_of(&g_cl[1], u[1], 64),
             url_of(&g_cl[2], u[2], 64));
    qc_log *lg = NULL;
    char err[256] = "";
    if (qc_log_open(urls, NULL, 10000, &lg, err, sizeof err)) fail_msg("open: %s", err);
    /* an R3 stream needs the meta leader and all three peers */
    int rc = QV_IO;
    for (int i = 0; i < 3 && rc == QV_IO; i++) rc = qc_log_stream_ensure(lg, "lk", 0, 3);
    if (rc) fail_msg("ensure R3: %d %s", rc, qc_log_errmsg());

    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    assert_int_equal(natsConnection_ConnectTo(&nc, urls), NATS_OK);
    assert_int_equal(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
    char stream[QC_LOG_NAME_MAX], leader[64] = "";
    assert_rc(qc_log_names("lk", 0, stream, NULL));

    sink s;
    sink_init(&s);
    qc_follow *f = NULL;
    assert_rc(qc_log_follow(lg, "lk", 0, 1, sink_apply, &s, &f));

    const long total = 2000, kill_at = 600;
    uint64_t prev = 0;
    int64_t stall = 0, kill_t = 0;
    natsd *killed = NULL;
    for (long i = 0; i < total; i++) {
        if (i == kill_at) {
            assert_true(stream_leader(js, stream, leader, sizeof leader));
            for (int k = 0; k < 3; k++)
                if (!strcmp(g_cl[k].name, leader)) killed = &g_cl[k];
            assert_non_null(killed);
            natsd_kill(killed);
            kill_t = now_ms();
        }
        char id[32], data[32];
        snprintf(id, sizeof id, "lk-%ld", i);
        int len = snprintf(data, sizeof data, "msg %ld", i);
        uint64_t seq = 0;
        int64_t t0 = now_ms();
        rc = qc_log_publish(lg, "lk", 0, id, data, (size_t)len, now_ms() + 30000, &seq, NULL, err, sizeof err);
        if (rc) fail_msg("publish %s after killing %s: %s", id, leader, err);
        if (now_ms() - t0 > stall) stall = now_ms() - t0;
        assert_true(seq > prev); /* every acknowledged message is after the previous */
        prev = seq;
    }
    char after[64] = "?";
    stream_leader(js, stream, after, sizeof after);
    printf("      leader kill: %s killed after %ld acked messages, new leader %s; longest publish %lld ms; "
           "all %ld acked, last seq %llu, %lld ms from the kill to the end\n",
           leader, kill_at, after, (long long)stall, total, (unsigned long long)prev,
           (long long)(now_ms() - kill_t));
    if (!sink_wait(&s, (size_t)total, 30000)) fail_msg("follower has %zu of %ld", sink_count(&s), total);
    sleep_ms(300);
    qc_follow_stop(f);
    /* exactly once, in order: values 0..total-1 with increasing sequences */
    assert_int_equal(s.n, (size_t)total);
    for (size_t i = 0; i < s.n; i++) {
        if (s.val[i] != (long)i || (i && s.seq[i] <= s.seq[i - 1]))
            fail_msg("delivery %zu: value %ld seq %llu", i, s.val[i], (unsigned long long)s.seq[i]);
    }
    sink_free(&s);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    qc_log_close(lg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_publish_follow),
        cmocka_unit_test(test_duplicate),
        cmocka_unit_test(test_limit),
        cmocka_unit_test(test_last_seq_trim),
        cmocka_unit_test(test_stream_delete),
        cmocka_unit_test(test_redeliver),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_follow_before_stream),
        cmocka_unit_test(test_restart),
        cmocka_unit_test_setup_teardown(test_cluster_leader_kill, cluster_setup, cluster_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
