/* recipes/recipe_validate.h: checking a built image against the
 * expectations its recipe carries (the "validate" object, docs/recipes.md).
 *
 * The object is expanded with the recipe's variables and profile like the
 * rest of the recipe, so one list of checks serves every profile:
 *
 *     {"python": "/usr/bin/python3.11",      the interpreter in the image
 *      "source": "/app/linnaeus",            a directory that must hold files
 *      "workdir": "/app/linnaeus",           the config's WorkingDir
 *      "env": {"CUDA_VERSION": "12.8"},      config env values, by prefix
 *      "checks": [{"name": "torch", "module": "torch", "version": "2.7.1",
 *                  "local": "cu126", "values": {"torch.version.cuda": "12.6"}},
 *                 {"name": "flash-attn", "module": "flash_attn", "absent": true,
 *                  "unless": "${flash_attn_major}"}, ...]}
 *
 * A check imports "module" (or must fail to, with "absent"), compares its
 * __version__ with "version" (a prefix ending at a component: "2" takes
 * 2.7.4, not 20.1) and "local" (the part after '+'), imports "names" from
 * it, compares Python expressions' values ("values"), loads the compiled
 * extension modules its distribution ships ("extension"), runs "code";
 * "gpu" checks run only when the image runs with the GPU.
 *
 * The checks run two ways:
 *   - in the image (kiln validate's default): recipe_validate_script() is a
 *     Python program and its arguments, which the caller runs with the
 *     image's interpreter in the sandbox; its output goes to a
 *     recipe_validate_reader, which reports each check;
 *   - from the files alone (--static): recipe_validate_static() streams
 *     the layers (never unpacked) and looks at module files and .dist-info
 *     versions.
 * recipe_validate_config() checks what the config says; both ways use it.
 *
 *     recipe_validate_spec(r, recorded, sets, n, &spec, &err);
 *     recipe_validate_config(spec, img.config, &rep);
 *     recipe_validate_static(st, &img, spec, &rep, &err);        or
 *     recipe_validate_script(spec, gpu_skip_reason, &argv, &err);
 *     rd = recipe_validate_reader_new(spec, &rep, &err);
 *     ... run argv in the image, recipe_validate_reader_feed(rd, buf, n) ...
 *     recipe_validate_reader_finish(rd, status, NULL);
 *
 * Nothing here prints: each check goes to rep->check.
 */
#ifndef KILN_RECIPES_VALIDATE_H
#define KILN_RECIPES_VALIDATE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "error.h"
#include "image.h"
#include "recipe.h"

enum recipe_check_state {
        RECIPE_CHECK_OK,
        RECIPE_CHECK_FAIL,
        RECIPE_CHECK_SKIP, /* not checked; detail says why */
};

struct recipe_validate_report {
        void (*check)(void *ctx, const char *name, enum recipe_check_state state,
                      const char *detail);
        void *ctx;
};

/* The plan's "validate" object of recipe r for the variables: recorded (the
 * variables an image was built with, an object of strings; may be NULL;
 * names r does not declare are left out) and then sets ("NAME=VALUE", later
 * ones win).  A profiled recipe needs its profile variable from one of
 * them (KILN_E_USAGE naming it); a recipe without "validate" fails with
 * KILN_E_NOT_FOUND.  *ret_spec is the caller's; its "profile" says which
 * profile it is ("arch=hopper"). */
int recipe_validate_spec(const struct recipe *r, const json_t *recorded, const char *const *sets,
                         size_t n_sets, json_t **ret_spec, struct kiln_error *err);

/* "env" and "workdir" against the image's config (the config blob). */
void recipe_validate_config(const json_t *spec, const json_t *config,
                            const struct recipe_validate_report *rep);

/* The file-only checks: "python" present, each check's module found on
 * the image's Python path (site-packages, dist-packages, PYTHONPATH) and
 * its .dist-info version, "source" holding files; what needs the image to
 * run (names, values, extensions, code, GPU checks) is reported skipped.
 * -1 only when the image cannot be read. */
int recipe_validate_static(struct oci_store *st, const struct oci_image *img, const json_t *spec,
                           const struct recipe_validate_report *rep, struct kiln_error *err);

/* The command that runs the checks in the image: "PYTHON", "-B", "-c",
 * PROGRAM, CHECKS-JSON, GPU; NULL-terminated, one allocation for free().
 * gpu_skip: NULL to run the GPU checks, else why they are skipped. */
int recipe_validate_script(const json_t *spec, const char *gpu_skip, char ***ret_argv,
                           struct kiln_error *err);

/* Reads the program's output (stdout and stderr, any chunks) and reports
 * each check as its line comes; other lines are the program's own. */
struct recipe_validate_reader;
struct recipe_validate_reader *recipe_validate_reader_new(const json_t *spec,
                                                          const struct recipe_validate_report *rep,
                                                          struct kiln_error *err);
void recipe_validate_reader_feed(struct recipe_validate_reader *rd, const char *buf, size_t len);
/* After the run: status is the program's exit status, or -1 when it could
 * not be started (why says so).  Every check not reported yet fails,
 * naming the check that was running when the program died. */
void recipe_validate_reader_finish(struct recipe_validate_reader *rd, int status, const char *why);
void recipe_validate_reader_free(struct recipe_validate_reader *rd);

/* Whether value starts with want at a component boundary: "2.8.0" takes
 * "2.8.0", "2.8.0rc0" and "2.8.0.dev1+cu128"; "2" takes "2.7", not "20". */
bool recipe_validate_prefix(const char *value, const char *want);

#endif
