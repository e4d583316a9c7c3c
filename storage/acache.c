/*
 * The attribute cache (acache.h): an open-addressing hash id -> (blob,
 * transaction id), linear probing with backward-shift deletion, under one
 * read-write lock that prefers the writer. Blobs are reference counted: the
 * table holds one reference, each result that found it one more. When the
 * budget is spent, an offer makes room by second chance (CLOCK): a hand
 * sweeps the table, clearing the "found since" mark of the entries it
 * passes and evicting those without one.
 */
#include "acache.h"
#include "pages.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define MIN_SLOTS 1024
#define BLOB_OVERHEAD 24 /* about its header and what malloc keeps beside it, charged with it */

typedef struct ablob {
    atomic_uint refs;
    uint8_t data[]; /* the slot holds its length */
} ablob;

struct aslot {
    int64_t id;     /* -1: empty */
    uint32_t len;   /* blob's bytes (0: no attributes, blob NULL) */
    uint8_t used;   /* found since the hand last passed (set by readers, atomically) */
    uint64_t txnid; /* the transaction that wrote it */
    ablob *blob;
};

struct qv_acache {
    pthread_rwlock_t lock;
    struct aslot *h;
    size_t hsize, n; /* hsize: a power of two, n at most 70% of it */
    size_t hand;     /* the eviction sweep's next slot */
    size_t bytes;    /* charged to *left */
    _Atomic size_t *left;
    /* the newest write transaction that forgot ids: snapshots older than it
     * offer nothing */
    _Atomic uint64_t fence;
    /* the budget left when an offer last found no room (SIZE_MAX: it did
     * not): offers wait until some bytes came back */
    _Atomic size_t full_at;
};

static size_t slot_of(const qv_acache *ac, uint64_t id)
{
    return (size_t)((id * 0x9E3779B97F4A7C15ull) >> 17) & (ac->hsize - 1);
}

/* Takes b bytes of the budget, or none and returns 0. */
static int charge(qv_acache *ac, size_t b)
{
    size_t cur = atomic_load(ac->left);
    do {
        if (cur < b) return 0;
    } while (!atomic_compare_exchange_weak(ac->left, &cur, cur - b));
    ac->bytes += b;
    return 1;
}

static void refund(qv_acache *ac, size_t b)
{
    ac->bytes -= b;
    atomic_fetch_add(ac->left, b);
}

static size_t blob_cost(size_t len) { return len ? len + BLOB_OVERHEAD : 0; }

void qv_acache_unref(void *ref)
{
    ablob *b = ref;
    if (b && atomic_fetch_sub(&b->refs, 1) == 1) free(b);
}

qv_acache *qv_acache_new(_Atomic size_t *left)
{
    qv_acache *ac = calloc(1, sizeof *ac);
    if (!ac) return NULL;
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    /* a stream of searches must not keep the writer out */
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&ac->lock, &a);
    pthread_rwlockattr_destroy(&a);
    ac->left = left;
    atomic_init(&ac->full_at, SIZE_MAX);
    return ac;
}

void qv_acache_free(qv_acache *ac)
{
    if (!ac) return;
    for (size_t i = 0; i < ac->hsize; i++)
        if (ac->h[i].id >= 0) qv_acache_unref(ac->h[i].blob);
    free(ac->h);
    if (ac->bytes) atomic_fetch_add(ac->left, ac->bytes);
    pthread_rwlock_destroy(&ac->lock);
    free(ac);
}

/* The slot holding id, or the empty slot where it would go. */
static size_t probe(const qv_acache *ac, uint64_t id)
{
    size_t i = slot_of(ac, id);
    while (ac->h[i].id >= 0 && ac->h[i].id != (int64_t)id) i = (i + 1) & (ac->hsize - 1);
    return i;
}

