/* Unit tests of the record codec (storage/codec.c). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "quiver/codec.h"
#include "quiver/error.h"

static void build_attrs(qv_buf *b)
{
    qv_attr_builder ab;
    assert_int_equal(qv_attrs_begin(&ab, b), 0);
    assert_int_equal(qv_attrs_add_string(&ab, "title", "héllo", strlen("héllo")), 0);
    assert_int_equal(qv_attrs_add_int(&ab, "year", -1999), 0);
    assert_int_equal(qv_attrs_add_double(&ab, "price", 12.5e-3), 0);
    assert_int_equal(qv_attrs_add_bool(&ab, "new", 1), 0);
    assert_int_equal(qv_attrs_add_list(&ab, "tags", 3), 0);
    assert_int_equal(qv_attrs_list_item(&ab, "a", 1), 0);
    assert_int_equal(qv_attrs_list_item(&ab, "", 0), 0);
    assert_int_equal(qv_attrs_list_item(&ab, "ccc", 3), 0);
    assert_int_equal(qv_attrs_add_string(&ab, "empty", "", 0), 0);
    qv_attrs_end(&ab);
}

static void test_attrs_round_trip(void **state)
{
    (void)state;
    qv_buf b = {0};
    build_attrs(&b);
    assert_int_equal(qv_attrs_count(b.data, b.len), 6);
    qv_attr_iter it;
    qv_attr a;
    assert_int_equal(qv_attr_iter_init(&it, b.data, b.len), 0);
    assert_int_equal(qv_attr_next(&it, &a), 1);
    assert_int_equal(a.type, QV_ATTR_STRING);
    assert_memory_equal(a.key, "title", 5);
    assert_int_equal(a.str_len, strlen("héllo"));
    assert_memory_equal(a.str, "héllo", a.str_len);
    assert_int_equal(qv_attr_next(&it, &a), 1);
    assert_int_equal(a.type, QV_ATTR_INT);
    assert_int_equal(a.i, -1999);
    assert_int_equal(qv_attr_next(&it, &a), 1);
    assert_int_equal(a.type, QV_ATTR_DOUBLE);
    assert_true(a.d == 12.5e-3);
    assert_int_equal(qv_attr_next(&it, &a), 1);
    assert_int_equal(a.type, QV_ATTR_BOOL);
    assert_int_equal(a.b, 1);
    assert_int_equal(qv_attr_next(&it, &a), 1);
    assert_int_equal(a.type, QV_ATTR_STRING_LIST);
    assert_int_equal(a.n, 3);
    const char *s;
    size_t l;
    assert_int_equal(qv_attr_list_next(&a, &s, &l), 1);
    assert_int_equal(l, 1);
    assert_memory_equal(s, "a", 1);
    assert_int_equal(qv_attr_list_next(&a, &s, &l), 1);
    assert_int_equal(l, 0);
    assert_int_equal(qv_attr_list_next(&a, &s, &l), 1);
    assert_memory_equal(s, "ccc", 3);
    assert_int_equal(qv_attr_list_next(&a, &s, &l), 0);
    assert_int_equal(qv_attr_next(&it, &a), 1);
    assert_int_equal(a.str_len, 0);
    assert_int_equal(qv_attr_next(&it, &a), 0);
    qv_buf_free(&b);
}

static void test_attrs_reject_bad_keys(void **state)
{
    (void)state;
    qv_buf b = {0};
    qv_attr_builder ab;
    assert_int_equal(qv_attrs_begin(&ab, &b), 0);
    assert_int_equal(qv_attrs_add_int(&ab, "", 1), QV_INVALID);
    char longkey[QV_MAX_ATTR_KEY + 2];
    memset(longkey, 'k', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = 0;
    assert_int_equal(qv_attrs_add_int(&ab, longkey, 1), QV_INVALID);
    qv_buf_free(&b);
}

/* Every truncation of a valid blob decodes to an error or a shorter list,
 * never a crash or an out-of-bounds read (run under ASan). */
