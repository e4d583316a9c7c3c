/*
 * quiver.v1.Search: nearest neighbours of vectors or stored items ("more like
 * this", the item itself left out), composed queries (filter, exclusions,
 * threshold, groups, MMR, fusion) and recommendations. Here: validation,
 * translation of protobuf into the engine's structs (quiver/query.h) and the
 * reply; plain searches go straight to qv_coll_search (batched in FAISS),
 * composed ones to the query module.
 */
#include <inttypes.h>
#include <math.h>
#include <omp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "quiver/error.h"
#include "quiver/log.h"
#include "quiver/query.h"
#include "services.h"
#include "wire.h"

#define MAX_QUERIES 10000
#define MAX_RECOMMEND_BATCH 1000
#define MAX_EXAMPLES 1000
#define MAX_MMR_CANDIDATES 10000
/* candidates a composed call may rank in all (queries x depth) */
#define MAX_CANDIDATES ((size_t)10 << 20)
#define BATCH_OMP_MIN 32 /* batches this large may use every core */
/* Bytes of a hit on the wire at the least: the Hit's tag and length, id and
 * score; the budget check before the search uses it. */
#define HIT_MIN_BYTES 9
/* A search's own scratch (candidate scores and ids, with refine's) */
#define SEARCH_SCRATCH_MAX ((size_t)1 << 30)

unsigned g_max_k = 1000;
unsigned g_slow_ms = 500;
size_t g_max_reply = (size_t)64 << 20;
static atomic_int g_active_searches;
static long g_ncpu = 1;

void search_init(void)
{
    g_ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (g_ncpu < 1) g_ncpu = 1;
}

/* ------------------------------------------------ deadlines, slow calls */
/* Has the call's deadline passed, or has it ended (cancelled)? Searches
 * check it between chunks of work (FAISS's interrupt hook, the query
 * module's stop) and give up: the worker is free again. */
