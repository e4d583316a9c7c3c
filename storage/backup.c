/*
 * Hot backups and restores (include/quiver/backup.h): LMDB's compacting copy
 * and the matching index files in one tar archive (libarchive) with a
 * manifest of sizes and SHA-256 sums (OpenSSL's libcrypto, JSON by jansson).
 */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "db_int.h"
#include "quiver/backup.h"

#define MANIFEST_MAX (16 << 20)
#define IOBUF (1 << 20)

typedef struct member {
    char name[300];  /* in the archive */
    char path[4400]; /* on disk (backup: the temp copy) */
    uint64_t size;
    char sha[65];
} member;

static void hex(const unsigned char *d, size_t n, char *out)
{
    static const char h[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) out[2 * i] = h[d[i] >> 4], out[2 * i + 1] = h[d[i] & 15];
    out[2 * n] = 0;
}

/* SHA-256 and size of a file. Returns 0 or QV_IO. */
static int file_sha(const char *path, char out[65], uint64_t *size)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) return QV_IO;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char *buf = malloc(IOBUF), md[32];
    unsigned mdlen = 0;
    int rc = ctx && buf && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) ? 0 : QV_NOMEM;
    *size = 0;
    ssize_t n;
    while (!rc && (n = read(fd, buf, IOBUF)) > 0) {
        EVP_DigestUpdate(ctx, buf, (size_t)n);
        *size += (uint64_t)n;
    }
    if (!rc && n < 0) rc = QV_IO;
    if (!rc && EVP_DigestFinal_ex(ctx, md, &mdlen) && mdlen == 32) hex(md, 32, out);
    EVP_MD_CTX_free(ctx);
    free(buf);
    close(fd);
    return rc;
}

static void rm_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[4400];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (unlink(p) != 0 && errno == EISDIR) rm_tree(p);
    }
    closedir(d);
    rmdir(dir);
}

static int is_index_name(const char *n)
{
    size_t i = 0;
    while (n[i] >= '0' && n[i] <= '9') i++;
    return i > 0 && i < 11 && strcmp(n + i, ".qvi") == 0;
}

/* Copy src to dst (when a hard link is not possible). */
static int copy_file(const char *src, const char *dst)
{
    int in = open(src, O_RDONLY), out = in < 0 ? -1 : open(dst, O_WRONLY | O_CREAT | O_EXCL, 0644);
    char *buf = malloc(IOBUF);
    int rc = in >= 0 && out >= 0 && buf ? 0 : QV_IO;
    ssize_t n;
    while (!rc && (n = read(in, buf, IOBUF)) > 0)
        if (write(out, buf, (size_t)n) != n) rc = QV_IO;
    if (in >= 0) close(in);
    if (out >= 0) close(out);
    free(buf);
    return rc;
}

/* Collections and counters of the LMDB copy at path (a single file). */
static int read_copy(const char *path, json_t *colls, uint64_t *last_seq)
{
    MDB_env *env;
    MDB_txn *txn = NULL;
    MDB_dbi cd, sd;
    int rc = mdb_env_create(&env);
    if (rc) return QV_LMDB;
    mdb_env_set_maxdbs(env, 8);
    if ((rc = mdb_env_open(env, path, MDB_NOSUBDIR | MDB_RDONLY | MDB_NOLOCK, 0644)) ||
        (rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn)) ||
        (rc = mdb_dbi_open(txn, "collections", 0, &cd)) || (rc = mdb_dbi_open(txn, "stats", 0, &sd))) {
        if (txn) mdb_txn_abort(txn);
        mdb_env_close(env);
        return rc == MDB_NOTFOUND ? 0 : QV_LMDB; /* an empty store has no databases */
    }
    MDB_cursor *cur;
    MDB_val k, v;
    *last_seq = 0;
    if (mdb_cursor_open(txn, cd, &cur) == 0) {
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            qv_coll_config c;
            memset(&c, 0, sizeof c);
            if (k.mv_size > QV_MAX_NAME || qv_config_decode(v.mv_data, v.mv_size, &c)) continue;
            uint8_t kb[4] = {c.id >> 24, c.id >> 16, c.id >> 8, c.id};
            MDB_val sk = {4, kb}, sv;
            qv_coll_stats st = {0, 0, 0};
            if (mdb_get(txn, sd, &sk, &sv) == 0) qv_stats_decode(sv.mv_data, sv.mv_size, &st);
            json_array_append_new(colls, json_pack("{s:s%,s:I,s:I,s:I}", "name", (char *)k.mv_data,
                                                   k.mv_size, "id", (json_int_t)c.id, "last_seq",
                                                   (json_int_t)st.last_seq, "count",
                                                   (json_int_t)st.count));
            if (st.last_seq > *last_seq) *last_seq = st.last_seq;
        }
        mdb_cursor_close(cur);
    }
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return 0;
}