static void test_attrs_truncated(void **state)
{
    (void)state;
    qv_buf b = {0};
    build_attrs(&b);
    for (size_t len = 1; len < b.len; len++) {
        uint8_t *copy = malloc(len);
        memcpy(copy, b.data, len);
        qv_attr_iter it;
        qv_attr a;
        int rc = qv_attr_iter_init(&it, copy, len);
        int n = 0, last = 0;
        while (rc == 0 && (last = qv_attr_next(&it, &a)) == 1) {
            n++;
            const char *s;
            size_t l;
            if (a.type == QV_ATTR_STRING_LIST)
                while (qv_attr_list_next(&a, &s, &l) == 1) {
                }
        }
        assert_true(rc == QV_CORRUPT || last == QV_CORRUPT);
        assert_true(n < 6);
        free(copy);
    }
    qv_buf_free(&b);
}

static void test_item_round_trip(void **state)
{
    (void)state;
    float v[7] = {1.5f, -2.25f, 0.0f, 3e-38f, -0.0f, 1e30f, 7.0f};
    qv_buf attrs = {0};
    build_attrs(&attrs);
    size_t n = qv_item_size(7, attrs.len);
    uint8_t *rec = malloc(n);
    qv_item_encode(rec, 0x0102030405060708ULL, 7, v, attrs.data, attrs.len);
    qv_item_view iv;
    assert_int_equal(qv_item_decode(rec, n, &iv), 0);
    assert_int_equal(iv.dim, 7);
    assert_true(iv.seq == 0x0102030405060708ULL);
    float out[7];
    qv_item_vector(&iv, out);
    assert_memory_equal(out, v, sizeof v); /* bit-exact, -0.0 included */
    assert_int_equal(iv.attrs_len, attrs.len);
    assert_memory_equal(iv.attrs, attrs.data, attrs.len);
    /* no attributes */
    size_t n0 = qv_item_size(7, 0);
    uint8_t *rec0 = malloc(n0);
    qv_item_encode(rec0, 1, 7, v, NULL, 0);
    assert_int_equal(qv_item_decode(rec0, n0, &iv), 0);
    assert_int_equal(iv.attrs_len, 0);
    /* truncated and padded records */
    for (size_t len = 0; len < n; len++) assert_int_not_equal(qv_item_decode(rec, len, &iv), 0);
    uint8_t *big = calloc(1, n + 1);
    memcpy(big, rec, n);
    assert_int_equal(qv_item_decode(big, n + 1, &iv), QV_CORRUPT);
    /* another format version */
    rec[0] = QV_REC_VERSION + 1;
    assert_int_equal(qv_item_decode(rec, n, &iv), QV_VERSION);
    free(big);
    free(rec);
    free(rec0);
    qv_buf_free(&attrs);
}

static void test_keys_sort_numerically(void **state)
{
    (void)state;
    uint8_t a[QV_ITEM_KEY_LEN], b[QV_ITEM_KEY_LEN];
    qv_key_item(a, 1, 255);
    qv_key_item(b, 1, 256);
    assert_true(memcmp(a, b, QV_ITEM_KEY_LEN) < 0);
    qv_key_item(a, 1, UINT64_MAX >> 1);
    qv_key_item(b, 2, 0);
    assert_true(memcmp(a, b, QV_ITEM_KEY_LEN) < 0);
    uint32_t c;
    uint64_t id;
    qv_key_item_parse(a, &c, &id);
    assert_int_equal(c, 1);
    assert_true(id == UINT64_MAX >> 1);
}

static void test_seqval(void **state)
{
    (void)state;
    uint8_t v[QV_SEQ_VAL_LEN];
    qv_seqval_encode(v, QV_OP_DELETE, 123456789012345ULL);
    qv_op op;
    uint64_t id;
    assert_int_equal(qv_seqval_decode(v, sizeof v, &op, &id), 0);
    assert_int_equal(op, QV_OP_DELETE);
    assert_true(id == 123456789012345ULL);
    v[0] = 9;
    assert_int_equal(qv_seqval_decode(v, sizeof v, &op, &id), QV_CORRUPT);
    assert_int_equal(qv_seqval_decode(v, 3, &op, &id), QV_CORRUPT);
}

