/* Unit tests of composed queries: id sets (storage/idset.c), the attribute
 * index kept by the store (storage/postings.c), filter checks and evaluation
 * (storage/filter.c) and the query module (storage/query.c), on a real LMDB
 * and FAISS in a temp dir. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "quiver/db.h"
#include "quiver/error.h"
#include "idset.h"
#include "postings.h"
#include "quiver/query.h"
#include "store.h"

/* ------------------------------------------------------------------ idset */
static void test_idset_ops(void **state)
{
    (void)state;
    qv_idset *a = qv_idset_new(), *b = qv_idset_new();
    uint64_t big = (uint64_t)5 << 32;
    uint64_t ids[] = {3, 70000, big + 1, big + 2, 1};
    assert_int_equal(qv_idset_add_many(a, ids, 5), 0);
    assert_int_equal(qv_idset_count(a), 5);
    assert_true(qv_idset_contains(a, big + 2));
    assert_false(qv_idset_contains(a, big + 3));
    assert_false(qv_idset_contains(a, 2));
    assert_true(qv_idset_max(a) == big + 2);
    uint64_t out[5];
    qv_idset_to_array(a, out);
    uint64_t sorted[] = {1, 3, 70000, big + 1, big + 2};
    assert_memory_equal(out, sorted, sizeof sorted);
    qv_idset_add(b, 3);
    qv_idset_add(b, big + 2);
    qv_idset_add(b, (uint64_t)9 << 32);
    qv_idset *c = qv_idset_copy(a);
    qv_idset_and(c, b);
    assert_int_equal(qv_idset_count(c), 2);
    assert_true(qv_idset_contains(c, 3) && qv_idset_contains(c, big + 2));
    qv_idset_andnot(a, b);
    assert_int_equal(qv_idset_count(a), 3);
    assert_false(qv_idset_contains(a, 3));
    qv_idset_or(a, b);
    assert_int_equal(qv_idset_count(a), 6);
    assert_true(qv_idset_contains(a, (uint64_t)9 << 32));
    uint8_t bits[16] = {0};
    qv_idset *s = qv_idset_new();
    qv_idset_add(s, 0);
    qv_idset_add(s, 9);
    qv_idset_add(s, 127);
    qv_idset_add(s, 128); /* beyond nbits: left out */
    qv_idset_to_bitmap(s, bits, 128);
    assert_int_equal(bits[0], 1);
    assert_int_equal(bits[1], 2);
    assert_int_equal(bits[15], 0x80);
    qv_idset_free(a), qv_idset_free(b), qv_idset_free(c), qv_idset_free(s);
}

/* ------------------------------------------------------- store fixture */
typedef struct sfix {
    char dir[64];
    qv_store *st;
    uint32_t coll;
} sfix;

static int store_setup(void **state)
{
    sfix *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/qv_test_query.XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    qv_store_opts o = {.dir = f->dir, .map_size = 64 << 20, .nosync = 1};
    if (qv_store_open(&o, &f->st)) return -1;
    MDB_txn *txn;
    qv_coll_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.name, sizeof c.name, "c");
    c.dim = 2;
    c.metric = QV_METRIC_L2;
    c.spec.kind = QV_KIND_FLAT;
    if (qv_store_write_begin(f->st, NULL, &txn) || qv_store_coll_create(f->st, txn, &c) ||
        qv_store_commit(txn))
        return -1;
    f->coll = c.id;
    *state = f;
    return 0;
}

static int store_teardown(void **state)
{
    sfix *f = *state;
    qv_store_close(f->st);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    int rc = system(cmd);
    free(f);
    return rc ? -1 : 0;
}

/* attributes of test item id: cat "c<id%3>", n id%10 (int), w id/4.0
 * (double), even (bool), tags ["t<id%2>", "all"], and a long string on
 * multiples of 5 */
