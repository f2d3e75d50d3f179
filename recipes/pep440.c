/* PEP 440 versions and specifiers (see pep440.h), following packaging
 * 23's Version and Specifier:
 * https://packaging.python.org/en/latest/specifications/version-specifiers/ */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pep440.h"
#include "util.h"

struct scan {
        const char *p;
};

static bool digits(struct scan *s, uint64_t *ret)
{
        uint64_t v = 0;
        const char *p = s->p;

        if (!isdigit((unsigned char)*p))
                return false;
        for (; isdigit((unsigned char)*p); p++) {
                if (v > (UINT64_C(1) << 62) / 10)
                        return false;
                v = v * 10 + (uint64_t)(*p - '0');
        }
        s->p = p;
        *ret = v;
        return true;
}

static bool sep(char c)
{
        return c == '-' || c == '_' || c == '.';
}

/* Matches one of words (case-insensitive, first match wins); returns its
 * index or -1. */
static int word(struct scan *s, const char *const *words, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                size_t len = strlen(words[i]);
                if (!strncasecmp(s->p, words[i], len)) {
                        s->p += len;
                        return (int)i;
                }
        }
        return -1;
}

/* "[-_.]?WORD[-_.]?N?" where the number defaults to 0 */
static int suffix(struct scan *s, const char *const *words, size_t n, uint64_t *ret_num)
{
        struct scan t = *s;
        int w;

        if (sep(*t.p))
                t.p++;
        w = word(&t, words, n);
        if (w < 0)
                return -1;
        *ret_num = 0;
        {
                struct scan u = t;
                if (sep(*u.p))
                        u.p++;
                if (digits(&u, ret_num))
                        t = u;
        }
        *s = t;
        return w;
}

static int parse_local(struct scan *s, struct recipe_version *v)
{
        size_t k = 0;

        for (;;) {
                size_t start = k;
                while (isalnum((unsigned char)*s->p)) {
                        if (k + 2 >= sizeof(v->local))
                                return -1;
                        v->local[k++] = (char)tolower((unsigned char)*s->p++);
                }
                if (k == start)
                        return -1;
                if (!sep(*s->p) || !isalnum((unsigned char)s->p[1]))
                        break;
                v->local[k++] = '.';
                s->p++;
        }
        v->local[k] = '\0';
        return 0;
}

static int parse_at(struct scan *s, struct recipe_version *v)
{
        static const char *const pre[] = {"alpha", "a", "beta", "b", "preview", "pre", "c", "rc"};
        static const enum recipe_pre pre_kind[] = {RECIPE_PRE_A,  RECIPE_PRE_A,  RECIPE_PRE_B,
                                                   RECIPE_PRE_B,  RECIPE_PRE_RC, RECIPE_PRE_RC,
                                                   RECIPE_PRE_RC, RECIPE_PRE_RC};
        static const char *const post[] = {"post", "rev", "r"};
        static const char *const dev[] = {"dev"};
        uint64_t n;
        int w;

        memset(v, 0, sizeof(*v));
        if (*s->p == 'v' || *s->p == 'V')
                s->p++;
        if (!digits(s, &n))
                return -1;
        if (*s->p == '!') {
                s->p++;
                v->epoch = n;
                if (!digits(s, &n))
                        return -1;
        }
        v->release[v->n_release++] = n;
        while (s->p[0] == '.' && isdigit((unsigned char)s->p[1])) {
                s->p++;
                if (v->n_release == RECIPE_VERSION_PARTS || !digits(s, &n))
                        return -1;
                v->release[v->n_release++] = n;
        }
        if ((w = suffix(s, pre, ARRAY_SIZE(pre), &v->pre)) >= 0)
                v->pre_kind = pre_kind[w];
        if (s->p[0] == '-' && isdigit((unsigned char)s->p[1])) {
                s->p++;
                v->has_post = digits(s, &v->post);
        } else if (suffix(s, post, ARRAY_SIZE(post), &v->post) >= 0) {
                v->has_post = true;
        }
        if (suffix(s, dev, 1, &v->dev) >= 0)
                v->has_dev = true;
        if (*s->p == '+') {
                s->p++;
                if (parse_local(s, v) < 0)
                        return -1;
        }
        return 0;
}

