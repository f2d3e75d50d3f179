/* kiln validate PLACE --arch A: static checks of a linnaeus image. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "cmd_layers.h"
#include "io.h"
#include "json.h"
#include "unpack.h"
#include "cmd_registry.h"
#include "commands.h"
#include "recipe_validate.h"
#include "util.h"

static void on_check(void *ctx, const char *name, bool ok, const char *detail)
{
        (void)ctx;
        printf("%-4s %-12s %s\n", ok ? "ok" : "FAIL", name, detail);
}

/* --run CMD: the image unpacked into a private directory, CMD run inside
 * it with bubblewrap (no root: user namespaces), env and workdir from the
 * config.  Returns the command's exit status, or -1 with err set. */
static int run_inside(struct oci_store *st, const char *cmd, struct kiln_error *err)
{
        struct oci_image img = {0};
        struct layer_unpack_opts uo;
        struct layer_unpacker *u = NULL;
        const char *tmp = getenv("TMPDIR");
        _cleanup_free_ char *dir = kiln_strdupf("%s/kiln-run-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        char **av = NULL;
        size_t n = 0, i;
        json_t *cfg, *env, *v;
        const char *wd;
        int status = -1;
        pid_t pid;

        if (!dir || !mkdtemp(dir))
                return kiln_error_set(err, KILN_E_IO, "cannot create a directory for --run");
        layer_unpack_opts_init(&uo);
        uo.rootless = true;
        if (oci_image_load(st, NULL, NULL, &img, err) < 0)
                goto out;
        u = layer_unpacker_new(dir, &uo, err);
        if (!u)
                goto out;
        for (i = 0; i < img.m->n_layers; i++) {
                struct oci_reader *r = st->ops->open_blob(st, &img.m->layers[i], err);
                if (!r || layer_unpacker_apply(u, r, img.m->layers[i].media_type,
                                               img.m->layers[i].digest.str, err) < 0)
                        goto out;
        }
        if (layer_unpacker_finish(u, err) < 0)
                goto out;
        cfg = json_object_get(img.config, "config");
        env = json_object_get(cfg, "Env");
        wd = json_string_value(json_object_get(cfg, "WorkingDir"));
        av = calloc(32 + 3 * json_array_size(env), sizeof(*av));
        if (!av) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto out;
        }
        av[n++] = (char *)(uintptr_t)"bwrap";
        av[n++] = (char *)(uintptr_t)"--bind";
        av[n++] = dir;
        av[n++] = (char *)(uintptr_t)"/";
        av[n++] = (char *)(uintptr_t)"--dev";
        av[n++] = (char *)(uintptr_t)"/dev";
        av[n++] = (char *)(uintptr_t)"--proc";
        av[n++] = (char *)(uintptr_t)"/proc";
        av[n++] = (char *)(uintptr_t)"--unshare-all";
        av[n++] = (char *)(uintptr_t)"--die-with-parent";
        av[n++] = (char *)(uintptr_t)"--clearenv";
        json_array_foreach(env, i, v)
        {
                const char *s = json_string_value(v), *eq = s ? strchr(s, '=') : NULL;
                if (!eq)
                        continue;
                av[n++] = (char *)(uintptr_t)"--setenv";
                av[n++] = strndup(s, (size_t)(eq - s));
                av[n++] = (char *)(uintptr_t)(eq + 1);
        }
        if (wd && *wd) {
                av[n++] = (char *)(uintptr_t)"--chdir";
                av[n++] = (char *)(uintptr_t)wd;
        }
        av[n++] = (char *)(uintptr_t)"--";
        if (strchr(cmd, ' ')) {
                av[n++] = (char *)(uintptr_t)"/bin/sh";
                av[n++] = (char *)(uintptr_t)"-c";
        }
        av[n++] = (char *)(uintptr_t)cmd;
        av[n] = NULL;
        fflush(stdout);
        pid = fork();
        if (pid == 0) {
                execvp("bwrap", av);
                _exit(127);
        }
        if (pid < 0 || waitpid(pid, &status, 0) < 0) {
                kiln_error_set(err, KILN_E_IO, "cannot run bwrap");
                status = -1;
                goto out;
        }
        status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        if (status == 127)
                kiln_error_set(err, KILN_E_UNSUPPORTED,
                               "--run needs bwrap (bubblewrap) and a command that exists in the image");
out:
        if (av)
                for (i = 0; av[i]; i++)
                        if (!strcmp(av[i], "--setenv") && av[i + 1]) {
                                free(av[i + 1]); /* the names were strndup'ed */
                                i += 2;
                        }
        free(av);
        layer_unpacker_free(u);
        oci_image_release(&img);
        kiln_rm_rf(dir);
        return status;
}

int cmd_validate(struct cli_args *a)
{
        struct kiln_error err = KILN_ERROR_INIT;
        struct recipe_validate_opts o = {.check = on_check, .arch = cli_arg(a, 'a'),
                                         .python = cli_arg(a, 'y'),
                                         .source_path = cli_arg(a, 's')};
        _cleanup_(oci_store_freep) struct oci_store *st = NULL;
        unsigned fails = 0;
        const char *run = cli_arg(a, 'r');

        if (a->has_platform)
                o.platform = &a->platform;
        if (a->argc != 1)
                return cli_usage("validate", "expected one PLACE");
        if (!o.arch)
                return cli_usage("validate", "--arch is required (hopper, ampere, turing or pre-ampere)");
        st = cli_open_place(a, a->argv[0], false, &err);
        if (!st || recipe_validate_image(st, &o, &fails, &err) < 0)
                return cli_fail(&err);
        if (run) {
                int status = run_inside(st, run, &err);
                if (status < 0 || status == 127)
                        return cli_fail(&err);
                on_check(NULL, "run", status == 0, run);
                if (status != 0) {
                        fails++;
                        printf("     %-12s exit status %d\n", "", status);
                }
        }
        if (fails)
                printf("%u check%s failed\n", fails, fails == 1 ? "" : "s");
        return fails ? EXIT_FAIL : EXIT_OK;
}
