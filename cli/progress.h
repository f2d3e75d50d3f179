/* cli/progress.h: what a copy shows while it runs, on stderr.
 *
 *   none   nothing (--quiet, --json);
 *   plain  one line per event: "copying DIGEST (SIZE)", "exists DIGEST
 *          (SIZE)", "mounted DIGEST from REPO", "copied DIGEST (SIZE, RATE)";
 *   tty    a line per blob in flight, redrawn in place at most ten times a
 *          second: bytes done, size, rate and time left; each blob that ends
 *          leaves one plain line above them.
 *
 * --progress=auto (the default) is tty when stderr is a terminal (and TERM is
 * not "dumb"), plain otherwise.  Warnings and retries printed while blobs are
 * shown go through cli_progress_message so the two never mix.
 *
 *     cli_progress_begin(mode);
 *     cli_progress_attach(&copy_opts);
 *     oci_image_copy(...);
 *     cli_progress_end();
 */
#ifndef KILN_CLI_PROGRESS_H
#define KILN_CLI_PROGRESS_H

#include "image.h"

enum cli_progress_mode {
        CLI_PROGRESS_AUTO,
        CLI_PROGRESS_NONE,
        CLI_PROGRESS_PLAIN,
        CLI_PROGRESS_TTY,
};

/* "auto", "plain", "tty" or "none"; -1 for anything else. */
int cli_progress_parse(const char *arg, enum cli_progress_mode *ret);

void cli_progress_begin(enum cli_progress_mode mode);
/* Sets opts' progress and bytes callbacks unless the mode is none. */
void cli_progress_attach(struct oci_copy_opts *opts);
/* A line of its own ("kiln: warning: ..."), printed above the blobs shown. */
void cli_progress_message(const char *line);
/* True unless the mode is none. */
bool cli_progress_shown(void);
/* The mode begun, auto resolved to tty or plain. */
enum cli_progress_mode cli_progress_mode(void);

/* Named tasks (a build's layers), drawn above the blobs on a terminal: a row
 * "NAME  STATE ELAPSED" (the time since the state was set, when timed) and
 * the task's last lines under it.  task_end removes the row and leaves line
 * above the block.  Outside tty mode these print nothing. */
void cli_progress_task(const char *name, const char *state, bool timed);
void cli_progress_task_line(const char *name, const char *line);
void cli_progress_task_end(const char *name, const char *line);

/* Clears what is shown; the mode stays. */
void cli_progress_end(void);

#endif
