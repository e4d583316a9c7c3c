/*
 * The controller: one node at a time, the holder of the etcd key
 * /quiver/controller (created under the node's own lease, so that it goes
 * when the node goes and another node takes over within the lease's TTL),
 * owns the changes of the shard map:
 *  - a shard with fewer good replicas than asked gets a new one on the least
 *    loaded node that holds shards, is not draining and is not in the shard
 *    yet (it starts CATCHING_UP, replays the log or installs a snapshot, and
 *    its node sets it ACTIVE once caught up);
 *  - a replica on a draining node, on a node gone longer than
 *    --replace-after, or marked leaving by a balancing move, is removed only
 *    once the shard has enough ACTIVE good replicas without it (the count
 *    never dips below the one asked during a move);
 *  - a balancing pass (automatic unless --no-rebalance, or asked through
 *    Admin.Rebalance) moves one replica at a time from the most to the least
 *    loaded node while they differ by 2 or more.
 * Every change is a compare-and-swap on the collection's record: a deposed
 * controller cannot overwrite a newer map.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node_int.h"
#include "quiver/error.h"
#include "quiver/log.h"

#define CONTROLLER_KEY "/quiver/controller"
#define DRAIN_PREFIX "/quiver/drain/"
#define REBALANCE_KEY "/quiver/rebalance"
#define COLLS "/quiver/collections/"

typedef struct view {
    qc_node_info *nodes;
    size_t nn;
    char (*draining)[QC_MAX_NODE_ID + 1];
    size_t nd;
} view;

static int is_draining(const view *v, const char *id)
{
    for (size_t i = 0; i < v->nd; i++)
        if (!strcmp(v->draining[i], id)) return 1;
    return 0;
}

static const qc_node_info *node_of(const view *v, const char *id)
{
    for (size_t i = 0; i < v->nn; i++)
        if (!strcmp(v->nodes[i].id, id)) return &v->nodes[i];
    return NULL;
}

/* How long node id has been gone (0: it is registered). */
static int64_t gone_for(qc_cluster *c, const view *v, const char *id)
{
    const qc_node_info *n = node_of(v, id);
    if (n && n->alive) return 0;
    int64_t now = qc_now_ms();
    for (size_t i = 0; i < c->ndead; i++)
        if (!strcmp(c->dead[i].id, id)) return now - c->dead[i].since_ms;
    if (c->ndead < sizeof c->dead / sizeof c->dead[0]) {
        snprintf(c->dead[c->ndead].id, sizeof c->dead[0].id, "%s", id);
        c->dead[c->ndead++].since_ms = now;
    }
    return 0;
}

static void forget_alive(qc_cluster *c, const view *v)
{
    size_t o = 0;
    for (size_t i = 0; i < c->ndead; i++) {
        const qc_node_info *n = node_of(v, c->dead[i].id);
        if (!(n && n->alive)) c->dead[o++] = c->dead[i];
    }
    c->ndead = o;
}

static int bad(qc_cluster *c, const view *v, const qc_replica *r)
{
    unsigned after = c->o.replace_after_s ? c->o.replace_after_s : 300;
    return r->leaving || is_draining(v, r->node) || gone_for(c, v, r->node) >= (int64_t)after * 1000;
}

static int eligible(const view *v, const qc_node_info *n)
{
    return n->alive && n->holds_shards && !is_draining(v, n->id);
}

/* Replicas per node over every collection. */
static size_t load_of(const qc_meta *ms, size_t nm, const char *id)
{
    size_t l = 0;
    for (size_t i = 0; i < nm; i++)
        for (uint32_t s = 0; s < ms[i].shards; s++)
            for (uint32_t k = 0; k < ms[i].shard[s].nrep; k++) l += !strcmp(ms[i].shard[s].rep[k].node, id);
    return l;
}

static int in_shard(const qc_shard *sh, const char *id)
{
    for (uint32_t k = 0; k < sh->nrep; k++)
        if (!strcmp(sh->rep[k].node, id)) return 1;
    return 0;
}

/* The least loaded eligible node not in sh (NULL: none). */
static const qc_node_info *pick_target(const view *v, const qc_meta *ms, size_t nm, const qc_shard *sh)
{
    const qc_node_info *best = NULL;
    size_t bl = 0;
    for (size_t i = 0; i < v->nn; i++) {
        const qc_node_info *n = &v->nodes[i];
        if (!eligible(v, n) || in_shard(sh, n->id)) continue;
        size_t l = load_of(ms, nm, n->id);
        if (!best || l < bl || (l == bl && strcmp(n->id, best->id) < 0)) best = n, bl = l;
    }
    return best;
}

