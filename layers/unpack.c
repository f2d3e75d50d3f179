/* O_PATH, AT_EMPTY_PATH */
#define _GNU_SOURCE
#include "unpack.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>
#if defined(SYS_openat2)
#include <linux/openat2.h>
#endif

#include "path.h"
#include "util.h"

#define IN_BUF (128u * 1024)
#define MAX_LINKS 40
#define MAX_RESOLVE (64u * 1024)

/* ---- decompression ---- */

struct dz_reader {
        struct oci_reader base;
        struct oci_reader *inner;
        enum oci_compression c;
        int64_t max, out;
        unsigned char *in;
        size_t in_pos, in_len;
        bool in_eof;
        bool z_init, z_end;
        z_stream z;
        ZSTD_DStream *zs;
        size_t zs_last;
};

static int dz_fill(struct dz_reader *d, struct kiln_error *err)
{
        ssize_t n;

        if (d->in_pos < d->in_len || d->in_eof)
                return 0;
        n = oci_reader_read(d->inner, d->in, IN_BUF, err);
        if (n < 0)
                return -1;
        d->in_pos = 0;
        d->in_len = (size_t)n;
        if (n == 0)
                d->in_eof = true;
        return 0;
}

static ssize_t dz_count(struct dz_reader *d, size_t n, struct kiln_error *err)
{
        d->out += (int64_t)n;
        if (d->max > 0 && d->out > d->max)
                return kiln_error_set(err, KILN_E_LIMIT,
                                      "layer decompresses to more than %lld bytes (the limit)",
                                      (long long)d->max);
        return (ssize_t)n;
}

static ssize_t dz_read_gzip(struct dz_reader *d, void *buf, size_t len, struct kiln_error *err)
{
        for (;;) {
                int r;
                size_t got;

                if (d->z_end) {
                        /* RFC 1952 2.2: members follow each other; anything else is garbage. */
                        if (dz_fill(d, err) < 0)
                                return -1;
                        if (d->in_pos == d->in_len)
                                return 0;
                        if (d->in[d->in_pos] != 0x1f)
                                return kiln_error_set(err, KILN_E_INVALID,
                                                      "layer has trailing data after the gzip "
                                                      "stream");
                        inflateReset(&d->z);
                        d->z_end = false;
                }
                if (dz_fill(d, err) < 0)
                        return -1;
                d->z.next_in = d->in + d->in_pos;
                d->z.avail_in = (uInt)(d->in_len - d->in_pos);
                d->z.next_out = buf;
                d->z.avail_out = (uInt)(len > (1u << 30) ? (1u << 30) : len);
                got = d->z.avail_out;
                r = inflate(&d->z, Z_NO_FLUSH);
                d->in_pos = d->in_len - d->z.avail_in;
                got -= d->z.avail_out;
                if (r == Z_STREAM_END)
                        d->z_end = true;
                else if (r == Z_BUF_ERROR && d->in_eof && d->in_pos == d->in_len)
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "layer gzip stream is truncated");
                else if (r != Z_OK && r != Z_BUF_ERROR)
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "layer gzip stream is corrupt: %s",
                                              d->z.msg ? d->z.msg : "inflate failed");
                if (got)
                        return dz_count(d, got, err);
                if (d->in_eof && d->in_pos == d->in_len && !d->z_end)
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "layer gzip stream is truncated");
        }
}

static ssize_t dz_read_zstd(struct dz_reader *d, void *buf, size_t len, struct kiln_error *err)
{
        for (;;) {
                ZSTD_inBuffer in;
                ZSTD_outBuffer out = {buf, len, 0};
                size_t r;

                if (dz_fill(d, err) < 0)
                        return -1;
                if (d->in_pos == d->in_len && d->in_eof) {
                        if (d->zs_last != 0)
                                return kiln_error_set(err, KILN_E_INVALID,
                                                      "layer zstd stream is truncated");
                        return 0;
                }
                in = (ZSTD_inBuffer){d->in, d->in_len, d->in_pos};
                r = ZSTD_decompressStream(d->zs, &out, &in);
                d->in_pos = in.pos;
                if (ZSTD_isError(r)) {
                        if (ZSTD_getErrorCode(r) == ZSTD_error_frameParameter_windowTooLarge)
                                return kiln_error_set(err, KILN_E_LIMIT,
                                                      "layer zstd frame needs a window over 2^%d "
                                                      "bytes",
                                                      LAYER_ZSTD_WINDOWLOG_MAX);
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "layer zstd stream is corrupt: %s",
                                              ZSTD_getErrorName(r));
                }
                d->zs_last = r;
                if (out.pos)
                        return dz_count(d, out.pos, err);
        }
}

