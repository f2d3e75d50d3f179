/* Build steps: a host command whose output directory is cached by the
 * digest of what went in (command, environment, input content). */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "digest.h"
#include "io.h"
#include "json.h"
#include "recipe_internal.h"
#include "stage.h"
#include "util.h"
#include "writer.h"

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Hashes a file or a tree: names (sorted), kinds, exec bits, content,
 * link targets.  Owners and times are left out: they do not change what
 * a build makes. */
static int hash_path(struct oci_hasher *h, const char *path, const char *rel,
                     bool (*skip)(void *ctx, const char *rel, bool is_dir), void *ctx,
                     struct kiln_error *err)
{
        struct stat st;

        if (lstat(path, &st) < 0)
                return kiln_error_set_errno(err, errno == ENOENT ? KILN_E_NOT_FOUND : KILN_E_IO,
                                            errno, "cannot stat build input '%s'", path);
        if (S_ISREG(st.st_mode)) {
                char hex[65], line[4200];
                if (recipe_sha256_file(path, hex, err) < 0)
                        return -1;
                snprintf(line, sizeof(line), "f %s %o %s\n", rel, (unsigned)(st.st_mode & 0111),
                         hex);
                oci_hasher_update(h, line, strlen(line));
        } else if (S_ISLNK(st.st_mode)) {
                char target[4096], line[8300];
                ssize_t n = readlink(path, target, sizeof(target) - 1);
                if (n < 0)
                        return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot read link '%s'",
                                                    path);
                target[n] = '\0';
                snprintf(line, sizeof(line), "l %s %s\n", rel, target);
                oci_hasher_update(h, line, strlen(line));
        } else if (S_ISDIR(st.st_mode)) {
                DIR *d = opendir(path);
                struct dirent *de;
                char **names = NULL;
                size_t n = 0;
                int rc = 0;
                char line[4200];

                if (!d)
                        return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot open '%s'", path);
                while ((de = readdir(d))) {
                        char **nn;
                        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                                continue;
                        nn = realloc(names, (n + 1) * sizeof(char *));
                        if (!nn)
                                break;
                        names = nn;
                        names[n++] = strdup(de->d_name);
                }
                closedir(d);
                qsort(names, n, sizeof(char *), cmp_str);
                snprintf(line, sizeof(line), "d %s\n", rel);
                oci_hasher_update(h, line, strlen(line));
                for (size_t i = 0; i < n; i++) {
                        char *p = kiln_strdupf("%s/%s", path, names[i]);
                        char *r = kiln_strdupf("%s/%s", rel, names[i]);
                        struct stat cst;
                        /* skip() sees paths relative to the top ("a/b") */
                        if (rc == 0 && p && r && skip &&
                            skip(ctx, r + 2, lstat(p, &cst) == 0 && S_ISDIR(cst.st_mode))) {
                                free(p);
                                free(r);
                                free(names[i]);
                                continue;
                        }
                        if (rc == 0)
                                rc = p && r ? hash_path(h, p, r, skip, ctx, err)
                                            : kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        free(p);
                        free(r);
                        free(names[i]);
                }
                free(names);
                return rc;
        } else {
                return kiln_error_set(err, KILN_E_UNSUPPORTED,
                                      "build input '%s' is not a file, directory or link", path);
        }
        return 0;
}

int recipe_tree_digest(const char *path, bool (*skip)(void *ctx, const char *rel, bool is_dir),
                       void *ctx, char ret[OCI_DIGEST_MAX], struct kiln_error *err)
{
        struct oci_hasher h;
        struct oci_digest d;

        if (oci_hasher_init(&h, OCI_DIGEST_SHA256, err) < 0)
                return -1;
        if (hash_path(&h, path, ".", skip, ctx, err) < 0) {
                oci_hasher_release(&h);
                return -1;
        }
        oci_hasher_final(&h, &d);
        oci_hasher_release(&h);
        memcpy(ret, d.str, sizeof(d.str));
        return 0;
}

