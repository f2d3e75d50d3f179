/* sandbox/sandbox.h: running a command inside an image, rootless.
 *
 * No daemon, no setuid helper: the process kiln forks unshares a user
 * namespace (uid and gid 0 inside are the caller outside: one mapping
 * written by the process itself after "deny" to setgroups), a mount, PID,
 * IPC and UTS namespace, and a network namespace unless the step asks for
 * the network.  Its child is PID 1 of the new PID namespace and
 *   - mounts the image as overlayfs: the unpacked layers (sandbox/rootfs.h)
 *     as lower directories, top first, a fresh upper and work directory,
 *     with "userxattr" (Linux >= 5.11), so whiteouts and opaque
 *     directories are the user.overlay.* form an unprivileged user makes;
 *   - mounts a new /proc, a tmpfs /dev holding bind mounts of the host's
 *     null, zero, full, random, urandom and tty, a tmpfs /dev/shm and, where
 *     the kernel lets it, a private /dev/pts;
 *   - binds the caller's paths (read-only ones are remounted so), and with
 *     the network the host's /etc/resolv.conf and /etc/hosts, read-only;
 *   - pivot_root()s into the overlay and detaches the host's tree, then
 *     starts the command (PID 2) with exactly the environment given and
 *     stays its init: signals forwarded, orphans reaped, the command's
 *     status passed on.
 * When kiln dies, the namespace's processes die with it (PDEATHSIG on both
 * processes; PID 1 gone kills the rest), and the mounts, which live only in
 * the private mount namespace, go with them: the host never sees a mount.
 * Mount points the image lacks are made in the upper directory and removed
 * afterwards when they are still empty (sandbox_upper_clean).
 *
 *     struct sandbox_opts o;
 *     sandbox_opts_init(&o);
 *     o.lowers = lowers; o.n_lowers = n;
 *     o.upper = "/T/upper"; o.work = "/T/work"; o.root = "/T/root";
 *     o.argv = argv; o.env = env;
 *     sandbox_run(&o, &status, &err);      status: the command's exit status,
 *                                          128 + N when signal N killed it
 *
 * Nothing here prints: failures to set the sandbox up come back in err, with
 * one line naming what failed (and, when user namespaces are off, the
 * setting that turns them off).
 */
#ifndef KILN_SANDBOX_SANDBOX_H
#define KILN_SANDBOX_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "error.h"

struct sandbox_bind {
        const char *src; /* host path */
        const char *dst; /* absolute path inside */
        bool ro;
};

struct sandbox_opts {
        const char *const *lowers; /* unpacked layers, top first; none: an empty root */
        size_t n_lowers;
        /* absolute paths: upper and work empty directories on one file
         * system, root an empty directory the image is mounted on */
        const char *upper, *work, *root;
        const char *const *argv;  /* argv[0] is looked up in the env's PATH */
        size_t argc;
        const char *const *env; /* "NAME=VALUE", exactly the command's environment */
        size_t n_env;
        const char *cwd;   /* inside; NULL: "/" (made when missing) */
        bool network;      /* share the host's network namespace */
        const struct sandbox_bind *binds; /* with --gpu, sandbox_gpu_binds' too */
        size_t n_binds;
        mode_t umask;
        /* stdout and stderr of the command: with output set, one pipe for
         * both (order kept), each chunk handed to output as it comes; else
         * the caller's own (stdin too, for kiln run) */
        void (*output)(void *ctx, const char *buf, size_t len);
        void *output_ctx;
        const char *hostname; /* NULL: "kiln" */
        /* chown(2) and its relatives succeed without effect (only uid 0 is
         * mapped, and a layer records owners as 0:0): for maintainer
         * scripts that chown to a group such as staff */
        bool ignore_chown;
        /* the command's uid and gid inside (kiln run --user); other than 0
         * only with subordinate ids, within their range */
        uid_t uid;
        gid_t gid;
};

void sandbox_opts_init(struct sandbox_opts *o);

