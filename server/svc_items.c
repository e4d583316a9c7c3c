/*
 * quiver.v1.Items: the writes Upsert, Import (client stream) and Delete, and
 * the reads Get and Scan (server stream). A write's batch is validated whole
 * before anything is written (all or nothing), handed to the engine's
 * group-commit writer and answered from its completion. Requests arrive
 * decoded (r->req, by rpc.c); this file does not parse the wire.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quiver/error.h"
#include "quiver/log.h"
#include "quiver/query.h"
#include "services.h"

#define MAX_ITEMS_PER_CALL 100000

/* One validated batch, ready for the writer (or, in a cluster, the log). */
typedef struct batch {
    qv_coll *coll;       /* single node: the collection (NULL in a cluster) */
    qv_coll_config cfg;  /* its config, in both modes */
    uint64_t *ids;
    float *vecs;
    size_t *off;
    qv_buf attrs;
    qv_write w;
    srv_write_result res; /* cluster: token and error message (srv_submit) */
} batch;

#define BATCH_OF(wp) ((batch *)(void *)((char *)(wp) - offsetof(batch, w)))

typedef struct items_state {
    rpc *r;
    batch b;
    uint64_t total;  /* Import: items so far */
    uint64_t nmsgs;  /* Import: messages so far */
} items_state;

static void batch_clear(batch *b)
{
    qv_coll_release(b->coll);
    free(b->ids);
    free(b->vecs);
    free(b->off);
    qv_buf_free(&b->attrs);
    memset(b, 0, sizeof *b);
}

static void state_free(void *p)
{
    items_state *s = p;
    if (!s) return;
    batch_clear(&s->b);
    free(s);
}

static items_state *state_new(rpc *r)
{
    items_state *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->r = r;
    r->state = s;
    r->state_free = state_free;
    return s;
}

/* Validates req and fills b; prefix names the message in errors ("" for
 * Upsert, "import request #3: " for Import). Returns 0 or -1 with code/err set. */
static int prepare_upsert(const Quiver__V1__UpsertRequest *req, const char *prefix, batch *b,
                          grpc_status_code *code, char *err, size_t errlen)
{
    char msg[512];
    *code = GRPC_STATUS_INVALID_ARGUMENT;
    if (srv_find_config(req->collection, &b->coll, &b->cfg, code, msg, sizeof msg)) goto fail;
    const qv_coll_config *cfg = &b->cfg;
    size_t n = req->n_items;
    if (!srv_ack_valid(req->ack)) {
        snprintf(msg, sizeof msg, "ack %d is not valid: use ACK_APPLIED (0) or ACK_LOGGED (1)",
                 (int)req->ack);
        goto fail;
    }
    if (n == 0) {
        snprintf(msg, sizeof msg, "items is empty: nothing to upsert");
        goto fail;
    }
    if (n > MAX_ITEMS_PER_CALL) {
        *code = GRPC_STATUS_RESOURCE_EXHAUSTED;
        snprintf(msg, sizeof msg, "items has %zu entries, over the limit of %d per call", n,
                 MAX_ITEMS_PER_CALL);
        goto fail;
    }
    b->ids = malloc(n * sizeof *b->ids);
    b->vecs = malloc(n * cfg->dim * sizeof *b->vecs);
    b->off = malloc((n + 1) * sizeof *b->off);
    if (!b->ids || !b->vecs || !b->off) {
        *code = GRPC_STATUS_RESOURCE_EXHAUSTED;
        snprintf(msg, sizeof msg, "out of memory for %zu items", n);
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        const Quiver__V1__Item *it = req->items[i];
        char field[64];
        if (it->id > (uint64_t)QV_MAX_ID) {
            snprintf(msg, sizeof msg, "items[%zu].id %" PRIu64 " is over the limit %" PRId64, i,
                     it->id, (int64_t)QV_MAX_ID);
            goto fail;
        }
        if (srv_check_vector(it->vector, it->n_vector, cfg->dim, cfg->name, "items", i, msg, sizeof msg))
            goto fail;
        b->ids[i] = it->id;
        float *v = b->vecs + i * cfg->dim;
        memcpy(v, it->vector, cfg->dim * sizeof *v);
        if (cfg->metric == QV_METRIC_COSINE) qv_vec_normalize(v, cfg->dim);
        b->off[i] = b->attrs.len;
        if (it->n_attributes) {
            snprintf(field, sizeof field, "items[%zu].attributes", i);
            if (srv_encode_attrs(it->attributes, it->n_attributes, &b->attrs, field, msg, sizeof msg))
                goto fail;
        }
    }
    b->off[n] = b->attrs.len;
    memset(&b->w, 0, sizeof b->w);
    b->w.kind = QV_W_UPSERT;
    b->w.coll = b->coll;
    b->w.n = n;
    b->w.ids = b->ids;
    b->w.vecs = b->vecs;
    b->w.attr_off = b->off;
    b->w.attrs = b->attrs.data;
    b->res.ack_logged = req->ack == QUIVER__V1__WRITE_ACK__ACK_LOGGED;
    return 0;
fail:
    snprintf(err, errlen, "%s%s", prefix, msg);
    batch_clear(b);
    return -1;
}

