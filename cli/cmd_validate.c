/* kiln validate PLACE [--recipe FILE|NAME] [--arch A] [--set K=V]...
 *               [--static | [--gpu] [--smoke CMD]] [--cache DIR] ...
 *
 * Checks an image against the "validate" object of its recipe
 * (recipes/recipe_validate.h): by default inside the image, rootless, with
 * the image's interpreter (cli_run_image, no network); --static from its
 * files alone.  Prints one line per check and exits 1 when one failed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache.h"
#include "cli.h"
#include "cmd_registry.h"
#include "cmd_run.h"
#include "commands.h"
#include "json.h"
#include "recipe.h"
#include "recipe_image.h"
#include "recipe_validate.h"
#include "sandbox.h"
#include "util.h"

#define DEFAULT_RECIPE "linnaeus"
#define NO_GPU_ASKED "a GPU check: needs --gpu (a host with NVIDIA devices)"

struct tally {
        unsigned ok, failed, skipped, gpu_skipped;
};

struct validate_args {
        const char *place, *recipe, *python, *source, *smoke, *cache_dir;
        bool is_static, gpu;
        char **sets;
        size_t n_sets;
        const struct oci_platform *platform;
};

static void on_check(void *ctx, const char *name, enum recipe_check_state st, const char *detail)
{
        struct tally *t = ctx;
        static const char *const words[] = {"ok", "FAIL", "skip"};

        if (st == RECIPE_CHECK_OK)
                t->ok++;
        else if (st == RECIPE_CHECK_FAIL)
                t->failed++;
        else
                t->skipped++;
        if (st == RECIPE_CHECK_SKIP && !strcmp(detail, NO_GPU_ASKED))
                t->gpu_skipped++;
        {
                /* names come from the recipe, details from the image: escaped */
                _cleanup_free_ char *n = kiln_text_escape_dup(name);
                printf("%-4s %-14s ", words[st], n ? n : "?");
        }
        cli_put_text(detail, stdout);
        putchar('\n');
        fflush(stdout);
}

static int parse_args(struct cli_args *args, struct validate_args *a)
{
        a->recipe = cli_arg(args, 'R');
        a->is_static = cli_flag(args, 'T');
        a->gpu = cli_flag(args, 'g');
        a->python = cli_arg(args, 'y');
        a->source = cli_arg(args, 's');
        a->cache_dir = cli_arg(args, 'c');
        if (args->has_platform)
                a->platform = &args->platform;
        cli_foreach_value(args, v)
        {
                switch (v->opt->key) {
                case 'a':
                        if (!(a->sets[a->n_sets++] = kiln_strdupf("arch=%s", v->arg)))
                                return EXIT_INTERNAL;
                        break;
                case 'S':
                        if (!(a->sets[a->n_sets++] = strdup(v->arg)))
                                return EXIT_INTERNAL;
                        break;
                case 'k':
                case 'r': /* --run: the older name of --smoke */
                        a->smoke = v->arg;
                        break;
                default: break;
                }
        }
        if (args->argc != 1)
                return cli_usage("validate", "expected one PLACE");
        if (a->is_static && (a->gpu || a->smoke))
                return cli_usage("validate", "%s runs the image: not with --static",
                                 a->gpu ? "--gpu" : "--smoke");
        a->place = args->argv[0];
        return 0;
}

/* --recipe: a file (a path, or a name ending in .json that exists), else a
 * recipe shipped with kiln; none: the shipped linnaeus recipe. */
static struct recipe *load_recipe(const char *name, struct kiln_error *err)
{
        if (!name)
                return recipe_load_shipped(DEFAULT_RECIPE, err);
        if (strchr(name, '/') || access(name, F_OK) == 0)
                return recipe_load(name, err);
        return recipe_load_shipped(name, err);
}

/* The variables the image was built with, when the recipe is the one it
 * was built from (its file name in the image's annotations); else NULL. */
static json_t *recorded_variables(const struct oci_image *img, const char *recipe_name)
{
        json_t *ann = img->m->annotations;
        const char *built = json_string_value(json_object_get(ann, RECIPE_ANN_RECIPE_NAME));
        const char *base = strrchr(recipe_name, '/') ? strrchr(recipe_name, '/') + 1 : recipe_name;
        struct kiln_error ignore = KILN_ERROR_INIT;
        json_t *j = NULL;

        if (!built || strcmp(built, base) != 0)
                return NULL;
        /* an annotation that is not an object records nothing usable */
        recipe_image_recorded_variables(ann, "the image", &j, &ignore);
        return j;
}

