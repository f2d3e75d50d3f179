/* A wheels layer written straight from its wheels (recipe_internal.h,
 * recipe_wheel_layer_new): no file is extracted, so a layer of wheels costs
 * reading them and writing the layer, not creating every file on a disk and
 * reading it back.
 *
 * Each wheel is read as recipe_wheel_install() reads it (the same metadata,
 * the same libarchive pass over its members and the same checks, through
 * recipe_wheel_internal.h), but each member becomes an entry whose data is
 * read from the wheel when the layer is written (layers/zip.h), and each
 * file made for it (scripts, INSTALLER, RECORD) an entry of its bytes.  A
 * later file at the same path replaces the earlier one, as a later install
 * overwrites it; layer_source_finish() then adds the parent directories and
 * sorts, as it does for the staged tree, whose directories all have the
 * mode policy's 0755: the layer is the same bytes.
 *
 * What the staged install checks of a member's bytes (its RECORD hash) is
 * checked while it is written, with its size and CRC-32; the layer fails
 * then, and recipe_wheel_layer_failed() tells the caller to install the
 * wheels instead, which says what is wrong as it always did. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive_entry.h>

#include "digest.h"
#include "io.h"
#include "path.h"
#include "recipe_internal.h"
#include "recipe_wheel_internal.h"
#include "source.h"
#include "stage.h"
#include "util.h"
#include "zip.h"

/* ---- the list (stage.h) ---- */

static char *dup_or_null(const char *s, bool *ok)
{
        char *d = s ? strdup(s) : NULL;

        if (s && !d)
                *ok = false;
        return d;
}

static void item_release(struct recipe_wheel_item *it)
{
        free(it->path);
        free(it->sha256);
        free((char *)(uintptr_t)it->t.python);
        free((char *)(uintptr_t)it->t.platform);
        free((char *)(uintptr_t)it->t.prefix);
        free((char *)(uintptr_t)it->t.site_packages);
        free((char *)(uintptr_t)it->t.interpreter);
}

