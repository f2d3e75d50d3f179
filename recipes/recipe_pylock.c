/* PEP 751 pylock.toml, written from a kiln lock and read into a wheels
 * layer (see pylock.h):
 * https://packaging.python.org/en/latest/specifications/pylock-toml/ */
#include <stdio.h>
#include <string.h>

#include "pylock.h"
#include "resolve.h"
#include "toml.h"
#include "util.h"

/* a TOML basic string */
static int put_str(char **buf, const char *s)
{
        size_t n = 0;
        char *q = malloc(strlen(s) * 6 + 3), *out;

        if (!q)
                return -1;
        q[n++] = '"';
        for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
                if (*p == '"' || *p == '\\') {
                        q[n++] = '\\';
                        q[n++] = (char)*p;
                } else if (*p < 0x20 || *p == 0x7f) {
                        n += (size_t)sprintf(q + n, "\\u%04x", *p);
                } else {
                        q[n++] = (char)*p;
                }
        }
        q[n++] = '"';
        q[n] = '\0';
        out = kiln_strdupf("%s%s", *buf, q);
        free(q);
        free(*buf);
        *buf = out;
        return out ? 0 : -1;
}

static int put(char **buf, const char *s)
{
        char *out = kiln_strdupf("%s%s", *buf, s);

        free(*buf);
        *buf = out;
        return out ? 0 : -1;
}

int recipe_pylock_format(const json_t *lock, char **ret, struct kiln_error *err)
{
        char *buf = strdup("lock-version = \"1.0\"\ncreated-by = \"kiln\"\n");
        const json_t *layers = json_object_get(lock, "layers"), *l, *pkg;
        const char *name;
        size_t i;
        int rc = 0;

        json_object_foreach((json_t *)(uintptr_t)layers, name, l) {
                json_array_foreach(json_object_get(l, "packages"), i, pkg) {
                        const char *url = json_string_value(json_object_get(pkg, "url"));
                        const json_t *deps = json_object_get(pkg, "dependencies"), *d;
                        size_t k;

                        rc |= put(&buf, "\n[[packages]]\nname = ");
                        rc |= put_str(&buf, json_string_value(json_object_get(pkg, "name")));
                        rc |= put(&buf, "\nversion = ");
                        rc |= put_str(&buf, json_string_value(json_object_get(pkg, "version")));
                        if (json_array_size(deps)) {
                                rc |= put(&buf, "\ndependencies = [");
                                json_array_foreach(deps, k, d) {
                                        rc |= put(&buf, k ? ", {name = " : "{name = ");
                                        rc |= put_str(&buf, json_string_value(d));
                                        rc |= put(&buf, "}");
                                }
                                rc |= put(&buf, "]");
                        }
                        rc |= put(&buf, "\n[[packages.wheels]]\n");
                        rc |= put(&buf, url && strstr(url, "://") ? "url = " : "path = ");
                        rc |= put_str(&buf, url ? url : "");
                        rc |= put(&buf, "\nhashes = {sha256 = ");
                        rc |= put_str(&buf, json_string_value(json_object_get(pkg, "sha256")));
                        rc |= put(&buf, "}\n");
                        if (rc || !buf)
                                break;
                }
        }
        if (rc || !buf) {
                free(buf);
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        *ret = buf;
        return 0;
}

void recipe_pylock_items_free(struct recipe_pylock_item *items, size_t n)
{
        for (size_t i = 0; items && i < n; i++) {
                free(items[i].name);
                free(items[i].version);
                free(items[i].url);
                free(items[i].sha256);
        }
        free(items);
}

/* The wheel of pkg for the target: the first whose file name's tags fit. */
static const json_t *pick_wheel(const json_t *pkg, const struct recipe_python_target *t)
{
        const json_t *w;
        size_t i;

        json_array_foreach(json_object_get(pkg, "wheels"), i, w) {
                const char *file = json_string_value(json_object_get(w, "name"));
                struct recipe_wheel_name wn = {0};
                struct kiln_error ignore = KILN_ERROR_INIT;
                bool ok;

                if (!file)
                        file = json_string_value(json_object_get(w, "url"));
                if (!file)
                        file = json_string_value(json_object_get(w, "path"));
                if (!file || recipe_wheel_name_parse(file, &wn, &ignore) < 0)
                        continue;
                ok = recipe_wheel_compatible(&wn, t);
                recipe_wheel_name_release(&wn);
                if (ok)
                        return w;
        }
        return NULL;
}

static int read_item(const json_t *pkg, const char *what, const struct recipe_marker_env *env,
                     const struct recipe_python_target *t, struct recipe_pylock_item *it,
                     bool *ret_skip, struct kiln_error *err)
{
        const char *name = json_string_value(json_object_get(pkg, "name"));
        const char *marker = json_string_value(json_object_get(pkg, "marker"));
        const json_t *w;
        const char *loc, *sha;
        bool applies = true;

        *ret_skip = false;
        if (!name)
                return kiln_error_set(err, KILN_E_INVALID, "invalid pylock '%s': a package has no name",
                                      what);
        if (marker && recipe_marker_eval(marker, env, NULL, &applies, err) < 0) {
                kiln_error_prefix(err, "pylock '%s' package '%s'", what, name);
                return -1;
        }
        if (!applies) {
                *ret_skip = true;
                return 0;
        }
        w = pick_wheel(pkg, t);
        if (!w)
                return kiln_error_set(err, KILN_E_NOT_FOUND,
                                      "pylock '%s' has no wheel of '%s' for %s / %s", what, name,
                                      t && t->python ? t->python : "cp311",
                                      t && t->platform ? t->platform : "manylinux_2_35_x86_64");
        loc = json_string_value(json_object_get(w, "url"));
        if (!loc)
                loc = json_string_value(json_object_get(w, "path"));
        sha = json_string_value(json_object_get(json_object_get(w, "hashes"), "sha256"));
        if (!loc || !sha || strlen(sha) != 64)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid pylock '%s': the wheel of '%s' needs a url or path and a sha256 hash",
                                      what, name);
        it->name = strdup(name);
        it->version = strdup(json_is_string(json_object_get(pkg, "version"))
                                     ? json_string_value(json_object_get(pkg, "version"))
                                     : "");
        it->url = strdup(loc);
        it->sha256 = strdup(sha);
        if (!it->name || !it->version || !it->url || !it->sha256)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        recipe_pep503_normalize(it->name);
        for (char *p = it->sha256; *p; p++)
                if (*p >= 'A' && *p <= 'F')
                        *p = (char)(*p + 32);
        return 0;
}

