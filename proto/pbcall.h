/*
 * protobuf-c messages through gRPC core client calls: a message packed into
 * and read out of a byte buffer, and the six operations of a unary call.
 * Shared by the CLI's client (tools/client.c), the cluster's peer calls
 * (cluster/peer.c) and its etcd client (cluster/etcd.c). Not for the server:
 * quiverd encodes its replies itself (server/wire.c).
 */
#ifndef QV_PBCALL_H
#define QV_PBCALL_H

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>
#include <stdint.h>

/* m packed into a new byte buffer (grpc_byte_buffer_destroy it). */
grpc_byte_buffer *qv_pb_pack(const ProtobufCMessage *m);

/* bb decoded as d (protobuf_c_message_free_unpacked it); NULL when bb is
 * NULL or does not decode as d. */
ProtobufCMessage *qv_pb_unpack(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *d);

/* bb's bytes copied into *out (malloc'd, free it; never NULL on success),
 * their number in *len. Returns 0, or -1 when out of memory (or bb NULL). */
int qv_pb_bytes(grpc_byte_buffer *bb, uint8_t **out, size_t *len);

/* What a unary call sends and receives: qv_unary_ops fills it with ops, the
 * call's one batch; once that batch completes, recv (NULL: no message),
 * code and details hold the answer. qv_unary_free releases it all. */
typedef struct qv_unary {
    grpc_byte_buffer *send, *recv;
    grpc_metadata_array initial, trailing;
    grpc_status_code code;
    grpc_slice details;
} qv_unary;

/* Prepares u and the six operations of a unary call sending m with the nmd
 * metadata md (borrowed until the batch completes) and flags on the initial
 * metadata (e.g. GRPC_INITIAL_METADATA_WAIT_FOR_READY). */
void qv_unary_ops(qv_unary *u, const ProtobufCMessage *m, const grpc_metadata *md, size_t nmd, uint32_t flags,
                  grpc_op ops[6]);
void qv_unary_free(qv_unary *u);

#endif
