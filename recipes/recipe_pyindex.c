/* Wheel names and tags, requirements, PEP 503 simple index pages. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "stage.h"
#include "util.h"
#include "resolve.h"

#define DEFAULT_PYTHON "cp311"
#define DEFAULT_PLATFORM "manylinux_2_35_x86_64"

void recipe_pep503_normalize(char *name)
{
        char *w = name;

        for (char *r = name; *r; r++) {
                if (*r == '-' || *r == '_' || *r == '.') {
                        if (w == name || w[-1] != '-')
                                *w++ = '-';
                } else {
                        *w++ = (char)tolower((unsigned char)*r);
                }
        }
        *w = '\0';
}

void recipe_wheel_name_release(struct recipe_wheel_name *w)
{
        if (!w)
                return;
        free(w->name);
        free(w->version);
        free(w->build);
        free(w->python);
        free(w->abi);
        free(w->platform);
        memset(w, 0, sizeof(*w));
}

/* PEP 427: {distribution}-{version}(-{build tag})?-{python tag}-{abi tag}-{platform tag}.whl */
int recipe_wheel_name_parse(const char *file, struct recipe_wheel_name *ret,
                            struct kiln_error *err)
{
        const char *base = strrchr(file, '/');
        char *parts[6];
        size_t n = 0;
        _cleanup_free_ char *s = NULL;
        char *p, *save = NULL;
        struct recipe_wheel_name w = {0};

        base = base ? base + 1 : file;
        if (!str_has_suffix(base, ".whl"))
                return kiln_error_set(err, KILN_E_INVALID, "invalid wheel name '%s': no .whl",
                                      base);
        s = strndup(base, strlen(base) - 4);
        if (!s)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        for (p = strtok_r(s, "-", &save); p; p = strtok_r(NULL, "-", &save)) {
                if (n == 6)
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "invalid wheel name '%s': too many '-' parts", base);
                parts[n++] = p;
        }
        if (n != 5 && n != 6)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid wheel name '%s': expected NAME-VERSION-PY-ABI-PLATFORM.whl",
                                      base);
        w.name = strdup(parts[0]);
        w.version = strdup(parts[1]);
        w.build = n == 6 ? strdup(parts[2]) : NULL;
        w.python = strdup(parts[n - 3]);
        w.abi = strdup(parts[n - 2]);
        w.platform = strdup(parts[n - 1]);
        if (!w.name || !w.version || !w.python || !w.abi || !w.platform || (n == 6 && !w.build)) {
                recipe_wheel_name_release(&w);
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        *ret = w;
        return 0;
}

static bool in_dotted(const char *set, const char *want)
{
        size_t n = strlen(want);

        for (const char *p = set; *p;) {
                const char *dot = strchr(p, '.');
                size_t len = dot ? (size_t)(dot - p) : strlen(p);
                if (len == n && !memcmp(p, want, n))
                        return true;
                if (!dot)
                        break;
                p = dot + 1;
        }
        return false;
}

/* manylinux_X_Y_ARCH and the legacy aliases (PEP 600) -> glibc X.Y and arch */
static bool manylinux(const char *tag, int *ret_major, int *ret_minor, const char **ret_arch)
{
        static const struct {
                const char *name;
                int major, minor;
        } legacy[] = {{"manylinux1_", 2, 5}, {"manylinux2010_", 2, 12}, {"manylinux2014_", 2, 17}};
        int a, b, used = 0;

        for (size_t i = 0; i < ARRAY_SIZE(legacy); i++)
                if (str_has_prefix(tag, legacy[i].name)) {
                        *ret_major = legacy[i].major;
                        *ret_minor = legacy[i].minor;
                        *ret_arch = tag + strlen(legacy[i].name);
                        return true;
                }
        if (sscanf(tag, "manylinux_%d_%d_%n", &a, &b, &used) == 2 && used > 0) {
                *ret_major = a;
                *ret_minor = b;
                *ret_arch = tag + used;
                return true;
        }
        return false;
}

