/*
 * Handlers of every service quiverd serves (one file per service), the method
 * table that joins them to the RPC loop (server/methods.c), and the helpers
 * they share for translating between protobuf and the engine (server/convert.c,
 * prefixed srv_). Handlers take their decoded request from r->req (rpc.h).
 */
#ifndef QUIVERD_SERVICES_H
#define QUIVERD_SERVICES_H

#include "quiver/v1/quiver.pb-c.h"
#include "quiver/arena.h"
#include "quiver/token.h"
#include "rpc.h"

/* methods.c: every method quiverd serves, for rpc_serve (rpc_server_opts.methods)
 * and the metrics' labels; a method's index here is its index everywhere. */
extern const rpc_method srv_methods[];
extern const int srv_nmethods;

/* svc_collections.c */
void collections_create(rpc *r);
void collections_describe(rpc *r);
void collections_list(rpc *r);
void collections_drop(rpc *r);

/* svc_items.c */
void items_upsert(rpc *r);
void items_import_start(rpc *r);
void items_import_step(rpc *r, int ok);
void items_get(rpc *r);
void items_delete(rpc *r);
void items_scan(rpc *r);
void items_scan_step(rpc *r, int ok);

/* What a decoded write holds until its reply, counted against
 * --max-queued-writes: the decoded request and the batch built from it (the
 * wire copy is freed once decoded), each about as big as the wire form. The
 * held_bytes of Upsert, Import and Delete in the method table. */
size_t srv_items_held_bytes(size_t wire_bytes);

/* svc_search.c */
extern unsigned g_slow_ms; /* --slow-ms: searches slower than this are logged (0 = off) */
extern unsigned g_max_k;   /* --max-k: the largest k a search may ask for */
extern size_t g_max_reply; /* --max-reply: bytes a reply may take */
void search_search(rpc *r);
void search_recommend(rpc *r);
void search_recommend_batch(rpc *r);

/* svc_admin.c */
void admin_rebuild_start(rpc *r);
void admin_rebuild_step(rpc *r, int ok);
void admin_rebuild_closed(rpc *r);
void admin_backup_start(rpc *r);
void admin_backup_step(rpc *r, int ok);
void admin_cluster_status(rpc *r);
void admin_drain_node(rpc *r); /* svc_cluster.c */
void admin_restore_start(rpc *r);
void admin_restore_step(rpc *r, int ok);
void admin_rebalance(rpc *r);
extern const char *g_version;
extern const char *g_data_dir; /* --data: scratch files of backups go there */
/* quiverd-test only (main.c under QUIVER_TEST_HOOKS): a rebuild call waits
 * this long before it starts the rebuild; 0 in quiverd */
extern unsigned g_test_rebuild_delay_ms; /* quiverd's version, for backups' manifests */

/* health.c */
void health_set_serving(int serving); /* for Check/Watch: rpc_server_opts.serving */
void health_check(rpc *r);
void health_watch(rpc *r);

/* reflection.c */
int reflection_init(void);
void reflection_free(void);
void reflection_start(rpc *r);
void reflection_step(rpc *r, int ok);

/* convert.c: engine codes to gRPC statuses */
grpc_status_code srv_status_of(int qv_rc);


/* The collection a request names (one reference: qv_coll_release), or NULL
 * with the status and message to fail the call with: INVALID_ARGUMENT when
 * the name is empty, PERMISSION_DENIED when the call's key is not scoped to
 * it, NOT_FOUND when there is no such collection. Items, Search and
 * RebuildIndex look their collection up through it; Collections checks its
 * `name` field itself (the name's syntax, then the key's scope). */
qv_coll *srv_find_coll(const char *name, grpc_status_code *code, char *err, size_t errlen);

/* Validate a vector: n floats for a collection of dimension dim named coll.
 * Messages name it list[index].vector ("items[3].vector"), formatted only
 * when it is refused (this runs for every vector of every call). Returns 0
 * or -1 with the message in err. */
int srv_check_vector(const float *v, size_t n, uint32_t dim, const char *coll, const char *list,
                     size_t index, char *err, size_t errlen);
/* Encode an item's attribute map into the builder's blob: a key repeated in
 * the map counts once, its last value wins; at most g_max_attr_keys keys and
 * g_max_attr_bytes encoded bytes per item (--max-attr-keys,
 * --max-attr-bytes). Returns 0 or -1 with a message naming the field in err. */
extern size_t g_max_attr_bytes;
extern unsigned g_max_attr_keys;
int srv_encode_attrs(Quiver__V1__Item__AttributesEntry **e, size_t n, qv_buf *out, const char *field,
                 char *err, size_t errlen);
/* Decode an attribute blob into protobuf map entries allocated in a, of the
 * entry type `entry` (Item's or Hit's AttributesEntry: same layout). Returns
 * the entries (count in *n), NULL when empty or out of memory. */
void **srv_decode_attrs(qv_arena *a, const ProtobufCMessageDescriptor *entry, const uint8_t *blob,
                    size_t len, size_t *n);
/* Fill an IndexInfo / CollectionInfo from the engine's view (strings in a). */
void srv_fill_collection_info(qv_arena *a, qv_coll *c, Quiver__V1__CollectionInfo *ci,
                              Quiver__V1__IndexInfo *ii);
void srv_fill_index_info(qv_arena *a, const qv_coll_info *info, Quiver__V1__IndexInfo *ii);
/* A write's token (UpsertResponse.write_token...) on a single node: the
 * collection's sequence once the write is applied. Returns its length. */