static int call_gone(void *ctx)
{
    rpc *r = ctx;
    if (atomic_load(&r->closed)) return 1;
    if (gpr_time_cmp(r->deadline, gpr_inf_future(r->deadline.clock_type)) == 0) return 0;
    return gpr_time_cmp(gpr_now(r->deadline.clock_type), r->deadline) >= 0;
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* The status of a search stopped by call_gone. */
static void fail_stopped(rpc *r, const char *what)
{
    if (atomic_load(&r->closed))
        rpc_fail(r, GRPC_STATUS_CANCELLED, "%s stopped: the call was cancelled", what);
    else
        rpc_fail(r, GRPC_STATUS_DEADLINE_EXCEEDED, "%s stopped: the call's deadline passed", what);
}

static void log_slow(const char *what, const char *coll, size_t nq, size_t k, uint32_t nprobe,
                     double ms)
{
    if (!g_slow_ms || ms < g_slow_ms) return;
    char q[24], kk[24], np[24], t[32];
    snprintf(q, sizeof q, "%zu", nq);
    snprintf(kk, sizeof kk, "%zu", k);
    if (nprobe) snprintf(np, sizeof np, "%u", nprobe);
    else snprintf(np, sizeof np, "auto");
    snprintf(t, sizeof t, "%.1f", ms);
    const char *kv[] = {"collection", coll, "queries", q, "k", kk, "nprobe", np, "ms", t, NULL};
    qv_log_kv(QV_LOG_WARN, kv, "slow %s: %.1f ms (over --slow-ms %u)", what, ms, g_slow_ms);
}

/* ---------------------------------------------------------- translation */
static void conv_value(const Quiver__V1__Value *v, qv_value *o)
{
    memset(o, 0, sizeof *o);
    if (!v) return;
    switch (v->kind_case) {
    case QUIVER__V1__VALUE__KIND_STRING_VALUE:
        o->type = QV_ATTR_STRING;
        o->s = v->string_value;
        o->len = strlen(v->string_value);
        break;
    case QUIVER__V1__VALUE__KIND_INT_VALUE: o->type = QV_ATTR_INT, o->i = v->int_value; break;
    case QUIVER__V1__VALUE__KIND_DOUBLE_VALUE: o->type = QV_ATTR_DOUBLE, o->d = v->double_value; break;
    case QUIVER__V1__VALUE__KIND_BOOL_VALUE: o->type = QV_ATTR_BOOL, o->b = v->bool_value; break;
    case QUIVER__V1__VALUE__KIND_STRING_LIST: o->type = QV_ATTR_STRING_LIST; break;
    default: break;
    }
}

static int conv_filter(arena *a, const Quiver__V1__Filter *pf, qv_filter *f, int depth);

static int conv_conds(arena *a, Quiver__V1__Condition **pc, size_t n, const qv_cond **out,
                      size_t *nout, int depth)
{
    qv_cond *cs = arena_alloc(a, (n ? n : 1) * sizeof *cs);
    if (!cs) return -1;
    for (size_t i = 0; i < n; i++) {
        const Quiver__V1__Condition *c = pc[i];
        qv_cond *o = &cs[i];
        switch (c->kind_case) {
        case QUIVER__V1__CONDITION__KIND_FIELD: {
            const Quiver__V1__FieldCondition *fc = c->field;
            o->kind = QV_COND_FIELD;
            o->key = fc->key;
            o->key_len = strlen(fc->key);
            switch (fc->test_case) {
            case QUIVER__V1__FIELD_CONDITION__TEST_EQUALS: {
                qv_value *v = arena_alloc(a, sizeof *v);
                if (!v) return -1;
                conv_value(fc->equals, v);
                o->test = QV_TEST_EQUALS;
                o->values = v;
                o->n_values = 1;
                break;
            }
            case QUIVER__V1__FIELD_CONDITION__TEST_ANY_OF: {
                size_t nv = fc->any_of ? fc->any_of->n_values : 0;
                qv_value *v = arena_alloc(a, (nv ? nv : 1) * sizeof *v);
                if (!v) return -1;
                for (size_t j = 0; j < nv; j++) conv_value(fc->any_of->values[j], &v[j]);
                o->test = QV_TEST_ANY_OF;
                o->values = v;
                o->n_values = nv;
                break;
            }
            case QUIVER__V1__FIELD_CONDITION__TEST_RANGE:
                o->test = QV_TEST_RANGE;
                if (fc->range && fc->range->lower) {
                    o->has_lo = 1;
                    o->lo = fc->range->lower->value;
                    o->lo_incl = fc->range->lower->inclusive;
                }
                if (fc->range && fc->range->upper) {
                    o->has_hi = 1;
                    o->hi = fc->range->upper->value;
                    o->hi_incl = fc->range->upper->inclusive;
                }
                break;
            case QUIVER__V1__FIELD_CONDITION__TEST_EXISTS:
                o->test = QV_TEST_EXISTS;
                o->exists = fc->exists;
                break;
            default: o->test = QV_TEST_NONE; break;
            }
            break;
        }
        case QUIVER__V1__CONDITION__KIND_HAS_ID:
            o->kind = QV_COND_IDS;
            o->ids = c->has_id ? c->has_id->ids : NULL;
            o->n_ids = c->has_id ? c->has_id->n_ids : 0;
            break;
        case QUIVER__V1__CONDITION__KIND_FILTER: {
            qv_filter *sub = arena_alloc(a, sizeof *sub);
            if (!sub) return -1;
            o->kind = QV_COND_FILTER;
            o->filter = sub;
            if (c->filter && conv_filter(a, c->filter, sub, depth + 1)) return -1;
            break;
        }
        default: o->kind = QV_COND_NONE; break;
        }
    }
    *out = cs;
    *nout = n;
    return 0;
}

/* Translated down to one level past the deepest allowed, which the engine
 * refuses (so a hostile nesting costs nothing more). */
static int conv_filter(arena *a, const Quiver__V1__Filter *pf, qv_filter *f, int depth)
{
    memset(f, 0, sizeof *f);
    if (depth > QV_FILTER_MAX_DEPTH) return 0;
    if (conv_conds(a, pf->must, pf->n_must, &f->must, &f->n_must, depth) ||
        conv_conds(a, pf->should, pf->n_should, &f->should, &f->n_should, depth) ||
        conv_conds(a, pf->must_not, pf->n_must_not, &f->must_not, &f->n_must_not, depth))
        return -1;
    return 0;
}

/* The options shared by Search and Recommend. Returns 0, or -1 with the
 * status and message set. */
static int conv_opts(arena *a, qv_query_opts *o, const Quiver__V1__Filter *filter,
                     const uint64_t *exclude, size_t n_exclude, const Quiver__V1__Threshold *thr,
                     const char *group_by, uint32_t group_size, grpc_status_code *code, char *err,
                     size_t errlen)
{
    if (filter) {
        qv_filter *f = arena_alloc(a, sizeof *f);
        size_t len = protobuf_c_message_get_packed_size(&filter->base);
        uint8_t *key = arena_alloc(a, len ? len : 1);
        if (!f || !key || conv_filter(a, filter, f, 1)) {
            *code = GRPC_STATUS_RESOURCE_EXHAUSTED;
            snprintf(err, errlen, "out of memory for the filter");
            return -1;
        }
        protobuf_c_message_pack(&filter->base, key);
        o->filter = f;
        o->filter_key = key;
        o->filter_key_len = len;
    }
    if (n_exclude > QV_MAX_EXCLUDE) {
        *code = GRPC_STATUS_INVALID_ARGUMENT;
        snprintf(err, errlen, "exclude_ids has %zu ids, over the limit of %d per request",
                 n_exclude, QV_MAX_EXCLUDE);
        return -1;
    }
    o->exclude = exclude;
    o->n_exclude = n_exclude;
    if (thr) {
        o->has_threshold = 1;
        o->threshold = thr->value;
    }
    if (group_by && *group_by) {
        o->group_by = group_by;
        o->group_by_len = strlen(group_by);
        o->group_size = group_size;
    }
    return 0;
}

/* k (0 = 10) within the limits. Returns 0 or -1 with the message set. */
static int check_k(size_t *k, uint32_t req_k, float min_recall, char *err, size_t errlen)
{
    *k = req_k ? req_k : 10;
    if (*k > g_max_k) {
        snprintf(err, errlen, "k %zu is over the limit %u", *k, g_max_k);
        return -1;
    }
    if (!(min_recall >= 0 && min_recall <= 1)) {
        snprintf(err, errlen, "min_recall %g is out of range 0..1", (double)min_recall);
        return -1;
    }
    return 0;
}

/* -------------------------------------------------------------- replies */
typedef struct reply {
    wire_hit *hits;
    size_t *off, nlists;
    int single; /* one Hits message, not a SearchResponse */
} reply;

static void encode_reply(void *ctx, uint8_t *buf)
{
    reply *e = ctx;
    if (e->single) wire_hits(buf, e->hits, e->off[1]);
    else wire_search_response(buf, e->hits, e->off, e->nlists);
}

/* Reply with the hits of nlists lists (ids, scores, off), each hit's
 * attributes read in one snapshot taken now (hits are as the index saw them;
 * an item deleted since comes without attributes): list i's from collection
 * colls[i] when want[i] (colls, want NULL: coll_id and with_attrs for all). */
static void finish_hits_of(rpc *r, const uint32_t *colls, const uint8_t *want, uint32_t coll_id,
                           const qv_hit *hits, const size_t *off, size_t nlists, int with_attrs,
                           int single)
{
    qv_store *st = qv_db_store(g_db);
    MDB_txn *txn = NULL;
    size_t n = off[nlists];
    int rc;
    reply e = {malloc((n ? n : 1) * sizeof(wire_hit)), malloc((nlists + 1) * sizeof(size_t)),
               nlists, single};
    if (!e.hits || !e.off) {
        rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory for %zu results", n);
        goto out;
    }
    if (with_attrs && (rc = qv_store_read_begin(st, &txn))) {
        rpc_fail(r, srv_status_of(rc), "cannot start a read: %s", qv_strerror(rc));
        goto out;
    }
    memcpy(e.off, off, (nlists + 1) * sizeof *off);
    for (size_t l = 0; l < nlists; l++) {
        uint32_t cid = colls ? colls[l] : coll_id;
        int w = want ? want[l] : with_attrs;
        for (size_t i = off[l]; i < off[l + 1]; i++) {
            wire_hit *h = &e.hits[i];
            h->id = hits[i].id;
            h->score = hits[i].score;
            h->attrs = NULL;
            h->attrs_len = 0;
            if (w) qv_store_attrs_get(st, txn, cid, hits[i].id, &h->attrs, &h->attrs_len);
        }
    }
    size_t len = single ? wire_hits_size(e.hits, n) : wire_search_response_size(e.hits, e.off, nlists);
    if (len > g_max_reply) {
        rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED,
                 "the reply would take %zu bytes (%zu hits%s), over the reply limit of %zu "
                 "(--max-reply): ask for a smaller k, fewer queries per call%s",
                 len, n, with_attrs ? " with their attributes" : "", g_max_reply,
                 with_attrs ? " or without_attributes" : "");
        goto out;
    }
    /* encoded straight from the LMDB records, before the txn ends */
    rpc_finish_encoded(r, len, encode_reply, &e);
out:
    qv_store_abort(txn);
    free(e.hits);
    free(e.off);
}

