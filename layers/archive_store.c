#include "archive_store.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"
#include "layout.h"
#include "ref.h"
#include "unpack.h"
#include "util.h"

struct archive_store {
        struct oci_store base;
        struct oci_store *inner; /* the layout in tmpdir */
        char *tmpdir;
        char *file;
        char *tag;
        bool docker, for_write;
};

/* ---- reading ---- */

static bool safe_member_name(const char *name)
{
        const char *p = name;

        if (!*name || name[0] == '/')
                return false;
        for (;;) {
                const char *slash = strchr(p, '/');
                size_t n = slash ? (size_t)(slash - p) : strlen(p);
                if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
                        return false;
                if (n == 0 && slash)
                        return false;
                if (!slash)
                        return true;
                p = slash + 1;
        }
}

/* The documents at the top of an archive, read in the first pass. */
static bool is_top_metadata(const char *name)
{
        return !strcmp(name, "index.json") || !strcmp(name, "oci-layout") ||
               !strcmp(name, "manifest.json") || !strcmp(name, "repositories");
}

/* Joins a relative link target to the directory of name and normalizes
 * it; NULL when it is absolute or climbs above the archive's root. */
static char *resolve_link(const char *name, const char *target)
{
        _cleanup_free_ char *joined = NULL;
        char *out, *p, *save = NULL, *tok;
        size_t len = 0;
        const char *slash = strrchr(name, '/');

        if (!target[0] || target[0] == '/')
                return NULL;
        joined = slash ? kiln_strdupf("%.*s/%s", (int)(slash - name), name, target)
                       : strdup(target);
        if (!joined)
                return NULL;
        out = calloc(1, strlen(joined) + 1);
        if (!out)
                return NULL;
        for (p = joined; (tok = strtok_r(p, "/", &save)); p = NULL) {
                if (!strcmp(tok, "."))
                        continue;
                if (!strcmp(tok, "..")) {
                        char *up;
                        if (len == 0) {
                                free(out);
                                return NULL;
                        }
                        up = strrchr(out, '/');
                        len = up ? (size_t)(up - out) : 0;
                        out[len] = '\0';
                        continue;
                }
                if (len)
                        out[len++] = '/';
                memcpy(out + len, tok, strlen(tok));
                len += strlen(tok);
                out[len] = '\0';
        }
        if (!len) {
                free(out);
                return NULL;
        }
        return out;
}

struct link_pair {
        char *name, *target;
};

/* A member that a descriptor (or a docker manifest.json) names. */
struct want {
        char *name;
        int64_t size;   /* the descriptor's; -1: unknown (legacy docker paths) */
        int64_t cap;    /* the most bytes extracted when the size is unknown */
        struct oci_digest digest;
        bool has_digest;
        bool parse;     /* an index or a manifest: what it names is wanted too */
        bool done;
};

/* Reading an archive (issue #12): nothing is extracted before index.json (or
 * manifest.json) says what the image is made of, and then only the blobs a
 * descriptor names, each bound by its descriptor's size and checked against
 * its digest, the whole bound by the archive's own size (uncompressed) or
 * the decompression limit.  Sparse members are refused, never expanded. */
struct extract {
        const char *file, *dir;
        struct want *w;
        size_t n, cap;
        struct link_pair *links;
        size_t n_links;
        int64_t total, total_max;
        struct kiln_error rerr;
        bool rfailed;
        struct oci_reader *r;
        unsigned char in[65536];  /* given to libarchive: it reads from here */
        unsigned char buf[65536]; /* member data read out of libarchive */
};

static void extract_release(struct extract *x)
{
        for (size_t i = 0; i < x->n; i++)
                free(x->w[i].name);
        free(x->w);
        for (size_t i = 0; i < x->n_links; i++) {
                free(x->links[i].name);
                free(x->links[i].target);
        }
        free(x->links);
}

static struct want *find_want(struct extract *x, const char *name)
{
        for (size_t i = 0; i < x->n; i++)
                if (!strcmp(x->w[i].name, name))
                        return &x->w[i];
        return NULL;
}

