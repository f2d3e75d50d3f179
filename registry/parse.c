#include "parse.h"

#include <ctype.h>
#include <curl/curl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"

void reg_challenge_release(struct reg_challenge *c)
{
        if (!c)
                return;
        free(c->realm);
        free(c->service);
        free(c->scope);
        free(c->error);
        memset(c, 0, sizeof(*c));
}

/* RFC 9110 §5.6.2 tchar */
static bool is_tchar(char c)
{
        return isalnum((unsigned char)c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static const char *skip_ws(const char *p)
{
        while (*p == ' ' || *p == '\t')
                p++;
        return p;
}

/* Reads a quoted-string (p at the opening quote) into a new string. */
static const char *read_quoted(const char *p, char **ret)
{
        size_t cap = strlen(p) + 1, n = 0;
        char *out = malloc(cap);

        if (!out)
                return NULL;
        p++;
        while (*p && *p != '"') {
                if (*p == '\\' && p[1])
                        p++;
                out[n++] = *p++;
        }
        if (*p != '"') {
                free(out);
                return NULL;
        }
        out[n] = '\0';
        *ret = out;
        return p + 1;
}

static void set_param(struct reg_challenge *c, const char *name, size_t nlen, char *value)
{
        char **slot = NULL;

        if (nlen == 5 && !strncasecmp(name, "realm", 5))
                slot = &c->realm;
        else if (nlen == 7 && !strncasecmp(name, "service", 7))
                slot = &c->service;
        else if (nlen == 5 && !strncasecmp(name, "scope", 5))
                slot = &c->scope;
        else if (nlen == 5 && !strncasecmp(name, "error", 5))
                slot = &c->error;
        if (!slot) {
                free(value);
                return;
        }
        free(*slot);
        *slot = value;
}

int reg_www_auth_parse(const char *value, struct reg_challenge *ret, size_t max,
                       struct kiln_error *err)
{
        const char *p = value;
        size_t n = 0;

        memset(ret, 0, sizeof(*ret) * max);
        for (;;) {
                const char *tok;
                size_t tlen;

                while (*p == ' ' || *p == '\t' || *p == ',')
                        p++;
                if (!*p)
                        break;
                tok = p;
                while (is_tchar(*p))
                        p++;
                tlen = (size_t)(p - tok);
                if (tlen == 0)
                        goto bad;
                p = skip_ws(p);
                if (*p == '=' && n > 0) {
                        /* an auth-param of the current challenge */
                        char *v = NULL;
                        p = skip_ws(p + 1);
                        if (*p == '"') {
                                p = read_quoted(p, &v);
                                if (!p)
                                        goto bad;
                        } else {
                                const char *vs = p;
                                while (is_tchar(*p) || *p == '/' || *p == ':' || *p == '=')
                                        p++;
                                v = strndup(vs, (size_t)(p - vs));
                                if (!v)
                                        goto nomem;
                        }
                        set_param(&ret[n - 1], tok, tlen, v);
                        p = skip_ws(p);
                        if (*p && *p != ',')
                                goto bad;
                        continue;
                }
                /* a new challenge: the token was its scheme */
                if (n == max)
                        break;
                if (tlen >= sizeof(ret[n].scheme))
                        goto bad;
                for (size_t i = 0; i < tlen; i++)
                        ret[n].scheme[i] = (char)tolower((unsigned char)tok[i]);
                ret[n].scheme[tlen] = '\0';
                n++;
                /* token68 (Basic's credentials form) is not expected in a challenge; skip it */
        }
        if (n == 0)
                goto bad;
        return (int)n;
nomem:
        for (size_t i = 0; i < max; i++)
                reg_challenge_release(&ret[i]);
        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
bad:
        for (size_t i = 0; i < max; i++)
                reg_challenge_release(&ret[i]);
        {
                char s[128];
                reg_sanitize(value, strlen(value), s, sizeof(s), 80);
                return kiln_error_set(err, KILN_E_NETWORK,
                                      "invalid WWW-Authenticate header '%s'", s);
        }
}

int reg_url_resolve(const char *base, const char *ref, char **ret, struct kiln_error *err)
{
        CURLU *u = curl_url();
        char *out = NULL, *scheme = NULL;
        int rc = -1;

        if (!u)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (curl_url_set(u, CURLUPART_URL, base, 0) != CURLUE_OK ||
            curl_url_set(u, CURLUPART_URL, ref, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
            (strcmp(scheme, "http") && strcmp(scheme, "https")) ||
            curl_url_get(u, CURLUPART_URL, &out, 0) != CURLUE_OK) {
                char s[160];
                reg_sanitize(ref, strlen(ref), s, sizeof(s), 120);
                kiln_error_set(err, KILN_E_NETWORK, "invalid location '%s'", s);
                goto out;
        }
        *ret = strdup(out);
        if (!*ret) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto out;
        }
        rc = 0;
out:
        curl_free(out);
        curl_free(scheme);
        curl_url_cleanup(u);
        return rc;
}

char *reg_url_add_query(const char *url, const char *key, const char *value)
{
        char *enc = curl_easy_escape(NULL, value, 0);
        char *out;
        const char *hash = strchr(url, '#');
        size_t ulen = hash ? (size_t)(hash - url) : strlen(url);
        const char *q = memchr(url, '?', ulen);
        const char *sep = !q ? "?" : (q[1] && url[ulen - 1] != '&' ? "&" : "");

        if (!enc)
                return NULL;
        out = kiln_strdupf("%.*s%s%s=%s", (int)ulen, url, sep, key, enc);
        curl_free(enc);
        return out;
}

char *reg_url_host(const char *url)
{
        CURLU *u = curl_url();
        char *host = NULL, *port = NULL, *out = NULL;

        if (!u)
                return NULL;
        if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
            curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
                if (curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK)
                        out = kiln_strdupf("%s:%s", host, port);
                else
                        out = strdup(host);
        }
        curl_free(host);
        curl_free(port);
        curl_url_cleanup(u);
        return out;
}

int reg_link_next(const char *value, const char *base_url, char **ret, struct kiln_error *err)
{
        const char *p = value;

        *ret = NULL;
        while (*p) {
                const char *lt, *gt, *end;
                bool next = false;

                lt = strchr(p, '<');
                if (!lt)
                        break;
                gt = strchr(lt, '>');
                if (!gt)
                        break;
                /* the parameters of this link run to the next ',' outside quotes */
                end = gt + 1;
                while (*end && *end != ',') {
                        if (*end == '"') {
                                end = strchr(end + 1, '"');
                                if (!end)
                                        return 0;
                        }
                        end++;
                }
                for (const char *q = gt + 1; q < end; q++) {
                        if (!strncasecmp(q, "rel", 3)) {
                                const char *v = skip_ws(q + 3);
                                if (*v != '=')
                                        continue;
                                v = skip_ws(v + 1);
                                if (*v == '"')
                                        v++;
                                /* rel may hold several space-separated types */
                                while (v < end && *v != '"' && *v != ';') {
                                        const char *w = v;
                                        while (v < end && *v != ' ' && *v != '"' && *v != ';')
                                                v++;
                                        if (v - w == 4 && !strncasecmp(w, "next", 4))
                                                next = true;
                                        while (v < end && *v == ' ')
                                                v++;
                                }
                        }
                }
                if (next) {
                        _cleanup_free_ char *target = strndup(lt + 1, (size_t)(gt - lt - 1));
                        if (!target)
                                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        return reg_url_resolve(base_url, target, ret, err);
                }
                p = *end ? end + 1 : end;
        }
        return 0;
}

long reg_retry_after_parse(const char *value, time_t now, long cap)
{
        const char *p = skip_ws(value);
        char *end;
        long v;

        if (!*p)
                return -1;
        if (isdigit((unsigned char)*p)) {
                unsigned long long s = strtoull(p, &end, 10);
                if (*skip_ws(end))
                        return -1;
                v = s > (unsigned long long)cap ? cap : (long)s;
                return v;
        }
        {
                time_t t = curl_getdate(p, NULL);
                if (t == (time_t)-1)
                        return -1;
                if (t <= now)
                        return 0;
                return t - now > cap ? cap : (long)(t - now);
        }
}

static const char *parse_decimal(const char *p, long long *ret)
{
        long long v = 0;

        if (!isdigit((unsigned char)*p))
                return NULL;
        for (; isdigit((unsigned char)*p); p++) {
                if (v > (LLONG_MAX - (*p - '0')) / 10)
                        return NULL;
                v = v * 10 + (*p - '0');
        }
        *ret = v;
        return p;
}

int reg_range_parse(const char *value, long long *ret_start, long long *ret_end)
{
        const char *p = skip_ws(value);
        long long a, b, total;

        if (!strncasecmp(p, "bytes", 5) && (p[5] == ' ' || p[5] == '='))
                p = skip_ws(p + 6);
        p = parse_decimal(p, &a);
        if (!p || *p++ != '-')
                return -1;
        p = parse_decimal(p, &b);
        if (!p || a > b)
                return -1;
        if (*p == '/') {
                p++;
                if (*p == '*')
                        p++;
                else if (!(p = parse_decimal(p, &total)) || total <= b)
                        return -1;
        }
        if (*skip_ws(p))
                return -1;
        *ret_start = a;
        *ret_end = b;
        return 0;
}

bool reg_host_is_loopback(const char *host)
{
        char h[256];
        size_t n;

        if (!host)
                return false;
        if (host[0] == '[') {
                const char *e = strchr(host, ']');
                if (!e)
                        return false;
                n = (size_t)(e - host - 1);
                if (n >= sizeof(h))
                        return false;
                memcpy(h, host + 1, n);
                h[n] = '\0';
                return !strcmp(h, "::1") || !strcmp(h, "0:0:0:0:0:0:0:1");
        }
        n = strcspn(host, ":");
        if (n >= sizeof(h))
                return false;
        memcpy(h, host, n);
        h[n] = '\0';
        if (!strcasecmp(h, "localhost"))
                return true;
        if (!strncmp(h, "127.", 4)) {
                /* 127.0.0.0/8: four decimal octets */
                int a, b, c, d;
                char extra;
                return sscanf(h, "%d.%d.%d.%d%c", &a, &b, &c, &d, &extra) == 4 && a == 127 &&
                       b >= 0 && b < 256 && c >= 0 && c < 256 && d >= 0 && d < 256;
        }
        return false;
}

void reg_sanitize(const char *s, size_t len, char *dst, size_t dstlen, size_t max)
{
        kiln_text_escape(s, len, dst, dstlen, max, KILN_ESCAPE_ASCII);
}
