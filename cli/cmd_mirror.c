/* kiln mirror LIST --to HOST[/PREFIX]: copies every image named in LIST (one
 * reference a line, '#' comments) to HOST/PREFIX/PATH, digests preserved,
 * tags kept.  Goes on after a failure and exits non-zero if any failed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmd_registry.h"
#include "progress.h"
#include "util.h"

#define LIST_MAX (4 * 1024 * 1024)

static char *trim(char *s)
{
        char *e;

        while (*s == ' ' || *s == '\t')
                s++;
        e = s + strlen(s);
        while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
                *--e = '\0';
        return s;
}

static int mirror_one(struct cli_args *a, const char *line, const char *to, unsigned jobs,
                      json_t *out, struct kiln_error *err)
{
        struct oci_ref src = {0}, dst = {0};
        struct oci_store *s = NULL, *d = NULL;
        struct oci_copy_opts copts = {.jobs = jobs};
        struct reg_stats st = {0};
        struct oci_copy_result res;
        _cleanup_free_ char *dst_str = NULL;
        int rc = -1;

        if (oci_ref_parse(line, &src, err) < 0)
                return -1;
        if (src.tag)
                dst_str = kiln_strdupf("%s/%s:%s", to, src.path, src.tag);
        else
                dst_str = kiln_strdupf("%s/%s@%s", to, src.path, src.digest.str);
        if (!dst_str) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto out;
        }
        if (oci_ref_parse(dst_str, &dst, err) < 0)
                goto out;
        s = reg_store_new(&src, &a->reg, false, err);
        d = s ? reg_store_new(&dst, &a->reg, true, err) : NULL;
        if (!s || !d)
                goto out;
        cli_progress_attach(&copts);
        /* by digest with a tag: copy that exact image */
        if (oci_image_copy(s, src.has_digest ? src.digest.str : NULL, d, &copts, &res, err) < 0 ||
            oci_store_commit(d, err) < 0)
                goto out;
        reg_client_stats(reg_store_client(d), &st);
        if (out) {
                char *sn = oci_ref_string(&src), *dn = oci_ref_string(&dst);
                json_array_append_new(
                        out, json_pack("{s:s?,s:s?,s:s,s:[s?],s:i,s:i,s:i,s:I}", "source", sn,
                                       "destination", dn, "digest", res.digest.str, "tags",
                                       src.tag, "blobsCopied",
                                       (int)(res.blobs_copied - st.blobs_mounted), "blobsMounted",
                                       (int)st.blobs_mounted, "blobsSkipped",
                                       (int)res.blobs_skipped, "bytesSent",
                                       (json_int_t)st.bytes_up));
                free(sn);
                free(dn);
        } else {
                printf("%s -> %s %s\n", line, dst_str, res.digest.str);
        }
        rc = 0;
out:
        oci_store_free(s);
        oci_store_free(d);
        oci_ref_release(&src);
        oci_ref_release(&dst);
        return rc;
}

int cmd_mirror(struct cli_args *a)
{
        struct kiln_error err = KILN_ERROR_INIT;
        const char *to = cli_arg(a, 't');
        _cleanup_free_ char *buf = NULL;
        size_t len;
        unsigned jobs = (unsigned)cli_num(a, CLI_K_JOBS, 4), failed = 0, done = 0;
        json_t *out = NULL;
        char *save = NULL;

        if (a->argc != 1 || !to)
                return cli_usage("mirror", "expected LIST and --to HOST[/PREFIX]");
        if (*to && to[strlen(to) - 1] == '/')
                return cli_usage("mirror", "invalid --to '%s': no trailing '/'", to);
        if (kiln_read_file(a->argv[0], LIST_MAX, &buf, &len, &err) < 0)
                return cli_fail(&err);
        if (cli_flag(a, 'j'))
                out = json_array();
        cli_progress_begin(out ? CLI_PROGRESS_NONE : cli_progress_opt(a));
        for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char *l = trim(line);
                struct kiln_error e = KILN_ERROR_INIT;
                if (!*l || *l == '#')
                        continue;
                if (mirror_one(a, l, to, jobs, out, &e) < 0) {
                        char msg[2048];
                        snprintf(msg, sizeof(msg), "kiln: error: mirror '%s': %s", l, e.msg);
                        cli_progress_message(msg);
                        failed++;
                        if (e.code != KILN_E_NOT_FOUND && e.code != KILN_E_DIGEST)
                                err = e;
                        else if (err.code == KILN_OK)
                                err = e;
                } else {
                        done++;
                }
        }
        cli_progress_end();
        if (!out && !a->quiet)
                fprintf(stderr, "mirrored %u of %u images\n", done, done + failed);
        if (out) {
                char *s = json_dumps(out, JSON_COMPACT);
                printf("%s\n", s ? s : "[]");
                free(s);
                json_decref(out);
        }
        if (failed)
                return cli_exit_code(err.code == KILN_OK ? KILN_E_GENERIC : err.code);
        return EXIT_OK;
}
