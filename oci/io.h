/* oci/io.h: byte streams and safe files.
 *
 * A reader is a pull stream: read() returns the number of bytes read, 0 at
 * the end, -1 on error (err set).  Readers stack: a verified reader wraps
 * any reader, counts and hashes what passes through, never reads more than
 * size+1 bytes, and fails at the end (or as soon as the size is passed) when
 * the content does not match the descriptor.  Consumers that stop early
 * (tar end-of-archive) call oci_reader_drain() so the check still runs.
 *
 * A writer is a push stream with write() and close(); close() finishes the
 * stream (flush, verify, commit) and free() drops it, rolling back whatever
 * was not closed.
 *
 * Files are replaced atomically: a temp file in the same directory, fsync,
 * rename, fsync of the directory.
 */
#ifndef KILN_OCI_IO_H
#define KILN_OCI_IO_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "digest.h"
#include "error.h"

struct oci_reader {
        ssize_t (*read)(struct oci_reader *r, void *buf, size_t len, struct kiln_error *err);
        void (*free)(struct oci_reader *r);
        /* May be NULL.  True when the stream itself fails (before its end
         * is returned) unless its content is exactly d's bytes of size: a
         * verified reader, or one passing such a reader's bytes through. */
        bool (*verifies)(struct oci_reader *r, const struct oci_digest *d, int64_t size);
        /* A new reader of the same bytes from their start, whatever was read
         * from r; NULL when the stream cannot be read again.  May be NULL. */
        struct oci_reader *(*reopen)(struct oci_reader *r, struct kiln_error *err);
};

static inline bool oci_reader_verifies(struct oci_reader *r, const struct oci_digest *d,
                                       int64_t size)
{
        return r->verifies && r->verifies(r, d, size);
}

static inline ssize_t oci_reader_read(struct oci_reader *r, void *buf, size_t len,
                                      struct kiln_error *err)
{
        return r->read(r, buf, len, err);
}

/* A fresh stream of the same bytes (a file opened again, a download
 * started again); NULL with err set when r cannot do it.  r stays open. */
struct oci_reader *oci_reader_reopen(struct oci_reader *r, struct kiln_error *err);

void oci_reader_free(struct oci_reader *r);
void oci_reader_freep(struct oci_reader **r);

/* Reads until the end, discarding the bytes. */
int oci_reader_drain(struct oci_reader *r, struct kiln_error *err);

/* Reads the whole stream into a new NUL-terminated buffer; fails with
 * KILN_E_LIMIT naming `what` when it holds more than cap bytes. */
int oci_reader_read_all(struct oci_reader *r, size_t cap, const char *what, char **ret_buf,
                        size_t *ret_len, struct kiln_error *err);

/* A reader over fd from its current offset; closes it on free when own is
 * true.  Over a regular file it can be reopened (the same file, opened
 * again through /proc/self/fd, from the same offset). */
struct oci_reader *oci_reader_from_fd(int fd, bool own, struct kiln_error *err);
/* A reader over a copy of buf. */
struct oci_reader *oci_reader_from_buffer(const void *buf, size_t len, struct kiln_error *err);

/* Wraps inner (taking it over) and checks it against want/size.  An inner
 * reader that already verifies want and size is returned as it is: each
 * byte is hashed once. */
struct oci_reader *oci_verified_reader_new(struct oci_reader *inner, const struct oci_digest *want,
                                           int64_t size, struct kiln_error *err);

struct oci_writer {
        int (*write)(struct oci_writer *w, const void *buf, size_t len, struct kiln_error *err);
        int (*close)(struct oci_writer *w, struct kiln_error *err);
        void (*free)(struct oci_writer *w);
};

static inline int oci_writer_write(struct oci_writer *w, const void *buf, size_t len,
                                   struct kiln_error *err)
{
        return w->write(w, buf, len, err);
}

static inline int oci_writer_close(struct oci_writer *w, struct kiln_error *err)
{
        return w->close ? w->close(w, err) : 0;
}

void oci_writer_free(struct oci_writer *w);

/* Copies r into w until the end of r (w is not closed). */
int oci_copy_stream(struct oci_reader *r, struct oci_writer *w, int64_t *ret_bytes,
                    struct kiln_error *err);

/* File helpers. */
int kiln_mkdir_p(const char *path, mode_t mode, struct kiln_error *err);
int kiln_fsync_dir(const char *dir, struct kiln_error *err);
/* Writes buf to path atomically (temp + fsync + rename + fsync of dir). */
int kiln_write_file_atomic(const char *path, const void *buf, size_t len, mode_t mode,
                           struct kiln_error *err);
/* Reads a regular file (not a symlink) of at most cap bytes. */
/* Opens path (relative to dfd) for reading if it is a regular file, without
 * following a symlink and without waiting on a FIFO or a device: the type is
 * checked with fstat on the open file before anything is read.  Returns the
 * fd (blocking again), -1 with errno when it cannot be opened (ELOOP: a
 * symlink), -2 when it is not a regular file; ret_st is its stat. */
int kiln_open_regular(int dfd, const char *path, struct stat *ret_st);
int kiln_read_file(const char *path, size_t cap, char **ret_buf, size_t *ret_len,
                   struct kiln_error *err);
/* Removes a directory tree; best effort, ignores errors. */
void kiln_rm_rf(const char *path);
/* The directory part of path in a new string ("." when none). */
char *kiln_dirname(const char *path);

#endif
