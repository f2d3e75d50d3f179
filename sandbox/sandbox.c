/* The rootless sandbox (sandbox.h).  The calls follow what crun does for a
 * rootless container: unshare with a self-written single mapping, a private
 * mount tree, the root filesystem mounted and pivot_root(".", ".") into it. */
#define _GNU_SOURCE
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <grp.h>
#include <unistd.h>

#include "io.h"
#include "sandbox_internal.h"
#include "util.h"

extern char **environ;

/* overlayfs reads its options from one page */
#define OVERLAY_OPTIONS_MAX 4000

int sandbox_dirs_make(const char *dir, struct sandbox_opts *o, char **ret_upper, char **ret_work,
                      char **ret_root, struct kiln_error *err)
{
        char *up = kiln_strdupf("%s/upper", dir);
        char *wk = kiln_strdupf("%s/work", dir);
        char *rt = kiln_strdupf("%s/root", dir);

        if (!up || !wk || !rt || mkdir(up, 0755) < 0 || mkdir(wk, 0700) < 0 ||
            mkdir(rt, 0700) < 0) {
                int e = errno;
                free(up);
                free(wk);
                free(rt);
                return kiln_error_set_errno(err, KILN_E_IO, e,
                                            "cannot create the sandbox's directories in '%s'",
                                            dir);
        }
        o->upper = up;
        o->work = wk;
        o->root = rt;
        *ret_upper = up;
        *ret_work = wk;
        *ret_root = rt;
        return 0;
}

void sandbox_opts_init(struct sandbox_opts *o)
{
        memset(o, 0, sizeof(*o));
        o->umask = 022;
}

static bool read_int_file(const char *path, long *ret)
{
        char buf[32];
        ssize_t n;
        int fd = open(path, O_RDONLY | O_CLOEXEC);

        if (fd < 0)
                return false;
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
                return false;
        buf[n] = '\0';
        *ret = strtol(buf, NULL, 10);
        return true;
}

const char *sandbox_userns_blocker(const char *proc_sys, char *buf, size_t len)
{
        static const struct {
                const char *file, *name;
                long off;
        } knobs[] = {
                {"kernel/unprivileged_userns_clone", "kernel.unprivileged_userns_clone", 0},
                {"user/max_user_namespaces", "user.max_user_namespaces", 0},
                {"kernel/apparmor_restrict_unprivileged_userns",
                 "kernel.apparmor_restrict_unprivileged_userns", 1},
        };

        for (size_t i = 0; i < sizeof(knobs) / sizeof(knobs[0]); i++) {
                char path[4096];
                long v;
                snprintf(path, sizeof(path), "%s/%s", proc_sys, knobs[i].file);
                if (read_int_file(path, &v) && v == knobs[i].off) {
                        snprintf(buf, len, "%s is %ld", knobs[i].name, v);
                        return buf;
                }
        }
        return NULL;
}

const char *sandbox_userns_check(char *buf, size_t len)
{
        char why[256];
        const char *b;
        int status = 0, e = 0;
        int p[2];
        pid_t pid;

        if (pipe2(p, O_CLOEXEC) < 0) {
                snprintf(buf, len, "cannot create a pipe: %s", strerror(errno));
                return buf;
        }
        pid = fork();
        if (pid < 0) {
                close(p[0]);
                close(p[1]);
                snprintf(buf, len, "cannot start a process: %s", strerror(errno));
                return buf;
        }
        if (pid == 0) {
                int ce = unshare(CLONE_NEWUSER) < 0 ? errno : 0;
                ssize_t w = write(p[1], &ce, sizeof(ce));
                (void)w;
                _exit(0);
        }
        close(p[1]);
        if (read(p[0], &e, sizeof(e)) != sizeof(e))
                e = EIO;
        close(p[0]);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        if (!e)
                return NULL;
        b = sandbox_userns_blocker("/proc/sys", why, sizeof(why));
        if (b)
                snprintf(buf, len, "user namespaces are off: %s", b);
        else
                snprintf(buf, len, "cannot create a user namespace: %s", strerror(e));
        return buf;
}

/* ---- in the children: no allocation that matters, errors to a pipe ---- */

/* strerror without gettext's lock and buffers */
static const char *errdesc(int e)
{
        const char *d = strerrordesc_np(e);

        return d ? d : "unknown error";
}

