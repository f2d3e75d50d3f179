/* After a run: the mount points the sandbox had to make in the upper
 * directory are not part of what the command changed (sandbox.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "sandbox.h"
#include "util.h"

/* The first lower directory (top first) that has path decides. */
static bool lower_stat(const struct sandbox_opts *o, const char *path, struct stat *ret)
{
        for (size_t i = 0; i < o->n_lowers; i++) {
                char p[4096];
                snprintf(p, sizeof(p), "%s%s", o->lowers[i], path);
                if (lstat(p, ret) == 0)
                        return true;
        }
        return false;
}

/* Removes upper+path when it is an empty directory or an empty file the
 * lowers lack (unless copied_up_only), or an empty directory that only
 * repeats a lower one (a copy-up made by creating a mount point or a
 * passing file below it).  True when removed. */
/* No directory on the way from upper to upper+path is a link: the step
 * wrote the upper directory, and a link of its own must not lead a removal
 * to a host path. */
static bool parents_are_dirs(const char *upper, const char *path)
{
        char p[4096];
        size_t ul = strlen(upper);
        struct stat st;

        if (snprintf(p, sizeof(p), "%s%s", upper, path) >= (int)sizeof(p))
                return false;
        for (char *s = p + ul + 1; (s = strchr(s, '/')); s++) {
                *s = '\0';
                if (lstat(p, &st) < 0 || !S_ISDIR(st.st_mode))
                        return false;
                *s = '/';
        }
        return true;
}

static bool remove_if_made(const struct sandbox_opts *o, const char *path, bool copied_up_only)
{
        char p[4096];
        struct stat st, lst;
        bool in_lower;

        if (snprintf(p, sizeof(p), "%s%s", o->upper, path) >= (int)sizeof(p) ||
            !parents_are_dirs(o->upper, path) || lstat(p, &st) < 0)
                return false;
        in_lower = lower_stat(o, path, &lst);
        if (copied_up_only && !in_lower)
                return false; /* made by the step: part of what it changed */
        if (S_ISDIR(st.st_mode)) {
                if (in_lower && (!S_ISDIR(lst.st_mode) || (lst.st_mode & 07777) != (st.st_mode & 07777)))
                        return false;
                return rmdir(p) == 0; /* fails when not empty */
        }
        if (S_ISREG(st.st_mode) && st.st_size == 0 && !in_lower)
                return unlink(p) == 0;
        return false;
}

static void clean_target(const struct sandbox_opts *o, const char *target)
{
        char path[4096];
        char *slash;

        if (!target || target[0] != '/' || snprintf(path, sizeof(path), "%s", target) >=
                                                   (int)sizeof(path))
                return;
        while (strlen(path) > 1 && path[strlen(path) - 1] == '/')
                path[strlen(path) - 1] = '\0';
        if (strlen(path) <= 1 || !remove_if_made(o, path, false))
                return;
        while ((slash = strrchr(path, '/')) && slash != path) {
                *slash = '\0';
                if (!remove_if_made(o, path, false))
                        break;
        }
}

static bool opaque(const char *dir)
{
        char v[4];

        return lgetxattr(dir, "user.overlay.opaque", v, sizeof(v)) == 1 && v[0] == 'y';
}

/* Depth first: a directory overlayfs copied up (a file below it was made
 * and removed again, /tmp after a compiler) that is now empty and not
 * opaque, with the mode of the lower one, changed nothing. */
static void prune_copied_up(const struct sandbox_opts *o, const char *rel, unsigned depth)
{
        char p[4096];
        DIR *d;
        struct dirent *e;

        if (depth > 256 || snprintf(p, sizeof(p), "%s%s", o->upper, rel) >= (int)sizeof(p))
                return;
        d = opendir(p);
        while (d && (e = readdir(d))) {
                char child[4096];
                if (e->d_type != DT_DIR || !strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                        continue;
                if (snprintf(child, sizeof(child), "%s/%s", rel, e->d_name) < (int)sizeof(child))
                        prune_copied_up(o, child, depth + 1);
        }
        if (d)
                closedir(d);
        if (*rel && !opaque(p))
                remove_if_made(o, rel, true);
}

void sandbox_upper_clean(const struct sandbox_opts *o)
{
        static const char *const made[] = {"/dev", "/proc", "/etc/resolv.conf", "/etc/hosts"};

        for (size_t i = 0; i < o->n_binds; i++)
                clean_target(o, o->binds[i].dst);
        for (size_t i = 0; i < sizeof(made) / sizeof(made[0]); i++)
                clean_target(o, made[i]);
        if (o->cwd)
                clean_target(o, o->cwd);
        prune_copied_up(o, "", 0);
}

void sandbox_upper_drop(const struct sandbox_opts *o, const char *const *paths, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                char p[4096];
                struct stat st;
                if (!paths[i] || paths[i][0] != '/' || strstr(paths[i], "/../") ||
                    snprintf(p, sizeof(p), "%s%s", o->upper, paths[i]) >= (int)sizeof(p) ||
                    !parents_are_dirs(o->upper, paths[i]) || lstat(p, &st) < 0)
                        continue;
                if (S_ISREG(st.st_mode) || S_ISLNK(st.st_mode))
                        unlink(p);
        }
}
