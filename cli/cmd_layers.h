/* cli/cmd_layers.h: the verbs that build and apply layers (append, config,
 * unpack, flatten).  Images are read with oci_image_load() (oci/image.h)
 * and written through an image edit (oci/image_edit.h). */
#ifndef KILN_CLI_CMD_LAYERS_H
#define KILN_CLI_CMD_LAYERS_H

int cmd_append(int argc, char **argv);
int cmd_config(int argc, char **argv);
int cmd_unpack(int argc, char **argv);
int cmd_flatten(int argc, char **argv);

#endif
