#include "cache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "json.h"
#include "layout.h"
#include "tarsource.h"
#include "util.h"

#define ENTRY_MAX (64u * 1024)
#define STAT_INDEX_MAX (512u * 1024 * 1024)

static void stamp_blob(struct layer_cache *c, const struct oci_digest *d);

struct layer_cache {
        char *dir;
        struct oci_layout *layout;
};

const char *layer_cache_dir(const struct layer_cache *c)
{
        return c->dir;
}

void layer_cache_free(struct layer_cache *c)
{
        if (!c)
                return;
        oci_layout_free(c->layout);
        free(c->dir);
        free(c);
}

void layer_cache_freep(struct layer_cache **c)
{
        layer_cache_free(*c);
        *c = NULL;
}

/* Temp files and spools of killed builds: anything named like ours and not
 * touched for an hour (a live build keeps writing, so keeps its mtime). */
static void sweep_stale(const char *dir, const char *pattern)
{
        DIR *d = opendir(dir);
        struct dirent *e;
        time_t now = time(NULL);

        if (!d)
                return;
        while ((e = readdir(d))) {
                struct stat st;

                if (!strstr(e->d_name, pattern) ||
                    fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
                    now - st.st_mtim.tv_sec < 3600)
                        continue;
                if (S_ISDIR(st.st_mode)) {
                        char *p = kiln_strdupf("%s/%s", dir, e->d_name);
                        if (p)
                                kiln_rm_rf(p);
                        free(p);
                } else {
                        unlinkat(dirfd(d), e->d_name, 0);
                }
        }
        closedir(d);
}

struct layer_cache *layer_cache_open(const char *dir, struct kiln_error *err)
{
        struct layer_cache *c = calloc(1, sizeof(*c));
        _cleanup_free_ char *lay = NULL, *ent = NULL, *sta = NULL, *ver = NULL;

        if (!c) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        if (dir) {
                c->dir = strdup(dir);
        } else if (getenv("XDG_CACHE_HOME") && getenv("XDG_CACHE_HOME")[0] == '/') {
                c->dir = kiln_strdupf("%s/kiln", getenv("XDG_CACHE_HOME"));
        } else if (getenv("HOME") && *getenv("HOME")) {
                c->dir = kiln_strdupf("%s/.cache/kiln", getenv("HOME"));
        } else {
                kiln_error_set(err, KILN_E_USAGE,
                               "no cache directory: set XDG_CACHE_HOME or HOME, or pass --cache");
                goto fail;
        }
        lay = c->dir ? kiln_strdupf("%s/layout", c->dir) : NULL;
        ent = c->dir ? kiln_strdupf("%s/entries", c->dir) : NULL;
        sta = c->dir ? kiln_strdupf("%s/stat", c->dir) : NULL;
        ver = c->dir ? kiln_strdupf("%s/verified", c->dir) : NULL;
        if (!lay || !ent || !sta || !ver) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto fail;
        }
        if (kiln_mkdir_p(ent, 0700, err) < 0 || kiln_mkdir_p(sta, 0700, err) < 0 ||
            kiln_mkdir_p(ver, 0700, err) < 0)
                goto fail;
        c->layout = oci_layout_open(lay, true, err);
        if (!c->layout)
                goto fail;
        {
                _cleanup_free_ char *blobs = kiln_strdupf("%s/blobs/sha256", lay);
                if (blobs)
                        sweep_stale(blobs, ".tmp-");
                sweep_stale(c->dir, "spool-");
                sweep_stale(sta, ".tmp-");
                sweep_stale(ver, ".tmp-");
        }
        return c;
fail:
        kiln_error_prefix(err, "layer cache");
        layer_cache_free(c);
        return NULL;
}

/* ---- the stat index ---- */

struct stat_rec {
        const char *path;   /* into the index buffer */
        const char *digest; /* into the index buffer */
        int64_t size, mtime_s, mtime_ns, ctime_s, ctime_ns;
        uint64_t ino, dev;
};

struct stat_index {
        struct stat_rec *recs;
        size_t n;
        int64_t written_s; /* when the index was written (its own mtime) */
        char *buf;
};

