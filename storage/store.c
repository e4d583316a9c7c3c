/*
 * LMDB store (include/quiver/store.h): collections, items, sequence log and
 * tombstones in one environment. Translates LMDB codes to Quiver codes; has
 * no threads and no knowledge of indexes.
 */
#include <errno.h>
#include <stdatomic.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "quiver/error.h"
#include "quiver/log.h"
#include "postings.h"
#include "store.h"

#define MAX_NEST 8

struct qv_store {
    MDB_env *env;
    void *map;      /* LMDB's mapping of data.mdb, from /proc/self/maps */
    size_t map_len;
    MDB_dbi colls, stats, items, attrs, seqlog, meta, postings;
    /* the write txn (one writer) and its nested txns, with where each one's
     * posting changes start: an abort drops them, the top commit applies them */
    qv_postings *pend;
    MDB_txn *wtxn;
    struct {
        MDB_txn *txn;
        size_t mark;
    } nest[MAX_NEST];
    int nnest;
};

static void find_map(qv_store *st, const char *dir);
static int build_postings(qv_store *st, MDB_txn *txn);

static MDB_val val(const void *p, size_t n) { return (MDB_val){n, (void *)p}; }

int qv_store_open(const qv_store_opts *o, qv_store **out)
{
    *out = NULL;
    if (mkdir(o->dir, 0755) != 0 && errno != EEXIST) {
        qv_error("cannot create data directory %s: %s", o->dir, strerror(errno));
        return QV_IO;
    }
    qv_store *st = calloc(1, sizeof *st);
    if (!st) return QV_NOMEM;
    if (qv_postings_new(&st->pend)) {
        free(st);
        return QV_NOMEM;
    }
    int rc = mdb_env_create(&st->env);
    if (rc) goto fail;
    if ((rc = mdb_env_set_maxdbs(st->env, 8))) goto fail;
    if ((rc = mdb_env_set_maxreaders(st->env, o->max_readers ? o->max_readers : 1024))) goto fail;
    /* the map is address space reserved at the cap: data.mdb itself grows
     * page by page with the data (nothing is preallocated), so the store
     * grows by itself up to map_size without ever remapping, which would
     * need every reader of the process stopped */
    if ((rc = mdb_env_set_mapsize(st->env, o->map_size ? o->map_size : QV_STORE_MAP_CAP))) goto fail;
    unsigned flags = MDB_NOTLS | (o->nosync ? MDB_NOSYNC : 0);
    if ((rc = mdb_env_open(st->env, o->dir, flags, 0644))) goto fail;
    mdb_env_set_userctx(st->env, st);

    MDB_txn *txn;
    if ((rc = mdb_txn_begin(st->env, NULL, 0, &txn))) goto fail;
    if ((rc = mdb_dbi_open(txn, "collections", MDB_CREATE, &st->colls)) ||
        (rc = mdb_dbi_open(txn, "stats", MDB_CREATE, &st->stats)) ||
        (rc = mdb_dbi_open(txn, "items", MDB_CREATE, &st->items)) ||
        (rc = mdb_dbi_open(txn, "attrs", MDB_CREATE, &st->attrs)) ||
        (rc = mdb_dbi_open(txn, "seqlog", MDB_CREATE, &st->seqlog)) ||
        (rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &st->meta)) ||
        (rc = mdb_dbi_open(txn, "postings", MDB_CREATE, &st->postings))) {
        mdb_txn_abort(txn);
        goto fail;
    }
    MDB_val k = val("format", 6), v;
    rc = mdb_get(txn, st->meta, &k, &v);
    if (rc == MDB_NOTFOUND) {
        uint32_t f = QV_STORE_FORMAT;
        v = val(&f, 4);
        rc = mdb_put(txn, st->meta, &k, &v, 0);
    } else if (rc == 0) {
        uint32_t f = 0;
        if (v.mv_size == 4) memcpy(&f, v.mv_data, 4);
        if (f == 2) { /* format 2 had no attribute index: build it */
            int mrc = build_postings(st, txn);
            if (mrc) {
                mdb_txn_abort(txn);
                qv_error("%s: cannot build the attribute index: %s", o->dir, qv_strerror(mrc));
                qv_store_close(st);
                return mrc;
            }
            f = QV_STORE_FORMAT;
            v = val(&f, 4);
            if ((rc = mdb_put(txn, st->meta, &k, &v, 0))) {
                mdb_txn_abort(txn);
                goto fail;
            }
        } else if (f != QV_STORE_FORMAT) {
            mdb_txn_abort(txn);
            qv_error("%s: store format %u, this quiverd reads format %u", o->dir, f,
                     QV_STORE_FORMAT);
            qv_store_close(st);
            return QV_VERSION;
        }
    }
    if (rc) {
        mdb_txn_abort(txn);
        goto fail;
    }
    if ((rc = mdb_txn_commit(txn))) goto fail;
    find_map(st, o->dir);
    *out = st;
    return 0;
