/* kiln tag REF NEWTAG: names an image of a registry repository again by
 * putting the exact manifest bytes under the new tag. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmd_registry.h"
#include "util.h"

int cmd_tag(int argc, char **argv)
{
        static const struct option opts[] = {
                {"json", no_argument, NULL, 'J'},
                CLI_REG_OPTIONS,
                CLI_HELP_OPTION,
                {NULL, 0, NULL, 0},
        };
        struct kiln_error err = KILN_ERROR_INIT;
        struct oci_place p;
        struct reg_client *c;
        char *buf = NULL, *mt = NULL;
        size_t len = 0;
        struct oci_digest d;
        bool json = false;
        int opt, rc;

        optind = 1;
        while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                if (opt == 'h')
                        return cli_help_verb("tag");
                if (opt == 'J') {
                        json = true;
                        continue;
                }
                rc = cli_reg_option("tag", opt, optarg);
                if (rc < 0)
                        return EXIT_USAGE;
                if (rc == 0)
                        return cli_usage("tag", "invalid option");
        }
        if (optind + 2 != argc)
                return cli_usage("tag", "expected REF and NEWTAG");
        if (!oci_tag_valid(argv[optind + 1])) {
                kiln_error_set(&err, KILN_E_INVALID, "invalid tag '%s'", argv[optind + 1]);
                return cli_fail(&err);
        }
        if (oci_place_parse(argv[optind], &p, &err) < 0)
                return cli_fail(&err);
        if (p.kind != OCI_PLACE_REGISTRY) {
                oci_place_release(&p);
                kiln_error_set(&err, KILN_E_UNSUPPORTED, "kiln tag works on registry references, not '%s'",
                               argv[optind]);
                return cli_fail(&err);
        }
        c = reg_client_new(p.ref.domain, p.ref.path, &cli_reg_opts, true, &err);
        rc = c ? reg_client_get_manifest(c, oci_ref_identifier(&p.ref), &buf, &len, &mt, &d, &err)
               : -1;
        if (rc == 0) {
                if (!mt) {
                        json_t *j = json_loadb(buf, len, 0, NULL);
                        const char *m = json_string_value(json_object_get(j, "mediaType"));
                        mt = strdup(m ? m : OCI_MT_MANIFEST);
                        json_decref(j);
                }
                rc = reg_client_put_manifest(c, argv[optind + 1], mt, buf, len, &err);
        }
        reg_client_free(c);
        free(buf);
        free(mt);
        if (rc < 0) {
                kiln_error_prefix(&err, "tag '%s'", argv[optind]);
                oci_place_release(&p);
                return cli_fail(&err);
        }
        if (json)
                printf("{\"repository\":\"%s/%s\",\"tag\":\"%s\",\"digest\":\"%s\"}\n",
                       p.ref.domain, p.ref.path, argv[optind + 1], d.str);
        else
                printf("%s\n", d.str);
        oci_place_release(&p);
        return EXIT_OK;
}
