/*
 * Log entries: a write as it travels through a shard's JetStream stream, from
 * the router that validated it to every replica that applies it. An entry
 * carries what the engine's writer takes (quiver/db.h qv_write): ids, the
 * vectors already normalised for cosine, and each item's attributes already
 * encoded (quiver/codec.h), so that a replica applies exactly what the
 * router checked, without decoding protobuf or validating again.
 *
 * Format (version 1, little-endian):
 *   'Q' 'E' version=1 kind ('U' upsert | 'D' delete)
 *   u32 n, u32 dim (0 for a delete)
 *   n x u64 id
 *   upsert: n*dim x f32 vectors, (n+1) x u32 attribute offsets, attribute bytes
 * Entries are at most QC_ENTRY_MAX bytes (JetStream 2.9 loses messages over
 * its max_payload; CLUSTER-ENGINES.md): qc_entry_split cuts a write into
 * entries that fit.
 */
#ifndef QUIVER_CLUSTER_ENTRY_H
#define QUIVER_CLUSTER_ENTRY_H

#include <stddef.h>
#include <stdint.h>

#define QC_ENTRY_MAX ((size_t)4 << 20) /* well below NATS's 8 MB max_payload */
#define QC_ENTRY_HEADER 12

typedef enum { QC_ENTRY_UPSERT = 'U', QC_ENTRY_DELETE = 'D' } qc_entry_kind;

/* A write to encode, or a decoded entry (see qc_entry_decode). */
typedef struct qc_entry {
    qc_entry_kind kind;
    uint32_t n, dim;
    const uint64_t *ids;    /* n */
    const float *vecs;      /* upsert: n*dim */
    const size_t *attr_off; /* upsert: n+1 offsets into attrs, or NULL (no attributes) */
    const uint8_t *attrs;
} qc_entry;

/* The encoded size of items [from, to) of w. */
size_t qc_entry_size(const qc_entry *w, uint32_t from, uint32_t to);

/* The end of the longest run of items from `from` whose entry fits in max
 * bytes (at least one item: an item alone always fits, since the server
 * bounds an item's size well below QC_ENTRY_MAX). */
uint32_t qc_entry_split(const qc_entry *w, uint32_t from, size_t max);

/* Encode items [from, to) of w into out (qc_entry_size bytes). Returns the
 * bytes written. */
size_t qc_entry_encode(const qc_entry *w, uint32_t from, uint32_t to, uint8_t *out);

/* Decode an entry of len bytes (any alignment). ids, vecs and attr_off are
 * copied into one block returned in *mem (free it); attrs points into buf,
 * which must outlive out. Returns 0, QV_CORRUPT (damaged or cut short),
 * QV_VERSION (a newer format) or QV_NOMEM. */
int qc_entry_decode(const void *buf, size_t len, qc_entry *out, void **mem);

#endif
