/*
 * Filters (include/quiver/filter.h): checked against the collection's
 * attribute types, then evaluated to an id set from the posting lists.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quiver/error.h"
#include "postings.h"
#include "store.h"

typedef struct fctx {
    qv_store *st;
    MDB_txn *txn;
    MDB_dbi dbi;
    uint32_t coll;
    qv_idset *all; /* every item, computed when first needed */
    size_t nconds;
    char *err;
    size_t errlen;
} fctx;

static int bad(fctx *x, const char *path, const char *fmt, const char *a)
{
    char msg[400];
    snprintf(msg, sizeof msg, fmt, a);
    snprintf(x->err, x->errlen, "%s%s", path, msg);
    return QV_INVALID;
}

static const char *type_word(unsigned mask)
{
    if (mask & (1u << QV_ATTR_STRING)) return "strings";
    if (mask & (1u << QV_ATTR_STRING_LIST)) return "string lists";
    if (mask & (1u << QV_ATTR_BOOL)) return "bools";
    return NULL;
}

static int check_value(fctx *x, const char *path, const qv_value *v)
{
    if (v->type == 0) return bad(x, path, ": the value is not set%s", "");
    if (v->type == QV_ATTR_STRING_LIST)
        return bad(x, path, ": a string_list cannot be compared; use any_of with its strings%s", "");
    if (v->type == QV_ATTR_DOUBLE && isnan(v->d)) return bad(x, path, ": the value is NaN%s", "");
    return 0;
}

static int check_filter(fctx *x, const qv_filter *f, char *path, size_t plen, int depth);

static int check_cond(fctx *x, const qv_cond *c, char *path, size_t plen, int depth)
{
    size_t base = strlen(path);
    if (++x->nconds > QV_FILTER_MAX_CONDS) {
        snprintf(x->err, x->errlen, "filter has over 1,000 conditions (the limit; at %s)", path);
        return QV_INVALID;
    }
    int rc = 0;
    switch (c->kind) {
    case QV_COND_FIELD:
        snprintf(path + base, plen - base, ".field");
        if (c->key_len == 0) return bad(x, path, ": key is empty%s", "");
        if (c->key_len > QV_MAX_ATTR_KEY)
            return bad(x, path, ": key is longer than the longest attribute key (256 bytes)%s", "");
        switch (c->test) {
        case QV_TEST_EQUALS:
            snprintf(path + base, plen - base, ".field.equals");
            rc = check_value(x, path, &c->values[0]);
            break;
        case QV_TEST_ANY_OF:
            if (c->n_values == 0) {
                snprintf(path + base, plen - base, ".field.any_of");
                return bad(x, path, ": values is empty%s", "");
            }
            for (size_t i = 0; i < c->n_values && !rc; i++) {
                snprintf(path + base, plen - base, ".field.any_of.values[%zu]", i);
                rc = check_value(x, path, &c->values[i]);
            }
            break;
        case QV_TEST_RANGE: {
            snprintf(path + base, plen - base, ".field.range");
            if ((c->has_lo && isnan(c->lo)) || (c->has_hi && isnan(c->hi)))
                return bad(x, path, ": a bound is NaN%s", "");
            unsigned mask;
            if ((rc = qv_postings_types(x->txn, x->dbi, x->coll, c->key, c->key_len, &mask))) return rc;
            const char *w = type_word(mask);
            if (w) {
                char key[80], msg[160];
                snprintf(key, sizeof key, "%.*s", (int)(c->key_len < 64 ? c->key_len : 64), c->key);
                snprintf(msg, sizeof msg, ": attribute \"%s\" holds %s, range needs numbers", key, w);
                return bad(x, path, "%s", msg);
            }
            break;
        }
        case QV_TEST_EXISTS: break;
        default:
            return bad(x, path, ": no test is set (equals, any_of, range or exists)%s", "");
        }
        break;
    case QV_COND_IDS: break;
    case QV_COND_FILTER:
        snprintf(path + base, plen - base, ".filter");
        if (!c->filter) return bad(x, path, ": the filter is not set%s", "");
        rc = check_filter(x, c->filter, path, plen, depth + 1);
        break;
    default:
        return bad(x, path, ": the condition has no field, has_id or filter%s", "");
    }
    path[base] = 0;
    return rc;
}

