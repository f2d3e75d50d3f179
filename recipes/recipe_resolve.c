/* The Python dependency resolver (see resolve.h).
 *
 * A depth-first search over a queue of requirements: each one either
 * meets a project already chosen (its version must satisfy it; new extras
 * add their dependencies) or chooses a version of a new project, newest
 * first, and queues that version's dependencies.  A requirement the chosen
 * version does not satisfy, or a project without a version left, undoes
 * the latest choice and tries the next version there (chronological
 * backtracking).  The queue, the choices and the extras are stacks that a
 * backtrack cuts back to where they were. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resolve.h"
#include "util.h"

struct cand {
        struct recipe_index_file *f; /* borrowed from the project's list */
        bool loaded, usable;
        struct recipe_pep508 *deps;
        size_t n_deps;
};

struct project {
        char *name;
        const char *index; /* NULL: in no index */
        struct recipe_index_file *files;
        struct cand *c;
        size_t n;
        bool has_final;
};

struct rreq {
        const struct recipe_pep508 *r;
        long from; /* the choice that asked for it; -1: the recipe */
};

struct pin {
        size_t proj, cand;
};

struct pextra {
        size_t pin;
        const char *extra;
};

struct solver {
        const struct recipe_resolve_opts *o;
        struct recipe_marker_env env;
        struct recipe_marker_bufs bufs;
        struct recipe_version python;
        struct project *proj;
        size_t n_proj;
        struct rreq *reqs;
        size_t n_reqs, cap_reqs;
        struct pin *pins;
        size_t n_pins, cap_pins;
        struct pextra *extras;
        size_t n_extras, cap_extras;
        unsigned long steps;
        char conflict[900];
        size_t conflict_depth;
        enum kiln_errc conflict_code;
        struct kiln_error *err;
};

#define GROW(arr, n, cap, err)                                                                     \
        ((n) < (cap) ? 0                                                                           \
                     : grow((void **)&(arr), &(cap), sizeof(*(arr)), (err)))

static int grow(void **arr, size_t *cap, size_t size, struct kiln_error *err)
{
        size_t nc = *cap ? *cap * 2 : 16;
        void *na = realloc(*arr, nc * size);

        if (!na)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        *arr = na;
        *cap = nc;
        return 0;
}

void recipe_marker_env_for(const struct recipe_python_target *t, struct recipe_marker_env *ret,
                           struct recipe_marker_bufs *b)
{
        const char *py = t && t->python ? t->python : "cp311";
        const char *plat = t && t->platform ? t->platform : "manylinux_2_35_x86_64";
        const char *arch = plat;

        /* "cp311" -> "3.11" */
        if (strlen(py) >= 4 && isdigit((unsigned char)py[2]))
                snprintf(b->version, sizeof(b->version), "%c.%s", py[2], py + 3);
        else
                snprintf(b->version, sizeof(b->version), "3.11");
        snprintf(b->full_version, sizeof(b->full_version), "%s.0", b->version);
        /* manylinux_2_35_x86_64 -> x86_64; linux_aarch64 -> aarch64 */
        for (const char *p = plat; *p; p++)
                if (*p == '_' && (str_has_prefix(p + 1, "x86_64") || str_has_prefix(p + 1, "aarch64") ||
                                  str_has_prefix(p + 1, "i686") || str_has_prefix(p + 1, "ppc64le") ||
                                  str_has_prefix(p + 1, "s390x") || str_has_prefix(p + 1, "armv7l"))) {
                        arch = p + 1;
                        break;
                }
        snprintf(b->machine, sizeof(b->machine), "%s", arch);
        *ret = (struct recipe_marker_env){
                .python_version = b->version,
                .python_full_version = b->full_version,
                .os_name = "posix",
                .sys_platform = "linux",
                .platform_system = "Linux",
                .platform_machine = b->machine,
                .platform_release = "",
                .platform_version = "",
                .implementation_name = "cpython",
                .platform_python_implementation = "CPython",
        };
}

