/*
 * Cluster backups and restores (cluster/cluster.h qc_backup_create,
 * qc_restore). A cluster backup is one tar archive:
 *   manifest.json   {"format": "quiver-cluster-backup", "version": 1, "quiverd",
 *                    "created", "collections": [{"name", "config" (hex of the
 *                    record codec), "dim", "metric", "shards", "replicas",
 *                    "shards_seq": [the log sequence each shard's copy holds],
 *                    "members": [{"name", "size", "sha256", "items"}]}]}
 *   shards/<collection>/<shard>.qvs   the shard's items from one ACTIVE replica,
 *                    as [u32 LE length][log entry (cluster/entry.h)] ...
 * A restore checks every member's size and SHA-256 before it writes
 * anything, creates the collections (the cluster must not hold them) and
 * writes the items through the log, as any write.
 */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "node_int.h"
#include "quiver/error.h"
#include "quiver/log.h"
#include "quiver/peer/v1/peer.pb-c.h"

#define FORMAT "quiver-cluster-backup"

static void hex(const uint8_t *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) snprintf(out + 2 * i, 3, "%02x", b[i]);
}

/* One shard's items from an ACTIVE replica into the member file f; the
 * sequence they hold in *seq. */
static int dump_shard(qc_cluster *c, const qc_meta *m, uint32_t s, FILE *f, uint64_t *seq, uint64_t *items,
                      uint8_t sha[32], char *err, size_t errlen)
{
    char addr[QC_MAX_ADDR + 1] = "", lname[QV_MAX_NAME + 1];
    const qc_shard *sh = &m->shard[s];
    for (uint32_t k = 0; k < sh->nrep; k++)
        if (qc_replica_readable(c, &sh->rep[k], addr)) break;
    if (!addr[0]) {
        snprintf(err, errlen, "shard %u of \"%s\" has no ACTIVE replica to copy", s, m->cfg.name);
        return QV_BUSY;
    }
    qc_replica_name(m->uid, s, lname);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    uint64_t after = 0;
    int first = 1, last = 0, rc = 0;
    *items = 0;
    while (!last && !rc) {
        Quiver__Peer__V1__SnapshotRequest req = QUIVER__PEER__V1__SNAPSHOT_REQUEST__INIT;
        req.replica = lname;
        req.after_id = after;
        req.first = first;
        qc_call call = {addr, "/quiver.peer.v1.Peer/Snapshot", &req.base,
                        &quiver__peer__v1__snapshot_chunk__descriptor, 0, 0, "", NULL, NULL, 0};
        qc_peer_call_all(qc_peers_of(c), &call, 1, qc_now_ms() + 60000);
        Quiver__Peer__V1__SnapshotChunk *ch = (Quiver__Peer__V1__SnapshotChunk *)call.reply;
        if (call.code != GRPC_STATUS_OK || !ch) {
            snprintf(err, errlen, "shard %u of \"%s\": %s", s, m->cfg.name, call.msg);
            rc = QV_IO;
            break;
        }
        if (first) *seq = ch->applied_seq;
        first = 0;
        last = ch->last;
        if (ch->entry.len) {
            uint8_t len[4] = {(uint8_t)ch->entry.len, (uint8_t)(ch->entry.len >> 8),
                              (uint8_t)(ch->entry.len >> 16), (uint8_t)(ch->entry.len >> 24)};
            if (fwrite(len, 4, 1, f) != 1 || fwrite(ch->entry.data, ch->entry.len, 1, f) != 1) {
                snprintf(err, errlen, "cannot write the backup's scratch file: %s", strerror(errno));
                rc = QV_IO;
            }
            EVP_DigestUpdate(md, len, 4);
            EVP_DigestUpdate(md, ch->entry.data, ch->entry.len);
            qc_entry e;
            void *mem = NULL;
            if (!qc_entry_decode(ch->entry.data, ch->entry.len, &e, &mem)) *items += e.n;
            free(mem);
            after = ch->last_id;
        }
        protobuf_c_message_free_unpacked(&ch->base, NULL);
    }
    unsigned hl = 0;
    EVP_DigestFinal_ex(md, sha, &hl);
    EVP_MD_CTX_free(md);
    return rc;
}

