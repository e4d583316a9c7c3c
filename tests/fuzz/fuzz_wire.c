/*
 * libFuzzer: the search reply's wire encoder against protobuf-c's decoder.
 * Hits and their attribute blobs are made from the input (valid blobs built
 * through the codec, plus raw bytes as a corrupt record would hold); the
 * encoding must decode to the same ids, scores and attributes.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "quiver/codec.h"
#include "quiver/v1/quiver.pb-c.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    size_t nq = 1 + data[0] % 4, nh = data[1] % 16;
    const uint8_t *p = data + 2, *end = data + size;
    wire_hit *h = calloc(nh ? nh : 1, sizeof *h);
    qv_buf *blobs = calloc(nh ? nh : 1, sizeof *blobs);
    size_t off[5];
    for (size_t i = 0; i < nh; i++) {
        uint64_t id = 0;
        float sc = 0;
        if (end - p >= 12) {
            memcpy(&id, p, 8);
            memcpy(&sc, p + 8, 4);
            p += 12;
        }
        h[i].id = id >> 1;
        h[i].score = isfinite(sc) ? sc : 0.5f;
        /* a blob: attributes built from the next bytes */
        qv_attr_builder ab;
        if (qv_attrs_begin(&ab, &blobs[i]) == 0) {
            int na = p < end ? *p++ % 4 : 0;
            for (int a = 0; a < na && p < end; a++) {
                char key[8];
                snprintf(key, sizeof key, "k%d", a);
                size_t l = (size_t)(*p++ % 8);
                if ((size_t)(end - p) < l) l = (size_t)(end - p);
                char s[8] = {0};
                for (size_t j = 0; j < l; j++) s[j] = (char)(0x41 + p[j] % 26);
                p += l;
                switch (a % 4) {
                case 0: qv_attrs_add_string(&ab, key, s, l); break;
                case 1: qv_attrs_add_int(&ab, key, (int64_t)l * -7); break;
                case 2: qv_attrs_add_bool(&ab, key, (int)(l & 1)); break;
                default:
                    qv_attrs_add_list(&ab, key, 2);
                    qv_attrs_list_item(&ab, s, l);
                    qv_attrs_list_item(&ab, "x", 1);
                }
            }
            qv_attrs_end(&ab);
        }
        h[i].attrs = blobs[i].data;
        h[i].attrs_len = blobs[i].len;
    }
    for (size_t q = 0; q <= nq; q++) off[q] = q == nq ? nh : (nh * q) / nq;
    size_t len = wire_search_response_size(h, off, nq);
    uint8_t *buf = malloc(len ? len : 1);
    wire_search_response(buf, h, off, nq);
    Quiver__V1__SearchResponse *r = quiver__v1__search_response__unpack(NULL, len, buf);
    if (!r || r->n_results != nq) abort();
    for (size_t q = 0; q < nq; q++) {
        if (r->results[q]->n_hits != off[q + 1] - off[q]) abort();
        for (size_t j = 0; j < r->results[q]->n_hits; j++) {
            const Quiver__V1__Hit *x = r->results[q]->hits[j];
            const wire_hit *w = &h[off[q] + j];
            if (x->id != w->id || memcmp(&x->score, &w->score, 4) != 0) abort();
            if (x->n_attributes != qv_attrs_count(w->attrs, w->attrs_len)) abort();
        }
    }
    quiver__v1__search_response__free_unpacked(r, NULL);
    free(buf);
    for (size_t i = 0; i < nh; i++) qv_buf_free(&blobs[i]);
    free(blobs);
    free(h);
    return 0;
}
