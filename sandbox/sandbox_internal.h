/* sandbox/sandbox_internal.h: what sandbox.c's children call. */
#ifndef KILN_SANDBOX_INTERNAL_H
#define KILN_SANDBOX_INTERNAL_H

/* Makes chown, fchown, lchown and fchownat of this process and its
 * children succeed without effect (chown.c); -1 with errno set when the
 * filter cannot be installed. */
int sandbox_ignore_chown(void);

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "error.h"

#define SANDBOX_SUBUID_FILE "/etc/subuid"
#define SANDBOX_SUBGID_FILE "/etc/subgid"

/* The user namespace's mapping (idmap.c): 0 inside is uid/gid outside;
 * with sub, 1..count inside are start..start+count-1 outside, written by
 * the setuid tools newuidmap and newgidmap. */
struct sandbox_idmap {
        bool sub;
        uid_t uid;
        gid_t gid;
        unsigned long uid_start, uid_count, gid_start, gid_count;
        char newuidmap[256], newgidmap[256];
};

/* The first "NAME:START:COUNT" line of file (subuid(5)) for name or for
 * the number id: 1 and the range, 0 when none (or no file). */
int sandbox_subid_lookup(const char *file, const char *name, unsigned long id,
                         unsigned long *ret_start, unsigned long *ret_count);

/* The mapping for this process: subordinate ids where the caller has
 * ranges and the tools are installed, else the single mapping.
 * KILN_SANDBOX_IDMAP=single forces the single mapping, =subid refuses to
 * run without subordinate ids (auto, the default: whichever is there). */
int sandbox_idmap_for(struct sandbox_idmap *m, struct kiln_error *err);

/* Writes m for process pid (in its new user namespace) with the tools. */
int sandbox_idmap_apply(const struct sandbox_idmap *m, pid_t pid, struct kiln_error *err);

/* In the user namespace, allocation-free: every owner under the directory
 * dfd (itself included) back to 0:0, so the caller outside owns, reads and
 * removes what a step made as another user; setuid/setgid bits kept. */
int sandbox_give_back(int dfd);

#endif
