/* Unit tests for sandbox/rootfs.c: a layer unpacked while it is written
 * (the tee) is the directory sandbox_rootfs_get would make from its blob,
 * is found there without opening the blob, and leaves nothing behind when
 * it fails or is dropped. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cmocka.h>

#include "cache.h"
#include "digest.h"
#include "io.h"
#include "rootfs.h"
#include "source.h"
#include "util.h"
#include "writer.h"

static char root[256];

static int setup(void **state)
{
        (void)state;
        snprintf(root, sizeof(root), "/tmp/kiln-rootfs-test-XXXXXX");
        assert_non_null(mkdtemp(root));
        return 0;
}

static int teardown(void **state)
{
        (void)state;
        kiln_rm_rf(root);
        return 0;
}

static void path_of(char *buf, size_t len, const char *rel)
{
        snprintf(buf, len, "%s/%s", root, rel);
}

static void put_bytes(const char *rel, const void *data, size_t n, mode_t mode)
{
        char p[1024], *dir;
        int fd;

        path_of(p, sizeof(p), rel);
        dir = kiln_dirname(p);
        assert_int_equal(kiln_mkdir_p(dir, 0755, NULL), 0);
        free(dir);
        fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, data, n), (ssize_t)n);
        close(fd);
        assert_int_equal(chmod(p, mode), 0);
}

static void put(const char *rel, const char *data, mode_t mode)
{
        put_bytes(rel, data, strlen(data), mode);
}

/* A tree with what a layer holds: directories of several modes, files
 * (empty, executable, setuid, larger than the tee's buffer several times
 * over), symlinks (relative, absolute, dangling), a hardlink and, where
 * the kernel lets us make one, an overlay whiteout and an opaque
 * directory.  Returns whether the whiteouts are there. */
static bool make_tree(const char *rel)
{
        char p[1024], q[1024], name[256];
        size_t big = 5u << 20;
        unsigned char *b = malloc(big);
        uint32_t x = 12345;
        bool whiteouts;

        assert_non_null(b);
        for (size_t i = 0; i < big; i++) {
                x = x * 1103515245u + 12345u;
                b[i] = (unsigned char)(x >> 16);
        }
        snprintf(name, sizeof(name), "%s/usr/lib/big.so", rel);
        put_bytes(name, b, big, 0644);
        free(b);
        snprintf(name, sizeof(name), "%s/usr/bin/tool", rel);
        put(name, "#!/bin/sh\necho tool\n", 0755);
        snprintf(name, sizeof(name), "%s/usr/bin/su", rel);
        put(name, "setuid\n", 04755);
        snprintf(name, sizeof(name), "%s/etc/empty", rel);
        put(name, "", 0600);
        snprintf(name, sizeof(name), "%s/etc/secret/key", rel);
        put(name, "k\n", 0400);
        snprintf(name, sizeof(name), "%s/etc/secret", rel);
        path_of(p, sizeof(p), name);
        assert_int_equal(chmod(p, 0700), 0);
        snprintf(name, sizeof(name), "%s/usr/lib/libx.so.1", rel);
        path_of(p, sizeof(p), name);
        assert_int_equal(symlink("big.so", p), 0);
        snprintf(name, sizeof(name), "%s/usr/lib/abs", rel);
        path_of(p, sizeof(p), name);
        assert_int_equal(symlink("/usr/bin/tool", p), 0);
        snprintf(name, sizeof(name), "%s/usr/lib/dangling", rel);
        path_of(p, sizeof(p), name);
        assert_int_equal(symlink("../nowhere", p), 0);
        snprintf(name, sizeof(name), "%s/usr/bin/tool", rel);
        path_of(p, sizeof(p), name);
        snprintf(name, sizeof(name), "%s/usr/bin/tool-again", rel);
        path_of(q, sizeof(q), name);
        assert_int_equal(link(p, q), 0);
        snprintf(name, sizeof(name), "%s/srv/data/.keep", rel);
        put(name, "", 0644);
        snprintf(name, sizeof(name), "%s/srv/gone", rel);
        path_of(p, sizeof(p), name);
        whiteouts = mknod(p, S_IFCHR | 0000, makedev(0, 0)) == 0;
        if (whiteouts) {
                snprintf(name, sizeof(name), "%s/srv/data", rel);
                path_of(p, sizeof(p), name);
                whiteouts = setxattr(p, "user.overlay.opaque", "y", 1, 0) == 0;
        }
        return whiteouts;
}

