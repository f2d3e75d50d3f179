/* layers/unpack_decompress.c: the decompressing reader of a layer blob
 * (unpack.h: layer_decompress_reader_new). */
#include "unpack_internal.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

struct dz_reader {
        struct oci_reader base;
        struct oci_reader *inner;
        enum oci_compression c;
        int64_t max, out;
        unsigned char *in;
        size_t in_pos, in_len;
        bool in_eof;
        bool z_init, z_end;
        z_stream z;
        ZSTD_DStream *zs;
        size_t zs_last;
};

static int dz_fill(struct dz_reader *d, struct kiln_error *err)
{
        ssize_t n;

        if (d->in_pos < d->in_len || d->in_eof)
                return 0;
        n = oci_reader_read(d->inner, d->in, IN_BUF, err);
        if (n < 0)
                return -1;
        d->in_pos = 0;
        d->in_len = (size_t)n;
        if (n == 0)
                d->in_eof = true;
        return 0;
}

static ssize_t dz_count(struct dz_reader *d, size_t n, struct kiln_error *err)
{
        d->out += (int64_t)n;
        if (d->max > 0 && d->out > d->max)
                return kiln_error_set(err, KILN_E_LIMIT,
                                      "layer decompresses to more than %lld bytes (the limit)",
                                      (long long)d->max);
        return (ssize_t)n;
}

static ssize_t dz_read_gzip(struct dz_reader *d, void *buf, size_t len, struct kiln_error *err)
{
        for (;;) {
                int r;
                size_t got;

                if (d->z_end) {
                        /* RFC 1952 2.2: members follow each other; anything else is garbage. */
                        if (dz_fill(d, err) < 0)
                                return -1;
                        if (d->in_pos == d->in_len)
                                return 0;
                        if (d->in[d->in_pos] != 0x1f)
                                return kiln_error_set(err, KILN_E_INVALID,
                                                      "layer has trailing data after the gzip "
                                                      "stream");
                        inflateReset(&d->z);
                        d->z_end = false;
                }
                if (dz_fill(d, err) < 0)
                        return -1;
                d->z.next_in = d->in + d->in_pos;
                d->z.avail_in = (uInt)(d->in_len - d->in_pos);
                d->z.next_out = buf;
                d->z.avail_out = (uInt)(len > (1u << 30) ? (1u << 30) : len);
                got = d->z.avail_out;
                r = inflate(&d->z, Z_NO_FLUSH);
                d->in_pos = d->in_len - d->z.avail_in;
                got -= d->z.avail_out;
                if (r == Z_STREAM_END)
                        d->z_end = true;
                else if (r == Z_BUF_ERROR && d->in_eof && d->in_pos == d->in_len)
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "layer gzip stream is truncated");
                else if (r != Z_OK && r != Z_BUF_ERROR)
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "layer gzip stream is corrupt: %s",
                                              d->z.msg ? d->z.msg : "inflate failed");
                if (got)
                        return dz_count(d, got, err);
                if (d->in_eof && d->in_pos == d->in_len && !d->z_end)
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "layer gzip stream is truncated");
        }
}

static ssize_t dz_read_zstd(struct dz_reader *d, void *buf, size_t len, struct kiln_error *err)
{
        for (;;) {
                ZSTD_inBuffer in;
                ZSTD_outBuffer out = {buf, len, 0};
                size_t r;

                if (dz_fill(d, err) < 0)
                        return -1;
                if (d->in_pos == d->in_len && d->in_eof) {
                        if (d->zs_last != 0)
                                return kiln_error_set(err, KILN_E_INVALID,
                                                      "layer zstd stream is truncated");
                        return 0;
                }
                in = (ZSTD_inBuffer){d->in, d->in_len, d->in_pos};
                r = ZSTD_decompressStream(d->zs, &out, &in);
                d->in_pos = in.pos;
                if (ZSTD_isError(r)) {
                        if (ZSTD_getErrorCode(r) == ZSTD_error_frameParameter_windowTooLarge)
                                return kiln_error_set(err, KILN_E_LIMIT,
                                                      "layer zstd frame needs a window over 2^%d "
                                                      "bytes",
                                                      LAYER_ZSTD_WINDOWLOG_MAX);
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "layer zstd stream is corrupt: %s",
                                              ZSTD_getErrorName(r));
                }
                d->zs_last = r;
                if (out.pos)
                        return dz_count(d, out.pos, err);
        }
}

