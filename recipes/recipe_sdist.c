/* recipes/recipe_sdist.c: a build step's source distribution, picked from
 * a PEP 503 index as pip picks one for `pip wheel SPEC`, pinned by the
 * sha256 the index lists. */
#include <stdlib.h>
#include <string.h>

#include "pep440.h"
#include "recipe_internal.h"
#include "stage.h"
#include "util.h"

static const char *last_part(const char *url)
{
        const char *s = strrchr(url, '/');

        return s ? s + 1 : url;
}

static const char *sdist_str(const json_t *sdist, const char *key)
{
        return json_string_value(json_object_get(sdist, key));
}

/* The newest file the requirement allows; pre-releases as pip allows them. */
static const struct recipe_index_file *newest_allowed(const struct recipe_index_file *files,
                                                      size_t n, const struct recipe_pep508 *q,
                                                      bool pre)
{
        bool allow_pre = pre || recipe_specset_allows_pre(&q->spec);

        for (size_t i = 0; i < n; i++)
                if (recipe_specset_contains(&q->spec, &files[i].v, allow_pre))
                        return &files[i];
        /* pip takes a pre-release when nothing final fits */
        for (size_t i = 0; !allow_pre && i < n; i++)
                if (recipe_specset_contains(&q->spec, &files[i].v, true))
                        return &files[i];
        return NULL;
}

int recipe_sdist_pick(const struct recipe_plan *p, const struct recipe_stage_opts *o,
                      const json_t *sdist, bool fetch, char **ret_path, char **ret_sha256,
                      json_t *packages, struct kiln_error *err)
{
        const char *index = sdist_str(sdist, "index"), *spec = sdist_str(sdist, "requirement");
        bool pre = json_is_true(json_object_get(sdist, "pre"));
        _cleanup_free_ char *html = NULL, *base = NULL, *file = NULL;
        struct recipe_index_file *files = NULL;
        const struct recipe_index_file *f;
        struct recipe_pep508 q = {0};
        size_t len = 0, n = 0;
        bool found = false;
        char got[65];
        int rc = -1;

        if (recipe_pep508_parse(spec, &q, err) < 0) {
                kiln_error_prefix(err, "sdist requirement '%s'", spec);
                return -1;
        }
        if (q.url || q.marker) {
                kiln_error_set(err, KILN_E_INVALID,
                               "sdist requirement '%s': give a name and versions, no URL or marker",
                               spec);
                goto out;
        }
        if (recipe_index_page(p, o, index, q.name, &found, &html, &len, &base, err) < 0)
                goto out;
        if (!found) {
                kiln_error_set(err, KILN_E_NOT_FOUND, "no project page for '%s' in index '%s'",
                               q.name, index);
                goto out;
        }
        if (recipe_simple_index_sdists(html, len, base, q.name, &files, &n, err) < 0)
                goto out;
        f = newest_allowed(files, n, &q, pre);
        if (!f) {
                kiln_error_set(err, KILN_E_NOT_FOUND,
                               "no source distribution of '%s' in index '%s' matches '%s' (%zu listed)",
                               q.name, index, spec, n);
                goto out;
        }
        if (!f->sha256) {
                kiln_error_set(err, KILN_E_INVALID,
                               "no sha256 for '%s': the index must list one (#sha256=...)", f->url);
                goto out;
        }
        if (fetch) {
                file = recipe_input_file(p, o, f->url, true, -1, err);
                if (!file || recipe_sha256_file(file, got, err) < 0)
                        goto out;
                if (strcmp(got, f->sha256)) {
                        kiln_error_set(err, KILN_E_DIGEST,
                                       "sha256 mismatch for '%s': the index says %s, got %s",
                                       f->url, f->sha256, got);
                        goto out;
                }
        } else if (!(file = strdup(f->url))) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto out;
        }
        if (recipe_inventory_add(packages,
                                 &(struct recipe_inventory_item){.type = "pypi", .name = q.name,
                                                                 .version = f->version,
                                                                 .sha256 = f->sha256,
                                                                 .file = last_part(f->url),
                                                                 .url = f->url},
                                 err) < 0)
                goto out;
        *ret_sha256 = strdup(f->sha256);
        if (!*ret_sha256) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto out;
        }
        *ret_path = steal_ptr(&file);
        rc = 0;
out:
        recipe_index_files_free(files, n);
        recipe_pep508_release(&q);
        return rc;
}
