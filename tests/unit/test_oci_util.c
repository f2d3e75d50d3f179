/* oci/util.c: UTF-8 checks and the escaping of outside text for a terminal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "parallel.h"

#include "util.h"

static void test_utf8_valid_accepts_shortest_forms_only(void **state)
{
        static const struct {
                const char *s;
                bool ok;
        } cases[] = {
                {"plain", true},         {"\xc3\xa9", true},     {"\xe3\x83\x95", true},
                {"\xf0\x9f\x98\x80", true}, {"\xff", false},     {"\xc0\xaf", false},
                {"\xe0\x80\xaf", false}, {"\xed\xa0\x80", false}, {"\xf4\x90\x80\x80", false},
                {"\xc3", false},         {"\xe3\x83", false},
        };
        (void)state;
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
                assert_int_equal(kiln_utf8_valid(cases[i].s, strlen(cases[i].s)), cases[i].ok);
}

static void test_text_escape_escapes_controls_keeps_printable_utf8(void **state)
{
        static const struct {
                const char *in, *out;
        } cases[] = {
                {"a\x1b[31mb", "a\\x1b[31mb"},
                {"x\nkiln: error: y", "x\\nkiln: error: y"},
                {"\r\t\x07\x7f", "\\r\\t\\x07\\x7f"},
                {"c1\xc2\x9b" "31m", "c1\\xc2\\x9b31m"},
                {"\xc2\xa0nbsp \xc3\xa9t\xc3\xa9", "\xc2\xa0nbsp \xc3\xa9t\xc3\xa9"},
                {"bad\xff\xc3", "bad\\xff\\xc3"},
                {"back\\slash", "back\\slash"},
        };
        char out[128];
        (void)state;
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                size_t need = kiln_text_escape(cases[i].in, strlen(cases[i].in), out, sizeof(out),
                                               SIZE_MAX, 0);
                assert_string_equal(out, cases[i].out);
                assert_int_equal(need, strlen(cases[i].out));
        }
}

static void test_text_escape_cuts_whole_escapes(void **state)
{
        char out[16];
        char *dup;
        (void)state;
        kiln_text_escape("abcdefghij", 10, out, sizeof(out), 4, 0);
        assert_string_equal(out, "abcd...");
        /* "ab\\x1b" needs 6 bytes + NUL: never "ab\\x1" */
        kiln_text_escape("ab\x1b\x1b", 4, out, 6, SIZE_MAX, 0);
        assert_string_equal(out, "ab");
        /* ASCII only: printable UTF-8 is escaped too */
        kiln_text_escape("\xc3\xa9\x1b", 3, out, sizeof(out), SIZE_MAX, KILN_ESCAPE_ASCII);
        assert_string_equal(out, "\\xc3\\xa9\\x1b");
        dup = kiln_text_escape_dup("\x1b]0;t\x07");
        assert_string_equal(dup, "\\x1b]0;t\\x07");
        free(dup);
}

/* ---- kiln_parallel_for ---- */

struct tally {
        pthread_mutex_t lock;
        int runs[200];
        size_t started, fail_at, fail_slow;
        pthread_t seen[64];
        size_t n_seen;
        bool need_two; /* item 0 waits until a second thread took one */
        bool late_failed;
        pthread_cond_t more;
};

static int count_one(void *ctx, size_t i, struct kiln_error *err)
{
        struct tally *t = ctx;
        bool known = false;

        pthread_mutex_lock(&t->lock);
        t->runs[i]++;
        t->started++;
        for (size_t k = 0; k < t->n_seen; k++)
                known |= pthread_equal(t->seen[k], pthread_self()) != 0;
        if (!known && t->n_seen < 64)
                t->seen[t->n_seen++] = pthread_self();
        pthread_cond_broadcast(&t->more);
        if (i == 0 && t->need_two) {
                /* a safety net against a hang, not a timing */
                struct timespec until;
                clock_gettime(CLOCK_REALTIME, &until);
                until.tv_sec += 60;
                while (t->n_seen < 2)
                        if (pthread_cond_timedwait(&t->more, &t->lock, &until) != 0) {
                                pthread_mutex_unlock(&t->lock);
                                return kiln_error_set(err, KILN_E_IO, "no second thread");
                        }
        }
        pthread_mutex_unlock(&t->lock);
        usleep(200);
        if (i == t->fail_slow) {
                /* fails after a later item has failed (that one waits for
                 * this one to start, so it is running) */
                pthread_mutex_lock(&t->lock);
                while (!t->late_failed)
                        pthread_cond_wait(&t->more, &t->lock);
                pthread_mutex_unlock(&t->lock);
                return kiln_error_set(err, KILN_E_IO, "item %zu failed", i);
        }
        if (i == t->fail_at && t->fail_slow != SIZE_MAX) {
                pthread_mutex_lock(&t->lock);
                t->late_failed = true;
                pthread_cond_broadcast(&t->more);
                pthread_mutex_unlock(&t->lock);
        }
        if (i == t->fail_at)
                return kiln_error_set(err, KILN_E_IO, "item %zu failed", i);
        return 0;
}

