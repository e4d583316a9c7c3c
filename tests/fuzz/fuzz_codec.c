/*
 * libFuzzer: the record codecs on arbitrary bytes (what a corrupt LMDB record
 * would hold): item records, attribute blobs, configs, stats, sequence log
 * values. Decoders refuse or stay inside the buffer; what decodes re-encodes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "quiver/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qv_item_view v;
    if (qv_item_decode(data, size, &v) == 0) {
        if (v.dim > 65536) abort();
        float *vec = malloc((v.dim ? v.dim : 1) * sizeof *vec);
        qv_item_vector(&v, vec);
        /* what decodes re-encodes, and decodes again to the same */
        size_t n = qv_item_size(v.dim, v.attrs_len);
        uint8_t *out = malloc(n);
        qv_item_encode(out, v.seq, v.dim, vec, v.attrs, v.attrs_len);
        qv_item_view w;
        if (qv_item_decode(out, n, &w) != 0 || w.seq != v.seq || w.dim != v.dim ||
            w.attrs_len != v.attrs_len)
            abort();
        free(out);
        free(vec);
    }
    qv_attr_iter it;
    if (qv_attr_iter_init(&it, data, size) == 0) {
        qv_attr a;
        int rc;
        uint32_t n = 0;
        while ((rc = qv_attr_next(&it, &a)) == 1) {
            if (a.key_len && (a.key < (const char *)data || a.key + a.key_len > (const char *)data + size))
                abort();
            if (a.type == QV_ATTR_STRING_LIST) {
                const char *s;
                size_t l;
                while (qv_attr_list_next(&a, &s, &l) == 1)
                    if (s < (const char *)data || s + l > (const char *)data + size) abort();
            }
            n++;
        }
        (void)qv_attrs_count(data, size);
    }
    qv_coll_config c;
    if (size >= QV_CONFIG_LEN && qv_config_decode(data, size, &c) == 0) {
        uint8_t out[QV_CONFIG_LEN];
        qv_config_encode(out, &c);
    }
    qv_coll_stats st;
    (void)qv_stats_decode(data, size, &st);
    qv_op op;
    uint64_t id;
    (void)qv_seqval_decode(data, size, &op, &id);
    return 0;
}
