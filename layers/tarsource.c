#include "tarsource.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "path.h"
#include "source.h"
#include "unpack.h"
#include "util.h"

#define BUF (256u * 1024)

struct tentry {
        char *path;
        struct archive_entry *ae; /* metadata; pathname/hardlink rewritten */
        size_t idx;               /* arrival order: the spool file name */
        bool has_data;
        size_t data_from; /* spool file holding this entry's data */
        bool dropped;     /* a later entry has the same path */
};

bool layer_tar_source_name(const char *f)
{
        return str_has_suffix(f, ".tar") || str_has_suffix(f, ".tar.gz") ||
               str_has_suffix(f, ".tgz") || str_has_suffix(f, ".tar.zst") ||
               str_has_suffix(f, ".tar.zstd");
}

static int cmp_tentry(const void *a, const void *b)
{
        const struct tentry *x = a, *y = b;
        int c = strcmp(x->path, y->path);

        if (c)
                return c;
        return x->idx < y->idx ? -1 : (x->idx > y->idx);
}

static int cmp_key(const void *k, const void *e)
{
        return strcmp(k, ((const struct tentry *)e)->path);
}

/* dest + cleaned name; NULL with err set when the name has '..'. */
static char *map_name(const char *dest, const char *name, struct kiln_error *err)
{
        _cleanup_free_ char *clean = NULL;

        if (layer_path_clean(name, 0, "invalid path", &clean, err) < 0)
                return NULL;
        if (!*dest)
                return steal_ptr(&clean);
        if (!*clean)
                return strdup(dest);
        return kiln_strdupf("%s/%s", dest, clean);
}

struct tsrc {
        struct oci_reader *r;
        struct kiln_error err;
        bool failed;
        unsigned char buf[BUF];  /* given to libarchive: it reads from here */
        unsigned char data[BUF]; /* entry data read out of libarchive */
};

static la_ssize_t tsrc_read(struct archive *a, void *ctx, const void **ret)
{
        struct tsrc *s = ctx;
        ssize_t n = oci_reader_read(s->r, s->buf, BUF, &s->err);

        if (n < 0) {
                s->failed = true;
                archive_set_error(a, EIO, "%s", s->err.msg);
                return -1;
        }
        *ret = s->buf;
        return n;
}

static int spool(struct archive *a, const char *dir, size_t idx, const char *name,
                 unsigned char *buf, struct kiln_error *err)
{
        char fname[64];
        _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        _cleanup_close_ int fd = -1;

        snprintf(fname, sizeof(fname), "%zu", idx);
        if (dfd >= 0)
                fd =
                    openat(dfd, fname, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot spool '%s' into '%s'",
                                            name, dir);
        for (;;) {
                la_ssize_t n = archive_read_data(a, buf, BUF);
                if (n == 0)
                        return 0;
                if (n < 0)
                        return kiln_error_set(err, KILN_E_INVALID, "bad tar entry '%s': %s", name,
                                              archive_error_string(a));
                if (write(fd, buf, (size_t)n) != n)
                        return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot spool '%s'",
                                                    name);
        }
}

static void tentries_free(struct tentry *t, size_t n)
{
        for (size_t i = 0; t && i < n; i++) {
                free(t[i].path);
                archive_entry_free(t[i].ae);
        }
        free(t);
}

static void unspool(const char *dir, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                char p[4096];
                snprintf(p, sizeof(p), "%s/%zu", dir, i);
                unlink(p);
        }
}

/* The last entry of path, NULL when none is kept. */
static const struct tentry *kept(const struct tentry *t, size_t n, const char *path)
{
        const struct tentry *e = bsearch(path, t, n, sizeof(*t), cmp_key);

        while (e && e + 1 < t + n && !strcmp(e[1].path, path))
                e++;
        return e && !e->dropped ? e : NULL;
}

/* What kiln unpack (and every runtime) would refuse or misread is refused
 * here, naming the entry: a whiteout (a layer kiln writes holds content, not
 * deletions) and an entry below a path that the tar itself makes a symlink
 * or a file.  Device nodes were dropped before (see below). */
static int check_entries(const struct tentry *t, size_t n, const char *file,
                         struct kiln_error *err)
{
        for (size_t i = 0; i < n; i++) {
                const struct tentry *e = &t[i];
                const char *base = strrchr(e->path, '/');
                _cleanup_free_ char *p = NULL;

                if (e->dropped)
                        continue;
                base = base ? base + 1 : e->path;
                if (str_has_prefix(base, ".wh."))
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "tar '%s': refusing whiteout '%s': an appended layer "
                                              "holds files, not deletions",
                                              file, e->path);
                p = strdup(e->path);
                if (!p)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                for (char *slash = strchr(p, '/'); slash; slash = strchr(slash + 1, '/')) {
                        const struct tentry *parent;

                        *slash = 0;
                        parent = kept(t, n, p);
                        if (parent && (archive_entry_hardlink(parent->ae) ||
                                       archive_entry_filetype(parent->ae) != AE_IFDIR))
                                return kiln_error_set(
                                    err, KILN_E_INVALID,
                                    "tar '%s': refusing entry '%s': its parent '%s' is a %s in "
                                    "the same tar",
                                    file, e->path, p,
                                    archive_entry_filetype(parent->ae) == AE_IFLNK ? "symlink"
                                                                                  : "non-directory");
                        *slash = '/';
                }
        }
        return 0;
}