static void add_replica(qc_shard *sh, const char *node)
{
    if (sh->nrep >= QC_MAX_REPLICAS) return;
    qc_replica *r = &sh->rep[sh->nrep++];
    memset(r, 0, sizeof *r);
    snprintf(r->node, sizeof r->node, "%s", node);
    r->state = QC_CATCHING_UP;
}

/* Write a changed record (compare-and-swap on the revision it was read at). */
static int commit(qc_cluster *c, const qc_meta *m)
{
    char key[sizeof COLLS + QV_MAX_NAME];
    snprintf(key, sizeof key, COLLS "%s", m->cfg.name);
    char *js = qc_meta_json(m);
    int rc = js ? qc_etcd_cas(c->etcd, key, js, strlen(js), m->mod_rev) : QV_NOMEM;
    free(js);
    if (!rc) {
        qc_kv kv;
        if (!qc_etcd_get(c->etcd, key, &kv)) {
            qc_cache_coll(c, &kv);
            qc_kv_free(&kv);
        }
        qc_mark_dirty(c);
    }
    return rc;
}

/* Repairs: replicas added where a shard lacks good ones, bad ones removed
 * once enough good ones are ACTIVE. Returns the moves started. */
static size_t repair(qc_cluster *c, const view *v, qc_meta *ms, size_t nm)
{
    size_t started = 0;
    for (size_t i = 0; i < nm; i++) {
        qc_meta *m = &ms[i];
        int changed = 0;
        for (uint32_t s = 0; s < m->shards; s++) {
            qc_shard *sh = &m->shard[s];
            uint32_t good = 0, good_active = 0;
            for (uint32_t k = 0; k < sh->nrep; k++)
                if (!bad(c, v, &sh->rep[k])) {
                    good++;
                    good_active += sh->rep[k].state == QC_ACTIVE;
                }
            if (good < m->replicas) {
                const qc_node_info *t = pick_target(v, ms, nm, sh);
                if (t) {
                    qv_info("controller: %s shard %u gets a replica on %s (%u good of %u)", m->cfg.name, s,
                            t->id, good, m->replicas);
                    add_replica(sh, t->id);
                    changed = 1;
                    started++;
                }
            } else if (good_active >= m->replicas) {
                for (uint32_t k = 0; k < sh->nrep; k++)
                    if (bad(c, v, &sh->rep[k])) {
                        qv_info("controller: %s shard %u drops its replica on %s (moved)", m->cfg.name, s,
                                sh->rep[k].node);
                        memmove(&sh->rep[k], &sh->rep[k + 1], (sh->nrep - k - 1) * sizeof sh->rep[0]);
                        sh->nrep--;
                        changed = 1;
                        break;
                    }
            }
        }
        if (changed && commit(c, m)) qv_warn("controller: %s changed meanwhile; next pass", m->cfg.name);
    }
    return started;
}

/* One balancing move (when none is in progress): from the most to the
 * least loaded eligible node, when they differ by 2 or more. */
static size_t balance(qc_cluster *c, const view *v, qc_meta *ms, size_t nm)
{
    for (size_t i = 0; i < nm; i++)
        for (uint32_t s = 0; s < ms[i].shards; s++)
            for (uint32_t k = 0; k < ms[i].shard[s].nrep; k++)
                if (ms[i].shard[s].rep[k].leaving || ms[i].shard[s].rep[k].state != QC_ACTIVE) return 0;
    const qc_node_info *hi = NULL, *lo = NULL;
    size_t hl = 0, ll = 0;
    for (size_t i = 0; i < v->nn; i++) {
        const qc_node_info *n = &v->nodes[i];
        if (!eligible(v, n)) continue;
        size_t l = load_of(ms, nm, n->id);
        if (!hi || l > hl) hi = n, hl = l;
        if (!lo || l < ll) lo = n, ll = l;
    }
    if (!hi || !lo || hl < ll + 2) return 0;
    for (size_t i = 0; i < nm; i++)
        for (uint32_t s = 0; s < ms[i].shards; s++) {
            qc_shard *sh = &ms[i].shard[s];
            if (in_shard(sh, lo->id)) continue;
            for (uint32_t k = 0; k < sh->nrep; k++)
                if (!strcmp(sh->rep[k].node, hi->id)) {
                    qv_info("controller: moving %s shard %u from %s (%zu replicas) to %s (%zu)",
                            ms[i].cfg.name, s, hi->id, hl, lo->id, ll);
                    sh->rep[k].leaving = 1;
                    add_replica(sh, lo->id);
                    if (commit(c, &ms[i])) return 0;
                    return 1;
                }
        }
    return 0;
}

