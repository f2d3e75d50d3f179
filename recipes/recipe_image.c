#include "recipe_image.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache.h"
#include "image_edit.h"
#include "io.h"
#include "json.h"
#include "layout.h"
#include "place.h"
#include "recipe_image_internal.h"
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

void recipe_image_say(const struct recipe_image_opts *o, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        emit(o->progress, o->progress_ctx, fmt, ap);
        va_end(ap);
}

void recipe_image_warn(const struct recipe_image_opts *o, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        emit(o->warn, o->progress_ctx, fmt, ap);
        va_end(ap);
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
                rc = recipe_image_put_artifact(dst, RECIPE_SBOM_MEDIA_TYPE, &ld, image, ann, NULL, ret, err);
        json_decref(ld.annotations);
        if (rc < 0) {
                kiln_error_prefix(err, "sbom of '%s'", image->digest.str);
                return -1;
        }
        recipe_image_say(o, "sbom %s", ret->str);
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
        recipe_image_warn(o, "tag '%s' moves to an image of another provenance: it held %s (%s); this build "
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
                recipe_image_warn(o,
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
                        recipe_image_warn(o, "layer %s is not in the lock: it may float", l->name);
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
                recipe_image_warn(o, "the lock does not pin the base '%s': it may float", plan->base);
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
                                               .inventory = l->kind == RECIPE_LAYER_WHEELS ||
                                                            json_object_get(l->params, "sdist")};
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
                        json_object_set_new(e, "packages", recipe_lock_packages(kres.packages));
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

/* ---- the build ----
 *
 * recipe_image_build() in named steps over one struct build: build_open()
 * (plan, lock, base, caches, the image edit), build_skip_if_built() (the
 * input tag), build_layers(), build_image() (config and manifest into the
 * cache's layout) and build_deliver() (the copy to the destination, the
 * tags, the SBOM).  build_release() undoes whatever was done. */

struct build {
        const struct recipe *r;
        const struct recipe_image_opts *o;
        struct recipe_plan_opts po;
        struct recipe_plan *plan0; /* before the layers: no revision, no base env */
        struct recipe_plan *plan;  /* after them: the config, tags and annotations */
        struct oci_store *base_st, *repo_rd, *repo_wr, *early;
        struct oci_store *upper, *lower, *overlay, *dst;
        struct oci_image base;
        struct oci_image_edit *img;
        struct layer_cache *cache;
        struct layer_result *res;
        json_t **pkgs;
        json_t *ann; /* the manifest's annotations */
        struct build_remote_ctx bctx;
        struct recipe_build_remote remote;
        char *stage_root, *base_ref, *base_root;
        const char *created; /* the image's time, which is its layers' */
        char input_tag[80];
        unsigned early_pushed;
        struct oci_descriptor md; /* the image's manifest */
        struct recipe_image_result out;
        struct configure_facts cf;
};

static void build_release(struct build *b)
{
        if (b->stage_root)
                kiln_rm_rf(b->stage_root);
        free(b->stage_root);
        recipe_image_result_release(&b->out);
        for (size_t i = 0; b->pkgs && i < b->plan0->n_layers; i++)
                json_decref(b->pkgs[i]);
        free(b->pkgs);
        free(b->res);
        json_decref(b->ann);
        oci_store_free(b->dst);
        oci_store_free(b->early);
        oci_store_free(b->overlay);
        oci_store_free(b->lower);
        oci_store_free(b->repo_rd);
        oci_store_free(b->repo_wr);
        oci_store_free(b->upper);
        oci_image_edit_free(b->img);
        layer_cache_free(b->cache);
        oci_image_release(&b->base);
        oci_store_free(b->base_st);
        recipe_plan_free(b->plan0);
        recipe_plan_free(b->plan);
        free(b->base_ref);
        free(b->base_root);
}

/* The base (pinned by the lock, or read from --base-from) and the image
 * edit made from it, dated as the layers are. */
static int build_open_base(struct build *b, struct kiln_error *err)
{
        const struct recipe_image_opts *o = b->o;
        const char *ref = b->base_ref ? b->base_ref : b->plan0->base;

        if (o->base_from) {
                /* the recipe's base, read from another place: a lock's digest still holds */
                recipe_image_say(o, "base %s from %s", b->plan0->base, o->base_from);
                if (open_base(o, o->base_from, o->lock ? lock_digest(o->lock) : NULL,
                              &b->base_st, &b->base, err) < 0) {
                        kiln_error_prefix(err, "base '%s'", o->base_from);
                        return -1;
                }
        } else {
                recipe_image_say(o, "base %s", ref);
                if (open_base(o, ref,
                              b->base_ref && !oci_place_is_registry(b->base_ref)
                                      ? lock_digest(o->lock)
                                      : NULL,
                              &b->base_st, &b->base, err) < 0) {
                        kiln_error_prefix(err, "base '%s'", b->plan0->base);
                        return -1;
                }
        }
        b->img = oci_image_edit_new_from(&b->base, err);
        if (!b->img)
                return -1;
        oci_image_edit_set_time(b->img, o->writer.mtime);
        oci_image_edit_drop_docker(b->img);
        b->created = oci_image_edit_time_text(b->img);
        return 0;
}

/* The plan, the lock, the base, the layer cache, the cache repository and
 * the staging directory. */
static int build_open(struct build *b, struct kiln_error *err)
{
        const struct recipe_image_opts *o = b->o;

        if (recipe_plan_build(b->r, &b->po, &b->plan0, err) < 0)
                return -1;
        if (!b->plan0->base || !*b->plan0->base)
                return kiln_error_set(err, KILN_E_INVALID, "recipe '%s' names no base image",
                                      b->plan0->recipe_name);
        if (o->lock || o->locked) {
                if (!o->lock)
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "--locked needs a lock file: run kiln lock first");
                b->base_ref = lock_base(o->lock, b->plan0, o, err);
                if (!b->base_ref)
                        return -1;
        }
        if (build_open_base(b, err) < 0)
                return -1;
        b->cache = layer_cache_open(o->cache_dir, err);
        if (!b->cache || base_root_for(b->plan0, b->base_st, &b->base, layer_cache_dir(b->cache),
                                       &b->base_root, err) < 0 ||
            settle_configure(b->plan0, b->base_root, &b->cf, o, true, err) < 0)
                return -1;
        /* the configure steps are settled: the lock names each layer kept */
        if (o->lock && lock_apply(b->plan0, o->lock, o, err) < 0)
                return -1;
        if (o->cache_repo) {
                b->repo_rd = o->open_place(o->open_ctx, o->cache_repo, false, err);
                if (b->repo_rd && o->cache_write)
                        b->repo_wr = o->open_place(o->open_ctx, o->cache_repo, true, err);
                if (!b->repo_rd || (o->cache_write && !b->repo_wr)) {
                        kiln_error_prefix(err, "cache repository");
                        return -1;
                }
        }
        b->stage_root = kiln_strdupf("%s/stage-XXXXXX", layer_cache_dir(b->cache));
        if (!b->stage_root || !mkdtemp(b->stage_root)) {
                free(steal_ptr(&b->stage_root));
                return kiln_error_set(err, KILN_E_IO, "cannot create a staging directory in '%s'",
                                      layer_cache_dir(b->cache));
        }
        b->bctx = (struct build_remote_ctx){.o = o, .rd = b->repo_rd, .wr = b->repo_wr,
                                            .cache = b->cache};
        b->remote = (struct recipe_build_remote){.get = recipe_build_get, .put = recipe_build_put,
                                                 .ctx = &b->bctx};
        b->res = calloc(b->plan0->n_layers + 1, sizeof(*b->res));
        b->pkgs = calloc(b->plan0->n_layers + 1, sizeof(*b->pkgs));
        if (!b->res || !b->pkgs)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        return 0;
}

/* The input digest: of everything the image is made of (the recipe, the
 * variables, the base, the compressor, every layer's key). */
static int input_digest(struct build *b, struct oci_digest *ret, struct kiln_error *err)
{
        const struct recipe_image_opts *o = b->o;
        struct oci_hasher h;
        char *vars = json_dumps(b->plan0->variables, JSON_COMPACT | JSON_SORT_KEYS);
        char comp[64];

        if (oci_hasher_init(&h, OCI_DIGEST_SHA256, err) < 0) {
                free(vars);
                return -1;
        }
        layer_compressor_id(o->writer.compression, o->writer.level, comp, sizeof(comp));
        oci_hasher_update(&h, "kiln input 1\n", 13);
        if (o->recipe_digest)
                oci_hasher_update(&h, o->recipe_digest, strlen(o->recipe_digest));
        if (vars)
                oci_hasher_update(&h, vars, strlen(vars));
        free(vars);
        oci_hasher_update(&h, b->base.top.desc.digest.str, strlen(b->base.top.desc.digest.str));
        oci_hasher_update(&h, comp, strlen(comp));
        for (size_t i = 0; i < b->plan0->n_layers; i++) {
                struct recipe_stage_opts so = {.cache_dir = layer_cache_dir(b->cache),
                                               .fetch = o->fetch, .fetch_ctx = o->fetch_ctx,
                                               .fetch_signed = o->fetch_signed,
                                               .build_remote = b->repo_rd ? &b->remote : NULL,
                                               .inventory = o->sbom, .log = o->step_log,
                                               .layer = b->plan0->layers[i].name,
                                               .base_root = b->base_root, .locked = o->locked,
                                               .lock_layer = recipe_lock_layer(
                                                       o->lock, b->plan0->layers[i].name)};
                struct recipe_stage_result kres = {0};
                if (recipe_layer_key(b->plan0, i, &so, &kres, err) < 0) {
                        oci_hasher_release(&h);
                        kiln_error_prefix(err, "layer '%s'", b->plan0->layers[i].name);
                        return -1;
                }
                oci_hasher_update(&h, kres.layer_key, strlen(kres.layer_key));
                b->pkgs[i] = steal_ptr(&kres.packages);
                if (kres.revision && !b->out.revision)
                        b->out.revision = strdup(kres.revision);
                recipe_stage_result_release(&kres);
        }
        oci_hasher_final(&h, ret);
        oci_hasher_release(&h);
        return 0;
}

/* The image built before (d, in probe): the plan's tags and the SBOM put on it. */
static int tag_built(struct build *b, struct oci_store *probe, const struct oci_descriptor *d,
                     struct kiln_error *err)
{
        b->out.tags = calloc(b->plan->n_tags, sizeof(*b->out.tags));
        if (!b->out.tags)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        for (size_t i = 0; i < b->plan->n_tags; i++) {
                _cleanup_free_ char *t = tag_of(b->plan->tags[i]);
                if (t && probe->ops->tag(probe, t, d, err) < 0)
                        return -1;
                b->out.tags[i] = strdup(b->plan->tags[i]);
                b->out.n_tags++;
        }
        /* the SBOM too: the same image and inputs give the same one */
        if (b->o->sbom && put_sbom(probe, b->o, b->plan->tags[0], d, b->created, b->pkgs,
                                   b->plan0->n_layers, &b->out.sbom, err) < 0)
                return -1;
        if (oci_store_commit(probe, err) < 0)
                return -1;
        b->out.digest = d->digest;
        b->out.skipped = true;
        return 0;
}

/* --skip-if-built: when the destination holds the input tag kb-<hex>, the
 * plan's tags go on that image and nothing is built (1); else the input tag
 * is kept for build_deliver() (0). */
static int build_skip_if_built(struct build *b, struct kiln_error *err)
{
        const struct recipe_image_opts *o = b->o;
        json_t *benv = json_object_get(json_object_get(b->base.config, "config"), "Env");
        struct oci_digest input, got;
        char *mbuf = NULL, *mt = NULL;
        struct oci_store *probe;
        char itag[80];
        size_t mlen;
        int rc = 0;

        /* every layer's recipe key, the run layers' and the configure steps'
         * too, is known before anything is built; a build step in the image
         * names the image below it: no input tag then */
        if (!o->skip_if_built || o->output || recipe_plan_has_build_in_image(b->plan0))
                return 0;
        if (input_digest(b, &input, err) < 0)
                return -1;
        b->po.source_revision = b->out.revision;
        b->po.base_env = json_is_array(benv) ? benv : NULL;
        if (recipe_plan_build(b->r, &b->po, &b->plan, err) < 0 ||
            settle_configure(b->plan, b->base_root, &b->cf, o, false, err) < 0)
                return -1;
        snprintf(itag, sizeof(itag), "kb-%s", oci_digest_hex(&input));
        probe = o->open_place(o->open_ctx, b->plan->tags[0], true, err);
        if (!probe)
                return -1;
        if (probe->ops->get_manifest(probe, itag, &mbuf, &mlen, &mt, &got, NULL) == 0) {
                struct oci_descriptor d = {.media_type = mt, .digest = got,
                                           .size = (int64_t)mlen};
                recipe_image_say(o, "already built: %s", itag);
                rc = tag_built(b, probe, &d, err) < 0 ? -1 : 1;
                free(mbuf);
                free(mt);
        } else {
                recipe_plan_free(steal_ptr(&b->plan));
                snprintf(b->input_tag, sizeof(b->input_tag), "%s", itag);
        }
        oci_store_free(probe);
        return rc;
}

/* Every layer from the caches or built (recipe order in the report);
 * pushing, each goes up as soon as it is there. */
static int build_layers(struct build *b, struct kiln_error *err)
{
        const struct recipe_image_opts *o = b->o;
        struct layer_jobs lj = {0};

        if (!o->output) {
                b->early = o->open_place(o->open_ctx, b->plan0->tags[0], true, err);
                if (!b->early)
                        return -1;
        }
        b->out.layers = calloc(b->plan0->n_layers + 1, sizeof(*b->out.layers));
        if (!b->out.layers)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        b->out.n_layers = b->plan0->n_layers;
        for (size_t i = 0; o->layer_state && i < b->plan0->n_layers; i++)
                o->layer_state(o->progress_ctx, b->plan0->layers[i].name, "waiting", NULL);
        lj = (struct layer_jobs){.plan = b->plan0, .stage_root = b->stage_root,
                                 .base_root = b->base_root, .cache = b->cache, .o = o,
                                 .repo_rd = b->repo_rd, .repo_wr = b->repo_wr, .early = b->early,
                                 .remote = b->repo_rd ? &b->remote : NULL,
                                 .base_st = b->base_st, .base = &b->base, .res = b->res,
                                 .packages = b->pkgs, .out = &b->out};
        if (recipe_run_layer_jobs(&lj, err) < 0)
                return -1;
        b->early_pushed = lj.pushed;
        return 0;
}

/* The provenance annotations (recipe_image.h): the plan's, the base's
 * digest, the time, the recipe's digest and name, the variables given. */
static int build_annotations(struct build *b, struct kiln_error *err)
{
        const struct recipe_image_opts *o = b->o;
        const char *name = b->plan->recipe_name;
        json_t *given = json_object();
        char *vars;

        b->ann = b->plan->annotations ? json_deep_copy(b->plan->annotations) : json_object();
        if (!b->ann || !given) {
                json_decref(given);
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        /* base.name comes from the plan (recipe_plan.c) */
        if (b->base_st)
                json_object_set_new(b->ann, "org.opencontainers.image.base.digest",
                                    json_string(b->base.top.desc.digest.str));
        json_object_set_new(b->ann, "org.opencontainers.image.created", json_string(b->created));
        if (o->recipe_digest)
                json_object_set_new(b->ann, "dev.kiln.recipe.digest",
                                    json_string(o->recipe_digest));
        if (name) {
                /* the file's name, not where it is: the digest must not depend on the checkout */
                const char *slash = strrchr(name, '/');
                json_object_set_new(b->ann, RECIPE_ANN_RECIPE_NAME,
                                    json_string(slash ? slash + 1 : name));
        }
        /* the variables the build was given (later ones win), not the
         * defaults: those come from the recipe, whose digest is above */
        for (size_t i = 0; i < o->n_sets; i++) {
                const char *eq = strchr(o->sets[i], '=');
                char var[256];
                if (!eq)
                        continue;
                snprintf(var, sizeof(var), "%.*s", (int)(eq - o->sets[i]), o->sets[i]);
                json_object_set_new(given, var, json_string(eq + 1));
        }
        vars = json_dumps(given, JSON_COMPACT | JSON_SORT_KEYS);
        if (vars)
                json_object_set_new(b->ann, RECIPE_ANN_VARIABLES, json_string(vars));
        free(vars);
        json_decref(given);
        return oci_image_edit_annotate_all(b->img, b->ann, err);
}

int recipe_image_recorded_variables(const json_t *annotations, const char *what, json_t **ret,
                                    struct kiln_error *err)
{
        const char *vs = json_string_value(json_object_get(annotations, RECIPE_ANN_VARIABLES));
        json_t *vars;

        *ret = NULL;
        if (!vs)
                return 0;
        vars = oci_json_parse(vs, strlen(vs), RECIPE_ANN_VARIABLES, err);
        if (!vars)
                return -1;
        if (!json_is_object(vars)) {
                json_decref(vars);
                return kiln_error_set(err, KILN_E_INVALID, "%s: %s is not a JSON object", what,
                                      RECIPE_ANN_VARIABLES);
        }
        *ret = vars;
        return 0;
}

/* The image: the recipe's config (planned again: the source revision and
 * the base's env are known now), each layer with its diffID and history
 * entry, the annotations; its config and manifest go into the cache's
 * layout, from where build_deliver() copies it. */
static int build_image(struct build *b, struct kiln_error *err)
{
        json_t *base_env = json_object_get(json_object_get(b->base.config, "config"), "Env");
        _cleanup_free_ char *cl_dir = NULL;

        b->po.source_revision = b->out.revision;
        b->po.base_env = json_is_array(base_env) ? base_env : NULL;
        if (recipe_plan_build(b->r, &b->po, &b->plan, err) < 0 ||
            settle_configure(b->plan, b->base_root, &b->cf, b->o, false, err) < 0)
                return -1;
        if (b->plan->n_tags == 0)
                return kiln_error_set(err, KILN_E_INVALID, "recipe '%s' gives no tag",
                                      b->plan->recipe_name);
        if (oci_image_edit_merge_config(b->img, b->plan->config, err) < 0)
                return -1;
        for (size_t i = 0; i < b->plan->n_layers; i++) {
                const struct layer_result *res = &b->res[i];
                struct oci_descriptor d = {.media_type = res->media_type, .digest = res->digest,
                                           .size = res->size};
                char by[512];
                int rc;
                if (b->plan->layers[i].configure_step)
                        snprintf(by, sizeof(by),
                                 "kiln build: dpkg --configure -a (debs layer '%s')",
                                 b->plan->layers[i - 1].name);
                else
                        snprintf(by, sizeof(by), "kiln build: %s layer '%s'",
                                 recipe_layer_kind_name(b->plan->layers[i].kind),
                                 b->plan->layers[i].name);
                d.annotations = json_pack("{s:s}", LAYER_COMPRESSION_ANNOTATION, res->compressor);
                if (!d.annotations)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                rc = oci_image_edit_add_layer(b->img, &d, &res->diff_id,
                                              &(struct oci_history){.dated = true,
                                                                    .created_by = by},
                                              err);
                json_decref(d.annotations);
                if (rc < 0)
                        return -1;
        }
        if (build_annotations(b, err) < 0)
                return -1;
        cl_dir = kiln_strdupf("%s/layout", layer_cache_dir(b->cache));
        if (!cl_dir)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        /* unnamed: the copy to the destination names it */
        b->upper = oci_layout_store_new(cl_dir, NULL, true, err);
        if (!b->upper || oci_image_edit_write(b->img, b->upper, NULL, 0, &b->md, err) < 0)
                return -1;
        return 0;
}

/* The image into its destination (the new blobs from the cache, the base's
 * from its own place, the manifest, the main tag), then the other tags, the
 * input tag and the SBOM. */
static int build_deliver(struct build *b, struct kiln_error *err)
{
        const struct recipe_image_opts *o = b->o;
        _cleanup_free_ char *t0 = tag_of(b->plan->tags[0]);
        struct oci_copy_opts copts = {.dst_tag = t0, .jobs = o->jobs,
                                      .progress = o->copy_progress, .bytes = o->copy_bytes,
                                      .progress_ctx = o->copy_ctx};
        struct oci_copy_result cres;

        /* blobs come from the local cache, then the cache repository, then the base */
        if (b->repo_rd && b->base_st) {
                b->lower = oci_overlay_store_new(b->repo_rd, b->base_st, NULL, err);
                if (!b->lower)
                        return -1;
        }
        /* scratch: the cache and the cache repository hold every blob */
        b->overlay = oci_overlay_store_new(b->upper,
                                           b->lower     ? b->lower
                                           : b->base_st ? b->base_st
                                           : b->repo_rd ? b->repo_rd
                                                        : b->upper,
                                           b->md.digest.str, err);
        if (!b->overlay)
                return -1;
        b->out.tags = calloc(b->plan->n_tags, sizeof(*b->out.tags));
        if (!b->out.tags)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        /* pushing: the destination the layers went up to already */
        b->dst = o->output ? o->open_place(o->open_ctx, o->output, true, err)
                           : steal_ptr(&b->early);
        if (!b->dst)
                return -1;
        for (size_t i = 0; i < b->plan->n_tags; i++)
                check_tag_provenance(o, b->dst, b->plan->tags[i], &b->md.digest, b->ann);
        if (o->output)
                recipe_image_say(o, "writing %s", o->output);
        else
                recipe_image_say(o, "pushing %s", b->plan->tags[0]);
        if (oci_image_copy(b->overlay, NULL, b->dst, &copts, &cres, err) < 0)
                return -1;
        for (size_t i = 1; i < b->plan->n_tags; i++) {
                _cleanup_free_ char *t = tag_of(b->plan->tags[i]);
                if (t && b->dst->ops->tag(b->dst, t, &b->md, err) < 0)
                        return -1;
        }
        /* the input tag, so the next identical build is one HEAD */
        if (b->input_tag[0] && b->dst->ops->tag(b->dst, b->input_tag, &b->md, err) < 0)
                return -1;
        if (o->sbom && put_sbom(b->dst, o, b->plan->tags[0], &b->md, b->created, b->pkgs,
                                b->plan0->n_layers, &b->out.sbom, err) < 0)
                return -1;
        if (oci_store_commit(b->dst, err) < 0)
                return -1;
        for (size_t i = 0; i < b->plan->n_tags; i++) {
                b->out.tags[i] = strdup(b->plan->tags[i]);
                if (b->out.tags[i])
                        b->out.n_tags++;
        }
        b->out.digest = b->md.digest;
        b->out.blobs_copied = cres.blobs_copied + b->early_pushed;
        b->out.blobs_skipped = cres.blobs_skipped;
        return 0;
}

int recipe_image_build(const struct recipe *r, const struct recipe_image_opts *o,
                       struct recipe_image_result *ret, struct kiln_error *err)
{
        struct build b = {.r = r, .o = o, .po = {.sets = o->sets, .n_sets = o->n_sets}};
        int rc = build_open(&b, err);

        if (rc == 0)
                rc = build_skip_if_built(&b, err);
        if (rc == 0 && (build_layers(&b, err) < 0 || build_image(&b, err) < 0 ||
                        build_deliver(&b, err) < 0))
                rc = -1;
        if (rc >= 0) {
                *ret = b.out;
                memset(&b.out, 0, sizeof(b.out));
                rc = 0;
        }
        build_release(&b);
        return rc;
}
