/* recipes/recipe_image_layers.c: each layer of a build, its key, the
 * local cache, then the cache repository, else staged and built (and
 * published), several at once; a layer made in the image waits for the
 * layers below it. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache.h"
#include "image_edit.h"
#include "io.h"
#include "json.h"
#include "layout.h"
#include "parallel.h"
#include "recipe_image_internal.h"
#include "recipe_internal.h"
#include "recipe_run.h"
#include "stage.h"
#include "unpack.h"
#include "util.h"

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

#define CACHE_ARTIFACT_TYPE "application/vnd.dev.kiln.layer-cache.v1"

/* An artifact (image-spec manifest.md, "Guidelines for Artifact Usage"):
 * artifactType, the empty config, one layer (already put) and an optional
 * subject.  Named with tag, or with its own digest when tag is NULL: an
 * untagged index.json entry in a layout, nothing new in a registry (whose
 * store lists a manifest with a subject as a referrer when it is put). */
int recipe_image_put_artifact(struct oci_store *st, const char *type, const struct oci_descriptor *layer,
                        const struct oci_descriptor *subject, json_t *ann, const char *tag,
                        struct oci_digest *ret, struct kiln_error *err)
{
        _cleanup_(oci_image_edit_freep) struct oci_image_edit *a =
                oci_image_edit_new_artifact(type, err);
        const char *name = tag ? tag : OCI_EDIT_BY_DIGEST;
        struct oci_descriptor md;

