/* registry/toml.h: a small strict reader for the TOML that
 * containers-registries.conf(5) files use.
 *
 * Supported: comments, [tables] and [[arrays of tables]] with dotted or
 * quoted names, key = value with bare, quoted or dotted keys, basic and
 * literal strings (one line, TOML escapes), booleans, decimal integers and
 * arrays of those (over several lines, trailing comma allowed).  Anything
 * else (multi-line strings, floats, dates, inline tables) is an error, as
 * are duplicate keys and bytes that are not UTF-8.
 *
 *     json_t *doc = reg_toml_parse(text, len, "registries.conf", &err);
 *
 * The document comes back as JSON: tables are objects, arrays of tables
 * arrays of objects.  Errors read "FILE:LINE: what is wrong".
 */
#ifndef KILN_REGISTRY_TOML_H
#define KILN_REGISTRY_TOML_H

#include <jansson.h>
#include <stddef.h>

#include "error.h"

json_t *reg_toml_parse(const char *text, size_t len, const char *file, struct kiln_error *err);

#endif
