/* layers/archive_store.h: image archives as places.
 *
 *   oci-archive:FILE[:TAG]     a tar of an OCI image layout
 *   docker-archive:FILE[:REF]  what `docker save` writes and `docker load`
 *                              reads: manifest.json (+ an OCI layout inside,
 *                              as docker 25 writes it)
 *
 * Reading extracts the archive into a private temp directory (only the
 * names a layout or a docker archive may hold: no links, no '..', capped
 * metadata files) and serves it as an OCI layout, so every blob is
 * verified on use.  A legacy docker archive (no index.json) is turned into
 * a layout with a Docker schema2 manifest built from manifest.json.
 * Writing streams each blob into a tar in a temp file beside FILE as it
 * arrives (hashed on the way) and, at oci_store_commit(), adds index.json,
 * oci-layout (and manifest.json), fsyncs the file and renames it over FILE:
 * a failed copy never leaves a half archive.  Members have mtime 0, uid 0,
 * fixed modes, in the order of the copy, so one image gives one archive.
 */
#ifndef KILN_LAYERS_ARCHIVE_STORE_H
#define KILN_LAYERS_ARCHIVE_STORE_H

#include <stdbool.h>

#include "error.h"
#include "image.h"

/* The write side (layers/archive_writer.c): blobs stream into the tar as
 * they arrive. */
struct oci_store *layer_archive_writer_new(bool docker, const char *file, const char *tag,
                                           struct kiln_error *err);

struct oci_store *layer_archive_store_new(bool docker, const char *file, const char *tag,
                                          bool for_write, struct kiln_error *err);

#endif
