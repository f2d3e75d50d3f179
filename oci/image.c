#include "image.h"
#include "parallel.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "layout.h"
#include "util.h"

void oci_store_free(struct oci_store *s)
{
        if (s)
                s->ops->free(s);
}

void oci_store_freep(struct oci_store **s)
{
        oci_store_free(*s);
        *s = NULL;
}

int oci_store_commit(struct oci_store *s, struct kiln_error *err)
{
        if (!s->ops->commit)
                return 0;
        return s->ops->commit(s, err);
}

void oci_fetched_release(struct oci_fetched *f)
{
        if (!f)
                return;
        free(f->buf);
        free(f->media_type);
        memset(f, 0, sizeof(*f));
}

static int fill_fetched(char *buf, size_t len, char *mt, const struct oci_digest *dig,
                        struct oci_fetched *ret, struct kiln_error *err)
{
        struct oci_fetched f = {0};
        enum oci_doc_kind kind;

        if (oci_document_kind(buf, len, mt, &kind, err) < 0) {
                free(buf);
                free(mt);
                return -1;
        }
        if (!mt) {
                /* No media type from the place: take the declared one, or the kind's. */
                json_t *j = json_loadb(buf, len, 0, NULL);
                const char *declared = json_string_value(json_object_get(j, "mediaType"));
                mt = strdup(declared ? declared
                                     : (kind == OCI_DOC_INDEX ? OCI_MT_INDEX : OCI_MT_MANIFEST));
                json_decref(j);
                if (!mt) {
                        free(buf);
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                }
        }
        f.buf = buf;
        f.len = len;
        f.media_type = mt;
        f.kind = kind;
        f.desc.media_type = mt;
        f.desc.digest = *dig;
        f.desc.size = (int64_t)len;
        *ret = f;
        return 0;
}

int oci_store_fetch(struct oci_store *s, const char *ref, struct oci_fetched *ret,
                    struct kiln_error *err)
{
        char *buf = NULL, *mt = NULL;
        size_t len = 0;
        struct oci_digest dig;

        if (s->ops->get_manifest(s, ref, &buf, &len, &mt, &dig, err) < 0)
                return -1;
        return fill_fetched(buf, len, mt, &dig, ret, err);
}

int oci_store_fetch_desc(struct oci_store *s, const struct oci_descriptor *d,
                         struct oci_fetched *ret, struct kiln_error *err)
{
        char *buf = NULL, *mt = NULL;
        size_t len = 0;
        struct oci_digest dig;

        if (d->size > (int64_t)oci_manifest_limit())
                return kiln_error_set(err, KILN_E_LIMIT,
                                      "manifest '%s' of %lld bytes is larger than the limit of %zu bytes",
                                      d->digest.str, (long long)d->size, oci_manifest_limit());
        if (s->ops->get_manifest(s, d->digest.str, &buf, &len, &mt, &dig, err) < 0)
                return -1;
        if ((int64_t)len != d->size) {
                free(buf);
                free(mt);
                return kiln_error_set(err, KILN_E_DIGEST,
                                      "manifest '%s' has %zu bytes, its descriptor says %lld",
                                      d->digest.str, len, (long long)d->size);
        }
        if (!mt)
                mt = strdup(d->media_type);
        return fill_fetched(buf, len, mt, &dig, ret, err);
}

int oci_store_read_blob(struct oci_store *s, const struct oci_descriptor *d, size_t cap,
                        char **ret_buf, size_t *ret_len, struct kiln_error *err)
{
        struct oci_reader *r;
        int rc;

        if (d->size > (int64_t)cap)
                return kiln_error_set(err, KILN_E_LIMIT,
                                      "blob '%s' of %lld bytes is larger than the limit of %zu bytes",
                                      d->digest.str, (long long)d->size, cap);
        r = s->ops->open_blob(s, d, err);
        if (!r)
                return -1;
        rc = oci_reader_read_all(r, cap, d->digest.str, ret_buf, ret_len, err);
        oci_reader_free(r);
        return rc;
}

