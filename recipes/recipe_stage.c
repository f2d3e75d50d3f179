/* recipe_stage_layer(): from a planned layer to a staging directory. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "digest.h"
#include "io.h"
#include "path.h"
#include "project.h"
#include "pylock.h"
#include "recipe_internal.h"
#include "resolve.h"
#include "source.h"
#include "stage.h"
#include "util.h"

void recipe_stage_result_release(struct recipe_stage_result *res)
{
        if (!res)
                return;
        free(res->revision);
        free(res->cache_key);
        free(res->layer_key);
        free(res->layer_inputs);
        free(res->excluded);
        json_decref(res->packages);
        json_decref(res->apt_releases);
        memset(res, 0, sizeof(*res));
}

int recipe_sha256_file(const char *path, char ret_hex[65], struct kiln_error *err)
{
        struct oci_hasher h;
        struct oci_digest d;
        char buf[65536];
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n;

        if (fd < 0)
                return kiln_error_set_errno(err, errno == ENOENT ? KILN_E_NOT_FOUND : KILN_E_IO,
                                            errno, "cannot open '%s'", path);
        if (oci_hasher_init(&h, OCI_DIGEST_SHA256, err) < 0)
                return -1;
        while ((n = read(fd, buf, sizeof(buf))) > 0)
                oci_hasher_update(&h, buf, (size_t)n);
        if (n < 0) {
                int e = errno;
                oci_hasher_release(&h);
                return kiln_error_set_errno(err, KILN_E_IO, e, "cannot read '%s'", path);
        }
        oci_hasher_final(&h, &d);
        oci_hasher_release(&h);
        memcpy(ret_hex, oci_digest_hex(&d), 65);
        return 0;
}

int recipe_verify_sha256(const char *path, const char *want_hex, struct kiln_error *err)
{
        char got[65];
        char want[65];
        size_t n = strlen(want_hex);

        if (str_has_prefix(want_hex, "sha256:")) {
                want_hex += 7;
                n -= 7;
        }
        if (n != 64)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid sha256 '%s' for '%s': expected 64 hex digits",
                                      want_hex, path);
        for (size_t i = 0; i < 64; i++)
                want[i] = (char)((want_hex[i] >= 'A' && want_hex[i] <= 'F') ? want_hex[i] + 32
                                                                               : want_hex[i]);
        want[64] = '\0';
        if (recipe_sha256_file(path, got, err) < 0)
                return -1;
        if (strcmp(got, want))
                return kiln_error_set(err, KILN_E_DIGEST,
                                      "sha256 mismatch for '%s': expected %s, got %s", path, want,
                                      got);
        return 0;
}

static int copy_file(const char *src, const char *dst, mode_t mode, struct kiln_error *err)
{
        _cleanup_close_ int in = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        _cleanup_close_ int out = -1;
        char buf[65536];
        ssize_t n;

        if (in < 0)
                return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot open '%s'", src);
        out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode & 07777);
        if (out < 0)
                return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create '%s'", dst);
        while ((n = read(in, buf, sizeof(buf))) > 0) {
                char *p = buf;
                while (n > 0) {
                        ssize_t w = write(out, p, (size_t)n);
                        if (w < 0)
                                return kiln_error_set_errno(err, KILN_E_IO, errno,
                                                            "cannot write '%s'", dst);
                        p += w;
                        n -= w;
                }
        }
        if (n < 0)
                return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot read '%s'", src);
        if (fchmod(out, mode & 07777) < 0)
                return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot chmod '%s'", dst);
        return 0;
}

int recipe_mkdir_p(const char *path, struct kiln_error *err)
{
        _cleanup_free_ char *p = strdup(path);

        if (!p)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        for (char *s = p + 1;; s++) {
                bool end = !*s;

                if (!end && *s != '/')
                        continue;
                *s = '\0';
                if (mkdir(p, 0755) == 0) {
                        if (chmod(p, 0755) < 0)
                                return kiln_error_set_errno(err, KILN_E_IO, errno,
                                                            "cannot chmod '%s'", p);
                } else if (errno != EEXIST) {
                        return kiln_error_set_errno(err, KILN_E_IO, errno,
                                                    "cannot create directory '%s'", p);
                }
                if (end)
                        return 0;
                *s = '/';
        }
}

int recipe_copy_tree_filtered(const char *src, const char *dst, const char *rel,
                              bool (*skip)(void *ctx, const char *rel, bool is_dir), void *ctx,
                              struct kiln_error *err)
{
        DIR *d;
        struct dirent *de;
        struct stat st;
        int rc = 0;

        if (lstat(src, &st) < 0)
                return kiln_error_set_errno(err, errno == ENOENT ? KILN_E_NOT_FOUND : KILN_E_IO,
                                            errno, "cannot stat '%s'", src);
        if (!S_ISDIR(st.st_mode))
                return kiln_error_set(err, KILN_E_INVALID, "'%s' is not a directory", src);
        if ((mkdir(dst, st.st_mode & 07777) < 0 && errno != EEXIST) ||
            chmod(dst, st.st_mode & 07777) < 0)
                return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create '%s'", dst);
        d = opendir(src);
        if (!d)
                return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot open '%s'", src);
        while ((de = readdir(d))) {
                _cleanup_free_ char *s = NULL, *t = NULL, *r = NULL;

                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                        continue;
                s = kiln_strdupf("%s/%s", src, de->d_name);
                t = kiln_strdupf("%s/%s", dst, de->d_name);
                r = *rel ? kiln_strdupf("%s/%s", rel, de->d_name) : strdup(de->d_name);
                if (!s || !t || !r) {
                        rc = kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        break;
                }
                if (lstat(s, &st) < 0) {
                        rc = kiln_error_set_errno(err, KILN_E_IO, errno, "cannot stat '%s'", s);
                        break;
                }
                if (skip && skip(ctx, r, S_ISDIR(st.st_mode)))
                        continue;
                if (S_ISDIR(st.st_mode)) {
                        rc = recipe_copy_tree_filtered(s, t, r, skip, ctx, err);
                } else if (S_ISREG(st.st_mode)) {
                        rc = copy_file(s, t, st.st_mode, err);
                } else if (S_ISLNK(st.st_mode)) {
                        char target[4096];
                        ssize_t n = readlink(s, target, sizeof(target) - 1);
                        if (n < 0) {
                                rc = kiln_error_set_errno(err, KILN_E_IO, errno,
                                                          "cannot read link '%s'", s);
                                break;
                        }
                        target[n] = '\0';
                        if (symlink(target, t) < 0)
                                rc = kiln_error_set_errno(err, KILN_E_IO, errno,
                                                          "cannot create link '%s'", t);
                } else {
                        rc = kiln_error_set(err, KILN_E_UNSUPPORTED,
                                            "cannot stage '%s': not a file, directory or link", s);
                }
                if (rc < 0)
                        break;
        }
        closedir(d);
        return rc;
}

int recipe_copy_tree(const char *src, const char *dst, struct kiln_error *err)
{
        return recipe_copy_tree_filtered(src, dst, "", NULL, NULL, err);
}

/* A path named in the recipe: relative ones start at the recipe's dir,
 * file:// URLs are paths, other URLs wait for registry/'s fetcher. */
char *recipe_resolve_input(const struct recipe_plan *p, const char *s, struct kiln_error *err)
{
        char *out;

        if (str_has_prefix(s, "file://"))
                s += 7;
        else if (strstr(s, "://")) {
                kiln_error_set(err, KILN_E_UNSUPPORTED,
                               "cannot fetch '%s': only local paths and file:// URLs are read until the HTTP client lands",
                               s);
                return NULL;
        }
        out = s[0] == '/' ? strdup(s) : kiln_strdupf("%s/%s", p->recipe_dir, s);
        if (!out)
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        return out;
}

static bool is_url(const char *s)
{
        return strstr(s, "://") && !str_has_prefix(s, "file://");
}

char *recipe_input_file(const struct recipe_plan *p, const struct recipe_stage_opts *o,
                        const char *s, bool immutable, int64_t max, struct kiln_error *err)
{
        return recipe_input_file_as(p, o, s, immutable, max, false, err);
}

char *recipe_input_file_as(const struct recipe_plan *p, const struct recipe_stage_opts *o,
                           const char *s, bool immutable, int64_t max, bool signed_,
                           struct kiln_error *err)
{
        recipe_fetch_fn fetch = signed_ && o && o->fetch_signed ? o->fetch_signed
                                : o                            ? o->fetch
                                                               : NULL;
        struct oci_digest d;
        _cleanup_free_ char *dir = NULL;
        char *dest;
        const char *base;
        struct stat st;