static int add_member(struct archive *a, const char *name, FILE *src, size_t size)
{
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, name);
    archive_entry_set_size(e, (la_int64_t)size);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_mtime(e, time(NULL), 0);
    int rc = archive_write_header(a, e) == ARCHIVE_OK ? 0 : QV_IO;
    archive_entry_free(e);
    char buf[1 << 16];
    size_t n;
    if (src) rewind(src);
    while (!rc && src && (n = fread(buf, 1, sizeof buf, src)) > 0)
        if (archive_write_data(a, buf, n) != (la_ssize_t)n) rc = QV_IO;
    return rc;
}

int qc_backup_create(qc_cluster *c, const char *version, const char *scratch_dir, int *fd, uint64_t *size,
                     uint64_t *last_seq, char *err, size_t errlen)
{
    *fd = -1;
    *size = *last_seq = 0;
    qc_meta *ms = NULL;
    size_t nm = 0;
    if (qc_meta_list(c, &ms, &nm)) return QV_NOMEM;
    size_t total = 0;
    for (size_t i = 0; i < nm; i++) total += ms[i].shards;
    FILE **files = calloc(total ? total : 1, sizeof *files);
    json_t *colls = json_array();
    int rc = files && colls ? 0 : QV_NOMEM;
    size_t f = 0;
    for (size_t i = 0; i < nm && !rc; i++) {
        uint8_t cfg[QV_CONFIG_LEN];
        char cfghex[2 * QV_CONFIG_LEN + 1];
        qv_config_encode(cfg, &ms[i].cfg);
        hex(cfg, sizeof cfg, cfghex);
        json_t *seqs = json_array(), *members = json_array();
        for (uint32_t s = 0; s < ms[i].shards && !rc; s++, f++) {
            if (!(files[f] = tmpfile())) {
                snprintf(err, errlen, "cannot make a scratch file: %s", strerror(errno));
                rc = QV_IO;
                break;
            }
            uint64_t seq = 0, items = 0;
            uint8_t sha[32];
            char shahex[65], name[QV_MAX_NAME + 64];
            if ((rc = dump_shard(c, &ms[i], s, files[f], &seq, &items, sha, err, errlen))) break;
            fflush(files[f]);
            hex(sha, 32, shahex);
            snprintf(name, sizeof name, "shards/%s/%u.qvs", ms[i].cfg.name, s);
            json_array_append_new(seqs, json_integer((json_int_t)seq));
            json_array_append_new(members, json_pack("{s:s,s:I,s:s,s:I}", "name", name, "size",
                                                     (json_int_t)ftell(files[f]), "sha256", shahex, "items",
                                                     (json_int_t)items));
            if (seq > *last_seq) *last_seq = seq;
        }
        json_array_append_new(colls, json_pack("{s:s,s:s,s:i,s:i,s:i,s:i,s:o,s:o}", "name", ms[i].cfg.name,
                                               "config", cfghex, "dim", (int)ms[i].cfg.dim, "metric",
                                               (int)ms[i].cfg.metric, "shards", (int)ms[i].shards, "replicas",
                                               (int)ms[i].replicas, "shards_seq", seqs, "members", members));
    }
    char *mj = NULL;
    if (!rc) {
        json_t *man = json_pack("{s:s,s:i,s:s,s:I,s:o}", "format", FORMAT, "version", 1, "quiverd", version,
                                "created", (json_int_t)time(NULL), "collections", colls);
        colls = NULL;
        mj = man ? json_dumps(man, JSON_INDENT(1)) : NULL;
        json_decref(man);
        if (!mj) rc = QV_NOMEM;
    }
    /* the archive: an unlinked file in the scratch folder, read back by the caller */
    char path[4200];
    snprintf(path, sizeof path, "%s/.cluster-backup-%d-XXXXXX", scratch_dir, (int)getpid());
    int afd = rc ? -1 : mkstemp(path);
    if (!rc && afd < 0) {
        snprintf(err, errlen, "cannot make %s: %s", path, strerror(errno));
        rc = QV_IO;
    }
    if (afd >= 0) unlink(path);
    struct archive *a = rc ? NULL : archive_write_new();
    if (!rc && (!a || archive_write_set_format_pax_restricted(a) != ARCHIVE_OK ||
                archive_write_open_fd(a, afd) != ARCHIVE_OK))
        rc = QV_IO;
    if (!rc) {
        FILE *mf = fmemopen(mj, strlen(mj), "r");
        rc = add_member(a, "manifest.json", mf, strlen(mj));
        if (mf) fclose(mf);
    }
    f = 0;
    for (size_t i = 0; i < nm && !rc; i++)
        for (uint32_t s = 0; s < ms[i].shards && !rc; s++, f++) {
            char name[QV_MAX_NAME + 64];
            snprintf(name, sizeof name, "shards/%s/%u.qvs", ms[i].cfg.name, s);
            rc = add_member(a, name, files[f], (size_t)ftell(files[f]));
        }
    if (a && archive_write_close(a) != ARCHIVE_OK && !rc) rc = QV_IO;
    if (a) archive_write_free(a);
    if (rc && !err[0]) snprintf(err, errlen, "cannot write the archive: %s", qv_strerror(rc));
    struct stat st;
    if (!rc && fstat(afd, &st) == 0) {
        *fd = afd;
        *size = (uint64_t)st.st_size;
    } else if (afd >= 0) {
        close(afd);
        if (!rc) rc = QV_IO;
    }
    for (size_t i = 0; files && i < total; i++)
        if (files[i]) fclose(files[i]);
    free(files);
    json_decref(colls);
    free(mj);
    for (size_t i = 0; i < nm; i++) qc_meta_free(&ms[i]);
    free(ms);
    return rc;
}