void oci_image_release(struct oci_image *img)
{
        if (!img)
                return;
        oci_fetched_release(&img->top);
        oci_manifest_free(img->m);
        free(img->config_buf);
        json_decref(img->config);
        memset(img, 0, sizeof(*img));
}

json_t *oci_config_scratch(const struct oci_platform *plat)
{
        struct oci_platform host;
        json_t *c = json_object(), *rootfs = json_object();

        if (!c || !rootfs) {
                json_decref(c);
                json_decref(rootfs);
                return NULL;
        }
        if (!plat) {
                oci_platform_host(&host);
                plat = &host;
        }
        json_object_set_new(c, "architecture", json_string(plat->architecture));
        if (plat->variant)
                json_object_set_new(c, "variant", json_string(plat->variant));
        json_object_set_new(c, "os", json_string(plat->os ? plat->os : "linux"));
        json_object_set_new(c, "config", json_object());
        json_object_set_new(rootfs, "type", json_string("layers"));
        json_object_set_new(rootfs, "diff_ids", json_array());
        json_object_set_new(c, "rootfs", rootfs);
        json_object_set_new(c, "history", json_array());
        return c;
}

int oci_image_scratch(const struct oci_platform *plat, struct oci_image *ret,
                      struct kiln_error *err)
{
        struct oci_image img = {0};

        img.m = calloc(1, sizeof(*img.m));
        img.config = oci_config_scratch(plat);
        if (!img.m || !img.config) {
                oci_image_release(&img);
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        img.m->media_type = OCI_MT_MANIFEST;
        *ret = img;
        return 0;
}

int oci_image_load(struct oci_store *s, const char *ref, const struct oci_platform *plat,
                   struct oci_image *ret, struct kiln_error *err)
{
        struct oci_image img = {0};
        struct oci_platform host;

        if (oci_store_fetch(s, ref, &img.top, err) < 0)
                return -1;
        if (img.top.kind == OCI_DOC_INDEX) {
                struct oci_index *x = NULL;
                const struct oci_descriptor *d;
                struct oci_fetched child = {0};
                if (!plat) {
                        oci_platform_host(&host);
                        plat = &host;
                }
                if (oci_index_parse(img.top.buf, img.top.len, img.top.media_type, &x, err) < 0)
                        goto fail;
                d = oci_index_select(x, plat);
                if (!d) {
                        kiln_error_set(err, KILN_E_NOT_FOUND,
                                       "no image for platform '%s/%s%s%s' in '%s'", plat->os,
                                       plat->architecture, plat->variant ? "/" : "",
                                       plat->variant ? plat->variant : "", s->name);
                        oci_index_free(x);
                        goto fail;
                }
                if (oci_store_fetch_desc(s, d, &child, err) < 0) {
                        oci_index_free(x);
                        goto fail;
                }
                oci_index_free(x);
                oci_fetched_release(&img.top);
                img.top = child;
        }
        if (oci_manifest_parse(img.top.buf, img.top.len, img.top.media_type, &img.m, err) < 0 ||
            oci_store_read_blob(s, &img.m->config, OCI_CONFIG_MAX, &img.config_buf,
                                &img.config_len, err) < 0)
                goto fail;
        img.config = oci_json_parse(img.config_buf, img.config_len, "image config", err);
        if (!img.config)
                goto fail;
        if (!json_is_object(img.config)) {
                kiln_error_set(err, KILN_E_INVALID, "invalid image config: not an object");
                goto fail;
        }
        *ret = img;
        return 0;
fail:
        oci_image_release(&img);
        return -1;
}

/* ---- the layout store ---- */

struct layout_store {
        struct oci_store base;
        struct oci_layout *l;
};

static int ls_get_manifest(struct oci_store *s, const char *ref, char **ret_buf, size_t *ret_len,
                           char **ret_media_type, struct oci_digest *ret_digest,
                           struct kiln_error *err)
{
        struct layout_store *ls = (struct layout_store *)s;
        _cleanup_(oci_index_freep) struct oci_index *x = NULL;
        const struct oci_descriptor *d = NULL;
        struct oci_digest dig;
        int64_t size = -1;
        char *mt = NULL;

