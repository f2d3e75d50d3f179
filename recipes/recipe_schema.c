/* recipes/recipe_schema.c: the schema check of a recipe (recipe_internal.h:
 * recipe_check_object and its kin): every key known, every type right,
 * required keys present; and the schema of each layer kind. */
#include "recipe_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static const char *stype_name(enum recipe_stype t)
{
        switch (t) {
        case S_STRING:
                return "a string";
        case S_OBJECT:
                return "an object";
        case S_ARRAY:
                return "an array";
        case S_BOOL:
                return "true or false";
        case S_INT:
                return "an integer";
        case S_STRING_OR_ARRAY:
                return "a string or an array of strings";
        }
        return "?";
}

static bool type_ok(const json_t *v, enum recipe_stype t)
{
        switch (t) {
        case S_STRING:
                return json_is_string(v);
        case S_OBJECT:
                return json_is_object(v);
        case S_ARRAY:
                return json_is_array(v);
        /* or a variable, made true or false when the plan expands it */
        case S_BOOL:
                return json_is_boolean(v) ||
                       (json_is_string(v) && strstr(json_string_value(v), "${"));
        case S_INT:
                return json_is_integer(v);
        case S_STRING_OR_ARRAY:
                return json_is_string(v) || json_is_array(v);
        }
        return false;
}

static char *child_ptr(const char *ptr, const char *seg)
{
        /* pointers are built without escaping here; keys with '/' or '~'
         * are looked up escaped below */
        size_t n = strlen(ptr), m = strlen(seg), k = n + 1;
        char *out = malloc(n + 1 + 2 * m + 1);

        if (!out)
                return NULL;
        memcpy(out, ptr, n);
        out[n] = '/';
        for (size_t i = 0; i < m; i++) {
                if (seg[i] == '~') {
                        out[k++] = '~';
                        out[k++] = '0';
                } else if (seg[i] == '/') {
                        out[k++] = '~';
                        out[k++] = '1';
                } else {
                        out[k++] = seg[i];
                }
        }
        out[k] = '\0';
        return out;
}

char *recipe_ptr_key(const char *ptr, const char *key)
{
        return child_ptr(ptr, key);
}

char *recipe_ptr_index(const char *ptr, size_t i)
{
        char num[32];

        snprintf(num, sizeof(num), "%zu", i);
        return child_ptr(ptr, num);
}

/* Checks obj against fields: every key known, every type right, required
 * keys present.  where names the object in messages ("layer 'torch'"). */
static int check_object(const struct recipe *r, const json_t *obj, const char *ptr,
                        const char *where, const struct recipe_sfield *fields, size_t n,
                        struct kiln_error *err)
{
        const char *key;
        json_t *v;

        json_object_foreach(jmut(obj), key, v)
        {
                const struct recipe_sfield *f = NULL;
                _cleanup_free_ char *cp = child_ptr(ptr, key);

                if (!cp)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                for (size_t i = 0; i < n; i++)
                        if (!strcmp(fields[i].key, key))
                                f = &fields[i];
                if (!f)
                        return recipe_error_at(r, cp, true, KILN_E_INVALID, err,
                                               "unknown key '%s' in %s", key, where);
                if (!type_ok(v, f->type))
                        return recipe_error_at(r, cp, false, KILN_E_INVALID, err,
                                               "'%s' in %s must be %s", key, where,
                                               stype_name(f->type));
                if (f->type == S_STRING_OR_ARRAY && json_is_array(v)) {
                        size_t i;
                        json_t *e;
                        json_array_foreach(v, i, e) if (!json_is_string(e))
                        {
                                _cleanup_free_ char *ep = recipe_ptr_index(cp, i);
                                return recipe_error_at(r, ep ? ep : cp, false, KILN_E_INVALID, err,
                                                       "'%s' in %s must be %s", key, where,
                                                       stype_name(f->type));
                        }
                }
        }
        for (size_t i = 0; i < n; i++)
                if (fields[i].required && !json_object_get(obj, fields[i].key))
                        return recipe_error_at(r, ptr, false, KILN_E_INVALID, err,
                                               "missing '%s' in %s", fields[i].key, where);
        return 0;
}

