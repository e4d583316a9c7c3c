/*
 * quiverd: flags, start-up and shutdown. Opens the engine on the data
 * directory, serves gRPC until SIGINT/SIGTERM, then drains calls and closes
 * LMDB. The event loop is in rpc.c, handlers in svc_*.c.
 */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <getopt.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <grpc/grpc.h>

#include "cluster.h"
#include "router.h"
#include "quiver/backup.h"
#include "quiver/error.h"
#include "quiver/log.h"
#include "metrics.h"
#include "rpc.h"
#include "services.h"

#define QUIVER_VERSION "0.1.0"
#ifndef QUIVER_GIT_REVISION /* CMake: git describe at configure time */
#define QUIVER_GIT_REVISION "unknown"
#endif

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: quiverd [options]\n"
            "Quiver vector-search database server (gRPC).\n\n"
            "  --listen ADDR        address to serve on (default 127.0.0.1:50051;\n"
            "                       port 0 picks a free port, printed on stdout;\n"
            "                       unix:PATH serves on a unix socket: a client on\n"
            "                       the same host, e.g. a sidecar, skips TCP)\n"
            "  --data DIR           data directory (default ./data; created if missing)\n"
            "  --restore FILE       restore a backup (quiver backup, Admin/Backup) into\n"
            "                       --data and exit: every member's size and SHA-256 are\n"
            "                       checked first; DIR must be empty unless --force\n"
            "  --force              with --restore: replace the data in a non-empty DIR\n"
            "  --auth-keys FILE     require API keys: one per line, SHA256-HEX ROLE NAME\n"
            "                       [collections=a,b]; roles read, write, admin; clients\n"
            "                       send \"authorization: Bearer KEY\"; re-read on SIGHUP\n"
            "  --hash-key           read a key on stdin, print its SHA-256 for the key file\n"
            "  --insecure-no-auth   serve without API keys on a non-loopback address\n"
            "                       (without --auth-keys quiverd listens on loopback only:\n"
            "                       --listen 0.0.0.0:50051 becomes 127.0.0.1:50051)\n"
            "  --tls-cert FILE --tls-key FILE  serve TLS (PEM); re-read on SIGHUP\n"
            "  --tls-client-ca FILE require client certificates signed by this CA (mTLS)\n"
            "  --log-format F       text (default) or json: one object per line\n"
            "  --slow-ms N          log searches slower than N ms (default 500; 0 = off)\n"
            "  --threads N          gRPC worker threads (default: one per core, at least 2)\n"
            "  --map-size SIZE      the most the data may grow to (default 1T; suffixes\n"
            "                       K, M, G, T): reserved as address space, data.mdb\n"
            "                       grows with the data; over it writes fail with\n"
            "                       RESOURCE_EXHAUSTED\n"
            "  --max-message SIZE   largest request accepted (default 64M)\n"
            "  --max-k N            largest k a search may ask for (default 1000)\n"
            "  --max-reply SIZE     largest reply a call may build (default: --max-message);\n"
            "                       a search or get that would exceed it is refused with\n"
            "                       RESOURCE_EXHAUSTED before anything is built\n"
            "  --max-attr-bytes SIZE  encoded attributes per item (default 64K)\n"
            "  --max-attr-keys N    attribute keys per item (default 256)\n"
            "  --attr-cache SIZE    memory for the attributes of search hits, all\n"
            "                       collections together (default 256M; 0: off): hits\n"
            "                       whose attributes it holds skip an LMDB lookup\n"
            "  --max-queued-writes SIZE  memory of write requests taken in and not yet\n"
            "                       answered (default 256M; about twice their wire size);\n"
            "                       beyond it quiverd stops taking write calls from the\n"
            "                       network until there is room\n"
            "  --auto-ivf-min N     items at which index kind \"auto\" moves from exact\n"
            "                       search to IVF (default 10000)\n"
            "  --hnsw-coarse-min N  IVF indexes of N lists or more find their nearest\n"
            "                       lists through an HNSW graph of the centroids\n"
            "                       instead of a scan of all of them (default 0 =\n"
            "                       never); applies to builds from then on\n"
            "  --no-auto-rebuild    never start index rebuilds by itself\n"
            "  --max-rebuilds N     index rebuilds building at once (default 1); the\n"
            "                       others wait in phase \"queued\"\n"
            "  --unsafe-nosync      do not fsync on commit: faster writes, but a crash\n"
            "                       of the machine may lose acknowledged writes\n"
            "  --grace-ms N         how long shutdown waits for calls (default 5000)\n"
            "  --log-level LEVEL    error, warn, info (default), debug\n"
            "  --metrics-listen ADDR  serve Prometheus metrics at http://ADDR/metrics\n"
            "                       (HOST:PORT; port 0 picks a free port, logged)\n"
            "Cluster mode (README \"Cluster\"; without these flags quiverd is a single node):\n"
            "  --cluster-etcd URL[,URL...]  etcd v3 endpoints holding the cluster's metadata\n"
            "  --cluster-nats URL[,URL...]  NATS JetStream servers holding the write log\n"
            "  --node-id ID         this node's name in the cluster (unique, [A-Za-z0-9_.-])\n"
            "  --advertise HOST:PORT  where the other nodes reach this one\n"
            "  --no-shards          route calls only; hold no shard replica\n"
            "  --cluster-key-file FILE  the API key (first line) this node sends to its\n"
            "                       peers when they require keys (an admin key of --auth-keys)\n"
            "  --cluster-nats-creds FILE  NATS credentials file\n"
            "  --cluster-etcd-ca FILE --cluster-etcd-cert FILE --cluster-etcd-key FILE\n"
            "                       TLS to etcd (CA; client certificate and key)\n"
            "  --cluster-log-replicas N  copies of each shard's log stream (default 3 with\n"
            "                       3 or more NATS URLs, else 1)\n"
            "  --cluster-threads N  threads that route calls to other nodes (default 8)\n"
            "  --replace-after SECONDS  a node gone this long has its replicas placed on\n"
            "                       the other nodes by the controller (default 300)\n"
            "  --rebalance[=on|off] the controller moves replicas from the most loaded\n"
            "                       nodes to a joining one (default on)\n"
            "  --no-rebalance       the same as --rebalance=off (quiver cluster rebalance\n"
            "                       then balances once, when asked)\n"
            "  --log-max-bytes SIZE  a safety cap on each shard's log stream (the oldest\n"
            "                       entries go; a replica further behind installs a\n"
            "                       snapshot); the controller trims below what every\n"
            "                       replica applied in any case (default: no cap)\n"
            "  --cluster-tls-ca FILE  with --tls-cert: the CA that signed the other nodes'\n"
            "                       certificates (default: --tls-client-ca); nodes present\n"
            "                       their --tls-cert to each other\n"
            "  --version            print the version and exit\n"
            "  --help               this help\n\n"
            "Runtime environment: quiverd restarts itself once at start-up with\n"
            "OMP_WAIT_POLICY=passive and, when the CPU has AVX-512 but Debian's OpenBLAS\n"
            "picked an older core, OPENBLAS_CORETYPE=SkylakeX; variables you set win\n"
            "(e.g. OPENBLAS_CORETYPE=Haswell). OpenBLAS runs single-threaded unless\n"
            "OPENBLAS_NUM_THREADS is set. The BLAS core in use is logged at start-up.\n");
}

