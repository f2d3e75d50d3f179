/* Unit tests for sandbox/: the user-namespace settings named when they are
 * off, --gpu's device and driver list, the mount points taken out of an
 * upper directory, and an upper directory's whiteouts as OCI entries
 * (layers/source.c). */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cmocka.h>
#include <fcntl.h>
#include <pthread.h>

#include "io.h"
#include "sandbox.h"
#include "sandbox_internal.h"
#include "source.h"
#include "util.h"

static char root[256];

static int setup(void **state)
{
        (void)state;
        snprintf(root, sizeof(root), "/tmp/kiln-sandbox-test-XXXXXX");
        assert_non_null(mkdtemp(root));
        return 0;
}

static int teardown(void **state)
{
        (void)state;
        kiln_rm_rf(root);
        return 0;
}

static void put(const char *rel, const char *data)
{
        char p[512], *dir;
        FILE *f;

        snprintf(p, sizeof(p), "%s/%s", root, rel);
        dir = kiln_dirname(p);
        assert_int_equal(kiln_mkdir_p(dir, 0755, NULL), 0);
        free(dir);
        f = fopen(p, "w");
        assert_non_null(f);
        fputs(data, f);
        fclose(f);
}

static bool exists(const char *rel)
{
        char p[512];
        struct stat st;

        snprintf(p, sizeof(p), "%s/%s", root, rel);
        return lstat(p, &st) == 0;
}

static void test_userns_blocker_names_the_setting(void **state)
{
        static const struct {
                const char *file, *value, *want;
        } cases[] = {
                {NULL, NULL, NULL},
                {"kernel/unprivileged_userns_clone", "1\n", NULL},
                {"kernel/unprivileged_userns_clone", "0\n", "kernel.unprivileged_userns_clone is 0"},
                {"user/max_user_namespaces", "15000\n", NULL},
                {"user/max_user_namespaces", "0\n", "user.max_user_namespaces is 0"},
                {"kernel/apparmor_restrict_unprivileged_userns", "0\n", NULL},
                {"kernel/apparmor_restrict_unprivileged_userns", "1\n",
                 "kernel.apparmor_restrict_unprivileged_userns is 1"},
        };
        char sys[300], buf[200];

        (void)state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                const char *got;
                snprintf(sys, sizeof(sys), "%s/sys%zu", root, i);
                assert_int_equal(kiln_mkdir_p(sys, 0755, NULL), 0);
                if (cases[i].file) {
                        char rel[300];
                        snprintf(rel, sizeof(rel), "sys%zu/%s", i, cases[i].file);
                        put(rel, cases[i].value);
                }
                got = sandbox_userns_blocker(sys, buf, sizeof(buf));
                if (cases[i].want)
                        assert_string_equal(got, cases[i].want);
                else
                        assert_null(got);
        }
}

static void test_gpu_without_devices_says_so(void **state)
{
        char dev[300];
        struct sandbox_bind *b = NULL;
        size_t n = 0;
        struct kiln_error err = KILN_ERROR_INIT;

        (void)state;
        snprintf(dev, sizeof(dev), "%s/dev", root);
        put("dev/null", "");
        put("dev/nvidiactl", ""); /* the control node alone is no GPU */
        assert_int_equal(sandbox_gpu_binds(dev, NULL, &b, &n, NULL, NULL, &err), -1);
        assert_int_equal(err.code, KILN_E_NOT_FOUND);
        assert_non_null(strstr(err.msg, "no NVIDIA device"));
        assert_null(b);
}

static void test_gpu_binds_devices_and_driver_libraries(void **state)
{
        char dev[300], lib[300];
        const char *dirs[] = {lib, NULL};
        struct sandbox_bind *b = NULL;
        size_t n = 0;
        char *ld = NULL;
        bool saw_dev = false, saw_cuda = false, saw_ml = false;
        struct kiln_error err = KILN_ERROR_INIT;

        (void)state;
        snprintf(dev, sizeof(dev), "%s/dev", root);
        snprintf(lib, sizeof(lib), "%s/lib", root);
        put("dev/nvidiactl", "");
        put("dev/nvidia0", "");
        put("dev/nvidia-uvm", "");
        put("dev/nvidia-caps-x", ""); /* not a node the CDI spec lists */
        put("lib/libcuda.so.550.54", "");
        put("lib/libnvidia-ml.so.1", "");
        put("lib/libc.so.6", "");
        assert_int_equal(sandbox_gpu_binds(dev, dirs, &b, &n, &ld, NULL, &err), 0);
        for (size_t i = 0; i < n; i++) {
                if (!strcmp(b[i].dst, "/dev/nvidia0")) {
                        saw_dev = true;
                        assert_false(b[i].ro);
                }
                saw_cuda |= str_has_suffix(b[i].src, "/libcuda.so.550.54") && b[i].ro &&
                            !strcmp(b[i].src, b[i].dst);
                saw_ml |= str_has_suffix(b[i].src, "/libnvidia-ml.so.1");
                assert_null(strstr(b[i].src, "libc.so"));
                assert_null(strstr(b[i].src, "nvidia-caps"));
        }
        assert_true(saw_dev && saw_cuda && saw_ml);
        assert_string_equal(ld, lib);
        free(b);
        free(ld);
}

