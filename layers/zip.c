/* Zip members read in place (layers/zip.h). */
#include "zip.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "util.h"

#define EOCD_SIZE 22
#define EOCD64_LOCATOR_SIZE 20
#define EOCD64_SIZE 56
#define CD_HEADER_SIZE 46
#define LOCAL_HEADER_SIZE 30
/* as libarchive looks for the end record: in the last 16 KiB */
#define TAIL_MAX (16u * 1024)
#define READ_BUF (256u * 1024)

static uint16_t le16(const unsigned char *p)
{
        return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const unsigned char *p)
{
        return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const unsigned char *p)
{
        return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

/* Reads exactly len bytes at off. */
static int pread_all(int fd, void *buf, size_t len, uint64_t off, const char *path,
                     struct kiln_error *err)
{
        unsigned char *p = buf;

        while (len > 0) {
                ssize_t n = pread(fd, p, len, (off_t)off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot read '%s'",
                                                    path);
                if (n == 0)
                        return kiln_error_set(err, KILN_E_INVALID, "invalid zip '%s': truncated",
                                              path);
                p += n;
                len -= (size_t)n;
                off += (uint64_t)n;
        }
        return 0;
}

void layer_zip_free(struct layer_zip *z)
{
        if (!z)
                return;
        for (size_t i = 0; i < z->n; i++)
                free(z->members[i].name);
        if (z->fd >= 0)
                close(z->fd);
        free(z->members);
        free(z->path);
        free(z);
}

void layer_zip_freep(struct layer_zip **z)
{
        layer_zip_free(*z);
        *z = NULL;
}

/* The central directory's place: from the end record, or the zip64 one
 * its locator points to (APPNOTE 4.3.14 to 4.3.16). */
static int find_cd(int fd, const char *path, uint64_t size, uint64_t *ret_off, uint64_t *ret_len,
                   uint64_t *ret_count, struct kiln_error *err)
{
        unsigned char tail[TAIL_MAX], *e = NULL;
        size_t t = size < TAIL_MAX ? (size_t)size : TAIL_MAX;
        uint64_t eocd, end, off, len, count;

        if (size < EOCD_SIZE)
                return kiln_error_set(err, KILN_E_INVALID, "invalid zip '%s': too short", path);
        if (pread_all(fd, tail, t, size - t, path, err) < 0)
                return -1;
        for (size_t i = t - EOCD_SIZE + 1; i-- > 0;)
                if (!memcmp(tail + i, "PK\005\006", 4)) {
                        e = tail + i;
                        break;
                }
        if (!e)
                return kiln_error_set(err, KILN_E_INVALID, "invalid zip '%s': no end record", path);
        eocd = size - t + (uint64_t)(e - tail);
        if (eocd + EOCD_SIZE + le16(e + 20) != size || le16(e + 4) || le16(e + 6) ||
            le16(e + 8) != le16(e + 10))
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid zip '%s': unexpected end record", path);
        off = le32(e + 16);
        len = le32(e + 12);
        count = le16(e + 10);
        end = eocd;
        if (e - tail >= EOCD64_LOCATOR_SIZE && !memcmp(e - EOCD64_LOCATOR_SIZE, "PK\006\007", 4)) {
                const unsigned char *l = e - EOCD64_LOCATOR_SIZE;
                unsigned char r[EOCD64_SIZE];

                end = le64(l + 8);
                if (le32(l + 4) || le32(l + 16) != 1 || end > eocd ||
                    pread_all(fd, r, sizeof(r), end, path, err) < 0)
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "invalid zip '%s': unexpected zip64 end record",
                                              path);
                if (memcmp(r, "PK\006\006", 4) || le32(r + 16) || le32(r + 20) ||
                    le64(r + 24) != le64(r + 32))
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "invalid zip '%s': unexpected zip64 end record",
                                              path);
                count = le64(r + 32);
                len = le64(r + 40);
                off = le64(r + 48);
        }
        /* no data before the first member: offsets are what they say */
        if (off > end || end - off != len)
                return kiln_error_set(
                    err, KILN_E_INVALID,
                    "invalid zip '%s': the central directory is not where the end record says",
                    path);
        if (len > LAYER_ZIP_CD_MAX)
                return kiln_error_set(err, KILN_E_LIMIT,
                                      "invalid zip '%s': central directory larger than %u bytes",
                                      path, LAYER_ZIP_CD_MAX);
        *ret_off = off;
        *ret_len = len;
        *ret_count = count;
        return 0;
}