fail:
    qv_error("cannot open LMDB store in %s: %s", o->dir, mdb_strerror(rc));
    qv_store_close(st);
    return rc == ENOSPC || rc == MDB_MAP_FULL ? QV_FULL : QV_LMDB;
}

void qv_store_close(qv_store *st)
{
    if (!st) return;
    if (st->env) mdb_env_close(st->env);
    qv_postings_free(st->pend);
    free(st);
}

MDB_env *qv_store_env(qv_store *st) { return st->env; }

void qv_store_release_pages(qv_store *st)
{
    /* safe: the map is read-only and file-backed (no MDB_WRITEMAP) */
    if (st->map && madvise(st->map, st->map_len, MADV_DONTNEED) != 0)
        qv_debug("madvise of the LMDB map: %s", strerror(errno));
}

/* LMDB does not tell where it mapped the file (me_mapaddr is only set for
 * MDB_FIXEDMAP): find the mapping of data.mdb in /proc/self/maps. */
static void find_map(qv_store *st, const char *dir)
{
    char real[PATH_MAX], want[PATH_MAX + 16], line[PATH_MAX + 256];
    if (!realpath(dir, real)) return;
    snprintf(want, sizeof want, "%s/data.mdb", real);
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        char *path = strchr(line, '/');
        if (!path || sscanf(line, "%lx-%lx", &lo, &hi) != 2) continue;
        path[strcspn(path, "\n")] = 0;
        if (strcmp(path, want) == 0 && hi - lo > st->map_len) {
            st->map = (void *)lo;
            st->map_len = hi - lo;
        }
    }
    fclose(f);
    if (!st->map) qv_debug("mapping of %s not found: full scans stay resident", want);
}

/* read snapshots begun so far (the engine's tests count them per call) */
static _Atomic uint64_t g_reads_begun;

int qv_store_read_begin(qv_store *st, MDB_txn **txn)
{
    atomic_fetch_add_explicit(&g_reads_begun, 1, memory_order_relaxed);
    return qv_store_err(mdb_txn_begin(st->env, NULL, MDB_RDONLY, txn), "read txn");
}

uint64_t qv_store_reads_begun(void)
{
    return atomic_load_explicit(&g_reads_begun, memory_order_relaxed);
}

int qv_store_read_share(qv_store *st, MDB_txn *txn)
{
    /* a read txn looks each named database up on its first use of it (and
     * records the root in the txn): do that now, in this thread, for every
     * one, so that the threads sharing txn afterwards only read */
    MDB_dbi dbis[] = {st->colls, st->stats, st->items, st->attrs, st->seqlog, st->meta, st->postings};
    for (size_t i = 0; i < sizeof dbis / sizeof *dbis; i++) {
        MDB_cursor *cur;
        int rc = mdb_cursor_open(txn, dbis[i], &cur);
        if (rc) return qv_store_err(rc, "read share");
        mdb_cursor_close(cur);
    }
    return 0;
}

int qv_store_write_begin(qv_store *st, MDB_txn *parent, MDB_txn **txn)
{
    if (parent && st->nnest == MAX_NEST) return QV_INVALID;
    int rc = qv_store_err(mdb_txn_begin(st->env, parent, 0, txn), "write txn");
    if (rc) return rc;
    if (!parent) {
        st->wtxn = *txn;
        st->nnest = 0;
        qv_postings_rollback(st->pend, 0);
    } else {
        st->nest[st->nnest].txn = *txn;
        st->nest[st->nnest++].mark = qv_postings_mark(st->pend);
    }
    return 0;
}

