/*
 * The router (cluster/router.h): fan-out of a read to one replica per shard
 * and the merge of their answers.
 */
#include "router.h"

#include <faiss/c_api/utils/distances_c.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "peer.h"
#include "quiver/compose.h"
#include "quiver/error.h"
#include "quiver/log.h"
#include "quiver/peer/v1/peer.pb-c.h"

#define M_SEARCH "/quiver.v1.Search/Search"
#define M_RECOMMEND "/quiver.v1.Search/Recommend"
#define M_GET "/quiver.v1.Items/Get"
#define M_DESCRIBE "/quiver.v1.Collections/Describe"
#define M_SCAN "/quiver.v1.Items/Scan"
#define M_WAIT "/quiver.peer.v1.Peer/WaitApplied"

static atomic_uint g_rotate;

/* The largest k (--max-k): the deepest list the router asks a shard for;
 * MMR and RRF over more candidates than that are cut to it. */
static unsigned g_max_k = 1000;
void qr_set_max_k(unsigned k) { g_max_k = k; }

void qr_result_free(qr_result *r)
{
    for (size_t i = 0; i < r->nraw; i++) free(r->rawkeep[i]);
    free(r->rawkeep);
    for (size_t i = 0; i < r->nsub; i++) qr_result_free(&r->sub[i]);
    free(r->sub);
    for (size_t i = 0; i < r->nkeep; i++)
        if (r->keep[i]) protobuf_c_message_free_unpacked(r->keep[i], NULL);
    free(r->keep);
    qv_arena_free(r->a);
    memset(r, 0, sizeof *r);
}

static void keep(qr_result *r, ProtobufCMessage *m)
{
    if (!m) return;
    if (r->nkeep == r->capkeep) {
        size_t cap = r->capkeep ? 2 * r->capkeep : 16;
        ProtobufCMessage **k = realloc(r->keep, cap * sizeof *k);
        if (!k) {
            protobuf_c_message_free_unpacked(m, NULL);
            return;
        }
        r->keep = k;
        r->capkeep = cap;
    }
    r->keep[r->nkeep++] = m;
}

static void fail(qr_result *r, grpc_status_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(qr_result *r, grpc_status_code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->msg, sizeof r->msg, fmt, ap);
    va_end(ap);
    r->code = code;
}

static int arena(qr_result *r)
{
    if (!r->a && !(r->a = qv_arena_new())) {
        fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return -1;
    }
    return 0;
}

static void *alloc(qr_result *r, size_t n)
{
    void *p = arena(r) ? NULL : qv_arena_alloc(r->a, n ? n : 1);
    if (!p) fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    return p;
}