/* The status and message of a failed write. */
static grpc_status_code write_error(const qv_write *w, const char *what, char *msg, size_t len)
{
    const batch *b = BATCH_OF(w);
    const char *name = b->cfg.name;
    if (b->res.err[0] && w->rc != QV_NOTFOUND) { /* a cluster's: it says what failed */
        snprintf(msg, len, "%s to \"%s\" not written: %s", what, name, b->res.err);
        return b->res.code ? b->res.code : srv_status_of(w->rc);
    }
    if (w->rc == QV_NOTFOUND) {
        snprintf(msg, len, "collection \"%s\" does not exist", name);
        return GRPC_STATUS_NOT_FOUND;
    }
    if (w->rc == QV_OVERLOAD) {
        snprintf(msg, len, "%s to \"%s\" not written: the write queue stayed at its limit "
                 "(--max-queued-writes) until the call's deadline; retry later", what, name);
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    }
    if (w->rc == QV_FULL) {
        snprintf(msg, len, "%s to \"%s\" not written: storage full (free disk, or raise "
                 "--map-size)", what, name);
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    }
    snprintf(msg, len, "%s to \"%s\" not written: %s", what, name, qv_strerror(w->rc));
    return srv_status_of(w->rc);
}

static void fail_write(rpc *r, const qv_write *w, const char *what)
{
    char msg[600];
    grpc_status_code code = write_error(w, what, msg, sizeof msg);
    rpc_fail(r, code, "%s", msg);
}

size_t srv_items_held_bytes(size_t wire_bytes) { return 2 * wire_bytes; }

/* A replica takes writes from its log only: a peer's write is refused.
 * Returns 1 when the call may go on. */
static int write_allowed(rpc *r)
{
    int rt = srv_routed(r);
    if (rt < 0) return 0;
    if (g_cluster && rt == 0) {
        rpc_fail(r, GRPC_STATUS_PERMISSION_DENIED, "a replica takes writes from the cluster's log only");
        return 0;
    }
    return 1;
}

/* ----------------------------------------------------------------- Upsert */
static void upsert_done(qv_write *w)
{
    items_state *s = w->ctx;
    rpc *r = s->r;
    if (w->rc) {
        fail_write(r, w, "upsert");
    } else {
        Quiver__V1__UpsertResponse rep = QUIVER__V1__UPSERT_RESPONSE__INIT;
        rep.upserted = w->affected;
        srv_token_of(w, &BATCH_OF(w)->cfg, &BATCH_OF(w)->res, &rep.write_token);
        rpc_finish(r, &rep.base, GRPC_STATUS_OK, NULL);
    }
    rpc_unref(r); /* the write's reference */
}

