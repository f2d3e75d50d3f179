#include "recipe_validate.h"

#include <archive_entry.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "tar_read.h"
#include "util.h"

struct profile {
        const char *arch, *torch_prefix, *cuda_suffix, *fa_major; /* fa_major NULL: none */
};

/* the linnaeus image matrix (shared/design/architecture.md) */
static const struct profile profiles[] = {
        {"hopper", "2.8.0", "+cu128", "3"},
        {"ampere", "2.7.1", "+cu126", "2"},
        {"turing", "2.7.1", "+cu126", NULL},
        {"pre-ampere", "2.7.1", "+cu126", NULL}, /* the older name of turing */
};

static char *norm(const char *p)
{
        while (p[0] == '.' && p[1] == '/')
                p += 2;
        while (*p == '/')
                p++;
        {
                char *s = strdup(p);
                size_t n = s ? strlen(s) : 0;
                while (n && s[n - 1] == '/')
                        s[--n] = '\0';
                return s;
        }
}

static void remove_tree(json_t *files, const char *path, int below_layer)
{
        size_t n = strlen(path);
        const char *k;
        json_t *v;
        void *tmp;

        json_object_foreach_safe(files, tmp, k, v)
        {
                bool under = n == 0 || (!strncmp(k, path, n) && (k[n] == '/' || k[n] == '\0'));
                if (!under)
                        continue;
                if (below_layer >= 0 && json_integer_value(v) >= below_layer)
                        continue;
                if (n && below_layer >= 0 && k[n] == '\0')
                        continue; /* an opaque directory keeps itself */
                json_object_del(files, k);
        }
}

/* Reads the layers in order into files (path -> layer index), applying
 * whiteouts; keeps the METADATA of .dist-info directories in meta. */
static int scan_layers(struct oci_store *st, const struct oci_manifest *m, json_t *files,
                       json_t *meta, struct kiln_error *err)
{
        char buf[65536];

        for (size_t i = 0; i < m->n_layers; i++) {
                struct layer_tar_reader *r = layer_tar_reader_new(
                        st->ops->open_blob(st, &m->layers[i], err), m->layers[i].media_type,
                        m->layers[i].digest.str, err);
                struct archive_entry *e;
                int rc;

                if (!r)
                        return -1;
                while ((rc = layer_tar_reader_next(r, &e, err)) == 1) {
                        _cleanup_free_ char *p = norm(archive_entry_pathname(e));
                        const char *base;
                        if (!p)
                                continue;
                        base = strrchr(p, '/') ? strrchr(p, '/') + 1 : p;
                        if (!strcmp(base, ".wh..wh..opq")) {
                                p[base - p ? (size_t)(base - p - 1) : 0] = '\0';
                                remove_tree(files, p, (int)i);
                                continue;
                        }
                        if (!strncmp(base, ".wh.", 4)) {
                                _cleanup_free_ char *victim = kiln_strdupf(
                                        "%.*s%s", (int)(base - p), p, base + 4);
                                if (victim)
                                        remove_tree(files, victim, -1);
                                continue;
                        }
                        json_object_set_new(files, p, json_integer((json_int_t)i));
                        if (str_has_suffix(p, ".dist-info/METADATA") &&
                            archive_entry_size(e) < 1024 * 1024) {
                                ssize_t n = layer_tar_reader_data(r, buf, sizeof(buf) - 1, err);
                                if (n < 0)
                                        break;
                                buf[n] = '\0';
                                json_object_set_new(meta, p, json_string(buf));
                        }
                }
                if (rc == 0)
                        rc = layer_tar_reader_finish(r, err);
                layer_tar_reader_free(r);
                if (rc < 0)
                        return -1;
        }
        return 0;
}

/* The version of distribution dist ("torch", "flash_attn") from its
 * .dist-info directory name, or NULL. */
static const char *dist_version(json_t *files, const char *dist, char *buf, size_t len)
{
        const char *k;
        json_t *v;
        size_t dl = strlen(dist);

        json_object_foreach(files, k, v)
        {
                /* the .dist-info directory, or its METADATA when the tar
                 * carries no entry for the directory itself */
                char path[4096];
                const char *slash, *name, *end;
                snprintf(path, sizeof(path), "%s", k);
                if (str_has_suffix(path, ".dist-info/METADATA"))
                        path[strlen(path) - strlen("/METADATA")] = '\0';
                slash = strrchr(path, '/');
                name = slash ? slash + 1 : path;
                if (!str_has_suffix(name, ".dist-info") || strncmp(name, dist, dl) != 0 ||
                    name[dl] != '-')
                        continue;
                if (!strstr(path, "-packages/"))
                        continue;
                end = name + strlen(name) - strlen(".dist-info");
                snprintf(buf, len, "%.*s", (int)(end - (name + dl + 1)), name + dl + 1);
                return buf;
        }
        return NULL;
}

static const char *env_get(json_t *cfg, const char *name)
{
        json_t *env = json_object_get(json_object_get(cfg, "config"), "Env"), *v;
        size_t i, n = strlen(name);

        json_array_foreach(env, i, v)
        {
                const char *s = json_string_value(v);
                if (s && !strncmp(s, name, n) && s[n] == '=')
                        return s + n + 1;
        }
        return NULL;
}

