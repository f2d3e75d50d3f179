#include "diff.h"

#include <archive.h>
#include <archive_entry.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "path.h"
#include "tar_read.h"
#include "util.h"

struct img {
        struct oci_image i;
        struct oci_manifest *m; /* = i.m */
        struct oci_config *c;   /* typed view, when the config is an image config */
};

static void img_release(struct img *i)
{
        oci_config_free(i->c);
        oci_image_release(&i->i);
}

static int img_load(struct oci_store *s, struct img *ret, struct kiln_error *err)
{
        struct img i = {0};

        if (oci_image_load(s, NULL, NULL, &i.i, err) < 0)
                goto fail;
        i.m = i.i.m;
        if (oci_media_type_is_config(i.m->config.media_type) &&
            oci_config_parse(i.i.config_buf, i.i.config_len, &i.c, err) < 0)
                goto fail;
        *ret = i;
        return 0;
fail:
        kiln_error_prefix(err, "'%s'", s->name);
        img_release(&i);
        return -1;
}

struct ctx {
        const struct layer_diff_opts *opts;
        unsigned found;
};

static void emit(struct ctx *c, const char *level, const char *what, const char *change,
                 const char *a, const char *b, int layer)
{
        struct layer_diff_finding f = {level, what, change, a, b, layer};

        c->found++;
        if (c->opts && c->opts->finding)
                c->opts->finding(c->opts->ctx, &f);
}

static char *json_text(json_t *v)
{
        if (!v)
                return NULL;
        if (json_is_string(v))
                return strdup(json_string_value(v));
        return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
}

/* Compares two values; reports when they differ. */
static void cmp_value(struct ctx *c, const char *level, const char *what, json_t *a, json_t *b)
{
        char *sa, *sb;

        if ((!a || json_is_null(a)) && (!b || json_is_null(b)))
                return;
        if (a && b && json_equal(a, b))
                return;
        sa = json_text(a);
        sb = json_text(b);
        emit(c, level, what, !a ? "added" : !b ? "removed" : "changed", sa, sb, -1);
        free(sa);
        free(sb);
}

/* Compares two string maps key by key. */
static void cmp_map(struct ctx *c, const char *level, const char *prefix, json_t *a, json_t *b)
{
        const char *k;
        json_t *v;
        char what[512];

        json_object_foreach(a, k, v)
        {
                snprintf(what, sizeof(what), "%s %s", prefix, k);
                cmp_value(c, level, what, v, json_object_get(b, k));
        }
        json_object_foreach(b, k, v) if (!json_object_get(a, k))
        {
                snprintf(what, sizeof(what), "%s %s", prefix, k);
                cmp_value(c, level, what, NULL, v);
        }
}

/* Env is a list of K=V: compare as a map of variables. */
static json_t *env_map(json_t *env)
{
        json_t *m = json_object();
        size_t i;
        json_t *v;

        json_array_foreach(env, i, v)
        {
                const char *s = json_string_value(v);
                const char *eq = s ? strchr(s, '=') : NULL;
                char key[256];
                if (!s)
                        continue;
                snprintf(key, sizeof(key), "%.*s", eq ? (int)(eq - s) : (int)strlen(s), s);
                json_object_set_new(m, key, json_string(eq ? eq + 1 : ""));
        }
        return m;
}

static void diff_manifest(struct ctx *c, struct img *a, struct img *b)
{
        char na[32], nb[32];
        _cleanup_json_ json_t *ma = json_string(a->m->media_type);
        _cleanup_json_ json_t *mb = json_string(b->m->media_type);
        _cleanup_json_ json_t *ta = a->m->artifact_type ? json_string(a->m->artifact_type) : NULL;
        _cleanup_json_ json_t *tb = b->m->artifact_type ? json_string(b->m->artifact_type) : NULL;

        /* cmp_value borrows its values */
        cmp_value(c, "manifest", "mediaType", ma, mb);
        if (ta || tb)
                cmp_value(c, "manifest", "artifactType", ta, tb);
        cmp_map(c, "manifest", "annotation", a->m->annotations, b->m->annotations);
        if (a->m->n_layers != b->m->n_layers) {
                snprintf(na, sizeof(na), "%zu", a->m->n_layers);
                snprintf(nb, sizeof(nb), "%zu", b->m->n_layers);
                emit(c, "manifest", "layer count", "changed", na, nb, -1);
        }
        if (strcmp(a->m->config.media_type, b->m->config.media_type))
                emit(c, "manifest", "config mediaType", "changed", a->m->config.media_type,
                     b->m->config.media_type, -1);
}