static int cmp_rec(const void *a, const void *b)
{
        return strcmp(((const struct stat_rec *)a)->path, ((const struct stat_rec *)b)->path);
}

static void stat_index_release(struct stat_index *x)
{
        free(x->recs);
        free(x->buf);
        memset(x, 0, sizeof(*x));
}

static bool next_num(char **p, char *end, int64_t *ret)
{
        char *q;
        long long v;

        if (*p >= end)
                return false;
        errno = 0;
        v = strtoll(*p, &q, 10);
        if (errno || q == *p || q >= end || *q != ' ')
                return false;
        *ret = v;
        *p = q + 1;
        return true;
}

/* Records: "size mtime_s mtime_ns ctime_s ctime_ns ino dev digest path\0".
 * The records point into the file's buffer; nothing else is copied. */
static void stat_index_load(const char *file, struct stat_index *x)
{
        struct kiln_error e = KILN_ERROR_INIT;
        size_t len, cap = 0;
        struct stat st;
        char *p, *end;
        bool unsorted = false;

        memset(x, 0, sizeof(*x));
        if (stat(file, &st) < 0 || kiln_read_file(file, STAT_INDEX_MAX, &x->buf, &len, &e) < 0)
                return;
        x->written_s = st.st_mtim.tv_sec;
        p = x->buf;
        end = x->buf + len;
        while (p < end) {
                struct stat_rec r = {0};
                char *nul = memchr(p, 0, (size_t)(end - p));
                int64_t v[7];
                char *sp;
                bool ok = nul != NULL;

                for (int i = 0; ok && i < 7; i++)
                        ok = next_num(&p, nul, &v[i]);
                sp = ok ? memchr(p, ' ', (size_t)(nul - p)) : NULL;
                if (!sp) {
                        x->n = 0; /* a damaged index is only a slower build */
                        break;
                }
                *sp = 0;
                r.digest = p;
                r.path = sp + 1;
                r.size = v[0];
                r.mtime_s = v[1];
                r.mtime_ns = v[2];
                r.ctime_s = v[3];
                r.ctime_ns = v[4];
                r.ino = (uint64_t)v[5];
                r.dev = (uint64_t)v[6];
                /* only ever sha256 (the key hashes it as text) */
                if (strlen(r.digest) != 71 || strncmp(r.digest, "sha256:", 7) != 0) {
                        x->n = 0;
                        break;
                }
                if (x->n > 0 && strcmp(x->recs[x->n - 1].path, r.path) > 0)
                        unsorted = true;
                if (x->n == cap) {
                        size_t nc = cap ? cap * 2 : 1024;
                        struct stat_rec *nr = realloc(x->recs, nc * sizeof(*nr));
                        if (!nr) {
                                x->n = 0;
                                break;
                        }
                        x->recs = nr;
                        cap = nc;
                }
                x->recs[x->n++] = r;
                p = nul + 1;
        }
        /* written in layer order, which is host order for one tree */
        if (unsorted)
                qsort(x->recs, x->n, sizeof(*x->recs), cmp_rec);
}

/* The record of path.  Lookups come in layer order, which is the index's
 * own order for one tree: *hint (the record after the last one found) is
 * tried before a binary search. */
static const struct stat_rec *stat_index_find(const struct stat_index *x, const char *path,
                                              size_t *hint)
{
        struct stat_rec k = {.path = path};
        const struct stat_rec *r;

        if (*hint < x->n && !strcmp(x->recs[*hint].path, path))
                r = &x->recs[*hint];
        else
                r = x->n ? bsearch(&k, x->recs, x->n, sizeof(k), cmp_rec) : NULL;
        if (r)
                *hint = (size_t)(r - x->recs) + 1;
        return r;
}

static bool rec_matches(const struct stat_rec *r, const struct stat *st, int64_t written_s)
{
        return r->size == st->st_size && r->mtime_s == st->st_mtim.tv_sec &&
               r->mtime_ns == st->st_mtim.tv_nsec && r->ctime_s == st->st_ctim.tv_sec &&
               r->ctime_ns == st->st_ctim.tv_nsec && r->ino == (uint64_t)st->st_ino &&
               r->dev == (uint64_t)st->st_dev &&
               /* racy: changed in the second the index was written */
               st->st_mtim.tv_sec < written_s && st->st_ctim.tv_sec < written_s;
}

