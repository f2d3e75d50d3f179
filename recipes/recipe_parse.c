/* Loading a recipe: JSON parse, a position pass, the schema check. */
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

/* ---- schema ---- */

enum stype { S_STRING, S_OBJECT, S_ARRAY, S_BOOL, S_INT, S_STRING_OR_ARRAY };

static const char *stype_name(enum stype t)
{
        switch (t) {
        case S_STRING: return "a string";
        case S_OBJECT: return "an object";
        case S_ARRAY: return "an array";
        case S_BOOL: return "true or false";
        case S_INT: return "an integer";
        case S_STRING_OR_ARRAY: return "a string or an array of strings";
        }
        return "?";
}

static bool type_ok(const json_t *v, enum stype t)
{
        switch (t) {
        case S_STRING: return json_is_string(v);
        case S_OBJECT: return json_is_object(v);
        case S_ARRAY: return json_is_array(v);
        case S_BOOL: return json_is_boolean(v);
        case S_INT: return json_is_integer(v);
        case S_STRING_OR_ARRAY: return json_is_string(v) || json_is_array(v);
        }
        return false;
}

struct sfield {
        const char *key;
        enum stype type;
        bool required;
};

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
                        const char *where, const struct sfield *fields, size_t n,
                        struct kiln_error *err)
{
        const char *key;
        json_t *v;

