/* Debian dependency resolution for debs layers (docs/recipes.md,
 * "Dependencies"): the closure of the requested packages over the layer's
 * indexes, as apt-get install without recommends chooses it, minus what
 * the image below has.  Versions compare as dpkg compares them
 * (deb-version(7)); relations follow deb-control(5) and Debian Policy 7. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "recipe_internal.h"
#include "util.h"

/* ---- versions: dpkg's lib/dpkg/version.c ---- */

static int order(int c)
{
        if (isdigit(c))
                return 0;
        if (isalpha(c))
                return c;
        if (c == '~')
                return -1;
        if (c)
                return c + 256;
        return 0;
}

static int verrevcmp(const char *a, const char *b)
{
        while (*a || *b) {
                int first_diff = 0;
                while ((*a && !isdigit((unsigned char)*a)) || (*b && !isdigit((unsigned char)*b))) {
                        int ac = order((unsigned char)*a), bc = order((unsigned char)*b);
                        if (ac != bc)
                                return ac - bc;
                        a++;
                        b++;
                }
                while (*a == '0')
                        a++;
                while (*b == '0')
                        b++;
                while (isdigit((unsigned char)*a) && isdigit((unsigned char)*b)) {
                        if (!first_diff)
                                first_diff = *a - *b;
                        a++;
                        b++;
                }
                if (isdigit((unsigned char)*a))
                        return 1;
                if (isdigit((unsigned char)*b))
                        return -1;
                if (first_diff)
                        return first_diff;
        }
        return 0;
}

struct ver {
        unsigned long epoch;
        char upstream[256], revision[256];
};

static void ver_parse(const char *s, struct ver *v)
{
        const char *colon = strchr(s, ':'), *dash;

        while (*s == ' ')
                s++;
        v->epoch = colon ? strtoul(s, NULL, 10) : 0;
        if (colon)
                s = colon + 1;
        dash = strrchr(s, '-');
        snprintf(v->upstream, sizeof(v->upstream), "%.*s", (int)(dash ? dash - s : (long)strlen(s)),
                 s);
        snprintf(v->revision, sizeof(v->revision), "%s", dash ? dash + 1 : "");
        for (size_t n = strlen(v->revision); n && v->revision[n - 1] == ' ';)
                v->revision[--n] = '\0';
        for (size_t n = strlen(v->upstream); n && v->upstream[n - 1] == ' ';)
                v->upstream[--n] = '\0';
}

int recipe_deb_version_cmp(const char *a, const char *b)
{
        struct ver va, vb;
        int r;

        ver_parse(a, &va);
        ver_parse(b, &vb);
        if (va.epoch != vb.epoch)
                return va.epoch < vb.epoch ? -1 : 1;
        r = verrevcmp(va.upstream, vb.upstream);
        if (!r)
                r = verrevcmp(va.revision, vb.revision);
        return r < 0 ? -1 : r > 0;
}

/* ---- relations: "a (>= 1) | b:any, c" ---- */

struct rel {
        char name[128], archq[32], op[3], version[256]; /* op "" : any version */
};

/* One alternative; returns the end of it or NULL when malformed. */
static const char *rel_parse(const char *s, struct rel *r)
{
        size_t n = 0;

        memset(r, 0, sizeof(*r));
        while (isspace((unsigned char)*s))
                s++;
        while (*s && !isspace((unsigned char)*s) && !strchr("(:|,[<", *s) &&
               n < sizeof(r->name) - 1)
                r->name[n++] = *s++;
        if (!n)
                return NULL;
        if (*s == ':') {
                n = 0;
                s++;
                while (*s && !isspace((unsigned char)*s) && !strchr("(|,[<", *s) &&
                       n < sizeof(r->archq) - 1)
                        r->archq[n++] = *s++;
        }
        while (isspace((unsigned char)*s))
                s++;
        if (*s == '(') {
                n = 0;
                s++;
                while (isspace((unsigned char)*s))
                        s++;
                while (strchr("<>=", *s) && *s && n < 2)
                        r->op[n++] = *s++;
                /* "<" and ">" are the obsolete "<=" and ">=" */
                if (!strcmp(r->op, "<"))
                        strcpy(r->op, "<=");
                if (!strcmp(r->op, ">"))
                        strcpy(r->op, ">=");
                if (!*r->op)
                        return NULL;
                while (isspace((unsigned char)*s))
                        s++;
                n = 0;
                while (*s && *s != ')' && !isspace((unsigned char)*s) && n < sizeof(r->version) - 1)
                        r->version[n++] = *s++;
                while (isspace((unsigned char)*s))
                        s++;
                if (*s++ != ')' || !n)
                        return NULL;
        }
        /* architecture restrictions and build profiles are for sources */
        while (isspace((unsigned char)*s) || *s == '[' || *s == '<') {
                char close = *s == '[' ? ']' : *s == '<' ? '>' : 0;
                if (close) {
                        s = strchr(s, close);
                        if (!s)
                                return NULL;
                }
                s++;
        }
        return s;
}

