/* layers/path.h: the one check and clean of a path inside an image or a
 * tree (a layer's entry names, destinations, package and wheel members,
 * mirror paths).
 *
 * Lexical only: components are split at '/', empty and '.' components are
 * dropped, and the result has no leading, trailing or doubled '/' ("" is
 * the root).  Nothing is looked up on disk: symlinks are the caller's
 * (layers/unpack_path.c resolves them inside its root).
 *
 *     char *clean;
 *     if (layer_path_clean(name, LAYER_PATH_RELATIVE, "refusing entry", &clean, &err) < 0)
 *             return -1;      ("refusing entry '/etc/x': absolute path")
 */
#ifndef KILN_LAYERS_PATH_H
#define KILN_LAYERS_PATH_H

#include "error.h"

/* A leading '/' is an error ("absolute path"); without it, it is dropped. */
#define LAYER_PATH_RELATIVE (1u << 0)
/* '..' removes the component before it and is an error only above the root
 * ("path climbs above the root"), as a tar's reader would resolve it;
 * without it, any '..' component is an error ("'..' is not allowed"). */
#define LAYER_PATH_FOLD_DOTDOT (1u << 1)
/* A '\' is an error: in a zip (a wheel) it is a Windows separator. */
#define LAYER_PATH_NO_BACKSLASH (1u << 2)

/* Cleans in by flags into a new string *ret (never longer than in).  The
 * message starts with what, then the input: "invalid path '/a/../b': '..'
 * is not allowed".  ret is not written on failure. */
int layer_path_clean(const char *in, unsigned flags, const char *what, char **ret,
                     struct kiln_error *err);

#endif
