/* Writing oci-archive and docker-archive places in one pass: every blob
 * goes straight into a tar in a temp file beside FILE as it arrives,
 * hashed on the way; oci-layout, index.json (and manifest.json for
 * docker) close the tar at commit, which then fsyncs and renames it over
 * FILE.  A blob that does not match its descriptor poisons the archive:
 * commit refuses and the temp file is removed. */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "archive_store.h"
#include "json.h"
#include "layout.h"
#include "ref.h"
#include "util.h"

struct written {
        char digest[OCI_DIGEST_MAX];
        char *doc; /* manifest or index bytes, kept for manifest.json */
        size_t len;
};

struct archive_writer {
        struct oci_store base;
        struct archive *a;
        int fd;
        char *tmp, *file, *tag;
        bool docker, failed, committed;
        struct written *w;
        size_t n_w;
        json_t *entries; /* index.json manifests */
        char buf[256 * 1024];
};

static int entry_header(struct archive_writer *aw, const char *name, bool dir, int64_t size,
                        struct kiln_error *err)
{
        struct archive_entry *e = archive_entry_new();
        int rc = 0;

        archive_entry_set_pathname(e, name);
        archive_entry_set_filetype(e, dir ? AE_IFDIR : AE_IFREG);
        archive_entry_set_perm(e, dir ? 0755 : 0644);
        archive_entry_set_size(e, dir ? 0 : size);
        archive_entry_set_mtime(e, 0, 0);
        if (archive_write_header(aw->a, e) != ARCHIVE_OK)
                rc = kiln_error_set(err, KILN_E_IO, "cannot write '%s' into '%s': %s", name,
                                    aw->file, archive_error_string(aw->a));
        archive_entry_free(e);
        return rc;
}

static int add_buffer(struct archive_writer *aw, const char *name, const void *buf, size_t len,
                      struct kiln_error *err)
{
        if (entry_header(aw, name, false, (int64_t)len, err) < 0)
                return -1;
        if (len && archive_write_data(aw->a, buf, len) != (la_ssize_t)len)
                return kiln_error_set(err, KILN_E_IO, "cannot write '%s' into '%s': %s", name,
                                      aw->file, archive_error_string(aw->a));
        return 0;
}

static struct written *find_written(struct archive_writer *aw, const char *digest)
{
        for (size_t i = 0; i < aw->n_w; i++)
                if (!strcmp(aw->w[i].digest, digest))
                        return &aw->w[i];
        return NULL;
}

static int remember(struct archive_writer *aw, const struct oci_digest *d, const char *doc,
                    size_t len, struct kiln_error *err)
{
        struct written *nw = realloc(aw->w, (aw->n_w + 1) * sizeof(*nw));

        if (!nw)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        aw->w = nw;
        memset(&aw->w[aw->n_w], 0, sizeof(aw->w[0]));
        snprintf(aw->w[aw->n_w].digest, sizeof(aw->w[0].digest), "%s", d->str);
        if (doc) {
                aw->w[aw->n_w].doc = malloc(len ? len : 1);
                if (!aw->w[aw->n_w].doc)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                memcpy(aw->w[aw->n_w].doc, doc, len);
                aw->w[aw->n_w].len = len;
        }
        aw->n_w++;
        return 0;
}

static int aw_get_manifest(struct oci_store *s, const char *ref, char **ret_buf, size_t *ret_len,
                           char **ret_mt, struct oci_digest *ret_digest, struct kiln_error *err)
{
        return kiln_error_set(err, KILN_E_UNSUPPORTED, "'%s' is opened for writing", s->name);
}

static struct oci_reader *aw_open_blob(struct oci_store *s, const struct oci_descriptor *d,
                                       struct kiln_error *err)
{
        kiln_error_set(err, KILN_E_UNSUPPORTED, "'%s' is opened for writing", s->name);
        return NULL;
}

static int aw_has_blob(struct oci_store *s, const struct oci_descriptor *d, bool *ret,
                       struct kiln_error *err)
{
        *ret = find_written((struct archive_writer *)s, d->digest.str) != NULL;
        return 0;
}

static int aw_put_blob(struct oci_store *s, const struct oci_descriptor *d, struct oci_reader *r,
                       struct kiln_error *err)
{
        struct archive_writer *aw = (struct archive_writer *)s;
        _cleanup_free_ char *name = kiln_strdupf("blobs/%s/%s", oci_digest_alg_name(d->digest.alg),
                                                 oci_digest_hex(&d->digest));
        struct oci_reader *v = NULL;
        ssize_t n;
        int64_t total = 0;
        int rc = -1;

