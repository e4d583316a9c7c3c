/* Unit tests of --filter's JSON to protobuf-c conversion (tools/filter_json.c). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "filter_json.h"

/* One filter using every message and every Value kind, nested two levels. */
static const char nested_camel[] =
    "{\"must\": ["
    "   {\"field\": {\"key\": \"lang\", \"equals\": {\"stringValue\": \"en\"}}},"
    "   {\"field\": {\"key\": \"price\", \"range\": {\"lower\": {\"value\": 1.5, \"inclusive\": true},"
    "                                               \"upper\": {\"value\": \"100\"}}}}],"
    " \"should\": ["
    "   {\"hasId\": {\"ids\": [1, \"18446744073709551615\", 9007199254740993]}},"
    "   {\"field\": {\"key\": \"year\", \"equals\": {\"intValue\": \"-9223372036854775808\"}}}],"
    " \"mustNot\": ["
    "   {\"filter\": {\"should\": ["
    "       {\"field\": {\"key\": \"tags\", \"anyOf\": {\"values\": ["
    "           {\"stringValue\": \"a\"}, {\"intValue\": 7}, {\"doubleValue\": \"-Infinity\"},"
    "           {\"boolValue\": false}, {\"stringList\": {\"values\": [\"x\", \"\"]}}]}}},"
    "       {\"field\": {\"key\": \"gone\", \"exists\": false}}]}},"
    "   {\"field\": {\"key\": \"w\", \"range\": {\"upper\": {\"value\": 2e-3}}}}]}";

/* The same filter with the proto's own names (and nulls for unset fields). */
static const char nested_snake[] =
    "{\"must\": ["
    "   {\"field\": {\"key\": \"lang\", \"equals\": {\"string_value\": \"en\"}}},"
    "   {\"field\": {\"key\": \"price\", \"range\": {\"lower\": {\"value\": \"1.5\", \"inclusive\": true},"
    "                                               \"upper\": {\"value\": 100, \"inclusive\": null}}}}],"
    " \"should\": ["
    "   {\"has_id\": {\"ids\": [\"1\", \"18446744073709551615\", \"9007199254740993\"]}},"
    "   {\"field\": {\"key\": \"year\", \"equals\": {\"int_value\": \"-9223372036854775808\"}}}],"
    " \"must_not\": ["
    "   {\"filter\": {\"must\": null, \"should\": ["
    "       {\"field\": {\"key\": \"tags\", \"any_of\": {\"values\": ["
    "           {\"string_value\": \"a\"}, {\"int_value\": 7.0}, {\"double_value\": \"-Infinity\"},"
    "           {\"bool_value\": false}, {\"string_list\": {\"values\": [\"x\", \"\"]}}]}}},"
    "       {\"field\": {\"key\": \"gone\", \"exists\": false}}]}},"
    "   {\"field\": {\"key\": \"w\", \"range\": {\"upper\": {\"value\": 0.002}}}}]}";

static Quiver__V1__Filter *parse_ok(const char *text)
{
    Quiver__V1__Filter *f = NULL;
    char err[512] = "unset";
    int rc = qvc_filter_from_json(text, &f, err, sizeof err);
    if (rc != 0) fail_msg("qvc_filter_from_json failed: %s", err);
    assert_non_null(f);
    assert_string_equal(err, "");
    return f;
}

static const Quiver__V1__FieldCondition *field_of(const Quiver__V1__Condition *c, const char *key)
{
    assert_int_equal(c->kind_case, QUIVER__V1__CONDITION__KIND_FIELD);
    assert_non_null(c->field);
    assert_string_equal(c->field->key, key);
    return c->field;
}