/* Every element of array v (at ptr) must have type t. */
static int check_elems(const struct recipe *r, const json_t *v, const char *ptr, const char *what,
                       enum recipe_stype t, struct kiln_error *err)
{
        size_t i;
        json_t *e;

        json_array_foreach(v, i, e) if (!type_ok(e, t))
        {
                _cleanup_free_ char *ep = recipe_ptr_index(ptr, i);
                return recipe_error_at(r, ep ? ep : ptr, false, KILN_E_INVALID, err,
                                       "each entry of %s must be %s", what, stype_name(t));
        }
        return 0;
}

/* Every member of object v must be a string. */
static int check_string_map(const struct recipe *r, const json_t *v, const char *ptr,
                            const char *what, struct kiln_error *err)
{
        const char *key;
        json_t *e;

        json_object_foreach(jmut(v), key, e) if (!json_is_string(e))
        {
                _cleanup_free_ char *ep = child_ptr(ptr, key);
                return recipe_error_at(r, ep ? ep : ptr, false, KILN_E_INVALID, err,
                                       "'%s' in %s must be a string", key, what);
        }
        return 0;
}

int recipe_check_object(const struct recipe *r, const json_t *obj, const char *ptr,
                        const char *where, const struct recipe_sfield *fields, size_t n,
                        struct kiln_error *err)
{
        return check_object(r, obj, ptr, where, fields, n, err);
}

int recipe_check_elems(const struct recipe *r, const json_t *v, const char *ptr, const char *what,
                       enum recipe_stype t, struct kiln_error *err)
{
        return check_elems(r, v, ptr, what, t, err);
}

int recipe_check_string_map(const struct recipe *r, const json_t *v, const char *ptr,
                            const char *what, struct kiln_error *err)
{
        return check_string_map(r, v, ptr, what, err);
}

/* "0755": octal digits, at most 07777 (a ${...} is checked once expanded) */
bool recipe_mode_valid(const char *s)
{
        char *end = NULL;
        long m;

        if (strchr(s, '$'))
                return true;
        m = strtol(s, &end, 8);
        return *s >= '0' && *s <= '7' && !*end && m >= 0 && m <= 07777;
}

/* "modes" of a tree: glob -> octal mode */
static int check_modes(const struct recipe *r, const json_t *v, const char *ptr, const char *what,
                       struct kiln_error *err)
{
        const char *key;
        json_t *e;

        if (check_string_map(r, v, ptr, what, err) < 0)
                return -1;
        json_object_foreach(jmut(v), key, e) if (!recipe_mode_valid(json_string_value(e)))
        {
                _cleanup_free_ char *ep = child_ptr(ptr, key);
                return recipe_error_at(r, ep ? ep : ptr, false, KILN_E_INVALID, err,
                                       "invalid mode '%s' for '%s' in %s: expected octal like 0755",
                                       json_string_value(e), key, what);
        }
        return 0;
}

/* ---- layers ---- */

#define LAYER_COMMON                                                                               \
        {"name", S_STRING, true}, {"kind", S_STRING, true}, {"when", S_STRING, false},             \
            {"comment", S_STRING, false},                                                          \
        {                                                                                          \
                "keep_modes", S_BOOL, false                                                        \
        }

