/*
 * Prometheus metrics of quiverd (server/metrics.h): lock-free counters fed by
 * the gRPC workers, engine and process gauges read at scrape time, rendered
 * in the text exposition format (version 0.0.4) and served at /metrics by
 * libmicrohttpd's own polling thread. In cluster mode also this node's shard
 * replicas (applied log sequence, lag and state), its controller role and the
 * replica moves (cluster/cluster.h). Not a general HTTP server: every other
 * path is 404, every method but GET/HEAD 405.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "quiver/db.h"
#include "quiver/log.h"
#include "cluster.h"
#include "metrics.h"
#include "rpc.h"
#include "services.h"

/* ------------------------------------------------------- RPC counters */
/* Rows: 0 = methods quiverd does not serve ("unknown"), 1 + m = method m of
 * the table given to metrics_start. Fixed size so that the hot path is a few
 * relaxed atomic adds; metrics_start refuses a table larger than this. */
#define MAX_METHODS 63
#define ROWS (MAX_METHODS + 1)
#define NCODES 17 /* gRPC status codes 0..16 */

/* Latency buckets (seconds); the last, +Inf, is implicit. */
static const double g_lat_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                      0.1,    0.25,  0.5,    1,     2.5,  5,     10};
#define NLAT ((int)(sizeof g_lat_bounds / sizeof g_lat_bounds[0]) + 1)

static _Atomic uint64_t g_calls[ROWS][NCODES];
static _Atomic uint64_t g_lat[ROWS][NLAT];  /* per bucket, not cumulative */
static _Atomic uint64_t g_lat_ns[ROWS];     /* sum of latencies, nanoseconds */
static _Atomic int64_t g_inflight[ROWS];

static const char *const g_code_names[NCODES] = {
    "OK",                 "CANCELLED",          "UNKNOWN",           "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",  "NOT_FOUND",          "ALREADY_EXISTS",    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",          "OUT_OF_RANGE",
    "UNIMPLEMENTED",      "INTERNAL",           "UNAVAILABLE",       "DATA_LOSS",
    "UNAUTHENTICATED"};

static int row_of(int method)
{
    return method >= 0 && method < MAX_METHODS ? method + 1 : 0;
}

void metrics_rpc_begin(int method)
{
    atomic_fetch_add_explicit(&g_inflight[row_of(method)], 1, memory_order_relaxed);
}