/* ---- core metadata ---- */

static int add_dep(struct recipe_pep508 **deps, size_t *n, const char *line, const char *what,
                   struct kiln_error *err)
{
        struct recipe_pep508 *nd = realloc(*deps, (*n + 1) * sizeof(*nd));

        if (!nd)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        *deps = nd;
        if (recipe_pep508_parse(line, &nd[*n], err) < 0) {
                kiln_error_prefix(err, "metadata of '%s'", what);
                return -1;
        }
        (*n)++;
        return 0;
}

int recipe_metadata_parse(const char *buf, size_t len, const char *what,
                          struct recipe_pep508 **ret_deps, size_t *ret_n,
                          char **ret_requires_python, struct kiln_error *err)
{
        struct recipe_pep508 *deps = NULL;
        size_t n = 0;
        char *rp = NULL;
        const char *p = buf, *end = buf + len;

        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t)(end - p));
                size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);
                _cleanup_free_ char *line = NULL;

                if (ll && p[ll - 1] == '\r')
                        ll--;
                if (ll == 0)
                        break; /* the body (the description) starts here */
                line = strndup(p, ll);
                if (!line)
                        goto nomem;
                /* RFC 822 continuation lines belong to the previous header */
                while (nl && nl + 1 < end && (nl[1] == ' ' || nl[1] == '\t')) {
                        const char *nx = memchr(nl + 1, '\n', (size_t)(end - nl - 1));
                        size_t cl = nx ? (size_t)(nx - nl - 1) : (size_t)(end - nl - 1);
                        char *joined = kiln_strdupf("%s %.*s", line, (int)cl, nl + 1);
                        if (!joined)
                                goto nomem;
                        free(line);
                        line = joined;
                        nl = nx;
                }
                p = nl ? nl + 1 : end;
                if (!strncasecmp(line, "Requires-Dist:", 14)) {
                        if (add_dep(&deps, &n, line + 14, what, err) < 0)
                                goto fail;
                } else if (!strncasecmp(line, "Requires-Python:", 16) && !rp) {
                        const char *v = line + 16;
                        while (isspace((unsigned char)*v))
                                v++;
                        rp = strdup(v);
                        if (!rp)
                                goto nomem;
                }
        }
        *ret_deps = deps;
        *ret_n = n;
        *ret_requires_python = rp;
        return 0;
nomem:
        kiln_error_set(err, KILN_E_NOMEM, "out of memory");
fail:
        for (size_t i = 0; i < n; i++)
                recipe_pep508_release(&deps[i]);
        free(deps);
        free(rp);
        return -1;
}

/* ---- projects and candidates ---- */

static bool python_ok(const struct solver *s, const char *requires_python)
{
        struct recipe_specset rp;
        struct kiln_error ignore = KILN_ERROR_INIT;
        bool ok;

        if (!requires_python)
                return true;
        /* pip ignores a Requires-Python it cannot read */
        if (recipe_specset_parse(requires_python, &rp, &ignore) < 0)
                return true;
        ok = recipe_specset_contains(&rp, &s->python, true);
        recipe_specset_release(&rp);
        return ok;
}

static long find_project(const struct solver *s, const char *name)
{
        for (size_t i = 0; i < s->n_proj; i++)
                if (!strcmp(s->proj[i].name, name))
                        return (long)i;
        return -1;
}

/* uv's first-index rule: the first index with a page for name owns it */
static int lookup(struct solver *s, struct project *pr)
{
        for (size_t i = 0; i < s->o->n_indexes; i++) {
                _cleanup_free_ char *html = NULL, *base = NULL;
                bool found = false;
                size_t len;

                if (s->o->page(s->o->ctx, s->o->indexes[i], pr->name, &found, &html, &len, &base,
                               s->err) < 0)
                        return -1;
                if (!found)
                        continue;
                pr->index = s->o->indexes[i];
                if (recipe_simple_index_list(html, len, base, pr->name, s->o->target, &pr->files,
                                             &pr->n, s->err) < 0)
                        return -1;
                pr->c = calloc(pr->n ? pr->n : 1, sizeof(*pr->c));
                if (!pr->c)
                        return kiln_error_set(s->err, KILN_E_NOMEM, "out of memory");
                for (size_t k = 0; k < pr->n; k++) {
                        pr->c[k].f = &pr->files[k];
                        if (!recipe_version_is_pre(&pr->files[k].v))
                                pr->has_final = true;
                }
                return 0;
        }
        return 0;
}