static void check_nested(const Quiver__V1__Filter *f)
{
    assert_int_equal(f->n_must, 2);
    assert_int_equal(f->n_should, 2);
    assert_int_equal(f->n_must_not, 2);

    const Quiver__V1__FieldCondition *fc = field_of(f->must[0], "lang");
    assert_int_equal(fc->test_case, QUIVER__V1__FIELD_CONDITION__TEST_EQUALS);
    assert_int_equal(fc->equals->kind_case, QUIVER__V1__VALUE__KIND_STRING_VALUE);
    assert_string_equal(fc->equals->string_value, "en");

    fc = field_of(f->must[1], "price");
    assert_int_equal(fc->test_case, QUIVER__V1__FIELD_CONDITION__TEST_RANGE);
    assert_non_null(fc->range->lower);
    assert_true(fc->range->lower->value == 1.5);
    assert_true(fc->range->lower->inclusive);
    assert_non_null(fc->range->upper);
    assert_true(fc->range->upper->value == 100.0);
    assert_false(fc->range->upper->inclusive);

    const Quiver__V1__Condition *c = f->should[0];
    assert_int_equal(c->kind_case, QUIVER__V1__CONDITION__KIND_HAS_ID);
    assert_int_equal(c->has_id->n_ids, 3);
    assert_true(c->has_id->ids[0] == 1);
    assert_true(c->has_id->ids[1] == UINT64_MAX);
    assert_true(c->has_id->ids[2] == 9007199254740993ULL); /* not through a double */

    fc = field_of(f->should[1], "year");
    assert_int_equal(fc->equals->kind_case, QUIVER__V1__VALUE__KIND_INT_VALUE);
    assert_true(fc->equals->int_value == INT64_MIN);

    c = f->must_not[0];
    assert_int_equal(c->kind_case, QUIVER__V1__CONDITION__KIND_FILTER);
    const Quiver__V1__Filter *in = c->filter;
    assert_int_equal(in->n_must, 0);
    assert_int_equal(in->n_must_not, 0);
    assert_int_equal(in->n_should, 2);
    fc = field_of(in->should[0], "tags");
    assert_int_equal(fc->test_case, QUIVER__V1__FIELD_CONDITION__TEST_ANY_OF);
    assert_int_equal(fc->any_of->n_values, 5);
    Quiver__V1__Value **v = fc->any_of->values;
    assert_int_equal(v[0]->kind_case, QUIVER__V1__VALUE__KIND_STRING_VALUE);
    assert_string_equal(v[0]->string_value, "a");
    assert_int_equal(v[1]->kind_case, QUIVER__V1__VALUE__KIND_INT_VALUE);
    assert_true(v[1]->int_value == 7);
    assert_int_equal(v[2]->kind_case, QUIVER__V1__VALUE__KIND_DOUBLE_VALUE);
    assert_true(isinf(v[2]->double_value) && v[2]->double_value < 0);
    assert_int_equal(v[3]->kind_case, QUIVER__V1__VALUE__KIND_BOOL_VALUE);
    assert_false(v[3]->bool_value);
    assert_int_equal(v[4]->kind_case, QUIVER__V1__VALUE__KIND_STRING_LIST);
    assert_int_equal(v[4]->string_list->n_values, 2);
    assert_string_equal(v[4]->string_list->values[0], "x");
    assert_string_equal(v[4]->string_list->values[1], "");
    fc = field_of(in->should[1], "gone");
    assert_int_equal(fc->test_case, QUIVER__V1__FIELD_CONDITION__TEST_EXISTS);
    assert_false(fc->exists);

    fc = field_of(f->must_not[1], "w");
    assert_null(fc->range->lower);
    assert_true(fc->range->upper->value == 2e-3);
}

/* The wire bytes of a message (caller frees). */
static uint8_t *packed(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(*len ? *len : 1);
    assert_non_null(buf);
    assert_int_equal(protobuf_c_message_pack(m, buf), *len);
    return buf;
}

