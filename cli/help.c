/* What is made from the option table besides the parser: kiln help, kiln
 * help VERB (and VERB --help), kiln completion bash. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "options.h"

/* The left column of an option's line is cut here; a longer one puts the
 * description on the next line. */
#define HELP_COLUMN 34

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
     "recipe says \"configure\": false.  With --dry-run or --stage,\n"
     "--mirror takes URL-PREFIX=DIR: http(s) inputs under the prefix are read from DIR."},
};

/* "  -c, --compression gzip|zstd|none" */
static void option_left(const struct cli_option *o, char *buf, size_t len)
{
        int n;

        if (o->letter)
                n = snprintf(buf, len, "  -%c, --%s", o->letter, o->name);
        else
                n = snprintf(buf, len, "      --%s", o->name);
        if (n < 0 || (size_t)n >= len)
                return;
        if (o->type == CLI_CHOICE) {
                for (size_t i = 0; o->words[i] && (size_t)n < len; i++) {
                        int k =
                            snprintf(buf + n, len - (size_t)n, "%c%s", i ? '|' : ' ', o->words[i]);
                        if (k < 0)
                                return;
                        n += k;
                }
        } else if (o->arg) {
                snprintf(buf + n, len - (size_t)n, " %s", o->arg);
        }
}

static void print_group(const struct cli_group *g, FILE *f)
{
        char left[256];

        if (!g->opts[0].name)
                return;
        fprintf(f, "\n%s:\n", g->title);
        for (const struct cli_option *o = g->opts; o->name; o++) {
                option_left(o, left, sizeof(left));
                if (strlen(left) + 2 > HELP_COLUMN)
                        fprintf(f, "%s\n%*s%s\n", left, HELP_COLUMN, "", o->help);
                else
                        fprintf(f, "%-*s%s\n", HELP_COLUMN, left, o->help);
        }
}

void cli_usage_line(const struct cli_verb *v, FILE *f)
{
        fprintf(f, "usage: kiln %s [OPTIONS]%s%s\n", v->name, v->synopsis[0] ? " " : "",
                v->synopsis);
}

void cli_help_print(const struct cli_verb *v, FILE *f)
{
        cli_usage_line(v, f);
        fprintf(f, "\n  %s\n", v->summary);
        for (size_t i = 0; i < CLI_MAX_GROUPS && v->groups[i]; i++)
                print_group(v->groups[i], f);
        for (size_t i = 0; cli_global_groups[i]; i++)
                print_group(cli_global_groups[i], f);
        for (size_t i = 0; i < sizeof(examples) / sizeof(examples[0]); i++)
                if (!strcmp(examples[i].verb, v->name))
                        fprintf(f, "\nExamples:\n%s\n", examples[i].text);
        fprintf(f, "\nGlobal and registry options may also come before the verb.  See kiln(1).\n");
}

void cli_overview_print(FILE *f)
{
        fprintf(f, "usage: kiln [GLOBAL OPTIONS] VERB [OPTIONS] [ARGS]\n\n"
                   "kiln assembles, copies and checks OCI images without a daemon.\n\n"
                   "Verbs:\n");
        for (const struct cli_verb *v = cli_verbs; v->name; v++)
                fprintf(f, "  %-10s %s\n", v->name, v->summary);
        for (size_t i = 0; cli_global_groups[i]; i++)
                print_group(cli_global_groups[i], f);
        fprintf(f, "\nPlaces: oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:REF],\n"
                   "        [docker://]HOST/REPO[:TAG][@DIGEST]\n"
                   "Run 'kiln help VERB' for a verb's options; see kiln(1).\n");
}

int cmd_help(struct cli_args *a)
{
        const struct cli_verb *v;

        if (a->argc > 1)
                return cli_usage("help", "too many arguments");
        if (a->argc == 0) {
                cli_overview_print(stdout);
                return EXIT_OK;
        }
        v = cli_find_verb(a->argv[0]);
        if (!v)
                return cli_usage("help", "unknown verb '%s'", a->argv[0]);
        cli_help_print(v, stdout);
        return EXIT_OK;
}

int cmd_version(struct cli_args *a)
{
        if (a->argc > 0)
                return cli_usage("version", "unexpected argument");
        printf("kiln %s\n", KILN_VERSION);
        return EXIT_OK;
}

