/* cli/options.c, cli/verbs.c, cli/help.c: the option table, the parser
 * built on it, the help and the completion made from it, and the man page
 * that must name every option of it (docs/kiln.1). */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli.h"
#include "io.h"
#include "options.h"

#define MAX_WORDS 64

/* A command line split at spaces, the words kept as long as the args. */
struct line {
        char buf[1024];
        char *argv[MAX_WORDS];
        int argc;
};

static int parse(const char *cmd, struct line *l, struct cli_args *a, struct kiln_error *err)
{
        char *save = NULL;

        snprintf(l->buf, sizeof(l->buf), "kiln %s", cmd);
        l->argc = 0;
        for (char *w = strtok_r(l->buf, " ", &save); w && l->argc < MAX_WORDS - 1;
             w = strtok_r(NULL, " ", &save))
                l->argv[l->argc++] = w;
        l->argv[l->argc] = NULL;
        cli_args_init(a);
        return cli_parse(a, l->argc, l->argv, err);
}

static void test_global_options_go_before_or_after_the_verb(void **state)
{
        struct line l;
        struct cli_args a;
        struct kiln_error err = KILN_ERROR_INIT;

        (void)state;
        assert_int_equal(parse("--insecure-registry h1:5000 -q copy oci:a --retry-times 3 oci:b "
                               "--insecure-registry=h2 -v",
                               &l, &a, &err),
                         0);
        assert_string_equal(a.verb->name, "copy");
        assert_int_equal(a.argc, 2);
        assert_string_equal(a.argv[0], "oci:a");
        assert_string_equal(a.argv[1], "oci:b");
        assert_int_equal(a.reg.n_insecure, 2);
        assert_string_equal(a.reg.insecure_hosts[0], "h1:5000");
        assert_string_equal(a.reg.insecure_hosts[1], "h2");
        assert_int_equal(a.reg.retries, 3);
        assert_true(a.quiet);
        assert_true(a.verbose);
        assert_true(a.reg.debug);
        cli_args_release(&a);
}

static void test_values_keep_the_command_line_order(void **state)
{
        struct line l;
        struct cli_args a;
        struct kiln_error err = KILN_ERROR_INIT;
        const char *want[] = {"l:/a", "f:/x:/y", "l:/b", "x:*.o"};
        size_t n = 0;

        (void)state;
        assert_int_equal(
            parse("append scratch --layer /a --file /x:/y -qtoci:o -l/b -x *.o", &l, &a, &err), 0);
        cli_foreach_value(&a, v)
        {
                char got[64];
                if (v->opt->key == CLI_K_QUIET || v->opt->key == 't')
                        continue;
                assert_true(n < 4);
                snprintf(got, sizeof(got), "%c:%s", v->opt->key, v->arg);
                assert_string_equal(got, want[n++]);
        }
        assert_int_equal(n, 4);
        assert_string_equal(cli_arg(&a, 't'), "oci:o");
        assert_true(a.quiet);
        assert_null(cli_arg(&a, 'C'));
        assert_int_equal(cli_num(&a, 'T', -5), -5);
        cli_args_release(&a);
}

static void test_operands_after_double_dash_are_not_options(void **state)
{
        struct line l;
        struct cli_args a;
        struct kiln_error err = KILN_ERROR_INIT;

        (void)state;
        assert_int_equal(parse("run --network oci:img -- sh -c --network", &l, &a, &err), 0);
        assert_int_equal(a.argc, 4);
        assert_string_equal(a.argv[0], "oci:img");
        assert_string_equal(a.argv[2], "-c");
        assert_string_equal(a.argv[3], "--network");
        assert_true(cli_flag(&a, 'n'));
        cli_args_release(&a);
}

