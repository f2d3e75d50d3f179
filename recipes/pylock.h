/* recipes/pylock.h: PEP 751 lock files (pylock.toml).
 *
 * Writing: the wheels layers' packages of a kiln lock document
 * (recipe_image_lock's "layers".NAME."packages") as one pylock.toml:
 *
 *     recipe_pylock_format(lock, &toml, &err);   (kiln lock --pylock FILE)
 *
 * Reading: a wheels layer's "pylock" names a pylock.toml whose packages
 * are installed exactly (no resolution): for each package whose marker
 * holds on the target, the wheel compatible with it, checked against the
 * lock's sha256.
 *
 *     recipe_pylock_read(text, len, "pylock.toml", &target, &items, &n, &err);
 */
#ifndef KILN_RECIPES_PYLOCK_H
#define KILN_RECIPES_PYLOCK_H

#include <jansson.h>
#include <stddef.h>

#include "error.h"
#include "stage.h"

int recipe_pylock_format(const json_t *lock, char **ret, struct kiln_error *err);

struct recipe_pylock_item {
        char *name, *version, *url, *sha256;
};

int recipe_pylock_read(const char *text, size_t len, const char *what,
                       const struct recipe_python_target *t, struct recipe_pylock_item **ret,
                       size_t *ret_n, struct kiln_error *err);
void recipe_pylock_items_free(struct recipe_pylock_item *items, size_t n);

#endif
