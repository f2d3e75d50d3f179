/* The verbs of kiln and every option each takes: the one table that the
 * parser, `kiln help`, the bash completion and the man page check are made
 * from (see options.h).  A verb's own options are keyed by a letter unique
 * within the verb; shared ones by enum cli_key. */
#include <stddef.h>

#include "cli.h"
#include "cmd_layers.h"
#include "cmd_registry.h"
#include "commands.h"
#include "options.h"

/* The table reads best one option a line or two. */
/* clang-format off */
#define END {0}

static const char *const w_compression[] = {"gzip", "zstd", "none", NULL};
static const char *const w_progress[] = {"auto", "plain", "tty", "none", NULL};
static const char *const w_arch[] = {"hopper", "ampere", "turing", "pre-ampere", NULL};
static const char *const w_source[] = {"github", "local", NULL};
static const char *const w_cache[] = {"ls", "show", "prune", NULL};
static const char *const w_shells[] = {"bash", NULL};

/* ---- global groups: with every verb, before it or after it ---- */

static const struct cli_option general[] = {
        {.name = "verbose", .letter = 'v', .key = CLI_K_VERBOSE, .type = CLI_FLAG,
         .help = "print each registry request and retry on stderr (as KILN_VERBOSE=1)"},
        {.name = "quiet", .letter = 'q', .key = CLI_K_QUIET, .type = CLI_FLAG,
         .help = "print the result, warnings and errors only: no progress, no summary"},
        {.name = "help", .letter = 'h', .key = CLI_K_HELP, .type = CLI_FLAG,
         .help = "show the verb's usage and options"},
        {.name = "version", .key = CLI_K_VERSION, .type = CLI_FLAG,
         .help = "print kiln's version"},
        END,
};

static const struct cli_option registry[] = {
        {.name = "insecure-registry", .key = CLI_K_INSECURE, .type = CLI_STR, .arg = "HOST",
         .help = "plain http or unverified TLS for this registry only (repeatable)"},
        {.name = "ca-file", .key = CLI_K_CA_FILE, .type = CLI_STR, .arg = "FILE",
         .complete = CLI_COMPLETE_FILE, .help = "trust the CA certificates of this PEM file"},
        {.name = "authfile", .key = CLI_K_AUTHFILE, .type = CLI_STR, .arg = "FILE",
         .complete = CLI_COMPLETE_FILE,
         .help = "the credentials file (default $REGISTRY_AUTH_FILE, else Docker's)"},
        {.name = "retry-times", .key = CLI_K_RETRY_TIMES, .type = CLI_INT, .arg = "N", .min = 0,
         .max = 100, .help = "retries of a failed request (default 5)"},
        {.name = "chunk-size", .key = CLI_K_CHUNK_SIZE, .type = CLI_SIZE, .arg = "SIZE",
         .min = 1024, .max = 1LL << 40, .help = "upload blobs in chunks of SIZE (default: whole)"},
        {.name = "mirror", .key = CLI_K_MIRROR, .type = CLI_STR, .arg = "REGISTRY=HOST[/PREFIX]",
         .help = "pull REGISTRY's images from HOST (repeatable)"},
        END,
};

static const struct cli_group g_general = {"Global options", general};
static const struct cli_group g_registry = {"Registry options", registry};

const struct cli_group *const cli_global_groups[] = {&g_registry, &g_general, NULL};

/* ---- shared groups ---- */

static const struct cli_option platform[] = {
        {.name = "platform", .key = CLI_K_PLATFORM, .type = CLI_STR, .arg = "OS/ARCH[/VARIANT]",
         .help = "the image of this platform in an index (default: the host's)"},
        END,
};

static const struct cli_option compression[] = {
        {.name = "compression", .letter = 'c', .key = CLI_K_COMPRESSION, .type = CLI_CHOICE,
         .words = w_compression, .help = "how new layers are compressed (default gzip)"},
        {.name = "level", .key = CLI_K_LEVEL, .type = CLI_INT, .arg = "N", .min = 0, .max = 22,
         .help = "level: gzip 0 to 12 (default 2), zstd 1 to 22 (default 3)"},
        END,
};