/* The entries of a tar, in arrival order while reading, then sorted. */
struct tlist {
        struct tentry *v;
        size_t n, cap;
        size_t spooled; /* spool files to remove: one per entry read */
};

/* Pass 1: every entry's metadata in memory (its name under dest), every
 * regular file's data in the spool.  -2: the archive could not be read
 * (archive_error_string says why). */
static int read_entries(struct archive *a, const char *dest, const char *file,
                        const char *spool_dir, unsigned char *buf, struct tlist *l,
                        struct kiln_error *err)
{
        struct archive_entry *ae;

        for (;;) {
                struct tentry *e;
                int r = archive_read_next_header(a, &ae);

                if (r == ARCHIVE_EOF)
                        return 0;
                if (r < ARCHIVE_WARN)
                        return -2;
                if (l->n == l->cap) {
                        size_t nc = l->cap ? l->cap * 2 : 256;
                        struct tentry *nt = realloc(l->v, nc * sizeof(*nt));
                        if (!nt)
                                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        l->v = nt;
                        l->cap = nc;
                }
                e = &l->v[l->n];
                memset(e, 0, sizeof(*e));
                e->idx = l->n;
                e->path = map_name(
                    dest, archive_entry_pathname(ae) ? archive_entry_pathname(ae) : "", err);
                if (!e->path) {
                        kiln_error_prefix(err, "tar '%s'", file);
                        return -1;
                }
                e->ae = archive_entry_clone(ae);
                l->n++;
                if (!e->ae)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                l->spooled = l->n;
                if (!*e->path) {
                        e->dropped = true; /* "." itself: the layer root */
                        continue;
                }
                archive_entry_copy_pathname(e->ae, e->path);
                if (archive_entry_hardlink(ae)) {
                        _cleanup_free_ char *hl = map_name(dest, archive_entry_hardlink(ae), err);
                        if (!hl) {
                                kiln_error_prefix(err, "tar '%s'", file);
                                return -1;
                        }
                        archive_entry_copy_hardlink(e->ae, hl);
                        archive_entry_set_size(e->ae, 0);
                } else if (archive_entry_filetype(ae) == AE_IFREG) {
                        e->has_data = true;
                        e->data_from = e->idx;
                        if (spool(a, spool_dir, e->idx, e->path, buf, err) < 0)
                                return -1;
                }
        }
}

/* Sorted by path; a path given twice keeps its last entry.  Device nodes
 * are dropped, as the debs front end drops them: a root filesystem's /dev
 * (mmdebstrap, debootstrap) is the runtime's to provide, and an
 * unprivileged unpack could not make them. */
static void sort_and_drop(struct tlist *l)
{
        struct tentry *t = l->v;

        qsort(t, l->n, sizeof(*t), cmp_tentry);
        for (size_t i = 0; i + 1 < l->n; i++)
                if (!strcmp(t[i].path, t[i + 1].path))
                        t[i].dropped = true;
        for (size_t i = 0; i < l->n; i++) {
                mode_t type = archive_entry_filetype(t[i].ae);
                if (!archive_entry_hardlink(t[i].ae) && (type == AE_IFCHR || type == AE_IFBLK))
                        t[i].dropped = true;
        }
}

/* Hardlinks: the holder of the data is the first path of the group in the
 * new order; every other member links to it. */
static int relink(struct tlist *l, const char *file, struct kiln_error *err)
{
        struct tentry *t = l->v;
        size_t n = l->n;

        for (size_t i = 0; i < n; i++) {
                struct tentry *e = &t[i], *target;
                const char *hl;

                if (e->dropped || !(hl = archive_entry_hardlink(e->ae)))
                        continue;
                target = bsearch(hl, t, n, sizeof(*t), cmp_key);
                while (target && target + 1 < t + n && !strcmp(target[1].path, hl))
                        target++; /* the last entry of that path */
                if (!target || target->dropped || !target->has_data)
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "tar '%s': hardlink '%s' points to '%s', which is "
                                              "not a file before it",
                                              file, e->path, hl);
                if (e < target) {
                        /* e becomes the holder; target (and the links made so far
                         * to target) link to e */
                        e->has_data = true;
                        e->data_from = target->data_from;
                        archive_entry_set_size(e->ae, archive_entry_size(target->ae));
                        archive_entry_set_perm(e->ae, archive_entry_perm(target->ae));
                        archive_entry_copy_hardlink(e->ae, NULL);
                        archive_entry_set_filetype(e->ae, AE_IFREG);
                        for (size_t j = 0; j < n; j++)
                                if (&t[j] != e && !t[j].dropped &&
                                    archive_entry_hardlink(t[j].ae) &&
                                    !strcmp(archive_entry_hardlink(t[j].ae), target->path))
                                        archive_entry_copy_hardlink(t[j].ae, e->path);
                        target->has_data = false;
                        archive_entry_set_size(target->ae, 0);
                        archive_entry_copy_hardlink(target->ae, e->path);
                }
        }
        return 0;
}

