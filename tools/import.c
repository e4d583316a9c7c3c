/*
 * import: `quiver import COLLECTION FILE...` — the rows of fvecs, bvecs,
 * npy, JSON Lines and CSV files into a collection over Items/Import streams.
 * A reader thread reads, checks and encodes rows into batches and batches
 * into segments (one Import stream each) while --window sender threads keep
 * segments in flight; every acknowledged prefix of segments is recorded in a
 * checkpoint file, from which --resume continues. Built on cli.h (options,
 * the connection, errors), meter.h (progress), formats.h (the readers),
 * checkpoint.h (the resume file) and qv_arena (each segment's attributes).
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <grpc/status.h>

#include "checkpoint.h"
#include "cli.h"
#include "formats.h"
#include "meter.h"
#include "quiver/arena.h"
#include "transfer.h"

/* Defaults, measured on the 2-core machine (README, "Bulk import"). */
#define DEFAULT_BATCH 4000
#define DEFAULT_SEGMENT_BATCHES 4
#define DEFAULT_WINDOW 3
#define BATCH_BYTES (8 << 20) /* an UpsertRequest's estimated size cap */
#define MAX_BATCH 100000      /* the server's items per request */
#define MAX_WINDOW 64
#define MAX_BAD_SHOWN 100     /* bad rows printed with --skip-bad */
#define MAX_ID INT64_MAX

static const char usage_import[] =
    "Usage: quiver import COLLECTION FILE... [--format F] [--id-offset N]\n"
    "                    [--create [--metric l2|ip|cosine] [--kind K] [--nlist N]\n"
    "                              [--pq-m N] [--pq-nbits N] [--refine N]\n"
    "                              [--shards N] [--replicas N]]\n"
    "                    [--skip-bad] [--resume] [--checkpoint PATH]\n"
    "                    [--ack applied|logged]\n"
    "                    [--batch N] [--segment-batches N] [--window N]\n"
    "\n"
    "Load the rows of FILEs (in order) into a collection over Items/Import streams,\n"
    "reading and encoding while earlier batches are in flight. The collection must\n"
    "exist with the files' dimension (checked before anything is sent), or --create\n"
    "makes it.\n"
    "\n"
    "Formats, by extension or --format:\n"
    "  .fvecs .bvecs   texmex: per row an int32 dim, then dim float32 (bvecs: bytes)\n"
    "  .npy            NumPy 2-D (rows, dim), C order, float32 '<f4' or float16 '<f2';\n"
    "                  other dtypes, Fortran order and other shapes are refused\n"
    "  .jsonl .ndjson  JSON Lines: {\"id\": 7, \"vector\": [0.5, ...], \"attributes\":\n"
    "                  {\"lang\": \"en\", \"tags\": [\"a\", \"b\"], \"price\": 9.5}}\n"
    "  .csv            id,v1,...,vd per line (no quoting); a first line that does not\n"
    "                  start with a number is a header and skipped\n"
    "Ids: jsonl and csv rows carry theirs (0..2^63-1); fvecs, bvecs and npy rows get\n"
    "their row number (from 0, counted across the FILEs, bad rows included) plus\n"
    "--id-offset. A later row with the id of an earlier one replaces it.\n"
    "Attributes (jsonl) become Value kinds: string -> string_value, integer ->\n"
    "int_value (int64), real (with '.' or an exponent) -> double_value, true/false ->\n"
    "bool_value, array of strings -> string_list; null, objects and other arrays are\n"
    "bad attributes (also: keys over 256 bytes, strings over 64 KiB, > 256 keys).\n"
    "\n"
    "Bad rows (wrong dimension, NaN or infinity, unparsable JSON, a bad attribute or\n"
    "id, a truncated row) are reported as FILE:ROW: reason (ROW: the line in jsonl\n"
    "and csv, the row from 1 in fvecs, bvecs, npy). Without --skip-bad the import\n"
    "stops before sending the bad row's batch (earlier batches are imported) and\n"
    "exits 5.\n"
    "\n"
    "  --format F          fvecs, bvecs, npy, jsonl or csv, for every FILE\n"
    "  --id-offset N       id of the first fvecs/bvecs/npy row (default 0)\n"
    "  --create            create the collection with the files' dimension, metric\n"
    "                      --metric (default l2) and the index options of\n"
    "                      'quiver collections create'; with --resume an existing\n"
    "                      collection of that dimension is used\n"
    "  --shards N, --replicas N\n"
    "                      with --create, in cluster mode: the collection's shards\n"
    "                      and copies of each (as for 'quiver collections create')\n"
    "  --ack A             when the server acknowledges each stream: applied\n"
    "                      (default: every ACTIVE replica has applied it; on a\n"
    "                      single node: committed) or logged (cluster mode: once the\n"
    "                      cluster's log holds it; replicas apply it soon after)\n"
    "  --skip-bad          skip bad rows, report and count them, and go on\n"
    "  --batch N           rows per UpsertRequest (default 4000; fewer when 8 MiB)\n"
    "  --segment-batches N batches per Import stream (default 4): the unit the\n"
    "                      server acknowledges and the checkpoint records\n"
    "  --window N          Import streams in flight at once (default 3)\n"
    "  --resume            continue after the rows the checkpoint records as\n"
    "                      acknowledged (from the start when there is none)\n"
    "  --checkpoint PATH   the checkpoint file (default: FILE.quiver-import.json\n"
    "                      beside the first FILE, or in the current folder when\n"
    "                      FILE's folder is not writable or has no w bit)\n"
    "\n"
    "Checkpoint: after each acknowledged segment (and all before it) the importer\n"
    "replaces, atomically, a JSON file {\"version\": 1, \"collection\", \"format\",\n"
    "\"id_offset\", \"files\": [{\"path\", \"size\", \"mtime\" (ns), \"format\"}],\n"
    "\"rows_done\", \"rows_skipped\", \"dim\"}; rows_done counts the rows (bad ones\n"
    "too) of the FILEs, in order, that are acknowledged. Killing the importer or the\n"
    "server at any moment and running the same command with --resume ends with\n"
    "exactly the files' rows (re-sent rows replace themselves). --resume refuses a\n"
    "checkpoint of other files (path, size or mtime), collection, format or\n"
    "--id-offset. A completed import deletes its checkpoint.\n"
    "\n"
    "Progress: a bar with rows/s and ETA on a terminal (stderr); at the end one\n"
    "summary line, or with --json {\"rows_sent\", \"rows_acknowledged\",\n"
    "\"rows_skipped\", \"seconds\", \"rows_per_second\", ...}. Each Import stream has\n"
    "the --timeout deadline. Exit codes: 5 for a bad row or file, else as for\n"
    "every command (3 when the server goes away: --resume continues).\n";

