/* kiln tag REF NEWTAG: names an image of a registry repository again by
 * putting the exact manifest bytes under the new tag. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmd_registry.h"
#include "util.h"

int cmd_tag(struct cli_args *a)
{
        struct kiln_error err = KILN_ERROR_INIT;
        struct oci_place p;
        struct reg_client *c;
        char *buf = NULL, *mt = NULL;
        size_t len = 0;
        struct oci_digest d;
        bool json = cli_flag(a, 'j');
        int rc;

        if (a->argc != 2)
                return cli_usage("tag", "expected REF and NEWTAG");
        if (!oci_tag_valid(a->argv[1])) {
                kiln_error_set(&err, KILN_E_INVALID, "invalid tag '%s'", a->argv[1]);
                return cli_fail(&err);
        }
        if (oci_place_parse(a->argv[0], &p, &err) < 0)
                return cli_fail(&err);
        if (p.kind != OCI_PLACE_REGISTRY) {
                oci_place_release(&p);
                kiln_error_set(&err, KILN_E_UNSUPPORTED, "kiln tag works on registry references, not '%s'",
                               a->argv[0]);
                return cli_fail(&err);
        }
        c = reg_client_new(p.ref.domain, p.ref.path, &a->reg, true, &err);
        rc = c ? reg_client_get_manifest(c, oci_ref_identifier(&p.ref), &buf, &len, &mt, &d, &err)
               : -1;
        if (rc == 0) {
                if (!mt) {
                        json_t *j = json_loadb(buf, len, 0, NULL);
                        const char *m = json_string_value(json_object_get(j, "mediaType"));
                        mt = strdup(m ? m : OCI_MT_MANIFEST);
                        json_decref(j);
                }
                rc = reg_client_put_manifest(c, a->argv[1], mt, buf, len, &err);
        }
        reg_client_free(c);
        free(buf);
        free(mt);
        if (rc < 0) {
                kiln_error_prefix(&err, "tag '%s'", a->argv[0]);
                oci_place_release(&p);
                return cli_fail(&err);
        }
        if (json)
                printf("{\"repository\":\"%s/%s\",\"tag\":\"%s\",\"digest\":\"%s\"}\n",
                       p.ref.domain, p.ref.path, a->argv[1], d.str);
        else
                printf("%s\n", d.str);
        oci_place_release(&p);
        return EXIT_OK;
}
