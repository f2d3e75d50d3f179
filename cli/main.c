/* kiln: a daemonless OCI image assembler.  main() parses the command line
 * once, from the option table (options.h, verbs.c), and runs the verb's
 * cmd_<verb>() (one per file); see docs/kiln.1. */
#include <stdio.h>

#include "cli.h"
#include "json.h"
#include "options.h"

int main(int argc, char **argv)
{
        struct cli_args a;
        struct kiln_error err = KILN_ERROR_INIT;
        size_t limit;
        int rc = EXIT_OK;

        cli_args_init(&a);
        if (cli_parse(&a, argc, argv, &err) < 0) {
                if (err.code != KILN_E_USAGE) {
                        rc = cli_fail(&err);
                } else if (a.verb) {
                        rc = cli_usage(a.verb->name, "%s", err.msg);
                } else {
                        fprintf(stderr, "kiln: %s\n", err.msg);
                        rc = EXIT_USAGE;
                }
        } else if (cli_flag(&a, CLI_K_VERSION)) {
                printf("kiln %s\n", KILN_VERSION);
        } else if (a.help && a.verb) {
                cli_help_print(a.verb, stdout);
        } else if (!a.verb) {
                cli_overview_print(a.help ? stdout : stderr);
                rc = a.help ? EXIT_OK : EXIT_USAGE;
        } else if (oci_manifest_limit_get(&limit, &err) < 0) {
                /* a bad limit in the environment is refused, not silently replaced */
                rc = cli_fail(&err);
        } else {
                rc = a.verb->fn(&a);
        }
        cli_args_release(&a);
        return rc;
}