static void finish_hits(rpc *r, uint32_t coll_id, const qv_hit *hits, const size_t *off,
                        size_t nlists, int with_attrs, int single)
{
    finish_hits_of(r, NULL, NULL, coll_id, hits, off, nlists, with_attrs, single);
}

static void fail_rc(rpc *r, int rc, const char *err)
{
    rpc_fail(r, srv_status_of(rc), "%s", err);
}

/* --------------------------------------------------------------- Search */
/* The queries as vectors (q: nq*dim) and their item ids (qids, -1 for a
 * vector). Returns 0 or -1 with the call failed. */
static int resolve_queries(rpc *r, const Quiver__V1__SearchRequest *req, const qv_coll_config *cfg,
                           float *q, int64_t *qids, int *any_id)
{
    qv_store *st = qv_db_store(g_db);
    MDB_txn *txn = NULL;
    char err[512];
    int rc, ret = -1;
    uint32_t dim = cfg->dim;
    *any_id = 0;
    for (size_t i = 0; i < req->n_queries; i++) {
        const Quiver__V1__Query *qu = req->queries[i];
        qids[i] = -1;
        if (qu->kind_case == QUIVER__V1__QUERY__KIND_VECTOR) {
            char field[48];
            snprintf(field, sizeof field, "queries[%zu].vector", i);
            const Quiver__V1__Vector *v = qu->vector;
            if (srv_check_vector(v ? v->values : NULL, v ? v->n_values : 0, dim, cfg->name, field,
                             err, sizeof err)) {
                rpc_fail(r, GRPC_STATUS_INVALID_ARGUMENT, "%s", err);
                goto out;
            }
            memcpy(q + i * dim, v->values, dim * sizeof *q);
            if (cfg->metric == QV_METRIC_COSINE) qv_vec_normalize(q + i * dim, dim);
        } else if (qu->kind_case == QUIVER__V1__QUERY__KIND_ID) {
            qv_item_view v;
            if (!txn && (rc = qv_store_read_begin(st, &txn))) {
                rpc_fail(r, srv_status_of(rc), "cannot start a read: %s", qv_strerror(rc));
                goto out;
            }
            *any_id = 1;
            rc = qu->id > (uint64_t)QV_MAX_ID ? QV_NOTFOUND
                                              : qv_store_item_get(st, txn, cfg->id, qu->id, &v);
            if (rc == QV_NOTFOUND) {
                rpc_fail(r, GRPC_STATUS_NOT_FOUND, "queries[%zu].id %" PRIu64
                         " does not exist in collection \"%s\"", i, qu->id, cfg->name);
                goto out;
            }
            if (rc || v.dim != dim) {
                rpc_fail(r, GRPC_STATUS_INTERNAL, "queries[%zu].id %" PRIu64 " cannot be read: %s",
                         i, qu->id, qv_strerror(rc ? rc : QV_CORRUPT));
                goto out;
            }
            qv_item_vector(&v, q + i * dim);
            qids[i] = (int64_t)qu->id;
        } else {
            rpc_fail(r, GRPC_STATUS_INVALID_ARGUMENT, "queries[%zu] has neither vector nor id", i);
            goto out;
        }
    }
    ret = 0;
out:
    qv_store_abort(txn);
    return ret;
}