        if (!name) {
                oci_reader_free(r);
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        if (aw->failed) {
                oci_reader_free(r);
                return kiln_error_set(err, KILN_E_INTERNAL, "'%s' failed earlier", s->name);
        }
        if (find_written(aw, d->digest.str)) {
                oci_reader_free(r);
                return 0;
        }
        /* the tar header holds the size: from here on a short or wrong stream
         * ruins the archive, so the whole archive is dropped on failure */
        aw->failed = true;
        v = oci_verified_reader_new(r, &d->digest, d->size, err);
        if (!v)
                return -1;
        if (entry_header(aw, name, false, d->size, err) < 0)
                goto out;
        while ((n = oci_reader_read(v, aw->buf, sizeof(aw->buf), err)) > 0) {
                if (archive_write_data(aw->a, aw->buf, (size_t)n) != n) {
                        kiln_error_set(err, KILN_E_IO, "cannot write '%s': %s", aw->file,
                                       archive_error_string(aw->a));
                        goto out;
                }
                total += n;
        }
        if (n < 0)
                goto out;
        if (remember(aw, &d->digest, NULL, 0, err) < 0)
                goto out;
        aw->failed = false;
        rc = 0;
out:
        (void)total;
        oci_reader_free(v);
        return rc;
}

static int aw_put_manifest(struct oci_store *s, const struct oci_descriptor *d, const char *buf,
                           size_t len, struct kiln_error *err)
{
        struct archive_writer *aw = (struct archive_writer *)s;
        struct oci_reader *r;
        struct written *w;

        if (find_written(aw, d->digest.str))
                return 0;
        r = oci_reader_from_buffer(buf, len, err);
        if (!r || aw_put_blob(s, d, r, err) < 0)
                return -1;
        w = find_written(aw, d->digest.str);
        w->doc = malloc(len ? len : 1);
        if (!w->doc)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        memcpy(w->doc, buf, len);
        w->len = len;
        return 0;
}

static int aw_tag(struct oci_store *s, const char *tag, const struct oci_descriptor *d,
                  struct kiln_error *err)
{
        struct archive_writer *aw = (struct archive_writer *)s;
        json_t *entry, *ann;
        struct oci_ref r = {0};
        _cleanup_free_ char *full = NULL;
        size_t i;

        if (!tag)
                tag = aw->tag;
        if (tag && aw->docker) {
                if (oci_ref_parse(tag, &r, err) < 0)
                        return -1;
                full = oci_ref_string(&r);
        } else if (tag && !oci_tag_valid(tag) && !oci_digest_valid(tag)) {
                return kiln_error_set(err, KILN_E_INVALID, "invalid tag '%s'", tag);
        }
        entry = oci_descriptor_to_json(d);
        ann = json_object_get(entry, "annotations");
        if (tag && !oci_digest_valid(tag)) {
                json_t *a = ann ? json_copy(ann) : json_object();
                if (full)
                        json_object_set_new(a, "io.containerd.image.name", json_string(full));
                json_object_set_new(a, OCI_REF_NAME_ANNOTATION,
                                    json_string(aw->docker ? (r.tag ? r.tag : "latest") : tag));
                json_object_set_new(entry, "annotations", oci_json_sorted_object(a));
                json_decref(a);
                /* a tag replaces an earlier entry with the same tag */
                for (i = 0; i < json_array_size(aw->entries);) {
                        const char *t = json_string_value(json_object_get(
                                json_object_get(json_array_get(aw->entries, i), "annotations"),
                                OCI_REF_NAME_ANNOTATION));
                        if (t && !strcmp(t, json_string_value(json_object_get(
                                                    json_object_get(entry, "annotations"),
                                                    OCI_REF_NAME_ANNOTATION))))
                                json_array_remove(aw->entries, i);
                        else
                                i++;
                }
        }
        json_array_append_new(aw->entries, entry);
        oci_ref_release(&r);
        return 0;
}

static char *blob_name(const struct oci_digest *d)
{
        return kiln_strdupf("blobs/%s/%s", oci_digest_alg_name(d->alg), oci_digest_hex(d));
}

/* manifest.json for `docker load`: one entry per image manifest in index.json. */
static int docker_manifest(struct archive_writer *aw, char **ret, size_t *ret_len,
                           struct kiln_error *err)
{
        _cleanup_json_ json_t *arr = json_array();
        size_t i;
        json_t *entry;

