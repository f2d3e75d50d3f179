/* recipes/stage.h: the layer-kind front ends.
 *
 * Each turns one planned layer into a staging directory: a tree that
 * holds exactly the files the layer adds, at their paths in the image
 * (DIR/usr/local/lib/python3.11/site-packages/..., DIR/app/linnaeus/...).
 * The layer builder (layers/) turns that tree into a deterministic tar
 * layer: it owns ordering, ownership (0:0), timestamps and modes beyond
 * the permission bits staged here.  Nothing is run from the staged
 * content: wheels are installed the way pip would without Python, .deb
 * files are unpacked without maintainer scripts.
 *
 *     recipe_stage_layer(plan, i, "stage/03-torch", &opts, &res, &err);
 *     ... hand "stage/03-torch" to the layer builder ...
 *     recipe_stage_result_release(&res);
 *
 * The pieces are usable on their own (tests, other verbs):
 *   recipe_wheel_install()      one .whl into a tree (PEP 427)
 *   recipe_deb_unpack()         one .deb into a tree (+ dpkg status.d)
 *   recipe_source_stage()       a git commit or a local directory
 *   recipe_build_run()          a host command, cached by its inputs
 *   recipe_simple_index_pick()  a wheel from a PEP 503 index page
 *   recipe_requirements_parse() a requirements file with --hash lines
 */
#ifndef KILN_RECIPES_STAGE_H
#define KILN_RECIPES_STAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "pep440.h"
#include "recipe.h"

/* Limits on what the front ends read whole. */
#define RECIPE_WHEEL_META_MAX (4u * 1024 * 1024) /* RECORD, METADATA, entry_points.txt */
#define RECIPE_INDEX_MAX (32u * 1024 * 1024)     /* a simple index page (torch's is large) */
#define RECIPE_DEB_CONTROL_MAX (1024u * 1024)
#define RECIPE_APT_INDEX_MAX (256u * 1024 * 1024) /* an uncompressed Packages index */
#define RECIPE_APT_RELEASE_MAX (16u * 1024 * 1024) /* InRelease, Release, Release.gpg */

/* Fetches url into the new file dest (written whole or not at all), at
 * most max bytes (max < 0: no limit).  kiln build passes registry/'s HTTP
 * client here; without a fetcher, http(s) inputs fail with
 * KILN_E_UNSUPPORTED.  Fetched files land in CACHE/fetch/ and are always
 * checked against their sha256 afterwards. */
typedef int (*recipe_fetch_fn)(void *ctx, const char *url, const char *dest, int64_t max,
                               struct kiln_error *err);

/* A shared store of build-step outputs (the layer cache in a registry):
 * get fills dest (a new directory) with the output of key and sets
 * *ret_hit; put offers a finished output.  Both may be NULL. */
struct recipe_build_remote {
        int (*get)(void *ctx, const char *key, const char *dest, bool *ret_hit,
                   struct kiln_error *err);
        void (*put)(void *ctx, const char *key, const char *dir);
        void *ctx;
};

/* What a build step prints.  Its stdout and stderr, interleaved as written,
 * go to CACHE/logs/LAYER-KEY.log (the last RECIPE_STEP_LOGS_KEPT logs are
 * kept); line gets each line as it comes (without its newline, at most
 * RECIPE_STEP_LINE_MAX bytes; longer lines are cut there), from the thread
 * that runs the step; failed gets the log's path when the step fails, before
 * the error is returned.  Any of them may be NULL. */
#define RECIPE_STEP_LOGS_KEPT 50
#define RECIPE_STEP_LINE_MAX 4096
struct recipe_step_log {
        void (*line)(void *ctx, const char *layer, const char *line);
        void (*failed)(void *ctx, const char *layer, const char *log_path);
        void *ctx;
};

struct recipe_wheel_list;

