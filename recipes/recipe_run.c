/* Run layers: a command in the sandbox, its upper directory as the layer
 * (recipe_run.h). */
#include "recipe_run.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io.h"
#include "json.h"
#include "parallel.h"
#include "recipe_internal.h"
#include "rootfs.h"
#include "sandbox.h"
#include "source.h"
#include "util.h"

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

static void env_put(json_t *env, const char *name, const char *value)
{
        size_t nl = strlen(name), i;
        json_t *v;
        char *kv = kiln_strdupf("%s=%s", name, value);

        if (!kv)
                return;
        json_array_foreach(env, i, v)
        {
                const char *s = json_string_value(v);
                if (s && !strncmp(s, name, nl) && s[nl] == '=') {
                        json_array_set_new(env, i, json_string(kv));
                        free(kv);
                        return;
                }
        }
        json_array_append_new(env, json_string(kv));
        free(kv);
}

/* The step's environment (recipe_run.h). */
static json_t *step_env(const struct recipe_run_ctx *c, const struct recipe_layer *l)
{
        json_t *cfg = json_object_get(c->base->config, "config");
        json_t *benv = json_object_get(cfg, "Env");
        json_t *env = json_is_array(benv) ? json_deep_copy(benv) : json_array();
        char epoch[32];
        const char *k;
        json_t *v;
        bool has_path = false;
        size_t i;

        if (!env)
                return NULL;
        json_array_foreach(env, i, v) has_path |= str_has_prefix(json_string_value(v), "PATH=");
        if (!has_path)
                env_put(env, "PATH", DEFAULT_PATH);
        json_object_foreach(json_object_get(l->params, "env"), k, v)
                env_put(env, k, json_string_value(v));
        snprintf(epoch, sizeof(epoch), "%lld", (long long)c->writer->mtime);
        env_put(env, "LC_ALL", "C");
        env_put(env, "TZ", "UTC");
        env_put(env, "SOURCE_DATE_EPOCH", epoch);
        return env;
}

static const char *step_workdir(const struct recipe_run_ctx *c, const struct recipe_layer *l)
{
        const char *w = json_string_value(json_object_get(l->params, "workdir"));

        if (!w)
                w = json_string_value(
                        json_object_get(json_object_get(c->base->config, "config"), "WorkingDir"));
        return w && *w ? w : "/";
}

static json_t *base_diff_ids(const struct recipe_run_ctx *c)
{
        return json_object_get(json_object_get(c->base->config, "rootfs"), "diff_ids");
}

int recipe_run_key(const struct recipe_run_ctx *c, const struct recipe_plan *plan, size_t i,
                   const struct oci_digest *layer_cache_key, struct oci_digest *ret,
                   struct kiln_error *err)
{
        _cleanup_json_ json_t *env = step_env(c, &plan->layers[i]);
        _cleanup_json_ json_t *below = json_array();
        _cleanup_json_ json_t *j = NULL;
        _cleanup_free_ char *buf = NULL;
        size_t len, k;
        json_t *v;

        if (!env || !below)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        json_array_foreach(base_diff_ids(c), k, v) json_array_append(below, v);
        for (k = 0; k < i; k++)
                json_array_append_new(below, json_string(c->below[k].diff_id.str));
        j = json_pack("{s:i, s:s, s:O, s:O, s:s}", "kiln-run", 1, "layer",
                      layer_cache_key ? layer_cache_key->str : "", "below", below, "env", env,
                      "workdir", step_workdir(c, &plan->layers[i]));
        if (!j || oci_json_dump(j, &buf, &len, err) < 0)
                return j ? -1 : kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        oci_digest_of_buffer(buf, len, ret);
        return 0;
}

/* ---- the lower directories ---- */

struct blob_src {
        struct layer_cache *cache;
        const struct layer_result *res;
        struct oci_store *st;
        const struct oci_descriptor *d;
};

static struct oci_reader *open_blob(void *ctx, struct kiln_error *err)
{
        struct blob_src *b = ctx;

        return b->st ? b->st->ops->open_blob(b->st, b->d, err)
                     : layer_cache_open_blob(b->cache, b->res, err);
}

