#include "source.h"

#include <archive.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "io.h"
#include "path.h"
#include "util.h"

#define MAX_PATTERN_COMPONENTS 256

struct layer_source *layer_source_new(struct kiln_error *err)
{
        struct layer_source *s = calloc(1, sizeof(*s));

        if (!s)
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        return s;
}

static void entry_release(struct layer_source_entry *e)
{
        free(e->path);
        free(e->host);
        free(e->link);
        free(e->hardlink);
        free(e->cap);
        memset(e, 0, sizeof(*e));
}

void layer_source_free(struct layer_source *s)
{
        if (!s)
                return;
        for (size_t i = 0; i < s->n; i++)
                entry_release(&s->entries[i]);
        for (size_t i = 0; i < s->n_rules; i++) {
                free(s->rules[i].base);
                free(s->rules[i].glob);
        }
        free(s->rules);
        free(s->entries);
        free(s);
}

void layer_source_freep(struct layer_source **s)
{
        layer_source_free(*s);
        *s = NULL;
}

static struct layer_source_entry *push(struct layer_source *s, struct kiln_error *err)
{
        if (s->n == s->cap) {
                size_t nc = s->cap ? s->cap * 2 : 256;
                struct layer_source_entry *ne = realloc(s->entries, nc * sizeof(*ne));
                if (!ne) {
                        kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        return NULL;
                }
                s->entries = ne;
                s->cap = nc;
        }
        memset(&s->entries[s->n], 0, sizeof(s->entries[0]));
        return &s->entries[s->n++];
}

/* ---- exclude patterns ---- */

static size_t split(char *buf, char **comps, size_t max)
{
        size_t n = 0;
        char *p = buf;

        while (*p && n < max) {
                char *q = p;
                while (*q && *q != '/')
                        q++;
                if (q != p && !(q - p == 1 && *p == '.'))
                        comps[n++] = p;
                if (!*q)
                        break;
                *q = 0;
                p = q + 1;
        }
        return n;
}

static bool match_comps(char **pat, size_t np, char **path, size_t nc)
{
        if (np == 0)
                return nc == 0;
        if (!strcmp(pat[0], "**")) {
                for (size_t k = 0; k <= nc; k++)
                        if (match_comps(pat + 1, np - 1, path + k, nc - k))
                                return true;
                return false;
        }
        if (nc == 0)
                return false;
        if (fnmatch(pat[0], path[0], 0) != 0)
                return false;
        return match_comps(pat + 1, np - 1, path + 1, nc - 1);
}

/* True when pattern matches path or one of its parent directories. */
static bool pattern_matches(const char *pattern, const char *path)
{
        char pbuf[4096], sbuf[4096];
        char *pc[MAX_PATTERN_COMPONENTS], *sc[MAX_PATTERN_COMPONENTS];
        size_t np, ns;

        if (strlen(pattern) >= sizeof(pbuf) || strlen(path) >= sizeof(sbuf))
                return false;
        strcpy(pbuf, pattern);
        strcpy(sbuf, path);
        np = split(pbuf, pc, MAX_PATTERN_COMPONENTS);
        ns = split(sbuf, sc, MAX_PATTERN_COMPONENTS);
        if (np == 0)
                return false;
        for (size_t k = 1; k <= ns; k++)
                if (match_comps(pc, np, sc, k))
                        return true;
        return false;
}

bool layer_exclude_match(const char *const *patterns, size_t n, const char *path)
{
        bool excluded = false;

        for (size_t i = 0; i < n; i++) {
                const char *p = patterns[i];
                bool neg = p[0] == '!';

                if (neg)
                        p++;
                if (pattern_matches(p, path))
                        excluded = !neg;
        }
        return excluded;
}

static bool has_negation(const char *const *patterns, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (patterns[i][0] == '!')
                        return true;
        return false;
}

void layer_exclude_free(char **patterns, size_t n)
{
        for (size_t i = 0; patterns && i < n; i++)
                free(patterns[i]);
        free(patterns);
}

