/* oci/util.c: UTF-8 checks and the escaping of outside text for a terminal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "util.h"

static void test_utf8_valid_accepts_shortest_forms_only(void **state)
{
        static const struct {
                const char *s;
                bool ok;
        } cases[] = {
                {"plain", true},         {"\xc3\xa9", true},     {"\xe3\x83\x95", true},
                {"\xf0\x9f\x98\x80", true}, {"\xff", false},     {"\xc0\xaf", false},
                {"\xe0\x80\xaf", false}, {"\xed\xa0\x80", false}, {"\xf4\x90\x80\x80", false},
                {"\xc3", false},         {"\xe3\x83", false},
        };
        (void)state;
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
                assert_int_equal(kiln_utf8_valid(cases[i].s, strlen(cases[i].s)), cases[i].ok);
}

static void test_text_escape_escapes_controls_keeps_printable_utf8(void **state)
{
        static const struct {
                const char *in, *out;
        } cases[] = {
                {"a\x1b[31mb", "a\\x1b[31mb"},
                {"x\nkiln: error: y", "x\\nkiln: error: y"},
                {"\r\t\x07\x7f", "\\r\\t\\x07\\x7f"},
                {"c1\xc2\x9b" "31m", "c1\\xc2\\x9b31m"},
                {"\xc2\xa0nbsp \xc3\xa9t\xc3\xa9", "\xc2\xa0nbsp \xc3\xa9t\xc3\xa9"},
                {"bad\xff\xc3", "bad\\xff\\xc3"},
                {"back\\slash", "back\\slash"},
        };
        char out[128];
        (void)state;
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                size_t need = kiln_text_escape(cases[i].in, strlen(cases[i].in), out, sizeof(out),
                                               SIZE_MAX, 0);
                assert_string_equal(out, cases[i].out);
                assert_int_equal(need, strlen(cases[i].out));
        }
}

static void test_text_escape_cuts_whole_escapes(void **state)
{
        char out[16];
        char *dup;
        (void)state;
        kiln_text_escape("abcdefghij", 10, out, sizeof(out), 4, 0);
        assert_string_equal(out, "abcd...");
        /* "ab\\x1b" needs 6 bytes + NUL: never "ab\\x1" */
        kiln_text_escape("ab\x1b\x1b", 4, out, 6, SIZE_MAX, 0);
        assert_string_equal(out, "ab");
        /* ASCII only: printable UTF-8 is escaped too */
        kiln_text_escape("\xc3\xa9\x1b", 3, out, sizeof(out), SIZE_MAX, KILN_ESCAPE_ASCII);
        assert_string_equal(out, "\\xc3\\xa9\\x1b");
        dup = kiln_text_escape_dup("\x1b]0;t\x07");
        assert_string_equal(dup, "\\x1b]0;t\\x07");
        free(dup);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_utf8_valid_accepts_shortest_forms_only),
                cmocka_unit_test(test_text_escape_escapes_controls_keeps_printable_utf8),
                cmocka_unit_test(test_text_escape_cuts_whole_escapes),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
