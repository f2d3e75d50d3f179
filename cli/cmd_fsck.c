/* kiln fsck oci:DIR */
#include <getopt.h>
#include <stdio.h>

#include "cli.h"
#include "commands.h"
#include "fsck.h"
#include "place.h"

static void report(void *ctx, const char *line)
{
        (void)ctx;
        printf("problem: %s\n", line);
}

int cmd_fsck(int argc, char **argv)
{
        static const struct option opts[] = {
                {"quiet", no_argument, NULL, 'q'},
                CLI_HELP_OPTION,
                {NULL, 0, NULL, 0},
        };
        struct kiln_error err = KILN_ERROR_INIT;
        struct oci_fsck_result res;
        struct oci_place p;
        struct oci_layout *l;
        bool quiet = false;
        int opt;

        optind = 1;
        while ((opt = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
                switch (opt) {
                case 'q': quiet = true; break;
                case 'h': return cli_help_verb("fsck");
                default: return cli_usage("fsck", "invalid option");
                }
        }
        if (optind + 1 != argc)
                return cli_usage("fsck", "expected one oci:DIR");
        if (oci_place_parse(argv[optind], &p, &err) < 0)
                return cli_fail(&err);
        if (p.kind != OCI_PLACE_LAYOUT) {
                oci_place_release(&p);
                return cli_usage("fsck", "'%s' is not an OCI layout (oci:DIR)", argv[optind]);
        }
        l = oci_layout_open(p.path, false, &err);
        oci_place_release(&p);
        if (!l)
                return cli_fail(&err);
        oci_layout_fsck(l, report, NULL, &res, &err);
        oci_layout_free(l);
        if (!quiet)
                printf("%u blobs checked, %u problems%s", res.blobs_checked, res.problems,
                       res.temp_files ? "" : "\n");
        if (!quiet && res.temp_files)
                printf(", %u leftover temp files of interrupted writes\n", res.temp_files);
        return res.problems ? EXIT_FAIL : EXIT_OK;
}
