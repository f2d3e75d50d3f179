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

bool recipe_input_is_url(const char *s)
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

        if (!recipe_input_is_url(s))
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
                _cleanup_free_ char *repo = recipe_source_repository(p, params);

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
                recipe_python_target_of(params, &t);
                rc = 0;
                for (size_t k = 0; k < n; k++) {
                        char hex[65];
                        /* built from an sdist: the sdist names the package */
                        if (rc == 0 && packages && !sdist)
                                rc = recipe_sha256_file(names[k], hex, err) < 0
                                             ? -1
                                             : recipe_inventory_wheel(packages, names[k], hex, NULL, err);
                        if (rc == 0 && dir)
                                rc = recipe_wheel_take(o, names[k], NULL, dir, &t, err);
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
                rc = recipe_stage_wheels(plan, i, opts, l->params, dir, resolved, packages, err);
                break;
        case RECIPE_LAYER_DEBS:
                res->apt_releases = json_array();
                rc = res->apt_releases ? recipe_stage_debs(plan, opts, i, l->params, dir, resolved,
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
