/* kiln build RECIPE: the recipe's image, built and written to a layout or
 * pushed.  --dry-run and --stage go to cmd_build_plan (cli/cmd_plan.c). */
#include <getopt.h>
#include <time.h>
#include <limits.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmd_recipes.h"
#include "cmd_registry.h"
#include "commands.h"
#include "diff.h"
#include "fetch.h"
#include "parse.h"
#include "io.h"
#include "json.h"
#include "progress.h"
#include "pylock.h"
#include "recipe.h"
#include "recipe_image.h"
#include "util.h"

#define DEFAULT_OUTPUT "oci:kiln-out"

static struct oci_store *open_place(void *ctx, const char *place, bool for_write,
                                    struct kiln_error *err)
{
        (void)ctx;
        return cli_open_place(place, for_write, err);
}

/* Recipe inputs: --insecure-registry is for registries (docs/security.md),
 * so only loopback hosts may use plain http. */
static int fetch_input(void *ctx, const char *url, const char *dest, int64_t max,
                       struct kiln_error *err)
{
        struct reg_options o = *(const struct reg_options *)ctx;

        o.n_insecure = 0;
        if (reg_http_fetch(&o, url, dest, max, err) < 0) {
                if (err && err->code == KILN_E_NETWORK &&
                    str_has_prefix(err->msg, "refusing plain http for "))
                        kiln_error_set(err, KILN_E_NETWORK,
                                       "refusing plain http for '%s': recipe inputs need https (apt sources are checked by signature and may use http)",
                                       url);
                return -1;
        }
        return 0;
}

/* apt indexes and packages: their signature and hashes are checked before
 * use, so the transport need not be trusted and plain http is allowed. */
static int fetch_signed(void *ctx, const char *url, const char *dest, int64_t max,
                        struct kiln_error *err)
{
        struct reg_options o = *(const struct reg_options *)ctx;
        _cleanup_free_ char *host = reg_url_host(url);

        o.n_insecure = 0;
        if (host && str_has_prefix(url, "http://"))
                o.insecure_hosts[o.n_insecure++] = host;
        return reg_http_fetch(&o, url, dest, max, err);
}

static void print_finding(void *ctx, const struct layer_diff_finding *f)
{
        (void)ctx;
        printf("%s %s: %s%s%s%s%s\n", f->level, f->what, f->change, f->a || f->b ? " " : "",
               f->a ? f->a : "", f->a && f->b ? " -> " : "", f->b ? f->b : "");
}

static void on_warn(void *ctx, const char *msg)
{
        (void)ctx;
        cli_warn("%s", msg);
}

/* kiln's own lines: on a terminal the layers' rows say what "layer ..."
 * lines would */
static void on_progress(void *ctx, const char *msg)
{
        enum cli_progress_mode m = cli_progress_mode();

        (void)ctx;
        if (m == CLI_PROGRESS_PLAIN || (m == CLI_PROGRESS_TTY && strncmp(msg, "layer ", 6)))
                cli_progress_message(msg);
}

static void on_layer_state(void *ctx, const char *layer, const char *state,
                           const struct recipe_layer_report *done)
{
        char line[256], sz[32];

        (void)ctx;
        if (!done) {
                cli_progress_task(layer, state, !strcmp(state, "building"));
                return;
        }
        cli_format_size(done->bytes, sz, sizeof(sz));
        snprintf(line, sizeof(line), "layer %s: %s %s (%s, %.1fs)", layer,
                 !strcmp(state, "pulled") ? "from the cache repository" : state,
                 done->digest.str, sz, done->seconds);
        cli_progress_task_end(layer, line);
}

/* Build steps' output: streamed as "LAYER | line" unless --quiet, --json or
 * --progress none; a failed step's last lines (when they were not streamed)
 * and its log's path. */
struct step_out {
        bool stream;
};

static void on_step_line(void *ctx, const char *layer, const char *line)
{
        char buf[RECIPE_STEP_LINE_MAX + 80];

        if (cli_progress_mode() == CLI_PROGRESS_TTY) {
                cli_progress_task_line(layer, line);
        } else if (((struct step_out *)ctx)->stream) {
                snprintf(buf, sizeof(buf), "%s | %s", layer, line);
                cli_progress_message(buf);
        }
}

#define STEP_TAIL_LINES 20
#define STEP_TAIL_BYTES (64 * 1024)

