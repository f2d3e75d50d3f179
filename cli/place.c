/* Opening a place for a verb: a layout, an archive or a registry. */
#include <stdlib.h>
#include <string.h>

#include "archive_store.h"
#include "cli.h"
#include "options.h"
#include "place.h"

struct oci_store *cli_open_place(struct cli_args *a, const char *s, bool for_write,
                                 struct kiln_error *err)
{
        struct oci_place p;
        struct oci_store *st = NULL;

        if (oci_place_parse(s, &p, err) < 0)
                return NULL;
        switch (p.kind) {
        case OCI_PLACE_LAYOUT:
                st = oci_layout_store_new(p.path, p.tag, for_write, err);
                break;
        case OCI_PLACE_OCI_ARCHIVE:
        case OCI_PLACE_DOCKER_ARCHIVE:
                st = layer_archive_store_new(p.kind == OCI_PLACE_DOCKER_ARCHIVE, p.path, p.tag,
                                             for_write, err);
                break;
        case OCI_PLACE_REGISTRY:
                if (cli_reg_conf(a, err) == 0)
                        st = reg_store_new(&p.ref, &a->reg, for_write, err);
                break;
        }
        oci_place_release(&p);
        return st;
}