/* PEP 384: an abi3 wheel built for cp3X runs on every CPython 3.Y, Y >= X */
static bool abi3_ok(const char *wheel_py, const char *target)
{
        int want = atoi(target + 3);

        for (const char *p = wheel_py; *p;) {
                const char *dot = strchr(p, '.');
                if (!strncmp(p, "cp3", 3) && atoi(p + 3) <= want)
                        return true;
                if (!dot)
                        break;
                p = dot + 1;
        }
        return false;
}

/* 0: incompatible; higher is a better match */
static int wheel_score(const struct recipe_wheel_name *w, const struct recipe_python_target *t)
{
        const char *py = t && t->python ? t->python : DEFAULT_PYTHON;
        const char *plat = t && t->platform ? t->platform : DEFAULT_PLATFORM;
        char pyver[16], pymajor[8];
        int tmaj, tmin, score = 0;
        const char *tarch;
        bool plat_ok = false;

        /* "cp311" -> "py311", "py3" */
        if (strlen(py) < 3 || strlen(py) > 10)
                return 0;
        snprintf(pyver, sizeof(pyver), "py%s", py + 2);
        snprintf(pymajor, sizeof(pymajor), "py%c", py[2]);
        if (in_dotted(w->python, py))
                score += 4;
        else if (in_dotted(w->python, pyver) || in_dotted(w->python, pymajor))
                score += 1;
        else if (in_dotted(w->abi, "abi3") && abi3_ok(w->python, py))
                score += 2;
        else
                return 0;
        if (in_dotted(w->abi, py))
                score += 4;
        else if (in_dotted(w->abi, "abi3") && !strncmp(w->python, "cp", 2))
                score += 2;
        else if (in_dotted(w->abi, "none"))
                score += 1;
        else
                return 0;
        if (!manylinux(plat, &tmaj, &tmin, &tarch))
                return in_dotted(w->platform, plat) ? score + 4 : (in_dotted(w->platform, "any") ? score : 0);
        for (const char *p = w->platform; *p;) {
                const char *dot = strchr(p, '.');
                size_t len = dot ? (size_t)(dot - p) : strlen(p);
                char one[128];
                int maj, min;
                const char *arch;

                if (len < sizeof(one)) {
                        memcpy(one, p, len);
                        one[len] = '\0';
                        if (!strcmp(one, "any"))
                                plat_ok = true;
                        else if (manylinux(one, &maj, &min, &arch) && !strcmp(arch, tarch) &&
                                 (maj < tmaj || (maj == tmaj && min <= tmin))) {
                                plat_ok = true;
                                score += 4;
                                break;
                        }
                }
                if (!dot)
                        break;
                p = dot + 1;
        }
        return plat_ok ? score : 0;
}

bool recipe_wheel_compatible(const struct recipe_wheel_name *w,
                             const struct recipe_python_target *t)
{
        return wheel_score(w, t) > 0;
}

void recipe_requirement_release(struct recipe_requirement *q)
{
        if (!q)
                return;
        recipe_pep508_release(&q->req);
        free(q->name);
        free(q->version);
        for (size_t i = 0; i < q->n_sha256; i++)
                free(q->sha256[i]);
        free(q->sha256);
        memset(q, 0, sizeof(*q));
}

static int add_hash(struct recipe_requirement *q, const char *h, size_t n, struct kiln_error *err)
{
        char **nh;

        if (n != 64)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid --hash 'sha256:%.*s': expected 64 hex digits",
                                      (int)n, h);
        for (size_t i = 0; i < n; i++)
                if (!isxdigit((unsigned char)h[i]))
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "invalid --hash 'sha256:%.*s': expected 64 hex digits",
                                              (int)n, h);
        nh = realloc(q->sha256, (q->n_sha256 + 1) * sizeof(*nh));
        if (!nh)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        q->sha256 = nh;
        q->sha256[q->n_sha256] = strndup(h, n);
        if (!q->sha256[q->n_sha256])
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        for (size_t i = 0; i < n; i++)
                q->sha256[q->n_sha256][i] = (char)tolower((unsigned char)h[i]);
        q->n_sha256++;
        return 0;
}

