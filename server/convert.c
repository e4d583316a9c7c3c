/*
 * Translation between protobuf messages and the engine's plain C structs:
 * status codes, validation messages naming field and value, attribute maps,
 * collection/index descriptions, and the per-call arena replies live in.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quiver/error.h"
#include "quiver/token.h"
#include "services.h"

qv_coll *srv_find_coll(const char *name, grpc_status_code *code, char *err, size_t errlen)
{
    qv_coll *c;
    if (!name || !name[0]) {
        *code = GRPC_STATUS_INVALID_ARGUMENT;
        snprintf(err, errlen, "collection is empty");
        return NULL;
    }
    if (!auth_may_use(name, err, errlen)) { /* before the lookup: no hint it exists */
        *code = GRPC_STATUS_PERMISSION_DENIED;
        return NULL;
    }
    if (qv_db_coll_get(g_db, name, &c)) {
        *code = GRPC_STATUS_NOT_FOUND;
        snprintf(err, errlen, "collection \"%.200s\" does not exist", name);
        return NULL;
    }
    return c;
}

grpc_status_code srv_status_of(int rc)
{
    switch (rc) {
    case 0: return GRPC_STATUS_OK;
    case QV_NOTFOUND: return GRPC_STATUS_NOT_FOUND;
    case QV_EXISTS: return GRPC_STATUS_ALREADY_EXISTS;
    case QV_INVALID: return GRPC_STATUS_INVALID_ARGUMENT;
    case QV_FULL:
    case QV_LIMIT:
    case QV_OVERLOAD:
    case QV_NOMEM: return GRPC_STATUS_RESOURCE_EXHAUSTED;
    case QV_BUSY: return GRPC_STATUS_FAILED_PRECONDITION;
    case QV_CANCELLED: return GRPC_STATUS_CANCELLED;
    case QV_SHUTDOWN: return GRPC_STATUS_UNAVAILABLE;
    default: return GRPC_STATUS_INTERNAL;
    }
}

/* ------------------------------------------------------------- validation */
int srv_check_vector(const float *v, size_t n, uint32_t dim, const char *coll, const char *list,
                     size_t index, char *err, size_t errlen)
{
    if (n != dim) {
        snprintf(err, errlen, "%s[%zu].vector has %zu floats, collection \"%s\" has dim %u", list,
                 index, n, coll, dim);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i])) {
            snprintf(err, errlen, "%s[%zu].vector[%zu] is %s: vectors must be finite", list, index, i,
                     isnan(v[i]) ? "NaN" : v[i] > 0 ? "Inf" : "-Inf");
            return -1;
        }
    return 0;
}

size_t g_max_attr_bytes = 64 * 1024;
unsigned g_max_attr_keys = 256;

static const char *entry_key_of(const Quiver__V1__Item__AttributesEntry *e)
{
    return e->key ? e->key : "";
}

/* Order of entry indices by key, then by position (so the last of equal keys
 * comes last); ctx: the entries. */
static int cmp_entry(const void *a, const void *b, void *ctx)
{
    Quiver__V1__Item__AttributesEntry **e = ctx;
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    int c = strcmp(entry_key_of(e[x]), entry_key_of(e[y]));
    return c ? c : (x > y) - (x < y);
}