        if (!is_url(s))
                return recipe_resolve_input(p, s, err);
        if (!fetch) {
                kiln_error_set(err, KILN_E_UNSUPPORTED,
                               "cannot fetch '%s': only local paths and file:// URLs are read until the HTTP client lands",
                               s);
                return NULL;
        }
        if (!o->cache_dir) {
                kiln_error_set(err, KILN_E_USAGE, "fetching '%s' needs a cache directory", s);
                return NULL;
        }
        /* CACHE/fetch/HASH-OF-URL/NAME: the name keeps the wheel file name
         * its tags are read from */
        oci_digest_of_buffer(s, strlen(s), &d);
        base = strrchr(s, '/');
        base = base && base[1] ? base + 1 : "index.html";
        dir = kiln_strdupf("%s/fetch/%.32s", o->cache_dir, oci_digest_hex(&d));
        dest = dir ? kiln_strdupf("%s/%s", dir, base) : NULL;
        if (!dest) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        /* immutable files (verified by their sha256 after this) are fetched
         * once; index pages every time */
        if (immutable && stat(dest, &st) == 0 && S_ISREG(st.st_mode))
                return dest;
        if (kiln_mkdir_p(dir, 0755, err) < 0 || fetch(o->fetch_ctx, s, dest, max, err) < 0) {
                free(dest);
                return NULL;
        }
        return dest;
}

/* "/app/x" under root, without ".." (layers/path.h) */
char *recipe_path_under(const char *root, const char *path, struct kiln_error *err)
{
        _cleanup_free_ char *clean = NULL;
        char *out;

        if (layer_path_clean(path, 0, "invalid image path", &clean, err) < 0)
                return NULL;
        out = kiln_strdupf("%s/%s", root, clean);
        if (!out)
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        return out;
}

/* ---- the inventory (stage.h: ret->packages) ---- */

int recipe_inventory_add(json_t *packages, const struct recipe_inventory_item *it,
                         struct kiln_error *err)
{
        const char *base = strrchr(it->file, '/');
        json_t *j;

        if (!packages)
                return 0;
        base = base ? base + 1 : it->file;
        j = json_pack("{s:s, s:s, s:s}", "type", it->type, "name", it->name, "version",
                      it->version);
        if (j && it->arch && json_object_set_new(j, "architecture", json_string(it->arch)) < 0)
                json_decref(steal_ptr(&j));
        if (j && (json_object_set_new(j, "sha256", json_string(it->sha256)) < 0 ||
                  json_object_set_new(j, "file", json_string(base)) < 0 ||
                  json_object_set_new(j, "url", it->url ? json_string(it->url) : json_null()) < 0))
                json_decref(steal_ptr(&j));
        if (!j)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "cannot list package '%s' from '%s': not UTF-8", it->name,
                                      it->file);
        return json_array_append_new(packages, j) < 0
                       ? kiln_error_set(err, KILN_E_NOMEM, "out of memory")
                       : 0;
}

/* A wheel, named and versioned by its file name (PEP 427); file is a path
 * or URL whose last part is the file name, url what the SBOM shows. */
static int inventory_wheel(json_t *packages, const char *file, const char *sha256,
                           const char *url, struct kiln_error *err)
{
        struct recipe_wheel_name w = {0};
        int rc;

        if (!packages)
                return 0;
        if (recipe_wheel_name_parse(file, &w, err) < 0)
                return -1;
        recipe_pep503_normalize(w.name);
        rc = recipe_inventory_add(packages,
                                  &(struct recipe_inventory_item){.type = "pypi", .name = w.name,
                                                                  .version = w.version,
                                                                  .sha256 = sha256, .file = file,
                                                                  .url = url},
                                  err);
        recipe_wheel_name_release(&w);
        return rc;
}

static void python_target(const json_t *params, struct recipe_python_target *t)
{
        memset(t, 0, sizeof(*t));
        t->python = json_string_value(json_object_get(params, "python"));
        t->platform = json_string_value(json_object_get(params, "platform"));
        t->prefix = json_string_value(json_object_get(params, "prefix"));
        t->site_packages = json_string_value(json_object_get(params, "site_packages"));
        t->interpreter = json_string_value(json_object_get(params, "interpreter"));
}

/* The PEP 503 page of project name on index: INDEX/NAME/ (a URL) or
 * INDEX/NAME/index.html (a directory).  ret_found false: no such page. */
int recipe_index_page(const struct recipe_plan *p, const struct recipe_stage_opts *o,
                      const char *index, const char *name, bool *ret_found, char **ret_html,
                      size_t *ret_len, char **ret_base, struct kiln_error *err)
{
        _cleanup_free_ char *base = NULL, *page = NULL, *page_dir = NULL;
        struct kiln_error e = KILN_ERROR_INIT;

        *ret_found = false;
        if (is_url(index)) {
                _cleanup_free_ char *page_url = NULL;
                size_t n = strlen(index);
                while (n > 0 && index[n - 1] == '/')
                        n--;
                page_dir = kiln_strdupf("%.*s/%s", (int)n, index, name);
                page_url = page_dir ? kiln_strdupf("%s/", page_dir) : NULL;
                if (!page_url)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                page = recipe_input_file(p, o, page_url, false, RECIPE_INDEX_MAX, &e);
                if (!page) {
                        if (e.code == KILN_E_NOT_FOUND)
                                return 0;
                        *err = e;
                        return -1;
                }
        } else {
                base = recipe_resolve_input(p, index, err);
                if (!base)
                        return -1;
                page_dir = kiln_strdupf("%s/%s", base, name);
                page = page_dir ? kiln_strdupf("%s/index.html", page_dir) : NULL;
        }
        if (!page || !page_dir)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (kiln_read_file(page, RECIPE_INDEX_MAX, ret_html, ret_len, &e) < 0) {
                if (e.sys_errno == ENOENT || e.code == KILN_E_NOT_FOUND)
                        return 0;
                *err = e;
                kiln_error_prefix(err, "no project page for '%s' in index '%s'", name, index);
                return -1;
        }
        *ret_found = true;
        *ret_base = steal_ptr(&page_dir);
        return 0;
}

static bool hash_listed(const char *const *hashes, size_t n, const char *sha)
{
        for (size_t i = 0; i < n; i++)
                if (!strcmp(hashes[i], sha))
                        return true;
        return false;
}

/* Installs the wheel at url (from an index that lists sha, or NULL),
 * which must match one of hashes when there are any. */
static int install_url(const struct recipe_plan *p, const struct recipe_stage_opts *o,
                       const char *name, const char *const *hashes, size_t n_hashes,
                       const char *url, const char *sha, const struct recipe_python_target *t,
                       const char *dir, json_t *resolved, json_t *packages, struct kiln_error *err)
{
        _cleanup_free_ char *file = NULL;
        char got[65];

        if (sha && n_hashes && !hash_listed(hashes, n_hashes, sha))
                return kiln_error_set(err, KILN_E_DIGEST,
                                      "sha256 mismatch for '%s': the index's %s is not among the hashes required for '%s'",
                                      url, sha, name);
        /* a key needs the digest, not the file: a cache hit downloads nothing */
        if (!dir && (sha || n_hashes == 1)) {
                json_array_append_new(resolved, json_string(sha ? sha : hashes[0]));
                return inventory_wheel(packages, url, sha ? sha : hashes[0], url, err);
        }
        file = recipe_input_file(p, o, url, true, -1, err);
        if (!file)
                return -1;
        if (recipe_sha256_file(file, got, err) < 0)
                return -1;
        if (n_hashes && !hash_listed(hashes, n_hashes, got))
                return kiln_error_set(err, KILN_E_DIGEST,
                                      "sha256 mismatch for '%s': %s is not among the hashes required for '%s'",
                                      file, got, name);
        if (sha) {
                if (strcmp(sha, got))
                        return kiln_error_set(err, KILN_E_DIGEST,
                                              "sha256 mismatch for '%s': the index says %s, got %s",
                                              file, sha, got);
        } else if (!n_hashes) {
                return kiln_error_set(err, KILN_E_INVALID,
                                      "no sha256 for '%s': give --hash in the requirements or use an index that lists hashes",
                                      url);
        }
        json_array_append_new(resolved, json_string(got));
        if (inventory_wheel(packages, url, got, url, err) < 0)
                return -1;
        if (!dir)
                return 0;
        return recipe_wheel_install(file, got, dir, t, err);
}

/* Installs one requirement picked from the index ("resolve": false). */
static int install_from_index(const struct recipe_plan *p, const struct recipe_stage_opts *o,
                              const char *index, const struct recipe_requirement *q,
                              const struct recipe_python_target *t, const char *dir,
                              json_t *resolved, json_t *packages, struct kiln_error *err)
{
        _cleanup_free_ char *html = NULL, *url = NULL, *sha = NULL, *page_dir = NULL;
        bool found;
        size_t len;

        if (!q->exact)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "requirement for '%s' is not a pin: with \"resolve\": false, give 'NAME', 'NAME==VERSION' or 'NAME==VERSION.*'",
                                      q->name);
        if (recipe_index_page(p, o, index, q->name, &found, &html, &len, &page_dir, err) < 0)
                return -1;
        if (!found)
                return kiln_error_set(err, KILN_E_NOT_FOUND,
                                      "no project page for '%s' in index '%s'", q->name, index);
        if (recipe_simple_index_pick(html, len, page_dir, q, t, &url, &sha, err) < 0)
                return -1;
        return install_url(p, o, q->name, (const char *const *)q->sha256, q->n_sha256, url, sha,
                           t, dir, resolved, packages, err);
}