/* A peer's message about replica lname, told in the caller's name. */
static void rename_msg(const char *msg, const char *lname, const char *name, char *out, size_t len)
{
    size_t o = 0, ln = strlen(lname), nn = strlen(name);
    for (const char *p = msg; *p && o + 1 < len;) {
        if (!strncmp(p, lname, ln) && o + nn + 1 < len) {
            memcpy(out + o, name, nn);
            o += nn;
            p += ln;
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = 0;
}

/* ------------------------------------------------------------ fan-out */
/* One call per shard (reqs[s], NULL: none for that shard) to an ACTIVE
 * replica, a failed one (unreachable, or the replica not there) retried once
 * on another. Replies in replies[s] (kept in out). Returns 0, or -1 with
 * out's status set from the first shard that refused. */
typedef struct qr_raw {
    const uint8_t *p;
    size_t n;
} qr_raw;

static void keep_raw(qr_result *r, uint8_t *p)
{
    if (r->nraw == r->capraw) {
        size_t cap = r->capraw ? 2 * r->capraw : 8;
        uint8_t **k = realloc(r->rawkeep, cap * sizeof *k);
        if (!k) {
            free(p);
            return;
        }
        r->rawkeep = k;
        r->capraw = cap;
    }
    r->rawkeep[r->nraw++] = p;
}

/* raws non-NULL: the replies' bytes into raws[s] (reply_desc NULL) */
static int fanout_any(qc_cluster *c, const qc_meta *m, const char *method, ProtobufCMessage **reqs,
                      const ProtobufCMessageDescriptor *reply_desc, int64_t deadline,
                      ProtobufCMessage **replies, qr_raw *raws, qr_result *out);

static int fanout(qc_cluster *c, const qc_meta *m, const char *method, ProtobufCMessage **reqs,
                  const ProtobufCMessageDescriptor *reply_desc, int64_t deadline,
                  ProtobufCMessage **replies, qr_result *out)
{
    return fanout_any(c, m, method, reqs, reply_desc, deadline, replies, NULL, out);
}

static int fanout_any(qc_cluster *c, const qc_meta *m, const char *method, ProtobufCMessage **reqs,
                      const ProtobufCMessageDescriptor *reply_desc, int64_t deadline,
                      ProtobufCMessage **replies, qr_raw *raws, qr_result *out)
{
    uint32_t S = m->shards;
    qc_call *calls = calloc(S, sizeof *calls);
    char (*addr)[QC_MAX_ADDR + 1] = calloc(S, sizeof *addr);
    uint32_t *first = calloc(S, sizeof *first), *idx = calloc(S, sizeof *idx);
    char (*lname)[QV_MAX_NAME + 1] = calloc(S, sizeof *lname);
    int rc = 0;
    if (!calls || !addr || !first || !idx || !lname) {
        fail(out, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        rc = -1;
        goto done;
    }
    unsigned rot = atomic_fetch_add(&g_rotate, 1);
    for (int attempt = 0; attempt < 2 && !rc; attempt++) {
        size_t n = 0;
        for (uint32_t s = 0; s < S; s++) {
            if (!reqs[s] || (raws ? raws[s].p != NULL : replies[s] != NULL)) continue;
            const qc_shard *sh = &m->shard[s];
            /* the next ACTIVE replica after the one tried (rotating) */
            int found = 0;
            uint32_t live = qc_shard_readable(c, sh);
            for (uint32_t t = 0; t < sh->nrep && !found; t++) {
                uint32_t k = (rot + s + t + (attempt ? first[s] + 1 : 0)) % (sh->nrep ? sh->nrep : 1);
                if (attempt && k == first[s]) continue;
                if (!qc_replica_readable(c, &sh->rep[k], addr[n])) continue;
                if (!attempt) first[s] = k;
                found = 1;
            }
            if (!found) {
                if (attempt) continue; /* keep the first attempt's error */
                fail(out, GRPC_STATUS_UNAVAILABLE, "shard %u of \"%s\" has no ACTIVE replica", s,
                     m->cfg.name);
                rc = -1;
                break;
            }
            qc_replica_name(m->uid, s, lname[s]);
            memset(&calls[n], 0, sizeof calls[n]);
            calls[n].addr = addr[n];
            calls[n].method = method;
            calls[n].req = reqs[s];
            calls[n].reply_desc = raws ? NULL : reply_desc;
            /* a replica that does not answer (a paused machine) leaves the
             * other half of the time to another one, when there is one */
            int64_t now = qc_now_ms();
            calls[n].deadline_ms = attempt == 0 && live > 1 && deadline - now > 200 ? now + (deadline - now) / 2 : 0;
            idx[n++] = s;
        }
        if (rc || n == 0) break;
        qc_peer_call_all(qc_peers_of(c), calls, n, deadline);
        int retry = 0;
        for (size_t i = 0; i < n; i++) {
            uint32_t s = idx[i];
            if (calls[i].code == GRPC_STATUS_OK) {
                if (raws) {
                    raws[s].p = calls[i].raw;
                    raws[s].n = calls[i].raw_len;
                    keep_raw(out, calls[i].raw);
                } else {
                    replies[s] = calls[i].reply;
                    keep(out, calls[i].reply);
                }
                continue;
            }
            /* the replica, not the request, failed: another may answer */
            int theirs = calls[i].code == GRPC_STATUS_UNAVAILABLE ||
                         calls[i].code == GRPC_STATUS_DEADLINE_EXCEEDED ||
                         calls[i].code == GRPC_STATUS_INTERNAL || calls[i].code == GRPC_STATUS_UNKNOWN ||
                         (calls[i].code == GRPC_STATUS_NOT_FOUND && strstr(calls[i].msg, lname[s]) &&
                          strstr(calls[i].msg, "does not exist") && !strstr(calls[i].msg, ".id "));
            if (theirs && attempt == 0) {
                retry = 1;
                continue;
            }
            if (!rc) {
                char msg[sizeof out->msg];
                rename_msg(calls[i].msg, lname[s], m->cfg.name, msg, sizeof msg);
                out->code = calls[i].code;
                snprintf(out->msg, sizeof out->msg, "%s", msg);
                rc = -1;
            }
        }
        if (!retry) break;
    }
    for (uint32_t s = 0; !rc && s < S; s++)
        if (reqs[s] && !(raws ? raws[s].p != NULL : replies[s] != NULL)) {
            fail(out, GRPC_STATUS_UNAVAILABLE, "no replica of shard %u of \"%s\" answered", s,
                 m->cfg.name);
            rc = -1;
        }
done:
    free(calls), free(addr), free(first), free(idx), free(lname);
    return rc;
}

/* Whether a shard of m serves no read now but has a replica catching up on
 * a live node: one that will serve again once it has applied the log (after
 * a log failover or a restart's replay), not one on a node that is gone. */
static int shard_coming_back(qc_cluster *c, const qc_meta *m)
{
    for (uint32_t s = 0; s < m->shards; s++) {
        const qc_shard *sh = &m->shard[s];
        if (qc_shard_readable(c, sh)) continue;
        for (uint32_t k = 0; k < sh->nrep; k++) {
            char a[QC_MAX_ADDR + 1];
            if (sh->rep[k].state == QC_CATCHING_UP && qc_node_live_addr(c, sh->rep[k].node, a) == 0) return 1;
        }
    }
    return 0;
}

/* The collection's metadata for a read. A read that finds a shard coming
 * back (above) waits for it, up to QR_CATCHUP_WAIT_MS within its deadline,
 * rather than answer UNAVAILABLE during a failover it would not see a second
 * later; a shard with no replica on a live node fails at once. */
#define QR_CATCHUP_WAIT_MS 10000
static int get_meta(qc_cluster *c, const char *name, int64_t deadline, qc_meta *m, qr_result *out)
{
    if (qc_meta_get(c, name, m)) {
        fail(out, GRPC_STATUS_NOT_FOUND, "collection \"%.200s\" does not exist", name);
        return -1;
    }
    int64_t until = qc_now_ms() + QR_CATCHUP_WAIT_MS;
    if (until > deadline - 100) until = deadline - 100;
    while (shard_coming_back(c, m) && qc_now_ms() < until) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
        qc_meta fresh;
        if (qc_meta_get(c, name, &fresh)) break; /* dropped meanwhile: the read finds out */
        qc_meta_free(m);
        *m = fresh;
    }
    return 0;
}

/* A read's after_token: wait until the replicas have applied it. */
static int wait_token(qc_cluster *c, const qc_meta *m, const ProtobufCBinaryData *tok, int64_t deadline,
                      qr_result *out)
{
    if (!tok->len) return 0;
    qv_token_part parts[QC_MAX_SHARDS];
    char why[300];
    int n = qv_token_decode(m->cfg.name, tok->data, tok->len, parts, QC_MAX_SHARDS, why, sizeof why);
    if (n < 0) {
        fail(out, GRPC_STATUS_INVALID_ARGUMENT, "after_token %s", why);
        return -1;
    }
    for (int i = 0; i < n; i++)
        if (parts[i].shard >= m->shards) {
            fail(out, GRPC_STATUS_INVALID_ARGUMENT, "after_token names shard %u, but \"%s\" has %u shards",
                 parts[i].shard, m->cfg.name, m->shards);
            return -1;
        }
    char err[400];
    if (qc_wait_applied(c, m, parts, (size_t)n, deadline, err, sizeof err)) {
        fail(out, GRPC_STATUS_DEADLINE_EXCEEDED, "after_token: %s", err);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------- ids, vectors */
typedef struct idvec {
    uint64_t id;
    const float *v; /* NULL: not found */
    size_t n;
} idvec;

/* The stored vectors of ids (deduplicated by the caller or not), each from
 * its owning shard. Missing ids get v NULL. */
static int resolve_ids(qc_cluster *c, const qc_meta *m, idvec *iv, size_t n, int64_t deadline,
                       qr_result *out)
{
    uint32_t S = m->shards;
    if (n == 0) return 0;
    ProtobufCMessage **reqs = calloc(S, sizeof *reqs), **reps = calloc(S, sizeof *reps);
    Quiver__V1__GetItemsRequest *gr = calloc(S, sizeof *gr);
    uint64_t *ids = calloc(n, sizeof *ids);
    char (*lname)[QV_MAX_NAME + 1] = calloc(S, sizeof *lname);
    int rc = reqs && reps && gr && ids && lname ? 0 : -1;
    if (rc) fail(out, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    size_t o = 0;
    for (uint32_t s = 0; !rc && s < S; s++) {
        quiver__v1__get_items_request__init(&gr[s]);
        qc_replica_name(m->uid, s, lname[s]);
        gr[s].collection = lname[s];
        gr[s].with_vectors = 1;
        gr[s].ids = ids + o;
        for (size_t i = 0; i < n; i++)
            if (qc_shard_of(iv[i].id, S) == s) ids[o++] = iv[i].id;
        gr[s].n_ids = (size_t)(ids + o - gr[s].ids);
        if (gr[s].n_ids) reqs[s] = &gr[s].base;
    }
    if (!rc) rc = fanout(c, m, M_GET, reqs, &quiver__v1__get_items_response__descriptor, deadline, reps, out);
    for (uint32_t s = 0; !rc && s < S; s++) {
        Quiver__V1__GetItemsResponse *r = (Quiver__V1__GetItemsResponse *)reps[s];
        for (size_t j = 0; r && j < r->n_items; j++)
            for (size_t i = 0; i < n; i++)
                if (iv[i].id == r->items[j]->id) {
                    iv[i].v = r->items[j]->vector;
                    iv[i].n = r->items[j]->n_vector;
                }
    }
    free(reqs), free(reps), free(gr), free(ids), free(lname);
    return rc;
}

/* --------------------------------------------------------------- merge */
typedef struct mhit {
    Quiver__V1__Hit *h;
    float key; /* larger is better */
} mhit;

static int cmp_mhit(const void *a, const void *b)
{
    const mhit *p = a, *q = b;
    if (p->key != q->key) return p->key > q->key ? -1 : 1;
    return (p->h->id > q->h->id) - (p->h->id < q->h->id);
}

/* The group value of a hit (its attribute key's Value, packed), or 0 bytes
 * when it has none (such hits are left out, as on one node). */
static size_t group_value(const Quiver__V1__Hit *h, const char *key, uint8_t *buf, size_t cap)
{
    for (size_t i = 0; i < h->n_attributes; i++)
        if (!strcmp(h->attributes[i]->key, key) && h->attributes[i]->value) {
            const Quiver__V1__Value *v = h->attributes[i]->value;
            if (v->kind_case == QUIVER__V1__VALUE__KIND_DOUBLE_VALUE && v->double_value == 0) {
                Quiver__V1__Value z = *v; /* -0 and 0 are one group, as on one node */
                z.double_value = 0;
                size_t len = protobuf_c_message_get_packed_size(&z.base);
                return len > cap ? 0 : protobuf_c_message_pack(&z.base, buf);
            }
            if (v->kind_case != QUIVER__V1__VALUE__KIND_STRING_VALUE &&
                v->kind_case != QUIVER__V1__VALUE__KIND_INT_VALUE &&
                v->kind_case != QUIVER__V1__VALUE__KIND_BOOL_VALUE &&
                v->kind_case != QUIVER__V1__VALUE__KIND_DOUBLE_VALUE)
                return 0;
            size_t len = protobuf_c_message_get_packed_size(&v->base);
            if (len > cap) return 0;
            return protobuf_c_message_pack(&v->base, buf);
        }
    return 0;
}

/* Merge the shards' hit lists into the best k (groups capped again); with
 * strip_attrs the hits leave without their attributes (they were asked for
 * the groups only). */
static int merge_hits(qr_result *out, Quiver__V1__Hits **lists, size_t nl, int l2, size_t k,
                      const char *group_by, uint32_t group_size, int strip_attrs, Quiver__V1__Hits *dst)
{
    size_t total = 0;
    for (size_t i = 0; i < nl; i++) total += lists[i] ? lists[i]->n_hits : 0;
    mhit *all = malloc((total ? total : 1) * sizeof *all);
    if (!all) {
        fail(out, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return -1;
    }
    size_t t = 0;
    for (size_t i = 0; i < nl; i++)
        for (size_t j = 0; lists[i] && j < lists[i]->n_hits; j++) {
            all[t].h = lists[i]->hits[j];
            all[t].key = l2 ? -all[t].h->score : all[t].h->score;
            t++;
        }
    qsort(all, t, sizeof *all, cmp_mhit);
    quiver__v1__hits__init(dst);
    dst->hits = alloc(out, (k < t ? k : t) * sizeof *dst->hits);
    if (!dst->hits) {
        free(all);
        return -1;
    }
    int grouping = group_by && group_by[0];
    uint32_t gsize = group_size ? group_size : 1;
    /* groups seen: their packed values and counts (k is small) */
    uint8_t(*gval)[64] = grouping ? calloc(k ? k : 1, sizeof *gval) : NULL;
    size_t *glen = grouping ? calloc(k ? k : 1, sizeof *glen) : NULL;
    uint32_t *gcnt = grouping ? calloc(k ? k : 1, sizeof *gcnt) : NULL;
    size_t ng = 0;
    for (size_t i = 0; i < t && dst->n_hits < k; i++) {
        if (grouping) {
            uint8_t v[64];
            size_t len = group_value(all[i].h, group_by, v, sizeof v);
            if (!len) continue;
            size_t g = 0;
            while (g < ng && !(glen[g] == len && !memcmp(gval[g], v, len))) g++;
            if (g == ng) {
                if (ng == k) continue;
                memcpy(gval[g], v, len);
                glen[g] = len;
                ng++;
            }
            if (gcnt[g] >= gsize) continue;
            gcnt[g]++;
        }
        Quiver__V1__Hit *h = all[i].h;
        if (strip_attrs) { /* a copy without them: the peer's message frees its own */
            Quiver__V1__Hit *c = alloc(out, sizeof *c);
            if (!c) break;
            *c = *h;
            c->n_attributes = 0;
            c->attributes = NULL;
            h = c;
        }
        dst->hits[dst->n_hits++] = h;
    }
    free(gval), free(glen), free(gcnt);
    free(all);
    return 0;
}

/* ------------------------------------------------- composed at the router */
/* The hits the shards returned for one read, by id: what qv_select reads
 * (vectors, group values) and what the reply is made of. */
typedef struct hitmap {
    Quiver__V1__Hit **h; /* sorted by id */
    size_t n;
    int l2;
    uint32_t dim;
    const char *group_by;
} hitmap;

static int cmp_hit_id(const void *a, const void *b)
{
    uint64_t x = (*(Quiver__V1__Hit *const *)a)->id, y = (*(Quiver__V1__Hit *const *)b)->id;
    return (x > y) - (x < y);
}

static Quiver__V1__Hit *hit_of(const hitmap *m, int64_t id)
{
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (m->h[mid]->id == (uint64_t)id) return m->h[mid];
        if (m->h[mid]->id < (uint64_t)id) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

static void hm_vectors(void *ctx, const int64_t *ids, size_t n, float *vec, uint8_t *found)
{
    const hitmap *m = ctx;
    for (size_t i = 0; i < n; i++) {
        Quiver__V1__Hit *h = hit_of(m, ids[i]);
        found[i] = h && h->vector && h->vector->n_values == m->dim;
        if (found[i]) memcpy(vec + i * m->dim, h->vector->values, m->dim * sizeof(float));
    }
}

/* the collection's similarity of two items, computed as one node does */
static float hm_sim(void *ctx, const float *a, const float *b)
{
    const hitmap *m = ctx;
    float s;
    if (m->l2) {
        faiss_fvec_L2sqr_ny(&s, a, b, m->dim, 1);
        return -s;
    }
    faiss_fvec_inner_products_ny(&s, a, b, m->dim, 1);
    return s;
}

static size_t hm_group(void *ctx, int64_t id, uint8_t *buf, size_t cap)
{
    const hitmap *m = ctx;
    Quiver__V1__Hit *h = hit_of(m, id);
    return h ? group_value(h, m->group_by, buf, cap) : 0;
}

/* One query's (or, fused, the read's) hits from the shards' lists of depth
 * D: merged, fused and selected as one node does. */
static int compose_list(qr_result *out, const Quiver__V1__SearchRequest *req, hitmap *hm,
                        Quiver__V1__SearchResponse **reps, uint32_t S, size_t from, size_t to, size_t D,
                        Quiver__V1__Hits *dst)
{
    size_t nl = to - from, k = req->k ? req->k : 10;
    qv_cand **lists = alloc(out, nl * sizeof *lists);
    size_t *ns = alloc(out, nl * sizeof *ns);
    if (!lists || !ns) return -1;
    for (size_t li = 0; li < nl; li++) {
        size_t total = 0;
        for (uint32_t s = 0; s < S; s++)
            if (from + li < reps[s]->n_results) total += reps[s]->results[from + li]->n_hits;
        qv_cand *cs = alloc(out, total * sizeof *cs);
        if (!cs) return -1;
        size_t n = 0;
        for (uint32_t s = 0; s < S; s++) {
            if (from + li >= reps[s]->n_results) continue;
            const Quiver__V1__Hits *h = reps[s]->results[from + li];
            for (size_t j = 0; j < h->n_hits; j++) {
                cs[n].id = (int64_t)h->hits[j]->id;
                cs[n].score = h->hits[j]->score;
                cs[n].sim = hm->l2 ? -h->hits[j]->score : h->hits[j]->score;
                n++;
            }
        }
        qsort(cs, n, sizeof *cs, qv_cand_cmp);
        lists[li] = cs;
        ns[li] = n < D ? n : D; /* one node's list of depth D */
    }
    qv_cand *cs = lists[0], *fused = NULL;
    size_t n = ns[0];
    if (req->fusion != QUIVER__V1__FUSION__FUSION_NONE) {
        if (qv_fuse((qv_fusion)req->fusion, req->rrf_k, lists, ns, nl, &fused, &n)) {
            fail(out, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
            return -1;
        }
        cs = fused;
    }
    qv_cand *sel = alloc(out, (k ? k : 1) * sizeof *sel);
    qv_select_opts so = {k, req->group_by && req->group_by[0], req->group_size, req->mmr != NULL,
                         req->mmr ? req->mmr->diversity : 0, req->mmr ? req->mmr->candidates : 0};
    qv_select_src src = {hm_vectors, hm_sim, hm->dim, hm_group, hm};
    long got = sel ? qv_select(&so, &src, cs, n, sel) : -QV_NOMEM;
    free(fused);
    if (got < 0) {
        fail(out, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return -1;
    }
    quiver__v1__hits__init(dst);
    dst->hits = alloc(out, (got ? (size_t)got : 1) * sizeof *dst->hits);
    if (!dst->hits) return -1;
    for (long i = 0; i < got; i++) {
        const Quiver__V1__Hit *h = hit_of(hm, sel[i].id);
        Quiver__V1__Hit *c = alloc(out, sizeof *c);
        if (!h || !c) return -1;
        *c = *h; /* a copy: the peer's message frees its own */
        c->score = sel[i].score;
        if (!req->with_vectors) c->vector = NULL;
        if (req->without_attributes) {
            c->n_attributes = 0;
            c->attributes = NULL;
        }
        dst->hits[dst->n_hits++] = c;
    }
    return 0;
}

/* ------------------------------------------- a plain merge, on the wire */
/* A plain search (no groups, MMR or RRF) merges hits by score alone: the
 * shards' replies are read as bytes (each hit's id and score), and the
 * reply is the chosen hits' bytes as the shards encoded them — no decode
 * of attributes or vectors, no allocation per hit beyond the index. */
static int rd_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    *v = 0;
    for (int sh = 0; *p < end && sh < 64; sh += 7) {
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 0x7f) << sh;
        if (!(b & 0x80)) return 0;
    }
    return -1;
}

static int skip_field(const uint8_t **p, const uint8_t *end, int wt)
{
    uint64_t v;
    switch (wt) {
    case 0: return rd_varint(p, end, &v);
    case 1: if (end - *p < 8) return -1; *p += 8; return 0;
    case 5: if (end - *p < 4) return -1; *p += 4; return 0;
    case 2:
        if (rd_varint(p, end, &v) || v > (uint64_t)(end - *p)) return -1;
        *p += v;
        return 0;
    default: return -1;
    }
}

typedef struct wire_hit {
    const uint8_t *p; /* the Hit message's bytes */
    size_t n;
    uint64_t id;
    float key;        /* larger is better */
} wire_hit;

static int cmp_wire_hit(const void *a, const void *b)
{
    const wire_hit *x = a, *y = b;
    if (x->key != y->key) return x->key > y->key ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* The hits of list li of a SearchResponse (bytes) appended to out. */
static int wire_list(const uint8_t *buf, size_t len, size_t li, int l2, wire_hit *out, size_t *n, size_t cap)
{
    const uint8_t *p = buf, *end = buf + len;
    size_t at = 0;
    while (p < end) {
        uint64_t tag, l;
        if (rd_varint(&p, end, &tag)) return -1;
        if ((tag >> 3) != 1 || (tag & 7) != 2) {
            if (skip_field(&p, end, (int)(tag & 7))) return -1;
            continue;
        }
        if (rd_varint(&p, end, &l) || l > (uint64_t)(end - p)) return -1;
        const uint8_t *hs = p, *he = p + l;
        p = he;
        if (at++ != li) continue;
        while (hs < he) { /* Hits: field 1, each a Hit */
            if (rd_varint(&hs, he, &tag)) return -1;
            if ((tag >> 3) != 1 || (tag & 7) != 2) {
                if (skip_field(&hs, he, (int)(tag & 7))) return -1;
                continue;
            }
            if (rd_varint(&hs, he, &l) || l > (uint64_t)(he - hs)) return -1;
            wire_hit h = {hs, (size_t)l, 0, 0};
            const uint8_t *q = hs, *qe = hs + l;
            float score = 0;
            while (q < qe) {
                uint64_t t2;
                if (rd_varint(&q, qe, &t2)) return -1;
                if ((t2 >> 3) == 1 && (t2 & 7) == 0) {
                    if (rd_varint(&q, qe, &h.id)) return -1;
                } else if ((t2 >> 3) == 2 && (t2 & 7) == 5 && qe - q >= 4) {
                    uint32_t bits = (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24;
                    memcpy(&score, &bits, 4);
                    q += 4;
                } else if (skip_field(&q, qe, (int)(t2 & 7))) {
                    return -1;
                }
            }
            h.key = l2 ? -score : score;
            if (*n < cap) out[(*n)++] = h;
            hs += l;
        }
        return 0;
    }
    return 0; /* fewer lists: none from this shard */
}

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) v >>= 7, n++;
    return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) *p++ = (uint8_t)(v | 0x80), v >>= 7;
    *p++ = (uint8_t)v;
    return p;
}

/* Merge the shards' SearchResponses (raws) into out->raw: nl lists of the
 * best k each. */
static int wire_merge(qr_result *out, const qr_raw *raws, uint32_t S, size_t nl, size_t k, int l2)
{
    size_t cap = 0;
    for (uint32_t s = 0; s < S; s++) cap += raws[s].n / 8 + 1; /* a hit takes 8 bytes or more */
    wire_hit *all = malloc(cap * sizeof *all);
    size_t *cnt = calloc(nl ? nl : 1, sizeof *cnt);
    wire_hit **lists = calloc(nl ? nl : 1, sizeof *lists);
    int rc = all && cnt && lists ? 0 : -1;
    size_t used = 0, total = 0;
    for (size_t li = 0; !rc && li < nl; li++) {
        size_t n = 0;
        for (uint32_t s = 0; !rc && s < S; s++)
            if (wire_list(raws[s].p, raws[s].n, li, l2, all + used, &n, cap - used)) rc = -1;
        if (rc) break;
        qsort(all + used, n, sizeof *all, cmp_wire_hit);
        lists[li] = all + used;
        cnt[li] = n < k ? n : k;
        used += n;
        size_t hl = 0;
        for (size_t j = 0; j < cnt[li]; j++) hl += 1 + varint_len(lists[li][j].n) + lists[li][j].n;
        total += 1 + varint_len(hl) + hl;
    }
    uint8_t *buf = rc ? NULL : alloc(out, total);
    if (!rc && buf) {
        uint8_t *p = buf;
        for (size_t li = 0; li < nl; li++) {
            size_t hl = 0;
            for (size_t j = 0; j < cnt[li]; j++) hl += 1 + varint_len(lists[li][j].n) + lists[li][j].n;
            *p++ = (1 << 3) | 2;
            p = put_varint(p, hl);
            for (size_t j = 0; j < cnt[li]; j++) {
                *p++ = (1 << 3) | 2;
                p = put_varint(p, lists[li][j].n);
                memcpy(p, lists[li][j].p, lists[li][j].n);
                p += lists[li][j].n;
            }
        }
        out->raw = buf;
        out->raw_len = total;
    } else if (rc) {
        fail(out, GRPC_STATUS_INTERNAL, "a shard's reply does not parse");
    }
    free(all), free(cnt), free(lists);
    return rc || !buf ? -1 : 0;
}

/* The number of lists in a SearchResponse's bytes. */
static size_t wire_nlists(const qr_raw *r)
{
    const uint8_t *p = r->p, *end = r->p + r->n;
    size_t n = 0;
    while (p < end) {
        uint64_t tag;
        if (rd_varint(&p, end, &tag)) break;
        if ((tag >> 3) == 1 && (tag & 7) == 2) n++;
        if (skip_field(&p, end, (int)(tag & 7))) break;
    }
    return n;
}

/* -------------------------------------------------------------- search */
void qr_search(qc_cluster *c, const Quiver__V1__SearchRequest *req, int64_t deadline, qr_result *out)
{
    qc_meta m = {0};
    memset(out, 0, sizeof *out);
    if (get_meta(c, req->collection, deadline, &m, out) || wait_token(c, &m, &req->after_token, deadline, out)) goto end;
    uint32_t S = m.shards;
    int l2 = m.cfg.metric == QV_METRIC_L2;
    size_t nq = req->n_queries, nid = 0;
    if (arena(out)) goto end;
    idvec *iv = alloc(out, (nq ? nq : 1) * sizeof *iv);
    if (!iv) goto end;
    for (size_t i = 0; i < nq; i++)
        if (req->queries[i]->kind_case == QUIVER__V1__QUERY__KIND_ID) iv[nid++].id = req->queries[i]->id;
    if (resolve_ids(c, &m, iv, nid, deadline, out)) goto end;
    /* one request per shard: the same, on the replica, with queries by an id
     * another shard owns turned into that id's vector */
    ProtobufCMessage **reqs = alloc(out, S * sizeof *reqs), **reps = alloc(out, S * sizeof *reps);
    Quiver__V1__SearchRequest *sr = alloc(out, S * sizeof *sr);
    int grouping = req->group_by && req->group_by[0];
    if (!reqs || !reps || !sr) goto end;
    /* MMR and RRF choose among every shard's candidates: the shards send
     * their D best of each query, as one node's lists are D deep */
    int compose = req->mmr != NULL || req->fusion == QUIVER__V1__FUSION__RRF;
    int fused_ids = compose && req->fusion != QUIVER__V1__FUSION__FUSION_NONE && nid > 0;
    size_t kk = req->k ? req->k : 10, D = kk;
    if (req->mmr) D = req->mmr->candidates ? req->mmr->candidates : 10 * kk;
    else if (req->fusion != QUIVER__V1__FUSION__FUSION_NONE) D = 10 * kk;
    if (D < kk) D = kk;
    if (compose && kk > g_max_k) { /* the shards see D, not k: checked here */
        fail(out, GRPC_STATUS_INVALID_ARGUMENT, "k %zu is over the limit %u", kk, g_max_k);
        goto end;
    }
    if (D > g_max_k) D = g_max_k; /* what a peer's k may be */
    for (uint32_t s = 0; s < S; s++) {
        sr[s] = *req;
        char *ln = alloc(out, QV_MAX_NAME + 1);
        Quiver__V1__Query **qs = alloc(out, (nq ? nq : 1) * sizeof *qs);
        if (!ln || !qs) goto end;
        qc_replica_name(m.uid, s, ln);
        sr[s].collection = ln;
        sr[s].after_token.len = 0;
        /* groups are capped again after the merge: the value must come back */
        if (grouping) sr[s].without_attributes = 0;
        for (size_t i = 0, j = 0; i < nq; i++) {
            const Quiver__V1__Query *q = req->queries[i];
            qs[i] = req->queries[i];
            if (q->kind_case != QUIVER__V1__QUERY__KIND_ID) continue;
            const idvec *v = &iv[j++];
            if (!v->v || qc_shard_of(q->id, S) == s) continue; /* missing: every shard says so */
            Quiver__V1__Query *nqy = alloc(out, sizeof *nqy);
            Quiver__V1__Vector *vec = alloc(out, sizeof *vec);
            if (!nqy || !vec) goto end;
            quiver__v1__query__init(nqy);
            quiver__v1__vector__init(vec);
            vec->n_values = v->n;
            vec->values = (float *)v->v;
            nqy->kind_case = QUIVER__V1__QUERY__KIND_VECTOR;
            nqy->vector = vec;
            qs[i] = nqy;
        }
        sr[s].queries = qs;
        if (compose) { /* candidates only: the router fuses and selects */
            sr[s].k = (uint32_t)D;
            sr[s].fusion = QUIVER__V1__FUSION__FUSION_NONE;
            sr[s].mmr = NULL;
            sr[s].group_by = (char *)"";
            sr[s].group_size = 0;
            sr[s].with_vectors = req->with_vectors || req->mmr;
            sr[s].without_attributes = grouping ? 0 : req->without_attributes;
            if (fused_ids) { /* fused: no query's item comes back, from any list */
                uint64_t *ex = alloc(out, (req->n_exclude_ids + nid) * sizeof *ex);
                if (!ex) goto end;
                if (req->n_exclude_ids) memcpy(ex, req->exclude_ids, req->n_exclude_ids * sizeof *ex);
                for (size_t i = 0; i < nid; i++) ex[req->n_exclude_ids + i] = iv[i].id;
                sr[s].exclude_ids = ex;
                sr[s].n_exclude_ids = req->n_exclude_ids + nid;
            }
        }
        reqs[s] = &sr[s].base;
    }
    if (!compose && !grouping) { /* merged by score alone: on the wire */
        qr_raw *raws = alloc(out, S * sizeof *raws);
        if (!raws || fanout_any(c, &m, M_SEARCH, reqs, NULL, deadline, reps, raws, out)) goto end;
        size_t nl = 0;
        for (uint32_t s = 0; s < S; s++) {
            size_t n = wire_nlists(&raws[s]);
            if (n > nl) nl = n;
        }
        if (wire_merge(out, raws, S, nl, req->k ? req->k : 10, l2)) goto end;
        out->code = GRPC_STATUS_OK;
        goto end;
    }
    if (fanout(c, &m, M_SEARCH, reqs, &quiver__v1__search_response__descriptor, deadline, reps, out))
        goto end;
    if (compose) {
        hitmap hm = {NULL, 0, l2, m.cfg.dim, req->group_by};
        size_t total = 0;
        for (uint32_t s = 0; s < S; s++) {
            Quiver__V1__SearchResponse *r = (Quiver__V1__SearchResponse *)reps[s];
            for (size_t li = 0; li < r->n_results; li++) total += r->results[li]->n_hits;
        }
        if (!(hm.h = alloc(out, (total ? total : 1) * sizeof *hm.h))) goto end;
        for (uint32_t s = 0; s < S; s++) {
            Quiver__V1__SearchResponse *r = (Quiver__V1__SearchResponse *)reps[s];
            for (size_t li = 0; li < r->n_results; li++)
                for (size_t j = 0; j < r->results[li]->n_hits; j++) hm.h[hm.n++] = r->results[li]->hits[j];
        }
        qsort(hm.h, hm.n, sizeof *hm.h, cmp_hit_id);
        Quiver__V1__SearchResponse *rep = alloc(out, sizeof *rep);
        size_t nl = req->fusion != QUIVER__V1__FUSION__FUSION_NONE ? 1 : nq;
        if (!rep) goto end;
        quiver__v1__search_response__init(rep);
        if (!(rep->results = alloc(out, (nl ? nl : 1) * sizeof *rep->results))) goto end;
        for (size_t li = 0; li < nl; li++) {
            Quiver__V1__Hits *h = alloc(out, sizeof *h);
            size_t from = nl == 1 && nq > 1 ? 0 : li, to = nl == 1 && nq > 1 ? nq : li + 1;
            if (!h || compose_list(out, req, &hm, (Quiver__V1__SearchResponse **)reps, S, from, to, D, h))
                goto end;
            rep->results[rep->n_results++] = h;
        }
        out->reply = &rep->base;
        out->code = GRPC_STATUS_OK;
        goto end;
    }
    /* one list per query (or one fused list): merged across shards */
    Quiver__V1__SearchResponse *rep = alloc(out, sizeof *rep);
    if (!rep) goto end;
    quiver__v1__search_response__init(rep);
    size_t nl = ((Quiver__V1__SearchResponse *)reps[0])->n_results;
    rep->results = alloc(out, (nl ? nl : 1) * sizeof *rep->results);
    Quiver__V1__Hits **col = alloc(out, S * sizeof *col);
    if (!rep->results || !col) goto end;
    size_t k = req->k ? req->k : 10;
    for (size_t li = 0; li < nl; li++) {
        for (uint32_t s = 0; s < S; s++) {
            Quiver__V1__SearchResponse *r = (Quiver__V1__SearchResponse *)reps[s];
            col[s] = li < r->n_results ? r->results[li] : NULL;
        }
        Quiver__V1__Hits *h = alloc(out, sizeof *h);
        if (!h || merge_hits(out, col, S, l2, k, req->group_by, req->group_size,
                             grouping && req->without_attributes, h))
            goto end;
        rep->results[rep->n_results++] = h;
    }
    out->reply = &rep->base;
    out->code = GRPC_STATUS_OK;
end:
    qc_meta_free(&m);
}

/* ----------------------------------------------------------- recommend */
void qr_recommend(qc_cluster *c, const Quiver__V1__RecommendRequest *req, int64_t deadline, qr_result *out)
{
    qc_meta m = {0};
    memset(out, 0, sizeof *out);
    if (get_meta(c, req->collection, deadline, &m, out) || wait_token(c, &m, &req->after_token, deadline, out)) goto end;
    uint32_t S = m.shards;
    size_t ne = req->n_positive + req->n_negative, nid = 0;
    if (arena(out)) goto end;
    idvec *iv = alloc(out, (ne ? ne : 1) * sizeof *iv);
    if (!iv) goto end;
    for (size_t i = 0; i < ne; i++) {
        const Quiver__V1__Example *e = i < req->n_positive ? req->positive[i] : req->negative[i - req->n_positive];
        if (e->kind_case == QUIVER__V1__EXAMPLE__KIND_ID) iv[nid++].id = e->id;
    }
    if (resolve_ids(c, &m, iv, nid, deadline, out)) goto end;
    ProtobufCMessage **reqs = alloc(out, S * sizeof *reqs), **reps = alloc(out, S * sizeof *reps);
    Quiver__V1__RecommendRequest *rr = alloc(out, S * sizeof *rr);
    int grouping = req->group_by && req->group_by[0];
    if (!reqs || !reps || !rr) goto end;
    for (uint32_t s = 0; s < S; s++) {
        rr[s] = *req;
        char *ln = alloc(out, QV_MAX_NAME + 1);
        Quiver__V1__Example **ex = alloc(out, (ne ? ne : 1) * sizeof *ex);
        if (!ln || !ex) goto end;
        qc_replica_name(m.uid, s, ln);
        rr[s].collection = ln;
        rr[s].after_token.len = 0;
        if (grouping) rr[s].without_attributes = 0;
        for (size_t i = 0, j = 0; i < ne; i++) {
            Quiver__V1__Example *e = i < req->n_positive ? req->positive[i] : req->negative[i - req->n_positive];
            ex[i] = e;
            if (e->kind_case != QUIVER__V1__EXAMPLE__KIND_ID) continue;
            const idvec *v = &iv[j++];
            if (!v->v || qc_shard_of(e->id, S) == s) continue;
            Quiver__V1__Example *ne2 = alloc(out, sizeof *ne2);
            Quiver__V1__Vector *vec = alloc(out, sizeof *vec);
            if (!ne2 || !vec) goto end;
            quiver__v1__example__init(ne2);
            quiver__v1__vector__init(vec);
            vec->n_values = v->n;
            vec->values = (float *)v->v;
            ne2->weight = e->weight;
            ne2->kind_case = QUIVER__V1__EXAMPLE__KIND_VECTOR;
            ne2->vector = vec;
            ex[i] = ne2;
        }
        rr[s].positive = ex;
        rr[s].negative = ex + req->n_positive;
        reqs[s] = &rr[s].base;
    }
    if (fanout(c, &m, M_RECOMMEND, reqs, &quiver__v1__hits__descriptor, deadline, reps, out)) goto end;
    /* AVERAGE_VECTOR is a search: L2 scores are distances; the other
     * strategies score by similarity, larger first, whatever the metric */
    int l2 = m.cfg.metric == QV_METRIC_L2 && req->strategy == QUIVER__V1__RECOMMEND_STRATEGY__AVERAGE_VECTOR;
    Quiver__V1__Hits *h = alloc(out, sizeof *h);
    if (!h || merge_hits(out, (Quiver__V1__Hits **)reps, S, l2, req->k ? req->k : 10, req->group_by,
                         req->group_size, grouping && req->without_attributes, h))
        goto end;
    out->reply = &h->base;
    out->code = GRPC_STATUS_OK;
end:
    qc_meta_free(&m);
}

/* ----------------------------------------------------------------- get */
void qr_get(qc_cluster *c, const Quiver__V1__GetItemsRequest *req, int64_t deadline, qr_result *out)
{
    qc_meta m = {0};
    memset(out, 0, sizeof *out);
    if (get_meta(c, req->collection, deadline, &m, out) || wait_token(c, &m, &req->after_token, deadline, out)) goto end;
    uint32_t S = m.shards;
    size_t n = req->n_ids;
    if (arena(out)) goto end;
    ProtobufCMessage **reqs = alloc(out, S * sizeof *reqs), **reps = alloc(out, S * sizeof *reps);
    Quiver__V1__GetItemsRequest *gr = alloc(out, S * sizeof *gr);
    uint64_t *ids = alloc(out, (n ? n : 1) * sizeof *ids);
    if (!reqs || !reps || !gr || !ids) goto end;
    size_t o = 0;
    for (uint32_t s = 0; s < S; s++) {
        gr[s] = *req;
        char *ln = alloc(out, QV_MAX_NAME + 1);
        if (!ln) goto end;
        qc_replica_name(m.uid, s, ln);
        gr[s].collection = ln;
        gr[s].after_token.len = 0;
        gr[s].ids = ids + o;
        for (size_t i = 0; i < n; i++)
            if (qc_shard_of(req->ids[i], S) == s) ids[o++] = req->ids[i];
        gr[s].n_ids = (size_t)(ids + o - gr[s].ids);
        if (gr[s].n_ids) reqs[s] = &gr[s].base;
    }
    if (fanout(c, &m, M_GET, reqs, &quiver__v1__get_items_response__descriptor, deadline, reps, out)) goto end;
    /* the request's order: each id once, at its first position */
    Quiver__V1__GetItemsResponse *rep = alloc(out, sizeof *rep);
    if (!rep) goto end;
    quiver__v1__get_items_response__init(rep);
    rep->items = alloc(out, (n ? n : 1) * sizeof *rep->items);
    rep->missing_ids = alloc(out, (n ? n : 1) * sizeof *rep->missing_ids);
    if (!rep->items || !rep->missing_ids) goto end;
    for (size_t i = 0; i < n; i++) {
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++) seen = req->ids[j] == req->ids[i];
        if (seen) continue;
        Quiver__V1__GetItemsResponse *r = (Quiver__V1__GetItemsResponse *)reps[qc_shard_of(req->ids[i], S)];
        Quiver__V1__Item *it = NULL;
        for (size_t j = 0; r && j < r->n_items && !it; j++)
            if (r->items[j]->id == req->ids[i]) it = r->items[j];
        if (it) rep->items[rep->n_items++] = it;
        else rep->missing_ids[rep->n_missing_ids++] = req->ids[i];
    }
    out->reply = &rep->base;
    out->code = GRPC_STATUS_OK;
end:
    qc_meta_free(&m);
}

int qr_count_existing(qc_cluster *c, const qc_meta *m, const uint64_t *ids, size_t n, int64_t deadline,
                      uint64_t *count, qr_result *out)
{
    idvec *iv = calloc(n ? n : 1, sizeof *iv);
    if (!iv) {
        fail(out, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return -1;
    }
    size_t u = 0;
    for (size_t i = 0; i < n; i++) {
        int seen = 0;
        for (size_t j = 0; j < u && !seen; j++) seen = iv[j].id == ids[i];
        if (!seen) iv[u++].id = ids[i];
    }
    int rc = resolve_ids(c, m, iv, u, deadline, out);
    *count = 0;
    for (size_t i = 0; !rc && i < u; i++) *count += iv[i].v != NULL || iv[i].n != 0;
    free(iv);
    return rc;
}

/* ------------------------------------------------------ describe, list */
/* CollectionInfo of m: counts summed over one replica of each shard, the
 * index as shard 0's. */
static int describe_one(qc_cluster *c, const qc_meta *m, int64_t deadline, qr_result *out,
                        Quiver__V1__CollectionInfo **info)
{
    uint32_t S = m->shards;
    ProtobufCMessage **reqs = alloc(out, S * sizeof *reqs), **reps = alloc(out, S * sizeof *reps);
    Quiver__V1__DescribeCollectionRequest *dr = alloc(out, S * sizeof *dr);
    if (!reqs || !reps || !dr) return -1;
    for (uint32_t s = 0; s < S; s++) {
        char *ln = alloc(out, QV_MAX_NAME + 1);
        if (!ln) return -1;
        quiver__v1__describe_collection_request__init(&dr[s]);
        qc_replica_name(m->uid, s, ln);
        dr[s].name = ln;
        reqs[s] = &dr[s].base;
    }
    if (fanout(c, m, M_DESCRIBE, reqs, &quiver__v1__collection_info__descriptor, deadline, reps, out))
        return -1;
    /* a copy: pointers of the peers' messages are theirs to free */
    Quiver__V1__CollectionInfo *ci = alloc(out, sizeof *ci);
    char *name = alloc(out, strlen(m->cfg.name) + 1);
    if (!ci || !name) return -1;
    *ci = *(Quiver__V1__CollectionInfo *)reps[0];
    strcpy(name, m->cfg.name);
    ci->name = name;
    for (uint32_t s = 1; s < S; s++) {
        Quiver__V1__CollectionInfo *o = (Quiver__V1__CollectionInfo *)reps[s];
        ci->count += o->count;
        ci->last_seq += o->last_seq;
        if (ci->index && o->index) {
            ci->index->count += o->index->count;
            ci->index->trained_for += o->index->trained_for;
            ci->index->rebuilding |= o->index->rebuilding;
        }
    }
    ci->shards = m->shards;
    ci->replicas = m->replicas;
    *info = ci;
    return 0;
}

void qr_describe(qc_cluster *c, const char *name, int64_t deadline, qr_result *out)
{
    qc_meta m = {0};
    memset(out, 0, sizeof *out);
    Quiver__V1__CollectionInfo *ci;
    if (get_meta(c, name, deadline, &m, out) || arena(out) || describe_one(c, &m, deadline, out, &ci)) goto end;
    out->reply = &ci->base;
    out->code = GRPC_STATUS_OK;
end:
    qc_meta_free(&m);
}

void qr_list(qc_cluster *c, int64_t deadline, qr_result *out)
{
    memset(out, 0, sizeof *out);
    qc_meta *ms = NULL;
    size_t n = 0;
    if (qc_meta_list(c, &ms, &n)) {
        fail(out, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    Quiver__V1__ListCollectionsResponse *rep = alloc(out, sizeof *rep);
    if (rep) {
        quiver__v1__list_collections_response__init(rep);
        rep->collections = alloc(out, (n ? n : 1) * sizeof *rep->collections);
    }
    int rc = rep && rep->collections ? 0 : -1;
    for (size_t i = 0; !rc && i < n; i++) {
        Quiver__V1__CollectionInfo *ci;
        rc = describe_one(c, &ms[i], deadline, out, &ci);
        if (!rc) rep->collections[rep->n_collections++] = ci;
    }
    if (!rc) {
        out->reply = &rep->base;
        out->code = GRPC_STATUS_OK;
    }
    for (size_t i = 0; i < n; i++) qc_meta_free(&ms[i]);
    free(ms);
}

/* -------------------------------------------------------- cluster status */
void qr_cluster_status(qc_cluster *c, int64_t deadline, qr_result *out)
{
    memset(out, 0, sizeof *out);
    qc_node_info *nodes = NULL;
    size_t nn = 0, nm = 0;
    qc_meta *ms = NULL;
    if (qc_nodes(c, &nodes, &nn) || qc_meta_list(c, &ms, &nm) || arena(out)) {
        fail(out, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        goto end;
    }
    Quiver__V1__ClusterStatusResponse *rep = alloc(out, sizeof *rep);
    if (!rep) goto end;
    quiver__v1__cluster_status_response__init(rep);
    rep->clustered = 1;
    rep->nodes = alloc(out, (nn ? nn : 1) * sizeof *rep->nodes);
    size_t nshards = 0, ncalls = 0;
    for (size_t i = 0; i < nm; i++) {
        nshards += ms[i].shards;
        for (uint32_t s = 0; s < ms[i].shards; s++) ncalls += ms[i].shard[s].nrep;
    }
    rep->shards = alloc(out, (nshards ? nshards : 1) * sizeof *rep->shards);
    qc_call *calls = alloc(out, (ncalls ? ncalls : 1) * sizeof *calls);
    Quiver__Peer__V1__WaitAppliedRequest *wr = alloc(out, (ncalls ? ncalls : 1) * sizeof *wr);
    Quiver__V1__ReplicaStatus **rs_of = alloc(out, (ncalls ? ncalls : 1) * sizeof *rs_of);
    if (!rep->nodes || !rep->shards || !calls || !wr || !rs_of) goto end;
    for (size_t i = 0; i < nn; i++) {
        Quiver__V1__NodeStatus *ns = alloc(out, sizeof *ns);
        char *id = alloc(out, strlen(nodes[i].id) + 1), *ad = alloc(out, strlen(nodes[i].addr) + 1);
        if (!ns || !id || !ad) goto end;
        quiver__v1__node_status__init(ns);
        ns->id = strcpy(id, nodes[i].id);
        ns->address = strcpy(ad, nodes[i].addr);
        ns->alive = nodes[i].alive;
        rep->nodes[rep->n_nodes++] = ns;
    }
    size_t nc = 0;
    for (size_t i = 0; i < nm; i++)
        for (uint32_t s = 0; s < ms[i].shards; s++) {
            Quiver__V1__ShardStatus *ss = alloc(out, sizeof *ss);
            char *cn = alloc(out, strlen(ms[i].cfg.name) + 1);
            if (!ss || !cn) goto end;
            quiver__v1__shard_status__init(ss);
            ss->collection = strcpy(cn, ms[i].cfg.name);
            ss->shard = s;
            qc_log_last(c, ms[i].cfg.name, s, &ss->log_last_seq);
            const qc_shard *sh = &ms[i].shard[s];
            ss->replicas = alloc(out, (sh->nrep ? sh->nrep : 1) * sizeof *ss->replicas);
            if (!ss->replicas) goto end;
            for (uint32_t k = 0; k < sh->nrep; k++) {
                Quiver__V1__ReplicaStatus *r = alloc(out, sizeof *r);
                char *node = alloc(out, strlen(sh->rep[k].node) + 1);
                char *addr = alloc(out, QC_MAX_ADDR + 1), *ln = alloc(out, QV_MAX_NAME + 1);
                if (!r || !node || !addr || !ln) goto end;
                quiver__v1__replica_status__init(r);
                r->node = strcpy(node, sh->rep[k].node);
                r->state = (Quiver__V1__ReplicaState)sh->rep[k].state;
                r->leaving = sh->rep[k].leaving;
                int alive = 0;
                for (size_t j = 0; j < nn; j++)
                    if (!strcmp(nodes[j].id, sh->rep[k].node)) alive = nodes[j].alive;
                if (!alive) r->state = QUIVER__V1__REPLICA_STATE__REPLICA_DOWN;
                ss->replicas[ss->n_replicas++] = r;
                if (!alive || qc_node_addr(c, sh->rep[k].node, addr)) continue;
                quiver__peer__v1__wait_applied_request__init(&wr[nc]);
                qc_replica_name(ms[i].uid, s, ln);
                wr[nc].replica = ln;
                calls[nc].addr = addr;
                calls[nc].method = M_WAIT;
                calls[nc].req = &wr[nc].base;
                calls[nc].reply_desc = &quiver__peer__v1__wait_applied_response__descriptor;
                rs_of[nc++] = r;
            }
            rep->shards[rep->n_shards++] = ss;
        }
    char ctl[QC_MAX_NODE_ID + 1];
    if (!qc_controller_of(c, ctl)) {
        char *s = alloc(out, strlen(ctl) + 1);
        if (s) rep->controller = strcpy(s, ctl);
    }
    char(*dr)[QC_MAX_NODE_ID + 1] = NULL;
    size_t ndr = 0;
    if (!qc_draining(c, &dr, &ndr) && ndr) {
        rep->draining = alloc(out, ndr * sizeof *rep->draining);
        for (size_t i = 0; rep->draining && i < ndr; i++) {
            char *s = alloc(out, strlen(dr[i]) + 1);
            if (s) rep->draining[rep->n_draining++] = strcpy(s, dr[i]);
        }
    }
    free(dr);
    /* a draining node's replicas are on their way off it, as a move's are */
    for (size_t i = 0; i < rep->n_shards; i++)
        for (size_t k = 0; k < rep->shards[i]->n_replicas; k++)
            for (size_t d = 0; d < rep->n_draining; d++)
                if (!strcmp(rep->shards[i]->replicas[k]->node, rep->draining[d])) rep->shards[i]->replicas[k]->leaving = 1;
    qc_peer_call_all(qc_peers_of(c), calls, nc, deadline);
    for (size_t i = 0; i < nc; i++) {
        Quiver__Peer__V1__WaitAppliedResponse *w = (Quiver__Peer__V1__WaitAppliedResponse *)calls[i].reply;
        if (w) rs_of[i]->applied_seq = w->applied_seq;
        keep(out, calls[i].reply);
    }
    out->reply = &rep->base;
    out->code = GRPC_STATUS_OK;
end:
    for (size_t i = 0; i < nm; i++) qc_meta_free(&ms[i]);
    free(ms);
    free(nodes);
}

/* ---------------------------------------------------------------- scan */
typedef struct scan_acc {
    qr_result *out;
    Quiver__V1__ScanResponse *all; /* items of every message, in arena */
    size_t cap;
} scan_acc;

static int scan_take(void *ctx, ProtobufCMessage *msg)
{
    scan_acc *a = ctx;
    Quiver__V1__ScanResponse *r = (Quiver__V1__ScanResponse *)msg;
    keep(a->out, msg);
    if (a->all->n_items + r->n_items > a->cap) {
        size_t cap = (a->cap + r->n_items) * 2;
        Quiver__V1__Item **items = alloc(a->out, cap * sizeof *items);
        if (!items) return -1;
        if (a->all->n_items) memcpy(items, a->all->items, a->all->n_items * sizeof *items);
        a->all->items = items;
        a->cap = cap;
    }
    memcpy(a->all->items + a->all->n_items, r->items, r->n_items * sizeof *r->items);
    a->all->n_items += r->n_items;
    return 0;
}

/* Shard s's next items after the cursor, from an ACTIVE replica (another
 * one once if it fails). */
static int scan_shard(qc_cluster *c, const qc_meta *m, uint32_t s, const Quiver__V1__ScanRequest *req,
                      uint64_t after_id, int first, uint32_t limit, int64_t deadline, qr_result *out,
                      Quiver__V1__ScanResponse **page)
{
    Quiver__V1__ScanRequest sr = *req;
    char ln[QV_MAX_NAME + 1];
    qc_replica_name(m->uid, s, ln);
    sr.collection = ln;
    sr.after_id = after_id;
    sr.limit = limit;
    const qc_shard *sh = &m->shard[s];
    unsigned rot = atomic_fetch_add(&g_rotate, 1);
    int tried = 0;
    grpc_status_code code = GRPC_STATUS_UNAVAILABLE;
    char msg[512];
    snprintf(msg, sizeof msg, "shard %u of \"%s\" has no ACTIVE replica", s, m->cfg.name);
    for (uint32_t t = 0; t < sh->nrep && tried < 2; t++) {
        uint32_t k = (rot + t) % sh->nrep;
        char addr[QC_MAX_ADDR + 1];
        if (!qc_replica_readable(c, &sh->rep[k], addr)) continue;
        tried++;
        Quiver__V1__ScanResponse *all = alloc(out, sizeof *all);
        if (!all) return -1;
        quiver__v1__scan_response__init(all);
        scan_acc acc = {out, all, 0};
        code = qc_peer_stream(qc_peers_of(c), addr, M_SCAN, &sr.base, &quiver__v1__scan_response__descriptor,
                              deadline, scan_take, &acc, msg, sizeof msg);
        if (code == GRPC_STATUS_OK) {
            if (!first) { /* the cursor's own item came in an earlier page */
                size_t o = 0;
                for (size_t i = 0; i < all->n_items; i++)
                    if (all->items[i]->id > after_id) all->items[o++] = all->items[i];
                all->n_items = o;
            }
            *page = all;
            return 0;
        }
        if (code != GRPC_STATUS_UNAVAILABLE && code != GRPC_STATUS_INTERNAL) break;
    }
    char m2[sizeof out->msg];
    rename_msg(msg, ln, m->cfg.name, m2, sizeof m2);
    fail(out, code, "%s", m2);
    return -1;
}

void qr_scan_page(qc_cluster *c, const Quiver__V1__ScanRequest *req, uint64_t after_id, int first,
                  uint32_t limit, int64_t deadline, qr_result *out, int *more)
{
    qc_meta m = {0};
    memset(out, 0, sizeof *out);
    *more = 0;
    if (get_meta(c, req->collection, deadline, &m, out) || arena(out)) goto end;
    uint32_t S = m.shards;
    /* each shard's next items after the cursor (one message each: the page
     * is small enough to fit one ScanResponse) */
    Quiver__V1__ScanResponse **pages = alloc(out, S * sizeof *pages);
    if (!pages) goto end;
    for (uint32_t s = 0; s < S; s++)
        if (scan_shard(c, &m, s, req, after_id, first, limit, deadline, out, &pages[s])) goto end;
    /* safe to emit: ids up to the smallest last id of the shards whose page
     * was full (their next items are above it) */
    uint64_t bound = UINT64_MAX;
    size_t total = 0;
    for (uint32_t s = 0; s < S; s++) {
        total += pages[s]->n_items;
        if (pages[s]->n_items >= limit) {
            *more = 1;
            uint64_t last = pages[s]->items[pages[s]->n_items - 1]->id;
            if (last < bound) bound = last;
        }
    }
    Quiver__V1__ScanResponse *rep = alloc(out, sizeof *rep);
    if (!rep) goto end;
    quiver__v1__scan_response__init(rep);
    rep->items = alloc(out, (total ? total : 1) * sizeof *rep->items);
    if (!rep->items) goto end;
    size_t *pos = alloc(out, S * sizeof *pos);
    if (!pos) goto end;
    for (;;) { /* k-way merge by id */
        int best = -1;
        for (uint32_t s = 0; s < S; s++)
            if (pos[s] < pages[s]->n_items &&
                (best < 0 || pages[s]->items[pos[s]]->id < pages[best]->items[pos[best]]->id))
                best = (int)s;
        if (best < 0) break;
        Quiver__V1__Item *it = pages[best]->items[pos[best]];
        if (it->id > bound) break;
        if (rep->n_items == limit) { /* a message's worth: the rest comes next */
            *more = 1;
            break;
        }
        rep->items[rep->n_items++] = it;
        pos[best]++;
    }
    out->reply = &rep->base;
    out->code = GRPC_STATUS_OK;
end:
    qc_meta_free(&m);
}
