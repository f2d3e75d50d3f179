/* registry/parse.c: WWW-Authenticate, Link, Location resolution, Retry-After. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "parse.h"

/* Cases from distribution's authchallenge_test.go and containers/image's
 * wwwauthenticate_test.go, plus hostile ones. */
static const struct {
        const char *in;
        int n;
        const char *scheme, *realm, *service, *scope, *error;
} auth_cases[] = {
        {"Bearer realm=\"https://auth.example/token\",service=\"registry.example\",scope=\"repository:a/b:pull\"",
         1, "bearer", "https://auth.example/token", "registry.example", "repository:a/b:pull", NULL},
        {"bearer realm=\"https://x/t\"", 1, "bearer", "https://x/t", NULL, NULL, NULL},
        {"BEARER Realm=\"https://x/t\", Service=svc", 1, "bearer", "https://x/t", "svc", NULL, NULL},
        {"Basic realm=\"Registry Realm\"", 1, "basic", "Registry Realm", NULL, NULL, NULL},
        {"Bearer realm=\"he\\\"\\l\\lo\"", 1, "bearer", "he\"llo", NULL, NULL, NULL},
        {"Bearer realm=\"https://x/t\",error=\"insufficient_scope\",scope=\"repository:a:pull,push\"",
         1, "bearer", "https://x/t", NULL, "repository:a:pull,push", "insufficient_scope"},
        {"Basic realm=\"r\", Bearer realm=\"https://x/t\",service=\"s\"", 2, "basic", "r", NULL,
         NULL, NULL},
        {"Bearer other=fun, realm=\"https://x/t\"", 1, "bearer", "https://x/t", NULL, NULL, NULL},
        {"  Bearer   realm = \"https://x/t\" ,  service = \"s p\"  ", 1, "bearer", "https://x/t",
         "s p", NULL, NULL},
};

static void test_www_authenticate_cases(void **state)
{
        (void)state;
        for (size_t i = 0; i < sizeof(auth_cases) / sizeof(auth_cases[0]); i++) {
                struct reg_challenge ch[REG_MAX_CHALLENGES];
                struct kiln_error err = KILN_ERROR_INIT;
                int n = reg_www_auth_parse(auth_cases[i].in, ch, REG_MAX_CHALLENGES, &err);
                assert_int_equal(n, auth_cases[i].n);
                assert_string_equal(ch[0].scheme, auth_cases[i].scheme);
#define CHECK(f)                                                                                   \
        if (auth_cases[i].f)                                                                       \
                assert_string_equal(ch[0].f, auth_cases[i].f);                                     \
        else                                                                                       \
                assert_null(ch[0].f);
                CHECK(realm)
                CHECK(service)
                CHECK(scope)
                CHECK(error)
#undef CHECK
                for (int k = 0; k < n; k++)
                        reg_challenge_release(&ch[k]);
        }
}

static void test_www_authenticate_second_challenge_is_bearer(void **state)
{
        struct reg_challenge ch[REG_MAX_CHALLENGES];
        struct kiln_error err = KILN_ERROR_INIT;
        int n;

        (void)state;
        n = reg_www_auth_parse("Basic realm=\"r\", Bearer realm=\"https://x/t\",service=\"s\"", ch,
                               REG_MAX_CHALLENGES, &err);
        assert_int_equal(n, 2);
        assert_string_equal(ch[1].scheme, "bearer");
        assert_string_equal(ch[1].realm, "https://x/t");
        assert_string_equal(ch[1].service, "s");
        for (int k = 0; k < n; k++)
                reg_challenge_release(&ch[k]);
}

static void test_www_authenticate_rejects_garbage(void **state)
{
        static const char *const bad[] = {"", "   ", "=x", "Bearer realm=\"unterminated",
                                          "Bearer realm=\"a\" junk"};
        (void)state;
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                struct reg_challenge ch[REG_MAX_CHALLENGES];
                struct kiln_error err = KILN_ERROR_INIT;
                assert_int_equal(reg_www_auth_parse(bad[i], ch, REG_MAX_CHALLENGES, &err), -1);
                assert_int_equal(err.code, KILN_E_NETWORK);
                assert_non_null(strstr(err.msg, "invalid WWW-Authenticate header"));
                assert_null(strchr(err.msg, '\n'));
        }
}