int srv_encode_attrs(Quiver__V1__Item__AttributesEntry **e, size_t n, qv_buf *out, const char *field,
                 char *err, size_t errlen)
{
    /* A map may repeat a key on the wire: the last occurrence wins (proto3's
     * rule), stored once. Keep, in wire order, the entries no later one
     * overrides. */
    size_t *ord = malloc((n ? n : 1) * sizeof *ord);
    char *keep = calloc(n ? n : 1, 1);
    if (!ord || !keep) {
        free(ord);
        free(keep);
        goto oom_early;
    }
    for (size_t i = 0; i < n; i++) ord[i] = i;
    qsort_r(ord, n, sizeof *ord, cmp_entry, e);
    size_t nkeys = 0;
    for (size_t i = 0; i < n; i++)
        if (i + 1 == n || strcmp(entry_key_of(e[ord[i]]), entry_key_of(e[ord[i + 1]])) != 0) {
            keep[ord[i]] = 1;
            nkeys++;
        }
    free(ord);
    if (nkeys > g_max_attr_keys) {
        free(keep);
        snprintf(err, errlen, "%s has %zu keys, over the limit of %u per item", field, nkeys,
                 g_max_attr_keys);
        return -1;
    }
    size_t start = out->len;
    qv_attr_builder ab;
    if (qv_attrs_begin(&ab, out)) goto oom;
    for (size_t i = 0; i < n; i++) {
        if (!keep[i]) continue;
        const char *k = entry_key_of(e[i]);
        size_t kl = strlen(k);
        if (kl == 0 || kl > QV_MAX_ATTR_KEY) {
            snprintf(err, errlen, "%s key \"%.64s\" must be 1..%d bytes", field, k, QV_MAX_ATTR_KEY);
            goto fail;
        }
        const Quiver__V1__Value *v = e[i]->value;
        int rc;
        switch (v ? v->kind_case : QUIVER__V1__VALUE__KIND__NOT_SET) {
        case QUIVER__V1__VALUE__KIND_STRING_VALUE:
            if (strlen(v->string_value) > QV_MAX_ATTR_VALUE) goto too_long;
            rc = qv_attrs_add_string(&ab, k, v->string_value, strlen(v->string_value));
            break;
        case QUIVER__V1__VALUE__KIND_INT_VALUE: rc = qv_attrs_add_int(&ab, k, v->int_value); break;
        case QUIVER__V1__VALUE__KIND_DOUBLE_VALUE:
            rc = qv_attrs_add_double(&ab, k, v->double_value);
            break;
        case QUIVER__V1__VALUE__KIND_BOOL_VALUE: rc = qv_attrs_add_bool(&ab, k, v->bool_value); break;
        case QUIVER__V1__VALUE__KIND_STRING_LIST: {
            size_t nv = v->string_list ? v->string_list->n_values : 0;
            rc = qv_attrs_add_list(&ab, k, (uint32_t)nv);
            for (size_t j = 0; !rc && j < nv; j++) {
                const char *s = v->string_list->values[j];
                if (strlen(s) > QV_MAX_ATTR_VALUE) goto too_long;
                rc = qv_attrs_list_item(&ab, s, strlen(s));
            }
            break;
        }
        default:
            snprintf(err, errlen, "%s[\"%.64s\"] has no value set", field, k);
            goto fail;
        }
        if (rc) goto oom;
        /* checked as it grows: a hostile item never costs more than the limit */
        if (out->len - start > g_max_attr_bytes) {
            snprintf(err, errlen, "%s take over %zu bytes (at key \"%.64s\"), the limit per item",
                     field, g_max_attr_bytes, k);
            goto fail;
        }
        continue;
    too_long:
        snprintf(err, errlen, "%s[\"%.64s\"] is longer than %d bytes", field, k, QV_MAX_ATTR_VALUE);
        goto fail;
    }
    qv_attrs_end(&ab);
    free(keep);
    if (out->len - start > g_max_attr_bytes) {
        snprintf(err, errlen, "%s take %zu bytes, over the limit of %zu per item", field,
                 out->len - start, g_max_attr_bytes);
        return -1;
    }
    return 0;
fail:
    free(keep);
    return -1;
oom:
    free(keep);
oom_early:
    snprintf(err, errlen, "%s: out of memory", field);
    return -1;
}

/* Item's and Hit's AttributesEntry share this layout. */
typedef struct entry {
    ProtobufCMessage base;
    char *key;
    Quiver__V1__Value *value;
} entry;

