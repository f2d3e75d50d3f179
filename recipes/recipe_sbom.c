/* recipe_sbom_document(): the SPDX 2.3 document of a built image. */
#include "recipe_sbom.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "ref.h"
#include "util.h"

#define SPDX_NAMESPACE "https://kiln.dev/spdx/"
#define IMAGE_ID "SPDXRef-image"

struct entry {
        const char *type, *name, *version, *arch, *sha256, *file, *url;
        const json_t *deps; /* names of the resolved packages it requires */
};

static const char *or_empty(const char *s)
{
        return s ? s : "";
}

static int cmp_entry(const void *va, const void *vb)
{
        const struct entry *a = va, *b = vb;
        int c;

        if ((c = strcmp(a->type, b->type)) || (c = strcmp(a->name, b->name)) ||
            (c = strcmp(a->version, b->version)) ||
            (c = strcmp(or_empty(a->arch), or_empty(b->arch))) ||
            (c = strcmp(a->sha256, b->sha256)))
                return c;
        return strcmp(or_empty(a->url), or_empty(b->url));
}

/* The same package: only where it came from may differ. */
static bool same_package(const struct entry *a, const struct entry *b)
{
        return !strcmp(a->type, b->type) && !strcmp(a->name, b->name) &&
               !strcmp(a->version, b->version) && !strcmp(or_empty(a->arch), or_empty(b->arch)) &&
               !strcmp(a->sha256, b->sha256);
}

static bool hex64(const char *s)
{
        size_t n = 0;

        for (; s[n]; n++)
                if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
                        return false;
        return n == 64;
}

static int entry_read(const json_t *j, size_t i, struct entry *ret, struct kiln_error *err)
{
        struct entry e = {
                .type = json_string_value(json_object_get(j, "type")),
                .name = json_string_value(json_object_get(j, "name")),
                .version = json_string_value(json_object_get(j, "version")),
                .arch = json_string_value(json_object_get(j, "architecture")),
                .sha256 = json_string_value(json_object_get(j, "sha256")),
                .file = json_string_value(json_object_get(j, "file")),
                .url = json_string_value(json_object_get(j, "url")),
                .deps = json_object_get(j, "dependencies"),
        };

        if (!e.type || (strcmp(e.type, "pypi") && strcmp(e.type, "deb")) || !e.name || !*e.name ||
            !e.version || !*e.version || !e.sha256 || !hex64(e.sha256) ||
            (!strcmp(e.type, "deb") && !e.arch))
                return kiln_error_set(err, KILN_E_INTERNAL, "invalid inventory entry %zu", i);
        *ret = e;
        return 0;
}

/* purl (package-url spec): every byte but ALPHA / DIGIT / "." / "-" / "_" /
 * "~" (and "/" in qualifier values) percent-encoded. */
static char *purl_encode(const char *s, bool slash)
{
        char *out = malloc(strlen(s) * 3 + 1), *w = out;

        if (!out)
                return NULL;
        for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
                if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                    (*p >= '0' && *p <= '9') || *p == '.' || *p == '-' || *p == '_' ||
                    *p == '~' || (slash && *p == '/'))
                        *w++ = (char)*p;
                else
                        w += sprintf(w, "%%%02X", *p);
        }
        *w = '\0';
        return out;
}

static char *entry_purl(const struct entry *e)
{
        _cleanup_free_ char *n = purl_encode(e->name, false);
        _cleanup_free_ char *v = purl_encode(e->version, false);
        _cleanup_free_ char *a = e->arch ? purl_encode(e->arch, false) : NULL;

        if (!n || !v || (e->arch && !a))
                return NULL;
        if (!strcmp(e->type, "deb"))
                return kiln_strdupf("pkg:deb/debian/%s@%s?arch=%s", n, v, a);
        return kiln_strdupf("pkg:pypi/%s@%s", n, v);
}

