/* registry/hosts.c and registry/toml.c: API hosts, RateLimit values, the
 * TOML subset and containers-registries.conf(5) matching. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hosts.h"
#include "toml.h"

static void test_hub_names_reach_registry_1(void **state)
{
        (void)state;
        assert_string_equal(reg_host_api("docker.io"), "registry-1.docker.io");
        assert_string_equal(reg_host_api("index.docker.io"), "registry-1.docker.io");
        assert_string_equal(reg_host_api("nvcr.io"), "nvcr.io");
        assert_string_equal(reg_host_api("ghcr.io"), "ghcr.io");
        assert_string_equal(reg_host_api("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_true(reg_host_is_hub("docker.io"));
        assert_true(reg_host_is_hub("registry-1.docker.io"));
        assert_false(reg_host_is_hub("docker.io.example"));
        assert_false(reg_host_is_hub("nvcr.io"));
}

static const struct {
        const char *in;
        int rc;
        long n, w;
} rl_cases[] = {
        {"100;w=21600", 0, 100, 21600},
        {"0;w=21600", 0, 0, 21600},
        {"76", 0, 76, 0},
        {"100; w=60", 0, 100, 60},
        {"", -1, 0, 0},
        {"-1;w=5", -1, 0, 0},
        {"100;w=", -1, 0, 0},
        {"100;x=5", -1, 0, 0},
        {"100;w=5 junk", -1, 0, 0},
        {"99999999999999999999", -1, 0, 0},
};

static void test_ratelimit_values(void **state)
{
        (void)state;
        for (size_t i = 0; i < sizeof(rl_cases) / sizeof(rl_cases[0]); i++) {
                long n = -7, w = -7;
                int rc = reg_ratelimit_parse(rl_cases[i].in, &n, &w);
                if (rc != rl_cases[i].rc)
                        fail_msg("case '%s': rc %d", rl_cases[i].in, rc);
                if (rc == 0) {
                        assert_int_equal(n, rl_cases[i].n);
                        assert_int_equal(w, rl_cases[i].w);
                }
        }
}

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
        /* invalid */
        {"a = \"x\"\na = \"y\"\n", NULL, "f.conf:2: duplicate key 'a'"},
        {"a = \"unterminated\n", NULL, "f.conf:1: unterminated string"},
        {"a = \"\"\"multi\"\"\"\n", NULL, "f.conf:1: multi-line strings are not supported"},
        {"a = 1.5\n", NULL, "f.conf:1: unsupported value (strings, booleans, integers and arrays only)"},
        {"a = {x = 1}\n", NULL, "f.conf:1: inline tables are not supported"},
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
        {"a = truely\n", NULL, "f.conf:1: unsupported value (strings, booleans, integers and arrays only)"},
        {"a = 2024-01-01\n", NULL, "f.conf:1: unsupported value (strings, booleans, integers and arrays only)"},
};

