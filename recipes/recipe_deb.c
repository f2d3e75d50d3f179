/* Unpacking a .deb without dpkg: deb(5) is an ar archive holding
 * debian-binary, control.tar.* and data.tar.*; libarchive reads the ar
 * and, through a callback reader, the tar inside it.  Maintainer scripts
 * are never run: what they would do is the recipe's business. */
#include <archive.h>
#include <archive_entry.h>
#include <openssl/evp.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io.h"
#include "parallel.h"
#include "path.h"
#include "recipe_internal.h"
#include "stage.h"
#include "util.h"

struct inner {
        struct archive *outer;
        char buf[65536];
};

static la_ssize_t inner_read(struct archive *a, void *ctx, const void **buff)
{
        struct inner *in = ctx;
        la_ssize_t n = archive_read_data(in->outer, in->buf, sizeof(in->buf));

        (void)a;
        *buff = in->buf;
        if (n < 0)
                archive_set_error(a, EIO, "%s", archive_error_string(in->outer));
        return n;
}

static struct archive *open_inner(struct inner *in, const char *deb, const char *member,
                                  struct kiln_error *err)
{
        struct archive *a = archive_read_new();

        if (!a) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        archive_read_support_filter_all(a);
        archive_read_support_format_tar(a);
        if (archive_read_open(a, in, NULL, inner_read, NULL) != ARCHIVE_OK) {
                kiln_error_set(err, KILN_E_INVALID, "invalid package '%s': cannot read %s: %s",
                               deb, member, archive_error_string(a));
                archive_read_free(a);
                return NULL;
        }
        return a;
}

/* A data.tar decompressed ahead (recipe_deb_unpack_all), read as a tar. */
static struct archive *open_plain_tar(const char *file, const char *deb, struct kiln_error *err)
{
        struct archive *a = archive_read_new();

        if (!a) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        archive_read_support_format_tar(a);
        if (archive_read_open_filename(a, file, 1 << 20) != ARCHIVE_OK) {
                kiln_error_set(err, KILN_E_INVALID, "invalid package '%s': cannot read data.tar: %s",
                               deb, archive_error_string(a));
                archive_read_free(a);
                return NULL;
        }
        return a;
}

/* An entry's path in the staging tree, cleaned (layers/path.h:
 * "./usr/bin/x" -> "usr/bin/x", '..' refused as what); with merged /usr,
 * "bin/x" -> "usr/bin/x" so the layer does not replace the base's /bin ->
 * usr/bin link with a directory (Ubuntu 22.04 and Debian 12 are
 * merged-/usr). */
static int entry_path(const char *deb, const char *name, const char *what, bool merged_usr,
                      char **ret, struct kiln_error *err)
{
        static const char *const merged[] = {"bin", "sbin", "lib", "lib32", "lib64", "libx32"};
        _cleanup_free_ char *clean = NULL;

        if (layer_path_clean(name, 0, what, &clean, err) < 0) {
                kiln_error_prefix(err, "invalid package '%s'", deb);
                return -1;
        }
        if (merged_usr)
                for (size_t i = 0; i < ARRAY_SIZE(merged); i++) {
                        size_t n = strlen(merged[i]);
                        if (!strncmp(clean, merged[i], n) &&
                            (clean[n] == '/' || clean[n] == '\0')) {
                                *ret = kiln_strdupf("usr/%s", clean);
                                return *ret ? 0 : kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        }
                }
        *ret = steal_ptr(&clean);
        return 0;
}

/* Refuses to write through a symlink the package itself placed earlier. */
static int parents_ok(const char *root, const char *rel, struct kiln_error *err)
{
        _cleanup_free_ char *path = kiln_strdupf("%s/%s", root, rel);
        size_t rl = strlen(root) + 1;
        struct stat st;

        if (!path)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        for (char *p = path + rl; (p = strchr(p, '/')); p++) {
                *p = '\0';
                if (lstat(path, &st) == 0) {
                        if (S_ISLNK(st.st_mode))
                                return kiln_error_set(err, KILN_E_INVALID,
                                                      "refusing to write '%s' through the link '%s'",
                                                      rel, path + rl);
                } else if (errno == ENOENT) {
                        /* chmod: the umask plays no part in what the layer says */
                        if ((mkdir(path, 0755) < 0 && errno != EEXIST) || chmod(path, 0755) < 0)
                                return kiln_error_set_errno(err, KILN_E_IO, errno,
                                                            "cannot create '%s'", path);
                } else {
                        return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot stat '%s'",
                                                    path);
                }
                *p = '/';
        }
        return 0;
}