static void attrs_of(uint64_t id, qv_buf *b, const char *long_s)
{
    qv_attr_builder ab;
    char cat[8], tag[8];
    b->len = 0;
    qv_attrs_begin(&ab, b);
    snprintf(cat, sizeof cat, "c%u", (unsigned)(id % 3));
    qv_attrs_add_string(&ab, "cat", cat, strlen(cat));
    qv_attrs_add_int(&ab, "n", (int64_t)(id % 10));
    qv_attrs_add_double(&ab, "w", (double)id / 4.0);
    qv_attrs_add_bool(&ab, "even", id % 2 == 0);
    snprintf(tag, sizeof tag, "t%u", (unsigned)(id % 2));
    qv_attrs_add_list(&ab, "tags", 2);
    qv_attrs_list_item(&ab, tag, strlen(tag));
    qv_attrs_list_item(&ab, "all", 3);
    if (id % 5 == 0) qv_attrs_add_string(&ab, "long", long_s, strlen(long_s));
    qv_attrs_end(&ab);
}

static char g_long[400];

static void put_items(sfix *f, const uint64_t *ids, size_t n, uint64_t seq0)
{
    MDB_txn *txn;
    qv_buf b = {0};
    assert_int_equal(qv_store_write_begin(f->st, NULL, &txn), 0);
    for (size_t i = 0; i < n; i++) {
        float v[2] = {(float)ids[i], 0};
        int existed;
        attrs_of(ids[i], &b, g_long);
        assert_int_equal(qv_store_item_put(f->st, txn, f->coll, ids[i], seq0 + i, 2, v, b.data,
                                           b.len, &existed),
                         0);
    }
    assert_int_equal(qv_store_commit(txn), 0);
    qv_buf_free(&b);
}

/* ids matching filter fl, as a sorted array (count returned) */
static size_t eval(sfix *f, const qv_filter *fl, uint64_t *out, size_t cap, char *err)
{
    MDB_txn *txn;
    qv_idset *s = NULL;
    assert_int_equal(qv_store_read_begin(f->st, &txn), 0);
    int rc = qv_filter_eval(f->st, txn, f->coll, fl, "filter", &s, err, 256);
    qv_store_abort(txn);
    if (rc) return (size_t)-rc;
    size_t n = (size_t)qv_idset_count(s);
    assert_true(n <= cap);
    qv_idset_to_array(s, out);
    qv_idset_free(s);
    return n;
}

static qv_cond field(const char *key, qv_test t, const qv_value *v, size_t nv)
{
    qv_cond c = {.kind = QV_COND_FIELD, .key = key, .key_len = strlen(key), .test = t,
                 .values = v, .n_values = nv};
    return c;
}

static size_t eval1(sfix *f, qv_cond c, uint64_t *out, size_t cap)
{
    qv_filter fl = {.must = &c, .n_must = 1};
    char err[256];
    return eval(f, &fl, out, cap, err);
}

/* brute force over ids 0..n-1 of a predicate on the id */
static size_t expect(size_t n, int (*pred)(uint64_t), uint64_t *out)
{
    size_t m = 0;
    for (uint64_t i = 0; i < n; i++)
        if (pred(i)) out[m++] = i;
    return m;
}

static int p_cat1(uint64_t i) { return i % 3 == 1; }
static int p_n7(uint64_t i) { return i % 10 == 7; }
static int p_w_range(uint64_t i) { return i / 4.0 > 10 && i / 4.0 <= 20.5; }
static int p_t1(uint64_t i) { return i % 2 == 1; }
static int p_long(uint64_t i) { return i % 5 == 0; }

