/*
 * The engine, part: building an index from LMDB: parameters, sampling, scanning items in chunks, filling, replaying the sequence log, installing.
 * Private declarations in db_int.h.
 */
#include "db_int.h"

uint32_t qv_auto_nlist(uint64_t n)
{
    /* about 8*sqrt(n) lists, a power of two, each list trained on at least
     * TRAIN_MIN_PER_LIST points. The benchmark on glove-100 (331k) found
     * nlist 4096 fastest at recall 0.95 (ahead of 2048 and 1024) */
    double want = 8.0 * sqrt((double)n);
    uint32_t nlist = 16;
    while (nlist < 65536 && (double)nlist * 1.5 < want) nlist *= 2;
    while (nlist > 16 && (uint64_t)nlist * TRAIN_MIN_PER_LIST > n) nlist /= 2;
    return nlist;
}

/* ------------------------------------------------------- index replay */
/* Applies log entries after `after` to ix (which the caller owns or holds
 * exclusively), reading vectors from txn. [out] last: newest seq applied,
 * napplied: entries. */
typedef struct replay {
    qv_coll *c;
    MDB_txn *txn;
    qv_index *ix;
    int64_t *rm, *add;
    float *vecs;
    size_t nrm, nadd, cap;
    uint64_t last, napplied;
    int rc;
} replay;

static int replay_flush(replay *r)
{
    if (r->nrm) {
        int rc = qv_index_remove(r->ix, r->nrm, r->rm, NULL);
        if (rc) return rc;
    }
    if (r->nadd) {
        int rc = qv_index_add(r->ix, r->nadd, r->add, r->vecs);
        if (rc) return rc;
    }
    r->nrm = r->nadd = 0;
    return 0;
}

static int replay_entry(void *ctx, uint64_t seq, qv_op op, uint64_t id)
{
    replay *r = ctx;
    uint32_t dim = r->c->cfg.dim;
    r->rm[r->nrm++] = (int64_t)id;
    if (op == QV_OP_UPSERT) {
        qv_item_view v;
        int rc = qv_store_item_get(r->c->db->st, r->txn, r->c->cfg.id, id, &v);
        if (rc == 0 && v.dim == dim) {
            qv_item_vector(&v, r->vecs + r->nadd * dim);
            r->add[r->nadd++] = (int64_t)id;
        } else if (rc != QV_NOTFOUND) {
            return rc ? rc : QV_CORRUPT;
        }
    }
    r->last = seq;
    r->napplied++;
    if (r->nrm == r->cap) return replay_flush(r);
    return 0;
}

int qv_build_replay_log(qv_coll *c, MDB_txn *txn, qv_index *ix, uint64_t after, uint64_t *last,
                      uint64_t *napplied)
{
    replay r = {.c = c, .txn = txn, .ix = ix, .cap = 4096, .last = after};
    r.rm = malloc(r.cap * sizeof *r.rm);
    r.add = malloc(r.cap * sizeof *r.add);
    r.vecs = malloc(r.cap * (size_t)c->cfg.dim * sizeof *r.vecs);
    int rc = QV_NOMEM;
    if (r.rm && r.add && r.vecs) {
        rc = qv_store_log_foreach(c->db->st, txn, c->cfg.id, after, replay_entry, &r);
        if (!rc) rc = replay_flush(&r);
    }
    free(r.rm);
    free(r.add);
    free(r.vecs);
    if (last) *last = r.last;
    if (napplied) *napplied = r.napplied;
    return rc;
}

/* ------------------------------------------------------------ scanning items */
/* Reads a collection's items in chunks (bounded memory, whatever its size)
 * and hands each chunk to fn. */
typedef int (*chunk_fn)(void *ctx, size_t n, const int64_t *ids, const float *vecs);

typedef struct scanner {
    qv_coll *c;
    rebuild *rb;
    const char *phase;
    uint64_t total, seen;
    size_t n, cap;
    int64_t *ids;
    float *vecs;
    chunk_fn fn;
    void *ctx;
} scanner;