static ssize_t dz_read(struct oci_reader *r, void *buf, size_t len, struct kiln_error *err)
{
        struct dz_reader *d = (struct dz_reader *)r;

        switch (d->c) {
        case OCI_COMPRESSION_GZIP:
                return dz_read_gzip(d, buf, len, err);
        case OCI_COMPRESSION_ZSTD:
                return dz_read_zstd(d, buf, len, err);
        default:
                if (d->in_pos < d->in_len) {
                        size_t n = d->in_len - d->in_pos;
                        if (n > len)
                                n = len;
                        memcpy(buf, d->in + d->in_pos, n);
                        d->in_pos += n;
                        return dz_count(d, n, err);
                } else {
                        ssize_t n = oci_reader_read(d->inner, buf, len, err);
                        return n <= 0 ? n : dz_count(d, (size_t)n, err);
                }
        }
}

static void dz_free(struct oci_reader *r)
{
        struct dz_reader *d = (struct dz_reader *)r;

        oci_reader_free(d->inner);
        if (d->z_init)
                inflateEnd(&d->z);
        ZSTD_freeDStream(d->zs);
        free(d->in);
        free(d);
}

static enum oci_compression sniff(const unsigned char *b, size_t n)
{
        if (n >= 2 && b[0] == 0x1f && b[1] == 0x8b)
                return OCI_COMPRESSION_GZIP;
        if (n >= 4 && b[0] == 0x28 && b[1] == 0xb5 && b[2] == 0x2f && b[3] == 0xfd)
                return OCI_COMPRESSION_ZSTD;
        return OCI_COMPRESSION_NONE;
}

struct oci_reader *layer_decompress_reader_new(struct oci_reader *inner, enum oci_compression c,
                                               int64_t max_size, struct kiln_error *err)
{
        struct dz_reader *d = calloc(1, sizeof(*d));
        enum oci_compression found;

        if (!d) {
                oci_reader_free(inner);
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        d->base.read = dz_read;
        d->base.free = dz_free;
        d->inner = inner;
        d->max = max_size;
        d->in = calloc(1, IN_BUF);
        if (!d->in) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto fail;
        }
        /* Look at the first bytes: the media type must tell the truth. */
        while (d->in_len < 4 && !d->in_eof) {
                ssize_t n = oci_reader_read(inner, d->in + d->in_len, IN_BUF - d->in_len, err);
                if (n < 0)
                        goto fail;
                if (n == 0)
                        d->in_eof = true;
                d->in_len += (size_t)n;
        }
        d->in_eof = false; /* the inner reader is asked again; it answers 0 again */
        found = sniff(d->in, d->in_len);
        if (c == OCI_COMPRESSION_UNKNOWN)
                c = found;
        if (found != c) {
                kiln_error_set(err, KILN_E_INVALID, "layer media type says %s but its bytes are %s",
                               oci_compression_name(c), oci_compression_name(found));
                goto fail;
        }
        d->c = c;
        if (c == OCI_COMPRESSION_GZIP) {
                if (inflateInit2(&d->z, 15 + 16) != Z_OK) {
                        kiln_error_set(err, KILN_E_NOMEM, "cannot start gzip decompression");
                        goto fail;
                }
                d->z_init = true;
        } else if (c == OCI_COMPRESSION_ZSTD) {
                d->zs = ZSTD_createDStream();
                if (!d->zs || ZSTD_isError(ZSTD_DCtx_setParameter(d->zs, ZSTD_d_windowLogMax,
                                                                  LAYER_ZSTD_WINDOWLOG_MAX))) {
                        kiln_error_set(err, KILN_E_NOMEM, "cannot start zstd decompression");
                        goto fail;
                }
        }
        return &d->base;
fail:
        dz_free(&d->base);
        return NULL;
}
