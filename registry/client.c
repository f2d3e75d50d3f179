/* The HTTP layer, authentication and the distribution API calls. */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "creds.h"
#include "hosts.h"
#include "json.h"
#include "parse.h"
#include "registry.h"
#include "util.h"

#define ERROR_BODY_MAX (64 * 1024)
#define TOKEN_BODY_MAX (64 * 1024)
#define TAGS_BODY_MAX (4 * 1024 * 1024)
#define TAGS_PAGE_N 1000
/* pages are streamed, so the cap only ends a registry that never stops */
#define TAGS_MAX_PAGES 100000
#define MAX_REDIRECTS 5
#define SMALL_BLOB_MAX (8 * 1024 * 1024)
#define TOKEN_MIN_LIFETIME 60
#define MAX_TOKENS 16
#define MAX_WARNINGS 32

void reg_options_init(struct reg_options *o)
{
        memset(o, 0, sizeof(*o));
        o->jobs = 1;
        o->retries = 5;
        o->retry_base_ms = 500;
        o->retry_max_total_s = 300;
        o->retry_after_cap_s = 60;
        o->connect_timeout_s = 30;
        o->low_speed_time_s = 60;
        o->deadline_floor_s = 60;
        o->deadline_min_rate = 100 * 1024;
}

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

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
        curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void notify(struct reg_client *c, enum reg_event ev, const char *fmt, ...)
        KILN_PRINTF(3, 4);
static void redact(struct reg_client *c, char *buf, size_t *len);
static void redact_str(struct reg_client *c, char *s);

void reg_client_notify(struct reg_client *c, enum reg_event ev, const char *fmt, ...)
{
        char msg[1024];
        va_list ap;

        if (!c->opts.notify)
                return;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        redact_str(c, msg);
        c->opts.notify(c->opts.notify_ctx, ev, msg);
}

static void notify(struct reg_client *c, enum reg_event ev, const char *fmt, ...)
{
        char msg[1024];
        va_list ap;

        if (!c->opts.notify)
                return;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        redact_str(c, msg);
        c->opts.notify(c->opts.notify_ctx, ev, msg);
}

/* ---- connections ---- */

static struct conn *conn_get(struct reg_client *c, struct kiln_error *err)
{
        struct conn *k;

        pthread_mutex_lock(&c->lock);
        k = c->pool;
        if (k)
                c->pool = k->next;
        pthread_mutex_unlock(&c->lock);
        if (k)
                return k;
        k = calloc(1, sizeof(*k));
        if (!k || !(k->h = curl_easy_init())) {
                free(k);
                kiln_error_set(err, KILN_E_NOMEM, "cannot create an HTTP handle");
                return NULL;
        }
        return k;
}

static void conn_put(struct reg_client *c, struct conn *k)
{
        if (!k)
                return;
        pthread_mutex_lock(&c->lock);
        k->next = c->pool;
        c->pool = k;
        pthread_mutex_unlock(&c->lock);
}

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

static bool body_has(const struct resp *r, const char *needle)
{
        size_t n = strlen(needle);

        for (size_t i = 0; r->body && i + n <= r->len; i++)
                if (!memcmp(r->body + i, needle, n))
                        return true;
        return false;
}

static void resp_reset(struct resp *r)
{
        free(r->body);
        free(r->location);
        free(r->content_type);
        free(r->digest);
        free(r->www_auth);
        free(r->range);
        free(r->link);
        free(r->retry_after);
        free(r->chunk_min);
        free(r->content_range);
        free(r->content_length);
        free(r->oci_subject);
        free(r->rl_limit);
        free(r->rl_remaining);
        r->oci_subject = r->rl_limit = r->rl_remaining = NULL;
        r->body = r->location = r->content_type = r->digest = r->www_auth = r->range = r->link =
                r->retry_after = r->chunk_min = r->content_range = r->content_length = NULL;
        r->len = 0;
        r->status = 0;
        r->truncated = false;
}

static void warning_seen(struct reg_client *c, const char *v)
{
        /* Warning: 299 - "text" (distribution-spec: show once, take no action) */
        const char *q = strchr(v, '"');
        char text[512];
        size_t n;

        if (!q)
                return;
        q++;
        n = strcspn(q, "\"");
        reg_sanitize(q, n, text, sizeof(text), 400);
        pthread_mutex_lock(&c->lock);
        for (size_t i = 0; i < c->n_warnings; i++)
                if (!strcmp(c->warnings[i], text)) {
                        pthread_mutex_unlock(&c->lock);
                        return;
                }
        if (c->n_warnings < MAX_WARNINGS)
                c->warnings[c->n_warnings++] = strdup(text);
        pthread_mutex_unlock(&c->lock);
        notify(c, REG_EVENT_WARNING, "registry '%s': %s", c->host, text);
}

static size_t on_header(char *buf, size_t size, size_t n, void *ud)
{
        struct resp *r = ud;
        size_t len = size * n, nlen;
        const char *colon = memchr(buf, ':', len);
        char **slot = NULL;
        const char *v, *end;

        if (len >= 5 && !strncmp(buf, "HTTP/", 5)) {
                /* a new response (after 100 Continue): forget the headers so far */
                long keep_status = r->status;
                char *b = r->body;
                size_t l = r->len, cap = r->cap;
                r->body = NULL;
                resp_reset(r);
                r->body = b;
                r->len = l;
                r->cap = cap;
                r->status = keep_status;
                return len;
        }
        if (!colon)
                return len;
        nlen = (size_t)(colon - buf);
#define H(name, field)                                                                             \
        else if (nlen == strlen(name) && !strncasecmp(buf, name, nlen)) slot = &r->field;
        if (0)
                ;
        H("location", location)
        H("content-type", content_type)
        H("docker-content-digest", digest)
        H("www-authenticate", www_auth)
        H("range", range)
        H("link", link)
        H("retry-after", retry_after)
        H("oci-chunk-min-length", chunk_min)
        H("content-range", content_range)
        H("content-length", content_length)
        H("oci-subject", oci_subject)
        H("ratelimit-limit", rl_limit)
        H("ratelimit-remaining", rl_remaining)
#undef H
        v = colon + 1;
        end = buf + len;
        while (v < end && (*v == ' ' || *v == '\t'))
                v++;
        while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
                end--;
        if (nlen == 7 && !strncasecmp(buf, "warning", 7) && r->c) {
                char *w = strndup(v, (size_t)(end - v) > 4096 ? 4096 : (size_t)(end - v));
                if (w)
                        warning_seen(r->c, w);
                free(w);
                return len;
        }
        if (!slot)
                return len;
        if (*slot && slot == &r->www_auth) {
                /* several WWW-Authenticate headers: join them as one list */
                char *j = kiln_strdupf("%s, %.*s", *slot, (int)(end - v), v);
                if (j) {
                        free(*slot);
                        *slot = j;
                }
                return len;
        }
        free(*slot);
        *slot = strndup(v, (size_t)(end - v));
        return len;
}

static size_t on_body(char *buf, size_t size, size_t n, void *ud)
{
        struct resp *r = ud;
        size_t len = size * n;

        if (!r->status)
                curl_easy_getinfo(r->h, CURLINFO_RESPONSE_CODE, &r->status);
        if (r->sink && (r->status == 200 || r->status == 206)) {
                const char *p = buf;
                size_t left = len;
                if (!r->checked) {
                        r->checked = true;
                        if (r->status == 206) {
                                /* N1: a 206 must start where we asked, or it is an error */
                                long long st = -1, en = -1;
                                if (!r->content_range ||
                                    reg_range_parse(r->content_range, &st, &en) < 0 ||
                                    st != (long long)r->sunk) {
                                        kiln_error_set(&r->sink_err, KILN_E_NETWORK,
                                                       "registry '%s' answered a range request with a wrong Content-Range",
                                                       r->c->host);
                                        r->sink_failed = true;
                                        r->bad_range = true;
                                        return 0;
                                }
                                r->skip = 0;
                        }
                }
                if (r->skip > 0) {
                        size_t s = (int64_t)left < r->skip ? left : (size_t)r->skip;
                        r->skip -= (int64_t)s;
                        p += s;
                        left -= s;
                }
                if (left && r->sink(r->sink_ctx, p, left, &r->sink_err) < 0) {
                        r->sink_failed = true;
                        return 0;
                }
                r->sunk += (int64_t)left;
                return len;
        }
        if (r->len + len > r->cap) {
                size_t take = r->cap - r->len;
                r->truncated = true;
                if (take == 0)
                        return 0; /* stop reading an oversized body; perform() keeps the status */
                len = take;
        }
        {
                char *nb = realloc(r->body, r->len + len + 1);
                if (!nb)
                        return 0;
                r->body = nb;
                memcpy(r->body + r->len, buf, len);
                r->len += len;
                r->body[r->len] = '\0';
        }
        return size * n;
}

struct upload {
        struct oci_reader *stream;
        bool used;
        bool failed;
        struct kiln_error err;
        int64_t sent;
};

static size_t on_read(char *buf, size_t size, size_t n, void *ud)
{
        struct upload *u = ud;
        ssize_t got;

        u->used = true;
        got = oci_reader_read(u->stream, buf, size * n, &u->err);
        if (got < 0) {
                u->failed = true;
                return CURL_READFUNC_ABORT;
        }
        u->sent += got;
        return (size_t)got;
}

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

static bool host_eq(const char *a, const char *b)
{
        return a && b && !strcasecmp(a, b);
}

static bool host_http_ok(struct reg_client *c, const char *host)
{
        if (host_eq(host, c->api_host))
                return c->http_ok;
        for (size_t i = 0; i < c->opts.n_insecure; i++)
                if (host_eq(host, c->opts.insecure_hosts[i]))
                        return true;
        return reg_host_is_loopback(host);
}

static bool host_insecure(struct reg_client *c, const char *host)
{
        if (c->insecure && host_eq(host, c->api_host))
                return true;
        for (size_t i = 0; i < c->opts.n_insecure; i++)
                if (host_eq(host, c->opts.insecure_hosts[i]))
                        return true;
        return false;
}

static int64_t mono_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The deadline of an attempt that moves n bytes, in s. */
static long deadline_s(const struct reg_options *o, int64_t n)
{
        long rate = o->deadline_min_rate > 0 ? o->deadline_min_rate : 1;

        return o->deadline_floor_s + (long)(n / rate);
}

/* Ends the attempt once its deadline has passed: the floor plus the larger of
 * what was expected, announced (Content-Length) and moved, at the minimum
 * rate.  curl calls it about once a second even while nothing arrives. */
static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
        struct resp *r = ud;
        int64_t n = r->expect;
        long limit;

        if (r->c->opts.deadline_floor_s <= 0)
                return 0;
        n = dltotal > n ? dltotal : n;
        n = dlnow > n ? dlnow : n;
        n = ultotal > n ? ultotal : n;
        n = ulnow > n ? ulnow : n;
        limit = deadline_s(&r->c->opts, n);
        if (mono_ms() - r->start_ms < (int64_t)limit * 1000)
                return 0;
        r->over_deadline = limit;
        return 1;
}

/* The URL without its query, for messages: queries carry upload state and signatures. */
static void url_for_msg(const char *url, char *out, size_t outlen)
{
        size_t n = strcspn(url, "?#");
        reg_sanitize(url, n, out, outlen, 200);
}

static int perform(struct reg_client *c, struct conn *k, const struct req *q, const char *url,
                   const char *auth_header, const char *extra, struct upload *up,
                   struct resp *r, struct kiln_error *err)
{
        struct curl_slist *hs = NULL;
        CURL *h = k->h;
        CURLcode cc;
        _cleanup_free_ char *host = reg_url_host(url);

