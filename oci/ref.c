#include "ref.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static bool is_lower_alnum(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

bool oci_tag_valid(const char *tag)
{
        size_t n = strlen(tag);

        /* tag := [\w][\w.-]{0,127} */
        if (n == 0 || n > OCI_TAG_MAX)
                return false;
        if (!(isalnum((unsigned char)tag[0]) || tag[0] == '_'))
                return false;
        for (size_t i = 1; i < n; i++)
                if (!(isalnum((unsigned char)tag[i]) || tag[i] == '_' || tag[i] == '.' ||
                      tag[i] == '-'))
                        return false;
        return true;
}

/* path-component := [a-z0-9]+ (separator [a-z0-9]+)*, separator := [_.] | "__" | [-]+ */
static int check_component(const char *c, size_t n, const char *whole, struct kiln_error *err)
{
        size_t i = 0;

        if (n == 0)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid reference '%s': empty path component", whole);
        for (size_t k = 0; k < n; k++)
                if (c[k] >= 'A' && c[k] <= 'Z')
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "invalid reference '%s': repository name must be lowercase",
                                              whole);
        while (i < n) {
                if (!is_lower_alnum(c[i]))
                        goto bad;
                while (i < n && is_lower_alnum(c[i]))
                        i++;
                if (i == n)
                        return 0;
                if (c[i] == '.') {
                        i++;
                } else if (c[i] == '_') {
                        i++;
                        if (i < n && c[i] == '_')
                                i++;
                } else if (c[i] == '-') {
                        while (i < n && c[i] == '-')
                                i++;
                } else {
                        goto bad;
                }
                if (i == n)
                        goto bad;
        }
        return 0;
bad:
        return kiln_error_set(err, KILN_E_INVALID,
                              "invalid reference '%s': invalid path component '%.*s'", whole,
                              (int)n, c);
}

int oci_repo_path_check(const char *path, struct kiln_error *err)
{
        const char *p = path;

        for (;;) {
                const char *slash = strchr(p, '/');
                size_t n = slash ? (size_t)(slash - p) : strlen(p);
                if (check_component(p, n, path, err) < 0)
                        return -1;
                if (!slash)
                        return 0;
                p = slash + 1;
        }
}

static bool is_domain_char(char c)
{
        return isalnum((unsigned char)c) || c == '-';
}

static int check_domain(const char *d, size_t n, const char *whole, struct kiln_error *err)
{
        size_t i = 0, host_end = n;
        const char *colon;

        if (n && d[0] == '[') {
                /* IPv6 literal */
                const char *close = memchr(d, ']', n);
                if (!close)
                        goto bad;
                for (const char *p = d + 1; p < close; p++)
                        if (!isxdigit((unsigned char)*p) && *p != ':')
                                goto bad;
                i = (size_t)(close - d) + 1;
                host_end = i;
                if (i < n && d[i] != ':')
                        goto bad;
        } else {
                colon = memchr(d, ':', n);
                if (colon)
                        host_end = (size_t)(colon - d);
                /* domain-component ("." domain-component)*, each [a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])? */
                while (i < host_end) {
                        size_t start = i;
                        while (i < host_end && is_domain_char(d[i]))
                                i++;
                        if (i == start || d[start] == '-' || d[i - 1] == '-')
                                goto bad;
                        if (i < host_end) {
                                if (d[i] != '.')
                                        goto bad;
                                i++;
                                if (i == host_end)
                                        goto bad;
                        }
                }
                if (host_end == 0)
                        goto bad;
        }
        if (host_end < n) {
                size_t k = host_end + 1;
                if (k == n)
                        goto bad;
                for (; k < n; k++)
                        if (!isdigit((unsigned char)d[k]))
                                goto bad;
        }
        return 0;
bad:
        return kiln_error_set(err, KILN_E_INVALID, "invalid reference '%s': invalid domain '%.*s'",
                              whole, (int)n, d);
}

static bool is_64_hex(const char *s)
{
        if (strlen(s) != 64)
                return false;
        for (; *s; s++)
                if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
                        return false;
        return true;
}

void oci_ref_release(struct oci_ref *r)
{
        if (!r)
                return;
        free(r->domain);
        free(r->path);
        free(r->tag);
        memset(r, 0, sizeof(*r));
}

