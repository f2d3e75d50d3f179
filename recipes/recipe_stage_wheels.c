/* recipes/recipe_stage_wheels.c: wheels layers staged as pip installs
 * them: requirements, the resolver over PEP 503 indexes, a pyproject.toml
 * project installed editable, pylock.toml. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "digest.h"
#include "io.h"
#include "project.h"
#include "pylock.h"
#include "recipe_internal.h"
#include "resolve.h"
#include "stage.h"
#include "util.h"

/* A wheel, named and versioned by its file name (PEP 427); file is a path
 * or URL whose last part is the file name, url what the SBOM shows. */
int recipe_inventory_wheel(json_t *packages, const char *file, const char *sha256,
                           const char *url, struct kiln_error *err)
{
        struct recipe_wheel_name w = {0};
        int rc;

        if (!packages)
                return 0;
        if (recipe_wheel_name_parse(file, &w, err) < 0)
                return -1;
        recipe_pep503_normalize(w.name);
        rc = recipe_inventory_add(packages,
                                  &(struct recipe_inventory_item){.type = "pypi", .name = w.name,
                                                                  .version = w.version,
                                                                  .sha256 = sha256, .file = file,
                                                                  .url = url},
                                  err);
        recipe_wheel_name_release(&w);
        return rc;
}

void recipe_python_target_of(const json_t *params, struct recipe_python_target *t)
{
        memset(t, 0, sizeof(*t));
        t->python = json_string_value(json_object_get(params, "python"));
        t->platform = json_string_value(json_object_get(params, "platform"));
        t->prefix = json_string_value(json_object_get(params, "prefix"));
        t->site_packages = json_string_value(json_object_get(params, "site_packages"));
        t->interpreter = json_string_value(json_object_get(params, "interpreter"));
}

/* The PEP 503 page of project name on index: INDEX/NAME/ (a URL) or
 * INDEX/NAME/index.html (a directory).  ret_found false: no such page. */
int recipe_index_page(const struct recipe_plan *p, const struct recipe_stage_opts *o,
                      const char *index, const char *name, bool *ret_found, char **ret_html,
                      size_t *ret_len, char **ret_base, struct kiln_error *err)
{
        _cleanup_free_ char *base = NULL, *page = NULL, *page_dir = NULL;
        struct kiln_error e = KILN_ERROR_INIT;

        *ret_found = false;
        if (recipe_input_is_url(index)) {
                _cleanup_free_ char *page_url = NULL;
                size_t n = strlen(index);
                while (n > 0 && index[n - 1] == '/')
                        n--;
                page_dir = kiln_strdupf("%.*s/%s", (int)n, index, name);
                page_url = page_dir ? kiln_strdupf("%s/", page_dir) : NULL;
                if (!page_url)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                page = recipe_input_file(p, o, page_url, false, RECIPE_INDEX_MAX, &e);
                if (!page) {
                        if (e.code == KILN_E_NOT_FOUND)
                                return 0;
                        *err = e;
                        return -1;
                }
        } else {
                base = recipe_resolve_input(p, index, err);
                if (!base)
                        return -1;
                page_dir = kiln_strdupf("%s/%s", base, name);
                page = page_dir ? kiln_strdupf("%s/index.html", page_dir) : NULL;
        }
        if (!page || !page_dir)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (kiln_read_file(page, RECIPE_INDEX_MAX, ret_html, ret_len, &e) < 0) {
                if (e.sys_errno == ENOENT || e.code == KILN_E_NOT_FOUND)
                        return 0;
                *err = e;
                kiln_error_prefix(err, "no project page for '%s' in index '%s'", name, index);
                return -1;
        }
        *ret_found = true;
        *ret_base = steal_ptr(&page_dir);
        return 0;
}

static bool hash_listed(const char *const *hashes, size_t n, const char *sha)
{
        for (size_t i = 0; i < n; i++)
                if (!strcmp(hashes[i], sha))
                        return true;
        return false;
}

/* Installs the wheel at url (from an index that lists sha, or NULL),
 * which must match one of hashes when there are any. */