/* One lower directory to make (or find made): a layer's diffID and blob. */
struct lower_job {
        struct oci_digest id;
        const char *media_type;
        int64_t size;      /* the blob's: the largest go first */
        size_t base_layer; /* 1-based, for the error; 0: a layer of the recipe */
        struct blob_src src;
        char **dir;
};

struct lower_batch {
        const struct recipe_run_ctx *c;
        struct lower_job **jobs;
};

static int lower_make(const struct recipe_run_ctx *c, struct lower_job *j, struct kiln_error *err)
{
        if (sandbox_rootfs_get(layer_cache_dir(c->cache), &j->id, j->media_type, open_blob, &j->src,
                               j->dir, NULL, err) < 0) {
                if (j->base_layer)
                        kiln_error_prefix(err, "base layer %zu", j->base_layer);
                return -1;
        }
        return 0;
}

static int lower_one(void *ctx, size_t i, struct kiln_error *err)
{
        struct lower_batch *b = ctx;

        if (b->c->cancel && __atomic_load_n(b->c->cancel, __ATOMIC_RELAXED))
                return kiln_error_set(err, KILN_E_IO, "cancelled");
        return lower_make(b->c, b->jobs[i], err);
}

static int larger_first(const void *x, const void *y)
{
        const struct lower_job *a = *(struct lower_job *const *)x,
                               *b = *(struct lower_job *const *)y;

        return (a->size < b->size) - (a->size > b->size);
}

/* Unpacks what is not unpacked yet, up to one layer per CPU at a time (a
 * step over a 2 GiB torch layer otherwise waits for the base and the system
 * packages one after the other); each directory is made under a name of
 * its own and renamed, so the threads never share one. */
static int lowers_make(const struct recipe_run_ctx *c, struct lower_job *jobs, size_t n,
                       struct kiln_error *err)
{
        struct lower_batch b = {.c = c};
        unsigned want = kiln_parallel_cpus(4);
        int rc;

        if (c->base_st && !c->base_st->ops->thread_safe)
                want = 1;
        b.jobs = calloc(n + 1, sizeof(*b.jobs));
        if (!b.jobs)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        for (size_t i = 0; i < n; i++)
                b.jobs[i] = &jobs[i];
        qsort(b.jobs, n, sizeof(*b.jobs), larger_first);
        rc = kiln_parallel_for(n, want, lower_one, &b, err);
        free(b.jobs);
        return rc;
}

/* Top first: the recipe's layers below i, then the base's. */
static int lowers_for(const struct recipe_run_ctx *c, size_t i, char ***ret, size_t *ret_n,
                      struct kiln_error *err)
{
        json_t *ids;

        if (c->prefetch)
                recipe_prefetch_wait(c->prefetch);
        ids = base_diff_ids(c);
        size_t nb = c->base->m ? c->base->m->n_layers : 0, n = nb + i, k = 0;
        char **dirs = calloc(n + 1, sizeof(*dirs));
        struct lower_job *jobs = calloc(n + 1, sizeof(*jobs));


