/* oci/toml.h: a small strict reader for the TOML that
 * containers-registries.conf(5), pyproject.toml and pylock.toml (PEP 751)
 * files use (no C TOML library ships in Debian 12).
 *
 * Supported: comments, [tables] and [[arrays of tables]] with dotted or
 * quoted names, key = value with bare, quoted or dotted keys, basic and
 * literal strings (TOML escapes; one line or multi-line), booleans,
 * decimal integers, offset and local date-times (kept as their text),
 * arrays (over several lines, trailing comma allowed) and inline tables.
 * Anything else (floats, special integers) is an error, as are duplicate
 * keys and bytes that are not UTF-8.
 *
 *     json_t *doc = oci_toml_parse(text, len, "registries.conf", &err);
 *
 * The document comes back as JSON: tables are objects, arrays of tables
 * arrays of objects.  Errors read "FILE:LINE: what is wrong".
 */
#ifndef KILN_OCI_TOML_H
#define KILN_OCI_TOML_H

#include <jansson.h>
#include <stddef.h>

#include "error.h"

json_t *oci_toml_parse(const char *text, size_t len, const char *file, struct kiln_error *err);

#endif
