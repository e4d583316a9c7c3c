/*
 * Cluster mode in the handlers: one test, srv_routed, at the top of a
 * handler sends a caller's call to the router (cluster/router.h) and a
 * peer's call (the "quiver-peer" metadata: a node reading one replica) to
 * the single-node path on the replica's local collection. Writes go through
 * srv_submit, which hands them to the engine's writer on a single node and
 * to the cluster's log otherwise. Routed calls run on the cluster's threads
 * (qc_async), never on a gRPC worker: a worker waiting for a peer whose
 * workers wait for us would deadlock the two.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <inttypes.h>
#include <unistd.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "peer.h"
#include "quiver/error.h"
#include "quiver/log.h"
#include "quiver/peer/v1/peer.pb-c.h"
#include "quiver/query.h"
#include "quiver/token.h"
#include "router.h"
#include "services.h"

qc_cluster *g_cluster;

static int is_peer(const rpc *r)
{
    if (r->local) return 1; /* the router's own call to a replica here */
    for (size_t i = 0; i < r->req_md.count; i++)
        if (!grpc_slice_str_cmp(r->req_md.metadata[i].key, QC_PEER_MD)) return 1;
    return 0;
}

int srv_routed(rpc *r)
{
    if (!g_cluster) return 0;
    if (!is_peer(r)) return 1;
    if (r->local) return 0;
    /* a peer reads replicas directly: with API keys, only with an admin key
     * (the cluster's) */
    char err[400];
    auth_ctx ctx;
    const char *path = srv_methods[r->method].path;
    grpc_status_code code = auth_check(&r->req_md, path, ROLE_ADMIN, &ctx, err, sizeof err);
    if (code == GRPC_STATUS_OK) {
        auth_release(&ctx);
        return 0;
    }
    rpc_fail(r, code, "peer call: %s", err);
    return -1;
}

/* ------------------------------------------------------- collections */
int srv_find_config(const char *name, qv_coll **coll, qv_coll_config *cfg, grpc_status_code *code,
                    char *err, size_t errlen)
{
    *coll = NULL;
    if (!g_cluster || (name && name[0] == '@')) { /* a replica's own name: peers only */
        if (!(*coll = srv_find_coll(name, code, err, errlen))) return -1;
        *cfg = *qv_coll_config_of(*coll);
        return 0;
    }
    if (!name || !name[0]) {
        *code = GRPC_STATUS_INVALID_ARGUMENT;
        snprintf(err, errlen, "collection is empty");
        return -1;
    }
    if (!auth_may_use(name, err, errlen)) {
        *code = GRPC_STATUS_PERMISSION_DENIED;
        return -1;
    }
    qc_meta m;
    if (qc_meta_get(g_cluster, name, &m)) {
        *code = GRPC_STATUS_NOT_FOUND;
        snprintf(err, errlen, "collection \"%.200s\" does not exist", name);
        return -1;
    }
    *cfg = m.cfg;
    qc_meta_free(&m);
    return 0;
}

/* ------------------------------------------------------------- writes */
void srv_token_of(const qv_write *w, const qv_coll_config *cfg, srv_write_result *res,
                  ProtobufCBinaryData *out)
{
    if (!res->toklen) res->toklen = srv_write_token(cfg->name, w->seq, res->tok);
    out->data = res->tok;
    out->len = res->toklen;
}

typedef struct cwrite {
    qv_write *w;
    qv_coll_config cfg;
    srv_write_result *res;
} cwrite;

static int64_t deadline_or_default(int64_t d) { return d ? d : qc_now_ms() + 60000; }
static int64_t deadline_of(rpc *r);

static void write_job(void *ctx)
{
    cwrite *cw = ctx;
    qv_write *w = cw->w;
    srv_write_result *res = cw->res;
    qc_meta m;
    int rc = qc_meta_get(g_cluster, cw->cfg.name, &m);
    if (rc) {
        w->rc = QV_NOTFOUND;
        goto done;
    }
    if (w->chain && w->chain_pos >= atomic_load(w->chain)) { /* an earlier message failed */
        w->rc = QV_CANCELLED;
        qc_meta_free(&m);
        goto done;
    }
    int64_t deadline = deadline_or_default(w->deadline_ms);
    qc_entry e = {w->kind == QV_W_UPSERT ? QC_ENTRY_UPSERT : QC_ENTRY_DELETE, (uint32_t)w->n, m.cfg.dim,
                  w->ids, w->vecs, w->attr_off, w->attrs};
    uint64_t affected = w->n;
    if (w->kind == QV_W_DELETE) { /* deleted: the ids that existed */
        qr_result q;
        memset(&q, 0, sizeof q);
        if (qr_count_existing(g_cluster, &m, w->ids, w->n, deadline, &affected, &q)) {
            snprintf(res->err, sizeof res->err, "%.390s", q.msg);
            res->code = q.code;
            w->rc = QV_IO;
            qr_result_free(&q);
            qc_meta_free(&m);
            goto done;
        }
        qr_result_free(&q);
    }
    qv_token_part *parts = malloc(QC_MAX_SHARDS * sizeof *parts);
    size_t np = 0;
    rc = parts ? qc_write(g_cluster, &m, &e, res->ack_logged, deadline, parts, &np, res->err,
                          sizeof res->err)
               : QV_NOMEM;
    if (!rc) {
        w->affected = affected;
        res->toklen = qv_token_encode(m.cfg.name, parts, np, res->tok);
    } else {
        /* the log did not take it: the caller may retry (a retried upsert
         * is the same write) */
        res->code = rc == QV_CANCELLED ? GRPC_STATUS_DEADLINE_EXCEEDED : GRPC_STATUS_UNAVAILABLE;
        if (rc == QV_NOMEM) res->code = GRPC_STATUS_RESOURCE_EXHAUSTED;
    }
    w->rc = rc;
    free(parts);
    qc_meta_free(&m);
done:
    free(cw);
    w->done(w);
}