int recipe_wheel_list_add(struct recipe_wheel_list *l, const char *path, const char *sha256,
                          const struct recipe_python_target *t, struct kiln_error *err)
{
        struct recipe_wheel_item *ni = realloc(l->items, (l->n + 1) * sizeof(*ni)), *it;
        bool ok = true;

        if (!ni)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        l->items = ni;
        it = &ni[l->n];
        memset(it, 0, sizeof(*it));
        it->path = dup_or_null(path, &ok);
        it->sha256 = dup_or_null(sha256, &ok);
        if (t) {
                it->t.python = dup_or_null(t->python, &ok);
                it->t.platform = dup_or_null(t->platform, &ok);
                it->t.prefix = dup_or_null(t->prefix, &ok);
                it->t.site_packages = dup_or_null(t->site_packages, &ok);
                it->t.interpreter = dup_or_null(t->interpreter, &ok);
        }
        if (!ok) {
                item_release(it);
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        l->n++;
        return 0;
}

int recipe_wheel_list_keep(struct recipe_wheel_list *l, const char *dir, struct kiln_error *err)
{
        char **nd = realloc(l->tmpdirs, (l->n_tmpdirs + 1) * sizeof(*nd));

        if (!nd)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        l->tmpdirs = nd;
        if (!(nd[l->n_tmpdirs] = strdup(dir)))
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        l->n_tmpdirs++;
        return 0;
}

int recipe_wheel_list_install(const struct recipe_wheel_list *l, const char *root,
                              struct kiln_error *err)
{
        for (size_t i = 0; i < l->n; i++)
                if (recipe_wheel_install(l->items[i].path, l->items[i].sha256, root, &l->items[i].t,
                                         err) < 0)
                        return -1;
        return 0;
}

void recipe_wheel_list_release(struct recipe_wheel_list *l)
{
        if (!l)
                return;
        for (size_t i = 0; i < l->n; i++)
                item_release(&l->items[i]);
        for (size_t i = 0; i < l->n_tmpdirs; i++) {
                kiln_rm_rf(l->tmpdirs[i]);
                free(l->tmpdirs[i]);
        }
        free(l->items);
        free(l->tmpdirs);
        memset(l, 0, sizeof(*l));
}

int recipe_wheel_take(const struct recipe_stage_opts *o, const char *file, const char *sha256,
                      const char *dir, const struct recipe_python_target *t, struct kiln_error *err)
{
        if (o && o->wheels)
                return recipe_wheel_list_add(o->wheels, file, sha256, t, err);
        return recipe_wheel_install(file, sha256, dir, t, err);
}

/* ---- the layer's files ---- */

struct sfile {
        char *path; /* in the layer */
        mode_t mode;
        uint64_t size;
        size_t seq; /* install order: the last file at a path stays */
        /* a member of wheel `wheel`; m.name is owned */
        bool member;
        size_t wheel;
        struct layer_zip_member m;
        char *want;   /* RECORD's hash of the member ("sha256=...") */
        char *prefix; /* written instead of the member's first skip bytes */
        size_t skip;
        char *data; /* a file made for the wheel: its bytes */
};

struct recipe_wheel_layer {
        struct layer_source *src;
        struct layer_source_opener opener;
        size_t root_len; /* of the staging tree it stands for */
        char **wheels;
        size_t n_wheels;
        struct sfile *f;
        size_t n, cap, seq;
        int fd; /* the wheel being read */
        size_t fd_wheel;
        bool failed;
};

static void sfile_release(struct sfile *f)
{
        free(f->path);
        free(f->m.name);
        free(f->want);
        free(f->prefix);
        free(f->data);
        memset(f, 0, sizeof(*f));
}

void recipe_wheel_layer_free(struct recipe_wheel_layer *wl)
{
        if (!wl)
                return;
        layer_source_free(wl->src);
        for (size_t i = 0; i < wl->n; i++)
                sfile_release(&wl->f[i]);
        for (size_t i = 0; i < wl->n_wheels; i++)
                free(wl->wheels[i]);
        if (wl->fd >= 0)
                close(wl->fd);
        free(wl->wheels);
        free(wl->f);
        free(wl);
}

const struct layer_source *recipe_wheel_layer_source(const struct recipe_wheel_layer *wl)
{
        return wl->src;
}

bool recipe_wheel_layer_failed(const struct recipe_wheel_layer *wl)
{
        return wl->failed;
}

/* A new file at image_path, which must be absolute and clean (the staged
 * tree would hold it under another name otherwise), and a name the staged
 * tree can hold. */
static struct sfile *add_file(struct recipe_wheel_layer *wl, const char *image_path, mode_t mode,
                              uint64_t size, struct kiln_error *err)
{
        _cleanup_free_ char *clean = NULL;
        struct sfile *f;

        if (layer_path_clean(image_path, 0, "invalid path", &clean, err) < 0)
                return NULL;
        if (image_path[0] != '/' || !*clean || strcmp(clean, image_path + 1)) {
                kiln_error_set(err, KILN_E_INVALID, "path '%s' is not a clean absolute path",
                               image_path);
                return NULL;
        }
        if (wl->root_len + strlen(image_path) >= PATH_MAX) {
                kiln_error_set(err, KILN_E_INVALID, "path '%s' is too long", image_path);
                return NULL;
        }
        for (const char *c = image_path; *c;) {
                size_t n = strcspn(++c, "/");
                if (n > NAME_MAX) {
                        kiln_error_set(err, KILN_E_INVALID, "a name in '%s' is too long",
                                       image_path);
                        return NULL;
                }
                c += n;
        }
        if (wl->n == wl->cap) {
                size_t nc = wl->cap ? wl->cap * 2 : 256;
                struct sfile *nf = realloc(wl->f, nc * sizeof(*nf));
                if (!nf) {
                        kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        return NULL;
                }
                wl->f = nf;
                wl->cap = nc;
        }
        f = &wl->f[wl->n++];
        memset(f, 0, sizeof(*f));
        f->path = steal_ptr(&clean);
        f->mode = mode;
        f->size = size;
        f->seq = wl->seq++;
        return f;
}

/* recipe_wheel_put()'s destination: the bytes of a file made for a wheel. */
static int put_made(void *ctx, const char *image_path, const void *data, size_t len, mode_t mode,
                    struct kiln_error *err)
{
        struct sfile *f = add_file(ctx, image_path, mode, len, err);

        if (!f)
                return -1;
        f->data = malloc(len ? len : 1);
        if (!f->data)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        memcpy(f->data, data, len);
        return 0;
}

/* A .data/scripts member: its bytes as installed, checked against RECORD
 * now (the libarchive pass is positioned on it), recorded for the new
 * RECORD; the member is read again when the layer is written. */
static int plan_script(struct recipe_wheel_inst *w, struct archive *a, const char *name,
                       const char *dest, struct sfile *f, struct kiln_error *err)
{
        _cleanup_free_ char *buf = NULL, *rewritten = NULL;
        size_t len, rlen = 0, skip = 0;
        struct oci_digest d;
        char hash[64];

        if (recipe_wheel_read_entry(a, name, RECIPE_WHEEL_SCRIPT_MAX, &buf, &len, err) < 0 ||
            recipe_wheel_check_record(w, name, buf, len, err) < 0)
                return -1;
        rewritten = recipe_wheel_shebang(w, buf, len, &rlen, &skip);
        if (rewritten) {
                f->prefix = kiln_strdupf("#!%s", w->interpreter);
                if (!f->prefix)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                f->skip = skip;
                f->size = rlen;
        }
        oci_digest_of_buffer(rewritten ? rewritten : buf, rewritten ? rlen : len, &d);
        recipe_record_hash(&d, hash, sizeof(hash));
        return recipe_wheel_installed(w, dest, hash, f->size) < 0
                   ? kiln_error_set(err, KILN_E_NOMEM, "out of memory")
                   : 0;
}

/* One member, as extract() in recipe_wheel.c installs it. */
static int plan_member(struct recipe_wheel_layer *wl, struct recipe_wheel_inst *w,
                       struct layer_zip *z, struct archive *a, struct archive_entry *e,
                       const char *record_name, struct kiln_error *err)
{
        const char *name = archive_entry_pathname(e);
        const json_t *want;
        const char *ws, *comma;
        _cleanup_free_ char *dest = NULL;
        struct layer_zip_member *m;
        struct sfile *f;
        bool script;
        mode_t mode;

        if (!name || archive_entry_filetype(e) == AE_IFDIR ||
            (*name && name[strlen(name) - 1] == '/'))
                return 0;
        if (archive_entry_filetype(e) != AE_IFREG)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid wheel '%s': '%s' is not a regular file", w->wheel,
                                      name);
        if (recipe_wheel_check_name(w->wheel, name, err) < 0)
                return -1;
        if (!strcmp(name, record_name))
                return 0; /* rewritten */
        dest = recipe_wheel_dest(w, name, &script, err);
        if (!dest)
                return -1;
        mode = (archive_entry_perm(e) & 0111) || script ? 0755 : 0644;
        want = json_object_get(w->record, name);
        if (!want) /* RECORD's signatures are left out, anything else is refused */
                return recipe_wheel_check_record(w, name, "", 0, err);
        ws = json_string_value(want);
        if (recipe_wheel_record_hash_ok(w, name, ws, err) < 0)
                return -1;
        m = layer_zip_find(z, name);
        if (!m)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "wheel '%s': no single central directory record of '%s'",
                                      w->wheel, name);
        /* libarchive reads more methods; the staged install takes those */
        if ((m->method != 0 && m->method != 8) || (m->flags & 0x41))
                return kiln_error_set(err, KILN_E_UNSUPPORTED,
                                      "wheel '%s': '%s' is neither stored nor deflated, or encrypted",
                                      w->wheel, name);
        if (layer_zip_locate(z, m, err) < 0)
                return -1;
        f = add_file(wl, dest, mode, m->usize, err);
        if (!f)
                return -1;
        f->member = true;
        f->wheel = wl->n_wheels - 1;
        f->m = *m;
        comma = strchr(ws, ',');
        f->m.name = strdup(name);
        f->want = comma ? strndup(ws, (size_t)(comma - ws)) : strdup(ws);
        if (!f->m.name || !f->want)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (script)
                return plan_script(w, a, name, dest, f, err);
        /* what the staged install records once the data hashed to it */
        return recipe_wheel_installed(w, dest, f->want, f->size) < 0
                   ? kiln_error_set(err, KILN_E_NOMEM, "out of memory")
                   : 0;
}

