/* cli/options.h: kiln's options, in one table, and what is made from it.
 *
 * Each verb of cli_verbs[] (cli/verbs.c) names its groups of options: its
 * own, then shared ones (platform, compression, transfer, recipe variables,
 * build).  The global groups, the registry options and -v, -q, -h, go with
 * every verb and may come before the verb or after it, as git and podman
 * take theirs.  From this one table come the parser (cli_parse), `kiln help
 * VERB` (cli_help_print), the bash completion (cli_completion_bash), and the
 * unit test that checks docs/kiln.1 names every option.
 *
 *     struct cli_args a;
 *     cli_args_init(&a);
 *     if (cli_parse(&a, argc, argv, &err) < 0)      usage error, nothing run
 *             ...
 *     a.verb->fn(&a);
 *     cli_args_release(&a);
 *
 * Values are checked while parsing: a number against its range, a size
 * (N, Nk, NM, NG) against its bounds, a choice against its words, a
 * platform by oci_platform_parse, so a verb never sees a bad one.  A verb
 * reads its options in command-line order (cli_foreach_value: each value
 * with its option's key, its text and its number) or the last one given
 * (cli_arg, cli_num, cli_flag); the shared groups are applied to a.reg (the
 * registry options), a.platform, a.verbose and a.quiet. */
#ifndef KILN_CLI_OPTIONS_H
#define KILN_CLI_OPTIONS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>

#include "error.h"
#include "hosts.h"
#include "model.h"
#include "progress.h"
#include "registry.h"

struct layer_writer_opts;

enum cli_type {
        CLI_FLAG,   /* no argument */
        CLI_STR,    /* any text */
        CLI_INT,    /* a decimal number from min to max */
        CLI_SIZE,   /* bytes from min to max: N, Nk, NM or NG (also NK, NKiB, NkB...) */
        CLI_AGE,    /* seconds: N, Ns, Nm, Nh or Nd */
        CLI_CHOICE, /* one of words */
};

/* What bash offers for an option's argument (words first, when given). */
enum cli_complete {
        CLI_COMPLETE_NONE,
        CLI_COMPLETE_FILE,
        CLI_COMPLETE_DIR,
};

struct cli_option {
        const char *name; /* the long name, without "--" */
        char letter;      /* the short name, or 0 */
        int key;          /* what the verb switches on: a letter, or enum cli_key */
        enum cli_type type;
        const char *arg;  /* the argument's name in help; NULL for a flag */
        const char *help; /* one line */
        long long min, max;
        /* CLI_CHOICE: the only values taken; otherwise what bash offers */
        const char *const *words;
        enum cli_complete complete;
};

/* The keys of the shared options; a verb's own options are keyed by a
 * letter, unique within the verb. */
enum cli_key {
        CLI_K_VERBOSE = 0x100,
        CLI_K_QUIET,
        CLI_K_HELP,
        CLI_K_VERSION,
        CLI_K_INSECURE,
        CLI_K_CA_FILE,
        CLI_K_AUTHFILE,
        CLI_K_RETRY_TIMES,
        CLI_K_CHUNK_SIZE,
        CLI_K_MIRROR,
        CLI_K_PLATFORM,
        CLI_K_COMPRESSION,
        CLI_K_LEVEL,
        CLI_K_JOBS,
        CLI_K_PROGRESS,
};

struct cli_group {
        const char *title;             /* "Registry options" */
        const struct cli_option *opts; /* ends with an entry without a name */
};

struct cli_args;

#define CLI_MAX_GROUPS 6

struct cli_verb {
        const char *name;
        int (*fn)(struct cli_args *a);
        const char *summary;  /* one line */
        const char *synopsis; /* after "kiln VERB": operands and required options */
        /* the verb's own group first, then shared ones; NULL-terminated.
         * The global groups (cli_global_groups) come with every verb. */
        const struct cli_group *groups[CLI_MAX_GROUPS];
        const char *const *words; /* what bash offers for the first operand */
};