        if (!dirs || !jobs) {
                free(dirs);
                free(jobs);
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        if (json_array_size(ids) != nb) {
                free(dirs);
                free(jobs);
                return kiln_error_set(err, KILN_E_INVALID,
                                      "the base's config lists %zu diff_ids for %zu layers",
                                      json_array_size(ids), nb);
        }
        for (size_t j = i; j-- > 0; k++)
                jobs[k] = (struct lower_job){.id = c->below[j].diff_id,
                                             .media_type = c->below[j].media_type,
                                             .size = c->below[j].size,
                                             .dir = &dirs[k],
                                             .src = {.cache = c->cache, .res = &c->below[j]}};
        for (size_t j = nb; j-- > 0; k++) {
                jobs[k] =
                    (struct lower_job){.media_type = c->base->m->layers[j].media_type,
                                       .size = c->base->m->layers[j].size,
                                       .base_layer = j + 1,
                                       .dir = &dirs[k],
                                       .src = {.st = c->base_st, .d = &c->base->m->layers[j]}};
                if (oci_digest_parse(json_string_value(json_array_get(ids, j)), &jobs[k].id, err) <
                    0) {
                        kiln_error_prefix(err, "base layer %zu", j + 1);
                        goto fail;
                }
        }
        if (lowers_make(c, jobs, n, err) < 0)
                goto fail;
        free(jobs);
        *ret = dirs;
        *ret_n = n;
        return 0;
fail:
        free(jobs);
        sandbox_dirs_free(dirs, n);
        return -1;
}

/* ---- binds: inputs and cache directories ---- */

static int make_binds(const struct recipe_run_ctx *c, const struct recipe_plan *plan,
                      const struct recipe_layer *l, struct sandbox_bind **ret, char ***ret_strs,
                      size_t *ret_n, struct kiln_error *err)
{
        json_t *inputs = json_object_get(l->params, "inputs");
        json_t *caches = json_object_get(l->params, "cache");
        size_t n = json_array_size(inputs) + json_array_size(caches), k = 0, i;
        struct sandbox_bind *b = calloc(n + 1, sizeof(*b));
        char **strs = calloc(2 * n + 1, sizeof(*strs));
        json_t *v;

        *ret = b;
        *ret_strs = strs;
        *ret_n = 0;
        if (!b || !strs)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        json_array_foreach(inputs, i, v) {
                _cleanup_free_ char *rel = recipe_resolve_input(plan, json_string_value(v), err);
                char *src = rel ? realpath(rel, NULL) : NULL;
                if (!src)
                        return rel ? kiln_error_set_errno(err, KILN_E_NOT_FOUND, errno,
                                                          "cannot read input '%s'", rel)
                                   : -1;
                strs[2 * k] = src;
                strs[2 * k + 1] = kiln_strdupf("/kiln/inputs/%zu", i);
                if (!strs[2 * k + 1])
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                b[k] = (struct sandbox_bind){.src = src, .dst = strs[2 * k + 1], .ro = true};
                *ret_n = ++k;
        }
        json_array_foreach(caches, i, v) {
                const char *path = json_string_value(v);
                struct oci_digest d;
                oci_digest_of_buffer(path, strlen(path), &d);
                strs[2 * k] = kiln_strdupf("%s/run-cache/%.16s", layer_cache_dir(c->cache),
                                           oci_digest_hex(&d));
                if (!strs[2 * k] || kiln_mkdir_p(strs[2 * k], 0755, err) < 0)
                        return strs[2 * k] ? -1 : kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                b[k] = (struct sandbox_bind){.src = strs[2 * k], .dst = path, .ro = false};
                *ret_n = ++k;
        }
        return 0;
}

/* the 2 * (inputs + caches) strings of make_binds, NULL where none */
static void strs_free(char **strs, size_t n)
{
        for (size_t i = 0; strs && i < n; i++)
                free(strs[i]);
        free(strs);
}

/* ---- the step ---- */

static void on_output(void *ctx, const char *buf, size_t len)
{
        recipe_step_output_feed(ctx, buf, len);
}

static int run_step(const struct recipe_run_ctx *c, const struct recipe_layer *l,
                    struct sandbox_opts *o, const struct oci_digest *key, struct kiln_error *err)
{
        struct recipe_step_output *out =
                recipe_step_output_open(layer_cache_dir(c->cache), l->name, key->str, c->log, err);
        int status = 0, rc;

