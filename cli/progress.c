#include "progress.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define SLOTS 32
#define REDRAW_NS (100 * 1000 * 1000LL)
#define LINE_MAX_COLS 200

struct slot {
        bool used;
        char digest[OCI_DIGEST_MAX];
        int64_t size, done;
        int64_t t0; /* ns */
};

#define TASKS 64
#define TASK_LINES 3
#define TASK_LINE_COLS 160

struct task {
        bool used;
        bool timed;
        char name[64];
        char state[48];
        int64_t t0;
        char lines[TASK_LINES][TASK_LINE_COLS];
        unsigned n_lines; /* lines kept, at most TASK_LINES; the newest last */
};

static struct {
        pthread_mutex_t lock;
        pthread_cond_t wake;  /* the ticker's stop */
        pthread_t ticker;     /* redraws the rows of running tasks (tty) */
        bool ticking, stop;
        struct task tasks[TASKS];
        enum cli_progress_mode mode;
        struct slot slots[SLOTS];
        unsigned drawn; /* lines of the block on screen (tty) */
        int64_t last_draw;
        /* KILN_TEST_CLOCK_STEP_MS: a clock that moves this far on each reading
         * instead of the real one, so a test sees the same redraws, rates and
         * ETAs on a busy machine as on an idle one */
        int64_t test_step, test_now;
} P = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER,
       .mode = CLI_PROGRESS_NONE};

static void stop_ticker(void);

/* Under P.lock. */
static int64_t now_ns(void)
{
        struct timespec ts;

        if (P.test_step > 0)
                return P.test_now += P.test_step;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int cli_progress_parse(const char *arg, enum cli_progress_mode *ret)
{
        static const char *const names[] = {"auto", "none", "plain", "tty"};

        for (int i = 0; i < 4; i++)
                if (!strcmp(arg, names[i])) {
                        *ret = (enum cli_progress_mode)i;
                        return 0;
                }
        return -1;
}

void cli_progress_begin(enum cli_progress_mode mode)
{
        const char *step = getenv("KILN_TEST_CLOCK_STEP_MS");

        if (mode == CLI_PROGRESS_AUTO) {
                const char *term = getenv("TERM");
                mode = isatty(STDERR_FILENO) && !(term && !strcmp(term, "dumb"))
                               ? CLI_PROGRESS_TTY
                               : CLI_PROGRESS_PLAIN;
        }
        pthread_mutex_lock(&P.lock);
        P.mode = mode;
        memset(P.slots, 0, sizeof(P.slots));
        memset(P.tasks, 0, sizeof(P.tasks));
        P.drawn = 0;
        P.last_draw = 0;
        P.test_step = step && *step ? strtoll(step, NULL, 10) * 1000000LL : 0;
        P.test_now = 0;
        pthread_mutex_unlock(&P.lock);
}

/* "sha256:0123456789ab" */
static const char *short_digest(const char *d, char *buf, size_t len)
{
        const char *colon = strchr(d, ':');
        int n = colon ? (int)(colon - d) + 13 : 19;

        snprintf(buf, len, "%.*s", n, d);
        return buf;
}

static void format_rate(int64_t bytes, int64_t ns, char *buf, size_t len)
{
        char sz[32];

        if (ns <= 0) {
                snprintf(buf, len, "-");
                return;
        }
        cli_format_size((long long)((double)bytes * 1e9 / (double)ns), sz, sizeof(sz));
        snprintf(buf, len, "%s/s", sz);
}

static unsigned columns(void)
{
        struct winsize ws;

        if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20)
                return ws.ws_col < LINE_MAX_COLS ? ws.ws_col : LINE_MAX_COLS;
        return 80;
}

/* Erases the block (the cursor is left where it began). */
static void erase_locked(void)
{
        if (P.drawn)
                fprintf(stderr, "\r\033[%uA\033[J", P.drawn);
        P.drawn = 0;
}

