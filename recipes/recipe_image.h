/* recipes/recipe_image.h: building a recipe into an image.
 *
 * recipe_image_build() is the whole of `kiln build` below the command
 * line:
 *   1. plan the recipe; open the base (a registry reference, through the
 *      caller's open_place, so mirrors and credentials apply) and read only
 *      its manifest and config: the base is shallow, its layers are never
 *      downloaded to build;
 *   2. for each layer, look its key (recipes/stage.h recipe_layer_key plus
 *      the compressor) up in the layer cache; on a miss stage it
 *      (wheels, debs, source, build step) and build it (layers/) into the
 *      cache;
 *   3. plan again with the source revision and the base's env; write the
 *      config (base config + diff_ids + history + the recipe's config) and
 *      an OCI manifest (base layers + new layers, provenance annotations);
 *   4. copy the image to the destination: the new blobs from the cache,
 *      the base's blobs straight from the base's registry (mounted when the
 *      destination is the same registry), manifest last, then every tag.
 * A failure before the copy leaves the destination untouched; the copy
 * itself tags only after every blob is in place.
 *
 * The shared cache (--cache-repo, docs/cache.md): a layer missing from the
 * local cache is looked up in a registry repository under the tag
 * kc-<hex of its key>: a small OCI artifact whose one layer is the built
 * blob, with the key, the diffID and the recipe's layer key as annotations.
 * A hit is used only when the entry is well formed, names this key and its
 * blob exists in the repository; anything else is a warning and a local
 * build.  Built layers are published there when cache_write is set, so
 * every runner of a fleet builds each layer once.
 *
 * Provenance (manifest annotations): org.opencontainers.image.created (from
 * the writer's mtime, i.e. SOURCE_DATE_EPOCH), .revision and .source (from
 * the recipe), .base.name and .base.digest, and dev.kiln.recipe.digest and
 * dev.kiln.recipe.variables (the variables the build was given, as JSON), which
 * `kiln verify --from-annotations` uses to rebuild the same image.
 *
 * The SBOM (opts->sbom, docs/recipes.md "SBOM"): every layer's key is
 * computed with its inventory (recipes/stage.h), so a layer from the cache
 * lists its wheels and .debs as a built one does; after the image (and its
 * tags) the SPDX document (recipes/recipe_sbom.h) is put next to it as an
 * artifact of type application/spdx+json whose subject is the image: a
 * registry finds it through the referrers API or the tag schema
 * (registry/registry.h), a layout holds it as an untagged index.json entry.
 */
#ifndef KILN_RECIPES_IMAGE_H
#define KILN_RECIPES_IMAGE_H

#include <stdbool.h>

#include "error.h"
#include "image.h"
#include "model.h"
#include "recipe.h"
#include "stage.h"
#include "writer.h"

typedef struct oci_store *(*recipe_open_place_fn)(void *ctx, const char *place, bool for_write,
                                                   struct kiln_error *err);

/* What happened to one layer of the recipe, in recipe order. */
struct recipe_layer_report {
        char *name;
        const char *state; /* "built", "cached" (local cache) or "pulled" (cache repository) */
        double seconds;    /* key, lookup, staging and writing */
        int64_t bytes;     /* the blob's size */
        struct oci_digest digest;
};

