/* The build plan: variables, profiles, --set, layers, env, tags. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "recipe.h"

static const char *doc =
        "{\n"                                                                          /* 1 */
        "  \"base\": \"${base}\",\n"                                                   /* 2 */
        "  \"variables\": {\n"                                                         /* 3 */
        "    \"arch\": {\"default\": \"ampere\", \"allowed\": [\"hopper\", \"ampere\", \"pre-ampere\"]},\n"
        "    \"source\": {\"default\": \"github\", \"allowed\": [\"github\", \"local\"]},\n"
        "    \"branch\": \"main\",\n"                                                  /* 6 */
        "    \"tag_suffix\": \"\",\n"                                                  /* 7 */
        "    \"base\": \"nvidia/cuda:12.8.0-cudnn-devel-ubuntu22.04\",\n"              /* 8 */
        "    \"index\": \"file:///idx/${variant}\"\n"                                  /* 9 */
        "  },\n"                                                                       /* 12 */
        "  \"profiles\": {\"by\": \"arch\", \"values\": {\n"                           /* 13 */
        "    \"hopper\": {\"variant\": \"nightly-cu128\", \"fa\": \"3.0.0b3\", \"cuda\": \"9.0\"},\n"
        "    \"ampere\": {\"variant\": \"stable-cu126\", \"fa\": \"2.7.4.post1\", \"cuda\": \"8.0;8.6\"},\n"
        "    \"pre-ampere\": {\"variant\": \"stable-cu126\", \"fa\": \"none\", \"cuda\": \"7.5\"}\n"
        "  }},\n"                                                                      /* 17 */
        "  \"layers\": [\n"                                                            /* 18 */
        "    {\"name\": \"torch\", \"kind\": \"wheels\", \"index\": \"${index}\",\n"   /* 19 */
        "     \"packages\": [\"torch==2.7.1\"]},\n"                                     /* 20 */
        "    {\"name\": \"fa\", \"kind\": \"build\", \"when\": \"${fa}\",\n"          /* 21 */
        "     \"command\": [\"make\", \"FA=${fa}\"], \"env\": {\"TORCH_CUDA_ARCH_LIST\": \"${cuda}\"}},\n"
        "    {\"name\": \"src\", \"kind\": \"source\", \"from\": \"${source}\",\n"     /* 23 */
        "     \"repository\": \"/git/linnaeus\", \"ref\": \"${branch}\", \"local\": \"/src\",\n"
        "     \"path\": \"/app/linnaeus\"}\n"                                         /* 25 */
        "  ],\n"                                                                       /* 26 */
        "  \"config\": {\n"                                                            /* 27 */
        "    \"env\": [\"PATH=/opt/fa/bin:${PATH}\", \"FA=${fa}\", \"BOTH=${FA}-${arch}\"],\n"
        "    \"workdir\": \"/app/linnaeus\", \"cmd\": [\"bash\"],\n"                   /* 29 */
        "    \"labels\": {\"z\": \"${arch}\", \"a\": \"1\"}\n"                          /* 30 */
        "  },\n"                                                                       /* 31 */
        "  \"annotations\": {\"org.example.empty\": \"\", \"org.example.arch\": \"${arch}\"},\n"
        "  \"tag\": {\"repository\": \"frontierkodiak/linnaeus-dev\", \"tag\": \"${arch}-${variant}\",\n"
        "          \"branch\": \"${branch}\", \"suffix\": \"${tag_suffix}\",\n"         /* 34 */
        "          \"also\": [\"${arch}-${variant}-git-${source.revision_short}\"]}\n" /* 35 */
        "}\n";

static struct recipe *load(void)
{
        struct kiln_error err = KILN_ERROR_INIT;
        struct recipe *r = recipe_parse(doc, strlen(doc), "t.json", "/recipes", &err);

        if (!r)
                fail_msg("%s", err.msg);
        return r;
}

static struct recipe_plan *plan_with(struct recipe *r, const char *const *sets, size_t n,
                                     const char *rev, json_t *env, struct kiln_error *err)
{
        struct recipe_plan_opts o = {sets, n, rev, env};
        struct recipe_plan *p = NULL;

        if (recipe_plan_build(r, &o, &p, err) < 0)
                return NULL;
        return p;
}

static const char *var(const struct recipe_plan *p, const char *name)
{
        return json_string_value(json_object_get(p->variables, name));
}

