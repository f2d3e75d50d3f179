/* oci/fsck.h: checking an OCI layout.
 *
 * oci_layout_fsck() walks index.json and everything it reaches: every blob
 * present, a regular file, of the size its descriptor says, hashing to its
 * name; every manifest, index and config parseable.  Each problem is
 * passed to report() as one line; the walk goes on after a problem.
 */
#ifndef KILN_OCI_FSCK_H
#define KILN_OCI_FSCK_H

#include "error.h"
#include "layout.h"

struct oci_fsck_result {
        unsigned blobs_checked;
        unsigned problems;
        unsigned temp_files; /* leftovers of killed writers (not problems) */
};

/* A deeper check of one layer against its config's diffID (kiln fsck
 * --deep; the decompression lives in layers/).  Returns 0 when the layer
 * is right, -1 with err set otherwise.  The blob is opened by the hook. */
typedef int (*oci_fsck_layer_fn)(void *ctx, struct oci_layout *l,
                                 const struct oci_descriptor *layer, const char *diff_id,
                                 struct kiln_error *err);

int oci_layout_fsck(struct oci_layout *l, void (*report)(void *ctx, const char *line), void *ctx,
                    oci_fsck_layer_fn deep, struct oci_fsck_result *ret, struct kiln_error *err);

#endif