extern const struct cli_verb cli_verbs[];
extern const struct cli_group *const cli_global_groups[];
const struct cli_verb *cli_find_verb(const char *name);

struct cli_value {
        const struct cli_option *opt;
        char *arg;     /* NULL for a flag; points into argv */
        long long num; /* CLI_INT, CLI_SIZE, CLI_AGE */
};

struct cli_args {
        const struct cli_verb *verb; /* NULL: none given (kiln alone, kiln --help) */
        struct cli_value *values;    /* every option, in command-line order */
        size_t n_values;
        char **argv; /* the operands, in order */
        int argc;
        bool help;                    /* -h/--help: the verb's help (or the overview) instead */
        bool verbose;                 /* -v/--verbose, or KILN_VERBOSE set */
        bool quiet;                   /* -q/--quiet */
        struct oci_platform platform; /* --platform, when has_platform */
        bool has_platform;
        /* --insecure-registry, --ca-file, ..., the environment's knobs and
         * the record of known blobs; conf is set by cli_reg_conf */
        struct reg_options reg;
        /* private */
        char *platform_buf;
        char manifest_cache_dir[4096];
        pthread_mutex_t conf_lock;
        bool conf_tried;
        int conf_rc;
        struct reg_conf conf;
        struct kiln_error conf_err;
};

/* Sets the defaults, from the environment too (KILN_VERBOSE,
 * KILN_RETRY_BASE_MS, KILN_LOW_SPEED_TIME, KILN_REQUEST_DEADLINE,
 * XDG_CACHE_HOME/HOME for Docker Hub's manifests). */
void cli_args_init(struct cli_args *a);
void cli_args_release(struct cli_args *a);

/* Parses argv (argv[0] is the program): global options, the verb, then the
 * verb's options, global ones and operands in any order; "--" ends the
 * options.  -1 with err set (KILN_E_USAGE for a bad command line, the
 * platform parser's code for a bad --platform); a->verb is set as soon as
 * it is known, so the caller can print its usage line. */
int cli_parse(struct cli_args *a, int argc, char **argv, struct kiln_error *err);

/* Every value given, in command-line order. */
#define cli_foreach_value(a, v)                                                                    \
        for (struct cli_value *v = (a)->values; v < (a)->values + (a)->n_values; v++)

/* The last value given for key: its text (NULL: not given), its number
 * (dflt: not given), whether it was given at all. */
const char *cli_arg(const struct cli_args *a, int key);
long long cli_num(const struct cli_args *a, int key, long long dflt);
bool cli_flag(const struct cli_args *a, int key);

/* The option of verb v (global groups included) with this long name, or
 * with this letter when name is NULL. */
const struct cli_option *cli_verb_option(const struct cli_verb *v, const char *name, char letter);

/* Whether o is of a global group (cli_global_groups). */
bool cli_option_is_global(const struct cli_option *o);

/* --progress, or none with --quiet. */
enum cli_progress_mode cli_progress_opt(const struct cli_args *a);

/* --compression and --level into wo, where given. */
void cli_writer_opts(const struct cli_args *a, struct layer_writer_opts *wo);

/* Reads containers-registries.conf (registry/hosts.h) into a->reg.conf on
 * first use, once for every thread; -1 with err set when a file is
 * malformed. */
int cli_reg_conf(struct cli_args *a, struct kiln_error *err);

/* kiln help VERB (and kiln VERB --help): the usage line, the summary, then
 * every option of the verb, each with its argument and one line. */
void cli_help_print(const struct cli_verb *v, FILE *f);
/* kiln help: the verbs. */
void cli_overview_print(FILE *f);
/* "usage: kiln VERB [OPTIONS] SYNOPSIS" */
void cli_usage_line(const struct cli_verb *v, FILE *f);
/* The bash completion script: verbs, each verb's options, the words of
 * options and operands that have them, files where an argument is a file. */
void cli_completion_bash(FILE *f);

#endif
