#include "io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

void oci_reader_free(struct oci_reader *r)
{
        if (r)
                r->free(r);
}

struct oci_reader *oci_reader_reopen(struct oci_reader *r, struct kiln_error *err)
{
        if (!r->reopen) {
                kiln_error_set(err, KILN_E_UNSUPPORTED, "the stream cannot be read again");
                return NULL;
        }
        return r->reopen(r, err);
}

void oci_reader_freep(struct oci_reader **r)
{
        oci_reader_free(*r);
        *r = NULL;
}

void oci_writer_free(struct oci_writer *w)
{
        if (w)
                w->free(w);
}

int oci_reader_drain(struct oci_reader *r, struct kiln_error *err)
{
        char buf[65536];
        ssize_t n;

        while ((n = oci_reader_read(r, buf, sizeof(buf), err)) > 0)
                ;
        return n < 0 ? -1 : 0;
}

int oci_reader_read_all(struct oci_reader *r, size_t cap, const char *what, char **ret_buf,
                        size_t *ret_len, struct kiln_error *err)
{
        _cleanup_free_ char *buf = NULL;
        size_t len = 0, alloc = 0;
        ssize_t n;

        for (;;) {
                if (alloc - len < 4096 + 1) {
                        size_t na = alloc ? alloc * 2 : 16384;
                        char *nb;
                        if (na > cap + 4096 + 2)
                                na = cap + 4096 + 2;
                        if (na <= alloc)
                                na = alloc + 4096 + 1;
                        nb = realloc(buf, na);
                        if (!nb)
                                return kiln_error_set(err, KILN_E_NOMEM, "out of memory reading %s",
                                                      what);
                        buf = nb;
                        alloc = na;
                }
                n = oci_reader_read(r, buf + len, alloc - len - 1, err);
                if (n < 0)
                        return -1;
                if (n == 0)
                        break;
                len += (size_t)n;
                if (len > cap)
                        return kiln_error_set(err, KILN_E_LIMIT,
                                              "%s is larger than the limit of %zu bytes", what,
                                              cap);
        }
        buf[len] = '\0';
        *ret_buf = steal_ptr(&buf);
        if (ret_len)
                *ret_len = len;
        return 0;
}

struct fd_reader {
        struct oci_reader base;
        int fd;
        bool own;
        off_t start; /* where a reopened reader starts; -1: not a regular file */
};

static ssize_t fd_read(struct oci_reader *r, void *buf, size_t len, struct kiln_error *err)
{
        struct fd_reader *f = (struct fd_reader *)r;
        ssize_t n;

        do
                n = read(f->fd, buf, len);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return kiln_error_set_errno(err, KILN_E_IO, errno, "read failed");
        return n;
}

static void fd_free(struct oci_reader *r)
{
        struct fd_reader *f = (struct fd_reader *)r;

        if (f->own && f->fd >= 0)
                close(f->fd);
        free(f);
}

static struct oci_reader *fd_reopen(struct oci_reader *r, struct kiln_error *err)
{
        struct fd_reader *f = (struct fd_reader *)r;
        struct oci_reader *n;
        char path[64];
        int fd;

        if (f->start < 0) {
                kiln_error_set(err, KILN_E_UNSUPPORTED,
                               "the stream is not a file and cannot be read again");
                return NULL;
        }
        /* a new open file description: its offset is its own */
        snprintf(path, sizeof(path), "/proc/self/fd/%d", f->fd);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                kiln_error_set_errno(err, KILN_E_IO, errno, "cannot open the stream again");
                return NULL;
        }
        if (lseek(fd, f->start, SEEK_SET) < 0) {
                kiln_error_set_errno(err, KILN_E_IO, errno, "cannot open the stream again");
                close(fd);
                return NULL;
        }
        n = oci_reader_from_fd(fd, true, err);
        if (!n)
                close(fd);
        return n;
}

struct oci_reader *oci_reader_from_fd(int fd, bool own, struct kiln_error *err)
{
        struct fd_reader *f = calloc(1, sizeof(*f));
        struct stat st;

        if (!f) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        f->base.read = fd_read;
        f->base.free = fd_free;
        f->base.reopen = fd_reopen;
        f->fd = fd;
        f->own = own;
        f->start = -1;
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
                f->start = lseek(fd, 0, SEEK_CUR);
        return &f->base;
}

struct buf_reader {
        struct oci_reader base;
        size_t len, pos;
        char data[];
};

static ssize_t buf_read(struct oci_reader *r, void *buf, size_t len, struct kiln_error *err)
{
        struct buf_reader *b = (struct buf_reader *)r;
        size_t n = b->len - b->pos;

        (void)err;
        if (n > len)
                n = len;
        memcpy(buf, b->data + b->pos, n);
        b->pos += n;
        return (ssize_t)n;
}

static void buf_free(struct oci_reader *r)
{
        free(r);
}

