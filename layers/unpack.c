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

struct pending_dir {
        char *path;
        mode_t mode;
};

struct strset {
        char **slots;
        size_t cap, n;
};

struct layer_unpacker {
        struct layer_unpack_opts opts;
        char *dir;
        int root; /* O_PATH fd of DIR */
        bool rootless;
        bool have_openat2;
        struct pending_dir *dirs;
        size_t n_dirs, cap_dirs;
        struct strset layer_paths; /* paths written by the layer being applied */
        int64_t written;
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

void layer_unpack_opts_init(struct layer_unpack_opts *o)
{
        memset(o, 0, sizeof(*o));
        o->max_size = LAYER_UNPACK_DEFAULT_MAX_SIZE;
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
        strset_clear(&u->layer_paths);
        free(u->dir);
        free(u->buf);
        free(u);
}

struct layer_unpacker *layer_unpacker_new(const char *dir, const struct layer_unpack_opts *opts,
                                          struct kiln_error *err)
{
        struct layer_unpacker *u = calloc(1, sizeof(*u));

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
        if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
                kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create '%s'", dir);
                goto fail;
        }
        u->root = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (u->root < 0) {
                kiln_error_set_errno(err, KILN_E_IO, errno, "cannot open '%s'", dir);
                goto fail;
        }
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

/* Lexical clean of an entry name: "./a//b/../c" -> "a/c".  Refuses absolute
 * names and names that climb above the root.  buf must hold strlen(in)+2. */
static int clean_name(const char *in, char *buf, const char *kind, struct kiln_error *err)
{
        size_t o = 0;
        const char *p = in;

        if (*in == '/')
                return kiln_error_set(err, KILN_E_INVALID, "refusing %s '%s': absolute path", kind,
                                      in);
        while (*p) {
                const char *q = p;
                size_t n;

                while (*q && *q != '/')
                        q++;
                n = (size_t)(q - p);
                if (n == 2 && p[0] == '.' && p[1] == '.') {
                        if (o == 0)
                                return kiln_error_set(err, KILN_E_INVALID,
                                                      "refusing %s '%s': path climbs above the "
                                                      "root",
                                                      kind, in);
                        while (o > 0 && buf[o - 1] != '/')
                                o--;
                        if (o > 0)
                                o--;
                } else if (n > 0 && !(n == 1 && p[0] == '.')) {
                        if (o)
                                buf[o++] = '/';
                        memcpy(buf + o, p, n);
                        o += n;
                }
                p = *q ? q + 1 : q;
        }
        buf[o] = 0;
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

/* Removes name in dirfd, a directory tree included, never following links. */
static int remove_at(int pfd, const char *name)
{
        struct stat st;

        if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : -1;
        if (S_ISDIR(st.st_mode)) {
                int fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                DIR *d;
                struct dirent *e;

                if (fd < 0)
                        return -1;
                d = fdopendir(fd);
                if (!d) {
                        close(fd);
                        return -1;
                }
                while ((e = readdir(d)))
                        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
                                if (remove_at(dirfd(d), e->d_name) < 0) {
                                        closedir(d);
                                        return -1;
                                }
                closedir(d);
                return unlinkat(pfd, name, AT_REMOVEDIR);
        }
        return unlinkat(pfd, name, 0);
}

/* Opaque whiteout: removes what lower layers put in dir (the fd) but keeps
 * what this layer wrote (path is dir's name in the layer). */
static int opaque_at(struct layer_unpacker *u, int dfd, const char *path)
{
        int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *d;
        struct dirent *e;
        int rc = 0;

        if (fd < 0)
                return -1;
        d = fdopendir(fd);
        if (!d) {
                close(fd);
                return -1;
        }
        while ((e = readdir(d)) && rc == 0) {
                _cleanup_free_ char *child = NULL;
                struct stat st;

                if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                        continue;
                child = *path ? kiln_strdupf("%s/%s", path, e->d_name) : strdup(e->d_name);
                if (!child) {
                        rc = -1;
                        break;
                }
                if (!strset_has(&u->layer_paths, child)) {
                        rc = remove_at(dirfd(d), e->d_name);
                        continue;
                }
                if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                    S_ISDIR(st.st_mode)) {
                        int cfd = openat(dirfd(d), e->d_name,
                                         O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (cfd < 0) {
                                rc = -1;
                                break;
                        }
                        rc = opaque_at(u, cfd, child);
                        close(cfd);
                }
        }
        closedir(d);
        return rc;
}

static int entry_fail(struct layer_unpacker *u, const char *name, int e, struct kiln_error *err,
                      const char *what)
{
        return kiln_error_set_errno(err, KILN_E_IO, e, "cannot %s '%s' in '%s'", what, name,
                                    u->dir);
}

static int copy_data(struct layer_unpacker *u, struct archive *a, int fd, const char *name,
                     int64_t size, struct kiln_error *err)
{
        /* Data that runs into the zeros added after a short stream was cut. */
        if (u->src && u->src->padded && u->data_start + size > u->src->real_len)
                return kiln_error_set(err, KILN_E_INVALID, "tar is truncated in entry '%s'", name);
        for (;;) {
                la_ssize_t n = archive_read_data(a, u->buf, IN_BUF);
                const unsigned char *p = u->buf;

                if (n == 0) {
                        if (u->src && u->src->padded && u->data_start + size > u->src->real_len)
                                return kiln_error_set(err, KILN_E_INVALID,
                                                      "tar is truncated in entry '%s'", name);
                        return 0;
                }
                if (n < 0)
                        return -2; /* archive error, reported by the caller */
                u->written += n;
                if (u->opts.max_size > 0 && u->written > u->opts.max_size)
                        return kiln_error_set(err, KILN_E_LIMIT,
                                              "entry '%s' takes the layer past %lld bytes (the "
                                              "limit)",
                                              name, (long long)u->opts.max_size);
                while (n > 0) {
                        ssize_t w = write(fd, p, (size_t)n);
                        if (w < 0) {
                                if (errno == EINTR)
                                        continue;
                                return entry_fail(u, name, errno, err, "write");
                        }
                        p += w;
                        n -= w;
                }
        }
}

static int add_pending_dir(struct layer_unpacker *u, const char *path, mode_t mode)
{
        for (size_t i = 0; i < u->n_dirs; i++)
                if (!strcmp(u->dirs[i].path, path)) {
                        u->dirs[i].mode = mode;
                        return 0;
                }
        if (u->n_dirs == u->cap_dirs) {
                size_t nc = u->cap_dirs ? u->cap_dirs * 2 : 16;
                struct pending_dir *nd = realloc(u->dirs, nc * sizeof(*nd));
                if (!nd)
                        return -1;
                u->dirs = nd;
                u->cap_dirs = nc;
        }
        u->dirs[u->n_dirs].path = strdup(path);
        if (!u->dirs[u->n_dirs].path)
                return -1;
        u->dirs[u->n_dirs++].mode = mode;
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
        if (remove_at(pfd, victim) < 0 && errno != ENOENT)
                return entry_fail(u, raw, errno, err, "replace");
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
        if (clean_name(raw, name, "entry", err) < 0)
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
                if (remove_at(pfd, victim) < 0)
                        return entry_fail(u, raw, errno, err, "apply whiteout");
                return 0;
        }

        pfd = resolve_dir(u, parent, true, err);
        if (pfd < 0) {
                kiln_error_prefix(err, "entry '%s'", raw);
                return -1;
        }
        if (strset_add(&u->layer_paths, name) < 0)
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
                if (exists && remove_at(pfd, base) < 0)
                        return entry_fail(u, raw, errno, err, "replace");
                if (linkat(tfd, tbase, pfd, base, 0) < 0)
                        return entry_fail(u, raw, errno, err, "create hardlink");
                return 0;
        }

