/*
 * quiver-bench-load: the C half of the benchmark that tools/quiver-bench
 * drives. `import` streams a vector file into a collection (Items.Import),
 * `query` times Search RPCs (one query per call from N threads, or batches),
 * `faiss` builds the same index in-process through qv_index and times it the
 * same way: the yardstick for Quiver's own overhead. Each prints one JSON
 * object on stdout (faiss --serve: one per command). Not a general bulk loader
 * and no recall computing: the driver compares the ids files with the ground
 * truth.
 */
#include <dlfcn.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <grpc/status.h>

#include "client.h"
#include "quiver/db.h"
#include "quiver/error.h"
#include "quiver/index.h"
#include "quiver/v1/quiver.pb-c.h"

#define RPC_TIMEOUT_MS 120000
#define CONNECT_TIMEOUT_MS 15000
#define TRAIN_PER_LIST 50 /* default of --train-per-list: storage/db.c TRAIN_MAX_PER_LIST */
#define TRAIN_MIN_SAMPLE 10000
#define SAMPLE_SEED 12345
#define BATCH_OMP_MIN 32 /* the server lets batches this large use every core */

static const char usage[] =
    "Usage: quiver-bench-load import --addr A --collection C --base FILE [--limit N]\n"
    "                                [--batch 1000] [--streams S] [--words FILE]\n"
    "       quiver-bench-load query --addr A --collection C --queries FILE --order FILE\n"
    "                               --k K (--nprobe P | --min-recall R) --mode single|batch\n"
    "                               [--threads T] [--batch B] [--warmup N] [--no-attrs]\n"
    "                               [--shared-conn] --out FILE\n"
    "       quiver-bench-load faiss --base FILE [--limit N] --queries FILE --order FILE\n"
    "                               --metric l2|ip|cosine --kind ivf_flat|ivf_pq|ivf_sq8|flat\n"
    "                               [--nlist N] [--pq-m M] [--pq-nbits B] [--refine R]\n"
    "                               [--train-per-list 50]\n"
    "                               --k K (--nprobes 1,2,4,... --mode single|batch [--threads T]\n"
    "                               [--batch B] [--warmup N] --out-prefix P | --serve)\n"
    "\n"
    "The C half of tools/quiver-bench. Vector files are fvecs or bvecs (bvecs are\n"
    "converted to float); row number = item id. --order is a file of uint32 row\n"
    "numbers into --queries: the queries timed, in that order. Result ids (int64,\n"
    "len(order) x k, -1 past the end) go to --out (faiss: P.<nprobe>.ids).\n"
    "\n"
    "import   Items.Import over S parallel client streams (each its own connection)\n"
    "         of --batch items per message; --words gives each item an attribute\n"
    "         \"word\" (one line per row). Reports vectors, seconds, vectors_per_s.\n"
    "query    single: T threads each with one Search RPC of one query in flight;\n"
    "         batch: T threads each with one RPC of B queries in flight. Each thread\n"
    "         has its own connection unless --shared-conn. Hits carry attributes\n"
    "         unless --no-attrs. --warmup N queries are sent first, untimed.\n"
    "         Reports qps, p50_ms, p99_ms, mean_ms (latency of one RPC) and the\n"
    "         client's CPU seconds.\n"
    "faiss    the same index through qv_index in this process: trained on a\n"
    "         sample drawn like the server's (up to --train-per-list x nlist rows,\n"
    "         at least 10,000, same generator and seed: keep it equal to the server's),\n"
    "         every row added; refine R re-ranks R x k candidates by exact distance\n"
    "         from the raw vectors. single: T threads each searching one query at a\n"
    "         time on one core; batch: T threads each searching B queries at a time\n"
    "         (OpenMP allowed). Prints the build first (train_s, add_s, index_bytes).\n"
    "         --serve: after the build, reads commands from stdin, one per line:\n"
    "           search NPROBE single|batch THREADS BATCH WARMUP OUTFILE\n"
    "           quit\n"
    "         and answers each with one JSON line.\n";

/* ------------------------------------------------------------------ misc */
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "quiver-bench-load: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) die("out of memory (%zu bytes)", n);
    return p;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) die("out of memory (%zu x %zu bytes)", n, size);
    return p;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double cpu_s(int who, double *sys)
{
    struct rusage ru;
    getrusage(who, &ru);
    *sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
}

static long parse_long(const char *opt, const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        die("--%s %s: expected an integer in %ld..%ld", opt, s, lo, hi);
    return v;
}

static double parse_double(const char *opt, const char *s)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end) die("--%s %s: expected a number", opt, s);
    return v;
}

static int has_suffix(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* Reads a whole file; [out] len. */
static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open %s: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0) die("cannot seek %s: %s", path, strerror(errno));
    long sz = ftell(f);
    if (sz < 0) die("cannot size %s: %s", path, strerror(errno));
    rewind(f);
    uint8_t *buf = xmalloc((size_t)sz);
    if (sz && fread(buf, 1, (size_t)sz, f) != (size_t)sz) die("cannot read %s", path);
    fclose(f);
    *len = (size_t)sz;
    return buf;
}

/* ---------------------------------------------------------- vector files */
typedef struct vecs {
    size_t n;
    uint32_t d;
    float *x; /* n*d */
} vecs;