struct recipe_stage_opts {
        const char *cache_dir; /* build outputs, git mirrors, fetched files */
        const struct recipe_step_log *log; /* build steps' output; NULL: only the log file */
        const char *layer; /* the layer staged, for the log's name and lines */
        recipe_fetch_fn fetch; /* NULL: local inputs only */
        void *fetch_ctx;
        /* for what a signature and hashes check before use (apt indexes and
         * packages: docs/security.md): plain http allowed; NULL: fetch */
        recipe_fetch_fn fetch_signed;
        const struct recipe_build_remote *build_remote; /* NULL: local only */
        /* build steps with "in": "image" (kiln build sets it for the layer
         * it stages); NULL: such a step can give its key but not run */
        const struct recipe_build_sandbox *in_image;
        /* fill ret->packages (the SBOM's inventory, see below); this may read
         * the control data of .deb files given by path (fetching them once)
         * and needs a build step's output (cached, fetched or run) */
        bool inventory;
        /* the base image's files kiln reads (its apt keyrings, its dpkg
         * status) under their image paths; NULL: none (scratch, --stage) */
        const char *base_root;
        /* the lock's entry for the layer: "apt" holds the digest of each apt
         * source's Release, in order (docs/recipes.md, "Locks"); NULL: none */
        const json_t *lock_layer;
        bool locked; /* a Release that differs from the lock's is an error */
        /* set: a wheels layer, or a build step that installs wheels, lists
         * its wheels here (in install order, each resolved and fetched)
         * instead of installing them into the staging directory, which
         * stays empty; the layer is then written from the wheels
         * (recipe_wheel_layer_new), or they are installed later
         * (recipe_wheel_list_install) */
        struct recipe_wheel_list *wheels;
};

struct recipe_stage_result {
        char *layer_key; /* "sha256:..." of what determines the layer's content */
        char *layer_inputs; /* the JSON the key is the digest of */
        char *revision;  /* source layers from git: the resolved commit */
        char *cache_key; /* build layers: "sha256:..." of command, env and inputs */
        bool cached;     /* build layers: the output came from the cache */
        char *excluded;  /* local sources: what ignore rules left out ("N paths (a/, b)") */
        /* with opts->inventory: every wheel and .deb the layer installs, in
         * install order, as objects
         *   {"type":"pypi","name":N,"version":V,"sha256":HEX,"url":U}
         *   {"type":"deb","name":N,"version":V,"architecture":A,"sha256":HEX,"url":U}
         * N is the PEP 503 name of a wheel, the Package of a .deb; U is the
         * input as the recipe (or the index) gives it: a URL or a path, or
         * null for a wheel a build step made.  It comes from the resolved
         * inputs, so a layer key computed without staging gives the same. */
        json_t *packages;
        /* debs layers: "sha256:..." of each apt source's verified Release
         * (null for a local mirror read as given), for kiln lock */
        json_t *apt_releases;
};

void recipe_stage_result_release(struct recipe_stage_result *res);

/* Stages layer i of plan into dir (created; must not exist or be empty).
 * Fails with KILN_E_UNSUPPORTED for inputs that need the network (http
 * URLs) until registry/ provides a fetcher. */
int recipe_stage_layer(const struct recipe_plan *plan, size_t i, const char *dir,
                       const struct recipe_stage_opts *opts, struct recipe_stage_result *ret,
                       struct kiln_error *err);

/* The layer's cache key, without staging: the digest of its kind, its
 * resolved parameters (name and comment left out) and the digests of its
 * concrete inputs in order: each wheel's and package's sha256 (indexes are
 * read and files verified), the git commit (refs resolved, URLs fetched
 * into the mirror), the local tree (after ignore rules), the build step's
 * key.  recipe_stage_layer() returns the same key in ret->layer_key, so a
 * build looks the key up in the layer cache and stages only on a miss.
 * ret->revision is set for git sources. */
int recipe_layer_key(const struct recipe_plan *plan, size_t i,
                     const struct recipe_stage_opts *opts, struct recipe_stage_result *ret,
                     struct kiln_error *err);

/* Where a wheel goes.  NULL members take the defaults shown. */
struct recipe_python_target {
        const char *python;        /* "cp311" */
        const char *platform;      /* "manylinux_2_35_x86_64": glibc of the image, arch */
        const char *prefix;        /* "/usr/local" */
        const char *site_packages; /* PREFIX/lib/python3.11/site-packages */
        const char *interpreter;   /* "/usr/bin/python3.11": the #! of scripts */
};

/* Installs the wheel at path into the tree at root.  sha256 (hex) may be
 * NULL only for wheels kiln built itself.  Every file is checked against
 * the wheel's RECORD; RECORD is rewritten, INSTALLER written, console and
 * gui scripts generated from entry_points.txt. */
int recipe_wheel_install(const char *path, const char *sha256, const char *root,
                         const struct recipe_python_target *t, struct kiln_error *err);

/* The wheels of a layer in install order (recipe_stage_opts.wheels). */
struct recipe_wheel_item {
        char *path;
        char *sha256; /* NULL: a wheel kiln built */
        struct recipe_python_target t; /* its own copies of the strings */
};
struct recipe_wheel_list {
        struct recipe_wheel_item *items;
        size_t n;
        char **tmpdirs; /* removed with the list: where editable wheels were made */
        size_t n_tmpdirs;
};
int recipe_wheel_list_add(struct recipe_wheel_list *l, const char *path, const char *sha256,
                          const struct recipe_python_target *t, struct kiln_error *err);
