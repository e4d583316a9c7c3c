/*
 * A node's part in the cluster (cluster/cluster.h): registration, the
 * catalog cache, this node's replicas and their appliers, and writes through
 * the log.
 *
 * etcd layout (values JSON):
 *   /quiver/nodes/<id>        {"addr": "host:port", "shards": true}  under the node's lease
 *   /quiver/collections/<name> {"uid": "<hex>", "config": "<hex of qv_config_encode>",
 *                               "shards": S, "replicas": R,
 *                               "map": [[["node", state], ...], ...]}   one list per shard
 * One key per collection holds its shard map too, so that a create is one
 * compare-and-swap and a state change another.
 *
 * Threads: etcd's watch threads update the caches and wake the reconciler;
 * the reconciler opens and drops local replicas and starts their followers
 * (cluster/log.h), which apply entries through the engine's writer; a pool
 * runs qc_async jobs (the router's calls); a ticker expires apply waiters and
 * brings CATCHING_UP replicas back once they have caught up.
 */
#include "cluster.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "etcd.h"
#include "log.h"
#include "peer.h"
#include "quiver/error.h"
#include "quiver/log.h"
#include "quiver/v1/quiver.pb-c.h"
#include "quiver/peer/v1/peer.pb-c.h"
#include "node_int.h"

/* ------------------------------------------------------------- helpers */
uint32_t qc_shard_of(uint64_t id, uint32_t shards)
{
    /* splitmix64: ids that are sequential spread evenly */
    uint64_t z = id + 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return shards ? (uint32_t)(z % shards) : 0;
}

void qc_replica_name(uint64_t uid, uint32_t shard, char out[QV_MAX_NAME + 1])
{
    snprintf(out, QV_MAX_NAME + 1, "@%016" PRIx64 ".%u", uid, shard);
}

static int parse_replica_name(const char *s, uint64_t *uid, uint32_t *shard)
{
    char *end;
    if (s[0] != '@' || strlen(s) < 19 || s[17] != '.') return -1;
    *uid = strtoull(s + 1, &end, 16);
    if (end != s + 17) return -1;
    unsigned long sh = strtoul(s + 18, &end, 10);
    if (*end || sh >= QC_MAX_SHARDS) return -1;
    *shard = (uint32_t)sh;
    return 0;
}

const char *qc_node_id(const qc_cluster *c) { return c->node_id; }

qc_peers *qc_peers_of(qc_cluster *c) { return c->peers; }

void qc_meta_free(qc_meta *m)
{
    if (!m) return;
    free(m->shard);
    m->shard = NULL;
}

static int meta_copy(qc_meta *dst, const qc_meta *src)
{
    *dst = *src;
    dst->shard = malloc(src->shards * sizeof *dst->shard);
    if (!dst->shard) return QV_NOMEM;
    memcpy(dst->shard, src->shard, src->shards * sizeof *dst->shard);
    return 0;
}

/* ------------------------------------------------------- JSON records */
char *qc_meta_json(const qc_meta *m)
{
    uint8_t cfg[QV_CONFIG_LEN];
    char hex[2 * QV_CONFIG_LEN + 1], uid[17];
    qv_config_encode(cfg, &m->cfg);
    for (int i = 0; i < QV_CONFIG_LEN; i++) snprintf(hex + 2 * i, 3, "%02x", cfg[i]);
    snprintf(uid, sizeof uid, "%016" PRIx64, m->uid);
    json_t *map = json_array();
    for (uint32_t s = 0; s < m->shards; s++) {
        json_t *reps = json_array();
        for (uint32_t r = 0; r < m->shard[s].nrep; r++)
            json_array_append_new(reps, m->shard[s].rep[r].leaving
                                            ? json_pack("[s,i,b]", m->shard[s].rep[r].node,
                                                        (int)m->shard[s].rep[r].state, 1)
                                            : json_pack("[s,i]", m->shard[s].rep[r].node,
                                                        (int)m->shard[s].rep[r].state));
        json_array_append_new(map, reps);
    }
    json_t *o = json_pack("{s:s,s:s,s:i,s:i,s:o}", "uid", uid, "config", hex, "shards",
                          (int)m->shards, "replicas", (int)m->replicas, "map", map);
    if (o && m->creating) json_object_set_new(o, "creating", json_true());
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

int qc_meta_parse(const char *name, const uint8_t *val, size_t len, int64_t mod_rev, qc_meta *m)
{
    memset(m, 0, sizeof *m);
    json_error_t je;
    json_t *o = json_loadb((const char *)val, len, 0, &je);
    const char *uid = NULL, *hex = NULL;
    int shards = 0, replicas = 0;
    json_t *map = NULL;
    if (!o || json_unpack(o, "{s:s,s:s,s:i,s:i,s:o}", "uid", &uid, "config", &hex, "shards", &shards,
                          "replicas", &replicas, "map", &map) ||
        strlen(hex) != 2 * QV_CONFIG_LEN || shards < 1 || shards > QC_MAX_SHARDS || replicas < 1 ||
        replicas > QC_MAX_REPLICAS || !json_is_array(map) || json_array_size(map) != (size_t)shards)
        goto bad;
    uint8_t cfg[QV_CONFIG_LEN];
    for (int i = 0; i < QV_CONFIG_LEN; i++) {
        unsigned b;
        if (sscanf(hex + 2 * i, "%2x", &b) != 1) goto bad;
        cfg[i] = (uint8_t)b;
    }
    if (qv_config_decode(cfg, sizeof cfg, &m->cfg)) goto bad;
    snprintf(m->cfg.name, sizeof m->cfg.name, "%s", name);
    m->uid = strtoull(uid, NULL, 16);
    m->creating = json_is_true(json_object_get(o, "creating"));
    m->shards = (uint32_t)shards;
    m->replicas = (uint32_t)replicas;
    m->mod_rev = mod_rev;
    m->shard = calloc((size_t)shards, sizeof *m->shard);
    if (!m->shard) goto bad;
    for (int s = 0; s < shards; s++) {
        json_t *reps = json_array_get(map, (size_t)s);
        if (!json_is_array(reps) || json_array_size(reps) > QC_MAX_REPLICAS) goto bad;
        for (size_t r = 0; r < json_array_size(reps); r++) {
            const char *node;
            int st;
            if (json_unpack(json_array_get(reps, r), "[s,i]", &node, &st) || st < 0 || st > 2) goto bad;
            snprintf(m->shard[s].rep[r].node, sizeof m->shard[s].rep[r].node, "%s", node);
            m->shard[s].rep[r].state = (qc_state)st;
            m->shard[s].rep[r].leaving = json_is_true(json_array_get(json_array_get(reps, r), 2));
            m->shard[s].nrep++;
        }
    }
    json_decref(o);
    return 0;
bad:
    json_decref(o);
    free(m->shard);
    m->shard = NULL;
    qv_warn("cluster: the etcd record of collection %s does not parse; ignored", name);
    return QV_CORRUPT;
}

/* -------------------------------------------------------------- caches */
/* With c->mu held. */
static size_t meta_find(qc_cluster *c, const char *name, int *found)
{
    size_t lo = 0, hi = c->nmeta;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int cmp = strcmp(c->metas[mid].cfg.name, name);
        if (cmp == 0) {
            *found = 1;
            return mid;
        }
        if (cmp < 0) lo = mid + 1;
        else hi = mid;
    }
    *found = 0;
    return lo;
}

static void meta_put(qc_cluster *c, qc_meta *m) /* takes m's shard array */
{
    pthread_mutex_lock(&c->mu);
    int found;
    size_t i = meta_find(c, m->cfg.name, &found);
    if (found) {
        if (c->metas[i].mod_rev <= m->mod_rev) {
            free(c->metas[i].shard);
            c->metas[i] = *m;
        } else {
            free(m->shard);
        }
    } else if (c->nmeta < c->capmeta ||
               (c->metas = realloc(c->metas, (c->capmeta = c->capmeta ? 2 * c->capmeta : 16) *
                                                  sizeof *c->metas))) {
        memmove(&c->metas[i + 1], &c->metas[i], (c->nmeta - i) * sizeof *c->metas);
        c->metas[i] = *m;
        c->nmeta++;
    }
    pthread_mutex_unlock(&c->mu);
}

static void meta_remove(qc_cluster *c, const char *name)
{
    pthread_mutex_lock(&c->mu);
    int found;
    size_t i = meta_find(c, name, &found);
    if (found) {
        free(c->metas[i].shard);
        memmove(&c->metas[i], &c->metas[i + 1], (c->nmeta - i - 1) * sizeof *c->metas);
        c->nmeta--;
    }
    pthread_mutex_unlock(&c->mu);
}

#define MISS_LOOKUPS_PER_S 50.0

/* Whether a name missing from the cache may be looked up in etcd now: up to
 * MISS_LOOKUPS_PER_S a second (a burst of as many); past that the cache's
 * answer stands until the watch brings the name. */
