/* Unit tests of the etcd client (cluster/etcd.c) against a real etcd started
 * on free loopback ports in a temp dir ($QUIVER_ETCD names the binary; the
 * etcd on PATH otherwise). The server is killed at exit, also on failure. */
#include <arpa/inet.h>
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

#include "etcd.h"
#include "quiver/error.h"

#define TIMEOUT_MS 1000

/* ------------------------------------------------------------- the server */
/* One etcd process: plaintext, or TLS with client certificates (mTLS). */
typedef struct etcd_proc {
    const char *name;
    int port, peer_port, tls;
    pid_t pid;
} etcd_proc;

static char g_dir[64];
static etcd_proc g_etcd = {.name = "e0"}, g_etcd_tls = {.name = "t0", .tls = 1};
static int g_dead_port;
static char g_url[64];

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* A loopback port nothing listens on right now. */
static int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) ||
        getsockname(s, (struct sockaddr *)&a, &len))
        abort();
    close(s);
    return ntohs(a.sin_port);
}

static void etcd_start(etcd_proc *p)
{
    char data[128], log[128], client[64], peer[64], cluster[96], cert[128], key[128], ca[128];
    snprintf(data, sizeof data, "%s/%s.data", g_dir, p->name);
    snprintf(log, sizeof log, "%s/%s.log", g_dir, p->name);
    snprintf(client, sizeof client, "%s://127.0.0.1:%d", p->tls ? "https" : "http", p->port);
    snprintf(peer, sizeof peer, "http://127.0.0.1:%d", p->peer_port);
    snprintf(cluster, sizeof cluster, "%s=%s", p->name, peer);
    snprintf(cert, sizeof cert, "--cert-file=%s/server.pem", g_dir);
    snprintf(key, sizeof key, "--key-file=%s/server.key", g_dir);
    snprintf(ca, sizeof ca, "--trusted-ca-file=%s/ca.pem", g_dir);
    const char *bin = getenv("QUIVER_ETCD") ? getenv("QUIVER_ETCD") : "etcd";
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a crashed test */
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        char *argv[] = {(char *)bin, "--name", (char *)p->name, "--data-dir", data,
                        "--listen-client-urls", client, "--advertise-client-urls", client,
                        "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                        "--initial-cluster", cluster, NULL, NULL, NULL, NULL, NULL};
        if (p->tls) { /* the four slots before the final NULL */
            char **a = &argv[sizeof argv / sizeof *argv - 5];
            a[0] = cert, a[1] = key, a[2] = ca, a[3] = "--client-cert-auth";
        }
        execvp(bin, argv);
        _exit(127);
    }
    assert_true(pid > 0);
    p->pid = pid;
}

static void etcd_kill(etcd_proc *p)
{
    if (p->pid <= 0) return;
    kill(p->pid, SIGCONT);
    kill(p->pid, SIGKILL);
    waitpid(p->pid, NULL, 0);
    p->pid = 0;
}

static void cleanup_at_exit(void)
{
    etcd_kill(&g_etcd);
    etcd_kill(&g_etcd_tls);
    if (g_dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
        if (system(cmd)) fprintf(stderr, "cannot remove %s\n", g_dir);
    }
}

/* Wait until a put on e succeeds (etcd up and has a leader). */
static int wait_up(qc_etcd *e, int ms)
{
    int64_t end = now_ms() + ms;
    while (now_ms() < end) {
        if (qc_etcd_put(e, "up", "1", 1, 0) == 0) return 0;
        sleep_ms(100);
    }
    return -1;
}

static qc_etcd *open_client(const char *urls)
{
    qc_etcd *e = NULL;
    char err[256];
    int rc = qc_etcd_open(urls, NULL, TIMEOUT_MS, &e, err, sizeof err);
    if (rc) fail_msg("qc_etcd_open(%s): %s", urls, err);
    return e;
}

/* A CA, a server certificate for 127.0.0.1 and a client certificate, made
 * with the openssl tool (EC keys: quick). */
