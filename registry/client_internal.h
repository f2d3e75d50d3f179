/* Private to registry/: the registry client's state and the calls its rooms
 * share.  Nothing outside registry/ includes it; the public API is
 * registry.h.
 *
 * The client is split by concern:
 *   client.c     options, reg_client_new/free/stats, the probe (reg_ensure_base)
 *   transport.c  one request (reg_perform), the request loop (reg_request:
 *                auth, redirects, retries, deadlines) and HTTP errors
 *   auth.c       challenges, bearer tokens, credentials, redaction
 *   blobs.c      blob existence, download, upload, mount, resume
 *   manifests.c  manifests and the tag walk
 *   referrers.c  referrers API and its tag-schema fallback
 *
 * A call builds a struct req, runs it with reg_request() into a struct resp
 * and releases the response with reg_resp_reset(). */
#ifndef KILN_REGISTRY_CLIENT_INTERNAL_H
#define KILN_REGISTRY_CLIENT_INTERNAL_H

#include <curl/curl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "creds.h"
#include "registry.h"
#include "util.h"

#define ERROR_BODY_MAX (64 * 1024)
#define MAX_TOKENS 16
#define MAX_WARNINGS 32

struct token {
        char *scope; /* the scope parameters, joined by ' ' */
        char *value;
        time_t expires;
};

struct conn {
        CURL *h;
        char errbuf[CURL_ERROR_SIZE];
        struct conn *next;
};

struct reg_client {
        struct reg_options opts;
        char *host;     /* the registry's name, as the user reads it (docker.io) */
        char *api_host; /* where its API is reached (registry-1.docker.io) */
        char *repo;
        bool push;
        bool insecure;   /* --insecure-registry: http and unverified TLS */
        bool http_ok;    /* plain http allowed (insecure or loopback) */
        char *base;      /* "https://HOST" or "http://HOST" once known */
        pthread_mutex_t lock;
        pthread_mutex_t probe_lock; /* one thread decides the scheme */
        pthread_mutex_t token_lock; /* one token request at a time */
        struct conn *pool;
        /* auth (under lock) */
        bool pinged;
        enum { AUTH_NONE, AUTH_BASIC, AUTH_BEARER } auth;
        char *realm, *service;
        struct reg_creds creds;
        bool creds_loaded, have_creds;
        struct token tokens[MAX_TOKENS];
        size_t n_tokens;
        char *warnings[MAX_WARNINGS];
        size_t n_warnings;
        struct reg_stats stats;
};

/* ---- one request ---- */

struct resp {
        long status;
        char *body;
        size_t len, cap;
        bool truncated;
        char *location, *content_type, *digest, *www_auth, *range, *link, *retry_after,
                *chunk_min, *content_range, *content_length, *oci_subject, *rl_limit,
                *rl_remaining;
        /* streaming */
        int (*sink)(void *ctx, const void *buf, size_t len, struct kiln_error *err);
        void *sink_ctx;
        int64_t skip;      /* bytes to drop before the sink (a 200 after a Range request) */
        int64_t sunk;      /* bytes given to the sink */
        bool sink_failed;
        bool bad_range; /* a 206 that did not start where the Range asked */
        int curl_code; /* of the last transfer */
        bool checked; /* the first body bytes of this response were looked at */
        /* the deadline of this attempt (see reg_options.deadline_floor_s) */
        int64_t expect;     /* bytes the request is expected to move */
        int64_t start_ms;
        long over_deadline; /* the deadline that passed, in s; 0 while none did */
        struct kiln_error sink_err;
        struct reg_client *c;
        CURL *h;
};

struct upload {
        struct oci_reader *stream;
        bool used;
        bool failed;
        struct kiln_error err;
        int64_t sent;
};

struct req {
        const char *method;
        const char *url;
        struct curl_slist *headers;
        const char *body; /* replayable body (may be NULL with body_len 0) */
        size_t body_len;
        bool has_body;
        struct oci_reader *stream; /* streamed body: never replayed */
        int64_t stream_len;
        int64_t size;       /* bytes expected either way (a blob's size), for the deadline */
        size_t cap;         /* response body kept in memory, at most */
        const char *scope2; /* an extra auth scope (a mount source) */
        bool no_auth;
        bool no_retry;
};

/* transport.c */
bool reg_body_has(const struct resp *r, const char *needle);
void reg_resp_reset(struct resp *r);
bool reg_host_http_ok(struct reg_client *c, const char *host);
bool reg_host_insecure(struct reg_client *c, const char *host);
/* One attempt, no retries.  0 with r filled; -1 a transient failure (retry);
 * -2 the body sink or the upload stream failed; -3 a failure not to retry. */
int reg_perform(struct reg_client *c, struct conn *k, const struct req *q, const char *url,
                const char *auth_header, const char *extra, struct upload *up,
                struct resp *r, struct kiln_error *err);
/* Sets err from a response that is not the one wanted; returns -1. */
int reg_http_error(struct reg_client *c, const char *method, const char *url,
                   struct resp *r, struct kiln_error *err);
bool reg_retryable_status(long s);
long reg_backoff_ms(struct reg_client *c, unsigned attempt);
void reg_sleep_ms(long ms);
/* Runs q against the registry, following redirects (GET/HEAD only),
 * answering one 401 with credentials and retrying transient failures.
 * On return r holds the final response (any status); -1 only when no
 * response came, or auth failed, or the body sink failed. */
int reg_request(struct reg_client *c, const struct req *q, struct resp *r,
                struct kiln_error *err);

/* auth.c */
/* Cuts kiln's secrets (password, Basic credential, tokens) out of buf. */
void reg_redact(struct reg_client *c, char *buf, size_t *len);
void reg_redact_str(struct reg_client *c, char *s);
/* The Authorization header for a request to the registry host, or NULL. */
int reg_auth_header(struct reg_client *c, struct conn *k, const char *scope2, bool force,
                    char **ret, struct kiln_error *err);
/* Learns the auth scheme from a 401's challenge.  Returns 0 when a retry
 * with credentials makes sense, -1 with err set otherwise. */
int reg_learn_challenge(struct reg_client *c, const struct resp *r, struct kiln_error *err);

/* client.c */
/* Decides the scheme and learns the auth challenge, once per client. */
int reg_ensure_base(struct reg_client *c, struct conn *k, struct kiln_error *err);
/* "BASE/v2/REPO/" followed by fmt. */
char *reg_api_url(struct reg_client *c, const char *fmt, ...) KILN_PRINTF(2, 3);

/* manifests.c */
/* PUT a manifest; *ret_subject_ack (when not NULL) tells whether the registry
 * answered with OCI-Subject. */
int reg_put_manifest(struct reg_client *c, const char *ref, const char *media_type,
                     const char *buf, size_t len, bool *ret_subject_ack,
                     struct kiln_error *err);

#endif
