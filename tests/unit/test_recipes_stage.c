/* The pieces of the layer front ends that need no files: wheel names and
 * tags, requirements, simple index pages, apt indexes, ignore rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "stage.h"

static const struct recipe_python_target cp311 = {"cp311", "manylinux_2_35_x86_64", NULL, NULL,
                                                   NULL};

static void test_wheel_names_and_compatibility(void **state)
{
        static const struct {
                const char *file;
                bool ok;
        } t[] = {
                {"torch-2.7.1+cu126-cp311-cp311-manylinux_2_28_x86_64.whl", true},
                {"torch-2.7.1+cu126-cp310-cp310-manylinux_2_28_x86_64.whl", false},
                {"torch-2.7.1+cu126-cp311-cp311-manylinux_2_28_aarch64.whl", false},
                {"torch-2.7.1-cp311-cp311-win_amd64.whl", false},
                {"flash_attn-2.7.4.post1-cp311-cp311-linux_x86_64.whl", false},
                {"numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", true},
                {"numpy-1.26.4-cp311-cp311-manylinux_2_39_x86_64.whl", false},
                {"pyyaml-6.0.1-cp311-cp311-manylinux1_x86_64.whl", true},
                {"tqdm-4.66.4-py3-none-any.whl", true},
                {"six-1.16.0-py2.py3-none-any.whl", true},
                {"cryptography-42.0.0-cp39-abi3-manylinux_2_28_x86_64.whl", true},
                {"old-1.0-py2-none-any.whl", false},
                {"pkg-1.0-1build-py3-none-any.whl", true},
        };
        (void)state;
        for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
                struct recipe_wheel_name w;
                struct kiln_error err = KILN_ERROR_INIT;
                if (recipe_wheel_name_parse(t[i].file, &w, &err) < 0)
                        fail_msg("case %zu: %s", i, err.msg);
                if (recipe_wheel_compatible(&w, &cp311) != t[i].ok)
                        fail_msg("case %zu: %s should %sbe compatible", i, t[i].file,
                                 t[i].ok ? "" : "not ");
                recipe_wheel_name_release(&w);
        }
}

static void test_wheel_name_errors(void **state)
{
        struct recipe_wheel_name w;
        struct kiln_error err = KILN_ERROR_INIT;

        (void)state;
        assert_int_equal(recipe_wheel_name_parse("torch-2.7.1.tar.gz", &w, &err), -1);
        assert_string_equal(err.msg, "invalid wheel name 'torch-2.7.1.tar.gz': no .whl");
        assert_int_equal(recipe_wheel_name_parse("torch-2.7.1-any.whl", &w, &err), -1);
        assert_string_equal(err.msg, "invalid wheel name 'torch-2.7.1-any.whl': expected "
                                     "NAME-VERSION-PY-ABI-PLATFORM.whl");
}

static void test_requirements_file(void **state)
{
        const char *f = "# a lock\n"
                        "--index-url https://example.invalid/simple\n"
                        "Torch_Vision==0.22.1+cu126 \\\n"
                        "    --hash=sha256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA \\\n"
                        "    --hash=sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\n"
                        "\n"
                        "tqdm==4.66.4  # progress bars\n"
                        "torch==2.8.0.*\n"
                        "einops[extra]\n";
        struct recipe_requirements r;
        struct kiln_error err = KILN_ERROR_INIT;

        (void)state;
        if (recipe_requirements_parse(f, strlen(f), "req.txt", &r, &err) < 0)
                fail_msg("%s", err.msg);
        assert_int_equal(r.n, 4);
        assert_string_equal(r.items[0].name, "torch-vision");
        assert_string_equal(r.items[0].version, "0.22.1+cu126");
        assert_int_equal(r.items[0].n_sha256, 2);
        assert_string_equal(r.items[0].sha256[0],
                            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
        assert_string_equal(r.items[1].name, "tqdm");
        assert_int_equal(r.items[1].n_sha256, 0);
        assert_true(r.items[2].prefix);
        assert_string_equal(r.items[2].version, "2.8.0");
        assert_null(r.items[3].version);
        recipe_requirements_release(&r);
}

static void test_requirements_errors(void **state)
{
        static const struct {
                const char *text, *err;
        } t[] = {
                {"numpy>=\n", "'req.txt' line 1: invalid requirement 'numpy>=': invalid version "
                               "specifier '>='"},
                {"ok==1\n-r other.txt\n", "unsupported option in 'req.txt' line 2: '-r other.txt'"},
                {"x==1 --hash=md5:abc\n", "unsupported hash in 'req.txt' line 1: only sha256"},
                {"x==1 --hash=sha256:abc\n",
                 "'req.txt' line 1: invalid --hash 'sha256:abc': expected 64 hex digits"},
                {"pkg @ https://x/y.whl\n",
                 "unsupported requirement in 'req.txt' line 1: URLs are not supported"},
                {"x==1; python_version<\n",
                 "'req.txt' line 1: invalid requirement 'x==1; python_version<': invalid marker "
                 "'python_version<': expected a variable or a quoted string"},
        };
        (void)state;
        for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
                struct recipe_requirements r;
                struct kiln_error err = KILN_ERROR_INIT;
                if (recipe_requirements_parse(t[i].text, strlen(t[i].text), "req.txt", &r, &err) == 0)
                        fail_msg("case %zu parsed", i);
                if (strcmp(err.msg, t[i].err))
                        fail_msg("case %zu:\n got  '%s'\n want '%s'", i, err.msg, t[i].err);
        }
}

static const char *page =
        "<!DOCTYPE html>\n<html><body><h1>Links for torch</h1>\n"
        "<a href=\"/whl/cu126/torch-2.7.0%2Bcu126-cp311-cp311-manylinux_2_28_x86_64.whl#sha256="
        "1111111111111111111111111111111111111111111111111111111111111111\">torch-2.7.0+cu126-cp311-cp311-manylinux_2_28_x86_64.whl</a><br/>\n"
        "<a href=\"../../files/torch-2.7.1%2Bcu126-cp310-cp310-manylinux_2_28_x86_64.whl\">x</a><br/>\n"
        "<a href=\"../../files/torch-2.7.1%2Bcu126-cp311-cp311-manylinux_2_28_x86_64.whl#sha256="
        "ABCDEF0000000000000000000000000000000000000000000000000000000000\" data-requires-python=\"&gt;=3.9.0\">y</a><br/>\n"
        "<a href=\"../../files/torch-2.7.1%2Bcpu-cp311-cp311-manylinux_2_28_x86_64.whl\">z</a><br/>\n"
        "<a href=\"torch-2.8.0.dev20250601%2Bcu128-cp311-cp311-manylinux_2_28_x86_64.whl\">n1</a>\n"
        "<a href=\"torch-2.8.0.dev20250612%2Bcu128-cp311-cp311-manylinux_2_28_x86_64.whl\">n2</a>\n"
        "<a href=\"torch-2.8.0.dev20250610%2Bcu128-cp311-cp311-manylinux_2_28_x86_64.whl\">n3</a>\n"
        "<a href=\"torch-2.9.0-cp311-cp311-manylinux_2_28_x86_64.whl\" data-yanked=\"\">yanked</a>\n"
        "</body></html>\n";

static void test_simple_index_pick(void **state)
{
        static const struct {
                const char *req, *url, *sha;
        } t[] = {
                {"torch==2.7.1+cu126",
                 "/idx/files/torch-2.7.1+cu126-cp311-cp311-manylinux_2_28_x86_64.whl",
                 "abcdef0000000000000000000000000000000000000000000000000000000000"},
                {"torch==2.7.0",
                 "/whl/cu126/torch-2.7.0+cu126-cp311-cp311-manylinux_2_28_x86_64.whl",
                 "1111111111111111111111111111111111111111111111111111111111111111"},
                {"torch==2.8.0.*",
                 "/idx/simple/torch/torch-2.8.0.dev20250612+cu128-cp311-cp311-manylinux_2_28_x86_64.whl",
                 NULL},
                {"torch", "/idx/simple/torch/torch-2.8.0.dev20250612+cu128-cp311-cp311-manylinux_2_28_x86_64.whl",
                 NULL},
        };
        (void)state;
        for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
                struct recipe_requirement q;
                struct kiln_error err = KILN_ERROR_INIT;
                char *url = NULL, *sha = NULL;
                assert_int_equal(recipe_requirement_parse(t[i].req, &q, &err), 0);
                if (recipe_simple_index_pick(page, strlen(page), "/idx/simple/torch", &q, &cp311,
                                             &url, &sha, &err) < 0)
                        fail_msg("case %zu: %s", i, err.msg);
                assert_string_equal(url, t[i].url);
                if (t[i].sha)
                        assert_string_equal(sha, t[i].sha);
                else
                        assert_null(sha);
                free(url);
                free(sha);
                recipe_requirement_release(&q);
        }
}

static void test_simple_index_urls_resolve_against_the_page(void **state)
{
        struct recipe_requirement q;
        struct kiln_error err = KILN_ERROR_INIT;
        char *url = NULL, *sha = NULL;

        (void)state;
        assert_int_equal(recipe_requirement_parse("torch==2.7.0", &q, &err), 0);
        assert_int_equal(recipe_simple_index_pick(page, strlen(page),
                                                  "https://download.pytorch.org/whl/cu126/torch",
                                                  &q, &cp311, &url, &sha, &err),
                         0);
        assert_string_equal(url, "https://download.pytorch.org/whl/cu126/"
                                 "torch-2.7.0+cu126-cp311-cp311-manylinux_2_28_x86_64.whl");
        free(url);
        free(sha);
        recipe_requirement_release(&q);
        assert_int_equal(recipe_requirement_parse("torch==2.7.1+cu126", &q, &err), 0);
        assert_int_equal(recipe_simple_index_pick(page, strlen(page),
                                                  "https://mirror.test/simple/torch", &q, &cp311,
                                                  &url, &sha, &err),
                         0);
        assert_string_equal(url, "https://mirror.test/files/"
                                 "torch-2.7.1+cu126-cp311-cp311-manylinux_2_28_x86_64.whl");
        free(url);
        free(sha);
        recipe_requirement_release(&q);
}

static void test_simple_index_no_match(void **state)
{
        struct recipe_requirement q;
        struct kiln_error err = KILN_ERROR_INIT;
        char *url = NULL, *sha = NULL;
        struct recipe_python_target py310 = {"cp310", NULL, NULL, NULL, NULL};

        (void)state;
        assert_int_equal(recipe_requirement_parse("torch==2.9.0", &q, &err), 0);
        assert_int_equal(recipe_simple_index_pick(page, strlen(page), "/idx/simple/torch", &q,
                                                  &cp311, &url, &sha, &err),
                         -1);
        assert_int_equal(err.code, KILN_E_NOT_FOUND);
        assert_string_equal(err.msg, "no wheel for 'torch==2.9.0' matches cp311 / "
                                     "manylinux_2_35_x86_64 in '/idx/simple/torch' (7 wheels listed)");
        recipe_requirement_release(&q);
        assert_int_equal(recipe_requirement_parse("torch==2.7.0", &q, &err), 0);
        assert_int_equal(recipe_simple_index_pick(page, strlen(page), "/idx", &q, &py310, &url,
                                                  &sha, &err),
                         -1);
        recipe_requirement_release(&q);
}

static void test_apt_index_lookup(void **state)
{
        const char *idx = "Package: python3.11\n"
                          "Architecture: arm64\n"
                          "Filename: pool/main/p/python3.11/python3.11_3.11.9-1_arm64.deb\n"
                          "SHA256: 00\n"
                          "\n"
                          "Package: python3.11\n"
                          "Version: 3.11.9-1+jammy1\n"
                          "Architecture: amd64\n"
                          "Filename: pool/main/p/python3.11/python3.11_3.11.9-1_amd64.deb\n"
                          "SHA256: abcd\n"
                          "\n"
                          "Package: tzdata\n"
                          "Architecture: all\n"
                          "Filename: pool/main/t/tzdata/tzdata_2024a_all.deb\n"
                          "SHA256: ef01\n";
        struct kiln_error err = KILN_ERROR_INIT;
        char *file = NULL, *sha = NULL;

        (void)state;
        assert_int_equal(recipe_apt_find(idx, "python3.11", "amd64", &file, &sha, &err), 0);
        assert_string_equal(file, "pool/main/p/python3.11/python3.11_3.11.9-1_amd64.deb");
        assert_string_equal(sha, "abcd");
        free(file);
        free(sha);
        assert_int_equal(recipe_apt_find(idx, "tzdata", "amd64", &file, &sha, &err), 0);
        assert_string_equal(sha, "ef01");
        free(file);
        free(sha);
        assert_int_equal(recipe_apt_find(idx, "python3", "amd64", &file, &sha, &err), -1);
        assert_string_equal(err.msg, "no package 'python3' for 'amd64' in the index");
}

static void test_ignore_rules(void **state)
{
        static const struct {
                bool docker;
                const char *rules, *path;
                bool dir, excluded;
        } t[] = {
                {false, "*.pyc\n", "a/b/c.pyc", false, true},
                {false, "*.pyc\n!keep.pyc\n", "keep.pyc", false, false},
                {false, "/build\n", "build", true, true},
                {false, "/build\n", "src/build", true, false},
                {false, "build/\n", "src/build", true, true},
                {false, "build/\n", "src/build", false, false},
                {false, "docs/*.md\n", "docs/a.md", false, true},
                {false, "docs/*.md\n", "docs/x/a.md", false, false},
                {false, "**/cache\n", "a/b/cache", true, true},
                {false, "a/**/z\n", "a/z", false, true},
                {false, "a/**/z\n", "a/b/c/z", false, true},
                {false, "# comment\n\n", "x", false, false},
                {false, "data[0-9]\n", "data7", false, true},
                {true, "outputs\n", "outputs/run1/log.txt", false, true},
                {true, "*.pyc\n", "a/b.pyc", false, false},
                {true, "**/*.pyc\n", "a/b.pyc", false, true},
                {true, "data\n!data/keep.txt\n", "data/keep.txt", false, false},
                {true, "./secrets\n", "secrets", false, true},
        };
        (void)state;
        for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
                struct recipe_ignore *ig = recipe_ignore_parse(t[i].rules, strlen(t[i].rules),
                                                               t[i].docker);
                if (recipe_ignore_match(ig, t[i].path, t[i].dir) != t[i].excluded)
                        fail_msg("case %zu: '%s' %s", i, t[i].path,
                                 t[i].excluded ? "not excluded" : "excluded");
                recipe_ignore_free(ig);
        }
}

static void test_pep503_normalize(void **state)
{
        char a[] = "Torch_Vision", b[] = "foo.-_bar", c[] = "Flash-Attn";

        (void)state;
        recipe_pep503_normalize(a);
        recipe_pep503_normalize(b);
        recipe_pep503_normalize(c);
        assert_string_equal(a, "torch-vision");
        assert_string_equal(b, "foo-bar");
        assert_string_equal(c, "flash-attn");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_wheel_names_and_compatibility),
                cmocka_unit_test(test_wheel_name_errors),
                cmocka_unit_test(test_requirements_file),
                cmocka_unit_test(test_requirements_errors),
                cmocka_unit_test(test_simple_index_pick),
                cmocka_unit_test(test_simple_index_urls_resolve_against_the_page),
                cmocka_unit_test(test_simple_index_no_match),
                cmocka_unit_test(test_apt_index_lookup),
                cmocka_unit_test(test_ignore_rules),
                cmocka_unit_test(test_pep503_normalize),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
