#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "cmd_layers.h"
#include "json.h"
#include "util.h"
#include "writer.h"

void cli_image_release(struct cli_image *img)
{
        if (!img)
                return;
        oci_fetched_release(&img->top);
        oci_manifest_free(img->m);
        json_decref(img->config);
        memset(img, 0, sizeof(*img));
}

int cli_image_load(struct oci_store *st, const struct oci_platform *plat, struct cli_image *ret,
                   struct kiln_error *err)
{
        struct oci_image img = {0};

        if (oci_image_load(st, NULL, plat, &img, err) < 0)
                return -1;
        memset(ret, 0, sizeof(*ret));
        ret->top = img.top;
        ret->m = img.m;
        ret->config = img.config;
        free(img.config_buf);
        return 0;
}

json_t *cli_config_scratch(void)
{
        return oci_config_scratch(NULL);
}

int cli_copy_blobs(struct oci_store *src, struct oci_store *dst, const struct oci_descriptor *descs,
                   size_t n, struct kiln_error *err)
{
        for (size_t i = 0; i < n; i++) {
                bool have = false;
                struct oci_reader *r;

                if (dst->ops->has_blob(dst, &descs[i], &have, err) < 0)
                        return -1;
                if (have)
                        continue;
                r = src->ops->open_blob(src, &descs[i], err);
                if (!r || dst->ops->put_blob(dst, &descs[i], r, err) < 0)
                        return -1;
        }
        return 0;
}

void cli_format_time(long long t, char *buf, size_t len)
{
        time_t tt = (time_t)t;
        struct tm tm;

        gmtime_r(&tt, &tm);
        strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int cli_image_write(struct oci_store *dst, json_t *config, const struct oci_descriptor *layers,
                    size_t n, struct oci_digest *ret_digest, struct kiln_error *err)
{
        _cleanup_free_ char *cbuf = NULL, *mbuf = NULL;
        _cleanup_json_ json_t *mj = NULL;
        struct oci_descriptor cd = {0}, md = {0};
        struct oci_reader *r;
        const char *sde = getenv("SOURCE_DATE_EPOCH");
        size_t clen, mlen;
        bool have = false, tagged = false;

        /* image-spec config.md "created": SOURCE_DATE_EPOCH, else the base's,
         * else the layers' own time (0, as kiln build without it) */
        if ((sde && *sde) || !json_is_string(json_object_get(config, "created"))) {
                struct layer_writer_opts wo;
                char ts[64];
                layer_writer_opts_init(&wo);
                cli_format_time(wo.mtime, ts, sizeof(ts));
                json_object_set_new(config, "created", json_string(ts));
        }
        if (oci_json_dump(config, &cbuf, &clen, err) < 0)
                return -1;
        cd.media_type = OCI_MT_CONFIG;
        oci_digest_of_buffer(cbuf, clen, &cd.digest);
        cd.size = (int64_t)clen;
        /* An unchanged rebuild writes nothing: each put and the tag cost fsyncs. */
        if (dst->ops->has_blob(dst, &cd, &have, err) < 0)
                return -1;
        r = have ? NULL : oci_reader_from_buffer(cbuf, clen, err);
        if (!have && (!r || dst->ops->put_blob(dst, &cd, r, err) < 0))
                return -1;
        mj = oci_manifest_to_json(OCI_MT_MANIFEST, NULL, &cd, layers, n, NULL, NULL);
        if (!mj)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (oci_json_dump(mj, &mbuf, &mlen, err) < 0)
                return -1;
        md.media_type = OCI_MT_MANIFEST;
        oci_digest_of_buffer(mbuf, mlen, &md.digest);
        md.size = (int64_t)mlen;
        if (dst->ops->has_blob(dst, &md, &have, err) < 0)
                return -1;
        if (!have && dst->ops->put_manifest(dst, &md, mbuf, mlen, err) < 0)
                return -1;
        {
                struct kiln_error e2 = KILN_ERROR_INIT;
                char *obuf = NULL, *omt = NULL;
                size_t olen;
                struct oci_digest od;

                tagged = dst->default_ref &&
                         dst->ops->get_manifest(dst, NULL, &obuf, &olen, &omt, &od, &e2) == 0 &&
                         oci_digest_equal(&od, &md.digest);
                free(obuf);
                free(omt);
        }
        if ((!tagged && dst->ops->tag(dst, NULL, &md, err) < 0) || oci_store_commit(dst, err) < 0)
                return -1;
        *ret_digest = md.digest;
        return 0;
}
