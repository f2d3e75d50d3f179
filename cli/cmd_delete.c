/* kiln delete REF: deletes a manifest from a registry (by digest; a tag is
 * resolved to its digest first, which removes every tag naming it). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmd_registry.h"
#include "util.h"

int cmd_delete(struct cli_args *a)
{
        struct kiln_error err = KILN_ERROR_INIT;
        struct oci_place p;
        struct reg_client *c;
        struct oci_digest d;
        bool json = cli_flag(a, 'j');
        int rc;

        if (a->argc != 1)
                return cli_usage("delete", "expected one REF");
        if (oci_place_parse(a->argv[0], &p, &err) < 0)
                return cli_fail(&err);
        if (p.kind != OCI_PLACE_REGISTRY) {
                oci_place_release(&p);
                kiln_error_set(&err, KILN_E_UNSUPPORTED,
                               "kiln delete works on registry references, not '%s'", a->argv[0]);
                return cli_fail(&err);
        }
        c = reg_client_new(p.ref.domain, p.ref.path, &a->reg, true, &err);
        rc = c ? 0 : -1;
        if (rc == 0 && p.ref.has_digest) {
                d = p.ref.digest;
        } else if (rc == 0) {
                char *buf = NULL, *mt = NULL;
                size_t len;
                rc = reg_client_get_manifest(c, p.ref.tag, &buf, &len, &mt, &d, &err);
                free(buf);
                free(mt);
        }
        if (rc == 0)
                rc = reg_client_delete_manifest(c, &d, &err);
        reg_client_free(c);
        if (rc < 0) {
                kiln_error_prefix(&err, "delete '%s'", a->argv[0]);
                oci_place_release(&p);
                return cli_fail(&err);
        }
        if (json)
                printf("{\"deleted\":\"%s\"}\n", d.str);
        else
                printf("deleted %s\n", d.str);
        oci_place_release(&p);
        return EXIT_OK;
}
