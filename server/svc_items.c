/*
 * quiver.v1.Items: Upsert, Import (client stream), Get, Delete. Validates a
 * whole batch before anything is written (all or nothing), hands writes to
 * the engine's group-commit writer and replies from its completion.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quiver/error.h"
#include "quiver/log.h"
#include "services.h"

#define MAX_ITEMS_PER_CALL 100000

/* One validated batch, ready for the writer. */
typedef struct batch {
    qv_coll *coll;
    uint64_t *ids;
    float *vecs;
    size_t *off;
    qv_buf attrs;
    qv_write w;
} batch;

typedef struct items_state {
    rpc *r;
    void *req; /* the decoded request (unpacked protobuf) */
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
    if (s->req) protobuf_c_message_free_unpacked(s->req, NULL);
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

/* Looks up a collection, answering NOT_FOUND (or the name error) itself. */
/* Validates req and fills b; prefix names the message in errors ("" for
 * Upsert, "request #3: " for Import). Returns 0 or -1 with code/err set. */
static int prepare_upsert(const Quiver__V1__UpsertRequest *req, const char *prefix, batch *b,
                          grpc_status_code *code, char *err, size_t errlen)
{
    char msg[512];
    *code = GRPC_STATUS_INVALID_ARGUMENT;
    if (!(b->coll = find_coll(req->collection, code, msg, sizeof msg))) goto fail;
    const qv_coll_config *cfg = qv_coll_config_of(b->coll);
    size_t n = req->n_items;
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
        snprintf(field, sizeof field, "items[%zu].vector", i);
        if (check_vector(it->vector, it->n_vector, cfg->dim, cfg->name, field, msg, sizeof msg))
            goto fail;
        b->ids[i] = it->id;
        float *v = b->vecs + i * cfg->dim;
        memcpy(v, it->vector, cfg->dim * sizeof *v);
        if (cfg->metric == QV_METRIC_COSINE) qv_vec_normalize(v, cfg->dim);
        b->off[i] = b->attrs.len;
        if (it->n_attributes) {
            snprintf(field, sizeof field, "items[%zu].attributes", i);
            if (encode_attrs(it->attributes, it->n_attributes, &b->attrs, field, msg, sizeof msg))
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
    return 0;
fail:
    snprintf(err, errlen, "%s%s", prefix, msg);
    batch_clear(b);
    return -1;
}

static void fail_write(rpc *r, const qv_write *w, const char *what)
{
    const char *name = w->coll ? qv_coll_config_of(w->coll)->name : "?";
    if (w->rc == QV_NOTFOUND)
        rpc_fail(r, GRPC_STATUS_NOT_FOUND, "collection \"%s\" does not exist", name);
    else if (w->rc == QV_OVERLOAD)
        rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED,
                 "%s to \"%s\" not written: the write queue stayed at its limit "
                 "(--max-queued-writes) until the call's deadline; retry later", what, name);
    else if (w->rc == QV_FULL)
        rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED,
                 "%s to \"%s\" not written: storage full (raise --map-size or free disk)", what, name);
    else
        rpc_fail(r, status_of(w->rc), "%s to \"%s\" not written: %s", what, name, qv_strerror(w->rc));
}

size_t items_held_bytes(size_t wire_bytes) { return 2 * wire_bytes; }

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
        rpc_finish(r, &rep.base, GRPC_STATUS_OK, NULL);
    }
    rpc_unref(r); /* the write's reference */
}