static bool op_ok(const char *op, int cmp)
{
        if (!*op)
                return true;
        if (!strcmp(op, "<<"))
                return cmp < 0;
        if (!strcmp(op, "<="))
                return cmp <= 0;
        if (!strcmp(op, "="))
                return cmp == 0;
        if (!strcmp(op, ">="))
                return cmp >= 0;
        if (!strcmp(op, ">>"))
                return cmp > 0;
        return false;
}

/* ---- the universe ---- */

struct pkg {
        char *name, *version, *arch, *ma, *priority;
        char *depends, *predepends, *provides, *conflicts, *breaks;
        bool essential, installed;
        size_t source; /* index of its apt source; installed: (size_t)-1 */
        int state;     /* 0 none, 1 chosen */
};

struct universe {
        struct pkg *p;
        size_t n, cap;
        const char *arch;
        json_t *by_name;     /* name -> [index], installed and available */
        json_t *by_provides; /* provided name -> [index] */
};

static int index_add(json_t *idx, const char *name, size_t i)
{
        json_t *a = json_object_get(idx, name);

        if (!a) {
                a = json_array();
                if (!a || json_object_set_new(idx, name, a) < 0)
                        return -1;
        }
        return json_array_append_new(a, json_integer((json_int_t)i));
}

/* by_name and by_provides, once every stanza is in */
static int universe_index(struct universe *u, struct kiln_error *err)
{
        u->by_name = json_object();
        u->by_provides = json_object();
        if (!u->by_name || !u->by_provides)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        for (size_t i = 0; i < u->n; i++) {
                if (index_add(u->by_name, u->p[i].name, i) < 0)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                for (const char *s = u->p[i].provides; s && *s;) {
                        struct rel pr;
                        const char *e = rel_parse(s, &pr);
                        if (!e)
                                break;
                        if (index_add(u->by_provides, pr.name, i) < 0)
                                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        while (*e && *e != ',')
                                e++;
                        s = *e ? e + 1 : e;
                }
        }
        return 0;
}

static void universe_release(struct universe *u)
{
        json_decref(u->by_name);
        json_decref(u->by_provides);
        for (size_t i = 0; i < u->n; i++) {
                struct pkg *p = &u->p[i];
                free(p->name);
                free(p->version);
                free(p->arch);
                free(p->ma);
                free(p->priority);
                free(p->depends);
                free(p->predepends);
                free(p->provides);
                free(p->conflicts);
                free(p->breaks);
        }
        free(u->p);
}