#define N 200
static void test_postings_lookups(void **state)
{
    sfix *f = *state;
    memset(g_long, 'x', sizeof g_long - 1);
    uint64_t ids[N], got[N], exp[N];
    for (int i = 0; i < N; i++) ids[i] = (uint64_t)i;
    put_items(f, ids, N, 1);
    qv_value v = {.type = QV_ATTR_STRING, .s = "c1", .len = 2};
    size_t n = eval1(f, field("cat", QV_TEST_EQUALS, &v, 1), got, N);
    size_t m = expect(N, p_cat1, exp);
    assert_int_equal(n, m);
    assert_memory_equal(got, exp, m * sizeof *exp);
    /* int equals, and an int matches a double equal to it */
    v = (qv_value){.type = QV_ATTR_INT, .i = 7};
    assert_int_equal(eval1(f, field("n", QV_TEST_EQUALS, &v, 1), got, N), expect(N, p_n7, exp));
    v = (qv_value){.type = QV_ATTR_DOUBLE, .d = 7.0};
    assert_int_equal(eval1(f, field("n", QV_TEST_EQUALS, &v, 1), got, N), expect(N, p_n7, exp));
    v = (qv_value){.type = QV_ATTR_INT, .i = 5}; /* w = 5.0 for id 20 only */
    assert_int_equal(eval1(f, field("w", QV_TEST_EQUALS, &v, 1), got, N), 1);
    assert_true(got[0] == 20);
    /* a range over doubles, exclusive lower, inclusive upper */
    qv_cond r = field("w", QV_TEST_RANGE, NULL, 0);
    r.has_lo = r.has_hi = 1;
    r.lo = 10, r.hi = 20.5, r.hi_incl = 1;
    n = eval1(f, r, got, N);
    m = expect(N, p_w_range, exp);
    assert_int_equal(n, m);
    assert_memory_equal(got, exp, m * sizeof *exp);
    /* string list element, bool, exists */
    v = (qv_value){.type = QV_ATTR_STRING, .s = "t1", .len = 2};
    assert_int_equal(eval1(f, field("tags", QV_TEST_EQUALS, &v, 1), got, N), expect(N, p_t1, exp));
    v = (qv_value){.type = QV_ATTR_BOOL, .b = 0};
    assert_int_equal(eval1(f, field("even", QV_TEST_EQUALS, &v, 1), got, N), expect(N, p_t1, exp));
    qv_cond ex = field("long", QV_TEST_EXISTS, NULL, 0);
    ex.exists = 1;
    assert_int_equal(eval1(f, ex, got, N), expect(N, p_long, exp));
    ex.exists = 0;
    assert_int_equal(eval1(f, ex, got, N), N - expect(N, p_long, exp));
    /* a long string: hashed in the index, verified against the item */
    v = (qv_value){.type = QV_ATTR_STRING, .s = g_long, .len = strlen(g_long)};
    assert_int_equal(eval1(f, field("long", QV_TEST_EQUALS, &v, 1), got, N), expect(N, p_long, exp));
    char other[400];
    memcpy(other, g_long, sizeof other);
    other[300] = 'y';
    v = (qv_value){.type = QV_ATTR_STRING, .s = other, .len = strlen(other)};
    assert_int_equal(eval1(f, field("long", QV_TEST_EQUALS, &v, 1), got, N), 0);
    /* types the key holds */
    MDB_txn *txn;
    unsigned mask;
    assert_int_equal(qv_store_read_begin(f->st, &txn), 0);
    assert_int_equal(qv_postings_types(txn, qv_store_postings_dbi(f->st), f->coll, "tags", 4, &mask), 0);
    assert_int_equal(mask, 1u << QV_ATTR_STRING_LIST);
    qv_store_abort(txn);
}