/* Loads an fvecs or bvecs file (first `limit` rows; 0 = all) as floats. */
static void vecs_load(const char *path, size_t limit, vecs *out)
{
    int bytes = has_suffix(path, ".bvecs");
    if (!bytes && !has_suffix(path, ".fvecs")) die("%s: expected a .fvecs or .bvecs file", path);
    size_t len;
    uint8_t *buf = read_file(path, &len);
    if (len < 4) die("%s: empty or truncated", path);
    int32_t d;
    memcpy(&d, buf, 4);
    if (d <= 0 || d > 65536) die("%s: bad dimension %d in the first row", path, (int)d);
    size_t es = bytes ? 1 : 4, row = 4 + (size_t)d * es;
    if (len % row) die("%s: size %zu is not a multiple of the row size %zu", path, len, row);
    size_t n = len / row;
    if (limit && limit < n) n = limit;
    float *x = xmalloc(n * (size_t)d * sizeof *x);
    for (size_t i = 0; i < n; i++) {
        const uint8_t *r = buf + i * row;
        int32_t di;
        memcpy(&di, r, 4);
        if (di != d) die("%s: row %zu has dimension %d, row 0 has %d", path, i, (int)di, (int)d);
        if (bytes)
            for (int32_t j = 0; j < d; j++) x[i * (size_t)d + (size_t)j] = (float)r[4 + j];
        else
            memcpy(x + i * (size_t)d, r + 4, (size_t)d * sizeof *x);
    }
    free(buf);
    out->n = n;
    out->d = (uint32_t)d;
    out->x = x;
}

/* Loads the order file (uint32 row numbers, each < nrows). */
static uint32_t *order_load(const char *path, size_t nrows, size_t *n)
{
    size_t len;
    uint8_t *buf = read_file(path, &len);
    if (len % 4 || len == 0) die("%s: expected a non-empty array of uint32", path);
    *n = len / 4;
    uint32_t *o = (uint32_t *)buf;
    for (size_t i = 0; i < *n; i++)
        if (o[i] >= nrows) die("%s: entry %zu is row %u, the query file has %zu rows", path, i,
                               o[i], nrows);
    return o;
}

static char **words_load(const char *path, size_t n)
{
    size_t len;
    char *buf = (char *)read_file(path, &len);
    char **w = xcalloc(n, sizeof *w);
    size_t i = 0;
    char *p = buf, *end = buf + len;
    while (i < n && p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) nl = end; /* last line without newline: buf has no spare byte */
        size_t l = (size_t)(nl - p);
        w[i] = xmalloc(l + 1);
        memcpy(w[i], p, l);
        w[i][l] = '\0';
        i++;
        p = nl + 1;
    }
    if (i < n) die("%s has %zu lines, the base file %zu rows", path, i, n);
    free(buf);
    return w;
}

static void ids_write(const char *path, const int64_t *ids, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) die("cannot create %s: %s", path, strerror(errno));
    if (fwrite(ids, sizeof *ids, n, f) != n || fclose(f) != 0)
        die("cannot write %s: %s", path, strerror(errno));
}

/* ----------------------------------------------------------- latencies */
static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct timing {
    size_t queries, calls;
    double seconds, qps, p50_ms, p90_ms, p99_ms, mean_ms, max_ms;
    double cpu_user_s, cpu_sys_s;
} timing;

/* Nearest-rank percentile of sorted v (n > 0). */
static double pct(const double *v, size_t n, double p)
{
    size_t r = (size_t)ceil(p * (double)n);
    if (r < 1) r = 1;
    if (r > n) r = n;
    return v[r - 1];
}

static void timing_fill(timing *t, size_t queries, double *lat, size_t calls, double seconds)
{
    t->queries = queries;
    t->calls = calls;
    t->seconds = seconds;
    t->qps = seconds > 0 ? (double)queries / seconds : 0;
    qsort(lat, calls, sizeof *lat, cmp_double);
    double sum = 0;
    for (size_t i = 0; i < calls; i++) sum += lat[i];
    t->mean_ms = calls ? 1e3 * sum / (double)calls : 0;
    t->p50_ms = calls ? 1e3 * pct(lat, calls, 0.50) : 0;
    t->p90_ms = calls ? 1e3 * pct(lat, calls, 0.90) : 0;
    t->p99_ms = calls ? 1e3 * pct(lat, calls, 0.99) : 0;
    t->max_ms = calls ? 1e3 * lat[calls - 1] : 0;
}

static void timing_print(FILE *f, const timing *t)
{
    fprintf(f,
            "\"queries\": %zu, \"calls\": %zu, \"seconds\": %.6f, \"qps\": %.2f, "
            "\"p50_ms\": %.4f, \"p90_ms\": %.4f, \"p99_ms\": %.4f, \"mean_ms\": %.4f, "
            "\"max_ms\": %.4f, \"cpu_user_s\": %.4f, \"cpu_sys_s\": %.4f",
            t->queries, t->calls, t->seconds, t->qps, t->p50_ms, t->p90_ms, t->p99_ms, t->mean_ms,
            t->max_ms, t->cpu_user_s, t->cpu_sys_s);
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
        else if (ch < 0x20) fprintf(f, "\\u%04x", ch);
        else fputc(ch, f);
    }
    fputc('"', f);
}

/* Runs fn(arg_i) on n threads and waits for them. */
static void run_threads(int n, void *(*fn)(void *), void *args, size_t argsize)
{
    pthread_t *th = xcalloc((size_t)n, sizeof *th);
    for (int i = 0; i < n; i++)
        if (pthread_create(&th[i], NULL, fn, (char *)args + (size_t)i * argsize))
            die("cannot start a thread");
    for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
    free(th);
}

static qvc *connect_or_die(const char *addr, int flags)
{
    qvc *c;
    qvc_status st;
    if (qvc_open_ex(addr, flags, &c)) die("cannot open a channel to %s", addr);
    if (qvc_wait_ready(c, CONNECT_TIMEOUT_MS, &st)) die("%s", st.details);
    return c;
}

/* ---------------------------------------------------------------- import */
typedef struct import_job {
    const char *addr, *coll;
    const vecs *v;
    char **words;
    size_t batch;
    int stream, nstreams;
    uint64_t upserted;
    int rc;
    qvc_status st;
} import_job;

