/* layers/zip.h: the members of a zip file (a Python wheel), read where they
 * lie, so a layer can be written from them with nothing extracted.
 *
 * The central directory (PKWARE APPNOTE.TXT 4.3.12, 4.3.16; zip64: 4.3.14,
 * 4.3.15, 4.5.3) is read whole, at most LAYER_ZIP_CD_MAX bytes.  A member is
 * found by its name (exact bytes); layer_zip_locate() reads its local header
 * (4.3.7) for the offset of its data, and a reader gives its bytes, stored
 * (method 0) or deflated (method 8, through zlib), with its size, its
 * compressed size and its CRC-32 checked at its end: a member that does not
 * match its central directory record fails before the reader says it ended.
 *
 * Only what a wheel needs: one disk, no encryption, no data before the first
 * member (the central directory lies where the end records say).  Anything
 * else is an error: the caller reads such a file another way.
 *
 *     z = layer_zip_open("x.whl", &err);
 *     m = layer_zip_find(z, "pkg/__init__.py");
 *     layer_zip_locate(z, m, &err);
 *     r = layer_zip_reader(fd, z->path, m, &err);   (fd: the file, open)
 *     ... oci_reader_read(r, ...) until 0 ...
 *     oci_reader_free(r);
 *     layer_zip_free(z);
 */
#ifndef KILN_LAYERS_ZIP_H
#define KILN_LAYERS_ZIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "io.h"

#define LAYER_ZIP_CD_MAX (64u * 1024 * 1024)

struct layer_zip_member {
        char *name;      /* as the central directory has it, NUL added */
        uint16_t flags;  /* general purpose bits */
        uint16_t method; /* 0 stored, 8 deflated */
        uint32_t crc32;
        uint64_t csize;  /* compressed */
        uint64_t usize;  /* uncompressed */
        uint64_t header; /* offset of the local header */
        uint64_t data;   /* offset of the data, once located */
        bool located;
        bool twin; /* another member has the same name */
};

struct layer_zip {
        char *path;
        int fd;
        struct layer_zip_member *members; /* sorted by name */
        size_t n;
        uint64_t cd_offset; /* where the members' data must end */
};

struct layer_zip *layer_zip_open(const char *path, struct kiln_error *err);
void layer_zip_free(struct layer_zip *z);
void layer_zip_freep(struct layer_zip **z);

/* The member named name; NULL when there is none, or more than one. */
struct layer_zip_member *layer_zip_find(const struct layer_zip *z, const char *name);

/* Reads the member's local header: its name must be the central
 * directory's, its data must lie before the central directory. */
int layer_zip_locate(const struct layer_zip *z, struct layer_zip_member *m, struct kiln_error *err);

/* A reader of the (located) member's uncompressed bytes from fd, the zip
 * file at path (for messages), open until the reader is freed. */
struct oci_reader *layer_zip_reader(int fd, const char *path, const struct layer_zip_member *m,
                                    struct kiln_error *err);

#endif
