/*
 * Record codec: the byte layouts Quiver keeps in LMDB. Item records (vector +
 * attributes + sequence number), attribute blobs, collection configs and
 * sequence-log entries. Pure functions on byte buffers; no I/O, no LMDB.
 *
 * Caveats:
 *  - Every record starts with a format version byte, checked on decode:
 *    bump QV_REC_VERSION when a layout changes incompatibly.
 *  - Decoded views (qv_item_view, qv_attr_iter) point into the source buffer
 *    and live exactly as long as it does (for LMDB: until the txn ends).
 *  - Multi-byte integers are little-endian; keys are big-endian so that LMDB's
 *    byte order sorts them numerically.
 */
#ifndef QUIVER_CODEC_H
#define QUIVER_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "quiver/types.h"

/* Bump when any record layout below changes incompatibly. */
#define QV_REC_VERSION 1

/* Little-endian fields of on-disk formats, whatever the host's byte order. */
static inline void qv_put_le16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void qv_put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline void qv_put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t qv_get_le16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t qv_get_le32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static inline uint64_t qv_get_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* Limits enforced by validation (storage and server). */
#define QV_MAX_DIM 4096
#define QV_MAX_NAME 128
#define QV_MAX_ATTR_KEY 256
#define QV_MAX_ATTR_VALUE (64 * 1024)
#define QV_MAX_ID INT64_MAX

/* ------------------------------------------------------------- attributes */
typedef enum {
    QV_ATTR_STRING = 1,
    QV_ATTR_INT = 2,
    QV_ATTR_DOUBLE = 3,
    QV_ATTR_BOOL = 4,
    QV_ATTR_STRING_LIST = 5,
} qv_attr_type;

/* A growable byte buffer. Zero-initialise; free data with free(). */
typedef struct qv_buf {
    uint8_t *data;
    size_t len, cap;
} qv_buf;
int qv_buf_reserve(qv_buf *b, size_t extra);
int qv_buf_append(qv_buf *b, const void *p, size_t n);
void qv_buf_free(qv_buf *b);

/* Attribute blob builder: begin, add each attribute, end. Layout:
 * u32 count, then per attribute u16 keylen, key, u8 type, payload (string:
 * u32 len + bytes; int: i64; double: f64; bool: u8; list: u32 n + strings). */
typedef struct qv_attr_builder {
    qv_buf *out;
    size_t count_at;
    uint32_t count;
} qv_attr_builder;
int qv_attrs_begin(qv_attr_builder *ab, qv_buf *out);
int qv_attrs_add_string(qv_attr_builder *ab, const char *key, const char *s, size_t len);
int qv_attrs_add_int(qv_attr_builder *ab, const char *key, int64_t v);
int qv_attrs_add_double(qv_attr_builder *ab, const char *key, double v);
int qv_attrs_add_bool(qv_attr_builder *ab, const char *key, int v);
/* A string list: begin with the number of strings, then add each. */
int qv_attrs_add_list(qv_attr_builder *ab, const char *key, uint32_t n);
int qv_attrs_list_item(qv_attr_builder *ab, const char *s, size_t len);
void qv_attrs_end(qv_attr_builder *ab);

/* One decoded attribute; pointers into the blob, strings NOT NUL-terminated. */
typedef struct qv_attr {
    const char *key;
    size_t key_len;
    qv_attr_type type;
    const char *str; /* QV_ATTR_STRING */
    size_t str_len;
    int64_t i;       /* QV_ATTR_INT */
    double d;        /* QV_ATTR_DOUBLE */
    int b;           /* QV_ATTR_BOOL */
    uint32_t n;      /* QV_ATTR_STRING_LIST: number of strings, read with
                        qv_attr_list_next */
    const uint8_t *list_p, *list_end;
} qv_attr;

typedef struct qv_attr_iter {
    const uint8_t *p, *end;
    uint32_t left;
} qv_attr_iter;