static void test_toml_cases(void **state)
{
        (void)state;
        for (size_t i = 0; i < sizeof(toml_cases) / sizeof(toml_cases[0]); i++) {
                struct kiln_error err = KILN_ERROR_INIT;
                const char *in = toml_cases[i].in;
                json_t *doc = reg_toml_parse(in, strlen(in), "f.conf", &err);
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
        assert_null(reg_toml_parse(in, sizeof(in) - 1, "f.conf", &err));
        assert_string_equal(err.msg, "f.conf:2: NUL byte");
}

static const char conf_text[] =
        "unqualified-search-registries = [\"docker.io\"]\n"
        "[[registry]]\n"
        "prefix = \"docker.io\"\n"
        "location = \"docker.io\"\n"
        "[[registry.mirror]]\n"
        "location = \"mirror-a.local:5000/hub\"\n"
        "insecure = true\n"
        "[[registry.mirror]]\n"
        "location = \"mirror-b.local\"\n"
        "\n"
        "[[registry]]\n"
        "prefix = \"docker.io/library\"\n"
        "location = \"internal.example/lib\"\n"
        "\n"
        "[[registry]]\n"
        "location = \"old.example:5000\"\n"
        "insecure = true\n"
        "\n"
        "[[registry]]\n"
        "prefix = \"*.blocked.example\"\n"
        "blocked = true\n";

static void test_conf_reads_registries_and_mirrors(void **state)
{
        struct reg_conf conf = {0};
        struct kiln_error err = KILN_ERROR_INIT;
        const struct reg_conf_registry *r;
        char *s;

        (void)state;
        assert_int_equal(reg_conf_parse(&conf, conf_text, strlen(conf_text), "r.conf", &err), 0);
        assert_true(conf.search_ignored);
        assert_int_equal(conf.n, 4);
        /* the longest prefix wins */
        r = reg_conf_match(&conf, "docker.io/library/ubuntu");
        assert_non_null(r);
        assert_string_equal(r->prefix, "docker.io/library");
        s = reg_conf_rewrite(r, NULL, "docker.io/library/ubuntu");
        assert_string_equal(s, "internal.example/lib/ubuntu");
        free(s);
        r = reg_conf_match(&conf, "docker.io/nvidia/cuda");
        assert_string_equal(r->prefix, "docker.io");
        assert_int_equal(r->n_mirrors, 2);
        assert_string_equal(r->mirrors[0].location, "mirror-a.local:5000/hub");
        assert_string_equal(r->mirrors[0].host, "mirror-a.local:5000");
        assert_true(r->mirrors[0].insecure);
        assert_false(r->mirrors[1].insecure);
        s = reg_conf_rewrite(r, r->mirrors[0].location, "docker.io/nvidia/cuda");
        assert_string_equal(s, "mirror-a.local:5000/hub/nvidia/cuda");
        free(s);
        /* a prefix matches at a boundary only */
        assert_null(reg_conf_match(&conf, "docker.io.example/x"));
        assert_string_equal(reg_conf_match(&conf, "docker.io/libraryx/y")->prefix, "docker.io");
        /* no prefix: the location is the prefix */
        r = reg_conf_match(&conf, "old.example:5000/app");
        assert_string_equal(r->prefix, "old.example:5000");
        assert_true(r->insecure);
        assert_string_equal(r->host, "old.example:5000");
        /* wildcards match hosts under the domain */
        r = reg_conf_match(&conf, "a.b.blocked.example/x");
        assert_non_null(r);
        assert_true(r->blocked);
        assert_null(reg_conf_match(&conf, "blocked.example/x"));
        assert_null(reg_conf_match(&conf, "ghcr.io/x/y"));
        reg_conf_release(&conf);
}

static void test_conf_later_file_replaces_a_prefix(void **state)
{
        struct reg_conf conf = {0};
        struct kiln_error err = KILN_ERROR_INIT;
        static const char a[] = "[[registry]]\nprefix = \"quay.io\"\nblocked = true\n";
        static const char b[] = "[[registry]]\nprefix = \"quay.io\"\nlocation = \"q.local\"\n";

        (void)state;
        assert_int_equal(reg_conf_parse(&conf, a, strlen(a), "a.conf", &err), 0);
        assert_int_equal(reg_conf_parse(&conf, b, strlen(b), "b.conf", &err), 0);
        assert_int_equal(conf.n, 1);
        assert_false(conf.regs[0].blocked);
        assert_string_equal(conf.regs[0].file, "b.conf");
        reg_conf_release(&conf);
}

static const struct {
        const char *in, *error;
} conf_bad[] = {
        {"[[registry]]\ninsecure = true\n", "r.conf: [[registry]] 1: neither a prefix nor a location"},
        {"[[registry]]\nprefix = \"a\"\ninsecure = \"yes\"\n",
         "r.conf: [[registry]] 1: 'insecure' must be true or false"},
        {"[[registry]]\nprefix = \"a\"\n[[registry]]\nlocation = 5\n",
         "r.conf: [[registry]] 2: 'location' must be a registry name"},
        {"[[registry]]\nprefix = \"a\"\n[[registry.mirror]]\ninsecure = true\n",
         "r.conf: [[registry]] 1: a mirror without a location"},
        /* found by fuzz_registries_conf: the mirror's location leaked */
        {"[[registry]]\nprefix = \"a\"\n[[registry.mirror]]\nlocation = \"m\"\ninsecure = 1\n",
         "r.conf: [[registry]] 1: 'insecure' must be true or false"},
        {"[[registry]]\nprefix = \"*.a.example\"\nlocation = \"b\"\n",
         "r.conf: [[registry]] 1: a wildcard prefix '*.a.example' cannot have a location"},
        {"registry = \"x\"\n", "r.conf: 'registry' must be [[registry]] tables"},
        {"[[registry]\n", "r.conf:1: expected ']]'"},
};

static void test_conf_rejects_bad_tables(void **state)
{
        (void)state;
        for (size_t i = 0; i < sizeof(conf_bad) / sizeof(conf_bad[0]); i++) {
                struct reg_conf conf = {0};
                struct kiln_error err = KILN_ERROR_INIT;
                assert_int_equal(reg_conf_parse(&conf, conf_bad[i].in, strlen(conf_bad[i].in),
                                                "r.conf", &err),
                                 -1);
                if (strcmp(err.msg, conf_bad[i].error))
                        fail_msg("case %zu: message '%s'", i, err.msg);
                reg_conf_release(&conf);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_hub_names_reach_registry_1),
                cmocka_unit_test(test_ratelimit_values),
                cmocka_unit_test(test_toml_cases),
                cmocka_unit_test(test_toml_rejects_nul),
                cmocka_unit_test(test_conf_reads_registries_and_mirrors),
                cmocka_unit_test(test_conf_later_file_replaces_a_prefix),
                cmocka_unit_test(test_conf_rejects_bad_tables),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