static int check_list(fctx *x, const qv_cond *cs, size_t n, const char *name, char *path,
                      size_t plen, int depth)
{
    size_t base = strlen(path);
    for (size_t i = 0; i < n; i++) {
        snprintf(path + base, plen - base, ".%s[%zu]", name, i);
        int rc = check_cond(x, &cs[i], path, plen, depth);
        if (rc) return rc;
    }
    path[base] = 0;
    return 0;
}

static int check_filter(fctx *x, const qv_filter *f, char *path, size_t plen, int depth)
{
    if (depth > QV_FILTER_MAX_DEPTH) {
        snprintf(x->err, x->errlen, "%s: filters nest deeper than %d levels", path,
                 QV_FILTER_MAX_DEPTH);
        return QV_INVALID;
    }
    int rc;
    if ((rc = check_list(x, f->must, f->n_must, "must", path, plen, depth)) ||
        (rc = check_list(x, f->should, f->n_should, "should", path, plen, depth)) ||
        (rc = check_list(x, f->must_not, f->n_must_not, "must_not", path, plen, depth)))
        return rc;
    return 0;
}

/* ------------------------------------------------------------ evaluation */
static qv_idset *all_items(fctx *x, int *rc)
{
    if (!x->all) {
        if (!(x->all = qv_idset_new())) {
            *rc = QV_NOMEM;
            return NULL;
        }
        if ((*rc = qv_postings_all(x->txn, x->dbi, x->coll, x->all))) return NULL;
    }
    return x->all;
}

/* Does item id's attribute key hold the string s (or a list holding it)? */
static int attr_has_string(fctx *x, uint64_t id, const char *key, size_t klen, const char *s,
                           size_t slen)
{
    const uint8_t *blob;
    size_t len;
    if (qv_store_attrs_get(x->st, x->txn, x->coll, id, &blob, &len)) return 0;
    qv_attr_iter it;
    qv_attr a;
    if (qv_attr_iter_init(&it, blob, len)) return 0;
    while (qv_attr_next(&it, &a) == 1) {
        if (a.key_len != klen || memcmp(a.key, key, klen) != 0) continue;
        if (a.type == QV_ATTR_STRING) return a.str_len == slen && memcmp(a.str, s, slen) == 0;
        if (a.type == QV_ATTR_STRING_LIST) {
            const char *e;
            size_t el;
            while (qv_attr_list_next(&a, &e, &el) == 1)
                if (el == slen && memcmp(e, s, slen) == 0) return 1;
        }
        return 0;
    }
    return 0;
}

static int eval_value(fctx *x, const qv_cond *c, const qv_value *v, qv_idset *out)
{
    switch (v->type) {
    case QV_ATTR_STRING: {
        int verify = 0;
        qv_idset *got = qv_idset_new();
        if (!got) return QV_NOMEM;
        int rc = qv_postings_string(x->txn, x->dbi, x->coll, c->key, c->key_len, v->s, v->len, got,
                                    &verify);
        if (!rc && verify) { /* a long string: the hash may have collided */
            uint64_t n = qv_idset_count(got);
            uint64_t *ids = malloc((n ? n : 1) * sizeof *ids);
            if (!ids) rc = QV_NOMEM;
            else {
                qv_idset_to_array(got, ids);
                for (uint64_t i = 0; i < n; i++)
                    if (!attr_has_string(x, ids[i], c->key, c->key_len, v->s, v->len))
                        qv_idset_remove(got, ids[i]);
                free(ids);
            }
        }
        if (!rc) rc = qv_idset_or(out, got);
        qv_idset_free(got);
        return rc;
    }
    case QV_ATTR_INT: return qv_postings_int(x->txn, x->dbi, x->coll, c->key, c->key_len, v->i, out);
    case QV_ATTR_DOUBLE:
        return qv_postings_range(x->txn, x->dbi, x->coll, c->key, c->key_len, 1, v->d, 1, 1, v->d,
                                 1, out);
    case QV_ATTR_BOOL: return qv_postings_bool(x->txn, x->dbi, x->coll, c->key, c->key_len, v->b, out);
    default: return QV_INVALID;
    }
}

