/*
 * quiver-bench-load: the C half of the benchmark that tools/quiver-bench
 * drives. `import` streams a vector file into a collection (Items.Import),
 * `query` times Search RPCs (one query per call from N threads, or batches),
 * `faiss` builds the same index in-process straight on FAISS's C API
 * (faiss_index_factory with the descriptions quiverd uses; refine through
 * IndexRefineFlat) and times it the same way: the yardstick for Quiver's own
 * overhead. It does not link Quiver's storage library. Each prints one JSON
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

#include <faiss/c_api/IndexFlat_c.h>
#include <faiss/c_api/IndexIVF_c.h>
#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/error_c.h>
#include <faiss/c_api/index_factory_c.h>
#include <grpc/status.h>

#include "client.h"
#include "quiver/v1/quiver.pb-c.h"

#define RPC_TIMEOUT_MS 120000
#define CONNECT_TIMEOUT_MS 15000
#define TRAIN_PER_LIST 50 /* default of --train-per-list: storage/db.c TRAIN_MAX_PER_LIST */
#define TRAIN_MIN_PER_LIST 39 /* storage/db.c: FAISS's minimum training points per list */
#define TRAIN_MIN_SAMPLE 10000
#define SAMPLE_SEED 12345
#define BATCH_OMP_MIN 32 /* the server lets batches this large use every core */
#define SERIAL_NQ 16     /* searches of fewer queries run on the calling thread only
                          * (storage/index.c QV_INDEX_SERIAL_NQ) */

static const char usage[] =
    "Usage: quiver-bench-load import --addr A --collection C --base FILE [--limit N]\n"
    "                                [--batch 1000] [--streams S] [--words FILE]\n"
    "       quiver-bench-load query --addr A --collection C --queries FILE --order FILE\n"
    "                               --k K (--nprobe P | --min-recall R) --mode single|batch\n"
    "                               [--threads T] [--batch B] [--warmup N] [--no-attrs]\n"
    "                               [--shared-conn] --out FILE\n"
    "       quiver-bench-load faiss --base FILE [--limit N] --queries FILE --order FILE\n"
    "                               --metric l2|ip|cosine\n"
    "                               --kind ivf_flat|ivf_pq|ivf_pq_fs|ivf_sq8|flat\n"
    "                               [--nlist N] [--pq-m M] [--pq-nbits B] [--refine R]\n"
    "                               [--train-per-list 50] [--hnsw-coarse-min 0]\n"
    "                               --k K (--nprobes 1,2,4,... --mode single|batch [--threads T]\n"
    "                               [--batch B] [--warmup N] --out-prefix P | --serve)\n"
    "       quiver-bench-load faiss --build-only --base FILE [--limit N] --metric M --kind K\n"
    "                               [--nlist N] [--pq-m M] [--pq-nbits B] [--refine R]\n"
    "                               [--train-per-list 50] [--hnsw-coarse-min 0]\n"
    "\n"
    "The C half of tools/quiver-bench (an API key comes from $QUIVER_API_KEY).\n"
    "Vector files are fvecs or bvecs (bvecs are\n"
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
    "faiss    the same index built in this process on FAISS's C API, with the\n"
    "         faiss_index_factory descriptions of storage/index.c: flat \"IDMap,Flat\",\n"
    "         ivf_flat \"IVF<nlist>,Flat\", ivf_sq8 \"IVF<nlist>,SQ8\", ivf_pq\n"
    "         \"IVF<nlist>,PQ<m>x<nbits>np\", ivf_pq_fs (4-bit fast-scan PQ, --pq-nbits\n"
    "         ignored) \"IVF<nlist>,PQ<m>x4fs\"; from --hnsw-coarse-min lists on\n"
    "         (0 = never) \"IVF<nlist>_HNSW32,...\" as quiverd's flag of that name.\n"
    "         --nlist 0: the server's auto rule;\n"
    "         --pq-m 0: the server's default. Trained on a sample drawn like the\n"
    "         server's (up to --train-per-list x nlist rows, at least 10,000, same\n"
    "         generator and seed: keep it equal to the server's), every row added\n"
    "         (id = row number). --refine R > 1 (ivf_pq, ivf_pq_fs, ivf_sq8; ignored\n"
    "         for flat and ivf_flat) wraps the index in IndexRefineFlat: R x k\n"
    "         candidates re-ranked by exact distance from the raw vectors. single:\n"
    "         T threads each searching one query at a time on one core; batch: T\n"
    "         threads each searching B queries at a time (OpenMP allowed from 16).\n"
    "         Prints the build first (train_s, add_s, index_bytes: an estimate,\n"
    "         n x (code + 8) + nlist x dim x 4, + n x dim x 4 with refine).\n"
    "         --serve: after the build, reads commands from stdin, one per line:\n"
    "           search NPROBE single|batch THREADS BATCH WARMUP OUTFILE\n"
    "           quit\n"
    "         and answers each with one JSON line.\n"
    "         --build-only: the build and its JSON line only (no --queries, --order,\n"
    "         --k): FAISS's own train and add times for an index spec.\n";

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
    /* an API key from the environment (quiver-bench --api-key sets it) */
    qvc_security sec = {.api_key = getenv("QUIVER_API_KEY")};
    if (qvc_open_secure(addr, flags, &sec, &c, NULL, 0)) die("cannot open a channel to %s", addr);
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
/* The in-process twin talks to FAISS's C API only: nothing of storage/. The
 * few rules it shares with the server (auto nlist, default pq_m, cosine
 * normalisation, the training sample) are copied here. */
