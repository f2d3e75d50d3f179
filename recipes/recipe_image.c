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

static void format_time(int64_t t, char *buf, size_t len)
{
        time_t tt = (time_t)t;
        struct tm tm;

        gmtime_r(&tt, &tm);
        strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

#define CACHE_ARTIFACT_TYPE "application/vnd.dev.kiln.layer-cache.v1"
#define EMPTY_JSON_DIGEST "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"

static void warn(const struct recipe_image_opts *o, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
static void warn(const struct recipe_image_opts *o, const char *fmt, ...)
{
        char msg[1024];
        va_list ap;

        if (!o->warn)
                return;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        o->warn(o->progress_ctx, msg);
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

/* Publishes a built layer: its blob, the empty config, then the entry
 * manifest under kc-<hex>.  A failure is a warning: the build goes on. */
static void repo_publish(struct oci_store *repo, struct layer_cache *cache,
                         const struct recipe_image_opts *o, const char *name,
                         const struct oci_digest *key, const char *layer_key,
                         const struct layer_result *res)
{
        struct kiln_error e = KILN_ERROR_INIT;
        struct oci_descriptor ld = {0}, cd = {0}, md = {0};
        json_t *mj = NULL, *ann = json_object();
        char *mbuf = NULL, tag[80], created[64];
        size_t mlen;
        struct oci_reader *r;
        bool have = false;

        snprintf(tag, sizeof(tag), "kc-%s", oci_digest_hex(key));
        ld.media_type = res->media_type;
        ld.digest = res->digest;
        ld.size = res->size;
        ld.annotations = json_pack("{s:s}", LAYER_COMPRESSION_ANNOTATION, res->compressor);
        cd.media_type = OCI_MT_EMPTY;
        oci_digest_parse(EMPTY_JSON_DIGEST, &cd.digest, NULL);
        cd.size = 2;
        if (repo->ops->has_blob(repo, &ld, &have, &e) < 0)
                goto fail;
        if (!have) {
                r = layer_cache_open_blob(cache, res, &e);
                if (!r || repo->ops->put_blob(repo, &ld, r, &e) < 0)
                        goto fail;
        }
        r = oci_reader_from_buffer("{}", 2, &e);
        if (!r || repo->ops->put_blob(repo, &cd, r, &e) < 0)
                goto fail;
        format_time((int64_t)time(NULL), created, sizeof(created));
        json_object_set_new(ann, "dev.kiln.cache.key", json_string(key->str));
        json_object_set_new(ann, "dev.kiln.cache.diff-id", json_string(res->diff_id.str));
        json_object_set_new(ann, "dev.kiln.cache.layer-key", json_string(layer_key));
        json_object_set_new(ann, "dev.kiln.cache.layer", json_string(name));
        json_object_set_new(ann, "org.opencontainers.image.created", json_string(created));
        mj = oci_manifest_to_json(OCI_MT_MANIFEST, CACHE_ARTIFACT_TYPE, &cd, &ld, 1, NULL, ann);
        if (!mj || oci_json_dump(mj, &mbuf, &mlen, &e) < 0)
                goto fail;
        md.media_type = OCI_MT_MANIFEST;
        oci_digest_of_buffer(mbuf, mlen, &md.digest);
        md.size = (int64_t)mlen;
        if (repo->ops->put_manifest(repo, &md, mbuf, mlen, &e) < 0 ||
            repo->ops->tag(repo, tag, &md, &e) < 0 || oci_store_commit(repo, &e) < 0)
                goto fail;
        goto out;
fail:
        warn(o, "layer %s: not published to the cache repository: %s", name, e.msg);
out:
        json_decref(ld.annotations);
        json_decref(ann);
        json_decref(mj);
        free(mbuf);
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
        struct oci_store *repo_rd = NULL, *repo_wr = NULL, *lower = NULL;
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
        char created[64], input_tag[80] = "";
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
        res = calloc(plan0->n_layers + 1, sizeof(*res));
        if (!res) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto out;
        }
        if (o->skip_if_built && !o->output) {
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
                        struct recipe_stage_opts so = {.cache_dir = layer_cache_dir(cache)};
                        struct recipe_stage_result kres = {0};
                        if (recipe_layer_key(plan0, i, &so, &kres, err) < 0) {
                                oci_hasher_release(&h);
                                kiln_error_prefix(err, "layer '%s'", plan0->layers[i].name);
                                goto out;
                        }
                        oci_hasher_update(&h, kres.layer_key, strlen(kres.layer_key));
                        if (kres.revision && !out.revision)
                                out.revision = strdup(kres.revision);
                        recipe_stage_result_release(&kres);
                }
                oci_hasher_final(&h, &input);
                oci_hasher_release(&h);
                po.source_revision = out.revision;
                po.base_env = json_is_array(benv) ? benv : NULL;
                if (recipe_plan_build(r, &po, &plan, err) < 0)
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
                if (layer_cache_lookup(cache, &key, &res[i], &hit, err) < 0) {
                        recipe_stage_result_release(&kres);
                        goto out;
                }
                if (!hit && repo_rd) {
                        repo_lookup(repo_rd, o, plan0->layers[i].name, &key, &res[i], &hit);
                        if (hit) {
                                out.layers_from_repo++;
                                say(o, "layer %s: from the cache repository %s",
                                    plan0->layers[i].name, res[i].digest.str);
                        }
                }
                if (hit) {
                        out.layers_cached++;
                        say(o, "layer %s: cached %s", plan0->layers[i].name, res[i].digest.str);
                        recipe_stage_result_release(&kres);
                        continue;
                }
                say(o, "layer %s: building", plan0->layers[i].name);
                if (stage_and_build(plan0, i, stage_root, cache, o, &key, &res[i], &out.revision,
                                    err) < 0) {
                        kiln_error_prefix(err, "layer '%s'", plan0->layers[i].name);
                        recipe_stage_result_release(&kres);
                        goto out;
                }
                out.layers_built++;
                say(o, "layer %s: built %s", plan0->layers[i].name, res[i].digest.str);
                if (repo_wr)
                        repo_publish(repo_wr, cache, o, plan0->layers[i].name, &key,
                                     kres.layer_key, &res[i]);
                recipe_stage_result_release(&kres);
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
        /* blobs come from the local cache, then the cache repository, then the base */
        if (repo_rd) {
                lower = oci_overlay_store_new(repo_rd, base_st, NULL, err);
                if (!lower)
                        goto out;
        }
        overlay = oci_overlay_store_new(upper, lower ? lower : base_st, md.digest.str, err);
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
                /* the input tag, so the next identical build is one HEAD */
                if (input_tag[0] && dst->ops->tag(dst, input_tag, &md, err) < 0)
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