static int eval_filter(fctx *x, const qv_filter *f, qv_idset **out);

/* The ids matching c, into a new set. */
static int eval_cond(fctx *x, const qv_cond *c, qv_idset **out)
{
    qv_idset *s = qv_idset_new();
    int rc = s ? 0 : QV_NOMEM;
    if (rc) return rc;
    switch (c->kind) {
    case QV_COND_FIELD:
        switch (c->test) {
        case QV_TEST_EQUALS: rc = eval_value(x, c, &c->values[0], s); break;
        case QV_TEST_ANY_OF:
            for (size_t i = 0; i < c->n_values && !rc; i++) rc = eval_value(x, c, &c->values[i], s);
            break;
        case QV_TEST_RANGE:
            rc = qv_postings_range(x->txn, x->dbi, x->coll, c->key, c->key_len, c->has_lo, c->lo,
                                   c->lo_incl, c->has_hi, c->hi, c->hi_incl, s);
            break;
        case QV_TEST_EXISTS:
            rc = qv_postings_exists(x->txn, x->dbi, x->coll, c->key, c->key_len, s);
            if (!rc && !c->exists) {
                qv_idset *all = all_items(x, &rc);
                qv_idset *neg = all ? qv_idset_copy(all) : NULL;
                if (all && !neg) rc = QV_NOMEM;
                if (!rc) {
                    qv_idset_andnot(neg, s);
                    qv_idset_free(s);
                    s = neg;
                }
            }
            break;
        default: rc = QV_INVALID;
        }
        break;
    case QV_COND_IDS: rc = qv_idset_add_many(s, c->ids, c->n_ids); break;
    case QV_COND_FILTER:
        qv_idset_free(s);
        s = NULL;
        rc = eval_filter(x, c->filter, &s);
        break;
    default: rc = QV_INVALID;
    }
    if (rc) {
        qv_idset_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

static int eval_filter(fctx *x, const qv_filter *f, qv_idset **out)
{
    qv_idset *r = NULL, *t = NULL;
    int rc = 0;
    for (size_t i = 0; i < f->n_must && !rc; i++) {
        if ((rc = eval_cond(x, &f->must[i], &t))) break;
        if (!r) r = t;
        else {
            qv_idset_and(r, t);
            qv_idset_free(t);
        }
        t = NULL;
    }
    if (!rc && f->n_should) {
        qv_idset *u = qv_idset_new();
        if (!u) rc = QV_NOMEM;
        for (size_t i = 0; i < f->n_should && !rc; i++) {
            if ((rc = eval_cond(x, &f->should[i], &t))) break;
            rc = qv_idset_or(u, t);
            qv_idset_free(t);
            t = NULL;
        }
        if (!rc && r) {
            qv_idset_and(r, u);
            qv_idset_free(u);
        } else if (!rc) {
            r = u;
        } else {
            qv_idset_free(u);
        }
    }
    if (!rc && !r) {
        qv_idset *all = all_items(x, &rc);
        if (all && !(r = qv_idset_copy(all))) rc = QV_NOMEM;
    }
    for (size_t i = 0; i < f->n_must_not && !rc; i++) {
        if ((rc = eval_cond(x, &f->must_not[i], &t))) break;
        qv_idset_andnot(r, t);
        qv_idset_free(t);
        t = NULL;
    }
    if (rc) {
        qv_idset_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

int qv_filter_eval(qv_store *st, MDB_txn *txn, uint32_t coll_id, const qv_filter *f,
                   const char *prefix, qv_idset **out, char *err, size_t errlen)
{
    fctx x = {st, txn, qv_store_postings_dbi(st), coll_id, NULL, 0, err, errlen};
    char path[1024];
    snprintf(path, sizeof path, "%s", prefix);
    *out = NULL;
    int rc = check_filter(&x, f, path, sizeof path, 1);
    if (!rc) rc = eval_filter(&x, f, out);
    qv_idset_free(x.all);
    if (rc && rc != QV_INVALID) snprintf(err, errlen, "%s: cannot be evaluated: %s", prefix, qv_strerror(rc));
    return rc;
}