int recipe_version_parse(const char *str, struct recipe_version *ret, struct kiln_error *err)
{
        struct scan s = {str};
        struct recipe_version v;

        while (isspace((unsigned char)*s.p))
                s.p++;
        if (parse_at(&s, &v) == 0) {
                while (isspace((unsigned char)*s.p))
                        s.p++;
                if (*s.p == '\0') {
                        *ret = v;
                        return 0;
                }
        }
        return kiln_error_set(err, KILN_E_INVALID, "invalid version '%s': not a PEP 440 version",
                              str);
}

bool recipe_version_is_pre(const struct recipe_version *v)
{
        return v->pre_kind != RECIPE_PRE_NONE || v->has_dev;
}

static int cmp_u64(uint64_t a, uint64_t b)
{
        return a < b ? -1 : a > b;
}

/* packaging's _cmpkey for the local label: numbers sort above words */
static int cmp_local(const char *a, const char *b)
{
        if (!*a || !*b)
                return (*a != '\0') - (*b != '\0');
        while (*a && *b) {
                size_t la = strcspn(a, "."), lb = strcspn(b, ".");
                bool na = strspn(a, "0123456789") == la, nb = strspn(b, "0123456789") == lb;
                int c;

                if (na && nb) {
                        c = cmp_u64(strtoull(a, NULL, 10), strtoull(b, NULL, 10));
                } else if (na != nb) {
                        c = na ? 1 : -1;
                } else {
                        c = strncmp(a, b, la < lb ? la : lb);
                        if (!c)
                                c = la < lb ? -1 : la > lb;
                }
                if (c)
                        return c;
                a += la + (a[la] == '.');
                b += lb + (b[lb] == '.');
        }
        return (*a != '\0') - (*b != '\0');
}

/* the pre-release key: a dev release of a final sorts before its pre-releases */
static int pre_rank(const struct recipe_version *v)
{
        if (v->pre_kind == RECIPE_PRE_NONE && !v->has_post && v->has_dev)
                return -1;
        return v->pre_kind == RECIPE_PRE_NONE ? 1 : 0;
}

int recipe_version_cmp(const struct recipe_version *a, const struct recipe_version *b)
{
        size_t n = a->n_release > b->n_release ? a->n_release : b->n_release;
        int c;

        if ((c = cmp_u64(a->epoch, b->epoch)))
                return c;
        for (size_t i = 0; i < n; i++) {
                uint64_t x = i < a->n_release ? a->release[i] : 0;
                uint64_t y = i < b->n_release ? b->release[i] : 0;
                if ((c = cmp_u64(x, y)))
                        return c;
        }
        if ((c = pre_rank(a) - pre_rank(b)))
                return c < 0 ? -1 : 1;
        if (pre_rank(a) == 0) {
                if ((c = (int)a->pre_kind - (int)b->pre_kind))
                        return c < 0 ? -1 : 1;
                if ((c = cmp_u64(a->pre, b->pre)))
                        return c;
        }
        if (a->has_post != b->has_post)
                return a->has_post ? 1 : -1;
        if ((c = cmp_u64(a->post, b->post)))
                return c;
        if (a->has_dev != b->has_dev)
                return a->has_dev ? -1 : 1;
        if ((c = cmp_u64(a->dev, b->dev)))
                return c;
        return cmp_local(a->local, b->local);
}

void recipe_version_format(const struct recipe_version *v, bool strip, char *out, size_t n)
{
        static const char *const pre[] = {"", "a", "b", "rc"};
        size_t nr = v->n_release, k = 0;

        if (strip)
                while (nr > 1 && v->release[nr - 1] == 0)
                        nr--;
#define PUT(...)                                                                                   \
        do {                                                                                       \
                int w_ = snprintf(out + k, k < n ? n - k : 0, __VA_ARGS__);                        \
                if (w_ > 0)                                                                        \
                        k += (size_t)w_;                                                           \
        } while (0)
        if (n)
                out[0] = '\0';
        if (v->epoch)
                PUT("%llu!", (unsigned long long)v->epoch);
        for (size_t i = 0; i < nr; i++)
                PUT("%s%llu", i ? "." : "", (unsigned long long)v->release[i]);
        if (v->pre_kind)
                PUT("%s%llu", pre[v->pre_kind], (unsigned long long)v->pre);
        if (v->has_post)
                PUT(".post%llu", (unsigned long long)v->post);
        if (v->has_dev)
                PUT(".dev%llu", (unsigned long long)v->dev);
        if (v->local[0])
                PUT("+%s", v->local);
#undef PUT
}