        if (!ref)
                ref = s->default_ref;
        if (ref && oci_digest_valid(ref)) {
                if (oci_digest_parse(ref, &dig, err) < 0)
                        return -1;
                /* Use the index entry's media type when one names this digest. */
                if (oci_layout_resolve(ls->l, ref, &x, &d, NULL) == 0) {
                        mt = strdup(d->media_type);
                        size = d->size;
                }
        } else {
                if (oci_layout_resolve(ls->l, ref, &x, &d, err) < 0)
                        return -1;
                dig = d->digest;
                size = d->size;
                if (d->size > (int64_t)oci_manifest_limit())
                        return kiln_error_set(err, KILN_E_LIMIT,
                                              "manifest '%s' of %lld bytes is larger than the limit of %zu bytes",
                                              d->digest.str, (long long)d->size,
                                              oci_manifest_limit());
                mt = strdup(d->media_type);
        }
        if (oci_layout_blob_read(ls->l, &dig, size, oci_manifest_limit(), ret_buf, ret_len,
                                 err) < 0) {
                free(mt);
                return -1;
        }
        *ret_media_type = mt;
        *ret_digest = dig;
        return 0;
}

static struct oci_reader *ls_open_blob(struct oci_store *s, const struct oci_descriptor *d,
                                       struct kiln_error *err)
{
        struct layout_store *ls = (struct layout_store *)s;

        return oci_layout_blob_open(ls->l, &d->digest, d->size, err);
}

static int ls_has_blob(struct oci_store *s, const struct oci_descriptor *d, bool *ret,
                       struct kiln_error *err)
{
        struct layout_store *ls = (struct layout_store *)s;

        return oci_layout_blob_check(ls->l, &d->digest, d->size, ret, err);
}

static int ls_put_blob(struct oci_store *s, const struct oci_descriptor *d, struct oci_reader *r,
                       struct kiln_error *err)
{
        struct layout_store *ls = (struct layout_store *)s;
        struct oci_writer *w = oci_layout_blob_writer_new(ls->l, d->digest.alg, err);
        int rc = -1;

        /* a verified stream (a registry's, another layout's) is hashed once */
        if (w && oci_reader_verifies(r, &d->digest, d->size))
                oci_layout_blob_writer_prechecked(w);
        if (w && oci_copy_stream(r, w, NULL, err) == 0)
                rc = oci_layout_blob_writer_commit(w, &d->digest, d->size, NULL, NULL, err);
        oci_writer_free(w);
        oci_reader_free(r);
        return rc;
}

static int ls_put_manifest(struct oci_store *s, const struct oci_descriptor *d, const char *buf,
                           size_t len, struct kiln_error *err)
{
        struct oci_reader *r = oci_reader_from_buffer(buf, len, err);

        if (!r)
                return -1;
        return ls_put_blob(s, d, r, err);
}

static int ls_tag(struct oci_store *s, const char *tag, const struct oci_descriptor *d,
                  struct kiln_error *err)
{
        struct layout_store *ls = (struct layout_store *)s;

        if (!tag)
                tag = s->default_ref;
        if (tag && oci_digest_valid(tag))
                tag = NULL;
        return oci_layout_tag(ls->l, tag, d, err);
}

static void ls_free(struct oci_store *s)
{
        struct layout_store *ls = (struct layout_store *)s;

        oci_layout_free(ls->l);
        free(s->name);
        free(s->default_ref);
        free(ls);
}

static const struct oci_store_ops layout_ops = {
        .kind = "oci",
        .thread_safe = true,
        .get_manifest = ls_get_manifest,
        .open_blob = ls_open_blob,
        .has_blob = ls_has_blob,
        .put_blob = ls_put_blob,
        .put_manifest = ls_put_manifest,
        .tag = ls_tag,
        .commit = NULL,
        .free = ls_free,
};

struct oci_store *oci_layout_store_new(const char *dir, const char *tag, bool create,
                                       struct kiln_error *err)
{
        struct layout_store *ls = calloc(1, sizeof(*ls));

