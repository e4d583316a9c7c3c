/*
 * quiverd's Prometheus metrics (--metrics-listen ADDR): counters the RPC
 * layer feeds (calls by method and status code, latency histograms, calls
 * in flight), gauges read at scrape time from the engine (write queue,
 * group commits, LMDB, collections and their indexes) and the process (RSS,
 * open files), and build information; served as the Prometheus text format
 * at /metrics by libmicrohttpd.
 *
 * Caveats:
 *  - metrics_rpc_begin/end are called from every gRPC worker: lock-free.
 *  - method is an index into the method table given to metrics_start (the
 *    one rpc_serve serves, server/methods.c), or -1 for methods quiverd does
 *    not serve. rpc.c reaches metrics_rpc_begin/end only through the hooks
 *    main.c sets in rpc_server_opts.
 */
#ifndef QUIVERD_METRICS_H
#define QUIVERD_METRICS_H

#include <stddef.h>

#include "rpc.h"

/* Build facts shown as quiver_build_info labels (set once, before start). */
typedef struct metrics_build {
    const char *version, *git_revision, *faiss_version, *simd_level, *blas_core;
} metrics_build;

/* Serve /metrics on addr ("HOST:PORT"; port 0 picks a free one, printed in
 * the log), labelling calls by the paths of methods (nmethods entries, alive
 * until metrics_stop). Returns 0, or -1 with the reason in err. */
int metrics_start(const char *addr, const metrics_build *b, const rpc_method *methods,
                  int nmethods, char *err, size_t errlen);
void metrics_stop(void);

/* A call of method taken in / finished with status code after seconds. */
void metrics_rpc_begin(int method);
void metrics_rpc_end(int method, int code, double seconds);

#endif
