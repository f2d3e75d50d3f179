/* recipes/recipe_stage_debs.c: debs layers staged: apt sources resolved
 * against the dpkg status below, each package unpacked, the dpkg database
 * written. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "digest.h"
#include "io.h"
#include "parallel.h"
#include "recipe_internal.h"
#include "stage.h"
#include "util.h"

/* The apt sources of a debs layer with dependency resolution (the
 * default): the closure of every source's packages over all the layer's
 * indexes, minus what installed (the dpkg status below) has; then each
 * chosen package from its own source. */
static int apt_resolved(const struct recipe_plan *p, const struct recipe_stage_opts *o,
                        const json_t *params, const char *arch, const char *dir, bool merged_usr,
                        bool status_d, const char *installed, json_t *resolved, json_t *packages,
                        json_t *apt_releases, json_t *files, struct kiln_error *err)
{
        const json_t *apt = json_object_get(params, "apt"), *v, *e;
        size_t n = json_array_size(apt), i, k, n_req = 0;
        const json_t *pins = json_object_get(o->lock_layer, "apt");
        struct recipe_apt_index *x = calloc(n + 1, sizeof(*x));
        char **texts = calloc(n + 1, sizeof(char *));
        const char **reqs = NULL, **names = NULL;
        json_t *chosen = NULL;
        int rc = -1;

        if (!x || !texts)
                goto nomem;
        json_array_foreach(jmut(apt), i, v) n_req += json_array_size(json_object_get(v, "packages"));
        reqs = calloc(n_req + 1, sizeof(char *));
        if (!reqs)
                goto nomem;
        n_req = 0;
        json_array_foreach(jmut(apt), i, v) {
                if (recipe_apt_index_open(p, o, v, arch, json_string_value(json_array_get(pins, i)),
                                          &x[i], err) < 0 ||
                    recipe_apt_read_indexes((const char *const *)x[i].files, x[i].n, &texts[i],
                                            err) < 0)
                        goto out;
                if (apt_releases)
                        json_array_append_new(apt_releases, x[i].release ? json_string(x[i].release)
                                                                         : json_null());
                json_array_foreach(json_object_get(v, "packages"), k, e) reqs[n_req++] =
                        json_string_value(e);
        }
        if (recipe_apt_resolve((const char *const *)texts, n, installed, arch, reqs, n_req, &chosen,
                               err) < 0)
                goto out;
        names = calloc(json_array_size(chosen) + 1, sizeof(char *));
        if (!names)
                goto nomem;
        for (i = 0; i < n; i++) {
                size_t m = 0;
                json_array_foreach(chosen, k, e) {
                        if ((size_t)json_integer_value(json_object_get(e, "source")) != i)
                                continue;
                        names[m++] = json_string_value(json_object_get(e, "spec"));
                }
                if (m && recipe_apt_each(p, o, (const char *const *)x[i].files, x[i].n,
                                         x[i].mirror, names, m, arch, dir, merged_usr, status_d,
                                         resolved, packages, files, err) < 0)
                        goto out;
        }
        rc = 0;
        goto out;
nomem:
        kiln_error_set(err, KILN_E_NOMEM, "out of memory");
out:
        for (i = 0; x && i < n; i++)
                recipe_apt_index_release(&x[i]);
        for (i = 0; texts && i < n; i++)
                free(texts[i]);
        free(x);
        free(texts);
        free(reqs);
        free(names);
        json_decref(chosen);
        return rc;
}

static int debs_each(const struct recipe_plan *p, const struct recipe_stage_opts *o,
                     const json_t *params, const char *dir, bool status_d, const char *installed,
                     json_t *resolved, json_t *packages, json_t *apt_releases, json_t *files,
                     struct kiln_error *err)
{
        bool merged_usr = !json_is_false(json_object_get(params, "merged_usr"));
        const json_t *av = json_object_get(params, "architecture");
        const char *arch = av ? json_string_value(av) : "amd64";
        const json_t *v;
        size_t i;