static const struct cli_option transfer[] = {
        {.name = "jobs", .key = CLI_K_JOBS, .type = CLI_INT, .arg = "N", .min = 1, .max = 32,
         .help = "blobs (and layers) worked on at once (default 4)"},
        {.name = "progress", .key = CLI_K_PROGRESS, .type = CLI_CHOICE, .words = w_progress,
         .help = "progress on stderr (default auto: tty on a terminal, else plain)"},
        END,
};

static const struct cli_group g_platform = {"Platform", platform};
static const struct cli_group g_compression = {"Compression", compression};
static const struct cli_group g_transfer = {"Transfer", transfer};

/* kiln build, lock and verify: the recipe's variables, then what a build
 * does with the image */
static const struct cli_option recipe_vars[] = {
        {.name = "arch", .key = 'a', .type = CLI_STR, .arg = "ARCH", .words = w_arch,
         .help = "the recipe's arch variable (linnaeus: hopper, ampere, turing)"},
        {.name = "source", .key = 's', .type = CLI_STR, .arg = "SOURCE", .words = w_source,
         .help = "the recipe's source variable (linnaeus: github or local)"},
        {.name = "branch", .key = 'b', .type = CLI_STR, .arg = "BRANCH",
         .help = "the recipe's branch variable: the git branch, tag or commit"},
        {.name = "tag-suffix", .key = 't', .type = CLI_STR, .arg = "SUFFIX",
         .help = "the recipe's tag_suffix variable, appended to the tag"},
        {.name = "max-jobs", .key = 'M', .type = CLI_INT, .arg = "N", .min = 1, .max = 1024,
         .help = "the recipe's max_jobs variable: parallel compile jobs in build steps"},
        {.name = "set", .key = 'S', .type = CLI_STR, .arg = "NAME=VALUE",
         .help = "set any variable of the recipe (repeatable; the last one wins)"},
        END,
};

static const struct cli_option build_opts[] = {
        {.name = "push", .key = 'P', .type = CLI_FLAG,
         .help = "push the image to the recipe's tags"},
        {.name = "output", .key = 'o', .type = CLI_STR, .arg = "PLACE",
         .complete = CLI_COMPLETE_FILE, .help = "write the image here (default oci:kiln-out)"},
        {.name = "base-from", .key = 'D', .type = CLI_STR, .arg = "PLACE",
         .complete = CLI_COMPLETE_FILE, .help = "read the recipe's base from this place instead"},
        {.name = "cache", .key = 'c', .type = CLI_STR, .arg = "DIR", .complete = CLI_COMPLETE_DIR,
         .help = "the layer cache (default $XDG_CACHE_HOME/kiln, else ~/.cache/kiln)"},
        {.name = "cache-repo", .key = 'R', .type = CLI_STR, .arg = "HOST/REPO",
         .help = "read and publish cached layers in this registry repository"},
        {.name = "cache-to", .key = 'T', .type = CLI_STR, .arg = "HOST/REPO",
         .help = "the same as --cache-repo"},
        {.name = "cache-from", .key = 'f', .type = CLI_STR, .arg = "HOST/REPO",
         .help = "read cached layers from this registry repository, publish none"},
        {.name = "skip-if-built", .key = 'K', .type = CLI_FLAG,
         .help = "with --push: only tag an image whose inputs were built already"},
        {.name = "lock", .key = 'k', .type = CLI_STR, .arg = "FILE", .complete = CLI_COMPLETE_FILE,
         .help = "the lock file (default RECIPE.lock.json, used when present)"},
        {.name = "locked", .key = 'l', .type = CLI_FLAG,
         .help = "refuse an input that is missing from the lock or moved"},
        {.name = "sbom", .key = 'B', .type = CLI_FLAG,
         .help = "attach an SPDX SBOM of the image's wheels and .debs"},
        {.name = "json", .key = 'j', .type = CLI_FLAG,
         .help = "print the result as JSON (implies --quiet)"},
        END,
};

/* kiln build --dry-run | --stage DIR: the plan, offline, or each layer's
 * staging tree */
