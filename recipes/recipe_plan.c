/* The build plan: recipe + variables -> base, layers, config, annotations, tags. */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"
#include "model.h"
#include "place.h"
#include "recipe_expand.h"
#include "recipe_internal.h"
#include "ref.h"
#include "util.h"

#define REVISION_SHORT 7

struct pctx {
        const struct recipe *r;
        json_t *raw;       /* name -> unexpanded value */
        json_t *src;       /* name -> JSON pointer of the value, or "" for --set */
        json_t *done;      /* name -> expanded value */
        json_t *kept;      /* names whose value still holds a later ${...} */
        json_t *visiting;  /* names being expanded (cycle check) */
        json_t *unresolved; /* array of strings */
        const char *revision; /* NULL: not known yet */
        char revision_short[REVISION_SHORT + 1];
        bool env_mode;
        json_t *env_map;   /* env_mode: NAME -> value */
        bool base_env_known;
        bool was_kept, saw_empty;
        char cwd[4096];
        char toplevel[4096];
};

static void note_unresolved(struct pctx *c, const char *what)
{
        size_t i;
        json_t *e;

        json_array_foreach(c->unresolved, i, e) if (!strcmp(json_string_value(e), what)) return;
        json_array_append_new(c->unresolved, json_string(what));
}

static int expand_at(struct pctx *c, const char *s, const char *ptr, char **ret,
                     struct kiln_error *err);

/* What a base's environment variable looks like: upper case, digits and
 * '_' (recipe variables are lower case, so their typos stay errors) */
