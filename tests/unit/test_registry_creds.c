/* registry/creds.c: docker config.json lookups, writes and helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "creds.h"
#include "io.h"
#include "util.h"

static char dir[256];

static int setup(void **state)
{
        (void)state;
        snprintf(dir, sizeof(dir), "/tmp/kiln-creds-XXXXXX");
        assert_non_null(mkdtemp(dir));
        unsetenv("REGISTRY_AUTH_FILE");
        unsetenv("DOCKER_CONFIG");
        return 0;
}

static int teardown(void **state)
{
        (void)state;
        kiln_rm_rf(dir);
        return 0;
}

static char *write_cfg(const char *name, const char *json)
{
        char *p = kiln_strdupf("%s/%s", dir, name);
        FILE *f = fopen(p, "w");
        assert_non_null(f);
        fputs(json, f);
        fclose(f);
        return p;
}

/* "dXNlcjpwYXNz" is base64("user:pass") */
static void test_lookup_finds_auth_under_any_key_form(void **state)
{
        static const char *const keys[] = {"reg.example:5000", "https://reg.example:5000",
                                           "http://reg.example:5000/v1/"};
        (void)state;
        for (size_t i = 0; i < 3; i++) {
                char json[256];
                _cleanup_free_ char *p = NULL;
                struct reg_creds c = {0};
                struct kiln_error err = KILN_ERROR_INIT;
                bool found = false;
                snprintf(json, sizeof(json), "{\"auths\":{\"%s\":{\"auth\":\"dXNlcjpwYXNz\"}}}",
                         keys[i]);
                p = write_cfg("c.json", json);
                assert_int_equal(reg_creds_lookup(p, "reg.example:5000", &c, &found, &err), 0);
                assert_true(found);
                assert_string_equal(c.username, "user");
                assert_string_equal(c.password, "pass");
                reg_creds_release(&c);
        }
}

static void test_lookup_docker_hub_key(void **state)
{
        _cleanup_free_ char *p =
                write_cfg("c.json", "{\"auths\":{\"https://index.docker.io/v1/\":{\"auth\":\"dXNlcjpwYXNz\"}}}");
        struct reg_creds c = {0};
        struct kiln_error err = KILN_ERROR_INIT;
        bool found = false;
        (void)state;
        assert_int_equal(reg_creds_lookup(p, "docker.io", &c, &found, &err), 0);
        assert_true(found);
        reg_creds_release(&c);
}

static void test_lookup_missing_file_or_host_is_anonymous(void **state)
{
        _cleanup_free_ char *missing = kiln_strdupf("%s/none.json", dir);
        _cleanup_free_ char *p = write_cfg("c.json", "{\"auths\":{}}");
        struct reg_creds c = {0};
        struct kiln_error err = KILN_ERROR_INIT;
        bool found = true;
        (void)state;
        assert_int_equal(reg_creds_lookup(missing, "h", &c, &found, &err), 0);
        assert_false(found);
        found = true;
        assert_int_equal(reg_creds_lookup(p, "h", &c, &found, &err), 0);
        assert_false(found);
}

static void test_bad_auth_entries_are_errors_without_secrets(void **state)
{
        static const struct {
                const char *b64, *msg;
        } bad[] = {
                {"!!!!", "not base64"},
                {"dXNlcnBhc3M=", "no ':'"}, /* "userpass" */
                {"abc", "not base64"},
        };
        (void)state;
        for (size_t i = 0; i < 3; i++) {
                struct reg_creds c = {0};
                struct kiln_error err = KILN_ERROR_INIT;
                assert_int_equal(reg_auth_decode(bad[i].b64, &c, &err), -1);
                assert_non_null(strstr(err.msg, bad[i].msg));
                assert_null(strstr(err.msg, "userpass"));
        }
}

static void test_invalid_json_is_an_error(void **state)
{
        _cleanup_free_ char *p = write_cfg("c.json", "{\"auths\":");
        struct reg_creds c = {0};
        struct kiln_error err = KILN_ERROR_INIT;
        bool found;
        (void)state;
        assert_int_equal(reg_creds_lookup(p, "h", &c, &found, &err), -1);
        assert_int_equal(err.code, KILN_E_INVALID);
}

static void test_store_keeps_unknown_keys_and_mode_0600(void **state)
{
        _cleanup_free_ char *p = write_cfg("c.json", "{\"psFormat\":\"x\",\"auths\":{\"o\":{\"auth\":\"YTpi\",\"email\":\"e\"}}}");
        _cleanup_free_ char *buf = NULL;
        size_t len;
        struct kiln_error err = KILN_ERROR_INIT;
        struct stat st;
        json_t *j;
        bool found = false;
        (void)state;
        assert_int_equal(reg_creds_store(p, "h:1", "user", "pass", &err), 0);
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        assert_int_equal(kiln_read_file(p, 65536, &buf, &len, &err), 0);
        j = json_loads(buf, 0, NULL);
        assert_string_equal(json_string_value(json_object_get(j, "psFormat")), "x");
        assert_string_equal(json_string_value(json_object_get(
                                    json_object_get(json_object_get(j, "auths"), "o"), "email")),
                            "e");
        assert_string_equal(json_string_value(json_object_get(
                                    json_object_get(json_object_get(j, "auths"), "h:1"), "auth")),
                            "dXNlcjpwYXNz");
        json_decref(j);
        assert_int_equal(reg_creds_erase(p, "h:1", &found, &err), 0);
        assert_true(found);
        assert_int_equal(reg_creds_erase(p, "h:1", &found, &err), 0);
        assert_false(found);
}