static const struct cli_option plan_opts[] = {
        {.name = "dry-run", .key = 'n', .type = CLI_FLAG,
         .help = "print the plan (base, layers, tags) without building"},
        {.name = "keys", .key = 'y', .type = CLI_FLAG,
         .help = "with --dry-run: each layer's cache key too"},
        {.name = "stage", .key = 'g', .type = CLI_STR, .arg = "DIR", .complete = CLI_COMPLETE_DIR,
         .help = "write each layer's staging tree under DIR instead of building"},
        {.name = "cache-dir", .key = 'd', .type = CLI_STR, .arg = "DIR",
         .complete = CLI_COMPLETE_DIR, .help = "the same as --cache"},
        END,
};

static const struct cli_group g_recipe_vars = {"Recipe variables", recipe_vars};
static const struct cli_group g_build = {"Build options", build_opts};
static const struct cli_group g_plan = {"Plan options", plan_opts};

/* ---- each verb's own options ---- */

static const struct cli_option none[] = {END};
static const struct cli_group g_none = {"Options", none};

static const struct cli_option inspect_opts[] = {
        {.name = "raw", .key = 'r', .type = CLI_FLAG,
         .help = "print the exact manifest bytes (with --config: the config's)"},
        {.name = "config", .key = 'c', .type = CLI_FLAG, .help = "print the exact config bytes"},
        {.name = "json", .key = 'j', .type = CLI_FLAG,
         .help = "print one JSON object: name, digest, manifest and config"},
        END,
};

static const struct cli_option copy_opts[] = {
        {.name = "referrers", .key = 'R', .type = CLI_FLAG,
         .help = "copy the image's referrers too (signatures, SBOMs), and theirs"},
        {.name = "artifact-type", .key = 'A', .type = CLI_STR, .arg = "TYPE",
         .help = "only the referrers of this artifact type (implies --referrers)"},
        {.name = "json", .key = 'j', .type = CLI_FLAG,
         .help = "print the result as one JSON object"},
        END,
};

static const struct cli_option json_only[] = {
        {.name = "json", .key = 'j', .type = CLI_FLAG, .help = "print the result as JSON"},
        END,
};

static const struct cli_option diff_opts[] = {
        {.name = "all", .key = 'a', .type = CLI_FLAG,
         .help = "every level of difference, not only the first that explains it"},
        {.name = "json", .key = 'j', .type = CLI_FLAG, .help = "print the findings as JSON"},
        END,
};

static const struct cli_option login_opts[] = {
        {.name = "username", .letter = 'u', .key = 'u', .type = CLI_STR, .arg = "USER",
         .help = "the user name (nvcr.io: $oauthtoken)"},
        {.name = "password-stdin", .key = 'P', .type = CLI_FLAG,
         .help = "read the password from standard input (required)"},
        END,
};

static const struct cli_option mirror_opts[] = {
        {.name = "to", .key = 't', .type = CLI_STR, .arg = "HOST[/PREFIX]",
         .help = "the registry (and path prefix) to copy to (required)"},
        {.name = "json", .key = 'j', .type = CLI_FLAG,
         .help = "print one JSON array, an object per image"},
        END,
};

static const struct cli_option fsck_opts[] = {
        {.name = "deep", .key = 'd', .type = CLI_FLAG,
         .help = "decompress every layer and check it against its diffID"},
        END,
};

static const struct cli_option append_opts[] = {
        {.name = "layer", .letter = 'l', .key = 'l', .type = CLI_STR, .arg = "SRC[:DEST[:MODE]]",
         .complete = CLI_COMPLETE_FILE,
         .help = "a layer of a directory, a file or a tar (repeatable)"},
        {.name = "file", .key = 'f', .type = CLI_STR, .arg = "SRC:DEST[:MODE]",
         .complete = CLI_COMPLETE_FILE, .help = "add a file to the layer before (repeatable)"},
        {.name = "tag", .letter = 't', .key = 't', .type = CLI_STR, .arg = "DST",
         .complete = CLI_COMPLETE_FILE, .help = "where the image goes (required)"},
        {.name = "threads", .key = 'T', .type = CLI_INT, .arg = "N", .min = 0, .max = 1024,
         .help = "compression threads (default 0: one per CPU)"},
        {.name = "exclude", .letter = 'x', .key = 'x', .type = CLI_STR, .arg = "PATTERN",
         .help = "leave out what matches (.dockerignore syntax; repeatable)"},
        {.name = "ignore-file", .key = 'i', .type = CLI_STR, .arg = "FILE",
         .complete = CLI_COMPLETE_FILE, .help = "leave out what this .dockerignore file names"},
        {.name = "cache", .key = 'C', .type = CLI_STR, .arg = "DIR", .complete = CLI_COMPLETE_DIR,
         .help = "the layer cache (default $XDG_CACHE_HOME/kiln, else ~/.cache/kiln)"},
        {.name = "no-cache", .key = 'N', .type = CLI_FLAG,
         .help = "build every layer, even when cached"},
        {.name = "keep-owners", .key = 'o', .type = CLI_FLAG,
         .help = "keep the uid/gid of tar entries and directory sources"},
        {.name = "keep-caps", .key = 'k', .type = CLI_FLAG,
         .help = "keep file capabilities (security.capability)"},
        {.name = "keep-modes", .key = 'm', .type = CLI_FLAG,
         .help = "keep the host's permission bits (as Docker's COPY)"},
        END,
};

