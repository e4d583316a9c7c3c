/*
 * The inside of a node's cluster state (cluster/node.c), shared with the
 * controller (cluster/controller.c) and nothing else.
 */
#ifndef QUIVER_CLUSTER_NODE_INT_H
#define QUIVER_CLUSTER_NODE_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "cluster.h"
#include "etcd.h"
#include "log.h"
#include "peer.h"

#define NODES_PREFIX "/quiver/nodes/"
#define COLLS_PREFIX "/quiver/collections/"
#define APPLY_BOUND_MS 5000 /* an ACTIVE replica that has not applied by then is CATCHING_UP */

typedef void (*qc_hook)(qc_cluster *c);

typedef struct waiter {
    struct waiter *next;
    uint64_t seq;
    int64_t deadline_ms;
    void (*done)(void *ctx, uint64_t applied, int exists);
    void *ctx;
} waiter;

/* A replica this node holds: a local collection and its log follower. */
typedef struct replica {
    struct replica *next;
    qc_cluster *cl;
    uint64_t uid;
    uint32_t shard;
    char name[QV_MAX_NAME + 1];  /* the collection's (user) name: the log's */
    char lname[QV_MAX_NAME + 1]; /* the local collection */
    qv_coll *lc;
    qc_follow *follow;
    pthread_mutex_t wmu;
    waiter *waiters;
    int wanted; /* reconcile mark */
    atomic_int gap; /* the log lost entries it needs: reopen it with a snapshot */
} replica;

typedef struct job {
    struct job *next;
    void (*fn)(void *ctx);
    void *ctx;
} job;

struct qc_cluster {
    qc_opts o;
    char node_id[QC_MAX_NODE_ID + 1];
    char advertise[QC_MAX_ADDR + 1];
    qc_etcd *etcd;
    qc_log *log;
    int64_t lease;
    atomic_int lease_lost; /* etcd dropped our registration: register again */
    qc_watch *w_nodes, *w_colls;
    /* etcd lookups of names missing from the cache (qc_meta_get): a token
     * bucket, under mu, so that callers naming missing collections cannot
     * turn every call into an etcd round trip */
    double miss_tokens;
    int64_t miss_ms;
    int log_replicas;
    uint64_t boot; /* makes message ids unique across restarts */
    _Atomic uint64_t msg_counter;

    pthread_mutex_t mu; /* the caches below */
    qc_meta *metas;
    size_t nmeta, capmeta;
    qc_node_info *nodes;
    size_t nnodes, capnodes;

    pthread_mutex_t rmu; /* replicas */
    replica *replicas;

    pthread_mutex_t cmu; /* reconciler and ticker */
    pthread_cond_t cv;
    int dirty, stop;
    pthread_t reconciler, ticker;

    pthread_mutex_t jmu; /* the pool */
    pthread_cond_t jcv;
    job *jhead, *jtail;
    int jstop;
    pthread_t *pool;
    unsigned npool;

    qc_peers *peers;

    /* the controller (controller.c), run by the reconciler thread */
    atomic_int is_controller;
    struct ctl_dead {
        char id[QC_MAX_NODE_ID + 1];
        int64_t since_ms;
    } dead[64];
    size_t ndead;
    char rebalance_seen[64]; /* the last /quiver/rebalance value acted on */
    int64_t last_trim_ms;
    /* the controller's work, hooked in by qc_controller_start (node.c runs
     * it from the reconciler without knowing it by name) */
    _Atomic(qc_hook) ctl_tick;
    _Atomic(qc_hook) ctl_close;
    _Atomic uint64_t moves_started;
    _Atomic uint64_t snapshot_bytes;
    int64_t promote_after_ms; /* quiverd-test's slow promotion (reconciler only) */
};

/* node.c, for the controller */
char *qc_meta_json(const qc_meta *m);
int qc_meta_parse(const char *name, const uint8_t *val, size_t len, int64_t mod_rev, qc_meta *m);
/* Put the etcd record of a collection into the cache (after a change). */
void qc_cache_coll(qc_cluster *c, const qc_kv *kv);
void qc_mark_dirty(qc_cluster *c);
uint64_t qc_random64(void);


#endif
