/*
 * Index files (include/quiver/indexfile.h): save a built index atomically
 * with a versioned, checksummed header; load and verify it at start-up.
 * Not for deciding when to save or what to replay: that is db.c's job.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quiver/codec.h"
#include "quiver/error.h"
#include "indexfile.h"
#include "quiver/log.h"

#define HDR_LEN 512
static const char MAGIC[8] = {'Q', 'V', 'I', 'X', 'F', 'I', 'L', 'E'};


/* 64-bit checksum over 8-byte words (FNV-style mixing; catches truncation,
 * torn writes and flipped bytes, not an adversary). */
typedef struct { uint64_t h; uint8_t tail[8]; size_t ntail; } csum;
static void csum_init(csum *c) { c->h = 0xcbf29ce484222325ULL; c->ntail = 0; }
static void csum_word(csum *c, uint64_t w)
{
    c->h ^= w;
    c->h *= 0x100000001b3ULL;
    c->h ^= c->h >> 29;
}
static void csum_add(csum *c, const uint8_t *p, size_t n)
{
    while (n && c->ntail) {
        c->tail[c->ntail++] = *p++;
        n--;
        if (c->ntail == 8) {
            csum_word(c, qv_get_le64(c->tail));
            c->ntail = 0;
        }
    }
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        csum_word(c, w);
    }
    while (n--) c->tail[c->ntail++] = *p++;
}
static uint64_t csum_end(csum *c)
{
    if (c->ntail) {
        memset(c->tail + c->ntail, 0, 8 - c->ntail);
        csum_word(c, qv_get_le64(c->tail) ^ c->ntail);
    }
    return c->h;
}

/* Checksums len bytes of fd from offset off. */
static int csum_fd(int fd, off_t off, uint64_t len, uint64_t *out)
{
    size_t bufsz = 1 << 20;
    uint8_t *buf = malloc(bufsz);
    if (!buf) return QV_NOMEM;
    csum c;
    csum_init(&c);
    while (len) {
        size_t want = len < bufsz ? (size_t)len : bufsz;
        ssize_t n = pread(fd, buf, want, off);
        if (n <= 0) {
            free(buf);
            return n == 0 ? QV_CORRUPT : QV_IO;
        }
        csum_add(&c, buf, (size_t)n);
        off += n;
        len -= (uint64_t)n;
    }
    free(buf);
    *out = csum_end(&c);
    return 0;
}

void qv_ixfile_path(const char *dir, uint32_t coll_id, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s/%u.qvi", dir, coll_id);
}

static void encode_hdr(uint8_t *h, const qv_ixfile_meta *m, uint64_t plen, uint64_t sum)
{
    memset(h, 0, HDR_LEN);
    memcpy(h, MAGIC, 8);
    qv_put_le32(h + 8, QV_IXFILE_VERSION);
    qv_put_le32(h + 12, m->coll_id);
    qv_put_le32(h + 16, m->dim);
    qv_put_le32(h + 20, (uint32_t)m->metric);
    qv_put_le32(h + 24, (uint32_t)m->params.kind);
    qv_put_le32(h + 28, m->params.nlist);
    qv_put_le32(h + 32, m->params.pq_m);
    qv_put_le32(h + 36, m->params.pq_nbits);
    qv_put_le32(h + 40, m->params.refine);
    qv_put_le64(h + 44, m->covered_seq);
    qv_put_le64(h + 52, m->trained_for);
    qv_put_le32(h + 60, m->nprobe);
    qv_put_le32(h + 64, m->n_recall);
    qv_put_le64(h + 68, plen);
    qv_put_le64(h + 76, sum);
    memcpy(h + 84, m->name, strlen(m->name)); /* <= 128 bytes, zero padded */
    for (uint32_t i = 0; i < m->n_recall && i < QV_MAX_RECALL_POINTS; i++) {
        uint32_t r;
        memcpy(&r, &m->recall[i].recall, 4);
        qv_put_le32(h + 216 + 8 * i, r);
        qv_put_le32(h + 220 + 8 * i, m->recall[i].nprobe);
    }
    /* header checksum in the last 8 bytes */
    csum c;
    csum_init(&c);
    csum_add(&c, h, HDR_LEN - 8);
    qv_put_le64(h + HDR_LEN - 8, csum_end(&c));
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return QV_IO;
    int rc = fsync(fd) ? QV_IO : 0;
    close(fd);
    return rc;
}