struct strbuf {
        char *p;
        size_t len, cap;
        bool oom;
};

static void sb_add(struct strbuf *b, const void *data, size_t n)
{
        if (b->oom)
                return;
        if (b->len + n + 1 > b->cap) {
                size_t nc = b->cap ? b->cap : 4096;
                char *np;
                while (nc < b->len + n + 1)
                        nc *= 2;
                np = realloc(b->p, nc);
                if (!np) {
                        b->oom = true;
                        return;
                }
                b->p = np;
                b->cap = nc;
        }
        memcpy(b->p + b->len, data, n);
        b->len += n;
        b->p[b->len] = 0;
}

/* The key of s.  Content digests come from given (indexed like s->entries)
 * when not NULL, else from the stat index; *ret_complete is false when a
 * file is not in the index (nothing else is set then).  With given, the
 * stat index is rewritten from the scan's stat data. */
static int compute_key(struct layer_cache *c, const struct layer_source *s,
                       const struct layer_writer_opts *o, const struct oci_digest *given,
                       bool *ret_complete, struct oci_digest *ret_key, struct kiln_error *err)
{
        struct stat_index idx;
        FILE *newidx = NULL;
        _cleanup_free_ char *tmpfile = NULL;
        struct oci_hasher h;
        struct oci_digest id;
        _cleanup_free_ char *idfile = NULL;
        char comp[64];
        struct strbuf roots = {0};
        size_t hint = 0;
        bool hosts;
        int rc = -1;

        *ret_complete = false;
        /* The stat index belongs to this set of host files: name it by them. */
        for (size_t i = 0; i < s->n; i++)
                if (s->entries[i].host && !s->entries[i].synthetic) {
                        sb_add(&roots, s->entries[i].host, strlen(s->entries[i].host) + 1);
                        if (roots.len > 4096)
                                break;
                }
        hosts = roots.len > 0;
        oci_digest_of_buffer(roots.p ? roots.p : "", roots.len, &id);
        free(roots.p);
        idfile = kiln_strdupf("%s/stat/%s", c->dir, oci_digest_hex(&id));
        if (!idfile)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        memset(&idx, 0, sizeof(idx));
        if (!given) {
                stat_index_load(idfile, &idx);
        } else if (hosts) {
                /* Written as it goes (constant memory), renamed at the end;
                 * a layer of no host file (written from readers) has none. */
                int fd;
                tmpfile = kiln_strdupf("%s.tmp-XXXXXX", idfile);
                if (!tmpfile)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                fd = mkstemp(tmpfile);
                newidx = fd >= 0 ? fdopen(fd, "w") : NULL;
                if (!newidx) {
                        if (fd >= 0) {
                                close(fd);
                                unlink(tmpfile);
                        }
                        free(tmpfile);
                        tmpfile = NULL;
                }
        }
        if (oci_hasher_init(&h, OCI_DIGEST_SHA256, err) < 0) {
                stat_index_release(&idx);
                return -1;
        }
        layer_compressor_id(o->compression, o->level, comp, sizeof(comp));
        {
                char hdr[256];
                int n = snprintf(hdr, sizeof(hdr),
                                 "kiln-layer-key-1\n%s\nmtime=%lld owners=%d caps=%d\n", comp,
                                 (long long)o->mtime, o->keep_owners, o->keep_caps);
                oci_hasher_update(&h, hdr, (size_t)n);
        }
        for (size_t i = 0; i < s->n; i++) {
                const struct layer_source_entry *e = &s->entries[i];
                char digest[OCI_DIGEST_MAX] = "";
                char num[160];
                int n;

                if (S_ISREG(e->st.st_mode) && !e->hardlink && (e->host || e->opener)) {
                        const struct stat *now = &e->st;
                        if (given) {
                                strcpy(digest, given[i].str);
                                if (newidx && e->host)
                                        fprintf(newidx,
                                                "%" PRId64 " %" PRId64 " %" PRId64 " %" PRId64
                                                " %" PRId64 " %" PRIu64 " %" PRIu64 " %s ",
                                                (int64_t)now->st_size, (int64_t)now->st_mtim.tv_sec,
                                                (int64_t)now->st_mtim.tv_nsec,
                                                (int64_t)now->st_ctim.tv_sec,
                                                (int64_t)now->st_ctim.tv_nsec,
                                                (uint64_t)now->st_ino, (uint64_t)now->st_dev,
                                                digest);
                                if (newidx && e->host)
                                        fwrite(e->host, 1, strlen(e->host) + 1, newidx);
                        } else {
                                /* a reader's data is known only once it is written */
                                const struct stat_rec *r =
                                        e->host ? stat_index_find(&idx, e->host, &hint) : NULL;
                                if (!r || !rec_matches(r, now, idx.written_s)) {
                                        rc = 0; /* incomplete */
                                        goto out;
                                }
                                strcpy(digest, r->digest);
                        }
                }
                oci_hasher_update(&h, e->path, strlen(e->path) + 1);
                n = snprintf(num, sizeof(num), "%o %lld %u %u", (unsigned)e->st.st_mode,
                             S_ISREG(e->st.st_mode) ? (long long)e->st.st_size : 0ll,
                             o->keep_owners ? (unsigned)e->st.st_uid : 0u,
                             o->keep_owners ? (unsigned)e->st.st_gid : 0u);
                oci_hasher_update(&h, num, (size_t)n + 1);
                if (S_ISCHR(e->st.st_mode) || S_ISBLK(e->st.st_mode)) {
                        n = snprintf(num, sizeof(num), "%llu", (unsigned long long)e->st.st_rdev);
                        oci_hasher_update(&h, num, (size_t)n);
                }
                oci_hasher_update(&h, "\0", 1);
                oci_hasher_update(&h, e->link ? e->link : "", (e->link ? strlen(e->link) : 0) + 1);
                oci_hasher_update(&h, e->hardlink ? e->hardlink : "",
                                  (e->hardlink ? strlen(e->hardlink) : 0) + 1);
                oci_hasher_update(&h, digest, strlen(digest) + 1);
                if (e->has_cap && o->keep_caps)
                        oci_hasher_update(&h, e->cap, e->cap_len);
                oci_hasher_update(&h, "\n", 1);
        }
        oci_hasher_final(&h, ret_key);
        *ret_complete = true;
        if (newidx) {
                /* Best effort: a cache that cannot be written only costs speed. */
                bool ok = fflush(newidx) == 0 && !ferror(newidx) && fsync(fileno(newidx)) == 0;
                fclose(newidx);
                newidx = NULL;
                if (ok && rename(tmpfile, idfile) == 0) {
                        free(tmpfile);
                        tmpfile = NULL;
                }
        }
        rc = 0;
out:
        if (newidx)
                fclose(newidx);
        if (tmpfile)
                unlink(tmpfile);
        oci_hasher_release(&h);
        stat_index_release(&idx);
        return rc;
}