static int add_member(struct archive *a, const member *m, char *buf)
{
    struct archive_entry *e = archive_entry_new();
    if (!e) return QV_NOMEM;
    archive_entry_set_pathname(e, m->name);
    archive_entry_set_size(e, (la_int64_t)m->size);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_mtime(e, time(NULL), 0);
    int rc = archive_write_header(a, e) == ARCHIVE_OK ? 0 : QV_IO;
    archive_entry_free(e);
    if (rc) return rc;
    int fd = open(m->path, O_RDONLY);
    if (fd < 0) return QV_IO;
    ssize_t n;
    uint64_t left = m->size;
    while (!rc && left && (n = read(fd, buf, IOBUF)) > 0) {
        if ((uint64_t)n > left) n = (ssize_t)left;
        if (archive_write_data(a, buf, (size_t)n) != n) rc = QV_IO;
        left -= (uint64_t)n;
    }
    close(fd);
    return rc || left ? QV_IO : 0;
}

int qv_backup_create(qv_db *db, const char *version, int *fd_out, qv_backup_info *info, char *err,
                     size_t errlen)
{
    *fd_out = -1;
    int expect = 0;
    if (!atomic_compare_exchange_strong(&db->backup_busy, &expect, 1)) {
        snprintf(err, errlen, "a backup is being made already; try again when it is done");
        return QV_BUSY;
    }
    static atomic_uint seqno;
    char tmp[4096], path[4400];
    snprintf(tmp, sizeof tmp, "%s/.backup-%d-%u", db->opts.store.dir, (int)getpid(),
             atomic_fetch_add(&seqno, 1));
    size_t cap = 16; /* data.mdb and the index files: grows with them */
    member *m = calloc(cap, sizeof *m);
    char *buf = malloc(IOBUF);
    json_t *manifest = NULL, *colls = json_array(), *members = json_array();
    size_t nm = 0;
    int rc = 0;
    if (!m || !buf || !colls || !members) {
        rc = QV_NOMEM;
        goto out;
    }
    if (mkdir(tmp, 0700) != 0) {
        snprintf(err, errlen, "cannot make %s: %s", tmp, strerror(errno));
        rc = QV_IO;
        goto out;
    }
    /* index files first, then the snapshot: no rebuild replaces a file in
     * between, so each file covers only writes the snapshot holds */
    pthread_rwlock_wrlock(&db->flock);
    nm = 1; /* m[0]: data.mdb */
    DIR *d = opendir(db->ixdir);
    struct dirent *e;
    while (d && (e = readdir(d)) && !rc) {
        if (!is_index_name(e->d_name)) continue;
        if (nm == cap) {
            member *nmem = realloc(m, 2 * cap * sizeof *m);
            if (!nmem) {
                rc = QV_NOMEM;
                break;
            }
            m = nmem;
            cap *= 2;
        }
        member *x = &m[nm++];
        snprintf(x->name, sizeof x->name, "indexes/%s", e->d_name);
        snprintf(path, sizeof path, "%s/%s", db->ixdir, e->d_name);
        snprintf(x->path, sizeof x->path, "%s/%s", tmp, e->d_name);
        if (link(path, x->path) != 0 && copy_file(path, x->path) != 0) {
            snprintf(err, errlen, "cannot copy index file %s: %s", path, strerror(errno));
            rc = QV_IO;
        }
    }
    if (d) closedir(d);
    snprintf(m[0].name, sizeof m[0].name, "data.mdb");
    snprintf(m[0].path, sizeof m[0].path, "%s/data.mdb", tmp);
    if (!rc) {
        int cfd = open(m[0].path, O_WRONLY | O_CREAT | O_EXCL, 0600);
        int lrc = cfd < 0 ? errno : mdb_env_copyfd2(qv_store_env(db->st), cfd, MDB_CP_COMPACT);
        if (!lrc && fsync(cfd) != 0) lrc = errno;
        if (cfd >= 0) close(cfd);
        if (lrc) {
            snprintf(err, errlen, "cannot copy the LMDB store: %s", mdb_strerror(lrc));
            rc = lrc == ENOSPC ? QV_FULL : QV_IO;
        }
    }
    pthread_rwlock_unlock(&db->flock);
    if (rc) goto out;
    uint64_t last_seq = 0;
    if ((rc = read_copy(m[0].path, colls, &last_seq))) {
        snprintf(err, errlen, "cannot read the LMDB copy back");
        goto out;
    }
    for (size_t i = 0; i < nm && !rc; i++) {
        if ((rc = file_sha(m[i].path, m[i].sha, &m[i].size))) {
            snprintf(err, errlen, "cannot read %s", m[i].path);
            goto out;
        }
        json_array_append_new(members, json_pack("{s:s,s:I,s:s}", "name", m[i].name, "size",
                                                 (json_int_t)m[i].size, "sha256", m[i].sha));
    }
    char created[32];
    time_t now = time(NULL);
    struct tm tm;
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
    manifest = json_pack("{s:i,s:s,s:s,s:I,s:O,s:O}", "format", QV_BACKUP_FORMAT,
                         "quiver_version", version ? version : "", "created", created, "last_seq",
                         (json_int_t)last_seq, "collections", colls, "members", members);
    char *mj = manifest ? json_dumps(manifest, JSON_INDENT(1) | JSON_SORT_KEYS) : NULL;
    if (!mj) {
        rc = QV_NOMEM;
        goto out;
    }
    /* the archive */
    snprintf(path, sizeof path, "%s/backup.tar", tmp);
    struct archive *a = archive_write_new();
    if (!a || archive_write_set_format_pax_restricted(a) != ARCHIVE_OK ||
        archive_write_open_filename(a, path) != ARCHIVE_OK) {
        snprintf(err, errlen, "cannot write the archive: %s", a ? archive_error_string(a) : "no memory");
        rc = QV_IO;
    }
    if (!rc) {
        struct archive_entry *me = archive_entry_new();
        archive_entry_set_pathname(me, "manifest.json");
        archive_entry_set_size(me, (la_int64_t)strlen(mj));
        archive_entry_set_filetype(me, AE_IFREG);
        archive_entry_set_perm(me, 0644);
        archive_entry_set_mtime(me, now, 0);
        if (archive_write_header(a, me) != ARCHIVE_OK ||
            archive_write_data(a, mj, strlen(mj)) != (la_ssize_t)strlen(mj))
            rc = QV_IO;
        archive_entry_free(me);
    }
    for (size_t i = 0; i < nm && !rc; i++) rc = add_member(a, &m[i], buf);
    if (a && archive_write_close(a) != ARCHIVE_OK) rc = QV_IO;
    if (rc && !err[0])
        snprintf(err, errlen, "cannot write the archive: %s (disk full?)",
                 a && archive_error_string(a) ? archive_error_string(a) : strerror(errno));
    if (a) archive_write_free(a);
    free(mj);
    if (rc) goto out;
    int fd = open(path, O_RDONLY);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        if (fd >= 0) close(fd);
        rc = QV_IO;
        snprintf(err, errlen, "cannot reopen the archive: %s", strerror(errno));
        goto out;
    }
    info->size = (uint64_t)sb.st_size;
    info->last_seq = last_seq;
    *fd_out = fd;
