/* oci/layout.h: the OCI image layout on disk (image-spec image-layout.md).
 *
 *   DIR/oci-layout              {"imageLayoutVersion":"1.0.0"}
 *   DIR/index.json              an image index; tags are the
 *                               org.opencontainers.image.ref.name annotation
 *   DIR/blobs/<alg>/<encoded>   content, named by its digest
 *
 * Guarantees: a blob file only ever appears under its final name after its
 * bytes were verified against the digest and fsynced (temp file
 * blobs/<alg>/.tmp-* then rename); index.json is replaced atomically under
 * an exclusive flock() on DIR, read again under the lock, so concurrent
 * writers never lose each other's tags.  Blobs are verified when read, and
 * a present blob is trusted only after hashing it.  Symlinked blobs are
 * refused.
 *
 *     l = oci_layout_open(dir, true, &err);
 *     w = oci_layout_blob_writer_new(l, &err);
 *     oci_writer_write(w, ...); ...
 *     oci_layout_blob_writer_commit(w, &want, size, &got, &got_size, &err);
 *     oci_layout_tag(l, "v1", &desc, &err);
 *     oci_layout_free(l);
 */
#ifndef KILN_OCI_LAYOUT_H
#define KILN_OCI_LAYOUT_H

#include <stdbool.h>
#include <stdint.h>

#include "digest.h"
#include "error.h"
#include "io.h"
#include "model.h"

#define OCI_REF_NAME_ANNOTATION "org.opencontainers.image.ref.name"

struct oci_layout;

/* Opens DIR; with create, makes it (and oci-layout, index.json) if missing. */
struct oci_layout *oci_layout_open(const char *dir, bool create, struct kiln_error *err);
void oci_layout_free(struct oci_layout *l);
const char *oci_layout_dir(const struct oci_layout *l);

/* The exact bytes of index.json (capped at the manifest limit). */
int oci_layout_read_index(struct oci_layout *l, char **ret_buf, size_t *ret_len,
                          struct kiln_error *err);

/* Path of a blob, "DIR/blobs/<alg>/<hex>", in a new string. */
char *oci_layout_blob_path(const struct oci_layout *l, const struct oci_digest *d);

/* A verified stream of a blob; size < 0 takes the file's size (the digest
 * is still checked). */
struct oci_reader *oci_layout_blob_open(struct oci_layout *l, const struct oci_digest *d,
                                        int64_t size, struct kiln_error *err);
/* Reads a whole (small) blob, verified, at most cap bytes. */
int oci_layout_blob_read(struct oci_layout *l, const struct oci_digest *d, int64_t size,
                         size_t cap, char **ret_buf, size_t *ret_len, struct kiln_error *err);

/* True when the blob is present with this size and its content hashes to
 * d (the file is hashed: a right size alone is not trusted).  A present
 * blob that fails the check is removed so it can be written again. */
int oci_layout_blob_check(struct oci_layout *l, const struct oci_digest *d, int64_t size,
                          bool *ret, struct kiln_error *err);

/* A writer for a new blob.  close() is not used; commit verifies the
 * content against want (when not NULL) and size (when >= 0), fsyncs and
 * renames it into place; free() without commit removes the temp file. */
struct oci_writer *oci_layout_blob_writer_new(struct oci_layout *l, enum oci_digest_alg alg,
                                              struct kiln_error *err);
int oci_layout_blob_writer_commit(struct oci_writer *w, const struct oci_digest *want,
                                  int64_t size, struct oci_digest *ret_digest,
                                  int64_t *ret_size, struct kiln_error *err);

/* The caller vouches for the digest of the bytes it writes to w: they come
 * from a reader for which oci_reader_verifies() held, read to its end
 * without error, or the caller hashed exactly those bytes itself (the
 * layer writer).  w does not hash them again, and commit takes want
 * (required) as their digest. */
void oci_layout_blob_writer_prechecked(struct oci_writer *w);

/* Writes a buffer as a blob (sha256). */
int oci_layout_put_blob_buffer(struct oci_layout *l, const void *buf, size_t len,
                               struct oci_digest *ret_digest, struct kiln_error *err);

/* Points TAG (NULL: no name) at desc in index.json: an entry with the same
 * tag is replaced; without a tag an entry with the same digest and no tag
 * is not added twice. */
int oci_layout_tag(struct oci_layout *l, const char *tag, const struct oci_descriptor *desc,
                   struct kiln_error *err);
/* Removes TAG from index.json. */
int oci_layout_untag(struct oci_layout *l, const char *tag, struct kiln_error *err);

/* Finds the index.json entry for tag (NULL: the only entry); the
 * descriptor's strings point into *ret_index, which the caller frees. */
int oci_layout_resolve(struct oci_layout *l, const char *tag, struct oci_index **ret_index,
                       const struct oci_descriptor **ret_desc, struct kiln_error *err);

#endif
