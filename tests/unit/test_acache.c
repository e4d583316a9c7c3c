/* Unit tests of the attribute cache (storage/acache.c): entries seen only
 * by snapshots at least as new as their write, removal keeps every other
 * entry reachable, the budget is never overdrawn and comes back whole, and
 * a fill reads a collection's blobs from a real LMDB store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "acache.h"
#include "quiver/codec.h"
#include "quiver/error.h"
#include "store.h"

/* An attribute blob that names its id: s = "a<id>;" repeated, 8..47 bytes. */
static size_t blob_of(uint64_t id, uint8_t *b, size_t cap)
{
    char s[64], one[32];
    int n = snprintf(one, sizeof one, "a%llu;", (unsigned long long)id);
    size_t len = 8 + id % 40;
    for (size_t i = 0; i < len; i++) s[i] = one[i % (size_t)n];
    qv_buf buf = {0};
    qv_attr_builder ab;
    assert_int_equal(qv_attrs_begin(&ab, &buf), 0);
    assert_int_equal(qv_attrs_add_string(&ab, "s", s, len), 0);
    qv_attrs_end(&ab);
    assert_true(buf.len <= cap);
    memcpy(b, buf.data, buf.len);
    len = buf.len;
    free(buf.data);
    return len;
}

/* n items from ids (attr_off built here), put at txnid. */
static void put_ids(qv_acache *ac, uint64_t txnid, const uint64_t *ids, size_t n, const char *skip)
{
    uint8_t *attrs = malloc(n * 64);
    size_t *off = malloc((n + 1) * sizeof *off);
    off[0] = 0;
    for (size_t i = 0; i < n; i++) off[i + 1] = off[i] + blob_of(ids[i], attrs + off[i], 64);
    qv_acache_put(ac, txnid, n, ids, attrs, off, skip);
    free(attrs);
    free(off);
}

static int found_as_written(qv_acache *ac, uint64_t id, uint64_t snap)
{
    const uint8_t *b;
    size_t len;
    uint8_t want[64];
    size_t wl = blob_of(id, want, sizeof want);
    void *ref = NULL;
    qv_acache_read_begin(ac);
    int f = qv_acache_find(ac, id, snap, &b, &len, &ref);
    qv_acache_read_end(ac);
    if (f == 1) f = len == wl && memcmp(b, want, wl) == 0 ? 1 : -1;
    qv_acache_unref(ref);
    return f;
}

static void test_snapshot_sees_only_older_writes(void **state)
{
    (void)state;
    _Atomic size_t left = 1 << 20;
    qv_acache *ac = qv_acache_new(&left);
    uint64_t id = 7;
    put_ids(ac, 10, &id, 1, NULL);
    assert_int_equal(found_as_written(ac, 7, 9), 0);  /* a snapshot from before the write */
    assert_int_equal(found_as_written(ac, 7, 10), 1); /* the write's own */
    assert_int_equal(found_as_written(ac, 7, 11), 1);
    assert_int_equal(found_as_written(ac, 8, 11), 0); /* never written */
    /* forgotten before the next commit: nobody finds it, whatever the snapshot */
    qv_acache_forget(ac, &id, 1);
    assert_int_equal(found_as_written(ac, 7, 11), 0);
    assert_int_equal(found_as_written(ac, 7, 100), 0);
    /* an item written without attributes is found with none */
    size_t off[2] = {0, 0};
    qv_acache_put(ac, 12, 1, &id, (const uint8_t *)"", off, NULL);
    const uint8_t *b = (const uint8_t *)"x";
    size_t len = 99;
    void *ref = &len;
    qv_acache_read_begin(ac);
    assert_int_equal(qv_acache_find(ac, 7, 12, &b, &len, &ref), 1);
    qv_acache_read_end(ac);
    assert_int_equal(len, 0);
    assert_null(ref);
    /* a blob found stays readable after the writer replaced and forgot it */
    uint64_t id9 = 9;
    put_ids(ac, 13, &id9, 1, NULL);
    qv_acache_read_begin(ac);
    assert_int_equal(qv_acache_find(ac, 9, 13, &b, &len, &ref), 1);
    qv_acache_read_end(ac);
    assert_non_null(ref);
    uint8_t want[64];
    size_t wl = blob_of(9, want, sizeof want);
    size_t off9[2] = {0, 3};
    qv_acache_put(ac, 14, 1, &id9, (const uint8_t *)"new", off9, NULL);
    qv_acache_forget(ac, &id9, 1);
    assert_int_equal(len, wl);
    assert_memory_equal(b, want, wl); /* ASan: no use after free */
    qv_acache_unref(ref);
    qv_acache_free(ac);
    assert_int_equal(left, 1 << 20);
    /* NULL is an empty cache */
    qv_acache_forget(NULL, &id, 1);
    qv_acache_read_begin(NULL);
    assert_int_equal(qv_acache_find(NULL, 7, 12, &b, &len, &ref), 0);
    qv_acache_read_end(NULL);
}

/* Many entries, every third forgotten (backward shifts through growth and
 * clustered ids): the others are all found with their own blobs. */