static void test_store_creates_missing_dirs(void **state)
{
        _cleanup_free_ char *p = kiln_strdupf("%s/new/sub/config.json", dir);
        struct kiln_error err = KILN_ERROR_INIT;
        (void)state;
        assert_int_equal(reg_creds_store(p, "h", "u", "p", &err), 0);
        assert_int_equal(access(p, R_OK), 0);
}

static void test_helper_names(void **state)
{
        (void)state;
        assert_true(reg_helper_name_valid("pass"));
        assert_true(reg_helper_name_valid("ecr-login"));
        assert_true(reg_helper_name_valid("a_b.c-1"));
        assert_false(reg_helper_name_valid(""));
        assert_false(reg_helper_name_valid("../x"));
        assert_false(reg_helper_name_valid("a/b"));
        assert_false(reg_helper_name_valid("a b"));
        assert_false(reg_helper_name_valid(".hidden"));
        assert_false(reg_helper_name_valid("x;rm"));
}

static void test_helper_is_run_and_bad_names_refused(void **state)
{
        _cleanup_free_ char *bin = kiln_strdupf("%s/bin", dir);
        _cleanup_free_ char *helper = kiln_strdupf("%s/docker-credential-t", bin);
        _cleanup_free_ char *oldpath = strdup(getenv("PATH"));
        _cleanup_free_ char *path = kiln_strdupf("%s:%s", bin, oldpath);
        _cleanup_free_ char *p = NULL;
        struct reg_creds c = {0};
        struct kiln_error err = KILN_ERROR_INIT;
        bool found = false;
        FILE *f;
        (void)state;
        assert_int_equal(kiln_mkdir_p(bin, 0755, &err), 0);
        f = fopen(helper, "w");
        fputs("#!/bin/sh\nread h\necho '{\"Username\":\"hu\",\"Secret\":\"hs\"}'\n", f);
        fclose(f);
        chmod(helper, 0755);
        setenv("PATH", path, 1);
        p = write_cfg("c.json", "{\"credHelpers\":{\"h\":\"t\"}}");
        assert_int_equal(reg_creds_lookup(p, "h", &c, &found, &err), 0);
        assert_true(found);
        assert_string_equal(c.username, "hu");
        assert_string_equal(c.password, "hs");
        reg_creds_release(&c);
        free(p);
        p = write_cfg("c.json", "{\"credsStore\":\"../t\"}");
        assert_int_equal(reg_creds_lookup(p, "h", &c, &found, &err), -1);
        assert_non_null(strstr(err.msg, "invalid credential helper name"));
        setenv("PATH", oldpath, 1);
}

static void test_authfile_path_order(void **state)
{
        char *p;
        (void)state;
        setenv("HOME", "/srv/kiln-home", 1);
        p = reg_authfile_path(NULL);
        assert_string_equal(p, "/srv/kiln-home/.docker/config.json");
        free(p);
        setenv("DOCKER_CONFIG", "/d", 1);
        p = reg_authfile_path(NULL);
        assert_string_equal(p, "/d/config.json");
        free(p);
        setenv("REGISTRY_AUTH_FILE", "/r.json", 1);
        p = reg_authfile_path(NULL);
        assert_string_equal(p, "/r.json");
        free(p);
        p = reg_authfile_path("/explicit.json");
        assert_string_equal(p, "/explicit.json");
        free(p);
        unsetenv("REGISTRY_AUTH_FILE");
        unsetenv("DOCKER_CONFIG");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_lookup_finds_auth_under_any_key_form, setup, teardown),
                cmocka_unit_test_setup_teardown(test_lookup_docker_hub_key, setup, teardown),
                cmocka_unit_test_setup_teardown(test_lookup_missing_file_or_host_is_anonymous, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_auth_entries_are_errors_without_secrets, setup, teardown),
                cmocka_unit_test_setup_teardown(test_invalid_json_is_an_error, setup, teardown),
                cmocka_unit_test_setup_teardown(test_store_keeps_unknown_keys_and_mode_0600, setup, teardown),
                cmocka_unit_test_setup_teardown(test_store_creates_missing_dirs, setup, teardown),
                cmocka_unit_test_setup_teardown(test_helper_names, setup, teardown),
                cmocka_unit_test_setup_teardown(test_helper_is_run_and_bad_names_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_authfile_path_order, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
