/*
 * protobuf-c messages through gRPC core client calls (proto/pbcall.h).
 */
#include "pbcall.h"

#include <grpc/byte_buffer_reader.h>
#include <stdlib.h>
#include <string.h>

grpc_byte_buffer *qv_pb_pack(const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    grpc_slice s = grpc_slice_malloc(len);
    protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s); /* the buffer holds its own reference */
    return bb;
}

/* All of bb in one slice (grpc_slice_unref it); an empty one when unreadable. */
static grpc_slice read_all(grpc_byte_buffer *bb, int *ok)
{
    grpc_byte_buffer_reader rd;
    *ok = bb && grpc_byte_buffer_reader_init(&rd, bb);
    if (!*ok) return grpc_empty_slice();
    grpc_slice s = grpc_byte_buffer_reader_readall(&rd);
    grpc_byte_buffer_reader_destroy(&rd);
    return s;
}

ProtobufCMessage *qv_pb_unpack(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *d)
{
    int ok;
    grpc_slice s = read_all(bb, &ok);
    /* unpack copies what it keeps out of the slice, which can go right away */
    ProtobufCMessage *m = ok ? protobuf_c_message_unpack(d, NULL, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s))
                             : NULL;
    grpc_slice_unref(s);
    return m;
}

int qv_pb_bytes(grpc_byte_buffer *bb, uint8_t **out, size_t *len)
{
    int ok;
    grpc_slice s = read_all(bb, &ok);
    size_t n = GRPC_SLICE_LENGTH(s);
    *out = ok ? malloc(n ? n : 1) : NULL;
    if (*out) memcpy(*out, GRPC_SLICE_START_PTR(s), n);
    *len = *out ? n : 0;
    grpc_slice_unref(s);
    return *out ? 0 : -1;
}

void qv_unary_ops(qv_unary *u, const ProtobufCMessage *m, const grpc_metadata *md, size_t nmd, uint32_t flags,
                  grpc_op ops[6])
{
    u->send = qv_pb_pack(m);
    u->recv = NULL;
    grpc_metadata_array_init(&u->initial);
    grpc_metadata_array_init(&u->trailing);
    u->code = GRPC_STATUS_UNKNOWN;
    u->details = grpc_empty_slice();
    memset(ops, 0, 6 * sizeof *ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].flags = flags;
    ops[0].data.send_initial_metadata.count = nmd;
    ops[0].data.send_initial_metadata.metadata = nmd ? (grpc_metadata *)md : NULL;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = u->send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &u->initial;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &u->recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.status = &u->code;
    ops[5].data.recv_status_on_client.status_details = &u->details;
    ops[5].data.recv_status_on_client.trailing_metadata = &u->trailing;
}

void qv_unary_free(qv_unary *u)
{
    if (u->recv) grpc_byte_buffer_destroy(u->recv);
    if (u->send) grpc_byte_buffer_destroy(u->send);
    grpc_metadata_array_destroy(&u->initial);
    grpc_metadata_array_destroy(&u->trailing);
    grpc_slice_unref(u->details);
    memset(u, 0, sizeof *u);
}