static int build(struct layer_cache *c, const struct layer_source *s,
                 const struct layer_writer_opts *o, bool lookup, struct oci_writer *tee,
                 struct layer_result *ret, bool *ret_hit, struct kiln_error *err)
{
        _cleanup_free_ struct oci_digest *digests = NULL;
        struct oci_writer *blob = NULL;
        struct layer_writer *w = NULL;
        struct layer_result res;
        struct oci_digest key;
        bool complete = false, hit = false;
        int rc = -1;

        if (lookup) {
                if (compute_key(c, s, o, NULL, &complete, &key, err) < 0)
                        return -1;
                if (complete && layer_cache_lookup(c, &key, &res, &hit, err) < 0)
                        return -1;
                if (hit) {
                        *ret = res;
                        *ret_hit = true;
                        return 0;
                }
        }
        digests = calloc(s->n ? s->n : 1, sizeof(*digests));
        if (!digests)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        blob = layer_cache_blob_writer(c, err);
        if (!blob)
                return -1;
        w = layer_writer_new(blob, o, err);
        if (w && tee)
                layer_writer_set_tee(w, tee);
        if (!w || layer_source_write(s, w, digests, err) < 0 ||
            layer_writer_finish(w, &res, err) < 0)
                goto out;
        if (oci_layout_blob_writer_commit(blob, &res.digest, res.size, NULL, NULL, err) < 0)
                goto out;
        stamp_blob(c, &res.digest);
        if (compute_key(c, s, o, digests, &complete, &key, err) < 0 ||
            layer_cache_store(c, &key, &res, err) < 0)
                goto out;
        *ret = res;
        *ret_hit = false;
        rc = 0;
out:
        layer_writer_free(w);
        oci_writer_free(blob);
        return rc;
}