int recipe_requirement_parse(const char *spec, struct recipe_requirement *ret,
                             struct kiln_error *err)
{
        struct recipe_requirement q = {0};
        const struct recipe_spec *one;

        if (recipe_pep508_parse(spec, &q.req, err) < 0)
                return -1;
        if (q.req.url) {
                recipe_pep508_release(&q.req);
                return kiln_error_set(err, KILN_E_UNSUPPORTED,
                                      "invalid requirement '%s': URLs are not supported", spec);
        }
        q.name = strdup(q.req.name);
        if (!q.name) {
                recipe_pep508_release(&q.req);
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        one = q.req.spec.n == 1 ? &q.req.spec.items[0] : NULL;
        if (one && one->op == RECIPE_SPEC_EQ) {
                q.version = strdup(one->text);
                q.prefix = one->wildcard;
                if (!q.version) {
                        recipe_requirement_release(&q);
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                }
        }
        q.exact = !q.req.marker && (q.req.spec.n == 0 || q.version);
        *ret = q;
        return 0;
}

void recipe_requirements_release(struct recipe_requirements *r)
{
        if (!r)
                return;
        for (size_t i = 0; i < r->n; i++)
                recipe_requirement_release(&r->items[i]);
        free(r->items);
        memset(r, 0, sizeof(*r));
}

/* One logical line (continuations joined, comment dropped). */
static int parse_req_line(char *line, int lineno, const char *what,
                          struct recipe_requirements *out, struct kiln_error *err)
{
        struct recipe_requirement q = {0};
        char *hash, *p;
        struct recipe_requirement *ni;

        for (p = line; *p; p++)
                if (*p == '#' && (p == line || isspace((unsigned char)p[-1]))) {
                        *p = '\0';
                        break;
                }
        p = line;
        while (isspace((unsigned char)*p))
                p++;
        if (!*p)
                return 0;
        if (*p == '-') {
                static const char *const ignored[] = {"--index-url", "--extra-index-url", "-i",
                                                      "--pre", "--only-binary", "--no-deps"};
                for (size_t i = 0; i < ARRAY_SIZE(ignored); i++)
                        if (str_has_prefix(p, ignored[i]))
                                return 0; /* the recipe names the index */
                return kiln_error_set(err, KILN_E_UNSUPPORTED,
                                      "unsupported option in '%s' line %d: '%s'", what, lineno, p);
        }
        if (strstr(p, "://") || strchr(p, '@'))
                return kiln_error_set(err, KILN_E_UNSUPPORTED,
                                      "unsupported requirement in '%s' line %d: URLs are not supported",
                                      what, lineno);
        /* split off --hash options */
        hash = strstr(p, "--hash");
        {
                char *spec = hash ? strndup(p, (size_t)(hash - p)) : strdup(p);
                int rc;
                if (!spec)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                for (char *e = spec + strlen(spec); e > spec && isspace((unsigned char)e[-1]); e--)
                        e[-1] = '\0';
                rc = recipe_requirement_parse(spec, &q, err);
                free(spec);
                if (rc < 0) {
                        kiln_error_prefix(err, "'%s' line %d", what, lineno);
                        return -1;
                }
        }
        while (hash) {
                char *v = hash + 6, *end;
                while (*v == ' ' || *v == '=')
                        v++;
                if (!str_has_prefix(v, "sha256:")) {
                        recipe_requirement_release(&q);
                        return kiln_error_set(err, KILN_E_UNSUPPORTED,
                                              "unsupported hash in '%s' line %d: only sha256", what,
                                              lineno);
                }
                v += 7;
                end = v;
                while (*end && !isspace((unsigned char)*end))
                        end++;
                if (add_hash(&q, v, (size_t)(end - v), err) < 0) {
                        recipe_requirement_release(&q);
                        kiln_error_prefix(err, "'%s' line %d", what, lineno);
                        return -1;
                }
                hash = strstr(end, "--hash");
        }
        ni = realloc(out->items, (out->n + 1) * sizeof(*ni));
        if (!ni) {
                recipe_requirement_release(&q);
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        out->items = ni;
        out->items[out->n++] = q;
        return 0;
}

int recipe_requirements_parse(const char *buf, size_t len, const char *what,
                              struct recipe_requirements *ret, struct kiln_error *err)
{
        struct recipe_requirements out = {0};
        _cleanup_free_ char *line = malloc(len + 1);
        size_t ll = 0;
        int lineno = 1, start_line = 1;