/* Rows per chunk of a scan: at most 20,000 and 16 MiB of vectors. Each
 * chunk is copied again on its way (the index's add, the calibration's exact
 * scan of it): at 20,000 rows of 784-d the chunk's copies were ~120 MiB,
 * the peak of a 60k x 784 first build. */
#define SCAN_CHUNK 20000
#define SCAN_CHUNK_BYTES ((size_t)16 << 20)

void qv_build_set_phase(qv_coll *c, rebuild *rb, const char *phase, uint64_t done, uint64_t total)
{
    if (!rb) return;
    pthread_mutex_lock(&c->rmu);
    snprintf(c->phase, sizeof c->phase, "%s", phase);
    c->done = done;
    c->total = total;
    pthread_mutex_unlock(&c->rmu);
    if (rb->req.progress) {
        qv_rebuild_progress p = {phase, done, total, elapsed_since(&rb->t0)};
        rb->req.progress(rb->req.ctx, &p);
    }
}

/* Called by FAISS during training (each k-means iteration or so): stop when
 * cancelled, and keep the progress stream alive about once a second (FAISS
 * tells no fraction: done stays 0, elapsed grows). */
static int training_tick(void *ctx)
{
    rebuild *rb = ctx;
    if (atomic_load(&rb->cancel)) return 1;
    double now = elapsed_since(&rb->t0);
    if (now - rb->last_tick >= 1.0) {
        rb->last_tick = now;
        qv_build_set_phase(rb->c, rb, "training", 0, rb->train_total);
    }
    return 0;
}

static int scan_flush(scanner *s)
{
    if (s->n == 0) return 0;
    if (s->rb && atomic_load(&s->rb->cancel)) return QV_CANCELLED;
    int rc = s->fn(s->ctx, s->n, s->ids, s->vecs);
    s->seen += s->n;
    s->n = 0;
    /* the scanned LMDB pages are page cache, not ours to keep resident */
    qv_store_release_pages(s->c->db->st);
    qv_build_set_phase(s->c, s->rb, s->phase, s->seen, s->total);
    return rc;
}

static int scan_item(void *ctx, uint64_t id, const qv_item_view *v)
{
    scanner *s = ctx;
    uint32_t dim = s->c->cfg.dim;
    if (v->dim != dim) return QV_CORRUPT;
    qv_item_vector(v, s->vecs + s->n * dim);
    s->ids[s->n++] = (int64_t)id;
    return s->n == s->cap ? scan_flush(s) : 0;
}

static int scan_items(qv_coll *c, MDB_txn *txn, rebuild *rb, const char *phase, uint64_t total,
                      chunk_fn fn, void *ctx)
{
    size_t cap = SCAN_CHUNK_BYTES / ((size_t)c->cfg.dim * sizeof(float));
    if (cap > SCAN_CHUNK) cap = SCAN_CHUNK;
    if (cap < 256) cap = 256;
    scanner s = {.c = c, .rb = rb, .phase = phase, .total = total, .cap = cap, .fn = fn, .ctx = ctx};
    s.ids = malloc(s.cap * sizeof *s.ids);
    s.vecs = malloc(s.cap * (size_t)c->cfg.dim * sizeof *s.vecs);
    int rc = QV_NOMEM;
    if (s.ids && s.vecs) {
        qv_build_set_phase(c, rb, phase, 0, total);
        rc = qv_store_item_foreach(c->db->st, txn, c->cfg.id, 0, scan_item, &s);
        if (!rc) rc = scan_flush(&s);
    }
    free(s.ids);
    free(s.vecs);
    return rc;
}

/* Reservoir sample of up to cap rows (fixed seed: rebuilds are repeatable). */

