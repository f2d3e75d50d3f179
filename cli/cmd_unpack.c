/* kiln unpack PLACE DIR */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmd_layers.h"
#include "unpack.h"
#include "util.h"

static void on_warn(void *ctx, const char *msg)
{
        (void)ctx;
        cli_warn("%s", msg);
}

static int parse_size(const char *s, long long *ret)
{
        char *end;
        long long v = strtoll(s, &end, 10);

        if (v < 0 || end == s)
                return -1;
        switch (*end) {
        case 0:
                break;
        case 'k':
        case 'K':
                v <<= 10;
                end++;
                break;
        case 'm':
        case 'M':
                v <<= 20;
                end++;
                break;
        case 'g':
        case 'G':
                v <<= 30;
                end++;
                break;
        default:
                return -1;
        }
        if (*end && strcmp(end, "iB") && strcmp(end, "B"))
                return -1;
        *ret = v;
        return 0;
}

int cmd_unpack(int argc, char **argv)
{
        static const struct option opts[] = {
            {"platform", required_argument, NULL, 'p'},
            {"max-size", required_argument, NULL, 'm'},
            {"max-total", required_argument, NULL, 't'},
            {"rootless", no_argument, NULL, 'r'},
            {"walk", no_argument, NULL, 'w'},
            CLI_HELP_OPTION,
            {NULL, 0, NULL, 0},
        };
        struct kiln_error err = KILN_ERROR_INIT;
        _cleanup_(oci_store_freep) struct oci_store *st = NULL;
        _cleanup_free_ char *platbuf = NULL;
        struct layer_unpack_opts uo;
        struct layer_unpacker *u = NULL;
        struct oci_image img = {0};
        struct oci_platform plat;
        bool have_plat = false;
        int opt, rc = EXIT_OK;

        layer_unpack_opts_init(&uo);
        uo.warn = on_warn;
        optind = 1;
        while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (opt) {
                case 'p':
                        free(platbuf);
                        platbuf = strdup(optarg);
                        if (!platbuf || oci_platform_parse(platbuf, &plat, &err) < 0)
                                return cli_fail(&err);
                        have_plat = true;
                        break;
                case 'm': {
                        long long v;
                        if (parse_size(optarg, &v) < 0)
                                return cli_usage("unpack", "invalid size '%s'", optarg);
                        uo.max_size = v;
                        break;
                }
                case 't': {
                        long long v;
                        if (parse_size(optarg, &v) < 0)
                                return cli_usage("unpack", "invalid size '%s'", optarg);
                        uo.max_total = v;
                        break;
                }
                case 'r':
                        uo.rootless = true;
                        break;
                case 'w':
                        uo.no_openat2 = true;
                        break;
                case 'h':
                        return cli_help_verb("unpack");
                default:
                        return cli_usage("unpack", "invalid option");
                }
        }
        if (optind + 2 != argc)
                return cli_usage("unpack", "expected PLACE and DIR");
        st = cli_open_place(argv[optind], false, &err);
        if (!st || oci_image_load(st, NULL, have_plat ? &plat : NULL, &img, &err) < 0)
                goto fail;
        u = layer_unpacker_new(argv[optind + 1], &uo, &err);
        if (!u)
                goto fail;
        for (size_t i = 0; i < img.m->n_layers; i++) {
                const struct oci_descriptor *d = &img.m->layers[i];
                struct oci_reader *r = st->ops->open_blob(st, d, &err);
                char what[200];

                snprintf(what, sizeof(what), "layer %zu '%s'", i + 1, d->digest.str);
                if (!r) {
                        kiln_error_prefix(&err, "%s", what);
                        goto fail;
                }
                if (layer_unpacker_apply(u, r, d->media_type, what, &err) < 0)
                        goto fail;
        }
        if (layer_unpacker_finish(u, &err) < 0)
                goto fail;
        goto out;
fail:
        rc = cli_fail(&err);
out:
        layer_unpacker_free(u);
        oci_image_release(&img);
        return rc;
}