static int install_url(const struct recipe_plan *p, const struct recipe_stage_opts *o,
                       const char *name, const char *const *hashes, size_t n_hashes,
                       const char *url, const char *sha, const struct recipe_python_target *t,
                       const char *dir, json_t *resolved, json_t *packages, struct kiln_error *err)
{
        _cleanup_free_ char *file = NULL;
        char got[65];

        if (sha && n_hashes && !hash_listed(hashes, n_hashes, sha))
                return kiln_error_set(err, KILN_E_DIGEST,
                                      "sha256 mismatch for '%s': the index's %s is not among the hashes required for '%s'",
                                      url, sha, name);
        /* a key needs the digest, not the file: a cache hit downloads nothing */
        if (!dir && (sha || n_hashes == 1)) {
                json_array_append_new(resolved, json_string(sha ? sha : hashes[0]));
                return recipe_inventory_wheel(packages, url, sha ? sha : hashes[0], url, err);
        }
        file = recipe_input_file(p, o, url, true, -1, err);
        if (!file)
                return -1;
        if (recipe_sha256_file(file, got, err) < 0)
                return -1;
        if (n_hashes && !hash_listed(hashes, n_hashes, got))
                return kiln_error_set(err, KILN_E_DIGEST,
                                      "sha256 mismatch for '%s': %s is not among the hashes required for '%s'",
                                      file, got, name);
        if (sha) {
                if (strcmp(sha, got))
                        return kiln_error_set(err, KILN_E_DIGEST,
                                              "sha256 mismatch for '%s': the index says %s, got %s",
                                              file, sha, got);
        } else if (!n_hashes) {
                return kiln_error_set(err, KILN_E_INVALID,
                                      "no sha256 for '%s': give --hash in the requirements or use an index that lists hashes",
                                      url);
        }
        json_array_append_new(resolved, json_string(got));
        if (recipe_inventory_wheel(packages, url, got, url, err) < 0)
                return -1;
        if (!dir)
                return 0;
        return recipe_wheel_take(o, file, got, dir, t, err);
}

/* Installs one requirement picked from the index ("resolve": false). */
static int install_from_index(const struct recipe_plan *p, const struct recipe_stage_opts *o,
                              const char *index, const struct recipe_requirement *q,
                              const struct recipe_python_target *t, const char *dir,
                              json_t *resolved, json_t *packages, struct kiln_error *err)
{
        _cleanup_free_ char *html = NULL, *url = NULL, *sha = NULL, *page_dir = NULL;
        bool found;
        size_t len;

        if (!q->exact)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "requirement for '%s' is not a pin: with \"resolve\": false, give 'NAME', 'NAME==VERSION' or 'NAME==VERSION.*'",
                                      q->name);
        if (recipe_index_page(p, o, index, q->name, &found, &html, &len, &page_dir, err) < 0)
                return -1;
        if (!found)
                return kiln_error_set(err, KILN_E_NOT_FOUND,
                                      "no project page for '%s' in index '%s'", q->name, index);
        if (recipe_simple_index_pick(html, len, page_dir, q, t, &url, &sha, err) < 0)
                return -1;
        return install_url(p, o, q->name, (const char *const *)q->sha256, q->n_sha256, url, sha,
                           t, dir, resolved, packages, err);
}

/* "sha256:ABC..." or "abc..." -> "abc..." (64 lowercase hex), or NULL */
const char *recipe_norm_sha256(const char *in, char out[65])
{
        size_t n;

        if (str_has_prefix(in, "sha256:"))
                in += 7;
        n = strlen(in);
        if (n != 64)
                return NULL;
        for (size_t i = 0; i < n; i++)
                out[i] = (char)((in[i] >= 'A' && in[i] <= 'F') ? in[i] + 32 : in[i]);
        out[64] = '\0';
        return out;
}

/* The layer's requirements: "packages", then the "requirements" file. */
static int read_requirements(const struct recipe_plan *p, const struct recipe_stage_opts *o,
                             const json_t *params, struct recipe_requirement **ret, size_t *ret_n,
                             struct kiln_error *err)
{
        struct recipe_requirements all = {0};
        const json_t *v;
        size_t i;