struct recipe_image_opts {
        const char *const *sets;
        size_t n_sets;
        const char *cache_dir;               /* NULL: the default */
        recipe_fetch_fn fetch;               /* http(s) inputs; NULL: local ones only */
        void *fetch_ctx;
        recipe_fetch_fn fetch_signed;        /* apt sources (stage.h); same ctx */
        const char *recipe_digest;           /* of the recipe file, recorded; may be NULL */
        struct layer_writer_opts writer;     /* compression, level, mtime */
        const struct oci_platform *platform; /* of the base; NULL: the host's */
        /* where the image goes: a place for the main tag ("oci:DIR",
         * "oci-archive:FILE", or NULL to push to the plan's tags) */
        const char *output;
        unsigned jobs;
        /* the shared layer cache in a registry repository (HOST/REPO), or
         * NULL; cache_write: publish layers built here (--cache-to) */
        const char *cache_repo;
        bool cache_write;
        /* pushing: when the destination holds the input tag kb-<hex> (the
         * digest of the recipe, its variables, the base and every layer key),
         * only add the tags to that manifest */
        bool skip_if_built;
        /* a lock (recipe_image_lock's document) or NULL: git sources are
         * pinned to its commits and the base to its digest, and every layer's
         * key is compared with it; locked: an input missing from the lock or
         * floating away from it is an error instead of a warning */
        json_t *lock;
        bool locked;
        /* attach an SPDX SBOM of the image's wheels and .debs */
        bool sbom;
        void (*warn)(void *ctx, const char *msg);
        recipe_open_place_fn open_place;
        void *open_ctx;
        /* where the base's bytes come from instead of the recipe's base (any
         * place: an archive carried into an air gap); the image is the same
         * as one built from the recipe's base when the bytes are */
        const char *base_from;
        /* each layer's state as it changes: "waiting" (all, first), "building",
         * then "built", "cached" or "pulled" (from the cache repository); may be
         * called from several threads */
        void (*layer_state)(void *ctx, const char *layer, const char *state,
                            const struct recipe_layer_report *done);
        /* handed to the copy that writes or pushes the image (oci_copy_opts) */
        void (*copy_progress)(void *ctx, const char *event, const struct oci_descriptor *d);
        void (*copy_bytes)(void *ctx, const struct oci_descriptor *d, int64_t done,
                           bool finished);
        void *copy_ctx;
        /* build steps' output lines and the log of a step that failed */
        const struct recipe_step_log *step_log;
        void (*progress)(void *ctx, const char *msg);
        void *progress_ctx;
};

struct recipe_image_result {
        struct oci_digest digest; /* the manifest */
        char **tags;              /* full references pushed or written */
        size_t n_tags;
        char *revision;           /* of a git source, or NULL */
        unsigned layers_built, layers_cached;
        unsigned layers_from_repo; /* of layers_cached: found in the cache repository */
        bool skipped;              /* skip_if_built found the image */
        unsigned blobs_copied, blobs_skipped;
        struct oci_digest sbom;    /* the SBOM artifact's manifest; str "" without one */
        struct recipe_layer_report *layers; /* n_layers, unless skipped */
        size_t n_layers;
};

void recipe_image_result_release(struct recipe_image_result *r);

int recipe_image_build(const struct recipe *r, const struct recipe_image_opts *opts,
                       struct recipe_image_result *ret, struct kiln_error *err);

/* Resolves every floating input (the base tag to a digest, git refs to
 * commits, index entries to their files' digests, through the layer keys)
 * into a lock document:
 *   {"lockVersion":1,"recipe":DIGEST,"base":{"ref":REF,"digest":D},
 *    "layers":{NAME:{"key":KEY,"revision":COMMIT?,"apt":[RELEASE,...]?}}}
 * where RELEASE is the sha256 of each apt source's signed Release. */
/* The variables an image records (its manifest's annotations, as a build
 * writes them): *ret NULL when it records none; an error when the
 * annotation is not a JSON object.  what names the image. */
int recipe_image_recorded_variables(const json_t *annotations, const char *what, json_t **ret,
                                    struct kiln_error *err);

int recipe_image_lock(const struct recipe *r, const struct recipe_image_opts *opts,
                      json_t **ret, struct kiln_error *err);

/* The base's files kiln reads (recipe_stage_opts.base_root): its apt
 * keyrings and sources, /var/lib/dpkg/status and the trigger interests
 * in /var/lib/dpkg/triggers/, read from its layers top layer first
 * (whiteouts respected) into CACHE/base/VERSION-HEX-OF-DIGEST/, once per
 * base digest.  ret_dir: that directory. */
int recipe_base_files(struct oci_store *st, const struct oci_manifest *m, const char *digest,
                      const char *cache_dir, char **ret_dir, struct kiln_error *err);

#endif