typedef enum fkind { FK_FLAT = 1, FK_IVF_FLAT, FK_IVF_PQ, FK_IVF_SQ8, FK_IVF_PQ_FS } fkind;
typedef enum fmetric { FM_L2 = 1, FM_IP, FM_COSINE } fmetric;

static const char *const fkind_names[] = {
    [FK_FLAT] = "flat",       [FK_IVF_FLAT] = "ivf_flat",    [FK_IVF_PQ] = "ivf_pq",
    [FK_IVF_SQ8] = "ivf_sq8", [FK_IVF_PQ_FS] = "ivf_pq_fs",
};

static int fkind_parse(const char *s)
{
    for (int k = FK_FLAT; k <= FK_IVF_PQ_FS; k++)
        if (strcmp(s, fkind_names[k]) == 0) return k;
    return 0;
}

static const char *faiss_err(void)
{
    const char *m = faiss_get_last_error();
    return m && *m ? m : "no message";
}

/* storage/index.c qv_vec_normalize: unit length, zero/non-finite left as is. */
static void vec_normalize(float *x, size_t dim)
{
    double s = 0;
    for (size_t i = 0; i < dim; i++) s += (double)x[i] * x[i];
    if (!(s > 0) || !isfinite(s)) return;
    float inv = (float)(1.0 / sqrt(s));
    for (size_t i = 0; i < dim; i++) x[i] *= inv;
}

/* storage/db.c qv_auto_nlist: about 8*sqrt(n) lists, a power of two, each
 * list trained on at least TRAIN_MIN_PER_LIST points. */
static uint32_t auto_nlist(uint64_t n)
{
    double want = 8.0 * sqrt((double)n);
    uint32_t nlist = 16;
    while (nlist < 65536 && (double)nlist * 1.5 < want) nlist *= 2;
    while (nlist > 16 && (uint64_t)nlist * TRAIN_MIN_PER_LIST > n) nlist /= 2;
    return nlist;
}

/* storage/db.c: the largest divisor of dim giving sub-vectors of at least 2
 * floats, at most 64 for ivf_pq, 256 for ivf_pq_fs (glove-100: 50 for both). */
static uint32_t default_pq_m(uint32_t dim, uint32_t cap)
{
    for (uint32_t m = dim / 2; m >= 1; m--)
        if (dim % m == 0 && m <= cap) return m;
    return 1;
}

/* storage/index.c default_nprobe: what a search with nprobe 0 gets. */
static uint32_t default_nprobe(uint32_t nlist)
{
    uint32_t np = (uint32_t)ceil(sqrt((double)nlist));
    if (np < 8) np = 8;
    return np < nlist ? np : nlist;
}

typedef struct fbench {
    FaissIndex *fi;     /* what is searched: the IVF index, IndexRefineFlat or IDMap,Flat */
    FaissIndexIVF *ivf; /* the IVF index (inside fi with refine); NULL for flat */
    uint32_t d;
    fmetric metric;
} fbench;