/* ----------------------------------------------------------------- restore */
typedef struct member {
    char name[QV_MAX_NAME + 64];
    uint64_t size;
    char sha[65];
} member;

/* Read the archive in fd: pass 0 checks every member against the manifest,
 * pass 1 writes. */
static int read_archive(int fd, json_t **man, int (*each)(void *ctx, const char *name, struct archive *a, uint64_t size),
                        void *ctx, char *err, size_t errlen)
{
    lseek(fd, 0, SEEK_SET);
    struct archive *a = archive_read_new();
    archive_read_support_format_tar(a);
    int rc = archive_read_open_fd(a, fd, 1 << 16) == ARCHIVE_OK ? 0 : QV_CORRUPT;
    if (rc) snprintf(err, errlen, "not a tar archive: %s", archive_error_string(a));
    struct archive_entry *e;
    int r;
    while (!rc && (r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
        const char *name = archive_entry_pathname(e);
        uint64_t size = (uint64_t)archive_entry_size(e);
        if (!strcmp(name, "manifest.json") && man && !*man) {
            char *buf = malloc(size + 1);
            if (!buf || archive_read_data(a, buf, size) != (la_ssize_t)size) rc = QV_CORRUPT;
            else {
                json_error_t je;
                if (!(*man = json_loadb(buf, size, 0, &je))) {
                    snprintf(err, errlen, "manifest.json does not parse: %s", je.text);
                    rc = QV_CORRUPT;
                }
            }
            free(buf);
            continue;
        }
        rc = each(ctx, name, a, size);
    }
    if (!rc && r != ARCHIVE_EOF) {
        snprintf(err, errlen, "the archive is damaged: %s", archive_error_string(a));
        rc = QV_CORRUPT;
    }
    archive_read_free(a);
    return rc;
}

typedef struct rctx {
    qc_cluster *c;
    json_t *man;
    char *err;
    size_t errlen;
    int pass;
    size_t checked;
    uint64_t items;
    int64_t deadline;
    qv_token_part parts[QC_MAX_SHARDS];
} rctx;

static json_t *member_of(json_t *man, const char *name, json_t **coll)
{
    json_t *colls = json_object_get(man, "collections"), *cj, *mj;
    size_t i, j;
    json_array_foreach(colls, i, cj) {
        json_array_foreach(json_object_get(cj, "members"), j, mj) {
            if (!strcmp(json_string_value(json_object_get(mj, "name")) ?: "", name)) {
                *coll = cj;
                return mj;
            }
        }
    }
    return NULL;
}

static int each_member(void *ctx, const char *name, struct archive *a, uint64_t size)
{
    rctx *x = ctx;
    json_t *cj = NULL, *mj = member_of(x->man, name, &cj);
    if (!mj) {
        snprintf(x->err, x->errlen, "member %s is not in the manifest", name);
        return QV_CORRUPT;
    }
    if ((uint64_t)json_integer_value(json_object_get(mj, "size")) != size) {
        snprintf(x->err, x->errlen, "member %s has %" PRIu64 " bytes, the manifest says %" PRId64, name, size,
                 (int64_t)json_integer_value(json_object_get(mj, "size")));
        return QV_CORRUPT;
    }
    qc_meta m = {0};
    if (x->pass == 1 && qc_meta_get(x->c, json_string_value(json_object_get(cj, "name")), &m)) {
        snprintf(x->err, x->errlen, "collection %s was not created", json_string_value(json_object_get(cj, "name")));
        return QV_NOTFOUND;
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    uint8_t *buf = NULL;
    size_t cap = 0;
    uint64_t off = 0;
    int rc = 0;
    while (!rc && off < size) {
        uint8_t lb[4];
        if (size - off < 4 || archive_read_data(a, lb, 4) != 4) {
            rc = QV_CORRUPT;
            break;
        }
        size_t len = (size_t)lb[0] | (size_t)lb[1] << 8 | (size_t)lb[2] << 16 | (size_t)lb[3] << 24;
        off += 4;
        if (len > size - off || len > QC_ENTRY_MAX * 2) {
            rc = QV_CORRUPT;
            break;
        }
        if (len > cap) {
            uint8_t *nb = realloc(buf, len);
            if (!nb) {
                rc = QV_NOMEM;
                break;
            }
            buf = nb;
            cap = len;
        }
        if (archive_read_data(a, buf, len) != (la_ssize_t)len) {
            rc = QV_CORRUPT;
            break;
        }
        off += len;
        EVP_DigestUpdate(md, lb, 4);
        EVP_DigestUpdate(md, buf, len);
        if (x->pass == 1) { /* through the log, as any write */
            qc_entry e;
            void *mem = NULL;
            if (!(rc = qc_entry_decode(buf, len, &e, &mem))) {
                qv_token_part parts[QC_MAX_SHARDS];
                size_t np = 0;
                rc = qc_write(x->c, &m, &e, 1, x->deadline, parts, &np, x->err, x->errlen);
                for (size_t i = 0; !rc && i < np; i++)
                    if (parts[i].seq > x->parts[parts[i].shard].seq) x->parts[parts[i].shard] = parts[i];
                x->items += e.n;
            }
            free(mem);
        }
    }
    uint8_t sha[32];
    unsigned hl = 0;
    char shahex[65];
    EVP_DigestFinal_ex(md, sha, &hl);
    EVP_MD_CTX_free(md);
    free(buf);
    hex(sha, 32, shahex);
    if (!rc && strcmp(shahex, json_string_value(json_object_get(mj, "sha256")) ?: "")) {
        snprintf(x->err, x->errlen, "member %s fails its SHA-256", name);
        rc = QV_CORRUPT;
    }
    if (rc == QV_CORRUPT && !x->err[0]) snprintf(x->err, x->errlen, "member %s is damaged", name);
    if (x->pass == 1 && !rc) {
        /* every shard's last entry applied by its ACTIVE replicas */
        qv_token_part parts[QC_MAX_SHARDS];
        size_t np = 0;
        for (uint32_t s = 0; s < m.shards; s++)
            if (x->parts[s].seq) parts[np++] = x->parts[s];
        rc = qc_wait_applied(x->c, &m, parts, np, x->deadline, x->err, x->errlen);
        memset(x->parts, 0, sizeof x->parts);
    }
    qc_meta_free(&m);
    x->checked++;
    return rc;
}

int qc_restore(qc_cluster *c, int fd, uint32_t *ncoll, uint64_t *items, char *err, size_t errlen)
{
    rctx x = {.c = c, .err = err, .errlen = errlen, .deadline = qc_now_ms() + 3600 * 1000};
    *ncoll = 0;
    *items = 0;
    err[0] = 0;
    /* pass 0: the manifest, and every member against it */
    int rc = read_archive(fd, &x.man, each_member, &x, err, errlen); /* manifest.json comes first */
    json_t *man = x.man;
    if (!rc && !man) {
        snprintf(err, errlen, "the archive has no manifest.json");
        rc = QV_CORRUPT;
    }
    if (!rc && (!json_is_string(json_object_get(man, "format")) ||
                strcmp(json_string_value(json_object_get(man, "format")), FORMAT))) {
        snprintf(err, errlen, "not a cluster backup (a single node's backup restores with quiverd --restore)");
        rc = QV_INVALID;
    }
    if (!rc && json_integer_value(json_object_get(man, "version")) != 1) {
        snprintf(err, errlen, "a cluster backup of format version %" PRId64 "; this quiverd reads version 1",
                 (int64_t)json_integer_value(json_object_get(man, "version")));
        rc = QV_VERSION;
    }
    json_t *colls = json_object_get(man, "collections"), *cj;
    size_t i, nmembers = 0;
    json_array_foreach(colls, i, cj) nmembers += json_array_size(json_object_get(cj, "members"));
    if (!rc && x.checked != nmembers) {
        snprintf(err, errlen, "the archive holds %zu of the manifest's %zu members", x.checked, nmembers);
        rc = QV_CORRUPT;
    }
    /* an empty cluster: none of the collections may exist */
    json_array_foreach(colls, i, cj) {
        qc_meta m;
        const char *name = json_string_value(json_object_get(cj, "name"));
        if (!rc && name && !qc_meta_get(c, name, &m)) {
            qc_meta_free(&m);
            snprintf(err, errlen, "collection \"%s\" exists: a restore needs a cluster without it", name);
            rc = QV_EXISTS;
        }
    }
    json_array_foreach(colls, i, cj) {
        if (rc) break;
        const char *name = json_string_value(json_object_get(cj, "name")), *cfghex =
            json_string_value(json_object_get(cj, "config"));
        uint8_t cfg[QV_CONFIG_LEN];
        qv_coll_config cc;
        memset(&cc, 0, sizeof cc);
        int ok = name && cfghex && strlen(cfghex) == 2 * QV_CONFIG_LEN;
        for (int b = 0; ok && b < QV_CONFIG_LEN; b++) {
            unsigned v;
            ok = sscanf(cfghex + 2 * b, "%2x", &v) == 1;
            cfg[b] = (uint8_t)v;
        }
        if (!ok || qv_config_decode(cfg, sizeof cfg, &cc)) {
            snprintf(err, errlen, "the manifest's entry for %s is damaged", name ? name : "a collection");
            rc = QV_CORRUPT;
            break;
        }
        snprintf(cc.name, sizeof cc.name, "%s", name);
        rc = qc_create(c, &cc, (uint32_t)json_integer_value(json_object_get(cj, "shards")),
                       (uint32_t)json_integer_value(json_object_get(cj, "replicas")), err, errlen);
        if (!rc) (*ncoll)++;
    }
    /* every replica open on its node before the first write: a replica not
     * yet open when a write waits for it would leave the read rotation */
    int64_t until = qc_now_ms() + 20000;
    json_array_foreach(colls, i, cj) {
        if (rc) break;
        const char *name = json_string_value(json_object_get(cj, "name"));
        if ((rc = qc_wait_open(c, name, until)))
            snprintf(err, errlen, "collection \"%s\" was created but not every replica opened within 20 s", name);
    }
    if (!rc) { /* pass 1: the items */
        x.pass = 1;
        json_t *again = NULL;
        rc = read_archive(fd, &again, each_member, &x, err, errlen);
        json_decref(again);
        *items = x.items;
    }
    /* readable when the reply goes: a replica that fell behind during the
     * restore (CATCHING_UP) is back once it has applied the log */
    for (int64_t until = qc_now_ms() + 60000; !rc;) {
        int ready = 1;
        json_array_foreach(colls, i, cj) {
            qc_meta m;
            if (qc_meta_get(c, json_string_value(json_object_get(cj, "name")), &m)) continue;
            for (uint32_t s = 0; s < m.shards && ready; s++) {
                if (!qc_shard_readable(c, &m.shard[s])) {
                    ready = 0;
                    if (qc_now_ms() >= until)
                        snprintf(err, errlen, "restored, but shard %u of \"%s\" has no ACTIVE replica after 60 s", s,
                                 m.cfg.name);
                }
            }
            qc_meta_free(&m);
        }
        if (ready) break;
        if (qc_now_ms() >= until) {
            rc = QV_CANCELLED;
            break;
        }
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    json_decref(man);
    return rc;
}