static void on_output(void *ctx, const char *buf, size_t len)
{
        recipe_validate_reader_feed(ctx, buf, len);
}

/* --gpu: whether the host has NVIDIA devices to bind; a check of its own. */
static bool gpu_probe(const struct recipe_validate_report *rep)
{
        struct kiln_error err = KILN_ERROR_INIT;
        struct sandbox_bind *b = NULL;
        char detail[KILN_ERROR_MSG_SIZE + 64];
        size_t n = 0, devs = 0;

        if (sandbox_gpu_binds("/dev", NULL, &b, &n, NULL, NULL, &err) < 0) {
                snprintf(detail, sizeof(detail), "%s: the GPU checks cannot run", err.msg);
                rep->check(rep->ctx, "gpu", RECIPE_CHECK_FAIL, detail);
                return false;
        }
        for (size_t i = 0; i < n; i++)
                if (str_has_prefix(b[i].dst, "/dev/nvidia") &&
                    b[i].dst[11] >= '0' && b[i].dst[11] <= '9')
                        devs++;
        snprintf(detail, sizeof(detail), "%zu NVIDIA device%s and the driver's files bound", devs,
                 devs == 1 ? "" : "s");
        free(b);
        rep->check(rep->ctx, "gpu", RECIPE_CHECK_OK, detail);
        return true;
}

/* The checks in the image; -1 only when the sandbox cannot run at all. */
static int in_image(const struct validate_args *a, struct oci_store *st,
                    const struct oci_image *img, const char *cache_dir, const json_t *spec,
                    bool gpu, const struct recipe_validate_report *rep, struct kiln_error *err)
{
        struct recipe_validate_reader *rd = NULL;
        _cleanup_free_ char **argv = NULL;
        const char *gpu_skip = !a->gpu ? NO_GPU_ASKED : gpu ? NULL : "no NVIDIA device to run on";
        struct cli_run_opts ro = {0};
        struct kiln_error e2 = KILN_ERROR_INIT;
        size_t n = 0;
        int status = 0, rc = -1;

        if (recipe_validate_script(spec, gpu_skip, &argv, err) < 0 ||
            !(rd = recipe_validate_reader_new(spec, rep, err)))
                goto out;
        while (argv[n])
                n++;
        ro.argv = (const char *const *)argv;
        ro.argc = n;
        ro.gpu = gpu;
        ro.output = on_output;
        ro.output_ctx = rd;
        ro.place = a->place;
        if (cli_run_image(st, img, cache_dir, &ro, &status, &e2) < 0) {
                /* an interpreter the image lacks is a failed check; a
                 * sandbox that cannot start is kiln's error */
                if (e2.code != KILN_E_NOT_FOUND) {
                        *err = e2;
                        kiln_error_prefix(err, "cannot run the checks in '%s' (--static checks "
                                               "its files only)",
                                          a->place);
                        goto out;
                }
                recipe_validate_reader_finish(rd, -1, e2.msg);
        } else {
                recipe_validate_reader_finish(rd, status, NULL);
        }
        rc = 0;
out:
        recipe_validate_reader_free(rd);
        return rc;
}

/* --smoke CMD: sh -c CMD in the image, its output kiln's, its status a check. */
static int smoke(const struct validate_args *a, struct oci_store *st, const struct oci_image *img,
                 const char *cache_dir, bool gpu, const struct recipe_validate_report *rep,
                 struct kiln_error *err)
{
        const char *argv[] = {"/bin/sh", "-c", a->smoke, NULL};
        struct cli_run_opts ro = {.argv = argv, .argc = 3, .gpu = gpu, .place = a->place};
        struct kiln_error e2 = KILN_ERROR_INIT;
        char detail[1200];
        int status = 0;

        if (a->gpu && !gpu) {
                rep->check(rep->ctx, "smoke", RECIPE_CHECK_SKIP,
                           "not run: --gpu asked for a GPU and there is none");
                return 0;
        }
        printf("---- smoke: %s\n", a->smoke);
        fflush(stdout);
        if (cli_run_image(st, img, cache_dir, &ro, &status, &e2) < 0) {
                if (e2.code != KILN_E_NOT_FOUND) {
                        *err = e2;
                        return -1;
                }
                printf("----\n");
                rep->check(rep->ctx, "smoke", RECIPE_CHECK_FAIL, e2.msg);
                return 0;
        }
        printf("----\n");
        snprintf(detail, sizeof(detail), "exit status %d: %s", status, a->smoke);
        rep->check(rep->ctx, "smoke", status == 0 ? RECIPE_CHECK_OK : RECIPE_CHECK_FAIL, detail);
        return 0;
}

