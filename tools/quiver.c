/*
 * quiver: the admin command line of a Quiver server. Collections (list,
 * create, describe, drop), index rebuild with live progress and index status,
 * one search, and the health check; aligned tables for people, --json for
 * scripts, exit codes that say what went wrong. It talks to the server only
 * through the qvc client library (client.h). Not a bulk loader: that is
 * quiver-import.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <grpc/status.h>

#include "client.h"
#include "grpc/health/v1/health.pb-c.h"
#include "quiver/v1/quiver.pb-c.h"

/* Exit codes (documented in the top-level usage). */
enum {
    EXIT_OK = 0,
    EXIT_USAGE = 2,
    EXIT_UNAVAILABLE = 3,
    EXIT_NOT_FOUND = 4,
    EXIT_REJECTED = 5,
    EXIT_SERVER = 6,
    EXIT_INTERRUPTED = 130,
};

#define DEFAULT_ADDR "127.0.0.1:50051"
#define CONNECT_TIMEOUT_MS 5000

/* ------------------------------------------------------------------ usage */
static const char usage_top[] =
    "Usage: quiver [--addr HOST:PORT] [--json] [--timeout SECONDS] COMMAND ...\n"
    "\n"
    "Administer a Quiver vector-search server.\n"
    "\n"
    "Commands:\n"
    "  health [--service NAME]          check that the server is serving\n"
    "  collections list                 list the collections\n"
    "  collections create NAME --dim N  create a collection (see its --help)\n"
    "  collections describe NAME        show a collection and its index\n"
    "  collections drop NAME            delete a collection and all its items\n"
    "  index rebuild COLLECTION         rebuild an index, with live progress\n"
    "  index status COLLECTION          show the state of a collection's index\n"
    "  search COLLECTION (--id N | --vector X,Y,...)\n"
    "                                   nearest neighbours of an item or a vector\n"
    "\n"
    "Global options (accepted anywhere on the command line):\n"
    "  --addr HOST:PORT   server address (default: $QUIVER_ADDR, else " DEFAULT_ADDR ")\n"
    "  --json             print one JSON document instead of tables\n"
    "  --timeout SECONDS  deadline of each request (default 60; index rebuild has none)\n"
    "  -h, --help         show this help; 'quiver COMMAND --help' shows a command's\n"
    "\n"
    "Exit codes:\n"
    "  0    success\n"
    "  2    usage error (bad flags or arguments)\n"
    "  3    cannot connect / server unavailable (UNAVAILABLE, or no connection\n"
    "       within 5 s)\n"
    "  4    not found (NOT_FOUND: unknown collection or item)\n"
    "  5    request rejected (INVALID_ARGUMENT, ALREADY_EXISTS, FAILED_PRECONDITION,\n"
    "       OUT_OF_RANGE), e.g. a bad dimension or a rebuild already running\n"
    "  6    other server error (INTERNAL, RESOURCE_EXHAUSTED, ...; health: not serving)\n"
    "  130  cancelled with Ctrl-C\n"
    "Errors go to stderr as \"quiver: STATUS: message\" (with --json too; stdout then\n"
    "stays empty).\n";

static const char usage_health[] =
    "Usage: quiver health [--service NAME]\n"
    "\n"
    "Ask the server's grpc.health.v1 service whether it is serving. Exits 0 when\n"
    "SERVING, 6 when not, 4 for an unknown service.\n"
    "\n"
    "  --service NAME   a service such as quiver.v1.Search (default: the server)\n";

static const char usage_collections[] =
    "Usage: quiver collections SUBCOMMAND ...\n"
    "\n"
    "  list                   list the collections\n"
    "  create NAME --dim N    create a collection\n"
    "  describe NAME          show a collection and its index\n"
    "  drop NAME              delete a collection and all its items\n"
    "\n"
    "'quiver collections SUBCOMMAND --help' shows the options of each.\n";

static const char usage_coll_list[] =
    "Usage: quiver collections list\n"
    "\n"
    "List the collections: name, dimension, metric, items, index kind.\n";

#define INDEX_OPTIONS_HELP                                                                  \
    "  --kind KIND      auto, flat, ivf_flat, ivf_pq, ivf_pq_fs (4-bit fast-scan PQ)\n"   \
    "                   or ivf_sq8 (default auto)\n"                                       \
    "  --nlist N        IVF lists (0: chosen from the item count)\n"                        \
    "  --pq-m N         ivf_pq, ivf_pq_fs: sub-quantizers, must divide the dimension\n"    \
    "  --pq-nbits N     ivf_pq: bits per code (default 8; ivf_pq_fs: 4)\n"                 \
    "  --refine N       ivf_pq, ivf_pq_fs, ivf_sq8: re-rank N*max(k,50) candidates\n"      \
    "                   exactly from a copy of the vectors in RAM (0: off; ivf_pq_fs: 10)\n"

static const char usage_coll_create[] =
    "Usage: quiver collections create NAME --dim N [--metric l2|ip|cosine]\n"
    "                                 [--kind KIND] [--nlist N] [--pq-m N]\n"
    "                                 [--pq-nbits N] [--refine N]\n"
    "\n"
    "Create a collection. NAME: 1..128 of A-Z a-z 0-9 _ - . (not starting with '.');\n"
    "a NAME starting with '-' goes after \"--\".\n"
    "\n"
    "  --dim N          vector dimension, 1..4096 (required)\n"
    "  --metric M       l2 (squared Euclidean, default), ip (inner product) or\n"
    "                   cosine\n" INDEX_OPTIONS_HELP;

static const char usage_coll_describe[] =
    "Usage: quiver collections describe NAME\n"
    "\n"
    "Show a collection: dimension, metric, items, last sequence number and its index.\n";

static const char usage_coll_drop[] =
    "Usage: quiver collections drop NAME\n"
    "\n"
    "Delete a collection with all its items and index files.\n";

static const char usage_index[] =
    "Usage: quiver index SUBCOMMAND ...\n"
    "\n"
    "  rebuild COLLECTION [options]   rebuild the index, with live progress\n"
    "  status COLLECTION              show the state of the index\n"
    "\n"
    "'quiver index SUBCOMMAND --help' shows the options of each.\n";

static const char usage_index_rebuild[] =
    "Usage: quiver index rebuild COLLECTION [--kind KIND] [--nlist N] [--pq-m N]\n"
    "                                       [--pq-nbits N] [--refine N]\n"
    "\n"
    "Rebuild a collection's index in the background of the server, which keeps\n"
    "serving from the old index meanwhile. Progress goes to stderr: a live bar on a\n"
    "terminal, else one line per update (phase=P done=N total=N elapsed=Ts). The new\n"
    "index is printed at the end. Ctrl-C cancels the rebuild (the old index stays)\n"
    "and exits 130. Without options the collection's own index spec is used; with\n"
    "any of them, --kind defaults to auto.\n"
    "\n" INDEX_OPTIONS_HELP;

