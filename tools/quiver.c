/*
 * quiver: the admin command line of a Quiver server — main, the dispatch of
 * every command, and the commands that print what the server says:
 * collections (list, create, describe, drop), index rebuild with live
 * progress and index status, searches (filtered, grouped, diversified,
 * fused), recommendations by example, the cluster's status and operations
 * (drain, rebalance) and the health check; aligned tables
 * for people, --json for scripts. The plumbing (global options, the
 * connection, exit codes, option parsing) is cli.c's; bulk import, export
 * and backup are import.c's and transfer.c's. Nothing calls into this file.
 */
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "client.h"
#include "filter_json.h"
#include "meter.h"
#include "transfer.h"
#include "grpc/health/v1/health.pb-c.h"
#include "quiver/v1/quiver.pb-c.h"

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
    "  search COLLECTION (--id N | --vector X,Y,...)... [--filter JSON] ...\n"
    "                                   nearest neighbours of items or vectors,\n"
    "                                   filtered, grouped, diversified or fused\n"
    "  recommend COLLECTION --positive ID[:W],... [--negative ID[:W],...] ...\n"
    "                                   items like some examples and unlike others\n"
    "  import COLLECTION FILE... [--create] [--resume] ...\n"
    "                                   load fvecs, bvecs, npy, JSON Lines or CSV\n"
    "                                   files, pipelined and resumable\n"
    "  export COLLECTION --format F -o FILE\n"
    "                                   write a collection to fvecs, npy, jsonl or csv\n"
    "  backup FILE                      hot backup of the server's whole data (restore:\n"
    "                                   quiverd --restore FILE --data DIR)\n"
    "  cluster status                   a cluster's nodes, shards and replicas (state,\n"
    "                                   applied sequence, lag, moves), its controller\n"
    "  cluster drain NODE [--wait]      move every replica off a node (--cancel: take\n"
    "                                   it back)\n"
    "  cluster rebalance                one balancing pass of the replicas now\n"
    "  cluster restore FILE             load a cluster backup into a cluster\n"
    "\n"
    "Global options (accepted anywhere on the command line):\n"
    "  --addr HOST:PORT   server address (default: $QUIVER_ADDR, else " CLI_DEFAULT_ADDR ")\n"
    "  --json             print one JSON document instead of tables\n"
    "  --api-key KEY      API key sent as \"authorization: Bearer KEY\" (default:\n"
    "                     $QUIVER_API_KEY)\n"
    "  --tls              connect with TLS, trusting the system's CA certificates\n"
    "  --tls-ca FILE      connect with TLS, trusting this CA (PEM)\n"
    "  --tls-cert FILE --tls-key FILE  client certificate for mTLS (PEM)\n"
    "  --timeout SECONDS  deadline of each request (default 60; index rebuild, export\n"
    "                     and backup have none; import: of each Import stream)\n"
    "  -h, --help         show this help; 'quiver COMMAND --help' shows a command's\n"
    "\n"
    "Exit codes:\n"
    "  0    success\n"
    "  2    usage error (bad flags or arguments)\n"
    "  3    cannot connect / server unavailable (UNAVAILABLE, or no connection\n"
    "       within 5 s)\n"
    "  4    not found (NOT_FOUND: unknown collection or item)\n"
    "  5    request rejected (INVALID_ARGUMENT, ALREADY_EXISTS, FAILED_PRECONDITION,\n"
    "       OUT_OF_RANGE), e.g. a bad dimension or a rebuild already running; import:\n"
    "       a bad row, a file of the wrong dimension, an unreadable or unsupported\n"
    "       input file, a checkpoint that does not match\n"
    "  6    other server error (INTERNAL, RESOURCE_EXHAUSTED, ...; health: not serving);\n"
    "       export, backup: the output file cannot be written\n"
    "  7    not allowed (UNAUTHENTICATED: no or unknown API key; PERMISSION_DENIED:\n"
    "       the key lacks the role or the collection)\n"
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
    "  create NAME --dim N    create a collection (--shards, --replicas: cluster mode)\n"
    "  describe NAME          show a collection and its index\n"
    "  drop NAME              delete a collection and all its items\n"
    "\n"
    "'quiver collections SUBCOMMAND --help' shows the options of each.\n";

static const char usage_coll_list[] =
    "Usage: quiver collections list\n"
    "\n"
    "List the collections: name, dimension, metric, items, index kind, shards and\n"
    "replicas.\n";

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
    "                                 [--shards N] [--replicas N]\n"
    "\n"
    "Create a collection. NAME: 1..128 of A-Z a-z 0-9 _ - . (not starting with '.');\n"
    "a NAME starting with '-' goes after \"--\".\n"
    "\n"
    "  --dim N          vector dimension, 1..4096 (required)\n"
    "  --metric M       l2 (squared Euclidean, default), ip (inner product) or\n"
    "                   cosine\n" INDEX_OPTIONS_HELP
    "  --shards N       cluster mode: split the items into N shards by id (default:\n"
    "                   the server's, 1); a single node refuses more than 1\n"
    "  --replicas N     cluster mode: copies of each shard on distinct nodes\n"
    "                   (default: the server's, 1); a single node refuses more than 1\n";

static const char usage_coll_describe[] =
    "Usage: quiver collections describe NAME\n"
    "\n"
    "Show a collection: dimension, metric, items, last sequence number, shards,\n"
    "replicas and its index.\n";

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

#define QUERY_OPTIONS_HELP                                                                    \
    "  --k N            hits to return (default 10)\n"                                       \
    "  --filter JSON    only items matching a quiver.v1.Filter in the proto3 JSON\n"          \
    "                   mapping, e.g. '{\"must\":[{\"field\":{\"key\":\"lang\",\n"            \
    "                   \"equals\":{\"stringValue\":\"en\"}}}]}' (snake_case names too)\n"    \
    "  --exclude ID,... never return these items (repeatable)\n"                              \
    "  --threshold V    score bound: an L2 distance keeps score <= V, a similarity\n"         \
    "                   (ip, cosine, best_score, sum_scores) keeps score >= V\n"              \
    "  --group-by KEY   at most --group-size hits per value of attribute KEY (items\n"        \
    "                   without it are left out)\n"                                           \
    "  --group-size N   hits per group (default 1)\n"                                         \
    "  --nprobe N       IVF lists to scan (default: chosen from --min-recall)\n"              \
    "  --min-recall R   recall@10 to aim for when --nprobe is not given (server\n"            \
    "                   default 0.95)\n"                                                      \
    "  --without-attributes, --no-attributes\n"                                               \
    "                   do not fetch the hits' attributes\n"

static const char usage_search[] =
    "Usage: quiver search COLLECTION (--id N | --vector X,Y,...)... [--k N]\n"
    "                    [--filter JSON] [--exclude ID,...] [--threshold V]\n"
    "                    [--group-by KEY [--group-size N]]\n"
    "                    [--mmr DIVERSITY [--mmr-candidates N]]\n"
    "                    [--fusion rrf|max_score [--rrf-k N]]\n"
    "                    [--nprobe N] [--min-recall R] [--without-attributes]\n"
    "\n"
    "Nearest neighbours of a stored item (--id: the item itself is left out) or of\n"
    "a vector (--vector: dim comma-separated floats; brackets and spaces allowed).\n"
    "--id and --vector may be repeated: one query each, answered in the order given\n"
    "(--json: {\"results\": [{\"hits\": ...}, ...]}), or fused into one list by\n"
    "--fusion (--json: {\"hits\": ...}, as for one query).\n"
    "\n" QUERY_OPTIONS_HELP
    "  --mmr DIVERSITY  re-rank by maximal marginal relevance: 0 = plain relevance\n"
    "                   order, 1 = most diverse (the first hit stays the nearest)\n"
    "  --mmr-candidates N\n"
    "                   nearest hits MMR chooses from (default 10 x k)\n"
    "  --fusion F       several queries into one list: rrf (reciprocal-rank fusion,\n"
    "                   sum of 1/(rrf_k + rank)) or max_score (each item's best score)\n"
    "  --rrf-k N        the RRF constant (default 60)\n";