static int miss_lookup_allowed(qc_cluster *c)
{
    int64_t now = qc_now_ms();
    pthread_mutex_lock(&c->mu);
    c->miss_tokens += (double)(now - c->miss_ms) * MISS_LOOKUPS_PER_S / 1000.0;
    if (c->miss_tokens > MISS_LOOKUPS_PER_S) c->miss_tokens = MISS_LOOKUPS_PER_S;
    c->miss_ms = now;
    int ok = c->miss_tokens >= 1.0;
    if (ok) c->miss_tokens -= 1.0;
    pthread_mutex_unlock(&c->mu);
    return ok;
}

int qc_meta_get(qc_cluster *c, const char *name, qc_meta *out)
{
    pthread_mutex_lock(&c->mu);
    int found, rc = QV_NOTFOUND;
    size_t i = meta_find(c, name, &found);
    if (found) rc = meta_copy(out, &c->metas[i]);
    pthread_mutex_unlock(&c->mu);
    if (rc != QV_NOTFOUND || !c->etcd || !miss_lookup_allowed(c)) return rc;
    /* not in the cache: a collection created through another node a moment
     * ago may not have reached this one's watch yet; etcd says */
    char key[sizeof COLLS_PREFIX + QV_MAX_NAME];
    qc_kv kv;
    snprintf(key, sizeof key, COLLS_PREFIX "%s", name);
    if (strlen(name) > QV_MAX_NAME || qc_etcd_get(c->etcd, key, &kv)) return QV_NOTFOUND;
    qc_cache_coll(c, &kv);
    qc_kv_free(&kv);
    pthread_mutex_lock(&c->mu);
    i = meta_find(c, name, &found);
    rc = found ? meta_copy(out, &c->metas[i]) : QV_NOTFOUND;
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int qc_meta_list(qc_cluster *c, qc_meta **metas, size_t *n)
{
    pthread_mutex_lock(&c->mu);
    *n = 0;
    *metas = calloc(c->nmeta ? c->nmeta : 1, sizeof **metas);
    int rc = *metas ? 0 : QV_NOMEM;
    for (size_t i = 0; !rc && i < c->nmeta; i++)
        if (!(rc = meta_copy(&(*metas)[i], &c->metas[i]))) (*n)++;
    pthread_mutex_unlock(&c->mu);
    return rc;
}

static void node_put(qc_cluster *c, const char *id, const char *addr, int holds, int alive)
{
    pthread_mutex_lock(&c->mu);
    qc_node_info *n = NULL;
    for (size_t i = 0; i < c->nnodes && !n; i++)
        if (!strcmp(c->nodes[i].id, id)) n = &c->nodes[i];
    if (!n && (c->nnodes < c->capnodes ||
               (c->nodes = realloc(c->nodes, (c->capnodes = c->capnodes ? 2 * c->capnodes : 16) *
                                                 sizeof *c->nodes)))) {
        n = &c->nodes[c->nnodes++];
        memset(n, 0, sizeof *n);
        snprintf(n->id, sizeof n->id, "%s", id);
    }
    if (n) {
        if (addr) snprintf(n->addr, sizeof n->addr, "%s", addr);
        if (holds >= 0) n->holds_shards = holds;
        n->alive = alive;
    }
    pthread_mutex_unlock(&c->mu);
}

int qc_nodes(qc_cluster *c, qc_node_info **out, size_t *n)
{
    pthread_mutex_lock(&c->mu);
    *out = malloc((c->nnodes ? c->nnodes : 1) * sizeof **out);
    if (*out) memcpy(*out, c->nodes, c->nnodes * sizeof **out);
    *n = *out ? c->nnodes : 0;
    pthread_mutex_unlock(&c->mu);
    return *out ? 0 : QV_NOMEM;
}

int qc_node_live_addr(qc_cluster *c, const char *id, char addr[QC_MAX_ADDR + 1])
{
    int rc = QV_NOTFOUND;
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->nnodes; i++)
        if (!strcmp(c->nodes[i].id, id) && c->nodes[i].addr[0] && c->nodes[i].alive) {
            snprintf(addr, QC_MAX_ADDR + 1, "%s", c->nodes[i].addr);
            rc = 0;
        }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int qc_replica_readable(qc_cluster *c, const qc_replica *rp, char addr[QC_MAX_ADDR + 1])
{
    char a[QC_MAX_ADDR + 1];
    return rp->state == QC_ACTIVE && qc_node_live_addr(c, rp->node, addr ? addr : a) == 0;
}

uint32_t qc_shard_readable(qc_cluster *c, const qc_shard *sh)
{
    uint32_t n = 0;
    for (uint32_t k = 0; k < sh->nrep; k++) n += (uint32_t)qc_replica_readable(c, &sh->rep[k], NULL);
    return n;
}

int qc_node_addr(qc_cluster *c, const char *id, char addr[QC_MAX_ADDR + 1])
{
    int rc = QV_NOTFOUND;
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->nnodes; i++)
        if (!strcmp(c->nodes[i].id, id) && c->nodes[i].addr[0]) {
            snprintf(addr, QC_MAX_ADDR + 1, "%s", c->nodes[i].addr);
            rc = 0;
        }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

void qc_mark_dirty(qc_cluster *c)
{
    pthread_mutex_lock(&c->cmu);
    c->dirty = 1;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->cmu);
}

static void load_node(qc_cluster *c, const qc_kv *kv)
{
    const char *id = kv->key + strlen(NODES_PREFIX);
    json_t *o = json_loadb((const char *)kv->val, kv->val_len, 0, NULL);
    const char *addr = NULL;
    int holds = 1;
    if (o && !json_unpack(o, "{s:s,s?b}", "addr", &addr, "shards", &holds)) node_put(c, id, addr, holds, 1);
    json_decref(o);
}

void qc_cache_coll(qc_cluster *c, const qc_kv *kv)
{
    qc_meta m;
    if (!qc_meta_parse(kv->key + strlen(COLLS_PREFIX), kv->val, kv->val_len, kv->mod_rev, &m)) meta_put(c, &m);
}

static int load_all(qc_cluster *c, int64_t *rev_nodes, int64_t *rev_colls)
{
    qc_kv *kvs = NULL;
    size_t n = 0;
    int rc = qc_etcd_range(c->etcd, NODES_PREFIX, &kvs, &n, rev_nodes);
    if (rc) return rc;
    for (size_t i = 0; i < n; i++) load_node(c, &kvs[i]);
    qc_kvs_free(kvs, n);
    if ((rc = qc_etcd_range(c->etcd, COLLS_PREFIX, &kvs, &n, rev_colls))) return rc;
    /* the records present now replace the cache (a RESET after compaction) */
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->nmeta; i++) free(c->metas[i].shard);
    c->nmeta = 0;
    pthread_mutex_unlock(&c->mu);
    for (size_t i = 0; i < n; i++) qc_cache_coll(c, &kvs[i]);
    qc_kvs_free(kvs, n);
    return 0;
}

static void on_nodes(void *ctx, int type, const qc_kv *kv)
{
    qc_cluster *c = ctx;
    if (type == QC_PUT) load_node(c, kv);
    else if (type == QC_DELETE) node_put(c, kv->key + strlen(NODES_PREFIX), NULL, -1, 0);
    else if (type == QC_RESET) {
        int64_t a, b;
        load_all(c, &a, &b);
    }
    qc_mark_dirty(c);
}

static void on_colls(void *ctx, int type, const qc_kv *kv)
{
    qc_cluster *c = ctx;
    if (type == QC_PUT) qc_cache_coll(c, kv);
    else if (type == QC_DELETE) meta_remove(c, kv->key + strlen(COLLS_PREFIX));
    else if (type == QC_RESET) {
        int64_t a, b;
        load_all(c, &a, &b);
    }
    qc_mark_dirty(c);
}

/* ------------------------------------------------------------ replicas */
static void wake_waiters(replica *r, int all)
{
    qv_coll_info in;
    qv_coll_info_get(r->lc, &in);
    int64_t now = qc_now_ms();
    pthread_mutex_lock(&r->wmu);
    waiter **pp = &r->waiters, *done = NULL;
    while (*pp) {
        waiter *w = *pp;
        if (all || w->seq <= in.log_seq || w->deadline_ms <= now) {
            *pp = w->next;
            w->next = done;
            done = w;
        } else {
            pp = &w->next;
        }
    }
    pthread_mutex_unlock(&r->wmu);
    while (done) {
        waiter *w = done;
        done = w->next;
        w->done(w->ctx, in.log_seq, !all);
        free(w);
    }
}

typedef struct apply_batch {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t pending;
    int rc;
} apply_batch;

