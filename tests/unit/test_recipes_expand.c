/* ${NAME} expansion. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "recipe.h"

static const char *lookup(void *ctx, const char *name)
{
        static const char *const vars[][2] = {
                {"arch", "hopper"}, {"variant", "nightly-cu128"}, {"empty", ""},
                {"PATH", "/usr/bin:/bin"}, {"source.revision", "0123abc"},
        };
        (void)ctx;
        for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
                if (!strcmp(vars[i][0], name))
                        return vars[i][1];
        return NULL;
}

static const struct {
        const char *in, *out, *err;
} cases[] = {
        {"plain", "plain", NULL},
        {"", "", NULL},
        {"${arch}-${variant}", "hopper-nightly-cu128", NULL},
        {"x${empty}y", "xy", NULL},
        {"$$HOME", "$HOME", NULL},
        {"$HOME and $", "$HOME and $", NULL},
        {"/opt/bin:${PATH}", "/opt/bin:/usr/bin:/bin", NULL},
        {"${missing:-fallback}", "fallback", NULL},
        {"${arch:-fallback}", "hopper", NULL},
        {"${missing:-}", "", NULL},
        {"rev ${source.revision}", "rev 0123abc", NULL},
        {"${missing}", NULL, "undefined variable 'missing' in '${missing}'"},
        {"a ${arch", NULL, "unterminated '${' in 'a ${arch'"},
        {"${}", NULL, "invalid variable reference '${}' in '${}'"},
        {"${1x}", NULL, "invalid variable reference '${1x}' in '${1x}'"},
        {"${a b}", NULL, "invalid variable reference '${a b}' in '${a b}'"},
};

static void test_expand_table(void **state)
{
        (void)state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct kiln_error err = KILN_ERROR_INIT;
                char *out = NULL;
                int rc = recipe_expand_string(cases[i].in, lookup, NULL, &out, &err);

                if (cases[i].out) {
                        if (rc != 0)
                                fail_msg("case %zu '%s': %s", i, cases[i].in, err.msg);
                        assert_string_equal(out, cases[i].out);
                        free(out);
                } else {
                        assert_int_equal(rc, -1);
                        assert_int_equal(err.code, KILN_E_INVALID);
                        assert_string_equal(err.msg, cases[i].err);
                }
        }
}

static void test_expand_refuses_runaway_length(void **state)
{
        struct kiln_error err = KILN_ERROR_INIT;
        size_t n = 70000;
        char *big = malloc(n + 1);
        char *out = NULL;

        (void)state;
        memset(big, 'x', n);
        big[n] = '\0';
        assert_int_equal(recipe_expand_string(big, lookup, NULL, &out, &err), -1);
        assert_int_equal(err.code, KILN_E_LIMIT);
        free(big);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_expand_table),
                cmocka_unit_test(test_expand_refuses_runaway_length),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