static ssize_t dz_read(struct oci_reader *r, void *buf, size_t len, struct kiln_error *err)
{
        struct dz_reader *d = (struct dz_reader *)r;

        switch (d->c) {
        case OCI_COMPRESSION_GZIP:
                return dz_read_gzip(d, buf, len, err);
        case OCI_COMPRESSION_ZSTD:
                return dz_read_zstd(d, buf, len, err);
        default:
                if (d->in_pos < d->in_len) {
                        size_t n = d->in_len - d->in_pos;
                        if (n > len)
                                n = len;
                        memcpy(buf, d->in + d->in_pos, n);
                        d->in_pos += n;
                        return dz_count(d, n, err);
                } else {
                        ssize_t n = oci_reader_read(d->inner, buf, len, err);
                        return n <= 0 ? n : dz_count(d, (size_t)n, err);
                }
        }
}

static void dz_free(struct oci_reader *r)
{
        struct dz_reader *d = (struct dz_reader *)r;

        oci_reader_free(d->inner);
        if (d->z_init)
                inflateEnd(&d->z);
        ZSTD_freeDStream(d->zs);
        free(d->in);
        free(d);
}

static enum oci_compression sniff(const unsigned char *b, size_t n)
{
        if (n >= 2 && b[0] == 0x1f && b[1] == 0x8b)
                return OCI_COMPRESSION_GZIP;
        if (n >= 4 && b[0] == 0x28 && b[1] == 0xb5 && b[2] == 0x2f && b[3] == 0xfd)
                return OCI_COMPRESSION_ZSTD;
        return OCI_COMPRESSION_NONE;
}

struct oci_reader *layer_decompress_reader_new(struct oci_reader *inner, enum oci_compression c,
                                               int64_t max_size, struct kiln_error *err)
{
        struct dz_reader *d = calloc(1, sizeof(*d));
        enum oci_compression found;

        if (!d) {
                oci_reader_free(inner);
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        d->base.read = dz_read;
        d->base.free = dz_free;
        d->inner = inner;
        d->max = max_size;
        d->in = calloc(1, IN_BUF);
        if (!d->in) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto fail;
        }
        /* Look at the first bytes: the media type must tell the truth. */
        while (d->in_len < 4 && !d->in_eof) {
                ssize_t n = oci_reader_read(inner, d->in + d->in_len, IN_BUF - d->in_len, err);
                if (n < 0)
                        goto fail;
                if (n == 0)
                        d->in_eof = true;
                d->in_len += (size_t)n;
        }
        d->in_eof = false; /* the inner reader is asked again; it answers 0 again */
        found = sniff(d->in, d->in_len);
        if (c == OCI_COMPRESSION_UNKNOWN)
                c = found;
        if (found != c) {
                kiln_error_set(err, KILN_E_INVALID, "layer media type says %s but its bytes are %s",
                               oci_compression_name(c), oci_compression_name(found));
                goto fail;
        }
        d->c = c;
        if (c == OCI_COMPRESSION_GZIP) {
                if (inflateInit2(&d->z, 15 + 16) != Z_OK) {
                        kiln_error_set(err, KILN_E_NOMEM, "cannot start gzip decompression");
                        goto fail;
                }
                d->z_init = true;
        } else if (c == OCI_COMPRESSION_ZSTD) {
                d->zs = ZSTD_createDStream();
                if (!d->zs || ZSTD_isError(ZSTD_DCtx_setParameter(d->zs, ZSTD_d_windowLogMax,
                                                                  LAYER_ZSTD_WINDOWLOG_MAX))) {
                        kiln_error_set(err, KILN_E_NOMEM, "cannot start zstd decompression");
                        goto fail;
                }
        }
        return &d->base;
fail:
        dz_free(&d->base);
        return NULL;
}

/* ---- the unpacker ---- */

struct tar_src {
        struct oci_reader *r;
        struct kiln_error err;
        bool failed;
        bool padded;      /* the stream ended early and zeros were added */
        int64_t real_len; /* bytes of tar actually in the layer */
        unsigned char *buf;
};

/* A directory whose mode is set at the end (it lacks u+rwx, which the
 * entries below it may need).  Pinned by its inode: at the end its name is
 * resolved again and the mode applied only if it is still this directory. */
struct pending_dir {
        char *path;
        dev_t dev;
        ino_t ino;
        mode_t mode;
        bool gone; /* removed since (whiteout, replaced) */
};

struct strset {
        char **slots;
        size_t cap, n;
};

/* A set of directories by dev/ino. */
struct inoset {
        struct inoset_slot {
                dev_t dev;
                ino_t ino;
                bool used;
        } * slots;
        size_t cap, n;
};

