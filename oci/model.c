#include "model.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#include "json.h"
#include "util.h"

static bool mt_eq(const char *a, const char *b)
{
        size_t n;

        if (!a || !b)
                return false;
        n = strcspn(a, "; \t");
        return strlen(b) == n && strncmp(a, b, n) == 0;
}

bool oci_media_type_matches(const char *content_type, const char *mt)
{
        return mt_eq(content_type, mt);
}

enum oci_doc_kind oci_media_type_doc_kind(const char *mt)
{
        if (mt_eq(mt, OCI_MT_MANIFEST) || mt_eq(mt, DOCKER_MT_MANIFEST))
                return OCI_DOC_MANIFEST;
        if (mt_eq(mt, OCI_MT_INDEX) || mt_eq(mt, DOCKER_MT_LIST))
                return OCI_DOC_INDEX;
        return OCI_DOC_UNKNOWN;
}

bool oci_media_type_is_layer(const char *mt)
{
        return mt && (str_has_prefix(mt, "application/vnd.oci.image.layer.") ||
                      str_has_prefix(mt, "application/vnd.docker.image.rootfs."));
}

bool oci_media_type_is_config(const char *mt)
{
        return mt_eq(mt, OCI_MT_CONFIG) || mt_eq(mt, DOCKER_MT_CONFIG);
}

enum oci_compression oci_media_type_compression(const char *mt)
{
        if (!oci_media_type_is_layer(mt))
                return OCI_COMPRESSION_UNKNOWN;
        if (str_has_suffix(mt, "+gzip") || str_has_suffix(mt, ".tar.gzip"))
                return OCI_COMPRESSION_GZIP;
        if (str_has_suffix(mt, "+zstd"))
                return OCI_COMPRESSION_ZSTD;
        if (str_has_suffix(mt, ".tar") || str_has_suffix(mt, "diff.tar"))
                return OCI_COMPRESSION_NONE;
        return OCI_COMPRESSION_UNKNOWN;
}

const char *oci_compression_name(enum oci_compression c)
{
        switch (c) {
        case OCI_COMPRESSION_NONE: return "none";
        case OCI_COMPRESSION_GZIP: return "gzip";
        case OCI_COMPRESSION_ZSTD: return "zstd";
        default: return "unknown";
        }
}

int oci_platform_parse(char *buf, struct oci_platform *ret, struct kiln_error *err)
{
        char *os = buf, *arch, *variant = NULL;
        struct oci_platform p = {0};

        arch = strchr(os, '/');
        if (!arch || arch == os || !arch[1])
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid platform '%s': expected OS/ARCH[/VARIANT]", buf);
        *arch++ = '\0';
        variant = strchr(arch, '/');
        if (variant) {
                *variant++ = '\0';
                if (!*variant || strchr(variant, '/'))
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "invalid platform '%s/%s': expected OS/ARCH[/VARIANT]",
                                              os, arch);
        }
        p.os = os;
        p.architecture = arch;
        p.variant = variant;
        *ret = p;
        return 0;
}

void oci_platform_host(struct oci_platform *ret)
{
        struct utsname u;
        const char *arch = "amd64", *variant = NULL;

        if (uname(&u) == 0) {
                if (!strcmp(u.machine, "x86_64"))
                        arch = "amd64";
                else if (!strcmp(u.machine, "aarch64") || !strcmp(u.machine, "arm64")) {
                        arch = "arm64";
                        variant = "v8";
                } else if (!strcmp(u.machine, "ppc64le"))
                        arch = "ppc64le";
                else if (!strcmp(u.machine, "s390x"))
                        arch = "s390x";
                else if (!strcmp(u.machine, "riscv64"))
                        arch = "riscv64";
                else if (!strncmp(u.machine, "armv7", 5)) {
                        arch = "arm";
                        variant = "v7";
                } else if (!strcmp(u.machine, "i686") || !strcmp(u.machine, "i386"))
                        arch = "386";
        }
        ret->os = "linux";
        ret->architecture = arch;
        ret->variant = variant;
        ret->os_version = NULL;
}

