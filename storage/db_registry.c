/*
 * The engine, part: the collections registry: the sorted array of live collections, references, info.
 * Private declarations in db_int.h.
 */
#include "db_int.h"

/* ------------------------------------------------------------ collections */
qv_coll *qv_reg_coll_new(qv_db *db, const qv_coll_config *cfg)
{
    qv_coll *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->db = db;
    c->cfg = *cfg;
    atomic_init(&c->refs, 1);
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    /* searches must not starve the writer */
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&c->ilock, &a);
    pthread_rwlockattr_destroy(&a);
    pthread_mutex_init(&c->rmu, NULL);
    pthread_mutex_init(&c->fmu, NULL);
    c->nprobe = 1;
    if (!db->opts.no_attr_cache) c->ac = qv_acache_new(&db->acache_left);
    return c;
}

void qv_reg_coll_ref(qv_coll *c) { atomic_fetch_add(&c->refs, 1); }

qv_index_params qv_reg_coll_spec(qv_coll *c)
{
    pthread_mutex_lock(&c->rmu);
    qv_index_params p = c->cfg.spec;
    pthread_mutex_unlock(&c->rmu);
    return p;
}

void qv_coll_release(qv_coll *c)
{
    if (!c || atomic_fetch_sub(&c->refs, 1) != 1) return;
    qv_index_free(c->index);
    if (c->cache_free) c->cache_free(c);
    qv_acache_free(c->ac);
    pthread_rwlock_destroy(&c->ilock);
    pthread_mutex_destroy(&c->rmu);
    pthread_mutex_destroy(&c->fmu);
    free(c);
}

const qv_coll_config *qv_coll_config_of(const qv_coll *c) { return &c->cfg; }

static size_t reg_find(qv_db *db, const char *name, int *found)
{
    size_t lo = 0, hi = db->ncolls;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int cmp = strcmp(db->colls[mid]->cfg.name, name);
        if (cmp == 0) {
            *found = 1;
            return mid;
        }
        if (cmp < 0) lo = mid + 1;
        else hi = mid;
    }
    *found = 0;
    return lo;
}

int qv_reg_add(qv_db *db, qv_coll *c)
{
    pthread_mutex_lock(&db->cmu);
    int found;
    size_t at = reg_find(db, c->cfg.name, &found);
    if (found) {
        pthread_mutex_unlock(&db->cmu);
        return QV_EXISTS;
    }
    if (db->ncolls == db->capcolls) {
        size_t cap = db->capcolls ? db->capcolls * 2 : 16;
        qv_coll **n = realloc(db->colls, cap * sizeof *n);
        if (!n) {
            pthread_mutex_unlock(&db->cmu);
            return QV_NOMEM;
        }
        db->colls = n;
        db->capcolls = cap;
    }
    memmove(db->colls + at + 1, db->colls + at, (db->ncolls - at) * sizeof *db->colls);
    db->colls[at] = c;
    db->ncolls++;
    pthread_mutex_unlock(&db->cmu);
    return 0;
}

/* Removes name from the registry; returns its reference (or NULL). */
qv_coll *qv_reg_remove(qv_db *db, const char *name)
{
    pthread_mutex_lock(&db->cmu);
    int found;
    size_t at = reg_find(db, name, &found);
    qv_coll *c = NULL;
    if (found) {
        c = db->colls[at];
        memmove(db->colls + at, db->colls + at + 1, (db->ncolls - at - 1) * sizeof *db->colls);
        db->ncolls--;
    }
    pthread_mutex_unlock(&db->cmu);
    return c;
}

int qv_db_coll_get(qv_db *db, const char *name, qv_coll **out)
{
    pthread_mutex_lock(&db->cmu);
    int found;
    size_t at = reg_find(db, name, &found);
    *out = found ? db->colls[at] : NULL;
    if (found) qv_reg_coll_ref(*out);
    pthread_mutex_unlock(&db->cmu);
    return found ? 0 : QV_NOTFOUND;
}

int qv_db_coll_list(qv_db *db, qv_coll ***out, size_t *n)
{
    pthread_mutex_lock(&db->cmu);
    *out = malloc((db->ncolls ? db->ncolls : 1) * sizeof **out);
    if (!*out) {
        pthread_mutex_unlock(&db->cmu);
        return QV_NOMEM;
    }
    for (size_t i = 0; i < db->ncolls; i++) {
        (*out)[i] = db->colls[i];
        qv_reg_coll_ref(db->colls[i]);
    }
    *n = db->ncolls;
    pthread_mutex_unlock(&db->cmu);
    return 0;
}

void qv_coll_info_get(qv_coll *c, qv_coll_info *o)
{
    memset(o, 0, sizeof *o);
    pthread_mutex_lock(&c->rmu);
    o->config = c->cfg; /* the spec changes after requested rebuilds */
    pthread_mutex_unlock(&c->rmu);
    o->count = atomic_load(&c->count);
    o->last_seq = atomic_load(&c->last_seq);
    o->log_seq = atomic_load(&c->log_seq);
    o->attr_cache_bytes = qv_acache_bytes(c->ac);
    pthread_rwlock_rdlock(&c->ilock);
    if (c->index) {
        o->params = *qv_index_get_params(c->index);
        o->trained = qv_index_is_trained(c->index);
        o->indexed = qv_index_count(c->index);
    }
    o->nprobe = o->params.kind == QV_KIND_FLAT ? 0 : c->nprobe;
    o->trained_for = c->trained_for;
    o->covered_seq = c->index_seq;
    o->n_recall = c->n_recall;
    memcpy(o->recall, c->recall, sizeof o->recall);
    pthread_rwlock_unlock(&c->ilock);
    pthread_mutex_lock(&c->rmu);
    o->rebuilding = c->rb != NULL;
    if (c->rb) {
        snprintf(o->phase, sizeof o->phase, "%s", c->phase);
        o->done = c->done;
        o->total = c->total;
    }
    pthread_mutex_unlock(&c->rmu);
}