        json_array_foreach(json_object_get(params, "packages"), i, v) {
                struct recipe_requirement *ni = realloc(all.items, (all.n + 1) * sizeof(*ni));
                if (!ni) {
                        recipe_requirements_release(&all);
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                }
                all.items = ni;
                if (recipe_requirement_parse(json_string_value(v), &all.items[all.n], err) < 0) {
                        recipe_requirements_release(&all);
                        return -1;
                }
                all.n++;
        }
        if ((v = json_object_get(params, "requirements"))) {
                _cleanup_free_ char *file =
                        recipe_input_file(p, o, json_string_value(v), false, RECIPE_INDEX_MAX, err);
                _cleanup_free_ char *buf = NULL;
                struct recipe_requirements reqs = {0};
                struct recipe_requirement *ni;
                size_t len;

                if (!file || kiln_read_file(file, RECIPE_INDEX_MAX, &buf, &len, err) < 0 ||
                    recipe_requirements_parse(buf, len, file, &reqs, err) < 0) {
                        recipe_requirements_release(&all);
                        return -1;
                }
                ni = realloc(all.items, (all.n + reqs.n + 1) * sizeof(*ni));
                if (!ni) {
                        recipe_requirements_release(&reqs);
                        recipe_requirements_release(&all);
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                }
                memcpy(ni + all.n, reqs.items, reqs.n * sizeof(*ni));
                all.items = ni;
                all.n += reqs.n;
                free(reqs.items);
        }
        *ret = all.items;
        *ret_n = all.n;
        return 0;
}

struct wheels_ctx {
        const struct recipe_plan *p;
        const struct recipe_stage_opts *o;
        const struct recipe_python_target *t;
        const char *dir;
        json_t *resolved, *packages;
};

static int resolver_page(void *ctx, const char *index, const char *name, bool *ret_found,
                         char **ret_html, size_t *ret_len, char **ret_base, struct kiln_error *err)
{
        const struct wheels_ctx *w = ctx;

        return recipe_index_page(w->p, w->o, index, name, ret_found, ret_html, ret_len, ret_base,
                               err);
}

/* CACHE/pymeta/SHA256: the METADATA of a wheel by the wheel's digest, so
 * resolving again reads no wheel (a 2 GB torch wheel is not downloaded
 * for a layer key) */
static char *metadata_cache_path(const struct recipe_stage_opts *o, const char *sha256)
{
        if (!o->cache_dir || !sha256)
                return NULL;
        return kiln_strdupf("%s/pymeta/%s", o->cache_dir, sha256);
}

static int resolver_metadata(void *ctx, const struct recipe_index_file *f, char **ret_buf,
                             size_t *ret_len, struct kiln_error *err)
{
        const struct wheels_ctx *w = ctx;
        _cleanup_free_ char *cached = metadata_cache_path(w->o, f->sha256);
        _cleanup_free_ char *file = NULL, *murl = NULL;
        struct kiln_error miss = KILN_ERROR_INIT;

        if (cached && kiln_read_file(cached, RECIPE_WHEEL_META_MAX, ret_buf, ret_len, &miss) == 0)
                return 0;
        if (f->has_metadata) {
                murl = kiln_strdupf("%s.metadata", f->url);
                if (!murl)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                file = recipe_input_file(w->p, w->o, murl, true, RECIPE_WHEEL_META_MAX, err);
                if (!file || (f->metadata_sha256 &&
                              recipe_verify_sha256(file, f->metadata_sha256, err) < 0) ||
                    kiln_read_file(file, RECIPE_WHEEL_META_MAX, ret_buf, ret_len, err) < 0)
                        return -1;
        } else {
                file = recipe_input_file(w->p, w->o, f->url, true, -1, err);
                if (!file || (f->sha256 && recipe_verify_sha256(file, f->sha256, err) < 0) ||
                    recipe_wheel_read_metadata(file, ret_buf, ret_len, err) < 0)
                        return -1;
        }
        /* best effort: a cache that cannot be written only costs time */
        if (cached) {
                _cleanup_free_ char *dir = kiln_strdupf("%s/pymeta", w->o->cache_dir);
                if (dir && kiln_mkdir_p(dir, 0755, &miss) == 0)
                        kiln_write_file_atomic(cached, *ret_buf, *ret_len, 0644, &miss);
        }
        return 0;
}

