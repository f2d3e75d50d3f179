/* libFuzzer target: manifest, index and config parsers. */
#include <stdint.h>
#include <stdlib.h>

#include "json.h"
#include "model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const char *buf = (const char *)data;
        struct oci_manifest *m = NULL;
        struct oci_index *x = NULL;
        struct oci_config *c = NULL;
        enum oci_doc_kind kind;

        if (oci_manifest_parse(buf, size, NULL, &m, NULL) == 0) {
                json_t *j = oci_manifest_to_json(m->media_type, m->artifact_type, &m->config,
                                                 m->layers, m->n_layers,
                                                 m->has_subject ? &m->subject : NULL,
                                                 m->annotations);
                char *out;
                size_t len;
                if (j && oci_json_dump(j, &out, &len, NULL) == 0)
                        free(out);
                json_decref(j);
                oci_manifest_free(m);
        }
        if (oci_index_parse(buf, size, OCI_MT_INDEX, &x, NULL) == 0)
                oci_index_free(x);
        if (oci_config_parse(buf, size, &c, NULL) == 0)
                oci_config_free(c);
        oci_document_kind(buf, size, DOCKER_MT_MANIFEST, &kind, NULL);
        return 0;
}
