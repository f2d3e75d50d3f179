/* recipes/recipe_validate.h: checking a built linnaeus image without
 * running it (what the Docker workflow's validate.sh checked by running a
 * container).  The image's layers are streamed (never unpacked) to learn
 * which files exist after whiteouts; the checks follow the image matrix of
 * the architecture notes:
 *
 *   cuda         CUDA_VERSION in the config's env is 12.8.x
 *   python       the interpreter exists at its configured path
 *   torch        torch's .dist-info version: 2.8 nightly +cu128 for hopper,
 *                2.7.1+cu126 for ampere and pre-ampere; torchvision and
 *                torchaudio present with the same CUDA suffix
 *   flash-attn   v3 for hopper, v2 for ampere, absent for pre-ampere
 *   source       files under /app/linnaeus, PYTHONPATH holds it, WORKDIR is it
 */
#ifndef KILN_RECIPES_VALIDATE_H
#define KILN_RECIPES_VALIDATE_H

#include <stdbool.h>

#include "error.h"
#include "image.h"

struct recipe_validate_opts {
        const char *arch;        /* hopper, ampere or pre-ampere */
        const char *python;      /* NULL: /usr/bin/python3.11 */
        const char *source_path; /* NULL: /app/linnaeus */
        const struct oci_platform *platform;
        void (*check)(void *ctx, const char *name, bool ok, const char *detail);
        void *ctx;
};

/* *ret_failures counts the failed checks; -1 only when the image cannot
 * be read. */
int recipe_validate_image(struct oci_store *st, const struct recipe_validate_opts *o,
                          unsigned *ret_failures, struct kiln_error *err);

#endif
