/* kiln inspect PLACE, kiln digest PLACE */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "cmd_registry.h"
#include "json.h"
#include "model.h"
#include "util.h"

/* Everything below that comes from the image is escaped (cli_put_text):
 * labels, env, annotations and names are the image author's text. */
static void field(const char *label, const char *value)
{
        printf("%-12s", label);
        cli_put_text(value, stdout);
        putchar('\n');
}

static void print_strings(const char *label, json_t *arr)
{
        size_t i;
        json_t *v;

        if (!json_is_array(arr) || json_array_size(arr) == 0)
                return;
        printf("%-12s", label);
        json_array_foreach(arr, i, v)
        {
                if (i)
                        putchar(' ');
                cli_put_text(json_string_value(v), stdout);
        }
        putchar('\n');
}

static void print_pairs(const char *label, json_t *obj)
{
        const char *k;
        json_t *v;
        size_t i = 0;

        json_object_foreach(obj, k, v)
        {
                printf("%-12s", i++ ? "" : label);
                cli_put_text(k, stdout);
                putchar('=');
                cli_put_text(json_string_value(v), stdout);
                putchar('\n');
        }
}

static void print_summary(const char *name, const struct oci_fetched *top,
                          const struct oci_manifest *m, const struct oci_config *c)
{
        json_t *cfg = c ? json_object_get(c->json, "config") : NULL;
        json_t *v;
        size_t i;
        char sz[32];
        long long total = 0;

        field("Name:", name);
        field("Digest:", top->desc.digest.str);
        field("MediaType:", top->media_type);
        if (c) {
                printf("%-12s", "Platform:");
                cli_put_text(c->os, stdout);
                putchar('/');
                cli_put_text(c->architecture, stdout);
                if (c->variant) {
                        putchar('/');
                        cli_put_text(c->variant, stdout);
                }
                putchar('\n');
        }
        if (c && json_string_value(json_object_get(c->json, "created")))
                field("Created:", json_string_value(json_object_get(c->json, "created")));
        printf("%-12s%s ", "Config:", m->config.digest.str);
        cli_put_text(m->config.media_type, stdout);
        putchar('\n');
        for (i = 0; i < m->n_layers; i++)
                total += m->layers[i].size;
        cli_format_size(total, sz, sizeof(sz));
        printf("%-12s%zu (%s)\n", "Layers:", m->n_layers, sz);
        for (i = 0; i < m->n_layers; i++) {
                cli_format_size(m->layers[i].size, sz, sizeof(sz));
                printf("  %s  %10s  ", m->layers[i].digest.str, sz);
                cli_put_text(m->layers[i].media_type, stdout);
                putchar('\n');
        }
        if (cfg) {
                const char *wd = json_string_value(json_object_get(cfg, "WorkingDir"));
                const char *user = json_string_value(json_object_get(cfg, "User"));
                json_array_foreach(json_object_get(cfg, "Env"), i, v)
                        field(i ? "" : "Env:", json_string_value(v));
                print_strings("Entrypoint:", json_object_get(cfg, "Entrypoint"));
                print_strings("Cmd:", json_object_get(cfg, "Cmd"));
                if (wd && *wd)
                        field("WorkingDir:", wd);
                if (user && *user)
                        field("User:", user);
        }
        print_pairs("Labels:", json_object_get(cfg, "Labels"));
        print_pairs("Annotations:", m->annotations);
}

static void print_index_summary(const char *name, const struct oci_fetched *top,
                                const struct oci_index *x)
{
        field("Name:", name);
        field("Digest:", top->desc.digest.str);
        field("MediaType:", top->media_type);
        printf("%-12s%zu\n", "Manifests:", x->n_manifests);
        for (size_t i = 0; i < x->n_manifests; i++) {
                const struct oci_descriptor *d = &x->manifests[i];
                _cleanup_free_ char *line = kiln_strdupf(
                    "%s/%s%s%s  %s", d->has_platform ? d->platform.os : "-",
                    d->has_platform ? d->platform.architecture : "-",
                    d->has_platform && d->platform.variant ? "/" : "",
                    d->has_platform && d->platform.variant ? d->platform.variant : "",
                    d->media_type);
                printf("  %s  ", d->digest.str);
                cli_put_text(line, stdout);
                putchar('\n');
        }
}

static int write_raw(const char *buf, size_t len)
{
        if (fwrite(buf, 1, len, stdout) != len)
                return EXIT_IO;
        return EXIT_OK;
}

int cmd_inspect(struct cli_args *a)
{
        struct kiln_error err = KILN_ERROR_INIT;
        _cleanup_(oci_store_freep) struct oci_store *st = NULL;
        _cleanup_(oci_manifest_freep) struct oci_manifest *m = NULL;
        _cleanup_(oci_config_freep) struct oci_config *c = NULL;
        _cleanup_free_ char *cfgbuf = NULL;
        struct oci_fetched top = {0};
        struct oci_platform plat = a->platform;
        bool raw = cli_flag(a, 'r'), config = cli_flag(a, 'c'), json = cli_flag(a, 'j');
        bool have_plat = a->has_platform;
        size_t cfglen = 0;
        int rc = EXIT_OK;

        if (a->argc != 1)
                return cli_usage("inspect", "expected one PLACE");
        st = cli_open_place(a, a->argv[0], false, &err);
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
                                       plat.architecture, a->argv[0]);
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
                        print_index_summary(a->argv[0], &top, x);
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
                json_object_set_new(o, "name", json_string(a->argv[0]));
                json_object_set_new(o, "digest", json_string(top.desc.digest.str));
                json_object_set_new(o, "mediaType", json_string(top.media_type));
                json_object_set(o, "manifest", m->json);
                json_object_set_new(o, "config", cj);
                s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
                printf("%s\n", s ? s : "{}");
                free(s);
                json_decref(o);
        } else {
                print_summary(a->argv[0], &top, m, c);
        }
        goto out;
fail:
        rc = cli_fail(&err);
out:
        oci_fetched_release(&top);
        return rc;
}

int cmd_digest(struct cli_args *a)
{
        struct kiln_error err = KILN_ERROR_INIT;
        _cleanup_(oci_store_freep) struct oci_store *st = NULL;
        struct oci_fetched top = {0};

        if (a->argc != 1)
                return cli_usage("digest", "expected one PLACE");
        st = cli_open_place(a, a->argv[0], false, &err);
        if (!st || oci_store_fetch(st, NULL, &top, &err) < 0)
                return cli_fail(&err);
        printf("%s\n", top.desc.digest.str);
        oci_fetched_release(&top);
        return EXIT_OK;
}
