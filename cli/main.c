/* kiln: a daemonless OCI image assembler.  main() dispatches to one
 * cmd_<verb>() per file; see docs/kiln.1. */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "json.h"
#include "progress.h"
#include "util.h"
#include "cmd_layers.h"
#include "cmd_recipes.h"
#include "commands.h"
#include "cmd_registry.h"

const struct cli_verb cli_verbs[] = {
        {"version", cmd_version, "print the version", "kiln version"},
        {"help", cmd_help, "show help for kiln or a verb", "kiln help [VERB]"},
        {"inspect", cmd_inspect, "show an image's manifest, config and layers",
         "kiln inspect PLACE [--raw] [--config] [--json] [--platform OS/ARCH[/VARIANT]]"},
        {"digest", cmd_digest, "print the digest of an image's manifest", "kiln digest PLACE"},
        {"copy", cmd_copy, "copy an image between places, digests preserved",
         "kiln copy SRC DST [--platform OS/ARCH[/VARIANT]] [--jobs N] [--referrers] [--artifact-type T] "
         "[--progress auto|plain|tty|none] [--quiet] [--json]"},
        {"ls", cmd_ls, "list the tags of a layout or repository", "kiln ls PLACE [--json]"},
        {"diff", cmd_diff, "show where two images differ (exit 0 identical, 1 different, 2 error)",
         "kiln diff A B [--all] [--json]"},
        /* registry */
        {"login", cmd_login, "check and save credentials for a registry",
         "kiln login HOST -u USER --password-stdin [--authfile FILE]"},
        {"logout", cmd_logout, "remove saved credentials for a registry",
         "kiln logout HOST [--authfile FILE]"},
        {"tag", cmd_tag, "give an image in a registry another tag", "kiln tag REF NEWTAG [--json]"},
        {"delete", cmd_delete, "delete a manifest from a registry", "kiln delete REF [--json]"},
        {"mirror", cmd_mirror, "copy every image of a list to another registry",
         "kiln mirror LIST --to HOST[/PREFIX] [--jobs N] [--progress MODE] [--quiet] [--json]"},
        {"fsck", cmd_fsck, "check every blob of an OCI layout against its digest",
         "kiln fsck oci:DIR [--deep] [--quiet]"},
        {"append", cmd_append, "add layers built from host files to an image",
         "kiln append BASE|scratch --layer SRC[:DEST[:MODE]]... [--file SRC:DEST[:MODE]]... -t DST"
         " [--compression gzip|zstd|none]"
         " [--level N] [--exclude PAT]... [--ignore-file FILE] [--cache DIR] [--no-cache]"},
        {"config", cmd_config, "change an image's config: env, entrypoint, cmd, workdir, labels",
         "kiln config PLACE [--env K=V]... [--entrypoint E] [--cmd C] [--workdir D] [--user U]"
         " [--label K=V]... -t DST"},
        {"flatten", cmd_flatten, "squash an image's layers into one",
         "kiln flatten PLACE -t DST [--compression gzip|zstd|none] [--level N]"},
        {"unpack", cmd_unpack, "apply an image's layers to a directory, safely",
         "kiln unpack PLACE DIR [--platform OS/ARCH] [--max-size N[KMG]] [--max-total N[KMG]] "
         "[--rootless]"},
        {"run", cmd_run, "run a command in an image, rootless (exit status: the command's)",
         "kiln run PLACE [--network] [--bind SRC:DST[:ro]]... [--env K=V]... [--workdir D]"
         " [--user U] [--gpu] [--cache DIR] [-- CMD...]"},
        {"build", cmd_build, "build an image from a recipe, write it to a layout or push it",
         "kiln build RECIPE [--arch A] [--source github|local] [--branch B] [--tag-suffix S] [--max-jobs N]"
         " [--set K=V]... [--push [--skip-if-built] | --output PLACE] [--base-from PLACE] [--cache DIR]"
         " [--cache-repo|--cache-to|--cache-from HOST/REPO]"
         " [--compression gzip|zstd|none]"
         " [--level N] [--platform P] [--jobs N] [--sbom] [--progress MODE] [--quiet] [--json]"
         " [--lock FILE] [--locked] [--dry-run | --stage DIR]"},
        {"cache", cmd_cache, "list, explain and prune the shared layer cache in a registry",
         "kiln cache ls|show TAG|prune --cache-repo HOST/REPO [--keep N] [--older-than AGE]"
         " | kiln cache prune --local [--cache DIR]"},
        {"lock", cmd_lock, "pin a recipe's floating inputs (base digest, git commits, layer keys) in RECIPE.lock.json",
         "kiln lock RECIPE [--pylock FILE] [build options]"},
        {"verify", cmd_verify, "rebuild a recipe and compare with a pushed image (exit 0 identical, 1 different)",
         "kiln verify RECIPE --against REF [--from-annotations] [build options]"},
        {"validate", cmd_validate, "check a linnaeus image statically: CUDA, torch, FlashAttention, source",
         "kiln validate PLACE --arch hopper|ampere|turing|pre-ampere [--python PATH] [--source-path PATH] [--run CMD]"},
        {NULL, NULL, NULL, NULL},
};

