/* The parser of kiln's command line, built on the option table of
 * cli/verbs.c (see options.h). */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "options.h"
#include "progress.h"
#include "util.h"
#include "writer.h"

static void on_notify(void *ctx, enum reg_event ev, const char *msg)
{
        char line[2048];

        (void)ctx;
        if (ev == REG_EVENT_WARNING) {
                cli_warn("%s", msg);
        } else if (ev == REG_EVENT_MOUNTED) {
                if (cli_progress_shown())
                        cli_progress_message(msg);
        } else if (ev == REG_EVENT_DEBUG) {
                snprintf(line, sizeof(line), "kiln: debug: %s", msg);
                cli_progress_message(line);
        } else {
                snprintf(line, sizeof(line), "kiln: retry: %s", msg);
                cli_progress_message(line);
        }
}

void cli_args_init(struct cli_args *a)
{
        const char *e, *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
        int n = -1;

        memset(a, 0, sizeof(*a));
        reg_options_init(&a->reg);
        a->reg.notify = on_notify;
        /* KILN_VERBOSE: every response, with its HTTP version, on stderr (-v) */
        e = getenv("KILN_VERBOSE");
        a->verbose = e && *e;
        /* for scripts and tests: KILN_RETRY_BASE_MS shortens the backoff */
        e = getenv("KILN_RETRY_BASE_MS");
        if (e && *e)
                a->reg.retry_base_ms = strtol(e, NULL, 10);
        e = getenv("KILN_LOW_SPEED_TIME");
        if (e && *e)
                a->reg.low_speed_time_s = strtol(e, NULL, 10);
        /* the floor of every request's deadline, in s (0: no deadline) */
        e = getenv("KILN_REQUEST_DEADLINE");
        if (e && *e)
                a->reg.deadline_floor_s = strtol(e, NULL, 10);
        /* Docker Hub manifests by digest, next to the layer cache */
        if (xdg && xdg[0] == '/')
                n = snprintf(a->manifest_cache_dir, sizeof(a->manifest_cache_dir),
                             "%s/kiln/manifests", xdg);
        else if (home && home[0] == '/')
                n = snprintf(a->manifest_cache_dir, sizeof(a->manifest_cache_dir),
                             "%s/.cache/kiln/manifests", home);
        if (n > 0 && (size_t)n < sizeof(a->manifest_cache_dir))
                a->reg.manifest_cache_dir = a->manifest_cache_dir;
        /* one record of where blobs were seen for every store of the run, so
         * that a copy between repositories of one registry mounts.  Out of
         * memory: each store keeps its own */
        a->reg.known = reg_known_new(NULL);
        pthread_mutex_init(&a->conf_lock, NULL);
}

void cli_args_release(struct cli_args *a)
{
        if (!a)
                return;
        free(a->values);
        free(a->argv);
        free(a->platform_buf);
        if (a->conf_tried && a->conf_rc == 0)
                reg_conf_release(&a->conf);
        reg_known_free(a->reg.known);
        pthread_mutex_destroy(&a->conf_lock);
        a->values = NULL;
        a->argv = NULL;
        a->platform_buf = NULL;
        a->reg.known = NULL;
}

int cli_reg_conf(struct cli_args *a, struct kiln_error *err)
{
        int rc;

        pthread_mutex_lock(&a->conf_lock);
        if (!a->conf_tried) {
                a->conf_tried = true;
                a->conf_rc = reg_conf_load(&a->conf, &a->conf_err);
                if (a->conf_rc == 0)
                        a->reg.conf = &a->conf;
                if (a->conf_rc == 0 && a->conf.search_ignored && a->reg.debug)
                        cli_progress_message("kiln: note: registries.conf sets "
                                             "unqualified-search-registries, which kiln ignores: "
                                             "a name without a registry is docker.io's");
        }
        rc = a->conf_rc;
        if (rc < 0 && err)
                *err = a->conf_err;
        pthread_mutex_unlock(&a->conf_lock);
        return rc;
}

const struct cli_verb *cli_find_verb(const char *name)
{
        for (const struct cli_verb *v = cli_verbs; v->name; v++)
                if (!strcmp(v->name, name))
                        return v;
        return NULL;
}

static const struct cli_option *find_in(const struct cli_group *g, const char *name, size_t len,
                                        char letter)
{
        for (const struct cli_option *o = g->opts; o->name; o++) {
                if (name && strlen(o->name) == len && !strncmp(o->name, name, len))
                        return o;
                if (!name && letter && o->letter == letter)
                        return o;
        }
        return NULL;
}

