/* oci/image_edit.h: the one writer of images: config, manifest, tags.
 *
 * An edit starts from an image read from a store (its manifest and config,
 * verified), from a loaded struct oci_image, from scratch, or as an
 * artifact (the empty config).  Layers, history, config fields and
 * manifest annotations are added to it, and oci_image_edit_write() puts it
 * in a store: the base's layers the store lacks, then the config blob, then
 * the manifest, then the tags, so a tag never names an incomplete image.
 * Nothing else in kiln serialises an image config, builds an image
 * manifest or applies SOURCE_DATE_EPOCH to them.
 *
 * Time: the edit's time is SOURCE_DATE_EPOCH (read once, when the edit is
 * made; a malformed value is an error naming the variable), else 0.  New
 * history entries that are dated get it.  The config's "created" becomes
 * that time when SOURCE_DATE_EPOCH is set, else stays the base's own, else
 * is 1970-01-01T00:00:00Z.  oci_image_edit_set_time() gives another time.
 *
 * Key order: configs are dumped in the order their keys were made
 * (oci_json_dump), so every edit changes the config in place and adds
 * missing keys at the end; manifests and descriptors follow
 * oci_manifest_to_json().  The same edits give the same bytes.
 *
 *     e = oci_image_edit_load(src, NULL, NULL, &err);       (or _new(NULL, &err))
 *     oci_image_edit_set_env(e, "PATH=/opt/bin:/usr/bin", &err);
 *     (put the layer's blob in dst)
 *     oci_image_edit_add_layer(e, &desc, &diff_id,
 *                              &(struct oci_history){.dated = true, .created_by = "x"}, &err);
 *     oci_image_edit_write(e, dst, (const char *[]){NULL}, 1, &manifest, &err);
 *     oci_store_commit(dst, &err);
 *     oci_image_edit_free(e);
 */
#ifndef KILN_OCI_IMAGE_EDIT_H
#define KILN_OCI_IMAGE_EDIT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "digest.h"
#include "error.h"
#include "image.h"
#include "model.h"

/* A tag for oci_image_edit_write(): the manifest recorded by its own digest
 * (an untagged index.json entry in a layout; a registry needs nothing
 * more), whatever tag the place names.  "@" is never a valid tag. */
#define OCI_EDIT_BY_DIGEST "@"

struct oci_image_edit;

/* One history entry (image-spec config.md "history"), written with its
 * keys in this order, each only when set. */
struct oci_history {
        bool dated;             /* "created": the edit's time */
        const char *created_by; /* NULL: none */
        const char *comment;    /* NULL: none */
        bool empty_layer;       /* an entry that adds no layer */
};

/* The empty image for plat (NULL: the host's). */
struct oci_image_edit *oci_image_edit_new(const struct oci_platform *plat, struct kiln_error *err);

/* The image ref (NULL: the place's own) of src, an index resolved for plat
 * (NULL: the host's).  src must outlive the edit: oci_image_edit_write()
 * copies the base's layers a destination lacks from it. */
struct oci_image_edit *oci_image_edit_load(struct oci_store *src, const char *ref,
                                           const struct oci_platform *plat, struct kiln_error *err);

/* An edit of an image already loaded (its config copied, its layers
 * referenced); img may be released afterwards.  The base's layers are not
 * copied by oci_image_edit_write(): whoever carries the image carries them. */
struct oci_image_edit *oci_image_edit_new_from(const struct oci_image *img, struct kiln_error *err);

/* An artifact (image-spec manifest.md "Guidelines for Artifact Usage"):
 * artifactType, the empty config, no history and no diffIDs. */
struct oci_image_edit *oci_image_edit_new_artifact(const char *artifact_type,
                                                   struct kiln_error *err);

void oci_image_edit_free(struct oci_image_edit *e);
void oci_image_edit_freep(struct oci_image_edit **e);

/* The edit's time (seconds since the epoch) and as "YYYY-MM-DDTHH:MM:SSZ". */
int64_t oci_image_edit_time(const struct oci_image_edit *e);
const char *oci_image_edit_time_text(const struct oci_image_edit *e);

/* Dates the edit at t instead: dated history entries and the config's
 * "created" (always, as with SOURCE_DATE_EPOCH set) take t.  A recipe's
 * image carries the time of its layers' entries, not its base's. */
void oci_image_edit_set_time(struct oci_image_edit *e, int64_t t);

