/*
 * Calls between the nodes of a cluster: unary gRPC calls to peers, many at
 * once on one completion queue (a read's fan-out to its shards), over one
 * channel per peer address kept for the process's life. Every call carries
 * the "quiver-peer" metadata and, with API keys on, the cluster key.
 */
#ifndef QUIVER_CLUSTER_PEER_H
#define QUIVER_CLUSTER_PEER_H

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>
#include <stdint.h>

#define QC_PEER_MD "quiver-peer"

typedef struct qc_peers qc_peers;

/* A unary call answered inside this process (the server's handlers, called
 * in place): the status, the packed reply (malloc'd) on OK. */
typedef grpc_status_code (*qc_local_fn)(const char *method, const ProtobufCMessage *req, uint8_t **reply,
                                        size_t *len, char *msg, size_t msglen);

typedef struct qc_peer_security {
    const char *api_key;                  /* NULL: none */
    int tls;                              /* speak TLS to peers */
    const char *ca, *cert, *key;          /* PEM files (NULL: system roots / no client cert) */
    /* calls to self_addr go to local (when set) instead of the network */
    const char *self_addr;
    qc_local_fn local;
} qc_peer_security;

/* One call: filled in by the caller (addr, method, req, reply_desc), the rest
 * by qc_peer_call_all. */
typedef struct qc_call {
    const char *addr;                            /* host:port */
    const char *method;                          /* "/quiver.v1.Search/Search" */
    const ProtobufCMessage *req;
    const ProtobufCMessageDescriptor *reply_desc;
    int64_t deadline_ms; /* this call's own (0: the batch's) */
    /* results */
    grpc_status_code code;
    char msg[512];
    ProtobufCMessage *reply; /* free with protobuf_c_message_free_unpacked */
    uint8_t *raw;            /* reply_desc NULL: the reply's bytes as sent (free()) */
    size_t raw_len;
} qc_call;

int qc_peers_new(const qc_peer_security *sec, qc_peers **out);
void qc_peers_free(qc_peers *p);

/* Run n calls at once and wait for all of them (deadline: CLOCK_REALTIME
 * ms). Each call's code/msg/reply is set. */
void qc_peer_call_all(qc_peers *p, qc_call *calls, size_t n, int64_t deadline_ms);

/* A server-streaming call to addr: take(ctx, msg) for each message (it owns
 * msg; non-zero stops reading). Returns the call's status, its message in
 * msg. */
grpc_status_code qc_peer_stream(qc_peers *p, const char *addr, const char *method,
                                const ProtobufCMessage *req, const ProtobufCMessageDescriptor *desc,
                                int64_t deadline_ms, int (*take)(void *ctx, ProtobufCMessage *m),
                                void *ctx, char *msg, size_t msglen);

/* CLOCK_REALTIME now in ms. */
int64_t qc_now_ms(void);

#endif
