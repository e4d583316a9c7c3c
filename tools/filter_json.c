/*
 * filter_json: jansson's tree of a --filter argument mapped onto a protobuf-c
 * quiver.v1.Filter (see filter_json.h for the mapping). Every message is
 * linked into the tree before it is filled, so one
 * protobuf_c_message_free_unpacked of the root frees whatever was built when
 * a later part fails.
 */
#include "filter_json.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* Where the walk is: the JSON path so far, and the error once there is one. */
typedef struct walk {
    char path[512];
    size_t len;
    char *err;
    size_t errlen;
} walk;

static int fail(walk *w, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (w->len) snprintf(w->err, w->errlen, "%s: %s", w->path, msg);
    else snprintf(w->err, w->errlen, "%s", msg);
    return -1;
}

/* Append ".name" (or "name" at the root) or "[i]" to the path; returns the
 * length to restore with path_pop. A path too long for the buffer is cut. */
static size_t path_push(walk *w, const char *name, long idx)
{
    size_t mark = w->len, room = sizeof w->path - w->len;
    int n = name ? snprintf(w->path + w->len, room, "%s%s", w->len ? "." : "", name)
                 : snprintf(w->path + w->len, room, "[%ld]", idx);
    if (n > 0) w->len += (size_t)n < room ? (size_t)n : room - 1;
    return mark;
}

static void path_pop(walk *w, size_t mark)
{
    w->len = mark;
    w->path[mark] = '\0';
}

/* A new message of desc's type, with its defaults. */
static void *alloc_msg(walk *w, const ProtobufCMessageDescriptor *desc)
{
    void *m = malloc(desc->sizeof_message);
    if (!m) {
        fail(w, "out of memory");
        return NULL;
    }
    protobuf_c_message_init(desc, m);
    return m;
}
#define NEW_MSG(w, type, name) ((type *)alloc_msg((w), &quiver__v1__##name##__descriptor))

/* ------------------------------------------------------------ scalars */
static const char *type_name(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

static int get_double(walk *w, const json_t *j, double *out)
{
    if (json_is_number(j)) {
        *out = json_number_value(j);
        return 0;
    }
    if (json_is_string(j)) {
        const char *s = json_string_value(j);
        if (!strcmp(s, "NaN")) *out = NAN;
        else if (!strcmp(s, "Infinity")) *out = INFINITY;
        else if (!strcmp(s, "-Infinity")) *out = -INFINITY;
        else {
            char *end;
            errno = 0;
            *out = strtod(s, &end);
            /* decimal text only: strtod's "inf", "nan" and hex forms are not JSON's */
            if (!*s || *end || errno == ERANGE || strpbrk(s, "iInNxX") || s[0] == ' ')
                return fail(w, "expected a number, not the string \"%s\"", s);
        }
        return 0;
    }
    return fail(w, "expected a number, not %s", type_name(j));
}

/* A whole number in [lo, hi] (as a double, exact up to 2^53) or from a string. */
static int get_whole_real(const json_t *j, double lo, double hi, double *out)
{
    double v = json_real_value(j);
    if (!isfinite(v) || v != floor(v) || v < lo || v >= hi) return -1;
    *out = v;
    return 0;
}

static int get_int64(walk *w, const json_t *j, int64_t *out)
{
    double d;
    if (json_is_integer(j)) {
        *out = json_integer_value(j);
        return 0;
    }
    if (json_is_real(j) && get_whole_real(j, -9223372036854775808.0, 9223372036854775808.0, &d) == 0) {
        *out = (int64_t)d;
        return 0;
    }
    if (json_is_string(j)) {
        const char *s = json_string_value(j), *p = s + (s[0] == '-');
        char *end;
        if (*p >= '0' && *p <= '9') {
            errno = 0;
            long long v = strtoll(s, &end, 10);
            if (!*end && !errno) {
                *out = v;
                return 0;
            }
        }
    }
    return fail(w, "expected a whole number in int64 range");
}

static int get_uint64(walk *w, const json_t *j, uint64_t *out)
{
    double d;
    if (json_is_integer(j) && json_integer_value(j) >= 0) {
        *out = (uint64_t)json_integer_value(j);
        return 0;
    }
    if (json_is_real(j) && get_whole_real(j, 0, 18446744073709551616.0, &d) == 0) {
        *out = (uint64_t)d;
        return 0;
    }
    if (json_is_string(j)) {
        const char *s = json_string_value(j);
        char *end;
        if (*s >= '0' && *s <= '9') {
            errno = 0;
            unsigned long long v = strtoull(s, &end, 10);
            if (!*end && !errno) {
                *out = v;
                return 0;
            }
        }
    }
    return fail(w, "expected a whole number 0..18446744073709551615");
}

static int get_bool(walk *w, const json_t *j, protobuf_c_boolean *out)
{
    if (!json_is_boolean(j)) return fail(w, "expected true or false, not %s", type_name(j));
    *out = json_is_true(j);
    return 0;
}

/* A malloc'd copy of a JSON string (no NUL inside: protobuf-c strings are C strings). */
static int get_string(walk *w, const json_t *j, char **out)
{
    if (!json_is_string(j)) return fail(w, "expected a string, not %s", type_name(j));
    size_t n = json_string_length(j);
    const char *s = json_string_value(j);
    if (memchr(s, '\0', n)) return fail(w, "a string may not hold \\u0000");
    if (!(*out = strdup(s))) return fail(w, "out of memory");
    return 0;
}

/* ------------------------------------------------------------ objects */
/* A field of a message: its JSON (lowerCamelCase) and proto names. */
typedef struct fieldname {
    const char *json, *proto;
} fieldname;

/* Called for each field present (and not null): idx into the message's names. */
typedef int (*field_fn)(walk *w, void *msg, int idx, json_t *val);

/* Walk an object's members against names[n], path extended by each key. */
static int each_field(walk *w, json_t *obj, const char *type, const fieldname *names, int n,
                      void *msg, field_fn fn)
{
    if (!json_is_object(obj)) return fail(w, "expected an object (%s), not %s", type, type_name(obj));
    const char *seen[16] = {0};
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val) {
        size_t mark = path_push(w, key, 0);
        int idx = -1;
        for (int i = 0; i < n; i++)
            if (!strcmp(key, names[i].json) || !strcmp(key, names[i].proto)) idx = i;
        if (idx < 0) {
            char known[200];
            size_t k = 0;
            for (int i = 0; i < n && k < sizeof known; i++)
                k += (size_t)snprintf(known + k, sizeof known - k, "%s%s", i ? ", " : "", names[i].json);
            return fail(w, "unknown field of %s (it has %s)", type, known);
        }
        if (seen[idx]) return fail(w, "field given twice (as %s and %s)", seen[idx], key);
        seen[idx] = key;
        if (!json_is_null(val) && fn(w, msg, idx, val)) return -1;
        path_pop(w, mark);
    }
    return 0;
}

