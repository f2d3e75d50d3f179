/* registry/registry.h: the distribution client (distribution-spec v1.1).
 *
 * A reg_client talks to one repository of one registry: manifests, blobs,
 * tags.  It is safe to use from several threads at once (each call takes
 * its own curl handle from a pool).  A registry store (reg_store_new)
 * wraps a client in struct oci_store_ops so oci_image_copy() can pull from
 * and push to registries.
 *
 *     struct reg_options o; reg_options_init(&o);
 *     c = reg_client_new("127.0.0.1:5000", "app", &o, true, &err);
 *     reg_client_get_manifest(c, "v1", &buf, &len, &mt, &dig, &err);
 *     r = reg_client_open_blob(c, &desc, &err);   (a verified stream)
 *     reg_client_push_blob(c, &desc, reader, NULL, &err);
 *     reg_client_free(c);
 *
 * Transport rules:
 *   - https with verification by default (--ca-file adds a CA bundle);
 *   - plain http only for a host given with --insecure-registry, which also
 *     turns TLS verification off for that host, or for a loopback host
 *     (localhost, 127.0.0.0/8, ::1), as docker does; a loopback host that
 *     speaks TLS is still verified;
 *   - proxies from the environment (http_proxy, https_proxy, no_proxy);
 *   - redirects are followed here one hop at a time, at most 5, never
 *     carrying Authorization to another host, never https -> http unless
 *     the target host is allowed plain http;
 *   - every attempt has a deadline: deadline_floor_s plus its size at
 *     deadline_min_rate (a manifest, token or ping: about the floor);
 *   - connection errors, 408, 429 and 5xx are retried with exponential
 *     backoff and jitter (Retry-After honoured, capped), bounded in count
 *     and total time; a request whose streamed body was consumed is not
 *     replayed;
 *   - error bodies are read at most 64 KiB; JSON errors are shown as
 *     CODE: message, others as the status and a sanitised excerpt.
 *
 * Nothing here prints: warnings (registry Warning headers, once each) and
 * retries go to opts->notify.
 */
#ifndef KILN_REGISTRY_REGISTRY_H
#define KILN_REGISTRY_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "digest.h"
#include "error.h"
#include "image.h"
#include "io.h"
#include "model.h"
#include "ref.h"

struct reg_conf;
struct reg_known;

enum reg_event {
        REG_EVENT_WARNING, /* a registry Warning header, or a digest disagreement */
        REG_EVENT_RETRY,   /* a request is retried */
        REG_EVENT_MOUNTED, /* a blob was mounted from another repository */
        REG_EVENT_DEBUG,   /* with opts->debug: each response, "METHOD URL -> STATUS (HTTP/V)" */
};

#define REG_MAX_HOSTS 16

struct reg_options {
        const char *insecure_hosts[REG_MAX_HOSTS];
        size_t n_insecure;
        const char *ca_file;
        const char *authfile;
        /* explicit credentials (kiln login checks them before saving) */
        const char *username;
        const char *password;
        /* token requests use the OAuth2 password grant (POST), falling back
         * to GET when the realm answers 404; kiln login sets it */
        bool force_oauth;
        /* blobs a registry store pushes at once in its own threads; default 1,
         * as oci_image_copy() runs opts->jobs copies at once itself (the store
         * sets ops->thread_safe) */
        unsigned jobs;
        unsigned retries;           /* attempts after the first; default 5 */
        long retry_base_ms;         /* first backoff; default 500 */
        long retry_max_total_s;     /* all retries of one request; default 300 */
        long retry_after_cap_s;     /* cap on Retry-After; default 60 */
        long connect_timeout_s;     /* default 30 */
        long low_speed_time_s;      /* abort below 1 kB/s for this long; default 60 */
        /* the deadline of one attempt of a request: this floor plus its size
         * (the larger of the expected size, Content-Length and the bytes
         * moved) at deadline_min_rate; a body that drips in just above the
         * low-speed limit still ends.  Defaults 60 s and 100 KiB/s */
        long deadline_floor_s;
        long deadline_min_rate;
        int64_t chunk_size;         /* > 0: chunked uploads of this size */
        /* "docker.io=HOST[/PREFIX]": pulls of docker.io images go there */
        const char *mirrors[REG_MAX_HOSTS];
        size_t n_mirrors;
        /* containers-registries.conf (hosts.h), or NULL: mirrors, locations,
         * insecure and blocked registries; the options above win over it */
        const struct reg_conf *conf;
        /* pulls of Docker Hub images keep the manifests they fetch here, by
         * digest, and read them back instead of a GET (the Hub counts GETs);
         * NULL: off */
        const char *manifest_cache_dir;
        /* where blobs were seen (reg_known_new), shared by the stores made
         * with these options so that a push mounts a blob the source
         * repository of the same registry holds; owned by the caller, who
         * frees it after the stores.  NULL: each store keeps its own */
        struct reg_known *known;
        bool debug; /* REG_EVENT_DEBUG for every response */
        void (*notify)(void *ctx, enum reg_event ev, const char *msg);
        void *notify_ctx;
};

