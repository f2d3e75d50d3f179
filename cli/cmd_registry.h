/* cli/cmd_registry.h: the registry verbs and what they share.  The
 * registry options (--insecure-registry, --ca-file, --authfile,
 * --retry-times, --chunk-size, --mirror) are parsed once into
 * cli_args.reg (options.h). */
#ifndef KILN_CLI_CMD_REGISTRY_H
#define KILN_CLI_CMD_REGISTRY_H

#include <stdbool.h>

#include "place.h"
#include "options.h"
#include "registry.h"

int cmd_login(struct cli_args *a);
int cmd_logout(struct cli_args *a);
int cmd_tag(struct cli_args *a);
int cmd_delete(struct cli_args *a);
int cmd_mirror(struct cli_args *a);

/* Copies the referrers of subject, and theirs, from src to dst (places as
 * written); type: only those of this artifactType at the top (NULL: all). */
int cli_copy_referrers(struct cli_args *a, const char *src, const char *dst,
                       const struct oci_digest *subject, unsigned jobs, const char *type,
                       unsigned *ret_n, struct kiln_error *err);

/* Prints the result of a copy to dst as one JSON line: digest, mediaType,
 * size, tags, blobsCopied (bytes sent), blobsMounted, blobsSkipped,
 * bytesCopied (read from the source), bytesSent (on the wire, a registry
 * destination), referrersCopied. */
void cli_print_copy_json(struct oci_store *dst, const struct oci_copy_result *res,
                         unsigned n_referrers);

/* kiln ls on a registry repository. */
int cli_ls_registry(struct cli_args *a, const struct oci_place *p, bool json);

#endif