static void report(const struct recipe_validate_opts *o, unsigned *fails, const char *name, bool ok,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void report(const struct recipe_validate_opts *o, unsigned *fails, const char *name, bool ok,
                   const char *fmt, ...)
{
        char detail[512];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(detail, sizeof(detail), fmt, ap);
        va_end(ap);
        if (!ok)
                (*fails)++;
        if (o->check)
                o->check(o->ctx, name, ok, detail);
}

int recipe_validate_image(struct oci_store *st, const struct recipe_validate_opts *o,
                          unsigned *ret_failures, struct kiln_error *err)
{
        const struct profile *pr = NULL;
        struct oci_image img = {0};
        const struct oci_manifest *m = NULL;
        _cleanup_free_ char *py = NULL, *src = NULL;
        json_t *cfg = NULL, *files = json_object(), *meta = json_object();
        const char *cuda, *pp, *wd;
        char v1[128], v2[128], v3[128], fav[128];
        const char *tv, *vv, *av, *fa, *fa3;
        unsigned fails = 0;
        int rc = -1;

        for (size_t i = 0; i < ARRAY_SIZE(profiles); i++)
                if (o->arch && !strcmp(o->arch, profiles[i].arch))
                        pr = &profiles[i];
        if (!pr) {
                kiln_error_set(err, KILN_E_INVALID,
                               "unknown arch '%s': expected hopper, ampere, turing or pre-ampere",
                               o->arch ? o->arch : "");
                goto out;
        }
        if (oci_image_load(st, NULL, o->platform, &img, err) < 0)
                goto out;
        m = img.m;
        cfg = img.config;
        if (!cfg || scan_layers(st, m, files, meta, err) < 0)
                goto out;

        cuda = env_get(cfg, "CUDA_VERSION");
        report(o, &fails, "cuda", cuda && str_has_prefix(cuda, "12.8"),
               "CUDA_VERSION=%s (want 12.8.x)", cuda ? cuda : "(unset)");
        py = norm(o->python ? o->python : "/usr/bin/python3.11");
        report(o, &fails, "python", py && json_object_get(files, py), "/%s %s", py ? py : "",
               py && json_object_get(files, py) ? "present" : "missing");
        tv = dist_version(files, "torch", v1, sizeof(v1));
        report(o, &fails, "torch",
               tv && str_has_prefix(tv, pr->torch_prefix) && str_has_suffix(tv, pr->cuda_suffix),
               "torch %s (want %s*%s for %s)", tv ? tv : "missing", pr->torch_prefix,
               pr->cuda_suffix, pr->arch);
        vv = dist_version(files, "torchvision", v2, sizeof(v2));
        av = dist_version(files, "torchaudio", v3, sizeof(v3));
        report(o, &fails, "torchvision", vv && str_has_suffix(vv, pr->cuda_suffix),
               "torchvision %s (want *%s)", vv ? vv : "missing", pr->cuda_suffix);
        report(o, &fails, "torchaudio", av && str_has_suffix(av, pr->cuda_suffix),
               "torchaudio %s (want *%s)", av ? av : "missing", pr->cuda_suffix);
        fa = dist_version(files, "flash_attn", fav, sizeof(fav));
        fa3 = fa ? fa : dist_version(files, "flash_attn_3", fav, sizeof(fav));
        if (pr->fa_major)
                report(o, &fails, "flash-attn",
                       fa3 && str_has_prefix(fa3, pr->fa_major) && fa3[1] == '.',
                       "flash-attn %s (want v%s for %s)", fa3 ? fa3 : "missing", pr->fa_major,
                       pr->arch);
        else
                report(o, &fails, "flash-attn", !fa3, "flash-attn %s (want none for %s)",
                       fa3 ? fa3 : "absent", pr->arch);
        src = norm(o->source_path ? o->source_path : "/app/linnaeus");
        {
                bool any = false;
                const char *k;
                json_t *v;
                size_t n = src ? strlen(src) : 0;
                json_object_foreach(files, k, v) if (n && !strncmp(k, src, n) && k[n] == '/')
                        any = true;
                report(o, &fails, "source", any, "/%s %s", src ? src : "",
                       any ? "holds the source" : "is missing or empty");
        }
        pp = env_get(cfg, "PYTHONPATH");
        report(o, &fails, "pythonpath", pp && src && strstr(pp, src - 0) != NULL,
               "PYTHONPATH=%s (want it to hold /%s)", pp ? pp : "(unset)", src ? src : "");
        wd = json_string_value(json_object_get(json_object_get(cfg, "config"), "WorkingDir"));
        report(o, &fails, "workdir", wd && src && !strcmp(wd[0] == '/' ? wd + 1 : wd, src),
               "WorkingDir=%s", wd ? wd : "(unset)");
        *ret_failures = fails;
        rc = 0;
out:
        json_decref(files);
        json_decref(meta);
        oci_image_release(&img);
        return rc;
}
