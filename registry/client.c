/* The registry client: its options, lifecycle, and the probe that decides
 * the scheme and learns the auth challenge.  The calls live in transport.c,
 * auth.c, blobs.c, manifests.c and referrers.c (see client_internal.h). */
#include <curl/curl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_internal.h"
#include "hosts.h"
#include "parse.h"

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

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
        curl_global_init(CURL_GLOBAL_DEFAULT);
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
        c->insecure = reg_host_insecure(c, host);
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

int reg_ensure_base(struct reg_client *c, struct conn *k, struct kiln_error *err)
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
                rc = reg_request(c, &q, &r, &e);
                verify_failed = r.curl_code == CURLE_PEER_FAILED_VERIFICATION;
                if (loop_first && i == 0 && (rc < 0 || (r.status != 200 && r.status != 401))) {
                        reg_resp_reset(&r);
                        continue;
                }
                if (loop_first && i == 2 && rc == 0 && reg_retryable_status(r.status)) {
                        reg_http_error(c, "GET", url, &r, err);
                        reg_resp_reset(&r);
                        return -1;
                }
                if (rc < 0) {
                        if (i == 0)
                                first = e;
                        reg_resp_reset(&r);
                        /* N4: a host that may speak http is tried with http when it does
                         * not speak TLS; a certificate that fails verification is an
                         * error (fail closed) unless the host is --insecure-registry */
                        if (i + 1 < n && c->http_ok && !verify_failed)
                                continue;
                        if (verify_failed)
                                kiln_error_prefix(&e, "TLS verification failed for registry '%s' (use --ca-file, or --insecure-registry %s)",
                                                  c->host, c->host);
                        if (err)
                                *err = e;
                        return -1;
                }
                if (r.status == 401) {
                        if (reg_learn_challenge(c, &r, err) < 0) {
                                reg_resp_reset(&r);
                                return -1;
                        }
                } else if (r.status != 200) {
                        /* some registries answer 404 here; the API calls will tell */
                }
                reg_resp_reset(&r);
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

        if (reg_ensure_base(c, NULL, err) < 0)
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
        if (reg_request(c, &q, &r, err) < 0)
                goto out;
        if (r.status != 200) {
                if (r.status == 401)
                        kiln_error_set(err, KILN_E_AUTH, "registry '%s' refused the credentials",
                                       c->host);
                else
                        reg_http_error(c, "GET", url, &r, err);
                goto out;
        }
        rc = 0;
out:
        reg_resp_reset(&r);
        return rc;
}

char *reg_api_url(struct reg_client *c, const char *fmt, ...)
{
        char tail[1024];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(tail, sizeof(tail), fmt, ap);
        va_end(ap);
        return kiln_strdupf("%s/v2/%s/%s", c->base, c->repo, tail);
}
