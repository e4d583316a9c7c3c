/*
 * qv_arena: a bump allocator for memory that is released all at once — a
 * gRPC call's decoded request and reply, the attributes of an import batch.
 * Allocations come from 64 KiB chunks (a larger request gets a chunk of its
 * own) and are never freed one by one: qv_arena_free releases them all.
 * Not for memory that outlives its owner's unit of work, nor a general heap.
 *
 * Caveats:
 *  - Not thread-safe: an arena belongs to one thread at a time (handing it to
 *    another thread under a lock, as the importer does, is fine).
 *  - Every pointer an arena returned is valid until qv_arena_free of that
 *    arena, and only until then; nothing it returned may be passed to free().
 *  - Each allocation is aligned for any type (max_align_t) and zeroed.
 */
#ifndef QUIVER_ARENA_H
#define QUIVER_ARENA_H

#include <stddef.h>

typedef struct qv_arena qv_arena;

/* A new empty arena (no chunk is allocated until the first qv_arena_alloc).
 * Returns the arena, or NULL when out of memory. Free it with qv_arena_free. */
qv_arena *qv_arena_new(void);

/* n zeroed bytes from a.
 * [in] n  bytes wanted; 0 gives a valid pointer to no bytes (not NULL).
 * Returns the memory, or NULL when out of memory (a is unchanged then). */
void *qv_arena_alloc(qv_arena *a, size_t n);

/* A NUL-terminated copy of the first n bytes of s.
 * [in] s  n bytes (NULs among them are copied too); need not be terminated.
 * Returns the copy (n + 1 bytes), or NULL when out of memory. */
char *qv_arena_strndup(qv_arena *a, const char *s, size_t n);

/* Release a and everything allocated from it. NULL is a no-op. */
void qv_arena_free(qv_arena *a);

#endif
