/* cli/cmd_run.h: running a command in an image, rootless (sandbox/), for
 * kiln run and kiln validate. */
#ifndef KILN_CLI_CMD_RUN_H
#define KILN_CLI_CMD_RUN_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"
#include "image.h"
#include "sandbox.h"

struct cli_run_opts {
        const char *const *argv; /* argc 0: the image's entrypoint and cmd */
        size_t argc;
        const char *const *envs; /* "K=V" over the image's env */
        size_t n_envs;
        const char *workdir; /* NULL: the image's */
        bool network;
        bool gpu; /* the NVIDIA devices and driver (sandbox_gpu_binds) */
        unsigned long uid, gid; /* --user; 0: root */
        const struct sandbox_bind *binds;
        size_t n_binds;
        /* NULL: the command's stdin, stdout and stderr are kiln's; else its
         * stdout and stderr come here (sandbox_opts.output) */
        void (*output)(void *ctx, const char *buf, size_t len);
        void *output_ctx;
        const char *place; /* for messages */
};

/* Runs the command in img (layers unpacked once under cache_dir) with the
 * image's env (PATH defaulted), the --gpu driver directories appended to
 * LD_LIBRARY_PATH and PATH; *ret_status is its exit status, 128 + N when
 * signal N killed it.  -1 when it could not be started. */
int cli_run_image(struct oci_store *st, const struct oci_image *img, const char *cache_dir,
                  const struct cli_run_opts *o, int *ret_status, struct kiln_error *err);

#endif
