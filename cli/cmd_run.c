/* kiln run PLACE [--network] [--bind SRC:DST[:ro]]... [--env K=V]...
 *          [--workdir D] [--user U] [--gpu] [--cache DIR] [-- CMD...]
 *
 * Runs a command in an image, rootless (sandbox/sandbox.h), and exits with
 * its status (128 + N when signal N killed it).  What the command writes
 * lives in a scratch upper directory removed afterwards. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "cli.h"
#include "cmd_layers.h"
#include "cmd_run.h"
#include "commands.h"
#include "io.h"
#include "json.h"
#include "rootfs.h"
#include "sandbox.h"
#include "util.h"

#define RUN_ARGS_MAX 256
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

struct run_args {
        const char *place, *workdir, *cache_dir;
        bool network, gpu;
        unsigned long uid, gid;
        struct sandbox_bind binds[RUN_ARGS_MAX];
        size_t n_binds;
        const char *envs[RUN_ARGS_MAX];
        size_t n_envs;
        char **cmd;
        size_t n_cmd;
};

/* SRC:DST[:ro]; SRC made absolute (the sandbox binds it from another root) */
static int parse_bind(char *arg, struct sandbox_bind *ret)
{
        char *dst = strchr(arg, ':'), *opt;

        if (!dst || dst == arg || dst[1] != '/')
                return cli_usage("run", "--bind takes SRC:DST[:ro] with an absolute DST, not '%s'",
                                 arg);
        *dst++ = '\0';
        opt = strchr(dst, ':');
        if (opt) {
                *opt++ = '\0';
                if (strcmp(opt, "ro") && strcmp(opt, "rw"))
                        return cli_usage("run", "--bind option '%s' is neither ro nor rw", opt);
        }
        ret->src = realpath(arg, NULL);
        if (!ret->src) {
                cli_warn("run: cannot bind '%s': no such file or directory", arg);
                return EXIT_NOT_FOUND;
        }
        ret->dst = dst;
        ret->ro = opt && !strcmp(opt, "ro");
        return 0;
}

/* root, or UID[:GID] numbers (ids other than 0 exist only with
 * subordinate ids, which sandbox_run checks) */
static int parse_user(const char *arg, unsigned long *uid, unsigned long *gid)
{
        char *end;

        if (!strcmp(arg, "root") || !strcmp(arg, "root:root")) {
                *uid = *gid = 0;
                return 0;
        }
        errno = 0;
        *uid = strtoul(arg, &end, 10);
        *gid = *uid;
        if (!errno && end != arg && *end == ':' && end[1] >= '0' && end[1] <= '9') {
                const char *g = end + 1;
                *gid = strtoul(g, &end, 10);
        }
        if (errno || end == arg || *end || arg[0] < '0' || arg[0] > '9' || *uid > 0xfffffffeUL ||
            *gid > 0xfffffffeUL)
                return cli_usage("run", "--user takes root or UID[:GID] numbers, not '%s'", arg);
        return 0;
}

static int parse_args(struct cli_args *args, struct run_args *a)
{
        int rc;

        a->network = cli_flag(args, 'n');
        a->gpu = cli_flag(args, 'g');
        a->workdir = cli_arg(args, 'w');
        a->cache_dir = cli_arg(args, 'c');
        cli_foreach_value(args, v)
        {
                switch (v->opt->key) {
                case 'b':
                        if (a->n_binds == RUN_ARGS_MAX)
                                return cli_usage("run", "more than %d --bind", RUN_ARGS_MAX);
                        if ((rc = parse_bind(v->arg, &a->binds[a->n_binds])) != 0)
                                return rc;
                        a->n_binds++;
                        break;
                case 'e':
                        if (!strchr(v->arg, '=') || v->arg[0] == '=')
                                return cli_usage("run", "--env takes K=V, not '%s'", v->arg);
                        if (a->n_envs == RUN_ARGS_MAX)
                                return cli_usage("run", "more than %d --env", RUN_ARGS_MAX);
                        a->envs[a->n_envs++] = v->arg;
                        break;
                case 'u':
                        if ((rc = parse_user(v->arg, &a->uid, &a->gid)) != 0)
                                return rc;
                        break;
                default: break;
                }
        }
        /* the command's own options come after "--", where parsing stops */
        if (args->argc < 1)
                return cli_usage("run", "expected PLACE");
        a->place = args->argv[0];
        a->cmd = args->argv + 1;
        a->n_cmd = (size_t)(args->argc - 1);
        return 0;
}