static int write_data(struct archive *a, struct archive_entry *e, const char *deb,
                      const char *root, bool merged_usr, struct kiln_error *err)
{
        _cleanup_free_ char *rel = NULL;
        _cleanup_free_ char *full = NULL;
        mode_t perm = archive_entry_perm(e) & 07777;
        unsigned type = archive_entry_filetype(e);

        if (entry_path(deb, archive_entry_pathname(e), "unsafe path", merged_usr, &rel, err) < 0)
                return -1;
        if (!*rel)
                return 0; /* "./" */
        if (parents_ok(root, rel, err) < 0)
                return -1;
        full = kiln_strdupf("%s/%s", root, rel);
        if (!full)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (type == AE_IFDIR) {
                struct stat st;
                if (lstat(full, &st) == 0 && S_ISDIR(st.st_mode))
                        return chmod(full, perm | 0700) < 0
                                       ? kiln_error_set_errno(err, KILN_E_IO, errno,
                                                              "cannot chmod '%s'", full)
                                       : 0;
                if (mkdir(full, perm | 0700) < 0 || chmod(full, perm | 0700) < 0)
                        return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create '%s'",
                                                    full);
                return 0;
        }
        unlink(full);
        if (type == AE_IFLNK) {
                if (symlink(archive_entry_symlink(e), full) < 0)
                        return kiln_error_set_errno(err, KILN_E_IO, errno,
                                                    "cannot create link '%s'", full);
                return 0;
        }
        if (archive_entry_hardlink(e)) {
                _cleanup_free_ char *trel = NULL;
                _cleanup_free_ char *target = NULL;
                if (entry_path(deb, archive_entry_hardlink(e), "unsafe link target", merged_usr,
                               &trel, err) < 0)
                        return -1;
                target = kiln_strdupf("%s/%s", root, trel);
                if (!target || link(target, full) < 0)
                        return kiln_error_set_errno(err, KILN_E_IO, errno,
                                                    "cannot create hard link '%s'", full);
                return 0;
        }
        if (type != AE_IFREG)
                return kiln_error_set(err, KILN_E_UNSUPPORTED,
                                      "unsupported entry '%s' in package '%s': devices and fifos are not staged",
                                      rel, deb);
        {
                _cleanup_close_ int fd = open(full, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC |
                                                            O_NOFOLLOW,
                                              0600);
                char buf[65536];
                la_ssize_t n;

                if (fd < 0)
                        return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create '%s'",
                                                    full);
                while ((n = archive_read_data(a, buf, sizeof(buf))) > 0) {
                        const char *p = buf;
                        while (n > 0) {
                                ssize_t w = write(fd, p, (size_t)n);
                                if (w < 0)
                                        return kiln_error_set_errno(err, KILN_E_IO, errno,
                                                                    "cannot write '%s'", full);
                                p += w;
                                n -= w;
                        }
                }
                if (n < 0)
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "invalid package '%s': cannot read '%s': %s", deb,
                                              rel, archive_error_string(a));
                if (fchmod(fd, perm) < 0)
                        return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot chmod '%s'",
                                                    full);
        }
        return 0;
}

static int read_small(struct archive *a, size_t cap, char **ret, size_t *ret_len)
{
        size_t len = 0;
        char *buf = malloc(cap + 1);
        la_ssize_t n;

        if (!buf)
                return -1;
        while ((n = archive_read_data(a, buf + len, cap - len)) > 0) {
                len += (size_t)n;
                if (len == cap) {
                        free(buf);
                        return -1;
                }
        }
        if (n < 0) {
                free(buf);
                return -1;
        }
        buf[len] = '\0';
        *ret = buf;
        *ret_len = len;
        return 0;
}

/* control.tar: the control file (and md5sums, which distroless keeps too). */
static int read_control(struct archive *a, const char *deb, char **ret_control,
                        char **ret_md5sums, struct kiln_error *err)
{
        struct archive_entry *e;
        int r;

        while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
                const char *name = archive_entry_pathname(e);
                char **dst = NULL;
                size_t len;

                while (name[0] == '.' && name[1] == '/')
                        name += 2;
                if (!strcmp(name, "control"))
                        dst = ret_control;
                else if (!strcmp(name, "md5sums"))
                        dst = ret_md5sums;
                if (!dst)
                        continue;
                free(*dst);
                *dst = NULL;
                if (read_small(a, RECIPE_DEB_CONTROL_MAX, dst, &len) < 0)
                        return kiln_error_set(err, KILN_E_LIMIT,
                                              "invalid package '%s': unreadable or oversized %s",
                                              deb, name);
        }
        if (r != ARCHIVE_EOF)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid package '%s': control archive: %s", deb,
                                      archive_error_string(a));
        if (!*ret_control)
                return kiln_error_set(err, KILN_E_INVALID, "invalid package '%s': no control file",
                                      deb);
        return 0;
}

char *recipe_control_field(const char *control, const char *field)
{
        size_t n = strlen(field);

        for (const char *p = control; p && *p;) {
                if (!strncmp(p, field, n) && p[n] == ':') {
                        const char *v = p + n + 1, *end;
                        while (*v == ' ' || *v == '\t')
                                v++;
                        end = strchr(v, '\n');
                        if (!end)
                                end = v + strlen(v);
                        while (end > v && (end[-1] == ' ' || end[-1] == '\r'))
                                end--;
                        return strndup(v, (size_t)(end - v));
                }
                p = strchr(p, '\n');
                if (p)
                        p++;
        }
        return NULL;
}

int recipe_tar_extract(struct archive *a, const char *what, const char *root, bool merged_usr,
                       struct kiln_error *err)
{
        struct archive_entry *e;
        int r;

        while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK)
                if (write_data(a, e, what, root, merged_usr, err) < 0)
                        return -1;
        if (r != ARCHIVE_EOF)
                return kiln_error_set(err, KILN_E_INVALID, "cannot read '%s': %s", what,
                                      archive_error_string(a));
        return 0;
}

/* Opens the .deb at path as an ar archive (deb(5)) with the reader of its
 * members; *ret_in is freed with free(), its outer with archive_read_free. */
