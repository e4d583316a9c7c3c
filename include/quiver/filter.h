/*
 * qv_filter: the shape of a filter over item attributes and ids, as the
 * engine takes it (quiver/query.h's qv_query_opts.filter). A plain C mirror
 * of quiver.v1.Filter: must (all), should (at least one when any), must_not
 * (none), each a list of conditions on one attribute, on ids, or a nested
 * filter. Evaluated inside the engine against posting lists in LMDB.
 *
 * Caveats:
 *  - Structs point into the caller's memory (e.g. the unpacked protobuf).
 *  - Checks (types, depth, counts) happen at evaluation: errors name the
 *    condition by its path (filter.must[1].field.range: ...).
 */
#ifndef QUIVER_FILTER_H
#define QUIVER_FILTER_H

#include <stddef.h>
#include <stdint.h>

#include "quiver/codec.h"

/* Limits of a filter. */
#define QV_FILTER_MAX_DEPTH 4
#define QV_FILTER_MAX_CONDS 1000

/* A Value to compare with: type 0 = unset (invalid), QV_ATTR_STRING_LIST is
 * refused. */
typedef struct qv_value {
    qv_attr_type type;
    const char *s;
    size_t len;
    int64_t i;
    double d;
    int b;
} qv_value;

typedef enum { QV_TEST_NONE = 0, QV_TEST_EQUALS, QV_TEST_ANY_OF, QV_TEST_RANGE, QV_TEST_EXISTS } qv_test;
typedef enum { QV_COND_NONE = 0, QV_COND_FIELD, QV_COND_IDS, QV_COND_FILTER } qv_cond_kind;

typedef struct qv_filter qv_filter;

typedef struct qv_cond {
    qv_cond_kind kind;
    /* FIELD */
    const char *key;
    size_t key_len;
    qv_test test;
    const qv_value *values; /* EQUALS: 1, ANY_OF: n */
    size_t n_values;
    int has_lo, lo_incl, has_hi, hi_incl; /* RANGE */
    double lo, hi;
    int exists; /* EXISTS */
    /* IDS */
    const uint64_t *ids;
    size_t n_ids;
    /* FILTER */
    const qv_filter *filter;
} qv_cond;

struct qv_filter {
    const qv_cond *must, *should, *must_not;
    size_t n_must, n_should, n_must_not;
};


#endif