/* "sha256:ABC..." or "abc..." -> "abc..." (64 lowercase hex), or NULL */
static const char *norm_sha(const char *in, char out[65])
{
        size_t n;

        if (str_has_prefix(in, "sha256:"))
                in += 7;
        n = strlen(in);
        if (n != 64)
                return NULL;
        for (size_t i = 0; i < n; i++)
                out[i] = (char)((in[i] >= 'A' && in[i] <= 'F') ? in[i] + 32 : in[i]);
        out[64] = '\0';
        return out;
}

/* The layer's requirements: "packages", then the "requirements" file. */
static int read_requirements(const struct recipe_plan *p, const struct recipe_stage_opts *o,
                             const json_t *params, struct recipe_requirement **ret, size_t *ret_n,
                             struct kiln_error *err)
{
        struct recipe_requirements all = {0};
        const json_t *v;
        size_t i;

        json_array_foreach(json_object_get(params, "packages"), i, v) {
                struct recipe_requirement *ni = realloc(all.items, (all.n + 1) * sizeof(*ni));
                if (!ni) {
                        recipe_requirements_release(&all);
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                }
                all.items = ni;
                if (recipe_requirement_parse(json_string_value(v), &all.items[all.n], err) < 0) {
                        recipe_requirements_release(&all);
                        return -1;
                }
                all.n++;
        }
        if ((v = json_object_get(params, "requirements"))) {
                _cleanup_free_ char *file =
                        recipe_input_file(p, o, json_string_value(v), false, RECIPE_INDEX_MAX, err);
                _cleanup_free_ char *buf = NULL;
                struct recipe_requirements reqs = {0};
                struct recipe_requirement *ni;
                size_t len;

                if (!file || kiln_read_file(file, RECIPE_INDEX_MAX, &buf, &len, err) < 0 ||
                    recipe_requirements_parse(buf, len, file, &reqs, err) < 0) {
                        recipe_requirements_release(&all);
                        return -1;
                }
                ni = realloc(all.items, (all.n + reqs.n + 1) * sizeof(*ni));
                if (!ni) {
                        recipe_requirements_release(&reqs);
                        recipe_requirements_release(&all);
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                }
                memcpy(ni + all.n, reqs.items, reqs.n * sizeof(*ni));
                all.items = ni;
                all.n += reqs.n;
                free(reqs.items);
        }
        *ret = all.items;
        *ret_n = all.n;
        return 0;
}

struct wheels_ctx {
        const struct recipe_plan *p;
        const struct recipe_stage_opts *o;
        const struct recipe_python_target *t;
        const char *dir;
        json_t *resolved, *packages;
};

static int resolver_page(void *ctx, const char *index, const char *name, bool *ret_found,
                         char **ret_html, size_t *ret_len, char **ret_base, struct kiln_error *err)
{
        const struct wheels_ctx *w = ctx;

        return recipe_index_page(w->p, w->o, index, name, ret_found, ret_html, ret_len, ret_base,
                               err);
}

/* CACHE/pymeta/SHA256: the METADATA of a wheel by the wheel's digest, so
 * resolving again reads no wheel (a 2 GB torch wheel is not downloaded
 * for a layer key) */
static char *metadata_cache_path(const struct recipe_stage_opts *o, const char *sha256)
{
        if (!o->cache_dir || !sha256)
                return NULL;
        return kiln_strdupf("%s/pymeta/%s", o->cache_dir, sha256);
}

static int resolver_metadata(void *ctx, const struct recipe_index_file *f, char **ret_buf,
                             size_t *ret_len, struct kiln_error *err)
{
        const struct wheels_ctx *w = ctx;
        _cleanup_free_ char *cached = metadata_cache_path(w->o, f->sha256);
        _cleanup_free_ char *file = NULL, *murl = NULL;
        struct kiln_error miss = KILN_ERROR_INIT;

        if (cached && kiln_read_file(cached, RECIPE_WHEEL_META_MAX, ret_buf, ret_len, &miss) == 0)
                return 0;
        if (f->has_metadata) {
                murl = kiln_strdupf("%s.metadata", f->url);
                if (!murl)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                file = recipe_input_file(w->p, w->o, murl, true, RECIPE_WHEEL_META_MAX, err);
                if (!file || (f->metadata_sha256 &&
                              recipe_verify_sha256(file, f->metadata_sha256, err) < 0) ||
                    kiln_read_file(file, RECIPE_WHEEL_META_MAX, ret_buf, ret_len, err) < 0)
                        return -1;
        } else {
                file = recipe_input_file(w->p, w->o, f->url, true, -1, err);
                if (!file || (f->sha256 && recipe_verify_sha256(file, f->sha256, err) < 0) ||
                    recipe_wheel_read_metadata(file, ret_buf, ret_len, err) < 0)
                        return -1;
        }
        /* best effort: a cache that cannot be written only costs time */
        if (cached) {
                _cleanup_free_ char *dir = kiln_strdupf("%s/pymeta", w->o->cache_dir);
                if (dir && kiln_mkdir_p(dir, 0755, &miss) == 0)
                        kiln_write_file_atomic(cached, *ret_buf, *ret_len, 0644, &miss);
        }
        return 0;
}

/* pip's hash-checking mode: once a requirement carries --hash, every
 * dependency it pulls in needs one too (a requirement the recipe names
 * itself is checked against the index's hash) */
static int hashes_for(const struct recipe_requirement *reqs, size_t n, const char *name,
                      const struct recipe_requirement **ret, struct kiln_error *err)
{
        bool any = false, named = false;

        *ret = NULL;
        for (size_t i = 0; i < n; i++) {
                if (reqs[i].n_sha256)
                        any = true;
                if (!strcmp(reqs[i].name, name))
                        named = true;
                if (reqs[i].n_sha256 && !strcmp(reqs[i].name, name))
                        *ret = &reqs[i];
        }
        if (any && !named)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "'%s' has no --hash: once one requirement has a hash, every package installed needs one",
                                      name);
        return 0;
}

/* The "dependencies" of the package just listed: the names of the
 * resolved packages it requires (the SBOM's relationships). */
static int inventory_deps(json_t *packages, const struct recipe_resolved *it,
                          struct kiln_error *err)
{
        json_t *last, *deps;

        if (!packages || !(last = json_array_get(packages, json_array_size(packages) - 1)))
                return 0;
        deps = json_array();
        for (size_t i = 0; deps && i < it->n_deps; i++)
                if (json_array_append_new(deps, json_string(it->deps[i])) < 0)
                        json_decref(steal_ptr(&deps));
        if (!deps || json_object_set_new(last, "dependencies", deps) < 0)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        return 0;
}

static int resolve_and_install(struct wheels_ctx *w, bool pre, const char *const *indexes,
                               size_t n_indexes,
                               const struct recipe_requirement *reqs, size_t n_reqs,
                               const char *const *below, size_t n_below, struct kiln_error *err)
{
        _cleanup_free_ struct recipe_pep508 *roots = calloc(n_reqs, sizeof(*roots));
        struct recipe_resolve_opts ro = {
                .indexes = indexes,
                .n_indexes = n_indexes,
                .target = w->t,
                .page = resolver_page,
                .metadata = resolver_metadata,
                .ctx = w,
                .installed = below,
                .n_installed = n_below,
                .pre = pre,
        };
        struct recipe_resolution res = {0};
        int rc = 0;

        if (!roots)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        for (size_t i = 0; i < n_reqs; i++)
                roots[i] = reqs[i].req; /* borrowed: the resolver frees none */
        if (recipe_resolve(roots, n_reqs, &ro, &res, err) < 0)
                return -1;
        for (size_t i = 0; rc == 0 && i < res.n; i++) {
                const struct recipe_resolved *it = &res.items[i];
                const struct recipe_requirement *h;
                rc = hashes_for(reqs, n_reqs, it->name, &h, err);
                if (rc == 0)
                        rc = install_url(w->p, w->o, it->name,
                                         h ? (const char *const *)h->sha256 : NULL,
                                         h ? h->n_sha256 : 0, it->url, it->sha256, w->t, w->dir,
                                         w->resolved, w->packages, err);
                if (rc == 0)
                        rc = inventory_deps(w->packages, it, err);
        }
        recipe_resolution_release(&res);
        return rc;
}

/* "index", then "indexes": the order uv's first-index rule reads them in */
static int layer_indexes(const json_t *params, const char ***ret, size_t *ret_n,
                         struct kiln_error *err)
{
        const json_t *many = json_object_get(params, "indexes"), *v;
        const char *one = json_string_value(json_object_get(params, "index"));
        const char **out = calloc(json_array_size(many) + 1, sizeof(*out));
        size_t n = 0, i;

        if (!out)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (one)
                out[n++] = one;
        json_array_foreach(many, i, v)
                out[n++] = json_string_value(v);
        *ret = out;
        *ret_n = n;
        return 0;
}

static void names_free(char **names, size_t n)
{
        for (size_t i = 0; i < n; i++)
                free(names[i]);
        free(names);
}