/* SPDX 2.3 clause 7.2: SPDXRef- followed by letters, digits, '.' and '-'. */
static char *spdx_id(const struct entry *e, char **used, size_t n_used)
{
        char *id = kiln_strdupf("SPDXRef-%s-%s-%s%s%s", e->type, e->name, e->version,
                                e->arch ? "-" : "", or_empty(e->arch));
        bool taken;

        if (!id)
                return NULL;
        for (char *p = id + 8; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                      (*p >= '0' && *p <= '9') || *p == '.' || *p == '-'))
                        *p = '-';
        /* the same name and version twice (another file): the digest tells them apart */
        for (unsigned k = 0;; k++) {
                char *alt;
                taken = false;
                for (size_t i = 0; i < n_used && !taken; i++)
                        taken = !strcmp(used[i], id);
                if (!taken)
                        return id;
                alt = k == 0 ? kiln_strdupf("%s-%.16s", id, e->sha256)
                             : kiln_strdupf("%s-%u", id, k);
                free(id);
                if (!alt)
                        return NULL;
                id = alt;
        }
}

static json_t *checksum(const char *hex)
{
        return json_pack("[{s:s, s:s}]", "algorithm", "SHA256", "checksumValue", hex);
}

static json_t *purl_ref(const char *purl)
{
        return json_pack("[{s:s, s:s, s:s}]", "referenceCategory", "PACKAGE-MANAGER",
                         "referenceType", "purl", "referenceLocator", purl);
}

static json_t *relationship(const char *from, const char *type, const char *to)
{
        return json_pack("{s:s, s:s, s:s}", "spdxElementId", from, "relationshipType", type,
                         "relatedSpdxElement", to);
}

/* The image: name HOST/REPO, version the manifest digest, a pkg:oci purl. */
static json_t *image_package(const struct recipe_sbom_image *img, struct kiln_error *err)
{
        struct oci_ref ref;
        _cleanup_free_ char *repo = NULL, *last = NULL, *dig = NULL, *rurl = NULL, *tag = NULL;
        _cleanup_free_ char *purl = NULL;
        const char *slash;
        json_t *j;

        if (oci_ref_parse(img->name, &ref, err) < 0)
                return NULL;
        repo = kiln_strdupf("%s/%s", ref.domain, ref.path);
        slash = strrchr(ref.path, '/');
        last = purl_encode(slash ? slash + 1 : ref.path, false);
        dig = purl_encode(img->digest->str, false);
        rurl = repo ? purl_encode(repo, true) : NULL;
        tag = ref.tag ? purl_encode(ref.tag, false) : NULL;
        /* qualifiers sorted by key, as the purl spec's canonical form has them */
        if (last && dig && rurl && (tag || !ref.tag))
                purl = kiln_strdupf("pkg:oci/%s@%s?repository_url=%s%s%s", last, dig, rurl,
                                    tag ? "&tag=" : "", or_empty(tag));
        oci_ref_release(&ref);
        if (!purl) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        j = json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:b, s:s}", "SPDXID", IMAGE_ID, "name", repo,
                      "versionInfo", img->digest->str, "downloadLocation", "NOASSERTION",
                      "checksums", checksum(oci_digest_hex(img->digest)), "externalRefs",
                      purl_ref(purl), "filesAnalyzed", 0, "primaryPackagePurpose", "CONTAINER");
        if (!j)
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        return j;
}

static json_t *entry_package(const struct entry *e, const char *id, const char *purl)
{
        /* SPDX 2.3 clause 7.7: a URL, or NOASSERTION for a local path or a built file */
        const char *where = e->url && strstr(e->url, "://") ? e->url : "NOASSERTION";
        json_t *j = json_pack("{s:s, s:s, s:s}", "SPDXID", id, "name", e->name, "versionInfo",
                              e->version);

        if (j && e->file)
                json_object_set_new(j, "packageFileName", json_string(e->file));
        if (j && (json_object_set_new(j, "downloadLocation", json_string(where)) < 0 ||
                  json_object_set_new(j, "checksums", checksum(e->sha256)) < 0 ||
                  json_object_set_new(j, "externalRefs", purl_ref(purl)) < 0 ||
                  json_object_set_new(j, "filesAnalyzed", json_false()) < 0))
                json_decref(steal_ptr(&j));
        return j;
}

/* SPDX 2.3 clause 11: "A DEPENDS_ON B" for each dependency the resolver
 * followed (a wheel's Requires-Dist that applied on the target), to the
 * package of that name listed first.  ids[k] names the k-th kept entry;
 * es is sorted and deduplicated the way the packages were listed. */