int layer_exclude_read(const char *file, char ***ret_patterns, size_t *ret_n,
                       struct kiln_error *err)
{
        _cleanup_free_ char *buf = NULL;
        size_t len, n = 0;
        char **out = NULL;
        char *line, *save = NULL;

        if (kiln_read_file(file, 1u << 20, &buf, &len, err) < 0)
                return -1;
        for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                size_t l = strlen(line);
                char **no;

                while (l && (line[l - 1] == '\r' || line[l - 1] == ' ' || line[l - 1] == '\t'))
                        line[--l] = 0;
                while (*line == ' ' || *line == '\t')
                        line++;
                if (!*line || *line == '#')
                        continue;
                no = realloc(out, (n + 2) * sizeof(*out));
                if (!no || !(no[n] = strdup(line))) {
                        layer_exclude_free(no ? no : out, n);
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                }
                out = no;
                out[++n] = NULL;
        }
        *ret_patterns = out;
        *ret_n = n;
        return 0;
}

/* ---- trees ---- */

/* Adds an entry for host file host (owned: freed on error) at path (owned). */
static int add_entry_owned(struct layer_source *s, char *host, char *path, const struct stat *st,
                           struct kiln_error *err)
{
        struct layer_source_entry *e;

        if (!S_ISREG(st->st_mode) && !S_ISDIR(st->st_mode) && !S_ISLNK(st->st_mode) &&
            !S_ISFIFO(st->st_mode) && !S_ISCHR(st->st_mode) && !S_ISBLK(st->st_mode)) {
                free(host);
                free(path);
                return 0; /* sockets: nothing a layer can carry */
        }
        e = push(s, err);
        if (!e) {
                free(host);
                free(path);
                return -1;
        }
        e->st = *st;
        e->path = path;
        e->host = host;
        if (!e->path || !e->host)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (S_ISLNK(st->st_mode)) {
                size_t cap = (size_t)st->st_size + 1 > 256 ? (size_t)st->st_size + 1 : 256;
                for (;;) {
                        ssize_t r;
                        e->link = realloc(e->link, cap);
                        if (!e->link)
                                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        r = readlink(host, e->link, cap);
                        if (r < 0)
                                return kiln_error_set_errno(err, KILN_E_IO, errno,
                                                            "cannot read link '%s'", host);
                        if ((size_t)r < cap) {
                                e->link[r] = 0;
                                break;
                        }
                        cap *= 2;
                }
        }
        if (s->keep_caps && (S_ISREG(st->st_mode))) {
                char v[1024];
                ssize_t r = lgetxattr(host, "security.capability", v, sizeof(v));
                if (r > 0) {
                        e->cap = malloc((size_t)r);
                        if (!e->cap)
                                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        memcpy(e->cap, v, (size_t)r);
                        e->cap_len = (size_t)r;
                        e->has_cap = true;
                }
        }
        return 0;
}

static int add_host_entry(struct layer_source *s, const char *host, const char *path,
                          const struct stat *st, struct kiln_error *err)
{
        return add_entry_owned(s, strdup(host), strdup(path), st, err);
}

/* a + "/" + b (just b when a is empty), without printf. */
static char *join(const char *a, const char *b)
{
        size_t la = strlen(a), lb = strlen(b);
        char *s = malloc(la + lb + 2);

        if (!s)
                return NULL;
        if (la) {
                memcpy(s, a, la);
                s[la++] = '/';
        }
        memcpy(s + la, b, lb + 1);
        return s;
}

/* ---- trees: a parallel walk ----
 *
 * A warm rebuild costs one lstat per file, and on a large tree those are
 * most of its time: the directories are read by a few threads at once, each
 * into an entry list of its own, which are joined at the end.  The order of
 * the entries does not matter (layer_source_finish sorts them). */

#define WALK_THREADS_MAX 8

struct walk_dir {
        char *host, *path, *rel;
};

struct walk {
        pthread_mutex_t mu;
        pthread_cond_t cv;
        struct walk_dir *q; /* directories to read */
        size_t qn, qcap;
        unsigned busy; /* workers reading a directory */
        bool failed;
        struct kiln_error err;
        const char *const *excludes;
        size_t n_excludes;
        bool negations, keep_caps;
};

