/* kiln build RECIPE: the recipe's image, built and written to a layout or
 * pushed; with --dry-run the plan, with --stage DIR each layer's staging
 * tree.  kiln lock and kiln verify build the same way. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "diff.h"
#include "fetch.h"
#include "io.h"
#include "json.h"
#include "parse.h"
#include "path.h"
#include "progress.h"
#include "pylock.h"
#include "recipe.h"
#include "recipe_image.h"
#include "stage.h"
#include "util.h"

#define DEFAULT_OUTPUT "oci:kiln-out"

static struct oci_store *open_place(void *ctx, const char *place, bool for_write,
                                    struct kiln_error *err)
{
        return cli_open_place(ctx, place, for_write, err);
}

/* Recipe inputs: --insecure-registry is for registries (docs/security.md),
 * so only loopback hosts may use plain http. */
static int fetch_input(void *ctx, const char *url, const char *dest, int64_t max,
                       struct kiln_error *err)
{
        struct reg_options o = *(const struct reg_options *)ctx;

        o.n_insecure = 0;
        if (reg_http_fetch(&o, url, dest, max, err) < 0) {
                if (err && err->code == KILN_E_NETWORK &&
                    str_has_prefix(err->msg, "refusing plain http for "))
                        kiln_error_set(err, KILN_E_NETWORK,
                                       "refusing plain http for '%s': recipe inputs need https (apt sources are checked by signature and may use http)",
                                       url);
                return -1;
        }
        return 0;
}

/* apt indexes and packages: their signature and hashes are checked before
 * use, so the transport need not be trusted and plain http is allowed. */
static int fetch_signed(void *ctx, const char *url, const char *dest, int64_t max,
                        struct kiln_error *err)
{
        struct reg_options o = *(const struct reg_options *)ctx;
        _cleanup_free_ char *host = reg_url_host(url);

        o.n_insecure = 0;
        if (host && str_has_prefix(url, "http://"))
                o.insecure_hosts[o.n_insecure++] = host;
        return reg_http_fetch(&o, url, dest, max, err);
}

static void print_finding(void *ctx, const struct layer_diff_finding *f)
{
        (void)ctx;
        printf("%s %s: %s%s%s%s%s\n", f->level, f->what, f->change, f->a || f->b ? " " : "",
               f->a ? f->a : "", f->a && f->b ? " -> " : "", f->b ? f->b : "");
}

static void on_warn(void *ctx, const char *msg)
{
        (void)ctx;
        cli_warn("%s", msg);
}

/* kiln's own lines: on a terminal the layers' rows say what "layer ..."
 * lines would */
static void on_progress(void *ctx, const char *msg)
{
        enum cli_progress_mode m = cli_progress_mode();

        (void)ctx;
        if (m == CLI_PROGRESS_PLAIN || (m == CLI_PROGRESS_TTY && strncmp(msg, "layer ", 6)))
                cli_progress_message(msg);
}

static void on_layer_state(void *ctx, const char *layer, const char *state,
                           const struct recipe_layer_report *done)
{
        char line[256], sz[32];

        (void)ctx;
        if (!done) {
                cli_progress_task(layer, state, !strcmp(state, "building"));
                return;
        }
        cli_format_size(done->bytes, sz, sizeof(sz));
        snprintf(line, sizeof(line), "layer %s: %s %s (%s, %.1fs)", layer,
                 !strcmp(state, "pulled") ? "from the cache repository" : state,
                 done->digest.str, sz, done->seconds);
        cli_progress_task_end(layer, line);
}

/* Build steps' output: streamed as "LAYER | line" unless --quiet, --json or
 * --progress none; a failed step's last lines (when they were not streamed)
 * and its log's path. */
struct step_out {
        bool stream;
};

static void on_step_line(void *ctx, const char *layer, const char *line)
{
        char buf[RECIPE_STEP_LINE_MAX + 80];

        if (cli_progress_mode() == CLI_PROGRESS_TTY) {
                cli_progress_task_line(layer, line);
        } else if (((struct step_out *)ctx)->stream) {
                snprintf(buf, sizeof(buf), "%s | %s", layer, line);
                cli_progress_message(buf);
        }
}

#define STEP_TAIL_LINES 20
#define STEP_TAIL_BYTES (64 * 1024)

