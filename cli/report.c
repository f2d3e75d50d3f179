/* What every verb uses to report: errors and exit codes, usage errors,
 * warnings, text from images made safe for the terminal, sizes. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "progress.h"
#include "util.h"

int cli_exit_code(enum kiln_errc code)
{
        switch (code) {
        case KILN_OK: return EXIT_OK;
        case KILN_E_USAGE: return EXIT_USAGE;
        case KILN_E_INVALID: return EXIT_INVALID;
        case KILN_E_DIGEST: return EXIT_INTEGRITY;
        case KILN_E_NOT_FOUND: return EXIT_NOT_FOUND;
        case KILN_E_NETWORK: return EXIT_NETWORK;
        case KILN_E_AUTH: return EXIT_AUTH;
        case KILN_E_LIMIT: return EXIT_LIMIT;
        case KILN_E_UNSUPPORTED: return EXIT_UNSUPPORTED;
        case KILN_E_IO: return EXIT_IO;
        case KILN_E_NOMEM:
        case KILN_E_INTERNAL: return EXIT_INTERNAL;
        case KILN_E_GENERIC: return EXIT_FAIL;
        case KILN_E_STEP: return EXIT_STEP;
        }
        return EXIT_FAIL;
}

void cli_put_text(const char *s, FILE *f)
{
        char *e = kiln_text_escape_dup(s ? s : "");

        fputs(e ? e : "(out of memory)", f);
        free(e);
}

int cli_fail(const struct kiln_error *err)
{
        fputs("kiln: error: ", stderr);
        cli_put_text(err->msg[0] ? err->msg : kiln_errc_name(err->code), stderr);
        fputc('\n', stderr);
        return cli_exit_code(err->code == KILN_OK ? KILN_E_GENERIC : err->code);
}

int cli_usage(const char *verb, const char *fmt, ...)
{
        const struct cli_verb *v = cli_find_verb(verb);
        va_list ap;

        fprintf(stderr, "kiln %s: ", verb);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        if (v)
                cli_usage_line(v, stderr);
        return EXIT_USAGE;
}

void cli_warn(const char *fmt, ...)
{
        char msg[2048], line[2048];
        va_list ap;
        int n = snprintf(line, sizeof(line), "kiln: warning: ");

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        kiln_text_escape(msg, strlen(msg), line + n, sizeof(line) - (size_t)n, SIZE_MAX, 0);
        cli_progress_message(line); /* above any blobs shown */
}

void cli_format_size(long long bytes, char *buf, size_t len)
{
        static const char *const units[] = {"B", "kB", "MB", "GB", "TB"};
        double v = (double)bytes;
        size_t u = 0;

        while (v >= 1000 && u < 4) {
                v /= 1000;
                u++;
        }
        if (u == 0)
                snprintf(buf, len, "%lld B", bytes);
        else
                snprintf(buf, len, "%.1f %s", v, units[u]);
}
