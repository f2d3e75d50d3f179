/* Unit tests for layers/zip.c (members read in place) and the entries of a
 * layer_source whose data a reader gives (layers/source.c). */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <zlib.h>

#include "io.h"
#include "source.h"
#include "util.h"
#include "writer.h"
#include "zip.h"

/* ---- a zip written by hand ---- */

struct zb {
        unsigned char *out, *cd;
        size_t len, cd_len, n;
};

static void put(unsigned char **b, size_t *len, const void *p, size_t n)
{
        *b = realloc(*b, *len + n + 1);
        assert_non_null(*b);
        memcpy(*b + *len, p, n);
        *len += n;
}

static void put16(unsigned char **b, size_t *len, unsigned v)
{
        unsigned char x[2] = {(unsigned char)v, (unsigned char)(v >> 8)};
        put(b, len, x, 2);
}

static void put32(unsigned char **b, size_t *len, uint32_t v)
{
        put16(b, len, v & 0xffff);
        put16(b, len, v >> 16);
}

static void put64(unsigned char **b, size_t *len, uint64_t v)
{
        put32(b, len, (uint32_t)v);
        put32(b, len, (uint32_t)(v >> 32));
}

#define DEFLATE 1u
#define ZIP64 2u

/* crc_delta, usize_delta: a central directory record that lies */
static void zb_add(struct zb *z, const char *name, const void *data, size_t len, unsigned opts,
                   uint32_t crc_delta, int64_t usize_delta)
{
        unsigned char *comp = NULL;
        size_t clen = len, nlen = strlen(name);
        uint32_t crc = (uint32_t)crc32(0, data, (uInt)len) + crc_delta;
        uint64_t off = z->len, usize = (uint64_t)((int64_t)len + usize_delta);

        if (opts & DEFLATE) {
                z_stream s = {0};
                comp = malloc(len + 1024);
                assert_int_equal(deflateInit2(&s, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
                s.next_in = (unsigned char *)(uintptr_t)data;
                s.avail_in = (uInt)len;
                s.next_out = comp;
                s.avail_out = (uInt)(len + 1024);
                assert_int_equal(deflate(&s, Z_FINISH), Z_STREAM_END);
                clen = s.total_out;
                deflateEnd(&s);
        }
        put32(&z->out, &z->len, 0x04034b50);
        put16(&z->out, &z->len, 20);
        put16(&z->out, &z->len, 0);
        put16(&z->out, &z->len, opts & DEFLATE ? 8 : 0);
        put32(&z->out, &z->len, 0);
        put32(&z->out, &z->len, crc);
        put32(&z->out, &z->len, (uint32_t)clen);
        put32(&z->out, &z->len, (uint32_t)len);
        put16(&z->out, &z->len, (unsigned)nlen);
        put16(&z->out, &z->len, 0);
        put(&z->out, &z->len, name, nlen);
        put(&z->out, &z->len, comp ? comp : data, clen);
        put32(&z->cd, &z->cd_len, 0x02014b50);
        put16(&z->cd, &z->cd_len, 3u << 8 | 45);
        put16(&z->cd, &z->cd_len, 45);
        put16(&z->cd, &z->cd_len, 0);
        put16(&z->cd, &z->cd_len, opts & DEFLATE ? 8 : 0);
        put32(&z->cd, &z->cd_len, 0);
        put32(&z->cd, &z->cd_len, crc);
        put32(&z->cd, &z->cd_len, opts & ZIP64 ? 0xffffffffu : (uint32_t)clen);
        put32(&z->cd, &z->cd_len, opts & ZIP64 ? 0xffffffffu : (uint32_t)usize);
        put16(&z->cd, &z->cd_len, (unsigned)nlen);
        put16(&z->cd, &z->cd_len, opts & ZIP64 ? 32 : 0);
        put16(&z->cd, &z->cd_len, 0);
        put16(&z->cd, &z->cd_len, 0);
        put16(&z->cd, &z->cd_len, 0);
        put32(&z->cd, &z->cd_len, 0100644u << 16);
        put32(&z->cd, &z->cd_len, opts & ZIP64 ? 0xffffffffu : (uint32_t)off);
        put(&z->cd, &z->cd_len, name, nlen);
        if (opts & ZIP64) {
                put16(&z->cd, &z->cd_len, 1);
                put16(&z->cd, &z->cd_len, 24);
                put64(&z->cd, &z->cd_len, usize);
                put64(&z->cd, &z->cd_len, clen);
                put64(&z->cd, &z->cd_len, off);
                put16(&z->cd, &z->cd_len, 0xcafe); /* another field after it */
                put16(&z->cd, &z->cd_len, 0);
        }
        z->n++;
        free(comp);
}

/* Writes the zip to a new file (prefix: bytes before it) and returns its path. */
static char *zb_finish(struct zb *z, bool zip64_end, const char *prefix)
{
        char *path = strdup("/tmp/kiln-zip-test-XXXXXX");
        uint64_t cd_off = z->len;
        unsigned char *all = NULL;
        size_t len = 0;
        int fd;

        put(&z->out, &z->len, z->cd, z->cd_len);
        if (zip64_end) {
                uint64_t at = z->len;
                put32(&z->out, &z->len, 0x06064b50);
                put64(&z->out, &z->len, 44);
                put16(&z->out, &z->len, 45);
                put16(&z->out, &z->len, 45);
                put32(&z->out, &z->len, 0);
                put32(&z->out, &z->len, 0);
                put64(&z->out, &z->len, z->n);
                put64(&z->out, &z->len, z->n);
                put64(&z->out, &z->len, z->cd_len);
                put64(&z->out, &z->len, cd_off);
                put32(&z->out, &z->len, 0x07064b50);
                put32(&z->out, &z->len, 0);
                put64(&z->out, &z->len, at);
                put32(&z->out, &z->len, 1);
        }
        put32(&z->out, &z->len, 0x06054b50);
        put16(&z->out, &z->len, 0);
        put16(&z->out, &z->len, 0);
        put16(&z->out, &z->len, zip64_end ? 0xffff : (unsigned)z->n);
        put16(&z->out, &z->len, zip64_end ? 0xffff : (unsigned)z->n);
        put32(&z->out, &z->len, zip64_end ? 0xffffffffu : (uint32_t)z->cd_len);
        put32(&z->out, &z->len, zip64_end ? 0xffffffffu : (uint32_t)cd_off);
        put16(&z->out, &z->len, 0);
        if (prefix)
                put(&all, &len, prefix, strlen(prefix));
        put(&all, &len, z->out, z->len);
        assert_non_null(path);
        fd = mkstemp(path);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, all, len), (ssize_t)len);
        close(fd);
        free(all);
        free(z->out);
        free(z->cd);
        memset(z, 0, sizeof(*z));
        return path;
}