/* ---- a walk of a tree: one line per entry, everything but the times of
 * directories (which moved as their entries were made) ---- */

struct walk {
        char *out;
        size_t len, cap;
        struct {
                ino_t ino;
                char path[512];
        } seen[64];
        size_t n_seen;
};

static void walk_add(struct walk *w, const char *line)
{
        size_t n = strlen(line);

        if (w->len + n + 1 > w->cap) {
                w->cap = (w->len + n + 1) * 2;
                w->out = realloc(w->out, w->cap);
                assert_non_null(w->out);
        }
        memcpy(w->out + w->len, line, n + 1);
        w->len += n;
}

static void file_digest(const char *p, char *hex, size_t len)
{
        struct kiln_error err = KILN_ERROR_INIT;
        struct oci_hasher h;
        struct oci_digest d;
        char buf[65536];
        ssize_t n;
        int fd = open(p, O_RDONLY);

        assert_true(fd >= 0);
        assert_int_equal(oci_hasher_init(&h, OCI_DIGEST_SHA256, &err), 0);
        while ((n = read(fd, buf, sizeof(buf))) > 0)
                oci_hasher_update(&h, buf, (size_t)n);
        close(fd);
        oci_hasher_final(&h, &d);
        oci_hasher_release(&h);
        snprintf(hex, len, "%s", d.str);
}

static void walk_dir(struct walk *w, const char *top, const char *rel)
{
        char p[1024], line[2048], extra[700], xa[256];
        struct dirent **names;
        struct stat st;
        int n;

        snprintf(p, sizeof(p), "%s%s%s", top, rel[0] ? "/" : "", rel);
        n = scandir(p, &names, NULL, alphasort);
        assert_true(n >= 0);
        for (int i = 0; i < n; i++) {
                char sub[512];
                ssize_t xl;
                if (!strcmp(names[i]->d_name, ".") || !strcmp(names[i]->d_name, "..")) {
                        free(names[i]);
                        continue;
                }
                snprintf(sub, sizeof(sub), "%s%s%s", rel, rel[0] ? "/" : "", names[i]->d_name);
                free(names[i]);
                snprintf(p, sizeof(p), "%s/%s", top, sub);
                assert_int_equal(lstat(p, &st), 0);
                extra[0] = '\0';
                if (S_ISREG(st.st_mode)) {
                        char hex[OCI_DIGEST_MAX];
                        file_digest(p, hex, sizeof(hex));
                        snprintf(extra, sizeof(extra), "%s mtime %lld", hex,
                                 (long long)st.st_mtime);
                        for (size_t k = 0; k < w->n_seen; k++)
                                if (w->seen[k].ino == st.st_ino)
                                        snprintf(extra, sizeof(extra), "link to %s",
                                                 w->seen[k].path);
                        if (st.st_nlink > 1 && w->n_seen < 64) {
                                w->seen[w->n_seen].ino = st.st_ino;
                                snprintf(w->seen[w->n_seen].path, sizeof(w->seen[0].path), "%s",
                                         sub);
                                w->n_seen++;
                        }
                } else if (S_ISLNK(st.st_mode)) {
                        char t[512];
                        ssize_t tl = readlink(p, t, sizeof(t) - 1);
                        assert_true(tl >= 0);
                        t[tl] = '\0';
                        snprintf(extra, sizeof(extra), "-> %s", t);
                } else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
                        snprintf(extra, sizeof(extra), "dev %u:%u", major(st.st_rdev),
                                 minor(st.st_rdev));
                }
                xl = llistxattr(p, xa, sizeof(xa) - 1);
                for (ssize_t k = 0; k < xl; k++)
                        if (xa[k] == '\0')
                                xa[k] = ',';
                xa[xl > 0 ? xl : 0] = '\0';
                snprintf(line, sizeof(line), "%s %o size %lld %s xattrs %s\n", sub,
                         (unsigned)st.st_mode, S_ISDIR(st.st_mode) ? 0ll : (long long)st.st_size,
                         extra, xa);
                walk_add(w, line);
                if (S_ISDIR(st.st_mode))
                        walk_dir(w, top, sub);
        }
        free(names);
}

