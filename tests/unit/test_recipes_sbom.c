/* The SBOM: the inventory a layer key gives, and the SPDX document made of it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "recipe.h"
#include "recipe_sbom.h"
#include "stage.h"

#define HEX_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define HEX_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define HEX_C "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
#define IMAGE "sha256:1111111111111111111111111111111111111111111111111111111111111111"

static json_t *wheel(const char *name, const char *ver, const char *sha, const char *url)
{
        return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s?}", "type", "pypi", "name", name, "version",
                         ver, "sha256", sha, "file", "x.whl", "url", url);
}

static json_t *deb(const char *name, const char *ver, const char *sha)
{
        return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:n}", "type", "deb", "name", name,
                         "version", ver, "architecture", "amd64", "sha256", sha, "file", "x.deb",
                         "url");
}

static char *document(json_t *packages, struct kiln_error *err)
{
        struct oci_digest d;
        struct recipe_sbom_image img = {.name = "registry.example/team/app:v1", .digest = &d,
                                        .created = "2023-11-14T22:13:20Z"};
        char *buf = NULL;
        size_t len;

        assert_int_equal(oci_digest_parse(IMAGE, &d, NULL), 0);
        if (recipe_sbom_document(&img, packages, &buf, &len, err) < 0)
                return NULL;
        assert_int_equal(strlen(buf), len);
        return buf;
}

static void test_sbom_same_bytes_in_any_order(void **state)
{
        struct kiln_error err = KILN_ERROR_INIT;
        json_t *a = json_pack("[o, o, o]", wheel("torch", "2.7.1+cu126", HEX_A, NULL),
                              deb("libgl1", "1:1.4.0-1", HEX_B),
                              wheel("numpy", "1.26.4", HEX_C, "https://files.example/n.whl"));
        json_t *b = json_pack("[o, o, o]", wheel("numpy", "1.26.4", HEX_C, "https://files.example/n.whl"),
                              wheel("torch", "2.7.1+cu126", HEX_A, NULL),
                              deb("libgl1", "1:1.4.0-1", HEX_B));
        char *x = document(a, &err), *y = document(b, &err);

        (void)state;
        assert_non_null(x);
        assert_non_null(y);
        assert_string_equal(x, y);
        /* fixed key order, packages sorted: debs before wheels, by name */
        assert_non_null(strstr(x, "{\"spdxVersion\":\"SPDX-2.3\",\"dataLicense\":\"CC0-1.0\","
                                  "\"SPDXID\":\"SPDXRef-DOCUMENT\","
                                  "\"name\":\"registry.example/team/app:v1\","
                                  "\"documentNamespace\":\"https://kiln.dev/spdx/1111"));
        assert_non_null(strstr(x, "\"creationInfo\":{\"created\":\"2023-11-14T22:13:20Z\","
                                  "\"creators\":[\"Tool: kiln-"));
        assert_true(strstr(x, "SPDXRef-deb-libgl1") < strstr(x, "SPDXRef-pypi-numpy"));
        assert_true(strstr(x, "SPDXRef-pypi-numpy") < strstr(x, "SPDXRef-pypi-torch"));
        /* purls percent-encode '+' and the epoch's ':' */
        assert_non_null(strstr(x, "\"pkg:pypi/torch@2.7.1%2Bcu126\""));
        assert_non_null(strstr(x, "\"pkg:deb/debian/libgl1@1%3A1.4.0-1?arch=amd64\""));
        assert_non_null(strstr(x, "\"pkg:oci/app@sha256%3A1111111111111111111111111111111111111111111111111111111111111111"
                                  "?repository_url=registry.example/team/app&tag=v1\""));
        /* a URL is the download location; none is NOASSERTION */
        assert_non_null(strstr(x, "\"downloadLocation\":\"https://files.example/n.whl\""));
        assert_non_null(strstr(x, "\"SPDXRef-pypi-torch-2.7.1-cu126\",\"name\":\"torch\","
                                  "\"versionInfo\":\"2.7.1+cu126\",\"packageFileName\":\"x.whl\","
                                  "\"downloadLocation\":\"NOASSERTION\","
                                  "\"checksums\":[{\"algorithm\":\"SHA256\",\"checksumValue\":\"" HEX_A "\"}]"));
        assert_non_null(strstr(x, "{\"spdxElementId\":\"SPDXRef-DOCUMENT\",\"relationshipType\":"
                                  "\"DESCRIBES\",\"relatedSpdxElement\":\"SPDXRef-image\"}"));
        assert_non_null(strstr(x, "{\"spdxElementId\":\"SPDXRef-image\",\"relationshipType\":"
                                  "\"CONTAINS\",\"relatedSpdxElement\":\"SPDXRef-pypi-numpy-1.26.4\"}"));
        free(x);
        free(y);
        json_decref(a);
        json_decref(b);
}