static const char usage_recommend[] =
    "Usage: quiver recommend COLLECTION --positive ID[:WEIGHT],...\n"
    "                       [--negative ID[:WEIGHT],...] [--k N]\n"
    "                       [--strategy average_vector|best_score|sum_scores]\n"
    "                       [--filter JSON] [--exclude ID,...] [--threshold V]\n"
    "                       [--group-by KEY [--group-size N]]\n"
    "                       [--nprobe N] [--min-recall R] [--without-attributes]\n"
    "\n"
    "Items like the positive examples and unlike the negative ones (stored items by\n"
    "id; the examples themselves are never returned). --positive and --negative may\n"
    "be repeated; WEIGHT > 0 (default 1).\n"
    "\n"
    "  --positive ID[:WEIGHT],...   examples to be near (at least one)\n"
    "  --negative ID[:WEIGHT],...   examples to be far from\n"
    "  --strategy S     average_vector (default): search for the weighted mean of the\n"
    "                   positives minus that of the negatives (score as for search);\n"
    "                   best_score: score = best similarity to a positive, dropping\n"
    "                   items more similar to a negative; sum_scores: score = weighted\n"
    "                   similarity to the positives minus that to the negatives\n"
    "                   (similarity: cosine, dot product, or minus the L2 distance)\n"
    QUERY_OPTIONS_HELP;

static const char usage_cluster[] =
    "Usage: quiver cluster SUBCOMMAND ...\n"
    "\n"
    "  status                 the cluster's nodes, shards, replicas and moves\n"
    "  drain NODE             move every replica off a node (--wait, --cancel)\n"
    "  rebalance              one balancing pass of the replicas now\n"
    "  restore FILE           load a cluster backup (quiver backup FILE) into a cluster\n"
    "\n"
    "'quiver cluster SUBCOMMAND --help' shows the options of each.\n";

static const char usage_cluster_status[] =
    "Usage: quiver cluster status\n"
    "\n"
    "Show a cluster as the server sees it (Admin.ClusterStatus): the controller\n"
    "(the node that places and moves replicas; \"none\" while one is elected), the\n"
    "nodes being drained, each node (id, address, alive) and, per collection and\n"
    "shard, the last sequence of the shard's log and each replica: its node, its\n"
    "state (ACTIVE: serves reads and acknowledges writes; CATCHING_UP: applying\n"
    "the log or installing a snapshot, out of the read rotation; DOWN: its node is\n"
    "not alive), the log sequence it has applied, its lag (log_last_seq -\n"
    "applied_seq) and MOVES: \"leaving\" for a replica being moved off its node\n"
    "(removed once its replacement, CATCHING_UP in the same shard meanwhile, is\n"
    "ACTIVE), else \"-\". A single quiverd prints \"single node (not clustered)\".\n"
    "--json: {\"clustered\", \"controller\" (\"\" while none), \"draining\": [ids],\n"
    "\"nodes\": [{\"id\", \"address\", \"alive\"}], \"shards\": [{\"collection\",\n"
    "\"shard\", \"log_last_seq\", \"replicas\": [{\"node\", \"state\",\n"
    "\"applied_seq\", \"lag\", \"leaving\"}]}]}.\n";

static const char usage_cluster_drain[] =
    "Usage: quiver cluster drain NODE [--wait] [--cancel]\n"
    "\n"
    "Drain a node, e.g. before maintenance (Admin.DrainNode): the cluster's\n"
    "controller places each of its replicas on another node (snapshot and log\n"
    "replay) and removes the node's copy only once the new one is ACTIVE, so a\n"
    "shard never has fewer replicas than asked for. The node stays in the cluster,\n"
    "drained (no replica is placed on it), until taken back with --cancel. Prints\n"
    "how many replicas the node holds now. NODE is a node id (quiver cluster\n"
    "status lists them; unknown: exit 4). A single quiverd refuses (exit 5).\n"
    "\n"
    "  --wait     then wait until the node holds no replica and every replica of\n"
    "             the shards it held is ACTIVE and none is leaving: asks the\n"
    "             cluster's status every 500 ms, with a progress line on stderr (a\n"
    "             live line on a terminal, else one line per change). No deadline;\n"
    "             Ctrl-C stops waiting (exit 130) and the drain goes on. Exit 5 when\n"
    "             the drain is cancelled meanwhile.\n"
    "  --cancel   take the node back: no longer drained, it can be given replicas\n"
    "             again (new collections, replacements, 'quiver cluster\n"
    "             rebalance'); moves already made stay\n"
    "\n"
    "--json: {\"node\", \"draining\" (false after --cancel), \"replicas_left\"};\n"
    "with --wait also \"seconds\" (the time waited).\n";

static const char usage_cluster_rebalance[] =
    "Usage: quiver cluster rebalance\n"
    "\n"
    "Ask the cluster's controller for a balancing pass now (Admin.Rebalance): it\n"
    "moves replicas from the most to the least loaded nodes (by replica count;\n"
    "never two replicas of a shard on one node, none onto a drained node), one at\n"
    "a time, each removed from its node only once its replacement is ACTIVE. It\n"
    "returns at once; 'quiver cluster status' shows the moves (MOVES: leaving).\n"
    "Nodes run such passes by themselves unless started with --no-rebalance. A\n"
    "single quiverd refuses (exit 5). --json: {\"rebalance\": \"requested\"}.\n";