static const struct {
        const char *cmd;
        const char *msg; /* NULL: parses; the number then */
        int key;
        long long num;
} value_cases[] = {
    {"flatten x --level 22", NULL, CLI_K_LEVEL, 22},
    {"flatten x --level=0", NULL, CLI_K_LEVEL, 0},
    {"flatten x --level abc", "--level takes a number from 0 to 22, not 'abc'", 0, 0},
    {"flatten x --level 99", "--level takes a number from 0 to 22, not '99'", 0, 0},
    {"flatten x --level -1", "--level takes a number from 0 to 22, not '-1'", 0, 0},
    {"flatten x --level 3x", "--level takes a number from 0 to 22, not '3x'", 0, 0},
    {"flatten x --level 99999999999999999999999",
     "--level takes a number from 0 to 22, not '99999999999999999999999'", 0, 0},
    {"copy a b --jobs 0", "--jobs takes a number from 1 to 32, not '0'", 0, 0},
    {"copy a b --jobs 32", NULL, CLI_K_JOBS, 32},
    {"copy a b --retry-times 101", "--retry-times takes a number from 0 to 100, not '101'", 0, 0},
    {"copy a b --chunk-size 5M", NULL, CLI_K_CHUNK_SIZE, 5 << 20},
    {"copy a b --chunk-size 4KiB", NULL, CLI_K_CHUNK_SIZE, 4096},
    {"copy a b --chunk-size 1T", NULL, CLI_K_CHUNK_SIZE, 1LL << 40},
    {"copy a b --chunk-size 1023",
     "--chunk-size takes a size from 1k to 1T (N, Nk, NM or NG), not '1023'", 0, 0},
    {"copy a b --chunk-size 2T",
     "--chunk-size takes a size from 1k to 1T (N, Nk, NM or NG), not '2T'", 0, 0},
    {"unpack a d --max-size 1G", NULL, 'm', 1LL << 30},
    {"unpack a d --max-total 3GiB", NULL, 't', 3LL << 30},
    {"unpack a d --max-size 1X",
     "--max-size takes a size from 0 to 1024T (N, Nk, NM or NG), not '1X'", 0, 0},
    {"cache prune --older-than 2d", NULL, 'o', 2 * 86400},
    {"cache prune --older-than 90", NULL, 'o', 90},
    {"cache prune --older-than 3w",
     "--older-than takes an age such as 30d, 12h, 45m or 90s, not '3w'", 0, 0},
    {"cache prune --keep x", "--keep takes a number from 0 to 1000000000, not 'x'", 0, 0},
    {"copy a b --progress loud", "--progress takes auto, plain, tty or none, not 'loud'", 0, 0},
    {"append s -c lz4", "--compression takes gzip, zstd or none, not 'lz4'", 0, 0},
    {"append s --threads many", "--threads takes a number from 0 to 1024, not 'many'", 0, 0},
    {"build r --max-jobs 0", "--max-jobs takes a number from 1 to 1024, not '0'", 0, 0},
    {"copy a b --json=1", "--json takes no value", 0, 0},
    {"copy a b --jobs", "--jobs needs an argument (N)", 0, 0},
    {"config p -t", "-t needs an argument (DST)", 0, 0},
    {"copy a b --bogus", "unknown option '--bogus'", 0, 0},
    {"copy a b -Z", "unknown option '-Z'", 0, 0},
    {"build r --pylock x", "--pylock is an option of kiln lock, not of kiln build", 0, 0},
    {"--platform linux/amd64 copy a b", "--platform is not a global option: put it after the verb",
     0, 0},
    {"frobnicate", "unknown verb 'frobnicate'; run 'kiln help'", 0, 0},
    {"copy a b --mirror docker.io", "--mirror takes REGISTRY=HOST[/PREFIX], not 'docker.io'", 0, 0},
};

