#include "util.h"

#include <stdarg.h>
#include <stdio.h>

char *kiln_strdupf(const char *fmt, ...)
{
        va_list ap;
        int n;
        char *s;

        va_start(ap, fmt);
        n = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        if (n < 0)
                return NULL;
        s = malloc((size_t)n + 1);
        if (!s)
                return NULL;
        va_start(ap, fmt);
        vsnprintf(s, (size_t)n + 1, fmt, ap);
        va_end(ap);
        return s;
}