        if (!a || oci_image_edit_add_layer(a, layer, NULL, NULL, err) < 0 ||
            (subject && oci_image_edit_set_subject(a, subject, err) < 0) ||
            oci_image_edit_annotate_all(a, ann, err) < 0 ||
            oci_image_edit_write(a, st, &name, 1, &md, err) < 0)
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
                        recipe_image_warn(o, "layer %s: cache repository: %s", name, e.msg);
                goto out;
        }
        if (oci_manifest_parse(buf, len, mt, &m, &e) < 0) {
                recipe_image_warn(o, "layer %s: ignoring cache entry '%s': %s", name, tag, e.msg);
                goto out;
        }
        k = json_string_value(json_object_get(m->annotations, "dev.kiln.cache.key"));
        diff = json_string_value(json_object_get(m->annotations, "dev.kiln.cache.diff-id"));
        comp = json_string_value(json_object_get(m->layers ? m->layers[0].annotations : NULL,
                                                 LAYER_COMPRESSION_ANNOTATION));
        if (m->n_layers != 1 || !k || strcmp(k, key->str) || !diff || !oci_digest_valid(diff) ||
            !oci_media_type_is_layer(m->layers[0].media_type)) {
                recipe_image_warn(o, "layer %s: ignoring cache entry '%s': not an entry for this key", name,
                     tag);
                goto out;
        }
        if (repo->ops->has_blob(repo, &m->layers[0], &have, &e) < 0 || !have) {
                recipe_image_warn(o, "layer %s: ignoring cache entry '%s': its blob '%s' is missing", name,
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
        char tag[80], created[OCI_TIME_TEXT_SIZE];
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
        oci_time_format((int64_t)time(NULL), created, sizeof(created));
        json_object_set_new(ann, "dev.kiln.cache.key", json_string(key->str));
        json_object_set_new(ann, "dev.kiln.cache.diff-id", json_string(res->diff_id.str));
        json_object_set_new(ann, "dev.kiln.cache.layer-key", json_string(layer_key));
        json_object_set_new(ann, "dev.kiln.cache.layer", json_string(name));
        /* what the key is made of, for `kiln cache show` (bounded) */
        if (inputs && strlen(inputs) <= 64 * 1024)
                json_object_set_new(ann, "dev.kiln.cache.inputs", json_string(inputs));
        json_object_set_new(ann, "org.opencontainers.image.created", json_string(created));
        if (recipe_image_put_artifact(repo, CACHE_ARTIFACT_TYPE, &ld, NULL, ann, tag, NULL, &e) < 0 ||
            oci_store_commit(repo, &e) < 0)
                goto fail;
        goto out;
fail:
        recipe_image_warn(o, "layer %s: not published to the cache repository: %s", name, e.msg);
out:
        pthread_mutex_unlock(&publish_lock);
        json_decref(ld.annotations);
        json_decref(ann);
}

/* Layers made in the image: run layers and build steps with "in": "image".
 * They need every layer below them built, and their cache key names those. */
bool recipe_layer_in_image(const struct recipe_layer *l)
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

json_t *recipe_lock_layer(json_t *lock, const char *name)
{
        return json_object_get(json_object_get(lock, "layers"), name);
}

/* A layer of wheels only (a wheels layer, a build step that installs
 * wheels), written straight from them unless it keeps the staged modes
 * (a staged directory's mode follows the umask) or owners, or
 * KILN_WHEELS_STAGED is set (docs/kiln.1). */
static bool streams_wheels(const struct recipe_layer *l, const struct layer_writer_opts *w)
{
        const char *install = json_string_value(json_object_get(l->params, "install"));
        const char *staged = getenv("KILN_WHEELS_STAGED");

        if ((staged && *staged) || w->keep_owners || w->keep_caps ||
            json_is_true(json_object_get(l->params, "keep_modes")))
                return false;
        return l->kind == RECIPE_LAYER_WHEELS ||
               (l->kind == RECIPE_LAYER_BUILD && install && !strcmp(install, "wheels"));
}

/* How a layer is written: unpacked while it is written when a step above
 * it runs in the image (recipe_layer_build). */
struct layer_build {
        bool unpack;
        void (*warn)(void *ctx, const char *msg);
        void *warn_ctx;
};

/* The layer written from the listed wheels; *ret_done false: it could not
 * be (the wheels are then installed into the staging directory, whose
 * install says what is wrong, or does what a streamed layer does not). */
static int build_streamed(const struct recipe_wheel_list *wl, const char *dir,
                          struct layer_cache *cache, const struct recipe_image_opts *o,
                          const struct layer_build *lb,
                          const char *name, struct layer_result *ret, bool *ret_done,
                          struct kiln_error *err)
{
        struct recipe_wheel_layer *w = NULL;
        struct kiln_error e = KILN_ERROR_INIT;
        int rc = 0;

        *ret_done = false;
        if (recipe_wheel_layer_new(wl, dir, &w, &e) < 0)
                return 0;
        if (recipe_layer_build(cache, recipe_wheel_layer_source(w), &o->writer, lb->unpack,
                               lb->warn, lb->warn_ctx, ret, &e) == 0) {
                recipe_image_say(o, "layer %s: written from %zu wheels, nothing staged", name,
                                 wl->n);
                *ret_done = true;
        } else if (!recipe_wheel_layer_failed(w)) {
                *err = e;
                rc = -1;
        }
        recipe_wheel_layer_free(w);
        return rc;
}

static int stage_and_build(const struct recipe_plan *plan, size_t i, const char *stage_root,
                           const char *base_root, struct layer_cache *cache,
                           const struct recipe_image_opts *o,
                           const struct recipe_build_remote *remote,
                           const struct recipe_build_sandbox *in_image,
                           const struct oci_digest *key, bool unpack,
                           void (*warn)(void *ctx, const char *msg), void *warn_ctx,
                           struct layer_result *ret, char **ret_revision, struct kiln_error *err)
{
        struct recipe_wheel_list wheels = {0};
        struct recipe_stage_opts so = {.cache_dir = layer_cache_dir(cache), .fetch = o->fetch,
                                       .fetch_ctx = o->fetch_ctx,
                                       .fetch_signed = o->fetch_signed, .build_remote = remote,
                                       .log = o->step_log, .layer = plan->layers[i].name,
                                       .in_image = in_image, .base_root = base_root,
                                       .locked = o->locked,
                                       .lock_layer = recipe_lock_layer(o->lock, plan->layers[i].name),
                                       .wheels = streams_wheels(&plan->layers[i], &o->writer)
                                                         ? &wheels
                                                         : NULL};
        struct recipe_stage_result sres = {0};
        _cleanup_free_ char *dir = kiln_strdupf("%s/%02zu-%s", stage_root, i + 1,
                                                plan->layers[i].name);
        struct layer_source *src = NULL;
        bool done = false;
        int rc = -1;

        if (!dir)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (recipe_stage_layer(plan, i, dir, &so, &sres, err) < 0)
                goto out;
        if (so.wheels && (build_streamed(&wheels, dir, cache, o,
                                         &(struct layer_build){unpack, warn, warn_ctx},
                                         plan->layers[i].name, ret, &done, err) < 0 ||
                          (!done && recipe_wheel_list_install(&wheels, dir, err) < 0)))
                goto out;
        if (!done) {
                src = layer_source_new(err);
                if (!src || recipe_layer_modes(&plan->layers[i], src, err) < 0 ||
                    layer_source_add_tree(src, dir, "/", NULL, 0, err) < 0 ||
                    layer_source_finish(src, err) < 0 ||
                    recipe_layer_build(cache, src, &o->writer, unpack, warn, warn_ctx, ret,
                                       err) < 0)
                        goto out;
        }
        if (layer_cache_store(cache, key, ret, err) < 0)
                goto out;
        if (sres.revision && ret_revision && !*ret_revision)
                *ret_revision = strdup(sres.revision);
        rc = 0;
out:
        layer_source_free(src);
        recipe_stage_result_release(&sres);
        recipe_wheel_list_release(&wheels);
        kiln_rm_rf(dir);
        return rc;
}

/* Build-step outputs in the cache repository: a tar+zstd of the output
 * directory in an artifact of its own type, tagged kbo-<hex of the step's
 * key>, so a runner whose layer key differs (another compression, another
 * install path) still skips the hour-long compile. */
#define BUILD_OUTPUT_TYPE "application/vnd.dev.kiln.build-output.v1"
#define BUILD_OUTPUT_LAYER_TYPE "application/vnd.dev.kiln.build-output.v1.tar+zstd"


int recipe_build_get(void *vctx, const char *key, const char *dest, bool *ret_hit,
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
                        recipe_image_warn(c->o, "build step: cache repository: %s", e.msg);
                goto out;
        }
        if (oci_manifest_parse(buf, len, mt, &m, &e) < 0 || m->n_layers != 1 ||
            !(mk = json_string_value(json_object_get(m->annotations, "dev.kiln.cache.key"))) ||
            strcmp(mk, key) || strcmp(m->layers[0].media_type, BUILD_OUTPUT_LAYER_TYPE)) {
                recipe_image_warn(c->o, "build step: ignoring cache entry '%s': not an output for this key", tag);
                goto out;
        }
        layer_unpack_opts_init(&uo);
        uo.rootless = true;
        u = layer_unpacker_new(dest, &uo, &e);
        r = u ? c->rd->ops->open_blob(c->rd, &m->layers[0], &e) : NULL;
        if (!r || layer_unpacker_apply(u, r, OCI_MT_LAYER_ZSTD, m->layers[0].digest.str, &e) < 0 ||
            layer_unpacker_finish(u, &e) < 0) {
                recipe_image_warn(c->o, "build step: ignoring cache entry '%s': %s", tag, e.msg);
                kiln_rm_rf(dest);
                goto out;
        }
        recipe_image_say(c->o, "build step: output from the cache repository (%s)", tag);
        *ret_hit = true;
out:
        layer_unpacker_free(u);
        oci_manifest_free(m);
        free(buf);
        free(mt);
        (void)err;
        return 0;
}