/* ---- bash completion ---- */

/* Every option of v's groups and the global ones, as bash words:
 * with_arg: only those that take an argument. */
static void print_words(const struct cli_verb *v, bool with_arg, FILE *f)
{
        const char *sep = "";

        for (size_t i = 0; v && i < CLI_MAX_GROUPS && v->groups[i]; i++)
                for (const struct cli_option *o = v->groups[i]->opts; o->name; o++) {
                        if (with_arg && o->type == CLI_FLAG)
                                continue;
                        if (o->letter)
                                fprintf(f, "%s-%c", sep, o->letter);
                        fprintf(f, "%s--%s", o->letter ? " " : sep, o->name);
                        sep = " ";
                }
        for (size_t i = 0; !v && cli_global_groups[i]; i++)
                for (const struct cli_option *o = cli_global_groups[i]->opts; o->name; o++) {
                        if (with_arg && o->type == CLI_FLAG)
                                continue;
                        if (o->letter)
                                fprintf(f, "%s-%c", sep, o->letter);
                        fprintf(f, "%s--%s", o->letter ? " " : sep, o->name);
                        sep = " ";
                }
}

/* One case of _kiln_arg: "VERB --name"|"VERB -l") what bash offers. */
static void print_arg_case(const char *verb, const struct cli_option *o, FILE *f)
{
        if (o->type == CLI_FLAG || (!o->words && o->complete == CLI_COMPLETE_NONE))
                return;
        /* "*": any verb, or none yet (an unquoted pattern) */
        if (!strcmp(verb, "*"))
                fprintf(f, "        *' --%s'", o->name);
        else
                fprintf(f, "        '%s --%s'", verb, o->name);
        if (o->letter && !strcmp(verb, "*"))
                fprintf(f, "|*' -%c'", o->letter);
        else if (o->letter)
                fprintf(f, "|'%s -%c'", verb, o->letter);
        if (o->words) {
                fprintf(f, ") _kiln_words '");
                for (size_t i = 0; o->words[i]; i++)
                        fprintf(f, "%s%s", i ? " " : "", o->words[i]);
                fprintf(f, "' ;;\n");
        } else {
                fprintf(f, ") _kiln_files %s ;;\n", o->complete == CLI_COMPLETE_DIR ? "-d" : "-f");
        }
}

