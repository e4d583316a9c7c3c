/*
 * qc_cluster: a quiverd node's part in a cluster (issue 18, DESIGN.md "Beyond
 * one machine"). It registers the node in etcd under a lease, keeps a cache
 * of the cluster's collections and shard map (watched), holds this node's
 * shard replicas as local collections of the engine named "@<uid>.<shard>",
 * applies each one's JetStream log through the engine's writer (the log
 * sequence committed with the items), and publishes writes to the log.
 * Reading across shards is the router's (cluster/router.h).
 *
 * The layering: server/ calls this; this calls storage/ (quiver/db.h) and the
 * engines (cluster/etcd.h, cluster/log.h); storage/ knows nothing of it.
 *
 * Caveats:
 *  - The catalog is a cache of etcd: when etcd is down, the last map known
 *    serves (reads and writes go on; nothing is reassigned).
 *  - Functions block (etcd and NATS round trips): call them from the
 *    cluster's own threads (qc_async), never from a gRPC worker thread that
 *    peers may need.
 */
#ifndef QUIVER_CLUSTER_H
#define QUIVER_CLUSTER_H

#include <grpc/status.h>
#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "quiver/codec.h"
#include "quiver/db.h"
#include "quiver/token.h"

#include "entry.h"

#define QC_MAX_NODE_ID 63
#define QC_MAX_ADDR 255
#define QC_MAX_SHARDS 256
#define QC_MAX_REPLICAS 8

typedef struct qc_cluster qc_cluster;

typedef struct qc_opts {
    qv_db *db;              /* the node's engine (replicas live in it) */
    const char *node_id;    /* --node-id */
    const char *advertise;  /* --advertise HOST:PORT: where peers reach this node */
    const char *etcd_urls;  /* --cluster-etcd */
    const char *nats_urls;  /* --cluster-nats */
    const char *nats_creds; /* --cluster-nats-creds (NULL: none) */
    const char *etcd_ca, *etcd_cert, *etcd_key; /* --cluster-etcd-ca/-cert/-key */
    int no_shards;          /* --no-shards: route only, hold no replica */
    int log_replicas;       /* copies of each log stream (0: 3 with 3+ NATS URLs, else 1) */
    unsigned threads;       /* routing threads (0 = 8) */
    unsigned lease_ttl_s;   /* node registration lease (0 = 5) */
    unsigned replace_after_s; /* a node gone this long has its replicas placed elsewhere (0 = 300) */
    int no_rebalance;       /* 1: a joining node gets no replicas moved to it by itself */
    int64_t log_max_bytes;  /* each shard stream's cap (0: none; --log-max-bytes) */
    /* calls to peers: the API key they carry (--cluster-key-file; NULL: none)
     * and TLS (peer_tls: speak TLS; CA, client certificate and key files) */
    const char *peer_key;
    int peer_tls;
    const char *peer_ca, *peer_cert, *peer_keyfile;
    /* quiverd-test only (QUIVER_TEST_REPLICA_OPEN_DELAY_MS): replicas given to
     * this node open this much later, as behind a lagging etcd watch */
    unsigned test_open_delay_ms;
    /* quiverd-test only (QUIVER_TEST_PROMOTE_DELAY_MS): a replica of this node
     * that has caught up becomes ACTIVE this much later than it would */
    unsigned test_promote_delay_ms;
    /* calls to this node's own replicas, answered in place (no network) */
    grpc_status_code (*local_call)(const char *method, const ProtobufCMessage *req, uint8_t **reply,
                                   size_t *len, char *msg, size_t msglen);
} qc_opts;

typedef enum { QC_ACTIVE = 0, QC_CATCHING_UP = 1, QC_DOWN = 2 } qc_state;

typedef struct qc_replica {
    char node[QC_MAX_NODE_ID + 1];
    qc_state state;
    int leaving; /* being moved off its node: removed once its replacement is ACTIVE */
} qc_replica;

typedef struct qc_shard {
    uint32_t nrep;
    qc_replica rep[QC_MAX_REPLICAS];
} qc_shard;

/* A collection as etcd holds it: config, shards, replicas and the shard map.
 * Copies handed out are the caller's (qc_meta_free). */
typedef struct qc_meta {
    qv_coll_config cfg; /* name, dim, metric, spec (id: unused) */
    uint64_t uid;       /* this incarnation (a dropped and re-created name gets another) */
    uint32_t shards, replicas;
    qc_shard *shard;    /* shards entries */
    int64_t mod_rev;    /* etcd revision of the record (compare-and-swap) */
    int creating;       /* claimed, its log not made yet: no replica opens */
} qc_meta;

