/* registry/fetch.h: plain HTTP(S) downloads for recipe inputs (wheels,
 * index pages, .deb files, apt indexes).  They go through the registry
 * client's own request path (reg_client_get_url), so they follow exactly
 * its transport rules (registry.h): TLS verified (--ca-file), plain http
 * only for loopback hosts and --insecure-registry hosts, proxies from the
 * environment, redirects one hop at a time, at most 5, never to plain http
 * unless that host may use it, the connect and low-speed timeouts and the
 * per-attempt deadline, and the one retry budget (--retry-times, backoff,
 * Retry-After honoured up to its cap, a dropped body resumed with Range).
 * No credentials are ever sent.  The file is written to one temp file beside
 * dest, kept over every attempt, and renamed only when complete; a body over
 * max bytes is an error (max < 0: none).  A final answer that is not a 2xx
 * is one error naming the URL (without its query) and the status.  Callers
 * verify content against the digests they know. */
#ifndef KILN_REGISTRY_FETCH_H
#define KILN_REGISTRY_FETCH_H

#include <stdint.h>

#include "error.h"
#include "registry.h"

/* ctx: a const struct reg_options * (NULL: defaults).  Fits recipe_fetch_fn. */
int reg_http_fetch(void *ctx, const char *url, const char *dest, int64_t max,
                   struct kiln_error *err);

#endif
