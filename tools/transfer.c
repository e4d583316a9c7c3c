/*
 * transfer: `quiver export` (Items/Scan into an fvecs, npy, JSON Lines or
 * CSV file) and `quiver backup` (Admin/Backup into an archive file), both
 * written to FILE.tmp and renamed into place once complete and fsynced.
 * Built on cli.h (options, the connection, errors), meter.h (progress) and
 * formats.h (the file writers); `quiver import` is in import.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <grpc/status.h>

#include "cli.h"
#include "formats.h"
#include "meter.h"
#include "transfer.h"

/* --------------------------------------------------------- durable files */
/* fsync the directory holding path (after a rename into it). Returns 0 or -1
 * with errno. */
static int fsync_dir_of(const char *path)
{
    char *copy = strdup(path);
    if (!copy) return -1;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    free(copy);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

/* "FILE.tmp" (malloc'd) */
static char *tmp_name(const char *path)
{
    char *t = NULL;
    return asprintf(&t, "%s.tmp", path) < 0 ? NULL : t;
}

/* ---------------------------------------------------------------- export */
static const char usage_export[] =
    "Usage: quiver export COLLECTION --format fvecs|npy|jsonl|csv -o FILE\n"
    "\n"
    "Write every item of a collection to FILE, in id order, from one consistent\n"
    "snapshot (Items/Scan), with a progress bar on a terminal. The file is written\n"
    "as FILE.tmp and renamed once complete and on disk. --format defaults to FILE's\n"
    "extension. FILE \"-\" writes to stdout (not npy). No deadline applies.\n"
    "\n"
    "  --format F    jsonl: {\"id\":7,\"vector\":[...],\"attributes\":{...}} per line,\n"
    "                everything kept (floats printed to round-trip exactly);\n"
    "                csv: a header line, then id,v1,...,vd (attributes are lost);\n"
    "                fvecs (texmex) and npy (float32, rows x dim): vectors only —\n"
    "                ids and attributes are lost; rows are in id order, so an\n"
    "                import gives row r the id r + --id-offset (exact for ids\n"
    "                FIRST..FIRST+N-1 with --id-offset FIRST, which export prints)\n"
    "  -o, --output FILE\n"
    "                the file to write (required)\n"
    "\n"
    "Export then import into a new collection gives back the same ids (jsonl, csv),\n"
    "vectors bit for bit and attributes (jsonl). A cosine collection stores its\n"
    "vectors normalised: that is what is exported.\n";

typedef struct export_state {
    qvf_writer *w;
    char *tmp;
    qvc_stream *s;
    Quiver__V1__CollectionInfo *ci;
} export_state;

static int export_run(export_state *x, int argc, char **argv)
{
    const char *cmd = "export", *pos[1], *format = NULL, *out = NULL, *out2 = NULL;
    int npos;
    optdef opts[] = {OPT_VAL("--format", &format), OPT_VAL("-o", &out), OPT_VAL("--output", &out2), OPT_END};
    int rc = cli_parse_args(argc, argv, opts, pos, 1, &npos, cmd, usage_export);
    if (rc >= 0) return rc;
    if (npos != 1) return cli_usage_error(cmd, "the COLLECTION is missing");
    if (out2) out = out2;
    if (!out || !out[0]) return cli_usage_error(cmd, "-o FILE is required");
    qvf_format fmt = format ? qvf_format_by_name(format) : qvf_format_by_path(out);
    if (fmt == QVF_NONE || fmt == QVF_BVECS) {
        if (format) return cli_usage_error(cmd, "--format must be fvecs, npy, jsonl or csv, not '%s'", format);
        return cli_usage_error(cmd, "give --format fvecs|npy|jsonl|csv (FILE's extension does not tell)");
    }
    int to_stdout = !strcmp(out, "-");
    if (to_stdout && fmt == QVF_NPY) return cli_usage_error(cmd, "npy cannot be written to stdout");
    if (to_stdout && cli_json()) return cli_usage_error(cmd, "--json and -o - would both write to stdout");

    Quiver__V1__DescribeCollectionRequest dreq = QUIVER__V1__DESCRIBE_COLLECTION_REQUEST__INIT;
    dreq.name = (char *)pos[0];
    if ((rc = cli_call(QVC_COLLECTIONS_DESCRIBE, &dreq.base, &quiver__v1__collection_info__descriptor,
                       (ProtobufCMessage **)&x->ci)))
        return rc;
    size_t dim = x->ci->dim;
    char err[512];
    if (!to_stdout && !(x->tmp = tmp_name(out))) {
        fprintf(stderr, "quiver: out of memory\n");
        return EXIT_SERVER;
    }
    if (qvf_writer_open(to_stdout ? "-" : x->tmp, fmt, dim, &x->w, err, sizeof err)) {
        fprintf(stderr, "quiver: %s\n", err);
        free(x->tmp); /* nothing was created */
        x->tmp = NULL;
        return EXIT_SERVER;
    }

    Quiver__V1__ScanRequest req = QUIVER__V1__SCAN_REQUEST__INIT;
    req.collection = (char *)pos[0];
    req.with_vectors = 1;
    req.without_attributes = fmt != QVF_JSONL;
    cli_set_cancel_mode(1); /* Ctrl-C cancels the scan; the temp file goes */
    qvc *c = cli_conn(&rc);
    if (!c) return rc;
    qvc_status st;
    if (qvc_stream_start(c, QVC_ITEMS_SCAN, &req.base, 0, &x->s, &st)) return cli_report(&st);
    cli_set_stream(x->s);
    meter m;
    meter_start(&m, "export", 0, x->ci->count, 0);
    uint64_t n = 0, first = 0, last = 0;
    int contiguous = 1, got, failed = 0;
    Quiver__V1__ScanResponse *msg;
    while (!failed && (got = qvc_stream_next(x->s, &quiver__v1__scan_response__descriptor,
                                             (ProtobufCMessage **)&msg)) == 1) {
        for (size_t i = 0; i < msg->n_items && !failed; i++) {
            const Quiver__V1__Item *it = msg->items[i];
            if (it->n_vector != dim) {
                snprintf(err, sizeof err, "item %" PRIu64 " came with %zu floats, the collection has dim %zu",
                         it->id, it->n_vector, dim);
                failed = 1;
            } else if (n && it->id <= last) {
                snprintf(err, sizeof err, "the scan sent id %" PRIu64 " after %" PRIu64 " (not in id order)",
                         it->id, last);
                failed = 1;
            } else if (qvf_write(x->w, it->id, it->vector, it->attributes, it->n_attributes, err, sizeof err)) {
                failed = 2;
            }
            if (failed) break;
            if (n == 0) first = it->id;
            else if (it->id != last + 1) contiguous = 0;
            last = it->id;
            n++;
        }
        protobuf_c_message_free_unpacked(&msg->base, NULL);
        atomic_store(&m.done, n);
        atomic_store(&m.count, n);
    }
    cli_set_stream(NULL);
    int code = qvc_stream_finish(x->s, &st);
    x->s = NULL;
    if (atomic_load(&m.total) < n) atomic_store(&m.total, n);
    meter_end(&m);
    if (failed) { /* 1: the server's answer is wrong; 2: the file cannot be written */
        fprintf(stderr, "quiver: %s%s%s\n", failed == 2 && x->tmp ? x->tmp : "",
                failed == 2 && x->tmp ? ": " : "", err);
        return EXIT_SERVER;
    }
    if (code) {
        if (cli_interrupted()) {
            fprintf(stderr, "quiver: export of \"%s\" cancelled by Ctrl-C\n", pos[0]);
            return EXIT_INTERRUPTED;
        }
        return cli_report(&st);
    }
    rc = qvf_writer_close(x->w, err, sizeof err);
    x->w = NULL;
    if (rc) {
        fprintf(stderr, "quiver: %s: %s\n", x->tmp ? x->tmp : "stdout", err);
        return EXIT_SERVER;
    }
    if (x->tmp) {
        if (rename(x->tmp, out) != 0 || fsync_dir_of(out) != 0) {
            fprintf(stderr, "quiver: %s: %s\n", out, strerror(errno));
            return EXIT_SERVER;
        }
        free(x->tmp);
        x->tmp = NULL; /* renamed: nothing to remove */
    }
    double secs = meter_seconds(&m);
    int idless = fmt == QVF_FVECS || fmt == QVF_NPY;
    if (cli_json()) {
        json_t *o = json_object();
        json_object_set_new(o, "collection", json_string(pos[0]));
        json_object_set_new(o, "file", json_string(out));
        json_object_set_new(o, "format", json_string(qvf_format_name(fmt)));
        json_object_set_new(o, "items", json_integer((json_int_t)n));
        json_object_set_new(o, "first_id", n ? json_integer((json_int_t)first) : json_null());
        json_object_set_new(o, "last_id", n ? json_integer((json_int_t)last) : json_null());
        json_object_set_new(o, "ids_contiguous", json_boolean(contiguous));
        json_object_set_new(o, "seconds", json_real(secs));
        return cli_json_print(o);
    }
    FILE *info = to_stdout ? stderr : stdout;
    fprintf(info, "exported %" PRIu64 " items of \"%s\" to %s (%s) in %.1fs\n", n, pos[0], out,
            qvf_format_name(fmt), secs);
    if (idless && n) {
        if (contiguous)
            fprintf(info, "%s keeps no ids: rows hold ids %" PRIu64 "..%" PRIu64 " in order; import with "
                          "--id-offset %" PRIu64 " to get the same ids\n",
                    qvf_format_name(fmt), first, last, first);
        else
            fprintf(info, "%s keeps no ids: rows hold ids %" PRIu64 "..%" PRIu64 " in order, with gaps; an "
                          "import numbers them afresh (use jsonl or csv to keep ids)\n",
                    qvf_format_name(fmt), first, last);
    }
    return EXIT_OK;
}

int cmd_export(int argc, char **argv)
{
    export_state x = {0};
    int rc = export_run(&x, argc, argv);
    if (x.s) qvc_stream_finish(x.s, NULL);
    qvf_writer_abort(x.w);
    if (x.tmp) unlink(x.tmp);
    free(x.tmp);
    if (x.ci) protobuf_c_message_free_unpacked(&x.ci->base, NULL);
    return rc;
}

/* ---------------------------------------------------------------- backup */
static const char usage_backup[] =
    "Usage: quiver backup FILE\n"
    "\n"
    "Take a hot backup of the whole server (Admin/Backup): a consistent copy of\n"
    "every collection — the LMDB database and the index files that match it — as\n"
    "one tar archive with a manifest, while the server keeps serving reads and\n"
    "writes. Written as FILE.tmp, fsynced and renamed to FILE; a progress bar on a\n"
    "terminal. Prints the archive's size and its last sequence number (the newest\n"
    "write it holds). No deadline applies.\n"
    "\n"
    "Restore with: quiverd --restore FILE --data DIR [--force]\n";

int cmd_backup(int argc, char **argv)
{
    const char *cmd = "backup", *pos[1];
    int npos;
    int rc = cli_parse_args(argc, argv, NULL, pos, 1, &npos, cmd, usage_backup);
    if (rc >= 0) return rc;
    if (npos != 1 || !pos[0][0]) return cli_usage_error(cmd, "the FILE is missing");
    const char *path = pos[0];
    char *tmp = tmp_name(path);
    if (!tmp) {
        fprintf(stderr, "quiver: out of memory\n");
        return EXIT_SERVER;
    }
    int fd = -1;
    qvc_stream *s = NULL;
    qvc_status st;
    meter m;
    int metering = 0;
    uint64_t got = 0, total = 0, last_seq = 0;
    rc = EXIT_SERVER;
    cli_set_cancel_mode(1);
    qvc *c = cli_conn(&rc);
    if (!c) goto out;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "quiver: %s: %s\n", tmp, strerror(errno));
        rc = EXIT_SERVER;
        goto out;
    }
    Quiver__V1__BackupRequest req = QUIVER__V1__BACKUP_REQUEST__INIT;
    if (qvc_stream_start(c, QVC_ADMIN_BACKUP, &req.base, 0, &s, &st)) {
        rc = cli_report(&st);
        goto out;
    }
    cli_set_stream(s);
    meter_start(&m, "backup", 1, 0, 0);
    metering = 1;
    Quiver__V1__BackupChunk *ch;
    int n, write_failed = 0;
    while ((n = qvc_stream_next(s, &quiver__v1__backup_chunk__descriptor, (ProtobufCMessage **)&ch)) == 1) {
        total = ch->total_bytes;
        last_seq = ch->last_seq;
        atomic_store(&m.total, total);
        for (size_t off = 0; off < ch->data.len && !write_failed;) {
            ssize_t w = write(fd, ch->data.data + off, ch->data.len - off);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) write_failed = errno ? errno : EIO;
            else off += (size_t)w;
        }
        got += ch->data.len;
        protobuf_c_message_free_unpacked(&ch->base, NULL);
        atomic_store(&m.done, got);
        atomic_store(&m.count, got);
        if (write_failed) break;
    }
    cli_set_stream(NULL);
    int code = qvc_stream_finish(s, &st);
    s = NULL;
    meter_end(&m);
    metering = 0;
    if (write_failed) {
        fprintf(stderr, "quiver: %s: %s\n", tmp, strerror(write_failed));
        rc = EXIT_SERVER;
        goto out;
    }
    if (code) {
        if (cli_interrupted()) {
            fprintf(stderr, "quiver: backup cancelled by Ctrl-C\n");
            rc = EXIT_INTERRUPTED;
        } else {
            rc = cli_report(&st);
        }
        goto out;
    }
    if (total && got != total) {
        fprintf(stderr, "quiver: the server announced %" PRIu64 " bytes and sent %" PRIu64 "\n", total, got);
        rc = EXIT_SERVER;
        goto out;
    }
    if (got == 0) {
        fprintf(stderr, "quiver: the server sent an empty backup\n");
        rc = EXIT_SERVER;
        goto out;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        fd = -1;
        fprintf(stderr, "quiver: %s: %s\n", tmp, strerror(errno));
        rc = EXIT_SERVER;
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) != 0 || fsync_dir_of(path) != 0) {
        fprintf(stderr, "quiver: %s: %s\n", path, strerror(errno));
        rc = EXIT_SERVER;
        goto out;
    }
    free(tmp);
    tmp = NULL;
    double secs = meter_seconds(&m);
    if (cli_json()) {
        json_t *o = json_object();
        json_object_set_new(o, "file", json_string(path));
        json_object_set_new(o, "bytes", json_integer((json_int_t)got));
        json_object_set_new(o, "last_seq", json_integer((json_int_t)last_seq));
        json_object_set_new(o, "seconds", json_real(secs));
        rc = cli_json_print(o);
    } else {
        printf("backup written to %s: %" PRIu64 " bytes, last_seq %" PRIu64 ", in %.1fs\n", path, got,
               last_seq, secs);
        rc = EXIT_OK;
    }
