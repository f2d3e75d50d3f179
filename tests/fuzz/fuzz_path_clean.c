/* libFuzzer target: layer_path_clean (layers/path.h), the one check of paths
 * inside images and trees.  The first byte's low bits are the flags; the
 * rest is the path.  A clean result is checked against what the header
 * promises, so a cleaner that lets a '..' or a '/' through aborts. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "path.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool has_component(const char *s, const char *c)
{
        size_t n = strlen(c);

        for (const char *p = s; p; p = strchr(p, '/') ? strchr(p, '/') + 1 : NULL)
                if (!strncmp(p, c, n) && (p[n] == '/' || p[n] == '\0'))
                        return true;
        return false;
}

static void check_clean(const char *in, unsigned flags, const char *out)
{
        size_t len = strlen(out);
        char *again = NULL;

        if (len > strlen(in))
                abort();
        /* no leading, trailing or doubled '/'; no '.', '..' or empty component */
        if (len && (out[0] == '/' || out[len - 1] == '/' || strstr(out, "//")))
                abort();
        if (len && (has_component(out, ".") || has_component(out, "..")))
                abort();
        /* what each flag refuses never comes out clean */
        if ((flags & LAYER_PATH_RELATIVE) && in[0] == '/')
                abort();
        if ((flags & LAYER_PATH_NO_BACKSLASH) && strchr(in, '\\'))
                abort();
        if (!(flags & LAYER_PATH_FOLD_DOTDOT) && has_component(in, ".."))
                abort();
        /* cleaning a clean path changes nothing */
        if (layer_path_clean(out, flags | LAYER_PATH_RELATIVE, "p", &again, NULL) != 0 ||
            strcmp(again, out) != 0)
                abort();
        free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct kiln_error err = KILN_ERROR_INIT;
        unsigned flags;
        char *in, *out = NULL;

        if (size < 1)
                return 0;
        flags = data[0] & (LAYER_PATH_RELATIVE | LAYER_PATH_FOLD_DOTDOT | LAYER_PATH_NO_BACKSLASH);
        in = malloc(size);
        if (!in)
                return 0;
        memcpy(in, data + 1, size - 1);
        in[size - 1] = '\0';
        if (layer_path_clean(in, flags, "fuzz", &out, &err) == 0) {
                check_clean(in, flags, out);
                free(out);
        } else if (err.code != KILN_E_INVALID || strncmp(err.msg, "fuzz '", 6) != 0) {
                abort(); /* a refusal names the input, and says it is invalid */
        }
        free(in);
        return 0;
}
