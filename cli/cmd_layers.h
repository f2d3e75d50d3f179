/* cli/cmd_layers.h: the verbs that build and apply layers (append, config,
 * unpack, flatten).  Images are read with oci_image_load() (oci/image.h)
 * and written through an image edit (oci/image_edit.h). */
#ifndef KILN_CLI_CMD_LAYERS_H
#define KILN_CLI_CMD_LAYERS_H

#include "options.h"

int cmd_append(struct cli_args *a);
int cmd_config(struct cli_args *a);
int cmd_unpack(struct cli_args *a);
int cmd_flatten(struct cli_args *a);

#endif