static void test_upper_clean_drops_mount_points_only(void **state)
{
        char upper[300], lower[300];
        const char *lowers[] = {lower};
        struct sandbox_bind binds[] = {{.src = "/x", .dst = "/kiln/inputs/0", .ro = true},
                                       {.src = "/y", .dst = "/root/.cache/pip"}};
        struct sandbox_opts o;

        (void)state;
        snprintf(upper, sizeof(upper), "%s/upper", root);
        snprintf(lower, sizeof(lower), "%s/lower", root);
        put("lower/etc/passwd", "root\n");
        put("lower/root/.profile", "\n");
        put("lower/tmp/.keep", "");
        put("upper/etc/added", "x\n");
        put("upper/etc/resolv.conf", ""); /* made for the network: empty, not below */
        {
                char p[400];
                const char *dirs[] = {"upper/kiln/inputs/0", "upper/root/.cache/pip", "upper/dev",
                                      "upper/proc", "upper/tmp", "upper/made"};
                for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
                        snprintf(p, sizeof(p), "%s/%s", root, dirs[i]);
                        assert_int_equal(kiln_mkdir_p(p, 0755, NULL), 0);
                }
                /* the lower's modes, as a copy-up keeps them */
                snprintf(p, sizeof(p), "%s/lower/root", root);
                chmod(p, 0700);
                snprintf(p, sizeof(p), "%s/upper/root", root);
                chmod(p, 0700);
                snprintf(p, sizeof(p), "%s/lower/tmp", root);
                chmod(p, 01777);
                snprintf(p, sizeof(p), "%s/upper/tmp", root);
                chmod(p, 01777);
        }
        sandbox_opts_init(&o);
        o.upper = upper;
        o.lowers = lowers;
        o.n_lowers = 1;
        o.binds = binds;
        o.n_binds = 2;
        o.cwd = "/";
        sandbox_upper_clean(&o);
        assert_true(exists("upper/etc/added"));
        assert_false(exists("upper/etc/resolv.conf"));
        assert_false(exists("upper/kiln"));
        assert_false(exists("upper/root")); /* copied up for the mount point only */
        assert_false(exists("upper/dev") || exists("upper/proc"));
        assert_false(exists("upper/tmp")); /* copied up, emptied again */
        assert_true(exists("upper/made")); /* a directory the step made */
}

static void test_upper_clean_never_follows_a_link_of_the_step(void **state)
{
        char upper[300], target[400], p[400];
        struct sandbox_bind binds[] = {{.src = "/x", .dst = "/kiln/inputs/0", .ro = true}};
        struct sandbox_opts o;

        (void)state;
        snprintf(upper, sizeof(upper), "%s/upper", root);
        snprintf(target, sizeof(target), "%s/host/inputs/0", root);
        assert_int_equal(kiln_mkdir_p(target, 0755, NULL), 0);
        assert_int_equal(kiln_mkdir_p(upper, 0755, NULL), 0);
        /* the step replaced /kiln with a link to a host directory */
        snprintf(p, sizeof(p), "%s/kiln", upper);
        snprintf(target, sizeof(target), "%s/host", root);
        assert_int_equal(symlink(target, p), 0);
        sandbox_opts_init(&o);
        o.upper = upper;
        o.binds = binds;
        o.n_binds = 1;
        sandbox_upper_clean(&o);
        assert_true(exists("host/inputs/0"));
        assert_true(exists("upper/kiln"));
}

