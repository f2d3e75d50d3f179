/* kiln diff A B: where two images differ.  Exit 0 identical, 1 different, 2 error. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "cmd_registry.h"
#include "diff.h"
#include "util.h"

struct out {
        bool json;
        json_t *arr;
};

static void on_finding(void *ctx, const struct layer_diff_finding *f)
{
        struct out *o = ctx;

        if (o->json) {
                json_t *j = json_object();
                json_object_set_new(j, "level", json_string(f->level));
                json_object_set_new(j, "what", json_string(f->what));
                json_object_set_new(j, "change", json_string(f->change));
                json_object_set_new(j, "a", f->a ? json_string(f->a) : json_null());
                json_object_set_new(j, "b", f->b ? json_string(f->b) : json_null());
                if (f->layer >= 0)
                        json_object_set_new(j, "layer", json_integer(f->layer));
                json_array_append_new(o->arr, j);
                return;
        }
        /* paths, labels and link targets are the images' text: escaped */
        if (!strcmp(f->change, "compression")) {
                printf("%s ", f->level);
                cli_put_text(f->what, stdout);
                fputs(": same content, different compression: ", stdout);
                cli_put_text(f->a, stdout);
                fputs(" -> ", stdout);
                cli_put_text(f->b, stdout);
                putchar('\n');
                return;
        }
        if (f->layer >= 0 && !strcmp(f->level, "file")) {
                fputs("file ", stdout);
                cli_put_text(f->what, stdout);
                printf(" (layer %d): %s", f->layer, f->change);
        } else {
                printf("%s ", f->level);
                cli_put_text(f->what, stdout);
                printf(": %s", f->change);
        }
        if (f->a || f->b)
                putchar(' ');
        if (f->a)
                cli_put_text(f->a, stdout);
        if (f->a && f->b)
                fputs(" -> ", stdout);
        if (f->b)
                cli_put_text(f->b, stdout);
        putchar('\n');
}

int cmd_diff(struct cli_args *a)
{
        struct kiln_error err = KILN_ERROR_INIT;
        _cleanup_(oci_store_freep) struct oci_store *from = NULL;
        _cleanup_(oci_store_freep) struct oci_store *to = NULL;
        struct out o = {.json = cli_flag(a, 'j')};
        struct layer_diff_opts dopts = {.finding = on_finding, .ctx = &o, .all = cli_flag(a, 'a')};
        bool same = false;

        if (a->argc != 2)
                return cli_usage("diff", "expected two places A and B");
        if (o.json)
                o.arr = json_array();
        from = cli_open_place(a, a->argv[0], false, &err);
        if (from)
                to = cli_open_place(a, a->argv[1], false, &err);
        if (!from || !to || layer_image_diff(from, to, &dopts, &same, &err) < 0) {
                cli_fail(&err);
                json_decref(o.arr);
                return 2; /* diff's own convention: 2 is an error */
        }
        if (o.json) {
                json_t *j = json_object();
                char *s;
                json_object_set_new(j, "identical", json_boolean(same));
                json_object_set_new(j, "findings", o.arr);
                s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
                printf("%s\n", s ? s : "{}");
                free(s);
                json_decref(j);
        } else if (same) {
                printf("identical\n");
        }
        return same ? EXIT_OK : EXIT_FAIL;
}