static void test_nested_filter(void **state)
{
    (void)state;
    Quiver__V1__Filter *f = parse_ok(nested_camel);
    check_nested(f);

    /* the message survives the wire: what the server decodes is the same filter */
    size_t len;
    uint8_t *buf = packed(&f->base, &len);
    Quiver__V1__Filter *back = quiver__v1__filter__unpack(NULL, len, buf);
    assert_non_null(back);
    check_nested(back);
    protobuf_c_message_free_unpacked(&back->base, NULL);

    /* the proto's own names give the same bytes */
    Quiver__V1__Filter *g = parse_ok(nested_snake);
    size_t glen;
    uint8_t *gbuf = packed(&g->base, &glen);
    assert_int_equal(glen, len);
    assert_memory_equal(gbuf, buf, len);
    free(gbuf);
    free(buf);
    protobuf_c_message_free_unpacked(&g->base, NULL);
    protobuf_c_message_free_unpacked(&f->base, NULL);
}

static void test_empty_and_special_numbers(void **state)
{
    (void)state;
    Quiver__V1__Filter *f = parse_ok("{}");
    assert_int_equal(f->n_must + f->n_should + f->n_must_not, 0);
    protobuf_c_message_free_unpacked(&f->base, NULL);

    f = parse_ok("{\"must\": [], \"should\": [{}]}");
    assert_int_equal(f->n_must, 0);
    assert_int_equal(f->n_should, 1); /* a Condition with no kind: the server's to refuse */
    assert_int_equal(f->should[0]->kind_case, QUIVER__V1__CONDITION__KIND__NOT_SET);
    protobuf_c_message_free_unpacked(&f->base, NULL);

    f = parse_ok("{\"must\": [{\"field\": {\"key\": \"d\", \"equals\": {\"doubleValue\": \"NaN\"}}},"
                 "{\"field\": {\"key\": \"i\", \"equals\": {\"intValue\": 1e3}}},"
                 "{\"field\": {\"key\": \"s\", \"equals\": {\"stringValue\": \"h\\u00e9\\n\\\"\"}}}]}");
    assert_true(isnan(f->must[0]->field->equals->double_value));
    assert_true(f->must[1]->field->equals->int_value == 1000);
    assert_string_equal(f->must[2]->field->equals->string_value, "h\xc3\xa9\n\"");
    protobuf_c_message_free_unpacked(&f->base, NULL);
}

/* Each bad input fails with no filter and an error holding the expected text
 * (the JSON path first, where there is one). */