static void on_step_failed(void *ctx, const char *layer, const char *log_path)
{
        FILE *f;

        if (!((struct step_out *)ctx)->stream && (f = fopen(log_path, "r"))) {
                char *buf = malloc(STEP_TAIL_BYTES + 1);
                const char *from;
                size_t n = 0;
                int lines = 0;
                if (buf && fseek(f, 0, SEEK_END) == 0) {
                        long end = ftell(f);
                        long at = end > STEP_TAIL_BYTES ? end - STEP_TAIL_BYTES : 0;
                        if (fseek(f, at, SEEK_SET) == 0)
                                n = fread(buf, 1, STEP_TAIL_BYTES, f);
                }
                if (buf) {
                        buf[n] = '\0';
                        while (n && buf[n - 1] == '\n')
                                buf[--n] = '\0';
                        from = buf + n;
                        while (from > buf && lines < STEP_TAIL_LINES)
                                if (*--from == '\n' && ++lines == STEP_TAIL_LINES)
                                        from++;
                        for (const char *l = from; *l;) {
                                size_t len = strcspn(l, "\n");
                                char one[RECIPE_STEP_LINE_MAX + 80];
                                snprintf(one, sizeof(one), "%s | %.*s", layer, (int)len, l);
                                cli_progress_message(one);
                                l += len + (l[len] == '\n');
                        }
                }
                free(buf);
                fclose(f);
        }
        {
                char one[PATH_MAX + 128];
                snprintf(one, sizeof(one), "kiln: the log of layer '%s': %s", layer, log_path);
                cli_progress_message(one);
        }
}

/* ---- kiln build --dry-run | --stage DIR: the plan and the layer front ends ---- */

/* --mirror URL-PREFIX=DIR (with --dry-run or --stage): http(s) inputs under
 * the prefix are read from a local copy of the site (an air-gapped mirror
 * carried over on a disk); a URL ending in '/' (an index page) reads
 * DIR/.../index.html. */
struct mirror {
        const char *prefix; /* prefix_len bytes, then "=DIR" */
        size_t prefix_len;
        const char *dir;
};

struct mirrors {
        struct mirror m[REG_MAX_HOSTS];
        size_t n;
};

static int copy_capped(const char *src, const char *dest, int64_t max, struct kiln_error *err)
{
        _cleanup_free_ char *tmp = kiln_strdupf("%s.tmp-XXXXXX", dest);
        char buf[65536];
        int64_t total = 0;
        ssize_t n;
        int in, out, rc = -1;

        if (!tmp)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        in = open(src, O_RDONLY | O_CLOEXEC);
        if (in < 0)
                return kiln_error_set_errno(err, errno == ENOENT ? KILN_E_NOT_FOUND : KILN_E_IO,
                                            errno, "cannot open '%s'", src);
        out = mkstemp(tmp);
        if (out < 0) {
                close(in);
                return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create '%s'", tmp);
        }
        while ((n = read(in, buf, sizeof(buf))) > 0) {
                total += n;
                if (max >= 0 && total > max) {
                        kiln_error_set(err, KILN_E_LIMIT, "'%s' is larger than %lld bytes", src,
                                       (long long)max);
                        goto out;
                }
                if (write(out, buf, (size_t)n) != n) {
                        kiln_error_set_errno(err, KILN_E_IO, errno, "cannot write '%s'", tmp);
                        goto out;
                }
        }
        if (n < 0) {
                kiln_error_set_errno(err, KILN_E_IO, errno, "cannot read '%s'", src);
                goto out;
        }
        if (fsync(out) < 0 || rename(tmp, dest) < 0) {
                kiln_error_set_errno(err, KILN_E_IO, errno, "cannot write '%s'", dest);
                goto out;
        }
        rc = 0;
out:
        close(in);
        close(out);
        if (rc < 0)
                unlink(tmp);
        return rc;
}

static int mirror_fetch(void *ctx, const char *url, const char *dest, int64_t max,
                        struct kiln_error *err)
{
        const struct mirrors *ms = ctx;