/* Reads the member name of the zip at path whole, in reads of chunk bytes;
 * -1 with err when the zip or the member fails. */
static int read_member(const char *path, const char *name, size_t chunk, unsigned char **ret,
                       size_t *ret_len, struct kiln_error *err)
{
        struct layer_zip *z = layer_zip_open(path, err);
        struct layer_zip_member *m;
        struct oci_reader *r = NULL;
        unsigned char *buf = NULL;
        size_t len = 0;
        int rc = -1;

        if (!z)
                return -1;
        m = layer_zip_find(z, name);
        if (!m) {
                kiln_error_set(err, KILN_E_NOT_FOUND, "no single '%s'", name);
                goto out;
        }
        if (layer_zip_locate(z, m, err) < 0 || !(r = layer_zip_reader(z->fd, path, m, err)))
                goto out;
        for (;;) {
                ssize_t n;
                buf = realloc(buf, len + chunk);
                assert_non_null(buf);
                n = oci_reader_read(r, buf + len, chunk, err);
                if (n < 0)
                        goto out;
                if (n == 0)
                        break;
                len += (size_t)n;
        }
        *ret = steal_ptr(&buf);
        *ret_len = len;
        rc = 0;
out:
        free(buf);
        oci_reader_free(r);
        layer_zip_free(z);
        return rc;
}