static bool is_env_name(const char *s)
{
        if (!*s || (*s >= '0' && *s <= '9'))
                return false;
        for (; *s; s++)
                if (!((*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_'))
                        return false;
        return true;
}

/* The top of the git work tree holding the current directory (a directory
 * with a .git entry, as build.sh's `git rev-parse --show-toplevel`), or the
 * current directory when none above it has one. */
static int git_toplevel(char *buf, size_t len)
{
        char here[PATH_MAX];
        size_t n;

        if (!getcwd(here, sizeof(here)) || strlen(here) >= len)
                return -1;
        strcpy(buf, here);
        for (n = strlen(buf);;) {
                struct stat st;
                char probe[PATH_MAX + 8];
                snprintf(probe, sizeof(probe), "%s/.git", n ? buf : "");
                if (lstat(probe, &st) == 0)
                        return 0;
                while (n > 0 && buf[n - 1] != '/')
                        n--;
                if (n <= 1)
                        break;
                buf[--n] = '\0';
        }
        strcpy(buf, here);
        return 0;
}

static enum recipe_xres lookup(void *ctx, const char *name, const char **ret,
                               struct kiln_error *err)
{
        struct pctx *c = ctx;
        json_t *v;

        if (!strcmp(name, "source.revision") || !strcmp(name, "source.revision_short")) {
                if (!c->revision) {
                        note_unresolved(c, "source.revision: known once the source is fetched");
                        c->was_kept = true;
                        return RECIPE_X_KEEP;
                }
                *ret = strchr(name, '_') ? c->revision_short : c->revision;
                if (!**ret)
                        c->saw_empty = true;
                return RECIPE_X_VALUE;
        }
        if (!strcmp(name, "recipe.dir")) {
                *ret = c->r->dir;
                return RECIPE_X_VALUE;
        }
        if (!strcmp(name, "cwd")) {
                if (!c->cwd[0] && !getcwd(c->cwd, sizeof(c->cwd)))
                        return RECIPE_X_UNDEFINED;
                *ret = c->cwd;
                return RECIPE_X_VALUE;
        }
        if (!strcmp(name, "cwd.toplevel")) {
                if (!c->toplevel[0] && git_toplevel(c->toplevel, sizeof(c->toplevel)) < 0)
                        return RECIPE_X_UNDEFINED;
                *ret = c->toplevel;
                return RECIPE_X_VALUE;
        }
        if ((v = json_object_get(c->done, name))) {
                *ret = json_string_value(v);
                if (json_object_get(c->kept, name))
                        c->was_kept = true;
                if (!**ret)
                        c->saw_empty = true;
                return RECIPE_X_VALUE;
        }
        if ((v = json_object_get(c->raw, name))) {
                const char *src = json_string_value(json_object_get(c->src, name));
                char *out = NULL;
                bool outer_kept = c->was_kept;
                int rc;

                if (json_object_get(c->visiting, name)) {
                        kiln_error_set(err, KILN_E_INVALID, "variable '%s' refers to itself",
                                       name);
                        return RECIPE_X_ERROR;
                }
                json_object_set_new(c->visiting, name, json_true());
                c->was_kept = false;
                if (src && *src) {
                        bool save_env = c->env_mode;
                        c->env_mode = false;
                        rc = expand_at(c, json_string_value(v), src, &out, err);
                        c->env_mode = save_env;
                } else {
                        bool save_env = c->env_mode;
                        c->env_mode = false;
                        rc = recipe_expand_x(json_string_value(v), lookup, c, &out, err);
                        c->env_mode = save_env;
                        if (rc < 0)
                                kiln_error_prefix(err, "--set '%s'", name);
                }
                json_object_del(c->visiting, name);
                if (rc < 0)
                        return RECIPE_X_ERROR;
                json_object_set_new(c->done, name, json_string(out));
                free(out);
                if (c->was_kept)
                        json_object_set_new(c->kept, name, json_true());
                c->was_kept = c->was_kept || outer_kept;
                *ret = json_string_value(json_object_get(c->done, name));
                if (!**ret)
                        c->saw_empty = true;
                return RECIPE_X_VALUE;
        }
        if (c->env_mode) {
                if ((v = json_object_get(c->env_map, name))) {
                        *ret = json_string_value(v);
                        return RECIPE_X_VALUE;
                }
                if (!c->base_env_known) {
                        char what[256];
                        snprintf(what, sizeof(what), "env '%s': known once the base image is pulled",
                                 name);
                        note_unresolved(c, what);
                        c->was_kept = true;
                        return RECIPE_X_KEEP;
                }
                /* Dockerfile ENV: a variable the base does not set is empty
                 * (PYTHONPATH="/app:${PYTHONPATH}" on a base without it) */
                if (is_env_name(name)) {
                        *ret = "";
                        return RECIPE_X_VALUE;
                }
        }
        return RECIPE_X_UNDEFINED;
}

/* Expands s, the string at ptr in the recipe; errors carry ptr's position. */
static int expand_at(struct pctx *c, const char *s, const char *ptr, char **ret,
                     struct kiln_error *err)
{
        struct kiln_error e2 = KILN_ERROR_INIT;

        if (recipe_expand_x(s, lookup, c, ret, &e2) == 0)
                return 0;
        /* an error from a nested variable already names its own place */
        if (strstr(e2.msg, "invalid recipe '") == e2.msg || strstr(e2.msg, "--set '") == e2.msg) {
                *err = e2;
                return -1;
        }
        return recipe_error_at(c->r, ptr, false, e2.code, err, "%s", e2.msg);
}

static char *expand_top(struct pctx *c, const char *s, const char *ptr, bool *ret_kept,
                        struct kiln_error *err)
{
        char *out = NULL;

        c->was_kept = false;
        c->saw_empty = false;
        if (expand_at(c, s, ptr, &out, err) < 0)
                return NULL;
        if (ret_kept)
                *ret_kept = c->was_kept;
        return out;
}

/* A deep copy of v with every string expanded. */
static json_t *expand_json(struct pctx *c, const json_t *v, const char *ptr, bool *kept,
                           struct kiln_error *err)
{
        if (json_is_string(v)) {
                bool k = false;
                char *s = expand_top(c, json_string_value(v), ptr, &k, err);
                json_t *out;
                if (!s)
                        return NULL;
                out = json_string(s);
                free(s);
                *kept = *kept || k;
                return out;
        }
        if (json_is_array(v)) {
                json_t *out = json_array(), *e;
                size_t i;
                json_array_foreach(v, i, e) {
                        _cleanup_free_ char *cp = recipe_ptr_index(ptr, i);
                        json_t *x = expand_json(c, e, cp, kept, err);
                        if (!x) {
                                json_decref(out);
                                return NULL;
                        }
                        json_array_append_new(out, x);
                }
                return out;
        }
        if (json_is_object(v)) {
                json_t *out = json_object(), *e;
                const char *key;
                json_object_foreach(jmut(v), key, e) {
                        _cleanup_free_ char *cp = recipe_ptr_key(ptr, key);
                        json_t *x = expand_json(c, e, cp, kept, err);
                        if (!x) {
                                json_decref(out);
                                return NULL;
                        }
                        json_object_set_new(out, key, x);
                }
                return out;
        }
        return json_deep_copy(v);
}

bool recipe_truthy(const char *s)
{
        return *s && strcmp(s, "none") && strcmp(s, "false") && strcmp(s, "0") && strcmp(s, "no");
}

static int check_allowed(struct pctx *c, const char *key, const json_t *v,
                         struct kiln_error *err)
{
        json_t *allowed = json_is_object(v) ? json_object_get(v, "allowed") : NULL;
        const char *val;
        json_t *e;
        size_t i;
        bool ok = false;
        char list[300] = "";
        size_t n = 0;

        if (!allowed)
                return 0;
        if (lookup(c, key, &val, err) != RECIPE_X_VALUE)
                return -1;
        json_array_foreach(allowed, i, e) {
                if (!strcmp(json_string_value(e), val))
                        ok = true;
                if (n < sizeof(list))
                        n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%s", i ? ", " : "",
                                              json_string_value(e));
        }
        if (!ok)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid value '%s' for variable '%s': expected one of %s",
                                      val, key, list);
        return 0;
}

static int load_variables(struct pctx *c, const struct recipe_plan_opts *o, struct kiln_error *err)
{
        const json_t *vars = json_object_get(c->r->root, "variables");
        const json_t *prof = json_object_get(c->r->root, "profiles");
        json_t *over = json_object(), *v;
        const char *key;
        int rc = -1;

        json_object_foreach(jmut(vars), key, v) {
                _cleanup_free_ char *vp = recipe_ptr_key("/variables", key);
                _cleanup_free_ char *dp = NULL;
                if (json_is_string(v)) {
                        json_object_set(c->raw, key, v);
                        json_object_set_new(c->src, key, json_string(vp));
                } else {
                        dp = recipe_ptr_key(vp, "default");
                        json_object_set(c->raw, key, json_object_get(v, "default"));
                        json_object_set_new(c->src, key, json_string(dp));
                }
        }
        for (size_t i = 0; i < o->n_sets; i++) {
                const char *s = o->sets[i], *eq = strchr(s, '=');
                char name[RECIPE_VAR_NAME_MAX + 1];
                bool known = false;

                if (!eq || eq == s || (size_t)(eq - s) > RECIPE_VAR_NAME_MAX) {
                        kiln_error_set(err, KILN_E_USAGE, "invalid --set '%s': expected NAME=VALUE",
                                       s);
                        goto out;
                }
                memcpy(name, s, (size_t)(eq - s));
                name[eq - s] = '\0';
                if (json_object_get(vars, name))
                        known = true;
                if (prof) {
                        json_t *pv;
                        const char *pk;
                        json_object_foreach(json_object_get(prof, "values"), pk, pv) if (
                                json_object_get(pv, name)) known = true;
                }
                if (!known) {
                        char list[300] = "";
                        size_t n = 0;
                        json_object_foreach(jmut(vars), key, v) {
                                n += (size_t)snprintf(list + n, n < sizeof(list) ? sizeof(list) - n : 0,
                                                      "%s%s", n ? ", " : "", key);
                                if (n >= sizeof(list))
                                        break;
                        }
                        kiln_error_set(err, KILN_E_INVALID,
                                       "unknown variable '%s': recipe '%s' declares %s", name,
                                       c->r->name, *list ? list : "no variables");
                        goto out;
                }
                json_object_set_new(over, name, json_string(eq + 1));
        }
        if (prof) {
                const char *by = json_string_value(json_object_get(prof, "by"));
                json_t *ov = json_object_get(over, by), *pv;
                const char *byval;

                if (ov) {
                        json_object_set(c->raw, by, ov);
                        json_object_set_new(c->src, by, json_string(""));
                }
                if (check_allowed(c, by, json_object_get(vars, by), err) < 0)
                        goto out;
                {
                        const char *val;
                        struct kiln_error e2 = KILN_ERROR_INIT;
                        if (lookup(c, by, &val, &e2) != RECIPE_X_VALUE) {
                                *err = e2;
                                goto out;
                        }
                        byval = val;
                }
                pv = json_object_get(json_object_get(prof, "values"), byval);
                if (!pv) {
                        kiln_error_set(err, KILN_E_INVALID,
                                       "recipe '%s' has no profile for %s '%s'", c->r->name, by,
                                       byval);
                        goto out;
                }
                json_object_foreach(pv, key, v) {
                        _cleanup_free_ char *pp = recipe_ptr_key("/profiles/values", byval);
                        _cleanup_free_ char *kp = recipe_ptr_key(pp, key);
                        json_object_set(c->raw, key, v);
                        json_object_set_new(c->src, key, json_string(kp));
                }
        }
        json_object_foreach(over, key, v) {
                json_object_set(c->raw, key, v);
                json_object_set_new(c->src, key, json_string(""));
                json_object_del(c->done, key);
        }
        /* allowed values */
        json_object_foreach(jmut(vars), key, v) if (check_allowed(c, key, v, err) < 0) goto out;
        rc = 0;
out:
        json_decref(over);
        return rc;
}

static int kind_from_name(const char *s, enum recipe_layer_kind *ret)
{
        if (!strcmp(s, "wheels"))
                *ret = RECIPE_LAYER_WHEELS;
        else if (!strcmp(s, "debs"))
                *ret = RECIPE_LAYER_DEBS;
        else if (!strcmp(s, "source"))
                *ret = RECIPE_LAYER_SOURCE;
        else if (!strcmp(s, "build"))
                *ret = RECIPE_LAYER_BUILD;
        else if (!strcmp(s, "run"))
                *ret = RECIPE_LAYER_RUN;
        else if (!strcmp(s, "tree"))
                *ret = RECIPE_LAYER_TREE;
        else if (!strcmp(s, "files"))
                *ret = RECIPE_LAYER_FILES;
        else
                return -1;
        return 0;
}

const char *recipe_layer_kind_name(enum recipe_layer_kind k)
{
        switch (k) {
        case RECIPE_LAYER_WHEELS: return "wheels";
        case RECIPE_LAYER_DEBS: return "debs";
        case RECIPE_LAYER_SOURCE: return "source";
        case RECIPE_LAYER_BUILD: return "build";
        case RECIPE_LAYER_RUN: return "run";
        case RECIPE_LAYER_TREE: return "tree";
        case RECIPE_LAYER_FILES: return "files";
        }
        return "?";
}

/* Is layer i in the plan?  ("when" expands to something other than "",
 * "none", "false", "0", "no".) */
static int layer_included(struct pctx *c, const json_t *l, size_t i, bool *ret,
                          struct kiln_error *err)
{
        json_t *w = json_object_get(l, "when");
        _cleanup_free_ char *lp = recipe_ptr_index("/layers", i);
        _cleanup_free_ char *wp = recipe_ptr_key(lp, "when");
        char *s;

        if (!w) {
                *ret = true;
                return 0;
        }
        s = expand_top(c, json_string_value(w), wp, NULL, err);
        if (!s)
                return -1;
        *ret = recipe_truthy(s);
        free(s);
        return 0;
}

static int find_source(struct pctx *c, struct recipe_plan *p, struct kiln_error *err)
{
        json_t *l;
        size_t i;

        json_array_foreach(json_object_get(c->r->root, "layers"), i, l) {
                bool inc;
                _cleanup_free_ char *lp = recipe_ptr_index("/layers", i);
                _cleanup_free_ char *fp = recipe_ptr_key(lp, "from");
                char *from;

                if (strcmp(json_string_value(json_object_get(l, "kind")), "source"))
                        continue;
                if (layer_included(c, l, i, &inc, err) < 0)
                        return -1;
                if (!inc)
                        continue;
                from = expand_top(c, json_string_value(json_object_get(l, "from")), fp, NULL, err);
                if (!from)
                        return -1;
                if (strcmp(from, "git") && strcmp(from, "github") && strcmp(from, "local")) {
                        recipe_error_at(c->r, fp, false, KILN_E_INVALID, err,
                                        "invalid source '%s': expected git, github or local", from);
                        free(from);
                        return -1;
                }
                p->source_from = from;
                return 0;
        }
        return 0;
}

/* A layer's true-or-false keys given as a variable ("pre": "${pre}"):
 * after expansion, "true", "yes" and "1" are true; "false", "no", "0" and
 * "" are false. */
static int expanded_bools(struct pctx *c, json_t *params, const char *lp, const char *layer,
                          struct kiln_error *err)
{
        static const char *const keys[] = {"pre", "resolve", "keep_modes", "network",
                                           "merged_usr", "configure"};

        for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
                json_t *v = json_object_get(params, keys[i]);
                const char *s = json_string_value(v);
                if (!s)
                        continue;
                if (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "1")) {
                        json_object_set_new(params, keys[i], json_true());
                } else if (!*s || !strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "0")) {
                        json_object_set_new(params, keys[i], json_false());
                } else {
                        _cleanup_free_ char *kp = recipe_ptr_key(lp, keys[i]);
                        return recipe_error_at(c->r, kp, false, KILN_E_INVALID, err,
                                               "'%s' of layer '%s' is '%s': expected true or false",
                                               keys[i], layer, s);
                }
        }
        return 0;
}

