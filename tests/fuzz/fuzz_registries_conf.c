/* libFuzzer target: containers-registries.conf files (the TOML reader of
 * oci/toml.c and the [[registry]] tables of registry/hosts.c), name
 * matching and rewriting against what was read, and RateLimit values. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hosts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const names[] = {
        "docker.io/library/ubuntu", "docker.io/nvidia/cuda", "nvcr.io/nvidia/pytorch",
        "ghcr.io/a/b", "localhost:5000/x", "a.b.example.com/c/d", "quay.io",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct reg_conf conf = {0};
        char *s;
        long n, w;

        if (size > 1024 * 1024)
                return 0;
        s = malloc(size + 1);
        if (!s)
                return 0;
        memcpy(s, data, size);
        s[size] = '\0';
        if (reg_conf_parse(&conf, s, size, "fuzz.conf", NULL) == 0) {
                for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                        const struct reg_conf_registry *r = reg_conf_match(&conf, names[i]);
                        if (!r)
                                continue;
                        free(reg_conf_rewrite(r, NULL, names[i]));
                        for (size_t k = 0; k < r->n_mirrors; k++)
                                free(reg_conf_rewrite(r, r->mirrors[k].location, names[i]));
                }
        }
        reg_conf_release(&conf);
        if (reg_ratelimit_parse(s, &n, &w) == 0 && (n < 0 || w < 0))
                abort();
        free(s);
        return 0;
}
