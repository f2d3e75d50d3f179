#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "image.h"
#include "io.h"
#include "json.h"
#include "layout.h"
#include "util.h"

static char *make_tmpdir(void)
{
        const char *t = getenv("TMPDIR");
        char *d = kiln_strdupf("%s/kiln-unit-XXXXXX", t && *t ? t : "/tmp");
        assert_non_null(mkdtemp(d));
        return d;
}

static size_t count_files(const char *dir)
{
        char cmd[512];
        FILE *p;
        size_t n = 0;

        snprintf(cmd, sizeof(cmd), "find '%s' -type f | wc -l", dir);
        p = popen(cmd, "r");
        assert_non_null(p);
        assert_int_equal(fscanf(p, "%zu", &n), 1);
        pclose(p);
        return n;
}

static void test_blob_written_verified_and_read_back(void **state)
{
        char *dir = make_tmpdir();
        struct kiln_error err = KILN_ERROR_INIT;
        struct oci_layout *l = oci_layout_open(dir, true, &err);
        struct oci_digest d;
        char *buf;
        size_t len;
        bool have;

        (void)state;
        assert_non_null(l);
        assert_int_equal(oci_layout_put_blob_buffer(l, "abc", 3, &d, &err), 0);
        assert_string_equal(d.str,
                            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_int_equal(oci_layout_blob_read(l, &d, 3, 100, &buf, &len, &err), 0);
        assert_int_equal(len, 3);
        assert_memory_equal(buf, "abc", 3);
        free(buf);
        /* wrong size in the descriptor */
        assert_int_equal(oci_layout_blob_read(l, &d, 4, 100, &buf, &len, &err), -1);
        assert_int_equal(err.code, KILN_E_DIGEST);
        assert_int_equal(oci_layout_blob_check(l, &d, 3, &have, &err), 0);
        assert_true(have);
        oci_layout_free(l);
        kiln_rm_rf(dir);
        free(dir);
}

static void test_flipped_bytes_caught_and_blob_dropped(void **state)
{
        char *dir = make_tmpdir();
        struct kiln_error err = KILN_ERROR_INIT;
        struct oci_layout *l = oci_layout_open(dir, true, &err);
        struct oci_digest d;
        char *path, *buf;
        size_t len;
        FILE *f;
        bool have = true;

        (void)state;
        assert_int_equal(oci_layout_put_blob_buffer(l, "abc", 3, &d, &err), 0);
        path = oci_layout_blob_path(l, &d);
        chmod(path, 0644);
        f = fopen(path, "w");
        fputs("abd", f);
        fclose(f);
        assert_int_equal(oci_layout_blob_read(l, &d, 3, 100, &buf, &len, &err), -1);
        assert_int_equal(err.code, KILN_E_DIGEST);
        assert_non_null(strstr(err.msg, "does not match its digest"));
        /* a present blob of the right size is not trusted unhashed */
        assert_int_equal(oci_layout_blob_check(l, &d, 3, &have, &err), 0);
        assert_false(have);
        assert_int_equal(access(path, F_OK), -1);
        free(path);
        oci_layout_free(l);
        kiln_rm_rf(dir);
        free(dir);
}

static void test_writer_without_commit_leaves_nothing(void **state)
{
        char *dir = make_tmpdir();
        struct kiln_error err = KILN_ERROR_INIT;
        struct oci_layout *l = oci_layout_open(dir, true, &err);
        struct oci_writer *w = oci_layout_blob_writer_new(l, OCI_DIGEST_SHA256, &err);
        struct oci_digest want;
        size_t before;

        (void)state;
        before = 2; /* oci-layout, index.json */
        assert_non_null(w);
        assert_int_equal(oci_writer_write(w, "hello", 5, &err), 0);
        oci_writer_free(w);
        assert_int_equal(count_files(dir), before);
        /* a commit against the wrong digest fails and leaves nothing */
        w = oci_layout_blob_writer_new(l, OCI_DIGEST_SHA256, &err);
        assert_int_equal(oci_writer_write(w, "hello", 5, &err), 0);
        oci_digest_of_buffer("hellO", 5, &want);
        assert_int_equal(oci_layout_blob_writer_commit(w, &want, 5, NULL, NULL, &err), -1);
        assert_int_equal(err.code, KILN_E_DIGEST);
        oci_writer_free(w);
        assert_int_equal(count_files(dir), before);
        oci_layout_free(l);
        kiln_rm_rf(dir);
        free(dir);
}

static void test_symlinked_blob_refused(void **state)
{
        char *dir = make_tmpdir();
        struct kiln_error err = KILN_ERROR_INIT;
        struct oci_layout *l = oci_layout_open(dir, true, &err);
        struct oci_digest d;
        char *path, *buf;
        size_t len;

        (void)state;
        oci_digest_of_buffer("x", 1, &d);
        path = oci_layout_blob_path(l, &d);
        {
                char *sub = kiln_strdupf("%s/blobs/sha256", dir);
                kiln_mkdir_p(sub, 0755, NULL);
                free(sub);
        }
        assert_int_equal(symlink("/etc/hostname", path), 0);
        assert_int_equal(oci_layout_blob_read(l, &d, -1, 100, &buf, &len, &err), -1);
        assert_non_null(strstr(err.msg, "symbolic link"));
        free(path);
        oci_layout_free(l);
        kiln_rm_rf(dir);
        free(dir);
}

static void test_fifo_blob_and_index_refused_without_blocking(void **state)
{
        char *dir = make_tmpdir();
        struct kiln_error err = KILN_ERROR_INIT;
        struct oci_layout *l = oci_layout_open(dir, true, &err);
        struct oci_digest d;
        char *path, *index, *buf = NULL;
        size_t len;

        (void)state;
        assert_non_null(l);
        oci_digest_of_buffer("x", 1, &d);
        path = oci_layout_blob_path(l, &d);
        {
                char *sub = kiln_strdupf("%s/blobs/sha256", dir);
                kiln_mkdir_p(sub, 0755, NULL);
                free(sub);
        }
        /* opened for reading, a FIFO without a writer blocks forever */
        assert_int_equal(mkfifo(path, 0644), 0);
        assert_int_equal(oci_layout_blob_read(l, &d, -1, 100, &buf, &len, &err), -1);
        assert_int_equal(err.code, KILN_E_INVALID);
        assert_non_null(strstr(err.msg, "is not a regular file"));
        assert_non_null(strstr(err.msg, d.str));
        index = kiln_strdupf("%s/index.json", dir);
        assert_int_equal(unlink(index), 0);
        assert_int_equal(mkfifo(index, 0644), 0);
        kiln_error_clear(&err);
        assert_int_equal(oci_layout_read_index(l, &buf, &len, &err), -1);
        assert_non_null(strstr(err.msg, "index.json' is not a regular file"));
        free(index);
        free(path);
        oci_layout_free(l);
        kiln_rm_rf(dir);
        free(dir);
}

static void test_tags_replace_and_resolve(void **state)
{
        char *dir = make_tmpdir();
        struct kiln_error err = KILN_ERROR_INIT;
        struct oci_layout *l = oci_layout_open(dir, true, &err);
        struct oci_descriptor d = {.media_type = OCI_MT_MANIFEST, .size = 3};
        struct oci_index *x = NULL;
        const struct oci_descriptor *got;

        (void)state;
        oci_digest_of_buffer("abc", 3, &d.digest);
        assert_int_equal(oci_layout_tag(l, "v1", &d, &err), 0);
        assert_int_equal(oci_layout_tag(l, "v2", &d, &err), 0);
        oci_digest_of_buffer("abd", 3, &d.digest);
        assert_int_equal(oci_layout_tag(l, "v1", &d, &err), 0);
        assert_int_equal(oci_layout_resolve(l, "v1", &x, &got, &err), 0);
        assert_string_equal(got->digest.str, d.digest.str);
        assert_int_equal(x->n_manifests, 2);
        oci_index_free(x);
        assert_int_equal(oci_layout_resolve(l, "nope", &x, &got, &err), -1);
        assert_int_equal(err.code, KILN_E_NOT_FOUND);
        assert_int_equal(oci_layout_resolve(l, NULL, &x, &got, &err), -1);
        assert_non_null(strstr(err.msg, "holds 2 images"));
        assert_int_equal(oci_layout_tag(l, "../x", &d, &err), -1);
        assert_int_equal(oci_layout_untag(l, "v2", &err), 0);
        assert_int_equal(oci_layout_resolve(l, NULL, &x, &got, &err), 0);
        oci_index_free(x);
        oci_layout_free(l);
        kiln_rm_rf(dir);
        free(dir);
}

/* 8 writers x 25 rounds on one index.json: no tag may be lost. */
static void test_concurrent_taggers_lose_nothing(void **state)
{
        char *dir = make_tmpdir();
        struct kiln_error err = KILN_ERROR_INIT;
        struct oci_layout *l = oci_layout_open(dir, true, &err);
        struct oci_index *x = NULL;
        char *buf;
        size_t len;
        enum { WRITERS = 8, ROUNDS = 25 };

        (void)state;
        for (int w = 0; w < WRITERS; w++) {
                pid_t pid = fork();
                assert_true(pid >= 0);
                if (pid == 0) {
                        struct oci_layout *cl = oci_layout_open(dir, false, NULL);
                        for (int r = 0; r < ROUNDS; r++) {
                                struct oci_descriptor d = {.media_type = OCI_MT_MANIFEST, .size = 1};
                                char tag[32];
                                snprintf(tag, sizeof(tag), "w%d-r%d", w, r);
                                oci_digest_of_buffer(tag, strlen(tag), &d.digest);
                                if (oci_layout_tag(cl, tag, &d, NULL) < 0)
                                        _exit(1);
                        }
                        _exit(0);
                }
        }
        for (int w = 0; w < WRITERS; w++) {
                int st;
                wait(&st);
                assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        }
        assert_int_equal(oci_layout_read_index(l, &buf, &len, &err), 0);
        assert_int_equal(oci_index_parse(buf, len, NULL, &x, &err), 0);
        assert_int_equal(x->n_manifests, WRITERS * ROUNDS);
        oci_index_free(x);
        free(buf);
        oci_layout_free(l);
        kiln_rm_rf(dir);
        free(dir);
}

static void test_not_a_layout(void **state)
{
        char *dir = make_tmpdir();
        struct kiln_error err = KILN_ERROR_INIT;

        (void)state;
        assert_null(oci_layout_open(dir, false, &err));
        assert_non_null(strstr(err.msg, "missing oci-layout"));
        kiln_rm_rf(dir);
        free(dir);
}

static void test_verified_reader_stops_at_size_plus_one(void **state)
{
        struct kiln_error err = KILN_ERROR_INIT;
        struct oci_digest d;
        struct oci_reader *r;
        char buf[16];

        (void)state;
        oci_digest_of_buffer("abc", 3, &d);
        r = oci_verified_reader_new(oci_reader_from_buffer("abcdef", 6, NULL), &d, 3, &err);
        assert_int_equal(oci_reader_drain(r, &err), -1);
        assert_non_null(strstr(err.msg, "larger than"));
        oci_reader_free(r);
        r = oci_verified_reader_new(oci_reader_from_buffer("ab", 2, NULL), &d, 3, &err);
        assert_int_equal(oci_reader_drain(r, &err), -1);
        assert_non_null(strstr(err.msg, "truncated"));
        oci_reader_free(r);
        r = oci_verified_reader_new(oci_reader_from_buffer("abc", 3, NULL), &d, 3, &err);
        assert_int_equal(oci_reader_read(r, buf, sizeof(buf), &err), 3);
        assert_int_equal(oci_reader_read(r, buf, sizeof(buf), &err), 0);
        oci_reader_free(r);
}

static void test_verified_reader_is_not_stacked_on_itself(void **state)
{
        struct kiln_error err = KILN_ERROR_INIT;
        struct oci_digest d, other;
        struct oci_reader *inner, *r;

        (void)state;
        oci_digest_of_buffer("abc", 3, &d);
        oci_digest_of_buffer("xyz", 3, &other);
        inner = oci_verified_reader_new(oci_reader_from_buffer("abd", 3, NULL), &d, 3, &err);
        assert_true(oci_reader_verifies(inner, &d, 3));
        assert_false(oci_reader_verifies(inner, &d, 4));
        assert_false(oci_reader_verifies(inner, &other, 3));
        /* the same digest and size: the same reader, hashed once, still checked */
        r = oci_verified_reader_new(inner, &d, 3, &err);
        assert_ptr_equal(r, inner);
        assert_int_equal(oci_reader_drain(r, &err), -1);
        assert_int_equal(err.code, KILN_E_DIGEST);
        oci_reader_free(r);
        /* another size: wrapped */
        inner = oci_verified_reader_new(oci_reader_from_buffer("abc", 3, NULL), &d, 3, &err);
        r = oci_verified_reader_new(inner, &d, 2, &err);
        assert_ptr_not_equal(r, inner);
        assert_int_equal(oci_reader_drain(r, &err), -1);
        oci_reader_free(r);
        /* a plain reader is not a verifier */
        inner = oci_reader_from_buffer("abc", 3, NULL);
        assert_false(oci_reader_verifies(inner, &d, 3));
        oci_reader_free(inner);
}

/* A layout store fed a verified stream does not hash it again, and still
 * stores nothing when the stream does not match. */
static void test_store_takes_a_verified_stream_once(void **state)
{
        struct kiln_error err = KILN_ERROR_INIT;
        char *dir = make_tmpdir();
        struct oci_store *s = oci_layout_store_new(dir, NULL, true, &err);
        struct oci_descriptor d = {.media_type = "application/octet-stream", .size = 6};
        struct oci_reader *r;
        bool have = true;

        (void)state;
        assert_non_null(s);
        oci_digest_of_buffer("abcdef", 6, &d.digest);
        r = oci_verified_reader_new(oci_reader_from_buffer("abcdeX", 6, NULL), &d.digest, 6, &err);
        assert_int_equal(s->ops->put_blob(s, &d, r, &err), -1);
        assert_int_equal(err.code, KILN_E_DIGEST);
        assert_int_equal(s->ops->has_blob(s, &d, &have, &err), 0);
        assert_false(have);
        assert_int_equal(count_files(dir), 2); /* oci-layout, index.json: no temp file */
        r = oci_verified_reader_new(oci_reader_from_buffer("abcdef", 6, NULL), &d.digest, 6, &err);
        assert_int_equal(s->ops->put_blob(s, &d, r, &err), 0);
        assert_int_equal(s->ops->has_blob(s, &d, &have, &err), 0);
        assert_true(have);
        oci_store_free(s);
        kiln_rm_rf(dir);
        free(dir);
}

static void test_blob_reader_reopens_from_the_start(void **state)
{
        char *dir = make_tmpdir();
        struct kiln_error err = KILN_ERROR_INIT;
        struct oci_layout *l = oci_layout_open(dir, true, &err);
        struct oci_reader *r, *again;
        struct oci_digest d;
        char buf[16];
        int fds[2];

        (void)state;
        assert_int_equal(oci_layout_put_blob_buffer(l, "abcdef", 6, &d, &err), 0);
        r = oci_layout_blob_open(l, &d, 6, &err);
        assert_non_null(r);
        assert_int_equal(oci_reader_read(r, buf, 4, &err), 4);
        /* a consumed stream, read again: the same bytes from the start, verified */
        again = oci_reader_reopen(r, &err);
        assert_non_null(again);
        assert_int_equal(oci_reader_read(again, buf, sizeof(buf), &err), 6);
        assert_memory_equal(buf, "abcdef", 6);
        assert_int_equal(oci_reader_read(again, buf, sizeof(buf), &err), 0);
        /* the first one goes on where it was */
        assert_int_equal(oci_reader_read(r, buf, sizeof(buf), &err), 2);
        assert_memory_equal(buf, "ef", 2);
        oci_reader_free(again);
        oci_reader_free(r);
        /* a pipe cannot be read twice */
        assert_int_equal(pipe(fds), 0);
        r = oci_reader_from_fd(fds[0], true, &err);
        assert_null(oci_reader_reopen(r, &err));
        assert_int_equal(err.code, KILN_E_UNSUPPORTED);
        oci_reader_free(r);
        close(fds[1]);
        oci_layout_free(l);
        kiln_rm_rf(dir);
        free(dir);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_blob_written_verified_and_read_back),
                cmocka_unit_test(test_flipped_bytes_caught_and_blob_dropped),
                cmocka_unit_test(test_writer_without_commit_leaves_nothing),
                cmocka_unit_test(test_symlinked_blob_refused),
                cmocka_unit_test(test_fifo_blob_and_index_refused_without_blocking),
                cmocka_unit_test(test_tags_replace_and_resolve),
                cmocka_unit_test(test_concurrent_taggers_lose_nothing),
                cmocka_unit_test(test_not_a_layout),
                cmocka_unit_test(test_verified_reader_stops_at_size_plus_one),
                cmocka_unit_test(test_verified_reader_is_not_stacked_on_itself),
                cmocka_unit_test(test_store_takes_a_verified_stream_once),
                cmocka_unit_test(test_blob_reader_reopens_from_the_start),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