static struct oci_reader *buf_reopen(struct oci_reader *r, struct kiln_error *err)
{
        struct buf_reader *b = (struct buf_reader *)r;

        return oci_reader_from_buffer(b->data, b->len, err);
}

struct oci_reader *oci_reader_from_buffer(const void *buf, size_t len, struct kiln_error *err)
{
        struct buf_reader *b = malloc(sizeof(*b) + len + 1);

        if (!b) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        b->base.read = buf_read;
        b->base.verifies = NULL;
        b->base.free = buf_free;
        b->base.reopen = buf_reopen;
        b->len = len;
        b->pos = 0;
        if (len)
                memcpy(b->data, buf, len);
        return &b->base;
}

struct verified_reader {
        struct oci_reader base;
        struct oci_reader *inner;
        struct oci_hasher h;
        struct oci_digest want;
        int64_t size, seen;
        bool done;
};

static ssize_t verified_read(struct oci_reader *r, void *buf, size_t len, struct kiln_error *err)
{
        struct verified_reader *v = (struct verified_reader *)r;
        struct oci_digest got;
        ssize_t n;

        if (v->done)
                return 0;
        /* Never read more than size+1 bytes: one more is enough to know it is too long. */
        if ((int64_t)len > v->size - v->seen + 1)
                len = (size_t)(v->size - v->seen + 1);
        n = oci_reader_read(v->inner, buf, len, err);
        if (n < 0) {
                kiln_error_prefix(err, "read blob '%s'", v->want.str);
                return -1;
        }
        v->seen += n;
        if (v->seen > v->size)
                return kiln_error_set(err, KILN_E_DIGEST,
                                      "blob '%s' is larger than its descriptor's size %lld",
                                      v->want.str, (long long)v->size);
        oci_hasher_update(&v->h, buf, (size_t)n);
        if (n == 0) {
                if (v->seen != v->size)
                        return kiln_error_set(err, KILN_E_DIGEST,
                                              "blob '%s' is truncated: %lld of %lld bytes",
                                              v->want.str, (long long)v->seen,
                                              (long long)v->size);
                oci_hasher_final(&v->h, &got);
                if (!oci_digest_equal(&got, &v->want))
                        return kiln_error_set(err, KILN_E_DIGEST,
                                              "blob '%s' does not match its digest: content hashes to '%s'",
                                              v->want.str, got.str);
                v->done = true;
        }
        return n;
}

static bool verified_verifies(struct oci_reader *r, const struct oci_digest *d, int64_t size)
{
        struct verified_reader *v = (struct verified_reader *)r;

        return size == v->size && oci_digest_equal(d, &v->want);
}

static void verified_free(struct oci_reader *r)
{
        struct verified_reader *v = (struct verified_reader *)r;

        oci_reader_free(v->inner);
        oci_hasher_release(&v->h);
        free(v);
}

static struct oci_reader *verified_reopen(struct oci_reader *r, struct kiln_error *err)
{
        struct verified_reader *v = (struct verified_reader *)r;
        struct oci_reader *inner = oci_reader_reopen(v->inner, err);

        return inner ? oci_verified_reader_new(inner, &v->want, v->size, err) : NULL;
}

struct oci_reader *oci_verified_reader_new(struct oci_reader *inner, const struct oci_digest *want,
                                           int64_t size, struct kiln_error *err)
{
        struct verified_reader *v;

        if (size < 0) {
                oci_reader_free(inner);
                kiln_error_set(err, KILN_E_INVALID, "blob '%s' has a negative size", want->str);
                return NULL;
        }
        if (oci_reader_verifies(inner, want, size))
                return inner;
        v = calloc(1, sizeof(*v));
        if (!v) {
                oci_reader_free(inner);
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        if (oci_hasher_init(&v->h, want->alg, err) < 0) {
                oci_reader_free(inner);
                free(v);
                return NULL;
        }
        v->base.read = verified_read;
        v->base.free = verified_free;
        v->base.verifies = verified_verifies;
        v->base.reopen = verified_reopen;
        v->inner = inner;
        v->want = *want;
        v->size = size;
        return &v->base;
}

int oci_copy_stream(struct oci_reader *r, struct oci_writer *w, int64_t *ret_bytes,
                    struct kiln_error *err)
{
        static const size_t bufsize = 256 * 1024;
        _cleanup_free_ char *buf = malloc(bufsize);
        int64_t total = 0;
        ssize_t n;

        if (!buf)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        while ((n = oci_reader_read(r, buf, bufsize, err)) > 0) {
                if (oci_writer_write(w, buf, (size_t)n, err) < 0)
                        return -1;
                total += n;
        }
        if (n < 0)
                return -1;
        if (ret_bytes)
                *ret_bytes = total;
        return 0;
}

int kiln_mkdir_p(const char *path, mode_t mode, struct kiln_error *err)
{
        _cleanup_free_ char *p = strdup(path);
        char *s;

        if (!p)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        for (s = p + 1; *s; s++) {
                if (*s != '/')
                        continue;
                *s = '\0';
                if (mkdir(p, mode) < 0 && errno != EEXIST)
                        return kiln_error_set_errno(err, KILN_E_IO, errno,
                                                    "cannot create directory '%s'", p);
                *s = '/';
        }
        if (mkdir(p, mode) < 0 && errno != EEXIST)
                return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create directory '%s'",
                                            p);
        return 0;
}