static const char usage_index_status[] =
    "Usage: quiver index status COLLECTION\n"
    "\n"
    "Show a collection's index: kind, training, items, nlist, default nprobe, a\n"
    "running rebuild and the recall table (nprobe reaching each recall@10).\n";

static const char usage_search[] =
    "Usage: quiver search COLLECTION (--id N | --vector X,Y,...) [--k N]\n"
    "                    [--nprobe N] [--min-recall R] [--no-attributes]\n"
    "\n"
    "Nearest neighbours of a stored item (--id: the item itself is left out) or of\n"
    "a vector (--vector: dim comma-separated floats; brackets and spaces allowed).\n"
    "\n"
    "  --k N            hits to return (default 10)\n"
    "  --nprobe N       IVF lists to scan (default: chosen from --min-recall)\n"
    "  --min-recall R   recall@10 to aim for when --nprobe is not given (server\n"
    "                   default 0.95)\n"
    "  --no-attributes  do not fetch the hits' attributes\n";

/* ----------------------------------------------------------------- globals */
static int g_json;
static const char *g_addr;
static int g_timeout_ms = 60000;
static qvc *g_conn;

/* Ctrl-C: a thread waits for SIGINT (blocked everywhere else). It cancels the
 * registered stream, or exits at once when no command asked for cancelling. */
static sigset_t g_sigset;
static pthread_mutex_t g_sig_mu = PTHREAD_MUTEX_INITIALIZER;
static qvc_stream *g_stream; /* the call Ctrl-C cancels; guarded by g_sig_mu */
static int g_cancel_mode;    /* Ctrl-C cancels instead of exiting; guarded by g_sig_mu */
static atomic_int g_interrupted;

static void *sig_main(void *arg)
{
    (void)arg;
    for (;;) {
        int sig;
        if (sigwait(&g_sigset, &sig) != 0) continue;
        pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
        pthread_mutex_lock(&g_sig_mu);
        atomic_store(&g_interrupted, 1);
        if (g_stream) qvc_stream_cancel(g_stream);
        int exit_now = !g_cancel_mode;
        pthread_mutex_unlock(&g_sig_mu);
        if (exit_now) {
            static const char msg[] = "\nquiver: interrupted\n";
            if (write(STDERR_FILENO, msg, sizeof msg - 1) < 0) { /* nothing to do */
            }
            _exit(EXIT_INTERRUPTED);
        }
        pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
    }
    return NULL;
}

static void set_stream(qvc_stream *s)
{
    pthread_mutex_lock(&g_sig_mu);
    g_stream = s;
    if (s && atomic_load(&g_interrupted)) qvc_stream_cancel(s);
    pthread_mutex_unlock(&g_sig_mu);
}

static void set_cancel_mode(int on)
{
    pthread_mutex_lock(&g_sig_mu);
    g_cancel_mode = on;
    pthread_mutex_unlock(&g_sig_mu);
}

/* ----------------------------------------------------------------- errors */
static int usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fputs("quiver: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nRun 'quiver%s%s --help' for usage.\n", cmd[0] ? " " : "", cmd);
    return EXIT_USAGE;
}

static int exit_code_of(int code)
{
    switch (code) {
    case GRPC_STATUS_OK: return EXIT_OK;
    case GRPC_STATUS_UNAVAILABLE: return EXIT_UNAVAILABLE;
    case GRPC_STATUS_NOT_FOUND: return EXIT_NOT_FOUND;
    case GRPC_STATUS_INVALID_ARGUMENT:
    case GRPC_STATUS_ALREADY_EXISTS:
    case GRPC_STATUS_FAILED_PRECONDITION:
    case GRPC_STATUS_OUT_OF_RANGE: return EXIT_REJECTED;
    case GRPC_STATUS_CANCELLED:
        return atomic_load(&g_interrupted) ? EXIT_INTERRUPTED : EXIT_SERVER;
    default: return EXIT_SERVER;
    }
}

/* Print "quiver: STATUS: message" and return the exit code for it. */
static int report(const qvc_status *st)
{
    fprintf(stderr, "quiver: %s: %s\n", qvc_status_name(st->code),
            st->details[0] ? st->details : "(no message)");
    return exit_code_of(st->code);
}

/* ------------------------------------------------------------ arguments */
typedef struct optdef {
    const char *name;  /* "--k" */
    const char **val;  /* where the value goes; NULL for a flag */
    int *flag;         /* set to 1 for a flag */
} optdef;

/* Parse a subcommand's arguments: options from opts, at most maxpos
 * positionals. Returns -1 to go on, or an exit code (0 after --help). */
static int parse_args(int argc, char **argv, const optdef *opts, const char **pos, int maxpos,
                      int *npos, const char *cmd, const char *help)
{
    int only_pos = 0;
    *npos = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!only_pos && strcmp(a, "--") == 0) {
            only_pos = 1;
            continue;
        }
        if (!only_pos && (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)) {
            fputs(help, stdout);
            return EXIT_OK;
        }
        if (!only_pos && a[0] == '-' && a[1] != '\0') {
            const char *eq = strchr(a, '=');
            size_t nl = eq ? (size_t)(eq - a) : strlen(a);
            const optdef *o = NULL;
            for (const optdef *p = opts; p && p->name; p++)
                if (strlen(p->name) == nl && strncmp(p->name, a, nl) == 0) o = p;
            if (!o) return usage_error(cmd, "unknown option '%.*s' for 'quiver %s'", (int)nl, a, cmd);
            if (o->val) {
                if (eq) *o->val = eq + 1;
                else if (i + 1 < argc) *o->val = argv[++i];
                else return usage_error(cmd, "option %s needs a value", o->name);
            } else {
                if (eq) return usage_error(cmd, "option %s takes no value", o->name);
                *o->flag = 1;
            }
            continue;
        }
        if (*npos >= maxpos) return usage_error(cmd, "unexpected argument '%s'", a);
        pos[(*npos)++] = a;
    }
    return -1;
}

static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    if (!s || !*s) return -1;
    for (const char *p = s; *p; p++)
        if (*p < '0' || *p > '9') return -1;
    errno = 0;
    unsigned long long v = strtoull(s, NULL, 10);
    if (errno || v > max) return -1;
    *out = v;
    return 0;
}