void recipe_build_put(void *vctx, const char *key, const char *dir)
{
        struct build_remote_ctx *c = vctx;
        struct kiln_error e = KILN_ERROR_INIT;
        struct layer_writer_opts w;
        struct layer_source *src = NULL;
        struct layer_result res;
        struct oci_descriptor ld = {0};
        struct oci_digest k;
        json_t *ann = json_object();
        char tag[80], created[OCI_TIME_TEXT_SIZE];
        struct oci_reader *r;
        bool hit = false;

        if (!c->wr || oci_digest_parse(key, &k, NULL) < 0)
                goto out;
        pthread_mutex_lock(&publish_lock);
        /* mtime 0 below, whatever SOURCE_DATE_EPOCH says: the output is keyed by the step */
        layer_writer_opts_init(&w, NULL);
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
        oci_time_format((int64_t)time(NULL), created, sizeof(created));
        json_object_set_new(ann, "dev.kiln.cache.key", json_string(key));
        json_object_set_new(ann, "org.opencontainers.image.created", json_string(created));
        snprintf(tag, sizeof(tag), "kbo-%s", oci_digest_hex(&k));
        if (recipe_image_put_artifact(c->wr, BUILD_OUTPUT_TYPE, &ld, NULL, ann, tag, NULL, &e) < 0 ||
            oci_store_commit(c->wr, &e) < 0)
                goto fail;
        goto unlock;
fail:
        recipe_image_warn(c->o, "build step: output not published to the cache repository: %s", e.msg);
unlock:
        pthread_mutex_unlock(&publish_lock);
out:
        layer_source_free(src);
        json_decref(ann);
}


/* A wheels layer's resolved packages as the lock pins them: name,
 * version, url, sha256 and the names each depends on. */
json_t *recipe_lock_packages(const json_t *inventory)
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

/* A layer above i is made in the image: its step has layer i as a lower
 * directory. */
bool recipe_plan_in_image_above(const struct recipe_plan *plan, size_t i)
{
        for (size_t j = i + 1; j < plan->n_layers; j++)
                if (recipe_layer_in_image(&plan->layers[j]))
                        return true;
        return false;
}

struct layer_warn {
        const struct recipe_image_opts *o;
        const char *name;
};

