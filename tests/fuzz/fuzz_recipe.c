/* libFuzzer target: the recipe parser (positions, schema) and the plan,
 * and the text parsers of the front ends.  The first byte picks which:
 * 0 recipe + plan, 1 requirements file, 2 simple index page, 3 apt index,
 * 4 ignore rules, 5 wheel name. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "recipe.h"
#include "stage.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct kiln_error err = KILN_ERROR_INIT;
        char *s;
        int which;

        if (size < 1)
                return 0;
        which = data[0] % 6;
        data++;
        size--;
        s = malloc(size + 1);
        if (!s)
                return 0;
        memcpy(s, data, size);
        s[size] = '\0';
        switch (which) {
        case 0: {
                struct recipe *r = recipe_parse(s, size, "fuzz.json", "/nonexistent", &err);
                struct recipe_plan *p = NULL;
                static const char *const sets[] = {"arch=hopper", "branch=feat/x"};
                struct recipe_plan_opts o = {sets, 2, NULL, NULL};
                if (r && recipe_plan_build(r, &o, &p, &err) == 0) {
                        char *t = recipe_plan_to_text(p);
                        json_decref(recipe_plan_to_json(p));
                        free(t);
                        recipe_plan_free(p);
                }
                recipe_free(r);
                break;
        }
        case 1: {
                struct recipe_requirements q;
                if (recipe_requirements_parse(s, strlen(s), "fuzz.txt", &q, &err) == 0)
                        recipe_requirements_release(&q);
                break;
        }
        case 2: {
                struct recipe_requirement q;
                char *url = NULL, *sha = NULL;
                if (recipe_requirement_parse("torch==2.7.1", &q, &err) == 0) {
                        if (recipe_simple_index_pick(s, strlen(s), "/idx/torch", &q, NULL, &url,
                                                     &sha, &err) == 0) {
                                free(url);
                                free(sha);
                        }
                        recipe_requirement_release(&q);
                }
                break;
        }
        case 3: {
                char *f = NULL, *h = NULL;
                if (recipe_apt_find(s, "python3.11", "amd64", &f, &h, &err) == 0) {
                        free(f);
                        free(h);
                }
                break;
        }
        case 4: {
                struct recipe_ignore *ig = recipe_ignore_parse(s, strlen(s), size & 1);
                recipe_ignore_match(ig, "a/b/c.pyc", false);
                recipe_ignore_match(ig, "outputs", true);
                recipe_ignore_free(ig);
                break;
        }
        default: {
                struct recipe_wheel_name w;
                if (recipe_wheel_name_parse(s, &w, &err) == 0) {
                        recipe_wheel_compatible(&w, NULL);
                        recipe_wheel_name_release(&w);
                }
                break;
        }
        }
        free(s);
        return 0;
}
