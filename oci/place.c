#include "place.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

static const struct {
        const char *prefix;
        enum oci_place_kind kind;
} transports[] = {
        {"oci:", OCI_PLACE_LAYOUT},
        {"oci-archive:", OCI_PLACE_OCI_ARCHIVE},
        {"docker-archive:", OCI_PLACE_DOCKER_ARCHIVE},
};

const char *oci_place_kind_name(enum oci_place_kind k)
{
        switch (k) {
        case OCI_PLACE_LAYOUT: return "oci";
        case OCI_PLACE_OCI_ARCHIVE: return "oci-archive";
        case OCI_PLACE_DOCKER_ARCHIVE: return "docker-archive";
        case OCI_PLACE_REGISTRY: return "registry";
        }
        return "?";
}

void oci_place_release(struct oci_place *p)
{
        if (!p)
                return;
        free(p->path);
        free(p->tag);
        oci_ref_release(&p->ref);
        memset(p, 0, sizeof(*p));
}

int oci_place_parse(const char *s, struct oci_place *ret, struct kiln_error *err)
{
        struct oci_place p = {0};

        for (size_t i = 0; i < ARRAY_SIZE(transports); i++) {
                const char *rest, *colon;
                if (!str_has_prefix(s, transports[i].prefix))
                        continue;
                rest = s + strlen(transports[i].prefix);
                colon = strchr(rest, ':');
                p.kind = transports[i].kind;
                p.path = colon ? strndup(rest, (size_t)(colon - rest)) : strdup(rest);
                if (!p.path)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                if (!*p.path) {
                        oci_place_release(&p);
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "invalid place '%s': missing path", s);
                }
                if (colon && colon[1]) {
                        p.tag = strdup(colon + 1);
                        if (!p.tag) {
                                oci_place_release(&p);
                                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        }
                        if (p.kind != OCI_PLACE_DOCKER_ARCHIVE && !oci_tag_valid(p.tag) &&
                            !oci_digest_valid(p.tag)) {
                                kiln_error_set(err, KILN_E_INVALID,
                                               "invalid place '%s': invalid tag '%s'", s, p.tag);
                                oci_place_release(&p);
                                return -1;
                        }
                }
                *ret = p;
                return 0;
        }
        if (str_has_prefix(s, "docker://"))
                s += strlen("docker://");
        p.kind = OCI_PLACE_REGISTRY;
        if (oci_ref_parse(s, &p.ref, err) < 0)
                return -1;
        *ret = p;
        return 0;
}

bool oci_place_is_registry(const char *s)
{
        struct oci_place p;
        struct kiln_error e = KILN_ERROR_INIT;
        bool reg;

        if (!strcmp(s, OCI_SCRATCH) || oci_place_parse(s, &p, &e) < 0)
                return false;
        reg = p.kind == OCI_PLACE_REGISTRY;
        oci_place_release(&p);
        return reg;
}
