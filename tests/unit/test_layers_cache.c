/* Unit tests for layers/cache.c: hits, misses, the stat index and its racy
 * rule, damaged indexes and entries. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>

#include "cache.h"
#include "io.h"
#include "source.h"
#include "util.h"

static char root[256];

static void write_file(const char *rel, const char *data)
{
        char p[512];
        FILE *f;

        snprintf(p, sizeof(p), "%s/tree/%s", root, rel);
        f = fopen(p, "w");
        assert_non_null(f);
        fputs(data, f);
        fclose(f);
}

static int setup(void **state)
{
        char p[512];

        (void)state;
        snprintf(root, sizeof(root), "/tmp/kiln-cache-test-XXXXXX");
        assert_non_null(mkdtemp(root));
        snprintf(p, sizeof(p), "%s/tree/sub", root);
        assert_int_equal(kiln_mkdir_p(p, 0755, NULL), 0);
        write_file("a", "alpha\n");
        write_file("sub/b", "beta\n");
        return 0;
}

static int teardown(void **state)
{
        (void)state;
        kiln_rm_rf(root);
        return 0;
}

/* Moves every stat index delta seconds from now: +5 makes the tree's files
 * older than the index, as they are on a real warm rebuild; -10 makes them
 * newer (changed in or after the second the index was written). */
static void shift_index(int delta)
{
        char p[512];
        DIR *d;
        struct dirent *e;

        snprintf(p, sizeof(p), "%s/cache/stat", root);
        d = opendir(p);
        assert_non_null(d);
        while ((e = readdir(d))) {
                char f[1024];
                struct timespec ts[2];
                if (e->d_name[0] == '.')
                        continue;
                snprintf(f, sizeof(f), "%s/%s", p, e->d_name);
                clock_gettime(CLOCK_REALTIME, &ts[0]);
                ts[0].tv_sec += delta;
                ts[1] = ts[0];
                assert_int_equal(utimensat(AT_FDCWD, f, ts, 0), 0);
        }
        closedir(d);
}

static void age_index(void)
{
        shift_index(5);
}

static void build(bool lookup, struct layer_result *res, bool *hit)
{
        struct kiln_error err = KILN_ERROR_INIT;
        char tree[512], cdir[512];
        struct layer_source *s = layer_source_new(&err);
        struct layer_cache *c;
        struct layer_writer_opts o;

        snprintf(tree, sizeof(tree), "%s/tree", root);
        snprintf(cdir, sizeof(cdir), "%s/cache", root);
        c = layer_cache_open(cdir, &err);
        assert_non_null(c);
        assert_int_equal(layer_writer_opts_init(&o, NULL), 0);
        o.mtime = 0;
        assert_int_equal(layer_source_add_tree(s, tree, "/t", NULL, 0, &err), 0);
        assert_int_equal(layer_source_finish(s, &err), 0);
        if (layer_cache_build(c, s, &o, lookup, res, hit, &err) < 0)
                fail_msg("%s", err.msg);
        layer_source_free(s);
        layer_cache_free(c);
}

static void test_second_build_is_a_hit_only_after_the_index_is_older(void **state)
{
        struct layer_result r1, r2;
        bool hit;

        (void)state;
        build(true, &r1, &hit);
        assert_false(hit);
        /* files not older than the index (git's racy rule): not trusted */
        shift_index(-10);
        build(true, &r2, &hit);
        assert_false(hit);
        assert_string_equal(r1.digest.str, r2.digest.str);
        age_index();
        build(true, &r2, &hit);
        assert_true(hit);
        assert_string_equal(r1.digest.str, r2.digest.str);
        assert_string_equal(r1.diff_id.str, r2.diff_id.str);
        assert_int_equal(r1.size, r2.size);
        /* no lookup: built again, same bytes */
        build(false, &r2, &hit);
        assert_false(hit);
        assert_string_equal(r1.digest.str, r2.digest.str);
}

static void test_changed_content_or_mode_is_a_miss(void **state)
{
        struct layer_result r1, r2, r3;
        char p[512];
        bool hit;

        (void)state;
        build(true, &r1, &hit);
        age_index();
        write_file("sub/b", "BETA\n"); /* same size, new content */
        build(true, &r2, &hit);
        assert_false(hit);
        assert_string_not_equal(r1.digest.str, r2.digest.str);
        age_index();
        snprintf(p, sizeof(p), "%s/tree/a", root);
        /* the mode policy: only the owner's exec bit of a file counts */
        assert_int_equal(chmod(p, 0600), 0);
        build(true, &r3, &hit);
        assert_string_equal(r2.digest.str, r3.digest.str);
        age_index();
        assert_int_equal(chmod(p, 0700), 0);
        build(true, &r3, &hit);
        assert_false(hit);
        assert_string_not_equal(r2.digest.str, r3.digest.str);
}

