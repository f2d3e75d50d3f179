/* kiln config PLACE [--env K=V] [--entrypoint E] [--cmd C] [--workdir D] [--user U]
 *                   [--label K=V] -t DST */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmd_layers.h"
#include "json.h"
#include "util.h"

/* '["a","b"]' is an exec array; any other text is one argument; '' clears. */
static json_t *parse_argv(const char *s, struct kiln_error *err)
{
        json_t *j;
        size_t i;
        json_t *v;

        if (!*s)
                return json_null();
        if (s[0] != '[')
                return json_pack("[s]", s);
        j = oci_json_parse(s, strlen(s), "command line", err);
        if (!j)
                return NULL;
        if (!json_is_array(j)) {
                json_decref(j);
                kiln_error_set(err, KILN_E_USAGE, "invalid command '%s': not a JSON array", s);
                return NULL;
        }
        json_array_foreach(j, i, v) if (!json_is_string(v))
        {
                json_decref(j);
                kiln_error_set(err, KILN_E_USAGE,
                               "invalid command '%s': every element must be a string", s);
                return NULL;
        }
        return j;
}

static int set_env(json_t *cfg, const char *kv, struct kiln_error *err)
{
        const char *eq = strchr(kv, '=');
        json_t *env = json_object_get(cfg, "Env"), *v;
        size_t i;

        if (!eq || eq == kv)
                return kiln_error_set(err, KILN_E_USAGE,
                                      "invalid environment variable '%s': use K=V", kv);
        if (!json_is_array(env)) {
                env = json_array();
                json_object_set_new(cfg, "Env", env);
        }
        json_array_foreach(env, i, v)
        {
                const char *s = json_string_value(v);
                if (s && !strncmp(s, kv, (size_t)(eq - kv) + 1))
                        return json_array_set_new(env, i, json_string(kv));
        }
        return json_array_append_new(env, json_string(kv));
}

static int set_label(json_t *cfg, const char *kv, struct kiln_error *err)
{
        const char *eq = strchr(kv, '=');
        json_t *labels = json_object_get(cfg, "Labels");
        _cleanup_free_ char *k = NULL;

        if (!eq || eq == kv)
                return kiln_error_set(err, KILN_E_USAGE, "invalid label '%s': use K=V", kv);
        k = strndup(kv, (size_t)(eq - kv));
        if (!k)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (!json_is_object(labels)) {
                labels = json_object();
                json_object_set_new(cfg, "Labels", labels);
        }
        json_object_set_new(labels, k, json_string(eq + 1));
        /* labels in byte-wise order, whatever the order of the options */
        json_object_set_new(cfg, "Labels", oci_json_sorted_object(labels));
        return 0;
}

int cmd_config(struct cli_args *a)
{
        struct kiln_error err = KILN_ERROR_INIT;
        _cleanup_(oci_store_freep) struct oci_store *src = NULL;
        _cleanup_(oci_store_freep) struct oci_store *dst = NULL;
        struct cli_image img = {0};
        const char *tag = cli_arg(a, 't');
        json_t *c, *hist, *h;
        struct oci_digest digest;
        int rc = EXIT_OK;

        if (a->argc != 1)
                return cli_usage("config", "expected one PLACE");
        if (!tag)
                return cli_usage("config", "missing -t DST");
        /* the place is loaded before the edits apply */
        src = cli_open_place(a, a->argv[0], false, &err);
        if (!src || cli_image_load(src, a->has_platform ? &a->platform : NULL, &img, &err) < 0)
                goto fail;
        c = json_object_get(img.config, "config");
        if (!json_is_object(c)) {
                c = json_object();
                json_object_set_new(img.config, "config", c);
        }
        cli_foreach_value(a, o)
        {
                const char *arg = o->arg;
                json_t *v;
                switch (o->opt->key) {
                case 'e':
                        if (set_env(c, arg, &err) < 0)
                                goto fail;
                        break;
                case 'E':
                case 'c':
                        v = parse_argv(arg, &err);
                        if (!v)
                                goto fail;
                        json_object_set_new(c, o->opt->key == 'E' ? "Entrypoint" : "Cmd", v);
                        break;
                case 'w':
                        json_object_set_new(c, "WorkingDir", json_string(arg));
                        break;
                case 'u':
                        json_object_set_new(c, "User", json_string(arg));
                        break;
                case 'l':
                        if (set_label(c, arg, &err) < 0)
                                goto fail;
                        break;
                default:
                        break;
                }
        }
        hist = json_object_get(img.config, "history");
        if (!json_is_array(hist)) {
                hist = json_array();
                json_object_set_new(img.config, "history", hist);
        }
        h = json_object();
        json_object_set_new(h, "created_by", json_string("kiln config"));
        json_object_set_new(h, "empty_layer", json_true());
        json_array_append_new(hist, h);
        dst = cli_open_place(a, tag, true, &err);
        if (!dst || cli_copy_blobs(src, dst, img.m->layers, img.m->n_layers, &err) < 0 ||
            cli_image_write(dst, img.config, img.m->layers, img.m->n_layers, &digest, &err) < 0)
                goto fail;
        printf("%s\n", digest.str);
        goto out;
fail:
        rc = cli_fail(&err);
out:
        cli_image_release(&img);
        return rc;
}
