#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "json.h"
#include "model.h"

#define D1 "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define D2 "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

/* Written in kiln's fixed key order: parse, rebuild, dump gives the same bytes. */
static const char canonical[] =
        "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
        "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"" D1
        "\",\"size\":0},"
        "\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+zstd\",\"digest\":\"" D2
        "\",\"size\":3,\"annotations\":{\"a\":\"1\",\"b\":\"2\"},\"x-unknown\":[1,2]}],"
        "\"annotations\":{\"org.opencontainers.image.created\":\"1970-01-01T00:00:00Z\"}}";

static void test_manifest_round_trip_is_byte_identical(void **state)
{
        struct kiln_error err = KILN_ERROR_INIT;
        struct oci_manifest *m = NULL;
        json_t *j;
        char *out;
        size_t len;

        (void)state;
        assert_int_equal(oci_manifest_parse(canonical, strlen(canonical), NULL, &m, &err), 0);
        assert_int_equal(m->n_layers, 1);
        assert_int_equal(m->layers[0].size, 3);
        assert_int_equal(oci_media_type_compression(m->layers[0].media_type),
                         OCI_COMPRESSION_ZSTD);
        j = oci_manifest_to_json(m->media_type, m->artifact_type, &m->config, m->layers,
                                 m->n_layers, NULL, m->annotations);
        assert_int_equal(oci_json_dump(j, &out, &len, &err), 0);
        assert_string_equal(out, canonical);
        free(out);
        json_decref(j);
        oci_manifest_free(m);
}

static void test_annotations_sorted_regardless_of_input_order(void **state)
{
        json_t *a = json_pack("{s:s, s:s, s:s}", "zeta", "1", "alpha", "2", "mid", "3");
        json_t *s = oci_json_sorted_object(a);
        char *out;
        size_t len;

        (void)state;
        assert_int_equal(oci_json_dump(s, &out, &len, NULL), 0);
        assert_string_equal(out, "{\"alpha\":\"2\",\"mid\":\"3\",\"zeta\":\"1\"}");
        free(out);
        json_decref(a);
        json_decref(s);
}

static const struct {
        const char *doc, *content_type, *msg_part;
} bad[] = {
        {"{\"schemaVersion\":2,\"config\":{},\"layers\":[],\"layers\":[]}", NULL, "duplicate"},
        {"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"manifests\":[],\"layers\":[]}",
         NULL, "both"},
        {"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[]}",
         "application/vnd.oci.image.manifest.v1+json", "disagrees"},
        {"{\"schemaVersion\":1,\"config\":{\"mediaType\":\"x\",\"digest\":\"" D1 "\",\"size\":0},\"layers\":[]}",
         NULL, "schemaVersion must be 2"},
        {"{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"digest\":\"" D1 "\",\"size\":-1},\"layers\":[]}",
         NULL, "negative size"},
        {"{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"digest\":\"sha256:../../x\",\"size\":0},\"layers\":[]}",
         NULL, "invalid digest"},
        {"{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"digest\":\"" D1 "\",\"size\":9223372036854775808},\"layers\":[]}",
         NULL, "invalid JSON"},
        {"{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"digest\":\"" D1 "\",\"size\":3,\"data\":\"YWJk\"},\"layers\":[]}",
         NULL, "'data' does not match"},
        {"{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"digest\":\"" D1 "\",\"size\":0},\"layers\":[],\"annotations\":{\"a\":\"\\u0000\"}}",
         NULL, "invalid JSON"},
        {"{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" OCI_MT_EMPTY "\",\"digest\":\"" D1 "\",\"size\":0},\"layers\":[]}",
         NULL, "artifactType"},
        {"{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"digest\":\"" D1 "\",\"size\":0}}",
         NULL, "'layers' must be an array"},
        {"[1,2", NULL, "invalid JSON"},
        {"{\"mediaType\":\"" DOCKER_MT_SCHEMA1_SIGNED "\",\"schemaVersion\":1}", NULL, "schema 1"},
};

