/*
 * quiver.v1.Collections: Create, Describe, List, Drop. Validation and
 * translation only; the engine (qv_db) does the work through its writer.
 * The `name` field is checked here (syntax, then the key's scope), not by
 * srv_find_coll: Create names a collection that does not exist yet.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quiver/error.h"
#include "services.h"

static int check_name(rpc *r, const char *name, const char *field)
{
    char err[400];
    if (qv_name_check(name ? name : "") == 0) {
        /* a key scoped to some collections creates and drops only those */
        if (auth_may_use(name, err, sizeof err)) return 0;
        rpc_fail(r, GRPC_STATUS_PERMISSION_DENIED, "%s", err);
        return -1;
    }
    if (!name || !name[0])
        rpc_fail(r, GRPC_STATUS_INVALID_ARGUMENT, "%s is empty", field);
    else
        rpc_fail(r, GRPC_STATUS_INVALID_ARGUMENT,
                 "%s \"%.200s\" is invalid: use 1..%d of A-Z a-z 0-9 _ - . (not starting with '.')",
                 field, name, QV_MAX_NAME);
    return -1;
}

static void reply_info(rpc *r, qv_coll *c)
{
    qv_arena *a = qv_arena_new();
    Quiver__V1__CollectionInfo ci;
    Quiver__V1__IndexInfo ii;
    if (!a) {
        rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    srv_fill_collection_info(a, c, &ci, &ii);
    rpc_finish(r, &ci.base, GRPC_STATUS_OK, NULL); /* packed inside */
    qv_arena_free(a);
}

/* Create and Drop reply from the writer thread when their write is done: no
 * worker thread waits for the writer (like Upsert). */
typedef struct coll_write {
    qv_write w;
    rpc *r;
} coll_write;

static void create_done(qv_write *w)
{
    coll_write *cw = w->ctx;
    rpc *r = cw->r;
    const char *name = w->config.name;
    if (w->rc == QV_EXISTS) {
        rpc_fail(r, GRPC_STATUS_ALREADY_EXISTS, "collection \"%s\" already exists", name);
    } else if (w->rc) {
        rpc_fail(r, srv_status_of(w->rc), "cannot create collection \"%s\": %s", name,
                 qv_strerror(w->rc));
    } else {
        qv_coll *c;
        if (qv_db_coll_get(r->db, name, &c)) {
            rpc_fail(r, GRPC_STATUS_NOT_FOUND, "collection \"%s\" was dropped meanwhile", name);
        } else {
            reply_info(r, c);
            qv_coll_release(c);
        }
    }
    free(cw);
    rpc_unref(r);
}

static void drop_done(qv_write *w)
{
    coll_write *cw = w->ctx;
    rpc *r = cw->r;
    if (w->rc == QV_NOTFOUND) {
        rpc_fail(r, GRPC_STATUS_NOT_FOUND, "collection \"%s\" does not exist", w->config.name);
    } else if (w->rc) {
        rpc_fail(r, srv_status_of(w->rc), "cannot drop collection \"%s\": %s", w->config.name,
                 qv_strerror(w->rc));
    } else {
        Quiver__V1__DropCollectionResponse rep = QUIVER__V1__DROP_COLLECTION_RESPONSE__INIT;
        rpc_finish(r, &rep.base, GRPC_STATUS_OK, NULL);
    }
    free(cw);
    rpc_unref(r);
}

static void submit_coll_write(rpc *r, coll_write *cw, void (*done)(qv_write *))
{
    cw->r = r;
    cw->w.done = done;
    cw->w.ctx = cw;
    rpc_ref(r); /* the write's reference, dropped in done */
    qv_db_submit(r->db, &cw->w);
}

void collections_create(rpc *r)
{
    const Quiver__V1__CreateCollectionRequest *req = (const Quiver__V1__CreateCollectionRequest *)r->req;
    char err[512];
    coll_write *cw = calloc(1, sizeof *cw);
    if (!cw) {
        rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    qv_write w;
    memset(&w, 0, sizeof w);
    if (check_name(r, req->name, "name")) goto out;
    if (req->dim == 0 || req->dim > QV_MAX_DIM) {
        rpc_fail(r, GRPC_STATUS_INVALID_ARGUMENT, "dim %u is out of range 1..%d", req->dim, QV_MAX_DIM);
        goto out;
    }
    if (req->metric < QUIVER__V1__METRIC__L2 || req->metric > QUIVER__V1__METRIC__COSINE) {
        rpc_fail(r, GRPC_STATUS_INVALID_ARGUMENT,
                 "metric %d is not valid: use L2 (1), INNER_PRODUCT (2) or COSINE (3)", (int)req->metric);
        goto out;
    }
    if (srv_parse_index_spec(req->index, req->dim, &w.config.spec, err, sizeof err)) {
        rpc_fail(r, GRPC_STATUS_INVALID_ARGUMENT, "%s", err);
        goto out;
    }
    if (g_cluster) {
        qv_coll_config cfg = w.config;
        snprintf(cfg.name, sizeof cfg.name, "%s", req->name);
        cfg.dim = req->dim;
        cfg.metric = (qv_metric)req->metric;
        srv_cluster_create(r, &cfg, req->shards, req->replicas);
        goto out;
    }
    /* a single node holds one copy of one shard: more needs cluster mode */
    if (req->shards > 1 || req->replicas > 1) {
        const char *f = req->shards > 1 ? "shards" : "replicas";
        rpc_fail(r, GRPC_STATUS_FAILED_PRECONDITION,
                 "%s %u needs cluster mode: this quiverd is a single node (start it with "
                 "--cluster-etcd and --cluster-nats), where a collection has 1 shard and 1 replica",
                 f, req->shards > 1 ? req->shards : req->replicas);
        goto out;
    }
    w.kind = QV_W_CREATE;
    snprintf(w.config.name, sizeof w.config.name, "%s", req->name);
    w.config.dim = req->dim;
    w.config.metric = (qv_metric)req->metric;
    cw->w = w;
    submit_coll_write(r, cw, create_done);
    cw = NULL;
out:
    free(cw);
}

void collections_describe(rpc *r)
{
    const Quiver__V1__DescribeCollectionRequest *req = (const Quiver__V1__DescribeCollectionRequest *)r->req;
    qv_coll *c;
    int rt = srv_routed(r);
    if (rt < 0) return;
    if (rt) {
        if (check_name(r, req->name, "name") == 0) srv_cluster_describe(r);
        return;
    }
    if (req->name[0] == '@' || check_name(r, req->name, "name") == 0) { /* '@': a peer's replica */
        if (qv_db_coll_get(r->db, req->name, &c)) {
            rpc_fail(r, GRPC_STATUS_NOT_FOUND, "collection \"%s\" does not exist", req->name);
        } else {
            reply_info(r, c);
            qv_coll_release(c);
        }
    }
}

void collections_list(rpc *r)
{
    /* the ListCollectionsRequest has no fields yet: nothing to read from r->req */
    int rt = srv_routed(r);
    if (rt) {
        if (rt > 0) srv_cluster_list(r);
        return;
    }
    qv_coll **cs;
    size_t n;
    qv_arena *a = qv_arena_new();
    if (!a || qv_db_coll_list(r->db, &cs, &n)) {
        qv_arena_free(a);
        rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    Quiver__V1__ListCollectionsResponse rep = QUIVER__V1__LIST_COLLECTIONS_RESPONSE__INIT;
    rep.collections = qv_arena_alloc(a, (n ? n : 1) * sizeof *rep.collections);
    char err[400];
    for (size_t i = 0; i < n && rep.collections; i++) {
        /* a scoped key sees only its collections */
        if (!auth_may_use(qv_coll_config_of(cs[i])->name, err, sizeof err)) continue;
        Quiver__V1__CollectionInfo *ci = qv_arena_alloc(a, sizeof *ci);
        Quiver__V1__IndexInfo *ii = qv_arena_alloc(a, sizeof *ii);
        if (!ci || !ii) break;
        srv_fill_collection_info(a, cs[i], ci, ii);
        rep.collections[rep.n_collections++] = ci;
    }
    for (size_t i = 0; i < n; i++) qv_coll_release(cs[i]);
    free(cs);
    rpc_finish(r, &rep.base, GRPC_STATUS_OK, NULL);
    qv_arena_free(a);
}

void collections_drop(rpc *r)
{
    const Quiver__V1__DropCollectionRequest *req = (const Quiver__V1__DropCollectionRequest *)r->req;
    if (g_cluster) {
        if (check_name(r, req->name, "name") == 0) srv_cluster_drop(r, req->name);
        return;
    }
    if (check_name(r, req->name, "name") == 0) {
        coll_write *cw = calloc(1, sizeof *cw);
        if (!cw) {
            rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        } else {
            cw->w.kind = QV_W_DROP;
            snprintf(cw->w.config.name, sizeof cw->w.config.name, "%s", req->name);
            submit_coll_write(r, cw, drop_done);
        }
    }
}
