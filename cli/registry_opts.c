/* Registry options shared by the verbs, the notify callback, and
 * `kiln ls` on a repository. */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmd_registry.h"
#include "hosts.h"
#include "progress.h"
#include "util.h"

static void on_notify(void *ctx, enum reg_event ev, const char *msg)
{
        char line[2048];

        (void)ctx;
        if (ev == REG_EVENT_WARNING) {
                cli_warn("%s", msg);
        } else if (ev == REG_EVENT_MOUNTED) {
                if (cli_progress_shown())
                        cli_progress_message(msg);
        } else if (ev == REG_EVENT_DEBUG) {
                snprintf(line, sizeof(line), "kiln: debug: %s", msg);
                cli_progress_message(line);
        } else if (getenv("KILN_VERBOSE") || ev == REG_EVENT_RETRY) {
                snprintf(line, sizeof(line), "kiln: retry: %s", msg);
                cli_progress_message(line);
        }
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
        /* KILN_VERBOSE: every response, with its HTTP version, on stderr */
        cli_reg_opts.debug = getenv("KILN_VERBOSE") && *getenv("KILN_VERBOSE");
        /* for scripts and tests: KILN_RETRY_BASE_MS shortens the backoff */
        e = getenv("KILN_RETRY_BASE_MS");
        if (e && *e)
                cli_reg_opts.retry_base_ms = strtol(e, NULL, 10);
        e = getenv("KILN_LOW_SPEED_TIME");
        if (e && *e)
                cli_reg_opts.low_speed_time_s = strtol(e, NULL, 10);
        /* Docker Hub manifests by digest, next to the layer cache */
        {
                static char dir[4096];
                const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
                int n = -1;
                if (xdg && xdg[0] == '/')
                        n = snprintf(dir, sizeof(dir), "%s/kiln/manifests", xdg);
                else if (home && home[0] == '/')
                        n = snprintf(dir, sizeof(dir), "%s/.cache/kiln/manifests", home);
                if (n > 0 && (size_t)n < sizeof(dir))
                        cli_reg_opts.manifest_cache_dir = dir;
        }
        /* the floor of every request's deadline, in s (0: no deadline) */
        e = getenv("KILN_REQUEST_DEADLINE");
        if (e && *e)
                cli_reg_opts.deadline_floor_s = strtol(e, NULL, 10);
        /* one record of where blobs were seen for every store of the run, so
         * that a copy between repositories of one registry mounts; it lives
         * as long as the process.  Out of memory: each store keeps its own */
        cli_reg_opts.known = reg_known_new(NULL);
}

struct reg_options cli_reg_opts;

__attribute__((constructor)) static void cli_reg_opts_ctor(void)
{
        init_once();
}

static pthread_once_t conf_once = PTHREAD_ONCE_INIT;
static struct reg_conf conf;
static struct kiln_error conf_err = KILN_ERROR_INIT;
static int conf_rc;

static void conf_load(void)
{
        conf_rc = reg_conf_load(&conf, &conf_err);
        if (conf_rc == 0)
                cli_reg_opts.conf = &conf;
        if (conf.search_ignored && cli_reg_opts.debug)
                cli_progress_message("kiln: note: registries.conf sets unqualified-search-registries, "
                                     "which kiln ignores: a name without a registry is docker.io's");
}