void items_upsert(rpc *r)
{
    if (!write_allowed(r)) return;
    items_state *s = state_new(r);
    if (!s) {
        rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    const Quiver__V1__UpsertRequest *req = (const Quiver__V1__UpsertRequest *)r->req;
    grpc_status_code code;
    char err[600];
    if (prepare_upsert(req, "", &s->b, &code, err, sizeof err)) {
        rpc_fail(r, code, "%s", err);
        return;
    }
    s->b.w.done = upsert_done;
    s->b.w.ctx = s;
    s->b.w.bytes = r->held;
    s->b.w.deadline_ms = rpc_deadline_ms(r);
    rpc_unreserve(r); /* counted by the queue from here on */
    rpc_ref(r);
    srv_submit(&s->b.w, &s->b.cfg, &s->b.res);
}

/* ----------------------------------------------------------------- Import */
/* Up to IMPORT_WINDOW messages of a stream are decoded and queued at once, so
 * that the writer group-commits them; they are applied in order. The first
 * that fails ends the stream: the ones before it are committed, the ones
 * after it are skipped by the writer (w.chain) or never submitted. */
#define IMPORT_WINDOW 4

typedef struct import_slot {
    struct import_state *s;
    batch b;
    void *req;
    int busy;
    uint64_t msgno;
} import_slot;

typedef struct import_state {
    rpc *r;
    pthread_mutex_t mu;
    import_slot slot[IMPORT_WINDOW];
    int inflight;
    int recv_posted;  /* a RECV_MESSAGE batch is out: nothing else may start */
    int closing;      /* the client half-closed */
    int ended;        /* the status was sent */
    _Atomic uint64_t chain; /* the first failed message's number (UINT64_MAX:
                             * none): the writer skips the ones after it */
    int failed;
    grpc_status_code fail_code;
    char fail_msg[700];
    uint64_t total, nmsgs, committed_msgs;
    /* the write token of the stream's last committed message */
    uint64_t last_seq;
    uint8_t tok[SRV_TOKEN_MAX];
    size_t toklen;
    /* cluster: each message goes to the log without waiting for the
     * replicas; the stream's ACK_APPLIED (its first message's ack) waits
     * once, at the end, for the last entry of every shard it wrote */
    int wait_applied, ack_known;
    qv_coll_config cfg;
    srv_token_max parts;
} import_state;

static void import_state_free(void *p)
{
    import_state *s = p;
    if (!s) return;
    for (int i = 0; i < IMPORT_WINDOW; i++) {
        batch_clear(&s->slot[i].b);
        if (s->slot[i].req) protobuf_c_message_free_unpacked(s->slot[i].req, NULL);
    }
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static void import_fail(import_state *s, uint64_t msgno, grpc_status_code code, const char *msg)
{
    uint64_t cur = atomic_load(&s->chain);
    while (msgno < cur && !atomic_compare_exchange_weak(&s->chain, &cur, msgno)) {
    }
    if (s->failed) return;
    s->failed = 1;
    s->fail_code = code;
    snprintf(s->fail_msg, sizeof s->fail_msg, "%s", msg);
}

/* cluster: the stream's writes applied by every ACTIVE replica (or not) */
static void import_applied(void *ctx, grpc_status_code code, const char *msg)
{
    import_state *s = ctx;
    rpc *r = s->r;
    if (code != GRPC_STATUS_OK) {
        rpc_fail(r, code, "import to \"%s\": %" PRIu64 " items are in the log, but %s", s->cfg.name,
                 s->total, msg);
    } else {
        Quiver__V1__UpsertResponse rep = QUIVER__V1__UPSERT_RESPONSE__INIT;
        rep.upserted = s->total;
        rep.write_token.data = s->tok;
        rep.write_token.len = s->toklen;
        rpc_finish(r, &rep.base, GRPC_STATUS_OK, NULL);
    }
    rpc_unref(r);
}

/* With s->mu held: start what the state calls for (the status when the stream
 * is over, else the next RECV when a slot is free). Returns after starting a
 * batch on r or doing nothing; the caller unlocks and must not touch r. */
static void import_next(import_state *s)
{
    rpc *r = s->r;
    if (s->ended || s->recv_posted) return;
    if ((s->failed || s->closing) && s->inflight == 0) {
        s->ended = 1;
        if (!s->failed && s->wait_applied && s->parts.n) { /* cluster: visible before the reply */
            rpc_ref(r);
            srv_cluster_wait_parts(r, &s->cfg, &s->parts, import_applied, s);
            return;
        }
        if (s->failed) {
            rpc_fail(r, s->fail_code, "%s (%" PRIu64 " messages, %" PRIu64
                     " items committed before it)", s->fail_msg, s->committed_msgs, s->total);
        } else {
            Quiver__V1__UpsertResponse rep = QUIVER__V1__UPSERT_RESPONSE__INIT;
            rep.upserted = s->total;
            if (s->toklen) { /* the stream wrote something: its last write */
                rep.write_token.data = s->tok;
                rep.write_token.len = s->toklen;
            }
            rpc_finish(r, &rep.base, GRPC_STATUS_OK, NULL);
        }
        return;
    }
    /* after a failure, messages still coming are read and dropped until the
     * client half-closes (a client stream cannot be cut short from here) */
    if (!s->closing && s->inflight < (g_cluster ? 1 : IMPORT_WINDOW)) {
        s->recv_posted = 1;
        rpc_recv(r);
    }
}

static void import_done(qv_write *w)
{
    import_slot *sl = w->ctx;
    import_state *s = sl->s;
    rpc *r = s->r;
    pthread_mutex_lock(&s->mu);
    if (w->rc && w->rc != QV_CANCELLED) {
        char what[64], msg[600];
        snprintf(what, sizeof what, "import request #%" PRIu64, sl->msgno);
        grpc_status_code code = write_error(w, what, msg, sizeof msg);
        import_fail(s, sl->msgno, code, msg);
    } else if (!w->rc) {
        s->total += w->affected;
        s->committed_msgs++;
        if (g_cluster) { /* the stream's token: the last entry of every shard it wrote */
            srv_token_merge(&s->parts, &sl->b.cfg, &sl->b.res);
            s->cfg = sl->b.cfg;
            s->toklen = srv_token_encode(&s->parts, &s->cfg, s->tok);
        } else if (w->seq >= s->last_seq) {
            ProtobufCBinaryData t;
            srv_token_of(w, &sl->b.cfg, &sl->b.res, &t);
            memcpy(s->tok, t.data, t.len);
            s->toklen = t.len;
            s->last_seq = w->seq;
        }
    }
    batch_clear(&sl->b);
    if (sl->req) protobuf_c_message_free_unpacked(sl->req, NULL);
    sl->req = NULL;
    sl->busy = 0;
    s->inflight--;
    import_next(s);
    pthread_mutex_unlock(&s->mu);
    rpc_unref(r);
}

void items_import_start(rpc *r)
{
    if (!write_allowed(r)) return;
    import_state *s = calloc(1, sizeof *s);
    if (!s) {
        rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    s->r = r;
    pthread_mutex_init(&s->mu, NULL);
    atomic_init(&s->chain, UINT64_MAX);
    for (int i = 0; i < IMPORT_WINDOW; i++) s->slot[i].s = s;
    r->state = s;
    r->state_free = import_state_free;
    s->recv_posted = 1;
    rpc_start_stream(r);
}

void items_import_step(rpc *r, int ok)
{
    import_state *s = r->state;
    pthread_mutex_lock(&s->mu);
    s->recv_posted = 0;
    if (s->ended) {
        pthread_mutex_unlock(&s->mu);
        return;
    }
    if (!ok) { /* cancelled: the writes in flight finish; nothing more is sent */
        s->ended = 1;
        atomic_store(&s->chain, 0);
        pthread_mutex_unlock(&s->mu);
        return;
    }
    if (!r->recv_bb) { /* the client half-closed */
        s->closing = 1;
        import_next(s);
        pthread_mutex_unlock(&s->mu);
        return;
    }
    uint64_t msgno = ++s->nmsgs;
    if (s->failed) { /* read and dropped */
        grpc_byte_buffer_destroy(r->recv_bb);
        r->recv_bb = NULL;
        import_next(s);
        pthread_mutex_unlock(&s->mu);
        return;
    }
    size_t held;
    Quiver__V1__UpsertRequest *req = (Quiver__V1__UpsertRequest *)rpc_recv_unpack(r, &held);
    char err[600], prefix[64];
    if (!req) {
        snprintf(err, sizeof err, "import request #%" PRIu64 ": cannot decode UpsertRequest: %s",
                 msgno, rpc_unpack_error());
        import_fail(s, msgno, GRPC_STATUS_INVALID_ARGUMENT, err);
        import_next(s);
        pthread_mutex_unlock(&s->mu);
        return;
    }
    import_slot *sl = NULL;
    for (int i = 0; i < IMPORT_WINDOW && !sl; i++)
        if (!s->slot[i].busy) sl = &s->slot[i];
    /* a slot is free: a RECV is posted only then */
    sl->busy = 1;
    sl->req = req;
    sl->msgno = msgno;
    grpc_status_code code;
    snprintf(prefix, sizeof prefix, "import request #%" PRIu64 ": ", msgno);
    if (prepare_upsert(req, prefix, &sl->b, &code, err, sizeof err)) {
        protobuf_c_message_free_unpacked(&req->base, NULL);
        sl->req = NULL;
        sl->busy = 0;
        import_fail(s, msgno, code, err);
        import_next(s);
        pthread_mutex_unlock(&s->mu);
        return;
    }
    sl->b.w.done = import_done;
    sl->b.w.ctx = sl;
    sl->b.w.chain = &s->chain;
    sl->b.w.chain_pos = msgno;
    sl->b.w.bytes = held;
    sl->b.w.deadline_ms = rpc_deadline_ms(r);
    if (g_cluster) { /* to the log only; the stream waits for the replicas at its end */
        if (!s->ack_known) {
            s->ack_known = 1;
            s->wait_applied = !sl->b.res.ack_logged;
        }
        sl->b.res.ack_logged = 1;
    }
    s->inflight++;
    rpc_ref(r); /* the write's, dropped by import_done */
    rpc_ref(r); /* ours: s stays valid until we are done with it */
    /* submitted before the next RECV is posted, so that messages reach the
     * writer in order; done() may run meanwhile (it takes mu) */
    pthread_mutex_unlock(&s->mu);
    srv_submit(&sl->b.w, &sl->b.cfg, &sl->b.res);
    pthread_mutex_lock(&s->mu);
    import_next(s);
    pthread_mutex_unlock(&s->mu);
    rpc_unref(r);
}

/* -------------------------------------------------------------------- Get */
/* Drop repeated ids in place, keeping each id's first position; returns how
 * many are left. O(n log n) whatever the request holds. */
static int cmp_pos(const void *a, const void *b, void *ids)
{
    const uint64_t *v = ids;
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    if (v[x] != v[y]) return v[x] < v[y] ? -1 : 1;
    return (x > y) - (x < y);
}

static size_t dedupe_ids(uint64_t *ids, size_t n)
{
    if (n < 2) return n;
    size_t *ord = malloc(n * sizeof *ord);
    char *dup = calloc(n, 1);
    if (!ord || !dup) {
        free(ord);
        free(dup);
        return n; /* answered as asked: the reply budget still bounds it */
    }
    for (size_t i = 0; i < n; i++) ord[i] = i;
    qsort_r(ord, n, sizeof *ord, cmp_pos, ids);
    for (size_t i = 1; i < n; i++)
        if (ids[ord[i]] == ids[ord[i - 1]]) dup[ord[i]] = 1;
    size_t o = 0;
    for (size_t i = 0; i < n; i++)
        if (!dup[i]) ids[o++] = ids[i];
    free(ord);
    free(dup);
    return o;
}

/* The Get reply would outgrow --max-reply at ids[i]. */
static void fail_reply_budget(rpc *r, size_t bytes, size_t i, const Quiver__V1__GetItemsRequest *req)
{
    rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED,
             "the reply would take over %zu bytes by ids[%zu] (%" PRIu64 "), over the reply "
             "limit of %zu (--max-reply): ask for fewer ids per call%s",
             bytes, i, req->ids[i], g_max_reply, req->with_vectors ? " or without vectors" : "");
}

void items_get(rpc *r)
{
    const Quiver__V1__GetItemsRequest *req = (const Quiver__V1__GetItemsRequest *)r->req;
    grpc_status_code code;
    char err[512];
    qv_arena *a = NULL;
    qv_items got = {0};
    int rt = srv_routed(r);
    if (rt < 0) return;
    if (rt) {
        qv_coll *none;
        qv_coll_config cfg;
        if (srv_find_config(req->collection, &none, &cfg, &code, err, sizeof err))
            rpc_fail(r, code, "%s", err);
        else if (req->n_ids == 0)
            rpc_fail(r, GRPC_STATUS_INVALID_ARGUMENT, "ids is empty: nothing to get");
        else if (req->n_ids > MAX_ITEMS_PER_CALL)
            rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "ids has %zu entries, over the limit of %d per call",
                     req->n_ids, MAX_ITEMS_PER_CALL);
        else
            srv_cluster_get(r);
        return;
    }
    qv_coll *c = srv_find_coll(req->collection, &code, err, sizeof err);
    if (!c) {
        rpc_fail(r, code, "%s", err);
        goto out;
    }
    if (req->n_ids == 0) {
        rpc_fail(r, GRPC_STATUS_INVALID_ARGUMENT, "ids is empty: nothing to get");
        goto out;
    }
    if ((code = srv_check_after_token(c, &req->after_token, "after_token", err, sizeof err))) {
        rpc_fail(r, code, "%s", err);
        goto out;
    }
    if (req->n_ids > MAX_ITEMS_PER_CALL) {
        rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "ids has %zu entries, over the limit of %d per call",
                 req->n_ids, MAX_ITEMS_PER_CALL);
        goto out;
    }
    const qv_coll_config *cfg = qv_coll_config_of(c);
    /* an id asked for more than once is answered once (first position) */
    size_t nids = dedupe_ids(req->ids, req->n_ids);
    uint64_t bad = 0;
    int rc = qv_items_get(c, req->ids, nids, &got, &bad);
    if (rc == QV_CORRUPT || rc == QV_VERSION || rc == QV_LMDB) {
        rpc_fail(r, GRPC_STATUS_INTERNAL, "item %" PRIu64 " of \"%s\" cannot be read: %s", bad,
                 cfg->name, qv_strerror(rc));
        goto out;
    }
    if (rc) {
        rpc_fail(r, srv_status_of(rc), "get from \"%s\": %s", cfg->name, qv_strerror(rc));
        goto out;
    }
    a = qv_arena_new();
    Quiver__V1__GetItemsResponse rep = QUIVER__V1__GET_ITEMS_RESPONSE__INIT;
    size_t reply_bytes = 0; /* grows with each item found: checked before it is built */
    rep.items = a ? qv_arena_alloc(a, req->n_ids * sizeof *rep.items) : NULL;
    rep.missing_ids = a ? qv_arena_alloc(a, req->n_ids * sizeof *rep.missing_ids) : NULL;
    Quiver__V1__Item *items = a ? qv_arena_alloc(a, req->n_ids * sizeof *items) : NULL;
    if (!rep.items || !rep.missing_ids || !items) {
        rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory for %zu items", req->n_ids);
        goto out;
    }
    for (size_t i = 0; i < nids; i++) {
        const qv_item_ref *g = &got.items[i];
        if (!g->found) {
            rep.missing_ids[rep.n_missing_ids++] = g->id;
            continue;
        }
        /* the reply's size so far, from the vector's and the stored
         * attributes' sizes (bounded by --max-attr-bytes), checked before
         * the item is decoded into the reply; exact once decoded, below */
        if (reply_bytes + 24 + (req->with_vectors ? (size_t)g->v.dim * 4 + 8 : 0) + g->attrs_len >
            g_max_reply) {
            fail_reply_budget(r, reply_bytes + g->attrs_len, i, req);
            goto out;
        }
        Quiver__V1__Item *it = &items[rep.n_items];
        quiver__v1__item__init(it);
        it->id = g->id;
        if (req->with_vectors) {
            it->vector = qv_arena_alloc(a, g->v.dim * sizeof(float));
            if (!it->vector) {
                rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                goto out;
            }
            qv_item_vector(&g->v, it->vector);
            it->n_vector = g->v.dim;
        }
        if (g->attrs)
            it->attributes = (Quiver__V1__Item__AttributesEntry **)srv_decode_attrs(
                a, &quiver__v1__item__attributes_entry__descriptor, g->attrs, g->attrs_len,
                &it->n_attributes);
        rep.items[rep.n_items++] = it;
        reply_bytes += protobuf_c_message_get_packed_size(&it->base) + 6;
        if (reply_bytes > g_max_reply) {
            fail_reply_budget(r, reply_bytes, i, req);
            goto out;
        }
    }
    rpc_finish(r, &rep.base, GRPC_STATUS_OK, NULL);
out:
    qv_items_free(&got);
    qv_arena_free(a);
    qv_coll_release(c);
}

