/* oci/util.h: small helpers shared by every library: cleanup attributes,
 * steal_ptr(), checked allocation and string helpers. */
#ifndef KILN_OCI_UTIL_H
#define KILN_OCI_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)

static inline void freep(void *p)
{
        free(*(void **)p);
}

static inline void closep(int *fd)
{
        if (*fd >= 0)
                close(*fd);
}

/* Hands ownership out of a _cleanup_ variable. */
static inline void *steal_ptr(void *pp)
{
        void **p = (void **)pp;
        void *v = *p;
        *p = NULL;
        return v;
}

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static inline bool str_has_prefix(const char *s, const char *prefix)
{
        return strncmp(s, prefix, strlen(prefix)) == 0;
}

static inline bool str_has_suffix(const char *s, const char *suffix)
{
        size_t a = strlen(s), b = strlen(suffix);
        return a >= b && memcmp(s + a - b, suffix, b) == 0;
}

/* asprintf without the GNU extension; NULL on allocation failure. */
char *kiln_strdupf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