static void test_plan_defaults_and_profile(void **state)
{
        struct kiln_error err = KILN_ERROR_INIT;
        struct recipe *r = load();
        struct recipe_plan *p = plan_with(r, NULL, 0, NULL, NULL, &err);

        (void)state;
        if (!p)
                fail_msg("%s", err.msg);
        assert_string_equal(p->base, "nvidia/cuda:12.8.0-cudnn-devel-ubuntu22.04");
        assert_string_equal(var(p, "variant"), "stable-cu126");
        assert_string_equal(var(p, "index"), "file:///idx/stable-cu126");
        assert_int_equal(p->n_layers, 3);
        assert_int_equal(p->layers[1].kind, RECIPE_LAYER_BUILD);
        assert_string_equal(json_string_value(json_object_get(
                                    json_object_get(p->layers[1].params, "env"),
                                    "TORCH_CUDA_ARCH_LIST")),
                            "8.0;8.6");
        assert_null(json_object_get(p->layers[1].params, "when"));
        assert_int_equal(p->n_tags, 2);
        assert_string_equal(p->tags[0], "frontierkodiak/linnaeus-dev:ampere-stable-cu126");
        assert_non_null(strstr(p->tags[1], "${source.revision_short}"));
        assert_int_equal(json_array_size(p->unresolved), 2);
        assert_string_equal(json_string_value(json_array_get(p->unresolved, 0)),
                            "env 'PATH': known once the base image is pulled");
        assert_string_equal(json_string_value(json_array_get(p->unresolved, 1)),
                            "source.revision: known once the source is fetched");
        /* labels sorted, empty annotations dropped, base recorded */
        assert_string_equal(json_object_iter_key(json_object_iter(
                                    json_object_get(p->config, "Labels"))),
                            "a");
        assert_null(json_object_get(p->annotations, "org.example.empty"));
        assert_string_equal(json_string_value(json_object_get(
                                    p->annotations, "org.opencontainers.image.base.name")),
                            p->base);
        recipe_plan_free(p);
        recipe_free(r);
}

static void test_plan_arch_without_flash_attention_drops_the_layer(void **state)
{
        static const char *const sets[] = {"arch=pre-ampere"};
        struct kiln_error err = KILN_ERROR_INIT;
        struct recipe *r = load();
        struct recipe_plan *p = plan_with(r, sets, 1, NULL, NULL, &err);

        (void)state;
        assert_non_null(p);
        assert_int_equal(p->n_layers, 2);
        assert_string_equal(p->layers[0].name, "torch");
        assert_string_equal(p->layers[1].name, "src");
        assert_string_equal(p->tags[0], "frontierkodiak/linnaeus-dev:pre-ampere-stable-cu126");
        recipe_plan_free(p);
        recipe_free(r);
}

static void test_plan_set_overrides_profile_values_and_later_wins(void **state)
{
        static const char *const sets[] = {"arch=hopper", "variant=custom", "branch=feat/x",
                                           "tag_suffix=exp01", "variant=nightly-cu128"};
        struct kiln_error err = KILN_ERROR_INIT;
        struct recipe *r = load();
        struct recipe_plan *p = plan_with(r, sets, 5, NULL, NULL, &err);

        (void)state;
        if (!p)
                fail_msg("%s", err.msg);
        assert_string_equal(p->tags[0],
                            "frontierkodiak/linnaeus-dev:hopper-nightly-cu128-feat-x-exp01");
        assert_string_equal(var(p, "index"), "file:///idx/nightly-cu128");
        recipe_plan_free(p);
        recipe_free(r);
}

static void test_plan_local_source_has_no_branch_part_and_no_revision(void **state)
{
        static const char *const sets[] = {"source=local", "branch=develop", "tag_suffix=dev-test"};
        struct kiln_error err = KILN_ERROR_INIT;
        struct recipe *r = load();
        struct recipe_plan *p = plan_with(r, sets, 3, NULL, NULL, &err);

        (void)state;
        assert_non_null(p);
        assert_int_equal(p->n_tags, 1); /* the commit tag is left out */
        assert_string_equal(p->tags[0], "frontierkodiak/linnaeus-dev:ampere-stable-cu126-dev-test");
        assert_null(json_object_get(p->annotations, "org.opencontainers.image.revision"));
        recipe_plan_free(p);
        recipe_free(r);
}

