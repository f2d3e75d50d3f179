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

/* Length of the UTF-8 sequence (RFC 3629: shortest form, no surrogates, at
 * most U+10FFFF) at s (len bytes left), or 0 when it is not one. */
size_t kiln_utf8_char(const unsigned char *s, size_t len);

/* True when s (len bytes) is valid UTF-8. */
bool kiln_utf8_valid(const char *s, size_t len);

/* Text that came from outside (an image, a registry) made safe for a
 * terminal: copies s (len bytes) into dst (dstlen bytes, always
 * NUL-terminated) with \n, \r, \t and \xNN for every other control
 * character (C0, DEL, the C1 controls U+0080-U+009F) and for every byte that
 * is not part of valid UTF-8; printable UTF-8 is kept.  At most max input
 * bytes are escaped, then "..." marks the cut; an escape is never cut in
 * two.  With KILN_ESCAPE_ASCII every non-ASCII byte is escaped too (text
 * that should be ASCII: HTTP bodies and headers).  Returns the length the
 * whole escaped text needs (like snprintf). */
#define KILN_ESCAPE_ASCII 1u
size_t kiln_text_escape(const char *s, size_t len, char *dst, size_t dstlen, size_t max,
                        unsigned flags);

/* The same into a new string (NULL on allocation failure), no cut. */
char *kiln_text_escape_dup(const char *s);

#endif