/* NAME=VALUE into env, replacing one of the same name. */
static void env_set(json_t *env, const char *kv)
{
        size_t nl = (size_t)(strchr(kv, '=') - kv), i;
        json_t *v;

        json_array_foreach(env, i, v)
        {
                const char *s = json_string_value(v);
                if (s && !strncmp(s, kv, nl) && s[nl] == '=') {
                        json_array_set_new(env, i, json_string(kv));
                        return;
                }
        }
        json_array_append_new(env, json_string(kv));
}

/* The value of name in env, "" when unset. */
static const char *env_get(json_t *env, const char *name)
{
        size_t i, nl = strlen(name);
        json_t *v;

        json_array_foreach(env, i, v)
        {
                const char *s = json_string_value(v);
                if (s && !strncmp(s, name, nl) && s[nl] == '=')
                        return s + nl + 1;
        }
        return "";
}

static bool env_has(json_t *env, const char *name)
{
        return *env_get(env, name) != '\0';
}

/* The command: CMD given, else Entrypoint + Cmd of the image. */
static json_t *command_of(const struct cli_run_opts *ro, json_t *cfg)
{
        json_t *argv = json_array();

        if (ro->argc) {
                for (size_t i = 0; i < ro->argc; i++)
                        json_array_append_new(argv, json_string(ro->argv[i]));
                return argv;
        }
        if (json_is_array(json_object_get(cfg, "Entrypoint")))
                json_array_extend(argv, json_object_get(cfg, "Entrypoint"));
        if (json_is_array(json_object_get(cfg, "Cmd")))
                json_array_extend(argv, json_object_get(cfg, "Cmd"));
        return argv;
}

/* Fills o's argv and env (pointing into the JSON arrays, kept by the caller). */
static const char **strings_of(json_t *arr)
{
        const char **v = calloc(json_array_size(arr) + 1, sizeof(*v));
        size_t i;
        json_t *x;

        json_array_foreach(arr, i, x)
        {
                if (v)
                        v[i] = json_string_value(x) ? json_string_value(x) : "";
        }
        return v;
}