static int make_certs(void)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "cd %s && exec >certs.log 2>&1 && "
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-keyout ca.key -out ca.pem -days 2 -subj /CN=qv-test-ca && "
             "for n in server client; do "
             "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-keyout $n.key -out $n.csr -subj /CN=$n && "
             "printf 'subjectAltName=IP:127.0.0.1\\nextendedKeyUsage=serverAuth,clientAuth\\n' "
             ">$n.ext && "
             "openssl x509 -req -in $n.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
             "-out $n.pem -days 2 -extfile $n.ext || exit 1; done",
             g_dir);
    return system(cmd) ? -1 : 0;
}

static int group_setup(void **state)
{
    (void)state;
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(g_dir, sizeof g_dir, "%s/qv_test_etcd.XXXXXX", tmp);
    if (!mkdtemp(g_dir)) return -1;
    atexit(cleanup_at_exit);
    if (make_certs()) {
        fprintf(stderr, "cannot make test certificates (see %s/certs.log)\n", g_dir);
        return -1;
    }
    int ports[5];
    for (int i = 0; i < 5; i++) { /* five distinct free ports */
        ports[i] = free_port();
        for (int j = 0; j < i; j++)
            if (ports[j] == ports[i]) i--;
    }
    g_etcd.port = ports[0];
    g_etcd.peer_port = ports[1];
    g_etcd_tls.port = ports[2];
    g_etcd_tls.peer_port = ports[3];
    g_dead_port = ports[4];
    snprintf(g_url, sizeof g_url, "http://127.0.0.1:%d", g_etcd.port);
    etcd_start(&g_etcd);
    etcd_start(&g_etcd_tls);
    qc_etcd *e = open_client(g_url);
    int rc = wait_up(e, 15000);
    qc_etcd_close(e);
    if (rc) { /* show why before the dir goes */
        fprintf(stderr, "etcd did not come up: %s; its log:\n", qc_etcd_errmsg());
        char cmd[128];
        snprintf(cmd, sizeof cmd, "tail -20 %s/e0.log >&2", g_dir);
        if (system(cmd)) fprintf(stderr, "(no log)\n");
    }
    return rc;
}

static int group_teardown(void **state)
{
    (void)state;
    cleanup_at_exit();
    g_dir[0] = 0;
    return 0;
}

/* ------------------------------------------------------- watch recording */
typedef struct ev {
    int type;
    char key[64], val[64];
    int64_t mod_rev;
} ev;

typedef struct recorder {
    pthread_mutex_t mu;
    ev evs[512];
    int n;
} recorder;

static void record(void *ctx, int type, const qc_kv *kv)
{
    recorder *r = ctx;
    pthread_mutex_lock(&r->mu);
    if (r->n < (int)(sizeof r->evs / sizeof *r->evs)) {
        ev *e = &r->evs[r->n++];
        e->type = type;
        snprintf(e->key, sizeof e->key, "%s", kv->key ? kv->key : "");
        snprintf(e->val, sizeof e->val, "%.*s", (int)kv->val_len, kv->val ? (char *)kv->val : "");
        e->mod_rev = kv->mod_rev;
    }
    pthread_mutex_unlock(&r->mu);
}

static int recorded(recorder *r)
{
    pthread_mutex_lock(&r->mu);
    int n = r->n;
    pthread_mutex_unlock(&r->mu);
    return n;
}

/* Wait until at least n events were recorded; returns the count. */
static int wait_events(recorder *r, int n, int ms)
{
    int64_t end = now_ms() + ms;
    while (recorded(r) < n && now_ms() < end) sleep_ms(20);
    return recorded(r);
}

