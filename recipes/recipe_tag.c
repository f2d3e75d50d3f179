/* Tags by the linnaeus convention: REPO/IMAGE:ARCH-VARIANT[-BRANCH][-SUFFIX]. */
#include <ctype.h>
#include <string.h>

#include "recipe.h"
#include "ref.h"
#include "util.h"

/* distribution reference grammar: tag := [\w][\w.-]{0,127} */
static bool tag_char(char c)
{
        return isalnum((unsigned char)c) || c == '_' || c == '.' || c == '-';
}

/* A part of the tag (the template, the branch, the suffix) holds only what
 * a tag may: build.sh turns '/' in a branch into '-' and passes the rest to
 * docker, which refuses anything else; kiln refuses it too, naming the part,
 * instead of rewriting it into another name. */
static int check_part(const char *what, const char *value, const char *part,
                      struct kiln_error *err)
{
        for (const char *p = part; *p; p++)
                if (!tag_char(*p) || ((unsigned char)*p & 0x80)) {
                        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
                                return kiln_error_set(err, KILN_E_INVALID,
                                                      "invalid %s '%s' for a tag: byte 0x%02x is not allowed (letters, digits, '_', '.', '-')",
                                                      what, value, (unsigned char)*p);
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "invalid %s '%s' for a tag: '%c' is not allowed (letters, digits, '_', '.', '-')",
                                              what, value, *p);
                }
        return 0;
}

int recipe_tag_compute(const struct recipe_tag_parts *parts, char **ret, struct kiln_error *err)
{
        const char *main_branch = parts->main_branch ? parts->main_branch : "main";
        bool with_branch = parts->source_is_git && parts->branch && *parts->branch &&
                           strcmp(parts->branch, main_branch) != 0;
        bool with_suffix = parts->suffix && *parts->suffix;
        _cleanup_free_ char *tag = NULL;
        _cleanup_free_ char *full = NULL;
        _cleanup_free_ char *branch = NULL;
        struct oci_ref ref = {0};

        if (!parts->tag || !*parts->tag)
                return kiln_error_set(err, KILN_E_INVALID, "invalid tag template: the tag is empty");
        if (!parts->repository || !*parts->repository)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid tag template: the repository is empty");
        if (with_branch) {
                /* build.sh: BRANCH_SLUG=${LINNAEUS_BRANCH_ARG//\//-} */
                branch = strdup(parts->branch);
                if (!branch)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                for (char *p = branch; *p; p++)
                        if (*p == '/')
                                *p = '-';
        }
        if (check_part("tag", parts->tag, parts->tag, err) < 0 ||
            (with_branch && check_part("branch", parts->branch, branch, err) < 0) ||
            (with_suffix && check_part("tag suffix", parts->suffix, parts->suffix, err) < 0))
                return -1;
        tag = kiln_strdupf("%s%s%s%s%s", parts->tag, with_branch ? "-" : "",
                           with_branch ? branch : "", with_suffix ? "-" : "",
                           with_suffix ? parts->suffix : "");
        if (!tag)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (strlen(tag) > OCI_TAG_MAX)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid tag '%s': longer than %d characters", tag,
                                      OCI_TAG_MAX);
        if (!oci_tag_valid(tag))
                return kiln_error_set(err, KILN_E_INVALID, "invalid tag '%s'", tag);
        full = kiln_strdupf("%s:%s", parts->repository, tag);
        if (!full)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (oci_ref_parse(full, &ref, err) < 0)
                return -1;
        if (ref.has_digest) {
                oci_ref_release(&ref);
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid tag repository '%s': holds a digest",
                                      parts->repository);
        }
        oci_ref_release(&ref);
        *ret = steal_ptr(&full);
        return 0;
}