static bool env_declared(const struct recipe_build_step *s, const char *name_eq)
{
        for (size_t i = 0; i < s->n_env; i++)
                if (str_has_prefix(s->env[i], name_eq))
                        return true;
        return false;
}

static void free_strv(char **v, size_t n)
{
        for (size_t i = 0; v && i < n; i++)
                free(v[i]);
        free(v);
}

/* The step's environment: its own, plus what every step gets unless it
 * says otherwise, so no builder's time zone, locale or clock reaches its
 * output (SOURCE_DATE_EPOCH also makes Python write hash-based .pyc).
 * Sorted; part of the key. */
static int step_env(const struct recipe_build_step *s, char ***ret, size_t *ret_n,
                    struct kiln_error *err)
{
        struct layer_writer_opts wo;
        char sde[48];
        const char *fixed[] = {"LC_ALL=C", "TZ=UTC", sde};
        char **v;
        size_t n = 0;

        if (layer_writer_opts_init(&wo, err) < 0)
                return -1;
        snprintf(sde, sizeof(sde), "SOURCE_DATE_EPOCH=%lld", (long long)wo.mtime);
        v = calloc(s->n_env + ARRAY_SIZE(fixed) + 1, sizeof(char *));
        if (!v)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        for (size_t i = 0; i < s->n_env; i++)
                if (!(v[n++] = strdup(s->env[i])))
                        goto nomem;
        for (size_t i = 0; i < ARRAY_SIZE(fixed); i++) {
                char name[32];
                snprintf(name, sizeof(name), "%.*s", (int)(strchr(fixed[i], '=') - fixed[i] + 1),
                         fixed[i]);
                if (!env_declared(s, name) && !(v[n++] = strdup(fixed[i])))
                        goto nomem;
        }
        qsort(v, n, sizeof(char *), cmp_str);
        *ret = v;
        *ret_n = n;
        return 0;
nomem:
        free_strv(v, n);
        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
}

int recipe_build_key(const struct recipe_build_step *s, char **ret_key, struct kiln_error *err)
{
        json_t *j = json_object(), *argv = json_array(), *env = json_array(), *in = json_array();
        char **sorted = NULL;
        size_t n_sorted = 0;
        char *buf = NULL;
        size_t len;
        struct oci_digest d;
        int rc = -1;

        if (!j || !argv || !env || !in) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto out;
        }
        if (step_env(s, &sorted, &n_sorted, err) < 0)
                goto out;
        for (size_t i = 0; i < s->argc; i++)
                json_array_append_new(argv, json_string(s->argv[i]));
        for (size_t i = 0; i < n_sorted; i++)
                json_array_append_new(env, json_string(sorted[i]));
        /* inputs by content only: moving the checkout keeps the cache */
        for (size_t i = 0; i < s->n_inputs; i++) {
                struct oci_hasher h;
                struct oci_digest id;
                if (oci_hasher_init(&h, OCI_DIGEST_SHA256, err) < 0)
                        goto out;
                if (hash_path(&h, s->inputs[i], ".", NULL, NULL, err) < 0) {
                        oci_hasher_release(&h);
                        goto out;
                }
                oci_hasher_final(&h, &id);
                oci_hasher_release(&h);
                json_array_append_new(in, json_string(id.str));
        }
        json_object_set(j, "argv", argv);
        json_object_set(j, "env", env);
        json_object_set(j, "inputs", in);
        if (s->sdist) {
                const char *file = strrchr(s->sdist, '/') ? strrchr(s->sdist, '/') + 1 : s->sdist;
                json_object_set_new(j, "sdist", json_pack("{s:s, s:s}", "file", file, "sha256",
                                                          s->sdist_sha256 ? s->sdist_sha256 : ""));
        }
        if (oci_json_dump(j, &buf, &len, err) < 0)
                goto out;
        oci_digest_of_buffer(buf, len, &d);
        *ret_key = strdup(d.str);
        rc = *ret_key ? 0 : kiln_error_set(err, KILN_E_NOMEM, "out of memory");
