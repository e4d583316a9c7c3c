/*
 * checkpoint: the small JSON file from which `quiver import --resume`
 * continues. It names the import (collection, format, --id-offset, the
 * files' path, size and mtime, dim) and how far the server has acknowledged
 * it (rows_done, rows_skipped). Written atomically: temp file, fsync,
 * rename. Not a lock: two importers on one checkpoint are not detected.
 *
 * Format (version 1; bump QVCK_VERSION when a field changes meaning):
 *   {"version": 1, "collection": "c", "format": "fvecs", "id_offset": 0,
 *    "files": [{"path": "/abs/x.fvecs", "size": 123, "mtime": <ns>,
 *               "format": "fvecs"}], "dim": 100,
 *    "rows_done": N, "rows_skipped": K}
 * rows_done counts the records of the files, in order, bad ones included.
 */
#ifndef QUIVER_TOOLS_CHECKPOINT_H
#define QUIVER_TOOLS_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define QVCK_VERSION 1

/* Results of qvck_load. */
#define QVCK_OK 0
#define QVCK_NONE 1      /* no checkpoint file */
#define QVCK_MISMATCH 2  /* made by another import */
#define QVCK_BAD (-1)    /* unreadable */

/* The files' identity: [{"path", "size", "mtime", "format"}] of paths (made
 * absolute), formats[i] naming each. NULL with err when one cannot be
 * stat'ed or out of memory. The caller owns (json_decref) the array. */
json_t *qvck_files(const char *const *paths, const char *const *formats, size_t n, char *err,
                   size_t errlen);

/* FILE.quiver-import.json beside file, or in the current folder when file's
 * folder is not writable (or has no w bit: root ignores them). malloc'd;
 * NULL when out of memory. */
char *qvck_default_path(const char *file);

/* Replace path with identity's members plus rows_done and rows_skipped.
 * identity: {"collection", "format", "id_offset", "files", "dim"} (not
 * modified). Returns 0 or -1 with err. */
int qvck_write(const char *path, const json_t *identity, uint64_t rows_done, uint64_t rows_skipped,
               char *err, size_t errlen);

/* Read path and compare it with identity (every member, and the version).
 * [out] rows_done, rows_skipped  on QVCK_OK.
 * [out] why  on QVCK_MISMATCH/QVCK_BAD: the reason.
 * Returns QVCK_OK, QVCK_NONE, QVCK_MISMATCH or QVCK_BAD. */
int qvck_load(const char *path, const json_t *identity, uint64_t *rows_done, uint64_t *rows_skipped,
              char *why, size_t whylen);

#endif