static void test_postings_follow_writes(void **state)
{
    sfix *f = *state;
    uint64_t ids[] = {1, 4, 65535, 65536, 70000, ((uint64_t)3 << 32) + 1}, got[8];
    put_items(f, ids, 6, 1);
    qv_value v = {.type = QV_ATTR_STRING, .s = "c1", .len = 2};
    /* every id % 3 == 1 but 65535 (chunks 0, 1 and one past 2^32) */
    assert_int_equal(eval1(f, field("cat", QV_TEST_EQUALS, &v, 1), got, 8), 5);
    assert_true(got[2] == 65536 && got[3] == 70000 && got[4] == ((uint64_t)3 << 32) + 1);
    /* an upsert that changes the value moves the id; a delete removes it */
    MDB_txn *txn;
    qv_buf b = {0};
    qv_attr_builder ab;
    qv_attrs_begin(&ab, &b);
    qv_attrs_add_string(&ab, "cat", "c9", 2);
    qv_attrs_end(&ab);
    float vec[2] = {0, 0};
    int existed;
    assert_int_equal(qv_store_write_begin(f->st, NULL, &txn), 0);
    assert_int_equal(qv_store_item_put(f->st, txn, f->coll, 4, 10, 2, vec, b.data, b.len, &existed), 0);
    assert_int_equal(qv_store_item_delete(f->st, txn, f->coll, 70000, 11), 0);
    /* a nested txn that aborts leaves nothing in the index */
    MDB_txn *child;
    assert_int_equal(qv_store_write_begin(f->st, txn, &child), 0);
    assert_int_equal(qv_store_item_put(f->st, child, f->coll, 1, 12, 2, vec, b.data, b.len, &existed), 0);
    qv_store_abort(child);
    assert_int_equal(qv_store_commit(txn), 0);
    qv_buf_free(&b);
    assert_int_equal(eval1(f, field("cat", QV_TEST_EQUALS, &v, 1), got, 8), 3);
    assert_true(got[0] == 1 && got[1] == 65536 && got[2] == ((uint64_t)3 << 32) + 1);
    v.s = "c9";
    assert_int_equal(eval1(f, field("cat", QV_TEST_EQUALS, &v, 1), got, 8), 1);
    assert_true(got[0] == 4);
    /* item 4 lost its other attributes: exists(n) no longer holds it */
    qv_cond ex = field("n", QV_TEST_EXISTS, NULL, 0);
    ex.exists = 1;
    assert_int_equal(eval1(f, ex, got, 8), 4);
    for (int i = 0; i < 4; i++) assert_true(got[i] != 4 && got[i] != 70000);
}

static void test_filter_logic_and_errors(void **state)
{
    sfix *f = *state;
    uint64_t ids[N], got[N], exp[N];
    for (int i = 0; i < N; i++) ids[i] = (uint64_t)i;
    put_items(f, ids, N, 1);
    /* must cat c1, should (n 7 or has_id 4, 10), must_not even */
    qv_value c1 = {.type = QV_ATTR_STRING, .s = "c1", .len = 2}, n7 = {.type = QV_ATTR_INT, .i = 7};
    qv_value tru = {.type = QV_ATTR_BOOL, .b = 1};
    uint64_t some[] = {4, 10, 13};
    qv_cond must = field("cat", QV_TEST_EQUALS, &c1, 1);
    qv_cond should[2] = {field("n", QV_TEST_EQUALS, &n7, 1), {.kind = QV_COND_IDS, .ids = some, .n_ids = 3}};
    qv_cond mnot = field("even", QV_TEST_EQUALS, &tru, 1);
    qv_filter fl = {&must, should, &mnot, 1, 2, 1};
    char err[256];
    size_t n = eval(f, &fl, got, N, err);
    size_t m = 0;
    for (uint64_t i = 0; i < N; i++)
        if (i % 3 == 1 && (i % 10 == 7 || i == 4 || i == 10 || i == 13) && i % 2 == 1) {
            assert_true(m < n && got[m] == i);
            m++;
        }
    assert_int_equal(n, m);
    /* range on a key holding strings: the condition's path and why */
    qv_cond r = field("cat", QV_TEST_RANGE, NULL, 0);
    qv_cond conds[2] = {must, r};
    qv_filter bad = {.must = conds, .n_must = 2};
    assert_int_equal(eval(f, &bad, got, N, err), (size_t)-QV_INVALID);
    assert_string_equal(err, "filter.must[1].field.range: attribute \"cat\" holds strings, range needs numbers");
    /* an empty field condition */
    qv_cond empty = field("cat", QV_TEST_NONE, NULL, 0);
    qv_filter bad2 = {.should = &empty, .n_should = 1};
    assert_int_equal(eval(f, &bad2, got, N, err), (size_t)-QV_INVALID);
    assert_non_null(strstr(err, "filter.should[0].field: no test"));
    /* nesting: 4 levels are fine, 5 are not */
    qv_filter lv[6];
    qv_cond nest[6];
    for (int i = 0; i < 6; i++) {
        nest[i] = (qv_cond){.kind = QV_COND_FILTER, .filter = &lv[i + 1 < 6 ? i + 1 : 5]};
        lv[i] = (qv_filter){.must = &nest[i], .n_must = 1};
    }
    lv[3] = (qv_filter){.must = &must, .n_must = 1}; /* levels 1..4 */
    assert_int_equal(eval(f, &lv[0], got, N, err), expect(N, p_cat1, exp));
    lv[3] = (qv_filter){.must = &nest[3], .n_must = 1};
    lv[4] = (qv_filter){.must = &must, .n_must = 1}; /* level 5 */
    assert_int_equal(eval(f, &lv[0], got, N, err), (size_t)-QV_INVALID);
    assert_non_null(strstr(err, "filter.must[0].filter.must[0].filter.must[0].filter.must[0].filter: "
                                "filters nest deeper than 4"));
    /* over 1,000 conditions */
    qv_cond *many = calloc(1001, sizeof *many);
    for (int i = 0; i < 1001; i++) many[i] = must;
    qv_filter big = {.should = many, .n_should = 1001};
    assert_int_equal(eval(f, &big, got, N, err), (size_t)-QV_INVALID);
    assert_non_null(strstr(err, "over 1,000 conditions"));
    free(many);
}