/* Start iterating blob (len bytes; len 0 = no attributes). Returns 0 or QV_CORRUPT. */
int qv_attr_iter_init(qv_attr_iter *it, const void *blob, size_t len);
/* Next attribute into a: 1 = got one, 0 = end, QV_CORRUPT. */
int qv_attr_next(qv_attr_iter *it, qv_attr *a);
/* Next string of a string-list attribute: 1 = got one, 0 = end, QV_CORRUPT. */
int qv_attr_list_next(qv_attr *a, const char **s, size_t *len);
/* Number of attributes in a blob (0 for empty or corrupt). */
uint32_t qv_attrs_count(const void *blob, size_t len);

/* ---------------------------------------------------------------- items */
/* Item record: u8 version, u8 flags, u16 0, u32 dim, u64 seq, dim floats,
 * u32 attr_len, attr blob. */
typedef struct qv_item_view {
    uint64_t seq;
    uint32_t dim;
    const uint8_t *vec; /* dim floats, possibly unaligned: use qv_item_vector */
    const uint8_t *attrs;
    size_t attrs_len;
} qv_item_view;

size_t qv_item_size(uint32_t dim, size_t attrs_len);
/* Encode into out (qv_item_size bytes). */
void qv_item_encode(uint8_t *out, uint64_t seq, uint32_t dim, const float *vec,
                    const void *attrs, size_t attrs_len);
/* Decode rec (len bytes). Returns 0, QV_CORRUPT, QV_VERSION. */
int qv_item_decode(const void *rec, size_t len, qv_item_view *v);
/* Copy the vector out (dim floats). */
void qv_item_vector(const qv_item_view *v, float *out);

/* ------------------------------------------------------------ keys */
/* Item key: u32 collection id, u64 item id, both big-endian (12 bytes). */
#define QV_ITEM_KEY_LEN 12
void qv_key_item(uint8_t out[QV_ITEM_KEY_LEN], uint32_t coll_id, uint64_t item_id);
void qv_key_item_parse(const uint8_t *k, uint32_t *coll_id, uint64_t *item_id);
/* Sequence-log key: u32 collection id, u64 seq, big-endian (12 bytes). */
#define QV_SEQ_KEY_LEN 12
#define qv_key_seq qv_key_item
#define qv_key_seq_parse qv_key_item_parse

/* Sequence-log value: u8 op, u64 item id. */
typedef enum { QV_OP_UPSERT = 1, QV_OP_DELETE = 2 } qv_op;
#define QV_SEQ_VAL_LEN 9
void qv_seqval_encode(uint8_t out[QV_SEQ_VAL_LEN], qv_op op, uint64_t item_id);
int qv_seqval_decode(const void *v, size_t len, qv_op *op, uint64_t *item_id);

/* ------------------------------------------------------- collections */
/* Persistent collection config. */
typedef struct qv_coll_config {
    char name[QV_MAX_NAME + 1];
    uint32_t id;      /* internal, never reused */
    uint32_t dim;
    qv_metric metric;
    qv_index_params spec; /* as requested (kind may be QV_KIND_AUTO) */
    uint64_t created; /* unix seconds */
} qv_coll_config;

#define QV_CONFIG_LEN 48
void qv_config_encode(uint8_t out[QV_CONFIG_LEN], const qv_coll_config *c);
/* name is taken from the key, not the value. Returns 0, QV_CORRUPT, QV_VERSION. */
int qv_config_decode(const void *v, size_t len, qv_coll_config *c);

/* Collection counters: u64 last_seq, u64 count (16 bytes), then u64 log_seq
 * when it is not 0 (24 bytes: a cluster replica's; a single node's record
 * stays the 16 bytes every earlier version reads). */
typedef struct qv_coll_stats {
    uint64_t last_seq; /* last sequence number handed out */
    uint64_t count;    /* live items */
    uint64_t log_seq;  /* the cluster log's last sequence applied (0 = none) */
} qv_coll_stats;
#define QV_STATS_LEN 16
#define QV_STATS_LEN_MAX 24
/* Returns the encoded length (QV_STATS_LEN or QV_STATS_LEN_MAX). */
size_t qv_stats_encode(uint8_t out[QV_STATS_LEN_MAX], const qv_coll_stats *s);
int qv_stats_decode(const void *v, size_t len, qv_coll_stats *s);

/* Validate a collection name: [A-Za-z0-9_.-]{1,128}, not starting with '.'.
 * Returns 0 or QV_INVALID. */
int qv_name_check(const char *name);

#endif