/* ---- specifiers ---- */

static const struct {
        const char *text;
        enum recipe_spec_op op;
} ops[] = {
        {"===", RECIPE_SPEC_ARBITRARY}, {"==", RECIPE_SPEC_EQ}, {"!=", RECIPE_SPEC_NE},
        {"<=", RECIPE_SPEC_LE},         {">=", RECIPE_SPEC_GE}, {"~=", RECIPE_SPEC_COMPAT},
        {"<", RECIPE_SPEC_LT},          {">", RECIPE_SPEC_GT},
};

static const char *op_text(enum recipe_spec_op op)
{
        for (size_t i = 0; i < ARRAY_SIZE(ops); i++)
                if (ops[i].op == op)
                        return ops[i].text;
        return "?";
}

static int spec_parse_one(const char *s, size_t len, struct recipe_spec *ret,
                          struct kiln_error *err)
{
        struct recipe_spec sp = {0};
        size_t i = 0, k;
        bool found = false;

        while (i < len && isspace((unsigned char)s[i]))
                i++;
        while (len > i && isspace((unsigned char)s[len - 1]))
                len--;
        for (k = 0; k < ARRAY_SIZE(ops); k++)
                if (len - i >= strlen(ops[k].text) && !strncmp(s + i, ops[k].text, strlen(ops[k].text))) {
                        sp.op = ops[k].op;
                        i += strlen(ops[k].text);
                        found = true;
                        break;
                }
        while (i < len && isspace((unsigned char)s[i]))
                i++;
        if (!found || i == len || len - i >= sizeof(sp.text))
                goto bad;
        memcpy(sp.text, s + i, len - i);
        sp.text[len - i] = '\0';
        if (strpbrk(sp.text, " \t,;"))
                goto bad;
        if (sp.op == RECIPE_SPEC_ARBITRARY) {
                *ret = sp;
                return 0;
        }
        if ((sp.op == RECIPE_SPEC_EQ || sp.op == RECIPE_SPEC_NE) && str_has_suffix(sp.text, ".*")) {
                sp.wildcard = true;
                sp.text[strlen(sp.text) - 2] = '\0';
        }
        {
                struct scan sc = {sp.text};
                if (parse_at(&sc, &sp.v) < 0 || *sc.p)
                        goto bad;
        }
        /* packaging's grammar: a local label only with == and !=, a wildcard
         * on a plain release, ~= with two release numbers */
        if (sp.v.local[0] && (sp.wildcard || (sp.op != RECIPE_SPEC_EQ && sp.op != RECIPE_SPEC_NE)))
                goto bad;
        if (sp.wildcard && (sp.v.has_dev || sp.v.has_post || sp.v.pre_kind))
                goto bad;
        if (sp.op == RECIPE_SPEC_COMPAT && sp.v.n_release < 2)
                goto bad;
        *ret = sp;
        return 0;
bad:
        return kiln_error_set(err, KILN_E_INVALID, "invalid version specifier '%.*s'", (int)len,
                              s);
}

void recipe_specset_release(struct recipe_specset *s)
{
        if (!s)
                return;
        free(s->items);
        s->items = NULL;
        s->n = 0;
}

