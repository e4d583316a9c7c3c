/*
 * The method table of quiverd: each gRPC method's path, request type, flags,
 * held-bytes measure and handlers. main.c hands it to rpc_serve, which knows
 * the handlers only through it, and to the metrics, which label rows by it.
 * Not for logic: a method's behaviour lives in its svc_*.c file.
 */
#include "grpc/health/v1/health.pb-c.h"
#include "grpc/reflection/v1alpha/reflection.pb-c.h"
#include "quiver/peer/v1/peer.pb-c.h"
#include "services.h"

#define REQ(name) &quiver__v1__##name##__descriptor

const rpc_method srv_methods[] = {
    {"/quiver.v1.Collections/Create", REQ(create_collection_request), 0, NULL,
     collections_create, NULL, NULL},
    {"/quiver.v1.Collections/Describe", REQ(describe_collection_request), 0, NULL,
     collections_describe, NULL, NULL},
    {"/quiver.v1.Collections/List", REQ(list_collections_request), 0, NULL, collections_list,
     NULL, NULL},
    {"/quiver.v1.Collections/Drop", REQ(drop_collection_request), 0, NULL, collections_drop,
     NULL, NULL},
    {"/quiver.v1.Items/Upsert", REQ(upsert_request), RPC_WRITE, srv_items_held_bytes,
     items_upsert, NULL, NULL},
    /* a stream of UpsertRequests, each decoded by items_import_step */
    {"/quiver.v1.Items/Import", REQ(upsert_request), RPC_WRITE | RPC_STREAM_IN,
     srv_items_held_bytes, items_import_start, items_import_step, NULL},
    {"/quiver.v1.Items/Get", REQ(get_items_request), 0, NULL, items_get, NULL, NULL},
    {"/quiver.v1.Items/Delete", REQ(delete_items_request), RPC_WRITE, srv_items_held_bytes,
     items_delete, NULL, NULL},
    {"/quiver.v1.Items/Scan", REQ(scan_request), 0, NULL, items_scan, items_scan_step, NULL},
    {"/quiver.v1.Search/Search", REQ(search_request), 0, NULL, search_search, NULL, NULL},
    {"/quiver.v1.Search/Recommend", REQ(recommend_request), 0, NULL, search_recommend, NULL,
     NULL},
    {"/quiver.v1.Search/RecommendBatch", REQ(recommend_batch_request), 0, NULL,
     search_recommend_batch, NULL, NULL},
    {"/quiver.v1.Admin/RebuildIndex", REQ(rebuild_index_request), 0, NULL, admin_rebuild_start,
     admin_rebuild_step, admin_rebuild_closed},
    {"/quiver.v1.Admin/Backup", REQ(backup_request), 0, NULL, admin_backup_start,
     admin_backup_step, NULL},
    {"/quiver.v1.Admin/ClusterStatus", REQ(cluster_status_request), 0, NULL,
     admin_cluster_status, NULL, NULL},
    {"/quiver.v1.Admin/DrainNode", REQ(drain_node_request), 0, NULL, admin_drain_node, NULL, NULL},
    {"/quiver.v1.Admin/Rebalance", REQ(rebalance_request), 0, NULL, admin_rebalance, NULL, NULL},
    /* a stream of RestoreChunks, each decoded by admin_restore_step */
    {"/quiver.v1.Admin/Restore", REQ(restore_chunk), RPC_STREAM_IN, NULL, admin_restore_start,
     admin_restore_step, NULL},
    /* between the nodes of a cluster (a single node answers UNIMPLEMENTED) */
    {"/quiver.peer.v1.Peer/WaitApplied", &quiver__peer__v1__wait_applied_request__descriptor, 0,
     NULL, peer_wait_applied, NULL, NULL},
    {"/quiver.peer.v1.Peer/Snapshot", &quiver__peer__v1__snapshot_request__descriptor, 0, NULL,
     peer_snapshot, NULL, NULL},
    {"/quiver.peer.v1.Peer/IndexFile", &quiver__peer__v1__index_file_request__descriptor, 0, NULL,
     peer_index_file, NULL, NULL},
    {"/grpc.health.v1.Health/Check", &grpc__health__v1__health_check_request__descriptor, 0,
     NULL, health_check, NULL, NULL},
    {"/grpc.health.v1.Health/Watch", &grpc__health__v1__health_check_request__descriptor, 0,
     NULL, health_watch, NULL, NULL},
    /* v1 and v1alpha carry the same messages: one descriptor decodes both */
    {"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
     &grpc__reflection__v1alpha__server_reflection_request__descriptor, RPC_STREAM_IN, NULL,
     reflection_start, reflection_step, NULL},
    {"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
     &grpc__reflection__v1alpha__server_reflection_request__descriptor, RPC_STREAM_IN, NULL,
     reflection_start, reflection_step, NULL},
};

const int srv_nmethods = (int)(sizeof srv_methods / sizeof srv_methods[0]);
