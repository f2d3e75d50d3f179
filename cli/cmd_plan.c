/* kiln build RECIPE --dry-run | --stage DIR: the plan printer and the
 * layer front ends, until layers/ and registry/ land. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cmd_recipes.h"
#include "error.h"
#include "io.h"
#include "json.h"
#include "recipe.h"
#include "stage.h"
#include "util.h"

#define USAGE                                                                                      \
        "kiln build RECIPE (--dry-run [--json] [--keys] | --stage DIR) [--cache-dir DIR]\n"       \
        "       [--mirror URL-PREFIX=DIR]...) [--arch A] [--source github|local] [--branch B]\n"   \
        "       [--tag-suffix S] [--max-jobs N] [--set NAME=VALUE]..."

/* --mirror URL-PREFIX=DIR: http(s) inputs under the prefix are read from
 * a local copy of the site (an air-gapped mirror carried over on a disk);
 * a URL ending in '/' (an index page) reads DIR/.../index.html. */
struct mirror {
        const char *prefix;
        const char *dir;
};

struct mirrors {
        struct mirror *m;
        size_t n;
};

static int copy_capped(const char *src, const char *dest, int64_t max, struct kiln_error *err)
{
        _cleanup_free_ char *tmp = kiln_strdupf("%s.tmp-XXXXXX", dest);
        char buf[65536];
        int64_t total = 0;
        ssize_t n;
        int in, out, rc = -1;

        if (!tmp)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        in = open(src, O_RDONLY | O_CLOEXEC);
        if (in < 0)
                return kiln_error_set_errno(err, errno == ENOENT ? KILN_E_NOT_FOUND : KILN_E_IO,
                                            errno, "cannot open '%s'", src);
        out = mkstemp(tmp);
        if (out < 0) {
                close(in);
                return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create '%s'", tmp);
        }
        while ((n = read(in, buf, sizeof(buf))) > 0) {
                total += n;
                if (max >= 0 && total > max) {
                        kiln_error_set(err, KILN_E_LIMIT, "'%s' is larger than %lld bytes", src,
                                       (long long)max);
                        goto out;
                }
                if (write(out, buf, (size_t)n) != n) {
                        kiln_error_set_errno(err, KILN_E_IO, errno, "cannot write '%s'", tmp);
                        goto out;
                }
        }
        if (n < 0) {
                kiln_error_set_errno(err, KILN_E_IO, errno, "cannot read '%s'", src);
                goto out;
        }
        if (fsync(out) < 0 || rename(tmp, dest) < 0) {
                kiln_error_set_errno(err, KILN_E_IO, errno, "cannot write '%s'", dest);
                goto out;
        }
        rc = 0;
out:
        close(in);
        close(out);
        if (rc < 0)
                unlink(tmp);
        return rc;
}

static int mirror_fetch(void *ctx, const char *url, const char *dest, int64_t max,
                        struct kiln_error *err)
{
        const struct mirrors *ms = ctx;

        for (size_t i = 0; i < ms->n; i++) {
                const char *rest;
                _cleanup_free_ char *src = NULL;

                if (!str_has_prefix(url, ms->m[i].prefix))
                        continue;
                rest = url + strlen(ms->m[i].prefix);
                if (*rest && *rest != '/' && ms->m[i].prefix[strlen(ms->m[i].prefix) - 1] != '/')
                        continue;
                src = kiln_strdupf("%s/%s%s", ms->m[i].dir, rest,
                                   !*rest || rest[strlen(rest) - 1] == '/' ? "index.html" : "");
                if (!src)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                if (strstr(rest, "/../"))
                        return kiln_error_set(err, KILN_E_INVALID, "refusing to map '%s'", url);
                if (copy_capped(src, dest, max, err) < 0) {
                        kiln_error_prefix(err, "fetch '%s' from mirror '%s'", url, ms->m[i].dir);
                        return -1;
                }
                return 0;
        }
        return kiln_error_set(err, KILN_E_UNSUPPORTED,
                              "cannot fetch '%s': no --mirror maps it and the HTTP client is not built in yet",
                              url);
}

static int fail(const struct kiln_error *err)
{
        return cli_fail(err);
}

static int usage(const char *fmt, const char *arg)
{
        fprintf(stderr, "kiln build: ");
        fprintf(stderr, fmt, arg);
        fprintf(stderr, "\nusage: %s\n", USAGE);
        return 2;
}

static int print_json(json_t *j)
{
        char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

        if (!s)
                return -1;
        printf("%s\n", s);
        free(s);
        return 0;
}

static int stage_all(const struct recipe *r, struct recipe_plan_opts *po, struct recipe_plan *plan,
                     const char *stage_dir, const char *cache_dir, struct mirrors *ms, bool json,
                     struct kiln_error *err)
{
        struct recipe_plan *final = NULL;
        char *revision = NULL;
        json_t *out = json_array();
        int rc = -1;