void metrics_rpc_end(int method, int code, double seconds)
{
    int r = row_of(method);
    if (code < 0 || code >= NCODES) code = 2; /* UNKNOWN */
    if (!(seconds >= 0)) seconds = 0;         /* NaN or a clock step back */
    int b = 0;
    while (b < NLAT - 1 && seconds > g_lat_bounds[b]) b++;
    atomic_fetch_add_explicit(&g_calls[r][code], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&g_lat[r][b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&g_lat_ns[r], (uint64_t)(seconds * 1e9), memory_order_relaxed);
    atomic_fetch_sub_explicit(&g_inflight[r], 1, memory_order_relaxed);
}

/* ------------------------------------------------------- text builder */
typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static int sb_reserve(sbuf *b, size_t more)
{
    if (b->oom) return -1;
    if (b->len + more + 1 <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 16384;
    while (cap < b->len + more + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    for (int pass = 0; pass < 2; pass++) {
        if (sb_reserve(b, pass ? 0 : 256)) return;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        if (sb_reserve(b, (size_t)n)) return;
    }
}

/* A label value into out (outlen bytes, truncated): backslash, double quote
 * and line feed escaped. */
static void escape_into(char *out, size_t outlen, const char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n && s[i] && o + 3 < outlen; i++) {
        if (s[i] == '\\' || s[i] == '"' || s[i] == '\n') out[o++] = '\\';
        out[o++] = s[i] == '\n' ? 'n' : s[i];
    }
    out[o] = 0;
}

/* A label value (ours are short: names, phases, versions). */
static void sb_label(sbuf *b, const char *s)
{
    char t[1024];
    escape_into(t, sizeof t, s, strlen(s));
    sb_printf(b, "%s", t);
}

/* "# HELP" and "# TYPE" of a family (help is ours: nothing to escape). */
static void sb_family(sbuf *b, const char *name, const char *type, const char *help)
{
    sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A bucket bound or sample value in the exposition's float syntax. */
static const char *fmt_num(char *out, size_t n, double v)
{
    if (isinf(v)) snprintf(out, n, v > 0 ? "+Inf" : "-Inf");
    else if (isnan(v)) snprintf(out, n, "NaN");
    else if (v == floor(v) && fabs(v) < 9007199254740992.0) snprintf(out, n, "%.0f", v);
    else snprintf(out, n, "%.17g", v);
    /* the shortest exact form reads better: retry with fewer digits */
    for (int prec = 1; prec < 17 && isfinite(v) && v != floor(v); prec++) {
        char t[40];
        snprintf(t, sizeof t, "%.*g", prec, v);
        if (strtod(t, NULL) == v) {
            snprintf(out, n, "%s", t);
            break;
        }
    }
    return out;
}

/* Histogram samples of one series. labels: `key="value",` pairs already
 * escaped, ending in a comma, or "". hist: per bucket (not cumulative), the
 * last one +Inf. */
static void sb_histogram(sbuf *b, const char *name, const char *labels, const double *bounds,
                         const uint64_t *hist, int nb, double sum)
{
    uint64_t cum = 0;
    char le[40], sv[40];
    for (int i = 0; i < nb; i++) {
        cum += hist[i];
        sb_printf(b, "%s_bucket{%sle=\"%s\"} %llu\n", name, labels,
                  i == nb - 1 ? "+Inf" : fmt_num(le, sizeof le, bounds[i]), (unsigned long long)cum);
    }
    size_t ll = strlen(labels);
    /* the labels without their trailing comma */
    sb_printf(b, "%s_sum%s%.*s%s %s\n", name, ll ? "{" : "", (int)(ll ? ll - 1 : 0), labels,
              ll ? "}" : "", fmt_num(sv, sizeof sv, sum));
    sb_printf(b, "%s_count%s%.*s%s %llu\n", name, ll ? "{" : "", (int)(ll ? ll - 1 : 0), labels,
              ll ? "}" : "", (unsigned long long)cum);
}

/* ------------------------------------------------------------- state */
static struct MHD_Daemon *g_mhd;
static int g_port;
static const rpc_method *g_methods; /* row labels: metrics_start's table */
static int g_nmethods;
static char g_build[5][128]; /* version, git revision, FAISS version, SIMD level, BLAS core */
static double g_start_time;  /* process start, unix seconds */

/* service and method labels of a row: "/quiver.v1.Search/Search" ->
 * `service="quiver.v1.Search",method="Search"` */
static void method_labels(char *out, size_t outlen, int row)
{
    const char *path = row && row - 1 < g_nmethods ? g_methods[row - 1].path : NULL;
    const char *slash = path && path[0] == '/' ? strrchr(path, '/') : NULL;
    if (!slash || slash == path) {
        snprintf(out, outlen, "service=\"unknown\",method=\"unknown\"");
        return;
    }
    char svc[256], meth[256];
    escape_into(svc, sizeof svc, path + 1, (size_t)(slash - path - 1));
    escape_into(meth, sizeof meth, slash + 1, strlen(slash + 1));
    snprintf(out, outlen, "service=\"%s\",method=\"%s\"", svc, meth);
}

static void render_rpc(sbuf *b)
{
    int rows = g_nmethods + 1;
    if (rows > ROWS) rows = ROWS;
    /* one snapshot of every counter, then the text */
    uint64_t calls[ROWS][NCODES], lat[ROWS][NLAT], ns[ROWS];
    int64_t infl[ROWS];
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < NCODES; c++)
            calls[r][c] = atomic_load_explicit(&g_calls[r][c], memory_order_relaxed);
        for (int i = 0; i < NLAT; i++)
            lat[r][i] = atomic_load_explicit(&g_lat[r][i], memory_order_relaxed);
        ns[r] = atomic_load_explicit(&g_lat_ns[r], memory_order_relaxed);
        infl[r] = atomic_load_explicit(&g_inflight[r], memory_order_relaxed);
    }
    /* served methods are always shown (OK from 0, so that rate() sees the first
     * call); the unknown row and other codes once they have counts */
    uint64_t unknown_calls = 0;
    for (int c = 0; c < NCODES; c++) unknown_calls += calls[0][c];
    int first = unknown_calls > 0 || infl[0] != 0 ? 0 : 1;
    char lb[600], lbc[604];

    sb_family(b, "quiver_rpc_requests_total", "counter",
              "gRPC calls finished, by service, method and status code.");
    for (int r = first; r < rows; r++) {
        method_labels(lb, sizeof lb, r);
        for (int c = 0; c < NCODES; c++)
            if (calls[r][c] || (r > 0 && c == 0))
                sb_printf(b, "quiver_rpc_requests_total{%s,code=\"%s\"} %llu\n", lb,
                          g_code_names[c], (unsigned long long)calls[r][c]);
    }
    sb_family(b, "quiver_rpc_duration_seconds", "histogram",
              "gRPC call latency from taking the call in to its end, by service and method.");
    for (int r = first; r < rows; r++) {
        method_labels(lb, sizeof lb, r);
        snprintf(lbc, sizeof lbc, "%s,", lb);
        sb_histogram(b, "quiver_rpc_duration_seconds", lbc, g_lat_bounds, lat[r], NLAT,
                     (double)ns[r] / 1e9);
    }
    sb_family(b, "quiver_rpc_in_flight", "gauge",
              "gRPC calls taken in and not yet finished, by service and method.");
    for (int r = first; r < rows; r++) {
        method_labels(lb, sizeof lb, r);
        sb_printf(b, "quiver_rpc_in_flight{%s} %lld\n", lb, (long long)infl[r]);
    }
}

static void render_engine(sbuf *b, qv_db *db)
{
    qv_db_stats s;
    qv_db_stats_get(db, &s);
    sb_family(b, "quiver_write_queue_bytes", "gauge",
              "Memory of writes queued for the writer thread and being applied.");
    sb_printf(b, "quiver_write_queue_bytes %zu\n", s.queued_bytes);
    sb_family(b, "quiver_write_pending_bytes", "gauge",
              "Memory of write calls taken in and not yet submitted to the writer.");
    sb_printf(b, "quiver_write_pending_bytes %zu\n", s.pending_bytes);
    sb_family(b, "quiver_group_commits_total", "counter",
              "Group commits: one LMDB transaction and fsync each.");
    sb_printf(b, "quiver_group_commits_total %llu\n", (unsigned long long)s.commits);
    sb_family(b, "quiver_commit_duration_seconds", "histogram",
              "Duration of a group commit's LMDB commit (fsync included).");
    sb_histogram(b, "quiver_commit_duration_seconds", "", qv_commit_bounds, s.commit_hist,
                 QV_COMMIT_BUCKETS, s.commit_seconds);
    sb_family(b, "quiver_commit_batch_writes", "histogram",
              "Write requests (upserts, deletes, creates, drops) per group commit.");
    sb_histogram(b, "quiver_commit_batch_writes", "", qv_batch_bounds, s.batch_hist,
                 QV_BATCH_BUCKETS, (double)s.batch_writes);
    sb_family(b, "quiver_items_written_total", "counter",
              "Items upserted or deleted by committed writes.");
    sb_printf(b, "quiver_items_written_total %llu\n", (unsigned long long)s.items_written);
    sb_family(b, "quiver_lmdb_map_size_bytes", "gauge",
              "LMDB map size: the most the data may grow to (--map-size).");
    sb_printf(b, "quiver_lmdb_map_size_bytes %zu\n", s.map_size);
    sb_family(b, "quiver_lmdb_used_bytes", "gauge", "Bytes of the LMDB map in use.");
    sb_printf(b, "quiver_lmdb_used_bytes %zu\n", s.map_used);
}

static const char *metric_name(qv_metric m)
{
    switch (m) {
    case QV_METRIC_L2: return "l2";
    case QV_METRIC_IP: return "inner_product";
    case QV_METRIC_COSINE: return "cosine";
    }
    return "unknown";
}

/* Recall@10 at the default nprobe: the calibration point at that nprobe (or
 * the largest one below it); exact search is 1; -1 when unknown. */
static double default_recall(const qv_coll_info *in)
{
    if (in->params.kind == QV_KIND_FLAT) return 1;
    double best = -1;
    uint32_t at = 0;
    for (size_t i = 0; i < in->n_recall && i < QV_MAX_RECALL_POINTS; i++)
        if (in->recall[i].nprobe <= in->nprobe && in->recall[i].nprobe >= at) {
            at = in->recall[i].nprobe;
            best = in->recall[i].recall;
        }
    return best;
}

static void coll_label(sbuf *b, const qv_coll_info *in)
{
    sb_printf(b, "collection=\"");
    sb_label(b, in->config.name);
    sb_printf(b, "\"");
}

/* One gauge family with a value per collection. */
static void render_coll_gauge(sbuf *b, const qv_coll_info *in, size_t n, const char *name,
                              const char *help, double (*get)(const qv_coll_info *))
{
    char v[40];
    sb_family(b, name, "gauge", help);
    for (size_t i = 0; i < n; i++) {
        double x = get(&in[i]);
        if (x < 0) continue;
        sb_printf(b, "%s{", name);
        coll_label(b, &in[i]);
        sb_printf(b, "} %s\n", fmt_num(v, sizeof v, x));
    }
}

static double g_items(const qv_coll_info *in) { return (double)in->count; }
static double g_indexed(const qv_coll_info *in) { return (double)in->indexed; }
static double g_dim(const qv_coll_info *in) { return in->config.dim; }
static double g_nlist(const qv_coll_info *in)
{
    return in->params.kind == QV_KIND_FLAT || in->params.kind == QV_KIND_AUTO ? 0 : in->params.nlist;
}
static double g_nprobe(const qv_coll_info *in) { return in->nprobe; }
static double g_trained_for(const qv_coll_info *in) { return (double)in->trained_for; }
static double g_attr_cache(const qv_coll_info *in) { return (double)in->attr_cache_bytes; }
static double g_recall(const qv_coll_info *in) { return default_recall(in); }
static double g_rebuilding(const qv_coll_info *in) { return in->rebuilding ? 1 : 0; }
static double g_rb_done(const qv_coll_info *in) { return in->rebuilding ? (double)in->done : 0; }
static double g_rb_steps(const qv_coll_info *in) { return in->rebuilding ? (double)in->total : 0; }

static void render_collections(sbuf *b, qv_db *db)
{
    qv_coll **cs = NULL;
    size_t n = 0;
    if (qv_db_coll_list(db, &cs, &n)) return;
    qv_coll_info *in = n ? calloc(n, sizeof *in) : NULL;
    for (size_t i = 0; i < n; i++) {
        if (in) qv_coll_info_get(cs[i], &in[i]);
        qv_coll_release(cs[i]);
    }
    free(cs);
    if (n && !in) {
        b->oom = 1;
        return;
    }
    sb_family(b, "quiver_collections", "gauge", "Collections.");
    sb_printf(b, "quiver_collections %zu\n", n);
    sb_family(b, "quiver_collection_info", "gauge",
              "A collection's index kind in use (none before its first build) and metric; "
              "always 1.");
    for (size_t i = 0; i < n; i++) {
        sb_printf(b, "quiver_collection_info{");
        coll_label(b, &in[i]);
        sb_printf(b, ",kind=\"%s\",metric=\"%s\"} 1\n",
                  in[i].params.kind == QV_KIND_AUTO ? "none" : qv_index_kind_name(in[i].params.kind),
                  metric_name(in[i].config.metric));
    }
    render_coll_gauge(b, in, n, "quiver_collection_items", "Live items of a collection.", g_items);
    render_coll_gauge(b, in, n, "quiver_collection_indexed_items",
                      "Items in a collection's live index.", g_indexed);
    render_coll_gauge(b, in, n, "quiver_collection_dimensions", "Vector dimension of a collection.",
                      g_dim);
    render_coll_gauge(b, in, n, "quiver_collection_nlist",
                      "IVF lists of a collection's index (0: exact search).", g_nlist);
    render_coll_gauge(b, in, n, "quiver_collection_default_nprobe",
                      "Lists a search probes by default (calibrated for recall 0.95; 0: exact).",
                      g_nprobe);
    render_coll_gauge(b, in, n, "quiver_collection_trained_for_items",
                      "Collection size when its index was trained.", g_trained_for);
    render_coll_gauge(b, in, n, "quiver_collection_attr_cache_bytes",
                      "Memory holding a collection's attributes for search hits (--attr-cache).",
                      g_attr_cache);
    render_coll_gauge(b, in, n, "quiver_collection_calibrated_recall",
                      "Calibrated recall@10 at the default nprobe (1: exact search).", g_recall);
    render_coll_gauge(b, in, n, "quiver_collection_rebuilding",
                      "1 while an index rebuild of the collection runs or waits.", g_rebuilding);
    sb_family(b, "quiver_collection_rebuild_phase", "gauge",
              "Phase of a running rebuild (queued, sampling, training, adding, saving, "
              "catching_up, done); 1 for the current one.");
    for (size_t i = 0; i < n; i++) {
        if (!in[i].rebuilding) continue;
        sb_printf(b, "quiver_collection_rebuild_phase{");
        coll_label(b, &in[i]);
        sb_printf(b, ",phase=\"");
        sb_label(b, in[i].phase);
        sb_printf(b, "\"} 1\n");
    }
    render_coll_gauge(b, in, n, "quiver_collection_rebuild_steps_done",
                      "Steps of the running rebuild phase done (vectors sampled, trained or "
                      "added; writes caught up).", g_rb_done);
    render_coll_gauge(b, in, n, "quiver_collection_rebuild_steps",
                      "Steps of the running rebuild phase in all.", g_rb_steps);
    free(in);
}

/* ------------------------------------------------------------- cluster */
/* This node's replicas, gathered by qc_local_replicas (which asks the log for
 * each shard's last sequence: one NATS request each, on this thread). */
typedef struct replica_row {
    char *collection;
    uint32_t shard;
    qc_state state;
    uint64_t applied, last;
} replica_row;

typedef struct replica_rows {
    replica_row *r;
    size_t n, cap;
    int oom;
} replica_rows;

static void collect_replica(void *ctx, const qc_replica_info *ri)
{
    replica_rows *rs = ctx;
    if (rs->oom) return;
    if (rs->n == rs->cap) {
        size_t cap = rs->cap ? 2 * rs->cap : 16;
        replica_row *r = realloc(rs->r, cap * sizeof *r);
        if (!r) {
            rs->oom = 1;
            return;
        }
        rs->r = r;
        rs->cap = cap;
    }
    replica_row *row = &rs->r[rs->n];
    if (!(row->collection = strdup(ri->collection ? ri->collection : ""))) {
        rs->oom = 1;
        return;
    }
    row->shard = ri->shard;
    row->state = ri->state;
    row->applied = ri->applied_seq;
    row->last = ri->log_last_seq;
    rs->n++;
}

/* `collection="...",shard="N"` of a row. */
static void replica_labels(sbuf *b, const replica_row *r)
{
    sb_printf(b, "collection=\"");
    sb_label(b, r->collection);
    sb_printf(b, "\",shard=\"%u\"", r->shard);
}

static void render_cluster(sbuf *b, qc_cluster *c)
{
    static const char *const states[3] = {"active", "catching_up", "down"};
    sb_family(b, "quiver_cluster_node_info", "gauge", "This node's id in the cluster; always 1.");
    sb_printf(b, "quiver_cluster_node_info{node=\"");
    sb_label(b, qc_node_id(c));
    sb_printf(b, "\"} 1\n");
    qc_ctl_stats cs;
    qc_controller_stats(c, &cs);
    sb_family(b, "quiver_cluster_controller", "gauge",
              "1 when this node is the cluster's controller (it places and moves replicas), "
              "else 0.");
    sb_printf(b, "quiver_cluster_controller{node=\"");
    sb_label(b, qc_node_id(c));
    sb_printf(b, "\"} %d\n", cs.is_controller ? 1 : 0);
    sb_family(b, "quiver_cluster_moves_started_total", "counter",
              "Replicas this node placed while controller (new, moved or replacing a lost one).");
    sb_printf(b, "quiver_cluster_moves_started_total %llu\n", (unsigned long long)cs.moves_started);
    sb_family(b, "quiver_cluster_moves_in_progress", "gauge",
              "Replicas marked leaving in the shard map now (being moved off their node); "
              "the cluster's count, the same on every node.");
    sb_printf(b, "quiver_cluster_moves_in_progress %llu\n", (unsigned long long)cs.moves_in_progress);
    sb_family(b, "quiver_cluster_snapshot_bytes_total", "counter",
              "Snapshot bytes this node received and installed for its new replicas.");
    sb_printf(b, "quiver_cluster_snapshot_bytes_total %llu\n", (unsigned long long)cs.snapshot_bytes);
    replica_rows rs = {0};
    qc_local_replicas(c, collect_replica, &rs);
    if (rs.oom) b->oom = 1;
    sb_family(b, "quiver_cluster_replica_applied_seq", "gauge",
              "Last log sequence this node's replica of a shard has applied.");
    for (size_t i = 0; i < rs.n; i++) {
        sb_printf(b, "quiver_cluster_replica_applied_seq{");
        replica_labels(b, &rs.r[i]);
        sb_printf(b, "} %llu\n", (unsigned long long)rs.r[i].applied);
    }
    sb_family(b, "quiver_cluster_replica_lag", "gauge",
              "Log entries of a shard this node's replica has not applied yet (the log's last "
              "sequence minus the applied one; 0 when the log did not answer).");
    for (size_t i = 0; i < rs.n; i++) {
        const replica_row *r = &rs.r[i];
        sb_printf(b, "quiver_cluster_replica_lag{");
        replica_labels(b, r);
        sb_printf(b, "} %llu\n", (unsigned long long)(r->last > r->applied ? r->last - r->applied : 0));
    }
    sb_family(b, "quiver_cluster_replica_state", "gauge",
              "State of this node's replica of a shard in the shard map (active, catching_up, "
              "down); 1 for the current one.");
    for (size_t i = 0; i < rs.n; i++)
        for (int s = 0; s < 3; s++) {
            sb_printf(b, "quiver_cluster_replica_state{");
            replica_labels(b, &rs.r[i]);
            sb_printf(b, ",state=\"%s\"} %d\n", states[s], (int)rs.r[i].state == s);
        }
    for (size_t i = 0; i < rs.n; i++) free(rs.r[i].collection);
    free(rs.r);
}

/* /proc/self/stat fields from the third on (after the command's ')'). */
static int proc_stat(char fields[][24], int want)
{
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f) return -1;
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = 0;
    char *p = strrchr(buf, ')');
    if (!p) return -1;
    p++;
    int i = 0;
    for (char *save = NULL, *t = strtok_r(p, " \n", &save); t && i < want;
         t = strtok_r(NULL, " \n", &save))
        snprintf(fields[i++], 24, "%s", t);
    return i == want ? 0 : -1;
}

