/* registry/known.c: where blobs were seen, for cross-repository mounts. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "registry.h"

static void digest_of(unsigned i, struct oci_digest *ret)
{
        char buf[32];
        int n = snprintf(buf, sizeof(buf), "blob %u", i);

        oci_digest_of_buffer(buf, (size_t)n, ret);
}

/* The table this replaced stopped recording at 4096 blobs, silently: a
 * copy of more blobs uploaded the rest instead of mounting them. */
static void test_known_records_past_the_old_cap_of_4096(void **state)
{
        struct kiln_error err = KILN_ERROR_INIT;
        struct reg_known *k = reg_known_new(&err);
        const unsigned n = 10000;

        (void)state;
        assert_non_null(k);
        for (unsigned i = 0; i < n; i++) {
                struct oci_digest d;
                char repo[32];
                digest_of(i, &d);
                snprintf(repo, sizeof(repo), "src/%u", i % 7);
                assert_int_equal(reg_known_add(k, "127.0.0.1:5000", repo, &d, &err), 0);
        }
        assert_int_equal(reg_known_count(k), n);
        for (unsigned i = 0; i < n; i++) {
                struct oci_digest d;
                char repo[32];
                char *r;
                digest_of(i, &d);
                snprintf(repo, sizeof(repo), "src/%u", i % 7);
                r = reg_known_other_repo(k, "127.0.0.1:5000", "dst", &d);
                assert_non_null(r);
                assert_string_equal(r, repo);
                free(r);
        }
        reg_known_free(k);
}

static void test_known_finds_only_another_repo_of_the_same_host(void **state)
{
        struct reg_known *k = reg_known_new(NULL);
        struct oci_digest d, other;
        char *r;

        (void)state;
        assert_non_null(k);
        digest_of(1, &d);
        digest_of(2, &other);
        assert_int_equal(reg_known_add(k, "reg.example", "a", &d, NULL), 0);
        assert_null(reg_known_other_repo(k, "reg.example", "a", &d));
        assert_null(reg_known_other_repo(k, "other.example", "b", &d));
        assert_null(reg_known_other_repo(k, "reg.example", "b", &other));
        r = reg_known_other_repo(k, "reg.example", "b", &d);
        assert_non_null(r);
        assert_string_equal(r, "a");
        free(r);
        reg_known_free(k);
}

/* The first repository recorded wins, also after the table has grown. */
static void test_known_keeps_the_first_repo_recorded(void **state)
{
        struct reg_known *k = reg_known_new(NULL);
        struct oci_digest d;
        char *r;

        (void)state;
        assert_non_null(k);
        digest_of(0, &d);
        assert_int_equal(reg_known_add(k, "h", "first", &d, NULL), 0);
        assert_int_equal(reg_known_add(k, "h", "second", &d, NULL), 0);
        for (unsigned i = 1; i < 5000; i++) {
                struct oci_digest e;
                digest_of(i, &e);
                assert_int_equal(reg_known_add(k, "h", "filler", &e, NULL), 0);
        }
        r = reg_known_other_repo(k, "h", "third", &d);
        assert_non_null(r);
        assert_string_equal(r, "first");
        free(r);
        r = reg_known_other_repo(k, "h", "first", &d);
        assert_non_null(r);
        assert_string_equal(r, "second");
        free(r);
        reg_known_free(k);
}

static void test_known_records_each_place_once(void **state)
{
        struct reg_known *k = reg_known_new(NULL);
        struct oci_digest d;

        (void)state;
        assert_non_null(k);
        digest_of(3, &d);
        for (int i = 0; i < 5; i++)
                assert_int_equal(reg_known_add(k, "h", "a", &d, NULL), 0);
        assert_int_equal(reg_known_count(k), 1);
        assert_int_equal(reg_known_add(k, "h2", "a", &d, NULL), 0);
        assert_int_equal(reg_known_count(k), 2);
        reg_known_free(k);
        reg_known_free(NULL);
}

#define THREADS 8
#define PER_THREAD 2000

struct adder {
        struct reg_known *k;
        unsigned id;
        int failures;
};

static void *add_many(void *arg)
{
        struct adder *a = arg;
        char repo[32];

        snprintf(repo, sizeof(repo), "t%u", a->id);
        for (unsigned i = 0; i < PER_THREAD; i++) {
                struct oci_digest d;
                char *r;
                digest_of(a->id * PER_THREAD + i, &d);
                if (reg_known_add(a->k, "h", repo, &d, NULL) < 0)
                        a->failures++;
                /* look up while others add (and the table grows) */
                r = reg_known_other_repo(a->k, "h", "nobody", &d);
                if (!r || strcmp(r, repo))
                        a->failures++;
                free(r);
        }
        return NULL;
}

static void test_known_is_safe_from_several_threads(void **state)
{
        struct reg_known *k = reg_known_new(NULL);
        pthread_t t[THREADS];
        struct adder a[THREADS];

        (void)state;
        assert_non_null(k);
        for (unsigned i = 0; i < THREADS; i++) {
                a[i] = (struct adder){.k = k, .id = i};
                assert_int_equal(pthread_create(&t[i], NULL, add_many, &a[i]), 0);
        }
        for (unsigned i = 0; i < THREADS; i++) {
                pthread_join(t[i], NULL);
                assert_int_equal(a[i].failures, 0);
        }
        assert_int_equal(reg_known_count(k), THREADS * PER_THREAD);
        reg_known_free(k);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_known_records_past_the_old_cap_of_4096),
                cmocka_unit_test(test_known_finds_only_another_repo_of_the_same_host),
                cmocka_unit_test(test_known_keeps_the_first_repo_recorded),
                cmocka_unit_test(test_known_records_each_place_once),
                cmocka_unit_test(test_known_is_safe_from_several_threads),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
