#include "writer.h"

#include <archive.h>
#include <errno.h>
#include <libdeflate.h>
#include <locale.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <zstd.h>

#include "image_edit.h"
#include "util.h"

/* libdeflate's level 2 compresses shared libraries about as well as the
 * gzip layers of umoci and docker (pgzip's default; 2% smaller on
 * /usr/lib/x86_64-linux-gnu) at about 1.6 times their speed; level 6 saves
 * another 5% at half the speed (docs/layers.md). */
#define GZIP_DEFAULT_LEVEL 2
#define ZSTD_DEFAULT_LEVEL 3
#define READ_CHUNK (256u * 1024)
#define ZSTD_IN_BUF (1u << 20)

/* ---- the compressed end: blob hash, size, sink ---- */

struct layer_writer;
static int emit(struct layer_writer *w, const void *buf, size_t len, struct kiln_error *err);

/* ---- parallel gzip: fixed blocks, one gzip member each ---- */

enum slot_state { SLOT_FREE, SLOT_QUEUED, SLOT_BUSY, SLOT_DONE };

struct gz_slot {
        enum slot_state state;
        unsigned char *in;
        size_t in_len;
        unsigned char *out;
        size_t out_len;
};

struct gz_pool {
        int level;
        unsigned n_threads;
        unsigned n_slots;
        struct gz_slot *slots;
        unsigned head;   /* slot being filled */
        unsigned tail;   /* oldest slot not yet emitted */
        unsigned queued; /* slots between tail and head */
        size_t out_cap;
        pthread_t *threads;
        unsigned n_started;
        pthread_mutex_t mu;
        pthread_cond_t work; /* a slot was queued, or stop */
        pthread_cond_t done; /* a slot finished */
        bool stop;
        bool failed;
        struct libdeflate_compressor *inline_c; /* one thread: compress here */
};

static void *gz_worker(void *arg)
{
        struct gz_pool *p = arg;
        struct libdeflate_compressor *c = libdeflate_alloc_compressor(p->level);

        pthread_mutex_lock(&p->mu);
        for (;;) {
                struct gz_slot *s = NULL;

                while (!p->stop) {
                        for (unsigned i = 0; i < p->n_slots; i++)
                                if (p->slots[i].state == SLOT_QUEUED) {
                                        s = &p->slots[i];
                                        break;
                                }
                        if (s)
                                break;
                        pthread_cond_wait(&p->work, &p->mu);
                }
                if (!s)
                        break;
                s->state = SLOT_BUSY;
                pthread_mutex_unlock(&p->mu);
                s->out_len =
                    c ? libdeflate_gzip_compress(c, s->in, s->in_len, s->out, p->out_cap) : 0;
                pthread_mutex_lock(&p->mu);
                if (s->out_len == 0)
                        p->failed = true;
                s->state = SLOT_DONE;
                pthread_cond_broadcast(&p->done);
        }
        pthread_mutex_unlock(&p->mu);
        libdeflate_free_compressor(c);
        return NULL;
}

static void gz_pool_free(struct gz_pool *p)
{
        if (!p)
                return;
        if (p->threads) {
                pthread_mutex_lock(&p->mu);
                p->stop = true;
                pthread_cond_broadcast(&p->work);
                pthread_mutex_unlock(&p->mu);
                for (unsigned i = 0; i < p->n_started; i++)
                        pthread_join(p->threads[i], NULL);
                free(p->threads);
        }
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->work);
        pthread_cond_destroy(&p->done);
        for (unsigned i = 0; p->slots && i < p->n_slots; i++) {
                free(p->slots[i].in);
                free(p->slots[i].out);
        }
        free(p->slots);
        libdeflate_free_compressor(p->inline_c);
        free(p);
}

static struct gz_pool *gz_pool_new(int level, unsigned n_threads, struct kiln_error *err)
{
        struct gz_pool *p = calloc(1, sizeof(*p));

