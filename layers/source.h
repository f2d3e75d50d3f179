/* layers/source.h: what goes into a layer.
 *
 * A layer_source is the sorted list of entries of one layer, built from
 *   - directory trees mapped to a destination path, minus .dockerignore
 *     style exclude patterns (layer_source_add_tree);
 *   - single host files placed at a target path with a mode
 *     (layer_source_add_file);
 *   - files whose data a reader gives (layer_source_add_reader): the
 *     members of a wheel, written with no file extracted.
 * Parent directories of every destination are added (mode 0755) unless the
 * sources provide them.  layer_source_finish() sorts the entries byte-wise
 * by path (so parents come before children), rejects duplicate paths, and
 * turns regular files that share an inode into hardlinks to the first one.
 * Nothing depends on readdir order, umask, host users or the clock.
 *
 * Modes (docs/layers.md, "Modes"): layer_source_finish() gives regular
 * files 0755 when the owner may execute them, else 0644, directories 0755
 * and symlinks 0777 (what git records), unless keep_modes is set; then the
 * mode rules (layer_source_add_mode_rule, and the mode given to
 * layer_source_add_file) set exact modes, setuid/setgid/sticky included.
 *
 *     s = layer_source_new(&err);
 *     layer_source_add_tree(s, "./src", "/app", excludes, n, &err);
 *     layer_source_finish(s, &err);
 *     layer_source_write(s, writer, &err);
 *     layer_source_free(s);
 *
 * Exclude patterns (docs/layers.md): one per line in a .dockerignore, '#'
 * comments, leading '/' ignored, '*' and '?' and '[...]' within one
 * component, '**' across any number of components, '!' re-includes; the
 * last matching pattern wins, and a pattern matching a directory excludes
 * everything below it.
 */
#ifndef KILN_LAYERS_SOURCE_H
#define KILN_LAYERS_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "digest.h"
#include "error.h"
#include "writer.h"

/* Where the data of an entry that is no host file comes from (a member of
 * a zip, a generated file): open(ctx, item) returns a reader of exactly
 * the entry's size (layer_writer_add_reader), freed once it is written. */
struct layer_source_opener {
        struct oci_reader *(*open)(void *ctx, const void *item, struct kiln_error *err);
        void *ctx;
};

struct layer_source_entry {
        char *path;     /* in the layer: no leading '/', no '.' or '..' */
        char *host;     /* host file to read, or NULL (synthetic directory) */
        const struct layer_source_opener *opener; /* a regular file read from elsewhere */
        const void *item;                          /* for opener */
        char *link;     /* symlink target */
        char *hardlink; /* path (in the layer) this entry is a hardlink to */
        struct stat st; /* type, perm and size as written; ino/dev/mtime/ctime for the cache */
        bool synthetic;
        bool has_cap; /* carries security.capability */
        void *cap;
        size_t cap_len;
};

/* An exact mode for the entries below base whose path relative to base
 * matches glob (fnmatch(3), no flags: '*' also matches '/'); the glob "."
 * names base itself, which no other glob matches. */
struct layer_mode_rule {
        char *base, *glob;
        mode_t mode;
};

struct layer_source {
        struct layer_source_entry *entries;
        size_t n, cap;
        bool keep_caps;
        bool keep_modes; /* the host's permission bits instead of the mode policy */
        struct layer_mode_rule *rules;
        size_t n_rules;
        bool finished;
};

struct layer_source *layer_source_new(struct kiln_error *err);
void layer_source_free(struct layer_source *s);
void layer_source_freep(struct layer_source **s);

/* Adds the tree at host directory src as dest (an absolute or relative path
 * in the image; "" or "/" for the root). */
int layer_source_add_tree(struct layer_source *s, const char *src, const char *dest,
                          const char *const *excludes, size_t n_excludes, struct kiln_error *err);

/* Adds the host file src at target with mode (mode < 0: the mode policy;
 * else exactly mode, a rule like layer_source_add_mode_rule's). */
int layer_source_add_file(struct layer_source *s, const char *src, const char *target, int mode,
                          struct kiln_error *err);

/* Adds a symbolic link at target pointing to link (a relative or absolute
 * path, as ln -s writes it). */
int layer_source_add_link(struct layer_source *s, const char *target, const char *link,
                          struct kiln_error *err);

/* Adds a regular file at target of size bytes and mode (the mode policy
 * applies, as to a host file of that mode), whose data opener gives for
 * item; both are borrowed until the source is written.  It is never a
 * hardlink, and nothing is known of it to the cache's stat index: its
 * content digest comes from writing it. */
int layer_source_add_reader(struct layer_source *s, const char *target, mode_t mode,
                            int64_t size, const struct layer_source_opener *opener,
                            const void *item, struct kiln_error *err);

/* Gives the entries at and below base (a path in the layer) whose path
 * relative to base matches glob exactly mode (<= 07777); the last
 * matching rule wins; symlinks keep 0777. */
int layer_source_add_mode_rule(struct layer_source *s, const char *base, const char *glob,
                               unsigned mode, struct kiln_error *err);

/* The policy's permission bits for an entry whose host mode is st_mode. */
mode_t layer_mode_normal(mode_t st_mode);
/* An overlayfs upper directory added with layer_source_add_tree(s, upper,
 * "/") becomes an OCI layer's entries: each whiteout (a character device
 * 0/0) becomes an empty '.wh.NAME' file, each opaque directory (xattr
 * user.overlay.opaque or trusted.overlay.opaque "y") gets a '.wh..wh..opq'
 * entry (image-spec layer.md "Whiteouts").  Call before finish. */
int layer_source_overlay_whiteouts(struct layer_source *s, const char *upper,
                                   struct kiln_error *err);

int layer_source_finish(struct layer_source *s, struct kiln_error *err);

/* Writes every entry, in order, into w.  ret_digests (may be NULL; s->n
 * elements) gets the content digest of each regular file with data. */
int layer_source_write(const struct layer_source *s, struct layer_writer *w,
                       struct oci_digest *ret_digests, struct kiln_error *err);

/* Exclude patterns. */
bool layer_exclude_match(const char *const *patterns, size_t n, const char *path);
/* Reads a .dockerignore file into a NULL-terminated array of patterns. */
int layer_exclude_read(const char *file, char ***ret_patterns, size_t *ret_n,
                       struct kiln_error *err);
void layer_exclude_free(char **patterns, size_t n);


#endif
