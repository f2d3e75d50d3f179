/* The recipes built into kiln (recipes/meson.build embeds them). */
#include <string.h>

#include "recipe_internal.h"
#include "util.h"

static const struct {
        const char *name, *file;
        const char *text;
        const size_t *len;
} shipped[] = {
        {"linnaeus", "linnaeus.json", recipe_embedded_linnaeus_json,
         &recipe_embedded_linnaeus_json_len},
};

struct recipe *recipe_load_shipped(const char *name, struct kiln_error *err)
{
        for (size_t i = 0; i < ARRAY_SIZE(shipped); i++)
                if (!strcmp(name, shipped[i].name) || !strcmp(name, shipped[i].file))
                        return recipe_parse(shipped[i].text, *shipped[i].len, shipped[i].file, ".",
                                            err);
        kiln_error_set(err, KILN_E_NOT_FOUND,
                       "no recipe '%s' is shipped with kiln (it has linnaeus); give a file", name);
        return NULL;
}