/* Refuse a second member of a oneof: cur is the case already set (0 = none). */
static int oneof_free(walk *w, int cur, const fieldname *names, int first_id, const char *oneof)
{
    if (cur)
        return fail(w, "%s is set already and oneof %s takes one", names[cur - first_id].json, oneof);
    return 0;
}

/* ------------------------------------------------------------ messages */
static int parse_filter(walk *w, json_t *j, Quiver__V1__Filter *f);

static const fieldname string_list_names[] = {{"values", "values"}};

static int string_list_field(walk *w, void *msg, int idx, json_t *val)
{
    Quiver__V1__StringList *sl = msg;
    (void)idx;
    if (!json_is_array(val)) return fail(w, "expected an array of strings, not %s", type_name(val));
    size_t n = json_array_size(val);
    if (!(sl->values = calloc(n ? n : 1, sizeof *sl->values))) return fail(w, "out of memory");
    for (size_t i = 0; i < n; i++) {
        size_t mark = path_push(w, NULL, (long)i);
        if (get_string(w, json_array_get(val, i), &sl->values[sl->n_values])) return -1;
        sl->n_values++;
        path_pop(w, mark);
    }
    return 0;
}

/* Value: fields 1..5 in the order of its oneof. */
static const fieldname value_names[] = {{"stringValue", "string_value"},
                                        {"intValue", "int_value"},
                                        {"doubleValue", "double_value"},
                                        {"boolValue", "bool_value"},
                                        {"stringList", "string_list"}};

