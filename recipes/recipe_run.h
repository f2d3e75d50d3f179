/* recipes/recipe_run.h: run layers, made in the image built so far.
 *
 * A run layer's command runs in the sandbox (sandbox/sandbox.h) over the
 * base's layers and the recipe's layers below it, each unpacked once into
 * the cache (sandbox/rootfs.h); what it changed (the overlay's upper
 * directory, its whiteouts turned into OCI ones, the mount points the
 * sandbox made taken out) is written as the layer by layers/, with the
 * same owners (0:0), times (SOURCE_DATE_EPOCH) and modes as any layer.
 *
 *   inputs  bound read-only at /kiln/inputs/N (N from 0, in order)
 *   cache   each directory bound read-write from CACHE/run-cache/<hex of
 *           the path>, kept between builds and never in a layer
 *   env     the image's Env, then the step's, then LC_ALL=C, TZ=UTC and
 *           SOURCE_DATE_EPOCH (umask 022), as host build steps get
 *
 * The cache key (recipe_run_key) covers the recipe's layer key (command,
 * env, network, inputs' content, cache paths), the diffIDs of every layer
 * below and the image's Env and working directory, so a hit needs no blob
 * of the base at all. */
#ifndef KILN_RECIPES_RUN_H
#define KILN_RECIPES_RUN_H

#include <pthread.h>
#include <stdbool.h>

#include "cache.h"
#include "digest.h"
#include "image.h"
#include "recipe.h"
#include "stage.h"
#include "writer.h"

struct recipe_prefetch;

struct recipe_run_ctx {
        struct layer_cache *cache;
        struct oci_store *base_st;        /* NULL: scratch */
        const struct oci_image *base;
        const struct layer_result *below; /* the recipe's layers 0..i-1 */
        const struct layer_writer_opts *writer;
        const struct recipe_step_log *log;
        /* a layer above is made in the image: unpack the layer written
         * here while it is written (recipe_layer_build) */
        bool unpack_written;
        void (*warn)(void *ctx, const char *msg); /* may be NULL */
        void *warn_ctx;
        /* the base's layers being unpacked in the background (may be
         * NULL): a step waits for it before it unpacks what is missing */
        struct recipe_prefetch *prefetch;
        const bool *cancel; /* set: unpack no further layer (read atomically) */
};

/* The base's layers, unpacked into CACHE/rootfs in the background while the
 * layers below the first step made in the image are built (for the CUDA
 * base, gigabytes the first such step would otherwise wait for). */
struct recipe_prefetch {
        pthread_mutex_t lock;
        pthread_t th;
        bool started, joined;
        bool cancel; /* the build failed: no further layer */
        struct recipe_run_ctx c;
};

void recipe_prefetch_init(struct recipe_prefetch *p);

/* Starts unpacking c's base (once; nothing for scratch, a base whose store
 * is not thread-safe, or after recipe_prefetch_wait).  Errors are not
 * kept: the step that needs the base unpacks what is missing itself and
 * reports them. */
void recipe_prefetch_start(struct recipe_prefetch *p, const struct recipe_run_ctx *c);

/* Waits for the background unpacking, if any (every step does, through
 * its ctx's prefetch, and the build before it ends: a failed build cancels
 * it first with recipe_prefetch_cancel, so only the layer being unpacked
 * is finished). */
void recipe_prefetch_cancel(struct recipe_prefetch *p);
void recipe_prefetch_wait(struct recipe_prefetch *p);

void recipe_prefetch_destroy(struct recipe_prefetch *p);

int recipe_run_key(const struct recipe_run_ctx *c, const struct recipe_plan *plan, size_t i,
                   const struct oci_digest *layer_cache_key, struct oci_digest *ret,
                   struct kiln_error *err);

/* A build layer with "in": "image" (stage.h recipe_build_sandbox): s runs
 * over the same lowers as a run layer i would, with out at /kiln/out and
 * scratch at /kiln/scratch (read-write; $KILN_OUT, $KILN_SCRATCH and $HOME
 * point there, the step starts in scratch), its inputs read-only at their
 * own host paths; the rest of what it writes is dropped.  With
 * layer_cache_key NULL, recipe_run_key names the image only (the key
 * recipe_build_sandbox.key wants). */
int recipe_run_build_step(const struct recipe_run_ctx *c, const struct recipe_plan *plan, size_t i,
                          const struct recipe_build_step *s, const char *out, const char *scratch,
                          void (*feed)(void *fctx, const char *buf, size_t n), void *fctx,
                          int *ret_status, struct kiln_error *err);

/* Builds the layer of src into the cache (layer_cache_build, no lookup).
 * With unpack (a layer above is made in the image, so its step needs this
 * one as a lower directory), the tar is also unpacked into
 * CACHE/rootfs/<hex of its diffID> while it is written (sandbox/rootfs.h),
 * so the step finds it made and opens no blob.  That never fails the
 * layer: when it fails, its directory is dropped, warn (may be NULL) says
 * why, and the step unpacks the blob as it would without it. */
int recipe_layer_build(struct layer_cache *cache, const struct layer_source *src,
                       const struct layer_writer_opts *w, bool unpack,
                       void (*warn)(void *ctx, const char *msg), void *warn_ctx,
                       struct layer_result *ret, struct kiln_error *err);

/* Runs layer i and builds its layer into the cache (stored under key). */
int recipe_run_layer(const struct recipe_run_ctx *c, const struct recipe_plan *plan, size_t i,
                     const struct oci_digest *key, struct layer_result *ret,
                     struct kiln_error *err);

#endif
