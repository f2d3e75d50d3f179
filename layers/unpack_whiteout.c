/* layers/unpack_whiteout.c: whiteouts and opaque directories (image-spec
 * layer.md "Whiteouts"): removing what lower layers put there, trees
 * included, never what this layer wrote; or, for overlayfs, recording them. */
/* O_PATH, AT_EMPTY_PATH */
#define _GNU_SOURCE
#include "unpack_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "util.h"

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
        has = unpack_strset_has(&u->layer_paths, p->path);
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
                keep = !f->remove && (written_by_layer(u, p, e->d_name) ||
                                      (S_ISDIR(st.st_mode) &&
                                       unpack_inoset_has(&u->layer_dirs, st.st_dev, st.st_ino)));
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
                        unpack_pending_forget(u, p.st[p.n - 1].dev, p.st[p.n - 1].ino);
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
int unpack_remove_at(struct layer_unpacker *u, int pfd, const char *name)
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
        unpack_pending_forget(u, st.st_dev, st.st_ino);
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
        ours = unpack_strset_has(&u->layer_paths, path) ||
               (S_ISDIR(st.st_mode) && unpack_inoset_has(&u->layer_dirs, st.st_dev, st.st_ino));
        if (!ours)
                return unpack_remove_at(u, pfd, victim);
        if (!S_ISDIR(st.st_mode))
                return 0;
        fd = openat(pfd, victim, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -1;
        return prune_tree(u, fd, path);
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
        pfd = unpack_resolve_dir(u, parent, true, err);
        if (pfd < 0) {
                kiln_error_prefix(err, "entry '%s'", raw);
                return -1;
        }
        if (!strcmp(base, ".wh..wh..opq")) {
                _cleanup_close_ int dfd = openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (dfd < 0 || fsetxattr(dfd, "user.overlay.opaque", "y", 1, 0) < 0)
                        return unpack_entry_fail(u, raw, errno, err, "mark opaque");
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
                                return unpack_entry_fail(u, raw, errno, err, "mark opaque");
                        return 0;
                }
                if (errno != ENOENT)
                        return unpack_entry_fail(u, raw, errno, err, "replace");
        }
        if (mknodat(pfd, victim, S_IFCHR | 0000, makedev(0, 0)) < 0)
                return unpack_entry_fail(u, raw, errno, err, "create whiteout");
        return 0;
}

/* A whiteout entry raw, named base (".wh.NAME" or ".wh..wh..opq") in
 * parent (image-spec layer.md "Whiteouts"). */
int unpack_whiteout_entry(struct layer_unpacker *u, const char *parent, const char *base,
                          const char *raw, struct kiln_error *err)
{
        const char *victim = base + 4;
        _cleanup_close_ int pfd = -1;

        if (u->opts.overlay_whiteouts)
                return overlay_whiteout(u, parent, base, raw, err);
        pfd = unpack_resolve_dir(u, parent, false, err);
        if (!strcmp(base, ".wh..wh..opq")) {
                if (pfd < 0) {
                        kiln_error_clear(err);
                        return 0;
                }
                if (opaque_at(u, pfd, parent) < 0)
                        return unpack_entry_fail(u, raw, errno, err, "apply opaque whiteout");
                return 0;
        }
        if (!*victim || !strcmp(victim, ".") || !strcmp(victim, ".."))
                return kiln_error_set(err, KILN_E_INVALID, "refusing whiteout '%s': invalid name",
                                      raw);
        if (pfd < 0) {
                if (err && err->code == KILN_E_NOT_FOUND) {
                        kiln_error_clear(err);
                        return 0; /* nothing below to hide */
                }
                return -1;
        }
        if (whiteout_at(u, pfd, parent, victim) < 0)
                return unpack_entry_fail(u, raw, errno, err, "apply whiteout");
        return 0;
}