static char *walk(const char *top)
{
        struct walk w = {0};
        struct stat st;
        char line[64];

        assert_int_equal(lstat(top, &st), 0);
        snprintf(line, sizeof(line), ". %o\n", (unsigned)st.st_mode);
        walk_add(&w, line);
        walk_dir(&w, top, "");
        return w.out;
}

/* ---- the layer ---- */

struct opens {
        struct layer_cache *cache;
        const struct layer_result *res;
        int n;
};

static struct oci_reader *open_counted(void *ctx, struct kiln_error *err)
{
        struct opens *o = ctx;

        o->n++;
        return layer_cache_open_blob(o->cache, o->res, err);
}

static struct layer_source *tree_source(const char *rel, bool whiteouts)
{
        struct kiln_error err = KILN_ERROR_INIT;
        struct layer_source *s = layer_source_new(&err);
        char p[1024];

        path_of(p, sizeof(p), rel);
        assert_non_null(s);
        s->keep_modes = true;
        assert_int_equal(layer_source_add_tree(s, p, "/", NULL, 0, &err), 0);
        if (whiteouts)
                assert_int_equal(layer_source_overlay_whiteouts(s, p, &err), 0);
        assert_int_equal(layer_source_finish(s, &err), 0);
        return s;
}

static size_t leftovers(const char *cache)
{
        char p[512];
        DIR *d;
        struct dirent *de;
        size_t n = 0;

        snprintf(p, sizeof(p), "%s/rootfs", cache);
        d = opendir(p);
        if (!d)
                return 0;
        while ((de = readdir(d)))
                if (str_has_prefix(de->d_name, ".tmp-"))
                        n++;
        closedir(d);
        return n;
}

static void test_tee_makes_the_directory_the_blob_would(void **state)
{
        struct kiln_error err = KILN_ERROR_INIT;
        char cdir[512], other[512];
        struct layer_cache *c;
        struct layer_writer_opts o;
        struct layer_source *s;
        struct sandbox_rootfs_tee *t;
        struct layer_result res;
        struct opens op;
        char *dir = NULL, *found = NULL, *from_blob = NULL, *a, *b;
        bool unpacked = true, whiteouts;

        (void)state;
        whiteouts = make_tree("tree");
        path_of(cdir, sizeof(cdir), "cache");
        path_of(other, sizeof(other), "other");
        c = layer_cache_open(cdir, &err);
        assert_non_null(c);
        assert_int_equal(layer_writer_opts_init(&o, NULL), 0);
        o.mtime = 1700000000;
        s = tree_source("tree", whiteouts);
        t = sandbox_rootfs_tee_new(cdir, &err);
        assert_non_null(t);
        if (layer_cache_build_tee(c, s, &o, sandbox_rootfs_tee_writer(t), &res, &err) < 0)
                fail_msg("%s", err.msg);
        if (sandbox_rootfs_tee_finish(t, &res.diff_id, res.tar_size, &dir, &err) < 0)
                fail_msg("%s", err.msg);
        sandbox_rootfs_tee_free(t);
        assert_int_equal(leftovers(cdir), 0);
        /* found made: the blob is not opened */
        op = (struct opens){.cache = c, .res = &res};
        assert_int_equal(sandbox_rootfs_get(cdir, &res.diff_id, res.media_type, open_counted, &op,
                                            &found, &unpacked, &err),
                         0);
        assert_int_equal(op.n, 0);
        assert_false(unpacked);
        assert_string_equal(found, dir);
        /* the same tree as the blob unpacked by sandbox_rootfs_get */
        assert_int_equal(sandbox_rootfs_get(other, &res.diff_id, res.media_type, open_counted, &op,
                                            &from_blob, &unpacked, &err),
                         0);
        assert_int_equal(op.n, 1);
        assert_true(unpacked);
        a = walk(dir);
        b = walk(from_blob);
        assert_string_equal(a, b);
        /* and it holds what the tree held (a walk that sees nothing fails) */
        assert_non_null(strstr(a, "usr/lib/big.so 100644 size 5242880"));
        assert_non_null(strstr(a, "usr/bin/su 104755"));
        assert_non_null(strstr(a, "usr/bin/tool-again 100755 size 20 link to usr/bin/tool"));
        assert_non_null(strstr(a, "usr/lib/abs 120777 size 13 -> /usr/bin/tool"));
        if (whiteouts) {
                assert_non_null(strstr(a, "srv/gone 20000 size 0 dev 0:0"));
                assert_non_null(strstr(a, "user.overlay.opaque"));
        }
        free(a);
        free(b);
        free(dir);
        free(found);
        free(from_blob);
        layer_source_free(s);
        layer_cache_free(c);
}

