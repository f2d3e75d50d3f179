/* PEP 508 requirements and environment markers (see pep440.h):
 * https://packaging.python.org/en/latest/specifications/dependency-specifiers/
 * Markers evaluate as packaging 23's Marker.evaluate: a comparison whose
 * right side reads as a version specifier compares versions (pre-releases
 * included), any other compares strings; "extra" values are normalized. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pep440.h"
#include "stage.h"
#include "util.h"

#define MARKER_DEPTH_MAX 32
#define MARKER_STR_MAX 256

struct mcur {
        const char *p;
        const char *all; /* the whole marker, for messages */
        const struct recipe_marker_env *env;
        const char *extra;
        int depth;
        struct kiln_error *err;
};

static void ws(struct mcur *c)
{
        while (isspace((unsigned char)*c->p))
                c->p++;
}

static int bad(struct mcur *c, const char *what)
{
        return kiln_error_set(c->err, KILN_E_INVALID, "invalid marker '%s': %s", c->all, what);
}

static const char *env_value(const struct mcur *c, const char *name)
{
        const struct recipe_marker_env *e = c->env;
        static const struct {
                const char *name;
                size_t off;
        } vars[] = {
#define V(n, f) {n, offsetof(struct recipe_marker_env, f)}
                V("python_version", python_version),
                V("python_full_version", python_full_version),
                V("os_name", os_name),
                V("os.name", os_name),
                V("sys_platform", sys_platform),
                V("sys.platform", sys_platform),
                V("platform_system", platform_system),
                V("platform_machine", platform_machine),
                V("platform.machine", platform_machine),
                V("platform_release", platform_release),
                V("platform_version", platform_version),
                V("platform.version", platform_version),
                V("implementation_name", implementation_name),
                V("implementation_version", python_full_version),
                V("platform_python_implementation", platform_python_implementation),
                V("platform.python_implementation", platform_python_implementation),
                V("python_implementation", platform_python_implementation),
#undef V
        };

        if (!strcmp(name, "extra"))
                return c->extra ? c->extra : "";
        for (size_t i = 0; i < ARRAY_SIZE(vars); i++)
                if (!strcmp(vars[i].name, name)) {
                        const char *v = *(const char *const *)(const void *)((const char *)e +
                                                                              vars[i].off);
                        return v ? v : "";
                }
        return NULL;
}

/* A quoted string or a variable; *ret_var tells which. */
static int operand(struct mcur *c, char out[MARKER_STR_MAX], bool *ret_var, bool *ret_extra)
{
        size_t n = 0;

        ws(c);
        *ret_var = *ret_extra = false;
        if (*c->p == '"' || *c->p == '\'') {
                char q = *c->p++;
                while (*c->p && *c->p != q) {
                        if (n + 1 >= MARKER_STR_MAX)
                                return bad(c, "string too long");
                        out[n++] = *c->p++;
                }
                if (*c->p != q)
                        return bad(c, "unterminated string");
                c->p++;
                out[n] = '\0';
                return 0;
        }
        while (isalnum((unsigned char)*c->p) || *c->p == '_' || *c->p == '.') {
                if (n + 1 >= MARKER_STR_MAX)
                        return bad(c, "name too long");
                out[n++] = *c->p++;
        }
        out[n] = '\0';
        if (!n)
                return bad(c, "expected a variable or a quoted string");
        {
                const char *v = env_value(c, out);
                if (!v)
                        return kiln_error_set(c->err, KILN_E_INVALID,
                                              "invalid marker '%s': unknown variable '%s'", c->all,
                                              out);
                *ret_extra = !strcmp(out, "extra");
                snprintf(out, MARKER_STR_MAX, "%s", v);
        }
        *ret_var = true;
        return 0;
}

static int marker_op(struct mcur *c, char op[8])
{
        static const char *const sym[] = {"===", "==", "!=", "<=", ">=", "~=", "<", ">"};

        ws(c);
        for (size_t i = 0; i < ARRAY_SIZE(sym); i++)
                if (str_has_prefix(c->p, sym[i])) {
                        strcpy(op, sym[i]);
                        c->p += strlen(sym[i]);
                        return 0;
                }
        if (str_has_prefix(c->p, "in") && !isalnum((unsigned char)c->p[2])) {
                strcpy(op, "in");
                c->p += 2;
                return 0;
        }
        if (str_has_prefix(c->p, "not")) {
                const char *q = c->p + 3;
                while (isspace((unsigned char)*q))
                        q++;
                if (q > c->p + 3 && str_has_prefix(q, "in") && !isalnum((unsigned char)q[2])) {
                        strcpy(op, "notin");
                        c->p = q + 2;
                        return 0;
                }
        }
        return bad(c, "expected a comparison operator");
}

