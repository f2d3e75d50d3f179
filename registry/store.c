/* The registry store: struct oci_store_ops over a reg_client.
 *
 * Its ops are thread safe, so oci_image_copy() may run several blob
 * copies at once.  With opts->jobs > 1 the store also pushes in its own
 * threads: put_blob() hands the stream to a worker and returns; put_manifest(), tag() and commit()
 * first wait for every upload and fail if one failed, so a manifest is
 * never written before the blobs it names. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hosts.h"
#include "json.h"
#include "registry.h"
#include "util.h"

struct mcache {
        struct oci_digest d;
        char *buf;
        size_t len;
        char *mt;
};

struct reg_store {
        struct oci_store base;
        struct reg_client *c;
        char *host, *repo;
        char *tag; /* the place's tag, or NULL */
        /* where blobs were seen: opts->known, or the store's own (own_known);
         * a blob not recorded (out of memory) is uploaded, not mounted */
        struct reg_known *known;
        bool own_known;
        unsigned jobs;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        unsigned running;
        bool failed;
        struct kiln_error first_err;
        struct mcache *mc;
        size_t n_mc;
        char *disk_cache; /* manifests by digest on disk (Docker Hub pulls), or NULL */
};

struct job {
        struct reg_store *s;
        struct oci_descriptor d;
        struct oci_reader *r;
        char *mount_from;
};

static struct reg_store *RS(struct oci_store *s)
{
        return (struct reg_store *)s;
}

static int wait_uploads(struct reg_store *s, struct kiln_error *err)
{
        pthread_mutex_lock(&s->lock);
        while (s->running)
                pthread_cond_wait(&s->cond, &s->lock);
        pthread_mutex_unlock(&s->lock);
        if (s->failed) {
                if (err)
                        *err = s->first_err;
                return -1;
        }
        return 0;
}

/* ---- manifests on disk ----
 * Docker Hub counts manifest GETs against its pull limit (HEADs are free),
 * and a manifest named by digest never changes: pulls of Hub images keep
 * the manifests they fetch in DIR/sha256/HEX (+ HEX.type, the media type),
 * and a reference by digest, or a tag whose HEAD gives a kept digest, is
 * read from there.  Every read is checked against the digest. */

static char *disk_path(const struct reg_store *s, const struct oci_digest *d, const char *ext)
{
        return kiln_strdupf("%s/sha256/%s%s", s->disk_cache, d->str + 7, ext);
}

static int disk_get(struct reg_store *s, const struct oci_digest *d, char **ret_buf,
                    size_t *ret_len, char **ret_media_type)
{
        _cleanup_free_ char *p = NULL, *pt = NULL, *buf = NULL, *mt = NULL;
        struct oci_digest got;
        size_t len = 0, mlen = 0;

        if (d->alg != OCI_DIGEST_SHA256 || !(p = disk_path(s, d, "")) ||
            !(pt = disk_path(s, d, ".type")))
                return -1;
        if (kiln_read_file(p, oci_manifest_limit(), &buf, &len, NULL) < 0 ||
            kiln_read_file(pt, 256, &mt, &mlen, NULL) < 0)
                return -1;
        oci_digest_of_buffer(buf, len, &got);
        if (!oci_digest_equal(&got, d))
                return -1;
        *ret_buf = steal_ptr(&buf);
        *ret_len = len;
        *ret_media_type = mlen ? steal_ptr(&mt) : NULL;
        return 0;
}

static void disk_put(struct reg_store *s, const struct oci_digest *d, const char *buf, size_t len,
                     const char *mt)
{
        _cleanup_free_ char *dir = kiln_strdupf("%s/sha256", s->disk_cache);
        _cleanup_free_ char *p = disk_path(s, d, ""), *pt = disk_path(s, d, ".type");

        /* best effort: a cache that cannot be written costs a GET next time */
        if (d->alg != OCI_DIGEST_SHA256 || !dir || !p || !pt ||
            kiln_mkdir_p(dir, 0755, NULL) < 0)
                return;
        if (kiln_write_file_atomic(pt, mt ? mt : "", mt ? strlen(mt) : 0, 0644, NULL) == 0)
                kiln_write_file_atomic(p, buf, len, 0644, NULL);
}