        for (size_t i = 0; i < ms->n; i++) {
                const struct mirror *m = &ms->m[i];
                const char *rest;
                _cleanup_free_ char *src = NULL;

                if (strncmp(url, m->prefix, m->prefix_len))
                        continue;
                rest = url + m->prefix_len;
                if (*rest && *rest != '/' && m->prefix[m->prefix_len - 1] != '/')
                        continue;
                src = kiln_strdupf("%s/%s%s", m->dir, rest,
                                   !*rest || rest[strlen(rest) - 1] == '/' ? "index.html" : "");
                if (!src)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                {
                        /* every '..' (a leading one too), not only "/../" */
                        _cleanup_free_ char *clean = NULL;
                        if (layer_path_clean(rest, 0, "invalid path", &clean, err) < 0) {
                                kiln_error_prefix(err, "refusing to map '%s'", url);
                                return -1;
                        }
                }
                if (copy_capped(src, dest, max, err) < 0) {
                        kiln_error_prefix(err, "fetch '%s' from mirror '%s'", url, m->dir);
                        return -1;
                }
                return 0;
        }
        return kiln_error_set(err, KILN_E_UNSUPPORTED,
                              "cannot fetch '%s': no --mirror maps it and the HTTP client is not built in yet",
                              url);
}

static int print_json(json_t *j)
{
        char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

        if (!s)
                return -1;
        printf("%s\n", s);
        free(s);
        return 0;
}

static int stage_all(const struct recipe *r, struct recipe_plan_opts *po, struct recipe_plan *plan,
                     const char *stage_dir, const char *cache_dir, struct mirrors *ms, bool json,
                     struct kiln_error *err)
{
        struct recipe_plan *final = NULL;
        char *revision = NULL;
        json_t *out = json_array();
        int rc = -1;

        if (kiln_mkdir_p(stage_dir, 0755, err) < 0)
                goto done;
        for (size_t i = 0; i < plan->n_layers; i++) {
                struct recipe_stage_opts so = {0};
                struct recipe_stage_result res = {0}, keyres = {0};
                char *dir = kiln_strdupf("%s/%02zu-%s", stage_dir, i + 1, plan->layers[i].name);

                if (!dir) {
                        kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        goto done;
                }
                so.cache_dir = cache_dir;
                if (ms->n) {
                        so.fetch = mirror_fetch;
                        so.fetch_signed = mirror_fetch;
                        so.fetch_ctx = ms;
                }
                /* what a build does first: the key, to look up the layer cache */
                if (recipe_layer_key(plan, i, &so, &keyres, err) < 0) {
                        kiln_error_prefix(err, "layer '%s'", plan->layers[i].name);
                        free(dir);
                        goto done;
                }
                if (recipe_stage_layer(plan, i, dir, &so, &res, err) < 0) {
                        kiln_error_prefix(err, "stage layer '%s'", plan->layers[i].name);
                        recipe_stage_result_release(&keyres);
                        free(dir);
                        goto done;
                }
                if (!json)
                        fprintf(stderr, "staged %s (%s)%s%s%s\n", dir,
                                recipe_layer_kind_name(plan->layers[i].kind),
                                res.revision ? " at " : "", res.revision ? res.revision : "",
                                res.cached ? ", cached" : "");
                {
                        json_t *e = json_object();
                        json_object_set_new(e, "name", json_string(plan->layers[i].name));
                        json_object_set_new(e, "dir", json_string(dir));
                        json_object_set_new(e, "layer_key", json_string(res.layer_key));
                        if (res.revision)
                                json_object_set_new(e, "revision", json_string(res.revision));
                        if (res.cache_key)
                                json_object_set_new(e, "cache_key", json_string(res.cache_key));
                        json_object_set_new(e, "cached", json_boolean(res.cached));
                        json_array_append_new(out, e);
                }
                if (strcmp(keyres.layer_key, res.layer_key)) {
                        kiln_error_set(err, KILN_E_INTERNAL,
                                       "layer '%s' staged with key %s, planned with %s",
                                       plan->layers[i].name, res.layer_key, keyres.layer_key);
                        recipe_stage_result_release(&res);
                        recipe_stage_result_release(&keyres);
                        free(dir);
                        goto done;
                }
                recipe_stage_result_release(&keyres);
                if (res.revision && !revision)
                        revision = strdup(res.revision);
                recipe_stage_result_release(&res);
                free(dir);
        }
        /* the revision is known now: plan again so tags and annotations hold it */
        po->source_revision = revision;
        if (recipe_plan_build(r, po, &final, err) < 0 ||
            recipe_plan_configure(final, false, false, NULL, NULL, err) < 0)
                goto done;
        {
                json_t *j = recipe_plan_to_json(final);
                char *path = kiln_strdupf("%s/plan.json", stage_dir);
                char *buf;

                json_object_set(j, "staged", out);
                buf = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
                if (!path || !buf)
                        kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                else
                        rc = kiln_write_file_atomic(path, buf, strlen(buf), 0644, err);
                if (rc == 0) {
                        if (json)
                                print_json(j);
                        else
                                for (size_t i = 0; i < final->n_tags; i++)
                                        printf("%s\n", final->tags[i]);
                }
                free(path);
                free(buf);
                json_decref(j);
        }
done:
        json_decref(out);
        free(revision);
        recipe_plan_free(final);
        return rc;
}

