/* Source layers: a git commit exported with `git archive`, or a local
 * directory filtered by .dockerignore / .gitignore.  Also the subprocess
 * runner shared with build steps. */
#define _GNU_SOURCE
#include <archive.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "digest.h"
#include "io.h"
#include "recipe_internal.h"
#include "stage.h"
#include "util.h"

extern char **environ;

#define CAPTURE_MAX (1024u * 1024)

/* Runs argv; stdout goes to out_fd (>= 0), or into *ret_out (when not
 * NULL), or to /dev/null; the tail of stderr ends up in the message. */
static int run_capture(const char *const *argv, const char *cwd, char *const *envp, int out_fd,
                       char **ret_out, int *ret_status, struct kiln_error *err)
{
        int opipe[2] = {-1, -1}, epipe[2] = {-1, -1};
        char etail[400] = "";
        size_t elen = 0, olen = 0;
        char *obuf = NULL;
        pid_t pid;
        int status;

        if (pipe2(epipe, O_CLOEXEC) < 0 || (ret_out && pipe2(opipe, O_CLOEXEC) < 0))
                return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create a pipe");
        pid = fork();
        if (pid < 0)
                return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot start '%s'", argv[0]);
        if (pid == 0) {
                int nul = open("/dev/null", O_RDWR);
                dup2(nul, 0);
                if (ret_out)
                        dup2(opipe[1], 1);
                else
                        dup2(out_fd >= 0 ? out_fd : nul, 1);
                dup2(epipe[1], 2);
                /* what a step or git creates does not depend on our umask */
                umask(022);
                if (cwd && chdir(cwd) < 0)
                        _exit(126);
                if (envp)
                        environ = (char **)(uintptr_t)envp;
                execvp(argv[0], (char *const *)(uintptr_t)argv);
                dprintf(2, "cannot run '%s': %s", argv[0], strerror(errno));
                _exit(127);
        }
        close(epipe[1]);
        if (ret_out)
                close(opipe[1]);
        for (;;) {
                struct pollfd pf[2] = {{epipe[0], POLLIN, 0}, {ret_out ? opipe[0] : -1, POLLIN, 0}};
                char buf[4096];
                ssize_t n;
                int open_fds = (pf[0].fd >= 0) + (pf[1].fd >= 0);

                if (!open_fds)
                        break;
                if (poll(pf, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        break;
                }
                if (pf[0].fd >= 0 && pf[0].revents) {
                        n = read(epipe[0], buf, sizeof(buf));
                        if (n <= 0) {
                                close(epipe[0]);
                                epipe[0] = -1;
                        } else {
                                /* keep the last bytes */
                                for (ssize_t i = 0; i < n; i++) {
                                        if (elen == sizeof(etail) - 1) {
                                                memmove(etail, etail + 1, elen - 1);
                                                elen--;
                                        }
                                        etail[elen++] = buf[i];
                                }
                                etail[elen] = '\0';
                        }
                }
                if (pf[1].fd >= 0 && pf[1].revents) {
                        n = read(opipe[0], buf, sizeof(buf));
                        if (n <= 0) {
                                close(opipe[0]);
                                opipe[0] = -1;
                        } else if (olen + (size_t)n <= CAPTURE_MAX) {
                                char *nb = realloc(obuf, olen + (size_t)n + 1);
                                if (nb) {
                                        obuf = nb;
                                        memcpy(obuf + olen, buf, (size_t)n);
                                        olen += (size_t)n;
                                        obuf[olen] = '\0';
                                }
                        }
                }
        }
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        if (ret_status && WIFEXITED(status) && WEXITSTATUS(status) < 126) {
                /* the caller reads the output whatever the status */
                *ret_status = WEXITSTATUS(status);
                *ret_out = obuf ? obuf : strdup("");
                return *ret_out ? 0 : kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                /* one line: the last non-empty line of stderr */
                char *line;
                while (elen && (etail[elen - 1] == '\n' || etail[elen - 1] == '\r'))
                        etail[--elen] = '\0';
                line = strrchr(etail, '\n');
                line = line ? line + 1 : etail;
                free(obuf);
                if (WIFEXITED(status))
                        return kiln_error_set(err, KILN_E_GENERIC, "'%s' exited with status %d%s%s",
                                              argv[0], WEXITSTATUS(status), *line ? ": " : "", line);
                return kiln_error_set(err, KILN_E_GENERIC, "'%s' was killed by signal %d",
                                      argv[0], WTERMSIG(status));
        }
        if (ret_out)
                *ret_out = obuf ? obuf : strdup("");
        return 0;
}

int recipe_run(const char *const *argv, const char *cwd, char *const *envp, int out_fd,
               struct kiln_error *err)
{
        return run_capture(argv, cwd, envp, out_fd, NULL, NULL, err);
}

int recipe_run_output(const char *const *argv, char *const *envp, char **ret_out,
                      int *ret_status, struct kiln_error *err)
{
        return run_capture(argv, NULL, envp, -1, ret_out, ret_status, err);
}

/* git as every builder runs it: no system or user config (core.autocrlf,
 * tar.umask and filters would change what git archive writes), the C
 * locale, UTC.  Built before fork: the child only calls exec. */
static char **git_env(void)
{
        static const char *const fixed[] = {"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
                                            "LC_ALL=C", "TZ=UTC"};
        size_t n = 0, k = 0;
        char **v;

        while (environ[n])
                n++;
        v = calloc(n + ARRAY_SIZE(fixed) + 1, sizeof(char *));
        if (!v)
                return NULL;
        for (size_t i = 0; i < n; i++)
                if (!str_has_prefix(environ[i], "GIT_CONFIG") &&
                    !str_has_prefix(environ[i], "LC_ALL=") && !str_has_prefix(environ[i], "TZ="))
                        v[k++] = environ[i];
        for (size_t i = 0; i < ARRAY_SIZE(fixed); i++)
                v[k++] = (char *)(uintptr_t)fixed[i];
        return v;
}

static int run_git(const char *const *argv, char **ret_out, struct kiln_error *err)
{
        _cleanup_free_ char **env = git_env();

        if (!env)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        return run_capture(argv, NULL, env, -1, ret_out, NULL, err);
}

static bool is_dir(const char *p)
{
        struct stat st;

        return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

int recipe_git_resolve(const char *repository, const char *ref, const char *cache_dir,
                       char **ret_gitdir, char **ret_commit, struct kiln_error *err)
{
        _cleanup_free_ char *gitdir = NULL, *spec = NULL, *out = NULL;

        if (!ref || !*ref)
                ref = "HEAD";
        if (ref[0] == '-')
                return kiln_error_set(err, KILN_E_INVALID, "invalid git ref '%s'", ref);
        if (is_dir(repository)) {
                gitdir = strdup(repository);
        } else {
                /* a mirror per URL in the cache, fetched each time */
                struct oci_digest d;
                const char *init[] = {"git", "init", "--quiet", "--bare", NULL, NULL};
                const char *fetch[] = {"git", "-C", NULL, "fetch", "--quiet", "--force", "--tags",
                                       "--", repository, "+refs/heads/*:refs/heads/*", NULL};
                if (!cache_dir)
                        return kiln_error_set(err, KILN_E_USAGE,
                                              "a git source from a URL needs a cache directory");
                oci_digest_of_buffer(repository, strlen(repository), &d);
                gitdir = kiln_strdupf("%s/git/%.16s", cache_dir, oci_digest_hex(&d));
                if (!gitdir)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                if (!is_dir(gitdir)) {
                        if (kiln_mkdir_p(gitdir, 0755, err) < 0)
                                return -1;
                        init[4] = gitdir;
                        if (run_git(init, NULL, err) < 0)
                                return -1;
                }
                fetch[2] = gitdir;
                if (run_git(fetch, NULL, err) < 0) {
                        kiln_error_prefix(err, "fetch '%s'", repository);
                        return -1;
                }
        }
        if (!gitdir)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        spec = kiln_strdupf("%s^{commit}", ref);
        {
                const char *rp[] = {"git", "-C", gitdir, "rev-parse", "--verify", "--quiet",
                                    "--end-of-options", spec, NULL};
                struct kiln_error e2 = KILN_ERROR_INIT;
                if (!spec)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                if (run_git(rp, &out, &e2) < 0)
                        return kiln_error_set(err, KILN_E_NOT_FOUND,
                                              "no commit '%s' in git repository '%s'", ref,
                                              repository);
        }
        out[strcspn(out, "\r\n")] = '\0';
        if (strlen(out) != 40 && strlen(out) != 64)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "unexpected output from git rev-parse: '%s'", out);
        *ret_commit = strdup(out);
        if (!*ret_commit)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        *ret_gitdir = steal_ptr(&gitdir);
        return 0;
}

int recipe_git_export(const char *gitdir, const char *commit, const char *root, const char *path,
                      struct kiln_error *err)
{
        _cleanup_free_ char *dest = recipe_path_under(root, path, err);
        _cleanup_free_ char *tarfile = kiln_strdupf("%s.git-archive.tar", root);
        _cleanup_free_ char *o = tarfile ? kiln_strdupf("--output=%s", tarfile) : NULL;
        const char *ar[] = {"git", "-C", gitdir, "archive", "--format=tar", o, commit, NULL};
        struct archive *a = NULL;
        int rc = -1;

        if (!dest)
                return -1;
        if (!tarfile || !o)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (run_git(ar, NULL, err) < 0)
                goto out;
        if (recipe_mkdir_p(dest, err) < 0)
                goto out;
        a = archive_read_new();
        if (!a) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto out;
        }
        archive_read_support_format_tar(a);
        if (archive_read_open_filename(a, tarfile, 65536) != ARCHIVE_OK) {
                kiln_error_set(err, KILN_E_IO, "cannot read '%s': %s", tarfile,
                               archive_error_string(a));
                goto out;
        }
        rc = recipe_tar_extract(a, commit, dest, false, err);
out:
        if (a)
                archive_read_free(a);
        unlink(tarfile);
        return rc;
}