static int plan_wheel(struct recipe_wheel_layer *wl, const struct recipe_wheel_item *it,
                      struct kiln_error *err)
{
        struct recipe_wheel_inst w;
        _cleanup_(layer_zip_freep) struct layer_zip *z = NULL;
        _cleanup_free_ char *record_name = NULL;
        struct archive *a = NULL;
        struct archive_entry *e;
        int rc = -1, r = ARCHIVE_OK;

        wl->wheels[wl->n_wheels] = strdup(it->path);
        if (!wl->wheels[wl->n_wheels])
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        wl->n_wheels++;
        if (recipe_wheel_inst_begin(&w, it->path, it->sha256, NULL, &it->t, err) < 0)
                goto out;
        w.put = put_made;
        w.put_ctx = wl;
        record_name = kiln_strdupf("%s/RECORD", w.distinfo);
        if (!record_name) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto out;
        }
        z = layer_zip_open(it->path, err);
        a = z ? recipe_wheel_open(it->path, err) : NULL;
        if (!a)
                goto out;
        rc = 0;
        while (rc == 0 && (r = archive_read_next_header(a, &e)) == ARCHIVE_OK)
                rc = plan_member(wl, &w, z, a, e, record_name, err);
        if (rc == 0 && r != ARCHIVE_EOF)
                rc = kiln_error_set(err, KILN_E_INVALID, "cannot read wheel '%s': %s", it->path,
                                    archive_error_string(a));
        if (rc == 0)
                rc = recipe_wheel_inst_finish(&w, err);