static struct inner *deb_open(const char *path, struct kiln_error *err)
{
        struct inner *in = calloc(1, sizeof(*in));

        if (!in || !(in->outer = archive_read_new())) {
                free(in);
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        archive_read_support_format_ar(in->outer);
        if (archive_read_open_filename(in->outer, path, 65536) != ARCHIVE_OK) {
                kiln_error_set(err, KILN_E_INVALID, "invalid package '%s': %s", path,
                               archive_error_string(in->outer));
                archive_read_free(in->outer);
                free(in);
                return NULL;
        }
        return in;
}

/* Reads the .deb at path (deb(5): an ar archive of debian-binary,
 * control.tar.* and data.tar.*): its control file and md5sums and, when
 * root is not NULL, data.tar.* unpacked under root.  Without root it stops
 * after control.tar: the data is not needed to name the package. */
static int deb_read(const char *path, const char *root, const char *data_tar, bool merged_usr,
                    char **ret_control, char **ret_md5sums, struct kiln_error *err)
{
        struct inner *in = deb_open(path, err);
        struct archive *outer = in ? in->outer : NULL;
        struct archive_entry *e;
        char *control = NULL, *md5sums = NULL;
        bool have_data = false;
        int rc = -1, r;

        if (!in)
                goto out;
        while ((root || !control) && (r = archive_read_next_header(outer, &e)) == ARCHIVE_OK) {
                const char *name = archive_entry_pathname(e);
                struct archive *a;
                int ir;

                if (str_has_prefix(name, "control.tar")) {
                        a = open_inner(in, path, name, err);
                        if (!a)
                                goto out;
                        r = read_control(a, path, &control, &md5sums, err);
                        archive_read_free(a);
                        if (r < 0)
                                goto out;
                } else if (root && str_has_prefix(name, "data.tar")) {
                        if (!control) {
                                /* deb(5): control.tar comes before data.tar */
                                kiln_error_set(err, KILN_E_INVALID,
                                               "invalid package '%s': data before control", path);
                                goto out;
                        }
                        a = data_tar ? open_plain_tar(data_tar, path, err)
                                     : open_inner(in, path, name, err);
                        if (!a)
                                goto out;
                        ir = recipe_tar_extract(a, path, root, merged_usr, err);
                        archive_read_free(a);
                        if (ir < 0)
                                goto out;
                        have_data = true;
                }
        }
        if (root && r != ARCHIVE_EOF) {
                kiln_error_set(err, KILN_E_INVALID, "invalid package '%s': %s", path,
                               archive_error_string(outer));
                goto out;
        }
        if (!control || (root && !have_data)) {
                kiln_error_set(err, KILN_E_INVALID,
                               "invalid package '%s': expected control.tar and data.tar members",
                               path);
                goto out;
        }
        *ret_control = steal_ptr(&control);
        *ret_md5sums = steal_ptr(&md5sums);
        rc = 0;
out:
        if (outer)
                archive_read_free(outer);
        free(in);
        free(control);
        free(md5sums);
        return rc;
}

int recipe_deb_inventory(const char *path, const char *sha256, const char *url, json_t *packages,
                         struct kiln_error *err)
{
        _cleanup_free_ char *control = NULL, *md5sums = NULL;
        _cleanup_free_ char *pkg = NULL, *ver = NULL, *arch = NULL;

        if (recipe_verify_sha256(path, sha256, err) < 0 ||
            deb_read(path, NULL, NULL, false, &control, &md5sums, err) < 0)
                return -1;
        pkg = recipe_control_field(control, "Package");
        ver = recipe_control_field(control, "Version");
        arch = recipe_control_field(control, "Architecture");
        if (!pkg || !*pkg || !ver || !*ver || !arch || !*arch)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid package '%s': no Package, Version or Architecture",
                                      path);
        return recipe_inventory_add(packages,
                                    &(struct recipe_inventory_item){.type = "deb", .name = pkg,
                                                                    .version = ver, .arch = arch,
                                                                    .sha256 = sha256, .file = path,
                                                                    .url = url},
                                    err);
}

int recipe_deb_unpack(const char *path, const char *sha256, const char *root,
                           bool merged_usr, char **ret_package, struct kiln_error *err)
{
        return recipe_deb_unpack_as(path, sha256, root, merged_usr, true, ret_package, err);
}

static int deb_unpack(const char *path, const char *sha256, const char *data_tar,
                      const char *root, bool merged_usr, bool status_d, char **ret_package,
                      struct kiln_error *err)
{
        char *control = NULL, *md5sums = NULL, *pkg = NULL;
        int rc = -1;