typedef struct faiss_job {
    const fbench *fb;
    run_spec *run;
    int single;
    int rc;
    char err[512];
} faiss_job;

static void *faiss_main(void *arg)
{
    faiss_job *j = arg;
    const fbench *fb = j->fb;
    run_spec *r = j->run;
    size_t B = r->batch, d = fb->d, k = r->k;
    /* single: one core per query; small searches stay on the calling thread
     * as the server keeps them (storage/index.c); large batches may use every
     * core */
    int team = j->single ? 1 : B >= BATCH_OMP_MIN ? default_threads() : omp_get_max_threads();
    int cur = -1;
    float *qbuf = xmalloc(B * d * sizeof *qbuf);
    float *sc = xmalloc(B * k * sizeof *sc);
    int64_t *lb = xmalloc(B * k * sizeof *lb);
    size_t unit, first, cnt;
    while (run_take(r, &unit, &first, &cnt)) {
        int want = cnt < SERIAL_NQ ? 1 : team;
        if (want != cur) omp_set_num_threads(cur = want);
        double t0 = now_s();
        for (size_t i = 0; i < cnt; i++) {
            memcpy(qbuf + i * d, r->q->x + run_row(r, first + i) * d, d * sizeof *qbuf);
            if (fb->metric == FM_COSINE) vec_normalize(qbuf + i * d, d);
        }
        int rc = faiss_Index_search(fb->fi, (idx_t)cnt, qbuf, (idx_t)k, sc, lb);
        if (rc) {
            j->rc = rc;
            snprintf(j->err, sizeof j->err, "%s", faiss_err());
            atomic_store(&r->failed, 1);
            break;
        }
        if (r->ids) memcpy(r->ids + first * k, lb, cnt * k * sizeof *lb);
        double t1 = now_s();
        if (r->lat) r->lat[unit] = t1 - t0;
    }
    free(qbuf);
    free(sc);
    free(lb);
    return NULL;
}

