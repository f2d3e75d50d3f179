/* Installing a wheel into a tree the way pip does, without Python.
 * PEP 427 (binary distribution format), PyPA "Recording installed
 * projects" (RECORD, INSTALLER) and "Entry points specification". */
#include <archive.h>
#include <archive_entry.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "digest.h"
#include "io.h"
#include "path.h"
#include "recipe_internal.h"
#include "recipe_wheel_internal.h"
#include "stage.h"
#include "util.h"

#define DEFAULT_PREFIX "/usr/local"
#define DEFAULT_INTERPRETER "/usr/bin/python3.11"

/* the staging tree's install (recipe_wheel_install) */
#define winst recipe_wheel_inst

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* RECORD hashes: urlsafe base64 without padding of the raw digest */
void recipe_record_hash(const struct oci_digest *d, char *out, size_t outlen)
{
        unsigned char raw[32];
        const char *hex = oci_digest_hex(d);
        size_t k = 0;

        for (size_t i = 0; i < 32; i++) {
                unsigned v;
                sscanf(hex + 2 * i, "%2x", &v);
                raw[i] = (unsigned char)v;
        }
        k += (size_t)snprintf(out, outlen, "sha256=");
        for (size_t i = 0; i < 32; i += 3) {
                unsigned v = (unsigned)raw[i] << 16;
                size_t n = 32 - i >= 3 ? 3 : 32 - i;
                if (n > 1)
                        v |= (unsigned)raw[i + 1] << 8;
                if (n > 2)
                        v |= raw[i + 2];
                if (k + 4 >= outlen)
                        break;
                out[k++] = b64url[(v >> 18) & 63];
                out[k++] = b64url[(v >> 12) & 63];
                if (n > 1)
                        out[k++] = b64url[(v >> 6) & 63];
                if (n > 2)
                        out[k++] = b64url[v & 63];
        }
        out[k] = '\0';
}

/* from: an image directory; to: an image path; both absolute */
static char *relpath(const char *from, const char *to)
{
        size_t common = 0, i = 0, ups = 0;
        char *out;
        size_t n;

        while (from[i] && to[i] && from[i] == to[i]) {
                if (from[i] == '/')
                        common = i;
                i++;
        }
        if (from[i] == '\0' && to[i] == '/')
                common = i;
        else if (from[i] == '\0' && to[i] == '\0')
                common = i;
        for (const char *p = from + common; *p; p++)
                if (*p == '/' && p[1])
                        ups++;
        if (from[common] == '\0')
                ups = 0;
        n = ups * 3 + strlen(to + common) + 1;
        out = malloc(n + 1);
        if (!out)
                return NULL;
        out[0] = '\0';
        for (size_t k = 0; k < ups; k++)
                strcat(out, "../");
        strcat(out, to[common] == '/' ? to + common + 1 : to + common);
        return out;
}

/* A member's name: relative, no '..', no Windows separator, not empty
 * (layers/path.h).  The name itself is what the zip is read by. */
int recipe_wheel_check_name(const char *wheel, const char *name, struct kiln_error *err)
{
        _cleanup_free_ char *clean = NULL;

        if (layer_path_clean(name, LAYER_PATH_RELATIVE | LAYER_PATH_NO_BACKSLASH, "unsafe path",
                             &clean, err) < 0) {
                kiln_error_prefix(err, "invalid wheel '%s'", wheel);
                return -1;
        }
        if (!*clean)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid wheel '%s': unsafe path '%s': names no file", wheel,
                                      name);
        return 0;
}

static int mkparents(const char *root, const char *image_path, struct kiln_error *err)
{
        _cleanup_free_ char *full = kiln_strdupf("%s%s", root, image_path);
        char *slash;

        if (!full)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        slash = strrchr(full, '/');
        if (slash && slash != full) {
                *slash = '\0';
                return kiln_mkdir_p(full, 0755, err);
        }
        return 0;
}

