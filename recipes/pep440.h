/* recipes/pep440.h: Python versions and version specifiers (PEP 440), and
 * requirements with environment markers and extras (PEP 508), as the
 * `packaging` library reads them (the unit tests' table is checked
 * against it).
 *
 *     struct recipe_version v;
 *     recipe_version_parse("1.0.post1", &v, &err);
 *     struct recipe_specset s;
 *     recipe_specset_parse(">=1,<2", &s, &err);
 *     recipe_specset_contains(&s, &v, false);
 *     recipe_specset_release(&s);
 *
 *     struct recipe_pep508 r;
 *     recipe_pep508_parse("foo[bar]>=1; python_version >= '3.8'", &r, &err);
 *     recipe_marker_eval(r.marker, &env, "bar", &ok, &err);
 *     recipe_pep508_release(&r);
 *
 * Versions are fixed-size values (no allocation); a version with more than
 * RECIPE_VERSION_PARTS release numbers or numbers past 2^63 is refused.
 */
#ifndef KILN_RECIPES_PEP440_H
#define KILN_RECIPES_PEP440_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define RECIPE_VERSION_PARTS 16
#define RECIPE_VERSION_LOCAL 64
#define RECIPE_VERSION_TEXT 256

enum recipe_pre { RECIPE_PRE_NONE = 0, RECIPE_PRE_A, RECIPE_PRE_B, RECIPE_PRE_RC };

struct recipe_version {
        uint64_t epoch;
        uint64_t release[RECIPE_VERSION_PARTS];
        size_t n_release;
        enum recipe_pre pre_kind;
        uint64_t pre;
        bool has_post, has_dev;
        uint64_t post, dev;
        char local[RECIPE_VERSION_LOCAL]; /* normalized ("ubuntu.1"); "" for none */
};

int recipe_version_parse(const char *s, struct recipe_version *ret, struct kiln_error *err);
/* <0, 0, >0 as PEP 440 orders them ("1.0" == "1.0.0") */
int recipe_version_cmp(const struct recipe_version *a, const struct recipe_version *b);
/* The normal form (packaging's str(Version)); strip drops trailing ".0"s
 * of the release (packaging's canonicalize_version). */
void recipe_version_format(const struct recipe_version *v, bool strip, char *out, size_t n);
bool recipe_version_is_pre(const struct recipe_version *v); /* a pre- or dev release */

enum recipe_spec_op {
        RECIPE_SPEC_EQ,
        RECIPE_SPEC_NE,
        RECIPE_SPEC_LE,
        RECIPE_SPEC_GE,
        RECIPE_SPEC_LT,
        RECIPE_SPEC_GT,
        RECIPE_SPEC_COMPAT,   /* ~= */
        RECIPE_SPEC_ARBITRARY /* === */
};

struct recipe_spec {
        enum recipe_spec_op op;
        bool wildcard; /* "==1.2.*", "!=1.2.*" */
        struct recipe_version v;
        char text[RECIPE_VERSION_TEXT]; /* the version as written, without ".*" */
};

struct recipe_specset {
        struct recipe_spec *items;
        size_t n;
};

/* "" is the empty set (anything matches); items are separated by ','. */
int recipe_specset_parse(const char *s, struct recipe_specset *ret, struct kiln_error *err);
void recipe_specset_release(struct recipe_specset *s);
/* Appends the items of b to a. */
int recipe_specset_merge(struct recipe_specset *a, const struct recipe_specset *b,
                         struct kiln_error *err);
/* prereleases false: a pre-release matches only when the set itself names
 * one (packaging's SpecifierSet.contains with prereleases=None). */
bool recipe_specset_contains(const struct recipe_specset *s, const struct recipe_version *v,
                             bool prereleases);
bool recipe_specset_allows_pre(const struct recipe_specset *s);
bool recipe_spec_contains(const struct recipe_spec *sp, const struct recipe_version *v);
/* ">=1.0,<2" in the set's order; "" for the empty set */
void recipe_specset_format(const struct recipe_specset *s, char *out, size_t n);

/* ---- PEP 508 ---- */

/* The target environment markers are evaluated against. */
struct recipe_marker_env {
        const char *python_version;      /* "3.11" */
        const char *python_full_version; /* "3.11.0" */
        const char *os_name;             /* "posix" */
        const char *sys_platform;        /* "linux" */
        const char *platform_system;     /* "Linux" */
        const char *platform_machine;    /* "x86_64" */
        const char *platform_release;
        const char *platform_version;
        const char *implementation_name;            /* "cpython" */
        const char *platform_python_implementation; /* "CPython" */
};

/* Evaluates marker with extra as the value of "extra" (NULL: ""). */
int recipe_marker_eval(const char *marker, const struct recipe_marker_env *env, const char *extra,
                       bool *ret, struct kiln_error *err);

struct recipe_pep508 {
        char *name; /* PEP 503 normalized */
        char **extras; /* normalized, sorted, no duplicates */
        size_t n_extras;
        struct recipe_specset spec;
        char *marker; /* NULL: none */
        char *url;    /* "name @ URL"; NULL: none */
};

int recipe_pep508_parse(const char *s, struct recipe_pep508 *ret, struct kiln_error *err);
void recipe_pep508_release(struct recipe_pep508 *r);
/* r's marker with one extra (NULL: none); true without a marker. */
int recipe_marker_eval_req(const struct recipe_pep508 *r, const struct recipe_marker_env *env,
                           const char *extra, bool *ret, struct kiln_error *err);
/* True when the requirement applies on env for any of extras (a
 * dependency of "pkg[extras]"; n_extras 0: the plain package). */
int recipe_pep508_applies(const struct recipe_pep508 *r, const struct recipe_marker_env *env,
                          const char *const *extras, size_t n_extras, bool *ret,
                          struct kiln_error *err);

#endif