/* ------------------------------------------------------------ the engine */
typedef struct dfix {
    char dir[64];
    qv_db *db;
    qv_coll *c;
} dfix;

#define DN 300
#define DD 4

static void dvec(uint64_t id, float *v)
{
    uint64_t s = id * 0x9e3779b97f4a7c15ULL + 7;
    for (int i = 0; i < DD; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        v[i] = (float)((s >> 33) % 2000) / 1000.0f - 1.0f;
    }
}

static int db_setup(void **state)
{
    dfix *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/qv_test_query_db.XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    qv_db_opts o = {0};
    o.store.dir = f->dir;
    o.store.map_size = 128 << 20;
    o.store.nosync = 1;
    o.auto_ivf_min = 1000000;
    if (qv_db_open(&o, &f->db)) return -1;
    qv_write w;
    memset(&w, 0, sizeof w);
    w.kind = QV_W_CREATE;
    snprintf(w.config.name, sizeof w.config.name, "d");
    w.config.dim = DD;
    w.config.metric = QV_METRIC_L2;
    w.config.spec.kind = QV_KIND_FLAT;
    if (qv_db_write_sync(f->db, &w)) return -1;
    if (qv_db_coll_get(f->db, "d", &f->c)) return -1;
    uint64_t ids[DN];
    float vecs[DN * DD];
    size_t off[DN + 1];
    qv_buf b = {0};
    for (int i = 0; i < DN; i++) {
        ids[i] = (uint64_t)i;
        dvec(ids[i], vecs + i * DD);
        off[i] = b.len;
        qv_attr_builder ab;
        char g[8];
        qv_attrs_begin(&ab, &b);
        snprintf(g, sizeof g, "g%d", i % 4);
        qv_attrs_add_string(&ab, "g", g, strlen(g));
        qv_attrs_add_int(&ab, "n", i % 10);
        qv_attrs_end(&ab);
    }
    off[DN] = b.len;
    memset(&w, 0, sizeof w);
    w.kind = QV_W_UPSERT;
    w.coll = f->c;
    w.n = DN;
    w.ids = ids;
    w.vecs = vecs;
    w.attr_off = off;
    w.attrs = b.data;
    int rc = qv_db_write_sync(f->db, &w);
    qv_buf_free(&b);
    *state = f;
    return rc ? -1 : 0;
}

static int db_teardown(void **state)
{
    dfix *f = *state;
    qv_coll_release(f->c);
    qv_db_close(f->db);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    int rc = system(cmd);
    free(f);
    return rc ? -1 : 0;
}

static float l2(const float *a, const float *b)
{
    float s = 0;
    for (int i = 0; i < DD; i++) s += (a[i] - b[i]) * (a[i] - b[i]);
    return s;
}