static int rs_get_manifest(struct oci_store *st, const char *ref, char **ret_buf, size_t *ret_len,
                           char **ret_media_type, struct oci_digest *ret_digest,
                           struct kiln_error *err)
{
        struct reg_store *s = RS(st);
        struct oci_digest d = {0};
        bool exists = false;

        if (!ref)
                ref = st->default_ref ? st->default_ref : "latest";
        if (!s->disk_cache)
                return reg_client_get_manifest(s->c, ref, ret_buf, ret_len, ret_media_type,
                                               ret_digest, err);
        if (oci_digest_valid(ref)) {
                oci_digest_parse(ref, &d, NULL);
        } else {
                /* a failed HEAD is not the answer: the GET below says why */
                struct kiln_error ignore = KILN_ERROR_INIT;
                if (reg_client_head_manifest(s->c, ref, &exists, &d, &ignore) < 0 || !exists)
                        d.str[0] = '\0';
        }
        if (d.str[0] && disk_get(s, &d, ret_buf, ret_len, ret_media_type) == 0) {
                *ret_digest = d;
                return 0;
        }
        if (reg_client_get_manifest(s->c, ref, ret_buf, ret_len, ret_media_type, ret_digest,
                                    err) < 0)
                return -1;
        disk_put(s, ret_digest, *ret_buf, *ret_len, *ret_media_type);
        return 0;
}

/* A blob stream handed out by a registry store.  It can be read again from
 * the start (a fresh download), so an upload of it cut in the middle of a
 * streamed body can be restarted (distribution-spec: never replay a consumed
 * body; restart the session). */
struct src_reader {
        struct oci_reader base;
        struct oci_reader *inner; /* verified */
        struct reg_client *c;
        struct oci_descriptor d;
};

static ssize_t src_read(struct oci_reader *r, void *buf, size_t len, struct kiln_error *err)
{
        return oci_reader_read(((struct src_reader *)r)->inner, buf, len, err);
}

static void src_free(struct oci_reader *r)
{
        oci_reader_free(((struct src_reader *)r)->inner);
        free(r);
}

static bool src_verifies(struct oci_reader *r, const struct oci_digest *d, int64_t size)
{
        return oci_reader_verifies(((struct src_reader *)r)->inner, d, size);
}

static struct oci_reader *src_reader_new(struct reg_client *c, const struct oci_descriptor *d,
                                         struct kiln_error *err);

static struct oci_reader *src_reopen(struct oci_reader *r, struct kiln_error *err)
{
        struct src_reader *s = (struct src_reader *)r;

        return src_reader_new(s->c, &s->d, err);
}

static struct oci_reader *src_reader_new(struct reg_client *c, const struct oci_descriptor *d,
                                         struct kiln_error *err)
{
        struct oci_reader *inner = reg_client_open_blob(c, d, err);
        struct src_reader *r;

        if (!inner)
                return NULL;
        r = calloc(1, sizeof(*r));
        if (!r) {
                oci_reader_free(inner);
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        r->base.read = src_read;
        r->base.free = src_free;
        r->base.verifies = src_verifies;
        r->base.reopen = src_reopen;
        r->inner = inner;
        r->c = c;
        r->d.digest = d->digest;
        r->d.size = d->size;
        return &r->base;
}

static struct oci_reader *rs_open_blob(struct oci_store *st, const struct oci_descriptor *d,
                                       struct kiln_error *err)
{
        struct reg_store *s = RS(st);
        struct oci_reader *r = src_reader_new(s->c, d, err);

