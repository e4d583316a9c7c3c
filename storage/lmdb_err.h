/*
 * LMDB return codes into the engine's (quiver/error.h), logging the
 * unexpected ones with what was being done. The one translation of LMDB's
 * codes, shared by the store and the attribute index below it.
 */
#ifndef QUIVER_LMDB_ERR_H
#define QUIVER_LMDB_ERR_H

#include <errno.h>
#include <lmdb.h>

#include "quiver/error.h"
#include "quiver/log.h"

static inline int qv_store_err(int rc, const char *what)
{
    switch (rc) {
    case MDB_SUCCESS: return 0;
    case MDB_NOTFOUND: return QV_NOTFOUND;
    case MDB_MAP_FULL:
    case ENOSPC:
        qv_error("%s: %s", what, mdb_strerror(rc));
        return QV_FULL;
    case ENOMEM: return QV_NOMEM;
    default:
        qv_error("%s: %s", what, mdb_strerror(rc));
        return QV_LMDB;
    }
}

#endif