        if (sha256 && recipe_verify_sha256(path, sha256, err) < 0)
                return -1;
        if (deb_read(path, root, data_tar, merged_usr, &control, &md5sums, err) < 0)
                goto out;
        pkg = recipe_control_field(control, "Package");
        if (!pkg || !*pkg || strchr(pkg, '/') || pkg[0] == '.') {
                kiln_error_set(err, KILN_E_INVALID, "invalid package '%s': bad Package field",
                               path);
                goto out;
        }
        if (status_d) {
                /* distroless: /var/lib/dpkg/status.d/NAME holds the stanza */
                _cleanup_free_ char *dir = kiln_strdupf("%s/var/lib/dpkg/status.d", root);
                _cleanup_free_ char *f = kiln_strdupf("%s/%s", dir ? dir : "", pkg);
                _cleanup_free_ char *m = kiln_strdupf("%s/%s.md5sums", dir ? dir : "", pkg);
                size_t cl = strlen(control);
                if (!dir || !f || !m) {
                        kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        goto out;
                }
                if (parents_ok(root, "var/lib/dpkg/status.d/x", err) < 0 ||
                    kiln_mkdir_p(dir, 0755, err) < 0)
                        goto out;
                /* a stanza ends with its last field line; one newline */
                while (cl > 0 && control[cl - 1] == '\n')
                        cl--;
                control[cl] = '\n';
                if (kiln_write_file_atomic(f, control, cl + 1, 0644, err) < 0)
                        goto out;
                if (md5sums && kiln_write_file_atomic(m, md5sums, strlen(md5sums), 0644, err) < 0)
                        goto out;
        }
        if (ret_package) {
                *ret_package = pkg;
                pkg = NULL;
        }
        rc = 0;
out:
        free(control);
        free(md5sums);
        free(pkg);
        if (rc < 0)
                kiln_error_prefix(err, "unpack '%s'", path);
        return rc;
}

int recipe_deb_unpack_as(const char *path, const char *sha256, const char *root, bool merged_usr,
                         bool status_d, char **ret_package, struct kiln_error *err)
{
        return deb_unpack(path, sha256, NULL, root, merged_usr, status_d, ret_package, err);
}

static int write_full(int fd, const void *buf, size_t len)
{
        const char *p = buf;

        while (len > 0) {
                ssize_t w = write(fd, p, len);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        return -1;
                p += w;
                len -= (size_t)w;
        }
        return 0;
}

/* The data.tar of the .deb at path, decompressed into the new file out (a
 * plain tar, checked by recipe_tar_extract later as any data.tar). */
static int deb_decompress_data(const char *path, const char *out, struct kiln_error *err)
{
        struct inner *in = deb_open(path, err);
        struct archive_entry *e;
        struct archive *a = NULL;
        int fd = -1, rc = -1, r;

        if (!in)
                return -1;
        while ((r = archive_read_next_header(in->outer, &e)) == ARCHIVE_OK)
                if (str_has_prefix(archive_entry_pathname(e), "data.tar"))
                        break;
        if (r != ARCHIVE_OK) {
                kiln_error_set(err, KILN_E_INVALID,
                               "invalid package '%s': expected control.tar and data.tar members",
                               path);
                goto out;
        }
        a = archive_read_new();
        if (!a) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto out;
        }
        archive_read_support_filter_all(a);
        archive_read_support_format_raw(a);
        if (archive_read_open(a, in, NULL, inner_read, NULL) != ARCHIVE_OK ||
            archive_read_next_header(a, &e) != ARCHIVE_OK) {
                kiln_error_set(err, KILN_E_INVALID, "invalid package '%s': cannot read %s: %s",
                               path, "data.tar", archive_error_string(a));
                goto out;
        }
        fd = open(out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0) {
                kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create '%s'", out);
                goto out;
        }
        for (;;) {
                const void *buf;
                size_t len;
                la_int64_t off;
                r = archive_read_data_block(a, &buf, &len, &off);
                if (r == ARCHIVE_EOF)
                        break;
                if (r != ARCHIVE_OK) {
                        kiln_error_set(err, KILN_E_INVALID, "invalid package '%s': %s", path,
                                       archive_error_string(a));
                        goto out;
                }
                if (write_full(fd, buf, len) < 0) {
                        kiln_error_set_errno(err, KILN_E_IO, errno, "cannot write '%s'", out);
                        goto out;
                }
        }
        rc = 0;
out:
        if (fd >= 0)
                close(fd);
        if (a)
                archive_read_free(a);
        archive_read_free(in->outer);
        free(in);
        return rc;
}

static int deb_meta_read(const char *path, const char *data_tar, struct recipe_deb_meta *ret,
                         struct kiln_error *err);
static void memo_put(const char *path, struct recipe_deb_meta *m);

struct deb_batch {
        const char *const *paths, *const *shas;
        const char *tmp;
        size_t first;
        bool keep_meta; /* for the dpkg database (recipe_deb_meta_read) */
};

static int deb_prepare(void *ctx, size_t i, struct kiln_error *err)
{
        struct deb_batch *b = ctx;
        size_t k = b->first + i;
        _cleanup_free_ char *out = kiln_strdupf("%s/%zu.tar", b->tmp, k);

        if (!out)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (recipe_verify_sha256(b->paths[k], b->shas[k], err) < 0 ||
            deb_decompress_data(b->paths[k], out, err) < 0)
                return -1;
        if (b->keep_meta) {
                struct recipe_deb_meta m = {0};
                if (deb_meta_read(b->paths[k], out, &m, err) < 0)
                        return -1;
                memo_put(b->paths[k], &m);
        }
        return 0;
}


int recipe_deb_unpack_all(const char *const *paths, const char *const *shas, size_t n,
                          const char *root, bool merged_usr, bool status_d,
                          struct kiln_error *err)
{
        unsigned jobs = kiln_parallel_cpus(8);
        _cleanup_free_ char *tmp = kiln_strdupf("%s.debs-XXXXXX", root);
        int rc = 0;