bool oci_platform_match(const struct oci_platform *want, const struct oci_platform *have)
{
        const char *hv;

        if (!want->os || !have->os || strcmp(want->os, have->os) != 0)
                return false;
        if (!want->architecture || !have->architecture ||
            strcmp(want->architecture, have->architecture) != 0)
                return false;
        if (!want->variant)
                return true;
        hv = have->variant;
        /* image-spec: arm64's variant v8 is the default and often omitted. */
        if (!hv && !strcmp(have->architecture, "arm64"))
                hv = "v8";
        return hv && !strcmp(want->variant, hv);
}

static int check_data_field(json_t *obj, const struct oci_descriptor *d, const char *what,
                            struct kiln_error *err)
{
        json_t *data = json_object_get(obj, "data");
        const char *b64;
        size_t len, pad = 0;
        _cleanup_free_ unsigned char *raw = NULL;
        int n;
        struct oci_digest got;

        if (!data)
                return 0;
        if (!json_is_string(data))
                return kiln_error_set(err, KILN_E_INVALID, "invalid %s: 'data' must be a string",
                                      what);
        b64 = json_string_value(data);
        len = strlen(b64);
        if (len % 4 != 0)
                return kiln_error_set(err, KILN_E_INVALID, "invalid %s: 'data' is not base64",
                                      what);
        if (len && b64[len - 1] == '=')
                pad++;
        if (len > 1 && b64[len - 2] == '=')
                pad++;
        raw = malloc(len / 4 * 3 + 1);
        if (!raw)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        n = len ? EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)len) : 0;
        if (n < 0)
                return kiln_error_set(err, KILN_E_INVALID, "invalid %s: 'data' is not base64",
                                      what);
        n -= (int)pad;
        if ((int64_t)n != d->size)
                return kiln_error_set(err, KILN_E_DIGEST,
                                      "invalid %s: 'data' holds %d bytes but size is %lld", what,
                                      n, (long long)d->size);
        if (d->digest.alg == OCI_DIGEST_SHA256) {
                oci_digest_of_buffer(raw, (size_t)n, &got);
        } else {
                struct oci_hasher h;
                if (oci_hasher_init(&h, d->digest.alg, err) < 0)
                        return -1;
                oci_hasher_update(&h, raw, (size_t)n);
                oci_hasher_final(&h, &got);
                oci_hasher_release(&h);
        }
        if (!oci_digest_equal(&got, &d->digest))
                return kiln_error_set(err, KILN_E_DIGEST,
                                      "invalid %s: 'data' does not match digest '%s'", what,
                                      d->digest.str);
        return 0;
}

int oci_descriptor_parse(json_t *obj, const char *what, struct oci_descriptor *ret,
                         struct kiln_error *err)
{
        struct oci_descriptor d = {0};
        const char *dig;
        json_t *ann, *plat;

        if (!json_is_object(obj))
                return kiln_error_set(err, KILN_E_INVALID, "invalid %s: not an object", what);
        d.media_type = oci_json_get_string(obj, "mediaType", true, what, err);
        if (!d.media_type)
                return -1;
        dig = oci_json_get_string(obj, "digest", true, what, err);
        if (!dig)
                return -1;
        if (oci_digest_parse(dig, &d.digest, err) < 0) {
                kiln_error_prefix(err, "invalid %s", what);
                return -1;
        }
        if (oci_json_get_int64(obj, "size", &d.size, what, err) < 0)
                return -1;
        if (d.size < 0)
                return kiln_error_set(err, KILN_E_INVALID, "invalid %s: negative size %lld", what,
                                      (long long)d.size);
        if (json_object_get(obj, "artifactType")) {
                d.artifact_type = oci_json_get_string(obj, "artifactType", false, what, err);
                if (!d.artifact_type)
                        return -1;
        }
        ann = json_object_get(obj, "annotations");
        if (ann) {
                const char *k;
                json_t *v;
                if (!json_is_object(ann))
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "invalid %s: 'annotations' must be an object", what);
                json_object_foreach(ann, k, v) if (!json_is_string(v)) return kiln_error_set(
                        err, KILN_E_INVALID, "invalid %s: annotation '%s' must be a string", what,
                        k);
                d.annotations = ann;
        }
        plat = json_object_get(obj, "platform");
        if (plat) {
                if (!json_is_object(plat))
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "invalid %s: 'platform' must be an object", what);
                d.platform.os = oci_json_get_string(plat, "os", true, what, err);
                if (!d.platform.os)
                        return -1;
                d.platform.architecture =
                        oci_json_get_string(plat, "architecture", true, what, err);
                if (!d.platform.architecture)
                        return -1;
                d.platform.variant = json_string_value(json_object_get(plat, "variant"));
                d.platform.os_version = json_string_value(json_object_get(plat, "os.version"));
                d.has_platform = true;
        }
        if (check_data_field(obj, &d, what, err) < 0)
                return -1;
        d.json = obj;
        *ret = d;
        return 0;
}

