/*
 * qv_store: Quiver's durable state in one LMDB environment. Named databases:
 *   collections  name -> config            stats   u32be id -> counters
 *   items        (u32be coll, u64be id) -> item record (vector, seq)
 *   attrs        (u32be coll, u64be id) -> attribute blob (items that have any)
 *   seqlog       (u32be coll, u64be seq) -> (op, item id): the newest write of
 *                every live item plus tombstones of deletes
 *   meta         "format" -> u32 version, "next_coll_id" -> u32
 *   postings     attribute value -> roaring bitmap of item ids (postings.h),
 *                kept by item_put/item_delete and applied at the top commit
 * This layer knows records and transactions; it has no threads, no indexes.
 *
 * Caveats:
 *  - One writer: write transactions are opened only by the engine's writer
 *    thread (LMDB would serialise others anyway, blocking them).
 *  - Views returned by qv_store_item_get and scans point into LMDB's map and
 *    are valid until the transaction ends.
 *  - The environment is opened with MDB_NOTLS: a read txn may be used from any
 *    single thread at a time and many may be open per thread.
 */
#ifndef QUIVER_STORE_H
#define QUIVER_STORE_H

#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>

#include "quiver/codec.h"
#include "quiver/types.h"
#include "lmdb_err.h"

/* Bump when the set or meaning of named databases changes.
 * 2: attributes moved from item records to the attrs database.
 * 3: the postings database (attribute index, quiver/postings.h); a format 2
 *    store gets it built when opened. */
#define QV_STORE_FORMAT 3

typedef struct qv_store qv_store;

/* Open or create the store. [out] out: close with qv_store_close.
 * Returns 0, QV_IO (dir not usable), QV_VERSION (format mismatch), QV_LMDB. */
int qv_store_open(const qv_store_opts *opts, qv_store **out);
/* Close; NULL is a no-op. All transactions must have ended. */
void qv_store_close(qv_store *st);
MDB_env *qv_store_env(qv_store *st);
/* Drop this process's mappings of LMDB pages (they stay in the page cache and
 * fault back in on use): keeps a full scan from inflating resident memory. */
void qv_store_release_pages(qv_store *st);

/* Transactions. read: read-only snapshot; write: parent may be NULL or a write
 * txn (nested). End with qv_store_commit or qv_store_abort.
 * Returns 0, QV_FULL, QV_LMDB. */
int qv_store_read_begin(qv_store *st, MDB_txn **txn);
int qv_store_write_begin(qv_store *st, MDB_txn *parent, MDB_txn **txn);
int qv_store_commit(MDB_txn *txn);
void qv_store_abort(MDB_txn *txn);
/* The transaction's LMDB id: a read snapshot's is the last write committed
 * in it; a write's is what it commits as. */
uint64_t qv_store_txn_id(MDB_txn *txn);
/* Make a read txn safe to share between threads that only read through it
 * (the env is MDB_NOTLS; LMDB updates a read txn on the first use of each
 * database, done here in the calling thread). Returns 0, QV_LMDB. */
int qv_store_read_share(qv_store *st, MDB_txn *txn);
/* Read snapshots begun by this process so far (tests count them per call). */
uint64_t qv_store_reads_begun(void);
/* The postings database, for lookups in read txns (quiver/postings.h). */
MDB_dbi qv_store_postings_dbi(qv_store *st);

/* qv_store_err: lmdb_err.h */

/* ------------------------------------------------------------ collections */
/* Config by name. Returns 0, QV_NOTFOUND, QV_CORRUPT, QV_VERSION, QV_LMDB. */
int qv_store_coll_get(qv_store *st, MDB_txn *txn, const char *name, qv_coll_config *c);
/* Create a collection: assigns c->id, writes config and zero stats.
 * Returns 0, QV_EXISTS, QV_FULL, QV_LMDB. */
int qv_store_coll_create(qv_store *st, MDB_txn *txn, qv_coll_config *c);
/* Replace the config of an existing collection (same name and id).
 * Returns 0, QV_NOTFOUND, QV_LMDB. */
int qv_store_coll_update(qv_store *st, MDB_txn *txn, const qv_coll_config *c);
/* Delete a collection: config, stats, items, sequence log. [out] items_deleted
 * may be NULL. Returns 0, QV_NOTFOUND, QV_LMDB. */
int qv_store_coll_drop(qv_store *st, MDB_txn *txn, const char *name, uint64_t *items_deleted);
/* Call fn for each collection in name order; fn returning non-zero stops the
 * scan and is returned. */
int qv_store_coll_foreach(qv_store *st, MDB_txn *txn,
                          int (*fn)(void *ctx, const qv_coll_config *c), void *ctx);

int qv_store_stats_get(qv_store *st, MDB_txn *txn, uint32_t coll_id, qv_coll_stats *s);
int qv_store_stats_put(qv_store *st, MDB_txn *txn, uint32_t coll_id, const qv_coll_stats *s);

/* ------------------------------------------------------------------ items */
/* Item by id: vector and sequence number (v->attrs is empty: see
 * qv_store_attrs_get). Returns 0, QV_NOTFOUND, QV_CORRUPT, QV_VERSION, QV_LMDB. */
int qv_store_item_get(qv_store *st, MDB_txn *txn, uint32_t coll_id, uint64_t id, qv_item_view *v);
/* Attribute blob of an item ([out] blob, len valid until the txn ends).
 * Returns 0, QV_NOTFOUND (no attributes, or no such item), QV_LMDB. */
int qv_store_attrs_get(qv_store *st, MDB_txn *txn, uint32_t coll_id, uint64_t id,
                       const uint8_t **blob, size_t *len);
/* Insert or replace an item with sequence number seq (dim floats vec, attrs
 * blob). Keeps the sequence log in step. [out] existed: 1 if it replaced one.
 * Returns 0, QV_FULL, QV_CORRUPT, QV_LMDB. */
int qv_store_item_put(qv_store *st, MDB_txn *txn, uint32_t coll_id, uint64_t id, uint64_t seq,
                      uint32_t dim, const float *vec, const void *attrs, size_t attrs_len,
                      int *existed);
/* Delete an item, leaving a tombstone with sequence number seq.
 * Returns 0, QV_NOTFOUND (nothing written), QV_FULL, QV_LMDB. */
int qv_store_item_delete(qv_store *st, MDB_txn *txn, uint32_t coll_id, uint64_t id, uint64_t seq);

/* Call fn for each item of a collection in id order, starting at id `from`;
 * non-zero from fn stops and is returned. */
int qv_store_item_foreach(qv_store *st, MDB_txn *txn, uint32_t coll_id, uint64_t from,
                          int (*fn)(void *ctx, uint64_t id, const qv_item_view *v), void *ctx);

/* Call fn for each sequence-log entry with seq > after, in seq order. */
int qv_store_log_foreach(qv_store *st, MDB_txn *txn, uint32_t coll_id, uint64_t after,
                         int (*fn)(void *ctx, uint64_t seq, qv_op op, uint64_t id), void *ctx);

/* Drop tombstones with seq <= upto (once an index file covers them).
 * [out] pruned may be NULL. Returns 0 or QV_LMDB. */
int qv_store_tombstones_prune(qv_store *st, MDB_txn *txn, uint32_t coll_id, uint64_t upto,
                              size_t *pruned);

#endif
