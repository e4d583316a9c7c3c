/*
 * checkpoint: reading, checking and atomically replacing the resume file of
 * `quiver import` (format and rules in checkpoint.h). JSON through jansson.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"

json_t *qvck_files(const char *const *paths, const char *const *formats, size_t n, char *err,
                   size_t errlen)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++) {
        struct stat st;
        char *abs = realpath(paths[i], NULL);
        if (!abs || stat(abs, &st) != 0) {
            snprintf(err, errlen, "%s: %s", paths[i], strerror(errno));
            free(abs);
            json_decref(a);
            return NULL;
        }
        json_int_t mtime = (json_int_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
        json_t *f = json_pack("{s:s, s:I, s:I, s:s}", "path", abs, "size", (json_int_t)st.st_size,
                              "mtime", mtime, "format", formats[i]);
        free(abs);
        if (!f || json_array_append_new(a, f)) {
            json_decref(f);
            json_decref(a);
            a = NULL;
        }
    }
    if (!a) snprintf(err, errlen, "out of memory");
    return a;
}

char *qvck_default_path(const char *file)
{
    char *dir = strdup(file), *p = NULL;
    if (!dir) return NULL;
    const char *base = strrchr(file, '/') ? strrchr(file, '/') + 1 : file;
    /* root may write anywhere: a folder without any w bit counts as read-only */
    struct stat st;
    const char *d = dirname(dir);
    int writable = access(d, W_OK) == 0 && stat(d, &st) == 0 && (st.st_mode & 0222);
    free(dir);
    if (asprintf(&p, "%s.quiver-import.json", writable ? file : base) < 0) return NULL;
    return p;
}

int qvck_write(const char *path, const json_t *identity, uint64_t rows_done, uint64_t rows_skipped,
               char *err, size_t errlen)
{
    json_t *o = json_pack("{s:i, s:I, s:I}", "version", QVCK_VERSION, "rows_done", (json_int_t)rows_done,
                          "rows_skipped", (json_int_t)rows_skipped);
    if (o && json_object_update(o, (json_t *)identity)) {
        json_decref(o);
        o = NULL;
    }
    char *text = o ? json_dumps(o, JSON_INDENT(1)) : NULL, *tmp = NULL;
    json_decref(o);
    if (!text || asprintf(&tmp, "%s.tmp", path) < 0) {
        free(text);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    size_t len = strlen(text);
    text[len] = '\n'; /* json_dumps' terminator: written as the last line's end */
    int rc = -1, fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) goto out;
    for (size_t off = 0; off < len + 1;) {
        ssize_t w = write(fd, text + off, len + 1 - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) goto out;
        off += (size_t)w;
    }
    if (fsync(fd) != 0) goto out;
    int c = close(fd);
    fd = -1;
    if (c != 0 || rename(tmp, path) != 0) goto out;
    rc = 0;
out:
    if (rc) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        unlink(tmp);
    }
    free(text);
    free(tmp);
    return rc;
}

/* What a differing member means, for the message. */
static const char *mismatch_reason(const char *key)
{
    if (!strcmp(key, "collection")) return "it is for another collection";
    if (!strcmp(key, "format")) return "it is for another --format";
    if (!strcmp(key, "id_offset")) return "it is for another --id-offset";
    if (!strcmp(key, "files")) return "it is for other FILEs, or they changed since (path, size or mtime)";
    if (!strcmp(key, "dim")) return "it is for another dimension";
    return "it differs";
}

int qvck_load(const char *path, const json_t *identity, uint64_t *rows_done, uint64_t *rows_skipped,
              char *why, size_t whylen)
{
    json_error_t je;
    json_t *o = json_load_file(path, 0, &je);
    if (!o) {
        if (access(path, F_OK) != 0 && errno == ENOENT) return QVCK_NONE;
        snprintf(why, whylen, "%s (line %d)", je.text, je.line);
        return QVCK_BAD;
    }
    int rc = QVCK_MISMATCH;
    json_t *v = json_object_get(o, "version"), *rows = json_object_get(o, "rows_done");
    json_t *skipped = json_object_get(o, "rows_skipped");
    if (!json_is_integer(v) || json_integer_value(v) != QVCK_VERSION) {
        snprintf(why, whylen, "its version is not %d", QVCK_VERSION);
        goto out;
    }
    const char *key;
    json_t *want;
    json_object_foreach((json_t *)identity, key, want) {
        if (!json_equal(json_object_get(o, key), want)) {
            snprintf(why, whylen, "%s", mismatch_reason(key));
            goto out;
        }
    }
    if (!json_is_integer(rows) || json_integer_value(rows) < 0) {
        snprintf(why, whylen, "rows_done is missing");
        rc = QVCK_BAD;
        goto out;
    }
    *rows_done = (uint64_t)json_integer_value(rows);
    *rows_skipped = json_is_integer(skipped) && json_integer_value(skipped) > 0
                        ? (uint64_t)json_integer_value(skipped) : 0;
    rc = QVCK_OK;
out:
    json_decref(o);
    return rc;
}
