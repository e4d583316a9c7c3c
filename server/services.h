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
extern const char *g_version;
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
/* Parse an IndexSpec (NULL = auto). Returns 0 or -1 with a message. */
int srv_parse_index_spec(const Quiver__V1__IndexSpec *s, uint32_t dim, qv_index_params *out,
                         char *err, size_t errlen);

#endif