static void test_overlay_whiteouts_become_oci_entries(void **state)
{
        char upper[300], p[400];
        struct layer_source *s;
        struct kiln_error err = KILN_ERROR_INIT;
        const char *want[] = {"etc", "etc/.wh.issue", "opt", "opt/.wh..wh..opq", "opt/new"};

        (void)state;
        snprintf(upper, sizeof(upper), "%s/upper", root);
        put("upper/etc/.keep", "");
        snprintf(p, sizeof(p), "%s/etc/.keep", upper);
        unlink(p);
        put("upper/opt/new", "n\n");
        snprintf(p, sizeof(p), "%s/etc/issue", upper);
        if (mknod(p, S_IFCHR | 0000, makedev(0, 0)) < 0)
                skip(); /* Linux < 5.8 without CAP_MKNOD */
        snprintf(p, sizeof(p), "%s/opt", upper);
        assert_int_equal(setxattr(p, "user.overlay.opaque", "y", 1, 0), 0);
        s = layer_source_new(&err);
        assert_non_null(s);
        assert_int_equal(layer_source_add_tree(s, upper, "/", NULL, 0, &err), 0);
        assert_int_equal(layer_source_overlay_whiteouts(s, upper, &err), 0);
        assert_int_equal(layer_source_finish(s, &err), 0);
        assert_int_equal(s->n, sizeof(want) / sizeof(want[0]));
        for (size_t i = 0; i < s->n; i++) {
                assert_string_equal(s->entries[i].path, want[i]);
                if (str_has_prefix(strrchr(want[i], '/') ? strrchr(want[i], '/') + 1 : want[i],
                                   ".wh.")) {
                        assert_true(S_ISREG(s->entries[i].st.st_mode));
                        assert_int_equal(s->entries[i].st.st_size, 0);
                        assert_null(s->entries[i].host);
                }
        }
        layer_source_free(s);
}

static void test_sandbox_refuses_relative_or_odd_directories(void **state)
{
        static const char *argv[] = {"true", NULL};
        struct sandbox_opts o;
        struct kiln_error err = KILN_ERROR_INIT;
        int status = -1;

        (void)state;
        sandbox_opts_init(&o);
        o.argv = argv;
        o.argc = 1;
        o.upper = "rel/upper";
        o.work = "/w";
        o.root = "/r";
        assert_int_equal(sandbox_run(&o, &status, &err), -1);
        assert_int_equal(err.code, KILN_E_INVALID);
        assert_non_null(strstr(err.msg, "'rel/upper'"));
        o.upper = "/a,b";
        assert_int_equal(sandbox_run(&o, &status, &err), -1);
        assert_non_null(strstr(err.msg, "'/a,b'"));
        assert_int_equal(status, -1);
}

/* the configure step's filter: chown answers 0 and changes nothing, other
 * calls still work (run in a child: a filter cannot be taken back) */