/* An option of v, or of the global groups only when v is NULL. */
static const struct cli_option *find_option(const struct cli_verb *v, const char *name, size_t len,
                                            char letter)
{
        const struct cli_option *o;

        for (size_t i = 0; v && i < CLI_MAX_GROUPS && v->groups[i]; i++)
                if ((o = find_in(v->groups[i], name, len, letter)))
                        return o;
        for (size_t i = 0; cli_global_groups[i]; i++)
                if ((o = find_in(cli_global_groups[i], name, len, letter)))
                        return o;
        return NULL;
}

bool cli_option_is_global(const struct cli_option *o)
{
        for (size_t i = 0; cli_global_groups[i]; i++)
                for (const struct cli_option *p = cli_global_groups[i]->opts; p->name; p++)
                        if (p == o)
                                return true;
        return false;
}

const struct cli_option *cli_verb_option(const struct cli_verb *v, const char *name, char letter)
{
        return find_option(v, name, name ? strlen(name) : 0, letter);
}

/* "--NAME" given to v (NULL: before the verb) and not one of its options:
 * say where it belongs when one verb has it. */
static int unknown_option(const struct cli_verb *v, const char *name, size_t len,
                          struct kiln_error *err)
{
        const struct cli_verb *owner = NULL;
        unsigned owners = 0;

        for (const struct cli_verb *w = cli_verbs; w->name; w++)
                if (w != v && find_option(w, name, len, 0)) {
                        owner = w;
                        owners++;
                }
        if (!v && owners)
                return kiln_error_set(err, KILN_E_USAGE,
                                      "--%.*s is not a global option: put it after the verb",
                                      (int)len, name);
        if (owners == 1)
                return kiln_error_set(err, KILN_E_USAGE,
                                      "--%.*s is an option of kiln %s, not of kiln %s", (int)len,
                                      name, owner->name, v->name);
        return kiln_error_set(err, KILN_E_USAGE, "unknown option '--%.*s'", (int)len, name);
}

/* 1024 -> "1k", 1 << 40 -> "1T" */
static void format_bytes(long long v, char *buf, size_t len)
{
        static const char units[] = "kMGT";
        int u = -1;

        while (u < 3 && v && v % 1024 == 0) {
                v /= 1024;
                u++;
        }
        if (u < 0)
                snprintf(buf, len, "%lld", v);
        else
                snprintf(buf, len, "%lld%c", v, units[u]);
}

/* What an option takes, for its error message: "a number from 0 to 22". */
static void describe(const struct cli_option *o, char *buf, size_t len)
{
        char lo[32], hi[32];
        size_t n = 0;

        switch (o->type) {
        case CLI_INT:
                snprintf(buf, len, "a number from %lld to %lld", o->min, o->max);
                return;
        case CLI_SIZE:
                format_bytes(o->min, lo, sizeof(lo));
                format_bytes(o->max, hi, sizeof(hi));
                snprintf(buf, len, "a size from %s to %s (N, Nk, NM or NG)", lo, hi);
                return;
        case CLI_AGE:
                snprintf(buf, len, "an age such as 30d, 12h, 45m or 90s");
                return;
        case CLI_CHOICE:
                buf[0] = '\0';
                for (size_t i = 0; o->words[i]; i++) {
                        const char *sep = !i ? "" : o->words[i + 1] ? ", " : " or ";
                        int k = snprintf(buf + n, len - n, "%s%s", sep, o->words[i]);
                        if (k < 0 || (size_t)k >= len - n)
                                break;
                        n += (size_t)k;
                }
                return;
        default:
                snprintf(buf, len, "%s", o->arg ? o->arg : "a value");
        }
}

/* Digits then an optional suffix; a suffix's multiplier from mult (NULL:
 * none allowed).  -1 when malformed or out of range. */
static int parse_number(const char *s, long long (*mult)(const char *, bool *), long long *ret)
{
        char *end;
        long long v, m = 1;
        bool ok = true;

        if (!isdigit((unsigned char)s[0]))
                return -1;
        errno = 0;
        v = strtoll(s, &end, 10);
        if (errno)
                return -1;
        if (*end) {
                if (!mult)
                        return -1;
                m = mult(end, &ok);
                if (!ok)
                        return -1;
        }
        if (m > 1 && v > LLONG_MAX / m)
                return -1;
        *ret = v * m;
        return 0;
}