int oci_ref_parse(const char *s, struct oci_ref *ret, struct kiln_error *err)
{
        _cleanup_free_ char *buf = NULL;
        _cleanup_free_ char *domain = NULL, *path = NULL, *tag = NULL;
        struct oci_ref r = {0};
        char *at, *name, *slash, *lastslash, *colon;

        if (!s || !*s)
                return kiln_error_set(err, KILN_E_INVALID, "invalid reference '': empty");
        if (strlen(s) > 4096)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid reference '%.64s...': too long", s);
        buf = strdup(s);
        if (!buf)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        for (const char *p = s; *p; p++)
                if ((unsigned char)*p <= ' ' || *p == 0x7f)
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "invalid reference '%s': contains a space or control character",
                                              s);
        at = strchr(buf, '@');
        if (at && (strchr(at + 1, '/') || strstr(s, "://"))) {
                /* "user:password@host/repo" or a URL: a reference never holds
                 * credentials, and the input is not repeated (threats.md C4) */
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid reference: it looks like a URL or holds credentials "
                                      "('user:password@host'); use 'kiln login HOST' and 'HOST/REPO[:TAG]'");
        }
        if (at) {
                *at = '\0';
                if (oci_digest_parse(at + 1, &r.digest, err) < 0) {
                        /* what comes before '@' may be "user:password" (C4): not repeated */
                        kiln_error_prefix(err, "invalid reference '...@%s'", at + 1);
                        return -1;
                }
                r.has_digest = true;
        }
        name = buf;
        lastslash = strrchr(name, '/');
        colon = strrchr(lastslash ? lastslash : name, ':');
        if (colon) {
                *colon = '\0';
                if (!oci_tag_valid(colon + 1)) {
                        if (strlen(colon + 1) > OCI_TAG_MAX)
                                return kiln_error_set(err, KILN_E_INVALID,
                                                      "invalid reference '%s': tag is longer than %d characters",
                                                      s, OCI_TAG_MAX);
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "invalid reference '%s': invalid tag '%s'", s,
                                              colon + 1);
                }
                tag = strdup(colon + 1);
                if (!tag)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        if (!*name)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid reference '%s': missing repository name", s);
        slash = strchr(name, '/');
        /* docker's splitDockerDomain: the first component is a domain when it
         * holds '.' or ':', is "localhost", or has uppercase letters. */
        if (slash) {
                size_t n = (size_t)(slash - name);
                bool is_domain = memchr(name, '.', n) || memchr(name, ':', n) ||
                                 (n == 9 && !strncmp(name, "localhost", 9));
                for (size_t i = 0; i < n && !is_domain; i++)
                        if (name[i] >= 'A' && name[i] <= 'Z')
                                is_domain = true;
                if (is_domain) {
                        if (check_domain(name, n, s, err) < 0)
                                return -1;
                        domain = strndup(name, n);
                        name = slash + 1;
                }
        }
        if (!domain || !strcmp(domain, "index.docker.io")) {
                free(domain);
                domain = strdup(OCI_DEFAULT_DOMAIN);
        }
        if (!domain)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (!strcmp(domain, OCI_DEFAULT_DOMAIN) && !strchr(name, '/'))
                path = kiln_strdupf("library/%s", name);
        else
                path = strdup(name);
        if (!path)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (oci_repo_path_check(name, err) < 0)
                return -1;
        if (is_64_hex(name) && !strchr(name, '/'))
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid reference '%s': a repository name cannot be 64 hexadecimal characters",
                                      s);
        if (strlen(domain) + 1 + strlen(path) > OCI_NAME_MAX)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid reference '%s': name is longer than %d characters",
                                      s, OCI_NAME_MAX);
        if (!tag && !r.has_digest) {
                tag = strdup("latest");
                if (!tag)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                r.tag_implied = true;
        }
        r.domain = steal_ptr(&domain);
        r.path = steal_ptr(&path);
        r.tag = steal_ptr(&tag);
        *ret = r;
        return 0;
}

char *oci_ref_name(const struct oci_ref *r)
{
        return kiln_strdupf("%s/%s", r->domain, r->path);
}

char *oci_ref_string(const struct oci_ref *r)
{
        return kiln_strdupf("%s/%s%s%s%s%s", r->domain, r->path, r->tag ? ":" : "",
                            r->tag ? r->tag : "", r->has_digest ? "@" : "",
                            r->has_digest ? r->digest.str : "");
}

const char *oci_ref_identifier(const struct oci_ref *r)
{
        return r->has_digest ? r->digest.str : r->tag;
}