static void test_plan_with_revision_and_base_env_resolves_everything(void **state)
{
        static const char *const sets[] = {"branch=develop"};
        struct kiln_error err = KILN_ERROR_INIT;
        struct recipe *r = load();
        json_t *env = json_pack("[ss]", "PATH=/usr/local/bin:/usr/bin", "CUDA_VERSION=12.8.0");
        struct recipe_plan *p =
                plan_with(r, sets, 1, "0123456789abcdef0123456789abcdef01234567", env, &err);
        json_t *e;

        (void)state;
        if (!p)
                fail_msg("%s", err.msg);
        assert_int_equal(json_array_size(p->unresolved), 0);
        assert_int_equal(p->n_tags, 2);
        assert_string_equal(p->tags[0], "frontierkodiak/linnaeus-dev:ampere-stable-cu126-develop");
        assert_string_equal(p->tags[1], "frontierkodiak/linnaeus-dev:ampere-stable-cu126-git-0123456");
        assert_string_equal(json_string_value(json_object_get(
                                    p->annotations, "org.opencontainers.image.revision")),
                            "0123456789abcdef0123456789abcdef01234567");
        /* base env first, replaced in place; new names appended in order */
        e = json_object_get(p->config, "Env");
        assert_int_equal(json_array_size(e), 4);
        assert_string_equal(json_string_value(json_array_get(e, 0)),
                            "PATH=/opt/fa/bin:/usr/local/bin:/usr/bin");
        assert_string_equal(json_string_value(json_array_get(e, 1)), "CUDA_VERSION=12.8.0");
        assert_string_equal(json_string_value(json_array_get(e, 2)), "FA=2.7.4.post1");
        /* ${FA} is the env entry set just before */
        assert_string_equal(json_string_value(json_array_get(e, 3)), "BOTH=2.7.4.post1-ampere");
        json_decref(env);
        recipe_plan_free(p);
        recipe_free(r);
}

static void test_plan_without_base_env_marks_env_unresolved(void **state)
{
        struct kiln_error err = KILN_ERROR_INIT;
        struct recipe *r = load();
        struct recipe_plan *p = plan_with(r, NULL, 0, NULL, NULL, &err);
        json_t *e;
        bool found = false;
        size_t i;

        (void)state;
        assert_non_null(p);
        assert_string_equal(json_string_value(json_array_get(json_object_get(p->config, "Env"), 0)),
                            "PATH=/opt/fa/bin:${PATH}");
        json_array_foreach(p->unresolved, i, e) if (strstr(json_string_value(e), "env 'PATH'"))
                found = true;
        assert_true(found);
        recipe_plan_free(p);
        recipe_free(r);
}

static const struct {
        const char *set;
        const char *err;
} bad_sets[] = {
        {"gpu=h100",
         "unknown variable 'gpu': recipe 't.json' declares arch, source, branch, tag_suffix, base, "
         "index"},
        {"arch=volta",
         "invalid value 'volta' for variable 'arch': expected one of hopper, ampere, pre-ampere"},
        {"source=svn", "invalid value 'svn' for variable 'source': expected one of github, local"},
        {"noequals", "invalid --set 'noequals': expected NAME=VALUE"},
        {"index=${nope}", "--set 'index': undefined variable 'nope' in '${nope}'"},
        {"base=Ubuntu:22.04",
         "invalid recipe 't.json' at line 2 column 11: invalid reference 'Ubuntu': "
         "repository name must be lowercase"},
        {"tag_suffix=${tag_suffix}", "--set 'tag_suffix': variable 'tag_suffix' refers to itself"},
};

static void test_plan_reports_bad_variables(void **state)
{
        (void)state;
        for (size_t i = 0; i < sizeof(bad_sets) / sizeof(bad_sets[0]); i++) {
                struct kiln_error err = KILN_ERROR_INIT;
                struct recipe *r = load();
                struct recipe_plan *p = plan_with(r, &bad_sets[i].set, 1, NULL, NULL, &err);
                if (p)
                        fail_msg("case %zu: planned", i);
                if (strcmp(err.msg, bad_sets[i].err))
                        fail_msg("case %zu:\n got  '%s'\n want '%s'", i, err.msg, bad_sets[i].err);
                recipe_free(r);
        }
}