int layer_cache_build(struct layer_cache *c, const struct layer_source *s,
                      const struct layer_writer_opts *o, bool lookup, struct layer_result *ret,
                      bool *ret_hit, struct kiln_error *err)
{
        return build(c, s, o, lookup, NULL, ret, ret_hit, err);
}

int layer_cache_build_tee(struct layer_cache *c, const struct layer_source *s,
                          const struct layer_writer_opts *o, struct oci_writer *tee,
                          struct layer_result *ret, struct kiln_error *err)
{
        bool hit = false;

        return build(c, s, o, false, tee, ret, &hit, err);
}

/* ---- blob stamps ----
 *
 * DIR/verified/<hex> holds the lstat of a cache blob ("size mtime_s mtime_ns
 * ctime_s ctime_ns ino dev") taken when its bytes last hashed to its name:
 * when it was written, or verified.  Every write to a file moves its mtime
 * and ctime, and ctime cannot be set back, so a blob whose lstat still
 * matches and whose times are older than the stamp file itself has not been
 * written since, and is trusted without hashing it again (git's index rule,
 * racy case included, applied to kiln's own blobs). */

#define STAMP_MAX 256

static char *stamp_path(struct layer_cache *c, const struct oci_digest *d)
{
        return kiln_strdupf("%s/verified/%s", c->dir, oci_digest_hex(d));
}

static int64_t ts_cmp(const struct timespec *a, const struct timespec *b)
{
        return a->tv_sec != b->tv_sec ? (int64_t)a->tv_sec - b->tv_sec
                                      : (int64_t)a->tv_nsec - b->tv_nsec;
}

static int format_stat(const struct stat *st, char *buf, size_t len)
{
        return snprintf(buf, len,
                        "%" PRId64 " %" PRId64 " %ld %" PRId64 " %ld %" PRIu64 " %" PRIu64 "\n",
                        (int64_t)st->st_size, (int64_t)st->st_mtim.tv_sec, st->st_mtim.tv_nsec,
                        (int64_t)st->st_ctim.tv_sec, st->st_ctim.tv_nsec, (uint64_t)st->st_ino,
                        (uint64_t)st->st_dev);
}

/* Records the blob of d as verified now.  Best effort: without a stamp the
 * blob is only hashed again. */
static void stamp_blob(struct layer_cache *c, const struct oci_digest *d)
{
        struct kiln_error e = KILN_ERROR_INIT;
        _cleanup_free_ char *blob = oci_layout_blob_path(c->layout, d), *path = stamp_path(c, d);
        struct stat st, sst;
        char buf[STAMP_MAX];
        int n;

        if (!blob || !path || lstat(blob, &st) < 0 || !S_ISREG(st.st_mode))
                return;
        n = format_stat(&st, buf, sizeof(buf));
        if (kiln_write_file_atomic(path, buf, (size_t)n, 0600, &e) < 0)
                return;
        /* The stamp must be strictly newer than the blob's times, or a write
         * in the same clock tick would go unseen: wait a tick when needed. */
        for (int i = 0; i < 100; i++) {
                if (stat(path, &sst) < 0)
                        return;
                if (ts_cmp(&st.st_ctim, &sst.st_mtim) < 0 && ts_cmp(&st.st_mtim, &sst.st_mtim) < 0)
                        return;
                nanosleep(&(struct timespec){0, 2 * 1000 * 1000}, NULL);
                if (utimensat(AT_FDCWD, path, NULL, 0) < 0)
                        return;
        }
        unlink(path);
}

/* True when the blob of d is present, of size bytes and matches its stamp;
 * *ret_st gets its lstat. */