out:
        free(buf);
        free_strv(sorted, n_sorted);
        json_decref(j);
        json_decref(argv);
        json_decref(env);
        json_decref(in);
        return rc;
}

extern char **environ;

static int write_all(int fd, const char *p, size_t n)
{
        while (n) {
                ssize_t w = write(fd, p, n);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        return -1;
                p += w;
                n -= (size_t)w;
        }
        return 0;
}

struct line_buf {
        char buf[RECIPE_STEP_LINE_MAX + 1];
        size_t len;
        bool cut; /* the rest of an over-long line is dropped */
        char last[RECIPE_STEP_LINE_MAX + 1]; /* the last non-empty line */
};

static void line_end(struct line_buf *lb, const struct recipe_build_step *s)
{
        lb->buf[lb->len] = '\0';
        if (lb->len && lb->buf[lb->len - 1] == '\r')
                lb->buf[--lb->len] = '\0';
        if (lb->len)
                memcpy(lb->last, lb->buf, lb->len + 1);
        if (s->log && s->log->line)
                s->log->line(s->log->ctx, s->layer ? s->layer : "", lb->buf);
        lb->len = 0;
        lb->cut = false;
}

/* Splits a step's output into lines (recipe_step_log) as it comes. */
static void line_feed(struct line_buf *lb, const struct recipe_build_step *s, const char *p,
                      size_t n)
{
        for (size_t i = 0; i < n; i++) {
                if (p[i] == '\n') {
                        if (!lb->cut || lb->len)
                                line_end(lb, s);
                        lb->cut = false;
                } else if (lb->len < RECIPE_STEP_LINE_MAX) {
                        lb->buf[lb->len++] = p[i];
                } else if (!lb->cut) {
                        line_end(lb, s);
                        lb->cut = true;
                }
        }
}

/* Runs a build step's argv: stdout and stderr share one pipe (their order
 * kept), every byte goes to log_fd and every line to s->log.  A failure
 * names the status and the last line printed. */
static int run_logged(const struct recipe_build_step *s, const char *cwd, char *const *envp,
                      int log_fd, struct kiln_error *err)
{
        int p[2] = {-1, -1};
        struct line_buf *lb = calloc(1, sizeof(*lb));
        bool log_ok = true;
        pid_t pid;
        int status = 0, rc;

        if (!lb)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        /* close-on-exec: the step gets the pipe as its stdout and stderr only */
        if (pipe2(p, O_CLOEXEC) < 0) {
                int e = errno;
                if (p[0] >= 0) {
                        close(p[0]);
                        close(p[1]);
                }
                free(lb);
                return kiln_error_set_errno(err, KILN_E_IO, e, "cannot create a pipe");
        }
        pid = fork();
        if (pid < 0) {
                close(p[0]);
                close(p[1]);
                free(lb);
                return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot start '%s'",
                                            s->argv[0]);
        }
        if (pid == 0) {
                int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
                dup2(nul, 0);
                dup2(p[1], 1);
                dup2(p[1], 2);
                if (cwd && chdir(cwd) < 0)
                        _exit(126);
                /* what a step creates does not depend on our umask */
                umask(022);
                environ = (char **)(uintptr_t)envp;
                execvp(s->argv[0], (char *const *)(uintptr_t)s->argv);
                dprintf(2, "cannot run '%s': %s\n", s->argv[0], strerror(errno));
                _exit(127);
        }
        close(p[1]);
        for (;;) {
                char buf[8192];
                ssize_t n = read(p[0], buf, sizeof(buf));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                if (log_ok && write_all(log_fd, buf, (size_t)n) < 0)
                        log_ok = false; /* the step goes on; its lines still come */
                line_feed(lb, s, buf, (size_t)n);
        }
        if (lb->len)
                line_end(lb, s);
        close(p[0]);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
                rc = 0;
        else if (WIFEXITED(status))
                rc = kiln_error_set(err, KILN_E_STEP, "'%s' exited with status %d%s%s",
                                    s->argv[0], WEXITSTATUS(status), lb->last[0] ? ": " : "",
                                    lb->last);
        else
                rc = kiln_error_set(err, KILN_E_STEP, "'%s' was killed by signal %d", s->argv[0],
                                    WTERMSIG(status));
        free(lb);
        return rc;
}