/* --dry-run: the plan, as text or JSON; --keys: each layer's cache key
 * too, which reads index pages and resolves git refs but downloads no wheel
 * or package that an index or the recipe gives a sha256 for. */
static int print_plan(const struct recipe_plan *plan, bool keys, bool json, const char *cache_dir,
                      struct mirrors *ms, struct kiln_error *err)
{
        json_t *keyed = json_array();

        for (size_t i = 0; keys && i < plan->n_layers; i++) {
                struct recipe_stage_opts so = {.cache_dir = cache_dir,
                                               .fetch = ms->n ? mirror_fetch : NULL,
                                               .fetch_ctx = ms};
                struct recipe_stage_result kres = {0};
                if (recipe_layer_key(plan, i, &so, &kres, err) < 0) {
                        kiln_error_prefix(err, "layer '%s'", plan->layers[i].name);
                        json_decref(keyed);
                        return -1;
                }
                json_array_append_new(keyed, json_string(kres.layer_key));
                recipe_stage_result_release(&kres);
        }
        if (json) {
                json_t *j = recipe_plan_to_json(plan);
                json_t *l;
                size_t i;
                json_array_foreach(json_object_get(j, "layers"), i, l) if (keys)
                        json_object_set(l, "layer_key", json_array_get(keyed, i));
                print_json(j);
                json_decref(j);
        } else {
                char *t = recipe_plan_to_text(plan);
                if (t)
                        fputs(t, stdout);
                free(t);
                if (keys) {
                        printf("layer keys:\n");
                        for (size_t i = 0; i < plan->n_layers; i++)
                                printf("  %s %s\n", plan->layers[i].name,
                                       json_string_value(json_array_get(keyed, i)));
                }
        }
        json_decref(keyed);
        return 0;
}


/* The recipe's variables in command-line order, "NAME=VALUE" each: --set
 * and the options that set one variable (--arch A is --set arch=A). */
static int collect_sets(const struct cli_args *a, char ***ret, size_t *ret_n)
{
        char **sets = calloc(a->n_values + 1, sizeof(*sets));
        size_t n = 0;

        if (!sets)
                return -1;
        cli_foreach_value(a, v)
        {
                const char *var = NULL;
                switch (v->opt->key) {
                case 'a': var = "arch"; break;
                case 's': var = "source"; break;
                case 'b': var = "branch"; break;
                case 't': var = "tag_suffix"; break;
                case 'M': var = "max_jobs"; break;
                case 'S': sets[n++] = strdup(v->arg); break;
                default: break;
                }
                if (var)
                        sets[n++] = kiln_strdupf("%s=%s", var, v->arg);
                if (n && !sets[n - 1]) {
                        for (size_t i = 0; i < n; i++)
                                free(sets[i]);
                        free(sets);
                        return -1;
                }
        }
        *ret = sets;
        *ret_n = n;
        return 0;
}

static void sets_free(char **sets, size_t n)
{
        for (size_t i = 0; i < n; i++)
                free(sets[i]);
        free(sets);
}

/* The options a plan takes (--dry-run, --stage): the recipe's variables,
 * its own and the global ones. */
static bool plan_option(const struct cli_option *o)
{
        static const char plan_keys[] = "asbtMSnygdcj";

        return cli_option_is_global(o) || (o->key > 0 && o->key < 0x80 && strchr(plan_keys, o->key));
}

