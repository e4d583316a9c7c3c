/*
 * libFuzzer: a request as it arrives, through what the handlers do before the
 * engine: the wire string check, protobuf-c's decoder, then the validation of
 * the decoded fields (vectors, attribute maps, index specs, names). The first
 * byte picks the request type. Never a crash, never a leak.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quiver/codec.h"
#include "quiver/types.h"
#include "services.h"
#include "wirecheck.h"

qv_db *g_db; /* convert.c's lookups are not reached here */

static const ProtobufCMessageDescriptor *const types[] = {
    &quiver__v1__upsert_request__descriptor,        &quiver__v1__search_request__descriptor,
    &quiver__v1__create_collection_request__descriptor, &quiver__v1__get_items_request__descriptor,
    &quiver__v1__delete_items_request__descriptor,  &quiver__v1__rebuild_index_request__descriptor,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const ProtobufCMessageDescriptor *d = types[data[0] % (sizeof types / sizeof types[0])];
    char err[600];
    if (wire_check_strings(d, data + 1, size - 1, err, sizeof err) != 0) {
        if (!err[0]) abort(); /* a refusal always says why */
        return 0;
    }
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, size - 1, data + 1);
    if (!m) return 0;
    const uint32_t dim = 4;
    if (d == &quiver__v1__upsert_request__descriptor) {
        Quiver__V1__UpsertRequest *r = (Quiver__V1__UpsertRequest *)m;
        qv_buf b = {0};
        for (size_t i = 0; i < r->n_items; i++) {
            const Quiver__V1__Item *it = r->items[i];
            (void)srv_check_vector(it->vector, it->n_vector, dim, "c", "items", 0, err,
                               sizeof err);
            (void)srv_encode_attrs(it->attributes, it->n_attributes, &b, "items[i].attributes", err,
                               sizeof err);
        }
        /* what was encoded decodes */
        qv_attr_iter iter;
        if (b.len && qv_attr_iter_init(&iter, b.data, b.len) == 0) {
            qv_attr a;
            while (qv_attr_next(&iter, &a) == 1) {
                const char *s;
                size_t l;
                if (a.type == QV_ATTR_STRING_LIST)
                    while (qv_attr_list_next(&a, &s, &l) == 1) {
                    }
            }
        }
        qv_buf_free(&b);
    } else if (d == &quiver__v1__search_request__descriptor) {
        Quiver__V1__SearchRequest *r = (Quiver__V1__SearchRequest *)m;
        for (size_t i = 0; i < r->n_queries; i++)
            if (r->queries[i]->kind_case == QUIVER__V1__QUERY__KIND_VECTOR && r->queries[i]->vector)
                (void)srv_check_vector(r->queries[i]->vector->values, r->queries[i]->vector->n_values,
                                   dim, "c", "queries", i, err, sizeof err);
    } else if (d == &quiver__v1__create_collection_request__descriptor) {
        Quiver__V1__CreateCollectionRequest *r = (Quiver__V1__CreateCollectionRequest *)m;
        qv_index_params p;
        (void)qv_name_check(r->name);
        if (r->dim > 0 && r->dim <= 4096 && srv_parse_index_spec(r->index, r->dim, &p, err, sizeof err) == 0 &&
            p.kind != QV_KIND_AUTO)
            (void)qv_index_params_check(r->dim, &p, err, sizeof err);
    } else if (d == &quiver__v1__rebuild_index_request__descriptor) {
        Quiver__V1__RebuildIndexRequest *r = (Quiver__V1__RebuildIndexRequest *)m;
        qv_index_params p;
        (void)srv_parse_index_spec(r->index, dim, &p, err, sizeof err);
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}
