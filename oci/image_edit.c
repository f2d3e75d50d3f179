#include "image_edit.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io.h"
#include "json.h"
#include "util.h"

#define EMPTY_JSON "{}"
/* image-spec manifest.md "Guidance for an Empty Descriptor" */
#define EMPTY_JSON_DIGEST "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
/* 9999-12-31T23:59:59Z: the last time RFC 3339's four-digit year can say */
#define EPOCH_MAX 253402300799LL

struct edit_layer {
        struct oci_descriptor d; /* media_type points at mt; annotations: a reference */
        char *mt;
        /* a reference to the descriptor object d came from (d.json, or NULL
         * once its unknown fields are dropped), which holds the strings of
         * d.artifact_type and d.platform */
        json_t *held;
        bool from_base;
};

struct oci_image_edit {
        struct oci_store *src; /* the base's store (oci_image_edit_load), borrowed */
        json_t *config;        /* NULL for an artifact */
        char *artifact_type;
        struct edit_layer *layers;
        size_t n_layers, alloc_layers;
        bool has_subject;
        struct edit_layer subject;
        json_t *annotations;
        int64_t time;
        bool time_set; /* SOURCE_DATE_EPOCH was set, or oci_image_edit_set_time() */
        char time_text[OCI_TIME_TEXT_SIZE];
};

/* ---- time ---- */

int oci_source_date_epoch_parse(const char *s, int64_t *ret_epoch, bool *ret_set,
                                struct kiln_error *err)
{
        int64_t v = 0;

        if (!s || !*s) {
                *ret_epoch = 0;
                *ret_set = false;
                return 0;
        }
        /* the spec: "an ASCII representation of an integer with no fractional
         * component, identical to the output format of date +%s"; a malformed
         * value "SHOULD exit with a non-zero error code".  Digits only: no sign,
         * no spaces (strtoll would take both), no overflow. */
        for (const char *p = s; *p; p++) {
                if (*p < '0' || *p > '9')
                        return kiln_error_set(err, KILN_E_USAGE,
                                              "invalid SOURCE_DATE_EPOCH '%.64s': not a number of "
                                              "seconds since 1970-01-01",
                                              s);
                if (v > EPOCH_MAX)
                        break;
                v = v * 10 + (*p - '0');
        }
        if (v > EPOCH_MAX)
                return kiln_error_set(
                    err, KILN_E_USAGE,
                    "invalid SOURCE_DATE_EPOCH '%.64s': after 9999-12-31T23:59:59Z (at most %lld)",
                    s, EPOCH_MAX);
        *ret_epoch = v;
        *ret_set = true;
        return 0;
}

int oci_source_date_epoch(int64_t *ret_epoch, bool *ret_set, struct kiln_error *err)
{
        return oci_source_date_epoch_parse(getenv("SOURCE_DATE_EPOCH"), ret_epoch, ret_set, err);
}

