/* Recipe schema errors name the file, line and column of the offending
 * key or value. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "recipe.h"

static const struct {
        const char *doc, *err;
} cases[] = {
        {"{\n"
         "  \"base\": \"ubuntu\",\n"
         "  \"layrs\": []\n"
         "}\n",
         "invalid recipe 't.json' at line 3 column 3: unknown key 'layrs' in the recipe"},
        {"{\n"
         "  \"base\": 5,\n"
         "  \"layers\": []\n"
         "}\n",
         "invalid recipe 't.json' at line 2 column 11: 'base' in the recipe must be a string"},
        {"{\"base\": \"ubuntu\"}",
         "invalid recipe 't.json' at line 1 column 1: missing 'layers' in the recipe"},
        {"{\n"
         "  \"base\": \"ubuntu\",\n"
         "  \"layers\": [\n"
         "    {\"name\": \"a\", \"kind\": \"wheels\", \"wheels\": [], \"sha\": \"x\"}\n"
         "  ]\n"
         "}\n",
         "invalid recipe 't.json' at line 4 column 51: unknown key 'sha' in layer 'a'"},
        {"{\n"
         "  \"base\": \"ubuntu\",\n"
         "  \"layers\": [\n"
         "    {\"name\": \"a\",\n"
         "     \"kind\": \"tarball\"}\n"
         "  ]\n"
         "}\n",
         "invalid recipe 't.json' at line 5 column 14: unknown layer kind 'tarball' in layer 'a' "
         "(expected wheels, debs, source, build, run, tree or files)"},
        {"{\n"
         "  \"base\": \"ubuntu\",\n"
         "  \"layers\": [\n"
         "    {\"name\": \"f\", \"kind\": \"files\",\n"
         "     \"files\": [{\"src\": \"a\", \"dest\": \"/a\", \"mode\": 493}]}\n"
         "  ]\n"
         "}\n",
         "invalid recipe 't.json' at line 5 column 51: 'mode' in layer 'f' must be a string"},
        {"{\n"
         "  \"base\": \"ubuntu\",\n"
         "  \"layers\": [\n"
         "    {\"name\": \"t\", \"kind\": \"tree\", \"src\": \"app\"}\n"
         "  ]\n"
         "}\n",
         "invalid recipe 't.json' at line 4 column 5: missing 'dest' in layer 't'"},
        {"{\n"
         "  \"base\": \"ubuntu\",\n"
         "  \"layers\": [\n"
         "    {\"name\": \"w\", \"kind\": \"wheels\",\n"
         "     \"wheels\": [{\"path\": \"a.whl\", \"sha256\": 7}]}\n"
         "  ]\n"
         "}\n",
         "invalid recipe 't.json' at line 5 column 45: 'sha256' in layer 'w' must be a string"},
        {"{\n"
         "  \"base\": \"ubuntu\",\n"
         "  \"variables\": {\n"
         "    \"arch\": {\"default\": \"volta\", \"allowed\": [\"hopper\", \"ampere\"]}\n"
         "  },\n"
         "  \"layers\": []\n"
         "}\n",
         "invalid recipe 't.json' at line 4 column 25: default 'volta' of variable 'arch' is not "
         "among its allowed values"},
        {"{\n"
         "  \"base\": \"ubuntu\",\n"
         "  \"variables\": {\"arch\": {\"default\": \"a\", \"allowed\": [\"a\", \"b\"]}},\n"
         "  \"profiles\": {\"by\": \"arch\", \"values\": {\n"
         "    \"a\": {\"torch\": \"1\", \"fa\": \"2\"},\n"
         "    \"b\": {\"torch\": \"1\"}\n"
         "  }},\n"
         "  \"layers\": []\n"
         "}\n",
         "invalid recipe 't.json' at line 6 column 5: profile 'b' does not set 'fa', which profile "
         "'a' does"},
        {"{\n"
         "  \"base\": \"ubuntu\",\n"
         "  \"variables\": {\"arch\": {\"default\": \"a\", \"allowed\": [\"a\", \"b\"]}},\n"
         "  \"profiles\": {\"by\": \"arch\", \"values\": {\"a\": {\"x\": \"1\"}}},\n"
         "  \"layers\": []\n"
         "}\n",
         "invalid recipe 't.json' at line 4 column 30: no profile for 'b', an allowed value of "
         "'arch'"},
        {"{\n"
         "  \"base\": \"ubuntu\",\n"
         "  \"layers\": [],\n"
         "  \"config\": {\"env\": [\"A=1\",\n"
         "                     \"NOEQUALS\"]}\n"
         "}\n",
         "invalid recipe 't.json' at line 5 column 22: invalid env entry 'NOEQUALS': expected "
         "NAME=VALUE"},
        {"{\n"
         "  \"base\": \"ubuntu\",\n"
         "  \"layers\": [],\n"
         "  \"config\": {\"cmd\": \"bash\"}\n"
         "}\n",
         "invalid recipe 't.json' at line 4 column 21: 'cmd' in 'config' must be an array"},
        {"{\"recipe\": 2, \"base\": \"ubuntu\", \"layers\": []}",
         "invalid recipe 't.json' at line 1 column 12: unsupported recipe version 2 (this kiln "
         "reads version 1)"},
        {"{\n"
         "  \"base\": \"ubuntu\",\n"
         "  \"layers\": [],\n"
         "  \"tag\": {\"repository\": \"r\", \"tag\": \"t\", \"branches\": \"b\"}\n"
         "}\n",
         "invalid recipe 't.json' at line 4 column 42: unknown key 'branches' in 'tag'"},
        {"{\n"
         "  \"base\": \"ubuntu\",\n"
         "  \"layers\": [\n"
         "    {\"name\": \"s\", \"kind\": \"source\", \"from\": \"git\"}\n"
         "  ]\n"
         "}\n",
         "invalid recipe 't.json' at line 4 column 5: missing 'path' in layer 's'"},
        {"{\n"
         "  \"base\": \"ubuntu\",\n"
         "  \"layers\": [\n"
         "    {\"name\": \"b\", \"kind\": \"build\", \"command\": [\"make\", 1]}\n"
         "  ]\n"
         "}\n",
         "invalid recipe 't.json' at line 4 column 56: each entry of 'command' must be a string"},
        /* the mode policy's keys (docs/layers.md, "Modes") */
        {"{\n"
         "  \"base\": \"ubuntu\",\n"
         "  \"layers\": [\n"
         "    {\"name\": \"t\", \"kind\": \"tree\", \"src\": \"a\", \"dest\": \"/a\",\n"
         "     \"modes\": {\"bin/*\": \"0750\", \"*.key\": \"0800\"}}\n"
         "  ]\n"
         "}\n",
         "invalid recipe 't.json' at line 5 column 42: invalid mode '0800' for '*.key' in "
         "layer 't': expected octal like 0755"},
        {"{\n"
         "  \"base\": \"ubuntu\",\n"
         "  \"layers\": [\n"
         "    {\"name\": \"t\", \"kind\": \"tree\", \"src\": \"a\", \"dest\": \"/a\",\n"
         "     \"modes\": {\"bin/*\": 750}}\n"
         "  ]\n"
         "}\n",
         "invalid recipe 't.json' at line 5 column 25: 'bin/*' in layer 't' must be a string"},
        {"{\n"
         "  \"base\": \"ubuntu\",\n"
         "  \"layers\": [\n"
         "    {\"name\": \"b\", \"kind\": \"build\", \"command\": [\"make\"],\n"
         "     \"keep_modes\": \"yes\"}\n"
         "  ]\n"
         "}\n",
         "invalid recipe 't.json' at line 5 column 20: 'keep_modes' in layer 'b' must be true or false"},
        {"{\n"
         "  \"base\": \"ubuntu\",\n"
         "  \"layers\": [\n"
         "    {\"name\": \"f\", \"kind\": \"files\", \"files\": [], \"modes\": {}}\n"
         "  ]\n"
         "}\n",
         "invalid recipe 't.json' at line 4 column 49: unknown key 'modes' in layer 'f'"},
        {"{\n"
         "  \"base\": \"ubuntu\",\n"
         "  \"layers\": [\n"
         "    {\"name\": \"r\", \"kind\": \"run\", \"command\": [\"make\"],\n"
         "     \"cache\": [\"/root/../etc\"]}\n"
         "  ]\n"
         "}\n",
         "invalid recipe 't.json' at line 5 column 16: cache directory '/root/../etc' in layer 'r' "
         "must be an absolute path below '/' without '..'"},
        {"{\n"
         "  \"base\": \"ubuntu\",\n"
         "  \"layers\": [\n"
         "    {\"name\": \"r\", \"kind\": \"run\", \"command\": []}\n"
         "  ]\n"
         "}\n",
         "invalid recipe 't.json' at line 4 column 45: 'command' in layer 'r' is empty"},
        {"{\n"
         "  \"base\": \"ubuntu\",\n"
         "  \"layers\": [\n"
         "    {\"name\": \"r\", \"kind\": \"run\", \"command\": [\"true\"], \"user\": \"x\"}\n"
         "  ]\n"
         "}\n",
         "invalid recipe 't.json' at line 4 column 55: unknown key 'user' in layer 'r'"},
        {"{\n"
         "  \"base\": \"ubuntu\",\n"
         "  \"layers\": [\n"
         "    {\"name\": \"b\", \"kind\": \"build\", \"command\": [\"make\"], \"in\": \"vm\"}\n"
         "  ]\n"
         "}\n",
         "invalid recipe 't.json' at line 4 column 63: 'in' in layer 'b' must be 'host' or 'image'"},
        /* positions after multi-byte UTF-8 count characters, as jansson does */
        {"{\"description\": \"\xc3\xa9\xc3\xa9\", \"bas\": \"x\", \"layers\": []}",
         "invalid recipe 't.json' at line 1 column 23: unknown key 'bas' in the recipe"},
        /* parse errors come from jansson, also with line and column */
        {"{\n  \"base\": \"ubuntu\",\n  \"layers\": [,]\n}\n",
         "invalid JSON in recipe 't.json' at line 3 column 14: unexpected token near ','"},
        {"{\"base\": \"a\", \"base\": \"b\", \"layers\": []}",
         "invalid JSON in recipe 't.json' at line 1 column 20: duplicate object key near '\"base\"'"},
        {"[1, 2]", "invalid recipe 't.json' at line 1 column 1: a recipe must be a JSON object"},
};