/* k, M, G, T (1024-based, either case), then nothing, "B" or "iB" */
static long long size_mult(const char *s, bool *ok)
{
        const char *units = "kmgt";
        const char *u = strchr(units, tolower((unsigned char)s[0]));
        long long m = 1;

        if (!u || !s[0]) {
                *ok = false;
                return 1;
        }
        for (const char *p = units; p <= u; p++)
                m *= 1024;
        *ok = !s[1] || !strcmp(s + 1, "B") || !strcmp(s + 1, "iB");
        return m;
}

static long long age_mult(const char *s, bool *ok)
{
        *ok = s[1] == '\0';
        switch (s[0]) {
        case 's':
                return 1;
        case 'm':
                return 60;
        case 'h':
                return 3600;
        case 'd':
                return 86400;
        }
        *ok = false;
        return 1;
}

static int add_value(struct cli_args *a, const struct cli_option *o, char *arg,
                     struct kiln_error *err)
{
        struct cli_value *v = &a->values[a->n_values];
        char what[256];
        bool ok = true;

        v->opt = o;
        v->arg = arg;
        v->num = 0;
        switch (o->type) {
        case CLI_INT:
                ok = parse_number(arg, NULL, &v->num) == 0 && v->num >= o->min && v->num <= o->max;
                break;
        case CLI_SIZE:
                ok = parse_number(arg, size_mult, &v->num) == 0 && v->num >= o->min &&
                     v->num <= o->max;
                break;
        case CLI_AGE:
                ok = parse_number(arg, age_mult, &v->num) == 0;
                break;
        case CLI_CHOICE:
                ok = false;
                for (size_t i = 0; o->words[i] && !ok; i++)
                        ok = !strcmp(o->words[i], arg);
                break;
        default:
                break;
        }
        if (!ok) {
                describe(o, what, sizeof(what));
                return kiln_error_set(err, KILN_E_USAGE, "--%s takes %s, not '%s'", o->name, what,
                                      arg);
        }
        a->n_values++;
        if (o->key == CLI_K_HELP)
                a->help = true;
        else if (o->key == CLI_K_VERBOSE)
                a->verbose = true;
        else if (o->key == CLI_K_QUIET)
                a->quiet = true;
        return 0;
}

/* argv[*i] starts with '-' and is not "-" or "--": one long option, or one
 * or more short ones; the argument is the rest of the word or the next
 * word, which *i then moves past. */
static int take_option(struct cli_args *a, const struct cli_verb *v, int argc, char **argv, int *i,
                       struct kiln_error *err)
{
        char *s = argv[*i];
        const struct cli_option *o;

        if (s[1] == '-') {
                char *name = s + 2, *eq = strchr(name, '=');
                size_t len = eq ? (size_t)(eq - name) : strlen(name);

                o = find_option(v, name, len, 0);
                if (!o)
                        return unknown_option(v, name, len, err);
                if (o->type == CLI_FLAG && eq)
                        return kiln_error_set(err, KILN_E_USAGE, "--%s takes no value", o->name);
                if (o->type == CLI_FLAG)
                        return add_value(a, o, NULL, err);
                if (eq)
                        return add_value(a, o, eq + 1, err);
                if (*i + 1 >= argc)
                        return kiln_error_set(err, KILN_E_USAGE, "--%s needs an argument (%s)",
                                              o->name, o->arg ? o->arg : "a value");
                return add_value(a, o, argv[++*i], err);
        }
        for (char *p = s + 1; *p; p++) {
                o = find_option(v, NULL, 0, *p);
                if (!o && !v)
                        return kiln_error_set(
                            err, KILN_E_USAGE,
                            "unknown option '-%c' (verb options go after the verb)", *p);
                if (!o)
                        return kiln_error_set(err, KILN_E_USAGE, "unknown option '-%c'", *p);
                if (o->type == CLI_FLAG) {
                        if (add_value(a, o, NULL, err) < 0)
                                return -1;
                        continue;
                }
                if (p[1])
                        return add_value(a, o, p + 1, err);
                if (*i + 1 >= argc)
                        return kiln_error_set(err, KILN_E_USAGE, "-%c needs an argument (%s)", *p,
                                              o->arg ? o->arg : "a value");
                return add_value(a, o, argv[++*i], err);
        }
        return 0;
}