/* pip's hash-checking mode: once a requirement carries --hash, every
 * dependency it pulls in needs one too (a requirement the recipe names
 * itself is checked against the index's hash) */
static int hashes_for(const struct recipe_requirement *reqs, size_t n, const char *name,
                      const struct recipe_requirement **ret, struct kiln_error *err)
{
        bool any = false, named = false;

        *ret = NULL;
        for (size_t i = 0; i < n; i++) {
                if (reqs[i].n_sha256)
                        any = true;
                if (!strcmp(reqs[i].name, name))
                        named = true;
                if (reqs[i].n_sha256 && !strcmp(reqs[i].name, name))
                        *ret = &reqs[i];
        }
        if (any && !named)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "'%s' has no --hash: once one requirement has a hash, every package installed needs one",
                                      name);
        return 0;
}

/* The "dependencies" of the package just listed: the names of the
 * resolved packages it requires (the SBOM's relationships). */
static int inventory_deps(json_t *packages, const struct recipe_resolved *it,
                          struct kiln_error *err)
{
        json_t *last, *deps;

        if (!packages || !(last = json_array_get(packages, json_array_size(packages) - 1)))
                return 0;
        deps = json_array();
        for (size_t i = 0; deps && i < it->n_deps; i++)
                if (json_array_append_new(deps, json_string(it->deps[i])) < 0)
                        json_decref(steal_ptr(&deps));
        if (!deps || json_object_set_new(last, "dependencies", deps) < 0)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        return 0;
}

static int resolve_and_install(struct wheels_ctx *w, bool pre, const char *const *indexes,
                               size_t n_indexes,
                               const struct recipe_requirement *reqs, size_t n_reqs,
                               const char *const *below, size_t n_below, struct kiln_error *err)
{
        _cleanup_free_ struct recipe_pep508 *roots = calloc(n_reqs, sizeof(*roots));
        struct recipe_resolve_opts ro = {
                .indexes = indexes,
                .n_indexes = n_indexes,
                .target = w->t,
                .page = resolver_page,
                .metadata = resolver_metadata,
                .ctx = w,
                .installed = below,
                .n_installed = n_below,
                .pre = pre,
        };
        struct recipe_resolution res = {0};
        int rc = 0;

        if (!roots)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        for (size_t i = 0; i < n_reqs; i++)
                roots[i] = reqs[i].req; /* borrowed: the resolver frees none */
        if (recipe_resolve(roots, n_reqs, &ro, &res, err) < 0)
                return -1;
        for (size_t i = 0; rc == 0 && i < res.n; i++) {
                const struct recipe_resolved *it = &res.items[i];
                const struct recipe_requirement *h;
                rc = hashes_for(reqs, n_reqs, it->name, &h, err);
                if (rc == 0)
                        rc = install_url(w->p, w->o, it->name,
                                         h ? (const char *const *)h->sha256 : NULL,
                                         h ? h->n_sha256 : 0, it->url, it->sha256, w->t, w->dir,
                                         w->resolved, w->packages, err);
                if (rc == 0)
                        rc = inventory_deps(w->packages, it, err);
        }
        recipe_resolution_release(&res);
        return rc;
}

/* "index", then "indexes": the order uv's first-index rule reads them in */
static int layer_indexes(const json_t *params, const char ***ret, size_t *ret_n,
                         struct kiln_error *err)
{
        const json_t *many = json_object_get(params, "indexes"), *v;
        const char *one = json_string_value(json_object_get(params, "index"));
        const char **out = calloc(json_array_size(many) + 1, sizeof(*out));
        size_t n = 0, i;

        if (!out)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (one)
                out[n++] = one;
        json_array_foreach(many, i, v)
                out[n++] = json_string_value(v);
        *ret = out;
        *ret_n = n;
        return 0;
}

static void names_free(char **names, size_t n)
{
        for (size_t i = 0; i < n; i++)
                free(names[i]);
        free(names);
}

/* The PEP 503 names the wheels layers below layer li install (their
 * inventories, resolved the same way). */
