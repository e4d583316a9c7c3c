/*
 * Strings of an incoming request checked on the wire, before decoding: every
 * string field (at any depth) must be valid UTF-8 without a NUL byte.
 */
#ifndef QUIVER_WIRECHECK_H
#define QUIVER_WIRECHECK_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

/* 0 when every string field of the message d encoded in buf (len bytes) is
 * valid UTF-8 without NUL; -1 with the field's path and the reason in err
 * (errlen bytes) otherwise. Malformed wire data passes (the decoder refuses
 * it). */
int wire_check_strings(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len,
                       char *err, size_t errlen);

#endif