static void test_values_are_typed_and_checked(void **state)
{
        (void)state;
        for (size_t i = 0; i < sizeof(value_cases) / sizeof(value_cases[0]); i++) {
                struct line l;
                struct cli_args a;
                struct kiln_error err = KILN_ERROR_INIT;
                int rc = parse(value_cases[i].cmd, &l, &a, &err);

                if (!value_cases[i].msg && rc < 0)
                        fail_msg("'%s': %s", value_cases[i].cmd, err.msg);
                if (value_cases[i].msg && rc == 0)
                        fail_msg("'%s' parsed", value_cases[i].cmd);
                if (value_cases[i].msg) {
                        assert_int_equal(err.code, KILN_E_USAGE);
                        assert_string_equal(err.msg, value_cases[i].msg);
                } else if (cli_num(&a, value_cases[i].key, -1) != value_cases[i].num) {
                        fail_msg("'%s': %lld", value_cases[i].cmd,
                                 cli_num(&a, value_cases[i].key, -1));
                }
                cli_args_release(&a);
        }
}

static void test_platform_is_parsed_once_with_its_own_error(void **state)
{
        struct line l;
        struct cli_args a;
        struct kiln_error err = KILN_ERROR_INIT;

        (void)state;
        assert_int_equal(parse("inspect x --platform linux/arm64/v8", &l, &a, &err), 0);
        assert_true(a.has_platform);
        assert_string_equal(a.platform.architecture, "arm64");
        assert_string_equal(a.platform.variant, "v8");
        cli_args_release(&a);
        assert_int_equal(parse("inspect x --platform linux/", &l, &a, &err), -1);
        assert_int_equal(err.code, KILN_E_INVALID);
        cli_args_release(&a);
}

static void test_more_hosts_than_kept_are_refused(void **state)
{
        char cmd[1024] = "copy a b";
        struct line l;
        struct cli_args a;
        struct kiln_error err = KILN_ERROR_INIT;

        (void)state;
        for (int i = 0; i <= REG_MAX_HOSTS; i++)
                snprintf(cmd + strlen(cmd), sizeof(cmd) - strlen(cmd), " --insecure-registry h%d",
                         i);
        assert_int_equal(parse(cmd, &l, &a, &err), -1);
        assert_string_equal(err.msg, "more than 16 --insecure-registry options");
        cli_args_release(&a);
}

static void test_help_stops_the_parse(void **state)
{
        struct line l;
        struct cli_args a;
        struct kiln_error err = KILN_ERROR_INIT;

        (void)state;
        assert_int_equal(parse("copy --help --bogus", &l, &a, &err), 0);
        assert_true(a.help);
        assert_string_equal(a.verb->name, "copy");
        cli_args_release(&a);
        assert_int_equal(parse("-h build", &l, &a, &err), 0);
        assert_true(a.help);
        assert_string_equal(a.verb->name, "build");
        cli_args_release(&a);
        assert_int_equal(parse("", &l, &a, &err), 0);
        assert_null(a.verb);
        assert_false(a.help);
        cli_args_release(&a);
}

static bool mentions(const char *text, const char *name)
{
        size_t l = strlen(name);

        for (const char *p = text; (p = strstr(p, name)); p += l)
                if (!isalnum((unsigned char)p[l]) && p[l] != '\\')
                        return true;
        return false;
}

/* Calls fn for every option of v: its groups, then the global ones. */
static void each_option(const struct cli_verb *v,
                        void (*fn)(const struct cli_verb *, const struct cli_group *,
                                   const struct cli_option *, void *),
                        void *ctx)
{
        for (size_t i = 0; i < CLI_MAX_GROUPS && v->groups[i]; i++)
                for (const struct cli_option *o = v->groups[i]->opts; o->name; o++)
                        fn(v, v->groups[i], o, ctx);
        for (size_t i = 0; cli_global_groups[i]; i++)
                for (const struct cli_option *o = cli_global_groups[i]->opts; o->name; o++)
                        fn(v, cli_global_groups[i], o, ctx);
}

