/* libFuzzer target: applying a layer blob (gzip, zstd or plain tar) to a
 * directory.  The first byte picks the declared media type and the path
 * resolver.  Whatever the input, nothing outside the directory may change:
 * a canary beside it is checked after every input, and the process aborts
 * if it was touched. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io.h"
#include "model.h"
#include "unpack.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char base[64], dir[96], canary[96];

static void setup(void)
{
        FILE *f;

        snprintf(base, sizeof(base), "/tmp/kiln-fuzz-unpack-XXXXXX");
        if (!mkdtemp(base))
                abort();
        snprintf(dir, sizeof(dir), "%s/root", base);
        snprintf(canary, sizeof(canary), "%s/canary", base);
        f = fopen(canary, "w");
        if (!f)
                abort();
        fputs("canary\n", f);
        fclose(f);
}

static void check_canary(void)
{
        char buf[16] = {0};
        struct stat st;
        int fd = open(canary, O_RDONLY | O_NOFOLLOW);

        if (fd < 0 || read(fd, buf, sizeof(buf) - 1) != 7 || strcmp(buf, "canary\n") != 0 ||
            fstat(fd, &st) < 0 || (st.st_mode & 07777) != 0644 || st.st_nlink != 1)
                abort();
        close(fd);
        /* only the canary and the root beside it */
        if (access(base, F_OK) < 0)
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const char *const types[] = {OCI_MT_LAYER, OCI_MT_LAYER_GZIP, OCI_MT_LAYER_ZSTD,
                                            NULL};
        struct layer_unpack_opts o;
        struct layer_unpacker *u;
        struct kiln_error err = KILN_ERROR_INIT;
        const char *mt;

        if (!base[0]) {
                umask(022);
                setup();
        }
        if (size < 1)
                return 0;
        mt = types[data[0] % 4];
        layer_unpack_opts_init(&o);
        o.max_size = 64u << 20;
        o.rootless = true;
        o.no_openat2 = (data[0] >> 2) & 1;
        data++;
        size--;
        u = layer_unpacker_new(dir, &o, &err);
        if (!u)
                abort();
        layer_unpacker_apply(u, oci_reader_from_buffer(data, size, NULL), mt, "fuzz", &err);
        layer_unpacker_finish(u, &err);
        layer_unpacker_free(u);
        kiln_rm_rf(dir);
        check_canary();
        return 0;
}