struct layer_unpacker {
        struct layer_unpack_opts opts;
        char *dir;
        int root; /* O_PATH fd of DIR */
        dev_t root_dev;
        ino_t root_ino;
        bool rootless;
        bool have_openat2;
        struct pending_dir *dirs; /* in the order they were met */
        size_t n_dirs, cap_dirs;
        size_t *dir_slots; /* open addressing on dev/ino: 1 + index in dirs, 0 free */
        size_t cap_slots;
        struct strset layer_paths; /* paths written by the layer being applied */
        struct inoset layer_dirs;  /* directories it wrote into, their parents up to DIR */
        int64_t written;           /* apparent size of the files of this layer */
        int64_t total;             /* and of all layers */
        const char *what;
        unsigned char *buf;
        struct tar_src *src; /* the layer being read */
        int64_t data_start;  /* offset of the current entry's data in the tar */
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

static uint64_t hash_str(const char *s)
{
        uint64_t h = 1469598103934665603ull;

        for (; *s; s++)
                h = (h ^ (unsigned char)*s) * 1099511628211ull;
        return h;
}

static void strset_clear(struct strset *s)
{
        for (size_t i = 0; i < s->cap; i++)
                free(s->slots[i]);
        free(s->slots);
        memset(s, 0, sizeof(*s));
}

static bool strset_has(const struct strset *s, const char *k)
{
        if (!s->cap)
                return false;
        for (size_t i = hash_str(k) & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
                if (!s->slots[i])
                        return false;
                if (!strcmp(s->slots[i], k))
                        return true;
        }
}

static int strset_add(struct strset *s, const char *k)
{
        if (strset_has(s, k))
                return 0;
        if ((s->n + 1) * 2 > s->cap) {
                struct strset ns = {0};
                ns.cap = s->cap ? s->cap * 2 : 1024;
                ns.slots = calloc(ns.cap, sizeof(char *));
                if (!ns.slots)
                        return -1;
                for (size_t i = 0; i < s->cap; i++) {
                        char *v = s->slots[i];
                        if (!v)
                                continue;
                        for (size_t j = hash_str(v) & (ns.cap - 1);; j = (j + 1) & (ns.cap - 1))
                                if (!ns.slots[j]) {
                                        ns.slots[j] = v;
                                        break;
                                }
                }
                ns.n = s->n;
                free(s->slots);
                *s = ns;
        }
        for (size_t i = hash_str(k) & (s->cap - 1);; i = (i + 1) & (s->cap - 1))
                if (!s->slots[i]) {
                        s->slots[i] = strdup(k);
                        if (!s->slots[i])
                                return -1;
                        s->n++;
                        return 0;
                }
}

static size_t ino_hash(dev_t dev, ino_t ino)
{
        uint64_t h =
            ((uint64_t)ino * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)dev * 0xff51afd7ed558ccdull);

        return (size_t)(h ^ (h >> 29));
}

static void inoset_clear(struct inoset *s)
{
        free(s->slots);
        memset(s, 0, sizeof(*s));
}

static struct inoset_slot *inoset_slot(const struct inoset *s, dev_t dev, ino_t ino)
{
        for (size_t i = ino_hash(dev, ino) & (s->cap - 1);; i = (i + 1) & (s->cap - 1))
                if (!s->slots[i].used || (s->slots[i].dev == dev && s->slots[i].ino == ino))
                        return &s->slots[i];
}

static bool inoset_has(const struct inoset *s, dev_t dev, ino_t ino)
{
        return s->cap && inoset_slot(s, dev, ino)->used;
}