static const struct recipe_sfield wheels_fields[] = {
    LAYER_COMMON,
    {"wheels", S_ARRAY, false},
    {"packages", S_ARRAY, false},
    {"index", S_STRING, false},
    {"indexes", S_ARRAY, false},
    {"resolve", S_BOOL, false},
    {"pre", S_BOOL, false},
    {"project", S_STRING, false},
    {"project_path", S_STRING, false},
    {"project_from", S_STRING, false},
    {"pylock", S_STRING, false},
    {"extras", S_ARRAY, false},
    {"requirements", S_STRING, false},
    {"python", S_STRING, false},
    {"platform", S_STRING, false},
    {"site_packages", S_STRING, false},
    {"prefix", S_STRING, false},
    {"interpreter", S_STRING, false},
};

static const struct recipe_sfield debs_fields[] = {
    LAYER_COMMON,
    {"debs", S_ARRAY, false},
    {"apt", S_ARRAY, false},
    {"architecture", S_STRING, false},
    {"merged_usr", S_BOOL, false},
    {"resolve", S_BOOL, false},
    {"configure", S_BOOL, false},
};

/* docs/recipes.md "apt sources": the index form (mirror + index under
 * dists/SUITE/) or the deb822 form (mirror, suite, components, arch) */
static const struct recipe_sfield apt_fields[] = {
    {"mirror", S_STRING, true},     {"index", S_STRING, false},  {"suite", S_STRING, false},
    {"components", S_ARRAY, false}, {"arch", S_STRING, false},   {"keyring", S_STRING, false},
    {"signed_by", S_STRING, false}, {"packages", S_ARRAY, true},
};

/* One apt source names its index one way, and its keyring once. */
static int check_apt_source(const struct recipe *r, const json_t *e, const char *ptr,
                            const char *where, struct kiln_error *err)
{
        bool index = json_object_get(e, "index"), suite = json_object_get(e, "suite");
        const json_t *c = json_object_get(e, "components");

        if (index == suite)
                return recipe_error_at(r, ptr, false, KILN_E_INVALID, err,
                                       "an apt source in %s needs 'index' or 'suite' (not both)",
                                       where);
        if (index && (c || json_object_get(e, "arch")))
                return recipe_error_at(r, ptr, false, KILN_E_INVALID, err,
                                       "'components' and 'arch' in %s go with 'suite', not 'index'",
                                       where);
        if (suite && json_array_size(c) == 0)
                return recipe_error_at(r, ptr, false, KILN_E_INVALID, err,
                                       "an apt source with 'suite' in %s needs 'components'",
                                       where);
        if (json_object_get(e, "keyring") && json_object_get(e, "signed_by"))
                return recipe_error_at(
                    r, ptr, false, KILN_E_INVALID, err,
                    "'keyring' and 'signed_by' in %s name the same thing: give one", where);
        if (c) {
                _cleanup_free_ char *cp = recipe_ptr_key(ptr, "components");
                return check_elems(r, c, cp, "'components'", S_STRING, err);
        }
        return 0;
}

static const struct recipe_sfield source_fields[] = {
    LAYER_COMMON,
    {"from", S_STRING, true},
    {"repository", S_STRING, false},
    {"ref", S_STRING, false},
    {"local", S_STRING, false},
    {"path", S_STRING, true},
};

static const struct recipe_sfield build_fields[] = {
    LAYER_COMMON,
    {"command", S_ARRAY, true},
    {"env", S_OBJECT, false},
    {"inputs", S_ARRAY, false},
    {"output", S_STRING, false},
    {"install", S_STRING, false},
    {"path", S_STRING, false},
    {"python", S_STRING, false},
    {"platform", S_STRING, false},
    {"site_packages", S_STRING, false},
    {"prefix", S_STRING, false},
    {"interpreter", S_STRING, false},
    {"in", S_STRING, false},
    {"sdist", S_OBJECT, false},
};

/* a build step's "sdist" */
static const struct recipe_sfield sdist_fields[] = {
    {"index", S_STRING, true},
    {"requirement", S_STRING, true},
    {"pre", S_BOOL, false},
};

