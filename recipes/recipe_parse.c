/* Loading a recipe: JSON parse, a position pass, the document's checks
 * (top level, variables, profiles, config, tag); the schema itself and the
 * layers' checks are recipe_schema.c. */
#include "recipe_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "io.h"
#include "json.h"
#include "util.h"

/* jansson keeps no positions for parsed values, so a second pass over the
 * (already validated) bytes records where each value and each key starts,
 * keyed by its JSON pointer (RFC 6901). */
struct scan {
        const char *p, *end;
        int line, col;
        struct recipe *r;
        char *ptr;
        size_t ptr_len, ptr_cap;
        int depth;
};

static void adv(struct scan *s)
{
        if (*s->p == '\n') {
                s->line++;
                s->col = 1;
        } else if (((unsigned char)*s->p & 0xc0) != 0x80) {
                s->col++;
        }
        s->p++;
}

static void skip_ws(struct scan *s)
{
        while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
                adv(s);
}

static int ptr_push(struct scan *s, const char *seg, size_t n)
{
        size_t need = s->ptr_len + 1 + 2 * n + 1;

        if (need > s->ptr_cap) {
                size_t cap = need * 2;
                char *np = realloc(s->ptr, cap);
                if (!np)
                        return -1;
                s->ptr = np;
                s->ptr_cap = cap;
        }
        s->ptr[s->ptr_len++] = '/';
        for (size_t i = 0; i < n; i++) {
                if (seg[i] == '~') {
                        s->ptr[s->ptr_len++] = '~';
                        s->ptr[s->ptr_len++] = '0';
                } else if (seg[i] == '/') {
                        s->ptr[s->ptr_len++] = '~';
                        s->ptr[s->ptr_len++] = '1';
                } else {
                        s->ptr[s->ptr_len++] = seg[i];
                }
        }
        s->ptr[s->ptr_len] = '\0';
        return 0;
}

static void ptr_pop(struct scan *s, size_t to)
{
        s->ptr_len = to;
        s->ptr[to] = '\0';
}

static struct rpos *pos_add(struct scan *s)
{
        struct recipe *r = s->r;
        struct rpos *p;

        if (r->n_pos == r->cap_pos) {
                size_t cap = r->cap_pos ? r->cap_pos * 2 : 64;
                struct rpos *np = realloc(r->pos, cap * sizeof(*np));
                if (!np)
                        return NULL;
                r->pos = np;
                r->cap_pos = cap;
        }
        p = &r->pos[r->n_pos];
        memset(p, 0, sizeof(*p));
        p->ptr = strdup(s->ptr);
        if (!p->ptr)
                return NULL;
        r->n_pos++;
        return p;
}

/* Reads a string token; the decoded key is only needed for object keys,
 * whose escapes we keep simple: \uXXXX in a key is stored undecoded, which
 * only affects positions of such keys. */
static int scan_string(struct scan *s, char **ret)
{
        const char *start;

        adv(s); /* opening quote */
        start = s->p;
        while (s->p < s->end && *s->p != '"') {
                if (*s->p == '\\')
                        adv(s);
                adv(s);
        }
        if (ret) {
                size_t n = (size_t)(s->p - start), k = 0;
                char *out = malloc(n + 1);
                if (!out)
                        return -1;
                for (size_t i = 0; i < n; i++) {
                        if (start[i] == '\\' && i + 1 < n) {
                                i++;
                                switch (start[i]) {
                                case 'n': out[k++] = '\n'; break;
                                case 't': out[k++] = '\t'; break;
                                case 'r': out[k++] = '\r'; break;
                                case 'b': out[k++] = '\b'; break;
                                case 'f': out[k++] = '\f'; break;
                                case 'u': out[k++] = '\\'; out[k++] = 'u'; break;
                                default: out[k++] = start[i]; break;
                                }
                        } else {
                                out[k++] = start[i];
                        }
                }
                out[k] = '\0';
                *ret = out;
        }
        if (s->p < s->end)
                adv(s); /* closing quote */
        return 0;
}

static int scan_value(struct scan *s, struct rpos *self);