void srv_submit(qv_write *w, const qv_coll_config *cfg, srv_write_result *res)
{
    if (!g_cluster) {
        qv_db_submit(g_db, w);
        return;
    }
    cwrite *cw = calloc(1, sizeof *cw);
    if (cw) {
        cw->w = w;
        cw->cfg = *cfg;
        cw->res = res;
    }
    if (!cw || qc_async(g_cluster, write_job, cw)) {
        free(cw);
        w->rc = QV_NOMEM;
        w->done(w);
    }
}

/* -------------------------------------------------------------- reads */
typedef struct rjob {
    rpc *r;
    void (*route)(rpc *r, qr_result *out);
    int list; /* List: a scoped key sees only its collections */
} rjob;

static void copy_raw(void *ctx, uint8_t *buf)
{
    const qr_result *out = ctx;
    memcpy(buf, out->raw, out->raw_len);
}

static void read_job(void *ctx)
{
    rjob *j = ctx;
    rpc *r = j->r;
    qr_result out;
    memset(&out, 0, sizeof out);
    auth_set_current(&r->auth); /* the scope checks of this call's key */
    j->route(r, &out);
    if (out.code == GRPC_STATUS_OK && j->list) {
        Quiver__V1__ListCollectionsResponse *l = (Quiver__V1__ListCollectionsResponse *)out.reply;
        char err[400];
        size_t o = 0;
        for (size_t i = 0; i < l->n_collections; i++)
            if (auth_may_use(l->collections[i]->name, err, sizeof err)) l->collections[o++] = l->collections[i];
        l->n_collections = o;
    }
    auth_set_current(NULL);
    if (out.code == GRPC_STATUS_OK && out.raw) rpc_finish_encoded(r, out.raw_len, copy_raw, &out);
    else if (out.code == GRPC_STATUS_OK) rpc_finish(r, out.reply, GRPC_STATUS_OK, NULL);
    else rpc_fail(r, out.code, "%s", out.msg);
    qr_result_free(&out);
    rpc_unref(r);
    free(j);
}