        if (!p)
                goto nomem;
        pthread_mutex_init(&p->mu, NULL);
        pthread_cond_init(&p->work, NULL);
        pthread_cond_init(&p->done, NULL);
        p->level = level;
        p->n_threads = n_threads;
        p->n_slots = n_threads > 1 ? 2 * n_threads : 1;
        p->slots = calloc(p->n_slots, sizeof(*p->slots));
        if (!p->slots)
                goto nomem;
        {
                struct libdeflate_compressor *probe = libdeflate_alloc_compressor(level);
                if (!probe) {
                        gz_pool_free(p);
                        kiln_error_set(err, KILN_E_USAGE, "invalid gzip level %d: use 0 to 12",
                                       level);
                        return NULL;
                }
                p->out_cap = libdeflate_gzip_compress_bound(probe, LAYER_GZIP_BLOCK);
                if (n_threads <= 1)
                        p->inline_c = probe;
                else
                        libdeflate_free_compressor(probe);
        }
        for (unsigned i = 0; i < p->n_slots; i++) {
                p->slots[i].in = malloc(LAYER_GZIP_BLOCK);
                p->slots[i].out = malloc(p->out_cap);
                if (!p->slots[i].in || !p->slots[i].out)
                        goto nomem;
        }
        if (n_threads > 1) {
                p->threads = calloc(n_threads, sizeof(*p->threads));
                if (!p->threads)
                        goto nomem;
                for (unsigned i = 0; i < n_threads; i++) {
                        if (pthread_create(&p->threads[i], NULL, gz_worker, p) != 0) {
                                gz_pool_free(p);
                                kiln_error_set(err, KILN_E_INTERNAL,
                                               "cannot start the compression threads");
                                return NULL;
                        }
                        p->n_started++;
                }
        }
        return p;
nomem:
        gz_pool_free(p);
        kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        return NULL;
}

/* Emits the oldest queued slot once it is compressed. */
static int gz_emit_tail(struct gz_pool *p, struct layer_writer *w, struct kiln_error *err)
{
        struct gz_slot *s = &p->slots[p->tail];
        int rc;

        pthread_mutex_lock(&p->mu);
        while (s->state != SLOT_DONE)
                pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
        if (s->out_len == 0)
                return kiln_error_set(err, KILN_E_INTERNAL, "gzip compression failed");
        rc = emit(w, s->out, s->out_len, err);
        s->state = SLOT_FREE;
        s->in_len = 0;
        p->tail = (p->tail + 1) % p->n_slots;
        p->queued--;
        return rc;
}

/* Queues the slot being filled and makes the next one free. */
static int gz_submit(struct gz_pool *p, struct layer_writer *w, struct kiln_error *err)
{
        struct gz_slot *s = &p->slots[p->head];

        if (p->inline_c) {
                s->out_len =
                    libdeflate_gzip_compress(p->inline_c, s->in, s->in_len, s->out, p->out_cap);
                s->in_len = 0;
                if (s->out_len == 0)
                        return kiln_error_set(err, KILN_E_INTERNAL, "gzip compression failed");
                return emit(w, s->out, s->out_len, err);
        }
        pthread_mutex_lock(&p->mu);
        s->state = SLOT_QUEUED;
        pthread_cond_signal(&p->work);
        pthread_mutex_unlock(&p->mu);
        p->head = (p->head + 1) % p->n_slots;
        p->queued++;
        if (p->queued == p->n_slots)
                return gz_emit_tail(p, w, err);
        return 0;
}

static int gz_write(struct gz_pool *p, struct layer_writer *w, const unsigned char *buf, size_t len,
                    struct kiln_error *err)
{
        while (len) {
                struct gz_slot *s = &p->slots[p->head];
                size_t n = LAYER_GZIP_BLOCK - s->in_len;

                if (n > len)
                        n = len;
                memcpy(s->in + s->in_len, buf, n);
                s->in_len += n;
                buf += n;
                len -= n;
                if (s->in_len == LAYER_GZIP_BLOCK && gz_submit(p, w, err) < 0)
                        return -1;
        }
        return 0;
}

