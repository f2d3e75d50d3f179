/* The registry client's transport: one request (curl setup, headers, body,
 * deadline), the request loop (auth, redirects, retries) and HTTP errors. */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "client_internal.h"
#include "hosts.h"
#include "json.h"
#include "parse.h"

#define MAX_REDIRECTS 5

void reg_client_notify(struct reg_client *c, enum reg_event ev, const char *fmt, ...)
{
        char msg[1024];
        va_list ap;

        if (!c->opts.notify)
                return;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        reg_redact_str(c, msg);
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

bool reg_body_has(const struct resp *r, const char *needle)
{
        size_t n = strlen(needle);

        for (size_t i = 0; r->body && i + n <= r->len; i++)
                if (!memcmp(r->body + i, needle, n))
                        return true;
        return false;
}

void reg_resp_reset(struct resp *r)
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
        reg_client_notify(c, REG_EVENT_WARNING, "registry '%s': %s", c->host, text);
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
                reg_resp_reset(r);
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
                        return 0; /* stop reading an oversized body; reg_perform() keeps the status */
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

static bool host_eq(const char *a, const char *b)
{
        return a && b && !strcasecmp(a, b);
}

bool reg_host_http_ok(struct reg_client *c, const char *host)
{
        if (host_eq(host, c->api_host))
                return c->http_ok;
        for (size_t i = 0; i < c->opts.n_insecure; i++)
                if (host_eq(host, c->opts.insecure_hosts[i]))
                        return true;
        return reg_host_is_loopback(host);
}

bool reg_host_insecure(struct reg_client *c, const char *host)
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

int reg_perform(struct reg_client *c, struct conn *k, const struct req *q, const char *url,
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
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, reg_host_http_ok(c, host) ? "http,https" : "https");
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
        if (reg_host_insecure(c, host)) {
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
                reg_client_notify(c, REG_EVENT_DEBUG, "%s %s -> %ld (HTTP/%s)", q->method, u, r->status,
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
        return reg_body_has(r, "TOOMANYREQUESTS");
}

/* "GET '/v2/x/manifests/y': 404: MANIFEST_UNKNOWN: manifest unknown" */
int reg_http_error(struct reg_client *c, const char *method, const char *url,
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
                reg_redact(c, r->body, &r->len);
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
                        reg_redact_str(c, ecc);
                        reg_redact_str(c, emc);
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
                reg_redact_str(c, err->msg);
        return -1;
}

/* ---- the request loop: auth, redirects, retries ---- */

bool reg_retryable_status(long s)
{
        return s == 408 || s == 429 || (s >= 500 && s <= 599 && s != 501 && s != 505);
}

long reg_backoff_ms(struct reg_client *c, unsigned attempt)
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

void reg_sleep_ms(long ms)
{
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* Runs q against the registry, following redirects (GET/HEAD only),
 * answering one 401 with credentials and retrying transient failures.
 * On return r holds the final response (any status); -1 only when no
 * response came, or auth failed, or the body sink failed. */
int reg_request(struct reg_client *c, const struct req *q, struct resp *r,
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

                reg_resp_reset(r);
                if (!q->no_auth && host_eq(host, c->api_host) &&
                    reg_auth_header(c, k, q->scope2, reauthed && attempt == 0, &auth, err) < 0)
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
                prc = reg_perform(c, k, q, url, auth, range[0] ? range : NULL,
                              q->stream ? &up : NULL, r, &e2);
                if (auth)
                        memset(auth, 0, strlen(auth));
                if (range[0] && ((prc == 0 && r->status == 416) || (prc == -2 && r->bad_range)) &&
                    attempt < c->opts.retries) {
                        /* a resume refused (416) or answered from another offset:
                         * download again from the start, without Range */
                        char u[256];
                        url_for_msg(url, u, sizeof(u));
                        reg_client_notify(c, REG_EVENT_RETRY, "%s '%s': the range request was %s, starting again from 0",
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
                        if (!strncasecmp(next, "http://", 7) && !reg_host_http_ok(c, nhost)) {
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
                                reg_client_notify(c, REG_EVENT_RETRY,
                                       "registry '%s': insufficient scope, asking again", c->host);
                        if (reg_learn_challenge(c, r, err) < 0)
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
                if (prc == 0 && (!reg_retryable_status(r->status) || pull_limit_hit(r))) {
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
                        wait_ms = reg_backoff_ms(c, attempt);
                {
                        char u[256];
                        url_for_msg(url, u, sizeof(u));
                        if (prc == 0)
                                reg_client_notify(c, REG_EVENT_RETRY, "%s '%s': %ld, retry %u in %ld ms",
                                       q->method, u, r->status, attempt, wait_ms);
                        else
                                reg_client_notify(c, REG_EVENT_RETRY, "%s, retry %u in %ld ms", e2.msg,
                                       attempt, wait_ms);
                }
                pthread_mutex_lock(&c->lock);
                c->stats.retries++;
                pthread_mutex_unlock(&c->lock);
                reg_sleep_ms(wait_ms);
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

/* ---- plain downloads (registry/fetch.c) ---- */

int reg_client_get_url(struct reg_client *c, const char *url,
                       int (*sink)(void *ctx, const void *buf, size_t len, struct kiln_error *err),
                       void *sink_ctx, long *ret_status, struct kiln_error *err)
{
        struct req q = {.method = "GET", .url = url, .cap = ERROR_BODY_MAX, .no_auth = true};
        struct resp r = {.cap = ERROR_BODY_MAX, .sink = sink, .sink_ctx = sink_ctx};
        int rc = reg_request(c, &q, &r, err);

        if (rc == 0)
                *ret_status = r.status;
        reg_resp_reset(&r);
        return rc;
}