static void on_step_failed(void *ctx, const char *layer, const char *log_path)
{
        FILE *f;

        if (!((struct step_out *)ctx)->stream && (f = fopen(log_path, "r"))) {
                char *buf = malloc(STEP_TAIL_BYTES + 1);
                const char *from;
                size_t n = 0;
                int lines = 0;
                if (buf && fseek(f, 0, SEEK_END) == 0) {
                        long end = ftell(f);
                        long at = end > STEP_TAIL_BYTES ? end - STEP_TAIL_BYTES : 0;
                        if (fseek(f, at, SEEK_SET) == 0)
                                n = fread(buf, 1, STEP_TAIL_BYTES, f);
                }
                if (buf) {
                        buf[n] = '\0';
                        while (n && buf[n - 1] == '\n')
                                buf[--n] = '\0';
                        from = buf + n;
                        while (from > buf && lines < STEP_TAIL_LINES)
                                if (*--from == '\n' && ++lines == STEP_TAIL_LINES)
                                        from++;
                        for (const char *l = from; *l;) {
                                size_t len = strcspn(l, "\n");
                                char one[RECIPE_STEP_LINE_MAX + 80];
                                snprintf(one, sizeof(one), "%s | %.*s", layer, (int)len, l);
                                cli_progress_message(one);
                                l += len + (l[len] == '\n');
                        }
                }
                free(buf);
                fclose(f);
        }
        {
                char one[PATH_MAX + 128];
                snprintf(one, sizeof(one), "kiln: the log of layer '%s': %s", layer, log_path);
                cli_progress_message(one);
        }
}

/* The verbs that build: `kiln build` writes or pushes the image; `kiln
 * verify` builds it into a private layout and compares it with --against. */
