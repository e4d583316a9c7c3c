/*
 * quiver.v1.Admin, two server streams. RebuildIndex streams the progress of a
 * background rebuild: progress arrives on the rebuild thread; one send is in
 * flight at a time and newer progress replaces what is waiting; cancelling
 * the call cancels the rebuild (the old index keeps serving). Backup writes a
 * consistent archive of the data directory on a thread of its own and
 * streams it in 1 MiB chunks. The archive format and restore are the
 * engine's (quiver/backup.h), not this file's.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "quiver/backup.h"
#include "quiver/error.h"
#include "quiver/log.h"
#include "cluster.h"
#include "services.h"

unsigned g_test_rebuild_delay_ms;

typedef struct admin_state {
    rpc *r;
    qv_coll *c;
    pthread_mutex_t mu;
    int sending;     /* a send batch is in flight */
    int pending;     /* progress waiting to be sent */
    char phase[16];
    uint64_t done, total;
    double elapsed;
    int finished;    /* the rebuild ended */
    int frc;
    char fmsg[256];
    int over;        /* status sent or client gone */
    int started;     /* the rebuild was started (under g_admin_mu) */
    /* cluster: the replicas rebuild (svc_cluster.c); their final status and
     * the index they report */
    int cluster;
    _Atomic int cancel;
    grpc_status_code fcode;
    Quiver__V1__IndexInfo *findex; /* protobuf-c allocated */
} admin_state;

/* The close watcher can run on another worker while the call's start is still
 * running: this orders the two, so that a cancel arriving at the start is
 * never lost. */
static pthread_mutex_t g_admin_mu = PTHREAD_MUTEX_INITIALIZER;