/* dir (a temporary directory holding a listed wheel) is removed with l. */
int recipe_wheel_list_keep(struct recipe_wheel_list *l, const char *dir, struct kiln_error *err);
/* recipe_wheel_install() of each wheel into root, in order. */
int recipe_wheel_list_install(const struct recipe_wheel_list *l, const char *root,
                              struct kiln_error *err);
void recipe_wheel_list_release(struct recipe_wheel_list *l);

/* Wheel file names (PEP 427 / PEP 491): name-ver[-build]-py-abi-plat.whl. */
struct recipe_wheel_name {
        char *name, *version, *build, *python, *abi, *platform;
};
int recipe_wheel_name_parse(const char *file, struct recipe_wheel_name *ret,
                            struct kiln_error *err);
void recipe_wheel_name_release(struct recipe_wheel_name *w);
/* True when the wheel's tags are compatible with the target (PEP 425, PEP 600). */
bool recipe_wheel_compatible(const struct recipe_wheel_name *w,
                             const struct recipe_python_target *t);
/* PEP 503 name normalization in place: lowercase, runs of [-_.] become '-'. */
void recipe_pep503_normalize(char *name);

/* One PEP 508 requirement with the hashes given by --hash=sha256:... (may
 * be none).  version and prefix describe a plain pin ("name==version",
 * "name==version.*"); exact is true for those and for a bare name, the
 * forms a layer with "resolve": false takes. */
struct recipe_requirement {
        char *name;    /* normalized */
        char *version; /* NULL: any */
        bool prefix;   /* version ends with ".*" */
        bool exact;
        struct recipe_pep508 req;
        char **sha256;
        size_t n_sha256;
};

struct recipe_requirements {
        struct recipe_requirement *items;
        size_t n;
};

int recipe_requirement_parse(const char *spec, struct recipe_requirement *ret,
                             struct kiln_error *err);
void recipe_requirement_release(struct recipe_requirement *q);
/* A requirements file: one requirement a line, '\' continuations,
 * --hash=sha256:HEX options, comments; -r/-e and URLs are refused. */
int recipe_requirements_parse(const char *buf, size_t len, const char *what,
                              struct recipe_requirements *ret, struct kiln_error *err);
void recipe_requirements_release(struct recipe_requirements *r);

/* Picks the wheel for q from a PEP 503 project page (HTML): the last
 * compatible file of the newest matching version.  ret_url is the href
 * (resolved against base_url), ret_sha256 the #sha256= fragment (NULL
 * when the index gives none). */
int recipe_simple_index_pick(const char *html, size_t len, const char *base_url,
                             const struct recipe_requirement *q,
                             const struct recipe_python_target *t, char **ret_url,
                             char **ret_sha256, struct kiln_error *err);

/* One wheel of a project page, the best of its version for the target. */
struct recipe_index_file {
        char *url;     /* resolved against the page's base */
        char *version; /* as the file name writes it */
        struct recipe_version v;
        char *sha256;  /* the #sha256= fragment; NULL: none */
        bool has_metadata;     /* PEP 658/714: URL.metadata exists */
        char *metadata_sha256; /* its hash; NULL: none given */
        char *requires_python; /* data-requires-python; NULL: none */
        int score;
};
/* The compatible wheels of project name on a PEP 503 page, one per
 * version (the best tags), newest first; yanked files left out. */
int recipe_simple_index_list(const char *html, size_t len, const char *base_url, const char *name,
                             const struct recipe_python_target *t,
                             struct recipe_index_file **ret, size_t *ret_n,
                             struct kiln_error *err);
/* Its source distributions (NAME-VERSION.tar.gz) instead, newest first. */
int recipe_simple_index_sdists(const char *html, size_t len, const char *base_url,
                               const char *name, struct recipe_index_file **ret, size_t *ret_n,
                               struct kiln_error *err);
void recipe_index_files_free(struct recipe_index_file *f, size_t n);
/* The .dist-info/METADATA of the wheel at path (at most
 * RECIPE_WHEEL_META_MAX bytes, NUL-terminated). */
int recipe_wheel_read_metadata(const char *path, char **ret, size_t *ret_len,
                               struct kiln_error *err);

