/* A recipe's "validate" object: its schema, its expansion for an image,
 * the config checks and the file-only (--static) checks.  The checks run
 * in the image are in recipe_validate_run.c. */
#include "recipe_validate.h"

#include <archive_entry.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "recipe_internal.h"
#include "tar_read.h"
#include "util.h"

bool recipe_validate_prefix(const char *value, const char *want)
{
        size_t n = strlen(want);

        if (!value || strncmp(value, want, n) != 0)
                return false;
        /* "2" must not take "20.1": the prefix ends where a number does */
        return n == 0 || value[n] == '\0' || !isdigit((unsigned char)want[n - 1]) ||
               !isdigit((unsigned char)value[n]);
}

/* ---- schema (docs/recipes.md "validate") ---- */

static const struct recipe_sfield validate_fields[] = {
        {"python", S_STRING, false}, {"source", S_STRING, false}, {"workdir", S_STRING, false},
        {"env", S_OBJECT, false},    {"checks", S_ARRAY, true},   {"comment", S_STRING, false},
};

static const struct recipe_sfield check_fields[] = {
        {"name", S_STRING, true},       {"when", S_STRING, false},
        {"unless", S_STRING, false},    {"comment", S_STRING, false},
        {"module", S_STRING, false},    {"distribution", S_STRING, false},
        {"version", S_STRING, false},   {"local", S_STRING, false},
        {"names", S_ARRAY, false},      {"values", S_OBJECT, false},
        {"extension", S_BOOL, false},   {"code", S_STRING, false},
        {"absent", S_BOOL, false},      {"gpu", S_BOOL, false},
};

/* What "absent" excludes, and what needs a "module". */
static const char *const module_keys[] = {"distribution", "version", "local", "names",
                                          "extension"};

static int check_one(const struct recipe *r, const json_t *c, const char *ptr,
                     struct kiln_error *err)
{
        _cleanup_free_ char *where = NULL, *np = recipe_ptr_key(ptr, "names");
        _cleanup_free_ char *vp = recipe_ptr_key(ptr, "values");
        const char *name;
        json_t *v;

        if (!np || !vp)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (!json_is_object(c))
                return recipe_error_at(r, ptr, false, KILN_E_INVALID, err,
                                       "each entry of 'checks' in 'validate' must be an object");
        name = json_string_value(json_object_get(c, "name"));
        where = kiln_strdupf("check '%s'", name ? name : "?");
        if (!where)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (recipe_check_object(r, c, ptr, where, check_fields, ARRAY_SIZE(check_fields), err) < 0)
                return -1;
        if ((v = json_object_get(c, "names")) &&
            recipe_check_elems(r, v, np, "'names'", S_STRING, err) < 0)
                return -1;
        if ((v = json_object_get(c, "values")) && recipe_check_string_map(r, v, vp, where, err) < 0)
                return -1;
        if (!json_object_get(c, "module") && !json_object_get(c, "code"))
                return recipe_error_at(r, ptr, false, KILN_E_INVALID, err,
                                       "%s has nothing to check: give 'module' or 'code'", where);
        for (size_t i = 0; i < ARRAY_SIZE(module_keys); i++) {
                _cleanup_free_ char *kp = recipe_ptr_key(ptr, module_keys[i]);
                if (json_object_get(c, module_keys[i]) && !json_object_get(c, "module"))
                        return recipe_error_at(r, kp, true, KILN_E_INVALID, err,
                                               "'%s' in %s needs a 'module'", module_keys[i],
                                               where);
        }
        if (json_is_true(json_object_get(c, "absent"))) {
                static const char *const excl[] = {"version", "local", "names", "values",
                                                   "extension", "code", "gpu"};
                for (size_t i = 0; i < ARRAY_SIZE(excl); i++) {
                        _cleanup_free_ char *kp = recipe_ptr_key(ptr, excl[i]);
                        if (json_object_get(c, excl[i]))
                                return recipe_error_at(r, kp, true, KILN_E_INVALID, err,
                                                       "'%s' in %s contradicts 'absent': a "
                                                       "module that must not import has nothing "
                                                       "more to check",
                                                       excl[i], where);
                }
        }
        return 0;
}

