#include "layout.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"
#include "util.h"

#define LAYOUT_FILE_CONTENT "{\"imageLayoutVersion\":\"1.0.0\"}"
#define EMPTY_INDEX "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_INDEX "\",\"manifests\":[]}"

struct oci_layout {
        char *dir;
};

const char *oci_layout_dir(const struct oci_layout *l)
{
        return l->dir;
}

void oci_layout_free(struct oci_layout *l)
{
        if (!l)
                return;
        free(l->dir);
        free(l);
}

static int check_not_symlink(const char *path, struct kiln_error *err)
{
        struct stat st;

        if (lstat(path, &st) < 0)
                return errno == ENOENT ? 0
                                       : kiln_error_set_errno(err, KILN_E_IO, errno,
                                                              "cannot stat '%s'", path);
        if (S_ISLNK(st.st_mode))
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid layout: '%s' is a symbolic link", path);
        return 0;
}

struct oci_layout *oci_layout_open(const char *dir, bool create, struct kiln_error *err)
{
        _cleanup_free_ char *layout_file = kiln_strdupf("%s/oci-layout", dir);
        _cleanup_free_ char *index_file = kiln_strdupf("%s/index.json", dir);
        _cleanup_free_ char *blobs = kiln_strdupf("%s/blobs", dir);
        _cleanup_free_ char *content = NULL;
        struct oci_layout *l;
        struct stat st;
        json_t *j, *v;

        if (!layout_file || !index_file || !blobs) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        if (stat(dir, &st) < 0) {
                if (errno != ENOENT || !create) {
                        kiln_error_set_errno(err, errno == ENOENT ? KILN_E_NOT_FOUND : KILN_E_IO,
                                             errno, "cannot open layout '%s'", dir);
                        return NULL;
                }
                if (kiln_mkdir_p(dir, 0755, err) < 0)
                        return NULL;
        } else if (!S_ISDIR(st.st_mode)) {
                kiln_error_set(err, KILN_E_INVALID, "layout '%s' is not a directory", dir);
                return NULL;
        }
        /* A new layout is born in this order: index.json, then oci-layout,
         * which marks the directory as a layout; a kill in between leaves a
         * directory that is not a layout yet, never a layout without an index. */
        if (create && access(index_file, F_OK) < 0 &&
            kiln_write_file_atomic(index_file, EMPTY_INDEX, strlen(EMPTY_INDEX), 0644, err) < 0)
                return NULL;
        if (access(layout_file, F_OK) < 0) {
                if (!create) {
                        kiln_error_set(err, KILN_E_INVALID,
                                       "'%s' is not an OCI layout: missing oci-layout", dir);
                        return NULL;
                }
                if (kiln_write_file_atomic(layout_file, LAYOUT_FILE_CONTENT,
                                           strlen(LAYOUT_FILE_CONTENT), 0644, err) < 0)
                        return NULL;
        }
        if (kiln_read_file(layout_file, 4096, &content, NULL, err) < 0) {
                kiln_error_prefix(err, "invalid layout '%s'", dir);
                return NULL;
        }
        j = oci_json_parse(content, strlen(content), "oci-layout", err);
        if (!j) {
                kiln_error_prefix(err, "invalid layout '%s'", dir);
                return NULL;
        }
        v = json_object_get(j, "imageLayoutVersion");
        if (!json_is_string(v) || strncmp(json_string_value(v), "1.", 2) != 0) {
                json_decref(j);
                kiln_error_set(err, KILN_E_UNSUPPORTED,
                               "unsupported layout '%s': imageLayoutVersion must be 1.x", dir);
                return NULL;
        }
        json_decref(j);
        if (check_not_symlink(blobs, err) < 0)
                return NULL;
        l = calloc(1, sizeof(*l));
        if (!l || !(l->dir = strdup(dir))) {
                free(l);
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        return l;
}

int oci_layout_read_index(struct oci_layout *l, char **ret_buf, size_t *ret_len,
                          struct kiln_error *err)
{
        _cleanup_free_ char *path = kiln_strdupf("%s/index.json", l->dir);

