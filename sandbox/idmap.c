/* The sandbox's id mapping (sandbox_internal.h): uid and gid 0 inside are
 * the caller outside, and where /etc/subuid and /etc/subgid give the
 * caller a range and newuidmap and newgidmap (shadow's uidmap package) are
 * installed, ids 1..N inside are that range, as podman and buildah map a
 * rootless container.  The tools are setuid root and check the ranges
 * themselves; kiln only asks. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox_internal.h"
#include "util.h"

extern char **environ;

int sandbox_subid_lookup(const char *file, const char *name, unsigned long id,
                         unsigned long *ret_start, unsigned long *ret_count)
{
        FILE *f = fopen(file, "re");
        char line[512], idstr[32];
        int found = 0;

        if (!f)
                return 0;
        snprintf(idstr, sizeof(idstr), "%lu", id);
        while (!found && fgets(line, sizeof(line), f)) {
                char *who = line, *start, *count, *end;
                unsigned long s, c;

                line[strcspn(line, "\n")] = '\0';
                start = strchr(who, ':');
                if (!start || *who == '#')
                        continue;
                *start++ = '\0';
                count = strchr(start, ':');
                if (!count)
                        continue;
                *count++ = '\0';
                if (strcmp(who, idstr) && (!name || strcmp(who, name)))
                        continue;
                errno = 0;
                s = strtoul(start, &end, 10);
                if (errno || end == start || *end)
                        continue;
                c = strtoul(count, &end, 10);
                if (errno || end == count || *end || c == 0 || s == 0 || s + c < s)
                        continue;
                *ret_start = s;
                *ret_count = c;
                found = 1;
        }
        fclose(f);
        return found;
}

/* PATH's first executable prog (setuid programs are often only in /usr/bin
 * and /usr/sbin, which a minimal PATH may lack: those are tried too). */
static bool find_tool(const char *prog, char *buf, size_t len)
{
        const char *path = getenv("PATH");
        char *copy = kiln_strdupf("%s:/usr/bin:/usr/sbin:/bin:/sbin", path ? path : "");
        char *save = NULL;
        bool ok = false;

        for (char *d = copy ? strtok_r(copy, ":", &save) : NULL; d && !ok;
             d = strtok_r(NULL, ":", &save)) {
                if (*d != '/')
                        continue;
                snprintf(buf, len, "%s/%s", d, prog);
                ok = access(buf, X_OK) == 0;
        }
        free(copy);
        return ok;
}

int sandbox_idmap_for(struct sandbox_idmap *m, struct kiln_error *err)
{
        const char *want = getenv("KILN_SANDBOX_IDMAP");
        struct passwd pw, *pwp = NULL;
        char pwbuf[4096];
        const char *name;
        bool uid_ok, gid_ok;

        memset(m, 0, sizeof(*m));
        m->uid = getuid();
        m->gid = getgid();
        if (want && *want && strcmp(want, "auto") && strcmp(want, "single") &&
            strcmp(want, "subid"))
                return kiln_error_set(err, KILN_E_INVALID,
                                      "KILN_SANDBOX_IDMAP is '%s': use auto, single or subid",
                                      want);
        if (want && !strcmp(want, "single"))
                return 0;
        getpwuid_r(m->uid, &pw, pwbuf, sizeof(pwbuf), &pwp);
        name = pwp ? pwp->pw_name : NULL;
        uid_ok = sandbox_subid_lookup(SANDBOX_SUBUID_FILE, name, m->uid, &m->uid_start,
                                      &m->uid_count);
        gid_ok = sandbox_subid_lookup(SANDBOX_SUBGID_FILE, name, m->uid, &m->gid_start,
                                      &m->gid_count);
        m->sub = uid_ok && gid_ok && find_tool("newuidmap", m->newuidmap, sizeof(m->newuidmap)) &&
                 find_tool("newgidmap", m->newgidmap, sizeof(m->newgidmap));
        if (!m->sub && want && !strcmp(want, "subid"))
                return kiln_error_set(err, KILN_E_UNSUPPORTED,
                                      "KILN_SANDBOX_IDMAP is subid, but %s",
                                      !uid_ok ? SANDBOX_SUBUID_FILE " has no range for this user"
                                      : !gid_ok ? SANDBOX_SUBGID_FILE " has no range for this user"
                                                : "newuidmap or newgidmap is not installed");
        return 0;
}