/* A decimal count in lo..hi for flag `name` into *out; prints the usage
 * error and returns -1 otherwise. */
static int parse_count(const char *name, const char *s, unsigned long long lo,
                       unsigned long long hi, unsigned long long *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *end || *s == '-' || errno || v < lo || v > hi) {
        fprintf(stderr, "quiverd: %s %s: want %llu..%llu\n", name, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_size(const char *s, size_t *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || v < 0) return -1;
    size_t mul = 1;
    switch (*end) {
    case 'k': case 'K': mul = (size_t)1 << 10; end++; break;
    case 'm': case 'M': mul = (size_t)1 << 20; end++; break;
    case 'g': case 'G': mul = (size_t)1 << 30; end++; break;
    case 't': case 'T': mul = (size_t)1 << 40; end++; break;
    }
    if (*end == 'B' || *end == 'b') end++;
    if (*end) return -1;
    *out = (size_t)(v * (double)mul);
    return 0;
}

static const char *blas_core(void)
{
    const char *(*corename)(void) = (const char *(*)(void))dlsym(RTLD_DEFAULT, "openblas_get_corename");
    return corename ? corename() : "unknown (not OpenBLAS)";
}

/* Settings that the OpenMP and OpenBLAS runtimes read only when they load,
 * before main: quiverd restarts itself once with them in its environment.
 * Anything the operator set already is left alone.
 *  - OMP_WAIT_POLICY=passive: idle OpenMP workers sleep instead of spinning;
 *    searches run concurrently on the gRPC workers, and spinning teams of
 *    batch searches cost 25% more CPU per query (measured).
 *  - OPENBLAS_CORETYPE=SkylakeX when the CPU has AVX-512 but Debian's OpenBLAS
 *    0.3.21 picked an older core (it does not know recent CPUs, e.g. Zen 4):
 *    issue 4 reports exact batch search and IVF training 2-2.5x faster
 *    with it (not measured here). */
static void maybe_reexec_with_runtime_env(char **argv)
{
    if (getenv("QUIVERD_REEXEC")) return; /* done once */
    int again = 0;
    if (!getenv("OMP_WAIT_POLICY")) {
        setenv("OMP_WAIT_POLICY", "passive", 1);
        again = 1;
    }
    const char *core = blas_core();
    if (!getenv("OPENBLAS_CORETYPE") && __builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl") && strcasecmp(core, "SkylakeX") &&
        strcasecmp(core, "Cooperlake") && strcasecmp(core, "SapphireRapids") &&
        !strstr(core, "unknown")) {
        setenv("OPENBLAS_CORETYPE", "SkylakeX", 1);
        again = 1;
    }
    if (!again) return;
    setenv("QUIVERD_REEXEC", "1", 1);
    execv("/proc/self/exe", argv);
    /* exec failed: carry on as we are */
}

/* BLAS calls come from concurrent searches and background builds: each runs
 * on its own thread, and OpenBLAS's own thread pool would only contend. */
static void blas_single_threaded(void)
{
    void (*set)(int) = (void (*)(int))dlsym(RTLD_DEFAULT, "openblas_set_num_threads");
    if (set && !getenv("OPENBLAS_NUM_THREADS")) set(1);
}

/* Is the host of a listen address (HOST:PORT) a loopback one? A unix socket
 * (unix:PATH, unix-abstract:NAME) is reachable from this host only. */
static int is_loopback(const char *listen)
{
    if (rpc_listen_is_unix(listen)) return 1;
    const char *colon = strrchr(listen, ':');
    size_t n = colon ? (size_t)(colon - listen) : strlen(listen);
    char host[256];
    if (n >= sizeof host) return 0;
    memcpy(host, listen, n);
    host[n] = 0;
    return !strcmp(host, "localhost") || !strncmp(host, "127.", 4) || !strcmp(host, "[::1]") ||
           !strcmp(host, "ipv4:127.0.0.1") || !strcmp(host, "::1");
}

/* --hash-key: a key from stdin (one line) to the hash the key file holds. */
static int hash_key(void)
{
    char key[4096];
    if (!fgets(key, sizeof key, stdin)) {
        fprintf(stderr, "quiverd --hash-key: give the key on stdin\n");
        return 2;
    }
    key[strcspn(key, "\r\n")] = 0;
    if (!key[0]) {
        fprintf(stderr, "quiverd --hash-key: the key is empty\n");
        return 2;
    }
    char hex[65];
    auth_hash_hex(key, strlen(key), hex);
    printf("%s\n", hex);
    return 0;
}

int main(int argc, char **argv)
{
    maybe_reexec_with_runtime_env(argv);
    blas_single_threaded();
    /* Blocks of 1 MiB and more come from mmap and go back to the system when
     * freed. glibc's default raises that threshold to the largest block freed
     * so far, after which a build's scratch blocks (chunks, copies, FAISS's
     * temporaries) stay in the heap: measured on glove-100, 85 MB more at the
     * peak of an ivf_pq_fs build and 78 MB more after it. */
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
    const char *listen = "127.0.0.1:50051", *data = "./data";
    /* one poller per core: searches run on the pollers, and more pollers than
     * cores only preempt each other (measured: -25% QPS, p99 x2 on 2 cores);
     * writes and rebuilds never block a poller for long */
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = ncpu >= 2 ? (int)ncpu : 2;
    int rebalance_flag = 0; /* --rebalance or --no-rebalance given */
    size_t map_size = QV_STORE_MAP_CAP, max_msg = (size_t)64 << 20, max_reply = 0;
    int grace_ms = 5000;
    qv_db_opts dbo;
    memset(&dbo, 0, sizeof dbo);
    enum { O_LISTEN = 256, O_DATA, O_THREADS, O_MAP, O_NOSYNC, O_MAXMSG, O_AUTOMIN, O_NOREB,
           O_GRACE, O_LOG, O_VERSION, O_HELP, O_MAXK, O_HNSWMIN, O_MAXREPLY, O_ATTRBYTES,
           O_ATTRKEYS, O_QUEUED, O_MAXREB, O_RESTORE, O_FORCE, O_AUTHKEYS, O_HASHKEY, O_NOAUTH,
           O_TLSCERT, O_TLSKEY, O_TLSCA, O_LOGFMT, O_SLOW, O_METRICS, O_CETCD, O_CNATS, O_NODEID,
           O_ADVERTISE, O_NOSHARDS, O_CKEY, O_CCREDS, O_CECA, O_CECERT, O_CEKEY, O_CLOGREP, O_CTHREADS, O_CTLSCA, O_REPLACE, O_NOREBAL, O_LOGMAX, O_REBAL, O_ACACHE };
    static const struct option opts[] = {
        {"listen", required_argument, 0, O_LISTEN},   {"data", required_argument, 0, O_DATA},
        {"threads", required_argument, 0, O_THREADS}, {"map-size", required_argument, 0, O_MAP},
        {"unsafe-nosync", no_argument, 0, O_NOSYNC},  {"max-message", required_argument, 0, O_MAXMSG},
        {"auto-ivf-min", required_argument, 0, O_AUTOMIN},
        {"no-auto-rebuild", no_argument, 0, O_NOREB}, {"grace-ms", required_argument, 0, O_GRACE},
        {"log-level", required_argument, 0, O_LOG},   {"version", no_argument, 0, O_VERSION},
        {"help", no_argument, 0, O_HELP},             {"max-k", required_argument, 0, O_MAXK},
        {"hnsw-coarse-min", required_argument, 0, O_HNSWMIN},
        {"max-reply", required_argument, 0, O_MAXREPLY},
        {"max-attr-bytes", required_argument, 0, O_ATTRBYTES},
        {"max-attr-keys", required_argument, 0, O_ATTRKEYS},
        {"max-queued-writes", required_argument, 0, O_QUEUED},
        {"attr-cache", required_argument, 0, O_ACACHE},
        {"max-rebuilds", required_argument, 0, O_MAXREB},
        {"restore", required_argument, 0, O_RESTORE}, {"force", no_argument, 0, O_FORCE},
        {"auth-keys", required_argument, 0, O_AUTHKEYS}, {"hash-key", no_argument, 0, O_HASHKEY},
        {"insecure-no-auth", no_argument, 0, O_NOAUTH},
        {"tls-cert", required_argument, 0, O_TLSCERT}, {"tls-key", required_argument, 0, O_TLSKEY},
        {"tls-client-ca", required_argument, 0, O_TLSCA},
        {"log-format", required_argument, 0, O_LOGFMT}, {"slow-ms", required_argument, 0, O_SLOW},
        {"metrics-listen", required_argument, 0, O_METRICS},
        {"cluster-etcd", required_argument, 0, O_CETCD}, {"cluster-nats", required_argument, 0, O_CNATS},
        {"node-id", required_argument, 0, O_NODEID}, {"advertise", required_argument, 0, O_ADVERTISE},
        {"no-shards", no_argument, 0, O_NOSHARDS}, {"cluster-key-file", required_argument, 0, O_CKEY},
        {"cluster-nats-creds", required_argument, 0, O_CCREDS},
        {"cluster-etcd-ca", required_argument, 0, O_CECA},
        {"cluster-etcd-cert", required_argument, 0, O_CECERT},
        {"cluster-etcd-key", required_argument, 0, O_CEKEY},
        {"cluster-log-replicas", required_argument, 0, O_CLOGREP},
        {"cluster-threads", required_argument, 0, O_CTHREADS},
        {"cluster-tls-ca", required_argument, 0, O_CTLSCA},
        {"replace-after", required_argument, 0, O_REPLACE}, {"no-rebalance", no_argument, 0, O_NOREBAL},
        {"rebalance", optional_argument, 0, O_REBAL},
        {"log-max-bytes", required_argument, 0, O_LOGMAX},
        {0, 0, 0, 0}};
    qc_opts co;
    memset(&co, 0, sizeof co);
    const char *cluster_key_file = NULL, *cluster_tls_ca = NULL;
    const char *auth_keys = NULL, *tls_cert = NULL, *tls_key = NULL, *tls_ca = NULL;
    int insecure_no_auth = 0;
    const char *restore = NULL, *metrics_listen = NULL;
    int force = 0;
    int c;
    unsigned long long v;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case O_LISTEN: listen = optarg; break;
        case O_DATA: data = optarg; break;
        case O_THREADS:
            threads = atoi(optarg);
            if (threads < 1 || threads > 256) {
                fprintf(stderr, "quiverd: --threads %s: want 1..256\n", optarg);
                return 2;
            }
            break;
        case O_MAP:
            if (parse_size(optarg, &map_size) || map_size < ((size_t)1 << 20)) {
                fprintf(stderr, "quiverd: --map-size %s: want a size of at least 1M, e.g. 64G\n", optarg);
                return 2;
            }
            break;
        case O_MAXMSG:
            if (parse_size(optarg, &max_msg) || max_msg < 1024 || max_msg > ((size_t)1 << 31) - 1) {
                fprintf(stderr, "quiverd: --max-message %s: want 1K..2G\n", optarg);
                return 2;
            }
            break;
        case O_NOSYNC: dbo.store.nosync = 1; break;
        case O_MAXREPLY:
            if (parse_size(optarg, &max_reply) || max_reply < 1024 ||
                max_reply > ((size_t)1 << 31) - 1) {
                fprintf(stderr, "quiverd: --max-reply %s: want 1K..2G\n", optarg);
                return 2;
            }
            break;
        case O_ATTRBYTES:
            if (parse_size(optarg, &g_max_attr_bytes) || g_max_attr_bytes < 16 ||
                g_max_attr_bytes > ((size_t)1 << 30)) {
                fprintf(stderr, "quiverd: --max-attr-bytes %s: want 16..1G\n", optarg);
                return 2;
            }
            break;
        case O_QUEUED:
            if (parse_size(optarg, &dbo.max_queued_bytes) || dbo.max_queued_bytes < 1024) {
                fprintf(stderr, "quiverd: --max-queued-writes %s: want a size of at least 1K\n",
                        optarg);
                return 2;
            }
            break;
        case O_ACACHE:
            if (parse_size(optarg, &dbo.attr_cache_bytes)) {
                fprintf(stderr, "quiverd: --attr-cache %s: want a size (0: off)\n", optarg);
                return 2;
            }
            dbo.no_attr_cache = dbo.attr_cache_bytes == 0;
            break;
        case O_MAXREB:
            if (parse_count("--max-rebuilds", optarg, 1, 64, &v)) return 2;
            dbo.max_rebuilds = (unsigned)v;
            break;
        case O_ATTRKEYS:
            if (parse_count("--max-attr-keys", optarg, 1, 1000000, &v)) return 2;
            g_max_attr_keys = (unsigned)v;
            break;
        case O_MAXK:
            if (parse_count("--max-k", optarg, 1, 100000, &v)) return 2;
            g_max_k = (unsigned)v;
            break;
        case O_AUTOMIN:
            if (parse_count("--auto-ivf-min", optarg, 1, ULLONG_MAX, &v)) return 2;
            dbo.auto_ivf_min = (size_t)v;
            break;
        case O_HNSWMIN:
            if (parse_count("--hnsw-coarse-min", optarg, 0, 1u << 20, &v)) return 2;
            dbo.hnsw_coarse_min = v ? (uint32_t)v : UINT32_MAX;
            break;
        case O_NOREB: dbo.no_auto_rebuild = 1; break;
        case O_RESTORE: restore = optarg; break;
        case O_METRICS: metrics_listen = optarg; break;
        case O_AUTHKEYS: auth_keys = optarg; break;
        case O_NOAUTH: insecure_no_auth = 1; break;
        case O_TLSCERT: tls_cert = optarg; break;
        case O_TLSKEY: tls_key = optarg; break;
        case O_TLSCA: tls_ca = optarg; break;
        case O_HASHKEY: return hash_key();
        case O_LOGFMT:
            if (!strcmp(optarg, "json")) qv_log_set_json(1);
            else if (strcmp(optarg, "text") != 0) {
                fprintf(stderr, "quiverd: --log-format %s: want text or json\n", optarg);
                return 2;
            }
            break;
        case O_SLOW:
            if (parse_count("--slow-ms", optarg, 0, 86400000, &v)) return 2;
            g_slow_ms = (unsigned)v;
            break;
        case O_FORCE: force = 1; break;
        case O_CETCD: co.etcd_urls = optarg; break;
        case O_CNATS: co.nats_urls = optarg; break;
        case O_NODEID: co.node_id = optarg; break;
        case O_ADVERTISE: co.advertise = optarg; break;
        case O_NOSHARDS: co.no_shards = 1; break;
        case O_CKEY: cluster_key_file = optarg; break;
        case O_CCREDS: co.nats_creds = optarg; break;
        case O_CECA: co.etcd_ca = optarg; break;
        case O_CECERT: co.etcd_cert = optarg; break;
        case O_CEKEY: co.etcd_key = optarg; break;
        case O_CLOGREP:
            if (parse_count("--cluster-log-replicas", optarg, 1, 5, &v)) return 2;
            co.log_replicas = (int)v;
            break;
        case O_CTLSCA: cluster_tls_ca = optarg; break;
        case O_REPLACE:
            if (parse_count("--replace-after", optarg, 1, 86400 * 30, &v)) return 2;
            co.replace_after_s = (unsigned)v;
            break;
        case O_NOREBAL: co.no_rebalance = 1; rebalance_flag = 1; break;
        case O_REBAL:
            if (!optarg || !strcmp(optarg, "on")) {
                co.no_rebalance = 0;
            } else if (!strcmp(optarg, "off")) {
                co.no_rebalance = 1;
            } else {
                fprintf(stderr, "quiverd: --rebalance=%s: want on or off\n", optarg);
                return 2;
            }
            rebalance_flag = 1;
            break;
        case O_LOGMAX: {
            size_t b;
            if (parse_size(optarg, &b) || b < ((size_t)1 << 20)) {
                fprintf(stderr, "quiverd: --log-max-bytes %s: want a size of at least 1M, e.g. 20G\n", optarg);
                return 2;
            }
            co.log_max_bytes = (int64_t)b;
            break;
        }
        case O_CTHREADS:
            if (parse_count("--cluster-threads", optarg, 1, 256, &v)) return 2;
            co.threads = (unsigned)v;
            break;
        case O_GRACE:
            grace_ms = atoi(optarg);
            if (grace_ms < 0) {
                fprintf(stderr, "quiverd: --grace-ms %s: want 0 or more\n", optarg);
                return 2;
            }
            break;
        case O_LOG:
            if (!strcmp(optarg, "error")) qv_log_set_level(QV_LOG_ERROR);
            else if (!strcmp(optarg, "warn")) qv_log_set_level(QV_LOG_WARN);
            else if (!strcmp(optarg, "info")) qv_log_set_level(QV_LOG_INFO);
            else if (!strcmp(optarg, "debug")) qv_log_set_level(QV_LOG_DEBUG);
            else {
                fprintf(stderr, "quiverd: --log-level %s: want error, warn, info or debug\n", optarg);
                return 2;
            }
            break;
        case O_VERSION: printf("quiverd %s\n", QUIVER_VERSION); return 0;
        case 'h':
        case O_HELP: usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "quiverd: unexpected argument %s (see --help)\n", argv[optind]);
        return 2;
    }
    if ((tls_cert != NULL) != (tls_key != NULL) || (tls_ca && !tls_cert)) {
        fprintf(stderr, "quiverd: --tls-cert and --tls-key go together (and --tls-client-ca "
                        "with them)\n");
        return 2;
    }
    /* no keys: loopback only, unless asked for an open database; the port
     * asked for is kept, on the loopback address of the same family */
    char loop_listen[300];
    int rebound = 0;
    if (!auth_keys && !insecure_no_auth && !is_loopback(listen)) {
        const char *colon = strrchr(listen, ':');
        snprintf(loop_listen, sizeof loop_listen, "%s:%s", listen[0] == '[' ? "[::1]" : "127.0.0.1",
                 colon ? colon + 1 : "50051");
        listen = loop_listen;
        rebound = 1;
    }
    /* any cluster flag asks for cluster mode (and then for all it needs):
     * none is silently ignored on a single node */
    int clustered = co.etcd_urls || co.nats_urls || co.node_id || co.advertise || co.no_shards ||
                    cluster_key_file || cluster_tls_ca || co.nats_creds || co.etcd_ca || co.etcd_cert ||
                    co.etcd_key || co.log_replicas || co.threads || co.replace_after_s || rebalance_flag ||
                    co.log_max_bytes;
    if (clustered) {
        if (!co.etcd_urls || !co.nats_urls || !co.node_id || !co.advertise) {
            fprintf(stderr, "quiverd: cluster mode needs --cluster-etcd, --cluster-nats, --node-id and "
                            "--advertise together (see --help)\n");
            return 2;
        }
        size_t idl = strlen(co.node_id);
        if (idl == 0 || idl > QC_MAX_NODE_ID || strspn(co.node_id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklm"
                                                                   "nopqrstuvwxyz0123456789_.-") != idl) {
            fprintf(stderr, "quiverd: --node-id %s: use 1..%d of A-Z a-z 0-9 _ . -\n", co.node_id,
                    QC_MAX_NODE_ID);
            return 2;
        }
        if (restore) {
            fprintf(stderr, "quiverd: --restore restores a single node (cluster restores: issue 19)\n");
            return 2;
        }
    }
    if (force && !restore) {
        fprintf(stderr, "quiverd: --force goes with --restore\n");
        return 2;
    }
    if (restore) {
        char err[1024] = "";
        qv_backup_info bi;
        int rrc = qv_backup_restore(restore, data, force, &bi, err, sizeof err);
        if (rrc) {
            fprintf(stderr, "quiverd: restore refused: %s\n", err);
            return 1;
        }
        printf("restored %s into %s: %llu bytes, writes up to sequence number %llu; serve it "
               "with quiverd --data %s\n", restore, data, (unsigned long long)bi.size,
               (unsigned long long)bi.last_seq, data);
        return 0;
    }
    /* signals are taken by sigwait in rpc_serve: block them before any thread
     * (engine, gRPC, OpenMP) starts, so that every thread inherits the mask */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    char simd[32] = "unknown";
    int dd = 0;
    qv_db_simd_level(simd, sizeof simd, &dd);
    if (rebound)
        qv_warn("no --auth-keys: listening on %s only (loopback), so that nothing else can read "
                "or drop the collections; give --auth-keys FILE to serve beyond this machine, or "
                "--insecure-no-auth to serve it open", listen);
    qv_info("quiverd %s starting: data %s, listen %s, %s, BLAS core %s, FAISS %s SIMD %s (%s)",
            QUIVER_VERSION, data, listen,
            dbo.store.nosync ? "UNSAFE no fsync on commit" : "fsync on commit", blas_core(),
            QV_FAISS_VERSION, simd, dd ? "chosen at run time" : "compiled in");
    if (reflection_init() != 0) {
        qv_error("cannot parse the embedded descriptor set");
        return 1;
    }
    dbo.store.dir = data;
    dbo.store.map_size = map_size;