int recipe_git_read_file(const char *gitdir, const char *commit, const char *path,
                         const char *dest, struct kiln_error *err)
{
        _cleanup_free_ char *spec = kiln_strdupf("%s:%s", commit, path);
        _cleanup_free_ char **env = git_env();
        _cleanup_close_ int fd = -1;
        const char *show[] = {"git", "-C", gitdir, "show", "--end-of-options", spec, NULL};

        if (!spec || !env)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        fd = open(dest, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0)
                return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create '%s'", dest);
        if (run_capture(show, NULL, env, fd, NULL, NULL, err) < 0) {
                unlink(dest);
                return kiln_error_set(err, KILN_E_NOT_FOUND, "no '%s' in commit %s", path,
                                      commit);
        }
        return 0;
}

int recipe_git_stage(const char *repository, const char *ref, const char *root,
                     const char *path, const char *cache_dir, char **ret_commit,
                     struct kiln_error *err)
{
        _cleanup_free_ char *gitdir = NULL;
        char *commit = NULL;

        if (recipe_git_resolve(repository, ref, cache_dir, &gitdir, &commit, err) < 0 ||
            recipe_git_export(gitdir, commit, root, path, err) < 0) {
                free(commit);
                kiln_error_prefix(err, "git source '%s'", repository);
                return -1;
        }
        *ret_commit = commit;
        return 0;
}