int qv_ixfile_write_temp(const char *dir, const qv_ixfile_meta *meta, const qv_index *ix,
                         char *tmp, size_t tmplen)
{
    char path[4200];
    qv_ixfile_path(dir, meta->coll_id, path, sizeof path);
    snprintf(tmp, tmplen, "%s.tmp.%d", path, (int)getpid());
    uint8_t hdr[HDR_LEN];
    int rc = QV_IO;
    FILE *f = fopen(tmp, "w+b");
    if (!f) {
        qv_error("index file %s: %s", tmp, strerror(errno));
        return QV_IO;
    }
    memset(hdr, 0, sizeof hdr); /* placeholder until the payload is known */
    if (fwrite(hdr, 1, HDR_LEN, f) != HDR_LEN) goto fail;
    if ((rc = qv_index_write(ix, f))) goto fail;
    rc = QV_IO;
    if (fflush(f)) goto fail;
    off_t end = ftello(f);
    if (end < HDR_LEN) goto fail;
    uint64_t plen = (uint64_t)(end - HDR_LEN), sum;
    if ((rc = csum_fd(fileno(f), HDR_LEN, plen, &sum))) goto fail;
    rc = QV_IO;
    encode_hdr(hdr, meta, plen, sum);
    if (pwrite(fileno(f), hdr, HDR_LEN, 0) != HDR_LEN) goto fail;
    if (fsync(fileno(f))) goto fail;
    if (fclose(f)) {
        f = NULL;
        goto fail;
    }
    return 0;
fail:
    if (rc == QV_IO) qv_error("index file %s: %s", tmp, strerror(errno));
    if (f) fclose(f);
    unlink(tmp);
    tmp[0] = 0;
    return rc;
}

int qv_ixfile_commit(const char *dir, uint32_t coll_id, const char *tmp)
{
    char path[4200];
    qv_ixfile_path(dir, coll_id, path, sizeof path);
    if (rename(tmp, path)) {
        qv_error("index file %s: rename: %s", path, strerror(errno));
        unlink(tmp);
        return QV_IO;
    }
    if (fsync_dir(dir)) {
        qv_error("index file %s: fsync of directory failed: %s", path, strerror(errno));
        return QV_IO;
    }
    return 0;
}

int qv_ixfile_load(const char *dir, const qv_coll_config *expect, qv_ixfile_meta *m,
                   qv_index **out, char *why, size_t whylen)
{
    char path[4200];
    qv_ixfile_path(dir, expect->id, path, sizeof path);
    return qv_ixfile_load_path(path, expect, 1, m, out, why, whylen);
}