        json_array_foreach(json_object_get(params, "debs"), i, v) {
                const char *path = json_string_value(json_object_get(v, "path"));
                const char *sha = json_string_value(json_object_get(v, "sha256"));
                _cleanup_free_ char *file = NULL;

                if (!sha)
                        return kiln_error_set(err, KILN_E_INVALID, "package '%s' has no sha256",
                                              path);
                {
                        char hex[65];
                        if (!recipe_norm_sha256(sha, hex))
                                return kiln_error_set(err, KILN_E_INVALID,
                                                      "invalid sha256 '%s' for package '%s'", sha,
                                                      path);
                        json_array_append_new(resolved, json_string(hex));
                        if (!dir && !packages && !files)
                                continue;
                        file = recipe_input_file(p, o, path, true, -1, err);
                        /* the name, version and architecture are in the package */
                        if (!file || (packages && recipe_deb_inventory(file, hex, path, packages,
                                                                       err) < 0))
                                return -1;
                }
                if (files)
                        json_array_append_new(files, json_string(file));
                if (dir && recipe_deb_unpack_as(file, sha, dir, merged_usr, status_d, NULL, err) < 0)
                        return -1;
        }
        if (!json_is_false(json_object_get(params, "resolve")))
                return apt_resolved(p, o, params, arch, dir, merged_usr, status_d, installed,
                                    resolved, packages, apt_releases, files, err);
        json_array_foreach(json_object_get(params, "apt"), i, v) {
                const json_t *pk = json_object_get(v, "packages"), *e;
                const json_t *pins = json_object_get(o->lock_layer, "apt");
                struct recipe_apt_index x = {0};
                const char **names;
                size_t k;
                int rc;

                if (recipe_apt_index_open(p, o, v, arch, json_string_value(json_array_get(pins, i)),
                                          &x, err) < 0)
                        return -1;
                if (apt_releases)
                        json_array_append_new(apt_releases,
                                              x.release ? json_string(x.release) : json_null());
                names = calloc(json_array_size(pk) + 1, sizeof(char *));
                if (!names) {
                        recipe_apt_index_release(&x);
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                }
                json_array_foreach(pk, k, e) names[k] = json_string_value(e);
                rc = recipe_apt_each(p, o, (const char *const *)x.files, x.n, x.mirror, names,
                                     json_array_size(pk), arch, dir, merged_usr, status_d,
                                     resolved, packages, files, err);
                free(names);
                recipe_apt_index_release(&x);
                if (rc < 0)
                        return -1;
        }
        return 0;
}

/* Adds the packages of files (local .deb paths, or {"path", "configured"}
 * for the layers below) to db; root: the layer's own, whose info/ files
 * are written there. */
struct meta_batch {
        const json_t *files;
        struct recipe_deb_meta *m;
};

static const char *file_path(const json_t *f)
{
        return json_is_string(f) ? json_string_value(f)
                                 : json_string_value(json_object_get(f, "path"));
}

static int meta_one(void *ctx, size_t i, struct kiln_error *err)
{
        struct meta_batch *b = ctx;

        return recipe_deb_meta_read(file_path(json_array_get(b->files, i)), &b->m[i], err);
}

static int dpkg_add_files(struct recipe_dpkg *db, const json_t *files, const char *root,
                          struct kiln_error *err)
{
        size_t n = json_array_size(files);
        struct meta_batch b = {.files = files, .m = calloc(n + 1, sizeof(*b.m))};
        int rc;

        if (!b.m)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        /* each package's data.tar read (decompressed) on several CPUs, the
         * database filled in their order */
        rc = kiln_parallel_for(n, kiln_parallel_cpus(8), meta_one, &b, err);
        for (size_t i = 0; rc == 0 && i < n; i++) {
                const json_t *f = json_array_get(files, i);
                unsigned flags = root ? RECIPE_DPKG_OWN : 0;
                if (json_is_true(json_object_get(f, "configured")))
                        flags |= RECIPE_DPKG_CONFIGURED;
                rc = recipe_dpkg_add(db, &b.m[i], root, flags, err);
        }
        for (size_t i = 0; i < n; i++)
                recipe_deb_meta_release(&b.m[i]);
        free(b.m);
        return rc;
}

/* The debs layers below layer li: what they install, as dpkg status
 * stanzas appended to *installed (the image below as the resolver sees
 * it); with resolved, their sha256 as "below:HEX" there, and
 * "below-configured" after those of a layer a configure step above it
 * configured; with files, {"path", "configured"} of their packages. */