void reg_options_init(struct reg_options *o);

struct reg_client;

/* host: "HOST[:PORT]"; repo: "library/ubuntu" (may be NULL for host-only
 * calls such as reg_client_ping); push: ask for push access. */
struct reg_client *reg_client_new(const char *host, const char *repo,
                                  const struct reg_options *opts, bool push,
                                  struct kiln_error *err);
void reg_client_free(struct reg_client *c);

/* GET /v2/: checks the registry answers and the credentials are accepted. */
int reg_client_ping(struct reg_client *c, struct kiln_error *err);

/* The exact bytes of a manifest by tag or digest, with the Content-Type
 * (parameters dropped) and the digest: checked against ref when ref is a
 * digest; by tag computed from the bytes (a disagreeing
 * Docker-Content-Digest is reported through notify). */
int reg_client_get_manifest(struct reg_client *c, const char *ref, char **ret_buf,
                            size_t *ret_len, char **ret_media_type, struct oci_digest *ret_digest,
                            struct kiln_error *err);
/* ret_digest (may be NULL) gets Docker-Content-Digest when the registry
 * sends a valid one; its str is "" otherwise. */
int reg_client_head_manifest(struct reg_client *c, const char *ref, bool *ret_exists,
                             struct oci_digest *ret_digest, struct kiln_error *err);
int reg_client_put_manifest(struct reg_client *c, const char *ref, const char *media_type,
                            const char *buf, size_t len, struct kiln_error *err);
int reg_client_delete_manifest(struct reg_client *c, const struct oci_digest *d,
                               struct kiln_error *err);

/* True when the registry has the blob with d's size. */
int reg_client_has_blob(struct reg_client *c, const struct oci_descriptor *d, bool *ret,
                        struct kiln_error *err);
/* A verified stream of the blob; a dropped connection is resumed with Range. */
struct oci_reader *reg_client_open_blob(struct reg_client *c, const struct oci_descriptor *d,
                                        struct kiln_error *err);
/* Uploads r (taken over), verified against d.  mount_from: another
 * repository of the same registry known to hold the blob, or NULL. */
int reg_client_push_blob(struct reg_client *c, const struct oci_descriptor *d,
                         struct oci_reader *r, const char *mount_from, struct kiln_error *err);

/* Every tag of the repository, page by page: GET tags/list?n=1000, then
 * each Link rel="next" (a Link back to a page already read ends the list),
 * at most 100000 pages of at most 4 MiB.  Each page's tags, validated, go to
 * fn as the page arrives (tags valid during the call only); only one page is
 * held at a time.  fn returning -1 (err set) stops the walk. */
typedef int (*reg_tags_fn)(void *ctx, const char *const *tags, size_t n, struct kiln_error *err);
int reg_client_walk_tags(struct reg_client *c, reg_tags_fn fn, void *ctx, struct kiln_error *err);
/* The same, collected into a new array of new strings (for short lists). */
int reg_client_list_tags(struct reg_client *c, char ***ret_tags, size_t *ret_n,
                         struct kiln_error *err);

