/* layers/diff.h: where two images differ.
 *
 * layer_image_diff() compares two images top-down and stops at the first
 * level that explains the difference (unless opts->all):
 *   1. manifest: media type, artifact type, annotations, layer count;
 *   2. config: platform, env, entrypoint, cmd, workdir, user, labels,
 *      history, diff_ids;
 *   3. layers: the same diffID with another blob digest ("same content,
 *      different compression"), layers reordered, or different content;
 *   4. files of layers whose content differs: added, removed, changed
 *      (content hash, size, mode, owner, mtime, link target, xattrs).
 * Layers are streamed through the tar reader (never unpacked to disk);
 * memory grows with the number of files, not their size.  Each finding is
 * passed to the callback.
 */
#ifndef KILN_LAYERS_DIFF_H
#define KILN_LAYERS_DIFF_H

#include <stdbool.h>

#include "error.h"
#include "image.h"

struct layer_diff_finding {
        const char *level;  /* "manifest", "config", "layer", "file" */
        const char *what;   /* "env", "layer 2", "/etc/hosts", ... */
        const char *change; /* "added", "removed", "changed", "compression", "reordered" */
        const char *a;      /* value in A, or NULL */
        const char *b;      /* value in B, or NULL */
        int layer;          /* layer index, or -1 */
};

struct layer_diff_opts {
        bool all; /* go on below the first level that differs */
        void (*finding)(void *ctx, const struct layer_diff_finding *f);
        void *ctx;
};

/* Sets *ret_same.  Errors (unreadable places, bad digests) return -1. */
int layer_image_diff(struct oci_store *a, struct oci_store *b, const struct layer_diff_opts *opts,
                     bool *ret_same, struct kiln_error *err);

#endif
