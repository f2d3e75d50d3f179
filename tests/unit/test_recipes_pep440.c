/* recipes/pep440.c and recipes/pep508.c against the answers of Python's
 * packaging library (tests/unit/pep440_cases.h, made by
 * tests/unit/gen_pep440_cases.py). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pep440.h"
#include "pep440_cases.h"

static const struct recipe_marker_env env = {
        .python_version = "3.11",
        .python_full_version = "3.11.4",
        .os_name = "posix",
        .sys_platform = "linux",
        .platform_system = "Linux",
        .platform_machine = "x86_64",
        .platform_release = "6.1.0",
        .platform_version = "#1 SMP",
        .implementation_name = "cpython",
        .platform_python_implementation = "CPython",
};

static void test_versions_normalize_as_packaging_does(void **state)
{
        (void)state;
        for (size_t i = 0; i < sizeof(version_cases) / sizeof(version_cases[0]); i++) {
                struct recipe_version v;
                struct kiln_error err = KILN_ERROR_INIT;
                char s[RECIPE_VERSION_TEXT];
                int rc = recipe_version_parse(version_cases[i].in, &v, &err);

                if (!version_cases[i].norm) {
                        if (rc == 0)
                                fail_msg("'%s' should be invalid", version_cases[i].in);
                        assert_non_null(strstr(err.msg, "invalid version"));
                        continue;
                }
                if (rc < 0)
                        fail_msg("'%s': %s", version_cases[i].in, err.msg);
                recipe_version_format(&v, false, s, sizeof(s));
                if (strcmp(s, version_cases[i].norm))
                        fail_msg("'%s': got '%s', want '%s'", version_cases[i].in, s,
                                 version_cases[i].norm);
        }
}

static void test_versions_order_as_packaging_does(void **state)
{
        (void)state;
        for (size_t i = 0; i < sizeof(cmp_cases) / sizeof(cmp_cases[0]); i++) {
                struct recipe_version a, b;
                struct kiln_error err = KILN_ERROR_INIT;
                int c;

                assert_int_equal(recipe_version_parse(cmp_cases[i].a, &a, &err), 0);
                assert_int_equal(recipe_version_parse(cmp_cases[i].b, &b, &err), 0);
                c = recipe_version_cmp(&a, &b);
                if (c != cmp_cases[i].cmp || recipe_version_cmp(&b, &a) != -cmp_cases[i].cmp)
                        fail_msg("%s vs %s: got %d, want %d", cmp_cases[i].a, cmp_cases[i].b, c,
                                 cmp_cases[i].cmp);
        }
}

static void test_specifier_sets_match_as_packaging_does(void **state)
{
        (void)state;
        for (size_t i = 0; i < sizeof(spec_cases) / sizeof(spec_cases[0]); i++) {
                struct recipe_specset s;
                struct recipe_version v;
                struct kiln_error err = KILN_ERROR_INIT;
                bool in;

                if (recipe_specset_parse(spec_cases[i].spec, &s, &err) < 0)
                        fail_msg("'%s': %s", spec_cases[i].spec, err.msg);
                assert_int_equal(recipe_version_parse(spec_cases[i].version, &v, &err), 0);
                in = recipe_specset_contains(&s, &v, false);
                recipe_specset_release(&s);
                if (in != spec_cases[i].in)
                        fail_msg("'%s' contains '%s': got %d, want %d", spec_cases[i].spec,
                                 spec_cases[i].version, in, spec_cases[i].in);
        }
}

static void test_bad_specifiers_are_refused(void **state)
{
        (void)state;
        for (size_t i = 0; i < sizeof(bad_spec_cases) / sizeof(bad_spec_cases[0]); i++) {
                struct recipe_specset s = {0};
                struct kiln_error err = KILN_ERROR_INIT;

                if (recipe_specset_parse(bad_spec_cases[i], &s, &err) == 0) {
                        recipe_specset_release(&s);
                        fail_msg("'%s' should be refused", bad_spec_cases[i]);
                }
                assert_non_null(strstr(err.msg, "invalid version specifier"));
        }
}

static void test_markers_evaluate_as_packaging_does(void **state)
{
        (void)state;
        for (size_t i = 0; i < sizeof(marker_cases) / sizeof(marker_cases[0]); i++) {
                struct kiln_error err = KILN_ERROR_INIT;
                bool v;

                if (recipe_marker_eval(marker_cases[i].marker, &env, marker_cases[i].extra, &v,
                                       &err) < 0)
                        fail_msg("'%s': %s", marker_cases[i].marker, err.msg);
                if (v != marker_cases[i].value)
                        fail_msg("'%s' with extra '%s': got %d, want %d", marker_cases[i].marker,
                                 marker_cases[i].extra ? marker_cases[i].extra : "", v,
                                 marker_cases[i].value);
        }
}

static void test_bad_markers_are_refused(void **state)
{
        (void)state;
        for (size_t i = 0; i < sizeof(bad_marker_cases) / sizeof(bad_marker_cases[0]); i++) {
                struct kiln_error err = KILN_ERROR_INIT;
                bool v;

                if (recipe_marker_eval(bad_marker_cases[i], &env, NULL, &v, &err) == 0)
                        fail_msg("'%s' should be refused", bad_marker_cases[i]);
                assert_non_null(strstr(err.msg, "invalid marker"));
        }
}

static void test_markers_nest_at_most_32_deep(void **state)
{
        char deep[256] = "", ok[256] = "";
        struct kiln_error err = KILN_ERROR_INIT;
        bool v;

        (void)state;
        for (int i = 0; i < 33; i++)
                strcat(deep, "(");
        strcat(deep, "os_name == 'posix'");
        for (int i = 0; i < 33; i++)
                strcat(deep, ")");
        assert_int_equal(recipe_marker_eval(deep, &env, NULL, &v, &err), -1);
        assert_non_null(strstr(err.msg, "nested too deeply"));
        for (int i = 0; i < 32; i++)
                strcat(ok, "(");
        strcat(ok, "os_name == 'posix'");
        for (int i = 0; i < 32; i++)
                strcat(ok, ")");
        assert_int_equal(recipe_marker_eval(ok, &env, NULL, &v, &err), 0);
        assert_true(v);
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_requirements_parse_as_packaging_does(void **state)
{
        (void)state;
        for (size_t i = 0; i < sizeof(req_cases) / sizeof(req_cases[0]); i++) {
                struct recipe_pep508 r;
                struct kiln_error err = KILN_ERROR_INIT;
                char extras[256] = "", spec[512] = "";
                char items[16][RECIPE_VERSION_TEXT + 8];
                char *sorted[16];
                int rc = recipe_pep508_parse(req_cases[i].in, &r, &err);

                if (!req_cases[i].name) {
                        if (rc == 0)
                                fail_msg("'%s' should be refused", req_cases[i].in);
                        assert_non_null(strstr(err.msg, "invalid requirement"));
                        continue;
                }
                if (rc < 0)
                        fail_msg("'%s': %s", req_cases[i].in, err.msg);
                assert_string_equal(r.name, req_cases[i].name);
                for (size_t k = 0; k < r.n_extras; k++)
                        snprintf(extras + strlen(extras), sizeof(extras) - strlen(extras), "%s%s",
                                 k ? "," : "", r.extras[k]);
                assert_string_equal(extras, req_cases[i].extras);
                /* packaging lists a set's items sorted */
                assert_true(r.spec.n <= 16);
                for (size_t k = 0; k < r.spec.n; k++) {
                        struct recipe_specset one = {&r.spec.items[k], 1};
                        recipe_specset_format(&one, items[k], sizeof(items[k]));
                        sorted[k] = items[k];
                }
                qsort(sorted, r.spec.n, sizeof(*sorted), cmp_str);
                for (size_t k = 0; k < r.spec.n; k++)
                        snprintf(spec + strlen(spec), sizeof(spec) - strlen(spec), "%s%s",
                                 k ? "," : "", sorted[k]);
                assert_string_equal(spec, req_cases[i].spec);
                assert_int_equal(r.marker != NULL, req_cases[i].marker != NULL);
                if (req_cases[i].url)
                        assert_string_equal(r.url, req_cases[i].url);
                else
                        assert_null(r.url);
                recipe_pep508_release(&r);
        }
}

static void test_dependency_applies_for_requested_extras(void **state)
{
        struct recipe_pep508 r;
        struct kiln_error err = KILN_ERROR_INIT;
        const char *dev[] = {"Dev"};
        bool v;

        (void)state;
        assert_int_equal(recipe_pep508_parse("pytest>=7; extra == 'dev'", &r, &err), 0);
        assert_int_equal(recipe_pep508_applies(&r, &env, NULL, 0, &v, &err), 0);
        assert_false(v);
        assert_int_equal(recipe_pep508_applies(&r, &env, dev, 1, &v, &err), 0);
        assert_true(v);
        recipe_pep508_release(&r);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_versions_normalize_as_packaging_does),
                cmocka_unit_test(test_versions_order_as_packaging_does),
                cmocka_unit_test(test_specifier_sets_match_as_packaging_does),
                cmocka_unit_test(test_bad_specifiers_are_refused),
                cmocka_unit_test(test_markers_evaluate_as_packaging_does),
                cmocka_unit_test(test_bad_markers_are_refused),
                cmocka_unit_test(test_markers_nest_at_most_32_deep),
                cmocka_unit_test(test_requirements_parse_as_packaging_does),
                cmocka_unit_test(test_dependency_applies_for_requested_extras),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
