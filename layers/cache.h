/* layers/cache.h: the layer cache.
 *
 * A content-addressed store on disk (default $XDG_CACHE_HOME/kiln, else
 * ~/.cache/kiln):
 *
 *   DIR/layout/                an OCI layout holding the built blobs
 *   DIR/entries/<key>.json     key -> {digest, size, diffID, mediaType,
 *                              compressor}
 *   DIR/stat/<id>              the stat index of one layer's sources
 *   DIR/verified/<hex>         the lstat of a blob when it last hashed right
 *
 * The key is the sha256 of the layer's options (compressor, version,
 * level, mtime, owners, caps) and of every entry: path, type, mode, size,
 * link target, hardlink target and content digest.  Content digests come
 * from the stat index when a file's size, mtime, ctime, inode and device
 * are unchanged (as git's index does), so a warm rebuild costs one stat per
 * file; a file whose mtime is not older than the index itself is hashed
 * again (git's "racy" rule).
 *
 * Safety: blobs go through the layout's temp file + fsync + rename, and an
 * entry is written (atomically) only after its blob is in place, so two
 * processes can share the cache and a killed build never leaves an entry
 * without its blob; its temp files are swept by a later open once an hour
 * old.  Entries are hints: a blob is verified against the
 * entry's digest and size when it is copied out (layer_cache_open_blob),
 * and a bad entry is dropped.  A blob whose lstat (size, mtime, ctime,
 * inode, device) still matches the stamp taken when it last hashed right,
 * and whose times are older than that stamp, has not been written since:
 * layer_cache_place_blob hardlinks it into a layout, or finds it there, with
 * no hashing.
 *
 *     c = layer_cache_open(NULL, &err);
 *     layer_cache_build(c, source, &wopts, true, &res, &hit, &err);
 *     r = layer_cache_open_blob(c, &res, &err);   (verified on the way out)
 */
#ifndef KILN_LAYERS_CACHE_H
#define KILN_LAYERS_CACHE_H

#include <stdbool.h>

#include "digest.h"
#include "error.h"
#include "io.h"
#include "source.h"
#include "writer.h"

struct layer_cache;

/* dir NULL: the default location.  The directory is created. */
struct layer_cache *layer_cache_open(const char *dir, struct kiln_error *err);
void layer_cache_free(struct layer_cache *c);
void layer_cache_freep(struct layer_cache **c);
const char *layer_cache_dir(const struct layer_cache *c);

/* Builds the layer of a finished source into the cache, or finds it there.
 * With lookup, the key is computed from the stat index alone: when every
 * file is known and unchanged and the entry exists, nothing is read
 * (*ret_hit).  Otherwise the layer is written (one pass; each file's
 * content digest is taken on the way), then its key and entry are stored. */
int layer_cache_build(struct layer_cache *c, const struct layer_source *s,
                      const struct layer_writer_opts *o, bool lookup, struct layer_result *ret,
                      bool *ret_hit, struct kiln_error *err);

/* The same without lookup, the uncompressed tar also written to tee as it
 * is made (layer_writer_set_tee: a failing tee is dropped, the layer goes
 * on). */
int layer_cache_build_tee(struct layer_cache *c, const struct layer_source *s,
                          const struct layer_writer_opts *o, struct oci_writer *tee,
                          struct layer_result *ret, struct kiln_error *err);

/* Builds a layer from an existing tar (layers/tarsource.h) into the cache;
 * no entry is kept (the key would cost reading the whole tar anyway). */
int layer_cache_build_tar(struct layer_cache *c, const char *file, const char *dest,
                          const struct layer_writer_opts *o, struct layer_result *ret,
                          struct kiln_error *err);

/* *ret_hit is false when there is no usable entry (absent, unreadable, or
 * its blob missing or of the wrong size). */
int layer_cache_lookup(struct layer_cache *c, const struct oci_digest *key,
                       struct layer_result *ret, bool *ret_hit, struct kiln_error *err);

/* A blob writer in the cache; commit it with oci_layout_blob_writer_commit. */
struct oci_writer *layer_cache_blob_writer(struct layer_cache *c, struct kiln_error *err);

int layer_cache_store(struct layer_cache *c, const struct oci_digest *key,
                      const struct layer_result *res, struct kiln_error *err);

/* Removes the entry of key (after its blob failed verification). */
void layer_cache_drop(struct layer_cache *c, const struct oci_digest *key);

/* Path of a built blob in the cache (a new string). */
char *layer_cache_blob_path(struct layer_cache *c, const struct oci_digest *digest);

/* Makes the blob of res present in the OCI layout at layout_dir (same file
 * system) as a hardlink of the cache's blob, when the cache's blob is
 * trusted by its stamp; true when the layout then has it: linked now, or
 * already the same file.  False: nothing was done, go through the store. */
bool layer_cache_place_blob(struct layer_cache *c, const struct layer_result *res,
                            const char *layout_dir);

/* Hashes the cache's blob of res unless its stamp vouches for it, and
 * stamps it; an error when it is missing or corrupt. */
int layer_cache_verify_blob(struct layer_cache *c, const struct layer_result *res,
                            struct kiln_error *err);

/* A verified reader of a built blob. */
struct oci_reader *layer_cache_open_blob(struct layer_cache *c, const struct layer_result *res,
                                         struct kiln_error *err);

#endif
