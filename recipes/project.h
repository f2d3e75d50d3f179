/* recipes/project.h: a Python project's own pyproject.toml ([project],
 * PEP 621) and its editable install (PEP 660), for wheels layers with
 * "project": kiln reads DIR/pyproject.toml, resolves its dependencies
 * (and those of the extras asked for) with the layer's other
 * requirements, and installs the project the way `pip install -e
 * DIR[extras]` does: a wheel of its metadata whose .pth file puts the
 * project's path in the image on sys.path, installed like any wheel
 * (dist-info with METADATA, entry points and scripts, direct_url.json).
 *
 *     struct recipe_pyproject pp;
 *     recipe_pyproject_read("src/linnaeus", &pp, &err);
 *     recipe_pyproject_requirements(&pp, extras, n, "src/linnaeus", &reqs, &err);
 *     recipe_editable_wheel_write(&pp, "/app/linnaeus", tmpdir, &whl, &err);
 *     recipe_wheel_install(whl, NULL, root, &target, &err);
 *     recipe_pyproject_release(&pp);
 *
 * A dynamic version (one the build backend computes) is written as "0":
 * kiln runs no build backend.
 */
#ifndef KILN_RECIPES_PROJECT_H
#define KILN_RECIPES_PROJECT_H

#include <jansson.h>

#include "digest.h"
#include "error.h"
#include "stage.h"

struct recipe_pyproject {
        json_t *doc;           /* the whole file */
        const json_t *project; /* its [project] table */
        char *name, *version;  /* as written */
        struct oci_digest digest; /* of the file, for the layer key */
};

int recipe_pyproject_read(const char *dir, struct recipe_pyproject *ret, struct kiln_error *err);
void recipe_pyproject_release(struct recipe_pyproject *pp);
/* [project] dependencies, then optional-dependencies of each extra (an
 * unknown extra is an error); the project's references to itself dropped. */
int recipe_pyproject_requirements(const struct recipe_pyproject *pp, const char *const *extras,
                                  size_t n_extras, const char *what,
                                  struct recipe_requirements *ret, struct kiln_error *err);
/* Writes DEST/NAME-VERSION-0.editable-py3-none-any.whl; ret_file is its path. */
int recipe_editable_wheel_write(const struct recipe_pyproject *pp, const char *image_path,
                                const char *dest, char **ret_file, struct kiln_error *err);

#endif
