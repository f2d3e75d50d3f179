/* A recipe's "validate" object: the version prefix rule, the schema, the
 * expansion for an image (the shipped linnaeus recipe's matrix), the
 * command that runs the checks and the reader of its output. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "recipe.h"
#include "recipe_validate.h"

static void test_prefix_ends_at_a_component(void **state)
{
        static const struct {
                const char *value, *want;
                bool ok;
        } cases[] = {
                {"2.7.4.post1", "2", true},       {"20.1", "2", false},
                {"2.8.0rc0+cu128", "2.8.0", true}, {"2.8.0.dev20250601+cu128", "2.8.0", true},
                {"2.8.01", "2.8.0", false},       {"2.7.1+cu126", "2.7.1", true},
                {"2.7.1+cu126", "2.7.1+cu126", true}, {"2.7.10", "2.7.1", false},
                {"8.6", "8", true},               {"8.6", "8.", true},
                {"9.0", "9.0", true},             {"7.5", "8", false},
                {"True", "True", true},           {"/app/linnaeus:", "/app/linnaeus", true},
                {"", "2", false},                 {"3", "", true},
        };
        (void)state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
                if (recipe_validate_prefix(cases[i].value, cases[i].want) != cases[i].ok)
                        fail_msg("'%s' against '%s': want %s", cases[i].value, cases[i].want,
                                 cases[i].ok ? "match" : "no match");
        assert_false(recipe_validate_prefix(NULL, "2"));
}

static const struct {
        const char *validate, *err;
} schema_cases[] = {
        {"{\"checks\": [{\"name\": \"x\", \"module\": \"x\", \"verison\": \"1\"}]}",
         "invalid recipe 't.json' at line 3 column 56: unknown key 'verison' in check 'x'"},
        {"{\"checks\": [{\"name\": \"x\", \"module\": \"x\", \"absent\": true, \"version\": \"1\"}]}",
         "invalid recipe 't.json' at line 3 column 72: 'version' in check 'x' contradicts "
         "'absent': a module that must not import has nothing more to check"},
        {"{\"checks\": [{\"name\": \"x\"}]}",
         "invalid recipe 't.json' at line 3 column 27: check 'x' has nothing to check: give "
         "'module' or 'code'"},
        {"{\"checks\": [{\"name\": \"x\", \"code\": \"pass\", \"version\": \"1\"}]}",
         "invalid recipe 't.json' at line 3 column 57: 'version' in check 'x' needs a 'module'"},
        {"{\"checks\": [{\"name\": \"x\", \"module\": \"x\", \"names\": [\"a\", 2]}]}",
         "invalid recipe 't.json' at line 3 column 71: each entry of 'names' must be a string"},
        {"{\"checks\": [{\"name\": \"x\", \"module\": \"x\", \"values\": {\"x.y\": 1}}]}",
         "invalid recipe 't.json' at line 3 column 74: 'x.y' in check 'x' must be a string"},
        {"{\"checks\": [{\"name\": \"x\", \"module\": \"x\", \"gpu\": \"yes\"}]}",
         "invalid recipe 't.json' at line 3 column 63: 'gpu' in check 'x' must be true or false"},
        {"{\"env\": {\"CUDA_VERSION\": 12}, \"checks\": []}",
         "invalid recipe 't.json' at line 3 column 40: 'CUDA_VERSION' in 'env' of 'validate' "
         "must be a string"},
        {"{\"python\": \"python3\"}",
         "invalid recipe 't.json' at line 3 column 15: missing 'checks' in 'validate'"},
        {"{\"checks\": [\"torch\"]}",
         "invalid recipe 't.json' at line 3 column 27: each entry of 'checks' in 'validate' must "
         "be an object"},
};

static void test_schema_errors_name_the_place(void **state)
{
        (void)state;
        for (size_t i = 0; i < sizeof(schema_cases) / sizeof(schema_cases[0]); i++) {
                struct kiln_error err = KILN_ERROR_INIT;
                char doc[1024];
                struct recipe *r;
                snprintf(doc, sizeof(doc), "{\n  \"base\": \"scratch\", \"layers\": [],\n"
                                           "  \"validate\": %s\n}\n",
                         schema_cases[i].validate);
                r = recipe_parse(doc, strlen(doc), "t.json", ".", &err);
                if (r)
                        fail_msg("case %zu parsed", i);
                assert_int_equal(err.code, KILN_E_INVALID);
                assert_string_equal(err.msg, schema_cases[i].err);
        }
}

/* The names of the spec's checks, space-separated. */
static void names_of(const json_t *spec, char *buf, size_t len)
{
        size_t i, n = 0;
        json_t *c;

        buf[0] = '\0';
        json_array_foreach(json_object_get(spec, "checks"), i, c)
                n += (size_t)snprintf(buf + n, len - n, "%s%s", n ? " " : "",
                                      json_string_value(json_object_get(c, "name")));
}