/* The PEP 503 names the wheels layers below layer li install (their
 * inventories, resolved the same way). */
static int wheels_below(const struct recipe_plan *p, size_t li, const struct recipe_stage_opts *o,
                        char ***ret, size_t *ret_n, struct kiln_error *err)
{
        struct recipe_stage_opts inv = *o;
        char **names = NULL;
        size_t n = 0;

        inv.inventory = true;
        for (size_t j = 0; j < li; j++) {
                struct recipe_stage_result res = {0};
                const json_t *it;
                size_t k;

                if (p->layers[j].kind != RECIPE_LAYER_WHEELS || p->layers[j].unresolved)
                        continue;
                if (recipe_layer_key(p, j, &inv, &res, err) < 0) {
                        names_free(names, n);
                        return -1;
                }
                json_array_foreach(res.packages, k, it) {
                        char **nn = realloc(names, (n + 1) * sizeof(*nn));
                        if (!nn || !(nn[n] = strdup(json_string_value(json_object_get(it, "name"))))) {
                                if (nn)
                                        names = nn;
                                recipe_stage_result_release(&res);
                                names_free(names, n);
                                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        }
                        names = nn;
                        n++;
                }
                recipe_stage_result_release(&res);
        }
        *ret = names;
        *ret_n = n;
        return 0;
}

/* A source layer's repository: a relative path is the recipe's; URLs go
 * to git as they are. */
static char *source_repository(const struct recipe_plan *p, const json_t *params)
{
        const char *repo = json_string_value(json_object_get(params, "repository"));

        if (!strstr(repo, "://") && repo[0] != '/' && !strchr(repo, '@'))
                return kiln_strdupf("%s/%s", p->recipe_dir, repo);
        return strdup(repo);
}

/* "project_from": the source layer of that name; its pyproject.toml is
 * read from the local checkout, or from the commit the layer builds
 * (copied into *ret_tmp, removed by the caller).  *ret_path: where the
 * layer puts the source in the image. */
static int project_of_source(const struct recipe_plan *p, const struct recipe_stage_opts *o,
                             const char *name, char **ret_dir, char **ret_tmp,
                             const char **ret_path, struct kiln_error *err)
{
        const struct recipe_layer *l = NULL;
        const json_t *params;
        const char *tmp = getenv("TMPDIR");
        _cleanup_free_ char *repo = NULL, *gitdir = NULL, *commit = NULL, *file = NULL;

        for (size_t i = 0; i < p->n_layers && !l; i++)
                if (!strcmp(p->layers[i].name, name))
                        l = &p->layers[i];
        if (!l || l->kind != RECIPE_LAYER_SOURCE)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "'project_from' names '%s', which is not a source layer of the recipe",
                                      name);
        params = l->params;
        *ret_path = json_string_value(json_object_get(params, "path"));
        if (!strcmp(json_string_value(json_object_get(params, "from")), "local")) {
                *ret_dir = recipe_resolve_input(
                        p, json_string_value(json_object_get(params, "local")), err);
                return *ret_dir ? 0 : -1;
        }
        repo = source_repository(p, params);
        if (!repo)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (recipe_git_resolve(repo, json_string_value(json_object_get(params, "ref")),
                               o->cache_dir, &gitdir, &commit, err) < 0)
                return -1;
        *ret_tmp = kiln_strdupf("%s/kiln-project-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!*ret_tmp)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (!mkdtemp(*ret_tmp)) {
                kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create '%s'", *ret_tmp);
                free(*ret_tmp);
                *ret_tmp = NULL;
                return -1;
        }
        file = kiln_strdupf("%s/pyproject.toml", *ret_tmp);
        if (!file)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (recipe_git_read_file(gitdir, commit, "pyproject.toml", file, err) < 0) {
                kiln_error_prefix(err, "source layer '%s' (%s)", name, repo);
                return -1;
        }
        *ret_dir = strdup(*ret_tmp);
        return *ret_dir ? 0 : kiln_error_set(err, KILN_E_NOMEM, "out of memory");
}

/* "project" (a directory) or "project_from" (a source layer):
 * pyproject.toml's requirements (with "extras") join the layer's; the
 * file's digest, the extras and the image path join the key */