/* A sink that takes every byte (the blob is not what these tests look at). */
static int null_write(struct oci_writer *w, const void *buf, size_t len, struct kiln_error *err)
{
        (void)w;
        (void)buf;
        (void)len;
        (void)err;
        return 0;
}

static void test_a_failing_tee_leaves_nothing_and_the_layer_goes_on(void **state)
{
        struct kiln_error err = KILN_ERROR_INIT;
        struct oci_writer sink = {.write = null_write};
        struct layer_writer_opts o;
        struct layer_writer *w;
        struct layer_result res;
        struct sandbox_rootfs_tee *t;
        struct archive_entry *e = archive_entry_new();
        char cdir[512], p[600], block[4096];
        struct stat st;

        (void)state;
        path_of(cdir, sizeof(cdir), "cache");
        assert_int_equal(layer_writer_opts_init(&o, NULL), 0);
        w = layer_writer_new(&sink, &o, &err);
        assert_non_null(w);
        t = sandbox_rootfs_tee_new(cdir, &err);
        assert_non_null(t);
        layer_writer_set_tee(w, sandbox_rootfs_tee_writer(t));
        /* a hardlink to nothing: the writer takes it, the unpacker refuses it */
        archive_entry_set_pathname(e, "bad");
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        archive_entry_set_hardlink(e, "missing");
        assert_int_equal(layer_writer_add_header(w, e, &err), 0);
        /* then far more than the tee's buffer: the writer must not wait for
         * an unpacker that stopped */
        archive_entry_clear(e);
        archive_entry_set_pathname(e, "after");
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        archive_entry_set_size(e, 8 << 20);
        assert_int_equal(layer_writer_add_header(w, e, &err), 0);
        memset(block, 'x', sizeof(block));
        for (size_t i = 0; i < (8u << 20) / sizeof(block); i++)
                assert_int_equal(layer_writer_add_data(w, block, sizeof(block), &err), 0);
        if (layer_writer_finish(w, &res, &err) < 0)
                fail_msg("%s", err.msg);
        assert_int_equal(sandbox_rootfs_tee_finish(t, &res.diff_id, res.tar_size, NULL, &err), -1);
        assert_non_null(strstr(err.msg, "bad"));
        layer_writer_free(w);
        w = NULL;
        sandbox_rootfs_tee_free(t);
        snprintf(p, sizeof(p), "%s/rootfs/%s", cdir, oci_digest_hex(&res.diff_id));
        assert_int_equal(stat(p, &st), -1);
        assert_int_equal(leftovers(cdir), 0);
        archive_entry_free(e);
        layer_writer_free(w);
}

static void test_a_tee_dropped_half_way_leaves_nothing(void **state)
{
        struct kiln_error err = KILN_ERROR_INIT;
        struct oci_writer sink = {.write = null_write};
        struct layer_writer_opts o;
        struct layer_writer *w;
        struct sandbox_rootfs_tee *t;
        struct archive_entry *e = archive_entry_new();
        char cdir[512], block[4096];

        (void)state;
        path_of(cdir, sizeof(cdir), "cache");
        assert_int_equal(layer_writer_opts_init(&o, NULL), 0);
        w = layer_writer_new(&sink, &o, &err);
        t = sandbox_rootfs_tee_new(cdir, &err);
        assert_non_null(w);
        assert_non_null(t);
        layer_writer_set_tee(w, sandbox_rootfs_tee_writer(t));
        archive_entry_set_pathname(e, "half");
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        archive_entry_set_size(e, 1 << 20);
        assert_int_equal(layer_writer_add_header(w, e, &err), 0);
        memset(block, 'y', sizeof(block));
        for (size_t i = 0; i < 100; i++)
                assert_int_equal(layer_writer_add_data(w, block, sizeof(block), &err), 0);
        assert_int_equal(leftovers(cdir), 1); /* the thread's directory, half made */
        /* the layer failed (say): dropped before it ends (the writer first:
         * it may still write to the tee as it goes) */
        layer_writer_free(w);
        sandbox_rootfs_tee_free(t);
        assert_int_equal(leftovers(cdir), 0);
        archive_entry_free(e);
}