static const struct cli_option config_opts[] = {
        {.name = "env", .letter = 'e', .key = 'e', .type = CLI_STR, .arg = "NAME=VALUE",
         .help = "set an environment variable (repeatable)"},
        {.name = "entrypoint", .key = 'E', .type = CLI_STR, .arg = "CMD",
         .help = "the entrypoint: a JSON array or one argument; '' clears"},
        {.name = "cmd", .key = 'c', .type = CLI_STR, .arg = "CMD",
         .help = "the command: a JSON array or one argument; '' clears"},
        {.name = "workdir", .key = 'w', .type = CLI_STR, .arg = "DIR",
         .help = "the working directory"},
        {.name = "user", .key = 'u', .type = CLI_STR, .arg = "USER", .help = "the user"},
        {.name = "label", .letter = 'l', .key = 'l', .type = CLI_STR, .arg = "NAME=VALUE",
         .help = "set a label (repeatable)"},
        {.name = "tag", .letter = 't', .key = 't', .type = CLI_STR, .arg = "DST",
         .complete = CLI_COMPLETE_FILE, .help = "where the image goes (required)"},
        END,
};

static const struct cli_option flatten_opts[] = {
        {.name = "tag", .letter = 't', .key = 't', .type = CLI_STR, .arg = "DST",
         .complete = CLI_COMPLETE_FILE, .help = "where the image goes (required)"},
        END,
};

static const struct cli_option unpack_opts[] = {
        {.name = "max-size", .key = 'm', .type = CLI_SIZE, .arg = "SIZE", .min = 0,
         .max = 1LL << 50, .help = "cap on each layer's decompressed size (default 64G)"},
        {.name = "max-total", .key = 't', .type = CLI_SIZE, .arg = "SIZE", .min = 0,
         .max = 1LL << 50, .help = "cap on the size of the files of all layers (default 128G)"},
        {.name = "rootless", .key = 'r', .type = CLI_FLAG,
         .help = "skip devices and root-only xattrs, as a user must, even as root"},
        {.name = "walk", .key = 'w', .type = CLI_FLAG,
         .help = "resolve paths component by component even where openat2 exists"},
        END,
};

static const struct cli_option run_opts[] = {
        {.name = "network", .key = 'n', .type = CLI_FLAG,
         .help = "share the host's network (default: loopback only)"},
        {.name = "bind", .key = 'b', .type = CLI_STR, .arg = "SRC:DST[:ro]",
         .complete = CLI_COMPLETE_FILE, .help = "bind a host path into the sandbox (repeatable)"},
        {.name = "env", .key = 'e', .type = CLI_STR, .arg = "NAME=VALUE",
         .help = "set an environment variable (repeatable)"},
        {.name = "workdir", .key = 'w', .type = CLI_STR, .arg = "DIR",
         .help = "the working directory (default: the image's)"},
        {.name = "user", .key = 'u', .type = CLI_STR, .arg = "USER",
         .help = "root or UID[:GID] (other than 0 with /etc/subuid only)"},
        {.name = "gpu", .key = 'g', .type = CLI_FLAG,
         .help = "bind the NVIDIA devices, driver libraries and tools"},
        {.name = "cache", .key = 'c', .type = CLI_STR, .arg = "DIR", .complete = CLI_COMPLETE_DIR,
         .help = "where layers are unpacked (default $XDG_CACHE_HOME/kiln)"},
        END,
};