static void test_removal_keeps_the_rest(void **state)
{
    (void)state;
    enum { N = 30000 };
    _Atomic size_t left = 64 << 20;
    qv_acache *ac = qv_acache_new(&left);
    uint64_t *ids = malloc(N * sizeof *ids);
    for (size_t i = 0; i < N; i++) ids[i] = i < N / 2 ? i : (i << 20) + 3; /* dense, then spread */
    put_ids(ac, 5, ids, N, NULL);
    uint64_t *gone = malloc(N * sizeof *gone);
    size_t ng = 0;
    for (size_t i = 0; i < N; i += 3) gone[ng++] = ids[i];
    qv_acache_forget(ac, gone, ng);
    for (size_t i = 0; i < N; i++) assert_int_equal(found_as_written(ac, ids[i], 5), i % 3 ? 1 : 0);
    /* the same id twice in one put (no skip marks): the last blob wins */
    uint64_t twice[2] = {1, 1};
    uint8_t a[3] = {'x', 'y', 'z'};
    size_t off[3] = {0, 1, 3};
    qv_acache_put(ac, 6, 2, twice, a, off, NULL);
    const uint8_t *b;
    size_t len;
    void *ref;
    qv_acache_read_begin(ac);
    assert_int_equal(qv_acache_find(ac, 1, 6, &b, &len, &ref), 1);
    qv_acache_read_end(ac);
    assert_int_equal(len, 2);
    assert_memory_equal(b, "yz", 2);
    qv_acache_unref(ref);
    /* skip marks leave items out */
    uint64_t two[2] = {N * 4ull, N * 4ull + 1};
    char skip[2] = {1, 0};
    put_ids(ac, 7, two, 2, skip);
    assert_int_equal(found_as_written(ac, two[0], 7), 0);
    assert_int_equal(found_as_written(ac, two[1], 7), 1);
    qv_acache_free(ac);
    assert_int_equal(left, 64 << 20);
    free(ids);
    free(gone);
}

/* Two caches share a small budget: puts stop at it, what was kept is found,
 * and the bytes come back when entries go. */
static void test_budget(void **state)
{
    (void)state;
    const size_t budget = 100000;
    _Atomic size_t left = budget;
    qv_acache *a = qv_acache_new(&left), *b = qv_acache_new(&left);
    enum { N = 5000 };
    uint64_t ids[N];
    for (size_t i = 0; i < N; i++) ids[i] = i;
    put_ids(a, 1, ids, N, NULL);
    size_t kept = 0;
    for (size_t i = 0; i < N; i++) kept += found_as_written(a, i, 1) == 1;
    assert_true(kept > 0 && kept < N);
    assert_true(qv_acache_bytes(a) <= budget);
    assert_int_equal(qv_acache_bytes(a) + left, budget);
    put_ids(b, 1, ids, N, NULL);
    assert_true(qv_acache_bytes(a) + qv_acache_bytes(b) <= budget);
    /* forgetting gives bytes back, and b can then keep more */
    size_t lb = qv_acache_bytes(b);
    qv_acache_forget(a, ids, N);
    put_ids(b, 2, ids, N, NULL);
    assert_true(qv_acache_bytes(b) > lb);
    assert_int_equal(qv_acache_bytes(a) + qv_acache_bytes(b) + left, budget);
    qv_acache_free(a);
    qv_acache_free(b);
    assert_int_equal(left, budget);
}

/* A fill from a real store: one collection's blobs, items without
 * attributes and other collections left out, valid from the snapshot on. */
static void test_fill_from_store(void **state)
{
    (void)state;
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/qv_test_acache.XXXXXX");
    assert_non_null(mkdtemp(dir));
    qv_store_opts o = {.dir = dir, .map_size = 64 << 20, .nosync = 1};
    qv_store *st;
    assert_int_equal(qv_store_open(&o, &st), 0);
    MDB_txn *w;
    assert_int_equal(qv_store_write_begin(st, NULL, &w), 0);
    float v[4] = {1, 2, 3, 4};
    for (uint32_t coll = 1; coll <= 3; coll++)
        for (uint64_t id = 0; id < 500; id++) {
            uint8_t a[64];
            size_t len = id % 5 == 0 ? 0 : blob_of(id + coll * 1000, a, sizeof a);
            int existed;
            assert_int_equal(qv_store_item_put(st, w, coll, id, id + 1, 4, v, len ? a : NULL, len, &existed), 0);
        }
    uint64_t wid = qv_store_txn_id(w);
    assert_int_equal(qv_store_commit(w), 0);
    MDB_txn *r;
    assert_int_equal(qv_store_read_begin(st, &r), 0);
    assert_int_equal(qv_store_txn_id(r), wid);
    _Atomic size_t left = 1 << 20;
    qv_acache *ac = qv_acache_new(&left);
    size_t n;
    int full;
    assert_int_equal(qv_acache_fill(ac, st, r, 2, &n, &full), 0);
    assert_int_equal(n, 400);
    assert_int_equal(full, 0);
    for (uint64_t id = 0; id < 500; id++) {
        const uint8_t *b;
        size_t len;
        void *ref = NULL;
        uint8_t want[64];
        size_t wl = blob_of(id + 2000, want, sizeof want);
        qv_acache_read_begin(ac);
        int f = qv_acache_find(ac, id, wid, &b, &len, &ref);
        if (id % 5 == 0) {
            assert_int_equal(f, 0); /* no attributes: not in the attrs database */
        } else {
            assert_int_equal(f, 1);
            assert_int_equal(len, wl);
            assert_memory_equal(b, want, wl);
        }
        qv_acache_unref(ref);
        assert_int_equal(qv_acache_find(ac, id, wid - 1, &b, &len, &ref), 0);
        qv_acache_read_end(ac);
    }
    qv_acache_free(ac);
    /* a budget that runs out stops the fill and says so */
    left = 40000;
    ac = qv_acache_new(&left);
    assert_int_equal(qv_acache_fill(ac, st, r, 2, &n, &full), 0);
    assert_int_equal(full, 1);
    assert_true(n > 0 && n < 400);
    qv_acache_free(ac);
    assert_int_equal(left, 40000);
    qv_store_abort(r);
    qv_store_close(st);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_snapshot_sees_only_older_writes),
        cmocka_unit_test(test_removal_keeps_the_rest),
        cmocka_unit_test(test_budget),
        cmocka_unit_test(test_fill_from_store),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
