/* kiln build RECIPE: the recipe's image, built and written to a layout or
 * pushed.  --dry-run and --stage go to cmd_build_plan (cli/cmd_plan.c). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmd_recipes.h"
#include "cmd_registry.h"
#include "commands.h"
#include "recipe.h"
#include "recipe_image.h"
#include "util.h"

#define DEFAULT_OUTPUT "oci:kiln-out"

static struct oci_store *open_place(void *ctx, const char *place, bool for_write,
                                    struct kiln_error *err)
{
        (void)ctx;
        return cli_open_place(place, for_write, err);
}

static void on_progress(void *ctx, const char *msg)
{
        if (!*(bool *)ctx)
                fprintf(stderr, "%s\n", msg);
}

int cmd_build(int argc, char **argv)
{
        static const struct option opts[] = {
                {"arch", required_argument, NULL, 'a'},
                {"source", required_argument, NULL, 's'},
                {"branch", required_argument, NULL, 'b'},
                {"tag-suffix", required_argument, NULL, 't'},
                {"set", required_argument, NULL, 'S'},
                {"push", no_argument, NULL, 'P'},
                {"output", required_argument, NULL, 'o'},
                {"cache", required_argument, NULL, 'c'},
                {"compression", required_argument, NULL, 'C'},
                {"level", required_argument, NULL, 'L'},
                {"platform", required_argument, NULL, 'p'},
                {"jobs", required_argument, NULL, 'J'},
                {"json", no_argument, NULL, 'j'},
                {"quiet", no_argument, NULL, 'q'},
                CLI_REG_OPTIONS,
                CLI_HELP_OPTION,
                {NULL, 0, NULL, 0},
        };
        struct kiln_error err = KILN_ERROR_INIT;
        _cleanup_free_ char **sets = NULL;
        _cleanup_free_ char *platbuf = NULL;
        struct recipe *r = NULL;
        struct recipe_image_opts o = {.open_place = open_place, .progress = on_progress, .jobs = 4};
        struct recipe_image_result res = {0};
        struct oci_platform plat;
        size_t n_sets = 0;
        bool push = false, json = false, quiet = false;
        int opt, rc = EXIT_OK;

        for (int i = 1; i < argc; i++)
                if (!strcmp(argv[i], "--dry-run") || !strcmp(argv[i], "--stage") ||
                    !strncmp(argv[i], "--stage=", 8))
                        return cmd_build_plan(argc, argv);
        sets = calloc((size_t)argc + 1, sizeof(*sets));
        if (!sets)
                return EXIT_INTERNAL;
        layer_writer_opts_init(&o.writer);
        o.progress_ctx = &quiet;
        optind = 1;
        while ((opt = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
                const char *var = NULL;
                switch (opt) {
                case 'a': var = "arch"; break;
                case 's': var = "source"; break;
                case 'b': var = "branch"; break;
                case 't': var = "tag_suffix"; break;
                case 'S': sets[n_sets++] = strdup(optarg); break;
                case 'P': push = true; break;
                case 'o': o.output = optarg; break;
                case 'c': o.cache_dir = optarg; break;
                case 'C':
                        if (layer_compression_parse(optarg, &o.writer.compression, &err) < 0) {
                                rc = cli_fail(&err);
                                goto out;
                        }
                        break;
                case 'L': {
                        char *end;
                        long v = strtol(optarg, &end, 10);
                        if (*end || v < 0 || v > 22) {
                                rc = cli_usage("build", "--level takes 0 to 22, not '%s'", optarg);
                                goto out;
                        }
                        o.writer.level = (int)v;
                        break;
                }
                case 'p':
                        free(platbuf);
                        platbuf = strdup(optarg);
                        if (!platbuf || oci_platform_parse(platbuf, &plat, &err) < 0) {
                                rc = cli_fail(&err);
                                goto out;
                        }
                        o.platform = &plat;
                        break;
                case 'J': {
                        char *end;
                        long v = strtol(optarg, &end, 10);
                        if (*end || v < 1 || v > 32) {
                                rc = cli_usage("build", "--jobs takes 1 to 32, not '%s'", optarg);
                                goto out;
                        }
                        o.jobs = (unsigned)v;
                        break;
                }
                case 'j': json = true; quiet = true; break;
                case 'q': quiet = true; break;
                case 'h': rc = cli_help_verb("build"); goto out;
                default: {
                        int k = cli_reg_option("build", opt, optarg);
                        if (k < 0) {
                                rc = EXIT_USAGE;
                                goto out;
                        }
                        if (k == 0) {
                                rc = cli_usage("build", "invalid option");
                                goto out;
                        }
                }
                }
                if (var)
                        sets[n_sets++] = kiln_strdupf("%s=%s", var, optarg);
        }
        if (optind + 1 != argc) {
                rc = cli_usage("build", optind >= argc ? "missing RECIPE" : "too many arguments");
                goto out;
        }
        if (push && o.output) {
                rc = cli_usage("build", "--push and --output exclude each other");
                goto out;
        }
        if (!push && !o.output)
                o.output = DEFAULT_OUTPUT;
        o.sets = (const char *const *)sets;
        o.n_sets = n_sets;
        r = recipe_load(argv[optind], &err);
        if (!r || recipe_image_build(r, &o, &res, &err) < 0) {
                rc = cli_fail(&err);
                goto out;
        }
        if (json) {
                json_t *j = json_object(), *tags = json_array();
                char *s;
                for (size_t i = 0; i < res.n_tags; i++)
                        json_array_append_new(tags, json_string(res.tags[i]));
                json_object_set_new(j, "digest", json_string(res.digest.str));
                json_object_set_new(j, "tags", tags);
                json_object_set_new(j, "output", push ? json_null() : json_string(o.output));
                if (res.revision)
                        json_object_set_new(j, "revision", json_string(res.revision));
                json_object_set_new(j, "layersBuilt", json_integer(res.layers_built));
                json_object_set_new(j, "layersCached", json_integer(res.layers_cached));
                json_object_set_new(j, "blobsCopied", json_integer(res.blobs_copied));
                json_object_set_new(j, "blobsSkipped", json_integer(res.blobs_skipped));
                s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
                printf("%s\n", s ? s : "{}");
                free(s);
                json_decref(j);
        } else {
                for (size_t i = 0; i < res.n_tags; i++)
                        printf("%s\n", res.tags[i]);
                printf("%s\n", res.digest.str);
        }
out:
        recipe_image_result_release(&res);
        recipe_free(r);
        for (size_t i = 0; i < n_sets; i++)
                free(sets[i]);
        return rc;
}