struct walker {
        struct walk *wk;
        struct layer_source local;
        struct walk_dir *found; /* subdirectories of the directory being read */
        size_t nfound, capfound;
        struct kiln_error err;
};

static void walk_dir_release(struct walk_dir *d)
{
        free(d->host);
        free(d->path);
        free(d->rel);
}

static int found_push(struct walker *w, char *host, const char *path, const char *rel)
{
        struct walk_dir *d;

        if (w->nfound == w->capfound) {
                size_t nc = w->capfound ? w->capfound * 2 : 16;
                struct walk_dir *nd = realloc(w->found, nc * sizeof(*nd));
                if (!nd)
                        return -1;
                w->found = nd;
                w->capfound = nc;
        }
        d = &w->found[w->nfound];
        d->host = host;
        d->path = strdup(path);
        d->rel = strdup(rel);
        if (!d->host || !d->path || !d->rel) {
                walk_dir_release(d);
                return -1;
        }
        w->nfound++;
        return 0;
}

/* Reads one directory into w->local; its subdirectories go to w->found. */
static int read_dir(struct walker *w, const struct walk_dir *dir)
{
        struct walk *wk = w->wk;
        struct kiln_error *err = &w->err;
        DIR *d = opendir(dir->host);
        struct dirent *de;
        int rc = 0;

        if (!d)
                return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot read directory '%s'",
                                            dir->host);
        while ((de = readdir(d))) {
                char *h = NULL, *p = NULL, *r = NULL;
                struct stat st;
                bool excluded;

                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                        continue;
                /* relative to the open directory: no path walk per file */
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                        _cleanup_free_ char *hh = join(dir->host, de->d_name);
                        rc = kiln_error_set_errno(err, KILN_E_IO, errno, "cannot stat '%s'",
                                                  hh ? hh : de->d_name);
                        break;
                }
                if (wk->n_excludes || S_ISDIR(st.st_mode)) {
                        r = join(dir->rel, de->d_name);
                        if (!r) {
                                rc = kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                                break;
                        }
                }
                excluded = wk->n_excludes && layer_exclude_match(wk->excludes, wk->n_excludes, r);
                if (excluded && !(S_ISDIR(st.st_mode) && wk->negations)) {
                        free(r);
                        continue;
                }
                h = join(dir->host, de->d_name);
                p = join(dir->path, de->d_name);
                if (S_ISDIR(st.st_mode) &&
                    (!h || !p || found_push(w, strdup(h), p, r) < 0)) {
                        free(h);
                        free(p);
                        free(r);
                        rc = kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        break;
                }
                free(r);
                if (excluded) {
                        free(h);
                        free(p);
                } else if (add_entry_owned(&w->local, h, p, &st, err) < 0) {
                        rc = -1;
                        break;
                }
        }
        closedir(d);
        return rc;
}

static void *walker_run(void *arg)
{
        struct walker *w = arg;
        struct walk *wk = w->wk;

        pthread_mutex_lock(&wk->mu);
        for (;;) {
                struct walk_dir dir;
                int rc;

                while (wk->qn == 0 && wk->busy > 0 && !wk->failed)
                        pthread_cond_wait(&wk->cv, &wk->mu);
                if (wk->failed || wk->qn == 0)
                        break;
                dir = wk->q[--wk->qn];
                wk->busy++;
                pthread_mutex_unlock(&wk->mu);

                w->nfound = 0;
                rc = read_dir(w, &dir);
                walk_dir_release(&dir);

                pthread_mutex_lock(&wk->mu);
                wk->busy--;
                if (rc == 0 && wk->qn + w->nfound > wk->qcap) {
                        size_t nc = (wk->qn + w->nfound) * 2;
                        struct walk_dir *nq = realloc(wk->q, nc * sizeof(*nq));
                        if (nq) {
                                wk->q = nq;
                                wk->qcap = nc;
                        } else {
                                rc = kiln_error_set(&w->err, KILN_E_NOMEM, "out of memory");
                        }
                }
                if (rc < 0) {
                        for (size_t i = 0; i < w->nfound; i++)
                                walk_dir_release(&w->found[i]);
                        if (!wk->failed)
                                wk->err = w->err;
                        wk->failed = true;
                } else if (w->nfound) {
                        memcpy(wk->q + wk->qn, w->found, w->nfound * sizeof(*w->found));
                        wk->qn += w->nfound;
                }
                pthread_cond_broadcast(&wk->cv);
        }
        pthread_cond_broadcast(&wk->cv);
        pthread_mutex_unlock(&wk->mu);
        return NULL;
}

