/* layers/unpack_path.c: entry names and where they lead: the lexical
 * checks of an entry's name, and the resolution of its parent inside the
 * root (openat2 RESOLVE_IN_ROOT, else a component walk; unpack.h). */
/* O_PATH, AT_EMPTY_PATH */
#define _GNU_SOURCE
#include "unpack_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#if defined(SYS_openat2)
#include <linux/openat2.h>
#endif

#include "path.h"
#include "util.h"

#define MAX_LINKS 40
#define MAX_RESOLVE (64u * 1024)

/* Splits a cleaned path "a/b/c" into parent "a/b" and base "c" (in place). */
const char *unpack_split_base(char *path)
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
bool unpack_is_root_name(const char *s)
{
        for (; *s; s++)
                if (*s != '/' && !(*s == '.' && (s[1] == '/' || !s[1])))
                        return false;
        return true;
}

/* Lexical clean of an entry name (layers/path.h): "./a//b/../c" -> "a/c";
 * absolute names and names that climb above the root are refused.  buf
 * must hold strlen(in)+1. */
int unpack_clean_name(const char *in, char *buf, const char *kind, struct kiln_error *err)
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

int unpack_resolve_dir(struct layer_unpacker *u, const char *path, bool create,
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