/* Writes data to ROOT+image_path. */
static int write_file(struct winst *w, const char *image_path, const void *data, size_t len,
                      mode_t mode, struct kiln_error *err)
{
        _cleanup_free_ char *full = kiln_strdupf("%s%s", w->root, image_path);
        _cleanup_close_ int fd = -1;
        const char *p = data;

        if (!full)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (mkparents(w->root, image_path, err) < 0)
                return -1;
        unlink(full);
        fd = open(full, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd < 0)
                return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create '%s'", full);
        while (len > 0) {
                ssize_t n = write(fd, p, len);
                if (n < 0)
                        return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot write '%s'",
                                                    full);
                p += n;
                len -= (size_t)n;
        }
        if (fchmod(fd, mode) < 0)
                return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot chmod '%s'", full);
        return 0;
}

int recipe_wheel_installed(struct winst *w, const char *image_path, const char *hash,
                           uint64_t size)
{
        char *rec = kiln_strdupf("%s,%llu", hash, (unsigned long long)size);

        if (!rec)
                return -1;
        json_object_set_new(w->installed, image_path, json_string(rec));
        free(rec);
        return 0;
}

int recipe_wheel_put(struct winst *w, const char *image_path, const void *data, size_t len,
                     mode_t mode, struct kiln_error *err)
{
        struct oci_digest d;
        char hash[64], rec[128];

        if ((w->put ? w->put(w->put_ctx, image_path, data, len, mode, err)
                    : write_file(w, image_path, data, len, mode, err)) < 0)
                return -1;
        oci_digest_of_buffer(data, len, &d);
        recipe_record_hash(&d, hash, sizeof(hash));
        snprintf(rec, sizeof(rec), "%s,%zu", hash, len);
        json_object_set_new(w->installed, image_path, json_string(rec));
        return 0;
}

/* RECORD is CSV: path,hash,size; the path may be quoted. */
static int parse_record(struct winst *w, const char *buf, struct kiln_error *err)
{
        const char *p = buf;

        while (*p) {
                char path[4096], rest[256];
                size_t k = 0, r = 0;

                if (*p == '"') {
                        p++;
                        while (*p && !(*p == '"' && p[1] != '"')) {
                                if (*p == '"')
                                        p++;
                                if (k < sizeof(path) - 1)
                                        path[k++] = *p;
                                p++;
                        }
                        if (*p == '"')
                                p++;
                } else {
                        while (*p && *p != ',' && *p != '\n' && *p != '\r')
                                if (k < sizeof(path) - 1)
                                        path[k++] = *p++;
                                else
                                        p++;
                }
                path[k] = '\0';
                if (*p == ',')
                        p++;
                while (*p && *p != '\n' && *p != '\r') {
                        if (r < sizeof(rest) - 1)
                                rest[r++] = *p;
                        p++;
                }
                rest[r] = '\0';
                while (*p == '\n' || *p == '\r')
                        p++;
                if (k)
                        json_object_set_new(w->record, path, json_string(rest));
        }
        if (json_object_size(w->record) == 0)
                return kiln_error_set(err, KILN_E_INVALID, "invalid wheel '%s': empty RECORD",
                                      w->wheel);
        return 0;
}

struct archive *recipe_wheel_open(const char *path, struct kiln_error *err)
{
        struct archive *a = archive_read_new();

        if (!a) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        archive_read_support_format_zip_seekable(a);
        if (archive_read_open_filename(a, path, 65536) != ARCHIVE_OK) {
                kiln_error_set(err, KILN_E_INVALID, "cannot read wheel '%s': %s", path,
                               archive_error_string(a));
                archive_read_free(a);
                return NULL;
        }
        return a;
}

int recipe_wheel_read_entry(struct archive *a, const char *what, size_t cap, char **ret,
                            size_t *ret_len, struct kiln_error *err)
{
        size_t cap_buf = 65536, len = 0;
        char *buf = malloc(cap_buf + 1);
        la_ssize_t n;

        if (!buf)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        for (;;) {
                if (len == cap_buf) {
                        char *nb;
                        if (cap_buf >= cap) {
                                free(buf);
                                return kiln_error_set(err, KILN_E_LIMIT,
                                                      "'%s' is larger than %zu bytes", what, cap);
                        }
                        cap_buf *= 2;
                        nb = realloc(buf, cap_buf + 1);
                        if (!nb) {
                                free(buf);
                                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        }
                        buf = nb;
                }
                n = archive_read_data(a, buf + len, cap_buf - len);
                if (n < 0) {
                        free(buf);
                        return kiln_error_set(err, KILN_E_INVALID, "cannot read '%s': %s", what,
                                              archive_error_string(a));
                }
                if (n == 0)
                        break;
                len += (size_t)n;
        }
        buf[len] = '\0';
        *ret = buf;
        *ret_len = len;
        return 0;
}

