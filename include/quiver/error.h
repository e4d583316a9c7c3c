/*
 * Quiver's one error convention: every fallible function returns int, 0 is
 * success and the project's own codes are negative. qv_strerror() names each.
 * QV_NOTFOUND is a status ("not there"), not a failure.
 */
#ifndef QUIVER_ERROR_H
#define QUIVER_ERROR_H

enum {
    QV_OK = 0,
    QV_NOTFOUND = -30001,  /* key, item or collection not there */
    QV_EXISTS = -30002,    /* collection already exists */
    QV_INVALID = -30003,   /* bad argument (caller's mistake) */
    QV_NOMEM = -30004,     /* allocation failed */
    QV_IO = -30005,        /* file system error; errno-style detail logged */
    QV_CORRUPT = -30006,   /* on-disk data fails a check */
    QV_VERSION = -30007,   /* on-disk format version we do not read */
    QV_FULL = -30008,      /* LMDB map or disk full */
    QV_FAISS = -30009,     /* FAISS raised an error (see log) */
    QV_LMDB = -30010,      /* unexpected LMDB error (see log) */
    QV_BUSY = -30011,      /* a conflicting operation is running */
    QV_CANCELLED = -30012, /* caller cancelled */
    QV_SHUTDOWN = -30013,  /* the database is closing */
    QV_LIMIT = -30014,     /* request over a configured limit */
    QV_OVERLOAD = -30015,  /* no room in the write queue before the deadline */
};

/* Static, human-readable name of rc (never NULL). */
const char *qv_strerror(int rc);

#endif
