#include "tar_read.h"

#include <archive.h>
#include <errno.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "model.h"
#include "util.h"

struct layer_tar_reader {
        struct archive *a;
        struct oci_reader *blob;
        struct kiln_error blob_err; /* an error from the blob stream */
        char *name;
        const char *media_type;
        enum oci_compression want;
        bool checked_filter, failed;
        char buf[256 * 1024];
};

static la_ssize_t read_cb(struct archive *a, void *ctx, const void **ret)
{
        struct layer_tar_reader *r = ctx;
        ssize_t n = oci_reader_read(r->blob, r->buf, sizeof(r->buf), &r->blob_err);

        (void)a;
        if (n < 0) {
                r->failed = true;
                archive_set_error(a, EIO, "%s", r->blob_err.msg);
                return -1;
        }
        *ret = r->buf;
        return n;
}

static int fail_from_archive(struct layer_tar_reader *r, struct kiln_error *err)
{
        if (r->failed && err) {
                *err = r->blob_err;
                return -1;
        }
        return kiln_error_set(err, KILN_E_INVALID, "invalid layer '%s': %s", r->name,
                              archive_error_string(r->a) ? archive_error_string(r->a)
                                                         : "unreadable tar");
}

struct layer_tar_reader *layer_tar_reader_new(struct oci_reader *blob, const char *media_type,
                                              const char *name, struct kiln_error *err)
{
        struct layer_tar_reader *r = calloc(1, sizeof(*r));

        if (!r || !(r->name = strdup(name))) {
                free(r);
                oci_reader_free(blob);
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        r->blob = blob;
        r->media_type = media_type;
        r->want = oci_media_type_compression(media_type);
        r->a = archive_read_new();
        archive_read_support_format_tar(r->a);
        archive_read_support_format_gnutar(r->a);
        archive_read_support_filter_gzip(r->a);
        archive_read_support_filter_zstd(r->a);
        archive_read_support_filter_none(r->a);
        if (archive_read_open(r->a, r, NULL, read_cb, NULL) != ARCHIVE_OK) {
                fail_from_archive(r, err);
                layer_tar_reader_free(r);
                return NULL;
        }
        return r;
}

static const char *filter_name(int code)
{
        switch (code) {
        case ARCHIVE_FILTER_NONE: return "none";
        case ARCHIVE_FILTER_GZIP: return "gzip";
        case ARCHIVE_FILTER_ZSTD: return "zstd";
        default: return "other";
        }
}

static enum oci_compression filter_compression(int code)
{
        switch (code) {
        case ARCHIVE_FILTER_GZIP: return OCI_COMPRESSION_GZIP;
        case ARCHIVE_FILTER_ZSTD: return OCI_COMPRESSION_ZSTD;
        case ARCHIVE_FILTER_NONE: return OCI_COMPRESSION_NONE;
        default: return OCI_COMPRESSION_UNKNOWN;
        }
}

/* The compression found in the bytes must be the one the media type declares. */
static int check_filter(struct layer_tar_reader *r, struct kiln_error *err)
{
        int code = archive_filter_code(r->a, 0);

        if (r->want != OCI_COMPRESSION_UNKNOWN && filter_compression(code) != r->want)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "layer '%s' is declared '%s' (%s) but its bytes are %s",
                                      r->name, r->media_type, oci_compression_name(r->want),
                                      filter_name(code));
        return 0;
}

int layer_tar_reader_next(struct layer_tar_reader *r, struct archive_entry **ret_entry,
                          struct kiln_error *err)
{
        int rc = archive_read_next_header(r->a, ret_entry);

        if (!r->checked_filter && (rc == ARCHIVE_OK || rc == ARCHIVE_EOF)) {
                r->checked_filter = true;
                if (check_filter(r, err) < 0)
                        return -1;
        }
        if (rc == ARCHIVE_OK || rc == ARCHIVE_WARN)
                return 1;
        if (rc == ARCHIVE_EOF)
                return 0;
        return fail_from_archive(r, err);
}

ssize_t layer_tar_reader_data(struct layer_tar_reader *r, void *buf, size_t len,
                              struct kiln_error *err)
{
        la_ssize_t n = archive_read_data(r->a, buf, len);

        if (n < 0)
                return fail_from_archive(r, err);
        return n;
}

int layer_tar_reader_finish(struct layer_tar_reader *r, struct kiln_error *err)
{
        /* The blob's digest covers every byte, also those after the tar's end. */
        return oci_reader_drain(r->blob, err);
}

void layer_tar_reader_free(struct layer_tar_reader *r)
{
        if (!r)
                return;
        archive_read_free(r->a);
        oci_reader_free(r->blob);
        free(r->name);
        free(r);
}

int layer_blob_diff_id(struct oci_reader *blob, const char *media_type, const char *name,
                       struct oci_digest *ret, struct kiln_error *err)
{
        struct layer_tar_reader r = {0};
        struct archive_entry *e;
        struct oci_hasher h;
        char *buf;
        la_ssize_t n;
        int rc = -1;

        r.blob = blob;
        r.name = (char *)(uintptr_t)name;
        r.media_type = media_type;
        r.want = oci_media_type_compression(media_type);
        buf = malloc(256 * 1024);
        if (!buf || oci_hasher_init(&h, OCI_DIGEST_SHA256, err) < 0) {
                free(buf);
                oci_reader_free(blob);
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        r.a = archive_read_new();
        /* the raw format hands out the decompressed stream as it is */
        archive_read_support_format_raw(r.a);
        archive_read_support_filter_gzip(r.a);
        archive_read_support_filter_zstd(r.a);
        archive_read_support_filter_none(r.a);
        if (archive_read_open(r.a, &r, NULL, read_cb, NULL) != ARCHIVE_OK ||
            archive_read_next_header(r.a, &e) != ARCHIVE_OK) {
                /* an empty stream has no header: its diffID is that of no bytes */
                if (!r.failed && archive_errno(r.a) == 0) {
                        oci_hasher_final(&h, ret);
                        rc = oci_reader_drain(blob, err);
                        goto out;
                }
                fail_from_archive(&r, err);
                goto out;
        }
        if (check_filter(&r, err) < 0)
                goto out;
        while ((n = archive_read_data(r.a, buf, 256 * 1024)) > 0)
                oci_hasher_update(&h, buf, (size_t)n);
        if (n < 0) {
                fail_from_archive(&r, err);
                goto out;
        }
        oci_hasher_final(&h, ret);
        rc = oci_reader_drain(blob, err);
out:
        archive_read_free(r.a);
        oci_reader_free(blob);
        oci_hasher_release(&h);
        free(buf);
        return rc;
}