static int depends_on(const struct entry *es, size_t n, char *const *ids, size_t kept,
                      json_t *rels)
{
        size_t k = 0;

        for (size_t i = 0; i < n && k < kept; i++) {
                const json_t *d;
                size_t j;

                if (i > 0 && same_package(&es[i], &es[i - 1]))
                        continue;
                json_array_foreach((json_t *)(uintptr_t)es[i].deps, j, d) {
                        size_t m = 0;
                        for (size_t x = 0; x < n && m < kept; x++) {
                                if (x > 0 && same_package(&es[x], &es[x - 1]))
                                        continue;
                                if (!strcmp(es[x].type, es[i].type) &&
                                    !strcmp(es[x].name, or_empty(json_string_value(d)))) {
                                        if (json_array_append_new(rels, relationship(ids[k], "DEPENDS_ON",
                                                                                     ids[m])) < 0)
                                                return -1;
                                        break;
                                }
                                m++;
                        }
                }
                k++;
        }
        return 0;
}

int recipe_sbom_document(const struct recipe_sbom_image *img, const json_t *packages,
                         char **ret_buf, size_t *ret_len, struct kiln_error *err)
{
        size_t n = json_array_size(packages), kept = 0;
        struct entry *es = calloc(n ? n : 1, sizeof(*es));
        char **ids = calloc(n ? n : 1, sizeof(*ids));
        json_t *pkgs = json_array(), *rels = json_array(), *doc = NULL, *img_pkg = NULL;
        char *listed = NULL, *ns = NULL, *buf = NULL;
        struct oci_digest content;
        size_t len;
        int rc = -1;

        if (!es || !ids || !pkgs || !rels) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto out;
        }
        for (size_t i = 0; i < n; i++)
                if (entry_read(json_array_get(packages, i), i, &es[i], err) < 0)
                        goto out;
        qsort(es, n, sizeof(*es), cmp_entry);
        img_pkg = image_package(img, err);
        if (!img_pkg)
                goto out;
        json_array_append(pkgs, img_pkg);
        json_array_append_new(rels, relationship("SPDXRef-DOCUMENT", "DESCRIBES", IMAGE_ID));
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *purl = NULL;
                json_t *p;
                if (i > 0 && same_package(&es[i], &es[i - 1]))
                        continue;
                purl = entry_purl(&es[i]);
                ids[kept] = purl ? spdx_id(&es[i], ids, kept) : NULL;
                p = ids[kept] ? entry_package(&es[i], ids[kept], purl) : NULL;
                if (ids[kept])
                        kept++;
                if (!p || json_array_append_new(pkgs, p) < 0 ||
                    json_array_append_new(rels,
                                          relationship(IMAGE_ID, "CONTAINS", ids[kept - 1])) < 0) {
                        kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        goto out;
                }
        }
        if (depends_on(es, n, ids, kept, rels) < 0) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto out;
        }
        /* the namespace names this image and this content: a new kiln that
         * lists the same image otherwise gets a new namespace, no random part */
        if (oci_json_dump(pkgs, &listed, &len, err) < 0)
                goto out;
        oci_digest_of_buffer(listed, len, &content);
        ns = kiln_strdupf(SPDX_NAMESPACE "%s-%.16s", oci_digest_hex(img->digest),
                          oci_digest_hex(&content));
        doc = ns ? json_pack("{s:s, s:s, s:s, s:s, s:s, s:{s:s, s:[s]}, s:O, s:O}", "spdxVersion",
                             "SPDX-2.3", "dataLicense", "CC0-1.0", "SPDXID", "SPDXRef-DOCUMENT",
                             "name", img->name, "documentNamespace", ns, "creationInfo",
                             "created", img->created, "creators", "Tool: kiln-" KILN_VERSION,
                             "packages", pkgs, "relationships", rels)
                 : NULL;
        if (!doc) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto out;
        }
        if (oci_json_dump(doc, &buf, &len, err) < 0)
                goto out;
        *ret_buf = steal_ptr(&buf);
        *ret_len = len;
        rc = 0;
out:
        for (size_t i = 0; ids && i < kept; i++)
                free(ids[i]);
        free(ids);
        free(es);
        free(listed);
        free(ns);
        free(buf);
        json_decref(img_pkg);
        json_decref(pkgs);
        json_decref(rels);
        json_decref(doc);
        return rc;
}