static void apply_done(qv_write *w)
{
    apply_batch *b = w->ctx;
    pthread_mutex_lock(&b->mu);
    if (w->rc && !b->rc) b->rc = w->rc;
    b->pending--;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

/* The follower's callback: the batch's entries as one group of writes (the
 * writer commits them together), each with its log sequence. A failure has
 * the batch delivered again; entries applied already are skipped by the
 * engine (qv_write.log_seq). */
static int apply_entries(void *ctx, const qc_log_msg *msgs, size_t n)
{
    replica *r = ctx;
    if (n && !atomic_load(&r->gap)) {
        qv_coll_info in;
        qv_coll_info_get(r->lc, &in);
        if (msgs[0].seq > in.log_seq + 1) {
            /* entries it never applied are gone from the log (its size cap):
             * the reconciler reopens it from a snapshot */
            qv_warn("cluster: replica %s of %s: the log starts at %" PRIu64 ", after %" PRIu64
                    " that it applied: installing a snapshot",
                    r->lname, r->name, msgs[0].seq, in.log_seq);
            atomic_store(&r->gap, 1);
            qc_mark_dirty(r->cl);
        }
    }
    if (atomic_load(&r->gap)) return -1;
    qv_write *ws = calloc(n, sizeof *ws);
    void **mems = calloc(n, sizeof *mems);
    apply_batch b = {.rc = 0};
    pthread_mutex_init(&b.mu, NULL);
    pthread_cond_init(&b.cv, NULL);
    int rc = ws && mems ? 0 : QV_NOMEM;
    size_t submitted = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        qc_entry e;
        if ((rc = qc_entry_decode(msgs[i].data, msgs[i].len, &e, &mems[i]))) {
            qv_error("cluster: replica %s of %s: log entry %" PRIu64 " cannot be applied: %s; "
                     "the replica stops here", r->lname, r->name, msgs[i].seq, qv_strerror(rc));
            break;
        }
        qv_write *w = &ws[i];
        w->kind = e.kind == QC_ENTRY_UPSERT ? QV_W_UPSERT : QV_W_DELETE;
        w->coll = r->lc;
        w->n = e.n;
        w->ids = e.ids;
        w->vecs = e.vecs;
        w->attr_off = e.attr_off;
        w->attrs = e.attrs;
        w->log_seq = msgs[i].seq;
        w->done = apply_done;
        w->ctx = &b;
        if (e.kind == QC_ENTRY_UPSERT && e.dim != qv_coll_config_of(r->lc)->dim) {
            qv_error("cluster: replica %s: log entry %" PRIu64 " has dim %u, the collection %u",
                     r->lname, msgs[i].seq, e.dim, qv_coll_config_of(r->lc)->dim);
            rc = QV_CORRUPT;
            break;
        }
        pthread_mutex_lock(&b.mu);
        b.pending++;
        pthread_mutex_unlock(&b.mu);
        submitted++;
        qv_db_submit(r->cl->o.db, w);
    }
    pthread_mutex_lock(&b.mu);
    while (b.pending > 0) pthread_cond_wait(&b.cv, &b.mu);
    pthread_mutex_unlock(&b.mu);
    if (!rc) rc = b.rc;
    for (size_t i = 0; mems && i < n; i++) free(mems[i]);
    free(mems);
    free(ws);
    pthread_mutex_destroy(&b.mu);
    pthread_cond_destroy(&b.cv);
    if (submitted) wake_waiters(r, 0);
    if (rc && rc != QV_SHUTDOWN)
        qv_warn("cluster: replica %s of %s: applying entries failed (%s); retrying", r->lname, r->name,
                qv_strerror(rc));
    return rc ? -1 : 0;
}

static replica *replica_find(qc_cluster *c, const char *lname)
{
    for (replica *r = c->replicas; r; r = r->next)
        if (!strcmp(r->lname, lname)) return r;
    return NULL;
}

static int create_local(qc_cluster *c, const qc_meta *m, const char *lname)
{
    qv_write w;
    memset(&w, 0, sizeof w);
    w.kind = QV_W_CREATE;
    w.config = m->cfg;
    snprintf(w.config.name, sizeof w.config.name, "%s", lname);
    int rc = qv_db_write_sync(c->o.db, &w);
    return rc == QV_EXISTS ? 0 : rc;
}

static void drop_local(qc_cluster *c, const char *lname)
{
    qv_write w;
    memset(&w, 0, sizeof w);
    w.kind = QV_W_DROP;
    snprintf(w.config.name, sizeof w.config.name, "%s", lname);
    int rc = qv_db_write_sync(c->o.db, &w);
    if (rc && rc != QV_NOTFOUND) qv_warn("cluster: cannot drop replica %s: %s", lname, qv_strerror(rc));
}

/* One call to the peer at addr, a minute at most: its reply (free with
 * protobuf_c_message_free_unpacked), or NULL after a warning naming what of
 * replica lname failed. */
static ProtobufCMessage *peer_call1(qc_cluster *c, const char *addr, const char *method, ProtobufCMessage *req,
                                   const ProtobufCMessageDescriptor *reply, const char *what, const char *lname)
{
    qc_call call = {addr, method, req, reply, 0, 0, "", NULL, NULL, 0};
    qc_peer_call_all(c->peers, &call, 1, qc_now_ms() + 60000);
    if (call.code == GRPC_STATUS_OK && call.reply) return call.reply;
    qv_warn("cluster: %s of %s from %s: %s", what, lname, addr, call.msg);
    if (call.reply) protobuf_c_message_free_unpacked(call.reply, NULL);
    return NULL;
}

static void index_adopted(void *ctx, int rc, const char *msg)
{
    char *tmp = ctx;
    if (rc) qv_warn("cluster: a peer's index file (%s) not used: %s; the replica builds its own", tmp, msg);
    unlink(tmp);
    free(tmp);
}

/* After a snapshot: the peer's index file of the replica, a chunk at a time
 * (each checked with SHA-256; a file the peer rebuilt meanwhile is refused),
 * into a temp file beside our index files, then a rebuild that keeps its
 * training and calibration and refills it with the items just installed:
 * no k-means and no calibration on this node. Anything missing or failing
 * leaves the ordinary automatic rebuild to do the work. */
static void fetch_index(qc_cluster *c, const char *addr, const char *lname, qv_coll *lc)
{
    char path[4200], tmp[4300];
    if (qv_coll_index_file(lc, path, sizeof path) == QV_NOTFOUND && !path[0]) return;
    snprintf(tmp, sizeof tmp, "%s.tmp.peer", path);
    FILE *f = NULL;
    uint64_t off = 0, size = 0, id = 0;
    int ok = 0;
    for (;;) {
        Quiver__Peer__V1__IndexFileRequest req = QUIVER__PEER__V1__INDEX_FILE_REQUEST__INIT;
        req.replica = (char *)lname;
        req.offset = off;
        req.file_id = id;
        Quiver__Peer__V1__IndexFileChunk *ch = (Quiver__Peer__V1__IndexFileChunk *)peer_call1(
            c, addr, "/quiver.peer.v1.Peer/IndexFile", &req.base, &quiver__peer__v1__index_file_chunk__descriptor,
            "index file", lname);
        if (!ch) break;
        int stop = 1;
        uint8_t sha[32];
        if (!ch->present) {
            qv_info("cluster: %s has no index file of %s yet: this replica builds its own", addr, lname);
        } else if (ch->sha256.len != 32 || (SHA256(ch->data.data, ch->data.len, sha), memcmp(sha, ch->sha256.data, 32))) {
            qv_error("cluster: index file of %s from %s: a chunk fails its SHA-256", lname, addr);
        } else if (!f && !(f = fopen(tmp, "wb"))) {
            qv_warn("cluster: cannot write %s: %s", tmp, strerror(errno));
        } else if (ch->data.len && fwrite(ch->data.data, 1, ch->data.len, f) != ch->data.len) {
            qv_warn("cluster: cannot write %s: %s", tmp, strerror(errno));
        } else {
            id = ch->file_id;
            size = ch->size;
            off += ch->data.len;
            atomic_fetch_add(&c->snapshot_bytes, ch->data.len);
            ok = off >= size;
            stop = ok || !ch->data.len;
        }
        protobuf_c_message_free_unpacked(&ch->base, NULL);
        if (stop) break;
    }
    if (f && fclose(f)) ok = 0;
    if (!ok) {
        if (f) unlink(tmp);
        return;
    }
    char *ctx = strdup(tmp), err[256];
    qv_rebuild_req rr = {.finished = index_adopted, .ctx = ctx, .template_path = tmp};
    if (!ctx || qv_coll_rebuild(lc, &rr, err, sizeof err)) {
        qv_warn("cluster: the index file of %s from %s not used: %s", lname, addr, ctx ? err : "out of memory");
        unlink(tmp);
        free(ctx);
        return;
    }
    qv_info("cluster: replica %s refills the index file of %s (%" PRIu64 " bytes) instead of training its own",
            lname, addr, size);
}

/* A replica whose log was trimmed below what it needs installs a snapshot
 * of an ACTIVE peer's replica (its items, a chunk at a time, each checked
 * with SHA-256) and then replays the log after the sequence the peer had
 * applied before the first chunk was read: entries are applied in order and
 * idempotent, so whatever the chunks read later, the replay converges. */