int recipe_wheel_read_metadata(const char *path, char **ret, size_t *ret_len,
                               struct kiln_error *err)
{
        struct archive *a = recipe_wheel_open(path, err);
        struct archive_entry *e;
        int r, rc = -1;

        if (!a)
                return -1;
        while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
                const char *name = archive_entry_pathname(e);
                const char *slash = name ? strchr(name, '/') : NULL;

                /* NAME-VERSION.dist-info/METADATA at the top of the wheel */
                if (!slash || strcmp(slash + 1, "METADATA") || slash - name < 10 ||
                    memcmp(slash - 10, ".dist-info", 10))
                        continue;
                rc = recipe_wheel_read_entry(a, name, RECIPE_WHEEL_META_MAX, ret, ret_len, err);
                break;
        }
        if (rc < 0 && r == ARCHIVE_EOF)
                kiln_error_set(err, KILN_E_INVALID, "invalid wheel '%s': no .dist-info/METADATA",
                               path);
        else if (rc < 0 && r != ARCHIVE_OK)
                kiln_error_set(err, KILN_E_INVALID, "cannot read wheel '%s': %s", path,
                               archive_error_string(a));
        archive_read_free(a);
        return rc;
}

/* Pass 1: find the .dist-info directory and read WHEEL, RECORD, entry_points.txt. */
static int read_metadata(struct winst *w, struct kiln_error *err)
{
        struct archive *a = recipe_wheel_open(w->wheel, err);
        struct archive_entry *e;
        _cleanup_free_ char *record = NULL;
        int rc = 0, r;

        if (!a)
                return -1;
        while (rc == 0 && (r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
                const char *name = archive_entry_pathname(e);
                const char *slash = name ? strchr(name, '/') : NULL;
                size_t dlen;
                char *buf;
                size_t len;

                if (!slash || strchr(slash + 1, '/'))
                        continue;
                dlen = (size_t)(slash - name);
                if (dlen < 10 || memcmp(slash - 10, ".dist-info", 10))
                        continue;
                if (!w->distinfo) {
                        w->distinfo = strndup(name, dlen);
                        w->datadir = kiln_strdupf("%.*s.data", (int)(dlen - 10), name);
                } else if (strlen(w->distinfo) != dlen || memcmp(w->distinfo, name, dlen)) {
                        rc = kiln_error_set(err, KILN_E_INVALID,
                                            "invalid wheel '%s': more than one .dist-info directory",
                                            w->wheel);
                        break;
                }
                if (strcmp(slash + 1, "WHEEL") && strcmp(slash + 1, "RECORD") &&
                    strcmp(slash + 1, "entry_points.txt"))
                        continue;
                if (recipe_wheel_read_entry(a, name, RECIPE_WHEEL_META_MAX, &buf, &len, err) < 0) {
                        rc = -1;
                        break;
                }
                if (!strcmp(slash + 1, "WHEEL")) {
                        free(w->wheel_file);
                        w->wheel_file = buf;
                } else if (!strcmp(slash + 1, "RECORD")) {
                        free(record);
                        record = buf;
                } else {
                        free(w->entry_points);
                        w->entry_points = buf;
                        w->entry_points_len = len;
                }
        }
        if (rc == 0 && r != ARCHIVE_EOF)
                rc = kiln_error_set(err, KILN_E_INVALID, "cannot read wheel '%s': %s", w->wheel,
                                    archive_error_string(a));
        archive_read_free(a);
        if (rc < 0)
                return -1;
        if (!w->distinfo || !w->wheel_file || !record)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid wheel '%s': no .dist-info with WHEEL and RECORD",
                                      w->wheel);
        /* PEP 427: refuse a Wheel-Version with a higher major */
        {
                const char *v = strstr(w->wheel_file, "Wheel-Version:");
                if (!v)
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "invalid wheel '%s': WHEEL has no Wheel-Version",
                                              w->wheel);
                v += 14;
                while (*v == ' ')
                        v++;
                if (atoi(v) != 1)
                        return kiln_error_set(err, KILN_E_UNSUPPORTED,
                                              "unsupported wheel '%s': Wheel-Version %.8s", w->wheel,
                                              v);
                w->purelib = strstr(w->wheel_file, "Root-Is-Purelib: true") != NULL;
        }
        return parse_record(w, record, err);
}