static int gz_finish(struct gz_pool *p, struct layer_writer *w, bool any_input,
                     struct kiln_error *err)
{
        /* An empty stream still gets one (empty) member, so the blob is valid gzip. */
        if ((p->slots[p->head].in_len > 0 || !any_input) && gz_submit(p, w, err) < 0)
                return -1;
        while (p->queued)
                if (gz_emit_tail(p, w, err) < 0)
                        return -1;
        return 0;
}

/* ---- the writer ---- */

struct layer_writer {
        struct layer_writer_opts opts;
        struct oci_writer *sink;
        struct archive *a;
        struct oci_hasher tar_hash;
        struct oci_hasher blob_hash;
        int64_t tar_size;
        int64_t blob_size;
        struct gz_pool *gz;
        ZSTD_CCtx *zc;
        unsigned char *zout;
        size_t zout_cap;
        unsigned char *zin; /* tar bytes gathered into big calls: MT zstd is slow on small ones */
        size_t zin_len;
        struct oci_writer *tee;   /* gets the tar too (layer_writer_set_tee), or NULL */
        struct kiln_error cb_err; /* an error raised inside a libarchive callback */
        bool cb_failed;
        bool finished;
        unsigned char *buf;
        locale_t utf8; /* C.UTF-8 for LC_CTYPE while a header is written, or 0 */
};

static int emit(struct layer_writer *w, const void *buf, size_t len, struct kiln_error *err)
{
        /* uncompressed, the blob is the tar: its digest is the diffID */
        if (w->opts.compression != OCI_COMPRESSION_NONE)
                oci_hasher_update(&w->blob_hash, buf, len);
        w->blob_size += (int64_t)len;
        return oci_writer_write(w->sink, buf, len, err);
}

static int zstd_push(struct layer_writer *w, const void *buf, size_t len, ZSTD_EndDirective end,
                     struct kiln_error *err)
{
        ZSTD_inBuffer in = {buf, len, 0};

        for (;;) {
                ZSTD_outBuffer out = {w->zout, w->zout_cap, 0};
                size_t rem = ZSTD_compressStream2(w->zc, &out, &in, end);

                if (ZSTD_isError(rem))
                        return kiln_error_set(err, KILN_E_INTERNAL, "zstd compression failed: %s",
                                              ZSTD_getErrorName(rem));
                if (out.pos && emit(w, w->zout, out.pos, err) < 0)
                        return -1;
                if (end == ZSTD_e_end ? rem == 0 : in.pos == in.size)
                        return 0;
        }
}

static int compress_write(struct layer_writer *w, const void *buf, size_t len,
                          struct kiln_error *err)
{
        switch (w->opts.compression) {
        case OCI_COMPRESSION_GZIP:
                return gz_write(w->gz, w, buf, len, err);
        case OCI_COMPRESSION_ZSTD:
                while (len) {
                        size_t n = ZSTD_IN_BUF - w->zin_len;
                        if (n > len)
                                n = len;
                        memcpy(w->zin + w->zin_len, buf, n);
                        w->zin_len += n;
                        buf = (const unsigned char *)buf + n;
                        len -= n;
                        if (w->zin_len == ZSTD_IN_BUF) {
                                w->zin_len = 0;
                                if (zstd_push(w, w->zin, ZSTD_IN_BUF, ZSTD_e_continue, err) < 0)
                                        return -1;
                        }
                }
                return 0;
        default:
                return emit(w, buf, len, err);
        }
}