static unsigned char *pattern(size_t n)
{
        unsigned char *p = malloc(n);
        uint32_t x = 7;

        assert_non_null(p);
        for (size_t i = 0; i < n; i++) {
                x = x * 1103515245u + 12345u;
                p[i] = (unsigned char)(i % 64 < 48 ? 'a' + (x >> 24) % 4 : x >> 24);
        }
        return p;
}

static void test_zip_reads_stored_and_deflated_members(void **state)
{
        struct kiln_error err = KILN_ERROR_INIT;
        struct zb z = {0};
        size_t big = 3u << 20, len;
        unsigned char *data = pattern(big), *got;
        char *path;

        (void)state;
        zb_add(&z, "pkg/stored.bin", data, 1000, 0, 0, 0);
        zb_add(&z, "pkg/big.bin", data, big, DEFLATE, 0, 0);
        zb_add(&z, "pkg/empty", "", 0, DEFLATE, 0, 0);
        zb_add(&z, "pkg/none", "", 0, 0, 0, 0);
        path = zb_finish(&z, false, NULL);
        assert_int_equal(read_member(path, "pkg/stored.bin", 7, &got, &len, &err), 0);
        assert_int_equal(len, 1000);
        assert_memory_equal(got, data, 1000);
        free(got);
        /* larger than one read of the file, in odd pieces */
        assert_int_equal(read_member(path, "pkg/big.bin", 100003, &got, &len, &err), 0);
        assert_int_equal(len, big);
        assert_memory_equal(got, data, big);
        free(got);
        assert_int_equal(read_member(path, "pkg/empty", 10, &got, &len, &err), 0);
        assert_int_equal(len, 0);
        free(got);
        assert_int_equal(read_member(path, "pkg/none", 10, &got, &len, &err), 0);
        assert_int_equal(len, 0);
        free(got);
        assert_int_equal(read_member(path, "pkg/absent", 10, &got, &len, &err), -1);
        unlink(path);
        free(path);
        free(data);
}

static void test_zip64_fields_and_end_records(void **state)
{
        struct kiln_error err = KILN_ERROR_INIT;
        struct zb z = {0};
        unsigned char *data = pattern(5000), *got;
        size_t len;
        char *path;

        (void)state;
        zb_add(&z, "a", data, 10, 0, 0, 0);
        zb_add(&z, "b", data, 5000, DEFLATE | ZIP64, 0, 0);
        path = zb_finish(&z, true, NULL);
        assert_int_equal(read_member(path, "b", 4096, &got, &len, &err), 0);
        assert_int_equal(len, 5000);
        assert_memory_equal(got, data, 5000);
        free(got);
        unlink(path);
        free(path);
        free(data);
}

/* A member that does not match its record fails at its end, naming it. */
static void test_zip_reader_checks_what_the_record_says(void **state)
{
        static const struct {
                unsigned opts;
                uint32_t crc_delta;
                int64_t usize_delta;
                const char *msg;
        } cases[] = {
            {0, 1, 0, "cannot read 'm' in '%s': bad CRC"},
            {DEFLATE, 1, 0, "cannot read 'm' in '%s': bad CRC"},
            {0, 0, 1, "cannot read 'm' in '%s': uncompressed data is wrong size"},
            {DEFLATE, 0, 1, "cannot read 'm' in '%s': uncompressed data is wrong size"},
            {DEFLATE, 0, -1, "cannot read 'm' in '%s': uncompressed data is wrong size"},
        };
        unsigned char *data = pattern(70000);

        (void)state;
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                struct kiln_error err = KILN_ERROR_INIT;
                struct zb z = {0};
                unsigned char *got = NULL;
                char want[512];
                size_t len;
                char *path;

                zb_add(&z, "m", data, 70000, cases[i].opts, cases[i].crc_delta,
                       cases[i].usize_delta);
                path = zb_finish(&z, false, NULL);
                assert_int_equal(read_member(path, "m", 65536, &got, &len, &err), -1);
                snprintf(want, sizeof(want), cases[i].msg, path);
                assert_string_equal(err.msg, want);
                unlink(path);
                free(path);
        }
        free(data);
}

