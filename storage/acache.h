/*
 * A collection's attribute blobs in memory, for the hits of searches: one
 * hash lookup instead of an LMDB lookup (a B-tree descent and a binary
 * search of a cold leaf page) per hit. It holds what searches read (the
 * hot items), up to a budget shared by a database's collections. Once the
 * budget is spent, a collection's offers evict its own entries that were
 * not found lately (second chance), at most an eighth of what it holds per
 * offer; a collection that holds nothing waits for bytes to come back.
 *
 * Consistency with LMDB snapshots: every entry carries the id of the LMDB
 * snapshot it was read in (mdb_txn_id), and a reader takes an entry only if
 * its own snapshot is at least that one; otherwise it reads LMDB. The
 * writer thread forgets the ids of a group commit before committing it and
 * raises the cache's fence to that transaction; a search offers what it
 * read in LMDB only if its snapshot is at or past the fence, i.e. no write
 * prepared since could have changed it. So no snapshot that includes a
 * write can find an entry older than the write.
 *
 * A reader takes a reference to each blob it finds (nothing is copied): a
 * blob the writer removes lives until the last result holding it ends.
 */
#ifndef QUIVER_ACACHE_H
#define QUIVER_ACACHE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct qv_acache qv_acache;

/* A cache charging what it holds to *left (shared by a database's caches;
 * its bytes go back when entries go). NULL when out of memory: every
 * function below takes NULL as an empty cache. */
qv_acache *qv_acache_new(_Atomic size_t *left);
void qv_acache_free(qv_acache *ac);

/* Writer thread, before the commit of a write of these ids (txnid: the
 * write transaction's mdb_txn_id): their entries go, and the fence rises to
 * txnid. */
void qv_acache_forget(qv_acache *ac, uint64_t txnid, const uint64_t *ids, size_t n);

/* Readers: whether blobs read in snapshot txnid would be kept (worth
 * collecting for an offer). */
int qv_acache_wants(const qv_acache *ac, uint64_t txnid);
/* The blobs of n items as snapshot txnid read them in LMDB (lens[i] 0: none),
 * kept as far as the budget goes after evicting entries not found lately
 * (ids held already are left as they are), unless the fence has passed
 * txnid. Takes the write lock. */
void qv_acache_offer(qv_acache *ac, uint64_t txnid, size_t n, const uint64_t *ids,
                     const uint8_t *const *blobs, const size_t *lens);

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
