/*
 * Record codec (include/quiver/codec.h): encodes and decodes the records kept
 * in LMDB. Pure byte manipulation: no I/O, no allocation beyond qv_buf.
 */
#include <stdlib.h>
#include <string.h>

#include "quiver/codec.h"
#include "quiver/error.h"

/* Little-endian helpers are in codec.h; keys are big-endian. */

static void put_be32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (24 - 8 * i));
}
static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (56 - 8 * i));
}
static uint32_t get_be32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v = (v << 8) | p[i];
    return v;
}
static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
    return v;
}

/* ------------------------------------------------------------------ qv_buf */
int qv_buf_reserve(qv_buf *b, size_t extra)
{
    if (b->len + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra) cap *= 2;
    uint8_t *d = realloc(b->data, cap);
    if (!d) return QV_NOMEM;
    b->data = d;
    b->cap = cap;
    return 0;
}

int qv_buf_append(qv_buf *b, const void *p, size_t n)
{
    int rc = qv_buf_reserve(b, n);
    if (rc) return rc;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

void qv_buf_free(qv_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* ------------------------------------------------------------- attributes */
int qv_attrs_begin(qv_attr_builder *ab, qv_buf *out)
{
    ab->out = out;
    ab->count_at = out->len;
    ab->count = 0;
    uint8_t z[4] = {0};
    return qv_buf_append(out, z, 4);
}

static int attr_head(qv_attr_builder *ab, const char *key, qv_attr_type t)
{
    size_t kl = strlen(key);
    if (kl == 0 || kl > QV_MAX_ATTR_KEY) return QV_INVALID;
    uint8_t h[2];
    qv_put_le16(h, (uint16_t)kl);
    int rc = qv_buf_append(ab->out, h, 2);
    if (!rc) rc = qv_buf_append(ab->out, key, kl);
    uint8_t tb = (uint8_t)t;
    if (!rc) rc = qv_buf_append(ab->out, &tb, 1);
    if (!rc) ab->count++;
    return rc;
}

static int put_str(qv_buf *b, const char *s, size_t len)
{
    uint8_t h[4];
    qv_put_le32(h, (uint32_t)len);
    int rc = qv_buf_append(b, h, 4);
    return rc ? rc : qv_buf_append(b, s, len);
}

int qv_attrs_add_string(qv_attr_builder *ab, const char *key, const char *s, size_t len)
{
    if (len > QV_MAX_ATTR_VALUE) return QV_INVALID;
    int rc = attr_head(ab, key, QV_ATTR_STRING);
    return rc ? rc : put_str(ab->out, s, len);
}

int qv_attrs_add_int(qv_attr_builder *ab, const char *key, int64_t v)
{
    uint8_t p[8];
    qv_put_le64(p, (uint64_t)v);
    int rc = attr_head(ab, key, QV_ATTR_INT);
    return rc ? rc : qv_buf_append(ab->out, p, 8);
}

int qv_attrs_add_double(qv_attr_builder *ab, const char *key, double v)
{
    uint64_t u;
    memcpy(&u, &v, 8);
    uint8_t p[8];
    qv_put_le64(p, u);
    int rc = attr_head(ab, key, QV_ATTR_DOUBLE);
    return rc ? rc : qv_buf_append(ab->out, p, 8);
}

int qv_attrs_add_bool(qv_attr_builder *ab, const char *key, int v)
{
    uint8_t p = v ? 1 : 0;
    int rc = attr_head(ab, key, QV_ATTR_BOOL);
    return rc ? rc : qv_buf_append(ab->out, &p, 1);
}

int qv_attrs_add_list(qv_attr_builder *ab, const char *key, uint32_t n)
{
    uint8_t p[4];
    qv_put_le32(p, n);
    int rc = attr_head(ab, key, QV_ATTR_STRING_LIST);
    return rc ? rc : qv_buf_append(ab->out, p, 4);
}

int qv_attrs_list_item(qv_attr_builder *ab, const char *s, size_t len)
{
    if (len > QV_MAX_ATTR_VALUE) return QV_INVALID;
    return put_str(ab->out, s, len);
}

void qv_attrs_end(qv_attr_builder *ab)
{
    qv_put_le32(ab->out->data + ab->count_at, ab->count);
}

int qv_attr_iter_init(qv_attr_iter *it, const void *blob, size_t len)
{
    it->p = blob;
    it->end = it->p + len;
    it->left = 0;
    if (len == 0) return 0;
    if (len < 4) return QV_CORRUPT;
    it->left = qv_get_le32(it->p);
    it->p += 4;
    return 0;
}

/* Reads a u32-prefixed string at *p (bounded by end). */
static int get_str(const uint8_t **p, const uint8_t *end, const char **s, size_t *len)
{
    if (end - *p < 4) return QV_CORRUPT;
    uint32_t l = qv_get_le32(*p);
    *p += 4;
    if ((size_t)(end - *p) < l) return QV_CORRUPT;
    *s = (const char *)*p;
    *len = l;
    *p += l;
    return 0;
}

int qv_attr_next(qv_attr_iter *it, qv_attr *a)
{
    if (it->left == 0) return 0;
    const uint8_t *p = it->p, *end = it->end;
    if (end - p < 3) return QV_CORRUPT;
    size_t kl = qv_get_le16(p);
    p += 2;
    if ((size_t)(end - p) < kl + 1) return QV_CORRUPT;
    memset(a, 0, sizeof *a);
    a->key = (const char *)p;
    a->key_len = kl;
    p += kl;
    a->type = (qv_attr_type)*p++;
    switch (a->type) {
    case QV_ATTR_STRING:
        if (get_str(&p, end, &a->str, &a->str_len)) return QV_CORRUPT;
        break;
    case QV_ATTR_INT:
    case QV_ATTR_DOUBLE: {
        if (end - p < 8) return QV_CORRUPT;
        uint64_t u = qv_get_le64(p);
        p += 8;
        if (a->type == QV_ATTR_INT) a->i = (int64_t)u;
        else memcpy(&a->d, &u, 8);
        break;
    }
    case QV_ATTR_BOOL:
        if (end - p < 1) return QV_CORRUPT;
        a->b = *p++ != 0;
        break;
    case QV_ATTR_STRING_LIST: {
        if (end - p < 4) return QV_CORRUPT;
        a->n = qv_get_le32(p);
        p += 4;
        a->list_p = p;
        for (uint32_t i = 0; i < a->n; i++) {
            const char *s;
            size_t l;
            if (get_str(&p, end, &s, &l)) return QV_CORRUPT;
        }
        a->list_end = p;
        break;
    }
    default:
        return QV_CORRUPT;
    }
    it->p = p;
    it->left--;
    return 1;
}

int qv_attr_list_next(qv_attr *a, const char **s, size_t *len)
{
    if (a->list_p >= a->list_end) return 0;
    return get_str(&a->list_p, a->list_end, s, len) ? QV_CORRUPT : 1;
}

uint32_t qv_attrs_count(const void *blob, size_t len)
{
    return len >= 4 ? qv_get_le32(blob) : 0;
}

/* ------------------------------------------------------------------ items */
#define ITEM_HDR 16

size_t qv_item_size(uint32_t dim, size_t attrs_len)
{
    return ITEM_HDR + (size_t)dim * 4 + 4 + attrs_len;
}

void qv_item_encode(uint8_t *out, uint64_t seq, uint32_t dim, const float *vec,
                    const void *attrs, size_t attrs_len)
{
    out[0] = QV_REC_VERSION;
    out[1] = 0;
    qv_put_le16(out + 2, 0);
    qv_put_le32(out + 4, dim);
    qv_put_le64(out + 8, seq);
    uint8_t *p = out + ITEM_HDR;
    for (uint32_t i = 0; i < dim; i++, p += 4) {
        uint32_t u;
        memcpy(&u, &vec[i], 4);
        qv_put_le32(p, u);
    }
    qv_put_le32(p, (uint32_t)attrs_len);
    if (attrs_len) memcpy(p + 4, attrs, attrs_len);
}

int qv_item_decode(const void *rec, size_t len, qv_item_view *v)
{
    const uint8_t *p = rec;
    if (len < ITEM_HDR + 4) return QV_CORRUPT;
    if (p[0] != QV_REC_VERSION) return QV_VERSION;
    v->dim = qv_get_le32(p + 4);
    v->seq = qv_get_le64(p + 8);
    if (v->dim == 0 || v->dim > QV_MAX_DIM) return QV_CORRUPT;
    size_t need = ITEM_HDR + (size_t)v->dim * 4 + 4;
    if (len < need) return QV_CORRUPT;
    v->vec = p + ITEM_HDR;
    v->attrs_len = qv_get_le32(p + need - 4);
    if (len != need + v->attrs_len) return QV_CORRUPT;
    v->attrs = p + need;
    return 0;
}

void qv_item_vector(const qv_item_view *v, float *out)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(out, v->vec, (size_t)v->dim * 4);
#else
    for (uint32_t i = 0; i < v->dim; i++) {
        uint32_t u = qv_get_le32(v->vec + 4 * i);
        memcpy(&out[i], &u, 4);
    }
#endif
}

/* ------------------------------------------------------------------- keys */
void qv_key_item(uint8_t out[QV_ITEM_KEY_LEN], uint32_t coll_id, uint64_t item_id)
{
    put_be32(out, coll_id);
    put_be64(out + 4, item_id);
}

void qv_key_item_parse(const uint8_t *k, uint32_t *coll_id, uint64_t *item_id)
{
    if (coll_id) *coll_id = get_be32(k);
    if (item_id) *item_id = get_be64(k + 4);
}

void qv_seqval_encode(uint8_t out[QV_SEQ_VAL_LEN], qv_op op, uint64_t item_id)
{
    out[0] = (uint8_t)op;
    qv_put_le64(out + 1, item_id);
}

int qv_seqval_decode(const void *v, size_t len, qv_op *op, uint64_t *item_id)
{
    const uint8_t *p = v;
    if (len != QV_SEQ_VAL_LEN || (p[0] != QV_OP_UPSERT && p[0] != QV_OP_DELETE))
        return QV_CORRUPT;
    *op = (qv_op)p[0];
    *item_id = qv_get_le64(p + 1);
    return 0;
}

/* ------------------------------------------------------------ collections */
/* u8 version, u8 metric, u8 kind, u8 0, u32 id, u32 dim, u32 nlist, u32 pq_m,
 * u32 pq_nbits, u32 refine, u64 created, 12 bytes reserved (zero). */
void qv_config_encode(uint8_t out[QV_CONFIG_LEN], const qv_coll_config *c)
{
    memset(out, 0, QV_CONFIG_LEN);
    out[0] = QV_REC_VERSION;
    out[1] = (uint8_t)c->metric;
    out[2] = (uint8_t)c->spec.kind;
    qv_put_le32(out + 4, c->id);
    qv_put_le32(out + 8, c->dim);
    qv_put_le32(out + 12, c->spec.nlist);
    qv_put_le32(out + 16, c->spec.pq_m);
    qv_put_le32(out + 20, c->spec.pq_nbits);
    qv_put_le32(out + 24, c->spec.refine);
    qv_put_le64(out + 28, c->created);
}

int qv_config_decode(const void *v, size_t len, qv_coll_config *c)
{
    const uint8_t *p = v;
    if (len < 1) return QV_CORRUPT;
    if (p[0] != QV_REC_VERSION) return QV_VERSION;
    if (len != QV_CONFIG_LEN) return QV_CORRUPT;
    c->metric = (qv_metric)p[1];
    c->spec.kind = (qv_index_kind)p[2];
    c->id = qv_get_le32(p + 4);
    c->dim = qv_get_le32(p + 8);
    c->spec.nlist = qv_get_le32(p + 12);
    c->spec.pq_m = qv_get_le32(p + 16);
    c->spec.pq_nbits = qv_get_le32(p + 20);
    c->spec.refine = qv_get_le32(p + 24);
    c->created = qv_get_le64(p + 28);
    if (c->metric < QV_METRIC_L2 || c->metric > QV_METRIC_COSINE || c->dim == 0 ||
        c->dim > QV_MAX_DIM || c->spec.kind > QV_KIND_IVF_PQ_FS)
        return QV_CORRUPT;
    return 0;
}

size_t qv_stats_encode(uint8_t out[QV_STATS_LEN_MAX], const qv_coll_stats *s)
{
    qv_put_le64(out, s->last_seq);
    qv_put_le64(out + 8, s->count);
    if (!s->log_seq) return QV_STATS_LEN;
    qv_put_le64(out + 16, s->log_seq);
    return QV_STATS_LEN_MAX;
}

int qv_stats_decode(const void *v, size_t len, qv_coll_stats *s)
{
    if (len != QV_STATS_LEN && len != QV_STATS_LEN_MAX) return QV_CORRUPT;
    s->last_seq = qv_get_le64(v);
    s->count = qv_get_le64((const uint8_t *)v + 8);
    s->log_seq = len == QV_STATS_LEN_MAX ? qv_get_le64((const uint8_t *)v + 16) : 0;
    return 0;
}

int qv_name_check(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > QV_MAX_NAME || name[0] == '.') return QV_INVALID;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return QV_INVALID;
    }
    return 0;
}
