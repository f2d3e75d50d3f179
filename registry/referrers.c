/* The registry client's referrers (distribution-spec "Listing Referrers" and
 * the referrers tag schema). */
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_internal.h"
#include "json.h"

/* ---- referrers (distribution-spec "Listing Referrers" and the tag schema) ---- */

/* The fallback tag: "<alg>-<encoded>", alg cut at 32, encoded at 64. */
static void referrers_tag(const struct oci_digest *d, char *out, size_t outlen)
{
        const char *alg = oci_digest_alg_name(d->alg);
        snprintf(out, outlen, "%.32s-%.64s", alg, oci_digest_hex(d));
}

static json_t *empty_index(void)
{
        return json_pack("{s:i,s:s,s:[]}", "schemaVersion", 2, "mediaType", OCI_MT_INDEX,
                         "manifests");
}

/* Fetches the fallback index; an empty one when the tag does not exist. */
static json_t *fetch_fallback(struct reg_client *c, const char *tag, struct kiln_error *err)
{
        char *buf = NULL, *mt = NULL;
        size_t len = 0;
        struct oci_digest d;
        json_t *j;

        if (reg_client_get_manifest(c, tag, &buf, &len, &mt, &d, err) < 0) {
                if (err && err->code == KILN_E_NOT_FOUND) {
                        kiln_error_clear(err);
                        return empty_index();
                }
                return NULL;
        }
        free(mt);
        j = oci_json_parse(buf, len, "referrers index", err);
        free(buf);
        if (j && !json_is_array(json_object_get(j, "manifests"))) {
                json_decref(j);
                kiln_error_set(err, KILN_E_INVALID, "referrers tag '%s' is not an index", tag);
                return NULL;
        }
        return j;
}

int reg_client_list_referrers(struct reg_client *c, const struct oci_digest *subject,
                              json_t **ret_index, struct kiln_error *err)
{
        _cleanup_free_ char *url = NULL;
        struct req q = {.method = "GET", .cap = OCI_MANIFEST_MAX};
        struct resp r = {.cap = OCI_MANIFEST_MAX};
        char tag[128];
        json_t *j = NULL;

        if (reg_ensure_base(c, NULL, err) < 0)
                return -1;
        url = reg_api_url(c, "referrers/%s", subject->str);
        if (!url)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        q.url = url;
        q.headers = curl_slist_append(NULL, "Accept: " OCI_MT_INDEX);
        if (reg_request(c, &q, &r, err) < 0) {
                curl_slist_free_all(q.headers);
                return -1;
        }
        curl_slist_free_all(q.headers);
        if (r.status == 200 && !r.truncated) {
                j = oci_json_parse(r.body ? r.body : "", r.len, "referrers response", err);
                reg_resp_reset(&r);
                if (!j)
                        return -1;
                *ret_index = j;
                return 0;
        }
        if (r.status != 404) {
                reg_http_error(c, "GET", url, &r, err);
                reg_resp_reset(&r);
                return -1;
        }
        reg_resp_reset(&r);
        /* no referrers API: the tag schema */
        referrers_tag(subject, tag, sizeof(tag));
        j = fetch_fallback(c, tag, err);
        if (!j)
                return -1;
        *ret_index = j;
        return 0;
}

/* Adds desc (a manifest whose subject is `subject`) to the fallback index. */
static int referrers_fallback_add(struct reg_client *c, const struct oci_digest *subject,
                                  json_t *desc, struct kiln_error *err)
{
        char tag[128];
        _cleanup_json_ json_t *j = NULL;
        json_t *arr, *e;
        size_t i;
        const char *dg = json_string_value(json_object_get(desc, "digest"));
        char *buf;
        int rc;

        referrers_tag(subject, tag, sizeof(tag));
        j = fetch_fallback(c, tag, err);
        if (!j)
                return -1;
        arr = json_object_get(j, "manifests");
        json_array_foreach(arr, i, e) {
                const char *ed = json_string_value(json_object_get(e, "digest"));
                if (dg && ed && !strcmp(ed, dg))
                        return 0; /* already listed */
        }
        json_array_append(arr, desc);
        buf = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!buf)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        rc = reg_client_put_manifest(c, tag, OCI_MT_INDEX, buf, strlen(buf), err);
        free(buf);
        return rc;
}

int reg_client_put_manifest_subject(struct reg_client *c, const char *ref, const char *media_type,
                                    const char *buf, size_t len, struct kiln_error *err)
{
        _cleanup_json_ json_t *j = json_loadb(buf, len, 0, NULL);
        json_t *sub = json_object_get(j, "subject");
        const char *sd = json_string_value(json_object_get(sub, "digest"));
        struct oci_digest subject, me;
        bool ack = false;
        json_t *desc;
        const char *at;
        int rc;

        if (reg_put_manifest(c, ref, media_type, buf, len, &ack, err) < 0)
                return -1;
        if (!sd || ack)
                return 0; /* no subject, or the registry keeps the referrers itself */
        if (oci_digest_parse(sd, &subject, err) < 0)
                return -1;
        /* distribution-spec: without OCI-Subject the client updates the tag schema index */
        oci_digest_of_buffer(buf, len, &me);
        at = json_string_value(json_object_get(j, "artifactType"));
        if (!at)
                at = json_string_value(json_object_get(json_object_get(j, "config"), "mediaType"));
        desc = json_pack("{s:s,s:s,s:I}", "mediaType", media_type, "digest", me.str, "size",
                         (json_int_t)len);
        if (!desc)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (at)
                json_object_set_new(desc, "artifactType", json_string(at));
        if (json_is_object(json_object_get(j, "annotations")))
                json_object_set(desc, "annotations", json_object_get(j, "annotations"));
        rc = referrers_fallback_add(c, &subject, desc, err);
        json_decref(desc);
        if (rc < 0)
                kiln_error_prefix(err, "referrers of '%s'", subject.str);
        return rc;
}