static void test_damaged_index_and_entry_only_cost_a_rebuild(void **state)
{
        struct layer_result r1, r2;
        char p[512];
        DIR *d;
        struct dirent *e;
        bool hit;

        (void)state;
        build(true, &r1, &hit);
        snprintf(p, sizeof(p), "%s/cache/stat", root);
        d = opendir(p);
        while ((e = readdir(d))) {
                char f[1024];
                if (e->d_name[0] == '.')
                        continue;
                snprintf(f, sizeof(f), "%s/%s", p, e->d_name);
                assert_int_equal(kiln_write_file_atomic(f, "garbage 1 2\0x", 13, 0600, NULL), 0);
        }
        closedir(d);
        age_index();
        build(true, &r2, &hit);
        assert_false(hit);
        assert_string_equal(r1.digest.str, r2.digest.str);
        /* a truncated entry file is ignored */
        snprintf(p, sizeof(p), "%s/cache/entries", root);
        d = opendir(p);
        while ((e = readdir(d))) {
                char f[1024];
                if (e->d_name[0] == '.')
                        continue;
                snprintf(f, sizeof(f), "%s/%s", p, e->d_name);
                assert_int_equal(kiln_write_file_atomic(f, "{\"digest\":", 10, 0600, NULL), 0);
        }
        closedir(d);
        age_index();
        build(true, &r2, &hit);
        assert_false(hit);
        assert_string_equal(r1.digest.str, r2.digest.str);
}

/* Opens the cache (the caller frees it). */
static struct layer_cache *open_cache(void)
{
        struct kiln_error err = KILN_ERROR_INIT;
        char cdir[512];
        struct layer_cache *c;

        snprintf(cdir, sizeof(cdir), "%s/cache", root);
        c = layer_cache_open(cdir, &err);
        assert_non_null(c);
        return c;
}

static void blob_path(const struct layer_result *r, char *p, size_t len)
{
        snprintf(p, len, "%s/cache/layout/blobs/sha256/%s", root, oci_digest_hex(&r->digest));
}

static void test_stamped_blob_is_linked_into_a_layout(void **state)
{
        struct kiln_error err = KILN_ERROR_INIT;
        struct layer_result r;
        struct layer_cache *c;
        char lay[512], p[512], q[1024];
        struct stat a, b;
        bool hit;

        (void)state;
        build(true, &r, &hit);
        snprintf(lay, sizeof(lay), "%s/out", root);
        snprintf(p, sizeof(p), "%s/out/blobs", root);
        assert_int_equal(kiln_mkdir_p(p, 0755, &err), 0);
        c = open_cache();
        /* fresh: stamped when written, so linked without hashing */
        assert_true(layer_cache_place_blob(c, &r, lay));
        blob_path(&r, p, sizeof(p));
        snprintf(q, sizeof(q), "%s/out/blobs/sha256/%s", root, oci_digest_hex(&r.digest));
        assert_int_equal(stat(p, &a), 0);
        assert_int_equal(stat(q, &b), 0);
        assert_true(a.st_ino == b.st_ino && a.st_dev == b.st_dev);
        /* the link moved the ctime; it was stamped again: still trusted, and found */
        assert_true(layer_cache_place_blob(c, &r, lay));
        /* another file under the blob's name in the layout is not vouched for */
        assert_int_equal(unlink(q), 0);
        {
                FILE *f = fopen(q, "w");
                assert_non_null(f);
                fclose(f);
        }
        assert_false(layer_cache_place_blob(c, &r, lay));
        layer_cache_free(c);
}

static void test_blob_written_in_place_loses_its_stamp(void **state)
{
        struct kiln_error err = KILN_ERROR_INIT;
        struct layer_result r;
        struct layer_cache *c;
        char lay[512], p[512];
        struct stat st;
        struct timespec ts[2];
        int fd;
        bool hit;

        (void)state;
        build(true, &r, &hit);
        blob_path(&r, p, sizeof(p));
        assert_int_equal(stat(p, &st), 0);
        /* same size, same mtime, other bytes: only the ctime tells */
        fd = open(p, O_WRONLY);
        assert_true(fd >= 0);
        assert_int_equal(pwrite(fd, "\xff", 1, st.st_size / 2), 1);
        close(fd);
        ts[0] = st.st_atim;
        ts[1] = st.st_mtim;
        assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
        snprintf(lay, sizeof(lay), "%s/out", root);
        snprintf(p, sizeof(p), "%s/out/blobs", root);
        assert_int_equal(kiln_mkdir_p(p, 0755, &err), 0);
        c = open_cache();
        assert_false(layer_cache_place_blob(c, &r, lay));
        /* hashed: refused */
        assert_int_equal(layer_cache_verify_blob(c, &r, &err), -1);
        assert_int_equal(err.code, KILN_E_DIGEST);
        layer_cache_free(c);
}

static void test_verified_blob_is_stamped(void **state)
{
        struct kiln_error err = KILN_ERROR_INIT;
        struct layer_result r;
        struct layer_cache *c;
        char lay[512], p[512];
        bool hit;

        (void)state;
        build(true, &r, &hit);
        snprintf(p, sizeof(p), "%s/cache/verified/%s", root, oci_digest_hex(&r.digest));
        assert_int_equal(unlink(p), 0); /* as a cache from before stamps */
        snprintf(lay, sizeof(lay), "%s/out", root);
        snprintf(p, sizeof(p), "%s/out/blobs", root);
        assert_int_equal(kiln_mkdir_p(p, 0755, &err), 0);
        c = open_cache();
        assert_false(layer_cache_place_blob(c, &r, lay));
        assert_int_equal(layer_cache_verify_blob(c, &r, &err), 0);
        assert_true(layer_cache_place_blob(c, &r, lay));
        layer_cache_free(c);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(
                test_second_build_is_a_hit_only_after_the_index_is_older, setup, teardown),
            cmocka_unit_test_setup_teardown(test_changed_content_or_mode_is_a_miss, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_stamped_blob_is_linked_into_a_layout, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_blob_written_in_place_loses_its_stamp, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_verified_blob_is_stamped, setup, teardown),
            cmocka_unit_test_setup_teardown(test_damaged_index_and_entry_only_cost_a_rebuild, setup,
                                            teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