/* ----------------------------------------------------------------- Delete */
static void delete_done(qv_write *w)
{
    items_state *s = w->ctx;
    rpc *r = s->r;
    if (w->rc) {
        fail_write(r, w, "delete");
    } else {
        Quiver__V1__DeleteItemsResponse rep = QUIVER__V1__DELETE_ITEMS_RESPONSE__INIT;
        rep.deleted = w->affected;
        srv_token_of(w, &BATCH_OF(w)->cfg, &BATCH_OF(w)->res, &rep.write_token);
        rpc_finish(r, &rep.base, GRPC_STATUS_OK, NULL);
    }
    rpc_unref(r);
}

void items_delete(rpc *r)
{
    if (!write_allowed(r)) return;
    items_state *s = state_new(r);
    if (!s) {
        rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    const Quiver__V1__DeleteItemsRequest *req = (const Quiver__V1__DeleteItemsRequest *)r->req;
    grpc_status_code code;
    char err[512];
    if (srv_find_config(req->collection, &s->b.coll, &s->b.cfg, &code, err, sizeof err)) {
        rpc_fail(r, code, "%s", err);
        return;
    }
    if (req->n_ids == 0) {
        rpc_fail(r, GRPC_STATUS_INVALID_ARGUMENT, "ids is empty: nothing to delete");
        return;
    }
    if (req->n_ids > MAX_ITEMS_PER_CALL) {
        rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "ids has %zu entries, over the limit of %d per call",
                 req->n_ids, MAX_ITEMS_PER_CALL);
        return;
    }
    for (size_t i = 0; i < req->n_ids; i++)
        if (req->ids[i] > (uint64_t)QV_MAX_ID) {
            rpc_fail(r, GRPC_STATUS_INVALID_ARGUMENT, "ids[%zu] %" PRIu64 " is over the limit %" PRId64,
                     i, req->ids[i], (int64_t)QV_MAX_ID);
            return;
        }
    if (!srv_ack_valid(req->ack)) {
        rpc_fail(r, GRPC_STATUS_INVALID_ARGUMENT,
                 "ack %d is not valid: use ACK_APPLIED (0) or ACK_LOGGED (1)", (int)req->ack);
        return;
    }
    qv_write *w = &s->b.w;
    w->kind = QV_W_DELETE;
    w->coll = s->b.coll;
    w->n = req->n_ids;
    w->ids = req->ids;
    w->done = delete_done;
    w->ctx = s;
    w->deadline_ms = rpc_deadline_ms(r);
    s->b.res.ack_logged = req->ack == QUIVER__V1__WRITE_ACK__ACK_LOGGED;
    rpc_ref(r);
    srv_submit(w, &s->b.cfg, &s->b.res);
}