/* ------------------------------------------------------- batches, segments */
typedef struct batch {
    Quiver__V1__UpsertRequest req;
    Quiver__V1__Item *items;
    Quiver__V1__Item **ptrs;
    float *vecs;
    size_t n, cap, bytes;
} batch;

/* One Import stream's worth of batches and the input it covers. */
typedef struct segment {
    uint64_t seq;
    uint64_t end_rec; /* records of the input done at its end (checkpoint rows_done) */
    uint64_t end_pos; /* bytes of the input done at its end (progress) */
    uint64_t skipped; /* bad rows skipped in its range */
    uint64_t rows;    /* rows in its batches */
    batch *b;
    size_t nb, bcap;
    qv_arena *mem;   /* attributes (made on first use) */
    uint64_t *ids;   /* sorted ids, when the files carry ids */
    size_t nids, idcap;
    struct segment *next;
} segment;

/* An acknowledged segment whose predecessors are not all acknowledged yet. */
typedef struct acked {
    uint64_t seq, end_rec, end_pos, skipped;
    struct acked *next;
} acked;

typedef struct importer {
    /* settings */
    const char *coll;
    Quiver__V1__WriteAck ack; /* --ack: of every UpsertRequest (the server takes the first's) */
    size_t nfiles;
    const char **paths;
    qvf_format *fmts;
    qvf_reader **rd;
    uint64_t *base; /* bytes of the files before each */
    uint64_t total_bytes;
    size_t dim, batch_rows;
    uint64_t id_offset;
    int skip_bad, any_file_ids;
    size_t seg_batches, window;
    const char *format_name;
    char *ckpt_path;
    json_t *ck_identity; /* the checkpoint's description of this import */
    qvc *conn;
    meter m;
    /* where this run starts */
    size_t first_file;
    uint64_t start_rec, start_skipped, start_pos;
    /* shared, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    segment *qhead, *qtail;
    size_t qlen;
    int reader_done;
    segment *inflight; /* popped, not finished (waiting ones too), in seq order */
    acked *pending;
    uint64_t next_ack;                       /* every segment before it is acknowledged */
    uint64_t ack_rec, ack_pos, ack_skipped;  /* the acknowledged prefix */
    atomic_uint_fast64_t rows_sent, rows_acked, rows_skipped, bad_shown;
    int failed; /* a stream failed: stop */
    qvc_status fail_st;
    /* the reader's outcome: 0 or an exit code (message printed) */
    int reader_rc;
    char stop_at[1200]; /* "FILE:ROW" of the bad row that stopped it */
    /* checkpoint writes */
    pthread_mutex_t ck_mu;
    uint64_t ck_written;
    int ck_failed;
    char ck_err[512];
} importer;

static void batch_free(batch *b)
{
    free(b->items);
    free(b->ptrs);
    free(b->vecs);
}

static void seg_free(segment *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->nb; i++) batch_free(&s->b[i]);
    free(s->b);
    qv_arena_free(s->mem);
    free(s->ids);
    free(s);
}

/* The batch being filled: s->b[s->nb], made on first use. */
static batch *seg_batch(importer *im, segment *s)
{
    if (s->nb == s->bcap) {
        size_t cap = s->bcap ? 2 * s->bcap : im->seg_batches;
        batch *b = realloc(s->b, cap * sizeof *b);
        if (!b) return NULL;
        memset(b + s->bcap, 0, (cap - s->bcap) * sizeof *b);
        s->b = b;
        s->bcap = cap;
    }
    batch *b = &s->b[s->nb];
    if (!b->items) {
        quiver__v1__upsert_request__init(&b->req);
        b->cap = im->batch_rows;
        b->items = malloc(b->cap * sizeof *b->items);
        b->ptrs = malloc(b->cap * sizeof *b->ptrs);
        b->vecs = malloc(b->cap * im->dim * sizeof *b->vecs);
        if (!b->items || !b->ptrs || !b->vecs) {
            batch_free(b);
            memset(b, 0, sizeof *b);
            return NULL;
        }
        b->req.collection = (char *)im->coll;
        b->req.ack = im->ack;
        b->req.items = b->ptrs;
    }
    return b;
}

