/* memmem */
#define _GNU_SOURCE
/* Unit tests for layers/writer.c, layers/source.c (patterns, paths) and the
 * decompressing reader of layers/unpack_decompress.c. */
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

#include "source.h"
#include "unpack.h"
#include "writer.h"

struct mem_sink {
        struct oci_writer base;
        unsigned char *buf;
        size_t len, cap;
};

static int mem_write(struct oci_writer *w, const void *buf, size_t len, struct kiln_error *err)
{
        struct mem_sink *m = (struct mem_sink *)w;

        (void)err;
        if (m->len + len > m->cap) {
                m->cap = (m->len + len) * 2;
                m->buf = realloc(m->buf, m->cap);
                assert_non_null(m->buf);
        }
        memcpy(m->buf + m->len, buf, len);
        m->len += len;
        return 0;
}

static void mem_init(struct mem_sink *m)
{
        memset(m, 0, sizeof(*m));
        m->base.write = mem_write;
}

/* A layer with a few entries and `big` bytes of pseudo-random data. */
static void build(const struct layer_writer_opts *o, size_t big, int64_t src_mtime, int uid,
                  struct mem_sink *out, struct layer_result *res)
{
        struct kiln_error err = KILN_ERROR_INIT;
        struct layer_writer *w;
        struct archive_entry *e = archive_entry_new();
        unsigned char *data = malloc(big ? big : 1);
        uint32_t x = 12345;

        for (size_t i = 0; i < big; i++) {
                x = x * 1103515245u + 12345u;
                data[i] = (unsigned char)((x >> 16) % 7); /* compressible but not trivially */
        }
        mem_init(out);
        w = layer_writer_new(&out->base, o, &err);
        assert_non_null(w);
        archive_entry_set_pathname(e, "dir");
        archive_entry_set_filetype(e, AE_IFDIR);
        archive_entry_set_perm(e, 0755);
        archive_entry_set_mtime(e, src_mtime, 123);
        archive_entry_set_uid(e, (la_int64_t)uid);
        archive_entry_set_uname(e, uid ? "someone" : "root");
        assert_int_equal(layer_writer_add_header(w, e, &err), 0);
        archive_entry_clear(e);
        archive_entry_set_pathname(e, "dir/file");
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 04755);
        archive_entry_set_size(e, (la_int64_t)big);
        archive_entry_set_mtime(e, src_mtime, 0);
        archive_entry_set_atime(e, src_mtime + 5, 0);
        archive_entry_set_uid(e, (la_int64_t)uid);
        assert_int_equal(layer_writer_add_header(w, e, &err), 0);
        for (size_t off = 0; off < big; off += 70000) {
                size_t n = big - off < 70000 ? big - off : 70000;
                assert_int_equal(layer_writer_add_data(w, data + off, n, &err), 0);
        }
        archive_entry_clear(e);
        archive_entry_set_pathname(e, "dir/link");
        archive_entry_set_filetype(e, AE_IFLNK);
        archive_entry_set_perm(e, 0777);
        archive_entry_set_symlink(e, "file");
        assert_int_equal(layer_writer_add_header(w, e, &err), 0);
        assert_int_equal(layer_writer_finish(w, res, &err), 0);
        layer_writer_free(w);
        archive_entry_free(e);
        free(data);
}

static void check_thread_independent(enum oci_compression c)
{
        struct layer_writer_opts o;
        struct layer_result first, r;
        struct mem_sink m;

        assert_int_equal(layer_writer_opts_init(&o, NULL), 0);
        o.compression = c;
        o.threads = 1;
        build(&o, 5u << 20, 0, 0, &m, &first);
        free(m.buf);
        for (int t = 2; t <= 5; t++) {
                o.threads = t;
                build(&o, 5u << 20, 0, 0, &m, &r);
                free(m.buf);
                assert_string_equal(r.digest.str, first.digest.str);
                assert_string_equal(r.diff_id.str, first.diff_id.str);
        }
}

static void test_gzip_blob_is_the_same_for_any_thread_count(void **state)
{
        (void)state;
        check_thread_independent(OCI_COMPRESSION_GZIP);
}

static void test_zstd_blob_is_the_same_for_any_worker_count(void **state)
{
        (void)state;
        check_thread_independent(OCI_COMPRESSION_ZSTD);
}

