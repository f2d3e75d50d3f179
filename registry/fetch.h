/* registry/fetch.h: plain HTTP(S) downloads for recipe inputs (wheels,
 * index pages, .deb files, apt indexes), with the transport rules of the
 * registry client: TLS verified (--ca-file), plain http only for loopback
 * hosts and --insecure-registry hosts, proxies from the environment,
 * redirects at most 5 and never https -> http, timeouts, bounded retries
 * with backoff on connection errors, 408, 429 and 5xx.  No credentials are
 * ever sent.  The file is written to a temp file beside dest and renamed
 * only when complete; a body over max bytes is an error (max < 0: none).
 * Callers verify content against the digests they know. */
#ifndef KILN_REGISTRY_FETCH_H
#define KILN_REGISTRY_FETCH_H

#include <stdint.h>

#include "error.h"
#include "registry.h"

/* ctx: a const struct reg_options * (NULL: defaults).  Fits recipe_fetch_fn. */
int reg_http_fetch(void *ctx, const char *url, const char *dest, int64_t max,
                   struct kiln_error *err);

#endif
