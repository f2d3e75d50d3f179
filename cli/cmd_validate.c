/* kiln validate PLACE --arch A: static checks of a linnaeus image. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmd_registry.h"
#include "commands.h"
#include "recipe_validate.h"
#include "util.h"

static void on_check(void *ctx, const char *name, bool ok, const char *detail)
{
        (void)ctx;
        printf("%-4s %-12s %s\n", ok ? "ok" : "FAIL", name, detail);
}

int cmd_validate(int argc, char **argv)
{
        static const struct option opts[] = {
                {"arch", required_argument, NULL, 'a'},
                {"python", required_argument, NULL, 'y'},
                {"source-path", required_argument, NULL, 's'},
                {"platform", required_argument, NULL, 'p'},
                CLI_REG_OPTIONS,
                CLI_HELP_OPTION,
                {NULL, 0, NULL, 0},
        };
        struct kiln_error err = KILN_ERROR_INIT;
        struct recipe_validate_opts o = {.check = on_check};
        _cleanup_(oci_store_freep) struct oci_store *st = NULL;
        _cleanup_free_ char *platbuf = NULL;
        struct oci_platform plat;
        unsigned fails = 0;
        int opt;

        optind = 1;
        while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (opt) {
                case 'a': o.arch = optarg; break;
                case 'y': o.python = optarg; break;
                case 's': o.source_path = optarg; break;
                case 'p':
                        free(platbuf);
                        platbuf = strdup(optarg);
                        if (!platbuf || oci_platform_parse(platbuf, &plat, &err) < 0)
                                return cli_fail(&err);
                        o.platform = &plat;
                        break;
                case 'h': return cli_help_verb("validate");
                default: {
                        int k = cli_reg_option("validate", opt, optarg);
                        if (k < 0)
                                return EXIT_USAGE;
                        if (k == 0)
                                return cli_usage("validate", "invalid option");
                }
                }
        }
        if (optind + 1 != argc)
                return cli_usage("validate", "expected one PLACE");
        if (!o.arch)
                return cli_usage("validate", "--arch is required (hopper, ampere or pre-ampere)");
        st = cli_open_place(argv[optind], false, &err);
        if (!st || recipe_validate_image(st, &o, &fails, &err) < 0)
                return cli_fail(&err);
        if (fails)
                printf("%u check%s failed\n", fails, fails == 1 ? "" : "s");
        return fails ? EXIT_FAIL : EXIT_OK;
}
