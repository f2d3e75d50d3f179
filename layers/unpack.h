/* layers/unpack.h: applying layers to a directory, safely and without
 * privileges.
 *
 * Every path of every entry is resolved as if DIR were '/': symlinks met on
 * the way are followed inside DIR ('..' stops at DIR, an absolute target
 * restarts at DIR), with openat2(RESOLVE_IN_ROOT) where the kernel has it
 * and a component walk with O_NOFOLLOW otherwise; never by comparing
 * strings.  The last component is never followed: a symlink entry is stored
 * verbatim (absolute targets and '..' included), a file replaces whatever
 * was there.  So a merged-usr `lib -> usr/lib` followed by `lib/x.so` lands
 * in DIR/usr/lib/x.so, and `evil -> /` followed by `evil/etc/x` lands in
 * DIR/etc/x.  Host files outside DIR are never written, linked, chmodded or
 * removed.
 *
 * Refused, with an error naming the entry (KILN_E_INVALID):
 *   - names that are absolute or climb above the root ('../x', 'a/../../x');
 *   - hardlinks whose target is absolute, climbs above the root, is missing,
 *     or is a directory;
 *   - whiteouts '.wh.', '.wh..', '.wh...' and whiteouts named '.' or '..';
 *   - entries named '.' that are not directories.
 * Whiteouts (image-spec layer.md): '.wh.NAME' removes NAME from the lower
 * layers; '.wh..wh..opq' empties its directory of what lower layers put
 * there.
 * Skipped with a warning when not root: devices, privileged xattrs
 * (security.*, trusted.*), ownership.  Warnings go to opts->warn.
 * Limits (KILN_E_LIMIT): the decompressed size of each layer and the
 * apparent size of its files, holes of sparse entries included
 * (opts->max_size); the apparent size of the files of all layers
 * (opts->max_total); zstd frames with a window over 2^27
 * (ZSTD_WINDOWLOG_LIMIT_DEFAULT).  Sparse entries keep their holes on disk.
 * Dropped with a warning: overlayfs xattrs (trusted.overlay.*,
 * user.overlay.*), which a mount of DIR would read as its own metadata.
 * A whiteout hides what lower layers put there, never what its own layer
 * wrote.  The root entry ('./', '/') is not applied: DIR keeps its mode
 * (0755 when unpack creates it), and no deferred directory mode ever
 * reaches DIR.
 *
 *     layer_unpack_opts_init(&o);
 *     u = layer_unpacker_new(dir, &o, &err);
 *     layer_unpacker_apply(u, blob_reader, media_type, "layer 1", &err);
 *     ...
 *     layer_unpacker_finish(u, &err);   (directory modes last)
 *     layer_unpacker_free(u);
 */
#ifndef KILN_LAYERS_UNPACK_H
#define KILN_LAYERS_UNPACK_H

#include <stdbool.h>
#include <stdint.h>

#include "error.h"
#include "io.h"
#include "model.h"

#define LAYER_UNPACK_DEFAULT_MAX_SIZE (64ll << 30)
#define LAYER_UNPACK_DEFAULT_MAX_TOTAL (128ll << 30)
#define LAYER_ZSTD_WINDOWLOG_MAX 27

struct layer_unpack_opts {
        int64_t max_size;  /* decompressed bytes and apparent file sizes of a layer; <= 0: none */
        int64_t max_total; /* apparent file sizes of all layers together; <= 0: no limit */
        bool no_openat2;   /* use the component walk even when openat2 exists (tests) */
        bool rootless;     /* behave as an unprivileged user even when root */
        void (*warn)(void *ctx, const char *msg);
        void *warn_ctx;
};

void layer_unpack_opts_init(struct layer_unpack_opts *o);

struct layer_unpacker;

/* DIR is created (0755, whatever the umask) when missing. */
struct layer_unpacker *layer_unpacker_new(const char *dir, const struct layer_unpack_opts *opts,
                                          struct kiln_error *err);
/* Applies one layer; takes over blob.  media_type gives the compression;
 * NULL means detect from the bytes. */
int layer_unpacker_apply(struct layer_unpacker *u, struct oci_reader *blob, const char *media_type,
                         const char *what, struct kiln_error *err);
int layer_unpacker_finish(struct layer_unpacker *u, struct kiln_error *err);
void layer_unpacker_free(struct layer_unpacker *u);

/* A reader of the decompressed stream of inner (taken over): gzip
 * (multi-member), zstd (windowLog capped) or none; fails with KILN_E_LIMIT
 * past max_size bytes (<= 0: no limit). */
struct oci_reader *layer_decompress_reader_new(struct oci_reader *inner, enum oci_compression c,
                                               int64_t max_size, struct kiln_error *err);

#endif