        if (kiln_mkdir_p(stage_dir, 0755, err) < 0)
                goto done;
        for (size_t i = 0; i < plan->n_layers; i++) {
                struct recipe_stage_opts so = {0};
                struct recipe_stage_result res = {0}, keyres = {0};
                char *dir = kiln_strdupf("%s/%02zu-%s", stage_dir, i + 1, plan->layers[i].name);

                if (!dir) {
                        kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        goto done;
                }
                so.cache_dir = cache_dir;
                if (ms->n) {
                        so.fetch = mirror_fetch;
                        so.fetch_signed = mirror_fetch;
                        so.fetch_ctx = ms;
                }
                /* what a build does first: the key, to look up the layer cache */
                if (recipe_layer_key(plan, i, &so, &keyres, err) < 0) {
                        kiln_error_prefix(err, "layer '%s'", plan->layers[i].name);
                        free(dir);
                        goto done;
                }
                if (recipe_stage_layer(plan, i, dir, &so, &res, err) < 0) {
                        kiln_error_prefix(err, "stage layer '%s'", plan->layers[i].name);
                        recipe_stage_result_release(&keyres);
                        free(dir);
                        goto done;
                }
                if (!json)
                        fprintf(stderr, "staged %s (%s)%s%s%s\n", dir,
                                recipe_layer_kind_name(plan->layers[i].kind),
                                res.revision ? " at " : "", res.revision ? res.revision : "",
                                res.cached ? ", cached" : "");
                {
                        json_t *e = json_object();
                        json_object_set_new(e, "name", json_string(plan->layers[i].name));
                        json_object_set_new(e, "dir", json_string(dir));
                        json_object_set_new(e, "layer_key", json_string(res.layer_key));
                        if (res.revision)
                                json_object_set_new(e, "revision", json_string(res.revision));
                        if (res.cache_key)
                                json_object_set_new(e, "cache_key", json_string(res.cache_key));
                        json_object_set_new(e, "cached", json_boolean(res.cached));
                        json_array_append_new(out, e);
                }
                if (strcmp(keyres.layer_key, res.layer_key)) {
                        kiln_error_set(err, KILN_E_INTERNAL,
                                       "layer '%s' staged with key %s, planned with %s",
                                       plan->layers[i].name, res.layer_key, keyres.layer_key);
                        recipe_stage_result_release(&res);
                        recipe_stage_result_release(&keyres);
                        free(dir);
                        goto done;
                }
                recipe_stage_result_release(&keyres);
                if (res.revision && !revision)
                        revision = strdup(res.revision);
                recipe_stage_result_release(&res);
                free(dir);
        }
        /* the revision is known now: plan again so tags and annotations hold it */
        po->source_revision = revision;
        if (recipe_plan_build(r, po, &final, err) < 0 ||
            recipe_plan_configure(final, false, false, NULL, NULL, err) < 0)
                goto done;
        {
                json_t *j = recipe_plan_to_json(final);
                char *path = kiln_strdupf("%s/plan.json", stage_dir);
                char *buf;

                json_object_set(j, "staged", out);
                buf = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
                if (!path || !buf)
                        kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                else
                        rc = kiln_write_file_atomic(path, buf, strlen(buf), 0644, err);
                if (rc == 0) {
                        if (json)
                                print_json(j);
                        else
                                for (size_t i = 0; i < final->n_tags; i++)
                                        printf("%s\n", final->tags[i]);
                }
                free(path);
                free(buf);
                json_decref(j);
        }
done:
        json_decref(out);
        free(revision);
        recipe_plan_free(final);
        return rc;
}

