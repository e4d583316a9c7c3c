/* Unit tests of the LMDB store (storage/store.c) on a real LMDB in a temp dir. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "quiver/error.h"
#include "store.h"

typedef struct fixture {
    char dir[64];
    qv_store *st;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/qv_test_store.XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    qv_store_opts o = {.dir = f->dir, .map_size = 64 << 20};
    if (qv_store_open(&o, &f->st)) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    qv_store_close(f->st);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    if (system(cmd)) return -1;
    free(f);
    return 0;
}

static qv_coll_config make_coll(fixture *f, const char *name, uint32_t dim)
{
    qv_coll_config c = {.dim = dim, .metric = QV_METRIC_L2};
    snprintf(c.name, sizeof c.name, "%s", name);
    MDB_txn *txn;
    assert_int_equal(qv_store_write_begin(f->st, NULL, &txn), 0);
    assert_int_equal(qv_store_coll_create(f->st, txn, &c), 0);
    assert_int_equal(qv_store_commit(txn), 0);
    return c;
}

/* A valid attribute blob of one string attribute a = s (the store indexes
 * attributes, so it refuses blobs that do not decode). */
static qv_buf blob_of(const char *s)
{
    qv_buf b = {0};
    qv_attr_builder ab;
    qv_attrs_begin(&ab, &b);
    qv_attrs_add_string(&ab, "a", s, strlen(s));
    qv_attrs_end(&ab);
    return b;
}

static void put(fixture *f, uint32_t coll, uint64_t id, uint64_t seq, float x, int *existed)
{
    qv_buf ab = blob_of("ab");
    float v[4] = {x, x + 1, x + 2, x + 3};
    MDB_txn *txn;
    assert_int_equal(qv_store_write_begin(f->st, NULL, &txn), 0);
    assert_int_equal(qv_store_item_put(f->st, txn, coll, id, seq, 4, v, ab.data, ab.len, existed), 0);
    assert_int_equal(qv_store_commit(txn), 0);
    qv_buf_free(&ab);
}

typedef struct logrec {
    uint64_t seq[64], id[64];
    qv_op op[64];
    int n;
} logrec;

static int collect_log(void *ctx, uint64_t seq, qv_op op, uint64_t id)
{
    logrec *l = ctx;
    l->seq[l->n] = seq;
    l->op[l->n] = op;
    l->id[l->n++] = id;
    return 0;
}

static logrec read_log(fixture *f, uint32_t coll, uint64_t after)
{
    logrec l = {0};
    MDB_txn *txn;
    assert_int_equal(qv_store_read_begin(f->st, &txn), 0);
    assert_int_equal(qv_store_log_foreach(f->st, txn, coll, after, collect_log, &l), 0);
    qv_store_abort(txn);
    return l;
}

static void test_collections(void **state)
{
    fixture *f = *state;
    qv_coll_config a = make_coll(f, "alpha", 4), b = make_coll(f, "beta", 8);
    assert_int_not_equal(a.id, b.id);
    MDB_txn *txn;
    assert_int_equal(qv_store_write_begin(f->st, NULL, &txn), 0);
    qv_coll_config dup = a;
    assert_int_equal(qv_store_coll_create(f->st, txn, &dup), QV_EXISTS);
    qv_coll_config got;
    assert_int_equal(qv_store_coll_get(f->st, txn, "beta", &got), 0);
    assert_int_equal(got.dim, 8);
    assert_int_equal(got.id, b.id);
    assert_string_equal(got.name, "beta");
    assert_int_equal(qv_store_coll_get(f->st, txn, "gamma", &got), QV_NOTFOUND);
    qv_store_abort(txn);
}