int qv_ixfile_load_path(const char *path, const qv_coll_config *expect, int check_id,
                        qv_ixfile_meta *m, qv_index **out, char *why, size_t whylen)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT) return QV_NOTFOUND;
        snprintf(why, whylen, "%s: %s", path, strerror(errno));
        return QV_IO;
    }
    uint8_t h[HDR_LEN];
    int rc = QV_CORRUPT;
    struct stat sb;
    if (fread(h, 1, HDR_LEN, f) != HDR_LEN || fstat(fileno(f), &sb)) {
        snprintf(why, whylen, "%s is truncated (no complete header)", path);
        goto fail;
    }
    if (memcmp(h, MAGIC, 8) != 0) {
        snprintf(why, whylen, "%s is not a Quiver index file (bad magic)", path);
        goto fail;
    }
    csum c;
    csum_init(&c);
    csum_add(&c, h, HDR_LEN - 8);
    if (csum_end(&c) != qv_get_le64(h + HDR_LEN - 8)) {
        snprintf(why, whylen, "%s: header checksum mismatch", path);
        goto fail;
    }
    uint32_t version = qv_get_le32(h + 8);
    if (version != QV_IXFILE_VERSION && version != 1) {
        snprintf(why, whylen, "%s has format version %u, this quiverd reads 1 and %u", path,
                 version, QV_IXFILE_VERSION);
        rc = QV_VERSION;
        goto fail;
    }
    memset(m, 0, sizeof *m);
    m->coll_id = qv_get_le32(h + 12);
    m->dim = qv_get_le32(h + 16);
    m->metric = (qv_metric)qv_get_le32(h + 20);
    m->params.kind = (qv_index_kind)qv_get_le32(h + 24);
    m->params.nlist = qv_get_le32(h + 28);
    m->params.pq_m = qv_get_le32(h + 32);
    m->params.pq_nbits = qv_get_le32(h + 36);
    m->params.refine = qv_get_le32(h + 40);
    m->covered_seq = qv_get_le64(h + 44);
    m->trained_for = qv_get_le64(h + 52);
    m->nprobe = qv_get_le32(h + 60);
    m->n_recall = qv_get_le32(h + 64);
    uint64_t plen = qv_get_le64(h + 68), sum = qv_get_le64(h + 76);
    memcpy(m->name, h + 84, QV_MAX_NAME);
    m->name[QV_MAX_NAME] = 0;
    if (m->n_recall > QV_MAX_RECALL_POINTS) m->n_recall = QV_MAX_RECALL_POINTS;
    for (uint32_t i = 0; i < m->n_recall; i++) {
        uint32_t r = qv_get_le32(h + 216 + 8 * i);
        memcpy(&m->recall[i].recall, &r, 4);
        m->recall[i].nprobe = qv_get_le32(h + 220 + 8 * i);
    }
    if ((check_id && m->coll_id != expect->id) || strcmp(m->name, expect->name) != 0 || m->dim != expect->dim ||
        m->metric != expect->metric) {
        snprintf(why, whylen, "%s belongs to collection \"%s\" #%u dim %u, not \"%s\" #%u dim %u",
                 path, m->name, m->coll_id, m->dim, expect->name, expect->id, expect->dim);
        goto fail;
    }
    if (version == 1 && m->params.refine > 1 && m->params.kind != QV_KIND_IVF_FLAT &&
        m->params.kind != QV_KIND_FLAT) {
        snprintf(why, whylen, "%s has format version 1, which kept no copy of the vectors for "
                 "refine", path);
        rc = QV_VERSION;
        goto fail;
    }
    if ((uint64_t)sb.st_size != HDR_LEN + plen) {
        snprintf(why, whylen, "%s is %lld bytes, its header says %llu", path,
                 (long long)sb.st_size, (unsigned long long)(HDR_LEN + plen));
        goto fail;
    }
    uint64_t got;
    if ((rc = csum_fd(fileno(f), HDR_LEN, plen, &got))) {
        snprintf(why, whylen, "%s: cannot read payload", path);
        goto fail;
    }
    rc = QV_CORRUPT;
    if (got != sum) {
        snprintf(why, whylen, "%s: payload checksum mismatch", path);
        goto fail;
    }
    if (fseeko(f, HDR_LEN, SEEK_SET)) goto fail;
    rc = qv_index_read(f, m->dim, m->metric, &m->params, out);
    if (rc) {
        snprintf(why, whylen, "%s: FAISS could not read the index (%s)", path, qv_strerror(rc));
        goto fail;
    }
    qv_index_set_nprobe(*out, m->nprobe ? m->nprobe : 1);
    fclose(f);
    return 0;
fail:
    fclose(f);
    return rc;
}

void qv_ixfile_remove(const char *dir, uint32_t coll_id)
{
    char path[4200];
    qv_ixfile_path(dir, coll_id, path, sizeof path);
    if (unlink(path) != 0 && errno != ENOENT)
        qv_warn("cannot remove index file %s: %s", path, strerror(errno));
}