static int scan_value(struct scan *s, struct rpos *self)
{
        skip_ws(s);
        if (s->p >= s->end)
                return 0;
        if (self) {
                self->vline = s->line;
                self->vcol = s->col;
        }
        if (++s->depth > 512)
                return -1;
        if (*s->p == '{') {
                adv(s);
                for (;;) {
                        char *key = NULL;
                        size_t save = s->ptr_len;
                        struct rpos *child;
                        int kl, kc;

                        skip_ws(s);
                        if (s->p >= s->end)
                                break;
                        if (*s->p == '}') {
                                adv(s);
                                break;
                        }
                        if (*s->p == ',') {
                                adv(s);
                                continue;
                        }
                        kl = s->line;
                        kc = s->col;
                        if (scan_string(s, &key) < 0)
                                return -1;
                        if (ptr_push(s, key, strlen(key)) < 0) {
                                free(key);
                                return -1;
                        }
                        free(key);
                        child = pos_add(s);
                        if (!child)
                                return -1;
                        child->kline = kl;
                        child->kcol = kc;
                        skip_ws(s);
                        if (s->p < s->end && *s->p == ':')
                                adv(s);
                        /* pos_add may move the array: index, not pointer */
                        {
                                size_t idx = (size_t)(child - s->r->pos);
                                struct rpos tmp = {0};
                                if (scan_value(s, &tmp) < 0)
                                        return -1;
                                s->r->pos[idx].vline = tmp.vline;
                                s->r->pos[idx].vcol = tmp.vcol;
                        }
                        ptr_pop(s, save);
                }
        } else if (*s->p == '[') {
                size_t i = 0;
                adv(s);
                for (;;) {
                        char num[32];
                        size_t save = s->ptr_len, idx;
                        struct rpos tmp = {0};
                        struct rpos *child;

                        skip_ws(s);
                        if (s->p >= s->end)
                                break;
                        if (*s->p == ']') {
                                adv(s);
                                break;
                        }
                        if (*s->p == ',') {
                                adv(s);
                                continue;
                        }
                        snprintf(num, sizeof(num), "%zu", i++);
                        if (ptr_push(s, num, strlen(num)) < 0)
                                return -1;
                        child = pos_add(s);
                        if (!child)
                                return -1;
                        idx = (size_t)(child - s->r->pos);
                        if (scan_value(s, &tmp) < 0)
                                return -1;
                        s->r->pos[idx].vline = s->r->pos[idx].kline = tmp.vline;
                        s->r->pos[idx].vcol = s->r->pos[idx].kcol = tmp.vcol;
                        ptr_pop(s, save);
                }
        } else if (*s->p == '"') {
                if (scan_string(s, NULL) < 0)
                        return -1;
        } else {
                while (s->p < s->end && !strchr(",]} \t\r\n", *s->p))
                        adv(s);
        }
        s->depth--;
        return 0;
}

int recipe_position(const struct recipe *r, const char *ptr, bool key, int *ret_line,
                    int *ret_col)
{
        if (!r)
                return -1;
        for (size_t i = 0; i < r->n_pos; i++)
                if (!strcmp(r->pos[i].ptr, ptr)) {
                        *ret_line = key ? r->pos[i].kline : r->pos[i].vline;
                        *ret_col = key ? r->pos[i].kcol : r->pos[i].vcol;
                        return 0;
                }
        return -1;
}

int recipe_error_at(const struct recipe *r, const char *ptr, bool key, enum kiln_errc code,
                    struct kiln_error *err, const char *fmt, ...)
{
        char msg[KILN_ERROR_MSG_SIZE];
        va_list ap;
        int line = 0, col = 0;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        if (recipe_position(r, ptr, key, &line, &col) == 0)
                return kiln_error_set(err, code, "invalid recipe '%s' at line %d column %d: %s",
                                      r->name, line, col, msg);
        return kiln_error_set(err, code, "invalid recipe '%s' at '%s': %s", r->name, ptr, msg);
}