int recipe_specset_parse(const char *s, struct recipe_specset *ret, struct kiln_error *err)
{
        struct recipe_specset out = {0};
        const char *p = s;

        while (isspace((unsigned char)*p))
                p++;
        if (!*p) {
                *ret = out;
                return 0;
        }
        for (;;) {
                const char *comma = strchr(p, ',');
                size_t len = comma ? (size_t)(comma - p) : strlen(p);
                struct recipe_spec *ni;
                size_t blank = 0;

                while (blank < len && isspace((unsigned char)p[blank]))
                        blank++;
                if (blank == len) { /* packaging skips empty items */
                        if (!comma)
                                break;
                        p = comma + 1;
                        continue;
                }
                ni = realloc(out.items, (out.n + 1) * sizeof(*ni));
                if (!ni) {
                        recipe_specset_release(&out);
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                }
                out.items = ni;
                if (spec_parse_one(p, len, &out.items[out.n], err) < 0) {
                        recipe_specset_release(&out);
                        return -1;
                }
                out.n++;
                if (!comma)
                        break;
                p = comma + 1;
        }
        *ret = out;
        return 0;
}

int recipe_specset_merge(struct recipe_specset *a, const struct recipe_specset *b,
                         struct kiln_error *err)
{
        struct recipe_spec *ni;

        if (!b->n)
                return 0;
        ni = realloc(a->items, (a->n + b->n) * sizeof(*ni));
        if (!ni)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        memcpy(ni + a->n, b->items, b->n * sizeof(*ni));
        a->items = ni;
        a->n += b->n;
        return 0;
}

/* packaging's _version_split of a normal form: "1.0rc1" -> 1 0 rc1 */
#define SPLIT_MAX (RECIPE_VERSION_PARTS + 8)
struct split {
        char tok[SPLIT_MAX][40];
        size_t n;
};

static void version_split(const char *s, struct split *out)
{
        out->n = 0;
        while (*s && out->n < SPLIT_MAX - 1) {
                size_t len = strcspn(s, "."), d = strspn(s, "0123456789");
                size_t cut = len;

                if (d > 0 && d < len && strchr("abcr", s[d]))
                        cut = d; /* "0rc1" -> "0", "rc1" */
                snprintf(out->tok[out->n++], sizeof(out->tok[0]), "%.*s", (int)cut, s);
                if (cut < len)
                        snprintf(out->tok[out->n++], sizeof(out->tok[0]), "%.*s",
                                 (int)(len - cut), s + cut);
                s += len + (s[len] == '.');
        }
}

static size_t numeric_prefix(const struct split *s)
{
        size_t i = 0;

        while (i < s->n && s->tok[i][0] && strspn(s->tok[i], "0123456789") == strlen(s->tok[i]))
                i++;
        return i;
}

/* "==1.2.*": the candidate's normal form, padded with zeros, starts with
 * the spec's parts */
static bool prefix_match(const struct recipe_version *cand, const struct recipe_version *spec)
{
        struct recipe_version pub = *cand;
        char a[RECIPE_VERSION_TEXT], b[RECIPE_VERSION_TEXT];
        struct split sc, ss;
        size_t rc, rs, k = 0;

        pub.local[0] = '\0';
        recipe_version_format(&pub, true, a, sizeof(a));
        recipe_version_format(spec, false, b, sizeof(b));
        version_split(a, &sc);
        version_split(b, &ss);
        rc = numeric_prefix(&sc);
        rs = numeric_prefix(&ss);
        /* packaging's _pad_version: the candidate's release, zeros up to the
         * spec's release length, then the rest; cut to the spec's length */
        {
                char padded[2 * SPLIT_MAX][40];
                for (size_t i = 0; i < rc && k < 2 * SPLIT_MAX; i++)
                        strcpy(padded[k++], sc.tok[i]);
                for (size_t i = rc; i < rs && k < 2 * SPLIT_MAX; i++)
                        strcpy(padded[k++], "0");
                for (size_t i = rc; i < sc.n && k < 2 * SPLIT_MAX; i++)
                        strcpy(padded[k++], sc.tok[i]);
                if (k < ss.n)
                        return false;
                for (size_t i = 0; i < ss.n; i++)
                        if (strcmp(padded[i], ss.tok[i]))
                                return false;
        }
        return true;
}

static bool base_equal(const struct recipe_version *a, const struct recipe_version *b)
{
        struct recipe_version x = *a, y = *b;

        x.pre_kind = y.pre_kind = RECIPE_PRE_NONE;
        x.has_post = y.has_post = x.has_dev = y.has_dev = false;
        x.pre = y.pre = x.post = y.post = x.dev = y.dev = 0;
        x.local[0] = y.local[0] = '\0';
        return recipe_version_cmp(&x, &y) == 0;
}