static void state_free(void *p)
{
    admin_state *s = p;
    if (!s) return;
    if (s->findex) protobuf_c_message_free_unpacked(&s->findex->base, NULL);
    qv_coll_release(s->c);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* With s->mu held and no send in flight: send what is due. Returns 1 if a
 * batch was started. */
static int send_next(admin_state *s)
{
    rpc *r = s->r;
    if (s->over || s->sending) return 0;
    if (s->finished && s->cluster) {
        s->over = 1;
        s->sending = 1;
        if (s->fcode == GRPC_STATUS_OK) {
            Quiver__V1__RebuildProgress m = QUIVER__V1__REBUILD_PROGRESS__INIT;
            m.phase = "done";
            m.done = s->done;
            m.total = s->total;
            m.elapsed_seconds = s->elapsed;
            m.index = s->findex;
            rpc_send(r, &m.base, 1);
        } else {
            rpc_finish(r, NULL, s->fcode, s->fmsg);
        }
        return 1;
    }
    if (s->finished) {
        s->over = 1;
        s->sending = 1;
        if (s->frc == 0) {
            qv_arena *a = qv_arena_new();
            Quiver__V1__RebuildProgress m = QUIVER__V1__REBUILD_PROGRESS__INIT;
            Quiver__V1__IndexInfo ii;
            qv_coll_info info;
            qv_coll_info_get(s->c, &info);
            m.phase = "done";
            m.done = m.total = info.indexed;
            m.elapsed_seconds = s->elapsed;
            if (a) {
                srv_fill_index_info(a, &info, &ii);
                m.index = &ii;
            }
            rpc_send(r, &m.base, 1);
            qv_arena_free(a);
        } else if (s->frc == QV_CANCELLED) {
            rpc_finish(r, NULL, GRPC_STATUS_CANCELLED, "rebuild cancelled; the old index keeps serving");
        } else {
            char msg[512];
            snprintf(msg, sizeof msg, "rebuild of \"%s\" failed: %s", qv_coll_config_of(s->c)->name,
                     s->fmsg);
            rpc_finish(r, NULL, srv_status_of(s->frc), msg);
        }
        return 1;
    }
    if (!s->pending) return 0;
    s->pending = 0;
    s->sending = 1;
    Quiver__V1__RebuildProgress m = QUIVER__V1__REBUILD_PROGRESS__INIT;
    m.phase = s->phase;
    m.done = s->done;
    m.total = s->total;
    m.elapsed_seconds = s->elapsed;
    rpc_send(r, &m.base, 0);
    return 1;
}

static void on_progress(void *ctx, const qv_rebuild_progress *p)
{
    admin_state *s = ctx;
    pthread_mutex_lock(&s->mu);
    snprintf(s->phase, sizeof s->phase, "%s", p->phase);
    s->done = p->done;
    s->total = p->total;
    s->elapsed = p->elapsed;
    s->pending = strcmp(p->phase, "done") != 0;
    send_next(s);
    pthread_mutex_unlock(&s->mu);
}

static void on_finished(void *ctx, int rc, const char *msg)
{
    admin_state *s = ctx;
    rpc *r = s->r;
    pthread_mutex_lock(&s->mu);
    s->finished = 1;
    s->frc = rc;
    snprintf(s->fmsg, sizeof s->fmsg, "%s", msg ? msg : "");
    send_next(s);
    pthread_mutex_unlock(&s->mu);
    rpc_unref(r); /* the rebuild's reference */
}

/* cluster: the replicas' progress, summed (svc_cluster.c) */
static void cluster_progress(void *ctx, const char *phase, uint64_t done, uint64_t total, double elapsed)
{
    admin_state *s = ctx;
    pthread_mutex_lock(&s->mu);
    snprintf(s->phase, sizeof s->phase, "%s", phase);
    s->done = done;
    s->total = total;
    s->elapsed = elapsed;
    s->pending = 1;
    send_next(s);
    pthread_mutex_unlock(&s->mu);
}

static void cluster_finished(void *ctx, grpc_status_code code, const char *msg, Quiver__V1__IndexInfo *ii,
                             uint64_t done, double elapsed)
{
    admin_state *s = ctx;
    rpc *r = s->r;
    pthread_mutex_lock(&s->mu);
    s->finished = 1;
    s->fcode = code;
    s->findex = ii;
    s->done = s->total = done;
    s->elapsed = elapsed;
    snprintf(s->fmsg, sizeof s->fmsg, "%s", msg ? msg : "");
    send_next(s);
    pthread_mutex_unlock(&s->mu);
    rpc_unref(r);
}

void admin_rebuild_start(rpc *r)
{
    const Quiver__V1__RebuildIndexRequest *req = (const Quiver__V1__RebuildIndexRequest *)r->req;
    int rt = srv_routed(r);
    if (rt < 0) return;
    admin_state *s = calloc(1, sizeof *s);
    char err[512];
    if (!s) {
        rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    pthread_mutex_init(&s->mu, NULL);
    s->r = r;
    pthread_mutex_lock(&g_admin_mu);
    r->state = s;
    pthread_mutex_unlock(&g_admin_mu);
    r->state_free = state_free;
    grpc_status_code code;
    if (rt) { /* every replica of every shard rebuilds; progress summed */
        qv_coll *none;
        qv_coll_config cfg;
        if (srv_find_config(req->collection, &none, &cfg, &code, err, sizeof err)) {
            rpc_fail(r, code, "%s", err);
            return;
        }
        if (srv_parse_index_spec(req->index, cfg.dim, &(qv_index_params){0}, err, sizeof err)) {
            rpc_fail(r, GRPC_STATUS_INVALID_ARGUMENT, "%s", err);
            return;
        }
        s->cluster = 1;
        rpc_ref(r); /* held until cluster_finished */
        pthread_mutex_lock(&g_admin_mu);
        s->started = 1;
        pthread_mutex_unlock(&g_admin_mu);
        srv_cluster_rebuild(r, cluster_progress, cluster_finished, s, &s->cancel);
        return;
    }
    if (!(s->c = srv_find_coll(req->collection, &code, err, sizeof err))) {
        rpc_fail(r, code, "%s", err);
        return;
    }
    qv_rebuild_req rr;
    memset(&rr, 0, sizeof rr);
    if (srv_parse_index_spec(req->index, qv_coll_config_of(s->c)->dim, &rr.spec, err, sizeof err)) {
        rpc_fail(r, GRPC_STATUS_INVALID_ARGUMENT, "%s", err);
        return;
    }
    rr.progress = on_progress;
    rr.finished = on_finished;
    rr.ctx = s;
    /* test builds widen the window between the call's start and the
     * rebuild's (quiverd-test: QUIVER_TEST_REBUILD_START_DELAY_MS) */
    if (g_test_rebuild_delay_ms) usleep((useconds_t)g_test_rebuild_delay_ms * 1000);
    rpc_ref(r); /* held by the rebuild until on_finished */
    /* hold the lock so that the first progress cannot race this start */
    pthread_mutex_lock(&s->mu);
    int rc = qv_coll_rebuild(s->c, &rr, err, sizeof err);
    if (rc) {
        s->over = 1;
        pthread_mutex_unlock(&s->mu);
        rpc_unref(r);
        if (rc == QV_BUSY) rpc_fail(r, GRPC_STATUS_FAILED_PRECONDITION, "%s", err);
        else if (rc == QV_INVALID) rpc_fail(r, GRPC_STATUS_INVALID_ARGUMENT, "%s", err);
        else rpc_fail(r, srv_status_of(rc), "cannot start rebuild: %s", qv_strerror(rc));
        return;
    }
    pthread_mutex_unlock(&s->mu);
    pthread_mutex_lock(&g_admin_mu);
    s->started = 1;
    int gone = atomic_load(&r->closed) && r->cancelled;
    pthread_mutex_unlock(&g_admin_mu);
    if (gone) qv_coll_rebuild_cancel(s->c, s); /* cancelled before it started */
}

void admin_rebuild_step(rpc *r, int ok)
{
    admin_state *s = r->state;
    pthread_mutex_lock(&s->mu);
    s->sending = 0;
    if (!ok) s->over = 1; /* client went away: send nothing more */
    else send_next(s);
    pthread_mutex_unlock(&s->mu);
}

void admin_rebuild_closed(rpc *r)
{
    pthread_mutex_lock(&g_admin_mu);
    admin_state *s = r->state;
    int started = s && s->started;
    pthread_mutex_unlock(&g_admin_mu);
    /* not started yet: the start sees r->closed and cancels itself */
    if (started && r->cancelled && s->cluster) atomic_store(&s->cancel, 1); /* the replicas' calls end */
    else if (started && r->cancelled) qv_coll_rebuild_cancel(s->c, s);
}

/* ----------------------------------------------------------------- Backup */
#define BACKUP_CHUNK (1 << 20)

const char *g_version = "";
const char *g_data_dir = ".";

typedef struct backup_state {
    rpc *r;
    int fd;
    qv_backup_info info;
    uint64_t sent;
    int over;
} backup_state;

static void backup_free(void *p)
{
    backup_state *s = p;
    if (!s) return;
    if (s->fd >= 0) close(s->fd);
    free(s);
}

/* The next chunk (the last one with the status). */
static void backup_send(backup_state *s)
{
    rpc *r = s->r;
    uint8_t *buf = malloc(BACKUP_CHUNK);
    uint64_t left = s->info.size - s->sent;
    size_t want = left < BACKUP_CHUNK ? (size_t)left : BACKUP_CHUNK;
    ssize_t n = buf ? pread(s->fd, buf, want, (off_t)s->sent) : -1;
    if (n != (ssize_t)want) {
        free(buf);
        s->over = 1;
        rpc_fail(r, GRPC_STATUS_INTERNAL, "cannot read the backup archive at offset %llu: %s",
                 (unsigned long long)s->sent, buf ? strerror(errno) : "out of memory");
        return;
    }
    Quiver__V1__BackupChunk ch = QUIVER__V1__BACKUP_CHUNK__INIT;
    ch.data.data = buf;
    ch.data.len = want;
    ch.total_bytes = s->info.size;
    ch.last_seq = s->info.last_seq;
    s->sent += want;
    int last = s->sent == s->info.size;
    if (last) s->over = 1;
    rpc_send(r, &ch.base, last);
    free(buf);
}

static void *backup_thread(void *arg)
{
    backup_state *s = arg;
    rpc *r = s->r;
    char err[1024] = "";
    int rc = g_cluster ? qc_backup_create(g_cluster, g_version, g_data_dir, &s->fd, &s->info.size,
                                          &s->info.last_seq, err, sizeof err)
                       : qv_backup_create(g_db, g_version, &s->fd, &s->info, err, sizeof err);
    if (rc) {
        s->over = 1;
        grpc_status_code code = rc == QV_BUSY ? GRPC_STATUS_FAILED_PRECONDITION
                                : rc == QV_FULL ? GRPC_STATUS_RESOURCE_EXHAUSTED
                                                : srv_status_of(rc);
        rpc_fail(r, code, "%s", err);
    } else {
        qv_info("backup: %llu bytes, writes up to sequence number %llu",
                (unsigned long long)s->info.size, (unsigned long long)s->info.last_seq);
        backup_send(s);
    }
    rpc_unref(r);
    return NULL;
}

void admin_backup_start(rpc *r)
{
    /* the BackupRequest has no fields yet: nothing to read from r->req; in
     * a cluster the archive holds every collection's shards (cbackup.c) */
    if (srv_routed(r) < 0) return;
    if (auth_scoped()) {
        rpc_fail(r, GRPC_STATUS_PERMISSION_DENIED,
                 "a backup copies every collection: a key scoped to some cannot take one");
        return;
    }
    backup_state *s = calloc(1, sizeof *s);
    if (!s) {
        rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    s->r = r;
    s->fd = -1;
    r->state = s;
    r->state_free = backup_free;
    /* the copy takes seconds: not on a poller */
    pthread_t th;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    rpc_ref(r);
    if (pthread_create(&th, &at, backup_thread, s) != 0) {
        rpc_unref(r);
        s->over = 1;
        rpc_fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "cannot start the backup's thread");
    }
    pthread_attr_destroy(&at);
}

void admin_backup_step(rpc *r, int ok)
{
    backup_state *s = r->state;
    if (!ok || s->over) return;
    backup_send(s);
}

/* ---------------------------------------------------------- ClusterStatus */
void admin_cluster_status(rpc *r)
{
    int rt = srv_routed(r);
    if (rt) {
        if (rt > 0) srv_cluster_status(r);
        return;
    }
    /* a single node: no nodes, no shards to report */
    Quiver__V1__ClusterStatusResponse rep = QUIVER__V1__CLUSTER_STATUS_RESPONSE__INIT;
    rep.clustered = 0;
    rpc_finish(r, &rep.base, GRPC_STATUS_OK, NULL);
}