static void *import_main(void *arg)
{
    import_job *j = arg;
    const vecs *v = j->v;
    qvc *c = connect_or_die(j->addr, QVC_OWN_CONNECTION);
    qvc_upload *u = NULL;
    Quiver__V1__Item *items = xcalloc(j->batch, sizeof *items);
    Quiver__V1__Item **ptrs = xcalloc(j->batch, sizeof *ptrs);
    Quiver__V1__Item__AttributesEntry *ents = xcalloc(j->batch, sizeof *ents);
    Quiver__V1__Item__AttributesEntry **entp = xcalloc(j->batch, sizeof *entp);
    Quiver__V1__Value *vals = xcalloc(j->batch, sizeof *vals);
    j->rc = qvc_upload_start(c, QVC_ITEMS_IMPORT, 0, &u, &j->st);
    if (j->rc) goto out;
    for (size_t first = (size_t)j->stream * j->batch; first < v->n;
         first += (size_t)j->nstreams * j->batch) {
        size_t cnt = v->n - first < j->batch ? v->n - first : j->batch;
        Quiver__V1__UpsertRequest req = QUIVER__V1__UPSERT_REQUEST__INIT;
        req.collection = (char *)j->coll;
        for (size_t i = 0; i < cnt; i++) {
            size_t row = first + i;
            quiver__v1__item__init(&items[i]);
            items[i].id = row;
            items[i].n_vector = v->d;
            items[i].vector = v->x + row * v->d;
            if (j->words) {
                quiver__v1__item__attributes_entry__init(&ents[i]);
                quiver__v1__value__init(&vals[i]);
                vals[i].kind_case = QUIVER__V1__VALUE__KIND_STRING_VALUE;
                vals[i].string_value = j->words[row];
                ents[i].key = "word";
                ents[i].value = &vals[i];
                entp[i] = &ents[i];
                items[i].n_attributes = 1;
                items[i].attributes = &entp[i];
            }
            ptrs[i] = &items[i];
        }
        req.n_items = cnt;
        req.items = ptrs;
        if (qvc_upload_send(u, &req.base)) break; /* the status tells why */
    }
    ProtobufCMessage *reply = NULL;
    j->rc = qvc_upload_finish(u, &quiver__v1__upsert_response__descriptor, &reply, &j->st);
    if (!j->rc) {
        j->upserted = ((Quiver__V1__UpsertResponse *)reply)->upserted;
        protobuf_c_message_free_unpacked(reply, NULL);
    }
out:
    free(items);
    free(ptrs);
    free(ents);
    free(entp);
    free(vals);
    qvc_close(c);
    return NULL;
}