void **srv_decode_attrs(qv_arena *a, const ProtobufCMessageDescriptor *ed, const uint8_t *blob,
                    size_t len, size_t *n)
{
    *n = 0;
    uint32_t cnt = qv_attrs_count(blob, len);
    if (cnt == 0) return NULL;
    entry **out = qv_arena_alloc(a, cnt * sizeof *out);
    if (!out) return NULL;
    qv_attr_iter it;
    qv_attr at;
    if (qv_attr_iter_init(&it, blob, len)) return NULL;
    while (*n < cnt && qv_attr_next(&it, &at) == 1) {
        entry *e = qv_arena_alloc(a, sizeof *e);
        Quiver__V1__Value *v = qv_arena_alloc(a, sizeof *v);
        if (!e || !v) return NULL;
        protobuf_c_message_init(ed, e);
        quiver__v1__value__init(v);
        e->key = qv_arena_strndup(a, at.key, at.key_len);
        e->value = v;
        switch (at.type) {
        case QV_ATTR_STRING:
            v->kind_case = QUIVER__V1__VALUE__KIND_STRING_VALUE;
            v->string_value = qv_arena_strndup(a, at.str, at.str_len);
            break;
        case QV_ATTR_INT:
            v->kind_case = QUIVER__V1__VALUE__KIND_INT_VALUE;
            v->int_value = at.i;
            break;
        case QV_ATTR_DOUBLE:
            v->kind_case = QUIVER__V1__VALUE__KIND_DOUBLE_VALUE;
            v->double_value = at.d;
            break;
        case QV_ATTR_BOOL:
            v->kind_case = QUIVER__V1__VALUE__KIND_BOOL_VALUE;
            v->bool_value = at.b;
            break;
        case QV_ATTR_STRING_LIST: {
            Quiver__V1__StringList *sl = qv_arena_alloc(a, sizeof *sl);
            if (!sl) return NULL;
            quiver__v1__string_list__init(sl);
            sl->values = qv_arena_alloc(a, (at.n ? at.n : 1) * sizeof *sl->values);
            const char *s;
            size_t l;
            while (sl->n_values < at.n && qv_attr_list_next(&at, &s, &l) == 1)
                sl->values[sl->n_values++] = qv_arena_strndup(a, s, l);
            v->kind_case = QUIVER__V1__VALUE__KIND_STRING_LIST;
            v->string_list = sl;
            break;
        }
        }
        out[(*n)++] = e;
    }
    return (void **)out;
}

/* ----------------------------------------------------------- descriptions */
int srv_parse_index_spec(const Quiver__V1__IndexSpec *s, uint32_t dim, qv_index_params *out,
                     char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!s) return 0;
    const char *k = s->kind && s->kind[0] ? s->kind : "auto";
    int kind = qv_index_kind_parse(k);
    if (kind < 0) {
        snprintf(err, errlen,
                 "index.kind \"%.64s\" is unknown: use auto, flat, ivf_flat, ivf_pq, ivf_pq_fs "
                 "or ivf_sq8", k);
        return -1;
    }
    out->kind = (qv_index_kind)kind;
    out->nlist = s->nlist;
    out->pq_m = s->pq_m;
    out->pq_nbits = s->pq_nbits;
    out->refine = s->refine;
    if (out->nlist > 1048576) {
        snprintf(err, errlen, "index.nlist %u is over the limit 1048576", out->nlist);
        return -1;
    }
    if (out->refine > 100) {
        snprintf(err, errlen, "index.refine %u is over the limit 100", out->refine);
        return -1;
    }
    if (out->kind == QV_KIND_IVF_PQ || out->kind == QV_KIND_IVF_PQ_FS) {
        if (out->pq_m && dim % out->pq_m != 0) {
            snprintf(err, errlen, "index.pq_m %u does not divide dim %u", out->pq_m, dim);
            return -1;
        }
        if (out->pq_nbits > 8) {
            snprintf(err, errlen, "index.pq_nbits %u is over 8 (FAISS's limit)", out->pq_nbits);
            return -1;
        }
        if (out->kind == QV_KIND_IVF_PQ_FS && out->pq_nbits && out->pq_nbits != 4) {
            snprintf(err, errlen, "index.pq_nbits %u: kind ivf_pq_fs has 4-bit codes only",
                     out->pq_nbits);
            return -1;
        }
    } else if (out->pq_m || out->pq_nbits) {
        snprintf(err, errlen, "index.pq_m/pq_nbits apply to kinds ivf_pq and ivf_pq_fs, not %s",
                 k);
        return -1;
    }
    if (out->kind == QV_KIND_FLAT && (out->nlist || out->refine)) {
        snprintf(err, errlen, "index.nlist/refine do not apply to kind flat");
        return -1;
    }
    return 0;
}

static const char *kind_name_or_auto(qv_index_kind k)
{
    return k == QV_KIND_AUTO ? "auto" : qv_index_kind_name(k);
}

