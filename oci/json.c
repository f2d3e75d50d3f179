#include "json.h"

#include <stdlib.h>
#include <string.h>

json_t *oci_json_parse(const char *buf, size_t len, const char *what, struct kiln_error *err)
{
        json_error_t je;
        json_t *j;

        /* I-JSON: no duplicate keys.  JSON_ALLOW_NUL stays off: "\u0000" is refused. */
        j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
        if (!j) {
                kiln_error_set(err, KILN_E_INVALID, "invalid JSON in %s at line %d column %d: %s",
                               what, je.line, je.column, je.text);
                return NULL;
        }
        if (memchr(buf, '\0', len)) {
                json_decref(j);
                kiln_error_set(err, KILN_E_INVALID, "invalid JSON in %s: contains a NUL byte",
                               what);
                return NULL;
        }
        return j;
}

int oci_json_dump(const json_t *j, char **ret_buf, size_t *ret_len, struct kiln_error *err)
{
        char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);

        if (!s)
                return kiln_error_set(err, KILN_E_NOMEM, "cannot serialize JSON");
        *ret_len = strlen(s);
        *ret_buf = s;
        return 0;
}

const char *oci_json_get_string(const json_t *obj, const char *key, bool required,
                                const char *what, struct kiln_error *err)
{
        json_t *v = json_object_get(obj, key);

        if (!v) {
                if (required)
                        kiln_error_set(err, KILN_E_INVALID, "invalid %s: missing '%s'", what, key);
                return NULL;
        }
        if (!json_is_string(v)) {
                kiln_error_set(err, KILN_E_INVALID, "invalid %s: '%s' must be a string", what,
                               key);
                return NULL;
        }
        return json_string_value(v);
}

int oci_json_get_int64(const json_t *obj, const char *key, int64_t *ret, const char *what,
                       struct kiln_error *err)
{
        json_t *v = json_object_get(obj, key);

        if (!v)
                return kiln_error_set(err, KILN_E_INVALID, "invalid %s: missing '%s'", what, key);
        if (!json_is_integer(v))
                return kiln_error_set(err, KILN_E_INVALID, "invalid %s: '%s' must be an integer",
                                      what, key);
        *ret = (int64_t)json_integer_value(v);
        return 0;
}

int oci_manifest_limit_get(size_t *ret_limit, struct kiln_error *err)
{
        const char *s = getenv("KILN_MANIFEST_MAX");
        size_t v = 0;

        if (!s || !*s) {
                *ret_limit = OCI_MANIFEST_MAX;
                return 0;
        }
        /* digits only (strtoull would take a sign and spaces, and wrap "-1"),
         * at most the ceiling: v stays small enough that v * 10 never wraps */
        for (const char *p = s; *p; p++) {
                if (*p < '0' || *p > '9' || v * 10 + (size_t)(*p - '0') > OCI_MANIFEST_MAX_CEILING) {
                        v = 0;
                        break;
                }
                v = v * 10 + (size_t)(*p - '0');
        }
        if (v == 0)
                return kiln_error_set(err, KILN_E_USAGE,
                                      "invalid KILN_MANIFEST_MAX '%.64s': expected a number of bytes from 1 to %u",
                                      s, OCI_MANIFEST_MAX_CEILING);
        *ret_limit = v;
        return 0;
}

size_t oci_manifest_limit(void)
{
        size_t v;

        return oci_manifest_limit_get(&v, NULL) == 0 ? v : OCI_MANIFEST_MAX;
}

void oci_json_decrefp(json_t **j)
{
        json_decref(*j);
        *j = NULL;
}