/* Where a file of the wheel goes in the image (NULL: error set). */
char *recipe_wheel_dest(struct winst *w, const char *name, bool *ret_script,
                        struct kiln_error *err)
{
        size_t dl = strlen(w->datadir);

        *ret_script = false;
        if (!strncmp(name, w->datadir, dl) && name[dl] == '/') {
                const char *rest = name + dl + 1;
                static const char *const keys[] = {"purelib/", "platlib/", "scripts/", "headers/",
                                                   "data/"};
                for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
                        if (!str_has_prefix(rest, keys[i]))
                                continue;
                        rest += strlen(keys[i]);
                        switch (i) {
                        case 0:
                        case 1: return kiln_strdupf("%s/%s", w->site, rest);
                        case 2: *ret_script = true; return kiln_strdupf("%s/%s", w->bin, rest);
                        case 3: return kiln_strdupf("%s/%s", w->headers, rest);
                        default: return kiln_strdupf("%s/%s", w->prefix, rest);
                        }
                }
                kiln_error_set(err, KILN_E_INVALID, "invalid wheel '%s': unknown data scheme in '%s'",
                               w->wheel, name);
                return NULL;
        }
        /* purelib or platlib: one site-packages in this layout */
        return kiln_strdupf("%s/%s", w->site, name);
}

/* pip's rule: a script starting with "#!python" gets the interpreter */
char *recipe_wheel_shebang(const struct winst *w, const char *buf, size_t len, size_t *ret_len,
                           size_t *ret_skip)
{
        const char *nl;
        size_t skip;
        char *out;

        if (len < 8 || memcmp(buf, "#!python", 8))
                return NULL;
        skip = 8;
        if (len > 8 && buf[8] == 'w')
                skip = 9;
        nl = memchr(buf, '\n', len);
        if (nl && (size_t)(nl - buf) < skip)
                return NULL;
        out = malloc(len + strlen(w->interpreter) + 3);
        if (!out)
                return NULL;
        *ret_len = (size_t)sprintf(out, "#!%s", w->interpreter);
        memcpy(out + *ret_len, buf + skip, len - skip);
        *ret_len += len - skip;
        *ret_skip = skip;
        return out;
}

int recipe_wheel_record_hash_ok(const struct winst *w, const char *name, const char *ws,
                                struct kiln_error *err)
{
        /* only RECORD itself goes without a hash, and it is not extracted */
        if (!*ws || *ws == ',')
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid wheel '%s': '%s' has no hash in RECORD", w->wheel,
                                      name);
        if (!str_has_prefix(ws, "sha256="))
                return kiln_error_set(err, KILN_E_UNSUPPORTED,
                                      "unsupported hash for '%s' in wheel '%s': '%s'", name,
                                      w->wheel, ws);
        return 0;
}

int recipe_wheel_check_record(struct winst *w, const char *name, const char *data, size_t len,
                              struct kiln_error *err)
{
        json_t *want = json_object_get(w->record, name);
        struct oci_digest d;
        char hash[64], got[128];
        const char *ws;

        if (!want) {
                const char *base = strrchr(name, '/');
                base = base ? base + 1 : name;
                /* RECORD itself and its signatures carry no hash */
                if (!strncmp(name, w->distinfo, strlen(w->distinfo)) &&
                    (!strcmp(base, "RECORD.jws") || !strcmp(base, "RECORD.p7s")))
                        return 0;
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid wheel '%s': '%s' is not listed in RECORD", w->wheel,
                                      name);
        }
        ws = json_string_value(want);
        if (recipe_wheel_record_hash_ok(w, name, ws, err) < 0)
                return -1;
        oci_digest_of_buffer(data, len, &d);
        recipe_record_hash(&d, hash, sizeof(hash));
        snprintf(got, sizeof(got), "%s,%zu", hash, len);
        if (strncmp(ws, hash, strlen(hash)) || (ws[strlen(hash)] != ',' && ws[strlen(hash)]))
                return kiln_error_set(err, KILN_E_DIGEST,
                                      "hash mismatch for '%s' in wheel '%s': RECORD says '%s', got '%s'",
                                      name, w->wheel, ws, got);
        return 0;
}