static const struct {
        const char *link, *base, *want;
} link_cases[] = {
        {"</v2/r/tags/list?n=2&last=b>; rel=\"next\"", "http://h:5000/v2/r/tags/list",
         "http://h:5000/v2/r/tags/list?n=2&last=b"},
        {"<https://other/v2/r/tags/list?last=b>; rel=next", "https://h/v2/r/tags/list",
         "https://other/v2/r/tags/list?last=b"},
        {"<a?x=1>; rel=\"prev\", </v2/r/tags/list?last=z>; rel=\"next\"",
         "https://h/v2/r/tags/list", "https://h/v2/r/tags/list?last=z"},
        {"</p?last=q>; title=\"a,b\"; rel=\"first next\"", "https://h/v2/x", "https://h/p?last=q"},
        {"</p>; rel=\"prev\"", "https://h/v2/x", NULL},
        {"", "https://h/v2/x", NULL},
        {"garbage", "https://h/v2/x", NULL},
};

static void test_link_next_cases(void **state)
{
        (void)state;
        for (size_t i = 0; i < sizeof(link_cases) / sizeof(link_cases[0]); i++) {
                struct kiln_error err = KILN_ERROR_INIT;
                char *got = NULL;
                assert_int_equal(reg_link_next(link_cases[i].link, link_cases[i].base, &got, &err),
                                 0);
                if (link_cases[i].want) {
                        assert_non_null(got);
                        assert_string_equal(got, link_cases[i].want);
                } else {
                        assert_null(got);
                }
                free(got);
        }
}

static const struct {
        const char *base, *ref, *want;
} loc_cases[] = {
        /* R4: relative, absolute-path, absolute; the query is kept */
        {"http://h:5000/v2/r/blobs/uploads/", "/v2/r/blobs/uploads/u1?_state=abc",
         "http://h:5000/v2/r/blobs/uploads/u1?_state=abc"},
        {"https://h/v2/r/blobs/uploads/", "u2?_state=x%2By", "https://h/v2/r/blobs/uploads/u2?_state=x%2By"},
        {"https://h/v2/r/blobs/uploads/", "https://s3.example/bucket/u3?X-Amz-Signature=1",
         "https://s3.example/bucket/u3?X-Amz-Signature=1"},
        {"https://h/v2/r/blobs/x", "//cdn.example/b", "https://cdn.example/b"},
        {"https://h/v2/r/blobs/uploads/a/b", "../c", "https://h/v2/r/blobs/uploads/c"},
};

static void test_location_resolution(void **state)
{
        (void)state;
        for (size_t i = 0; i < sizeof(loc_cases) / sizeof(loc_cases[0]); i++) {
                struct kiln_error err = KILN_ERROR_INIT;
                char *got = NULL;
                assert_int_equal(reg_url_resolve(loc_cases[i].base, loc_cases[i].ref, &got, &err), 0);
                assert_string_equal(got, loc_cases[i].want);
                free(got);
        }
}

static void test_location_rejects_other_schemes(void **state)
{
        static const char *const bad[] = {"file:///etc/passwd", "ftp://h/x", "gopher://h/"};
        (void)state;
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                struct kiln_error err = KILN_ERROR_INIT;
                char *got = NULL;
                assert_int_equal(reg_url_resolve("https://h/v2/", bad[i], &got, &err), -1);
                assert_non_null(strstr(err.msg, "invalid location"));
                assert_null(got);
        }
}

static void test_url_add_query_keeps_existing_query(void **state)
{
        char *u;
        (void)state;
        u = reg_url_add_query("http://h/v2/r/blobs/uploads/u?_state=abc", "digest", "sha256:00");
        assert_string_equal(u, "http://h/v2/r/blobs/uploads/u?_state=abc&digest=sha256%3A00");
        free(u);
        u = reg_url_add_query("http://h/v2/r/blobs/uploads/u", "digest", "sha256:00");
        assert_string_equal(u, "http://h/v2/r/blobs/uploads/u?digest=sha256%3A00");
        free(u);
}