/* kiln build RECIPE --dry-run [--keys] [--json] | --stage DIR */
static int run_plan(struct cli_args *a, char **sets, size_t n_sets)
{
        struct kiln_error err = KILN_ERROR_INIT;
        bool dry = cli_flag(a, 'n'), json = cli_flag(a, 'j'), keys = cli_flag(a, 'y');
        const char *stage_dir = cli_arg(a, 'g'), *cache_dir = NULL;
        _cleanup_(recipe_plan_freep) struct recipe_plan *plan = NULL;
        struct recipe *r = NULL;
        struct recipe_plan_opts po = {.sets = (const char *const *)sets, .n_sets = n_sets};
        struct mirrors ms = {0};
        _cleanup_free_ char *default_cache = NULL;
        int rc = EXIT_OK;

        cli_foreach_value(a, v)
        {
                if (!plan_option(v->opt))
                        return cli_usage("build", "--%s does not go with --dry-run or --stage",
                                         v->opt->name);
                if (v->opt->key == 'c' || v->opt->key == 'd')
                        cache_dir = v->arg; /* --cache or --cache-dir, the last one */
        }
        if (a->argc != 1)
                return cli_usage("build", a->argc < 1 ? "missing RECIPE" : "too many arguments");
        if (dry && stage_dir)
                return cli_usage("build", "--dry-run and --stage exclude each other");
        /* --mirror URL-PREFIX=DIR: the registry group's --mirror, another map */
        ms.n = a->reg.n_mirrors;
        for (size_t i = 0; i < ms.n; i++) {
                const char *m = a->reg.mirrors[i], *eq = strchr(m, '=');
                if (!eq[1])
                        return cli_usage("build", "invalid --mirror '%s': expected URL-PREFIX=DIR", m);
                ms.m[i].prefix = m;
                ms.m[i].prefix_len = (size_t)(eq - m);
                ms.m[i].dir = eq + 1;
        }
        r = recipe_load(a->argv[0], &err);
        if (!r || recipe_plan_build(r, &po, &plan, &err) < 0) {
                rc = cli_fail(&err);
                goto out;
        }
        if (!cache_dir) {
                const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
                default_cache = xdg && *xdg ? kiln_strdupf("%s/kiln", xdg)
                                            : kiln_strdupf("%s/.cache/kiln", home ? home : ".");
                cache_dir = default_cache;
        }
        if (dry)
                rc = print_plan(plan, keys, json, cache_dir, &ms, &err);
        else if (recipe_plan_configure(plan, false, false, NULL, NULL, &err) == 0)
                /* --stage builds no image: the configure steps, which run in one, are left out */
                rc = stage_all(r, &po, plan, stage_dir, cache_dir, &ms, json, &err);
        else
                rc = -1;
        if (rc < 0)
                rc = cli_fail(&err);
out:
        recipe_free(r);
        return rc;
}

/* ---- kiln build, lock and verify ---- */

/* The image options of kiln build, lock and verify, from the command line. */
static int image_opts(struct cli_args *a, struct recipe_image_opts *o, struct kiln_error *err)
{
        o->open_place = open_place;
        o->open_ctx = a;
        o->progress = on_progress;
        o->warn = on_warn;
        o->fetch = fetch_input;
        o->fetch_signed = fetch_signed;
        o->fetch_ctx = &a->reg;
        o->jobs = (unsigned)cli_num(a, CLI_K_JOBS, 4);
        if (layer_writer_opts_init(&o->writer, err) < 0)
                return -1;
        cli_writer_opts(a, &o->writer);
        if (a->has_platform)
                o->platform = &a->platform;
        cli_foreach_value(a, v)
        {
                switch (v->opt->key) {
                case 'o': o->output = v->arg; break;
                case 'c':
                case 'd': o->cache_dir = v->arg; break;
                case 'B': o->sbom = true; break;
                case 'D': o->base_from = v->arg; break;
                case 'R':
                case 'T': o->cache_repo = v->arg; o->cache_write = true; break;
                case 'f': o->cache_repo = v->arg; o->cache_write = false; break;
                case 'K': o->skip_if_built = true; break;
                case 'l': o->locked = true; break;
                default: break;
                }
        }
        return 0;
}

