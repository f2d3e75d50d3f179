/* kiln inspect PLACE, kiln digest PLACE */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "cmd_registry.h"
#include "json.h"
#include "model.h"
#include "util.h"

static const char *str_or_empty(const char *s)
{
        return s ? s : "";
}

static void print_strings(const char *label, json_t *arr)
{
        size_t i;
        json_t *v;

        if (!json_is_array(arr) || json_array_size(arr) == 0)
                return;
        printf("%-12s", label);
        json_array_foreach(arr, i, v) printf("%s%s", i ? " " : "", str_or_empty(json_string_value(v)));
        printf("\n");
}

static void print_summary(const char *name, const struct oci_fetched *top,
                          const struct oci_manifest *m, const struct oci_config *c)
{
        json_t *cfg = c ? json_object_get(c->json, "config") : NULL;
        json_t *labels = json_object_get(cfg, "Labels");
        const char *k;
        json_t *v;
        size_t i;
        char sz[32];
        long long total = 0;

        printf("%-12s%s\n", "Name:", name);
        printf("%-12s%s\n", "Digest:", top->desc.digest.str);
        printf("%-12s%s\n", "MediaType:", top->media_type);
        if (c)
                printf("%-12s%s/%s%s%s\n", "Platform:", c->os, c->architecture,
                       c->variant ? "/" : "", c->variant ? c->variant : "");
        if (c && json_string_value(json_object_get(c->json, "created")))
                printf("%-12s%s\n", "Created:",
                       json_string_value(json_object_get(c->json, "created")));
        printf("%-12s%s %s\n", "Config:", m->config.digest.str, m->config.media_type);
        for (i = 0; i < m->n_layers; i++)
                total += m->layers[i].size;
        cli_format_size(total, sz, sizeof(sz));
        printf("%-12s%zu (%s)\n", "Layers:", m->n_layers, sz);
        for (i = 0; i < m->n_layers; i++) {
                cli_format_size(m->layers[i].size, sz, sizeof(sz));
                printf("  %s  %10s  %s\n", m->layers[i].digest.str, sz, m->layers[i].media_type);
        }
        if (cfg) {
                json_t *env = json_object_get(cfg, "Env");
                json_array_foreach(env, i, v) printf("%-12s%s\n", i ? "" : "Env:",
                                                     str_or_empty(json_string_value(v)));
                print_strings("Entrypoint:", json_object_get(cfg, "Entrypoint"));
                print_strings("Cmd:", json_object_get(cfg, "Cmd"));
                if (json_string_value(json_object_get(cfg, "WorkingDir")) &&
                    *json_string_value(json_object_get(cfg, "WorkingDir")))
                        printf("%-12s%s\n", "WorkingDir:",
                               json_string_value(json_object_get(cfg, "WorkingDir")));
                if (json_string_value(json_object_get(cfg, "User")) &&
                    *json_string_value(json_object_get(cfg, "User")))
                        printf("%-12s%s\n", "User:",
                               json_string_value(json_object_get(cfg, "User")));
        }
        i = 0;
        json_object_foreach(labels, k, v) printf("%-12s%s=%s\n", i++ ? "" : "Labels:", k,
                                                 str_or_empty(json_string_value(v)));
        i = 0;
        json_object_foreach(m->annotations, k, v) printf("%-12s%s=%s\n",
                                                         i++ ? "" : "Annotations:", k,
                                                         str_or_empty(json_string_value(v)));
}

static void print_index_summary(const char *name, const struct oci_fetched *top,
                                const struct oci_index *x)
{
        printf("%-12s%s\n", "Name:", name);
        printf("%-12s%s\n", "Digest:", top->desc.digest.str);
        printf("%-12s%s\n", "MediaType:", top->media_type);
        printf("%-12s%zu\n", "Manifests:", x->n_manifests);
        for (size_t i = 0; i < x->n_manifests; i++) {
                const struct oci_descriptor *d = &x->manifests[i];
                printf("  %s  %s/%s%s%s  %s\n", d->digest.str,
                       d->has_platform ? d->platform.os : "-",
                       d->has_platform ? d->platform.architecture : "-",
                       d->has_platform && d->platform.variant ? "/" : "",
                       d->has_platform && d->platform.variant ? d->platform.variant : "",
                       d->media_type);
        }
}

static int write_raw(const char *buf, size_t len)
{
        if (fwrite(buf, 1, len, stdout) != len)
                return EXIT_IO;
        return EXIT_OK;
}