/* ---- ignore files ---- */

struct ipat {
        char *pat;
        bool negate, dir_only, anchored;
};

struct recipe_ignore {
        struct ipat *p;
        size_t n;
        bool docker;
};

static bool class_match(const char **pp, char c)
{
        const char *p = *pp + 1;
        bool neg = false, ok = false;

        if (*p == '!' || *p == '^') {
                neg = true;
                p++;
        }
        for (bool first = true; *p && (first || *p != ']'); first = false, p++) {
                if (p[1] == '-' && p[2] && p[2] != ']') {
                        if (c >= p[0] && c <= p[2])
                                ok = true;
                        p += 2;
                } else if (*p == c) {
                        ok = true;
                }
        }
        *pp = *p == ']' ? p + 1 : p;
        return ok != neg;
}

static bool glob(const char *p, const char *s)
{
        while (*p) {
                if (p[0] == '*' && p[1] == '*') {
                        while (*p == '*')
                                p++;
                        if (*p == '/') {
                                p++;
                                for (const char *t = s;;) {
                                        if (glob(p, t))
                                                return true;
                                        t = strchr(t, '/');
                                        if (!t)
                                                return false;
                                        t++;
                                }
                        }
                        for (const char *t = s;; t++) {
                                if (glob(p, t))
                                        return true;
                                if (!*t)
                                        return false;
                        }
                }
                if (*p == '*') {
                        p++;
                        for (const char *t = s;; t++) {
                                if (glob(p, t))
                                        return true;
                                if (!*t || *t == '/')
                                        return false;
                        }
                }
                if (!*s)
                        return false;
                if (*p == '?') {
                        if (*s == '/')
                                return false;
                        p++;
                        s++;
                        continue;
                }
                if (*p == '[') {
                        if (*s == '/' || !class_match(&p, *s))
                                return false;
                        s++;
                        continue;
                }
                if (*p == '\\' && p[1])
                        p++;
                if (*p != *s)
                        return false;
                p++;
                s++;
        }
        return *s == '\0';
}