static int install_snapshot(qc_cluster *c, const qc_meta *m, uint32_t shard, qv_coll *lc, const char *lname)
{
    char addr[QC_MAX_ADDR + 1] = "";
    const qc_shard *sh = &m->shard[shard];
    for (uint32_t k = 0; k < sh->nrep; k++)
        if (strcmp(sh->rep[k].node, c->node_id) && qc_replica_readable(c, &sh->rep[k], addr)) break;
    if (!addr[0]) {
        qv_warn("cluster: replica %s needs a snapshot and no ACTIVE peer has one yet", lname);
        return QV_BUSY;
    }
    uint64_t after = 0, seq = 0, items = 0;
    int first = 1, last = 0, rc = 0;
    while (!last && !rc) {
        Quiver__Peer__V1__SnapshotRequest req = QUIVER__PEER__V1__SNAPSHOT_REQUEST__INIT;
        req.replica = (char *)lname;
        req.after_id = after;
        req.first = first;
        Quiver__Peer__V1__SnapshotChunk *ch = (Quiver__Peer__V1__SnapshotChunk *)peer_call1(
            c, addr, "/quiver.peer.v1.Peer/Snapshot", &req.base, &quiver__peer__v1__snapshot_chunk__descriptor,
            "snapshot", lname);
        if (!ch) {
            rc = QV_IO;
            break;
        }
        if (first) seq = ch->applied_seq;
        first = 0;
        last = ch->last;
        if (ch->entry.len) {
            uint8_t sha[32];
            SHA256(ch->entry.data, ch->entry.len, sha);
            qc_entry e;
            void *mem = NULL;
            if (ch->sha256.len != 32 || memcmp(sha, ch->sha256.data, 32)) {
                qv_error("cluster: snapshot of %s from %s: a chunk fails its SHA-256", lname, addr);
                rc = QV_CORRUPT;
            } else if (!(rc = qc_entry_decode(ch->entry.data, ch->entry.len, &e, &mem))) {
                qv_write w;
                memset(&w, 0, sizeof w);
                w.kind = QV_W_UPSERT;
                w.coll = lc;
                w.n = e.n;
                w.ids = e.ids;
                w.vecs = e.vecs;
                w.attr_off = e.attr_off;
                w.attrs = e.attrs;
                rc = qv_db_write_sync(c->o.db, &w);
                items += e.n;
                atomic_fetch_add(&c->snapshot_bytes, ch->entry.len);
            }
            free(mem);
            after = ch->last_id;
        }
        protobuf_c_message_free_unpacked(&ch->base, NULL);
    }
    if (!rc) { /* what it holds now: the log after seq */
        qv_write w;
        memset(&w, 0, sizeof w);
        w.kind = QV_W_UPSERT;
        w.coll = lc;
        w.log_seq = seq;
        rc = qv_db_write_sync(c->o.db, &w);
    }
    if (!rc) {
        qv_info("cluster: replica %s installed a snapshot of %" PRIu64 " items from %s (log sequence %" PRIu64 ")",
                lname, items, addr, seq);
        fetch_index(c, addr, lname, lc);
    }
    return rc;
}

/* Open (create if needed) replica (uid, shard) of m and start its follower
 * after the sequence it has applied. With c->rmu held, on the reconciler (or
 * before it starts): it lets go of rmu while it installs a snapshot. */
static void replica_open(qc_cluster *c, const qc_meta *m, uint32_t shard)
{
    char lname[QV_MAX_NAME + 1];
    qc_replica_name(m->uid, shard, lname);
    replica *r = replica_find(c, lname);
    if (r) {
        r->wanted = 1;
        return;
    }
    if (create_local(c, m, lname)) return; /* retried at the next reconcile */
    r = calloc(1, sizeof *r);
    if (!r) return;
    r->cl = c;
    r->uid = m->uid;
    r->shard = shard;
    snprintf(r->name, sizeof r->name, "%s", m->cfg.name);
    snprintf(r->lname, sizeof r->lname, "%s", lname);
    pthread_mutex_init(&r->wmu, NULL);
    if (qv_db_coll_get(c->o.db, lname, &r->lc)) {
        pthread_mutex_destroy(&r->wmu);
        free(r);
        return;
    }
    qv_coll_info in;
    qv_coll_info_get(r->lc, &in);
    uint64_t last = 0, first = 0;
    if (!qc_log_last_seq(c->log, r->name, shard, &last, &first) && first > in.log_seq + 1 && last > 0) {
        /* the log starts after what this replica has: a snapshot, into an
         * empty collection (a stale one may hold items deleted since) */
        if (in.count) {
            qv_coll_release(r->lc);
            drop_local(c, lname);
            if (create_local(c, m, lname) || qv_db_coll_get(c->o.db, lname, &r->lc)) {
                pthread_mutex_destroy(&r->wmu);
                free(r);
                return;
            }
        }
        /* minutes for a big shard: the other replicas' readers (write
         * acknowledgements waiting on this node) must not wait for it. Only
         * this thread changes the list, and r is not on it yet. */
        pthread_mutex_unlock(&c->rmu);
        int irc = install_snapshot(c, m, shard, r->lc, lname);
        pthread_mutex_lock(&c->rmu);
        if (irc) {
            qv_coll_release(r->lc);
            pthread_mutex_destroy(&r->wmu);
            free(r);
            return; /* retried at the next reconcile */
        }
        qv_coll_info_get(r->lc, &in);
    }
    int rc = qc_log_follow(c->log, r->name, shard, in.log_seq + 1, apply_entries, r, &r->follow);
    if (rc) {
        qv_warn("cluster: replica %s of %s shard %u: cannot follow the log yet: %s", lname, r->name,
                shard, qc_log_errmsg());
        qv_coll_release(r->lc);
        pthread_mutex_destroy(&r->wmu);
        free(r);
        return;
    }
    qv_info("cluster: holding replica %s (collection %s, shard %u) from log sequence %" PRIu64,
            lname, r->name, shard, in.log_seq + 1);
    r->wanted = 1;
    r->next = c->replicas;
    c->replicas = r;
}

static void replica_close(replica *r, int drop)
{
    if (r->follow) qc_follow_stop(r->follow);
    wake_waiters(r, 1);
    qv_coll_release(r->lc);
    if (drop) {
        qv_info("cluster: dropping replica %s (collection %s, shard %u)", r->lname, r->name, r->shard);
        drop_local(r->cl, r->lname);
    }
    pthread_mutex_destroy(&r->wmu);
    free(r);
}

/* quiverd-test's late watch (qc_opts.test_open_delay_ms): a replica this node
 * is given opens that much later, as on a node whose etcd watch lags. */
