/* oci/model.h: the image model: media types, descriptors, manifests,
 * indexes, configs and platforms (image-spec v1.1).
 *
 * Reading: oci_manifest_parse() / oci_index_parse() / oci_config_parse()
 * take the exact bytes and keep the parsed jansson tree in ->json; the typed
 * fields point into it.  Bytes received are never re-serialized: whoever
 * stores or forwards a document keeps its original buffer and digest.
 * Unknown fields and unknown media types are carried through untouched.
 *
 * Writing: kiln's own documents are built with oci_descriptor_to_json()
 * and oci_manifest_to_json(), whose key order is fixed and documented in
 * docs/formats.md, then dumped with oci_json_dump().
 */
#ifndef KILN_OCI_MODEL_H
#define KILN_OCI_MODEL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "digest.h"
#include "error.h"

#define OCI_MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define OCI_MT_INDEX "application/vnd.oci.image.index.v1+json"
#define OCI_MT_CONFIG "application/vnd.oci.image.config.v1+json"
#define OCI_MT_LAYER "application/vnd.oci.image.layer.v1.tar"
#define OCI_MT_LAYER_GZIP "application/vnd.oci.image.layer.v1.tar+gzip"
#define OCI_MT_LAYER_ZSTD "application/vnd.oci.image.layer.v1.tar+zstd"
#define OCI_MT_EMPTY "application/vnd.oci.empty.v1+json"
#define DOCKER_MT_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define DOCKER_MT_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define DOCKER_MT_CONFIG "application/vnd.docker.container.image.v1+json"
#define DOCKER_MT_LAYER_GZIP "application/vnd.docker.image.rootfs.diff.tar.gzip"
#define DOCKER_MT_LAYER_TAR "application/vnd.docker.image.rootfs.diff.tar"
#define DOCKER_MT_FOREIGN_GZIP "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
#define DOCKER_MT_SCHEMA1 "application/vnd.docker.distribution.manifest.v1+json"
#define DOCKER_MT_SCHEMA1_SIGNED "application/vnd.docker.distribution.manifest.v1+prettyjws"

/* The Accept header a client sends for manifests: every type kiln reads. */
#define OCI_MANIFEST_ACCEPT                                                                        \
        OCI_MT_INDEX ", " OCI_MT_MANIFEST ", " DOCKER_MT_LIST ", " DOCKER_MT_MANIFEST

enum oci_doc_kind {
        OCI_DOC_UNKNOWN = 0,
        OCI_DOC_MANIFEST, /* OCI image manifest or Docker schema2 manifest */
        OCI_DOC_INDEX,    /* OCI index or Docker manifest list */
};

enum oci_compression {
        OCI_COMPRESSION_NONE,
        OCI_COMPRESSION_GZIP,
        OCI_COMPRESSION_ZSTD,
        OCI_COMPRESSION_UNKNOWN,
};

/* Classifies a media type string (parameters after ';' ignored). */
enum oci_doc_kind oci_media_type_doc_kind(const char *mt);
bool oci_media_type_is_layer(const char *mt);
bool oci_media_type_is_config(const char *mt);
/* Compression of a layer media type; UNKNOWN for non-layers. */
enum oci_compression oci_media_type_compression(const char *mt);
const char *oci_compression_name(enum oci_compression c);
/* Compares a Content-Type header with a media type, ignoring parameters. */
bool oci_media_type_matches(const char *content_type, const char *mt);

struct oci_platform {
        const char *os;
        const char *architecture;
        const char *variant;    /* NULL when absent */
        const char *os_version; /* NULL when absent */
};

/* Parses "os/arch[/variant]"; strings point into buf, which it modifies. */
int oci_platform_parse(char *buf, struct oci_platform *ret, struct kiln_error *err);
/* The platform of the running host ("linux/amd64", "linux/arm64/v8", ...). */
void oci_platform_host(struct oci_platform *ret);
/* True when have satisfies want: os and architecture equal, variant equal
 * when want names one (with arm64's empty variant meaning v8). */
bool oci_platform_match(const struct oci_platform *want, const struct oci_platform *have);

struct oci_descriptor {
        const char *media_type;
        struct oci_digest digest;
        int64_t size;
        const char *artifact_type;  /* NULL when absent */
        json_t *annotations;        /* borrowed object or NULL */
        bool has_platform;
        struct oci_platform platform;
        json_t *json; /* the descriptor object (borrowed from the parent document) */
};

/* Validates and reads one descriptor object (image-spec descriptor.md):
 * mediaType, digest and size are required, size >= 0, a `data` field must
 * decode to exactly the described content. */
int oci_descriptor_parse(json_t *obj, const char *what, struct oci_descriptor *ret,
                         struct kiln_error *err);

/* A descriptor object in kiln's fixed key order: mediaType, artifactType,
 * digest, size, urls, annotations, data, platform (only those present).
 * Unknown keys of d->json are kept after them. */
json_t *oci_descriptor_to_json(const struct oci_descriptor *d);

struct oci_manifest {
        json_t *json;
        const char *media_type; /* declared, or implied */
        bool is_docker;
        const char *artifact_type;
        struct oci_descriptor config;
        struct oci_descriptor *layers;
        size_t n_layers;
        bool has_subject;
        struct oci_descriptor subject;
        json_t *annotations;
};

struct oci_index {
        json_t *json;
        const char *media_type;
        bool is_docker;
        struct oci_descriptor *manifests;
        size_t n_manifests;
        json_t *annotations;
};

/* Decides what a document is from its declared mediaType, then the
 * Content-Type (may be NULL), then its shape.  A document with both
 * `manifests` and `layers`/`config` is refused (CVE-2021-41190), and so is
 * a mediaType that disagrees with the Content-Type. */
int oci_document_kind(const char *buf, size_t len, const char *content_type,
                      enum oci_doc_kind *ret, struct kiln_error *err);

int oci_manifest_parse(const char *buf, size_t len, const char *content_type,
                       struct oci_manifest **ret, struct kiln_error *err);
void oci_manifest_free(struct oci_manifest *m);
void oci_manifest_freep(struct oci_manifest **m);

int oci_index_parse(const char *buf, size_t len, const char *content_type,
                    struct oci_index **ret, struct kiln_error *err);
void oci_index_free(struct oci_index *x);
void oci_index_freep(struct oci_index **x);

/* Picks the first entry of the index matching want. */
const struct oci_descriptor *oci_index_select(const struct oci_index *x,
                                              const struct oci_platform *want);

struct oci_config {
        json_t *json;
        const char *os;
        const char *architecture;
        const char *variant;
        json_t *diff_ids; /* array of digest strings */
};

int oci_config_parse(const char *buf, size_t len, struct oci_config **ret,
                     struct kiln_error *err);
void oci_config_free(struct oci_config *c);
void oci_config_freep(struct oci_config **c);

/* A manifest in kiln's fixed key order: schemaVersion, mediaType,
 * artifactType, config, layers, subject, annotations. */
json_t *oci_manifest_to_json(const char *media_type, const char *artifact_type,
                             const struct oci_descriptor *config,
                             const struct oci_descriptor *layers, size_t n_layers,
                             const struct oci_descriptor *subject, json_t *annotations);

/* An object with the keys of obj in byte-wise sorted order (for annotations
 * and labels, whose order must not depend on input order). */
json_t *oci_json_sorted_object(json_t *obj);

#endif
