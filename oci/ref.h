/* oci/ref.h: image references (distribution reference grammar).
 *
 *   reference := name [ ":" tag ] [ "@" digest ]
 *   name      := [domain "/"] path-component ("/" path-component)*
 *
 * Parsing normalizes as docker and skopeo do: no domain means
 * "docker.io", a one-component path on docker.io gets "library/", and
 * "index.docker.io" is "docker.io".  Neither tag nor digest means the tag
 * "latest" (ret->tag_implied is then true).
 */
#ifndef KILN_OCI_REF_H
#define KILN_OCI_REF_H

#include <stdbool.h>

#include "digest.h"
#include "error.h"

#define OCI_DEFAULT_DOMAIN "docker.io"
#define OCI_NAME_MAX 255
#define OCI_TAG_MAX 128

struct oci_ref {
        char *domain;  /* "docker.io", "localhost:5000", "[::1]:5000" */
        char *path;    /* "library/ubuntu" */
        char *tag;     /* NULL when only a digest was given */
        bool tag_implied;
        bool has_digest;
        struct oci_digest digest;
};

int oci_ref_parse(const char *s, struct oci_ref *ret, struct kiln_error *err);
void oci_ref_release(struct oci_ref *r);

/* "domain/path[:tag][@digest]" in a new string. */
char *oci_ref_string(const struct oci_ref *r);
/* "domain/path" in a new string. */
char *oci_ref_name(const struct oci_ref *r);
/* The tag or the digest string: what goes after /manifests/. */
const char *oci_ref_identifier(const struct oci_ref *r);

bool oci_tag_valid(const char *tag);
/* Validates one repository path ("library/ubuntu"). */
int oci_repo_path_check(const char *path, struct kiln_error *err);

#endif