/* brute force: the k nearest ids to q with n % 10 < lim, not excluded */
static size_t brute(const float *q, int lim, uint64_t excl, size_t k, uint64_t *out)
{
    size_t m = 0;
    float best[DN];
    uint64_t ids[DN];
    for (uint64_t i = 0; i < DN; i++) {
        if ((int)(i % 10) >= lim || i == excl) continue;
        float v[DD];
        dvec(i, v);
        float d = l2(q, v);
        size_t j = m++;
        while (j > 0 && (best[j - 1] > d || (best[j - 1] == d && ids[j - 1] > i))) {
            best[j] = best[j - 1], ids[j] = ids[j - 1];
            j--;
        }
        best[j] = d, ids[j] = i;
    }
    if (m > k) m = k;
    memcpy(out, ids, m * sizeof *out);
    return m;
}

/* One search of nq vectors (DD floats each) through the engine's read call. */
static int qsearch(qv_coll *c, size_t nq, const float *q, const qv_query_opts *o,
                   qv_query_result *res, char *err, size_t errlen)
{
    qv_query qs[16];
    assert_true(nq <= 16);
    for (size_t i = 0; i < nq; i++) qs[i] = (qv_query){.vec = q + i * DD};
    qv_read r = {.coll = c, .kind = QV_READ_SEARCH, .queries = qs, .nq = nq, .opts = *o};
    size_t failed;
    return qv_query_run(&r, 1, res, &failed, err, errlen);
}

static int qrecommend(qv_coll *c, const qv_example *pos, size_t npos, const qv_example *neg,
                      size_t nneg, qv_rec_strategy strategy, const qv_query_opts *o,
                      qv_query_result *res, char *err, size_t errlen)
{
    qv_read r = {.coll = c, .kind = QV_READ_RECOMMEND, .positive = pos, .npos = npos,
                 .negative = neg, .nneg = nneg, .strategy = strategy, .opts = *o};
    size_t failed;
    return qv_query_run(&r, 1, res, &failed, err, errlen);
}

static void test_query_filtered_exact(void **state)
{
    dfix *f = *state;
    float q[DD] = {0.1f, -0.2f, 0.3f, 0.05f};
    qv_cond r = field("n", QV_TEST_RANGE, NULL, 0);
    r.has_hi = 1, r.hi = 3; /* n < 3: 30% */
    qv_filter fl = {.must = &r, .n_must = 1};
    uint64_t excl = 0, exp[20];
    size_t k = 12;
    /* exclude the nearest match, so the answer must reach past it */
    brute(q, 3, UINT64_MAX, 1, &excl);
    qv_query_opts o = {.k = k, .filter = &fl, .filter_key = "k1", .filter_key_len = 2,
                       .exclude = &excl, .n_exclude = 1};
    qv_query_result res;
    char err[256] = "";
    for (int pass = 0; pass < 2; pass++) { /* the second from the filter cache */
        assert_int_equal(qsearch(f->c, 1, q, &o, &res, err, sizeof err), 0);
        size_t m = brute(q, 3, excl, k, exp);
        assert_int_equal(res.off[1], m);
        for (size_t i = 0; i < m; i++) assert_true(res.hits[i].id == exp[i]);
        qv_query_result_free(&res);
    }
    /* groups: at most 2 per value of g, filled in score order */
    o = (qv_query_opts){.k = 6, .group_by = "g", .group_by_len = 1, .group_size = 2};
    assert_int_equal(qsearch(f->c, 1, q, &o, &res, err, sizeof err), 0);
    assert_int_equal(res.off[1], 6);
    int per[4] = {0};
    for (size_t i = 0; i < 6; i++) per[res.hits[i].id % 4]++;
    for (int g = 0; g < 4; g++) assert_true(per[g] <= 2);
    qv_query_result_free(&res);
    /* group_by on a missing key: no item has it, no hits */
    o.group_by = "zz", o.group_by_len = 2;
    assert_int_equal(qsearch(f->c, 1, q, &o, &res, err, sizeof err), 0);
    assert_int_equal(res.off[1], 0);
    qv_query_result_free(&res);
}