static void test_entries_are_normalized(void **state)
{
        struct layer_writer_opts o;
        struct layer_result a, b;
        struct mem_sink ma, mb;

        (void)state;
        assert_int_equal(layer_writer_opts_init(&o, NULL), 0);
        o.compression = OCI_COMPRESSION_NONE;
        o.mtime = 0;
        build(&o, 1000, 1700000000, 1000, &ma, &a);
        build(&o, 1000, 5, 0, &mb, &b);
        assert_int_equal(ma.len, mb.len);
        assert_memory_equal(ma.buf, mb.buf, ma.len);
        assert_string_equal(a.diff_id.str, b.diff_id.str);
        /* uncompressed: the blob is the tar */
        assert_string_equal(a.digest.str, a.diff_id.str);
        assert_string_equal(a.media_type, OCI_MT_LAYER);
        /* no atime/ctime/uname records: the tar is plain ustar here */
        assert_null(memmem(ma.buf, ma.len, "atime", 5));
        assert_null(memmem(ma.buf, ma.len, "someone", 7));
        free(ma.buf);
        free(mb.buf);
}

static void test_gzip_header_is_deterministic_and_diffid_is_the_tar(void **state)
{
        struct layer_writer_opts o;
        struct layer_result r;
        struct mem_sink m;
        unsigned char *out = malloc(16u << 20);
        z_stream z = {0};
        struct oci_digest d;

        (void)state;
        assert_int_equal(layer_writer_opts_init(&o, NULL), 0);
        o.compression = OCI_COMPRESSION_GZIP;
        build(&o, 3u << 20, 0, 0, &m, &r);
        /* RFC 1952: ID1 ID2 CM FLG MTIME(4) XFL OS */
        assert_int_equal(m.buf[0], 0x1f);
        assert_int_equal(m.buf[3], 0);
        assert_int_equal(m.buf[4] | m.buf[5] | m.buf[6] | m.buf[7], 0);
        assert_int_equal(m.buf[9], 255);
        /* multi-member: inflate every member */
        size_t in = 0, outn = 0;
        while (in < m.len) {
                assert_int_equal(inflateInit2(&z, 31), Z_OK);
                z.next_in = m.buf + in;
                z.avail_in = (uInt)(m.len - in);
                z.next_out = out + outn;
                z.avail_out = (uInt)((16u << 20) - outn);
                assert_int_equal(inflate(&z, Z_FINISH), Z_STREAM_END);
                in = m.len - z.avail_in;
                outn = (16u << 20) - z.avail_out;
                inflateEnd(&z);
        }
        assert_int_equal((int64_t)outn, r.tar_size);
        oci_digest_of_buffer(out, outn, &d);
        assert_string_equal(d.str, r.diff_id.str);
        assert_int_equal(r.size, (int64_t)m.len);
        free(out);
        free(m.buf);
}

static void test_bad_levels_are_refused(void **state)
{
        struct layer_writer_opts o;
        struct kiln_error err = KILN_ERROR_INIT;
        struct mem_sink m;

        (void)state;
        mem_init(&m);
        assert_int_equal(layer_writer_opts_init(&o, NULL), 0);
        o.compression = OCI_COMPRESSION_GZIP;
        o.level = 13;
        assert_null(layer_writer_new(&m.base, &o, &err));
        assert_int_equal(err.code, KILN_E_USAGE);
        assert_string_equal(err.msg, "invalid gzip level 13: use 0 to 12");
        o.compression = OCI_COMPRESSION_ZSTD;
        o.level = 0;
        assert_null(layer_writer_new(&m.base, &o, &err));
        assert_int_equal(err.code, KILN_E_USAGE);
}

static void test_compression_names(void **state)
{
        struct kiln_error err = KILN_ERROR_INIT;
        enum oci_compression c;
        char id[64];

        (void)state;
        assert_int_equal(layer_compression_parse("zstd", &c, &err), 0);
        assert_int_equal(c, OCI_COMPRESSION_ZSTD);
        assert_int_equal(layer_compression_parse("lz4", &c, &err), -1);
        assert_string_equal(err.msg, "invalid compression 'lz4': use gzip, zstd or none");
        layer_compressor_id(OCI_COMPRESSION_ZSTD, -1, id, sizeof(id));
        assert_true(strncmp(id, "zstd-1.", 7) == 0 && id[strlen(id) - 1] == '3');
}

struct pat_case {
        const char *pattern;
        const char *path;
        bool excluded;
};

