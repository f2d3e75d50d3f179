#include "recipe_image.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache.h"
#include "io.h"
#include "json.h"
#include "layout.h"
#include "place.h"
#include "recipe_internal.h"
#include "recipe_run.h"
#include "recipe_sbom.h"
#include "ref.h"
#include "sandbox.h"
#include "source.h"
#include "stage.h"
#include "unpack.h"
#include "util.h"

void recipe_image_result_release(struct recipe_image_result *r)
{
        if (!r)
                return;
        for (size_t i = 0; i < r->n_tags; i++)
                free(r->tags[i]);
        free(r->tags);
        free(r->revision);
        for (size_t i = 0; i < r->n_layers; i++)
                free(r->layers[i].name);
        free(r->layers);
        memset(r, 0, sizeof(*r));
}

/* Progress and warnings go to the caller's callbacks, one formatted line each. */
static void emit(void (*cb)(void *ctx, const char *msg), void *ctx, const char *fmt, va_list ap)
        __attribute__((format(printf, 3, 0)));
static void emit(void (*cb)(void *ctx, const char *msg), void *ctx, const char *fmt, va_list ap)
{
        char msg[1024];

        if (!cb)
                return;
        vsnprintf(msg, sizeof(msg), fmt, ap);
        cb(ctx, msg);
}