static double process_start_time(void)
{
    char f[20][24];
    if (proc_stat(f, 20)) return 0;
    double ticks = (double)sysconf(_SC_CLK_TCK);
    unsigned long long start = strtoull(f[19], NULL, 10), btime = 0;
    FILE *s = fopen("/proc/stat", "r");
    if (!s) return 0;
    char line[256];
    while (fgets(line, sizeof line, s))
        if (sscanf(line, "btime %llu", &btime) == 1) break;
    fclose(s);
    return btime && ticks > 0 ? (double)btime + (double)start / ticks : 0;
}

static void render_process(sbuf *b)
{
    char f[22][24], v[40];
    if (!proc_stat(f, 22)) {
        double ticks = (double)sysconf(_SC_CLK_TCK);
        long page = sysconf(_SC_PAGESIZE);
        double cpu = (double)(strtoull(f[11], NULL, 10) + strtoull(f[12], NULL, 10)) / ticks;
        sb_family(b, "process_cpu_seconds_total", "counter", "User and system CPU time spent.");
        sb_printf(b, "process_cpu_seconds_total %s\n", fmt_num(v, sizeof v, cpu));
        sb_family(b, "process_resident_memory_bytes", "gauge", "Resident memory size.");
        sb_printf(b, "process_resident_memory_bytes %llu\n",
                  strtoull(f[21], NULL, 10) * (unsigned long long)page);
        sb_family(b, "process_virtual_memory_bytes", "gauge", "Virtual memory size.");
        sb_printf(b, "process_virtual_memory_bytes %s\n", f[20]);
        sb_family(b, "process_threads", "gauge", "Threads of the process.");
        sb_printf(b, "process_threads %s\n", f[17]);
    }
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        long nfd = 0;
        struct dirent *e;
        while ((e = readdir(d)))
            if (e->d_name[0] != '.') nfd++;
        closedir(d);
        sb_family(b, "process_open_fds", "gauge", "Open file descriptors.");
        sb_printf(b, "process_open_fds %ld\n", nfd - 1); /* less the listing's own */
    }
    struct rlimit rl;
    if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur != RLIM_INFINITY) {
        sb_family(b, "process_max_fds", "gauge", "Limit of open file descriptors.");
        sb_printf(b, "process_max_fds %llu\n", (unsigned long long)rl.rlim_cur);
    }
    if (g_start_time > 0) {
        sb_family(b, "process_start_time_seconds", "gauge",
                  "Start time of the process since the Unix epoch.");
        sb_printf(b, "process_start_time_seconds %s\n", fmt_num(v, sizeof v, g_start_time));
    }
}