static bool blob_trusted(struct layer_cache *c, const struct oci_digest *d, int64_t size,
                         struct stat *ret_st)
{
        struct kiln_error e = KILN_ERROR_INIT;
        _cleanup_free_ char *blob = oci_layout_blob_path(c->layout, d), *path = stamp_path(c, d);
        _cleanup_free_ char *buf = NULL;
        char want[STAMP_MAX];
        struct stat sst;
        size_t len;
        int n;

        if (!blob || !path || lstat(blob, ret_st) < 0 || !S_ISREG(ret_st->st_mode) ||
            ret_st->st_size != size || stat(path, &sst) < 0 ||
            kiln_read_file(path, STAMP_MAX, &buf, &len, &e) < 0)
                return false;
        n = format_stat(ret_st, want, sizeof(want));
        return len == (size_t)n && memcmp(buf, want, len) == 0 &&
               ts_cmp(&ret_st->st_ctim, &sst.st_mtim) < 0 &&
               ts_cmp(&ret_st->st_mtim, &sst.st_mtim) < 0;
}

int layer_cache_verify_blob(struct layer_cache *c, const struct layer_result *res,
                            struct kiln_error *err)
{
        struct stat st;
        bool ok = false;

        if (blob_trusted(c, &res->digest, res->size, &st))
                return 0;
        if (oci_layout_blob_check(c->layout, &res->digest, res->size, &ok, err) < 0)
                return -1;
        if (!ok)
                return kiln_error_set(err, KILN_E_DIGEST, "cached blob %s is missing or corrupt",
                                      res->digest.str);
        stamp_blob(c, &res->digest);
        return 0;
}

bool layer_cache_place_blob(struct layer_cache *c, const struct layer_result *res,
                            const char *layout_dir)
{
        struct kiln_error e = KILN_ERROR_INIT;
        _cleanup_free_ char *from = NULL, *blobs = NULL, *algdir = NULL, *to = NULL;
        struct stat cst, st;

        if (res->digest.alg != OCI_DIGEST_SHA256 || !blob_trusted(c, &res->digest, res->size, &cst))
                return false;
        from = oci_layout_blob_path(c->layout, &res->digest);
        blobs = kiln_strdupf("%s/blobs", layout_dir);
        algdir = kiln_strdupf("%s/blobs/sha256", layout_dir);
        to = kiln_strdupf("%s/blobs/sha256/%s", layout_dir, oci_digest_hex(&res->digest));
        if (!from || !blobs || !algdir || !to || kiln_mkdir_p(algdir, 0755, &e) < 0)
                return false;
        /* the layout refuses symlinked blob directories; so does this */
        if (lstat(blobs, &st) < 0 || !S_ISDIR(st.st_mode) || lstat(algdir, &st) < 0 ||
            !S_ISDIR(st.st_mode))
                return false;
        if (lstat(to, &st) == 0)
                /* already there: the very file that was verified */
                return S_ISREG(st.st_mode) && st.st_dev == cst.st_dev && st.st_ino == cst.st_ino;
        if (errno != ENOENT || link(from, to) < 0)
                return false;
        if (kiln_fsync_dir(algdir, &e) < 0) {
                unlink(to);
                return false;
        }
        stamp_blob(c, &res->digest); /* the link moved its ctime */
        return true;
}

static char *entry_path(struct layer_cache *c, const struct oci_digest *key)
{
        return kiln_strdupf("%s/entries/%s.json", c->dir, oci_digest_hex(key));
}

int layer_cache_lookup(struct layer_cache *c, const struct oci_digest *key,
                       struct layer_result *ret, bool *ret_hit, struct kiln_error *err)
{
        _cleanup_free_ char *path = entry_path(c, key), *buf = NULL, *blob = NULL;
        _cleanup_json_ json_t *j = NULL;
        struct kiln_error e = KILN_ERROR_INIT;
        struct layer_result res;
        const char *digest, *diff_id, *mt, *comp;
        json_int_t size;
        struct stat st;
        size_t len;