        if (!line)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        for (size_t i = 0; i <= len; i++) {
                char ch = i < len ? buf[i] : '\n';
                if (ch == '\r')
                        continue;
                if (ch == '\n') {
                        if (ll && line[ll - 1] == '\\') {
                                line[--ll] = ' ';
                                ll++;
                                lineno++;
                                continue;
                        }
                        line[ll] = '\0';
                        if (parse_req_line(line, start_line, what, &out, err) < 0) {
                                recipe_requirements_release(&out);
                                return -1;
                        }
                        ll = 0;
                        lineno++;
                        start_line = lineno;
                        continue;
                }
                line[ll++] = ch;
        }
        *ret = out;
        return 0;
}

/* Compares versions token by token: numbers as numbers, words as strings,
 * a word ("dev", "rc") before the end sorts lower (a pre-release). */
static int version_cmp(const char *a, const char *b)
{
        while (*a || *b) {
                while (*a && !isalnum((unsigned char)*a))
                        a++;
                while (*b && !isalnum((unsigned char)*b))
                        b++;
                if (!*a || !*b) {
                        if (!*a && !*b)
                                return 0;
                        /* "1.0" vs "1.0.dev1": the longer one is a pre-release when it goes on with a word */
                        if (!*a)
                                return isdigit((unsigned char)*b) ? -1 : 1;
                        return isdigit((unsigned char)*a) ? 1 : -1;
                }
                if (isdigit((unsigned char)*a) && isdigit((unsigned char)*b)) {
                        unsigned long long x = strtoull(a, NULL, 10), y = strtoull(b, NULL, 10);
                        if (x != y)
                                return x < y ? -1 : 1;
                        while (isdigit((unsigned char)*a))
                                a++;
                        while (isdigit((unsigned char)*b))
                                b++;
                } else if (isdigit((unsigned char)*a)) {
                        return 1;
                } else if (isdigit((unsigned char)*b)) {
                        return -1;
                } else {
                        const char *ea = a, *eb = b;
                        int c;
                        while (isalpha((unsigned char)*ea))
                                ea++;
                        while (isalpha((unsigned char)*eb))
                                eb++;
                        c = strncmp(a, b, (size_t)((ea - a) < (eb - b) ? (ea - a) : (eb - b)));
                        if (c)
                                return c;
                        if ((ea - a) != (eb - b))
                                return (ea - a) < (eb - b) ? -1 : 1;
                        a = ea;
                        b = eb;
                }
        }
        return 0;
}

/* PEP 440 "==": without a local label in the spec, the candidate's local
 * label is ignored; ".*" matches a prefix. */
static bool version_matches(const struct recipe_requirement *q, const char *v)
{
        size_t n;

        if (!q->version)
                return true;
        n = strlen(q->version);
        if (q->prefix)
                return !strncmp(v, q->version, n) && (v[n] == '\0' || v[n] == '.' || v[n] == '+');
        if (strchr(q->version, '+'))
                return !strcmp(v, q->version);
        return !strncmp(v, q->version, n) && (v[n] == '\0' || v[n] == '+');
}

static char *url_decode(const char *s, size_t n)
{
        char *out = malloc(n + 1), *w = out;

        if (!out)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                if (s[i] == '%' && i + 2 < n + 0 + 1 && isxdigit((unsigned char)s[i + 1]) &&
                    isxdigit((unsigned char)s[i + 2])) {
                        char hex[3] = {s[i + 1], s[i + 2], 0};
                        *w++ = (char)strtol(hex, NULL, 16);
                        i += 2;
                } else if (s[i] == '&' && !strncmp(s + i, "&amp;", 5) && i + 5 <= n) {
                        *w++ = '&';
                        i += 4;
                } else {
                        *w++ = s[i];
                }
        }
        *w = '\0';
        return out;
}

/* base + "/" + rel with "." and ".." segments folded (RFC 3986 5.2.4,
 * for the simple case of a directory base). */
static char *join_url(const char *base, const char *rel)
{
        _cleanup_free_ char *joined = NULL;
        const char *path;
        size_t plen;
        char *out, *w;

        if (strstr(rel, "://"))
                return strdup(rel);
        if (rel[0] == '/') {
                /* an absolute path on the index's host */
                const char *scheme = strstr(base, "://");
                const char *host_end = scheme ? strchr(scheme + 3, '/') : NULL;
                if (!scheme || str_has_prefix(base, "file://"))
                        return strdup(rel);
                return kiln_strdupf("%.*s%s", (int)(host_end ? host_end - base : (long)strlen(base)),
                                    base, rel);
        }
        joined = kiln_strdupf("%s/%s", base, rel);
        if (!joined)
                return NULL;
        path = strstr(joined, "://") ? strstr(joined, "://") + 3 : joined;
        if (path != joined)
                path = strchr(path, '/') ? strchr(path, '/') : path + strlen(path);
        plen = (size_t)(path - joined);
        out = malloc(strlen(joined) + 2);
        if (!out)
                return NULL;
        memcpy(out, joined, plen);
        w = out + plen;
        for (const char *p = path; *p;) {
                const char *slash = strchr(p, '/');
                size_t len = slash ? (size_t)(slash - p) : strlen(p);
                if (len == 0 || (len == 1 && p[0] == '.')) {
                        /* nothing */
                } else if (len == 2 && p[0] == '.' && p[1] == '.') {
                        while (w > out + plen && w[-1] != '/')
                                w--;
                        if (w > out + plen)
                                w--;
                } else {
                        *w++ = '/';
                        memcpy(w, p, len);
                        w += len;
                }
                if (!slash)
                        break;
                p = slash + 1;
        }
        *w = '\0';
        if (path[0] != '/' && out[plen] == '/')
                memmove(out + plen, out + plen + 1, strlen(out + plen));
        return out;
}

int recipe_simple_index_pick(const char *html, size_t len, const char *base_url,
                             const struct recipe_requirement *q,
                             const struct recipe_python_target *t, char **ret_url,
                             char **ret_sha256, struct kiln_error *err)
{
        const char *p = html, *end = html + len;
        char *best_href = NULL, *best_ver = NULL;
        int best_score = 0;
        size_t seen = 0;

        while (p < end) {
                const char *a = strstr(p, "<a ");
                const char *tag_end, *h, *q1, *q2;
                char quote;
                _cleanup_free_ char *href = NULL, *file = NULL;
                struct recipe_wheel_name w = {0};
                struct kiln_error ignore = KILN_ERROR_INIT;
                int score;

                if (!a || a >= end)
                        break;
                tag_end = memchr(a, '>', (size_t)(end - a));
                if (!tag_end)
                        break;
                p = tag_end + 1;
                h = strstr(a, "href=");
                if (!h || h > tag_end)
                        continue;
                quote = h[5];
                if (quote != '"' && quote != '\'')
                        continue;
                q1 = h + 6;
                q2 = memchr(q1, quote, (size_t)(tag_end - q1));
                if (!q2)
                        continue;
                {
                        /* PEP 592: yanked files are not picked */
                        const char *y = strstr(a, "data-yanked");
                        if (y && y < tag_end)
                                continue;
                }
                href = url_decode(q1, (size_t)(q2 - q1));
                if (!href)
                        goto nomem;
                {
                        const char *path_end = strpbrk(href, "#?");
                        size_t plen = path_end ? (size_t)(path_end - href) : strlen(href);
                        const char *slash = NULL;
                        for (size_t i = 0; i < plen; i++)
                                if (href[i] == '/')
                                        slash = href + i;
                        file = strndup(slash ? slash + 1 : href,
                                       plen - (size_t)(slash ? slash + 1 - href : 0));
                }
                if (!file)
                        goto nomem;
                if (!str_has_suffix(file, ".whl") ||
                    recipe_wheel_name_parse(file, &w, &ignore) < 0)
                        continue;
                recipe_pep503_normalize(w.name);
                seen++;
                if (strcmp(w.name, q->name) || !version_matches(q, w.version)) {
                        recipe_wheel_name_release(&w);
                        continue;
                }
                score = wheel_score(&w, t);
                if (score > 0) {
                        int c = best_ver ? version_cmp(w.version, best_ver) : 1;
                        if (c > 0 || (c == 0 && score >= best_score)) {
                                free(best_href);
                                free(best_ver);
                                best_href = steal_ptr(&href);
                                best_ver = strdup(w.version);
                                best_score = score;
                        }
                }
                recipe_wheel_name_release(&w);
        }
        if (!best_href) {
                free(best_ver);
                return kiln_error_set(err, KILN_E_NOT_FOUND,
                                      "no wheel for '%s%s%s%s' matches %s / %s in '%s' (%zu wheels listed)",
                                      q->name, q->version ? "==" : "",
                                      q->version ? q->version : "", q->prefix ? ".*" : "",
                                      t && t->python ? t->python : DEFAULT_PYTHON,
                                      t && t->platform ? t->platform : DEFAULT_PLATFORM, base_url,
                                      seen);
        }
        {
                char *frag = strchr(best_href, '#');
                char *sha = NULL;
                char *url;
                if (frag) {
                        *frag = '\0';
                        if (str_has_prefix(frag + 1, "sha256=")) {
                                sha = strdup(frag + 8);
                                for (char *s = sha; s && *s; s++)
                                        *s = (char)tolower((unsigned char)*s);
                        }
                }
                {
                        char *qm = strchr(best_href, '?');
                        if (qm)
                                *qm = '\0';
                }
                url = join_url(base_url, best_href);
                free(best_href);
                free(best_ver);
                if (!url) {
                        free(sha);
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                }
                *ret_url = url;
                *ret_sha256 = sha;
        }
        return 0;
nomem:
        free(best_href);
        free(best_ver);
        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
}

/* ---- listing a project page for the resolver (resolve.h) ---- */

/* The value of attribute name in the tag [a, tag_end), entities decoded;
 * NULL when absent. */
static char *html_attr(const char *a, const char *tag_end, const char *name, bool *ret_present)
{
        size_t n = strlen(name);

        *ret_present = false;
        for (const char *p = a; p && p < tag_end; p++) {
                const char *v, *e;
                char quote;

                p = strstr(p, name);
                if (!p || p >= tag_end)
                        return NULL;
                if (!isspace((unsigned char)p[-1]) || (p[n] != '=' && !isspace((unsigned char)p[n]) &&
                                                       p[n] != '>' && p[n] != '/'))
                        continue;
                *ret_present = true;
                if (p[n] != '=')
                        return NULL;
                v = p + n + 1;
                quote = *v;
                if (quote != '"' && quote != '\'')
                        return NULL;
                e = memchr(v + 1, quote, (size_t)(tag_end - v - 1));
                if (!e)
                        return NULL;
                {
                        char *out = malloc((size_t)(e - v)), *w = out;
                        static const struct {
                                const char *ent;
                                char ch;
                        } ents[] = {{"&gt;", '>'}, {"&lt;", '<'}, {"&amp;", '&'}, {"&quot;", '"'},
                                    {"&#39;", '\''}, {"&#x27;", '\''}, {"&#62;", '>'}, {"&#60;", '<'}};
                        if (!out)
                                return NULL;
                        for (const char *s = v + 1; s < e;) {
                                size_t k;
                                for (k = 0; k < ARRAY_SIZE(ents); k++)
                                        if (!strncmp(s, ents[k].ent, strlen(ents[k].ent)))
                                                break;
                                if (k < ARRAY_SIZE(ents)) {
                                        *w++ = ents[k].ch;
                                        s += strlen(ents[k].ent);
                                } else {
                                        *w++ = *s++;
                                }
                        }
                        *w = '\0';
                        return out;
                }
        }
        return NULL;
}

static void index_file_release(struct recipe_index_file *f)
{
        free(f->url);
        free(f->sha256);
        free(f->metadata_sha256);
        free(f->requires_python);
        free(f->version);
        memset(f, 0, sizeof(*f));
}

void recipe_index_files_free(struct recipe_index_file *f, size_t n)
{
        for (size_t i = 0; f && i < n; i++)
                index_file_release(&f[i]);
        free(f);
}

static int cmp_files_newest_first(const void *a, const void *b)
{
        const struct recipe_index_file *x = a, *y = b;

        return recipe_version_cmp(&y->v, &x->v);
}

/* sha256 from "sha256=HEX" (a fragment or a PEP 658 attribute value) */
static char *sha256_value(const char *s)
{
        char *out;

        if (!s || !str_has_prefix(s, "sha256=") || strlen(s + 7) != 64)
                return NULL;
        out = strdup(s + 7);
        for (char *p = out; p && *p; p++)
                *p = (char)tolower((unsigned char)*p);
        return out;
}

/* Fills f from one anchor; false when it is not a usable wheel for name. */
/* file is an sdist of name (PEP 625 "NAME-VERSION.tar.gz", or an older
 * sdist whose name keeps its dashes): its version into f. */
static bool sdist_name(const char *file, const char *name, struct recipe_index_file *f)
{
        struct kiln_error ignore = KILN_ERROR_INIT;
        _cleanup_free_ char *stem = NULL;
        char *dash;

        if (!str_has_suffix(file, ".tar.gz"))
                return false;
        stem = strndup(file, strlen(file) - strlen(".tar.gz"));
        if (!stem)
                return false;
        /* versions hold no dash: the last one ends the name */
        dash = strrchr(stem, '-');
        if (!dash)
                return false;
        *dash = '\0';
        recipe_pep503_normalize(stem);
        if (strcmp(stem, name) || recipe_version_parse(dash + 1, &f->v, &ignore) < 0)
                return false;
        f->version = strdup(dash + 1);
        return f->version != NULL;
}

static bool anchor_file(const char *a, const char *tag_end, const char *base_url, const char *name,
                        const struct recipe_python_target *t, bool sdists,
                        struct recipe_index_file *f)
{
        bool present;
        _cleanup_free_ char *raw = html_attr(a, tag_end, "href", &present);
        _cleanup_free_ char *href = NULL, *file = NULL, *meta = NULL;
        struct recipe_wheel_name w = {0};
        struct kiln_error ignore = KILN_ERROR_INIT;
        char *frag;
        bool ok = false;

