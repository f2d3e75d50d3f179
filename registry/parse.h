/* registry/parse.h: the HTTP header grammars a registry client reads.
 *
 * Pure functions, no I/O, so the unit tests can feed them hostile input:
 *   - WWW-Authenticate challenges (RFC 7235 §4.1, distribution token spec);
 *   - Link headers for tag-list paging (RFC 8288, distribution-spec "Listing Tags");
 *   - Location / redirect targets, absolute or relative (RFC 3986 §5);
 *   - Retry-After, seconds or an HTTP date (RFC 9110 §10.2.3);
 *   - byte ranges: Content-Range (RFC 9110 §14.4) and an upload's Range.
 */
#ifndef KILN_REGISTRY_PARSE_H
#define KILN_REGISTRY_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "error.h"

#define REG_MAX_CHALLENGES 8

struct reg_challenge {
        char scheme[32]; /* lowercased: "basic", "bearer" */
        char *realm;
        char *service;
        char *scope;
        char *error; /* "insufficient_scope", "invalid_token" */
};

void reg_challenge_release(struct reg_challenge *c);

/* Parses one WWW-Authenticate header value, which may hold several
 * challenges.  Unknown parameters are skipped; quoted strings keep their
 * escapes resolved.  Returns the number of challenges (>= 1) or -1. */
int reg_www_auth_parse(const char *value, struct reg_challenge *ret, size_t max,
                       struct kiln_error *err);

/* The target of the rel="next" link in a Link header value, resolved
 * against base_url, in a new string; *ret is NULL when there is none. */
int reg_link_next(const char *value, const char *base_url, char **ret, struct kiln_error *err);

/* Resolves ref (absolute, scheme-relative, absolute-path or relative)
 * against base; keeps ref's query.  Only http and https results. */
int reg_url_resolve(const char *base, const char *ref, char **ret, struct kiln_error *err);

/* Appends "key=value" (value percent-encoded) to url's query. */
char *reg_url_add_query(const char *url, const char *key, const char *value);

/* The host[:port] of an http(s) URL in a new string, or NULL. */
char *reg_url_host(const char *url);

/* Seconds to wait from a Retry-After value, clamped to [0, cap];
 * -1 when the value is neither seconds nor an HTTP date. */
long reg_retry_after_parse(const char *value, time_t now, long cap);

/* One byte range "START-END" (inclusive), as a registry's Range answer to
 * an upload (distribution-spec), or as a Content-Range: "bytes " before it,
 * a slash and the total length (or an asterisk) after it.  -1 unless the
 * numbers are decimal, without sign, fit, and START <= END < total. */
int reg_range_parse(const char *value, long long *ret_start, long long *ret_end);

/* True when host (with or without a port) is a loopback name:
 * localhost, 127.0.0.0/8, ::1. */
bool reg_host_is_loopback(const char *host);

/* kiln_text_escape (oci/util.h) with KILN_ESCAPE_ASCII: control characters
 * and every non-ASCII byte escaped, cut at max bytes with "..." */
void reg_sanitize(const char *s, size_t len, char *dst, size_t dstlen, size_t max);

#endif