/* A plain search (no composition): FAISS's batched search. */
static int plain_search(qv_coll *c, size_t nq, const float *q, const int64_t *qids, int any_id,
                        size_t k, const Quiver__V1__SearchRequest *req, qv_query_result *res)
{
    float *scores = malloc(nq * k * sizeof *scores);
    int64_t *labels = malloc(nq * k * sizeof *labels);
    res->nlists = nq;
    res->off = malloc((nq + 1) * sizeof *res->off);
    res->hits = malloc((nq * k > 0 ? nq * k : 1) * sizeof *res->hits);
    int rc = scores && labels && res->off && res->hits ? 0 : QV_NOMEM;
    if (!rc)
        rc = qv_coll_search(c, nq, q, any_id ? qids : NULL, k, req->nprobe, req->min_recall,
                            scores, labels);
    if (!rc) {
        size_t n = 0;
        for (size_t i = 0; i < nq; i++) {
            res->off[i] = n;
            for (size_t j = 0; j < k && labels[i * k + j] >= 0; j++) {
                res->hits[n].id = (uint64_t)labels[i * k + j];
                res->hits[n++].score = scores[i * k + j];
            }
        }
        res->off[nq] = n;
    }
    free(scores);
    free(labels);
    return rc;
}

static int composed(const Quiver__V1__SearchRequest *req)
{
    return req->filter || req->n_exclude_ids || req->score_threshold || req->group_by[0] ||
           req->mmr || req->fusion != QUIVER__V1__FUSION__FUSION_NONE;
}