/* Wants name (a link is followed to its target, which the archive holds). */
static int add_want(struct extract *x, const char *name, int64_t size, int64_t cap,
                    const struct oci_digest *d, bool parse, struct kiln_error *err)
{
        struct want *w;

        for (size_t i = 0; i < x->n_links; i++)
                if (!strcmp(x->links[i].name, name))
                        name = x->links[i].target;
        if (find_want(x, name))
                return 0;
        if (x->n == x->cap) {
                size_t nc = x->cap ? 2 * x->cap : 16;
                struct want *nw = realloc(x->w, nc * sizeof(*nw));
                if (!nw)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                x->w = nw;
                x->cap = nc;
        }
        w = &x->w[x->n];
        memset(w, 0, sizeof(*w));
        w->name = strdup(name);
        if (!w->name)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        w->size = size;
        w->cap = cap;
        if (d) {
                w->digest = *d;
                w->has_digest = true;
        }
        w->parse = parse;
        x->n++;
        return 0;
}

static int want_desc(struct extract *x, const struct oci_descriptor *d, struct kiln_error *err)
{
        _cleanup_free_ char *name = kiln_strdupf("blobs/%s/%s", oci_digest_alg_name(d->digest.alg),
                                                 oci_digest_hex(&d->digest));

        if (!name)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        return add_want(x, name, d->size, d->size, &d->digest,
                        oci_media_type_doc_kind(d->media_type) != OCI_DOC_UNKNOWN, err);
}

/* What an index or a manifest (buf) names is wanted: its manifests, or its
 * config and layers. */
static int want_children(struct extract *x, const char *buf, size_t len, const char *what,
                         struct kiln_error *err)
{
        enum oci_doc_kind kind;
        int rc = 0;

        if (oci_document_kind(buf, len, NULL, &kind, err) < 0)
                goto bad;
        if (kind == OCI_DOC_INDEX) {
                _cleanup_(oci_index_freep) struct oci_index *ix = NULL;
                if (oci_index_parse(buf, len, NULL, &ix, err) < 0)
                        goto bad;
                for (size_t i = 0; i < ix->n_manifests && rc == 0; i++)
                        rc = want_desc(x, &ix->manifests[i], err);
        } else if (kind == OCI_DOC_MANIFEST) {
                _cleanup_(oci_manifest_freep) struct oci_manifest *m = NULL;
                if (oci_manifest_parse(buf, len, NULL, &m, err) < 0)
                        goto bad;
                rc = want_desc(x, &m->config, err);
                for (size_t i = 0; i < m->n_layers && rc == 0; i++)
                        rc = want_desc(x, &m->layers[i], err);
        }
        return rc;
bad:
        kiln_error_prefix(err, "invalid archive '%s': '%s'", x->file, what);
        return -1;
}

static la_ssize_t extract_read(struct archive *a, void *ctx, const void **ret)
{
        struct extract *x = ctx;
        ssize_t n = oci_reader_read(x->r, x->in, sizeof(x->in), &x->rerr);

        if (n < 0) {
                x->rfailed = true;
                archive_set_error(a, EIO, "%s", x->rerr.msg);
                return -1;
        }
        *ret = x->in;
        return n;
}

/* The one message for a full TMPDIR (no strerror after it: it says it). */
static int no_space(const char *path, struct kiln_error *err)
{
        kiln_error_set(err, KILN_E_IO, "no space left on device writing '%s'", path);
        err->sys_errno = ENOSPC;
        return -1;
}

