/* recipes/recipe_wheel_internal.h: one wheel being installed, shared by the
 * two ways a wheel reaches a layer:
 *   - recipe_wheel_install() (recipe_wheel.c) extracts it into a staging
 *     tree;
 *   - recipe_wheel_stream.c lists its members and the files made for it,
 *     and the layer is written from the wheel itself.
 * Both read the same metadata, put each member at the same place with the
 * same mode, check it against the same RECORD, and make the same scripts,
 * RECORD and INSTALLER (through recipe_wheel_put), so the layers are the
 * same bytes.
 *
 *     recipe_wheel_inst_begin(&w, path, sha256, root, &target, &err);
 *     ... each member: recipe_wheel_dest(), recipe_wheel_check_record() ...
 *     recipe_wheel_inst_finish(&w, &err);     (scripts, INSTALLER, RECORD)
 *     recipe_wheel_inst_release(&w);
 */
#ifndef KILN_RECIPES_RECIPE_WHEEL_INTERNAL_H
#define KILN_RECIPES_RECIPE_WHEEL_INTERNAL_H

#include <archive.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"
#include "stage.h"

#define RECIPE_WHEEL_SCRIPT_MAX (16u * 1024 * 1024) /* a .data/scripts file, read whole */

struct recipe_wheel_inst {
        const char *wheel; /* path, for messages */
        const char *root;  /* staging root */
        char *site;        /* image path of site-packages */
        char *bin;         /* image path of scripts */
        char *headers;     /* image path of headers */
        char *prefix;      /* image path of data */
        const char *interpreter;
        char *distinfo;    /* "name-1.0.dist-info" */
        char *datadir;     /* "name-1.0.data" */
        json_t *record;    /* wheel path -> "sha256=...,size" from the wheel's RECORD */
        json_t *installed; /* image path -> "hash,size" for the new RECORD */
        char *wheel_file, *entry_points;
        size_t entry_points_len;
        bool purelib;
        /* where recipe_wheel_put() sends a file; NULL: under root */
        int (*put)(void *ctx, const char *image_path, const void *data, size_t len, mode_t mode,
                   struct kiln_error *err);
        void *put_ctx;
};

/* Checks the wheel's sha256 (when not NULL), sets the target's paths and
 * reads WHEEL, RECORD and entry_points.txt.  Release w even on failure. */
int recipe_wheel_inst_begin(struct recipe_wheel_inst *w, const char *path, const char *sha256,
                            const char *root, const struct recipe_python_target *t,
                            struct kiln_error *err);
/* The console and GUI scripts, INSTALLER, then RECORD. */
int recipe_wheel_inst_finish(struct recipe_wheel_inst *w, struct kiln_error *err);
void recipe_wheel_inst_release(struct recipe_wheel_inst *w);

/* The wheel, read in order by libarchive (seekable zip). */
struct archive *recipe_wheel_open(const char *path, struct kiln_error *err);
/* The current entry's data, whole, at most cap bytes. */
int recipe_wheel_read_entry(struct archive *a, const char *what, size_t cap, char **ret,
                            size_t *ret_len, struct kiln_error *err);

/* A member's name must be relative, without '..' or '\'. */
int recipe_wheel_check_name(const char *wheel, const char *name, struct kiln_error *err);
/* The image path of member name (NULL: error set); *ret_script for
 * .data/scripts, whose #!python line is rewritten. */
char *recipe_wheel_dest(struct recipe_wheel_inst *w, const char *name, bool *ret_script,
                        struct kiln_error *err);
/* data must be what RECORD says of name. */
/* RECORD's entry ws for name: a sha256 hash (the only kind kiln checks),
 * else the error both install paths give. */
int recipe_wheel_record_hash_ok(const struct recipe_wheel_inst *w, const char *name,
                                const char *ws, struct kiln_error *err);
int recipe_wheel_check_record(struct recipe_wheel_inst *w, const char *name, const char *data,
                              size_t len, struct kiln_error *err);
/* A script starting with "#!python": the same with #!INTERPRETER (NULL:
 * kept as it is); *ret_skip gets how many bytes of the original the new
 * first line replaces. */
char *recipe_wheel_shebang(const struct recipe_wheel_inst *w, const char *buf, size_t len,
                           size_t *ret_len, size_t *ret_skip);
/* Records a file installed at image_path for RECORD ("HASH,SIZE");
 * -1: out of memory. */
int recipe_wheel_installed(struct recipe_wheel_inst *w, const char *image_path, const char *hash,
                           uint64_t size);
/* A file made for the wheel (a script, INSTALLER, RECORD) at image_path,
 * recorded for RECORD. */
int recipe_wheel_put(struct recipe_wheel_inst *w, const char *image_path, const void *data,
                     size_t len, mode_t mode, struct kiln_error *err);

#endif