static void say(const struct recipe_image_opts *o, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
static void say(const struct recipe_image_opts *o, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        emit(o->progress, o->progress_ctx, fmt, ap);
        va_end(ap);
}

static void warn(const struct recipe_image_opts *o, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
static void warn(const struct recipe_image_opts *o, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        emit(o->warn, o->progress_ctx, fmt, ap);
        va_end(ap);
}

/* The cache key of a recipe layer: what determines its content (the
 * recipe's layer key) and how it is written. */
static void cache_key(const char *layer_key, const struct layer_writer_opts *w,
                      struct oci_digest *ret)
{
        char comp[64];
        char *s;

        layer_compressor_id(w->compression, w->level, comp, sizeof(comp));
        s = kiln_strdupf("kiln recipe layer 2\n%s\n%s\n%lld\n%d%d\n", layer_key, comp,
                         (long long)w->mtime, w->keep_owners, w->keep_caps);
        oci_digest_of_buffer(s ? s : "", s ? strlen(s) : 0, ret);
        free(s);
}

static void format_time(int64_t t, char *buf, size_t len)
{
        time_t tt = (time_t)t;
        struct tm tm;

        gmtime_r(&tt, &tm);
        strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

#define CACHE_ARTIFACT_TYPE "application/vnd.dev.kiln.layer-cache.v1"
#define EMPTY_JSON_DIGEST "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"

/* An artifact (image-spec manifest.md, "Guidelines for Artifact Usage"):
 * artifactType, the empty config, one layer (already put) and an optional
 * subject.  Puts the config and the manifest, then names it with tag, or
 * with its own digest when tag is NULL: an untagged index.json entry in a
 * layout, nothing new in a registry (whose store lists a manifest with a
 * subject as a referrer when it is put). */
static int put_artifact(struct oci_store *st, const char *type, const struct oci_descriptor *layer,
                        const struct oci_descriptor *subject, json_t *ann, const char *tag,
                        struct oci_digest *ret, struct kiln_error *err)
{
        struct oci_descriptor cd = {.media_type = OCI_MT_EMPTY, .size = 2};
        struct oci_descriptor md = {.media_type = OCI_MT_MANIFEST};
        _cleanup_free_ char *mbuf = NULL;
        _cleanup_json_ json_t *mj = NULL;
        struct oci_reader *r;
        size_t mlen;

        oci_digest_parse(EMPTY_JSON_DIGEST, &cd.digest, NULL);
        r = oci_reader_from_buffer("{}", 2, err);
        if (!r || st->ops->put_blob(st, &cd, r, err) < 0)
                return -1;
        mj = oci_manifest_to_json(OCI_MT_MANIFEST, type, &cd, layer, 1, subject, ann);
        if (!mj)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (oci_json_dump(mj, &mbuf, &mlen, err) < 0)
                return -1;
        oci_digest_of_buffer(mbuf, mlen, &md.digest);
        md.size = (int64_t)mlen;
        if (st->ops->put_manifest(st, &md, mbuf, mlen, err) < 0 ||
            st->ops->tag(st, tag ? tag : md.digest.str, &md, err) < 0)
                return -1;
        if (ret)
                *ret = md.digest;
        return 0;
}

/* Looks key up in the cache repository.  Only a well-formed entry that
 * names this key, whose blob the repository holds, is a hit; anything else
 * is reported and ignored. */
static int repo_lookup(struct oci_store *repo, const struct recipe_image_opts *o,
                       const char *name, const struct oci_digest *key, struct layer_result *ret,
                       bool *ret_hit)
{
        struct kiln_error e = KILN_ERROR_INIT;
        char tag[80];
        char *buf = NULL, *mt = NULL;
        size_t len;
        struct oci_digest dig;
        struct oci_manifest *m = NULL;
        const char *k, *diff, *comp;
        bool have = false;

        *ret_hit = false;
        snprintf(tag, sizeof(tag), "kc-%s", oci_digest_hex(key));
        if (repo->ops->get_manifest(repo, tag, &buf, &len, &mt, &dig, &e) < 0) {
                if (e.code != KILN_E_NOT_FOUND)
                        warn(o, "layer %s: cache repository: %s", name, e.msg);
                goto out;
        }
        if (oci_manifest_parse(buf, len, mt, &m, &e) < 0) {
                warn(o, "layer %s: ignoring cache entry '%s': %s", name, tag, e.msg);
                goto out;
        }
        k = json_string_value(json_object_get(m->annotations, "dev.kiln.cache.key"));
        diff = json_string_value(json_object_get(m->annotations, "dev.kiln.cache.diff-id"));
        comp = json_string_value(json_object_get(m->layers ? m->layers[0].annotations : NULL,
                                                 LAYER_COMPRESSION_ANNOTATION));
        if (m->n_layers != 1 || !k || strcmp(k, key->str) || !diff || !oci_digest_valid(diff) ||
            !oci_media_type_is_layer(m->layers[0].media_type)) {
                warn(o, "layer %s: ignoring cache entry '%s': not an entry for this key", name,
                     tag);
                goto out;
        }
        if (repo->ops->has_blob(repo, &m->layers[0], &have, &e) < 0 || !have) {
                warn(o, "layer %s: ignoring cache entry '%s': its blob '%s' is missing", name,
                     tag, m->layers[0].digest.str);
                goto out;
        }
        memset(ret, 0, sizeof(*ret));
        oci_digest_parse(diff, &ret->diff_id, NULL);
        ret->digest = m->layers[0].digest;
        ret->size = m->layers[0].size;
        ret->media_type = oci_media_type_compression(m->layers[0].media_type) ==
                                          OCI_COMPRESSION_ZSTD
                                  ? OCI_MT_LAYER_ZSTD
                          : oci_media_type_compression(m->layers[0].media_type) ==
                                          OCI_COMPRESSION_GZIP
                                  ? OCI_MT_LAYER_GZIP
                                  : OCI_MT_LAYER;
        snprintf(ret->compressor, sizeof(ret->compressor), "%s", comp ? comp : "");
        *ret_hit = true;
out:
        oci_manifest_free(m);
        free(buf);
        free(mt);
        return 0;
}

static pthread_mutex_t publish_lock = PTHREAD_MUTEX_INITIALIZER;

/* Publishes a built layer: its blob, the empty config, then the entry
 * manifest under kc-<hex>.  A failure is a warning: the build goes on. */
static void repo_publish(struct oci_store *repo, struct layer_cache *cache,
                         const struct recipe_image_opts *o, const char *name,
                         const struct oci_digest *key, const char *layer_key,
                         const char *inputs, const struct layer_result *res)
{
        struct kiln_error e = KILN_ERROR_INIT;
        struct oci_descriptor ld = {0};
        json_t *ann = json_object();
        char tag[80], created[64];
        struct oci_reader *r;
        bool have = false;

        /* one publisher at a time: the entries share one repository store */
        pthread_mutex_lock(&publish_lock);
        snprintf(tag, sizeof(tag), "kc-%s", oci_digest_hex(key));
        ld.media_type = res->media_type;
        ld.digest = res->digest;
        ld.size = res->size;
        ld.annotations = json_pack("{s:s}", LAYER_COMPRESSION_ANNOTATION, res->compressor);
        if (repo->ops->has_blob(repo, &ld, &have, &e) < 0)
                goto fail;
        if (!have) {
                r = layer_cache_open_blob(cache, res, &e);
                if (!r || repo->ops->put_blob(repo, &ld, r, &e) < 0)
                        goto fail;
        }
        format_time((int64_t)time(NULL), created, sizeof(created));
        json_object_set_new(ann, "dev.kiln.cache.key", json_string(key->str));
        json_object_set_new(ann, "dev.kiln.cache.diff-id", json_string(res->diff_id.str));
        json_object_set_new(ann, "dev.kiln.cache.layer-key", json_string(layer_key));
        json_object_set_new(ann, "dev.kiln.cache.layer", json_string(name));
        /* what the key is made of, for `kiln cache show` (bounded) */
        if (inputs && strlen(inputs) <= 64 * 1024)
                json_object_set_new(ann, "dev.kiln.cache.inputs", json_string(inputs));
        json_object_set_new(ann, "org.opencontainers.image.created", json_string(created));
        if (put_artifact(repo, CACHE_ARTIFACT_TYPE, &ld, NULL, ann, tag, NULL, &e) < 0 ||
            oci_store_commit(repo, &e) < 0)
                goto fail;
        goto out;
fail:
        warn(o, "layer %s: not published to the cache repository: %s", name, e.msg);
out:
        pthread_mutex_unlock(&publish_lock);
        json_decref(ld.annotations);
        json_decref(ann);
}

static const char *oci_layer_type(const char *mt)
{
        /* the same bytes under the OCI name: an OCI manifest names OCI types */
        if (!strcmp(mt, DOCKER_MT_LAYER_GZIP))
                return OCI_MT_LAYER_GZIP;
        if (!strcmp(mt, DOCKER_MT_LAYER_TAR))
                return OCI_MT_LAYER;
        return mt;
}


/* Layers made in the image: run layers and build steps with "in": "image".
 * They need every layer below them built, and their cache key names those. */
static bool layer_in_image(const struct recipe_layer *l)
{
        const char *in = json_string_value(json_object_get(l->params, "in"));

        return l->kind == RECIPE_LAYER_RUN ||
               (l->kind == RECIPE_LAYER_BUILD && in && !strcmp(in, "image"));
}

struct build_in_image {
        const struct recipe_run_ctx *rctx;
        const struct recipe_plan *plan;
        size_t i;
};

static int build_in_image_run(void *ctx, const struct recipe_build_step *s, const char *out,
                              const char *scratch,
                              void (*feed)(void *fctx, const char *buf, size_t n), void *fctx,
                              int *ret_status, struct kiln_error *err)
{
        const struct build_in_image *b = ctx;

        return recipe_run_build_step(b->rctx, b->plan, b->i, s, out, scratch, feed, fctx,
                                     ret_status, err);
}

static json_t *lock_layer(json_t *lock, const char *name)
{
        return json_object_get(json_object_get(lock, "layers"), name);
}

static int stage_and_build(const struct recipe_plan *plan, size_t i, const char *stage_root,
                           const char *base_root, struct layer_cache *cache,
                           const struct recipe_image_opts *o,
                           const struct recipe_build_remote *remote,
                           const struct recipe_build_sandbox *in_image,
                           const struct oci_digest *key, struct layer_result *ret,
                           char **ret_revision, struct kiln_error *err)
{
        struct recipe_stage_opts so = {.cache_dir = layer_cache_dir(cache), .fetch = o->fetch,
                                       .fetch_ctx = o->fetch_ctx,
                                       .fetch_signed = o->fetch_signed, .build_remote = remote,
                                       .log = o->step_log, .layer = plan->layers[i].name,
                                       .in_image = in_image, .base_root = base_root,
                                       .locked = o->locked,
                                       .lock_layer = lock_layer(o->lock, plan->layers[i].name)};
        struct recipe_stage_result sres = {0};
        _cleanup_free_ char *dir = kiln_strdupf("%s/%02zu-%s", stage_root, i + 1,
                                                plan->layers[i].name);
        struct layer_source *src = NULL;
        bool hit = false;
        int rc = -1;

        if (!dir)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (recipe_stage_layer(plan, i, dir, &so, &sres, err) < 0)
                goto out;
        src = layer_source_new(err);
        if (!src || recipe_layer_modes(&plan->layers[i], src, err) < 0 ||
            layer_source_add_tree(src, dir, "/", NULL, 0, err) < 0 ||
            layer_source_finish(src, err) < 0)
                goto out;
        if (layer_cache_build(cache, src, &o->writer, false, ret, &hit, err) < 0 ||
            layer_cache_store(cache, key, ret, err) < 0)
                goto out;
        if (sres.revision && ret_revision && !*ret_revision)
                *ret_revision = strdup(sres.revision);
        rc = 0;
out:
        layer_source_free(src);
        recipe_stage_result_release(&sres);
        kiln_rm_rf(dir);
        return rc;
}

/* Build-step outputs in the cache repository: a tar+zstd of the output
 * directory in an artifact of its own type, tagged kbo-<hex of the step's
 * key>, so a runner whose layer key differs (another compression, another
 * install path) still skips the hour-long compile. */
#define BUILD_OUTPUT_TYPE "application/vnd.dev.kiln.build-output.v1"
#define BUILD_OUTPUT_LAYER_TYPE "application/vnd.dev.kiln.build-output.v1.tar+zstd"

struct build_remote_ctx {
        const struct recipe_image_opts *o;
        struct oci_store *rd, *wr;
        struct layer_cache *cache;
};

static int build_get(void *vctx, const char *key, const char *dest, bool *ret_hit,
                     struct kiln_error *err)
{
        struct build_remote_ctx *c = vctx;
        struct kiln_error e = KILN_ERROR_INIT;
        struct oci_digest k;
        char tag[80];
        char *buf = NULL, *mt = NULL;
        size_t len;
        struct oci_digest dig;
        struct oci_manifest *m = NULL;
        struct layer_unpack_opts uo;
        struct layer_unpacker *u = NULL;
        struct oci_reader *r;
        const char *mk;

        *ret_hit = false;
        if (oci_digest_parse(key, &k, NULL) < 0)
                return 0;
        snprintf(tag, sizeof(tag), "kbo-%s", oci_digest_hex(&k));
        if (c->rd->ops->get_manifest(c->rd, tag, &buf, &len, &mt, &dig, &e) < 0) {
                if (e.code != KILN_E_NOT_FOUND)
                        warn(c->o, "build step: cache repository: %s", e.msg);
                goto out;
        }
        if (oci_manifest_parse(buf, len, mt, &m, &e) < 0 || m->n_layers != 1 ||
            !(mk = json_string_value(json_object_get(m->annotations, "dev.kiln.cache.key"))) ||
            strcmp(mk, key) || strcmp(m->layers[0].media_type, BUILD_OUTPUT_LAYER_TYPE)) {
                warn(c->o, "build step: ignoring cache entry '%s': not an output for this key", tag);
                goto out;
        }
        layer_unpack_opts_init(&uo);
        uo.rootless = true;
        u = layer_unpacker_new(dest, &uo, &e);
        r = u ? c->rd->ops->open_blob(c->rd, &m->layers[0], &e) : NULL;
        if (!r || layer_unpacker_apply(u, r, OCI_MT_LAYER_ZSTD, m->layers[0].digest.str, &e) < 0 ||
            layer_unpacker_finish(u, &e) < 0) {
                warn(c->o, "build step: ignoring cache entry '%s': %s", tag, e.msg);
                kiln_rm_rf(dest);
                goto out;
        }
        say(c->o, "build step: output from the cache repository (%s)", tag);
        *ret_hit = true;
out:
        layer_unpacker_free(u);
        oci_manifest_free(m);
        free(buf);
        free(mt);
        (void)err;
        return 0;
}

static void build_put(void *vctx, const char *key, const char *dir)
{
        struct build_remote_ctx *c = vctx;
        struct kiln_error e = KILN_ERROR_INIT;
        struct layer_writer_opts w;
        struct layer_source *src = NULL;
        struct layer_result res;
        struct oci_descriptor ld = {0};
        struct oci_digest k;
        json_t *ann = json_object();
        char tag[80], created[64];
        struct oci_reader *r;
        bool hit = false;

        if (!c->wr || oci_digest_parse(key, &k, NULL) < 0)
                goto out;
        pthread_mutex_lock(&publish_lock);
        layer_writer_opts_init(&w);
        w.compression = OCI_COMPRESSION_ZSTD;
        w.level = -1;
        w.mtime = 0;
        src = layer_source_new(&e);
        if (src)
                src->keep_modes = true; /* the step's output as it was made */
        if (!src || layer_source_add_tree(src, dir, "/", NULL, 0, &e) < 0 ||
            layer_source_finish(src, &e) < 0 ||
            layer_cache_build(c->cache, src, &w, false, &res, &hit, &e) < 0)
                goto fail;
        ld.media_type = BUILD_OUTPUT_LAYER_TYPE;
        ld.digest = res.digest;
        ld.size = res.size;
        r = layer_cache_open_blob(c->cache, &res, &e);
        if (!r || c->wr->ops->put_blob(c->wr, &ld, r, &e) < 0)
                goto fail;
        format_time((int64_t)time(NULL), created, sizeof(created));
        json_object_set_new(ann, "dev.kiln.cache.key", json_string(key));
        json_object_set_new(ann, "org.opencontainers.image.created", json_string(created));
        snprintf(tag, sizeof(tag), "kbo-%s", oci_digest_hex(&k));
        if (put_artifact(c->wr, BUILD_OUTPUT_TYPE, &ld, NULL, ann, tag, NULL, &e) < 0 ||
            oci_store_commit(c->wr, &e) < 0)
                goto fail;
        goto unlock;
fail:
        warn(c->o, "build step: output not published to the cache repository: %s", e.msg);
unlock:
        pthread_mutex_unlock(&publish_lock);
out:
        layer_source_free(src);
        json_decref(ann);
}

struct layer_jobs {
        const struct recipe_plan *plan;
        const char *stage_root;
        const char *base_root; /* the base's keyrings and dpkg status, or NULL */
        struct layer_cache *cache;
        const struct recipe_image_opts *o;
        struct oci_store *repo_rd, *repo_wr, *early;
        struct oci_store *base_st;     /* run layers' lower layers; NULL: scratch */
        const struct oci_image *base;
        const struct recipe_build_remote *remote;
        struct layer_result *res;
        json_t **packages; /* each layer's inventory, with o->sbom */
        struct recipe_image_result *out;
        pthread_mutex_t lock;
        pthread_cond_t layer_done; /* signalled when a layer is finished or failed */
        bool *done;                /* per layer: finished */
        size_t next;
        unsigned pushed; /* blobs handed to the destination early */
        bool failed;
        struct kiln_error err;
};

/* A wheels layer's resolved packages as the lock pins them: name,
 * version, url, sha256 and the names each depends on. */
static json_t *lock_packages(const json_t *inventory)
{
        json_t *out = json_array(), *it;
        size_t i;

        json_array_foreach((json_t *)(uintptr_t)inventory, i, it) {
                json_t *e = json_pack("{s:O, s:O, s:O, s:O}", "name", json_object_get(it, "name"),
                                      "version", json_object_get(it, "version"), "url",
                                      json_object_get(it, "url"), "sha256",
                                      json_object_get(it, "sha256"));
                if (e && json_object_get(it, "dependencies"))
                        json_object_set(e, "dependencies", json_object_get(it, "dependencies"));
                if (e)
                        json_array_append_new(out, e);
        }
        return out;
}

/* --locked: every package a wheels layer resolves to must be the one the
 * lock pins (name, version and sha256) */
static int lock_check_packages(const json_t *lock, const char *layer, const json_t *inventory,
                               struct kiln_error *err)
{
        const json_t *pinned = json_object_get(
                json_object_get(json_object_get(lock, "layers"), layer), "packages");
        const json_t *it, *p;
        size_t i, k;

        if (!pinned)
                return 0;
        json_array_foreach((json_t *)(uintptr_t)inventory, i, it) {
                const char *name = json_string_value(json_object_get(it, "name"));
                const char *ver = json_string_value(json_object_get(it, "version"));
                const char *sha = json_string_value(json_object_get(it, "sha256"));
                bool found = false;
                json_array_foreach((json_t *)(uintptr_t)pinned, k, p)
                        if (json_equal(json_object_get(p, "name"), json_object_get(it, "name")) &&
                            json_equal(json_object_get(p, "version"), json_object_get(it, "version")) &&
                            json_equal(json_object_get(p, "sha256"), json_object_get(it, "sha256")))
                                found = true;
                if (!found)
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "layer '%s' resolves to '%s' %s (sha256 %s), which the lock does not pin: run kiln lock",
                                              layer, name ? name : "?", ver ? ver : "?",
                                              sha ? sha : "?");
        }
        return 0;
}

/* A layer made in the image waits for every layer below it (they are
 * taken in order, so each is done or being built: no cycle).  -1 when
 * another layer failed meanwhile. */
static int wait_below(struct layer_jobs *lj, size_t i, struct kiln_error *err)
{
        int rc = 0;

        pthread_mutex_lock(&lj->lock);
        for (;;) {
                size_t k = 0;
                while (k < i && lj->done[k])
                        k++;
                if (lj->failed) {
                        rc = kiln_error_set(err, KILN_E_INTERNAL, "a layer below failed");
                        break;
                }
                if (k == i)
                        break;
                pthread_cond_wait(&lj->layer_done, &lj->lock);
        }
        pthread_mutex_unlock(&lj->lock);
        return rc;
}

/* One layer: its key; the local cache, then the cache repository; on a miss
 * stage and build it (and publish it).  A layer built here is handed to the
 * destination at once when pushing. */
static int one_layer(struct layer_jobs *lj, size_t i, struct kiln_error *err)
{
        const struct recipe_plan *plan0 = lj->plan;
        const struct recipe_image_opts *o = lj->o;
        struct layer_cache *cache = lj->cache;
        struct layer_result *res = lj->res;
        struct recipe_stage_opts so = {.cache_dir = layer_cache_dir(cache), .fetch = o->fetch,
                                       .fetch_ctx = o->fetch_ctx,
                                       .fetch_signed = o->fetch_signed, .build_remote = lj->remote,
                                       .inventory = (o->sbom || (o->locked && o->lock)) &&
                                                    !lj->packages[i],
                                       .log = o->step_log, .layer = plan0->layers[i].name,
                                       .base_root = lj->base_root, .locked = o->locked,
                                       .lock_layer = lock_layer(o->lock, plan0->layers[i].name)};
        struct recipe_stage_result kres = {0};
        struct recipe_run_ctx rctx = {.cache = cache, .base_st = lj->base_st, .base = lj->base,
                                      .below = res, .writer = &o->writer, .log = o->step_log};
        struct build_in_image bi = {.rctx = &rctx, .plan = plan0, .i = i};
        struct recipe_build_sandbox sb = {.run = build_in_image_run, .ctx = &bi};
        struct oci_digest key, image_key;
        char *revision = NULL;
        bool hit = false, from_repo = false;
        struct timespec t0, t1;
        int rc = -1;

        if (layer_in_image(&plan0->layers[i]) && wait_below(lj, i, err) < 0)
                return -1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (plan0->layers[i].kind == RECIPE_LAYER_BUILD && layer_in_image(&plan0->layers[i])) {
                /* the layers below are built (plan_has_run): the image is known */
                if (recipe_run_key(&rctx, plan0, i, NULL, &image_key, err) < 0)
                        return -1;
                sb.key = image_key.str;
                so.in_image = &sb;
        }
        if (recipe_layer_key(plan0, i, &so, &kres, err) < 0) {
                kiln_error_prefix(err, "layer '%s'", plan0->layers[i].name);
                return -1;
        }
        if (kres.revision)
                revision = strdup(kres.revision);
        if (kres.excluded)
                say(o, "layer %s: left out by .dockerignore, .gitignore and .git: %s",
                    plan0->layers[i].name, kres.excluded);
        /* from the key's inputs, not from staging: a cached layer lists the same */
        if (o->locked && o->lock && kres.packages &&
            lock_check_packages(o->lock, plan0->layers[i].name, kres.packages, err) < 0)
                goto out;
        if (kres.packages)
                lj->packages[i] = steal_ptr(&kres.packages);
        if (o->lock) {
                const char *want = json_string_value(json_object_get(
                        json_object_get(json_object_get(o->lock, "layers"), plan0->layers[i].name),
                        "key"));
                if (want && strcmp(want, kres.layer_key)) {
                        if (o->locked) {
                                kiln_error_set(err, KILN_E_INVALID,
                                               "layer '%s' floats: its inputs give %s, the lock says %s",
                                               plan0->layers[i].name, kres.layer_key, want);
                                goto out;
                        }
                        warn(o, "layer %s differs from the lock (%s, locked %s)",
                             plan0->layers[i].name, kres.layer_key, want);
                }
        }
        cache_key(kres.layer_key, &o->writer, &key);
        if (layer_in_image(&plan0->layers[i])) {
                /* the layers below are built: their diffIDs go into the key */
                struct oci_digest k0 = key;
                if (recipe_run_key(&rctx, plan0, i, &k0, &key, err) < 0)
                        goto out;
        }
        if (layer_cache_lookup(cache, &key, &res[i], &hit, err) < 0)
                goto out;
        if (!hit && lj->repo_rd) {
                repo_lookup(lj->repo_rd, o, plan0->layers[i].name, &key, &res[i], &hit);
                from_repo = hit;
                if (hit)
                        say(o, "layer %s: from the cache repository %s", plan0->layers[i].name,
                            res[i].digest.str);
        }
        if (hit) {
                say(o, "layer %s: cached %s", plan0->layers[i].name, res[i].digest.str);
        } else {
                say(o, "layer %s: building", plan0->layers[i].name);
                if (o->layer_state)
                        o->layer_state(o->progress_ctx, plan0->layers[i].name, "building", NULL);
                if ((plan0->layers[i].kind == RECIPE_LAYER_RUN
                             ? recipe_run_layer(&rctx, plan0, i, &key, &res[i], err)
                             : stage_and_build(plan0, i, lj->stage_root, lj->base_root, cache, o,
                                               lj->remote, so.in_image, &key, &res[i], &revision,
                                               err)) < 0) {
                        kiln_error_prefix(err, "layer '%s'", plan0->layers[i].name);
                        goto out;
                }
                say(o, "layer %s: built %s", plan0->layers[i].name, res[i].digest.str);
                if (lj->repo_wr)
                        repo_publish(lj->repo_wr, cache, o, plan0->layers[i].name, &key,
                                     kres.layer_key, kres.layer_inputs, &res[i]);
        }
        if (lj->early && !from_repo) {
                struct oci_descriptor d = {.media_type = res[i].media_type,
                                           .digest = res[i].digest, .size = res[i].size};
                bool have = false;
                struct oci_reader *r;
                if (lj->early->ops->has_blob(lj->early, &d, &have, err) < 0)
                        goto out;
                if (!have) {
                        r = layer_cache_open_blob(cache, &res[i], err);
                        if (!r || lj->early->ops->put_blob(lj->early, &d, r, err) < 0)
                                goto out;
                        pthread_mutex_lock(&lj->lock);
                        lj->pushed++;
                        pthread_mutex_unlock(&lj->lock);
                }
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        pthread_mutex_lock(&lj->lock);
        if (lj->out->layers) {
                struct recipe_layer_report *rep = &lj->out->layers[i];
                rep->name = strdup(plan0->layers[i].name);
                rep->state = from_repo ? "pulled" : hit ? "cached" : "built";
                rep->seconds = (double)(t1.tv_sec - t0.tv_sec) +
                               (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
                rep->bytes = res[i].size;
                rep->digest = res[i].digest;
                if (o->layer_state)
                        o->layer_state(o->progress_ctx, plan0->layers[i].name, rep->state, rep);
        }
        if (hit)
                lj->out->layers_cached++;
        else
                lj->out->layers_built++;
        if (from_repo)
                lj->out->layers_from_repo++;
        if (revision && !lj->out->revision) {
                lj->out->revision = revision;
                revision = NULL;
        }
        pthread_mutex_unlock(&lj->lock);
        rc = 0;
out:
        free(revision);
        recipe_stage_result_release(&kres);
        return rc;
}

static void *layer_worker(void *arg)
{
        struct layer_jobs *lj = arg;

        for (;;) {
                struct kiln_error e = KILN_ERROR_INIT;
                size_t i;
                pthread_mutex_lock(&lj->lock);
                if (lj->failed || lj->next == lj->plan->n_layers) {
                        pthread_mutex_unlock(&lj->lock);
                        return NULL;
                }
                i = lj->next++;
                pthread_mutex_unlock(&lj->lock);
                int rc = one_layer(lj, i, &e);
                pthread_mutex_lock(&lj->lock);
                if (rc < 0 && !lj->failed) {
                        lj->failed = true;
                        lj->err = e;
                }
                lj->done[i] = rc == 0;
                pthread_cond_broadcast(&lj->layer_done);
                pthread_mutex_unlock(&lj->lock);
        }
}

/* A build step with "in": "image" has a recipe key that names the image
 * below it, known only once those layers are built.  (A run layer's recipe
 * key is its command and inputs; the layers below enter its cache key.) */
static bool plan_has_build_in_image(const struct recipe_plan *plan)
{
        for (size_t i = 0; i < plan->n_layers; i++)
                if (plan->layers[i].kind == RECIPE_LAYER_BUILD && layer_in_image(&plan->layers[i]))
                        return true;
        return false;
}

/* Layers do not depend on each other: up to o->jobs are staged and built at
 * once (each writer compresses with its own threads too). */
static int run_layer_jobs(struct layer_jobs *lj, struct kiln_error *err)
{
        unsigned n = lj->o->jobs ? lj->o->jobs : 1, started = 0;
        pthread_t th[16];

        if (n > 16)
                n = 16;
        if (n > lj->plan->n_layers)
                n = (unsigned)lj->plan->n_layers;
        /* a layer made in the image waits for the layers below it
         * (wait_below); the others are built meanwhile */
        lj->done = calloc(lj->plan->n_layers + 1, sizeof(*lj->done));
        if (!lj->done)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        pthread_mutex_init(&lj->lock, NULL);
        pthread_cond_init(&lj->layer_done, NULL);
        for (unsigned i = 1; i < n; i++)
                if (pthread_create(&th[started], NULL, layer_worker, lj) == 0)
                        started++;
        layer_worker(lj);
        for (unsigned i = 0; i < started; i++)
                pthread_join(th[i], NULL);
        pthread_cond_destroy(&lj->layer_done);
        pthread_mutex_destroy(&lj->lock);
        free(lj->done);
        lj->done = NULL;
        if (lj->failed) {
                if (err)
                        *err = lj->err;
                return -1;
        }
        if (lj->early)
                return oci_store_commit(lj->early, err); /* the uploads have finished */
        return 0;
}

static json_t *build_config(json_t *base, const struct recipe_plan *plan,
                            const struct layer_result *res, const char *created)
{
        json_t *c = json_deep_copy(base);
        json_t *cfg, *rootfs, *diff_ids, *hist, *k_v;
        const char *k;

        if (!c)
                return NULL;
        cfg = json_object_get(c, "config");
        if (!json_is_object(cfg)) {
                cfg = json_object();
                json_object_set_new(c, "config", cfg);
        }
        json_object_foreach(plan->config, k, k_v)
        {
                if (!strcmp(k, "Labels") && json_is_object(k_v)) {
                        json_t *labels = json_object_get(cfg, "Labels");
                        if (!json_is_object(labels)) {
                                labels = json_object();
                                json_object_set_new(cfg, "Labels", labels);
                        }
                        json_object_update(labels, k_v);
                        json_object_set_new(cfg, "Labels", oci_json_sorted_object(labels));
                } else {
                        json_object_set(cfg, k, k_v);
                }
        }
        rootfs = json_object_get(c, "rootfs");
        if (!json_is_object(rootfs)) {
                rootfs = json_pack("{s:s, s:[]}", "type", "layers", "diff_ids");
                json_object_set_new(c, "rootfs", rootfs);
        }
        diff_ids = json_object_get(rootfs, "diff_ids");
        hist = json_object_get(c, "history");
        if (!json_is_array(hist)) {
                hist = json_array();
                json_object_set_new(c, "history", hist);
        }
        for (size_t i = 0; i < plan->n_layers; i++) {
                char by[512];
                json_array_append_new(diff_ids, json_string(res[i].diff_id.str));
                if (plan->layers[i].configure_step)
                        snprintf(by, sizeof(by),
                                 "kiln build: dpkg --configure -a (debs layer '%s')",
                                 plan->layers[i - 1].name);
                else
                        snprintf(by, sizeof(by), "kiln build: %s layer '%s'",
                                 recipe_layer_kind_name(plan->layers[i].kind),
                                 plan->layers[i].name);
                json_array_append_new(hist, json_pack("{s:s, s:s}", "created", created,
                                                      "created_by", by));
        }
        json_object_set_new(c, "created", json_string(created));
        /* Docker-only leftovers of the base's build would describe another container */
        json_object_del(c, "container");
        json_object_del(c, "container_config");
        return c;
}

/* kiln build --sbom: the SPDX document of the image named name (its main
 * reference) and described by image, from every layer's inventory, put in
 * dst as an artifact whose subject is the image (recipe_image.h). */
static int put_sbom(struct oci_store *dst, const struct recipe_image_opts *o, const char *name,
                    const struct oci_descriptor *image, const char *created,
                    json_t *const *packages, size_t n_layers, struct oci_digest *ret,
                    struct kiln_error *err)
{
        struct recipe_sbom_image img = {.name = name, .digest = &image->digest,
                                        .created = created};
        struct oci_descriptor ld = {.media_type = RECIPE_SBOM_MEDIA_TYPE};
        _cleanup_json_ json_t *all = json_array();
        _cleanup_json_ json_t *ann = json_pack("{s:s}", "org.opencontainers.image.created",
                                               created);
        _cleanup_free_ char *buf = NULL;
        struct oci_reader *r;
        size_t len;
        bool have = false;
        int rc;

        if (!all || !ann)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        for (size_t i = 0; i < n_layers; i++)
                if (packages[i] && json_array_extend(all, packages[i]) < 0)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (recipe_sbom_document(&img, all, &buf, &len, err) < 0)
                return -1;
        oci_digest_of_buffer(buf, len, &ld.digest);
        ld.size = (int64_t)len;
        /* a file name for tools that save layers as files (oras pull) */
        ld.annotations = json_pack("{s:s}", "org.opencontainers.image.title", "sbom.spdx.json");
        if (!ld.annotations)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        rc = dst->ops->has_blob(dst, &ld, &have, err);
        if (rc == 0 && !have) {
                r = oci_reader_from_buffer(buf, len, err);
                rc = r ? dst->ops->put_blob(dst, &ld, r, err) : -1;
        }
        if (rc == 0)
                rc = put_artifact(dst, RECIPE_SBOM_MEDIA_TYPE, &ld, image, ann, NULL, ret, err);
        json_decref(ld.annotations);
        if (rc < 0) {
                kiln_error_prefix(err, "sbom of '%s'", image->digest.str);
                return -1;
        }
        say(o, "sbom %s", ret->str);
        return 0;
}

/* The tag part of a full reference ("repo:TAG" -> "TAG"). */
static char *tag_of(const char *full)
{
        struct oci_ref r;
        char *t = NULL;

        if (oci_ref_parse(full, &r, NULL) == 0) {
                t = r.tag ? strdup(r.tag) : NULL;
                oci_ref_release(&r);
        }
        return t;
}

/* ---- tag provenance ----
 *
 * Two builds can compute the same tag (recipe_plan.c tag_provenance).
 * Before a tag moves, the image it holds now is read: when its annotations
 * say it came from another source, recipe, branch or suffix, a warning
 * names the tag, the old provenance and the new.  The revision is shown but
 * is no reason to warn: a new commit on the same branch moves the tag. */

static const char *const provenance_keys[] = {
        "org.opencontainers.image.source", "org.opencontainers.image.ref.name",
        RECIPE_ANN_RECIPE_NAME, RECIPE_ANN_TAG_BRANCH, RECIPE_ANN_TAG_SUFFIX,
};

static const char *ann_str(json_t *ann, const char *key)
{
        return json_string_value(json_object_get(ann, key));
}

/* "recipe 'x', branch 'y', revision 'z'" from the keys ann has. */
static void provenance_text(json_t *ann, char *buf, size_t len)
{
        static const char *const names[] = {"source", "ref.name", "recipe", "branch", "suffix"};
        size_t o = 0;

        buf[0] = '\0';
        for (size_t i = 0; i < ARRAY_SIZE(provenance_keys) && o < len; i++)
                if (ann_str(ann, provenance_keys[i]))
                        o += (size_t)snprintf(buf + o, len - o, "%s%s '%s'", o ? ", " : "",
                                              names[i], ann_str(ann, provenance_keys[i]));
        if (o < len && ann_str(ann, "org.opencontainers.image.revision"))
                snprintf(buf + o, len - o, "%srevision '%s'", o ? ", " : "",
                         ann_str(ann, "org.opencontainers.image.revision"));
        if (!buf[0])
                snprintf(buf, len, "no recorded provenance");
}

static bool provenance_differs(json_t *old, json_t *now)
{
        bool any = false;

        for (size_t i = 0; i < ARRAY_SIZE(provenance_keys); i++)
                any = any || ann_str(old, provenance_keys[i]);
        if (!any)
                return false; /* an image that records none: nothing to compare */
        for (size_t i = 0; i < ARRAY_SIZE(provenance_keys); i++) {
                const char *a = ann_str(old, provenance_keys[i]);
                const char *b = ann_str(now, provenance_keys[i]);
                if ((a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0))
                        return true;
        }
        return false;
}

/* Warns when tag (in dst) holds an image of another provenance than ann. */
static void check_tag_provenance(const struct recipe_image_opts *o, struct oci_store *dst,
                                 const char *full, const struct oci_digest *now, json_t *ann)
{
        struct kiln_error e = KILN_ERROR_INIT;
        _cleanup_free_ char *tag = tag_of(full), *buf = NULL, *mt = NULL;
        _cleanup_(oci_manifest_freep) struct oci_manifest *m = NULL;
        char was[1024], will[1024];
        struct oci_digest d;
        size_t len;

        /* no such tag yet, or not an image kiln can read: nothing to compare */
        if (!tag || dst->ops->get_manifest(dst, tag, &buf, &len, &mt, &d, &e) < 0 ||
            oci_digest_equal(&d, now) || oci_manifest_parse(buf, len, mt, &m, &e) < 0 ||
            !provenance_differs(m->annotations, ann))
                return;
        provenance_text(m->annotations, was, sizeof(was));
        provenance_text(ann, will, sizeof(will));
        warn(o, "tag '%s' moves to an image of another provenance: it held %s (%s); this build "
                "is %s",
             full, d.str, was, will);
}

/* The base's keyrings and dpkg status, for debs layers only: reading
 * them streams the base's layers (once per base digest). */
static int base_root_for(const struct recipe_plan *plan, struct oci_store *st,
                         const struct oci_image *img, const char *cache_dir, char **ret,
                         struct kiln_error *err)
{
        bool debs = false;

        for (size_t i = 0; i < plan->n_layers; i++)
                debs |= plan->layers[i].kind == RECIPE_LAYER_DEBS;
        *ret = NULL;
        if (!debs || !st || !img->m)
                return 0;
        if (recipe_base_files(st, img->m, img->top.desc.digest.str, cache_dir, ret, err) < 0) {
                kiln_error_prefix(err, "read the base's apt keyrings and dpkg status");
                return -1;
        }
        return 0;
}

/* The configure steps of debs layers (recipe.h recipe_plan_configure):
 * kept where the base has a dpkg database and the sandbox works.  What
 * decides is found once per build, so every plan of it has the same
 * layers. */
struct configure_facts {
        bool known;
        bool has_dpkg;
        const char *no_sandbox; /* NULL, or why */
        char why[256];
};

/* With notice, one line says which steps the sandbox alone kept out, and why. */
static int settle_configure(struct recipe_plan *plan, const char *base_root,
                            struct configure_facts *f, const struct recipe_image_opts *o,
                            bool notice, struct kiln_error *err)
{
        _cleanup_free_ char *dropped = NULL;
        bool steps = false;

        for (size_t i = 0; i < plan->n_layers; i++)
                steps |= plan->layers[i].configure_step;
        if (!steps)
                return 0;
        if (!f->known) {
                _cleanup_free_ char *status = NULL;
                if (recipe_dpkg_status_path(base_root, &status) < 0)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                f->has_dpkg = status != NULL;
                f->no_sandbox = f->has_dpkg ? sandbox_userns_check(f->why, sizeof(f->why)) : NULL;
                f->known = true;
        }
        if (recipe_plan_configure(plan, true, f->has_dpkg, f->no_sandbox, &dropped, err) < 0)
                return -1;
        if (dropped && notice)
                warn(o,
                     "debs layer %s: maintainer scripts not run (%s): the packages stay unpacked, "
                     "for a later dpkg --configure -a",
                     dropped, f->no_sandbox);
        return 0;
}

/* ---- locks ---- */

/* Git sources take the locked commits; a layer missing from the lock is an
 * error when locked. */
static int lock_apply(struct recipe_plan *plan, json_t *lock, const struct recipe_image_opts *o,
                      struct kiln_error *err)
{
        json_t *layers = json_object_get(lock, "layers");

        for (size_t i = 0; i < plan->n_layers; i++) {
                struct recipe_layer *l = &plan->layers[i];
                json_t *e = json_object_get(layers, l->name);
                const char *rev = json_string_value(json_object_get(e, "revision"));
                const char *from = json_string_value(json_object_get(l->params, "from"));
                if (!e) {
                        if (o->locked)
                                return kiln_error_set(err, KILN_E_INVALID,
                                                      "layer '%s' is not in the lock: run kiln lock",
                                                      l->name);
                        warn(o, "layer %s is not in the lock: it may float", l->name);
                        continue;
                }
                if (l->kind == RECIPE_LAYER_SOURCE && rev && from && strcmp(from, "local"))
                        json_object_set_new(l->params, "ref", json_string(rev));
        }
        return 0;
}

static const char *lock_digest(json_t *lock)
{
        return json_string_value(json_object_get(json_object_get(lock, "base"), "digest"));
}

/* The base reference pinned to the lock's digest. */
static char *lock_base(json_t *lock, const struct recipe_plan *plan,
                       const struct recipe_image_opts *o, struct kiln_error *err)
{
        json_t *b = json_object_get(lock, "base");
        const char *ref = json_string_value(json_object_get(b, "ref"));
        const char *dig = json_string_value(json_object_get(b, "digest"));

        if (!strcmp(plan->base, OCI_SCRATCH))
                return strdup(OCI_SCRATCH);
        if (!ref || !dig || !oci_digest_valid(dig) || strcmp(ref, plan->base)) {
                if (o->locked) {
                        kiln_error_set(err, KILN_E_INVALID,
                                       "the lock does not pin the base '%s': run kiln lock",
                                       plan->base);
                        return NULL;
                }
                warn(o, "the lock does not pin the base '%s': it may float", plan->base);
                return strdup(plan->base);
        }
        if (!oci_place_is_registry(ref))
                return strdup(ref); /* open_base checks the digest */
        /* a tag and a digest: the digest wins */
        return strchr(ref, '@') ? strdup(ref) : kiln_strdupf("%s@%s", ref, dig);
}

/* Opens the base image: only its manifest and config are read.  "scratch"
 * is the empty image and has no store; a local place pinned by a lock must
 * still hold the digest the lock names. */
static int open_base(const struct recipe_image_opts *o, const char *ref, const char *pinned,
                     struct oci_store **ret_st, struct oci_image *ret, struct kiln_error *err)
{
        struct oci_store *st;

        if (!strcmp(ref, OCI_SCRATCH)) {
                *ret_st = NULL;
                return oci_image_scratch(o->platform, ret, err);
        }
        st = o->open_place(o->open_ctx, ref, false, err);
        if (!st || oci_image_load(st, NULL, o->platform, ret, err) < 0) {
                oci_store_free(st);
                return -1;
        }
        if (pinned && strcmp(ret->top.desc.digest.str, pinned)) {
                kiln_error_set(err, KILN_E_DIGEST,
                               "'%s' is %s but the lock pins %s: run kiln lock", ref,
                               ret->top.desc.digest.str, pinned);
                oci_image_release(ret);
                oci_store_free(st);
                return -1;
        }
        *ret_st = st;
        return 0;
}

int recipe_image_lock(const struct recipe *r, const struct recipe_image_opts *o, json_t **ret,
                      struct kiln_error *err)
{
        struct recipe_plan_opts po = {.sets = o->sets, .n_sets = o->n_sets};
        struct recipe_plan *plan = NULL;
        struct oci_store *base_st = NULL;
        struct oci_fetched top = {0};
        struct oci_image img = {0};
        struct layer_cache *cache = NULL;
        _cleanup_free_ char *base_root = NULL;
        struct configure_facts cf = {0};
        json_t *lock = NULL, *layers;
        int rc = -1;

        if (recipe_plan_build(r, &po, &plan, err) < 0)
                goto out;
        if (strcmp(plan->base, OCI_SCRATCH)) {
                const char *from = o->base_from ? o->base_from : plan->base;
                base_st = o->open_place(o->open_ctx, from, false, err);
                if (!base_st || oci_store_fetch(base_st, NULL, &top, err) < 0) {
                        kiln_error_prefix(err, "base '%s'", from);
                        goto out;
                }
        }
        cache = layer_cache_open(o->cache_dir, err);
        if (!cache)
                goto out;
        if (base_st) {
                if (oci_image_load(base_st, NULL, o->platform, &img, err) < 0 ||
                    base_root_for(plan, base_st, &img, layer_cache_dir(cache), &base_root,
                                  err) < 0)
                        goto out;
        }
        if (settle_configure(plan, base_root, &cf, o, false, err) < 0)
                goto out;
        lock = json_pack("{s:i, s:s?, s:{s:s, s:s?}, s:{}}", "lockVersion", 1, "recipe",
                         o->recipe_digest, "base", "ref", plan->base, "digest",
                         base_st ? top.desc.digest.str : NULL, "layers");
        if (!base_st)
                json_object_del(json_object_get(lock, "base"), "digest"); /* scratch */
        layers = json_object_get(lock, "layers");
        for (size_t i = 0; i < plan->n_layers; i++) {
                struct recipe_layer *l = &plan->layers[i];
                struct recipe_stage_opts so = {.cache_dir = layer_cache_dir(cache), .fetch = o->fetch,
                                               .fetch_ctx = o->fetch_ctx,
                                               .fetch_signed = o->fetch_signed, .log = o->step_log,
                                               .layer = l->name, .base_root = base_root,
                                               .inventory = l->kind == RECIPE_LAYER_WHEELS};
                struct recipe_stage_result kres = {0};
                json_t *e;
                if (recipe_layer_key(plan, i, &so, &kres, err) < 0) {
                        kiln_error_prefix(err, "layer '%s'", l->name);
                        goto out;
                }
                if (kres.revision && l->kind == RECIPE_LAYER_SOURCE) {
                        /* the key of the pinned layer, as a locked build computes it */
                        char *rev = strdup(kres.revision);
                        json_object_set_new(l->params, "ref", json_string(rev));
                        recipe_stage_result_release(&kres);
                        if (recipe_layer_key(plan, i, &so, &kres, err) < 0) {
                                free(rev);
                                goto out;
                        }
                        free(rev);
                }
                e = json_pack("{s:s}", "key", kres.layer_key);
                if (kres.revision)
                        json_object_set_new(e, "revision", json_string(kres.revision));
                if (kres.packages)
                        json_object_set_new(e, "packages", lock_packages(kres.packages));
                if (json_array_size(kres.apt_releases))
                        json_object_set(e, "apt", kres.apt_releases);
                json_object_set_new(layers, l->name, e);
                recipe_stage_result_release(&kres);
        }
        *ret = lock;
        lock = NULL;
        rc = 0;
out:
        json_decref(lock);
        layer_cache_free(cache);
        oci_image_release(&img);
        oci_fetched_release(&top);
        oci_store_free(base_st);
        recipe_plan_free(plan);
        return rc;
}

int recipe_image_build(const struct recipe *r, const struct recipe_image_opts *o,
                       struct recipe_image_result *ret, struct kiln_error *err)
{
        struct recipe_plan_opts po = {.sets = o->sets, .n_sets = o->n_sets};
        struct recipe_plan *plan0 = NULL, *plan = NULL;
        struct oci_store *base_st = NULL, *upper = NULL, *overlay = NULL, *dst = NULL;
        struct oci_store *repo_rd = NULL, *repo_wr = NULL, *lower = NULL, *early = NULL;
        struct oci_image base = {0};
        struct layer_cache *cache = NULL;
        struct oci_layout *cl = NULL;
        struct layer_result *res = NULL;
        json_t **pkgs = NULL;
        struct build_remote_ctx bctx = {0};
        struct recipe_build_remote remote = {.get = build_get, .put = build_put, .ctx = &bctx};
        struct oci_descriptor *layers = NULL;
        struct recipe_image_result out = {0};
        _cleanup_free_ char *stage_root = NULL, *cbuf = NULL, *mbuf = NULL, *cl_dir = NULL;
        _cleanup_free_ char *base_ref = NULL, *base_root = NULL;
        struct configure_facts cf = {0};
        json_t *config = NULL, *mj = NULL, *ann = NULL, *base_env;
        struct oci_descriptor cd = {0}, md = {0};
        struct oci_copy_opts copts = {0};
        struct oci_copy_result cres;
        char created[64], input_tag[80] = "";
        unsigned early_pushed = 0;
        size_t clen, mlen, nb;
        int rc = -1;

        if (recipe_plan_build(r, &po, &plan0, err) < 0)
                goto out;
        if (!plan0->base || !*plan0->base) {
                kiln_error_set(err, KILN_E_INVALID, "recipe '%s' names no base image",
                               plan0->recipe_name);
                goto out;
        }
        if (o->lock || o->locked) {
                if (!o->lock) {
                        kiln_error_set(err, KILN_E_INVALID,
                                       "--locked needs a lock file: run kiln lock first");
                        goto out;
                }
                base_ref = lock_base(o->lock, plan0, o, err);
                if (!base_ref)
                        goto out;
        }
        if (!o->base_from)
                say(o, "base %s", base_ref ? base_ref : plan0->base);
        if (o->base_from) {
                /* the recipe's base, read from another place: a lock's digest still holds */
                say(o, "base %s from %s", plan0->base, o->base_from);
                if (open_base(o, o->base_from, o->lock ? lock_digest(o->lock) : NULL, &base_st,
                              &base, err) < 0) {
                        kiln_error_prefix(err, "base '%s'", o->base_from);
                        goto out;
                }
        } else if (open_base(o, base_ref ? base_ref : plan0->base,
                             base_ref && !oci_place_is_registry(base_ref) ? lock_digest(o->lock)
                                                                           : NULL,
                             &base_st, &base, err) < 0) {
                kiln_error_prefix(err, "base '%s'", plan0->base);
                goto out;
        }
        cache = layer_cache_open(o->cache_dir, err);
        if (!cache)
                goto out;
        if (base_root_for(plan0, base_st, &base, layer_cache_dir(cache), &base_root, err) < 0 ||
            settle_configure(plan0, base_root, &cf, o, true, err) < 0)
                goto out;
        /* the configure steps are settled: the lock names each layer kept */
        if (o->lock && lock_apply(plan0, o->lock, o, err) < 0)
                goto out;
        if (o->cache_repo) {
                repo_rd = o->open_place(o->open_ctx, o->cache_repo, false, err);
                if (!repo_rd) {
                        kiln_error_prefix(err, "cache repository");
                        goto out;
                }
                if (o->cache_write) {
                        repo_wr = o->open_place(o->open_ctx, o->cache_repo, true, err);
                        if (!repo_wr) {
                                kiln_error_prefix(err, "cache repository");
                                goto out;
                        }
                }
        }
        stage_root = kiln_strdupf("%s/stage-XXXXXX", layer_cache_dir(cache));
        if (!stage_root || !mkdtemp(stage_root)) {
                kiln_error_set(err, KILN_E_IO, "cannot create a staging directory in '%s'",
                               layer_cache_dir(cache));
                goto out;
        }
        bctx = (struct build_remote_ctx){.o = o, .rd = repo_rd, .wr = repo_wr, .cache = cache};
        res = calloc(plan0->n_layers + 1, sizeof(*res));
        pkgs = calloc(plan0->n_layers + 1, sizeof(*pkgs));
        if (!res || !pkgs) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto out;
        }
        format_time(o->writer.mtime, created, sizeof(created));
        /* every layer's recipe key, the run layers' and the configure steps'
         * too, is known before anything is built; a build step in the image
         * names the image below it: no input tag then */
        if (o->skip_if_built && !o->output && !plan_has_build_in_image(plan0)) {
                /* the input tag: the digest of everything the image is made of */
                struct oci_hasher h;
                struct oci_digest input;
                json_t *benv = json_object_get(json_object_get(base.config, "config"), "Env");
                char *vars = json_dumps(plan0->variables, JSON_COMPACT | JSON_SORT_KEYS);
                char comp[64], itag[80];
                char *mbuf0 = NULL, *mt0 = NULL;
                size_t ml0;
                struct oci_digest got;
                struct oci_store *probe;
                if (oci_hasher_init(&h, OCI_DIGEST_SHA256, err) < 0) {
                        free(vars);
                        goto out;
                }
                layer_compressor_id(o->writer.compression, o->writer.level, comp, sizeof(comp));
                oci_hasher_update(&h, "kiln input 1\n", 13);
                if (o->recipe_digest)
                        oci_hasher_update(&h, o->recipe_digest, strlen(o->recipe_digest));
                if (vars)
                        oci_hasher_update(&h, vars, strlen(vars));
                free(vars);
                oci_hasher_update(&h, base.top.desc.digest.str, strlen(base.top.desc.digest.str));
                oci_hasher_update(&h, comp, strlen(comp));
                for (size_t i = 0; i < plan0->n_layers; i++) {
                        struct recipe_stage_opts so = {.cache_dir = layer_cache_dir(cache),
                                                       .fetch = o->fetch,
                                                       .fetch_ctx = o->fetch_ctx,
                                                       .fetch_signed = o->fetch_signed,
                                                       .build_remote = repo_rd ? &remote : NULL,
                                                       .inventory = o->sbom,
                                                       .log = o->step_log,
                                                       .layer = plan0->layers[i].name,
                                                       .base_root = base_root,
                                                       .locked = o->locked,
                                                       .lock_layer = lock_layer(
                                                               o->lock, plan0->layers[i].name)};
                        struct recipe_stage_result kres = {0};
                        if (recipe_layer_key(plan0, i, &so, &kres, err) < 0) {
                                oci_hasher_release(&h);
                                kiln_error_prefix(err, "layer '%s'", plan0->layers[i].name);
                                goto out;
                        }
                        oci_hasher_update(&h, kres.layer_key, strlen(kres.layer_key));
                        pkgs[i] = steal_ptr(&kres.packages);
                        if (kres.revision && !out.revision)
                                out.revision = strdup(kres.revision);
                        recipe_stage_result_release(&kres);
                }
                oci_hasher_final(&h, &input);
                oci_hasher_release(&h);
                po.source_revision = out.revision;
                po.base_env = json_is_array(benv) ? benv : NULL;
                if (recipe_plan_build(r, &po, &plan, err) < 0 ||
                    settle_configure(plan, base_root, &cf, o, false, err) < 0)
                        goto out;
                snprintf(itag, sizeof(itag), "kb-%s", oci_digest_hex(&input));
                probe = o->open_place(o->open_ctx, plan->tags[0], true, err);
                if (!probe)
                        goto out;
                if (probe->ops->get_manifest(probe, itag, &mbuf0, &ml0, &mt0, &got, NULL) == 0) {
                        struct oci_descriptor d = {.media_type = mt0, .digest = got,
                                                   .size = (int64_t)ml0};
                        int trc = 0;
                        say(o, "already built: %s", itag);
                        out.tags = calloc(plan->n_tags, sizeof(*out.tags));
                        for (size_t i = 0; out.tags && i < plan->n_tags && trc == 0; i++) {
                                _cleanup_free_ char *t = tag_of(plan->tags[i]);
                                trc = t ? probe->ops->tag(probe, t, &d, err) : 0;
                                out.tags[i] = strdup(plan->tags[i]);
                                out.n_tags++;
                        }
                        /* the SBOM too: the same image and inputs give the same one */
                        if (trc == 0 && out.tags && o->sbom)
                                trc = put_sbom(probe, o, plan->tags[0], &d, created, pkgs,
                                               plan0->n_layers, &out.sbom, err);
                        free(mbuf0);
                        free(mt0);
                        if (trc == 0)
                                trc = oci_store_commit(probe, err);
                        oci_store_free(probe);
                        if (!out.tags || trc < 0)
                                goto out;
                        out.digest = got;
                        out.skipped = true;
                        *ret = out;
                        memset(&out, 0, sizeof(out));
                        rc = 0;
                        goto out;
                }
                oci_store_free(probe);
                recipe_plan_free(plan);
                plan = NULL;
                snprintf(input_tag, sizeof(input_tag), "%s", itag);
        }
        if (!o->output) {
                /* pushing: each layer goes up as soon as it is built */
                early = o->open_place(o->open_ctx, plan0->tags[0], true, err);
                if (!early)
                        goto out;
        }
        {
                out.layers = calloc(plan0->n_layers + 1, sizeof(*out.layers));
                if (!out.layers) {
                        kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        goto out;
                }
                out.n_layers = plan0->n_layers;
                for (size_t i = 0; o->layer_state && i < plan0->n_layers; i++)
                        o->layer_state(o->progress_ctx, plan0->layers[i].name, "waiting", NULL);
                struct layer_jobs lj = {.plan = plan0, .stage_root = stage_root,
                                        .base_root = base_root, .cache = cache,
                                        .o = o, .repo_rd = repo_rd, .repo_wr = repo_wr,
                                        .early = early, .remote = repo_rd ? &remote : NULL,
                                        .base_st = base_st, .base = &base,
                                        .res = res, .packages = pkgs, .out = &out};
                if (run_layer_jobs(&lj, err) < 0)
                        goto out;
                early_pushed = lj.pushed;
        }
        /* plan again: the revision and the base's env are known now */
        base_env = json_object_get(json_object_get(base.config, "config"), "Env");
        po.source_revision = out.revision;
        po.base_env = json_is_array(base_env) ? base_env : NULL;
        if (recipe_plan_build(r, &po, &plan, err) < 0 ||
            settle_configure(plan, base_root, &cf, o, false, err) < 0)
                goto out;
        if (plan->n_tags == 0) {
                kiln_error_set(err, KILN_E_INVALID, "recipe '%s' gives no tag", plan->recipe_name);
                goto out;
        }
        config = build_config(base.config, plan, res, created);
        if (!config || oci_json_dump(config, &cbuf, &clen, err) < 0)
                goto out;
        cd.media_type = OCI_MT_CONFIG;
        cd.size = (int64_t)clen;
        cl_dir = kiln_strdupf("%s/layout", layer_cache_dir(cache));
        cl = cl_dir ? oci_layout_open(cl_dir, true, err) : NULL;
        if (!cl || oci_layout_put_blob_buffer(cl, cbuf, clen, &cd.digest, err) < 0)
                goto out;
        nb = base.m->n_layers;
        layers = calloc(nb + plan->n_layers + 1, sizeof(*layers));
        if (!layers) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto out;
        }
        for (size_t i = 0; i < nb; i++) {
                layers[i] = base.m->layers[i];
                layers[i].media_type = oci_layer_type(layers[i].media_type);
                layers[i].json = NULL; /* written anew: no foreign fields */
                layers[i].annotations = base.m->layers[i].annotations;
        }
        for (size_t i = 0; i < plan->n_layers; i++) {
                struct oci_descriptor *d = &layers[nb + i];
                d->media_type = res[i].media_type;
                d->digest = res[i].digest;
                d->size = res[i].size;
                d->annotations = json_pack("{s:s}", LAYER_COMPRESSION_ANNOTATION,
                                           res[i].compressor);
        }
        ann = json_deep_copy(plan->annotations ? plan->annotations : json_object());
        if (!ann)
                ann = json_object();
        /* base.name comes from the plan (recipe_plan.c) */
        if (base_st)
                json_object_set_new(ann, "org.opencontainers.image.base.digest",
                                    json_string(base.top.desc.digest.str));
        json_object_set_new(ann, "org.opencontainers.image.created", json_string(created));
        if (o->recipe_digest)
                json_object_set_new(ann, "dev.kiln.recipe.digest", json_string(o->recipe_digest));
        if (plan->recipe_name) {
                /* the file's name, not where it is: the digest must not depend on the checkout */
                const char *slash = strrchr(plan->recipe_name, '/');
                json_object_set_new(ann, RECIPE_ANN_RECIPE_NAME,
                                    json_string(slash ? slash + 1 : plan->recipe_name));
        }
        {
                /* the variables the build was given (later ones win), not the
                 * defaults: those come from the recipe, whose digest is above */
                json_t *given = json_object();
                char *vars;
                for (size_t i = 0; i < o->n_sets; i++) {
                        const char *eq = strchr(o->sets[i], '=');
                        char name[256];
                        if (!eq)
                                continue;
                        snprintf(name, sizeof(name), "%.*s", (int)(eq - o->sets[i]), o->sets[i]);
                        json_object_set_new(given, name, json_string(eq + 1));
                }
                vars = json_dumps(given, JSON_COMPACT | JSON_SORT_KEYS);
                if (vars)
                        json_object_set_new(ann, "dev.kiln.recipe.variables", json_string(vars));
                free(vars);
                json_decref(given);
        }
        mj = oci_manifest_to_json(OCI_MT_MANIFEST, NULL, &cd, layers, nb + plan->n_layers, NULL,
                                  ann);
        if (!mj || oci_json_dump(mj, &mbuf, &mlen, err) < 0)
                goto out;
        md.media_type = OCI_MT_MANIFEST;
        md.size = (int64_t)mlen;
        if (oci_layout_put_blob_buffer(cl, mbuf, mlen, &md.digest, err) < 0)
                goto out;
        /* the image: new blobs from the cache, the base's from its registry */
        upper = oci_layout_store_new(cl_dir, NULL, false, err);
        if (!upper)
                goto out;
        /* blobs come from the local cache, then the cache repository, then the base */
        if (repo_rd && base_st) {
                lower = oci_overlay_store_new(repo_rd, base_st, NULL, err);
                if (!lower)
                        goto out;
        }
        /* scratch: the cache and the cache repository hold every blob */
        overlay = oci_overlay_store_new(upper, lower ? lower : base_st ? base_st : repo_rd ? repo_rd : upper,
                                        md.digest.str, err);
        if (!overlay)
                goto out;
        out.tags = calloc(plan->n_tags, sizeof(*out.tags));
        if (!out.tags) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto out;
        }
        if (o->output) {
                _cleanup_free_ char *t0 = tag_of(plan->tags[0]);
                dst = o->open_place(o->open_ctx, o->output, true, err);
                if (!dst)
                        goto out;
                copts.dst_tag = t0;
                copts.jobs = o->jobs;
                copts.progress = o->copy_progress;
                copts.bytes = o->copy_bytes;
                copts.progress_ctx = o->copy_ctx;
                for (size_t i = 0; i < plan->n_tags; i++)
                        check_tag_provenance(o, dst, plan->tags[i], &md.digest, ann);
                say(o, "writing %s", o->output);
                if (oci_image_copy(overlay, NULL, dst, &copts, &cres, err) < 0)
                        goto out;
                for (size_t i = 1; i < plan->n_tags; i++) {
                        _cleanup_free_ char *t = tag_of(plan->tags[i]);
                        if (t && dst->ops->tag(dst, t, &md, err) < 0)
                                goto out;
                }
                if (o->sbom && put_sbom(dst, o, plan->tags[0], &md, created, pkgs,
                                        plan0->n_layers, &out.sbom, err) < 0)
                        goto out;
                if (oci_store_commit(dst, err) < 0)
                        goto out;
        } else {
                _cleanup_free_ char *t0 = tag_of(plan->tags[0]);
                dst = early;
                early = NULL;
                copts.jobs = o->jobs;
                copts.dst_tag = t0;
                copts.progress = o->copy_progress;
                copts.bytes = o->copy_bytes;
                copts.progress_ctx = o->copy_ctx;
                for (size_t i = 0; i < plan->n_tags; i++)
                        check_tag_provenance(o, dst, plan->tags[i], &md.digest, ann);
                say(o, "pushing %s", plan->tags[0]);
                if (oci_image_copy(overlay, NULL, dst, &copts, &cres, err) < 0)
                        goto out;
                for (size_t i = 1; i < plan->n_tags; i++) {
                        _cleanup_free_ char *t = tag_of(plan->tags[i]);
                        if (t && dst->ops->tag(dst, t, &md, err) < 0)
                                goto out;
                }
                /* the input tag, so the next identical build is one HEAD */
                if (input_tag[0] && dst->ops->tag(dst, input_tag, &md, err) < 0)
                        goto out;
                if (o->sbom && put_sbom(dst, o, plan->tags[0], &md, created, pkgs,
                                        plan0->n_layers, &out.sbom, err) < 0)
                        goto out;
                if (oci_store_commit(dst, err) < 0)
                        goto out;
        }
        for (size_t i = 0; i < plan->n_tags; i++) {
                out.tags[i] = strdup(plan->tags[i]);
                if (out.tags[i])
                        out.n_tags++;
        }
        out.digest = md.digest;
        out.blobs_copied = cres.blobs_copied + early_pushed;
        out.blobs_skipped = cres.blobs_skipped;
        *ret = out;
        memset(&out, 0, sizeof(out));
        rc = 0;
out:
        if (stage_root)
                kiln_rm_rf(stage_root);
        if (layers)
                for (size_t i = 0; plan && i < plan->n_layers; i++)
                        json_decref(layers[nb + i].annotations);
        recipe_image_result_release(&out);
        for (size_t i = 0; pkgs && i < plan0->n_layers; i++)
                json_decref(pkgs[i]);
        free(pkgs);
        free(layers);
        free(res);
        json_decref(config);
        json_decref(mj);
        json_decref(ann);
        oci_store_free(dst);
        oci_store_free(early);
        oci_store_free(overlay);
        oci_store_free(lower);
        oci_store_free(repo_rd);
        oci_store_free(repo_wr);
        oci_store_free(upper);
        oci_layout_free(cl);
        layer_cache_free(cache);
        oci_image_release(&base);
        oci_store_free(base_st);
        recipe_plan_free(plan0);
        recipe_plan_free(plan);
        return rc;
}