/* An optional unsigned option: absent leaves *out alone. Returns 0 or -1. */
static int opt_u32(const char *cmd, const char *name, const char *s, uint32_t *out, int *rc)
{
    uint64_t v;
    if (!s) return 0;
    if (parse_u64(s, UINT32_MAX, &v)) {
        *rc = usage_error(cmd, "%s wants a whole number 0..%u, not '%s'", name, UINT32_MAX, s);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

static int parse_float(const char *s, float *out)
{
    char *end;
    if (!s || !*s) return -1;
    errno = 0;
    float v = strtof(s, &end);
    while (*end == ' ' || *end == '\t') end++;
    if (end == s || *end || errno == ERANGE) return -1;
    *out = v;
    return 0;
}

/* "0.1,0.2, 0.3" or "[0.1, 0.2]" -> floats (caller frees *out). Returns the
 * count, or -1 with the offending token in bad. */
static long parse_vector(const char *s, float **out, char *bad, size_t badlen)
{
    *out = NULL;
    char *copy = strdup(s);
    if (!copy) return -1;
    char *p = copy;
    while (*p == ' ' || *p == '\t' || *p == '[') p++;
    size_t len = strlen(p);
    while (len && (p[len - 1] == ' ' || p[len - 1] == '\t' || p[len - 1] == ']')) p[--len] = '\0';
    size_t cap = 1;
    for (const char *q = p; *q; q++) cap += *q == ',';
    float *v = malloc(cap * sizeof *v);
    long n = 0;
    if (!v) goto fail;
    if (*p == '\0') goto fail;
    for (char *tok = p, *next; tok; tok = next) {
        next = strchr(tok, ',');
        if (next) *next++ = '\0';
        while (*tok == ' ' || *tok == '\t') tok++;
        if (parse_float(tok, &v[n])) {
            snprintf(bad, badlen, "%s", tok);
            goto fail;
        }
        n++;
    }
    free(copy);
    *out = v;
    return n;
fail:
    free(v);
    free(copy);
    return -1;
}

static int parse_metric(const char *s, Quiver__V1__Metric *m)
{
    if (!strcasecmp(s, "l2")) *m = QUIVER__V1__METRIC__L2;
    else if (!strcasecmp(s, "ip") || !strcasecmp(s, "inner_product"))
        *m = QUIVER__V1__METRIC__INNER_PRODUCT;
    else if (!strcasecmp(s, "cosine")) *m = QUIVER__V1__METRIC__COSINE;
    else return -1;
    return 0;
}

static const char *metric_name(Quiver__V1__Metric m)
{
    switch (m) {
    case QUIVER__V1__METRIC__L2: return "l2";
    case QUIVER__V1__METRIC__INNER_PRODUCT: return "ip";
    case QUIVER__V1__METRIC__COSINE: return "cosine";
    default: return "unspecified";
    }
}

/* --------------------------------------------------------------- JSON out */
/* A small streaming writer (to stdout unless redirected): commas and nesting
 * are tracked; a document ends with a newline when its outermost value
 * closes. */
typedef struct jwriter {
    FILE *out; /* NULL = stdout */
    int depth;
    int after_key;
    unsigned char count[64];
} jwriter;
static jwriter J;

#define JOUT (J.out ? J.out : stdout)

static void j_sep(void)
{
    if (J.after_key) {
        J.after_key = 0;
        return;
    }
    if (J.depth > 0) {
        if (J.count[J.depth]) fputc(',', JOUT);
        J.count[J.depth] = 1;
    }
}

static void j_raw_string(const char *s)
{
    FILE *f = JOUT;
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        case '\b': fputs("\\b", f); break;
        case '\f': fputs("\\f", f); break;
        default:
            if (*p < 0x20 || *p == 0x7f) fprintf(f, "\\u%04x", *p);
            else fputc(*p, f);
        }
    }
    fputc('"', f);
}

static void j_open(char c)
{
    j_sep();
    fputc(c, JOUT);
    J.depth++;
    J.count[J.depth] = 0;
}

static void j_close(char c)
{
    J.depth--;
    fputc(c, JOUT);
    if (J.depth == 0) fputc('\n', JOUT);
}

static void j_key(const char *k)
{
    j_sep();
    j_raw_string(k);
    fputc(':', JOUT);
    J.after_key = 1;
}

static void j_str(const char *s)
{
    j_sep();
    j_raw_string(s);
}

static void j_null(void)
{
    j_sep();
    fputs("null", JOUT);
}

static void j_u64(uint64_t v)
{
    j_sep();
    fprintf(JOUT, "%" PRIu64, v);
}

static void j_i64(int64_t v)
{
    j_sep();
    fprintf(JOUT, "%" PRId64, v);
}

static void j_bool(int b)
{
    j_sep();
    fputs(b ? "true" : "false", JOUT);
}

/* Shortest text that reads back as the same double (float when is_float). */
static void fmt_num(char *buf, size_t len, double v, int is_float)
{
    for (int prec = is_float ? 6 : 15; prec <= (is_float ? 9 : 17); prec++) {
        snprintf(buf, len, "%.*g", prec, v);
        if (is_float ? strtof(buf, NULL) == (float)v : strtod(buf, NULL) == v) return;
    }
}

/* A number; NaN and infinities (not JSON) become null. */
static void j_num(double v, int is_float)
{
    char buf[40];
    if (!isfinite(v)) {
        j_null();
        return;
    }
    j_sep();
    fmt_num(buf, sizeof buf, v, is_float);
    fputs(buf, JOUT);
}

static void jk_str(const char *k, const char *v) { j_key(k); j_str(v); }
static void jk_u64(const char *k, uint64_t v) { j_key(k); j_u64(v); }
static void jk_bool(const char *k, int v) { j_key(k); j_bool(v); }
static void jk_num(const char *k, double v, int is_float) { j_key(k); j_num(v, is_float); }

/* ------------------------------------------------------------- table out */
typedef struct table {
    size_t ncol;
    const char *align; /* one 'l' or 'r' per column */
    char **cells;      /* row-major, the header first */
    size_t n, cap;
} table;

static void tbl_cell(table *t, const char *fmt, ...)
{
    char *s = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0) s = NULL;
    va_end(ap);
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 64;
        char **c = realloc(t->cells, cap * sizeof *c);
        if (!c) {
            free(s);
            return;
        }
        t->cells = c;
        t->cap = cap;
    }
    t->cells[t->n++] = s;
}

static void tbl_print(table *t)
{
    size_t w[16] = {0};
    for (size_t i = 0; i < t->n; i++) {
        size_t l = t->cells[i] ? strlen(t->cells[i]) : 0;
        if (l > w[i % t->ncol]) w[i % t->ncol] = l;
    }
    for (size_t i = 0; i < t->n; i++) {
        size_t col = i % t->ncol;
        const char *s = t->cells[i] ? t->cells[i] : "";
        int last = col == t->ncol - 1;
        if (t->align[col] == 'r') printf("%*s", (int)w[col], s);
        else if (last) fputs(s, stdout);
        else printf("%-*s", (int)w[col], s);
        fputs(last ? "\n" : "  ", stdout);
    }
}