static int read_project(const struct recipe_plan *p, const struct recipe_stage_opts *o,
                        const json_t *params, struct recipe_pyproject *pp,
                        const char **ret_image_path, struct recipe_requirement **reqs,
                        size_t *n_reqs, json_t *resolved, struct kiln_error *err)
{
        const char *project = json_string_value(json_object_get(params, "project"));
        const char *from = json_string_value(json_object_get(params, "project_from"));
        const json_t *ex = json_object_get(params, "extras"), *v;
        _cleanup_free_ char *dir = NULL, *tmp = NULL;
        _cleanup_free_ const char **extras = calloc(json_array_size(ex) + 1, sizeof(*extras));
        struct recipe_requirements more = {0};
        struct recipe_requirement *ni;
        const char *source_path = NULL;
        size_t i;
        int rc;

        if (from)
                rc = project_of_source(p, o, from, &dir, &tmp, &source_path, err);
        else
                rc = (dir = recipe_resolve_input(p, project, err)) ? 0 : -1;
        if (rc == 0 && !extras)
                rc = kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        json_array_foreach(ex, i, v)
                extras[i] = json_string_value(v);
        if (rc == 0)
                rc = recipe_pyproject_read(dir, pp, err);
        if (tmp)
                kiln_rm_rf(tmp);
        if (rc < 0 ||
            recipe_pyproject_requirements(pp, extras, json_array_size(ex), from ? from : project,
                                          &more, err) < 0)
                return -1;
        *ret_image_path = json_string_value(json_object_get(params, "project_path"));
        if (!*ret_image_path)
                *ret_image_path = source_path;
        ni = realloc(*reqs, (*n_reqs + more.n + 1) * sizeof(*ni));
        if (!ni) {
                recipe_requirements_release(&more);
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        memcpy(ni + *n_reqs, more.items, more.n * sizeof(*ni));
        *reqs = ni;
        *n_reqs += more.n;
        free(more.items);
        json_array_append_new(resolved, json_pack("{s:s, s:s, s:o}", "pyproject", pp->digest.str,
                                                  "project_path", *ret_image_path,
                                                  "extras",
                                                  ex ? json_deep_copy(ex) : json_array()));
        return 0;
}

/* PEP 660 as pip does it: the editable wheel, built in a scratch
 * directory and installed like any other */
static int install_editable(const struct recipe_pyproject *pp, const char *image_path,
                            const struct recipe_python_target *t, const char *dir,
                            struct kiln_error *err)
{
        const char *tmp = getenv("TMPDIR");
        _cleanup_free_ char *scratch = kiln_strdupf("%s/kiln-editable-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        _cleanup_free_ char *whl = NULL;
        int rc;

        if (!scratch)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (!mkdtemp(scratch))
                return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create '%s'", scratch);
        rc = recipe_editable_wheel_write(pp, image_path, scratch, &whl, err);
        if (rc == 0)
                rc = recipe_wheel_install(whl, NULL, dir, t, err);
        kiln_rm_rf(scratch);
        return rc;
}

/* "pylock": exactly the packages of a PEP 751 lock, each wheel checked
 * against the lock's sha256; relative paths start at the lock's directory */
static int install_pylock(const struct recipe_plan *p, const struct recipe_stage_opts *o,
                          const char *lockfile, const struct recipe_python_target *t,
                          const char *dir, json_t *resolved, json_t *packages,
                          struct kiln_error *err)
{
        _cleanup_free_ char *file = recipe_input_file(p, o, lockfile, false, RECIPE_INDEX_MAX, err);
        _cleanup_free_ char *buf = NULL, *base = NULL;
        struct recipe_pylock_item *items = NULL;
        size_t len, n = 0;
        int rc = 0;

        if (!file || kiln_read_file(file, RECIPE_INDEX_MAX, &buf, &len, err) < 0 ||
            recipe_pylock_read(buf, len, lockfile, t, &items, &n, err) < 0)
                return -1;
        base = strrchr(file, '/') ? strndup(file, (size_t)(strrchr(file, '/') - file)) : strdup(".");
        for (size_t i = 0; rc == 0 && i < n; i++) {
                const char *hashes[1] = {items[i].sha256};
                _cleanup_free_ char *loc = strstr(items[i].url, "://") || items[i].url[0] == '/'
                                                   ? strdup(items[i].url)
                                                   : kiln_strdupf("%s/%s", base, items[i].url);
                rc = !base || !loc ? kiln_error_set(err, KILN_E_NOMEM, "out of memory")
                                   : install_url(p, o, items[i].name, hashes, 1, loc, NULL, t, dir,
                                                 resolved, packages, err);
        }
        recipe_pylock_items_free(items, n);
        return rc;
}

static int stage_wheels(const struct recipe_plan *p, size_t li, const struct recipe_stage_opts *o,
                        const json_t *params, const char *dir, json_t *resolved,
                        json_t *packages, struct kiln_error *err)
{
        struct recipe_python_target t;
        _cleanup_free_ const char **indexes = NULL;
        struct recipe_requirement *reqs = NULL;
        char **below = NULL;
        struct recipe_pyproject pp = {0};
        const char *project_path = NULL;
        size_t n_indexes = 0, n_reqs = 0, n_below = 0;
        const json_t *v;
        size_t i;
        int rc = 0;

        python_target(params, &t);
        if (layer_indexes(params, &indexes, &n_indexes, err) < 0)
                return -1;
        json_array_foreach(json_object_get(params, "wheels"), i, v) {
                const char *path = json_string_value(json_object_get(v, "path"));
                const char *sha = json_string_value(json_object_get(v, "sha256"));
                _cleanup_free_ char *file = NULL;

                if (!sha)
                        return kiln_error_set(err, KILN_E_INVALID, "wheel '%s' has no sha256",
                                              path);
                {
                        char hex[65];
                        if (!norm_sha(sha, hex))
                                return kiln_error_set(err, KILN_E_INVALID,
                                                      "invalid sha256 '%s' for wheel '%s'", sha,
                                                      path);
                        json_array_append_new(resolved, json_string(hex));
                        if (inventory_wheel(packages, path, hex, path, err) < 0)
                                return -1;
                }
                if (!dir)
                        continue; /* the key needs the declared digest only */
                file = recipe_input_file(p, o, path, true, -1, err);
                if (!file || recipe_wheel_install(file, sha, dir, &t, err) < 0)
                        return -1;
        }
        if ((v = json_object_get(params, "pylock")) &&
            install_pylock(p, o, json_string_value(v), &t, dir, resolved, packages, err) < 0)
                return -1;
        if (read_requirements(p, o, params, &reqs, &n_reqs, err) < 0)
                return -1;
        if ((json_object_get(params, "project") || json_object_get(params, "project_from")) &&
            read_project(p, o, params, &pp, &project_path, &reqs, &n_reqs, resolved, err) < 0)
                rc = -1;
        if (rc == 0 && n_reqs && !json_is_false(json_object_get(params, "resolve")))
                rc = wheels_below(p, li, o, &below, &n_below, err);
        if (rc == 0 && n_reqs && !n_indexes)
                rc = kiln_error_set(err, KILN_E_INVALID,
                                    "requirements of layer '%s' need an 'index' to pick wheels from",
                                    p->layers[li].name);
        else if (json_is_false(json_object_get(params, "resolve")))
                for (i = 0; rc == 0 && i < n_reqs; i++)
                        rc = install_from_index(p, o, indexes[0], &reqs[i], &t, dir, resolved,
                                                packages, err);
        else if (n_reqs)
                rc = resolve_and_install(&(struct wheels_ctx){p, o, &t, dir, resolved, packages},
                                         json_is_true(json_object_get(params, "pre")), indexes, n_indexes, reqs, n_reqs,
                                         (const char *const *)below, n_below, err);
        if (rc == 0 && pp.name && dir)
                rc = install_editable(&pp, project_path, &t, dir, err);
        recipe_pyproject_release(&pp);
        names_free(below, n_below);
        for (i = 0; i < n_reqs; i++)
                recipe_requirement_release(&reqs[i]);
        free(reqs);
        return rc;
}

/* The packages of one debs layer: unpacked into dir (when not NULL), their
 * sha256 in resolved, their local paths in files (when not NULL). */
/* The apt sources of a debs layer with dependency resolution (the
 * default): the closure of every source's packages over all the layer's
 * indexes, minus what installed (the dpkg status below) has; then each
 * chosen package from its own source. */
static int apt_resolved(const struct recipe_plan *p, const struct recipe_stage_opts *o,
                        const json_t *params, const char *arch, const char *dir, bool merged_usr,
                        bool status_d, const char *installed, json_t *resolved, json_t *packages,
                        json_t *apt_releases, json_t *files, struct kiln_error *err)
{
        const json_t *apt = json_object_get(params, "apt"), *v, *e;
        size_t n = json_array_size(apt), i, k, n_req = 0;
        const json_t *pins = json_object_get(o->lock_layer, "apt");
        struct recipe_apt_index *x = calloc(n + 1, sizeof(*x));
        char **texts = calloc(n + 1, sizeof(char *));
        const char **reqs = NULL, **names = NULL;
        json_t *chosen = NULL;
        int rc = -1;

        if (!x || !texts)
                goto nomem;
        json_array_foreach(jmut(apt), i, v) n_req += json_array_size(json_object_get(v, "packages"));
        reqs = calloc(n_req + 1, sizeof(char *));
        if (!reqs)
                goto nomem;
        n_req = 0;
        json_array_foreach(jmut(apt), i, v) {
                if (recipe_apt_index_open(p, o, v, arch, json_string_value(json_array_get(pins, i)),
                                          &x[i], err) < 0 ||
                    recipe_apt_read_indexes((const char *const *)x[i].files, x[i].n, &texts[i],
                                            err) < 0)
                        goto out;
                if (apt_releases)
                        json_array_append_new(apt_releases, x[i].release ? json_string(x[i].release)
                                                                         : json_null());
                json_array_foreach(json_object_get(v, "packages"), k, e) reqs[n_req++] =
                        json_string_value(e);
        }
        if (recipe_apt_resolve((const char *const *)texts, n, installed, arch, reqs, n_req, &chosen,
                               err) < 0)
                goto out;
        names = calloc(json_array_size(chosen) + 1, sizeof(char *));
        if (!names)
                goto nomem;
        for (i = 0; i < n; i++) {
                size_t m = 0;
                json_array_foreach(chosen, k, e) {
                        if ((size_t)json_integer_value(json_object_get(e, "source")) != i)
                                continue;
                        names[m++] = json_string_value(json_object_get(e, "spec"));
                }
                if (m && recipe_apt_each(p, o, (const char *const *)x[i].files, x[i].n,
                                         x[i].mirror, names, m, arch, dir, merged_usr, status_d,
                                         resolved, packages, files, err) < 0)
                        goto out;
        }
        rc = 0;
        goto out;
nomem:
        kiln_error_set(err, KILN_E_NOMEM, "out of memory");
out:
        for (i = 0; x && i < n; i++)
                recipe_apt_index_release(&x[i]);
        for (i = 0; texts && i < n; i++)
                free(texts[i]);
        free(x);
        free(texts);
        free(reqs);
        free(names);
        json_decref(chosen);
        return rc;
}

static int debs_each(const struct recipe_plan *p, const struct recipe_stage_opts *o,
                     const json_t *params, const char *dir, bool status_d, const char *installed,
                     json_t *resolved, json_t *packages, json_t *apt_releases, json_t *files,
                     struct kiln_error *err)
{
        bool merged_usr = !json_is_false(json_object_get(params, "merged_usr"));
        const json_t *av = json_object_get(params, "architecture");
        const char *arch = av ? json_string_value(av) : "amd64";
        const json_t *v;
        size_t i;

        json_array_foreach(json_object_get(params, "debs"), i, v) {
                const char *path = json_string_value(json_object_get(v, "path"));
                const char *sha = json_string_value(json_object_get(v, "sha256"));
                _cleanup_free_ char *file = NULL;

                if (!sha)
                        return kiln_error_set(err, KILN_E_INVALID, "package '%s' has no sha256",
                                              path);
                {
                        char hex[65];
                        if (!norm_sha(sha, hex))
                                return kiln_error_set(err, KILN_E_INVALID,
                                                      "invalid sha256 '%s' for package '%s'", sha,
                                                      path);
                        json_array_append_new(resolved, json_string(hex));
                        if (!dir && !packages && !files)
                                continue;
                        file = recipe_input_file(p, o, path, true, -1, err);
                        /* the name, version and architecture are in the package */
                        if (!file || (packages && recipe_deb_inventory(file, hex, path, packages,
                                                                       err) < 0))
                                return -1;
                }
                if (files)
                        json_array_append_new(files, json_string(file));
                if (dir && recipe_deb_unpack_as(file, sha, dir, merged_usr, status_d, NULL, err) < 0)
                        return -1;
        }
        if (!json_is_false(json_object_get(params, "resolve")))
                return apt_resolved(p, o, params, arch, dir, merged_usr, status_d, installed,
                                    resolved, packages, apt_releases, files, err);
        json_array_foreach(json_object_get(params, "apt"), i, v) {
                const json_t *pk = json_object_get(v, "packages"), *e;
                const json_t *pins = json_object_get(o->lock_layer, "apt");
                struct recipe_apt_index x = {0};
                const char **names;
                size_t k;
                int rc;

                if (recipe_apt_index_open(p, o, v, arch, json_string_value(json_array_get(pins, i)),
                                          &x, err) < 0)
                        return -1;
                if (apt_releases)
                        json_array_append_new(apt_releases,
                                              x.release ? json_string(x.release) : json_null());
                names = calloc(json_array_size(pk) + 1, sizeof(char *));
                if (!names) {
                        recipe_apt_index_release(&x);
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                }
                json_array_foreach(pk, k, e) names[k] = json_string_value(e);
                rc = recipe_apt_each(p, o, (const char *const *)x.files, x.n, x.mirror, names,
                                     json_array_size(pk), arch, dir, merged_usr, status_d,
                                     resolved, packages, files, err);
                free(names);
                recipe_apt_index_release(&x);
                if (rc < 0)
                        return -1;
        }
        return 0;
}

/* Adds the packages of files (local .deb paths, or {"path", "configured"}
 * for the layers below) to db; root: the layer's own, whose info/ files
 * are written there. */
static int dpkg_add_files(struct recipe_dpkg *db, const json_t *files, const char *root,
                          struct kiln_error *err)
{
        const json_t *f;
        size_t i;

        json_array_foreach(jmut(files), i, f) {
                struct recipe_deb_meta m = {0};
                const char *path = json_is_string(f)
                                       ? json_string_value(f)
                                       : json_string_value(json_object_get(f, "path"));
                unsigned flags = root ? RECIPE_DPKG_OWN : 0;
                int rc;
                if (json_is_true(json_object_get(f, "configured")))
                        flags |= RECIPE_DPKG_CONFIGURED;
                rc = recipe_deb_meta_read(path, &m, err);
                if (rc == 0)
                        rc = recipe_dpkg_add(db, &m, root, flags, err);
                recipe_deb_meta_release(&m);
                if (rc < 0)
                        return -1;
        }
        return 0;
}

/* The debs layers below layer li: what they install, as dpkg status
 * stanzas appended to *installed (the image below as the resolver sees
 * it); with resolved, their sha256 as "below:HEX" there, and
 * "below-configured" after those of a layer a configure step above it
 * configured; with files, {"path", "configured"} of their packages. */
static int debs_below(const struct recipe_plan *p, const struct recipe_stage_opts *o, size_t li,
                      char **installed, json_t *resolved, json_t *files, struct kiln_error *err)
{
        struct recipe_stage_opts bo = *o;

        /* their Releases are their own layers' to pin */
        bo.lock_layer = NULL;
        bo.inventory = true;
        for (size_t k = 0; k < li; k++) {
                json_t *kres = json_array(), *inv = json_array();
                json_t *kfiles = files ? json_array() : NULL;
                bool configured = k + 1 < li && p->layers[k + 1].configure_step;
                const json_t *s;
                size_t j;
                int rc = 0;
                if (p->layers[k].kind != RECIPE_LAYER_DEBS) {
                        json_decref(kres);
                        json_decref(inv);
                        json_decref(kfiles);
                        continue;
                }
                if (!kres || !inv || (files && !kfiles))
                        rc = kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                else
                        rc = debs_each(p, &bo, p->layers[k].params, NULL, false, *installed, kres,
                                       inv, NULL, kfiles, err);
                json_array_foreach(rc < 0 ? NULL : kres, j, s) {
                        if (resolved)
                                json_array_append_new(resolved, json_sprintf("below:%s",
                                                                             json_string_value(s)));
                }
                if (rc == 0 && resolved && configured)
                        json_array_append_new(resolved, json_string("below-configured"));
                json_array_foreach(rc < 0 ? NULL : kfiles, j, s) json_array_append_new(
                    files, json_pack("{s:O, s:b}", "path", s, "configured", configured));
                json_decref(kfiles);
                json_array_foreach(rc < 0 ? NULL : inv, j, s) {
                        char *more = kiln_strdupf(
                                "%s\n\nPackage: %s\nStatus: install ok installed\nVersion: %s\nArchitecture: %s\n",
                                *installed ? *installed : "",
                                json_string_value(json_object_get(s, "name")),
                                json_string_value(json_object_get(s, "version")),
                                json_string_value(json_object_get(s, "architecture")));
                        if (!more) {
                                rc = kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                                break;
                        }
                        free(*installed);
                        *installed = more;
                }
                json_decref(kres);
                json_decref(inv);
                if (rc < 0)
                        return -1;
        }
        return 0;
}

/* A debs layer.  On a base with a dpkg database the layer carries the
 * merged one (recipe_dpkg.c): its key then covers the base's status and
 * the packages of the debs layers below, which the status lists too. */
static int stage_debs(const struct recipe_plan *p, const struct recipe_stage_opts *o, size_t li,
                      const json_t *params, const char *dir, json_t *resolved,
                      json_t *packages, json_t *apt_releases, struct kiln_error *err)
{
        _cleanup_free_ char *status = NULL, *installed = NULL;
        struct recipe_dpkg *db = NULL;
        json_t *below = json_array(), *own = json_array();
        char hex[65];
        size_t len;
        int rc = -1;

        if (recipe_dpkg_status_path(o->base_root, &status) < 0 || !below || !own) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto out;
        }
        if (status) {
                if (recipe_sha256_file(status, hex, err) < 0 ||
                    kiln_read_file(status, 64u << 20, &installed, &len, err) < 0)
                        goto out;
                json_array_append_new(resolved, json_sprintf("dpkg-status:sha256:%s", hex));
        }
        /* without dpkg in the base: status.d, as distroless images have */
        if (debs_below(p, o, li, &installed, status ? resolved : NULL,
                       status && dir ? below : NULL, err) < 0 ||
            debs_each(p, o, params, dir, !status, installed, resolved, packages, apt_releases,
                      status && dir ? own : NULL, err) < 0)
                goto out;
        if (status && dir &&
            (recipe_dpkg_load(status, &db, err) < 0 || dpkg_add_files(db, below, NULL, err) < 0 ||
             dpkg_add_files(db, own, dir, err) < 0 || recipe_dpkg_write(db, dir, err) < 0))
                goto out;
        rc = 0;
out:
        recipe_dpkg_free(db);
        json_decref(below);
        json_decref(own);
        return rc;
}

static int stage_source(const struct recipe_plan *p, const json_t *params, const char *dir,
                        const struct recipe_stage_opts *o, struct recipe_stage_result *res,
                        json_t *resolved, struct kiln_error *err)
{
        const char *from = json_string_value(json_object_get(params, "from"));
        const char *path = json_string_value(json_object_get(params, "path"));
        const json_t *ref = json_object_get(params, "ref");

        if (!strcmp(from, "local")) {
                _cleanup_free_ char *src = recipe_resolve_input(
                        p, json_string_value(json_object_get(params, "local")), err);
                char digest[OCI_DIGEST_MAX];
                if (!src)
                        return -1;
                if (recipe_local_digest(src, digest, &res->excluded, err) < 0)
                        return -1;
                json_array_append_new(resolved, json_string(digest));
                return dir ? recipe_local_stage(src, dir, path, err) : 0;
        }
        {
                _cleanup_free_ char *repo = source_repository(p, params);

                if (!repo)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                {
                        _cleanup_free_ char *gitdir = NULL;
                        if (recipe_git_resolve(repo, ref ? json_string_value(ref) : "HEAD",
                                               o->cache_dir, &gitdir, &res->revision, err) < 0)
                                return -1;
                        json_array_append_new(resolved, json_string(res->revision));
                        if (!dir)
                                return 0;
                        if (recipe_git_export(gitdir, res->revision, dir, path, err) < 0) {
                                kiln_error_prefix(err, "git source '%s'", repo);
                                return -1;
                        }
                        return 0;
                }
        }
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The wheels a build step wrote to out_dir, sorted by file name. */
static int built_wheels(const char *out_dir, char ***ret, size_t *ret_n, struct kiln_error *err)
{
        DIR *d = opendir(out_dir);
        struct dirent *de;
        char **names = NULL;
        size_t n = 0;

        if (!d)
                return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot open '%s'", out_dir);
        while ((de = readdir(d))) {
                char **nn;
                if (!str_has_suffix(de->d_name, ".whl"))
                        continue;
                nn = realloc(names, (n + 1) * sizeof(char *));
                if (!nn || !(nn[n] = kiln_strdupf("%s/%s", out_dir, de->d_name))) {
                        names = nn ? nn : names;
                        closedir(d);
                        for (size_t k = 0; k < n; k++)
                                free(names[k]);
                        free(names);
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                }
                names = nn;
                n++;
        }
        closedir(d);
        if (n == 0) {
                free(names);
                return kiln_error_set(err, KILN_E_NOT_FOUND, "build step wrote no wheel to '%s'",
                                      out_dir);
        }
        qsort(names, n, sizeof(char *), cmp_str);
        *ret = names;
        *ret_n = n;
        return 0;
}

static bool str_eq(const char *a, const char *b)
{
        return a && b && !strcmp(a, b);
}

static int stage_build(const struct recipe_plan *p, const json_t *params, const char *dir,
                       const struct recipe_stage_opts *o, struct recipe_stage_result *res,
                       json_t *resolved, json_t *packages, struct kiln_error *err)
{
        const json_t *cmd = json_object_get(params, "command");
        const json_t *env = json_object_get(params, "env");
        const json_t *inputs = json_object_get(params, "inputs");
        const char *install = json_string_value(json_object_get(params, "install"));
        const char *output = json_string_value(json_object_get(params, "output"));
        size_t n_argv = json_array_size(cmd), n_env = json_object_size(env);
        size_t n_in = json_array_size(inputs), i;
        const char **argv = calloc(n_argv + 1, sizeof(char *));
        char **envs = calloc(n_env + 1, sizeof(char *));
        char **ins = calloc(n_in + 1, sizeof(char *));
        struct recipe_build_step s = {0};
        char *out_dir = NULL, *sdist = NULL, *sdist_sha = NULL;
        const json_t *sdist_params = json_object_get(params, "sdist");
        const char *key;
        const json_t *v;
        bool wheels;
        int rc = -1;

        if (!argv || !envs || !ins) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto out;
        }
        json_array_foreach(cmd, i, v) argv[i] = json_string_value(v);
        i = 0;
        json_object_foreach(jmut(env), key, v) envs[i++] = kiln_strdupf("%s=%s", key,
                                                                             json_string_value(v));
        qsort(envs, n_env, sizeof(char *), cmp_str);
        json_array_foreach(inputs, i, v) if (!(ins[i] = recipe_resolve_input(p, json_string_value(v),
                                                                              err))) goto out;
        s.argv = argv;
        s.argc = n_argv;
        s.env = (const char *const *)envs;
        s.n_env = n_env;
        s.inputs = (const char *const *)ins;
        s.n_inputs = n_in;
        s.remote = o->build_remote;
        s.log = o->log;
        s.layer = o->layer;
        if (str_eq(json_string_value(json_object_get(params, "in")), "image"))
                s.sandbox = o->in_image;
        wheels = install && !strcmp(install, "wheels");
        /* the source distribution: its sha256 keys the step, so a key
         * downloads nothing; a run needs the file */
        if (sdist_params && recipe_sdist_pick(p, o, sdist_params, dir != NULL, &sdist,
                                              &sdist_sha, packages, err) < 0)
                goto out;
        s.sdist = sdist;
        s.sdist_sha256 = sdist_sha;
        /* a key needs the step's key only; the inventory of a step that
         * installs wheels needs its output (cached, fetched or run) */
        if (!dir && !(packages && wheels && !sdist)) {
                if (recipe_build_key(&s, &res->cache_key, err) < 0)
                        goto out;
                json_array_append_new(resolved, json_string(res->cache_key));
                rc = 0;
                goto out;
        }
        if (!o->cache_dir) {
                kiln_error_set(err, KILN_E_USAGE, "a build layer needs a cache directory");
                goto out;
        }
        if (str_eq(json_string_value(json_object_get(params, "in")), "image") && !s.sandbox) {
                kiln_error_set(err, KILN_E_UNSUPPORTED,
                               "a build step in the image runs only in kiln build");
                goto out;
        }
        if (recipe_build_run(&s, o->cache_dir, &out_dir, &res->cache_key, &res->cached, err) < 0)
                goto out;
        json_array_append_new(resolved, json_string(res->cache_key));
        if (output) {
                char *sub = recipe_path_under(out_dir, output, err);
                if (!sub)
                        goto out;
                free(out_dir);
                out_dir = sub;
        }
        if (dir && kiln_mkdir_p(dir, 0755, err) < 0)
                goto out;
        if (wheels) {
                struct recipe_python_target t;
                char **names = NULL;
                size_t n = 0;

                if (built_wheels(out_dir, &names, &n, err) < 0)
                        goto out;
                python_target(params, &t);
                rc = 0;
                for (size_t k = 0; k < n; k++) {
                        char hex[65];
                        /* built from an sdist: the sdist names the package */
                        if (rc == 0 && packages && !sdist)
                                rc = recipe_sha256_file(names[k], hex, err) < 0
                                             ? -1
                                             : inventory_wheel(packages, names[k], hex, NULL, err);
                        if (rc == 0 && dir)
                                rc = recipe_wheel_install(names[k], NULL, dir, &t, err);
                        free(names[k]);
                }
                free(names);
                goto out;
        } else {
                const json_t *pv = json_object_get(params, "path");
                char *to = recipe_path_under(dir, pv ? json_string_value(pv) : "/", err);
                if (!to)
                        goto out;
                rc = recipe_mkdir_p(to, err) < 0 ? -1 : recipe_copy_tree(out_dir, to, err);
                free(to);
                goto out;
        }
out:
        for (i = 0; envs && i < n_env; i++)
                free(envs[i]);
        for (i = 0; ins && i < n_in; i++)
                free(ins[i]);
        free(argv);
        free(envs);
        free(ins);
        free(out_dir);
        free(sdist);
        free(sdist_sha);
        return rc;
}

static int layer_key(const struct recipe_layer *l, json_t *resolved, char **ret,
                     char **ret_inputs, struct kiln_error *err)
{
        json_t *params = json_deep_copy(l->params), *j;
        struct oci_digest d;
        char *buf;

        /* the name and comment do not change what the layer holds; nor
         * does a debs layer's "configure": its configure step is a layer
         * of its own */
        json_object_del(params, "name");
        json_object_del(params, "comment");
        if (l->kind == RECIPE_LAYER_DEBS)
                json_object_del(params, "configure");
        j = json_pack("{s:i, s:s, s:o, s:O}", "kiln-layer", 1, "kind",
                      recipe_layer_kind_name(l->kind), "params", params, "inputs", resolved);
        buf = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        json_decref(j);
        if (!buf)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        oci_digest_of_buffer(buf, strlen(buf), &d);
        if (ret_inputs)
                *ret_inputs = buf;
        else
                free(buf);
        *ret = strdup(d.str);
        return *ret ? 0 : kiln_error_set(err, KILN_E_NOMEM, "out of memory");
}

/* tree and files layers: host paths, through the layer source of layers/
 * (the same excludes, parents and hardlinks as `kiln append`).  The key's
 * inputs are every entry's path, type, mode, size, link target and content
 * digest; staging copies the entries into dir. */
static int copy_entry(const struct layer_source_entry *e, const char *dir, struct kiln_error *err)
{
        _cleanup_free_ char *to = kiln_strdupf("%s/%s", dir, e->path);
        _cleanup_free_ char *parent = to ? kiln_dirname(to) : NULL;
        mode_t perm = e->st.st_mode & 07777;

        if (!to || !parent)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (recipe_mkdir_p(parent, err) < 0)
                return -1;
        if (S_ISDIR(e->st.st_mode)) {
                if (mkdir(to, 0755) < 0 && errno != EEXIST)
                        return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create '%s'", to);
                chmod(to, perm);
                return 0;
        }
        if (S_ISLNK(e->st.st_mode)) {
                if (symlink(e->link ? e->link : "", to) < 0)
                        return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create '%s'", to);
                return 0;
        }
        if (S_ISREG(e->st.st_mode) && e->host) {
                char buf[65536];
                ssize_t n;
                int in = open(e->host, O_RDONLY | O_CLOEXEC), out;
                if (in < 0)
                        return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot read '%s'", e->host);
                out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
                if (out < 0) {
                        close(in);
                        return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create '%s'", to);
                }
                while ((n = read(in, buf, sizeof(buf))) > 0)
                        if (write(out, buf, (size_t)n) != n) {
                                n = -1;
                                break;
                        }
                close(in);
                if (close(out) < 0 || n < 0)
                        return kiln_error_set(err, KILN_E_IO, "cannot copy '%s'", e->host);
                chmod(to, perm);
        }
        return 0;
}

/* what: the glob or the file, for the message */
static int mode_rule(struct layer_source *src, const char *base, const char *glob,
                     const char *ms, const char *what, const struct recipe_layer *l,
                     struct kiln_error *err)
{
        if (!ms || !recipe_mode_valid(ms) || strchr(ms, '$'))
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid mode '%s' for '%s' in layer '%s': expected octal like 0755",
                                      ms ? ms : "", what, l->name);
        return layer_source_add_mode_rule(src, base, glob, (unsigned)strtol(ms, NULL, 8), err);
}