static long project(struct solver *s, const char *name)
{
        long i = find_project(s, name);
        struct project *np;

        if (i >= 0)
                return i;
        np = realloc(s->proj, (s->n_proj + 1) * sizeof(*np));
        if (!np)
                return kiln_error_set(s->err, KILN_E_NOMEM, "out of memory");
        s->proj = np;
        memset(&np[s->n_proj], 0, sizeof(*np));
        np[s->n_proj].name = strdup(name);
        if (!np[s->n_proj].name)
                return kiln_error_set(s->err, KILN_E_NOMEM, "out of memory");
        s->n_proj++;
        if (lookup(s, &s->proj[s->n_proj - 1]) < 0)
                return -1;
        return (long)s->n_proj - 1;
}

static int load(struct solver *s, struct cand *c)
{
        _cleanup_free_ char *buf = NULL, *rp = NULL;
        size_t len;

        if (c->loaded)
                return 0;
        if (s->o->metadata(s->o->ctx, c->f, &buf, &len, s->err) < 0 ||
            recipe_metadata_parse(buf, len, c->f->url, &c->deps, &c->n_deps, &rp, s->err) < 0)
                return -1;
        c->loaded = true;
        c->usable = python_ok(s, rp);
        return 0;
}

/* ---- the search ---- */

static long find_pin(const struct solver *s, const char *name)
{
        for (size_t i = 0; i < s->n_pins; i++)
                if (!strcmp(s->proj[s->pins[i].proj].name, name))
                        return (long)i;
        return -1;
}

static bool installed(const struct solver *s, const char *name)
{
        for (size_t i = 0; i < s->o->n_installed; i++)
                if (!strcmp(s->o->installed[i], name))
                        return true;
        return false;
}

static const struct cand *pin_cand(const struct solver *s, size_t pin)
{
        return &s->proj[s->pins[pin].proj].c[s->pins[pin].cand];
}

/* "'c>=2' (from a 1.0)" */
static int describe(const struct solver *s, const struct rreq *q, char *out, size_t n)
{
        char spec[256];

        recipe_specset_format(&q->r->spec, spec, sizeof(spec));
        if (q->from < 0)
                return snprintf(out, n, "'%s%s' (from the recipe)", q->r->name, spec);
        return snprintf(out, n, "'%s%s' (from %s %s)", q->r->name, spec,
                        s->proj[s->pins[q->from].proj].name,
                        pin_cand(s, (size_t)q->from)->f->version);
}

/* "WHY 'c': 'c>=2' (from a 1.0), 'c<2' (from b 1.0)" for every queued
 * requirement on name; only (pin, k) when only is set */
static void record_conflict(struct solver *s, const char *name, const char *why,
                            const struct rreq *only, enum kiln_errc code)
{
        size_t k;

        if (s->n_pins < s->conflict_depth)
                return;
        s->conflict_depth = s->n_pins;
        s->conflict_code = code;
        k = (size_t)snprintf(s->conflict, sizeof(s->conflict), "%s '%s': ", why, name);
        if (only && k < sizeof(s->conflict)) {
                describe(s, only, s->conflict + k, sizeof(s->conflict) - k);
                return;
        }
        for (size_t i = 0, m = 0; i < s->n_reqs && k < sizeof(s->conflict); i++) {
                const struct rreq *q = &s->reqs[i];
                int w;

                if (strcmp(q->r->name, name))
                        continue;
                if (m && k + 2 < sizeof(s->conflict)) {
                        memcpy(s->conflict + k, ", ", 3);
                        k += 2;
                }
                w = describe(s, q, s->conflict + k, sizeof(s->conflict) - k);
                m++;
                if (w > 0)
                        k += (size_t)w;
        }
}