struct recipe_ignore *recipe_ignore_parse(const char *buf, size_t len, bool docker)
{
        struct recipe_ignore *ig = calloc(1, sizeof(*ig));
        const char *p = buf, *end = buf + len;

        if (!ig)
                return NULL;
        ig->docker = docker;
        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t)(end - p));
                size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
                char *line = strndup(p, n), *s;
                struct ipat ip = {0};
                struct ipat *np;

                p = nl ? nl + 1 : end;
                if (!line)
                        break;
                s = line;
                while (*s && (s[strlen(s) - 1] == '\r' || s[strlen(s) - 1] == ' '))
                        s[strlen(s) - 1] = '\0';
                if (docker)
                        while (*s == ' ' || *s == '\t')
                                s++;
                if (!*s || *s == '#') {
                        free(line);
                        continue;
                }
                if (*s == '!') {
                        ip.negate = true;
                        s++;
                }
                while (docker && s[0] == '.' && s[1] == '/')
                        s += 2;
                if (*s == '/') {
                        ip.anchored = true;
                        while (*s == '/')
                                s++;
                }
                if (*s && s[strlen(s) - 1] == '/') {
                        ip.dir_only = !docker;
                        while (*s && s[strlen(s) - 1] == '/')
                                s[strlen(s) - 1] = '\0';
                }
                if (!*s) {
                        free(line);
                        continue;
                }
                /* gitignore: a slash inside anchors the pattern to the root */
                if (strchr(s, '/'))
                        ip.anchored = true;
                ip.pat = strdup(s);
                free(line);
                np = realloc(ig->p, (ig->n + 1) * sizeof(*np));
                if (!ip.pat || !np) {
                        free(ip.pat);
                        break;
                }
                ig->p = np;
                ig->p[ig->n++] = ip;
        }
        return ig;
}

bool recipe_ignore_match(const struct recipe_ignore *ig, const char *rel, bool dir)
{
        bool excluded = false;
        const char *base = strrchr(rel, '/');

        base = base ? base + 1 : rel;
        for (size_t i = 0; ig && i < ig->n; i++) {
                const struct ipat *ip = &ig->p[i];
                bool m;

                if (ig->docker) {
                        /* moby patternmatcher: anchored at the root; a match on
                         * a parent directory covers what is below it */
                        m = glob(ip->pat, rel);
                        if (!m) {
                                _cleanup_free_ char *pre = strdup(rel);
                                for (char *sl = pre ? strrchr(pre, '/') : NULL; sl && !m;
                                     sl = strrchr(pre, '/')) {
                                        *sl = '\0';
                                        m = glob(ip->pat, pre);
                                }
                        }
                } else {
                        if (ip->dir_only && !dir)
                                continue;
                        m = ip->anchored ? glob(ip->pat, rel) : glob(ip->pat, base);
                }
                if (m)
                        excluded = !ip->negate;
        }
        return excluded;
}