const struct cli_verb *cli_find_verb(const char *name)
{
        for (const struct cli_verb *v = cli_verbs; v->name; v++)
                if (!strcmp(v->name, name))
                        return v;
        return NULL;
}

int cli_exit_code(enum kiln_errc code)
{
        switch (code) {
        case KILN_OK: return EXIT_OK;
        case KILN_E_USAGE: return EXIT_USAGE;
        case KILN_E_INVALID: return EXIT_INVALID;
        case KILN_E_DIGEST: return EXIT_INTEGRITY;
        case KILN_E_NOT_FOUND: return EXIT_NOT_FOUND;
        case KILN_E_NETWORK: return EXIT_NETWORK;
        case KILN_E_AUTH: return EXIT_AUTH;
        case KILN_E_LIMIT: return EXIT_LIMIT;
        case KILN_E_UNSUPPORTED: return EXIT_UNSUPPORTED;
        case KILN_E_IO: return EXIT_IO;
        case KILN_E_NOMEM:
        case KILN_E_INTERNAL: return EXIT_INTERNAL;
        case KILN_E_GENERIC: return EXIT_FAIL;
        case KILN_E_STEP: return EXIT_STEP;
        }
        return EXIT_FAIL;
}

void cli_put_text(const char *s, FILE *f)
{
        char *e = kiln_text_escape_dup(s ? s : "");

        fputs(e ? e : "(out of memory)", f);
        free(e);
}

int cli_fail(const struct kiln_error *err)
{
        fputs("kiln: error: ", stderr);
        cli_put_text(err->msg[0] ? err->msg : kiln_errc_name(err->code), stderr);
        fputc('\n', stderr);
        return cli_exit_code(err->code == KILN_OK ? KILN_E_GENERIC : err->code);
}

int cli_usage(const char *verb, const char *fmt, ...)
{
        const struct cli_verb *v = cli_find_verb(verb);
        va_list ap;

        fprintf(stderr, "kiln %s: ", verb);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        if (v)
                fprintf(stderr, "usage: %s\n", v->usage);
        return EXIT_USAGE;
}

void cli_warn(const char *fmt, ...)
{
        char msg[2048], line[2048];
        va_list ap;
        int n = snprintf(line, sizeof(line), "kiln: warning: ");

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        kiln_text_escape(msg, strlen(msg), line + n, sizeof(line) - (size_t)n, SIZE_MAX, 0);
        cli_progress_message(line); /* above any blobs shown */
}