static json_t *check_named(const json_t *spec, const char *name, bool absent)
{
        size_t i;
        json_t *c;

        json_array_foreach(json_object_get(spec, "checks"), i, c) {
                if (!strcmp(json_string_value(json_object_get(c, "name")), name) &&
                    json_is_true(json_object_get(c, "absent")) == absent)
                        return c;
        }
        return NULL;
}

static json_t *spec_for(const char *arch)
{
        struct kiln_error err = KILN_ERROR_INIT;
        struct recipe *r = recipe_load_shipped("linnaeus", &err);
        char set[64];
        const char *sets[] = {set};
        json_t *spec = NULL;

        if (!r)
                fail_msg("%s", err.msg);
        snprintf(set, sizeof(set), "arch=%s", arch);
        if (recipe_validate_spec(r, NULL, sets, 1, &spec, &err) < 0)
                fail_msg("%s", err.msg);
        recipe_free(r);
        return spec;
}

static void test_linnaeus_matrix(void **state)
{
        static const struct {
                const char *arch, *torch, *local, *cuda, *fa, *cap, *names;
        } m[] = {
                {"hopper", "2.8.0", "cu128", "12.8", "3", "9.0",
                 "torch torchvision torchaudio flash-attn flash-attn-ext linnaeus cuda capability "
                 "flash-attn-run"},
                {"ampere", "2.7.1", "cu126", "12.6", "2", "8",
                 "torch torchvision torchaudio flash-attn flash-attn-ext linnaeus cuda capability "
                 "flash-attn-run"},
                {"turing", "2.7.1", "cu126", "12.6", NULL, "7.5",
                 "torch torchvision torchaudio flash-attn linnaeus cuda capability"},
                {"pre-ampere", "2.7.1", "cu126", "12.6", NULL, "7.5",
                 "torch torchvision torchaudio flash-attn linnaeus cuda capability"},
        };
        (void)state;
        for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
                json_t *spec = spec_for(m[i].arch), *t = check_named(spec, "torch", false);
                json_t *cap = check_named(spec, "capability", false);
                const char *key;
                json_t *v;
                char names[512], prof[64];

                names_of(spec, names, sizeof(names));
                assert_string_equal(names, m[i].names);
                snprintf(prof, sizeof(prof), "arch=%s", m[i].arch);
                assert_string_equal(json_string_value(json_object_get(spec, "profile")), prof);
                assert_string_equal(json_string_value(json_object_get(spec, "python")),
                                    "/usr/bin/python3.11");
                assert_string_equal(json_string_value(json_object_get(t, "version")), m[i].torch);
                assert_string_equal(json_string_value(json_object_get(t, "local")), m[i].local);
                assert_string_equal(json_string_value(json_object_get(
                                            json_object_get(t, "values"), "torch.version.cuda")),
                                    m[i].cuda);
                json_object_foreach(json_object_get(cap, "values"), key, v)
                        assert_string_equal(json_string_value(v), m[i].cap);
                assert_true(json_is_true(json_object_get(cap, "gpu")));
                if (m[i].fa) {
                        json_t *fa = check_named(spec, "flash-attn", false);
                        assert_non_null(fa);
                        assert_string_equal(json_string_value(json_object_get(fa, "version")),
                                            m[i].fa);
                        assert_int_equal(json_array_size(json_object_get(fa, "names")), 2);
                        assert_null(check_named(spec, "flash-attn", true));
                        assert_true(json_is_true(json_object_get(
                                check_named(spec, "flash-attn-ext", false), "extension")));
                } else {
                        assert_non_null(check_named(spec, "flash-attn", true));
                        assert_null(check_named(spec, "flash-attn", false));
                }
                /* no when/unless left in what runs */
                assert_null(json_object_get(check_named(spec, "linnaeus", false), "when"));
                json_decref(spec);
        }
}