/* The configure step of the debs layer p->layers[d] (recipe.h,
 * recipe_plan_configure), right above it.  Its parameters are those of a
 * run layer, so its key covers the command and the environment, and,
 * through the layers below, everything it configures. */
static int add_configure_step(struct pctx *c, struct recipe_plan *p, size_t d, const char *lp,
                              struct kiln_error *err)
{
        const struct recipe_layer *debs = &p->layers[d];
        struct recipe_layer *rl;
        char *name = kiln_strdupf("%s/configure", debs->name);
        json_t *params;

        if (!name)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        for (size_t k = 0; k < p->n_layers; k++)
                if (!strcmp(p->layers[k].name, name)) {
                        _cleanup_free_ char *np = recipe_ptr_key(lp, "name");
                        free(name);
                        return recipe_error_at(c->r, np, false, KILN_E_INVALID, err,
                                               "layer '%s' is named as the configure step of debs "
                                               "layer '%s': rename it or set \"configure\": false",
                                               p->layers[k].name, debs->name);
                }
        /* kiln-configure: what kiln drops from the step's changes, versioned */
        params = json_pack("{s:s, s:s, s:[s,s,s], s:{s:s, s:s}, s:s, s:b, s:i}", "name", name,
                           "kind", "run", "command", "dpkg", "--configure", "-a", "env",
                           "DEBIAN_FRONTEND", "noninteractive", "DEBCONF_NONINTERACTIVE_SEEN",
                           "true", "workdir", "/", "network", 0, "kiln-configure", 1);
        if (!params) {
                free(name);
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        rl = &p->layers[p->n_layers++];
        rl->name = name;
        rl->kind = RECIPE_LAYER_RUN;
        rl->params = params;
        rl->recipe_index = debs->recipe_index;
        rl->configure_step = true;
        rl->conditional = !json_is_true(json_object_get(debs->params, "configure"));
        return 0;
}

static int plan_layers(struct pctx *c, struct recipe_plan *p, struct kiln_error *err)
{
        json_t *layers = json_object_get(c->r->root, "layers"), *l;
        size_t i;

        /* room for a configure step above each layer */
        p->layers = calloc(2 * json_array_size(layers) + 1, sizeof(*p->layers));
        if (!p->layers)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        json_array_foreach(layers, i, l) {
                _cleanup_free_ char *lp = recipe_ptr_index("/layers", i);
                struct recipe_layer *rl;
                bool inc, kept = false;
                json_t *params;

                if (layer_included(c, l, i, &inc, err) < 0)
                        return -1;
                if (!inc)
                        continue;
                for (size_t k = 0; k < p->n_layers; k++)
                        if (!strcmp(p->layers[k].name,
                                    json_string_value(json_object_get(l, "name")))) {
                                _cleanup_free_ char *np = recipe_ptr_key(lp, "name");
                                return recipe_error_at(
                                    c->r, np, false, KILN_E_INVALID, err,
                                    p->layers[k].configure_step
                                        ? "layer name '%s' is the configure step of a debs layer: "
                                          "rename it or set \"configure\": false there"
                                        : "duplicate layer name '%s'",
                                    p->layers[k].name);
                        }
                params = expand_json(c, l, lp, &kept, err);
                if (!params)
                        return -1;
                json_object_del(params, "when");
                rl = &p->layers[p->n_layers++];
                rl->params = params;
                if (expanded_bools(c, params, lp, json_string_value(json_object_get(l, "name")),
                                   err) < 0)
                        return -1;
                rl->recipe_index = i;
                rl->unresolved = kept;
                rl->params = params;
                rl->name = strdup(json_string_value(json_object_get(l, "name")));
                if (!rl->name)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                kind_from_name(json_string_value(json_object_get(l, "kind")), &rl->kind);
                if (rl->kind == RECIPE_LAYER_BUILD && json_object_get(params, "in")) {
                        const char *in = json_string_value(json_object_get(params, "in"));
                        if (strcmp(in, "host") && strcmp(in, "image")) {
                                _cleanup_free_ char *xp = recipe_ptr_key(lp, "in");
                                return recipe_error_at(c->r, xp, false, KILN_E_INVALID, err,
                                                       "'in' of layer '%s' is '%s': expected host or image",
                                                       rl->name, in);
                        }
                }
                if (rl->kind == RECIPE_LAYER_SOURCE) {
                        const char *from = json_string_value(json_object_get(params, "from"));
                        const char *need = !strcmp(from, "local") ? "local" : "repository";
                        if (!json_object_get(params, need))
                                return recipe_error_at(c->r, lp, false, KILN_E_INVALID, err,
                                                       "layer '%s' takes its source from %s but has no '%s'",
                                                       rl->name, from, need);
                }
                if (rl->kind == RECIPE_LAYER_DEBS &&
                    !json_is_false(json_object_get(params, "configure")) &&
                    add_configure_step(c, p, p->n_layers - 1, lp, err) < 0)
                        return -1;
        }
        return 0;
}

static int env_split(const char *s, char **ret_name, const char **ret_val)
{
        const char *eq = strchr(s, '=');

        if (!eq)
                return -1;
        *ret_name = strndup(s, (size_t)(eq - s));
        *ret_val = eq + 1;
        return *ret_name ? 0 : -1;
}

static int plan_config(struct pctx *c, struct recipe_plan *p, const struct recipe_plan_opts *o,
                       struct kiln_error *err)
{
        json_t *cfg = json_object_get(c->r->root, "config"), *v;
        json_t *out = json_object(), *env_out = json_array();
        size_t i;
        int rc = -1;