int recipe_layer_modes(const struct recipe_layer *l, struct layer_source *src,
                       struct kiln_error *err)
{
        const json_t *params = l->params;
        const char *glob;
        json_t *v;
        size_t i;

        /* a package's modes are its content, pinned by its sha256, and
         * those its maintainer scripts set are its too (passwords.dat 0600) */
        src->keep_modes = l->kind == RECIPE_LAYER_DEBS || l->configure_step ||
                          json_is_true(json_object_get(params, "keep_modes"));
        if (l->kind == RECIPE_LAYER_TREE) {
                const char *dest = json_string_value(json_object_get(params, "dest"));
                json_object_foreach(json_object_get(params, "modes"), glob, v)
                        if (mode_rule(src, dest, glob, json_string_value(v), glob, l, err) < 0)
                                return -1;
        } else if (l->kind == RECIPE_LAYER_FILES) {
                json_array_foreach(json_object_get(params, "files"), i, v) {
                        const char *ms = json_string_value(json_object_get(v, "mode"));
                        const char *dest = json_string_value(json_object_get(v, "dest"));
                        if (ms && mode_rule(src, dest, ".", ms, dest, l, err) < 0)
                                return -1;
                }
        }
        return 0;
}

static int stage_host(const struct recipe_plan *p, const struct recipe_layer *l, const char *dir,
                      json_t *resolved, struct kiln_error *err)
{
        struct layer_source *src = layer_source_new(err);
        const json_t *params = l->params;
        int rc = -1;

        if (!src)
                return -1;
        if (recipe_layer_modes(l, src, err) < 0)
                goto out;
        if (l->kind == RECIPE_LAYER_TREE) {
                _cleanup_free_ char *from = recipe_resolve_input(
                        p, json_string_value(json_object_get(params, "src")), err);
                json_t *ex = json_object_get(params, "exclude");
                const char **pats = calloc(json_array_size(ex) + 1, sizeof(*pats));
                size_t i;
                json_t *v;
                if (!from || !pats) {
                        free(pats);
                        goto out;
                }
                json_array_foreach(ex, i, v) pats[i] = json_string_value(v);
                rc = layer_source_add_tree(src, from, json_string_value(json_object_get(params, "dest")),
                                           pats, json_array_size(ex), err);
                free(pats);
                if (rc < 0)
                        goto out;
                rc = -1;
        } else {
                size_t i;
                json_t *f;
                json_array_foreach(json_object_get(params, "files"), i, f) {
                        _cleanup_free_ char *from = NULL;
                        const char *ms = json_string_value(json_object_get(f, "mode"));
                        const char *link = json_string_value(json_object_get(f, "link"));
                        char *end = NULL;
                        long mode = ms ? strtol(ms, &end, 8) : -1;
                        if (link) {
                                if (layer_source_add_link(
                                            src, json_string_value(json_object_get(f, "dest")),
                                            link, err) < 0)
                                        goto out;
                                continue;
                        }
                        from = recipe_resolve_input(p, json_string_value(json_object_get(f, "src")),
                                                    err);
                        if (!from)
                                goto out;
                        if (ms && (*end || mode < 0 || mode > 07777)) {
                                kiln_error_set(err, KILN_E_INVALID,
                                               "invalid mode '%s' for '%s': expected octal like 0755",
                                               ms, json_string_value(json_object_get(f, "src")));
                                goto out;
                        }
                        if (layer_source_add_file(src, from,
                                                  json_string_value(json_object_get(f, "dest")),
                                                  (int)mode, err) < 0)
                                goto out;
                }
        }
        if (layer_source_finish(src, err) < 0)
                goto out;
        for (size_t i = 0; i < src->n; i++) {
                const struct layer_source_entry *e = &src->entries[i];
                json_t *j = json_pack("{s:s, s:i, s:I}", "path", e->path, "mode",
                                      (int)e->st.st_mode, "size", (json_int_t)e->st.st_size);
                if (e->link)
                        json_object_set_new(j, "link", json_string(e->link));
                if (e->hardlink)
                        json_object_set_new(j, "hardlink", json_string(e->hardlink));
                if (S_ISREG(e->st.st_mode) && e->host && !e->hardlink) {
                        struct oci_hasher h;
                        struct oci_digest d;
                        char chunk[65536];
                        ssize_t r;
                        int fd = open(e->host, O_RDONLY | O_CLOEXEC);
                        if (fd < 0 || oci_hasher_init(&h, OCI_DIGEST_SHA256, err) < 0) {
                                if (fd >= 0)
                                        close(fd);
                                json_decref(j);
                                kiln_error_set_errno(err, KILN_E_IO, errno, "cannot read '%s'", e->host);
                                goto out;
                        }
                        while ((r = read(fd, chunk, sizeof(chunk))) > 0)
                                oci_hasher_update(&h, chunk, (size_t)r);
                        close(fd);
                        oci_hasher_final(&h, &d);
                        oci_hasher_release(&h);
                        json_object_set_new(j, "sha256", json_string(d.str));
                }
                json_array_append_new(resolved, j);
                if (dir && copy_entry(e, dir, err) < 0)
                        goto out;
        }
        rc = 0;
out:
        layer_source_free(src);
        return rc;
}