static int write_all(int fd, const void *buf, size_t len, const char *path, struct kiln_error *err)
{
        const char *p = buf;

        while (len) {
                ssize_t n = write(fd, p, len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == ENOSPC)
                        return no_space(path, err);
                if (n < 0)
                        return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot write '%s'",
                                                    path);
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

/* Extracts the data of the current member into DIR/name: at most w's size
 * (or cap), the whole bound by x->total_max; checks size and digest. */
static int extract_member(struct extract *x, struct archive *a, const char *name,
                          struct want *w, char **ret_buf, struct kiln_error *err)
{
        _cleanup_free_ char *path = kiln_strdupf("%s/%s", x->dir, name);
        _cleanup_free_ char *pdir = NULL, *doc = NULL;
        _cleanup_close_ int fd = -1;
        int64_t limit = w->size >= 0 ? w->size : w->cap, got = 0;
        struct oci_hasher h = {0};
        struct oci_digest have;
        la_ssize_t n;
        int rc = -1;

        if (!path || !(pdir = kiln_dirname(path)))
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (ret_buf && limit > (int64_t)oci_manifest_limit())
                return kiln_error_set(err, KILN_E_LIMIT,
                                      "invalid archive '%s': document '%s' of %lld bytes is larger "
                                      "than the limit of %zu bytes",
                                      x->file, name, (long long)limit, oci_manifest_limit());
        if (w->has_digest && oci_hasher_init(&h, w->digest.alg, err) < 0)
                return -1;
        if (kiln_mkdir_p(pdir, 0755, err) < 0)
                goto out;
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0) {
                kiln_error_set_errno(err, errno == EEXIST ? KILN_E_INVALID : KILN_E_IO, errno,
                                     "invalid archive '%s': entry '%s'", x->file, name);
                goto out;
        }
        if (ret_buf && !(doc = malloc((size_t)limit + 1))) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto out;
        }
        while ((n = archive_read_data(a, x->buf, sizeof(x->buf))) > 0) {
                if (got + n > limit) {
                        if (w->size >= 0)
                                kiln_error_set(err, KILN_E_INVALID,
                                               "invalid archive '%s': entry '%s' is larger than "
                                               "the %lld bytes its descriptor says",
                                               x->file, name, (long long)limit);
                        else
                                kiln_error_set(err, KILN_E_LIMIT,
                                               "invalid archive '%s': entry '%s' is larger than "
                                               "the limit of %lld bytes",
                                               x->file, name, (long long)limit);
                        goto out;
                }
                if (x->total + n > x->total_max) {
                        kiln_error_set(err, KILN_E_LIMIT,
                                       "invalid archive '%s': its entries hold more than %lld "
                                       "bytes",
                                       x->file, (long long)x->total_max);
                        goto out;
                }
                if (write_all(fd, x->buf, (size_t)n, path, err) < 0)
                        goto out;
                if (doc)
                        memcpy(doc + got, x->buf, (size_t)n);
                if (w->has_digest)
                        oci_hasher_update(&h, x->buf, (size_t)n);
                got += n;
                x->total += n;
        }
        if (n < 0) {
                kiln_error_set(err, KILN_E_INVALID, "invalid archive '%s': %s", x->file,
                               x->rfailed ? x->rerr.msg : archive_error_string(a));
                if (x->rfailed)
                        err->code = x->rerr.code;
                goto out;
        }
        if (w->size >= 0 && got != w->size) {
                kiln_error_set(err, KILN_E_INVALID,
                               "invalid archive '%s': entry '%s' has %lld bytes, its descriptor "
                               "says %lld",
                               x->file, name, (long long)got, (long long)w->size);
                goto out;
        }
        if (w->has_digest) {
                oci_hasher_final(&h, &have);
                if (!oci_digest_equal(&have, &w->digest)) {
                        kiln_error_set(err, KILN_E_DIGEST,
                                       "invalid archive '%s': entry '%s' does not match its "
                                       "digest",
                                       x->file, name);
                        goto out;
                }
        }
        if (fsync(fd) < 0 && errno == ENOSPC) {
                no_space(path, err);
                goto out;
        }
        if (doc) {
                doc[got] = '\0';
                *ret_buf = steal_ptr(&doc);
        }
        w->done = true;
        rc = 0;
out:
        if (w->has_digest)
                oci_hasher_release(&h);
        return rc;
}

/* Records a link member (docker and skopeo archives link layer.tar files
 * to one copy); only links that stay inside are kept. */
static int note_link(struct extract *x, struct archive_entry *e, const char *name,
                     struct kiln_error *err)
{
        bool sym = archive_entry_filetype(e) == AE_IFLNK;
        const char *t = sym ? archive_entry_symlink(e) : archive_entry_hardlink(e);
        char *target = t ? (sym ? resolve_link(name, t) : (safe_member_name(t) ? strdup(t) : NULL))
                         : NULL;
        struct link_pair *nl;