static void test_ignore_chown_answers_zero_and_changes_nothing(void **state)
{
        char path[300];
        struct stat before, after;
        pid_t pid;
        int status = 0;

        (void)state;
        snprintf(path, sizeof(path), "%s/f", root);
        assert_int_equal(kiln_write_file_atomic(path, "x", 1, 0644, NULL), 0);
        assert_int_equal(stat(path, &before), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                struct stat st;
                if (sandbox_ignore_chown() < 0)
                        _exit(10);
                if (chown(path, 4242, 4242) != 0 || lchown(path, 4243, 4243) != 0)
                        _exit(11);
                if (stat(path, &st) != 0 || st.st_uid != before.st_uid)
                        _exit(12);
                /* everything else goes to the kernel */
                if (chmod(path, 0600) != 0 || unlink("/nonexistent/kiln") == 0)
                        _exit(13);
                _exit(0);
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        assert_int_equal(stat(path, &after), 0);
        assert_int_equal(after.st_uid, before.st_uid);
        assert_int_equal(after.st_gid, before.st_gid);
        assert_int_equal(after.st_mode & 07777, 0600);
}

/* dropped: files and links the step left, never a directory, never
 * through a link of the step's */
static void test_upper_drop_takes_out_files_only(void **state)
{
        char up[300], p[400];
        static const char *const drop[] = {"/var/log/dpkg.log", "/var/cache/x", "/lnk/f",
                                           "var/keep", "/var/../var/keep"};
        struct sandbox_opts o;

        (void)state;
        snprintf(up, sizeof(up), "%s/upper", root);
        snprintf(p, sizeof(p), "%s/var/log", up);
        assert_int_equal(kiln_mkdir_p(p, 0755, NULL), 0);
        snprintf(p, sizeof(p), "%s/var/log/dpkg.log", up);
        assert_int_equal(kiln_write_file_atomic(p, "2024 x", 6, 0644, NULL), 0);
        snprintf(p, sizeof(p), "%s/var/cache/x", up);
        assert_int_equal(kiln_mkdir_p(p, 0755, NULL), 0);
        snprintf(p, sizeof(p), "%s/outside", root);
        assert_int_equal(kiln_mkdir_p(p, 0755, NULL), 0);
        snprintf(p, sizeof(p), "%s/outside/f", root);
        assert_int_equal(kiln_write_file_atomic(p, "host", 4, 0644, NULL), 0);
        snprintf(p, sizeof(p), "%s/lnk", up);
        {
                char target[300];
                snprintf(target, sizeof(target), "%s/outside", root);
                assert_int_equal(symlink(target, p), 0);
        }
        snprintf(p, sizeof(p), "%s/var/keep", up);
        assert_int_equal(kiln_write_file_atomic(p, "k", 1, 0644, NULL), 0);
        sandbox_opts_init(&o);
        o.upper = up;
        sandbox_upper_drop(&o, drop, sizeof(drop) / sizeof(drop[0]));
        snprintf(p, sizeof(p), "%s/var/log/dpkg.log", up);
        assert_int_equal(access(p, F_OK), -1);
        snprintf(p, sizeof(p), "%s/var/cache/x", up);
        assert_int_equal(access(p, F_OK), 0);
        snprintf(p, sizeof(p), "%s/outside/f", root);
        assert_int_equal(access(p, F_OK), 0);
        snprintf(p, sizeof(p), "%s/var/keep", up);
        assert_int_equal(access(p, F_OK), 0);
}

/* ---- sandbox_run from a process with other threads ---- */

static void collect(void *ctx, const char *buf, size_t len)
{
        char *out = ctx;
        size_t have = strlen(out);

        if (have + len >= 4096)
                len = 4095 - have;
        memcpy(out + have, buf, len);
        out[have + len] = '\0';
}

/* An image of the host's /usr only (bound read-only), with Debian's
 * merged-/usr links. */
static void usr_image(struct sandbox_opts *o, char **lower, char **up, char **wk, char **rt,
                      const char **lowers, struct sandbox_bind *bind)
{
        static const char *const links[][2] = {
            {"bin", "usr/bin"}, {"lib", "usr/lib"}, {"lib64", "usr/lib64"}, {"sbin", "usr/sbin"}};
        char dir[300];
        struct kiln_error err = KILN_ERROR_INIT;

        *lower = kiln_strdupf("%s/lower", root);
        assert_int_equal(kiln_mkdir_p(*lower, 0755, NULL), 0);
        for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++) {
                snprintf(dir, sizeof(dir), "%s/%s", *lower, links[i][0]);
                assert_int_equal(symlink(links[i][1], dir), 0);
        }
        snprintf(dir, sizeof(dir), "%s/run", root);
        assert_int_equal(mkdir(dir, 0700), 0);
        assert_int_equal(sandbox_dirs_make(dir, o, up, wk, rt, &err), 0);
        lowers[0] = *lower;
        o->lowers = lowers;
        o->n_lowers = 1;
        *bind = (struct sandbox_bind){.src = "/usr", .dst = "/usr", .ro = true};
        o->binds = bind;
        o->n_binds = 1;
}

static void usr_image_free(char *lower, char *up, char *wk, char *rt)
{
        free(lower);
        free(up);
        free(wk);
        free(rt);
}

/* The sandbox's PID 1 never execs, so close-on-exec cannot keep the
 * caller's other descriptors (another step's output pipe, whose reader
 * waits for its end) out of it: it holds 0, 1, 2 and its two pipes. */
static void test_sandbox_init_holds_no_descriptor_of_ours(void **state)
{
        static const char *argv[] = {"/bin/sh", "-c", "ls /proc/1/fd | wc -l", NULL};
        static const char *env[] = {"PATH=/usr/bin:/bin", NULL};
        struct sandbox_opts o;
        struct sandbox_bind bind;
        const char *lowers[1];
        char *lower, *up, *wk, *rt, out[4096] = "";
        struct kiln_error err = KILN_ERROR_INIT;
        int status = -1, extra[8][2];

        (void)state;
        for (size_t i = 0; i < 8; i++)
                assert_int_equal(pipe2(extra[i], O_CLOEXEC), 0);
        sandbox_opts_init(&o);
        usr_image(&o, &lower, &up, &wk, &rt, lowers, &bind);
        o.argv = argv;
        o.argc = 3;
        o.env = env;
        o.n_env = 1;
        o.output = collect;
        o.output_ctx = out;
        if (sandbox_run(&o, &status, &err) < 0)
                fail_msg("sandbox: %s", err.msg);
        assert_int_equal(status, 0);
        /* 0, 1, 2: it closed its pipes when the command started */
        assert_int_equal(atoi(out), 3);
        for (size_t i = 0; i < 8; i++) {
                close(extra[i][0]);
                close(extra[i][1]);
        }
        usr_image_free(lower, up, wk, rt);
}

