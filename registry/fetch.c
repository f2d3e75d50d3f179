/* Downloads of recipe inputs through the registry client's request path:
 * one set of transport rules, one retry budget, one deadline. */
#include "fetch.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io.h"
#include "parse.h"
#include "util.h"

struct sink {
        int fd;
        int64_t n, max;
        const char *shown, *tmp;
};

static int on_data(void *ctx, const void *buf, size_t len, struct kiln_error *err)
{
        struct sink *s = ctx;
        const char *p = buf;

        if (s->max >= 0 && s->n + (int64_t)len > s->max)
                return kiln_error_set(err, KILN_E_LIMIT, "'%s' is larger than the limit of %lld bytes",
                                      s->shown, (long long)s->max);
        for (size_t off = 0; off < len;) {
                ssize_t w = write(s->fd, p + off, len - off);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot write '%s'",
                                                    s->tmp);
                }
                off += (size_t)w;
        }
        s->n += (int64_t)len;
        return 0;
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

/* GETs url into s->fd; the status of a final answer that is not a 2xx is an
 * error naming the URL. */
static int fetch_into(struct reg_client *c, const char *url, struct sink *s,
                      struct kiln_error *err)
{
        struct reg_stats st;
        long status = 0;
        enum kiln_errc code;

        if (reg_client_get_url(c, url, on_data, s, &status, err) < 0)
                return -1;
        if (status >= 200 && status < 300)
                return 0;
        reg_client_stats(c, &st);
        code = status == 404 ? KILN_E_NOT_FOUND
               : status == 401 || status == 403 ? KILN_E_AUTH
                                                : KILN_E_NETWORK;
        if (st.retries)
                return kiln_error_set(err, code, "GET '%s': HTTP %ld after %u retries", s->shown,
                                      status, st.retries);
        return kiln_error_set(err, code, "GET '%s': HTTP %ld", s->shown, status);
}

int reg_http_fetch(void *ctx, const char *url, const char *dest, int64_t max,
                   struct kiln_error *err)
{
        const struct reg_options *o = ctx;
        struct reg_options defaults;
        _cleanup_free_ char *shown = redact(url);
        _cleanup_free_ char *host = reg_url_host(url);
        _cleanup_free_ char *tmp = kiln_strdupf("%s.tmp-XXXXXX", dest);
        struct sink s = {.fd = -1, .max = max};
        struct reg_client *c = NULL;
        bool created = false;
        int fd, rc = -1;

        if (!shown || !tmp)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (!str_has_prefix(url, "https://") && !str_has_prefix(url, "http://"))
                return kiln_error_set(err, KILN_E_UNSUPPORTED, "cannot fetch '%s': not an http(s) URL",
                                      shown);
        if (!host)
                return kiln_error_set(err, KILN_E_INVALID, "cannot fetch '%s': no host", shown);
        if (str_has_prefix(url, "http://") && !http_allowed(o, host))
                return kiln_error_set(err, KILN_E_NETWORK,
                                      "refusing plain http for '%s': use https or --insecure-registry %s",
                                      shown, host);
        if (!o) {
                reg_options_init(&defaults);
                o = &defaults;
        }
        c = reg_client_new(host, NULL, o, false, err);
        if (!c)
                return -1;
        /* one temp file for every attempt: a retry resumes (or skips what it
         * already has), so the file is never started again */
        s.fd = mkstemp(tmp);
        if (s.fd < 0) {
                kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create '%s'", tmp);
                goto out;
        }
        created = true;
        s.shown = shown;
        s.tmp = tmp;
        if (fetch_into(c, url, &s, err) < 0)
                goto out;
        if (fsync(s.fd) < 0) {
                kiln_error_set_errno(err, KILN_E_IO, errno, "cannot write '%s'", dest);
                goto out;
        }
        fd = s.fd;
        s.fd = -1;
        if (close(fd) < 0 || rename(tmp, dest) < 0) {
                kiln_error_set_errno(err, KILN_E_IO, errno, "cannot write '%s'", dest);
                goto out;
        }
        rc = 0;
out:
        if (s.fd >= 0)
                close(s.fd);
        if (rc < 0 && created)
                unlink(tmp);
        reg_client_free(c);
        return rc;
}