void items_upsert(rpc *r)
{
    items_state *s = state_new(r);
    if (!s) {
        rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    Quiver__V1__UpsertRequest *req =
        (Quiver__V1__UpsertRequest *)rpc_unpack(r->payload, &quiver__v1__upsert_request__descriptor);
    size_t wire_bytes = r->payload ? grpc_byte_buffer_length(r->payload) : 0;
    /* decoded: the wire copy is not needed any more */
    if (r->payload) grpc_byte_buffer_destroy(r->payload);
    r->payload = NULL;
    if (!req) {
        rpc_fail(r, GRPC_STATUS_INVALID_ARGUMENT, "cannot decode UpsertRequest: %s", rpc_unpack_error());
        return;
    }
    s->req = req;
    grpc_status_code code;
    char err[600];
    if (prepare_upsert(req, "", &s->b, &code, err, sizeof err)) {
        rpc_fail(r, code, "%s", err);
        return;
    }
    s->b.w.done = upsert_done;
    s->b.w.ctx = s;
    s->b.w.bytes = items_held_bytes(wire_bytes);
    s->b.w.deadline_ms = rpc_deadline_ms(r);
    rpc_unreserve(r); /* counted by the queue from here on */
    rpc_ref(r);
    qv_db_submit(g_db, &s->b.w);
}

/* ----------------------------------------------------------------- Import */
static void import_done(qv_write *w)
{
    items_state *s = w->ctx;
    rpc *r = s->r;
    if (w->rc) {
        char what[64];
        snprintf(what, sizeof what, "import request #%" PRIu64, s->nmsgs);
        fail_write(r, w, what);
    } else {
        s->total += w->affected;
        batch_clear(&s->b);
        rpc_recv(r); /* the next message */
    }
    rpc_unref(r);
}

void items_import_start(rpc *r)
{
    if (!state_new(r)) {
        rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    rpc_start_stream(r);
}

void items_import_step(rpc *r, int ok)
{
    items_state *s = r->state;
    if (!ok) return; /* cancelled: nothing more to do */
    if (!r->recv_bb) { /* client half-closed: done */
        Quiver__V1__UpsertResponse rep = QUIVER__V1__UPSERT_RESPONSE__INIT;
        rep.upserted = s->total;
        rpc_finish(r, &rep.base, GRPC_STATUS_OK, NULL);
        return;
    }
    Quiver__V1__UpsertRequest *req =
        (Quiver__V1__UpsertRequest *)rpc_unpack(r->recv_bb, &quiver__v1__upsert_request__descriptor);
    size_t wire_bytes = grpc_byte_buffer_length(r->recv_bb);
    grpc_byte_buffer_destroy(r->recv_bb);
    r->recv_bb = NULL;
    s->nmsgs++;
    if (!req) {
        rpc_fail(r, GRPC_STATUS_INVALID_ARGUMENT, "import request #%" PRIu64 ": cannot decode UpsertRequest: %s",
                 s->nmsgs, rpc_unpack_error());
        return;
    }
    if (s->req) protobuf_c_message_free_unpacked(s->req, NULL);
    s->req = req;
    grpc_status_code code;
    char err[600], prefix[64];
    snprintf(prefix, sizeof prefix, "import request #%" PRIu64 ": ", s->nmsgs);
    if (prepare_upsert(req, prefix, &s->b, &code, err, sizeof err)) {
        rpc_fail(r, code, "%s", err);
        return;
    }
    s->b.w.done = import_done;
    s->b.w.ctx = s;
    s->b.w.bytes = items_held_bytes(wire_bytes);
    s->b.w.deadline_ms = rpc_deadline_ms(r);
    rpc_ref(r);
    qv_db_submit(g_db, &s->b.w);
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
    Quiver__V1__GetItemsRequest *req =
        (Quiver__V1__GetItemsRequest *)rpc_unpack(r->payload, &quiver__v1__get_items_request__descriptor);
    if (!req) {
        rpc_fail(r, GRPC_STATUS_INVALID_ARGUMENT, "cannot decode GetItemsRequest: %s", rpc_unpack_error());
        return;
    }
    grpc_status_code code;
    char err[512];
    arena *a = NULL;
    MDB_txn *txn = NULL;
    qv_coll *c = find_coll(req->collection, &code, err, sizeof err);
    if (!c) {
        rpc_fail(r, code, "%s", err);
        goto out;
    }
    if (req->n_ids == 0) {
        rpc_fail(r, GRPC_STATUS_INVALID_ARGUMENT, "ids is empty: nothing to get");
        goto out;
    }
    if (req->n_ids > MAX_ITEMS_PER_CALL) {
        rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "ids has %zu entries, over the limit of %d per call",
                 req->n_ids, MAX_ITEMS_PER_CALL);
        goto out;
    }
    const qv_coll_config *cfg = qv_coll_config_of(c);
    qv_store *st = qv_db_store(g_db);
    int rc;
    a = arena_new();
    if (!a || (rc = qv_store_read_begin(st, &txn))) {
        rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "cannot start a read");
        goto out;
    }
    /* an id asked for more than once is answered once (first position) */
    size_t nids = dedupe_ids(req->ids, req->n_ids);
    Quiver__V1__GetItemsResponse rep = QUIVER__V1__GET_ITEMS_RESPONSE__INIT;
    size_t reply_bytes = 0; /* grows with each item found: checked before it is built */
    rep.items = arena_alloc(a, req->n_ids * sizeof *rep.items);
    rep.missing_ids = arena_alloc(a, req->n_ids * sizeof *rep.missing_ids);
    Quiver__V1__Item *items = arena_alloc(a, req->n_ids * sizeof *items);
    if (!rep.items || !rep.missing_ids || !items) {
        rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory for %zu items", req->n_ids);
        goto out;
    }
    for (size_t i = 0; i < nids; i++) {
        qv_item_view v;
        rc = req->ids[i] > (uint64_t)QV_MAX_ID ? QV_NOTFOUND
                                               : qv_store_item_get(st, txn, cfg->id, req->ids[i], &v);
        if (rc == QV_NOTFOUND) {
            rep.missing_ids[rep.n_missing_ids++] = req->ids[i];
            continue;
        }
        if (rc) {
            rpc_fail(r, GRPC_STATUS_INTERNAL, "item %" PRIu64 " of \"%s\" cannot be read: %s",
                     req->ids[i], cfg->name, qv_strerror(rc));
            goto out;
        }
        const uint8_t *blob = NULL;
        size_t blen = 0;
        int has_attrs = qv_store_attrs_get(st, txn, cfg->id, req->ids[i], &blob, &blen) == 0;
        /* the reply's size so far, from the vector's and the stored
         * attributes' sizes (bounded by --max-attr-bytes), checked before
         * the item is decoded into the reply; exact once decoded, below */
        if (reply_bytes + 24 + (req->with_vectors ? (size_t)v.dim * 4 + 8 : 0) + blen > g_max_reply) {
            fail_reply_budget(r, reply_bytes + blen, i, req);
            goto out;
        }
        Quiver__V1__Item *it = &items[rep.n_items];
        quiver__v1__item__init(it);
        it->id = req->ids[i];
        if (req->with_vectors) {
            it->vector = arena_alloc(a, v.dim * sizeof(float));
            if (!it->vector) {
                rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                goto out;
            }
            qv_item_vector(&v, it->vector);
            it->n_vector = v.dim;
        }
        if (has_attrs)
            it->attributes = (Quiver__V1__Item__AttributesEntry **)decode_attrs(
                a, &quiver__v1__item__attributes_entry__descriptor, blob, blen, &it->n_attributes);
        rep.items[rep.n_items++] = it;
        reply_bytes += protobuf_c_message_get_packed_size(&it->base) + 6;
        if (reply_bytes > g_max_reply) {
            fail_reply_budget(r, reply_bytes, i, req);
            goto out;
        }
    }
    rpc_finish(r, &rep.base, GRPC_STATUS_OK, NULL);
out:
    qv_store_abort(txn);
    arena_free(a);
    qv_coll_release(c);
    protobuf_c_message_free_unpacked(&req->base, NULL);
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
        rpc_finish(r, &rep.base, GRPC_STATUS_OK, NULL);
    }
    rpc_unref(r);
}

void items_delete(rpc *r)
{
    items_state *s = state_new(r);
    if (!s) {
        rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    Quiver__V1__DeleteItemsRequest *req = (Quiver__V1__DeleteItemsRequest *)rpc_unpack(
        r->payload, &quiver__v1__delete_items_request__descriptor);
    if (!req) {
        rpc_fail(r, GRPC_STATUS_INVALID_ARGUMENT, "cannot decode DeleteItemsRequest: %s", rpc_unpack_error());
        return;
    }
    s->req = req;
    grpc_status_code code;
    char err[512];
    if (!(s->b.coll = find_coll(req->collection, &code, err, sizeof err))) {
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
    qv_write *w = &s->b.w;
    w->kind = QV_W_DELETE;
    w->coll = s->b.coll;
    w->n = req->n_ids;
    w->ids = req->ids;
    w->done = delete_done;
    w->ctx = s;
    rpc_ref(r);
    qv_db_submit(g_db, w);
}
