/* layers/unpack.c: the unpacker (unpack.h): its lifecycle, applying a layer
 * entry by entry, and the deferred directory modes at the end.  The other
 * files of the unpacker are listed in unpack_internal.h. */
/* O_PATH, AT_EMPTY_PATH */
#define _GNU_SOURCE
#include "unpack_internal.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "util.h"

/* ---- the unpacker ---- */

struct tar_src {
        struct oci_reader *r;
        struct kiln_error err;
        bool failed;
        bool padded;      /* the stream ended early and zeros were added */
        int64_t real_len; /* bytes of tar actually in the layer */
        unsigned char *buf;
};

static void warnf(struct layer_unpacker *u, const char *fmt, ...) KILN_PRINTF(2, 3);
static void warnf(struct layer_unpacker *u, const char *fmt, ...)
{
        char msg[KILN_ERROR_MSG_SIZE];
        va_list ap;

        if (!u->opts.warn)
                return;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        u->opts.warn(u->opts.warn_ctx, msg);
}

void layer_unpack_opts_init(struct layer_unpack_opts *o)
{
        memset(o, 0, sizeof(*o));
        o->max_size = LAYER_UNPACK_DEFAULT_MAX_SIZE;
        o->max_total = LAYER_UNPACK_DEFAULT_MAX_TOTAL;
}

void layer_unpacker_free(struct layer_unpacker *u)
{
        if (!u)
                return;
        if (u->root >= 0)
                close(u->root);
        for (size_t i = 0; i < u->n_dirs; i++)
                free(u->dirs[i].path);
        free(u->dirs);
        free(u->dir_slots);
        unpack_strset_clear(&u->layer_paths);
        unpack_inoset_clear(&u->layer_dirs);
        free(u->dir);
        free(u->buf);
        free(u);
}

/* chmod of a directory held by an O_PATH fd (fchmod refuses those). */
static int chmod_fd(int pathfd, mode_t mode)
{
        _cleanup_close_ int fd = openat(pathfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        if (fd < 0)
                return -1;
        return fchmod(fd, mode);
}

struct layer_unpacker *layer_unpacker_new(const char *dir, const struct layer_unpack_opts *opts,
                                          struct kiln_error *err)
{
        struct layer_unpacker *u = calloc(1, sizeof(*u));
        struct stat st;
        bool made;

        if (!u) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        u->root = -1;
        u->opts = *opts;
        u->rootless = opts->rootless || geteuid() != 0;
        u->dir = strdup(dir);
        u->buf = malloc(IN_BUF);
        if (!u->dir || !u->buf) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto fail;
        }
        /* 0755 whatever the umask, like umoci's rootfs: a root that only its
         * owner can enter breaks `chroot --userspec` into it. */
        made = mkdir(dir, 0755) == 0;
        if (!made && errno != EEXIST) {
                kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create '%s'", dir);
                goto fail;
        }
        u->root = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (u->root < 0 || fstat(u->root, &st) < 0) {
                kiln_error_set_errno(err, KILN_E_IO, errno, "cannot open '%s'", dir);
                goto fail;
        }
        if (made && chmod_fd(u->root, 0755) < 0) {
                kiln_error_set_errno(err, KILN_E_IO, errno, "cannot chmod '%s'", dir);
                goto fail;
        }
        u->root_dev = st.st_dev;
        u->root_ino = st.st_ino;
#if defined(SYS_openat2)
        u->have_openat2 = !opts->no_openat2;
#endif
        return u;
fail:
        layer_unpacker_free(u);
        return NULL;
}

int unpack_entry_fail(struct layer_unpacker *u, const char *name, int e, struct kiln_error *err,
                      const char *what)
{
        return kiln_error_set_errno(err, KILN_E_IO, e, "cannot %s '%s' in '%s'", what, name,
                                    u->dir);
}

/* Counts an entry's apparent size (holes included: what the tree claims)
 * against the limits, before any of it is written. */
