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
            "",
            "yesterday",
            "Sat, 04 Dec 2026 17:00:00",
            "Sat, 04 Dez 2026 17:00:00 UTC",
            "Sat, 32 Dec 2026 17:00:00 UTC",
            "Sat, 04 Dec 2026 24:00:00 UTC",
            "Sat, 04 Dec 2026 17:00:00 CEST",
            "Sat, 04 Dec 2026 17:00:00 +02",
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

/* Every pair of these, each checked with dpkg --compare-versions A lt|eq|gt B
 * (dpkg 1.21.22): epochs, revisions, '~' before anything, letters before
 * other characters, leading zeros. */
static void test_versions_compare_as_dpkg_does(void **state)
{
        static const struct {
                const char *a, *b;
                int want;
        } cases[] = {
            {"1.0", "1.0-1", -1},
            {"1.0", "1.0-0", 0},
            {"1.0", "1:1.0", -1},
            {"1.0", "0:1.0", 0},
            {"1.0", "1.0~rc1", 1},
            {"1.0", "1.0~rc1-1", 1},
            {"1.0", "1.0~~", 1},
            {"1.0", "1.0~", 1},
            {"1.0", "1.0+b1", -1},
            {"1.0", "1.0.1", -1},
            {"1.0", "1.0a", -1},
            {"1.0", "1.0-1ubuntu1", -1},
            {"1.0", "1.10", -1},
            {"1.0", "1.9", -1},
            {"1.0", "2.0-1+deb12u3", -1},
            {"1.0", "2.0-1+deb12u10", -1},
            {"1.0", "1.6-2.1+deb12u3", -1},
            {"1.0", "1.6-2.1", -1},
            {"1.0", "10:0.1", -1},
            {"1.0", "9:99", -1},
            {"1.0", "1.0-1~bpo1", -1},
            {"1.0", "1.0-a", -1},
            {"1.0", "1.0-A", -1},
            {"1.0", "1.0--1", -1},
            {"1.0", "1.0.a", -1},
            {"1.0", "1.0-1.1", -1},
            {"1.0", "001.0", 0},
            {"1.0", "1.0-01", -1},
            {"1.0-1", "1.0-0", 1},
            {"1.0-1", "1:1.0", -1},
            {"1.0-1", "0:1.0", 1},
            {"1.0-1", "1.0~rc1", 1},
            {"1.0-1", "1.0~rc1-1", 1},
            {"1.0-1", "1.0~~", 1},
            {"1.0-1", "1.0~", 1},
            {"1.0-1", "1.0+b1", -1},
            {"1.0-1", "1.0.1", -1},
            {"1.0-1", "1.0a", -1},
            {"1.0-1", "1.0-1ubuntu1", -1},
            {"1.0-1", "1.10", -1},
            {"1.0-1", "1.9", -1},
            {"1.0-1", "2.0-1+deb12u3", -1},
            {"1.0-1", "2.0-1+deb12u10", -1},
            {"1.0-1", "1.6-2.1+deb12u3", -1},
            {"1.0-1", "1.6-2.1", -1},
            {"1.0-1", "10:0.1", -1},
            {"1.0-1", "9:99", -1},
            {"1.0-1", "1.0-1~bpo1", 1},
            {"1.0-1", "1.0-a", -1},
            {"1.0-1", "1.0-A", -1},
            {"1.0-1", "1.0--1", -1},
            {"1.0-1", "1.0.a", -1},
            {"1.0-1", "1.0-1.1", -1},
            {"1.0-1", "001.0", 1},
            {"1.0-1", "1.0-01", 0},
            {"1.0-0", "1:1.0", -1},
            {"1.0-0", "0:1.0", 0},
            {"1.0-0", "1.0~rc1", 1},
            {"1.0-0", "1.0~rc1-1", 1},
            {"1.0-0", "1.0~~", 1},
            {"1.0-0", "1.0~", 1},
            {"1.0-0", "1.0+b1", -1},
            {"1.0-0", "1.0.1", -1},
            {"1.0-0", "1.0a", -1},
            {"1.0-0", "1.0-1ubuntu1", -1},
            {"1.0-0", "1.10", -1},
            {"1.0-0", "1.9", -1},
            {"1.0-0", "2.0-1+deb12u3", -1},
            {"1.0-0", "2.0-1+deb12u10", -1},
            {"1.0-0", "1.6-2.1+deb12u3", -1},
            {"1.0-0", "1.6-2.1", -1},
            {"1.0-0", "10:0.1", -1},
            {"1.0-0", "9:99", -1},
            {"1.0-0", "1.0-1~bpo1", -1},
            {"1.0-0", "1.0-a", -1},
            {"1.0-0", "1.0-A", -1},
            {"1.0-0", "1.0--1", -1},
            {"1.0-0", "1.0.a", -1},
            {"1.0-0", "1.0-1.1", -1},
            {"1.0-0", "001.0", 0},
            {"1.0-0", "1.0-01", -1},
            {"1:1.0", "0:1.0", 1},
            {"1:1.0", "1.0~rc1", 1},
            {"1:1.0", "1.0~rc1-1", 1},
            {"1:1.0", "1.0~~", 1},
            {"1:1.0", "1.0~", 1},
            {"1:1.0", "1.0+b1", 1},
            {"1:1.0", "1.0.1", 1},
            {"1:1.0", "1.0a", 1},
            {"1:1.0", "1.0-1ubuntu1", 1},
            {"1:1.0", "1.10", 1},
            {"1:1.0", "1.9", 1},
            {"1:1.0", "2.0-1+deb12u3", 1},
            {"1:1.0", "2.0-1+deb12u10", 1},
            {"1:1.0", "1.6-2.1+deb12u3", 1},
            {"1:1.0", "1.6-2.1", 1},
            {"1:1.0", "10:0.1", -1},
            {"1:1.0", "9:99", -1},
            {"1:1.0", "1.0-1~bpo1", 1},
            {"1:1.0", "1.0-a", 1},
            {"1:1.0", "1.0-A", 1},
            {"1:1.0", "1.0--1", 1},
            {"1:1.0", "1.0.a", 1},
            {"1:1.0", "1.0-1.1", 1},
            {"1:1.0", "001.0", 1},
            {"1:1.0", "1.0-01", 1},
            {"0:1.0", "1.0~rc1", 1},
            {"0:1.0", "1.0~rc1-1", 1},
            {"0:1.0", "1.0~~", 1},
            {"0:1.0", "1.0~", 1},
            {"0:1.0", "1.0+b1", -1},
            {"0:1.0", "1.0.1", -1},
            {"0:1.0", "1.0a", -1},
            {"0:1.0", "1.0-1ubuntu1", -1},
            {"0:1.0", "1.10", -1},
            {"0:1.0", "1.9", -1},
            {"0:1.0", "2.0-1+deb12u3", -1},
            {"0:1.0", "2.0-1+deb12u10", -1},
            {"0:1.0", "1.6-2.1+deb12u3", -1},
            {"0:1.0", "1.6-2.1", -1},
            {"0:1.0", "10:0.1", -1},
            {"0:1.0", "9:99", -1},
            {"0:1.0", "1.0-1~bpo1", -1},
            {"0:1.0", "1.0-a", -1},
            {"0:1.0", "1.0-A", -1},
            {"0:1.0", "1.0--1", -1},
            {"0:1.0", "1.0.a", -1},
            {"0:1.0", "1.0-1.1", -1},
            {"0:1.0", "001.0", 0},
            {"0:1.0", "1.0-01", -1},
            {"1.0~rc1", "1.0~rc1-1", -1},
            {"1.0~rc1", "1.0~~", 1},
            {"1.0~rc1", "1.0~", 1},
            {"1.0~rc1", "1.0+b1", -1},
            {"1.0~rc1", "1.0.1", -1},
            {"1.0~rc1", "1.0a", -1},
            {"1.0~rc1", "1.0-1ubuntu1", -1},
            {"1.0~rc1", "1.10", -1},
            {"1.0~rc1", "1.9", -1},
            {"1.0~rc1", "2.0-1+deb12u3", -1},
            {"1.0~rc1", "2.0-1+deb12u10", -1},
            {"1.0~rc1", "1.6-2.1+deb12u3", -1},
            {"1.0~rc1", "1.6-2.1", -1},
            {"1.0~rc1", "10:0.1", -1},
            {"1.0~rc1", "9:99", -1},
            {"1.0~rc1", "1.0-1~bpo1", -1},
            {"1.0~rc1", "1.0-a", -1},
            {"1.0~rc1", "1.0-A", -1},
            {"1.0~rc1", "1.0--1", -1},
            {"1.0~rc1", "1.0.a", -1},
            {"1.0~rc1", "1.0-1.1", -1},
            {"1.0~rc1", "001.0", -1},
            {"1.0~rc1", "1.0-01", -1},
            {"1.0~rc1-1", "1.0~~", 1},
            {"1.0~rc1-1", "1.0~", 1},
            {"1.0~rc1-1", "1.0+b1", -1},
            {"1.0~rc1-1", "1.0.1", -1},
            {"1.0~rc1-1", "1.0a", -1},
            {"1.0~rc1-1", "1.0-1ubuntu1", -1},
            {"1.0~rc1-1", "1.10", -1},
            {"1.0~rc1-1", "1.9", -1},
            {"1.0~rc1-1", "2.0-1+deb12u3", -1},
            {"1.0~rc1-1", "2.0-1+deb12u10", -1},
            {"1.0~rc1-1", "1.6-2.1+deb12u3", -1},
            {"1.0~rc1-1", "1.6-2.1", -1},
            {"1.0~rc1-1", "10:0.1", -1},
            {"1.0~rc1-1", "9:99", -1},
            {"1.0~rc1-1", "1.0-1~bpo1", -1},
            {"1.0~rc1-1", "1.0-a", -1},
            {"1.0~rc1-1", "1.0-A", -1},
            {"1.0~rc1-1", "1.0--1", -1},
            {"1.0~rc1-1", "1.0.a", -1},
            {"1.0~rc1-1", "1.0-1.1", -1},
            {"1.0~rc1-1", "001.0", -1},
            {"1.0~rc1-1", "1.0-01", -1},
            {"1.0~~", "1.0~", -1},
            {"1.0~~", "1.0+b1", -1},
            {"1.0~~", "1.0.1", -1},
            {"1.0~~", "1.0a", -1},
            {"1.0~~", "1.0-1ubuntu1", -1},
            {"1.0~~", "1.10", -1},
            {"1.0~~", "1.9", -1},
            {"1.0~~", "2.0-1+deb12u3", -1},
            {"1.0~~", "2.0-1+deb12u10", -1},
            {"1.0~~", "1.6-2.1+deb12u3", -1},
            {"1.0~~", "1.6-2.1", -1},
            {"1.0~~", "10:0.1", -1},
            {"1.0~~", "9:99", -1},
            {"1.0~~", "1.0-1~bpo1", -1},
            {"1.0~~", "1.0-a", -1},
            {"1.0~~", "1.0-A", -1},
            {"1.0~~", "1.0--1", -1},
            {"1.0~~", "1.0.a", -1},
            {"1.0~~", "1.0-1.1", -1},
            {"1.0~~", "001.0", -1},
            {"1.0~~", "1.0-01", -1},
            {"1.0~", "1.0+b1", -1},
            {"1.0~", "1.0.1", -1},
            {"1.0~", "1.0a", -1},
            {"1.0~", "1.0-1ubuntu1", -1},
            {"1.0~", "1.10", -1},
            {"1.0~", "1.9", -1},
            {"1.0~", "2.0-1+deb12u3", -1},
            {"1.0~", "2.0-1+deb12u10", -1},
            {"1.0~", "1.6-2.1+deb12u3", -1},
            {"1.0~", "1.6-2.1", -1},
            {"1.0~", "10:0.1", -1},
            {"1.0~", "9:99", -1},
            {"1.0~", "1.0-1~bpo1", -1},
            {"1.0~", "1.0-a", -1},
            {"1.0~", "1.0-A", -1},
            {"1.0~", "1.0--1", -1},
            {"1.0~", "1.0.a", -1},
            {"1.0~", "1.0-1.1", -1},
            {"1.0~", "001.0", -1},
            {"1.0~", "1.0-01", -1},
            {"1.0+b1", "1.0.1", -1},
            {"1.0+b1", "1.0a", 1},
            {"1.0+b1", "1.0-1ubuntu1", 1},
            {"1.0+b1", "1.10", -1},
            {"1.0+b1", "1.9", -1},
            {"1.0+b1", "2.0-1+deb12u3", -1},
            {"1.0+b1", "2.0-1+deb12u10", -1},
            {"1.0+b1", "1.6-2.1+deb12u3", -1},
            {"1.0+b1", "1.6-2.1", -1},
            {"1.0+b1", "10:0.1", -1},
            {"1.0+b1", "9:99", -1},
            {"1.0+b1", "1.0-1~bpo1", 1},
            {"1.0+b1", "1.0-a", 1},
            {"1.0+b1", "1.0-A", 1},
            {"1.0+b1", "1.0--1", -1},
            {"1.0+b1", "1.0.a", -1},
            {"1.0+b1", "1.0-1.1", 1},
            {"1.0+b1", "001.0", 1},
            {"1.0+b1", "1.0-01", 1},
            {"1.0.1", "1.0a", 1},
            {"1.0.1", "1.0-1ubuntu1", 1},
            {"1.0.1", "1.10", -1},
            {"1.0.1", "1.9", -1},
            {"1.0.1", "2.0-1+deb12u3", -1},
            {"1.0.1", "2.0-1+deb12u10", -1},
            {"1.0.1", "1.6-2.1+deb12u3", -1},
            {"1.0.1", "1.6-2.1", -1},
            {"1.0.1", "10:0.1", -1},
            {"1.0.1", "9:99", -1},
            {"1.0.1", "1.0-1~bpo1", 1},
            {"1.0.1", "1.0-a", 1},
            {"1.0.1", "1.0-A", 1},
            {"1.0.1", "1.0--1", 1},
            {"1.0.1", "1.0.a", -1},
            {"1.0.1", "1.0-1.1", 1},
            {"1.0.1", "001.0", 1},
            {"1.0.1", "1.0-01", 1},
            {"1.0a", "1.0-1ubuntu1", 1},
            {"1.0a", "1.10", -1},
            {"1.0a", "1.9", -1},
            {"1.0a", "2.0-1+deb12u3", -1},
            {"1.0a", "2.0-1+deb12u10", -1},
            {"1.0a", "1.6-2.1+deb12u3", -1},
            {"1.0a", "1.6-2.1", -1},
            {"1.0a", "10:0.1", -1},
            {"1.0a", "9:99", -1},
            {"1.0a", "1.0-1~bpo1", 1},
            {"1.0a", "1.0-a", 1},
            {"1.0a", "1.0-A", 1},
            {"1.0a", "1.0--1", -1},
            {"1.0a", "1.0.a", -1},
            {"1.0a", "1.0-1.1", 1},
            {"1.0a", "001.0", 1},
            {"1.0a", "1.0-01", 1},
            {"1.0-1ubuntu1", "1.10", -1},
            {"1.0-1ubuntu1", "1.9", -1},
            {"1.0-1ubuntu1", "2.0-1+deb12u3", -1},
            {"1.0-1ubuntu1", "2.0-1+deb12u10", -1},
            {"1.0-1ubuntu1", "1.6-2.1+deb12u3", -1},
            {"1.0-1ubuntu1", "1.6-2.1", -1},
            {"1.0-1ubuntu1", "10:0.1", -1},
            {"1.0-1ubuntu1", "9:99", -1},
            {"1.0-1ubuntu1", "1.0-1~bpo1", 1},
            {"1.0-1ubuntu1", "1.0-a", -1},
            {"1.0-1ubuntu1", "1.0-A", -1},
            {"1.0-1ubuntu1", "1.0--1", -1},
            {"1.0-1ubuntu1", "1.0.a", -1},
            {"1.0-1ubuntu1", "1.0-1.1", -1},
            {"1.0-1ubuntu1", "001.0", 1},
            {"1.0-1ubuntu1", "1.0-01", 1},
            {"1.10", "1.9", 1},
            {"1.10", "2.0-1+deb12u3", -1},
            {"1.10", "2.0-1+deb12u10", -1},
            {"1.10", "1.6-2.1+deb12u3", 1},
            {"1.10", "1.6-2.1", 1},
            {"1.10", "10:0.1", -1},
            {"1.10", "9:99", -1},
            {"1.10", "1.0-1~bpo1", 1},
            {"1.10", "1.0-a", 1},
            {"1.10", "1.0-A", 1},
            {"1.10", "1.0--1", 1},
            {"1.10", "1.0.a", 1},
            {"1.10", "1.0-1.1", 1},
            {"1.10", "001.0", 1},
            {"1.10", "1.0-01", 1},
            {"1.9", "2.0-1+deb12u3", -1},
            {"1.9", "2.0-1+deb12u10", -1},
            {"1.9", "1.6-2.1+deb12u3", 1},
            {"1.9", "1.6-2.1", 1},
            {"1.9", "10:0.1", -1},
            {"1.9", "9:99", -1},
            {"1.9", "1.0-1~bpo1", 1},
            {"1.9", "1.0-a", 1},
            {"1.9", "1.0-A", 1},
            {"1.9", "1.0--1", 1},
            {"1.9", "1.0.a", 1},
            {"1.9", "1.0-1.1", 1},
            {"1.9", "001.0", 1},
            {"1.9", "1.0-01", 1},
            {"2.0-1+deb12u3", "2.0-1+deb12u10", -1},
            {"2.0-1+deb12u3", "1.6-2.1+deb12u3", 1},
            {"2.0-1+deb12u3", "1.6-2.1", 1},
            {"2.0-1+deb12u3", "10:0.1", -1},
            {"2.0-1+deb12u3", "9:99", -1},
            {"2.0-1+deb12u3", "1.0-1~bpo1", 1},
            {"2.0-1+deb12u3", "1.0-a", 1},
            {"2.0-1+deb12u3", "1.0-A", 1},
            {"2.0-1+deb12u3", "1.0--1", 1},
            {"2.0-1+deb12u3", "1.0.a", 1},
            {"2.0-1+deb12u3", "1.0-1.1", 1},
            {"2.0-1+deb12u3", "001.0", 1},
            {"2.0-1+deb12u3", "1.0-01", 1},
            {"2.0-1+deb12u10", "1.6-2.1+deb12u3", 1},
            {"2.0-1+deb12u10", "1.6-2.1", 1},
            {"2.0-1+deb12u10", "10:0.1", -1},
            {"2.0-1+deb12u10", "9:99", -1},
            {"2.0-1+deb12u10", "1.0-1~bpo1", 1},
            {"2.0-1+deb12u10", "1.0-a", 1},
            {"2.0-1+deb12u10", "1.0-A", 1},
            {"2.0-1+deb12u10", "1.0--1", 1},
            {"2.0-1+deb12u10", "1.0.a", 1},
            {"2.0-1+deb12u10", "1.0-1.1", 1},
            {"2.0-1+deb12u10", "001.0", 1},
            {"2.0-1+deb12u10", "1.0-01", 1},
            {"1.6-2.1+deb12u3", "1.6-2.1", 1},
            {"1.6-2.1+deb12u3", "10:0.1", -1},
            {"1.6-2.1+deb12u3", "9:99", -1},
            {"1.6-2.1+deb12u3", "1.0-1~bpo1", 1},
            {"1.6-2.1+deb12u3", "1.0-a", 1},
            {"1.6-2.1+deb12u3", "1.0-A", 1},
            {"1.6-2.1+deb12u3", "1.0--1", 1},
            {"1.6-2.1+deb12u3", "1.0.a", 1},
            {"1.6-2.1+deb12u3", "1.0-1.1", 1},
            {"1.6-2.1+deb12u3", "001.0", 1},
            {"1.6-2.1+deb12u3", "1.0-01", 1},
            {"1.6-2.1", "10:0.1", -1},
            {"1.6-2.1", "9:99", -1},
            {"1.6-2.1", "1.0-1~bpo1", 1},
            {"1.6-2.1", "1.0-a", 1},
            {"1.6-2.1", "1.0-A", 1},
            {"1.6-2.1", "1.0--1", 1},
            {"1.6-2.1", "1.0.a", 1},
            {"1.6-2.1", "1.0-1.1", 1},
            {"1.6-2.1", "001.0", 1},
            {"1.6-2.1", "1.0-01", 1},
            {"10:0.1", "9:99", 1},
            {"10:0.1", "1.0-1~bpo1", 1},
            {"10:0.1", "1.0-a", 1},
            {"10:0.1", "1.0-A", 1},
            {"10:0.1", "1.0--1", 1},
            {"10:0.1", "1.0.a", 1},
            {"10:0.1", "1.0-1.1", 1},
            {"10:0.1", "001.0", 1},
            {"10:0.1", "1.0-01", 1},
            {"9:99", "1.0-1~bpo1", 1},
            {"9:99", "1.0-a", 1},
            {"9:99", "1.0-A", 1},
            {"9:99", "1.0--1", 1},
            {"9:99", "1.0.a", 1},
            {"9:99", "1.0-1.1", 1},
            {"9:99", "001.0", 1},
            {"9:99", "1.0-01", 1},
            {"1.0-1~bpo1", "1.0-a", -1},
            {"1.0-1~bpo1", "1.0-A", -1},
            {"1.0-1~bpo1", "1.0--1", -1},
            {"1.0-1~bpo1", "1.0.a", -1},
            {"1.0-1~bpo1", "1.0-1.1", -1},
            {"1.0-1~bpo1", "001.0", 1},
            {"1.0-1~bpo1", "1.0-01", -1},
            {"1.0-a", "1.0-A", 1},
            {"1.0-a", "1.0--1", -1},
            {"1.0-a", "1.0.a", -1},
            {"1.0-a", "1.0-1.1", 1},
            {"1.0-a", "001.0", 1},
            {"1.0-a", "1.0-01", 1},
            {"1.0-A", "1.0--1", -1},
            {"1.0-A", "1.0.a", -1},
            {"1.0-A", "1.0-1.1", 1},
            {"1.0-A", "001.0", 1},
            {"1.0-A", "1.0-01", 1},
            {"1.0--1", "1.0.a", -1},
            {"1.0--1", "1.0-1.1", 1},
            {"1.0--1", "001.0", 1},
            {"1.0--1", "1.0-01", 1},
            {"1.0.a", "1.0-1.1", 1},
            {"1.0.a", "001.0", 1},
            {"1.0.a", "1.0-01", 1},
            {"1.0-1.1", "001.0", 1},
            {"1.0-1.1", "1.0-01", 1},
            {"001.0", "1.0-01", -1},
        };
        (void)state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                int got = recipe_deb_version_cmp(cases[i].a, cases[i].b);
                if (got != cases[i].want)
                        fail_msg("%s vs %s: got %d, dpkg says %d", cases[i].a, cases[i].b, got,
                                 cases[i].want);
                assert_int_equal(recipe_deb_version_cmp(cases[i].b, cases[i].a), -cases[i].want);
        }
}