static la_ssize_t tar_out(struct archive *a, void *ctx, const void *buf, size_t len)
{
        struct layer_writer *w = ctx;

        (void)a;
        oci_hasher_update(&w->tar_hash, buf, len);
        w->tar_size += (int64_t)len;
        if (w->tee) {
                struct kiln_error e = KILN_ERROR_INIT;
                /* the tee's failure is its own: it is not written to again,
                 * the layer goes on */
                if (oci_writer_write(w->tee, buf, len, &e) < 0)
                        w->tee = NULL;
        }
        if (compress_write(w, buf, len, &w->cb_err) < 0) {
                w->cb_failed = true;
                return -1;
        }
        return (la_ssize_t)len;
}

int layer_writer_opts_init(struct layer_writer_opts *opts, struct kiln_error *err)
{
        bool set;

        memset(opts, 0, sizeof(*opts));
        opts->compression = OCI_COMPRESSION_GZIP;
        opts->level = -1;
        /* the same rule as the image's created time (oci/image_edit.h) */
        return oci_source_date_epoch(&opts->mtime, &set, err);
}

int layer_compression_parse(const char *s, enum oci_compression *ret, struct kiln_error *err)
{
        if (!strcmp(s, "gzip"))
                *ret = OCI_COMPRESSION_GZIP;
        else if (!strcmp(s, "zstd"))
                *ret = OCI_COMPRESSION_ZSTD;
        else if (!strcmp(s, "none"))
                *ret = OCI_COMPRESSION_NONE;
        else
                return kiln_error_set(err, KILN_E_USAGE,
                                      "invalid compression '%s': use gzip, zstd or none", s);
        return 0;
}

static int effective_level(enum oci_compression c, int level)
{
        if (level >= 0)
                return level;
        return c == OCI_COMPRESSION_ZSTD ? ZSTD_DEFAULT_LEVEL : GZIP_DEFAULT_LEVEL;
}

void layer_compressor_id(enum oci_compression c, int level, char *buf, size_t len)
{
        level = effective_level(c, level);
        switch (c) {
        case OCI_COMPRESSION_GZIP:
                snprintf(buf, len, "gzip-libdeflate-%s-%d", LIBDEFLATE_VERSION_STRING, level);
                break;
        case OCI_COMPRESSION_ZSTD:
                snprintf(buf, len, "zstd-%s-%d", ZSTD_versionString(), level);
                break;
        default:
                snprintf(buf, len, "none");
                break;
        }
}

static unsigned online_cpus(void)
{
        long n = sysconf(_SC_NPROCESSORS_ONLN);

        return n > 0 ? (unsigned)n : 1;
}

void layer_writer_free(struct layer_writer *w)
{
        if (!w)
                return;
        if (w->a)
                archive_write_free(w->a);
        gz_pool_free(w->gz);
        ZSTD_freeCCtx(w->zc);
        free(w->zout);
        free(w->zin);
        free(w->buf);
        if (w->utf8)
                freelocale(w->utf8);
        oci_hasher_release(&w->tar_hash);
        oci_hasher_release(&w->blob_hash);
        free(w);
}

void layer_writer_freep(struct layer_writer **w)
{
        layer_writer_free(*w);
        *w = NULL;
}

static int setup_zstd(struct layer_writer *w, int level, unsigned threads, struct kiln_error *err)
{
        size_t r;

        w->zc = ZSTD_createCCtx();
        w->zout_cap = ZSTD_CStreamOutSize();
        w->zout = malloc(w->zout_cap);
        w->zin = malloc(ZSTD_IN_BUF);
        if (!w->zc || !w->zout || !w->zin)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (level < 1 || level > ZSTD_maxCLevel())
                return kiln_error_set(err, KILN_E_USAGE, "invalid zstd level %d: use 1 to %d",
                                      level, ZSTD_maxCLevel());
        r = ZSTD_CCtx_setParameter(w->zc, ZSTD_c_compressionLevel, level);
        if (!ZSTD_isError(r))
                /* Always the MT code path (see writer.h), even for one worker. */
                r = ZSTD_CCtx_setParameter(w->zc, ZSTD_c_nbWorkers, (int)(threads ? threads : 1));
        if (!ZSTD_isError(r))
                /* A fixed job size: the bytes depend on it (never on the worker
                 * count), and it bounds memory to a few jobs in flight. */
                r = ZSTD_CCtx_setParameter(w->zc, ZSTD_c_jobSize, LAYER_ZSTD_JOB_SIZE);
        if (ZSTD_isError(r))
                return kiln_error_set(err, KILN_E_UNSUPPORTED,
                                      "zstd multithreaded mode is not available: %s",
                                      ZSTD_getErrorName(r));
        return 0;
}