typedef struct qc_node_info {
    char id[QC_MAX_NODE_ID + 1];
    char addr[QC_MAX_ADDR + 1];
    int holds_shards;
    int alive; /* registered now (its lease is live) */
} qc_node_info;

/* Join the cluster: connect to etcd and NATS, register, load the catalog,
 * open this node's replicas and start applying their logs. Returns 0 or an
 * error code with a message in err. */
int qc_open(const qc_opts *opts, qc_cluster **out, char *err, size_t errlen);
/* Take part in electing the controller and, when elected, do its work
 * (cluster/controller.c). Call once after qc_open. */
void qc_controller_start(qc_cluster *c);
/* Leave: stop followers and watches, revoke the lease. NULL is a no-op. */
void qc_close(qc_cluster *c);

const char *qc_node_id(const qc_cluster *c);

/* Run fn(ctx) on one of the cluster's threads (FIFO). Returns 0 or QV_NOMEM. */
int qc_async(qc_cluster *c, void (*fn)(void *ctx), void *ctx);

/* ---------------------------------------------------------------- catalog */
/* The collection named name: 0 with a copy in out, or QV_NOTFOUND. */
int qc_meta_get(qc_cluster *c, const char *name, qc_meta *out);
void qc_meta_free(qc_meta *m);
/* Every collection in name order ([out] metas: n copies; free each, then the array). */
int qc_meta_list(qc_cluster *c, qc_meta **metas, size_t *n);
/* Nodes known ([out] n entries, free()). */
int qc_nodes(qc_cluster *c, qc_node_info **out, size_t *n);
/* The address of node id into addr. Returns 0 or QV_NOTFOUND. */
int qc_node_addr(qc_cluster *c, const char *id, char addr[QC_MAX_ADDR + 1]);
/* Likewise, for a node registered now (its lease live). */
int qc_node_live_addr(qc_cluster *c, const char *id, char addr[QC_MAX_ADDR + 1]);
/* Whether replica rp serves reads: ACTIVE on a live node, whose address then
 * goes into addr (may be NULL). */
int qc_replica_readable(qc_cluster *c, const qc_replica *rp, char addr[QC_MAX_ADDR + 1]);
/* How many replicas of shard sh serve reads (qc_replica_readable). */
uint32_t qc_shard_readable(qc_cluster *c, const qc_shard *sh);

/* Create a collection: place its replicas on the live nodes that hold shards
 * (no node twice in a shard, fewest replicas first), record it in etcd by
 * compare-and-swap (QV_EXISTS when the name is taken), create its log
 * streams. QV_INVALID with err when there are fewer such nodes than replicas. */
int qc_create(qc_cluster *c, const qv_coll_config *cfg, uint32_t shards, uint32_t replicas, char *err,
              size_t errlen);
/* Wait until every replica of collection `name` is open on its node (each
 * node opens its replicas as its watch sees the record), up to until_ms
 * (CLOCK_REALTIME ms). Returns 0, or QV_CANCELLED when some replica is not
 * open by then (QV_NOTFOUND: no such collection). */
int qc_wait_open(qc_cluster *c, const char *name, int64_t until_ms);
/* Drop: remove the record (every node drops its replicas on the watch event)
 * and the log streams. QV_NOTFOUND when there is none. */
int qc_drop(qc_cluster *c, const char *name, char *err, size_t errlen);

/* The shard an id belongs to. */
uint32_t qc_shard_of(uint64_t id, uint32_t shards);
/* The local collection name of a replica: "@<uid hex>.<shard>". */
void qc_replica_name(uint64_t uid, uint32_t shard, char out[QV_MAX_NAME + 1]);

/* ----------------------------------------------------------------- writes */
/* Publish a write (its items split by shard and into entries under the
 * message cap) and, unless ack_logged, wait until every ACTIVE replica of
 * each shard touched applied it (a replica that does not within the bound
 * is set CATCHING_UP). parts: one per shard touched (room for
 * QC_MAX_SHARDS), with the shard's log sequence of the write's last entry.
 * Returns 0, QV_NOTFOUND (no such collection), QV_IO (log unreachable until
 * the deadline), QV_CANCELLED, with a message in err. */
int qc_write(qc_cluster *c, const qc_meta *m, const qc_entry *w, int ack_logged, int64_t deadline_ms,
             qv_token_part *parts, size_t *nparts, char *err, size_t errlen);
/* Wait (up to deadline_ms, CLOCK_REALTIME ms) until the ACTIVE replicas of
 * the shards in parts applied them. Returns 0 or QV_CANCELLED (deadline). */