static void test_schema_errors_name_line_and_column(void **state)
{
        (void)state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct kiln_error err = KILN_ERROR_INIT;
                struct recipe *r = recipe_parse(cases[i].doc, strlen(cases[i].doc), "t.json", ".",
                                                &err);
                if (r) {
                        recipe_free(r);
                        fail_msg("case %zu: parsed, expected '%s'", i, cases[i].err);
                }
                if (strcmp(err.msg, cases[i].err))
                        fail_msg("case %zu:\n got  '%s'\n want '%s'", i, err.msg, cases[i].err);
        }
}

static void test_schema_accepts_the_linnaeus_recipe(void **state)
{
        struct kiln_error err = KILN_ERROR_INIT;
        const char *root = getenv("KILN_SOURCE_ROOT");
        char path[4096];
        struct recipe *r;

        (void)state;
        snprintf(path, sizeof(path), "%s/recipes/linnaeus/linnaeus.json", root ? root : "..");
        r = recipe_load(path, &err);
        if (!r)
                fail_msg("%s", err.msg);
        recipe_free(r);
}

static void test_position_lookup(void **state)
{
        const char *doc = "{\n  \"base\": \"ubuntu\",\n  \"layers\": [\n    {\"name\": \"a\", "
                          "\"kind\": \"debs\", \"debs\": []}\n  ]\n}\n";
        struct kiln_error err = KILN_ERROR_INIT;
        struct recipe *r = recipe_parse(doc, strlen(doc), "t.json", ".", &err);
        int line, col;

        (void)state;
        assert_non_null(r);
        assert_int_equal(recipe_position(r, "/layers/0/kind", true, &line, &col), 0);
        assert_int_equal(line, 4);
        assert_int_equal(col, 19);
        assert_int_equal(recipe_position(r, "/layers/0/kind", false, &line, &col), 0);
        assert_int_equal(col, 27);
        assert_int_equal(recipe_position(r, "/base", false, &line, &col), 0);
        assert_int_equal(line, 2);
        assert_int_equal(col, 11);
        assert_int_equal(recipe_position(r, "/nope", false, &line, &col), -1);
        recipe_free(r);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_schema_errors_name_line_and_column),
                cmocka_unit_test(test_schema_accepts_the_linnaeus_recipe),
                cmocka_unit_test(test_position_lookup),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
