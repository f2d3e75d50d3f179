/* kiln config PLACE [--env K=V] [--entrypoint E] [--cmd C] [--workdir D] [--user U]
 *                   [--label K=V] -t DST */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmd_layers.h"
#include "image_edit.h"
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

/* --label K=V */
static int set_label(struct oci_image_edit *img, const char *kv, struct kiln_error *err)
{
        const char *eq = strchr(kv, '=');
        _cleanup_free_ char *k = NULL;

        if (!eq || eq == kv)
                return kiln_error_set(err, KILN_E_USAGE, "invalid label '%s': use K=V", kv);
        k = strndup(kv, (size_t)(eq - kv));
        if (!k)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        return oci_image_edit_set_label(img, k, eq + 1, err);
}

int cmd_config(struct cli_args *a)
{
        struct kiln_error err = KILN_ERROR_INIT;
        _cleanup_(oci_store_freep) struct oci_store *src = NULL;
        _cleanup_(oci_store_freep) struct oci_store *dst = NULL;
        _cleanup_(oci_image_edit_freep) struct oci_image_edit *img = NULL;
        const char *tag = cli_arg(a, 't');
        struct oci_descriptor md;
        int rc = EXIT_OK;

        if (a->argc != 1)
                return cli_usage("config", "expected one PLACE");
        if (!tag)
                return cli_usage("config", "missing -t DST");
        /* the place is loaded before the edits apply */
        src = cli_open_place(a, a->argv[0], false, &err);
        img = src ? oci_image_edit_load(src, NULL, a->has_platform ? &a->platform : NULL, &err)
                  : NULL;
        /* the config object, even when no option changes it */
        if (!img || oci_image_edit_merge_config(img, NULL, &err) < 0)
                goto fail;
        cli_foreach_value(a, o)
        {
                const char *arg = o->arg;
                switch (o->opt->key) {
                case 'e':
                        if (oci_image_edit_set_env(img, arg, &err) < 0)
                                goto fail;
                        break;
                case 'E':
                case 'c': {
                        json_t *v = parse_argv(arg, &err);
                        if (!v || oci_image_edit_set_field(img, o->opt->key == 'E' ? "Entrypoint"
                                                                                   : "Cmd",
                                                           v, &err) < 0)
                                goto fail;
                        break;
                }
                case 'w':
                        if (oci_image_edit_set_field(img, "WorkingDir", json_string(arg), &err) < 0)
                                goto fail;
                        break;
                case 'u':
                        if (oci_image_edit_set_field(img, "User", json_string(arg), &err) < 0)
                                goto fail;
                        break;
                case 'l':
                        if (set_label(img, arg, &err) < 0)
                                goto fail;
                        break;
                default:
                        break;
                }
        }
        dst = cli_open_place(a, tag, true, &err);
        /* the base's blobs, the config, the manifest, then the place's tag */
        if (!dst ||
            oci_image_edit_add_history(img, &(struct oci_history){.created_by = "kiln config"},
                                       &err) < 0 ||
            oci_image_edit_write(img, dst, (const char *const[]){NULL}, 1, &md, &err) < 0 ||
            oci_store_commit(dst, &err) < 0)
                goto fail;
        printf("%s\n", md.digest.str);
        goto out;
fail:
        rc = cli_fail(&err);
out:
        return rc;
}
