/* kiln append BASE --layer SRC[:DEST[:MODE]] ... -t DST */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cache.h"
#include "cli.h"
#include "cmd_layers.h"
#include "image_edit.h"
#include "json.h"
#include "place.h"
#include "source.h"
#include "tarsource.h"
#include "util.h"
#include "writer.h"

struct layer_spec {
        char *src; /* NULL: a layer of --file entries only */
        char *dest;
        int mode;
        struct layer_spec *files; /* --file entries added to this layer */
        size_t n_files;
        bool keep_modes; /* --keep-modes: the host's permission bits */
};

/* SRC[:DEST[:MODE]]: MODE is octal; DEST starts with '/'. */
static int parse_spec(const char *s, struct layer_spec *ret)
{
        char *buf = strdup(s), *c;

        if (!buf)
                return -1;
        ret->mode = -1;
        ret->dest = NULL;
        c = strrchr(buf, ':');
        if (c && c[1] && strspn(c + 1, "01234567") == strlen(c + 1) && strchr(buf, ':') != c) {
                ret->mode = (int)strtol(c + 1, NULL, 8);
                *c = 0;
                c = strrchr(buf, ':');
        }
        if (c && c[1] == '/') {
                ret->dest = strdup(c + 1);
                *c = 0;
        } else if (ret->mode >= 0) {
                free(buf);
                return -1;
        }
        ret->src = buf;
        if (!ret->dest)
                ret->dest = strdup("/");
        return ret->dest ? 0 : -1;
}

/* The directory of place when it is an OCI layout (a new string), else NULL:
 * blobs from the cache are hardlinked into a layout (layer_cache_place_blob),
 * anything else goes through the store, which verifies. */
static char *layout_dir_of(const char *place)
{
        struct kiln_error e = KILN_ERROR_INIT;
        struct oci_place p;
        char *dir = NULL;

        if (oci_place_parse(place, &p, &e) < 0)
                return NULL;
        if (p.kind == OCI_PLACE_LAYOUT)
                dir = strdup(p.path);
        oci_place_release(&p);
        return dir;
}

static int add_single_file(struct layer_source *s, const struct layer_spec *sp,
                           struct kiln_error *err)
{
        _cleanup_free_ char *target = NULL;
        size_t l = strlen(sp->dest);

        if (l == 0 || sp->dest[l - 1] == '/') {
                const char *b = strrchr(sp->src, '/');
                target = kiln_strdupf("%s%s", sp->dest, b ? b + 1 : sp->src);
        } else {
                target = strdup(sp->dest);
        }
        if (!target)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        return layer_source_add_file(s, sp->src, target, sp->mode, err);
}

static int build_one(struct layer_cache *cache, bool use_cache, const struct layer_spec *sp,
                     const char *const *excludes, size_t n_excludes,
                     const struct layer_writer_opts *wo, struct layer_result *res, bool *hit,
                     struct kiln_error *err)
{
        _cleanup_(layer_source_freep) struct layer_source *s = layer_source_new(err);
        struct stat st;

        if (!s)
                return -1;
        s->keep_caps = wo->keep_caps;
        s->keep_modes = sp->keep_modes;
        if (sp->src && stat(sp->src, &st) < 0)
                return kiln_error_set(err, KILN_E_NOT_FOUND, "layer source '%s' does not exist",
                                      sp->src);
        if (sp->src && S_ISREG(st.st_mode) && layer_tar_source_name(sp->src)) {
                if (sp->mode >= 0 || sp->n_files)
                        return kiln_error_set(err, KILN_E_USAGE,
                                              "a tar source is a layer of its own: '%s'", sp->src);
                *hit = false;
                return layer_cache_build_tar(cache, sp->src, sp->dest, wo, res, err);
        }
        if (sp->src && S_ISDIR(st.st_mode)) {
                if (sp->mode >= 0)
                        return kiln_error_set(err, KILN_E_USAGE,
                                              "a mode is only for single files: '%s'", sp->src);
                if (layer_source_add_tree(s, sp->src, sp->dest, excludes, n_excludes, err) < 0)
                        return -1;
        } else if (sp->src && add_single_file(s, sp, err) < 0) {
                return -1;
        }
        for (size_t i = 0; i < sp->n_files; i++)
                if (add_single_file(s, &sp->files[i], err) < 0)
                        return -1;
        if (layer_source_finish(s, err) < 0)
                return -1;
        return layer_cache_build(cache, s, wo, use_cache, res, hit, err);
}

/* What every layer of one append is written with. */
struct append_ctx {
        struct layer_cache *cache;
        bool use_cache, quiet;
        const char *const *excludes;
        size_t n_excludes;
        const struct layer_writer_opts *wo;
        struct oci_store *dst;
        const char *laydir; /* dst's directory when it is a layout, else NULL */
};

static const char *spec_name(const struct layer_spec *sp)
{
        return sp->src ? sp->src : "files";
}

