/*
 * Hot backups and restores of a whole data directory. A backup is one tar
 * archive (libarchive, POSIX pax): manifest.json first, then data.mdb (LMDB's
 * own compacting copy, mdb_env_copyfd2), then indexes/<collection id>.qvi,
 * the index files that match the copy. manifest.json (jansson):
 *   {"format": 1, "quiver_version": "...", "created": "2026-11-30T13:20:00Z",
 *    "last_seq": N, "collections": [{"name", "id", "last_seq", "count"}...],
 *    "members": [{"name", "size", "sha256"}...]}
 * last_seq and the collections are read from the copy itself.
 *
 * Consistency: index files are linked while rebuilds cannot replace them
 * (qv_db's file lock) and before LMDB's snapshot is taken, so each covers
 * writes the snapshot holds; start-up replays the rest from the sequence log.
 */
#ifndef QUIVER_BACKUP_H
#define QUIVER_BACKUP_H

#include <stddef.h>
#include <stdint.h>

#include "quiver/db.h"

#define QV_BACKUP_FORMAT 1

typedef struct qv_backup_info {
    uint64_t size;     /* bytes of the archive */
    uint64_t last_seq; /* the newest write it holds (largest over collections) */
} qv_backup_info;

/* Write a backup of db into a new temporary file in db's data directory and
 * return it open for reading at offset 0, already unlinked ([out] fd; close
 * it when done). One backup at a time: QV_BUSY while another is made.
 * Returns 0, QV_BUSY, QV_IO, QV_FULL, QV_LMDB, QV_NOMEM; err says why. */
int qv_backup_create(qv_db *db, const char *version, int *fd, qv_backup_info *info, char *err,
                     size_t errlen);

/* Restore archive into dir: every member's size and SHA-256 are checked
 * against the manifest before anything is written; dir must be missing or
 * empty unless force (its data.mdb, lock.mdb and indexes/ are then
 * replaced). Returns 0, QV_INVALID (refused: err says why), QV_EXISTS (dir
 * not empty), QV_IO. */
int qv_backup_restore(const char *archive, const char *dir, int force, qv_backup_info *info,
                      char *err, size_t errlen);

#endif