static void diff_config(struct ctx *c, struct img *a, struct img *b)
{
        static const char *const top[] = {"os", "architecture", "variant", "os.version", "author"};
        static const char *const fields[] = {"Entrypoint", "Cmd", "WorkingDir", "User",
                                             "ExposedPorts", "Volumes", "StopSignal"};
        json_t *ca, *cb, *ea, *eb, *ha, *hb;
        char what[64];

        if (!a->c || !b->c) {
                if (a->m->config.digest.str[0] && strcmp(a->m->config.digest.str,
                                                         b->m->config.digest.str))
                        emit(c, "config", "config blob", "changed", a->m->config.digest.str,
                             b->m->config.digest.str, -1);
                return;
        }
        for (size_t i = 0; i < ARRAY_SIZE(top); i++)
                cmp_value(c, "config", top[i], json_object_get(a->c->json, top[i]),
                          json_object_get(b->c->json, top[i]));
        ca = json_object_get(a->c->json, "config");
        cb = json_object_get(b->c->json, "config");
        ea = env_map(json_object_get(ca, "Env"));
        eb = env_map(json_object_get(cb, "Env"));
        cmp_map(c, "config", "env", ea, eb);
        json_decref(ea);
        json_decref(eb);
        for (size_t i = 0; i < ARRAY_SIZE(fields); i++)
                cmp_value(c, "config", fields[i], json_object_get(ca, fields[i]),
                          json_object_get(cb, fields[i]));
        cmp_map(c, "config", "label", json_object_get(ca, "Labels"),
                json_object_get(cb, "Labels"));
        cmp_value(c, "config", "created", json_object_get(a->c->json, "created"),
                  json_object_get(b->c->json, "created"));
        ha = json_object_get(a->c->json, "history");
        hb = json_object_get(b->c->json, "history");
        for (size_t i = 0; i < json_array_size(ha) || i < json_array_size(hb); i++) {
                json_t *x = json_array_get(ha, i), *y = json_array_get(hb, i);
                snprintf(what, sizeof(what), "history %zu", i);
                cmp_value(c, "config", what, x ? json_object_get(x, "created_by") : NULL,
                          y ? json_object_get(y, "created_by") : NULL);
        }
}

/* ---- files ---- */

struct fentry {
        char *path;
        char type;
        unsigned mode;
        long long uid, gid, size, mtime;
        char *link;
        char sha[OCI_DIGEST_MAX];
        char *xattrs;
        size_t order;
};

struct flist {
        struct fentry *v;
        size_t n, alloc;
};

static void flist_release(struct flist *l)
{
        for (size_t i = 0; i < l->n; i++) {
                free(l->v[i].path);
                free(l->v[i].link);
                free(l->v[i].xattrs);
        }
        free(l->v);
        memset(l, 0, sizeof(*l));
}

/* An entry's path in the image as unpack would place it ("/a/b", "/" for
 * the root: layers/path.h, '..' folded).  A name unpack refuses (one that
 * climbs above the root) is shown as the layer holds it. */
static char *clean_path(const char *p)
{
        char *c = NULL, *s;

        if (layer_path_clean(p, LAYER_PATH_FOLD_DOTDOT, "entry", &c, NULL) < 0)
                return strdup(p);
        s = kiln_strdupf("/%s", c);
        free(c);
        return s;
}