/* run layers: the key's inputs are the content of each input (by position:
 * they are bound at /kiln/inputs/N); the layer itself is made in the
 * sandbox by recipe_image.c, which adds the diffIDs below to the key. */
static int key_run(const struct recipe_plan *p, const json_t *params, const char *dir,
                   json_t *resolved, struct kiln_error *err)
{
        size_t i;
        json_t *v;

        if (dir)
                return kiln_error_set(err, KILN_E_UNSUPPORTED,
                                      "a run layer is made in the image, not staged");
        json_array_foreach(json_object_get(params, "inputs"), i, v) {
                _cleanup_free_ char *path = recipe_resolve_input(p, json_string_value(v), err);
                char d[OCI_DIGEST_MAX];
                if (!path || recipe_tree_digest(path, NULL, NULL, d, err) < 0)
                        return -1;
                json_array_append_new(resolved, json_string(d));
        }
        return 0;
}

/* dir NULL: resolve only (nothing is written). */
static int run_layer(const struct recipe_plan *plan, size_t i, const char *dir,
                     const struct recipe_stage_opts *opts, struct recipe_stage_result *res,
                     struct kiln_error *err)
{
        const struct recipe_layer *l = &plan->layers[i];
        json_t *resolved = json_array();
        json_t *packages = opts->inventory ? json_array() : NULL;
        int rc;