/* ------------------------------------------------------------------- Scan */
#define SCAN_MSG_BYTES ((size_t)4 << 20) /* a ScanResponse holds about this much at most */
#define SCAN_MSG_ITEMS 10000

typedef struct scan_state {
    qv_coll *c;
    qv_scan *scan;      /* the one snapshot every message reads */
    uint64_t next;      /* first id of the next message */
    uint64_t left;      /* items still to send (UINT64_MAX: all) */
    int with_vectors, with_attrs;
    int over;           /* past the last item: the next message ends the stream */
} scan_state;

static void scan_free(void *p)
{
    scan_state *s = p;
    if (!s) return;
    qv_scan_close(s->scan);
    qv_coll_release(s->c);
    free(s);
}

typedef struct scan_fill {
    scan_state *s;
    qv_arena *a;
    Quiver__V1__ScanResponse *rep;
    Quiver__V1__Item **items;
    size_t bytes;
    int rc;
} scan_fill;

static int scan_one(void *ctx, const qv_item_ref *ref)
{
    scan_fill *f = ctx;
    scan_state *s = f->s;
    uint64_t id = ref->id;
    const qv_item_view *v = &ref->v;
    if (f->rep->n_items == SCAN_MSG_ITEMS || f->bytes >= SCAN_MSG_BYTES || s->left == 0) {
        s->next = id;
        return 1; /* full: this id starts the next message */
    }
    Quiver__V1__Item *it = qv_arena_alloc(f->a, sizeof *it);
    if (!it) return f->rc = QV_NOMEM;
    quiver__v1__item__init(it);
    it->id = id;
    if (s->with_vectors) {
        if (!(it->vector = qv_arena_alloc(f->a, v->dim * sizeof(float)))) return f->rc = QV_NOMEM;
        qv_item_vector(v, it->vector);
        it->n_vector = v->dim;
    }
    if (ref->attrs)
        it->attributes = (Quiver__V1__Item__AttributesEntry **)srv_decode_attrs(
            f->a, &quiver__v1__item__attributes_entry__descriptor, ref->attrs, ref->attrs_len,
            &it->n_attributes);
    f->items[f->rep->n_items++] = it;
    f->bytes += protobuf_c_message_get_packed_size(&it->base) + 6;
    if (s->left != UINT64_MAX) s->left--;
    return 0;
}