/* Unpacks data.tar.* of the .deb at path into root and writes its control
 * stanza to root/var/lib/dpkg/status.d/PACKAGE (as distroless images do;
 * a debs layer on a base with dpkg writes a dpkg database instead).
 * No maintainer script runs.  merged_usr maps /bin, /sbin, /lib* to
 * /usr/... so the layer keeps a merged-/usr base's links.  ret_package
 * may be NULL. */
int recipe_deb_unpack(const char *path, const char *sha256, const char *root, bool merged_usr,
                      char **ret_package, struct kiln_error *err);

/* apt repositories without apt: finds package in a Packages index
 * (deb822 stanzas; Filename and SHA256 of the first stanza for arch or
 * "all").  Dependency resolution is the debs layer's (recipe_debdeps.c). */
int recipe_apt_find(const char *index_buf, const char *package, const char *arch,
                    char **ret_filename, char **ret_sha256, struct kiln_error *err);
/* Reads index_path (Packages, Packages.gz or .xz) and unpacks each of
 * packages from mirror_dir/FILENAME, verified against the index's SHA256.
 * The index itself is trusted as given: a debs layer checks it against
 * its signed Release first (recipe_apt.c). */
int recipe_apt_stage(const char *index_path, const char *mirror_dir,
                     const char *const *packages, size_t n, const char *arch, const char *root,
                     bool merged_usr, struct kiln_error *err);

/* A git source: repository (a path or URL) at ref (branch, tag or commit)
 * is exported (git archive, no .git) to root/path.  URLs are mirrored
 * under cache_dir/git first.  ret_commit: the full commit id. */
int recipe_git_stage(const char *repository, const char *ref, const char *root,
                     const char *path, const char *cache_dir, char **ret_commit,
                     struct kiln_error *err);
/* A local directory copied to root/path, minus what .dockerignore (or,
 * without one, the top .gitignore) excludes, and minus .git. */
int recipe_local_stage(const char *dir, const char *root, const char *path,
                       struct kiln_error *err);

/* dockerignore / gitignore matching, exposed for tests. */
struct recipe_ignore;
struct recipe_ignore *recipe_ignore_parse(const char *buf, size_t len, bool docker);
bool recipe_ignore_match(const struct recipe_ignore *ig, const char *relpath, bool is_dir);
void recipe_ignore_free(struct recipe_ignore *ig);

/* "in": "image": the step runs in the sandbox over the image built so far
 * (recipes/recipe_run.h) instead of on the host.  run starts it with out
 * and scratch bound in and hands its output to feed; key names the image
 * (the diffIDs below, its Env): it is part of the output's cache key, not
 * of the layer's recipe key. */
struct recipe_build_step;
struct recipe_build_sandbox {
        int (*run)(void *ctx, const struct recipe_build_step *s, const char *out,
                   const char *scratch, void (*feed)(void *fctx, const char *buf, size_t n),
                   void *fctx, int *ret_status, struct kiln_error *err);
        void *ctx;
        const char *key;
};

/* A build step: argv run in a scratch directory with exactly env (plus
 * PATH from the host, HOME=scratch, KILN_OUT=output dir, KILN_SCRATCH),
 * its output directory cached under cache_dir/build/HEX by the digest of
 * argv + env + the content of inputs, so it runs once per change.
 * ret_out_dir: the cached output directory. */
struct recipe_build_step {
        const char *const *argv;
        size_t argc;
        const char *const *env; /* "NAME=VALUE", sorted by the caller or not: the key sorts */
        size_t n_env;
        const char *const *inputs; /* files or directories */
        size_t n_inputs;
        const struct recipe_build_remote *remote; /* looked up on a local miss; may be NULL */
        const struct recipe_step_log *log;        /* may be NULL */
        const char *layer;                        /* names the log; may be NULL */
        const struct recipe_build_sandbox *sandbox; /* "in": "image"; NULL: the host */
        /* "sdist": the source distribution picked from an index, verified;
         * the command finds it at $KILN_SDIST.  Its name and sha256 are in
         * the key, its path is not. */
        const char *sdist, *sdist_sha256;
};

int recipe_build_key(const struct recipe_build_step *s, char **ret_key, struct kiln_error *err);
int recipe_build_run(const struct recipe_build_step *s, const char *cache_dir, char **ret_out_dir,
                     char **ret_key, bool *ret_cached, struct kiln_error *err);

/* Small helpers the front ends share. */
int recipe_sha256_file(const char *path, char ret_hex[65], struct kiln_error *err);
int recipe_verify_sha256(const char *path, const char *want_hex, struct kiln_error *err);
/* Copies the tree at src into dst (created), keeping modes and symlinks. */
int recipe_copy_tree(const char *src, const char *dst, struct kiln_error *err);

#endif