static int push_req(struct solver *s, const struct recipe_pep508 *r, long from)
{
        if (GROW(s->reqs, s->n_reqs, s->cap_reqs, s->err) < 0)
                return -1;
        s->reqs[s->n_reqs++] = (struct rreq){r, from};
        return 0;
}

static bool has_extra(const struct solver *s, size_t pin, const char *extra)
{
        for (size_t i = 0; i < s->n_extras; i++)
                if (s->extras[i].pin == pin && !strcmp(s->extras[i].extra, extra))
                        return true;
        return false;
}

/* Queues the dependencies of pin that apply with extra (NULL: the base). */
static int push_deps(struct solver *s, size_t pin, const char *extra)
{
        const struct cand *c = pin_cand(s, pin);

        for (size_t i = 0; i < c->n_deps; i++) {
                bool base = false, with = false;
                if (recipe_marker_eval_req(&c->deps[i], &s->env, NULL, &base, s->err) < 0)
                        return -1;
                if (extra && recipe_marker_eval_req(&c->deps[i], &s->env, extra, &with, s->err) < 0)
                        return -1;
                if (extra ? (with && !base) : base)
                        if (push_req(s, &c->deps[i], (long)pin) < 0)
                                return -1;
        }
        return 0;
}

static int add_extras(struct solver *s, size_t pin, const struct recipe_pep508 *r)
{
        for (size_t i = 0; i < r->n_extras; i++) {
                if (has_extra(s, pin, r->extras[i]))
                        continue;
                if (GROW(s->extras, s->n_extras, s->cap_extras, s->err) < 0)
                        return -1;
                s->extras[s->n_extras++] = (struct pextra){pin, r->extras[i]};
                if (push_deps(s, pin, r->extras[i]) < 0)
                        return -1;
        }
        return 0;
}

/* Every queued specifier on name, for pip's merged SpecifierSet. */
static int merged_spec(struct solver *s, const char *name, struct recipe_specset *ret)
{
        struct recipe_specset m = {0};

        for (size_t i = 0; i < s->n_reqs; i++)
                if (!strcmp(s->reqs[i].r->name, name) &&
                    recipe_specset_merge(&m, &s->reqs[i].r->spec, s->err) < 0) {
                        recipe_specset_release(&m);
                        return -1;
                }
        *ret = m;
        return 0;
}

static bool eligible(const struct solver *s, const struct project *pr, const struct cand *c,
                     const struct recipe_specset *m)
{
        /* pip filters with the merged set: pre-releases when a specifier
         * names one, or when nothing is asked and only pre-releases exist */
        bool pre = s->o->pre || recipe_specset_allows_pre(m) || (m->n == 0 && !pr->has_final);

        if (!recipe_specset_contains(m, &c->f->v, pre))
                return false;
        if (c->loaded && !c->usable)
                return false;
        return python_ok(s, c->f->requires_python);
}

static int solve(struct solver *s, size_t next);

/* Nothing left for pr: a requirement no wheel meets on its own, or
 * requirements that each could be met but not all at once. */