static int run_build(const char *verb, int argc, char **argv)
{
        static const struct option opts[] = {
                {"arch", required_argument, NULL, 'a'},
                {"source", required_argument, NULL, 's'},
                {"branch", required_argument, NULL, 'b'},
                {"tag-suffix", required_argument, NULL, 't'},
                {"max-jobs", required_argument, NULL, 'M'},
                {"set", required_argument, NULL, 'S'},
                {"push", no_argument, NULL, 'P'},
                {"output", required_argument, NULL, 'o'},
                {"cache", required_argument, NULL, 'c'},
                {"compression", required_argument, NULL, 'C'},
                {"level", required_argument, NULL, 'L'},
                {"platform", required_argument, NULL, 'p'},
                {"jobs", required_argument, NULL, 'J'},
                {"json", no_argument, NULL, 'j'},
                {"quiet", no_argument, NULL, 'q'},
                {"against", required_argument, NULL, 'A'},
                {"cache-repo", required_argument, NULL, 'R'},
                {"cache-to", required_argument, NULL, 'T'},
                {"cache-from", required_argument, NULL, 'f'},
                {"skip-if-built", no_argument, NULL, 'K'},
                {"locked", no_argument, NULL, 'l'},
                {"lock", required_argument, NULL, 'k'},
                {"from-annotations", no_argument, NULL, 'F'},
                {"sbom", no_argument, NULL, 'B'},
                {"progress", required_argument, NULL, 'G'},
                {"base-from", required_argument, NULL, 'D'},
                {"pylock", required_argument, NULL, 'Y'},
                CLI_REG_OPTIONS,
                CLI_HELP_OPTION,
                {NULL, 0, NULL, 0},
        };
        struct kiln_error err = KILN_ERROR_INIT;
        char **sets = NULL;
        _cleanup_free_ char *platbuf = NULL;
        struct recipe *r = NULL;
        struct recipe_image_opts o = {.open_place = open_place, .progress = on_progress,
                                      .warn = on_warn, .jobs = 4};
        struct recipe_image_result res = {0};
        struct oci_platform plat;
        size_t n_sets = 0;
        bool push = false, json = false, quiet = false, from_ann = false;
        bool verify = !strcmp(verb, "verify"), locking = !strcmp(verb, "lock");
        char *lock_path = NULL;
        const char *pylock_path = NULL;
        const char *against = NULL;
        _cleanup_free_ char *vdir = NULL, *voutput = NULL, *rbuf = NULL;
        struct oci_digest rdig;
        size_t rlen;
        int opt, rc = EXIT_OK;
        struct timespec t0;
        enum cli_progress_mode pmode = CLI_PROGRESS_AUTO;
        struct step_out sout = {0};
        struct recipe_step_log slog = {.line = on_step_line, .failed = on_step_failed,
                                       .ctx = &sout};

        for (int i = 1; i < argc && !verify; i++)
                if (!strcmp(argv[i], "--dry-run") || !strcmp(argv[i], "--stage") ||
                    !strncmp(argv[i], "--stage=", 8))
                        return cmd_build_plan(argc, argv);
        if (layer_writer_opts_init(&o.writer, &err) < 0)
                return cli_fail(&err);
        sets = calloc((size_t)argc + 1, sizeof(*sets));
        if (!sets)
                return EXIT_INTERNAL;
        o.progress_ctx = &quiet;
        optind = 1;
        while ((opt = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
                const char *var = NULL;
                switch (opt) {
                case 'a': var = "arch"; break;
                case 's': var = "source"; break;
                case 'b': var = "branch"; break;
                case 't': var = "tag_suffix"; break;
                case 'M': var = "max_jobs"; break;
                case 'S': sets[n_sets++] = strdup(optarg); break;
                case 'P': push = true; break;
                case 'o': o.output = optarg; break;
                case 'c': o.cache_dir = optarg; break;
                case 'C':
                        if (layer_compression_parse(optarg, &o.writer.compression, &err) < 0) {
                                rc = cli_fail(&err);
                                goto out;
                        }
                        break;
                case 'L': {
                        char *end;
                        long v = strtol(optarg, &end, 10);
                        if (*end || v < 0 || v > 22) {
                                rc = cli_usage("build", "--level takes 0 to 22, not '%s'", optarg);
                                goto out;
                        }
                        o.writer.level = (int)v;
                        break;
                }
                case 'p':
                        free(platbuf);
                        platbuf = strdup(optarg);
                        if (!platbuf || oci_platform_parse(platbuf, &plat, &err) < 0) {
                                rc = cli_fail(&err);
                                goto out;
                        }
                        o.platform = &plat;
                        break;
                case 'J': {
                        char *end;
                        long v = strtol(optarg, &end, 10);
                        if (*end || v < 1 || v > 32) {
                                rc = cli_usage("build", "--jobs takes 1 to 32, not '%s'", optarg);
                                goto out;
                        }
                        o.jobs = (unsigned)v;
                        break;
                }
                case 'j': json = true; quiet = true; break;
                case 'q': quiet = true; break;
                case 'A': against = optarg; break;
                case 'F': from_ann = true; break;
                case 'B': o.sbom = true; break;
                case 'D': o.base_from = optarg; break;
                case 'G':
                        if (cli_progress_parse(optarg, &pmode) < 0) {
                                rc = cli_usage(verb, "--progress takes auto, plain, tty or none, not '%s'",
                                               optarg);
                                goto out;
                        }
                        break;
                case 'R':
                case 'T': o.cache_repo = optarg; o.cache_write = true; break;
                case 'f': o.cache_repo = optarg; o.cache_write = false; break;
                case 'K': o.skip_if_built = true; break;
                case 'l': o.locked = true; break;
                case 'k': lock_path = strdup(optarg); break;
                case 'Y': pylock_path = optarg; break;
                case 'h': rc = cli_help_verb(verb); goto out;
                default: {
                        int k = cli_reg_option(verb, opt, optarg);
                        if (k < 0) {
                                rc = EXIT_USAGE;
                                goto out;
                        }
                        if (k == 0) {
                                rc = cli_usage(verb, "invalid option");
                                goto out;
                        }
                }
                }
                if (var)
                        sets[n_sets++] = kiln_strdupf("%s=%s", var, optarg);
        }
        if (optind + 1 != argc) {
                rc = cli_usage(verb, optind >= argc ? "missing RECIPE" : "too many arguments");
                goto out;
        }
        if (pylock_path && !locking) {
                rc = cli_usage(verb, "--pylock is an option of kiln lock");
                goto out;
        }
        if (!lock_path) {
                /* RECIPE.json -> RECIPE.lock.json */
                const char *rp = argv[optind];
                size_t n = strlen(rp);
                lock_path = n > 5 && !strcmp(rp + n - 5, ".json")
                                    ? kiln_strdupf("%.*s.lock.json", (int)(n - 5), rp)
                                    : kiln_strdupf("%s.lock.json", rp);
        }
        if (!locking && lock_path && access(lock_path, F_OK) == 0) {
                char *lb = NULL;
                size_t ll;
                if (kiln_read_file(lock_path, 4u << 20, &lb, &ll, &err) < 0 ||
                    !(o.lock = oci_json_parse(lb, ll, lock_path, &err))) {
                        free(lb);
                        rc = cli_fail(&err);
                        goto out;
                }
                free(lb);
        }
        if (verify != (against != NULL) || (!verify && from_ann)) {
                rc = cli_usage(verb, verify ? "--against REF is required"
                                            : "--against and --from-annotations are for kiln verify");
                goto out;
        }
        if (verify && (push || o.output)) {
                rc = cli_usage(verb, "verify builds into a private layout: no --push or --output");
                goto out;
        }
        if (verify && from_ann) {
                /* the variables the image was built with come first; --set still wins */
                _cleanup_(oci_store_freep) struct oci_store *ref = cli_open_place(against, false, &err);
                struct oci_fetched top = {0};
                json_t *m = NULL, *vars = NULL;
                const char *vs;
                if (!ref || oci_store_fetch(ref, NULL, &top, &err) < 0) {
                        rc = cli_fail(&err);
                        goto out;
                }
                m = oci_json_parse(top.buf, top.len, "manifest", &err);
                vs = json_string_value(json_object_get(json_object_get(m, "annotations"),
                                                       "dev.kiln.recipe.variables"));
                vars = vs ? oci_json_parse(vs, strlen(vs), "dev.kiln.recipe.variables", &err) : NULL;
                if (!vars || !json_is_object(vars)) {
                        if (!vs)
                                kiln_error_set(&err, KILN_E_NOT_FOUND,
                                               "'%s' has no dev.kiln.recipe.variables annotation",
                                               against);
                        json_decref(m);
                        json_decref(vars);
                        oci_fetched_release(&top);
                        rc = cli_fail(&err);
                        goto out;
                }
                {
                        const char *k;
                        json_t *v;
                        size_t extra = json_object_size(vars), i = n_sets;
                        char **ns = realloc(sets, (n_sets + extra + 1) * sizeof(*sets));
                        if (!ns) {
                                rc = EXIT_INTERNAL;
                                goto out;
                        }
                        sets = ns;
                        memmove(sets + extra, sets, n_sets * sizeof(*sets));
                        i = 0;
                        json_object_foreach(vars, k, v) sets[i++] =
                                kiln_strdupf("%s=%s", k, json_string_value(v) ? json_string_value(v) : "");
                        n_sets += extra;
                }
                json_decref(m);
                json_decref(vars);
                oci_fetched_release(&top);
        }
        if (verify || locking)
                o.sbom = false; /* a rebuild to compare, a lock: no image to describe */
        if (verify) {
                const char *tmp = getenv("TMPDIR");
                vdir = kiln_strdupf("%s/kiln-verify-XXXXXX", tmp && *tmp ? tmp : "/tmp");
                if (!vdir || !mkdtemp(vdir)) {
                        kiln_error_set(&err, KILN_E_IO, "cannot create a directory for the rebuild");
                        rc = cli_fail(&err);
                        goto out;
                }
                voutput = kiln_strdupf("oci:%s/image", vdir);
                o.output = voutput;
        }
        if (push && o.output) {
                rc = cli_usage("build", "--push and --output exclude each other");
                goto out;
        }
        if (!push && !o.output)
                o.output = DEFAULT_OUTPUT;
        cli_progress_begin(quiet ? CLI_PROGRESS_NONE : pmode);
        /* every line is shown as it comes in plain mode; on a terminal the
         * last few, under the layer's row */
        sout.stream = cli_progress_mode() == CLI_PROGRESS_PLAIN;
        o.step_log = &slog;
        o.layer_state = on_layer_state;
        {
                struct oci_copy_opts hooks = {0};
                cli_progress_attach(&hooks);
                o.copy_progress = hooks.progress;
                o.copy_bytes = hooks.bytes;
                o.copy_ctx = hooks.progress_ctx;
        }
        o.sets = (const char *const *)sets;
        o.n_sets = n_sets;
        o.fetch = fetch_input;
        o.fetch_signed = fetch_signed;
        o.fetch_ctx = &cli_reg_opts;
        if (kiln_read_file(argv[optind], RECIPE_FILE_MAX, &rbuf, &rlen, &err) == 0) {
                oci_digest_of_buffer(rbuf, rlen, &rdig);
                o.recipe_digest = rdig.str;
        }
        r = recipe_load(argv[optind], &err);
        if (locking) {
                json_t *lock = NULL;
                char *buf = NULL;
                char *py = NULL;
                if (!r || recipe_image_lock(r, &o, &lock, &err) < 0 ||
                    !(buf = json_dumps(lock, JSON_INDENT(2) | JSON_PRESERVE_ORDER)) ||
                    (pylock_path && (recipe_pylock_format(lock, &py, &err) < 0 ||
                                     kiln_write_file_atomic(pylock_path, py, strlen(py), 0644,
                                                            &err) < 0)) ||
                    kiln_write_file_atomic(lock_path, buf, strlen(buf), 0644, &err) < 0) {
                        json_decref(lock);
                        free(buf);
                        free(py);
                        rc = cli_fail(&err);
                        goto out;
                }
                free(py);
                printf("%s\n", lock_path);
                if (pylock_path)
                        printf("%s\n", pylock_path);
                json_decref(lock);
                free(buf);
                goto out;
        }
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (r && recipe_image_build(r, &o, &res, &err) == 0) {
                struct timespec t1;
                clock_gettime(CLOCK_MONOTONIC, &t1);
                cli_progress_end();
                if (!quiet && !verify && !res.skipped) {
                        char line[256];
                        snprintf(line, sizeof(line),
                                 "built %u layers, %u cached (%u from the cache repository); "
                                 "%u blobs copied, %u already there; %.1fs",
                                 res.layers_built, res.layers_cached, res.layers_from_repo,
                                 res.blobs_copied, res.blobs_skipped,
                                 (double)(t1.tv_sec - t0.tv_sec) +
                                         (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
                        cli_progress_message(line);
                }
        } else {
                cli_progress_end();
                rc = verify ? 2 : cli_fail(&err);
                if (verify)
                        cli_fail(&err);
                goto out;
        }
        if (verify) {
                _cleanup_(oci_store_freep) struct oci_store *a = NULL;
                _cleanup_(oci_store_freep) struct oci_store *b = NULL;
                _cleanup_free_ char *built = NULL;
                /* the rebuilt image, by the digest it was written with */
                built = kiln_strdupf("%s:%s", voutput, res.digest.str);
                a = built ? cli_open_place(built, false, &err) : NULL;
                struct layer_diff_opts dopts = {.finding = print_finding};
                bool same = false;
                if (a)
                        b = cli_open_place(against, false, &err);
                if (!a || !b || layer_image_diff(a, b, &dopts, &same, &err) < 0) {
                        cli_fail(&err);
                        rc = 2;
                        goto out;
                }
                if (same)
                        printf("identical %s\n", res.digest.str);
                rc = same ? EXIT_OK : EXIT_FAIL;
                goto out;
        }
        if (json) {
                json_t *j = json_object(), *tags = json_array();
                char *s;
                for (size_t i = 0; i < res.n_tags; i++)
                        json_array_append_new(tags, json_string(res.tags[i]));
                json_object_set_new(j, "digest", json_string(res.digest.str));
                json_object_set_new(j, "tags", tags);
                json_object_set_new(j, "output", push ? json_null() : json_string(o.output));
                if (res.revision)
                        json_object_set_new(j, "revision", json_string(res.revision));
                json_object_set_new(j, "layersBuilt", json_integer(res.layers_built));
                json_object_set_new(j, "layersCached", json_integer(res.layers_cached));
                json_object_set_new(j, "layersFromCacheRepo", json_integer(res.layers_from_repo));
                json_object_set_new(j, "skipped", json_boolean(res.skipped));
                json_object_set_new(j, "blobsCopied", json_integer(res.blobs_copied));
                json_object_set_new(j, "blobsSkipped", json_integer(res.blobs_skipped));
                json_object_set_new(j, "sbom", res.sbom.str[0] ? json_string(res.sbom.str)
                                                              : json_null());
                {
                        json_t *layers = json_array();
                        for (size_t i = 0; i < res.n_layers; i++) {
                                const struct recipe_layer_report *l = &res.layers[i];
                                json_array_append_new(
                                        layers,
                                        json_pack("{s:s?, s:s, s:f, s:I, s:s}", "name", l->name,
                                                  "state", l->state, "seconds",
                                                  (double)(long)(l->seconds * 1000) / 1000,
                                                  "bytes", (json_int_t)l->bytes, "digest",
                                                  l->digest.str));
                        }
                        json_object_set_new(j, "layers", layers);
                }
                s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
                printf("%s\n", s ? s : "{}");
                free(s);
                json_decref(j);
        } else {
                for (size_t i = 0; i < res.n_tags; i++)
                        printf("%s\n", res.tags[i]);
                printf("%s\n", res.digest.str);
        }
out:
        if (vdir)
                kiln_rm_rf(vdir);
        json_decref(o.lock);
        free(lock_path);
        recipe_image_result_release(&res);
        recipe_free(r);
        for (size_t i = 0; i < n_sets; i++)
                free(sets[i]);
        free(sets);
        return rc;
}

int cmd_build(int argc, char **argv)
{
        return run_build("build", argc, argv);
}

int cmd_lock(int argc, char **argv)
{
        return run_build("lock", argc, argv);
}

int cmd_verify(int argc, char **argv)
{
        return run_build("verify", argc, argv);
}
