/* Registry options shared by the verbs, the notify callback, and
 * `kiln ls` on a repository. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmd_registry.h"
#include "util.h"

static void on_notify(void *ctx, enum reg_event ev, const char *msg)
{
        (void)ctx;
        if (ev == REG_EVENT_WARNING)
                cli_warn("%s", msg);
        else if (getenv("KILN_VERBOSE") || ev == REG_EVENT_RETRY)
                fprintf(stderr, "kiln: retry: %s\n", msg);
}

static void init_once(void)
{
        static bool done;
        const char *e;

        if (done)
                return;
        done = true;
        reg_options_init(&cli_reg_opts);
        cli_reg_opts.notify = on_notify;
        /* for scripts and tests: KILN_RETRY_BASE_MS shortens the backoff */
        e = getenv("KILN_RETRY_BASE_MS");
        if (e && *e)
                cli_reg_opts.retry_base_ms = strtol(e, NULL, 10);
        e = getenv("KILN_LOW_SPEED_TIME");
        if (e && *e)
                cli_reg_opts.low_speed_time_s = strtol(e, NULL, 10);
}

struct reg_options cli_reg_opts;

__attribute__((constructor)) static void cli_reg_opts_ctor(void)
{
        init_once();
}

static int parse_uint(const char *arg, long long max, long long *ret)
{
        char *end;
        long long v;

        errno = 0;
        v = strtoll(arg, &end, 10);
        if (errno || end == arg || v < 0 || v > max)
                return -1;
        if (*end == 'k' || *end == 'K')
                v *= 1024, end++;
        else if (*end == 'M' || *end == 'm')
                v *= 1024 * 1024, end++;
        if (*end)
                return -1;
        *ret = v;
        return 0;
}

int cli_reg_option(const char *verb, int opt, const char *arg)
{
        long long v;

        init_once();
        switch (opt) {
        case CLI_OPT_INSECURE:
                if (cli_reg_opts.n_insecure == REG_MAX_HOSTS)
                        return cli_usage(verb, "too many --insecure-registry options"), -1;
                cli_reg_opts.insecure_hosts[cli_reg_opts.n_insecure++] = arg;
                return 1;
        case CLI_OPT_CA_FILE: cli_reg_opts.ca_file = arg; return 1;
        case CLI_OPT_AUTHFILE: cli_reg_opts.authfile = arg; return 1;
        case CLI_OPT_RETRY_TIMES:
                if (parse_uint(arg, 100, &v) < 0)
                        return cli_usage(verb, "invalid --retry-times '%s'", arg), -1;
                cli_reg_opts.retries = (unsigned)v;
                return 1;
        case CLI_OPT_CHUNK_SIZE:
                if (parse_uint(arg, 1LL << 40, &v) < 0 || v < 1024)
                        return cli_usage(verb, "invalid --chunk-size '%s'", arg), -1;
                cli_reg_opts.chunk_size = v;
                return 1;
        case CLI_OPT_MIRROR:
                if (!strchr(arg, '=') || cli_reg_opts.n_mirrors == REG_MAX_HOSTS)
                        return cli_usage(verb, "invalid --mirror '%s': expected DOMAIN=HOST[/PREFIX]",
                                         arg),
                               -1;
                cli_reg_opts.mirrors[cli_reg_opts.n_mirrors++] = arg;
                return 1;
        default: return 0;
        }
}

int cli_ls_registry(const struct oci_place *p, bool json)
{
        struct kiln_error err = KILN_ERROR_INIT;
        struct reg_client *c;
        char **tags = NULL;
        size_t n = 0;

        init_once();
        c = reg_client_new(p->ref.domain, p->ref.path, &cli_reg_opts, false, &err);
        if (!c)
                return cli_fail(&err);
        if (reg_client_list_tags(c, &tags, &n, &err) < 0) {
                reg_client_free(c);
                return cli_fail(&err);
        }
        if (json) {
                json_t *a = json_array();
                char *s;
                for (size_t i = 0; i < n; i++)
                        json_array_append_new(a, json_string(tags[i]));
                s = json_dumps(a, JSON_COMPACT);
                printf("%s\n", s ? s : "[]");
                free(s);
                json_decref(a);
        } else {
                for (size_t i = 0; i < n; i++)
                        printf("%s\n", tags[i]);
        }
        for (size_t i = 0; i < n; i++)
                free(tags[i]);
        free(tags);
        reg_client_free(c);
        return EXIT_OK;
}