json_t *oci_json_sorted_object(json_t *obj)
{
        size_t n = json_object_size(obj), i = 0;
        const char **keys;
        const char *k;
        json_t *v, *out;

        out = json_object();
        if (!out || n == 0)
                return out;
        keys = calloc(n, sizeof(*keys));
        if (!keys) {
                json_decref(out);
                return NULL;
        }
        json_object_foreach(obj, k, v) keys[i++] = k;
        for (size_t a = 1; a < n; a++)
                for (size_t b = a; b > 0 && strcmp(keys[b - 1], keys[b]) > 0; b--) {
                        const char *t = keys[b];
                        keys[b] = keys[b - 1];
                        keys[b - 1] = t;
                }
        for (i = 0; i < n; i++)
                json_object_set(out, keys[i], json_object_get(obj, keys[i]));
        free(keys);
        return out;
}

static const char *const descriptor_order[] = {"mediaType", "artifactType", "digest", "size",
                                               "urls",      "annotations",  "data",   "platform"};

json_t *oci_descriptor_to_json(const struct oci_descriptor *d)
{
        json_t *o = json_object();
        const char *k;
        json_t *v;

        if (!o)
                return NULL;
        json_object_set_new(o, "mediaType", json_string(d->media_type));
        if (d->artifact_type)
                json_object_set_new(o, "artifactType", json_string(d->artifact_type));
        json_object_set_new(o, "digest", json_string(d->digest.str));
        json_object_set_new(o, "size", json_integer((json_int_t)d->size));
        if (d->json && json_object_get(d->json, "urls"))
                json_object_set(o, "urls", json_object_get(d->json, "urls"));
        if (d->annotations && json_object_size(d->annotations))
                json_object_set_new(o, "annotations", oci_json_sorted_object(d->annotations));
        if (d->json && json_object_get(d->json, "data"))
                json_object_set(o, "data", json_object_get(d->json, "data"));
        if (d->json && json_object_get(d->json, "platform"))
                json_object_set(o, "platform", json_object_get(d->json, "platform"));
        else if (d->has_platform) {
                json_t *p = json_object();
                json_object_set_new(p, "architecture", json_string(d->platform.architecture));
                json_object_set_new(p, "os", json_string(d->platform.os));
                if (d->platform.os_version)
                        json_object_set_new(p, "os.version", json_string(d->platform.os_version));
                if (d->platform.variant)
                        json_object_set_new(p, "variant", json_string(d->platform.variant));
                json_object_set_new(o, "platform", p);
        }
        /* Carry unknown fields through. */
        if (d->json)
                json_object_foreach(d->json, k, v)
                {
                        bool known = false;
                        for (size_t i = 0; i < ARRAY_SIZE(descriptor_order); i++)
                                known = known || !strcmp(k, descriptor_order[i]);
                        if (!known)
                                json_object_set(o, k, v);
                }
        return o;
}

int oci_document_kind(const char *buf, size_t len, const char *content_type,
                      enum oci_doc_kind *ret, struct kiln_error *err)
{
        _cleanup_json_ json_t *j = oci_json_parse(buf, len, "manifest", err);
        const char *mt;
        bool has_manifests, has_layers;
        enum oci_doc_kind k = OCI_DOC_UNKNOWN;