void search_search(rpc *r)
{
    const Quiver__V1__SearchRequest *req = (const Quiver__V1__SearchRequest *)r->req;
    double t0 = now_ms();
    qv_coll *c = NULL;
    float *q = NULL;
    int64_t *qids = NULL;
    arena *a = arena_new();
    qv_query_result res = {0};
    char err[1024] = "";
    grpc_status_code code = GRPC_STATUS_INVALID_ARGUMENT;
    size_t nq = req->n_queries, k;
    if (!(c = srv_find_coll(req->collection, &code, err, sizeof err))) goto fail;
    const qv_coll_config *cfg = qv_coll_config_of(c);
    code = GRPC_STATUS_INVALID_ARGUMENT;
    if (check_k(&k, req->k, req->min_recall, err, sizeof err)) goto fail;
    if (nq == 0) {
        snprintf(err, sizeof err, "queries is empty: nothing to search");
        goto fail;
    }
    code = GRPC_STATUS_RESOURCE_EXHAUSTED;
    if (nq > MAX_QUERIES) {
        snprintf(err, sizeof err, "queries has %zu entries, over the limit of %d per call", nq,
                 MAX_QUERIES);
        goto fail;
    }
    /* The work this call asks for, bounded before anything is allocated: the
     * smallest possible reply, and the search's scratch (refine's candidates
     * included), each against its budget. */
    size_t nlists = req->fusion ? 1 : nq;
    if (nlists * k * HIT_MIN_BYTES > g_max_reply) {
        snprintf(err, sizeof err,
                 "a reply of %zu lists x k %zu takes at least %zu bytes, over the reply limit "
                 "of %zu (--max-reply): ask for a smaller k or fewer queries per call",
                 nlists, k, nlists * k * HIT_MIN_BYTES, g_max_reply);
        goto fail;
    }
    size_t depth = k;
    if (req->mmr) depth = req->mmr->candidates ? req->mmr->candidates : 10 * k;
    else if (req->fusion) depth = 10 * k;
    if (req->mmr && req->mmr->candidates > MAX_MMR_CANDIDATES) {
        code = GRPC_STATUS_INVALID_ARGUMENT;
        snprintf(err, sizeof err, "mmr.candidates %u is over the limit of %d", req->mmr->candidates,
                 MAX_MMR_CANDIDATES);
        goto fail;
    }
    /* MMR compares each pick with every candidate */
    if (req->mmr && (double)k * (double)depth * cfg->dim > 4e9) {
        snprintf(err, sizeof err,
                 "mmr over %zu candidates for k %zu in dim %u is too much work for one call: ask "
                 "for fewer mmr.candidates or a smaller k", depth, k, cfg->dim);
        goto fail;
    }
    size_t scratch = qv_coll_search_scratch(c, nq, depth);
    if (scratch > SEARCH_SCRATCH_MAX || nq * depth > MAX_CANDIDATES) {
        snprintf(err, sizeof err,
                 "%zu queries ranking %zu candidates each need %zu bytes of search memory, over "
                 "the limit of %zu: ask for a smaller k, fewer mmr candidates or fewer queries",
                 nq, depth, scratch, SEARCH_SCRATCH_MAX);
        goto fail;
    }
    if (req->fusion != QUIVER__V1__FUSION__FUSION_NONE && req->fusion != QUIVER__V1__FUSION__RRF &&
        req->fusion != QUIVER__V1__FUSION__MAX_SCORE) {
        code = GRPC_STATUS_INVALID_ARGUMENT;
        snprintf(err, sizeof err, "fusion %d is unknown", (int)req->fusion);
        goto fail;
    }
    q = malloc(nq * cfg->dim * sizeof *q);
    qids = malloc(nq * sizeof *qids);
    if (!q || !qids || !a) {
        snprintf(err, sizeof err, "out of memory for %zu queries", nq);
        goto fail;
    }
    int any_id;
    if (resolve_queries(r, req, cfg, q, qids, &any_id)) goto out;
    int rc;
    /* a batch may spread over the cores that concurrent searches leave idle
     * (more threads than cores would only preempt each other) */
    int active = atomic_fetch_add(&g_active_searches, 1) + 1;
    int saved = omp_get_max_threads(), want = 1;
    if (nq >= BATCH_OMP_MIN) {
        want = (int)g_ncpu / active;
        if (want < 1) want = 1;
    }
    omp_set_num_threads(want);
    qv_index_cancel_hook(call_gone, r);
    if (!composed(req)) {
        rc = plain_search(c, nq, q, qids, any_id, k, req, &res);
        if (rc == QV_NOTFOUND) snprintf(err, sizeof err, "collection \"%s\" does not exist", cfg->name);
        else if (rc) snprintf(err, sizeof err, "search in \"%s\" failed: %s", cfg->name, qv_strerror(rc));
    } else {
        qv_query_opts o = {.k = k, .nprobe = req->nprobe, .min_recall = req->min_recall,
                           .stop = call_gone, .stop_ctx = r};
        if (req->mmr) {
            o.has_mmr = 1;
            o.mmr_diversity = req->mmr->diversity;
            o.mmr_candidates = req->mmr->candidates;
        }
        if (conv_opts(a, &o, req->filter, req->exclude_ids, req->n_exclude_ids,
                      req->score_threshold, req->group_by, req->group_size, &code, err, sizeof err))
            rc = -1;
        else
            rc = qv_query_search(c, nq, q, qids, &o, (qv_fusion)req->fusion, req->rrf_k, &res,
                                 err, sizeof err);
    }
    qv_index_cancel_hook(NULL, NULL);
    omp_set_num_threads(saved);
    atomic_fetch_sub(&g_active_searches, 1);
    log_slow("search", cfg->name, nq, k, req->nprobe, now_ms() - t0);
    if (rc == -1) goto fail;
    if (rc == QV_CANCELLED) {
        fail_stopped(r, "search");
        goto out;
    }
    if (rc) {
        fail_rc(r, rc, err);
        goto out;
    }
    finish_hits(r, cfg->id, res.hits, res.off, res.nlists, !req->without_attributes, 0);
    goto out;
fail:
    rpc_fail(r, code, "%s", err);
out:
    qv_query_result_free(&res);
    free(q);
    free(qids);
    arena_free(a);
    qv_coll_release(c);
}

