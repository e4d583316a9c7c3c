/*
 * grpc.health.v1.Health: Check answers SERVING for the whole server ("") and
 * each Quiver service once the data directory is open; Watch sends the status
 * and stays open until the client leaves or the server shuts down.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"
#include "services.h"

static atomic_int g_serving;

void health_set_serving(int serving) { atomic_store(&g_serving, serving); }

static const char *const g_services[] = {"", "quiver.v1.Collections", "quiver.v1.Items",
                                         "quiver.v1.Search", "quiver.v1.Admin",
                                         "grpc.health.v1.Health"};

static int status_for(const char *svc)
{
    for (size_t i = 0; i < sizeof g_services / sizeof *g_services; i++)
        if (strcmp(svc, g_services[i]) == 0)
            return atomic_load(&g_serving)
                       ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                       : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
    return -1;
}

void health_check(rpc *r)
{
    const Grpc__Health__V1__HealthCheckRequest *req = (const Grpc__Health__V1__HealthCheckRequest *)r->req;
    int st = status_for(req->service);
    Grpc__Health__V1__HealthCheckResponse rep = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    if (st < 0) {
        char msg[300];
        snprintf(msg, sizeof msg, "unknown service \"%.200s\"", req->service);
        rpc_finish(r, NULL, GRPC_STATUS_NOT_FOUND, msg);
        return;
    }
    rep.status = st;
    rpc_finish(r, &rep.base, GRPC_STATUS_OK, NULL);
}

void health_watch(rpc *r)
{
    const Grpc__Health__V1__HealthCheckRequest *req = (const Grpc__Health__V1__HealthCheckRequest *)r->req;
    int st = status_for(req->service);
    Grpc__Health__V1__HealthCheckResponse rep = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    rep.status = st < 0 ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN : st;
    /* stays open: ends with the client's cancel or the server's shutdown */
    rpc_send(r, &rep.base, 0);
}
