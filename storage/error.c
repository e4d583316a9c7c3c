/* Names of Quiver's error codes (include/quiver/error.h). */
#include "quiver/error.h"

const char *qv_strerror(int rc)
{
    switch (rc) {
    case QV_OK: return "success";
    case QV_NOTFOUND: return "not found";
    case QV_EXISTS: return "already exists";
    case QV_INVALID: return "invalid argument";
    case QV_NOMEM: return "out of memory";
    case QV_IO: return "I/O error";
    case QV_CORRUPT: return "corrupt data";
    case QV_VERSION: return "unsupported format version";
    case QV_FULL: return "storage full";
    case QV_FAISS: return "FAISS error";
    case QV_LMDB: return "LMDB error";
    case QV_BUSY: return "busy";
    case QV_CANCELLED: return "cancelled";
    case QV_SHUTDOWN: return "shutting down";
    case QV_OVERLOAD: return "the write queue stayed full until the deadline";
    case QV_LIMIT: return "over limit";
    default: return "unknown error";
    }
}