/* Copies the current entry to ROOT+dest while hashing it, then checks
 * RECORD and records the file. */
static int stream_file(struct winst *w, struct archive *a, const char *name, const char *dest,
                       mode_t mode, struct kiln_error *err)
{
        _cleanup_free_ char *full = kiln_strdupf("%s%s", w->root, dest);
        _cleanup_close_ int fd = -1;
        struct oci_hasher h;
        struct oci_digest d;
        char buf[65536], hash[64], rec[128];
        json_t *want = json_object_get(w->record, name);
        const char *ws = want ? json_string_value(want) : NULL;
        size_t total = 0;
        la_ssize_t n;

        if (!full)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (!ws)
                return recipe_wheel_check_record(w, name, "", 0, err) < 0 ? -1 : 0;
        if (mkparents(w->root, dest, err) < 0)
                return -1;
        unlink(full);
        fd = open(full, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd < 0)
                return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create '%s'", full);
        if (oci_hasher_init(&h, OCI_DIGEST_SHA256, err) < 0)
                return -1;
        while ((n = archive_read_data(a, buf, sizeof(buf))) > 0) {
                const char *p = buf;
                size_t left = (size_t)n;
                oci_hasher_update(&h, buf, (size_t)n);
                total += (size_t)n;
                while (left > 0) {
                        ssize_t wn = write(fd, p, left);
                        if (wn < 0) {
                                oci_hasher_release(&h);
                                return kiln_error_set_errno(err, KILN_E_IO, errno,
                                                            "cannot write '%s'", full);
                        }
                        p += wn;
                        left -= (size_t)wn;
                }
        }
        oci_hasher_final(&h, &d);
        oci_hasher_release(&h);
        if (n < 0)
                return kiln_error_set(err, KILN_E_INVALID, "cannot read '%s' in wheel '%s': %s",
                                      name, w->wheel, archive_error_string(a));
        if (fchmod(fd, mode) < 0)
                return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot chmod '%s'", full);
        recipe_record_hash(&d, hash, sizeof(hash));
        snprintf(rec, sizeof(rec), "%s,%zu", hash, total);
        /* PEP 376/427: "sha256=<urlsafe-b64-nopad>,SIZE"; an empty hash is
         * only allowed for RECORD itself, which never gets here */
        if (!*ws || *ws == ',')
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid wheel '%s': '%s' has no hash in RECORD", w->wheel,
                                      name);
        if (!str_has_prefix(ws, "sha256="))
                return kiln_error_set(err, KILN_E_UNSUPPORTED,
                                      "unsupported hash for '%s' in wheel '%s': '%s'", name,
                                      w->wheel, ws);
        if (strncmp(ws, hash, strlen(hash)) || (ws[strlen(hash)] != ',' && ws[strlen(hash)]))
                return kiln_error_set(err, KILN_E_DIGEST,
                                      "hash mismatch for '%s' in wheel '%s': RECORD says '%s', got '%s'",
                                      name, w->wheel, ws, rec);
        json_object_set_new(w->installed, dest, json_string(rec));
        return 0;
}