static bool op_equal(const struct recipe_version *cand, const struct recipe_spec *sp)
{
        struct recipe_version pub = *cand;

        if (sp->wildcard)
                return prefix_match(cand, &sp->v);
        if (!sp->v.local[0])
                pub.local[0] = '\0';
        return recipe_version_cmp(&pub, &sp->v) == 0;
}

bool recipe_spec_contains(const struct recipe_spec *sp, const struct recipe_version *v)
{
        struct recipe_version pub = *v;
        int c;

        pub.local[0] = '\0';
        switch (sp->op) {
        case RECIPE_SPEC_EQ: return op_equal(v, sp);
        case RECIPE_SPEC_NE: return !op_equal(v, sp);
        case RECIPE_SPEC_LE: return recipe_version_cmp(&pub, &sp->v) <= 0;
        case RECIPE_SPEC_GE: return recipe_version_cmp(&pub, &sp->v) >= 0;
        case RECIPE_SPEC_LT:
                if (recipe_version_cmp(v, &sp->v) >= 0)
                        return false;
                return recipe_version_is_pre(&sp->v) || !recipe_version_is_pre(v) ||
                       !base_equal(v, &sp->v);
        case RECIPE_SPEC_GT:
                if (recipe_version_cmp(v, &sp->v) <= 0)
                        return false;
                if (!sp->v.has_post && v->has_post && base_equal(v, &sp->v))
                        return false;
                return !(v->local[0] && base_equal(v, &sp->v));
        case RECIPE_SPEC_COMPAT: {
                /* ~=X.Y.Z[suffix] is >=X.Y.Z[suffix], ==X.Y.* */
                struct recipe_spec eq = *sp;
                c = recipe_version_cmp(&pub, &sp->v);
                if (c < 0)
                        return false;
                eq.op = RECIPE_SPEC_EQ;
                eq.wildcard = true;
                eq.v.has_post = eq.v.has_dev = false;
                eq.v.post = eq.v.dev = 0;
                eq.v.pre_kind = RECIPE_PRE_NONE;
                eq.v.pre = 0;
                eq.v.n_release--;
                return op_equal(v, &eq);
        }
        case RECIPE_SPEC_ARBITRARY: {
                char s[RECIPE_VERSION_TEXT];
                recipe_version_format(v, false, s, sizeof(s));
                return !strcasecmp(s, sp->text);
        }
        }
        return false;
}

bool recipe_specset_allows_pre(const struct recipe_specset *s)
{
        for (size_t i = 0; i < s->n; i++) {
                enum recipe_spec_op op = s->items[i].op;
                if ((op == RECIPE_SPEC_EQ || op == RECIPE_SPEC_GE || op == RECIPE_SPEC_LE ||
                     op == RECIPE_SPEC_COMPAT) &&
                    recipe_version_is_pre(&s->items[i].v))
                        return true;
                if (op == RECIPE_SPEC_ARBITRARY) {
                        struct recipe_version v;
                        struct kiln_error ignore = KILN_ERROR_INIT;
                        if (recipe_version_parse(s->items[i].text, &v, &ignore) == 0 &&
                            recipe_version_is_pre(&v))
                                return true;
                }
        }
        return false;
}

bool recipe_specset_contains(const struct recipe_specset *s, const struct recipe_version *v,
                             bool prereleases)
{
        if (!prereleases && recipe_version_is_pre(v) && !recipe_specset_allows_pre(s))
                return false;
        for (size_t i = 0; i < s->n; i++)
                if (!recipe_spec_contains(&s->items[i], v))
                        return false;
        return true;
}

void recipe_specset_format(const struct recipe_specset *s, char *out, size_t n)
{
        size_t k = 0;

        if (n)
                out[0] = '\0';
        for (size_t i = 0; i < s->n && k < n; i++) {
                int w = snprintf(out + k, n - k, "%s%s%s%s", i ? "," : "", op_text(s->items[i].op),
                                 s->items[i].text, s->items[i].wildcard ? ".*" : "");
                if (w > 0)
                        k += (size_t)w;
        }
}
