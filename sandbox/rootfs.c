/* Unpacked layers for overlayfs, one directory per diffID (rootfs.h). */
#include "rootfs.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model.h"
#include "unpack.h"
#include "util.h"

/* A reader that hashes what passes through it into an outside hasher (the
 * unpacker takes the reader over and frees it; the sum stays). */
struct hashing_reader {
        struct oci_reader base;
        struct oci_reader *inner;
        struct oci_hasher *h;
};

static ssize_t hashing_read(struct oci_reader *r, void *buf, size_t len, struct kiln_error *err)
{
        struct hashing_reader *hr = (struct hashing_reader *)r;
        ssize_t n = oci_reader_read(hr->inner, buf, len, err);

        if (n > 0)
                oci_hasher_update(hr->h, buf, (size_t)n);
        return n;
}

static void hashing_free(struct oci_reader *r)
{
        struct hashing_reader *hr = (struct hashing_reader *)r;

        oci_reader_free(hr->inner);
        free(hr);
}

static struct oci_reader *hashing_reader_new(struct oci_reader *inner, struct oci_hasher *h,
                                             struct kiln_error *err)
{
        struct hashing_reader *hr = calloc(1, sizeof(*hr));

        if (!hr) {
                oci_reader_free(inner);
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        hr->base.read = hashing_read;
        hr->base.free = hashing_free;
        hr->inner = inner;
        hr->h = h;
        return &hr->base;
}

/* Unpacks the layer stream r (compressed as c, taken over) into dir as a
 * lower directory wants it.
 * Every lower directory is made here, from a blob or from a writer's tee,
 * so both are the same tree.  ret_got (may be NULL: not hashed): the
 * digest (alg) of the uncompressed stream. */
static int unpack_stream(const char *dir, enum oci_compression c, struct oci_reader *r,
                         const char *what, enum oci_digest_alg alg, struct oci_digest *ret_got,
                         struct kiln_error *err)
{
        struct layer_unpack_opts uo;
        struct layer_unpacker *u = NULL;
        struct oci_hasher h;
        struct oci_reader *plain;
        int rc = -1;