static void test_retry_after_parsing(void **state)
{
        time_t now = 1700000000;
        (void)state;
        assert_int_equal(reg_retry_after_parse("2", now, 60), 2);
        assert_int_equal(reg_retry_after_parse(" 0 ", now, 60), 0);
        assert_int_equal(reg_retry_after_parse("86400", now, 60), 60); /* capped */
        assert_int_equal(reg_retry_after_parse("99999999999999999999", now, 60), 60);
        /* Tue, 14 Nov 2023 22:13:20 GMT is 1700000000 */
        assert_int_equal(reg_retry_after_parse("Tue, 14 Nov 2023 22:13:25 GMT", now, 60), 5);
        assert_int_equal(reg_retry_after_parse("Tue, 14 Nov 2023 22:00:00 GMT", now, 60), 0);
        assert_int_equal(reg_retry_after_parse("Wed, 15 Nov 2023 22:00:00 GMT", now, 60), 60);
        assert_int_equal(reg_retry_after_parse("", now, 60), -1);
        assert_int_equal(reg_retry_after_parse("soon", now, 60), -1);
        assert_int_equal(reg_retry_after_parse("-5", now, 60), -1);
        assert_int_equal(reg_retry_after_parse("5s", now, 60), -1);
}

static void test_range_parsing(void **state)
{
        static const struct {
                const char *in;
                int rc;
                long long a, b;
        } cases[] = {
                {"0-99", 0, 0, 99},
                {" 100-199 ", 0, 100, 199},
                {"bytes 5-9/10", 0, 5, 9},
                {"bytes=5-9", 0, 5, 9},
                {"bytes 5-9/*", 0, 5, 9},
                {"BYTES 0-0/1", 0, 0, 0},
                {"9223372036854775806-9223372036854775806", 0, 9223372036854775806LL,
                 9223372036854775806LL},
                {"bytes 5-9/9", -1, 0, 0},  /* past the total */
                {"9-5", -1, 0, 0},          /* backwards */
                {"-5", -1, 0, 0},
                {"+1-5", -1, 0, 0},
                {"1--5", -1, 0, 0},
                {"1-", -1, 0, 0},
                {"0-99x", -1, 0, 0},
                {"bytes */100", -1, 0, 0},  /* an unsatisfied range is not one */
                {"99999999999999999999-1", -1, 0, 0},
                {"", -1, 0, 0},
        };
        (void)state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                long long a = -1, b = -1;
                int rc = reg_range_parse(cases[i].in, &a, &b);
                if (rc != cases[i].rc)
                        fail_msg("'%s': %d, expected %d", cases[i].in, rc, cases[i].rc);
                if (rc == 0 && (a != cases[i].a || b != cases[i].b))
                        fail_msg("'%s': %lld-%lld", cases[i].in, a, b);
        }
}

static void test_loopback_hosts(void **state)
{
        (void)state;
        assert_true(reg_host_is_loopback("localhost"));
        assert_true(reg_host_is_loopback("localhost:5000"));
        assert_true(reg_host_is_loopback("127.0.0.1:5000"));
        assert_true(reg_host_is_loopback("127.1.2.3"));
        assert_true(reg_host_is_loopback("[::1]:5000"));
        assert_false(reg_host_is_loopback("127.0.0.1.evil.example"));
        assert_false(reg_host_is_loopback("128.0.0.1"));
        assert_false(reg_host_is_loopback("localhost.example"));
        assert_false(reg_host_is_loopback("10.0.0.1:5000"));
        assert_false(reg_host_is_loopback("127.0.0.256"));
}

static void test_sanitize_cuts_and_masks(void **state)
{
        char out[64];
        (void)state;
        reg_sanitize("a\x1b[31mb\nc\xff", 10, out, sizeof(out), 100);
        assert_string_equal(out, "a\\x1b[31mb\\nc\\xff");
        reg_sanitize("abcdefghij", 10, out, sizeof(out), 4);
        assert_string_equal(out, "abcd...");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_www_authenticate_cases),
                cmocka_unit_test(test_www_authenticate_second_challenge_is_bearer),
                cmocka_unit_test(test_www_authenticate_rejects_garbage),
                cmocka_unit_test(test_link_next_cases),
                cmocka_unit_test(test_location_resolution),
                cmocka_unit_test(test_location_rejects_other_schemes),
                cmocka_unit_test(test_url_add_query_keeps_existing_query),
                cmocka_unit_test(test_retry_after_parsing),
                cmocka_unit_test(test_range_parsing),
                cmocka_unit_test(test_loopback_hosts),
                cmocka_unit_test(test_sanitize_cuts_and_masks),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