static const struct cli_option lock_opts[] = {
        {.name = "pylock", .key = 'Y', .type = CLI_STR, .arg = "FILE",
         .complete = CLI_COMPLETE_FILE, .help = "write the locked wheels as a PEP 751 pylock.toml too"},
        END,
};

static const struct cli_option verify_opts[] = {
        {.name = "against", .key = 'A', .type = CLI_STR, .arg = "REF",
         .help = "the image to compare the rebuild with (required)"},
        {.name = "from-annotations", .key = 'F', .type = CLI_FLAG,
         .help = "take the variables from REF's dev.kiln.recipe.variables"},
        END,
};

static const struct cli_option validate_opts[] = {
        {.name = "recipe", .key = 'R', .type = CLI_STR, .arg = "FILE|NAME",
         .complete = CLI_COMPLETE_FILE,
         .help = "the recipe whose checks apply (default: the shipped linnaeus)"},
        {.name = "arch", .key = 'a', .type = CLI_STR, .arg = "ARCH", .words = w_arch,
         .help = "the profile (default: the one the image records)"},
        {.name = "set", .key = 'S', .type = CLI_STR, .arg = "NAME=VALUE",
         .help = "set a variable of the recipe (repeatable)"},
        {.name = "static", .key = 'T', .type = CLI_FLAG,
         .help = "check the image's files only; do not run it"},
        {.name = "gpu", .key = 'g', .type = CLI_FLAG,
         .help = "run with the NVIDIA devices; add the GPU checks"},
        {.name = "smoke", .key = 'k', .type = CLI_STR, .arg = "CMD",
         .help = "also run CMD (sh -c) in the image; it must exit 0"},
        {.name = "run", .key = 'r', .type = CLI_STR, .arg = "CMD",
         .help = "the older name of --smoke"},
        {.name = "python", .key = 'y', .type = CLI_STR, .arg = "PATH",
         .help = "the interpreter in the image (default: the recipe's)"},
        {.name = "source-path", .key = 's', .type = CLI_STR, .arg = "PATH",
         .help = "where the application source is (default: the recipe's)"},
        {.name = "cache", .key = 'c', .type = CLI_STR, .arg = "DIR", .complete = CLI_COMPLETE_DIR,
         .help = "where layers are unpacked (default $XDG_CACHE_HOME/kiln)"},
        END,
};

static const struct cli_option cache_opts[] = {
        {.name = "cache-repo", .key = 'R', .type = CLI_STR, .arg = "HOST/REPO",
         .help = "the registry repository of the shared cache"},
        {.name = "keep", .key = 'k', .type = CLI_INT, .arg = "N", .min = 0, .max = 1000000000,
         .help = "prune: keep the N newest entries"},
        {.name = "older-than", .key = 'o', .type = CLI_AGE, .arg = "AGE",
         .help = "prune: remove entries older than AGE (30d, 12h, 45m, 90s)"},
        {.name = "json", .key = 'j', .type = CLI_FLAG,
         .help = "prune: print only the count, not each entry removed"},
        {.name = "local", .key = 'l', .type = CLI_FLAG,
         .help = "prune the local cache's unpacked layers and run directories"},
        {.name = "cache", .key = 'c', .type = CLI_STR, .arg = "DIR", .complete = CLI_COMPLETE_DIR,
         .help = "with --local: the local cache (default $XDG_CACHE_HOME/kiln)"},
        END,
};

#define OWN(name, opts) static const struct cli_group name = {"Options", opts}
OWN(g_inspect, inspect_opts);
OWN(g_copy, copy_opts);
OWN(g_json, json_only);
OWN(g_diff, diff_opts);
OWN(g_login, login_opts);
OWN(g_mirror, mirror_opts);
OWN(g_fsck, fsck_opts);
OWN(g_append, append_opts);
OWN(g_config, config_opts);
OWN(g_flatten, flatten_opts);
OWN(g_unpack, unpack_opts);
OWN(g_run, run_opts);
OWN(g_lock, lock_opts);
OWN(g_verify, verify_opts);
OWN(g_validate, validate_opts);
OWN(g_cache, cache_opts);