        if (!out)
                return -1;
        o->output = on_output;
        o->output_ctx = out;
        rc = sandbox_run(o, &status, err);
        if (rc == 0 && status != 0) {
                const char *last = recipe_step_output_last(out);
                rc = kiln_error_set(err, KILN_E_STEP, "run step: '%s' exited with status %d%s%s",
                                    o->argv[0], status, last[0] ? ": " : "", last);
        }
        if (rc < 0)
                recipe_step_output_failed(out);
        recipe_step_output_free(out);
        return rc;
}

/* ---- a debs layer's configure step (recipe.h recipe_plan_configure) ---- */

/* What dpkg and the scripts it runs leave that is not part of what they
 * configured: logs with dates, ldconfig's cache of inode numbers and
 * times, the previous versions of dpkg's and debconf's databases, lock
 * files.  Taken out of the upper directory, so the image keeps what the
 * layers below hold there (docs/recipes.md, "Maintainer scripts"). */
static const char *const configure_drop[] = {
    "/var/log/dpkg.log",
    "/var/log/alternatives.log",
    "/var/cache/ldconfig/aux-cache",
    "/var/lib/dpkg/status-old",
    "/var/lib/dpkg/diversions-old",
    "/var/lib/dpkg/statoverride-old",
    "/var/lib/dpkg/lock",
    "/var/lib/dpkg/lock-frontend",
    "/var/lib/dpkg/triggers/Lock",
    "/var/cache/debconf/config.dat-old",
    "/var/cache/debconf/passwords.dat-old",
    "/var/cache/debconf/templates.dat-old",
};

#define SCAN_LINE 512

/* Reads dpkg's output for the first package it failed to configure: its
 * name, dpkg's reason and what its script printed before failing. */
struct configure_scan {
        struct recipe_step_output *out;
        char line[SCAN_LINE];
        size_t len;
        bool want_reason;
        char pkg[128];
        char reason[SCAN_LINE];
        char printed[SCAN_LINE]; /* since the last "Setting up" */
        char failed_printed[SCAN_LINE];
};

/* dst += sep + s, cut at size */
static void append_cut(char *dst, size_t size, const char *sep, const char *s)
{
        size_t n = strlen(dst);

        for (const char *p = sep; *p && n + 1 < size; p++)
                dst[n++] = *p;
        for (const char *p = s; *p && n + 1 < size; p++)
                dst[n++] = *p;
        dst[n] = '\0';
}

static void scan_line(struct configure_scan *sc)
{
        static const char err_prefix[] = "dpkg: error processing package ";
        const char *l = sc->line;
        size_t n;

        sc->line[sc->len] = '\0';
        sc->len = 0;
        if (sc->want_reason) {
                sc->want_reason = false;
                while (*l == ' ')
                        l++;
                snprintf(sc->reason, sizeof(sc->reason), "%s", l);
                return;
        }
        if (!sc->pkg[0] && str_has_prefix(l, err_prefix)) {
                l += sizeof(err_prefix) - 1;
                n = strcspn(l, " :");
                snprintf(sc->pkg, sizeof(sc->pkg), "%.*s", (int)n, l);
                memcpy(sc->failed_printed, sc->printed, sizeof(sc->printed));
                sc->want_reason = true;
                return;
        }
        if (str_has_prefix(l, "Setting up ") || str_has_prefix(l, "Processing triggers for ")) {
                sc->printed[0] = '\0';
                return;
        }
        if (*l)
                append_cut(sc->printed, sizeof(sc->printed), sc->printed[0] ? " / " : "", l);
}

static void on_configure_output(void *ctx, const char *buf, size_t len)
{
        struct configure_scan *sc = ctx;

        recipe_step_output_feed(sc->out, buf, len);
        for (size_t i = 0; i < len; i++) {
                if (buf[i] == '\n')
                        scan_line(sc);
                else if (sc->len < SCAN_LINE - 1)
                        sc->line[sc->len++] = buf[i];
        }
}

/* dpkg --configure -a, with a failure that names the package and what
 * its script printed. */
static int run_configure(const struct recipe_run_ctx *c, const struct recipe_layer *l,
                         struct sandbox_opts *o, const struct oci_digest *key,
                         struct kiln_error *err)
{
        struct configure_scan *sc = calloc(1, sizeof(*sc));
        int status = 0, rc = -1;