/* Pass 2: every file to its place, checked against RECORD. */
static int extract(struct winst *w, struct kiln_error *err)
{
        struct archive *a = recipe_wheel_open(w->wheel, err);
        struct archive_entry *e;
        _cleanup_free_ char *record_name = kiln_strdupf("%s/RECORD", w->distinfo);
        int rc = 0, r;

        if (!a || !record_name)
                return -1;
        while (rc == 0 && (r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
                const char *name = archive_entry_pathname(e);
                _cleanup_free_ char *dest = NULL;
                _cleanup_free_ char *buf = NULL, *rewritten = NULL;
                size_t len, rlen = 0, skip;
                bool script;
                mode_t mode;

                if (!name || archive_entry_filetype(e) == AE_IFDIR ||
                    (*name && name[strlen(name) - 1] == '/'))
                        continue;
                if (archive_entry_filetype(e) != AE_IFREG) {
                        rc = kiln_error_set(err, KILN_E_INVALID,
                                            "invalid wheel '%s': '%s' is not a regular file",
                                            w->wheel, name);
                        break;
                }
                if (recipe_wheel_check_name(w->wheel, name, err) < 0) {
                        rc = -1;
                        break;
                }
                if (!strcmp(name, record_name))
                        continue; /* rewritten below */
                dest = recipe_wheel_dest(w, name, &script, err);
                if (!dest) {
                        rc = -1;
                        break;
                }
                mode = (archive_entry_perm(e) & 0111) || script ? 0755 : 0644;
                if (!script) {
                        /* streamed: torch's CUDA libraries are gigabytes */
                        rc = stream_file(w, a, name, dest, mode, err);
                        continue;
                }
                if (recipe_wheel_read_entry(a, name, RECIPE_WHEEL_SCRIPT_MAX, &buf, &len, err) < 0 ||
                    recipe_wheel_check_record(w, name, buf, len, err) < 0) {
                        rc = -1;
                        break;
                }
                rewritten = recipe_wheel_shebang(w, buf, len, &rlen, &skip);
                rc = recipe_wheel_put(w, dest, rewritten ? rewritten : buf, rewritten ? rlen : len, mode,
                              err);
        }
        if (rc == 0 && r != ARCHIVE_EOF)
                rc = kiln_error_set(err, KILN_E_INVALID, "cannot read wheel '%s': %s", w->wheel,
                                    archive_error_string(a));
        archive_read_free(a);
        return rc;
}

/* entry_points.txt: [console_scripts] / [gui_scripts], "name = module:attr [extras]" */
static int gen_scripts(struct winst *w, struct kiln_error *err)
{
        char *save = NULL, *line;
        bool in_scripts = false;

        if (!w->entry_points)
                return 0;
        for (line = strtok_r(w->entry_points, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char *eq, *name, *val, *colon, *end;
                _cleanup_free_ char *script = NULL, *dest = NULL, *import = NULL;

                while (isspace((unsigned char)*line))
                        line++;
                for (end = line + strlen(line); end > line && isspace((unsigned char)end[-1]); end--)
                        end[-1] = '\0';
                if (!*line || *line == '#' || *line == ';')
                        continue;
                if (*line == '[') {
                        in_scripts = !strcmp(line, "[console_scripts]") || !strcmp(line, "[gui_scripts]");
                        continue;
                }
                if (!in_scripts)
                        continue;
                eq = strchr(line, '=');
                if (!eq)
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "invalid entry point '%s' in wheel '%s'", line,
                                              w->wheel);
                *eq = '\0';
                name = line;
                for (end = eq; end > name && isspace((unsigned char)end[-1]); end--)
                        end[-1] = '\0';
                val = eq + 1;
                while (isspace((unsigned char)*val))
                        val++;
                if ((end = strchr(val, '[')))
                        *end = '\0';
                for (end = val + strlen(val); end > val && isspace((unsigned char)end[-1]); end--)
                        end[-1] = '\0';
                colon = strchr(val, ':');
                if (!colon || !*name || strchr(name, '/') || !strcmp(name, "..") ||
                    !strcmp(name, "."))
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "invalid entry point '%s = %s' in wheel '%s'", name,
                                              val, w->wheel);
                *colon = '\0';
                while (isspace((unsigned char)colon[1]))
                        colon++;
                import = strndup(colon + 1, strcspn(colon + 1, "."));
                script = kiln_strdupf("#!%s\n"
                                      "# -*- coding: utf-8 -*-\n"
                                      "import re\n"
                                      "import sys\n"
                                      "from %s import %s\n"
                                      "if __name__ == \"__main__\":\n"
                                      "    sys.argv[0] = re.sub(r\"(-script\\.pyw|\\.exe)?$\", \"\", sys.argv[0])\n"
                                      "    sys.exit(%s())\n",
                                      w->interpreter, val, import ? import : "", colon + 1);
                dest = kiln_strdupf("%s/%s", w->bin, name);
                if (!script || !dest || !import)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                if (recipe_wheel_put(w, dest, script, strlen(script), 0755, err) < 0)
                        return -1;
        }
        return 0;
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

static int write_record(struct winst *w, struct kiln_error *err)
{
        _cleanup_free_ char *installer = kiln_strdupf("%s/%s/INSTALLER", w->site, w->distinfo);
        _cleanup_free_ char *record = kiln_strdupf("%s/%s/RECORD", w->site, w->distinfo);
        size_t n, k = 0;
        char **lines;
        const char *key;
        json_t *v;
        char *buf = NULL;
        size_t len = 0;
        FILE *f;
        int rc;

        if (!installer || !record)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (recipe_wheel_put(w, installer, "kiln\n", 5, 0644, err) < 0)
                return -1;
        n = json_object_size(w->installed);
        lines = calloc(n + 1, sizeof(char *));
        if (!lines)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        json_object_foreach(w->installed, key, v) {
                char *rel = relpath(w->site, key);
                bool quote = rel && strpbrk(rel, ",\"") != NULL;
                lines[k++] = rel ? kiln_strdupf("%s%s%s,%s\n", quote ? "\"" : "", rel,
                                                quote ? "\"" : "", json_string_value(v))
                                 : NULL;
                free(rel);
        }
        {
                char *rel = relpath(w->site, record);
                lines[k++] = rel ? kiln_strdupf("%s,,\n", rel) : NULL;
                free(rel);
        }
        qsort(lines, k, sizeof(char *), cmp_str);
        f = open_memstream(&buf, &len);
        for (size_t i = 0; i < k; i++) {
                if (f && lines[i])
                        fputs(lines[i], f);
                free(lines[i]);
        }
        free(lines);
        if (!f || fclose(f) != 0) {
                free(buf);
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        rc = recipe_wheel_put(w, record, buf, len, 0644, err);
        free(buf);
        return rc;
}

void recipe_wheel_inst_release(struct winst *w)
{
        free(w->site);
        free(w->bin);
        free(w->headers);
        free(w->prefix);
        free(w->distinfo);
        free(w->datadir);
        free(w->wheel_file);
        free(w->entry_points);
        json_decref(w->record);
        json_decref(w->installed);
        memset(w, 0, sizeof(*w));
}

int recipe_wheel_inst_begin(struct winst *w, const char *path, const char *sha256,
                            const char *root, const struct recipe_python_target *t,
                            struct kiln_error *err)
{
        static const struct recipe_python_target none = {0};
        char pyver[16] = "3.11";

        memset(w, 0, sizeof(*w));
        if (!t)
                t = &none;
        if (sha256 && recipe_verify_sha256(path, sha256, err) < 0)
                return -1;
        if (t->python && strlen(t->python) >= 4 && strlen(t->python) < 12)
                snprintf(pyver, sizeof(pyver), "%c.%s", t->python[2], t->python + 3);
        w->wheel = path;
        w->root = root;
        w->prefix = strdup(t->prefix ? t->prefix : DEFAULT_PREFIX);
        w->site = t->site_packages ? strdup(t->site_packages)
                                   : kiln_strdupf("%s/lib/python%s/site-packages", w->prefix, pyver);
        w->bin = kiln_strdupf("%s/bin", w->prefix);
        w->interpreter = t->interpreter ? t->interpreter : DEFAULT_INTERPRETER;
        w->record = json_object();
        w->installed = json_object();
        if (!w->prefix || !w->site || !w->bin || !w->record || !w->installed)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (w->site[0] != '/' || w->prefix[0] != '/')
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid python target: '%s' and '%s' must be absolute",
                                      w->prefix, w->site);
        if (read_metadata(w, err) < 0)
                return -1;
        {
                /* pip: headers go to PREFIX/include/pythonX.Y/DIST */
                char *dash = strchr(w->distinfo, '-');
                w->headers = kiln_strdupf("%s/include/python%s/%.*s", w->prefix, pyver,
                                          dash ? (int)(dash - w->distinfo)
                                               : (int)strlen(w->distinfo),
                                          w->distinfo);
                if (!w->headers)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        return 0;
}

int recipe_wheel_inst_finish(struct winst *w, struct kiln_error *err)
{
        return gen_scripts(w, err) < 0 || write_record(w, err) < 0 ? -1 : 0;
}

int recipe_wheel_install(const char *path, const char *sha256, const char *root,
                         const struct recipe_python_target *t, struct kiln_error *err)
{
        struct winst w;
        int rc = -1;

        if (recipe_wheel_inst_begin(&w, path, sha256, root, t, err) == 0 && extract(&w, err) == 0 &&
            recipe_wheel_inst_finish(&w, err) == 0)
                rc = 0;
        recipe_wheel_inst_release(&w);
        if (rc < 0)
                kiln_error_prefix(err, "install wheel '%s'", path);
        return rc;
}
