/*
 * qv_idset: a set of item ids (0 .. 2^63-1) on CRoaring's 32-bit roaring
 * bitmaps, one per distinct high 32 bits of the ids present (Debian's
 * CRoaring 0.2 has no 64-bit C type). Filters evaluate to one of these.
 *
 * Caveats:
 *  - Not thread-safe for writers; concurrent reads of a set nobody modifies
 *    are safe (the filter cache shares finished sets between searches).
 *  - Allocation failure inside CRoaring aborts in some versions; sets are
 *    bounded by what LMDB holds, which the map size bounds.
 */
#ifndef QUIVER_IDSET_H
#define QUIVER_IDSET_H

#include <stddef.h>
#include <stdint.h>

typedef struct qv_idset qv_idset;

/* A new empty set, or NULL (no memory). Free with qv_idset_free (NULL ok). */
qv_idset *qv_idset_new(void);
void qv_idset_free(qv_idset *s);
qv_idset *qv_idset_copy(const qv_idset *s);

/* Returns 0 or QV_NOMEM. */
int qv_idset_add(qv_idset *s, uint64_t id);
int qv_idset_add_many(qv_idset *s, const uint64_t *ids, size_t n);
void qv_idset_remove(qv_idset *s, uint64_t id);
int qv_idset_contains(const qv_idset *s, uint64_t id);
uint64_t qv_idset_count(const qv_idset *s);
/* Largest id; 0 for an empty set. */
uint64_t qv_idset_max(const qv_idset *s);

/* s = s | o, s & o, s - o. Return 0 or QV_NOMEM. */
int qv_idset_or(qv_idset *s, const qv_idset *o);
int qv_idset_and(qv_idset *s, const qv_idset *o);
int qv_idset_andnot(qv_idset *s, const qv_idset *o);

/* OR a serialized 32-bit roaring bitmap (CRoaring's portable format, len
 * bytes) into the ids whose high 32 bits are high. Returns 0, QV_CORRUPT,
 * QV_NOMEM. */
int qv_idset_or_portable(qv_idset *s, uint32_t high, const void *buf, size_t len);

/* Ids in ascending order into out (qv_idset_count entries). */
void qv_idset_to_array(const qv_idset *s, uint64_t *out);

/* Dense bitmap of the ids below nbits (bit i of byte i/8, LSB first: the
 * layout of FAISS's IDSelectorBitmap) into out (nbits/8 rounded up bytes,
 * zeroed by the caller). */
void qv_idset_to_bitmap(const qv_idset *s, uint8_t *out, uint64_t nbits);

#endif
