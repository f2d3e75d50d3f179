/* kiln copy SRC DST */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "cmd_registry.h"
#include "progress.h"
#include "util.h"

int cmd_copy(struct cli_args *a)
{
        struct kiln_error err = KILN_ERROR_INIT;
        _cleanup_(oci_store_freep) struct oci_store *src = NULL;
        _cleanup_(oci_store_freep) struct oci_store *dst = NULL;
        struct oci_copy_opts copts = {.jobs = (unsigned)cli_num(a, CLI_K_JOBS, 4)};
        struct oci_copy_result res;
        bool json = cli_flag(a, 'j'), referrers = cli_flag(a, 'R');
        const char *artifact_type = cli_arg(a, 'A');
        unsigned n_referrers = 0;

        if (a->has_platform)
                copts.platform = &a->platform;
        if (artifact_type)
                referrers = true;
        if (a->argc != 2)
                return cli_usage("copy", "expected SRC and DST");
        src = cli_open_place(a, a->argv[0], false, &err);
        if (!src)
                return cli_fail(&err);
        dst = cli_open_place(a, a->argv[1], true, &err);
        if (!dst)
                return cli_fail(&err);
        cli_progress_begin(json ? CLI_PROGRESS_NONE : cli_progress_opt(a));
        cli_progress_attach(&copts);
        if (oci_image_copy(src, NULL, dst, &copts, &res, &err) < 0 ||
            oci_store_commit(dst, &err) < 0) {
                cli_progress_end();
                return cli_fail(&err);
        }
        cli_progress_end();
        if (referrers && cli_copy_referrers(a, a->argv[0], a->argv[1], &res.digest, copts.jobs,
                                            artifact_type, &n_referrers, &err) < 0)
                return cli_fail(&err);
        if (json)
                cli_print_copy_json(dst, &res, n_referrers);
        else
                printf("%s\n", res.digest.str);
        return EXIT_OK;
}
