/* cli/cli.h: what the verbs share: error reporting and exit codes, opening
 * places; the verbs and their options are in options.h.  Only cli/ prints
 * or exits. */
#ifndef KILN_CLI_H
#define KILN_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "error.h"
#include "image.h"
#include "options.h"

/* Documented in docs/kiln.1 (EXIT STATUS). */
enum cli_exit {
        EXIT_OK = 0,
        EXIT_FAIL = 1,      /* the check failed: fsck problems, validate failures, diff found differences */
        EXIT_USAGE = 2,
        EXIT_INVALID = 3,   /* bad input: reference, JSON, recipe, archive entry */
        EXIT_INTEGRITY = 4, /* digest or size mismatch */
        EXIT_NOT_FOUND = 5,
        EXIT_NETWORK = 6,
        EXIT_AUTH = 7,
        EXIT_LIMIT = 8,
        EXIT_UNSUPPORTED = 9,
        EXIT_IO = 10,
        EXIT_STEP = 11,     /* a recipe's build step failed */
        EXIT_INTERNAL = 70,
};

/* Text from images and registries reaches the terminal escaped (control
 * characters as \n, \x1b: oci/util.h kiln_text_escape), so a name or a
 * label can neither move the cursor nor forge a line of kiln's own.
 * cli_fail and cli_warn escape their whole message; cli_put_text(s, f)
 * writes s escaped (no newline). */
void cli_put_text(const char *s, FILE *f);

/* Prints "kiln: error: MSG" (escaped) and returns the exit code for err->code. */
int cli_fail(const struct kiln_error *err);
int cli_exit_code(enum kiln_errc code);
/* Prints "kiln VERB: MSG" and the verb's usage line; returns EXIT_USAGE. */
int cli_usage(const char *verb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Opens a place (see oci/place.h) for reading or for writing; a registry
 * with a's registry options. */
struct oci_store *cli_open_place(struct cli_args *a, const char *place, bool for_write,
                                 struct kiln_error *err);

/* Prints a byte count as "12.3 MB". */
void cli_format_size(long long bytes, char *buf, size_t len);

#endif