static unsigned walk_threads(void)
{
        long n = sysconf(_SC_NPROCESSORS_ONLN);

        return n < 1 ? 1 : n > WALK_THREADS_MAX ? WALK_THREADS_MAX : (unsigned)n;
}

/* Walks the tree below root (host, path in the layer, "" relative) into s. */
static int walk_tree(struct layer_source *s, const char *host, const char *path,
                     const char *const *excludes, size_t n_excludes, struct kiln_error *err)
{
        struct walk wk = {.excludes = excludes, .n_excludes = n_excludes,
                          .negations = has_negation(excludes, n_excludes),
                          .keep_caps = s->keep_caps};
        struct walker ws[WALK_THREADS_MAX];
        pthread_t tids[WALK_THREADS_MAX];
        unsigned n = walk_threads(), started = 0;
        int rc = 0;

        memset(ws, 0, sizeof(ws));
        wk.err = (struct kiln_error)KILN_ERROR_INIT;
        pthread_mutex_init(&wk.mu, NULL);
        pthread_cond_init(&wk.cv, NULL);
        wk.q = calloc(16, sizeof(*wk.q));
        wk.qcap = 16;
        if (!wk.q || !(wk.q[0].host = strdup(host)) || !(wk.q[0].path = strdup(path)) ||
            !(wk.q[0].rel = strdup(""))) {
                rc = kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                if (wk.q)
                        walk_dir_release(&wk.q[0]);
                goto out;
        }
        wk.qn = 1;
        for (unsigned i = 0; i < n; i++) {
                ws[i].wk = &wk;
                ws[i].local.keep_caps = s->keep_caps;
                ws[i].err = (struct kiln_error)KILN_ERROR_INIT;
        }
        for (unsigned i = 1; i < n; i++) {
                if (pthread_create(&tids[i], NULL, walker_run, &ws[i]) != 0)
                        break;
                started++;
        }
        walker_run(&ws[0]);
        for (unsigned i = 1; i <= started; i++)
                pthread_join(tids[i], NULL);
        if (wk.failed) {
                *err = wk.err;
                rc = -1;
        }
        for (size_t i = 0; i < wk.qn; i++)
                walk_dir_release(&wk.q[i]);
        /* join the lists */
        for (unsigned i = 0; i < n; i++) {
                struct layer_source *l = &ws[i].local;
                for (size_t j = 0; j < l->n; j++) {
                        struct layer_source_entry *e = rc == 0 ? push(s, err) : NULL;
                        if (!e) {
                                entry_release(&l->entries[j]);
                                rc = -1;
                                continue;
                        }
                        *e = l->entries[j];
                }
                free(l->entries);
                free(ws[i].found);
        }
out:
        free(wk.q);
        pthread_cond_destroy(&wk.cv);
        pthread_mutex_destroy(&wk.mu);
        return rc;
}

int layer_source_add_tree(struct layer_source *s, const char *src, const char *dest,
                          const char *const *excludes, size_t n_excludes, struct kiln_error *err)
{
        _cleanup_free_ char *clean = NULL;
        struct stat st;

        if (layer_path_clean(dest ? dest : "", 0, "invalid path", &clean, err) < 0)
                return -1;
        if (stat(src, &st) < 0)
                return kiln_error_set_errno(err, KILN_E_NOT_FOUND, errno,
                                            "cannot read layer source '%s'", src);
        if (!S_ISDIR(st.st_mode))
                return kiln_error_set(err, KILN_E_INVALID, "layer source '%s' is not a directory",
                                      src);
        /* The tree's root becomes dest itself, with the source directory's mode. */
        if (*clean && add_host_entry(s, src, clean, &st, err) < 0)
                return -1;
        return walk_tree(s, src, clean, excludes, n_excludes, err);
}