static void test_zip_refuses_what_it_does_not_read(void **state)
{
        struct kiln_error err = KILN_ERROR_INIT;
        struct zb z = {0};
        struct layer_zip *zip;
        char *path;
        int fd;

        (void)state;
        /* data before the first member: the offsets would not be the file's */
        zb_add(&z, "a", "x", 1, 0, 0, 0);
        path = zb_finish(&z, false, "#!/bin/sh\n");
        assert_null(layer_zip_open(path, &err));
        assert_non_null(strstr(err.msg, "the central directory is not where the end record says"));
        unlink(path);
        free(path);
        /* two members of one name: neither is found */
        zb_add(&z, "a", "x", 1, 0, 0, 0);
        zb_add(&z, "a", "y", 1, 0, 0, 0);
        zb_add(&z, "b", "z", 1, 0, 0, 0);
        path = zb_finish(&z, false, NULL);
        zip = layer_zip_open(path, &err);
        assert_non_null(zip);
        assert_null(layer_zip_find(zip, "a"));
        assert_non_null(layer_zip_find(zip, "b"));
        layer_zip_free(zip);
        unlink(path);
        free(path);
        /* a local header that names another file */
        zb_add(&z, "a", "x", 1, 0, 0, 0);
        zb_add(&z, "b", "z", 1, 0, 0, 0);
        path = zb_finish(&z, false, NULL);
        fd = open(path, O_WRONLY);
        assert_int_equal(pwrite(fd, "c", 1, 30), 1);
        close(fd);
        zip = layer_zip_open(path, &err);
        assert_non_null(zip);
        assert_int_equal(layer_zip_locate(zip, layer_zip_find(zip, "b"), &err), 0);
        assert_int_equal(layer_zip_locate(zip, layer_zip_find(zip, "a"), &err), -1);
        assert_non_null(strstr(err.msg, "the local header of 'a' does not match"));
        layer_zip_free(zip);
        unlink(path);
        free(path);
        /* not a zip */
        path = strdup("/tmp/kiln-zip-test-XXXXXX");
        fd = mkstemp(path);
        assert_int_equal(write(fd, "not a zip at all, just text\n", 28), 28);
        close(fd);
        assert_null(layer_zip_open(path, &err));
        assert_non_null(strstr(err.msg, "no end record"));
        unlink(path);
        free(path);
}

/* ---- a layer_source whose data readers give ---- */

static struct oci_reader *open_buffer(void *ctx, const void *item, struct kiln_error *err)
{
        (void)ctx;
        return oci_reader_from_buffer(item, strlen(item), err);
}

/* The layer's bytes go nowhere: its digests say what they were. */
static int discard(struct oci_writer *w, const void *buf, size_t len, struct kiln_error *err)
{
        (void)w;
        (void)buf;
        (void)len;
        (void)err;
        return 0;
}

static struct oci_writer sink = {.write = discard};

static void write_layer(const struct layer_source *s, struct layer_result *res)
{
        struct kiln_error err = KILN_ERROR_INIT;
        struct layer_writer_opts o;
        struct layer_writer *w;

        layer_writer_opts_init(&o, NULL);
        o.compression = OCI_COMPRESSION_NONE;
        w = layer_writer_new(&sink, &o, &err);
        assert_non_null(w);
        assert_int_equal(layer_source_write(s, w, NULL, &err), 0);
        assert_int_equal(layer_writer_finish(w, res, &err), 0);
        layer_writer_free(w);
}