/* ------------------------------------------------------------ Recommend */
static int conv_examples(arena *a, Quiver__V1__Example **pe, size_t n, const char *side,
                         const qv_coll_config *cfg, qv_example **out, char *err, size_t errlen)
{
    qv_example *e = arena_alloc(a, (n ? n : 1) * sizeof *e);
    if (!e) {
        snprintf(err, errlen, "out of memory for %zu examples", n);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        e[i].weight = pe[i]->weight;
        if (pe[i]->kind_case == QUIVER__V1__EXAMPLE__KIND_ID) {
            if (pe[i]->id > (uint64_t)QV_MAX_ID) {
                snprintf(err, errlen, "%s[%zu].id %" PRIu64 " is over the largest id 2^63-1", side,
                         i, pe[i]->id);
                return -1;
            }
            e[i].id = (int64_t)pe[i]->id;
        } else if (pe[i]->kind_case == QUIVER__V1__EXAMPLE__KIND_VECTOR) {
            char field[48];
            snprintf(field, sizeof field, "%s[%zu].vector", side, i);
            const Quiver__V1__Vector *v = pe[i]->vector;
            if (srv_check_vector(v ? v->values : NULL, v ? v->n_values : 0, cfg->dim, cfg->name, field,
                             err, errlen))
                return -1;
            e[i].id = -1;
            e[i].vec = v->values;
        } else {
            snprintf(err, errlen, "%s[%zu] has neither id nor vector", side, i);
            return -1;
        }
    }
    *out = e;
    return 0;
}

