#include "fetch.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "io.h"
#include "parse.h"
#include "util.h"

struct sink {
        int fd;
        int64_t n, max;
        bool too_big, write_failed;
};

static size_t on_data(char *p, size_t size, size_t nmemb, void *ctx)
{
        struct sink *s = ctx;
        size_t len = size * nmemb;

        if (s->max >= 0 && s->n + (int64_t)len > s->max) {
                s->too_big = true;
                return 0;
        }
        for (size_t off = 0; off < len;) {
                ssize_t w = write(s->fd, p + off, len - off);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        s->write_failed = true;
                        return 0;
                }
                off += (size_t)w;
        }
        s->n += (int64_t)len;
        return len;
}

/* The URL without its query and fragment, for messages (presigned
 * URLs carry secrets there). */
static char *redact(const char *url)
{
        size_t n = strcspn(url, "?#");
        return kiln_strdupf("%.*s%s", (int)n, url, url[n] ? "?..." : "");
}

static bool http_allowed(const struct reg_options *o, const char *host)
{
        if (!host)
                return false;
        if (reg_host_is_loopback(host))
                return true;
        for (size_t i = 0; o && i < o->n_insecure; i++)
                if (!strcmp(o->insecure_hosts[i], host))
                        return true;
        return false;
}

int reg_http_fetch(void *ctx, const char *url, const char *dest, int64_t max,
                   struct kiln_error *err)
{
        const struct reg_options *o = ctx;
        _cleanup_free_ char *shown = redact(url);
        _cleanup_free_ char *host = reg_url_host(url);
        _cleanup_free_ char *tmp = kiln_strdupf("%s.tmp-XXXXXX", dest);
        char errbuf[CURL_ERROR_SIZE];
        unsigned attempts = o && o->retries ? o->retries + 1 : 4;
        long backoff_ms = 500;
        int rc = -1;

        if (!shown || !tmp)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (!str_has_prefix(url, "https://") && !str_has_prefix(url, "http://"))
                return kiln_error_set(err, KILN_E_UNSUPPORTED, "cannot fetch '%s': not an http(s) URL",
                                      shown);
        if (str_has_prefix(url, "http://") && !http_allowed(o, host))
                return kiln_error_set(err, KILN_E_NETWORK,
                                      "refusing plain http for '%s': use https or --insecure-registry %s",
                                      shown, host ? host : "HOST");
        curl_global_init(CURL_GLOBAL_DEFAULT);
        for (unsigned a = 0; a < attempts; a++) {
                struct sink s = {.max = max};
                CURL *h;
                CURLcode cc;
                long status = 0;
                bool retry = false;

                s.fd = mkstemp(tmp);
                if (s.fd < 0) {
                        kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create '%s'", tmp);
                        return -1;
                }
                h = curl_easy_init();
                if (!h) {
                        close(s.fd);
                        unlink(tmp);
                        return kiln_error_set(err, KILN_E_NOMEM, "cannot start a transfer");
                }
                errbuf[0] = '\0';
                curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
                curl_easy_setopt(h, CURLOPT_URL, url);
                curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
                curl_easy_setopt(h, CURLOPT_USERAGENT, "kiln/" KILN_VERSION);
                curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
                curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
                curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR,
                                 http_allowed(o, host) ? "http,https" : "https");
                curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "https");
                curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, o && o->connect_timeout_s ? o->connect_timeout_s : 30L);
                curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1024L);
                curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, o && o->low_speed_time_s ? o->low_speed_time_s : 60L);
                if (o && o->ca_file)
                        curl_easy_setopt(h, CURLOPT_CAINFO, o->ca_file);
                curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
                curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
                cc = curl_easy_perform(h);
                curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
                curl_easy_cleanup(h);
                if (cc == CURLE_OK && status >= 200 && status < 300) {
                        if (fsync(s.fd) < 0 || close(s.fd) < 0 || rename(tmp, dest) < 0) {
                                kiln_error_set_errno(err, KILN_E_IO, errno, "cannot write '%s'", dest);
                                unlink(tmp);
                                return -1;
                        }
                        return 0;
                }
                close(s.fd);
                unlink(tmp);
                if (s.too_big)
                        return kiln_error_set(err, KILN_E_LIMIT,
                                              "'%s' is larger than the limit of %lld bytes", shown,
                                              (long long)max);
                if (s.write_failed)
                        return kiln_error_set(err, KILN_E_IO, "cannot write '%s'", tmp);
                if (cc != CURLE_OK) {
                        kiln_error_set(err, KILN_E_NETWORK, "GET '%s' failed: %s", shown,
                                       errbuf[0] ? errbuf : curl_easy_strerror(cc));
                        retry = cc == CURLE_COULDNT_CONNECT || cc == CURLE_OPERATION_TIMEDOUT ||
                                cc == CURLE_RECV_ERROR || cc == CURLE_SEND_ERROR ||
                                cc == CURLE_PARTIAL_FILE || cc == CURLE_GOT_NOTHING;
                } else {
                        kiln_error_set(err, status == 404 ? KILN_E_NOT_FOUND : status == 401 || status == 403 ? KILN_E_AUTH : KILN_E_NETWORK,
                                       "GET '%s': HTTP %ld", shown, status);
                        retry = status == 408 || status == 429 || status >= 500;
                }
                if (!retry || a + 1 == attempts)
                        break;
                {
                        struct timespec ts = {backoff_ms / 1000, (backoff_ms % 1000) * 1000000L};
                        nanosleep(&ts, NULL);
                        backoff_ms *= 2;
                }
        }
        return rc;
}