/* The registry options and --platform, applied to a->reg and a->platform. */
static int apply_shared(struct cli_args *a, struct kiln_error *err)
{
        struct reg_options *r = &a->reg;

        cli_foreach_value(a, v)
        {
                switch (v->opt->key) {
                case CLI_K_INSECURE:
                        if (r->n_insecure == REG_MAX_HOSTS)
                                return kiln_error_set(err, KILN_E_USAGE,
                                                      "more than %d --insecure-registry options",
                                                      REG_MAX_HOSTS);
                        r->insecure_hosts[r->n_insecure++] = v->arg;
                        break;
                case CLI_K_CA_FILE:
                        r->ca_file = v->arg;
                        break;
                case CLI_K_AUTHFILE:
                        r->authfile = v->arg;
                        break;
                case CLI_K_RETRY_TIMES:
                        r->retries = (unsigned)v->num;
                        break;
                case CLI_K_CHUNK_SIZE:
                        r->chunk_size = v->num;
                        break;
                case CLI_K_MIRROR:
                        if (!strchr(v->arg, '=') || v->arg[0] == '=')
                                return kiln_error_set(
                                    err, KILN_E_USAGE,
                                    "--mirror takes REGISTRY=HOST[/PREFIX], not '%s'", v->arg);
                        if (r->n_mirrors == REG_MAX_HOSTS)
                                return kiln_error_set(err, KILN_E_USAGE,
                                                      "more than %d --mirror options",
                                                      REG_MAX_HOSTS);
                        r->mirrors[r->n_mirrors++] = v->arg;
                        break;
                case CLI_K_PLATFORM:
                        free(a->platform_buf);
                        a->platform_buf = strdup(v->arg);
                        if (!a->platform_buf)
                                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        if (oci_platform_parse(a->platform_buf, &a->platform, err) < 0)
                                return -1;
                        a->has_platform = true;
                        break;
                default:
                        break;
                }
        }
        r->debug = a->verbose;
        return 0;
}

int cli_parse(struct cli_args *a, int argc, char **argv, struct kiln_error *err)
{
        bool operands_only = false;
        int i = 1;

        a->values = calloc((size_t)argc + 1, sizeof(*a->values));
        a->argv = calloc((size_t)argc + 1, sizeof(*a->argv));
        if (!a->values || !a->argv)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        /* global options, then the verb (kiln --help VERB: the verb's help) */
        for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
                if (!strcmp(argv[i], "--")) {
                        i++;
                        break;
                }
                if (take_option(a, NULL, argc, argv, &i, err) < 0)
                        return -1;
        }
        if (i < argc) {
                a->verb = cli_find_verb(argv[i]);
                if (!a->verb)
                        return kiln_error_set(err, KILN_E_USAGE,
                                              "unknown verb '%s'; run 'kiln help'", argv[i]);
                i++;
        }
        for (; i < argc && a->verb && !a->help; i++) {
                char *s = argv[i];
                if (operands_only || s[0] != '-' || !s[1]) {
                        a->argv[a->argc++] = s;
                } else if (!strcmp(s, "--")) {
                        operands_only = true;
                } else if (take_option(a, a->verb, argc, argv, &i, err) < 0) {
                        return -1;
                }
        }
        return apply_shared(a, err);
}

const char *cli_arg(const struct cli_args *a, int key)
{
        const char *s = NULL;

        cli_foreach_value(a, v) if (v->opt->key == key) s = v->arg;
        return s;
}

long long cli_num(const struct cli_args *a, int key, long long dflt)
{
        cli_foreach_value(a, v) if (v->opt->key == key) dflt = v->num;
        return dflt;
}

bool cli_flag(const struct cli_args *a, int key)
{
        cli_foreach_value(a, v) if (v->opt->key == key) return true;
        return false;
}

void cli_writer_opts(const struct cli_args *a, struct layer_writer_opts *wo)
{
        const char *c = cli_arg(a, CLI_K_COMPRESSION);

        /* the choices are the parser's: this cannot fail */
        if (c)
                layer_compression_parse(c, &wo->compression, NULL);
        wo->level = (int)cli_num(a, CLI_K_LEVEL, wo->level);
}

enum cli_progress_mode cli_progress_opt(const struct cli_args *a)
{
        enum cli_progress_mode m = CLI_PROGRESS_AUTO;
        const char *s = cli_arg(a, CLI_K_PROGRESS);

        if (a->quiet)
                return CLI_PROGRESS_NONE;
        /* the choices are the parser's: this cannot fail */
        if (s)
                cli_progress_parse(s, &m);
        return m;
}