int cmd_build_plan(int argc, char **argv)
{
        static const struct option opts[] = {
                {"dry-run", no_argument, NULL, 'n'},
                {"json", no_argument, NULL, 'j'},
                {"arch", required_argument, NULL, 'a'},
                {"source", required_argument, NULL, 's'},
                {"branch", required_argument, NULL, 'b'},
                {"tag-suffix", required_argument, NULL, 't'},
                {"max-jobs", required_argument, NULL, 'M'},
                {"set", required_argument, NULL, 'S'},
                {"stage", required_argument, NULL, 'g'},
                {"cache-dir", required_argument, NULL, 'c'},
                {"mirror", required_argument, NULL, 'm'},
                {"keys", no_argument, NULL, 'k'},
                {"help", no_argument, NULL, 'h'},
                {NULL, 0, NULL, 0},
        };
        struct kiln_error err = KILN_ERROR_INIT;
        char **sets = calloc((size_t)argc + 1, sizeof(char *));
        size_t n_sets = 0;
        bool dry = false, json = false, keys = false;
        const char *stage_dir = NULL, *cache_dir = NULL;
        struct recipe *r = NULL;
        struct recipe_plan *plan = NULL;
        struct recipe_plan_opts po = {0};
        struct mirrors ms = {calloc((size_t)argc + 1, sizeof(struct mirror)), 0};
        char *default_cache = NULL;
        int c, rc = 0;

        if (!sets || !ms.m) {
                free(sets);
                free(ms.m);
                return 70;
        }
        optind = 1;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                const char *var = NULL;
                switch (c) {
                case 'n': dry = true; break;
                case 'j': json = true; break;
                case 'k': keys = true; break;
                case 'a': var = "arch"; break;
                case 's': var = "source"; break;
                case 'b': var = "branch"; break;
                case 't': var = "tag_suffix"; break;
                case 'M': var = "max_jobs"; break;
                case 'S': sets[n_sets++] = strdup(optarg); break;
                case 'g': stage_dir = optarg; break;
                case 'c': cache_dir = optarg; break;
                case 'm': {
                        char *eq = strchr(optarg, '=');
                        if (!eq || eq == optarg || !eq[1]) {
                                rc = usage("invalid --mirror '%s': expected URL-PREFIX=DIR", optarg);
                                goto out;
                        }
                        *eq = '\0';
                        ms.m[ms.n].prefix = optarg;
                        ms.m[ms.n++].dir = eq + 1;
                        break;
                }
                case 'h': printf("usage: %s\n", USAGE); rc = 0; goto out;
                default: rc = usage("%s", "bad option"); goto out;
                }
                if (var)
                        sets[n_sets++] = kiln_strdupf("%s=%s", var, optarg);
        }
        if (optind != argc - 1) {
                rc = usage("%s", optind >= argc ? "missing RECIPE" : "too many arguments");
                goto out;
        }
        if (!dry && !stage_dir) {
                kiln_error_set(&err, KILN_E_UNSUPPORTED,
                               "building images is not available yet: use --dry-run or --stage DIR");
                rc = fail(&err);
                goto out;
        }
        if (dry && stage_dir) {
                rc = usage("%s", "--dry-run and --stage exclude each other");
                goto out;
        }
        r = recipe_load(argv[optind], &err);
        if (!r) {
                rc = fail(&err);
                goto out;
        }
        po.sets = (const char *const *)sets;
        po.n_sets = n_sets;
        if (recipe_plan_build(r, &po, &plan, &err) < 0) {
                rc = fail(&err);
                goto out;
        }
        if (!cache_dir) {
                const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
                default_cache = xdg && *xdg ? kiln_strdupf("%s/kiln", xdg)
                                            : kiln_strdupf("%s/.cache/kiln", home ? home : ".");
                cache_dir = default_cache;
        }
        if (dry) {
                json_t *keyed = json_array();
                /* --keys: each layer's cache key; reads index pages and
                 * resolves git refs, but downloads no wheel or package that
                 * an index or the recipe gives a sha256 for */
                for (size_t i = 0; keys && i < plan->n_layers; i++) {
                        struct recipe_stage_opts so = {.cache_dir = cache_dir,
                                                       .fetch = ms.n ? mirror_fetch : NULL,
                                                       .fetch_ctx = &ms};
                        struct recipe_stage_result kres = {0};
                        if (recipe_layer_key(plan, i, &so, &kres, &err) < 0) {
                                kiln_error_prefix(&err, "layer '%s'", plan->layers[i].name);
                                json_decref(keyed);
                                rc = fail(&err);
                                goto out;
                        }
                        json_array_append_new(keyed, json_string(kres.layer_key));
                        recipe_stage_result_release(&kres);
                }
                if (json) {
                        json_t *j = recipe_plan_to_json(plan);
                        json_t *l;
                        size_t i;
                        json_array_foreach(json_object_get(j, "layers"), i, l) if (keys)
                                json_object_set(l, "layer_key", json_array_get(keyed, i));
                        print_json(j);
                        json_decref(j);
                } else {
                        char *t = recipe_plan_to_text(plan);
                        if (t)
                                fputs(t, stdout);
                        free(t);
                        if (keys) {
                                printf("layer keys:\n");
                                for (size_t i = 0; i < plan->n_layers; i++)
                                        printf("  %s %s\n", plan->layers[i].name,
                                               json_string_value(json_array_get(keyed, i)));
                        }
                }
                json_decref(keyed);
                goto out;
        }
        /* --stage builds no image: the configure steps, which run in one, are left out */
        if (recipe_plan_configure(plan, false, false, NULL, NULL, &err) < 0 ||
            stage_all(r, &po, plan, stage_dir, cache_dir, &ms, json, &err) < 0)
                rc = fail(&err);
out:
        for (size_t i = 0; i < n_sets; i++)
                free(sets[i]);
        free(sets);
        free(ms.m);
        free(default_cache);
        recipe_plan_free(plan);
        recipe_free(r);
        return rc;
}