MDB_dbi qv_store_postings_dbi(qv_store *st) { return st->postings; }

/* The store of a write txn, with the nesting level of txn (-1: the top,
 * -2: not a write txn of ours). */
static qv_store *owner(MDB_txn *txn, int *level)
{
    qv_store *st = mdb_env_get_userctx(mdb_txn_env(txn));
    *level = -2;
    if (!st) return NULL;
    if (txn == st->wtxn) *level = -1;
    for (int i = 0; i < st->nnest; i++)
        if (st->nest[i].txn == txn) *level = i;
    return st;
}

/* Is the filesystem holding env's files (nearly) full? LMDB reports a short
 * write, which is how a full disk shows, as EIO. */
static int disk_full(MDB_env *env)
{
    const char *path = NULL;
    struct statvfs vs;
    if (mdb_env_get_path(env, &path) || !path || statvfs(path, &vs) != 0) return 0;
    return (uint64_t)vs.f_bavail * vs.f_frsize < ((uint64_t)4 << 20);
}

int qv_store_commit(MDB_txn *txn)
{
    MDB_env *env = mdb_txn_env(txn);
    int level;
    qv_store *st = owner(txn, &level);
    if (level >= 0) {
        st->nnest = level; /* its changes now belong to the parent */
    } else if (level == -1) {
        st->wtxn = NULL;
        st->nnest = 0;
        int prc = qv_postings_pending(st->pend)
                      ? qv_postings_flush(st->pend, txn, st->postings, st->stats) : 0;
        if (prc) {
            qv_postings_rollback(st->pend, 0);
            mdb_txn_abort(txn);
            return prc;
        }
    }
    int rc = mdb_txn_commit(txn);
    if (rc == EIO && disk_full(env)) {
        qv_error("commit: the disk is full (%s)", mdb_strerror(rc));
        return QV_FULL;
    }
    return qv_store_err(rc, "commit");
}

void qv_store_abort(MDB_txn *txn)
{
    if (!txn) return;
    int level;
    qv_store *st = owner(txn, &level);
    if (level >= 0) {
        qv_postings_rollback(st->pend, st->nest[level].mark);
        st->nnest = level;
    } else if (level == -1) {
        qv_postings_rollback(st->pend, 0);
        st->wtxn = NULL;
        st->nnest = 0;
    }
    mdb_txn_abort(txn);
}

uint64_t qv_store_txn_id(MDB_txn *txn) { return (uint64_t)mdb_txn_id(txn); }

/* ------------------------------------------------------------ collections */
int qv_store_coll_get(qv_store *st, MDB_txn *txn, const char *name, qv_coll_config *c)
{
    MDB_val k = val(name, strlen(name)), v;
    int rc = mdb_get(txn, st->colls, &k, &v);
    if (rc) return qv_store_err(rc, "collection get");
    memset(c, 0, sizeof *c);
    rc = qv_config_decode(v.mv_data, v.mv_size, c);
    if (rc) return rc;
    snprintf(c->name, sizeof c->name, "%s", name);
    return 0;
}

int qv_store_stats_get(qv_store *st, MDB_txn *txn, uint32_t coll_id, qv_coll_stats *s)
{
    uint8_t kb[4] = {coll_id >> 24, coll_id >> 16, coll_id >> 8, coll_id};
    MDB_val k = val(kb, 4), v;
    int rc = mdb_get(txn, st->stats, &k, &v);
    if (rc) return qv_store_err(rc, "stats get");
    return qv_stats_decode(v.mv_data, v.mv_size, s);
}

int qv_store_stats_put(qv_store *st, MDB_txn *txn, uint32_t coll_id, const qv_coll_stats *s)
{
    uint8_t kb[4] = {coll_id >> 24, coll_id >> 16, coll_id >> 8, coll_id};
    uint8_t vb[QV_STATS_LEN_MAX];
    MDB_val k = val(kb, 4), v = val(vb, qv_stats_encode(vb, s));
    return qv_store_err(mdb_put(txn, st->stats, &k, &v, 0), "stats put");
}