        p->config = out;
        c->env_map = json_object();
        c->base_env_known = o->base_env != NULL;
        /* image-spec config.md: Env entries are VARNAME=VARVALUE */
        json_array_foreach(o->base_env, i, v) {
                char *name = NULL;
                const char *val;
                if (!json_is_string(v) || env_split(json_string_value(v), &name, &val) < 0)
                        continue;
                json_object_set_new(c->env_map, name, json_string(val));
                free(name);
        }
        json_array_foreach(json_object_get(cfg, "env"), i, v) {
                _cleanup_free_ char *ep = recipe_ptr_index("/config/env", i);
                char *s, *name;
                const char *val;

                c->env_mode = true;
                s = expand_top(c, json_string_value(v), ep, NULL, err);
                c->env_mode = false;
                if (!s)
                        goto out;
                if (env_split(s, &name, &val) < 0) {
                        free(s);
                        kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        goto out;
                }
                json_object_set_new(c->env_map, name, json_string(val));
                json_array_append_new(env_out, json_string(s));
                free(name);
                free(s);
        }
        if (o->base_env) {
                /* the base's entries first, replaced in place by the recipe's */
                json_t *merged = json_array();
                json_t *seen = json_object();
                json_array_foreach(o->base_env, i, v) {
                        char *name;
                        const char *val;
                        if (!json_is_string(v) || env_split(json_string_value(v), &name, &val) < 0)
                                continue;
                        if (!json_object_get(seen, name)) {
                                json_t *mine = json_object_get(c->env_map, name);
                                char *s = kiln_strdupf("%s=%s", name, json_string_value(mine));
                                json_array_append_new(merged, json_string(s));
                                free(s);
                                json_object_set_new(seen, name, json_true());
                        }
                        free(name);
                }
                json_array_foreach(env_out, i, v) {
                        char *name = NULL;
                        const char *val;
                        if (env_split(json_string_value(v), &name, &val) < 0)
                                continue;
                        if (!json_object_get(seen, name)) {
                                char *s = kiln_strdupf("%s=%s", name,
                                                       json_string_value(json_object_get(c->env_map, name)));
                                json_array_append_new(merged, json_string(s));
                                free(s);
                                json_object_set_new(seen, name, json_true());
                        }
                        free(name);
                }
                json_decref(seen);
                json_decref(env_out);
                env_out = merged;
        }
        json_object_set_new(out, "Env", env_out);
        env_out = NULL;
        {
                static const struct {
                        const char *key, *out;
                } map[] = {{"user", "User"},
                           {"entrypoint", "Entrypoint"},
                           {"cmd", "Cmd"},
                           {"workdir", "WorkingDir"},
                           {"labels", "Labels"}};
                for (size_t k = 0; k < ARRAY_SIZE(map); k++) {
                        _cleanup_free_ char *cp = recipe_ptr_key("/config", map[k].key);
                        bool kept = false;
                        json_t *x;
                        v = json_object_get(cfg, map[k].key);
                        if (!v)
                                continue;
                        x = expand_json(c, v, cp, &kept, err);
                        if (!x)
                                goto out;
                        if (json_is_object(x)) {
                                json_t *sorted = oci_json_sorted_object(x);
                                json_decref(x);
                                x = sorted;
                        }
                        json_object_set_new(out, map[k].out, x);
                }
        }
        rc = 0;
out:
        json_decref(env_out);
        return rc;
}

static int plan_annotations(struct pctx *c, struct recipe_plan *p, struct kiln_error *err)
{
        json_t *ann = json_object_get(c->r->root, "annotations"), *v;
        json_t *out = json_object();
        const char *key;

        json_object_foreach(ann, key, v) {
                _cleanup_free_ char *ap = recipe_ptr_key("/annotations", key);
                char *s = expand_top(c, json_string_value(v), ap, NULL, err);
                if (!s) {
                        json_decref(out);
                        return -1;
                }
                if (*s)
                        json_object_set_new(out, key, json_string(s));
                free(s);
        }
        /* image-spec annotations.md: the base image and the source revision */
        /* base.name is a registry reference: a local place's path says
         * nothing to the image's users and would make the digest depend on
         * where the builder keeps its files (a recipe may name it itself) */
        if (!json_object_get(out, "org.opencontainers.image.base.name") &&
            oci_place_is_registry(p->base))
                json_object_set_new(out, "org.opencontainers.image.base.name",
                                    json_string(p->base));
        if (p->source_from && strcmp(p->source_from, "local") &&
            !json_object_get(ann, "org.opencontainers.image.revision")) {
                if (c->revision)
                        json_object_set_new(out, "org.opencontainers.image.revision",
                                            json_string(c->revision));
                else
                        json_object_set_new(out, "org.opencontainers.image.revision",
                                            json_string("${source.revision}"));
        }
        p->annotations = oci_json_sorted_object(out);
        json_decref(out);
        return 0;
}

static int add_tag(struct recipe_plan *p, char *t, struct kiln_error *err)
{
        char **nt = realloc(p->tags, (p->n_tags + 1) * sizeof(*nt));

        if (!nt) {
                free(t);
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        p->tags = nt;
        for (size_t i = 0; i < p->n_tags; i++)
                if (!strcmp(p->tags[i], t)) {
                        free(t);
                        return 0;
                }
        p->tags[p->n_tags++] = t;
        return 0;
}

/* Two builds can compute one tag (--branch exp01 and --tag-suffix exp01 on
 * main; feat/x and feat-x): the parts the tag was made of, unsanitized, are
 * recorded as annotations, so a build that moves a tag can say whose it was
 * (recipe_image.c). */
static int tag_provenance(struct recipe_plan *p, const struct recipe_tag_parts *parts,
                          struct kiln_error *err)
{
        const char *main_branch = parts->main_branch ? parts->main_branch : "main";
        json_t *sorted;

        if (parts->source_is_git && parts->branch && *parts->branch &&
            strcmp(parts->branch, main_branch) != 0)
                json_object_set_new(p->annotations, RECIPE_ANN_TAG_BRANCH,
                                    json_string(parts->branch));
        if (parts->suffix && *parts->suffix)
                json_object_set_new(p->annotations, RECIPE_ANN_TAG_SUFFIX,
                                    json_string(parts->suffix));
        sorted = oci_json_sorted_object(p->annotations);
        if (!sorted)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        json_decref(p->annotations);
        p->annotations = sorted;
        return 0;
}

static int plan_tags(struct pctx *c, struct recipe_plan *p, struct kiln_error *err)
{
        json_t *tag = json_object_get(c->r->root, "tag"), *v;
        static const char *const keys[] = {"repository", "tag", "branch", "main_branch", "suffix"};
        char *vals[ARRAY_SIZE(keys)] = {0};
        bool any_kept = false;
        struct recipe_tag_parts parts;
        char *full = NULL;
        size_t i;
        int rc = -1;

        if (!tag)
                return 0;
        for (i = 0; i < ARRAY_SIZE(keys); i++) {
                _cleanup_free_ char *tp = recipe_ptr_key("/tag", keys[i]);
                bool kept = false;
                v = json_object_get(tag, keys[i]);
                if (!v)
                        continue;
                vals[i] = expand_top(c, json_string_value(v), tp, &kept, err);
                if (!vals[i])
                        goto out;
                any_kept = any_kept || kept;
        }
        parts.repository = vals[0];
        parts.tag = vals[1];
        parts.branch = vals[2];
        parts.main_branch = vals[3];
        parts.source_is_git = p->source_from && strcmp(p->source_from, "local") != 0;
        parts.suffix = vals[4];
        if (any_kept) {
                note_unresolved(c, "tag: holds a value known only later");
                full = kiln_strdupf("%s:%s", vals[0], vals[1]);
        } else if (recipe_tag_compute(&parts, &full, err) < 0) {
                recipe_error_at(c->r, "/tag", true, err->code, err, "%s", err->msg);
                goto out;
        } else if (tag_provenance(p, &parts, err) < 0) {
                free(full);
                goto out;
        }
        if (!full || add_tag(p, full, err) < 0)
                goto out;
        json_array_foreach(json_object_get(tag, "also"), i, v) {
                _cleanup_free_ char *ap = recipe_ptr_index("/tag/also", i);
                bool kept = false;
                char *s = expand_top(c, json_string_value(v), ap, &kept, err);
                struct recipe_tag_parts ap2 = {0};

                if (!s)
                        goto out;
                /* a tag built from an empty value (no revision for a local
                 * source) is left out rather than half-made */
                if (!*s || c->saw_empty) {
                        free(s);
                        continue;
                }
                if (kept) {
                        full = kiln_strdupf("%s:%s", vals[0], s);
                        free(s);
                        if (!full || add_tag(p, full, err) < 0)
                                goto out;
                        continue;
                }
                ap2.repository = vals[0];
                ap2.tag = s;
                if (recipe_tag_compute(&ap2, &full, err) < 0) {
                        free(s);
                        recipe_error_at(c->r, ap, false, err->code, err, "%s", err->msg);
                        goto out;
                }
                free(s);
                if (add_tag(p, full, err) < 0)
                        goto out;
        }
        rc = 0;
out:
        for (i = 0; i < ARRAY_SIZE(keys); i++)
                free(vals[i]);
        return rc;
}

int recipe_plan_build(const struct recipe *r, const struct recipe_plan_opts *opts,
                      struct recipe_plan **ret, struct kiln_error *err)
{
        static const struct recipe_plan_opts none = {0};
        const struct recipe_plan_opts *o = opts ? opts : &none;
        struct pctx c = {0};
        struct recipe_plan *p = calloc(1, sizeof(*p));
        const char *key;
        json_t *v;
        int rc = -1;

        c.r = r;
        c.raw = json_object();
        c.src = json_object();
        c.done = json_object();
        c.kept = json_object();
        c.visiting = json_object();
        c.unresolved = json_array();
        if (!p || !c.raw || !c.src || !c.done || !c.kept || !c.visiting || !c.unresolved) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto out;
        }
        p->recipe_name = strdup(r->name);
        p->recipe_dir = strdup(r->dir);
        if (load_variables(&c, o, err) < 0)
                goto out;
        if (find_source(&c, p, err) < 0)
                goto out;
        if (p->source_from && !strcmp(p->source_from, "local")) {
                c.revision = "";
        } else if (o->source_revision) {
                c.revision = o->source_revision;
                snprintf(c.revision_short, sizeof(c.revision_short), "%s", o->source_revision);
        }
        {
                char *base = expand_top(&c, json_string_value(json_object_get(r->root, "base")),
                                        "/base", NULL, err);
                struct oci_place place = {0};
                if (!base)
                        goto out;
                p->base = base;
                /* any place an image can be read from, or the empty base */
                if (strcmp(base, OCI_SCRATCH) && oci_place_parse(base, &place, err) < 0) {
                        recipe_error_at(r, "/base", false, err->code, err, "%s", err->msg);
                        goto out;
                }
                oci_place_release(&place);
        }
        if (plan_layers(&c, p, err) < 0)
                goto out;
        if (plan_config(&c, p, o, err) < 0)
                goto out;
        if (plan_annotations(&c, p, err) < 0)
                goto out;
        if (plan_tags(&c, p, err) < 0)
                goto out;
        if (json_object_get(r->root, "validate")) {
                /* its checks' when/unless are applied by recipe_validate_spec */
                bool kept = false;
                p->validate = expand_json(&c, json_object_get(r->root, "validate"), "/validate",
                                          &kept, err);
                if (!p->validate)
                        goto out;
        }
        /* every variable, expanded, for the record */
        json_object_foreach(c.raw, key, v) {
                const char *val;
                if (lookup(&c, key, &val, err) != RECIPE_X_VALUE)
                        goto out;
        }
        p->variables = oci_json_sorted_object(c.done);
        p->unresolved = json_incref(c.unresolved);
        rc = 0;
out:
        json_decref(c.raw);
        json_decref(c.src);
        json_decref(c.done);
        json_decref(c.kept);
        json_decref(c.visiting);
        json_decref(c.unresolved);
        json_decref(c.env_map);
        if (rc < 0) {
                recipe_plan_free(p);
                return -1;
        }
        *ret = p;
        return 0;
}

static void layer_release(struct recipe_layer *l)
{
        free(l->name);
        json_decref(l->params);
}

static bool configure_dropped(const struct recipe_layer *l, bool keep, bool base_has_dpkg,
                              const char *no_sandbox)
{
        return l->configure_step && (!keep || (l->conditional && (!base_has_dpkg || no_sandbox)));
}

int recipe_plan_configure(struct recipe_plan *p, bool keep, bool base_has_dpkg,
                          const char *no_sandbox, char **ret_dropped, struct kiln_error *err)
{
        char *dropped = NULL;
        size_t k = 0;

        /* first what can fail, so a failure leaves the plan as it was */
        for (size_t i = 0; i < p->n_layers; i++) {
                const struct recipe_layer *l = &p->layers[i];
                const char *debs = i ? p->layers[i - 1].name : "";
                if (!l->configure_step || !keep)
                        continue;
                if (!l->conditional && !base_has_dpkg) {
                        free(dropped);
                        return kiln_error_set(
                            err, KILN_E_INVALID,
                            "debs layer '%s' asks for \"configure\": true, but the base '%s' has "
                            "no dpkg database (/var/lib/dpkg/status)",
                            debs, p->base);
                }
                if (!l->conditional && no_sandbox) {
                        free(dropped);
                        return kiln_error_set(err, KILN_E_UNSUPPORTED,
                                              "debs layer '%s' asks for \"configure\": true, which "
                                              "runs its maintainer scripts in the sandbox: %s",
                                              debs, no_sandbox);
                }
                if (configure_dropped(l, keep, base_has_dpkg, no_sandbox) && base_has_dpkg) {
                        /* the sandbox alone kept it out: worth a notice */
                        char *more = kiln_strdupf("%s%s%s", dropped ? dropped : "",
                                                  dropped ? ", " : "", debs);
                        free(dropped);
                        dropped = more;
                        if (!dropped)
                                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                }
        }
        for (size_t i = 0; i < p->n_layers; i++) {
                struct recipe_layer *l = &p->layers[i];
                if (configure_dropped(l, keep, base_has_dpkg, no_sandbox)) {
                        layer_release(l);
                        continue;
                }
                l->conditional = false;
                p->layers[k++] = *l;
        }
        p->n_layers = k;
        if (ret_dropped)
                *ret_dropped = dropped;
        else
                free(dropped);
        return 0;
}

void recipe_plan_free(struct recipe_plan *p)
{
        if (!p)
                return;
        free(p->recipe_name);
        free(p->recipe_dir);
        free(p->base);
        json_decref(p->variables);
        for (size_t i = 0; i < p->n_layers; i++)
                layer_release(&p->layers[i]);
        free(p->layers);
        json_decref(p->config);
        json_decref(p->annotations);
        for (size_t i = 0; i < p->n_tags; i++)
                free(p->tags[i]);
        free(p->tags);
        json_decref(p->unresolved);
        json_decref(p->validate);
        free(p->source_from);
        free(p);
}

void recipe_plan_freep(struct recipe_plan **p)
{
        recipe_plan_free(*p);
        *p = NULL;
}