static void test_put_get_replace(void **state)
{
    fixture *f = *state;
    qv_coll_config c = make_coll(f, "items", 4);
    int existed = -1;
    put(f, c.id, 10, 1, 1.0f, &existed);
    assert_int_equal(existed, 0);
    put(f, c.id, 10, 2, 5.0f, &existed);
    assert_int_equal(existed, 1);
    MDB_txn *txn;
    qv_item_view v;
    assert_int_equal(qv_store_read_begin(f->st, &txn), 0);
    assert_int_equal(qv_store_item_get(f->st, txn, c.id, 10, &v), 0);
    float out[4];
    qv_item_vector(&v, out);
    assert_true(out[0] == 5.0f && out[3] == 8.0f);
    assert_int_equal(v.seq, 2);
    assert_int_equal(v.attrs_len, 0); /* attributes are apart */
    const uint8_t *blob;
    size_t blen;
    assert_int_equal(qv_store_attrs_get(f->st, txn, c.id, 10, &blob, &blen), 0);
    qv_buf ab = blob_of("ab");
    assert_int_equal(blen, ab.len);
    assert_memory_equal(blob, ab.data, ab.len);
    qv_buf_free(&ab);
    assert_int_equal(qv_store_item_get(f->st, txn, c.id, 11, &v), QV_NOTFOUND);
    qv_store_abort(txn);
    /* the log holds only the newest write of the item */
    logrec l = read_log(f, c.id, 0);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.seq[0], 2);
    assert_int_equal(l.op[0], QV_OP_UPSERT);
}

static void test_delete_tombstones_prune(void **state)
{
    fixture *f = *state;
    qv_coll_config c = make_coll(f, "del", 4);
    int existed;
    for (uint64_t i = 1; i <= 5; i++) put(f, c.id, i, i, (float)i, &existed);
    MDB_txn *txn;
    assert_int_equal(qv_store_write_begin(f->st, NULL, &txn), 0);
    assert_int_equal(qv_store_item_delete(f->st, txn, c.id, 2, 6), 0);
    assert_int_equal(qv_store_item_delete(f->st, txn, c.id, 4, 7), 0);
    assert_int_equal(qv_store_item_delete(f->st, txn, c.id, 99, 8), QV_NOTFOUND);
    assert_int_equal(qv_store_commit(txn), 0);
    logrec l = read_log(f, c.id, 0);
    assert_int_equal(l.n, 5); /* items 1,3,5 + tombstones of 2,4 */
    assert_int_equal(l.seq[3], 6);
    assert_int_equal(l.op[3], QV_OP_DELETE);
    assert_int_equal(l.id[3], 2);
    l = read_log(f, c.id, 5);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.id[1], 4);
    /* re-insert a deleted id: tombstone stays older than the new write */
    put(f, c.id, 2, 9, 20.0f, &existed);
    assert_int_equal(existed, 0);
    l = read_log(f, c.id, 5);
    assert_int_equal(l.n, 3);
    assert_int_equal(l.op[2], QV_OP_UPSERT);
    assert_int_equal(l.seq[2], 9);
    /* prune tombstones covered by seq 6: only the first one goes */
    size_t pruned = 0;
    assert_int_equal(qv_store_write_begin(f->st, NULL, &txn), 0);
    assert_int_equal(qv_store_tombstones_prune(f->st, txn, c.id, 6, &pruned), 0);
    assert_int_equal(qv_store_commit(txn), 0);
    assert_int_equal(pruned, 1);
    l = read_log(f, c.id, 0);
    for (int i = 0; i < l.n; i++) assert_false(l.op[i] == QV_OP_DELETE && l.seq[i] <= 6);
    assert_int_equal(l.n, 5);
}

