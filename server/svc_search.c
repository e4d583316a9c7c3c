/*
 * quiver.v1.Search: nearest neighbours of vectors or stored items ("more like
 * this", the item itself left out), composed queries (filter, exclusions,
 * threshold, groups, MMR, fusion) and recommendations. Here: the limits of
 * one call, translation of protobuf into the engine's read request
 * (quiver/query.h), one qv_query_run, and the reply encoded straight from
 * the hits (wire.h). The engine plans, searches and reads.
 */
#include <inttypes.h>
#include <math.h>
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

static int conv_filter(qv_arena *a, const Quiver__V1__Filter *pf, qv_filter *f, int depth);

static int conv_conds(qv_arena *a, Quiver__V1__Condition **pc, size_t n, const qv_cond **out,
                      size_t *nout, int depth)
{
    qv_cond *cs = qv_arena_alloc(a, (n ? n : 1) * sizeof *cs);
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
                qv_value *v = qv_arena_alloc(a, sizeof *v);
                if (!v) return -1;
                conv_value(fc->equals, v);
                o->test = QV_TEST_EQUALS;
                o->values = v;
                o->n_values = 1;
                break;
            }
            case QUIVER__V1__FIELD_CONDITION__TEST_ANY_OF: {
                size_t nv = fc->any_of ? fc->any_of->n_values : 0;
                qv_value *v = qv_arena_alloc(a, (nv ? nv : 1) * sizeof *v);
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
            qv_filter *sub = qv_arena_alloc(a, sizeof *sub);
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
static int conv_filter(qv_arena *a, const Quiver__V1__Filter *pf, qv_filter *f, int depth)
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
static int conv_opts(qv_arena *a, qv_query_opts *o, const Quiver__V1__Filter *filter,
                     const uint64_t *exclude, size_t n_exclude, const Quiver__V1__Threshold *thr,
                     const char *group_by, uint32_t group_size, grpc_status_code *code, char *err,
                     size_t errlen)
{
    if (filter) {
        qv_filter *f = qv_arena_alloc(a, sizeof *f);
        size_t len = protobuf_c_message_get_packed_size(&filter->base);
        uint8_t *key = qv_arena_alloc(a, len ? len : 1);
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
static int check_k(size_t *k, uint32_t req_k, char *err, size_t errlen)
{
    *k = req_k ? req_k : 10;
    if (*k > g_max_k) {
        snprintf(err, errlen, "k %zu is over the limit %u", *k, g_max_k);
        return -1;
    }
    return 0;
}

/* -------------------------------------------------------------- replies */
typedef struct reply {
    wire_hit *hits;
    const size_t *off;
    size_t nlists;
    int single; /* one Hits message, not a SearchResponse */
} reply;

static void encode_reply(void *ctx, uint8_t *buf)
{
    reply *e = ctx;
    if (e->single) wire_hits(buf, e->hits, e->off[1]);
    else wire_search_response(buf, e->hits, e->off, e->nlists);
}

/* Reply with the engine's hits, encoded straight from the attribute and
 * vector views the result holds. */
static void finish_hits(rpc *r, const qv_query_result *res, int single)
{
    size_t n = res->off[res->nlists], attrs = 0;
    reply e = {malloc((n ? n : 1) * sizeof(wire_hit)), res->off, res->nlists, single};
    if (!e.hits) {
        rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory for %zu results", n);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const qv_hit *h = &res->hits[i];
        e.hits[i] = (wire_hit){.id = h->id, .score = h->score, .attrs = h->attrs,
                               .attrs_len = h->attrs_len, .vector = h->vector, .dim = h->dim};
        attrs |= h->attrs_len | h->dim;
    }
    size_t len = single ? wire_hits_size(e.hits, n) : wire_search_response_size(e.hits, e.off, e.nlists);
    if (len > g_max_reply)
        rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED,
                 "the reply would take %zu bytes (%zu hits%s), over the reply limit of %zu "
                 "(--max-reply): ask for a smaller k, fewer queries per call%s",
                 len, n, attrs ? " with their attributes or vectors" : "", g_max_reply,
                 attrs ? " or without_attributes / without with_vectors" : "");
    else
        rpc_finish_encoded(r, len, encode_reply, &e);
    free(e.hits);
}

/* The status of a failed read: stopped (deadline, cancel) or the engine's
 * code; prefix names the request of a batch ("" for one). */
static void fail_read(rpc *r, int rc, const char *what, const char *prefix, const char *err)
{
    if (rc == QV_CANCELLED) fail_stopped(r, what);
    else rpc_fail(r, srv_status_of(rc), "%s%s", prefix, err);
}

/* --------------------------------------------------------------- Search */
/* A routed read (cluster mode): its collection checked here as on a single
 * node (name, the key's scope, existence), the rest by the router. Returns
 * 1 when the call was taken care of. */
static int routed(rpc *r, const char *const *colls, size_t n, void (*go)(rpc *r))
{
    int rt = srv_routed(r);
    if (rt <= 0) return rt < 0;
    for (size_t i = 0; i < n; i++) {
        qv_coll *none;
        qv_coll_config cfg;
        grpc_status_code code;
        char err[512];
        if (srv_find_config(colls[i], &none, &cfg, &code, err, sizeof err)) {
            if (n > 1) rpc_fail(r, code, "requests[%zu]: %s", i, err);
            else rpc_fail(r, code, "%s", err);
            return 1;
        }
    }
    go(r);
    return 1;
}

void search_search(rpc *r)
{
    const Quiver__V1__SearchRequest *req = (const Quiver__V1__SearchRequest *)r->req;
    const char *coll = req->collection;
    if (routed(r, &coll, 1, srv_cluster_search)) return;
    double t0 = now_ms();
    qv_coll *c = NULL;
    qv_query *qs = NULL;
    qv_arena *a = qv_arena_new();
    qv_query_result res = {0};
    char err[1024] = "";
    grpc_status_code code = GRPC_STATUS_INVALID_ARGUMENT;
    size_t nq = req->n_queries, k, failed;
    if (!(c = srv_find_coll(req->collection, &code, err, sizeof err))) goto fail;
    const qv_coll_config *cfg = qv_coll_config_of(c);
    if ((code = srv_check_after_token(c, &req->after_token, "after_token", err, sizeof err))) goto fail;
    code = GRPC_STATUS_INVALID_ARGUMENT;
    if (check_k(&k, req->k, err, sizeof err)) goto fail;
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
    size_t scratch = qv_query_scratch(c, nq, depth);
    if (scratch > SEARCH_SCRATCH_MAX || nq * depth > MAX_CANDIDATES) {
        snprintf(err, sizeof err,
                 "%zu queries ranking %zu candidates each need %zu bytes of search memory, over "
                 "the limit of %zu: ask for a smaller k, fewer mmr candidates or fewer queries",
                 nq, depth, scratch, SEARCH_SCRATCH_MAX);
        goto fail;
    }
    if (!a || !(qs = qv_arena_alloc(a, nq * sizeof *qs))) {
        snprintf(err, sizeof err, "out of memory for %zu queries", nq);
        goto fail;
    }
    code = GRPC_STATUS_INVALID_ARGUMENT;
    for (size_t i = 0; i < nq; i++) {
        const Quiver__V1__Query *qu = req->queries[i];
        if (qu->kind_case == QUIVER__V1__QUERY__KIND_VECTOR) {
            const Quiver__V1__Vector *v = qu->vector;
            if (srv_check_vector(v ? v->values : NULL, v ? v->n_values : 0, cfg->dim, cfg->name,
                                 "queries", i, err, sizeof err))
                goto fail;
            qs[i].vec = v->values;
        } else if (qu->kind_case == QUIVER__V1__QUERY__KIND_ID) {
            qs[i].id = qu->id;
        } else {
            snprintf(err, sizeof err, "queries[%zu] has neither vector nor id", i);
            goto fail;
        }
    }
    qv_read rd = {.coll = c, .kind = QV_READ_SEARCH, .queries = qs, .nq = nq,
                  .fusion = (qv_fusion)req->fusion, .rrf_k = req->rrf_k,
                  .opts = {.k = k, .nprobe = req->nprobe, .min_recall = req->min_recall,
                           .stop = call_gone, .stop_ctx = r},
                  .with_attributes = !req->without_attributes, .with_vectors = req->with_vectors};
    if (req->mmr) {
        rd.opts.has_mmr = 1;
        rd.opts.mmr_diversity = req->mmr->diversity;
        rd.opts.mmr_candidates = req->mmr->candidates;
    }
    if (conv_opts(a, &rd.opts, req->filter, req->exclude_ids, req->n_exclude_ids,
                  req->score_threshold, req->group_by, req->group_size, &code, err, sizeof err))
        goto fail;
    int rc = qv_query_run(&rd, 1, &res, &failed, err, sizeof err);
    log_slow("search", cfg->name, nq, k, req->nprobe, now_ms() - t0);
    if (rc) fail_read(r, rc, "search", "", err);
    else finish_hits(r, &res, 0);
    goto out;
fail:
    rpc_fail(r, code, "%s", err);
out:
    qv_query_result_free(&res);
    qv_arena_free(a);
    qv_coll_release(c);
}

/* ------------------------------------------------------------ Recommend */
static int conv_examples(qv_arena *a, Quiver__V1__Example **pe, size_t n, const char *side,
                         const qv_coll_config *cfg, qv_example **out, char *err, size_t errlen)
{
    qv_example *e = qv_arena_alloc(a, (n ? n : 1) * sizeof *e);
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
            const Quiver__V1__Vector *v = pe[i]->vector;
            if (srv_check_vector(v ? v->values : NULL, v ? v->n_values : 0, cfg->dim, cfg->name, side,
                                 i, err, errlen))
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

/* One RecommendRequest into rd (its collection referenced in rd->coll:
 * release it). Returns 0 or -1 with code and err set. */
static int recommend_conv(rpc *r, const Quiver__V1__RecommendRequest *req, qv_arena *a, qv_read *rd,
                          grpc_status_code *code, char *err, size_t errlen)
{
    qv_coll *c = srv_find_coll(req->collection, code, err, errlen);
    if (!c) return -1;
    const qv_coll_config *cfg = qv_coll_config_of(c);
    size_t k;
    qv_example *pos = NULL, *neg = NULL;
    *rd = (qv_read){.coll = c, .kind = QV_READ_RECOMMEND};
    if ((*code = srv_check_after_token(c, &req->after_token, "after_token", err, errlen))) return -1;
    *code = GRPC_STATUS_INVALID_ARGUMENT;
    if (check_k(&k, req->k, err, errlen)) return -1;
    if (req->n_positive + req->n_negative > MAX_EXAMPLES) {
        snprintf(err, errlen, "%zu examples, over the limit of %d per request",
                 req->n_positive + req->n_negative, MAX_EXAMPLES);
        return -1;
    }
    if (conv_examples(a, req->positive, req->n_positive, "positive", cfg, &pos, err, errlen) ||
        conv_examples(a, req->negative, req->n_negative, "negative", cfg, &neg, err, errlen))
        return -1;
    rd->positive = pos;
    rd->npos = req->n_positive;
    rd->negative = neg;
    rd->nneg = req->n_negative;
    rd->strategy = (qv_rec_strategy)req->strategy;
    rd->opts = (qv_query_opts){.k = k, .nprobe = req->nprobe, .min_recall = req->min_recall,
                               .stop = call_gone, .stop_ctx = r};
    rd->with_attributes = !req->without_attributes;
    rd->with_vectors = req->with_vectors;
    return conv_opts(a, &rd->opts, req->filter, req->exclude_ids, req->n_exclude_ids,
                     req->score_threshold, req->group_by, req->group_size, code, err, errlen);
}

void search_recommend(rpc *r)
{
    const Quiver__V1__RecommendRequest *req = (const Quiver__V1__RecommendRequest *)r->req;
    const char *coll = req->collection;
    if (routed(r, &coll, 1, srv_cluster_recommend)) return;
    qv_arena *a = qv_arena_new();
    qv_query_result res = {0};
    qv_read rd = {0};
    char err[1024] = "";
    grpc_status_code code = GRPC_STATUS_RESOURCE_EXHAUSTED;
    size_t failed;
    double t0 = now_ms();
    if (!a) {
        rpc_fail(r, code, "out of memory");
    } else if (recommend_conv(r, req, a, &rd, &code, err, sizeof err)) {
        rpc_fail(r, code, "%s", err);
    } else {
        int rc = qv_query_run(&rd, 1, &res, &failed, err, sizeof err);
        log_slow("recommend", req->collection, req->n_positive + req->n_negative, rd.opts.k,
                 req->nprobe, now_ms() - t0);
        if (rc) fail_read(r, rc, "recommend", "", err);
        else finish_hits(r, &res, 1);
    }
    qv_query_result_free(&res);
    qv_coll_release(rd.coll);
    qv_arena_free(a);
}

void search_recommend_batch(rpc *r)
{
    const Quiver__V1__RecommendBatchRequest *req = (const Quiver__V1__RecommendBatchRequest *)r->req;
    if (g_cluster && req->n_requests <= MAX_RECOMMEND_BATCH) {
        const char **colls = malloc((req->n_requests ? req->n_requests : 1) * sizeof *colls);
        if (!colls) {
            rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
            return;
        }
        for (size_t j = 0; j < req->n_requests; j++) colls[j] = req->requests[j]->collection;
        int done = routed(r, colls, req->n_requests, srv_cluster_recommend_batch);
        free(colls);
        if (done) return;
    }
    size_t n = req->n_requests, i, failed;
    qv_arena *a = qv_arena_new();
    qv_read *rds = calloc(n ? n : 1, sizeof *rds);
    qv_query_result res = {0};
    char err[1024] = "", prefix[48];
    grpc_status_code code = GRPC_STATUS_RESOURCE_EXHAUSTED;
    double t0 = now_ms();
    if (n > MAX_RECOMMEND_BATCH) {
        rpc_fail(r, code, "requests has %zu entries, over the limit of %d per call", n,
                 MAX_RECOMMEND_BATCH);
        goto out;
    }
    if (!a || !rds) {
        rpc_fail(r, code, "out of memory for %zu requests", n);
        goto out;
    }
    for (i = 0; i < n; i++)
        if (recommend_conv(r, req->requests[i], a, &rds[i], &code, err, sizeof err)) {
            rpc_fail(r, code, "requests[%zu]: %s", i, err);
            goto out;
        }
    /* every request in one snapshot: one list each */
    int rc = qv_query_run(rds, n, &res, &failed, err, sizeof err);
    log_slow("recommend batch", n ? req->requests[0]->collection : "", n, 0, 0, now_ms() - t0);
    snprintf(prefix, sizeof prefix, "requests[%zu]: ", failed);
    if (rc) fail_read(r, rc, "recommend", prefix, err);
    else finish_hits(r, &res, 0);
out:
    qv_query_result_free(&res);
    for (i = 0; rds && i < n; i++) qv_coll_release(rds[i].coll);
    free(rds);
    qv_arena_free(a);
}
