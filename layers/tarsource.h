/* layers/tarsource.h: an existing tar (plain, gzip or zstd) as a layer
 * source, re-normalized.
 *
 * The entries of the tar are rewritten by the layer writer's rules (sorted,
 * mtime, owners, modes, no atime/ctime, see writer.h) under a destination
 * path.  Sorting needs every entry before the first is written, so regular
 * file data is spooled, one file per entry named by its index, into a
 * private directory (never by the entry's name), and read back in order.
 * Names are cleaned: leading '/' and './' dropped, '.' components removed;
 * names with '..' are refused.  A path that appears twice keeps its last
 * entry.  Hardlinks stay hardlinks: in each group the first path in the new
 * order holds the data.
 *
 *     layer_tar_source_write(w, "base.tar.gz", "/", spool, &err);
 */
#ifndef KILN_LAYERS_TARSOURCE_H
#define KILN_LAYERS_TARSOURCE_H

#include <stdbool.h>

#include "error.h"
#include "writer.h"

/* True when the name says tar: .tar, .tar.gz, .tgz, .tar.zst, .tar.zstd. */
bool layer_tar_source_name(const char *file);

/* spool_dir must exist and be private; it is left empty. */
int layer_tar_source_write(struct layer_writer *w, const char *file, const char *dest,
                           const char *spool_dir, struct kiln_error *err);

#endif