int layer_source_add_file(struct layer_source *s, const char *src, const char *target, int mode,
                          struct kiln_error *err)
{
        _cleanup_free_ char *clean = NULL, *real = NULL;
        struct stat st;

        if (layer_path_clean(target, 0, "invalid path", &clean, err) < 0)
                return -1;
        if (!*clean)
                return kiln_error_set(err, KILN_E_INVALID, "invalid target '%s' for '%s'", target,
                                      src);
        if (stat(src, &st) < 0)
                return kiln_error_set_errno(err, KILN_E_NOT_FOUND, errno, "cannot read '%s'", src);
        if (!S_ISREG(st.st_mode))
                return kiln_error_set(err, KILN_E_INVALID, "'%s' is not a regular file", src);
        if (mode >= 0 && layer_source_add_mode_rule(s, clean, ".", (unsigned)mode, err) < 0)
                return -1;
        st.st_nlink = 1; /* placed files never become hardlinks of each other */
        real = realpath(src, NULL);
        if (!real)
                return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot resolve '%s'", src);
        return add_host_entry(s, real, clean, &st, err);
}

int layer_source_add_link(struct layer_source *s, const char *target, const char *link,
                          struct kiln_error *err)
{
        _cleanup_free_ char *clean = NULL;
        struct layer_source_entry *e;

        if (layer_path_clean(target, 0, "invalid path", &clean, err) < 0)
                return -1;
        if (!*clean)
                return kiln_error_set(err, KILN_E_INVALID, "invalid target '%s' for a link", target);
        if (!*link)
                return kiln_error_set(err, KILN_E_INVALID, "the link at '%s' points nowhere", target);
        e = push(s, err);
        if (!e)
                return -1;
        e->st.st_mode = S_IFLNK | 0777;
        e->st.st_size = (off_t)strlen(link);
        e->st.st_nlink = 1;
        e->path = steal_ptr(&clean);
        e->link = strdup(link);
        return e->link ? 0 : kiln_error_set(err, KILN_E_NOMEM, "out of memory");
}

int layer_source_add_reader(struct layer_source *s, const char *target, mode_t mode,
                            int64_t size, const struct layer_source_opener *opener,
                            const void *item, struct kiln_error *err)
{
        _cleanup_free_ char *clean = NULL;
        struct layer_source_entry *e;

        if (layer_path_clean(target, 0, "invalid path", &clean, err) < 0)
                return -1;
        if (!*clean)
                return kiln_error_set(err, KILN_E_INVALID, "invalid target '%s' for a file",
                                      target);
        if (size < 0)
                return kiln_error_set(err, KILN_E_INVALID, "invalid size of '%s'", target);
        e = push(s, err);
        if (!e)
                return -1;
        e->st.st_mode = S_IFREG | (mode & 07777);
        e->st.st_size = (off_t)size;
        e->st.st_nlink = 1;
        e->path = steal_ptr(&clean);
        e->opener = opener;
        e->item = item;
        return 0;
}

/* ---- modes ---- */

