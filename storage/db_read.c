/*
 * The engine, part: items read by id and scans in id order
 * (include/quiver/query.h), each in one read snapshot that the result or the
 * scan holds. Searches are query.c's.
 */
#include "db_int.h"
#include "quiver/query.h"

int qv_items_get(qv_coll *c, const uint64_t *ids, size_t n, qv_items *out, uint64_t *bad_id)
{
    memset(out, 0, sizeof *out);
    if (atomic_load(&c->dropped)) return QV_NOTFOUND;
    qv_store *st = qv_db_store(c->db);
    MDB_txn *txn;
    int rc = qv_store_read_begin(st, &txn);
    if (rc) return rc;
    out->snap_ = txn;
    out->items = calloc(n ? n : 1, sizeof *out->items);
    if (!out->items) return QV_NOMEM;
    out->n = n;
    for (size_t i = 0; i < n; i++) {
        qv_item_ref *it = &out->items[i];
        it->id = ids[i];
        rc = ids[i] > (uint64_t)QV_MAX_ID ? QV_NOTFOUND
                                          : qv_store_item_get(st, txn, c->cfg.id, ids[i], &it->v);
        if (rc == QV_NOTFOUND) continue;
        if (rc) {
            *bad_id = ids[i];
            return rc;
        }
        it->found = 1;
        if (qv_store_attrs_get(st, txn, c->cfg.id, ids[i], &it->attrs, &it->attrs_len)) {
            it->attrs = NULL;
            it->attrs_len = 0;
        }
    }
    return 0;
}

void qv_items_free(qv_items *r)
{
    if (!r) return;
    free(r->items);
    qv_store_abort(r->snap_);
    memset(r, 0, sizeof *r);
}

struct qv_scan {
    qv_coll *c;
    MDB_txn *txn;
    /* the step running */
    int with_attrs;
    int (*cb)(void *ctx, const qv_item_ref *it);
    void *ctx;
};

int qv_scan_open(qv_coll *c, qv_scan **out)
{
    *out = NULL;
    if (atomic_load(&c->dropped)) return QV_NOTFOUND;
    qv_scan *s = calloc(1, sizeof *s);
    if (!s) return QV_NOMEM;
    int rc = qv_store_read_begin(qv_db_store(c->db), &s->txn);
    if (rc) {
        free(s);
        return rc;
    }
    qv_reg_coll_ref(c);
    s->c = c;
    *out = s;
    return 0;
}

static int scan_one(void *ctx, uint64_t id, const qv_item_view *v)
{
    qv_scan *s = ctx;
    qv_item_ref it = {.id = id, .found = 1, .v = *v};
    if (s->with_attrs &&
        qv_store_attrs_get(qv_db_store(s->c->db), s->txn, s->c->cfg.id, id, &it.attrs, &it.attrs_len)) {
        it.attrs = NULL;
        it.attrs_len = 0;
    }
    return s->cb(s->ctx, &it);
}

int qv_scan_step(qv_scan *s, uint64_t from, int with_attrs,
                 int (*cb)(void *ctx, const qv_item_ref *it), void *ctx)
{
    s->with_attrs = with_attrs;
    s->cb = cb;
    s->ctx = ctx;
    return qv_store_item_foreach(qv_db_store(s->c->db), s->txn, s->c->cfg.id, from, scan_one, s);
}

void qv_scan_close(qv_scan *s)
{
    if (!s) return;
    qv_store_abort(s->txn);
    qv_coll_release(s->c);
    free(s);
}