        if (r)
                reg_known_add(s->known, s->host, s->repo, &d->digest, NULL);
        return r;
}

/* A view of a reader that the upload may free without closing the reader,
 * which stays open to be reopened when the upload fails. */
struct borrowed {
        struct oci_reader base;
        struct oci_reader *r;
};

static ssize_t borrowed_read(struct oci_reader *r, void *buf, size_t len, struct kiln_error *err)
{
        return oci_reader_read(((struct borrowed *)r)->r, buf, len, err);
}

static bool borrowed_verifies(struct oci_reader *r, const struct oci_digest *d, int64_t size)
{
        return oci_reader_verifies(((struct borrowed *)r)->r, d, size);
}

static void borrowed_free(struct oci_reader *r)
{
        free(r);
}

#define UPLOAD_RESTARTS 2

/* Pushes one blob (taking over r).  An upload that failed on the way (the
 * connection, a 5xx after the body, a 401 for an expired token, a session
 * that vanished) is first checked with a HEAD, since the registry may have
 * finished it and only its answer was lost; then it is restarted with a new
 * session and the stream read again from the start (a file reopened, a
 * download started again), at most UPLOAD_RESTARTS times.  A digest
 * mismatch or a refusal stays an error. */
static int push_one(struct reg_store *s, const struct oci_descriptor *d, struct oci_reader *r,
                    const char *mount_from, struct kiln_error *err)
{
        int rc = -1;

        for (unsigned attempt = 0;; attempt++) {
                struct kiln_error e = KILN_ERROR_INIT, ign = KILN_ERROR_INIT;
                struct borrowed *b = calloc(1, sizeof(*b));
                struct oci_reader *next;
                bool have = false;

                if (!b) {
                        kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        break;
                }
                b->base.read = borrowed_read;
                b->base.free = borrowed_free;
                b->base.verifies = borrowed_verifies;
                b->r = r;
                if (reg_client_push_blob(s->c, d, &b->base, mount_from, &e) == 0 ||
                    (e.code == KILN_E_NETWORK && reg_client_has_blob(s->c, d, &have, &ign) == 0 &&
                     have)) {
                        reg_known_add(s->known, s->host, s->repo, &d->digest, NULL);
                        rc = 0;
                        break;
                }
                if (e.code != KILN_E_NETWORK || attempt == UPLOAD_RESTARTS ||
                    !(next = oci_reader_reopen(r, &ign))) {
                        if (err)
                                *err = e;
                        break;
                }
                reg_client_notify(s->c, REG_EVENT_RETRY, "%s; restarting the upload", e.msg);
                oci_reader_free(r);
                r = next;
        }
        oci_reader_free(r);
        return rc;
}

static int rs_has_blob(struct oci_store *st, const struct oci_descriptor *d, bool *ret,
                       struct kiln_error *err)
{
        struct reg_store *s = RS(st);

        if (s->failed)
                return wait_uploads(s, err);
        if (reg_client_has_blob(s->c, d, ret, err) < 0)
                return -1;
        if (*ret)
                reg_known_add(s->known, s->host, s->repo, &d->digest, NULL);
        return 0;
}

static void *job_run(void *arg)
{
        struct job *j = arg;
        struct reg_store *s = j->s;
        struct kiln_error e = KILN_ERROR_INIT;
        int rc;

        rc = push_one(s, &j->d, j->r, j->mount_from, &e);
        pthread_mutex_lock(&s->lock);
        if (rc < 0 && !s->failed) {
                s->failed = true;
                s->first_err = e;
        }
        s->running--;
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
        free(j->mount_from);
        free(j);
        return NULL;
}

static int rs_put_blob(struct oci_store *st, const struct oci_descriptor *d, struct oci_reader *r,
                       struct kiln_error *err)
{
        struct reg_store *s = RS(st);
        struct job *j;
        pthread_t t;
        pthread_attr_t attr;