int cli_run_image(struct oci_store *st, const struct oci_image *img, const char *cache_dir,
                  const struct cli_run_opts *ro, int *ret_status, struct kiln_error *err)
{
        json_t *cfg = json_object_get(img->config, "config");
        _cleanup_json_ json_t *env = json_is_array(json_object_get(cfg, "Env"))
                                             ? json_deep_copy(json_object_get(cfg, "Env"))
                                             : json_array();
        _cleanup_json_ json_t *argv = command_of(ro, cfg);
        _cleanup_free_ char *tmp = kiln_strdupf("%s/run/.tmp-XXXXXX", cache_dir);
        _cleanup_free_ char *up = NULL, *wk = NULL, *rt = NULL, *libs = NULL, *ld = NULL;
        _cleanup_free_ char *bins = NULL, *path = NULL;
        _cleanup_free_ const char **av = NULL, **ev = NULL;
        _cleanup_free_ struct sandbox_bind *gpu = NULL, *binds = NULL;
        char **lowers = NULL;
        size_t n_lowers = 0, n_gpu = 0;
        struct sandbox_opts o;
        int rc = -1;

        if (!env || !argv || !tmp)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (json_array_size(argv) == 0)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "'%s' has no entrypoint or cmd: give a command after --",
                                      ro->place);
        if (ro->gpu && sandbox_gpu_binds("/dev", NULL, &gpu, &n_gpu, &libs, &bins, err) < 0)
                return -1;
        if (!env_has(env, "PATH"))
                env_set(env, "PATH=" DEFAULT_PATH);
        for (size_t i = 0; i < ro->n_envs; i++)
                env_set(env, ro->envs[i]);
        /* --gpu: the driver's directories after the image's own */
        if (libs && *libs && (ld = kiln_strdupf("LD_LIBRARY_PATH=%s%s%s", env_get(env, "LD_LIBRARY_PATH"),
                                                *env_get(env, "LD_LIBRARY_PATH") ? ":" : "", libs)))
                env_set(env, ld);
        if (bins && *bins && (path = kiln_strdupf("PATH=%s:%s", env_get(env, "PATH"), bins)))
                env_set(env, path);
        binds = calloc(ro->n_binds + n_gpu + 1, sizeof(*binds));
        av = strings_of(argv);
        ev = strings_of(env);
        if (!binds || !av || !ev)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (ro->n_binds)
                memcpy(binds, ro->binds, ro->n_binds * sizeof(*binds));
        if (n_gpu)
                memcpy(binds + ro->n_binds, gpu, n_gpu * sizeof(*binds));
        if (sandbox_rootfs_image(cache_dir, st, img, &lowers, &n_lowers, err) < 0)
                return -1;
        {
                _cleanup_free_ char *runs = kiln_strdupf("%s/run", cache_dir);
                if (!runs || kiln_mkdir_p(runs, 0700, err) < 0)
                        goto out;
                if (!mkdtemp(tmp)) {
                        kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create '%s'", tmp);
                        goto out;
                }
        }
        sandbox_opts_init(&o);
        if (sandbox_dirs_make(tmp, &o, &up, &wk, &rt, err) < 0)
                goto out;
        o.lowers = (const char *const *)lowers;
        o.n_lowers = n_lowers;
        o.argv = av;
        o.argc = json_array_size(argv);
        o.env = ev;
        o.n_env = json_array_size(env);
        o.cwd = ro->workdir ? ro->workdir
                            : json_string_value(json_object_get(cfg, "WorkingDir"));
        o.network = ro->network;
        o.uid = (uid_t)ro->uid;
        o.gid = (gid_t)ro->gid;
        o.binds = binds;
        o.n_binds = ro->n_binds + n_gpu;
        o.output = ro->output;
        o.output_ctx = ro->output_ctx;
        rc = sandbox_run(&o, ret_status, err);
out:
        /* the mkdtemp name is the template filled in, or still XXXXXX */
        if (!str_has_suffix(tmp, "XXXXXX"))
                kiln_rm_rf(tmp);
        sandbox_dirs_free(lowers, n_lowers);
        return rc;
}

int cmd_run(struct cli_args *args)
{
        struct run_args a = {0};
        struct kiln_error err = KILN_ERROR_INIT;
        _cleanup_(oci_store_freep) struct oci_store *st = NULL;
        struct layer_cache *cache = NULL;
        struct oci_image img = {0};
        int rc, status = 0;

        rc = parse_args(args, &a);
        if (rc != 0)
                goto out;
        cache = layer_cache_open(a.cache_dir, &err);
        st = cache ? cli_open_place(args, a.place, false, &err) : NULL;
        if (st && oci_image_load(st, NULL, NULL, &img, &err) == 0) {
                struct cli_run_opts ro = {
                        .argv = (const char *const *)a.cmd, .argc = a.n_cmd,
                        .envs = a.envs, .n_envs = a.n_envs, .workdir = a.workdir,
                        .network = a.network, .gpu = a.gpu, .binds = a.binds,
                        .n_binds = a.n_binds, .place = a.place, .uid = a.uid, .gid = a.gid,
                };
                rc = cli_run_image(st, &img, layer_cache_dir(cache), &ro, &status, &err);
        } else {
                rc = -1;
        }
        if (rc < 0) {
                kiln_error_prefix(&err, "run '%s'", a.place);
                rc = cli_fail(&err);
                goto out;
        }
        rc = status;
out:
        for (size_t i = 0; i < a.n_binds; i++)
                free((char *)(uintptr_t)a.binds[i].src);
        oci_image_release(&img);
        layer_cache_free(cache);
        return rc;
}