        json_array_foreach(aw->entries, i, entry)
        {
                const char *dg = json_string_value(json_object_get(entry, "digest"));
                const char *mt = json_string_value(json_object_get(entry, "mediaType"));
                const char *name = json_string_value(json_object_get(
                        json_object_get(entry, "annotations"), "io.containerd.image.name"));
                struct written *w = dg ? find_written(aw, dg) : NULL;
                struct oci_manifest *m = NULL;
                json_t *e, *tags, *layers;
                char *s;

                if (!w || !w->doc || oci_media_type_doc_kind(mt) != OCI_DOC_MANIFEST)
                        continue;
                if (oci_manifest_parse(w->doc, w->len, mt, &m, err) < 0)
                        return -1;
                e = json_object();
                s = blob_name(&m->config.digest);
                json_object_set_new(e, "Config", json_string(s ? s : ""));
                free(s);
                tags = json_array();
                if (name) {
                        /* docker shows docker.io names without the domain */
                        if (str_has_prefix(name, "docker.io/library/"))
                                name += strlen("docker.io/library/");
                        else if (str_has_prefix(name, "docker.io/"))
                                name += strlen("docker.io/");
                        json_array_append_new(tags, json_string(name));
                }
                json_object_set_new(e, "RepoTags", tags);
                layers = json_array();
                for (size_t k = 0; k < m->n_layers; k++) {
                        s = blob_name(&m->layers[k].digest);
                        json_array_append_new(layers, json_string(s ? s : ""));
                        free(s);
                }
                json_object_set_new(e, "Layers", layers);
                json_array_append_new(arr, e);
                oci_manifest_free(m);
        }
        return oci_json_dump(arr, ret, ret_len, err);
}

static int aw_commit(struct oci_store *s, struct kiln_error *err)
{
        static const char layout[] = "{\"imageLayoutVersion\":\"1.0.0\"}";
        struct archive_writer *aw = (struct archive_writer *)s;
        _cleanup_json_ json_t *index = json_object();
        _cleanup_free_ char *idx = NULL, *man = NULL, *dir = kiln_dirname(aw->file);
        size_t idxlen, manlen;

        if (aw->failed)
                return kiln_error_set(err, KILN_E_INTERNAL, "'%s' failed earlier", s->name);
        json_object_set_new(index, "schemaVersion", json_integer(2));
        json_object_set_new(index, "mediaType", json_string(OCI_MT_INDEX));
        json_object_set(index, "manifests", aw->entries);
        if (oci_json_dump(index, &idx, &idxlen, err) < 0 ||
            add_buffer(aw, "index.json", idx, idxlen, err) < 0 ||
            add_buffer(aw, "oci-layout", layout, strlen(layout), err) < 0)
                return -1;
        if (aw->docker && (docker_manifest(aw, &man, &manlen, err) < 0 ||
                           add_buffer(aw, "manifest.json", man, manlen, err) < 0))
                return -1;
        if (archive_write_close(aw->a) != ARCHIVE_OK)
                return kiln_error_set(err, KILN_E_IO, "cannot write '%s': %s", aw->tmp,
                                      archive_error_string(aw->a));
        if (fsync(aw->fd) < 0)
                return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot sync '%s'", aw->tmp);
        if (rename(aw->tmp, aw->file) < 0)
                return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot replace '%s'",
                                            aw->file);
        aw->committed = true;
        return dir ? kiln_fsync_dir(dir, err) : 0;
}

static void aw_free(struct oci_store *s)
{
        struct archive_writer *aw = (struct archive_writer *)s;

        if (aw->a)
                archive_write_free(aw->a);
        if (aw->fd >= 0)
                close(aw->fd);
        if (aw->tmp && !aw->committed)
                unlink(aw->tmp);
        for (size_t i = 0; i < aw->n_w; i++)
                free(aw->w[i].doc);
        free(aw->w);
        json_decref(aw->entries);
        free(aw->tmp);
        free(aw->file);
        free(aw->tag);
        free(s->name);
        free(s->default_ref);
        free(aw);
}

static const struct oci_store_ops writer_ops = {
        .kind = "archive",
        .get_manifest = aw_get_manifest,
        .open_blob = aw_open_blob,
        .has_blob = aw_has_blob,
        .put_blob = aw_put_blob,
        .put_manifest = aw_put_manifest,
        .tag = aw_tag,
        .commit = aw_commit,
        .free = aw_free,
};

struct oci_store *layer_archive_writer_new(bool docker, const char *file, const char *tag,
                                           struct kiln_error *err)
{
        struct archive_writer *aw = calloc(1, sizeof(*aw));

        if (!aw) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        aw->fd = -1;
        aw->base.ops = &writer_ops;
        aw->docker = docker;
        aw->file = strdup(file);
        aw->tag = tag ? strdup(tag) : NULL;
        aw->tmp = kiln_strdupf("%s.tmp-XXXXXX", file);
        aw->entries = json_array();
        aw->base.name = kiln_strdupf("%s:%s%s%s", docker ? "docker-archive" : "oci-archive", file,
                                     tag ? ":" : "", tag ? tag : "");
        if (!aw->file || !aw->tmp || !aw->entries || !aw->base.name || (tag && !aw->tag)) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto fail;
        }
        if (tag && docker) {
                struct oci_ref r;
                if (oci_ref_parse(tag, &r, err) < 0)
                        goto fail;
                oci_ref_release(&r);
        }
        aw->fd = mkstemp(aw->tmp);
        if (aw->fd < 0) {
                kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create '%s'", aw->tmp);
                free(aw->tmp);
                aw->tmp = NULL;
                goto fail;
        }
        fchmod(aw->fd, 0644);
        aw->a = archive_write_new();
        archive_write_set_format_pax_restricted(aw->a);
        archive_write_set_bytes_in_last_block(aw->a, 1);
        if (archive_write_open_fd(aw->a, aw->fd) != ARCHIVE_OK) {
                kiln_error_set(err, KILN_E_IO, "cannot write '%s': %s", aw->tmp,
                               archive_error_string(aw->a));
                goto fail;
        }
        if (entry_header(aw, "blobs/", true, 0, err) < 0 ||
            entry_header(aw, "blobs/sha256/", true, 0, err) < 0)
                goto fail;
        return &aw->base;
fail:
        aw_free(&aw->base);
        return NULL;
}
