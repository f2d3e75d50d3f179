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

void recipe_tag_sanitize(char *s)
{
        for (char *p = s; *p; p++)
                if (!tag_char(*p) || ((unsigned char)*p & 0x80))
                        *p = '-';
        if (s[0] == '.' || s[0] == '-')
                s[0] = '_';
}

int recipe_tag_compute(const struct recipe_tag_parts *parts, char **ret, struct kiln_error *err)
{
        const char *main_branch = parts->main_branch ? parts->main_branch : "main";
        bool with_branch = parts->source_is_git && parts->branch && *parts->branch &&
                           strcmp(parts->branch, main_branch) != 0;
        bool with_suffix = parts->suffix && *parts->suffix;
        _cleanup_free_ char *tag = NULL;
        _cleanup_free_ char *full = NULL;
        struct oci_ref ref = {0};

        if (!parts->tag || !*parts->tag)
                return kiln_error_set(err, KILN_E_INVALID, "invalid tag template: the tag is empty");
        if (!parts->repository || !*parts->repository)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid tag template: the repository is empty");
        tag = kiln_strdupf("%s%s%s%s%s", parts->tag, with_branch ? "-" : "",
                           with_branch ? parts->branch : "", with_suffix ? "-" : "",
                           with_suffix ? parts->suffix : "");
        if (!tag)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        /* '/' in a branch becomes '-' like every other character a tag may not hold */
        recipe_tag_sanitize(tag);
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