void srv_fill_index_info(qv_arena *a, const qv_coll_info *in, Quiver__V1__IndexInfo *ii)
{
    quiver__v1__index_info__init(ii);
    ii->kind = (char *)kind_name_or_auto(in->params.kind);
    ii->trained = in->trained;
    ii->count = in->indexed;
    ii->nlist = in->params.nlist;
    ii->default_nprobe = in->nprobe;
    ii->trained_for = in->trained_for;
    ii->rebuilding = in->rebuilding;
    ii->phase = qv_arena_strndup(a, in->phase, strlen(in->phase));
    ii->covered_seq = in->covered_seq;
    ii->pq_m = in->params.pq_m;
    ii->pq_nbits = in->params.pq_nbits;
    ii->refine = in->params.refine;
    ii->rebuild_done = in->done;
    ii->rebuild_total = in->total;
    Quiver__V1__IndexSpec *spec = qv_arena_alloc(a, sizeof *spec);
    if (spec) {
        quiver__v1__index_spec__init(spec);
        spec->kind = (char *)kind_name_or_auto(in->config.spec.kind);
        spec->nlist = in->config.spec.nlist;
        spec->pq_m = in->config.spec.pq_m;
        spec->pq_nbits = in->config.spec.pq_nbits;
        spec->refine = in->config.spec.refine;
        ii->spec = spec;
    }
    if (in->n_recall) {
        Quiver__V1__RecallPoint *pts = qv_arena_alloc(a, in->n_recall * sizeof *pts);
        ii->recall_table = qv_arena_alloc(a, in->n_recall * sizeof *ii->recall_table);
        if (pts && ii->recall_table) {
            for (size_t i = 0; i < in->n_recall; i++) {
                quiver__v1__recall_point__init(&pts[i]);
                pts[i].recall = in->recall[i].recall;
                pts[i].nprobe = in->recall[i].nprobe;
                ii->recall_table[i] = &pts[i];
            }
            ii->n_recall_table = in->n_recall;
        }
    }
}

void srv_fill_collection_info(qv_arena *a, qv_coll *c, Quiver__V1__CollectionInfo *ci,
                          Quiver__V1__IndexInfo *ii)
{
    qv_coll_info in;
    qv_coll_info_get(c, &in);
    quiver__v1__collection_info__init(ci);
    ci->name = qv_arena_strndup(a, in.config.name, strlen(in.config.name));
    ci->dim = in.config.dim;
    ci->metric = (Quiver__V1__Metric)in.config.metric;
    ci->count = in.count;
    ci->last_seq = in.last_seq;
    ci->shards = 1; /* a single node: one shard, one copy */
    ci->replicas = 1;
    srv_fill_index_info(a, &in, ii);
    ci->index = ii;
}

size_t srv_write_token(const char *coll, uint64_t seq, uint8_t out[SRV_TOKEN_LEN])
{
    qv_token_part p = {0, seq};
    return qv_token_encode(coll, &p, 1, out);
}

grpc_status_code srv_check_after_token(qv_coll *c, const ProtobufCBinaryData *tok, const char *field,
                                       char *err, size_t errlen)
{
    if (!tok->len) return GRPC_STATUS_OK;
    const char *name = qv_coll_config_of(c)->name;
    qv_token_part parts[4];
    char why[200];
    int n = qv_token_decode(name, tok->data, tok->len, parts, 4, why, sizeof why);
    if (n < 0) {
        snprintf(err, errlen, "%s %s", field, why);
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    qv_coll_info in;
    qv_coll_info_get(c, &in);
    for (int i = 0; i < n; i++) {
        if (parts[i].shard != 0) {
            snprintf(err, errlen, "%s names shard %u, but \"%s\" has 1 shard on this single node",
                     field, parts[i].shard, name);
            return GRPC_STATUS_INVALID_ARGUMENT;
        }
        /* a single node replies to a write only once it is visible, so a
         * token from it is never ahead, unless the collection was dropped
         * and created again since */
        if (parts[i].seq > in.last_seq) {
            snprintf(err, errlen,
                     "%s names write %llu of \"%s\", which holds writes up to %llu only (was it "
                     "dropped and created again?)",
                     field, (unsigned long long)parts[i].seq, name,
                     (unsigned long long)in.last_seq);
            return GRPC_STATUS_FAILED_PRECONDITION;
        }
    }
    return GRPC_STATUS_OK;
}
