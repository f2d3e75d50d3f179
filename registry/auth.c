/* The registry client's authentication: challenges, bearer tokens, the use of
 * credentials, and the redaction that keeps them out of every message. */
#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "client_internal.h"
#include "creds.h"
#include "json.h"
#include "parse.h"

#define TOKEN_BODY_MAX (64 * 1024)
#define TOKEN_MIN_LIFETIME 60

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
void reg_redact(struct reg_client *c, char *buf, size_t *len)
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

void reg_redact_str(struct reg_client *c, char *s)
{
        size_t n = strlen(s);

        reg_redact(c, s, &n);
}

static char *scope_key(struct reg_client *c, const char *scope2)
{
        if (!c->repo)
                return strdup("");
        return kiln_strdupf("repository:%s:%s%s%s", c->repo, c->push ? "pull,push" : "pull",
                            scope2 ? " " : "", scope2 ? scope2 : "");
}

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
        if (!strncasecmp(url, "http://", 7) && !reg_host_http_ok(c, realm_host))
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
                rc = base ? reg_perform(c, k, &pq, base, NULL, NULL, NULL, &r, err) : -1;
                curl_slist_free_all(pq.headers);
                free(base);
                memset(form, 0, strlen(form));
                if (rc == 0 && r.status == 404) {
                        /* the realm has no OAuth2 endpoint: GET it */
                        reg_resp_reset(&r);
                        post = false;
                }
                if (rc < 0)
                        goto out;
        }
        if (!post) {
                /* the token server gets the same bounded retries as the registry */
                for (unsigned attempt = 0;; attempt++) {
                        int prc;
                        reg_resp_reset(&r);
                        prc = reg_perform(c, k, &q, url, auth, NULL, NULL, &r, err);
                        if (prc == 0 && !reg_retryable_status(r.status))
                                break;
                        if (attempt >= c->opts.retries || prc < -1) {
                                if (prc < 0)
                                        goto out;
                                break;
                        }
                        reg_sleep_ms(reg_backoff_ms(c, attempt + 1));
                }
        }
        rc = -1;
        if (r.status != 200) {
                if (r.status == 401 || r.status == 403)
                        kiln_error_set(err, KILN_E_AUTH,
                                       "token server of registry '%s' refused the credentials (%ld)",
                                       c->host, r.status);
                else
                        reg_http_error(c, "GET", url, &r, err);
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
        reg_resp_reset(&r);
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
int reg_auth_header(struct reg_client *c, struct conn *k, const char *scope2, bool force,
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
int reg_learn_challenge(struct reg_client *c, const struct resp *r, struct kiln_error *err)
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