void recipe_ignore_free(struct recipe_ignore *ig)
{
        if (!ig)
                return;
        for (size_t i = 0; i < ig->n; i++)
                free(ig->p[i].pat);
        free(ig->p);
        free(ig);
}

static bool skip_ignored(void *ctx, const char *rel, bool dir)
{
        if (!strcmp(rel, ".git") || str_has_prefix(rel, ".git/"))
                return true;
        return recipe_ignore_match(ctx, rel, dir);
}

static struct recipe_ignore *load_ignore(const char *dir, struct kiln_error *err)
{
        _cleanup_free_ char *di = kiln_strdupf("%s/.dockerignore", dir);
        _cleanup_free_ char *gi = kiln_strdupf("%s/.gitignore", dir);
        _cleanup_free_ char *buf = NULL;
        struct recipe_ignore *ig;
        size_t len = 0;
        bool docker = false;

        if (!di || !gi) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        if (!is_dir(dir)) {
                kiln_error_set(err, KILN_E_NOT_FOUND, "local source '%s' is not a directory", dir);
                return NULL;
        }
        if (access(di, F_OK) == 0) {
                docker = true;
                if (kiln_read_file(di, RECIPE_FILE_MAX, &buf, &len, err) < 0)
                        return NULL;
        } else if (access(gi, F_OK) == 0) {
                if (kiln_read_file(gi, RECIPE_FILE_MAX, &buf, &len, err) < 0)
                        return NULL;
        }
        ig = recipe_ignore_parse(buf ? buf : "", len, docker);
        if (!ig)
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        return ig;
}

/* What the ignore rules left out of a local source, for the user to see. */
struct excluded {
        struct recipe_ignore *ig;
        size_t n;
        char names[256];
};

static bool skip_counted(void *ctx, const char *rel, bool dir)
{
        struct excluded *x = ctx;
        size_t len = strlen(x->names);

        if (!skip_ignored(x->ig, rel, dir))
                return false;
        if (x->n++ < 5 && len + strlen(rel) + 3 < sizeof(x->names))
                snprintf(x->names + len, sizeof(x->names) - len, "%s%s%s", len ? ", " : "",
                         rel, dir ? "/" : "");
        return true;
}

int recipe_local_digest(const char *dir, char ret[OCI_DIGEST_MAX], char **ret_excluded,
                        struct kiln_error *err)
{
        struct excluded x = {.ig = load_ignore(dir, err)};
        int rc;

        if (!x.ig)
                return -1;
        rc = recipe_tree_digest(dir, skip_counted, &x, ret, err);
        recipe_ignore_free(x.ig);
        if (rc == 0 && ret_excluded && x.n)
                *ret_excluded = kiln_strdupf("%zu path%s (%s%s)", x.n, x.n == 1 ? "" : "s",
                                             x.names, x.n > 5 ? ", ..." : "");
        return rc;
}

int recipe_local_stage(const char *dir, const char *root, const char *path,
                       struct kiln_error *err)
{
        _cleanup_free_ char *dest = recipe_path_under(root, path, err);
        struct recipe_ignore *ig;
        int rc;

        if (!dest)
                return -1;
        ig = load_ignore(dir, err);
        if (!ig)
                return -1;
        {
                _cleanup_free_ char *parent = kiln_dirname(dest);
                rc = parent ? recipe_mkdir_p(parent, err)
                            : kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        if (rc == 0)
                rc = recipe_copy_tree_filtered(dir, dest, "", skip_ignored, ig, err);
        recipe_ignore_free(ig);
        if (rc < 0)
                kiln_error_prefix(err, "local source '%s'", dir);
        return rc;
}
