/* oci/image.h: places that hold images, and copying between them.
 *
 * A store is anything that holds blobs and manifests: an OCI layout
 * (oci/layout.h), an archive (layers/), a registry repository (registry/).
 * Each implements struct oci_store_ops; oci_image_copy() moves an image
 * between any two of them without knowing which they are.
 *
 * Rules every store keeps:
 *   - get_manifest() returns the exact bytes; when asked by digest the
 *     bytes are verified against it, when asked by tag the digest is
 *     computed from them;
 *   - open_blob() returns a verified reader (oci_verified_reader_new);
 *   - put_blob() stores nothing unless the stream matched the descriptor;
 *   - put_manifest() runs only after every blob it names was put;
 *     tag() last, so a tag never points at an incomplete image.
 *
 *     src = ...; dst = ...;
 *     oci_image_copy(src, "v1", dst, "v1", &opts, &res, &err);
 *     oci_store_commit(dst, &err);   (archives are written here)
 *     oci_store_free(src); oci_store_free(dst);
 */
#ifndef KILN_OCI_IMAGE_H
#define KILN_OCI_IMAGE_H

#include <stdbool.h>
#include <stdint.h>

#include "digest.h"
#include "error.h"
#include "io.h"
#include "model.h"

struct oci_store;

struct oci_store_ops {
        const char *kind; /* "oci", "oci-archive", "docker-archive", "registry" */
        /* open_blob, has_blob and put_blob may be called from several
         * threads at once (for different blobs) */
        bool thread_safe;
        /* ref: a tag, a digest string, or NULL for the place's own reference. */
        int (*get_manifest)(struct oci_store *s, const char *ref, char **ret_buf,
                            size_t *ret_len, char **ret_media_type,
                            struct oci_digest *ret_digest, struct kiln_error *err);
        struct oci_reader *(*open_blob)(struct oci_store *s, const struct oci_descriptor *d,
                                        struct kiln_error *err);
        int (*has_blob)(struct oci_store *s, const struct oci_descriptor *d, bool *ret,
                        struct kiln_error *err);
        /* Takes over r.  The store verifies the stream against d. */
        int (*put_blob)(struct oci_store *s, const struct oci_descriptor *d,
                        struct oci_reader *r, struct kiln_error *err);
        /* Stores a manifest or index by digest (no tag). */
        int (*put_manifest)(struct oci_store *s, const struct oci_descriptor *d,
                            const char *buf, size_t len, struct kiln_error *err);
        /* tag NULL: the place's own tag (or none). */
        int (*tag)(struct oci_store *s, const char *tag, const struct oci_descriptor *d,
                   struct kiln_error *err);
        /* Finishes the place (writes an archive); may be NULL. */
        int (*commit)(struct oci_store *s, struct kiln_error *err);
        void (*free)(struct oci_store *s);
};

struct oci_store {
        const struct oci_store_ops *ops;
        char *name;        /* for messages: "oci:DIR:TAG", "HOST/REPO:TAG" */
        char *default_ref; /* the tag or digest named in the place, or NULL */
};

void oci_store_free(struct oci_store *s);
void oci_store_freep(struct oci_store **s);
int oci_store_commit(struct oci_store *s, struct kiln_error *err);

/* The OCI layout store.  tag: the place's tag (may be NULL). */
struct oci_store *oci_layout_store_new(const char *dir, const char *tag, bool create,
                                       struct kiln_error *err);

/* A read-only store that serves upper's blobs and manifests first and
 * falls back to lower for what upper does not hold (a built image whose
 * base layers stay in the base's registry).  Takes neither store over. */
struct oci_store *oci_overlay_store_new(struct oci_store *upper, struct oci_store *lower,
                                        const char *default_ref, struct kiln_error *err);

/* A fetched manifest or index with its bytes and descriptor. */
struct oci_fetched {
        char *buf;
        size_t len;
        char *media_type;
        struct oci_descriptor desc; /* media_type points at ->media_type */
        enum oci_doc_kind kind;
};

void oci_fetched_release(struct oci_fetched *f);
int oci_store_fetch(struct oci_store *s, const char *ref, struct oci_fetched *ret,
                    struct kiln_error *err);
/* Fetches by descriptor (verified against its digest and size). */
int oci_store_fetch_desc(struct oci_store *s, const struct oci_descriptor *d,
                         struct oci_fetched *ret, struct kiln_error *err);
/* Reads a small blob (a config) whole, verified, at most cap bytes. */
int oci_store_read_blob(struct oci_store *s, const struct oci_descriptor *d, size_t cap,
                        char **ret_buf, size_t *ret_len, struct kiln_error *err);

/* An image: its manifest (an index resolved to one platform) and config. */
struct oci_image {
        struct oci_fetched top; /* the manifest */
        struct oci_manifest *m;
        char *config_buf; /* the exact config bytes */
        size_t config_len;
        json_t *config; /* parsed config object */
};

/* Loads ref (NULL: the place's own) from s; an index is resolved for plat
 * (NULL: the host's).  Only the manifest and the config are read. */
int oci_image_load(struct oci_store *s, const char *ref, const struct oci_platform *plat,
                   struct oci_image *ret, struct kiln_error *err);
void oci_image_release(struct oci_image *img);

/* The empty base: no layers and a config with only the platform (NULL: the
 * host's), an empty rootfs and history.  Its top is unset (no digest):
 * nothing is fetched for it. */
int oci_image_scratch(const struct oci_platform *plat, struct oci_image *ret,
                      struct kiln_error *err);
json_t *oci_config_scratch(const struct oci_platform *plat);


struct oci_copy_opts {
        const struct oci_platform *platform; /* NULL: keep an index whole */
        const char *dst_tag;                 /* NULL: the destination's own tag */
        /* event: "skip" (the destination has it), "copy" (starting), "done"
         * (handed to the destination, which may still be sending it) */
        void (*progress)(void *ctx, const char *event, const struct oci_descriptor *d);
        /* bytes of d read from the source so far; finished when the
         * destination let go of the stream (sent, mounted, or failed).  May
         * be called from any thread, with no lock held. */
        void (*bytes)(void *ctx, const struct oci_descriptor *d, int64_t done, bool finished);
        void *progress_ctx;
        /* Blobs copied at once (threads); 0 or 1: one at a time.  Used only
         * when both stores set ops->thread_safe. */
        unsigned jobs;
};

struct oci_copy_result {
        struct oci_digest digest; /* of the top-level document written */
        int64_t size;
        char media_type[128];
        unsigned blobs_copied, blobs_skipped;
        int64_t bytes_copied;
};

int oci_image_copy(struct oci_store *src, const char *src_ref, struct oci_store *dst,
                   const struct oci_copy_opts *opts, struct oci_copy_result *ret,
                   struct kiln_error *err);

#endif