/* Common invocations, printed by kiln help VERB. */
static const struct {
        const char *verb;
        const char *text;
} examples[] = {
        {"build",
         "  # the linnaeus images (--arch hopper|ampere|turing; pre-ampere is the seed's turing)\n"
         "  kiln build recipes/linnaeus/linnaeus.json --arch hopper --branch feat/x --push\n"
         "  # the checkout you are in, written to a layout\n"
         "  kiln build recipes/linnaeus/linnaeus.json --arch ampere --source local --output oci:out\n"
         "  # air-gapped: the base carried in as an archive, no registry needed\n"
         "  kiln build recipes/linnaeus/linnaeus.json --arch ampere"
         " --base-from oci-archive:cuda.tar --output oci-archive:linnaeus.tar\n"
         "  # CI: layers shared by every runner through a cache repository\n"
         "  kiln build recipes/linnaeus/linnaeus.json --arch hopper --push"
         " --cache-repo registry.example/linnaeus/cache\n"
         "  # the plan only, offline\n"
         "  kiln build recipes/linnaeus/linnaeus.json --arch ampere --dry-run\n"
         "\n"
         "The base may be any place (a registry reference, oci:DIR[:TAG],\n"
         "oci-archive:FILE[:TAG], docker-archive:FILE) or scratch; --base-from reads\n"
         "the recipe's base from another place and builds the same image.  A step's output\n"
         "goes to a log in the cache; a failed step exits 11.  On a base with dpkg, a debs\n"
         "layer's maintainer scripts run in the sandbox (layer NAME/configure) unless the\n"
         "recipe says \"configure\": false."},
};

int cli_help_verb(const char *verb)
{
        const struct cli_verb *v = cli_find_verb(verb);

        if (!v)
                return cli_usage("help", "unknown verb '%s'", verb);
        printf("%s\n\n  %s\n\n", v->usage, v->summary);
        for (size_t i = 0; i < sizeof(examples) / sizeof(examples[0]); i++)
                if (!strcmp(examples[i].verb, v->name))
                        printf("Examples:\n%s\n\n", examples[i].text);
        printf("See kiln(1) for every option.\n");
        return EXIT_OK;
}

void cli_format_size(long long bytes, char *buf, size_t len)
{
        static const char *const units[] = {"B", "kB", "MB", "GB", "TB"};
        double v = (double)bytes;
        size_t u = 0;

        while (v >= 1000 && u < 4) {
                v /= 1000;
                u++;
        }
        if (u == 0)
                snprintf(buf, len, "%lld B", bytes);
        else
                snprintf(buf, len, "%.1f %s", v, units[u]);
}

static void print_overview(FILE *f)
{
        fprintf(f, "usage: kiln VERB [OPTIONS] [ARGS]\n\n"
                   "kiln assembles, copies and checks OCI images without a daemon.\n\n"
                   "Verbs:\n");
        for (const struct cli_verb *v = cli_verbs; v->name; v++)
                fprintf(f, "  %-10s %s\n", v->name, v->summary);
        fprintf(f, "\nPlaces: oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:REF],\n"
                   "        [docker://]HOST/REPO[:TAG][@DIGEST]\n"
                   "Run 'kiln help VERB' for a verb's options; see kiln(1).\n");
}

int cmd_help(int argc, char **argv)
{
        if (argc > 2)
                return cli_usage("help", "too many arguments");
        if (argc == 2)
                return cli_help_verb(argv[1]);
        print_overview(stdout);
        return EXIT_OK;
}

int cmd_version(int argc, char **argv)
{
        (void)argv;
        if (argc > 1)
                return cli_usage("version", "unexpected argument");
        printf("kiln %s\n", KILN_VERSION);
        return EXIT_OK;
}

int main(int argc, char **argv)
{
        const struct cli_verb *v;
        struct kiln_error err = KILN_ERROR_INIT;
        size_t limit;

        if (argc < 2) {
                print_overview(stderr);
                return EXIT_USAGE;
        }
        if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
                return cmd_help(1, argv);
        if (!strcmp(argv[1], "--version"))
                return cmd_version(1, argv);
        v = cli_find_verb(argv[1]);
        if (!v) {
                fprintf(stderr, "kiln: unknown verb '%s'; run 'kiln help'\n", argv[1]);
                return EXIT_USAGE;
        }
        /* a bad limit in the environment is refused, not silently replaced */
        if (oci_manifest_limit_get(&limit, &err) < 0)
                return cli_fail(&err);
        return v->fn(argc - 1, argv + 1);
}