        if (type == AE_IFDIR) {
                _cleanup_close_ int dfd = -1;

                if (exists && !S_ISDIR(st.st_mode) && remove_at(pfd, base) < 0)
                        return entry_fail(u, raw, errno, err, "replace");
                if ((!exists || !S_ISDIR(st.st_mode)) && mkdirat(pfd, base, 0700) < 0)
                        return entry_fail(u, raw, errno, err, "create directory");
                dfd = openat(pfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (dfd < 0)
                        return entry_fail(u, raw, errno, err, "open directory");
                /* Unprivileged: keep u+rwx until the end so children can be written. */
                own_fd(u, ae, dfd);
                if (fchmod(dfd, perm | S_IRWXU) < 0)
                        return entry_fail(u, raw, errno, err, "chmod");
                if ((perm & S_IRWXU) != S_IRWXU && add_pending_dir(u, name, perm) < 0)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                apply_xattrs(u, ae, dfd, raw);
                set_owner_time(u, ae, pfd, base, true);
                return 0;
        }

        if (exists && remove_at(pfd, base) < 0)
                return entry_fail(u, raw, errno, err, "replace");

        switch (type) {
        case AE_IFREG: {
                _cleanup_close_ int fd =
                    openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
                if (fd < 0)
                        return entry_fail(u, raw, errno, err, "create");
                rc = copy_data(u, a, fd, raw, archive_entry_size(ae), err);
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
        /* Deepest first, so a read-only parent does not block its children. */
        for (size_t i = u->n_dirs; i-- > 0;) {
                int fd = resolve_dir(u, u->dirs[i].path, false, err);
                if (fd < 0) {
                        kiln_error_clear(err);
                        continue;
                }
                {
                        int rfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                        if (rfd >= 0) {
                                fchmod(rfd, u->dirs[i].mode);
                                close(rfd);
                        }
                }
                close(fd);
        }
        return 0;
}
