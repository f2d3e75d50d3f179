/* sandbox/rootfs.h: the image's layers, unpacked once, for overlayfs.
 *
 * Each layer a sandbox needs is unpacked with the safe unpacker
 * (layers/unpack.h) in its overlay-whiteouts mode into
 *
 *   CACHE/rootfs/<hex of its diffID>/
 *
 * shared by every image and build that has the layer.  The decompressed
 * stream is checked against the diffID while it is unpacked (and the blob
 * against its digest by the store's reader).  Unpacking goes into
 * CACHE/rootfs/.tmp-<hex>-XXXXXX and is renamed into place only when whole
 * and verified, so a build killed half-way never leaves a directory that is
 * used, and two builds unpacking the same layer both end with the one that
 * won the rename.  A layer already there is not read at all: a step on a
 * cached base opens no blob.  `kiln cache prune --local` removes them
 * (sandbox_rootfs_prune).
 *
 *     sandbox_rootfs_get(cache_dir, &diff_id, media_type, open_blob, ctx, &dir, &err);
 */
#ifndef KILN_SANDBOX_ROOTFS_H
#define KILN_SANDBOX_ROOTFS_H

#include <stdbool.h>

#include "digest.h"
#include "error.h"
#include "image.h"
#include "io.h"

/* Opens the (compressed) blob of the layer; called only when the layer is
 * not unpacked yet. */
typedef struct oci_reader *(*sandbox_open_blob_fn)(void *ctx, struct kiln_error *err);

int sandbox_rootfs_get(const char *cache_dir, const struct oci_digest *diff_id,
                       const char *media_type, sandbox_open_blob_fn open_blob, void *ctx,
                       char **ret_dir, bool *ret_unpacked, struct kiln_error *err);

/* Every layer of img (from st), top first, as sandbox_opts.lowers wants
 * them.  ret_dirs is a NULL-terminated array (free each and the array). */
int sandbox_rootfs_image(const char *cache_dir, struct oci_store *st,
                         const struct oci_image *img, char ***ret_dirs, size_t *ret_n,
                         struct kiln_error *err);

/* Removes CACHE/rootfs (unpacked layers and leftovers of killed runs). */
int sandbox_rootfs_prune(const char *cache_dir, struct kiln_error *err);

void sandbox_dirs_free(char **dirs, size_t n);

#endif