static bool compare(const char *lhs, const char *op, const char *rhs)
{
        int c;

        if (!strcmp(op, "in"))
                return strstr(rhs, lhs) != NULL;
        if (!strcmp(op, "notin"))
                return strstr(rhs, lhs) == NULL;
        {
                /* packaging: Specifier(op + rhs).contains(lhs, prereleases=True) */
                char spec[MARKER_STR_MAX + 8];
                struct recipe_specset s = {0};
                struct recipe_version v;
                struct kiln_error ignore = KILN_ERROR_INIT;
                snprintf(spec, sizeof(spec), "%s%s", op, rhs);
                if (!strchr(rhs, ',') && recipe_specset_parse(spec, &s, &ignore) == 0) {
                        bool ok = s.n == 1 && recipe_version_parse(lhs, &v, &ignore) == 0;
                        bool r = ok && recipe_spec_contains(&s.items[0], &v);
                        recipe_specset_release(&s);
                        if (ok)
                                return r;
                }
        }
        c = strcmp(lhs, rhs);
        if (!strcmp(op, "==") || !strcmp(op, "==="))
                return c == 0;
        if (!strcmp(op, "!="))
                return c != 0;
        if (!strcmp(op, "<"))
                return c < 0;
        if (!strcmp(op, "<="))
                return c <= 0;
        if (!strcmp(op, ">"))
                return c > 0;
        if (!strcmp(op, ">="))
                return c >= 0;
        return false; /* "~=" on strings: packaging raises; nothing matches */
}

static int expr_or(struct mcur *c, bool *ret);

static int atom(struct mcur *c, bool *ret)
{
        char lhs[MARKER_STR_MAX], rhs[MARKER_STR_MAX], op[8];
        bool lvar, rvar, lextra, rextra;

        ws(c);
        if (*c->p == '(') {
                if (++c->depth > MARKER_DEPTH_MAX)
                        return bad(c, "nested too deeply");
                c->p++;
                if (expr_or(c, ret) < 0)
                        return -1;
                ws(c);
                if (*c->p != ')')
                        return bad(c, "expected ')'");
                c->p++;
                c->depth--;
                return 0;
        }
        if (operand(c, lhs, &lvar, &lextra) < 0 || marker_op(c, op) < 0 ||
            operand(c, rhs, &rvar, &rextra) < 0)
                return -1;
        if (lvar == rvar)
                return bad(c, "a comparison needs one variable and one quoted string");
        if (lextra || rextra) {
                recipe_pep503_normalize(lhs);
                recipe_pep503_normalize(rhs);
        }
        *ret = compare(lhs, op, rhs);
        return 0;
}

static bool keyword(struct mcur *c, const char *kw)
{
        size_t n = strlen(kw);

        ws(c);
        if (!strncmp(c->p, kw, n) && !isalnum((unsigned char)c->p[n]) && c->p[n] != '_') {
                c->p += n;
                return true;
        }
        return false;
}

static int expr_and(struct mcur *c, bool *ret)
{
        bool v, w;

        if (atom(c, &v) < 0)
                return -1;
        while (keyword(c, "and")) {
                if (atom(c, &w) < 0)
                        return -1;
                v = v && w;
        }
        *ret = v;
        return 0;
}

static int expr_or(struct mcur *c, bool *ret)
{
        bool v, w;

        if (expr_and(c, &v) < 0)
                return -1;
        while (keyword(c, "or")) {
                if (expr_and(c, &w) < 0)
                        return -1;
                v = v || w;
        }
        *ret = v;
        return 0;
}

int recipe_marker_eval(const char *marker, const struct recipe_marker_env *env, const char *extra,
                       bool *ret, struct kiln_error *err)
{
        char norm[MARKER_STR_MAX];
        struct mcur c = {marker, marker, env, NULL, 0, err};
        bool v;

        if (extra) {
                snprintf(norm, sizeof(norm), "%s", extra);
                recipe_pep503_normalize(norm);
                c.extra = norm;
        }
        if (expr_or(&c, &v) < 0)
                return -1;
        ws(&c);
        if (*c.p)
                return bad(&c, "unexpected text after the expression");
        *ret = v;
        return 0;
}

/* ---- requirements ---- */

void recipe_pep508_release(struct recipe_pep508 *r)
{
        if (!r)
                return;
        free(r->name);
        for (size_t i = 0; i < r->n_extras; i++)
                free(r->extras[i]);
        free(r->extras);
        recipe_specset_release(&r->spec);
        free(r->marker);
        free(r->url);
        memset(r, 0, sizeof(*r));
}