static void remove_at(qv_acache *ac, size_t i)
{
    refund(ac, blob_cost(ac->h[i].len));
    qv_acache_unref(ac->h[i].blob);
    ac->n--;
    /* backward shift: later members of the run move into the hole unless
     * their home lies cyclically in (hole, their slot] */
    size_t mask = ac->hsize - 1;
    for (size_t j = (i + 1) & mask; ac->h[j].id >= 0; j = (j + 1) & mask) {
        size_t home = slot_of(ac, (uint64_t)ac->h[j].id);
        if (((j - home) & mask) >= ((j - i) & mask)) {
            ac->h[i] = ac->h[j];
            i = j;
        }
    }
    ac->h[i].id = -1;
    ac->h[i].blob = NULL;
}

/* Second chance, under the write lock: evicts entries not found since the
 * hand last passed them until the budget has `need` bytes and at most max_n
 * entries are left, for at most `most` bytes of entries and two sweeps of
 * the table. */
static void evict(qv_acache *ac, size_t need, size_t max_n, size_t most)
{
    size_t freed = 0, steps = 2 * ac->hsize;
    while (ac->n && steps-- && freed < most && (atomic_load(ac->left) < need || ac->n > max_n)) {
        size_t i = ac->hand & (ac->hsize - 1);
        struct aslot *sl = &ac->h[i];
        if (sl->id < 0) {
            ac->hand++;
        } else if (__atomic_load_n(&sl->used, __ATOMIC_RELAXED)) {
            __atomic_store_n(&sl->used, 0, __ATOMIC_RELAXED);
            ac->hand++;
        } else {
            /* the hand stays: a later entry of the run may shift into i */
            freed += blob_cost(sl->len);
            remove_at(ac, i);
        }
    }
}

/* Room for one more entry: doubles the table when it would pass 70% full.
 * Returns 0 when the budget or memory does not allow it. */
static int reserve_one(qv_acache *ac)
{
    if ((ac->n + 1) * 10 <= ac->hsize * 7) return 1;
    size_t ns = ac->hsize ? ac->hsize * 2 : MIN_SLOTS;
    size_t grow = (ns - ac->hsize) * sizeof *ac->h;
    if (!charge(ac, grow)) return 0;
    struct aslot *h = malloc(ns * sizeof *h);
    if (!h) {
        refund(ac, grow);
        return 0;
    }
    qv_pages_huge(h, ns * sizeof *h);
    for (size_t i = 0; i < ns; i++) h[i].id = -1;
    struct aslot *old = ac->h;
    size_t os = ac->hsize;
    ac->h = h;
    ac->hsize = ns;
    ac->hand = 0;
    for (size_t i = 0; i < os; i++)
        if (old[i].id >= 0) ac->h[probe(ac, (uint64_t)old[i].id)] = old[i];
    free(old);
    return 1;
}

void qv_acache_forget(qv_acache *ac, uint64_t txnid, const uint64_t *ids, size_t n)
{
    if (!ac) return;
    pthread_rwlock_wrlock(&ac->lock);
    if (txnid > atomic_load(&ac->fence)) atomic_store(&ac->fence, txnid);
    for (size_t i = 0; ac->n && i < n; i++) {
        size_t s = probe(ac, ids[i]);
        if (ac->h[s].id >= 0) remove_at(ac, s);
    }
    pthread_rwlock_unlock(&ac->lock);
}

/* One entry, under the write lock. Returns 0 when it does not fit (and,
 * when this cache holds nothing it could evict for the next offer, marks it
 * full). */
