/* The few files of the base image kiln reads itself (recipe_image.h:
 * recipe_base_files): its apt keyrings and its dpkg database (the status
 * and the trigger interests).  The base
 * is pinned by digest, so what it trusts is as fixed as the base.  Its
 * layers are streamed top layer first, never unpacked: a file comes from
 * the highest layer that has it, and a whiteout or an opaque directory
 * hides what the layers below have at that path (image-spec layer.md,
 * "Whiteouts"). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io.h"
#include "path.h"
#include "recipe_image.h"
#include "recipe_internal.h"
#include "tar_read.h"
#include "util.h"

#define BASE_FILE_MAX (64u * 1024 * 1024)

static const char *const wanted[] = {
    "etc/apt/trusted.gpg",    "etc/apt/trusted.gpg.d/",  "etc/apt/keyrings/",
    "usr/share/keyrings/",    "etc/apt/sources.list.d/", "var/lib/dpkg/status",
    "var/lib/dpkg/triggers/",
};

/* CACHE/base/VERSION-HEX: a new version when wanted[] grows, so a
 * directory made before still holds all that is wanted */
#define BASE_FILES_VERSION "2"

static bool is_wanted(const char *p)
{
        for (size_t i = 0; i < ARRAY_SIZE(wanted); i++) {
                size_t n = strlen(wanted[i]);
                if (wanted[i][n - 1] == '/'
                        ? !strncmp(p, wanted[i], n) && p[n] && !strchr(p + n, '/')
                        : !strcmp(p, wanted[i]))
                        return true;
        }
        return false;
}

/* "./a//b/" -> "a/b" (layers/path.h); NULL for "..", which a layer must not hold */
static char *norm(const char *name)
{
        char *p = NULL;

        return layer_path_clean(name, 0, "entry", &p, NULL) == 0 ? p : NULL;
}

/* hidden holds paths a higher layer whited out (the path and all below) */
static bool is_hidden(json_t *hidden, const char *p)
{
        char buf[4096];

        snprintf(buf, sizeof(buf), "%s", p);
        for (;;) {
                char *slash;
                if (json_object_get(hidden, buf))
                        return true;
                slash = strrchr(buf, '/');
                if (!slash)
                        return false;
                *slash = '\0';
        }
}

/* A link in the base becomes a link inside root: an absolute target is
 * the image's path, never the host's. */
static int put_link(const char *root, const char *p, const char *target, struct kiln_error *err)
{
        _cleanup_free_ char *dest = kiln_strdupf("%s/%s", root, p);
        _cleanup_free_ char *dir = NULL, *joined = NULL, *clean = NULL, *rel = NULL;
        size_t depth = 0;

        if (!dest)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        dir = kiln_dirname(p);
        joined = target[0] == '/'
                     ? strdup(target)
                     : kiln_strdupf("%s/%s", dir && strcmp(dir, ".") ? dir : "", target);
        clean = joined ? norm(joined) : NULL;
        if (!clean)
                return 0; /* out of the tree: not followed */
        for (const char *s = p; (s = strchr(s, '/')); s++)
                depth++;
        rel = malloc(depth * 3 + strlen(clean) + 1);
        if (!rel)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        rel[0] = '\0';
        for (size_t i = 0; i < depth; i++)
                strcat(rel, "../");
        strcat(rel, clean);
        unlink(dest);
        if (symlink(rel, dest) < 0)
                return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create '%s'", dest);
        return 0;
}

static int put_file(struct layer_tar_reader *r, const char *root, const char *p,
                    struct archive_entry *e, struct kiln_error *err)
{
        _cleanup_free_ char *dest = kiln_strdupf("%s/%s", root, p);
        _cleanup_free_ char *dir = dest ? kiln_dirname(dest) : NULL;
        _cleanup_close_ int fd = -1;
        char buf[65536];
        ssize_t n;

        if (!dest || !dir)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (archive_entry_size(e) > BASE_FILE_MAX)
                return kiln_error_set(err, KILN_E_LIMIT,
                                      "'/%s' in the base is larger than %u bytes", p,
                                      BASE_FILE_MAX);
        if (kiln_mkdir_p(dir, 0755, err) < 0)
                return -1;
        if (archive_entry_filetype(e) == AE_IFLNK)
                return put_link(root, p, archive_entry_symlink(e), err);
        if (archive_entry_filetype(e) != AE_IFREG || archive_entry_hardlink(e))
                return 0;
        fd = open(dest, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0)
                return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create '%s'", dest);
        while ((n = layer_tar_reader_data(r, buf, sizeof(buf), err)) > 0)
                if (write(fd, buf, (size_t)n) != n)
                        return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot write '%s'",
                                                    dest);
        return n < 0 ? -1 : 0;
}

