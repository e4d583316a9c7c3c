/* Unit tests of the attribute cache (storage/acache.c): entries seen only
 * by snapshots at least as new as the one they were read in, offers from
 * snapshots older than a write's fence refused, removal keeps every other
 * entry reachable, found blobs outlive their removal, the budget is never
 * overdrawn and comes back whole, and a full cache evicts what was not
 * found lately. */
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

/* n items from ids offered as snapshot txnid read them. */
static void put_ids(qv_acache *ac, uint64_t txnid, const uint64_t *ids, size_t n)
{
    uint8_t *attrs = malloc(n * 64);
    const uint8_t **bl = malloc(n * sizeof *bl);
    size_t *len = malloc(n * sizeof *len);
    for (size_t i = 0; i < n; i++) {
        bl[i] = attrs + i * 64;
        len[i] = blob_of(ids[i], attrs + i * 64, 64);
    }
    qv_acache_offer(ac, txnid, n, ids, bl, len);
    free(attrs);
    free(bl);
    free(len);
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
    assert_true(qv_acache_wants(ac, 10));
    put_ids(ac, 10, &id, 1);
    assert_int_equal(found_as_written(ac, 7, 9), 0);  /* a snapshot older than the read */
    assert_int_equal(found_as_written(ac, 7, 10), 1); /* the read's own */
    assert_int_equal(found_as_written(ac, 7, 11), 1);
    assert_int_equal(found_as_written(ac, 8, 11), 0); /* never offered */
    /* a write (transaction 12) forgets it before its commit: nobody finds it */
    qv_acache_forget(ac, 12, &id, 1);
    assert_int_equal(found_as_written(ac, 7, 11), 0);
    assert_int_equal(found_as_written(ac, 7, 100), 0);
    /* and what snapshot 11 read (before the write) is refused from then on */
    assert_false(qv_acache_wants(ac, 11));
    put_ids(ac, 11, &id, 1);
    assert_int_equal(found_as_written(ac, 7, 100), 0);
    /* a snapshot with the write in it may offer it */
    assert_true(qv_acache_wants(ac, 12));
    put_ids(ac, 12, &id, 1);
    assert_int_equal(found_as_written(ac, 7, 12), 1);
    /* an item read without attributes is found with none */
    uint64_t id3 = 3;
    const uint8_t *nob = NULL;
    size_t zero = 0;
    qv_acache_offer(ac, 12, 1, &id3, &nob, &zero);
    const uint8_t *b = (const uint8_t *)"x";
    size_t len = 99;
    void *ref = &len;
    qv_acache_read_begin(ac);
    assert_int_equal(qv_acache_find(ac, 3, 12, &b, &len, &ref), 1);
    qv_acache_read_end(ac);
    assert_int_equal(len, 0);
    assert_null(ref);
    /* a blob found stays readable after the writer forgot it */
    qv_acache_read_begin(ac);
    assert_int_equal(qv_acache_find(ac, 7, 12, &b, &len, &ref), 1);
    qv_acache_read_end(ac);
    assert_non_null(ref);
    qv_acache_forget(ac, 13, &id, 1);
    uint8_t want[64];
    size_t wl = blob_of(7, want, sizeof want);
    assert_int_equal(len, wl);
    assert_memory_equal(b, want, wl); /* ASan: no use after free */
    qv_acache_unref(ref);
    /* an id held already is left as it is */
    put_ids(ac, 13, &id, 1);
    const uint8_t *other = (const uint8_t *)"other";
    size_t olen = 5;
    qv_acache_offer(ac, 14, 1, &id, &other, &olen);
    assert_int_equal(found_as_written(ac, 7, 14), 1);
    qv_acache_free(ac);
    assert_int_equal(left, 1 << 20);
    /* NULL is an empty cache */
    qv_acache_forget(NULL, 1, &id, 1);
    assert_false(qv_acache_wants(NULL, 1));
    qv_acache_offer(NULL, 1, 1, &id, &other, &olen);
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
    put_ids(ac, 5, ids, N);
    uint64_t *gone = malloc(N * sizeof *gone);
    size_t ng = 0;
    for (size_t i = 0; i < N; i += 3) gone[ng++] = ids[i];
    qv_acache_forget(ac, 5, gone, ng);
    for (size_t i = 0; i < N; i++) assert_int_equal(found_as_written(ac, ids[i], 5), i % 3 ? 1 : 0);
    qv_acache_free(ac);
    assert_int_equal(left, 64 << 20);
    free(ids);
    free(gone);
}

