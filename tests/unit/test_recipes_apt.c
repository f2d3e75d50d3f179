/* apt sources (recipes/recipe_apt.c): Release dates and gpgv's verdict. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "recipe_internal.h"

/* expected values from GNU date -d '...' +%s */
static void test_release_dates_parse_as_date_does(void **state)
{
        static const struct {
                const char *in;
                long long want;
        } ok[] = {
                {"Sat, 04 Dec 2026 17:00:00 UTC", 1796403600LL},
                {"Thu, 01 Jan 1970 00:00:00 GMT", 0},
                {"Tue, 29 Feb 2028 23:59:59 +0200", 1835474399LL},
                {"Mon, 10 Jun 2023 07:34:30 UTC", 1686382470LL},
                {"Sat, 01 Mar 1900 12:00:00 -0130", -2203842600LL},
                {"04 Dec 2026 17:00:00 Z", 1796403600LL},
        };
        static const char *const bad[] = {
                "", "yesterday", "Sat, 04 Dec 2026 17:00:00", "Sat, 04 Dez 2026 17:00:00 UTC",
                "Sat, 32 Dec 2026 17:00:00 UTC", "Sat, 04 Dec 2026 24:00:00 UTC",
                "Sat, 04 Dec 2026 17:00:00 CEST", "Sat, 04 Dec 2026 17:00:00 +02",
        };
        (void)state;
        for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
                long long t = 1;
                assert_int_equal(recipe_apt_date_parse(ok[i].in, &t), 0);
                assert_true(t == ok[i].want);
        }
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                long long t;
                assert_int_equal(recipe_apt_date_parse(bad[i], &t), -1);
        }
}

#define GOOD                                                                                       \
        "[GNUPG:] NEWSIG\n[GNUPG:] GOODSIG E3A862A5C005D040 kiln test\n"                           \
        "[GNUPG:] VALIDSIG 20D6CF43F6F37D811008AC41E3A862A5C005D040 2026-12-04 1 0 4 0 22 8 01 "   \
        "20D6CF43F6F37D811008AC41E3A862A5C005D040\n"
#define NOKEY                                                                                      \
        "[GNUPG:] NEWSIG\n[GNUPG:] ERRSIG 0E98404D386FA1D9 1 8 01 1 9 -\n"                         \
        "[GNUPG:] NO_PUBKEY 0E98404D386FA1D9\n"

/* gnupg doc/DETAILS status lines, as gpgv writes them */
static void test_gpgv_verdict_follows_apt(void **state)
{
        static const struct {
                const char *status;
                int exit;
                const char *msg; /* NULL: accepted */
        } cases[] = {
                {GOOD, 0, NULL},
                /* Debian's InRelease carries several signatures: one good is enough */
                {NOKEY GOOD, 2, NULL},
                {NOKEY, 2, "src: signed by key 0E98404D386FA1D9, which the keyring does not hold"},
                {"[GNUPG:] NEWSIG\n[GNUPG:] BADSIG E3A862A5C005D040 kiln test\n", 1,
                 "src: bad signature by key E3A862A5C005D040"},
                {GOOD "[GNUPG:] BADSIG 1111111111111111 x\n", 1,
                 "src: bad signature by key 1111111111111111"},
                {"[GNUPG:] EXPKEYSIG E3A862A5C005D040 kiln test\n[GNUPG:] VALIDSIG X\n", 0,
                 "src: signed by the expired key E3A862A5C005D040"},
                {"[GNUPG:] REVKEYSIG E3A862A5C005D040 kiln test\n[GNUPG:] VALIDSIG X\n", 0,
                 "src: signed by the revoked key E3A862A5C005D040"},
                {"[GNUPG:] NODATA 1\n", 2, "src: no valid signature (gpgv status 2)"},
                /* GOODSIG without VALIDSIG is not enough */
                {"[GNUPG:] GOODSIG E3A862A5C005D040 kiln test\n", 0,
                 "src: no valid signature (gpgv status 0)"},
                {"", 2, "src: no valid signature (gpgv status 2)"},
        };
        (void)state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct kiln_error err = {0};
                int rc = recipe_apt_gpgv_verdict(cases[i].status, cases[i].exit, "src", &err);
                if (!cases[i].msg) {
                        assert_int_equal(rc, 0);
                        continue;
                }
                assert_int_equal(rc, -1);
                assert_string_equal(err.msg, cases[i].msg);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_release_dates_parse_as_date_does),
                cmocka_unit_test(test_gpgv_verdict_follows_apt),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