/* Send the next message (the last one with the status). */
static void scan_send(rpc *r)
{
    scan_state *s = r->state;
    qv_arena *a = qv_arena_new();
    Quiver__V1__ScanResponse rep = QUIVER__V1__SCAN_RESPONSE__INIT;
    scan_fill f = {s, a, &rep, NULL, 0, 0};
    if (!a || !(f.items = qv_arena_alloc(a, SCAN_MSG_ITEMS * sizeof *f.items))) {
        qv_arena_free(a);
        rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    rep.items = f.items;
    uint64_t from = s->next;
    s->next = UINT64_MAX;
    int rc = s->over ? 0 : qv_scan_step(s->scan, from, s->with_attrs, scan_one, &f);
    if (rc == 1) rc = 0;
    if (f.rc) rc = f.rc;
    if (rc) {
        qv_arena_free(a);
        rpc_fail(r, srv_status_of(rc), "scan of \"%s\" failed at id %" PRIu64 ": %s",
                 qv_coll_config_of(s->c)->name, from, qv_strerror(rc));
        return;
    }
    /* no id started a next message: the collection (or the limit) is done */
    int last = s->next == UINT64_MAX || s->left == 0;
    if (last) s->over = 1;
    rpc_send(r, &rep.base, last);
    qv_arena_free(a);
}

void items_scan(rpc *r)
{
    const Quiver__V1__ScanRequest *req = (const Quiver__V1__ScanRequest *)r->req;
    grpc_status_code code;
    char err[512];
    int rc, rt = srv_routed(r);
    if (rt < 0) return;
    if (rt) {
        qv_coll *none;
        qv_coll_config cfg;
        if (srv_find_config(req->collection, &none, &cfg, &code, err, sizeof err)) rpc_fail(r, code, "%s", err);
        else srv_cluster_scan(r, &cfg);
        return;
    }
    scan_state *s = calloc(1, sizeof *s);
    if (!s) {
        rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    r->state = s;
    r->state_free = scan_free;
    if (!(s->c = srv_find_coll(req->collection, &code, err, sizeof err))) {
        rpc_fail(r, code, "%s", err);
        return;
    }
    if ((rc = qv_scan_open(s->c, &s->scan))) {
        rpc_fail(r, srv_status_of(rc), "cannot scan \"%s\": %s", qv_coll_config_of(s->c)->name,
                 qv_strerror(rc));
        return;
    }
    s->with_vectors = req->with_vectors;
    s->with_attrs = !req->without_attributes;
    s->left = req->limit ? req->limit : UINT64_MAX;
    if (req->after_id >= (uint64_t)QV_MAX_ID) s->over = 1; /* nothing after the largest id */
    s->next = req->after_id ? req->after_id + 1 : 0;
    scan_send(r);
}

void items_scan_step(rpc *r, int ok)
{
    if (srv_cluster_scan_step(r, ok)) return;
    scan_state *s = r->state;
    if (!ok || s->over) return; /* client gone, or the status went with the last message */
    scan_send(r);
}
