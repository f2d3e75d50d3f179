/* kiln copy SRC DST */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "cmd_registry.h"
#include "progress.h"
#include "util.h"

int cmd_copy(int argc, char **argv)
{
        static const struct option opts[] = {
                {"platform", required_argument, NULL, 'p'},
                {"quiet", no_argument, NULL, 'q'},
                {"progress", required_argument, NULL, 'G'},
                {"json", no_argument, NULL, 'j'},
                {"jobs", required_argument, NULL, 'J'},
                {"referrers", no_argument, NULL, 'R'},
                {"artifact-type", required_argument, NULL, 'A'},
                CLI_REG_OPTIONS,
                CLI_HELP_OPTION,
                {NULL, 0, NULL, 0},
        };
        struct kiln_error err = KILN_ERROR_INIT;
        _cleanup_(oci_store_freep) struct oci_store *src = NULL;
        _cleanup_(oci_store_freep) struct oci_store *dst = NULL;
        _cleanup_free_ char *platbuf = NULL;
        struct oci_platform plat;
        struct oci_copy_opts copts = {.jobs = 4};
        struct oci_copy_result res;
        enum cli_progress_mode pmode = CLI_PROGRESS_AUTO;
        bool json = false, referrers = false, quiet = false;
        const char *artifact_type = NULL;
        unsigned n_referrers = 0;
        int opt;

        optind = 1;
        while ((opt = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
                switch (opt) {
                case 'p':
                        free(platbuf);
                        platbuf = strdup(optarg);
                        if (!platbuf || oci_platform_parse(platbuf, &plat, &err) < 0)
                                return cli_fail(&err);
                        copts.platform = &plat;
                        break;
                case 'q': quiet = true; break;
                case 'G':
                        if (cli_progress_parse(optarg, &pmode) < 0)
                                return cli_usage("copy", "--progress takes auto, plain, tty or "
                                                         "none, not '%s'", optarg);
                        break;
                case 'R': referrers = true; break;
                case 'A': artifact_type = optarg; referrers = true; break;
                case 'J': {
                        char *end;
                        long v = strtol(optarg, &end, 10);
                        if (*end || v < 1 || v > 32)
                                return cli_usage("copy", "--jobs takes 1 to 32, not '%s'", optarg);
                        copts.jobs = (unsigned)v;
                        break;
                }
                case 'j': json = true; break;
                case 'h': return cli_help_verb("copy");
                default: {
                        int rc = cli_reg_option("copy", opt, optarg);
                        if (rc < 0)
                                return EXIT_USAGE;
                        if (rc == 0)
                                return cli_usage("copy", "invalid option");
                }
                }
        }
        if (optind + 2 != argc)
                return cli_usage("copy", "expected SRC and DST");
        src = cli_open_place(argv[optind], false, &err);
        if (!src)
                return cli_fail(&err);
        dst = cli_open_place(argv[optind + 1], true, &err);
        if (!dst)
                return cli_fail(&err);
        cli_progress_begin(quiet || json ? CLI_PROGRESS_NONE : pmode);
        cli_progress_attach(&copts);
        if (oci_image_copy(src, NULL, dst, &copts, &res, &err) < 0 ||
            oci_store_commit(dst, &err) < 0) {
                cli_progress_end();
                return cli_fail(&err);
        }
        cli_progress_end();
        if (referrers && cli_copy_referrers(argv[optind], argv[optind + 1], &res.digest, copts.jobs, artifact_type,
                                            &n_referrers, &err) < 0)
                return cli_fail(&err);
        if (json)
                cli_print_copy_json(dst, &res, n_referrers);
        else
                printf("%s\n", res.digest.str);
        return EXIT_OK;
}