static int wheels_below(const struct recipe_plan *p, size_t li, const struct recipe_stage_opts *o,
                        char ***ret, size_t *ret_n, struct kiln_error *err)
{
        struct recipe_stage_opts inv = *o;
        char **names = NULL;
        size_t n = 0;

        inv.inventory = true;
        for (size_t j = 0; j < li; j++) {
                struct recipe_stage_result res = {0};
                const json_t *it;
                size_t k;

                if (p->layers[j].kind != RECIPE_LAYER_WHEELS || p->layers[j].unresolved)
                        continue;
                if (recipe_layer_key(p, j, &inv, &res, err) < 0) {
                        names_free(names, n);
                        return -1;
                }
                json_array_foreach(res.packages, k, it) {
                        char **nn = realloc(names, (n + 1) * sizeof(*nn));
                        if (!nn || !(nn[n] = strdup(json_string_value(json_object_get(it, "name"))))) {
                                if (nn)
                                        names = nn;
                                recipe_stage_result_release(&res);
                                names_free(names, n);
                                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        }
                        names = nn;
                        n++;
                }
                recipe_stage_result_release(&res);
        }
        *ret = names;
        *ret_n = n;
        return 0;
}

/* A source layer's repository: a relative path is the recipe's; URLs go
 * to git as they are. */
char *recipe_source_repository(const struct recipe_plan *p, const json_t *params)
{
        const char *repo = json_string_value(json_object_get(params, "repository"));

        if (!strstr(repo, "://") && repo[0] != '/' && !strchr(repo, '@'))
                return kiln_strdupf("%s/%s", p->recipe_dir, repo);
        return strdup(repo);
}

/* "project_from": the source layer of that name; its pyproject.toml is
 * read from the local checkout, or from the commit the layer builds
 * (copied into *ret_tmp, removed by the caller).  *ret_path: where the
 * layer puts the source in the image. */
static int project_of_source(const struct recipe_plan *p, const struct recipe_stage_opts *o,
                             const char *name, char **ret_dir, char **ret_tmp,
                             const char **ret_path, struct kiln_error *err)
{
        const struct recipe_layer *l = NULL;
        const json_t *params;
        const char *tmp = getenv("TMPDIR");
        _cleanup_free_ char *repo = NULL, *gitdir = NULL, *commit = NULL, *file = NULL;

        for (size_t i = 0; i < p->n_layers && !l; i++)
                if (!strcmp(p->layers[i].name, name))
                        l = &p->layers[i];
        if (!l || l->kind != RECIPE_LAYER_SOURCE)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "'project_from' names '%s', which is not a source layer of the recipe",
                                      name);
        params = l->params;
        *ret_path = json_string_value(json_object_get(params, "path"));
        if (!strcmp(json_string_value(json_object_get(params, "from")), "local")) {
                *ret_dir = recipe_resolve_input(
                        p, json_string_value(json_object_get(params, "local")), err);
                return *ret_dir ? 0 : -1;
        }
        repo = recipe_source_repository(p, params);
        if (!repo)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (recipe_git_resolve(repo, json_string_value(json_object_get(params, "ref")),
                               o->cache_dir, &gitdir, &commit, err) < 0)
                return -1;
        *ret_tmp = kiln_strdupf("%s/kiln-project-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!*ret_tmp)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (!mkdtemp(*ret_tmp)) {
                kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create '%s'", *ret_tmp);
                free(*ret_tmp);
                *ret_tmp = NULL;
                return -1;
        }
        file = kiln_strdupf("%s/pyproject.toml", *ret_tmp);
        if (!file)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (recipe_git_read_file(gitdir, commit, "pyproject.toml", file, err) < 0) {
                kiln_error_prefix(err, "source layer '%s' (%s)", name, repo);
                return -1;
        }
        *ret_dir = strdup(*ret_tmp);
        return *ret_dir ? 0 : kiln_error_set(err, KILN_E_NOMEM, "out of memory");
}

/* "project" (a directory) or "project_from" (a source layer):
 * pyproject.toml's requirements (with "extras") join the layer's; the
 * file's digest, the extras and the image path join the key */