static int charge_size(struct layer_unpacker *u, const char *name, int64_t size,
                       struct kiln_error *err)
{
        u->written += size;
        u->total += size;
        if (u->opts.max_size > 0 && u->written > u->opts.max_size)
                return kiln_error_set(err, KILN_E_LIMIT,
                                      "entry '%s' takes the layer past %lld bytes (the limit)",
                                      name, (long long)u->opts.max_size);
        if (u->opts.max_total > 0 && u->total > u->opts.max_total)
                return kiln_error_set(err, KILN_E_LIMIT,
                                      "entry '%s' takes the image past %lld bytes (the limit for "
                                      "all layers)",
                                      name, (long long)u->opts.max_total);
        return 0;
}

static int write_all(int fd, const void *buf, size_t len)
{
        const unsigned char *p = buf;

        while (len > 0) {
                ssize_t w = write(fd, p, len);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        return -1;
                }
                p += w;
                len -= (size_t)w;
        }
        return 0;
}

/* Writes the data of a regular entry.  Sparse entries keep their holes:
 * libarchive hands out the data blocks with their offsets, the gaps are
 * seeked over and a trailing hole is an ftruncate, so a 2 KiB layer that
 * claims a 1 GiB file costs 1 GiB of apparent size, not of disk. */
static int copy_data(struct layer_unpacker *u, struct archive *a, struct archive_entry *ae, int fd,
                     const char *name, struct kiln_error *err)
{
        int64_t size = archive_entry_size(ae), pos = 0;
        bool sparse = archive_entry_sparse_count(ae) > 0;

        if (charge_size(u, name, size, err) < 0)
                return -1;
        /* Data that runs into the zeros added after a short stream was cut. */
        if (!sparse && u->src && u->src->padded && u->data_start + size > u->src->real_len)
                return kiln_error_set(err, KILN_E_INVALID, "tar is truncated in entry '%s'", name);
        for (;;) {
                const void *buf;
                size_t len;
                la_int64_t off;
                int r = archive_read_data_block(a, &buf, &len, &off);

                if (r == ARCHIVE_EOF)
                        break;
                if (r != ARCHIVE_OK && r != ARCHIVE_WARN)
                        return -2; /* archive error, reported by the caller */
                if (off < pos || (int64_t)len > size - off)
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "refusing entry '%s': data beyond its size", name);
                if (off > pos && lseek(fd, off, SEEK_SET) < 0)
                        return unpack_entry_fail(u, name, errno, err, "seek in");
                if (write_all(fd, buf, len) < 0)
                        return unpack_entry_fail(u, name, errno, err, "write");
                pos = off + (int64_t)len;
        }
        if (!sparse && u->src && u->src->padded && u->data_start + size > u->src->real_len)
                return kiln_error_set(err, KILN_E_INVALID, "tar is truncated in entry '%s'", name);
        if (pos < size && ftruncate(fd, size) < 0)
                return unpack_entry_fail(u, name, errno, err, "extend");
        return 0;
}

static void apply_xattrs(struct layer_unpacker *u, struct archive_entry *ae, int fd,
                         const char *name)
{
        const char *k;
        const void *v;
        size_t sz;

        archive_entry_xattr_reset(ae);
        while (archive_entry_xattr_next(ae, &k, &v, &sz) == ARCHIVE_OK) {
                bool privileged = str_has_prefix(k, "security.") || str_has_prefix(k, "trusted.");
                /* overlayfs reads these as its own metadata (redirects, opaque
                 * and metacopy marks) when DIR becomes a layer of a mount */
                if (str_has_prefix(k, "trusted.overlay.") || str_has_prefix(k, "user.overlay.")) {
                        warnf(u, "%s: dropped overlayfs xattr '%s' of '%s'", u->what, k, name);
                        continue;
                }
                if (privileged && u->rootless) {
                        warnf(u, "%s: skipped xattr '%s' of '%s': not root", u->what, k, name);
                        continue;
                }
                if (fsetxattr(fd, k, v, sz, 0) < 0)
                        warnf(u, "%s: cannot set xattr '%s' of '%s': %s", u->what, k, name,
                              strerror(errno));
        }
}