#define STANZA(name, ver, extra)                                                                   \
        "Package: " name "\nVersion: " ver "\nArchitecture: amd64\n" extra "Filename: pool/" name  \
        ".deb\nSHA256: 00\n\n"

static const char *const INDEX =
    STANZA("app", "1.0", "Depends: libfoo (>= 2), mta | exim4, pyth:any, libc6 (>= 2.30)\n")
        STANZA("libfoo", "1.5", "") STANZA("libfoo", "2.1", "Pre-Depends: libbase\n")
            STANZA("libfoo", "3~rc1", "") STANZA("libbase", "1", "")
                STANZA("postfix", "3", "Provides: mta\nPriority: optional\n")
                    STANZA("dma", "1", "Provides: mta\nPriority: extra\n") STANZA("exim4", "4", "")
                        STANZA("pyth", "3", "Multi-Arch: allowed\n")
                            STANZA("strict", "1", "Depends: pyth2:any\n") STANZA("pyth2", "1", "")
                                STANZA("vdep", "1", "Depends: virt (>= 2)\n")
                                    STANZA("prov1", "1", "Provides: virt\n")
                                        STANZA("prov2", "1", "Provides: virt (= 2)\n")
                                            STANZA("bad", "1", "Conflicts: libbase\n")
                                                STANZA("old", "1", "Breaks: libc6 (<< 3)\n");