const struct cli_verb cli_verbs[] = {
        {"version", cmd_version, "print the version", "", {&g_none}, NULL},
        {"help", cmd_help, "show kiln's verbs, or a verb's usage and options", "[VERB]",
         {&g_none}, NULL},
        {"completion", cmd_completion, "print the bash completion script", "bash", {&g_none},
         w_shells},
        {"inspect", cmd_inspect, "show an image's manifest, config and layers", "PLACE",
         {&g_inspect, &g_platform}, NULL},
        {"digest", cmd_digest, "print the digest of an image's manifest", "PLACE", {&g_none},
         NULL},
        {"copy", cmd_copy, "copy an image between places, digests preserved", "SRC DST",
         {&g_copy, &g_platform, &g_transfer}, NULL},
        {"ls", cmd_ls, "list the tags of a layout or repository", "PLACE", {&g_json}, NULL},
        {"diff", cmd_diff, "show where two images differ (exit 0 identical, 1 different, 2 error)",
         "A B", {&g_diff}, NULL},
        /* registry */
        {"login", cmd_login, "check and save credentials for a registry",
         "HOST -u USER --password-stdin", {&g_login}, NULL},
        {"logout", cmd_logout, "remove saved credentials for a registry", "HOST", {&g_none},
         NULL},
        {"tag", cmd_tag, "give an image in a registry another tag", "REF NEWTAG", {&g_json}, NULL},
        {"delete", cmd_delete, "delete a manifest from a registry", "REF", {&g_json}, NULL},
        {"mirror", cmd_mirror, "copy every image of a list to another registry",
         "LIST --to HOST[/PREFIX]", {&g_mirror, &g_transfer}, NULL},
        {"fsck", cmd_fsck, "check every blob of an OCI layout against its digest", "oci:DIR",
         {&g_fsck}, NULL},
        /* layers */
        {"append", cmd_append, "add layers built from host files to an image",
         "BASE|scratch --layer SRC[:DEST[:MODE]]... -t DST",
         {&g_append, &g_compression, &g_platform}, NULL},
        {"config", cmd_config, "change an image's config: env, entrypoint, cmd, workdir, labels",
         "PLACE -t DST", {&g_config, &g_platform}, NULL},
        {"flatten", cmd_flatten, "squash an image's layers into one", "PLACE -t DST",
         {&g_flatten, &g_compression, &g_platform}, NULL},
        {"unpack", cmd_unpack, "apply an image's layers to a directory, safely", "PLACE DIR",
         {&g_unpack, &g_platform}, NULL},
        /* sandbox */
        {"run", cmd_run, "run a command in an image, rootless (exit status: the command's)",
         "PLACE [-- CMD...]", {&g_run}, NULL},
        /* recipes */
        {"build", cmd_build, "build an image from a recipe, write it to a layout or push it",
         "RECIPE", {&g_recipe_vars, &g_build, &g_compression, &g_platform, &g_transfer, &g_plan},
         NULL},
        {"cache", cmd_cache, "list, explain and prune the shared layer cache in a registry",
         "ls|show TAG|prune --cache-repo HOST/REPO | prune --local", {&g_cache}, w_cache},
        {"lock", cmd_lock,
         "pin a recipe's floating inputs (base digest, git commits, layer keys) in RECIPE.lock.json",
         "RECIPE", {&g_lock, &g_recipe_vars, &g_build, &g_compression, &g_platform, &g_transfer},
         NULL},
        {"verify", cmd_verify,
         "rebuild a recipe and compare with a pushed image (exit 0 identical, 1 different)",
         "RECIPE --against REF",
         {&g_verify, &g_recipe_vars, &g_build, &g_compression, &g_platform, &g_transfer}, NULL},
        {"validate", cmd_validate,
         "check an image against its recipe's expectations, run inside it",
         "PLACE [--recipe FILE|NAME] [--arch A] [--static | [--gpu] [--smoke CMD]]",
         {&g_validate, &g_platform}, NULL},
        {NULL, NULL, NULL, NULL, {NULL}, NULL},
};
/* clang-format on */