static int validate(const struct validate_args *a, struct oci_store *st, struct tally *t,
                    struct kiln_error *err)
{
        struct recipe_validate_report rep = {.check = on_check, .ctx = t};
        _cleanup_(recipe_freep) struct recipe *r = NULL;
        _cleanup_json_ json_t *recorded = NULL;
        _cleanup_json_ json_t *spec = NULL;
        struct layer_cache *cache = NULL;
        struct oci_image img = {0};
        const char *prof, *built;
        bool gpu = false;
        int rc = -1;

        if (oci_image_load(st, NULL, a->platform, &img, err) < 0)
                goto out;
        built = json_string_value(json_object_get(img.m->annotations, RECIPE_ANN_RECIPE_NAME));
        if (!a->recipe && built && strcmp(built, DEFAULT_RECIPE ".json") != 0) {
                kiln_error_set(err, KILN_E_USAGE,
                               "'%s' was built from recipe '%s': give it with --recipe FILE",
                               a->place, built);
                goto out;
        }
        if (!(r = load_recipe(a->recipe, err)))
                goto out;
        recorded = recorded_variables(&img, a->recipe ? a->recipe : DEFAULT_RECIPE ".json");
        if (recipe_validate_spec(r, recorded, (const char *const *)a->sets, a->n_sets, &spec,
                                 err) < 0)
                goto out;
        if (a->python)
                json_object_set_new(spec, "python", json_string(a->python));
        if (a->source)
                json_object_set_new(spec, "source", json_string(a->source));
        prof = json_string_value(json_object_get(spec, "profile"));
        {
                _cleanup_free_ char *head = kiln_strdupf(
                        "validate %s: recipe %s%s%s, %s", a->place,
                        a->recipe ? a->recipe : DEFAULT_RECIPE " (shipped)", prof ? ", " : "",
                        prof ? prof : "", a->is_static ? "from its files (--static)" : "in the image");
                cli_put_text(head ? head : "validate", stdout);
                putchar('\n');
        }
        recipe_validate_config(spec, img.config, &rep);
        if (a->is_static) {
                rc = recipe_validate_static(st, &img, spec, &rep, err);
                goto out;
        }
        if (!(cache = layer_cache_open(a->cache_dir, err)))
                goto out;
        if (a->gpu)
                gpu = gpu_probe(&rep);
        if (in_image(a, st, &img, layer_cache_dir(cache), spec, gpu, &rep, err) < 0 ||
            (a->smoke && smoke(a, st, &img, layer_cache_dir(cache), gpu, &rep, err) < 0))
                goto out;
        if (t->gpu_skipped)
                printf("GPU checks skipped (%u): they run with --gpu, on a host with NVIDIA "
                       "devices\n",
                       t->gpu_skipped);
        rc = 0;
out:
        layer_cache_free(cache);
        oci_image_release(&img);
        return rc;
}

int cmd_validate(struct cli_args *args)
{
        struct validate_args a = {0};
        struct kiln_error err = KILN_ERROR_INIT;
        _cleanup_(oci_store_freep) struct oci_store *st = NULL;
        struct tally t = {0};
        int rc;

        a.sets = calloc(args->n_values + 1, sizeof(*a.sets));
        if (!a.sets)
                return EXIT_INTERNAL;
        rc = parse_args(args, &a);
        if (rc != 0)
                goto out;
        st = cli_open_place(args, a.place, false, &err);
        if (!st || validate(&a, st, &t, &err) < 0) {
                if (err.code == KILN_E_USAGE) {
                        rc = cli_usage("validate", "%s", err.msg);
                        goto out;
                }
                kiln_error_prefix(&err, "validate '%s'", a.place);
                rc = cli_fail(&err);
                goto out;
        }
        if (t.failed)
                printf("%u check%s failed\n", t.failed, t.failed == 1 ? "" : "s");
        else
                printf("all %u checks passed (%u skipped)\n", t.ok, t.skipped);
        rc = t.failed ? EXIT_FAIL : EXIT_OK;
out:
        for (size_t i = 0; i < a.n_sets; i++)
                free(a.sets[i]);
        free(a.sets);
        return rc;
}
