/*
 * Index files: a built index saved beside the LMDB data so that a restart
 * loads it and replays only the writes after the sequence number it covers,
 * instead of retraining. One file per collection: <dir>/<coll_id>.qvi.
 *
 * Layout: a fixed 512-byte header (magic "QVIXFILE", format version, the
 * collection id and name, dim, metric, index params, covered sequence number,
 * trained-for count, calibrated nprobe table, payload length and a 64-bit
 * checksum of the payload), then the FAISS index (faiss_write_index) and, for
 * compressed kinds with refine, the copy of the vectors (qv_index_write).
 * Written atomically: temp file, fsync, rename, fsync of the directory.
 * A missing, truncated, corrupt or mismatched file is reported, never used.
 */
#ifndef QUIVER_INDEXFILE_H
#define QUIVER_INDEXFILE_H

#include <stddef.h>
#include <stdint.h>

#include "quiver/codec.h"
#include "index.h"

/* Bump when the header layout or payload meaning changes. 2: compressed kinds
 * with refine > 1 keep a copy of the vectors after the FAISS index (index.c);
 * format 1 files (FAISS 1.7.3) still load, except those, which are rebuilt. */
#define QV_IXFILE_VERSION 2

typedef struct qv_ixfile_meta {
    uint32_t coll_id;
    char name[QV_MAX_NAME + 1];
    uint32_t dim;
    qv_metric metric;
    qv_index_params params; /* resolved kind, nlist, pq_m, pq_nbits, refine */
    uint64_t covered_seq;   /* every write <= this is in the index */
    uint64_t trained_for;   /* collection size when trained */
    uint32_t nprobe;        /* default nprobe */
    uint32_t n_recall;
    qv_recall_point recall[QV_MAX_RECALL_POINTS];
} qv_ixfile_meta;

/* Path of a collection's index file into out (outlen bytes). */
void qv_ixfile_path(const char *dir, uint32_t coll_id, char *out, size_t outlen);

/* Saving is two steps: write and fsync a temp file beside the final one ([out]
 * tmp, tmplen bytes; removed again on failure), then rename it into place as
 * dir/<coll_id>.qvi and fsync the directory. Until the commit the old file
 * stays in force; a crash leaves the temp file, which start-up removes.
 * Return 0, QV_IO, QV_FAISS. */
int qv_ixfile_write_temp(const char *dir, const qv_ixfile_meta *meta, const qv_index *ix,
                         char *tmp, size_t tmplen);
int qv_ixfile_commit(const char *dir, uint32_t coll_id, const char *tmp);

/* Load the index file of collection `expect` (id, name, dim, metric must
 * match). [out] meta, out. Returns 0, QV_NOTFOUND (no file), QV_CORRUPT
 * (truncated, checksum, mismatch: reason in why), QV_VERSION, QV_IO. */
int qv_ixfile_load(const char *dir, const qv_coll_config *expect, qv_ixfile_meta *meta,
                   qv_index **out, char *why, size_t whylen);

/* The same from any path; check_id 0 accepts another collection id (a
 * replica's file from another node of a cluster: same name, other id). */
int qv_ixfile_load_path(const char *path, const qv_coll_config *expect, int check_id,
                        qv_ixfile_meta *meta, qv_index **out, char *why, size_t whylen);

/* Remove a collection's index file (missing is fine). */
void qv_ixfile_remove(const char *dir, uint32_t coll_id);

#endif
