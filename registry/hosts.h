/* registry/hosts.h: where a registry name is reached, and the registry
 * configuration of containers-registries.conf(5).
 *
 * A name is what the user writes and reads (docker.io); the API host is
 * where its distribution API lives (registry-1.docker.io).  Credentials,
 * messages, mirrors and annotations keep the name; only connections use
 * the API host.
 *
 *     host = reg_host_api("docker.io");       (registry-1.docker.io)
 *     reg_hosts_test_setopt(curl_handle);     (KILN_TEST_CONNECT_TO, ...)
 *
 *     struct reg_conf conf = {0};
 *     reg_conf_load(&conf, &err);             (the files podman reads)
 *     r = reg_conf_match(&conf, "docker.io/library/ubuntu");
 *     reg_conf_release(&conf);
 */
#ifndef KILN_REGISTRY_HOSTS_H
#define KILN_REGISTRY_HOSTS_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

/* The host serving the distribution API of registry name host: Docker
 * Hub's names (docker.io, index.docker.io) answer there only at
 * registry-1.docker.io; every other name is its own host. */
const char *reg_host_api(const char *host);

/* True for Docker Hub's names (docker.io, index.docker.io,
 * registry-1.docker.io), whose manifest GETs count against a pull limit. */
bool reg_host_is_hub(const char *host);

/* A RateLimit-Limit or RateLimit-Remaining value ("100;w=21600", or "100"):
 * the count and the window in seconds (0 when not given).  -1 when it is
 * not one. */
int reg_ratelimit_parse(const char *value, long *ret_count, long *ret_window_s);

/* Testing knobs, read from the environment once: KILN_TEST_CONNECT_TO
 * ("HOST:PORT:CONNECT-HOST:CONNECT-PORT,...", curl's CURLOPT_CONNECT_TO)
 * and KILN_TEST_RESOLVE ("HOST:PORT:ADDRESS,...", CURLOPT_RESOLVE) send
 * requests for real names to local servers; a handle they apply to is
 * never proxied.  curl: a CURL *. */
void reg_hosts_test_setopt(void *curl);

/* ---- containers-registries.conf(5), version 2 ---- */

struct reg_conf_mirror {
        char *location;
        char *host; /* the location's host[:port] */
        bool insecure;
};

struct reg_conf_registry {
        char *prefix;   /* "docker.io/library", "*.example.com" */
        char *location; /* where the prefix is pulled from; NULL: the prefix itself */
        char *host;     /* the host[:port] of the location (else of the prefix) */
        bool insecure;
        bool blocked;
        struct reg_conf_mirror *mirrors;
        size_t n_mirrors;
        char *file; /* where it was read, for messages */
};

struct reg_conf {
        struct reg_conf_registry *regs;
        size_t n;
        bool search_ignored; /* unqualified-search-registries was set: kiln ignores it */
};

/* Adds the [[registry]] tables of one file's text to conf; a table with the
 * prefix of an earlier one replaces it (drop-in files override).  file
 * names the input in errors: "FILE:LINE: what is wrong". */
int reg_conf_parse(struct reg_conf *conf, const char *text, size_t len, const char *file,
                   struct kiln_error *err);

/* Reads $CONTAINERS_REGISTRIES_CONF alone when set; otherwise
 * $XDG_CONFIG_HOME/containers/registries.conf (or
 * ~/.config/containers/registries.conf) when it exists, else
 * /etc/containers/registries.conf, then the *.conf files of
 * /etc/containers/registries.conf.d and of the user's
 * containers/registries.conf.d in name order.  Missing files are skipped. */
int reg_conf_load(struct reg_conf *conf, struct kiln_error *err);

void reg_conf_release(struct reg_conf *conf);

/* The table whose prefix is the longest match of name ("HOST/PATH"): the
 * name starts with the prefix and goes on with '/', ':', '@' or ends; a
 * "*.domain" prefix matches hosts under domain.  NULL when none. */
const struct reg_conf_registry *reg_conf_match(const struct reg_conf *conf, const char *name);

/* name with r's prefix replaced by its location (or by loc when not NULL),
 * in a new string ("HOST/PATH"). */
char *reg_conf_rewrite(const struct reg_conf_registry *r, const char *loc, const char *name);

#endif