/* ------------------------------------------------------------------ tests */
static void test_kv(void **state)
{
    (void)state;
    qc_etcd *e = open_client(g_url);
    qc_kv kv;
    assert_int_equal(qc_etcd_get(e, "kv/none", &kv), QV_NOTFOUND);
    assert_true(strstr(qc_etcd_errmsg(), "kv/none") != NULL);
    const uint8_t bin[5] = {1, 0, 2, 0xff, 3}; /* values are bytes */
    assert_int_equal(qc_etcd_put(e, "kv/a", bin, sizeof bin, 0), 0);
    assert_int_equal(qc_etcd_put(e, "kv/b", "", 0, 0), 0);
    assert_int_equal(qc_etcd_put(e, "kv/c", "three", 5, 0), 0);
    assert_int_equal(qc_etcd_put(e, "kw/other", "x", 1, 0), 0);
    assert_int_equal(qc_etcd_get(e, "kv/a", &kv), 0);
    assert_string_equal(kv.key, "kv/a");
    assert_int_equal(kv.val_len, sizeof bin);
    assert_memory_equal(kv.val, bin, sizeof bin);
    assert_true(kv.create_rev > 0 && kv.mod_rev >= kv.create_rev);
    assert_int_equal(kv.lease, 0);
    qc_kv_free(&kv);
    assert_null(kv.key);

    qc_kv *kvs;
    size_t n;
    int64_t rev = 0;
    assert_int_equal(qc_etcd_range(e, "kv/", &kvs, &n, &rev), 0);
    assert_int_equal(n, 3);
    assert_string_equal(kvs[0].key, "kv/a");
    assert_string_equal(kvs[1].key, "kv/b");
    assert_int_equal(kvs[1].val_len, 0);
    assert_string_equal(kvs[2].key, "kv/c");
    assert_string_equal((char *)kvs[2].val, "three");
    assert_true(rev >= kvs[2].mod_rev);
    qc_kvs_free(kvs, n);
    /* "" is every key */
    assert_int_equal(qc_etcd_range(e, "", &kvs, &n, NULL), 0);
    assert_true(n >= 4);
    qc_kvs_free(kvs, n);
    assert_int_equal(qc_etcd_range(e, "nothing/", &kvs, &n, NULL), 0);
    assert_int_equal(n, 0);
    assert_null(kvs);

    assert_int_equal(qc_etcd_delete(e, "kv/a"), 0);
    assert_int_equal(qc_etcd_delete(e, "kv/a"), QV_NOTFOUND);
    assert_int_equal(qc_etcd_get(e, "kv/a", &kv), QV_NOTFOUND);
    assert_int_equal(qc_etcd_delete_prefix(e, ""), QV_INVALID);
    assert_int_equal(qc_etcd_delete_prefix(e, "kv/"), 0);
    assert_int_equal(qc_etcd_range(e, "kv/", &kvs, &n, NULL), 0);
    assert_int_equal(n, 0);
    assert_int_equal(qc_etcd_get(e, "kw/other", &kv), 0); /* outside the prefix */
    qc_kv_free(&kv);
    assert_int_equal(qc_etcd_put(e, "", "x", 1, 0), QV_INVALID);
    qc_etcd_close(e);
}

/* More keys than one Range page: read in pages at one revision. */
static void test_range_pages(void **state)
{
    (void)state;
    qc_etcd *e = open_client(g_url);
    char key[32];
    for (int i = 0; i < 1100; i++) {
        snprintf(key, sizeof key, "pg/%05d", i);
        assert_int_equal(qc_etcd_put(e, key, key, strlen(key), 0), 0);
    }
    qc_kv *kvs;
    size_t n;
    assert_int_equal(qc_etcd_range(e, "pg/", &kvs, &n, NULL), 0);
    assert_int_equal(n, 1100);
    for (size_t i = 0; i < n; i++) {
        snprintf(key, sizeof key, "pg/%05zu", i);
        assert_string_equal(kvs[i].key, key);
    }
    qc_kvs_free(kvs, n);
    assert_int_equal(qc_etcd_delete_prefix(e, "pg/"), 0);
    qc_etcd_close(e);
}

