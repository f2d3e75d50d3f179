/* kiln logout HOST: removes saved credentials. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cmd_registry.h"
#include "creds.h"

int cmd_logout(int argc, char **argv)
{
        static const struct option opts[] = {
                CLI_REG_OPTIONS,
                CLI_HELP_OPTION,
                {NULL, 0, NULL, 0},
        };
        struct kiln_error err = KILN_ERROR_INIT;
        const char *host;
        bool found = false;
        int opt, rc;

        optind = 1;
        while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                if (opt == 'h')
                        return cli_help_verb("logout");
                rc = cli_reg_option("logout", opt, optarg);
                if (rc < 0)
                        return EXIT_USAGE;
                if (rc == 0)
                        return cli_usage("logout", "invalid option");
        }
        if (optind + 1 != argc)
                return cli_usage("logout", "expected one HOST");
        host = argv[optind];
        if (!strcmp(host, "index.docker.io") || !strcmp(host, "registry-1.docker.io"))
                host = "docker.io";
        if (reg_creds_erase(cli_reg_opts.authfile, host, &found, &err) < 0)
                return cli_fail(&err);
        if (!found) {
                kiln_error_set(&err, KILN_E_NOT_FOUND, "not logged in to '%s'", host);
                return cli_fail(&err);
        }
        printf("removed credentials for '%s'\n", host);
        return EXIT_OK;
}
