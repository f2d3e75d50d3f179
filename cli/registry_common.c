/* What the registry verbs share: `kiln ls` on a repository, copying
 * referrers, the JSON result of a copy. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmd_registry.h"
#include "util.h"

struct ls_out {
        bool json;
        size_t n;
};

/* Prints a page of tags as it arrives: a listing of millions of tags is
 * never held whole (JSON: one array, written element by element). */
static int print_tags(void *ctx, const char *const *tags, size_t n, struct kiln_error *err)
{
        struct ls_out *o = ctx;

        (void)err;
        for (size_t i = 0; i < n; i++, o->n++) {
                if (!o->json) {
                        printf("%s\n", tags[i]);
                        continue;
                }
                /* tags are validated ([A-Za-z0-9_.-]): nothing to escape */
                printf("%s\"%s\"", o->n ? "," : "[", tags[i]);
        }
        return 0;
}

int cli_ls_registry(struct cli_args *a, const struct oci_place *p, bool json)
{
        struct kiln_error err = KILN_ERROR_INIT;
        struct ls_out o = {.json = json};
        struct reg_client *c;
        int rc;

        if (cli_reg_conf(a, &err) < 0)
                return cli_fail(&err);
        c = reg_client_new(p->ref.domain, p->ref.path, &a->reg, false, &err);
        if (!c)
                return cli_fail(&err);
        rc = reg_client_walk_tags(c, print_tags, &o, &err);
        reg_client_free(c);
        if (json && (rc == 0 || o.n))
                printf("%s]\n", o.n ? "" : "[");
        if (rc < 0)
                return cli_fail(&err);
        return EXIT_OK;
}

#define REFERRERS_DEPTH 4

/* Copies the referrers of subject listed by the registry store s (of place
 * sp) to dp, then theirs (a signature of an SBOM), REFERRERS_DEPTH levels
 * down.  type: only referrers of this artifactType (NULL: all), at the top
 * level; what refers to a copied referrer comes along whatever its type. */
static int copy_referrers_of(struct cli_args *a, struct oci_store *s, const struct oci_place *sp,
                             const struct oci_place *dp, const struct oci_digest *subject,
                             unsigned jobs, const char *type, int depth, unsigned *ret_n,
                             struct kiln_error *err)
{
        json_t *idx = NULL, *e;
        size_t i;
        int rc = -1;

        if (depth >= REFERRERS_DEPTH)
                return 0;
        if (reg_client_list_referrers(reg_store_client(s), subject, &idx, err) < 0)
                return -1;
        json_array_foreach(json_object_get(idx, "manifests"), i, e) {
                const char *dg = json_string_value(json_object_get(e, "digest"));
                const char *at = json_string_value(json_object_get(e, "artifactType"));
                _cleanup_free_ char *s2 = NULL, *d2 = NULL;
                struct oci_store *from = NULL, *to = NULL;
                struct oci_copy_opts copts = {.jobs = jobs};
                struct oci_copy_result res;
                struct oci_digest rd;
                int r;
                if (!dg || oci_digest_parse(dg, &rd, NULL) < 0) {
                        kiln_error_set(err, KILN_E_INVALID, "invalid digest in the referrers of '%s'",
                                       subject->str);
                        goto out;
                }
                if (type && (!at || strcmp(at, type)))
                        continue;
                s2 = kiln_strdupf("%s/%s@%s", sp->ref.domain, sp->ref.path, dg);
                if (dp->kind == OCI_PLACE_REGISTRY)
                        d2 = kiln_strdupf("%s/%s@%s", dp->ref.domain, dp->ref.path, dg);
                else
                        d2 = kiln_strdupf("oci:%s", dp->path);
                if (!s2 || !d2) {
                        kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        goto out;
                }
                from = cli_open_place(a, s2, false, err);
                to = from ? cli_open_place(a, d2, true, err) : NULL;
                r = from && to ? oci_image_copy(from, NULL, to, &copts, &res, err) : -1;
                if (r == 0)
                        r = oci_store_commit(to, err);
                oci_store_free(from);
                oci_store_free(to);
                if (r < 0) {
                        kiln_error_prefix(err, "referrer '%s'", dg);
                        goto out;
                }
                (*ret_n)++;
                if (copy_referrers_of(a, s, sp, dp, &rd, jobs, NULL, depth + 1, ret_n, err) < 0)
                        goto out;
        }
        rc = 0;
out:
        json_decref(idx);
        return rc;
}

/* Copies the referrers of subject (signatures, SBOMs, attestations: the
 * manifests whose `subject` is the image), and theirs, from the registry
 * place src to dst: a registry (its own API or the tag schema is updated by
 * the store) or an OCI layout (untagged entries in index.json). */
int cli_copy_referrers(struct cli_args *a, const char *src, const char *dst,
                       const struct oci_digest *subject, unsigned jobs, const char *type,
                       unsigned *ret_n, struct kiln_error *err)
{
        struct oci_place sp, dp;
        struct oci_store *s = NULL;
        int rc = -1;

        *ret_n = 0;
        if (oci_place_parse(src, &sp, err) < 0)
                return -1;
        if (oci_place_parse(dst, &dp, err) < 0) {
                oci_place_release(&sp);
                return -1;
        }
        if (sp.kind != OCI_PLACE_REGISTRY ||
            (dp.kind != OCI_PLACE_REGISTRY && dp.kind != OCI_PLACE_LAYOUT)) {
                kiln_error_set(err, KILN_E_UNSUPPORTED,
                               "--referrers copies from a registry to a registry or an oci: layout");
                goto out;
        }
        if (cli_reg_conf(a, err) == 0)
                s = reg_store_new(&sp.ref, &a->reg, false, err);
        if (s)
                rc = copy_referrers_of(a, s, &sp, &dp, subject, jobs, type, 0, ret_n, err);
out:
        oci_store_free(s);
        oci_place_release(&sp);
        oci_place_release(&dp);
        return rc;
}

void cli_print_copy_json(struct oci_store *dst, const struct oci_copy_result *res,
                         unsigned n_referrers)
{
        struct reg_client *c = reg_store_client(dst);
        struct reg_stats st = {0};
        json_t *j = json_object(), *tags = json_array();
        const char *tag = dst->default_ref;
        char *s;

        if (c)
                reg_client_stats(c, &st);
        else
                st.bytes_up = res->bytes_copied;
        if (tag && !strchr(tag, ':'))
                json_array_append_new(tags, json_string(tag));
        json_object_set_new(j, "digest", json_string(res->digest.str));
        json_object_set_new(j, "mediaType", json_string(res->media_type));
        json_object_set_new(j, "size", json_integer(res->size));
        json_object_set_new(j, "tags", tags);
        json_object_set_new(j, "blobsCopied",
                            json_integer((json_int_t)res->blobs_copied - st.blobs_mounted));
        json_object_set_new(j, "blobsMounted", json_integer(st.blobs_mounted));
        json_object_set_new(j, "blobsSkipped", json_integer(res->blobs_skipped));
        json_object_set_new(j, "bytesCopied", json_integer(res->bytes_copied));
        json_object_set_new(j, "bytesSent", json_integer(st.bytes_up));
        json_object_set_new(j, "referrersCopied", json_integer(n_referrers));
        s = json_dumps(j, JSON_COMPACT);
        if (s)
                printf("%s\n", s);
        free(s);
        json_decref(j);
}