void cli_completion_bash(FILE *f)
{
        fprintf(f, "# bash completion for kiln, made from kiln's option table by\n"
                   "# 'kiln completion bash'.  Verbs, each verb's options, the choices of\n"
                   "# options and operands that have them, file names elsewhere.\n\n");
        fprintf(f, "_kiln_verbs='");
        for (const struct cli_verb *v = cli_verbs; v->name; v++)
                fprintf(f, "%s%s", v == cli_verbs ? "" : " ", v->name);
        fprintf(f, "'\n_kiln_global='");
        print_words(NULL, false, f);
        fprintf(f, "'\n_kiln_global_arg='");
        print_words(NULL, true, f);
        fprintf(f, "'\n\n# _kiln_opts VERB: the options of VERB in opts, those taking an argument "
                   "in args\n"
                   "_kiln_opts()\n{\n        case $1 in\n");
        for (const struct cli_verb *v = cli_verbs; v->name; v++) {
                fprintf(f, "        %s) opts='", v->name);
                print_words(v, false, f);
                fprintf(f, "'; args='");
                print_words(v, true, f);
                fprintf(f, "' ;;\n");
        }
        fprintf(f, "        *) opts=''; args='' ;;\n        esac\n}\n\n"
                   "_kiln_files()\n{\n"
                   "        compopt -o filenames 2>/dev/null\n"
                   "        mapfile -t COMPREPLY < <(compgen \"$1\" -- \"$cur\")\n}\n\n"
                   "_kiln_words()\n{\n"
                   "        mapfile -t COMPREPLY < <(compgen -W \"$1\" -- \"$cur\")\n}\n\n"
                   "# _kiln_arg VERB OPTION: what the argument of OPTION takes\n"
                   "_kiln_arg()\n{\n        case \"$1 $2\" in\n");
        for (const struct cli_verb *v = cli_verbs; v->name; v++) {
                for (size_t i = 0; i < CLI_MAX_GROUPS && v->groups[i]; i++)
                        for (const struct cli_option *o = v->groups[i]->opts; o->name; o++)
                                print_arg_case(v->name, o, f);
        }
        for (size_t i = 0; cli_global_groups[i]; i++)
                for (const struct cli_option *o = cli_global_groups[i]->opts; o->name; o++)
                        print_arg_case("*", o, f);
        fprintf(f, "        *) COMPREPLY=() ;;\n        esac\n}\n\n");
        /* the first operand's words */
        fprintf(f, "# _kiln_operand VERB N: what the Nth operand (from 0) of VERB takes\n"
                   "_kiln_operand()\n{\n        case \"$1 $2\" in\n"
                   "        'help 0') _kiln_words \"$_kiln_verbs\" ;;\n");
        for (const struct cli_verb *v = cli_verbs; v->name; v++) {
                if (!v->words)
                        continue;
                fprintf(f, "        '%s 0') _kiln_words '", v->name);
                for (size_t i = 0; v->words[i]; i++)
                        fprintf(f, "%s%s", i ? " " : "", v->words[i]);
                fprintf(f, "' ;;\n");
        }
        fprintf(f, "        'version '*|'completion '*|'help '*) COMPREPLY=() ;;\n"
                   "        *) _kiln_files -f ;;\n        esac\n}\n\n");
        fprintf(
            f,
            "_kiln()\n{\n"
            "        local cur=${COMP_WORDS[COMP_CWORD]} prev='' verb='' opt='' opts args\n"
            "        local i w skip='' dd='' n=0\n"
            "        ((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD-1]}\n"
            "        COMPREPLY=()\n"
            "        # the verb is the first word that is neither an option nor an\n"
            "        # option's argument; bash splits --name=VALUE at '='\n"
            "        for ((i = 1; i < COMP_CWORD; i++)); do\n"
            "                w=${COMP_WORDS[i]}\n"
            "                if [[ -n $dd ]]; then ((n++)); continue; fi\n"
            "                if [[ $w == = ]]; then skip=1; continue; fi\n"
            "                if [[ -n $skip ]]; then skip=''; continue; fi\n"
            "                _kiln_opts \"$verb\"\n"
            "                case $w in\n"
            "                --) [[ -n $verb ]] && dd=1 ;;\n"
            "                --*=*) ;;\n"
            "                -*) [[ \" $_kiln_global_arg $args \" == *\" $w \"* ]] && skip=1 ;;\n"
            "                *) if [[ -z $verb ]]; then verb=$w; else ((n++)); fi ;;\n"
            "                esac\n"
            "        done\n"
            "        _kiln_opts \"$verb\"\n"
            "        if [[ -n $dd ]]; then\n"
            "                _kiln_files -f\n"
            "                return\n"
            "        fi\n"
            "        if [[ $cur == = ]]; then\n"
            "                opt=$prev; cur=''\n"
            "        elif [[ $prev == = ]] && ((COMP_CWORD > 1)); then\n"
            "                opt=${COMP_WORDS[COMP_CWORD-2]}\n"
            "        elif [[ $prev == -* && \" $_kiln_global_arg $args \" == *\" $prev \"* ]]; "
            "then\n"
            "                opt=$prev\n"
            "        fi\n"
            "        if [[ -n $opt ]]; then\n"
            "                _kiln_arg \"${verb:-none}\" \"$opt\"\n"
            "                return\n"
            "        fi\n"
            "        if [[ $cur == -* ]]; then\n"
            "                _kiln_words \"$opts $_kiln_global\"\n"
            "        elif [[ -z $verb ]]; then\n"
            "                _kiln_words \"$_kiln_verbs\"\n"
            "        else\n"
            "                _kiln_operand \"$verb\" \"$n\"\n"
            "        fi\n"
            "}\n\n"
            "complete -F _kiln kiln\n");
}

int cmd_completion(struct cli_args *a)
{
        if (a->argc != 1)
                return cli_usage("completion", "expected the shell: bash");
        if (strcmp(a->argv[0], "bash"))
                return cli_usage("completion", "unknown shell '%s': kiln completes bash only",
                                 a->argv[0]);
        cli_completion_bash(stdout);
        return EXIT_OK;
}