static void test_open_delay(qc_cluster *c, const qc_meta *metas, size_t nm)
{
    int fresh = 0;
    pthread_mutex_lock(&c->rmu);
    for (size_t i = 0; i < nm && !fresh && !c->o.no_shards; i++)
        for (uint32_t s = 0; s < metas[i].shards && !metas[i].creating && !fresh; s++)
            for (uint32_t k = 0; k < metas[i].shard[s].nrep && !fresh; k++) {
                char lname[QV_MAX_NAME + 1];
                qc_replica_name(metas[i].uid, s, lname);
                fresh = !strcmp(metas[i].shard[s].rep[k].node, c->node_id) && !replica_find(c, lname);
            }
    pthread_mutex_unlock(&c->rmu);
    if (!fresh) return;
    struct timespec ts = {c->o.test_open_delay_ms / 1000, (long)(c->o.test_open_delay_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Make the replicas this node holds match the shard map. */
static void reconcile(qc_cluster *c)
{
    qc_meta *metas = NULL;
    size_t nm = 0;
    if (qc_meta_list(c, &metas, &nm)) return;
    if (c->o.test_open_delay_ms) test_open_delay(c, metas, nm);
    pthread_mutex_lock(&c->rmu);
    for (replica **pp = &c->replicas; *pp;) { /* reopened below, from a snapshot */
        replica *r = *pp;
        if (atomic_load(&r->gap)) {
            *pp = r->next;
            replica_close(r, 0);
        } else {
            pp = &r->next;
        }
    }
    for (replica *r = c->replicas; r; r = r->next) r->wanted = 0;
    for (size_t i = 0; i < nm && !c->o.no_shards; i++)
        for (uint32_t s = 0; s < metas[i].shards && !metas[i].creating; s++)
            for (uint32_t k = 0; k < metas[i].shard[s].nrep; k++)
                if (!strcmp(metas[i].shard[s].rep[k].node, c->node_id)) replica_open(c, &metas[i], s);
    replica **pp = &c->replicas;
    while (*pp) {
        replica *r = *pp;
        if (!r->wanted) {
            *pp = r->next;
            replica_close(r, 1);
        } else {
            pp = &r->next;
        }
    }
    pthread_mutex_unlock(&c->rmu);
    /* local replicas no record names (dropped while this node was away) */
    qv_coll **cs = NULL;
    size_t nc = 0;
    if (!qv_db_coll_list(c->o.db, &cs, &nc)) {
        for (size_t i = 0; i < nc; i++) {
            const char *ln = qv_coll_config_of(cs[i])->name;
            uint64_t uid;
            uint32_t sh;
            int keep = parse_replica_name(ln, &uid, &sh) != 0; /* not a replica: not ours to drop */
            for (size_t j = 0; j < nm && !keep; j++)
                if (metas[j].uid == uid && sh < metas[j].shards)
                    for (uint32_t k = 0; k < metas[j].shard[sh].nrep; k++)
                        if (!strcmp(metas[j].shard[sh].rep[k].node, c->node_id)) keep = 1;
            char name[QV_MAX_NAME + 1];
            snprintf(name, sizeof name, "%s", ln);
            qv_coll_release(cs[i]);
            if (!keep && !c->o.no_shards) {
                qv_info("cluster: dropping replica %s: no collection holds it here any more", name);
                drop_local(c, name);
            }
        }
        free(cs);
    }
    for (size_t i = 0; i < nm; i++) qc_meta_free(&metas[i]);
    free(metas);
}

/* CATCHING_UP replicas of this node that have applied the log's last entry
 * become ACTIVE again. */
static void promote_caught_up(qc_cluster *c)
{
    qc_meta *metas = NULL;
    size_t nm = 0;
    if (qc_meta_list(c, &metas, &nm)) return;
    int64_t now = qc_now_ms();
    int waiting = 0;
    for (size_t i = 0; i < nm; i++)
        for (uint32_t s = 0; s < metas[i].shards; s++)
            for (uint32_t k = 0; k < metas[i].shard[s].nrep; k++) {
                qc_replica *rp = &metas[i].shard[s].rep[k];
                if (strcmp(rp->node, c->node_id) || rp->state == QC_ACTIVE) continue;
                char lname[QV_MAX_NAME + 1];
                uint64_t applied, last, first;
                qc_replica_name(metas[i].uid, s, lname);
                if (qc_local_applied(c, lname, &applied)) continue;
                if (qc_log_last_seq(c->log, metas[i].cfg.name, s, &last, &first)) continue;
                if (applied >= last && c->o.test_promote_delay_ms) {
                    if (!c->promote_after_ms) c->promote_after_ms = now + c->o.test_promote_delay_ms;
                    if (now < c->promote_after_ms) {
                        waiting = 1;
                        continue;
                    }
                }
                if (applied >= last) {
                    qv_info("cluster: replica %s (collection %s, shard %u) caught up at %" PRIu64
                            ": ACTIVE", lname, metas[i].cfg.name, s, applied);
                    qc_set_state(c, metas[i].cfg.name, s, c->node_id, QC_ACTIVE);
                }
            }
    if (!waiting) c->promote_after_ms = 0;
    for (size_t i = 0; i < nm; i++) qc_meta_free(&metas[i]);
    free(metas);
}

static int register_node(qc_cluster *c, char *err, size_t errlen);

static void *reconciler_main(void *arg)
{
    qc_cluster *c = arg;
    pthread_mutex_lock(&c->cmu);
    while (!c->stop) {
        if (!c->dirty) {
            struct timespec t;
            clock_gettime(CLOCK_REALTIME, &t);
            t.tv_sec += 1;
            pthread_cond_timedwait(&c->cv, &c->cmu, &t);
        }
        if (c->stop) break;
        c->dirty = 0;
        pthread_mutex_unlock(&c->cmu);
        if (atomic_load(&c->lease_lost)) {
            char err[300];
            qc_etcd_lease_revoke(c->etcd, c->lease); /* stops its keepalive */
            if (register_node(c, err, sizeof err) == 0) {
                atomic_store(&c->lease_lost, 0);
                qv_info("cluster: node %s registered again", c->node_id);
            } else {
                qv_warn("cluster: node %s cannot register again yet: %s", c->node_id, err);
            }
        }
        reconcile(c); /* every second as well: retries what failed */
        promote_caught_up(c);
        qc_hook tick = atomic_load(&c->ctl_tick);
        if (tick) tick(c);
        pthread_mutex_lock(&c->cmu);
    }
    pthread_mutex_unlock(&c->cmu);
    return NULL;
}

static void *ticker_main(void *arg)
{
    qc_cluster *c = arg;
    pthread_mutex_lock(&c->cmu);
    while (!c->stop) {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        t.tv_nsec += 20 * 1000000L;
        if (t.tv_nsec >= 1000000000L) {
            t.tv_sec++;
            t.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&c->cv, &c->cmu, &t);
        pthread_mutex_unlock(&c->cmu);
        pthread_mutex_lock(&c->rmu);
        for (replica *r = c->replicas; r; r = r->next) wake_waiters(r, 0);
        pthread_mutex_unlock(&c->rmu);
        pthread_mutex_lock(&c->cmu);
    }
    pthread_mutex_unlock(&c->cmu);
    return NULL;
}

int qc_local_applied(qc_cluster *c, const char *lname, uint64_t *seq)
{
    pthread_mutex_lock(&c->rmu);
    replica *r = replica_find(c, lname);
    if (r) {
        qv_coll_info in;
        qv_coll_info_get(r->lc, &in);
        *seq = in.log_seq;
    }
    pthread_mutex_unlock(&c->rmu);
    return r ? 0 : QV_NOTFOUND;
}

void qc_local_wait(qc_cluster *c, const char *lname, uint64_t seq, int64_t deadline_ms,
                   void (*done)(void *ctx, uint64_t applied, int exists), void *ctx)
{
    pthread_mutex_lock(&c->rmu);
    replica *r = replica_find(c, lname);
    waiter *w = r ? calloc(1, sizeof *w) : NULL;
    if (w) {
        w->seq = seq;
        w->deadline_ms = deadline_ms;
        w->done = done;
        w->ctx = ctx;
        pthread_mutex_lock(&r->wmu);
        w->next = r->waiters;
        r->waiters = w;
        pthread_mutex_unlock(&r->wmu);
        wake_waiters(r, 0); /* answered at once when applied already */
    }
    pthread_mutex_unlock(&c->rmu);
    if (!w) done(ctx, 0, 0);
}

/* ---------------------------------------------------------------- pool */
static void *pool_main(void *arg)
{
    qc_cluster *c = arg;
    pthread_mutex_lock(&c->jmu);
    for (;;) {
        while (!c->jhead && !c->jstop) pthread_cond_wait(&c->jcv, &c->jmu);
        if (!c->jhead) break;
        job *j = c->jhead;
        c->jhead = j->next;
        if (!c->jhead) c->jtail = NULL;
        pthread_mutex_unlock(&c->jmu);
        j->fn(j->ctx);
        free(j);
        pthread_mutex_lock(&c->jmu);
    }
    pthread_mutex_unlock(&c->jmu);
    return NULL;
}

int qc_async(qc_cluster *c, void (*fn)(void *ctx), void *ctx)
{
    job *j = calloc(1, sizeof *j);
    if (!j) return QV_NOMEM;
    j->fn = fn;
    j->ctx = ctx;
    pthread_mutex_lock(&c->jmu);
    if (c->jtail) c->jtail->next = j;
    else c->jhead = j;
    c->jtail = j;
    pthread_cond_signal(&c->jcv);
    pthread_mutex_unlock(&c->jmu);
    return 0;
}

/* ------------------------------------------------------------- catalog ops */
uint64_t qc_random64(void)
{
    uint64_t v = 0;
    FILE *f = fopen("/dev/urandom", "rb");
    if (!f || fread(&v, sizeof v, 1, f) != 1) {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        v = (uint64_t)t.tv_nsec * 0x9e3779b97f4a7c15ULL ^ (uint64_t)t.tv_sec ^ (uint64_t)getpid();
    }
    if (f) fclose(f);
    return v ? v : 1;
}

int qc_create(qc_cluster *c, const qv_coll_config *cfg, uint32_t shards, uint32_t replicas, char *err,
              size_t errlen)
{
    if (shards < 1 || shards > QC_MAX_SHARDS || replicas < 1 || replicas > QC_MAX_REPLICAS) {
        snprintf(err, errlen, "shards %u / replicas %u out of range (1..%d / 1..%d)", shards, replicas,
                 QC_MAX_SHARDS, QC_MAX_REPLICAS);
        return QV_INVALID;
    }
    /* the live nodes that hold shards, and how many replicas each has */
    qc_node_info *nodes = NULL;
    size_t nn = 0;
    if (qc_nodes(c, &nodes, &nn)) return QV_NOMEM;
    size_t live = 0;
    for (size_t i = 0; i < nn; i++)
        if (nodes[i].alive && nodes[i].holds_shards) nodes[live++] = nodes[i];
    if (live < replicas) {
        snprintf(err, errlen, "replicas %u needs as many nodes that hold shards; the cluster has %zu",
                 replicas, live);
        free(nodes);
        return QV_INVALID;
    }
    size_t *load = calloc(live, sizeof *load);
    qc_meta *all = NULL;
    size_t na = 0;
    if (!load || qc_meta_list(c, &all, &na)) {
        free(nodes);
        free(load);
        return QV_NOMEM;
    }
    for (size_t i = 0; i < na; i++) {
        for (uint32_t s = 0; s < all[i].shards; s++)
            for (uint32_t k = 0; k < all[i].shard[s].nrep; k++)
                for (size_t j = 0; j < live; j++)
                    if (!strcmp(all[i].shard[s].rep[k].node, nodes[j].id)) load[j]++;
        qc_meta_free(&all[i]);
    }
    free(all);
    qc_meta m = {.cfg = *cfg, .uid = qc_random64(), .shards = shards, .replicas = replicas};
    m.shard = calloc(shards, sizeof *m.shard);
    for (uint32_t s = 0; m.shard && s < shards; s++)
        for (uint32_t k = 0; k < replicas; k++) {
            /* the least loaded node not yet in this shard (ties: id order) */
            size_t best = live;
            for (size_t j = 0; j < live; j++) {
                int used = 0;
                for (uint32_t q = 0; q < k; q++) used |= !strcmp(m.shard[s].rep[q].node, nodes[j].id);
                if (used) continue;
                if (best == live || load[j] < load[best] ||
                    (load[j] == load[best] && strcmp(nodes[j].id, nodes[best].id) < 0))
                    best = j;
            }
            snprintf(m.shard[s].rep[k].node, sizeof m.shard[s].rep[k].node, "%s", nodes[best].id);
            m.shard[s].rep[k].state = QC_ACTIVE;
            m.shard[s].nrep++;
            load[best]++;
        }
    free(nodes);
    free(load);
    /* the name first (one of two racing creates wins it, by compare-and-swap),
     * marked creating so that no replica opens yet; then the log (a stream
     * left by an earlier collection of this name is emptied); then the mark
     * goes and the replicas open */
    m.creating = 1;
    char *js = m.shard ? qc_meta_json(&m) : NULL;
    int rc = js ? 0 : QV_NOMEM;
    char key[sizeof COLLS_PREFIX + QV_MAX_NAME];
    snprintf(key, sizeof key, COLLS_PREFIX "%s", cfg->name);
    if (!rc) {
        rc = qc_etcd_create(c->etcd, key, js, strlen(js), 0);
        if (rc == QV_EXISTS) snprintf(err, errlen, "collection \"%s\" already exists", cfg->name);
        else if (rc) snprintf(err, errlen, "etcd: %s", qc_etcd_errmsg());
    }
    int claimed = !rc;
    for (uint32_t s = 0; !rc && s < shards; s++) {
        qc_log_stream_delete(c->log, cfg->name, s);
        if ((rc = qc_log_stream_ensure(c->log, cfg->name, s, c->log_replicas)))
            snprintf(err, errlen, "cannot create the log of shard %u: %s", s, qc_log_errmsg());
    }
    if (!rc) {
        qc_kv kv;
        rc = qc_etcd_get(c->etcd, key, &kv);
        if (!rc) {
            m.creating = 0;
            free(js);
            js = qc_meta_json(&m);
            rc = js ? qc_etcd_cas(c->etcd, key, js, strlen(js), kv.mod_rev) : QV_NOMEM;
            qc_kv_free(&kv);
        }
        if (rc) snprintf(err, errlen, "etcd: the collection's record changed meanwhile (%s)", qv_strerror(rc));
    }
    if (rc && claimed) qc_etcd_delete(c->etcd, key); /* the name is free again */
    if (!rc) {
        /* into the cache now: the caller's next call must see it */
        qc_kv kv;
        if (!qc_etcd_get(c->etcd, key, &kv)) {
            qc_cache_coll(c, &kv);
            qc_kv_free(&kv);
        }
        qc_mark_dirty(c);
    }
    free(js);
    qc_meta_free(&m);
    return rc;
}

int qc_wait_open(qc_cluster *c, const char *name, int64_t until_ms)
{
    qc_meta m;
    if (qc_meta_get(c, name, &m)) return QV_NOTFOUND;
    int open = 0;
    for (;;) {
        open = 1;
        for (uint32_t s = 0; s < m.shards && open; s++)
            for (uint32_t k = 0; k < m.shard[s].nrep && open; k++) {
                char addr[QC_MAX_ADDR + 1], ln[QV_MAX_NAME + 1];
                uint64_t applied;
                qc_replica_name(m.uid, s, ln);
                open = !qc_node_live_addr(c, m.shard[s].rep[k].node, addr) &&
                       !qc_peer_applied(c, addr, ln, &applied);
            }
        if (open || qc_now_ms() >= until_ms) break;
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    qc_meta_free(&m);
    return open ? 0 : QV_CANCELLED;
}

int qc_drop(qc_cluster *c, const char *name, char *err, size_t errlen)
{
    qc_meta m;
    if (qc_meta_get(c, name, &m)) return QV_NOTFOUND;
    char key[sizeof COLLS_PREFIX + QV_MAX_NAME];
    snprintf(key, sizeof key, COLLS_PREFIX "%s", name);
    int rc = qc_etcd_delete(c->etcd, key);
    if (rc == QV_NOTFOUND) {
        meta_remove(c, name);
        qc_meta_free(&m);
        return QV_NOTFOUND;
    }
    if (rc) {
        snprintf(err, errlen, "etcd: %s", qc_etcd_errmsg());
        qc_meta_free(&m);
        return rc;
    }
    meta_remove(c, name);
    qc_mark_dirty(c);
    for (uint32_t s = 0; s < m.shards; s++) qc_log_stream_delete(c->log, name, s);
    qc_meta_free(&m);
    return 0;
}

/* Change collection coll's record in etcd: change(m, ctx) edits m and says
 * whether it changed anything; written with compare-and-swap on the record's
 * revision (retried on a newer one), then cached. 0, QV_NOTFOUND, QV_BUSY
 * (kept losing the race), QV_IO. */
static int meta_update(qc_cluster *c, const char *coll, int (*change)(qc_meta *m, const void *ctx), const void *ctx)
{
    char key[sizeof COLLS_PREFIX + QV_MAX_NAME];
    snprintf(key, sizeof key, COLLS_PREFIX "%s", coll);
    for (int attempt = 0; attempt < 5; attempt++) {
        qc_kv kv;
        int rc = qc_etcd_get(c->etcd, key, &kv);
        if (rc) return rc == QV_NOTFOUND ? rc : QV_IO;
        qc_meta m;
        rc = qc_meta_parse(coll, kv.val, kv.val_len, kv.mod_rev, &m);
        qc_kv_free(&kv);
        if (rc) return rc;
        int changed = change(&m, ctx);
        char *js = changed ? qc_meta_json(&m) : NULL;
        rc = changed ? (js ? qc_etcd_cas(c->etcd, key, js, strlen(js), m.mod_rev) : QV_NOMEM) : 0;
        free(js);
        qc_meta_free(&m);
        if (rc != QV_BUSY) {
            if (!rc && changed) {
                qc_kv k2;
                if (!qc_etcd_get(c->etcd, key, &k2)) {
                    qc_cache_coll(c, &k2);
                    qc_kv_free(&k2);
                }
            }
            return rc ? QV_IO : 0;
        }
    }
    return QV_BUSY;
}

typedef struct state_change {
    uint32_t shard;
    const char *node;
    qc_state st;
} state_change;

static int change_state(qc_meta *m, const void *ctx)
{
    const state_change *sc = ctx;
    int changed = 0;
    for (uint32_t k = 0; sc->shard < m->shards && k < m->shard[sc->shard].nrep; k++)
        if (!strcmp(m->shard[sc->shard].rep[k].node, sc->node) && m->shard[sc->shard].rep[k].state != sc->st) {
            m->shard[sc->shard].rep[k].state = sc->st;
            changed = 1;
        }
    return changed;
}

int qc_set_state(qc_cluster *c, const char *coll, uint32_t shard, const char *node, qc_state st)
{
    state_change sc = {shard, node, st};
    return meta_update(c, coll, change_state, &sc);
}

static int change_spec(qc_meta *m, const void *ctx)
{
    const qv_index_params *spec = ctx;
    if (!memcmp(&m->cfg.spec, spec, sizeof *spec)) return 0;
    m->cfg.spec = *spec;
    return 1;
}

int qc_set_spec(qc_cluster *c, const char *coll, const qv_index_params *spec)
{
    return meta_update(c, coll, change_spec, spec);
}

void qc_local_replicas(qc_cluster *c, void (*fn)(void *ctx, const qc_replica_info *r), void *ctx)
{
    qc_meta *metas = NULL;
    size_t nm = 0;
    if (qc_meta_list(c, &metas, &nm)) return;
    for (size_t i = 0; i < nm; i++)
        for (uint32_t s = 0; s < metas[i].shards; s++)
            for (uint32_t k = 0; k < metas[i].shard[s].nrep; k++) {
                if (strcmp(metas[i].shard[s].rep[k].node, c->node_id)) continue;
                char lname[QV_MAX_NAME + 1];
                qc_replica_info ri = {metas[i].cfg.name, s, metas[i].shard[s].rep[k].state, 0, 0};
                qc_replica_name(metas[i].uid, s, lname);
                qc_local_applied(c, lname, &ri.applied_seq);
                uint64_t first;
                if (qc_log_last_seq(c->log, metas[i].cfg.name, s, &ri.log_last_seq, &first)) ri.log_last_seq = 0;
                fn(ctx, &ri);
            }
    for (size_t i = 0; i < nm; i++) qc_meta_free(&metas[i]);
    free(metas);
}

int qc_peer_applied(qc_cluster *c, const char *addr, const char *replica, uint64_t *applied)
{
    Quiver__Peer__V1__WaitAppliedRequest req = QUIVER__PEER__V1__WAIT_APPLIED_REQUEST__INIT;
    req.replica = (char *)replica;
    qc_call call = {addr, "/quiver.peer.v1.Peer/WaitApplied", &req.base,
                    &quiver__peer__v1__wait_applied_response__descriptor, 0, 0, "", NULL, NULL, 0};
    qc_peer_call_all(c->peers, &call, 1, qc_now_ms() + 3000);
    Quiver__Peer__V1__WaitAppliedResponse *r = (Quiver__Peer__V1__WaitAppliedResponse *)call.reply;
    int rc = call.code == GRPC_STATUS_OK && r && r->exists ? 0 : QV_IO;
    if (!rc) *applied = r->applied_seq;
    if (r) protobuf_c_message_free_unpacked(&r->base, NULL);
    return rc;
}

int qc_log_last(qc_cluster *c, const char *coll, uint32_t shard, uint64_t *last)
{
    uint64_t first;
    return qc_log_last_seq(c->log, coll, shard, last, &first);
}

/* -------------------------------------------------------------- writes */
typedef struct shard_part {
    uint32_t n;
    uint64_t *ids;
    float *vecs;
    size_t *off;
    uint8_t *attrs;
} shard_part;

int qc_write(qc_cluster *c, const qc_meta *m, const qc_entry *w, int ack_logged, int64_t deadline_ms,
             qv_token_part *parts, size_t *nparts, char *err, size_t errlen)
{
    uint32_t S = m->shards, dim = w->kind == QC_ENTRY_UPSERT ? w->dim : 0;
    shard_part *sp = calloc(S, sizeof *sp);
    uint32_t *shard_of = malloc((w->n ? w->n : 1) * sizeof *shard_of);
    int rc = sp && shard_of ? 0 : QV_NOMEM;
    *nparts = 0;
    /* items by shard, in request order within each */
    for (uint32_t i = 0; !rc && i < w->n; i++) sp[shard_of[i] = qc_shard_of(w->ids[i], S)].n++;
    for (uint32_t s = 0; !rc && s < S; s++) {
        if (!sp[s].n) continue;
        size_t ab = 0;
        if (w->attr_off)
            for (uint32_t i = 0; i < w->n; i++)
                if (shard_of[i] == s) ab += w->attr_off[i + 1] - w->attr_off[i];
        sp[s].ids = malloc(sp[s].n * sizeof *sp[s].ids);
        sp[s].vecs = dim ? malloc((size_t)sp[s].n * dim * sizeof *sp[s].vecs) : NULL;
        sp[s].off = w->attr_off ? malloc((sp[s].n + 1) * sizeof *sp[s].off) : NULL;
        sp[s].attrs = w->attr_off ? malloc(ab ? ab : 1) : NULL;
        if (!sp[s].ids || (dim && !sp[s].vecs) || (w->attr_off && (!sp[s].off || !sp[s].attrs))) rc = QV_NOMEM;
        sp[s].n = 0;
        if (sp[s].off) sp[s].off[0] = 0;
    }
    for (uint32_t i = 0; !rc && i < w->n; i++) {
        shard_part *p = &sp[shard_of[i]];
        p->ids[p->n] = w->ids[i];
        if (dim) memcpy(p->vecs + (size_t)p->n * dim, w->vecs + (size_t)i * dim, dim * sizeof(float));
        if (w->attr_off) {
            size_t len = w->attr_off[i + 1] - w->attr_off[i];
            if (len) memcpy(p->attrs + p->off[p->n], w->attrs + w->attr_off[i], len);
            p->off[p->n + 1] = p->off[p->n] + len;
        }
        p->n++;
    }
    /* publish each shard's entries; the message id makes a retried publish
     * a duplicate the stream drops */
    uint64_t wid = atomic_fetch_add(&c->msg_counter, 1);
    uint8_t *buf = NULL;
    for (uint32_t s = 0; !rc && s < S; s++) {
        if (!sp[s].n) continue;
        qc_entry e = {w->kind, sp[s].n, dim, sp[s].ids, sp[s].vecs, sp[s].off, sp[s].attrs};
        uint64_t seq = 0;
        for (uint32_t from = 0, part = 0; !rc && from < e.n; part++) {
            uint32_t to = qc_entry_split(&e, from, QC_ENTRY_MAX);
            size_t len = qc_entry_size(&e, from, to);
            uint8_t *nb = realloc(buf, len);
            if (!nb) {
                rc = QV_NOMEM;
                break;
            }
            buf = nb;
            qc_entry_encode(&e, from, to, buf);
            char id[QC_LOG_MAX_ID];
            snprintf(id, sizeof id, "%s.%016" PRIx64 ".%" PRIu64 ".%u.%u", c->node_id, c->boot, wid, s, part);
            int dup = 0;
            char why[256] = "";
            if ((rc = qc_log_publish(c->log, m->cfg.name, s, id, buf, len, deadline_ms, &seq, &dup, why,
                                     sizeof why)))
                snprintf(err, errlen, "the log of shard %u did not take the write: %s%s", s, why,
                         s > 0 || part > 0 ? " (part of the write may be applied)" : "");
            from = to;
        }
        if (!rc) {
            parts[*nparts].shard = s;
            parts[(*nparts)++].seq = seq;
        }
    }
    free(buf);
    for (uint32_t s = 0; sp && s < S; s++) {
        free(sp[s].ids);
        free(sp[s].vecs);
        free(sp[s].off);
        free(sp[s].attrs);
    }
    free(sp);
    free(shard_of);
    if (!rc && !ack_logged) rc = qc_wait_applied(c, m, parts, *nparts, deadline_ms, err, errlen);
    return rc;
}

int qc_wait_applied(qc_cluster *c, const qc_meta *m, const qv_token_part *parts, size_t nparts,
                    int64_t deadline_ms, char *err, size_t errlen)
{
    size_t cap = nparts * QC_MAX_REPLICAS;
    qc_call *calls = calloc(cap ? cap : 1, sizeof *calls);
    Quiver__Peer__V1__WaitAppliedRequest *reqs = calloc(cap ? cap : 1, sizeof *reqs);
    char (*names)[QV_MAX_NAME + 1] = calloc(cap ? cap : 1, sizeof *names);
    char (*addrs)[QC_MAX_ADDR + 1] = calloc(cap ? cap : 1, sizeof *addrs);
    uint32_t *shard_of_call = calloc(cap ? cap : 1, sizeof *shard_of_call);
    const char **node_of_call = calloc(cap ? cap : 1, sizeof *node_of_call);
    if (!calls || !reqs || !names || !addrs || !shard_of_call || !node_of_call) {
        free(calls), free(reqs), free(names), free(addrs), free(shard_of_call), free(node_of_call);
        return QV_NOMEM;
    }
    size_t n = 0;
    int64_t bound = qc_now_ms() + APPLY_BOUND_MS;
    if (bound > deadline_ms) bound = deadline_ms;
    int64_t left = bound - qc_now_ms();
    for (size_t i = 0; i < nparts; i++) {
        const qc_shard *sh = &m->shard[parts[i].shard];
        for (uint32_t k = 0; k < sh->nrep; k++) {
            if (sh->rep[k].state != QC_ACTIVE) continue;
            if (qc_node_live_addr(c, sh->rep[k].node, addrs[n])) {
                /* its node is gone (lease expired): out of the rotation now */
                qv_warn("cluster: node %s of %s shard %u is not registered: its replica is CATCHING_UP",
                        sh->rep[k].node, m->cfg.name, parts[i].shard);
                qc_set_state(c, m->cfg.name, parts[i].shard, sh->rep[k].node, QC_CATCHING_UP);
                continue;
            }
            quiver__peer__v1__wait_applied_request__init(&reqs[n]);
            qc_replica_name(m->uid, parts[i].shard, names[n]);
            reqs[n].replica = names[n];
            reqs[n].seq = parts[i].seq;
            reqs[n].timeout_ms = left > 0 ? (uint32_t)left : 0;
            calls[n].addr = addrs[n];
            calls[n].method = "/quiver.peer.v1.Peer/WaitApplied";
            calls[n].req = &reqs[n].base;
            calls[n].reply_desc = &quiver__peer__v1__wait_applied_response__descriptor;
            shard_of_call[n] = parts[i].shard;
            node_of_call[n] = sh->rep[k].node;
            n++;
        }
    }
    qc_peer_call_all(c->peers, calls, n, bound + 1000);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        Quiver__Peer__V1__WaitAppliedResponse *rep = (Quiver__Peer__V1__WaitAppliedResponse *)calls[i].reply;
        int ok = calls[i].code == GRPC_STATUS_OK && rep && rep->exists && rep->applied_seq >= reqs[i].seq;
        if (rep) protobuf_c_message_free_unpacked(&rep->base, NULL);
        if (ok) continue;
        if (qc_now_ms() >= deadline_ms) {
            rc = QV_CANCELLED;
            snprintf(err, errlen, "the write is in the log but replica %s of shard %u had not applied it "
                     "by the deadline", node_of_call[i], shard_of_call[i]);
            continue;
        }
        /* out of the read rotation until it has caught up */
        qv_warn("cluster: replica on node %s of %s shard %u did not apply sequence %" PRIu64
                " within %d ms (%s): CATCHING_UP", node_of_call[i], m->cfg.name, shard_of_call[i],
                reqs[i].seq, APPLY_BOUND_MS, calls[i].code ? calls[i].msg : "behind");
        qc_set_state(c, m->cfg.name, shard_of_call[i], node_of_call[i], QC_CATCHING_UP);
    }
    free(calls), free(reqs), free(names), free(addrs), free(shard_of_call), free(node_of_call);
    return rc;
}

/* --------------------------------------------------------- open, close */
static void on_lease_lost(void *ctx, int64_t id)
{
    qc_cluster *c = ctx;
    (void)id;
    qv_warn("cluster: node %s lost its etcd lease (it was away longer than the lease); "
            "registering again", c->node_id);
    atomic_store(&c->lease_lost, 1);
    qc_mark_dirty(c);
}

static int register_node(qc_cluster *c, char *err, size_t errlen)
{
    int rc = qc_etcd_lease_grant(c->etcd, (int)(c->o.lease_ttl_s ? c->o.lease_ttl_s : 5), &c->lease);
    if (rc) {
        snprintf(err, errlen, "etcd: cannot grant a lease: %s", qc_etcd_errmsg());
        return rc;
    }
    if ((rc = qc_etcd_lease_keepalive(c->etcd, c->lease))) {
        snprintf(err, errlen, "etcd: cannot keep the lease alive: %s", qc_etcd_errmsg());
        return rc;
    }
    qc_etcd_on_lease_lost(c->etcd, on_lease_lost, c);
    char key[sizeof NODES_PREFIX + QC_MAX_NODE_ID];
    snprintf(key, sizeof key, NODES_PREFIX "%s", c->node_id);
    json_t *o = json_pack("{s:s,s:b}", "addr", c->advertise, "shards", !c->o.no_shards);
    char *js = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!js) return QV_NOMEM;
    /* a node restarted at once finds its old registration until the old
     * lease expires: wait for that (a live node of the same id keeps it) */
    unsigned ttl = c->o.lease_ttl_s ? c->o.lease_ttl_s : 5;
    int64_t until = qc_now_ms() + 3000 * (int64_t)ttl;
    while ((rc = qc_etcd_create(c->etcd, key, js, strlen(js), c->lease)) == QV_EXISTS &&
           qc_now_ms() < until) {
        struct timespec ts = {0, 250 * 1000000L};
        nanosleep(&ts, NULL);
    }
    free(js);
    if (rc == QV_EXISTS)
        snprintf(err, errlen, "node id \"%s\" is registered by a live node already (a node that just "
                 "died frees it when its lease expires)", c->node_id);
    else if (rc)
        snprintf(err, errlen, "etcd: cannot register: %s", qc_etcd_errmsg());
    return rc;
}

/* qv_db_set_merge_parts: a replica's reads are merged over its collection's shards */
static uint32_t merge_parts_of(void *ctx, const char *name)
{
    qc_cluster *c = ctx;
    uint64_t uid;
    uint32_t shard, parts = 1;
    if (parse_replica_name(name, &uid, &shard)) return 1;
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->nmeta; i++)
        if (c->metas[i].uid == uid) parts = c->metas[i].shards;
    pthread_mutex_unlock(&c->mu);
    return parts;
}

int qc_open(const qc_opts *opts, qc_cluster **out, char *err, size_t errlen)
{
    *out = NULL;
    qc_cluster *c = calloc(1, sizeof *c);
    if (!c) return QV_NOMEM;
    c->o = *opts;
    snprintf(c->node_id, sizeof c->node_id, "%s", opts->node_id);
    snprintf(c->advertise, sizeof c->advertise, "%s", opts->advertise);
    c->boot = qc_random64();
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->rmu, NULL);
    pthread_mutex_init(&c->cmu, NULL);
    pthread_cond_init(&c->cv, NULL);
    pthread_mutex_init(&c->jmu, NULL);
    pthread_cond_init(&c->jcv, NULL);
    c->log_replicas = opts->log_replicas;
    if (!c->log_replicas) {
        int urls = 1;
        for (const char *p = opts->nats_urls; *p; p++) urls += *p == ',';
        c->log_replicas = urls >= 3 ? 3 : 1;
    }
    qc_etcd_tls tls = {opts->etcd_ca, opts->etcd_cert, opts->etcd_key};
    int rc = qc_etcd_open(opts->etcd_urls, opts->etcd_ca || opts->etcd_cert ? &tls : NULL, 3000, &c->etcd,
                          err, errlen);
    if (!rc) rc = qc_log_open(opts->nats_urls, opts->nats_creds, 5000, &c->log, err, errlen);
    if (!rc) qc_log_set_max_bytes(c->log, opts->log_max_bytes);
    qc_peer_security sec = {opts->peer_key, opts->peer_tls, opts->peer_ca, opts->peer_cert,
                            opts->peer_keyfile, opts->advertise, opts->local_call};
    if (!rc && qc_peers_new(&sec, &c->peers)) rc = QV_NOMEM;
    if (!rc) rc = register_node(c, err, errlen);
    int64_t rev_nodes = 0, rev_colls = 0;
    if (!rc && (rc = load_all(c, &rev_nodes, &rev_colls)))
        snprintf(err, errlen, "etcd: cannot read the catalog: %s", qc_etcd_errmsg());
    if (!rc) rc = qc_etcd_watch(c->etcd, NODES_PREFIX, rev_nodes + 1, on_nodes, c, &c->w_nodes);
    if (!rc) rc = qc_etcd_watch(c->etcd, COLLS_PREFIX, rev_colls + 1, on_colls, c, &c->w_colls);
    if (rc) {
        if (!err[0]) snprintf(err, errlen, "cannot join the cluster: %s", qv_strerror(rc));
        qc_close(c);
        return rc;
    }
    qv_db_set_merge_parts(c->o.db, merge_parts_of, c);
    reconcile(c);
    c->npool = opts->threads ? opts->threads : 8;
    c->pool = calloc(c->npool, sizeof *c->pool);
    for (unsigned i = 0; c->pool && i < c->npool; i++) pthread_create(&c->pool[i], NULL, pool_main, c);
    pthread_create(&c->reconciler, NULL, reconciler_main, c);
    pthread_create(&c->ticker, NULL, ticker_main, c);
    qv_info("cluster: node %s joined (advertise %s, etcd %s, NATS %s, log streams R%d%s)", c->node_id,
            c->advertise, opts->etcd_urls, opts->nats_urls, c->log_replicas,
            opts->no_shards ? ", routing only" : "");
    *out = c;
    return 0;
}

