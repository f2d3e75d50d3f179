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

static bool is_metadata(const char *name)
{
        return !strcmp(name, "index.json") || !strcmp(name, "oci-layout") ||
               !strcmp(name, "manifest.json") || !strcmp(name, "repositories") ||
               str_has_suffix(name, ".json") || str_has_suffix(name, "/VERSION");
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

static int extract(const char *file, const char *dir, struct kiln_error *err)
{
        struct link_pair *links = NULL;
        size_t n_links = 0;
        struct archive *a = archive_read_new();
        struct archive_entry *e;
        int r, rc = -1;
        char buf[65536];

        archive_read_support_format_tar(a);
        archive_read_support_filter_gzip(a);
        archive_read_support_filter_zstd(a);
        archive_read_support_filter_none(a);
        if (archive_read_open_filename(a, file, 65536) != ARCHIVE_OK) {
                kiln_error_set(err, errno == ENOENT ? KILN_E_NOT_FOUND : KILN_E_INVALID,
                               "cannot open archive '%s': %s", file, archive_error_string(a));
                goto out;
        }
        while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
                const char *name = archive_entry_pathname(e);
                _cleanup_free_ char *path = NULL, *pdir = NULL;
                mode_t type = archive_entry_filetype(e);
                int64_t cap = -1, total = 0;
                int fd;
                la_ssize_t n;

                while (name && name[0] == '.' && name[1] == '/')
                        name += 2;
                if (!name || !*name || !strcmp(name, "."))
                        continue;
                if (!safe_member_name(name)) {
                        kiln_error_set(err, KILN_E_INVALID,
                                       "invalid archive '%s': unsafe entry name '%s'", file,
                                       archive_entry_pathname(e));
                        goto out;
                }
                path = kiln_strdupf("%s/%s", dir, name);
                if (!path) {
                        kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        goto out;
                }
                if (str_has_suffix(path, "/"))
                        path[strlen(path) - 1] = '\0';
                if (type == AE_IFDIR) {
                        if (kiln_mkdir_p(path, 0755, err) < 0)
                                goto out;
                        continue;
                }
                if (type == AE_IFLNK || (type == AE_IFREG && archive_entry_hardlink(e))) {
                        /* docker and skopeo archives link layer.tar files to
                         * one copy; only links that stay inside are kept. */
                        const char *t = type == AE_IFLNK ? archive_entry_symlink(e)
                                                         : archive_entry_hardlink(e);
                        char *target = t ? (type == AE_IFLNK ? resolve_link(name, t)
                                                             : (safe_member_name(t) ? strdup(t) : NULL))
                                         : NULL;
                        struct link_pair *nl;
                        if (!target) {
                                kiln_error_set(err, KILN_E_INVALID,
                                               "invalid archive '%s': link '%s' points outside the archive",
                                               file, name);
                                goto out;
                        }
                        nl = realloc(links, (n_links + 1) * sizeof(*links));
                        if (!nl) {
                                free(target);
                                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                                goto out;
                        }
                        links = nl;
                        links[n_links].name = strdup(name);
                        links[n_links++].target = target;
                        continue;
                }
                if (type != AE_IFREG) {
                        kiln_error_set(err, KILN_E_INVALID,
                                       "invalid archive '%s': entry '%s' is not a regular file",
                                       file, name);
                        goto out;
                }
                if (is_metadata(name))
                        cap = (int64_t)oci_manifest_limit();
                if (cap >= 0 && archive_entry_size(e) > cap) {
                        kiln_error_set(err, KILN_E_LIMIT,
                                       "invalid archive '%s': entry '%s' of %lld bytes is larger than the limit of %lld bytes",
                                       file, name, (long long)archive_entry_size(e),
                                       (long long)cap);
                        goto out;
                }
                pdir = kiln_dirname(path);
                if (!pdir || kiln_mkdir_p(pdir, 0755, err) < 0)
                        goto out;
                fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
                if (fd < 0) {
                        kiln_error_set_errno(err, errno == EEXIST ? KILN_E_INVALID : KILN_E_IO,
                                             errno, "invalid archive '%s': entry '%s'", file,
                                             name);
                        goto out;
                }
                while ((n = archive_read_data(a, buf, sizeof(buf))) > 0) {
                        total += n;
                        if ((cap >= 0 && total > cap) || write(fd, buf, (size_t)n) != n) {
                                close(fd);
                                kiln_error_set(err, cap >= 0 && total > cap ? KILN_E_LIMIT : KILN_E_IO,
                                               "invalid archive '%s': cannot extract '%s'", file,
                                               name);
                                goto out;
                        }
                }
                close(fd);
                if (n < 0) {
                        kiln_error_set(err, KILN_E_INVALID, "invalid archive '%s': %s", file,
                                       archive_error_string(a));
                        goto out;
                }
        }
        if (r != ARCHIVE_EOF) {
                kiln_error_set(err, KILN_E_INVALID, "invalid archive '%s': %s", file,
                               archive_error_string(a));
                goto out;
        }
        for (size_t i = 0; i < n_links; i++) {
                _cleanup_free_ char *from = kiln_strdupf("%s/%s", dir, links[i].target);
                _cleanup_free_ char *to = kiln_strdupf("%s/%s", dir, links[i].name);
                _cleanup_free_ char *pdir = to ? kiln_dirname(to) : NULL;
                struct stat st;
                if (!from || !to || !pdir || !links[i].name) {
                        kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        goto out;
                }
                if (lstat(from, &st) < 0 || !S_ISREG(st.st_mode)) {
                        kiln_error_set(err, KILN_E_INVALID,
                                       "invalid archive '%s': link '%s' does not point to a file in the archive",
                                       file, links[i].name);
                        goto out;
                }
                if (kiln_mkdir_p(pdir, 0755, err) < 0)
                        goto out;
                if (link(from, to) < 0) {
                        kiln_error_set_errno(err, KILN_E_INVALID, errno,
                                             "invalid archive '%s': link '%s'", file,
                                             links[i].name);
                        goto out;
                }
        }
        rc = 0;
out:
        for (size_t i = 0; i < n_links; i++) {
                free(links[i].name);
                free(links[i].target);
        }
        free(links);
        archive_read_free(a);
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