static void render_build(sbuf *b)
{
    static const char *const keys[5] = {"version", "git_revision", "faiss_version", "simd_level",
                                        "blas_core"};
    sb_family(b, "quiver_build_info", "gauge",
              "quiverd's version and git revision, the FAISS version and SIMD level its kernels "
              "run with, the OpenBLAS core; always 1.");
    sb_printf(b, "quiver_build_info{");
    for (int i = 0; i < 5; i++) {
        sb_printf(b, "%s%s=\"", i ? "," : "", keys[i]);
        sb_label(b, g_build[i]);
        sb_printf(b, "\"");
    }
    sb_printf(b, "} 1\n");
}

/* The whole exposition into b. */
static void render(sbuf *b)
{
    render_build(b);
    render_rpc(b);
    qv_db *db = g_db;
    if (db) {
        render_engine(b, db);
        render_collections(b, db);
    }
    qc_cluster *c = g_cluster; /* set once the node joined; cleared after metrics_stop */
    if (c) render_cluster(b, c);
    render_process(b);
}

/* ------------------------------------------------------------- HTTP */
static enum MHD_Result reply_text(struct MHD_Connection *conn, unsigned status, const char *text)
{
    struct MHD_Response *rs =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
    if (!rs) return MHD_NO;
    MHD_add_response_header(rs, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED) MHD_add_response_header(rs, "Allow", "GET, HEAD");
    enum MHD_Result ret = MHD_queue_response(conn, status, rs);
    MHD_destroy_response(rs);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size, void **con_cls)
{
    (void)cls, (void)version, (void)upload_data;
    static int first_call_seen;
    if (!*con_cls) { /* headers only so far: answer once the request is whole */
        *con_cls = &first_call_seen;
        return MHD_YES;
    }
    if (*upload_data_size) { /* a body we do not want */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
        return reply_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed: GET /metrics\n");
    if (strcmp(url, "/metrics"))
        return reply_text(conn, MHD_HTTP_NOT_FOUND, "not found: quiverd serves /metrics\n");
    sbuf b = {0};
    render(&b);
    if (b.oom || !b.p) {
        free(b.p);
        return reply_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    }
    struct MHD_Response *rs = MHD_create_response_from_buffer(b.len, b.p, MHD_RESPMEM_MUST_FREE);
    if (!rs) {
        free(b.p);
        return MHD_NO;
    }
    MHD_add_response_header(rs, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8");
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, rs);
    MHD_destroy_response(rs);
    return ret;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = 0;
    qv_warn("metrics http: %s", msg);
}

/* Split "HOST:PORT" / "[V6]:PORT" into host (empty = every interface) and port. */
static int split_addr(const char *addr, char *host, size_t hlen, char *port, size_t plen)
{
    const char *colon;
    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (!close || close[1] != ':') return -1;
        snprintf(host, hlen, "%.*s", (int)(close - addr - 1), addr + 1);
        colon = close + 1;
    } else {
        colon = strrchr(addr, ':');
        if (!colon || memchr(addr, ':', (size_t)(colon - addr))) return -1;
        snprintf(host, hlen, "%.*s", (int)(colon - addr), addr);
    }
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (!colon[1] || *end || errno || p < 0 || p > 65535) return -1;
    snprintf(port, plen, "%ld", p);
    return 0;
}

