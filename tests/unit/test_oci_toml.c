/* oci/toml.c: the strict TOML reader of registries.conf, pyproject.toml
 * and pylock.toml. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "toml.h"

/* input -> the document as compact JSON, or the error message */
static const struct {
        const char *in, *json, *error;
} toml_cases[] = {
        {"", "{}", NULL},
        {"# only a comment\n\n", "{}", NULL},
        {"a = \"x\"\nb = true\nc = false\n", "{\"a\":\"x\",\"b\":true,\"c\":false}", NULL},
        {"n = 42\nm = -1_000\n", "{\"n\":42,\"m\":-1000}", NULL},
        {"s = 'C:\\\\no\\escape'\n", "{\"s\":\"C:\\\\\\\\no\\\\escape\"}", NULL},
        {"s = \"tab\\tq\\\"u\\u00e9\"\n", "{\"s\":\"tab\\tq\\\"u\xc3\xa9\"}", NULL},
        {"a = [\"x\", 'y',]\n", "{\"a\":[\"x\",\"y\"]}", NULL},
        {"a = [ # comment\n  \"x\",\n  \"y\" # more\n]\n", "{\"a\":[\"x\",\"y\"]}", NULL},
        {"a = []\n", "{\"a\":[]}", NULL},
        {"[t]\nk = 1\n[t.u]\nv = \"w\"\n", "{\"t\":{\"k\":1,\"u\":{\"v\":\"w\"}}}", NULL},
        {"[[r]]\nx = 1\n[[r]]\nx = 2\n", "{\"r\":[{\"x\":1},{\"x\":2}]}", NULL},
        {"[[registry]]\nprefix = \"a\"\n[[registry.mirror]]\nlocation = \"m1\"\n"
         "[[registry.mirror]]\nlocation = \"m2\"\n",
         "{\"registry\":[{\"prefix\":\"a\",\"mirror\":[{\"location\":\"m1\"},{\"location\":\"m2\"}]}]}",
         NULL},
        {"[aliases]\n  \"opensuse/leap\" = \"registry.opensuse.org/opensuse/leap\"\r\n",
         "{\"aliases\":{\"opensuse/leap\":\"registry.opensuse.org/opensuse/leap\"}}", NULL},
        {"a.b = 1\n", "{\"a\":{\"b\":1}}", NULL},
        {"[ \"q.t\" ]\n", "{\"q.t\":{}}", NULL},
        /* what pyproject.toml and pylock.toml add */
        {"a = {x = 1, y.z = 'w', e = {}}\n", "{\"a\":{\"x\":1,\"y\":{\"z\":\"w\"},\"e\":{}}}", NULL},
        {"authors = [\n  { name = \"A\", email = \"a@x\" },\n  {name='B'},\n]\n",
         "{\"authors\":[{\"name\":\"A\",\"email\":\"a@x\"},{\"name\":\"B\"}]}", NULL},
        {"d = \"\"\"\nline 1\nline \"2\"\n\"\"\"\n", "{\"d\":\"line 1\\nline \\\"2\\\"\\n\"}", NULL},
        {"d = \"\"\"a \\\n    b\"\"\"\n", "{\"d\":\"a b\"}", NULL},
        {"d = '''C:\\raw\n''\"'''\n", "{\"d\":\"C:\\\\raw\\n''\\\"\"}", NULL},
        {"d = \"\"\"q\"\"\"\"\"\n", "{\"d\":\"q\\\"\\\"\"}", NULL},
        {"t = 2025-01-02T03:04:05Z\nu = 2025-01-02 03:04:05.5+01:00\nv = 2025-01-02\n",
         "{\"t\":\"2025-01-02T03:04:05Z\",\"u\":\"2025-01-02 03:04:05.5+01:00\",\"v\":\"2025-01-02\"}",
         NULL},
        {"[[packages]]\nname = \"a\"\n[[packages.wheels]]\nurl = \"u\"\nhashes = {sha256 = \"h\"}\n"
         "[[packages]]\nname = \"b\"\n",
         "{\"packages\":[{\"name\":\"a\",\"wheels\":[{\"url\":\"u\",\"hashes\":{\"sha256\":\"h\"}}]},"
         "{\"name\":\"b\"}]}",
         NULL},
        {"x = \"\"\"\nA\"\"\"\ny = 1\nz = \n", NULL, "f.conf:4: missing value"},
        {"a = 2024-0101\n", NULL, "f.conf:1: invalid date-time"},
        {"a = {x = 1\n", NULL, "f.conf:1: expected ',' or '}' in an inline table"},
        {"a = {x = 1, x = 2}\n", NULL, "f.conf:1: duplicate key 'x'"},
        {"a = \"\"\"never closed\n\n", NULL, "f.conf:3: unterminated string"},
        {"\"\"\"k\"\"\" = 1\n", NULL, "f.conf:1: a key cannot be a multi-line string"},
        {"a = \"\"\"x\\ y\"\"\"\n", NULL, "f.conf:1: invalid escape in a string"},
        {"a = '''x'''\nb = 1 2\n", NULL, "f.conf:2: expected the end of the line"},
        /* invalid */
        {"a = \"x\"\na = \"y\"\n", NULL, "f.conf:2: duplicate key 'a'"},
        {"a = \"unterminated\n", NULL, "f.conf:1: unterminated string"},
        {"a = 1.5\n", NULL, "f.conf:1: unsupported value (strings, booleans, integers, date-times, arrays and tables only)"},
        {"\n\na = \n", NULL, "f.conf:3: missing value"},
        {"a = \"x\" b\n", NULL, "f.conf:1: expected the end of the line"},
        {"[t\n", NULL, "f.conf:1: expected ']'"},
        {"[[t]\n", NULL, "f.conf:1: expected ']]'"},
        {"= 1\n", NULL, "f.conf:1: expected a key"},
        {"a 1\n", NULL, "f.conf:1: expected '=' after a key"},
        {"a = [1 2]\n", NULL, "f.conf:1: expected ',' or ']' in an array"},
        {"a = \"\\x\"\n", NULL, "f.conf:1: invalid escape in a string"},
        {"a = \"\\uD800\"\n", NULL, "f.conf:1: \\u escape is not a Unicode scalar value"},
        {"a = \"\xff\"\n", NULL, "f.conf:1: string is not valid UTF-8"},
        {"a = 1\n[a]\n", NULL, "f.conf:2: table redefines a key"},
        {"a = 1\n[[a]]\n", NULL, "f.conf:2: array of tables redefines a key"},
        {"a = 1\n[a.b]\n", NULL, "f.conf:2: 'a' is not a table"},
        {"a = 007\n", NULL, "f.conf:1: leading zeros in an integer"},
        {"a = truely\n", NULL, "f.conf:1: unsupported value (strings, booleans, integers, date-times, arrays and tables only)"},
};

