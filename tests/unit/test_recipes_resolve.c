/* recipes/recipe_resolve.c on indexes made in memory: the limit on work,
 * what a resolution lists, core metadata parsing (the choices themselves
 * are compared with pip's in tests/integration/test_recipes_resolve.py). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "resolve.h"

#define VERSIONS 400

/* x and y: 400 versions each, every x needing z==1 and every y z==2 */
static int page(void *ctx, const char *index, const char *name, bool *ret_found, char **ret_html,
                size_t *ret_len, char **ret_base, struct kiln_error *err)
{
        size_t cap = 100 * VERSIONS + 64, n = 0;
        char *html = malloc(cap);
        int versions = !strcmp(name, "z") ? 2 : VERSIONS;

        (void)ctx, (void)index, (void)err;
        *ret_found = !strcmp(name, "x") || !strcmp(name, "y") || !strcmp(name, "z");
        if (!*ret_found) {
                free(html);
                return 0;
        }
        for (int v = 1; v <= versions; v++)
                n += (size_t)snprintf(html + n, cap - n,
                                      "<a href=\"%s-%d-py3-none-any.whl\" data-core-metadata=\"true\">f</a>\n",
                                      name, v);
        *ret_html = html;
        *ret_len = n;
        *ret_base = strdup("idx");
        return 0;
}

static int metadata(void *ctx, const struct recipe_index_file *f, char **ret_buf, size_t *ret_len,
                    struct kiln_error *err)
{
        const char *file = strrchr(f->url, '/') + 1;

        (void)ctx, (void)err;
        *ret_buf = malloc(128);
        if (file[0] == 'x')
                *ret_len = (size_t)sprintf(*ret_buf, "Name: x\nRequires-Dist: z==1\n\n");
        else if (file[0] == 'y')
                *ret_len = (size_t)sprintf(*ret_buf, "Name: y\nRequires-Dist: z==2\n\n");
        else
                *ret_len = (size_t)sprintf(*ret_buf, "Name: z\n\n");
        return 0;
}

static void test_resolver_gives_up_on_hopeless_backtracking(void **state)
{
        const char *const indexes[] = {"idx"};
        struct recipe_resolve_opts o = {.indexes = indexes, .n_indexes = 1, .page = page,
                                        .metadata = metadata};
        struct recipe_pep508 roots[2];
        struct recipe_resolution res = {0};
        struct kiln_error err = KILN_ERROR_INIT;

        (void)state;
        assert_int_equal(recipe_pep508_parse("x", &roots[0], &err), 0);
        assert_int_equal(recipe_pep508_parse("y", &roots[1], &err), 0);
        assert_int_equal(recipe_resolve(roots, 2, &o, &res, &err), -1);
        assert_int_equal(err.code, KILN_E_LIMIT);
        assert_non_null(strstr(err.msg, "gave up after 100000 versions tried"));
        recipe_pep508_release(&roots[0]);
        recipe_pep508_release(&roots[1]);
}

static void test_resolver_lists_choices_and_dependencies(void **state)
{
        const char *const indexes[] = {"idx"};
        struct recipe_resolve_opts o = {.indexes = indexes, .n_indexes = 1, .page = page,
                                        .metadata = metadata};
        struct recipe_pep508 roots[2];
        struct recipe_resolution res = {0};
        struct kiln_error err = KILN_ERROR_INIT;

        (void)state;
        /* y<3 is y 2, whose z==2 is the z already chosen */
        assert_int_equal(recipe_pep508_parse("z==2", &roots[0], &err), 0);
        assert_int_equal(recipe_pep508_parse("y<3", &roots[1], &err), 0);
        if (recipe_resolve(roots, 2, &o, &res, &err) < 0)
                fail_msg("%s", err.msg);
        assert_int_equal(res.n, 2);
        assert_string_equal(res.items[0].name, "z");
        assert_string_equal(res.items[1].name, "y");
        assert_string_equal(res.items[1].version, "2");
        assert_int_equal(res.items[1].n_deps, 1);
        assert_string_equal(res.items[1].deps[0], "z");
        recipe_resolution_release(&res);
        recipe_pep508_release(&roots[0]);
        recipe_pep508_release(&roots[1]);
}

static void test_metadata_headers_end_at_the_body(void **state)
{
        static const char md[] = "Metadata-Version: 2.1\r\nName: a\r\nRequires-Python: >=3.9\r\n"
                                 "Requires-Dist: b>=1;\r\n  python_version >= '3'\r\n"
                                 "requires-dist: C[x]\r\n\r\nRequires-Dist: not-a-header\r\n";
        struct recipe_pep508 *deps = NULL;
        size_t n = 0;
        char *rp = NULL;
        struct kiln_error err = KILN_ERROR_INIT;

        (void)state;
        if (recipe_metadata_parse(md, sizeof(md) - 1, "a.whl", &deps, &n, &rp, &err) < 0)
                fail_msg("%s", err.msg);
        assert_int_equal(n, 2);
        assert_string_equal(deps[0].name, "b");
        assert_non_null(deps[0].marker);
        assert_string_equal(deps[1].name, "c");
        assert_string_equal(deps[1].extras[0], "x");
        assert_string_equal(rp, ">=3.9");
        for (size_t i = 0; i < n; i++)
                recipe_pep508_release(&deps[i]);
        free(deps);
        free(rp);
        assert_int_equal(recipe_metadata_parse("Requires-Dist: b>=\n", 19, "a.whl", &deps, &n,
                                               &rp, &err),
                         -1);
        assert_non_null(strstr(err.msg, "metadata of 'a.whl'"));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_resolver_gives_up_on_hopeless_backtracking),
                cmocka_unit_test(test_resolver_lists_choices_and_dependencies),
                cmocka_unit_test(test_metadata_headers_end_at_the_body),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