struct layer_writer *layer_writer_new(struct oci_writer *sink, const struct layer_writer_opts *opts,
                                      struct kiln_error *err)
{
        struct layer_writer *w = calloc(1, sizeof(*w));
        unsigned threads;
        int level;

        if (!w) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        w->opts = *opts;
        w->sink = sink;
        threads = opts->threads > 0 ? (unsigned)opts->threads : online_cpus();
        level = effective_level(opts->compression, opts->level);
        w->opts.level = level;
        if (oci_hasher_init(&w->tar_hash, OCI_DIGEST_SHA256, err) < 0 ||
            oci_hasher_init(&w->blob_hash, OCI_DIGEST_SHA256, err) < 0)
                goto fail;
        w->buf = malloc(READ_CHUNK);
        if (!w->buf) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto fail;
        }
        switch (opts->compression) {
        case OCI_COMPRESSION_GZIP:
                if (level > 12) {
                        kiln_error_set(err, KILN_E_USAGE, "invalid gzip level %d: use 0 to 12",
                                       level);
                        goto fail;
                }
                w->gz = gz_pool_new(level, threads, err);
                if (!w->gz)
                        goto fail;
                break;
        case OCI_COMPRESSION_ZSTD:
                if (setup_zstd(w, level, threads, err) < 0)
                        goto fail;
                break;
        case OCI_COMPRESSION_NONE:
                break;
        default:
                kiln_error_set(err, KILN_E_UNSUPPORTED, "unsupported layer compression");
                goto fail;
        }
        /* docs/layers.md: only names that are not UTF-8 get hdrcharset=BINARY.
         * In the C locale libarchive can convert no non-ASCII name to UTF-8
         * and marks every one BINARY; under C.UTF-8 (LC_CTYPE only, this
         * thread only, while a header is written) a UTF-8 name is stored as
         * it is.  Without C.UTF-8, every non-ASCII name stays BINARY. */
        w->utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
        w->a = archive_write_new();
        if (!w->a) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto fail;
        }
        /* pax_restricted: extended headers only where ustar cannot hold the
         * entry (long or non-ASCII names, big sizes, xattrs), so nothing
         * host-specific is ever recorded.  Names are bytes: kiln never calls
         * setlocale(), so libarchive runs in the C locale and writes names
         * that are not valid UTF-8 with a per-entry hdrcharset=BINARY. */
        if (archive_write_set_format_pax_restricted(w->a) != ARCHIVE_OK ||
            archive_write_set_bytes_per_block(w->a, 10240) != ARCHIVE_OK ||
            archive_write_set_bytes_in_last_block(w->a, 1) != ARCHIVE_OK ||
            archive_write_open2(w->a, w, NULL, tar_out, NULL, NULL) != ARCHIVE_OK) {
                kiln_error_set(err, KILN_E_INTERNAL, "cannot start the tar writer: %s",
                               archive_error_string(w->a));
                goto fail;
        }
        return w;
fail:
        layer_writer_free(w);
        return NULL;
}

void layer_writer_set_tee(struct layer_writer *w, struct oci_writer *tee)
{
        w->tee = tee;
}

static int archive_failed(struct layer_writer *w, const char *what, const char *name,
                          struct kiln_error *err)
{
        if (w->cb_failed) {
                *err = w->cb_err;
                kiln_error_prefix(err, "%s '%s'", what, name);
                return -1;
        }
        return kiln_error_set(err, KILN_E_IO, "cannot %s '%s': %s", what, name,
                              archive_error_string(w->a));
}