static void route(rpc *r, void (*fn)(rpc *r, qr_result *out), int list)
{
    rjob *j = calloc(1, sizeof *j);
    if (!j) {
        rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    j->r = r;
    j->route = fn;
    j->list = list;
    rpc_ref(r);
    if (qc_async(g_cluster, read_job, j)) {
        rpc_unref(r);
        free(j);
        rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    }
}

static int64_t deadline_of(rpc *r) { return deadline_or_default(rpc_deadline_ms(r)); }

static void do_search(rpc *r, qr_result *out)
{
    qr_search(g_cluster, (const Quiver__V1__SearchRequest *)r->req, deadline_of(r), out);
}

static void do_recommend(rpc *r, qr_result *out)
{
    qr_recommend(g_cluster, (const Quiver__V1__RecommendRequest *)r->req, deadline_of(r), out);
}

static void do_recommend_batch(rpc *r, qr_result *out)
{
    const Quiver__V1__RecommendBatchRequest *req = (const Quiver__V1__RecommendBatchRequest *)r->req;
    size_t n = req->n_requests;
    Quiver__V1__SearchResponse *rep = NULL;
    out->sub = calloc(n ? n : 1, sizeof *out->sub);
    out->a = qv_arena_new();
    if (out->a) rep = qv_arena_alloc(out->a, sizeof *rep);
    if (rep) {
        quiver__v1__search_response__init(rep);
        rep->results = qv_arena_alloc(out->a, (n ? n : 1) * sizeof *rep->results);
    }
    if (!out->sub || !rep || !rep->results) {
        out->code = GRPC_STATUS_RESOURCE_EXHAUSTED;
        snprintf(out->msg, sizeof out->msg, "out of memory for %zu requests", n);
        return;
    }
    out->code = GRPC_STATUS_OK;
    /* each request routed on its own; the reply points into their results */
    for (size_t i = 0; i < n && out->code == GRPC_STATUS_OK; i++) {
        qr_recommend(g_cluster, req->requests[i], deadline_of(r), &out->sub[out->nsub]);
        qr_result *p = &out->sub[out->nsub++];
        if (p->code != GRPC_STATUS_OK) {
            out->code = p->code;
            snprintf(out->msg, sizeof out->msg, "requests[%zu]: %.980s", i, p->msg);
        } else {
            rep->results[rep->n_results++] = (Quiver__V1__Hits *)p->reply;
        }
    }
    out->reply = &rep->base;
}

static void do_get(rpc *r, qr_result *out)
{
    qr_get(g_cluster, (const Quiver__V1__GetItemsRequest *)r->req, deadline_of(r), out);
}

static void do_describe(rpc *r, qr_result *out)
{
    qr_describe(g_cluster, ((const Quiver__V1__DescribeCollectionRequest *)r->req)->name, deadline_of(r), out);
}

static void do_list(rpc *r, qr_result *out) { qr_list(g_cluster, deadline_of(r), out); }

static void do_status(rpc *r, qr_result *out) { qr_cluster_status(g_cluster, deadline_of(r), out); }

void srv_cluster_search(rpc *r) { route(r, do_search, 0); }
void srv_cluster_recommend(rpc *r) { route(r, do_recommend, 0); }
void srv_cluster_recommend_batch(rpc *r) { route(r, do_recommend_batch, 0); }
void srv_cluster_get(rpc *r) { route(r, do_get, 0); }
void srv_cluster_describe(rpc *r) { route(r, do_describe, 0); }
void srv_cluster_list(rpc *r) { route(r, do_list, 1); }
void srv_cluster_status(rpc *r) { route(r, do_status, 0); }

/* --------------------------------------------------- create and drop */
typedef struct cjob {
    rpc *r;
    qv_coll_config cfg;
    uint32_t shards, replicas;
    int drop;
} cjob;

static void coll_job(void *ctx)
{
    cjob *j = ctx;
    rpc *r = j->r;
    char err[600] = "";
    if (j->drop) {
        int rc = qc_drop(g_cluster, j->cfg.name, err, sizeof err);
        if (rc == QV_NOTFOUND) {
            rpc_fail(r, GRPC_STATUS_NOT_FOUND, "collection \"%s\" does not exist", j->cfg.name);
        } else if (rc) {
            rpc_fail(r, GRPC_STATUS_UNAVAILABLE, "cannot drop collection \"%s\": %s", j->cfg.name, err);
        } else {
            Quiver__V1__DropCollectionResponse rep = QUIVER__V1__DROP_COLLECTION_RESPONSE__INIT;
            rpc_finish(r, &rep.base, GRPC_STATUS_OK, NULL);
        }
    } else {
        int rc = qc_create(g_cluster, &j->cfg, j->shards, j->replicas, err, sizeof err);
        if (rc == QV_EXISTS) {
            rpc_fail(r, GRPC_STATUS_ALREADY_EXISTS, "collection \"%s\" already exists", j->cfg.name);
        } else if (rc == QV_INVALID) {
            rpc_fail(r, GRPC_STATUS_FAILED_PRECONDITION, "cannot create collection \"%s\": %s",
                     j->cfg.name, err);
        } else if (rc) {
            rpc_fail(r, GRPC_STATUS_UNAVAILABLE, "cannot create collection \"%s\": %s", j->cfg.name, err);
        } else {
            /* the replicas open as their nodes see the record: wait (briefly)
             * until every one is open, so that the reply describes a
             * collection that serves on every node */
            qr_result out;
            int64_t until = qc_now_ms() + 10000;
            qc_wait_open(g_cluster, j->cfg.name, until);
            for (;;) {
                memset(&out, 0, sizeof out);
                qr_describe(g_cluster, j->cfg.name, until, &out);
                if (out.code == GRPC_STATUS_OK || qc_now_ms() >= until) break;
                qr_result_free(&out);
                struct timespec ts = {0, 20 * 1000000L};
                nanosleep(&ts, NULL);
            }
            if (out.code == GRPC_STATUS_OK) rpc_finish(r, out.reply, GRPC_STATUS_OK, NULL);
            else rpc_fail(r, out.code, "collection \"%s\" created, but: %s", j->cfg.name, out.msg);
            qr_result_free(&out);
        }
    }
    rpc_unref(r);
    free(j);
}

static void coll_async(rpc *r, const qv_coll_config *cfg, uint32_t shards, uint32_t replicas, int drop)
{
    cjob *j = calloc(1, sizeof *j);
    if (!j) {
        rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    j->r = r;
    j->cfg = *cfg;
    j->shards = shards ? shards : 1;
    j->replicas = replicas ? replicas : 1;
    j->drop = drop;
    rpc_ref(r);
    if (qc_async(g_cluster, coll_job, j)) {
        rpc_unref(r);
        free(j);
        rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    }
}

void srv_cluster_create(rpc *r, const qv_coll_config *cfg, uint32_t shards, uint32_t replicas)
{
    coll_async(r, cfg, shards, replicas, 0);
}

void srv_cluster_drop(rpc *r, const char *name)
{
    qv_coll_config cfg;
    memset(&cfg, 0, sizeof cfg);
    snprintf(cfg.name, sizeof cfg.name, "%s", name);
    coll_async(r, &cfg, 1, 1, 1);
}

/* --------------------------------------------------------------- scan */
typedef struct cscan {
    uint64_t cursor, left;
    int first, over;
    uint32_t page;
} cscan;

static void scan_job(void *ctx)
{
    rpc *r = ctx;
    cscan *s = r->state;
    const Quiver__V1__ScanRequest *req = (const Quiver__V1__ScanRequest *)r->req;
    qr_result out;
    int more = 0;
    uint32_t want = s->left < s->page ? (uint32_t)s->left : s->page;
    qr_scan_page(g_cluster, req, s->cursor, s->first, want, deadline_of(r), &out, &more);
    if (out.code != GRPC_STATUS_OK) {
        s->over = 1;
        rpc_fail(r, out.code, "%s", out.msg);
    } else {
        Quiver__V1__ScanResponse *p = (Quiver__V1__ScanResponse *)out.reply;
        if (p->n_items) s->cursor = p->items[p->n_items - 1]->id;
        if (s->left != UINT64_MAX) s->left -= p->n_items;
        s->first = 0;
        int last = !more || s->left == 0 || p->n_items == 0;
        if (last) s->over = 1;
        rpc_send(r, out.reply, last);
    }
    qr_result_free(&out);
    rpc_unref(r);
}

static void scan_next(rpc *r)
{
    rpc_ref(r);
    if (qc_async(g_cluster, scan_job, r)) {
        rpc_unref(r);
        rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    }
}

void srv_cluster_scan(rpc *r, const qv_coll_config *cfg)
{
    const Quiver__V1__ScanRequest *req = (const Quiver__V1__ScanRequest *)r->req;
    cscan *s = calloc(1, sizeof *s);
    if (!s) {
        rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    r->state = s;
    r->state_free = free;
    s->left = req->limit ? req->limit : UINT64_MAX;
    s->first = req->after_id == 0;
    s->cursor = req->after_id;
    /* a message of about 2 MB */
    uint64_t per = ((uint64_t)2 << 20) / ((req->with_vectors ? cfg->dim * 4 : 0) + 256);
    s->page = per < 1 ? 1 : per > 2000 ? 2000 : (uint32_t)per;
    scan_next(r);
}

int srv_cluster_scan_step(rpc *r, int ok)
{
    if (!g_cluster || is_peer(r)) return 0;
    cscan *s = r->state;
    if (ok && !s->over) scan_next(r);
    return 1;
}

/* ------------------------------------------------------------- peers */
typedef struct pwait {
    rpc *r;
} pwait;

static void wait_done(void *ctx, uint64_t applied, int exists)
{
    rpc *r = ctx;
    Quiver__Peer__V1__WaitAppliedResponse rep = QUIVER__PEER__V1__WAIT_APPLIED_RESPONSE__INIT;
    rep.applied_seq = applied;
    rep.exists = exists;
    rpc_finish(r, &rep.base, GRPC_STATUS_OK, NULL);
    rpc_unref(r);
}

void peer_wait_applied(rpc *r)
{
    const Quiver__Peer__V1__WaitAppliedRequest *req = (const Quiver__Peer__V1__WaitAppliedRequest *)r->req;
    if (!g_cluster) {
        rpc_fail(r, GRPC_STATUS_UNIMPLEMENTED, "this quiverd is a single node: it holds no replicas");
        return;
    }
    /* answered by the replica's applier or the ticker: no worker waits */
    rpc_ref(r);
    qc_local_wait(g_cluster, req->replica, req->seq, qc_now_ms() + req->timeout_ms, wait_done, r);
}

/* ------------------------------------------------------------- rebuild */
typedef struct rb_rep {
    struct rb_job *j;
    uint32_t shard;
    int first_of_shard; /* its final count stands for the shard's */
    char addr[QC_MAX_ADDR + 1];
    char lname[QV_MAX_NAME + 1];
    pthread_t th;
    char phase[16];
    uint64_t done, total, final_count;
    double elapsed;
    grpc_status_code code;
    char msg[512];
    Quiver__V1__IndexInfo *index;
} rb_rep;

typedef struct rb_job {
    rpc *r;
    void (*progress)(void *ctx, const char *phase, uint64_t done, uint64_t total, double elapsed);
    void (*finished)(void *ctx, grpc_status_code code, const char *msg, Quiver__V1__IndexInfo *ii,
                     uint64_t done, double elapsed);
    void *ctx;
    _Atomic int *cancel;
    pthread_mutex_t mu;
    rb_rep *reps;
    size_t n;
} rb_job;

/* the least advanced phase of the replicas: what the whole is doing */
static int phase_rank(const char *p)
{
    static const char *order[] = {"queued", "sampling", "training", "adding", "saving", "catching_up", "done"};
    for (int i = 0; i < 7; i++)
        if (!strcmp(p, order[i])) return i;
    return 0;
}

static int rb_take(void *ctx, ProtobufCMessage *msg)
{
    rb_rep *rp = ctx;
    rb_job *j = rp->j;
    Quiver__V1__RebuildProgress *p = (Quiver__V1__RebuildProgress *)msg;
    pthread_mutex_lock(&j->mu);
    snprintf(rp->phase, sizeof rp->phase, "%s", p->phase);
    rp->done = p->done;
    rp->total = p->total;
    rp->elapsed = p->elapsed_seconds;
    if (!strcmp(p->phase, "done")) {
        rp->final_count = p->done;
        if (p->index) { /* kept: sub-messages are allocated on their own */
            if (rp->index) protobuf_c_message_free_unpacked(&rp->index->base, NULL);
            rp->index = p->index;
            p->index = NULL;
        }
    }
    uint64_t done = 0, total = 0;
    double el = 0;
    const char *phase = "done";
    for (size_t i = 0; i < j->n; i++) {
        done += j->reps[i].done;
        total += j->reps[i].total;
        if (j->reps[i].elapsed > el) el = j->reps[i].elapsed;
        if (phase_rank(j->reps[i].phase) < phase_rank(phase)) phase = j->reps[i].phase;
    }
    char ph[16];
    snprintf(ph, sizeof ph, "%s", phase);
    pthread_mutex_unlock(&j->mu);
    protobuf_c_message_free_unpacked(msg, NULL);
    if (strcmp(ph, "done")) j->progress(j->ctx, ph, done, total, el);
    return atomic_load(j->cancel) ? 1 : 0; /* non-zero ends the call: the replica cancels */
}

static void *rb_thread(void *arg)
{
    rb_rep *rp = arg;
    rb_job *j = rp->j;
    const Quiver__V1__RebuildIndexRequest *req = (const Quiver__V1__RebuildIndexRequest *)j->r->req;
    Quiver__V1__RebuildIndexRequest pr = *req;
    pr.collection = rp->lname;
    rp->code = qc_peer_stream(qc_peers_of(g_cluster), rp->addr, "/quiver.v1.Admin/RebuildIndex", &pr.base,
                              &quiver__v1__rebuild_progress__descriptor, INT64_MAX / 4, rb_take, rp,
                              rp->msg, sizeof rp->msg);
    if (atomic_load(j->cancel)) rp->code = GRPC_STATUS_CANCELLED;
    return NULL;
}

static void rebuild_job(void *ctx)
{
    rb_job *j = ctx;
    const Quiver__V1__RebuildIndexRequest *req = (const Quiver__V1__RebuildIndexRequest *)j->r->req;
    qc_meta m;
    grpc_status_code code = GRPC_STATUS_OK;
    char msg[700] = "";
    Quiver__V1__IndexInfo *ii = NULL;
    uint64_t count = 0;
    double el = 0;
    if (qc_meta_get(g_cluster, req->collection, &m)) {
        j->finished(j->ctx, GRPC_STATUS_NOT_FOUND, "collection does not exist", NULL, 0, 0);
        goto out;
    }
    size_t cap = 0;
    for (uint32_t s = 0; s < m.shards; s++) cap += m.shard[s].nrep;
    j->reps = calloc(cap ? cap : 1, sizeof *j->reps);
    for (uint32_t s = 0; j->reps && s < m.shards; s++) {
        int first = 1;
        for (uint32_t k = 0; k < m.shard[s].nrep; k++) {
            rb_rep *rp = &j->reps[j->n];
            if (m.shard[s].rep[k].state == QC_DOWN || qc_node_addr(g_cluster, m.shard[s].rep[k].node, rp->addr))
                continue;
            rp->j = j;
            rp->shard = s;
            rp->first_of_shard = first;
            first = 0;
            snprintf(rp->phase, sizeof rp->phase, "queued");
            qc_replica_name(m.uid, s, rp->lname);
            j->n++;
        }
    }
    for (size_t i = 0; i < j->n; i++) pthread_create(&j->reps[i].th, NULL, rb_thread, &j->reps[i]);
    for (size_t i = 0; i < j->n; i++) pthread_join(j->reps[i].th, NULL);
    for (size_t i = 0; i < j->n; i++) {
        rb_rep *rp = &j->reps[i];
        if (rp->code != GRPC_STATUS_OK && code == GRPC_STATUS_OK) {
            code = rp->code;
            char named[512];
            /* the replica's name, told as the collection's */
            const char *at = strstr(rp->msg, rp->lname);
            if (at) snprintf(named, sizeof named, "%.*s%s%s", (int)(at - rp->msg), rp->msg, m.cfg.name,
                             at + strlen(rp->lname));
            else snprintf(named, sizeof named, "%s", rp->msg);
            snprintf(msg, sizeof msg, "shard %u: %s", rp->shard, named);
        }
        if (rp->first_of_shard) count += rp->final_count;
        if (rp->elapsed > el) el = rp->elapsed;
        if (!ii && rp->index) {
            ii = rp->index;
            rp->index = NULL;
        }
    }
    if (ii) ii->count = count;
    /* the spec asked for becomes the collection's, as on one node: a replica
     * placed later builds (or takes from a peer) the same kind of index */
    qv_index_params sp;
    char perr[256];
    if (code == GRPC_STATUS_OK && !srv_parse_index_spec(req->index, m.cfg.dim, &sp, perr, sizeof perr) &&
        sp.kind != QV_KIND_AUTO && qc_set_spec(g_cluster, m.cfg.name, &sp))
        qv_warn("cluster: collection %s: its new index spec did not reach etcd; replicas placed later "
                "build the one it was created with", m.cfg.name);
    if (code != GRPC_STATUS_OK && ii) {
        protobuf_c_message_free_unpacked(&ii->base, NULL);
        ii = NULL;
    }
    j->finished(j->ctx, code, msg, ii, count, el);
    qc_meta_free(&m);
out:
    for (size_t i = 0; i < j->n; i++)
        if (j->reps[i].index) protobuf_c_message_free_unpacked(&j->reps[i].index->base, NULL);
    free(j->reps);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

void srv_cluster_rebuild(rpc *r,
                         void (*progress)(void *ctx, const char *phase, uint64_t done, uint64_t total,
                                          double elapsed),
                         void (*finished)(void *ctx, grpc_status_code code, const char *msg,
                                          Quiver__V1__IndexInfo *ii, uint64_t done, double elapsed),
                         void *ctx, _Atomic int *cancel)
{
    rb_job *j = calloc(1, sizeof *j);
    if (!j) {
        finished(ctx, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory", NULL, 0, 0);
        return;
    }
    j->r = r;
    j->progress = progress;
    j->finished = finished;
    j->ctx = ctx;
    j->cancel = cancel;
    pthread_mutex_init(&j->mu, NULL);
    if (qc_async(g_cluster, rebuild_job, j)) {
        pthread_mutex_destroy(&j->mu);
        free(j);
        finished(ctx, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory", NULL, 0, 0);
    }
}

/* ------------------------------------------------- a stream's last wait */
void srv_token_merge(srv_token_max *m, const qv_coll_config *cfg, const srv_write_result *res)
{
    qv_token_part p[256];
    char why[200];
    int n = qv_token_decode(cfg->name, res->tok, res->toklen, p, 256, why, sizeof why);
    for (int i = 0; i < n; i++) {
        size_t j = 0;
        while (j < m->n && m->p[j].shard != p[i].shard) j++;
        if (j == m->n) {
            /* kept in shard order, as a token lists them */
            size_t at = 0;
            while (at < m->n && m->p[at].shard < p[i].shard) at++;
            memmove(&m->p[at + 1], &m->p[at], (m->n - at) * sizeof m->p[0]);
            m->p[at] = p[i];
            m->n++;
        } else if (p[i].seq > m->p[j].seq) {
            m->p[j].seq = p[i].seq;
        }
    }
}

size_t srv_token_encode(const srv_token_max *m, const qv_coll_config *cfg, uint8_t out[SRV_TOKEN_MAX])
{
    return qv_token_encode(cfg->name, m->p, m->n, out);
}

typedef struct pwait_job {
    rpc *r;
    qv_coll_config cfg;
    srv_token_max parts;
    void (*done)(void *ctx, grpc_status_code code, const char *msg);
    void *ctx;
} pwait_job;

static void parts_job(void *ctx)
{
    pwait_job *j = ctx;
    qc_meta m;
    char err[400] = "";
    grpc_status_code code = GRPC_STATUS_OK;
    if (qc_meta_get(g_cluster, j->cfg.name, &m)) {
        code = GRPC_STATUS_NOT_FOUND;
        snprintf(err, sizeof err, "collection \"%s\" was dropped meanwhile", j->cfg.name);
    } else {
        if (qc_wait_applied(g_cluster, &m, j->parts.p, j->parts.n, deadline_of(j->r), err, sizeof err))
            code = GRPC_STATUS_DEADLINE_EXCEEDED;
        qc_meta_free(&m);
    }
    j->done(j->ctx, code, err);
    free(j);
}

void srv_cluster_wait_parts(rpc *r, const qv_coll_config *cfg, const srv_token_max *parts,
                            void (*done)(void *ctx, grpc_status_code code, const char *msg), void *ctx)
{
    pwait_job *j = malloc(sizeof *j);
    if (j) {
        j->r = r;
        j->cfg = *cfg;
        j->parts = *parts;
        j->done = done;
        j->ctx = ctx;
    }
    if (!j || qc_async(g_cluster, parts_job, j)) {
        free(j);
        done(ctx, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    }
}

/* ------------------------------------------------------------ snapshot */
#define SNAP_BYTES ((size_t)2 << 20) /* a chunk holds about this much */
#define SNAP_ITEMS 5000

typedef struct snap_fill {
    uint32_t dim;
    size_t n, cap, bytes;
    uint64_t *ids;
    float *vecs;
    size_t *off;
    qv_buf attrs;
    int rc;
} snap_fill;

static int snap_one(void *ctx, const qv_item_ref *it)
{
    snap_fill *f = ctx;
    if (f->n == SNAP_ITEMS || f->bytes >= SNAP_BYTES) return 1;
    if (f->n == f->cap) {
        size_t cap = f->cap ? 2 * f->cap : 256;
        uint64_t *ids = realloc(f->ids, cap * sizeof *ids);
        if (ids) f->ids = ids;
        float *v = realloc(f->vecs, cap * f->dim * sizeof *v);
        if (v) f->vecs = v;
        size_t *off = realloc(f->off, (cap + 1) * sizeof *off);
        if (off) f->off = off;
        if (!ids || !v || !off) return f->rc = QV_NOMEM;
        f->cap = cap;
    }
    f->ids[f->n] = it->id;
    qv_item_vector(&it->v, f->vecs + f->n * f->dim);
    f->off[f->n] = f->attrs.len;
    if (it->attrs_len && qv_buf_append(&f->attrs, it->attrs, it->attrs_len)) return f->rc = QV_NOMEM;
    f->n++;
    f->off[f->n] = f->attrs.len;
    f->bytes += 16 + f->dim * 4 + it->attrs_len;
    return 0;
}

/* The local collection of the replica a peer's call names, or NULL when the
 * call has failed (a single node, no such replica). */
static qv_coll *peer_replica(rpc *r, const char *replica)
{
    grpc_status_code code;
    char err[512];
    if (!g_cluster) {
        rpc_fail(r, GRPC_STATUS_UNIMPLEMENTED, "this quiverd is a single node: it holds no replicas");
        return NULL;
    }
    qv_coll *c = srv_find_coll(replica, &code, err, sizeof err);
    if (!c) rpc_fail(r, code, "%s", err);
    return c;
}

void peer_snapshot(rpc *r)
{
    const Quiver__Peer__V1__SnapshotRequest *req = (const Quiver__Peer__V1__SnapshotRequest *)r->req;
    qv_coll *c = peer_replica(r, req->replica);
    if (!c) return;
    /* the sequence first: replaying the log after it converges whatever the
     * chunks read later (entries are applied in order and idempotent) */
    qv_coll_info in;
    qv_coll_info_get(c, &in);
    snap_fill f = {.dim = qv_coll_config_of(c)->dim};
    qv_scan *sc = NULL;
    int rc = qv_scan_open(c, &sc);
    uint64_t from = req->first ? 0 : req->after_id + 1;
    int more = 0;
    if (!rc && !(req->after_id >= (uint64_t)QV_MAX_ID && !req->first)) {
        rc = qv_scan_step(sc, from, 1, snap_one, &f);
        more = rc == 1;
        if (rc == 1) rc = 0;
        if (f.rc) rc = f.rc;
    }
    qv_scan_close(sc);
    if (rc) {
        rpc_fail(r, srv_status_of(rc), "snapshot of %s: %s", req->replica, qv_strerror(rc));
    } else {
        Quiver__Peer__V1__SnapshotChunk rep = QUIVER__PEER__V1__SNAPSHOT_CHUNK__INIT;
        rep.applied_seq = in.log_seq;
        rep.last = !more;
        uint8_t *buf = NULL, sha[32];
        if (f.n) {
            qc_entry e = {QC_ENTRY_UPSERT, (uint32_t)f.n, f.dim, f.ids, f.vecs, f.off, f.attrs.data};
            size_t len = qc_entry_size(&e, 0, (uint32_t)f.n);
            if ((buf = malloc(len))) {
                qc_entry_encode(&e, 0, (uint32_t)f.n, buf);
                SHA256(buf, len, sha);
                rep.entry.data = buf;
                rep.entry.len = len;
                rep.sha256.data = sha;
                rep.sha256.len = 32;
                rep.last_id = f.ids[f.n - 1];
            }
        }
        if (f.n && !buf) rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory for a snapshot chunk");
        else rpc_finish(r, &rep.base, GRPC_STATUS_OK, NULL);
        free(buf);
    }
    free(f.ids);
    free(f.vecs);
    free(f.off);
    qv_buf_free(&f.attrs);
    qv_coll_release(c);
}

#define INDEX_CHUNK (2u << 20)

void peer_index_file(rpc *r)
{
    const Quiver__Peer__V1__IndexFileRequest *req = (const Quiver__Peer__V1__IndexFileRequest *)r->req;
    char path[4200];
    qv_coll *c = peer_replica(r, req->replica);
    if (!c) return;
    Quiver__Peer__V1__IndexFileChunk rep = QUIVER__PEER__V1__INDEX_FILE_CHUNK__INIT;
    int fd = qv_coll_index_file(c, path, sizeof path) ? -1 : open(path, O_RDONLY | O_CLOEXEC);
    qv_coll_release(c);
    if (fd < 0) { /* none: the new replica builds its own */
        rpc_finish(r, &rep.base, GRPC_STATUS_OK, NULL);
        return;
    }
    struct stat sb;
    uint8_t *buf = NULL, sha[32];
    if (fstat(fd, &sb)) {
        rpc_fail(r, GRPC_STATUS_INTERNAL, "index file of %s: %s", req->replica, strerror(errno));
        goto out;
    }
    rep.present = 1;
    rep.size = (uint64_t)sb.st_size;
    rep.file_id = ((uint64_t)sb.st_dev << 48) ^ ((uint64_t)sb.st_ino << 20) ^
                  (uint64_t)sb.st_mtim.tv_sec * 1000000000ull ^ (uint64_t)sb.st_mtim.tv_nsec;
    if (req->file_id && req->file_id != rep.file_id) {
        rpc_fail(r, GRPC_STATUS_FAILED_PRECONDITION,
                 "index file of %s was replaced (rebuilt) since file_id %" PRIu64, req->replica,
                 (uint64_t)req->file_id);
        goto out;
    }
    if (req->offset > rep.size) {
        rpc_fail(r, GRPC_STATUS_OUT_OF_RANGE, "offset %" PRIu64 " is past the index file of %s (%" PRIu64
                 " bytes)", (uint64_t)req->offset, req->replica, (uint64_t)rep.size);
        goto out;
    }
    size_t want = rep.size - req->offset < INDEX_CHUNK ? (size_t)(rep.size - req->offset) : INDEX_CHUNK;
    if (want && !(buf = malloc(want))) {
        rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory for an index file chunk");
        goto out;
    }
    size_t got = 0;
    while (got < want) {
        ssize_t n = pread(fd, buf + got, want - got, (off_t)(req->offset + got));
        if (n <= 0) break;
        got += (size_t)n;
    }
    if (got < want) {
        rpc_fail(r, GRPC_STATUS_INTERNAL, "index file of %s: short read at %" PRIu64, req->replica,
                 (uint64_t)(req->offset + got));
        goto out;
    }
    SHA256(buf, got, sha);
    rep.data.data = buf;
    rep.data.len = got;
    rep.sha256.data = sha;
    rep.sha256.len = 32;
    rpc_finish(r, &rep.base, GRPC_STATUS_OK, NULL);
out:
    free(buf);
    close(fd);
}

/* ------------------------------------------------------ drain, rebalance */
static void do_drain(rpc *r, qr_result *out)
{
    const Quiver__V1__DrainNodeRequest *req = (const Quiver__V1__DrainNodeRequest *)r->req;
    qc_node_info *nodes = NULL;
    size_t n = 0, found = 0;
    if (!qc_nodes(g_cluster, &nodes, &n))
        for (size_t i = 0; i < n; i++) found |= !strcmp(nodes[i].id, req->node);
    free(nodes);
    if (!req->node[0] || !found) {
        out->code = req->node[0] ? GRPC_STATUS_NOT_FOUND : GRPC_STATUS_INVALID_ARGUMENT;
        snprintf(out->msg, sizeof out->msg, req->node[0] ? "node \"%.100s\" is not in the cluster" : "node is empty",
                 req->node);
        return;
    }
    uint32_t left = 0;
    if (qc_drain(g_cluster, req->node, req->cancel, &left)) {
        out->code = GRPC_STATUS_UNAVAILABLE;
        snprintf(out->msg, sizeof out->msg, "etcd did not take the drain of %.100s; retry", req->node);
        return;
    }
    Quiver__V1__DrainNodeResponse *rep = NULL;
    if ((out->a = qv_arena_new())) rep = qv_arena_alloc(out->a, sizeof *rep);
    if (!rep) {
        out->code = GRPC_STATUS_RESOURCE_EXHAUSTED;
        snprintf(out->msg, sizeof out->msg, "out of memory");
        return;
    }
    quiver__v1__drain_node_response__init(rep);
    rep->replicas_left = left;
    out->reply = &rep->base;
    out->code = GRPC_STATUS_OK;
}

static void do_rebalance(rpc *r, qr_result *out)
{
    (void)r;
    static Quiver__V1__RebalanceResponse rep = QUIVER__V1__REBALANCE_RESPONSE__INIT;
    if (qc_rebalance(g_cluster)) {
        out->code = GRPC_STATUS_UNAVAILABLE;
        snprintf(out->msg, sizeof out->msg, "etcd did not take the request; retry");
        return;
    }
    out->reply = &rep.base;
    out->code = GRPC_STATUS_OK;
}

void admin_drain_node(rpc *r)
{
    int rt = srv_routed(r);
    if (rt < 0) return;
    if (!rt) {
        rpc_fail(r, GRPC_STATUS_FAILED_PRECONDITION, "DrainNode needs cluster mode: this quiverd is a single node");
        return;
    }
    route(r, do_drain, 0);
}

void admin_rebalance(rpc *r)
{
    int rt = srv_routed(r);
    if (rt < 0) return;
    if (!rt) {
        rpc_fail(r, GRPC_STATUS_FAILED_PRECONDITION, "Rebalance needs cluster mode: this quiverd is a single node");
        return;
    }
    route(r, do_rebalance, 0);
}

/* ------------------------------------------------------------- restore */
typedef struct restore_state {
    int fd;
    uint64_t bytes;
} restore_state;

static void restore_free(void *p)
{
    restore_state *s = p;
    if (!s) return;
    if (s->fd >= 0) close(s->fd);
    free(s);
}

static void restore_job(void *ctx)
{
    rpc *r = ctx;
    restore_state *s = r->state;
    char err[1024] = "";
    uint32_t n = 0;
    uint64_t items = 0;
    int rc = qc_restore(g_cluster, s->fd, &n, &items, err, sizeof err);
    if (rc) {
        grpc_status_code code = rc == QV_EXISTS    ? GRPC_STATUS_ALREADY_EXISTS
                                : rc == QV_CORRUPT ? GRPC_STATUS_DATA_LOSS
                                : rc == QV_INVALID ? GRPC_STATUS_INVALID_ARGUMENT
                                : rc == QV_VERSION ? GRPC_STATUS_FAILED_PRECONDITION
                                                   : GRPC_STATUS_UNAVAILABLE;
        rpc_fail(r, code, "restore refused after %u collections and %llu items: %s", n,
                 (unsigned long long)items, err);
    } else {
        qv_info("restore: %u collections, %llu items from a %llu-byte cluster backup", n,
                (unsigned long long)items, (unsigned long long)s->bytes);
        Quiver__V1__RestoreResponse rep = QUIVER__V1__RESTORE_RESPONSE__INIT;
        rep.collections = n;
        rep.items = items;
        rpc_finish(r, &rep.base, GRPC_STATUS_OK, NULL);
    }
    rpc_unref(r);
}

void admin_restore_start(rpc *r)
{
    int rt = srv_routed(r);
    if (rt < 0) return;
    if (!rt) {
        rpc_fail(r, GRPC_STATUS_FAILED_PRECONDITION,
                 "Restore loads a cluster backup into a cluster; a single node restores a backup with "
                 "quiverd --restore FILE --data DIR");
        return;
    }
    if (auth_scoped()) {
        rpc_fail(r, GRPC_STATUS_PERMISSION_DENIED,
                 "a restore creates collections: a key scoped to some cannot run one");
        return;
    }
    restore_state *s = calloc(1, sizeof *s);
    char path[4200];
    snprintf(path, sizeof path, "%s/.cluster-restore-%d-XXXXXX", g_data_dir, (int)getpid());
    if (!s || (s->fd = mkstemp(path)) < 0) {
        free(s);
        rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "cannot make a scratch file in %s", g_data_dir);
        return;
    }
    unlink(path);
    r->state = s;
    r->state_free = restore_free;
    rpc_start_stream(r);
}

void admin_restore_step(rpc *r, int ok)
{
    restore_state *s = r->state;
    if (!ok) return; /* the caller went away */
    if (!r->recv_bb) { /* all of it: load it on a cluster thread */
        rpc_ref(r);
        if (qc_async(g_cluster, restore_job, r)) {
            rpc_unref(r);
            rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        }
        return;
    }
    Quiver__V1__RestoreChunk *ch = (Quiver__V1__RestoreChunk *)rpc_recv_unpack(r, NULL);
    if (!ch) {
        rpc_fail(r, GRPC_STATUS_INVALID_ARGUMENT, "cannot decode RestoreChunk: %s", rpc_unpack_error());
        return;
    }
    ssize_t w = ch->data.len ? write(s->fd, ch->data.data, ch->data.len) : 0;
    int bad = w != (ssize_t)ch->data.len;
    s->bytes += ch->data.len;
    protobuf_c_message_free_unpacked(&ch->base, NULL);
    if (bad) {
        rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "cannot keep the archive in %s: %s", g_data_dir,
                 strerror(errno));
        return;
    }
    rpc_recv(r);
}