/* One RecommendRequest into res (one list). Returns 0 or -1 with code and
 * err set; *coll_id names the collection for the attribute fetch. */
static int recommend_one(rpc *r, const Quiver__V1__RecommendRequest *req, arena *a,
                         qv_query_result *res, uint32_t *coll_id, grpc_status_code *code, char *err,
                         size_t errlen)
{
    qv_coll *c = srv_find_coll(req->collection, code, err, errlen);
    if (!c) return -1;
    const qv_coll_config *cfg = qv_coll_config_of(c);
    *coll_id = cfg->id;
    int ret = -1;
    size_t k;
    qv_example *pos = NULL, *neg = NULL;
    *code = GRPC_STATUS_INVALID_ARGUMENT;
    if (check_k(&k, req->k, req->min_recall, err, errlen)) goto out;
    if (req->n_positive + req->n_negative > MAX_EXAMPLES) {
        snprintf(err, errlen, "%zu examples, over the limit of %d per request",
                 req->n_positive + req->n_negative, MAX_EXAMPLES);
        goto out;
    }
    if (conv_examples(a, req->positive, req->n_positive, "positive", cfg, &pos, err, errlen) ||
        conv_examples(a, req->negative, req->n_negative, "negative", cfg, &neg, err, errlen))
        goto out;
    qv_query_opts o = {.k = k, .nprobe = req->nprobe, .min_recall = req->min_recall,
                       .stop = call_gone, .stop_ctx = r};
    if (conv_opts(a, &o, req->filter, req->exclude_ids, req->n_exclude_ids, req->score_threshold,
                  req->group_by, req->group_size, code, err, errlen))
        goto out;
    double t0 = now_ms();
    qv_index_cancel_hook(call_gone, r);
    int rc = qv_query_recommend(c, pos, req->n_positive, neg, req->n_negative,
                                (qv_rec_strategy)req->strategy, &o, res, err, errlen);
    qv_index_cancel_hook(NULL, NULL);
    log_slow("recommend", cfg->name, req->n_positive + req->n_negative, k, req->nprobe,
             now_ms() - t0);
    if (rc == QV_CANCELLED) {
        *code = atomic_load(&r->closed) ? GRPC_STATUS_CANCELLED : GRPC_STATUS_DEADLINE_EXCEEDED;
        snprintf(err, errlen, "recommend stopped: %s", *code == GRPC_STATUS_CANCELLED
                                                           ? "the call was cancelled"
                                                           : "the call's deadline passed");
        goto out;
    }
    if (rc) {
        *code = srv_status_of(rc);
        goto out;
    }
    ret = 0;
out:
    qv_coll_release(c);
    return ret;
}

