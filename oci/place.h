/* oci/place.h: where an image lives, as the user writes it.
 *
 *   oci:DIR[:TAG]               an OCI image layout
 *   oci-archive:FILE[:TAG]      a tar of an OCI image layout
 *   docker-archive:FILE[:REF]   the tarball of `docker save` / `docker load`
 *   docker://REF  or  REF       a registry reference
 *
 * As in skopeo, the path ends at the first ':' after the transport.
 * Opening a place is cli/'s job (it knows every library); this module only
 * parses.
 */
#ifndef KILN_OCI_PLACE_H
#define KILN_OCI_PLACE_H

#include <stdbool.h>

#include "error.h"
#include "ref.h"

enum oci_place_kind {
        OCI_PLACE_LAYOUT,
        OCI_PLACE_OCI_ARCHIVE,
        OCI_PLACE_DOCKER_ARCHIVE,
        OCI_PLACE_REGISTRY,
};

struct oci_place {
        enum oci_place_kind kind;
        char *path; /* layout dir or archive file */
        char *tag;  /* oci tag, or docker-archive reference; NULL when absent */
        struct oci_ref ref; /* registry places */
};

/* The name of the empty base (as in Dockerfiles); not a place of its own:
 * the verbs that take a base check for it before oci_place_parse. */
#define OCI_SCRATCH "scratch"

int oci_place_parse(const char *s, struct oci_place *ret, struct kiln_error *err);
void oci_place_release(struct oci_place *p);
/* True when s parses as a registry place (not scratch, a layout or an archive). */
bool oci_place_is_registry(const char *s);
const char *oci_place_kind_name(enum oci_place_kind k);

#endif