static const struct recipe_sfield run_fields[] = {
    LAYER_COMMON,
    {"command", S_ARRAY, true},
    {"env", S_OBJECT, false},
    {"network", S_BOOL, false},
    {"inputs", S_ARRAY, false},
    {"cache", S_ARRAY, false},
    {"workdir", S_STRING, false},
};

static const struct recipe_sfield tree_fields[] = {
    LAYER_COMMON,
    {"src", S_STRING, true},
    {"dest", S_STRING, true},
    {"exclude", S_ARRAY, false},
    {"modes", S_OBJECT, false},
};

static const struct recipe_sfield files_fields[] = {
    LAYER_COMMON,
    {"files", S_ARRAY, true},
};

static const struct recipe_sfield host_file_fields[] = {
    {"src", S_STRING, true},
    {"dest", S_STRING, true},
    {"mode", S_STRING, false},
};

/* a symbolic link the layer makes: {"dest": "/usr/bin/python", "link": "python3"} */
static const struct recipe_sfield link_fields[] = {
    {"dest", S_STRING, true},
    {"link", S_STRING, true},
};

static const struct recipe_sfield file_fields[] = {
    {"path", S_STRING, true},
    {"sha256", S_STRING, false},
};

static int check_files(const struct recipe *r, const json_t *arr, const char *ptr,
                       const char *where, struct kiln_error *err)
{
        size_t i;
        json_t *e;

        json_array_foreach(arr, i, e)
        {
                _cleanup_free_ char *ep = recipe_ptr_index(ptr, i);
                if (!ep)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                if (!json_is_object(e))
                        return recipe_error_at(
                            r, ep, false, KILN_E_INVALID, err,
                            "each entry of %s must be an object with 'path' and 'sha256'", where);
                if (check_object(r, e, ep, where, file_fields, ARRAY_SIZE(file_fields), err) < 0)
                        return -1;
        }
        return 0;
}

/* A run step: a command, its env, host inputs bound read-only and cache
 * directories given as absolute paths inside the image. */
static int check_run(const struct recipe *r, const json_t *l, const char *ptr, const char *where,
                     struct kiln_error *err)
{
        _cleanup_free_ char *cp = recipe_ptr_key(ptr, "command");
        _cleanup_free_ char *ep = recipe_ptr_key(ptr, "env");
        _cleanup_free_ char *ip = recipe_ptr_key(ptr, "inputs");
        _cleanup_free_ char *kp = recipe_ptr_key(ptr, "cache");
        json_t *v;
        size_t i;

        if (!cp || !ep || !ip || !kp)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (check_elems(r, json_object_get(l, "command"), cp, "'command'", S_STRING, err) < 0)
                return -1;
        if (json_array_size(json_object_get(l, "command")) == 0)
                return recipe_error_at(r, cp, false, KILN_E_INVALID, err,
                                       "'command' in %s is empty", where);
        if ((v = json_object_get(l, "env")) && check_string_map(r, v, ep, where, err) < 0)
                return -1;
        if ((v = json_object_get(l, "inputs")) &&
            check_elems(r, v, ip, "'inputs'", S_STRING, err) < 0)
                return -1;
        if ((v = json_object_get(l, "cache")) &&
            check_elems(r, v, kp, "'cache'", S_STRING, err) < 0)
                return -1;
        json_array_foreach(json_object_get(l, "cache"), i, v)
        {
                const char *c = json_string_value(v);
                if (c[0] != '/' || strstr(c, "/..") || !strcmp(c, "/")) {
                        _cleanup_free_ char *xp = recipe_ptr_index(kp, i);
                        return recipe_error_at(r, xp ? xp : kp, false, KILN_E_INVALID, err,
                                               "cache directory '%s' in %s must be an absolute "
                                               "path below '/' without '..'",
                                               c, where);
                }
        }
        return 0;
}

