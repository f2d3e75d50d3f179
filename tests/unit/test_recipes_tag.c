/* Tags by the linnaeus convention, cases from the seed README. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "recipe.h"

#define REPO "frontierkodiak/linnaeus-dev"

struct tag_case {
        const char *tag, *branch, *suffix;
        bool git;
        const char *want; /* NULL: an error */
        const char *want_err;
};

static const struct tag_case cases[] = {
        /* README: "This will create an image like ..." */
        {"ampere-stable-cu126", "main", "", true, REPO ":ampere-stable-cu126", NULL},
        {"ampere-stable-cu126", "main", "", false, REPO ":ampere-stable-cu126", NULL},
        {"pre-ampere-stable-cu126", "main", "", true, REPO ":pre-ampere-stable-cu126", NULL},
        {"hopper-nightly-cu128", "main", "", true, REPO ":hopper-nightly-cu128", NULL},
        {"hopper-nightly-cu128", "feat/my-hopper-feature", "", true,
         REPO ":hopper-nightly-cu128-feat-my-hopper-feature", NULL},
        /* "If the branch is not main, its name will be included in the tag (e.g., -develop)" */
        {"ampere-stable-cu126", "develop", "", true, REPO ":ampere-stable-cu126-develop", NULL},
        /* "Example tags" */
        {"ampere-stable-cu126", "main", "my-feature", true, REPO ":ampere-stable-cu126-my-feature",
         NULL},
        {"pre-ampere-stable-cu126", "main", "task123", true,
         REPO ":pre-ampere-stable-cu126-task123", NULL},
        {"hopper-nightly-cu128", "feat/xyz", "exp01", true,
         REPO ":hopper-nightly-cu128-feat-xyz-exp01", NULL},
        {"ampere-stable-cu126", "feat/new-model", "", true,
         REPO ":ampere-stable-cu126-feat-new-model", NULL},
        /* "local source won't have branch tag part" */
        {"ampere-stable-cu126", "develop", "dev-test", false, REPO ":ampere-stable-cu126-dev-test",
         NULL},
        {"ampere-stable-cu126", "feat/x", "", false, REPO ":ampere-stable-cu126", NULL},
        /* '/' in a branch becomes '-' (build.sh); what else a tag may not hold
         * is an error naming the part, not another name */
        {"ampere-stable-cu126", "a/b/c", "", true, REPO ":ampere-stable-cu126-a-b-c", NULL},
        {"ampere-stable-cu126", "user@fix#1", "", true, NULL,
         "invalid branch 'user@fix#1' for a tag: '@' is not allowed"},
        {"ampere-stable-cu126", "a/b/c", "x y", true, NULL,
         "invalid tag suffix 'x y' for a tag: ' ' is not allowed"},
        {"ampere-stable-cu126", "main", "caf\xc3\xa9", true, NULL,
         "invalid tag suffix 'caf\xc3\xa9' for a tag: byte 0xc3 is not allowed"},
        {"ampere stable", "main", "", true, NULL, "invalid tag 'ampere stable' for a tag"},
        /* a local source has no branch part, so its branch is not checked */
        {"ampere-stable-cu126", "user@fix#1", "", false, REPO ":ampere-stable-cu126", NULL},
        {"ampere-stable-cu126", "", "", true, REPO ":ampere-stable-cu126", NULL},
        {"", "main", "", true, NULL, "invalid tag template: the tag is empty"},
        {"ampere-stable-cu126",
         "feature/a-branch-name-that-goes-on-and-on-and-on-well-past-what-any-registry-would-take-"
         "as-a-tag-even-after-sanitizing",
         "", true, NULL, "longer than 128 characters"},
};

static void test_tag_convention_matches_seed_readme(void **state)
{
        (void)state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                const struct tag_case *c = &cases[i];
                struct recipe_tag_parts p = {REPO, c->tag, c->branch, NULL, c->git, c->suffix};
                struct kiln_error err = KILN_ERROR_INIT;
                char *got = NULL;
                int rc = recipe_tag_compute(&p, &got, &err);

                if (c->want) {
                        if (rc != 0)
                                fail_msg("case %zu: %s", i, err.msg);
                        assert_string_equal(got, c->want);
                        free(got);
                } else {
                        assert_int_equal(rc, -1);
                        if (!strstr(err.msg, c->want_err))
                                fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, c->want_err);
                }
        }
}

static void test_tag_main_branch_is_configurable(void **state)
{
        struct recipe_tag_parts p = {REPO, "ampere-stable-cu126", "master", "master", true, ""};
        struct kiln_error err = KILN_ERROR_INIT;
        char *got = NULL;

        (void)state;
        assert_int_equal(recipe_tag_compute(&p, &got, &err), 0);
        assert_string_equal(got, REPO ":ampere-stable-cu126");
        free(got);
        p.branch = "main";
        assert_int_equal(recipe_tag_compute(&p, &got, &err), 0);
        assert_string_equal(got, REPO ":ampere-stable-cu126-main");
        free(got);
}

static void test_tag_rejects_invalid_repository(void **state)
{
        struct recipe_tag_parts p = {"Frontierkodiak/Linnaeus", "x", "", NULL, false, ""};
        struct kiln_error err = KILN_ERROR_INIT;
        char *got = NULL;

        (void)state;
        assert_int_equal(recipe_tag_compute(&p, &got, &err), -1);
        assert_int_equal(err.code, KILN_E_INVALID);
        assert_non_null(strstr(err.msg, "lowercase"));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_tag_convention_matches_seed_readme),
                cmocka_unit_test(test_tag_main_branch_is_configurable),
                cmocka_unit_test(test_tag_rejects_invalid_repository),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