        curl_easy_reset(h);
        k->errbuf[0] = '\0';
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, k->errbuf);
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_USERAGENT, "kiln/" KILN_VERSION);
        curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, host_http_ok(c, host) ? "http,https" : "https");
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, c->opts.connect_timeout_s);
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1024L);
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, c->opts.low_speed_time_s);
        curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
        /* HTTP/2 when a TLS server offers it (ALPN), HTTP/1.1 otherwise */
        curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
        curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 256L * 1024);
        curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, 2L * 1024 * 1024);
        /* proxies come from the environment as curl reads them, except for
         * loopback hosts, which are never proxied (as Go's ProxyFromEnvironment) */
        if (reg_host_is_loopback(host))
                curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
        reg_hosts_test_setopt(h);
        if (c->opts.ca_file)
                curl_easy_setopt(h, CURLOPT_CAINFO, c->opts.ca_file);
        if (host_insecure(c, host)) {
                curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
                curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
        }
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
        curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(h, CURLOPT_XFERINFODATA, r);
        r->h = h;
        r->c = c;
        r->expect = q->size > q->stream_len ? q->size : q->stream_len;
        r->start_ms = mono_ms();
        r->over_deadline = 0;
        for (struct curl_slist *s = q->headers; s; s = s->next)
                hs = curl_slist_append(hs, s->data);
        if (auth_header)
                hs = curl_slist_append(hs, auth_header);
        if (extra)
                hs = curl_slist_append(hs, extra);
        r->checked = false;
        if (!strcmp(q->method, "HEAD")) {
                curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
        } else if (!strcmp(q->method, "GET")) {
                curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
        } else if (q->stream) {
                curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
                curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, q->method);
                curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
                curl_easy_setopt(h, CURLOPT_READDATA, up);
                curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)q->stream_len);
                hs = curl_slist_append(hs, "Expect:");
        } else {
                curl_easy_setopt(h, CURLOPT_POST, 1L);
                curl_easy_setopt(h, CURLOPT_POSTFIELDS, q->body ? q->body : "");
                curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->body_len);
                if (strcmp(q->method, "POST"))
                        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, q->method);
                hs = curl_slist_append(hs, "Expect:");
                if (!q->has_body && !q->body_len)
                        hs = curl_slist_append(hs, "Content-Type:");
        }
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hs);
        pthread_mutex_lock(&c->lock);
        c->stats.requests++;
        pthread_mutex_unlock(&c->lock);
        cc = curl_easy_perform(h);
        curl_slist_free_all(hs);
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
        r->curl_code = (int)cc;
        if (c->opts.debug && cc == CURLE_OK) {
                long v = 0;
                char u[256];
                curl_easy_getinfo(h, CURLINFO_HTTP_VERSION, &v);
                url_for_msg(url, u, sizeof(u));
                notify(c, REG_EVENT_DEBUG, "%s %s -> %ld (HTTP/%s)", q->method, u, r->status,
                       v == CURL_HTTP_VERSION_2_0 ? "2" : v == CURL_HTTP_VERSION_3 ? "3"
                       : v == CURL_HTTP_VERSION_1_0 ? "1.0" : "1.1");
        }
        if (cc == CURLE_WRITE_ERROR && r->truncated && !r->sink_failed && r->status)
                cc = CURLE_OK; /* we stopped an oversized body: the status stands */
        if (cc != CURLE_OK) {
                char u[256];
                url_for_msg(url, u, sizeof(u));
                if (r->sink_failed) {
                        *err = r->sink_err;
                        return -2;
                }
                if (up && up->failed) {
                        *err = up->err;
                        return -2;
                }
                if (r->over_deadline) {
                        /* retried like a timeout: another attempt may be faster */
                        kiln_error_set(err, KILN_E_NETWORK,
                                       "%s '%s' failed: not complete within its deadline of %ld s",
                                       q->method, u, r->over_deadline);
                        return -1;
                }
                kiln_error_set(err, KILN_E_NETWORK, "%s '%s' failed: %s", q->method, u,
                               k->errbuf[0] ? k->errbuf : curl_easy_strerror(cc));
                /* N3/N4: transient transport errors are retried; TLS, protocol and
                 * name errors are not (fail closed, fail fast) */
                switch (cc) {
                case CURLE_COULDNT_CONNECT:
                case CURLE_OPERATION_TIMEDOUT:
                case CURLE_SEND_ERROR:
                case CURLE_RECV_ERROR:
                case CURLE_GOT_NOTHING:
                case CURLE_PARTIAL_FILE:
                case CURLE_HTTP2:
                case CURLE_HTTP2_STREAM:
                        return -1;
                default:
                        return -3;
                }
        }
        return 0;
}

/* ---- errors ---- */

static enum kiln_errc status_code(long status)
{
        switch (status) {
        case 401:
        case 403: return KILN_E_AUTH;
        case 404: return KILN_E_NOT_FOUND;
        case 413: return KILN_E_LIMIT;
        default: return KILN_E_NETWORK;
        }
}

/* A 429 that retries did not mend (Docker Hub's pull limit answers
 * TOOMANYREQUESTS for hours): one line saying what it is and what helps. */
static int too_many_requests(struct reg_client *c, const struct resp *r, const char *detail,
                             struct kiln_error *err)
{
        char lim[96] = "";
        long n, w;

        if (r->rl_limit && reg_ratelimit_parse(r->rl_limit, &n, &w) == 0)
                snprintf(lim, sizeof(lim), "; limit %ld per %ld s", n, w);
        /* the advice first, no URL: a long prefix (the places of a copy) may cut the end */
        return kiln_error_set(err, KILN_E_LIMIT,
                              "registry '%s' is rate limiting requests: log in ('kiln login %s') for a higher limit, pull through a mirror ('--mirror %s=HOST') or a pull-through cache, or wait (429%s%s%s)",
                              c->host, c->host, c->host, lim, *detail ? ": " : "", detail);
}

/* Docker Hub's pull limit: waiting seconds does not help, so it is not
 * retried (a Retry-After says otherwise and is honoured). */
static bool pull_limit_hit(const struct resp *r)
{
        long n, w;

        if (r->status != 429 || r->retry_after)
                return false;
        if (r->rl_remaining && reg_ratelimit_parse(r->rl_remaining, &n, &w) == 0 && n == 0)
                return true;
        return body_has(r, "TOOMANYREQUESTS");
}

/* "GET '/v2/x/manifests/y': 404: MANIFEST_UNKNOWN: manifest unknown" */
static int http_error(struct reg_client *c, const char *method, const char *url,
                      struct resp *r, struct kiln_error *err)
{
        char u[256], detail[300] = "";
        enum kiln_errc code = status_code(r->status);
        json_t *j = NULL;

        url_for_msg(url, u, sizeof(u));
        /* a body may echo the request's Authorization: cut kiln's secrets out
         * before anything is taken from it (and from the JSON strings, where
         * escapes may hide them from the raw bytes) */
        if (r->body && r->len)
                redact(c, r->body, &r->len);
        if (r->body && r->len)
                j = json_loadb(r->body, r->len, 0, NULL);
        if (json_is_array(json_object_get(j, "errors"))) {
                json_t *e;
                size_t i, o = 0;
                json_array_foreach(json_object_get(j, "errors"), i, e) {
                        const char *ec = json_string_value(json_object_get(e, "code"));
                        const char *em = json_string_value(json_object_get(e, "message"));
                        char sc[64], sm[160];
                        _cleanup_free_ char *ecc = NULL, *emc = NULL;
                        if (i == 3)
                                break;
                        ecc = strdup(ec ? ec : "");
                        emc = strdup(em ? em : "");
                        if (!ecc || !emc)
                                break;
                        redact_str(c, ecc);
                        redact_str(c, emc);
                        reg_sanitize(ecc, strlen(ecc), sc, sizeof(sc), 60);
                        reg_sanitize(emc, strlen(emc), sm, sizeof(sm), 150);
                        o += (size_t)snprintf(detail + o, o < sizeof(detail) ? sizeof(detail) - o : 0,
                                              "%s%s%s%s", i ? "; " : "", sc, *sm ? ": " : "", sm);
                        if (o >= sizeof(detail))
                                break;
                        if (ec && (!strcmp(ec, "MANIFEST_INVALID") || !strcmp(ec, "NAME_INVALID") ||
                                   !strcmp(ec, "TAG_INVALID") || !strcmp(ec, "DIGEST_INVALID")))
                                code = KILN_E_INVALID;
                        if (ec && !strcmp(ec, "UNSUPPORTED"))
                                code = KILN_E_UNSUPPORTED;
                }
        } else if (r->body && r->len) {
                reg_sanitize(r->body, r->len, detail, sizeof(detail), 120);
        }
        json_decref(j);
        if (r->status == 429)
                too_many_requests(c, r, detail, err);
        else
                kiln_error_set(err, code, "registry '%s' answered %ld to %s '%s'%s%s", c->host,
                               r->status, method, u, *detail ? ": " : "", detail);
        if (err)
                redact_str(c, err->msg);
        return -1;
}

/* ---- auth ---- */

static void load_creds(struct reg_client *c, struct kiln_error *err)
{
        /* under c->lock */
        if (c->creds_loaded)
                return;
        c->creds_loaded = true;
        if (c->opts.username && c->opts.password) {
                c->creds.username = strdup(c->opts.username);
                c->creds.password = strdup(c->opts.password);
                c->have_creds = c->creds.username && c->creds.password;
                return;
        }
        if (reg_creds_lookup(c->opts.authfile, c->host, &c->creds, &c->have_creds, err) < 0)
                c->have_creds = false;
}

/* base64("user:password"), the credential of a Basic Authorization header */
static char *basic_b64(const struct reg_creds *cr)
{
        _cleanup_free_ char *plain = kiln_strdupf("%s:%s", cr->username, cr->password);
        char *enc;
        size_t n;

        if (!plain)
                return NULL;
        n = strlen(plain);
        enc = malloc(4 * ((n + 2) / 3) + 1);
        if (enc)
                EVP_EncodeBlock((unsigned char *)enc, (const unsigned char *)plain, (int)n);
        memset(plain, 0, n);
        return enc;
}

static char *basic_header(const struct reg_creds *cr)
{
        char *enc = basic_b64(cr), *out;

        if (!enc)
                return NULL;
        out = kiln_strdupf("Authorization: Basic %s", enc);
        memset(enc, 0, strlen(enc));
        free(enc);
        return out;
}

/* ---- redaction: kiln's own secrets never reach a message ---- */

/* Shorter values are not looked for: cutting every "ab" out of a message
 * would garble it while hiding next to nothing. */
#define SECRET_MIN 4

/* Replaces each s in buf[0..*len) with "***" (never longer than s). */
static void cut_secret(char *buf, size_t *len, const char *s, size_t n)
{
        if (!s || n < SECRET_MIN)
                return;
        for (size_t i = 0; i + n <= *len;) {
                if (memcmp(buf + i, s, n)) {
                        i++;
                        continue;
                }
                memcpy(buf + i, "***", 3);
                memmove(buf + i + 3, buf + i + n, *len - i - n);
                *len -= n - 3;
                i += 3;
        }
}

static void cut_str(char *buf, size_t *len, const char *s)
{
        cut_secret(buf, len, s, s ? strlen(s) : 0);
}

/* Cuts the password (as is and URL-encoded), the Basic credential (with and
 * without its '=' padding), the identity (refresh) token and every bearer
 * token of c out of buf, an error body or a message about to be shown. */
