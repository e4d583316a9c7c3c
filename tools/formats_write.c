/*
 * formats_write: the writers of `quiver export` — fvecs, npy (float32, its
 * row count written into the header at the end), JSON Lines and CSV, floats
 * printed so that they read back to the same bits (see formats.h). The
 * readers are in formats.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats.h"

#define IO_BUFFER (1 << 20)

/* ------------------------------------------------------------- writers */
#define NPY_HEADER 128 /* bytes, room for any (rows, dim) */

struct qvf_writer {
    qvf_format fmt;
    FILE *f;
    int is_stdout;
    char *iobuf;
    size_t dim;
    uint64_t rows;
    char *line;
    size_t lcap;
};

/* The npy header for (rows, dim) float32: NPY_HEADER bytes into out. */
static void npy_header(char out[NPY_HEADER], uint64_t rows, size_t dim)
{
    char dict[NPY_HEADER];
    int n = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%" PRIu64 ", %zu), }",
                     rows, dim);
    memcpy(out, "\x93NUMPY\x01\x00", 8);
    uint16_t hlen = NPY_HEADER - 10;
    out[8] = (char)(hlen & 0xff);
    out[9] = (char)(hlen >> 8);
    memset(out + 10, ' ', hlen);
    memcpy(out + 10, dict, (size_t)n);
    out[NPY_HEADER - 1] = '\n';
}

int qvf_writer_open(const char *path, qvf_format f, size_t dim, qvf_writer **out, char *err, size_t errlen)
{
    *out = NULL;
    qvf_writer *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err, errlen, "out of memory");
        return QVF_FATAL;
    }
    w->fmt = f;
    w->dim = dim;
    if (!strcmp(path, "-")) {
        if (f == QVF_NPY) {
            free(w);
            snprintf(err, errlen, "npy cannot go to stdout (its header is rewritten at the end)");
            return QVF_FATAL;
        }
        w->f = stdout;
        w->is_stdout = 1;
    } else if (!(w->f = fopen(path, "wb"))) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        free(w);
        return QVF_FATAL;
    }
    if (!w->is_stdout && (w->iobuf = malloc(IO_BUFFER))) setvbuf(w->f, w->iobuf, _IOFBF, IO_BUFFER);
    if (f == QVF_NPY) {
        char h[NPY_HEADER];
        npy_header(h, 0, dim);
        fwrite(h, 1, sizeof h, w->f);
    } else if (f == QVF_CSV) {
        fputs("id", w->f);
        for (size_t i = 0; i < dim; i++) fprintf(w->f, ",v%zu", i + 1);
        fputc('\n', w->f);
    }
    if (ferror(w->f)) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        qvf_writer_abort(w);
        return QVF_FATAL;
    }
    *out = w;
    return 0;
}

/* A float as "%.9g", which reads back (strtof, or strtod then a cast) to the
 * same bits; JSON needs "-0.0" for negative zero (jansson reads "-0" as the
 * integer 0). */
static int fmt_float(char *buf, float v, int json)
{
    if (v == 0 && signbit(v)) return sprintf(buf, json ? "-0.0" : "-0");
    return sprintf(buf, "%.9g", (double)v);
}

static json_t *attr_json(const Quiver__V1__Value *v)
{
    if (!v) return NULL;
    switch (v->kind_case) {
    case QUIVER__V1__VALUE__KIND_STRING_VALUE: return json_string(v->string_value);
    case QUIVER__V1__VALUE__KIND_INT_VALUE: return json_integer((json_int_t)v->int_value);
    case QUIVER__V1__VALUE__KIND_DOUBLE_VALUE:
        return isfinite(v->double_value) ? json_real(v->double_value) : NULL;
    case QUIVER__V1__VALUE__KIND_BOOL_VALUE: return json_boolean(v->bool_value);
    case QUIVER__V1__VALUE__KIND_STRING_LIST: {
        json_t *a = json_array();
        for (size_t i = 0; a && v->string_list && i < v->string_list->n_values; i++) {
            json_t *s = json_string(v->string_list->values[i]);
            if (!s || json_array_append_new(a, s)) {
                json_decref(a);
                return NULL;
            }
        }
        return a;
    }
    default: return NULL;
    }
}

int qvf_write(qvf_writer *w, uint64_t id, const float *vec, Quiver__V1__Item__AttributesEntry *const *attrs,
              size_t n_attrs, char *err, size_t errlen)
{
    FILE *f = w->f;
    char num[40];
    switch (w->fmt) {
    case QVF_FVECS: {
        int32_t d = (int32_t)w->dim;
        fwrite(&d, 4, 1, f);
        fwrite(vec, sizeof *vec, w->dim, f);
        break;
    }
    case QVF_NPY: fwrite(vec, sizeof *vec, w->dim, f); break;
    case QVF_CSV:
        fprintf(f, "%" PRIu64, id);
        for (size_t i = 0; i < w->dim; i++) {
            num[0] = ',';
            int n = fmt_float(num + 1, vec[i], 0);
            fwrite(num, 1, (size_t)n + 1, f);
        }
        fputc('\n', f);
        break;
    case QVF_JSONL: {
        fprintf(f, "{\"id\":%" PRIu64 ",\"vector\":[", id);
        for (size_t i = 0; i < w->dim; i++) {
            num[0] = ',';
            int n = fmt_float(num + 1, vec[i], 1);
            fwrite(i ? num : num + 1, 1, (size_t)n + (i ? 1 : 0), f);
        }
        fputc(']', f);
        if (n_attrs) {
            json_t *o = json_object();
            for (size_t i = 0; o && i < n_attrs; i++) {
                json_t *v = attr_json(attrs[i]->value);
                if (!v || json_object_set_new(o, attrs[i]->key, v)) {
                    snprintf(err, errlen,
                             "item %" PRIu64 ": attribute \"%.64s\" cannot be written as JSON (not UTF-8, "
                             "or not a finite number)",
                             id, attrs[i]->key);
                    json_decref(o);
                    return QVF_FATAL;
                }
            }
            char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
            json_decref(o);
            if (!s) {
                snprintf(err, errlen, "out of memory");
                return QVF_FATAL;
            }
            fputs(",\"attributes\":", f);
            fputs(s, f);
            free(s);
        }
        fputs("}\n", f);
        break;
    }
    default: snprintf(err, errlen, "cannot write this format"); return QVF_FATAL;
    }
    w->rows++;
    if (ferror(f)) {
        snprintf(err, errlen, "write error: %s", strerror(errno));
        return QVF_FATAL;
    }
    return 0;
}

int qvf_writer_close(qvf_writer *w, char *err, size_t errlen)
{
    int rc = 0;
    if (w->fmt == QVF_NPY) {
        char h[NPY_HEADER];
        npy_header(h, w->rows, w->dim);
        if (fseeko(w->f, 0, SEEK_SET) || fwrite(h, 1, sizeof h, w->f) != sizeof h) rc = -1;
    }
    if (fflush(w->f) || ferror(w->f)) rc = -1;
    if (!rc && !w->is_stdout && fsync(fileno(w->f)) && errno != EINVAL) rc = -1;
    if (rc) snprintf(err, errlen, "write error: %s", strerror(errno));
    if (!w->is_stdout && fclose(w->f) && !rc) {
        snprintf(err, errlen, "close: %s", strerror(errno));
        rc = -1;
    }
    free(w->iobuf);
    free(w->line);
    free(w);
    return rc ? QVF_FATAL : 0;
}

void qvf_writer_abort(qvf_writer *w)
{
    if (!w) return;
    if (!w->is_stdout) fclose(w->f);
    free(w->iobuf);
    free(w->line);
    free(w);
}