int layer_source_add_mode_rule(struct layer_source *s, const char *base, const char *glob,
                               unsigned mode, struct kiln_error *err)
{
        struct layer_mode_rule *nr, *r;
        char *clean = NULL;

        if (mode > 07777)
                return kiln_error_set(err, KILN_E_INVALID, "invalid mode '%o' for '%s'", mode,
                                      glob);
        if (layer_path_clean(base ? base : "", 0, "invalid path", &clean, err) < 0)
                return -1;
        nr = realloc(s->rules, (s->n_rules + 1) * sizeof(*nr));
        if (!nr) {
                free(clean);
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        s->rules = nr;
        r = &nr[s->n_rules];
        r->base = clean;
        r->glob = strdup(glob);
        r->mode = (mode_t)mode;
        if (!r->glob) {
                free(clean);
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        s->n_rules++;
        return 0;
}

/* git's rule (it records 100644, 100755, 120000 and trees): the mode
 * depends on the content, never on the umask a checkout was made with. */
mode_t layer_mode_normal(mode_t st_mode)
{
        if (S_ISDIR(st_mode))
                return 0755;
        if (S_ISLNK(st_mode))
                return 0777;
        if (S_ISREG(st_mode))
                return st_mode & S_IXUSR ? 0755 : 0644;
        return 0644;
}

/* path relative to base: "." for base itself, NULL when not below it */
static const char *rel_to(const char *path, const char *base)
{
        size_t n = strlen(base);

        if (!n)
                return path;
        if (strncmp(path, base, n))
                return NULL;
        return !path[n] ? "." : path[n] == '/' ? path + n + 1 : NULL;
}

static void apply_modes(struct layer_source *s)
{
        for (size_t i = 0; i < s->n; i++) {
                struct layer_source_entry *e = &s->entries[i];
                mode_t perm = s->keep_modes || e->synthetic ? e->st.st_mode & 07777
                                                            : layer_mode_normal(e->st.st_mode);

                for (size_t k = 0; k < s->n_rules && !S_ISLNK(e->st.st_mode); k++) {
                        const char *rel = rel_to(e->path, s->rules[k].base);
                        /* the base itself only by name: "*" is what is below it */
                        if (rel && (!strcmp(rel, ".") ? !strcmp(s->rules[k].glob, ".")
                                                      : fnmatch(s->rules[k].glob, rel, 0) == 0))
                                perm = s->rules[k].mode;
                }
                e->st.st_mode = (e->st.st_mode & S_IFMT) | perm;
        }
}

/* ---- overlayfs upper directories ---- */

static bool overlay_opaque(const char *dir)
{
        static const char *const names[] = {"user.overlay.opaque", "trusted.overlay.opaque"};
        char v[8];

        for (size_t i = 0; i < 2; i++) {
                ssize_t n = lgetxattr(dir, names[i], v, sizeof(v));
                if (n == 1 && v[0] == 'y')
                        return true;
        }
        return false;
}

/* An empty regular file written from no host file. */
static int add_marker(struct layer_source *s, char *path, struct kiln_error *err)
{
        struct layer_source_entry *e;

        if (!path)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        e = push(s, err);
        if (!e) {
                free(path);
                return -1;
        }
        e->path = path;
        e->st.st_mode = S_IFREG | 0644;
        e->st.st_nlink = 1;
        return 0;
}

int layer_source_overlay_whiteouts(struct layer_source *s, const char *upper,
                                   struct kiln_error *err)
{
        size_t n0 = s->n;

        for (size_t i = 0; i < n0; i++) {
                struct layer_source_entry *e = &s->entries[i];
                const char *slash = strrchr(e->path, '/');
                const char *base = slash ? slash + 1 : e->path;

                if (S_ISCHR(e->st.st_mode) && e->st.st_rdev == 0) {
                        char *p = kiln_strdupf("%.*s.wh.%s", slash ? (int)(base - e->path) : 0,
                                               e->path, base);
                        if (!p)
                                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        free(e->path);
                        free(e->host);
                        e->host = NULL;
                        e->path = p;
                        e->st.st_mode = S_IFREG | 0644;
                        e->st.st_size = 0;
                        e->st.st_nlink = 1;
                } else if (S_ISDIR(e->st.st_mode) && e->host && overlay_opaque(e->host)) {
                        if (add_marker(s, kiln_strdupf("%s/.wh..wh..opq", e->path), err) < 0)
                                return -1;
                }
        }
        /* the upper directory itself, made opaque: everything below is replaced */
        if (overlay_opaque(upper) && add_marker(s, strdup(".wh..wh..opq"), err) < 0)
                return -1;
        return 0;
}

/* ---- finish: parents, sort, duplicates, hardlinks ---- */

static int cmp_entry(const void *a, const void *b)
{
        const struct layer_source_entry *x = a, *y = b;
        int c = strcmp(x->path, y->path);

        if (c)
                return c;
        /* real entries before synthetic ones, then in insertion order (stable) */
        if (x->synthetic != y->synthetic)
                return x->synthetic ? 1 : -1;
        return x < y ? -1 : (x > y);
}

static int cmp_path_key(const void *k, const void *e)
{
        return strcmp(k, ((const struct layer_source_entry *)e)->path);
}

/* Adds the parent directories that no source provides.  Entries are sorted
 * first, so a parent is found with a binary search and only the few missing
 * ones (usually the destination's parents) are added. */
static int add_parents(struct layer_source *s, bool *ret_added, struct kiln_error *err)
{
        size_t n0;

        if (s->n == 0) { /* an empty layer (a step that wrote nothing) */
                *ret_added = false;
                return 0;
        }
        qsort(s->entries, s->n, sizeof(s->entries[0]), cmp_entry);
        n0 = s->n;
        for (size_t i = 0; i < n0; i++) {
                _cleanup_free_ char *p = NULL;
                const char *path = s->entries[i].path, *last = strrchr(path, '/');
                char *slash;

                /* most entries sit in the directory of the one before */
                if (!last || (i > 0 && !strncmp(s->entries[i - 1].path, path,
                                                (size_t)(last - path) + 1) &&
                              !strchr(s->entries[i - 1].path + (last - path) + 1, '/')))
                        continue;
                p = strdup(path);
                if (!p)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                while ((slash = strrchr(p, '/'))) {
                        struct layer_source_entry *e;
                        bool added = false;

                        *slash = 0;
                        if (bsearch(p, s->entries, n0, sizeof(s->entries[0]), cmp_path_key))
                                break; /* present, and so are its own parents */
                        for (size_t j = n0; j < s->n && !added; j++)
                                added = !strcmp(s->entries[j].path, p);
                        if (added)
                                break;
                        e = push(s, err);
                        if (!e)
                                return -1;
                        e->synthetic = true;
                        e->path = strdup(p);
                        if (!e->path)
                                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        e->st.st_mode = S_IFDIR | 0755;
                        e->st.st_nlink = 1;
                }
        }
        *ret_added = s->n > n0;
        return 0;
}

struct ino_ref {
        dev_t dev;
        ino_t ino;
        size_t idx;
};

static int cmp_ino(const void *a, const void *b)
{
        const struct ino_ref *x = a, *y = b;

        if (x->dev != y->dev)
                return x->dev < y->dev ? -1 : 1;
        if (x->ino != y->ino)
                return x->ino < y->ino ? -1 : 1;
        return x->idx < y->idx ? -1 : (x->idx > y->idx);
}

int layer_source_finish(struct layer_source *s, struct kiln_error *err)
{
        size_t o = 0, n_links = 0;
        struct ino_ref *refs = NULL;
        bool added = false;

        if (add_parents(s, &added, err) < 0)
                return -1;
        if (added)
                qsort(s->entries, s->n, sizeof(s->entries[0]), cmp_entry);
        /* Deduplicate: synthetic parents yield to real entries; two real
         * directories at the same path merge; anything else is an error. */
        for (size_t i = 0; i < s->n; i++) {
                struct layer_source_entry *e = &s->entries[i];

                if (o > 0 && !strcmp(s->entries[o - 1].path, e->path)) {
                        struct layer_source_entry *prev = &s->entries[o - 1];
                        if (!e->synthetic && !(S_ISDIR(prev->st.st_mode) && S_ISDIR(e->st.st_mode)))
                                return kiln_error_set(err, KILN_E_INVALID,
                                                      "duplicate path '%s' in the layer", e->path);
                        if (!S_ISDIR(prev->st.st_mode))
                                return kiln_error_set(err, KILN_E_INVALID,
                                                      "path '%s' in the layer is a parent "
                                                      "directory and not a directory",
                                                      e->path);
                        entry_release(e);
                        continue;
                }
                if (o != i)
                        s->entries[o] = *e;
                o++;
        }
        s->n = o;
        apply_modes(s);
        /* Hardlinks within the layer: the first path in order keeps the data. */
        for (size_t i = 0; i < s->n; i++)
                if (S_ISREG(s->entries[i].st.st_mode) && s->entries[i].st.st_nlink > 1)
                        n_links++;
        if (n_links > 1) {
                size_t k = 0;
                refs = calloc(n_links, sizeof(*refs));
                if (!refs)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                for (size_t i = 0; i < s->n; i++) {
                        struct layer_source_entry *e = &s->entries[i];
                        if (S_ISREG(e->st.st_mode) && e->st.st_nlink > 1)
                                refs[k++] = (struct ino_ref){e->st.st_dev, e->st.st_ino, i};
                }
                qsort(refs, n_links, sizeof(*refs), cmp_ino);
                for (size_t i = 1; i < n_links; i++) {
                        size_t first = i - 1;
                        if (refs[i].dev != refs[first].dev || refs[i].ino != refs[first].ino)
                                continue;
                        while (first > 0 && refs[first - 1].dev == refs[i].dev &&
                               refs[first - 1].ino == refs[i].ino)
                                first--;
                        s->entries[refs[i].idx].hardlink = strdup(s->entries[refs[first].idx].path);
                        if (!s->entries[refs[i].idx].hardlink) {
                                free(refs);
                                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        }
                }
                free(refs);
        }
        s->finished = true;
        return 0;
}

int layer_source_write(const struct layer_source *s, struct layer_writer *w,
                       struct oci_digest *ret_digests, struct kiln_error *err)
{
        struct archive_entry *ae = archive_entry_new();
        int rc = 0;

        if (!ae)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        for (size_t i = 0; i < s->n && rc == 0; i++) {
                const struct layer_source_entry *e = &s->entries[i];
                int fd = -1;

                archive_entry_clear(ae);
                archive_entry_copy_pathname(ae, e->path);
                archive_entry_set_filetype(ae, e->st.st_mode & S_IFMT);
                archive_entry_set_perm(ae, e->st.st_mode & 07777);
                /* the writer keeps them only with keep_owners (synthetic: 0:0) */
                archive_entry_set_uid(ae, e->st.st_uid);
                archive_entry_set_gid(ae, e->st.st_gid);
                if (e->has_cap)
                        archive_entry_xattr_add_entry(ae, "security.capability", e->cap,
                                                      e->cap_len);
                if (S_ISLNK(e->st.st_mode)) {
                        archive_entry_copy_symlink(ae, e->link);
                } else if (S_ISCHR(e->st.st_mode) || S_ISBLK(e->st.st_mode)) {
                        archive_entry_set_rdev(ae, e->st.st_rdev);
                } else if (S_ISREG(e->st.st_mode) && e->opener) {
                        struct oci_reader *r = e->opener->open(e->opener->ctx, e->item, err);
                        if (!r) {
                                rc = -1;
                                break;
                        }
                        archive_entry_set_size(ae, e->st.st_size);
                        rc = layer_writer_add_reader(w, ae, r, ret_digests ? &ret_digests[i] : NULL,
                                                     err);
                        oci_reader_free(r);
                        continue;
                } else if (S_ISREG(e->st.st_mode) && !e->host) {
                        archive_entry_set_size(ae, 0); /* a whiteout marker */
                } else if (S_ISREG(e->st.st_mode)) {
                        if (e->hardlink) {
                                archive_entry_copy_hardlink(ae, e->hardlink);
                        } else {
                                struct stat now;
                                archive_entry_set_size(ae, e->st.st_size);
                                fd = open(e->host, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
                                if (fd < 0) {
                                        rc = kiln_error_set_errno(err, KILN_E_IO, errno,
                                                                  "cannot open '%s'", e->host);
                                        break;
                                }
                                if (fstat(fd, &now) < 0 || now.st_size != e->st.st_size ||
                                    now.st_ino != e->st.st_ino) {
                                        close(fd);
                                        rc = kiln_error_set(err, KILN_E_IO,
                                                            "file '%s' changed while the layer "
                                                            "was written",
                                                            e->host);
                                        break;
                                }
                                if (e->st.st_size > (1 << 20))
                                        posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
                        }
                }
                rc = layer_writer_add(w, ae, fd, fd >= 0 && ret_digests ? &ret_digests[i] : NULL,
                                      err);
                if (fd >= 0)
                        close(fd);
        }
        archive_entry_free(ae);
        return rc;
}
