/*
 * Prometheus metrics (server/metrics.h). Placeholder counters until the
 * HTTP exposition lands: calls in flight and by method.
 */
#include <stdatomic.h>

#include "metrics.h"

static atomic_long g_inflight;

int metrics_start(const char *addr, const metrics_build *b, char *err, size_t errlen)
{
    (void)addr, (void)b, (void)err, (void)errlen;
    return 0;
}

int metrics_port(void) { return 0; }

void metrics_stop(void) {}

void metrics_rpc_begin(int method)
{
    (void)method;
    atomic_fetch_add(&g_inflight, 1);
}

void metrics_rpc_end(int method, int code, double seconds)
{
    (void)method, (void)code, (void)seconds;
    atomic_fetch_sub(&g_inflight, 1);
}