void search_recommend(rpc *r)
{
    const Quiver__V1__RecommendRequest *req = (const Quiver__V1__RecommendRequest *)r->req;
    arena *a = arena_new();
    qv_query_result res = {0};
    char err[1024] = "";
    grpc_status_code code = GRPC_STATUS_RESOURCE_EXHAUSTED;
    uint32_t coll_id = 0;
    if (!a) snprintf(err, sizeof err, "out of memory");
    if (!a || recommend_one(r, req, a, &res, &coll_id, &code, err, sizeof err))
        rpc_fail(r, code, "%s", err);
    else
        finish_hits(r, coll_id, res.hits, res.off, 1, !req->without_attributes, 1);
    qv_query_result_free(&res);
    arena_free(a);
}

void search_recommend_batch(rpc *r)
{
    const Quiver__V1__RecommendBatchRequest *req = (const Quiver__V1__RecommendBatchRequest *)r->req;
    size_t n = req->n_requests;
    arena *a = arena_new();
    qv_query_result *rs = calloc(n ? n : 1, sizeof *rs);
    char err[1024] = "", msg[1100];
    grpc_status_code code = GRPC_STATUS_RESOURCE_EXHAUSTED;
    uint32_t coll_id = 0, *colls = malloc((n ? n : 1) * sizeof *colls);
    uint8_t *want = malloc(n ? n : 1);
    size_t total = 0, i;
    if (n > MAX_RECOMMEND_BATCH) {
        rpc_fail(r, code, "requests has %zu entries, over the limit of %d per call", n,
                 MAX_RECOMMEND_BATCH);
        goto out;
    }
    if (!a || !rs || !colls || !want) {
        rpc_fail(r, code, "out of memory for %zu requests", n);
        goto out;
    }
    for (i = 0; i < n; i++) {
        if (recommend_one(r, req->requests[i], a, &rs[i], &coll_id, &code, err, sizeof err)) {
            snprintf(msg, sizeof msg, "requests[%zu]: %s", i, err);
            rpc_fail(r, code, "%s", msg);
            goto out;
        }
        colls[i] = coll_id;
        want[i] = !req->requests[i]->without_attributes;
        total += rs[i].off[1];
    }
    {
        /* one list per request; attributes per request's collection */
        qv_hit *hits = malloc((total ? total : 1) * sizeof *hits);
        size_t *off = malloc((n + 1) * sizeof *off);
        if (!hits || !off) {
            free(hits), free(off);
            rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory for %zu results", total);
            goto out;
        }
        size_t t = 0;
        for (i = 0; i < n; i++) {
            off[i] = t;
            memcpy(hits + t, rs[i].hits, rs[i].off[1] * sizeof *hits);
            t += rs[i].off[1];
        }
        off[n] = t;
        finish_hits_of(r, colls, want, 0, hits, off, n, 0, 0);
        free(hits);
        free(off);
    }
out:
    for (i = 0; rs && i < n; i++) qv_query_result_free(&rs[i]);
    free(rs);
    free(colls);
    free(want);
    arena_free(a);
}
