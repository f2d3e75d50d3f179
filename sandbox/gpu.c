/* --gpu: what the NVIDIA container toolkit's CDI spec (nvidia-ctk cdi
 * generate) puts into a container: the device nodes, the driver's user-space
 * libraries and its tools, each at its own path. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sandbox.h"
#include "util.h"

#define GPU_BINDS_MAX 256

/* where distributions and the NVIDIA driver containers put the driver's
 * files; LD_LIBRARY_PATH's and PATH's directories are looked at too */
static const char *const default_lib_dirs[] = {"/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
                                               "/usr/lib64", "/usr/lib", "/lib/x86_64-linux-gnu",
                                               "/lib", "/usr/local/nvidia/lib64",
                                               "/usr/local/nvidia/lib", NULL};
static const char *const default_bin_dirs[] = {"/usr/bin", "/usr/local/nvidia/bin", NULL};

static const char *const lib_prefixes[] = {"libcuda.so", "libnvidia-ml.so", "libnvidia-ptxjitcompiler.so",
                                           "libnvidia-nvvm.so", "libnvidia-gpucomp.so",
                                           "libnvidia-allocator.so", "libnvidia-cfg.so",
                                           "libnvidia-opencl.so", "libcudadebugger.so", NULL};

static const char *const tools[] = {"nvidia-smi", "nvidia-debugdump", "nvidia-persistenced",
                                    "nvidia-cuda-mps-control", "nvidia-cuda-mps-server", NULL};

struct list {
        char *paths[GPU_BINDS_MAX];
        size_t n;
};

static void add(struct list *l, const char *dir, const char *name)
{
        if (l->n < GPU_BINDS_MAX)
                l->paths[l->n] = dir ? kiln_strdupf("%s/%s", dir, name) : strdup(name);
        if (l->n < GPU_BINDS_MAX && l->paths[l->n])
                l->n++;
}

static bool is_device(const char *name)
{
        if (!strncmp(name, "nvidia", 6) && name[6] >= '0' && name[6] <= '9')
                return true;
        return !strcmp(name, "nvidiactl") || !strcmp(name, "nvidia-uvm") ||
               !strcmp(name, "nvidia-uvm-tools") || !strcmp(name, "nvidia-modeset");
}

static bool is_driver_lib(const char *name)
{
        for (size_t i = 0; lib_prefixes[i]; i++)
                if (str_has_prefix(name, lib_prefixes[i]))
                        return true;
        return false;
}

static int scan_devices(const char *dev_dir, struct list *l, struct kiln_error *err)
{
        DIR *d = opendir(dev_dir);
        struct dirent *e;
        bool ctl = false, gpu = false;

        while (d && (e = readdir(d))) {
                if (!is_device(e->d_name))
                        continue;
                ctl |= !strcmp(e->d_name, "nvidiactl");
                gpu |= e->d_name[6] >= '0' && e->d_name[6] <= '9';
                add(l, dev_dir, e->d_name);
        }
        if (d)
                closedir(d);
        if (!ctl || !gpu)
                return kiln_error_set(err, KILN_E_NOT_FOUND,
                                      "no NVIDIA device: '%s' has no nvidiactl and nvidia0 (is the "
                                      "driver loaded?)",
                                      dev_dir);
        return 0;
}

/* dirs, then each directory of the ':'-list env (if set), each once */
static size_t dir_list(const char *const *dirs, const char *env, char **ret, size_t max)
{
        size_t n = 0;
        const char *e = env ? getenv(env) : NULL;
        char *copy = e ? strdup(e) : NULL, *save = NULL;

        for (size_t i = 0; dirs[i] && n < max; i++)
                ret[n++] = strdup(dirs[i]);
        for (char *t = copy ? strtok_r(copy, ":", &save) : NULL; t && n < max;
             t = strtok_r(NULL, ":", &save)) {
                bool seen = t[0] != '/';
                for (size_t i = 0; i < n && !seen; i++)
                        seen = ret[i] && !strcmp(ret[i], t);
                if (!seen)
                        ret[n++] = strdup(t);
        }
        free(copy);
        return n;
}