/* One timed sweep point; prints its JSON object (one line) on stdout. */
static void faiss_point(const fbench *fb, uint32_t nlist, const vecs *q, const uint32_t *order,
                        size_t norder, size_t k, uint32_t nprobe, int single, int threads,
                        size_t batch, size_t warmup, const char *out)
{
    if (single) batch = 1;
    /* every thread of the point searches with this nprobe (FAISS clamps it to nlist) */
    if (fb->ivf) faiss_IndexIVF_set_nprobe(fb->ivf, nprobe ? nprobe : default_nprobe(nlist));
    faiss_job *jobs = xcalloc((size_t)threads, sizeof *jobs);
    for (int i = 0; i < threads; i++) {
        jobs[i].fb = fb;
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
        if (jobs[i].rc) die("faiss_Index_search failed (%d): %s", jobs[i].rc, jobs[i].err);
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
    long nlist = 0, pq_m = 0, pq_nbits = 8, refine = 0, hnsw_min = 0;
    int mode = -1, threads = default_threads(), serve = 0, build_only = 0;
    static const struct option opts[] = {
        {"base", 1, 0, 'b'},     {"limit", 1, 0, 'l'},    {"queries", 1, 0, 'q'},
        {"order", 1, 0, 'o'},    {"metric", 1, 0, 'M'},   {"kind", 1, 0, 'K'},
        {"nlist", 1, 0, 'L'},    {"pq-m", 1, 0, 'P'},     {"pq-nbits", 1, 0, 'N'},
        {"refine", 1, 0, 'R'},   {"nprobes", 1, 0, 'n'},  {"k", 1, 0, 'k'},
        {"mode", 1, 0, 'm'},     {"threads", 1, 0, 't'},  {"batch", 1, 0, 'B'},
        {"warmup", 1, 0, 'w'},   {"out-prefix", 1, 0, 'O'}, {"serve", 0, 0, 'S'},
        {"train-per-list", 1, 0, 'T'}, {"hnsw-coarse-min", 1, 0, 'H'},
        {"build-only", 0, 0, 'Y'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
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
        case 'H': hnsw_min = parse_long("hnsw-coarse-min", optarg, 0, 1 << 20); break;
        case 'Y': build_only = 1; break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (!bpath) die("faiss needs --base");
    if (!build_only && (!qpath || !opath)) die("faiss needs --queries and --order (or --build-only)");
    if (!serve && !build_only && (!nprobes || !prefix || mode < 0))
        die("faiss needs --nprobes, --mode and --out-prefix (or --serve)");
    fmetric metric = strcmp(metric_s, "l2") == 0       ? FM_L2
                     : strcmp(metric_s, "ip") == 0     ? FM_IP
                     : strcmp(metric_s, "cosine") == 0 ? FM_COSINE
                                                       : 0;
    if (!metric) die("--metric %s: expected l2, ip or cosine", metric_s);
    fkind kind = fkind_parse(kind_s);
    if (!kind) die("--kind %s: expected flat, ivf_flat, ivf_pq, ivf_pq_fs or ivf_sq8", kind_s);

    vecs base, q = {0};
    vecs_load(bpath, limit, &base);
    size_t norder = 0;
    uint32_t *order = NULL;
    if (!build_only) {
        vecs_load(qpath, 0, &q);
        if (q.d != base.d) die("queries have dim %u, base %u", q.d, base.d);
        order = order_load(opath, q.n, &norder);
    }
    /* the server stores unit vectors for cosine: train, add and re-rank from the same */
    if (metric == FM_COSINE)
        for (size_t i = 0; i < base.n; i++) vec_normalize(base.x + i * base.d, base.d);

    /* resolved as the server resolves a spec (storage/db.c) */
    int is_pq = kind == FK_IVF_PQ || kind == FK_IVF_PQ_FS;
    uint32_t d = base.d, nl = 0, pm = 0, pb = 0;
    if (kind != FK_FLAT) nl = nlist ? (uint32_t)nlist : auto_nlist(base.n);
    if (is_pq) {
        pm = pq_m ? (uint32_t)pq_m : default_pq_m(d, kind == FK_IVF_PQ_FS ? 256 : 64);
        pb = kind == FK_IVF_PQ_FS ? 4 : pq_nbits ? (uint32_t)pq_nbits : 8;
        if (d % pm) die("--pq-m %u does not divide dim %u", pm, d);
    }
    int use_refine = refine > 1 && kind != FK_FLAT && kind != FK_IVF_FLAT;
    char desc[96];
    /* the server's coarse quantizer: an HNSW graph of the centroids from
     * --hnsw-coarse-min lists on (quiverd's flag of the same name) */
    const char *cq = hnsw_min > 0 && nl >= (uint32_t)hnsw_min ? "_HNSW32" : "";
    switch (kind) {
    case FK_FLAT: snprintf(desc, sizeof desc, "IDMap,Flat"); break;
    case FK_IVF_FLAT: snprintf(desc, sizeof desc, "IVF%u%s,Flat", nl, cq); break;
    case FK_IVF_SQ8: snprintf(desc, sizeof desc, "IVF%u%s,SQ8", nl, cq); break;
    /* "np": no polysemous training (slow, unused by these searches) */
    case FK_IVF_PQ: snprintf(desc, sizeof desc, "IVF%u%s,PQ%ux%unp", nl, cq, pm, pb); break;
    case FK_IVF_PQ_FS: snprintf(desc, sizeof desc, "IVF%u%s,PQ%ux4fs", nl, cq, pm); break;
    }
    FaissIndex *ivf_fi = NULL;
    int rc = faiss_index_factory(&ivf_fi, (int)d, desc,
                                 metric == FM_L2 ? METRIC_L2 : METRIC_INNER_PRODUCT);
    if (rc) die("faiss_index_factory(\"%s\") failed (%d): %s", desc, rc, faiss_err());
    fbench fb = {ivf_fi, NULL, d, metric};
    if (kind != FK_FLAT && !(fb.ivf = faiss_IndexIVF_cast(ivf_fi)))
        die("faiss_index_factory(\"%s\") did not give an IVF index", desc);
    if (use_refine) {
        FaissIndexRefineFlat *rf = NULL;
        if ((rc = faiss_IndexRefineFlat_new(&rf, ivf_fi)))
            die("faiss_IndexRefineFlat_new failed (%d): %s", rc, faiss_err());
        faiss_IndexRefineFlat_set_k_factor(rf, (float)refine);
        faiss_IndexRefineFlat_set_own_fields(rf, 1); /* frees the IVF index with it */
        fb.fi = (FaissIndex *)rf;
    }

    double train_s = 0, add_s, t0;
    size_t nsample = 0;
    if (kind != FK_FLAT) {
        size_t cap = (size_t)nl * per_list;
        if (is_pq && cap < (per_list << pb)) cap = per_list << pb;
        if (cap < TRAIN_MIN_SAMPLE) cap = TRAIN_MIN_SAMPLE;
        if (cap > base.n) cap = base.n;
        float *s = train_sample(&base, cap, &nsample);
        if (nsample < nl) die("%zu vectors to train on for nlist %u", nsample, nl);
        if (is_pq && nsample < ((size_t)1 << pb))
            die("%zu vectors to train on for pq_nbits %u (needs %zu)", nsample, pb,
                (size_t)1 << pb);
        t0 = now_s();
        if ((rc = faiss_Index_train(fb.fi, (idx_t)nsample, s)))
            die("faiss_Index_train failed (%d): %s", rc, faiss_err());
        train_s = now_s() - t0;
        free(s);
    }
    int64_t *ids = xmalloc(base.n * sizeof *ids);
    for (size_t i = 0; i < base.n; i++) ids[i] = (int64_t)i;
    t0 = now_s();
    /* in chunks in row order, as the server adds; ids are row numbers: given
     * as such, or (IndexRefine has no add_with_ids) FAISS's sequential ids */
    for (size_t i = 0; i < base.n; i += 20000) {
        size_t c = base.n - i < 20000 ? base.n - i : 20000;
        const float *x = base.x + i * d;
        rc = use_refine ? faiss_Index_add(fb.fi, (idx_t)c, x)
                        : faiss_Index_add_with_ids(fb.fi, (idx_t)c, x, ids + i);
        if (rc) die("faiss_Index_add%s failed (%d): %s", use_refine ? "" : "_with_ids", rc,
                    faiss_err());
    }
    /* the server shrinks the IVF lists to fit here: not in the C API, and
     * search speed does not depend on it */
    add_s = now_s() - t0;
    free(ids);
    if ((size_t)faiss_Index_ntotal(fb.fi) != base.n)
        die("the index holds %lld vectors after adding %zu", (long long)faiss_Index_ntotal(fb.fi),
            base.n);
    /* estimate: per vector its code and id, the coarse centroids, the raw
     * vectors of the refine index */
    size_t code = kind == FK_IVF_SQ8 ? d : is_pq ? ((size_t)pm * pb + 7) / 8 : (size_t)d * 4;
    size_t index_bytes = base.n * (code + 8) + (size_t)nl * d * 4;
    if (use_refine) index_bytes += base.n * (size_t)d * 4;
    printf("{\"engine\": \"faiss\", \"event\": \"built\", \"kind\": \"%s\", \"metric\": \"%s\", "
           "\"vectors\": %zu, \"dim\": %u, \"nlist\": %u, \"pq_m\": %u, \"pq_nbits\": %u, "
           "\"refine\": %ld, \"train_vectors\": %zu, \"train_s\": %.6f, \"add_s\": %.6f, "
           "\"index_bytes\": %zu, \"rss_kb\": %ld, \"hwm_kb\": %ld, \"omp_max_threads\": %d, "
           "\"blas_core\": \"%s\", \"factory\": \"%s%s\"}\n",
           fkind_names[kind], metric_s, base.n, d, nl, pm, pb, refine, nsample, train_s, add_s,
           index_bytes, rss_kb("VmRSS"), rss_kb("VmHWM"), omp_get_max_threads(), blas_core(), desc,
           use_refine ? " + IndexRefineFlat" : "");
    fflush(stdout);
    char path[4096];
    if (build_only) {
        /* nothing more: the build line is the answer */
    } else if (!serve) {
        const char *s = nprobes;
        while (*s) {
            char *end;
            unsigned long np = strtoul(s, &end, 10);
            if (end == s || np == 0 || np > UINT32_MAX) die("--nprobes %s: bad list", nprobes);
            snprintf(path, sizeof path, "%s.%lu.ids", prefix, np);
            faiss_point(&fb, nl, &q, order, norder, k, (uint32_t)np, mode == 0, threads, batch,
                        warmup, path);
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
            faiss_point(&fb, nl, &q, order, norder, k, np, parse_mode(mode_s) == 0, th, b, w,
                        path);
        }
    }
    faiss_Index_free(fb.fi);
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
