/*
 * The router: how any node answers a read of a sharded collection. A read
 * goes to one ACTIVE replica of every shard (rotating; a replica that fails
 * is replaced by another once), as the same quiver.v1 call on the replica's
 * local collection, and the shards' answers are merged here:
 *  - hits by score (each shard returns its own top k of the whole request,
 *    filters, exclusions and thresholds applied there);
 *  - groups: the merged hits capped per group value again (exact: an item
 *    the global answer keeps is kept by its shard too);
 *  - queries and examples by id: the id's owning shard resolves its vector
 *    first; the others search by that vector (the owner by the id, so that
 *    the item is left out of its own answer, as on one node).
 * Messages of refusals name the collection the caller named, never the
 * replica's local name.
 */
#ifndef QUIVER_CLUSTER_ROUTER_H
#define QUIVER_CLUSTER_ROUTER_H

#include <grpc/status.h>

#include "cluster.h"
#include "quiver/arena.h"
#include "quiver/v1/quiver.pb-c.h"

/* A routed call's outcome: the status, and on OK a reply that points into
 * the arena and the peers' replies kept (qr_result_free frees them all). */
typedef struct qr_result {
    grpc_status_code code;
    char msg[1024];
    ProtobufCMessage *reply;
    qv_arena *a;
    ProtobufCMessage **keep;
    size_t nkeep, capkeep;
    struct qr_result *sub; /* results the reply points into as well (a batch's) */
    size_t nsub;
    /* a reply already encoded (reply NULL then): raw_len bytes in the arena */
    uint8_t *raw;
    size_t raw_len;
    uint8_t **rawkeep; /* peers' raw replies, freed with the result */
    size_t nraw, capraw;
} qr_result;

void qr_result_free(qr_result *r);

/* --max-k: the largest k a read may ask for (default 1000). */
void qr_set_max_k(unsigned k);

/* Each takes the request as decoded (its collection checked by the caller:
 * name, key scope) and a deadline in CLOCK_REALTIME ms. */
void qr_search(qc_cluster *c, const Quiver__V1__SearchRequest *req, int64_t deadline, qr_result *out);
void qr_recommend(qc_cluster *c, const Quiver__V1__RecommendRequest *req, int64_t deadline,
                  qr_result *out);
void qr_get(qc_cluster *c, const Quiver__V1__GetItemsRequest *req, int64_t deadline, qr_result *out);
void qr_describe(qc_cluster *c, const char *name, int64_t deadline, qr_result *out);
void qr_list(qc_cluster *c, int64_t deadline, qr_result *out);
void qr_cluster_status(qc_cluster *c, int64_t deadline, qr_result *out);
/* How many of ids exist (a Delete's reply). Returns 0 or -1 with out set. */
int qr_count_existing(qc_cluster *c, const qc_meta *m, const uint64_t *ids, size_t n, int64_t deadline,
                      uint64_t *count, qr_result *out);
/* A page of a Scan: up to limit items after after_id (first: include id 0
 * when after_id is 0 and first is set), in id order across shards.
 * Returns the ScanResponse in out->reply; *more is 0 when the scan ended. */
void qr_scan_page(qc_cluster *c, const Quiver__V1__ScanRequest *req, uint64_t after_id, int first,
                  uint32_t limit, int64_t deadline, qr_result *out, int *more);

#endif