/* A wheels layer: its wheels, packages, indexes and project */
static int check_wheels(const struct recipe *r, const json_t *l, const char *ptr, const char *where,
                        struct kiln_error *err)
{
        _cleanup_free_ char *wp = recipe_ptr_key(ptr, "wheels");
        _cleanup_free_ char *pp = recipe_ptr_key(ptr, "packages");
        json_t *v;

        if ((v = json_object_get(l, "wheels")) && check_files(r, v, wp, where, err) < 0)
                return -1;
        if ((v = json_object_get(l, "packages")) &&
            check_elems(r, v, pp, "'packages'", S_STRING, err) < 0)
                return -1;
        _cleanup_free_ char *ip = recipe_ptr_key(ptr, "indexes");
        if ((v = json_object_get(l, "indexes")) &&
            check_elems(r, v, ip, "'indexes'", S_STRING, err) < 0)
                return -1;
        if (json_object_get(l, "packages") && !json_object_get(l, "index") &&
            !json_object_get(l, "indexes"))
                return recipe_error_at(r, pp, true, KILN_E_INVALID, err,
                                       "'packages' in %s needs an 'index'", where);
        if (!json_object_get(l, "wheels") && !json_object_get(l, "packages") &&
            !json_object_get(l, "requirements") && !json_object_get(l, "project") &&
            !json_object_get(l, "project_from") && !json_object_get(l, "pylock"))
                return recipe_error_at(r, ptr, false, KILN_E_INVALID, err,
                                       "%s names no wheels: give 'wheels', 'packages', "
                                       "'requirements', 'project', 'project_from' or 'pylock'",
                                       where);
        {
                _cleanup_free_ char *xp = recipe_ptr_key(ptr, "extras");
                _cleanup_free_ char *jp = recipe_ptr_key(ptr, "project");
                _cleanup_free_ char *fp = recipe_ptr_key(ptr, "project_from");
                bool from = json_object_get(l, "project_from");
                if ((v = json_object_get(l, "extras")) &&
                    check_elems(r, v, xp, "'extras'", S_STRING, err) < 0)
                        return -1;
                if (v && !json_object_get(l, "project") && !from)
                        return recipe_error_at(r, xp, true, KILN_E_INVALID, err,
                                               "'extras' in %s needs a 'project' or 'project_from'",
                                               where);
                if (from && json_object_get(l, "project"))
                        return recipe_error_at(r, fp, true, KILN_E_INVALID, err,
                                               "%s gives 'project' and 'project_from': give one",
                                               where);
                if (from && !json_object_get(l, "index") && !json_object_get(l, "indexes"))
                        return recipe_error_at(r, fp, true, KILN_E_INVALID, err,
                                               "'project_from' in %s needs an 'index'", where);
                if (json_object_get(l, "project") && !json_object_get(l, "project_path"))
                        return recipe_error_at(r, jp, true, KILN_E_INVALID, err,
                                               "'project' in %s needs a 'project_path': where the "
                                               "project's source is in the image",
                                               where);
                if (json_object_get(l, "project") && !json_object_get(l, "index") &&
                    !json_object_get(l, "indexes"))
                        return recipe_error_at(r, jp, true, KILN_E_INVALID, err,
                                               "'project' in %s needs an 'index'", where);
        }
        return 0;
}

/* A debs layer: its .debs and apt sources */
static int check_debs(const struct recipe *r, const json_t *l, const char *ptr, const char *where,
                      struct kiln_error *err)
{
        _cleanup_free_ char *dp = recipe_ptr_key(ptr, "debs");
        _cleanup_free_ char *ap = recipe_ptr_key(ptr, "apt");
        size_t k;
        json_t *e;
        json_t *v;