static void write_host_file(const char *root, const char *rel, const char *data, mode_t mode)
{
        char path[512], *slash;
        int fd;

        snprintf(path, sizeof(path), "%s/%s", root, rel);
        for (slash = strchr(path + strlen(root) + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
                *slash = '\0';
                mkdir(path, 0700); /* the policy makes it 0755 in the layer */
                *slash = '/';
        }
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, data, strlen(data)), (ssize_t)strlen(data));
        fchmod(fd, mode);
        close(fd);
}

/* The same files from readers and from a directory tree: the same layer,
 * parent directories and order included. */
static void test_reader_entries_write_like_host_files(void **state)
{
        static const struct {
                const char *path, *data;
                mode_t mode;
        } files[] = {
            {"usr/local/bin/tool", "#!/bin/sh\n", 0755},
            {"usr/local/lib/python3.11/site-packages/pkg/__init__.py", "", 0644},
            {"usr/local/lib/python3.11/site-packages/pkg-1.0.dist-info/RECORD", "r\n", 0644},
            {"usr/local/lib/python3.11/site-packages/pkg/sub/deep.py", "D = 1\n", 0600},
            {"usr/local/lib/python3.11/site-packages/pkg.pth", "/x\n", 0640},
            {"usr/local/share/x", "x", 0700},
        };
        struct kiln_error err = KILN_ERROR_INIT;
        struct layer_source_opener op = {open_buffer, NULL};
        struct layer_source *a = layer_source_new(&err), *b = layer_source_new(&err);
        struct layer_result ra, rb;
        char root[] = "/tmp/kiln-zip-tree-XXXXXX";

        (void)state;
        assert_non_null(mkdtemp(root));
        for (size_t i = ARRAY_SIZE(files); i-- > 0;) {
                assert_int_equal(layer_source_add_reader(a, files[i].path, files[i].mode,
                                                         (int64_t)strlen(files[i].data), &op,
                                                         files[i].data, &err),
                                 0);
                write_host_file(root, files[i].path, files[i].data, files[i].mode);
        }
        assert_int_equal(layer_source_finish(a, &err), 0);
        assert_int_equal(layer_source_add_tree(b, root, "/", NULL, 0, &err), 0);
        assert_int_equal(layer_source_finish(b, &err), 0);
        assert_int_equal(a->n, b->n);
        write_layer(a, &ra);
        write_layer(b, &rb);
        assert_string_equal(ra.diff_id.str, rb.diff_id.str);
        assert_int_equal(ra.tar_size, rb.tar_size);
        layer_source_free(a);
        layer_source_free(b);
        kiln_rm_rf(root);
}

/* A reader that gives fewer bytes than the entry's size fails the entry. */
static void test_reader_entry_of_the_wrong_size_fails(void **state)
{
        struct kiln_error err = KILN_ERROR_INIT;
        struct layer_source_opener op = {open_buffer, NULL};
        struct layer_source *s = layer_source_new(&err);
        struct layer_writer_opts o;
        struct layer_writer *w;

        (void)state;
        assert_int_equal(layer_source_add_reader(s, "/a/b", 0644, 10, &op, "short", &err), 0);
        assert_int_equal(layer_source_finish(s, &err), 0);
        layer_writer_opts_init(&o, NULL);
        w = layer_writer_new(&sink, &o, &err);
        assert_int_equal(layer_source_write(s, w, NULL, &err), -1);
        assert_string_equal(err.msg, "file 'a/b' shrank while the layer was written");
        layer_writer_free(w);
        layer_source_free(s);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_zip_reads_stored_and_deflated_members),
            cmocka_unit_test(test_zip64_fields_and_end_records),
            cmocka_unit_test(test_zip_reader_checks_what_the_record_says),
            cmocka_unit_test(test_zip_refuses_what_it_does_not_read),
            cmocka_unit_test(test_reader_entries_write_like_host_files),
            cmocka_unit_test(test_reader_entry_of_the_wrong_size_fails),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
