/* registry/hosts.c: API hosts, RateLimit values and
 * containers-registries.conf(5) matching (the TOML reader: test_oci_toml.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hosts.h"

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
                cmocka_unit_test(test_conf_reads_registries_and_mirrors),
                cmocka_unit_test(test_conf_later_file_replaces_a_prefix),
                cmocka_unit_test(test_conf_rejects_bad_tables),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