static int value_field(walk *w, void *msg, int idx, json_t *val)
{
    Quiver__V1__Value *v = msg;
    if (oneof_free(w, v->kind_case, value_names, 1, "kind")) return -1;
    switch (idx) {
    case 0: {
        char *s;
        if (get_string(w, val, &s)) return -1;
        v->string_value = s;
        v->kind_case = QUIVER__V1__VALUE__KIND_STRING_VALUE;
        return 0;
    }
    case 1:
        if (get_int64(w, val, &v->int_value)) return -1;
        v->kind_case = QUIVER__V1__VALUE__KIND_INT_VALUE;
        return 0;
    case 2:
        if (get_double(w, val, &v->double_value)) return -1;
        v->kind_case = QUIVER__V1__VALUE__KIND_DOUBLE_VALUE;
        return 0;
    case 3:
        if (get_bool(w, val, &v->bool_value)) return -1;
        v->kind_case = QUIVER__V1__VALUE__KIND_BOOL_VALUE;
        return 0;
    default:
        if (!(v->string_list = NEW_MSG(w, Quiver__V1__StringList, string_list)))
            return -1;
        v->kind_case = QUIVER__V1__VALUE__KIND_STRING_LIST;
        return each_field(w, val, "quiver.v1.StringList", string_list_names, 1, v->string_list,
                          string_list_field);
    }
}

static int parse_value(walk *w, json_t *j, Quiver__V1__Value *v)
{
    return each_field(w, j, "quiver.v1.Value", value_names, 5, v, value_field);
}

static const fieldname value_list_names[] = {{"values", "values"}};

static int value_list_field(walk *w, void *msg, int idx, json_t *val)
{
    Quiver__V1__ValueList *vl = msg;
    (void)idx;
    if (!json_is_array(val)) return fail(w, "expected an array of values, not %s", type_name(val));
    size_t n = json_array_size(val);
    if (!(vl->values = calloc(n ? n : 1, sizeof *vl->values))) return fail(w, "out of memory");
    for (size_t i = 0; i < n; i++) {
        size_t mark = path_push(w, NULL, (long)i);
        Quiver__V1__Value *v = NEW_MSG(w, Quiver__V1__Value, value);
        if (!v) return -1;
        vl->values[vl->n_values++] = v;
        if (parse_value(w, json_array_get(val, i), v)) return -1;
        path_pop(w, mark);
    }
    return 0;
}

static const fieldname bound_names[] = {{"value", "value"}, {"inclusive", "inclusive"}};

static int bound_field(walk *w, void *msg, int idx, json_t *val)
{
    Quiver__V1__Bound *b = msg;
    return idx == 0 ? get_double(w, val, &b->value) : get_bool(w, val, &b->inclusive);
}

static const fieldname range_names[] = {{"lower", "lower"}, {"upper", "upper"}};

static int range_field(walk *w, void *msg, int idx, json_t *val)
{
    Quiver__V1__Range *r = msg;
    Quiver__V1__Bound *b = NEW_MSG(w, Quiver__V1__Bound, bound);
    if (!b) return -1;
    if (idx == 0) r->lower = b;
    else r->upper = b;
    return each_field(w, val, "quiver.v1.Bound", bound_names, 2, b, bound_field);
}

/* FieldCondition: key = 1, then the oneof test 2..5. */
static const fieldname field_names[] = {
    {"key", "key"}, {"equals", "equals"}, {"anyOf", "any_of"}, {"range", "range"}, {"exists", "exists"}};

static int field_field(walk *w, void *msg, int idx, json_t *val)
{
    Quiver__V1__FieldCondition *fc = msg;
    if (idx == 0) {
        char *s;
        if (get_string(w, val, &s)) return -1;
        fc->key = s;
        return 0;
    }
    if (oneof_free(w, fc->test_case, field_names, 1, "test")) return -1;
    switch (idx) {
    case 1:
        if (!(fc->equals = NEW_MSG(w, Quiver__V1__Value, value))) return -1;
        fc->test_case = QUIVER__V1__FIELD_CONDITION__TEST_EQUALS;
        return parse_value(w, val, fc->equals);
    case 2:
        if (!(fc->any_of = NEW_MSG(w, Quiver__V1__ValueList, value_list))) return -1;
        fc->test_case = QUIVER__V1__FIELD_CONDITION__TEST_ANY_OF;
        return each_field(w, val, "quiver.v1.ValueList", value_list_names, 1, fc->any_of,
                          value_list_field);
    case 3:
        if (!(fc->range = NEW_MSG(w, Quiver__V1__Range, range))) return -1;
        fc->test_case = QUIVER__V1__FIELD_CONDITION__TEST_RANGE;
        return each_field(w, val, "quiver.v1.Range", range_names, 2, fc->range, range_field);
    default:
        if (get_bool(w, val, &fc->exists)) return -1;
        fc->test_case = QUIVER__V1__FIELD_CONDITION__TEST_EXISTS;
        return 0;
    }
}

