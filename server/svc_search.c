/*
 * quiver.v1.Search: nearest neighbours of vectors or stored items ("more like
 * this", the item itself left out), with each hit's attributes. Validation,
 * query resolution and reply building; the search itself is qv_coll_search.
 */
#include <inttypes.h>
#include <math.h>
#include <omp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "quiver/error.h"
#include "services.h"
#include "wire.h"

#define MAX_QUERIES 10000
#define BATCH_OMP_MIN 32 /* batches this large may use every core */
/* Bytes of a hit on the wire at the least: the Hit's tag and length, id and
 * score; the budget check before the search uses it. */
#define HIT_MIN_BYTES 9
/* A search's own scratch (candidate scores and ids, with refine's) */
#define SEARCH_SCRATCH_MAX ((size_t)1 << 30)

unsigned g_max_k = 1000;
size_t g_max_reply = (size_t)64 << 20;
static atomic_int g_active_searches;
static long g_ncpu = 1;

void search_init(void)
{
    g_ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (g_ncpu < 1) g_ncpu = 1;
}

typedef struct encode_ctx {
    wire_hit *hits;
    size_t *off, nq;
} encode_ctx;

static void encode_reply(void *ctx, uint8_t *buf)
{
    encode_ctx *e = ctx;
    wire_search_response(buf, e->hits, e->off, e->nq);
}