/* Two caches share a small budget: offers stop at it, what was kept is
 * found, and the bytes come back when entries go. */
static void test_budget(void **state)
{
    (void)state;
    const size_t budget = 100000;
    _Atomic size_t left = budget;
    qv_acache *a = qv_acache_new(&left), *b = qv_acache_new(&left);
    enum { N = 5000 };
    uint64_t ids[N];
    for (size_t i = 0; i < N; i++) ids[i] = i;
    put_ids(a, 1, ids, N);
    size_t kept = 0;
    for (size_t i = 0; i < N; i++) kept += found_as_written(a, i, 1) == 1;
    assert_true(kept > 0 && kept < N);
    assert_true(qv_acache_bytes(a) <= budget);
    assert_int_equal(qv_acache_bytes(a) + left, budget);
    assert_true(qv_acache_wants(a, 1)); /* full, but it can evict its own */
    /* b holds nothing to evict and a holds the budget: b keeps nothing, and
     * stops collecting offers until bytes come back */
    put_ids(b, 1, ids, N);
    assert_int_equal(qv_acache_bytes(b), 0);
    assert_false(qv_acache_wants(b, 1));
    assert_true(qv_acache_bytes(a) + qv_acache_bytes(b) <= budget);
    /* forgetting gives bytes back, and b can then keep more */
    size_t lb = qv_acache_bytes(b);
    qv_acache_forget(a, 1, ids, N);
    assert_true(qv_acache_wants(b, 2));
    put_ids(b, 2, ids, N);
    assert_true(qv_acache_bytes(b) > lb);
    assert_int_equal(qv_acache_bytes(a) + qv_acache_bytes(b) + left, budget);
    qv_acache_free(a);
    qv_acache_free(b);
    assert_int_equal(left, budget);
}

/* A budget of about a thousand entries and ten times as many items offered
 * in hit lists of 50, while 40 hot items are found between offers: the hot
 * ones stay, each new list gets in, the cold early ones go, the budget is
 * never overdrawn, and every blob found is its item's own. */
static void test_eviction_keeps_what_is_found(void **state)
{
    (void)state;
    const size_t budget = 100000;
    _Atomic size_t left = budget;
    qv_acache *ac = qv_acache_new(&left);
    enum { HOT = 40, LIST = 50, LISTS = 200 };
    uint64_t ids[LIST];
    for (size_t i = 0; i < HOT; i++) ids[i] = i;
    put_ids(ac, 1, ids, HOT);
    for (size_t l = 0; l < LISTS; l++) {
        for (size_t i = 0; i < LIST; i++) ids[i] = 1000 + l * LIST + i;
        assert_true(qv_acache_wants(ac, 1));
        put_ids(ac, 1, ids, LIST);
        /* the list got in (its last item, found once) */
        assert_int_equal(found_as_written(ac, ids[LIST - 1], 1), 1);
        for (size_t i = 0; i < HOT; i++) assert_int_equal(found_as_written(ac, i, 1), 1);
        assert_true(qv_acache_bytes(ac) <= budget);
        assert_int_equal(qv_acache_bytes(ac) + left, budget);
    }
    /* the last list whole, and every blob its item's own */
    for (size_t i = 0; i < LIST; i++) assert_int_equal(found_as_written(ac, ids[i], 1), 1);
    /* the first lists (cold since) are gone */
    size_t early = 0;
    for (size_t i = 1000; i < 1000 + 10 * LIST; i++) early += found_as_written(ac, i, 1) == 1;
    assert_int_equal(early, 0);
    /* a forget still reaches entries the sweep moved past */
    uint64_t hot3 = 3;
    qv_acache_forget(ac, 2, &hot3, 1);
    assert_int_equal(found_as_written(ac, 3, 2), 0);
    qv_acache_free(ac);
    assert_int_equal(left, budget);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_snapshot_sees_only_older_writes),
        cmocka_unit_test(test_removal_keeps_the_rest),
        cmocka_unit_test(test_budget),
        cmocka_unit_test(test_eviction_keeps_what_is_found),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