/* The zip64 extended information (APPNOTE 4.5.3): each field that the
 * record holds as 0xffffffff follows, in this order. */
static void zip64_extra(struct layer_zip_member *m, const unsigned char *x, size_t xlen,
                        bool *ret_bad)
{
        size_t o = 0;

        *ret_bad = false;
        while (o + 4 <= xlen) {
                uint16_t id = le16(x + o), n = le16(x + o + 2);
                const unsigned char *d = x + o + 4;
                size_t k = 0;

                if (o + 4 + n > xlen)
                        break;
                if (id == 0x0001) {
                        uint64_t *f[] = {&m->usize, &m->csize, &m->header};
                        for (size_t i = 0; i < ARRAY_SIZE(f); i++) {
                                if (*f[i] != 0xffffffffu)
                                        continue;
                                if (k + 8 > n) {
                                        *ret_bad = true;
                                        return;
                                }
                                *f[i] = le64(d + k);
                                k += 8;
                        }
                }
                o += 4 + (size_t)n;
        }
}

static int cmp_member(const void *a, const void *b)
{
        return strcmp(((const struct layer_zip_member *)a)->name,
                      ((const struct layer_zip_member *)b)->name);
}

static int parse_cd(struct layer_zip *z, const unsigned char *cd, size_t len, uint64_t count,
                    struct kiln_error *err)
{
        size_t o = 0;

        if (count > len / CD_HEADER_SIZE)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid zip '%s': %llu members in %zu bytes", z->path,
                                      (unsigned long long)count, len);
        z->members = calloc(count ? count : 1, sizeof(*z->members));
        if (!z->members)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        while (o < len) {
                const unsigned char *h = cd + o;
                struct layer_zip_member *m;
                size_t nlen, xlen, clen;
                bool bad;

                if (len - o < CD_HEADER_SIZE || memcmp(h, "PK\001\002", 4) || z->n == count)
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "invalid zip '%s': bad central directory", z->path);
                nlen = le16(h + 28);
                xlen = le16(h + 30);
                clen = le16(h + 32);
                if (len - o - CD_HEADER_SIZE < nlen + xlen + clen || le16(h + 34) ||
                    memchr(h + CD_HEADER_SIZE, '\0', nlen))
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "invalid zip '%s': bad central directory", z->path);
                m = &z->members[z->n];
                m->name = strndup((const char *)h + CD_HEADER_SIZE, nlen);
                if (!m->name)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                z->n++;
                m->flags = le16(h + 8);
                m->method = le16(h + 10);
                m->crc32 = le32(h + 16);
                m->csize = le32(h + 20);
                m->usize = le32(h + 24);
                m->header = le32(h + 42);
                zip64_extra(m, h + CD_HEADER_SIZE + nlen, xlen, &bad);
                if (bad)
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "invalid zip '%s': bad zip64 field of '%s'", z->path,
                                              m->name);
                o += CD_HEADER_SIZE + nlen + xlen + clen;
        }
        if (z->n != count)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid zip '%s': bad central directory", z->path);
        qsort(z->members, z->n, sizeof(*z->members), cmp_member);
        for (size_t i = 1; i < z->n; i++)
                if (!strcmp(z->members[i - 1].name, z->members[i].name))
                        z->members[i - 1].twin = z->members[i].twin = true;
        return 0;
}