void search_search(rpc *r)
{
    Quiver__V1__SearchRequest *req =
        (Quiver__V1__SearchRequest *)rpc_unpack(r->payload, &quiver__v1__search_request__descriptor);
    if (!req) {
        rpc_fail(r, GRPC_STATUS_INVALID_ARGUMENT, "cannot decode SearchRequest: %s", rpc_unpack_error());
        return;
    }
    qv_coll *c = NULL;
    float *q = NULL, *scores = NULL;
    int64_t *exclude = NULL, *labels = NULL;
    MDB_txn *txn = NULL;
    wire_hit *wh = NULL;
    size_t *off = NULL;
    qv_store *st = qv_db_store(g_db);
    char err[512];
    int rc;
    grpc_status_code code;
    if (!(c = find_coll(req->collection, &code, err, sizeof err))) {
        rpc_fail(r, code, "%s", err);
        goto out;
    }
    const qv_coll_config *cfg = qv_coll_config_of(c);
    size_t nq = req->n_queries, k = req->k ? req->k : 10, dim = cfg->dim;
    if (nq == 0) {
        rpc_fail(r, GRPC_STATUS_INVALID_ARGUMENT, "queries is empty: nothing to search");
        goto out;
    }
    if (nq > MAX_QUERIES) {
        rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "queries has %zu entries, over the limit of %d per call",
                 nq, MAX_QUERIES);
        goto out;
    }
    if (k > g_max_k) {
        rpc_fail(r, GRPC_STATUS_INVALID_ARGUMENT, "k %zu is over the limit %u", k, g_max_k);
        goto out;
    }
    if (!(req->min_recall >= 0 && req->min_recall <= 1)) {
        rpc_fail(r, GRPC_STATUS_INVALID_ARGUMENT, "min_recall %g is out of range 0..1",
                 (double)req->min_recall);
        goto out;
    }
    /* The work this call asks for, bounded before anything is allocated: the
     * smallest possible reply, and the search's scratch (refine's candidates
     * included), each against its budget. */
    if (nq * k * HIT_MIN_BYTES > g_max_reply) {
        rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED,
                 "a reply of %zu queries x k %zu takes at least %zu bytes, over the reply limit "
                 "of %zu (--max-reply): ask for a smaller k or fewer queries per call",
                 nq, k, nq * k * HIT_MIN_BYTES, g_max_reply);
        goto out;
    }
    size_t scratch = qv_coll_search_scratch(c, nq, k);
    if (scratch > SEARCH_SCRATCH_MAX) {
        rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED,
                 "%zu queries with k %zu need %zu bytes of search memory (refine's candidates "
                 "included), over the limit of %zu: ask for a smaller k or fewer queries per call",
                 nq, k, scratch, SEARCH_SCRATCH_MAX);
        goto out;
    }
    q = malloc(nq * dim * sizeof *q);
    exclude = malloc(nq * sizeof *exclude);
    scores = malloc(nq * k * sizeof *scores);
    labels = malloc(nq * k * sizeof *labels);
    if (!q || !exclude || !scores || !labels) {
        rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory for %zu queries", nq);
        goto out;
    }
    int any_id = 0;
    for (size_t i = 0; i < nq; i++) {
        const Quiver__V1__Query *qu = req->queries[i];
        exclude[i] = -1;
        if (qu->kind_case == QUIVER__V1__QUERY__KIND_VECTOR) {
            char field[48];
            snprintf(field, sizeof field, "queries[%zu].vector", i);
            const Quiver__V1__Vector *v = qu->vector;
            if (check_vector(v ? v->values : NULL, v ? v->n_values : 0, cfg->dim, cfg->name, field,
                             err, sizeof err)) {
                rpc_fail(r, GRPC_STATUS_INVALID_ARGUMENT, "%s", err);
                goto out;
            }
            memcpy(q + i * dim, v->values, dim * sizeof *q);
            if (cfg->metric == QV_METRIC_COSINE) qv_vec_normalize(q + i * dim, cfg->dim);
        } else if (qu->kind_case == QUIVER__V1__QUERY__KIND_ID) {
            qv_item_view v;
            if (!any_id && (rc = qv_store_read_begin(st, &txn))) {
                rpc_fail(r, status_of(rc), "cannot start a read: %s", qv_strerror(rc));
                goto out;
            }
            any_id = 1;
            rc = qu->id > (uint64_t)QV_MAX_ID ? QV_NOTFOUND
                                              : qv_store_item_get(st, txn, cfg->id, qu->id, &v);
            if (rc == QV_NOTFOUND) {
                rpc_fail(r, GRPC_STATUS_NOT_FOUND, "queries[%zu].id %" PRIu64
                         " does not exist in collection \"%s\"", i, qu->id, cfg->name);
                goto out;
            }
            if (rc || v.dim != cfg->dim) {
                rpc_fail(r, GRPC_STATUS_INTERNAL, "queries[%zu].id %" PRIu64 " cannot be read: %s",
                         i, qu->id, qv_strerror(rc ? rc : QV_CORRUPT));
                goto out;
            }
            qv_item_vector(&v, q + i * dim);
            exclude[i] = (int64_t)qu->id;
        } else {
            rpc_fail(r, GRPC_STATUS_INVALID_ARGUMENT, "queries[%zu] has neither vector nor id", i);
            goto out;
        }
    }
    qv_store_abort(txn);
    txn = NULL;
    /* a batch may spread over the cores that concurrent searches leave idle
     * (more threads than cores would only preempt each other) */
    int active = atomic_fetch_add(&g_active_searches, 1) + 1;
    int saved = omp_get_max_threads(), want = 1;
    if (nq >= BATCH_OMP_MIN) {
        want = (int)g_ncpu / active;
        if (want < 1) want = 1;
        omp_set_num_threads(want);
    }
    rc = qv_coll_search(c, nq, q, any_id ? exclude : NULL, k, req->nprobe, req->min_recall, scores,
                        labels);
    if (want != saved) omp_set_num_threads(saved);
    atomic_fetch_sub(&g_active_searches, 1);
    if (rc) {
        if (rc == QV_NOTFOUND)
            rpc_fail(r, GRPC_STATUS_NOT_FOUND, "collection \"%s\" does not exist", cfg->name);
        else
            rpc_fail(r, status_of(rc), "search in \"%s\" failed: %s", cfg->name, qv_strerror(rc));
        goto out;
    }
    /* attributes from a snapshot taken after the search (hits are as the
     * index saw them; an item deleted since comes without attributes) */
    int with_attrs = !req->without_attributes;
    if (with_attrs && (rc = qv_store_read_begin(st, &txn))) {
        rpc_fail(r, status_of(rc), "cannot start a read: %s", qv_strerror(rc));
        goto out;
    }
    size_t cap = nq * k;
    wh = malloc((cap > 0 ? cap : 1) * sizeof *wh);
    off = malloc((nq + 1) * sizeof *off);
    if (!wh || !off) {
        rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory for %zu results", nq * k);
        goto out;
    }
    size_t n = 0;
    for (size_t i = 0; i < nq; i++) {
        off[i] = n;
        for (size_t j = 0; j < k; j++) {
            int64_t id = labels[i * k + j];
            if (id < 0) break;
            wire_hit *h = &wh[n];
            h->id = (uint64_t)id;
            h->score = scores[i * k + j];
            h->attrs = NULL;
            h->attrs_len = 0;
            if (with_attrs)
                qv_store_attrs_get(st, txn, cfg->id, (uint64_t)id, &h->attrs, &h->attrs_len);
            n++;
        }
    }
    off[nq] = n;
    size_t len = wire_search_response_size(wh, off, nq);
    if (len > g_max_reply) {
        rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED,
                 "the reply would take %zu bytes (%zu hits%s), over the reply limit of %zu "
                 "(--max-reply): ask for a smaller k, fewer queries per call%s",
                 len, n, with_attrs ? " with their attributes" : "", g_max_reply,
                 with_attrs ? " or without_attributes" : "");
        goto out;
    }
    /* encoded straight from the LMDB records, before the txn ends */
    encode_ctx ec = {wh, off, nq};
    rpc_finish_encoded(r, len, encode_reply, &ec);
out:
    qv_store_abort(txn);
    free(wh);
    free(off);
    free(q);
    free(exclude);
    free(scores);
    free(labels);
    qv_coll_release(c);
    protobuf_c_message_free_unpacked(&req->base, NULL);
}