static int inoset_add(struct inoset *s, dev_t dev, ino_t ino)
{
        struct inoset_slot *slot;

        if ((s->n + 1) * 2 > s->cap) {
                struct inoset ns = {.cap = s->cap ? s->cap * 2 : 1024, .n = s->n};
                ns.slots = calloc(ns.cap, sizeof(*ns.slots));
                if (!ns.slots)
                        return -1;
                for (size_t i = 0; i < s->cap; i++)
                        if (s->slots[i].used)
                                *inoset_slot(&ns, s->slots[i].dev, s->slots[i].ino) = s->slots[i];
                free(s->slots);
                *s = ns;
        }
        slot = inoset_slot(s, dev, ino);
        if (!slot->used) {
                *slot = (struct inoset_slot){dev, ino, true};
                s->n++;
        }
        return 0;
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
        strset_clear(&u->layer_paths);
        inoset_clear(&u->layer_dirs);
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

/* Splits a cleaned path "a/b/c" into parent "a/b" and base "c" (in place). */
static const char *split_base(char *path)
{
        char *s = strrchr(path, '/');

        if (!s) {
                memmove(path + 1, path, strlen(path) + 1);
                path[0] = 0;
                return path + 1;
        }
        *s = 0;
        return s + 1;
}

/* '/', '//', '/.', './': names of the root itself, whatever the slashes. */
static bool is_root_name(const char *s)
{
        for (; *s; s++)
                if (*s != '/' && !(*s == '.' && (s[1] == '/' || !s[1])))
                        return false;
        return true;
}

/* Lexical clean of an entry name (layers/path.h): "./a//b/../c" -> "a/c";
 * absolute names and names that climb above the root are refused.  buf
 * must hold strlen(in)+1. */
static int clean_name(const char *in, char *buf, const char *kind, struct kiln_error *err)
{
        char what[64];
        char *c;

        snprintf(what, sizeof(what), "refusing %s", kind);
        if (layer_path_clean(in, LAYER_PATH_RELATIVE | LAYER_PATH_FOLD_DOTDOT, what, &c, err) < 0)
                return -1;
        strcpy(buf, c);
        free(c);
        return 0;
}

/* Component walk: resolves path inside the root, following symlinks as if
 * the root were '/'.  Missing directories are created when create is set.
 * Returns an O_PATH fd of the directory. */
static int walk_in_root(struct layer_unpacker *u, const char *path, bool create,
                        struct kiln_error *err)
{
        _cleanup_free_ char *rest = NULL;
        int cur = dup(u->root);
        size_t depth = 0;
        int links = 0;

        if (cur < 0)
                return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot open '%s'", u->dir);
        rest = strdup(path);
        if (!rest) {
                close(cur);
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        while (*rest) {
                char *p = rest, *q;
                struct stat st;
                int fd;

                while (*p == '/')
                        p++;
                q = p;
                while (*q && *q != '/')
                        q++;
                if (*q)
                        *q++ = 0;
                if (!*p || !strcmp(p, ".")) {
                        memmove(rest, q, strlen(q) + 1);
                        continue;
                }
                if (!strcmp(p, "..")) {
                        if (depth > 0) {
                                fd = openat(cur, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
                                if (fd < 0)
                                        goto io_fail;
                                close(cur);
                                cur = fd;
                                depth--;
                        }
                        memmove(rest, q, strlen(q) + 1);
                        continue;
                }
                fd = openat(cur, p, O_PATH | O_NOFOLLOW | O_CLOEXEC);
                if (fd < 0 && errno == ENOENT && create) {
                        bool made = mkdirat(cur, p, 0755) == 0;
                        if (!made && errno != EEXIST)
                                goto io_fail;
                        if (made) {
                                /* 0755 whatever the umask */
                                int dfd =
                                    openat(cur, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                                if (dfd >= 0) {
                                        fchmod(dfd, 0755);
                                        close(dfd);
                                }
                        }
                        fd = openat(cur, p, O_PATH | O_NOFOLLOW | O_CLOEXEC);
                }
                if (fd < 0)
                        goto io_fail;
                if (fstat(fd, &st) < 0) {
                        close(fd);
                        goto io_fail;
                }
                if (S_ISLNK(st.st_mode)) {
                        char target[4096];
                        ssize_t n = readlinkat(fd, "", target, sizeof(target) - 1);
                        _cleanup_free_ char *nrest = NULL;

                        close(fd);
                        if (n < 0)
                                goto io_fail;
                        target[n] = 0;
                        if (++links > MAX_LINKS) {
                                errno = ELOOP;
                                goto io_fail;
                        }
                        nrest = kiln_strdupf("%s/%s", target, q);
                        if (!nrest || strlen(nrest) > MAX_RESOLVE) {
                                close(cur);
                                return kiln_error_set(err, KILN_E_INVALID,
                                                      "cannot resolve '%s': path too long", path);
                        }
                        if (target[0] == '/') {
                                /* An absolute target restarts at the root. */
                                fd = dup(u->root);
                                if (fd < 0)
                                        goto io_fail;
                                close(cur);
                                cur = fd;
                                depth = 0;
                        }
                        free(rest);
                        rest = steal_ptr(&nrest);
                        continue;
                }
                if (!S_ISDIR(st.st_mode)) {
                        close(fd);
                        errno = ENOTDIR;
                        goto io_fail;
                }
                close(cur);
                cur = fd;
                depth++;
                memmove(rest, q, strlen(q) + 1);
        }
        return cur;
io_fail : {
        int e = errno;
        close(cur);
        return kiln_error_set_errno(err, e == ENOENT ? KILN_E_NOT_FOUND : KILN_E_IO, e,
                                    "cannot resolve '%s' inside '%s'", path, u->dir);
}
}

static int resolve_dir(struct layer_unpacker *u, const char *path, bool create,
                       struct kiln_error *err)
{
        if (!*path)
                return dup(u->root);
#if defined(SYS_openat2)
        if (u->have_openat2) {
                struct open_how how = {
                    .flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
                    .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
                };
                long fd = syscall(SYS_openat2, u->root, path, &how, sizeof(how));

                if (fd >= 0)
                        return (int)fd;
                if (errno == ENOSYS || errno == EPERM || errno == E2BIG)
                        u->have_openat2 = false;
                else if (errno == ENAMETOOLONG)
                        ; /* over PATH_MAX: the walk goes one component at a time */
                else if (!(errno == ENOENT && create))
                        return kiln_error_set_errno(
                            err, errno == ENOENT ? KILN_E_NOT_FOUND : KILN_E_IO, errno,
                            "cannot resolve '%s' inside '%s'", path, u->dir);
        }
#endif
        return walk_in_root(u, path, create, err);
}

/* ---- directories whose mode is applied at the end ---- */

/* The slot of dev/ino: the one that holds it, or the free one it would take. */
static size_t *pending_slot(struct layer_unpacker *u, dev_t dev, ino_t ino)
{
        size_t mask = u->cap_slots - 1;

        for (size_t i = ino_hash(dev, ino) & mask;; i = (i + 1) & mask) {
                size_t *slot = &u->dir_slots[i];
                if (!*slot || (u->dirs[*slot - 1].dev == dev && u->dirs[*slot - 1].ino == ino))
                        return slot;
        }
}

static struct pending_dir *pending_find(struct layer_unpacker *u, dev_t dev, ino_t ino)
{
        size_t *slot;

        if (!u->cap_slots)
                return NULL;
        slot = pending_slot(u, dev, ino);
        return *slot ? &u->dirs[*slot - 1] : NULL;
}

static int pending_grow(struct layer_unpacker *u)
{
        size_t nc = u->cap_slots ? u->cap_slots * 2 : 1024;
        size_t *old = u->dir_slots, oc = u->cap_slots;

        u->dir_slots = calloc(nc, sizeof(*u->dir_slots));
        if (!u->dir_slots) {
                u->dir_slots = old;
                return -1;
        }
        u->cap_slots = nc;
        for (size_t i = 0; i < oc; i++)
                if (old[i])
                        *pending_slot(u, u->dirs[old[i] - 1].dev, u->dirs[old[i] - 1].ino) = old[i];
        free(old);
        return 0;
}

/* Records (or updates) the final mode of the directory dev/ino named path.
 * A directory removed since keeps its record, marked gone; a new one on the
 * same inode number gets a new record, met later. */
static int pending_add(struct layer_unpacker *u, const char *path, dev_t dev, ino_t ino,
                       mode_t mode)
{
        struct pending_dir *pd = pending_find(u, dev, ino);
        char *copy = strdup(path);

        if (!copy)
                return -1;
        if (pd && !pd->gone) {
                free(pd->path);
                pd->path = copy;
                pd->mode = mode;
                return 0;
        }
        if ((u->n_dirs + 1) * 2 > u->cap_slots && pending_grow(u) < 0)
                goto fail;
        if (u->n_dirs == u->cap_dirs) {
                size_t nc = u->cap_dirs ? u->cap_dirs * 2 : 16;
                struct pending_dir *nd = realloc(u->dirs, nc * sizeof(*nd));
                if (!nd)
                        goto fail;
                u->dirs = nd;
                u->cap_dirs = nc;
        }
        u->dirs[u->n_dirs] = (struct pending_dir){copy, dev, ino, mode, false};
        *pending_slot(u, dev, ino) = ++u->n_dirs;
        return 0;
fail:
        free(copy);
        return -1;
}

static void pending_forget(struct layer_unpacker *u, dev_t dev, ino_t ino)
{
        struct pending_dir *pd = pending_find(u, dev, ino);

        if (pd)
                pd->gone = true;
}

/* ---- removing trees ---- */

/* One directory on the stack of prune_tree(). */
struct prune_frame {
        char **subdirs; /* to visit: a leading 'k' keeps the directory, 'r' removes it */
        size_t n, next, cap;
        size_t path_len; /* length of the layer path above this directory */
        dev_t dev;
        ino_t ino;
        bool remove;
};

struct prune {
        struct prune_frame *st;
        size_t n, cap;
        char *path; /* this directory's name in the layer */
        size_t plen, pcap;
};

static int prune_path_add(struct prune *p, const char *name)
{
        size_t n = strlen(name);

        if (p->plen + n + 2 > p->pcap) {
                size_t nc = (p->plen + n + 2) * 2;
                char *np = realloc(p->path, nc);
                if (!np)
                        return -1;
                p->path = np;
                p->pcap = nc;
        }
        if (p->plen)
                p->path[p->plen++] = '/';
        memcpy(p->path + p->plen, name, n + 1);
        p->plen += n;
        return 0;
}

static void prune_path_cut(struct prune *p, size_t len)
{
        p->plen = len;
        if (p->path)
                p->path[len] = 0;
}

static int prune_push(struct prune *p, int fd, bool remove)
{
        struct prune_frame *f;
        struct stat st;

        if (fstat(fd, &st) < 0)
                return -1;
        if (p->n == p->cap) {
                size_t nc = p->cap ? p->cap * 2 : 16;
                struct prune_frame *ns = realloc(p->st, nc * sizeof(*ns));
                if (!ns)
                        return -1;
                p->st = ns;
                p->cap = nc;
        }
        f = &p->st[p->n++];
        *f = (struct prune_frame){
            .path_len = p->plen, .dev = st.st_dev, .ino = st.st_ino, .remove = remove};
        return 0;
}

static void prune_pop(struct prune *p)
{
        struct prune_frame *f = &p->st[--p->n];

        for (size_t i = 0; i < f->n; i++)
                free(f->subdirs[i]);
        free(f->subdirs);
}

static int frame_add_subdir(struct prune_frame *f, char kind, const char *name)
{
        if (f->n == f->cap) {
                size_t nc = f->cap ? f->cap * 2 : 8;
                char **ns = realloc(f->subdirs, nc * sizeof(*ns));
                if (!ns)
                        return -1;
                f->subdirs = ns;
                f->cap = nc;
        }
        f->subdirs[f->n] = kiln_strdupf("%c%s", kind, name);
        if (!f->subdirs[f->n])
                return -1;
        f->n++;
        return 0;
}

/* Is the child name of the directory being scanned one this layer wrote? */
static bool written_by_layer(struct layer_unpacker *u, struct prune *p, const char *name)
{
        size_t len = p->plen;
        bool has;

        if (prune_path_add(p, name) < 0)
                return true; /* out of memory: keep rather than lose */
        has = strset_has(&u->layer_paths, p->path);
        prune_path_cut(p, len);
        return has;
}

/* One pass over the directory cur: removes its files (those of lower layers
 * only, unless the frame removes everything) and lists its subdirectories. */
static int prune_scan(struct layer_unpacker *u, struct prune *p, int cur)
{
        struct prune_frame *f = &p->st[p->n - 1];
        int fd = openat(cur, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        struct dirent *e;
        DIR *d;
        int rc = 0;

        if (fd < 0)
                return -1;
        d = fdopendir(fd);
        if (!d) {
                close(fd);
                return -1;
        }
        while (rc == 0 && (e = readdir(d))) {
                struct stat st;
                bool keep;

                if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                        continue;
                if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                        rc = errno == ENOENT ? 0 : -1;
                        continue;
                }
                keep = !f->remove &&
                       (written_by_layer(u, p, e->d_name) ||
                        (S_ISDIR(st.st_mode) && inoset_has(&u->layer_dirs, st.st_dev, st.st_ino)));
                if (S_ISDIR(st.st_mode))
                        rc = frame_add_subdir(f, keep ? 'k' : 'r', e->d_name);
                else if (!keep && unlinkat(dirfd(d), e->d_name, 0) < 0 && errno != ENOENT)
                        rc = -1;
        }
        closedir(d);
        return rc;
}

/* Goes back up from cur to its parent, checked against the inode it came
 * from, and removes the directory just left when its frame says so.
 * Returns the parent's fd (cur is closed). */
static int prune_up(struct prune *p, int cur)
{
        struct prune_frame *f = &p->st[p->n - 1], *parent = &p->st[p->n - 2];
        const char *name = parent->subdirs[parent->next - 1] + 1;
        bool remove = f->remove;
        int up = openat(cur, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
        struct stat st;

        close(cur);
        if (up < 0)
                return -1;
        if (fstat(up, &st) < 0 || st.st_dev != parent->dev || st.st_ino != parent->ino) {
                close(up);
                errno = ESTALE; /* moved while being removed */
                return -1;
        }
        prune_path_cut(p, f->path_len);
        prune_pop(p);
        if (remove && unlinkat(up, name, AT_REMOVEDIR) < 0 && errno != ENOENT) {
                int e = errno;
                close(up);
                errno = e;
                return -1;
        }
        return up;
}

/* Empties the directory top: of everything (path NULL), or, for an opaque
 * whiteout, of what lower layers put there (path is top's name in the
 * layer).  Depth first with a stack on the heap and one directory open at a
 * time, whatever the depth: going down by name with O_NOFOLLOW, back up by
 * '..' checked against the inode it came from.  Removed directories lose
 * their deferred mode.  -1 with errno set on failure. */
static int prune_tree(struct layer_unpacker *u, int top, const char *path)
{
        struct prune p = {0};
        int cur = dup(top), rc = -1, e = 0;

        if (cur < 0)
                return -1;
        if ((path && prune_path_add(&p, path) < 0) || prune_push(&p, cur, !path) < 0 ||
            prune_scan(u, &p, cur) < 0)
                goto out;
        while (p.n > 0) {
                struct prune_frame *f = &p.st[p.n - 1];
                const char *name;
                int fd;

                if (f->next == f->n) {
                        if (p.n == 1)
                                break;
                        cur = prune_up(&p, cur);
                        if (cur < 0)
                                goto out;
                        continue;
                }
                name = f->subdirs[f->next++];
                fd = openat(cur, name + 1, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (fd < 0) {
                        if (errno == ENOENT)
                                continue;
                        goto out;
                }
                close(cur);
                cur = fd;
                if (prune_path_add(&p, name + 1) < 0 || prune_push(&p, cur, name[0] == 'r') < 0)
                        goto out;
                if (name[0] == 'r')
                        pending_forget(u, p.st[p.n - 1].dev, p.st[p.n - 1].ino);
                if (prune_scan(u, &p, cur) < 0)
                        goto out;
        }
        rc = 0;
out:
        e = errno;
        if (cur >= 0)
                close(cur);
        while (p.n > 0)
                prune_pop(&p);
        free(p.st);
        free(p.path);
        errno = e;
        return rc;
}

/* Removes name in pfd, a directory tree included, never following links. */
static int remove_at(struct layer_unpacker *u, int pfd, const char *name)
{
        _cleanup_close_ int fd = -1;
        struct stat st;

        if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : -1;
        if (!S_ISDIR(st.st_mode))
                return unlinkat(pfd, name, 0);
        fd = openat(pfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0)
                return -1;
        pending_forget(u, st.st_dev, st.st_ino);
        if (prune_tree(u, fd, NULL) < 0)
                return -1;
        return unlinkat(pfd, name, AT_REMOVEDIR);
}

/* Opaque whiteout: removes what lower layers put in dir (the fd) but keeps
 * what this layer wrote (path is dir's name in the layer). */
static int opaque_at(struct layer_unpacker *u, int dfd, const char *path)
{
        return prune_tree(u, dfd, path);
}

/* A whiteout hides what lower layers put at victim, never what this layer
 * wrote (image-spec layer.md "Whiteouts": a whiteout applies to the lower
 * layers; umoci keeps the file too): a file or directory of this layer stays,
 * and of a directory this layer wrote into only the lower content goes. */
static int whiteout_at(struct layer_unpacker *u, int pfd, const char *parent, const char *victim)
{
        _cleanup_free_ char *path =
            *parent ? kiln_strdupf("%s/%s", parent, victim) : strdup(victim);
        _cleanup_close_ int fd = -1;
        struct stat st;
        bool ours;

        if (!path) {
                errno = ENOMEM;
                return -1;
        }
        if (fstatat(pfd, victim, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : -1;
        ours = strset_has(&u->layer_paths, path) ||
               (S_ISDIR(st.st_mode) && inoset_has(&u->layer_dirs, st.st_dev, st.st_ino));
        if (!ours)
                return remove_at(u, pfd, victim);
        if (!S_ISDIR(st.st_mode))
                return 0;
        fd = openat(pfd, victim, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -1;
        return prune_tree(u, fd, path);
}

/* Marks pfd, where an entry of this layer goes, and its parents up to DIR
 * as written into by this layer.  Each directory is marked once a layer and
 * the climb stops at the first one already marked, so this is O(1) amortized. */
static int mark_layer_dirs(struct layer_unpacker *u, int pfd)
{
        int fd = dup(pfd), rc = 0;

        while (fd >= 0) {
                struct stat st;
                int up;

                if (fstat(fd, &st) < 0 || (st.st_dev == u->root_dev && st.st_ino == u->root_ino) ||
                    inoset_has(&u->layer_dirs, st.st_dev, st.st_ino))
                        break;
                if (inoset_add(&u->layer_dirs, st.st_dev, st.st_ino) < 0) {
                        rc = -1;
                        break;
                }
                up = openat(fd, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
                close(fd);
                fd = up;
        }
        if (fd >= 0)
                close(fd);
        return rc;
}

static int entry_fail(struct layer_unpacker *u, const char *name, int e, struct kiln_error *err,
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
                        return entry_fail(u, name, errno, err, "seek in");
                if (write_all(fd, buf, len) < 0)
                        return entry_fail(u, name, errno, err, "write");
                pos = off + (int64_t)len;
        }
        if (!sparse && u->src && u->src->padded && u->data_start + size > u->src->real_len)
                return kiln_error_set(err, KILN_E_INVALID, "tar is truncated in entry '%s'", name);
        if (pos < size && ftruncate(fd, size) < 0)
                return entry_fail(u, name, errno, err, "extend");
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

/* overlay_whiteouts mode (unpack.h): the whiteout recorded, nothing removed. */
static int overlay_whiteout(struct layer_unpacker *u, const char *parent, const char *base,
                            const char *raw, struct kiln_error *err)
{
        const char *victim = base + 4;
        _cleanup_close_ int pfd = -1;

        if (strcmp(base, ".wh..wh..opq") &&
            (!*victim || !strcmp(victim, ".") || !strcmp(victim, "..")))
                return kiln_error_set(err, KILN_E_INVALID, "refusing whiteout '%s': invalid name",
                                      raw);
        pfd = resolve_dir(u, parent, true, err);
        if (pfd < 0) {
                kiln_error_prefix(err, "entry '%s'", raw);
                return -1;
        }
        if (!strcmp(base, ".wh..wh..opq")) {
                _cleanup_close_ int dfd = openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (dfd < 0 || fsetxattr(dfd, "user.overlay.opaque", "y", 1, 0) < 0)
                        return entry_fail(u, raw, errno, err, "mark opaque");
                return 0;
        }
        {
                /* a whiteout hides the lower layers only (see above): what this
                 * layer wrote stays, a file by shadowing them, a directory by
                 * becoming opaque to them */
                struct stat st;
                if (fstatat(pfd, victim, &st, AT_SYMLINK_NOFOLLOW) == 0) {
                        _cleanup_close_ int dfd = -1;
                        if (!S_ISDIR(st.st_mode))
                                return 0;
                        dfd = openat(pfd, victim, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (dfd < 0 || fsetxattr(dfd, "user.overlay.opaque", "y", 1, 0) < 0)
                                return entry_fail(u, raw, errno, err, "mark opaque");
                        return 0;
                }
                if (errno != ENOENT)
                        return entry_fail(u, raw, errno, err, "replace");
        }
        if (mknodat(pfd, victim, S_IFCHR | 0000, makedev(0, 0)) < 0)
                return entry_fail(u, raw, errno, err, "create whiteout");
        return 0;
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
        if (is_root_name(raw))
                *name = 0;
        else if (clean_name(raw, name, "entry", err) < 0)
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
        base = split_base(parent);

        /* Whiteouts (image-spec layer.md "Whiteouts"). */
        if (str_has_prefix(base, ".wh.")) {
                const char *victim = base + 4;

                if (u->opts.overlay_whiteouts)
                        return overlay_whiteout(u, parent, base, raw, err);
                pfd = resolve_dir(u, parent, false, err);
                if (!strcmp(base, ".wh..wh..opq")) {
                        if (pfd < 0) {
                                kiln_error_clear(err);
                                return 0;
                        }
                        if (opaque_at(u, pfd, parent) < 0)
                                return entry_fail(u, raw, errno, err, "apply opaque whiteout");
                        return 0;
                }
                if (!*victim || !strcmp(victim, ".") || !strcmp(victim, ".."))
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "refusing whiteout '%s': invalid name", raw);
                if (pfd < 0) {
                        if (err && err->code == KILN_E_NOT_FOUND) {
                                kiln_error_clear(err);
                                return 0; /* nothing below to hide */
                        }
                        return -1;
                }
                if (whiteout_at(u, pfd, parent, victim) < 0)
                        return entry_fail(u, raw, errno, err, "apply whiteout");
                return 0;
        }

        pfd = resolve_dir(u, parent, true, err);
        if (pfd < 0) {
                kiln_error_prefix(err, "entry '%s'", raw);
                return -1;
        }
        if (strset_add(&u->layer_paths, name) < 0 || mark_layer_dirs(u, pfd) < 0)
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
                if (clean_name(hl, tname, "hardlink target", err) < 0) {
                        kiln_error_prefix(err, "entry '%s'", raw);
                        return -1;
                }
                strcpy(tparent, tname);
                tbase = split_base(tparent);
                tfd = *tname ? resolve_dir(u, tparent, false, err) : -1;
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
                if (exists && remove_at(u, pfd, base) < 0)
                        return entry_fail(u, raw, errno, err, "replace");
                if (linkat(tfd, tbase, pfd, base, 0) < 0)
                        return entry_fail(u, raw, errno, err, "create hardlink");
                return 0;
        }

        if (type == AE_IFDIR) {
                _cleanup_close_ int dfd = -1;

                if (exists && !S_ISDIR(st.st_mode) && remove_at(u, pfd, base) < 0)
                        return entry_fail(u, raw, errno, err, "replace");
                if ((!exists || !S_ISDIR(st.st_mode)) && mkdirat(pfd, base, 0700) < 0)
                        return entry_fail(u, raw, errno, err, "create directory");
                dfd = openat(pfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (dfd < 0)
                        return entry_fail(u, raw, errno, err, "open directory");
                /* Unprivileged: keep u+rwx until the end so children can be written. */
                own_fd(u, ae, dfd);
                if (fchmod(dfd, perm | S_IRWXU) < 0 || fstat(dfd, &st) < 0)
                        return entry_fail(u, raw, errno, err, "chmod");
                if ((perm & S_IRWXU) == S_IRWXU)
                        pending_forget(u, st.st_dev, st.st_ino); /* the last entry wins */
                else if (pending_add(u, name, st.st_dev, st.st_ino, perm) < 0)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                apply_xattrs(u, ae, dfd, raw);
                set_owner_time(u, ae, pfd, base, true);
                return 0;
        }

        if (exists && remove_at(u, pfd, base) < 0)
                return entry_fail(u, raw, errno, err, "replace");

        switch (type) {
        case AE_IFREG: {
                _cleanup_close_ int fd =
                    openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
                if (fd < 0)
                        return entry_fail(u, raw, errno, err, "create");
                rc = copy_data(u, a, ae, fd, raw, err);
                if (rc < 0)
                        return rc;
                own_fd(u, ae, fd);
                if (fchmod(fd, perm) < 0)
                        return entry_fail(u, raw, errno, err, "chmod");
                apply_xattrs(u, ae, fd, raw);
                set_owner_time(u, ae, pfd, base, true);
                return 0;
        }
        case AE_IFLNK:
                /* Stored verbatim: links are resolved inside the root when used. */
                if (symlinkat(archive_entry_symlink(ae) ? archive_entry_symlink(ae) : "", pfd,
                              base) < 0)
                        return entry_fail(u, raw, errno, err, "create symlink");
                break;
        case AE_IFIFO:
                if (mkfifoat(pfd, base, perm) < 0)
                        return entry_fail(u, raw, errno, err, "create fifo");
                /* the mode, not the umask; a fifo just made, not a link */
                if (fchmodat(pfd, base, perm, 0) < 0)
                        return entry_fail(u, raw, errno, err, "chmod");
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
                        return entry_fail(u, raw, errno, err, "chmod");
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
        strset_clear(&u->layer_paths);
        inoset_clear(&u->layer_dirs);
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
                fd = resolve_dir(u, pd->path, false, err);
                if (fd < 0) {
                        kiln_error_clear(err);
                        continue;
                }
                if (fstat(fd, &st) == 0 && st.st_dev == pd->dev && st.st_ino == pd->ino)
                        chmod_fd(fd, pd->mode);
        }
        return 0;
}