static void test_recommend_best_score(void **state)
{
    dfix *f = *state;
    /* positive item 5, negative item 6: BEST_SCORE keeps items closer to 5
     * than to 6, scored by minus the squared distance to 5 */
    qv_example pos = {.id = 5}, neg = {.id = 6};
    qv_query_opts o = {.k = 10};
    qv_query_result res;
    char err[256] = "";
    assert_int_equal(qrecommend(f->c, &pos, 1, &neg, 1, QV_REC_BEST, &o, &res, err, sizeof err), 0);
    float p[DD], n[DD], v[DD];
    dvec(5, p), dvec(6, n);
    /* expected: brute force */
    uint64_t ids[DN];
    float sc[DN];
    size_t m = 0;
    for (uint64_t i = 0; i < DN; i++) {
        if (i == 5 || i == 6) continue;
        dvec(i, v);
        float sp = -l2(v, p), sn = -l2(v, n);
        if (sn > sp) continue;
        size_t j = m++;
        while (j > 0 && sc[j - 1] < sp) {
            sc[j] = sc[j - 1], ids[j] = ids[j - 1];
            j--;
        }
        sc[j] = sp, ids[j] = i;
    }
    assert_int_equal(res.off[1], 10);
    for (size_t i = 0; i < 10; i++) {
        assert_true(res.hits[i].id == ids[i]);
        assert_float_equal(res.hits[i].score, sc[i], 1e-4);
    }
    qv_query_result_free(&res);
    /* an example id that does not exist: NOT_FOUND naming it */
    qv_example ghost = {.id = 99999};
    assert_int_equal(qrecommend(f->c, &ghost, 1, NULL, 0, QV_REC_SUM, &o, &res, err, sizeof err),
                     QV_NOTFOUND);
    assert_non_null(strstr(err, "positive[0].id 99999 does not exist"));
    qv_example negw = {.id = 5, .weight = -1};
    assert_int_equal(qrecommend(f->c, &negw, 1, NULL, 0, QV_REC_SUM, &o, &res, err, sizeof err),
                     QV_INVALID);
    assert_non_null(strstr(err, "positive[0].weight"));
}

/* The string attribute "g" of a hit's attribute blob, or "" */
static void attr_g(const qv_hit *h, char *out, size_t cap)
{
    qv_attr_iter it;
    qv_attr a;
    out[0] = 0;
    if (!h->attrs || qv_attr_iter_init(&it, h->attrs, h->attrs_len)) return;
    while (qv_attr_next(&it, &a) == 1)
        if (a.key_len == 1 && a.key[0] == 'g' && a.type == QV_ATTR_STRING)
            snprintf(out, cap, "%.*s", (int)a.str_len, a.str);
}

/* Every read call takes exactly one snapshot (a filtered search, by vector
 * and by id; a recommendation; a batch of recommendations), and its hits
 * carry attributes and vectors exactly when asked. */
