/*
 * qv_postings: the attribute index. Every attribute value of every item is
 * also a key of LMDB's "postings" database whose value is a roaring bitmap of
 * the item ids holding it, cut in chunks of 2^16 ids so that a write touches
 * a few kilobytes whatever the list's length. Keys (big-endian, so that LMDB's
 * byte order is the order a scan wants):
 *   u32 coll, 0x00, u64 chunk                               every item
 *   u32 coll, 0x01, u16 keylen, key, u8 type, u64 chunk       items with key of type
 *   u32 coll, 0x02, u16 keylen, key, u8 vtype, value, u64 chunk
 * vtype 's': u16 len + bytes (strings and string-list elements, up to
 * QV_POST_MAX_STR bytes); 'h': longer strings as their first 24 bytes and a
 * 64-bit hash (lookups say to verify); 'i': int64 with the sign bit flipped;
 * 'd': double bits made order-preserving; 'b': u8 0/1. A range is one cursor
 * scan. Chunk values are CRoaring portable bitmaps of the ids' low 32 bits.
 *
 * Writes: the store records each item's change (qv_postings_item) in a
 * pending list as it writes the item; qv_postings_flush applies the list,
 * sorted, to LMDB in the same transaction just before it commits, one
 * read-modify-write per touched chunk. Marks let a nested transaction that
 * aborts drop its part.
 */
#ifndef QUIVER_POSTINGS_H
#define QUIVER_POSTINGS_H

#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>

#include "quiver/filter.h"
#include "idset.h"

#define QV_POST_MAX_STR 200

typedef struct qv_postings qv_postings;

int qv_postings_new(qv_postings **out);
void qv_postings_free(qv_postings *p);
/* Pending changes so far, to roll back to. */
size_t qv_postings_mark(const qv_postings *p);
void qv_postings_rollback(qv_postings *p, size_t mark);
/* Record the change of item id in coll from (old_exists, old attribute blob)
 * to (new_exists, new blob); an unchanged value costs nothing. Returns 0,
 * QV_NOMEM, QV_CORRUPT (a blob does not decode). */
int qv_postings_item(qv_postings *p, uint32_t coll, uint64_t id, int old_exists,
                     const void *old_attrs, size_t old_len, int new_exists, const void *new_attrs,
                     size_t new_len);
/* Apply and clear the pending changes in txn; changes of a collection whose
 * record in stats (u32 big-endian id keys) is gone, dropped later in the same
 * txn, are left out. Returns 0, QV_FULL, QV_LMDB, QV_NOMEM, QV_CORRUPT. */
int qv_postings_flush(qv_postings *p, MDB_txn *txn, MDB_dbi dbi, MDB_dbi stats);
/* Pending changes (0 after a flush). */
size_t qv_postings_pending(const qv_postings *p);

/* --------------------------------------------------------------- lookups
 * Each ORs the ids found into out; returns 0, QV_CORRUPT, QV_NOMEM, QV_LMDB. */
int qv_postings_all(MDB_txn *txn, MDB_dbi dbi, uint32_t coll, qv_idset *out);
/* Items holding key with any type. */
int qv_postings_exists(MDB_txn *txn, MDB_dbi dbi, uint32_t coll, const char *key, size_t klen,
                       qv_idset *out);
/* Bit (1 << qv_attr_type) set for each type key holds in some item. */
int qv_postings_types(MDB_txn *txn, MDB_dbi dbi, uint32_t coll, const char *key, size_t klen,
                      unsigned *mask);
/* Items whose key is the string s, or a string list holding it. *verify is
 * set to 1 when s is too long to be kept whole: the caller then checks each
 * id's attribute (a hash match may be a collision). */
int qv_postings_string(MDB_txn *txn, MDB_dbi dbi, uint32_t coll, const char *key, size_t klen,
                       const char *s, size_t slen, qv_idset *out, int *verify);
int qv_postings_bool(MDB_txn *txn, MDB_dbi dbi, uint32_t coll, const char *key, size_t klen,
                     int b, qv_idset *out);
/* Items whose key is an int or double in the range (bounds compared
 * numerically; has_lo/has_hi 0 = open; lo_incl/hi_incl inclusive). */
int qv_postings_range(MDB_txn *txn, MDB_dbi dbi, uint32_t coll, const char *key, size_t klen,
                      int has_lo, double lo, int lo_incl, int has_hi, double hi, int hi_incl,
                      qv_idset *out);
/* Items whose key is the int v, or a double equal to it. */
int qv_postings_int(MDB_txn *txn, MDB_dbi dbi, uint32_t coll, const char *key, size_t klen,
                    int64_t v, qv_idset *out);

/* storage/filter.c: check a filter's shape and its tests against the
 * attribute types the collection holds; evaluate it to the set of matching
 * ids (from a snapshot of the store). prefix names it in messages
 * ("filter"). Returns 0, QV_INVALID (err says which condition and why),
 * QV_NOMEM, QV_LMDB, QV_CORRUPT. */
typedef struct qv_store qv_store;
int qv_filter_eval(qv_store *st, MDB_txn *txn, uint32_t coll_id, const qv_filter *f,
                   const char *prefix, qv_idset **out, char *err, size_t errlen);

#endif