static bool name_char(char ch)
{
        return isalnum((unsigned char)ch) || ch == '-' || ch == '_' || ch == '.';
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

static int add_extra(struct recipe_pep508 *r, const char *s, size_t n, struct kiln_error *err)
{
        char *e = strndup(s, n);
        char **ne;

        if (!e)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        recipe_pep503_normalize(e);
        for (size_t i = 0; i < r->n_extras; i++)
                if (!strcmp(r->extras[i], e)) {
                        free(e);
                        return 0;
                }
        ne = realloc(r->extras, (r->n_extras + 1) * sizeof(*ne));
        if (!ne) {
                free(e);
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        r->extras = ne;
        r->extras[r->n_extras++] = e;
        return 0;
}

static int parse_extras(const char *spec, const char **pp, struct recipe_pep508 *r,
                        struct kiln_error *err)
{
        const char *p = *pp + 1;

        for (;;) {
                const char *start;
                while (isspace((unsigned char)*p))
                        p++;
                if (*p == ']' && r->n_extras == 0)
                        break;
                start = p;
                while (name_char(*p))
                        p++;
                if (p == start)
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "invalid requirement '%s': bad extra name", spec);
                if (add_extra(r, start, (size_t)(p - start), err) < 0)
                        return -1;
                while (isspace((unsigned char)*p))
                        p++;
                if (*p == ',') {
                        p++;
                        continue;
                }
                if (*p == ']')
                        break;
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid requirement '%s': unclosed '['", spec);
        }
        *pp = p + 1;
        if (r->n_extras > 1)
                qsort(r->extras, r->n_extras, sizeof(*r->extras), cmp_str);
        return 0;
}

static int parse_version_part(const char *spec, const char **pp, struct recipe_pep508 *r,
                              struct kiln_error *err)
{
        const char *p = *pp, *end;
        bool paren = *p == '(';
        _cleanup_free_ char *text = NULL;

        if (paren)
                p++;
        end = paren ? strchr(p, ')') : p + strcspn(p, ";");
        if (!end)
                return kiln_error_set(err, KILN_E_INVALID, "invalid requirement '%s': unclosed '('",
                                      spec);
        text = strndup(p, (size_t)(end - p));
        if (!text)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (recipe_specset_parse(text, &r->spec, err) < 0) {
                kiln_error_prefix(err, "invalid requirement '%s'", spec);
                return -1;
        }
        *pp = paren ? end + 1 : end;
        return 0;
}

static int parse_marker_part(const char *spec, const char *p, struct recipe_pep508 *r,
                             struct kiln_error *err)
{
        static const struct recipe_marker_env probe = {0};
        bool ignored;

        while (isspace((unsigned char)*p))
                p++;
        if (!*p)
                return 0;
        if (*p != ';')
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid requirement '%s': unexpected '%s'", spec, p);
        p++;
        while (isspace((unsigned char)*p))
                p++;
        r->marker = strdup(p);
        if (!r->marker)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        for (char *e = r->marker + strlen(r->marker); e > r->marker && isspace((unsigned char)e[-1]);)
                *--e = '\0';
        /* checked now, so a bad marker fails where it is written */
        if (recipe_marker_eval(r->marker, &probe, NULL, &ignored, err) < 0) {
                kiln_error_prefix(err, "invalid requirement '%s'", spec);
                return -1;
        }
        return 0;
}

int recipe_pep508_parse(const char *spec, struct recipe_pep508 *ret, struct kiln_error *err)
{
        struct recipe_pep508 r = {0};
        const char *p = spec, *start;

        while (isspace((unsigned char)*p))
                p++;
        start = p;
        while (name_char(*p))
                p++;
        if (p == start || !isalnum((unsigned char)*start) || !isalnum((unsigned char)p[-1]))
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid requirement '%s': no valid project name", spec);
        r.name = strndup(start, (size_t)(p - start));
        if (!r.name)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        recipe_pep503_normalize(r.name);
        while (isspace((unsigned char)*p))
                p++;
        if (*p == '[' && parse_extras(spec, &p, &r, err) < 0)
                goto fail;
        while (isspace((unsigned char)*p))
                p++;
        if (*p == '@') {
                const char *u = p + 1;
                while (isspace((unsigned char)*u))
                        u++;
                p = u;
                while (*p && !isspace((unsigned char)*p))
                        p++;
                r.url = strndup(u, (size_t)(p - u));
                if (!r.url || !*r.url) {
                        kiln_error_set(err, KILN_E_INVALID, "invalid requirement '%s': empty URL",
                                       spec);
                        goto fail;
                }
        } else if (*p && *p != ';' && parse_version_part(spec, &p, &r, err) < 0) {
                goto fail;
        }
        if (parse_marker_part(spec, p, &r, err) < 0)
                goto fail;
        *ret = r;
        return 0;
fail:
        recipe_pep508_release(&r);
        return -1;
}

int recipe_pep508_applies(const struct recipe_pep508 *r, const struct recipe_marker_env *env,
                          const char *const *extras, size_t n_extras, bool *ret,
                          struct kiln_error *err)
{
        bool v = false;

        if (!r->marker) {
                *ret = true;
                return 0;
        }
        if (recipe_marker_eval(r->marker, env, NULL, &v, err) < 0)
                return -1;
        for (size_t i = 0; !v && i < n_extras; i++)
                if (recipe_marker_eval(r->marker, env, extras[i], &v, err) < 0)
                        return -1;
        *ret = v;
        return 0;
}

int recipe_marker_eval_req(const struct recipe_pep508 *r, const struct recipe_marker_env *env,
                           const char *extra, bool *ret, struct kiln_error *err)
{
        if (!r->marker) {
                *ret = true;
                return 0;
        }
        return recipe_marker_eval(r->marker, env, extra, ret, err);
}