        if (!target)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid archive '%s': link '%s' points outside the archive",
                                      x->file, name);
        nl = realloc(x->links, (x->n_links + 1) * sizeof(*nl));
        if (!nl) {
                free(target);
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        x->links = nl;
        x->links[x->n_links].target = target;
        x->links[x->n_links].name = strdup(name);
        if (!x->links[x->n_links++].name)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        return 0;
}

/* One member: checked, then extracted when the first pass wants metadata or
 * a later pass wants this blob. */
static int visit(struct extract *x, struct archive *a, struct archive_entry *e, bool first,
                 struct kiln_error *err)
{
        const char *name = archive_entry_pathname(e);
        mode_t type = archive_entry_filetype(e);
        struct want meta = {.size = -1, .cap = (int64_t)oci_manifest_limit()}, *w;
        _cleanup_free_ char *doc = NULL;

        while (name && name[0] == '.' && name[1] == '/')
                name += 2;
        if (!name || !*name || !strcmp(name, ".") || type == AE_IFDIR)
                return 0;
        if (!safe_member_name(name))
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid archive '%s': unsafe entry name '%s'", x->file,
                                      archive_entry_pathname(e));
        if (archive_entry_sparse_count(e) > 0)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid archive '%s': entry '%s' is sparse", x->file,
                                      name);
        if (type == AE_IFLNK || (type == AE_IFREG && archive_entry_hardlink(e)))
                return first ? note_link(x, e, name, err) : 0;
        if (type != AE_IFREG)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid archive '%s': entry '%s' is not a regular file",
                                      x->file, name);
        if (first) {
                if (!is_top_metadata(name))
                        return 0;
                return extract_member(x, a, name, &meta, NULL, err);
        }
        w = find_want(x, name);
        if (!w || w->done)
                return 0;
        if (extract_member(x, a, name, w, w->parse ? &doc : NULL, err) < 0)
                return -1;
        return doc ? want_children(x, doc, strlen(doc), name, err) : 0;
}

/* One pass over the archive. */
static int extract_pass(struct extract *x, bool first, struct kiln_error *err)
{
        struct archive *a = NULL;
        struct archive_entry *e;
        int fd, r, rc = -1;

        x->rfailed = false;
        fd = open(x->file, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return kiln_error_set_errno(err, errno == ENOENT ? KILN_E_NOT_FOUND : KILN_E_IO,
                                            errno, "cannot open archive '%s'", x->file);
        x->r = oci_reader_from_fd(fd, true, err);
        if (!x->r) {
                close(fd);
                return -1;
        }
        /* the decompression rules and limit of unpacking */
        x->r = layer_decompress_reader_new(x->r, OCI_COMPRESSION_UNKNOWN,
                                           LAYER_UNPACK_DEFAULT_MAX_SIZE, err);
        if (!x->r)
                return -1;
        a = archive_read_new();
        if (!a) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto out;
        }
        archive_read_support_format_tar(a);
        if (archive_read_open(a, x, NULL, extract_read, NULL) != ARCHIVE_OK)
                goto bad;
        while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK)
                if (visit(x, a, e, first, err) < 0)
                        goto out;
        if (r == ARCHIVE_EOF) {
                rc = 0;
                goto out;
        }
bad:
        if (x->rfailed) {
                *err = x->rerr;
                kiln_error_prefix(err, "invalid archive '%s'", x->file);
        } else {
                kiln_error_set(err, KILN_E_INVALID, "invalid archive '%s': %s", x->file,
                               archive_error_string(a) ? archive_error_string(a) : "read failed");
        }
out:
        archive_read_free(a);
        oci_reader_free(x->r);
        x->r = NULL;
        return rc;
}