static void test_sbom_lists_a_package_once_and_tells_versions_apart(void **state)
{
        struct kiln_error err = KILN_ERROR_INIT;
        /* the same wheel in two layers (from two places); the same name and
         * version with another file */
        json_t *p = json_pack("[o, o, o]", wheel("six", "1.16.0", HEX_A, "https://a.example/six.whl"),
                              wheel("six", "1.16.0", HEX_A, NULL),
                              wheel("six", "1.16.0", HEX_B, NULL));
        char *x = document(p, &err);
        json_t *j;

        (void)state;
        assert_non_null(x);
        j = json_loads(x, 0, NULL);
        assert_int_equal(json_array_size(json_object_get(j, "packages")), 3); /* image + 2 */
        assert_int_equal(json_array_size(json_object_get(j, "relationships")), 3);
        assert_non_null(strstr(x, "\"SPDXID\":\"SPDXRef-pypi-six-1.16.0\""));
        assert_non_null(strstr(x, "\"SPDXID\":\"SPDXRef-pypi-six-1.16.0-bbbbbbbbbbbbbbbb\""));
        /* of the same file, the first by place: no URL sorts first */
        assert_null(strstr(x, "a.example"));
        json_decref(j);
        json_decref(p);
        free(x);
}

static void test_sbom_lists_resolved_dependencies(void **state)
{
        struct kiln_error err = KILN_ERROR_INIT;
        json_t *torch = wheel("torch", "2.7.1", HEX_A, NULL);
        json_t *pkgs, *doc, *rels, *r;
        char *x;
        size_t i, depends = 0;

        (void)state;
        json_object_set_new(torch, "dependencies", json_pack("[s, s]", "numpy", "not-listed"));
        pkgs = json_pack("[o, o, o]", torch, wheel("numpy", "1.26.4", HEX_C, NULL),
                         deb("numpy", "1:1.0", HEX_B));
        x = document(pkgs, &err);
        assert_non_null(x);
        doc = json_loads(x, 0, NULL);
        rels = json_object_get(doc, "relationships");
        json_array_foreach(rels, i, r) {
                if (strcmp(json_string_value(json_object_get(r, "relationshipType")), "DEPENDS_ON"))
                        continue;
                depends++;
                /* to the wheel of that name, not the .deb */
                assert_string_equal(json_string_value(json_object_get(r, "spdxElementId")),
                                    "SPDXRef-pypi-torch-2.7.1");
                assert_string_equal(json_string_value(json_object_get(r, "relatedSpdxElement")),
                                    "SPDXRef-pypi-numpy-1.26.4");
        }
        assert_int_equal(depends, 1);
        json_decref(doc);
        json_decref(pkgs);
        free(x);
}

static void test_sbom_namespace_follows_the_content(void **state)
{
        struct kiln_error err = KILN_ERROR_INIT;
        json_t *a = json_pack("[o]", wheel("six", "1.16.0", HEX_A, NULL));
        json_t *b = json_pack("[o]", wheel("six", "1.16.0", HEX_B, NULL));
        char *x = document(a, &err), *y = document(b, &err);
        const char *nx, *ny;

        (void)state;
        nx = strstr(x, "\"documentNamespace\":\"");
        ny = strstr(y, "\"documentNamespace\":\"");
        assert_non_null(nx);
        assert_non_null(ny);
        assert_memory_equal(nx, ny, 21 + strlen("https://kiln.dev/spdx/") + 64);
        assert_memory_not_equal(nx, ny, 21 + strlen("https://kiln.dev/spdx/") + 64 + 17);
        free(x);
        free(y);
        json_decref(a);
        json_decref(b);
}