static void test_stats_and_drop(void **state)
{
    fixture *f = *state;
    qv_coll_config a = make_coll(f, "a", 4), b = make_coll(f, "b", 4);
    int existed;
    for (uint64_t i = 0; i < 100; i++) {
        put(f, a.id, i, i + 1, 1.0f, &existed);
        put(f, b.id, i, i + 1, 2.0f, &existed);
    }
    MDB_txn *txn;
    qv_coll_stats s = {100, 100, 0}, t;
    assert_int_equal(qv_store_write_begin(f->st, NULL, &txn), 0);
    assert_int_equal(qv_store_stats_put(f->st, txn, a.id, &s), 0);
    uint64_t n = 0;
    assert_int_equal(qv_store_coll_drop(f->st, txn, "b", &n), 0);
    assert_int_equal(n, 100);
    assert_int_equal(qv_store_coll_drop(f->st, txn, "b", &n), QV_NOTFOUND);
    assert_int_equal(qv_store_commit(txn), 0);
    assert_int_equal(qv_store_read_begin(f->st, &txn), 0);
    assert_int_equal(qv_store_stats_get(f->st, txn, a.id, &t), 0);
    assert_true(t.count == 100 && t.last_seq == 100);
    qv_item_view v;
    assert_int_equal(qv_store_item_get(f->st, txn, b.id, 5, &v), QV_NOTFOUND);
    assert_int_equal(qv_store_item_get(f->st, txn, a.id, 5, &v), 0);
    assert_int_equal(qv_store_stats_get(f->st, txn, b.id, &t), QV_NOTFOUND);
    qv_store_abort(txn);
    assert_int_equal(read_log(f, b.id, 0).n, 0);
    assert_int_equal(read_log(f, a.id, 90).n, 10);
    /* a new collection of the old name gets a new id */
    qv_coll_config b2 = make_coll(f, "b", 4);
    assert_true(b2.id > b.id);
}

static int count_items(void *ctx, uint64_t id, const qv_item_view *v)
{
    (void)v;
    uint64_t *n = ctx;
    if (*n > 0 && id == 0) return -1;
    (*n)++;
    return 0;
}

/* Reopen with non-default settings: everything is back, settings apply. */
static void test_reopen_non_default(void **state)
{
    fixture *f = *state;
    qv_coll_config c = make_coll(f, "persist", 4);
    int existed;
    for (uint64_t i = 0; i < 1000; i++) put(f, c.id, i * 7, i + 1, (float)i, &existed);
    qv_store_close(f->st);
    qv_store_opts o = {.dir = f->dir, .map_size = 256 << 20, .nosync = 1, .max_readers = 7};
    assert_int_equal(qv_store_open(&o, &f->st), 0);
    MDB_envinfo info;
    mdb_env_info(qv_store_env(f->st), &info);
    assert_int_equal(info.me_mapsize, 256 << 20);
    /* max_readers is not checked: LMDB keeps the reader table size of an
     * existing lock file */
    unsigned flags;
    mdb_env_get_flags(qv_store_env(f->st), &flags);
    assert_true(flags & MDB_NOSYNC);
    MDB_txn *txn;
    assert_int_equal(qv_store_read_begin(f->st, &txn), 0);
    qv_coll_config got;
    assert_int_equal(qv_store_coll_get(f->st, txn, "persist", &got), 0);
    assert_int_equal(got.id, c.id);
    uint64_t n = 0;
    assert_int_equal(qv_store_item_foreach(f->st, txn, c.id, 0, count_items, &n), 0);
    assert_int_equal(n, 1000);
    qv_item_view v;
    assert_int_equal(qv_store_item_get(f->st, txn, c.id, 999 * 7, &v), 0);
    float out[4];
    qv_item_vector(&v, out);
    assert_true(out[0] == 999.0f);
    qv_store_abort(txn);
}

