/* recipes/recipe.h: the recipe language, the build plan and the tags.
 *
 * A recipe is a JSON document (see docs/recipes.md).  Loading it checks the
 * schema: unknown keys and wrong types are reported with the file, line and
 * column of the offending key or value.  A plan is a pure function of the
 * recipe and its inputs (variable overrides, and what only becomes known
 * later: the source revision and the base image's environment), so a caller
 * that learns more simply plans again:
 *
 *     struct recipe *r = recipe_load("linnaeus.json", &err);
 *     struct recipe_plan_opts o = { .sets = sets, .n_sets = n };
 *     recipe_plan_build(r, &o, &plan, &err);       dry run: unresolved items marked
 *     ... stage the source layer (recipes/stage.h), pull the base config ...
 *     o.source_revision = res.revision; o.base_env = config_env;
 *     recipe_plan_build(r, &o, &final, &err);      everything resolved
 *     recipe_plan_free(plan); recipe_plan_free(final); recipe_free(r);
 *
 * Nothing here prints or touches the network.
 */
#ifndef KILN_RECIPES_RECIPE_H
#define KILN_RECIPES_RECIPE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "error.h"

/* A recipe file is small; anything bigger is a mistake. */
#define RECIPE_FILE_MAX (1024u * 1024)

struct recipe;

/* Reads, parses and schema-checks a recipe file. */
struct recipe *recipe_load(const char *path, struct kiln_error *err);
/* The same from a buffer; name is used in messages, dir resolves relative paths. */
struct recipe *recipe_parse(const char *buf, size_t len, const char *name, const char *dir,
                            struct kiln_error *err);
/* A recipe shipped with kiln, by name ("linnaeus": recipes/linnaeus/
 * linnaeus.json as this kiln was built with it); KILN_E_NOT_FOUND, listing
 * the names, for another.  Its relative paths start in the current
 * directory: it is meant for what needs no input files (kiln validate). */
struct recipe *recipe_load_shipped(const char *name, struct kiln_error *err);
void recipe_free(struct recipe *r);
void recipe_freep(struct recipe **r);

/* Line and column (1-based) of the value at JSON pointer ptr ("/layers/2/kind"),
 * or of its key when key is true.  Returns -1 when the pointer is unknown. */
int recipe_position(const struct recipe *r, const char *ptr, bool key, int *ret_line,
                    int *ret_col);

enum recipe_layer_kind {
        RECIPE_LAYER_WHEELS,
        RECIPE_LAYER_DEBS,
        RECIPE_LAYER_SOURCE,
        RECIPE_LAYER_BUILD,
        RECIPE_LAYER_TREE,  /* a host directory at a path, minus excludes */
        RECIPE_LAYER_FILES, /* single host files at target paths, with modes */
        RECIPE_LAYER_RUN,   /* a command run in the image built so far (sandbox/) */
};

const char *recipe_layer_kind_name(enum recipe_layer_kind k);

struct recipe_layer {
        char *name;
        enum recipe_layer_kind kind;
        json_t *params;     /* the layer object, every string expanded, "when" dropped */
        bool unresolved;    /* a string still holds a ${...} known only later */
        size_t recipe_index; /* index in the recipe's "layers" array */
        /* a debs layer's configure step (recipe_plan_configure): a run
         * layer NAME/configure right above it; conditional when the
         * recipe leaves "configure" to its default */
        bool configure_step;
        bool conditional;
};

/* Annotations of the parts a tag was made of (recipe_plan.c tag_provenance). */
#define RECIPE_ANN_TAG_BRANCH "dev.kiln.tag.branch"
#define RECIPE_ANN_TAG_SUFFIX "dev.kiln.tag.suffix"
#define RECIPE_ANN_RECIPE_NAME "dev.kiln.recipe.name"
/* The variables a build was given, JSON {"NAME": "VALUE"} (recipe_image.c
 * writes it; recipe_image_recorded_variables reads it). */