static volatile int churn_stop;

static void *churn(void *arg)
{
        (void)arg;
        while (!churn_stop) {
                void *p[64];
                for (size_t i = 0; i < 64; i++)
                        p[i] = malloc(16 + i * 97);
                for (size_t i = 0; i < 64; i++)
                        free(p[i]);
        }
        return NULL;
}

/* Threads that allocate all the time, as a layer's stage and compressors
 * do while another layer runs in the image: the sandbox's children must
 * not wait for a lock one of them held at fork (they allocate nothing). */
static void test_sandbox_runs_while_other_threads_allocate(void **state)
{
        static const char *argv[] = {"/bin/true", NULL};
        static const char *env[] = {"PATH=/usr/bin:/bin", NULL};
        struct sandbox_opts o;
        struct sandbox_bind bind;
        const char *lowers[1];
        char *lower, *up, *wk, *rt;
        pthread_t th[3];

        (void)state;
        sandbox_opts_init(&o);
        usr_image(&o, &lower, &up, &wk, &rt, lowers, &bind);
        o.argv = argv;
        o.argc = 1;
        o.env = env;
        o.n_env = 1;
        churn_stop = 0;
        for (size_t i = 0; i < 3; i++)
                assert_int_equal(pthread_create(&th[i], NULL, churn, NULL), 0);
        for (int i = 0; i < 20; i++) {
                struct kiln_error err = KILN_ERROR_INIT;
                int status = -1;
                if (sandbox_run(&o, &status, &err) < 0)
                        fail_msg("run %d: %s", i, err.msg);
                assert_int_equal(status, 0);
        }
        churn_stop = 1;
        for (size_t i = 0; i < 3; i++)
                pthread_join(th[i], NULL);
        usr_image_free(lower, up, wk, rt);
}

/* subuid(5): the first line for the name or the number, malformed lines
 * and empty ranges skipped */
static void test_subid_lookup_reads_subuid_lines(void **state)
{
        unsigned long start = 0, count = 0;
        char file[300];

        (void)state;
        put("subuid", "# comment\n"
                      "alice:100000:65536\n"
                      "bob:x:10\n"
                      "bob:200000:0\n"
                      "bob:300000:1000\n"
                      "1234:400000:5\n"
                      "bob:500000:7\n"
                      "carol:18446744073709551615:2\n");
        snprintf(file, sizeof(file), "%s/subuid", root);
        assert_int_equal(sandbox_subid_lookup(file, "alice", 1000, &start, &count), 1);
        assert_int_equal(start, 100000);
        assert_int_equal(count, 65536);
        assert_int_equal(sandbox_subid_lookup(file, "bob", 1001, &start, &count), 1);
        assert_int_equal(start, 300000);
        assert_int_equal(count, 1000);
        /* by number, when the name has no line (or there is no name) */
        assert_int_equal(sandbox_subid_lookup(file, "dave", 1234, &start, &count), 1);
        assert_int_equal(start, 400000);
        assert_int_equal(sandbox_subid_lookup(file, NULL, 1234, &start, &count), 1);
        assert_int_equal(sandbox_subid_lookup(file, "dave", 1235, &start, &count), 0);
        /* a range past the end of the id space */
        assert_int_equal(sandbox_subid_lookup(file, "carol", 7, &start, &count), 0);
        snprintf(file, sizeof(file), "%s/none", root);
        assert_int_equal(sandbox_subid_lookup(file, "alice", 1000, &start, &count), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_userns_blocker_names_the_setting, setup, teardown),
            cmocka_unit_test_setup_teardown(test_gpu_without_devices_says_so, setup, teardown),
            cmocka_unit_test_setup_teardown(test_gpu_binds_devices_and_driver_libraries, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_upper_clean_drops_mount_points_only, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_upper_clean_never_follows_a_link_of_the_step,
                                            setup, teardown),
            cmocka_unit_test_setup_teardown(test_overlay_whiteouts_become_oci_entries, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_ignore_chown_answers_zero_and_changes_nothing,
                                            setup, teardown),
            cmocka_unit_test_setup_teardown(test_upper_drop_takes_out_files_only, setup, teardown),
            cmocka_unit_test_setup_teardown(test_subid_lookup_reads_subuid_lines, setup, teardown),
            cmocka_unit_test_setup_teardown(test_sandbox_init_holds_no_descriptor_of_ours, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_sandbox_runs_while_other_threads_allocate, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_sandbox_refuses_relative_or_odd_directories, setup,
                                            teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