static void test_create_cas(void **state)
{
    (void)state;
    qc_etcd *e = open_client(g_url);
    assert_int_equal(qc_etcd_create(e, "cas/k", "v1", 2, 0), 0);
    assert_int_equal(qc_etcd_create(e, "cas/k", "v2", 2, 0), QV_EXISTS);
    qc_kv kv;
    assert_int_equal(qc_etcd_get(e, "cas/k", &kv), 0);
    assert_string_equal((char *)kv.val, "v1");
    int64_t rev = kv.mod_rev;
    qc_kv_free(&kv);
    assert_int_equal(qc_etcd_cas(e, "cas/k", "v3", 2, rev), 0);
    assert_int_equal(qc_etcd_cas(e, "cas/k", "v4", 2, rev), QV_BUSY); /* stale */
    assert_true(strlen(qc_etcd_errmsg()) > 0);
    assert_int_equal(qc_etcd_get(e, "cas/k", &kv), 0);
    assert_string_equal((char *)kv.val, "v3");
    assert_true(kv.mod_rev > rev);
    assert_int_equal(qc_etcd_cas(e, "cas/k", "v5", 2, kv.mod_rev), 0);
    qc_kv_free(&kv);
    assert_int_equal(qc_etcd_delete(e, "cas/k"), 0);
    assert_int_equal(qc_etcd_cas(e, "cas/k", "v6", 2, rev), QV_BUSY); /* deleted */
    assert_int_equal(qc_etcd_create(e, "cas/k", "v7", 2, 0), 0);      /* again after delete */
    assert_int_equal(qc_etcd_delete_prefix(e, "cas/"), 0);
    qc_etcd_close(e);
}

static void on_lost(void *ctx, int64_t id)
{
    *(volatile int64_t *)ctx = id;
}

/* A kept-alive lease outlives its TTL; one not kept alive expires and the
 * watch reports its key's deletion; revoking deletes the key; a lease revoked
 * elsewhere is reported lost. */
static void test_leases(void **state)
{
    (void)state;
    qc_etcd *e = open_client(g_url);
    volatile int64_t lost = 0;
    qc_etcd_on_lease_lost(e, on_lost, (void *)&lost);
    recorder rec = {.mu = PTHREAD_MUTEX_INITIALIZER};
    qc_watch *w;
    assert_int_equal(qc_etcd_watch(e, "ls/", 0, record, &rec, &w), 0);
    int64_t kept, left, other;
    assert_int_equal(qc_etcd_lease_grant(e, 2, &kept), 0);
    assert_int_equal(qc_etcd_lease_grant(e, 2, &left), 0);
    assert_int_equal(qc_etcd_lease_grant(e, 2, &other), 0);
    assert_true(kept && left && other && kept != left);
    assert_int_equal(qc_etcd_put(e, "ls/kept", "k", 1, kept), 0);
    assert_int_equal(qc_etcd_put(e, "ls/left", "l", 1, left), 0);
    assert_int_equal(qc_etcd_lease_keepalive(e, kept), 0);
    assert_int_equal(qc_etcd_lease_keepalive(e, kept), 0); /* twice is fine */
    assert_int_equal(qc_etcd_lease_keepalive(e, other), 0);
    assert_int_equal(qc_etcd_lease_keepalive(e, 0x7777), QV_NOTFOUND);
    assert_int_equal(qc_etcd_put(e, "ls/bad", "b", 1, 0x7777), QV_NOTFOUND);
    assert_int_equal(qc_etcd_lease_alive(e, kept), 1);
    assert_int_equal(qc_etcd_lease_alive(e, left), 0); /* not kept alive here */

    /* another client revokes "other": our keepalive hears it is gone */
    qc_etcd *e2 = open_client(g_url);
    assert_int_equal(qc_etcd_lease_revoke(e2, other), 0);
    qc_etcd_close(e2);

    sleep_ms(5500);
    qc_kv kv;
    assert_int_equal(qc_etcd_get(e, "ls/kept", &kv), 0);
    assert_int_equal(kv.lease, kept);
    qc_kv_free(&kv);
    assert_int_equal(qc_etcd_lease_alive(e, kept), 1);
    assert_int_equal(qc_etcd_get(e, "ls/left", &kv), QV_NOTFOUND);
    assert_int_equal(lost, other);
    assert_int_equal(qc_etcd_lease_alive(e, other), 0);

    assert_int_equal(qc_etcd_lease_revoke(e, kept), 0);
    assert_int_equal(qc_etcd_lease_alive(e, kept), 0);
    assert_int_equal(qc_etcd_get(e, "ls/kept", &kv), QV_NOTFOUND);
    assert_int_equal(qc_etcd_lease_revoke(e, kept), QV_NOTFOUND);

    /* the watch saw: put kept, put left, delete left (expiry), delete kept */
    assert_int_equal(wait_events(&rec, 4, 3000), 4);
    assert_int_equal(rec.evs[0].type, QC_PUT);
    assert_string_equal(rec.evs[0].key, "ls/kept");
    assert_int_equal(rec.evs[1].type, QC_PUT);
    assert_string_equal(rec.evs[1].key, "ls/left");
    assert_int_equal(rec.evs[2].type, QC_DELETE);
    assert_string_equal(rec.evs[2].key, "ls/left");
    assert_int_equal(rec.evs[3].type, QC_DELETE);
    assert_string_equal(rec.evs[3].key, "ls/kept");
    qc_watch_cancel(w);
    qc_etcd_close(e); /* "other"'s stopped keepalive is freed here */
}