int recipe_validate_check(const struct recipe *r, const json_t *v, struct kiln_error *err)
{
        const json_t *e;
        size_t i;

        if (recipe_check_object(r, v, "/validate", "'validate'", validate_fields,
                                ARRAY_SIZE(validate_fields), err) < 0)
                return -1;
        if ((e = json_object_get(v, "env")) &&
            recipe_check_string_map(r, e, "/validate/env", "'env' of 'validate'", err) < 0)
                return -1;
        json_array_foreach(json_object_get(v, "checks"), i, e) {
                _cleanup_free_ char *cp = recipe_ptr_index("/validate/checks", i);
                if (!cp)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                if (check_one(r, e, cp, err) < 0)
                        return -1;
        }
        return 0;
}

/* ---- the spec for an image ---- */

static bool declared(const struct recipe *r, const char *name)
{
        const json_t *prof = json_object_get(r->root, "profiles"), *pv;
        const char *k;

        if (json_object_get(json_object_get(r->root, "variables"), name))
                return true;
        json_object_foreach(json_object_get(prof, "values"), k, pv) {
                if (json_object_get(pv, name))
                        return true;
        }
        return false;
}

/* The checks whose "when" holds and whose "unless" does not, without them. */
static int apply_conditions(json_t *spec, struct kiln_error *err)
{
        json_t *in = json_object_get(spec, "checks"), *out = json_array(), *c;
        size_t i;

        if (!out)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        json_array_foreach(in, i, c) {
                const char *when = json_string_value(json_object_get(c, "when"));
                const char *unless = json_string_value(json_object_get(c, "unless"));
                if ((when && !recipe_truthy(when)) || (unless && recipe_truthy(unless)))
                        continue;
                json_object_del(c, "when");
                json_object_del(c, "unless");
                json_array_append(out, c);
        }
        if (json_object_set_new(spec, "checks", out) < 0)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        return 0;
}

int recipe_validate_spec(const struct recipe *r, const json_t *recorded, const char *const *sets,
                         size_t n_sets, json_t **ret_spec, struct kiln_error *err)
{
        const char *by = json_string_value(
                json_object_get(json_object_get(r->root, "profiles"), "by"));
        _cleanup_(recipe_plan_freep) struct recipe_plan *p = NULL;
        struct recipe_plan_opts o = {0};
        char **all = NULL;
        size_t n = 0;
        bool have_by = !by || json_object_get(recorded, by);
        const char *k;
        json_t *v;
        int rc = -1;

        if (!json_object_get(r->root, "validate"))
                return kiln_error_set(err, KILN_E_NOT_FOUND,
                                      "recipe '%s' has no 'validate' object: nothing to check",
                                      r->name);
        all = calloc(json_object_size(recorded) + n_sets + 1, sizeof(*all));
        if (!all)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        json_object_foreach(jmut(recorded), k, v) {
                if (!json_is_string(v) || !declared(r, k))
                        continue;
                if (!(all[n++] = kiln_strdupf("%s=%s", k, json_string_value(v)))) {
                        kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        goto out;
                }
        }
        for (size_t i = 0; i < n_sets; i++) {
                size_t kl = by ? strlen(by) : 0;
                if (by && !strncmp(sets[i], by, kl) && sets[i][kl] == '=')
                        have_by = true;
                if (!(all[n++] = strdup(sets[i]))) {
                        kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        goto out;
                }
        }
        if (!have_by) {
                /* the recipe's default profile would check the wrong image silently */
                kiln_error_set(err, KILN_E_USAGE,
                               "recipe '%s' has a profile per '%s' and the image does not record "
                               "its '%s': give --set %s=VALUE",
                               r->name, by, by, by);
                goto out;
        }
        o.sets = (const char *const *)all;
        o.n_sets = n;
        if (recipe_plan_build(r, &o, &p, err) < 0 || apply_conditions(p->validate, err) < 0)
                goto out;
        if (by) {
                /* which profile was checked, for the report */
                const char *val = json_string_value(json_object_get(p->variables, by));
                _cleanup_free_ char *prof = kiln_strdupf("%s=%s", by, val ? val : "");
                if (!prof) {
                        kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        goto out;
                }
                json_object_set_new(p->validate, "profile", json_string(prof));
        }
        *ret_spec = json_incref(p->validate);
        rc = 0;
out:
        for (size_t i = 0; i < n; i++)
                free(all[i]);
        free(all);
        return rc;
}

