/* libFuzzer target: reading a layer blob (gzip, zstd or plain tar) entry by
 * entry, and its diffID.  The first byte picks the declared media type. */
#include <stdint.h>
#include <stdlib.h>

#include "model.h"
#include "tar_read.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const char *const types[] = {OCI_MT_LAYER, OCI_MT_LAYER_GZIP, OCI_MT_LAYER_ZSTD,
                                            "application/x.unknown"};
        const char *mt;
        struct layer_tar_reader *r;
        struct archive_entry *e;
        struct oci_digest d;
        char buf[4096];
        int rc;

        if (size < 1)
                return 0;
        mt = types[data[0] % 4];
        data++;
        size--;
        r = layer_tar_reader_new(oci_reader_from_buffer(data, size, NULL), mt, "fuzz", NULL);
        if (r) {
                /* bounded: a bomb must not keep the fuzzer busy forever */
                size_t budget = 64u << 20;
                while ((rc = layer_tar_reader_next(r, &e, NULL)) == 1) {
                        ssize_t n;
                        while ((n = layer_tar_reader_data(r, buf, sizeof(buf), NULL)) > 0) {
                                if ((size_t)n >= budget)
                                        goto done;
                                budget -= (size_t)n;
                        }
                        if (n < 0)
                                break;
                }
                layer_tar_reader_finish(r, NULL);
done:
                layer_tar_reader_free(r);
        }
        if (size < (1u << 16))
                layer_blob_diff_id(oci_reader_from_buffer(data, size, NULL), mt, "fuzz", &d, NULL);
        return 0;
}
