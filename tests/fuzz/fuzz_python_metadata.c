/* libFuzzer target: what the Python resolver reads from others: TOML
 * (pyproject.toml, pylock.toml: oci/toml.c and recipes/recipe_pylock.c),
 * core metadata (Requires-Dist, Requires-Python), PEP 508 requirements and
 * markers, PEP 440 versions and specifiers.  The first byte picks the
 * reader. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pylock.h"
#include "resolve.h"
#include "toml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct recipe_marker_env env;
        struct recipe_marker_bufs bufs;
        char *s;

        if (size < 1 || size > 256 * 1024)
                return 0;
        s = malloc(size);
        if (!s)
                return 0;
        memcpy(s, data + 1, size - 1);
        s[size - 1] = '\0';
        recipe_marker_env_for(NULL, &env, &bufs);
        switch (data[0] % 4) {
        case 0: {
                struct recipe_pylock_item *items = NULL;
                size_t n = 0;
                json_decref(oci_toml_parse(s, size - 1, "fuzz.toml", NULL));
                if (recipe_pylock_read(s, size - 1, "fuzz.toml", NULL, &items, &n, NULL) == 0)
                        recipe_pylock_items_free(items, n);
                break;
        }
        case 1: {
                struct recipe_pep508 *deps = NULL;
                size_t n = 0;
                char *rp = NULL;
                if (recipe_metadata_parse(s, size - 1, "fuzz", &deps, &n, &rp, NULL) == 0) {
                        for (size_t i = 0; i < n; i++) {
                                bool v;
                                recipe_marker_eval_req(&deps[i], &env, "dev", &v, NULL);
                                recipe_pep508_release(&deps[i]);
                        }
                        free(deps);
                        free(rp);
                }
                break;
        }
        case 2: {
                struct recipe_pep508 r;
                bool v;
                if (recipe_pep508_parse(s, &r, NULL) == 0)
                        recipe_pep508_release(&r);
                recipe_marker_eval(s, &env, NULL, &v, NULL);
                break;
        }
        default: {
                struct recipe_specset set;
                struct recipe_version ver;
                char out[RECIPE_VERSION_TEXT];
                if (recipe_version_parse(s, &ver, NULL) == 0)
                        recipe_version_format(&ver, true, out, sizeof(out));
                if (recipe_specset_parse(s, &set, NULL) == 0) {
                        struct recipe_version probe;
                        if (recipe_version_parse("1.0rc1.post2.dev3+local.7", &probe, NULL) == 0)
                                recipe_specset_contains(&set, &probe, false);
                        recipe_specset_format(&set, out, sizeof(out));
                        recipe_specset_release(&set);
                }
                break;
        }
        }
        free(s);
        return 0;
}