/* JSON attributes (checked by the reader) -> the item's map; bytes used or -1. */
static long attrs_convert(qv_arena *a, json_t *attrs, Quiver__V1__Item *it)
{
    size_t n = json_object_size(attrs), bytes = 0;
    Quiver__V1__Item__AttributesEntry **e = qv_arena_alloc(a, n * sizeof *e);
    if (!e) return -1;
    const char *k;
    json_t *v;
    size_t i = 0;
    json_object_foreach(attrs, k, v) {
        Quiver__V1__Item__AttributesEntry *en = qv_arena_alloc(a, sizeof *en);
        Quiver__V1__Value *val = qv_arena_alloc(a, sizeof *val);
        if (!en || !val) return -1;
        quiver__v1__item__attributes_entry__init(en);
        quiver__v1__value__init(val);
        size_t kl = strlen(k);
        if (!(en->key = qv_arena_strndup(a, k, kl))) return -1;
        bytes += kl + 16;
        en->value = val;
        switch (json_typeof(v)) {
        case JSON_STRING:
            val->kind_case = QUIVER__V1__VALUE__KIND_STRING_VALUE;
            if (!(val->string_value = qv_arena_strndup(a, json_string_value(v), json_string_length(v)))) return -1;
            bytes += json_string_length(v);
            break;
        case JSON_INTEGER:
            val->kind_case = QUIVER__V1__VALUE__KIND_INT_VALUE;
            val->int_value = (int64_t)json_integer_value(v);
            break;
        case JSON_REAL:
            val->kind_case = QUIVER__V1__VALUE__KIND_DOUBLE_VALUE;
            val->double_value = json_real_value(v);
            break;
        case JSON_TRUE:
        case JSON_FALSE:
            val->kind_case = QUIVER__V1__VALUE__KIND_BOOL_VALUE;
            val->bool_value = json_is_true(v);
            break;
        default: { /* JSON_ARRAY of strings */
            Quiver__V1__StringList *sl = qv_arena_alloc(a, sizeof *sl);
            size_t m = json_array_size(v);
            if (!sl) return -1;
            quiver__v1__string_list__init(sl);
            sl->values = qv_arena_alloc(a, (m ? m : 1) * sizeof *sl->values);
            if (!sl->values) return -1;
            for (size_t j = 0; j < m; j++) {
                json_t *s = json_array_get(v, j);
                if (!(sl->values[j] = qv_arena_strndup(a, json_string_value(s), json_string_length(s)))) return -1;
                bytes += json_string_length(s) + 2;
            }
            sl->n_values = m;
            val->kind_case = QUIVER__V1__VALUE__KIND_STRING_LIST;
            val->string_list = sl;
        }
        }
        e[i++] = en;
    }
    it->attributes = e;
    it->n_attributes = n;
    return (long)bytes;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Do two sorted id arrays share an id? */
static int ids_meet(const segment *a, const segment *b)
{
    if (!a->nids || !b->nids || a->ids[0] > b->ids[b->nids - 1] || b->ids[0] > a->ids[a->nids - 1]) return 0;
    for (size_t i = 0, j = 0; i < a->nids && j < b->nids;) {
        if (a->ids[i] == b->ids[j]) return 1;
        if (a->ids[i] < b->ids[j]) i++;
        else j++;
    }
    return 0;
}

/* ------------------------------------------------------------- checkpoint */
/* Write the acknowledged prefix if it moved (any thread). */
static void ckpt_update(importer *im)
{
    pthread_mutex_lock(&im->ck_mu);
    pthread_mutex_lock(&im->mu);
    uint64_t rec = im->ack_rec, skipped = im->ack_skipped;
    pthread_mutex_unlock(&im->mu);
    if (rec > im->ck_written && !im->ck_failed) {
        if (qvck_write(im->ckpt_path, im->ck_identity, rec, skipped, im->ck_err, sizeof im->ck_err)) {
            im->ck_failed = 1;
            pthread_mutex_lock(&im->mu);
            im->failed = 1; /* resuming would not be safe: stop */
            pthread_cond_broadcast(&im->cv);
            pthread_mutex_unlock(&im->mu);
        } else {
            im->ck_written = rec;
        }
    }
    pthread_mutex_unlock(&im->ck_mu);
}

/* --resume: where the checkpoint says to start (0 without one). Returns 0 or
 * an exit code, the message printed. */
static int ckpt_resume(importer *im)
{
    char why[512];
    switch (qvck_load(im->ckpt_path, im->ck_identity, &im->start_rec, &im->start_skipped, why, sizeof why)) {
    case QVCK_OK: return EXIT_OK;
    case QVCK_NONE:
        fprintf(stderr, "quiver: no checkpoint at %s: starting at the first row\n", im->ckpt_path);
        return EXIT_OK;
    case QVCK_MISMATCH:
        fprintf(stderr,
                "quiver: checkpoint %s does not match this import: %s; run without --resume to start "
                "again (or delete it)\n",
                im->ckpt_path, why);
        return EXIT_REJECTED;
    default: fprintf(stderr, "quiver: checkpoint %s does not read: %s\n", im->ckpt_path, why); return EXIT_REJECTED;
    }
}

/* ------------------------------------------------------------- the reader */
/* Hand a segment to the senders; waits while --window of them are queued.
 * Returns 0, or -1 when the import failed (the segment is freed). */
static int push(importer *im, segment *s)
{
    if (im->any_file_ids && s->nids) qsort(s->ids, s->nids, sizeof *s->ids, cmp_u64);
    pthread_mutex_lock(&im->mu);
    while (im->qlen >= im->window && !im->failed) pthread_cond_wait(&im->cv, &im->mu);
    if (im->failed) {
        pthread_mutex_unlock(&im->mu);
        seg_free(s);
        return -1;
    }
    if (im->qtail) im->qtail->next = s;
    else im->qhead = s;
    im->qtail = s;
    im->qlen++;
    pthread_cond_broadcast(&im->cv);
    pthread_mutex_unlock(&im->mu);
    return 0;
}

static int failed_now(importer *im)
{
    pthread_mutex_lock(&im->mu);
    int f = im->failed;
    pthread_mutex_unlock(&im->mu);
    return f;
}

/* Report a bad row; returns 1 when the reader must stop. */
static int bad_row(importer *im, size_t f, uint64_t row, const char *why, int fatal)
{
    uint64_t shown = atomic_fetch_add(&im->bad_shown, 1);
    if (!im->skip_bad || fatal) {
        meter_note(&im->m, "%s:%" PRIu64 ": %s", im->paths[f], row, why);
        snprintf(im->stop_at, sizeof im->stop_at, "%s:%" PRIu64, im->paths[f], row);
        im->reader_rc = EXIT_REJECTED;
        return 1;
    }
    if (shown < MAX_BAD_SHOWN) meter_note(&im->m, "%s:%" PRIu64 ": %s (skipped)", im->paths[f], row, why);
    else if (shown == MAX_BAD_SHOWN) meter_note(&im->m, "quiver: more bad rows are skipped without a word");
    atomic_fetch_add(&im->rows_skipped, 1);
    return 0;
}

static void *reader_main(void *arg)
{
    importer *im = arg;
    uint64_t rec = im->start_rec, seq = 0, skipped = 0; /* skipped: in the current segment */
    segment *s = calloc(1, sizeof *s);
    batch *b = NULL;
    char err[1024];
    int oom = 0;
    if (!s) goto nomem;
    s->seq = seq++;
    for (size_t f = im->first_file; f < im->nfiles; f++) {
        qvf_reader *r = im->rd[f];
        for (;;) {
            qvf_row row;
            int rc = qvf_next(r, &row, err, sizeof err);
            if (rc == QVF_EOF) break;
            if (rc == QVF_ROW && !row.has_id) {
                row.id = im->id_offset + rec;
                if (row.id > (uint64_t)MAX_ID) {
                    snprintf(err, sizeof err, "id %" PRIu64 " (row + --id-offset) is over 2^63-1", row.id);
                    rc = QVF_BAD;
                }
            }
            if (rc != QVF_ROW) {
                rec++;
                if (bad_row(im, f, row.row, err, rc == QVF_FATAL)) goto stop;
                skipped++;
                continue;
            }
            if (!b && !(b = seg_batch(im, s))) goto nomem;
            Quiver__V1__Item *it = &b->items[b->n];
            quiver__v1__item__init(it);
            it->id = row.id;
            it->n_vector = im->dim;
            it->vector = b->vecs + b->n * im->dim;
            memcpy(it->vector, row.vec, im->dim * sizeof *row.vec);
            b->bytes += im->dim * 4 + 24;
            if (row.attrs && json_object_size(row.attrs)) {
                if (!s->mem && !(s->mem = qv_arena_new())) goto nomem;
                long used = attrs_convert(s->mem, row.attrs, it);
                if (used < 0) goto nomem;
                b->bytes += (size_t)used;
            }
            if (row.has_id) {
                if (s->nids == s->idcap) {
                    size_t cap = s->idcap ? 2 * s->idcap : 1024;
                    uint64_t *ids = realloc(s->ids, cap * sizeof *ids);
                    if (!ids) goto nomem;
                    s->ids = ids;
                    s->idcap = cap;
                }
                s->ids[s->nids++] = row.id;
            }
            b->ptrs[b->n++] = it;
            rec++;
            if (b->n < b->cap && b->bytes < BATCH_BYTES) continue;
            /* the batch is full: close it, and the segment when that is full */
            b->req.n_items = b->n;
            s->rows += b->n;
            s->nb++;
            b = NULL;
            s->end_rec = rec;
            s->end_pos = im->base[f] + qvf_pos(r);
            s->skipped = skipped;
            if (s->nb < im->seg_batches) continue;
            segment *full = s;
            if (!(s = calloc(1, sizeof *s))) goto nomem;
            s->seq = seq++;
            skipped = 0;
            if (push(im, full) || failed_now(im)) goto stop;
        }
    }
    /* the end of the input: the last batch and segment, bad rows after them included */
    if (b && b->n) {
        b->req.n_items = b->n;
        s->rows += b->n;
        s->nb++;
        b = NULL;
    }
    s->end_rec = rec;
    s->end_pos = im->total_bytes;
    s->skipped = skipped;
    push(im, s);
    s = NULL;
    goto done;
nomem:
    oom = 1;
    meter_note(&im->m, "quiver: out of memory reading the files");
    im->reader_rc = EXIT_SERVER;
stop:
    /* every closed batch goes; the one with the bad row does not */
    if (s && b) {
        batch_free(b);
        memset(b, 0, sizeof *b);
    }
    if (s && s->nb) push(im, s);
    else seg_free(s);
done:
    (void)oom;
    pthread_mutex_lock(&im->mu);
    im->reader_done = 1;
    pthread_cond_broadcast(&im->cv);
    pthread_mutex_unlock(&im->mu);
    return NULL;
}

/* ------------------------------------------------------------ the senders */
/* One segment as one Import stream. Returns 1 when acknowledged. */
static int send_segment(importer *im, segment *s, qvc_status *st)
{
    if (s->nb == 0) return 1; /* only bad rows: nothing to send */
    qvc_upload *u;
    if (qvc_upload_start(im->conn, QVC_ITEMS_IMPORT, cli_timeout_ms(), &u, st)) return 0;
    int broken = 0;
    for (size_t i = 0; i < s->nb && !broken; i++) {
        if (qvc_upload_send(u, &s->b[i].req.base)) broken = 1;
        else atomic_fetch_add(&im->rows_sent, s->b[i].n);
    }
    Quiver__V1__UpsertResponse *rep = NULL;
    int code = qvc_upload_finish(u, &quiver__v1__upsert_response__descriptor, (ProtobufCMessage **)&rep, st);
    if (rep) protobuf_c_message_free_unpacked(&rep->base, NULL);
    if (code == 0 && broken) {
        st->code = GRPC_STATUS_INTERNAL;
        snprintf(st->details, sizeof st->details, "the server ended an Import stream early without an error");
        return 0;
    }
    return code == 0;
}

/* Record s as acknowledged and move the prefix on; mu held. */
static void ack(importer *im, const segment *s)
{
    acked *a = malloc(sizeof *a), **p = &im->pending;
    if (!a) { /* cannot remember it: the checkpoint stays behind, which is safe */
        return;
    }
    *a = (acked){s->seq, s->end_rec, s->end_pos, s->skipped, NULL};
    while (*p && (*p)->seq < a->seq) p = &(*p)->next;
    a->next = *p;
    *p = a;
    while (im->pending && im->pending->seq == im->next_ack) {
        acked *h = im->pending;
        im->pending = h->next;
        im->ack_rec = h->end_rec;
        im->ack_pos = h->end_pos;
        im->ack_skipped += h->skipped;
        im->next_ack++;
        free(h);
    }
    atomic_store(&im->m.done, im->ack_pos);
}

static void *sender_main(void *arg)
{
    importer *im = arg;
    for (;;) {
        pthread_mutex_lock(&im->mu);
        while (!im->qhead && !im->reader_done && !im->failed) pthread_cond_wait(&im->cv, &im->mu);
        if (im->failed || !im->qhead) {
            pthread_mutex_unlock(&im->mu);
            return NULL;
        }
        segment *s = im->qhead;
        im->qhead = s->next;
        if (!im->qhead) im->qtail = NULL;
        im->qlen--;
        s->next = NULL;
        segment **p = &im->inflight; /* in seq order: pops are */
        while (*p) p = &(*p)->next;
        *p = s;
        pthread_cond_broadcast(&im->cv);
        /* a row must not overtake an earlier row with its id */
        for (;;) {
            int meets = 0;
            for (segment *t = im->inflight; t && t != s && !meets; t = t->next) meets = ids_meet(t, s);
            if (!meets || im->failed) break;
            pthread_cond_wait(&im->cv, &im->mu);
        }
        int go = !im->failed;
        pthread_mutex_unlock(&im->mu);

        qvc_status st = {0};
        int ok = go && send_segment(im, s, &st);

        pthread_mutex_lock(&im->mu);
        for (p = &im->inflight; *p != s; p = &(*p)->next) {
        }
        *p = s->next;
        if (ok) {
            atomic_fetch_add(&im->rows_acked, s->rows);
            atomic_store(&im->m.count, atomic_load(&im->rows_acked));
            ack(im, s);
        } else if (go && !im->failed) {
            im->failed = 1;
            im->fail_st = st;
        }
        pthread_cond_broadcast(&im->cv);
        pthread_mutex_unlock(&im->mu);
        if (ok) ckpt_update(im);
        seg_free(s);
    }
}

/* ---------------------------------------------------------------- command */
typedef struct import_args {
    const char *format, *id_offset, *metric, *batch, *window, *seg_batches, *checkpoint;
    const char *shards, *replicas, *ack;
    int create, skip_bad, resume;
    index_opts io;
    uint32_t shards_val, replicas_val;
} import_args;

static int opt_count(const char *cmd, const char *name, const char *s, size_t min, size_t max, size_t *out)
{
    uint64_t v;
    if (!s) return 0;
    if (cli_parse_u64(s, max, &v) || v < min)
        return cli_usage_error(cmd, "%s wants a whole number %zu..%zu, not '%s'", name, min, max, s);
    *out = (size_t)v;
    return 0;
}

/* Make or check the collection; the dimension to import at into *dim.
 * Returns 0 or an exit code (printed). */
static int prepare_collection(importer *im, const import_args *a, size_t file_dim, size_t *dim)
{
    const char *cmd = "import";
    Quiver__V1__CollectionInfo *ci = NULL;
    int rc;
    if (a->create) {
        if (!file_dim) {
            fprintf(stderr, "quiver: --create: no row of the files tells the dimension\n");
            return EXIT_REJECTED;
        }
        Quiver__V1__CreateCollectionRequest req = QUIVER__V1__CREATE_COLLECTION_REQUEST__INIT;
        Quiver__V1__IndexSpec spec = QUIVER__V1__INDEX_SPEC__INIT;
        req.name = (char *)im->coll;
        req.dim = (uint32_t)file_dim;
        req.metric = QUIVER__V1__METRIC__L2;
        if (a->metric && cli_parse_metric(a->metric, &req.metric))
            return cli_usage_error(cmd, "--metric must be l2, ip or cosine, not '%s'", a->metric);
        int any;
        if ((rc = cli_fill_spec(cmd, &a->io, &spec, &any))) return rc;
        if (any) req.index = &spec;
        req.shards = a->shards_val;
        req.replicas = a->replicas_val;
        qvc_status st;
        rc = qvc_unary(im->conn, QVC_COLLECTIONS_CREATE, &req.base, &quiver__v1__collection_info__descriptor,
                       (ProtobufCMessage **)&ci, &st, cli_timeout_ms());
        if (rc == GRPC_STATUS_ALREADY_EXISTS && a->resume) {
            ci = NULL; /* resuming an import that created it: use it */
        } else if (rc) {
            rc = cli_report(&st);
            if (st.code == GRPC_STATUS_ALREADY_EXISTS)
                fprintf(stderr, "quiver: (without --create, or with --resume, the import goes into it)\n");
            return rc;
        }
    }
    if (!ci) {
        Quiver__V1__DescribeCollectionRequest req = QUIVER__V1__DESCRIBE_COLLECTION_REQUEST__INIT;
        req.name = (char *)im->coll;
        qvc_status st;
        if (qvc_unary(im->conn, QVC_COLLECTIONS_DESCRIBE, &req.base, &quiver__v1__collection_info__descriptor,
                      (ProtobufCMessage **)&ci, &st, cli_timeout_ms())) {
            rc = cli_report(&st);
            if (st.code == GRPC_STATUS_NOT_FOUND) fprintf(stderr, "quiver: (--create makes the collection)\n");
            return rc;
        }
    }
    *dim = ci->dim;
    protobuf_c_message_free_unpacked(&ci->base, NULL);
    if (file_dim && file_dim != *dim) {
        size_t f = 0;
        while (f + 1 < im->nfiles && qvf_dim(im->rd[f]) == 0) f++;
        fprintf(stderr, "quiver: %s has dimension %zu, collection \"%s\" has dim %zu: nothing sent\n",
                im->paths[f], file_dim, im->coll, *dim);
        return EXIT_REJECTED;
    }
    return EXIT_OK;
}

/* Skip the records a checkpoint says are done; sets first_file/start_pos. */
static int skip_done(importer *im)
{
    uint64_t left = im->start_rec;
    char err[512];
    im->first_file = 0;
    while (im->first_file < im->nfiles) {
        qvf_reader *r = im->rd[im->first_file];
        int64_t k = qvf_skip(r, left, err, sizeof err);
        if (k < 0) {
            fprintf(stderr, "quiver: %s: %s\n", im->paths[im->first_file], err);
            return EXIT_REJECTED;
        }
        left -= (uint64_t)k;
        if (left == 0) break;
        im->first_file++;
    }
    if (im->first_file < im->nfiles)
        im->start_pos = im->base[im->first_file] + qvf_pos(im->rd[im->first_file]);
    else
        im->start_pos = im->total_bytes;
    return EXIT_OK;
}

static int import_run(importer *im, int argc, char **argv)
{
    const char *cmd = "import";
    import_args a = {0};
    optdef opts[] = {OPT_VAL("--format", &a.format),
                     OPT_VAL("--id-offset", &a.id_offset),
                     OPT_FLAG("--create", &a.create),
                     OPT_VAL("--metric", &a.metric),
                     OPT_VAL("--kind", &a.io.kind),
                     OPT_VAL("--nlist", &a.io.nlist),
                     OPT_VAL("--pq-m", &a.io.pq_m),
                     OPT_VAL("--pq-nbits", &a.io.pq_nbits),
                     OPT_VAL("--refine", &a.io.refine),
                     OPT_FLAG("--skip-bad", &a.skip_bad),
                     OPT_VAL("--batch", &a.batch),
                     OPT_VAL("--window", &a.window),
                     OPT_VAL("--segment-batches", &a.seg_batches),
                     OPT_FLAG("--resume", &a.resume),
                     OPT_VAL("--checkpoint", &a.checkpoint),
                     OPT_VAL("--shards", &a.shards),
                     OPT_VAL("--replicas", &a.replicas),
                     OPT_VAL("--ack", &a.ack),
                     OPT_END};
    const char **pos = calloc((size_t)argc + 1, sizeof *pos);
    if (!pos) return EXIT_SERVER;
    im->paths = pos + 1;
    int npos;
    int rc = cli_parse_args(argc, argv, opts, pos, argc, &npos, cmd, usage_import);
    if (rc >= 0) return rc;
    if (npos < 1) return cli_usage_error(cmd, "the COLLECTION is missing");
    if (npos < 2) return cli_usage_error(cmd, "give at least one FILE");
    im->coll = pos[0];
    im->nfiles = (size_t)npos - 1;
    if (!a.create && (a.metric || a.io.kind || a.io.nlist || a.io.pq_m || a.io.pq_nbits || a.io.refine))
        return cli_usage_error(cmd, "--metric and the index options go with --create");
    if (!a.create && (a.shards || a.replicas)) return cli_usage_error(cmd, "--shards and --replicas go with --create");
    if (cli_opt_u32(cmd, "--shards", a.shards, &a.shards_val, &rc) ||
        cli_opt_u32(cmd, "--replicas", a.replicas, &a.replicas_val, &rc))
        return rc;
    if (a.ack && cli_parse_ack(a.ack, &im->ack))
        return cli_usage_error(cmd, "--ack must be applied or logged, not '%s'", a.ack);
    im->batch_rows = DEFAULT_BATCH;
    im->window = DEFAULT_WINDOW;
    im->seg_batches = DEFAULT_SEGMENT_BATCHES;
    if ((rc = opt_count(cmd, "--batch", a.batch, 1, MAX_BATCH, &im->batch_rows)) ||
        (rc = opt_count(cmd, "--window", a.window, 1, MAX_WINDOW, &im->window)) ||
        (rc = opt_count(cmd, "--segment-batches", a.seg_batches, 1, 1000000, &im->seg_batches)))
        return rc;
    if (a.id_offset && cli_parse_u64(a.id_offset, (uint64_t)MAX_ID, &im->id_offset))
        return cli_usage_error(cmd, "--id-offset wants a whole number 0..2^63-1, not '%s'", a.id_offset);
    im->skip_bad = a.skip_bad;

    /* formats, then the files and their dimension */
    qvf_format forced = QVF_NONE;
    if (a.format && (forced = qvf_format_by_name(a.format)) == QVF_NONE)
        return cli_usage_error(cmd, "--format must be fvecs, bvecs, npy, jsonl or csv, not '%s'", a.format);
    im->fmts = calloc(im->nfiles, sizeof *im->fmts);
    im->rd = calloc(im->nfiles, sizeof *im->rd);
    im->base = calloc(im->nfiles, sizeof *im->base);
    if (!im->fmts || !im->rd || !im->base) return EXIT_SERVER;
    int id_files = 0;
    for (size_t i = 0; i < im->nfiles; i++) {
        im->fmts[i] = forced ? forced : qvf_format_by_path(im->paths[i]);
        if (im->fmts[i] == QVF_NONE)
            return cli_usage_error(cmd, "the extension of %s does not tell its format: give --format", im->paths[i]);
        id_files += im->fmts[i] == QVF_JSONL || im->fmts[i] == QVF_CSV;
        if (i && im->fmts[i] != im->fmts[0]) im->format_name = "mixed";
    }
    if (!im->format_name) im->format_name = qvf_format_name(im->fmts[0]);
    im->any_file_ids = id_files > 0;
    if (a.id_offset && id_files == (int)im->nfiles)
        return cli_usage_error(cmd, "--id-offset is for fvecs, bvecs and npy rows (jsonl and csv carry ids)");
    size_t file_dim = 0;
    char err[1024];
    for (size_t i = 0; i < im->nfiles; i++) {
        if (qvf_open(im->paths[i], im->fmts[i], &im->rd[i], err, sizeof err)) {
            fprintf(stderr, "quiver: %s\n", err);
            return EXIT_REJECTED;
        }
        im->base[i] = im->total_bytes;
        im->total_bytes += qvf_size(im->rd[i]);
        size_t d = qvf_dim(im->rd[i]);
        if (d && file_dim && d != file_dim) {
            fprintf(stderr, "quiver: %s has dimension %zu, the files before it %zu\n", im->paths[i], d, file_dim);
            return EXIT_REJECTED;
        }
        if (d) file_dim = d;
    }

    /* the checkpoint */
    if (!(im->ckpt_path = a.checkpoint ? strdup(a.checkpoint) : qvck_default_path(im->paths[0])))
        return EXIT_SERVER;
    const char **names = calloc(im->nfiles, sizeof *names);
    if (!names) return EXIT_SERVER;
    for (size_t i = 0; i < im->nfiles; i++) names[i] = qvf_format_name(im->fmts[i]);
    json_t *files = qvck_files(im->paths, names, im->nfiles, err, sizeof err);
    free(names);
    if (!files) {
        fprintf(stderr, "quiver: %s\n", err);
        return EXIT_REJECTED;
    }
    im->ck_identity = json_pack("{s:s, s:s, s:I, s:o, s:I}", "collection", im->coll, "format", im->format_name,
                                "id_offset", (json_int_t)im->id_offset, "files", files, "dim",
                                (json_int_t)file_dim);
    if (!im->ck_identity) return EXIT_SERVER;
    if (a.resume && (rc = ckpt_resume(im))) return rc;

    /* the collection */
    if (!(im->conn = cli_conn(&rc))) return rc;
    size_t dim = 0;
    if ((rc = prepare_collection(im, &a, file_dim, &dim))) return rc;
    im->dim = dim;
    for (size_t i = 0; i < im->nfiles; i++) qvf_expect_dim(im->rd[i], dim);
    size_t fit = BATCH_BYTES / (dim * 4 + 24);
    if (im->batch_rows > fit) im->batch_rows = fit ? fit : 1;

    if ((rc = skip_done(im))) return rc;
    if (qvck_write(im->ckpt_path, im->ck_identity, im->start_rec, im->start_skipped, err, sizeof err)) {
        fprintf(stderr, "quiver: cannot write the checkpoint: %s (--checkpoint PATH puts it elsewhere)\n", err);
        return EXIT_SERVER;
    }
    im->ck_written = im->start_rec;
    im->ack_rec = im->start_rec;
    im->ack_skipped = im->start_skipped;
    im->ack_pos = im->start_pos;
    if (a.resume && im->start_rec)
        fprintf(stderr, "quiver: resuming after %" PRIu64 " rows (checkpoint %s)\n", im->start_rec, im->ckpt_path);

    /* the pipeline */
    pthread_t reader, *senders = calloc(im->window, sizeof *senders);
    if (!senders) return EXIT_SERVER;
    meter_start(&im->m, "import", 0, im->total_bytes, im->start_pos);
    size_t started = 0;
    int have_reader = pthread_create(&reader, NULL, reader_main, im) == 0;
    for (size_t i = 0; have_reader && i < im->window; i++)
        if (pthread_create(&senders[started], NULL, sender_main, im) == 0) started++;
    if (!have_reader || !started) {
        pthread_mutex_lock(&im->mu);
        im->failed = 1;
        im->fail_st.code = GRPC_STATUS_RESOURCE_EXHAUSTED;
        snprintf(im->fail_st.details, sizeof im->fail_st.details, "client: cannot start threads");
        pthread_cond_broadcast(&im->cv);
        pthread_mutex_unlock(&im->mu);
    }
    if (have_reader) pthread_join(reader, NULL);
    for (size_t i = 0; i < started; i++) pthread_join(senders[i], NULL);
    free(senders);
    meter_end(&im->m);
    /* segments left in the queue after a failure */
    while (im->qhead) {
        segment *s = im->qhead;
        im->qhead = s->next;
        seg_free(s);
    }

    double secs = meter_seconds(&im->m);
    uint64_t sent = atomic_load(&im->rows_sent), acked_rows = atomic_load(&im->rows_acked),
             skipped = atomic_load(&im->rows_skipped);
    const char *ck = im->ckpt_path;
    if (im->ck_failed) {
        fprintf(stderr, "quiver: cannot write the checkpoint: %s\n", im->ck_err);
        return EXIT_SERVER;
    }
    if (im->failed) {
        rc = cli_report(&im->fail_st);
        fprintf(stderr,
                "quiver: %" PRIu64 " rows of the files are acknowledged (checkpoint %s); run the same command "
                "with --resume to go on\n",
                im->ack_rec, ck);
        return rc;
    }
    if (im->reader_rc) {
        if (im->reader_rc == EXIT_REJECTED)
            fprintf(stderr,
                    "quiver: stopped at the bad row %s (--skip-bad skips such rows); the %" PRIu64
                    " rows before its batch are imported\n",
                    im->stop_at, im->ack_rec);
        return im->reader_rc;
    }
    if (unlink(ck) != 0 && errno != ENOENT)
        fprintf(stderr, "quiver: warning: cannot remove the checkpoint %s: %s\n", ck, strerror(errno));
    double rate = secs > 0 ? (double)acked_rows / secs : 0;
    if (cli_json()) {
        json_t *o = json_pack("{s:s, s:I, s:I, s:I, s:f, s:f, s:I, s:I}", "collection", im->coll, "rows_sent",
                              (json_int_t)sent, "rows_acknowledged", (json_int_t)acked_rows, "rows_skipped",
                              (json_int_t)skipped, "seconds", secs, "rows_per_second", rate, "resumed_from",
                              (json_int_t)im->start_rec, "rows_done", (json_int_t)im->ack_rec);
        return cli_json_print(o);
    }
    printf("imported %" PRIu64 " rows into \"%s\" in %.1fs (%.0f rows/s)", acked_rows, im->coll, secs, rate);
    if (skipped) printf("; %" PRIu64 " bad rows skipped", skipped);
    if (im->start_rec) printf("; resumed after %" PRIu64 " rows", im->start_rec);
    printf("\n");
    return EXIT_OK;
}

int cmd_import(int argc, char **argv)
{
    importer im = {0};
    pthread_mutex_init(&im.mu, NULL);
    pthread_cond_init(&im.cv, NULL);
    pthread_mutex_init(&im.ck_mu, NULL);
    int rc = import_run(&im, argc, argv);
    for (size_t i = 0; im.rd && i < im.nfiles; i++) qvf_close(im.rd[i]);
    while (im.pending) {
        acked *a = im.pending;
        im.pending = a->next;
        free(a);
    }
    free(im.rd);
    free(im.fmts);
    free(im.base);
    free(im.paths ? (void *)(im.paths - 1) : NULL);
    free(im.ckpt_path);
    json_decref(im.ck_identity);
    pthread_mutex_destroy(&im.mu);
    pthread_cond_destroy(&im.cv);
    pthread_mutex_destroy(&im.ck_mu);
    return rc;
}