int cmd_inspect(int argc, char **argv)
{
        static const struct option opts[] = {
                {"raw", no_argument, NULL, 'r'},
                {"config", no_argument, NULL, 'c'},
                {"json", no_argument, NULL, 'j'},
                {"platform", required_argument, NULL, 'p'},
                CLI_REG_OPTIONS,
                CLI_HELP_OPTION,
                {NULL, 0, NULL, 0},
        };
        struct kiln_error err = KILN_ERROR_INIT;
        _cleanup_(oci_store_freep) struct oci_store *st = NULL;
        _cleanup_(oci_manifest_freep) struct oci_manifest *m = NULL;
        _cleanup_(oci_config_freep) struct oci_config *c = NULL;
        _cleanup_free_ char *cfgbuf = NULL, *platbuf = NULL;
        struct oci_fetched top = {0};
        struct oci_platform plat;
        bool raw = false, config = false, json = false, have_plat = false;
        size_t cfglen = 0;
        int opt, rc = EXIT_OK;

        optind = 1;
        while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (opt) {
                case 'r': raw = true; break;
                case 'c': config = true; break;
                case 'j': json = true; break;
                case 'p':
                        free(platbuf);
                        platbuf = strdup(optarg);
                        if (!platbuf || oci_platform_parse(platbuf, &plat, &err) < 0)
                                return cli_fail(&err);
                        have_plat = true;
                        break;
                case 'h': return cli_help_verb("inspect");
                default: {
                        int r = cli_reg_option("inspect", opt, optarg);
                        if (r < 0)
                                return EXIT_USAGE;
                        if (r == 0)
                                return cli_usage("inspect", "invalid option");
                }
                }
        }
        if (optind + 1 != argc)
                return cli_usage("inspect", "expected one PLACE");
        st = cli_open_place(argv[optind], false, &err);
        if (!st)
                return cli_fail(&err);
        if (oci_store_fetch(st, NULL, &top, &err) < 0)
                return cli_fail(&err);
        if (top.kind == OCI_DOC_INDEX && (have_plat || config)) {
                struct oci_index *x = NULL;
                const struct oci_descriptor *d;
                struct oci_fetched child = {0};
                if (!have_plat)
                        oci_platform_host(&plat);
                if (oci_index_parse(top.buf, top.len, top.media_type, &x, &err) < 0)
                        goto fail;
                d = oci_index_select(x, &plat);
                if (!d) {
                        kiln_error_set(&err, KILN_E_NOT_FOUND,
                                       "no image for platform '%s/%s' in '%s'", plat.os,
                                       plat.architecture, argv[optind]);
                        oci_index_free(x);
                        goto fail;
                }
                if (oci_store_fetch_desc(st, d, &child, &err) < 0) {
                        oci_index_free(x);
                        goto fail;
                }
                oci_index_free(x);
                oci_fetched_release(&top);
                top = child;
        }
        if (raw && !config) {
                rc = write_raw(top.buf, top.len);
                goto out;
        }
        if (top.kind == OCI_DOC_INDEX) {
                struct oci_index *x = NULL;
                if (oci_index_parse(top.buf, top.len, top.media_type, &x, &err) < 0)
                        goto fail;
                if (json)
                        rc = write_raw(top.buf, top.len);
                else
                        print_index_summary(argv[optind], &top, x);
                oci_index_free(x);
                goto out;
        }
        if (oci_manifest_parse(top.buf, top.len, top.media_type, &m, &err) < 0)
                goto fail;
        if (oci_store_read_blob(st, &m->config, OCI_CONFIG_MAX, &cfgbuf, &cfglen, &err) < 0)
                goto fail;
        if (config) {
                rc = write_raw(cfgbuf, cfglen);
                if (!raw)
                        putchar('\n');
                goto out;
        }
        if (oci_media_type_is_config(m->config.media_type) &&
            oci_config_parse(cfgbuf, cfglen, &c, &err) < 0)
                goto fail;
        if (json) {
                json_t *o = json_object();
                json_t *cj = c ? json_incref(c->json) : json_null();
                char *s;
                json_object_set_new(o, "name", json_string(argv[optind]));
                json_object_set_new(o, "digest", json_string(top.desc.digest.str));
                json_object_set_new(o, "mediaType", json_string(top.media_type));
                json_object_set(o, "manifest", m->json);
                json_object_set_new(o, "config", cj);
                s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
                printf("%s\n", s ? s : "{}");
                free(s);
                json_decref(o);
        } else {
                print_summary(argv[optind], &top, m, c);
        }
        goto out;
fail:
        rc = cli_fail(&err);
out:
        oci_fetched_release(&top);
        return rc;
}

int cmd_digest(int argc, char **argv)
{
        static const struct option opts[] = {CLI_REG_OPTIONS, CLI_HELP_OPTION, {NULL, 0, NULL, 0}};
        struct kiln_error err = KILN_ERROR_INIT;
        _cleanup_(oci_store_freep) struct oci_store *st = NULL;
        struct oci_fetched top = {0};
        int opt;

        optind = 1;
        while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                int rc;
                if (opt == 'h')
                        return cli_help_verb("digest");
                rc = cli_reg_option("digest", opt, optarg);
                if (rc < 0)
                        return EXIT_USAGE;
                if (rc == 0)
                        return cli_usage("digest", "invalid option");
        }
        if (optind + 1 != argc)
                return cli_usage("digest", "expected one PLACE");
        st = cli_open_place(argv[optind], false, &err);
        if (!st || oci_store_fetch(st, NULL, &top, &err) < 0)
                return cli_fail(&err);
        printf("%s\n", top.desc.digest.str);
        oci_fetched_release(&top);
        return EXIT_OK;
}