out:
        if (a)
                archive_read_free(a);
        recipe_wheel_inst_release(&w);
        return rc;
}

static int cmp_sfile(const void *a, const void *b)
{
        const struct sfile *x = a, *y = b;
        int c = strcmp(x->path, y->path);

        return c ? c : x->seq < y->seq ? -1 : (x->seq > y->seq);
}

static int cmp_path_key(const void *k, const void *e)
{
        return strcmp(k, ((const struct sfile *)e)->path);
}

/* The last file at each path stays (a later wheel overwrites); a path
 * that is a file and another's directory is what a staged install
 * refuses, one way or the other. */
static int settle(struct recipe_wheel_layer *wl, struct kiln_error *err)
{
        size_t o = 0;

        qsort(wl->f, wl->n, sizeof(*wl->f), cmp_sfile);
        for (size_t i = 0; i < wl->n; i++) {
                if (i + 1 < wl->n && !strcmp(wl->f[i].path, wl->f[i + 1].path)) {
                        sfile_release(&wl->f[i]);
                        continue;
                }
                wl->f[o++] = wl->f[i];
        }
        wl->n = o;
        for (size_t i = 0; i < wl->n; i++) {
                _cleanup_free_ char *p = strdup(wl->f[i].path);
                char *slash;

                if (!p)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                while ((slash = strrchr(p, '/'))) {
                        *slash = '\0';
                        if (bsearch(p, wl->f, wl->n, sizeof(*wl->f), cmp_path_key))
                                return kiln_error_set(
                                    err, KILN_E_INVALID,
                                    "'/%s' is a file of one wheel and a directory of another", p);
                }
        }
        return 0;
}

/* ---- writing: each member read from its wheel ---- */

struct member_reader {
        struct oci_reader base;
        struct oci_reader *zr;
        struct recipe_wheel_layer *wl;
        const struct sfile *f;
        struct oci_hasher h;
        size_t prefix_pos, prefix_len;
        uint64_t seen; /* of the member */
        bool done;
};

