/*
 * The coarse scan of one query: which inverted lists of an IVF index lie
 * nearest to it.
 *
 * FAISS scores a query against every centroid in float32; for one query that
 * reads the whole centroid table (4,096 x 100 floats: 1.6 MB) from memory a
 * search would rather keep in cache, and it was a quarter of quiverd's CPU
 * per call at nprobe 1. A qv_coarse keeps a half-precision copy (half the
 * bytes, rows padded to 8 floats), scores every list with it, keeps a margin
 * of candidates beyond the np asked for, and scores those again exactly in
 * float32 from FAISS's own table: the np lists and distances it returns are
 * those of the float32 scan unless two lists' distances are closer than half
 * precision can tell, past the margin's ranks.
 *
 * Needs AVX2, FMA and F16C (checked at run time); qv_coarse_new returns NULL
 * where they are missing, and callers keep the float32 scan.
 */
#ifndef QUIVER_COARSE_H
#define QUIVER_COARSE_H

#include <stddef.h>
#include <stdint.h>

typedef struct qv_coarse qv_coarse;

/* A copy of nl centroids of dim floats (cent: row-major, kept by the caller
 * as long as the qv_coarse lives). ip: an inner-product quantizer (larger is
 * nearer), else L2. NULL when the CPU lacks the instructions or memory is
 * short. */
qv_coarse *qv_coarse_new(const float *cent, size_t nl, uint32_t dim, int ip);
void qv_coarse_free(qv_coarse *cq);

/* The np (<= nl) lists nearest x, nearest first, into lists and their
 * float32 coarse distances into dis (ip: the dot product; L2: the squared
 * distance). 0, or QV_NOMEM. */
int qv_coarse_rank(const qv_coarse *cq, const float *x, size_t np, int64_t *lists, float *dis);

#endif