        if (oci_hasher_init(&h, alg, err) < 0) {
                oci_reader_free(r);
                return -1;
        }
        layer_unpack_opts_init(&uo);
        uo.rootless = true; /* every file the caller's: uid 0 inside */
        uo.overlay_whiteouts = true;
        plain = layer_decompress_reader_new(r, c, uo.max_size, err);
        if (plain && ret_got)
                plain = hashing_reader_new(plain, &h, err);
        u = plain ? layer_unpacker_new(dir, &uo, err) : NULL;
        if (!u) {
                oci_reader_free(plain);
                goto out;
        }
        if (layer_unpacker_apply(u, plain, OCI_MT_LAYER, what, err) < 0 ||
            layer_unpacker_finish(u, err) < 0)
                goto out;
        if (ret_got)
                oci_hasher_final(&h, ret_got);
        rc = 0;
out:
        layer_unpacker_free(u);
        oci_hasher_release(&h);
        return rc;
}

static int check_content(const struct oci_digest *diff_id, const struct oci_digest *got,
                         struct kiln_error *err)
{
        if (strcmp(got->str, diff_id->str))
                return kiln_error_set(err, KILN_E_DIGEST, "layer '%s' unpacks to content %s",
                                      diff_id->str, got->str);
        return 0;
}

/* Moves the whole, verified tmp (under base) to final: lower directories
 * are read through overlayfs, 0755 so a step running as another user inside
 * still sees the tree.  When another build got there first, its directory
 * is as good: ours is dropped.  tmp is gone either way. */
static int place_dir(const char *base, const char *tmp, const char *final, struct kiln_error *err)
{
        struct stat st;

        chmod(tmp, 0755);
        if (rename(tmp, final) < 0) {
                int e = errno;
                kiln_rm_rf(tmp);
                if (!((e == EEXIST || e == ENOTEMPTY) && stat(final, &st) == 0))
                        return kiln_error_set_errno(err, KILN_E_IO, e, "cannot move '%s' to '%s'",
                                                    tmp, final);
        }
        kiln_fsync_dir(base, NULL);
        return 0;
}

int sandbox_rootfs_get(const char *cache_dir, const struct oci_digest *diff_id,
                       const char *media_type, sandbox_open_blob_fn open_blob, void *ctx,
                       char **ret_dir, bool *ret_unpacked, struct kiln_error *err)
{
        _cleanup_free_ char *base = kiln_strdupf("%s/rootfs", cache_dir);
        _cleanup_free_ char *final = kiln_strdupf("%s/rootfs/%s", cache_dir, oci_digest_hex(diff_id));
        _cleanup_free_ char *tmp = kiln_strdupf("%s/rootfs/.tmp-%.16s-XXXXXX", cache_dir,
                                                oci_digest_hex(diff_id));
        enum oci_compression c =
            media_type ? oci_media_type_compression(media_type) : OCI_COMPRESSION_UNKNOWN;
        struct oci_reader *blob;
        struct oci_digest got;
        struct stat st;
        char what[160];

        if (!base || !final || !tmp)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (ret_unpacked)
                *ret_unpacked = false;
        if (stat(final, &st) == 0 && S_ISDIR(st.st_mode)) {
                *ret_dir = steal_ptr(&final);
                return 0;
        }
        if (kiln_mkdir_p(base, 0700, err) < 0)
                return -1;
        if (!mkdtemp(tmp))
                return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create '%s'", tmp);
        snprintf(what, sizeof(what), "layer '%s'", diff_id->str);
        blob = open_blob(ctx, err);
        if (!blob || unpack_stream(tmp, c, blob, what, diff_id->alg, &got, err) < 0 ||
            check_content(diff_id, &got, err) < 0) {
                kiln_rm_rf(tmp);
                return -1;
        }
        if (place_dir(base, tmp, final, err) < 0)
                return -1;
        if (ret_unpacked)
                *ret_unpacked = true;
        *ret_dir = steal_ptr(&final);
        return 0;
}

/* ---- a layer unpacked while it is written ---- */

/* The bytes between the layer writer and the unpacker's thread: a ring of
 * fixed size, so memory does not grow with the layer; a writer that gets
 * ahead waits for the unpacker.  Each side wakes the other only when a
 * batch is there (data to read, room to write) or the stream ends: the
 * writer hands over 10 KiB tar blocks, and one wakeup per block would cost
 * more than the copy. */
#define TEE_RING (1u << 20)
#define TEE_BATCH (256u << 10)

struct tee_reader {
        struct oci_reader base;
        struct sandbox_rootfs_tee *t;
};

struct sandbox_rootfs_tee {
        struct oci_writer w; /* first: the writer's methods get t */
        struct tee_reader r;
        char *base, *tmp;
        pthread_mutex_t mu;
        pthread_cond_t data, room;
        unsigned char *ring;
        size_t head, len; /* the oldest byte, and how many */
        int64_t read;     /* bytes the unpacker has read */
        bool reader_waits, writer_waits;
        bool eof;     /* the writer finished the stream */
        bool abort;   /* the writer gave up: the unpacker stops */
        bool stopped; /* the unpacker stopped: writes fail */
        bool started, placed;
        pthread_t th;
        int rc; /* the unpacker's, once stopped */
        struct kiln_error err;
};

static int tee_write(struct oci_writer *w, const void *buf, size_t len, struct kiln_error *err)
{
        struct sandbox_rootfs_tee *t = (struct sandbox_rootfs_tee *)w;
        const unsigned char *p = buf;

        pthread_mutex_lock(&t->mu);
        while (len) {
                size_t tail, n;
                while (t->len == TEE_RING && !t->stopped) {
                        t->writer_waits = true;
                        pthread_cond_wait(&t->room, &t->mu);
                        t->writer_waits = false;
                }
                if (t->stopped) {
                        pthread_mutex_unlock(&t->mu);
                        return kiln_error_set(err, KILN_E_IO, "the unpacker of '%s' stopped",
                                              t->tmp);
                }
                tail = (t->head + t->len) % TEE_RING;
                n = TEE_RING - t->len;
                if (n > TEE_RING - tail)
                        n = TEE_RING - tail;
                if (n > len)
                        n = len;
                memcpy(t->ring + tail, p, n);
                t->len += n;
                p += n;
                len -= n;
                if (t->reader_waits && t->len >= TEE_BATCH)
                        pthread_cond_signal(&t->data);
        }
        pthread_mutex_unlock(&t->mu);
        return 0;
}

static ssize_t tee_read(struct oci_reader *r, void *buf, size_t len, struct kiln_error *err)
{
        struct sandbox_rootfs_tee *t = ((struct tee_reader *)r)->t;
        size_t n;

        pthread_mutex_lock(&t->mu);
        while (t->len < TEE_BATCH && !t->eof && !t->abort) {
                t->reader_waits = true;
                pthread_cond_wait(&t->data, &t->mu);
                t->reader_waits = false;
        }
        if (t->abort) {
                pthread_mutex_unlock(&t->mu);
                return kiln_error_set(err, KILN_E_IO, "the layer was not written to its end");
        }
        n = t->len < TEE_RING - t->head ? t->len : TEE_RING - t->head;
        if (n > len)
                n = len;
        memcpy(buf, t->ring + t->head, n);
        t->head = (t->head + n) % TEE_RING;
        t->len -= n;
        t->read += (int64_t)n;
        /* the writer waits only on a full ring: reading down to under a
         * batch crosses TEE_RING - TEE_BATCH on the way */
        if (t->writer_waits && TEE_RING - t->len >= TEE_BATCH)
                pthread_cond_signal(&t->room);
        pthread_mutex_unlock(&t->mu);
        return (ssize_t)n;
}

static void tee_reader_free(struct oci_reader *r)
{
        (void)r; /* part of the tee */
}

static void *tee_main(void *arg)
{
        struct sandbox_rootfs_tee *t = arg;
        int rc = unpack_stream(t->tmp, OCI_COMPRESSION_NONE, &t->r.base, "layer being written",
                               OCI_DIGEST_SHA256, NULL, &t->err);

        pthread_mutex_lock(&t->mu);
        t->rc = rc;
        t->stopped = true;
        pthread_cond_broadcast(&t->room);
        pthread_mutex_unlock(&t->mu);
        return NULL;
}

/* Ends the unpacker's thread: at the stream's end (eof) or at once. */
static void tee_stop(struct sandbox_rootfs_tee *t, bool eof)
{
        if (!t->started)
                return;
        pthread_mutex_lock(&t->mu);
        if (eof)
                t->eof = true;
        else
                t->abort = true;
        pthread_cond_broadcast(&t->data);
        pthread_mutex_unlock(&t->mu);
        pthread_join(t->th, NULL);
        t->started = false;
}

void sandbox_rootfs_tee_free(struct sandbox_rootfs_tee *t)
{
        if (!t)
                return;
        tee_stop(t, false);
        if (t->tmp && !t->placed)
                kiln_rm_rf(t->tmp);
        pthread_cond_destroy(&t->data);
        pthread_cond_destroy(&t->room);
        pthread_mutex_destroy(&t->mu);
        free(t->ring);
        free(t->tmp);
        free(t->base);
        free(t);
}

struct sandbox_rootfs_tee *sandbox_rootfs_tee_new(const char *cache_dir, struct kiln_error *err)
{
        struct sandbox_rootfs_tee *t = calloc(1, sizeof(*t));

