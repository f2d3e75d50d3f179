#include "recipe_image.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache.h"
#include "io.h"
#include "json.h"
#include "layout.h"
#include "ref.h"
#include "source.h"
#include "stage.h"
#include "util.h"

void recipe_image_result_release(struct recipe_image_result *r)
{
        if (!r)
                return;
        for (size_t i = 0; i < r->n_tags; i++)
                free(r->tags[i]);
        free(r->tags);
        free(r->revision);
        memset(r, 0, sizeof(*r));
}

static void say(const struct recipe_image_opts *o, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
static void say(const struct recipe_image_opts *o, const char *fmt, ...)
{
        char msg[1024];
        va_list ap;

        if (!o->progress)
                return;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        o->progress(o->progress_ctx, msg);
}

/* The cache key of a recipe layer: what determines its content (the
 * recipe's layer key) and how it is written. */
static void cache_key(const char *layer_key, const struct layer_writer_opts *w,
                      struct oci_digest *ret)
{
        char comp[64];
        char *s;

        layer_compressor_id(w->compression, w->level, comp, sizeof(comp));
        s = kiln_strdupf("kiln recipe layer 1\n%s\n%s\n%lld\n%d%d\n", layer_key, comp,
                         (long long)w->mtime, w->keep_owners, w->keep_caps);
        oci_digest_of_buffer(s ? s : "", s ? strlen(s) : 0, ret);
        free(s);
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

static void format_time(int64_t t, char *buf, size_t len)
{
        time_t tt = (time_t)t;
        struct tm tm;

        gmtime_r(&tt, &tm);
        strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int stage_and_build(const struct recipe_plan *plan, size_t i, const char *stage_root,
                           struct layer_cache *cache, const struct recipe_image_opts *o,
                           const struct oci_digest *key, struct layer_result *ret,
                           char **ret_revision, struct kiln_error *err)
{
        struct recipe_stage_opts so = {.cache_dir = layer_cache_dir(cache)};
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
        if (!src || layer_source_add_tree(src, dir, "/", NULL, 0, err) < 0 ||
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
                snprintf(by, sizeof(by), "kiln build: %s layer '%s'",
                         recipe_layer_kind_name(plan->layers[i].kind), plan->layers[i].name);
                json_array_append_new(hist, json_pack("{s:s, s:s}", "created", created,
                                                      "created_by", by));
        }
        json_object_set_new(c, "created", json_string(created));
        /* Docker-only leftovers of the base's build would describe another container */
        json_object_del(c, "container");
        json_object_del(c, "container_config");
        return c;
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

int recipe_image_build(const struct recipe *r, const struct recipe_image_opts *o,
                       struct recipe_image_result *ret, struct kiln_error *err)
{
        struct recipe_plan_opts po = {.sets = o->sets, .n_sets = o->n_sets};
        struct recipe_plan *plan0 = NULL, *plan = NULL;
        struct oci_store *base_st = NULL, *upper = NULL, *overlay = NULL, *dst = NULL;
        struct oci_image base = {0};
        struct layer_cache *cache = NULL;
        struct oci_layout *cl = NULL;
        struct layer_result *res = NULL;
        struct oci_descriptor *layers = NULL;
        struct recipe_image_result out = {0};
        _cleanup_free_ char *stage_root = NULL, *cbuf = NULL, *mbuf = NULL, *cl_dir = NULL;
        json_t *config = NULL, *mj = NULL, *ann = NULL, *base_env;
        struct oci_descriptor cd = {0}, md = {0};
        struct oci_copy_opts copts = {0};
        struct oci_copy_result cres;
        char created[64];
        size_t clen, mlen, nb;
        int rc = -1;

        if (recipe_plan_build(r, &po, &plan0, err) < 0)
                goto out;
        if (!plan0->base || !*plan0->base) {
                kiln_error_set(err, KILN_E_INVALID, "recipe '%s' names no base image",
                               plan0->recipe_name);
                goto out;
        }
        say(o, "base %s", plan0->base);
        base_st = o->open_place(o->open_ctx, plan0->base, false, err);
        /* only the base's manifest and config are read */
        if (!base_st || oci_image_load(base_st, NULL, o->platform, &base, err) < 0) {
                kiln_error_prefix(err, "base '%s'", plan0->base);
                goto out;
        }
        cache = layer_cache_open(o->cache_dir, err);
        if (!cache)
                goto out;
        stage_root = kiln_strdupf("%s/stage-XXXXXX", layer_cache_dir(cache));
        if (!stage_root || !mkdtemp(stage_root)) {
                kiln_error_set(err, KILN_E_IO, "cannot create a staging directory in '%s'",
                               layer_cache_dir(cache));
                goto out;
        }
        res = calloc(plan0->n_layers + 1, sizeof(*res));
        if (!res) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto out;
        }
        for (size_t i = 0; i < plan0->n_layers; i++) {
                struct recipe_stage_opts so = {.cache_dir = layer_cache_dir(cache)};
                struct recipe_stage_result kres = {0};
                struct oci_digest key;
                bool hit = false;

                if (recipe_layer_key(plan0, i, &so, &kres, err) < 0) {
                        kiln_error_prefix(err, "layer '%s'", plan0->layers[i].name);
                        goto out;
                }
                if (kres.revision && !out.revision)
                        out.revision = strdup(kres.revision);
                cache_key(kres.layer_key, &o->writer, &key);
                recipe_stage_result_release(&kres);
                if (layer_cache_lookup(cache, &key, &res[i], &hit, err) < 0)
                        goto out;
                if (hit) {
                        out.layers_cached++;
                        say(o, "layer %s: cached %s", plan0->layers[i].name, res[i].digest.str);
                        continue;
                }
                say(o, "layer %s: building", plan0->layers[i].name);
                if (stage_and_build(plan0, i, stage_root, cache, o, &key, &res[i], &out.revision,
                                    err) < 0) {
                        kiln_error_prefix(err, "layer '%s'", plan0->layers[i].name);
                        goto out;
                }
                out.layers_built++;
                say(o, "layer %s: built %s", plan0->layers[i].name, res[i].digest.str);
        }
        /* plan again: the revision and the base's env are known now */
        base_env = json_object_get(json_object_get(base.config, "config"), "Env");
        po.source_revision = out.revision;
        po.base_env = json_is_array(base_env) ? base_env : NULL;
        if (recipe_plan_build(r, &po, &plan, err) < 0)
                goto out;
        if (plan->n_tags == 0) {
                kiln_error_set(err, KILN_E_INVALID, "recipe '%s' gives no tag", plan->recipe_name);
                goto out;
        }
        format_time(o->writer.mtime, created, sizeof(created));
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
        json_object_set_new(ann, "org.opencontainers.image.base.name", json_string(plan->base));
        json_object_set_new(ann, "org.opencontainers.image.base.digest",
                            json_string(base.top.desc.digest.str));
        json_object_set_new(ann, "org.opencontainers.image.created", json_string(created));
        if (o->recipe_digest)
                json_object_set_new(ann, "dev.kiln.recipe.digest", json_string(o->recipe_digest));
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
        overlay = oci_overlay_store_new(upper, base_st, md.digest.str, err);
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
                say(o, "writing %s", o->output);
                if (oci_image_copy(overlay, NULL, dst, &copts, &cres, err) < 0)
                        goto out;
                for (size_t i = 1; i < plan->n_tags; i++) {
                        _cleanup_free_ char *t = tag_of(plan->tags[i]);
                        if (t && dst->ops->tag(dst, t, &md, err) < 0)
                                goto out;
                }
                if (oci_store_commit(dst, err) < 0)
                        goto out;
        } else {
                dst = o->open_place(o->open_ctx, plan->tags[0], true, err);
                if (!dst)
                        goto out;
                copts.jobs = o->jobs;
                say(o, "pushing %s", plan->tags[0]);
                if (oci_image_copy(overlay, NULL, dst, &copts, &cres, err) < 0)
                        goto out;
                for (size_t i = 1; i < plan->n_tags; i++) {
                        _cleanup_free_ char *t = tag_of(plan->tags[i]);
                        if (t && dst->ops->tag(dst, t, &md, err) < 0)
                                goto out;
                }
                if (oci_store_commit(dst, err) < 0)
                        goto out;
        }
        for (size_t i = 0; i < plan->n_tags; i++) {
                out.tags[i] = strdup(plan->tags[i]);
                if (out.tags[i])
                        out.n_tags++;
        }
        out.digest = md.digest;
        out.blobs_copied = cres.blobs_copied;
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
        free(layers);
        free(res);
        json_decref(config);
        json_decref(mj);
        json_decref(ann);
        oci_store_free(dst);
        oci_store_free(overlay);
        oci_store_free(upper);
        oci_layout_free(cl);
        layer_cache_free(cache);
        oci_image_release(&base);
        oci_store_free(base_st);
        recipe_plan_free(plan0);
        recipe_plan_free(plan);
        return rc;
}