/* tool PID 0 ID 1 1 START COUNT; its stderr's first line in the error */
static int run_tool(const char *tool, pid_t pid, unsigned long id, unsigned long start,
                    unsigned long count, struct kiln_error *err)
{
        char spid[32], sid[32], sstart[32], scount[32], msg[256] = "";
        const char *argv[] = {tool, spid, "0", sid, "1", "1", sstart, scount, NULL};
        posix_spawn_file_actions_t fa;
        int p[2], status = 0, rc;
        pid_t child;
        ssize_t n;

        snprintf(spid, sizeof(spid), "%d", (int)pid);
        snprintf(sid, sizeof(sid), "%lu", id);
        snprintf(sstart, sizeof(sstart), "%lu", start);
        snprintf(scount, sizeof(scount), "%lu", count);
        if (pipe2(p, O_CLOEXEC) < 0)
                return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create a pipe");
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, p[1], 2);
        rc = posix_spawn(&child, tool, &fa, NULL, (char *const *)(uintptr_t)argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        close(p[1]);
        if (rc != 0) {
                close(p[0]);
                return kiln_error_set_errno(err, KILN_E_UNSUPPORTED, rc, "cannot run %s", tool);
        }
        n = read(p[0], msg, sizeof(msg) - 1);
        close(p[0]);
        msg[n > 0 ? n : 0] = '\0';
        msg[strcspn(msg, "\n")] = '\0';
        while (waitpid(child, &status, 0) < 0 && errno == EINTR)
                ;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
                return 0;
        return kiln_error_set(err, KILN_E_UNSUPPORTED,
                              "%s could not map %lu ids from %lu (from %s): %s", tool, count,
                              start, strstr(tool, "gid") ? SANDBOX_SUBGID_FILE : SANDBOX_SUBUID_FILE,
                              *msg ? msg : "it failed");
}

int sandbox_idmap_apply(const struct sandbox_idmap *m, pid_t pid, struct kiln_error *err)
{
        if (run_tool(m->newuidmap, pid, m->uid, m->uid_start, m->uid_count, err) < 0 ||
            run_tool(m->newgidmap, pid, m->gid, m->gid_start, m->gid_count, err) < 0)
                return -1;
        return 0;
}

/* ---- in a child: no allocation ---- */

/* Depth-first under dfd: owners back to 0:0 inside (the caller outside),
 * setuid and setgid bits that chown takes away put back. */
static int give_back_dir(int dfd, int depth)
{
        char buf[2048];
        int rc = 0;

        if (depth > 512)
                return -1;
        for (;;) {
                long n = syscall(SYS_getdents64, dfd, buf, sizeof(buf));
                if (n < 0)
                        return -1;
                if (n == 0)
                        break;
                for (long off = 0; off < n;) {
                        struct {
                                unsigned long long ino;
                                long long off;
                                unsigned short reclen;
                                unsigned char type;
                                char name[];
                        } *d = (void *)(buf + off);
                        struct stat st;
                        off += d->reclen;
                        if (!strcmp(d->name, ".") || !strcmp(d->name, ".."))
                                continue;
                        if (fstatat(dfd, d->name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                                rc = -1;
                                continue;
                        }
                        if ((st.st_uid || st.st_gid) &&
                            fchownat(dfd, d->name, 0, 0, AT_SYMLINK_NOFOLLOW) < 0)
                                rc = -1;
                        if ((st.st_uid || st.st_gid) && S_ISREG(st.st_mode) &&
                            (st.st_mode & (S_ISUID | S_ISGID)) &&
                            fchmodat(dfd, d->name, st.st_mode & 07777, 0) < 0)
                                rc = -1;
                        if (S_ISDIR(st.st_mode)) {
                                int sub = openat(dfd, d->name,
                                                 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                                if (sub < 0 || give_back_dir(sub, depth + 1) < 0)
                                        rc = -1;
                                if (sub >= 0)
                                        close(sub);
                        }
                }
        }
        return rc;
}

int sandbox_give_back(int dfd)
{
        struct stat st;
        int rc = 0;

        if (fstat(dfd, &st) < 0)
                return -1;
        if ((st.st_uid || st.st_gid) && fchown(dfd, 0, 0) < 0)
                rc = -1;
        if (give_back_dir(dfd, 0) < 0)
                rc = -1;
        return rc;
}