int metrics_start(const char *addr, const metrics_build *bi, const rpc_method *methods,
                  int nmethods, char *err, size_t errlen)
{
    if (g_mhd) {
        snprintf(err, errlen, "metrics already serving on port %d", g_port);
        return -1;
    }
    if (nmethods > MAX_METHODS) {
        snprintf(err, errlen, "%d gRPC methods, metrics count at most %d", nmethods, MAX_METHODS);
        return -1;
    }
    g_methods = methods;
    g_nmethods = nmethods;
    const char *vals[5] = {bi ? bi->version : NULL, bi ? bi->git_revision : NULL,
                           bi ? bi->faiss_version : NULL, bi ? bi->simd_level : NULL,
                           bi ? bi->blas_core : NULL};
    for (int i = 0; i < 5; i++)
        snprintf(g_build[i], sizeof g_build[i], "%s", vals[i] && *vals[i] ? vals[i] : "unknown");
    g_start_time = process_start_time();

    char host[256], port[8];
    if (split_addr(addr, host, sizeof host, port, sizeof port)) {
        snprintf(err, errlen, "--metrics-listen %s: want HOST:PORT (e.g. 127.0.0.1:9090, "
                 "0.0.0.0:9090, [::1]:9090)", addr);
        return -1;
    }
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int gai = getaddrinfo(*host ? host : NULL, port, &hints, &ai);
    if (gai || !ai) {
        snprintf(err, errlen, "--metrics-listen %s: %s", addr, gai ? gai_strerror(gai) : "no address");
        return -1;
    }
    /* IPv4 first when a name has both (localhost) */
    struct addrinfo *pick = ai;
    for (struct addrinfo *a = ai; a; a = a->ai_next)
        if (a->ai_family == AF_INET) {
            pick = a;
            break;
        }
    struct sockaddr_storage sa;
    memset(&sa, 0, sizeof sa);
    memcpy(&sa, pick->ai_addr, pick->ai_addrlen);
    int v6 = pick->ai_family == AF_INET6;
    freeaddrinfo(ai);

    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
#ifdef MHD_USE_AUTO
    flags |= MHD_USE_AUTO;
#endif
    if (v6) flags |= MHD_USE_IPv6;
    errno = 0;
    g_mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, NULL,
                             MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL, /* first: MHD's rule */
                             MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                             MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
                             MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
                             MHD_OPTION_END);
    if (!g_mhd) {
        snprintf(err, errlen, "cannot serve metrics on %s: %s", addr,
                 errno ? strerror(errno) : "libmicrohttpd refused to start");
        return -1;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(g_mhd, MHD_DAEMON_INFO_LISTEN_FD);
    struct sockaddr_storage bound;
    socklen_t bl = sizeof bound;
    g_port = 0;
    if (di && !getsockname(di->listen_fd, (struct sockaddr *)&bound, &bl))
        g_port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                   : ((struct sockaddr_in *)&bound)->sin_port);
    qv_info("metrics on http://%s%s%s:%d/metrics", v6 ? "[" : "", *host ? host : "0.0.0.0",
            v6 ? "]" : "", g_port);
    return 0;
}

void metrics_stop(void)
{
    if (!g_mhd) return;
    MHD_stop_daemon(g_mhd);
    g_mhd = NULL;
    g_port = 0;
}