/* Puts the blob of res (as d) in the destination: hardlinked from the cache
 * into a layout, else streamed from the cache.  A cached entry that does
 * not verify is rebuilt, once (cache entries are hints). */
static int put_blob(const struct append_ctx *c, const struct layer_spec *sp,
                    struct layer_result *res, struct oci_descriptor *d, bool hit,
                    struct kiln_error *err)
{
        struct kiln_error e2 = KILN_ERROR_INIT;
        struct oci_reader *r;
        bool have = false;

        if (c->laydir && (layer_cache_place_blob(c->cache, res, c->laydir) ||
                          (hit && layer_cache_verify_blob(c->cache, res, &e2) == 0 &&
                           layer_cache_place_blob(c->cache, res, c->laydir))))
                return 0; /* written once: the cache's blob is the layout's */
        if (c->dst->ops->has_blob(c->dst, d, &have, err) < 0)
                return -1;
        if (have)
                return 0;
        r = layer_cache_open_blob(c->cache, res, err);
        if (r && c->dst->ops->put_blob(c->dst, d, r, err) == 0)
                return 0;
        if (!hit)
                return -1;
        if (!c->quiet)
                fprintf(stderr, "kiln: warning: cached layer '%s' is bad (%s); rebuilding\n",
                        spec_name(sp), err->msg);
        kiln_error_clear(err);
        if (build_one(c->cache, false, sp, c->excludes, c->n_excludes, c->wo, res, &hit, err) < 0)
                return -1;
        d->digest = res->digest;
        d->size = res->size;
        r = layer_cache_open_blob(c->cache, res, err);
        if (!r)
                return -1;
        return c->dst->ops->put_blob(c->dst, d, r, err);
}

/* Builds each layer (or finds it in the cache), puts its blob in the
 * destination and adds it to the image, with its history entry. */
static int append_layers(const struct append_ctx *c, const struct layer_spec *specs,
                         size_t n_specs, struct oci_image_edit *img, struct kiln_error *err)
{
        for (size_t i = 0; i < n_specs; i++) {
                /* the destination in the image, never the host path */
                struct oci_history h = {.dated = true, .created_by = specs[i].dest,
                                        .comment = "kiln append"};
                struct oci_descriptor d = {0};
                struct layer_result res;
                bool hit = false;
                int rc;

                if (build_one(c->cache, c->use_cache, &specs[i], c->excludes, c->n_excludes,
                              c->wo, &res, &hit, err) < 0) {
                        kiln_error_prefix(err, "layer '%s'",
                                          specs[i].src ? specs[i].src : specs[i].files[0].src);
                        return -1;
                }
                d.media_type = res.media_type;
                d.digest = res.digest;
                d.size = res.size;
                d.annotations = json_pack("{s:s}", LAYER_COMPRESSION_ANNOTATION, res.compressor);
                if (!d.annotations)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                rc = put_blob(c, &specs[i], &res, &d, hit, err);
                if (rc == 0)
                        rc = oci_image_edit_add_layer(img, &d, &res.diff_id, &h, err);
                json_decref(d.annotations);
                if (rc < 0)
                        return -1;
                if (!c->quiet)
                        fprintf(stderr, "%s %s %s (diffID %s)\n", hit ? "cached" : "built",
                                spec_name(&specs[i]), res.digest.str, res.diff_id.str);
        }
        return 0;
}

/* The image: the base (or scratch) with the layers of specs, written to
 * tag: the layers' blobs, the base's, the config, the manifest, the tag. */
static int append_image(struct cli_args *args, const char *base,
                        const struct oci_platform *plat, const char *tag, const char *cache_dir,
                        struct append_ctx *c, const struct layer_spec *specs, size_t n_specs,
                        struct kiln_error *err)
{
        _cleanup_(oci_store_freep) struct oci_store *src = NULL;
        _cleanup_(oci_store_freep) struct oci_store *dst = NULL;
        _cleanup_(layer_cache_freep) struct layer_cache *cache = NULL;
        _cleanup_(oci_image_edit_freep) struct oci_image_edit *img = NULL;
        _cleanup_free_ char *laydir = NULL;
        struct oci_descriptor md;

        if (strcmp(base, "scratch") != 0) {
                src = cli_open_place(args, base, false, err);
                img = src ? oci_image_edit_load(src, NULL, plat, err) : NULL;
        } else {
                img = oci_image_edit_new(NULL, err);
        }
        if (!img)
                return -1;
        dst = cli_open_place(args, tag, true, err);
        if (!dst)
                return -1;
        laydir = layout_dir_of(tag);
        cache = layer_cache_open(cache_dir, err);
        if (!cache)
                return -1;
        c->cache = cache;
        c->dst = dst;
        c->laydir = laydir;
        if (append_layers(c, specs, n_specs, img, err) < 0 ||
            oci_image_edit_write(img, dst, (const char *const[]){NULL}, 1, &md, err) < 0 ||
            oci_store_commit(dst, err) < 0)
                return -1;
        printf("%s\n", md.digest.str);
        return 0;
}