static void test_manifest_rejects_bad_documents(void **state)
{
        (void)state;
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                struct kiln_error err = KILN_ERROR_INIT;
                struct oci_manifest *m = NULL;
                if (oci_manifest_parse(bad[i].doc, strlen(bad[i].doc), bad[i].content_type, &m,
                                       &err) == 0) {
                        oci_manifest_free(m);
                        fail_msg("case %zu accepted", i);
                }
                if (!strstr(err.msg, bad[i].msg_part))
                        fail_msg("case %zu: message '%s' lacks '%s'", i, err.msg,
                                 bad[i].msg_part);
        }
}

static void test_data_field_verified(void **state)
{
        /* "abc" */
        static const char doc[] =
                "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"digest\":\"" D2
                "\",\"size\":3,\"data\":\"YWJj\"},\"layers\":[]}";
        struct kiln_error err = KILN_ERROR_INIT;
        struct oci_manifest *m = NULL;

        (void)state;
        assert_int_equal(oci_manifest_parse(doc, strlen(doc), NULL, &m, &err), 0);
        oci_manifest_free(m);
}

static void test_manifest_over_limit_rejected(void **state)
{
        size_t n = OCI_MANIFEST_MAX + 10;
        char *big = malloc(n + 1);
        struct kiln_error err = KILN_ERROR_INIT;
        struct oci_manifest *m = NULL;

        (void)state;
        memset(big, ' ', n);
        big[n] = '\0';
        assert_int_equal(oci_manifest_parse(big, n, NULL, &m, &err), -1);
        assert_int_equal(err.code, KILN_E_LIMIT);
        free(big);
}

/* KILN_MANIFEST_MAX: decimal bytes from 1 to 64 MiB; anything else is
 * refused (and oci_manifest_limit() keeps the default). */
static const struct {
        const char *env; /* NULL: unset */
        int rc;
        size_t limit;
} limit_cases[] = {
        {NULL, 0, OCI_MANIFEST_MAX},
        {"", 0, OCI_MANIFEST_MAX},
        {"1", 0, 1},
        {"1048576", 0, 1048576},
        {"67108864", 0, OCI_MANIFEST_MAX_CEILING},
        {"67108865", -1, OCI_MANIFEST_MAX},
        {"1099511627776", -1, OCI_MANIFEST_MAX},
        {"99999999999999999999999999", -1, OCI_MANIFEST_MAX},
        {"0", -1, OCI_MANIFEST_MAX},
        {"-1", -1, OCI_MANIFEST_MAX},
        {"+5", -1, OCI_MANIFEST_MAX},
        {" 5", -1, OCI_MANIFEST_MAX},
        {"5 ", -1, OCI_MANIFEST_MAX},
        {"4MiB", -1, OCI_MANIFEST_MAX},
        {"0x10", -1, OCI_MANIFEST_MAX},
};

static void test_manifest_limit_env_is_bounded(void **state)
{
        (void)state;
        for (size_t i = 0; i < sizeof(limit_cases) / sizeof(limit_cases[0]); i++) {
                struct kiln_error err = KILN_ERROR_INIT;
                size_t got = 12345;
                if (limit_cases[i].env)
                        setenv("KILN_MANIFEST_MAX", limit_cases[i].env, 1);
                else
                        unsetenv("KILN_MANIFEST_MAX");
                assert_int_equal(oci_manifest_limit_get(&got, &err), limit_cases[i].rc);
                assert_int_equal(oci_manifest_limit(), limit_cases[i].limit);
                if (limit_cases[i].rc == 0) {
                        assert_int_equal(got, limit_cases[i].limit);
                        continue;
                }
                assert_int_equal(got, 12345); /* untouched */
                assert_int_equal(err.code, KILN_E_USAGE);
                assert_non_null(strstr(err.msg, "invalid KILN_MANIFEST_MAX '"));
                assert_non_null(strstr(err.msg, "from 1 to 67108864"));
        }
        unsetenv("KILN_MANIFEST_MAX");
}