int qv_store_coll_create(qv_store *st, MDB_txn *txn, qv_coll_config *c)
{
    MDB_val k = val(c->name, strlen(c->name)), v;
    int rc = mdb_get(txn, st->colls, &k, &v);
    if (rc == 0) return QV_EXISTS;
    if (rc != MDB_NOTFOUND) return qv_store_err(rc, "collection get");
    /* ids are never reused, so files named after an id cannot be confused
     * with those of a dropped collection of the same name */
    MDB_val nk = val("next_coll_id", 12), nv;
    uint32_t id = 1;
    rc = mdb_get(txn, st->meta, &nk, &nv);
    if (rc == 0 && nv.mv_size == 4) memcpy(&id, nv.mv_data, 4);
    else if (rc && rc != MDB_NOTFOUND) return qv_store_err(rc, "meta get");
    c->id = id;
    uint32_t next = id + 1;
    nv = val(&next, 4);
    if ((rc = mdb_put(txn, st->meta, &nk, &nv, 0))) return qv_store_err(rc, "meta put");
    uint8_t cb[QV_CONFIG_LEN];
    qv_config_encode(cb, c);
    v = val(cb, sizeof cb);
    if ((rc = mdb_put(txn, st->colls, &k, &v, MDB_NOOVERWRITE)))
        return qv_store_err(rc, "collection put");
    qv_coll_stats s = {0, 0, 0};
    return qv_store_stats_put(st, txn, c->id, &s);
}

int qv_store_coll_update(qv_store *st, MDB_txn *txn, const qv_coll_config *c)
{
    qv_coll_config old;
    int rc = qv_store_coll_get(st, txn, c->name, &old);
    if (rc) return rc;
    if (old.id != c->id) return QV_NOTFOUND;
    uint8_t cb[QV_CONFIG_LEN];
    qv_config_encode(cb, c);
    MDB_val k = val(c->name, strlen(c->name)), v = val(cb, sizeof cb);
    return qv_store_err(mdb_put(txn, st->colls, &k, &v, 0), "collection put");
}

/* Deletes every key of dbi starting with the 4-byte collection prefix. */
static int del_prefix(MDB_txn *txn, MDB_dbi dbi, uint32_t coll_id, uint64_t *n)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc) return qv_store_err(rc, "cursor");
    uint8_t kb[QV_ITEM_KEY_LEN];
    qv_key_item(kb, coll_id, 0);
    MDB_val k = val(kb, sizeof kb), v;
    uint64_t cnt = 0;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (rc == 0 && k.mv_size >= 4 && memcmp(k.mv_data, kb, 4) == 0) {
        if ((rc = mdb_cursor_del(cur, 0))) break;
        cnt++;
        rc = mdb_cursor_get(cur, &k, &v, MDB_GET_CURRENT);
        if (rc == EINVAL) rc = MDB_NOTFOUND; /* deleted the last key */
    }
    mdb_cursor_close(cur);
    if (n) *n = cnt;
    return rc == MDB_NOTFOUND ? 0 : qv_store_err(rc, "drop scan");
}

int qv_store_coll_drop(qv_store *st, MDB_txn *txn, const char *name, uint64_t *items_deleted)
{
    qv_coll_config c;
    int rc = qv_store_coll_get(st, txn, name, &c);
    if (rc) return rc;
    MDB_val k = val(name, strlen(name));
    if ((rc = mdb_del(txn, st->colls, &k, NULL))) return qv_store_err(rc, "collection del");
    uint8_t kb[4] = {c.id >> 24, c.id >> 16, c.id >> 8, c.id};
    MDB_val sk = val(kb, 4);
    rc = mdb_del(txn, st->stats, &sk, NULL);
    if (rc && rc != MDB_NOTFOUND) return qv_store_err(rc, "stats del");
    if ((rc = del_prefix(txn, st->items, c.id, items_deleted))) return rc;
    if ((rc = del_prefix(txn, st->attrs, c.id, NULL))) return rc;
    if ((rc = del_prefix(txn, st->postings, c.id, NULL))) return rc;
    return del_prefix(txn, st->seqlog, c.id, NULL);
}

