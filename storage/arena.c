/*
 * arena: the bump allocator of include/quiver/arena.h. A list of chunks,
 * the one being filled at its head; a request too large for a standard chunk
 * gets an exact chunk of its own, linked behind the head so that the head
 * keeps serving small requests. libc only: linked by the server and the tools.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "quiver/arena.h"

#define CHUNK_BYTES (64 << 10)
#define ALIGN (sizeof(max_align_t))

typedef struct chunk {
    struct chunk *next;
    size_t used, cap;
    max_align_t data[];
} chunk;

struct qv_arena {
    chunk *head; /* the chunk being filled (NULL before the first alloc) */
};

qv_arena *qv_arena_new(void) { return calloc(1, sizeof(qv_arena)); }

void *qv_arena_alloc(qv_arena *a, size_t n)
{
    if (n > SIZE_MAX - sizeof(chunk) - ALIGN) return NULL;
    n = (n + ALIGN - 1) & ~(ALIGN - 1);
    chunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > CHUNK_BYTES ? n : CHUNK_BYTES;
        chunk *nc = malloc(sizeof *nc + cap);
        if (!nc) return NULL;
        nc->cap = cap;
        if (c && cap > CHUNK_BYTES) { /* its own chunk, full at once, behind the head */
            nc->used = cap;
            nc->next = c->next;
            c->next = nc;
            memset(nc->data, 0, n);
            return nc->data;
        }
        nc->used = 0;
        nc->next = c;
        a->head = c = nc;
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    memset(p, 0, n);
    return p;
}

char *qv_arena_strndup(qv_arena *a, const char *s, size_t n)
{
    if (n == SIZE_MAX) return NULL;
    char *d = qv_arena_alloc(a, n + 1);
    if (d && n) memcpy(d, s, n); /* d[n] is 0 already */
    return d;
}

void qv_arena_free(qv_arena *a)
{
    if (!a) return;
    for (chunk *c = a->head, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    free(a);
}