static int sample_chunk(void *ctx, size_t n, const int64_t *ids, const float *vecs)
{
    sample *s = ctx;
    for (size_t i = 0; i < n; i++) {
        size_t slot = s->n;
        s->seen++;
        if (s->n == s->cap) {
            s->rng = s->rng * 6364136223846793005ULL + 1442695040888963407ULL;
            uint64_t r = (s->rng >> 11) % s->seen;
            if (r >= s->cap) continue;
            slot = (size_t)r;
        } else {
            s->n++;
        }
        s->ids[slot] = ids[i];
        memcpy(s->vecs + slot * s->dim, vecs + i * s->dim, s->dim * sizeof *vecs);
    }
    return 0;
}

/* ----------------------------------------------------------------- builds */
/* The largest divisor of dim up to dim/2 (sub-vectors of at least 2 floats)
 * and up to cap; 1 when there is none. */
static uint32_t default_pq_m(uint32_t dim, uint32_t cap)
{
    for (uint32_t m = dim / 2; m >= 1; m--)
        if (dim % m == 0 && m <= cap) return m;
    return 1;
}

/* Resolves spec (AUTO, nlist 0) for n items. Returns 0 or QV_INVALID with a
 * message naming the field. */
int qv_build_resolve_params(const qv_db *db, const qv_coll_config *cfg, const qv_index_params *spec,
                          uint64_t n, qv_index_params *out, char *err, size_t errlen)
{
    *out = *spec;
    size_t auto_min = db->opts.auto_ivf_min;
    if (out->kind == QV_KIND_AUTO) {
        if (n < auto_min) {
            memset(out, 0, sizeof *out);
            out->kind = QV_KIND_FLAT;
            return 0;
        }
        /* measured on glove-100 (README "Indexes"): IVF-Flat is the fastest
         * at recall@10 0.95 up to 50k items, fast-scan PQ with refine from
         * 100k on (1.19x single, 1.11x batched at 100k; 1.20x and 1.37x at
         * 331k) */
        out->kind = n >= AUTO_PQ_FS_MIN ? QV_KIND_IVF_PQ_FS : QV_KIND_IVF_FLAT;
    }
    if (out->kind == QV_KIND_FLAT) {
        out->nlist = out->pq_m = out->pq_nbits = out->refine = 0;
        return 0;
    }
    if (out->nlist == 0) out->nlist = qv_auto_nlist(n);
    out->hnsw_coarse = out->nlist >= db->opts.hnsw_coarse_min;
    if (out->kind == QV_KIND_IVF_PQ_FS) {
        if (out->pq_nbits == 0) out->pq_nbits = 4;
        if (out->refine == 0) out->refine = QV_PQ_FS_DEFAULT_REFINE;
        /* 2 floats per 4-bit sub-code (glove-100: 50, as FAISS's PQ50x4fs) */
        if (out->pq_m == 0) out->pq_m = default_pq_m(cfg->dim, 256);
    }
    if (out->kind == QV_KIND_IVF_PQ) {
        if (out->pq_nbits == 0) out->pq_nbits = 8;
        if (out->pq_m == 0) out->pq_m = default_pq_m(cfg->dim, 64);
    }
    int rc = qv_index_params_check(cfg->dim, out, err, errlen);
    if (rc) return rc;
    if (n < out->nlist) {
        snprintf(err, errlen, "index.nlist %u is larger than the %llu items to train on",
                 out->nlist, (unsigned long long)n);
        return QV_INVALID;
    }
    if (out->kind == QV_KIND_IVF_PQ && n < (1ULL << out->pq_nbits)) {
        snprintf(err, errlen, "index.pq_nbits %u needs at least %llu items to train on, have %llu",
                 out->pq_nbits, 1ULL << out->pq_nbits, (unsigned long long)n);
        return QV_INVALID;
    }
    return 0;
}

typedef struct adder {
    qv_index *ix;
    calib *cal;
} adder;