/* Ownership before permissions: chown clears setuid/setgid. */
static void own_fd(struct layer_unpacker *u, struct archive_entry *ae, int fd)
{
        if (!u->rootless)
                fchown(fd, (uid_t)archive_entry_uid(ae), (gid_t)archive_entry_gid(ae));
}

static void set_owner_time(struct layer_unpacker *u, struct archive_entry *ae, int pfd,
                           const char *base, bool owned)
{
        struct timespec ts[2];

        if (!u->rootless && !owned)
                fchownat(pfd, base, (uid_t)archive_entry_uid(ae), (gid_t)archive_entry_gid(ae),
                         AT_SYMLINK_NOFOLLOW);
        ts[0].tv_sec = ts[1].tv_sec = archive_entry_mtime(ae);
        ts[0].tv_nsec = ts[1].tv_nsec = archive_entry_mtime_nsec(ae);
        utimensat(pfd, base, ts, AT_SYMLINK_NOFOLLOW);
}

/* Places one entry.  Returns -2 for an archive read error. */
static int place_entry(struct layer_unpacker *u, struct archive *a, struct archive_entry *ae,
                       struct kiln_error *err)
{
        const char *raw = archive_entry_pathname(ae);
        const char *hl = archive_entry_hardlink(ae);
        mode_t type = archive_entry_filetype(ae);
        mode_t perm = archive_entry_perm(ae) & 07777;
        _cleanup_free_ char *name = NULL, *parent = NULL;
        _cleanup_close_ int pfd = -1;
        const char *base;
        struct stat st;
        bool exists;
        int rc;