/* One layer: wanted files not decided by a higher layer; its whiteouts
 * go to hide (applied once the layer is read: they hide lower layers). */
static int scan_layer(struct oci_store *st, const struct oci_descriptor *d, const char *root,
                      json_t *taken, json_t *hidden, json_t *hide, struct kiln_error *err)
{
        struct layer_tar_reader *r =
            layer_tar_reader_new(st->ops->open_blob(st, d, err), d->media_type, d->digest.str, err);
        struct archive_entry *e;
        int rc;

        if (!r)
                return -1;
        while ((rc = layer_tar_reader_next(r, &e, err)) == 1) {
                _cleanup_free_ char *p = norm(archive_entry_pathname(e));
                const char *base;
                if (!p || !*p)
                        continue;
                base = strrchr(p, '/') ? strrchr(p, '/') + 1 : p;
                if (!strcmp(base, ".wh..wh..opq")) {
                        p[base - p ? (size_t)(base - p - 1) : 0] = '\0';
                        json_object_set_new(hide, p, json_true());
                        continue;
                }
                if (!strncmp(base, ".wh.", 4)) {
                        _cleanup_free_ char *victim =
                            kiln_strdupf("%.*s%s", (int)(base - p), p, base + 4);
                        if (victim)
                                json_object_set_new(hide, victim, json_true());
                        continue;
                }
                if (!is_wanted(p) || json_object_get(taken, p) || is_hidden(hidden, p))
                        continue;
                json_object_set_new(taken, p, json_true());
                if (put_file(r, root, p, e, err) < 0) {
                        rc = -1;
                        break;
                }
        }
        if (rc == 0)
                rc = layer_tar_reader_finish(r, err);
        layer_tar_reader_free(r);
        return rc;
}

int recipe_base_files(struct oci_store *st, const struct oci_manifest *m, const char *digest,
                      const char *cache_dir, char **ret_dir, struct kiln_error *err)
{
        const char *hex = strchr(digest, ':') ? strchr(digest, ':') + 1 : digest;
        _cleanup_free_ char *dir =
            kiln_strdupf("%s/base/" BASE_FILES_VERSION "-%s", cache_dir, hex);
        _cleanup_free_ char *tmp =
            kiln_strdupf("%s/base/tmp-" BASE_FILES_VERSION "-%s-XXXXXX", cache_dir, hex);
        _cleanup_free_ char *parent = kiln_strdupf("%s/base", cache_dir);
        json_t *taken = json_object(), *hidden = json_object();
        int rc = -1;

        if (!dir || !tmp || !parent || !taken || !hidden) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto out;
        }
        if (access(dir, F_OK) == 0) {
                *ret_dir = steal_ptr(&dir);
                rc = 0;
                goto out;
        }
        if (kiln_mkdir_p(parent, 0755, err) < 0)
                goto out;
        if (!mkdtemp(tmp)) {
                kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create '%s'", tmp);
                goto out;
        }
        for (size_t i = m->n_layers; i-- > 0;) {
                json_t *hide = json_object();
                const char *k;
                json_t *v;
                if (!hide || scan_layer(st, &m->layers[i], tmp, taken, hidden, hide, err) < 0) {
                        json_decref(hide);
                        kiln_rm_rf(tmp);
                        kiln_error_prefix(err, "base layer %s", m->layers[i].digest.str);
                        goto out;
                }
                json_object_foreach(hide, k, v) json_object_set(hidden, k, v);
                json_decref(hide);
        }
        /* complete or absent: a concurrent build may have won the race */
        if (rename(tmp, dir) < 0) {
                kiln_rm_rf(tmp);
                if (access(dir, F_OK) != 0) {
                        kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create '%s'", dir);
                        goto out;
                }
        }
        *ret_dir = steal_ptr(&dir);
        rc = 0;
out:
        json_decref(taken);
        json_decref(hidden);
        return rc;
}