static void test_parallel_for_runs_each_item_once(void **state)
{
        struct tally t = {.fail_at = SIZE_MAX, .fail_slow = SIZE_MAX, .need_two = true};
        struct kiln_error err = KILN_ERROR_INIT;

        (void)state;
        pthread_mutex_init(&t.lock, NULL);
        pthread_cond_init(&t.more, NULL);
        if (kiln_parallel_for(200, 4, count_one, &t, &err) < 0)
                fail_msg("%s", err.msg);
        for (size_t i = 0; i < 200; i++)
                assert_int_equal(t.runs[i], 1);
        /* more than one thread took items (item 0 waited for it), never
         * more than asked */
        assert_true(t.n_seen >= 2 && t.n_seen <= 4);
        memset(t.runs, 0, sizeof(t.runs));
        t.n_seen = 0;
        t.need_two = false;
        assert_int_equal(kiln_parallel_for(50, 1, count_one, &t, &err), 0);
        assert_int_equal(t.n_seen, 1);
        assert_true(pthread_equal(t.seen[0], pthread_self()));
        assert_int_equal(kiln_parallel_for(0, 4, count_one, &t, &err), 0);
        pthread_cond_destroy(&t.more);
        pthread_mutex_destroy(&t.lock);
}

static void test_parallel_for_stops_at_the_first_failure(void **state)
{
        struct tally t = {.fail_at = 10, .fail_slow = SIZE_MAX};
        struct kiln_error err = KILN_ERROR_INIT;

        (void)state;
        pthread_mutex_init(&t.lock, NULL);
        pthread_cond_init(&t.more, NULL);
        assert_int_equal(kiln_parallel_for(200, 4, count_one, &t, &err), -1);
        assert_int_equal(err.code, KILN_E_IO);
        assert_string_equal(err.msg, "item 10 failed");
        /* items start in order; none twice */
        assert_true(t.started >= 11);
        for (size_t i = 0; i < 200; i++)
                assert_true(t.runs[i] <= 1);
        for (size_t i = 0; i <= 10; i++)
                assert_int_equal(t.runs[i], 1);
        /* one thread: exactly the items up to the failure */
        t.started = 0;
        assert_int_equal(kiln_parallel_for(200, 1, count_one, &t, &err), -1);
        assert_int_equal(t.started, 11);
        pthread_cond_destroy(&t.more);
        pthread_mutex_destroy(&t.lock);
}

/* item 3 fails only after item 4 has: the error is still item 3's, as a
 * loop would give */
static void test_parallel_for_reports_the_lowest_failure(void **state)
{
        struct tally t = {.fail_at = 4, .fail_slow = 3};
        struct kiln_error err = KILN_ERROR_INIT;

        (void)state;
        pthread_mutex_init(&t.lock, NULL);
        pthread_cond_init(&t.more, NULL);
        assert_int_equal(kiln_parallel_for(50, 4, count_one, &t, &err), -1);
        assert_string_equal(err.msg, "item 3 failed");
        pthread_cond_destroy(&t.more);
        pthread_mutex_destroy(&t.lock);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parallel_for_runs_each_item_once),
                cmocka_unit_test(test_parallel_for_stops_at_the_first_failure),
                cmocka_unit_test(test_parallel_for_reports_the_lowest_failure),
                cmocka_unit_test(test_utf8_valid_accepts_shortest_forms_only),
                cmocka_unit_test(test_text_escape_escapes_controls_keeps_printable_utf8),
                cmocka_unit_test(test_text_escape_cuts_whole_escapes),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
