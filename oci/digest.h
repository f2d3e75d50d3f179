/* oci/digest.h: content digests (image-spec descriptor.md "Digests").
 *
 * A digest is "ALGORITHM:ENCODED".  kiln implements sha256 (64 lowercase
 * hex) and sha512 (128 lowercase hex).  Strings that fit the grammar but
 * name another algorithm are refused with KILN_E_UNSUPPORTED: kiln never
 * uses content it cannot verify.
 *
 * Hashing streams:  oci_hasher_init() / _update() / _final() / _release().
 */
#ifndef KILN_OCI_DIGEST_H
#define KILN_OCI_DIGEST_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

enum oci_digest_alg {
        OCI_DIGEST_SHA256,
        OCI_DIGEST_SHA512,
};

/* "sha512:" + 128 hex + NUL */
#define OCI_DIGEST_MAX 136

struct oci_digest {
        enum oci_digest_alg alg;
        char str[OCI_DIGEST_MAX]; /* the whole "alg:hex" */
};

/* Parses and validates s.  Nothing is written to ret on failure. */
int oci_digest_parse(const char *s, struct oci_digest *ret, struct kiln_error *err);
bool oci_digest_valid(const char *s);

/* The encoded (hex) part of d. */
const char *oci_digest_hex(const struct oci_digest *d);
const char *oci_digest_alg_name(enum oci_digest_alg alg);
bool oci_digest_equal(const struct oci_digest *a, const struct oci_digest *b);

/* Digest of a buffer (sha256). */
void oci_digest_of_buffer(const void *buf, size_t len, struct oci_digest *ret);

struct oci_hasher {
        enum oci_digest_alg alg;
        void *ctx; /* EVP_MD_CTX */
};

int oci_hasher_init(struct oci_hasher *h, enum oci_digest_alg alg, struct kiln_error *err);
void oci_hasher_update(struct oci_hasher *h, const void *buf, size_t len);
void oci_hasher_final(struct oci_hasher *h, struct oci_digest *ret);
void oci_hasher_release(struct oci_hasher *h);

#endif
