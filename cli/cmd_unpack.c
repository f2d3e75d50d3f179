/* kiln unpack PLACE DIR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmd_layers.h"
#include "unpack.h"
#include "util.h"

static void on_warn(void *ctx, const char *msg)
{
        (void)ctx;
        cli_warn("%s", msg);
}

int cmd_unpack(struct cli_args *a)
{
        struct kiln_error err = KILN_ERROR_INIT;
        _cleanup_(oci_store_freep) struct oci_store *st = NULL;
        struct layer_unpack_opts uo;
        struct layer_unpacker *u = NULL;
        struct oci_image img = {0};
        int rc = EXIT_OK;

        layer_unpack_opts_init(&uo);
        uo.warn = on_warn;
        uo.max_size = cli_num(a, 'm', uo.max_size);
        uo.max_total = cli_num(a, 't', uo.max_total);
        uo.rootless = cli_flag(a, 'r');
        uo.no_openat2 = cli_flag(a, 'w');
        if (a->argc != 2)
                return cli_usage("unpack", "expected PLACE and DIR");
        st = cli_open_place(a, a->argv[0], false, &err);
        if (!st || oci_image_load(st, NULL, a->has_platform ? &a->platform : NULL, &img, &err) < 0)
                goto fail;
        u = layer_unpacker_new(a->argv[1], &uo, &err);
        if (!u)
                goto fail;
        for (size_t i = 0; i < img.m->n_layers; i++) {
                const struct oci_descriptor *d = &img.m->layers[i];
                struct oci_reader *r = st->ops->open_blob(st, d, &err);
                char what[200];

                snprintf(what, sizeof(what), "layer %zu '%s'", i + 1, d->digest.str);
                if (!r) {
                        kiln_error_prefix(&err, "%s", what);
                        goto fail;
                }
                if (layer_unpacker_apply(u, r, d->media_type, what, &err) < 0)
                        goto fail;
        }
        if (layer_unpacker_finish(u, &err) < 0)
                goto fail;
        goto out;
fail:
        rc = cli_fail(&err);
out:
        layer_unpacker_free(u);
        oci_image_release(&img);
        return rc;
}