static void test_config_round_trip_non_default(void **state)
{
    (void)state;
    qv_coll_config c = {.id = 77, .dim = 384, .metric = QV_METRIC_IP, .created = 1790000000ULL};
    c.spec = (qv_index_params){QV_KIND_IVF_PQ, 4096, 48, 6, 4, 0};
    uint8_t buf[QV_CONFIG_LEN];
    qv_config_encode(buf, &c);
    qv_coll_config d;
    memset(&d, 0, sizeof d);
    assert_int_equal(qv_config_decode(buf, sizeof buf, &d), 0);
    assert_int_equal(d.id, 77);
    assert_int_equal(d.dim, 384);
    assert_int_equal(d.metric, QV_METRIC_IP);
    assert_int_equal(d.spec.kind, QV_KIND_IVF_PQ);
    assert_int_equal(d.spec.nlist, 4096);
    assert_int_equal(d.spec.pq_m, 48);
    assert_int_equal(d.spec.pq_nbits, 6);
    assert_int_equal(d.spec.refine, 4);
    assert_true(d.created == 1790000000ULL);
    assert_int_equal(qv_config_decode(buf, sizeof buf - 1, &d), QV_CORRUPT);
    buf[1] = 9; /* unknown metric */
    assert_int_equal(qv_config_decode(buf, sizeof buf, &d), QV_CORRUPT);
    buf[0] = 2;
    assert_int_equal(qv_config_decode(buf, sizeof buf, &d), QV_VERSION);
}

static void test_stats(void **state)
{
    (void)state;
    qv_coll_stats s = {UINT64_MAX - 5, 42, 0}, t;
    uint8_t buf[QV_STATS_LEN_MAX];
    /* a single node's record keeps the 16 bytes earlier versions read */
    assert_int_equal(qv_stats_encode(buf, &s), QV_STATS_LEN);
    assert_int_equal(qv_stats_decode(buf, QV_STATS_LEN, &t), 0);
    assert_true(t.last_seq == UINT64_MAX - 5 && t.count == 42 && t.log_seq == 0);
    assert_int_equal(qv_stats_decode(buf, 15, &t), QV_CORRUPT);
    /* a replica's carries the log sequence it applied */
    s.log_seq = 77;
    assert_int_equal(qv_stats_encode(buf, &s), QV_STATS_LEN_MAX);
    assert_int_equal(qv_stats_decode(buf, QV_STATS_LEN_MAX, &t), 0);
    assert_true(t.last_seq == UINT64_MAX - 5 && t.count == 42 && t.log_seq == 77);
    assert_int_equal(qv_stats_decode(buf, 23, &t), QV_CORRUPT);
}

static void test_names(void **state)
{
    (void)state;
    assert_int_equal(qv_name_check("pins_v2-en.US"), 0);
    assert_int_equal(qv_name_check(""), QV_INVALID);
    assert_int_equal(qv_name_check(".hidden"), QV_INVALID);
    assert_int_equal(qv_name_check("a b"), QV_INVALID);
    assert_int_equal(qv_name_check("a/b"), QV_INVALID);
    assert_int_equal(qv_name_check("é"), QV_INVALID);
    char n[QV_MAX_NAME + 2];
    memset(n, 'x', sizeof n);
    n[QV_MAX_NAME] = 0;
    assert_int_equal(qv_name_check(n), 0);
    n[QV_MAX_NAME] = 'x';
    n[QV_MAX_NAME + 1] = 0;
    assert_int_equal(qv_name_check(n), QV_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attrs_round_trip),
        cmocka_unit_test(test_attrs_reject_bad_keys),
        cmocka_unit_test(test_attrs_truncated),
        cmocka_unit_test(test_item_round_trip),
        cmocka_unit_test(test_keys_sort_numerically),
        cmocka_unit_test(test_seqval),
        cmocka_unit_test(test_config_round_trip_non_default),
        cmocka_unit_test(test_stats),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