        if (!sc)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        sc->out =
            recipe_step_output_open(layer_cache_dir(c->cache), l->name, key->str, c->log, err);
        if (!sc->out)
                goto out;
        o->output = on_configure_output;
        o->output_ctx = sc;
        o->ignore_chown = true;
        rc = sandbox_run(o, &status, err);
        if (sc->len)
                scan_line(sc);
        if (rc == 0 && status != 0 && sc->pkg[0])
                rc = kiln_error_set(
                    err, KILN_E_STEP, "dpkg --configure -a failed for package '%s': %s%s%s",
                    sc->pkg, sc->reason[0] ? sc->reason : "no reason given",
                    sc->failed_printed[0] ? "; it printed: " : "", sc->failed_printed);
        else if (rc == 0 && status != 0) {
                const char *last = recipe_step_output_last(sc->out);
                rc = kiln_error_set(err, KILN_E_STEP,
                                    "dpkg --configure -a exited with status %d%s%s", status,
                                    last[0] ? ": " : "", last);
        }
        if (rc < 0)
                recipe_step_output_failed(sc->out);
out:
        recipe_step_output_free(sc->out);
        free(sc);
        return rc;
}

static void tee_warn(void (*warn)(void *ctx, const char *msg), void *warn_ctx,
                     const struct kiln_error *e)
{
        char msg[sizeof(e->msg) + 80];

        if (!warn)
                return;
        snprintf(msg, sizeof(msg), "not unpacked while written (%s): a step above unpacks its blob",
                 e->msg);
        warn(warn_ctx, msg);
}

int recipe_layer_build(struct layer_cache *cache, const struct layer_source *src,
                       const struct layer_writer_opts *w, bool unpack,
                       void (*warn)(void *ctx, const char *msg), void *warn_ctx,
                       struct layer_result *ret, struct kiln_error *err)
{
        struct kiln_error e = KILN_ERROR_INIT;
        struct sandbox_rootfs_tee *t = NULL;
        struct layer_result res;
        bool hit = false;
        int rc = -1;

        if (!unpack)
                return layer_cache_build(cache, src, w, false, ret, &hit, err);
        t = sandbox_rootfs_tee_new(layer_cache_dir(cache), &e);
        if (!t)
                tee_warn(warn, warn_ctx, &e);
        if (layer_cache_build_tee(cache, src, w, t ? sandbox_rootfs_tee_writer(t) : NULL, &res,
                                  err) < 0)
                goto out;
        if (t && sandbox_rootfs_tee_finish(t, &res.diff_id, res.tar_size, NULL, &e) < 0)
                tee_warn(warn, warn_ctx, &e);
        *ret = res;
        rc = 0;
out:
        sandbox_rootfs_tee_free(t);
        return rc;
}

/* The upper directory as the layer. */
static int upper_to_layer(const struct recipe_run_ctx *c, const struct recipe_layer *l,
                          const char *upper, const struct oci_digest *key, struct layer_result *ret,
                          struct kiln_error *err)
{
        struct layer_source *src = layer_source_new(err);
        int rc = -1;

        if (src && recipe_layer_modes(l, src, err) == 0 &&
            layer_source_add_tree(src, upper, "/", NULL, 0, err) == 0 &&
            layer_source_overlay_whiteouts(src, upper, err) == 0 &&
            layer_source_finish(src, err) == 0 &&
            recipe_layer_build(c->cache, src, c->writer, c->unpack_written, c->warn, c->warn_ctx,
                               ret, err) == 0 &&
            layer_cache_store(c->cache, key, ret, err) == 0)
                rc = 0;
        layer_source_free(src);
        return rc;
}

int recipe_run_layer(const struct recipe_run_ctx *c, const struct recipe_plan *plan, size_t i,
                     const struct oci_digest *key, struct layer_result *ret,
                     struct kiln_error *err)
{
        const struct recipe_layer *l = &plan->layers[i];
        _cleanup_json_ json_t *env = step_env(c, l);
        _cleanup_free_ char *runs = kiln_strdupf("%s/run", layer_cache_dir(c->cache));
        _cleanup_free_ char *tmp = kiln_strdupf("%s/run/.tmp-XXXXXX", layer_cache_dir(c->cache));
        _cleanup_free_ char *up = NULL, *wk = NULL, *rt = NULL;
        _cleanup_free_ const char **argv = NULL, **ev = NULL;
        _cleanup_free_ struct sandbox_bind *binds = NULL;
        json_t *cmd = json_object_get(l->params, "command"), *v;
        char **lowers = NULL, **strs = NULL;
        size_t n_lowers = 0, n_binds = 0, k;
        struct sandbox_opts o;
        bool made = false;
        int rc = -1;