static void test_sbom_refuses_a_bad_entry(void **state)
{
        static const struct {
                const char *json, *msg;
        } cases[] = {
                {"[{\"type\":\"npm\",\"name\":\"x\",\"version\":\"1\",\"sha256\":\"" HEX_A "\"}]",
                 "invalid inventory entry 0"},
                {"[{\"type\":\"pypi\",\"name\":\"x\",\"version\":\"1\",\"sha256\":\"AB\"}]",
                 "invalid inventory entry 0"},
                {"[{\"type\":\"pypi\",\"name\":\"x\",\"version\":\"1\",\"sha256\":\"" HEX_A "\"},"
                 "{\"type\":\"deb\",\"name\":\"y\",\"version\":\"1\",\"sha256\":\"" HEX_A "\"}]",
                 "invalid inventory entry 1"},
        };

        (void)state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct kiln_error err = KILN_ERROR_INIT;
                json_t *p = json_loads(cases[i].json, 0, NULL);
                assert_non_null(p);
                assert_null(document(p, &err));
                assert_string_equal(err.msg, cases[i].msg);
                json_decref(p);
        }
}

/* The inventory comes with the layer key, from declared inputs: a wheel
 * and a package given by path with their sha256 are listed without being
 * read (neither file exists here). */
static const char *inventory_recipe =
        "{\"base\": \"b\", \"layers\": [\n"
        " {\"name\": \"py\", \"kind\": \"wheels\",\n"
        "  \"wheels\": [{\"path\": \"https://files.example/Hello_World-1.0-py3-none-any.whl\",\n"
        "               \"sha256\": \"sha256:" HEX_A "\"},\n"
        "              {\"path\": \"dist/torch-2.7.1+cu126-cp311-cp311-linux_x86_64.whl\",\n"
        "               \"sha256\": \"" HEX_B "\"}]}],\n"
        " \"tag\": {\"repository\": \"example.invalid/app\", \"tag\": \"v1\"}}\n";

static void test_layer_key_gives_the_inventory_without_reading_files(void **state)
{
        struct kiln_error err = KILN_ERROR_INIT;
        struct recipe *r = recipe_parse(inventory_recipe, strlen(inventory_recipe), "t.json",
                                        "/nonexistent", &err);
        struct recipe_plan_opts po = {0};
        struct recipe_plan *plan = NULL;
        struct recipe_stage_opts so = {.inventory = true};
        struct recipe_stage_result with = {0}, without = {0};
        char *got;

        (void)state;
        if (!r)
                fail_msg("%s", err.msg);
        assert_int_equal(recipe_plan_build(r, &po, &plan, &err), 0);
        if (recipe_layer_key(plan, 0, &so, &with, &err) < 0)
                fail_msg("%s", err.msg);
        got = json_dumps(with.packages, JSON_COMPACT | JSON_PRESERVE_ORDER);
        assert_string_equal(
                got, "[{\"type\":\"pypi\",\"name\":\"hello-world\",\"version\":\"1.0\","
                     "\"sha256\":\"" HEX_A "\",\"file\":\"Hello_World-1.0-py3-none-any.whl\","
                     "\"url\":\"https://files.example/Hello_World-1.0-py3-none-any.whl\"},"
                     "{\"type\":\"pypi\",\"name\":\"torch\",\"version\":\"2.7.1+cu126\","
                     "\"sha256\":\"" HEX_B "\",\"file\":\"torch-2.7.1+cu126-cp311-cp311-linux_x86_64.whl\","
                     "\"url\":\"dist/torch-2.7.1+cu126-cp311-cp311-linux_x86_64.whl\"}]");
        /* the key does not depend on whether the inventory was asked for */
        so.inventory = false;
        assert_int_equal(recipe_layer_key(plan, 0, &so, &without, &err), 0);
        assert_null(without.packages);
        assert_string_equal(with.layer_key, without.layer_key);
        free(got);
        recipe_stage_result_release(&with);
        recipe_stage_result_release(&without);
        recipe_plan_free(plan);
        recipe_free(r);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_sbom_same_bytes_in_any_order),
                cmocka_unit_test(test_sbom_lists_a_package_once_and_tells_versions_apart),
                cmocka_unit_test(test_sbom_namespace_follows_the_content),
                cmocka_unit_test(test_sbom_lists_resolved_dependencies),
                cmocka_unit_test(test_sbom_refuses_a_bad_entry),
                cmocka_unit_test(test_layer_key_gives_the_inventory_without_reading_files),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
