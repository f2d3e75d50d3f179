/* The registry client's manifest calls and the tag walk. */
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client_internal.h"
#include "hosts.h"
#include "json.h"
#include "parse.h"

#define TAGS_BODY_MAX (4 * 1024 * 1024)
#define TAGS_PAGE_N 1000
/* pages are streamed, so the cap only ends a registry that never stops */
#define TAGS_MAX_PAGES 100000

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
                reg_client_notify(c, REG_EVENT_WARNING,
                       "registry '%s': %ld of %ld manifest requests left in its rate-limit window of %ld s; log in ('kiln login %s') or pull through a mirror ('--mirror %s=HOST') before it answers 429",
                       c->host, left, lim, w, c->host, c->host);
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
        if (reg_ensure_base(c, NULL, err) < 0)
                return -1;
        url = reg_api_url(c, "manifests/%s", ref);
        if (!url)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        q.url = url;
        q.headers = curl_slist_append(NULL, "Accept: " OCI_MANIFEST_ACCEPT);
        if (reg_request(c, &q, &r, err) < 0)
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
                        reg_http_error(c, "GET", url, &r, err);
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
                        reg_client_notify(c, REG_EVENT_WARNING,
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
        reg_resp_reset(&r);
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
        if (reg_ensure_base(c, NULL, err) < 0)
                return -1;
        url = reg_api_url(c, "manifests/%s", ref);
        if (!url)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        q.url = url;
        q.headers = curl_slist_append(NULL, "Accept: " OCI_MANIFEST_ACCEPT);
        if (reg_request(c, &q, &r, err) < 0)
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
                reg_http_error(c, "HEAD", url, &r, err);
                goto out;
        }
        rc = 0;
out:
        curl_slist_free_all(q.headers);
        reg_resp_reset(&r);
        return rc;
}

int reg_client_put_manifest(struct reg_client *c, const char *ref, const char *media_type,
                            const char *buf, size_t len, struct kiln_error *err)
{
        return reg_put_manifest(c, ref, media_type, buf, len, NULL, err);
}

int reg_put_manifest(struct reg_client *c, const char *ref, const char *media_type,
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
        if (reg_ensure_base(c, NULL, err) < 0)
                return -1;
        url = reg_api_url(c, "manifests/%s", ref);
        ct = kiln_strdupf("Content-Type: %s", media_type);
        if (!url || !ct)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        q.url = url;
        q.headers = curl_slist_append(NULL, ct);
        for (int attempt = 0;; attempt++) {
                if (reg_request(c, &q, &r, err) < 0)
                        goto out;
                /* A blob pushed a moment ago by a concurrent writer of the same
                 * repository can be briefly unknown to the manifest check (seen
                 * with 8 parallel pushes to distribution's filesystem storage):
                 * the blobs were all confirmed, so ask again, a bounded number of
                 * times. */
                if (r.status == 400 && attempt < 3 && r.body &&
                    reg_body_has(&r, "MANIFEST_BLOB_UNKNOWN")) {
                        struct timespec ts = {0, 200000000L * (attempt + 1)};
                        nanosleep(&ts, NULL);
                        reg_resp_reset(&r);
                        continue;
                }
                break;
        }
        if (r.status != 201 && r.status != 200) {
                reg_http_error(c, "PUT", url, &r, err);
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
        reg_resp_reset(&r);
        return rc;
}

int reg_client_delete_manifest(struct reg_client *c, const struct oci_digest *d,
                               struct kiln_error *err)
{
        _cleanup_free_ char *url = NULL;
        struct req q = {.method = "DELETE", .cap = ERROR_BODY_MAX};
        struct resp r = {.cap = ERROR_BODY_MAX};
        int rc = -1;

        if (reg_ensure_base(c, NULL, err) < 0)
                return -1;
        url = reg_api_url(c, "manifests/%s", d->str);
        if (!url)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        q.url = url;
        if (reg_request(c, &q, &r, err) < 0)
                goto out;
        if (r.status != 202 && r.status != 200 && r.status != 204) {
                if (r.status == 404)
                        kiln_error_set(err, KILN_E_NOT_FOUND, "manifest '%s' not found in '%s/%s'",
                                       d->str, c->host, c->repo);
                else
                        reg_http_error(c, "DELETE", url, &r, err);
                goto out;
        }
        rc = 0;
out:
        reg_resp_reset(&r);
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
        if (reg_request(c, &q, &r, err) < 0)
                goto out;
        if (r.status != 200) {
                if (r.status == 404)
                        kiln_error_set(err, KILN_E_NOT_FOUND, "repository '%s/%s' not found",
                                       c->host, c->repo);
                else
                        reg_http_error(c, "GET", url, &r, err);
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
        reg_resp_reset(&r);
        return rc;
}

int reg_client_walk_tags(struct reg_client *c, reg_tags_fn fn, void *ctx, struct kiln_error *err)
{
        _cleanup_free_ char *url = NULL;
        struct url_set seen = {0};
        size_t pages = 0;
        int rc = -1;

        if (reg_ensure_base(c, NULL, err) < 0)
                return -1;
        /* ask for pages of TAGS_PAGE_N: a registry that pages sends Link */
        url = reg_api_url(c, "tags/list?n=%d", TAGS_PAGE_N);
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