        j = calloc(1, sizeof(*j));
        if (!j) {
                oci_reader_free(r);
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        j->s = s;
        j->d.digest = d->digest;
        j->d.size = d->size;
        j->r = r;
        j->mount_from = reg_known_other_repo(s->known, s->host, s->repo, &d->digest);
        if (s->jobs <= 1) {
                int rc = push_one(s, &j->d, r, j->mount_from, err);
                free(j->mount_from);
                free(j);
                return rc;
        }
        pthread_mutex_lock(&s->lock);
        while (s->running >= s->jobs && !s->failed)
                pthread_cond_wait(&s->cond, &s->lock);
        if (s->failed) {
                pthread_mutex_unlock(&s->lock);
                oci_reader_free(r);
                free(j->mount_from);
                free(j);
                return wait_uploads(s, err);
        }
        s->running++;
        pthread_mutex_unlock(&s->lock);
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &attr, job_run, j) != 0) {
                pthread_attr_destroy(&attr);
                pthread_mutex_lock(&s->lock);
                s->running--;
                pthread_mutex_unlock(&s->lock);
                /* no thread: push it here */
                {
                        int rc = push_one(s, &j->d, r, j->mount_from, err);
                        free(j->mount_from);
                        free(j);
                        return rc;
                }
        }
        pthread_attr_destroy(&attr);
        return 0;
}

static int cache_manifest(struct reg_store *s, const struct oci_digest *d, const char *mt,
                          const char *buf, size_t len)
{
        struct mcache *n = realloc(s->mc, (s->n_mc + 1) * sizeof(*n));

        if (!n)
                return -1;
        s->mc = n;
        n[s->n_mc].d = *d;
        n[s->n_mc].buf = malloc(len ? len : 1);
        n[s->n_mc].len = len;
        n[s->n_mc].mt = strdup(mt);
        if (!n[s->n_mc].buf || !n[s->n_mc].mt) {
                free(n[s->n_mc].buf);
                free(n[s->n_mc].mt);
                return -1;
        }
        memcpy(n[s->n_mc].buf, buf, len);
        s->n_mc++;
        return 0;
}

static int rs_put_manifest(struct oci_store *st, const struct oci_descriptor *d, const char *buf,
                           size_t len, struct kiln_error *err)
{
        struct reg_store *s = RS(st);
        bool exists = false;

        /* every blob (and child manifest) it names must be in place first */
        if (wait_uploads(s, err) < 0)
                return -1;
        if (cache_manifest(s, &d->digest, d->media_type, buf, len) < 0)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (reg_client_head_manifest(s->c, d->digest.str, &exists, NULL, err) < 0)
                return -1;
        if (exists)
                return 0;
        return reg_client_put_manifest_subject(s->c, d->digest.str, d->media_type, buf, len, err);
}

static int rs_tag(struct oci_store *st, const char *tag, const struct oci_descriptor *d,
                  struct kiln_error *err)
{
        struct reg_store *s = RS(st);

        if (wait_uploads(s, err) < 0)
                return -1;
        if (!tag)
                tag = s->tag;
        if (!tag)
                return 0; /* pushed by digest: nothing to name */
        {
                /* a re-push of the same image changes nothing: leave the tag alone */
                bool exists = false;
                struct oci_digest cur;
                if (reg_client_head_manifest(s->c, tag, &exists, &cur, err) < 0)
                        return -1;
                if (exists && oci_digest_equal(&cur, &d->digest))
                        return 0;
        }
        for (size_t i = 0; i < s->n_mc; i++)
                if (oci_digest_equal(&s->mc[i].d, &d->digest))
                        return reg_client_put_manifest(s->c, tag, s->mc[i].mt, s->mc[i].buf,
                                                       s->mc[i].len, err);
        {
                /* not put through this store: fetch the exact bytes, then name them */
                char *buf = NULL, *mt = NULL;
                size_t len = 0;
                struct oci_digest got;
                int rc;
                if (reg_client_get_manifest(s->c, d->digest.str, &buf, &len, &mt, &got, err) < 0)
                        return -1;
                rc = reg_client_put_manifest(s->c, tag, mt ? mt : d->media_type, buf, len, err);
                free(buf);
                free(mt);
                return rc;
        }
}

static int rs_commit(struct oci_store *st, struct kiln_error *err)
{
        return wait_uploads(RS(st), err);
}