static const fieldname id_list_names[] = {{"ids", "ids"}};

static int id_list_field(walk *w, void *msg, int idx, json_t *val)
{
    Quiver__V1__IdList *il = msg;
    (void)idx;
    if (!json_is_array(val)) return fail(w, "expected an array of ids, not %s", type_name(val));
    size_t n = json_array_size(val);
    if (!(il->ids = calloc(n ? n : 1, sizeof *il->ids))) return fail(w, "out of memory");
    for (size_t i = 0; i < n; i++) {
        size_t mark = path_push(w, NULL, (long)i);
        if (get_uint64(w, json_array_get(val, i), &il->ids[il->n_ids])) return -1;
        il->n_ids++;
        path_pop(w, mark);
    }
    return 0;
}

/* Condition: the oneof kind, fields 1..3. */
static const fieldname condition_names[] = {{"field", "field"}, {"hasId", "has_id"}, {"filter", "filter"}};

static int condition_field(walk *w, void *msg, int idx, json_t *val)
{
    Quiver__V1__Condition *c = msg;
    if (oneof_free(w, c->kind_case, condition_names, 1, "kind")) return -1;
    switch (idx) {
    case 0:
        if (!(c->field = NEW_MSG(w, Quiver__V1__FieldCondition, field_condition)))
            return -1;
        c->kind_case = QUIVER__V1__CONDITION__KIND_FIELD;
        return each_field(w, val, "quiver.v1.FieldCondition", field_names, 5, c->field, field_field);
    case 1:
        if (!(c->has_id = NEW_MSG(w, Quiver__V1__IdList, id_list))) return -1;
        c->kind_case = QUIVER__V1__CONDITION__KIND_HAS_ID;
        return each_field(w, val, "quiver.v1.IdList", id_list_names, 1, c->has_id, id_list_field);
    default:
        if (!(c->filter = NEW_MSG(w, Quiver__V1__Filter, filter))) return -1;
        c->kind_case = QUIVER__V1__CONDITION__KIND_FILTER;
        return parse_filter(w, val, c->filter);
    }
}

static const fieldname filter_names[] = {{"must", "must"}, {"should", "should"}, {"mustNot", "must_not"}};

static int filter_field(walk *w, void *msg, int idx, json_t *val)
{
    Quiver__V1__Filter *f = msg;
    size_t *n = idx == 0 ? &f->n_must : idx == 1 ? &f->n_should : &f->n_must_not;
    Quiver__V1__Condition ***arr = idx == 0 ? &f->must : idx == 1 ? &f->should : &f->must_not;
    if (!json_is_array(val)) return fail(w, "expected an array of conditions, not %s", type_name(val));
    size_t cnt = json_array_size(val);
    if (!(*arr = calloc(cnt ? cnt : 1, sizeof **arr))) return fail(w, "out of memory");
    for (size_t i = 0; i < cnt; i++) {
        size_t mark = path_push(w, NULL, (long)i);
        Quiver__V1__Condition *c = NEW_MSG(w, Quiver__V1__Condition, condition);
        if (!c) return -1;
        (*arr)[(*n)++] = c;
        if (each_field(w, json_array_get(val, i), "quiver.v1.Condition", condition_names, 3, c,
                       condition_field))
            return -1;
        path_pop(w, mark);
    }
    return 0;
}

static int parse_filter(walk *w, json_t *j, Quiver__V1__Filter *f)
{
    return each_field(w, j, "quiver.v1.Filter", filter_names, 3, f, filter_field);
}

int qvc_filter_from_json(const char *text, Quiver__V1__Filter **out, char *err, size_t errlen)
{
    char dummy[1];
    walk w = {.err = errlen ? err : dummy, .errlen = errlen ? errlen : sizeof dummy};
    json_error_t je;
    *out = NULL;
    w.err[0] = '\0';
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        snprintf(w.err, w.errlen, "invalid JSON at line %d, column %d: %s", je.line, je.column, je.text);
        return -1;
    }
    Quiver__V1__Filter *f = NEW_MSG(&w, Quiver__V1__Filter, filter);
    int rc = f ? parse_filter(&w, root, f) : -1;
    json_decref(root);
    if (rc) {
        if (f) protobuf_c_message_free_unpacked(&f->base, NULL);
        return -1;
    }
    *out = f;
    return 0;
}