int qv_store_coll_foreach(qv_store *st, MDB_txn *txn,
                          int (*fn)(void *ctx, const qv_coll_config *c), void *ctx)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, st->colls, &cur);
    if (rc) return qv_store_err(rc, "cursor");
    MDB_val k, v;
    int ret = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        qv_coll_config c;
        memset(&c, 0, sizeof c);
        if (k.mv_size > QV_MAX_NAME || (ret = qv_config_decode(v.mv_data, v.mv_size, &c))) {
            qv_error("collection record %.*s is corrupt", (int)k.mv_size, (char *)k.mv_data);
            ret = ret ? ret : QV_CORRUPT;
            break;
        }
        memcpy(c.name, k.mv_data, k.mv_size);
        c.name[k.mv_size] = 0;
        if ((ret = fn(ctx, &c))) break;
    }
    mdb_cursor_close(cur);
    if (ret) return ret;
    return rc == MDB_NOTFOUND ? 0 : qv_store_err(rc, "collection scan");
}

/* ------------------------------------------------------------------ items */
int qv_store_item_get(qv_store *st, MDB_txn *txn, uint32_t coll_id, uint64_t id, qv_item_view *iv)
{
    uint8_t kb[QV_ITEM_KEY_LEN];
    qv_key_item(kb, coll_id, id);
    MDB_val k = val(kb, sizeof kb), v;
    int rc = mdb_get(txn, st->items, &k, &v);
    if (rc) return qv_store_err(rc, "item get");
    rc = qv_item_decode(v.mv_data, v.mv_size, iv);
    if (rc) qv_error("item %llu of collection #%u: %s", (unsigned long long)id, coll_id, qv_strerror(rc));
    return rc;
}

int qv_store_attrs_get(qv_store *st, MDB_txn *txn, uint32_t coll_id, uint64_t id,
                       const uint8_t **blob, size_t *len)
{
    uint8_t kb[QV_ITEM_KEY_LEN];
    qv_key_item(kb, coll_id, id);
    MDB_val k = val(kb, sizeof kb), v;
    int rc = mdb_get(txn, st->attrs, &k, &v);
    if (rc) return qv_store_err(rc, "attrs get");
    *blob = v.mv_data;
    *len = v.mv_size;
    return 0;
}

static int log_put(qv_store *st, MDB_txn *txn, uint32_t coll_id, uint64_t seq, qv_op op, uint64_t id)
{
    uint8_t kb[QV_SEQ_KEY_LEN], vb[QV_SEQ_VAL_LEN];
    qv_key_seq(kb, coll_id, seq);
    qv_seqval_encode(vb, op, id);
    MDB_val k = val(kb, sizeof kb), v = val(vb, sizeof vb);
    /* sequence numbers only grow: MDB_APPEND keeps the log pages dense */
    int rc = mdb_put(txn, st->seqlog, &k, &v, MDB_APPEND);
    if (rc == MDB_KEYEXIST) rc = mdb_put(txn, st->seqlog, &k, &v, 0);
    return qv_store_err(rc, "seqlog put");
}