        memset(f, 0, sizeof(*f));
        html_attr(a, tag_end, "data-yanked", &present);
        if (!raw || present) /* PEP 592: yanked files are not picked */
                return false;
        href = url_decode(raw, strlen(raw));
        if (!href)
                return false;
        frag = strchr(href, '#');
        if (frag)
                *frag++ = '\0';
        if (strchr(href, '?'))
                *strchr(href, '?') = '\0';
        file = strdup(strrchr(href, '/') ? strrchr(href, '/') + 1 : href);
        if (!file)
                goto out;
        if (sdists) {
                /* a source distribution: NAME-VERSION.tar.gz */
                if (!sdist_name(file, name, f))
                        goto out;
                f->score = 1;
        } else {
                if (!str_has_suffix(file, ".whl") || recipe_wheel_name_parse(file, &w, &ignore) < 0)
                        goto out;
                recipe_pep503_normalize(w.name);
                if (strcmp(w.name, name) || recipe_version_parse(w.version, &f->v, &ignore) < 0)
                        goto out;
                f->score = wheel_score(&w, t);
                if (f->score <= 0)
                        goto out;
                f->version = strdup(w.version);
        }
        f->url = join_url(base_url, href);
        f->sha256 = sha256_value(frag);
        /* PEP 714 names it data-core-metadata; PEP 658's older name stays */
        meta = html_attr(a, tag_end, "data-core-metadata", &f->has_metadata);
        if (!f->has_metadata)
                meta = html_attr(a, tag_end, "data-dist-info-metadata", &f->has_metadata);
        if (meta && !strcmp(meta, "false"))
                f->has_metadata = false;
        f->metadata_sha256 = sha256_value(meta);
        f->requires_python = html_attr(a, tag_end, "data-requires-python", &present);
        ok = f->version && f->url;
out:
        recipe_wheel_name_release(&w);
        if (!ok)
                index_file_release(f);
        return ok;
}

static int index_list(const char *html, size_t len, const char *base_url, const char *name,
                      const struct recipe_python_target *t, bool sdists,
                      struct recipe_index_file **ret, size_t *ret_n, struct kiln_error *err)
{
        const char *p = html, *end = html + len;
        struct recipe_index_file *out = NULL;
        size_t n = 0;