/* Docker leftovers out: the base's layers under their OCI media types (the
 * same bytes), their descriptors written without fields kiln does not
 * know, and the config's "container" and "container_config" (the base's
 * build container) removed. */
void oci_image_edit_drop_docker(struct oci_image_edit *e);

/* Appends a layer whose blob the caller puts in the destination before
 * oci_image_edit_write().  d is copied (its annotations referenced);
 * diff_id goes into rootfs.diff_ids and hist (may be NULL) into history;
 * an artifact takes neither. */
int oci_image_edit_add_layer(struct oci_image_edit *e, const struct oci_descriptor *d,
                             const struct oci_digest *diff_id, const struct oci_history *hist,
                             struct kiln_error *err);

/* Appends a history entry that adds no layer (empty_layer is set). */
int oci_image_edit_add_history(struct oci_image_edit *e, const struct oci_history *hist,
                               struct kiln_error *err);

/* Drops every layer, diffID and history entry (kiln flatten). */
void oci_image_edit_clear_layers(struct oci_image_edit *e);

/* Config fields (the config's "config" object, made when missing). */
/* "K=V": replaces the entry of the same K in place, else appends. */
int oci_image_edit_set_env(struct oci_image_edit *e, const char *kv, struct kiln_error *err);
/* Sets one label; labels stay in byte-wise order of their names. */
int oci_image_edit_set_label(struct oci_image_edit *e, const char *key, const char *value,
                             struct kiln_error *err);
/* Sets a field (Cmd, Entrypoint, WorkingDir, User, Env, ...) to value,
 * which it takes over (also on failure); json null clears it to null.
 * value NULL (what json_string() gives for text that is not UTF-8) is an
 * error naming the field. */
int oci_image_edit_set_field(struct oci_image_edit *e, const char *key, json_t *value,
                             struct kiln_error *err);
/* Every field of fields (a recipe's config): Labels merged with the
 * image's as oci_image_edit_set_label() does, any other field replaced.
 * Makes the config object when it is missing, also for fields NULL. */
int oci_image_edit_merge_config(struct oci_image_edit *e, json_t *fields, struct kiln_error *err);
/* The config document as it is now (borrowed; for reading). */
const json_t *oci_image_edit_config(const struct oci_image_edit *e);

/* Manifest annotations (written in byte-wise order of their keys). */
int oci_image_edit_annotate(struct oci_image_edit *e, const char *key, const char *value,
                            struct kiln_error *err);
/* Every string member of ann. */
int oci_image_edit_annotate_all(struct oci_image_edit *e, json_t *ann, struct kiln_error *err);

/* The manifest's subject (image-spec manifest.md "subject"); d is copied. */
int oci_image_edit_set_subject(struct oci_image_edit *e, const struct oci_descriptor *d,
                               struct kiln_error *err);

/* Writes the edit into dst, in this order: the base's layers dst lacks
 * (from the store of oci_image_edit_load()), the config blob, the manifest,
 * then each of tags: NULL for the place's own tag (dst->default_ref),
 * OCI_EDIT_BY_DIGEST, or a tag.  A tag that already names this manifest is
 * left as it is; with no tags the manifest is stored unnamed.  Blobs and
 * the manifest dst already holds are not put again.  ret_manifest (may be
 * NULL) gets the manifest's descriptor (media_type static).  The caller
 * commits dst (oci_store_commit) when it is done with it. */
int oci_image_edit_write(struct oci_image_edit *e, struct oci_store *dst, const char *const *tags,
                         size_t n_tags, struct oci_descriptor *ret_manifest,
                         struct kiln_error *err);

/* SOURCE_DATE_EPOCH (reproducible-builds.org/specs/source-date-epoch):
 * decimal seconds since the epoch, digits only, at most
 * 253402300799 (9999-12-31T23:59:59Z).  Unset or empty: *ret_set false
 * and *ret_epoch 0.  Anything else is an error naming the variable. */
int oci_source_date_epoch(int64_t *ret_epoch, bool *ret_set, struct kiln_error *err);
/* The same rules for a string (NULL or "": not set). */
int oci_source_date_epoch_parse(const char *s, int64_t *ret_epoch, bool *ret_set,
                                struct kiln_error *err);

/* "YYYY-MM-DDTHH:MM:SSZ" (RFC 3339, UTC) for t; len >= OCI_TIME_TEXT_SIZE. */
#define OCI_TIME_TEXT_SIZE 32
void oci_time_format(int64_t t, char *buf, size_t len);

#endif
