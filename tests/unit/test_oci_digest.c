#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "digest.h"

#define H64 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static const struct {
        const char *in;
        enum kiln_errc code;
        const char *msg_part;
} cases[] = {
        {"sha256:" H64, KILN_OK, NULL},
        {"sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e",
         KILN_OK, NULL},
        {"sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855", KILN_E_INVALID,
         "lowercase hex"},
        {"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85", KILN_E_INVALID,
         "needs 64 hex characters, got 63"},
        {"sha256:../../etc/passwd", KILN_E_INVALID, "bad character"},
        {"sha256:", KILN_E_INVALID, "empty encoded part"},
        {"sha256", KILN_E_INVALID, "missing ':'"},
        {"", KILN_E_INVALID, "empty"},
        {":abc", KILN_E_INVALID, "bad algorithm"},
        {"SHA256:" H64, KILN_E_INVALID, "bad algorithm"},
        {"sha256+:" H64, KILN_E_INVALID, "bad algorithm"},
        {"md5:d41d8cd98f00b204e9800998ecf8427e", KILN_E_UNSUPPORTED, "unsupported digest algorithm 'md5'"},
        {"multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8", KILN_E_UNSUPPORTED,
         "unsupported"},
};

static void test_digest_parse_table(void **state)
{
        (void)state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct kiln_error err = KILN_ERROR_INIT;
                struct oci_digest d;
                int rc = oci_digest_parse(cases[i].in, &d, &err);
                if (cases[i].code == KILN_OK) {
                        assert_int_equal(rc, 0);
                        assert_string_equal(d.str, cases[i].in);
                } else {
                        assert_int_equal(rc, -1);
                        assert_int_equal(err.code, cases[i].code);
                        if (!strstr(err.msg, cases[i].msg_part))
                                fail_msg("case %zu '%s': message '%s' lacks '%s'", i, cases[i].in,
                                         err.msg, cases[i].msg_part);
                }
        }
}

static void test_digest_rejects_ten_megabyte_hex(void **state)
{
        static char big[10 * 1024 * 1024 + 16];
        struct kiln_error err = KILN_ERROR_INIT;

        (void)state;
        memcpy(big, "sha256:", 7);
        memset(big + 7, 'a', sizeof(big) - 8);
        assert_int_equal(oci_digest_parse(big, NULL, &err), -1);
        assert_int_equal(err.code, KILN_E_INVALID);
        assert_true(strlen(err.msg) < KILN_ERROR_MSG_SIZE);
}

static void test_hasher_matches_known_vectors(void **state)
{
        struct oci_hasher h;
        struct oci_digest d;

        (void)state;
        assert_int_equal(oci_hasher_init(&h, OCI_DIGEST_SHA256, NULL), 0);
        oci_hasher_final(&h, &d);
        assert_string_equal(d.str, "sha256:" H64);
        oci_hasher_update(&h, "ab", 2);
        oci_hasher_update(&h, "c", 1);
        oci_hasher_final(&h, &d);
        assert_string_equal(d.str,
                            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_string_equal(oci_digest_hex(&d),
                            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        oci_hasher_release(&h);
        assert_int_equal(oci_hasher_init(&h, OCI_DIGEST_SHA512, NULL), 0);
        oci_hasher_update(&h, "abc", 3);
        oci_hasher_final(&h, &d);
        assert_string_equal(d.str, "sha512:ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f");
        oci_hasher_release(&h);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_digest_parse_table),
                cmocka_unit_test(test_digest_rejects_ten_megabyte_hex),
                cmocka_unit_test(test_hasher_matches_known_vectors),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
