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
 * A layer that a build writes itself and that a step above needs is
 * unpacked while it is written instead (the tee): the layer writer hands
 * its uncompressed tar, as it makes it, to a thread that runs the same
 * unpacker with the same options into CACHE/rootfs/.tmp-written-XXXXXX,
 * through a fixed 1 MiB buffer (memory does not grow with the layer; a
 * writer that gets ahead waits).  Those are the very bytes the writer
 * hashes into the diffID, so they are not hashed again: once the writer
 * knows the diffID, the thread must have read the whole tar, and the
 * directory is renamed into place as above (another build's directory
 * wins).  A tee that fails
 * leaves nothing: its directory is removed, the layer itself is not
 * affected, and sandbox_rootfs_get unpacks the blob when a step needs it.
 *
 *     sandbox_rootfs_get(cache_dir, &diff_id, media_type, open_blob, ctx, &dir, &err);
 *
 *     t = sandbox_rootfs_tee_new(cache_dir, &err);
 *     layer_cache_build_tee(cache, src, &wopts, sandbox_rootfs_tee_writer(t), &res, &err);
 *     sandbox_rootfs_tee_finish(t, &res.diff_id, res.tar_size, NULL, &err);  (layer built)
 *     sandbox_rootfs_tee_free(t);                  (drops what is not in place)
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

struct sandbox_rootfs_tee;

/* Starts the unpacker's thread on an empty directory under CACHE/rootfs. */
struct sandbox_rootfs_tee *sandbox_rootfs_tee_new(const char *cache_dir, struct kiln_error *err);
/* What the layer writer writes its tar to (layer_writer_set_tee); it
 * fails once the unpacker has stopped on an error. */
struct oci_writer *sandbox_rootfs_tee_writer(struct sandbox_rootfs_tee *t);
/* Ends the stream (the writer finished: diff_id and tar_size are its
 * tar's digest and size), waits for the unpacker and renames its directory
 * to CACHE/rootfs/<hex of diff_id>; ret_dir (may be NULL) gets that path.
 * -1 with err when the unpacker failed or did not read tar_size bytes: the
 * directory is removed by sandbox_rootfs_tee_free. */
int sandbox_rootfs_tee_finish(struct sandbox_rootfs_tee *t, const struct oci_digest *diff_id,
                              int64_t tar_size, char **ret_dir, struct kiln_error *err);
/* Stops the unpacker (a stream not finished is cut short) and removes its
 * directory unless it was renamed into place; accepts NULL. */
void sandbox_rootfs_tee_free(struct sandbox_rootfs_tee *t);

/* Removes CACHE/rootfs (unpacked layers and leftovers of killed runs). */
int sandbox_rootfs_prune(const char *cache_dir, struct kiln_error *err);

void sandbox_dirs_free(char **dirs, size_t n);

#endif
