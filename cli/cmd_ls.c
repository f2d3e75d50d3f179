/* kiln ls PLACE: the tags of an OCI layout */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "cmd_registry.h"
#include "json.h"
#include "layout.h"
#include "place.h"
#include "util.h"

int cmd_ls(struct cli_args *a)
{
        struct kiln_error err = KILN_ERROR_INIT;
        struct oci_place p;
        struct oci_layout *l;
        _cleanup_free_ char *buf = NULL;
        struct oci_index *x = NULL;
        size_t len;
        bool json = cli_flag(a, 'j');

        if (a->argc != 1)
                return cli_usage("ls", "expected one PLACE");
        if (oci_place_parse(a->argv[0], &p, &err) < 0)
                return cli_fail(&err);
        if (p.kind == OCI_PLACE_REGISTRY) {
                int rc = cli_ls_registry(a, &p, json);
                oci_place_release(&p);
                return rc;
        }
        if (p.kind != OCI_PLACE_LAYOUT) {
                oci_place_release(&p);
                kiln_error_set(&err, KILN_E_UNSUPPORTED, "cannot list tags of '%s' in this build",
                               a->argv[0]);
                return cli_fail(&err);
        }
        l = oci_layout_open(p.path, false, &err);
        oci_place_release(&p);
        if (!l)
                return cli_fail(&err);
        if (oci_layout_read_index(l, &buf, &len, &err) < 0 ||
            oci_index_parse(buf, len, OCI_MT_INDEX, &x, &err) < 0) {
                oci_layout_free(l);
                return cli_fail(&err);
        }
        if (json)
                printf("[");
        for (size_t i = 0, n = 0; i < x->n_manifests; i++) {
                const char *t = json_string_value(
                        json_object_get(x->manifests[i].annotations, OCI_REF_NAME_ANNOTATION));
                if (!t)
                        continue;
                if (json) {
                        json_t *s = json_string(t);
                        char *q = json_dumps(s, JSON_ENCODE_ANY);
                        printf("%s{\"tag\":%s,\"digest\":\"%s\"}", n++ ? "," : "", q ? q : "\"\"",
                               x->manifests[i].digest.str);
                        free(q);
                        json_decref(s);
                } else {
                        cli_put_text(t, stdout); /* a layout's ref.name: its author's text */
                        printf("\t%s\n", x->manifests[i].digest.str);
                }
        }
        if (json)
                printf("]\n");
        oci_index_free(x);
        oci_layout_free(l);
        return EXIT_OK;
}