static void tbl_free(table *t)
{
    for (size_t i = 0; i < t->n; i++) free(t->cells[i]);
    free(t->cells);
}

/* "key:" padded, then the value. */
static void kv(const char *indent, const char *key, const char *fmt, ...)
{
    char k[64];
    snprintf(k, sizeof k, "%s:", key);
    printf("%s%-16s ", indent, k);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}

/* ------------------------------------------------------ shared printing */
static void json_index(const Quiver__V1__IndexInfo *ii)
{
    j_open('{');
    jk_str("kind", ii->kind);
    jk_bool("trained", ii->trained);
    jk_u64("count", ii->count);
    jk_u64("nlist", ii->nlist);
    jk_u64("default_nprobe", ii->default_nprobe);
    jk_u64("trained_for", ii->trained_for);
    jk_u64("pq_m", ii->pq_m);
    jk_u64("pq_nbits", ii->pq_nbits);
    jk_u64("refine", ii->refine);
    jk_u64("covered_seq", ii->covered_seq);
    jk_bool("rebuilding", ii->rebuilding);
    jk_str("phase", ii->phase);
    jk_u64("rebuild_done", ii->rebuild_done);
    jk_u64("rebuild_total", ii->rebuild_total);
    j_key("spec");
    if (ii->spec) {
        j_open('{');
        jk_str("kind", ii->spec->kind);
        jk_u64("nlist", ii->spec->nlist);
        jk_u64("pq_m", ii->spec->pq_m);
        jk_u64("pq_nbits", ii->spec->pq_nbits);
        jk_u64("refine", ii->spec->refine);
        j_close('}');
    } else {
        j_null();
    }
    j_key("recall_table");
    j_open('[');
    for (size_t i = 0; i < ii->n_recall_table; i++) {
        j_open('{');
        jk_num("recall", ii->recall_table[i]->recall, 1);
        jk_u64("nprobe", ii->recall_table[i]->nprobe);
        j_close('}');
    }
    j_close(']');
    j_close('}');
}

static void json_collection(const Quiver__V1__CollectionInfo *ci)
{
    j_open('{');
    jk_str("name", ci->name);
    jk_u64("dim", ci->dim);
    jk_str("metric", metric_name(ci->metric));
    jk_u64("count", ci->count);
    jk_u64("last_seq", ci->last_seq);
    j_key("index");
    if (ci->index) json_index(ci->index);
    else j_null();
    j_close('}');
}

static void print_spec(const char *indent, const Quiver__V1__IndexSpec *s)
{
    char buf[160];
    int n = snprintf(buf, sizeof buf, "%s", s->kind && s->kind[0] ? s->kind : "auto");
    if (s->nlist) n += snprintf(buf + n, sizeof buf - (size_t)n, " nlist=%u", s->nlist);
    if (s->pq_m) n += snprintf(buf + n, sizeof buf - (size_t)n, " pq_m=%u", s->pq_m);
    if (s->pq_nbits) n += snprintf(buf + n, sizeof buf - (size_t)n, " pq_nbits=%u", s->pq_nbits);
    if (s->refine) snprintf(buf + n, sizeof buf - (size_t)n, " refine=%u", s->refine);
    kv(indent, "spec", "%s", buf);
}

static void print_index(const char *indent, const Quiver__V1__IndexInfo *ii)
{
    kv(indent, "kind", "%s", ii->kind);
    kv(indent, "trained", "%s", ii->trained ? "yes" : "no");
    kv(indent, "count", "%" PRIu64, ii->count);
    kv(indent, "nlist", "%u", ii->nlist);
    kv(indent, "default_nprobe", "%u", ii->default_nprobe);
    kv(indent, "trained_for", "%" PRIu64, ii->trained_for);
    if (ii->pq_m || ii->pq_nbits) {
        kv(indent, "pq_m", "%u", ii->pq_m);
        kv(indent, "pq_nbits", "%u", ii->pq_nbits);
    }
    kv(indent, "refine", "%u", ii->refine);
    kv(indent, "covered_seq", "%" PRIu64, ii->covered_seq);
    if (ii->spec) print_spec(indent, ii->spec);
    kv(indent, "rebuilding", "%s", ii->rebuilding ? "yes" : "no");
    kv(indent, "phase", "%s", ii->phase && ii->phase[0] ? ii->phase : "-");
    if (ii->rebuilding || ii->rebuild_total)
        kv(indent, "rebuild", "%" PRIu64 "/%" PRIu64, ii->rebuild_done, ii->rebuild_total);
    if (ii->n_recall_table == 0) {
        kv(indent, "recall_table", "-");
        return;
    }
    printf("%srecall_table:\n", indent);
    table t = {.ncol = 2, .align = "rr"};
    tbl_cell(&t, "%s  RECALL", indent);
    tbl_cell(&t, "NPROBE");
    for (size_t i = 0; i < ii->n_recall_table; i++) {
        tbl_cell(&t, "%s  %.3f", indent, ii->recall_table[i]->recall);
        tbl_cell(&t, "%u", ii->recall_table[i]->nprobe);
    }
    tbl_print(&t);
    tbl_free(&t);
}

static void print_collection(const Quiver__V1__CollectionInfo *ci)
{
    kv("", "name", "%s", ci->name);
    kv("", "dim", "%u", ci->dim);
    kv("", "metric", "%s", metric_name(ci->metric));
    kv("", "count", "%" PRIu64, ci->count);
    kv("", "last_seq", "%" PRIu64, ci->last_seq);
    if (ci->index) {
        printf("index:\n");
        print_index("  ", ci->index);
    }
}

/* -------------------------------------------------------------- plumbing */
static int connect_server(void)
{
    qvc_status st;
    if (g_conn) return EXIT_OK;
    if (qvc_open(g_addr, &g_conn)) {
        fprintf(stderr, "quiver: cannot open a channel to %s\n", g_addr);
        return EXIT_UNAVAILABLE;
    }
    if (qvc_wait_ready(g_conn, CONNECT_TIMEOUT_MS, &st)) {
        report(&st);
        return EXIT_UNAVAILABLE;
    }
    return EXIT_OK;
}

/* One unary call; on error prints it and returns the exit code. */
static int call(const char *method, const ProtobufCMessage *req,
                const ProtobufCMessageDescriptor *desc, ProtobufCMessage **reply)
{
    int rc = connect_server();
    if (rc) return rc;
    qvc_status st;
    if (qvc_unary(g_conn, method, req, desc, reply, &st, g_timeout_ms)) return report(&st);
    return EXIT_OK;
}

