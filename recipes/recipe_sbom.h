/* recipes/recipe_sbom.h: the SBOM of a built image (kiln build --sbom).
 *
 * An SPDX 2.3 JSON document (https://spdx.github.io/spdx-spec/v2.3/) whose
 * one described package is the image (its manifest digest as version and
 * checksum, a pkg:oci purl) and which lists every wheel and .deb the
 * recipe's layers install (recipes/stage.h: recipe_stage_result.packages)
 * with its version, the sha256 of the file, where it came from and a purl
 * (pkg:pypi/NAME@VERSION, pkg:deb/debian/NAME@VERSION?arch=ARCH), each one
 * CONTAINed by the image, and the dependencies a wheels layer resolved as
 * DEPENDS_ON relationships between them.
 *
 * The same image and inventory always give the same bytes: compact JSON in
 * a fixed key order, packages sorted and deduplicated, `created` given by
 * the caller (the image's, from SOURCE_DATE_EPOCH), and a documentNamespace
 * made of the image digest and the digest of the listed content, never a
 * random identifier.
 *
 *     recipe_sbom_document(&img, packages, &buf, &len, &err);
 *     ... put buf as the layer of an artifact whose subject is the image ...
 */
#ifndef KILN_RECIPES_SBOM_H
#define KILN_RECIPES_SBOM_H

#include <jansson.h>
#include <stddef.h>

#include "digest.h"
#include "error.h"

#define RECIPE_SBOM_MEDIA_TYPE "application/spdx+json"

struct recipe_sbom_image {
        const char *name;                 /* the main reference, "HOST/REPO:TAG" */
        const struct oci_digest *digest;  /* of the image manifest */
        const char *created;              /* "YYYY-MM-DDTHH:MM:SSZ" */
};

/* packages: an array of inventory entries (stage.h), layers bottom to top;
 * entries that differ in nothing but where they came from are listed once. */
int recipe_sbom_document(const struct recipe_sbom_image *img, const json_t *packages,
                         char **ret_buf, size_t *ret_len, struct kiln_error *err);

#endif