static int add_chunk(void *ctx, size_t n, const int64_t *ids, const float *vecs)
{
    adder *a = ctx;
    int rc = qv_index_add(a->ix, n, ids, vecs);
    if (!rc && a->cal) rc = qv_calib_chunk(a->cal, n, ids, vecs);
    return rc;
}

static int build_into(qv_coll *c, rebuild *rb, MDB_txn *txn, uint64_t n, const qv_index_params *p,
                      qv_index *ix, const qv_ixfile_meta *tmeta, qv_index **out, qv_ixfile_meta *meta);

int qv_build_spec_mismatch(const qv_index_params *sp, const qv_index_params *fp, char *why, size_t len)
{
    if (sp->kind == QV_KIND_AUTO) return 0;
    if (fp->kind == sp->kind && (!sp->nlist || fp->nlist == sp->nlist) && (!sp->pq_m || fp->pq_m == sp->pq_m) &&
        (!sp->pq_nbits || sp->kind != QV_KIND_IVF_PQ || fp->pq_nbits == sp->pq_nbits) &&
        (sp->kind == QV_KIND_IVF_FLAT || sp->refine <= 1 || fp->refine == sp->refine))
        return 0;
    snprintf(why, len,
             "it holds %s nlist %u pq_m %u refine %u but the collection's spec is %s nlist %u "
             "pq_m %u refine %u", qv_index_kind_name(fp->kind), fp->nlist, fp->pq_m, fp->refine,
             qv_index_kind_name(sp->kind), sp->nlist, sp->pq_m, sp->refine);
    return 1;
}

/* Builds a new index with params p over the items of c as txn sees them
 * (n of them): for IVF kinds sample, train, add (gathering exact neighbours
 * of the calibration queries on the way), calibrate; for flat just add.
 * Memory beyond the index: one chunk and the training sample. */
int qv_build_index(qv_coll *c, rebuild *rb, MDB_txn *txn, uint64_t n,
                       const qv_index_params *p, qv_index **out, qv_ixfile_meta *meta)
{
    qv_index *ix = NULL;
    int rc = qv_index_new(c->cfg.dim, c->cfg.metric, p, &ix);
    if (rc) return rc;
    return build_into(c, rb, txn, n, p, ix, NULL, out, meta);
}

/* tmpl: a trained index (owned from now on) and its file's meta, from
 * another replica of the same items: emptied and refilled, its training and
 * calibration kept. */
int qv_build_from_template(qv_coll *c, rebuild *rb, MDB_txn *txn, uint64_t n, qv_index *tmpl,
                           const qv_ixfile_meta *tmeta, qv_index **out, qv_ixfile_meta *meta)
{
    int rc = qv_index_clear(tmpl);
    if (rc) {
        qv_index_free(tmpl);
        return rc;
    }
    return build_into(c, rb, txn, n, &tmeta->params, tmpl, tmeta, out, meta);
}