static void check_entry(const struct cli_verb *v, const struct cli_group *g,
                        const struct cli_option *o, void *ctx)
{
        (void)g;
        (void)ctx;
        for (const char *p = o->name; *p; p++)
                if (!islower((unsigned char)*p) && !isdigit((unsigned char)*p) && *p != '-')
                        fail_msg("kiln %s --%s: a name of a-z, 0-9 and -", v->name, o->name);
        if (!o->help || !*o->help || strlen(o->help) > 68)
                fail_msg("kiln %s --%s: one line of help, at most 68 characters", v->name, o->name);
        if (o->type != CLI_FLAG && o->type != CLI_CHOICE && !o->arg)
                fail_msg("kiln %s --%s: no argument name", v->name, o->name);
        if (o->type == CLI_CHOICE && !o->words)
                fail_msg("kiln %s --%s: a choice without words", v->name, o->name);
        if ((o->type == CLI_INT || o->type == CLI_SIZE) && o->min > o->max)
                fail_msg("kiln %s --%s: min over max", v->name, o->name);
        /* the same name, letter or key twice in one verb: the second is dead */
        for (size_t i = 0; i < CLI_MAX_GROUPS && v->groups[i]; i++)
                for (const struct cli_option *p = v->groups[i]->opts; p->name; p++)
                        if (p != o && (!strcmp(p->name, o->name) || p->key == o->key ||
                                       (o->letter && p->letter == o->letter)))
                                fail_msg("kiln %s: --%s and --%s clash", v->name, o->name, p->name);
        for (size_t i = 0; cli_global_groups[i]; i++)
                for (const struct cli_option *p = cli_global_groups[i]->opts; p->name; p++)
                        if (p != o && (!strcmp(p->name, o->name) || p->key == o->key ||
                                       (o->letter && p->letter == o->letter)))
                                fail_msg("kiln %s: --%s and the global --%s clash", v->name,
                                         o->name, p->name);
        assert_ptr_equal(cli_verb_option(v, o->name, 0), o);
        if (o->letter)
                assert_ptr_equal(cli_verb_option(v, NULL, o->letter), o);
}

static void test_the_table_is_consistent(void **state)
{
        (void)state;
        for (const struct cli_verb *v = cli_verbs; v->name; v++) {
                assert_non_null(v->fn);
                assert_non_null(v->summary);
                assert_non_null(v->synopsis);
                assert_ptr_equal(cli_find_verb(v->name), v);
                each_option(v, check_entry, NULL);
        }
}

static char *render(void (*fn)(const struct cli_verb *, FILE *), const struct cli_verb *v)
{
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);

        assert_non_null(f);
        fn(v, f);
        fclose(f);
        return buf;
}

static void check_help(const struct cli_verb *v, const struct cli_group *g,
                       const struct cli_option *o, void *ctx)
{
        const char *help = ctx;
        char want[256];
        const char *line;

        /* "  -c, --compression gzip|zstd|none" or "      --level N" */
        if (o->letter)
                snprintf(want, sizeof(want), "\n  -%c, --%s", o->letter, o->name);
        else
                snprintf(want, sizeof(want), "\n      --%s", o->name);
        /* "--cache" and not "--cache-repo" */
        for (line = strstr(help, want); line; line = strstr(line + 1, want))
                if (line[strlen(want)] == ' ' || line[strlen(want)] == '\n')
                        break;
        if (!line)
                fail_msg("kiln help %s: no '%s'", v->name, want + 1);
        line += strlen(want);
        if (o->type == CLI_CHOICE) {
                for (size_t i = 0; o->words[i]; i++)
                        if (!strstr(line, o->words[i]))
                                fail_msg("kiln help %s --%s: no '%s'", v->name, o->name,
                                         o->words[i]);
        } else if (o->arg && (line[0] != ' ' || strncmp(line + 1, o->arg, strlen(o->arg)))) {
                fail_msg("kiln help %s --%s: no argument '%s'", v->name, o->name, o->arg);
        }
        if (!strstr(line, o->help))
                fail_msg("kiln help %s --%s: no description", v->name, o->name);
        snprintf(want, sizeof(want), "\n%s:\n", g->title);
        if (!strstr(help, want))
                fail_msg("kiln help %s: no '%s' heading", v->name, g->title);
}

