/*
 * formats: the readers of the vector files of `quiver import` (see
 * formats.h for the formats, the row rules and the caveats; the writers of
 * `quiver export` are in formats_write.c). Plain stdio; JSON through
 * jansson. Nothing here talks to a server.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats.h"

/* The server's attribute limits (include/quiver/codec.h). */
#define MAX_ATTR_KEY 256
#define MAX_ATTR_VALUE (64 * 1024)
#define MAX_ATTR_KEYS 256
#define MAX_ID INT64_MAX

#define IO_BUFFER (1 << 20)

struct qvf_reader {
    qvf_format fmt;
    char *path;
    FILE *f;
    char *iobuf;
    uint64_t size;
    uint64_t rec;  /* records read or skipped */
    uint64_t line; /* text: lines read */
    size_t dim, expect;
    float *vec;
    size_t vcap;
    unsigned char *raw;
    size_t rawcap;
    int ended;
    /* npy */
    uint64_t npy_rows;
    size_t elsize; /* 4 or 2 */
    uint64_t data_off;
    /* text */
    char *lbuf;
    size_t lcap;
    int first_seen; /* csv: the first non-blank line has been looked at */
    json_t *doc;    /* jsonl: the current row's document */
};

/* ------------------------------------------------------------- formats */
qvf_format qvf_format_by_name(const char *s)
{
    if (!strcasecmp(s, "fvecs")) return QVF_FVECS;
    if (!strcasecmp(s, "bvecs")) return QVF_BVECS;
    if (!strcasecmp(s, "npy")) return QVF_NPY;
    if (!strcasecmp(s, "jsonl") || !strcasecmp(s, "json") || !strcasecmp(s, "ndjson"))
        return QVF_JSONL;
    if (!strcasecmp(s, "csv")) return QVF_CSV;
    return QVF_NONE;
}

qvf_format qvf_format_by_path(const char *path)
{
    const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
    if (!dot || (slash && dot < slash)) return QVF_NONE;
    if (!strcasecmp(dot, ".json")) return QVF_NONE; /* one document, not lines */
    return qvf_format_by_name(dot + 1);
}

const char *qvf_format_name(qvf_format f)
{
    switch (f) {
    case QVF_FVECS: return "fvecs";
    case QVF_BVECS: return "bvecs";
    case QVF_NPY: return "npy";
    case QVF_JSONL: return "jsonl";
    case QVF_CSV: return "csv";
    default: return "?";
    }
}

/* ------------------------------------------------------------- helpers */
static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 0;
    size_t n = *cap ? *cap : 64;
    while (n < need) n *= 2;
    void *q = realloc(*p, n * elem);
    if (!q) return -1;
    *p = q;
    *cap = n;
    return 0;
}

/* IEEE half -> float, exactly (subnormals, infinities and NaN included). */
static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Reason for the first non-finite value of v, or 0 when all are finite. */
static int check_finite(const float *v, size_t n, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i])) {
            snprintf(err, errlen, "vector[%zu] is %s", i,
                     isnan(v[i]) ? "NaN" : v[i] > 0 ? "+Inf" : "-Inf");
            return -1;
        }
    return 0;
}

static int vec_room(qvf_reader *r, size_t n)
{
    return grow((void **)&r->vec, &r->vcap, n ? n : 1, sizeof *r->vec);
}

/* ------------------------------------------------------------ fvecs/bvecs */
static int texmex_open(qvf_reader *r, char *err, size_t errlen)
{
    int32_t d;
    size_t n = fread(&d, 1, 4, r->f);
    if (n == 4) {
        if (d <= 0 || d > QVF_MAX_DIM) {
            snprintf(err, errlen, "%s: the first row's dimension header is %d: not a %s file", r->path,
                     d, qvf_format_name(r->fmt));
            return QVF_FATAL;
        }
        r->dim = (size_t)d;
    }
    rewind(r->f);
    return 0;
}