static int build_into(qv_coll *c, rebuild *rb, MDB_txn *txn, uint64_t n, const qv_index_params *p,
                      qv_index *ix, const qv_ixfile_meta *tmeta, qv_index **out, qv_ixfile_meta *meta)
{
    int rc = 0;
    memset(meta, 0, sizeof *meta);
    meta->coll_id = c->cfg.id;
    snprintf(meta->name, sizeof meta->name, "%s", c->cfg.name);
    meta->dim = c->cfg.dim;
    meta->metric = c->cfg.metric;
    meta->params = *qv_index_get_params(ix);
    meta->trained_for = n;
    meta->nprobe = 1;
    uint32_t dim = c->cfg.dim;
    int ivf = p->kind != QV_KIND_FLAT && !tmeta;
    if (tmeta) { /* trained and calibrated where it came from */
        meta->trained_for = tmeta->trained_for;
        meta->nprobe = tmeta->nprobe;
        meta->n_recall = tmeta->n_recall;
        memcpy(meta->recall, tmeta->recall, sizeof meta->recall);
    }
    sample smp = {.dim = dim, .rng = 12345};
    calib cal;
    memset(&cal, 0, sizeof cal);
    if (ivf) {
        smp.cap = (size_t)p->nlist * TRAIN_MAX_PER_LIST;
        if (p->kind == QV_KIND_IVF_PQ && smp.cap < ((size_t)TRAIN_MAX_PER_LIST << p->pq_nbits))
            smp.cap = (size_t)TRAIN_MAX_PER_LIST << p->pq_nbits;
        if (smp.cap < 10000) smp.cap = 10000;
        if (smp.cap > n) smp.cap = n ? n : 1;
        smp.ids = malloc(smp.cap * sizeof *smp.ids);
        smp.vecs = malloc(smp.cap * dim * sizeof *smp.vecs);
        if (!smp.ids || !smp.vecs) {
            rc = QV_NOMEM;
            goto out;
        }
        if ((rc = scan_items(c, txn, rb, "sampling", n, sample_chunk, &smp))) goto out;
        if (smp.n < p->nlist) {
            rc = QV_INVALID;
            goto out;
        }
        qv_build_set_phase(c, rb, "training", 0, smp.n);
        if (rb) {
            rb->train_total = smp.n;
            rb->last_tick = 0;
            qv_index_cancel_hook(training_tick, rb);
        }
        /* The calibration items are left out of training: the quantizer
         * never saw them, as it never sees the queries (trained on them, the
         * table promised 0.95 and glove-100's held-out words got 0.87) */
        size_t held = qv_calib_hold_out(&smp, CALIB_POOL);
        if (smp.n - held < p->nlist || smp.n - held < (size_t)TRAIN_MIN_PER_LIST * p->nlist / 2)
            held = 0; /* too few items to spare them: train on all */
        rc = qv_index_train(ix, smp.n - held, smp.vecs + held * dim);
        qv_index_cancel_hook(NULL, NULL);
        if (rc) goto out;
        qv_build_set_phase(c, rb, "training", smp.n, smp.n);
        if ((rc = qv_calib_init(&cal, c, &smp))) goto out;
        if ((rc = qv_index_reserve(ix, n, smp.n, smp.vecs))) goto out;
        free(smp.vecs);
        smp.vecs = NULL;
    }
    adder a = {ix, ivf ? &cal : NULL};
    if ((rc = scan_items(c, txn, rb, "adding", n, add_chunk, &a))) goto out;
    if ((rc = qv_index_compact(ix))) goto out;
    if (tmeta) qv_index_set_nprobe(ix, meta->nprobe ? meta->nprobe : 1);
    if (ivf) {
        if (rb && atomic_load(&rb->cancel)) {
            rc = QV_CANCELLED;
            goto out;
        }
        if ((rc = qv_calib_run(ix, &cal, qv_calib_parts(c->db, c->cfg.name), rb ? &rb->cancel : NULL, meta->recall,
                            &meta->n_recall, &meta->nprobe)))
            goto out;
        qv_index_set_nprobe(ix, meta->nprobe);
    }
out:
    qv_calib_free(&cal);
    free(smp.ids);
    free(smp.vecs);
    if (rc) qv_index_free(ix);
    else *out = ix;
    return rc;
}

/* Installs a freshly built index (caller holds the write lock). */
void qv_build_install(qv_coll *c, qv_index *ix, const qv_ixfile_meta *meta, uint64_t seq)
{
    qv_index_free(c->index);
    c->index = ix;
    c->index_gen++;
    c->index_seq = seq;
    c->trained_for = meta->trained_for;
    c->deleted_since = 0;
    atomic_store(&c->index_stale, 0); /* built from LMDB up to seq */
    c->nprobe = meta->nprobe ? meta->nprobe : 1;
    c->n_recall = meta->n_recall;
    memcpy(c->recall, meta->recall, sizeof c->recall);
}