static void test_another_builds_directory_wins(void **state)
{
        struct kiln_error err = KILN_ERROR_INIT;
        char cdir[512], mark[700], *dir = NULL;
        struct layer_cache *c;
        struct layer_writer_opts o;
        struct layer_source *s;
        struct sandbox_rootfs_tee *t;
        struct layer_result res, first;
        struct stat st;

        (void)state;
        put("tree/a", "a\n", 0644);
        path_of(cdir, sizeof(cdir), "cache");
        c = layer_cache_open(cdir, &err);
        assert_non_null(c);
        assert_int_equal(layer_writer_opts_init(&o, NULL), 0);
        s = tree_source("tree", false);
        /* the first makes it */
        t = sandbox_rootfs_tee_new(cdir, &err);
        assert_int_equal(
            layer_cache_build_tee(c, s, &o, sandbox_rootfs_tee_writer(t), &first, &err), 0);
        assert_int_equal(sandbox_rootfs_tee_finish(t, &first.diff_id, first.tar_size, &dir, &err),
                         0);
        sandbox_rootfs_tee_free(t);
        snprintf(mark, sizeof(mark), "%s/mark", dir);
        assert_int_equal(kiln_write_file_atomic(mark, "m", 1, 0644, &err), 0);
        /* the second finds it there when it ends: its own is dropped */
        t = sandbox_rootfs_tee_new(cdir, &err);
        assert_int_equal(layer_cache_build_tee(c, s, &o, sandbox_rootfs_tee_writer(t), &res, &err),
                         0);
        assert_string_equal(res.diff_id.str, first.diff_id.str);
        assert_int_equal(sandbox_rootfs_tee_finish(t, &res.diff_id, res.tar_size, NULL, &err), 0);
        sandbox_rootfs_tee_free(t);
        assert_int_equal(stat(mark, &st), 0);
        assert_int_equal(leftovers(cdir), 0);
        free(dir);
        layer_source_free(s);
        layer_cache_free(c);
}

/* The writer says how long its tar was; an unpacker that read less (or
 * more) has not made that layer. */
static void test_a_tee_checks_it_read_the_whole_tar(void **state)
{
        struct kiln_error err = KILN_ERROR_INIT;
        char cdir[512], p[700];
        struct layer_cache *c;
        struct layer_writer_opts o;
        struct layer_source *s;
        struct sandbox_rootfs_tee *t;
        struct layer_result res;
        struct stat st;

        (void)state;
        put("tree/a", "a\n", 0644);
        path_of(cdir, sizeof(cdir), "cache");
        c = layer_cache_open(cdir, &err);
        assert_non_null(c);
        assert_int_equal(layer_writer_opts_init(&o, NULL), 0);
        s = tree_source("tree", false);
        t = sandbox_rootfs_tee_new(cdir, &err);
        assert_int_equal(layer_cache_build_tee(c, s, &o, sandbox_rootfs_tee_writer(t), &res, &err),
                         0);
        assert_int_equal(sandbox_rootfs_tee_finish(t, &res.diff_id, res.tar_size + 512, NULL, &err),
                         -1);
        assert_int_equal(err.code, KILN_E_INTERNAL);
        assert_non_null(strstr(err.msg, res.diff_id.str));
        sandbox_rootfs_tee_free(t);
        snprintf(p, sizeof(p), "%s/rootfs/%s", cdir, oci_digest_hex(&res.diff_id));
        assert_int_equal(stat(p, &st), -1);
        assert_int_equal(leftovers(cdir), 0);
        layer_source_free(s);
        layer_cache_free(c);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_tee_makes_the_directory_the_blob_would, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_a_failing_tee_leaves_nothing_and_the_layer_goes_on,
                                            setup, teardown),
            cmocka_unit_test_setup_teardown(test_a_tee_dropped_half_way_leaves_nothing, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_another_builds_directory_wins, setup, teardown),
            cmocka_unit_test_setup_teardown(test_a_tee_checks_it_read_the_whole_tar, setup,
                                            teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