static int read_project(const struct recipe_plan *p, const struct recipe_stage_opts *o,
                        const json_t *params, struct recipe_pyproject *pp,
                        const char **ret_image_path, struct recipe_requirement **reqs,
                        size_t *n_reqs, json_t *resolved, struct kiln_error *err)
{
        const char *project = json_string_value(json_object_get(params, "project"));
        const char *from = json_string_value(json_object_get(params, "project_from"));
        const json_t *ex = json_object_get(params, "extras"), *v;
        _cleanup_free_ char *dir = NULL, *tmp = NULL;
        _cleanup_free_ const char **extras = calloc(json_array_size(ex) + 1, sizeof(*extras));
        struct recipe_requirements more = {0};
        struct recipe_requirement *ni;
        const char *source_path = NULL;
        size_t i;
        int rc;

        if (from)
                rc = project_of_source(p, o, from, &dir, &tmp, &source_path, err);
        else
                rc = (dir = recipe_resolve_input(p, project, err)) ? 0 : -1;
        if (rc == 0 && !extras)
                rc = kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        json_array_foreach(ex, i, v)
                extras[i] = json_string_value(v);
        if (rc == 0)
                rc = recipe_pyproject_read(dir, pp, err);
        if (tmp)
                kiln_rm_rf(tmp);
        if (rc < 0 ||
            recipe_pyproject_requirements(pp, extras, json_array_size(ex), from ? from : project,
                                          &more, err) < 0)
                return -1;
        *ret_image_path = json_string_value(json_object_get(params, "project_path"));
        if (!*ret_image_path)
                *ret_image_path = source_path;
        ni = realloc(*reqs, (*n_reqs + more.n + 1) * sizeof(*ni));
        if (!ni) {
                recipe_requirements_release(&more);
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        memcpy(ni + *n_reqs, more.items, more.n * sizeof(*ni));
        *reqs = ni;
        *n_reqs += more.n;
        free(more.items);
        json_array_append_new(resolved, json_pack("{s:s, s:s, s:o}", "pyproject", pp->digest.str,
                                                  "project_path", *ret_image_path,
                                                  "extras",
                                                  ex ? json_deep_copy(ex) : json_array()));
        return 0;
}

/* PEP 660 as pip does it: the editable wheel, built in a scratch
 * directory and installed like any other (listed, the directory goes
 * with the list) */
static int install_editable(const struct recipe_stage_opts *o, const struct recipe_pyproject *pp,
                            const char *image_path, const struct recipe_python_target *t,
                            const char *dir, struct kiln_error *err)
{
        const char *tmp = getenv("TMPDIR");
        _cleanup_free_ char *scratch = kiln_strdupf("%s/kiln-editable-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        _cleanup_free_ char *whl = NULL;
        int rc;

        if (!scratch)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (!mkdtemp(scratch))
                return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create '%s'", scratch);
        rc = recipe_editable_wheel_write(pp, image_path, scratch, &whl, err);
        if (rc == 0 && o->wheels) {
                if (recipe_wheel_list_keep(o->wheels, scratch, err) < 0) {
                        kiln_rm_rf(scratch);
                        return -1;
                }
                return recipe_wheel_list_add(o->wheels, whl, NULL, t, err);
        }
        if (rc == 0)
                rc = recipe_wheel_install(whl, NULL, dir, t, err);
        kiln_rm_rf(scratch);
        return rc;
}

/* "pylock": exactly the packages of a PEP 751 lock, each wheel checked
 * against the lock's sha256; relative paths start at the lock's directory */
static int install_pylock(const struct recipe_plan *p, const struct recipe_stage_opts *o,
                          const char *lockfile, const struct recipe_python_target *t,
                          const char *dir, json_t *resolved, json_t *packages,
                          struct kiln_error *err)
{
        _cleanup_free_ char *file = recipe_input_file(p, o, lockfile, false, RECIPE_INDEX_MAX, err);
        _cleanup_free_ char *buf = NULL, *base = NULL;
        struct recipe_pylock_item *items = NULL;
        size_t len, n = 0;
        int rc = 0;

        if (!file || kiln_read_file(file, RECIPE_INDEX_MAX, &buf, &len, err) < 0 ||
            recipe_pylock_read(buf, len, lockfile, t, &items, &n, err) < 0)
                return -1;
        base = strrchr(file, '/') ? strndup(file, (size_t)(strrchr(file, '/') - file)) : strdup(".");
        for (size_t i = 0; rc == 0 && i < n; i++) {
                const char *hashes[1] = {items[i].sha256};
                _cleanup_free_ char *loc = strstr(items[i].url, "://") || items[i].url[0] == '/'
                                                   ? strdup(items[i].url)
                                                   : kiln_strdupf("%s/%s", base, items[i].url);
                rc = !base || !loc ? kiln_error_set(err, KILN_E_NOMEM, "out of memory")
                                   : install_url(p, o, items[i].name, hashes, 1, loc, NULL, t, dir,
                                                 resolved, packages, err);
        }
        recipe_pylock_items_free(items, n);
        return rc;
}

int recipe_stage_wheels(const struct recipe_plan *p, size_t li, const struct recipe_stage_opts *o,
                        const json_t *params, const char *dir, json_t *resolved,
                        json_t *packages, struct kiln_error *err)
{
        struct recipe_python_target t;
        _cleanup_free_ const char **indexes = NULL;
        struct recipe_requirement *reqs = NULL;
        char **below = NULL;
        struct recipe_pyproject pp = {0};
        const char *project_path = NULL;
        size_t n_indexes = 0, n_reqs = 0, n_below = 0;
        const json_t *v;
        size_t i;
        int rc = 0;

        recipe_python_target_of(params, &t);
        if (layer_indexes(params, &indexes, &n_indexes, err) < 0)
                return -1;
        json_array_foreach(json_object_get(params, "wheels"), i, v) {
                const char *path = json_string_value(json_object_get(v, "path"));
                const char *sha = json_string_value(json_object_get(v, "sha256"));
                _cleanup_free_ char *file = NULL;

                if (!sha)
                        return kiln_error_set(err, KILN_E_INVALID, "wheel '%s' has no sha256",
                                              path);
                {
                        char hex[65];
                        if (!recipe_norm_sha256(sha, hex))
                                return kiln_error_set(err, KILN_E_INVALID,
                                                      "invalid sha256 '%s' for wheel '%s'", sha,
                                                      path);
                        json_array_append_new(resolved, json_string(hex));
                        if (recipe_inventory_wheel(packages, path, hex, path, err) < 0)
                                return -1;
                }
                if (!dir)
                        continue; /* the key needs the declared digest only */
                file = recipe_input_file(p, o, path, true, -1, err);
                if (!file || recipe_wheel_take(o, file, sha, dir, &t, err) < 0)
                        return -1;
        }
        if ((v = json_object_get(params, "pylock")) &&
            install_pylock(p, o, json_string_value(v), &t, dir, resolved, packages, err) < 0)
                return -1;
        if (read_requirements(p, o, params, &reqs, &n_reqs, err) < 0)
                return -1;
        if ((json_object_get(params, "project") || json_object_get(params, "project_from")) &&
            read_project(p, o, params, &pp, &project_path, &reqs, &n_reqs, resolved, err) < 0)
                rc = -1;
        if (rc == 0 && n_reqs && !json_is_false(json_object_get(params, "resolve")))
                rc = wheels_below(p, li, o, &below, &n_below, err);
        if (rc == 0 && n_reqs && !n_indexes)
                rc = kiln_error_set(err, KILN_E_INVALID,
                                    "requirements of layer '%s' need an 'index' to pick wheels from",
                                    p->layers[li].name);
        else if (json_is_false(json_object_get(params, "resolve")))
                for (i = 0; rc == 0 && i < n_reqs; i++)
                        rc = install_from_index(p, o, indexes[0], &reqs[i], &t, dir, resolved,
                                                packages, err);
        else if (n_reqs)
                rc = resolve_and_install(&(struct wheels_ctx){p, o, &t, dir, resolved, packages},
                                         json_is_true(json_object_get(params, "pre")), indexes, n_indexes, reqs, n_reqs,
                                         (const char *const *)below, n_below, err);
        if (rc == 0 && pp.name && dir)
                rc = install_editable(o, &pp, project_path, &t, dir, err);
        recipe_pyproject_release(&pp);
        names_free(below, n_below);
        for (i = 0; i < n_reqs; i++)
                recipe_requirement_release(&reqs[i]);
        free(reqs);
        return rc;
}

/* The packages of one debs layer: unpacked into dir (when not NULL), their
 * sha256 in resolved, their local paths in files (when not NULL). */