/* What the first pass's index.json, or else manifest.json, names. */
static int want_roots(struct extract *x, struct kiln_error *err)
{
        _cleanup_free_ char *path = kiln_strdupf("%s/index.json", x->dir), *buf = NULL;
        _cleanup_json_ json_t *j = NULL;
        size_t len, i;
        json_t *v;

        if (!path)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (access(path, F_OK) == 0) {
                if (kiln_read_file(path, oci_manifest_limit(), &buf, &len, err) < 0)
                        return -1;
                return want_children(x, buf, len, "index.json", err);
        }
        free(path);
        path = kiln_strdupf("%s/manifest.json", x->dir);
        if (!path)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (access(path, F_OK) < 0)
                return 0; /* the layout store says what is missing */
        if (kiln_read_file(path, oci_manifest_limit(), &buf, &len, err) < 0)
                return -1;
        j = oci_json_parse(buf, len, "manifest.json", err);
        if (!j)
                return -1;
        /* a legacy docker archive names files, with no size or digest: the
         * config is capped like any document, layers by the total */
        json_array_foreach(j, i, v)
        {
                size_t k;
                json_t *l;
                const char *c = json_string_value(json_object_get(v, "Config"));
                if (c && safe_member_name(c) &&
                    add_want(x, c, -1, (int64_t)oci_manifest_limit(), NULL, false, err) < 0)
                        return -1;
                json_array_foreach(json_object_get(v, "Layers"), k, l)
                {
                        const char *n = json_string_value(l);
                        if (n && safe_member_name(n) &&
                            add_want(x, n, -1, x->total_max, NULL, false, err) < 0)
                                return -1;
                }
        }
        return 0;
}

/* Links whose target was extracted become hard links in DIR. */
static int make_links(struct extract *x, struct kiln_error *err)
{
        for (size_t i = 0; i < x->n_links; i++) {
                _cleanup_free_ char *from = kiln_strdupf("%s/%s", x->dir, x->links[i].target);
                _cleanup_free_ char *to = kiln_strdupf("%s/%s", x->dir, x->links[i].name);
                _cleanup_free_ char *pdir = to ? kiln_dirname(to) : NULL;
                struct want *w = find_want(x, x->links[i].target);
                struct stat st;

                if (!from || !to || !pdir)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                if (!w || !w->done || lstat(to, &st) == 0)
                        continue;
                if (kiln_mkdir_p(pdir, 0755, err) < 0)
                        return -1;
                if (link(from, to) < 0)
                        return kiln_error_set_errno(err, KILN_E_INVALID, errno,
                                                    "invalid archive '%s': link '%s'", x->file,
                                                    x->links[i].name);
        }
        return 0;
}

#define EXTRACT_PASSES_MAX 8

static size_t n_done(const struct extract *x)
{
        size_t k = 0;

        for (size_t i = 0; i < x->n; i++)
                k += x->w[i].done;
        return k;
}

static bool is_compressed(const char *file)
{
        unsigned char m[4] = {0};
        _cleanup_close_ int fd = open(file, O_RDONLY | O_CLOEXEC);

        if (fd < 0 || read(fd, m, sizeof(m)) < 2)
                return false;
        return (m[0] == 0x1f && m[1] == 0x8b) ||
               (m[0] == 0x28 && m[1] == 0xb5 && m[2] == 0x2f && m[3] == 0xfd);
}

static int extract(const char *file, const char *dir, struct kiln_error *err)
{
        struct extract *x = calloc(1, sizeof(*x));
        struct stat st;
        int rc = -1;

        if (!x)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        x->file = file;
        x->dir = dir;
        /* an uncompressed archive holds no more than its own size; a
         * compressed one no more than unpacking decompresses */
        x->total_max = LAYER_UNPACK_DEFAULT_MAX_SIZE;
        if (stat(file, &st) == 0 && S_ISREG(st.st_mode) && !is_compressed(file) &&
            st.st_size < x->total_max)
                x->total_max = st.st_size;
        if (extract_pass(x, true, err) < 0 || want_roots(x, err) < 0)
                goto out;
        /* A blob may come before the document naming it: pass again while a
         * pass extracts something and something is still wanted (index ->
         * manifest -> config and layers).  A blob never found stays missing:
         * the layout says so when it is used. */
        for (int pass = 0; pass < EXTRACT_PASSES_MAX && n_done(x) < x->n; pass++) {
                size_t before = n_done(x);
                if (extract_pass(x, false, err) < 0)
                        goto out;
                if (n_done(x) == before)
                        break;
        }
        rc = make_links(x, err);
out:
        extract_release(x);
        free(x);
        return rc;
}

