/* kiln fsck oci:DIR */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "fsck.h"
#include "place.h"
#include "tar_read.h"

static void report(void *ctx, const char *line)
{
        (void)ctx;
        fputs("problem: ", stdout);
        cli_put_text(line, stdout); /* names from the layout's index */
        putchar('\n');
}

/* --deep: the decompressed layer must hash to the config's diffID. */
static int deep_check(void *ctx, struct oci_layout *l, const struct oci_descriptor *layer,
                      const char *diff_id, struct kiln_error *err)
{
        struct oci_reader *r = oci_layout_blob_open(l, &layer->digest, layer->size, err);
        struct oci_digest got;

        (void)ctx;
        if (!r)
                return -1;
        if (!oci_media_type_is_layer(layer->media_type)) {
                oci_reader_free(r);
                return 0;
        }
        if (layer_blob_diff_id(r, layer->media_type, layer->digest.str, &got, err) < 0)
                return -1;
        if (!diff_id || strcmp(got.str, diff_id))
                return kiln_error_set(err, KILN_E_DIGEST,
                                      "layer '%s' decompresses to '%s' but the config's diffID is '%s'",
                                      layer->digest.str, got.str, diff_id ? diff_id : "(none)");
        return 0;
}

int cmd_fsck(struct cli_args *a)
{
        struct kiln_error err = KILN_ERROR_INIT;
        struct oci_fsck_result res;
        struct oci_place p;
        struct oci_layout *l;
        bool quiet = a->quiet, deep = cli_flag(a, 'd');

        if (a->argc != 1)
                return cli_usage("fsck", "expected one oci:DIR");
        if (oci_place_parse(a->argv[0], &p, &err) < 0)
                return cli_fail(&err);
        if (p.kind != OCI_PLACE_LAYOUT) {
                oci_place_release(&p);
                return cli_usage("fsck", "'%s' is not an OCI layout (oci:DIR)", a->argv[0]);
        }
        l = oci_layout_open(p.path, false, &err);
        oci_place_release(&p);
        if (!l)
                return cli_fail(&err);
        oci_layout_fsck(l, report, NULL, deep ? deep_check : NULL, &res, &err);
        oci_layout_free(l);
        if (!quiet)
                printf("%u blobs checked, %u problems%s", res.blobs_checked, res.problems,
                       res.temp_files ? "" : "\n");
        if (!quiet && res.temp_files)
                printf(", %u leftover temp files of interrupted writes\n", res.temp_files);
        return res.problems ? EXIT_FAIL : EXIT_OK;
}