#define SRV_TOKEN_LEN 32
/* WriteAck: a single node acknowledges every write once applied, whichever
 * is asked; values outside the enum are refused */
static inline int srv_ack_valid(Quiver__V1__WriteAck a)
{
    return a == QUIVER__V1__WRITE_ACK__ACK_APPLIED || a == QUIVER__V1__WRITE_ACK__ACK_LOGGED;
}
size_t srv_write_token(const char *coll, uint64_t seq, uint8_t out[SRV_TOKEN_LEN]);

/* ------------------------------------------------ one node or a cluster */
/* This node's part in a cluster (svc_cluster.c); NULL on a single node,
 * where everything below is the engine's own path. */
struct qc_cluster;
extern struct qc_cluster *g_cluster;
#define SRV_TOKEN_MAX (9 + 256 * 15) /* a token of up to 256 shards */
/* What a write's submission gives back besides qv_write's rc and affected. */
typedef struct srv_write_result {
    int ack_logged;             /* WriteAck ACK_LOGGED asked */
    uint8_t tok[SRV_TOKEN_MAX]; /* cluster: the write's token (toklen 0: single node's) */
    size_t toklen;
    char err[400];              /* cluster: what failed, for the status message */
    grpc_status_code code;      /* cluster: the status of a failure (0: from qv_write.rc) */
} srv_write_result;
/* The collection a write or read names: on a single node a reference in
 * *coll (release it) and its config; in a cluster its config from the
 * catalog (*coll NULL). Returns 0 or -1 with code and err as srv_find_coll. */
int srv_find_config(const char *name, qv_coll **coll, qv_coll_config *cfg, grpc_status_code *code,
                    char *err, size_t errlen);
/* Submit an UPSERT or DELETE: to the engine's writer on a single node, to
 * the cluster's log otherwise; w->done runs when it is acknowledged. */
void srv_submit(qv_write *w, const qv_coll_config *cfg, srv_write_result *res);
/* The token of an acknowledged write into out (pointing into res). */
void srv_token_of(const qv_write *w, const qv_coll_config *cfg, srv_write_result *res,
                  ProtobufCBinaryData *out);
/* At the top of a handler: 1 when the call goes to the cluster's router (a
 * caller's call to a cluster node), 0 when this node answers it itself (a
 * single node, or a peer reading a replica), -1 when it was refused (a
 * peer call without the cluster's key). */
int srv_routed(rpc *r);
/* Routed calls (svc_cluster.c), after the handler checked what it checks
 * on a single node; each answers the call. */
void srv_cluster_create(rpc *r, const qv_coll_config *cfg, uint32_t shards, uint32_t replicas);
void srv_cluster_drop(rpc *r, const char *name);
void srv_cluster_describe(rpc *r);
void srv_cluster_list(rpc *r);
void srv_cluster_get(rpc *r);
void srv_cluster_search(rpc *r);
void srv_cluster_recommend(rpc *r);
void srv_cluster_recommend_batch(rpc *r);
void srv_cluster_status(rpc *r);
void srv_cluster_scan(rpc *r, const qv_coll_config *cfg);
/* Scan's step for a routed call: 1 when it took it. */
int srv_cluster_scan_step(rpc *r, int ok);
/* RebuildIndex of a cluster's collection (the RebuildIndexRequest in r->req):
 * every replica rebuilds; progress(ctx, ...) with the sums as they change,
 * then finished(ctx, ...) once (ii: the index of one replica with counts
 * summed, the callee's to free; NULL on failure) from a cluster thread.
 * *cancel set stops the replicas' rebuilds. */
void srv_cluster_rebuild(rpc *r,
                         void (*progress)(void *ctx, const char *phase, uint64_t done, uint64_t total,
                                          double elapsed),
                         void (*finished)(void *ctx, grpc_status_code code, const char *msg,
                                          Quiver__V1__IndexInfo *ii, uint64_t done, double elapsed),
                         void *ctx, _Atomic int *cancel);
/* A token's parts, merged over writes (the largest sequence per shard). */
typedef struct srv_token_max {
    size_t n;
    qv_token_part p[256];
} srv_token_max;
void srv_token_merge(srv_token_max *m, const qv_coll_config *cfg, const srv_write_result *res);
size_t srv_token_encode(const srv_token_max *m, const qv_coll_config *cfg, uint8_t out[SRV_TOKEN_MAX]);
/* Wait until the ACTIVE replicas applied parts, then done(ctx, code, msg)
 * from a cluster thread. */
void srv_cluster_wait_parts(rpc *r, const qv_coll_config *cfg, const srv_token_max *parts,
                            void (*done)(void *ctx, grpc_status_code code, const char *msg), void *ctx);
/* quiver.peer.v1.Peer/WaitApplied, Peer/Snapshot, Peer/IndexFile */
void peer_wait_applied(rpc *r);
void peer_snapshot(rpc *r);
void peer_index_file(rpc *r);
/* A read's after_token (field: its name in the request) on a single node:
 * GRPC_STATUS_OK when empty or when the write it names is visible (always,
 * for a token this node gave); else the status with a message in err. */
grpc_status_code srv_check_after_token(qv_coll *c, const ProtobufCBinaryData *tok, const char *field,
                                       char *err, size_t errlen);
/* Parse an IndexSpec (NULL = auto). Returns 0 or -1 with a message. */
int srv_parse_index_spec(const Quiver__V1__IndexSpec *s, uint32_t dim, qv_index_params *out,
                         char *err, size_t errlen);

#endif
