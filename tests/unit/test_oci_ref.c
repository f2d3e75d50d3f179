#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "place.h"
#include "ref.h"

#define H64 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* Normalization as docker's ParseNormalizedNamed + TagNameOnly does. */
static const struct {
        const char *in, *domain, *path, *tag, *full;
} good[] = {
        {"ubuntu", "docker.io", "library/ubuntu", "latest", "docker.io/library/ubuntu:latest"},
        {"ubuntu:22.04", "docker.io", "library/ubuntu", "22.04", "docker.io/library/ubuntu:22.04"},
        {"nvidia/cuda:12.8.0-cudnn-devel-ubuntu22.04", "docker.io", "nvidia/cuda",
         "12.8.0-cudnn-devel-ubuntu22.04", "docker.io/nvidia/cuda:12.8.0-cudnn-devel-ubuntu22.04"},
        {"docker.io/ubuntu", "docker.io", "library/ubuntu", "latest", NULL},
        {"index.docker.io/library/ubuntu", "docker.io", "library/ubuntu", "latest", NULL},
        {"localhost/foo", "localhost", "foo", "latest", "localhost/foo:latest"},
        {"localhost:5000/foo/bar:v1", "localhost:5000", "foo/bar", "v1", NULL},
        {"127.0.0.1:5000/a/b/c", "127.0.0.1:5000", "a/b/c", "latest", NULL},
        {"ghcr.io/org/img@sha256:" H64, "ghcr.io", "org/img", NULL,
         "ghcr.io/org/img@sha256:" H64},
        {"ghcr.io/org/img:v1@sha256:" H64, "ghcr.io", "org/img", "v1", NULL},
        {"Foo/bar", "Foo", "bar", "latest", NULL}, /* uppercase first component is a domain */
        {"a__b-c---d/x_y.z", "docker.io", "a__b-c---d/x_y.z", "latest", NULL},
        {"[::1]:5000/img", "[::1]:5000", "img", "latest", NULL},
        {"frontierkodiak/linnaeus-dev:hopper-nightly-cu128-feat-xyz-exp01", "docker.io",
         "frontierkodiak/linnaeus-dev", "hopper-nightly-cu128-feat-xyz-exp01", NULL},
};

static const struct {
        const char *in, *msg_part;
} bad[] = {
        {"Ubuntu", "repository name must be lowercase"},
        {"docker.io/Library/ubuntu", "repository name must be lowercase"},
        {"", "empty"},
        {"foo//bar", "empty path component"},
        {"foo/", "empty path component"},
        {"/foo", "empty path component"},
        {"foo:", "invalid tag"},
        {"foo:-bad", "invalid tag"},
        {"foo@sha256:abc", "needs 64 hex"},
        {"foo@md5:d41d8cd98f00b204e9800998ecf8427e", "unsupported digest"},
        {"foo bar", "space"},
        {"foo_/bar", "invalid path component"},
        {"-foo", "invalid path component"},
        {"foo..bar", "invalid path component"},
        {H64, "64 hexadecimal"},
        {"exa_mple.com/foo", "invalid domain"},
        {"example.com:/foo", "invalid domain"},
        {"-example.com/foo", "invalid domain"},
};

static void test_ref_normalizes_like_docker(void **state)
{
        (void)state;
        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
                struct kiln_error err = KILN_ERROR_INIT;
                struct oci_ref r;
                if (oci_ref_parse(good[i].in, &r, &err) < 0)
                        fail_msg("'%s' refused: %s", good[i].in, err.msg);
                assert_string_equal(r.domain, good[i].domain);
                assert_string_equal(r.path, good[i].path);
                if (good[i].tag)
                        assert_string_equal(r.tag, good[i].tag);
                else
                        assert_null(r.tag);
                if (good[i].full) {
                        char *s = oci_ref_string(&r);
                        assert_string_equal(s, good[i].full);
                        free(s);
                }
                oci_ref_release(&r);
        }
}

static void test_ref_rejects_invalid_with_reason(void **state)
{
        (void)state;
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                struct kiln_error err = KILN_ERROR_INIT;
                struct oci_ref r;
                if (oci_ref_parse(bad[i].in, &r, &err) == 0) {
                        oci_ref_release(&r);
                        fail_msg("'%s' accepted", bad[i].in);
                }
                if (!strstr(err.msg, bad[i].msg_part))
                        fail_msg("'%s': message '%s' lacks '%s'", bad[i].in, err.msg,
                                 bad[i].msg_part);
                assert_non_null(strchr(err.msg, '\''));
        }
}

static void test_ref_name_over_255_rejected(void **state)
{
        char buf[400];
        struct kiln_error err = KILN_ERROR_INIT;
        struct oci_ref r;

        (void)state;
        strcpy(buf, "example.com/");
        memset(buf + 12, 'a', 250);
        buf[262] = '\0';
        assert_int_equal(oci_ref_parse(buf, &r, &err), -1);
        assert_non_null(strstr(err.msg, "longer than 255"));
}

static void test_tag_over_128_rejected(void **state)
{
        char buf[200];
        struct kiln_error err = KILN_ERROR_INIT;
        struct oci_ref r;

        (void)state;
        strcpy(buf, "foo:");
        memset(buf + 4, 'a', 128);
        buf[132] = '\0';
        assert_int_equal(oci_ref_parse(buf, &r, &err), 0);
        oci_ref_release(&r);
        buf[132] = 'a';
        buf[133] = '\0';
        assert_int_equal(oci_ref_parse(buf, &r, &err), -1);
        assert_non_null(strstr(err.msg, "longer than 128"));
}

static void test_tag_grammar(void **state)
{
        (void)state;
        assert_true(oci_tag_valid("latest"));
        assert_true(oci_tag_valid("_x.y-z"));
        assert_false(oci_tag_valid(".x"));
        assert_false(oci_tag_valid("a/b"));
        assert_false(oci_tag_valid("../x"));
        assert_false(oci_tag_valid(""));
}

static void test_place_parses_transports(void **state)
{
        struct kiln_error err = KILN_ERROR_INIT;
        struct oci_place p;

        (void)state;
        assert_int_equal(oci_place_parse("oci:some/dir:v1", &p, &err), 0);
        assert_int_equal(p.kind, OCI_PLACE_LAYOUT);
        assert_string_equal(p.path, "some/dir");
        assert_string_equal(p.tag, "v1");
        oci_place_release(&p);
        assert_int_equal(oci_place_parse("oci:dir", &p, &err), 0);
        assert_null(p.tag);
        oci_place_release(&p);
        assert_int_equal(oci_place_parse("docker-archive:x.tar:example.com/a:b", &p, &err), 0);
        assert_int_equal(p.kind, OCI_PLACE_DOCKER_ARCHIVE);
        assert_string_equal(p.tag, "example.com/a:b");
        oci_place_release(&p);
        assert_int_equal(oci_place_parse("docker://ubuntu", &p, &err), 0);
        assert_int_equal(p.kind, OCI_PLACE_REGISTRY);
        assert_string_equal(p.ref.path, "library/ubuntu");
        oci_place_release(&p);
        assert_int_equal(oci_place_parse("oci:", &p, &err), -1);
        assert_int_equal(oci_place_parse("oci:dir:../x", &p, &err), -1);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_ref_normalizes_like_docker),
                cmocka_unit_test(test_ref_rejects_invalid_with_reason),
                cmocka_unit_test(test_ref_name_over_255_rejected),
                cmocka_unit_test(test_tag_over_128_rejected),
                cmocka_unit_test(test_tag_grammar),
                cmocka_unit_test(test_place_parses_transports),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