static void draw_locked(int64_t now)
{
        unsigned cols = columns();

        erase_locked();
        for (int i = 0; i < TASKS; i++) {
                const struct task *t = &P.tasks[i];
                char line[512];
                if (!t->used)
                        continue;
                if (t->timed) {
                        int64_t s = (now - t->t0) / 1000000000LL;
                        if (s >= 60)
                                snprintf(line, sizeof(line), "%s  %s %lldm%02llds", t->name,
                                         t->state, (long long)(s / 60), (long long)(s % 60));
                        else
                                snprintf(line, sizeof(line), "%s  %s %llds", t->name, t->state,
                                         (long long)s);
                } else {
                        snprintf(line, sizeof(line), "%s  %s", t->name, t->state);
                }
                line[cols - 1 < LINE_MAX_COLS ? cols - 1 : LINE_MAX_COLS] = 0;
                fprintf(stderr, "\033[2K%s\n", line);
                P.drawn++;
                for (unsigned k = 0; k < t->n_lines; k++) {
                        snprintf(line, sizeof(line), "  | %s", t->lines[k]);
                        line[cols - 1 < LINE_MAX_COLS ? cols - 1 : LINE_MAX_COLS] = 0;
                        fprintf(stderr, "\033[2K%s\n", line);
                        P.drawn++;
                }
        }
        for (int i = 0; i < SLOTS; i++) {
                const struct slot *s = &P.slots[i];
                char line[512], dg[OCI_DIGEST_MAX], done[32], size[32], rate[48];
                char eta[32] = "";
                int64_t el = now - s->t0;

                if (!s->used)
                        continue;
                cli_format_size(s->done, done, sizeof(done));
                cli_format_size(s->size, size, sizeof(size));
                format_rate(s->done, el, rate, sizeof(rate));
                if (s->done > 0 && s->size > s->done && el > 0) {
                        double left = (double)(s->size - s->done) * (double)el / (double)s->done;
                        snprintf(eta, sizeof(eta), "  ETA %.0fs", left / 1e9);
                }
                snprintf(line, sizeof(line), "%s  %s / %s  %s%s",
                         short_digest(s->digest, dg, sizeof(dg)), done, size, rate, eta);
                line[cols - 1 < LINE_MAX_COLS ? cols - 1 : LINE_MAX_COLS] = 0;
                fprintf(stderr, "\033[2K%s\n", line);
                P.drawn++;
        }
        fflush(stderr);
        P.last_draw = now;
}

/* A line that stays, above the block in tty mode. */
static void line_locked(const char *line)
{
        if (P.mode == CLI_PROGRESS_TTY) {
                erase_locked();
                fprintf(stderr, "%s\n", line);
                draw_locked(now_ns());
        } else {
                fprintf(stderr, "%s\n", line);
        }
}

void cli_progress_message(const char *line)
{
        pthread_mutex_lock(&P.lock);
        line_locked(line);
        pthread_mutex_unlock(&P.lock);
}

static void on_event(void *ctx, const char *event, const struct oci_descriptor *d)
{
        char sz[32], line[OCI_DIGEST_MAX + 64];

        (void)ctx;
        if (!strcmp(event, "done"))
                return; /* the bytes callback says when it ended */

        cli_format_size(d->size, sz, sizeof(sz));
        snprintf(line, sizeof(line), "%s %s (%s)", !strcmp(event, "skip") ? "exists" : "copying",
                 d->digest.str, sz);
        pthread_mutex_lock(&P.lock);
        /* on a terminal the blob's own line says it is being copied */
        if (P.mode == CLI_PROGRESS_PLAIN || !strcmp(event, "skip"))
                line_locked(line);
        pthread_mutex_unlock(&P.lock);
}

static struct slot *slot_of(const struct oci_descriptor *d, bool create, int64_t now)
{
        struct slot *free_slot = NULL;

        for (int i = 0; i < SLOTS; i++) {
                if (P.slots[i].used && !strcmp(P.slots[i].digest, d->digest.str))
                        return &P.slots[i];
                if (!P.slots[i].used && !free_slot)
                        free_slot = &P.slots[i];
        }
        if (!create || !free_slot)
                return NULL;
        memset(free_slot, 0, sizeof(*free_slot));
        free_slot->used = true;
        snprintf(free_slot->digest, sizeof(free_slot->digest), "%s", d->digest.str);
        free_slot->size = d->size;
        free_slot->t0 = now;
        return free_slot;
}

static void on_bytes(void *ctx, const struct oci_descriptor *d, int64_t done, bool finished)
{
        int64_t now;
        struct slot *s;

        (void)ctx;
        pthread_mutex_lock(&P.lock);
        now = now_ns();
        s = slot_of(d, !finished || done > 0, now);
        if (!s) {
                pthread_mutex_unlock(&P.lock);
                return;
        }
        s->done = done;
        if (finished) {
                /* done short of the size: mounted (said elsewhere) or failed */
                if (done == s->size && done > 0) {
                        char sz[32], rate[48], line[OCI_DIGEST_MAX + 96];
                        cli_format_size(s->size, sz, sizeof(sz));
                        format_rate(done, now - s->t0, rate, sizeof(rate));
                        snprintf(line, sizeof(line), "copied %s (%s, %s)", s->digest, sz, rate);
                        s->used = false;
                        line_locked(line);
                } else {
                        s->used = false;
                        if (P.mode == CLI_PROGRESS_TTY)
                                draw_locked(now);
                }
        } else if (P.mode == CLI_PROGRESS_TTY &&
                   (now - P.last_draw >= REDRAW_NS || done == d->size)) {
                draw_locked(now);
        }
        pthread_mutex_unlock(&P.lock);
}