static int debs_below(const struct recipe_plan *p, const struct recipe_stage_opts *o, size_t li,
                      char **installed, json_t *resolved, json_t *files, struct kiln_error *err)
{
        struct recipe_stage_opts bo = *o;

        /* their Releases are their own layers' to pin */
        bo.lock_layer = NULL;
        bo.inventory = true;
        for (size_t k = 0; k < li; k++) {
                json_t *kres = json_array(), *inv = json_array();
                json_t *kfiles = files ? json_array() : NULL;
                bool configured = k + 1 < li && p->layers[k + 1].configure_step;
                const json_t *s;
                size_t j;
                int rc = 0;
                if (p->layers[k].kind != RECIPE_LAYER_DEBS) {
                        json_decref(kres);
                        json_decref(inv);
                        json_decref(kfiles);
                        continue;
                }
                if (!kres || !inv || (files && !kfiles))
                        rc = kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                else
                        rc = debs_each(p, &bo, p->layers[k].params, NULL, false, *installed, kres,
                                       inv, NULL, kfiles, err);
                json_array_foreach(rc < 0 ? NULL : kres, j, s) {
                        if (resolved)
                                json_array_append_new(resolved, json_sprintf("below:%s",
                                                                             json_string_value(s)));
                }
                if (rc == 0 && resolved && configured)
                        json_array_append_new(resolved, json_string("below-configured"));
                json_array_foreach(rc < 0 ? NULL : kfiles, j, s) json_array_append_new(
                    files, json_pack("{s:O, s:b}", "path", s, "configured", configured));
                json_decref(kfiles);
                json_array_foreach(rc < 0 ? NULL : inv, j, s) {
                        char *more = kiln_strdupf(
                                "%s\n\nPackage: %s\nStatus: install ok installed\nVersion: %s\nArchitecture: %s\n",
                                *installed ? *installed : "",
                                json_string_value(json_object_get(s, "name")),
                                json_string_value(json_object_get(s, "version")),
                                json_string_value(json_object_get(s, "architecture")));
                        if (!more) {
                                rc = kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                                break;
                        }
                        free(*installed);
                        *installed = more;
                }
                json_decref(kres);
                json_decref(inv);
                if (rc < 0)
                        return -1;
        }
        return 0;
}

/* A debs layer.  On a base with a dpkg database the layer carries the
 * merged one (recipe_dpkg.c): its key then covers the base's status and
 * the packages of the debs layers below, which the status lists too. */
int recipe_stage_debs(const struct recipe_plan *p, const struct recipe_stage_opts *o, size_t li,
                      const json_t *params, const char *dir, json_t *resolved,
                      json_t *packages, json_t *apt_releases, struct kiln_error *err)
{
        _cleanup_free_ char *status = NULL, *installed = NULL;
        struct recipe_dpkg *db = NULL;
        json_t *below = json_array(), *own = json_array();
        char hex[65];
        size_t len;
        int rc = -1;

        if (recipe_dpkg_status_path(o->base_root, &status) < 0 || !below || !own) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto out;
        }
        if (status) {
                if (recipe_sha256_file(status, hex, err) < 0 ||
                    kiln_read_file(status, 64u << 20, &installed, &len, err) < 0)
                        goto out;
                json_array_append_new(resolved, json_sprintf("dpkg-status:sha256:%s", hex));
        }
        /* without dpkg in the base: status.d, as distroless images have */
        if (debs_below(p, o, li, &installed, status ? resolved : NULL,
                       status && dir ? below : NULL, err) < 0 ||
            debs_each(p, o, params, dir, !status, installed, resolved, packages, apt_releases,
                      status && dir ? own : NULL, err) < 0)
                goto out;
        if (status && dir &&
            (recipe_dpkg_load(status, &db, err) < 0 || dpkg_add_files(db, below, NULL, err) < 0 ||
             dpkg_add_files(db, own, dir, err) < 0 || recipe_dpkg_write(db, dir, err) < 0))
                goto out;
        rc = 0;
out:
        recipe_dpkg_free(db);
        json_decref(below);
        json_decref(own);
        return rc;
}