        if (!path)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (kiln_read_file(path, oci_manifest_limit(), ret_buf, ret_len, err) < 0) {
                if (err && err->code == KILN_E_NOT_FOUND)
                        kiln_error_set(err, KILN_E_INVALID,
                                       "invalid layout '%s': missing index.json", l->dir);
                return -1;
        }
        return 0;
}

char *oci_layout_blob_path(const struct oci_layout *l, const struct oci_digest *d)
{
        return kiln_strdupf("%s/blobs/%s/%s", l->dir, oci_digest_alg_name(d->alg),
                            oci_digest_hex(d));
}

static int open_blob_fd(struct oci_layout *l, const struct oci_digest *d, int64_t *ret_size,
                        struct kiln_error *err)
{
        _cleanup_free_ char *path = oci_layout_blob_path(l, d);
        _cleanup_free_ char *algdir = kiln_strdupf("%s/blobs/%s", l->dir, oci_digest_alg_name(d->alg));
        struct stat st;
        int fd;

        if (!path || !algdir)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (check_not_symlink(algdir, err) < 0)
                return -1;
        fd = kiln_open_regular(AT_FDCWD, path, &st);
        if (fd == -2)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "blob '%s' in layout '%s' is not a regular file", d->str,
                                      l->dir);
        if (fd < 0) {
                if (errno == ELOOP)
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "blob '%s' in layout '%s' is a symbolic link",
                                              d->str, l->dir);
                return kiln_error_set_errno(err, errno == ENOENT ? KILN_E_NOT_FOUND : KILN_E_IO,
                                            errno, "blob '%s' in layout '%s'", d->str, l->dir);
        }
        *ret_size = st.st_size;
        return fd;
}

struct oci_reader *oci_layout_blob_open(struct oci_layout *l, const struct oci_digest *d,
                                        int64_t size, struct kiln_error *err)
{
        struct oci_reader *r;
        int64_t fsize = 0;
        int fd = open_blob_fd(l, d, &fsize, err);

        if (fd < 0)
                return NULL;
        /* Check the size before hashing anything. */
        if (size >= 0 && fsize != size) {
                close(fd);
                kiln_error_set(err, KILN_E_DIGEST,
                               "blob '%s' in layout '%s' has %lld bytes, its descriptor says %lld",
                               d->str, l->dir, (long long)fsize, (long long)size);
                return NULL;
        }
        r = oci_reader_from_fd(fd, true, err);
        if (!r) {
                close(fd);
                return NULL;
        }
        return oci_verified_reader_new(r, d, size >= 0 ? size : fsize, err);
}

int oci_layout_blob_read(struct oci_layout *l, const struct oci_digest *d, int64_t size,
                         size_t cap, char **ret_buf, size_t *ret_len, struct kiln_error *err)
{
        struct oci_reader *r = oci_layout_blob_open(l, d, size, err);
        int rc;

        if (!r)
                return -1;
        rc = oci_reader_read_all(r, cap, d->str, ret_buf, ret_len, err);
        oci_reader_free(r);
        return rc;
}

int oci_layout_blob_check(struct oci_layout *l, const struct oci_digest *d, int64_t size,
                          bool *ret, struct kiln_error *err)
{
        struct kiln_error e2 = KILN_ERROR_INIT;
        struct oci_reader *r = oci_layout_blob_open(l, d, size, &e2);
        _cleanup_free_ char *path = NULL;

        if (!r) {
                if (e2.code == KILN_E_NOT_FOUND) {
                        *ret = false;
                        return 0;
                }
                if (e2.code != KILN_E_DIGEST) {
                        if (err)
                                *err = e2;
                        return -1;
                }
        } else {
                int rc = oci_reader_drain(r, &e2);
                oci_reader_free(r);
                if (rc == 0) {
                        *ret = true;
                        return 0;
                }
                if (e2.code != KILN_E_DIGEST) {
                        if (err)
                                *err = e2;
                        return -1;
                }
        }
        /* Present but wrong: remove it so the right content can be written. */
        path = oci_layout_blob_path(l, d);
        if (path)
                unlink(path);
        *ret = false;
        return 0;
}