/* Trim each shard's stream below what every replica of it has applied
 * (a replica further behind catches up by snapshot). */
static void trim(qc_cluster *c, const qc_meta *ms, size_t nm)
{
    for (size_t i = 0; i < nm; i++)
        for (uint32_t s = 0; s < ms[i].shards; s++) {
            const qc_shard *sh = &ms[i].shard[s];
            uint64_t lowest = UINT64_MAX;
            int known = sh->nrep > 0;
            for (uint32_t k = 0; k < sh->nrep && known; k++) {
                char addr[QC_MAX_ADDR + 1], ln[QV_MAX_NAME + 1];
                if (qc_node_live_addr(c, sh->rep[k].node, addr)) {
                    known = 0; /* a replica we cannot ask: keep its part of the log */
                    break;
                }
                qc_replica_name(ms[i].uid, s, ln);
                uint64_t applied = 0;
                if (qc_peer_applied(c, addr, ln, &applied)) known = 0;
                else if (applied < lowest) lowest = applied;
            }
            uint64_t last = 0, first = 0;
            if (!known || lowest == 0 || qc_log_last_seq(c->log, ms[i].cfg.name, s, &last, &first)) continue;
            if (lowest + 1 > first) qc_log_trim(c->log, ms[i].cfg.name, s, lowest + 1);
        }
}

static int load_view(qc_cluster *c, view *v)
{
    memset(v, 0, sizeof *v);
    if (qc_nodes(c, &v->nodes, &v->nn)) return QV_NOMEM;
    qc_kv *kvs = NULL;
    size_t n = 0;
    int64_t rev;
    if (qc_etcd_range(c->etcd, DRAIN_PREFIX, &kvs, &n, &rev)) return QV_IO;
    v->draining = calloc(n ? n : 1, sizeof *v->draining);
    for (size_t i = 0; v->draining && i < n; i++)
        snprintf(v->draining[v->nd++], sizeof v->draining[0], "%s", kvs[i].key + strlen(DRAIN_PREFIX));
    qc_kvs_free(kvs, n);
    return v->draining ? 0 : QV_NOMEM;
}

static void controller_tick(qc_cluster *c)
{
    /* hold the controller key, or learn that another node does */
    qc_kv kv;
    int rc = qc_etcd_get(c->etcd, CONTROLLER_KEY, &kv);
    if (rc == QV_NOTFOUND) {
        if (qc_etcd_create(c->etcd, CONTROLLER_KEY, c->node_id, strlen(c->node_id), c->lease) == 0) {
            qv_info("controller: node %s is the controller", c->node_id);
            c->is_controller = 1;
            c->ndead = 0;
        }
        return;
    }
    if (rc) return; /* etcd away: nothing changes until it is back */
    int mine = kv.val_len == strlen(c->node_id) && !memcmp(kv.val, c->node_id, kv.val_len) && kv.lease == c->lease;
    qc_kv_free(&kv);
    if (!mine) {
        if (c->is_controller) qv_info("controller: node %s is no longer the controller", c->node_id);
        c->is_controller = 0;
        return;
    }
    c->is_controller = 1;
    view v;
    qc_meta *ms = NULL;
    size_t nm = 0;
    if (load_view(c, &v) || qc_meta_list(c, &ms, &nm)) goto out;
    forget_alive(c, &v);
    size_t started = repair(c, &v, ms, nm);
    /* a balancing pass: by itself, or asked for (Admin.Rebalance) */
    int asked = 0;
    if (!qc_etcd_get(c->etcd, REBALANCE_KEY, &kv)) {
        char val[64];
        snprintf(val, sizeof val, "%.*s", (int)(kv.val_len < 63 ? kv.val_len : 63), (const char *)kv.val);
        asked = strcmp(val, c->rebalance_seen) != 0;
        if (asked) snprintf(c->rebalance_seen, sizeof c->rebalance_seen, "%s", val);
        qc_kv_free(&kv);
    }
    if (!started && (asked || !c->o.no_rebalance)) {
        for (size_t i = 0; i < nm; i++) qc_meta_free(&ms[i]);
        free(ms);
        ms = NULL;
        if (!qc_meta_list(c, &ms, &nm)) started += balance(c, &v, ms, nm);
    }
    atomic_fetch_add(&c->moves_started, started);
    if (ms && qc_now_ms() - c->last_trim_ms > 5000) {
        c->last_trim_ms = qc_now_ms();
        trim(c, ms, nm);
    }
out:
    for (size_t i = 0; ms && i < nm; i++) qc_meta_free(&ms[i]);
    free(ms);
    free(v.nodes);
    free(v.draining);
}