/* "C|message": C is the error code's letter (see child_code). */
static void child_fail(int errfd, char code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void child_fail(int errfd, char code, const char *fmt, ...)
{
        char msg[KILN_ERROR_MSG_SIZE];
        va_list ap;
        int n;

        msg[0] = code;
        msg[1] = '|';
        va_start(ap, fmt);
        n = vsnprintf(msg + 2, sizeof(msg) - 2, fmt, ap);
        va_end(ap);
        if (n > 0) {
                ssize_t w = write(errfd, msg, strlen(msg));
                (void)w;
        }
        _exit(127);
}

static int write_str(const char *path, const char *s)
{
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        ssize_t n;

        if (fd < 0)
                return -1;
        n = write(fd, s, strlen(s));
        close(fd);
        return n == (ssize_t)strlen(s) ? 0 : -1;
}

/* mkdir -p inside the new root (the path is already below it) */
static int mkdirs(char *path, mode_t mode)
{
        for (char *p = path + 1; *p; p++) {
                if (*p != '/')
                        continue;
                *p = '\0';
                if (mkdir(path, mode) < 0 && errno != EEXIST) {
                        *p = '/';
                        return -1;
                }
                *p = '/';
        }
        return mkdir(path, mode) < 0 && errno != EEXIST ? -1 : 0;
}

/* The mount point for src at root+dst: a directory or an empty file. */
static int make_target(const char *target, bool dir)
{
        char buf[4096];
        struct stat st;

        if (snprintf(buf, sizeof(buf), "%s", target) >= (int)sizeof(buf))
                return -1;
        if (lstat(buf, &st) == 0)
                return 0;
        if (dir)
                return mkdirs(buf, 0755);
        {
                char *slash = strrchr(buf, '/');
                int fd;
                if (slash && slash != buf) {
                        *slash = '\0';
                        if (mkdirs(buf, 0755) < 0)
                                return -1;
                        *slash = '/';
                }
                fd = open(buf, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
                if (fd < 0)
                        return -1;
                close(fd);
        }
        return 0;
}

/* In a user namespace a read-only remount must keep the flags the source
 * mount has locked (nosuid, nodev, noexec, the atime ones). */
static unsigned long locked_flags(const char *path)
{
        struct statvfs sv;
        unsigned long f = 0;

        if (statvfs(path, &sv) < 0)
                return 0;
        if (sv.f_flag & ST_NOSUID)
                f |= MS_NOSUID;
        if (sv.f_flag & ST_NODEV)
                f |= MS_NODEV;
        if (sv.f_flag & ST_NOEXEC)
                f |= MS_NOEXEC;
        if (sv.f_flag & ST_NOATIME)
                f |= MS_NOATIME;
        if (sv.f_flag & ST_NODIRATIME)
                f |= MS_NODIRATIME;
        if (sv.f_flag & ST_RELATIME)
                f |= MS_RELATIME;
        return f;
}

/* A bind's source, cloned (open_tree) before pivot_root while the host's
 * tree is still there, and moved into place afterwards, so the target is
 * looked up in the image: a link in the image (even an absolute one) can
 * only lead inside it, never to a host path (crun does the same). */
struct bind_src {
        int fd; /* O_PATH; -1: optional and missing */
        bool dir, ro;
        const char *src, *dst;
};

static void open_src(int errfd, struct bind_src *b, bool optional)
{
        struct stat st;

        if (stat(b->src, &st) < 0) {
                if (optional) {
                        b->fd = -1;
                        return;
                }
                child_fail(errfd, 'N', "cannot bind '%s': %s", b->src, errdesc(errno));
        }
        b->dir = S_ISDIR(st.st_mode);
        /* a detached copy of the mount (Linux >= 5.2): it outlives the
         * host's tree, which pivot_root takes away */
        b->fd = open_tree(AT_FDCWD, b->src, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
        if (b->fd < 0)
                child_fail(errfd, 'I', "cannot bind '%s': %s", b->src, errdesc(errno));
}

/* After pivot_root: dst is a path in the image. */
static void bind_src_mount(int errfd, const struct bind_src *b)
{
        char target[4096];

        if (b->fd < 0)
                return;
        if (snprintf(target, sizeof(target), "%s", b->dst) >= (int)sizeof(target))
                child_fail(errfd, 'I', "bind target '%s' is too long", b->dst);
        if (make_target(target, b->dir) < 0 ||
            move_mount(b->fd, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) < 0)
                child_fail(errfd, 'I', "cannot bind '%s' at '%s': %s", b->src, b->dst,
                           errdesc(errno));
        if (b->ro && mount(NULL, target, NULL,
                           MS_BIND | MS_REMOUNT | MS_RDONLY | locked_flags(target), NULL) < 0)
                child_fail(errfd, 'I', "cannot make '%s' read-only: %s", b->dst, errdesc(errno));
}

static const char *const dev_nodes[] = {"/dev/null", "/dev/zero", "/dev/full",
                                        "/dev/random", "/dev/urandom", "/dev/tty"};
#define N_DEV_NODES (sizeof(dev_nodes) / sizeof(dev_nodes[0]))

/* After pivot_root: a tmpfs /dev with the host's nodes bound in. */
static void setup_dev(int errfd, const struct bind_src *nodes)
{
        static const char *const links[][2] = {{"/dev/fd", "/proc/self/fd"},
                                               {"/dev/stdin", "/proc/self/fd/0"},
                                               {"/dev/stdout", "/proc/self/fd/1"},
                                               {"/dev/stderr", "/proc/self/fd/2"},
                                               {"/dev/ptmx", "pts/ptmx"}};
        char p[16] = "/dev";

        if (make_target(p, true) < 0 ||
            mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k") < 0)
                child_fail(errfd, 'I', "cannot mount /dev: %s", errdesc(errno));
        for (size_t i = 0; i < N_DEV_NODES; i++)
                bind_src_mount(errfd, &nodes[i]);
        if (mkdir("/dev/shm", 01777) < 0 ||
            mount("shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                  "mode=1777,size=65536k") < 0)
                child_fail(errfd, 'I', "cannot mount /dev/shm: %s", errdesc(errno));
        /* optional: some kernels refuse a devpts in a user namespace */
        if (mkdir("/dev/pts", 0755) == 0)
                mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
                      "newinstance,ptmxmode=0666,mode=620");
        for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++)
                if (symlink(links[i][1], links[i][0]) < 0)
                        child_fail(errfd, 'I', "cannot create %s: %s", links[i][0],
                                   errdesc(errno));
}

static void loopback_up(void)
{
        struct ifreq ifr;
        int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

        if (s < 0)
                return;
        memset(&ifr, 0, sizeof(ifr));
        snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
        if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
                ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
                ioctl(s, SIOCSIFFLAGS, &ifr);
        }
        close(s);
}

/* The common parent of the lower directories, so their names fit one page
 * of mount options ("lowerdir=HEX:HEX:..." relative to it); NULL when they
 * do not share one. */
static char *lowers_parent(const struct sandbox_opts *o)
{
        char *parent;

        if (o->n_lowers == 0)
                return NULL;
        parent = kiln_dirname(o->lowers[0]);
        for (size_t i = 1; parent && i < o->n_lowers; i++) {
                size_t l = strlen(parent);
                if (strncmp(o->lowers[i], parent, l) || o->lowers[i][l] != '/' ||
                    strchr(o->lowers[i] + l + 1, '/')) {
                        free(parent);
                        return NULL;
                }
        }
        return parent;
}

/* What the children need, made by the parent before it forks: a child of
 * a process with other threads must not allocate (another thread may hold
 * malloc's lock at fork, or ASan's), so it only fills in what is here. */
struct child_plan {
        char *parent;          /* chdir here before mounting; NULL: none */
        char *overlay_opts;    /* lowerdir=...,upperdir=...,workdir=...,userxattr */
        struct bind_src *b;    /* the device nodes, resolv.conf, hosts, binds */
        size_t n;
        struct sandbox_idmap map;
        /* with map.sub: the first child says "u" on sync once it is in its
         * namespaces, and waits for "g" on go (the mapping is written) */
        int sync[2], go[2];
};

static void child_plan_free(struct child_plan *cp)
{
        for (size_t i = 0; i < 2; i++) {
                if (cp->sync[i] >= 0)
                        close(cp->sync[i]);
                if (cp->go[i] >= 0)
                        close(cp->go[i]);
                cp->sync[i] = cp->go[i] = -1;
        }
        free(cp->parent);
        free(cp->overlay_opts);
        free(cp->b);
}

static int child_plan_make(const struct sandbox_opts *o, struct child_plan *cp,
                           struct kiln_error *err)
{
        char *opts;
        size_t n, skip;

        memset(cp, 0, sizeof(*cp));
        cp->sync[0] = cp->sync[1] = cp->go[0] = cp->go[1] = -1;
        if (sandbox_idmap_for(&cp->map, err) < 0)
                return -1;
        if (cp->map.sub && (pipe2(cp->sync, O_CLOEXEC) < 0 || pipe2(cp->go, O_CLOEXEC) < 0)) {
                child_plan_free(cp);
                return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create a pipe");
        }
        cp->parent = lowers_parent(o);
        skip = cp->parent ? strlen(cp->parent) + 1 : 0;
        cp->n = N_DEV_NODES + 2 + o->n_binds;
        cp->b = calloc(cp->n, sizeof(*cp->b));
        opts = cp->overlay_opts = malloc(OVERLAY_OPTIONS_MAX + 1);
        if (!cp->b || !opts) {
                child_plan_free(cp);
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        n = (size_t)snprintf(opts, OVERLAY_OPTIONS_MAX + 1, "lowerdir=");
        if (o->n_lowers == 0)
                n += (size_t)snprintf(opts + n, OVERLAY_OPTIONS_MAX + 1 - n, "%s", o->root);
        for (size_t i = 0; i < o->n_lowers && n <= OVERLAY_OPTIONS_MAX; i++)
                n += (size_t)snprintf(opts + n, OVERLAY_OPTIONS_MAX + 1 - n, "%s%s",
                                      i ? ":" : "", o->lowers[i] + skip);
        if (n <= OVERLAY_OPTIONS_MAX)
                n += (size_t)snprintf(opts + n, OVERLAY_OPTIONS_MAX + 1 - n,
                                      ",upperdir=%s,workdir=%s,userxattr", o->upper, o->work);
        if (n > OVERLAY_OPTIONS_MAX) {
                child_plan_free(cp);
                return kiln_error_set(err, KILN_E_LIMIT,
                                      "the image's %zu layers do not fit overlayfs's mount options",
                                      o->n_lowers);
        }
        for (size_t i = 0; i < N_DEV_NODES; i++)
                cp->b[i] = (struct bind_src){.src = dev_nodes[i], .dst = dev_nodes[i], .fd = -1};
        cp->b[N_DEV_NODES] = (struct bind_src){.src = "/etc/resolv.conf",
                                               .dst = "/etc/resolv.conf", .ro = true, .fd = -1};
        cp->b[N_DEV_NODES + 1] = (struct bind_src){.src = "/etc/hosts", .dst = "/etc/hosts",
                                                   .ro = true, .fd = -1};
        for (size_t i = 0; i < o->n_binds; i++)
                cp->b[N_DEV_NODES + 2 + i] = (struct bind_src){
                    .src = o->binds[i].src, .dst = o->binds[i].dst, .ro = o->binds[i].ro, .fd = -1};
        return 0;
}

static void mount_overlay(int errfd, const struct child_plan *cp, const char *root)
{
        if (cp->parent && chdir(cp->parent) < 0)
                child_fail(errfd, 'I', "cannot enter '%s': %s", cp->parent, errdesc(errno));
        if (mount("overlay", root, "overlay", 0, cp->overlay_opts) < 0)
                child_fail(errfd, errno == EINVAL ? 'U' : 'I',
                           "cannot mount the image as overlayfs (userxattr needs Linux 5.11): %s",
                           errdesc(errno));
}

/* PID 1 of the sandbox stays a small init, as podman's --init or tini: the
 * kernel ignores signals to PID 1 that it has no handler for (even SIGKILL
 * sent from inside), so the command runs as PID 2 and gets the signals PID 1
 * is sent; PID 1 reaps orphans and exits with the command's status (128 + N
 * when signal N killed it), which ends the namespace's other processes. */
static volatile pid_t cmd_pid;

static void forward_signal(int sig)
{
        if (cmd_pid > 0)
                kill(cmd_pid, sig);
}

static void init_wait(void)
{
        static const int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
        struct sigaction sa;

        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = forward_signal;
        for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
                sigaction(sigs[i], &sa, NULL);
        for (;;) {
                int status;
                pid_t p = waitpid(-1, &status, 0);
                if (p < 0 && errno == EINTR)
                        continue;
                if (p < 0)
                        _exit(127);
                if (p == cmd_pid)
                        _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
        }
}

/* PID 1 of the sandbox: the mounts, pivot_root, then the command. */
static void child_setup_exec(int errfd, const struct sandbox_opts *o, struct child_plan *cp)
{
        const char *root = o->root;
        struct bind_src *b = cp->b;
        size_t n = cp->n;
        struct stat st;
        char p[4096];

        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                child_fail(errfd, 'I', "cannot make the mount tree private: %s", errdesc(errno));
        mount_overlay(errfd, cp, root);
        /* before the host's /proc is detached (the kernel lets a user
         * namespace mount proc only where a full one is visible), so on a
         * real directory of the image, never through a link */
        snprintf(p, sizeof(p), "%s/proc", root);
        if (lstat(p, &st) < 0 && mkdir(p, 0555) < 0)
                child_fail(errfd, 'I', "cannot create /proc: %s", errdesc(errno));
        if ((lstat(p, &st) < 0 || !S_ISDIR(st.st_mode)))
                child_fail(errfd, 'I', "cannot mount /proc: the image's /proc is not a directory");
        if (mount("proc", p, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
                child_fail(errfd, 'I', "cannot mount /proc: %s", errdesc(errno));
        /* a host without a controlling tty still has the node */
        for (size_t i = 0; i < N_DEV_NODES; i++)
                open_src(errfd, &b[i], !strcmp(dev_nodes[i], "/dev/tty"));
        if (o->network) {
                open_src(errfd, &b[N_DEV_NODES], true);
                open_src(errfd, &b[N_DEV_NODES + 1], true);
        }
        for (size_t i = N_DEV_NODES + 2; i < n; i++)
                open_src(errfd, &b[i], false);
        if (chdir(root) < 0 || syscall(SYS_pivot_root, ".", ".") < 0 ||
            umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
                child_fail(errfd, 'I', "cannot pivot into the image: %s", errdesc(errno));
        setup_dev(errfd, b);
        for (size_t i = N_DEV_NODES; i < n; i++)
                bind_src_mount(errfd, &b[i]);
        if (!o->network)
                loopback_up();
        {
                const char *h = o->hostname ? o->hostname : "kiln";
                sethostname(h, strlen(h));
        }
        for (size_t i = 0; i < n; i++)
                if (b[i].fd >= 0)
                        close(b[i].fd);
        umask(o->umask);
        if (o->cwd && *o->cwd) {
                snprintf(p, sizeof(p), "%s", o->cwd);
                if (make_target(p, true) < 0 || chdir(p) < 0)
                        child_fail(errfd, 'N', "cannot enter the working directory '%s': %s",
                                   o->cwd, errdesc(errno));
        }
        cmd_pid = fork();
        if (cmd_pid < 0)
                child_fail(errfd, 'I', "cannot start '%s': %s", o->argv[0], errdesc(errno));
        if (cmd_pid == 0) {
                if ((o->uid || o->gid) &&
                    (setgroups(0, NULL) < 0 || setresgid(o->gid, o->gid, o->gid) < 0 ||
                     setresuid(o->uid, o->uid, o->uid) < 0))
                        child_fail(errfd, 'I', "cannot become uid %u gid %u: %s",
                                   (unsigned)o->uid, (unsigned)o->gid, errdesc(errno));
                if (o->ignore_chown && !cp->map.sub && sandbox_ignore_chown() < 0)
                        child_fail(errfd, 'I', "cannot make chown a no-op: %s", errdesc(errno));
                environ = (char **)(uintptr_t)o->env;
                execvp(o->argv[0], (char *const *)(uintptr_t)o->argv);
                child_fail(errfd, errno == ENOENT ? 'N' : 'I', "cannot run '%s' in the image: %s",
                           o->argv[0], errdesc(errno));
        }
        close(errfd);
        init_wait();
}

/* The first child: the namespaces and the mapping, then PID 1, whose wait
 * status goes to statusfd. */
static void child_namespaces(int errfd, int statusfd, const struct sandbox_opts *o,
                             struct child_plan *cp)
{
        int flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS;
        uid_t uid = getuid();
        gid_t gid = getgid();
        char map[64];
        pid_t pid;
        int status = 0, upfd = -1;

        if (!o->network)
                flags |= CLONE_NEWNET;
        if (unshare(flags) < 0) {
                int e = errno;
                char why[256];
                const char *b = sandbox_userns_blocker("/proc/sys", why, sizeof(why));
                if (b)
                        child_fail(errfd, 'U', "user namespaces are off: %s", b);
                child_fail(errfd, 'U', "cannot create the sandbox's namespaces: %s", errdesc(e));
        }
        if (cp->map.sub) {
                char c = 'u';
                if (write(cp->sync[1], &c, 1) != 1 || read(cp->go[0], &c, 1) != 1 || c != 'g')
                        _exit(127); /* the parent says why */
                upfd = open(o->upper, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (upfd < 0)
                        child_fail(errfd, 'I', "cannot open '%s': %s", o->upper, errdesc(errno));
        } else {
                snprintf(map, sizeof(map), "0 %u 1", (unsigned)uid);
                if (write_str("/proc/self/setgroups", "deny") < 0 ||
                    write_str("/proc/self/uid_map", map) < 0)
                        child_fail(errfd, 'U', "cannot map uid 0 to %u: %s", (unsigned)uid,
                                   errdesc(errno));
                snprintf(map, sizeof(map), "0 %u 1", (unsigned)gid);
                if (write_str("/proc/self/gid_map", map) < 0)
                        child_fail(errfd, 'U', "cannot map gid 0 to %u: %s", (unsigned)gid,
                                   errdesc(errno));
        }
        pid = fork();
        if (pid < 0)
                child_fail(errfd, 'I', "cannot start the sandbox: %s", errdesc(errno));
        if (pid == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                close(statusfd);
                /* the host's upper directory: never where the step can
                 * reach it (through /proc/1/fd) */
                if (upfd >= 0)
                        close(upfd);
                child_setup_exec(errfd, o, cp);
        }
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        /* what the step made as uid 1..N, the caller outside must read
         * (the layer) and remove */
        if (upfd >= 0 && sandbox_give_back(upfd) < 0)
                child_fail(errfd, 'I', "cannot give what the step made in '%s' back to uid %u: %s",
                           o->upper, (unsigned)uid, errdesc(errno));
        close(errfd);
        if (write(statusfd, &status, sizeof(status)) != sizeof(status))
                _exit(127);
        _exit(0);
}

/* Closes every descriptor but 0, 1, 2 and keep[] (>= 0 ones): the
 * sandbox's PID 1 never execs, so close-on-exec would not keep another
 * thread's pipes (another step's output, whose reader waits for its end)
 * out of it. */
static void keep_fds(int *keep, size_t n)
{
        unsigned from = 3;

        /* a few: insertion sort */
        for (size_t i = 1; i < n; i++)
                for (size_t j = i; j > 0 && keep[j - 1] > keep[j]; j--) {
                        int t = keep[j];
                        keep[j] = keep[j - 1];
                        keep[j - 1] = t;
                }
        for (size_t i = 0; i < n; i++) {
                if (keep[i] < (int)from)
                        continue;
                if ((unsigned)keep[i] > from)
                        close_range(from, (unsigned)keep[i] - 1, 0);
                from = (unsigned)keep[i] + 1;
        }
        close_range(from, ~0U, 0);
}

static enum kiln_errc code_of(char c);

/* A child's "C|message" on the error pipe, if it wrote one: true and err
 * set. */
static bool child_error(int fd, struct kiln_error *err)
{
        char msg[KILN_ERROR_MSG_SIZE];
        ssize_t n = read(fd, msg, sizeof(msg) - 1);

        if (n <= 2 || msg[1] != '|')
                return false;
        msg[n] = '\0';
        kiln_error_set(err, code_of(msg[0]), "%s", msg + 2);
        return true;
}

static enum kiln_errc code_of(char c)
{
        switch (c) {
        case 'U': return KILN_E_UNSUPPORTED;
        case 'N': return KILN_E_NOT_FOUND;
        case 'L': return KILN_E_LIMIT;
        default: return KILN_E_IO;
        }
}

static void read_output(const struct sandbox_opts *o, int fd)
{
        char buf[8192];

        for (;;) {
                ssize_t n = read(fd, buf, sizeof(buf));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                o->output(o->output_ctx, buf, (size_t)n);
        }
}

static int check_opts(const struct sandbox_opts *o, struct kiln_error *err)
{
        const char *paths[] = {o->upper, o->work, o->root};

        if (o->argc == 0 || !o->argv || !o->argv[0])
                return kiln_error_set(err, KILN_E_INVALID, "sandbox: no command to run");
        for (size_t i = 0; i < 3; i++)
                if (!paths[i] || paths[i][0] != '/' || strpbrk(paths[i], ",:"))
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "sandbox directory '%s' is not an absolute path "
                                              "without ',' or ':'",
                                              paths[i] ? paths[i] : "");
        for (size_t i = 0; i < o->n_lowers; i++)
                if (strpbrk(o->lowers[i], ",:"))
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "layer directory '%s' holds ',' or ':'", o->lowers[i]);
        for (size_t i = 0; i < o->n_binds; i++)
                if (!o->binds[i].src || o->binds[i].src[0] != '/')
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "bind source '%s' is not an absolute path",
                                              o->binds[i].src ? o->binds[i].src : "");
        for (size_t i = 0; i < o->n_binds; i++)
                if (!o->binds[i].dst || o->binds[i].dst[0] != '/' ||
                    strstr(o->binds[i].dst, "/../") || str_has_suffix(o->binds[i].dst, "/.."))
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "bind target '%s' is not an absolute path without '..'",
                                              o->binds[i].dst ? o->binds[i].dst : "");
        return 0;
}

/* The parent's half of the subordinate mapping: once the child is in its
 * namespaces, newuidmap and newgidmap write its maps; 0 also when the
 * child failed before (its error comes on the error pipe). */
static int map_child(struct child_plan *cp, pid_t pid, struct kiln_error *err)
{
        char c = 0;
        ssize_t n;

        close(cp->sync[1]);
        close(cp->go[0]);
        cp->sync[1] = cp->go[0] = -1;
        while ((n = read(cp->sync[0], &c, 1)) < 0 && errno == EINTR)
                ;
        if (n != 1 || c != 'u')
                return 0;
        if (sandbox_idmap_apply(&cp->map, pid, err) < 0)
                return -1;
        c = 'g';
        if (write(cp->go[1], &c, 1) != 1)
                return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot start the sandbox");
        return 0;
}

int sandbox_run(const struct sandbox_opts *o, int *ret_status, struct kiln_error *err)
{
        int errp[2] = {-1, -1}, stp[2] = {-1, -1}, outp[2] = {-1, -1};
        pid_t parent = getpid(), pid;
        int status = 0, cstatus = 0, rc = -1;
        struct child_plan cp;

        if (check_opts(o, err) < 0 || child_plan_make(o, &cp, err) < 0)
                return -1;
        if ((o->uid || o->gid) && !cp.map.sub) {
                child_plan_free(&cp);
                return kiln_error_set(err, KILN_E_UNSUPPORTED,
                                      "uid %u and gid %u do not exist in the sandbox: only 0 (you "
                                      "outside) does, unless %s and %s give you a range and "
                                      "newuidmap and newgidmap are installed",
                                      (unsigned)o->uid, (unsigned)o->gid, SANDBOX_SUBUID_FILE,
                                      SANDBOX_SUBGID_FILE);
        }
        if ((o->uid > cp.map.uid_count || o->gid > cp.map.gid_count) && cp.map.sub) {
                unsigned long uc = cp.map.uid_count, gc = cp.map.gid_count;
                child_plan_free(&cp);
                return kiln_error_set(err, KILN_E_INVALID,
                                      "uid %u or gid %u is past the sandbox's ids (0 to %lu and "
                                      "0 to %lu, from %s and %s)",
                                      (unsigned)o->uid, (unsigned)o->gid, uc, gc,
                                      SANDBOX_SUBUID_FILE, SANDBOX_SUBGID_FILE);
        }
        if (pipe2(errp, O_CLOEXEC) < 0 || pipe2(stp, O_CLOEXEC) < 0 ||
            (o->output && pipe2(outp, O_CLOEXEC) < 0)) {
                kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create a pipe");
                goto out;
        }
        pid = fork();
        if (pid < 0) {
                kiln_error_set_errno(err, KILN_E_IO, errno, "cannot start the sandbox");
                goto out;
        }
        if (pid == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (getppid() != parent)
                        _exit(127);
                close(errp[0]);
                close(stp[0]);
                if (o->output) {
                        int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
                        close(outp[0]);
                        dup2(nul, 0);
                        dup2(outp[1], 1);
                        dup2(outp[1], 2);
                }
                {
                        int keep[] = {errp[1], stp[1], cp.sync[1], cp.go[0]};
                        keep_fds(keep, 4);
                }
                child_namespaces(errp[1], stp[1], o, &cp);
        }
        close(errp[1]);
        close(stp[1]);
        errp[1] = stp[1] = -1;
        if (cp.map.sub && map_child(&cp, pid, err) < 0) {
                kill(pid, SIGKILL);
                while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                        ;
                goto out;
        }
        if (o->output) {
                close(outp[1]);
                outp[1] = -1;
                read_output(o, outp[0]);
        }
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        if (child_error(errp[0], err))
                goto out;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
            read(stp[0], &cstatus, sizeof(cstatus)) != sizeof(cstatus)) {
                kiln_error_set(err, KILN_E_IO, "the sandbox ended before its command");
                goto out;
        }
        /* PID 1 is killed (not exited) only by a signal from outside */
        *ret_status = WIFEXITED(cstatus) ? WEXITSTATUS(cstatus) : 128 + WTERMSIG(cstatus);
        rc = 0;
out:
        for (size_t i = 0; i < 2; i++) {
                if (errp[i] >= 0)
                        close(errp[i]);
                if (stp[i] >= 0)
                        close(stp[i]);
                if (outp[i] >= 0)
                        close(outp[i]);
        }
        child_plan_free(&cp);
        return rc;
}

int sandbox_reclaim(const char *dir, struct kiln_error *err)
{
        struct child_plan cp;
        int errp[2] = {-1, -1}, status = 0, rc = -1;
        pid_t pid;

        memset(&cp, 0, sizeof(cp));
        cp.sync[0] = cp.sync[1] = cp.go[0] = cp.go[1] = -1;
        if (sandbox_idmap_for(&cp.map, err) < 0)
                return -1;
        if (!cp.map.sub)
                return 0;
        if (pipe2(errp, O_CLOEXEC) < 0 || pipe2(cp.sync, O_CLOEXEC) < 0 ||
            pipe2(cp.go, O_CLOEXEC) < 0) {
                kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create a pipe");
                goto out;
        }
        pid = fork();
        if (pid < 0) {
                kiln_error_set_errno(err, KILN_E_IO, errno, "cannot start a process");
                goto out;
        }
        if (pid == 0) {
                int keep[] = {errp[1], cp.sync[1], cp.go[0]};
                char c = 'u';
                int fd;
                keep_fds(keep, 3);
                if (unshare(CLONE_NEWUSER) < 0)
                        child_fail(errp[1], 'U', "cannot create a user namespace: %s",
                                   errdesc(errno));
                if (write(cp.sync[1], &c, 1) != 1 || read(cp.go[0], &c, 1) != 1 || c != 'g')
                        _exit(127);
                fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (fd < 0 && errno == ENOENT)
                        _exit(0);
                if (fd < 0 || sandbox_give_back(fd) < 0)
                        child_fail(errp[1], 'I', "cannot give what steps left in '%s' back: %s",
                                   dir, errdesc(errno));
                _exit(0);
        }
        close(errp[1]);
        errp[1] = -1;
        if (map_child(&cp, pid, err) < 0) {
                kill(pid, SIGKILL);
                while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                        ;
                goto out;
        }
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        if (child_error(errp[0], err))
                goto out;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                kiln_error_set(err, KILN_E_IO, "cannot give what steps left in '%s' back", dir);
                goto out;
        }
        rc = 0;
out:
        for (size_t i = 0; i < 2; i++)
                if (errp[i] >= 0)
                        close(errp[i]);
        child_plan_free(&cp);
        return rc;
}
