/* oci/json.h: JSON in and out, with kiln's rules.
 *
 * In: every document goes through oci_json_parse(): bounded size, UTF-8,
 * duplicate keys rejected (I-JSON), NUL characters rejected, one error line
 * naming the document and the line/column.
 * Out: oci_json_dump() writes compact JSON (no insignificant whitespace) in
 * the objects' insertion order, so kiln's own documents have a fixed key
 * order and the same content always gives the same bytes.
 */
#ifndef KILN_OCI_JSON_H
#define KILN_OCI_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "error.h"

/* Manifests and indexes: image-spec/distribution-spec recommend at least 4 MiB. */
#define OCI_MANIFEST_MAX (4u * 1024 * 1024)
/* Configs can be larger (long histories). */
#define OCI_CONFIG_MAX (16u * 1024 * 1024)

json_t *oci_json_parse(const char *buf, size_t len, const char *what, struct kiln_error *err);
int oci_json_dump(const json_t *j, char **ret_buf, size_t *ret_len, struct kiln_error *err);

/* Typed getters: return NULL / -1 and set err naming `what` and the key. */
const char *oci_json_get_string(const json_t *obj, const char *key, bool required,
                                const char *what, struct kiln_error *err);
int oci_json_get_int64(const json_t *obj, const char *key, int64_t *ret, const char *what,
                       struct kiln_error *err);

/* KILN_MANIFEST_MAX may raise or lower the manifest limit, up to this. */
#define OCI_MANIFEST_MAX_CEILING (64u * 1024 * 1024)

/* The manifest size limit: KILN_MANIFEST_MAX in the environment (decimal
 * bytes, 1 to OCI_MANIFEST_MAX_CEILING) or, unset or empty,
 * OCI_MANIFEST_MAX.  Any other value: -1 with err set (KILN_E_USAGE), *ret
 * untouched.  The CLI checks it once at start and refuses to run. */
int oci_manifest_limit_get(size_t *ret_limit, struct kiln_error *err);
/* The same limit, OCI_MANIFEST_MAX when KILN_MANIFEST_MAX is not valid. */
size_t oci_manifest_limit(void);

void oci_json_decrefp(json_t **j);
#define _cleanup_json_ __attribute__((cleanup(oci_json_decrefp)))

#endif