/* --lock FILE, else RECIPE.json -> RECIPE.lock.json */
static char *lock_path_of(const struct cli_args *a, const char *recipe)
{
        size_t n = strlen(recipe);

        if (cli_arg(a, 'k'))
                return strdup(cli_arg(a, 'k'));
        return n > 5 && !strcmp(recipe + n - 5, ".json")
                       ? kiln_strdupf("%.*s.lock.json", (int)(n - 5), recipe)
                       : kiln_strdupf("%s.lock.json", recipe);
}

/* verify --from-annotations: the variables the image was built with, put
 * before those of the command line (--set still wins). */
static int sets_from_annotations(struct cli_args *a, const char *against, char ***sets,
                                 size_t *n_sets, struct kiln_error *err)
{
        _cleanup_(oci_store_freep) struct oci_store *ref = cli_open_place(a, against, false, err);
        struct oci_fetched top = {0};
        json_t *m = NULL, *vars = NULL, *v;
        const char *k;
        size_t extra, i = 0;
        char **ns;
        int rc = -1;

        if (!ref || oci_store_fetch(ref, NULL, &top, err) < 0)
                return -1;
        m = oci_json_parse(top.buf, top.len, "manifest", err);
        if (!m || recipe_image_recorded_variables(json_object_get(m, "annotations"), against,
                                                  &vars, err) < 0)
                goto out;
        if (!vars) {
                kiln_error_set(err, KILN_E_NOT_FOUND, "'%s' has no %s annotation", against,
                               RECIPE_ANN_VARIABLES);
                goto out;
        }
        extra = json_object_size(vars);
        ns = realloc(*sets, (*n_sets + extra + 1) * sizeof(*ns));
        if (!ns) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto out;
        }
        *sets = ns;
        memmove(ns + extra, ns, *n_sets * sizeof(*ns));
        json_object_foreach(vars, k, v) ns[i++] =
                kiln_strdupf("%s=%s", k, json_string_value(v) ? json_string_value(v) : "");
        *n_sets += extra;
        rc = 0;
out:
        json_decref(m);
        json_decref(vars);
        oci_fetched_release(&top);
        return rc;
}

/* kiln lock: RECIPE.lock.json (and --pylock FILE), their paths printed. */
static int write_lock(struct recipe *r, struct recipe_image_opts *o, const char *lock_path,
                      const char *pylock_path, struct kiln_error *err)
{
        json_t *lock = NULL;
        char *buf = NULL, *py = NULL;
        int rc = -1;

        if (recipe_image_lock(r, o, &lock, err) < 0)
                goto out;
        buf = json_dumps(lock, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (!buf) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto out;
        }
        if (pylock_path && (recipe_pylock_format(lock, &py, err) < 0 ||
                            kiln_write_file_atomic(pylock_path, py, strlen(py), 0644, err) < 0))
                goto out;
        if (kiln_write_file_atomic(lock_path, buf, strlen(buf), 0644, err) < 0)
                goto out;
        printf("%s\n", lock_path);
        if (pylock_path)
                printf("%s\n", pylock_path);
        rc = 0;
out:
        json_decref(lock);
        free(buf);
        free(py);
        return rc;
}

/* kiln verify: the rebuilt image (by the digest it was written with)
 * against REF.  Exit 0 identical, 1 different, 2 error. */
static int compare(struct cli_args *a, const char *voutput, const char *against,
                   const struct recipe_image_result *res)
{
        struct kiln_error err = KILN_ERROR_INIT;
        _cleanup_(oci_store_freep) struct oci_store *built = NULL;
        _cleanup_(oci_store_freep) struct oci_store *ref = NULL;
        _cleanup_free_ char *place = kiln_strdupf("%s:%s", voutput, res->digest.str);
        struct layer_diff_opts dopts = {.finding = print_finding};
        bool same = false;

        built = place ? cli_open_place(a, place, false, &err) : NULL;
        if (built)
                ref = cli_open_place(a, against, false, &err);
        if (!built || !ref || layer_image_diff(built, ref, &dopts, &same, &err) < 0) {
                cli_fail(&err);
                return 2;
        }
        if (same)
                printf("identical %s\n", res->digest.str);
        return same ? EXIT_OK : EXIT_FAIL;
}