        if (jobs <= 1 || n <= 1) {
                for (size_t i = 0; i < n; i++)
                        if (deb_unpack(paths[i], shas[i], NULL, root, merged_usr, status_d, NULL,
                                       err) < 0)
                                return -1;
                return 0;
        }
        if (!tmp)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (!mkdtemp(tmp))
                return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create '%s'", tmp);
        /* in batches, so the decompressed tars on disk stay a few packages */
        for (size_t first = 0; rc == 0 && first < n; first += 2 * jobs) {
                size_t m = n - first < 2 * jobs ? n - first : 2 * jobs;
                struct deb_batch b = {.paths = paths, .shas = shas, .tmp = tmp, .first = first,
                                      .keep_meta = !status_d};
                rc = kiln_parallel_for(m, jobs, deb_prepare, &b, err);
                for (size_t k = first; rc == 0 && k < first + m; k++) {
                        _cleanup_free_ char *t = kiln_strdupf("%s/%zu.tar", tmp, k);
                        if (!t)
                                rc = kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        else
                                rc = deb_unpack(paths[k], NULL, t, root, merged_usr, status_d,
                                                NULL, err);
                        if (t)
                                unlink(t);
                }
        }
        kiln_rm_rf(tmp);
        return rc;
}


/* ---- apt repositories: Packages index -> .deb files ---- */

/* Reads a Packages index, plain or compressed (libarchive's raw format
 * behind every filter). */
static int read_index(const char *path, char **ret, size_t *ret_len, struct kiln_error *err)
{
        struct archive *a = archive_read_new();
        struct archive_entry *e;
        size_t cap = 1 << 20, len = 0;
        char *buf = NULL;
        la_ssize_t n;
        int rc = -1;

        if (!a)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        archive_read_support_filter_all(a);
        archive_read_support_format_raw(a);
        if (archive_read_open_filename(a, path, 65536) != ARCHIVE_OK ||
            archive_read_next_header(a, &e) != ARCHIVE_OK) {
                /* an empty file is a valid (empty) index */
                struct stat st;
                if (stat(path, &st) == 0 && st.st_size == 0) {
                        archive_read_free(a);
                        *ret = strdup("");
                        *ret_len = 0;
                        return *ret ? 0 : kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                }
                kiln_error_set(err, errno == ENOENT ? KILN_E_NOT_FOUND : KILN_E_INVALID,
                               "cannot read package index '%s': %s", path,
                               archive_error_string(a));
                goto out;
        }
        buf = malloc(cap + 1);
        if (!buf) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto out;
        }
        for (;;) {
                if (len == cap) {
                        char *nb;
                        if (cap >= RECIPE_APT_INDEX_MAX) {
                                kiln_error_set(err, KILN_E_LIMIT,
                                               "package index '%s' is larger than %u bytes", path,
                                               RECIPE_APT_INDEX_MAX);
                                goto out;
                        }
                        cap *= 2;
                        nb = realloc(buf, cap + 1);
                        if (!nb) {
                                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                                goto out;
                        }
                        buf = nb;
                }
                n = archive_read_data(a, buf + len, cap - len);
                if (n < 0) {
                        kiln_error_set(err, KILN_E_INVALID, "cannot read package index '%s': %s",
                                       path, archive_error_string(a));
                        goto out;
                }
                if (n == 0)
                        break;
                len += (size_t)n;
        }
        buf[len] = '\0';
        *ret = buf;
        *ret_len = len;
        buf = NULL;
        rc = 0;
out:
        free(buf);
        archive_read_free(a);
        return rc;
}

/* The "\n\n" after the stanza at p, or its terminating NUL.  A loop, not
 * strstr: a real index is 80 MB and strstr (under ASan at least) measures
 * the whole rest of it on every call. */
static const char *stanza_end(const char *p)
{
        for (; *p; p++)
                if (p[0] == '\n' && p[1] == '\n')
                        return p;
        return p;
}

/* Whether the stanza [p, end) has a line "Package: NAME" (cheap: most do not). */
static bool stanza_names(const char *p, const char *end, const char *name)
{
        size_t n = strlen(name);

        for (const char *l = p; l < end;) {
                const char *nl = memchr(l, '\n', (size_t)(end - l));
                if (!strncmp(l, "Package:", 8)) {
                        const char *v = l + 8;
                        while (*v == ' ' || *v == '\t')
                                v++;
                        return !strncmp(v, name, n) && (v[n] == '\n' || v[n] == ' ' ||
                                                         v[n] == '\r' || v[n] == '\0');
                }
                l = nl ? nl + 1 : end;
        }
        return false;
}

/* recipe_apt_find(), and the stanza itself when ret_stanza is not NULL. */
static int apt_find(const char *index_buf, const char *spec, const char *arch,
                    char **ret_filename, char **ret_sha256, char **ret_stanza,
                    struct kiln_error *err)
{
        const char *p = index_buf;
        /* "NAME=VERSION": that version (what the resolver chose) */
        _cleanup_free_ char *package = strdup(spec);
        char *want = package ? strchr(package, '=') : NULL;

        if (!package)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (want)
                *want++ = '\0';