        if (!resolved || (opts->inventory && !packages)) {
                json_decref(resolved);
                json_decref(packages);
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        switch (l->kind) {
        case RECIPE_LAYER_WHEELS:
                rc = stage_wheels(plan, i, opts, l->params, dir, resolved, packages, err);
                break;
        case RECIPE_LAYER_DEBS:
                res->apt_releases = json_array();
                rc = res->apt_releases ? stage_debs(plan, opts, i, l->params, dir, resolved,
                                                    packages, res->apt_releases, err)
                                       : kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                break;
        case RECIPE_LAYER_SOURCE:
                rc = stage_source(plan, l->params, dir, opts, res, resolved, err);
                break;
        case RECIPE_LAYER_BUILD:
                rc = stage_build(plan, l->params, dir, opts, res, resolved, packages, err);
                break;
        case RECIPE_LAYER_RUN:
                rc = key_run(plan, l->params, dir, resolved, err);
                break;
        case RECIPE_LAYER_TREE:
        case RECIPE_LAYER_FILES:
                if (dir && kiln_mkdir_p(dir, 0755, err) < 0) {
                        rc = -1;
                        break;
                }
                rc = stage_host(plan, l, dir, resolved, err);
                break;
        default: rc = kiln_error_set(err, KILN_E_INTERNAL, "unknown layer kind"); break;
        }
        if (rc == 0)
                rc = layer_key(l, resolved, &res->layer_key, &res->layer_inputs, err);
        json_decref(resolved);
        if (rc == 0)
                res->packages = packages;
        else
                json_decref(packages);
        return rc;
}

int recipe_layer_key(const struct recipe_plan *plan, size_t i,
                     const struct recipe_stage_opts *opts, struct recipe_stage_result *ret,
                     struct kiln_error *err)
{
        static const struct recipe_stage_opts none = {0};
        struct recipe_stage_result res = {0};

        if (i >= plan->n_layers)
                return kiln_error_set(err, KILN_E_INTERNAL, "no layer %zu in the plan", i);
        if (plan->layers[i].unresolved && plan->layers[i].kind != RECIPE_LAYER_SOURCE)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "layer '%s' still holds unresolved values",
                                      plan->layers[i].name);
        if (run_layer(plan, i, NULL, opts ? opts : &none, &res, err) < 0) {
                recipe_stage_result_release(&res);
                return -1;
        }
        *ret = res;
        return 0;
}

int recipe_stage_layer(const struct recipe_plan *plan, size_t i, const char *dir,
                       const struct recipe_stage_opts *opts, struct recipe_stage_result *ret,
                       struct kiln_error *err)
{
        static const struct recipe_stage_opts none = {0};
        const struct recipe_layer *l;
        struct recipe_stage_result res = {0};
        int rc;

        if (!opts)
                opts = &none;
        if (i >= plan->n_layers)
                return kiln_error_set(err, KILN_E_INTERNAL, "no layer %zu in the plan", i);
        l = &plan->layers[i];
        if (l->unresolved && l->kind != RECIPE_LAYER_SOURCE)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "layer '%s' still holds unresolved values", l->name);
        {
                /* the directory must be new or empty: staging never merges */
                DIR *d = opendir(dir);
                if (d) {
                        struct dirent *de;
                        bool empty = true;
                        while ((de = readdir(d)))
                                if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
                                        empty = false;
                        closedir(d);
                        if (!empty)
                                return kiln_error_set(err, KILN_E_INVALID,
                                                      "staging directory '%s' is not empty", dir);
                }
        }
        if (kiln_mkdir_p(dir, 0755, err) < 0)
                return -1;
        rc = run_layer(plan, i, dir, opts, &res, err);
        if (rc < 0) {
                recipe_stage_result_release(&res);
                return -1;
        }
        *ret = res;
        return 0;
}