static int log_del(qv_store *st, MDB_txn *txn, uint32_t coll_id, uint64_t seq)
{
    uint8_t kb[QV_SEQ_KEY_LEN];
    qv_key_seq(kb, coll_id, seq);
    MDB_val k = val(kb, sizeof kb);
    int rc = mdb_del(txn, st->seqlog, &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : qv_store_err(rc, "seqlog del");
}

int qv_store_item_put(qv_store *st, MDB_txn *txn, uint32_t coll_id, uint64_t id, uint64_t seq,
                      uint32_t dim, const float *vec, const void *attrs, size_t attrs_len,
                      int *existed)
{
    uint8_t kb[QV_ITEM_KEY_LEN];
    qv_key_item(kb, coll_id, id);
    MDB_val k = val(kb, sizeof kb), v, ov = {0, NULL};
    int rc = mdb_get(txn, st->items, &k, &v);
    *existed = rc == 0;
    if (rc == 0) {
        qv_item_view old;
        if (qv_item_decode(v.mv_data, v.mv_size, &old) == 0 &&
            (rc = log_del(st, txn, coll_id, old.seq)))
            return rc;
        if ((rc = mdb_get(txn, st->attrs, &k, &ov)) && rc != MDB_NOTFOUND)
            return qv_store_err(rc, "attrs get");
    } else if (rc != MDB_NOTFOUND) {
        return qv_store_err(rc, "item get");
    }
    /* the posting changes first: ov points into pages the puts may reuse */
    if ((rc = qv_postings_item(st->pend, coll_id, id, *existed, ov.mv_data, ov.mv_size, 1, attrs,
                               attrs_len)))
        return rc;
    v.mv_size = qv_item_size(dim, 0);
    v.mv_data = NULL;
    if ((rc = mdb_put(txn, st->items, &k, &v, MDB_RESERVE))) return qv_store_err(rc, "item put");
    qv_item_encode(v.mv_data, seq, dim, vec, NULL, 0);
    /* attributes live in their own database: small records, densely packed,
     * so that fetching them for a page of hits stays in cache */
    if (attrs_len) {
        MDB_val av = val(attrs, attrs_len);
        if ((rc = mdb_put(txn, st->attrs, &k, &av, 0))) return qv_store_err(rc, "attrs put");
    } else if (*existed && (rc = mdb_del(txn, st->attrs, &k, NULL)) && rc != MDB_NOTFOUND) {
        return qv_store_err(rc, "attrs del");
    }
    return log_put(st, txn, coll_id, seq, QV_OP_UPSERT, id);
}

int qv_store_item_delete(qv_store *st, MDB_txn *txn, uint32_t coll_id, uint64_t id, uint64_t seq)
{
    uint8_t kb[QV_ITEM_KEY_LEN];
    qv_key_item(kb, coll_id, id);
    MDB_val k = val(kb, sizeof kb), v;
    int rc = mdb_get(txn, st->items, &k, &v);
    if (rc) return qv_store_err(rc, "item get");
    qv_item_view old;
    if (qv_item_decode(v.mv_data, v.mv_size, &old) == 0 &&
        (rc = log_del(st, txn, coll_id, old.seq)))
        return rc;
    MDB_val ov = {0, NULL};
    if ((rc = mdb_get(txn, st->attrs, &k, &ov)) && rc != MDB_NOTFOUND)
        return qv_store_err(rc, "attrs get");
    if ((rc = qv_postings_item(st->pend, coll_id, id, 1, ov.mv_data, ov.mv_size, 0, NULL, 0)))
        return rc;
    if ((rc = mdb_del(txn, st->items, &k, NULL))) return qv_store_err(rc, "item del");
    if ((rc = mdb_del(txn, st->attrs, &k, NULL)) && rc != MDB_NOTFOUND)
        return qv_store_err(rc, "attrs del");
    return log_put(st, txn, coll_id, seq, QV_OP_DELETE, id);
}

int qv_store_item_foreach(qv_store *st, MDB_txn *txn, uint32_t coll_id, uint64_t from,
                          int (*fn)(void *ctx, uint64_t id, const qv_item_view *v), void *ctx)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, st->items, &cur);
    if (rc) return qv_store_err(rc, "cursor");
    uint8_t kb[QV_ITEM_KEY_LEN];
    qv_key_item(kb, coll_id, from);
    MDB_val k = val(kb, sizeof kb), v;
    int ret = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        uint32_t c;
        uint64_t id;
        if (k.mv_size != QV_ITEM_KEY_LEN) continue;
        qv_key_item_parse(k.mv_data, &c, &id);
        if (c != coll_id) break;
        qv_item_view iv;
        if ((ret = qv_item_decode(v.mv_data, v.mv_size, &iv))) {
            qv_error("item %llu of collection #%u: %s", (unsigned long long)id, coll_id,
                     qv_strerror(ret));
            break;
        }
        if ((ret = fn(ctx, id, &iv))) break;
    }
    mdb_cursor_close(cur);
    if (ret) return ret;
    return rc == MDB_NOTFOUND || rc == 0 ? 0 : qv_store_err(rc, "item scan");
}