        while (p && *p) {
                const char *start = p, *end = stanza_end(p);
                _cleanup_free_ char *stanza = NULL;
                _cleanup_free_ char *name = NULL, *a = NULL;

                p = *end ? end + 2 : NULL;
                if (!stanza_names(start, end, package))
                        continue;
                /* the stanza with its last newline */
                stanza = strndup(start, (size_t)(end - start) + (*end ? 1 : 0));
                if (!stanza)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                name = recipe_control_field(stanza, "Package");
                if (!name || strcmp(name, package))
                        continue;
                a = recipe_control_field(stanza, "Architecture");
                if (arch && a && strcmp(a, arch) && strcmp(a, "all"))
                        continue;
                if (want) {
                        _cleanup_free_ char *v = recipe_control_field(stanza, "Version");
                        if (!v || strcmp(v, want))
                                continue;
                }
                *ret_filename = recipe_control_field(stanza, "Filename");
                *ret_sha256 = recipe_control_field(stanza, "SHA256");
                if (!*ret_filename || !*ret_sha256) {
                        free(*ret_filename);
                        free(*ret_sha256);
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "package '%s' in the index has no Filename or SHA256",
                                              package);
                }
                if (ret_stanza)
                        *ret_stanza = steal_ptr(&stanza);
                return 0;
        }
        return kiln_error_set(err, KILN_E_NOT_FOUND, "no package '%s'%s%s%s%s%s in the index",
                              package, want ? " " : "", want ? want : "", arch ? " for '" : "",
                              arch ? arch : "", arch ? "'" : "");
}

int recipe_apt_find(const char *index_buf, const char *package, const char *arch,
                    char **ret_filename, char **ret_sha256, struct kiln_error *err)
{
        return apt_find(index_buf, package, arch, ret_filename, ret_sha256, NULL, err);
}

/* The stanzas of every index, one after the other. */
int recipe_apt_read_indexes(const char *const *paths, size_t n, char **ret, struct kiln_error *err)
{
        char *all = strdup("");
        size_t total = 0;

        for (size_t i = 0; all && i < n; i++) {
                _cleanup_free_ char *buf = NULL;
                size_t len;
                char *nb;
                if (read_index(paths[i], &buf, &len, err) < 0) {
                        free(all);
                        return -1;
                }
                nb = realloc(all, total + len + 3);
                if (!nb)
                        break;
                all = nb;
                memcpy(all + total, buf, len);
                total += len;
                /* a blank line between the last stanza and the next file's */
                while (total && all[total - 1] == '\n')
                        total--;
                memcpy(all + total, "\n\n", 3);
                total += 2;
        }
        if (!all)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        *ret = all;
        return 0;
}

/* recipe_apt_each's first part: each package looked up, listed and
 * fetched; with root, its file and sha256 go to upaths and ushas (*nu of
 * them) for recipe_deb_unpack_all. */
static int apt_fetch_each(const struct recipe_plan *p, const struct recipe_stage_opts *o,
                          const char *const *index_paths, size_t n_index, const char *mirror,
                          const char *const *packages, size_t n, const char *arch,
                          const char *root, json_t *resolved, json_t *inventory, json_t *files,
                          char **upaths, char **ushas, size_t *nu, struct kiln_error *err)
{
        _cleanup_free_ char *buf = NULL;
        const char *index_path = n_index ? index_paths[0] : "";

        if (recipe_apt_read_indexes(index_paths, n_index, &buf, err) < 0)
                return -1;
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *file = NULL, *sha = NULL, *path = NULL, *stanza = NULL;
                _cleanup_free_ char *where = NULL;
                if (apt_find(buf, packages[i], arch, &file, &sha, &stanza, err) < 0) {
                        kiln_error_prefix(err, "index '%s'", index_path);
                        return -1;
                }
                if (strstr(file, "..") || file[0] == '/')
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "invalid Filename '%s' for package '%s'", file,
                                              packages[i]);
                for (char *c = sha; *c; c++)
                        if (*c >= 'A' && *c <= 'F')
                                *c = (char)(*c + 32);
                if (resolved)
                        json_array_append_new(resolved, json_string(sha));
                where = kiln_strdupf("%s/%s", mirror, file);
                if (!where)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                if (inventory) {
                        /* the index names the package: nothing is downloaded for it */
                        _cleanup_free_ char *ver = recipe_control_field(stanza, "Version");
                        _cleanup_free_ char *a = recipe_control_field(stanza, "Architecture");
                        if (!ver || !*ver || !a || !*a)
                                return kiln_error_set(err, KILN_E_INVALID,
                                                      "package '%s' in the index '%s' has no Version or Architecture",
                                                      packages[i], index_path);
                        _cleanup_free_ char *nm = strndup(packages[i],
                                                          strcspn(packages[i], "="));
                        if (!nm)
                                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        struct recipe_inventory_item it = {.type = "deb", .name = nm,
                                                           .version = ver, .arch = a,
                                                           .sha256 = sha, .file = file,
                                                           .url = where};
                        if (recipe_inventory_add(inventory, &it, err) < 0)
                                return -1;
                }
                if (!root && !files)
                        continue; /* the key needs the index's digest only */
                /* p NULL: mirror is a local directory */
                /* checked against the index's SHA256: plain http is fine */
                path = p ? recipe_input_file_as(p, o, where, true, -1, true, err) : strdup(where);
                if (!path)
                        return p ? -1 : kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                if (files && json_array_append_new(files, json_string(path)) < 0)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                if (root) {
                        ushas[*nu] = strdup(sha);
                        upaths[*nu] = steal_ptr(&path);
                        if (!ushas[(*nu)++])
                                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                }
        }
        return 0;
}