static int describe(const char *name, Quiver__V1__CollectionInfo **ci)
{
    Quiver__V1__DescribeCollectionRequest req = QUIVER__V1__DESCRIBE_COLLECTION_REQUEST__INIT;
    req.name = (char *)name;
    return call(QVC_COLLECTIONS_DESCRIBE, &req.base, &quiver__v1__collection_info__descriptor,
                (ProtobufCMessage **)ci);
}

/* Index options shared by create and rebuild. */
typedef struct index_opts {
    const char *kind, *nlist, *pq_m, *pq_nbits, *refine;
} index_opts;

static int fill_spec(const char *cmd, const index_opts *o, Quiver__V1__IndexSpec *spec, int *any)
{
    int rc = EXIT_OK;
    *any = o->kind || o->nlist || o->pq_m || o->pq_nbits || o->refine;
    if (o->kind) spec->kind = (char *)o->kind;
    if (opt_u32(cmd, "--nlist", o->nlist, &spec->nlist, &rc) ||
        opt_u32(cmd, "--pq-m", o->pq_m, &spec->pq_m, &rc) ||
        opt_u32(cmd, "--pq-nbits", o->pq_nbits, &spec->pq_nbits, &rc) ||
        opt_u32(cmd, "--refine", o->refine, &spec->refine, &rc))
        return rc;
    return EXIT_OK;
}

/* -------------------------------------------------------------- commands */
static int cmd_health(int argc, char **argv)
{
    const char *service = NULL, *pos[1];
    int npos;
    optdef opts[] = {{"--service", &service, NULL}, {NULL, NULL, NULL}};
    int rc = parse_args(argc, argv, opts, pos, 0, &npos, "health", usage_health);
    if (rc >= 0) return rc;
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = (char *)(service ? service : "");
    Grpc__Health__V1__HealthCheckResponse *rep = NULL;
    rc = call(QVC_HEALTH_CHECK, &req.base, &grpc__health__v1__health_check_response__descriptor,
              (ProtobufCMessage **)&rep);
    if (rc) return rc;
    const char *name;
    switch (rep->status) {
    case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING: name = "SERVING"; break;
    case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING: name = "NOT_SERVING"; break;
    case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN:
        name = "SERVICE_UNKNOWN";
        break;
    default: name = "UNKNOWN"; break;
    }
    int serving = rep->status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
    if (g_json) {
        j_open('{');
        jk_str("addr", g_addr);
        jk_str("service", req.service);
        jk_str("status", name);
        j_close('}');
    } else {
        printf("%s\n", name);
    }
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    return serving ? EXIT_OK : EXIT_SERVER;
}

static int cmd_coll_list(int argc, char **argv)
{
    const char *pos[1];
    int npos;
    int rc = parse_args(argc, argv, NULL, pos, 0, &npos, "collections list", usage_coll_list);
    if (rc >= 0) return rc;
    Quiver__V1__ListCollectionsRequest req = QUIVER__V1__LIST_COLLECTIONS_REQUEST__INIT;
    Quiver__V1__ListCollectionsResponse *rep = NULL;
    rc = call(QVC_COLLECTIONS_LIST, &req.base, &quiver__v1__list_collections_response__descriptor,
              (ProtobufCMessage **)&rep);
    if (rc) return rc;
    if (g_json) {
        j_open('{');
        j_key("collections");
        j_open('[');
        for (size_t i = 0; i < rep->n_collections; i++) json_collection(rep->collections[i]);
        j_close(']');
        j_close('}');
    } else if (rep->n_collections == 0) {
        printf("no collections\n");
    } else {
        table t = {.ncol = 8, .align = "lrlrlllr"};
        const char *head[] = {"NAME", "DIM", "METRIC", "COUNT", "INDEX", "TRAINED", "REBUILDING",
                              "NLIST"};
        for (int i = 0; i < 8; i++) tbl_cell(&t, "%s", head[i]);
        for (size_t i = 0; i < rep->n_collections; i++) {
            const Quiver__V1__CollectionInfo *c = rep->collections[i];
            const Quiver__V1__IndexInfo *ii = c->index;
            tbl_cell(&t, "%s", c->name);
            tbl_cell(&t, "%u", c->dim);
            tbl_cell(&t, "%s", metric_name(c->metric));
            tbl_cell(&t, "%" PRIu64, c->count);
            tbl_cell(&t, "%s", ii ? ii->kind : "-");
            tbl_cell(&t, "%s", ii && ii->trained ? "yes" : "no");
            tbl_cell(&t, "%s", ii && ii->rebuilding ? (ii->phase[0] ? ii->phase : "yes") : "no");
            tbl_cell(&t, "%u", ii ? ii->nlist : 0);
        }
        tbl_print(&t);
        tbl_free(&t);
    }
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    return EXIT_OK;
}

static int cmd_coll_create(int argc, char **argv)
{
    const char *cmd = "collections create";
    const char *pos[1], *dim = NULL, *metric = NULL;
    index_opts io = {0};
    int npos;
    optdef opts[] = {{"--dim", &dim, NULL},        {"--metric", &metric, NULL},
                     {"--kind", &io.kind, NULL},   {"--nlist", &io.nlist, NULL},
                     {"--pq-m", &io.pq_m, NULL},   {"--pq-nbits", &io.pq_nbits, NULL},
                     {"--refine", &io.refine, NULL}, {NULL, NULL, NULL}};
    int rc = parse_args(argc, argv, opts, pos, 1, &npos, cmd, usage_coll_create);
    if (rc >= 0) return rc;
    if (npos != 1) return usage_error(cmd, "the collection NAME is missing");
    if (!dim) return usage_error(cmd, "--dim is required");
    Quiver__V1__CreateCollectionRequest req = QUIVER__V1__CREATE_COLLECTION_REQUEST__INIT;
    Quiver__V1__IndexSpec spec = QUIVER__V1__INDEX_SPEC__INIT;
    req.name = (char *)pos[0];
    req.metric = QUIVER__V1__METRIC__L2;
    if (opt_u32(cmd, "--dim", dim, &req.dim, &rc)) return rc;
    if (metric && parse_metric(metric, &req.metric))
        return usage_error(cmd, "--metric must be l2, ip or cosine, not '%s'", metric);
    int any;
    if ((rc = fill_spec(cmd, &io, &spec, &any))) return rc;
    if (any) req.index = &spec;
    Quiver__V1__CollectionInfo *ci = NULL;
    if ((rc = call(QVC_COLLECTIONS_CREATE, &req.base, &quiver__v1__collection_info__descriptor,
                   (ProtobufCMessage **)&ci)))
        return rc;
    if (g_json) json_collection(ci);
    else {
        printf("created collection \"%s\"\n", ci->name);
        print_collection(ci);
    }
    protobuf_c_message_free_unpacked(&ci->base, NULL);
    return EXIT_OK;
}