/* Moves DIR/name into the layout as a blob named by its content. */
static int import_file(struct oci_layout *l, const char *dir, const char *name,
                       struct oci_digest *ret, int64_t *ret_size, bool *ret_gzip,
                       struct kiln_error *err)
{
        _cleanup_free_ char *path = NULL;
        struct oci_reader *r = NULL;
        struct oci_writer *w = NULL;
        unsigned char magic[2] = {0};
        int fd, rc = -1;

        if (!safe_member_name(name))
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid docker archive: unsafe path '%s' in manifest.json",
                                      name);
        path = kiln_strdupf("%s/%s", dir, name);
        if (!path)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return kiln_error_set_errno(err, KILN_E_INVALID, errno,
                                            "invalid docker archive: '%s'", name);
        if (ret_gzip) {
                *ret_gzip = pread(fd, magic, 2, 0) == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
        }
        r = oci_reader_from_fd(fd, true, err);
        if (!r) {
                close(fd);
                return -1;
        }
        w = oci_layout_blob_writer_new(l, OCI_DIGEST_SHA256, err);
        if (w && oci_copy_stream(r, w, NULL, err) == 0 &&
            oci_layout_blob_writer_commit(w, NULL, -1, ret, ret_size, err) == 0)
                rc = 0;
        oci_writer_free(w);
        oci_reader_free(r);
        return rc;
}

/* A legacy `docker save` archive: manifest.json lists Config and Layers. */
static int convert_docker_legacy(const char *dir, const char *want_ref, char **ret_tag,
                                 struct kiln_error *err)
{
        _cleanup_free_ char *mpath = kiln_strdupf("%s/manifest.json", dir);
        _cleanup_free_ char *buf = NULL, *out = NULL;
        _cleanup_json_ json_t *j = NULL;
        _cleanup_json_ json_t *man = NULL;
        struct oci_layout *l = NULL;
        json_t *entry = NULL, *layers, *v, *cfgdesc, *larr;
        struct oci_descriptor d = {0};
        struct oci_digest dig;
        size_t len, outlen, i;
        int64_t size;
        int rc = -1;

        if (!mpath)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (kiln_read_file(mpath, oci_manifest_limit(), &buf, &len, err) < 0) {
                kiln_error_prefix(err, "invalid docker archive");
                return -1;
        }
        j = oci_json_parse(buf, len, "manifest.json", err);
        if (!j)
                return -1;
        if (!json_is_array(j) || json_array_size(j) == 0)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid docker archive: manifest.json must be a non-empty array");
        if (!want_ref) {
                if (json_array_size(j) != 1)
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "docker archive holds %zu images; name one with docker-archive:FILE:REF",
                                              json_array_size(j));
                entry = json_array_get(j, 0);
        } else {
                struct oci_ref want;
                _cleanup_free_ char *ws = NULL;
                if (oci_ref_parse(want_ref, &want, err) < 0)
                        return -1;
                ws = oci_ref_string(&want);
                oci_ref_release(&want);
                json_array_foreach(j, i, v)
                {
                        size_t k;
                        json_t *t;
                        json_array_foreach(json_object_get(v, "RepoTags"), k, t)
                        {
                                struct oci_ref have;
                                _cleanup_free_ char *hs = NULL;
                                if (!json_is_string(t) ||
                                    oci_ref_parse(json_string_value(t), &have, NULL) < 0)
                                        continue;
                                hs = oci_ref_string(&have);
                                oci_ref_release(&have);
                                if (hs && ws && !strcmp(hs, ws))
                                        entry = v;
                        }
                }
                if (!entry)
                        return kiln_error_set(err, KILN_E_NOT_FOUND,
                                              "image '%s' not found in docker archive", want_ref);
        }
        l = oci_layout_open(dir, true, err);
        if (!l)
                return -1;
        if (!json_is_string(json_object_get(entry, "Config")) ||
            !json_is_array(json_object_get(entry, "Layers"))) {
                kiln_error_set(err, KILN_E_INVALID,
                               "invalid docker archive: manifest.json entry needs Config and Layers");
                goto out;
        }
        if (import_file(l, dir, json_string_value(json_object_get(entry, "Config")), &dig, &size,
                        NULL, err) < 0)
                goto out;
        d.media_type = DOCKER_MT_CONFIG;
        d.digest = dig;
        d.size = size;
        cfgdesc = oci_descriptor_to_json(&d);
        larr = json_array();
        layers = json_object_get(entry, "Layers");
        json_array_foreach(layers, i, v)
        {
                bool gz = false;
                if (!json_is_string(v) ||
                    import_file(l, dir, json_string_value(v), &dig, &size, &gz, err) < 0) {
                        if (!json_is_string(v))
                                kiln_error_set(err, KILN_E_INVALID,
                                               "invalid docker archive: layer %zu is not a string",
                                               i);
                        json_decref(cfgdesc);
                        json_decref(larr);
                        goto out;
                }
                d.media_type = gz ? DOCKER_MT_LAYER_GZIP : DOCKER_MT_LAYER_TAR;
                d.digest = dig;
                d.size = size;
                json_array_append_new(larr, oci_descriptor_to_json(&d));
        }
        man = json_object();
        json_object_set_new(man, "schemaVersion", json_integer(2));
        json_object_set_new(man, "mediaType", json_string(DOCKER_MT_MANIFEST));
        json_object_set_new(man, "config", cfgdesc);
        json_object_set_new(man, "layers", larr);
        if (oci_json_dump(man, &out, &outlen, err) < 0 ||
            oci_layout_put_blob_buffer(l, out, outlen, &dig, err) < 0)
                goto out;
        d.media_type = DOCKER_MT_MANIFEST;
        d.digest = dig;
        d.size = (int64_t)outlen;
        if (oci_layout_tag(l, NULL, &d, err) < 0)
                goto out;
        *ret_tag = strdup(dig.str);
        rc = *ret_tag ? 0 : kiln_error_set(err, KILN_E_NOMEM, "out of memory");