int cmd_append(struct cli_args *args)
{
        struct kiln_error err = KILN_ERROR_INIT;
        _cleanup_free_ struct layer_spec *specs = NULL;
        char **excludes = NULL;
        size_t n_specs = 0, n_excludes = 0;
        bool use_cache = !cli_flag(args, 'N'), quiet = args->quiet, keep_modes = cli_flag(args, 'm');
        const char *tag = cli_arg(args, 't'), *cache_dir = cli_arg(args, 'C');
        struct layer_writer_opts wo;
        int rc = EXIT_OK;

        if (layer_writer_opts_init(&wo, &err) < 0)
                return cli_fail(&err);
        cli_writer_opts(args, &wo);
        wo.threads = (int)cli_num(args, 'T', wo.threads);
        wo.keep_owners = cli_flag(args, 'o');
        wo.keep_caps = cli_flag(args, 'k');
        cli_foreach_value(args, v)
        {
                const char *arg = v->arg;
                switch (v->opt->key) {
                case 'l': {
                        struct layer_spec *ns = realloc(specs, (n_specs + 1) * sizeof(*ns));
                        if (!ns)
                                return cli_usage("append", "out of memory");
                        specs = ns;
                        if (parse_spec(arg, &specs[n_specs]) < 0)
                                return cli_usage(
                                    "append", "invalid layer '%s': use SRC[:DEST[:MODE]]", arg);
                        specs[n_specs].files = NULL;
                        specs[n_specs].n_files = 0;
                        n_specs++;
                        break;
                }
                case 'f': {
                        struct layer_spec f, *ls, *nf;
                        if (parse_spec(arg, &f) < 0 || !strcmp(f.dest, "/"))
                                return cli_usage("append", "invalid file '%s': use SRC:DEST[:MODE]",
                                                 arg);
                        if (n_specs == 0) {
                                struct layer_spec *ns = realloc(specs, sizeof(*ns));
                                if (!ns)
                                        return cli_usage("append", "out of memory");
                                specs = ns;
                                memset(&specs[0], 0, sizeof(specs[0]));
                                specs[0].mode = -1;
                                specs[0].dest = strdup("/");
                                n_specs = 1;
                        }
                        ls = &specs[n_specs - 1];
                        nf = realloc(ls->files, (ls->n_files + 1) * sizeof(*nf));
                        if (!nf)
                                return cli_usage("append", "out of memory");
                        ls->files = nf;
                        ls->files[ls->n_files++] = f;
                        break;
                }
                case 'x': {
                        char **nx = realloc(excludes, (n_excludes + 2) * sizeof(*nx));
                        if (!nx)
                                return cli_usage("append", "out of memory");
                        excludes = nx;
                        excludes[n_excludes++] = strdup(arg);
                        excludes[n_excludes] = NULL;
                        break;
                }
                case 'i': {
                        char **pats = NULL;
                        size_t n = 0;
                        char **nx;
                        if (layer_exclude_read(arg, &pats, &n, &err) < 0)
                                return cli_fail(&err);
                        nx = realloc(excludes, (n_excludes + n + 1) * sizeof(*nx));
                        if (!nx)
                                return cli_usage("append", "out of memory");
                        excludes = nx;
                        for (size_t i = 0; i < n; i++)
                                excludes[n_excludes++] = pats[i];
                        excludes[n_excludes] = NULL;
                        free(pats);
                        break;
                }
                default:
                        break;
                }
        }
        if (args->argc != 1)
                return cli_usage("append", "expected one BASE (an image place or 'scratch')");
        if (!tag)
                return cli_usage("append", "missing -t DST");
        if (n_specs == 0)
                return cli_usage("append", "missing --layer SRC[:DEST] or --file SRC:DEST");
        for (size_t i = 0; i < n_specs; i++)
                specs[i].keep_modes = keep_modes;

        {
                struct append_ctx c = {.use_cache = use_cache, .quiet = quiet,
                                       .excludes = (const char *const *)excludes,
                                       .n_excludes = n_excludes, .wo = &wo};
                if (append_image(args, args->argv[0],
                                 args->has_platform ? &args->platform : NULL, tag, cache_dir, &c,
                                 specs, n_specs, &err) < 0)
                        rc = cli_fail(&err);
        }
        for (size_t i = 0; i < n_specs; i++) {
                free(specs[i].src);
                free(specs[i].dest);
                for (size_t j = 0; j < specs[i].n_files; j++) {
                        free(specs[i].files[j].src);
                        free(specs[i].files[j].dest);
                }
                free(specs[i].files);
        }
        layer_exclude_free(excludes, n_excludes);
        return rc;
}