static void test_exclude_patterns(void **state)
{
        static const struct pat_case cases[] = {
            {"build", "build", true},
            {"build", "build/x.o", true},
            {"build", "src/build", false},
            {"/build", "build/a", true},
            {"*.pyc", "a.pyc", true},
            {"*.pyc", "src/a.pyc", false},
            {"**/*.pyc", "src/deep/a.pyc", true},
            {"**/*.pyc", "a.pyc", true},
            {"docs/*.md", "docs/a.md", true},
            {"docs/*.md", "docs/sub/a.md", false},
            {"a/**/z", "a/z", true},
            {"a/**/z", "a/b/c/z", true},
            {"a?c", "abc", true},
            {"[ab]x", "bx", true},
            {"./node_modules", "node_modules/x", true},
        };
        (void)state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                const char *p[] = {cases[i].pattern};
                if (layer_exclude_match(p, 1, cases[i].path) != cases[i].excluded)
                        fail_msg("pattern '%s' path '%s': expected %d", cases[i].pattern,
                                 cases[i].path, cases[i].excluded);
        }
        {
                const char *p[] = {"docs", "!docs/keep.md"};
                assert_true(layer_exclude_match(p, 2, "docs/a.md"));
                assert_false(layer_exclude_match(p, 2, "docs/keep.md"));
        }
}

/* A tree made under umask 077 with an odd mode or two, as a checkout or a
 * build step might leave it. */
static void make_mode_tree(char *dir, size_t len)
{
        char p[600];
        FILE *f;

        snprintf(dir, len, "/tmp/kiln-modes-XXXXXX");
        assert_non_null(mkdtemp(dir));
        snprintf(p, sizeof(p), "%s/bin", dir);
        assert_int_equal(mkdir(p, 0700), 0);
        snprintf(p, sizeof(p), "%s/bin/tool", dir);
        f = fopen(p, "w");
        assert_non_null(f);
        fclose(f);
        assert_int_equal(chmod(p, 04700), 0);
        snprintf(p, sizeof(p), "%s/data.txt", dir);
        f = fopen(p, "w");
        assert_non_null(f);
        fclose(f);
        assert_int_equal(chmod(p, 0600), 0);
        snprintf(p, sizeof(p), "%s/link", dir);
        assert_int_equal(symlink("data.txt", p), 0);
}

static void rm_mode_tree(const char *dir)
{
        static const char *const names[] = {"bin/tool", "data.txt", "link", "bin", ""};
        char p[600];

        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
                remove(p);
        }
}

static unsigned mode_of(const struct layer_source *s, const char *path)
{
        for (size_t i = 0; i < s->n; i++)
                if (!strcmp(s->entries[i].path, path))
                        return (unsigned)(s->entries[i].st.st_mode & 07777);
        fail_msg("no entry '%s'", path);
        return 0;
}

static void test_modes_follow_the_policy_not_the_umask(void **state)
{
        struct kiln_error err = KILN_ERROR_INIT;
        char dir[64];
        struct layer_source *s;

        (void)state;
        make_mode_tree(dir, sizeof(dir));
        s = layer_source_new(&err);
        assert_int_equal(layer_source_add_tree(s, dir, "/opt/t", NULL, 0, &err), 0);
        assert_int_equal(layer_source_finish(s, &err), 0);
        assert_int_equal(mode_of(s, "opt"), 0755);     /* a parent kiln adds */
        assert_int_equal(mode_of(s, "opt/t"), 0755);   /* the tree's root (0700 on disk) */
        assert_int_equal(mode_of(s, "opt/t/bin"), 0755);
        assert_int_equal(mode_of(s, "opt/t/bin/tool"), 0755); /* 04700: exec, no setuid */
        assert_int_equal(mode_of(s, "opt/t/data.txt"), 0644);
        assert_int_equal(mode_of(s, "opt/t/link"), 0777);
        layer_source_free(s);
        rm_mode_tree(dir);
}

