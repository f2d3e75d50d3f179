#include "fsck.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "util.h"

struct fsck {
        struct oci_layout *l;
        void (*report)(void *ctx, const char *line);
        void *ctx;
        oci_fsck_layer_fn deep;
        struct oci_fsck_result res;
        char **seen;
        size_t n_seen;
};

static void problem(struct fsck *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(struct fsck *f, const char *fmt, ...)
{
        char line[1024];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(line, sizeof(line), fmt, ap);
        va_end(ap);
        f->res.problems++;
        if (f->report)
                f->report(f->ctx, line);
}

static bool mark(struct fsck *f, const struct oci_digest *d)
{
        char **n;

        for (size_t i = 0; i < f->n_seen; i++)
                if (!strcmp(f->seen[i], d->str))
                        return false;
        n = realloc(f->seen, (f->n_seen + 1) * sizeof(*n));
        if (!n)
                return true;
        f->seen = n;
        f->seen[f->n_seen] = strdup(d->str);
        if (f->seen[f->n_seen])
                f->n_seen++;
        return true;
}

static void check_desc(struct fsck *f, const struct oci_descriptor *d, const char *where,
                       int depth);

static void check_blob(struct fsck *f, const struct oci_descriptor *d, const char *where)
{
        struct kiln_error e = KILN_ERROR_INIT;
        struct oci_reader *r = oci_layout_blob_open(f->l, &d->digest, d->size, &e);

        f->res.blobs_checked++;
        if (!r || oci_reader_drain(r, &e) < 0) {
                if (e.code == KILN_E_NOT_FOUND)
                        problem(f, "blob '%s' (%s) is missing", d->digest.str, where);
                else
                        problem(f, "%s (%s)", e.msg, where);
        }
        oci_reader_free(r);
}

static void check_document(struct fsck *f, const struct oci_descriptor *d, const char *where,
                           int depth)
{
        struct kiln_error e = KILN_ERROR_INIT;
        _cleanup_free_ char *buf = NULL;
        size_t len;
        char sub[256];

        f->res.blobs_checked++;
        if (oci_layout_blob_read(f->l, &d->digest, d->size, oci_manifest_limit(), &buf, &len,
                                 &e) < 0) {
                if (e.code == KILN_E_NOT_FOUND)
                        problem(f, "blob '%s' (%s) is missing", d->digest.str, where);
                else
                        problem(f, "%s (%s)", e.msg, where);
                return;
        }
        if (oci_media_type_doc_kind(d->media_type) == OCI_DOC_INDEX) {
                struct oci_index *x = NULL;
                if (oci_index_parse(buf, len, d->media_type, &x, &e) < 0) {
                        problem(f, "index '%s' (%s): %s", d->digest.str, where, e.msg);
                        return;
                }
                for (size_t i = 0; i < x->n_manifests; i++) {
                        snprintf(sub, sizeof(sub), "entry %zu of index %.19s", i, d->digest.str);
                        check_desc(f, &x->manifests[i], sub, depth + 1);
                }
                oci_index_free(x);
        } else {
                struct oci_manifest *m = NULL;
                struct oci_config *c = NULL;
                _cleanup_free_ char *cfg = NULL;
                size_t cfglen;
                if (oci_manifest_parse(buf, len, d->media_type, &m, &e) < 0) {
                        problem(f, "manifest '%s' (%s): %s", d->digest.str, where, e.msg);
                        return;
                }
                snprintf(sub, sizeof(sub), "config of manifest %.19s", d->digest.str);
                if (mark(f, &m->config.digest)) {
                        f->res.blobs_checked++;
                        if (oci_layout_blob_read(f->l, &m->config.digest, m->config.size,
                                                 OCI_CONFIG_MAX, &cfg, &cfglen, &e) < 0) {
                                if (e.code == KILN_E_NOT_FOUND)
                                        problem(f, "blob '%s' (%s) is missing",
                                                m->config.digest.str, sub);
                                else
                                        problem(f, "%s (%s)", e.msg, sub);
                        } else if (oci_media_type_is_config(m->config.media_type)) {
                                if (oci_config_parse(cfg, cfglen, &c, &e) < 0)
                                        problem(f, "config '%s' (%s): %s", m->config.digest.str,
                                                sub, e.msg);
                                else if (json_array_size(c->diff_ids) != m->n_layers)
                                        problem(f,
                                                "config '%s' lists %zu diff_ids but manifest '%s' has %zu layers",
                                                m->config.digest.str, json_array_size(c->diff_ids),
                                                d->digest.str, m->n_layers);
                        }
                }
                for (size_t i = 0; i < m->n_layers; i++) {
                        snprintf(sub, sizeof(sub), "layer %zu of manifest %.19s", i,
                                 d->digest.str);
                        if (mark(f, &m->layers[i].digest)) {
                                unsigned before = f->res.problems;
                                check_blob(f, &m->layers[i], sub);
                                if (f->deep && c && f->res.problems == before &&
                                    i < json_array_size(c->diff_ids) &&
                                    f->deep(f->ctx, f->l, &m->layers[i],
                                            json_string_value(json_array_get(c->diff_ids, i)),
                                            &e) < 0)
                                        problem(f, "%s (%s)", e.msg, sub);
                        }
                }
                oci_config_free(c);
                oci_manifest_free(m);
        }
}

static void check_desc(struct fsck *f, const struct oci_descriptor *d, const char *where,
                       int depth)
{
        if (!mark(f, &d->digest))
                return;
        if (depth > 4) {
                problem(f, "index nesting too deep at '%s' (%s)", d->digest.str, where);
                return;
        }
        if (oci_media_type_doc_kind(d->media_type) != OCI_DOC_UNKNOWN)
                check_document(f, d, where, depth);
        else
                check_blob(f, d, where);
}

static void count_temp_files(struct fsck *f)
{
        static const char *const algs[] = {"sha256", "sha512"};

        for (size_t i = 0; i < ARRAY_SIZE(algs); i++) {
                _cleanup_free_ char *dir = kiln_strdupf("%s/blobs/%s", oci_layout_dir(f->l), algs[i]);
                DIR *d = dir ? opendir(dir) : NULL;
                struct dirent *e;
                if (!d)
                        continue;
                while ((e = readdir(d)))
                        if (str_has_prefix(e->d_name, ".tmp-"))
                                f->res.temp_files++;
                closedir(d);
        }
}

int oci_layout_fsck(struct oci_layout *l, void (*report)(void *ctx, const char *line), void *ctx,
                    oci_fsck_layer_fn deep, struct oci_fsck_result *ret, struct kiln_error *err)
{
        struct fsck f = {.l = l, .report = report, .ctx = ctx, .deep = deep};
        _cleanup_free_ char *buf = NULL;
        struct oci_index *x = NULL;
        size_t len;
        struct kiln_error e = KILN_ERROR_INIT;
        char where[256];

        if (oci_layout_read_index(l, &buf, &len, &e) < 0) {
                problem(&f, "%s", e.msg);
        } else if (oci_index_parse(buf, len, OCI_MT_INDEX, &x, &e) < 0) {
                problem(&f, "index.json: %s", e.msg);
        } else {
                for (size_t i = 0; i < x->n_manifests; i++) {
                        const char *t = json_string_value(json_object_get(
                                x->manifests[i].annotations, OCI_REF_NAME_ANNOTATION));
                        snprintf(where, sizeof(where), "index.json entry %zu%s%s%s", i,
                                 t ? " '" : "", t ? t : "", t ? "'" : "");
                        check_desc(&f, &x->manifests[i], where, 0);
                }
        }
        oci_index_free(x);
        count_temp_files(&f);
        for (size_t i = 0; i < f.n_seen; i++)
                free(f.seen[i]);
        free(f.seen);
        (void)err;
        *ret = f.res;
        return 0;
}