int recipe_apt_each(const struct recipe_plan *p, const struct recipe_stage_opts *o,
                    const char *const *index_paths, size_t n_index, const char *mirror,
                    const char *const *packages, size_t n, const char *arch, const char *root,
                    bool merged_usr, bool status_d, json_t *resolved, json_t *inventory,
                    json_t *files, struct kiln_error *err)
{
        char **upaths = calloc(n + 1, sizeof(*upaths)), **ushas = calloc(n + 1, sizeof(*ushas));
        size_t nu = 0;
        int rc = -1;

        if (!upaths || !ushas) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto out;
        }
        if (apt_fetch_each(p, o, index_paths, n_index, mirror, packages, n, arch, root, resolved,
                           inventory, files, upaths, ushas, &nu, err) < 0)
                goto out;
        rc = root ? recipe_deb_unpack_all((const char *const *)upaths, (const char *const *)ushas,
                                          nu, root, merged_usr, status_d, err)
                  : 0;
out:
        for (size_t i = 0; i < nu; i++) {
                free(upaths ? upaths[i] : NULL);
                free(ushas ? ushas[i] : NULL);
        }
        free(upaths);
        free(ushas);
        return rc;
}

int recipe_apt_stage(const char *index_path, const char *mirror_dir,
                     const char *const *packages, size_t n, const char *arch, const char *root,
                     bool merged_usr, struct kiln_error *err)
{
        return recipe_apt_each(NULL, NULL, &index_path, 1, mirror_dir, packages, n, arch, root,
                               merged_usr, true, NULL, NULL, NULL, err);
}

/* ---- what dpkg records of a package (recipe_dpkg.c) ---- */

void recipe_deb_meta_release(struct recipe_deb_meta *m)
{
        if (!m)
                return;
        free(m->control);
        for (size_t i = 0; i < m->n_members; i++) {
                free(m->members[i].name);
                free(m->members[i].data);
        }
        free(m->members);
        free(m->list);
        free(m->conffiles);
        memset(m, 0, sizeof(*m));
}

static int buf_add(char **buf, size_t *len, const char *s, struct kiln_error *err)
{
        size_t n = strlen(s);
        char *nb = realloc(*buf, *len + n + 1);

        if (!nb)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        memcpy(nb + *len, s, n + 1);
        *buf = nb;
        *len += n;
        return 0;
}

/* control.tar: every member (dpkg keeps all but control in info/) */
static int meta_control(struct archive *a, const char *deb, struct recipe_deb_meta *m,
                        struct kiln_error *err)
{
        struct archive_entry *e;
        int r;

        while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
                const char *name = archive_entry_pathname(e);
                struct recipe_deb_member *nm;
                char *data;
                size_t len;

                while (name[0] == '.' && name[1] == '/')
                        name += 2;
                if (archive_entry_filetype(e) != AE_IFREG)
                        continue;
                if (!*name || strchr(name, '/') || name[0] == '.')
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "invalid package '%s': control member '%s'", deb,
                                              name);
                if (read_small(a, RECIPE_DEB_CONTROL_MAX, &data, &len) < 0)
                        return kiln_error_set(err, KILN_E_LIMIT,
                                              "invalid package '%s': unreadable or oversized %s",
                                              deb, name);
                if (!strcmp(name, "control")) {
                        free(m->control);
                        m->control = data;
                        continue;
                }
                nm = realloc(m->members, (m->n_members + 1) * sizeof(*nm));
                if (!nm) {
                        free(data);
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                }
                m->members = nm;
                nm[m->n_members++] = (struct recipe_deb_member){
                        .name = strdup(name), .data = data, .len = len,
                        .mode = archive_entry_perm(e) & 0777};
                if (!nm[m->n_members - 1].name)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        if (r != ARCHIVE_EOF)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid package '%s': control archive: %s", deb,
                                      archive_error_string(a));
        return m->control ? 0
                          : kiln_error_set(err, KILN_E_INVALID,
                                           "invalid package '%s': no control file", deb);
}

static const struct recipe_deb_member *member(const struct recipe_deb_meta *m, const char *name)
{
        for (size_t i = 0; i < m->n_members; i++)
                if (!strcmp(m->members[i].name, name))
                        return &m->members[i];
        return NULL;
}

/* Whether "/path" is a line of the conffiles member. */
static bool is_conffile(const struct recipe_deb_meta *m, const char *path)
{
        const struct recipe_deb_member *c = member(m, "conffiles");
        size_t n = strlen(path);

        for (const char *l = c ? c->data : NULL; l && *l;) {
                const char *nl = strchr(l, '\n');
                size_t len = nl ? (size_t)(nl - l) : strlen(l);
                while (len && (l[len - 1] == ' ' || l[len - 1] == '\r'))
                        len--;
                /* "remove-on-upgrade /etc/x" (dpkg 1.20.1) names a path too */
                if (len >= n && !strncmp(l + len - n, path, n) && (len == n || l[len - n - 1] == ' '))
                        return true;
                l = nl ? nl + 1 : NULL;
        }
        return false;
}

/* data.tar: the paths dpkg lists ("/.", "/usr", ...) and the md5 of
 * each conffile, as " /etc/x HEX" lines. */
static int meta_data(struct archive *a, const char *deb, struct recipe_deb_meta *m,
                     struct kiln_error *err)
{
        struct archive_entry *e;
        size_t ll = 0, cl = 0;
        int r;