static char type_char(mode_t t)
{
        switch (t) {
        case AE_IFREG: return 'f';
        case AE_IFDIR: return 'd';
        case AE_IFLNK: return 'l';
        case AE_IFCHR: return 'c';
        case AE_IFBLK: return 'b';
        case AE_IFIFO: return 'p';
        default: return '?';
        }
}

static int read_files(struct oci_store *s, const struct oci_descriptor *d, struct flist *ret,
                      struct kiln_error *err)
{
        struct layer_tar_reader *r;
        struct archive_entry *e;
        struct flist l = {0};
        char buf[65536];
        int rc;

        r = layer_tar_reader_new(s->ops->open_blob(s, d, err), d->media_type, d->digest.str, err);
        if (!r)
                return -1;
        while ((rc = layer_tar_reader_next(r, &e, err)) == 1) {
                struct fentry f = {0};
                const char *xn;
                const void *xv;
                size_t xl;
                struct oci_hasher h;
                ssize_t n;

                f.path = clean_path(archive_entry_pathname(e));
                f.type = archive_entry_hardlink(e) ? 'h' : type_char(archive_entry_filetype(e));
                f.mode = (unsigned)(archive_entry_mode(e) & 07777);
                f.uid = (long long)archive_entry_uid(e);
                f.gid = (long long)archive_entry_gid(e);
                f.size = (long long)archive_entry_size(e);
                f.mtime = (long long)archive_entry_mtime(e);
                if (archive_entry_symlink(e))
                        f.link = strdup(archive_entry_symlink(e));
                else if (archive_entry_hardlink(e))
                        f.link = clean_path(archive_entry_hardlink(e));
                if (archive_entry_xattr_reset(e) > 0) {
                        char *acc = strdup("");
                        while (archive_entry_xattr_next(e, &xn, &xv, &xl) == ARCHIVE_OK) {
                                struct oci_digest xd;
                                char *nacc;
                                oci_digest_of_buffer(xv, xl, &xd);
                                nacc = kiln_strdupf("%s%s%s=%.19s", acc ? acc : "",
                                                    acc && *acc ? "," : "", xn, xd.str);
                                free(acc);
                                acc = nacc;
                        }
                        f.xattrs = acc;
                }
                if (f.type == 'f') {
                        if (oci_hasher_init(&h, OCI_DIGEST_SHA256, err) < 0)
                                goto fail_entry;
                        while ((n = layer_tar_reader_data(r, buf, sizeof(buf), err)) > 0)
                                oci_hasher_update(&h, buf, (size_t)n);
                        if (n < 0) {
                                oci_hasher_release(&h);
                                goto fail_entry;
                        }
                        {
                                struct oci_digest dd;
                                oci_hasher_final(&h, &dd);
                                snprintf(f.sha, sizeof(f.sha), "%s", dd.str);
                        }
                        oci_hasher_release(&h);
                }
                if (l.n == l.alloc) {
                        size_t na = l.alloc ? l.alloc * 2 : 256;
                        struct fentry *nv = realloc(l.v, na * sizeof(*nv));
                        if (!nv) {
                                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                                goto fail_entry;
                        }
                        l.v = nv;
                        l.alloc = na;
                }
                f.order = l.n;
                l.v[l.n++] = f;
                continue;
fail_entry:
                free(f.path);
                free(f.link);
                free(f.xattrs);
                rc = -1;
                break;
        }
        if (rc == 0)
                rc = layer_tar_reader_finish(r, err);
        layer_tar_reader_free(r);
        if (rc < 0) {
                flist_release(&l);
                return -1;
        }
        *ret = l;
        return 0;
}

static int cmp_fentry(const void *x, const void *y)
{
        const struct fentry *a = x, *b = y;
        int c = strcmp(a->path, b->path);

        if (c)
                return c;
        return a->order < b->order ? -1 : a->order > b->order;
}