struct layer_zip *layer_zip_open(const char *path, struct kiln_error *err)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        _cleanup_free_ unsigned char *cd = NULL;
        struct layer_zip *z = NULL;
        uint64_t off, len, count;
        struct stat st;

        if (fd < 0) {
                kiln_error_set_errno(err, errno == ENOENT ? KILN_E_NOT_FOUND : KILN_E_IO, errno,
                                     "cannot open '%s'", path);
                return NULL;
        }
        if (fstat(fd, &st) < 0) {
                kiln_error_set_errno(err, KILN_E_IO, errno, "cannot stat '%s'", path);
                close(fd);
                return NULL;
        }
        if (find_cd(fd, path, (uint64_t)st.st_size, &off, &len, &count, err) < 0) {
                close(fd);
                return NULL;
        }
        z = calloc(1, sizeof(*z));
        if (!z) {
                close(fd);
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        z->fd = fd;
        cd = malloc(len ? len : 1);
        if (!cd || !(z->path = strdup(path))) {
                layer_zip_free(z);
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        z->cd_offset = off;
        if (pread_all(fd, cd, len, off, path, err) < 0 || parse_cd(z, cd, len, count, err) < 0) {
                layer_zip_free(z);
                return NULL;
        }
        return z;
}

struct layer_zip_member *layer_zip_find(const struct layer_zip *z, const char *name)
{
        struct layer_zip_member key = {.name = (char *)(uintptr_t)name};
        struct layer_zip_member *m =
            bsearch(&key, z->members, z->n, sizeof(*z->members), cmp_member);

        return m && !m->twin ? m : NULL;
}

int layer_zip_locate(const struct layer_zip *z, struct layer_zip_member *m, struct kiln_error *err)
{
        int fd = z->fd;
        unsigned char h[LOCAL_HEADER_SIZE];
        size_t nlen = strlen(m->name);
        _cleanup_free_ char *name = malloc(nlen + 1);
        uint64_t data;

        if (!name)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (m->header > z->cd_offset || pread_all(fd, h, sizeof(h), m->header, z->path, err) < 0)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid zip '%s': no local header for '%s'", z->path,
                                      m->name);
        if (memcmp(h, "PK\003\004", 4) || le16(h + 26) != nlen ||
            pread_all(fd, name, nlen, m->header + LOCAL_HEADER_SIZE, z->path, err) < 0 ||
            memcmp(name, m->name, nlen))
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid zip '%s': the local header of '%s' does not match",
                                      z->path, m->name);
        data = m->header + LOCAL_HEADER_SIZE + nlen + le16(h + 28);
        if (data > z->cd_offset || z->cd_offset - data < m->csize)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid zip '%s': the data of '%s' runs past its end",
                                      z->path, m->name);
        m->data = data;
        m->located = true;
        return 0;
}

/* ---- the reader ---- */

struct zip_reader {
        struct oci_reader base;
        int fd;
        char *path, *name;
        uint16_t method;
        uint64_t pos, end;   /* compressed bytes still to read: [pos, end) */
        uint64_t out, usize; /* uncompressed bytes given, expected */
        uint32_t crc, want_crc;
        bool z_init, ended, done;
        z_stream z;
        unsigned char *in;
};

static ssize_t zip_fail(struct zip_reader *r, const char *why, struct kiln_error *err)
{
        kiln_error_set(err, KILN_E_INVALID, "cannot read '%s' in '%s': %s", r->name, r->path, why);
        return -1;
}

/* The member's end: every byte read, as many as recorded, the right CRC. */
static ssize_t zip_end(struct zip_reader *r, struct kiln_error *err)
{
        if (r->pos != r->end || (r->z_init && r->z.avail_in))
                return zip_fail(r, "compressed data is wrong size", err);
        if (r->out != r->usize)
                return zip_fail(r, "uncompressed data is wrong size", err);
        if (r->crc != r->want_crc)
                return zip_fail(r, "bad CRC", err);
        r->done = true;
        return 0;
}