/* Puts a manifest and, when it has a `subject` and the registry did not
 * answer with OCI-Subject (no referrers API), adds it to the subject's
 * fallback index at tag "<alg>-<hex>" (distribution-spec, referrers tag
 * schema). */
int reg_client_put_manifest_subject(struct reg_client *c, const char *ref, const char *media_type,
                                    const char *buf, size_t len, struct kiln_error *err);
/* The referrers of subject as an index (a new reference): from the
 * referrers API, else from the fallback tag, else empty. */
int reg_client_list_referrers(struct reg_client *c, const struct oci_digest *subject,
                              json_t **ret_index, struct kiln_error *err);

/* GET url, on any host, through the request path of the registry calls
 * (the transport rules above: retries with Retry-After, redirects, the
 * deadline), never with credentials: a 200's body goes to sink (a dropped
 * body is resumed with Range, so sink sees each byte once), *ret_status gets
 * the final status.  -1 when no answer came or sink failed.  For
 * registry/fetch.c; c is made for the URL's host with repo NULL. */
int reg_client_get_url(struct reg_client *c, const char *url,
                       int (*sink)(void *ctx, const void *buf, size_t len, struct kiln_error *err),
                       void *sink_ctx, long *ret_status, struct kiln_error *err);

/* Passes a message to opts->notify (for the store). */
void reg_client_notify(struct reg_client *c, enum reg_event ev, const char *fmt, ...)
        KILN_PRINTF(3, 4);

/* Counters for tests and progress. */
struct reg_stats {
        unsigned requests, retries, blobs_uploaded, blobs_mounted;
        unsigned manifest_gets; /* what Docker Hub counts against its pull limit */
        int64_t bytes_up, bytes_down;
        /* the last RateLimit-Limit / RateLimit-Remaining seen (Docker Hub) */
        bool ratelimit_known;
        long ratelimit_limit, ratelimit_remaining, ratelimit_window_s;
};
void reg_client_stats(struct reg_client *c, struct reg_stats *ret);

/* Where blobs were seen in this process, for cross-repository mounts: each
 * (host, repository, digest) a registry store read, found or pushed.  It
 * grows as needed (no cap: one entry per blob of the copies of one run),
 * and is safe to use from several threads at once.
 *
 *     k = reg_known_new(&err); o.known = k;
 *     src = reg_store_new(&a, &o, false, &err); dst = reg_store_new(&b, &o, true, &err);
 *     ... copy ...; oci_store_free(src); oci_store_free(dst); reg_known_free(k); */
struct reg_known *reg_known_new(struct kiln_error *err);
void reg_known_free(struct reg_known *k);
/* Records that repo of host holds d (once). */
int reg_known_add(struct reg_known *k, const char *host, const char *repo,
                  const struct oci_digest *d, struct kiln_error *err);
/* A new string: the first repository of host other than repo recorded as
 * holding d, or NULL (none, or out of memory). */
char *reg_known_other_repo(struct reg_known *k, const char *host, const char *repo,
                           const struct oci_digest *d);
/* How many (host, repository, digest) are recorded. */
size_t reg_known_count(struct reg_known *k);

/* The client of a registry store, or NULL for another kind of store. */
struct reg_client *reg_store_client(struct oci_store *s);

/* The registry store: a repository as a place.  ref gives host, repo and
 * the default tag or digest. */
struct oci_store *reg_store_new(const struct oci_ref *ref, const struct reg_options *opts,
                                bool for_write, struct kiln_error *err);

/* Maps ref's domain through opts->mirrors; *ret_host/ret_path are new
 * strings (the originals when no mirror applies). */
int reg_mirror_apply(const struct reg_options *opts, const char *domain, const char *path,
                     char **ret_host, char **ret_path, struct kiln_error *err);

#endif