        if ((v = json_object_get(l, "debs")) && check_files(r, v, dp, where, err) < 0)
                return -1;
        json_array_foreach(json_object_get(l, "apt"), k, e)
        {
                _cleanup_free_ char *ep = recipe_ptr_index(ap, k);
                _cleanup_free_ char *pp = recipe_ptr_key(ep, "packages");
                if (!json_is_object(e))
                        return recipe_error_at(r, ep, false, KILN_E_INVALID, err,
                                               "each entry of 'apt' in %s must be an object",
                                               where);
                if (check_object(r, e, ep, where, apt_fields, ARRAY_SIZE(apt_fields), err) < 0 ||
                    check_elems(r, json_object_get(e, "packages"), pp, "'packages'", S_STRING,
                                err) < 0 ||
                    check_apt_source(r, e, ep, where, err) < 0)
                        return -1;
        }
        if (!json_object_get(l, "debs") && !json_object_get(l, "apt"))
                return recipe_error_at(r, ptr, false, KILN_E_INVALID, err,
                                       "%s names no packages: give 'debs' or 'apt'", where);
        return 0;
}

/* A build step: its command, env, inputs, sdist and install */
static int check_build(const struct recipe *r, const json_t *l, const char *ptr, const char *where,
                       struct kiln_error *err)
{
        _cleanup_free_ char *cp = recipe_ptr_key(ptr, "command");
        _cleanup_free_ char *ep = recipe_ptr_key(ptr, "env");
        _cleanup_free_ char *ip = recipe_ptr_key(ptr, "inputs");
        json_t *v;

        if (check_elems(r, json_object_get(l, "command"), cp, "'command'", S_STRING, err) < 0)
                return -1;
        if (json_array_size(json_object_get(l, "command")) == 0)
                return recipe_error_at(r, cp, false, KILN_E_INVALID, err,
                                       "'command' in %s is empty", where);
        if ((v = json_object_get(l, "env")) && check_string_map(r, v, ep, where, err) < 0)
                return -1;
        if ((v = json_object_get(l, "inputs")) &&
            check_elems(r, v, ip, "'inputs'", S_STRING, err) < 0)
                return -1;
        /* a variable is checked once the plan expands it */
        if ((v = json_object_get(l, "in")) && !strstr(json_string_value(v), "${") &&
            strcmp(json_string_value(v), "host") && strcmp(json_string_value(v), "image")) {
                _cleanup_free_ char *xp = recipe_ptr_key(ptr, "in");
                return recipe_error_at(r, xp, false, KILN_E_INVALID, err,
                                       "'in' in %s must be 'host' or 'image'", where);
        }
        if ((v = json_object_get(l, "sdist"))) {
                _cleanup_free_ char *sp = recipe_ptr_key(ptr, "sdist");
                _cleanup_free_ char *in = kiln_strdupf("'sdist' of %s", where);
                if (!in)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                if (check_object(r, v, sp, in, sdist_fields, ARRAY_SIZE(sdist_fields), err) < 0)
                        return -1;
        }
        if ((v = json_object_get(l, "install")) && strcmp(json_string_value(v), "wheels") &&
            strcmp(json_string_value(v), "tree")) {
                _cleanup_free_ char *xp = recipe_ptr_key(ptr, "install");
                return recipe_error_at(r, xp, false, KILN_E_INVALID, err,
                                       "'install' in %s must be 'wheels' or 'tree'", where);
        }
        return 0;
}