static int cmd_coll_describe(int argc, char **argv)
{
    const char *cmd = "collections describe", *pos[1];
    int npos;
    int rc = parse_args(argc, argv, NULL, pos, 1, &npos, cmd, usage_coll_describe);
    if (rc >= 0) return rc;
    if (npos != 1) return usage_error(cmd, "the collection NAME is missing");
    Quiver__V1__CollectionInfo *ci = NULL;
    if ((rc = describe(pos[0], &ci))) return rc;
    if (g_json) json_collection(ci);
    else print_collection(ci);
    protobuf_c_message_free_unpacked(&ci->base, NULL);
    return EXIT_OK;
}

static int cmd_coll_drop(int argc, char **argv)
{
    const char *cmd = "collections drop", *pos[1];
    int npos;
    int rc = parse_args(argc, argv, NULL, pos, 1, &npos, cmd, usage_coll_drop);
    if (rc >= 0) return rc;
    if (npos != 1) return usage_error(cmd, "the collection NAME is missing");
    Quiver__V1__DropCollectionRequest req = QUIVER__V1__DROP_COLLECTION_REQUEST__INIT;
    req.name = (char *)pos[0];
    Quiver__V1__DropCollectionResponse *rep = NULL;
    if ((rc = call(QVC_COLLECTIONS_DROP, &req.base, &quiver__v1__drop_collection_response__descriptor,
                   (ProtobufCMessage **)&rep)))
        return rc;
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    if (g_json) {
        j_open('{');
        jk_str("dropped", pos[0]);
        j_close('}');
    } else {
        printf("dropped collection \"%s\"\n", pos[0]);
    }
    return EXIT_OK;
}

static int cmd_index_status(int argc, char **argv)
{
    const char *cmd = "index status", *pos[1];
    int npos;
    int rc = parse_args(argc, argv, NULL, pos, 1, &npos, cmd, usage_index_status);
    if (rc >= 0) return rc;
    if (npos != 1) return usage_error(cmd, "the COLLECTION is missing");
    Quiver__V1__CollectionInfo *ci = NULL;
    if ((rc = describe(pos[0], &ci))) return rc;
    if (g_json) {
        j_open('{');
        jk_str("collection", ci->name);
        jk_u64("items", ci->count);
        j_key("index");
        if (ci->index) json_index(ci->index);
        else j_null();
        j_close('}');
    } else {
        kv("", "collection", "%s", ci->name);
        kv("", "items", "%" PRIu64, ci->count);
        if (ci->index) print_index("", ci->index);
    }
    protobuf_c_message_free_unpacked(&ci->base, NULL);
    return EXIT_OK;
}

/* Progress of a rebuild on stderr: on a terminal a bar redrawn in place,
 * whose clock a ticker thread keeps running between the server's updates
 * (training reports only its start and end); one line per update otherwise. */
typedef struct progress {
    int tty;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t ticker;
    int have_ticker, stop;
    int drawn; /* a bar is on the current terminal line */
    char phase[32];
    uint64_t done, total;
    double elapsed;    /* as of the last update */
    struct timespec at; /* when it arrived */
} progress;

static double since(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t->tv_sec) + (double)(now.tv_nsec - t->tv_nsec) / 1e9;
}

/* Draw the bar; p->mu held. */
static void progress_draw(progress *p)
{
    double elapsed = p->elapsed + since(&p->at);
    char tail[96];
    double f = p->total ? (double)p->done / (double)p->total : 0;
    if (f > 1) f = 1;
    if (p->total)
        snprintf(tail, sizeof tail, " %5.1f%%  %" PRIu64 "/%" PRIu64 "  %.1fs", 100 * f, p->done,
                 p->total, elapsed);
    else snprintf(tail, sizeof tail, "  %.1fs", elapsed);
    int cols = 80;
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) cols = ws.ws_col;
    int width = cols - 1 - 12 - 3 - (int)strlen(tail); /* phase, " []", tail */
    if (width > 40) width = 40;
    char bar[48];
    if (width >= 5 && p->total) {
        int fill = (int)(f * width + 0.5);
        for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
        bar[width] = '\0';
        fprintf(stderr, "\r\033[K%-12.12s [%s]%s", p->phase, bar, tail);
    } else {
        fprintf(stderr, "\r\033[K%-12.12s%s", p->phase, tail);
    }
    fflush(stderr);
    p->drawn = 1;
}