/* Check the recorded events are puts of prefix/0..n-1 in order. */
static void check_puts(recorder *r, const char *prefix, int from, int n)
{
    char key[64];
    int64_t last = 0;
    for (int i = 0; i < n; i++) {
        ev *e = &r->evs[from + i];
        snprintf(key, sizeof key, "%s%03d", prefix, i);
        assert_int_equal(e->type, QC_PUT);
        assert_string_equal(e->key, key);
        assert_string_equal(e->val, key);
        assert_true(e->mod_rev > last);
        last = e->mod_rev;
    }
}

static void test_watch_order(void **state)
{
    (void)state;
    qc_etcd *e = open_client(g_url);
    recorder live = {.mu = PTHREAD_MUTEX_INITIALIZER}, replay = {.mu = PTHREAD_MUTEX_INITIALIZER};
    qc_watch *w, *w2;
    assert_int_equal(qc_etcd_watch(e, "wo/", 0, record, &live, &w), 0);
    char key[32];
    int64_t first = 0;
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof key, "wo/%03d", i);
        assert_int_equal(qc_etcd_put(e, key, key, strlen(key), 0), 0);
        if (i == 0) {
            qc_kv kv;
            assert_int_equal(qc_etcd_get(e, key, &kv), 0);
            first = kv.mod_rev;
            qc_kv_free(&kv);
        }
    }
    assert_int_equal(qc_etcd_put(e, "wx/outside", "x", 1, 0), 0);
    assert_int_equal(qc_etcd_delete(e, "wo/007"), 0);
    assert_int_equal(wait_events(&live, 51, 5000), 51);
    check_puts(&live, "wo/", 0, 50);
    assert_int_equal(live.evs[50].type, QC_DELETE);
    assert_string_equal(live.evs[50].key, "wo/007");
    assert_int_equal(live.evs[50].val[0], 0);
    /* from a past revision: the same history replayed */
    assert_int_equal(qc_etcd_watch(e, "wo/", first, record, &replay, &w2), 0);
    assert_int_equal(wait_events(&replay, 51, 5000), 51);
    check_puts(&replay, "wo/", 0, 50);
    assert_int_equal(replay.evs[50].type, QC_DELETE);
    sleep_ms(200);
    assert_int_equal(recorded(&live), 51); /* nothing twice */
    qc_watch_cancel(w);
    qc_watch_cancel(w2);
    assert_int_equal(qc_etcd_delete_prefix(e, "wo/"), 0);
    qc_etcd_close(e);
}

typedef struct hammer {
    qc_etcd *e;
    int id, failures;
} hammer;