int qc_drain(qc_cluster *c, const char *node, int cancel, uint32_t *left)
{
    char key[sizeof DRAIN_PREFIX + QC_MAX_NODE_ID];
    snprintf(key, sizeof key, DRAIN_PREFIX "%s", node);
    int rc = cancel ? qc_etcd_delete(c->etcd, key) : qc_etcd_put(c->etcd, key, "1", 1, 0);
    if (rc && rc != QV_NOTFOUND) return QV_IO;
    qc_meta *ms = NULL;
    size_t nm = 0;
    *left = 0;
    if (!qc_meta_list(c, &ms, &nm)) {
        *left = (uint32_t)load_of(ms, nm, node);
        for (size_t i = 0; i < nm; i++) qc_meta_free(&ms[i]);
        free(ms);
    }
    return 0;
}

int qc_rebalance(qc_cluster *c)
{
    char val[32];
    snprintf(val, sizeof val, "%016" PRIx64, qc_random64());
    return qc_etcd_put(c->etcd, REBALANCE_KEY, val, strlen(val), 0) ? QV_IO : 0;
}

int qc_controller_of(qc_cluster *c, char out[QC_MAX_NODE_ID + 1])
{
    qc_kv kv;
    out[0] = 0;
    if (qc_etcd_get(c->etcd, CONTROLLER_KEY, &kv)) return QV_NOTFOUND;
    snprintf(out, QC_MAX_NODE_ID + 1, "%.*s", (int)kv.val_len, (const char *)kv.val);
    qc_kv_free(&kv);
    return 0;
}

static void controller_close(qc_cluster *c)
{
    if (!c->is_controller) return;
    qc_kv kv;
    if (qc_etcd_get(c->etcd, CONTROLLER_KEY, &kv)) return;
    int mine = kv.lease == c->lease;
    qc_kv_free(&kv);
    if (mine) qc_etcd_delete(c->etcd, CONTROLLER_KEY); /* another node takes over at once */
}

int qc_draining(qc_cluster *c, char (**out)[QC_MAX_NODE_ID + 1], size_t *n)
{
    *out = NULL;
    *n = 0;
    qc_kv *kvs = NULL;
    size_t nk = 0;
    int64_t rev;
    if (qc_etcd_range(c->etcd, DRAIN_PREFIX, &kvs, &nk, &rev)) return QV_IO;
    *out = calloc(nk ? nk : 1, sizeof **out);
    for (size_t i = 0; *out && i < nk; i++)
        snprintf((*out)[(*n)++], sizeof **out, "%s", kvs[i].key + strlen(DRAIN_PREFIX));
    qc_kvs_free(kvs, nk);
    return *out ? 0 : QV_NOMEM;
}

void qc_controller_stats(qc_cluster *c, qc_ctl_stats *out)
{
    memset(out, 0, sizeof *out);
    out->is_controller = c->is_controller;
    out->moves_started = atomic_load(&c->moves_started);
    out->snapshot_bytes = atomic_load(&c->snapshot_bytes);
    qc_meta *ms = NULL;
    size_t nm = 0;
    if (qc_meta_list(c, &ms, &nm)) return;
    for (size_t i = 0; i < nm; i++) {
        for (uint32_t s = 0; s < ms[i].shards; s++)
            for (uint32_t k = 0; k < ms[i].shard[s].nrep; k++)
                out->moves_in_progress += ms[i].shard[s].rep[k].leaving;
        qc_meta_free(&ms[i]);
    }
    free(ms);
}

void qc_controller_start(qc_cluster *c)
{
    atomic_store(&c->ctl_close, controller_close);
    atomic_store(&c->ctl_tick, controller_tick); /* read by the reconciler from its next pass */
}
