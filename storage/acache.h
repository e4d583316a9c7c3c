/*
 * A collection's attribute blobs in memory, for the hits of searches: one
 * hash lookup instead of an LMDB lookup (a B-tree descent and a binary
 * search of a cold leaf page) per hit.
 *
 * Consistency with LMDB snapshots: every entry carries the id of the LMDB
 * transaction that wrote it (mdb_txn_id), and a reader takes an entry only
 * if its snapshot is at least that transaction; otherwise it reads LMDB.
 * The writer thread is the only one that changes entries: it forgets the
 * ids of a group commit before committing and puts their new blobs after,
 * so no snapshot that includes a write can find an entry older than it.
 * A collection's blobs are loaded by the writer thread too (qv_acache_fill,
 * before its first group commit). Entries that do not fit the database's
 * budget are not kept: those hits read LMDB as before.
 *
 * A reader takes a reference to each blob it finds (nothing is copied): a
 * blob the writer removes lives until the last result holding it ends.
 */
#ifndef QUIVER_ACACHE_H
#define QUIVER_ACACHE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

typedef struct qv_acache qv_acache;

/* A cache charging what it holds to *left (shared by a database's caches;
 * its bytes go back when entries go). NULL when out of memory: every
 * function below takes NULL as an empty cache. */
qv_acache *qv_acache_new(_Atomic size_t *left);
void qv_acache_free(qv_acache *ac);

/* Writer thread. Before the commit of a write of these ids: */
void qv_acache_forget(qv_acache *ac, const uint64_t *ids, size_t n);
/* After it (txnid: the write transaction's mdb_txn_id): the n items' new
 * blobs, item i's at attrs + attr_off[i] .. attr_off[i + 1] (attr_off NULL:
 * none), items with skip[i] set left out (skip may be NULL). */
void qv_acache_put(qv_acache *ac, uint64_t txnid, size_t n, const uint64_t *ids, const uint8_t *attrs,
                   const size_t *attr_off, const char *skip);
/* Every attribute blob of collection coll_id in txn (a read snapshot taken
 * by the writer thread between group commits), as far as the budget goes.
 * [out] n: entries kept; full: 1 if the budget stopped it. Returns 0 or the
 * store's codes. */
int qv_acache_fill(qv_acache *ac, qv_store *st, MDB_txn *txn, uint32_t coll_id, size_t *n, int *full);

/* Readers: find under the read lock. Returns 1 with the blob (len 0: the
 * item has no attributes, blob and ref NULL) if the cache holds id as of
 * snapshot txnid, else 0 (read LMDB). The blob stays valid until
 * qv_acache_unref(*ref), which may be called after qv_acache_read_end. */
void qv_acache_read_begin(qv_acache *ac);
int qv_acache_find(const qv_acache *ac, uint64_t id, uint64_t txnid, const uint8_t **blob, size_t *len,
                   void **ref);
void qv_acache_read_end(qv_acache *ac);
/* Drop a reference from qv_acache_find; NULL is a no-op. */
void qv_acache_unref(void *ref);

/* Bytes held (entries, blobs, table). */
size_t qv_acache_bytes(qv_acache *ac);

#endif