static struct archive_entry *normalize(struct layer_writer *w, struct archive_entry *e)
{
        struct archive_entry *n = archive_entry_new();
        mode_t type = archive_entry_filetype(e);

        if (!n)
                return NULL;
        archive_entry_copy_pathname(n, archive_entry_pathname(e));
        archive_entry_set_filetype(n, type);
        archive_entry_set_perm(n, archive_entry_perm(e) & 07777);
        archive_entry_set_mtime(n, (time_t)w->opts.mtime, 0);
        if (w->opts.keep_owners) {
                archive_entry_set_uid(n, archive_entry_uid(e));
                archive_entry_set_gid(n, archive_entry_gid(e));
                if (archive_entry_uname(e))
                        archive_entry_copy_uname(n, archive_entry_uname(e));
                if (archive_entry_gname(e))
                        archive_entry_copy_gname(n, archive_entry_gname(e));
        } else {
                archive_entry_set_uid(n, 0);
                archive_entry_set_gid(n, 0);
        }
        if (archive_entry_hardlink(e)) {
                archive_entry_copy_hardlink(n, archive_entry_hardlink(e));
                archive_entry_set_size(n, 0);
        } else if (type == AE_IFLNK) {
                archive_entry_copy_symlink(n, archive_entry_symlink(e));
        } else if (type == AE_IFREG) {
                archive_entry_set_size(n, archive_entry_size(e));
        } else if (type == AE_IFCHR || type == AE_IFBLK) {
                archive_entry_set_rdevmajor(n, archive_entry_rdevmajor(e));
                archive_entry_set_rdevminor(n, archive_entry_rdevminor(e));
        }
        if (w->opts.keep_caps && archive_entry_xattr_count(e) > 0) {
                const char *name;
                const void *val;
                size_t sz;

                archive_entry_xattr_reset(e);
                while (archive_entry_xattr_next(e, &name, &val, &sz) == ARCHIVE_OK)
                        if (!strcmp(name, "security.capability"))
                                archive_entry_xattr_add_entry(n, name, val, sz);
        }
        return n;
}

int layer_writer_add_header(struct layer_writer *w, struct archive_entry *e, struct kiln_error *err)
{
        struct archive_entry *n = normalize(w, e);
        int r;

        if (!n)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        /* ARCHIVE_WARN: a name that is not UTF-8 was written as bytes, with
         * hdrcharset=BINARY on that entry only. */
        {
                locale_t old = w->utf8 ? uselocale(w->utf8) : (locale_t)0;
                r = archive_write_header(w->a, n);
                if (old)
                        uselocale(old);
        }
        archive_entry_free(n);
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN)
                return archive_failed(w, "write entry", archive_entry_pathname(e), err);
        return 0;
}

int layer_writer_add_data(struct layer_writer *w, const void *buf, size_t len,
                          struct kiln_error *err)
{
        la_ssize_t r = archive_write_data(w->a, buf, len);

        if (r < 0 || (size_t)r != len)
                return archive_failed(w, "write data of", "entry", err);
        return 0;
}

/* Reads up to want bytes of an entry's data: from r, else from fd. */
static ssize_t data_read(int fd, struct oci_reader *r, void *buf, size_t want, const char *name,
                         struct kiln_error *err)
{
        ssize_t n;

        if (r)
                return oci_reader_read(r, buf, want, err);
        do
                n = read(fd, buf, want);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                kiln_error_set_errno(err, KILN_E_IO, errno, "cannot read '%s'", name);
        return n;
}

/* The data of a regular file: exactly archive_entry_size() bytes, then the
 * end of fd or r. */
static int add_data(struct layer_writer *w, struct archive_entry *e, int fd, struct oci_reader *r,
                    struct oci_digest *ret_content, struct kiln_error *err)
{
        const char *name = archive_entry_pathname(e);
        struct oci_hasher ch = {0};
        int64_t left;
        int rc = -1;