#ifdef QUIVER_TEST_HOOKS
    /* quiverd-test, the test build: fault injection from the environment
     * (quiverd itself never reads these) */
    const char *th;
    if ((th = getenv("QUIVER_TEST_FAIL_INDEX_UPDATE"))) dbo.test_fail_update = strtoul(th, NULL, 10);
    if ((th = getenv("QUIVER_TEST_WRITER_DELAY_MS")))
        dbo.test_writer_delay_ms = (unsigned)strtoul(th, NULL, 10);
    if ((th = getenv("QUIVER_TEST_EXACT_MAX"))) dbo.exact_max = strtoull(th, NULL, 10);
    if ((th = getenv("QUIVER_TEST_REBUILD_START_DELAY_MS")))
        g_test_rebuild_delay_ms = (unsigned)strtoul(th, NULL, 10);
    if ((th = getenv("QUIVER_TEST_REPLICA_OPEN_DELAY_MS"))) co.test_open_delay_ms = (unsigned)strtoul(th, NULL, 10);
    if ((th = getenv("QUIVER_TEST_PROMOTE_DELAY_MS"))) co.test_promote_delay_ms = (unsigned)strtoul(th, NULL, 10);
#endif
    g_version = QUIVER_VERSION;
    g_data_dir = data;
    int rc = qv_db_open(&dbo, &g_db);
    if (rc) {
        qv_error("cannot open data directory %s: %s", data, qv_strerror(rc));
        reflection_free();
        return 1;
    }
    grpc_init();
    g_max_reply = max_reply ? max_reply : max_msg;
    rpc_server_opts so = {.listen = listen,
                          .threads = threads,
                          .max_recv = (int)max_msg,
                          .grace_ms = grace_ms,
                          .auth_keys = auth_keys,
                          .methods = srv_methods,
                          .nmethods = srv_nmethods,
                          .call_begin = metrics_rpc_begin,
                          .call_end = metrics_rpc_end,
                          .serving = health_set_serving};
    char aerr[600];
    if (auth_keys && auth_load(auth_keys, aerr, sizeof aerr)) {
        qv_error("--auth-keys: %s", aerr);
        grpc_shutdown();
        qv_db_close(g_db);
        reflection_free();
        return 1;
    }
    if (tls_cert && !(so.creds = auth_tls_credentials(tls_cert, tls_key, tls_ca, aerr, sizeof aerr))) {
        qv_error("TLS: %s", aerr);
        grpc_shutdown();
        qv_db_close(g_db);
        reflection_free();
        return 1;
    }
    if (metrics_listen) { /* /metrics: from now until the calls are drained */
        char msimd[32] = "unknown", merr[600];
        int mdd = 0;
        qv_db_simd_level(msimd, sizeof msimd, &mdd);
        metrics_build mb = {QUIVER_VERSION, QUIVER_GIT_REVISION, QV_FAISS_VERSION, msimd, blas_core()};
        if (metrics_start(metrics_listen, &mb, srv_methods, srv_nmethods, merr, sizeof merr)) {
            qv_error("--metrics-listen: %s", merr);
            grpc_shutdown();
            qv_db_close(g_db);
            reflection_free();
            return 1;
        }
    }
    static char peer_key[512];
    if (clustered) {
        if (cluster_key_file) {
            FILE *kf = fopen(cluster_key_file, "r");
            if (!kf || !fgets(peer_key, sizeof peer_key, kf)) {
                qv_error("--cluster-key-file %s: cannot read a key from it", cluster_key_file);
                if (kf) fclose(kf);
                grpc_shutdown();
                qv_db_close(g_db);
                reflection_free();
                return 1;
            }
            fclose(kf);
            peer_key[strcspn(peer_key, "\r\n")] = 0;
            co.peer_key = peer_key;
        }
        co.peer_tls = tls_cert != NULL;
        co.peer_ca = cluster_tls_ca ? cluster_tls_ca : tls_ca;
        co.peer_cert = tls_cert;
        co.peer_keyfile = tls_key;
        co.db = g_db;
        co.local_call = rpc_call_local; /* this node's replicas: read in place */
        qr_set_max_k(g_max_k);
        char cerr[1024] = "";
        if (qc_open(&co, &g_cluster, cerr, sizeof cerr)) {
            qv_error("cannot join the cluster: %s", cerr);
            grpc_shutdown();
            qv_db_close(g_db);
            reflection_free();
            return 1;
        }
        qc_controller_start(g_cluster);
    }
    int exit_code = rpc_serve(&so);
    metrics_stop(); /* first: a scrape reads g_cluster */
    qc_close(g_cluster); /* the replicas' appliers stop before the engine closes */
    g_cluster = NULL;
    grpc_shutdown();
    qv_db_close(g_db);
    reflection_free();
    qv_info("quiverd stopped%s", exit_code ? " with errors" : "");
    return exit_code;
}
