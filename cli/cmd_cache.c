/* kiln cache ls|show|prune --cache-repo HOST/REPO: the shared layer cache
 * (docs/cache.md); kiln cache prune --local [--cache DIR]: the unpacked
 * layers and run scratch directories of the local cache. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache.h"
#include "cli.h"
#include "io.h"
#include "rootfs.h"
#include "sandbox.h"
#include "cmd_registry.h"
#include "commands.h"
#include "json.h"
#include "model.h"
#include "util.h"

struct entry {
        char *tag;
        struct oci_digest digest;
        char *created, *layer, *key, *blob, *inputs;
        long long size;
};

static int cmp_created(const void *a, const void *b)
{
        const struct entry *x = a, *y = b;
        /* newest first; RFC 3339 UTC strings sort as times */
        return strcmp(y->created ? y->created : "", x->created ? x->created : "");
}

static void entries_free(struct entry *v, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                free(v[i].tag);
                free(v[i].created);
                free(v[i].layer);
                free(v[i].key);
                free(v[i].blob);
                free(v[i].inputs);
        }
        free(v);
}

static char *ann(const struct oci_manifest *m, const char *k)
{
        const char *v = json_string_value(json_object_get(m->annotations, k));
        return v ? strdup(v) : NULL;
}

static int load(struct reg_client *c, struct entry **ret, size_t *ret_n, struct kiln_error *err)
{
        char **tags = NULL;
        size_t n = 0, k = 0;
        struct entry *v;

        if (reg_client_list_tags(c, &tags, &n, err) < 0)
                return -1;
        v = calloc(n + 1, sizeof(*v));
        if (!v) {
                for (size_t i = 0; i < n; i++)
                        free(tags[i]);
                free(tags);
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        for (size_t i = 0; i < n; i++) {
                char *buf = NULL, *mt = NULL;
                size_t len;
                struct oci_digest d;
                struct oci_manifest *m = NULL;
                struct kiln_error e = KILN_ERROR_INIT;
                if (!str_has_prefix(tags[i], "kc-") ||
                    reg_client_get_manifest(c, tags[i], &buf, &len, &mt, &d, &e) < 0 ||
                    oci_manifest_parse(buf, len, mt, &m, &e) < 0 || m->n_layers != 1) {
                        if (str_has_prefix(tags[i], "kc-"))
                                cli_warn("cache entry '%s' is unreadable: %s", tags[i],
                                         e.msg[0] ? e.msg : "not one layer");
                        free(buf);
                        free(mt);
                        oci_manifest_free(m);
                        free(tags[i]);
                        continue;
                }
                v[k].tag = tags[i];
                v[k].digest = d;
                v[k].created = ann(m, "org.opencontainers.image.created");
                v[k].layer = ann(m, "dev.kiln.cache.layer");
                v[k].key = ann(m, "dev.kiln.cache.key");
                v[k].inputs = ann(m, "dev.kiln.cache.inputs");
                v[k].blob = strdup(m->layers[0].digest.str);
                v[k].size = (long long)m->layers[0].size;
                k++;
                free(buf);
                free(mt);
                oci_manifest_free(m);
        }
        free(tags);
        qsort(v, k, sizeof(*v), cmp_created);
        *ret = v;
        *ret_n = k;
        return 0;
}

/* kiln cache prune --local: CACHE/rootfs (layers unpacked for run steps) and
 * CACHE/run (scratch of runs, left by a killed one); built blobs stay. */
static int prune_local(const char *dir)
{
        struct kiln_error err = KILN_ERROR_INIT;
        struct layer_cache *c = layer_cache_open(dir, &err);
        _cleanup_free_ char *runs = c ? kiln_strdupf("%s/run", layer_cache_dir(c)) : NULL;
        int rc = EXIT_OK;

        if (!c)
                return cli_fail(&err);
        if (!runs || sandbox_rootfs_prune(layer_cache_dir(c), &err) < 0 ||
            sandbox_reclaim(runs, &err) < 0) {
                rc = runs ? cli_fail(&err) : EXIT_INTERNAL;
        } else {
                kiln_rm_rf(runs);
                printf("removed the unpacked layers and run directories of %s\n",
                       layer_cache_dir(c));
        }
        layer_cache_free(c);
        return rc;
}

int cmd_cache(struct cli_args *a)
{
        struct kiln_error err = KILN_ERROR_INIT;
        const char *repo = cli_arg(a, 'R'), *action, *cache_dir = cli_arg(a, 'c');
        bool local = cli_flag(a, 'l'), json = cli_flag(a, 'j');
        long long keep = cli_num(a, 'k', -1), older = cli_num(a, 'o', -1);
        struct oci_place p = {0};
        struct reg_client *c = NULL;
        struct entry *v = NULL;
        size_t n = 0;
        int rc = EXIT_OK;

        if (local) {
                if (a->argc != 1 || strcmp(a->argv[0], "prune") || repo)
                        return cli_usage("cache", "--local goes with prune alone, not --cache-repo");
                return prune_local(cache_dir);
        }
        if (a->argc < 1 || !repo)
                return cli_usage("cache", "expected ls, show TAG or prune, and --cache-repo HOST/REPO");
        action = a->argv[0];
        if (oci_place_parse(repo, &p, &err) < 0)
                return cli_fail(&err);
        if (p.kind != OCI_PLACE_REGISTRY) {
                oci_place_release(&p);
                return cli_usage("cache", "--cache-repo takes a registry repository, not '%s'", repo);
        }
        c = reg_client_new(p.ref.domain, p.ref.path, &a->reg, !strcmp(action, "prune"), &err);
        if (!c || load(c, &v, &n, &err) < 0) {
                rc = cli_fail(&err);
                goto out;
        }
        if (!strcmp(action, "ls")) {
                for (size_t i = 0; i < n; i++)
                        printf("%s  %-20s  %-22s  %lld  %s\n", v[i].tag, v[i].layer ? v[i].layer : "-",
                               v[i].created ? v[i].created : "-", v[i].size, v[i].blob);
        } else if (!strcmp(action, "show")) {
                const char *want = a->argc > 1 ? a->argv[1] : NULL;
                bool found = false;
                for (size_t i = 0; want && i < n; i++) {
                        if (strcmp(v[i].tag, want) && (!v[i].key || strcmp(v[i].key, want)))
                                continue;
                        printf("tag      %s\nmanifest %s\nkey      %s\nlayer    %s\nblob     %s (%lld bytes)\ncreated  %s\n",
                               v[i].tag, v[i].digest.str, v[i].key ? v[i].key : "-",
                               v[i].layer ? v[i].layer : "-", v[i].blob, v[i].size,
                               v[i].created ? v[i].created : "-");
                        if (v[i].inputs) {
                                json_t *j = json_loads(v[i].inputs, 0, NULL);
                                char *pretty = j ? json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
                                printf("inputs   %s\n", pretty ? pretty : v[i].inputs);
                                free(pretty);
                                json_decref(j);
                        }
                        found = true;
                }
                if (!found) {
                        kiln_error_set(&err, KILN_E_NOT_FOUND, "no cache entry '%s' in '%s'",
                                       want ? want : "", repo);
                        rc = cli_fail(&err);
                }
        } else if (!strcmp(action, "prune")) {
                unsigned removed = 0;
                char cutoff[64] = "";
                if (keep < 0 && older < 0) {
                        rc = cli_usage("cache", "prune needs --keep N or --older-than AGE");
                        goto out;
                }
                if (older >= 0) {
                        time_t t = time(NULL) - (time_t)older;
                        struct tm tm;
                        gmtime_r(&t, &tm);
                        strftime(cutoff, sizeof(cutoff), "%Y-%m-%dT%H:%M:%SZ", &tm);
                }
                for (size_t i = 0; i < n; i++) {
                        bool drop = (keep >= 0 && (long long)i >= keep) ||
                                    (cutoff[0] && v[i].created && strcmp(v[i].created, cutoff) <= 0);
                        if (!drop)
                                continue;
                        if (reg_client_delete_manifest(c, &v[i].digest, &err) < 0) {
                                rc = cli_fail(&err);
                                goto out;
                        }
                        removed++;
                        if (!json)
                                printf("removed %s (%s)\n", v[i].tag, v[i].layer ? v[i].layer : "-");
                }
                printf("%u of %zu entries removed\n", removed, n);
        } else {
                rc = cli_usage("cache", "unknown action '%s': ls, show or prune", action);
        }
out:
        entries_free(v, n);
        reg_client_free(c);
        oci_place_release(&p);
        return rc;
}