static void test_one_snapshot_per_read(void **state)
{
    dfix *f = *state;
    char err[256] = "";
    size_t failed;
    qv_query_result res;
    float q[DD] = {0.3f, 0.1f, -0.2f, 0.4f};
    qv_cond r = field("n", QV_TEST_RANGE, NULL, 0);
    r.has_hi = 1, r.hi = 5; /* n < 5: half */
    qv_filter fl = {.must = &r, .n_must = 1};
    qv_query qs[2] = {{.vec = q}, {.id = 7}};
    qv_read sr = {.coll = f->c, .kind = QV_READ_SEARCH, .queries = qs, .nq = 2,
                  .opts = {.k = 5, .filter = &fl, .filter_key = "snap", .filter_key_len = 4},
                  .with_attributes = 1, .with_vectors = 1};
    uint64_t before = qv_store_reads_begun();
    assert_int_equal(qv_query_run(&sr, 1, &res, &failed, err, sizeof err), 0);
    assert_int_equal(qv_store_reads_begun() - before, 1);
    assert_int_equal(res.nlists, 2);
    assert_int_equal(res.off[2], 10);
    for (size_t i = 0; i < res.off[2]; i++) {
        const qv_hit *h = &res.hits[i];
        char g[8], want[8];
        float v[DD];
        assert_true(h->id % 10 < 5);
        assert_true(h->id != 7 || i < res.off[1]); /* the query's own item is not its hit */
        attr_g(h, g, sizeof g);
        snprintf(want, sizeof want, "g%d", (int)(h->id % 4));
        assert_string_equal(g, want);
        assert_int_equal(h->dim, DD);
        dvec(h->id, v);
        for (int d = 0; d < DD; d++) assert_float_equal(h->vector[d], v[d], 1e-6);
    }
    qv_query_result_free(&res);
    /* plain, without attributes or vectors: bare hits */
    sr.opts = (qv_query_opts){.k = 3};
    sr.with_attributes = sr.with_vectors = 0;
    before = qv_store_reads_begun();
    assert_int_equal(qv_query_run(&sr, 1, &res, &failed, err, sizeof err), 0);
    assert_int_equal(qv_store_reads_begun() - before, 1);
    assert_int_equal(res.off[2], 6);
    for (size_t i = 0; i < 6; i++) {
        assert_null(res.hits[i].attrs);
        assert_null(res.hits[i].vector);
        assert_int_equal(res.hits[i].dim, 0);
    }
    for (size_t i = 3; i < 6; i++) assert_true(res.hits[i].id != 7);
    qv_query_result_free(&res);
    /* a recommendation, and a batch of two: one snapshot each */
    qv_example pos = {.id = 5}, neg = {.id = 6};
    qv_read rr[2] = {{.coll = f->c, .kind = QV_READ_RECOMMEND, .positive = &pos, .npos = 1,
                      .negative = &neg, .nneg = 1, .opts = {.k = 4, .filter = &fl},
                      .with_attributes = 1},
                     {.coll = f->c, .kind = QV_READ_RECOMMEND, .positive = &neg, .npos = 1,
                      .strategy = QV_REC_BEST, .opts = {.k = 3}, .with_vectors = 1}};
    before = qv_store_reads_begun();
    assert_int_equal(qv_query_run(rr, 1, &res, &failed, err, sizeof err), 0);
    assert_int_equal(qv_store_reads_begun() - before, 1);
    assert_int_equal(res.off[1], 4);
    for (size_t i = 0; i < 4; i++) assert_non_null(res.hits[i].attrs);
    qv_query_result_free(&res);
    before = qv_store_reads_begun();
    assert_int_equal(qv_query_run(rr, 2, &res, &failed, err, sizeof err), 0);
    assert_int_equal(qv_store_reads_begun() - before, 1);
    assert_int_equal(res.nlists, 2);
    assert_int_equal(res.off[2] - res.off[1], 3);
    for (size_t i = 0; i < res.off[1]; i++) {
        assert_non_null(res.hits[i].attrs);
        assert_null(res.hits[i].vector);
    }
    for (size_t i = res.off[1]; i < res.off[2]; i++) {
        assert_null(res.hits[i].attrs);
        assert_non_null(res.hits[i].vector);
    }
    qv_query_result_free(&res);
    /* the failing request of a batch is named */
    qv_example ghost = {.id = 99999};
    rr[1].positive = &ghost;
    assert_int_equal(qv_query_run(rr, 2, &res, &failed, err, sizeof err), QV_NOTFOUND);
    assert_int_equal(failed, 1);
    assert_non_null(strstr(err, "positive[0].id 99999"));
    qv_query_result_free(&res);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idset_ops),
        cmocka_unit_test_setup_teardown(test_postings_lookups, store_setup, store_teardown),
        cmocka_unit_test_setup_teardown(test_postings_follow_writes, store_setup, store_teardown),
        cmocka_unit_test_setup_teardown(test_filter_logic_and_errors, store_setup, store_teardown),
        cmocka_unit_test_setup_teardown(test_query_filtered_exact, db_setup, db_teardown),
        cmocka_unit_test_setup_teardown(test_recommend_best_score, db_setup, db_teardown),
        cmocka_unit_test_setup_teardown(test_one_snapshot_per_read, db_setup, db_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