static void test_help_lists_every_option_of_the_verb(void **state)
{
        (void)state;
        for (const struct cli_verb *v = cli_verbs; v->name; v++) {
                char *help = render(cli_help_print, v);
                char usage[256];

                snprintf(usage, sizeof(usage), "usage: kiln %s [OPTIONS]", v->name);
                assert_true(!strncmp(help, usage, strlen(usage)));
                assert_non_null(strstr(help, v->summary));
                each_option(v, check_help, help);
                free(help);
        }
}

/* The line of script that starts with start, as a new string. */
static char *script_line(const char *script, const char *start)
{
        const char *p = strstr(script, start);

        return p ? strndup(p, strcspn(p, "\n")) : NULL;
}

static void check_completion(const struct cli_verb *v, const struct cli_group *g,
                             const struct cli_option *o, void *ctx)
{
        const char *script = ctx;
        char want[256], name[64];
        char *line;
        bool global = cli_option_is_global(o);

        /* the verb's case of _kiln_opts, or _kiln_global, names the option */
        snprintf(want, sizeof(want), global ? "_kiln_global='" : "        %s) opts='", v->name);
        line = script_line(script, want);
        if (!line)
                fail_msg("completion: no '%s'", want);
        snprintf(name, sizeof(name), "--%s", o->name);
        if (!mentions(line, name))
                fail_msg("completion: '%s' lacks %s", want, name);
        free(line);
        if (o->words) {
                snprintf(want, sizeof(want), "        '%s --%s'", v->name, o->name);
                line = script_line(script, want);
                if (!line)
                        fail_msg("completion: no case for %s --%s", v->name, o->name);
                for (size_t i = 0; o->words[i]; i++)
                        if (!strstr(line, o->words[i]))
                                fail_msg("completion: %s --%s lacks '%s'", v->name, o->name,
                                         o->words[i]);
                free(line);
        }
}

static void completion_of(const struct cli_verb *v, FILE *f)
{
        (void)v;
        cli_completion_bash(f);
}

static void test_completion_names_every_verb_and_option(void **state)
{
        char *script = render(completion_of, NULL);

        (void)state;
        for (const struct cli_verb *v = cli_verbs; v->name; v++) {
                char want[64];
                snprintf(want, sizeof(want), " %s", v->name);
                assert_non_null(strstr(script, want));
                each_option(v, check_completion, script);
        }
        free(script);
}

/* ---- docs/kiln.1 ---- */

/* The text of the man page from the section heading starting with head to
 * the next heading (.SH or .SS, or .SH only when sh_only), or NULL. */
static char *section(const char *page, const char *head, bool sh_only)
{
        const char *p = page, *end;

        while ((p = strstr(p, head))) {
                const char *after = p + strlen(head);
                if ((p == page || p[-1] == '\n') && (*after == '\n' || *after == ' '))
                        break;
                p = after;
        }
        if (!p)
                return NULL;
        for (end = strchr(p, '\n'); end; end = strchr(end + 1, '\n'))
                if (!strncmp(end + 1, ".SH", 3) || (!sh_only && !strncmp(end + 1, ".SS", 3)))
                        break;
        return strndup(p, end ? (size_t)(end - p) : strlen(p));
}

/* "--ca-file" as groff writes it: "\-\-ca\-file" */
static void man_name(const struct cli_option *o, char *buf, size_t len)
{
        size_t n = 0;

        for (const char *p = "--"; *p && n + 3 < len; p++, n += 2)
                memcpy(buf + n, "\\-", 2);
        for (const char *p = o->name; *p && n + 3 < len; p++) {
                if (*p == '-')
                        buf[n++] = '\\';
                buf[n++] = *p;
        }
        buf[n] = '\0';
}