static void *progress_tick(void *arg)
{
    progress *p = arg;
    pthread_mutex_lock(&p->mu);
    while (!p->stop) {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        t.tv_nsec += 250 * 1000000L;
        if (t.tv_nsec >= 1000000000L) {
            t.tv_sec++;
            t.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&p->cv, &p->mu, &t);
        if (!p->stop && p->drawn) progress_draw(p);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void progress_init(progress *p)
{
    memset(p, 0, sizeof *p);
    p->tty = isatty(STDERR_FILENO);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (p->tty) p->have_ticker = pthread_create(&p->ticker, NULL, progress_tick, p) == 0;
}

static void progress_show(progress *p, const Quiver__V1__RebuildProgress *m)
{
    const char *phase = m->phase && m->phase[0] ? m->phase : "?";
    if (!p->tty) {
        fprintf(stderr, "phase=%s done=%" PRIu64 " total=%" PRIu64 " elapsed=%.1fs\n", phase,
                m->done, m->total, m->elapsed_seconds);
        return;
    }
    pthread_mutex_lock(&p->mu);
    snprintf(p->phase, sizeof p->phase, "%s", phase);
    p->done = m->done;
    p->total = m->total;
    p->elapsed = m->elapsed_seconds;
    clock_gettime(CLOCK_MONOTONIC, &p->at);
    progress_draw(p);
    pthread_mutex_unlock(&p->mu);
}

/* Stop the ticker and end the bar's line. */
static void progress_end(progress *p)
{
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    if (p->have_ticker) pthread_join(p->ticker, NULL);
    p->have_ticker = 0;
    if (p->drawn) fputc('\n', stderr);
    p->drawn = 0;
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
}

static int cmd_index_rebuild(int argc, char **argv)
{
    const char *cmd = "index rebuild", *pos[1];
    index_opts io = {0};
    int npos;
    optdef opts[] = {{"--kind", &io.kind, NULL},         {"--nlist", &io.nlist, NULL},
                     {"--pq-m", &io.pq_m, NULL},         {"--pq-nbits", &io.pq_nbits, NULL},
                     {"--refine", &io.refine, NULL},     {NULL, NULL, NULL}};
    int rc = parse_args(argc, argv, opts, pos, 1, &npos, cmd, usage_index_rebuild);
    if (rc >= 0) return rc;
    if (npos != 1) return usage_error(cmd, "the COLLECTION is missing");
    Quiver__V1__RebuildIndexRequest req = QUIVER__V1__REBUILD_INDEX_REQUEST__INIT;
    Quiver__V1__IndexSpec spec = QUIVER__V1__INDEX_SPEC__INIT;
    int any;
    if ((rc = fill_spec(cmd, &io, &spec, &any))) return rc;
    req.collection = (char *)pos[0];
    if (any) req.index = &spec;

    set_cancel_mode(1); /* from here Ctrl-C cancels the rebuild */
    if ((rc = connect_server())) return rc;
    qvc_status st;
    qvc_stream *s = NULL;
    if (qvc_stream_start(g_conn, QVC_ADMIN_REBUILD_INDEX, &req.base, 0, &s, &st))
        return report(&st);
    set_stream(s);
    progress p;
    progress_init(&p);
    Quiver__V1__RebuildProgress *m = NULL, *last = NULL;
    int got;
    while ((got = qvc_stream_next(s, &quiver__v1__rebuild_progress__descriptor,
                                  (ProtobufCMessage **)&m)) == 1) {
        progress_show(&p, m);
        if (last) protobuf_c_message_free_unpacked(&last->base, NULL);
        last = m;
    }
    set_stream(NULL);
    int code = qvc_stream_finish(s, &st);
    progress_end(&p);
    if (code) {
        if (last) protobuf_c_message_free_unpacked(&last->base, NULL);
        if (atomic_load(&g_interrupted)) {
            fprintf(stderr, "quiver: %s: rebuild of \"%s\" cancelled by Ctrl-C (%s)\n",
                    qvc_status_name(code), pos[0], st.details[0] ? st.details : "no message");
            return EXIT_INTERRUPTED;
        }
        return report(&st);
    }
    /* The last message ("done") carries the new index; ask when it did not. */
    Quiver__V1__CollectionInfo *ci = NULL;
    const Quiver__V1__IndexInfo *ii = last ? last->index : NULL;
    double elapsed = last ? last->elapsed_seconds : 0;
    if (!ii) {
        if ((rc = describe(pos[0], &ci))) {
            if (last) protobuf_c_message_free_unpacked(&last->base, NULL);
            return rc;
        }
        ii = ci->index;
    }
    if (g_json) {
        j_open('{');
        jk_str("collection", pos[0]);
        jk_num("elapsed_seconds", elapsed, 0);
        j_key("index");
        if (ii) json_index(ii);
        else j_null();
        j_close('}');
    } else {
        printf("rebuilt the index of \"%s\" in %.1fs\n", pos[0], elapsed);
        if (ii) print_index("", ii);
    }
    if (last) protobuf_c_message_free_unpacked(&last->base, NULL);
    if (ci) protobuf_c_message_free_unpacked(&ci->base, NULL);
    return EXIT_OK;
}

/* An attribute value as JSON (also the human form: quoted strings). */
static void json_value(const Quiver__V1__Value *v)
{
    switch (v ? v->kind_case : QUIVER__V1__VALUE__KIND__NOT_SET) {
    case QUIVER__V1__VALUE__KIND_STRING_VALUE: j_str(v->string_value); break;
    case QUIVER__V1__VALUE__KIND_INT_VALUE: j_i64(v->int_value); break;
    case QUIVER__V1__VALUE__KIND_DOUBLE_VALUE: j_num(v->double_value, 0); break;
    case QUIVER__V1__VALUE__KIND_BOOL_VALUE: j_bool(v->bool_value); break;
    case QUIVER__V1__VALUE__KIND_STRING_LIST:
        j_open('[');
        for (size_t i = 0; v->string_list && i < v->string_list->n_values; i++)
            j_str(v->string_list->values[i]);
        j_close(']');
        break;
    default: j_null(); break;
    }
}

static int cmp_entry_key(const void *a, const void *b)
{
    const Quiver__V1__Hit__AttributesEntry *x = *(Quiver__V1__Hit__AttributesEntry *const *)a;
    const Quiver__V1__Hit__AttributesEntry *y = *(Quiver__V1__Hit__AttributesEntry *const *)b;
    return strcmp(x->key, y->key);
}

/* Attributes of a hit, sorted by key, as "k=v, k=v" (values in JSON syntax), malloc'd. */
static char *attrs_text(const Quiver__V1__Hit *h)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    size_t n = h->n_attributes;
    Quiver__V1__Hit__AttributesEntry **sorted = malloc((n ? n : 1) * sizeof *sorted);
    if (!sorted) {
        fclose(f);
        free(buf);
        return NULL;
    }
    memcpy(sorted, h->attributes, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, cmp_entry_key);
    jwriter saved = J;
    for (size_t i = 0; i < n; i++) {
        if (i) fputs(", ", f);
        fprintf(f, "%s=", sorted[i]->key);
        /* write the value alone, as if nested (no separator, no newline) */
        memset(&J, 0, sizeof J);
        J.out = f;
        J.depth = 1;
        J.after_key = 1;
        json_value(sorted[i]->value);
    }
    J = saved;
    free(sorted);
    fclose(f);
    return buf;
}

static int cmd_search(int argc, char **argv)
{
    const char *cmd = "search", *pos[1];
    const char *id = NULL, *vector = NULL, *k = NULL, *nprobe = NULL, *min_recall = NULL;
    int no_attrs = 0, npos;
    optdef opts[] = {{"--id", &id, NULL},         {"--vector", &vector, NULL},
                     {"--k", &k, NULL},           {"--nprobe", &nprobe, NULL},
                     {"--min-recall", &min_recall, NULL}, {"--no-attributes", NULL, &no_attrs},
                     {NULL, NULL, NULL}};
    int rc = parse_args(argc, argv, opts, pos, 1, &npos, cmd, usage_search);
    if (rc >= 0) return rc;
    if (npos != 1) return usage_error(cmd, "the COLLECTION is missing");
    if (!id == !vector) return usage_error(cmd, "give exactly one of --id and --vector");
    Quiver__V1__SearchRequest req = QUIVER__V1__SEARCH_REQUEST__INIT;
    Quiver__V1__Query q = QUIVER__V1__QUERY__INIT;
    Quiver__V1__Vector v = QUIVER__V1__VECTOR__INIT;
    Quiver__V1__Query *qs[1] = {&q};
    req.collection = (char *)pos[0];
    req.queries = qs;
    req.n_queries = 1;
    req.k = 10;
    req.without_attributes = no_attrs;
    if (opt_u32(cmd, "--k", k, &req.k, &rc) || opt_u32(cmd, "--nprobe", nprobe, &req.nprobe, &rc))
        return rc;
    if (min_recall && parse_float(min_recall, &req.min_recall))
        return usage_error(cmd, "--min-recall wants a number such as 0.9, not '%s'", min_recall);
    float *vals = NULL;
    if (id) {
        uint64_t x;
        if (parse_u64(id, UINT64_MAX, &x))
            return usage_error(cmd, "--id wants a whole number, not '%s'", id);
        q.kind_case = QUIVER__V1__QUERY__KIND_ID;
        q.id = x;
    } else {
        char bad[64] = "";
        long n = parse_vector(vector, &vals, bad, sizeof bad);
        if (n < 0)
            return usage_error(cmd, "--vector wants comma-separated numbers; '%s' is not one", bad);
        v.values = vals;
        v.n_values = (size_t)n;
        q.kind_case = QUIVER__V1__QUERY__KIND_VECTOR;
        q.vector = &v;
    }
    Quiver__V1__SearchResponse *rep = NULL;
    rc = call(QVC_SEARCH_SEARCH, &req.base, &quiver__v1__search_response__descriptor,
              (ProtobufCMessage **)&rep);
    free(vals);
    if (rc) return rc;
    const Quiver__V1__Hits *hits = rep->n_results ? rep->results[0] : NULL;
    size_t n = hits ? hits->n_hits : 0;
    if (g_json) {
        j_open('{');
        jk_str("collection", pos[0]);
        j_key("hits");
        j_open('[');
        for (size_t i = 0; i < n; i++) {
            const Quiver__V1__Hit *h = hits->hits[i];
            j_open('{');
            jk_u64("rank", i + 1);
            jk_u64("id", h->id);
            jk_num("score", h->score, 1);
            j_key("attributes");
            j_open('{');
            for (size_t a = 0; a < h->n_attributes; a++) {
                j_key(h->attributes[a]->key);
                json_value(h->attributes[a]->value);
            }
            j_close('}');
            j_close('}');
        }
        j_close(']');
        j_close('}');
    } else if (n == 0) {
        printf("no hits\n");
    } else {
        table t = {.ncol = 4, .align = "rrrl"};
        tbl_cell(&t, "RANK");
        tbl_cell(&t, "ID");
        tbl_cell(&t, "SCORE");
        tbl_cell(&t, "ATTRIBUTES");
        for (size_t i = 0; i < n; i++) {
            const Quiver__V1__Hit *h = hits->hits[i];
            char *at = attrs_text(h);
            tbl_cell(&t, "%zu", i + 1);
            tbl_cell(&t, "%" PRIu64, h->id);
            tbl_cell(&t, "%.6g", h->score);
            tbl_cell(&t, "%s", at && at[0] ? at : "-");
            free(at);
        }
        tbl_print(&t);
        tbl_free(&t);
    }
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    return EXIT_OK;
}

/* ------------------------------------------------------------------ main */
typedef struct subcmd {
    const char *name;
    int (*run)(int argc, char **argv);
} subcmd;

static int run_group(const char *group, const char *help, const subcmd *subs, int argc,
                     char **argv)
{
    if (argc == 0) {
        fputs(help, stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[0], "-h") == 0 || strcmp(argv[0], "--help") == 0) {
        fputs(help, stdout);
        return EXIT_OK;
    }
    for (const subcmd *s = subs; s->name; s++)
        if (strcmp(argv[0], s->name) == 0) return s->run(argc - 1, argv + 1);
    return usage_error(group, "unknown subcommand '%s' of 'quiver %s'", argv[0], group);
}

static int run(int argc, char **argv)
{
    static const subcmd coll[] = {{"list", cmd_coll_list},
                                  {"create", cmd_coll_create},
                                  {"describe", cmd_coll_describe},
                                  {"drop", cmd_coll_drop},
                                  {NULL, NULL}};
    static const subcmd index[] = {
        {"rebuild", cmd_index_rebuild}, {"status", cmd_index_status}, {NULL, NULL}};
    if (argc == 0) {
        fputs(usage_top, stderr);
        return EXIT_USAGE;
    }
    const char *c = argv[0];
    if (strcmp(c, "-h") == 0 || strcmp(c, "--help") == 0 || strcmp(c, "help") == 0) {
        fputs(usage_top, stdout);
        return EXIT_OK;
    }
    if (strcmp(c, "health") == 0) return cmd_health(argc - 1, argv + 1);
    if (strcmp(c, "collections") == 0)
        return run_group("collections", usage_collections, coll, argc - 1, argv + 1);
    if (strcmp(c, "index") == 0) return run_group("index", usage_index, index, argc - 1, argv + 1);
    if (strcmp(c, "search") == 0) return cmd_search(argc - 1, argv + 1);
    return usage_error("", "unknown command '%s'", c);
}

int main(int argc, char **argv)
{
    /* Pull the global options out from anywhere before a "--". */
    char **args = calloc((size_t)argc + 1, sizeof *args);
    int n = 0, rc = -1;
    if (!args) return EXIT_SERVER;
    g_addr = getenv("QUIVER_ADDR");
    if (!g_addr || !g_addr[0]) g_addr = DEFAULT_ADDR;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            while (i < argc) args[n++] = argv[i++];
            break;
        }
        if (strcmp(a, "--json") == 0) {
            g_json = 1;
        } else if (strcmp(a, "--addr") == 0 || strncmp(a, "--addr=", 7) == 0) {
            const char *v = a[6] == '=' ? a + 7 : i + 1 < argc ? argv[++i] : NULL;
            if (!v || !v[0]) {
                rc = usage_error("", "--addr needs HOST:PORT");
                break;
            }
            g_addr = v;
        } else if (strcmp(a, "--timeout") == 0 || strncmp(a, "--timeout=", 10) == 0) {
            const char *v = a[9] == '=' ? a + 10 : i + 1 < argc ? argv[++i] : NULL;
            float secs;
            if (!v || parse_float(v, &secs) || !(secs > 0) || secs > 86400) {
                rc = usage_error("", "--timeout wants seconds in (0, 86400], not '%s'", v ? v : "");
                break;
            }
            g_timeout_ms = (int)(secs * 1000) > 0 ? (int)(secs * 1000) : 1;
        } else {
            args[n++] = argv[i];
        }
    }
    if (rc >= 0) {
        free(args);
        return rc;
    }

    /* Ctrl-C is handled by sig_main; block it before gRPC starts threads. */
    pthread_t sig_thread;
    sigemptyset(&g_sigset);
    sigaddset(&g_sigset, SIGINT);
    pthread_sigmask(SIG_BLOCK, &g_sigset, NULL);
    int have_sig_thread = pthread_create(&sig_thread, NULL, sig_main, NULL) == 0;

    rc = run(n, args);
    fflush(stdout);

    set_cancel_mode(1); /* no _exit while the connection closes */
    if (have_sig_thread) {
        pthread_cancel(sig_thread);
        pthread_join(sig_thread, NULL);
    }
    qvc_close(g_conn);
    free(args);
    if (rc == EXIT_OK && ferror(stdout)) rc = EXIT_SERVER;
    return rc;
}