int recipe_pylock_read(const char *text, size_t len, const char *what,
                       const struct recipe_python_target *t, struct recipe_pylock_item **ret,
                       size_t *ret_n, struct kiln_error *err)
{
        json_t *doc = oci_toml_parse(text, len, what, err);
        const json_t *pkgs, *pkg;
        struct recipe_marker_env env;
        struct recipe_marker_bufs bufs;
        struct recipe_pylock_item *items = NULL;
        size_t n = 0, i;
        const char *ver;

        if (!doc)
                return -1;
        ver = json_string_value(json_object_get(doc, "lock-version"));
        /* PEP 751: a reader refuses a major version it does not know */
        if (!ver || strncmp(ver, "1.", 2)) {
                kiln_error_set(err, KILN_E_UNSUPPORTED,
                               "unsupported pylock '%s': lock-version '%s' (1.x is read)", what,
                               ver ? ver : "");
                json_decref(doc);
                return -1;
        }
        recipe_marker_env_for(t, &env, &bufs);
        pkgs = json_object_get(doc, "packages");
        items = calloc(json_array_size(pkgs) + 1, sizeof(*items));
        if (!items) {
                json_decref(doc);
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        json_array_foreach(pkgs, i, pkg) {
                bool skip;
                if (read_item(pkg, what, &env, t, &items[n], &skip, err) < 0) {
                        recipe_pylock_items_free(items, n + 1);
                        json_decref(doc);
                        return -1;
                }
                if (!skip)
                        n++;
        }
        json_decref(doc);
        *ret = items;
        *ret_n = n;
        return 0;
}
