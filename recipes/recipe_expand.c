/* ${NAME} expansion. */
#include "recipe_expand.h"

#include <stdio.h>
#include <string.h>

#include "util.h"

struct sbuf {
        char *s;
        size_t len, cap;
};

static int sb_add(struct sbuf *b, const char *s, size_t n)
{
        if (b->len + n + 1 > b->cap) {
                size_t cap = (b->len + n + 1) * 2;
                char *ns;
                if (cap > RECIPE_EXPAND_MAX + 1)
                        cap = RECIPE_EXPAND_MAX + 1;
                if (b->len + n + 1 > cap)
                        return -2;
                ns = realloc(b->s, cap);
                if (!ns)
                        return -1;
                b->s = ns;
                b->cap = cap;
        }
        memcpy(b->s + b->len, s, n);
        b->len += n;
        b->s[b->len] = '\0';
        return 0;
}

int recipe_expand_x(const char *s, recipe_xlookup_fn fn, void *ctx, char **ret,
                    struct kiln_error *err)
{
        struct sbuf b = {0};
        const char *p = s;
        int rc;

        if (sb_add(&b, "", 0) < 0)
                goto nomem;
        while (*p) {
                const char *d = strchr(p, '$');
                const char *close, *dflt = NULL;
                char name[RECIPE_VAR_NAME_MAX + 1];
                size_t nlen;
                const char *val = NULL;
                enum recipe_xres xr;

                if (!d) {
                        if ((rc = sb_add(&b, p, strlen(p))) < 0)
                                goto grow;
                        break;
                }
                if ((rc = sb_add(&b, p, (size_t)(d - p))) < 0)
                        goto grow;
                if (d[1] == '$') {
                        if ((rc = sb_add(&b, "$", 1)) < 0)
                                goto grow;
                        p = d + 2;
                        continue;
                }
                if (d[1] != '{') {
                        /* a lone '$' is literal (only ${...} expands) */
                        if ((rc = sb_add(&b, "$", 1)) < 0)
                                goto grow;
                        p = d + 1;
                        continue;
                }
                close = strchr(d + 2, '}');
                if (!close) {
                        free(b.s);
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "unterminated '${' in '%s'", s);
                }
                nlen = (size_t)(close - (d + 2));
                {
                        const char *colon = memchr(d + 2, ':', nlen);
                        if (colon && colon[1] == '-') {
                                dflt = colon + 2;
                                nlen = (size_t)(colon - (d + 2));
                        }
                }
                if (nlen == 0 || nlen > RECIPE_VAR_NAME_MAX) {
                        free(b.s);
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "invalid variable reference '%.*s' in '%s'",
                                              (int)(close - d + 1), d, s);
                }
                memcpy(name, d + 2, nlen);
                name[nlen] = '\0';
                for (size_t i = 0; i < nlen; i++)
                        if (!(name[i] == '_' || name[i] == '.' || (name[i] >= 'a' && name[i] <= 'z') ||
                              (name[i] >= 'A' && name[i] <= 'Z') ||
                              (i > 0 && name[i] >= '0' && name[i] <= '9'))) {
                                free(b.s);
                                return kiln_error_set(err, KILN_E_INVALID,
                                                      "invalid variable reference '%.*s' in '%s'",
                                                      (int)(close - d + 1), d, s);
                        }
                xr = fn(ctx, name, &val, err);
                switch (xr) {
                case RECIPE_X_VALUE:
                        rc = sb_add(&b, val, strlen(val));
                        break;
                case RECIPE_X_KEEP:
                        rc = sb_add(&b, d, (size_t)(close - d + 1));
                        break;
                case RECIPE_X_UNDEFINED:
                        if (!dflt) {
                                free(b.s);
                                return kiln_error_set(err, KILN_E_INVALID,
                                                      "undefined variable '%s' in '%s'", name, s);
                        }
                        rc = sb_add(&b, dflt, (size_t)(close - dflt));
                        break;
                case RECIPE_X_ERROR:
                default:
                        free(b.s);
                        return -1;
                }
                if (rc < 0)
                        goto grow;
                p = close + 1;
        }
        *ret = b.s;
        return 0;
grow:
        free(b.s);
        if (rc == -2)
                return kiln_error_set(err, KILN_E_LIMIT,
                                      "expansion of '%s' is longer than %u bytes", s,
                                      RECIPE_EXPAND_MAX);
nomem:
        free(b.s);
        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
}

struct simple {
        recipe_lookup_fn fn;
        void *ctx;
};

static enum recipe_xres simple_lookup(void *ctx, const char *name, const char **ret,
                                      struct kiln_error *err)
{
        struct simple *s = ctx;
        const char *v = s->fn(s->ctx, name);

        if (!v)
                return RECIPE_X_UNDEFINED;
        *ret = v;
        return RECIPE_X_VALUE;
}

int recipe_expand_string(const char *s, recipe_lookup_fn lookup, void *ctx, char **ret,
                         struct kiln_error *err)
{
        struct simple sc = {lookup, ctx};

        return recipe_expand_x(s, simple_lookup, &sc, ret, err);
}