static void test_toml_cases(void **state)
{
        (void)state;
        for (size_t i = 0; i < sizeof(toml_cases) / sizeof(toml_cases[0]); i++) {
                struct kiln_error err = KILN_ERROR_INIT;
                const char *in = toml_cases[i].in;
                json_t *doc = oci_toml_parse(in, strlen(in), "f.conf", &err);
                if (toml_cases[i].json) {
                        char *s;
                        if (!doc)
                                fail_msg("case %zu: %s", i, err.msg);
                        s = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
                        if (strcmp(s, toml_cases[i].json))
                                fail_msg("case %zu: got %s", i, s);
                        free(s);
                        json_decref(doc);
                } else {
                        if (doc)
                                fail_msg("case %zu: parsed", i);
                        if (strcmp(err.msg, toml_cases[i].error))
                                fail_msg("case %zu: message '%s'", i, err.msg);
                        assert_int_equal(err.code, KILN_E_INVALID);
                }
        }
}

static void test_toml_rejects_nul(void **state)
{
        struct kiln_error err = KILN_ERROR_INIT;
        static const char in[] = "a = 1\nb = \"x\0\"\n";

        (void)state;
        assert_null(oci_toml_parse(in, sizeof(in) - 1, "f.conf", &err));
        assert_string_equal(err.msg, "f.conf:2: NUL byte");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_toml_cases),
                cmocka_unit_test(test_toml_rejects_nul),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