int qv_store_log_foreach(qv_store *st, MDB_txn *txn, uint32_t coll_id, uint64_t after,
                         int (*fn)(void *ctx, uint64_t seq, qv_op op, uint64_t id), void *ctx)
{
    if (after == UINT64_MAX) return 0;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, st->seqlog, &cur);
    if (rc) return qv_store_err(rc, "cursor");
    uint8_t kb[QV_SEQ_KEY_LEN];
    qv_key_seq(kb, coll_id, after + 1);
    MDB_val k = val(kb, sizeof kb), v;
    int ret = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        uint32_t c;
        uint64_t seq, id;
        qv_op op;
        if (k.mv_size != QV_SEQ_KEY_LEN) continue;
        qv_key_seq_parse(k.mv_data, &c, &seq);
        if (c != coll_id) break;
        if ((ret = qv_seqval_decode(v.mv_data, v.mv_size, &op, &id))) break;
        if ((ret = fn(ctx, seq, op, id))) break;
    }
    mdb_cursor_close(cur);
    if (ret) return ret;
    return rc == MDB_NOTFOUND || rc == 0 ? 0 : qv_store_err(rc, "seqlog scan");
}

int qv_store_tombstones_prune(qv_store *st, MDB_txn *txn, uint32_t coll_id, uint64_t upto,
                              size_t *pruned)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, st->seqlog, &cur);
    if (rc) return qv_store_err(rc, "cursor");
    uint8_t kb[QV_SEQ_KEY_LEN];
    qv_key_seq(kb, coll_id, 0);
    MDB_val k = val(kb, sizeof kb), v;
    size_t n = 0;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (rc == 0) {
        uint32_t c;
        uint64_t seq, id;
        qv_op op;
        qv_key_seq_parse(k.mv_data, &c, &seq);
        if (c != coll_id || seq > upto) break;
        if (qv_seqval_decode(v.mv_data, v.mv_size, &op, &id) == 0 && op == QV_OP_DELETE) {
            if ((rc = mdb_cursor_del(cur, 0))) break;
            n++;
            rc = mdb_cursor_get(cur, &k, &v, MDB_GET_CURRENT);
            if (rc == EINVAL) rc = MDB_NOTFOUND;
            continue;
        }
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (pruned) *pruned = n;
    return rc == MDB_NOTFOUND || rc == 0 ? 0 : qv_store_err(rc, "tombstone prune");
}

/* Format 2 -> 3: the posting lists of every item, in the open txn (flushed
 * every 100,000 items so that the pending list stays small). */
static int build_postings(qv_store *st, MDB_txn *txn)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, st->items, &cur);
    if (rc) return qv_store_err(rc, "cursor");
    MDB_val k, v;
    size_t n = 0;
    int ret = 0;
    qv_info("building the attribute index of this data directory (once)");
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && !ret;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size != QV_ITEM_KEY_LEN) continue;
        uint32_t c;
        uint64_t id;
        qv_key_item_parse(k.mv_data, &c, &id);
        MDB_val av = {0, NULL};
        int g = mdb_get(txn, st->attrs, &k, &av);
        if (g && g != MDB_NOTFOUND) ret = qv_store_err(g, "attrs get");
        if (!ret) ret = qv_postings_item(st->pend, c, id, 0, NULL, 0, 1, av.mv_data, av.mv_size);
        if (!ret && ++n % 100000 == 0) ret = qv_postings_flush(st->pend, txn, st->postings, st->stats);
    }
    mdb_cursor_close(cur);
    if (!ret && rc != MDB_NOTFOUND) ret = qv_store_err(rc, "item scan");
    if (!ret) ret = qv_postings_flush(st->pend, txn, st->postings, st->stats);
    qv_postings_rollback(st->pend, 0);
    if (!ret) qv_info("attribute index built: %zu items", n);
    return ret;
}