static void print_result_json(const struct recipe_image_result *res, const char *output)
{
        json_t *j = json_object(), *tags = json_array(), *layers = json_array();
        char *s;

        for (size_t i = 0; i < res->n_tags; i++)
                json_array_append_new(tags, json_string(res->tags[i]));
        json_object_set_new(j, "digest", json_string(res->digest.str));
        json_object_set_new(j, "tags", tags);
        json_object_set_new(j, "output", output ? json_string(output) : json_null());
        if (res->revision)
                json_object_set_new(j, "revision", json_string(res->revision));
        json_object_set_new(j, "layersBuilt", json_integer(res->layers_built));
        json_object_set_new(j, "layersCached", json_integer(res->layers_cached));
        json_object_set_new(j, "layersFromCacheRepo", json_integer(res->layers_from_repo));
        json_object_set_new(j, "skipped", json_boolean(res->skipped));
        json_object_set_new(j, "blobsCopied", json_integer(res->blobs_copied));
        json_object_set_new(j, "blobsSkipped", json_integer(res->blobs_skipped));
        json_object_set_new(j, "sbom", res->sbom.str[0] ? json_string(res->sbom.str) : json_null());
        for (size_t i = 0; i < res->n_layers; i++) {
                const struct recipe_layer_report *l = &res->layers[i];
                json_array_append_new(layers,
                                      json_pack("{s:s?, s:s, s:f, s:I, s:s}", "name", l->name,
                                                "state", l->state, "seconds",
                                                (double)(long)(l->seconds * 1000) / 1000, "bytes",
                                                (json_int_t)l->bytes, "digest", l->digest.str));
        }
        json_object_set_new(j, "layers", layers);
        s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        printf("%s\n", s ? s : "{}");
        free(s);
        json_decref(j);
}

