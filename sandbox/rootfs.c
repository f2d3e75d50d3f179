/* Unpacked layers for overlayfs, one directory per diffID (rootfs.h). */
#include "rootfs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model.h"
#include "unpack.h"
#include "util.h"

/* A reader that hashes what passes through it into an outside hasher (the
 * unpacker takes the reader over and frees it; the sum stays). */
struct hashing_reader {
        struct oci_reader base;
        struct oci_reader *inner;
        struct oci_hasher *h;
};

static ssize_t hashing_read(struct oci_reader *r, void *buf, size_t len, struct kiln_error *err)
{
        struct hashing_reader *hr = (struct hashing_reader *)r;
        ssize_t n = oci_reader_read(hr->inner, buf, len, err);

        if (n > 0)
                oci_hasher_update(hr->h, buf, (size_t)n);
        return n;
}

static void hashing_free(struct oci_reader *r)
{
        struct hashing_reader *hr = (struct hashing_reader *)r;

        oci_reader_free(hr->inner);
        free(hr);
}

static struct oci_reader *hashing_reader_new(struct oci_reader *inner, struct oci_hasher *h,
                                             struct kiln_error *err)
{
        struct hashing_reader *hr = calloc(1, sizeof(*hr));

        if (!hr) {
                oci_reader_free(inner);
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        hr->base.read = hashing_read;
        hr->base.free = hashing_free;
        hr->inner = inner;
        hr->h = h;
        return &hr->base;
}

static int unpack_verified(const char *tmp, const struct oci_digest *diff_id,
                           const char *media_type, struct oci_reader *blob, struct kiln_error *err)
{
        struct layer_unpack_opts uo;
        struct layer_unpacker *u = NULL;
        struct oci_hasher h;
        struct oci_digest got;
        struct oci_reader *plain;
        char what[160];
        int rc = -1;

        if (oci_hasher_init(&h, diff_id->alg, err) < 0) {
                oci_reader_free(blob);
                return -1;
        }
        layer_unpack_opts_init(&uo);
        uo.rootless = true; /* every file the caller's: uid 0 inside */
        uo.overlay_whiteouts = true;
        snprintf(what, sizeof(what), "layer '%s'", diff_id->str);
        plain = layer_decompress_reader_new(blob, media_type ? oci_media_type_compression(media_type)
                                                             : OCI_COMPRESSION_UNKNOWN,
                                            uo.max_size, err);
        plain = plain ? hashing_reader_new(plain, &h, err) : NULL;
        u = plain ? layer_unpacker_new(tmp, &uo, err) : NULL;
        if (!u) {
                oci_reader_free(plain);
                goto out;
        }
        if (layer_unpacker_apply(u, plain, OCI_MT_LAYER, what, err) < 0 ||
            layer_unpacker_finish(u, err) < 0)
                goto out;
        oci_hasher_final(&h, &got);
        if (strcmp(got.str, diff_id->str)) {
                kiln_error_set(err, KILN_E_DIGEST, "layer '%s' unpacks to content %s", diff_id->str,
                               got.str);
                goto out;
        }
        rc = 0;
out:
        layer_unpacker_free(u);
        oci_hasher_release(&h);
        return rc;
}

int sandbox_rootfs_get(const char *cache_dir, const struct oci_digest *diff_id,
                       const char *media_type, sandbox_open_blob_fn open_blob, void *ctx,
                       char **ret_dir, bool *ret_unpacked, struct kiln_error *err)
{
        _cleanup_free_ char *base = kiln_strdupf("%s/rootfs", cache_dir);
        _cleanup_free_ char *final = kiln_strdupf("%s/rootfs/%s", cache_dir, oci_digest_hex(diff_id));
        _cleanup_free_ char *tmp = kiln_strdupf("%s/rootfs/.tmp-%.16s-XXXXXX", cache_dir,
                                                oci_digest_hex(diff_id));
        struct oci_reader *blob;
        struct stat st;

        if (!base || !final || !tmp)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (ret_unpacked)
                *ret_unpacked = false;
        if (stat(final, &st) == 0 && S_ISDIR(st.st_mode)) {
                *ret_dir = steal_ptr(&final);
                return 0;
        }
        if (kiln_mkdir_p(base, 0700, err) < 0)
                return -1;
        if (!mkdtemp(tmp))
                return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create '%s'", tmp);
        blob = open_blob(ctx, err);
        if (!blob || unpack_verified(tmp, diff_id, media_type, blob, err) < 0) {
                kiln_rm_rf(tmp);
                return -1;
        }
        /* lower directories are read through overlayfs: 0755 so a step
         * running as another user inside still sees the tree */
        chmod(tmp, 0755);
        if (rename(tmp, final) < 0) {
                int e = errno;
                kiln_rm_rf(tmp);
                /* another build got there first: its directory is as good */
                if (!((e == EEXIST || e == ENOTEMPTY) && stat(final, &st) == 0))
                        return kiln_error_set_errno(err, KILN_E_IO, e, "cannot move '%s' to '%s'",
                                                    tmp, final);
        }
        kiln_fsync_dir(base, NULL);
        if (ret_unpacked)
                *ret_unpacked = true;
        *ret_dir = steal_ptr(&final);
        return 0;
}

struct store_blob {
        struct oci_store *st;
        const struct oci_descriptor *d;
};

static struct oci_reader *open_store_blob(void *ctx, struct kiln_error *err)
{
        struct store_blob *b = ctx;

        return b->st->ops->open_blob(b->st, b->d, err);
}

void sandbox_dirs_free(char **dirs, size_t n)
{
        for (size_t i = 0; dirs && i < n; i++)
                free(dirs[i]);
        free(dirs);
}

int sandbox_rootfs_image(const char *cache_dir, struct oci_store *st,
                         const struct oci_image *img, char ***ret_dirs, size_t *ret_n,
                         struct kiln_error *err)
{
        json_t *ids = json_object_get(json_object_get(img->config, "rootfs"), "diff_ids");
        size_t n = img->m->n_layers;
        char **dirs;

        if (json_array_size(ids) != n)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "config lists %zu diff_ids for %zu layers", json_array_size(ids),
                                      n);
        dirs = calloc(n + 1, sizeof(*dirs));
        if (!dirs)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
                struct store_blob b = {.st = st, .d = &img->m->layers[i]};
                struct oci_digest id;
                if (oci_digest_parse(json_string_value(json_array_get(ids, i)), &id, err) < 0 ||
                    sandbox_rootfs_get(cache_dir, &id, img->m->layers[i].media_type,
                                       open_store_blob, &b, &dirs[n - 1 - i], NULL, err) < 0) {
                        kiln_error_prefix(err, "layer %zu", i + 1);
                        sandbox_dirs_free(dirs, n);
                        return -1;
                }
        }
        *ret_dirs = dirs;
        *ret_n = n;
        return 0;
}

int sandbox_rootfs_prune(const char *cache_dir, struct kiln_error *err)
{
        _cleanup_free_ char *dir = kiln_strdupf("%s/rootfs", cache_dir);

        if (!dir)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        kiln_rm_rf(dir);
        if (access(dir, F_OK) == 0)
                return kiln_error_set(err, KILN_E_IO, "cannot remove '%s'", dir);
        return 0;
}