static void test_index_select_platform(void **state)
{
        static const char doc[] =
                "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_INDEX "\",\"manifests\":["
                "{\"mediaType\":\"" OCI_MT_MANIFEST "\",\"digest\":\"" D1 "\",\"size\":1,"
                "\"platform\":{\"architecture\":\"arm64\",\"os\":\"linux\"}},"
                "{\"mediaType\":\"" OCI_MT_MANIFEST "\",\"digest\":\"" D2 "\",\"size\":2,"
                "\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}}]}";
        struct kiln_error err = KILN_ERROR_INIT;
        struct oci_index *x = NULL;
        struct oci_platform p;
        char buf[64];
        const struct oci_descriptor *d;

        (void)state;
        assert_int_equal(oci_index_parse(doc, strlen(doc), NULL, &x, &err), 0);
        strcpy(buf, "linux/amd64");
        assert_int_equal(oci_platform_parse(buf, &p, &err), 0);
        d = oci_index_select(x, &p);
        assert_non_null(d);
        assert_string_equal(d->digest.str, D2);
        strcpy(buf, "linux/arm64/v8");
        assert_int_equal(oci_platform_parse(buf, &p, &err), 0);
        d = oci_index_select(x, &p);
        assert_non_null(d);
        assert_string_equal(d->digest.str, D1);
        strcpy(buf, "windows/amd64");
        assert_int_equal(oci_platform_parse(buf, &p, &err), 0);
        assert_null(oci_index_select(x, &p));
        strcpy(buf, "linux");
        assert_int_equal(oci_platform_parse(buf, &p, &err), -1);
        oci_index_free(x);
}

static void test_config_requires_os_and_architecture(void **state)
{
        static const char ok[] = "{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"" D1 "\"]}}";
        static const char no_os[] = "{\"architecture\":\"amd64\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}";
        static const char bad_diff[] = "{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"x\"]}}";
        struct kiln_error err = KILN_ERROR_INIT;
        struct oci_config *c = NULL;

        (void)state;
        assert_int_equal(oci_config_parse(ok, strlen(ok), &c, &err), 0);
        assert_int_equal(json_array_size(c->diff_ids), 1);
        oci_config_free(c);
        assert_int_equal(oci_config_parse(no_os, strlen(no_os), &c, &err), -1);
        assert_non_null(strstr(err.msg, "missing 'os'"));
        assert_int_equal(oci_config_parse(bad_diff, strlen(bad_diff), &c, &err), -1);
        assert_non_null(strstr(err.msg, "diff_ids[0]"));
}

static void test_unknown_media_types_are_carried(void **state)
{
        static const char doc[] =
                "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_MANIFEST "\",\"artifactType\":\"application/x.sbom\","
                "\"config\":{\"mediaType\":\"" OCI_MT_EMPTY "\",\"digest\":\"" D1 "\",\"size\":0},"
                "\"layers\":[{\"mediaType\":\"application/x.whatever\",\"digest\":\"" D2 "\",\"size\":3}],"
                "\"future\":{\"x\":1}}";
        struct kiln_error err = KILN_ERROR_INIT;
        struct oci_manifest *m = NULL;

        (void)state;
        assert_int_equal(oci_manifest_parse(doc, strlen(doc), NULL, &m, &err), 0);
        assert_string_equal(m->artifact_type, "application/x.sbom");
        assert_string_equal(m->layers[0].media_type, "application/x.whatever");
        assert_false(oci_media_type_is_layer(m->layers[0].media_type));
        oci_manifest_free(m);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_manifest_round_trip_is_byte_identical),
                cmocka_unit_test(test_annotations_sorted_regardless_of_input_order),
                cmocka_unit_test(test_manifest_rejects_bad_documents),
                cmocka_unit_test(test_data_field_verified),
                cmocka_unit_test(test_manifest_over_limit_rejected),
                cmocka_unit_test(test_manifest_limit_env_is_bounded),
                cmocka_unit_test(test_index_select_platform),
                cmocka_unit_test(test_config_requires_os_and_architecture),
                cmocka_unit_test(test_unknown_media_types_are_carried),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