int recipe_check_layer(const struct recipe *r, const json_t *l, size_t idx, struct kiln_error *err)
{
        _cleanup_free_ char *ptr = recipe_ptr_index("/layers", idx);
        _cleanup_free_ char *where = NULL;
        const char *kind, *name;
        const struct recipe_sfield *fields;
        size_t n;
        json_t *v;

        if (!ptr)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (!json_is_object(l))
                return recipe_error_at(r, ptr, false, KILN_E_INVALID, err,
                                       "each layer must be an object");
        v = json_object_get(l, "name");
        name = json_is_string(v) ? json_string_value(v) : NULL;
        where = name ? kiln_strdupf("layer '%s'", name) : kiln_strdupf("layer %zu", idx);
        if (!where)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        v = json_object_get(l, "kind");
        if (!v) {
                return recipe_error_at(r, ptr, false, KILN_E_INVALID, err, "missing 'kind' in %s",
                                       where);
        }
        if (!json_is_string(v)) {
                _cleanup_free_ char *kp = recipe_ptr_key(ptr, "kind");
                return recipe_error_at(r, kp ? kp : ptr, false, KILN_E_INVALID, err,
                                       "'kind' in %s must be a string", where);
        }
        kind = json_string_value(v);
        if (!strcmp(kind, "wheels")) {
                fields = wheels_fields;
                n = ARRAY_SIZE(wheels_fields);
        } else if (!strcmp(kind, "debs")) {
                fields = debs_fields;
                n = ARRAY_SIZE(debs_fields);
        } else if (!strcmp(kind, "source")) {
                fields = source_fields;
                n = ARRAY_SIZE(source_fields);
        } else if (!strcmp(kind, "build")) {
                fields = build_fields;
                n = ARRAY_SIZE(build_fields);
        } else if (!strcmp(kind, "run")) {
                fields = run_fields;
                n = ARRAY_SIZE(run_fields);
        } else if (!strcmp(kind, "tree")) {
                fields = tree_fields;
                n = ARRAY_SIZE(tree_fields);
        } else if (!strcmp(kind, "files")) {
                fields = files_fields;
                n = ARRAY_SIZE(files_fields);
        } else {
                _cleanup_free_ char *kp = recipe_ptr_key(ptr, "kind");
                return recipe_error_at(r, kp ? kp : ptr, false, KILN_E_INVALID, err,
                                       "unknown layer kind '%s' in %s (expected wheels, debs, "
                                       "source, build, run, tree or files)",
                                       kind, where);
        }
        if (check_object(r, l, ptr, where, fields, n, err) < 0)
                return -1;
        if (!strcmp(kind, "files")) {
                _cleanup_free_ char *fp = recipe_ptr_key(ptr, "files");
                size_t i;
                json_t *e;
                json_array_foreach(json_object_get(l, "files"), i, e)
                {
                        _cleanup_free_ char *ep = fp ? recipe_ptr_index(fp, i) : NULL;
                        if (!ep)
                                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        if (!json_is_object(e))
                                return recipe_error_at(r, ep, false, KILN_E_INVALID, err,
                                                       "each entry of 'files' in %s must be an "
                                                       "object with 'src' and 'dest'",
                                                       where);
                        if (json_object_get(e, "link")
                                ? check_object(r, e, ep, where, link_fields,
                                               ARRAY_SIZE(link_fields), err) < 0
                                : check_object(r, e, ep, where, host_file_fields,
                                               ARRAY_SIZE(host_file_fields), err) < 0)
                                return -1;
                }
        }
        if (!strcmp(kind, "tree") && (v = json_object_get(l, "exclude"))) {
                _cleanup_free_ char *xp = recipe_ptr_key(ptr, "exclude");
                if (check_elems(r, v, xp, "'exclude'", S_STRING, err) < 0)
                        return -1;
        }
        if (!strcmp(kind, "tree") && (v = json_object_get(l, "modes"))) {
                _cleanup_free_ char *mp = recipe_ptr_key(ptr, "modes");
                if (check_modes(r, v, mp, where, err) < 0)
                        return -1;
        }
        if (!strcmp(kind, "wheels")) {
                if (check_wheels(r, l, ptr, where, err) < 0)
                        return -1;
        } else if (!strcmp(kind, "debs")) {
                if (check_debs(r, l, ptr, where, err) < 0)
                        return -1;
        } else if (!strcmp(kind, "run")) {
                if (check_run(r, l, ptr, where, err) < 0)
                        return -1;
        } else if (!strcmp(kind, "build")) {
                if (check_build(r, l, ptr, where, err) < 0)
                        return -1;
        }
        return 0;
}