        if (!j)
                return -1;
        if (!json_is_object(j))
                return kiln_error_set(err, KILN_E_INVALID, "invalid manifest: not a JSON object");
        mt = json_string_value(json_object_get(j, "mediaType"));
        has_manifests = json_object_get(j, "manifests") != NULL;
        has_layers = json_object_get(j, "layers") || json_object_get(j, "config");
        if (has_manifests && has_layers)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid manifest: has both 'manifests' and 'layers'/'config'");
        if (mt && content_type && *content_type &&
            oci_media_type_doc_kind(content_type) != OCI_DOC_UNKNOWN &&
            !oci_media_type_matches(content_type, mt))
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid manifest: mediaType '%s' disagrees with Content-Type '%s'",
                                      mt, content_type);
        if (mt)
                k = oci_media_type_doc_kind(mt);
        if (k == OCI_DOC_UNKNOWN && content_type)
                k = oci_media_type_doc_kind(content_type);
        if (k == OCI_DOC_UNKNOWN && !mt) {
                if (has_manifests)
                        k = OCI_DOC_INDEX;
                else if (has_layers)
                        k = OCI_DOC_MANIFEST;
        }
        if (mt && (mt_eq(mt, DOCKER_MT_SCHEMA1) || mt_eq(mt, DOCKER_MT_SCHEMA1_SIGNED)))
                return kiln_error_set(err, KILN_E_UNSUPPORTED,
                                      "unsupported manifest type '%s' (Docker schema 1)", mt);
        if (k == OCI_DOC_UNKNOWN)
                return kiln_error_set(err, KILN_E_UNSUPPORTED,
                                      "unsupported manifest: media type '%s' is neither an image manifest nor an index",
                                      mt ? mt : (content_type ? content_type : "(none)"));
        if (k == OCI_DOC_MANIFEST && has_manifests)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid manifest: mediaType '%s' but the document has 'manifests'",
                                      mt ? mt : content_type);
        if (k == OCI_DOC_INDEX && has_layers)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid index: mediaType '%s' but the document has 'layers'",
                                      mt ? mt : content_type);
        *ret = k;
        return 0;
}

static int check_schema_version(json_t *j, const char *what, struct kiln_error *err)
{
        json_t *v = json_object_get(j, "schemaVersion");

        if (!v)
                return kiln_error_set(err, KILN_E_INVALID, "invalid %s: missing 'schemaVersion'",
                                      what);
        if (!json_is_integer(v) || json_integer_value(v) != 2)
                return kiln_error_set(err, KILN_E_INVALID, "invalid %s: schemaVersion must be 2",
                                      what);
        return 0;
}

static int check_annotations(json_t *j, const char *what, json_t **ret, struct kiln_error *err)
{
        json_t *ann = json_object_get(j, "annotations"), *v;
        const char *k;

        *ret = NULL;
        if (!ann)
                return 0;
        if (!json_is_object(ann))
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid %s: 'annotations' must be an object", what);
        json_object_foreach(ann, k, v) if (!json_is_string(v)) return kiln_error_set(
                err, KILN_E_INVALID, "invalid %s: annotation '%s' must be a string", what, k);
        *ret = ann;
        return 0;
}

void oci_manifest_free(struct oci_manifest *m)
{
        if (!m)
                return;
        free(m->layers);
        json_decref(m->json);
        free(m);
}

void oci_manifest_freep(struct oci_manifest **m)
{
        oci_manifest_free(*m);
        *m = NULL;
}

int oci_manifest_parse(const char *buf, size_t len, const char *content_type,
                       struct oci_manifest **ret, struct kiln_error *err)
{
        _cleanup_(oci_manifest_freep) struct oci_manifest *m = NULL;
        enum oci_doc_kind kind;
        json_t *layers, *subject;
        char what[64];