        *ret_hit = false;
        if (!path)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (kiln_read_file(path, ENTRY_MAX, &buf, &len, &e) < 0)
                return 0;
        j = oci_json_parse(buf, len, path, &e);
        if (!j)
                return 0;
        digest = json_string_value(json_object_get(j, "digest"));
        diff_id = json_string_value(json_object_get(j, "diffID"));
        mt = json_string_value(json_object_get(j, "mediaType"));
        comp = json_string_value(json_object_get(j, "compressor"));
        size = json_integer_value(json_object_get(j, "size"));
        memset(&res, 0, sizeof(res));
        if (!digest || !diff_id || !mt || !comp || size < 0 ||
            oci_digest_parse(digest, &res.digest, &e) < 0 ||
            oci_digest_parse(diff_id, &res.diff_id, &e) < 0)
                return 0;
        if (!strcmp(mt, OCI_MT_LAYER_GZIP))
                res.media_type = OCI_MT_LAYER_GZIP;
        else if (!strcmp(mt, OCI_MT_LAYER_ZSTD))
                res.media_type = OCI_MT_LAYER_ZSTD;
        else if (!strcmp(mt, OCI_MT_LAYER))
                res.media_type = OCI_MT_LAYER;
        else
                return 0;
        res.size = size;
        snprintf(res.compressor, sizeof(res.compressor), "%s", comp);
        blob = oci_layout_blob_path(c->layout, &res.digest);
        if (!blob)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (lstat(blob, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size != size)
                return 0;
        *ret = res;
        *ret_hit = true;
        return 0;
}

/* The layer writer hashes the exact bytes it hands to the blob writer and
 * commits with that digest: the blob writer need not hash them again. */
struct oci_writer *layer_cache_blob_writer(struct layer_cache *c, struct kiln_error *err)
{
        struct oci_writer *w = oci_layout_blob_writer_new(c->layout, OCI_DIGEST_SHA256, err);

        if (w)
                oci_layout_blob_writer_prechecked(w);
        return w;
}

int layer_cache_store(struct layer_cache *c, const struct oci_digest *key,
                      const struct layer_result *res, struct kiln_error *err)
{
        _cleanup_free_ char *path = entry_path(c, key), *out = NULL;
        _cleanup_json_ json_t *j = json_object();
        size_t len;

        if (!path || !j)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        json_object_set_new(j, "digest", json_string(res->digest.str));
        json_object_set_new(j, "size", json_integer(res->size));
        json_object_set_new(j, "diffID", json_string(res->diff_id.str));
        json_object_set_new(j, "mediaType", json_string(res->media_type));
        json_object_set_new(j, "compressor", json_string(res->compressor));
        if (oci_json_dump(j, &out, &len, err) < 0)
                return -1;
        return kiln_write_file_atomic(path, out, len, 0600, err);
}

void layer_cache_drop(struct layer_cache *c, const struct oci_digest *key)
{
        _cleanup_free_ char *path = entry_path(c, key);

        if (path)
                unlink(path);
}

struct oci_reader *layer_cache_open_blob(struct layer_cache *c, const struct layer_result *res,
                                         struct kiln_error *err)
{
        return oci_layout_blob_open(c->layout, &res->digest, res->size, err);
}

int layer_cache_build_tar(struct layer_cache *c, const char *file, const char *dest,
                          const struct layer_writer_opts *o, struct layer_result *ret,
                          struct kiln_error *err)
{
        _cleanup_free_ char *spool = kiln_strdupf("%s/spool-XXXXXX", c->dir);
        struct oci_writer *blob = NULL;
        struct layer_writer *w = NULL;
        struct layer_result res;
        int rc = -1;

        if (!spool)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (!mkdtemp(spool))
                return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create '%s'", spool);
        blob = layer_cache_blob_writer(c, err);
        w = blob ? layer_writer_new(blob, o, err) : NULL;
        if (w && layer_tar_source_write(w, file, dest, spool, err) == 0 &&
            layer_writer_finish(w, &res, err) == 0 &&
            oci_layout_blob_writer_commit(blob, &res.digest, res.size, NULL, NULL, err) == 0) {
                stamp_blob(c, &res.digest);
                *ret = res;
                rc = 0;
        }
        layer_writer_free(w);
        oci_writer_free(blob);
        kiln_rm_rf(spool);
        return rc;
}

char *layer_cache_blob_path(struct layer_cache *c, const struct oci_digest *digest)
{
        return oci_layout_blob_path(c->layout, digest);
}