static const char *const STATUS =
    "Package: libc6\nStatus: install ok installed\nVersion: 2.36-9\nArchitecture: amd64\n\n"
    "Package: exim4\nStatus: deinstall ok config-files\nVersion: 4\nArchitecture: amd64\n\n";

static char *names(json_t *list)
{
        char buf[1024] = "";
        size_t i;
        json_t *e;

        json_array_foreach(list, i, e)
        {
                strcat(buf, i ? " " : "");
                strcat(buf, json_string_value(json_object_get(e, "spec")));
        }
        return strdup(buf);
}

/* what apt-get install --no-install-recommends would add */
static void test_resolver_follows_apt(void **state)
{
        static const struct {
                const char *req;
                const char *want; /* install order, or the error */
        } cases[] = {
            /* the newest libfoo (3~rc1 < 3 but > 2.1); mta: the provider
             * of highest Priority; pyth:any: Multi-Arch allowed; libc6
             * already there; exim4's config files alone are not it */
            {"app", "libfoo=3~rc1 postfix=3 pyth=3 app=1.0"},
            {"libfoo (<< 2)", "libfoo=1.5"},
            /* Pre-Depends come first */
            {"libfoo (= 2.1)", "libbase=1 libfoo=2.1"},
            {"libfoo (>= 4)",
             "no version of 'libfoo' for 'amd64' in the indexes satisfies 'libfoo (>= 4)'"},
            {"libc6", ""},
            {"nosuch", "no package 'nosuch' for 'amd64' in the index of any apt source"},
            {"strict", "package 'strict' 1 depends on 'pyth2:any', which no index or installed "
                       "package provides"},
            /* a versioned relation on a virtual package: versioned Provides only */
            {"vdep", "prov2=1 vdep=1"},
            {"bad", "package 'bad' 1 conflicts with 'libbase' 1"},
            {"old", "package 'old' 1 breaks 'libc6' 2.36-9, which the image has"},
        };
        (void)state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct kiln_error err = {0};
                json_t *list = NULL;
                const char *reqs[2] = {cases[i].req, "bad"};
                size_t n = !strcmp(cases[i].req, "bad") ? 2 : 1;
                int rc;
                if (n == 2)
                        reqs[0] = "libbase";
                rc = recipe_apt_resolve(&INDEX, 1, STATUS, "amd64", reqs, n, &list, &err);
                if (rc == 0) {
                        char *got = names(list);
                        assert_string_equal(got, cases[i].want);
                        free(got);
                        json_decref(list);
                } else {
                        assert_string_equal(err.msg, cases[i].want);
                }
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_release_dates_parse_as_date_does),
            cmocka_unit_test(test_gpgv_verdict_follows_apt),
            cmocka_unit_test(test_versions_compare_as_dpkg_does),
            cmocka_unit_test(test_resolver_follows_apt),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