/* Sorted by path; for a path given several times the last entry wins. */
static void flist_sort(struct flist *l)
{
        size_t w = 0;

        qsort(l->v, l->n, sizeof(*l->v), cmp_fentry);
        for (size_t i = 0; i < l->n; i++) {
                if (i + 1 < l->n && !strcmp(l->v[i].path, l->v[i + 1].path)) {
                        free(l->v[i].path);
                        free(l->v[i].link);
                        free(l->v[i].xattrs);
                        continue;
                }
                l->v[w++] = l->v[i];
        }
        l->n = w;
}

static void emit_file(struct ctx *c, int layer, const char *path, const char *change,
                      const char *a, const char *b)
{
        struct layer_diff_finding f = {"file", path, change, a, b, layer};

        c->found++;
        if (c->opts && c->opts->finding)
                c->opts->finding(c->opts->ctx, &f);
}

static void cmp_files(struct ctx *c, int layer, const struct fentry *a, const struct fentry *b)
{
        char va[160], vb[160];
        char what[4200];

#define FIELD(name, fmt, x, y)                                                                     \
        do {                                                                                       \
                snprintf(va, sizeof(va), fmt, x);                                                  \
                snprintf(vb, sizeof(vb), fmt, y);                                                  \
                if (strcmp(va, vb)) {                                                              \
                        snprintf(what, sizeof(what), "%s (%s)", a->path, name);                    \
                        emit_file(c, layer, what, "changed", va, vb);                              \
                }                                                                                  \
        } while (0)
        FIELD("type", "%c", a->type, b->type);
        FIELD("content", "%s", a->sha, b->sha);
        FIELD("size", "%lld", a->size, b->size);
        FIELD("mode", "%04o", a->mode, b->mode);
        FIELD("owner", "%lld", a->uid, b->uid);
        FIELD("group", "%lld", a->gid, b->gid);
        FIELD("mtime", "%lld", a->mtime, b->mtime);
        FIELD("link", "%.120s", a->link ? a->link : "", b->link ? b->link : "");
        FIELD("xattrs", "%.120s", a->xattrs ? a->xattrs : "", b->xattrs ? b->xattrs : "");
#undef FIELD
}

static int diff_layer_files(struct ctx *c, struct oci_store *sa, struct oci_store *sb, int idx,
                            const struct oci_descriptor *da, const struct oci_descriptor *db,
                            struct kiln_error *err)
{
        struct flist la = {0}, lb = {0};
        size_t i = 0, j = 0;

        if (read_files(sa, da, &la, err) < 0)
                return -1;
        if (read_files(sb, db, &lb, err) < 0) {
                flist_release(&la);
                return -1;
        }
        flist_sort(&la);
        flist_sort(&lb);
        while (i < la.n || j < lb.n) {
                int k = i >= la.n ? 1 : j >= lb.n ? -1 : strcmp(la.v[i].path, lb.v[j].path);
                if (k < 0) {
                        emit_file(c, idx, la.v[i].path, "removed", la.v[i].sha[0] ? la.v[i].sha : NULL, NULL);
                        i++;
                } else if (k > 0) {
                        emit_file(c, idx, lb.v[j].path, "added", NULL, lb.v[j].sha[0] ? lb.v[j].sha : NULL);
                        j++;
                } else {
                        cmp_files(c, idx, &la.v[i], &lb.v[j]);
                        i++;
                        j++;
                }
        }
        flist_release(&la);
        flist_release(&lb);
        return 0;
}

static const char *diff_id(struct img *i, size_t k)
{
        return i->c ? json_string_value(json_array_get(i->c->diff_ids, k)) : NULL;
}

static int diff_layers(struct ctx *c, struct oci_store *sa, struct img *a, struct oci_store *sb,
                       struct img *b, struct kiln_error *err)
{
        size_t n = a->m->n_layers < b->m->n_layers ? a->m->n_layers : b->m->n_layers;
        char what[64];
        bool reordered = false;