static void redact(struct reg_client *c, char *buf, size_t *len)
{
        pthread_mutex_lock(&c->lock);
        if (c->have_creds) {
                cut_str(buf, len, c->creds.identity_token);
                if (c->creds.username && c->creds.password) {
                        char *b = basic_b64(&c->creds);
                        char *e = curl_easy_escape(NULL, c->creds.password, 0);
                        if (b) {
                                cut_str(buf, len, b);
                                cut_secret(buf, len, b, strcspn(b, "="));
                                memset(b, 0, strlen(b));
                        }
                        cut_str(buf, len, e);
                        cut_str(buf, len, c->creds.password);
                        if (e)
                                memset(e, 0, strlen(e));
                        free(b);
                        curl_free(e);
                }
        }
        for (size_t i = 0; i < c->n_tokens; i++)
                cut_str(buf, len, c->tokens[i].value);
        pthread_mutex_unlock(&c->lock);
        buf[*len] = '\0';
}

static void redact_str(struct reg_client *c, char *s)
{
        size_t n = strlen(s);

        redact(c, s, &n);
}

static char *scope_key(struct reg_client *c, const char *scope2)
{
        if (!c->repo)
                return strdup("");
        return kiln_strdupf("repository:%s:%s%s%s", c->repo, c->push ? "pull,push" : "pull",
                            scope2 ? " " : "", scope2 ? scope2 : "");
}

static bool retryable_status(long s);
static long backoff_ms(struct reg_client *c, unsigned attempt);
static void sleep_ms(long ms);

/* Fetches a token for scopes (space separated) from the realm. */
static int fetch_token(struct reg_client *c, struct conn *k, const char *scopes,
                       struct token *ret, struct kiln_error *err)
{
        _cleanup_free_ char *url = NULL, *realm_host = NULL, *auth = NULL, *form = NULL;
        struct resp r = {.cap = TOKEN_BODY_MAX};
        struct req q = {.method = "GET"};
        _cleanup_json_ json_t *j = NULL;
        const char *tok;
        json_int_t expires = 0;
        int rc = -1;
        bool post = false;

