/* kiln flatten PLACE -t DST: the image's layers squashed into one.
 *
 * The layers are applied to a private temp directory with the safe unpacker
 * (whiteouts resolved), and the tree is written back as one deterministic
 * layer.  As root, owners are kept; unprivileged, files belong to root in
 * the result and devices are dropped (with the unpacker's warnings). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cmd_layers.h"
#include "image_edit.h"
#include "io.h"
#include "json.h"
#include "layout.h"
#include "source.h"
#include "unpack.h"
#include "util.h"
#include "writer.h"

static void on_warn(void *ctx, const char *msg)
{
        (void)ctx;
        cli_warn("%s", msg);
}

static int squash(struct oci_store *src, const struct oci_image *img, const char *tmp,
                  const struct layer_writer_opts *wo, struct layer_result *res,
                  struct oci_layout **ret_layout, struct kiln_error *err)
{
        _cleanup_free_ char *rootfs = kiln_strdupf("%s/rootfs", tmp);
        _cleanup_free_ char *lay = kiln_strdupf("%s/layout", tmp);
        _cleanup_(layer_source_freep) struct layer_source *s = NULL;
        struct layer_unpack_opts uo;
        struct layer_unpacker *u;
        struct oci_layout *l = NULL;
        struct oci_writer *blob = NULL;
        struct layer_writer *w = NULL;
        int rc = -1;

        if (!rootfs || !lay)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        layer_unpack_opts_init(&uo);
        uo.warn = on_warn;
        u = layer_unpacker_new(rootfs, &uo, err);
        if (!u)
                return -1;
        for (size_t i = 0; i < img->m->n_layers; i++) {
                const struct oci_descriptor *d = &img->m->layers[i];
                struct oci_reader *r = src->ops->open_blob(src, d, err);
                char what[200];

                snprintf(what, sizeof(what), "layer %zu '%s'", i + 1, d->digest.str);
                if (!r || layer_unpacker_apply(u, r, d->media_type, what, err) < 0) {
                        layer_unpacker_free(u);
                        return -1;
                }
        }
        rc = layer_unpacker_finish(u, err);
        layer_unpacker_free(u);
        if (rc < 0)
                return -1;
        rc = -1;
        s = layer_source_new(err);
        if (s)
                s->keep_modes = true; /* the image's modes, not a policy's */
        if (!s || layer_source_add_tree(s, rootfs, "/", NULL, 0, err) < 0 ||
            layer_source_finish(s, err) < 0)
                return -1;
        l = oci_layout_open(lay, true, err);
        blob = l ? oci_layout_blob_writer_new(l, OCI_DIGEST_SHA256, err) : NULL;
        w = blob ? layer_writer_new(blob, wo, err) : NULL;
        if (w && layer_source_write(s, w, NULL, err) == 0 &&
            layer_writer_finish(w, res, err) == 0 &&
            oci_layout_blob_writer_commit(blob, &res->digest, res->size, NULL, NULL, err) == 0)
                rc = 0;
        layer_writer_free(w);
        oci_writer_free(blob);
        if (rc == 0)
                *ret_layout = l;
        else
                oci_layout_free(l);
        return rc;
}

int cmd_flatten(struct cli_args *a)
{
        struct kiln_error err = KILN_ERROR_INIT;
        _cleanup_(oci_store_freep) struct oci_store *src = NULL;
        _cleanup_(oci_store_freep) struct oci_store *dst = NULL;
        _cleanup_(oci_image_edit_freep) struct oci_image_edit *edit = NULL;
        _cleanup_free_ char *tmp = NULL;
        struct oci_layout *l = NULL;
        struct oci_image img = {0};
        struct layer_writer_opts wo;
        struct layer_result res;
        struct oci_descriptor d = {0}, md;
        const char *tag = cli_arg(a, 't');
        int rc = EXIT_OK;

        if (layer_writer_opts_init(&wo, &err) < 0)
                return cli_fail(&err);
        wo.keep_owners = geteuid() == 0;
        cli_writer_opts(a, &wo);
        if (a->argc != 1)
                return cli_usage("flatten", "expected one PLACE");
        if (!tag)
                return cli_usage("flatten", "missing -t DST");
        src = cli_open_place(a, a->argv[0], false, &err);
        if (!src || oci_image_load(src, NULL, a->has_platform ? &a->platform : NULL, &img, &err) < 0)
                goto fail;
        edit = oci_image_edit_new_from(&img, &err);
        if (!edit)
                goto fail;
        tmp = kiln_strdupf("%s/kiln-flatten-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        if (!tmp || !mkdtemp(tmp)) {
                kiln_error_set_errno(&err, KILN_E_IO, errno, "cannot create a temp directory");
                free(tmp);
                tmp = NULL;
                goto fail;
        }
        if (squash(src, &img, tmp, &wo, &res, &l, &err) < 0)
                goto fail;
        d.media_type = res.media_type;
        d.digest = res.digest;
        d.size = res.size;
        d.annotations = json_pack("{s:s}", LAYER_COMPRESSION_ANNOTATION, res.compressor);
        dst = cli_open_place(a, tag, true, &err);
        if (!dst)
                goto fail;
        {
                struct oci_reader *r = oci_layout_blob_open(l, &res.digest, res.size, &err);
                if (!r || dst->ops->put_blob(dst, &d, r, &err) < 0)
                        goto fail;
        }
        /* one layer, one history entry: the image's own are gone */
        oci_image_edit_clear_layers(edit);
        if (oci_image_edit_add_layer(edit, &d, &res.diff_id,
                                     &(struct oci_history){.created_by = "kiln flatten"},
                                     &err) < 0 ||
            oci_image_edit_write(edit, dst, (const char *const[]){NULL}, 1, &md, &err) < 0 ||
            oci_store_commit(dst, &err) < 0)
                goto fail;
        printf("%s\n", md.digest.str);
        goto out;
fail:
        rc = cli_fail(&err);
out:
        oci_layout_free(l);
        if (tmp)
                kiln_rm_rf(tmp);
        json_decref(d.annotations);
        oci_image_release(&img);
        return rc;
}
