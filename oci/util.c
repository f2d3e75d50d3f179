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

size_t kiln_utf8_char(const unsigned char *s, size_t len)
{
        uint32_t cp;
        size_t n;

        if (len == 0)
                return 0;
        if (s[0] < 0x80)
                return 1;
        if (s[0] >= 0xc2 && s[0] <= 0xdf)
                n = 2, cp = s[0] & 0x1fu;
        else if (s[0] >= 0xe0 && s[0] <= 0xef)
                n = 3, cp = s[0] & 0x0fu;
        else if (s[0] >= 0xf0 && s[0] <= 0xf4)
                n = 4, cp = s[0] & 0x07u;
        else
                return 0;
        if (len < n)
                return 0;
        for (size_t i = 1; i < n; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                cp = (cp << 6) | (s[i] & 0x3fu);
        }
        if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
                return 0;
        return n;
}

bool kiln_utf8_valid(const char *s, size_t len)
{
        const unsigned char *p = (const unsigned char *)s;

        for (size_t i = 0; i < len;) {
                size_t n = kiln_utf8_char(p + i, len - i);
                if (n == 0)
                        return false;
                i += n;
        }
        return true;
}

/* The escaped form of the character at p (n bytes) into esc; its length. */
static size_t escape_one(const unsigned char *p, size_t n, char *esc)
{
        static const char hex[] = "0123456789abcdef";
        size_t o = 0;

        if (n == 1 && (p[0] == '\n' || p[0] == '\r' || p[0] == '\t')) {
                esc[0] = '\\';
                esc[1] = p[0] == '\n' ? 'n' : p[0] == '\r' ? 'r' : 't';
                return 2;
        }
        /* C0, DEL, a byte outside UTF-8 (n == 0), C1 (U+0080-U+009F: C2 80-9F) */
        if ((n == 1 && (p[0] < 0x20 || p[0] == 0x7f)) || n == 0 ||
            (n == 2 && p[0] == 0xc2 && p[1] < 0xa0)) {
                for (size_t i = 0; i < (n ? n : 1); i++) {
                        esc[o++] = '\\';
                        esc[o++] = 'x';
                        esc[o++] = hex[p[i] >> 4];
                        esc[o++] = hex[p[i] & 15];
                }
                return o;
        }
        memcpy(esc, p, n);
        return n;
}

size_t kiln_text_escape(const char *s, size_t len, char *dst, size_t dstlen, size_t max,
                        unsigned flags)
{
        const unsigned char *p = (const unsigned char *)s;
        size_t need = 0, o = 0;
        bool room = dstlen > 0;

        for (size_t i = 0; i < len;) {
                char esc[16];
                size_t n = kiln_utf8_char(p + i, len - i), e;

                if ((flags & KILN_ESCAPE_ASCII) && n > 1)
                        n = 0; /* escaped byte by byte */

                if (i >= max) {
                        e = 3;
                        memcpy(esc, "...", 3);
                        len = i; /* the last piece */
                } else {
                        e = escape_one(p + i, n, esc);
                        i += n ? n : 1;
                }
                if (room && o + e < dstlen) {
                        memcpy(dst + o, esc, e);
                        o += e;
                } else {
                        room = false;
                }
                need += e;
        }
        if (dstlen > 0)
                dst[o] = '\0';
        return need;
}

char *kiln_text_escape_dup(const char *s)
{
        size_t len = strlen(s), need = kiln_text_escape(s, len, NULL, 0, SIZE_MAX, 0);
        char *out = malloc(need + 1);

        if (out)
                kiln_text_escape(s, len, out, need + 1, SIZE_MAX, 0);
        return out;
}