        if (!t) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        pthread_mutex_init(&t->mu, NULL);
        pthread_cond_init(&t->data, NULL);
        pthread_cond_init(&t->room, NULL);
        t->w.write = tee_write;
        t->r.base.read = tee_read;
        t->r.base.free = tee_reader_free;
        t->r.t = t;
        t->base = kiln_strdupf("%s/rootfs", cache_dir);
        t->ring = malloc(TEE_RING);
        if (!t->base || !t->ring) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto fail;
        }
        if (kiln_mkdir_p(t->base, 0700, err) < 0)
                goto fail;
        /* named by the diffID only when the writer knows it */
        t->tmp = kiln_strdupf("%s/.tmp-written-XXXXXX", t->base);
        if (!t->tmp) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto fail;
        }
        if (!mkdtemp(t->tmp)) {
                kiln_error_set_errno(err, KILN_E_IO, errno, "cannot create '%s'", t->tmp);
                free(t->tmp);
                t->tmp = NULL;
                goto fail;
        }
        if (pthread_create(&t->th, NULL, tee_main, t) != 0) {
                kiln_error_set(err, KILN_E_INTERNAL, "cannot start the unpacker's thread");
                goto fail;
        }
        t->started = true;
        return t;
fail:
        sandbox_rootfs_tee_free(t);
        return NULL;
}