static void test_mode_rules_and_keep_modes_give_exact_modes(void **state)
{
        struct kiln_error err = KILN_ERROR_INIT;
        char dir[64], file[80];
        struct layer_source *s;

        (void)state;
        make_mode_tree(dir, sizeof(dir));
        s = layer_source_new(&err);
        assert_int_equal(layer_source_add_mode_rule(s, "/opt/t", "bin/*", 04755, &err), 0);
        assert_int_equal(layer_source_add_mode_rule(s, "/opt/t", "*.txt", 0640, &err), 0);
        assert_int_equal(layer_source_add_mode_rule(s, "/opt/t", "*", 0700, &err), 0);
        assert_int_equal(layer_source_add_mode_rule(s, "/opt/t", "*", 0600, &err), 0);
        assert_int_equal(layer_source_add_mode_rule(s, "/opt/t", "data.txt", 0444, &err), 0);
        assert_int_equal(layer_source_add_tree(s, dir, "/opt/t", NULL, 0, &err), 0);
        snprintf(file, sizeof(file), "%s/data.txt", dir);
        assert_int_equal(layer_source_add_file(s, file, "/etc/x", 02711, &err), 0);
        assert_int_equal(layer_source_finish(s, &err), 0);
        /* the last matching rule wins; '*' crosses '/'; "." is the base */
        assert_int_equal(mode_of(s, "opt/t/bin/tool"), 0600);
        assert_int_equal(mode_of(s, "opt/t/data.txt"), 0444);
        assert_int_equal(mode_of(s, "opt/t"), 0755);
        assert_int_equal(mode_of(s, "opt/t/link"), 0777);
        assert_int_equal(mode_of(s, "etc/x"), 02711);
        assert_int_equal(mode_of(s, "opt"), 0755);
        assert_int_equal(layer_source_add_mode_rule(s, "/", "x", 010000, &err), -1);
        assert_string_equal(err.msg, "invalid mode '10000' for 'x'");
        layer_source_free(s);

        s = layer_source_new(&err);
        s->keep_modes = true;
        assert_int_equal(layer_source_add_tree(s, dir, "/opt/t", NULL, 0, &err), 0);
        assert_int_equal(layer_source_finish(s, &err), 0);
        assert_int_equal(mode_of(s, "opt/t/bin/tool"), 04700);
        assert_int_equal(mode_of(s, "opt/t/data.txt"), 0600);
        assert_int_equal(mode_of(s, "opt/t/bin"), 0700);
        assert_int_equal(mode_of(s, "opt"), 0755);
        layer_source_free(s);
        rm_mode_tree(dir);
}

static struct oci_reader *gz_of_zeros(size_t n)
{
        struct kiln_error err = KILN_ERROR_INIT;
        unsigned char *zeros = calloc(1, n), *out = malloc(n / 100 + 1024);
        z_stream z = {0};
        struct oci_reader *r;

        deflateInit2(&z, 9, Z_DEFLATED, 31, 9, Z_DEFAULT_STRATEGY);
        z.next_in = zeros;
        z.avail_in = (uInt)n;
        z.next_out = out;
        z.avail_out = (uInt)(n / 100 + 1024);
        assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
        r = oci_reader_from_buffer(out, z.total_out, &err);
        deflateEnd(&z);
        free(zeros);
        free(out);
        return r;
}

static void test_decompressed_size_is_capped(void **state)
{
        struct kiln_error err = KILN_ERROR_INIT;
        struct oci_reader *r;
        char buf[65536];
        ssize_t n;

        (void)state;
        r = layer_decompress_reader_new(gz_of_zeros(8u << 20), OCI_COMPRESSION_GZIP, 1u << 20,
                                        &err);
        assert_non_null(r);
        while ((n = oci_reader_read(r, buf, sizeof(buf), &err)) > 0)
                ;
        assert_int_equal(n, -1);
        assert_int_equal(err.code, KILN_E_LIMIT);
        oci_reader_free(r);
        /* under the cap it reads to the end */
        r = layer_decompress_reader_new(gz_of_zeros(8u << 20), OCI_COMPRESSION_GZIP, 9u << 20,
                                        &err);
        while ((n = oci_reader_read(r, buf, sizeof(buf), &err)) > 0)
                ;
        assert_int_equal(n, 0);
        oci_reader_free(r);
}

static void test_declared_compression_must_match(void **state)
{
        struct kiln_error err = KILN_ERROR_INIT;

        (void)state;
        assert_null(layer_decompress_reader_new(gz_of_zeros(1000), OCI_COMPRESSION_ZSTD, 0, &err));
        assert_int_equal(err.code, KILN_E_INVALID);
        assert_string_equal(err.msg, "layer media type says zstd but its bytes are gzip");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_gzip_blob_is_the_same_for_any_thread_count),
            cmocka_unit_test(test_zstd_blob_is_the_same_for_any_worker_count),
            cmocka_unit_test(test_entries_are_normalized),
            cmocka_unit_test(test_gzip_header_is_deterministic_and_diffid_is_the_tar),
            cmocka_unit_test(test_bad_levels_are_refused),
            cmocka_unit_test(test_compression_names),
            cmocka_unit_test(test_exclude_patterns),
            cmocka_unit_test(test_modes_follow_the_policy_not_the_umask),
            cmocka_unit_test(test_mode_rules_and_keep_modes_give_exact_modes),
            cmocka_unit_test(test_decompressed_size_is_capped),
            cmocka_unit_test(test_declared_compression_must_match),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