static int cmp_mtime(const void *a, const void *b)
{
        const struct log_ent {
                char *name;
                struct timespec t;
        } *x = a, *y = b;
        if (x->t.tv_sec != y->t.tv_sec)
                return x->t.tv_sec < y->t.tv_sec ? 1 : -1;
        if (x->t.tv_nsec != y->t.tv_nsec)
                return x->t.tv_nsec < y->t.tv_nsec ? 1 : -1;
        return strcmp(x->name, y->name);
}

/* Keeps the newest RECIPE_STEP_LOGS_KEPT logs in dir; best effort. */
static void prune_logs(const char *dir)
{
        struct log_ent {
                char *name;
                struct timespec t;
        } *v = NULL;
        size_t n = 0, cap = 0;
        DIR *d = opendir(dir);
        struct dirent *e;

        if (!d)
                return;
        while ((e = readdir(d))) {
                struct stat st;
                size_t len = strlen(e->d_name);
                if (len < 5 || strcmp(e->d_name + len - 4, ".log") ||
                    fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
                    !S_ISREG(st.st_mode))
                        continue;
                if (n == cap) {
                        struct log_ent *nv = realloc(v, (cap ? cap * 2 : 64) * sizeof(*v));
                        if (!nv)
                                break;
                        v = nv;
                        cap = cap ? cap * 2 : 64;
                }
                v[n].name = strdup(e->d_name);
                v[n].t = st.st_mtim;
                if (v[n].name)
                        n++;
        }
        if (n > RECIPE_STEP_LOGS_KEPT) {
                qsort(v, n, sizeof(*v), cmp_mtime);
                for (size_t i = RECIPE_STEP_LOGS_KEPT; i < n; i++)
                        unlinkat(dirfd(d), v[i].name, 0);
        }
        for (size_t i = 0; i < n; i++)
                free(v[i].name);
        free(v);
        closedir(d);
}

/* CACHE/logs/LAYER-KEY12.log, with anything but [A-Za-z0-9._-] in the layer
 * name turned into '_' */