static int add_stanzas(struct universe *u, const char *buf, size_t source, bool installed,
                       struct kiln_error *err)
{
        for (const char *p = buf; p && *p;) {
                const char *end = p;
                _cleanup_free_ char *st = NULL, *status = NULL;
                struct pkg k = {0};
                while (*end && !(end[0] == '\n' && end[1] == '\n'))
                        end++;
                st = strndup(p, (size_t)(end - p) + 1);
                p = *end ? end + 2 : NULL;
                if (!st)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                k.name = recipe_control_field(st, "Package");
                if (!k.name) {
                        continue;
                }
                status = installed ? recipe_control_field(st, "Status") : NULL;
                k.arch = recipe_control_field(st, "Architecture");
                if ((installed && (!status || !str_has_suffix(status, " installed"))) ||
                    (k.arch && strcmp(k.arch, "all") && strcmp(k.arch, u->arch))) {
                        free(k.name);
                        free(k.arch);
                        continue;
                }
                k.version = recipe_control_field(st, "Version");
                k.ma = recipe_control_field(st, "Multi-Arch");
                k.priority = recipe_control_field(st, "Priority");
                k.depends = recipe_control_field(st, "Depends");
                k.predepends = recipe_control_field(st, "Pre-Depends");
                k.provides = recipe_control_field(st, "Provides");
                k.conflicts = recipe_control_field(st, "Conflicts");
                k.breaks = recipe_control_field(st, "Breaks");
                {
                        _cleanup_free_ char *ess = recipe_control_field(st, "Essential");
                        k.essential = ess && !strcmp(ess, "yes");
                }
                k.installed = installed;
                k.source = installed ? (size_t)-1 : source;
                if (!k.version) {
                        free(k.name);
                        continue;
                }
                if (u->n == u->cap) {
                        size_t nc = u->cap ? u->cap * 2 : 1024;
                        struct pkg *np = realloc(u->p, nc * sizeof(*np));
                        if (!np)
                                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        u->p = np;
                        u->cap = nc;
                }
                u->p[u->n++] = k;
        }
        return 0;
}

/* The candidate of a real package: apt's, the highest version (every
 * source at the same pin priority); the first source wins a tie. */
static struct pkg *candidate(struct universe *u, const char *name)
{
        struct pkg *best = NULL;
        const json_t *v;
        size_t k;

        json_array_foreach(json_object_get(u->by_name, name), k, v)
        {
                struct pkg *p = &u->p[json_integer_value(v)];
                if (p->installed)
                        continue;
                if (!best || recipe_deb_version_cmp(p->version, best->version) > 0)
                        best = p;
        }
        return best;
}

static struct pkg *installed(struct universe *u, const char *name)
{
        const json_t *v;
        size_t k;

        json_array_foreach(
            json_object_get(u->by_name, name), k,
            v) if (u->p[json_integer_value(v)].installed) return &u->p[json_integer_value(v)];
        return NULL;
}

/* The packages that may satisfy a relation on name: by name, by Provides. */
#define each_named(u, name, k, v, idx)                                                             \
        for (int idx = 0; idx < 2; idx++)                                                          \
        json_array_foreach(json_object_get(idx ? (u)->by_provides : (u)->by_name, name), k, v)

/* Whether p satisfies r: by its own name and version (":any" needs
 * Multi-Arch: allowed), or by a Provides (versioned only for a versioned
 * relation, Policy 7.5). */
static bool satisfies(const struct pkg *p, const struct rel *r)
{
        if (!strcmp(p->name, r->name)) {
                if (!strcmp(r->archq, "any") && !(p->ma && !strcmp(p->ma, "allowed")))
                        return false;
                if (*r->archq && strcmp(r->archq, "any") && strcmp(r->archq, p->arch))
                        return false;
                return op_ok(r->op, recipe_deb_version_cmp(p->version, r->version));
        }
        for (const char *s = p->provides; s && *s;) {
                struct rel pr;
                const char *e = rel_parse(s, &pr);
                if (!e)
                        break;
                if (!strcmp(pr.name, r->name) && !*r->archq) {
                        if (!*r->op)
                                return true;
                        if (!strcmp(pr.op, "=") &&
                            op_ok(r->op, recipe_deb_version_cmp(pr.version, r->version)))
                                return true;
                }
                s = *e == ',' ? e + 1 : e;
                if (*e && *e != ',')
                        break;
        }
        return false;
}

static bool present(struct universe *u, const struct pkg *p);

/* Whether the installed or chosen set holds something satisfying r. */
static bool have(struct universe *u, const struct rel *r)
{
        const json_t *v;
        size_t k;

        each_named(u, r->name, k, v, idx)
        {
                const struct pkg *p = &u->p[json_integer_value(v)];
                if (present(u, p) && satisfies(p, r))
                        return true;
        }
        return false;
}

static int prio_rank(const char *p)
{
        static const char *const order_[] = {"required", "important", "standard", "optional",
                                             "extra"};
        for (size_t i = 0; p && i < ARRAY_SIZE(order_); i++)
                if (!strcmp(p, order_[i]))
                        return (int)i;
        return (int)ARRAY_SIZE(order_);
}

