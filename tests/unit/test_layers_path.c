/* layers/path.c: the one path cleaner, with each of its flags. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "path.h"
#include "util.h"

#define REL LAYER_PATH_RELATIVE
#define FOLD LAYER_PATH_FOLD_DOTDOT
#define NOBS LAYER_PATH_NO_BACKSLASH

static const struct {
        const char *in;
        unsigned flags;
        const char *out; /* NULL: refused with msg */
        const char *msg;
} cases[] = {
    /* cleaning: '/', '.' and empty components */
    {"", 0, "", NULL},
    {"/", 0, "", NULL},
    {"./", 0, "", NULL},
    {".", 0, "", NULL},
    {"/app/", 0, "app", NULL},
    {"./a//b/.", 0, "a/b", NULL},
    {"a/./b", 0, "a/b", NULL},
    {"///a///b///", 0, "a/b", NULL},
    {"..a/b..", 0, "..a/b..", NULL},
    {".../x", 0, ".../x", NULL},
    {"a\\b", 0, "a\\b", NULL},
    /* '..' without FOLD: anywhere, an error (the old `strstr("/../")` let
     * a leading or trailing one through) */
    {"/a/../b", 0, NULL, "invalid path '/a/../b': '..' is not allowed"},
    {"../x", 0, NULL, "invalid path '../x': '..' is not allowed"},
    {"a/..", 0, NULL, "invalid path 'a/..': '..' is not allowed"},
    {"..", 0, NULL, "invalid path '..': '..' is not allowed"},
    {"/..", 0, NULL, "invalid path '/..': '..' is not allowed"},
    /* FOLD: a tar reader's view, refused only above the root */
    {"a/../c", FOLD, "c", NULL},
    {"./a//b/../c", FOLD, "a/c", NULL},
    {"a/b/../..", FOLD, "", NULL},
    {"a/b/../../c/./d/", FOLD, "c/d", NULL},
    {"a/../..", FOLD, NULL, "invalid path 'a/../..': path climbs above the root"},
    {"../x", FOLD, NULL, "invalid path '../x': path climbs above the root"},
    {"./../x", FOLD, NULL, "invalid path './../x': path climbs above the root"},
    {"/../x", FOLD, NULL, "invalid path '/../x': path climbs above the root"},
    /* RELATIVE: a leading '/' refused before anything else */
    {"/etc/passwd", REL, NULL, "invalid path '/etc/passwd': absolute path"},
    {"/../x", REL | FOLD, NULL, "invalid path '/../x': absolute path"},
    {"etc/passwd", REL, "etc/passwd", NULL},
    /* NO_BACKSLASH: zip names */
    {"a\\..\\b", NOBS, NULL, "invalid path 'a\\..\\b': '\\' is not allowed"},
    {"pkg/mod.py", REL | NOBS, "pkg/mod.py", NULL},
};

static void test_path_clean_table(void **state)
{
        (void)state;
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                struct kiln_error err = KILN_ERROR_INIT;
                char *out = (char *)(uintptr_t) "untouched";
                int rc = layer_path_clean(cases[i].in, cases[i].flags, "invalid path", &out, &err);
                if (cases[i].out) {
                        if (rc != 0)
                                fail_msg("'%s' (flags %u): %s", cases[i].in, cases[i].flags,
                                         err.msg);
                        assert_string_equal(out, cases[i].out);
                        free(out);
                } else {
                        assert_int_equal(rc, -1);
                        assert_int_equal(err.code, KILN_E_INVALID);
                        assert_string_equal(err.msg, cases[i].msg);
                        assert_string_equal(out, "untouched"); /* not written on failure */
                }
        }
}

/* Cleaning a clean path changes nothing (same flags; RELATIVE holds: a
 * clean path never starts with a slash). */
static void test_path_clean_is_idempotent(void **state)
{
        (void)state;
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                char *once, *twice;
                if (!cases[i].out)
                        continue;
                assert_int_equal(layer_path_clean(cases[i].in, cases[i].flags, "p", &once, NULL),
                                 0);
                assert_int_equal(layer_path_clean(once, cases[i].flags | REL, "p", &twice, NULL),
                                 0);
                assert_string_equal(once, twice);
                free(once);
                free(twice);
        }
}

static void test_path_clean_names_the_caller_input(void **state)
{
        struct kiln_error err = KILN_ERROR_INIT;
        char *out;

        (void)state;
        assert_int_equal(layer_path_clean("/x", REL, "refusing hardlink target", &out, &err), -1);
        assert_string_equal(err.msg, "refusing hardlink target '/x': absolute path");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_path_clean_table),
            cmocka_unit_test(test_path_clean_is_idempotent),
            cmocka_unit_test(test_path_clean_names_the_caller_input),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