        argv = calloc(json_array_size(cmd) + 1, sizeof(*argv));
        ev = env ? calloc(json_array_size(env) + 1, sizeof(*ev)) : NULL;
        if (!runs || !tmp || !argv || !ev)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        json_array_foreach(cmd, k, v) argv[k] = json_string_value(v);
        json_array_foreach(env, k, v) ev[k] = json_string_value(v);
        if (make_binds(c, plan, l, &binds, &strs, &n_binds, err) < 0 ||
            lowers_for(c, i, &lowers, &n_lowers, err) < 0 || kiln_mkdir_p(runs, 0700, err) < 0)
                goto out;
        if (!mkdtemp(tmp)) {
                kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create '%s'", tmp);
                goto out;
        }
        made = true;
        sandbox_opts_init(&o);
        if (sandbox_dirs_make(tmp, &o, &up, &wk, &rt, err) < 0)
                goto out;
        o.lowers = (const char *const *)lowers;
        o.n_lowers = n_lowers;
        o.argv = argv;
        o.argc = json_array_size(cmd);
        o.env = ev;
        o.n_env = json_array_size(env);
        o.cwd = step_workdir(c, l);
        o.network = json_is_true(json_object_get(l->params, "network"));
        o.binds = binds;
        o.n_binds = n_binds;
        if ((l->configure_step ? run_configure(c, l, &o, key, err) : run_step(c, l, &o, key, err)) <
            0)
                goto out;
        if (l->configure_step)
                sandbox_upper_drop(&o, configure_drop, ARRAY_SIZE(configure_drop));
        sandbox_upper_clean(&o);
        rc = upper_to_layer(c, l, up, key, ret, err);
out:
        if (made)
                kiln_rm_rf(tmp);
        sandbox_dirs_free(lowers, n_lowers);
        strs_free(strs, 2 * (json_array_size(json_object_get(l->params, "inputs")) +
                             json_array_size(json_object_get(l->params, "cache"))));
        return rc;
}

/* ---- build steps with "in": "image" ---- */

int recipe_run_build_step(const struct recipe_run_ctx *c, const struct recipe_plan *plan, size_t i,
                          const struct recipe_build_step *s, const char *out, const char *scratch,
                          void (*feed)(void *fctx, const char *buf, size_t n), void *fctx,
                          int *ret_status, struct kiln_error *err)
{
        const struct recipe_layer *l = &plan->layers[i];
        _cleanup_json_ json_t *env = step_env(c, l);
        _cleanup_free_ char *runs = kiln_strdupf("%s/run", layer_cache_dir(c->cache));
        _cleanup_free_ char *tmp = kiln_strdupf("%s/run/.tmp-XXXXXX", layer_cache_dir(c->cache));
        _cleanup_free_ char *up = NULL, *wk = NULL, *rt = NULL;
        _cleanup_free_ const char **ev = NULL;
        _cleanup_free_ struct sandbox_bind *binds = calloc(s->n_inputs + 4, sizeof(*binds));
        _cleanup_free_ char *sdist_at = NULL;
        _cleanup_free_ char **srcs = calloc(s->n_inputs + 1, sizeof(*srcs));
        char **lowers = NULL;
        size_t n_lowers = 0, k;
        struct sandbox_opts o;
        bool made = false;
        json_t *v;
        int rc = -1;

        if (!env || !runs || !tmp || !binds || !srcs)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        env_put(env, "KILN_OUT", "/kiln/out");
        env_put(env, "KILN_SCRATCH", "/kiln/scratch");
        env_put(env, "HOME", "/kiln/scratch");
        if (s->sdist) {
                /* one file, read-only, under its own name */
                const char *file = strrchr(s->sdist, '/') ? strrchr(s->sdist, '/') + 1 : s->sdist;
                sdist_at = kiln_strdupf("/kiln/sdist/%s", file);
                if (!sdist_at)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                env_put(env, "KILN_SDIST", sdist_at);
        }
        ev = calloc(json_array_size(env) + 1, sizeof(*ev));
        if (!ev)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        json_array_foreach(env, k, v) ev[k] = json_string_value(v);
        binds[0] = (struct sandbox_bind){.src = out, .dst = "/kiln/out"};
        binds[1] = (struct sandbox_bind){.src = scratch, .dst = "/kiln/scratch"};
        /* inputs at their own paths: the command names them as on the host */
        for (k = 0; k < s->n_inputs; k++) {
                srcs[k] = realpath(s->inputs[k], NULL);
                if (!srcs[k]) {
                        kiln_error_set_errno(err, KILN_E_NOT_FOUND, errno, "cannot read input '%s'",
                                             s->inputs[k]);
                        goto out;
                }
                binds[2 + k] = (struct sandbox_bind){.src = srcs[k], .dst = srcs[k], .ro = true};
        }
        if (lowers_for(c, i, &lowers, &n_lowers, err) < 0 || kiln_mkdir_p(runs, 0700, err) < 0)
                goto out;
        if (!mkdtemp(tmp)) {
                kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create '%s'", tmp);
                goto out;
        }
        made = true;
        sandbox_opts_init(&o);
        if (sandbox_dirs_make(tmp, &o, &up, &wk, &rt, err) < 0)
                goto out;
        o.lowers = (const char *const *)lowers;
        o.n_lowers = n_lowers;
        o.argv = s->argv;
        o.argc = s->argc;
        o.env = ev;
        o.n_env = json_array_size(env);
        o.cwd = "/kiln/scratch";
        o.binds = binds;
        o.n_binds = 2 + s->n_inputs;
        if (s->sdist)
                binds[o.n_binds++] = (struct sandbox_bind){.src = s->sdist, .dst = sdist_at,
                                                           .ro = true};
        o.output = feed;
        o.output_ctx = fctx;
        rc = sandbox_run(&o, ret_status, err); /* what it wrote in the image is dropped */
out:
        if (made)
                kiln_rm_rf(tmp);
        sandbox_dirs_free(lowers, n_lowers);
        for (k = 0; k < s->n_inputs; k++)
                free(srcs[k]);
        return rc;
}

/* ---- the base, unpacked in the background ---- */

void recipe_prefetch_init(struct recipe_prefetch *p)
{
        memset(p, 0, sizeof(*p));
        pthread_mutex_init(&p->lock, NULL);
}

static void *prefetch_main(void *arg)
{
        struct recipe_prefetch *p = arg;
        struct kiln_error e = KILN_ERROR_INIT;
        char **dirs = NULL;
        size_t n = 0;

        if (lowers_for(&p->c, 0, &dirs, &n, &e) == 0)
                sandbox_dirs_free(dirs, n);
        return NULL;
}

void recipe_prefetch_start(struct recipe_prefetch *p, const struct recipe_run_ctx *c)
{
        pthread_mutex_lock(&p->lock);
        if (!p->started && !p->joined && c->base && c->base->m && c->base->m->n_layers &&
            (!c->base_st || c->base_st->ops->thread_safe)) {
                p->c = *c;
                p->c.below = NULL;
                p->c.prefetch = NULL;
                p->c.cancel = &p->cancel;
                p->started = pthread_create(&p->th, NULL, prefetch_main, p) == 0;
        }
        pthread_mutex_unlock(&p->lock);
}

void recipe_prefetch_cancel(struct recipe_prefetch *p)
{
        __atomic_store_n(&p->cancel, true, __ATOMIC_RELAXED);
}

void recipe_prefetch_wait(struct recipe_prefetch *p)
{
        pthread_mutex_lock(&p->lock);
        if (p->started && !p->joined)
                pthread_join(p->th, NULL);
        p->joined = true;
        pthread_mutex_unlock(&p->lock);
}

void recipe_prefetch_destroy(struct recipe_prefetch *p)
{
        recipe_prefetch_wait(p);
        pthread_mutex_destroy(&p->lock);
}