/* The directories above path that no entry names and that were not added
 * already (*last_dir: the last one added), as 0755 directories. */
static int add_parents(struct layer_writer *w, const struct tlist *l, const char *path,
                       struct archive_entry *pe, char **last_dir, struct kiln_error *err)
{
        _cleanup_free_ char *p = strdup(path);

        if (!p)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        for (char *slash = strchr(p, '/'); slash; slash = strchr(slash + 1, '/')) {
                *slash = 0;
                if (!bsearch(p, l->v, l->n, sizeof(*l->v), cmp_key) &&
                    !(*last_dir && !strncmp(*last_dir, p, strlen(p)) &&
                      ((*last_dir)[strlen(p)] == 0 || (*last_dir)[strlen(p)] == '/'))) {
                        archive_entry_clear(pe);
                        archive_entry_copy_pathname(pe, p);
                        archive_entry_set_filetype(pe, AE_IFDIR);
                        archive_entry_set_perm(pe, 0755);
                        if (layer_writer_add(w, pe, -1, NULL, err) < 0)
                                return -1;
                        free(*last_dir);
                        *last_dir = strdup(p);
                }
                *slash = '/';
        }
        return 0;
}

/* Pass 2: the kept entries in order, parents first (missing parents added),
 * each file's data from the spool. */
static int write_entries(struct layer_writer *w, const struct tlist *l, const char *spool_dir,
                         struct kiln_error *err)
{
        struct archive_entry *pe = archive_entry_new();
        char *last_dir = NULL;
        int rc = 0;

        if (!pe)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        for (size_t i = 0; i < l->n && rc == 0; i++) {
                const struct tentry *e = &l->v[i];
                _cleanup_close_ int dfd = -1;

                if (e->dropped)
                        continue;
                if (add_parents(w, l, e->path, pe, &last_dir, err) < 0) {
                        rc = -1;
                        break;
                }
                if (e->has_data) {
                        char fname[64];
                        _cleanup_close_ int sd = open(spool_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                        snprintf(fname, sizeof(fname), "%zu", e->data_from);
                        dfd = sd >= 0 ? openat(sd, fname, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) : -1;
                        if (dfd < 0) {
                                rc = kiln_error_set_errno(err, KILN_E_IO, errno,
                                                          "cannot read the spool of '%s'",
                                                          e->path);
                                break;
                        }
                }
                rc = layer_writer_add(w, e->ae, dfd, NULL, err);
        }
        free(last_dir);
        archive_entry_free(pe);
        return rc < 0 ? -1 : 0;
}

int layer_tar_source_write(struct layer_writer *w, const char *file, const char *dest,
                           const char *spool_dir, struct kiln_error *err)
{
        _cleanup_free_ char *cdest = NULL;
        struct tlist l = {0};
        struct tsrc *src = calloc(1, sizeof(*src));
        struct archive *a = NULL;
        int fd, rc = -1;

        if (!src)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (layer_path_clean(dest ? dest : "", 0, "invalid path", &cdest, err) < 0)
                goto out;
        fd = open(file, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                kiln_error_set_errno(err, KILN_E_NOT_FOUND, errno, "cannot open '%s'", file);
                goto out;
        }
        src->r = oci_reader_from_fd(fd, true, err);
        if (!src->r) {
                close(fd);
                goto out;
        }
        /* the same decompression rules (and limits) as unpacking */
        src->r = layer_decompress_reader_new(src->r, OCI_COMPRESSION_UNKNOWN,
                                             LAYER_UNPACK_DEFAULT_MAX_SIZE, err);
        if (!src->r)
                goto out;
        a = archive_read_new();
        archive_read_support_format_tar(a);
        if (archive_read_open(a, src, NULL, tsrc_read, NULL) != ARCHIVE_OK)
                goto archive_err;
        switch (read_entries(a, cdest, file, spool_dir, src->data, &l, err)) {
        case 0:
                break;
        case -2:
                goto archive_err;
        default:
                goto out;
        }
        sort_and_drop(&l);
        if (check_entries(l.v, l.n, file, err) < 0 || relink(&l, file, err) < 0 ||
            write_entries(w, &l, spool_dir, err) < 0)
                goto out;
        rc = 0;
        goto out;
archive_err:
        if (src->failed)
                *err = src->err;
        else
                kiln_error_set(err, KILN_E_INVALID, "bad tar: %s",
                               archive_error_string(a) ? archive_error_string(a) : "read failed");
        kiln_error_prefix(err, "'%s'", file);
out:
        unspool(spool_dir, l.spooled);
        if (a)
                archive_read_free(a);
        if (src)
                oci_reader_free(src->r);
        free(src);
        tentries_free(l.v, l.n);
        return rc;
}