/* The driver's files in dirs; the directories that held one, ':'-joined. */
static void scan_dirs(char *const *dirs, size_t nd, bool (*want)(const char *name),
                      struct list *l, char *joined, size_t len)
{
        size_t used = 0;

        joined[0] = '\0';
        for (size_t i = 0; i < nd; i++) {
                DIR *d = dirs[i] ? opendir(dirs[i]) : NULL;
                struct dirent *e;
                bool any = false;
                while (d && (e = readdir(d))) {
                        char p[4096];
                        struct stat st;
                        snprintf(p, sizeof(p), "%s/%s", dirs[i], e->d_name);
                        if (!want(e->d_name) || stat(p, &st) < 0 || !S_ISREG(st.st_mode))
                                continue;
                        add(l, dirs[i], e->d_name);
                        any = true;
                }
                if (d)
                        closedir(d);
                if (any && used + strlen(dirs[i]) + 2 < len)
                        used += (size_t)snprintf(joined + used, len - used, "%s%s",
                                                 used ? ":" : "", dirs[i]);
        }
}

static bool is_tool(const char *name)
{
        for (size_t i = 0; tools[i]; i++)
                if (!strcmp(name, tools[i]))
                        return true;
        return false;
}

int sandbox_gpu_binds(const char *dev_dir, const char *const *lib_dirs,
                      struct sandbox_bind **ret_binds, size_t *ret_n, char **ret_lib_dirs,
                      char **ret_bin_dirs, struct kiln_error *err)
{
        struct list l = {.n = 0};
        char joined[4096], bins[4096];
        char *dirs[64] = {NULL};
        struct sandbox_bind *b = NULL;
        size_t bytes = 0, nd;
        char *p;
        int rc = -1;

        if (scan_devices(dev_dir, &l, err) < 0)
                goto out;
        nd = dir_list(lib_dirs ? lib_dirs : default_lib_dirs, lib_dirs ? NULL : "LD_LIBRARY_PATH",
                      dirs, 64);
        scan_dirs(dirs, nd, is_driver_lib, &l, joined, sizeof(joined));
        for (size_t i = 0; i < nd; i++)
                free(dirs[i]);
        nd = dir_list(default_bin_dirs, lib_dirs ? NULL : "PATH", dirs, 64);
        scan_dirs(dirs, nd, is_tool, &l, bins, sizeof(bins));
        for (size_t i = 0; i < nd; i++)
                free(dirs[i]);
        for (size_t i = 0; i < l.n; i++)
                bytes += strlen(l.paths[i]) + 1;
        /* one allocation: the array, then the strings */
        b = malloc(l.n * sizeof(*b) + bytes + 1);
        if (!b || (ret_lib_dirs && !(*ret_lib_dirs = strdup(joined))) ||
            (ret_bin_dirs && !(*ret_bin_dirs = strdup(bins)))) {
                free(b);
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto out;
        }
        p = (char *)(b + l.n);
        for (size_t i = 0; i < l.n; i++) {
                size_t n = strlen(l.paths[i]) + 1;
                memcpy(p, l.paths[i], n);
                /* a device from dev_dir goes to /dev/NAME inside */
                b[i].src = p;
                b[i].dst = str_has_prefix(p, dev_dir) && p[strlen(dev_dir)] == '/' ? NULL : p;
                b[i].ro = true;
                p += n;
        }
        for (size_t i = 0; i < l.n; i++)
                if (!b[i].dst) {
                        const char *name = strrchr(b[i].src, '/') + 1;
                        /* "/dev/" + name, kept in the string's own tail */
                        b[i].dst = name - 5 >= b[i].src && !strncmp(name - 5, "/dev/", 5)
                                           ? name - 5
                                           : b[i].src;
                        b[i].ro = false; /* devices are opened for writing */
                }
        *ret_binds = b;
        *ret_n = l.n;
        rc = 0;
out:
        for (size_t i = 0; i < l.n; i++)
                free(l.paths[i]);
        return rc;
}