struct blob_writer {
        struct oci_writer base;
        struct oci_layout *l;
        struct oci_hasher h;
        int fd;
        char *tmp;
        int64_t size;
        bool committed;
        bool prechecked; /* the bytes come from a reader that verifies them */
};

static int bw_write(struct oci_writer *w, const void *buf, size_t len, struct kiln_error *err)
{
        struct blob_writer *b = (struct blob_writer *)w;
        const char *p = buf;
        size_t left = len;

        while (left) {
                ssize_t n = write(b->fd, p, left);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot write '%s'",
                                                    b->tmp);
                }
                p += n;
                left -= (size_t)n;
        }
        if (!b->prechecked)
                oci_hasher_update(&b->h, buf, len);
        b->size += (int64_t)len;
        return 0;
}

static void bw_free(struct oci_writer *w)
{
        struct blob_writer *b = (struct blob_writer *)w;

        if (!b)
                return;
        if (b->fd >= 0)
                close(b->fd);
        if (b->tmp && !b->committed)
                unlink(b->tmp);
        free(b->tmp);
        oci_hasher_release(&b->h);
        free(b);
}

struct oci_writer *oci_layout_blob_writer_new(struct oci_layout *l, enum oci_digest_alg alg,
                                              struct kiln_error *err)
{
        struct blob_writer *b = calloc(1, sizeof(*b));
        _cleanup_free_ char *algdir = NULL;

        if (!b) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        b->fd = -1;
        b->base.write = bw_write;
        b->base.free = bw_free;
        b->l = l;
        algdir = kiln_strdupf("%s/blobs/%s", l->dir, oci_digest_alg_name(alg));
        b->tmp = kiln_strdupf("%s/.tmp-XXXXXX", algdir ? algdir : "");
        if (!algdir || !b->tmp) {
                bw_free(&b->base);
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        if (kiln_mkdir_p(algdir, 0755, err) < 0 || check_not_symlink(algdir, err) < 0 ||
            oci_hasher_init(&b->h, alg, err) < 0) {
                bw_free(&b->base);
                return NULL;
        }
        b->fd = mkstemp(b->tmp);
        if (b->fd < 0) {
                kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create a blob in '%s'",
                                     algdir);
                free(b->tmp);
                b->tmp = NULL;
                bw_free(&b->base);
                return NULL;
        }
        fchmod(b->fd, 0644);
        return &b->base;
}

int oci_layout_blob_writer_commit(struct oci_writer *w, const struct oci_digest *want,
                                  int64_t size, struct oci_digest *ret_digest,
                                  int64_t *ret_size, struct kiln_error *err)
{
        struct blob_writer *b = (struct blob_writer *)w;
        struct oci_digest got;
        _cleanup_free_ char *path = NULL, *dir = NULL;

        if (b->prechecked) {
                if (!want)
                        return kiln_error_set(err, KILN_E_INTERNAL,
                                              "a prechecked blob needs its digest");
                got = *want; /* the reader ended without error: it matched */
        } else {
                oci_hasher_final(&b->h, &got);
        }
        if (size >= 0 && b->size != size)
                return kiln_error_set(err, KILN_E_DIGEST,
                                      "blob '%s' has %lld bytes, its descriptor says %lld",
                                      want ? want->str : got.str, (long long)b->size,
                                      (long long)size);
        if (want && !oci_digest_equal(want, &got))
                return kiln_error_set(err, KILN_E_DIGEST,
                                      "blob '%s' does not match its digest: content hashes to '%s'",
                                      want->str, got.str);
        path = oci_layout_blob_path(b->l, &got);
        dir = path ? kiln_dirname(path) : NULL;
        if (!path || !dir)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (fsync(b->fd) < 0)
                return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot sync '%s'", b->tmp);
        close(b->fd);
        b->fd = -1;
        if (rename(b->tmp, path) < 0)
                return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot rename blob to '%s'",
                                            path);
        b->committed = true;
        if (kiln_fsync_dir(dir, err) < 0)
                return -1;
        if (ret_digest)
                *ret_digest = got;
        if (ret_size)
                *ret_size = b->size;
        return 0;
}