        json_object_foreach(jmut(obj), key, v) {
                const struct sfield *f = NULL;
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
                        json_array_foreach(v, i, e) if (!json_is_string(e)) {
                                _cleanup_free_ char *ep = recipe_ptr_index(cp, i);
                                return recipe_error_at(r, ep ? ep : cp, false, KILN_E_INVALID,
                                                       err, "'%s' in %s must be %s", key, where,
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
                       enum stype t, struct kiln_error *err)
{
        size_t i;
        json_t *e;

        json_array_foreach(v, i, e) if (!type_ok(e, t)) {
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

        json_object_foreach(jmut(v), key, e) if (!json_is_string(e)) {
                _cleanup_free_ char *ep = child_ptr(ptr, key);
                return recipe_error_at(r, ep ? ep : ptr, false, KILN_E_INVALID, err,
                                       "'%s' in %s must be a string", key, what);
        }
        return 0;
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
static int check_modes(const struct recipe *r, const json_t *v, const char *ptr,
                       const char *what, struct kiln_error *err)
{
        const char *key;
        json_t *e;

        if (check_string_map(r, v, ptr, what, err) < 0)
                return -1;
        json_object_foreach(jmut(v), key, e) if (!recipe_mode_valid(json_string_value(e))) {
                _cleanup_free_ char *ep = child_ptr(ptr, key);
                return recipe_error_at(r, ep ? ep : ptr, false, KILN_E_INVALID, err,
                                       "invalid mode '%s' for '%s' in %s: expected octal like 0755",
                                       json_string_value(e), key, what);
        }
        return 0;
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

static const struct sfield top_fields[] = {
        {"recipe", S_INT, false},      {"name", S_STRING, false},
        {"description", S_STRING, false}, {"base", S_STRING, true},
        {"variables", S_OBJECT, false}, {"profiles", S_OBJECT, false},
        {"layers", S_ARRAY, true},     {"config", S_OBJECT, false},
        {"annotations", S_OBJECT, false}, {"tag", S_OBJECT, false},
};

static const struct sfield var_fields[] = {
        {"default", S_STRING, true},
        {"allowed", S_ARRAY, false},
        {"description", S_STRING, false},
};

static const struct sfield profile_fields[] = {
        {"by", S_STRING, true},
        {"values", S_OBJECT, true},
};

static const struct sfield config_fields[] = {
        {"env", S_ARRAY, false},     {"workdir", S_STRING, false}, {"cmd", S_ARRAY, false},
        {"entrypoint", S_ARRAY, false}, {"user", S_STRING, false}, {"labels", S_OBJECT, false},
};

static const struct sfield tag_fields[] = {
        {"repository", S_STRING, true}, {"tag", S_STRING, true},
        {"branch", S_STRING, false},    {"main_branch", S_STRING, false},
        {"suffix", S_STRING, false},    {"also", S_ARRAY, false},
};

#define LAYER_COMMON                                                                               \
        {"name", S_STRING, true}, {"kind", S_STRING, true}, {"when", S_STRING, false},             \
                {"comment", S_STRING, false}, {"keep_modes", S_BOOL, false}

static const struct sfield wheels_fields[] = {
        LAYER_COMMON,
        {"wheels", S_ARRAY, false},
        {"packages", S_ARRAY, false},
        {"index", S_STRING, false},
        {"indexes", S_ARRAY, false},
        {"resolve", S_BOOL, false},
        {"pre", S_BOOL, false},
        {"project", S_STRING, false},
        {"project_path", S_STRING, false},
        {"pylock", S_STRING, false},
        {"extras", S_ARRAY, false},
        {"requirements", S_STRING, false},
        {"python", S_STRING, false},
        {"platform", S_STRING, false},
        {"site_packages", S_STRING, false},
        {"prefix", S_STRING, false},
        {"interpreter", S_STRING, false},
};

static const struct sfield debs_fields[] = {
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
static const struct sfield apt_fields[] = {
        {"mirror", S_STRING, true},
        {"index", S_STRING, false},
        {"suite", S_STRING, false},
        {"components", S_ARRAY, false},
        {"arch", S_STRING, false},
        {"keyring", S_STRING, false},
        {"signed_by", S_STRING, false},
        {"packages", S_ARRAY, true},
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
                                       "an apt source with 'suite' in %s needs 'components'", where);
        if (json_object_get(e, "keyring") && json_object_get(e, "signed_by"))
                return recipe_error_at(r, ptr, false, KILN_E_INVALID, err,
                                       "'keyring' and 'signed_by' in %s name the same thing: give one",
                                       where);
        if (c) {
                _cleanup_free_ char *cp = recipe_ptr_key(ptr, "components");
                return check_elems(r, c, cp, "'components'", S_STRING, err);
        }
        return 0;
}

static const struct sfield source_fields[] = {
        LAYER_COMMON,
        {"from", S_STRING, true},
        {"repository", S_STRING, false},
        {"ref", S_STRING, false},
        {"local", S_STRING, false},
        {"path", S_STRING, true},
};

static const struct sfield build_fields[] = {
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
};

static const struct sfield run_fields[] = {
        LAYER_COMMON,
        {"command", S_ARRAY, true},
        {"env", S_OBJECT, false},
        {"network", S_BOOL, false},
        {"inputs", S_ARRAY, false},
        {"cache", S_ARRAY, false},
        {"workdir", S_STRING, false},
};

static const struct sfield tree_fields[] = {
        LAYER_COMMON,
        {"src", S_STRING, true},
        {"dest", S_STRING, true},
        {"exclude", S_ARRAY, false},
        {"modes", S_OBJECT, false},
};

static const struct sfield files_fields[] = {
        LAYER_COMMON,
        {"files", S_ARRAY, true},
};

static const struct sfield host_file_fields[] = {
        {"src", S_STRING, true},
        {"dest", S_STRING, true},
        {"mode", S_STRING, false},
};

static const struct sfield file_fields[] = {
        {"path", S_STRING, true},
        {"sha256", S_STRING, false},
};

static int check_files(const struct recipe *r, const json_t *arr, const char *ptr,
                       const char *where, struct kiln_error *err)
{
        size_t i;
        json_t *e;

        json_array_foreach(arr, i, e) {
                _cleanup_free_ char *ep = recipe_ptr_index(ptr, i);
                if (!ep)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                if (!json_is_object(e))
                        return recipe_error_at(r, ep, false, KILN_E_INVALID, err,
                                               "each entry of %s must be an object with 'path' and 'sha256'",
                                               where);
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
        if ((v = json_object_get(l, "inputs")) && check_elems(r, v, ip, "'inputs'", S_STRING, err) < 0)
                return -1;
        if ((v = json_object_get(l, "cache")) && check_elems(r, v, kp, "'cache'", S_STRING, err) < 0)
                return -1;
        json_array_foreach(json_object_get(l, "cache"), i, v) {
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

static int check_layer(const struct recipe *r, const json_t *l, size_t idx, struct kiln_error *err)
{
        _cleanup_free_ char *ptr = recipe_ptr_index("/layers", idx);
        _cleanup_free_ char *where = NULL;
        const char *kind, *name;
        const struct sfield *fields;
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
                                       "unknown layer kind '%s' in %s (expected wheels, debs, source, build, run, tree or files)",
                                       kind, where);
        }
        if (check_object(r, l, ptr, where, fields, n, err) < 0)
                return -1;
        if (!strcmp(kind, "files")) {
                _cleanup_free_ char *fp = recipe_ptr_key(ptr, "files");
                size_t i;
                json_t *e;
                json_array_foreach(json_object_get(l, "files"), i, e) {
                        _cleanup_free_ char *ep = fp ? recipe_ptr_index(fp, i) : NULL;
                        if (!ep)
                                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        if (!json_is_object(e))
                                return recipe_error_at(r, ep, false, KILN_E_INVALID, err,
                                                       "each entry of 'files' in %s must be an object with 'src' and 'dest'",
                                                       where);
                        if (check_object(r, e, ep, where, host_file_fields,
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
                _cleanup_free_ char *wp = recipe_ptr_key(ptr, "wheels");
                _cleanup_free_ char *pp = recipe_ptr_key(ptr, "packages");
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
                    !json_object_get(l, "pylock"))
                        return recipe_error_at(r, ptr, false, KILN_E_INVALID, err,
                                               "%s names no wheels: give 'wheels', 'packages', 'requirements', 'project' or 'pylock'",
                                               where);
                {
                        _cleanup_free_ char *xp = recipe_ptr_key(ptr, "extras");
                        _cleanup_free_ char *jp = recipe_ptr_key(ptr, "project");
                        if ((v = json_object_get(l, "extras")) &&
                            check_elems(r, v, xp, "'extras'", S_STRING, err) < 0)
                                return -1;
                        if (v && !json_object_get(l, "project"))
                                return recipe_error_at(r, xp, true, KILN_E_INVALID, err,
                                                       "'extras' in %s needs a 'project'", where);
                        if (json_object_get(l, "project") && !json_object_get(l, "project_path"))
                                return recipe_error_at(r, jp, true, KILN_E_INVALID, err,
                                                       "'project' in %s needs a 'project_path': where the project's source is in the image",
                                                       where);
                        if (json_object_get(l, "project") && !json_object_get(l, "index") &&
                            !json_object_get(l, "indexes"))
                                return recipe_error_at(r, jp, true, KILN_E_INVALID, err,
                                                       "'project' in %s needs an 'index'", where);
                }
        } else if (!strcmp(kind, "debs")) {
                _cleanup_free_ char *dp = recipe_ptr_key(ptr, "debs");
                _cleanup_free_ char *ap = recipe_ptr_key(ptr, "apt");
                size_t k;
                json_t *e;
                if ((v = json_object_get(l, "debs")) && check_files(r, v, dp, where, err) < 0)
                        return -1;
                json_array_foreach(json_object_get(l, "apt"), k, e) {
                        _cleanup_free_ char *ep = recipe_ptr_index(ap, k);
                        _cleanup_free_ char *pp = recipe_ptr_key(ep, "packages");
                        if (!json_is_object(e))
                                return recipe_error_at(r, ep, false, KILN_E_INVALID, err,
                                                       "each entry of 'apt' in %s must be an object",
                                                       where);
                        if (check_object(r, e, ep, where, apt_fields, ARRAY_SIZE(apt_fields),
                                         err) < 0 ||
                            check_elems(r, json_object_get(e, "packages"), pp, "'packages'",
                                        S_STRING, err) < 0 ||
                            check_apt_source(r, e, ep, where, err) < 0)
                                return -1;
                }
                if (!json_object_get(l, "debs") && !json_object_get(l, "apt"))
                        return recipe_error_at(r, ptr, false, KILN_E_INVALID, err,
                                               "%s names no packages: give 'debs' or 'apt'", where);
        } else if (!strcmp(kind, "run")) {
                if (check_run(r, l, ptr, where, err) < 0)
                        return -1;
        } else if (!strcmp(kind, "build")) {
                _cleanup_free_ char *cp = recipe_ptr_key(ptr, "command");
                _cleanup_free_ char *ep = recipe_ptr_key(ptr, "env");
                _cleanup_free_ char *ip = recipe_ptr_key(ptr, "inputs");
                if (check_elems(r, json_object_get(l, "command"), cp, "'command'", S_STRING,
                                err) < 0)
                        return -1;
                if (json_array_size(json_object_get(l, "command")) == 0)
                        return recipe_error_at(r, cp, false, KILN_E_INVALID, err,
                                               "'command' in %s is empty", where);
                if ((v = json_object_get(l, "env")) && check_string_map(r, v, ep, where, err) < 0)
                        return -1;
                if ((v = json_object_get(l, "inputs")) &&
                    check_elems(r, v, ip, "'inputs'", S_STRING, err) < 0)
                        return -1;
                if ((v = json_object_get(l, "in")) && strcmp(json_string_value(v), "host") &&
                    strcmp(json_string_value(v), "image")) {
                        _cleanup_free_ char *xp = recipe_ptr_key(ptr, "in");
                        return recipe_error_at(r, xp, false, KILN_E_INVALID, err,
                                               "'in' in %s must be 'host' or 'image'", where);
                }
                if ((v = json_object_get(l, "install")) && strcmp(json_string_value(v), "wheels") &&
                    strcmp(json_string_value(v), "tree")) {
                        _cleanup_free_ char *xp = recipe_ptr_key(ptr, "install");
                        return recipe_error_at(r, xp, false, KILN_E_INVALID, err,
                                               "'install' in %s must be 'wheels' or 'tree'", where);
                }
        }
        return 0;
}

static int check_variables(const struct recipe *r, const json_t *vars, struct kiln_error *err)
{
        const char *key;
        json_t *v;

        json_object_foreach(jmut(vars), key, v) {
                _cleanup_free_ char *vp = child_ptr("/variables", key);
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
                if (check_object(r, v, vp, where, var_fields, ARRAY_SIZE(var_fields), err) < 0)
                        return -1;
                allowed = json_object_get(v, "allowed");
                if (allowed) {
                        _cleanup_free_ char *ap = recipe_ptr_key(vp, "allowed");
                        const char *def = json_string_value(json_object_get(v, "default"));
                        bool found = false;
                        size_t i;
                        json_t *e;

                        if (check_elems(r, allowed, ap, "'allowed'", S_STRING, err) < 0)
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

        if (check_object(r, prof, "/profiles", "'profiles'", profile_fields,
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
                _cleanup_free_ char *pp = child_ptr("/profiles/values", key);
                _cleanup_free_ char *where = kiln_strdupf("profile '%s'", key);
                const char *k2;
                json_t *e;

                if (!pp || !where)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                if (!json_is_object(v))
                        return recipe_error_at(r, pp, false, KILN_E_INVALID, err,
                                               "%s must be an object of variable values", where);
                if (check_string_map(r, v, pp, where, err) < 0)
                        return -1;
                json_object_foreach(v, k2, e) {
                        _cleanup_free_ char *kp = child_ptr(pp, k2);
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
        if (check_object(r, r->root, "", "the recipe", top_fields, ARRAY_SIZE(top_fields), err) <
            0)
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
        json_array_foreach(json_object_get(r->root, "layers"), i, v) if (check_layer(r, v, i, err) <
                                                                          0) return -1;
        if ((v = json_object_get(r->root, "config"))) {
                json_t *e;
                if (check_object(r, v, "/config", "'config'", config_fields,
                                 ARRAY_SIZE(config_fields), err) < 0)
                        return -1;
                if ((e = json_object_get(v, "env"))) {
                        size_t k;
                        json_t *x;
                        if (check_elems(r, e, "/config/env", "'env'", S_STRING, err) < 0)
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
                    check_elems(r, e, "/config/cmd", "'cmd'", S_STRING, err) < 0)
                        return -1;
                if ((e = json_object_get(v, "entrypoint")) &&
                    check_elems(r, e, "/config/entrypoint", "'entrypoint'", S_STRING, err) < 0)
                        return -1;
                if ((e = json_object_get(v, "labels")) &&
                    check_string_map(r, e, "/config/labels", "'labels'", err) < 0)
                        return -1;
        }
        if ((v = json_object_get(r->root, "annotations")) &&
            check_string_map(r, v, "/annotations", "'annotations'", err) < 0)
                return -1;
        if ((v = json_object_get(r->root, "tag"))) {
                json_t *e;
                if (check_object(r, v, "/tag", "'tag'", tag_fields, ARRAY_SIZE(tag_fields), err) <
                    0)
                        return -1;
                if ((e = json_object_get(v, "also")) &&
                    check_elems(r, e, "/tag/also", "'also'", S_STRING, err) < 0)
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