/* Builds the image; prints the summary line unless quiet. */
static int build_image(struct recipe *r, struct recipe_image_opts *o, bool quiet, bool verify,
                       struct recipe_image_result *res, struct kiln_error *err)
{
        struct timespec t0, t1;
        char line[256];

        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (recipe_image_build(r, o, res, err) < 0) {
                cli_progress_end();
                return -1;
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        cli_progress_end();
        if (quiet || verify || res->skipped)
                return 0;
        snprintf(line, sizeof(line),
                 "built %u layers, %u cached (%u from the cache repository); "
                 "%u blobs copied, %u already there; %.1fs",
                 res->layers_built, res->layers_cached, res->layers_from_repo, res->blobs_copied,
                 res->blobs_skipped,
                 (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
        cli_progress_message(line);
        return 0;
}

/* The verbs that build: `kiln build` writes or pushes the image (or, with
 * --dry-run or --stage, plans it); `kiln lock` pins its inputs; `kiln
 * verify` builds it into a private layout and compares it with --against. */
static int run_build(const char *verb, struct cli_args *a)
{
        struct kiln_error err = KILN_ERROR_INIT;
        struct recipe *r = NULL;
        struct recipe_image_opts o = {0};
        struct recipe_image_result res = {0};
        bool verify = !strcmp(verb, "verify"), locking = !strcmp(verb, "lock");
        bool push = cli_flag(a, 'P'), json = cli_flag(a, 'j'), quiet = a->quiet || json;
        const char *against = cli_arg(a, 'A');
        _cleanup_free_ char *vdir = NULL, *voutput = NULL, *rbuf = NULL, *lock_path = NULL;
        struct oci_digest rdig;
        char **sets = NULL;
        size_t n_sets = 0, rlen;
        int rc = EXIT_OK;
        struct step_out sout = {0};
        struct recipe_step_log slog = {.line = on_step_line, .failed = on_step_failed,
                                       .ctx = &sout};

        if (collect_sets(a, &sets, &n_sets) < 0)
                return EXIT_INTERNAL;
        if (!strcmp(verb, "build") && (cli_flag(a, 'n') || cli_arg(a, 'g'))) {
                rc = run_plan(a, sets, n_sets);
                goto out;
        }
        if (image_opts(a, &o, &err) < 0) {
                rc = cli_fail(&err);
                goto out;
        }
        o.progress_ctx = &quiet;
        if (a->argc != 1) {
                rc = cli_usage(verb, a->argc < 1 ? "missing RECIPE" : "too many arguments");
                goto out;
        }
        lock_path = lock_path_of(a, a->argv[0]);
        if (!locking && lock_path && access(lock_path, F_OK) == 0) {
                char *lb = NULL;
                size_t ll;
                if (kiln_read_file(lock_path, 4u << 20, &lb, &ll, &err) < 0 ||
                    !(o.lock = oci_json_parse(lb, ll, lock_path, &err))) {
                        free(lb);
                        rc = cli_fail(&err);
                        goto out;
                }
                free(lb);
        }
        if (verify && !against) {
                rc = cli_usage(verb, "--against REF is required");
                goto out;
        }
        if (verify && (push || o.output)) {
                rc = cli_usage(verb, "verify builds into a private layout: no --push or --output");
                goto out;
        }
        if (verify && cli_flag(a, 'F') &&
            sets_from_annotations(a, against, &sets, &n_sets, &err) < 0) {
                rc = cli_fail(&err);
                goto out;
        }
        if (verify || locking)
                o.sbom = false; /* a rebuild to compare, a lock: no image to describe */
        if (verify) {
                const char *tmp = getenv("TMPDIR");
                vdir = kiln_strdupf("%s/kiln-verify-XXXXXX", tmp && *tmp ? tmp : "/tmp");
                if (!vdir || !mkdtemp(vdir)) {
                        free(vdir);
                        vdir = NULL;
                        kiln_error_set(&err, KILN_E_IO, "cannot create a directory for the rebuild");
                        rc = cli_fail(&err);
                        goto out;
                }
                voutput = kiln_strdupf("oci:%s/image", vdir);
                o.output = voutput;
        }
        if (push && o.output) {
                rc = cli_usage(verb, "--push and --output exclude each other");
                goto out;
        }
        if (!push && !o.output)
                o.output = DEFAULT_OUTPUT;
        cli_progress_begin(quiet ? CLI_PROGRESS_NONE : cli_progress_opt(a));
        /* every line is shown as it comes in plain mode; on a terminal the
         * last few, under the layer's row */
        sout.stream = cli_progress_mode() == CLI_PROGRESS_PLAIN;
        o.step_log = &slog;
        o.layer_state = on_layer_state;
        {
                struct oci_copy_opts hooks = {0};
                cli_progress_attach(&hooks);
                o.copy_progress = hooks.progress;
                o.copy_bytes = hooks.bytes;
                o.copy_ctx = hooks.progress_ctx;
        }
        o.sets = (const char *const *)sets;
        o.n_sets = n_sets;
        if (kiln_read_file(a->argv[0], RECIPE_FILE_MAX, &rbuf, &rlen, &err) == 0) {
                oci_digest_of_buffer(rbuf, rlen, &rdig);
                o.recipe_digest = rdig.str;
        }
        r = recipe_load(a->argv[0], &err);
        if (locking) {
                if (!r || write_lock(r, &o, lock_path, cli_arg(a, 'Y'), &err) < 0)
                        rc = cli_fail(&err);
                cli_progress_end();
                goto out;
        }
        if (!r || build_image(r, &o, quiet, verify, &res, &err) < 0) {
                if (!r)
                        cli_progress_end();
                rc = cli_fail(&err);
                if (verify)
                        rc = 2;
                goto out;
        }
        if (verify) {
                rc = compare(a, voutput, against, &res);
        } else if (json) {
                print_result_json(&res, push ? NULL : o.output);
        } else {
                for (size_t i = 0; i < res.n_tags; i++)
                        printf("%s\n", res.tags[i]);
                printf("%s\n", res.digest.str);
        }
out:
        if (vdir)
                kiln_rm_rf(vdir);
        json_decref(o.lock);
        recipe_image_result_release(&res);
        recipe_free(r);
        sets_free(sets, n_sets);
        return rc;
}

int cmd_build(struct cli_args *a)
{
        return run_build("build", a);
}

int cmd_lock(struct cli_args *a)
{
        return run_build("lock", a);
}

int cmd_verify(struct cli_args *a)
{
        return run_build("verify", a);
}