out:
    if (metering) meter_end(&m);
    if (s) qvc_stream_finish(s, NULL);
    if (fd >= 0) close(fd);
    if (tmp) {
        unlink(tmp);
        free(tmp);
    }
    return rc;
}

static const char usage_cluster_restore[] =
    "Usage: quiver cluster restore FILE\n"
    "\n"
    "Load a cluster backup (quiver backup FILE taken from a cluster node) into a\n"
    "cluster (Admin.Restore): the archive is sent to the node, which checks every\n"
    "member's size and SHA-256 before it writes anything, refuses a cluster that\n"
    "already holds one of its collections, creates them (same spec, shards and\n"
    "replicas) and writes their items through the log. A progress bar on a\n"
    "terminal. A single node's backup restores with quiverd --restore instead.\n"
    "\n"
    "--json: {\"file\", \"collections\", \"items\", \"bytes\"}.\n";

/* quiver cluster restore FILE: a cluster backup's bytes sent, in order, over
 * one Admin.Restore stream; the cluster checks every member before it writes
 * anything. */
int cmd_cluster_restore(int argc, char **argv)
{
    const char *cmd = "cluster restore", *pos[1];
    int npos;
    int rc = cli_parse_args(argc, argv, NULL, pos, 1, &npos, cmd, usage_cluster_restore);
    if (rc >= 0) return rc;
    if (npos != 1 || !pos[0][0]) return cli_usage_error(cmd, "the FILE is missing");
    int fd = open(pos[0], O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "quiver: %s: %s\n", pos[0], strerror(errno));
        return EXIT_USAGE;
    }
    struct stat sb;
    uint64_t total = fstat(fd, &sb) == 0 ? (uint64_t)sb.st_size : 0, sent = 0;
    rc = EXIT_SERVER;
    cli_set_cancel_mode(1);
    qvc *c = cli_conn(&rc);
    qvc_upload *u = NULL;
    qvc_status st;
    uint8_t *buf = malloc(1 << 20);
    if (!c || !buf) goto out;
    if (qvc_upload_start(c, QVC_ADMIN_RESTORE, 0, &u, &st)) {
        rc = cli_report(&st);
        goto out;
    }
    meter m;
    meter_start(&m, "restore", 1, total, 0);
    ssize_t n;
    while ((n = read(fd, buf, 1 << 20)) > 0) {
        Quiver__V1__RestoreChunk ch = QUIVER__V1__RESTORE_CHUNK__INIT;
        ch.data.data = buf;
        ch.data.len = (size_t)n;
        if (qvc_upload_send(u, &ch.base)) break;
        sent += (uint64_t)n;
        atomic_store(&m.done, sent);
        atomic_store(&m.count, sent);
    }
    int read_failed = n < 0 ? errno : 0;
    Quiver__V1__RestoreResponse *rep = NULL;
    int code = qvc_upload_finish(u, &quiver__v1__restore_response__descriptor, (ProtobufCMessage **)&rep, &st);
    u = NULL;
    meter_end(&m);
    if (read_failed) {
        fprintf(stderr, "quiver: %s: %s\n", pos[0], strerror(read_failed));
        if (rep) protobuf_c_message_free_unpacked(&rep->base, NULL);
        rc = EXIT_SERVER;
        goto out;
    }
    if (code) {
        rc = cli_report(&st);
        goto out;
    }
    if (cli_json()) {
        json_t *o = json_object();
        json_object_set_new(o, "file", json_string(pos[0]));
        json_object_set_new(o, "collections", json_integer((json_int_t)rep->collections));
        json_object_set_new(o, "items", json_integer((json_int_t)rep->items));
        json_object_set_new(o, "bytes", json_integer((json_int_t)sent));
        protobuf_c_message_free_unpacked(&rep->base, NULL);
        rc = cli_json_print(o);
        goto out;
    }
    printf("restored %s: %" PRIu32 " collections, %" PRIu64 " items (%" PRIu64 " bytes)\n", pos[0],
           rep->collections, rep->items, sent);
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    rc = EXIT_OK;
out:
    free(buf);
    close(fd);
    return rc;
}
