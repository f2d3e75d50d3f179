/* layers/tar_read.h: reading a layer blob as a tar stream.
 *
 * The blob comes in as a (verified) oci_reader; libarchive decompresses
 * (gzip, zstd or none) and parses it.  The compression found in the bytes
 * must be the one the media type declares.  layer_tar_reader_finish() reads
 * the blob to its end, so its digest is checked even when the tar ended
 * early (end-of-archive blocks followed by more bytes).
 *
 *     r = layer_tar_reader_new(blob, desc->media_type, desc->digest.str, &err);
 *     while ((rc = layer_tar_reader_next(r, &entry, &err)) == 1)
 *             ... layer_tar_reader_data(r, buf, len, &err) ...
 *     layer_tar_reader_finish(r, &err);
 *     layer_tar_reader_free(r);
 */
#ifndef KILN_LAYERS_TAR_READ_H
#define KILN_LAYERS_TAR_READ_H

#include <archive_entry.h>
#include <sys/types.h>

#include "error.h"
#include "io.h"

struct layer_tar_reader;

struct layer_tar_reader *layer_tar_reader_new(struct oci_reader *blob, const char *media_type,
                                              const char *name, struct kiln_error *err);
/* 1 with *ret_entry set, 0 at the end, -1 on error. */
int layer_tar_reader_next(struct layer_tar_reader *r, struct archive_entry **ret_entry,
                          struct kiln_error *err);
ssize_t layer_tar_reader_data(struct layer_tar_reader *r, void *buf, size_t len,
                              struct kiln_error *err);
int layer_tar_reader_finish(struct layer_tar_reader *r, struct kiln_error *err);
void layer_tar_reader_free(struct layer_tar_reader *r);

/* The diffID of a layer blob: the digest of its decompressed bytes
 * (the blob itself is verified on the way). */
int layer_blob_diff_id(struct oci_reader *blob, const char *media_type, const char *name,
                       struct oci_digest *ret, struct kiln_error *err);

#endif