static int texmex_next(qvf_reader *r, qvf_row *row, char *err, size_t errlen)
{
    if (r->ended) return QVF_EOF;
    int32_t d;
    row->index = r->rec;
    row->row = r->rec + 1;
    size_t n = fread(&d, 1, 4, r->f);
    if (n == 0) {
        if (ferror(r->f)) goto io;
        r->ended = 1;
        return QVF_EOF;
    }
    r->rec++;
    if (n < 4) {
        r->ended = 1;
        snprintf(err, errlen, "truncated: the file ends %zu bytes into the row's 4-byte dimension", n);
        return QVF_BAD;
    }
    if (d <= 0 || d > QVF_MAX_DIM) {
        r->ended = 1;
        snprintf(err, errlen, "dimension header %d: the file is corrupt from here", d);
        return QVF_FATAL;
    }
    size_t el = r->fmt == QVF_BVECS ? 1 : 4, need = (size_t)d * el;
    if (grow((void **)&r->raw, &r->rawcap, need, 1) || vec_room(r, (size_t)d)) {
        snprintf(err, errlen, "out of memory");
        return QVF_FATAL;
    }
    size_t got = fread(r->raw, 1, need, r->f);
    if (got < need) {
        if (ferror(r->f)) goto io;
        r->ended = 1;
        snprintf(err, errlen, "truncated: the row has %zu of its %zu bytes", got, need);
        return QVF_BAD;
    }
    if ((size_t)d != r->expect) {
        snprintf(err, errlen, "the row has dimension %d, expected %zu", d, r->expect);
        return QVF_BAD;
    }
    if (el == 1)
        for (size_t i = 0; i < (size_t)d; i++) r->vec[i] = (float)r->raw[i];
    else memcpy(r->vec, r->raw, need);
    if (el == 4 && check_finite(r->vec, (size_t)d, err, errlen)) return QVF_BAD;
    row->vec = r->vec;
    row->dim = (size_t)d;
    return QVF_ROW;
io:
    snprintf(err, errlen, "read error: %s", strerror(errno));
    return QVF_FATAL;
}

static int64_t texmex_skip(qvf_reader *r, uint64_t n, char *err, size_t errlen)
{
    uint64_t k = 0;
    size_t el = r->fmt == QVF_BVECS ? 1 : 4;
    while (k < n && !r->ended) {
        int32_t d;
        size_t got = fread(&d, 1, 4, r->f);
        if (got == 0) {
            r->ended = 1;
            break;
        }
        k++;
        r->rec++;
        off_t pos = ftello(r->f);
        if (got < 4 || d <= 0 || d > QVF_MAX_DIM || (uint64_t)pos + (uint64_t)d * el > r->size) {
            if (got == 4 && (d <= 0 || d > QVF_MAX_DIM)) {
                snprintf(err, errlen, "row %" PRIu64 ": dimension header %d: the file is corrupt", r->rec, d);
                return QVF_FATAL;
            }
            r->ended = 1; /* a truncated last row */
            break;
        }
        if (fseeko(r->f, (off_t)((uint64_t)d * el), SEEK_CUR)) {
            snprintf(err, errlen, "seek: %s", strerror(errno));
            return QVF_FATAL;
        }
    }
    return (int64_t)k;
}

/* ------------------------------------------------------------------ npy */
/* The value of 'key' in an npy header dict (a Python literal), copied into
 * out up to the next top-level ',' or '}'; -1 if absent. */
static int npy_field(const char *hdr, const char *key, char *out, size_t outlen)
{
    char pat1[64], pat2[64];
    snprintf(pat1, sizeof pat1, "'%s'", key);
    snprintf(pat2, sizeof pat2, "\"%s\"", key);
    const char *p = strstr(hdr, pat1);
    if (!p) p = strstr(hdr, pat2);
    if (!p) return -1;
    p += strlen(pat1);
    while (*p == ' ') p++;
    if (*p++ != ':') return -1;
    while (*p == ' ') p++;
    size_t n = 0;
    int depth = 0;
    char quote = 0;
    for (; *p; p++) {
        if (quote) {
            if (*p == quote) quote = 0;
        } else if (*p == '\'' || *p == '"') {
            quote = *p;
        } else if (*p == '(' || *p == '[') {
            depth++;
        } else if (*p == ')' || *p == ']') {
            depth--;
        } else if ((*p == ',' || *p == '}') && depth == 0) {
            break;
        }
        if (n + 1 < outlen) out[n++] = *p;
    }
    while (n && out[n - 1] == ' ') n--;
    out[n] = '\0';
    return 0;
}