        if (layer_writer_add_header(w, e, err) < 0)
                return -1;
        if (archive_entry_filetype(e) != AE_IFREG || archive_entry_hardlink(e))
                return 0;
        if (ret_content && oci_hasher_init(&ch, OCI_DIGEST_SHA256, err) < 0)
                return -1;
        left = archive_entry_size(e);
        while (left > 0) {
                size_t want = left < (int64_t)READ_CHUNK ? (size_t)left : READ_CHUNK;
                ssize_t n = data_read(fd, r, w->buf, want, name, err);

                if (n < 0)
                        goto out;
                if (n == 0) {
                        kiln_error_set(err, KILN_E_IO,
                                       "file '%s' shrank while the layer was written", name);
                        goto out;
                }
                if (ret_content)
                        oci_hasher_update(&ch, w->buf, (size_t)n);
                if (archive_write_data(w->a, w->buf, (size_t)n) != n) {
                        archive_failed(w, "write data of", name, err);
                        goto out;
                }
                left -= n;
        }
        {
                /* a reader checks what it read when it reaches its end; a
                 * file's read past its end only looks for growth (fd is -1
                 * for an entry of no data, a whiteout marker) */
                char c;
                ssize_t n;

                if (r) {
                        n = oci_reader_read(r, &c, 1, err);
                        if (n < 0)
                                goto out;
                } else {
                        do
                                n = read(fd, &c, 1);
                        while (n < 0 && errno == EINTR);
                }
                if (n > 0) {
                        kiln_error_set(err, KILN_E_IO, "file '%s' grew while the layer was written",
                                       name);
                        goto out;
                }
        }
        if (ret_content)
                oci_hasher_final(&ch, ret_content);
        rc = 0;
out:
        if (ret_content)
                oci_hasher_release(&ch);
        return rc;
}

int layer_writer_add(struct layer_writer *w, struct archive_entry *e, int fd,
                     struct oci_digest *ret_content, struct kiln_error *err)
{
        return add_data(w, e, fd, NULL, ret_content, err);
}

int layer_writer_add_reader(struct layer_writer *w, struct archive_entry *e, struct oci_reader *r,
                            struct oci_digest *ret_content, struct kiln_error *err)
{
        return add_data(w, e, -1, r, ret_content, err);
}

int layer_writer_finish(struct layer_writer *w, struct layer_result *ret, struct kiln_error *err)
{
        struct layer_result res;

        if (archive_write_close(w->a) != ARCHIVE_OK)
                return archive_failed(w, "finish", "tar", err);
        switch (w->opts.compression) {
        case OCI_COMPRESSION_GZIP:
                if (gz_finish(w->gz, w, w->tar_size > 0, err) < 0)
                        return -1;
                break;
        case OCI_COMPRESSION_ZSTD:
                if (zstd_push(w, w->zin, w->zin_len, ZSTD_e_end, err) < 0)
                        return -1;
                break;
        default:
                break;
        }
        memset(&res, 0, sizeof(res));
        oci_hasher_final(&w->tar_hash, &res.diff_id);
        if (w->opts.compression == OCI_COMPRESSION_NONE)
                res.digest = res.diff_id;
        else
                oci_hasher_final(&w->blob_hash, &res.digest);
        res.size = w->blob_size;
        res.tar_size = w->tar_size;
        switch (w->opts.compression) {
        case OCI_COMPRESSION_GZIP:
                res.media_type = OCI_MT_LAYER_GZIP;
                break;
        case OCI_COMPRESSION_ZSTD:
                res.media_type = OCI_MT_LAYER_ZSTD;
                break;
        default:
                res.media_type = OCI_MT_LAYER;
                break;
        }
        layer_compressor_id(w->opts.compression, w->opts.level, res.compressor,
                            sizeof(res.compressor));
        w->finished = true;
        *ret = res;
        return 0;
}