/* A store written by another format version is refused, not misread. */
static void test_format_version_mismatch(void **state)
{
    fixture *f = *state;
    MDB_env *env = qv_store_env(f->st);
    MDB_txn *txn;
    MDB_dbi meta;
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "meta", 0, &meta), 0);
    uint32_t v = QV_STORE_FORMAT + 1;
    MDB_val k = {6, "format"}, d = {4, &v};
    assert_int_equal(mdb_put(txn, meta, &k, &d, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    qv_store_close(f->st);
    f->st = NULL;
    qv_store_opts o = {.dir = f->dir, .map_size = 64 << 20};
    assert_int_equal(qv_store_open(&o, &f->st), QV_VERSION);
    assert_null(f->st);
}

/* A nested txn aborted leaves the parent's writes intact (group commit). */
static void test_nested_abort(void **state)
{
    fixture *f = *state;
    qv_coll_config c = make_coll(f, "nest", 4);
    float v[4] = {1, 2, 3, 4};
    int existed;
    MDB_txn *txn, *child;
    assert_int_equal(qv_store_write_begin(f->st, NULL, &txn), 0);
    assert_int_equal(qv_store_write_begin(f->st, txn, &child), 0);
    assert_int_equal(qv_store_item_put(f->st, child, c.id, 1, 1, 4, v, NULL, 0, &existed), 0);
    assert_int_equal(qv_store_commit(child), 0);
    assert_int_equal(qv_store_write_begin(f->st, txn, &child), 0);
    assert_int_equal(qv_store_item_put(f->st, child, c.id, 2, 2, 4, v, NULL, 0, &existed), 0);
    qv_store_abort(child);
    assert_int_equal(qv_store_commit(txn), 0);
    qv_item_view iv;
    assert_int_equal(qv_store_read_begin(f->st, &txn), 0);
    assert_int_equal(qv_store_item_get(f->st, txn, c.id, 1, &iv), 0);
    assert_int_equal(qv_store_item_get(f->st, txn, c.id, 2, &iv), QV_NOTFOUND);
    qv_store_abort(txn);
}

/* Attributes follow their item: replaced, removed with it, dropped with
 * the collection. */
static void test_attrs_follow_items(void **state)
{
    fixture *f = *state;
    qv_coll_config c = make_coll(f, "attrs", 4);
    float v[4] = {1, 2, 3, 4};
    int existed;
    const uint8_t *blob;
    size_t blen;
    MDB_txn *txn;
    assert_int_equal(qv_store_write_begin(f->st, NULL, &txn), 0);
    qv_buf xyz = blob_of("xyz"), kept = blob_of("kept");
    assert_int_equal(qv_store_item_put(f->st, txn, c.id, 1, 1, 4, v, xyz.data, xyz.len, &existed), 0);
    assert_int_equal(qv_store_item_put(f->st, txn, c.id, 2, 2, 4, v, kept.data, kept.len, &existed), 0);
    assert_int_equal(qv_store_item_put(f->st, txn, c.id, 3, 3, 4, v, NULL, 0, &existed), 0);
    assert_int_equal(qv_store_attrs_get(f->st, txn, c.id, 1, &blob, &blen), 0);
    assert_int_equal(blen, xyz.len);
    qv_buf_free(&xyz);
    qv_buf_free(&kept);
    assert_int_equal(qv_store_attrs_get(f->st, txn, c.id, 3, &blob, &blen), QV_NOTFOUND);
    /* replaced without attributes: gone */
    assert_int_equal(qv_store_item_put(f->st, txn, c.id, 1, 4, 4, v, NULL, 0, &existed), 0);
    assert_int_equal(existed, 1);
    assert_int_equal(qv_store_attrs_get(f->st, txn, c.id, 1, &blob, &blen), QV_NOTFOUND);
    /* deleted: gone */
    assert_int_equal(qv_store_item_delete(f->st, txn, c.id, 2, 5), 0);
    assert_int_equal(qv_store_attrs_get(f->st, txn, c.id, 2, &blob, &blen), QV_NOTFOUND);
    qv_buf back = blob_of("back");
    assert_int_equal(qv_store_item_put(f->st, txn, c.id, 2, 6, 4, v, back.data, back.len, &existed), 0);
    qv_buf_free(&back);
    assert_int_equal(qv_store_commit(txn), 0);
    assert_int_equal(qv_store_write_begin(f->st, NULL, &txn), 0);
    assert_int_equal(qv_store_coll_drop(f->st, txn, "attrs", NULL), 0);
    assert_int_equal(qv_store_attrs_get(f->st, txn, c.id, 2, &blob, &blen), QV_NOTFOUND);
    assert_int_equal(qv_store_commit(txn), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_collections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_get_replace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attrs_follow_items, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_tombstones_prune, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats_and_drop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_non_default, setup, teardown),
        cmocka_unit_test_setup_teardown(test_format_version_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nested_abort, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