static int put_one(qv_acache *ac, uint64_t txnid, uint64_t id, const uint8_t *blob, size_t len)
{
    if (len > UINT32_MAX) return 1;
    if (ac->hsize && ac->h[probe(ac, id)].id >= 0) return 1; /* held already */
    if (!reserve_one(ac) || !charge(ac, blob_cost(len))) {
        if (!ac->n) atomic_store(&ac->full_at, atomic_load(ac->left));
        return 0;
    }
    ablob *copy = NULL;
    if (len && !(copy = malloc(sizeof *copy + len))) {
        refund(ac, blob_cost(len));
        return 0;
    }
    if (len) {
        atomic_init(&copy->refs, 1);
        memcpy(copy->data, blob, len);
    }
    struct aslot *sl = &ac->h[probe(ac, id)];
    sl->id = (int64_t)id;
    sl->len = (uint32_t)len;
    sl->used = 0; /* past a sweep only once found: items read once do not push out hot ones */
    sl->txnid = txnid;
    sl->blob = copy;
    ac->n++;
    return 1;
}

int qv_acache_wants(const qv_acache *ac, uint64_t txnid)
{
    if (!ac || txnid < atomic_load(&ac->fence)) return 0;
    size_t f = atomic_load(&ac->full_at);
    return f == SIZE_MAX || atomic_load(ac->left) >= f + 4096;
}

void qv_acache_offer(qv_acache *ac, uint64_t txnid, size_t n, const uint64_t *ids,
                     const uint8_t *const *blobs, const size_t *lens)
{
    if (!qv_acache_wants(ac, txnid) || !n) return;
    pthread_rwlock_wrlock(&ac->lock);
    /* a write prepared since the snapshot may have changed these items:
     * what the snapshot read is not offered (the write's forget ran or will
     * run under this lock, the fence first) */
    if (txnid >= atomic_load(&ac->fence)) {
        atomic_store(&ac->full_at, SIZE_MAX);
        /* room by eviction, before any of this offer goes in (so that it
         * never evicts its own), and at most an eighth of what the cache
         * holds per offer: a burst of new items does not flush the hot ones */
        size_t need = 0, max_n = SIZE_MAX;
        for (size_t i = 0; i < n; i++) need += blob_cost(lens[i]);
        /* past 70% the table doubles; when the budget cannot pay for that,
         * the entries must fit in the table as it is */
        size_t fit = ac->hsize * 7 / 10;
        if (ac->n + n > fit &&
            atomic_load(ac->left) < need + (ac->hsize ? ac->hsize : MIN_SLOTS) * sizeof(struct aslot))
            max_n = fit > n ? fit - n : 0;
        if (atomic_load(ac->left) < need || ac->n > max_n) evict(ac, need, max_n, ac->bytes / 8 + 1);
        for (size_t i = 0; i < n && put_one(ac, txnid, ids[i], blobs[i], lens[i]); i++)
            ;
    }
    pthread_rwlock_unlock(&ac->lock);
}

void qv_acache_read_begin(qv_acache *ac)
{
    if (ac) pthread_rwlock_rdlock(&ac->lock);
}

void qv_acache_read_end(qv_acache *ac)
{
    if (ac) pthread_rwlock_unlock(&ac->lock);
}

int qv_acache_find(const qv_acache *ac, uint64_t id, uint64_t txnid, const uint8_t **blob, size_t *len,
                   void **ref)
{
    if (!ac || !ac->n) return 0;
    struct aslot *s = &ac->h[probe(ac, id)];
    if (s->id < 0 || s->txnid > txnid) return 0;
    /* the mark for the eviction sweep (written only when it changes: a hot
     * entry's line is not dirtied by every reader) */
    if (!__atomic_load_n(&s->used, __ATOMIC_RELAXED)) __atomic_store_n(&s->used, 1, __ATOMIC_RELAXED);
    *ref = s->blob;
    *blob = s->blob ? s->blob->data : NULL;
    *len = s->len;
    if (s->blob) atomic_fetch_add(&s->blob->refs, 1);
    return 1;
}

size_t qv_acache_bytes(qv_acache *ac)
{
    if (!ac) return 0;
    pthread_rwlock_rdlock(&ac->lock);
    size_t b = ac->bytes;
    pthread_rwlock_unlock(&ac->lock);
    return b;
}