static ssize_t member_read(struct oci_reader *base, void *buf, size_t len, struct kiln_error *err)
{
        struct member_reader *r = (struct member_reader *)base;
        const struct sfile *f = r->f;

        if (r->done || len == 0)
                return 0;
        if (r->prefix_pos < r->prefix_len) {
                size_t n =
                    r->prefix_len - r->prefix_pos < len ? r->prefix_len - r->prefix_pos : len;
                memcpy(buf, f->prefix + r->prefix_pos, n);
                r->prefix_pos += n;
                return (ssize_t)n;
        }
        for (;;) {
                ssize_t n = oci_reader_read(r->zr, buf, len, err);
                size_t drop = 0;

                if (n < 0) {
                        r->wl->failed = true;
                        return -1;
                }
                if (n == 0) {
                        struct oci_digest d;
                        char hash[64];

                        oci_hasher_final(&r->h, &d);
                        recipe_record_hash(&d, hash, sizeof(hash));
                        if (strcmp(hash, f->want)) {
                                r->wl->failed = true;
                                return kiln_error_set(err, KILN_E_DIGEST,
                                                      "hash mismatch for '%s' in wheel '%s': "
                                                      "RECORD says '%s', got '%s,%llu'",
                                                      f->m.name, r->wl->wheels[f->wheel], f->want,
                                                      hash, (unsigned long long)r->seen);
                        }
                        r->done = true;
                        return 0;
                }
                oci_hasher_update(&r->h, buf, (size_t)n);
                if (r->seen < f->skip)
                        drop = f->skip - r->seen < (uint64_t)n ? (size_t)(f->skip - r->seen)
                                                               : (size_t)n;
                r->seen += (uint64_t)n;
                if ((size_t)n > drop) {
                        memmove(buf, (char *)buf + drop, (size_t)n - drop);
                        return (ssize_t)((size_t)n - drop);
                }
        }
}

static void member_free(struct oci_reader *base)
{
        struct member_reader *r = (struct member_reader *)base;

        oci_reader_free(r->zr);
        oci_hasher_release(&r->h);
        free(r);
}

static struct oci_reader *open_file(void *ctx, const void *item, struct kiln_error *err)
{
        struct recipe_wheel_layer *wl = ctx;
        const struct sfile *f = item;
        struct member_reader *r;

        if (!f->member)
                return oci_reader_from_buffer(f->data, f->size, err);
        /* the files of one wheel mostly follow each other: one open at a time */
        if (wl->fd < 0 || wl->fd_wheel != f->wheel) {
                if (wl->fd >= 0)
                        close(wl->fd);
                wl->fd = open(wl->wheels[f->wheel], O_RDONLY | O_CLOEXEC);
                wl->fd_wheel = f->wheel;
                if (wl->fd < 0) {
                        kiln_error_set_errno(err, KILN_E_IO, errno, "cannot open '%s'",
                                             wl->wheels[f->wheel]);
                        return NULL;
                }
        }
        r = calloc(1, sizeof(*r));
        if (!r) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        r->base.read = member_read;
        r->base.free = member_free;
        r->wl = wl;
        r->f = f;
        r->prefix_len = f->prefix ? strlen(f->prefix) : 0;
        if (oci_hasher_init(&r->h, OCI_DIGEST_SHA256, err) < 0) {
                free(r);
                return NULL;
        }
        r->zr = layer_zip_reader(wl->fd, wl->wheels[f->wheel], &f->m, err);
        if (!r->zr) {
                member_free(&r->base);
                return NULL;
        }
        return &r->base;
}

int recipe_wheel_layer_new(const struct recipe_wheel_list *l, const char *root,
                           struct recipe_wheel_layer **ret, struct kiln_error *err)
{
        struct recipe_wheel_layer *wl = calloc(1, sizeof(*wl));
        int rc = -1;

        if (!wl || !(wl->wheels = calloc(l->n + 1, sizeof(*wl->wheels)))) {
                free(wl);
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        wl->fd = -1;
        wl->root_len = strlen(root);
        wl->opener.open = open_file;
        wl->opener.ctx = wl;
        for (size_t i = 0; i < l->n; i++)
                if (plan_wheel(wl, &l->items[i], err) < 0) {
                        kiln_error_prefix(err, "install wheel '%s'", l->items[i].path);
                        goto out;
                }
        if (settle(wl, err) < 0 || !(wl->src = layer_source_new(err)))
                goto out;
        for (size_t i = 0; i < wl->n; i++)
                if (layer_source_add_reader(wl->src, wl->f[i].path, wl->f[i].mode,
                                            (int64_t)wl->f[i].size, &wl->opener, &wl->f[i],
                                            err) < 0)
                        goto out;
        if (layer_source_finish(wl->src, err) < 0)
                goto out;
        *ret = steal_ptr(&wl);
        rc = 0;
out:
        recipe_wheel_layer_free(wl);
        return rc;
}