void oci_layout_blob_writer_prechecked(struct oci_writer *w)
{
        ((struct blob_writer *)w)->prechecked = true;
}

int oci_layout_put_blob_buffer(struct oci_layout *l, const void *buf, size_t len,
                               struct oci_digest *ret_digest, struct kiln_error *err)
{
        struct oci_writer *w = oci_layout_blob_writer_new(l, OCI_DIGEST_SHA256, err);
        int rc;

        if (!w)
                return -1;
        rc = oci_writer_write(w, buf, len, err);
        if (rc == 0)
                rc = oci_layout_blob_writer_commit(w, NULL, (int64_t)len, ret_digest, NULL, err);
        oci_writer_free(w);
        return rc;
}

/* index.json read-modify-write under an exclusive lock on the directory. */
static int lock_dir(struct oci_layout *l, struct kiln_error *err)
{
        int fd = open(l->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        if (fd < 0)
                return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot open layout '%s'",
                                            l->dir);
        while (flock(fd, LOCK_EX) < 0) {
                if (errno == EINTR)
                        continue;
                close(fd);
                return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot lock layout '%s'",
                                            l->dir);
        }
        return fd;
}

/* image-layout.md: ref ::= component ("/" component)*,
 * component ::= alphanum (separator alphanum)*, separator ::= [-._:@+] | "--" */
static bool ref_name_valid(const char *s)
{
        size_t n = strlen(s);

        if (n == 0 || n > 4096)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                             (c >= '0' && c <= '9');
                if (alnum)
                        continue;
                if (i == 0 || i == n - 1)
                        return false;
                if (c == '/' || strchr("-._:@+", c)) {
                        char p = s[i - 1];
                        bool prev_alnum = (p >= 'a' && p <= 'z') || (p >= 'A' && p <= 'Z') ||
                                          (p >= '0' && p <= '9');
                        if (!prev_alnum && !(c == '-' && p == '-'))
                                return false;
                        continue;
                }
                return false;
        }
        return true;
}

static const char *entry_tag(json_t *entry)
{
        return json_string_value(
                json_object_get(json_object_get(entry, "annotations"), OCI_REF_NAME_ANNOTATION));
}

static int update_index(struct oci_layout *l, const char *tag, const struct oci_descriptor *desc,
                        struct kiln_error *err)
{
        _cleanup_close_ int lockfd = -1;
        _cleanup_free_ char *buf = NULL, *out = NULL, *path = NULL;
        _cleanup_json_ json_t *j = NULL;
        size_t len, outlen, i;
        json_t *arr, *entry;
        bool already = false;