static void layer_warn(void *ctx, const char *msg)
{
        const struct layer_warn *lw = ctx;

        recipe_image_warn(lw->o, "layer %s: %s", lw->name, msg);
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
                                       .lock_layer = recipe_lock_layer(o->lock, plan0->layers[i].name)};
        struct recipe_stage_result kres = {0};
        struct layer_warn lw = {.o = o, .name = plan0->layers[i].name};
        struct recipe_run_ctx rctx = {.cache = cache, .base_st = lj->base_st, .base = lj->base,
                                      .below = res, .writer = &o->writer, .log = o->step_log,
                                      .unpack_written = recipe_plan_in_image_above(plan0, i),
                                      .warn = layer_warn, .warn_ctx = &lw,
                                      .prefetch = &lj->prefetch};
        struct build_in_image bi = {.rctx = &rctx, .plan = plan0, .i = i};
        struct recipe_build_sandbox sb = {.run = build_in_image_run, .ctx = &bi};
        struct oci_digest key, image_key;
        char *revision = NULL;
        bool hit = false, from_repo = false;
        struct timespec t0, t1;
        int rc = -1;

        if (recipe_layer_in_image(&plan0->layers[i]) && wait_below(lj, i, err) < 0)
                return -1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (plan0->layers[i].kind == RECIPE_LAYER_BUILD && recipe_layer_in_image(&plan0->layers[i])) {
                /* the layers below are built (wait_below): the image is known */
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
                recipe_image_say(o, "layer %s: left out by .dockerignore, .gitignore and .git: %s",
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
                        recipe_image_warn(o, "layer %s differs from the lock (%s, locked %s)",
                             plan0->layers[i].name, kres.layer_key, want);
                }
        }
        cache_key(kres.layer_key, &o->writer, &key);
        if (recipe_layer_in_image(&plan0->layers[i])) {
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
                        recipe_image_say(o, "layer %s: from the cache repository %s", plan0->layers[i].name,
                            res[i].digest.str);
        }
        if (hit) {
                recipe_image_say(o, "layer %s: cached %s", plan0->layers[i].name, res[i].digest.str);
        } else {
                recipe_image_say(o, "layer %s: building", plan0->layers[i].name);
                /* a step above will run (its key changes with this layer):
                 * the base's layers are unpacked meanwhile */
                if (rctx.unpack_written)
                        recipe_prefetch_start(&lj->prefetch, &rctx);
                if (o->layer_state)
                        o->layer_state(o->progress_ctx, plan0->layers[i].name, "building", NULL);
                if ((plan0->layers[i].kind == RECIPE_LAYER_RUN
                             ? recipe_run_layer(&rctx, plan0, i, &key, &res[i], err)
                             : stage_and_build(plan0, i, lj->stage_root, lj->base_root, cache, o,
                                               lj->remote, so.in_image, &key,
                                               rctx.unpack_written, rctx.warn, rctx.warn_ctx,
                                               &res[i], &revision, err)) < 0) {
                        kiln_error_prefix(err, "layer '%s'", plan0->layers[i].name);
                        goto out;
                }
                recipe_image_say(o, "layer %s: built %s", plan0->layers[i].name, res[i].digest.str);
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

/* One layer on the shared work queue; the first failure is kept in lj
 * (its waiters above see it there), not the "a layer below failed" of a
 * layer that was waiting for it. */
static int layer_one(void *ctx, size_t i, struct kiln_error *err)
{
        struct layer_jobs *lj = ctx;
        struct kiln_error e = KILN_ERROR_INIT;
        int rc = one_layer(lj, i, &e);

        pthread_mutex_lock(&lj->lock);
        if (rc < 0 && !lj->failed) {
                lj->failed = true;
                lj->err = e;
        }
        lj->done[i] = rc == 0;
        pthread_cond_broadcast(&lj->layer_done);
        pthread_mutex_unlock(&lj->lock);
        if (rc < 0 && err)
                *err = e;
        return rc;
}

/* A build step with "in": "image" has a recipe key that names the image
 * below it, known only once those layers are built.  (A run layer's recipe
 * key is its command and inputs; the layers below enter its cache key.) */
bool recipe_plan_has_build_in_image(const struct recipe_plan *plan)
{
        for (size_t i = 0; i < plan->n_layers; i++)
                if (plan->layers[i].kind == RECIPE_LAYER_BUILD && recipe_layer_in_image(&plan->layers[i]))
                        return true;
        return false;
}

/* Layers do not depend on each other: up to o->jobs are staged and built at
 * once (each writer compresses with its own threads too). */
int recipe_run_layer_jobs(struct layer_jobs *lj, struct kiln_error *err)
{
        unsigned n = lj->o->jobs ? lj->o->jobs : 1;
        struct kiln_error qerr = KILN_ERROR_INIT;

        if (n > 16)
                n = 16;
        lj->done = calloc(lj->plan->n_layers + 1, sizeof(*lj->done));
        if (!lj->done)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        pthread_mutex_init(&lj->lock, NULL);
        pthread_cond_init(&lj->layer_done, NULL);
        recipe_prefetch_init(&lj->prefetch);
        kiln_parallel_for(lj->plan->n_layers, n, layer_one, lj, &qerr);
        if (lj->failed)
                recipe_prefetch_cancel(&lj->prefetch);
        recipe_prefetch_destroy(&lj->prefetch);
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
