/* The registry client's blob calls: existence, download, upload (monolithic,
 * streamed, chunked with resync) and cross-repository mount. */
#include <curl/curl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client_internal.h"
#include "parse.h"

#define SMALL_BLOB_MAX (8 * 1024 * 1024)

int reg_client_has_blob(struct reg_client *c, const struct oci_descriptor *d, bool *ret,
                        struct kiln_error *err)
{
        _cleanup_free_ char *url = NULL;
        struct req q = {.method = "HEAD", .cap = ERROR_BODY_MAX};
        struct resp r = {.cap = ERROR_BODY_MAX};
        int rc = -1;

        if (reg_ensure_base(c, NULL, err) < 0)
                return -1;
        url = reg_api_url(c, "blobs/%s", d->digest.str);
        if (!url)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        q.url = url;
        if (reg_request(c, &q, &r, err) < 0)
                goto out;
        if (r.status == 200) {
                /* R1: a present blob of another size is treated as absent */
                *ret = !r.content_length || strtoll(r.content_length, NULL, 10) == d->size;
        } else if (r.status == 404) {
                *ret = false;
        } else {
                reg_http_error(c, "HEAD", url, &r, err);
                goto out;
        }
        rc = 0;
out:
        reg_resp_reset(&r);
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

        if (reg_request(b->c, &q, &r, &e) < 0)
                goto out;
        if (r.status != 200 && r.status != 206) {
                if (r.status == 404)
                        kiln_error_set(&e, KILN_E_NOT_FOUND, "blob '%s' not found in '%s/%s'",
                                       b->d.digest.str, b->c->host, b->c->repo);
                else
                        reg_http_error(b->c, "GET", b->url, &r, &e);
                goto out;
        }
        pthread_mutex_lock(&b->c->lock);
        b->c->stats.bytes_down += r.sunk;
        pthread_mutex_unlock(&b->c->lock);
        rc = 0;
out:
        curl_slist_free_all(q.headers);
        reg_resp_reset(&r);
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

        if (reg_ensure_base(c, NULL, err) < 0)
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
        b->url = reg_api_url(c, "blobs/%s", d->digest.str);
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
                if (!strncasecmp(*ret, "http://", 7) && !reg_host_http_ok(c, h)) {
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
 * by reg_request()). */
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
        if (reg_request(c, &q, &r, err) < 0)
                goto out;
        if (r.status != 201 && r.status != 204 && r.status != 200) {
                reg_http_error(c, "PUT", url, &r, err);
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
        reg_resp_reset(&r);
        return rc;
}

/* GET <location>: 204 with Range "0-END" (END -1 when empty). */
static int upload_status(struct reg_client *c, const char *loc, long long *ret_end,
                         struct kiln_error *err)
{
        struct req q = {.method = "GET", .url = loc, .cap = ERROR_BODY_MAX};
        struct resp r = {.cap = ERROR_BODY_MAX};
        long long a = 0, b = -1;

        if (reg_request(c, &q, &r, err) < 0)
                return -1;
        if (r.status != 204 && r.status != 200) {
                reg_http_error(c, "GET", loc, &r, err);
                reg_resp_reset(&r);
                return -1;
        }
        if (!r.range || reg_range_parse(r.range, &a, &b) < 0)
                b = -1;
        reg_resp_reset(&r);
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
                if (reg_request(c, &q, &r, err) < 0) {
                        curl_slist_free_all(q.headers);
                        reg_resp_reset(&r);
                        return -1;
                }
                curl_slist_free_all(q.headers);
                if (r.status == 416 && !resynced) {
                        /* R6: out of step; ask the session where it is (GET -> 204 + Range)
                         * and resend the tail of this chunk when the registry holds a
                         * prefix of it */
                        long long have_end = -1;
                        reg_resp_reset(&r);
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
                        reg_http_error(c, "PATCH", *loc, &r, err);
                        reg_resp_reset(&r);
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
                        reg_resp_reset(&r);
                        return -1;
                }
                {
                        char *n2 = NULL;
                        if (next_location(c, *loc, &r, &n2, err) < 0) {
                                reg_resp_reset(&r);
                                return -1;
                        }
                        free(*loc);
                        *loc = n2;
                }
                reg_resp_reset(&r);
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
        if (reg_ensure_base(c, NULL, err) < 0)
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
                if (reg_request(c, &q, &rs, err) < 0)
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
                        reg_resp_reset(&rs);
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
                if (reg_request(c, &q, &rs, err) < 0)
                        goto out;
                if (rs.status != 202) {
                        reg_http_error(c, "POST", url, &rs, err);
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
        reg_resp_reset(&rs);
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
                reg_request(c, &dq, &dr, &ign);
                reg_resp_reset(&dr);
        }
        reg_resp_reset(&rs);
        oci_reader_free(vr);
        if (rc < 0)
                kiln_error_prefix(err, "push blob '%s'", d->digest.str);
        return rc;
}
