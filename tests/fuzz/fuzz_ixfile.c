/*
 * libFuzzer: the index file loader on arbitrary file contents (what a disk
 * error or a stray file leaves): refused with a reason, never a crash. The
 * header's checksum keeps most inputs from FAISS's reader; seeds include
 * real files of each kind.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "indexfile.h"
#include "quiver/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char dir[64];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/qv_fuzz_ix.XXXXXX");
        if (!mkdtemp(dir)) abort();
        qv_log_set_level(QV_LOG_ERROR);
    }
    char path[128];
    qv_ixfile_path(dir, 1, path, sizeof path);
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    fclose(f);
    qv_coll_config want;
    memset(&want, 0, sizeof want);
    want.id = 1;
    snprintf(want.name, sizeof want.name, "f");
    want.dim = 8;
    want.metric = QV_METRIC_L2;
    qv_ixfile_meta meta;
    qv_index *ix = NULL;
    char why[256] = "";
    int rc = qv_ixfile_load(dir, &want, &meta, &ix, why, sizeof why);
    if (rc == 0) {
        if (!ix) abort();
        qv_index_free(ix);
    } else if (ix) {
        abort();
    }
    unlink(path);
    return 0;
}
