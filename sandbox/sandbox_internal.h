/* sandbox/sandbox_internal.h: what sandbox.c's children call. */
#ifndef KILN_SANDBOX_INTERNAL_H
#define KILN_SANDBOX_INTERNAL_H

/* Makes chown, fchown, lchown and fchownat of this process and its
 * children succeed without effect (chown.c); -1 with errno set when the
 * filter cannot be installed. */
int sandbox_ignore_chown(void);

#endif
