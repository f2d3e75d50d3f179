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
 * Writing builds a layout in a temp directory beside FILE and, at
 * oci_store_commit(), writes a deterministic tar to a temp file, fsyncs it
 * and renames it over FILE: a failed copy never leaves a half archive.
 */
#ifndef KILN_LAYERS_ARCHIVE_STORE_H
#define KILN_LAYERS_ARCHIVE_STORE_H

#include <stdbool.h>

#include "error.h"
#include "image.h"

struct oci_store *layer_archive_store_new(bool docker, const char *file, const char *tag,
                                          bool for_write, struct kiln_error *err);

#endif