static void test_spec_takes_recorded_variables_then_sets(void **state)
{
        struct kiln_error err = KILN_ERROR_INIT;
        struct recipe *r = recipe_load_shipped("linnaeus.json", &err);
        json_t *rec = json_pack("{s:s, s:s, s:i}", "arch", "hopper", "renamed_long_ago", "x",
                                "arch_number", 3);
        const char *sets[] = {"python_interpreter=/opt/py/bin/python"};
        const char *over[] = {"arch=ampere"};
        json_t *spec = NULL;

        (void)state;
        assert_non_null(r);
        /* a name the recipe does not declare is left out, not an error */
        assert_int_equal(recipe_validate_spec(r, rec, sets, 1, &spec, &err), 0);
        assert_string_equal(json_string_value(json_object_get(spec, "profile")), "arch=hopper");
        assert_string_equal(json_string_value(json_object_get(spec, "python")),
                            "/opt/py/bin/python");
        json_decref(spec);
        spec = NULL;
        assert_int_equal(recipe_validate_spec(r, rec, over, 1, &spec, &err), 0);
        assert_string_equal(json_string_value(json_object_get(spec, "profile")), "arch=ampere");
        json_decref(spec);
        spec = NULL;
        /* no arch anywhere: the default profile would check the wrong image */
        assert_int_equal(recipe_validate_spec(r, NULL, NULL, 0, &spec, &err), -1);
        assert_int_equal(err.code, KILN_E_USAGE);
        assert_non_null(strstr(err.msg, "give --set arch=VALUE"));
        assert_null(spec);
        json_decref(rec);
        recipe_free(r);
        r = recipe_load_shipped("nonesuch", &err);
        assert_null(r);
        assert_int_equal(err.code, KILN_E_NOT_FOUND);
        {
                const char *doc = "{\"base\": \"scratch\", \"layers\": []}";
                r = recipe_parse(doc, strlen(doc), "none.json", ".", &err);
                assert_non_null(r);
                assert_int_equal(recipe_validate_spec(r, NULL, NULL, 0, &spec, &err), -1);
                assert_int_equal(err.code, KILN_E_NOT_FOUND);
                assert_string_equal(err.msg, "recipe 'none.json' has no 'validate' object: "
                                             "nothing to check");
                recipe_free(r);
        }
}

static void test_script_is_the_interpreter_and_the_program(void **state)
{
        struct kiln_error err = KILN_ERROR_INIT;
        json_t *spec = spec_for("ampere"), *back;
        char **argv = NULL;

        (void)state;
        assert_int_equal(recipe_validate_script(spec, "needs --gpu", &argv, &err), 0);
        assert_string_equal(argv[0], "/usr/bin/python3.11");
        assert_string_equal(argv[1], "-B");
        assert_string_equal(argv[2], "-c");
        assert_non_null(strstr(argv[3], "kiln-check"));
        back = json_loads(argv[4], 0, NULL);
        assert_true(json_equal(back, spec));
        assert_string_equal(argv[5], "needs --gpu");
        assert_null(argv[6]);
        json_decref(back);
        free(argv);
        json_decref(spec);
}

struct seen {
        char text[4096];
        size_t n;
        unsigned fails;
};

static void on_check(void *ctx, const char *name, enum recipe_check_state st, const char *detail)
{
        struct seen *s = ctx;
        static const char *const w[] = {"ok", "FAIL", "skip"};

        s->n += (size_t)snprintf(s->text + s->n, sizeof(s->text) - s->n, "%s %s: %s\n", w[st],
                                 name, detail);
        if (st == RECIPE_CHECK_FAIL)
                s->fails++;
}

#define REC(i, st, d) "\x1ekiln-check {\"i\": " #i ", \"state\": \"" st "\", \"detail\": \"" d "\"}\n"

/* Feeds out to a reader of spec in chunks of step bytes. */
static void read_all(const json_t *spec, const char *out, size_t step, int status,
                     const char *why, struct seen *s)
{
        struct kiln_error err = KILN_ERROR_INIT;
        struct recipe_validate_report rep = {.check = on_check, .ctx = s};
        struct recipe_validate_reader *rd = recipe_validate_reader_new(spec, &rep, &err);
        size_t len = strlen(out);

        assert_non_null(rd);
        for (size_t i = 0; i < len; i += step)
                recipe_validate_reader_feed(rd, out + i, len - i < step ? len - i : step);
        recipe_validate_reader_finish(rd, status, why);
        recipe_validate_reader_free(rd);
}