static void no_version(struct solver *s, const struct project *pr)
{
        char why[300];

        if (!pr->index) {
                size_t k = (size_t)snprintf(why, sizeof(why), "no project page in");
                for (size_t i = 0; i < s->o->n_indexes && k < sizeof(why); i++)
                        k += (size_t)snprintf(why + k, sizeof(why) - k, "%s '%s'", i ? "," : "",
                                              s->o->indexes[i]);
                if (k < sizeof(why))
                        snprintf(why + k, sizeof(why) - k, " for");
                record_conflict(s, pr->name, why, NULL, KILN_E_NOT_FOUND);
                return;
        }
        for (size_t i = 0; i < s->n_reqs; i++) {
                bool any = false;
                if (strcmp(s->reqs[i].r->name, pr->name))
                        continue;
                for (size_t k = 0; !any && k < pr->n; k++)
                        any = eligible(s, pr, &pr->c[k], &s->reqs[i].r->spec);
                if (any)
                        continue;
                snprintf(why, sizeof(why), "no wheel matches %s / %s in '%s' for",
                         s->o->target && s->o->target->python ? s->o->target->python : "cp311",
                         s->o->target && s->o->target->platform ? s->o->target->platform
                                                                : "manylinux_2_35_x86_64",
                         pr->index);
                record_conflict(s, pr->name, why, &s->reqs[i], KILN_E_NOT_FOUND);
                return;
        }
        record_conflict(s, pr->name, "conflicting requirements on", NULL, KILN_E_INVALID);
}

/* Chooses a version of the project req asks for; 1: solved, 0: no
 * version works, -1: error. */
static int choose(struct solver *s, size_t next)
{
        const struct recipe_pep508 *r = s->reqs[next].r;
        struct recipe_specset m = {0};
        long pi = project(s, r->name);
        bool tried = false;
        int rc = 0;

        if (pi < 0)
                return -1;
        if (merged_spec(s, r->name, &m) < 0)
                return -1;
        for (size_t k = 0; k < s->proj[pi].n; k++) {
                struct project *pr = &s->proj[pi];
                struct cand *c = &pr->c[k];
                size_t save_reqs = s->n_reqs, save_pins = s->n_pins, save_extras = s->n_extras;

                if (!eligible(s, pr, c, &m))
                        continue;
                if (++s->steps > RECIPE_RESOLVE_STEPS_MAX) {
                        rc = kiln_error_set(s->err, KILN_E_LIMIT,
                                            "cannot resolve '%s': gave up after %d versions tried",
                                            r->name, RECIPE_RESOLVE_STEPS_MAX);
                        break;
                }
                if ((rc = load(s, c)) < 0)
                        break;
                if (!c->usable)
                        continue;
                tried = true;
                if ((rc = GROW(s->pins, s->n_pins, s->cap_pins, s->err)) < 0)
                        break;
                s->pins[s->n_pins++] = (struct pin){(size_t)pi, k};
                if ((rc = push_deps(s, s->n_pins - 1, NULL)) < 0 ||
                    (rc = add_extras(s, s->n_pins - 1, r)) < 0)
                        break;
                rc = solve(s, next + 1);
                if (rc != 0)
                        break;
                s->n_reqs = save_reqs;
                s->n_pins = save_pins;
                s->n_extras = save_extras;
        }
        if (rc == 0 && !tried)
                no_version(s, &s->proj[pi]);
        recipe_specset_release(&m);
        return rc;
}

static int solve(struct solver *s, size_t next)
{
        for (; next < s->n_reqs; next++) {
                const struct recipe_pep508 *r = s->reqs[next].r;
                long pin;

                if (installed(s, r->name))
                        continue;
                pin = find_pin(s, r->name);
                if (pin < 0)
                        return choose(s, next);
                if (!recipe_specset_contains(&r->spec, &pin_cand(s, (size_t)pin)->f->v, true)) {
                        record_conflict(s, r->name, "conflicting requirements on", NULL,
                                        KILN_E_INVALID);
                        return 0;
                }
                if (add_extras(s, (size_t)pin, r) < 0)
                        return -1;
        }
        return 1;
}

/* ---- the result ---- */

void recipe_resolution_release(struct recipe_resolution *r)
{
        if (!r)
                return;
        for (size_t i = 0; i < r->n; i++) {
                struct recipe_resolved *it = &r->items[i];
                free(it->name);
                free(it->version);
                free(it->url);
                free(it->sha256);
                free(it->index);
                for (size_t k = 0; k < it->n_deps; k++)
                        free(it->deps[k]);
                free(it->deps);
                for (size_t k = 0; k < it->n_extras; k++)
                        free(it->extras[k]);
                free(it->extras);
        }
        free(r->items);
        r->items = NULL;
        r->n = 0;
}