/* The package apt would install for r: the real package's candidate when
 * it satisfies r, else a provider: the one of highest Priority, then the
 * first by name. */
static struct pkg *pick(struct universe *u, const struct rel *r)
{
        struct pkg *c = candidate(u, r->name), *best = NULL;

        if (c && satisfies(c, r))
                return c;
        const json_t *v;
        size_t k;

        json_array_foreach(json_object_get(u->by_provides, r->name), k, v)
        {
                struct pkg *p = &u->p[json_integer_value(v)];
                if (p->installed || strcmp(p->name, r->name) == 0 || !satisfies(p, r) ||
                    candidate(u, p->name) != p)
                        continue;
                if (!best || prio_rank(p->priority) < prio_rank(best->priority) ||
                    (prio_rank(p->priority) == prio_rank(best->priority) &&
                     strcmp(p->name, best->name) < 0))
                        best = p;
        }
        return best;
}

struct out {
        json_t *list; /* [{"name","version","source"}] in install order */
};

static int mark(struct universe *u, struct pkg *p, struct out *o, unsigned depth,
                struct kiln_error *err);

/* Every and-group of field: satisfied already, or by the first
 * alternative apt can install. */
static int deps(struct universe *u, struct pkg *p, const char *field, struct out *o, unsigned depth,
                struct kiln_error *err)
{
        for (const char *s = field; s && *s;) {
                struct rel alts[16];
                size_t n = 0;
                bool ok = false;
                const char *e = s;
                while (n < ARRAY_SIZE(alts)) {
                        e = rel_parse(e, &alts[n]);
                        if (!e)
                                return kiln_error_set(err, KILN_E_INVALID,
                                                      "package '%s' %s: bad relation '%s'", p->name,
                                                      p->version, s);
                        n++;
                        while (isspace((unsigned char)*e))
                                e++;
                        if (*e != '|')
                                break;
                        e++;
                }
                for (size_t i = 0; i < n && !ok; i++)
                        ok = have(u, &alts[i]);
                for (size_t i = 0; i < n && !ok; i++) {
                        struct pkg *c = pick(u, &alts[i]);
                        if (c) {
                                if (mark(u, c, o, depth + 1, err) < 0)
                                        return -1;
                                ok = true;
                        }
                }
                if (!ok) {
                        char want[512];
                        snprintf(want, sizeof(want), "%s%s%s%s%s%s%s", alts[0].name,
                                 *alts[0].archq ? ":" : "", alts[0].archq, *alts[0].op ? " (" : "",
                                 alts[0].op, *alts[0].op ? " " : "",
                                 *alts[0].op ? alts[0].version : "");
                        return kiln_error_set(err, KILN_E_NOT_FOUND,
                                              "package '%s' %s depends on '%s%s', which no index "
                                              "or installed package provides",
                                              p->name, p->version, want, *alts[0].op ? ")" : "");
                }
                while (*e && *e != ',')
                        e++;
                s = *e ? e + 1 : e;
        }
        return 0;
}

static int mark(struct universe *u, struct pkg *p, struct out *o, unsigned depth,
                struct kiln_error *err)
{
        if (p->state)
                return 0;
        if (depth > 500)
                return kiln_error_set(err, KILN_E_LIMIT, "dependencies of '%s' nest too deep",
                                      p->name);
        p->state = 1;
        /* Pre-Depends first: they are unpacked and configured before */
        if (deps(u, p, p->predepends, o, depth, err) < 0 ||
            deps(u, p, p->depends, o, depth, err) < 0)
                return -1;
        if (json_array_append_new(o->list, json_pack("{s:s, s:s, s:o, s:I}", "name", p->name,
                                                     "version", p->version, "spec",
                                                     json_sprintf("%s=%s", p->name, p->version),
                                                     "source", (json_int_t)p->source)) < 0)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        return 0;
}

/* An installed package the layer upgrades is gone once the layer is on. */
static bool replaced(struct universe *u, const struct pkg *q)
{
        struct pkg *c = q->installed ? candidate(u, q->name) : NULL;

        return c && c->state && strcmp(c->version, q->version);
}

static bool present(struct universe *u, const struct pkg *p)
{
        return p->state || (p->installed && !replaced(u, p));
}

