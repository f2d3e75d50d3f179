#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void vset(struct kiln_error *err, const char *fmt, va_list ap)
{
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        /* One line only: a message never carries a line break. */
        for (char *p = err->msg; *p; p++)
                if (*p == '\n' || *p == '\r')
                        *p = ' ';
}

int kiln_error_set(struct kiln_error *err, enum kiln_errc code, const char *fmt, ...)
{
        va_list ap;

        if (!err)
                return -1;
        err->code = code;
        err->sys_errno = 0;
        va_start(ap, fmt);
        vset(err, fmt, ap);
        va_end(ap);
        return -1;
}

int kiln_error_set_errno(struct kiln_error *err, enum kiln_errc code, int errnum, const char *fmt,
                         ...)
{
        va_list ap;
        size_t n;

        if (!err)
                return -1;
        err->code = code;
        err->sys_errno = errnum;
        va_start(ap, fmt);
        vset(err, fmt, ap);
        va_end(ap);
        n = strlen(err->msg);
        if (n < sizeof(err->msg) - 3)
                snprintf(err->msg + n, sizeof(err->msg) - n, ": %s", strerror(errnum));
        return -1;
}

void kiln_error_prefix(struct kiln_error *err, const char *fmt, ...)
{
        char old[KILN_ERROR_MSG_SIZE];
        va_list ap;
        size_t n;

        if (!err)
                return;
        memcpy(old, err->msg, sizeof(old));
        va_start(ap, fmt);
        vset(err, fmt, ap);
        va_end(ap);
        n = strlen(err->msg);
        if (n < sizeof(err->msg) - 3)
                snprintf(err->msg + n, sizeof(err->msg) - n, ": %s", old);
}

void kiln_error_clear(struct kiln_error *err)
{
        if (!err)
                return;
        err->code = KILN_OK;
        err->sys_errno = 0;
        err->msg[0] = '\0';
}

const char *kiln_errc_name(enum kiln_errc code)
{
        switch (code) {
        case KILN_OK: return "ok";
        case KILN_E_GENERIC: return "error";
        case KILN_E_USAGE: return "usage";
        case KILN_E_INVALID: return "invalid input";
        case KILN_E_DIGEST: return "digest mismatch";
        case KILN_E_NOT_FOUND: return "not found";
        case KILN_E_IO: return "i/o error";
        case KILN_E_NETWORK: return "network error";
        case KILN_E_AUTH: return "authentication error";
        case KILN_E_LIMIT: return "limit exceeded";
        case KILN_E_UNSUPPORTED: return "unsupported";
        case KILN_E_NOMEM: return "out of memory";
        case KILN_E_INTERNAL: return "internal error";
        case KILN_E_STEP: return "build step failed";
        }
        return "error";
}
