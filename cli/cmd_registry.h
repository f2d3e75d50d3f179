/* cli/cmd_registry.h: the registry verbs and the options every verb that
 * touches a registry takes (--insecure-registry, --ca-file, --authfile,
 * --retry-times, --chunk-size, --mirror). */
#ifndef KILN_CLI_CMD_REGISTRY_H
#define KILN_CLI_CMD_REGISTRY_H

#include <getopt.h>
#include <stdbool.h>

#include "place.h"
#include "registry.h"

int cmd_login(int argc, char **argv);
int cmd_logout(int argc, char **argv);
int cmd_tag(int argc, char **argv);
int cmd_delete(int argc, char **argv);
int cmd_mirror(int argc, char **argv);

/* The registry options of this run, filled by cli_reg_option(). */
extern struct reg_options cli_reg_opts;

enum {
        CLI_OPT_INSECURE = 0x1000,
        CLI_OPT_CA_FILE,
        CLI_OPT_AUTHFILE,
        CLI_OPT_RETRY_TIMES,
        CLI_OPT_CHUNK_SIZE,
        CLI_OPT_MIRROR,
};

#define CLI_REG_OPTIONS                                                                            \
        {"insecure-registry", required_argument, NULL, CLI_OPT_INSECURE},                          \
                {"ca-file", required_argument, NULL, CLI_OPT_CA_FILE},                             \
                {"authfile", required_argument, NULL, CLI_OPT_AUTHFILE},                           \
                {"retry-times", required_argument, NULL, CLI_OPT_RETRY_TIMES},                     \
                {"chunk-size", required_argument, NULL, CLI_OPT_CHUNK_SIZE},                       \
                {"mirror", required_argument, NULL, CLI_OPT_MIRROR}

/* Handles one of CLI_REG_OPTIONS: 1 handled, 0 not ours, -1 bad value
 * (usage printed for verb). */
int cli_reg_option(const char *verb, int opt, const char *arg);

/* Reads containers-registries.conf once (registry/hosts.h) into
 * cli_reg_opts.conf; -1 with err set when a file is malformed. */
int cli_reg_conf(struct kiln_error *err);

/* Copies the referrers of subject, and theirs, from src to dst (places as
 * written); type: only those of this artifactType at the top (NULL: all). */
int cli_copy_referrers(const char *src, const char *dst, const struct oci_digest *subject,
                       unsigned jobs, const char *type, unsigned *ret_n, struct kiln_error *err);

/* Prints the result of a copy to dst as one JSON line: digest, mediaType,
 * size, tags, blobsCopied (bytes sent), blobsMounted, blobsSkipped,
 * bytesCopied (read from the source), bytesSent (on the wire, a registry
 * destination), referrersCopied. */
void cli_print_copy_json(struct oci_store *dst, const struct oci_copy_result *res,
                         unsigned n_referrers);

/* kiln ls on a registry repository. */
int cli_ls_registry(const struct oci_place *p, bool json);

#endif