/* Whether a relation of field of p hits another package of the image that
 * new says may be checked (Policy 7.4: Conflicts, Breaks). */
static int clash(struct universe *u, const struct pkg *p, const char *field, bool only_new,
                 const char *what, struct kiln_error *err)
{
        for (const char *s = field; s && *s;) {
                struct rel r;
                const char *e = rel_parse(s, &r);
                if (!e)
                        return 0;
                const json_t *v;
                size_t k;
                each_named(u, r.name, k, v, idx)
                {
                        const struct pkg *q = &u->p[json_integer_value(v)];
                        if (q == p || !strcmp(q->name, p->name) || !present(u, q) ||
                            (only_new && !q->state) || !satisfies(q, &r))
                                continue;
                        return kiln_error_set(err, KILN_E_INVALID, "package '%s' %s %s '%s' %s%s",
                                              p->name, p->version, what, q->name, q->version,
                                              q->installed ? ", which the image has" : "");
                }
                while (*e && *e != ',')
                        e++;
                s = *e ? e + 1 : e;
        }
        return 0;
}

static int check_conflicts(struct universe *u, struct kiln_error *err)
{
        for (size_t i = 0; i < u->n; i++) {
                const struct pkg *p = &u->p[i];
                /* what the layer adds against everything; the image's own
                 * relations against what the layer adds */
                bool only_new = !p->state;
                if (!present(u, p))
                        continue;
                if (clash(u, p, p->conflicts, only_new, "conflicts with", err) < 0 ||
                    clash(u, p, p->breaks, only_new, "breaks", err) < 0)
                        return -1;
        }
        return 0;
}

static int request(struct universe *u, const char *spec, struct out *o, struct kiln_error *err)
{
        struct rel r;
        const char *e = rel_parse(spec, &r);
        struct pkg *have_it, *c;

        while (e && isspace((unsigned char)*e))
                e++;
        if (!e || *e)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid package '%s': expected NAME or NAME (OP VERSION)",
                                      spec);
        c = pick(u, &r);
        if (!c) {
                /* a request may name an older version ("libfoo (<< 2)", as
                 * apt-get install libfoo=1.5 does); a dependency takes the
                 * candidate only, as apt does */
                const json_t *v;
                size_t k;
                json_array_foreach(json_object_get(u->by_name, r.name), k, v)
                {
                        struct pkg *p = &u->p[json_integer_value(v)];
                        if (!p->installed && satisfies(p, &r) &&
                            (!c || recipe_deb_version_cmp(p->version, c->version) > 0))
                                c = p;
                }
        }
        have_it = installed(u, r.name);
        /* apt-get install: an installed package stays unless the candidate is newer */
        if (have_it && satisfies(have_it, &r) &&
            (!c || strcmp(c->name, r.name) ||
             recipe_deb_version_cmp(c->version, have_it->version) <= 0))
                return 0;
        if (!c && candidate(u, r.name))
                return kiln_error_set(err, KILN_E_NOT_FOUND,
                                      "no version of '%s' for '%s' in the indexes satisfies '%s'",
                                      r.name, u->arch, spec);
        if (!c)
                return kiln_error_set(err, KILN_E_NOT_FOUND,
                                      "no package '%s' for '%s' in the index of any apt source",
                                      r.name, u->arch);
        return mark(u, c, o, 0, err);
}

int recipe_apt_resolve(const char *const *indexes, size_t n, const char *status, const char *arch,
                       const char *const *requests, size_t n_req, json_t **ret,
                       struct kiln_error *err)
{
        struct universe u = {.arch = arch};
        struct out o = {.list = json_array()};
        int rc = -1;

        if (!o.list) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto out;
        }
        for (size_t i = 0; i < n; i++)
                if (add_stanzas(&u, indexes[i], i, false, err) < 0)
                        goto out;
        if ((status && add_stanzas(&u, status, 0, true, err) < 0) || universe_index(&u, err) < 0)
                goto out;
        for (size_t i = 0; i < n_req; i++)
                if (request(&u, requests[i], &o, err) < 0)
                        goto out;
        if (check_conflicts(&u, err) < 0)
                goto out;
        *ret = o.list;
        o.list = NULL;
        rc = 0;
out:
        json_decref(o.list);
        universe_release(&u);
        return rc;
}
