/* recipes/resolve.h: the Python dependency resolver of wheels layers.
 *
 * From PEP 508 root requirements, picks one version of every project in
 * their closure for one target (Python version, platform tags, markers),
 * the way pip's resolver does: newest versions first, pre-releases only
 * when a specifier names one, dependencies read from the project's
 * metadata (a PEP 658/714 ".metadata" file where the index offers one,
 * the wheel's METADATA otherwise), backtracking when a choice leads to a
 * conflict.  Index priority is uv's default: a project is looked up in the
 * first index that has a page for it and in no other.
 *
 *     struct recipe_resolve_opts o = {.indexes = ..., .page = ..., .file = ...};
 *     struct recipe_resolution res;
 *     recipe_resolve(roots, n_roots, &o, &res, &err);
 *     ... res.items[i].name, .version, .url, .sha256 ...
 *     recipe_resolution_release(&res);
 *
 * A conflict fails with one line naming the project and the requirements
 * that cannot all hold, with who asked for each.
 */
#ifndef KILN_RECIPES_RESOLVE_H
#define KILN_RECIPES_RESOLVE_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"
#include "pep440.h"
#include "stage.h"

/* Attempts (a version tried) before the resolver gives up. */
#define RECIPE_RESOLVE_STEPS_MAX 100000

struct recipe_resolve_opts {
        const char *const *indexes;
        size_t n_indexes;
        const struct recipe_python_target *target;
        /* Reads the PEP 503 page of project name on index: *ret_found false
         * when the index has no such project; ret_base is the URL (or path)
         * the page's links are relative to. */
        int (*page)(void *ctx, const char *index, const char *name, bool *ret_found,
                    char **ret_html, size_t *ret_len, char **ret_base, struct kiln_error *err);
        /* The core metadata of file f (its PEP 658 ".metadata" file where
         * f->has_metadata, the wheel's METADATA otherwise), NUL-terminated,
         * checked against the index's hashes. */
        int (*metadata)(void *ctx, const struct recipe_index_file *f, char **ret_buf,
                        size_t *ret_len, struct kiln_error *err);
        void *ctx;
        bool pre; /* pip's --pre: pre-releases count like final releases */
        /* PEP 503 names already installed (by the layers below): skipped */
        const char *const *installed;
        size_t n_installed;
};

struct recipe_resolved {
        char *name;    /* PEP 503 normalized */
        char *version; /* as the file name writes it */
        char *url;
        char *sha256;  /* from the index; NULL when it lists none */
        char *index;
        char **deps;   /* names of the chosen projects it depends on */
        size_t n_deps;
        char **extras; /* extras requested of it */
        size_t n_extras;
};

struct recipe_resolution {
        struct recipe_resolved *items; /* in the order they were chosen */
        size_t n;
};

int recipe_resolve(const struct recipe_pep508 *roots, size_t n_roots,
                   const struct recipe_resolve_opts *o, struct recipe_resolution *ret,
                   struct kiln_error *err);
void recipe_resolution_release(struct recipe_resolution *r);

/* The target's marker environment (python "cp311" -> python_version
 * "3.11", python_full_version "3.11.0"; the platform tag's architecture as
 * platform_machine; Linux, CPython).  bufs holds the strings. */
struct recipe_marker_bufs {
        char version[16], full_version[24], machine[32];
};
void recipe_marker_env_for(const struct recipe_python_target *t, struct recipe_marker_env *ret,
                           struct recipe_marker_bufs *bufs);

/* A wheel's core metadata (RFC 822 headers): its Requires-Dist lines and
 * Requires-Python (NULL: none). */
int recipe_metadata_parse(const char *buf, size_t len, const char *what,
                          struct recipe_pep508 **ret_deps, size_t *ret_n,
                          char **ret_requires_python, struct kiln_error *err);

#endif