static void rs_free(struct oci_store *st)
{
        struct reg_store *s = RS(st);

        wait_uploads(s, NULL);
        reg_client_free(s->c);
        for (size_t i = 0; i < s->n_mc; i++) {
                free(s->mc[i].buf);
                free(s->mc[i].mt);
        }
        free(s->mc);
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->cond);
        free(s->host);
        free(s->repo);
        free(s->tag);
        free(s->disk_cache);
        if (s->own_known)
                reg_known_free(s->known);
        free(st->name);
        free(st->default_ref);
        free(s);
}

static const struct oci_store_ops reg_store_ops = {
        .kind = "registry",
        .thread_safe = true,
        .get_manifest = rs_get_manifest,
        .open_blob = rs_open_blob,
        .has_blob = rs_has_blob,
        .put_blob = rs_put_blob,
        .put_manifest = rs_put_manifest,
        .tag = rs_tag,
        .commit = rs_commit,
        .free = rs_free,
};

struct reg_client *reg_store_client(struct oci_store *st)
{
        return st && st->ops == &reg_store_ops ? RS(st)->c : NULL;
}

int reg_mirror_apply(const struct reg_options *opts, const char *domain, const char *path,
                     char **ret_host, char **ret_path, struct kiln_error *err)
{
        for (size_t i = 0; opts && i < opts->n_mirrors; i++) {
                const char *m = opts->mirrors[i];
                const char *eq = strchr(m, '=');
                const char *slash;
                if (!eq || (size_t)(eq - m) != strlen(domain) || strncmp(m, domain, (size_t)(eq - m)))
                        continue;
                slash = strchr(eq + 1, '/');
                if (slash) {
                        *ret_host = strndup(eq + 1, (size_t)(slash - eq - 1));
                        *ret_path = kiln_strdupf("%s/%s", slash + 1, path);
                } else {
                        *ret_host = strdup(eq + 1);
                        *ret_path = strdup(path);
                }
                if (!*ret_host || !*ret_path) {
                        free(*ret_host);
                        free(*ret_path);
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                }
                return 0;
        }
        *ret_host = strdup(domain);
        *ret_path = strdup(path);
        if (!*ret_host || !*ret_path) {
                free(*ret_host);
                free(*ret_path);
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        return 0;
}

static bool cli_mirror_maps(const struct reg_options *o, const char *domain)
{
        size_t n = strlen(domain);

        for (size_t i = 0; i < o->n_mirrors; i++)
                if (!strncmp(o->mirrors[i], domain, n) && o->mirrors[i][n] == '=')
                        return true;
        return false;
}

static void add_insecure(struct reg_options *o, const char *host)
{
        if (o->n_insecure < REG_MAX_HOSTS)
                o->insecure_hosts[o->n_insecure++] = host;
}

/* "HOST/PATH" of a rewritten name into the store's host and repo. */
static int split_name(struct reg_store *s, char *name, struct kiln_error *err)
{
        char *slash = name ? strchr(name, '/') : NULL;

        if (!name)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (!slash || !slash[1]) {
                kiln_error_set(err, KILN_E_INVALID,
                               "registries.conf maps an image to '%s', which names no repository",
                               name);
                free(name);
                return -1;
        }
        free(s->host);
        free(s->repo);
        s->host = strndup(name, (size_t)(slash - name));
        s->repo = strdup(slash + 1);
        free(name);
        return s->host && s->repo ? 0 : kiln_error_set(err, KILN_E_NOMEM, "out of memory");
}

/* A pull from a mirror of registries.conf: the first mirror that has the
 * image wins (a HEAD of the reference); then the location. */
static int try_mirror(struct reg_store *s, const struct reg_options *o, char *name,
                      const char *ref)
{
        struct kiln_error e = KILN_ERROR_INIT;
        struct reg_client *c;
        bool exists = false;

        if (split_name(s, name, &e) < 0)
                return -1;
        c = reg_client_new(s->host, s->repo, o, false, &e);
        if (!c)
                return -1;
        if (reg_client_head_manifest(c, ref, &exists, NULL, &e) < 0 || !exists) {
                reg_client_notify(c, REG_EVENT_RETRY, "mirror '%s' of registries.conf: %s; trying the next",
                                  s->host, e.msg[0] ? e.msg : "image not found");
                reg_client_free(c);
                return -1;
        }
        s->c = c;
        return 0;
}

/* Where the store reads and writes (containers-registries.conf(5)): a
 * blocked name is refused; a pull tries the mirrors of its [[registry]] in
 * order, then its location; a push goes to the location.  --mirror and
 * --insecure-registry (opts) win over the file. */
static int conf_route(struct reg_store *s, const struct oci_ref *ref, struct reg_options *o,
                      bool for_write, struct kiln_error *err)
{
        _cleanup_free_ char *name = oci_ref_name(ref);
        const struct reg_conf_registry *r;

        if (!name)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        r = reg_conf_match(o->conf, name);
        if (!r)
                return 0;
        if (r->blocked)
                return kiln_error_set(err, KILN_E_AUTH,
                                      "'%s' is blocked: '%s' sets blocked = true for prefix '%s'",
                                      name, r->file, r->prefix);
        if (!for_write && cli_mirror_maps(o, ref->domain))
                return 0;
        for (size_t i = 0; i < r->n_mirrors; i++)
                if (r->mirrors[i].insecure)
                        add_insecure(o, r->mirrors[i].host);
        if (r->insecure)
                add_insecure(o, r->host);
        if (split_name(s, reg_conf_rewrite(r, NULL, name), err) < 0)
                return -1;
        for (size_t i = 0; !for_write && i < r->n_mirrors; i++) {
                const char *ident = s->base.default_ref ? s->base.default_ref : "latest";
                _cleanup_free_ char *host = s->host ? strdup(s->host) : NULL;
                _cleanup_free_ char *repo = s->repo ? strdup(s->repo) : NULL;
                if (try_mirror(s, o, reg_conf_rewrite(r, r->mirrors[i].location, name), ident) == 0)
                        return 0;
                free(s->host);
                free(s->repo);
                s->host = steal_ptr(&host);
                s->repo = steal_ptr(&repo);
        }
        return 0;
}

struct oci_store *reg_store_new(const struct oci_ref *ref, const struct reg_options *opts,
                                bool for_write, struct kiln_error *err)
{
        struct reg_store *s = calloc(1, sizeof(*s));
        struct reg_options o;

        if (!s) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        if (opts)
                o = *opts;
        else
                reg_options_init(&o);
        pthread_mutex_init(&s->lock, NULL);
        pthread_cond_init(&s->cond, NULL);
        s->base.ops = &reg_store_ops;
        s->jobs = o.jobs ? o.jobs : 1;
        s->known = o.known;
        if (!s->known) {
                s->known = reg_known_new(err);
                s->own_known = true;
                if (!s->known)
                        goto fail;
        }
        if (for_write) {
                s->host = strdup(ref->domain);
                s->repo = strdup(ref->path);
                if (!s->host || !s->repo)
                        goto nomem;
        } else if (reg_mirror_apply(&o, ref->domain, ref->path, &s->host, &s->repo, err) < 0) {
                goto fail;
        }
        s->base.name = oci_ref_string(ref);
        if (ref->has_digest)
                s->base.default_ref = strdup(ref->digest.str);
        else if (ref->tag)
                s->base.default_ref = strdup(ref->tag);
        if (ref->tag)
                s->tag = strdup(ref->tag);
        if (!s->base.name || (ref->tag && !s->tag))
                goto nomem;
        if (o.conf && conf_route(s, ref, &o, for_write, err) < 0)
                goto fail;
        if (!for_write && o.manifest_cache_dir && reg_host_is_hub(ref->domain) &&
            !(s->disk_cache = strdup(o.manifest_cache_dir)))
                goto nomem;
        if (!s->c)
                s->c = reg_client_new(s->host, s->repo, &o, for_write, err);
        if (!s->c)
                goto fail;
        return &s->base;
nomem:
        kiln_error_set(err, KILN_E_NOMEM, "out of memory");
fail:
        rs_free(&s->base);
        return NULL;
}