void oci_time_format(int64_t t, char *buf, size_t len)
{
        time_t tt = (time_t)t;
        struct tm tm;

        gmtime_r(&tt, &tm);
        strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- lifecycle ---- */

static void layer_release(struct edit_layer *l)
{
        json_decref(l->d.annotations);
        json_decref(l->held);
        free(l->mt);
        memset(l, 0, sizeof(*l));
}

/* A copy of d that owns its media type and holds references to its JSON. */
static int layer_copy(const struct oci_descriptor *d, bool from_base, struct edit_layer *ret,
                      struct kiln_error *err)
{
        struct edit_layer l = {.d = *d, .from_base = from_base};

        l.mt = strdup(d->media_type ? d->media_type : "");
        if (!l.mt)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        l.d.media_type = l.mt;
        l.held = json_incref(d->json);
        json_incref(l.d.annotations);
        *ret = l;
        return 0;
}

void oci_image_edit_free(struct oci_image_edit *e)
{
        if (!e)
                return;
        for (size_t i = 0; i < e->n_layers; i++)
                layer_release(&e->layers[i]);
        free(e->layers);
        if (e->has_subject)
                layer_release(&e->subject);
        json_decref(e->config);
        json_decref(e->annotations);
        free(e->artifact_type);
        free(e);
}

void oci_image_edit_freep(struct oci_image_edit **e)
{
        oci_image_edit_free(*e);
        *e = NULL;
}

/* An edit with no config yet: the time read, the annotations empty. */
static struct oci_image_edit *edit_alloc(struct kiln_error *err)
{
        struct oci_image_edit *e = calloc(1, sizeof(*e));

        if (!e) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        if (oci_source_date_epoch(&e->time, &e->time_set, err) < 0) {
                free(e);
                return NULL;
        }
        oci_time_format(e->time, e->time_text, sizeof(e->time_text));
        e->annotations = json_object();
        if (!e->annotations) {
                free(e);
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        return e;
}

static int push_layer(struct oci_image_edit *e, const struct oci_descriptor *d, bool from_base,
                      struct kiln_error *err)
{
        if (e->n_layers == e->alloc_layers) {
                size_t na = e->alloc_layers ? e->alloc_layers * 2 : 8;
                struct edit_layer *n = realloc(e->layers, na * sizeof(*n));
                if (!n)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                e->layers = n;
                e->alloc_layers = na;
        }
        if (layer_copy(d, from_base, &e->layers[e->n_layers], err) < 0)
                return -1;
        e->n_layers++;
        return 0;
}

struct oci_image_edit *oci_image_edit_new(const struct oci_platform *plat, struct kiln_error *err)
{
        struct oci_image_edit *e = edit_alloc(err);

        if (!e)
                return NULL;
        e->config = oci_config_scratch(plat);
        if (!e->config) {
                oci_image_edit_free(e);
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        return e;
}

struct oci_image_edit *oci_image_edit_new_from(const struct oci_image *img, struct kiln_error *err)
{
        struct oci_image_edit *e;

        if (!json_is_object(img->config)) {
                kiln_error_set(err, KILN_E_INVALID, "invalid image config: not an object");
                return NULL;
        }
        e = edit_alloc(err);
        if (!e)
                return NULL;
        e->config = json_deep_copy(img->config);
        if (!e->config) {
                oci_image_edit_free(e);
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        for (size_t i = 0; img->m && i < img->m->n_layers; i++)
                if (push_layer(e, &img->m->layers[i], true, err) < 0) {
                        oci_image_edit_free(e);
                        return NULL;
                }
        return e;
}

struct oci_image_edit *oci_image_edit_load(struct oci_store *src, const char *ref,
                                           const struct oci_platform *plat, struct kiln_error *err)
{
        struct oci_image img = {0};
        struct oci_image_edit *e;

        if (oci_image_load(src, ref, plat, &img, err) < 0)
                return NULL;
        e = oci_image_edit_new_from(&img, err);
        oci_image_release(&img);
        if (e)
                e->src = src;
        return e;
}

struct oci_image_edit *oci_image_edit_new_artifact(const char *artifact_type,
                                                   struct kiln_error *err)
{
        struct oci_image_edit *e = edit_alloc(err);

        if (!e)
                return NULL;
        e->artifact_type = strdup(artifact_type);
        if (!e->artifact_type) {
                oci_image_edit_free(e);
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        return e;
}

/* ---- time and Docker leftovers ---- */

int64_t oci_image_edit_time(const struct oci_image_edit *e)
{
        return e->time;
}

const char *oci_image_edit_time_text(const struct oci_image_edit *e)
{
        return e->time_text;
}

void oci_image_edit_set_time(struct oci_image_edit *e, int64_t t)
{
        e->time = t;
        e->time_set = true;
        oci_time_format(t, e->time_text, sizeof(e->time_text));
}

static const char *oci_layer_type(const char *mt)
{
        /* the same bytes under the OCI name: an OCI manifest names OCI types */
        if (!strcmp(mt, DOCKER_MT_LAYER_GZIP))
                return OCI_MT_LAYER_GZIP;
        if (!strcmp(mt, DOCKER_MT_LAYER_TAR))
                return OCI_MT_LAYER;
        return mt;
}

void oci_image_edit_drop_docker(struct oci_image_edit *e)
{
        for (size_t i = 0; i < e->n_layers; i++) {
                struct edit_layer *l = &e->layers[i];
                const char *mt;
                if (!l->from_base)
                        continue;
                mt = oci_layer_type(l->mt);
                if (mt != l->mt) {
                        char *n = strdup(mt);
                        if (n) {
                                free(l->mt);
                                l->mt = n;
                                l->d.media_type = n;
                        }
                }
                l->d.json = NULL; /* written anew: no foreign fields */
        }
        if (e->config) {
                /* they describe the container the base was built in, not this image */
                json_object_del(e->config, "container");
                json_object_del(e->config, "container_config");
        }
}

/* ---- layers and history ---- */

static int no_config(const struct oci_image_edit *e, const char *what, struct kiln_error *err)
{
        if (e->config)
                return 0;
        return kiln_error_set(err, KILN_E_INVALID, "an artifact of type '%s' has no %s",
                              e->artifact_type, what);
}

/* The member key of obj as a json type made by make() when it is missing or
 * of another type (replaced in place, else added at the end). */
static json_t *member(json_t *obj, const char *key, json_t *(*make)(void),
                      int (*is)(const json_t *))
{
        json_t *v = json_object_get(obj, key);

        if (is(v))
                return v;
        v = make();
        if (!v || json_object_set_new(obj, key, v) < 0)
                return NULL;
        return v;
}

static int is_object(const json_t *j)
{
        return json_is_object(j);
}

static int is_array(const json_t *j)
{
        return json_is_array(j);
}

/* rootfs (type "layers", then diff_ids) and its diff_ids array. */
static json_t *diff_ids_of(json_t *config)
{
        json_t *rootfs = json_object_get(config, "rootfs");

        if (!json_is_object(rootfs)) {
                rootfs = json_pack("{s:s, s:[]}", "type", "layers", "diff_ids");
                if (!rootfs || json_object_set_new(config, "rootfs", rootfs) < 0)
                        return NULL;
        }
        return member(rootfs, "diff_ids", json_array, is_array);
}

static int append_history(struct oci_image_edit *e, const struct oci_history *h,
                          struct kiln_error *err)
{
        json_t *hist = member(e->config, "history", json_array, is_array);
        json_t *o = json_object();

        if (!hist || !o ||
            (h->dated && json_object_set_new(o, "created", json_string(e->time_text)) < 0) ||
            (h->created_by &&
             json_object_set_new(o, "created_by", json_string(h->created_by)) < 0) ||
            (h->comment && json_object_set_new(o, "comment", json_string(h->comment)) < 0) ||
            (h->empty_layer && json_object_set_new(o, "empty_layer", json_true()) < 0) ||
            json_array_append_new(hist, o) < 0) {
                json_decref(o);
                return kiln_error_set(err, KILN_E_INVALID,
                                      "history entry '%.200s': not valid UTF-8 (or out of memory)",
                                      h->created_by ? h->created_by : "");
        }
        return 0;
}

int oci_image_edit_add_layer(struct oci_image_edit *e, const struct oci_descriptor *d,
                             const struct oci_digest *diff_id, const struct oci_history *hist,
                             struct kiln_error *err)
{
        if (e->config) {
                json_t *ids = diff_ids_of(e->config);
                if (!diff_id)
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "layer '%s' of an image needs its diffID",
                                              d->digest.str);
                if (!ids || json_array_append_new(ids, json_string(diff_id->str)) < 0)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                if (hist && append_history(e, hist, err) < 0)
                        return -1;
        }
        return push_layer(e, d, false, err);
}

int oci_image_edit_add_history(struct oci_image_edit *e, const struct oci_history *hist,
                               struct kiln_error *err)
{
        struct oci_history h = *hist;

        if (no_config(e, "history", err) < 0)
                return -1;
        h.empty_layer = true;
        return append_history(e, &h, err);
}

void oci_image_edit_clear_layers(struct oci_image_edit *e)
{
        for (size_t i = 0; i < e->n_layers; i++)
                layer_release(&e->layers[i]);
        e->n_layers = 0;
        if (!e->config)
                return;
        /* a new rootfs and history, in place of the old ones */
        json_object_set_new(e->config, "rootfs",
                            json_pack("{s:s, s:[]}", "type", "layers", "diff_ids"));
        json_object_set_new(e->config, "history", json_array());
}

/* ---- config ---- */

static json_t *config_object(struct oci_image_edit *e, struct kiln_error *err)
{
        json_t *c;

        if (no_config(e, "config", err) < 0)
                return NULL;
        c = member(e->config, "config", json_object, is_object);
        if (!c)
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        return c;
}

int oci_image_edit_set_env(struct oci_image_edit *e, const char *kv, struct kiln_error *err)
{
        const char *eq = strchr(kv, '=');
        json_t *c, *env, *v, *s;
        size_t i;

        if (!eq || eq == kv)
                return kiln_error_set(err, KILN_E_USAGE,
                                      "invalid environment variable '%s': use K=V", kv);
        c = config_object(e, err);
        if (!c)
                return -1;
        env = member(c, "Env", json_array, is_array);
        s = json_string(kv);
        if (!env || !s) {
                json_decref(s);
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid environment variable '%.200s': not valid UTF-8", kv);
        }
        json_array_foreach(env, i, v)
        {
                const char *old = json_string_value(v);
                if (old && !strncmp(old, kv, (size_t)(eq - kv) + 1))
                        return json_array_set_new(env, i, s);
        }
        return json_array_append_new(env, s);
}

/* Labels in byte-wise order of their names, whatever the order of the edits. */
static int sort_labels(json_t *c, json_t *labels, struct kiln_error *err)
{
        json_t *sorted = oci_json_sorted_object(labels);

        if (!sorted || json_object_set_new(c, "Labels", sorted) < 0)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        return 0;
}

int oci_image_edit_set_label(struct oci_image_edit *e, const char *key, const char *value,
                             struct kiln_error *err)
{
        json_t *c = config_object(e, err), *labels;

        if (!c)
                return -1;
        if (!*key)
                return kiln_error_set(err, KILN_E_USAGE, "invalid label '=%s': empty name", value);
        labels = member(c, "Labels", json_object, is_object);
        if (!labels || json_object_set_new(labels, key, json_string(value)) < 0)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid label '%.200s': not valid UTF-8", key);
        return sort_labels(c, labels, err);
}

int oci_image_edit_set_field(struct oci_image_edit *e, const char *key, json_t *value,
                             struct kiln_error *err)
{
        json_t *c = config_object(e, err);

        if (!c || !value) {
                json_decref(value);
                return c ? kiln_error_set(err, KILN_E_INVALID,
                                          "invalid value of config field '%s': not valid UTF-8",
                                          key)
                         : -1;
        }
        if (json_object_set_new(c, key, value) < 0)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid config field '%.200s': not valid UTF-8", key);
        return 0;
}

int oci_image_edit_merge_config(struct oci_image_edit *e, json_t *fields, struct kiln_error *err)
{
        json_t *c = config_object(e, err), *v;
        const char *k;

        if (!c)
                return -1;
        json_object_foreach(fields, k, v)
        {
                if (!strcmp(k, "Labels") && json_is_object(v)) {
                        json_t *labels = member(c, "Labels", json_object, is_object);
                        if (!labels || json_object_update(labels, v) < 0 ||
                            sort_labels(c, labels, err) < 0)
                                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                } else if (json_object_set(c, k, v) < 0) {
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                }
        }
        return 0;
}

const json_t *oci_image_edit_config(const struct oci_image_edit *e)
{
        return e->config;
}

/* ---- manifest fields ---- */

int oci_image_edit_annotate(struct oci_image_edit *e, const char *key, const char *value,
                            struct kiln_error *err)
{
        if (json_object_set_new(e->annotations, key, json_string(value)) < 0)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid annotation '%.200s': not valid UTF-8", key);
        return 0;
}

int oci_image_edit_annotate_all(struct oci_image_edit *e, json_t *ann, struct kiln_error *err)
{
        const char *k;
        json_t *v;

        json_object_foreach(ann, k, v)
        {
                if (!json_is_string(v))
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "invalid annotation '%.200s': not a string", k);
                if (json_object_set(e->annotations, k, v) < 0)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        return 0;
}

int oci_image_edit_set_subject(struct oci_image_edit *e, const struct oci_descriptor *d,
                               struct kiln_error *err)
{
        struct edit_layer s;

        if (layer_copy(d, false, &s, err) < 0)
                return -1;
        if (e->has_subject)
                layer_release(&e->subject);
        e->subject = s;
        e->has_subject = true;
        return 0;
}

/* ---- writing ---- */

/* Puts buf as the blob d unless dst holds it. */
static int put_buffer(struct oci_store *dst, const struct oci_descriptor *d, const char *buf,
                      size_t len, struct kiln_error *err)
{
        struct oci_reader *r;
        bool have = false;

        /* an unchanged rebuild writes nothing: each put and each tag costs fsyncs */
        if (dst->ops->has_blob(dst, d, &have, err) < 0)
                return -1;
        if (have)
                return 0;
        r = oci_reader_from_buffer(buf, len, err);
        if (!r)
                return -1;
        return dst->ops->put_blob(dst, d, r, err);
}

/* The base's layers dst lacks, from the store the image came from. */
static int put_base_layers(struct oci_image_edit *e, struct oci_store *dst, struct kiln_error *err)
{
        for (size_t i = 0; e->src && i < e->n_layers; i++) {
                const struct oci_descriptor *d = &e->layers[i].d;
                struct oci_reader *r;
                bool have = false;
                if (!e->layers[i].from_base)
                        continue;
                if (dst->ops->has_blob(dst, d, &have, err) < 0)
                        return -1;
                if (have)
                        continue;
                r = e->src->ops->open_blob(e->src, d, err);
                if (!r || dst->ops->put_blob(dst, d, r, err) < 0)
                        return -1;
        }
        return 0;
}

/* The config's bytes, "created" set by the rules of image_edit.h.  An
 * image always has a rootfs and a history (image-spec config.md). */
static int config_bytes(struct oci_image_edit *e, char **ret_buf, size_t *ret_len,
                        struct kiln_error *err)
{
        if (!e->config) {
                *ret_buf = strdup(EMPTY_JSON);
                *ret_len = strlen(EMPTY_JSON);
                return *ret_buf ? 0 : kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        if (!diff_ids_of(e->config) || !member(e->config, "history", json_array, is_array))
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        /* image-spec config.md "created": SOURCE_DATE_EPOCH, else the base's,
         * else the layers' own time (0) */
        if (e->time_set || !json_is_string(json_object_get(e->config, "created")))
                if (json_object_set_new(e->config, "created", json_string(e->time_text)) < 0)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        return oci_json_dump(e->config, ret_buf, ret_len, err);
}

/* Names md in dst by tag (NULL: the place's own), unless it already does. */
static int name_manifest(struct oci_store *dst, const char *tag, const struct oci_descriptor *md,
                         struct kiln_error *err)
{
        if (tag && !strcmp(tag, OCI_EDIT_BY_DIGEST))
                return dst->ops->tag(dst, md->digest.str, md, err);
        if (tag || dst->default_ref) {
                struct kiln_error ign = KILN_ERROR_INIT;
                char *buf = NULL, *mt = NULL;
                size_t len;
                struct oci_digest now;
                bool named = dst->ops->get_manifest(dst, tag, &buf, &len, &mt, &now, &ign) == 0 &&
                             oci_digest_equal(&now, &md->digest);
                free(buf);
                free(mt);
                if (named)
                        return 0;
        }
        return dst->ops->tag(dst, tag, md, err);
}

int oci_image_edit_write(struct oci_image_edit *e, struct oci_store *dst, const char *const *tags,
                         size_t n_tags, struct oci_descriptor *ret_manifest, struct kiln_error *err)
{
        _cleanup_free_ char *cbuf = NULL, *mbuf = NULL;
        _cleanup_free_ struct oci_descriptor *descs = NULL;
        _cleanup_json_ json_t *mj = NULL;
        struct oci_descriptor cd = {0}, md = {.media_type = OCI_MT_MANIFEST};
        size_t clen, mlen;
        bool have = false;

        if (put_base_layers(e, dst, err) < 0 || config_bytes(e, &cbuf, &clen, err) < 0)
                return -1;
        cd.media_type = e->config ? OCI_MT_CONFIG : OCI_MT_EMPTY;
        oci_digest_of_buffer(cbuf, clen, &cd.digest);
        cd.size = (int64_t)clen;
        if (put_buffer(dst, &cd, cbuf, clen, err) < 0)
                return -1;
        descs = calloc(e->n_layers + 1, sizeof(*descs));
        if (!descs)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        for (size_t i = 0; i < e->n_layers; i++)
                descs[i] = e->layers[i].d;
        mj = oci_manifest_to_json(OCI_MT_MANIFEST, e->artifact_type, &cd, descs, e->n_layers,
                                  e->has_subject ? &e->subject.d : NULL, e->annotations);
        if (!mj)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (oci_json_dump(mj, &mbuf, &mlen, err) < 0)
                return -1;
        oci_digest_of_buffer(mbuf, mlen, &md.digest);
        md.size = (int64_t)mlen;
        /* the manifest after every blob it names; the tags after the manifest */
        if (dst->ops->has_blob(dst, &md, &have, err) < 0 ||
            (!have && dst->ops->put_manifest(dst, &md, mbuf, mlen, err) < 0))
                return -1;
        for (size_t i = 0; i < n_tags; i++)
                if (name_manifest(dst, tags[i], &md, err) < 0)
                        return -1;
        if (ret_manifest)
                *ret_manifest = md;
        return 0;
}