static void test_reader_reports_each_check_as_it_comes(void **state)
{
        json_t *spec = json_loads("{\"source\": \"/app\", \"checks\": [{\"name\": \"a\"}, "
                                  "{\"name\": \"b\"}, {\"name\": \"c\"}]}",
                                  0, NULL);
        static const char out[] =
                "\x1ekiln-check {\"i\": -1, \"name\": \"python\", \"state\": \"ok\", \"detail\": \"py 3.11\"}\n"
                REC(0, "begin", "") "UserWarning: noise from an import\n" REC(0, "ok", "a 1.0")
                REC(1, "begin", "") REC(1, "fail", "import b: ImportError: x")
                REC(2, "skip", "needs --gpu")
                "\x1ekiln-check {\"i\": -2, \"name\": \"source\", \"state\": \"ok\", \"detail\": \"/app holds 3 entries\"}\n";
        struct seen s = {0};

        (void)state;
        /* byte by byte, then all at once: the same report */
        read_all(spec, out, 1, 0, NULL, &s);
        assert_string_equal(s.text, "ok python: py 3.11\n"
                                    "ok a: a 1.0\n"
                                    "FAIL b: import b: ImportError: x\n"
                                    "skip c: needs --gpu\n"
                                    "ok source: /app holds 3 entries\n");
        memset(&s, 0, sizeof(s));
        read_all(spec, out, sizeof(out), 0, NULL, &s);
        assert_int_equal(s.fails, 1);
        json_decref(spec);
}

static void test_reader_blames_the_check_python_died_in(void **state)
{
        json_t *spec = json_loads("{\"source\": \"/app\", \"checks\": [{\"name\": \"a\"}, "
                                  "{\"name\": \"b\"}, {\"name\": \"c\"}]}",
                                  0, NULL);
        static const char out[] =
                "\x1ekiln-check {\"i\": -1, \"name\": \"python\", \"state\": \"ok\", \"detail\": \"py\"}\n"
                REC(0, "begin", "") REC(0, "ok", "fine") REC(1, "begin", "")
                "Fatal Python error: Segmentation fault";
        struct seen s = {0};

        (void)state;
        read_all(spec, out, 7, 139, NULL, &s);
        assert_string_equal(s.text,
                            "ok python: py\n"
                            "ok a: fine\n"
                            "FAIL b: python died during this check: exit status 139 (signal 11): "
                            "Fatal Python error: Segmentation fault\n"
                            "skip c: not checked: python did not get this far\n"
                            "skip source: not checked: python did not get this far\n");
        /* no interpreter at all */
        memset(&s, 0, sizeof(s));
        read_all(spec, "", 1, -1, "cannot run '/usr/bin/python3.11' in the image", &s);
        assert_string_equal(s.text,
                            "FAIL python: cannot run '/usr/bin/python3.11' in the image\n"
                            "skip a: not checked: python did not get this far\n"
                            "skip b: not checked: python did not get this far\n"
                            "skip c: not checked: python did not get this far\n"
                            "skip source: not checked: python did not get this far\n");
        /* every check reported, then a non-zero exit: that fails too */
        memset(&s, 0, sizeof(s));
        read_all(spec,
                 "\x1ekiln-check {\"i\": -1, \"name\": \"python\", \"state\": \"ok\", \"detail\": \"py\"}\n"
                 REC(0, "ok", "x") REC(1, "ok", "x") REC(2, "ok", "x")
                 "\x1ekiln-check {\"i\": -2, \"state\": \"ok\", \"detail\": \"src\"}\nbye\n",
                 64, 1, NULL, &s);
        assert_int_equal(s.fails, 1);
        assert_non_null(strstr(s.text, "FAIL checker: exit status 1: bye\n"));
        /* records that are not the protocol's are the program's own lines */
        memset(&s, 0, sizeof(s));
        read_all(spec, "\x1ekiln-check {not json\n" REC(7, "ok", "no such check") REC(0, "ok", "x"),
                 5, 0, NULL, &s);
        assert_non_null(strstr(s.text, "ok a: x\n"));
        assert_null(strstr(s.text, "no such check"));
        json_decref(spec);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_prefix_ends_at_a_component),
                cmocka_unit_test(test_schema_errors_name_the_place),
                cmocka_unit_test(test_linnaeus_matrix),
                cmocka_unit_test(test_spec_takes_recorded_variables_then_sets),
                cmocka_unit_test(test_script_is_the_interpreter_and_the_program),
                cmocka_unit_test(test_reader_reports_each_check_as_it_comes),
                cmocka_unit_test(test_reader_blames_the_check_python_died_in),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
