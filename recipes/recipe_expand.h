/* recipes/recipe_expand.h: the expander behind recipe_expand_string(),
 * with a lookup that can also keep a reference for later (a value known
 * only after the source is fetched or the base image is pulled). */
#ifndef KILN_RECIPES_EXPAND_H
#define KILN_RECIPES_EXPAND_H

#include "recipe.h"

#define RECIPE_VAR_NAME_MAX 128
/* An expanded string is never longer than this. */
#define RECIPE_EXPAND_MAX (64u * 1024)

enum recipe_xres {
        RECIPE_X_VALUE,     /* *ret holds the value */
        RECIPE_X_UNDEFINED, /* no such variable: the ':-' default, or an error */
        RECIPE_X_KEEP,      /* known later: leave "${NAME}" as it is */
        RECIPE_X_ERROR,     /* err is set */
};

typedef enum recipe_xres (*recipe_xlookup_fn)(void *ctx, const char *name, const char **ret,
                                              struct kiln_error *err);

int recipe_expand_x(const char *s, recipe_xlookup_fn fn, void *ctx, char **ret,
                    struct kiln_error *err);

#endif