out:
        oci_layout_free(l);
        return rc;
}

/* docker 25+ archives carry an OCI layout; a REF names an image by the
 * io.containerd.image.name annotation. */
static int find_docker_ref(const char *dir, const char *want_ref, char **ret_tag,
                           struct kiln_error *err)
{
        struct oci_layout *l = oci_layout_open(dir, false, err);
        _cleanup_free_ char *buf = NULL, *ws = NULL;
        struct oci_index *x = NULL;
        struct oci_ref want;
        size_t len;
        int rc = -1;

        if (!l)
                return -1;
        if (oci_ref_parse(want_ref, &want, err) < 0)
                goto out;
        ws = oci_ref_string(&want);
        oci_ref_release(&want);
        if (oci_layout_read_index(l, &buf, &len, err) < 0 ||
            oci_index_parse(buf, len, OCI_MT_INDEX, &x, err) < 0)
                goto out;
        for (size_t i = 0; i < x->n_manifests; i++) {
                const char *n = json_string_value(
                        json_object_get(x->manifests[i].annotations, "io.containerd.image.name"));
                struct oci_ref have;
                _cleanup_free_ char *hs = NULL;
                if (!n || oci_ref_parse(n, &have, NULL) < 0)
                        continue;
                hs = oci_ref_string(&have);
                oci_ref_release(&have);
                if (hs && ws && !strcmp(hs, ws)) {
                        *ret_tag = strdup(x->manifests[i].digest.str);
                        rc = 0;
                        goto out;
                }
        }
        rc = kiln_error_set(err, KILN_E_NOT_FOUND, "image '%s' not found in docker archive",
                            want_ref);
out:
        oci_index_free(x);
        oci_layout_free(l);
        return rc;
}

/* ---- store ops: forward to the inner layout ---- */

static int as_get_manifest(struct oci_store *s, const char *ref, char **ret_buf, size_t *ret_len,
                           char **ret_mt, struct oci_digest *ret_digest, struct kiln_error *err)
{
        struct archive_store *as = (struct archive_store *)s;

        return as->inner->ops->get_manifest(as->inner, ref, ret_buf, ret_len, ret_mt, ret_digest,
                                            err);
}

static struct oci_reader *as_open_blob(struct oci_store *s, const struct oci_descriptor *d,
                                       struct kiln_error *err)
{
        struct archive_store *as = (struct archive_store *)s;