        if (!ls) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        ls->base.ops = &layout_ops;
        ls->l = oci_layout_open(dir, create, err);
        if (!ls->l) {
                free(ls);
                return NULL;
        }
        ls->base.name = kiln_strdupf("oci:%s%s%s", dir, tag ? ":" : "", tag ? tag : "");
        ls->base.default_ref = tag ? strdup(tag) : NULL;
        return &ls->base;
}

/* ---- overlay ---- */

struct overlay_store {
        struct oci_store base;
        struct oci_store *upper, *lower;
};

static int ov_get_manifest(struct oci_store *s, const char *ref, char **ret_buf, size_t *ret_len,
                           char **ret_media_type, struct oci_digest *ret_digest,
                           struct kiln_error *err)
{
        struct overlay_store *o = (struct overlay_store *)s;
        struct kiln_error e = KILN_ERROR_INIT;

        if (!ref)
                ref = s->default_ref;
        if (o->upper->ops->get_manifest(o->upper, ref, ret_buf, ret_len, ret_media_type,
                                        ret_digest, &e) == 0)
                return 0;
        if (e.code != KILN_E_NOT_FOUND) {
                if (err)
                        *err = e;
                return -1;
        }
        return o->lower->ops->get_manifest(o->lower, ref, ret_buf, ret_len, ret_media_type,
                                           ret_digest, err);
}

static struct oci_reader *ov_open_blob(struct oci_store *s, const struct oci_descriptor *d,
                                       struct kiln_error *err)
{
        struct overlay_store *o = (struct overlay_store *)s;
        struct kiln_error e = KILN_ERROR_INIT;
        struct oci_reader *r;

        /* a registry opens blobs lazily (a 404 comes with the first read):
         * ask it first, so an absent blob falls through to lower */
        if (!strcmp(o->upper->ops->kind, "registry")) {
                bool have = false;
                if (o->upper->ops->has_blob(o->upper, d, &have, err) < 0)
                        return NULL;
                if (!have)
                        return o->lower->ops->open_blob(o->lower, d, err);
        }
        r = o->upper->ops->open_blob(o->upper, d, &e);
        if (r)
                return r;
        if (e.code != KILN_E_NOT_FOUND) {
                if (err)
                        *err = e;
                return NULL;
        }
        return o->lower->ops->open_blob(o->lower, d, err);
}

static int ov_has_blob(struct oci_store *s, const struct oci_descriptor *d, bool *ret,
                       struct kiln_error *err)
{
        struct overlay_store *o = (struct overlay_store *)s;