struct oci_writer *sandbox_rootfs_tee_writer(struct sandbox_rootfs_tee *t)
{
        return &t->w;
}

int sandbox_rootfs_tee_finish(struct sandbox_rootfs_tee *t, const struct oci_digest *diff_id,
                              int64_t tar_size, char **ret_dir, struct kiln_error *err)
{
        _cleanup_free_ char *final = kiln_strdupf("%s/%s", t->base, oci_digest_hex(diff_id));

        if (!final)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        tee_stop(t, true);
        if (t->rc < 0) {
                *err = t->err;
                return -1;
        }
        /* The bytes are the ones the writer hashed into diff_id, handed over
         * in memory: what is left to check is that the unpacker had all of
         * them (it reads to the end of the stream). */
        if (t->read != tar_size)
                return kiln_error_set(err, KILN_E_INTERNAL,
                                      "layer '%s': the unpacker read %lld of its %lld bytes",
                                      diff_id->str, (long long)t->read, (long long)tar_size);
        t->placed = true; /* place_dir moves or removes it */
        if (place_dir(t->base, t->tmp, final, err) < 0)
                return -1;
        if (ret_dir)
                *ret_dir = steal_ptr(&final);
        return 0;
}

struct store_blob {
        struct oci_store *st;
        const struct oci_descriptor *d;
};

static struct oci_reader *open_store_blob(void *ctx, struct kiln_error *err)
{
        struct store_blob *b = ctx;

        return b->st->ops->open_blob(b->st, b->d, err);
}

void sandbox_dirs_free(char **dirs, size_t n)
{
        for (size_t i = 0; dirs && i < n; i++)
                free(dirs[i]);
        free(dirs);
}

int sandbox_rootfs_image(const char *cache_dir, struct oci_store *st,
                         const struct oci_image *img, char ***ret_dirs, size_t *ret_n,
                         struct kiln_error *err)
{
        json_t *ids = json_object_get(json_object_get(img->config, "rootfs"), "diff_ids");
        size_t n = img->m->n_layers;
        char **dirs;

        if (json_array_size(ids) != n)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "config lists %zu diff_ids for %zu layers", json_array_size(ids),
                                      n);
        dirs = calloc(n + 1, sizeof(*dirs));
        if (!dirs)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
                struct store_blob b = {.st = st, .d = &img->m->layers[i]};
                struct oci_digest id;
                if (oci_digest_parse(json_string_value(json_array_get(ids, i)), &id, err) < 0 ||
                    sandbox_rootfs_get(cache_dir, &id, img->m->layers[i].media_type,
                                       open_store_blob, &b, &dirs[n - 1 - i], NULL, err) < 0) {
                        kiln_error_prefix(err, "layer %zu", i + 1);
                        sandbox_dirs_free(dirs, n);
                        return -1;
                }
        }
        *ret_dirs = dirs;
        *ret_n = n;
        return 0;
}

int sandbox_rootfs_prune(const char *cache_dir, struct kiln_error *err)
{
        _cleanup_free_ char *dir = kiln_strdupf("%s/rootfs", cache_dir);

        if (!dir)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        kiln_rm_rf(dir);
        if (access(dir, F_OK) == 0)
                return kiln_error_set(err, KILN_E_IO, "cannot remove '%s'", dir);
        return 0;
}