/* ---- reporting ---- */

/* Returns 0, so a check can end with return report(...). */
static int report(const struct recipe_validate_report *rep, const char *name,
                  enum recipe_check_state st, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static int report(const struct recipe_validate_report *rep, const char *name,
                  enum recipe_check_state st, const char *fmt, ...)
{
        char detail[1024];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(detail, sizeof(detail), fmt, ap);
        va_end(ap);
        if (rep->check)
                rep->check(rep->ctx, name, st, detail);
        return 0;
}

static const char *env_get(const json_t *config, const char *name)
{
        json_t *env = json_object_get(json_object_get(config, "config"), "Env"), *v;
        size_t i, n = strlen(name);

        json_array_foreach(env, i, v) {
                const char *s = json_string_value(v);
                if (s && !strncmp(s, name, n) && s[n] == '=')
                        return s + n + 1;
        }
        return NULL;
}

static bool same_dir(const char *a, const char *b)
{
        size_t na = strlen(a), nb = strlen(b);

        while (na > 1 && a[na - 1] == '/')
                na--;
        while (nb > 1 && b[nb - 1] == '/')
                nb--;
        return na == nb && !strncmp(a, b, na);
}

void recipe_validate_config(const json_t *spec, const json_t *config,
                            const struct recipe_validate_report *rep)
{
        const char *k, *want, *wd;
        json_t *v;

        json_object_foreach(json_object_get(spec, "env"), k, v) {
                const char *got = env_get(config, k);
                char name[64];
                size_t i;
                want = json_string_value(v);
                for (i = 0; k[i] && i + 1 < sizeof(name); i++)
                        name[i] = (char)tolower((unsigned char)k[i]);
                name[i] = '\0';
                if (got)
                        report(rep, name,
                               recipe_validate_prefix(got, want) ? RECIPE_CHECK_OK
                                                                 : RECIPE_CHECK_FAIL,
                               "%s=%s (want %s)", k, got, want);
                else
                        report(rep, name, RECIPE_CHECK_FAIL, "%s is not set (want %s)", k, want);
        }
        want = json_string_value(json_object_get(spec, "workdir"));
        if (want) {
                wd = json_string_value(
                        json_object_get(json_object_get(config, "config"), "WorkingDir"));
                report(rep, "workdir",
                       wd && same_dir(wd, want) ? RECIPE_CHECK_OK : RECIPE_CHECK_FAIL,
                       "WorkingDir=%s (want %s)", wd && *wd ? wd : "(unset)", want);
        }
}

/* ---- the file-only checks ---- */

/* An image path without leading "./" or '/' and trailing '/'. */
static char *norm(const char *p)
{
        char *s;
        size_t n;

        while (p[0] == '.' && p[1] == '/')
                p += 2;
        while (*p == '/')
                p++;
        s = strdup(p);
        n = s ? strlen(s) : 0;
        while (n && s[n - 1] == '/')
                s[--n] = '\0';
        return s;
}

/* Removes path and what is below it from files; an opaque directory
 * (below_layer >= 0) keeps itself and what its own layer added. */
static void remove_tree(json_t *files, const char *path, int below_layer)
{
        size_t n = strlen(path);
        const char *k;
        json_t *v;
        void *tmp;

        json_object_foreach_safe(files, tmp, k, v) {
                bool under = n == 0 || (!strncmp(k, path, n) && (k[n] == '/' || k[n] == '\0'));
                if (!under)
                        continue;
                if (below_layer >= 0 && json_integer_value(v) >= below_layer)
                        continue;
                if (n && below_layer >= 0 && k[n] == '\0')
                        continue;
                json_object_del(files, k);
        }
}

/* The paths of the image after every layer (path -> layer index), with
 * whiteouts applied. */
static int scan_layers(struct oci_store *st, const struct oci_manifest *m, json_t *files,
                       struct kiln_error *err)
{
        for (size_t i = 0; i < m->n_layers; i++) {
                struct oci_reader *blob = st->ops->open_blob(st, &m->layers[i], err);
                struct layer_tar_reader *r =
                        blob ? layer_tar_reader_new(blob, m->layers[i].media_type,
                                                    m->layers[i].digest.str, err)
                             : NULL;
                struct archive_entry *e;
                int rc;

                if (!r)
                        return -1;
                while ((rc = layer_tar_reader_next(r, &e, err)) == 1) {
                        _cleanup_free_ char *p = norm(archive_entry_pathname(e));
                        const char *base;
                        if (!p || !*p)
                                continue;
                        base = strrchr(p, '/') ? strrchr(p, '/') + 1 : p;
                        if (!strcmp(base, ".wh..wh..opq")) {
                                p[base > p ? (size_t)(base - p - 1) : 0] = '\0';
                                remove_tree(files, p, (int)i);
                        } else if (!strncmp(base, ".wh.", 4)) {
                                _cleanup_free_ char *victim =
                                        kiln_strdupf("%.*s%s", (int)(base - p), p, base + 4);
                                if (victim)
                                        remove_tree(files, victim, -1);
                        } else {
                                json_object_set_new(files, p, json_integer((json_int_t)i));
                        }
                }
                if (rc == 0)
                        rc = layer_tar_reader_finish(r, err);
                layer_tar_reader_free(r);
                if (rc < 0)
                        return -1;
        }
        return 0;
}

/* A distribution name as wheels spell it in .dist-info (PEP 503, with '_'). */
static void dist_norm(const char *s, size_t n, char *out, size_t len)
{
        size_t k = 0;

        for (size_t i = 0; i < n && k + 1 < len; i++) {
                char c = s[i];
                if (c == '-' || c == '.' || c == '_') {
                        if (k && out[k - 1] == '_')
                                continue;
                        c = '_';
                }
                out[k++] = (char)tolower((unsigned char)c);
        }
        out[k] = '\0';
}

/* Calls fn for each NAME-VERSION.dist-info directory of a site directory
 * (…-packages/); stops when fn returns true. */
static bool each_dist(const json_t *files, bool (*fn)(void *ctx, const char *name, size_t nlen,
                                                       const char *version, size_t vlen),
                      void *ctx)
{
        const char *k;
        json_t *v;

        json_object_foreach(jmut(files), k, v) {
                const char *d = strstr(k, ".dist-info"), *name, *dash;
                if (!d || (d[10] != '\0' && d[10] != '/') || !strstr(k, "-packages/"))
                        continue;
                name = d;
                while (name > k && name[-1] != '/')
                        name--;
                dash = memchr(name, '-', (size_t)(d - name));
                if (dash && fn(ctx, name, (size_t)(dash - name), dash + 1, (size_t)(d - dash - 1)))
                        return true;
        }
        return false;
}

struct dist_find {
        char want[256];
        bool similar; /* NAME_* instead of NAME */
        char found[256], version[128];
};

static bool dist_match(void *ctx, const char *name, size_t nlen, const char *version, size_t vlen)
{
        struct dist_find *f = ctx;
        char got[256];
        size_t wl = strlen(f->want);

        dist_norm(name, nlen, got, sizeof(got));
        if (f->similar ? !(strncmp(got, f->want, wl) == 0 && got[wl] == '_')
                       : strcmp(got, f->want) != 0)
                return false;
        snprintf(f->found, sizeof(f->found), "%.*s", (int)nlen, name);
        snprintf(f->version, sizeof(f->version), "%.*s", (int)vlen, version);
        return true;
}

/* The installed version of distribution dist, or NULL; with similar, of a
 * distribution named dist_SOMETHING (and its name in f->found). */
static const char *dist_version(const json_t *files, const char *dist, bool similar,
                                struct dist_find *f)
{
        memset(f, 0, sizeof(*f));
        dist_norm(dist, strlen(dist), f->want, sizeof(f->want));
        f->similar = similar;
        return each_dist(files, dist_match, f) ? f->version : NULL;
}

/* The Python path an image's interpreter would search, as far as files
 * tell: every …/site-packages and …/dist-packages, then PYTHONPATH. */
static json_t *python_dirs(const json_t *files, const json_t *config)
{
        json_t *dirs = json_object(), *v;
        const char *k, *pp = env_get(config, "PYTHONPATH");

        json_object_foreach(jmut(files), k, v) {
                const char *s = strstr(k, "-packages");
                if (s && (s[9] == '/' || s[9] == '\0') && s - k >= 4 &&
                    (!strncmp(s - 4, "site", 4) || !strncmp(s - 4, "dist", 4))) {
                        _cleanup_free_ char *d = strndup(k, (size_t)(s + 9 - k));
                        if (d)
                                json_object_set_new(dirs, d, json_true());
                }
        }
        while (pp && *pp) {
                size_t n = strcspn(pp, ":");
                _cleanup_free_ char *raw = strndup(pp, n);
                _cleanup_free_ char *d = raw ? norm(raw) : NULL;
                if (d && *d)
                        json_object_set_new(dirs, d, json_true());
                pp += n + (pp[n] == ':');
        }
        return dirs;
}

/* Where module (a.b) is on the path: a package directory, a .py file or an
 * extension; *ret the image path, "" when not found. */
static void module_where(const json_t *files, const json_t *dirs, const char *module, char *ret,
                         size_t len)
{
        char rel[512];
        const char *d, *k;
        json_t *v, *u;

        snprintf(rel, sizeof(rel), "%s", module);
        for (char *c = rel; *c; c++)
                if (*c == '.')
                        *c = '/';
        *ret = '\0';
        json_object_foreach(jmut(dirs), d, v) {
                size_t n = strlen(d), rl = strlen(rel);
                json_object_foreach(jmut(files), k, u) {
                        const char *rest = k + n + 1;
                        if (strncmp(k, d, n) != 0 || k[n] != '/' || strncmp(rest, rel, rl) != 0)
                                continue;
                        /* a/b/… (a package, namespace ones too), a/b.py, a/b.cpython-….so */
                        if (rest[rl] == '/' || !strcmp(rest + rl, ".py") ||
                            (rest[rl] == '.' && str_has_suffix(rest, ".so"))) {
                                snprintf(ret, len, "/%s/%.*s%s", d, (int)rl, rest,
                                         rest[rl] == '/' ? "" : rest + rl);
                                return;
                        }
                }
        }
}

static int static_check(const json_t *files, const json_t *dirs, const json_t *c,
                         const struct recipe_validate_report *rep)
{
        const char *name = json_string_value(json_object_get(c, "name"));
        const char *mod = json_string_value(json_object_get(c, "module"));
        const char *dist = json_string_value(json_object_get(c, "distribution"));
        const char *want = json_string_value(json_object_get(c, "version"));
        const char *local = json_string_value(json_object_get(c, "local"));
        const char *ver, *plus;
        char where[1024], top[256];
        struct dist_find f, sim;

        if (json_is_true(json_object_get(c, "gpu")))
                return report(rep, name, RECIPE_CHECK_SKIP, "a GPU check: needs the image run "
                                                            "with --gpu");
        if (!mod)
                return report(rep, name, RECIPE_CHECK_SKIP, "runs code: needs the image to run");
        snprintf(top, sizeof(top), "%.*s", (int)strcspn(mod, "."), mod);
        module_where(files, dirs, mod, where, sizeof(where));
        ver = dist_version(files, dist ? dist : top, false, &f);
        if (json_is_true(json_object_get(c, "absent"))) {
                if (*where || ver)
                        return report(rep, name, RECIPE_CHECK_FAIL, "%s is in the image (%s%s%s), "
                                                                    "but must not be",
                                      mod, *where ? where : f.found, ver ? " " : "",
                                      ver ? ver : "");
                return report(rep, name, RECIPE_CHECK_OK, "no %s in the image, as expected", mod);
        }
        if (!*where) {
                const char *s = dist_version(files, dist ? dist : top, true, &sim);
                return report(rep, name, RECIPE_CHECK_FAIL, "no module %s on the image's Python "
                                                            "path%s%s%s%s%s",
                              mod, s ? " (the image has " : "", s ? sim.found : "", s ? " " : "",
                              s ? s : "", s ? ")" : "");
        }
        if ((want || local) && !ver)
                return report(rep, name, RECIPE_CHECK_FAIL, "%s has no .dist-info of %s: its "
                                                            "version is unknown",
                              where, dist ? dist : top);
        plus = ver ? strchr(ver, '+') : NULL;
        if ((want && !recipe_validate_prefix(ver, want)) ||
            (local && (!plus || strcmp(plus + 1, local) != 0)))
                return report(rep, name, RECIPE_CHECK_FAIL, "%s %s, expected %s%s%s%s", f.found,
                              ver, want ? want : "", want ? "" : "any version",
                              local ? " with +" : "", local ? local : "");
        if (json_is_true(json_object_get(c, "extension")) && !want && !local)
                return report(rep, name, RECIPE_CHECK_SKIP, "%s is there; loading its compiled "
                                                            "extension needs the image to run",
                              where);
        return report(rep, name, RECIPE_CHECK_OK, "%s%s%s in %s", ver ? f.found : mod,
                      ver ? " " : "", ver ? ver : "", where);
}

/* The interpreter: an absolute path, else looked up in the config's PATH. */
static int static_python(const json_t *files, const json_t *config, const char *py,
                          const struct recipe_validate_report *rep)
{
        const char *path = env_get(config, "PATH");

        if (py[0] == '/') {
                _cleanup_free_ char *p = norm(py);
                return report(rep, "python", p && json_object_get(files, p) ? RECIPE_CHECK_OK
                                                                             : RECIPE_CHECK_FAIL,
                              "%s %s", py,
                              p && json_object_get(files, p) ? "present" : "missing");
        }
        while (path && *path) {
                size_t n = strcspn(path, ":");
                _cleanup_free_ char *raw = kiln_strdupf("%.*s/%s", (int)n, path, py);
                _cleanup_free_ char *p = raw ? norm(raw) : NULL;
                if (p && json_object_get(files, p))
                        return report(rep, "python", RECIPE_CHECK_OK, "%s is /%s", py, p);
                path += n + (path[n] == ':');
        }
        return report(rep, "python", RECIPE_CHECK_FAIL, "%s is not on the image's PATH", py);
}

int recipe_validate_static(struct oci_store *st, const struct oci_image *img, const json_t *spec,
                           const struct recipe_validate_report *rep, struct kiln_error *err)
{
        _cleanup_json_ json_t *files = json_object();
        _cleanup_json_ json_t *dirs = NULL;
        const char *py = json_string_value(json_object_get(spec, "python"));
        const char *src = json_string_value(json_object_get(spec, "source"));
        const json_t *c;
        size_t i;

        if (!files)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (scan_layers(st, img->m, files, err) < 0)
                return -1;
        dirs = python_dirs(files, img->config);
        if (!dirs)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        static_python(files, img->config, py ? py : "python3", rep);
        json_array_foreach(json_object_get(spec, "checks"), i, c)
                static_check(files, dirs, c, rep);
        if (src) {
                _cleanup_free_ char *s = norm(src);
                size_t n = s ? strlen(s) : 0;
                bool any = false;
                const char *k;
                json_t *v;
                json_object_foreach(files, k, v) if (n && !strncmp(k, s, n) && k[n] == '/') {
                        any = true;
                        break;
                }
                report(rep, "source", any ? RECIPE_CHECK_OK : RECIPE_CHECK_FAIL, "%s %s", src,
                       any ? "holds files" : "is missing or empty");
        }
        return 0;
}
