/* recipes/recipe_image_internal.h: what recipe_image.c (a build: plan,
 * base, image, delivery) and recipe_image_layers.c (its layers) share. */
#ifndef KILN_RECIPES_IMAGE_INTERNAL_H
#define KILN_RECIPES_IMAGE_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>

#include "cache.h"
#include "recipe.h"
#include "recipe_image.h"
#include "recipe_run.h"
#include "stage.h"

/* Progress and warnings, to the caller's callbacks, one line each. */
void recipe_image_say(const struct recipe_image_opts *o, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
void recipe_image_warn(const struct recipe_image_opts *o, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

/* An artifact of type holding layer (its blob already in st), with
 * subject and annotations (both may be NULL), tagged tag (may be NULL). */
int recipe_image_put_artifact(struct oci_store *st, const char *type,
                              const struct oci_descriptor *layer,
                              const struct oci_descriptor *subject, json_t *ann, const char *tag,
                              struct oci_digest *ret, struct kiln_error *err);
/* Run layers and build steps with "in": "image". */
bool recipe_layer_in_image(const struct recipe_layer *l);
bool recipe_plan_has_build_in_image(const struct recipe_plan *plan);
/* A layer above i is made in the image (it needs layer i unpacked). */
bool recipe_plan_in_image_above(const struct recipe_plan *plan, size_t i);
json_t *recipe_lock_layer(json_t *lock, const char *name);
/* A wheels layer's resolved packages as the lock pins them. */
json_t *recipe_lock_packages(const json_t *inventory);

/* Build steps' outputs in the cache repository (recipe_build_remote). */
struct build_remote_ctx {
        const struct recipe_image_opts *o;
        struct oci_store *rd, *wr;
        struct layer_cache *cache;
};
int recipe_build_get(void *vctx, const char *key, const char *dest, bool *ret_hit,
                     struct kiln_error *err);
void recipe_build_put(void *vctx, const char *key, const char *dir);

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
        unsigned pushed; /* blobs handed to the destination early */
        bool failed;
        struct kiln_error err;
        struct recipe_prefetch prefetch; /* the base, unpacked in the background */
};
/* Every layer of lj->plan, up to o->jobs at once. */
int recipe_run_layer_jobs(struct layer_jobs *lj, struct kiln_error *err);

#endif