        pthread_mutex_lock(&c->lock);
        url = strdup(c->realm);
        load_creds(c, err);
        if (c->have_creds && c->creds.username && c->creds.password)
                auth = basic_header(&c->creds);
        if (c->have_creds && c->creds.identity_token) {
                /* OAuth2 refresh-token grant (distribution token spec, oauth.md) */
                char *rt = curl_easy_escape(NULL, c->creds.identity_token, 0);
                char *sv = curl_easy_escape(NULL, c->service ? c->service : "", 0);
                form = kiln_strdupf("grant_type=refresh_token&refresh_token=%s&service=%s&client_id=kiln",
                                    rt ? rt : "", sv ? sv : "");
                curl_free(rt);
                curl_free(sv);
                post = form != NULL;
        } else if (c->opts.force_oauth && c->have_creds && c->creds.username &&
                   c->creds.password) {
                /* OAuth2 password grant, as `docker login` asks (oauth.md) */
                char *us = curl_easy_escape(NULL, c->creds.username, 0);
                char *pw = curl_easy_escape(NULL, c->creds.password, 0);
                char *sv = curl_easy_escape(NULL, c->service ? c->service : "", 0);
                form = kiln_strdupf("grant_type=password&username=%s&password=%s&service=%s"
                                    "&client_id=kiln&access_type=offline",
                                    us ? us : "", pw ? pw : "", sv ? sv : "");
                if (pw)
                        memset(pw, 0, strlen(pw));
                curl_free(us);
                curl_free(pw);
                curl_free(sv);
                post = form != NULL;
        }
        if (c->service) {
                char *u2 = reg_url_add_query(url, "service", c->service);
                free(url);
                url = u2;
        }
        pthread_mutex_unlock(&c->lock);
        if (!url)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        realm_host = reg_url_host(url);
        /* C2: no credentials to a plain-http realm unless that host may use http */
        if (!strncasecmp(url, "http://", 7) && !host_http_ok(c, realm_host))
                return kiln_error_set(err, KILN_E_AUTH,
                                      "refusing token realm '%s' of registry '%s': plain http",
                                      realm_host ? realm_host : "?", c->host);
        {
                char *s = strdup(scopes), *save = NULL;
                if (!s)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                for (char *t = strtok_r(s, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
                        char *u2;
                        if (post) {
                                char *e = curl_easy_escape(NULL, t, 0);
                                char *f2 = kiln_strdupf("%s&scope=%s", form, e ? e : "");
                                curl_free(e);
                                free(form);
                                form = f2;
                        }
                        u2 = reg_url_add_query(url, "scope", t);
                        free(url);
                        url = u2;
                        if (!url || (post && !form))
                                break;
                }
                free(s);
                if (!url)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        if (post) {
                struct req pq = {.method = "POST", .body = form, .body_len = strlen(form),
                                 .has_body = true};
                char *base = strndup(url, strcspn(url, "?"));
                pq.headers = curl_slist_append(NULL,
                                               "Content-Type: application/x-www-form-urlencoded");
                rc = base ? perform(c, k, &pq, base, NULL, NULL, NULL, &r, err) : -1;
                curl_slist_free_all(pq.headers);
                free(base);
                memset(form, 0, strlen(form));
                if (rc == 0 && r.status == 404) {
                        /* the realm has no OAuth2 endpoint: GET it */
                        resp_reset(&r);
                        post = false;
                }
                if (rc < 0)
                        goto out;
        }
        if (!post) {
                /* the token server gets the same bounded retries as the registry */
                for (unsigned attempt = 0;; attempt++) {
                        int prc;
                        resp_reset(&r);
                        prc = perform(c, k, &q, url, auth, NULL, NULL, &r, err);
                        if (prc == 0 && !retryable_status(r.status))
                                break;
                        if (attempt >= c->opts.retries || prc < -1) {
                                if (prc < 0)
                                        goto out;
                                break;
                        }
                        sleep_ms(backoff_ms(c, attempt + 1));
                }
        }
        rc = -1;
        if (r.status != 200) {
                if (r.status == 401 || r.status == 403)
                        kiln_error_set(err, KILN_E_AUTH,
                                       "token server of registry '%s' refused the credentials (%ld)",
                                       c->host, r.status);
                else
                        http_error(c, "GET", url, &r, err);
                goto out;
        }
        if (r.truncated) {
                kiln_error_set(err, KILN_E_LIMIT, "token response of registry '%s' is over %d bytes",
                               c->host, TOKEN_BODY_MAX);
                goto out;
        }
        j = json_loadb(r.body ? r.body : "", r.len, 0, NULL);
        tok = json_string_value(json_object_get(j, "token"));
        if (!tok || !*tok)
                tok = json_string_value(json_object_get(j, "access_token"));
        if (!tok || !*tok) {
                kiln_error_set(err, KILN_E_AUTH, "token response of registry '%s' holds no token",
                               c->host);
                goto out;
        }
        if (json_is_integer(json_object_get(j, "expires_in")))
                expires = json_integer_value(json_object_get(j, "expires_in"));
        if (expires < TOKEN_MIN_LIFETIME)
                expires = TOKEN_MIN_LIFETIME;
        if (expires > 86400)
                expires = 86400;
        ret->value = strdup(tok);
        ret->scope = strdup(scopes);
        ret->expires = time(NULL) + (time_t)expires;
        if (!ret->value || !ret->scope) {
                free(ret->value);
                free(ret->scope);
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto out;
        }
        rc = 0;
out:
        if (r.body)
                memset(r.body, 0, r.len);
        resp_reset(&r);
        if (auth)
                memset(auth, 0, strlen(auth));
        return rc;
}

/* Under c->lock: a live cached token for key as a header in *ret.  A token
 * near its end is renewed before use: long pushes outlive tokens. */
static bool cached_token(struct reg_client *c, const char *key, bool force, char **ret)
{
        if (force)
                return false;
        for (size_t i = 0; i < c->n_tokens; i++) {
                if (strcmp(c->tokens[i].scope, key) || c->tokens[i].expires <= time(NULL) + 10)
                        continue;
                *ret = kiln_strdupf("Authorization: Bearer %s", c->tokens[i].value);
                return true;
        }
        return false;
}

/* The Authorization header for a request to the registry host, or NULL. */
static int auth_header(struct reg_client *c, struct conn *k, const char *scope2, bool force,
                       char **ret, struct kiln_error *err)
{
        _cleanup_free_ char *key = NULL;
        struct token t = {0};

        *ret = NULL;
        pthread_mutex_lock(&c->lock);
        if (c->auth == AUTH_NONE) {
                pthread_mutex_unlock(&c->lock);
                return 0;
        }
        if (c->auth == AUTH_BASIC) {
                load_creds(c, err);
                if (c->have_creds && c->creds.username && c->creds.password)
                        *ret = basic_header(&c->creds);
                pthread_mutex_unlock(&c->lock);
                if (!*ret)
                        return kiln_error_set(err, KILN_E_AUTH,
                                              "registry '%s' requires credentials; run 'kiln login %s'",
                                              c->host, c->host);
                return 0;
        }
        key = scope_key(c, scope2);
        if (!key) {
                pthread_mutex_unlock(&c->lock);
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        if (cached_token(c, key, force, ret)) {
                pthread_mutex_unlock(&c->lock);
                return *ret ? 0 : kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        pthread_mutex_unlock(&c->lock);
        /* one request per scope even when several threads start at once: the
         * first fetches, the others find its token */
        pthread_mutex_lock(&c->token_lock);
        pthread_mutex_lock(&c->lock);
        if (!force && cached_token(c, key, false, ret)) {
                pthread_mutex_unlock(&c->lock);
                pthread_mutex_unlock(&c->token_lock);
                return *ret ? 0 : kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        pthread_mutex_unlock(&c->lock);
        if (fetch_token(c, k, key, &t, err) < 0) {
                pthread_mutex_unlock(&c->token_lock);
                return -1;
        }
        *ret = kiln_strdupf("Authorization: Bearer %s", t.value);
        pthread_mutex_lock(&c->lock);
        {
                size_t slot = c->n_tokens;
                for (size_t i = 0; i < c->n_tokens; i++)
                        if (!strcmp(c->tokens[i].scope, key))
                                slot = i;
                if (slot == MAX_TOKENS)
                        slot = 0;
                if (slot < c->n_tokens) {
                        free(c->tokens[slot].scope);
                        free(c->tokens[slot].value);
                } else {
                        c->n_tokens++;
                }
                c->tokens[slot] = t;
        }
        pthread_mutex_unlock(&c->lock);
        pthread_mutex_unlock(&c->token_lock);
        return *ret ? 0 : kiln_error_set(err, KILN_E_NOMEM, "out of memory");
}

/* Learns the auth scheme from a 401's challenge.  Returns 0 when a retry
 * with credentials makes sense, -1 with err set otherwise. */
static int learn_challenge(struct reg_client *c, const struct resp *r, struct kiln_error *err)
{
        struct reg_challenge ch[REG_MAX_CHALLENGES];
        int n;
        int rc = -1;

        if (!r->www_auth)
                return kiln_error_set(err, KILN_E_AUTH,
                                      "registry '%s' answered 401 without a WWW-Authenticate challenge",
                                      c->host);
        n = reg_www_auth_parse(r->www_auth, ch, REG_MAX_CHALLENGES, err);
        if (n < 0)
                return -1;
        pthread_mutex_lock(&c->lock);
        for (int i = 0; i < n; i++) {
                if (!strcmp(ch[i].scheme, "bearer") && ch[i].realm) {
                        free(c->realm);
                        free(c->service);
                        c->realm = steal_ptr(&ch[i].realm);
                        c->service = steal_ptr(&ch[i].service);
                        c->auth = AUTH_BEARER;
                        rc = 0;
                        break;
                }
        }
        if (rc < 0) {
                for (int i = 0; i < n; i++)
                        if (!strcmp(ch[i].scheme, "basic")) {
                                c->auth = AUTH_BASIC;
                                rc = 0;
                        }
        }
        pthread_mutex_unlock(&c->lock);
        if (rc < 0)
                kiln_error_set(err, KILN_E_UNSUPPORTED,
                               "registry '%s' asks for an unsupported authentication scheme '%s'",
                               c->host, ch[0].scheme);
        for (int i = 0; i < n; i++)
                reg_challenge_release(&ch[i]);
        return rc;
}

/* ---- the request loop: auth, redirects, retries ---- */

static bool retryable_status(long s)
{
        return s == 408 || s == 429 || (s >= 500 && s <= 599 && s != 501 && s != 505);
}

static long backoff_ms(struct reg_client *c, unsigned attempt)
{
        long ms = c->opts.retry_base_ms;
        unsigned jitter;

        for (unsigned i = 1; i < attempt && ms < 30000; i++)
                ms *= 2;
        if (ms > 30000)
                ms = 30000;
        /* full jitter in [ms/2, ms] so that parallel clients spread out */
        {
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                jitter = (unsigned)ts.tv_nsec ^ (unsigned)(uintptr_t)&ts;
        }
        return ms / 2 + (ms > 1 ? (long)(jitter % (unsigned)(ms / 2 + 1)) : 0);
}

static void sleep_ms(long ms)
{
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static int ensure_base(struct reg_client *c, struct conn *k, struct kiln_error *err);

/* Runs q against the registry, following redirects (GET/HEAD only),
 * answering one 401 with credentials and retrying transient failures.
 * On return r holds the final response (any status); -1 only when no
 * response came, or auth failed, or the body sink failed. */
static int request(struct reg_client *c, const struct req *q, struct resp *r,
                   struct kiln_error *err)
{
        _cleanup_free_ char *url = strdup(q->url);
        struct conn *k = conn_get(c, err);
        struct upload up = {.stream = q->stream};
        unsigned attempt = 0, redirects = 0;
        bool reauthed = false;
        bool use_range = true; /* false once a resume range was refused */
        struct timespec start, now;
        int rc = -1;

        if (!k)
                return -1;
        if (!url) {
                conn_put(c, k);
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        clock_gettime(CLOCK_MONOTONIC, &start);
        for (;;) {
                _cleanup_free_ char *host = reg_url_host(url);
                _cleanup_free_ char *auth = NULL;
                struct kiln_error e2 = KILN_ERROR_INIT;
                int prc;
                long wait_ms = -1;
                char range[64];

                resp_reset(r);
                if (!q->no_auth && host_eq(host, c->api_host) &&
                    auth_header(c, k, q->scope2, reauthed && attempt == 0, &auth, err) < 0)
                        goto out;
                range[0] = '\0';
                if (r->sink && r->sunk > 0) {
                        /* N1: resume a dropped blob download where the sink stopped;
                         * the bytes the sink has are skipped if the answer is a 200 */
                        if (use_range)
                                snprintf(range, sizeof(range), "Range: bytes=%lld-",
                                         (long long)r->sunk);
                        r->skip = r->sunk;
                }
                prc = perform(c, k, q, url, auth, range[0] ? range : NULL,
                              q->stream ? &up : NULL, r, &e2);
                if (auth)
                        memset(auth, 0, strlen(auth));
                if (range[0] && ((prc == 0 && r->status == 416) || (prc == -2 && r->bad_range)) &&
                    attempt < c->opts.retries) {
                        /* a resume refused (416) or answered from another offset:
                         * download again from the start, without Range */
                        char u[256];
                        url_for_msg(url, u, sizeof(u));
                        notify(c, REG_EVENT_RETRY, "%s '%s': the range request was %s, starting again from 0",
                               q->method, u, prc == 0 ? "refused" : "answered from another offset");
                        use_range = false;
                        r->sink_failed = r->bad_range = false;
                        attempt++;
                        continue;
                }
                if (prc == -2 || prc == -3) {
                        *err = e2;
                        goto out;
                }
                if (prc == 0 && r->status >= 300 && r->status < 400 && r->location &&
                    (!strcmp(q->method, "GET") || !strcmp(q->method, "HEAD"))) {
                        char *next = NULL;
                        _cleanup_free_ char *nhost = NULL;
                        if (++redirects > MAX_REDIRECTS) {
                                kiln_error_set(err, KILN_E_NETWORK,
                                               "too many redirects from registry '%s'", c->host);
                                goto out;
                        }
                        if (reg_url_resolve(url, r->location, &next, err) < 0)
                                goto out;
                        nhost = reg_url_host(next);
                        if (!strncasecmp(next, "http://", 7) && !host_http_ok(c, nhost)) {
                                free(next);
                                kiln_error_set(err, KILN_E_NETWORK,
                                               "refusing redirect from registry '%s' to plain http on '%s'",
                                               c->host, nhost ? nhost : "?");
                                goto out;
                        }
                        free(url);
                        url = next;
                        continue;
                }
                if (prc == 0 && r->status == 401 && host_eq(host, c->api_host) && !q->no_auth &&
                    !reauthed) {
                        /* learn or refresh credentials once; a same-host 401 during a
                         * long push means the token expired */
                        reauthed = true;
                        if (r->www_auth && strstr(r->www_auth, "insufficient_scope"))
                                notify(c, REG_EVENT_RETRY,
                                       "registry '%s': insufficient scope, asking again", c->host);
                        if (learn_challenge(c, r, err) < 0)
                                goto out;
                        if (!q->stream || !up.used) {
                                attempt = 0;
                                continue;
                        }
                        /* the streamed body is gone: the caller restarts the upload,
                         * which asks for a fresh token */
                        {
                                char u[256];
                                url_for_msg(url, u, sizeof(u));
                                kiln_error_set(err, KILN_E_NETWORK,
                                               "upload interrupted: registry '%s' answered 401 to %s '%s'",
                                               c->host, q->method, u);
                        }
                        goto out;
                }
                if (prc == 0 && (!retryable_status(r->status) || pull_limit_hit(r))) {
                        rc = 0;
                        goto out;
                }
                if (prc == 0 && r->retry_after) {
                        /* R3: honoured up to the cap; a registry asking for longer
                         * is not asked again sooner than it said: fail now, with a
                         * limit error, which no caller retries or restarts */
                        long s = reg_retry_after_parse(r->retry_after, time(NULL),
                                                       c->opts.retry_after_cap_s + 1);
                        if (s > c->opts.retry_after_cap_s) {
                                char u[256], v[64];
                                url_for_msg(url, u, sizeof(u));
                                reg_sanitize(r->retry_after, strlen(r->retry_after), v, sizeof(v),
                                             40);
                                kiln_error_set(err, KILN_E_LIMIT,
                                               "registry '%s' answered %ld to %s '%s' with Retry-After '%s', longer than the %ld s kiln waits",
                                               c->host, r->status, q->method, u, v,
                                               c->opts.retry_after_cap_s);
                                goto out;
                        }
                        if (s >= 0)
                                wait_ms = s * 1000;
                }
                /* a failure or a transient status: retry when the body can be replayed */
                if (q->stream && up.used) {
                        if (prc == 0) {
                                rc = 0;
                                goto out;
                        }
                        *err = e2;
                        kiln_error_prefix(err, "upload interrupted");
                        goto out;
                }
                clock_gettime(CLOCK_MONOTONIC, &now);
                if (attempt >= (q->no_retry ? 0 : c->opts.retries) ||
                    now.tv_sec - start.tv_sec + (wait_ms > 0 ? wait_ms / 1000 : 0) >=
                            c->opts.retry_max_total_s) {
                        if (prc == 0) {
                                rc = 0;
                                goto out;
                        }
                        *err = e2;
                        if (attempt)
                                kiln_error_prefix(err, "after %u retries", attempt);
                        goto out;
                }
                attempt++;
                if (wait_ms < 0)
                        wait_ms = backoff_ms(c, attempt);
                {
                        char u[256];
                        url_for_msg(url, u, sizeof(u));
                        if (prc == 0)
                                notify(c, REG_EVENT_RETRY, "%s '%s': %ld, retry %u in %ld ms",
                                       q->method, u, r->status, attempt, wait_ms);
                        else
                                notify(c, REG_EVENT_RETRY, "%s, retry %u in %ld ms", e2.msg,
                                       attempt, wait_ms);
                }
                pthread_mutex_lock(&c->lock);
                c->stats.retries++;
                pthread_mutex_unlock(&c->lock);
                sleep_ms(wait_ms);
        }
out:
        if (rc == 0 && q->stream) {
                pthread_mutex_lock(&c->lock);
                c->stats.bytes_up += up.sent;
                pthread_mutex_unlock(&c->lock);
        }
        conn_put(c, k);
        return rc;
}

/* ---- client ---- */

struct reg_client *reg_client_new(const char *host, const char *repo,
                                  const struct reg_options *opts, bool push,
                                  struct kiln_error *err)
{
        struct reg_client *c;

        pthread_once(&curl_once, curl_init_once);
        c = calloc(1, sizeof(*c));
        if (!c) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        if (opts)
                c->opts = *opts;
        else
                reg_options_init(&c->opts);
        c->host = strdup(host);
        c->api_host = strdup(reg_host_api(host));
        c->repo = repo ? strdup(repo) : NULL;
        c->push = push;
        pthread_mutex_init(&c->lock, NULL);
        pthread_mutex_init(&c->probe_lock, NULL);
        pthread_mutex_init(&c->token_lock, NULL);
        if (!c->host || !c->api_host || (repo && !c->repo)) {
                reg_client_free(c);
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        if (repo && oci_repo_path_check(repo, err) < 0) {
                reg_client_free(c);
                return NULL;
        }
        c->insecure = host_insecure(c, host);
        c->http_ok = c->insecure || reg_host_is_loopback(host);
        return c;
}

void reg_client_free(struct reg_client *c)
{
        if (!c)
                return;
        while (c->pool) {
                struct conn *k = c->pool;
                c->pool = k->next;
                curl_easy_cleanup(k->h);
                free(k);
        }
        for (size_t i = 0; i < c->n_tokens; i++) {
                memset(c->tokens[i].value, 0, strlen(c->tokens[i].value));
                free(c->tokens[i].value);
                free(c->tokens[i].scope);
        }
        for (size_t i = 0; i < c->n_warnings; i++)
                free(c->warnings[i]);
        reg_creds_release(&c->creds);
        pthread_mutex_destroy(&c->lock);
        pthread_mutex_destroy(&c->probe_lock);
        pthread_mutex_destroy(&c->token_lock);
        free(c->realm);
        free(c->service);
        free(c->base);
        free(c->host);
        free(c->api_host);
        free(c->repo);
        free(c);
}

void reg_client_stats(struct reg_client *c, struct reg_stats *ret)
{
        pthread_mutex_lock(&c->lock);
        *ret = c->stats;
        pthread_mutex_unlock(&c->lock);
}

/* Decides the scheme with GET /v2/ (https first; http where allowed) and
 * learns the auth challenge. */
static int probe_base(struct reg_client *c, struct kiln_error *err);

static int ensure_base(struct reg_client *c, struct conn *k, struct kiln_error *err)
{
        int rc;

        (void)k;
        pthread_mutex_lock(&c->lock);
        rc = c->pinged;
        pthread_mutex_unlock(&c->lock);
        if (rc)
                return 0;
        pthread_mutex_lock(&c->probe_lock);
        rc = probe_base(c, err);
        pthread_mutex_unlock(&c->probe_lock);
        return rc;
}

static int probe_base(struct reg_client *c, struct kiln_error *err)
{
        static const char *const tls_first[] = {"https", "http"};
        /* a loopback host is asked over http first: the https attempt costs a CA
         * bundle load and a handshake (~0.1 s) on every run; an answer that is not
         * a registry's (a TLS server answers 400) moves on to https.  Both are
         * asked once; when neither answered like a registry, http is asked again
         * with the usual retries (a busy or flaky server, not a TLS one). */
        static const char *const http_first[] = {"http", "https", "http"};
        bool loop_first = !c->insecure && reg_host_is_loopback(c->host);
        const char *const *schemes = loop_first ? http_first : tls_first;
        size_t n = loop_first ? 3 : 2;
        struct kiln_error first = KILN_ERROR_INIT;

        pthread_mutex_lock(&c->lock);
        if (c->pinged) {
                pthread_mutex_unlock(&c->lock);
                return 0;
        }
        pthread_mutex_unlock(&c->lock);
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *url = kiln_strdupf("%s://%s/v2/", schemes[i], c->api_host);
                struct req q = {.method = "GET", .cap = ERROR_BODY_MAX, .no_auth = true};
                struct resp r = {.cap = ERROR_BODY_MAX};
                struct kiln_error e = KILN_ERROR_INIT;
                bool verify_failed;
                int rc;

                if (!url)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                if (!strcmp(schemes[i], "http") && !c->http_ok)
                        break;
                q.url = url;
                q.no_retry = loop_first && i < 2;
                rc = request(c, &q, &r, &e);
                verify_failed = r.curl_code == CURLE_PEER_FAILED_VERIFICATION;
                if (loop_first && i == 0 && (rc < 0 || (r.status != 200 && r.status != 401))) {
                        resp_reset(&r);
                        continue;
                }
                if (loop_first && i == 2 && rc == 0 && retryable_status(r.status)) {
                        http_error(c, "GET", url, &r, err);
                        resp_reset(&r);
                        return -1;
                }
                if (rc < 0) {
                        if (i == 0)
                                first = e;
                        resp_reset(&r);
                        /* N4: a host that may speak http is tried with http when it does
                         * not speak TLS; a certificate that fails verification is an
                         * error (fail closed) unless the host is --insecure-registry */
                        if (i + 1 < n && c->http_ok && !verify_failed)
                                continue;
                        if (verify_failed)
                                kiln_error_prefix(&e, "TLS verification failed for registry '%s' (use --ca-file, or --insecure-registry %s)",
                                                  c->host, c->host);
                        *err = e;
                        return -1;
                }
                if (r.status == 401) {
                        if (learn_challenge(c, &r, err) < 0) {
                                resp_reset(&r);
                                return -1;
                        }
                } else if (r.status != 200) {
                        /* some registries answer 404 here; the API calls will tell */
                }
                resp_reset(&r);
                pthread_mutex_lock(&c->lock);
                free(c->base);
                c->base = kiln_strdupf("%s://%s", schemes[i], c->api_host);
                c->pinged = true;
                pthread_mutex_unlock(&c->lock);
                return c->base ? 0 : kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        *err = first;
        return -1;
}

int reg_client_ping(struct reg_client *c, struct kiln_error *err)
{
        _cleanup_free_ char *url = NULL;
        struct req q = {.method = "GET", .cap = ERROR_BODY_MAX};
        struct resp r = {.cap = ERROR_BODY_MAX};
        int rc = -1;

        if (ensure_base(c, NULL, err) < 0)
                return -1;
        pthread_mutex_lock(&c->lock);
        /* force the credentials to be used even when the registry is open */
        if (c->auth == AUTH_NONE) {
                pthread_mutex_unlock(&c->lock);
                return 0;
        }
        pthread_mutex_unlock(&c->lock);
        url = kiln_strdupf("%s/v2/", c->base);
        if (!url)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        q.url = url;
        if (request(c, &q, &r, err) < 0)
                goto out;
        if (r.status != 200) {
                if (r.status == 401)
                        kiln_error_set(err, KILN_E_AUTH, "registry '%s' refused the credentials",
                                       c->host);
                else
                        http_error(c, "GET", url, &r, err);
                goto out;
        }
        rc = 0;
out:
        resp_reset(&r);
        return rc;
}

/* Docker Hub sends RateLimit-Limit and RateLimit-Remaining ("100;w=21600")
 * on manifest answers: kept in the stats, and fewer than 10% left is told
 * once per process (a CI job pulls many images). */
static void ratelimit_seen(struct reg_client *c, const struct resp *r)
{
        static pthread_mutex_t once_lock = PTHREAD_MUTEX_INITIALIZER;
        static bool warned;
        long lim, left, w, w2;
        bool tell = false;

        if (!r->rl_limit || !r->rl_remaining || reg_ratelimit_parse(r->rl_limit, &lim, &w) < 0 ||
            reg_ratelimit_parse(r->rl_remaining, &left, &w2) < 0)
                return;
        pthread_mutex_lock(&c->lock);
        c->stats.ratelimit_known = true;
        c->stats.ratelimit_limit = lim;
        c->stats.ratelimit_remaining = left;
        c->stats.ratelimit_window_s = w;
        pthread_mutex_unlock(&c->lock);
        pthread_mutex_lock(&once_lock);
        if (!warned && left * 10 < lim)
                tell = warned = true;
        pthread_mutex_unlock(&once_lock);
        if (tell)
                notify(c, REG_EVENT_WARNING,
                       "registry '%s': %ld of %ld manifest requests left in its rate-limit window of %ld s; log in ('kiln login %s') or pull through a mirror ('--mirror %s=HOST') before it answers 429",
                       c->host, left, lim, w, c->host, c->host);
}

static char *api_url(struct reg_client *c, const char *fmt, ...) KILN_PRINTF(2, 3);

static char *api_url(struct reg_client *c, const char *fmt, ...)
{
        char tail[1024];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(tail, sizeof(tail), fmt, ap);
        va_end(ap);
        return kiln_strdupf("%s/v2/%s/%s", c->base, c->repo, tail);
}

static bool ref_ok(const char *ref)
{
        return ref && (oci_tag_valid(ref) || oci_digest_valid(ref));
}

int reg_client_get_manifest(struct reg_client *c, const char *ref, char **ret_buf,
                            size_t *ret_len, char **ret_media_type, struct oci_digest *ret_digest,
                            struct kiln_error *err)
{
        _cleanup_free_ char *url = NULL;
        size_t cap = oci_manifest_limit();
        struct req q = {.method = "GET", .cap = cap + 1};
        struct resp r = {.cap = cap + 1};
        struct oci_digest want, got;
        bool by_digest = false;
        char *mt = NULL;
        int rc = -1;

        if (!ref_ok(ref))
                return kiln_error_set(err, KILN_E_INVALID, "invalid tag or digest '%s'",
                                      ref ? ref : "");
        if (oci_digest_valid(ref)) {
                if (oci_digest_parse(ref, &want, err) < 0)
                        return -1;
                by_digest = true;
        }
        if (ensure_base(c, NULL, err) < 0)
                return -1;
        url = api_url(c, "manifests/%s", ref);
        if (!url)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        q.url = url;
        q.headers = curl_slist_append(NULL, "Accept: " OCI_MANIFEST_ACCEPT);
        if (request(c, &q, &r, err) < 0)
                goto out;
        pthread_mutex_lock(&c->lock);
        c->stats.manifest_gets++;
        pthread_mutex_unlock(&c->lock);
        ratelimit_seen(c, &r);
        if (r.status != 200) {
                if (r.status == 404)
                        kiln_error_set(err, KILN_E_NOT_FOUND, "manifest '%s' not found in '%s/%s'",
                                       ref, c->host, c->repo);
                else
                        http_error(c, "GET", url, &r, err);
                goto out;
        }
        if (r.truncated || r.len > cap) {
                kiln_error_set(err, KILN_E_LIMIT,
                               "manifest '%s' is larger than the limit of %zu bytes", ref, cap);
                goto out;
        }
        if (by_digest) {
                struct oci_hasher h;
                if (oci_hasher_init(&h, want.alg, err) < 0)
                        goto out;
                oci_hasher_update(&h, r.body ? r.body : "", r.len);
                oci_hasher_final(&h, &got);
                oci_hasher_release(&h);
                if (!oci_digest_equal(&got, &want)) {
                        kiln_error_set(err, KILN_E_DIGEST,
                                       "manifest '%s' from '%s' does not match its digest: content hashes to '%s'",
                                       ref, c->host, got.str);
                        goto out;
                }
        } else {
                oci_digest_of_buffer(r.body ? r.body : "", r.len, &got);
                if (r.digest && str_has_prefix(r.digest, "sha256:") && strcmp(r.digest, got.str)) {
                        char s[160];
                        reg_sanitize(r.digest, strlen(r.digest), s, sizeof(s), 140);
                        notify(c, REG_EVENT_WARNING,
                               "registry '%s' says '%s:%s' is '%s', its content hashes to '%s'; using the content",
                               c->host, c->repo, ref, s, got.str);
                }
        }
        if (r.content_type) {
                size_t n = strcspn(r.content_type, "; \t");
                mt = strndup(r.content_type, n);
                if (mt && (!*mt || !strcmp(mt, "application/json") ||
                           !strcmp(mt, "application/octet-stream") || !strcmp(mt, "text/plain"))) {
                        free(mt);
                        mt = NULL; /* generic: the document's mediaType decides */
                }
        }
        if (mt && (!strcmp(mt, DOCKER_MT_SCHEMA1) || !strcmp(mt, DOCKER_MT_SCHEMA1_SIGNED))) {
                kiln_error_set(err, KILN_E_UNSUPPORTED,
                               "manifest '%s' is a docker schema1 manifest, which kiln does not read",
                               ref);
                free(mt);
                goto out;
        }
        *ret_buf = r.body ? steal_ptr(&r.body) : strdup("");
        *ret_len = r.len;
        *ret_media_type = mt;
        *ret_digest = got;
        rc = 0;
out:
        curl_slist_free_all(q.headers);
        resp_reset(&r);
        return rc;
}

int reg_client_head_manifest(struct reg_client *c, const char *ref, bool *ret_exists,
                             struct oci_digest *ret_digest, struct kiln_error *err)
{
        _cleanup_free_ char *url = NULL;
        struct req q = {.method = "HEAD", .cap = ERROR_BODY_MAX};
        struct resp r = {.cap = ERROR_BODY_MAX};
        int rc = -1;

        if (!ref_ok(ref))
                return kiln_error_set(err, KILN_E_INVALID, "invalid tag or digest '%s'", ref);
        if (ensure_base(c, NULL, err) < 0)
                return -1;
        url = api_url(c, "manifests/%s", ref);
        if (!url)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        q.url = url;
        q.headers = curl_slist_append(NULL, "Accept: " OCI_MANIFEST_ACCEPT);
        if (request(c, &q, &r, err) < 0)
                goto out;
        ratelimit_seen(c, &r);
        if (ret_digest) {
                struct kiln_error ign = KILN_ERROR_INIT;
                ret_digest->str[0] = '\0';
                if (!r.digest || oci_digest_parse(r.digest, ret_digest, &ign) < 0)
                        ret_digest->str[0] = '\0';
        }
        if (r.status == 200) {
                *ret_exists = true;
        } else if (r.status == 404) {
                *ret_exists = false;
        } else {
                http_error(c, "HEAD", url, &r, err);
                goto out;
        }
        rc = 0;
out:
        curl_slist_free_all(q.headers);
        resp_reset(&r);
        return rc;
}

static int put_manifest(struct reg_client *c, const char *ref, const char *media_type,
                        const char *buf, size_t len, bool *ret_subject_ack,
                        struct kiln_error *err);

int reg_client_put_manifest(struct reg_client *c, const char *ref, const char *media_type,
                            const char *buf, size_t len, struct kiln_error *err)
{
        return put_manifest(c, ref, media_type, buf, len, NULL, err);
}

static int put_manifest(struct reg_client *c, const char *ref, const char *media_type,
                        const char *buf, size_t len, bool *ret_subject_ack,
                        struct kiln_error *err)
{
        _cleanup_free_ char *url = NULL, *ct = NULL;
        struct req q = {.method = "PUT", .body = buf, .body_len = len, .has_body = true,
                        .cap = ERROR_BODY_MAX};
        struct resp r = {.cap = ERROR_BODY_MAX};
        struct oci_digest d;
        int rc = -1;

        if (!ref_ok(ref))
                return kiln_error_set(err, KILN_E_INVALID, "invalid tag or digest '%s'", ref);
        if (ensure_base(c, NULL, err) < 0)
                return -1;
        url = api_url(c, "manifests/%s", ref);
        ct = kiln_strdupf("Content-Type: %s", media_type);
        if (!url || !ct)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        q.url = url;
        q.headers = curl_slist_append(NULL, ct);
        for (int attempt = 0;; attempt++) {
                if (request(c, &q, &r, err) < 0)
                        goto out;
                /* A blob pushed a moment ago by a concurrent writer of the same
                 * repository can be briefly unknown to the manifest check (seen
                 * with 8 parallel pushes to distribution's filesystem storage):
                 * the blobs were all confirmed, so ask again, a bounded number of
                 * times. */
                if (r.status == 400 && attempt < 3 && r.body &&
                    body_has(&r, "MANIFEST_BLOB_UNKNOWN")) {
                        struct timespec ts = {0, 200000000L * (attempt + 1)};
                        nanosleep(&ts, NULL);
                        resp_reset(&r);
                        continue;
                }
                break;
        }
        if (r.status != 201 && r.status != 200) {
                http_error(c, "PUT", url, &r, err);
                goto out;
        }
        oci_digest_of_buffer(buf, len, &d);
        if (r.digest && str_has_prefix(r.digest, "sha256:") && strcmp(r.digest, d.str)) {
                char s[160];
                reg_sanitize(r.digest, strlen(r.digest), s, sizeof(s), 140);
                kiln_error_set(err, KILN_E_DIGEST,
                               "registry '%s' stored manifest '%s' as '%s'", c->host, d.str, s);
                goto out;
        }
        if (ret_subject_ack)
                *ret_subject_ack = r.oci_subject != NULL;
        rc = 0;
out:
        curl_slist_free_all(q.headers);
        resp_reset(&r);
        return rc;
}

int reg_client_delete_manifest(struct reg_client *c, const struct oci_digest *d,
                               struct kiln_error *err)
{
        _cleanup_free_ char *url = NULL;
        struct req q = {.method = "DELETE", .cap = ERROR_BODY_MAX};
        struct resp r = {.cap = ERROR_BODY_MAX};
        int rc = -1;

        if (ensure_base(c, NULL, err) < 0)
                return -1;
        url = api_url(c, "manifests/%s", d->str);
        if (!url)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        q.url = url;
        if (request(c, &q, &r, err) < 0)
                goto out;
        if (r.status != 202 && r.status != 200 && r.status != 204) {
                if (r.status == 404)
                        kiln_error_set(err, KILN_E_NOT_FOUND, "manifest '%s' not found in '%s/%s'",
                                       d->str, c->host, c->repo);
                else
                        http_error(c, "DELETE", url, &r, err);
                goto out;
        }
        rc = 0;
out:
        resp_reset(&r);
        return rc;
}

int reg_client_has_blob(struct reg_client *c, const struct oci_descriptor *d, bool *ret,
                        struct kiln_error *err)
{
        _cleanup_free_ char *url = NULL;
        struct req q = {.method = "HEAD", .cap = ERROR_BODY_MAX};
        struct resp r = {.cap = ERROR_BODY_MAX};
        int rc = -1;

        if (ensure_base(c, NULL, err) < 0)
                return -1;
        url = api_url(c, "blobs/%s", d->digest.str);
        if (!url)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        q.url = url;
        if (request(c, &q, &r, err) < 0)
                goto out;
        if (r.status == 200) {
                /* R1: a present blob of another size is treated as absent */
                *ret = !r.content_length || strtoll(r.content_length, NULL, 10) == d->size;
        } else if (r.status == 404) {
                *ret = false;
        } else {
                http_error(c, "HEAD", url, &r, err);
                goto out;
        }
        rc = 0;
out:
        resp_reset(&r);
        return rc;
}

/* ---- blob download: a thread runs the GET and hands its bytes over ----
 *
 * The transfer thread's write callback copies straight into the buffer of
 * the consumer's read() (one copy, no pipe): read() posts its buffer and
 * waits; the callback fills it, wakes the reader and waits for the next
 * buffer while it still holds bytes.  free() before the end makes the
 * callback fail, which stops the transfer. */

struct blob_stream {
        struct oci_reader base;
        struct reg_client *c;
        struct oci_descriptor d;
        char *url;
        pthread_t thread;
        bool started, joined;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        char *dst;       /* the reader's buffer, while it waits */
        size_t dst_len, filled;
        bool finished;   /* the transfer thread is done */
        bool closed;     /* the reader went away */
        int rc;
        struct kiln_error err;
};

static int sink_handoff(void *ctx, const void *buf, size_t len, struct kiln_error *err)
{
        struct blob_stream *b = ctx;
        const char *p = buf;

        pthread_mutex_lock(&b->lock);
        while (len) {
                size_t n;
                while (!b->closed && (!b->dst || b->filled == b->dst_len))
                        pthread_cond_wait(&b->cond, &b->lock);
                if (b->closed) {
                        pthread_mutex_unlock(&b->lock);
                        return kiln_error_set(err, KILN_E_IO, "blob '%s': reader went away",
                                              b->d.digest.str);
                }
                n = b->dst_len - b->filled < len ? b->dst_len - b->filled : len;
                memcpy(b->dst + b->filled, p, n);
                b->filled += n;
                p += n;
                len -= n;
                pthread_cond_broadcast(&b->cond);
        }
        pthread_mutex_unlock(&b->lock);
        return 0;
}

static void *blob_thread(void *arg)
{
        struct blob_stream *b = arg;
        struct req q = {.method = "GET", .url = b->url, .cap = ERROR_BODY_MAX, .size = b->d.size};
        struct resp r = {.cap = ERROR_BODY_MAX, .sink = sink_handoff, .sink_ctx = b};
        struct kiln_error e = KILN_ERROR_INIT;
        int rc = -1;

        if (request(b->c, &q, &r, &e) < 0)
                goto out;
        if (r.status != 200 && r.status != 206) {
                if (r.status == 404)
                        kiln_error_set(&e, KILN_E_NOT_FOUND, "blob '%s' not found in '%s/%s'",
                                       b->d.digest.str, b->c->host, b->c->repo);
                else
                        http_error(b->c, "GET", b->url, &r, &e);
                goto out;
        }
        pthread_mutex_lock(&b->c->lock);
        b->c->stats.bytes_down += r.sunk;
        pthread_mutex_unlock(&b->c->lock);
        rc = 0;
out:
        curl_slist_free_all(q.headers);
        resp_reset(&r);
        pthread_mutex_lock(&b->lock);
        b->rc = rc;
        b->err = e;
        b->finished = true;
        pthread_cond_broadcast(&b->cond);
        pthread_mutex_unlock(&b->lock);
        return NULL;
}

static void blob_join(struct blob_stream *b)
{
        if (b->started && !b->joined) {
                pthread_join(b->thread, NULL);
                b->joined = true;
        }
}

static ssize_t blob_read(struct oci_reader *rd, void *buf, size_t len, struct kiln_error *err)
{
        struct blob_stream *b = (struct blob_stream *)rd;
        size_t n;

        if (len == 0)
                return 0;
        pthread_mutex_lock(&b->lock);
        b->dst = buf;
        b->dst_len = len;
        b->filled = 0;
        pthread_cond_broadcast(&b->cond);
        while (b->filled == 0 && !b->finished)
                pthread_cond_wait(&b->cond, &b->lock);
        n = b->filled;
        b->dst = NULL;
        b->dst_len = b->filled = 0;
        if (n == 0 && b->rc < 0) {
                if (err)
                        *err = b->err;
                pthread_mutex_unlock(&b->lock);
                return -1;
        }
        pthread_mutex_unlock(&b->lock);
        return (ssize_t)n;
}

static void blob_free(struct oci_reader *rd)
{
        struct blob_stream *b = (struct blob_stream *)rd;

        pthread_mutex_lock(&b->lock);
        b->closed = true;
        pthread_cond_broadcast(&b->cond);
        pthread_mutex_unlock(&b->lock);
        blob_join(b);
        pthread_mutex_destroy(&b->lock);
        pthread_cond_destroy(&b->cond);
        free(b->url);
        free(b);
}

struct oci_reader *reg_client_open_blob(struct reg_client *c, const struct oci_descriptor *d,
                                        struct kiln_error *err)
{
        struct blob_stream *b;

        if (ensure_base(c, NULL, err) < 0)
                return NULL;
        b = calloc(1, sizeof(*b));
        if (!b) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        b->base.read = blob_read;
        b->base.free = blob_free;
        b->c = c;
        b->d = *d;
        b->d.json = NULL;
        b->d.annotations = NULL;
        b->d.media_type = NULL;
        pthread_mutex_init(&b->lock, NULL);
        pthread_cond_init(&b->cond, NULL);
        b->url = api_url(c, "blobs/%s", d->digest.str);
        if (!b->url) {
                blob_free(&b->base);
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        if (pthread_create(&b->thread, NULL, blob_thread, b) != 0) {
                blob_free(&b->base);
                kiln_error_set(err, KILN_E_INTERNAL, "cannot start a download thread");
                return NULL;
        }
        b->started = true;
        return oci_verified_reader_new(&b->base, &d->digest, d->size, err);
}

/* ---- blob upload ---- */

static int next_location(struct reg_client *c, const char *req_url, const struct resp *r,
                         char **ret, struct kiln_error *err)
{
        if (!r->location || !*r->location)
                return kiln_error_set(err, KILN_E_NETWORK,
                                      "registry '%s' answered %ld without a Location header",
                                      c->host, r->status);
        if (reg_url_resolve(req_url, r->location, ret, err) < 0)
                return -1;
        {
                /* R5: an upload location on another host is followed only over https
                 * or to a host allowed plain http; auth is never sent there */
                _cleanup_free_ char *h = reg_url_host(*ret);
                if (!strncasecmp(*ret, "http://", 7) && !host_http_ok(c, h)) {
                        free(*ret);
                        *ret = NULL;
                        return kiln_error_set(err, KILN_E_NETWORK,
                                              "refusing upload location on plain http host '%s'",
                                              h ? h : "?");
                }
        }
        return 0;
}

/* Blob bytes a registry accepted from a buffer (streamed bodies are counted
 * by request()). */
static void count_up(struct reg_client *c, size_t n)
{
        pthread_mutex_lock(&c->lock);
        c->stats.bytes_up += (int64_t)n;
        pthread_mutex_unlock(&c->lock);
}

static int finish_upload(struct reg_client *c, const char *loc, const struct oci_descriptor *d,
                         const char *body, size_t len, struct oci_reader *stream,
                         struct kiln_error *err)
{
        _cleanup_free_ char *url = reg_url_add_query(loc, "digest", d->digest.str);
        struct req q = {.method = "PUT", .body = body, .body_len = len, .has_body = true,
                        .stream = stream, .stream_len = d->size, .cap = ERROR_BODY_MAX};
        struct resp r = {.cap = ERROR_BODY_MAX};
        int rc = -1;

        if (!url)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        q.url = url;
        q.headers = curl_slist_append(NULL, "Content-Type: application/octet-stream");
        if (request(c, &q, &r, err) < 0)
                goto out;
        if (r.status != 201 && r.status != 204 && r.status != 200) {
                http_error(c, "PUT", url, &r, err);
                /* the session is gone (BLOB_UPLOAD_UNKNOWN, as after a PUT whose
                 * answer was lost): a new session may do, not a failure of the blob */
                if (r.status == 404 && err)
                        err->code = KILN_E_NETWORK;
                goto out;
        }
        if (r.digest && strcmp(r.digest, d->digest.str) && oci_digest_valid(r.digest)) {
                kiln_error_set(err, KILN_E_DIGEST, "registry '%s' stored blob '%s' as '%s'",
                               c->host, d->digest.str, r.digest);
                goto out;
        }
        count_up(c, len);
        rc = 0;
out:
        curl_slist_free_all(q.headers);
        resp_reset(&r);
        return rc;
}

/* GET <location>: 204 with Range "0-END" (END -1 when empty). */
static int upload_status(struct reg_client *c, const char *loc, long long *ret_end,
                         struct kiln_error *err)
{
        struct req q = {.method = "GET", .url = loc, .cap = ERROR_BODY_MAX};
        struct resp r = {.cap = ERROR_BODY_MAX};
        long long a = 0, b = -1;

        if (request(c, &q, &r, err) < 0)
                return -1;
        if (r.status != 204 && r.status != 200) {
                http_error(c, "GET", loc, &r, err);
                resp_reset(&r);
                return -1;
        }
        if (!r.range || reg_range_parse(r.range, &a, &b) < 0)
                b = -1;
        resp_reset(&r);
        *ret_end = b;
        return 0;
}

/* Chunked upload (distribution-spec "Pushing a blob in chunks"). */
static int chunked_upload(struct reg_client *c, char **loc, const struct oci_descriptor *d,
                          struct oci_reader *vr, int64_t chunk, struct kiln_error *err)
{
        _cleanup_free_ char *buf = malloc((size_t)chunk);
        int64_t off = 0;
        size_t pending = 0; /* bytes at the start of buf still to send (after a resync) */
        bool resynced = false;

        if (!buf)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");

        while (off < d->size) {
                size_t have = pending;
                int64_t want = pending ? (int64_t)pending
                                       : (d->size - off < chunk ? d->size - off : chunk);
                char cr[96];
                struct req q = {.method = "PATCH", .url = *loc, .has_body = true,
                                .cap = ERROR_BODY_MAX};
                struct resp r = {.cap = ERROR_BODY_MAX};
                long long start = -1, end = -1;

                while ((int64_t)have < want) {
                        ssize_t n = oci_reader_read(vr, buf + have, (size_t)want - have, err);
                        if (n < 0)
                                return -1;
                        if (n == 0)
                                break;
                        have += (size_t)n;
                }
                if ((int64_t)have != want)
                        return kiln_error_set(err, KILN_E_DIGEST,
                                              "blob '%s' is truncated at %lld bytes",
                                              d->digest.str, (long long)(off + (int64_t)have));
                pending = have;
                q.body = buf;
                q.body_len = have;
                snprintf(cr, sizeof(cr), "Content-Range: %lld-%lld", (long long)off,
                         (long long)(off + (int64_t)have - 1));
                q.headers = curl_slist_append(NULL, "Content-Type: application/octet-stream");
                q.headers = curl_slist_append(q.headers, cr);
                if (request(c, &q, &r, err) < 0) {
                        curl_slist_free_all(q.headers);
                        resp_reset(&r);
                        return -1;
                }
                curl_slist_free_all(q.headers);
                if (r.status == 416 && !resynced) {
                        /* R6: out of step; ask the session where it is (GET -> 204 + Range)
                         * and resend the tail of this chunk when the registry holds a
                         * prefix of it */
                        long long have_end = -1;
                        resp_reset(&r);
                        resynced = true;
                        if (upload_status(c, *loc, &have_end, err) < 0)
                                return -1;
                        if (have_end + 1 < (long long)off ||
                            have_end + 1 > (long long)(off + (int64_t)have))
                                return kiln_error_set(err, KILN_E_NETWORK,
                                                      "registry '%s' lost the upload of blob '%s' at byte %lld",
                                                      c->host, d->digest.str, have_end + 1);
                        memmove(buf, buf + (have_end + 1 - off), (size_t)(off + (int64_t)have - have_end - 1));
                        off = have_end + 1;
                        pending = (size_t)want;
                        continue;
                }
                if (r.status != 202) {
                        http_error(c, "PATCH", *loc, &r, err);
                        resp_reset(&r);
                        return -1;
                }
                resynced = false;
                /* the returned Range must cover what was sent: ECR-style registries that
                 * drop chunks are caught here, not at the final digest check */
                if (r.range && reg_range_parse(r.range, &start, &end) == 0 &&
                    end != (long long)(off + (int64_t)have - 1)) {
                        kiln_error_set(err, KILN_E_NETWORK,
                                       "registry '%s' acknowledged bytes up to %lld of blob '%s', expected %lld",
                                       c->host, end, d->digest.str,
                                       (long long)(off + (int64_t)have - 1));
                        resp_reset(&r);
                        return -1;
                }
                {
                        char *n2 = NULL;
                        if (next_location(c, *loc, &r, &n2, err) < 0) {
                                resp_reset(&r);
                                return -1;
                        }
                        free(*loc);
                        *loc = n2;
                }
                resp_reset(&r);
                count_up(c, have);
                off += (int64_t)have;
                pending = 0;
        }
        {
                /* the stream must end exactly here, so the verified reader checks the digest */
                char one;
                ssize_t n = oci_reader_read(vr, &one, 1, err);
                if (n != 0)
                        return n < 0 ? -1
                                     : kiln_error_set(err, KILN_E_DIGEST,
                                                      "blob '%s' is larger than its size",
                                                      d->digest.str);
        }
        return finish_upload(c, *loc, d, NULL, 0, NULL, err);
}

int reg_client_push_blob(struct reg_client *c, const struct oci_descriptor *d,
                         struct oci_reader *r, const char *mount_from, struct kiln_error *err)
{
        _cleanup_free_ char *url = NULL, *loc = NULL, *scope2 = NULL;
        struct oci_reader *vr = NULL;
        struct req q = {.method = "POST", .has_body = false, .cap = ERROR_BODY_MAX};
        struct resp rs = {.cap = ERROR_BODY_MAX};
        int64_t chunk = c->opts.chunk_size;
        int rc = -1;

        vr = oci_verified_reader_new(r, &d->digest, d->size, err);
        if (!vr)
                return -1;
        if (ensure_base(c, NULL, err) < 0)
                goto out;
        if (mount_from && strcmp(mount_from, c->repo)) {
                /* cross-repo mount: needs pull on the source in the token */
                char *e1 = curl_easy_escape(NULL, d->digest.str, 0);
                char *e2 = curl_easy_escape(NULL, mount_from, 0);
                url = kiln_strdupf("%s/v2/%s/blobs/uploads/?mount=%s&from=%s", c->base, c->repo,
                                   e1, e2);
                curl_free(e1);
                curl_free(e2);
                scope2 = kiln_strdupf("repository:%s:pull", mount_from);
                if (!url || !scope2) {
                        kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        goto out;
                }
                q.url = url;
                q.scope2 = scope2;
                if (request(c, &q, &rs, err) < 0)
                        goto out;
                if (rs.status == 201) {
                        pthread_mutex_lock(&c->lock);
                        c->stats.blobs_mounted++;
                        pthread_mutex_unlock(&c->lock);
                        reg_client_notify(c, REG_EVENT_MOUNTED, "mounted %s from %s",
                                          d->digest.str, mount_from);
                        rc = 0;
                        goto out;
                }
                if (rs.status != 202) {
                        /* a refused mount (401/403/404) falls back to an upload */
                        resp_reset(&rs);
                        free(url);
                        url = NULL;
                }
        }
        if (!url || rs.status != 202) {
                free(url);
                url = kiln_strdupf("%s/v2/%s/blobs/uploads/", c->base, c->repo);
                if (!url) {
                        kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        goto out;
                }
                q.url = url;
                q.scope2 = NULL;
                if (request(c, &q, &rs, err) < 0)
                        goto out;
                if (rs.status != 202) {
                        http_error(c, "POST", url, &rs, err);
                        goto out;
                }
        }
        if (next_location(c, url, &rs, &loc, err) < 0)
                goto out;
        if (rs.chunk_min) {
                long long m = strtoll(rs.chunk_min, NULL, 10);
                if (m > 0 && chunk > 0 && chunk < m)
                        chunk = m;
        }
        resp_reset(&rs);
        if (chunk > 0 && d->size > chunk) {
                if (chunked_upload(c, &loc, d, vr, chunk, err) < 0)
                        goto out;
        } else if (d->size <= SMALL_BLOB_MAX) {
                /* small blobs: read whole (verified) and PUT in one request, replayable */
                _cleanup_free_ char *buf = NULL;
                size_t len;
                if (oci_reader_read_all(vr, (size_t)d->size + 1, d->digest.str, &buf, &len,
                                        err) < 0)
                        goto out;
                if (finish_upload(c, loc, d, buf, len, NULL, err) < 0)
                        goto out;
        } else {
                /* one streamed PUT; the verified reader aborts it on a mismatch, so the
                 * registry never gets a complete body that is wrong */
                if (finish_upload(c, loc, d, NULL, 0, vr, err) < 0)
                        goto out;
        }
        pthread_mutex_lock(&c->lock);
        c->stats.blobs_uploaded++;
        pthread_mutex_unlock(&c->lock);
        rc = 0;
out:
        if (rc < 0 && loc) {
                /* cancel the session; failures are ignored (distribution-spec) */
                struct req dq = {.method = "DELETE", .url = loc, .cap = ERROR_BODY_MAX};
                struct resp dr = {.cap = ERROR_BODY_MAX};
                struct kiln_error ign = KILN_ERROR_INIT;
                request(c, &dq, &dr, &ign);
                resp_reset(&dr);
        }
        resp_reset(&rs);
        oci_reader_free(vr);
        if (rc < 0)
                kiln_error_prefix(err, "push blob '%s'", d->digest.str);
        return rc;
}

/* ---- tags ---- */

/* The URLs of the pages read, as 64-bit FNV-1a hashes in an open-addressing
 * set: a Link back to any page already read ends the listing (R7) without
 * keeping every URL of a long listing. */
struct url_set {
        uint64_t *v;
        size_t cap, n;
};

static uint64_t url_hash(const char *s)
{
        uint64_t h = 1469598103934665603ULL;

        for (; *s; s++)
                h = (h ^ (unsigned char)*s) * 1099511628211ULL;
        return h ? h : 1; /* 0 marks a free slot */
}

/* Adds url; *ret_seen true when it was there. */
static int url_set_add(struct url_set *u, const char *url, bool *ret_seen,
                       struct kiln_error *err)
{
        uint64_t h = url_hash(url);
        size_t i;

        if (2 * (u->n + 1) > u->cap) {
                struct url_set g = {.cap = u->cap ? u->cap * 2 : 64};
                g.v = calloc(g.cap, sizeof(*g.v));
                if (!g.v)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                for (size_t k = 0; k < u->cap; k++) {
                        if (!u->v[k])
                                continue;
                        for (i = u->v[k] % g.cap; g.v[i]; i = (i + 1) % g.cap)
                                ;
                        g.v[i] = u->v[k];
                        g.n++;
                }
                free(u->v);
                *u = g;
        }
        for (i = h % u->cap; u->v[i]; i = (i + 1) % u->cap)
                if (u->v[i] == h) {
                        *ret_seen = true;
                        return 0;
                }
        u->v[i] = h;
        u->n++;
        *ret_seen = false;
        return 0;
}

/* One page: its tags, validated, to fn; *ret_next the next page's URL or NULL. */
static int tags_page(struct reg_client *c, const char *url, reg_tags_fn fn, void *ctx,
                     char **ret_next, struct kiln_error *err)
{
        struct req q = {.method = "GET", .url = url, .cap = TAGS_BODY_MAX};
        struct resp r = {.cap = TAGS_BODY_MAX};
        _cleanup_json_ json_t *j = NULL;
        _cleanup_free_ const char **tags = NULL;
        json_t *arr, *v;
        size_t i;
        int rc = -1;

        *ret_next = NULL;
        if (request(c, &q, &r, err) < 0)
                goto out;
        if (r.status != 200) {
                if (r.status == 404)
                        kiln_error_set(err, KILN_E_NOT_FOUND, "repository '%s/%s' not found",
                                       c->host, c->repo);
                else
                        http_error(c, "GET", url, &r, err);
                goto out;
        }
        if (r.truncated) {
                kiln_error_set(err, KILN_E_LIMIT, "a tag list page of '%s/%s' is over %d bytes",
                               c->host, c->repo, TAGS_BODY_MAX);
                goto out;
        }
        j = oci_json_parse(r.body ? r.body : "", r.len, "tag list", err);
        if (!j)
                goto out;
        arr = json_object_get(j, "tags");
        tags = calloc(json_array_size(arr) + 1, sizeof(*tags));
        if (!tags) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto out;
        }
        json_array_foreach(arr, i, v) {
                const char *t = json_string_value(v);
                if (!t || !oci_tag_valid(t)) {
                        char sn[80];
                        reg_sanitize(t ? t : "", t ? strlen(t) : 0, sn, sizeof(sn), 60);
                        kiln_error_set(err, KILN_E_INVALID, "registry '%s' listed an invalid tag '%s'",
                                       c->host, sn);
                        goto out;
                }
                tags[i] = t;
        }
        if (r.link && reg_link_next(r.link, url, ret_next, err) < 0)
                goto out;
        if (json_array_size(arr) && fn(ctx, tags, json_array_size(arr), err) < 0) {
                free(*ret_next);
                *ret_next = NULL;
                goto out;
        }
        rc = 0;
out:
        resp_reset(&r);
        return rc;
}

int reg_client_walk_tags(struct reg_client *c, reg_tags_fn fn, void *ctx, struct kiln_error *err)
{
        _cleanup_free_ char *url = NULL;
        struct url_set seen = {0};
        size_t pages = 0;
        int rc = -1;

        if (ensure_base(c, NULL, err) < 0)
                return -1;
        /* ask for pages of TAGS_PAGE_N: a registry that pages sends Link */
        url = api_url(c, "tags/list?n=%d", TAGS_PAGE_N);
        if (!url)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        while (url) {
                char *next = NULL;
                bool again;

                if (url_set_add(&seen, url, &again, err) < 0)
                        goto out;
                if (again)
                        break; /* R7: a link back to a page already read */
                if (++pages > TAGS_MAX_PAGES) {
                        kiln_error_set(err, KILN_E_LIMIT, "tag list of '%s/%s' has over %d pages",
                                       c->host, c->repo, TAGS_MAX_PAGES);
                        goto out;
                }
                if (tags_page(c, url, fn, ctx, &next, err) < 0)
                        goto out;
                free(url);
                url = next;
        }
        rc = 0;
out:
        free(seen.v);
        return rc;
}

struct tag_list {
        char **v;
        size_t n, alloc;
};

static int collect_tags(void *ctx, const char *const *tags, size_t n, struct kiln_error *err)
{
        struct tag_list *l = ctx;

        for (size_t i = 0; i < n; i++) {
                if (l->n == l->alloc) {
                        size_t na = l->alloc ? l->alloc * 2 : 64;
                        char **nv = realloc(l->v, na * sizeof(*nv));
                        if (!nv)
                                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        l->v = nv;
                        l->alloc = na;
                }
                if (!(l->v[l->n] = strdup(tags[i])))
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                l->n++;
        }
        return 0;
}

int reg_client_list_tags(struct reg_client *c, char ***ret_tags, size_t *ret_n,
                         struct kiln_error *err)
{
        struct tag_list l = {0};

        if (reg_client_walk_tags(c, collect_tags, &l, err) < 0) {
                for (size_t i = 0; i < l.n; i++)
                        free(l.v[i]);
                free(l.v);
                return -1;
        }
        *ret_tags = l.v;
        *ret_n = l.n;
        return 0;
}

/* ---- referrers (distribution-spec "Listing Referrers" and the tag schema) ---- */

/* The fallback tag: "<alg>-<encoded>", alg cut at 32, encoded at 64. */
static void referrers_tag(const struct oci_digest *d, char *out, size_t outlen)
{
        const char *alg = oci_digest_alg_name(d->alg);
        snprintf(out, outlen, "%.32s-%.64s", alg, oci_digest_hex(d));
}

static json_t *empty_index(void)
{
        return json_pack("{s:i,s:s,s:[]}", "schemaVersion", 2, "mediaType", OCI_MT_INDEX,
                         "manifests");
}

/* Fetches the fallback index; an empty one when the tag does not exist. */
static json_t *fetch_fallback(struct reg_client *c, const char *tag, struct kiln_error *err)
{
        char *buf = NULL, *mt = NULL;
        size_t len = 0;
        struct oci_digest d;
        json_t *j;

        if (reg_client_get_manifest(c, tag, &buf, &len, &mt, &d, err) < 0) {
                if (err && err->code == KILN_E_NOT_FOUND) {
                        kiln_error_clear(err);
                        return empty_index();
                }
                return NULL;
        }
        free(mt);
        j = oci_json_parse(buf, len, "referrers index", err);
        free(buf);
        if (j && !json_is_array(json_object_get(j, "manifests"))) {
                json_decref(j);
                kiln_error_set(err, KILN_E_INVALID, "referrers tag '%s' is not an index", tag);
                return NULL;
        }
        return j;
}

int reg_client_list_referrers(struct reg_client *c, const struct oci_digest *subject,
                              json_t **ret_index, struct kiln_error *err)
{
        _cleanup_free_ char *url = NULL;
        struct req q = {.method = "GET", .cap = OCI_MANIFEST_MAX};
        struct resp r = {.cap = OCI_MANIFEST_MAX};
        char tag[128];
        json_t *j = NULL;

        if (ensure_base(c, NULL, err) < 0)
                return -1;
        url = api_url(c, "referrers/%s", subject->str);
        if (!url)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        q.url = url;
        q.headers = curl_slist_append(NULL, "Accept: " OCI_MT_INDEX);
        if (request(c, &q, &r, err) < 0) {
                curl_slist_free_all(q.headers);
                return -1;
        }
        curl_slist_free_all(q.headers);
        if (r.status == 200 && !r.truncated) {
                j = oci_json_parse(r.body ? r.body : "", r.len, "referrers response", err);
                resp_reset(&r);
                if (!j)
                        return -1;
                *ret_index = j;
                return 0;
        }
        if (r.status != 404) {
                http_error(c, "GET", url, &r, err);
                resp_reset(&r);
                return -1;
        }
        resp_reset(&r);
        /* no referrers API: the tag schema */
        referrers_tag(subject, tag, sizeof(tag));
        j = fetch_fallback(c, tag, err);
        if (!j)
                return -1;
        *ret_index = j;
        return 0;
}

/* Adds desc (a manifest whose subject is `subject`) to the fallback index. */
static int referrers_fallback_add(struct reg_client *c, const struct oci_digest *subject,
                                  json_t *desc, struct kiln_error *err)
{
        char tag[128];
        _cleanup_json_ json_t *j = NULL;
        json_t *arr, *e;
        size_t i;
        const char *dg = json_string_value(json_object_get(desc, "digest"));
        char *buf;
        int rc;

        referrers_tag(subject, tag, sizeof(tag));
        j = fetch_fallback(c, tag, err);
        if (!j)
                return -1;
        arr = json_object_get(j, "manifests");
        json_array_foreach(arr, i, e) {
                const char *ed = json_string_value(json_object_get(e, "digest"));
                if (dg && ed && !strcmp(ed, dg))
                        return 0; /* already listed */
        }
        json_array_append(arr, desc);
        buf = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!buf)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        rc = reg_client_put_manifest(c, tag, OCI_MT_INDEX, buf, strlen(buf), err);
        free(buf);
        return rc;
}

int reg_client_put_manifest_subject(struct reg_client *c, const char *ref, const char *media_type,
                                    const char *buf, size_t len, struct kiln_error *err)
{
        _cleanup_json_ json_t *j = json_loadb(buf, len, 0, NULL);
        json_t *sub = json_object_get(j, "subject");
        const char *sd = json_string_value(json_object_get(sub, "digest"));
        struct oci_digest subject, me;
        bool ack = false;
        json_t *desc;
        const char *at;
        int rc;

        if (put_manifest(c, ref, media_type, buf, len, &ack, err) < 0)
                return -1;
        if (!sd || ack)
                return 0; /* no subject, or the registry keeps the referrers itself */
        if (oci_digest_parse(sd, &subject, err) < 0)
                return -1;
        /* distribution-spec: without OCI-Subject the client updates the tag schema index */
        oci_digest_of_buffer(buf, len, &me);
        at = json_string_value(json_object_get(j, "artifactType"));
        if (!at)
                at = json_string_value(json_object_get(json_object_get(j, "config"), "mediaType"));
        desc = json_pack("{s:s,s:s,s:I}", "mediaType", media_type, "digest", me.str, "size",
                         (json_int_t)len);
        if (!desc)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (at)
                json_object_set_new(desc, "artifactType", json_string(at));
        if (json_is_object(json_object_get(j, "annotations")))
                json_object_set(desc, "annotations", json_object_get(j, "annotations"));
        rc = referrers_fallback_add(c, &subject, desc, err);
        json_decref(desc);
        if (rc < 0)
                kiln_error_prefix(err, "referrers of '%s'", subject.str);
        return rc;
}

/* ---- plain downloads (registry/fetch.c) ---- */

int reg_client_get_url(struct reg_client *c, const char *url,
                       int (*sink)(void *ctx, const void *buf, size_t len, struct kiln_error *err),
                       void *sink_ctx, long *ret_status, struct kiln_error *err)
{
        struct req q = {.method = "GET", .url = url, .cap = ERROR_BODY_MAX, .no_auth = true};
        struct resp r = {.cap = ERROR_BODY_MAX, .sink = sink, .sink_ctx = sink_ctx};
        int rc = request(c, &q, &r, err);

        if (rc == 0)
                *ret_status = r.status;
        resp_reset(&r);
        return rc;
}
