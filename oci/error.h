/* oci/error.h: the one error type of kiln.
 *
 * Every fallible function takes `struct kiln_error *err` as its last
 * argument and returns 0 / -1 (or a pointer / NULL).  On failure it fills
 * err with a code and a one-line message; nothing is allocated, so there is
 * nothing to free.  Callers add context with kiln_error_prefix().  Only
 * cli/ prints the message and maps the code to an exit status.
 *
 *     struct kiln_error err = KILN_ERROR_INIT;
 *     if (oci_digest_parse(s, &d, &err) < 0)
 *             kiln_error_prefix(&err, "pull '%s'", ref);
 */
#ifndef KILN_OCI_ERROR_H
#define KILN_OCI_ERROR_H

#include <stddef.h>

enum kiln_errc {
        KILN_OK = 0,
        KILN_E_GENERIC,     /* anything without a better code */
        KILN_E_USAGE,       /* bad command line */
        KILN_E_INVALID,     /* bad input: reference, JSON, recipe, tar entry */
        KILN_E_DIGEST,      /* content does not match its digest or size */
        KILN_E_NOT_FOUND,   /* image, tag, blob or file missing */
        KILN_E_IO,          /* local file system */
        KILN_E_NETWORK,     /* connection, TLS, HTTP protocol */
        KILN_E_AUTH,        /* credentials refused or missing */
        KILN_E_LIMIT,       /* a size or count limit was hit */
        KILN_E_UNSUPPORTED, /* valid but not handled (algorithm, media type) */
        KILN_E_NOMEM,
        KILN_E_INTERNAL,
        KILN_E_STEP,        /* a recipe's build step failed (its status is in the message) */
};

#define KILN_ERROR_MSG_SIZE 1024

struct kiln_error {
        enum kiln_errc code;
        int sys_errno;
        char msg[KILN_ERROR_MSG_SIZE];
};

#define KILN_ERROR_INIT {KILN_OK, 0, {0}}

#if defined(__GNUC__)
#define KILN_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define KILN_PRINTF(a, b)
#endif

/* Sets code and message.  Always returns -1 so callers can `return
 * kiln_error_set(...)`.  err may be NULL. */
int kiln_error_set(struct kiln_error *err, enum kiln_errc code, const char *fmt, ...)
        KILN_PRINTF(3, 4);

/* Like kiln_error_set() and appends ": strerror(errnum)". */
int kiln_error_set_errno(struct kiln_error *err, enum kiln_errc code, int errnum, const char *fmt,
                         ...) KILN_PRINTF(4, 5);

/* Prepends "CONTEXT: " to the message; keeps the code. */
void kiln_error_prefix(struct kiln_error *err, const char *fmt, ...) KILN_PRINTF(2, 3);

void kiln_error_clear(struct kiln_error *err);

/* A short name for the code ("invalid input", "digest mismatch", ...). */
const char *kiln_errc_name(enum kiln_errc code);

#endif
