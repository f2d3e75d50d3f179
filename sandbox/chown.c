/* sandbox_opts.ignore_chown (sandbox.h): chown(2) and its relatives
 * succeed without doing anything.  Inside the sandbox only uid and gid 0
 * are mapped, so a maintainer script's `chown root:staff DIR` fails with
 * EINVAL there, while a layer records every owner as 0:0 anyway
 * (layers/source.h): the change the script asked for could not reach the
 * image either way.  A seccomp filter answers those calls with 0, the
 * way fakeroot answers them with its own bookkeeping; every other call,
 * and every call of another architecture's ABI, goes to the kernel. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "sandbox_internal.h"

#if defined(__x86_64__)
#define NATIVE_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define NATIVE_ARCH AUDIT_ARCH_AARCH64
#elif defined(__i386__)
#define NATIVE_ARCH AUDIT_ARCH_I386
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define NATIVE_ARCH AUDIT_ARCH_PPC64LE
#elif defined(__s390x__)
#define NATIVE_ARCH AUDIT_ARCH_S390X
#elif defined(__riscv) && __riscv_xlen == 64
#define NATIVE_ARCH AUDIT_ARCH_RISCV64
#endif

int sandbox_ignore_chown(void)
{
#ifdef NATIVE_ARCH
        static const long calls[] = {
            SYS_fchown,  SYS_fchownat,
#ifdef SYS_chown
            SYS_chown,
#endif
#ifdef SYS_lchown
            SYS_lchown,
#endif
#ifdef SYS_chown32
            SYS_chown32, SYS_fchown32, SYS_lchown32,
#endif
        };
        enum { N = sizeof(calls) / sizeof(calls[0]) };
        /* arch check (3), load nr (1), one test per call, allow, answer 0 */
        struct sock_filter f[3 + 1 + N + 2];
        struct sock_fprog prog = {.len = (unsigned short)(sizeof(f) / sizeof(f[0])), .filter = f};
        size_t k = 0;

        f[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
                                              offsetof(struct seccomp_data, arch));
        f[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NATIVE_ARCH, 1, 0);
        f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
        f[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
                                              offsetof(struct seccomp_data, nr));
        for (size_t i = 0; i < N; i++)
                /* a match jumps over the tests left and the allow */
                f[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)calls[i],
                                                      (unsigned char)(N - i), 0);
        f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
        /* SECCOMP_RET_ERRNO with errno 0: the call returns 0, not run */
        f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | 0);
        return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0);
#else
        errno = ENOSYS;
        return -1;
#endif
}
