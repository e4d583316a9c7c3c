/*
 * Direct protobuf wire encoding of the hot reply: SearchResponse with each
 * hit's attributes transcoded straight from the stored attribute blob (and
 * its vector when asked), in
 * one buffer, without building protobuf-c message trees (which cost more
 * than the search itself for 100 hits with attributes). Everything else uses
 * protobuf-c.
 */
#ifndef QUIVERD_WIRE_H
#define QUIVERD_WIRE_H

#include <stddef.h>
#include <stdint.h>

/* One hit to encode; attrs points into an LMDB record (valid while its txn is
 * open), attrs_len 0 = none. */
typedef struct wire_hit {
    uint64_t id;
    float score;
    const uint8_t *attrs;
    size_t attrs_len;
    const float *vector; /* dim floats, or NULL: no vector field */
    uint32_t dim;
    size_t size; /* set by wire_search_response_size */
} wire_hit;

/* Bytes of the SearchResponse holding nq result lists: hits[off[i] ..
 * off[i+1]) for query i (off: nq+1 entries). Caches each hit's size. */
size_t wire_search_response_size(wire_hit *hits, const size_t *off, size_t nq);

/* Encode it into out (exactly wire_search_response_size bytes, after it). */
void wire_search_response(uint8_t *out, const wire_hit *hits, const size_t *off, size_t nq);

/* The same for one Hits message (Recommend's reply): its size (caching each
 * hit's), and its encoding into out. */
size_t wire_hits_size(wire_hit *hits, size_t n);
void wire_hits(uint8_t *out, const wire_hit *hits, size_t n);

#endif