        if (!raw)
                return kiln_error_set(err, KILN_E_INVALID, "entry without a name");
        name = malloc(strlen(raw) + 2);
        parent = malloc(strlen(raw) + 2);
        if (!name || !parent)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        /* `umoci insert DIR /` names the root entry '/': it is the root, like './'. */
        if (unpack_is_root_name(raw))
                *name = 0;
        else if (unpack_clean_name(raw, name, "entry", err) < 0)
                return -1;
        if (!*name) {
                if (type != AE_IFDIR || hl)
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "refusing entry '%s': the root can only be a "
                                              "directory",
                                              raw);
                return 0; /* the root's own metadata: DIR keeps its mode */
        }
        strcpy(parent, name);
        base = unpack_split_base(parent);

        /* Whiteouts (image-spec layer.md "Whiteouts"). */
        if (str_has_prefix(base, ".wh."))
                return unpack_whiteout_entry(u, parent, base, raw, err);

        pfd = unpack_resolve_dir(u, parent, true, err);
        if (pfd < 0) {
                kiln_error_prefix(err, "entry '%s'", raw);
                return -1;
        }
        if (unpack_strset_add(&u->layer_paths, name) < 0 || unpack_mark_layer_dirs(u, pfd) < 0)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        exists = fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0;

        if (hl) {
                _cleanup_free_ char *tname = malloc(strlen(hl) + 2);
                _cleanup_free_ char *tparent = malloc(strlen(hl) + 2);
                _cleanup_close_ int tfd = -1;
                const char *tbase;
                struct stat tst;

                if (!tname || !tparent)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                if (unpack_clean_name(hl, tname, "hardlink target", err) < 0) {
                        kiln_error_prefix(err, "entry '%s'", raw);
                        return -1;
                }
                strcpy(tparent, tname);
                tbase = unpack_split_base(tparent);
                tfd = *tname ? unpack_resolve_dir(u, tparent, false, err) : -1;
                if (tfd < 0 || fstatat(tfd, tbase, &tst, AT_SYMLINK_NOFOLLOW) < 0)
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "refusing hardlink '%s': target '%s' is not in the "
                                              "layers so far",
                                              raw, hl);
                if (S_ISDIR(tst.st_mode))
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "refusing hardlink '%s': target '%s' is a directory",
                                              raw, hl);
                if (exists && st.st_dev == tst.st_dev && st.st_ino == tst.st_ino)
                        return 0;
                if (exists && unpack_remove_at(u, pfd, base) < 0)
                        return unpack_entry_fail(u, raw, errno, err, "replace");
                if (linkat(tfd, tbase, pfd, base, 0) < 0)
                        return unpack_entry_fail(u, raw, errno, err, "create hardlink");
                return 0;
        }

        if (type == AE_IFDIR) {
                _cleanup_close_ int dfd = -1;

                if (exists && !S_ISDIR(st.st_mode) && unpack_remove_at(u, pfd, base) < 0)
                        return unpack_entry_fail(u, raw, errno, err, "replace");
                if ((!exists || !S_ISDIR(st.st_mode)) && mkdirat(pfd, base, 0700) < 0)
                        return unpack_entry_fail(u, raw, errno, err, "create directory");
                dfd = openat(pfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (dfd < 0)
                        return unpack_entry_fail(u, raw, errno, err, "open directory");
                /* Unprivileged: keep u+rwx until the end so children can be written. */
                own_fd(u, ae, dfd);
                if (fchmod(dfd, perm | S_IRWXU) < 0 || fstat(dfd, &st) < 0)
                        return unpack_entry_fail(u, raw, errno, err, "chmod");
                if ((perm & S_IRWXU) == S_IRWXU)
                        unpack_pending_forget(u, st.st_dev, st.st_ino); /* the last entry wins */
                else if (unpack_pending_add(u, name, st.st_dev, st.st_ino, perm) < 0)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                apply_xattrs(u, ae, dfd, raw);
                set_owner_time(u, ae, pfd, base, true);
                return 0;
        }

        if (exists && unpack_remove_at(u, pfd, base) < 0)
                return unpack_entry_fail(u, raw, errno, err, "replace");

        switch (type) {
        case AE_IFREG: {
                _cleanup_close_ int fd =
                    openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
                if (fd < 0)
                        return unpack_entry_fail(u, raw, errno, err, "create");
                rc = copy_data(u, a, ae, fd, raw, err);
                if (rc < 0)
                        return rc;
                own_fd(u, ae, fd);
                if (fchmod(fd, perm) < 0)
                        return unpack_entry_fail(u, raw, errno, err, "chmod");
                apply_xattrs(u, ae, fd, raw);
                set_owner_time(u, ae, pfd, base, true);
                return 0;
        }
        case AE_IFLNK:
                /* Stored verbatim: links are resolved inside the root when used. */
                if (symlinkat(archive_entry_symlink(ae) ? archive_entry_symlink(ae) : "", pfd,
                              base) < 0)
                        return unpack_entry_fail(u, raw, errno, err, "create symlink");
                break;
        case AE_IFIFO:
                if (mkfifoat(pfd, base, perm) < 0)
                        return unpack_entry_fail(u, raw, errno, err, "create fifo");
                /* the mode, not the umask; a fifo just made, not a link */
                if (fchmodat(pfd, base, perm, 0) < 0)
                        return unpack_entry_fail(u, raw, errno, err, "chmod");
                break;
        case AE_IFCHR:
        case AE_IFBLK:
                if (u->rootless) {
                        warnf(u, "%s: skipped device '%s': not root", u->what, raw);
                        return 0;
                }
                if (mknodat(pfd, base, type | perm, archive_entry_rdev(ae)) < 0) {
                        warnf(u, "%s: skipped device '%s': %s", u->what, raw, strerror(errno));
                        return 0;
                }
                /* as for a fifo: the mode, not the umask */
                if (fchmodat(pfd, base, perm, 0) < 0)
                        return unpack_entry_fail(u, raw, errno, err, "chmod");
                break;
        default:
                warnf(u, "%s: skipped entry '%s' of unsupported type", u->what, raw);
                return 0;
        }
        set_owner_time(u, ae, pfd, base, false);
        return 0;
}

