/* libFuzzer target: the registry header parsers (WWW-Authenticate, Link,
 * Location resolution, Retry-After, Range and Content-Range).  The first
 * byte picks the parser, modulo 5 (tests/fuzz/seed_corpora.py). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char *s;
        char *out = NULL;

        if (size < 1 || size > 65536)
                return 0;
        s = malloc(size);
        if (!s)
                return 0;
        memcpy(s, data + 1, size - 1);
        s[size - 1] = '\0';
        switch (data[0] % 5) {
        case 0: {
                struct reg_challenge ch[REG_MAX_CHALLENGES];
                int n = reg_www_auth_parse(s, ch, REG_MAX_CHALLENGES, NULL);
                for (int i = 0; i < n; i++)
                        reg_challenge_release(&ch[i]);
                break;
        }
        case 1:
                if (reg_link_next(s, "https://r.example/v2/a/tags/list", &out, NULL) == 0)
                        free(out);
                break;
        case 2:
                if (reg_url_resolve("https://r.example/v2/a/blobs/uploads/", s, &out, NULL) == 0)
                        free(out);
                break;
        case 3:
                (void)reg_retry_after_parse(s, 1700000000, 60);
                break;
        default: {
                long long a, b;
                if (reg_range_parse(s, &a, &b) == 0 && (a < 0 || a > b))
                        abort();
                break;
        }
        }
        free(s);
        return 0;
}