static int add_name(char ***arr, size_t *n, const char *name)
{
        char **na;

        for (size_t i = 0; i < *n; i++)
                if (!strcmp((*arr)[i], name))
                        return 0;
        na = realloc(*arr, (*n + 1) * sizeof(*na));
        if (!na)
                return -1;
        *arr = na;
        na[*n] = strdup(name);
        if (!na[*n])
                return -1;
        (*n)++;
        return 0;
}

static int result(const struct solver *s, struct recipe_resolution *ret)
{
        struct recipe_resolution out = {0};

        out.items = calloc(s->n_pins ? s->n_pins : 1, sizeof(*out.items));
        if (!out.items)
                return kiln_error_set(s->err, KILN_E_NOMEM, "out of memory");
        out.n = s->n_pins;
        for (size_t i = 0; i < s->n_pins; i++) {
                const struct project *pr = &s->proj[s->pins[i].proj];
                const struct cand *c = pin_cand(s, i);
                struct recipe_resolved *it = &out.items[i];
                bool bad = false;

                it->name = strdup(pr->name);
                it->version = strdup(c->f->version);
                it->url = strdup(c->f->url);
                it->sha256 = c->f->sha256 ? strdup(c->f->sha256) : NULL;
                it->index = strdup(pr->index);
                bad = !it->name || !it->version || !it->url || !it->index ||
                      (c->f->sha256 && !it->sha256);
                for (size_t k = 0; !bad && k < s->n_extras; k++)
                        if (s->extras[k].pin == i)
                                bad = add_name(&it->extras, &it->n_extras, s->extras[k].extra) < 0;
                for (size_t k = 0; !bad && k < s->n_reqs; k++)
                        if (s->reqs[k].from == (long)i && find_pin(s, s->reqs[k].r->name) >= 0)
                                bad = add_name(&it->deps, &it->n_deps, s->reqs[k].r->name) < 0;
                if (bad) {
                        recipe_resolution_release(&out);
                        return kiln_error_set(s->err, KILN_E_NOMEM, "out of memory");
                }
        }
        *ret = out;
        return 0;
}

static void solver_release(struct solver *s)
{
        for (size_t i = 0; i < s->n_proj; i++) {
                struct project *pr = &s->proj[i];
                for (size_t k = 0; pr->c && k < pr->n; k++) {
                        for (size_t d = 0; d < pr->c[k].n_deps; d++)
                                recipe_pep508_release(&pr->c[k].deps[d]);
                        free(pr->c[k].deps);
                }
                free(pr->c);
                recipe_index_files_free(pr->files, pr->n);
                free(pr->name);
        }
        free(s->proj);
        free(s->reqs);
        free(s->pins);
        free(s->extras);
}

int recipe_resolve(const struct recipe_pep508 *roots, size_t n_roots,
                   const struct recipe_resolve_opts *o, struct recipe_resolution *ret,
                   struct kiln_error *err)
{
        struct solver s = {.o = o, .err = err};
        int rc = 0;

        recipe_marker_env_for(o->target, &s.env, &s.bufs);
        if (recipe_version_parse(s.bufs.full_version, &s.python, err) < 0)
                return -1;
        for (size_t i = 0; rc == 0 && i < n_roots; i++) {
                bool applies;
                rc = recipe_marker_eval_req(&roots[i], &s.env, NULL, &applies, err);
                if (rc == 0 && applies)
                        rc = push_req(&s, &roots[i], -1);
        }
        if (rc == 0)
                rc = solve(&s, 0);
        if (rc == 0)
                rc = kiln_error_set(err, s.conflict_code, "cannot resolve the requirements: %s",
                                    s.conflict);
        else if (rc > 0)
                rc = result(&s, ret);
        solver_release(&s);
        return rc < 0 ? -1 : 0;
}