bool recipe_var_name_valid(const char *s)
{
        if (!(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
                return false;
        for (s++; *s; s++)
                if (!(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
                      (*s >= '0' && *s <= '9')))
                        return false;
        return true;
}

static const struct recipe_sfield top_fields[] = {
        {"recipe", S_INT, false},      {"name", S_STRING, false},
        {"description", S_STRING, false}, {"base", S_STRING, true},
        {"variables", S_OBJECT, false}, {"profiles", S_OBJECT, false},
        {"layers", S_ARRAY, true},     {"config", S_OBJECT, false},
        {"annotations", S_OBJECT, false}, {"tag", S_OBJECT, false},
        {"validate", S_OBJECT, false},
};

static const struct recipe_sfield var_fields[] = {
        {"default", S_STRING, true},
        {"allowed", S_ARRAY, false},
        {"description", S_STRING, false},
};

static const struct recipe_sfield profile_fields[] = {
        {"by", S_STRING, true},
        {"values", S_OBJECT, true},
};

static const struct recipe_sfield config_fields[] = {
        {"env", S_ARRAY, false},     {"workdir", S_STRING, false}, {"cmd", S_ARRAY, false},
        {"entrypoint", S_ARRAY, false}, {"user", S_STRING, false}, {"labels", S_OBJECT, false},
};

static const struct recipe_sfield tag_fields[] = {
        {"repository", S_STRING, true}, {"tag", S_STRING, true},
        {"branch", S_STRING, false},    {"main_branch", S_STRING, false},
        {"suffix", S_STRING, false},    {"also", S_ARRAY, false},
};

static int check_variables(const struct recipe *r, const json_t *vars, struct kiln_error *err)
{
        const char *key;
        json_t *v;

        json_object_foreach(jmut(vars), key, v) {
                _cleanup_free_ char *vp = recipe_ptr_key("/variables", key);
                _cleanup_free_ char *where = kiln_strdupf("variable '%s'", key);
                json_t *allowed;

                if (!vp || !where)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                if (!recipe_var_name_valid(key))
                        return recipe_error_at(r, vp, true, KILN_E_INVALID, err,
                                               "invalid variable name '%s': use letters, digits and '_'",
                                               key);
                if (json_is_string(v))
                        continue;
                if (!json_is_object(v))
                        return recipe_error_at(r, vp, false, KILN_E_INVALID, err,
                                               "%s must be a string or an object with 'default'",
                                               where);
                if (recipe_check_object(r, v, vp, where, var_fields, ARRAY_SIZE(var_fields), err) <
                    0)
                        return -1;
                allowed = json_object_get(v, "allowed");
                if (allowed) {
                        _cleanup_free_ char *ap = recipe_ptr_key(vp, "allowed");
                        const char *def = json_string_value(json_object_get(v, "default"));
                        bool found = false;
                        size_t i;
                        json_t *e;

                        if (recipe_check_elems(r, allowed, ap, "'allowed'", S_STRING, err) < 0)
                                return -1;
                        json_array_foreach(allowed, i, e) if (!strcmp(json_string_value(e), def))
                                found = true;
                        if (!found) {
                                _cleanup_free_ char *dp = recipe_ptr_key(vp, "default");
                                return recipe_error_at(r, dp, false, KILN_E_INVALID, err,
                                                       "default '%s' of %s is not among its allowed values",
                                                       def, where);
                        }
                }
        }
        return 0;
}

static int check_profiles(const struct recipe *r, const json_t *prof, struct kiln_error *err)
{
        const json_t *vars = json_object_get(r->root, "variables");
        const char *by, *key;
        json_t *values, *v, *first = NULL, *byvar, *allowed;
        const char *first_name = NULL;

        if (recipe_check_object(r, prof, "/profiles", "'profiles'", profile_fields,
                                ARRAY_SIZE(profile_fields), err) < 0)
                return -1;
        by = json_string_value(json_object_get(prof, "by"));
        byvar = json_object_get(vars, by);
        if (!byvar)
                return recipe_error_at(r, "/profiles/by", false, KILN_E_INVALID, err,
                                       "profiles are keyed by '%s', which is not a declared variable",
                                       by);
        values = json_object_get(prof, "values");
        json_object_foreach(values, key, v) {
                _cleanup_free_ char *pp = recipe_ptr_key("/profiles/values", key);
                _cleanup_free_ char *where = kiln_strdupf("profile '%s'", key);
                const char *k2;
                json_t *e;

                if (!pp || !where)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                if (!json_is_object(v))
                        return recipe_error_at(r, pp, false, KILN_E_INVALID, err,
                                               "%s must be an object of variable values", where);
                if (recipe_check_string_map(r, v, pp, where, err) < 0)
                        return -1;
                json_object_foreach(v, k2, e) {
                        _cleanup_free_ char *kp = recipe_ptr_key(pp, k2);
                        if (!recipe_var_name_valid(k2))
                                return recipe_error_at(r, kp, true, KILN_E_INVALID, err,
                                                       "invalid variable name '%s' in %s", k2,
                                                       where);
                        if (json_object_get(vars, k2))
                                return recipe_error_at(r, kp, true, KILN_E_INVALID, err,
                                                       "%s sets '%s', which is also a variable: profiles define their own variables",
                                                       where, k2);
                        if (first && !json_object_get(first, k2))
                                return recipe_error_at(r, kp, true, KILN_E_INVALID, err,
                                                       "%s sets '%s', which profile '%s' does not",
                                                       where, k2, first_name);
                }
                if (!first) {
                        first = v;
                        first_name = key;
                } else {
                        json_object_foreach(first, k2, e) if (!json_object_get(v, k2))
                                return recipe_error_at(r, pp, true, KILN_E_INVALID, err,
                                                       "%s does not set '%s', which profile '%s' does",
                                                       where, k2, first_name);
                }
        }
        allowed = json_is_object(byvar) ? json_object_get(byvar, "allowed") : NULL;
        if (allowed) {
                size_t i;
                json_t *e;
                json_array_foreach(allowed, i, e) if (!json_object_get(values,
                                                                       json_string_value(e)))
                        return recipe_error_at(r, "/profiles/values", true, KILN_E_INVALID, err,
                                               "no profile for '%s', an allowed value of '%s'",
                                               json_string_value(e), by);
        }
        return 0;
}

static int check_recipe(const struct recipe *r, struct kiln_error *err)
{
        json_t *v;
        size_t i;

        if (!json_is_object(r->root))
                return recipe_error_at(r, "", false, KILN_E_INVALID, err,
                                       "a recipe must be a JSON object");
        if (recipe_check_object(r, r->root, "", "the recipe", top_fields, ARRAY_SIZE(top_fields),
                                err) < 0)
                return -1;
        v = json_object_get(r->root, "recipe");
        if (v && json_integer_value(v) != 1)
                return recipe_error_at(r, "/recipe", false, KILN_E_UNSUPPORTED, err,
                                       "unsupported recipe version %lld (this kiln reads version 1)",
                                       (long long)json_integer_value(v));
        if ((v = json_object_get(r->root, "variables")) && check_variables(r, v, err) < 0)
                return -1;
        if ((v = json_object_get(r->root, "profiles")) && check_profiles(r, v, err) < 0)
                return -1;
        json_array_foreach(json_object_get(r->root, "layers"), i,
                           v) if (recipe_check_layer(r, v, i, err) < 0) return -1;
        if ((v = json_object_get(r->root, "config"))) {
                json_t *e;
                if (recipe_check_object(r, v, "/config", "'config'", config_fields,
                                        ARRAY_SIZE(config_fields), err) < 0)
                        return -1;
                if ((e = json_object_get(v, "env"))) {
                        size_t k;
                        json_t *x;
                        if (recipe_check_elems(r, e, "/config/env", "'env'", S_STRING, err) < 0)
                                return -1;
                        json_array_foreach(e, k, x) {
                                const char *s = json_string_value(x);
                                const char *eq = strchr(s, '=');
                                if (!eq || eq == s) {
                                        _cleanup_free_ char *xp = recipe_ptr_index("/config/env", k);
                                        return recipe_error_at(r, xp, false, KILN_E_INVALID, err,
                                                               "invalid env entry '%s': expected NAME=VALUE",
                                                               s);
                                }
                        }
                }
                if ((e = json_object_get(v, "cmd")) &&
                    recipe_check_elems(r, e, "/config/cmd", "'cmd'", S_STRING, err) < 0)
                        return -1;
                if ((e = json_object_get(v, "entrypoint")) &&
                    recipe_check_elems(r, e, "/config/entrypoint", "'entrypoint'", S_STRING, err) <
                        0)
                        return -1;
                if ((e = json_object_get(v, "labels")) &&
                    recipe_check_string_map(r, e, "/config/labels", "'labels'", err) < 0)
                        return -1;
        }
        if ((v = json_object_get(r->root, "annotations")) &&
            recipe_check_string_map(r, v, "/annotations", "'annotations'", err) < 0)
                return -1;
        if ((v = json_object_get(r->root, "validate")) && recipe_validate_check(r, v, err) < 0)
                return -1;
        if ((v = json_object_get(r->root, "tag"))) {
                json_t *e;
                if (recipe_check_object(r, v, "/tag", "'tag'", tag_fields, ARRAY_SIZE(tag_fields),
                                        err) < 0)
                        return -1;
                if ((e = json_object_get(v, "also")) &&
                    recipe_check_elems(r, e, "/tag/also", "'also'", S_STRING, err) < 0)
                        return -1;
        }
        return 0;
}

struct recipe *recipe_parse(const char *buf, size_t len, const char *name, const char *dir,
                            struct kiln_error *err)
{
        struct recipe *r = calloc(1, sizeof(*r));
        _cleanup_free_ char *what = NULL;
        struct scan s = {0};

        if (!r) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        r->name = strdup(name);
        r->dir = strdup(dir ? dir : ".");
        what = kiln_strdupf("recipe '%s'", name);
        if (!r->name || !r->dir || !what) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto fail;
        }
        if (len > RECIPE_FILE_MAX) {
                kiln_error_set(err, KILN_E_LIMIT, "recipe '%s' is larger than %u bytes", name,
                               RECIPE_FILE_MAX);
                goto fail;
        }
        r->root = oci_json_parse(buf, len, what, err);
        if (!r->root)
                goto fail;
        s.p = buf;
        s.end = buf + len;
        s.line = 1;
        s.col = 1;
        s.r = r;
        s.ptr = calloc(1, 64);
        s.ptr_cap = 64;
        if (s.ptr) {
                /* the root value has the empty pointer */
                struct rpos *root = pos_add(&s);
                struct rpos tmp = {0};
                if (!root || scan_value(&s, &tmp) < 0) {
                        free(s.ptr);
                        s.ptr = NULL;
                } else {
                        r->pos[0].vline = r->pos[0].kline = tmp.vline;
                        r->pos[0].vcol = r->pos[0].kcol = tmp.vcol;
                }
        }
        if (!s.ptr) {
                free(s.ptr);
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto fail;
        }
        free(s.ptr);
        if (check_recipe(r, err) < 0)
                goto fail;
        return r;
fail:
        recipe_free(r);
        return NULL;
}

struct recipe *recipe_load(const char *path, struct kiln_error *err)
{
        _cleanup_free_ char *buf = NULL;
        _cleanup_free_ char *dir = NULL;
        size_t len;

        if (kiln_read_file(path, RECIPE_FILE_MAX, &buf, &len, err) < 0) {
                kiln_error_prefix(err, "read recipe '%s'", path);
                return NULL;
        }
        dir = kiln_dirname(path);
        if (!dir) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        return recipe_parse(buf, len, path, dir, err);
}

void recipe_free(struct recipe *r)
{
        if (!r)
                return;
        for (size_t i = 0; i < r->n_pos; i++)
                free(r->pos[i].ptr);
        free(r->pos);
        json_decref(r->root);
        free(r->name);
        free(r->dir);
        free(r);
}

void recipe_freep(struct recipe **r)
{
        recipe_free(*r);
        *r = NULL;
}