        /* the same content in another order */
        if (a->m->n_layers == b->m->n_layers && a->m->n_layers > 1) {
                bool same_set = true, same_order = true;
                for (size_t i = 0; i < a->m->n_layers; i++) {
                        const char *x = diff_id(a, i), *y = diff_id(b, i);
                        bool in_b = false;
                        if (!x || !y)
                                same_set = false;
                        else if (strcmp(x, y))
                                same_order = false;
                        for (size_t k = 0; x && k < b->m->n_layers; k++)
                                if (diff_id(b, k) && !strcmp(x, diff_id(b, k)))
                                        in_b = true;
                        same_set = same_set && in_b;
                }
                reordered = same_set && !same_order;
        }
        if (reordered) {
                for (size_t i = 0; i < n; i++) {
                        if (!strcmp(diff_id(a, i), diff_id(b, i)))
                                continue;
                        snprintf(what, sizeof(what), "%zu", i);
                        emit(c, "layer", what, "reordered", diff_id(a, i), diff_id(b, i), (int)i);
                }
                return 0;
        }
        for (size_t i = 0; i < n; i++) {
                const struct oci_descriptor *la = &a->m->layers[i], *lb = &b->m->layers[i];
                const char *xa = diff_id(a, i), *xb = diff_id(b, i);
                snprintf(what, sizeof(what), "%zu", i);
                if (oci_digest_equal(&la->digest, &lb->digest))
                        continue;
                if (xa && xb && !strcmp(xa, xb)) {
                        char va[256], vb[256];
                        const char *ca = json_string_value(
                                json_object_get(la->annotations, "dev.kiln.layer.compression"));
                        const char *cb = json_string_value(
                                json_object_get(lb->annotations, "dev.kiln.layer.compression"));
                        snprintf(va, sizeof(va), "%s %s %lld bytes%s%s", la->digest.str,
                                 oci_compression_name(oci_media_type_compression(la->media_type)),
                                 (long long)la->size, ca ? " " : "", ca ? ca : "");
                        snprintf(vb, sizeof(vb), "%s %s %lld bytes%s%s", lb->digest.str,
                                 oci_compression_name(oci_media_type_compression(lb->media_type)),
                                 (long long)lb->size, cb ? " " : "", cb ? cb : "");
                        emit(c, "layer", what, "compression", va, vb, (int)i);
                        continue;
                }
                emit(c, "layer", what, "changed", xa ? xa : la->digest.str,
                     xb ? xb : lb->digest.str, (int)i);
                if (diff_layer_files(c, sa, sb, (int)i, la, lb, err) < 0)
                        return -1;
        }
        for (size_t i = n; i < a->m->n_layers; i++) {
                snprintf(what, sizeof(what), "%zu", i);
                emit(c, "layer", what, "removed", a->m->layers[i].digest.str, NULL, (int)i);
        }
        for (size_t i = n; i < b->m->n_layers; i++) {
                snprintf(what, sizeof(what), "%zu", i);
                emit(c, "layer", what, "added", NULL, b->m->layers[i].digest.str, (int)i);
        }
        return 0;
}

int layer_image_diff(struct oci_store *sa, struct oci_store *sb, const struct layer_diff_opts *opts,
                     bool *ret_same, struct kiln_error *err)
{
        struct img a = {0}, b = {0};
        struct ctx c = {.opts = opts};
        bool all = opts && opts->all;
        int rc = -1;

        if (img_load(sa, &a, err) < 0)
                return -1;
        if (img_load(sb, &b, err) < 0)
                goto out;
        if (oci_digest_equal(&a.i.top.desc.digest, &b.i.top.desc.digest)) {
                *ret_same = true;
                rc = 0;
                goto out;
        }
        diff_manifest(&c, &a, &b);
        if (c.found && !all)
                goto done;
        diff_config(&c, &a, &b);
        if (c.found && !all)
                goto done;
        if (diff_layers(&c, sa, &a, sb, &b, err) < 0)
                goto out;
        if (!c.found)
                emit(&c, "manifest", "bytes", "changed", a.i.top.desc.digest.str,
                     b.i.top.desc.digest.str, -1);
done:
        *ret_same = false;
        rc = 0;
out:
        img_release(&a);
        img_release(&b);
        return rc;
}