static ssize_t fill(struct zip_reader *r, unsigned char *buf, size_t want, struct kiln_error *err)
{
        ssize_t n;

        if (want > r->end - r->pos)
                want = (size_t)(r->end - r->pos);
        do
                n = pread(r->fd, buf, want, (off_t)r->pos);
        while (n < 0 && errno == EINTR);
        if (n < 0) {
                kiln_error_set_errno(err, KILN_E_IO, errno, "cannot read '%s'", r->path);
                return -1;
        }
        if (n == 0 && want > 0)
                return zip_fail(r, "truncated", err);
        r->pos += (uint64_t)n;
        return n;
}

/* Inflates into buf until some bytes come out or the stream ends. */
static ssize_t inflate_some(struct zip_reader *r, void *buf, size_t len, struct kiln_error *err)
{
        r->z.next_out = buf;
        r->z.avail_out = (uInt)len;
        while (r->z.avail_out == len) {
                int zr;

                if (r->z.avail_in == 0 && r->pos < r->end) {
                        ssize_t k = fill(r, r->in, READ_BUF, err);
                        if (k < 0)
                                return -1;
                        r->z.next_in = r->in;
                        r->z.avail_in = (uInt)k;
                }
                zr = inflate(&r->z, Z_NO_FLUSH);
                if (zr == Z_STREAM_END) {
                        r->ended = true;
                        break;
                }
                if (zr == Z_BUF_ERROR && r->z.avail_in == 0 && r->pos == r->end)
                        return zip_fail(r, "truncated deflate data", err);
                if (zr != Z_OK && zr != Z_BUF_ERROR)
                        return zip_fail(r, r->z.msg ? r->z.msg : "bad deflate data", err);
        }
        return (ssize_t)(len - r->z.avail_out);
}

static ssize_t zip_read(struct oci_reader *base, void *buf, size_t len, struct kiln_error *err)
{
        struct zip_reader *r = (struct zip_reader *)base;
        ssize_t n;

        if (r->done || len == 0)
                return 0;
        if (len > UINT32_MAX)
                len = UINT32_MAX;
        if (r->ended || (r->method == 0 && r->pos == r->end))
                return zip_end(r, err);
        n = r->method == 0 ? fill(r, buf, len, err) : inflate_some(r, buf, len, err);
        if (n < 0)
                return -1;
        if (n == 0)
                return zip_end(r, err);
        r->crc = (uint32_t)crc32(r->crc, buf, (uInt)n);
        r->out += (uint64_t)n;
        if (r->out > r->usize)
                return zip_fail(r, "uncompressed data is wrong size", err);
        return n;
}

static void zip_reader_free(struct oci_reader *base)
{
        struct zip_reader *r = (struct zip_reader *)base;

        if (r->z_init)
                inflateEnd(&r->z);
        free(r->in);
        free(r->path);
        free(r->name);
        free(r);
}

struct oci_reader *layer_zip_reader(int fd, const char *path, const struct layer_zip_member *m,
                                    struct kiln_error *err)
{
        struct zip_reader *r;

        if (!m->located || (m->method != 0 && m->method != 8) || (m->flags & 0x41)) {
                kiln_error_set(
                    err, KILN_E_UNSUPPORTED,
                    "cannot read '%s' in '%s': not located, or neither stored nor deflated",
                    m->name, path);
                return NULL;
        }
        r = calloc(1, sizeof(*r));
        if (!r) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        r->fd = fd;
        r->base.read = zip_read;
        r->base.free = zip_reader_free;
        r->method = m->method;
        r->pos = m->data;
        r->end = m->data + m->csize;
        r->usize = m->usize;
        r->want_crc = m->crc32;
        r->crc = (uint32_t)crc32(0, NULL, 0);
        r->path = strdup(path);
        r->name = strdup(m->name);
        if (!r->path || !r->name)
                goto nomem;
        if (m->method == 8) {
                r->in = malloc(READ_BUF);
                if (!r->in || inflateInit2(&r->z, -MAX_WBITS) != Z_OK)
                        goto nomem;
                r->z_init = true;
        }
        return &r->base;
nomem:
        zip_reader_free(&r->base);
        kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        return NULL;
}
