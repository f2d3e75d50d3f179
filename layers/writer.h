/* layers/writer.h: writing one layer in one pass.
 *
 * A layer_writer is a pipeline of push stages:
 *
 *   entries -> libarchive (PAX) -> sha256 (diffID) -> compressor
 *           -> sha256 (blob digest) + size -> sink (any oci_writer)
 *
 * Every byte goes through once; memory is constant (the compressor's
 * window and a few fixed buffers).  There is no uncompressed temp file.
 *
 * The writer normalizes every entry it is given, so that the bytes depend
 * only on the names, types, modes, contents and link targets:
 *   - mtime is opts->mtime (SOURCE_DATE_EPOCH or 0), no atime/ctime;
 *   - uid/gid 0 and empty uname/gname unless opts->keep_owners;
 *   - permission bits kept with setuid/setgid/sticky, file type kept;
 *   - xattrs dropped, except security.capability with opts->keep_caps;
 *   - names and link targets are written as raw bytes, whatever the locale;
 *     those that are not UTF-8 with hdrcharset=BINARY.
 * Order is the caller's job (layers/source.h sorts).
 *
 * Compression (docs/layers.md, "reproducibility"):
 *   none  the tar itself;
 *   gzip  libdeflate on fixed 1 MiB blocks, each an independent gzip member
 *         (RFC 1952 2.2: a gzip file is a series of members) with mtime 0,
 *         no name and OS byte 255; blocks are compressed in parallel and
 *         written in order, so the bytes do not depend on the thread count;
 *   zstd  libzstd in multithreaded mode (ZSTD_c_nbWorkers >= 1 even for one
 *         worker: MT output is the same for every worker count but differs
 *         from single-threaded output, facebook/zstd #2238).
 * result.compressor names the compressor, its version and level
 * ("zstd-1.5.4-3"), recorded as the dev.kiln.layer.compression annotation.
 *
 *     w = layer_writer_new(sink, &opts, &err);
 *     layer_writer_set_tee(w, tee);             (optional: the tar, uncompressed)
 *     layer_writer_add(w, entry, fd, &err);     (fd: data of a regular file)
 *     ...
 *     layer_writer_finish(w, &res, &err);       (the sink is not closed)
 *     layer_writer_free(w);
 */
#ifndef KILN_LAYERS_WRITER_H
#define KILN_LAYERS_WRITER_H

#include <archive_entry.h>
#include <stdbool.h>
#include <stdint.h>

#include "digest.h"
#include "error.h"
#include "io.h"
#include "model.h"

#define LAYER_COMPRESSION_ANNOTATION "dev.kiln.layer.compression"
#define LAYER_GZIP_BLOCK (1u << 20)
#define LAYER_ZSTD_JOB_SIZE (4 << 20)

struct layer_writer_opts {
        enum oci_compression compression;
        int level;        /* < 0: the default (gzip 6, zstd 3) */
        int threads;      /* <= 0: the number of online CPUs */
        int64_t mtime;    /* every entry's mtime */
        bool keep_owners; /* keep uid/gid/uname/gname of the entries */
        bool keep_caps;   /* keep the security.capability xattr */
};

/* Fills opts with the defaults: gzip, default level, mtime from
 * SOURCE_DATE_EPOCH when set, else 0.  A malformed SOURCE_DATE_EPOCH is
 * an error (oci_source_date_epoch()); opts is filled all the same, with
 * mtime 0. */
int layer_writer_opts_init(struct layer_writer_opts *opts, struct kiln_error *err);

/* Parses "gzip", "zstd" or "none". */
int layer_compression_parse(const char *s, enum oci_compression *ret, struct kiln_error *err);

/* "zstd-1.5.4-3", "gzip-libdeflate-1.14-6" or "none". */
void layer_compressor_id(enum oci_compression c, int level, char *buf, size_t len);

struct layer_result {
        struct oci_digest diff_id; /* sha256 of the tar */
        struct oci_digest digest;  /* sha256 of the blob */
        int64_t size;              /* of the blob */
        int64_t tar_size;
        const char *media_type; /* static string */
        char compressor[64];
};

struct layer_writer;

/* sink is borrowed; it must outlive the writer. */
struct layer_writer *layer_writer_new(struct oci_writer *sink, const struct layer_writer_opts *opts,
                                      struct kiln_error *err);

/* A second sink of the uncompressed tar, in order, as it is made (before
 * it is compressed): a layer unpacked while it is written
 * (sandbox/rootfs.h).  Set it before the first entry; tee is borrowed and
 * must outlive the writer, and is never closed by it.  A write to it that
 * fails detaches it (nothing more is written to it) and the layer goes on:
 * the tee's owner knows from its own state that its copy is incomplete. */
void layer_writer_set_tee(struct layer_writer *w, struct oci_writer *tee);

/* Writes one entry (normalized, see above).  For a regular file that is not
 * a hardlink, the data is read from fd: exactly archive_entry_size() bytes,
 * or an error naming the entry when the file is shorter or longer (it
 * changed while the layer was written).  ret_content (may be NULL) gets
 * the sha256 of the data. */
int layer_writer_add(struct layer_writer *w, struct archive_entry *e, int fd,
                     struct oci_digest *ret_content, struct kiln_error *err);

/* Same for data that comes from a stream (tar re-normalization). */
int layer_writer_add_header(struct layer_writer *w, struct archive_entry *e,
                            struct kiln_error *err);
int layer_writer_add_data(struct layer_writer *w, const void *buf, size_t len,
                          struct kiln_error *err);

/* Ends the tar and the compressed stream, fills ret. */
int layer_writer_finish(struct layer_writer *w, struct layer_result *ret, struct kiln_error *err);
void layer_writer_free(struct layer_writer *w);
void layer_writer_freep(struct layer_writer **w);

#endif
