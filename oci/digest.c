#include "digest.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

static const struct {
        const char *name;
        size_t hexlen;
} algs[] = {
        [OCI_DIGEST_SHA256] = {"sha256", 64},
        [OCI_DIGEST_SHA512] = {"sha512", 128},
};

static bool is_alg_component(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alg_separator(char c)
{
        return c == '+' || c == '.' || c == '_' || c == '-';
}

static bool is_encoded_char(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '=' || c == '_' || c == '-';
}

int oci_digest_parse(const char *s, struct oci_digest *ret, struct kiln_error *err)
{
        const char *colon, *p;
        size_t alen, elen;

        if (!s || !*s)
                return kiln_error_set(err, KILN_E_INVALID, "invalid digest '': empty");
        colon = strchr(s, ':');
        if (!colon)
                return kiln_error_set(err, KILN_E_INVALID, "invalid digest '%.80s': missing ':'",
                                      s);
        alen = (size_t)(colon - s);
        /* image-spec descriptor.md: algorithm ::= component (separator component)* */
        if (alen == 0 || !is_alg_component(s[0]) || !is_alg_component(s[alen - 1]))
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid digest '%.80s': bad algorithm", s);
        for (p = s; p < colon; p++) {
                if (is_alg_component(*p))
                        continue;
                if (is_alg_separator(*p) && !is_alg_separator(p[1]))
                        continue;
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid digest '%.80s': bad algorithm", s);
        }
        elen = strlen(colon + 1);
        if (elen == 0)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid digest '%.80s': empty encoded part", s);
        for (p = colon + 1; *p; p++)
                if (!is_encoded_char(*p))
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "invalid digest '%.80s': bad character in encoded part",
                                              s);
        for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
                if (strlen(algs[i].name) != alen || memcmp(algs[i].name, s, alen) != 0)
                        continue;
                if (elen != algs[i].hexlen)
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "invalid digest '%.80s': %s needs %zu hex characters, got %zu",
                                              s, algs[i].name, algs[i].hexlen, elen);
                for (p = colon + 1; *p; p++)
                        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
                                return kiln_error_set(err, KILN_E_INVALID,
                                                      "invalid digest '%.80s': encoded part must be lowercase hex",
                                                      s);
                if (ret) {
                        ret->alg = (enum oci_digest_alg)i;
                        memcpy(ret->str, s, alen + 1 + elen + 1);
                }
                return 0;
        }
        return kiln_error_set(err, KILN_E_UNSUPPORTED,
                              "unsupported digest algorithm '%.*s' in '%.80s'", (int)(alen > 32 ? 32 : alen), s, s);
}

bool oci_digest_valid(const char *s)
{
        return oci_digest_parse(s, NULL, NULL) == 0;
}

const char *oci_digest_hex(const struct oci_digest *d)
{
        return d->str + strlen(algs[d->alg].name) + 1;
}

const char *oci_digest_alg_name(enum oci_digest_alg alg)
{
        return algs[alg].name;
}

bool oci_digest_equal(const struct oci_digest *a, const struct oci_digest *b)
{
        return strcmp(a->str, b->str) == 0;
}

static const EVP_MD *alg_md(enum oci_digest_alg alg)
{
        return alg == OCI_DIGEST_SHA512 ? EVP_sha512() : EVP_sha256();
}

int oci_hasher_init(struct oci_hasher *h, enum oci_digest_alg alg, struct kiln_error *err)
{
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();

        h->alg = alg;
        h->ctx = NULL;
        if (!ctx)
                return kiln_error_set(err, KILN_E_NOMEM, "cannot allocate a hash context");
        if (EVP_DigestInit_ex(ctx, alg_md(alg), NULL) != 1) {
                EVP_MD_CTX_free(ctx);
                return kiln_error_set(err, KILN_E_INTERNAL, "cannot start %s hash",
                                      algs[alg].name);
        }
        h->ctx = ctx;
        return 0;
}

void oci_hasher_update(struct oci_hasher *h, const void *buf, size_t len)
{
        if (len)
                EVP_DigestUpdate(h->ctx, buf, len);
}

void oci_hasher_final(struct oci_hasher *h, struct oci_digest *ret)
{
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int n = 0;
        static const char hexd[] = "0123456789abcdef";
        size_t off;

        EVP_DigestFinal_ex(h->ctx, md, &n);
        ret->alg = h->alg;
        off = (size_t)snprintf(ret->str, sizeof(ret->str), "%s:", algs[h->alg].name);
        for (unsigned int i = 0; i < n; i++) {
                ret->str[off++] = hexd[md[i] >> 4];
                ret->str[off++] = hexd[md[i] & 15];
        }
        ret->str[off] = '\0';
        /* Ready for reuse with the same algorithm. */
        EVP_DigestInit_ex(h->ctx, alg_md(h->alg), NULL);
}

void oci_hasher_release(struct oci_hasher *h)
{
        if (!h)
                return;
        EVP_MD_CTX_free(h->ctx);
        h->ctx = NULL;
}

void oci_digest_of_buffer(const void *buf, size_t len, struct oci_digest *ret)
{
        struct oci_hasher h;

        if (oci_hasher_init(&h, OCI_DIGEST_SHA256, NULL) < 0) {
                ret->str[0] = '\0';
                return;
        }
        oci_hasher_update(&h, buf, len);
        oci_hasher_final(&h, ret);
        oci_hasher_release(&h);
}
