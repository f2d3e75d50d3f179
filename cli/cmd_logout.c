/* kiln logout HOST: removes saved credentials. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cmd_registry.h"
#include "creds.h"

int cmd_logout(struct cli_args *a)
{
        struct kiln_error err = KILN_ERROR_INIT;
        const char *host;
        bool found = false;

        if (a->argc != 1)
                return cli_usage("logout", "expected one HOST");
        host = a->argv[0];
        if (!strcmp(host, "index.docker.io") || !strcmp(host, "registry-1.docker.io"))
                host = "docker.io";
        if (reg_creds_erase(a->reg.authfile, host, &found, &err) < 0)
                return cli_fail(&err);
        if (!found) {
                kiln_error_set(&err, KILN_E_NOT_FOUND, "not logged in to '%s'", host);
                return cli_fail(&err);
        }
        printf("removed credentials for '%s'\n", host);
        return EXIT_OK;
}
