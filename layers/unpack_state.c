/* layers/unpack_state.c: what the unpacker remembers between entries: the
 * paths and directories the layer being applied wrote (its whiteouts spare
 * them), and the directories whose mode is applied at the end. */
/* O_PATH, AT_EMPTY_PATH */
#define _GNU_SOURCE
#include "unpack_internal.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static uint64_t hash_str(const char *s)
{
        uint64_t h = 1469598103934665603ull;

        for (; *s; s++)
                h = (h ^ (unsigned char)*s) * 1099511628211ull;
        return h;
}

void unpack_strset_clear(struct strset *s)
{
        for (size_t i = 0; i < s->cap; i++)
                free(s->slots[i]);
        free(s->slots);
        memset(s, 0, sizeof(*s));
}

bool unpack_strset_has(const struct strset *s, const char *k)
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

int unpack_strset_add(struct strset *s, const char *k)
{
        if (unpack_strset_has(s, k))
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

void unpack_inoset_clear(struct inoset *s)
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

bool unpack_inoset_has(const struct inoset *s, dev_t dev, ino_t ino)
{
        return s->cap && inoset_slot(s, dev, ino)->used;
}

int unpack_inoset_add(struct inoset *s, dev_t dev, ino_t ino)
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
int unpack_pending_add(struct layer_unpacker *u, const char *path, dev_t dev, ino_t ino,
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

void unpack_pending_forget(struct layer_unpacker *u, dev_t dev, ino_t ino)
{
        struct pending_dir *pd = pending_find(u, dev, ino);

        if (pd)
                pd->gone = true;
}

/* Marks pfd, where an entry of this layer goes, and its parents up to DIR
 * as written into by this layer.  Each directory is marked once a layer and
 * the climb stops at the first one already marked, so this is O(1) amortized. */
int unpack_mark_layer_dirs(struct layer_unpacker *u, int pfd)
{
        int fd = dup(pfd), rc = 0;

        while (fd >= 0) {
                struct stat st;
                int up;

                if (fstat(fd, &st) < 0 || (st.st_dev == u->root_dev && st.st_ino == u->root_ino) ||
                    unpack_inoset_has(&u->layer_dirs, st.st_dev, st.st_ino))
                        break;
                if (unpack_inoset_add(&u->layer_dirs, st.st_dev, st.st_ino) < 0) {
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