        if (len > oci_manifest_limit())
                return kiln_error_set(err, KILN_E_LIMIT,
                                      "manifest of %zu bytes is larger than the limit of %zu bytes",
                                      len, oci_manifest_limit());
        if (oci_document_kind(buf, len, content_type, &kind, err) < 0)
                return -1;
        if (kind != OCI_DOC_MANIFEST)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "expected an image manifest, got an index");
        m = calloc(1, sizeof(*m));
        if (!m)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        m->json = oci_json_parse(buf, len, "manifest", err);
        if (!m->json)
                return -1;
        if (check_schema_version(m->json, "manifest", err) < 0)
                return -1;
        m->media_type = json_string_value(json_object_get(m->json, "mediaType"));
        if (!m->media_type)
                m->media_type = content_type && oci_media_type_matches(content_type,
                                                                       DOCKER_MT_MANIFEST)
                                        ? DOCKER_MT_MANIFEST
                                        : OCI_MT_MANIFEST;
        m->is_docker = oci_media_type_matches(m->media_type, DOCKER_MT_MANIFEST);
        if (json_object_get(m->json, "artifactType")) {
                m->artifact_type =
                        oci_json_get_string(m->json, "artifactType", false, "manifest", err);
                if (!m->artifact_type)
                        return -1;
        }
        if (!json_object_get(m->json, "config"))
                return kiln_error_set(err, KILN_E_INVALID, "invalid manifest: missing 'config'");
        if (oci_descriptor_parse(json_object_get(m->json, "config"), "manifest config descriptor",
                                 &m->config, err) < 0)
                return -1;
        /* image-spec manifest.md: an empty config requires artifactType. */
        if (oci_media_type_matches(m->config.media_type, OCI_MT_EMPTY) && !m->artifact_type)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid manifest: config is the empty type but 'artifactType' is missing");
        layers = json_object_get(m->json, "layers");
        if (!layers || !json_is_array(layers))
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid manifest: 'layers' must be an array");
        m->n_layers = json_array_size(layers);
        if (m->n_layers) {
                m->layers = calloc(m->n_layers, sizeof(*m->layers));
                if (!m->layers)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        for (size_t i = 0; i < m->n_layers; i++) {
                snprintf(what, sizeof(what), "manifest layer %zu", i);
                if (oci_descriptor_parse(json_array_get(layers, i), what, &m->layers[i], err) < 0)
                        return -1;
        }
        subject = json_object_get(m->json, "subject");
        if (subject) {
                if (oci_descriptor_parse(subject, "manifest subject", &m->subject, err) < 0)
                        return -1;
                m->has_subject = true;
        }
        if (check_annotations(m->json, "manifest", &m->annotations, err) < 0)
                return -1;
        *ret = steal_ptr(&m);
        return 0;
}

void oci_index_free(struct oci_index *x)
{
        if (!x)
                return;
        free(x->manifests);
        json_decref(x->json);
        free(x);
}

void oci_index_freep(struct oci_index **x)
{
        oci_index_free(*x);
        *x = NULL;
}

int oci_index_parse(const char *buf, size_t len, const char *content_type, struct oci_index **ret,
                    struct kiln_error *err)
{
        _cleanup_(oci_index_freep) struct oci_index *x = NULL;
        enum oci_doc_kind kind;
        json_t *arr;
        char what[64];

