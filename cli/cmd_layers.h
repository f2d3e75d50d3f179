/* cli/cmd_layers.h: the verbs that build and apply layers (append, config,
 * unpack, flatten) and what they share: loading an image's manifest and
 * config from a place, copying its blobs, writing a new config + manifest. */
#ifndef KILN_CLI_CMD_LAYERS_H
#define KILN_CLI_CMD_LAYERS_H

#include <jansson.h>
#include <stdbool.h>

#include "error.h"
#include "image.h"
#include "model.h"
#include "options.h"

int cmd_append(struct cli_args *a);
int cmd_config(struct cli_args *a);
int cmd_unpack(struct cli_args *a);
int cmd_flatten(struct cli_args *a);

struct cli_image {
        struct oci_fetched top; /* the manifest */
        struct oci_manifest *m;
        json_t *config; /* owned */
};

/* Loads the image of a place; an index is resolved for plat (NULL: host). */
int cli_image_load(struct oci_store *st, const struct oci_platform *plat, struct cli_image *ret,
                   struct kiln_error *err);
void cli_image_release(struct cli_image *img);

/* A new empty config for scratch (linux, the host's architecture). */
json_t *cli_config_scratch(void);

/* Copies the blobs of descs from src to dst unless dst has them. */
int cli_copy_blobs(struct oci_store *src, struct oci_store *dst, const struct oci_descriptor *descs,
                   size_t n, struct kiln_error *err);

/* Writes config and an OCI manifest naming layers into dst and tags it
 * with dst's own tag.  Sets config's "created" to SOURCE_DATE_EPOCH when it
 * is set, else keeps the base's, else sets 1970-01-01T00:00:00Z. */
int cli_image_write(struct oci_store *dst, json_t *config, const struct oci_descriptor *layers,
                    size_t n, struct oci_digest *ret_digest, struct kiln_error *err);

/* "1970-01-01T00:00:00Z" for t. */
void cli_format_time(long long t, char *buf, size_t len);

#endif