static const struct {
    const char *json, *err;
} bad[] = {
    {"{\"must\": [{\"field\": {\"key\": \"p\", \"range\": {\"lower\": {\"value\": \"abc\"}}}}]}",
     "must[0].field.range.lower.value: expected a number"},
    {"{\"must\": [{\"field\": {\"key\": \"p\", \"range\": {\"lower\": {\"value\": true}}}}]}",
     "must[0].field.range.lower.value: expected a number, not a boolean"},
    {"{\"must\": [{\"field\": {\"key\": \"p\", \"range\": {\"lower\": {\"value\": \"inf\"}}}}]}",
     "must[0].field.range.lower.value: expected a number"},
    {"{\"must\": [{\"field\": {\"key\": \"p\", \"range\": {\"upper\": {\"inclusive\": 1}}}}]}",
     "must[0].field.range.upper.inclusive: expected true or false"},
    {"{\"must\": [{\"feild\": {}}]}", "must[0].feild: unknown field of quiver.v1.Condition"},
    {"{\"should\": [{}, {\"field\": {\"key\": \"a\", \"exist\": true}}]}",
     "should[1].field.exist: unknown field of quiver.v1.FieldCondition"},
    {"{\"must\": {}}", "must: expected an array of conditions, not an object"},
    {"{\"must\": [null]}", "must[0]: expected an object (quiver.v1.Condition), not null"},
    {"[]", "expected an object (quiver.v1.Filter), not an array"},
    {"{\"must\": [", "invalid JSON at line 1"},
    {"", "invalid JSON"},
    {"{} {}", "invalid JSON"},
    {"{\"must\": [], \"must\": []}", "duplicate"},
    {"{\"mustNot\": [], \"must_not\": []}", "must_not: field given twice (as mustNot and must_not)"},
    {"{\"must\": [{\"field\": {\"key\": \"a\", \"exists\": true}, \"hasId\": {\"ids\": [1]}}]}",
     "must[0].hasId: field is set already"},
    {"{\"must\": [{\"field\": {\"key\": \"a\", \"exists\": true, \"equals\": {\"boolValue\": true}}}]}",
     "must[0].field.equals: exists is set already"},
    {"{\"must\": [{\"field\": {\"key\": \"a\", \"equals\": {\"stringValue\": \"x\", \"intValue\": 1}}}]}",
     "must[0].field.equals.intValue: stringValue is set already"},
    {"{\"must\": [{\"field\": {\"key\": \"a\", \"equals\": {\"intValue\": \"1.5\"}}}]}",
     "must[0].field.equals.intValue: expected a whole number"},
    {"{\"must\": [{\"field\": {\"key\": \"a\", \"equals\": {\"intValue\": 1.5}}}]}",
     "must[0].field.equals.intValue: expected a whole number"},
    {"{\"must\": [{\"field\": {\"key\": \"a\", \"equals\": {\"intValue\": \"9223372036854775808\"}}}]}",
     "must[0].field.equals.intValue: expected a whole number in int64 range"},
    {"{\"should\": [{\"hasId\": {\"ids\": [3, -1]}}]}", "should[0].hasId.ids[1]: expected a whole number 0.."},
    {"{\"should\": [{\"hasId\": {\"ids\": [\"18446744073709551616\"]}}]}", "should[0].hasId.ids[0]: expected"},
    {"{\"should\": [{\"hasId\": [1, 2]}]}", "should[0].hasId: expected an object (quiver.v1.IdList)"},
    {"{\"must\": [{\"field\": {\"key\": 5}}]}", "must[0].field.key: expected a string, not a number"},
    {"{\"must\": [{\"field\": {\"key\": \"a\\u0000b\"}}]}", "invalid JSON at line 1, column 38: \\u0000"},
    {"{\"must\": [{\"filter\": {\"must\": [{\"filter\": {\"should\": [{\"field\": {\"key\": \"k\", "
     "\"anyOf\": {\"values\": [{\"stringValue\": \"a\"}, {\"stringList\": {\"values\": [\"x\", 3]}}]}}}]}}]}}]}",
     "must[0].filter.must[0].filter.should[0].field.anyOf.values[1].stringList.values[1]: expected a string"},
    {"{\"must\": [{\"field\": {\"key\": \"a\", \"any_of\": {\"value\": []}}}]}",
     "must[0].field.any_of.value: unknown field of quiver.v1.ValueList (it has values)"},
};

static void test_bad_inputs(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        Quiver__V1__Filter *f = (Quiver__V1__Filter *)1;
        char err[512] = "";
        int rc = qvc_filter_from_json(bad[i].json, &f, err, sizeof err);
        if (rc != -1 || f != NULL || !strstr(err, bad[i].err))
            fail_msg("case %zu: %s\n  rc %d, error \"%s\"\n  wanted \"%s\"", i, bad[i].json, rc, err,
                     bad[i].err);
        /* a path, when there is one, starts the message */
        if (bad[i].err[0] != 'e' && bad[i].err[0] != 'i' && bad[i].err[0] != 'd')
            assert_memory_equal(err, bad[i].err, strlen(bad[i].err));
    }
}

static void test_small_error_buffer(void **state)
{
    (void)state;
    Quiver__V1__Filter *f;
    char err[8];
    assert_int_equal(qvc_filter_from_json("{\"must\": 1}", &f, err, sizeof err), -1);
    assert_null(f);
    assert_int_equal(strlen(err), sizeof err - 1);
    assert_int_equal(qvc_filter_from_json("{\"must\": 1}", &f, NULL, 0), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nested_filter),
        cmocka_unit_test(test_empty_and_special_numbers),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_small_error_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