static int npy_open(qvf_reader *r, char *err, size_t errlen)
{
    unsigned char pre[10];
    if (fread(pre, 1, 10, r->f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        snprintf(err, errlen, "%s: not an npy file (no \\x93NUMPY magic)", r->path);
        return QVF_FATAL;
    }
    unsigned major = pre[6];
    uint32_t hlen;
    size_t pre_len;
    if (major == 1) {
        hlen = (uint32_t)pre[8] | (uint32_t)pre[9] << 8;
        pre_len = 10;
    } else if (major == 2 || major == 3) {
        unsigned char b[2];
        if (fread(b, 1, 2, r->f) != 2) goto short_header;
        hlen = (uint32_t)pre[8] | (uint32_t)pre[9] << 8 | (uint32_t)b[0] << 16 | (uint32_t)b[1] << 24;
        pre_len = 12;
    } else {
        snprintf(err, errlen, "%s: npy format version %u.%u is not supported (1.0, 2.0, 3.0 are)",
                 r->path, major, pre[7]);
        return QVF_FATAL;
    }
    if (hlen > (1u << 20)) {
        snprintf(err, errlen, "%s: npy header of %u bytes: corrupt file", r->path, hlen);
        return QVF_FATAL;
    }
    char *hdr = malloc(hlen + 1);
    if (!hdr) {
        snprintf(err, errlen, "out of memory");
        return QVF_FATAL;
    }
    if (fread(hdr, 1, hlen, r->f) != hlen) {
        free(hdr);
        goto short_header;
    }
    hdr[hlen] = '\0';
    r->data_off = pre_len + hlen;
    char descr[128], fortran[32], shape[256];
    int rc = QVF_FATAL;
    if (npy_field(hdr, "descr", descr, sizeof descr) || npy_field(hdr, "fortran_order", fortran, sizeof fortran) ||
        npy_field(hdr, "shape", shape, sizeof shape)) {
        snprintf(err, errlen, "%s: npy header lacks descr, fortran_order or shape: %.200s", r->path, hdr);
        goto out;
    }
    if (!strcmp(descr, "'<f4'") || !strcmp(descr, "'=f4'") || !strcmp(descr, "\"<f4\"")) {
        r->elsize = 4;
    } else if (!strcmp(descr, "'<f2'") || !strcmp(descr, "'=f2'") || !strcmp(descr, "\"<f2\"")) {
        r->elsize = 2;
    } else {
        const char *why = strstr(descr, ">f") ? " (big-endian)" : "";
        snprintf(err, errlen,
                 "%s: npy dtype %s%s is not supported: only float32 ('<f4') and float16 ('<f2'); "
                 "convert with numpy's astype('<f4')",
                 r->path, descr, why);
        goto out;
    }
    if (strcmp(fortran, "False") != 0) {
        snprintf(err, errlen,
                 "%s: npy array is in Fortran order (fortran_order %s): only C order is supported; "
                 "save numpy.ascontiguousarray(a)",
                 r->path, fortran);
        goto out;
    }
    /* shape: "(N, D)" */
    uint64_t dims[8];
    int nd = 0;
    const char *p = shape;
    if (*p++ != '(') goto bad_shape;
    for (;;) {
        while (*p == ' ') p++;
        if (*p == ')') break;
        if (!isdigit((unsigned char)*p) || nd == 8) goto bad_shape;
        errno = 0;
        char *end;
        dims[nd++] = strtoull(p, &end, 10);
        if (errno) goto bad_shape;
        p = end;
        while (*p == ' ') p++;
        if (*p == ',') p++;
    }
    if (nd != 2) {
        snprintf(err, errlen, "%s: npy array has %d dimension%s (shape %s): a 2-D array (rows, dim) "
                 "is needed", r->path, nd, nd == 1 ? "" : "s", shape);
        goto out;
    }
    if (dims[1] == 0 || dims[1] > QVF_MAX_DIM) {
        snprintf(err, errlen, "%s: npy shape %s: the dimension must be 1..%d", r->path, shape, QVF_MAX_DIM);
        goto out;
    }
    r->npy_rows = dims[0];
    r->dim = (size_t)dims[1];
    rc = 0;
    goto out;
bad_shape:
    snprintf(err, errlen, "%s: npy shape %s does not parse", r->path, shape);
out:
    free(hdr);
    return rc;
short_header:
    snprintf(err, errlen, "%s: npy header is cut short", r->path);
    return QVF_FATAL;
}

static int npy_next(qvf_reader *r, qvf_row *row, char *err, size_t errlen)
{
    if (r->ended || r->rec >= r->npy_rows) return QVF_EOF;
    row->index = r->rec;
    row->row = ++r->rec;
    size_t need = r->dim * r->elsize;
    if (grow((void **)&r->raw, &r->rawcap, need, 1) || vec_room(r, r->dim)) {
        snprintf(err, errlen, "out of memory");
        return QVF_FATAL;
    }
    size_t got = fread(r->raw, 1, need, r->f);
    if (got < need) {
        if (ferror(r->f)) {
            snprintf(err, errlen, "read error: %s", strerror(errno));
            return QVF_FATAL;
        }
        r->ended = 1;
        snprintf(err, errlen, "truncated: the header promises %" PRIu64 " rows, the file ends in row %" PRIu64,
                 r->npy_rows, r->rec);
        return QVF_BAD;
    }
    if (r->dim != r->expect) { /* only when the caller expects another dimension */
        snprintf(err, errlen, "the row has dimension %zu, expected %zu", r->dim, r->expect);
        return QVF_BAD;
    }
    if (r->elsize == 4) {
        memcpy(r->vec, r->raw, need);
    } else {
        for (size_t i = 0; i < r->dim; i++)
            r->vec[i] = half_to_float((uint16_t)(r->raw[2 * i] | r->raw[2 * i + 1] << 8));
    }
    if (check_finite(r->vec, r->dim, err, errlen)) return QVF_BAD;
    row->vec = r->vec;
    row->dim = r->dim;
    return QVF_ROW;
}

static int64_t npy_skip(qvf_reader *r, uint64_t n, char *err, size_t errlen)
{
    uint64_t left = r->npy_rows - r->rec, k = n < left ? n : left;
    r->rec += k;
    if (fseeko(r->f, (off_t)(r->data_off + r->rec * r->dim * r->elsize), SEEK_SET)) {
        snprintf(err, errlen, "seek: %s", strerror(errno));
        return QVF_FATAL;
    }
    return (int64_t)k;
}

/* ------------------------------------------------------------ text files */
/* The next line (without its end) into r->lbuf; 0 at the end of the file,
 * 1 for a line, QVF_FATAL on a read error. */
static int read_line(qvf_reader *r, size_t *len, char *err, size_t errlen)
{
    ssize_t n = getline(&r->lbuf, &r->lcap, r->f);
    if (n < 0) {
        if (ferror(r->f)) {
            snprintf(err, errlen, "read error: %s", strerror(errno));
            return QVF_FATAL;
        }
        return 0;
    }
    r->line++;
    while (n > 0 && (r->lbuf[n - 1] == '\n' || r->lbuf[n - 1] == '\r')) n--;
    r->lbuf[n] = '\0';
    *len = (size_t)n;
    return 1;
}

static int blank(const char *s)
{
    while (*s == ' ' || *s == '\t') s++;
    return *s == '\0';
}

/* Is s (up to ',' or the end) a number? Decides whether a CSV line is a header. */
static int csv_numeric(const char *s)
{
    while (*s == ' ') s++;
    char *end;
    errno = 0;
    (void)strtod(s, &end);
    if (end == s) return 0;
    while (*end == ' ') end++;
    return *end == ',' || *end == '\0';
}

/* The next record's line: blank lines and the CSV header skipped. 1, 0 (end
 * of file) or QVF_FATAL. */
static int next_record_line(qvf_reader *r, size_t *len, char *err, size_t errlen)
{
    for (;;) {
        int rc = read_line(r, len, err, errlen);
        if (rc != 1) return rc;
        if (blank(r->lbuf)) continue;
        if (r->fmt == QVF_CSV && !r->first_seen) {
            r->first_seen = 1;
            if (!csv_numeric(r->lbuf)) continue; /* a header */
        }
        r->first_seen = 1;
        return 1;
    }
}

static int jsonl_check_attrs(json_t *attrs, char *err, size_t errlen)
{
    if (json_object_size(attrs) > MAX_ATTR_KEYS) {
        snprintf(err, errlen, "bad attribute: %zu keys, over the limit of %d", json_object_size(attrs),
                 MAX_ATTR_KEYS);
        return -1;
    }
    const char *k;
    json_t *v;
    json_object_foreach(attrs, k, v) {
        size_t kl = strlen(k);
        if (kl == 0 || kl > MAX_ATTR_KEY) {
            snprintf(err, errlen, "bad attribute: key \"%.64s\" must be 1..%d bytes", k, MAX_ATTR_KEY);
            return -1;
        }
        switch (json_typeof(v)) {
        case JSON_STRING:
            if (json_string_length(v) > MAX_ATTR_VALUE) goto too_long;
            if (memchr(json_string_value(v), 0, json_string_length(v))) goto nul;
            break;
        case JSON_INTEGER:
        case JSON_REAL:
        case JSON_TRUE:
        case JSON_FALSE: break;
        case JSON_ARRAY: {
            size_t i;
            json_t *s;
            json_array_foreach(v, i, s) {
                if (!json_is_string(s)) {
                    snprintf(err, errlen,
                             "bad attribute \"%.64s\": an array must hold strings only (item %zu is not one)",
                             k, i);
                    return -1;
                }
                if (json_string_length(s) > MAX_ATTR_VALUE) goto too_long;
                if (memchr(json_string_value(s), 0, json_string_length(s))) goto nul;
            }
            break;
        }
        default:
            snprintf(err, errlen,
                     "bad attribute \"%.64s\": %s is not a string, number, boolean or array of strings",
                     k, json_is_null(v) ? "null" : "an object");
            return -1;
        }
        continue;
    too_long:
        snprintf(err, errlen, "bad attribute \"%.64s\": a string longer than %d bytes", k, MAX_ATTR_VALUE);
        return -1;
    nul:
        snprintf(err, errlen, "bad attribute \"%.64s\": a string holds a NUL character", k);
        return -1;
    }
    return 0;
}

static int jsonl_next(qvf_reader *r, qvf_row *row, char *err, size_t errlen)
{
    size_t len;
    json_decref(r->doc);
    r->doc = NULL;
    int rc = next_record_line(r, &len, err, errlen);
    if (rc != 1) return rc;
    row->index = r->rec++;
    row->row = r->line;
    json_error_t je;
    json_t *doc = json_loadb(r->lbuf, len, JSON_REJECT_DUPLICATES, &je);
    if (!doc) {
        snprintf(err, errlen, "unparsable JSON: %s (column %d)", je.text, je.column);
        return QVF_BAD;
    }
    r->doc = doc;
    if (!json_is_object(doc)) {
        snprintf(err, errlen, "not a JSON object");
        return QVF_BAD;
    }
    const char *k;
    json_t *v, *id = NULL, *vec = NULL, *attrs = NULL;
    json_object_foreach(doc, k, v) {
        if (!strcmp(k, "id")) id = v;
        else if (!strcmp(k, "vector")) vec = v;
        else if (!strcmp(k, "attributes")) attrs = v;
        else {
            snprintf(err, errlen, "unknown key \"%.64s\" (a row has \"id\", \"vector\" and \"attributes\")", k);
            return QVF_BAD;
        }
    }
    if (!id || !json_is_integer(id) || json_integer_value(id) < 0) {
        snprintf(err, errlen, "%s", id ? "\"id\" is not a whole number 0..2^63-1" : "no \"id\"");
        return QVF_BAD;
    }
    if (!vec || !json_is_array(vec)) {
        snprintf(err, errlen, "%s", vec ? "\"vector\" is not an array" : "no \"vector\"");
        return QVF_BAD;
    }
    size_t n = json_array_size(vec);
    if (n != r->expect) {
        snprintf(err, errlen, "the vector has dimension %zu, expected %zu", n, r->expect);
        return QVF_BAD;
    }
    if (vec_room(r, n)) {
        snprintf(err, errlen, "out of memory");
        return QVF_FATAL;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *x = json_array_get(vec, i);
        if (!json_is_number(x)) {
            snprintf(err, errlen, "vector[%zu] is not a number", i);
            return QVF_BAD;
        }
        float f = (float)json_number_value(x);
        if (!isfinite(f)) {
            snprintf(err, errlen, "vector[%zu] = %g is beyond float32's range", i, json_number_value(x));
            return QVF_BAD;
        }
        r->vec[i] = f;
    }
    if (attrs && json_is_null(attrs)) attrs = NULL;
    if (attrs && !json_is_object(attrs)) {
        snprintf(err, errlen, "\"attributes\" is not an object");
        return QVF_BAD;
    }
    if (attrs && jsonl_check_attrs(attrs, err, errlen)) return QVF_BAD;
    row->has_id = 1;
    row->id = (uint64_t)json_integer_value(id);
    row->vec = r->vec;
    row->dim = n;
    row->attrs = attrs;
    return QVF_ROW;
}

/* Fields of a CSV line: the count of ','-separated fields. */
static size_t csv_fields(const char *s)
{
    size_t n = 1;
    for (; *s; s++) n += *s == ',';
    return n;
}

static int csv_next(qvf_reader *r, qvf_row *row, char *err, size_t errlen)
{
    size_t len;
    int rc = next_record_line(r, &len, err, errlen);
    if (rc != 1) return rc;
    row->index = r->rec++;
    row->row = r->line;
    size_t nf = csv_fields(r->lbuf);
    if (nf - 1 != r->expect) {
        snprintf(err, errlen, "%zu values after the id, expected %zu", nf - 1, r->expect);
        return QVF_BAD;
    }
    if (vec_room(r, nf)) {
        snprintf(err, errlen, "out of memory");
        return QVF_FATAL;
    }
    char *p = r->lbuf;
    while (*p == ' ') p++;
    char *end;
    if (!isdigit((unsigned char)*p)) goto bad_id;
    errno = 0;
    unsigned long long id = strtoull(p, &end, 10);
    while (*end == ' ') end++;
    if (errno || *end != ',' || id > (unsigned long long)MAX_ID) goto bad_id;
    p = end + 1;
    for (size_t i = 0; i < nf - 1; i++) {
        while (*p == ' ') p++;
        errno = 0;
        float f = strtof(p, &end);
        char *q = end;
        while (*q == ' ') q++;
        if (end == p || (*q != ',' && *q != '\0')) {
            size_t fl = strcspn(p, ",");
            snprintf(err, errlen, "value %zu (\"%.*s\") is not a number", i + 1, (int)(fl > 40 ? 40 : fl), p);
            return QVF_BAD;
        }
        if (!isfinite(f)) {
            snprintf(err, errlen, "value %zu is %s", i + 1, isnan(f) ? "NaN" : "infinite or beyond float32's range");
            return QVF_BAD;
        }
        r->vec[i] = f;
        p = *q ? q + 1 : q;
    }
    row->has_id = 1;
    row->id = id;
    row->vec = r->vec;
    row->dim = nf - 1;
    return QVF_ROW;
bad_id: {
    size_t fl = strcspn(r->lbuf, ",");
    snprintf(err, errlen, "id \"%.*s\" is not a whole number 0..2^63-1", (int)(fl > 40 ? 40 : fl), r->lbuf);
    return QVF_BAD;
}
}

/* Dimension of a text file: the first row that tells (a JSON object with a
 * "vector" array; a CSV line's fields less the id). */
static int text_open(qvf_reader *r, char *err, size_t errlen)
{
    size_t len;
    int rc;
    while ((rc = next_record_line(r, &len, err, errlen)) == 1) {
        if (r->fmt == QVF_CSV) {
            size_t nf = csv_fields(r->lbuf);
            if (nf >= 2) {
                r->dim = nf - 1;
                break;
            }
            continue;
        }
        json_t *doc = json_loadb(r->lbuf, len, 0, NULL), *v = json_object_get(doc, "vector");
        if (json_is_array(v) && json_array_size(v) > 0) r->dim = json_array_size(v);
        json_decref(doc);
        if (r->dim) break;
    }
    if (rc == QVF_FATAL) {
        char tmp[256];
        snprintf(tmp, sizeof tmp, "%s", err);
        snprintf(err, errlen, "%s: %s", r->path, tmp);
        return rc;
    }
    rewind(r->f);
    r->line = 0;
    r->first_seen = 0;
    return 0;
}

static int64_t text_skip(qvf_reader *r, uint64_t n, char *err, size_t errlen)
{
    uint64_t k = 0;
    size_t len;
    while (k < n) {
        int rc = next_record_line(r, &len, err, errlen);
        if (rc == QVF_FATAL) return rc;
        if (rc == 0) break;
        k++;
        r->rec++;
    }
    return (int64_t)k;
}

/* ----------------------------------------------------------- the reader */
int qvf_open(const char *path, qvf_format f, qvf_reader **out, char *err, size_t errlen)
{
    *out = NULL;
    qvf_reader *r = calloc(1, sizeof *r);
    if (!r || !(r->path = strdup(path))) {
        free(r);
        snprintf(err, errlen, "out of memory");
        return QVF_FATAL;
    }
    r->fmt = f;
    r->f = fopen(path, "rb");
    struct stat st;
    if (!r->f || fstat(fileno(r->f), &st) != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        qvf_close(r);
        return QVF_FATAL;
    }
    if (S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s: is a directory", path);
        qvf_close(r);
        return QVF_FATAL;
    }
    r->size = (uint64_t)st.st_size;
    if ((r->iobuf = malloc(IO_BUFFER))) setvbuf(r->f, r->iobuf, _IOFBF, IO_BUFFER);
    int rc;
    switch (f) {
    case QVF_FVECS:
    case QVF_BVECS: rc = texmex_open(r, err, errlen); break;
    case QVF_NPY: rc = npy_open(r, err, errlen); break;
    case QVF_JSONL:
    case QVF_CSV: rc = text_open(r, err, errlen); break;
    default:
        snprintf(err, errlen, "%s: unknown format", path);
        rc = QVF_FATAL;
    }
    if (rc) {
        qvf_close(r);
        return rc;
    }
    r->expect = r->dim;
    *out = r;
    return 0;
}

size_t qvf_dim(const qvf_reader *r) { return r->dim; }
void qvf_expect_dim(qvf_reader *r, size_t dim) { r->expect = dim; }
uint64_t qvf_pos(const qvf_reader *r)
{
    off_t p = ftello(r->f);
    return p < 0 ? 0 : (uint64_t)p;
}
uint64_t qvf_size(const qvf_reader *r) { return r->size; }

int qvf_next(qvf_reader *r, qvf_row *row, char *err, size_t errlen)
{
    memset(row, 0, sizeof *row);
    err[0] = '\0';
    switch (r->fmt) {
    case QVF_FVECS:
    case QVF_BVECS: return texmex_next(r, row, err, errlen);
    case QVF_NPY: return npy_next(r, row, err, errlen);
    case QVF_JSONL: return jsonl_next(r, row, err, errlen);
    case QVF_CSV: return csv_next(r, row, err, errlen);
    default: return QVF_FATAL;
    }
}

int64_t qvf_skip(qvf_reader *r, uint64_t n, char *err, size_t errlen)
{
    switch (r->fmt) {
    case QVF_FVECS:
    case QVF_BVECS: return texmex_skip(r, n, err, errlen);
    case QVF_NPY: return npy_skip(r, n, err, errlen);
    default: return text_skip(r, n, err, errlen);
    }
}

void qvf_close(qvf_reader *r)
{
    if (!r) return;
    if (r->f) fclose(r->f);
    json_decref(r->doc);
    free(r->iobuf);
    free(r->path);
    free(r->vec);
    free(r->raw);
    free(r->lbuf);
    free(r);
}
