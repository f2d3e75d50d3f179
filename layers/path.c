#include "path.h"

#include <stdlib.h>
#include <string.h>

int layer_path_clean(const char *in, unsigned flags, const char *what, char **ret,
                     struct kiln_error *err)
{
        const char *p = in;
        size_t o = 0;
        char *out;

        if ((flags & LAYER_PATH_RELATIVE) && in[0] == '/')
                return kiln_error_set(err, KILN_E_INVALID, "%s '%s': absolute path", what, in);
        if ((flags & LAYER_PATH_NO_BACKSLASH) && strchr(in, '\\'))
                return kiln_error_set(err, KILN_E_INVALID, "%s '%s': '\\' is not allowed", what,
                                      in);
        out = malloc(strlen(in) + 1);
        if (!out)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        while (*p) {
                const char *q = strchr(p, '/');
                size_t n = q ? (size_t)(q - p) : strlen(p);

                if (n == 2 && p[0] == '.' && p[1] == '.') {
                        if (!(flags & LAYER_PATH_FOLD_DOTDOT)) {
                                free(out);
                                return kiln_error_set(err, KILN_E_INVALID,
                                                      "%s '%s': '..' is not allowed", what, in);
                        }
                        if (o == 0) {
                                free(out);
                                return kiln_error_set(err, KILN_E_INVALID,
                                                      "%s '%s': path climbs above the root", what,
                                                      in);
                        }
                        /* back to the '/' before the last component, or the start */
                        while (o > 0 && out[o - 1] != '/')
                                o--;
                        if (o > 0)
                                o--;
                } else if (n > 0 && !(n == 1 && p[0] == '.')) {
                        if (o)
                                out[o++] = '/';
                        memcpy(out + o, p, n);
                        o += n;
                }
                p = q ? q + 1 : p + n;
        }
        out[o] = '\0';
        *ret = out;
        return 0;
}