int kiln_fsync_dir(const char *dir, struct kiln_error *err)
{
        _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        if (fd < 0)
                return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot open directory '%s'",
                                            dir);
        if (fsync(fd) < 0 && errno != EINVAL)
                return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot sync directory '%s'",
                                            dir);
        return 0;
}

char *kiln_dirname(const char *path)
{
        const char *slash = strrchr(path, '/');

        if (!slash)
                return strdup(".");
        if (slash == path)
                return strdup("/");
        return strndup(path, (size_t)(slash - path));
}

static int write_full(int fd, const void *buf, size_t len)
{
        const char *p = buf;

        while (len) {
                ssize_t n = write(fd, p, len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -1;
                }
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

int kiln_write_file_atomic(const char *path, const void *buf, size_t len, mode_t mode,
                           struct kiln_error *err)
{
        _cleanup_free_ char *tmp = kiln_strdupf("%s.tmp-XXXXXX", path);
        _cleanup_free_ char *dir = kiln_dirname(path);
        int fd;

        if (!tmp || !dir)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        fd = mkstemp(tmp);
        if (fd < 0)
                return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create '%s'", tmp);
        if (fchmod(fd, mode) < 0 || write_full(fd, buf, len) < 0 || fsync(fd) < 0) {
                int e = errno;
                close(fd);
                unlink(tmp);
                return kiln_error_set_errno(err, KILN_E_IO, e, "cannot write '%s'", path);
        }
        if (close(fd) < 0 || rename(tmp, path) < 0) {
                int e = errno;
                unlink(tmp);
                return kiln_error_set_errno(err, KILN_E_IO, e, "cannot replace '%s'", path);
        }
        return kiln_fsync_dir(dir, err);
}

int kiln_open_regular(int dfd, const char *path, struct stat *ret_st)
{
        /* O_NONBLOCK: opening a FIFO for reading waits for a writer, forever;
         * O_NOFOLLOW: a symlink is not the file.  The type is checked on the
         * open file, before any read. */
        int fd = openat(dfd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
        int flags;

        if (fd < 0)
                return -1;
        if (fstat(fd, ret_st) < 0) {
                int e = errno;
                close(fd);
                errno = e;
                return -1;
        }
        if (!S_ISREG(ret_st->st_mode)) {
                close(fd);
                return -2;
        }
        flags = fcntl(fd, F_GETFL);
        if (flags >= 0)
                fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
        return fd;
}

int kiln_read_file(const char *path, size_t cap, char **ret_buf, size_t *ret_len,
                   struct kiln_error *err)
{
        struct oci_reader *r;
        struct stat st;
        int fd, rc;

        fd = kiln_open_regular(AT_FDCWD, path, &st);
        if (fd < 0) {
                if (fd == -1 && errno == ENOENT)
                        return kiln_error_set_errno(err, KILN_E_NOT_FOUND, errno,
                                                    "cannot open '%s'", path);
                if (fd == -2 || errno == ELOOP)
                        return kiln_error_set(err, KILN_E_INVALID, "'%s' is not a regular file",
                                              path);
                return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot open '%s'", path);
        }
        r = oci_reader_from_fd(fd, true, err);
        if (!r) {
                close(fd);
                return -1;
        }
        rc = oci_reader_read_all(r, cap, path, ret_buf, ret_len, err);
        oci_reader_free(r);
        if (rc < 0 && err && err->code == KILN_E_LIMIT)
                kiln_error_set(err, KILN_E_LIMIT, "'%s' is larger than the limit of %zu bytes",
                               path, cap);
        return rc;
}

static void rm_rf_at(int dfd, const char *name)
{
        int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        DIR *d;
        struct dirent *e;

        if (fd < 0) {
                unlinkat(dfd, name, 0);
                return;
        }
        d = fdopendir(fd);
        if (!d) {
                close(fd);
                return;
        }
        while ((e = readdir(d))) {
                if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                        continue;
                if (e->d_type == DT_DIR || e->d_type == DT_UNKNOWN)
                        rm_rf_at(dirfd(d), e->d_name);
                else
                        unlinkat(dirfd(d), e->d_name, 0);
        }
        closedir(d);
        unlinkat(dfd, name, AT_REMOVEDIR);
}

void kiln_rm_rf(const char *path)
{
        rm_rf_at(AT_FDCWD, path);
}