static int cmd_import(int argc, char **argv)
{
    const char *addr = NULL, *coll = NULL, *base = NULL, *words_path = NULL;
    size_t limit = 0, batch = 1000;
    int streams = 2;
    static const struct option opts[] = {
        {"addr", 1, 0, 'a'},   {"collection", 1, 0, 'c'}, {"base", 1, 0, 'b'},
        {"limit", 1, 0, 'l'},  {"batch", 1, 0, 'B'},      {"streams", 1, 0, 's'},
        {"words", 1, 0, 'w'},  {"help", 0, 0, 'h'},       {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'a': addr = optarg; break;
        case 'c': coll = optarg; break;
        case 'b': base = optarg; break;
        case 'l': limit = (size_t)parse_long("limit", optarg, 0, LONG_MAX); break;
        case 'B': batch = (size_t)parse_long("batch", optarg, 1, 100000); break;
        case 's': streams = (int)parse_long("streams", optarg, 1, 64); break;
        case 'w': words_path = optarg; break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (!addr || !coll || !base) die("import needs --addr, --collection and --base");
    vecs v;
    vecs_load(base, limit, &v);
    char **words = words_path ? words_load(words_path, v.n) : NULL;
    import_job *jobs = xcalloc((size_t)streams, sizeof *jobs);
    for (int i = 0; i < streams; i++) {
        jobs[i].addr = addr;
        jobs[i].coll = coll;
        jobs[i].v = &v;
        jobs[i].words = words;
        jobs[i].batch = batch;
        jobs[i].stream = i;
        jobs[i].nstreams = streams;
    }
    double t0 = now_s();
    run_threads(streams, import_main, jobs, sizeof *jobs);
    double secs = now_s() - t0;
    uint64_t total = 0;
    int rc = 0;
    for (int i = 0; i < streams; i++) {
        total += jobs[i].upserted;
        if (jobs[i].rc && !rc) {
            rc = jobs[i].rc;
            fprintf(stderr, "quiver-bench-load: import stream %d: %s: %s\n", i,
                    qvc_status_name(jobs[i].rc), jobs[i].st.details);
        }
    }
    if (rc) return 1;
    printf("{\"vectors\": %" PRIu64 ", \"dim\": %u, \"seconds\": %.4f, \"vectors_per_s\": %.1f, "
           "\"streams\": %d, \"batch\": %zu, \"attributes\": %s}\n",
           total, v.d, secs, secs > 0 ? (double)total / secs : 0.0, streams, batch,
           words ? "true" : "false");
    if (words)
        for (size_t i = 0; i < v.n; i++) free(words[i]);
    free(words);
    free(jobs);
    free(v.x);
    return 0;
}

/* ----------------------------------------------------------------- query */
/* Work shared by the threads of one timed (or warm-up) run: units of `batch`
 * consecutive entries of the order, taken by whichever thread is free. */
typedef struct run_spec {
    const vecs *q;
    const uint32_t *order;
    size_t norder; /* entries run: units cover 0..norder-1 (wrapping the order) */
    size_t order_len;
    size_t k, batch, nunits;
    atomic_size_t next;
    double *lat;  /* nunits (NULL: untimed) */
    int64_t *ids; /* norder*k (NULL: not kept) */
    atomic_int failed;
} run_spec;

static void run_init(run_spec *r, const vecs *q, const uint32_t *order, size_t order_len,
                     size_t norder, size_t k, size_t batch, int keep)
{
    memset(r, 0, sizeof *r);
    r->q = q;
    r->order = order;
    r->order_len = order_len;
    r->norder = norder;
    r->k = k;
    r->batch = batch;
    r->nunits = (norder + batch - 1) / batch;
    atomic_init(&r->next, 0);
    atomic_init(&r->failed, 0);
    if (keep) {
        r->lat = xcalloc(r->nunits, sizeof *r->lat);
        r->ids = xmalloc(norder * k * sizeof *r->ids);
    }
}

static void run_free(run_spec *r)
{
    free(r->lat);
    free(r->ids);
}

/* Takes the next unit: [out] first entry and count; 0 when done. */
static int run_take(run_spec *r, size_t *unit, size_t *first, size_t *cnt)
{
    if (atomic_load(&r->failed)) return 0;
    size_t u = atomic_fetch_add(&r->next, 1);
    if (u >= r->nunits) return 0;
    *unit = u;
    *first = u * r->batch;
    *cnt = r->norder - *first < r->batch ? r->norder - *first : r->batch;
    return 1;
}

static size_t run_row(const run_spec *r, size_t entry) { return r->order[entry % r->order_len]; }

typedef struct query_job {
    run_spec *run;
    qvc *c;
    const char *coll;
    uint32_t nprobe;
    float min_recall;
    int no_attrs;
    int rc;
    qvc_status st;
} query_job;

/* ------------------------------------------------ lean reply decoding */
/* The benchmark needs only the hit ids of a SearchResponse. Reading them
 * straight off the wire keeps the client's CPU (on the same cores as the
 * server here) to what a careful client spends; attributes are skipped, not
 * built. */
typedef struct ids_out {
    int64_t *ids; /* nq*k, or NULL: count only */
    size_t k, nq, nres;
} ids_out;

static int wire_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t x = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return -1;
}

/* Skips a field of wire type wt; returns -1 on malformed input. */
static int wire_skip(const uint8_t **p, const uint8_t *end, unsigned wt)
{
    uint64_t v;
    switch (wt) {
    case 0: return wire_varint(p, end, &v);
    case 1: if (end - *p < 8) return -1; *p += 8; return 0;
    case 5: if (end - *p < 4) return -1; *p += 4; return 0;
    case 2:
        if (wire_varint(p, end, &v) || (uint64_t)(end - *p) < v) return -1;
        *p += v;
        return 0;
    }
    return -1;
}

/* Calls fn(ctx, body, len) for each length-delimited field `field`. */
static int wire_each(const uint8_t *p, const uint8_t *end, unsigned field,
                     int (*fn)(void *ctx, const uint8_t *b, size_t n), void *ctx)
{
    while (p < end) {
        uint64_t key, len;
        if (wire_varint(&p, end, &key)) return -1;
        if ((key >> 3) == field && (key & 7) == 2) {
            if (wire_varint(&p, end, &len) || (uint64_t)(end - p) < len) return -1;
            if (fn(ctx, p, (size_t)len)) return -1;
            p += len;
        } else if (wire_skip(&p, end, (unsigned)(key & 7))) {
            return -1;
        }
    }
    return 0;
}

typedef struct hits_ctx {
    int64_t *out;
    size_t k, n;
} hits_ctx;

static int one_hit(void *ctx, const uint8_t *p, size_t n)
{
    hits_ctx *h = ctx;
    const uint8_t *end = p + n;
    uint64_t id = 0;
    while (p < end) { /* Hit: id = 1 (varint); the rest skipped */
        uint64_t key;
        if (wire_varint(&p, end, &key)) return -1;
        if (key == (1 << 3 | 0)) {
            if (wire_varint(&p, end, &id)) return -1;
        } else if (wire_skip(&p, end, (unsigned)(key & 7))) {
            return -1;
        }
    }
    if (h->out && h->n < h->k) h->out[h->n] = (int64_t)id;
    h->n++;
    return 0;
}

static int one_result(void *ctx, const uint8_t *p, size_t n)
{
    ids_out *o = ctx;
    hits_ctx h = {o->ids ? o->ids + o->nres * o->k : NULL, o->k, 0};
    if (o->nres >= o->nq) return -1;
    if (wire_each(p, p + n, 1, one_hit, &h)) return -1;
    for (size_t x = h.n; h.out && x < o->k; x++) h.out[x] = -1;
    o->nres++;
    return 0;
}

static int decode_ids(void *ctx, const uint8_t *buf, size_t len)
{
    ids_out *o = ctx;
    o->nres = 0;
    return wire_each(buf, buf + len, 1, one_result, o);
}

static void *query_main(void *arg)
{
    query_job *j = arg;
    run_spec *r = j->run;
    size_t B = r->batch, d = r->q->d;
    Quiver__V1__Query *qs = xcalloc(B, sizeof *qs);
    Quiver__V1__Query **qp = xcalloc(B, sizeof *qp);
    Quiver__V1__Vector *vs = xcalloc(B, sizeof *vs);
    size_t unit, first, cnt;
    while (run_take(r, &unit, &first, &cnt)) {
        Quiver__V1__SearchRequest req = QUIVER__V1__SEARCH_REQUEST__INIT;
        req.collection = (char *)j->coll;
        req.k = (uint32_t)r->k;
        req.nprobe = j->nprobe;
        req.min_recall = j->min_recall;
        req.without_attributes = j->no_attrs;
        for (size_t i = 0; i < cnt; i++) {
            quiver__v1__vector__init(&vs[i]);
            vs[i].n_values = d;
            vs[i].values = r->q->x + run_row(r, first + i) * d;
            quiver__v1__query__init(&qs[i]);
            qs[i].kind_case = QUIVER__V1__QUERY__KIND_VECTOR;
            qs[i].vector = &vs[i];
            qp[i] = &qs[i];
        }
        req.n_queries = cnt;
        req.queries = qp;
        ids_out o = {r->ids ? r->ids + first * r->k : NULL, r->k, cnt, 0};
        double t0 = now_s();
        int rc = qvc_unary_decode(j->c, QVC_SEARCH_SEARCH, &req.base, decode_ids, &o, &j->st,
                                  RPC_TIMEOUT_MS);
        double t1 = now_s();
        if (rc) {
            j->rc = rc;
            atomic_store(&r->failed, 1);
            break;
        }
        if (o.nres != cnt) {
            j->rc = GRPC_STATUS_INTERNAL;
            snprintf(j->st.details, sizeof j->st.details,
                     "bench: %zu queries sent, %zu result lists received", cnt, o.nres);
            atomic_store(&r->failed, 1);
            break;
        }
        if (r->lat) r->lat[unit] = t1 - t0;
    }
    free(qs);
    free(qp);
    free(vs);
    return NULL;
}

/* Runs `run` over the jobs' threads; dies with the first error. */
static double query_run(query_job *jobs, int threads, run_spec *run)
{
    for (int i = 0; i < threads; i++) {
        jobs[i].run = run;
        jobs[i].rc = 0;
    }
    double t0 = now_s();
    run_threads(threads, query_main, jobs, sizeof *jobs);
    double secs = now_s() - t0;
    for (int i = 0; i < threads; i++)
        if (jobs[i].rc) die("Search failed: %s: %s", qvc_status_name(jobs[i].rc), jobs[i].st.details);
    return secs;
}

static int parse_mode(const char *s)
{
    if (strcmp(s, "single") == 0) return 0;
    if (strcmp(s, "batch") == 0) return 1;
    die("--mode %s: expected single or batch", s);
    return -1;
}

static int default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static int cmd_query(int argc, char **argv)
{
    const char *addr = NULL, *coll = NULL, *qpath = NULL, *opath = NULL, *out = NULL;
    size_t k = 10, batch = 100, warmup = 0;
    long nprobe = -1;
    double min_recall = -1;
    int mode = -1, threads = default_threads(), no_attrs = 0, shared = 0;
    static const struct option opts[] = {
        {"addr", 1, 0, 'a'},    {"collection", 1, 0, 'c'}, {"queries", 1, 0, 'q'},
        {"order", 1, 0, 'o'},   {"k", 1, 0, 'k'},          {"nprobe", 1, 0, 'n'},
        {"min-recall", 1, 0, 'r'}, {"mode", 1, 0, 'm'},    {"threads", 1, 0, 't'},
        {"batch", 1, 0, 'B'},   {"warmup", 1, 0, 'w'},     {"out", 1, 0, 'O'},
        {"no-attrs", 0, 0, 'N'}, {"shared-conn", 0, 0, 'S'}, {"help", 0, 0, 'h'},
        {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'a': addr = optarg; break;
        case 'c': coll = optarg; break;
        case 'q': qpath = optarg; break;
        case 'o': opath = optarg; break;
        case 'k': k = (size_t)parse_long("k", optarg, 1, 1000); break;
        case 'n': nprobe = parse_long("nprobe", optarg, 0, UINT32_MAX); break;
        case 'r': min_recall = parse_double("min-recall", optarg); break;
        case 'm': mode = parse_mode(optarg); break;
        case 't': threads = (int)parse_long("threads", optarg, 1, 1024); break;
        case 'B': batch = (size_t)parse_long("batch", optarg, 1, 10000); break;
        case 'w': warmup = (size_t)parse_long("warmup", optarg, 0, LONG_MAX); break;
        case 'O': out = optarg; break;
        case 'N': no_attrs = 1; break;
        case 'S': shared = 1; break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (!addr || !coll || !qpath || !opath || !out || mode < 0)
        die("query needs --addr, --collection, --queries, --order, --mode and --out");
    if ((nprobe >= 0) == (min_recall >= 0)) die("query needs one of --nprobe and --min-recall");
    if (min_recall > 1) die("--min-recall %g: expected 0..1", min_recall);
    if (mode == 0) batch = 1;
    vecs q;
    vecs_load(qpath, 0, &q);
    size_t norder;
    uint32_t *order = order_load(opath, q.n, &norder);

    query_job *jobs = xcalloc((size_t)threads, sizeof *jobs);
    qvc *one = shared ? connect_or_die(addr, 0) : NULL;
    for (int i = 0; i < threads; i++) {
        jobs[i].c = shared ? one : connect_or_die(addr, QVC_OWN_CONNECTION);
        jobs[i].coll = coll;
        jobs[i].nprobe = nprobe >= 0 ? (uint32_t)nprobe : 0;
        jobs[i].min_recall = min_recall >= 0 ? (float)min_recall : 0;
        jobs[i].no_attrs = no_attrs;
    }
    if (warmup) {
        run_spec w;
        run_init(&w, &q, order, norder, warmup, k, batch, 0);
        query_run(jobs, threads, &w);
        run_free(&w);
    }
    run_spec r;
    run_init(&r, &q, order, norder, norder, k, batch, 1);
    double su, ss, u0 = cpu_s(RUSAGE_SELF, &ss);
    double secs = query_run(jobs, threads, &r);
    timing t;
    t.cpu_user_s = cpu_s(RUSAGE_SELF, &su) - u0;
    t.cpu_sys_s = su - ss;
    timing_fill(&t, norder, r.lat, r.nunits, secs);
    ids_write(out, r.ids, norder * k);
    printf("{\"engine\": \"quiver\", \"mode\": \"%s\", \"threads\": %d, \"batch\": %zu, \"k\": %zu, ",
           mode ? "batch" : "single", threads, batch, k);
    if (nprobe >= 0) printf("\"nprobe\": %ld, ", nprobe);
    else printf("\"min_recall\": %g, ", min_recall);
    printf("\"attributes\": %s, \"warmup\": %zu, ", no_attrs ? "false" : "true", warmup);
    timing_print(stdout, &t);
    printf("}\n");
    for (int i = 0; i < threads; i++)
        if (!shared) qvc_close(jobs[i].c);
    qvc_close(one);
    run_free(&r);
    free(jobs);
    free(order);
    free(q.x);
    return 0;
}

/* ----------------------------------------------------------------- faiss */
typedef struct fscored {
    float s;
    int64_t id;
} fscored;

static int cmp_fs_asc(const void *a, const void *b)
{
    float x = ((const fscored *)a)->s, y = ((const fscored *)b)->s;
    return x < y ? -1 : x > y;
}
static int cmp_fs_desc(const void *a, const void *b) { return -cmp_fs_asc(a, b); }

typedef struct fbench {
    qv_index *ix;
    const vecs *base; /* normalised for cosine: what the server stores */
    qv_metric metric;
    size_t refine;
} fbench;

typedef struct faiss_job {
    const fbench *fb;
    run_spec *run;
    uint32_t nprobe;
    int single;
    int rc;
} faiss_job;

/* As the server re-ranks (storage/db.c): exact scores of the candidates, sort,
 * keep k. q is normalised for cosine. */
static void rerank(const fbench *fb, const float *q, const int64_t *cand, size_t ncand, size_t k,
                   int64_t *out, fscored *tmp)
{
    uint32_t d = fb->base->d;
    int l2 = fb->metric == QV_METRIC_L2;
    size_t n = 0;
    for (size_t i = 0; i < ncand; i++) {
        if (cand[i] < 0 || (size_t)cand[i] >= fb->base->n) continue;
        const float *v = fb->base->x + (size_t)cand[i] * d;
        float s = 0;
        if (l2)
            for (uint32_t x = 0; x < d; x++) {
                float t = q[x] - v[x];
                s += t * t;
            }
        else
            for (uint32_t x = 0; x < d; x++) s += q[x] * v[x];
        tmp[n].s = s;
        tmp[n].id = cand[i];
        n++;
    }
    qsort(tmp, n, sizeof *tmp, l2 ? cmp_fs_asc : cmp_fs_desc);
    for (size_t i = 0; i < k; i++) out[i] = i < n ? tmp[i].id : -1;
}

static void *faiss_main(void *arg)
{
    faiss_job *j = arg;
    const fbench *fb = j->fb;
    run_spec *r = j->run;
    size_t B = r->batch, d = r->q->d, kk = r->k * fb->refine;
    if (j->single) omp_set_num_threads(1);
    else if (B >= BATCH_OMP_MIN) omp_set_num_threads(default_threads());
    float *qbuf = xmalloc(B * d * sizeof *qbuf);
    float *qn = xmalloc(d * sizeof *qn);
    float *sc = xmalloc(B * kk * sizeof *sc);
    int64_t *lb = xmalloc(B * kk * sizeof *lb);
    fscored *tmp = xmalloc(kk * sizeof *tmp);
    size_t unit, first, cnt;
    while (run_take(r, &unit, &first, &cnt)) {
        double t0 = now_s();
        for (size_t i = 0; i < cnt; i++)
            memcpy(qbuf + i * d, r->q->x + run_row(r, first + i) * d, d * sizeof *qbuf);
        int rc = qv_index_search(fb->ix, cnt, qbuf, kk, j->nprobe, sc, lb);
        if (rc) {
            j->rc = rc;
            atomic_store(&r->failed, 1);
            break;
        }
        for (size_t i = 0; i < cnt; i++) {
            int64_t *out = r->ids ? r->ids + (first + i) * r->k : NULL;
            if (fb->refine > 1) {
                int64_t keep[1000];
                memcpy(qn, qbuf + i * d, d * sizeof *qn);
                if (fb->metric == QV_METRIC_COSINE) qv_vec_normalize(qn, (uint32_t)d);
                rerank(fb, qn, lb + i * kk, kk, r->k, out ? out : keep, tmp);
            } else if (out) {
                memcpy(out, lb + i * kk, r->k * sizeof *out);
            }
        }
        double t1 = now_s();
        if (r->lat) r->lat[unit] = t1 - t0;
    }
    free(qbuf);
    free(qn);
    free(sc);
    free(lb);
    free(tmp);
    return NULL;
}

/* One timed sweep point; prints its JSON object (one line) on stdout. */
static void faiss_point(const fbench *fb, const vecs *q, const uint32_t *order, size_t norder,
                        size_t k, uint32_t nprobe, int single, int threads, size_t batch,
                        size_t warmup, const char *out)
{
    if (single) batch = 1;
    faiss_job *jobs = xcalloc((size_t)threads, sizeof *jobs);
    for (int i = 0; i < threads; i++) {
        jobs[i].fb = fb;
        jobs[i].nprobe = nprobe;
        jobs[i].single = single;
    }
    run_spec r;
    if (warmup) {
        run_init(&r, q, order, norder, warmup, k, batch, 0);
        for (int i = 0; i < threads; i++) jobs[i].run = &r;
        run_threads(threads, faiss_main, jobs, sizeof *jobs);
        run_free(&r);
    }
    run_init(&r, q, order, norder, norder, k, batch, 1);
    for (int i = 0; i < threads; i++) jobs[i].run = &r;
    double su, ss, u0 = cpu_s(RUSAGE_SELF, &ss);
    double t0 = now_s();
    run_threads(threads, faiss_main, jobs, sizeof *jobs);
    double secs = now_s() - t0;
    for (int i = 0; i < threads; i++)
        if (jobs[i].rc) die("qv_index_search failed: %s", qv_strerror(jobs[i].rc));
    timing t;
    t.cpu_user_s = cpu_s(RUSAGE_SELF, &su) - u0;
    t.cpu_sys_s = su - ss;
    timing_fill(&t, norder, r.lat, r.nunits, secs);
    ids_write(out, r.ids, norder * k);
    printf("{\"engine\": \"faiss\", \"mode\": \"%s\", \"threads\": %d, \"batch\": %zu, \"k\": %zu, "
           "\"nprobe\": %u, \"warmup\": %zu, \"out\": ",
           single ? "single" : "batch", threads, batch, k, nprobe, warmup);
    json_str(stdout, out);
    printf(", ");
    timing_print(stdout, &t);
    printf("}\n");
    fflush(stdout);
    run_free(&r);
    free(jobs);
}

static long rss_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long v = -1;
    size_t fl = strlen(field);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, fl) == 0 && line[fl] == ':') {
            v = strtol(line + fl + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

/* The OpenBLAS kernels in use (quiverd logs the same at start-up). */
static const char *blas_core(void)
{
    const char *(*corename)(void) = (const char *(*)(void))dlsym(RTLD_DEFAULT, "openblas_get_corename");
    return corename ? corename() : "unknown";
}

/* Reservoir sample of up to cap rows in row order, with the server's
 * generator and seed (storage/db.c sample_chunk): the same training set the
 * server draws when item ids are row numbers. */
static float *train_sample(const vecs *v, size_t cap, size_t *n)
{
    float *s = xmalloc(cap * v->d * sizeof *s);
    uint64_t rng = SAMPLE_SEED, seen = 0;
    size_t ns = 0;
    for (size_t i = 0; i < v->n; i++) {
        size_t slot = ns;
        seen++;
        if (ns == cap) {
            rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
            uint64_t r = (rng >> 11) % seen;
            if (r >= cap) continue;
            slot = (size_t)r;
        } else {
            ns++;
        }
        memcpy(s + slot * v->d, v->x + i * v->d, v->d * sizeof *s);
    }
    *n = ns;
    return s;
}

static int cmd_faiss(int argc, char **argv)
{
    const char *bpath = NULL, *qpath = NULL, *opath = NULL, *prefix = NULL, *nprobes = NULL;
    const char *metric_s = "l2", *kind_s = "ivf_flat";
    size_t limit = 0, k = 10, batch = 100, warmup = 0, per_list = TRAIN_PER_LIST;
    long nlist = 0, pq_m = 0, pq_nbits = 8, refine = 0;
    int mode = -1, threads = default_threads(), serve = 0;
    static const struct option opts[] = {
        {"base", 1, 0, 'b'},     {"limit", 1, 0, 'l'},    {"queries", 1, 0, 'q'},
        {"order", 1, 0, 'o'},    {"metric", 1, 0, 'M'},   {"kind", 1, 0, 'K'},
        {"nlist", 1, 0, 'L'},    {"pq-m", 1, 0, 'P'},     {"pq-nbits", 1, 0, 'N'},
        {"refine", 1, 0, 'R'},   {"nprobes", 1, 0, 'n'},  {"k", 1, 0, 'k'},
        {"mode", 1, 0, 'm'},     {"threads", 1, 0, 't'},  {"batch", 1, 0, 'B'},
        {"warmup", 1, 0, 'w'},   {"out-prefix", 1, 0, 'O'}, {"serve", 0, 0, 'S'},
        {"train-per-list", 1, 0, 'T'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'b': bpath = optarg; break;
        case 'l': limit = (size_t)parse_long("limit", optarg, 0, LONG_MAX); break;
        case 'q': qpath = optarg; break;
        case 'o': opath = optarg; break;
        case 'M': metric_s = optarg; break;
        case 'K': kind_s = optarg; break;
        case 'L': nlist = parse_long("nlist", optarg, 0, 1 << 20); break;
        case 'P': pq_m = parse_long("pq-m", optarg, 0, 65536); break;
        case 'N': pq_nbits = parse_long("pq-nbits", optarg, 0, 8); break;
        case 'R': refine = parse_long("refine", optarg, 0, 1000); break;
        case 'n': nprobes = optarg; break;
        case 'k': k = (size_t)parse_long("k", optarg, 1, 1000); break;
        case 'm': mode = parse_mode(optarg); break;
        case 't': threads = (int)parse_long("threads", optarg, 1, 1024); break;
        case 'B': batch = (size_t)parse_long("batch", optarg, 1, 10000); break;
        case 'w': warmup = (size_t)parse_long("warmup", optarg, 0, LONG_MAX); break;
        case 'O': prefix = optarg; break;
        case 'S': serve = 1; break;
        case 'T': per_list = (size_t)parse_long("train-per-list", optarg, 1, 100000); break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (!bpath || !qpath || !opath) die("faiss needs --base, --queries and --order");
    if (!serve && (!nprobes || !prefix || mode < 0))
        die("faiss needs --nprobes, --mode and --out-prefix (or --serve)");
    qv_metric metric = strcmp(metric_s, "l2") == 0       ? QV_METRIC_L2
                       : strcmp(metric_s, "ip") == 0     ? QV_METRIC_IP
                       : strcmp(metric_s, "cosine") == 0 ? QV_METRIC_COSINE
                                                         : 0;
    if (!metric) die("--metric %s: expected l2, ip or cosine", metric_s);
    int kind = qv_index_kind_parse(kind_s);
    if (kind <= 0) die("--kind %s: expected flat, ivf_flat, ivf_pq or ivf_sq8", kind_s);

    vecs base, q;
    vecs_load(bpath, limit, &base);
    vecs_load(qpath, 0, &q);
    if (q.d != base.d) die("queries have dim %u, base %u", q.d, base.d);
    size_t norder;
    uint32_t *order = order_load(opath, q.n, &norder);
    /* the server stores unit vectors for cosine: re-rank from the same */
    if (metric == QV_METRIC_COSINE)
        for (size_t i = 0; i < base.n; i++) qv_vec_normalize(base.x + i * base.d, base.d);

    qv_index_params p = {.kind = (qv_index_kind)kind};
    if (kind != QV_KIND_FLAT) {
        p.nlist = nlist ? (uint32_t)nlist : qv_auto_nlist(base.n);
        p.refine = (uint32_t)refine;
        if (kind == QV_KIND_IVF_PQ) {
            p.pq_m = (uint32_t)pq_m;
            p.pq_nbits = pq_nbits ? (uint32_t)pq_nbits : 8;
        }
    }
    char err[256];
    if (qv_index_params_check(base.d, &p, err, sizeof err)) die("%s", err);
    qv_index *ix = NULL;
    int rc = qv_index_new(base.d, metric, &p, &ix);
    if (rc) die("qv_index_new: %s", qv_strerror(rc));
    double train_s = 0, add_s, t0;
    size_t nsample = 0;
    if (kind != QV_KIND_FLAT) {
        size_t cap = (size_t)p.nlist * per_list;
        if (kind == QV_KIND_IVF_PQ && cap < (per_list << p.pq_nbits)) cap = per_list << p.pq_nbits;
        if (cap < TRAIN_MIN_SAMPLE) cap = TRAIN_MIN_SAMPLE;
        if (cap > base.n) cap = base.n;
        float *s = train_sample(&base, cap, &nsample);
        t0 = now_s();
        if ((rc = qv_index_train(ix, nsample, s))) die("qv_index_train: %s", qv_strerror(rc));
        train_s = now_s() - t0;
        free(s);
    }
    int64_t *ids = xmalloc(base.n * sizeof *ids);
    for (size_t i = 0; i < base.n; i++) ids[i] = (int64_t)i;
    t0 = now_s();
    /* in chunks, as the server adds (bounded copies for cosine) */
    for (size_t i = 0; i < base.n; i += 20000) {
        size_t c = base.n - i < 20000 ? base.n - i : 20000;
        if ((rc = qv_index_add(ix, c, ids + i, base.x + i * base.d)))
            die("qv_index_add: %s", qv_strerror(rc));
    }
    if ((rc = qv_index_compact(ix))) die("qv_index_compact: %s", qv_strerror(rc)); /* as the server */
    add_s = now_s() - t0;
    free(ids);
    fbench fb = {ix, &base, metric, refine > 1 ? (size_t)refine : 1};
    printf("{\"engine\": \"faiss\", \"event\": \"built\", \"kind\": \"%s\", \"metric\": \"%s\", "
           "\"vectors\": %zu, \"dim\": %u, \"nlist\": %u, \"pq_m\": %u, \"pq_nbits\": %u, "
           "\"refine\": %ld, \"train_vectors\": %zu, \"train_s\": %.3f, \"add_s\": %.3f, "
           "\"index_bytes\": %zu, \"rss_kb\": %ld, \"hwm_kb\": %ld, \"omp_max_threads\": %d, "
           "\"blas_core\": \"%s\"}\n",
           qv_index_kind_name(p.kind), metric_s, base.n, base.d, p.nlist, p.pq_m, p.pq_nbits,
           refine, nsample, train_s, add_s, qv_index_memory(ix), rss_kb("VmRSS"), rss_kb("VmHWM"),
           omp_get_max_threads(), blas_core());
    fflush(stdout);
    char path[4096];
    if (!serve) {
        const char *s = nprobes;
        while (*s) {
            char *end;
            unsigned long np = strtoul(s, &end, 10);
            if (end == s || np == 0 || np > UINT32_MAX) die("--nprobes %s: bad list", nprobes);
            snprintf(path, sizeof path, "%s.%lu.ids", prefix, np);
            faiss_point(&fb, &q, order, norder, k, (uint32_t)np, mode == 0, threads, batch, warmup,
                        path);
            s = *end == ',' ? end + 1 : end;
            if (*end && *end != ',') die("--nprobes %s: bad list", nprobes);
        }
    } else {
        char line[8192];
        while (fgets(line, sizeof line, stdin)) {
            char cmd[16], mode_s[16];
            unsigned np;
            int th;
            size_t b, w;
            if (sscanf(line, "%15s", cmd) != 1) continue;
            if (strcmp(cmd, "quit") == 0) break;
            if (strcmp(cmd, "search") != 0 ||
                sscanf(line, "search %u %15s %d %zu %zu %4095s", &np, mode_s, &th, &b, &w, path) != 6 ||
                th < 1 || b < 1) {
                printf("{\"error\": \"bad command\"}\n");
                fflush(stdout);
                continue;
            }
            faiss_point(&fb, &q, order, norder, k, np, parse_mode(mode_s) == 0, th, b, w, path);
        }
    }
    qv_index_free(ix);
    free(order);
    free(base.x);
    free(q.x);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    argv[1] = argv[0];
    argc--;
    argv++;
    if (strcmp(cmd, "import") == 0) return cmd_import(argc, argv);
    if (strcmp(cmd, "query") == 0) return cmd_query(argc, argv);
    if (strcmp(cmd, "faiss") == 0) return cmd_faiss(argc, argv);
    fprintf(stderr, "quiver-bench-load: unknown command \"%s\"\n%s", cmd, usage);
    return 2;
}
