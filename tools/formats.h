/*
 * formats: the vector files `quiver import` reads and `quiver export`
 * writes — texmex .fvecs/.bvecs, NumPy .npy (float32, float16), JSON Lines
 * and CSV. Readers yield rows and say what is wrong with a bad one; they
 * know nothing of gRPC or collections (the importer does the rest).
 *
 * Caveats:
 * - One reader or writer belongs to one thread.
 * - A row's vec and attrs stay valid until the next qvf_next/qvf_close.
 * - Rows are numbered from 1: the record number in binary files, the line
 *   number in text files (blank lines and a CSV header line are not records
 *   but do count as lines).
 * - Only little-endian hosts are supported (the files are little-endian).
 *
 * JSON Lines rows: {"id": 7, "vector": [0.5, ...], "attributes": {...}};
 * "attributes" is optional (null = none), other keys are refused. Attribute
 * values: a string, an integer (int64), a real (double), true/false, or an
 * array of strings; null, objects, other arrays are bad attributes. Keys are
 * 1..256 bytes, strings at most 65,536 bytes (the server's limits).
 * CSV rows: id,v1,...,vd; no quoting; a first line whose first field is not
 * a number is a header and skipped.
 */
#ifndef QUIVER_TOOLS_FORMATS_H
#define QUIVER_TOOLS_FORMATS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "quiver/v1/quiver.pb-c.h"

/* File formats; the numbers are stored in import checkpoints. */
typedef enum qvf_format {
    QVF_NONE = 0,
    QVF_FVECS = 1,
    QVF_BVECS = 2,
    QVF_NPY = 3,
    QVF_JSONL = 4,
    QVF_CSV = 5,
} qvf_format;

/* Results of qvf_next (and failures of the other calls). */
#define QVF_ROW 1
#define QVF_EOF 0
#define QVF_BAD (-1)   /* a bad row, reported; reading may go on */
#define QVF_FATAL (-2) /* the file cannot be read any further */

/* Largest vector dimension a file may declare (corrupt headers beyond). */
#define QVF_MAX_DIM (1 << 20)

/* "fvecs", "bvecs", "npy", "jsonl" (or "json", "ndjson"), "csv" -> format;
 * QVF_NONE if unknown. */
qvf_format qvf_format_by_name(const char *s);
/* The format of a path's extension (.fvecs .bvecs .npy .jsonl .ndjson .csv);
 * QVF_NONE if none fits. */
qvf_format qvf_format_by_path(const char *path);
const char *qvf_format_name(qvf_format f);

typedef struct qvf_reader qvf_reader;

typedef struct qvf_row {
    uint64_t row;   /* 1-based row (binary) or line (text) number, for messages */
    uint64_t index; /* 0-based record number in the file (ids of id-less formats) */
    int has_id;     /* jsonl, csv */
    uint64_t id;    /* 0..2^63-1 */
    const float *vec;
    size_t dim;
    json_t *attrs; /* jsonl: the "attributes" object or NULL (borrowed) */
} qvf_row;

/* Open a file and find its dimension (the header's, or the first row's).
 * [out] out  the reader (qvf_close frees it).
 * [out] err  why not, starting with the path.
 * Returns 0 or QVF_FATAL (cannot open, unsupported npy dtype/order/shape,
 * corrupt header). */
int qvf_open(const char *path, qvf_format f, qvf_reader **out, char *err, size_t errlen);

/* The file's dimension: its header's, or its first good row's; 0 when the
 * file holds no row to tell. */
size_t qvf_dim(const qvf_reader *r);

/* Rows of another dimension than dim are bad (default: qvf_dim). */
void qvf_expect_dim(qvf_reader *r, size_t dim);

/* Read the next record.
 * [out] row  on QVF_ROW the row; on QVF_BAD row->row/index say which.
 * [out] err  on QVF_BAD/QVF_FATAL the reason (without the file and row).
 * Returns QVF_ROW, QVF_EOF, QVF_BAD or QVF_FATAL. */
int qvf_next(qvf_reader *r, qvf_row *row, char *err, size_t errlen);

/* Skip n records (resuming) without checking them. Returns how many were
 * skipped (less than n when the file ended), or QVF_FATAL with err. */
int64_t qvf_skip(qvf_reader *r, uint64_t n, char *err, size_t errlen);

uint64_t qvf_pos(const qvf_reader *r);  /* bytes read so far */
uint64_t qvf_size(const qvf_reader *r); /* the file's size */
void qvf_close(qvf_reader *r); /* NULL: no-op */

/* ------------------------------------------------------------- writing */
typedef struct qvf_writer qvf_writer;

/* Create a file for export ("-": stdout, not for npy).
 * Returns 0 or QVF_FATAL with err. */
int qvf_writer_open(const char *path, qvf_format f, size_t dim, qvf_writer **out, char *err,
                    size_t errlen);

/* Write one item: vec has the writer's dim floats; attributes only in jsonl.
 * Returns 0 or QVF_FATAL with err (I/O, or an attribute JSON cannot hold). */
int qvf_write(qvf_writer *w, uint64_t id, const float *vec,
              Quiver__V1__Item__AttributesEntry *const *attrs, size_t n_attrs, char *err,
              size_t errlen);

/* Finish (npy: the header's row count), flush, fsync and close; frees w.
 * Returns 0 or QVF_FATAL with err. */
int qvf_writer_close(qvf_writer *w, char *err, size_t errlen);

/* Close and free without finishing (the caller removes the file). */
void qvf_writer_abort(qvf_writer *w);

#endif