int cli_reg_conf(struct kiln_error *err)
{
        init_once();
        pthread_once(&conf_once, conf_load);
        if (conf_rc < 0 && err)
                *err = conf_err;
        return conf_rc;
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

struct ls_out {
        bool json;
        size_t n;
};

/* Prints a page of tags as it arrives: a listing of millions of tags is
 * never held whole (JSON: one array, written element by element). */
static int print_tags(void *ctx, const char *const *tags, size_t n, struct kiln_error *err)
{
        struct ls_out *o = ctx;

        (void)err;
        for (size_t i = 0; i < n; i++, o->n++) {
                if (!o->json) {
                        printf("%s\n", tags[i]);
                        continue;
                }
                /* tags are validated ([A-Za-z0-9_.-]): nothing to escape */
                printf("%s\"%s\"", o->n ? "," : "[", tags[i]);
        }
        return 0;
}

int cli_ls_registry(const struct oci_place *p, bool json)
{
        struct kiln_error err = KILN_ERROR_INIT;
        struct ls_out o = {.json = json};
        struct reg_client *c;
        int rc;

        init_once();
        if (cli_reg_conf(&err) < 0)
                return cli_fail(&err);
        c = reg_client_new(p->ref.domain, p->ref.path, &cli_reg_opts, false, &err);
        if (!c)
                return cli_fail(&err);
        rc = reg_client_walk_tags(c, print_tags, &o, &err);
        reg_client_free(c);
        if (json && (rc == 0 || o.n))
                printf("%s]\n", o.n ? "" : "[");
        if (rc < 0)
                return cli_fail(&err);
        return EXIT_OK;
}

#define REFERRERS_DEPTH 4

/* Copies the referrers of subject listed by the registry store s (of place
 * sp) to dp, then theirs (a signature of an SBOM), REFERRERS_DEPTH levels
 * down.  type: only referrers of this artifactType (NULL: all), at the top
 * level; what refers to a copied referrer comes along whatever its type. */
static int copy_referrers_of(struct oci_store *s, const struct oci_place *sp,
                             const struct oci_place *dp, const struct oci_digest *subject,
                             unsigned jobs, const char *type, int depth, unsigned *ret_n,
                             struct kiln_error *err)
{
        json_t *idx = NULL, *e;
        size_t i;
        int rc = -1;

        if (depth >= REFERRERS_DEPTH)
                return 0;
        if (reg_client_list_referrers(reg_store_client(s), subject, &idx, err) < 0)
                return -1;
        json_array_foreach(json_object_get(idx, "manifests"), i, e) {
                const char *dg = json_string_value(json_object_get(e, "digest"));
                const char *at = json_string_value(json_object_get(e, "artifactType"));
                _cleanup_free_ char *s2 = NULL, *d2 = NULL;
                struct oci_store *a = NULL, *b = NULL;
                struct oci_copy_opts copts = {.jobs = jobs};
                struct oci_copy_result res;
                struct oci_digest rd;
                int r;
                if (!dg || oci_digest_parse(dg, &rd, NULL) < 0) {
                        kiln_error_set(err, KILN_E_INVALID, "invalid digest in the referrers of '%s'",
                                       subject->str);
                        goto out;
                }
                if (type && (!at || strcmp(at, type)))
                        continue;
                s2 = kiln_strdupf("%s/%s@%s", sp->ref.domain, sp->ref.path, dg);
                if (dp->kind == OCI_PLACE_REGISTRY)
                        d2 = kiln_strdupf("%s/%s@%s", dp->ref.domain, dp->ref.path, dg);
                else
                        d2 = kiln_strdupf("oci:%s", dp->path);
                if (!s2 || !d2) {
                        kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        goto out;
                }
                a = cli_open_place(s2, false, err);
                b = a ? cli_open_place(d2, true, err) : NULL;
                r = a && b ? oci_image_copy(a, NULL, b, &copts, &res, err) : -1;
                if (r == 0)
                        r = oci_store_commit(b, err);
                oci_store_free(a);
                oci_store_free(b);
                if (r < 0) {
                        kiln_error_prefix(err, "referrer '%s'", dg);
                        goto out;
                }
                (*ret_n)++;
                if (copy_referrers_of(s, sp, dp, &rd, jobs, NULL, depth + 1, ret_n, err) < 0)
                        goto out;
        }
        rc = 0;
out:
        json_decref(idx);
        return rc;
}

/* Copies the referrers of subject (signatures, SBOMs, attestations: the
 * manifests whose `subject` is the image), and theirs, from the registry
 * place src to dst: a registry (its own API or the tag schema is updated by
 * the store) or an OCI layout (untagged entries in index.json). */
int cli_copy_referrers(const char *src, const char *dst, const struct oci_digest *subject,
                       unsigned jobs, const char *type, unsigned *ret_n, struct kiln_error *err)
{
        struct oci_place sp, dp;
        struct oci_store *s = NULL;
        int rc = -1;

        *ret_n = 0;
        if (oci_place_parse(src, &sp, err) < 0)
                return -1;
        if (oci_place_parse(dst, &dp, err) < 0) {
                oci_place_release(&sp);
                return -1;
        }
        if (sp.kind != OCI_PLACE_REGISTRY ||
            (dp.kind != OCI_PLACE_REGISTRY && dp.kind != OCI_PLACE_LAYOUT)) {
                kiln_error_set(err, KILN_E_UNSUPPORTED,
                               "--referrers copies from a registry to a registry or an oci: layout");
                goto out;
        }
        s = reg_store_new(&sp.ref, &cli_reg_opts, false, err);
        if (s)
                rc = copy_referrers_of(s, &sp, &dp, subject, jobs, type, 0, ret_n, err);
out:
        oci_store_free(s);
        oci_place_release(&sp);
        oci_place_release(&dp);
        return rc;
}

void cli_print_copy_json(struct oci_store *dst, const struct oci_copy_result *res,
                         unsigned n_referrers)
{
        struct reg_client *c = reg_store_client(dst);
        struct reg_stats st = {0};
        json_t *j = json_object(), *tags = json_array();
        const char *tag = dst->default_ref;
        char *s;

        if (c)
                reg_client_stats(c, &st);
        else
                st.bytes_up = res->bytes_copied;
        if (tag && !strchr(tag, ':'))
                json_array_append_new(tags, json_string(tag));
        json_object_set_new(j, "digest", json_string(res->digest.str));
        json_object_set_new(j, "mediaType", json_string(res->media_type));
        json_object_set_new(j, "size", json_integer(res->size));
        json_object_set_new(j, "tags", tags);
        json_object_set_new(j, "blobsCopied",
                            json_integer((json_int_t)res->blobs_copied - st.blobs_mounted));
        json_object_set_new(j, "blobsMounted", json_integer(st.blobs_mounted));
        json_object_set_new(j, "blobsSkipped", json_integer(res->blobs_skipped));
        json_object_set_new(j, "bytesCopied", json_integer(res->bytes_copied));
        json_object_set_new(j, "bytesSent", json_integer(st.bytes_up));
        json_object_set_new(j, "referrersCopied", json_integer(n_referrers));
        s = json_dumps(j, JSON_COMPACT);
        if (s)
                printf("%s\n", s);
        free(s);
        json_decref(j);
}