/* Makes the overlay's directories in dir (a new, private directory):
 * upper (0755, what the command changes), work and the mount point root
 * (0700), and points o at them; the caller frees the three strings with
 * *ret_upper etc. and removes dir when done. */
int sandbox_dirs_make(const char *dir, struct sandbox_opts *o, char **ret_upper, char **ret_work,
                      char **ret_root, struct kiln_error *err);

/* Runs the command; *ret_status is its exit status (128 + N when killed by
 * signal N).  -1 when the sandbox could not be set up or the command not
 * started (KILN_E_UNSUPPORTED when the kernel refuses namespaces). */
int sandbox_run(const struct sandbox_opts *o, int *ret_status, struct kiln_error *err);

/* Whether this kernel lets an unprivileged user make a user namespace, from
 * the sysctls under proc_sys (normally "/proc/sys"): NULL when nothing says
 * no, else a line naming the setting ("kernel.unprivileged_userns_clone is
 * 0", "user.max_user_namespaces is 0",
 * "kernel.apparmor_restrict_unprivileged_userns is 1"). */
const char *sandbox_userns_blocker(const char *proc_sys, char *buf, size_t len);

/* Whether this process can make the sandbox's user namespace, tried
 * with a short-lived child: NULL when it can, else one line saying why
 * not, in buf ("user namespaces are off: user.max_user_namespaces is 0",
 * or the kernel's error). */
const char *sandbox_userns_check(char *buf, size_t len);

/* After a run: removes upper+path for each path (absolute, inside) that is
 * a file or a link the command left there, so the lower layers' version,
 * or none, stays: logs with dates, caches of inode numbers, backups. */
void sandbox_upper_drop(const struct sandbox_opts *o, const char *const *paths, size_t n);

/* --gpu: the host's NVIDIA device nodes and driver files, as the NVIDIA
 * container toolkit's CDI spec lists them: /dev/nvidia[0-9]*, nvidiactl,
 * nvidia-uvm, nvidia-uvm-tools, nvidia-modeset; libcuda.so*,
 * libnvidia-ml.so*, libnvidia-ptxjitcompiler.so* and the driver's other
 * libraries found in lib_dirs (NULL: the usual multiarch directories,
 * /usr/local/nvidia/lib64 and LD_LIBRARY_PATH's); nvidia-smi,
 * nvidia-debugdump, nvidia-persistenced and the MPS tools from /usr/bin,
 * /usr/local/nvidia/bin and PATH's directories (only with lib_dirs NULL).
 * Each is bound read-only at its own path, the devices read-write.
 * dev_dir is normally "/dev".  Fails with KILN_E_NOT_FOUND ("no NVIDIA
 * device ...") when there is no nvidiactl or no nvidia<N>.  ret_binds and
 * every string in them are one allocation for free(); ret_lib_dirs and
 * ret_bin_dirs (may be NULL) get the directories that held a library or a
 * tool, ':'-joined, for LD_LIBRARY_PATH and PATH inside. */
int sandbox_gpu_binds(const char *dev_dir, const char *const *lib_dirs,
                      struct sandbox_bind **ret_binds, size_t *ret_n, char **ret_lib_dirs,
                      char **ret_bin_dirs, struct kiln_error *err);

/* After a run: removes from upper the mount points the sandbox made (the
 * binds' targets, /dev, /proc, /etc/resolv.conf, ...) that are still empty
 * and that no lower directory has, and their empty parents. */
void sandbox_upper_clean(const struct sandbox_opts *o);

/* Where steps run with subordinate ids (/etc/subuid, see sandbox_run), a
 * run killed by SIGKILL leaves files under ids other than the caller's,
 * which the caller can neither read nor remove: in a user namespace with
 * the same mapping, every owner under dir goes back to the caller.  0 with
 * nothing done under the single mapping or when dir is missing. */
int sandbox_reclaim(const char *dir, struct kiln_error *err);

#endif
