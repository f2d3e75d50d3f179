/* kiln copy SRC DST */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "cmd_registry.h"
#include "util.h"

struct progress {
        bool quiet;
};

static void on_progress(void *ctx, const char *event, const struct oci_descriptor *d)
{
        struct progress *p = ctx;
        char sz[32];

        if (p->quiet || strcmp(event, "done") == 0)
                return;
        cli_format_size(d->size, sz, sizeof(sz));
        fprintf(stderr, "%s %s (%s)\n", !strcmp(event, "skip") ? "exists" : "copying",
                d->digest.str, sz);
}

int cmd_copy(int argc, char **argv)
{
        static const struct option opts[] = {
                {"platform", required_argument, NULL, 'p'},
                {"quiet", no_argument, NULL, 'q'},
                {"json", no_argument, NULL, 'j'},
                {"jobs", required_argument, NULL, 'J'},
                CLI_REG_OPTIONS,
                CLI_HELP_OPTION,
                {NULL, 0, NULL, 0},
        };
        struct kiln_error err = KILN_ERROR_INIT;
        _cleanup_(oci_store_freep) struct oci_store *src = NULL;
        _cleanup_(oci_store_freep) struct oci_store *dst = NULL;
        _cleanup_free_ char *platbuf = NULL;
        struct oci_platform plat;
        struct progress prog = {0};
        struct oci_copy_opts copts = {.progress = on_progress, .progress_ctx = &prog, .jobs = 4};
        struct oci_copy_result res;
        bool json = false;
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
                case 'q': prog.quiet = true; break;
                case 'J': {
                        char *end;
                        long v = strtol(optarg, &end, 10);
                        if (*end || v < 1 || v > 32)
                                return cli_usage("copy", "--jobs takes 1 to 32, not '%s'", optarg);
                        copts.jobs = (unsigned)v;
                        break;
                }
                case 'j': json = true; prog.quiet = true; break;
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
        if (oci_image_copy(src, NULL, dst, &copts, &res, &err) < 0)
                return cli_fail(&err);
        if (oci_store_commit(dst, &err) < 0)
                return cli_fail(&err);
        if (json)
                printf("{\"digest\":\"%s\",\"mediaType\":\"%s\",\"size\":%lld,"
                       "\"blobsCopied\":%u,\"blobsSkipped\":%u,\"bytesCopied\":%lld}\n",
                       res.digest.str, res.media_type, (long long)res.size, res.blobs_copied,
                       res.blobs_skipped, (long long)res.bytes_copied);
        else
                printf("%s\n", res.digest.str);
        return EXIT_OK;
}