static void test_plan_missing_variable_names_the_recipe_line(void **state)
{
        const char *d = "{\n"
                        "  \"base\": \"ubuntu\",\n"
                        "  \"layers\": [\n"
                        "    {\"name\": \"w\", \"kind\": \"wheels\",\n"
                        "     \"requirements\": \"${reqs}/requirements.txt\"}\n"
                        "  ],\n"
                        "  \"config\": {\"env\": [\"A=${HOME}\"]}\n"
                        "}\n";
        struct kiln_error err = KILN_ERROR_INIT;
        struct recipe *r = recipe_parse(d, strlen(d), "m.json", ".", &err);
        struct recipe_plan *p = NULL;
        struct recipe_plan_opts o = {0};
        json_t *env = json_pack("[s]", "PATH=/bin");

        (void)state;
        assert_non_null(r);
        assert_int_equal(recipe_plan_build(r, &o, &p, &err), -1);
        assert_string_equal(err.msg, "invalid recipe 'm.json' at line 5 column 22: undefined "
                                     "variable 'reqs' in '${reqs}/requirements.txt'");
        /* with the base env known, a lower-case name in neither is an error
         * (a misspelt recipe variable) */
        recipe_free(r);
        d = "{\"base\": \"ubuntu\", \"layers\": [],\n \"config\": {\"env\": [\"A=${home}\"]}}";
        r = recipe_parse(d, strlen(d), "m.json", ".", &err);
        assert_non_null(r);
        o.base_env = env;
        assert_int_equal(recipe_plan_build(r, &o, &p, &err), -1);
        assert_string_equal(err.msg, "invalid recipe 'm.json' at line 2 column 21: undefined "
                                     "variable 'home' in 'A=${home}'");
        /* an upper-case one is the base's variable, empty when unset, as in
         * a Dockerfile's ENV */
        recipe_free(r);
        d = "{\"base\": \"ubuntu\", \"layers\": [],\n \"config\": {\"env\": [\"A=/x:${HOME}\"]}}";
        r = recipe_parse(d, strlen(d), "m.json", ".", &err);
        assert_non_null(r);
        assert_int_equal(recipe_plan_build(r, &o, &p, &err), 0);
        assert_string_equal(json_string_value(json_array_get(
                                    json_object_get(p->config, "Env"), 1)),
                            "A=/x:");
        recipe_plan_free(p);
        p = NULL;
        json_decref(env);
        recipe_free(r);
}

static void test_plan_variable_loop_names_the_place(void **state)
{
        const char *d = "{\"base\": \"ubuntu\", \"layers\": [],\n"
                        " \"variables\": {\"a\": \"${b}\",\n"
                        "               \"b\": \"x${a}\"}}";
        struct kiln_error err = KILN_ERROR_INIT;
        struct recipe *r = recipe_parse(d, strlen(d), "l.json", ".", &err);
        struct recipe_plan *p = NULL;

        (void)state;
        assert_non_null(r);
        assert_int_equal(recipe_plan_build(r, NULL, &p, &err), -1);
        assert_string_equal(err.msg, "invalid recipe 'l.json' at line 3 column 21: variable 'a' "
                                     "refers to itself");
        recipe_free(r);
}

static void test_plan_json_and_text_mark_unresolved(void **state)
{
        struct kiln_error err = KILN_ERROR_INIT;
        struct recipe *r = load();
        struct recipe_plan *p = plan_with(r, NULL, 0, NULL, NULL, &err);
        json_t *j;
        char *t;

        (void)state;
        assert_non_null(p);
        j = recipe_plan_to_json(p);
        assert_int_equal(json_array_size(json_object_get(j, "layers")), 3);
        assert_true(json_array_size(json_object_get(j, "unresolved")) >= 1);
        json_decref(j);
        t = recipe_plan_to_text(p);
        assert_non_null(strstr(t, "(unresolved)"));
        assert_non_null(strstr(t, "unresolved:\n  env 'PATH'"));
        assert_non_null(strstr(t, "\n  source.revision: known once the source is fetched\n"));
        assert_non_null(strstr(t, "  0 base: nvidia/cuda:12.8.0-cudnn-devel-ubuntu22.04\n"));
        free(t);
        recipe_plan_free(p);
        recipe_free(r);
}

/* docs/recipes.md "Maintainer scripts": a configure step above each debs
 * layer that does not say "configure": false, settled once the base is known */
static const char *debs_doc = "{\"base\": \"debian\", \"layers\": [\n"
                              " {\"name\": \"a\", \"kind\": \"debs\", \"debs\": [{\"path\": "
                              "\"a.deb\", \"sha256\": \"x\"}]},\n"
                              " {\"name\": \"b\", \"kind\": \"debs\", \"configure\": false,\n"
                              "  \"debs\": [{\"path\": \"b.deb\", \"sha256\": \"x\"}]},\n"
                              " {\"name\": \"c\", \"kind\": \"debs\", \"configure\": true,\n"
                              "  \"debs\": [{\"path\": \"c.deb\", \"sha256\": \"x\"}]}]}";

static void assert_names(const struct recipe_plan *p, const char *want)
{
        char got[256] = "";

        for (size_t i = 0; i < p->n_layers; i++) {
                strcat(got, i ? " " : "");
                strcat(got, p->layers[i].name);
        }
        assert_string_equal(got, want);
}

