/*
 * Write tokens: where a write sits in a collection's log, so that a later
 * read can wait until it sees the write (UpsertResponse.write_token, passed
 * back as SearchRequest.after_token and the like). Opaque to clients; the
 * same format on a single node (one part: the collection's sequence number)
 * and in a cluster (one part per shard the write touched: the shard's log
 * sequence).
 *
 * Format (version 1): 'q', 1, u32 LE hash of the collection name, a varint
 * count, then count pairs of varints (shard, sequence) in shard order. At
 * most QV_TOKEN_MAX_PARTS parts.
 */
#ifndef QUIVER_TOKEN_H
#define QUIVER_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#define QV_TOKEN_MAX_PARTS 1024
/* the longest token: header, count and QV_TOKEN_MAX_PARTS pairs */
#define QV_TOKEN_MAX_LEN (6 + 3 + QV_TOKEN_MAX_PARTS * (5 + 10))

typedef struct qv_token_part {
    uint32_t shard;
    uint64_t seq;
} qv_token_part;

/* Encode n parts (shards ascending, n <= QV_TOKEN_MAX_PARTS) for collection
 * coll into out (QV_TOKEN_MAX_LEN bytes will do). Returns the length. */
size_t qv_token_encode(const char *coll, const qv_token_part *parts, size_t n, uint8_t *out);

/* Decode a token given for collection coll into parts (room for max).
 * Returns the number of parts, or -1 with a message in err naming what is
 * wrong (not a token, another version, another collection's token). */
int qv_token_decode(const char *coll, const uint8_t *tok, size_t len, qv_token_part *parts,
                    size_t max, char *err, size_t errlen);

#endif