void cli_progress_attach(struct oci_copy_opts *opts)
{
        if (P.mode == CLI_PROGRESS_NONE)
                return;
        opts->progress = on_event;
        opts->bytes = on_bytes;
        opts->progress_ctx = NULL;
}

bool cli_progress_shown(void)
{
        return P.mode != CLI_PROGRESS_NONE;
}

void cli_progress_end(void)
{
        stop_ticker();
        pthread_mutex_lock(&P.lock);
        if (P.mode == CLI_PROGRESS_TTY)
                erase_locked();
        memset(P.slots, 0, sizeof(P.slots));
        memset(P.tasks, 0, sizeof(P.tasks));
        fflush(stderr);
        pthread_mutex_unlock(&P.lock);
}

/* On a terminal a task's row changes with no event: its elapsed time, and
 * lines that came between two redraws.  The ticker redraws the block
 * REDRAW_NS after the last redraw while tasks are shown. */
static void *tick(void *arg)
{
        (void)arg;
        pthread_mutex_lock(&P.lock);
        while (!P.stop) {
                struct timespec until;
                bool any = false;
                clock_gettime(CLOCK_REALTIME, &until);
                until.tv_nsec += 250 * 1000 * 1000;
                if (until.tv_nsec >= 1000000000L) {
                        until.tv_sec++;
                        until.tv_nsec -= 1000000000L;
                }
                pthread_cond_timedwait(&P.wake, &P.lock, &until);
                if (P.stop)
                        break;
                for (int i = 0; i < TASKS && !any; i++)
                        any = P.tasks[i].used;
                if (any)
                        draw_locked(now_ns());
        }
        pthread_mutex_unlock(&P.lock);
        return NULL;
}

/* Under P.lock. */
static void start_ticker_locked(void)
{
        if (P.ticking || P.mode != CLI_PROGRESS_TTY)
                return;
        P.stop = false;
        P.ticking = pthread_create(&P.ticker, NULL, tick, NULL) == 0;
}

static void stop_ticker(void)
{
        pthread_mutex_lock(&P.lock);
        if (!P.ticking) {
                pthread_mutex_unlock(&P.lock);
                return;
        }
        P.stop = true;
        pthread_cond_broadcast(&P.wake);
        pthread_mutex_unlock(&P.lock);
        pthread_join(P.ticker, NULL);
        pthread_mutex_lock(&P.lock);
        P.ticking = false;
        pthread_mutex_unlock(&P.lock);
}

enum cli_progress_mode cli_progress_mode(void)
{
        return P.mode;
}

static struct task *task_of(const char *name, bool create)
{
        struct task *free_task = NULL;

        for (int i = 0; i < TASKS; i++) {
                if (P.tasks[i].used && !strcmp(P.tasks[i].name, name))
                        return &P.tasks[i];
                if (!P.tasks[i].used && !free_task)
                        free_task = &P.tasks[i];
        }
        if (!create || !free_task)
                return NULL;
        memset(free_task, 0, sizeof(*free_task));
        free_task->used = true;
        snprintf(free_task->name, sizeof(free_task->name), "%s", name);
        return free_task;
}

void cli_progress_task(const char *name, const char *state, bool timed)
{
        struct task *t;

        pthread_mutex_lock(&P.lock);
        if (P.mode == CLI_PROGRESS_TTY && (t = task_of(name, true))) {
                int64_t now = now_ns();
                start_ticker_locked();
                if (strcmp(t->state, state)) {
                        snprintf(t->state, sizeof(t->state), "%s", state);
                        t->t0 = now;
                }
                t->timed = timed;
                draw_locked(now);
        }
        pthread_mutex_unlock(&P.lock);
}

void cli_progress_task_line(const char *name, const char *line)
{
        struct task *t;

        pthread_mutex_lock(&P.lock);
        if (P.mode == CLI_PROGRESS_TTY && (t = task_of(name, true))) {
                int64_t now = now_ns();
                if (t->n_lines == TASK_LINES) {
                        memmove(t->lines[0], t->lines[1], sizeof(t->lines[0]) * (TASK_LINES - 1));
                        t->n_lines--;
                }
                snprintf(t->lines[t->n_lines++], TASK_LINE_COLS, "%s", line);
                if (now - P.last_draw >= REDRAW_NS)
                        draw_locked(now);
        }
        pthread_mutex_unlock(&P.lock);
}

void cli_progress_task_end(const char *name, const char *line)
{
        struct task *t;

        pthread_mutex_lock(&P.lock);
        if (P.mode == CLI_PROGRESS_TTY) {
                if ((t = task_of(name, false)))
                        t->used = false;
                line_locked(line);
        }
        pthread_mutex_unlock(&P.lock);
}