        while (p < end) {
                const char *a = strstr(p, "<a ");
                const char *tag_end;
                struct recipe_index_file f;
                size_t k;

                if (!a || a >= end)
                        break;
                tag_end = memchr(a, '>', (size_t)(end - a));
                if (!tag_end)
                        break;
                p = tag_end + 1;
                if (!anchor_file(a, tag_end, base_url, name, t, sdists, &f))
                        continue;
                /* one file per version: the best tags, the last of equals */
                for (k = 0; k < n; k++)
                        if (recipe_version_cmp(&out[k].v, &f.v) == 0)
                                break;
                if (k < n && out[k].score > f.score) {
                        index_file_release(&f);
                        continue;
                }
                if (k < n) {
                        index_file_release(&out[k]);
                        out[k] = f;
                        continue;
                }
                {
                        struct recipe_index_file *no = realloc(out, (n + 1) * sizeof(*no));
                        if (!no) {
                                index_file_release(&f);
                                recipe_index_files_free(out, n);
                                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        }
                        out = no;
                        out[n++] = f;
                }
        }
        if (n > 1)
                qsort(out, n, sizeof(*out), cmp_files_newest_first);
        *ret = out;
        *ret_n = n;
        return 0;
}

int recipe_simple_index_list(const char *html, size_t len, const char *base_url, const char *name,
                             const struct recipe_python_target *t,
                             struct recipe_index_file **ret, size_t *ret_n,
                             struct kiln_error *err)
{
        return index_list(html, len, base_url, name, t, false, ret, ret_n, err);
}

int recipe_simple_index_sdists(const char *html, size_t len, const char *base_url,
                               const char *name, struct recipe_index_file **ret, size_t *ret_n,
                               struct kiln_error *err)
{
        return index_list(html, len, base_url, name, NULL, true, ret, ret_n, err);
}