static la_ssize_t tar_src_read(struct archive *a, void *ctx, const void **ret)
{
        struct tar_src *s = ctx;
        ssize_t n = oci_reader_read(s->r, s->buf, IN_BUF, &s->err);

        (void)a;
        if (n < 0) {
                s->failed = true;
                archive_set_error(a, EIO, "%s", s->err.msg);
                return -1;
        }
        if (n == 0 && !s->padded) {
                /* Some writers (umoci's, for one) end the stream right after the
                 * last entry's data: no padding, no end-of-archive blocks.  Go's
                 * tar reader accepts that; libarchive wants the padding.  Add the
                 * zeros, and refuse any entry whose data would reach into them. */
                size_t pad = (size_t)((512 - s->real_len % 512) % 512) + 1024;
                s->padded = true;
                memset(s->buf, 0, pad);
                *ret = s->buf;
                return (la_ssize_t)pad;
        }
        s->real_len += n;
        *ret = s->buf;
        return n;
}

int layer_unpacker_apply(struct layer_unpacker *u, struct oci_reader *blob, const char *media_type,
                         const char *what, struct kiln_error *err)
{
        enum oci_compression c =
            media_type ? oci_media_type_compression(media_type) : OCI_COMPRESSION_UNKNOWN;
        struct tar_src src = {0};
        struct archive *a = NULL;
        struct archive_entry *ae;
        size_t n_entries = 0;
        int rc = -1;

        u->what = what;
        u->written = 0;
        unpack_strset_clear(&u->layer_paths);
        unpack_inoset_clear(&u->layer_dirs);
        u->src = &src;
        src.r = layer_decompress_reader_new(blob, c, u->opts.max_size, err);
        if (!src.r)
                goto out;
        src.buf = malloc(IN_BUF);
        a = archive_read_new();
        if (!src.buf || !a) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto out;
        }
        archive_read_support_format_tar(a);
        archive_read_set_options(a, "hdrcharset=BINARY");
        if (archive_read_open(a, &src, NULL, tar_src_read, NULL) != ARCHIVE_OK)
                goto archive_err;
        for (;;) {
                int r = archive_read_next_header(a, &ae);
                if (r == ARCHIVE_EOF)
                        break;
                if (r < ARCHIVE_WARN)
                        goto archive_err;
                n_entries++;
                u->data_start = archive_filter_bytes(a, 0);
                r = place_entry(u, a, ae, err);
                if (r == -2)
                        goto archive_err;
                if (r < 0)
                        goto prefix;
        }
        if (src.padded && n_entries > 0)
                warnf(u, "%s: the tar ends without its end-of-archive blocks", what);
        /* The rest of the blob (padding, or garbage after the end blocks) is
         * still read so its digest is checked by the verified reader. */
        if (oci_reader_drain(src.r, err) < 0)
                goto prefix;
        rc = 0;
        goto out;
archive_err:
        if (src.failed)
                *err = src.err;
        else
                kiln_error_set(err, KILN_E_INVALID, "bad tar: %s",
                               archive_error_string(a) ? archive_error_string(a) : "read failed");
prefix:
        kiln_error_prefix(err, "%s", what);
out:
        u->src = NULL;
        if (a)
                archive_read_free(a);
        free(src.buf);
        oci_reader_free(src.r);
        return rc;
}

int layer_unpacker_finish(struct layer_unpacker *u, struct kiln_error *err)
{
        /* Last met first, so a read-only parent does not block its children.
         * A name that now leads elsewhere (a later entry replaced the
         * directory by a symlink, to DIR itself say) is left alone: the mode
         * goes to the directory it was meant for, never to DIR. */
        for (size_t i = u->n_dirs; i-- > 0;) {
                const struct pending_dir *pd = &u->dirs[i];
                _cleanup_close_ int fd = -1;
                struct stat st;

                if (pd->gone || (pd->dev == u->root_dev && pd->ino == u->root_ino))
                        continue;
                fd = unpack_resolve_dir(u, pd->path, false, err);
                if (fd < 0) {
                        kiln_error_clear(err);
                        continue;
                }
                if (fstat(fd, &st) == 0 && st.st_dev == pd->dev && st.st_ino == pd->ino)
                        chmod_fd(fd, pd->mode);
        }
        return 0;
}