        if (len > oci_manifest_limit())
                return kiln_error_set(err, KILN_E_LIMIT,
                                      "index of %zu bytes is larger than the limit of %zu bytes",
                                      len, oci_manifest_limit());
        if (oci_document_kind(buf, len, content_type, &kind, err) < 0)
                return -1;
        if (kind != OCI_DOC_INDEX)
                return kiln_error_set(err, KILN_E_INVALID, "expected an index, got a manifest");
        x = calloc(1, sizeof(*x));
        if (!x)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        x->json = oci_json_parse(buf, len, "index", err);
        if (!x->json)
                return -1;
        if (check_schema_version(x->json, "index", err) < 0)
                return -1;
        x->media_type = json_string_value(json_object_get(x->json, "mediaType"));
        if (!x->media_type)
                x->media_type = OCI_MT_INDEX;
        x->is_docker = oci_media_type_matches(x->media_type, DOCKER_MT_LIST);
        arr = json_object_get(x->json, "manifests");
        if (!arr || !json_is_array(arr))
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid index: 'manifests' must be an array");
        x->n_manifests = json_array_size(arr);
        if (x->n_manifests) {
                x->manifests = calloc(x->n_manifests, sizeof(*x->manifests));
                if (!x->manifests)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        for (size_t i = 0; i < x->n_manifests; i++) {
                snprintf(what, sizeof(what), "index entry %zu", i);
                if (oci_descriptor_parse(json_array_get(arr, i), what, &x->manifests[i], err) < 0)
                        return -1;
        }
        if (check_annotations(x->json, "index", &x->annotations, err) < 0)
                return -1;
        *ret = steal_ptr(&x);
        return 0;
}

const struct oci_descriptor *oci_index_select(const struct oci_index *x,
                                              const struct oci_platform *want)
{
        for (size_t i = 0; i < x->n_manifests; i++) {
                const struct oci_descriptor *d = &x->manifests[i];
                if (oci_media_type_doc_kind(d->media_type) != OCI_DOC_MANIFEST)
                        continue;
                if (d->has_platform && oci_platform_match(want, &d->platform))
                        return d;
        }
        return NULL;
}

void oci_config_free(struct oci_config *c)
{
        if (!c)
                return;
        json_decref(c->json);
        free(c);
}

void oci_config_freep(struct oci_config **c)
{
        oci_config_free(*c);
        *c = NULL;
}

int oci_config_parse(const char *buf, size_t len, struct oci_config **ret,
                     struct kiln_error *err)
{
        _cleanup_(oci_config_freep) struct oci_config *c = NULL;
        json_t *rootfs, *v;
        size_t i;

        if (len > OCI_CONFIG_MAX)
                return kiln_error_set(err, KILN_E_LIMIT,
                                      "config of %zu bytes is larger than the limit of %u bytes",
                                      len, OCI_CONFIG_MAX);
        c = calloc(1, sizeof(*c));
        if (!c)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        c->json = oci_json_parse(buf, len, "image config", err);
        if (!c->json)
                return -1;
        if (!json_is_object(c->json))
                return kiln_error_set(err, KILN_E_INVALID, "invalid image config: not an object");
        /* image-spec config.md: architecture and os are REQUIRED. */
        c->architecture = oci_json_get_string(c->json, "architecture", true, "image config", err);
        if (!c->architecture)
                return -1;
        c->os = oci_json_get_string(c->json, "os", true, "image config", err);
        if (!c->os)
                return -1;
        c->variant = json_string_value(json_object_get(c->json, "variant"));
        rootfs = json_object_get(c->json, "rootfs");
        if (!json_is_object(rootfs))
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid image config: 'rootfs' must be an object");
        c->diff_ids = json_object_get(rootfs, "diff_ids");
        if (!json_is_array(c->diff_ids))
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid image config: 'rootfs.diff_ids' must be an array");
        json_array_foreach(c->diff_ids, i, v)
        {
                if (!json_is_string(v) || !oci_digest_valid(json_string_value(v)))
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "invalid image config: rootfs.diff_ids[%zu] is not a valid digest",
                                              i);
        }
        *ret = steal_ptr(&c);
        return 0;
}

json_t *oci_manifest_to_json(const char *media_type, const char *artifact_type,
                             const struct oci_descriptor *config,
                             const struct oci_descriptor *layers, size_t n_layers,
                             const struct oci_descriptor *subject, json_t *annotations)
{
        json_t *o = json_object(), *arr = json_array();

        if (!o || !arr) {
                json_decref(o);
                json_decref(arr);
                return NULL;
        }
        json_object_set_new(o, "schemaVersion", json_integer(2));
        json_object_set_new(o, "mediaType", json_string(media_type));
        if (artifact_type)
                json_object_set_new(o, "artifactType", json_string(artifact_type));
        json_object_set_new(o, "config", oci_descriptor_to_json(config));
        for (size_t i = 0; i < n_layers; i++)
                json_array_append_new(arr, oci_descriptor_to_json(&layers[i]));
        json_object_set_new(o, "layers", arr);
        if (subject)
                json_object_set_new(o, "subject", oci_descriptor_to_json(subject));
        if (annotations && json_object_size(annotations))
                json_object_set_new(o, "annotations", oci_json_sorted_object(annotations));
        return o;
}