int qc_wait_applied(qc_cluster *c, const qc_meta *m, const qv_token_part *parts, size_t nparts,
                    int64_t deadline_ms, char *err, size_t errlen);

/* ------------------------------------------------ this node's replicas */
/* The applied log sequence of local replica `replica` (its local name):
 * 0 with *seq, or QV_NOTFOUND. */
int qc_local_applied(qc_cluster *c, const char *replica, uint64_t *seq);
/* Call done(ctx, applied, exists) once local replica `replica` has applied
 * seq, or at deadline_ms (CLOCK_REALTIME ms), from a cluster thread or the
 * replica's applier (done must not block). */
void qc_local_wait(qc_cluster *c, const char *replica, uint64_t seq, int64_t deadline_ms,
                   void (*done)(void *ctx, uint64_t applied, int exists), void *ctx);

/* The calls this node makes to its peers (cluster/peer.h). */
struct qc_peers *qc_peers_of(qc_cluster *c);

/* This node's replicas, for /metrics: fn(ctx, &info) for each. Asks the log
 * for each shard's last sequence (one NATS request each). */
typedef struct qc_replica_info {
    const char *collection;
    uint32_t shard;
    qc_state state;       /* in the shard map */
    uint64_t applied_seq; /* what this replica has applied */
    uint64_t log_last_seq; /* the log's last (0 when the log did not answer) */
} qc_replica_info;
void qc_local_replicas(qc_cluster *c, void (*fn)(void *ctx, const qc_replica_info *r), void *ctx);

/* Drain node (cancel: take it back): the controller moves every replica off
 * it. *left: the replicas it holds now. Returns 0 or QV_IO. */
int qc_drain(qc_cluster *c, const char *node, int cancel, uint32_t *left);
/* For /metrics: this node's controller role and work. */
typedef struct qc_ctl_stats {
    int is_controller;          /* this node holds the controller key */
    uint64_t moves_started;     /* replicas placed by this node as controller */
    uint64_t moves_in_progress; /* replicas marked leaving in the map now */
    uint64_t snapshot_bytes;    /* snapshot bytes this node installed */
} qc_ctl_stats;
void qc_controller_stats(qc_cluster *c, qc_ctl_stats *out);

/* A cluster backup (cluster/cbackup.c: manifest.json and each shard's items
 * from one ACTIVE replica) written to an unlinked file under scratch_dir:
 * [out] fd to read it from (close it), its size, the newest log sequence it
 * holds. Returns 0 or an error code with a message in err. */
int qc_backup_create(qc_cluster *c, const char *version, const char *scratch_dir, int *fd, uint64_t *size,
                     uint64_t *last_seq, char *err, size_t errlen);
/* Load the cluster backup in fd: every member checked (size, SHA-256)
 * before anything is written, then its collections created (QV_EXISTS when
 * the cluster holds one already) and its items written through the log.
 * Returns 0 or an error code with a message in err. */
int qc_restore(qc_cluster *c, int fd, uint32_t *ncoll, uint64_t *items, char *err, size_t errlen);

/* The nodes being drained ([out] out: n ids, free()). Returns 0 or QV_IO. */
int qc_draining(qc_cluster *c, char (**out)[QC_MAX_NODE_ID + 1], size_t *n);
/* Ask the controller for a balancing pass now. Returns 0 or QV_IO. */
int qc_rebalance(qc_cluster *c);
/* The controller's node id into out. Returns 0 or QV_NOTFOUND (none now). */
int qc_controller_of(qc_cluster *c, char out[QC_MAX_NODE_ID + 1]);
/* A replica's applied log sequence at a node (peer call). Returns 0 or QV_IO. */
int qc_peer_applied(qc_cluster *c, const char *addr, const char *replica, uint64_t *applied);

/* The log's last sequence of a shard (ClusterStatus). */
int qc_log_last(qc_cluster *c, const char *coll, uint32_t shard, uint64_t *last);
/* Set a replica's state in the shard map (compare-and-swap, retried on a
 * conflict). Returns 0, QV_NOTFOUND or QV_IO. */
int qc_set_state(qc_cluster *c, const char *coll, uint32_t shard, const char *node, qc_state st);
/* The collection's index spec (what RebuildIndex asked for), so that a
 * replica placed later builds, or takes from a peer, the same kind of index.
 * 0, QV_NOTFOUND, QV_BUSY, QV_IO. */
int qc_set_spec(qc_cluster *c, const char *coll, const qv_index_params *spec);

#endif