#define RECIPE_ANN_VARIABLES "dev.kiln.recipe.variables"

struct recipe_plan {
        char *recipe_name;
        char *recipe_dir;
        char *base;          /* the base image reference */
        json_t *variables;   /* name -> final value, sorted by name */
        struct recipe_layer *layers;
        size_t n_layers;
        json_t *config;      /* image-spec config.md "config": Env, Cmd, Entrypoint, ... */
        json_t *annotations; /* sorted; empty values dropped */
        char **tags;         /* full references "REPO:TAG"; first is the main tag */
        size_t n_tags;
        json_t *unresolved;  /* strings naming what is not known yet */
        char *source_from;   /* "git", "github", "local" or NULL without a source layer */
        json_t *validate;    /* "validate" expanded (recipe_validate.h); NULL: none */
};

struct recipe_plan_opts {
        const char *const *sets; /* "NAME=VALUE", later ones win */
        size_t n_sets;
        const char *source_revision; /* the resolved commit, NULL while unknown */
        json_t *base_env;            /* the base config's Env array, NULL while unknown */
};

int recipe_plan_build(const struct recipe *r, const struct recipe_plan_opts *opts,
                      struct recipe_plan **ret, struct kiln_error *err);
/* Maintainer scripts (docs/recipes.md, "Maintainer scripts"): the plan
 * puts a run layer NAME/configure right above each debs layer whose
 * "configure" is not false; it runs dpkg --configure -a in the image
 * (postinst scripts, pending triggers).  One the recipe does not ask for
 * with "configure": true is conditional until the base is known: then
 * recipe_plan_configure keeps each step where the base has a dpkg
 * database and no_sandbox is NULL (sandbox_userns_check), and drops the
 * conditional ones elsewhere; *ret_dropped (may be NULL) gets the names
 * of the debs layers whose step the sandbox alone kept out ("a, b"), or
 * NULL.  An explicit step without a dpkg database or without the sandbox
 * is an error naming the layer and why.  keep false drops every step
 * (--stage, which builds no image). */
int recipe_plan_configure(struct recipe_plan *p, bool keep, bool base_has_dpkg,
                          const char *no_sandbox, char **ret_dropped, struct kiln_error *err);
/* What the dry run says a conditional configure step waits for. */
#define RECIPE_CONFIGURE_WHEN "the base has a dpkg database and the sandbox works"

void recipe_plan_free(struct recipe_plan *p);
void recipe_plan_freep(struct recipe_plan **p);

/* The plan as JSON (for --dry-run --json) and as text (for --dry-run);
 * unresolved items are marked. */
json_t *recipe_plan_to_json(const struct recipe_plan *p);
char *recipe_plan_to_text(const struct recipe_plan *p);

/* The tag convention of the linnaeus build script:
 *   REPO/IMAGE:ARCH-VARIANT[-BRANCH][-SUFFIX]
 * tag is the ARCH-VARIANT part; the branch part is added only when
 * source_is_git and branch is neither empty nor main_branch ('/' becomes
 * '-'); suffix is added when not empty.  Characters a tag may not hold
 * become '-'.  The result is checked with oci_tag_valid() and the whole
 * reference with oci_ref_parse(). */
struct recipe_tag_parts {
        const char *repository;
        const char *tag;
        const char *branch;
        const char *main_branch; /* NULL: "main" */
        bool source_is_git;
        const char *suffix;
};

int recipe_tag_compute(const struct recipe_tag_parts *parts, char **ret, struct kiln_error *err);

/* Variable expansion, exposed for tests and tools: ${NAME}, ${NAME:-WORD}
 * and $$ for a literal '$'.  lookup returns the value or NULL. */
typedef const char *(*recipe_lookup_fn)(void *ctx, const char *name);
int recipe_expand_string(const char *s, recipe_lookup_fn lookup, void *ctx, char **ret,
                         struct kiln_error *err);

#endif