static void check_man(const struct cli_verb *v, const struct cli_group *g,
                      const struct cli_option *o, void *ctx)
{
        const char *page = ctx;
        char head[128], name[128];
        bool global = cli_option_is_global(o);
        char *text;

        /* a verb's own options in its section; a shared group's in the
         * section of the group's title (under GLOBAL OPTIONS for these) */
        if (!strcmp(g->title, "Options"))
                snprintf(head, sizeof(head), ".SS kiln %s", v->name);
        else
                snprintf(head, sizeof(head), ".SS %s", g->title);
        text = section(page, head, false);
        if (!text)
                fail_msg("kiln.1: no section '%s' (for --%s of kiln %s)", head, o->name, v->name);
        man_name(o, name, sizeof(name));
        if (!mentions(text, name))
                fail_msg("kiln.1: '%s' does not name --%s (kiln %s)", head, o->name, v->name);
        if (o->letter) {
                snprintf(name, sizeof(name), "\\-%c", o->letter);
                if (!mentions(text, name))
                        fail_msg("kiln.1: '%s' does not name -%c (kiln %s)", head, o->letter,
                                 v->name);
        }
        free(text);
        if (global) {
                text = section(page, ".SH GLOBAL OPTIONS", true);
                if (!text || !strstr(text, head))
                        fail_msg("kiln.1: '%s' is not under GLOBAL OPTIONS", head);
                free(text);
        }
}

static char *read_man_page(void)
{
        const char *root = getenv("KILN_SOURCE_ROOT");
        char path[4096];
        char *buf = NULL;
        size_t len;
        struct kiln_error err = KILN_ERROR_INIT;

        assert_non_null(root);
        snprintf(path, sizeof(path), "%s/docs/kiln.1", root);
        if (kiln_read_file(path, 1 << 20, &buf, &len, &err) < 0)
                fail_msg("%s", err.msg);
        return buf;
}

static void test_man_page_names_every_verb_and_option(void **state)
{
        char *page = read_man_page();

        (void)state;
        for (const struct cli_verb *v = cli_verbs; v->name; v++) {
                char head[64];
                char *text;
                snprintf(head, sizeof(head), ".SS kiln %s", v->name);
                text = section(page, head, false);
                if (!text)
                        fail_msg("kiln.1: no section '%s'", head);
                free(text);
                each_option(v, check_man, page);
        }
        free(page);
}

/* The other way: every \-\-name of the man page is an option of kiln. */
static void test_man_page_names_no_option_kiln_lacks(void **state)
{
        char *page = read_man_page();

        (void)state;
        for (const char *p = page; (p = strstr(p, "\\-\\-")); p += 4) {
                char name[64];
                size_t n = 0;
                bool found = false;
                for (const char *q = p + 4; n + 1 < sizeof(name); q++) {
                        if (q[0] == '\\' && q[1] == '-' && (isalnum((unsigned char)q[2]))) {
                                name[n++] = '-';
                                q++;
                        } else if (isalnum((unsigned char)*q)) {
                                name[n++] = *q;
                        } else {
                                break;
                        }
                }
                name[n] = '\0';
                if (!n)
                        continue; /* "\-\-" alone: kiln run's end of options */
                for (const struct cli_verb *v = cli_verbs; v->name && !found; v++)
                        found = cli_verb_option(v, name, 0) != NULL;
                if (!found)
                        fail_msg("kiln.1 names --%s, which no verb takes", name);
        }
        free(page);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_global_options_go_before_or_after_the_verb),
            cmocka_unit_test(test_values_keep_the_command_line_order),
            cmocka_unit_test(test_operands_after_double_dash_are_not_options),
            cmocka_unit_test(test_values_are_typed_and_checked),
            cmocka_unit_test(test_platform_is_parsed_once_with_its_own_error),
            cmocka_unit_test(test_more_hosts_than_kept_are_refused),
            cmocka_unit_test(test_help_stops_the_parse),
            cmocka_unit_test(test_the_table_is_consistent),
            cmocka_unit_test(test_help_lists_every_option_of_the_verb),
            cmocka_unit_test(test_completion_names_every_verb_and_option),
            cmocka_unit_test(test_man_page_names_every_verb_and_option),
            cmocka_unit_test(test_man_page_names_no_option_kiln_lacks),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