void qc_close(qc_cluster *c)
{
    if (!c) return;
    if (c->o.db) qv_db_set_merge_parts(c->o.db, NULL, NULL);
    if (c->pool) {
        pthread_mutex_lock(&c->cmu);
        c->stop = 1;
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->cmu);
        pthread_join(c->reconciler, NULL);
        pthread_join(c->ticker, NULL);
        pthread_mutex_lock(&c->jmu);
        c->jstop = 1;
        pthread_cond_broadcast(&c->jcv);
        pthread_mutex_unlock(&c->jmu);
        for (unsigned i = 0; i < c->npool; i++) pthread_join(c->pool[i], NULL);
        free(c->pool);
    }
    if (c->w_nodes) qc_watch_cancel(c->w_nodes);
    if (c->w_colls) qc_watch_cancel(c->w_colls);
    pthread_mutex_lock(&c->rmu);
    while (c->replicas) {
        replica *r = c->replicas;
        c->replicas = r->next;
        replica_close(r, 0);
    }
    pthread_mutex_unlock(&c->rmu);
    qc_hook ctl_close = atomic_load(&c->ctl_close);
    if (c->etcd && ctl_close) ctl_close(c);
    if (c->lease && c->etcd) qc_etcd_lease_revoke(c->etcd, c->lease);
    qc_peers_free(c->peers);
    qc_log_close(c->log);
    qc_etcd_close(c->etcd);
    for (size_t i = 0; i < c->nmeta; i++) free(c->metas[i].shard);
    free(c->metas);
    free(c->nodes);
    pthread_mutex_destroy(&c->mu);
    pthread_mutex_destroy(&c->rmu);
    pthread_mutex_destroy(&c->cmu);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->jmu);
    pthread_cond_destroy(&c->jcv);
    free(c);
}