/* ---------------------------------------------------- values of options */
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
        if (cli_parse_float(tok, &v[n])) {
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
/* Documents are built with jansson and printed on one line by j_print. A
 * failed allocation anywhere marks the document; j_print then fails the
 * command instead of printing half of it. */
static int g_json_oom;

/* s with every byte that does not begin a valid UTF-8 sequence replaced by
 * U+FFFD (jansson refuses invalid UTF-8); malloc'd, NULL when out of memory. */
static char *utf8_fix(const char *s)
{
    size_t n = strlen(s);
    char *out = malloc(3 * n + 1), *o = out;
    if (!out) return NULL;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
        json_t *t = len && i + len <= n ? json_stringn(s + i, len) : NULL; /* jansson's own check */
        if (t) {
            memcpy(o, s + i, len);
            o += len;
            i += len;
            json_decref(t);
        } else {
            memcpy(o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        }
    }
    *o = '\0';
    return out;
}

static json_t *j_str(const char *s)
{
    json_t *j = json_string(s ? s : "");
    if (!j && s) {
        char *fixed = utf8_fix(s);
        j = fixed ? json_string(fixed) : NULL;
        free(fixed);
    }
    if (!j) g_json_oom = 1;
    return j;
}

/* A number; NaN and infinities (not JSON) become null. */
static json_t *j_num(double v)
{
    json_t *j = isfinite(v) ? json_real(v) : json_null();
    if (!j) g_json_oom = 1;
    return j;
}

static json_t *j_i64(int64_t v)
{
    json_t *j = json_integer((json_int_t)v);
    if (!j) g_json_oom = 1;
    return j;
}

/* jansson integers are signed 64-bit: beyond that (never an id) a real. */
static json_t *j_u64(uint64_t v)
{
    return v <= INT64_MAX ? j_i64((int64_t)v) : j_num((double)v);
}

static json_t *j_bool(int b) { return json_boolean(b); }

static json_t *j_obj(void)
{
    json_t *j = json_object();
    if (!j) g_json_oom = 1;
    return j;
}

static json_t *j_arr(void)
{
    json_t *j = json_array();
    if (!j) g_json_oom = 1;
    return j;
}

/* obj[key] = v, taking v's reference (NULL v: out of memory, marked). */
static void j_set(json_t *obj, const char *key, json_t *v)
{
    if (!obj || !v) {
        json_decref(v);
        g_json_oom = 1;
        return;
    }
    if (json_object_set_new(obj, key, v) == 0) return;
    char *fixed = utf8_fix(key); /* a key that is not UTF-8 */
    if (!fixed || json_object_set_new(obj, fixed, v)) g_json_oom = 1;
    free(fixed);
}

static void j_push(json_t *arr, json_t *v)
{
    if (!arr || !v || json_array_append_new(arr, v)) {
        if (arr && v) json_decref(v);
        g_json_oom = 1;
    }
}

/* Print doc as one line on stdout and release it (cli_json_print), unless
 * building it failed somewhere. Returns an exit code. */
static int j_print(json_t *doc)
{
    if (g_json_oom) {
        json_decref(doc);
        doc = NULL;
    }
    return cli_json_print(doc);
}

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
static json_t *json_index(const Quiver__V1__IndexInfo *ii)
{
    json_t *o = j_obj();
    j_set(o, "kind", j_str(ii->kind));
    j_set(o, "trained", j_bool(ii->trained));
    j_set(o, "count", j_u64(ii->count));
    j_set(o, "nlist", j_u64(ii->nlist));
    j_set(o, "default_nprobe", j_u64(ii->default_nprobe));
    j_set(o, "trained_for", j_u64(ii->trained_for));
    j_set(o, "pq_m", j_u64(ii->pq_m));
    j_set(o, "pq_nbits", j_u64(ii->pq_nbits));
    j_set(o, "refine", j_u64(ii->refine));
    j_set(o, "covered_seq", j_u64(ii->covered_seq));
    j_set(o, "rebuilding", j_bool(ii->rebuilding));
    j_set(o, "phase", j_str(ii->phase));
    j_set(o, "rebuild_done", j_u64(ii->rebuild_done));
    j_set(o, "rebuild_total", j_u64(ii->rebuild_total));
    json_t *spec = json_null();
    if (ii->spec) {
        spec = j_obj();
        j_set(spec, "kind", j_str(ii->spec->kind));
        j_set(spec, "nlist", j_u64(ii->spec->nlist));
        j_set(spec, "pq_m", j_u64(ii->spec->pq_m));
        j_set(spec, "pq_nbits", j_u64(ii->spec->pq_nbits));
        j_set(spec, "refine", j_u64(ii->spec->refine));
    }
    j_set(o, "spec", spec);
    json_t *rt = j_arr();
    for (size_t i = 0; i < ii->n_recall_table; i++) {
        json_t *p = j_obj();
        j_set(p, "recall", j_num(ii->recall_table[i]->recall));
        j_set(p, "nprobe", j_u64(ii->recall_table[i]->nprobe));
        j_push(rt, p);
    }
    j_set(o, "recall_table", rt);
    return o;
}

/* An index, or null when there is none. */
static json_t *json_index_or_null(const Quiver__V1__IndexInfo *ii)
{
    return ii ? json_index(ii) : json_null();
}

static json_t *json_collection(const Quiver__V1__CollectionInfo *ci)
{
    json_t *o = j_obj();
    j_set(o, "name", j_str(ci->name));
    j_set(o, "dim", j_u64(ci->dim));
    j_set(o, "metric", j_str(metric_name(ci->metric)));
    j_set(o, "count", j_u64(ci->count));
    j_set(o, "last_seq", j_u64(ci->last_seq));
    j_set(o, "shards", j_u64(ci->shards));
    j_set(o, "replicas", j_u64(ci->replicas));
    j_set(o, "index", json_index_or_null(ci->index));
    return o;
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
    kv("", "shards", "%u", ci->shards);
    kv("", "replicas", "%u", ci->replicas);
    if (ci->index) {
        printf("index:\n");
        print_index("  ", ci->index);
    }
}

/* -------------------------------------------------------------- plumbing */
static int describe(const char *name, Quiver__V1__CollectionInfo **ci)
{
    Quiver__V1__DescribeCollectionRequest req = QUIVER__V1__DESCRIBE_COLLECTION_REQUEST__INIT;
    req.name = (char *)name;
    return cli_call(QVC_COLLECTIONS_DESCRIBE, &req.base, &quiver__v1__collection_info__descriptor,
                (ProtobufCMessage **)ci);
}

/* -------------------------------------------------------------- commands */
static int cmd_health(int argc, char **argv)
{
    const char *service = NULL, *pos[1];
    int npos;
    optdef opts[] = {OPT_VAL("--service", &service), OPT_END};
    int rc = cli_parse_args(argc, argv, opts, pos, 0, &npos, "health", usage_health);
    if (rc >= 0) return rc;
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = (char *)(service ? service : "");
    Grpc__Health__V1__HealthCheckResponse *rep = NULL;
    rc = cli_call(QVC_HEALTH_CHECK, &req.base, &grpc__health__v1__health_check_response__descriptor,
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
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    if (cli_json()) {
        json_t *o = j_obj();
        j_set(o, "addr", j_str(cli_addr()));
        j_set(o, "service", j_str(req.service));
        j_set(o, "status", j_str(name));
        if ((rc = j_print(o))) return rc;
    } else {
        printf("%s\n", name);
    }
    return serving ? EXIT_OK : EXIT_SERVER;
}

static int cmd_coll_list(int argc, char **argv)
{
    const char *pos[1];
    int npos;
    int rc = cli_parse_args(argc, argv, NULL, pos, 0, &npos, "collections list", usage_coll_list);
    if (rc >= 0) return rc;
    Quiver__V1__ListCollectionsRequest req = QUIVER__V1__LIST_COLLECTIONS_REQUEST__INIT;
    Quiver__V1__ListCollectionsResponse *rep = NULL;
    rc = cli_call(QVC_COLLECTIONS_LIST, &req.base, &quiver__v1__list_collections_response__descriptor,
              (ProtobufCMessage **)&rep);
    if (rc) return rc;
    if (cli_json()) {
        json_t *o = j_obj(), *list = j_arr();
        for (size_t i = 0; i < rep->n_collections; i++) j_push(list, json_collection(rep->collections[i]));
        j_set(o, "collections", list);
        rc = j_print(o);
    } else if (rep->n_collections == 0) {
        printf("no collections\n");
    } else {
        table t = {.ncol = 10, .align = "lrlrlllrrr"};
        const char *head[] = {"NAME", "DIM", "METRIC", "COUNT", "INDEX", "TRAINED", "REBUILDING",
                              "NLIST", "SHARDS", "REPLICAS"};
        for (int i = 0; i < 10; i++) tbl_cell(&t, "%s", head[i]);
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
            tbl_cell(&t, "%u", c->shards);
            tbl_cell(&t, "%u", c->replicas);
        }
        tbl_print(&t);
        tbl_free(&t);
    }
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    return rc;
}

static int cmd_coll_create(int argc, char **argv)
{
    const char *cmd = "collections create";
    const char *pos[1], *dim = NULL, *metric = NULL, *shards = NULL, *replicas = NULL;
    index_opts io = {0};
    int npos;
    optdef opts[] = {OPT_VAL("--dim", &dim),         OPT_VAL("--metric", &metric),
                     OPT_VAL("--kind", &io.kind),     OPT_VAL("--nlist", &io.nlist),
                     OPT_VAL("--pq-m", &io.pq_m),     OPT_VAL("--pq-nbits", &io.pq_nbits),
                     OPT_VAL("--refine", &io.refine), OPT_VAL("--shards", &shards),
                     OPT_VAL("--replicas", &replicas), OPT_END};
    int rc = cli_parse_args(argc, argv, opts, pos, 1, &npos, cmd, usage_coll_create);
    if (rc >= 0) return rc;
    if (npos != 1) return cli_usage_error(cmd, "the collection NAME is missing");
    if (!dim) return cli_usage_error(cmd, "--dim is required");
    Quiver__V1__CreateCollectionRequest req = QUIVER__V1__CREATE_COLLECTION_REQUEST__INIT;
    Quiver__V1__IndexSpec spec = QUIVER__V1__INDEX_SPEC__INIT;
    req.name = (char *)pos[0];
    req.metric = QUIVER__V1__METRIC__L2;
    if (cli_opt_u32(cmd, "--dim", dim, &req.dim, &rc) ||
        cli_opt_u32(cmd, "--shards", shards, &req.shards, &rc) ||
        cli_opt_u32(cmd, "--replicas", replicas, &req.replicas, &rc))
        return rc;
    if (metric && cli_parse_metric(metric, &req.metric))
        return cli_usage_error(cmd, "--metric must be l2, ip or cosine, not '%s'", metric);
    int any;
    if ((rc = cli_fill_spec(cmd, &io, &spec, &any))) return rc;
    if (any) req.index = &spec;
    Quiver__V1__CollectionInfo *ci = NULL;
    if ((rc = cli_call(QVC_COLLECTIONS_CREATE, &req.base, &quiver__v1__collection_info__descriptor,
                   (ProtobufCMessage **)&ci)))
        return rc;
    if (cli_json()) rc = j_print(json_collection(ci));
    else {
        printf("created collection \"%s\"\n", ci->name);
        print_collection(ci);
    }
    protobuf_c_message_free_unpacked(&ci->base, NULL);
    return rc;
}

static int cmd_coll_describe(int argc, char **argv)
{
    const char *cmd = "collections describe", *pos[1];
    int npos;
    int rc = cli_parse_args(argc, argv, NULL, pos, 1, &npos, cmd, usage_coll_describe);
    if (rc >= 0) return rc;
    if (npos != 1) return cli_usage_error(cmd, "the collection NAME is missing");
    Quiver__V1__CollectionInfo *ci = NULL;
    if ((rc = describe(pos[0], &ci))) return rc;
    if (cli_json()) rc = j_print(json_collection(ci));
    else print_collection(ci);
    protobuf_c_message_free_unpacked(&ci->base, NULL);
    return rc;
}

static int cmd_coll_drop(int argc, char **argv)
{
    const char *cmd = "collections drop", *pos[1];
    int npos;
    int rc = cli_parse_args(argc, argv, NULL, pos, 1, &npos, cmd, usage_coll_drop);
    if (rc >= 0) return rc;
    if (npos != 1) return cli_usage_error(cmd, "the collection NAME is missing");
    Quiver__V1__DropCollectionRequest req = QUIVER__V1__DROP_COLLECTION_REQUEST__INIT;
    req.name = (char *)pos[0];
    Quiver__V1__DropCollectionResponse *rep = NULL;
    if ((rc = cli_call(QVC_COLLECTIONS_DROP, &req.base, &quiver__v1__drop_collection_response__descriptor,
                   (ProtobufCMessage **)&rep)))
        return rc;
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    if (cli_json()) {
        json_t *o = j_obj();
        j_set(o, "dropped", j_str(pos[0]));
        return j_print(o);
    } else {
        printf("dropped collection \"%s\"\n", pos[0]);
    }
    return EXIT_OK;
}

static const char *replica_state_name(Quiver__V1__ReplicaState st)
{
    switch (st) {
    case QUIVER__V1__REPLICA_STATE__REPLICA_ACTIVE: return "ACTIVE";
    case QUIVER__V1__REPLICA_STATE__REPLICA_CATCHING_UP: return "CATCHING_UP";
    case QUIVER__V1__REPLICA_STATE__REPLICA_DOWN: return "DOWN";
    default: return "UNKNOWN";
    }
}

/* How far a replica is behind its shard's log (0 when ahead: the log's last
 * sequence may be read before the replica's). */
static uint64_t replica_lag(const Quiver__V1__ShardStatus *s, const Quiver__V1__ReplicaStatus *r)
{
    return s->log_last_seq > r->applied_seq ? s->log_last_seq - r->applied_seq : 0;
}

static json_t *json_cluster_status(const Quiver__V1__ClusterStatusResponse *st)
{
    json_t *o = j_obj(), *nodes = j_arr(), *shards = j_arr(), *draining = j_arr();
    j_set(o, "clustered", j_bool(st->clustered));
    j_set(o, "controller", j_str(st->controller));
    for (size_t i = 0; i < st->n_draining; i++) j_push(draining, j_str(st->draining[i]));
    j_set(o, "draining", draining);
    for (size_t i = 0; i < st->n_nodes; i++) {
        const Quiver__V1__NodeStatus *n = st->nodes[i];
        json_t *jn = j_obj();
        j_set(jn, "id", j_str(n->id));
        j_set(jn, "address", j_str(n->address));
        j_set(jn, "alive", j_bool(n->alive));
        j_push(nodes, jn);
    }
    for (size_t i = 0; i < st->n_shards; i++) {
        const Quiver__V1__ShardStatus *s = st->shards[i];
        json_t *js = j_obj(), *reps = j_arr();
        j_set(js, "collection", j_str(s->collection));
        j_set(js, "shard", j_u64(s->shard));
        j_set(js, "log_last_seq", j_u64(s->log_last_seq));
        for (size_t k = 0; k < s->n_replicas; k++) {
            const Quiver__V1__ReplicaStatus *r = s->replicas[k];
            json_t *jr = j_obj();
            j_set(jr, "node", j_str(r->node));
            j_set(jr, "state", j_str(replica_state_name(r->state)));
            j_set(jr, "applied_seq", j_u64(r->applied_seq));
            j_set(jr, "lag", j_u64(replica_lag(s, r)));
            j_set(jr, "leaving", j_bool(r->leaving));
            j_push(reps, jr);
        }
        j_set(js, "replicas", reps);
        j_push(shards, js);
    }
    j_set(o, "nodes", nodes);
    j_set(o, "shards", shards);
    return o;
}

static void print_cluster_status(const Quiver__V1__ClusterStatusResponse *st)
{
    size_t alive = 0, nrep = 0, active = 0, leaving = 0;
    printf("controller: %s\n", st->controller && st->controller[0] ? st->controller : "none");
    printf("draining: ");
    for (size_t i = 0; i < st->n_draining; i++) printf("%s%s", i ? ", " : "", st->draining[i]);
    printf("%s\n", st->n_draining ? "" : "none");
    for (size_t i = 0; i < st->n_nodes; i++) alive += st->nodes[i]->alive != 0;
    printf("nodes: %zu (%zu alive)\n", st->n_nodes, alive);
    if (st->n_nodes) {
        table t = {.ncol = 3, .align = "lll"};
        tbl_cell(&t, "  ID");
        tbl_cell(&t, "ADDRESS");
        tbl_cell(&t, "ALIVE");
        for (size_t i = 0; i < st->n_nodes; i++) {
            const Quiver__V1__NodeStatus *n = st->nodes[i];
            tbl_cell(&t, "  %s", n->id);
            tbl_cell(&t, "%s", n->address && n->address[0] ? n->address : "-");
            tbl_cell(&t, "%s", n->alive ? "yes" : "no");
        }
        tbl_print(&t);
        tbl_free(&t);
    }
    for (size_t i = 0; i < st->n_shards; i++)
        for (size_t k = 0; k < st->shards[i]->n_replicas; k++) {
            nrep++;
            active += st->shards[i]->replicas[k]->state == QUIVER__V1__REPLICA_STATE__REPLICA_ACTIVE;
            leaving += st->shards[i]->replicas[k]->leaving != 0;
        }
    printf("\nshards: %zu (%zu replicas, %zu ACTIVE", st->n_shards, nrep, active);
    if (leaving) printf(", %zu leaving", leaving);
    printf(")\n");
    if (!st->n_shards) return;
    /* one row per replica; the collection, shard and log's last on each row */
    table t = {.ncol = 8, .align = "lrrllrrl"};
    const char *head[] = {"  COLLECTION", "SHARD", "LOG_LAST_SEQ", "NODE", "STATE", "APPLIED_SEQ", "LAG", "MOVES"};
    for (int i = 0; i < 8; i++) tbl_cell(&t, "%s", head[i]);
    for (size_t i = 0; i < st->n_shards; i++) {
        const Quiver__V1__ShardStatus *s = st->shards[i];
        if (!s->n_replicas) { /* a shard without replicas (never placed) */
            tbl_cell(&t, "  %s", s->collection);
            tbl_cell(&t, "%u", s->shard);
            tbl_cell(&t, "%" PRIu64, s->log_last_seq);
            for (int c = 0; c < 5; c++) tbl_cell(&t, "-");
            continue;
        }
        for (size_t k = 0; k < s->n_replicas; k++) {
            const Quiver__V1__ReplicaStatus *r = s->replicas[k];
            tbl_cell(&t, "  %s", s->collection);
            tbl_cell(&t, "%u", s->shard);
            tbl_cell(&t, "%" PRIu64, s->log_last_seq);
            tbl_cell(&t, "%s", r->node);
            tbl_cell(&t, "%s", replica_state_name(r->state));
            tbl_cell(&t, "%" PRIu64, r->applied_seq);
            tbl_cell(&t, "%" PRIu64, replica_lag(s, r));
            tbl_cell(&t, "%s", r->leaving ? "leaving" : "-");
        }
    }
    tbl_print(&t);
    tbl_free(&t);
}

static int cmd_cluster_status(int argc, char **argv)
{
    const char *cmd = "cluster status", *pos[1];
    int npos;
    int rc = cli_parse_args(argc, argv, NULL, pos, 0, &npos, cmd, usage_cluster_status);
    if (rc >= 0) return rc;
    Quiver__V1__ClusterStatusRequest req = QUIVER__V1__CLUSTER_STATUS_REQUEST__INIT;
    Quiver__V1__ClusterStatusResponse *rep = NULL;
    if ((rc = cli_call(QVC_ADMIN_CLUSTER_STATUS, &req.base, &quiver__v1__cluster_status_response__descriptor,
                       (ProtobufCMessage **)&rep)))
        return rc;
    if (cli_json()) rc = j_print(json_cluster_status(rep));
    else if (!rep->clustered) printf("single node (not clustered)\n");
    else print_cluster_status(rep);
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    return rc;
}

/* ------------------------------------------------- cluster drain, rebalance */
static double mono_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static const char *plural(uint64_t n, const char *one, const char *many) { return n == 1 ? one : many; }

/* The shards a drained node held at some point of the wait. */
typedef struct shard_set {
    struct shard_ref {
        char *coll;
        uint32_t shard;
    } *a;
    size_t n, cap;
} shard_set;

static int shard_set_has(const shard_set *set, const char *coll, uint32_t shard)
{
    for (size_t i = 0; i < set->n; i++)
        if (set->a[i].shard == shard && !strcmp(set->a[i].coll, coll)) return 1;
    return 0;
}

/* Returns 0, or -1 when out of memory. */
static int shard_set_add(shard_set *set, const char *coll, uint32_t shard)
{
    if (shard_set_has(set, coll, shard)) return 0;
    if (set->n == set->cap) {
        size_t cap = set->cap ? 2 * set->cap : 8;
        struct shard_ref *a = realloc(set->a, cap * sizeof *a);
        if (!a) return -1;
        set->a = a;
        set->cap = cap;
    }
    if (!(set->a[set->n].coll = strdup(coll))) return -1;
    set->a[set->n++].shard = shard;
    return 0;
}

static void shard_set_free(shard_set *set)
{
    for (size_t i = 0; i < set->n; i++) free(set->a[i].coll);
    free(set->a);
    memset(set, 0, sizeof *set);
}

/* Where a drain stands in one ClusterStatus. */
typedef struct drain_view {
    int draining;         /* node is among st->draining */
    uint32_t held;        /* replicas on node */
    size_t leaving;       /* replicas of the tracked shards leaving */
    size_t not_active;    /* replicas of the tracked shards not ACTIVE */
} drain_view;

/* Add the shards node holds to set, then look at every tracked shard.
 * Returns 0, or -1 when out of memory. */
static int drain_look(const Quiver__V1__ClusterStatusResponse *st, const char *node, shard_set *set,
                      drain_view *v)
{
    memset(v, 0, sizeof *v);
    for (size_t i = 0; i < st->n_draining; i++) v->draining |= !strcmp(st->draining[i], node);
    for (size_t i = 0; i < st->n_shards; i++) {
        const Quiver__V1__ShardStatus *s = st->shards[i];
        for (size_t k = 0; k < s->n_replicas; k++)
            if (!strcmp(s->replicas[k]->node, node)) {
                v->held++;
                if (shard_set_add(set, s->collection, s->shard)) return -1;
            }
    }
    for (size_t i = 0; i < st->n_shards; i++) {
        const Quiver__V1__ShardStatus *s = st->shards[i];
        if (!shard_set_has(set, s->collection, s->shard)) continue;
        for (size_t k = 0; k < s->n_replicas; k++) {
            v->leaving += s->replicas[k]->leaving != 0;
            v->not_active += s->replicas[k]->state != QUIVER__V1__REPLICA_STATE__REPLICA_ACTIVE;
        }
    }
    return 0;
}

/* --wait: poll ClusterStatus every 500 ms until node holds no replica and
 * every replica of the shards it held is ACTIVE and none is leaving. */
static int drain_wait(const char *node, double *waited)
{
    int tty = isatty(STDERR_FILENO), drawn = 0, rc = EXIT_OK;
    double t0 = mono_now();
    char line[256], last[256] = "";
    shard_set set = {0};
    for (;;) {
        Quiver__V1__ClusterStatusRequest req = QUIVER__V1__CLUSTER_STATUS_REQUEST__INIT;
        Quiver__V1__ClusterStatusResponse *st = NULL;
        if (drawn) { /* cleared during the call: an error message gets a line of its own */
            fputs("\r\033[K", stderr);
            drawn = 0;
        }
        if ((rc = cli_call(QVC_ADMIN_CLUSTER_STATUS, &req.base,
                           &quiver__v1__cluster_status_response__descriptor, (ProtobufCMessage **)&st)))
            break;
        drain_view v;
        int bad = drain_look(st, node, &set, &v);
        protobuf_c_message_free_unpacked(&st->base, NULL);
        if (bad) {
            fprintf(stderr, "quiver: cluster drain: out of memory\n");
            rc = EXIT_SERVER;
            break;
        }
        if (!v.draining) {
            fprintf(stderr,
                    "quiver: cluster drain: node %s is no longer drained (the drain was cancelled); it "
                    "holds %" PRIu32 " %s\n",
                    node, v.held, plural(v.held, "replica", "replicas"));
            rc = EXIT_REJECTED;
            break;
        }
        if (!v.held && !v.leaving && !v.not_active) break;
        snprintf(line, sizeof line, "draining %s: %" PRIu32 " %s left, %zu leaving, %zu not ACTIVE", node,
                 v.held, plural(v.held, "replica", "replicas"), v.leaving, v.not_active);
        if (tty) {
            fprintf(stderr, "\r%s  %.1fs\033[K", line, mono_now() - t0);
            drawn = 1;
        } else if (strcmp(line, last)) {
            fprintf(stderr, "%s (%.1fs)\n", line, mono_now() - t0);
        }
        fflush(stderr);
        snprintf(last, sizeof last, "%s", line);
        struct timespec half = {0, 500 * 1000 * 1000};
        while (nanosleep(&half, &half) != 0) {
        }
    }
    shard_set_free(&set);
    *waited = mono_now() - t0;
    return rc;
}

static int cmd_cluster_drain(int argc, char **argv)
{
    const char *cmd = "cluster drain", *pos[1];
    int npos, wait = 0, cancel = 0;
    optdef opts[] = {OPT_FLAG("--wait", &wait), OPT_FLAG("--cancel", &cancel), OPT_END};
    int rc = cli_parse_args(argc, argv, opts, pos, 1, &npos, cmd, usage_cluster_drain);
    if (rc >= 0) return rc;
    if (npos != 1 || !pos[0][0]) return cli_usage_error(cmd, "the NODE is missing");
    if (wait && cancel) return cli_usage_error(cmd, "--wait and --cancel do not go together");
    Quiver__V1__DrainNodeRequest req = QUIVER__V1__DRAIN_NODE_REQUEST__INIT;
    Quiver__V1__DrainNodeResponse *rep = NULL;
    req.node = (char *)pos[0];
    req.cancel = cancel;
    if ((rc = cli_call(QVC_ADMIN_DRAIN_NODE, &req.base, &quiver__v1__drain_node_response__descriptor,
                       (ProtobufCMessage **)&rep)))
        return rc;
    uint32_t left = rep->replicas_left;
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    double waited = 0;
    if (wait) {
        if (!cli_json())
            printf("draining node %s: %" PRIu32 " %s left\n", pos[0], left, plural(left, "replica", "replicas"));
        fflush(stdout);
        if ((rc = drain_wait(pos[0], &waited))) return rc;
        left = 0;
    }
    if (cli_json()) {
        json_t *o = j_obj();
        j_set(o, "node", j_str(pos[0]));
        j_set(o, "draining", j_bool(!cancel));
        j_set(o, "replicas_left", j_u64(left));
        if (wait) j_set(o, "seconds", j_num(waited));
        return j_print(o);
    }
    if (cancel)
        printf("node %s taken back (no longer drained): it holds %" PRIu32 " %s\n", pos[0], left,
               plural(left, "replica", "replicas"));
    else if (wait)
        printf("node %s drained: it holds no replica (%.1fs)\n", pos[0], waited);
    else if (left)
        printf("draining node %s: %" PRIu32 " %s left (quiver cluster status shows the moves)\n", pos[0], left,
               plural(left, "replica", "replicas"));
    else printf("draining node %s: it holds no replica\n", pos[0]);
    return EXIT_OK;
}

static int cmd_cluster_rebalance(int argc, char **argv)
{
    const char *cmd = "cluster rebalance", *pos[1];
    int npos;
    int rc = cli_parse_args(argc, argv, NULL, pos, 0, &npos, cmd, usage_cluster_rebalance);
    if (rc >= 0) return rc;
    Quiver__V1__RebalanceRequest req = QUIVER__V1__REBALANCE_REQUEST__INIT;
    Quiver__V1__RebalanceResponse *rep = NULL;
    if ((rc = cli_call(QVC_ADMIN_REBALANCE, &req.base, &quiver__v1__rebalance_response__descriptor,
                       (ProtobufCMessage **)&rep)))
        return rc;
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    if (cli_json()) {
        json_t *o = j_obj();
        j_set(o, "rebalance", j_str("requested"));
        return j_print(o);
    }
    printf("rebalance requested: the controller moves replicas from the most to the least loaded nodes, "
           "one at a time (quiver cluster status shows the moves)\n");
    return EXIT_OK;
}

static int cmd_index_status(int argc, char **argv)
{
    const char *cmd = "index status", *pos[1];
    int npos;
    int rc = cli_parse_args(argc, argv, NULL, pos, 1, &npos, cmd, usage_index_status);
    if (rc >= 0) return rc;
    if (npos != 1) return cli_usage_error(cmd, "the COLLECTION is missing");
    Quiver__V1__CollectionInfo *ci = NULL;
    if ((rc = describe(pos[0], &ci))) return rc;
    if (cli_json()) {
        json_t *o = j_obj();
        j_set(o, "collection", j_str(ci->name));
        j_set(o, "items", j_u64(ci->count));
        j_set(o, "index", json_index_or_null(ci->index));
        rc = j_print(o);
    } else {
        kv("", "collection", "%s", ci->name);
        kv("", "items", "%" PRIu64, ci->count);
        if (ci->index) print_index("", ci->index);
    }
    protobuf_c_message_free_unpacked(&ci->base, NULL);
    return rc;
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
    meter_bar_line(p->phase, 12, p->total ? f : -1, tail);
    p->drawn = 1;
}

static void *progress_tick(void *arg)
{
    progress *p = arg;
    pthread_mutex_lock(&p->mu);
    while (!p->stop) {
        meter_tick_wait(&p->cv, &p->mu);
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
    optdef opts[] = {OPT_VAL("--kind", &io.kind),         OPT_VAL("--nlist", &io.nlist),
                     OPT_VAL("--pq-m", &io.pq_m),         OPT_VAL("--pq-nbits", &io.pq_nbits),
                     OPT_VAL("--refine", &io.refine),     OPT_END};
    int rc = cli_parse_args(argc, argv, opts, pos, 1, &npos, cmd, usage_index_rebuild);
    if (rc >= 0) return rc;
    if (npos != 1) return cli_usage_error(cmd, "the COLLECTION is missing");
    Quiver__V1__RebuildIndexRequest req = QUIVER__V1__REBUILD_INDEX_REQUEST__INIT;
    Quiver__V1__IndexSpec spec = QUIVER__V1__INDEX_SPEC__INIT;
    int any;
    if ((rc = cli_fill_spec(cmd, &io, &spec, &any))) return rc;
    req.collection = (char *)pos[0];
    if (any) req.index = &spec;

    cli_set_cancel_mode(1); /* from here Ctrl-C cancels the rebuild */
    qvc *c = cli_conn(&rc);
    if (!c) return rc;
    qvc_status st;
    qvc_stream *s = NULL;
    if (qvc_stream_start(c, QVC_ADMIN_REBUILD_INDEX, &req.base, 0, &s, &st))
        return cli_report(&st);
    cli_set_stream(s);
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
    cli_set_stream(NULL);
    int code = qvc_stream_finish(s, &st);
    progress_end(&p);
    if (code) {
        if (last) protobuf_c_message_free_unpacked(&last->base, NULL);
        if (cli_interrupted()) {
            fprintf(stderr, "quiver: %s: rebuild of \"%s\" cancelled by Ctrl-C (%s)\n",
                    qvc_status_name(code), pos[0], st.details[0] ? st.details : "no message");
            return EXIT_INTERRUPTED;
        }
        return cli_report(&st);
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
    if (cli_json()) {
        json_t *o = j_obj();
        j_set(o, "collection", j_str(pos[0]));
        j_set(o, "elapsed_seconds", j_num(elapsed));
        j_set(o, "index", json_index_or_null(ii));
        rc = j_print(o);
    } else {
        printf("rebuilt the index of \"%s\" in %.1fs\n", pos[0], elapsed);
        if (ii) print_index("", ii);
    }
    if (last) protobuf_c_message_free_unpacked(&last->base, NULL);
    if (ci) protobuf_c_message_free_unpacked(&ci->base, NULL);
    return rc;
}

/* An attribute value as JSON (also the human form: quoted strings). */
static json_t *json_value(const Quiver__V1__Value *v)
{
    switch (v ? v->kind_case : QUIVER__V1__VALUE__KIND__NOT_SET) {
    case QUIVER__V1__VALUE__KIND_STRING_VALUE: return j_str(v->string_value);
    case QUIVER__V1__VALUE__KIND_INT_VALUE: return j_i64(v->int_value);
    case QUIVER__V1__VALUE__KIND_DOUBLE_VALUE: return j_num(v->double_value);
    case QUIVER__V1__VALUE__KIND_BOOL_VALUE: return j_bool(v->bool_value);
    case QUIVER__V1__VALUE__KIND_STRING_LIST: {
        json_t *a = j_arr();
        for (size_t i = 0; v->string_list && i < v->string_list->n_values; i++)
            j_push(a, j_str(v->string_list->values[i]));
        return a;
    }
    default: return json_null();
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
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_value(sorted[i]->value);
        char *text = v ? json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
        fprintf(f, "%s%s=%s", i ? ", " : "", sorted[i]->key, text ? text : "?");
        free(text);
        json_decref(v);
    }
    free(sorted);
    fclose(f);
    return buf;
}

/* Hits as a JSON array of {rank, id, score, attributes}. */
static json_t *json_hits(const Quiver__V1__Hits *hits)
{
    json_t *arr = j_arr();
    for (size_t i = 0; hits && i < hits->n_hits; i++) {
        const Quiver__V1__Hit *h = hits->hits[i];
        json_t *o = j_obj(), *attrs = j_obj();
        j_set(o, "rank", j_u64(i + 1));
        j_set(o, "id", j_u64(h->id));
        j_set(o, "score", j_num(h->score));
        for (size_t a = 0; a < h->n_attributes; a++)
            j_set(attrs, h->attributes[a]->key, json_value(h->attributes[a]->value));
        j_set(o, "attributes", attrs);
        j_push(arr, o);
    }
    return arr;
}

/* Hits as a table: RANK ID SCORE ATTRIBUTES, or "no hits". */
static void print_hits(const Quiver__V1__Hits *hits)
{
    size_t n = hits ? hits->n_hits : 0;
    if (n == 0) {
        printf("no hits\n");
        return;
    }
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

/* Options search and recommend share: their values as given, and what they
 * become. Everything allocated is released by query_opts_free. */
typedef struct query_opts {
    const char *k, *nprobe, *min_recall, *filter, *threshold, *group_by, *group_size;
    int no_attrs, without_attrs;
    arglist exclude;
    /* parsed */
    uint32_t k_val, nprobe_val, group_size_val;
    float min_recall_val;
    Quiver__V1__Filter *filter_msg;
    uint64_t *exclude_ids;
    size_t n_exclude_ids;
    Quiver__V1__Threshold threshold_msg;
} query_opts;

#define QUERY_OPTDEFS(q)                                                                     \
    OPT_VAL("--k", &(q).k), OPT_VAL("--nprobe", &(q).nprobe),                                \
        OPT_VAL("--min-recall", &(q).min_recall), OPT_FLAG("--no-attributes", &(q).no_attrs), \
        OPT_FLAG("--without-attributes", &(q).without_attrs), OPT_VAL("--filter", &(q).filter), \
        OPT_LIST("--exclude", &(q).exclude), OPT_VAL("--threshold", &(q).threshold),          \
        OPT_VAL("--group-by", &(q).group_by), OPT_VAL("--group-size", &(q).group_size)

static void query_opts_free(query_opts *q)
{
    cli_arglist_free(&q->exclude);
    free(q->exclude_ids);
    if (q->filter_msg) protobuf_c_message_free_unpacked(&q->filter_msg->base, NULL);
}

/* "1,2, 3" (each of list's values) -> ids appended to *ids. */
static int parse_id_list(const char *cmd, const arglist *list, uint64_t **ids, size_t *n)
{
    for (size_t i = 0; i < list->n; i++) {
        const char *s = list->a[i].val;
        size_t cap = *n + 2;
        for (const char *p = s; *p; p++) cap += *p == ',';
        uint64_t *grown = realloc(*ids, cap * sizeof *grown);
        if (!grown) {
            fprintf(stderr, "quiver: out of memory\n");
            return EXIT_SERVER;
        }
        *ids = grown;
        for (const char *p = s;;) {
            while (*p == ' ') p++;
            size_t len = strcspn(p, ", ");
            char tok[32];
            const char *q = p + len;
            while (*q == ' ') q++;
            if (len == 0 || len >= sizeof tok || (*q && *q != ','))
                return cli_usage_error(cmd, "%s wants comma-separated ids, not '%s'", list->a[i].opt, s);
            memcpy(tok, p, len);
            tok[len] = '\0';
            if (cli_parse_u64(tok, UINT64_MAX, &(*ids)[*n]))
                return cli_usage_error(cmd, "%s wants comma-separated ids; '%s' is not one", list->a[i].opt,
                                   tok);
            (*n)++;
            if (!*q) break;
            p = q + 1;
        }
    }
    return EXIT_OK;
}

/* Check and convert the shared options; returns an exit code. */
/* The fields SearchRequest and RecommendRequest share (same names in both),
 * from parsed options q. */
#define SET_QUERY_FIELDS(req, q)                                                \
    do {                                                                        \
        (req).k = (q).k_val;                                                    \
        (req).nprobe = (q).nprobe_val;                                          \
        (req).min_recall = (q).min_recall_val;                                  \
        (req).without_attributes = (q).without_attrs;                           \
        (req).filter = (q).filter_msg;                                          \
        (req).exclude_ids = (q).exclude_ids;                                    \
        (req).n_exclude_ids = (q).n_exclude_ids;                                \
        if ((q).threshold) (req).score_threshold = &(q).threshold_msg;          \
        if ((q).group_by) (req).group_by = (char *)(q).group_by;                \
        (req).group_size = (q).group_size_val;                                  \
    } while (0)

static int parse_query_opts(const char *cmd, query_opts *q)
{
    int rc = EXIT_OK;
    q->k_val = 10;
    q->without_attrs |= q->no_attrs;
    if (cli_opt_u32(cmd, "--k", q->k, &q->k_val, &rc) ||
        cli_opt_u32(cmd, "--nprobe", q->nprobe, &q->nprobe_val, &rc) ||
        cli_opt_u32(cmd, "--group-size", q->group_size, &q->group_size_val, &rc))
        return rc;
    if (q->min_recall && cli_parse_float(q->min_recall, &q->min_recall_val))
        return cli_usage_error(cmd, "--min-recall wants a number such as 0.9, not '%s'", q->min_recall);
    q->threshold_msg = (Quiver__V1__Threshold)QUIVER__V1__THRESHOLD__INIT;
    if (q->threshold &&
        (cli_parse_float(q->threshold, &q->threshold_msg.value) || !isfinite(q->threshold_msg.value)))
        return cli_usage_error(cmd, "--threshold wants a number, not '%s'", q->threshold);
    if (q->group_by && !q->group_by[0]) return cli_usage_error(cmd, "--group-by needs an attribute KEY");
    if (q->group_size && !q->group_by) return cli_usage_error(cmd, "--group-size goes with --group-by");
    if (q->filter) {
        char err[512];
        if (qvc_filter_from_json(q->filter, &q->filter_msg, err, sizeof err))
            return cli_usage_error(cmd, "--filter: %s", err);
    }
    return parse_id_list(cmd, &q->exclude, &q->exclude_ids, &q->n_exclude_ids);
}

/* Print the answer of a search or recommend: one list of hits as
 * {"collection", "hits"}, several (one per query) as {"collection",
 * "results": [{"hits"}, ...]}; tables with a heading per query. */
static int print_results(const char *coll, Quiver__V1__Hits *const *lists, size_t n, int several)
{
    if (cli_json()) {
        json_t *o = j_obj();
        j_set(o, "collection", j_str(coll));
        if (!several) {
            j_set(o, "hits", json_hits(n ? lists[0] : NULL));
        } else {
            json_t *res = j_arr();
            for (size_t i = 0; i < n; i++) {
                json_t *r = j_obj();
                j_set(r, "hits", json_hits(lists[i]));
                j_push(res, r);
            }
            j_set(o, "results", res);
        }
        return j_print(o);
    }
    if (!several) {
        print_hits(n ? lists[0] : NULL);
        return EXIT_OK;
    }
    for (size_t i = 0; i < n; i++) {
        printf("%squery %zu:\n", i ? "\n" : "", i + 1);
        print_hits(lists[i]);
    }
    return EXIT_OK;
}

static int parse_fusion(const char *s, Quiver__V1__Fusion *f)
{
    if (!strcasecmp(s, "rrf")) *f = QUIVER__V1__FUSION__RRF;
    else if (!strcasecmp(s, "max_score") || !strcasecmp(s, "max-score")) *f = QUIVER__V1__FUSION__MAX_SCORE;
    else if (!strcasecmp(s, "none")) *f = QUIVER__V1__FUSION__FUSION_NONE;
    else return -1;
    return 0;
}

/* What cmd_search allocates, released in one place. */
typedef struct search_state {
    query_opts q;
    arglist queries; /* --id and --vector, in command-line order */
    Quiver__V1__Query *qs, **qptrs;
    Quiver__V1__Vector *vecs;
    size_t nq;
    Quiver__V1__SearchResponse *rep;
} search_state;

static int search_run(search_state *s, int argc, char **argv)
{
    const char *cmd = "search", *pos[1];
    const char *mmr = NULL, *mmr_cand = NULL, *fusion = NULL, *rrf_k = NULL;
    int npos;
    optdef opts[] = {OPT_LIST("--id", &s->queries), OPT_LIST("--vector", &s->queries),
                     QUERY_OPTDEFS(s->q),            OPT_VAL("--mmr", &mmr),
                     OPT_VAL("--mmr-candidates", &mmr_cand), OPT_VAL("--fusion", &fusion),
                     OPT_VAL("--rrf-k", &rrf_k),     OPT_END};
    int rc = cli_parse_args(argc, argv, opts, pos, 1, &npos, cmd, usage_search);
    if (rc >= 0) return rc;
    if (npos != 1) return cli_usage_error(cmd, "the COLLECTION is missing");
    if (s->queries.n == 0) return cli_usage_error(cmd, "give at least one --id or --vector");
    if ((rc = parse_query_opts(cmd, &s->q))) return rc;

    Quiver__V1__SearchRequest req = QUIVER__V1__SEARCH_REQUEST__INIT;
    Quiver__V1__Mmr mmr_msg = QUIVER__V1__MMR__INIT;
    req.collection = (char *)pos[0];
    SET_QUERY_FIELDS(req, s->q);
    if (mmr) {
        if (cli_parse_float(mmr, &mmr_msg.diversity) || !(mmr_msg.diversity >= 0 && mmr_msg.diversity <= 1))
            return cli_usage_error(cmd, "--mmr wants a diversity from 0 to 1, not '%s'", mmr);
        if (cli_opt_u32(cmd, "--mmr-candidates", mmr_cand, &mmr_msg.candidates, &rc)) return rc;
        req.mmr = &mmr_msg;
    } else if (mmr_cand) {
        return cli_usage_error(cmd, "--mmr-candidates goes with --mmr");
    }
    if (fusion && parse_fusion(fusion, &req.fusion))
        return cli_usage_error(cmd, "--fusion must be rrf, max_score or none, not '%s'", fusion);
    if (rrf_k && req.fusion != QUIVER__V1__FUSION__RRF) return cli_usage_error(cmd, "--rrf-k goes with --fusion rrf");
    if (cli_opt_u32(cmd, "--rrf-k", rrf_k, &req.rrf_k, &rc)) return rc;

    s->nq = s->queries.n;
    s->qs = calloc(s->nq, sizeof *s->qs);
    s->qptrs = calloc(s->nq, sizeof *s->qptrs);
    s->vecs = calloc(s->nq, sizeof *s->vecs);
    if (!s->qs || !s->qptrs || !s->vecs) {
        fprintf(stderr, "quiver: out of memory\n");
        return EXIT_SERVER;
    }
    for (size_t i = 0; i < s->nq; i++) {
        const struct argval *a = &s->queries.a[i];
        Quiver__V1__Query *q = &s->qs[i];
        quiver__v1__query__init(q);
        quiver__v1__vector__init(&s->vecs[i]);
        s->qptrs[i] = q;
        if (!strcmp(a->opt, "--id")) {
            uint64_t x;
            if (cli_parse_u64(a->val, UINT64_MAX, &x))
                return cli_usage_error(cmd, "--id wants a whole number, not '%s'", a->val);
            q->kind_case = QUIVER__V1__QUERY__KIND_ID;
            q->id = x;
        } else {
            char bad[64] = "";
            long n = parse_vector(a->val, &s->vecs[i].values, bad, sizeof bad);
            if (n < 0)
                return cli_usage_error(cmd, "--vector wants comma-separated numbers; '%s' is not one", bad);
            s->vecs[i].n_values = (size_t)n;
            q->kind_case = QUIVER__V1__QUERY__KIND_VECTOR;
            q->vector = &s->vecs[i];
        }
    }
    req.queries = s->qptrs;
    req.n_queries = s->nq;
    rc = cli_call(QVC_SEARCH_SEARCH, &req.base, &quiver__v1__search_response__descriptor,
              (ProtobufCMessage **)&s->rep);
    if (rc) return rc;
    int several = s->nq > 1 && req.fusion == QUIVER__V1__FUSION__FUSION_NONE;
    return print_results(pos[0], s->rep->results, s->rep->n_results, several);
}

static int cmd_search(int argc, char **argv)
{
    search_state s = {0};
    int rc = search_run(&s, argc, argv);
    for (size_t i = 0; i < s.nq && s.vecs; i++) free(s.vecs[i].values);
    free(s.vecs);
    free(s.qptrs);
    free(s.qs);
    if (s.rep) protobuf_c_message_free_unpacked(&s.rep->base, NULL);
    cli_arglist_free(&s.queries);
    query_opts_free(&s.q);
    return rc;
}

/* What cmd_recommend allocates, released in one place. */
typedef struct recommend_state {
    query_opts q;
    arglist pos_list, neg_list;
    Quiver__V1__Example *ex, **pos_ptrs, **neg_ptrs;
    size_t nex;
    Quiver__V1__Hits *rep;
} recommend_state;

/* "ID[:WEIGHT],..." of each value in list -> examples from s->ex, pointers in *ptrs. */
static int parse_examples(const char *cmd, recommend_state *s, const arglist *list,
                          Quiver__V1__Example ***ptrs, size_t *n)
{
    size_t cap = 0;
    for (size_t i = 0; i < list->n; i++) {
        cap++;
        for (const char *p = list->a[i].val; *p; p++) cap += *p == ',';
    }
    if (!(*ptrs = calloc(cap ? cap : 1, sizeof **ptrs))) {
        fprintf(stderr, "quiver: out of memory\n");
        return EXIT_SERVER;
    }
    for (size_t i = 0; i < list->n; i++) {
        const char *opt = list->a[i].opt, *s0 = list->a[i].val;
        for (const char *p = s0;;) {
            while (*p == ' ') p++;
            size_t len = strcspn(p, ",");
            char tok[96];
            if (len >= sizeof tok) return cli_usage_error(cmd, "%s: '%.*s...' is too long", opt, 20, p);
            memcpy(tok, p, len);
            tok[len] = '\0';
            while (len && tok[len - 1] == ' ') tok[--len] = '\0';
            char *colon = strchr(tok, ':');
            if (colon) {
                *colon = '\0';
                for (char *t = colon; t > tok && t[-1] == ' ';) *--t = '\0';
            }
            Quiver__V1__Example *e = &s->ex[s->nex++];
            quiver__v1__example__init(e);
            uint64_t id;
            if (cli_parse_u64(tok, UINT64_MAX, &id))
                return cli_usage_error(cmd, "%s wants ID[:WEIGHT],...; '%s' is not an id", opt, tok);
            e->kind_case = QUIVER__V1__EXAMPLE__KIND_ID;
            e->id = id;
            if (colon && (cli_parse_float(colon + 1, &e->weight) || !isfinite(e->weight) || !(e->weight > 0)))
                return cli_usage_error(cmd, "%s: the weight of %s must be a number > 0, not '%s'", opt, tok,
                                   colon + 1);
            (*ptrs)[(*n)++] = e;
            if (!p[len]) break;
            p += len + 1;
        }
    }
    return EXIT_OK;
}

static int parse_strategy(const char *s, Quiver__V1__RecommendStrategy *st)
{
    if (!strcasecmp(s, "average_vector") || !strcasecmp(s, "average-vector"))
        *st = QUIVER__V1__RECOMMEND_STRATEGY__AVERAGE_VECTOR;
    else if (!strcasecmp(s, "best_score") || !strcasecmp(s, "best-score"))
        *st = QUIVER__V1__RECOMMEND_STRATEGY__BEST_SCORE;
    else if (!strcasecmp(s, "sum_scores") || !strcasecmp(s, "sum-scores"))
        *st = QUIVER__V1__RECOMMEND_STRATEGY__SUM_SCORES;
    else return -1;
    return 0;
}

static int recommend_run(recommend_state *s, int argc, char **argv)
{
    const char *cmd = "recommend", *pos[1], *strategy = NULL;
    int npos;
    optdef opts[] = {OPT_LIST("--positive", &s->pos_list), OPT_LIST("--negative", &s->neg_list),
                     OPT_VAL("--strategy", &strategy), QUERY_OPTDEFS(s->q), OPT_END};
    int rc = cli_parse_args(argc, argv, opts, pos, 1, &npos, cmd, usage_recommend);
    if (rc >= 0) return rc;
    if (npos != 1) return cli_usage_error(cmd, "the COLLECTION is missing");
    if (s->pos_list.n == 0) return cli_usage_error(cmd, "--positive is required");
    Quiver__V1__RecommendRequest req = QUIVER__V1__RECOMMEND_REQUEST__INIT;
    if (strategy && parse_strategy(strategy, &req.strategy))
        return cli_usage_error(cmd, "--strategy must be average_vector, best_score or sum_scores, not '%s'",
                           strategy);
    if ((rc = parse_query_opts(cmd, &s->q))) return rc;

    size_t cap = s->pos_list.n + s->neg_list.n;
    for (size_t i = 0; i < s->pos_list.n; i++)
        for (const char *p = s->pos_list.a[i].val; *p; p++) cap += *p == ',';
    for (size_t i = 0; i < s->neg_list.n; i++)
        for (const char *p = s->neg_list.a[i].val; *p; p++) cap += *p == ',';
    if (!(s->ex = calloc(cap, sizeof *s->ex))) {
        fprintf(stderr, "quiver: out of memory\n");
        return EXIT_SERVER;
    }
    if ((rc = parse_examples(cmd, s, &s->pos_list, &s->pos_ptrs, &req.n_positive)) ||
        (rc = parse_examples(cmd, s, &s->neg_list, &s->neg_ptrs, &req.n_negative)))
        return rc;
    req.collection = (char *)pos[0];
    req.positive = s->pos_ptrs;
    req.negative = s->neg_ptrs;
    SET_QUERY_FIELDS(req, s->q);
    rc = cli_call(QVC_SEARCH_RECOMMEND, &req.base, &quiver__v1__hits__descriptor, (ProtobufCMessage **)&s->rep);
    if (rc) return rc;
    return print_results(pos[0], &s->rep, 1, 0);
}

static int cmd_recommend(int argc, char **argv)
{
    recommend_state s = {0};
    int rc = recommend_run(&s, argc, argv);
    if (s.rep) protobuf_c_message_free_unpacked(&s.rep->base, NULL);
    free(s.pos_ptrs);
    free(s.neg_ptrs);
    free(s.ex);
    cli_arglist_free(&s.pos_list);
    cli_arglist_free(&s.neg_list);
    query_opts_free(&s.q);
    return rc;
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
    return cli_usage_error(group, "unknown subcommand '%s' of 'quiver %s'", argv[0], group);
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
    static const subcmd cluster[] = {{"status", cmd_cluster_status},
                                     {"drain", cmd_cluster_drain},
                                     {"rebalance", cmd_cluster_rebalance},
                                     {"restore", cmd_cluster_restore},
                                     {NULL, NULL}};
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
    if (strcmp(c, "cluster") == 0) return run_group("cluster", usage_cluster, cluster, argc - 1, argv + 1);
    if (strcmp(c, "search") == 0) return cmd_search(argc - 1, argv + 1);
    if (strcmp(c, "recommend") == 0) return cmd_recommend(argc - 1, argv + 1);
    if (strcmp(c, "import") == 0) return cmd_import(argc - 1, argv + 1);
    if (strcmp(c, "export") == 0) return cmd_export(argc - 1, argv + 1);
    if (strcmp(c, "backup") == 0) return cmd_backup(argc - 1, argv + 1);
    return cli_usage_error("", "unknown command '%s'", c);
}

int main(int argc, char **argv)
{
    char **args = calloc((size_t)argc + 1, sizeof *args);
    int n = 0;
    if (!args) return EXIT_SERVER;
    int rc = cli_global_options(argc, argv, args, &n);
    if (rc < 0) {
        cli_start();
        rc = run(n, args);
    }
    rc = cli_finish(rc);
    free(args);
    return rc;
}