static char *log_path_for(const char *cache_dir, const char *layer, const char *key)
{
        char name[96];
        size_t i;

        for (i = 0; layer && layer[i] && i < 64; i++) {
                char c = layer[i];
                bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                          (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
                name[i] = ok && !(i == 0 && c == '.') ? c : '_';
        }
        name[i] = '\0';
        return kiln_strdupf("%s/logs/%s%s%.12s.log", cache_dir, name, *name ? "-" : "",
                            key + 7);
}

static void feed_output(void *ctx, const char *buf, size_t n)
{
        recipe_step_output_feed(ctx, buf, n);
}

/* "in": "image": the step in the sandbox, its output in the step log. */
static int run_in_image(const struct recipe_build_step *s, const char *cache_dir, const char *key,
                        const char *out, const char *scratch, struct kiln_error *err)
{
        struct recipe_step_output *o = recipe_step_output_open(cache_dir, s->layer, key, s->log, err);
        int status = 0, rc;

        if (!o)
                return -1;
        rc = s->sandbox->run(s->sandbox->ctx, s, out, scratch, feed_output, o, &status, err);
        if (rc == 0 && status != 0) {
                const char *last = recipe_step_output_last(o);
                rc = kiln_error_set(err, KILN_E_STEP, "'%s' exited with status %d%s%s", s->argv[0],
                                    status, last[0] ? ": " : "", last);
        }
        if (rc < 0) {
                kiln_error_prefix(err, "build step in the image");
                recipe_step_output_failed(o);
        }
        recipe_step_output_free(o);
        return rc;
}

int recipe_build_run(const struct recipe_build_step *s, const char *cache_dir, char **ret_out_dir,
                     char **ret_key, bool *ret_cached, struct kiln_error *err)
{
        _cleanup_free_ char *key = NULL, *base = NULL, *final = NULL, *tmp = NULL;
        _cleanup_free_ char *out = NULL, *scratch = NULL, *logf = NULL, *okey = NULL;
        char **envp = NULL, **senv = NULL;
        size_t n = 0, n_senv = 0;
        int rc = -1;
        struct stat st;

        if (s->argc == 0)
                return kiln_error_set(err, KILN_E_INVALID, "build step has no command");
        if (recipe_build_key(s, &key, err) < 0)
                return -1;
        if (s->sandbox) {
                /* in the image: its output depends on the image too; the
                 * recipe's key (returned) does not name the image */
                _cleanup_free_ char *mix = kiln_strdupf("%s\nin the image %s\n", key,
                                                        s->sandbox->key ? s->sandbox->key : "");
                struct oci_digest d;
                if (!mix)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                oci_digest_of_buffer(mix, strlen(mix), &d);
                okey = strdup(d.str);
        } else {
                okey = strdup(key);
        }
        if (!okey)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        base = kiln_strdupf("%s/build", cache_dir);
        final = kiln_strdupf("%s/build/%s", cache_dir, okey + 7);
        tmp = kiln_strdupf("%s/build/.tmp-XXXXXX", cache_dir);
        if (!base || !final || !tmp)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (stat(final, &st) == 0 && S_ISDIR(st.st_mode)) {
                *ret_out_dir = steal_ptr(&final);
                *ret_key = steal_ptr(&key);
                *ret_cached = true;
                return 0;
        }
        if (kiln_mkdir_p(base, 0755, err) < 0)
                return -1;
        if (!mkdtemp(tmp))
                return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create '%s'", tmp);
        out = kiln_strdupf("%s/out", tmp);
        scratch = kiln_strdupf("%s/scratch", tmp);
        logf = log_path_for(cache_dir, s->layer, okey);
        if (step_env(s, &senv, &n_senv, err) < 0)
                goto out;
        envp = calloc(n_senv + 6, sizeof(char *));
        if (!out || !scratch || !logf || !envp) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto out;
        }
        if (s->remote && s->remote->get) {
                /* another runner may have built it: its output, checked on the way in */
                bool hit = false;
                if (s->remote->get(s->remote->ctx, okey, out, &hit, err) < 0)
                        goto out;
                if (hit) {
                        if (rename(out, final) < 0 && stat(final, &st) < 0) {
                                kiln_error_set_errno(err, KILN_E_IO, errno,
                                                     "cannot move '%s' to '%s'", out, final);
                                goto out;
                        }
                        kiln_fsync_dir(base, NULL);
                        *ret_out_dir = steal_ptr(&final);
                        *ret_key = steal_ptr(&key);
                        *ret_cached = true;
                        rc = 0;
                        goto out;
                }
                kiln_rm_rf(out);
        }
        /* chmod: the output's top is the layer's path, 0755 whatever our umask */
        if (mkdir(out, 0755) < 0 || chmod(out, 0755) < 0 || mkdir(scratch, 0755) < 0) {
                kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create '%s'", out);
                goto out;
        }
        /* exactly the declared environment, plus where to write */
        for (size_t i = 0; i < n_senv; i++)
                envp[n++] = strdup(senv[i]);
        {
                bool has_path = false;
                for (size_t i = 0; i < s->n_env; i++)
                        if (str_has_prefix(s->env[i], "PATH="))
                                has_path = true;
                if (!has_path)
                        envp[n++] = kiln_strdupf("PATH=%s", getenv("PATH") ? getenv("PATH")
                                                                           : "/usr/bin:/bin");
        }
        envp[n++] = kiln_strdupf("HOME=%s", scratch);
        envp[n++] = kiln_strdupf("KILN_OUT=%s", out);
        envp[n++] = kiln_strdupf("KILN_SCRATCH=%s", scratch);
        if (s->sdist)
                envp[n++] = kiln_strdupf("KILN_SDIST=%s", s->sdist);
        for (size_t i = 0; i < n; i++)
                if (!envp[i]) {
                        kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        goto out;
                }
        if (s->sandbox) {
                if (run_in_image(s, cache_dir, okey, out, scratch, err) < 0)
                        goto out;
        } else {
                _cleanup_free_ char *logs = kiln_strdupf("%s/logs", cache_dir);
                _cleanup_close_ int lfd = -1;
                if (!logs || kiln_mkdir_p(logs, 0755, err) < 0)
                        goto out;
                prune_logs(logs);
                lfd = open(logf, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
                if (lfd < 0) {
                        kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create '%s'", logf);
                        goto out;
                }
                if (run_logged(s, scratch, envp, lfd, err) < 0) {
                        kiln_error_prefix(err, "build step");
                        if (s->log && s->log->failed)
                                s->log->failed(s->log->ctx, s->layer ? s->layer : "", logf);
                        goto out;
                }
        }
        if (rename(out, final) < 0) {
                /* another run got there first: its output is as good */
                if (!(errno == EEXIST || errno == ENOTEMPTY) || stat(final, &st) < 0) {
                        kiln_error_set_errno(err, KILN_E_IO, errno, "cannot move '%s' to '%s'",
                                             out, final);
                        goto out;
                }
        }
        kiln_fsync_dir(base, NULL);
        if (s->remote && s->remote->put)
                s->remote->put(s->remote->ctx, okey, final);
        *ret_out_dir = steal_ptr(&final);
        *ret_key = steal_ptr(&key);
        *ret_cached = false;
        rc = 0;
out:
        free_strv(envp, n);
        free_strv(senv, n_senv);
        kiln_rm_rf(tmp);
        return rc;
}

/* ---- a step's output, for steps run elsewhere (run layers, sandbox/) ---- */

struct recipe_step_output {
        struct recipe_build_step s; /* only log and layer are used */
        struct line_buf lb;
        char *path;
        int fd;
        bool log_ok;
};

struct recipe_step_output *recipe_step_output_open(const char *cache_dir, const char *layer,
                                                   const char *key,
                                                   const struct recipe_step_log *log,
                                                   struct kiln_error *err)
{
        struct recipe_step_output *o = calloc(1, sizeof(*o));
        _cleanup_free_ char *logs = kiln_strdupf("%s/logs", cache_dir);

        if (!o || !logs) {
                free(o);
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        o->s.log = log;
        o->s.layer = layer;
        o->path = log_path_for(cache_dir, layer, key);
        if (!o->path || kiln_mkdir_p(logs, 0755, err) < 0) {
                if (!o->path)
                        kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                free(o->path);
                free(o);
                return NULL;
        }
        prune_logs(logs);
        o->fd = open(o->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (o->fd < 0) {
                kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create '%s'", o->path);
                free(o->path);
                free(o);
                return NULL;
        }
        o->log_ok = true;
        return o;
}

void recipe_step_output_feed(struct recipe_step_output *o, const char *buf, size_t n)
{
        if (o->log_ok && write_all(o->fd, buf, n) < 0)
                o->log_ok = false; /* the step goes on; its lines still come */
        line_feed(&o->lb, &o->s, buf, n);
}

const char *recipe_step_output_last(struct recipe_step_output *o)
{
        if (o->lb.len)
                line_end(&o->lb, &o->s);
        return o->lb.last;
}

void recipe_step_output_failed(struct recipe_step_output *o)
{
        if (o->s.log && o->s.log->failed)
                o->s.log->failed(o->s.log->ctx, o->s.layer ? o->s.layer : "", o->path);
}

void recipe_step_output_free(struct recipe_step_output *o)
{
        if (!o)
                return;
        if (o->fd >= 0)
                close(o->fd);
        free(o->path);
        free(o);
}