out:
    rm_tree(tmp); /* the archive stays readable through fd */
    json_decref(manifest);
    json_decref(colls);
    json_decref(members);
    free(m);
    free(buf);
    atomic_store(&db->backup_busy, 0);
    if (rc && !err[0]) snprintf(err, errlen, "backup failed: %s", qv_strerror(rc));
    return rc;
}

/* --------------------------------------------------------------- restore */
static int dir_empty(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return 1;
    struct dirent *e;
    int empty = 1;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) empty = 0;
    closedir(d);
    return empty;
}

static int safe_member(const char *name)
{
    if (!strcmp(name, "data.mdb")) return 1;
    return !strncmp(name, "indexes/", 8) && is_index_name(name + 8);
}

static int refuse(char *err, size_t errlen, const char *fmt, const char *a, const char *b)
{
    snprintf(err, errlen, fmt, a, b);
    return QV_INVALID;
}

/* Pass 1: the manifest, then every member against it. */
static int verify(const char *archive, json_t **manifest_out, char *err, size_t errlen)
{
    struct archive *a = archive_read_new();
    struct archive_entry *e;
    json_t *man = NULL, *members = NULL;
    char *buf = malloc(IOBUF), *mj = NULL;
    int rc = 0;
    size_t seen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    archive_read_support_format_tar(a);
    if (!buf || !ctx) {
        rc = QV_NOMEM;
        goto out;
    }
    if (archive_read_open_filename(a, archive, IOBUF) != ARCHIVE_OK) {
        rc = refuse(err, errlen, "cannot open %s: %s", archive, archive_error_string(a));
        goto out;
    }
    if (archive_read_next_header(a, &e) != ARCHIVE_OK ||
        strcmp(archive_entry_pathname(e), "manifest.json") != 0) {
        rc = refuse(err, errlen, "%s%s: not a Quiver backup (manifest.json is not its first member)",
                    "", archive);
        goto out;
    }
    la_int64_t msize = archive_entry_size(e);
    if (msize <= 0 || msize > MANIFEST_MAX || !(mj = malloc((size_t)msize + 1)) ||
        archive_read_data(a, mj, (size_t)msize) != msize) {
        rc = refuse(err, errlen, "%s%s: the manifest cannot be read", "", archive);
        goto out;
    }
    mj[msize] = 0;
    json_error_t je;
    man = json_loads(mj, 0, &je);
    json_t *fmt = man ? json_object_get(man, "format") : NULL;
    members = man ? json_object_get(man, "members") : NULL;
    if (!man || !json_is_integer(fmt) || !json_is_array(members)) {
        rc = refuse(err, errlen, "%s%s: the manifest is not valid", "", archive);
        goto out;
    }
    if (json_integer_value(fmt) != QV_BACKUP_FORMAT) {
        char f[32];
        snprintf(f, sizeof f, "%lld", (long long)json_integer_value(fmt));
        rc = refuse(err, errlen, "backup format %s; this quiverd restores format 1 (%s)", f, archive);
        goto out;
    }
    size_t nmem = json_array_size(members);
    char *done = calloc(nmem ? nmem : 1, 1);
    if (!done) {
        rc = QV_NOMEM;
        goto out;
    }
    int r;
    while (!rc && (r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
        const char *name = archive_entry_pathname(e);
        size_t j;
        json_t *mm = NULL;
        for (j = 0; j < nmem; j++) {
            mm = json_array_get(members, j);
            const char *mn = json_string_value(json_object_get(mm, "name"));
            if (mn && !strcmp(mn, name)) break;
        }
        if (j == nmem || !safe_member(name) || done[j]) {
            rc = refuse(err, errlen, "member %s of %s is not in the manifest (or is repeated)", name,
                        archive);
            break;
        }
        done[j] = 1;
        EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
        uint64_t size = 0;
        la_ssize_t n;
        while ((n = archive_read_data(a, buf, IOBUF)) > 0) {
            EVP_DigestUpdate(ctx, buf, (size_t)n);
            size += (uint64_t)n;
        }
        unsigned char md[32];
        unsigned mdlen;
        char sha[65] = "";
        if (n == 0 && EVP_DigestFinal_ex(ctx, md, &mdlen)) hex(md, 32, sha);
        const char *want = json_string_value(json_object_get(mm, "sha256"));
        json_int_t wsize = json_integer_value(json_object_get(mm, "size"));
        if (n < 0 || (json_int_t)size != wsize || !want || strcmp(want, sha) != 0) {
            rc = refuse(err, errlen, "member %s of %s is corrupt (size or SHA-256 differs from the "
                        "manifest's)", name, archive);
            break;
        }
        seen++;
    }
    if (!rc && r != ARCHIVE_EOF)
        rc = refuse(err, errlen, "%s is truncated or unreadable: %s", archive, archive_error_string(a));
    if (!rc && seen != nmem)
        rc = refuse(err, errlen, "%s%s lacks members the manifest lists", "", archive);
    free(done);
out:
    EVP_MD_CTX_free(ctx);
    archive_read_free(a);
    free(buf);
    free(mj);
    if (rc) json_decref(man);
    else *manifest_out = man;
    return rc;
}

int qv_backup_restore(const char *archive, const char *dir, int force, qv_backup_info *info,
                      char *err, size_t errlen)
{
    json_t *man = NULL;
    char path[4700], tmpp[4800], ixdir[4300];
    if (!dir_empty(dir) && !force) {
        snprintf(err, errlen, "%s is not empty: restore into an empty directory, or give --force "
                 "to replace its data", dir);
        return QV_EXISTS;
    }
    int rc = verify(archive, &man, err, errlen);
    if (rc) return rc;
    info->last_seq = (uint64_t)json_integer_value(json_object_get(man, "last_seq"));
    json_decref(man);
    /* checked: now write */
    snprintf(ixdir, sizeof ixdir, "%s/indexes", dir);
    if ((mkdir(dir, 0755) != 0 && errno != EEXIST) || (mkdir(ixdir, 0755) != 0 && errno != EEXIST)) {
        snprintf(err, errlen, "cannot make %s: %s", ixdir, strerror(errno));
        return QV_IO;
    }
    if (force) {
        snprintf(path, sizeof path, "%s/data.mdb", dir);
        unlink(path);
        snprintf(path, sizeof path, "%s/lock.mdb", dir);
        unlink(path);
        DIR *d = opendir(ixdir);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            snprintf(path, sizeof path, "%s/%s", ixdir, e->d_name);
            unlink(path);
        }
        if (d) closedir(d);
    }
    struct archive *a = archive_read_new();
    struct archive_entry *e;
    char *buf = malloc(IOBUF);
    archive_read_support_format_tar(a);
    info->size = 0;
    if (!buf || archive_read_open_filename(a, archive, IOBUF) != ARCHIVE_OK) rc = QV_IO;
    while (!rc && archive_read_next_header(a, &e) == ARCHIVE_OK) {
        const char *name = archive_entry_pathname(e);
        if (!safe_member(name)) continue; /* the manifest */
        snprintf(path, sizeof path, "%s/%s", dir, name);
        snprintf(tmpp, sizeof tmpp, "%s.restore-tmp", path);
        int fd = open(tmpp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) {
            rc = QV_IO;
            break;
        }
        la_ssize_t n;
        while ((n = archive_read_data(a, buf, IOBUF)) > 0)
            if (write(fd, buf, (size_t)n) != n) {
                rc = QV_IO;
                break;
            } else {
                info->size += (uint64_t)n;
            }
        if (n < 0 || fsync(fd) != 0) rc = QV_IO;
        close(fd);
        if (!rc && rename(tmpp, path) != 0) rc = QV_IO;
        if (rc) unlink(tmpp);
    }
    if (rc) snprintf(err, errlen, "cannot write the restored files into %s: %s", dir, strerror(errno));
    archive_read_free(a);
    free(buf);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    dfd = open(ixdir, O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return rc;
}