static void *hammer_main(void *arg)
{
    hammer *h = arg;
    char key[32], val[32];
    for (int i = 0; i < 40; i++) {
        snprintf(key, sizeof key, "th/%d/%d", h->id, i);
        snprintf(val, sizeof val, "v%d", i);
        qc_kv kv;
        if (qc_etcd_put(h->e, key, val, strlen(val), 0) || qc_etcd_get(h->e, key, &kv) ||
            strcmp((char *)kv.val, val))
            h->failures++;
        else
            qc_kv_free(&kv);
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    qc_etcd *e = open_client(g_url);
    pthread_t t[4];
    hammer h[4];
    for (int i = 0; i < 4; i++) {
        h[i] = (hammer){e, i, 0};
        pthread_create(&t[i], NULL, hammer_main, &h[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(h[i].failures, 0);
    }
    qc_kv *kvs;
    size_t n;
    assert_int_equal(qc_etcd_range(e, "th/", &kvs, &n, NULL), 0);
    assert_int_equal(n, 160);
    qc_kvs_free(kvs, n);
    assert_int_equal(qc_etcd_delete_prefix(e, "th/"), 0);
    qc_etcd_close(e);
}

/* A dead first endpoint (nothing listens) does not stop the client. */
static void test_dead_endpoint(void **state)
{
    (void)state;
    char urls[160];
    snprintf(urls, sizeof urls, "http://127.0.0.1:%d, %s/", g_dead_port, g_url);
    qc_etcd *e = open_client(urls);
    recorder rec = {.mu = PTHREAD_MUTEX_INITIALIZER};
    qc_watch *w;
    assert_int_equal(qc_etcd_watch(e, "de/", 0, record, &rec, &w), 0);
    assert_int_equal(qc_etcd_put(e, "de/k", "v", 1, 0), 0);
    qc_kv kv;
    assert_int_equal(qc_etcd_get(e, "de/k", &kv), 0);
    qc_kv_free(&kv);
    int64_t id;
    assert_int_equal(qc_etcd_lease_grant(e, 2, &id), 0);
    assert_int_equal(qc_etcd_lease_keepalive(e, id), 0);
    assert_int_equal(wait_events(&rec, 1, 3000), 1);
    assert_string_equal(rec.evs[0].key, "de/k");
    assert_int_equal(qc_etcd_lease_revoke(e, id), 0);
    assert_int_equal(qc_etcd_delete(e, "de/k"), 0);
    qc_watch_cancel(w);
    qc_etcd_close(e);

    /* only dead endpoints: a clear error within the timeout */
    snprintf(urls, sizeof urls, "http://127.0.0.1:%d", g_dead_port);
    e = open_client(urls);
    int64_t t0 = now_ms();
    assert_int_equal(qc_etcd_get(e, "de/k", &kv), QV_IO);
    assert_true(now_ms() - t0 < TIMEOUT_MS + 500);
    assert_true(strstr(qc_etcd_errmsg(), "cannot connect") != NULL);
    qc_etcd_close(e);

    char err[128];
    assert_int_equal(qc_etcd_open("http://nohost", NULL, 100, &e, err, sizeof err), QV_INVALID);
    assert_true(strstr(err, "port") != NULL);
    assert_int_equal(qc_etcd_open(" , ", NULL, 100, &e, err, sizeof err), QV_INVALID);
    qc_etcd_tls tls = {.ca = "/nonexistent/ca.pem"};
    snprintf(urls, sizeof urls, "127.0.0.1:%d", g_etcd.port); /* no scheme */
    assert_int_equal(qc_etcd_open(urls, &tls, 100, &e, err, sizeof err), QV_INVALID);
    assert_true(strstr(err, "/nonexistent/ca.pem") != NULL);
    assert_int_equal(qc_etcd_open(g_url, &tls, 100, &e, err, sizeof err), QV_INVALID);
    assert_true(strstr(err, "http://") != NULL);
}

/* A watch from a compacted revision reports QC_RESET (from the oldest kept
 * revision), then the events from there on. */
static void test_compaction(void **state)
{
    (void)state;
    qc_etcd *e = open_client(g_url);
    qc_kv kv;
    assert_int_equal(qc_etcd_put(e, "cp/000", "cp/000", 6, 0), 0);
    assert_int_equal(qc_etcd_get(e, "cp/000", &kv), 0);
    int64_t r0 = kv.mod_rev;
    qc_kv_free(&kv);
    assert_int_equal(qc_etcd_put(e, "cp/001", "cp/001", 6, 0), 0);
    assert_int_equal(qc_etcd_put(e, "cp/002", "cp/002", 6, 0), 0);
    assert_int_equal(qc_etcd_get(e, "cp/002", &kv), 0);
    int64_t r2 = kv.mod_rev;
    qc_kv_free(&kv);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "ETCDCTL_API=3 etcdctl --endpoints=%s compact %lld >/dev/null", g_url,
             (long long)r2);
    assert_int_equal(system(cmd), 0);
    recorder rec = {.mu = PTHREAD_MUTEX_INITIALIZER};
    qc_watch *w;
    assert_int_equal(qc_etcd_watch(e, "cp/", r0, record, &rec, &w), 0);
    assert_int_equal(wait_events(&rec, 2, 5000), 2);
    assert_int_equal(qc_etcd_put(e, "cp/003", "cp/003", 6, 0), 0);
    assert_int_equal(wait_events(&rec, 3, 5000), 3);
    assert_int_equal(rec.evs[0].type, QC_RESET);
    assert_int_equal(rec.evs[0].mod_rev, r2);
    assert_int_equal(rec.evs[1].type, QC_PUT);
    assert_string_equal(rec.evs[1].key, "cp/002");
    assert_int_equal(rec.evs[2].type, QC_PUT);
    assert_string_equal(rec.evs[2].key, "cp/003");
    qc_watch_cancel(w);
    assert_int_equal(qc_etcd_delete_prefix(e, "cp/"), 0);
    qc_etcd_close(e);
}

/* https with a client certificate (etcd runs with --client-cert-auth);
 * without one the handshake fails and calls end within the timeout. */
static void test_tls(void **state)
{
    (void)state;
    char url[64], ca[128], cert[128], key[128], err[256];
    snprintf(url, sizeof url, "https://127.0.0.1:%d", g_etcd_tls.port);
    snprintf(ca, sizeof ca, "%s/ca.pem", g_dir);
    snprintf(cert, sizeof cert, "%s/client.pem", g_dir);
    snprintf(key, sizeof key, "%s/client.key", g_dir);
    qc_etcd_tls tls = {.ca = ca, .cert = cert, .key = key};
    qc_etcd *e;
    assert_int_equal(qc_etcd_open(url, &tls, TIMEOUT_MS, &e, err, sizeof err), 0);
    assert_int_equal(wait_up(e, 15000), 0);
    recorder rec = {.mu = PTHREAD_MUTEX_INITIALIZER};
    qc_watch *w;
    assert_int_equal(qc_etcd_watch(e, "tls/", 0, record, &rec, &w), 0);
    assert_int_equal(qc_etcd_create(e, "tls/k", "v", 1, 0), 0);
    qc_kv kv;
    assert_int_equal(qc_etcd_get(e, "tls/k", &kv), 0);
    qc_kv_free(&kv);
    int64_t id;
    assert_int_equal(qc_etcd_lease_grant(e, 2, &id), 0);
    assert_int_equal(qc_etcd_lease_keepalive(e, id), 0);
    assert_int_equal(wait_events(&rec, 1, 3000), 1);
    assert_int_equal(qc_etcd_lease_revoke(e, id), 0);
    qc_watch_cancel(w);
    qc_etcd_close(e);

    qc_etcd_tls no_cert = {.ca = ca};
    assert_int_equal(qc_etcd_open(url, &no_cert, TIMEOUT_MS, &e, err, sizeof err), 0);
    int64_t t0 = now_ms();
    assert_int_equal(qc_etcd_get(e, "tls/k", &kv), QV_IO);
    assert_true(now_ms() - t0 < TIMEOUT_MS + 500);
    qc_etcd_close(e);
    qc_etcd_tls half = {.ca = ca, .cert = cert};
    assert_int_equal(qc_etcd_open(url, &half, TIMEOUT_MS, &e, err, sizeof err), QV_INVALID);
    snprintf(err, sizeof err, "http://127.0.0.1:1,%s", url);
    assert_int_equal(qc_etcd_open(err, NULL, TIMEOUT_MS, &e, NULL, 0), QV_INVALID); /* mixed */
}

/* A stopped etcd fails calls within the timeout; a killed and restarted one
 * (same data dir) serves again, and the watch resumes without losing or
 * repeating an event. Runs last: it restarts the server. */
static void test_outage(void **state)
{
    (void)state;
    qc_etcd *e = open_client(g_url);
    recorder rec = {.mu = PTHREAD_MUTEX_INITIALIZER};
    qc_watch *w;
    assert_int_equal(qc_etcd_watch(e, "ou/", 0, record, &rec, &w), 0);
    assert_int_equal(qc_etcd_put(e, "ou/000", "ou/000", 6, 0), 0);
    int64_t id;
    assert_int_equal(qc_etcd_lease_grant(e, 3, &id), 0);
    assert_int_equal(qc_etcd_put(e, "lease/ou", "x", 1, id), 0);
    assert_int_equal(qc_etcd_lease_keepalive(e, id), 0);

    kill(g_etcd.pid, SIGSTOP);
    int64_t t0 = now_ms();
    /* outside the watched prefix: etcd may still apply it after SIGCONT */
    assert_int_equal(qc_etcd_put(e, "stopped/x", "x", 1, 0), QV_IO);
    int64_t took = now_ms() - t0;
    assert_true(took >= TIMEOUT_MS - 50 && took < TIMEOUT_MS + 500);
    assert_true(strstr(qc_etcd_errmsg(), "within") != NULL);
    kill(g_etcd.pid, SIGCONT);
    assert_int_equal(wait_up(e, 5000), 0);
    assert_int_equal(qc_etcd_put(e, "ou/001", "ou/001", 6, 0), 0);

    etcd_kill(&g_etcd);
    t0 = now_ms();
    qc_kv kv;
    assert_int_equal(qc_etcd_get(e, "ou/000", &kv), QV_IO);
    assert_true(now_ms() - t0 < TIMEOUT_MS + 500);
    etcd_start(&g_etcd);
    assert_int_equal(wait_up(e, 15000), 0);
    /* written at once: the watch may still be reconnecting */
    assert_int_equal(qc_etcd_put(e, "ou/002", "ou/002", 6, 0), 0);
    assert_int_equal(qc_etcd_put(e, "ou/003", "ou/003", 6, 0), 0);
    assert_int_equal(qc_etcd_get(e, "ou/001", &kv), 0); /* survived the restart */
    qc_kv_free(&kv);
    /* the keepalive reconnected: the lease and its key outlive their TTL */
    sleep_ms(3500);
    assert_int_equal(qc_etcd_lease_alive(e, id), 1);
    assert_int_equal(qc_etcd_get(e, "lease/ou", &kv), 0);
    qc_kv_free(&kv);
    assert_int_equal(qc_etcd_lease_revoke(e, id), 0);
    assert_int_equal(wait_events(&rec, 4, 5000), 4);
    check_puts(&rec, "ou/", 0, 4);
    sleep_ms(200);
    assert_int_equal(recorded(&rec), 4);
    qc_watch_cancel(w);
    assert_int_equal(qc_etcd_delete_prefix(e, "ou/"), 0);
    qc_etcd_close(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kv),          cmocka_unit_test(test_range_pages),
        cmocka_unit_test(test_create_cas),  cmocka_unit_test(test_leases),
        cmocka_unit_test(test_watch_order), cmocka_unit_test(test_threads),
        cmocka_unit_test(test_dead_endpoint), cmocka_unit_test(test_compaction),
        cmocka_unit_test(test_tls),         cmocka_unit_test(test_outage),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
