/* layers/unpack_internal.h: private to the unpacker; the API is unpack.h.
 *
 * The unpacker is split by concern:
 *   unpack.c             the API: the unpacker's lifecycle, applying a layer,
 *                        placing each entry, the deferred modes at the end
 *   unpack_decompress.c  the decompressing reader of a blob (gzip, zstd)
 *   unpack_path.c        entry names and their resolution inside the root
 *   unpack_state.c       what this layer wrote (its paths and directories),
 *                        the directories whose mode is deferred
 *   unpack_whiteout.c    whiteouts and opaque directories, removing trees
 */
#ifndef KILN_LAYERS_UNPACK_INTERNAL_H
#define KILN_LAYERS_UNPACK_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "unpack.h"

#define IN_BUF (128u * 1024)

/* A directory whose mode is set at the end (it lacks u+rwx, which the
 * entries below it may need).  Pinned by its inode: at the end its name is
 * resolved again and the mode applied only if it is still this directory. */
struct pending_dir {
        char *path;
        dev_t dev;
        ino_t ino;
        mode_t mode;
        bool gone; /* removed since (whiteout, replaced) */
};

struct strset {
        char **slots;
        size_t cap, n;
};

/* A set of directories by dev/ino. */
struct inoset {
        struct inoset_slot {
                dev_t dev;
                ino_t ino;
                bool used;
        } * slots;
        size_t cap, n;
};

struct tar_src;

struct layer_unpacker {
        struct layer_unpack_opts opts;
        char *dir;
        int root; /* O_PATH fd of DIR */
        dev_t root_dev;
        ino_t root_ino;
        bool rootless;
        bool have_openat2;
        struct pending_dir *dirs; /* in the order they were met */
        size_t n_dirs, cap_dirs;
        size_t *dir_slots; /* open addressing on dev/ino: 1 + index in dirs, 0 free */
        size_t cap_slots;
        struct strset layer_paths; /* paths written by the layer being applied */
        struct inoset layer_dirs;  /* directories it wrote into, their parents up to DIR */
        int64_t written;           /* apparent size of the files of this layer */
        int64_t total;             /* and of all layers */
        const char *what;
        unsigned char *buf;
        struct tar_src *src; /* the layer being read */
        int64_t data_start;  /* offset of the current entry's data in the tar */
};

/* ---- unpack.c ---- */

/* "cannot WHAT 'NAME' in 'DIR'" with errno e (KILN_E_IO); returns -1. */
int unpack_entry_fail(struct layer_unpacker *u, const char *name, int e, struct kiln_error *err,
                      const char *what);

/* ---- unpack_path.c ---- */

const char *unpack_split_base(char *path);
bool unpack_is_root_name(const char *s);
int unpack_clean_name(const char *in, char *buf, const char *kind, struct kiln_error *err);
/* An O_PATH fd of the directory path (cleaned, relative) resolved inside
 * the root; missing directories are made when create is set. */
int unpack_resolve_dir(struct layer_unpacker *u, const char *path, bool create,
                       struct kiln_error *err);

/* ---- unpack_state.c ---- */

void unpack_strset_clear(struct strset *s);
bool unpack_strset_has(const struct strset *s, const char *k);
int unpack_strset_add(struct strset *s, const char *k);
void unpack_inoset_clear(struct inoset *s);
bool unpack_inoset_has(const struct inoset *s, dev_t dev, ino_t ino);
int unpack_inoset_add(struct inoset *s, dev_t dev, ino_t ino);
int unpack_pending_add(struct layer_unpacker *u, const char *path, dev_t dev, ino_t ino,
                       mode_t mode);
void unpack_pending_forget(struct layer_unpacker *u, dev_t dev, ino_t ino);
int unpack_mark_layer_dirs(struct layer_unpacker *u, int pfd);

/* ---- unpack_whiteout.c ---- */

int unpack_remove_at(struct layer_unpacker *u, int pfd, const char *name);
int unpack_whiteout_entry(struct layer_unpacker *u, const char *parent, const char *base,
                          const char *raw, struct kiln_error *err);

#endif