        lockfd = lock_dir(l, err);
        if (lockfd < 0)
                return -1;
        if (oci_layout_read_index(l, &buf, &len, err) < 0)
                return -1;
        j = oci_json_parse(buf, len, "index.json", err);
        if (!j)
                return -1;
        arr = json_object_get(j, "manifests");
        if (!json_is_object(j) || !json_is_array(arr))
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid index.json in '%s': 'manifests' must be an array",
                                      l->dir);
        for (i = 0; i < json_array_size(arr);) {
                const char *t;
                entry = json_array_get(arr, i);
                t = entry_tag(entry);
                if (tag && t && !strcmp(t, tag)) {
                        json_array_remove(arr, i);
                        continue;
                }
                if (desc && !tag && !t &&
                    json_string_value(json_object_get(entry, "digest")) &&
                    !strcmp(json_string_value(json_object_get(entry, "digest")),
                            desc->digest.str))
                        already = true;
                i++;
        }
        if (desc && !already) {
                json_t *ann;
                entry = oci_descriptor_to_json(desc);
                if (!entry)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                ann = json_object_get(entry, "annotations");
                if (tag) {
                        if (!ann) {
                                ann = json_object();
                                json_object_set_new(entry, "annotations", ann);
                        }
                        json_object_set_new(ann, OCI_REF_NAME_ANNOTATION, json_string(tag));
                        json_object_set_new(entry, "annotations", oci_json_sorted_object(ann));
                } else if (ann) {
                        json_object_del(ann, OCI_REF_NAME_ANNOTATION);
                }
                json_array_append_new(arr, entry);
        }
        if (!json_object_get(j, "mediaType")) {
                /* keep key order: schemaVersion, mediaType, manifests, ... */
                json_t *n = json_object();
                const char *k;
                json_t *v;
                json_object_set(n, "schemaVersion", json_object_get(j, "schemaVersion"));
                json_object_set_new(n, "mediaType", json_string(OCI_MT_INDEX));
                json_object_foreach(j, k, v) if (strcmp(k, "schemaVersion"))
                        json_object_set(n, k, v);
                json_decref(j);
                j = n;
        }
        if (oci_json_dump(j, &out, &outlen, err) < 0)
                return -1;
        path = kiln_strdupf("%s/index.json", l->dir);
        if (!path)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        return kiln_write_file_atomic(path, out, outlen, 0644, err);
}

int oci_layout_tag(struct oci_layout *l, const char *tag, const struct oci_descriptor *desc,
                   struct kiln_error *err)
{
        if (tag && !ref_name_valid(tag))
                return kiln_error_set(err, KILN_E_INVALID, "invalid tag '%s'", tag);
        return update_index(l, tag, desc, err);
}

int oci_layout_untag(struct oci_layout *l, const char *tag, struct kiln_error *err)
{
        return update_index(l, tag, NULL, err);
}

int oci_layout_resolve(struct oci_layout *l, const char *tag, struct oci_index **ret_index,
                       const struct oci_descriptor **ret_desc, struct kiln_error *err)
{
        _cleanup_free_ char *buf = NULL;
        _cleanup_(oci_index_freep) struct oci_index *x = NULL;
        const struct oci_descriptor *found = NULL;
        size_t len;

        if (oci_layout_read_index(l, &buf, &len, err) < 0)
                return -1;
        if (oci_index_parse(buf, len, OCI_MT_INDEX, &x, err) < 0) {
                kiln_error_prefix(err, "layout '%s': index.json", l->dir);
                return -1;
        }
        if (!tag) {
                if (x->n_manifests != 1)
                        return kiln_error_set(err, x->n_manifests ? KILN_E_INVALID
                                                                  : KILN_E_NOT_FOUND,
                                              "layout '%s' holds %zu images; name one with oci:DIR:TAG",
                                              l->dir, x->n_manifests);
                found = &x->manifests[0];
        } else {
                bool by_digest = oci_digest_valid(tag);
                for (size_t i = 0; i < x->n_manifests && !found; i++) {
                        const struct oci_descriptor *d = &x->manifests[i];
                        const char *t = json_string_value(
                                json_object_get(d->annotations, OCI_REF_NAME_ANNOTATION));
                        if ((t && !strcmp(t, tag)) || (by_digest && !strcmp(d->digest.str, tag)))
                                found = d;
                }
                if (!found)
                        return kiln_error_set(err, KILN_E_NOT_FOUND,
                                              "tag '%s' not found in layout '%s'", tag, l->dir);
        }
        *ret_desc = found;
        *ret_index = steal_ptr(&x);
        return 0;
}