        if (o->upper->ops->has_blob(o->upper, d, ret, err) < 0)
                return -1;
        if (*ret)
                return 0;
        return o->lower->ops->has_blob(o->lower, d, ret, err);
}

static int ov_read_only(struct oci_store *s, struct kiln_error *err)
{
        return kiln_error_set(err, KILN_E_UNSUPPORTED, "'%s' is read-only", s->name);
}

static int ov_put_blob(struct oci_store *s, const struct oci_descriptor *d, struct oci_reader *r,
                       struct kiln_error *err)
{
        oci_reader_free(r);
        return ov_read_only(s, err);
}

static int ov_put_manifest(struct oci_store *s, const struct oci_descriptor *d, const char *buf,
                           size_t len, struct kiln_error *err)
{
        return ov_read_only(s, err);
}

static int ov_tag(struct oci_store *s, const char *tag, const struct oci_descriptor *d,
                  struct kiln_error *err)
{
        return ov_read_only(s, err);
}

static void ov_free(struct oci_store *s)
{
        free(s->name);
        free(s->default_ref);
        free(s);
}

static const struct oci_store_ops overlay_ops = {
        .kind = "overlay",
        .thread_safe = false, /* set per instance below */
        .get_manifest = ov_get_manifest,
        .open_blob = ov_open_blob,
        .has_blob = ov_has_blob,
        .put_blob = ov_put_blob,
        .put_manifest = ov_put_manifest,
        .tag = ov_tag,
        .free = ov_free,
};

static const struct oci_store_ops overlay_ops_mt = {
        .kind = "overlay",
        .thread_safe = true,
        .get_manifest = ov_get_manifest,
        .open_blob = ov_open_blob,
        .has_blob = ov_has_blob,
        .put_blob = ov_put_blob,
        .put_manifest = ov_put_manifest,
        .tag = ov_tag,
        .free = ov_free,
};

struct oci_store *oci_overlay_store_new(struct oci_store *upper, struct oci_store *lower,
                                        const char *default_ref, struct kiln_error *err)
{
        struct overlay_store *o = calloc(1, sizeof(*o));

        if (!o) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        o->base.ops = upper->ops->thread_safe && lower->ops->thread_safe ? &overlay_ops_mt
                                                                         : &overlay_ops;
        o->upper = upper;
        o->lower = lower;
        o->base.name = kiln_strdupf("%s + %s", upper->name, lower->name);
        o->base.default_ref = default_ref ? strdup(default_ref) : NULL;
        if (!o->base.name || (default_ref && !o->base.default_ref)) {
                ov_free(&o->base);
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        return &o->base;
}

/* ---- copy ---- */

#define COPY_MAX_DEPTH 4

struct copy_ctx {
        pthread_mutex_t lock; /* seen, res, progress */
        struct oci_store *src, *dst;
        const struct oci_copy_opts *opts;
        struct oci_copy_result *res;
        /* digests already handled in this copy */
        char **seen;
        size_t n_seen, alloc_seen;
};

static bool seen_locked(struct copy_ctx *c, const struct oci_digest *d)
{
        for (size_t i = 0; i < c->n_seen; i++)
                if (!strcmp(c->seen[i], d->str))
                        return true;
        return false;
}

/* Marks d as handled; false when it already was (by this or another thread). */
static bool claim(struct copy_ctx *c, const struct oci_digest *d)
{
        bool fresh = false;

        pthread_mutex_lock(&c->lock);
        if (!seen_locked(c, d)) {
                if (c->n_seen == c->alloc_seen) {
                        size_t na = c->alloc_seen ? c->alloc_seen * 2 : 16;
                        char **n = realloc(c->seen, na * sizeof(*n));
                        if (n) {
                                c->seen = n;
                                c->alloc_seen = na;
                        }
                }
                if (c->n_seen < c->alloc_seen && (c->seen[c->n_seen] = strdup(d->str)))
                        c->n_seen++;
                fresh = true;
        }
        pthread_mutex_unlock(&c->lock);
        return fresh;
}

static void progress(struct copy_ctx *c, const char *event, const struct oci_descriptor *d)
{
        pthread_mutex_lock(&c->lock);
        if (c->opts && c->opts->progress)
                c->opts->progress(c->opts->progress_ctx, event, d);
        pthread_mutex_unlock(&c->lock);
}

static struct oci_reader *count_reader_new(const struct oci_copy_opts *opts,
                                           const struct oci_descriptor *d, struct oci_reader *inner,
                                           struct kiln_error *err);

/* Counts the bytes a destination reads from a source stream, for opts->bytes. */
struct count_reader {
        struct oci_reader base;
        struct oci_reader *inner;
        const struct oci_copy_opts *opts;
        struct oci_descriptor d; /* digest and size only */
        int64_t done;
};

static ssize_t count_read(struct oci_reader *r, void *buf, size_t len, struct kiln_error *err)
{
        struct count_reader *cr = (struct count_reader *)r;
        ssize_t n = oci_reader_read(cr->inner, buf, len, err);

        if (n > 0) {
                cr->done += n;
                cr->opts->bytes(cr->opts->progress_ctx, &cr->d, cr->done, false);
        }
        return n;
}

static bool count_verifies(struct oci_reader *r, const struct oci_digest *d, int64_t size)
{
        return oci_reader_verifies(((struct count_reader *)r)->inner, d, size);
}

static struct oci_reader *count_reopen(struct oci_reader *r, struct kiln_error *err)
{
        struct count_reader *cr = (struct count_reader *)r;
        struct oci_reader *inner = oci_reader_reopen(cr->inner, err);

        return inner ? count_reader_new(cr->opts, &cr->d, inner, err) : NULL;
}

static void count_free(struct oci_reader *r)
{
        struct count_reader *cr = (struct count_reader *)r;

        cr->opts->bytes(cr->opts->progress_ctx, &cr->d, cr->done, true);
        oci_reader_free(cr->inner);
        free(cr);
}

static struct oci_reader *count_reader_new(const struct oci_copy_opts *opts,
                                           const struct oci_descriptor *d, struct oci_reader *inner,
                                           struct kiln_error *err)
{
        struct count_reader *cr;

        if (!opts || !opts->bytes)
                return inner;
        cr = calloc(1, sizeof(*cr));
        if (!cr) {
                oci_reader_free(inner);
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        cr->base.read = count_read;
        cr->base.free = count_free;
        cr->base.verifies = count_verifies;
        cr->base.reopen = count_reopen;
        cr->inner = inner;
        cr->opts = opts;
        cr->d.digest = d->digest;
        cr->d.size = d->size;
        return &cr->base;
}

static int copy_blob(struct copy_ctx *c, const struct oci_descriptor *d, struct kiln_error *err)
{
        struct oci_reader *r;
        bool have = false;

        if (!claim(c, &d->digest))
                return 0;
        if (c->dst->ops->has_blob(c->dst, d, &have, err) < 0)
                return -1;
        if (have) {
                pthread_mutex_lock(&c->lock);
                c->res->blobs_skipped++;
                pthread_mutex_unlock(&c->lock);
                progress(c, "skip", d);
                return 0;
        }
        progress(c, "copy", d);
        /* a destination that fails on the way reads the source again
         * (oci_reader_reopen), so the stream is reopenable all the way */
        r = c->src->ops->open_blob(c->src, d, err);
        if (r)
                r = count_reader_new(c->opts, d, r, err);
        if (!r)
                return -1;
        if (c->dst->ops->put_blob(c->dst, d, r, err) < 0)
                return -1;
        pthread_mutex_lock(&c->lock);
        c->res->blobs_copied++;
        c->res->bytes_copied += d->size;
        pthread_mutex_unlock(&c->lock);
        progress(c, "done", d);
        return 0;
}

/* Copies a set of blobs with up to opts->jobs threads; the first error wins. */
struct blob_batch {
        struct copy_ctx *c;
        const struct oci_descriptor *const *descs;
};

static int batch_one(void *ctx, size_t i, struct kiln_error *err)
{
        struct blob_batch *b = ctx;

        return copy_blob(b->c, b->descs[i], err);
}

static int copy_blobs(struct copy_ctx *c, const struct oci_descriptor *const *descs, size_t n,
                      struct kiln_error *err)
{
        unsigned jobs = c->opts ? c->opts->jobs : 1;
        struct blob_batch b = {.c = c, .descs = descs};

        if (!c->src->ops->thread_safe || !c->dst->ops->thread_safe)
                jobs = 1;
        if (jobs > 32)
                jobs = 32;
        return kiln_parallel_for(n, jobs, batch_one, &b, err);
}

static int copy_document(struct copy_ctx *c, const struct oci_fetched *f, int depth,
                         struct kiln_error *err);

static int copy_child(struct copy_ctx *c, const struct oci_descriptor *d, int depth,
                      struct kiln_error *err)
{
        struct oci_fetched child = {0};
        int rc;

        if (oci_media_type_doc_kind(d->media_type) == OCI_DOC_UNKNOWN)
                return copy_blob(c, d, err); /* an artifact of unknown type: carried as is */
        if (oci_store_fetch_desc(c->src, d, &child, err) < 0)
                return -1;
        rc = copy_document(c, &child, depth + 1, err);
        oci_fetched_release(&child);
        return rc;
}

static int copy_document(struct copy_ctx *c, const struct oci_fetched *f, int depth,
                         struct kiln_error *err)
{
        if (depth > COPY_MAX_DEPTH)
                return kiln_error_set(err, KILN_E_LIMIT,
                                      "index nesting deeper than %d levels at '%s'",
                                      COPY_MAX_DEPTH, f->desc.digest.str);
        if (f->kind == OCI_DOC_MANIFEST) {
                _cleanup_(oci_manifest_freep) struct oci_manifest *m = NULL;
                if (oci_manifest_parse(f->buf, f->len, f->media_type, &m, err) < 0) {
                        kiln_error_prefix(err, "manifest '%s'", f->desc.digest.str);
                        return -1;
                }
                const struct oci_descriptor **descs = calloc(m->n_layers + 1, sizeof(*descs));
                int rc;
                if (!descs)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                descs[0] = &m->config;
                for (size_t i = 0; i < m->n_layers; i++)
                        descs[i + 1] = &m->layers[i];
                rc = copy_blobs(c, descs, m->n_layers + 1, err);
                free(descs);
                if (rc < 0)
                        return -1;
        } else {
                _cleanup_(oci_index_freep) struct oci_index *x = NULL;
                if (oci_index_parse(f->buf, f->len, f->media_type, &x, err) < 0) {
                        kiln_error_prefix(err, "index '%s'", f->desc.digest.str);
                        return -1;
                }
                for (size_t i = 0; i < x->n_manifests; i++)
                        if (copy_child(c, &x->manifests[i], depth, err) < 0)
                                return -1;
        }
        /* Manifests last: every blob they name is in place now. */
        if (c->dst->ops->put_manifest(c->dst, &f->desc, f->buf, f->len, err) < 0)
                return -1;
        return 0;
}

int oci_image_copy(struct oci_store *src, const char *src_ref, struct oci_store *dst,
                   const struct oci_copy_opts *opts, struct oci_copy_result *ret,
                   struct kiln_error *err)
{
        struct oci_copy_result res = {0};
        struct copy_ctx c = {.src = src, .dst = dst, .opts = opts, .res = &res};

        pthread_mutex_init(&c.lock, NULL);
        struct oci_fetched top = {0};
        int rc = -1;

        if (oci_store_fetch(src, src_ref, &top, err) < 0)
                goto out;
        if (top.kind == OCI_DOC_INDEX && opts && opts->platform) {
                _cleanup_(oci_index_freep) struct oci_index *x = NULL;
                const struct oci_descriptor *d;
                struct oci_fetched child = {0};
                if (oci_index_parse(top.buf, top.len, top.media_type, &x, err) < 0)
                        goto out;
                d = oci_index_select(x, opts->platform);
                if (!d) {
                        kiln_error_set(err, KILN_E_NOT_FOUND,
                                       "no image for platform '%s/%s%s%s' in '%s'",
                                       opts->platform->os, opts->platform->architecture,
                                       opts->platform->variant ? "/" : "",
                                       opts->platform->variant ? opts->platform->variant : "",
                                       src->name);
                        goto out;
                }
                if (oci_store_fetch_desc(src, d, &child, err) < 0)
                        goto out;
                oci_fetched_release(&top);
                top = child;
        }
        if (copy_document(&c, &top, 0, err) < 0)
                goto out;
        /* The tag last: it never points at an incomplete image. */
        if (dst->ops->tag(dst, opts ? opts->dst_tag : NULL, &top.desc, err) < 0)
                goto out;
        res.digest = top.desc.digest;
        res.size = top.desc.size;
        snprintf(res.media_type, sizeof(res.media_type), "%s", top.media_type);
        if (ret)
                *ret = res;
        rc = 0;
out:
        if (rc < 0)
                kiln_error_prefix(err, "copy '%s' to '%s'", src->name, dst->name);
        oci_fetched_release(&top);
        for (size_t i = 0; i < c.n_seen; i++)
                free(c.seen[i]);
        free(c.seen);
        pthread_mutex_destroy(&c.lock);
        return rc;
}
