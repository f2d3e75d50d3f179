/* libFuzzer target: image references and places. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "digest.h"
#include "place.h"
#include "ref.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char *s = malloc(size + 1);
        struct kiln_error err = KILN_ERROR_INIT;
        struct oci_ref r;
        struct oci_place p;
        struct oci_digest d;

        if (!s)
                return 0;
        memcpy(s, data, size);
        s[size] = '\0';
        if (oci_ref_parse(s, &r, &err) == 0) {
                char *full = oci_ref_string(&r);
                struct oci_ref again;
                /* what kiln prints, kiln parses back to the same reference */
                if (full && oci_ref_parse(full, &again, NULL) != 0)
                        abort();
                if (full)
                        oci_ref_release(&again);
                free(full);
                oci_ref_release(&r);
        }
        if (oci_place_parse(s, &p, &err) == 0)
                oci_place_release(&p);
        oci_digest_parse(s, &d, &err);
        free(s);
        return 0;
}