        while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
                const char *name = archive_entry_pathname(e);
                _cleanup_free_ char *path = NULL;
                while (name[0] == '.' && name[1] == '/')
                        name += 2;
                while (name[0] == '/')
                        name++;
                path = *name ? kiln_strdupf("/%s", name) : strdup("/.");
                if (!path)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                while (strlen(path) > 2 && path[strlen(path) - 1] == '/')
                        path[strlen(path) - 1] = '\0';
                if (buf_add(&m->list, &ll, path, err) < 0 || buf_add(&m->list, &ll, "\n", err) < 0)
                        return -1;
                if (archive_entry_filetype(e) == AE_IFREG && is_conffile(m, path)) {
                        EVP_MD_CTX *c = EVP_MD_CTX_new();
                        unsigned char md[16], buf[65536];
                        char line[4200], hex[33];
                        la_ssize_t n;
                        if (!c || !EVP_DigestInit_ex(c, EVP_md5(), NULL)) {
                                EVP_MD_CTX_free(c);
                                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        }
                        while ((n = archive_read_data(a, buf, sizeof(buf))) > 0)
                                EVP_DigestUpdate(c, buf, (size_t)n);
                        EVP_DigestFinal_ex(c, md, NULL);
                        EVP_MD_CTX_free(c);
                        if (n < 0)
                                return kiln_error_set(err, KILN_E_INVALID,
                                                      "invalid package '%s': %s", deb,
                                                      archive_error_string(a));
                        for (int i = 0; i < 16; i++)
                                snprintf(hex + 2 * i, 3, "%02x", md[i]);
                        snprintf(line, sizeof(line), " %s %s\n", path, hex);
                        if (buf_add(&m->conffiles, &cl, line, err) < 0)
                                return -1;
                }
        }
        if (r != ARCHIVE_EOF)
                return kiln_error_set(err, KILN_E_INVALID, "invalid package '%s': %s", deb,
                                      archive_error_string(a));
        return 0;
}

static int deb_meta_read(const char *path, const char *data_tar, struct recipe_deb_meta *ret,
                         struct kiln_error *err)
{
        struct inner *in = deb_open(path, err);
        struct archive *outer = in ? in->outer : NULL;
        struct archive_entry *e;
        struct recipe_deb_meta m = {0};
        bool have_data = false;
        int rc = -1, r;

        if (!in)
                goto out;
        while ((r = archive_read_next_header(outer, &e)) == ARCHIVE_OK) {
                const char *name = archive_entry_pathname(e);
                bool control = str_has_prefix(name, "control.tar");
                struct archive *a;
                if (!control && !str_has_prefix(name, "data.tar"))
                        continue;
                if (!control && !m.control) {
                        kiln_error_set(err, KILN_E_INVALID,
                                       "invalid package '%s': data before control", path);
                        goto out;
                }
                a = !control && data_tar ? open_plain_tar(data_tar, path, err)
                                         : open_inner(in, path, name, err);
                if (!a)
                        goto out;
                r = control ? meta_control(a, path, &m, err) : meta_data(a, path, &m, err);
                archive_read_free(a);
                if (r < 0)
                        goto out;
                have_data |= !control;
        }
        if (!m.control || !have_data) {
                kiln_error_set(err, KILN_E_INVALID,
                               "invalid package '%s': expected control.tar and data.tar members",
                               path);
                goto out;
        }
        *ret = m;
        memset(&m, 0, sizeof(m));
        rc = 0;
out:
        recipe_deb_meta_release(&m);
        if (outer)
                archive_read_free(outer);
        free(in);
        return rc;
}

/* What recipe_deb_unpack_all read of each package while its data.tar was
 * decompressed, kept for the dpkg database (recipe_deb_meta_read takes it
 * out), so nothing is decompressed twice. */
struct meta_memo {
        char *path;
        struct recipe_deb_meta m;
};
static pthread_mutex_t memo_lock = PTHREAD_MUTEX_INITIALIZER;
static struct meta_memo *memo;
static size_t n_memo;

static void memo_put(const char *path, struct recipe_deb_meta *m)
{
        struct meta_memo *nm;
        char *p = strdup(path);

        pthread_mutex_lock(&memo_lock);
        nm = p ? realloc(memo, (n_memo + 1) * sizeof(*memo)) : NULL;
        if (nm) {
                memo = nm;
                memo[n_memo++] = (struct meta_memo){.path = p, .m = *m};
                memset(m, 0, sizeof(*m));
        } else {
                free(p);
        }
        pthread_mutex_unlock(&memo_lock);
        recipe_deb_meta_release(m); /* not kept: read again when needed */
}

static bool memo_take(const char *path, struct recipe_deb_meta *ret)
{
        bool found = false;

        pthread_mutex_lock(&memo_lock);
        for (size_t i = 0; i < n_memo && !found; i++)
                if (!strcmp(memo[i].path, path)) {
                        *ret = memo[i].m;
                        free(memo[i].path);
                        memo[i] = memo[--n_memo];
                        found = true;
                }
        if (!n_memo) {
                free(memo);
                memo = NULL;
        }
        pthread_mutex_unlock(&memo_lock);
        return found;
}

int recipe_deb_meta_read(const char *path, struct recipe_deb_meta *ret, struct kiln_error *err)
{
        if (memo_take(path, ret))
                return 0;
        return deb_meta_read(path, NULL, ret, err);
}