static void test_plan_configure_steps_follow_the_base_and_the_sandbox(void **state)
{
        struct kiln_error err = KILN_ERROR_INIT;
        struct recipe *r = recipe_parse(debs_doc, strlen(debs_doc), "d.json", ".", &err);
        struct recipe_plan *p = NULL;
        char *dropped = NULL;

        (void)state;
        assert_non_null(r);
        assert_int_equal(recipe_plan_build(r, NULL, &p, &err), 0);
        assert_names(p, "a a/configure b c c/configure");
        assert_true(p->layers[1].configure_step && p->layers[1].conditional);
        assert_true(p->layers[4].configure_step && !p->layers[4].conditional);
        assert_int_equal(p->layers[1].kind, RECIPE_LAYER_RUN);
        /* a base with dpkg and a sandbox: both kept, none conditional now */
        assert_int_equal(recipe_plan_configure(p, true, true, NULL, &dropped, &err), 0);
        assert_names(p, "a a/configure b c c/configure");
        assert_null(dropped);
        assert_false(p->layers[1].conditional);
        recipe_plan_free(p);

        /* no sandbox: the explicit step fails naming the layer and why; the plan stays */
        assert_int_equal(recipe_plan_build(r, NULL, &p, &err), 0);
        assert_int_equal(
            recipe_plan_configure(p, true, true, "user namespaces are off: x is 0", &dropped, &err),
            -1);
        assert_int_equal(err.code, KILN_E_UNSUPPORTED);
        assert_string_equal(err.msg,
                            "debs layer 'c' asks for \"configure\": true, which runs its "
                            "maintainer scripts in the sandbox: user namespaces are off: x is 0");
        assert_names(p, "a a/configure b c c/configure");
        recipe_plan_free(p);

        /* no dpkg: the explicit step fails; --stage: every step goes */
        assert_int_equal(recipe_plan_build(r, NULL, &p, &err), 0);
        assert_int_equal(recipe_plan_configure(p, true, false, NULL, &dropped, &err), -1);
        assert_int_equal(err.code, KILN_E_INVALID);
        assert_non_null(strstr(err.msg, "debs layer 'c' asks for \"configure\": true, but the "
                                        "base 'debian' has no dpkg database"));
        assert_int_equal(recipe_plan_configure(p, false, false, NULL, &dropped, &err), 0);
        assert_names(p, "a b c");
        assert_null(dropped);
        recipe_plan_free(p);
        recipe_free(r);

        /* without an explicit one: no sandbox drops the default steps, and says which */
        {
                const char *d2 = "{\"base\": \"debian\", \"layers\": [\n"
                                 " {\"name\": \"a\", \"kind\": \"debs\", \"debs\": [{\"path\": "
                                 "\"a.deb\", \"sha256\": \"x\"}]},\n"
                                 " {\"name\": \"d\", \"kind\": \"debs\", \"debs\": [{\"path\": "
                                 "\"d.deb\", \"sha256\": \"x\"}]}]}";
                r = recipe_parse(d2, strlen(d2), "d2.json", ".", &err);
                assert_non_null(r);
                assert_int_equal(recipe_plan_build(r, NULL, &p, &err), 0);
                assert_names(p, "a a/configure d d/configure");
                assert_int_equal(recipe_plan_configure(p, true, true, "no userns", &dropped, &err),
                                 0);
                assert_names(p, "a d");
                assert_string_equal(dropped, "a, d");
                free(dropped);
                recipe_plan_free(p);
                /* a base without dpkg: nothing to configure, nothing to say */
                assert_int_equal(recipe_plan_build(r, NULL, &p, &err), 0);
                dropped = NULL;
                assert_int_equal(recipe_plan_configure(p, true, false, NULL, &dropped, &err), 0);
                assert_names(p, "a d");
                assert_null(dropped);
                recipe_plan_free(p);
                recipe_free(r);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_plan_defaults_and_profile),
            cmocka_unit_test(test_plan_arch_without_flash_attention_drops_the_layer),
            cmocka_unit_test(test_plan_set_overrides_profile_values_and_later_wins),
            cmocka_unit_test(test_plan_local_source_has_no_branch_part_and_no_revision),
            cmocka_unit_test(test_plan_with_revision_and_base_env_resolves_everything),
            cmocka_unit_test(test_plan_without_base_env_marks_env_unresolved),
            cmocka_unit_test(test_plan_reports_bad_variables),
            cmocka_unit_test(test_plan_missing_variable_names_the_recipe_line),
            cmocka_unit_test(test_plan_variable_loop_names_the_place),
            cmocka_unit_test(test_plan_json_and_text_mark_unresolved),
            cmocka_unit_test(test_plan_configure_steps_follow_the_base_and_the_sandbox),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