        return as->inner->ops->open_blob(as->inner, d, err);
}

static int as_has_blob(struct oci_store *s, const struct oci_descriptor *d, bool *ret,
                       struct kiln_error *err)
{
        struct archive_store *as = (struct archive_store *)s;

        return as->inner->ops->has_blob(as->inner, d, ret, err);
}

static int as_put_blob(struct oci_store *s, const struct oci_descriptor *d, struct oci_reader *r,
                       struct kiln_error *err)
{
        struct archive_store *as = (struct archive_store *)s;

        return as->inner->ops->put_blob(as->inner, d, r, err);
}

static int as_put_manifest(struct oci_store *s, const struct oci_descriptor *d, const char *buf,
                           size_t len, struct kiln_error *err)
{
        struct archive_store *as = (struct archive_store *)s;

        return as->inner->ops->put_manifest(as->inner, d, buf, len, err);
}

static int as_tag(struct oci_store *s, const char *tag, const struct oci_descriptor *d,
                  struct kiln_error *err)
{
        struct archive_store *as = (struct archive_store *)s;

        return as->inner->ops->tag(as->inner, tag, d, err);
}

static void as_free(struct oci_store *s)
{
        struct archive_store *as = (struct archive_store *)s;

        oci_store_free(as->inner);
        if (as->tmpdir)
                kiln_rm_rf(as->tmpdir);
        free(as->tmpdir);
        free(as->file);
        free(as->tag);
        free(s->name);
        free(s->default_ref);
        free(as);
}

static const struct oci_store_ops archive_ops = {
        .kind = "archive",
        .thread_safe = true,
        .get_manifest = as_get_manifest,
        .open_blob = as_open_blob,
        .has_blob = as_has_blob,
        .put_blob = as_put_blob,
        .put_manifest = as_put_manifest,
        .tag = as_tag,
        .commit = NULL,
        .free = as_free,
};

struct oci_store *layer_archive_store_new(bool docker, const char *file, const char *tag,
                                          bool for_write, struct kiln_error *err)
{
        struct archive_store *as = calloc(1, sizeof(*as));
        char *inner_tag = NULL;
        const char *tmproot;

        if (for_write) {
                free(as);
                return layer_archive_writer_new(docker, file, tag, err);
        }
        if (!as) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        as->base.ops = &archive_ops;
        as->docker = docker;
        as->for_write = for_write;
        as->file = strdup(file);
        as->tag = tag ? strdup(tag) : NULL;
        as->base.name = kiln_strdupf("%s:%s%s%s", docker ? "docker-archive" : "oci-archive",
                                     file, tag ? ":" : "", tag ? tag : "");
        if (!as->file || !as->base.name || (tag && !as->tag)) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto fail;
        }
        tmproot = getenv("TMPDIR");
        as->tmpdir = kiln_strdupf("%s/kiln-archive-XXXXXX", tmproot && *tmproot ? tmproot : "/tmp");
        if (!as->tmpdir || !mkdtemp(as->tmpdir)) {
                kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create a temp directory for '%s'",
                                     file);
                free(as->tmpdir);
                as->tmpdir = NULL;
                goto fail;
        }
        {
                struct stat st;
                _cleanup_free_ char *idx = kiln_strdupf("%s/index.json", as->tmpdir);
                if (extract(file, as->tmpdir, err) < 0)
                        goto fail;
                if (docker && idx && stat(idx, &st) < 0) {
                        if (convert_docker_legacy(as->tmpdir, tag, &inner_tag, err) < 0)
                                goto fail;
                } else if (docker && tag) {
                        if (find_docker_ref(as->tmpdir, tag, &inner_tag, err) < 0)
                                goto fail;
                } else if (tag) {
                        inner_tag = strdup(tag);
                }
                as->inner = oci_layout_store_new(as->tmpdir, inner_tag, false, err);
                if (!as->inner) {
                        kiln_error_prefix(err, "archive '%s'", file);
                        goto fail;
                }
        }
        free(inner_tag);
        return &as->base;
fail:
        free(inner_tag);
        as_free(&as->base);
        return NULL;
}
