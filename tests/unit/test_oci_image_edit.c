/* oci/image_edit.c: the one writer of image configs and manifests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "image.h"
#include "image_edit.h"
#include "io.h"
#include "json.h"
#include "layout.h"
#include "util.h"

static char *make_tmpdir(void)
{
        const char *t = getenv("TMPDIR");
        char *d = kiln_strdupf("%s/kiln-unit-XXXXXX", t && *t ? t : "/tmp");
        assert_non_null(mkdtemp(d));
        return d;
}

/* The exact bytes of blob d in the layout at dir. */
static char *read_blob(const char *dir, const struct oci_digest *d)
{
        struct kiln_error err = KILN_ERROR_INIT;
        struct oci_layout *l = oci_layout_open(dir, false, &err);
        char *buf = NULL, *z;
        size_t len = 0;

        assert_non_null(l);
        assert_int_equal(oci_layout_blob_read(l, d, -1, 1 << 20, &buf, &len, &err), 0);
        oci_layout_free(l);
        z = realloc(buf, len + 1);
        assert_non_null(z);
        z[len] = '\0';
        return z;
}

/* The config of the image whose manifest is md, in the layout at dir. */
static char *read_config(const char *dir, const struct oci_descriptor *md)
{
        struct kiln_error err = KILN_ERROR_INIT;
        char *mbuf = read_blob(dir, &md->digest);
        struct oci_manifest *m = NULL;
        char *c;

        assert_int_equal(oci_manifest_parse(mbuf, strlen(mbuf), OCI_MT_MANIFEST, &m, &err), 0);
        c = read_blob(dir, &m->config.digest);
        oci_manifest_free(m);
        free(mbuf);
        return c;
}

static void layer_desc(const char *bytes, struct oci_descriptor *d, struct oci_digest *diff_id)
{
        memset(d, 0, sizeof(*d));
        d->media_type = OCI_MT_LAYER;
        oci_digest_of_buffer(bytes, strlen(bytes), &d->digest);
        d->size = (int64_t)strlen(bytes);
        *diff_id = d->digest; /* an uncompressed layer: the blob is the tar */
}

static int setup_no_sde(void **state)
{
        (void)state;
        unsetenv("SOURCE_DATE_EPOCH");
        return 0;
}

/* ---- a store that records (and can fail) what is asked of it ---- */

struct rec_store {
        struct oci_store base;
        struct oci_store *inner;
        char log[2048];
        const char *fail; /* "blob", "manifest" or "tag": that op fails */
};

static struct rec_store *REC(struct oci_store *s)
{
        return (struct rec_store *)s;
}

static void note(struct rec_store *r, const char *what, const char *arg)
{
        size_t n = strlen(r->log);

        snprintf(r->log + n, sizeof(r->log) - n, "%s%s %s", n ? ";" : "", what, arg ? arg : "-");
}

static int rec_get_manifest(struct oci_store *s, const char *ref, char **ret_buf, size_t *ret_len,
                            char **ret_mt, struct oci_digest *ret_digest, struct kiln_error *err)
{
        return REC(s)->inner->ops->get_manifest(REC(s)->inner, ref, ret_buf, ret_len, ret_mt,
                                                ret_digest, err);
}

static struct oci_reader *rec_open_blob(struct oci_store *s, const struct oci_descriptor *d,
                                        struct kiln_error *err)
{
        return REC(s)->inner->ops->open_blob(REC(s)->inner, d, err);
}

static int rec_has_blob(struct oci_store *s, const struct oci_descriptor *d, bool *ret,
                        struct kiln_error *err)
{
        return REC(s)->inner->ops->has_blob(REC(s)->inner, d, ret, err);
}

static int rec_put_blob(struct oci_store *s, const struct oci_descriptor *d, struct oci_reader *r,
                        struct kiln_error *err)
{
        note(REC(s), "blob", d->media_type);
        if (REC(s)->fail && !strcmp(REC(s)->fail, "blob")) {
                oci_reader_free(r);
                return kiln_error_set(err, KILN_E_IO, "blob refused");
        }
        return REC(s)->inner->ops->put_blob(REC(s)->inner, d, r, err);
}

static int rec_put_manifest(struct oci_store *s, const struct oci_descriptor *d, const char *buf,
                            size_t len, struct kiln_error *err)
{
        note(REC(s), "manifest", NULL);
        if (REC(s)->fail && !strcmp(REC(s)->fail, "manifest"))
                return kiln_error_set(err, KILN_E_IO, "manifest refused");
        return REC(s)->inner->ops->put_manifest(REC(s)->inner, d, buf, len, err);
}

static int rec_tag(struct oci_store *s, const char *tag, const struct oci_descriptor *d,
                   struct kiln_error *err)
{
        note(REC(s), "tag", tag);
        if (REC(s)->fail && !strcmp(REC(s)->fail, "tag"))
                return kiln_error_set(err, KILN_E_IO, "tag refused");
        return REC(s)->inner->ops->tag(REC(s)->inner, tag, d, err);
}

static void rec_free(struct oci_store *s)
{
        (void)s;
}

static const struct oci_store_ops rec_ops = {
    .kind = "recording",
    .get_manifest = rec_get_manifest,
    .open_blob = rec_open_blob,
    .has_blob = rec_has_blob,
    .put_blob = rec_put_blob,
    .put_manifest = rec_put_manifest,
    .tag = rec_tag,
    .free = rec_free,
};

static void rec_init(struct rec_store *r, struct oci_store *inner)
{
        memset(r, 0, sizeof(*r));
        r->base.ops = &rec_ops;
        r->base.name = inner->name;
        r->base.default_ref = inner->default_ref;
        r->inner = inner;
}

/* ---- a base image written by hand ---- */

#define BASE_LAYER "base layer bytes"
#define BASE_CONFIG                                                                                \
        "{\"architecture\":\"amd64\",\"os\":\"linux\",\"created\":\"2020-01-02T03:04:05Z\","       \
        "\"container\":\"c0ffee\",\"container_config\":{\"Cmd\":[\"x\"]},"                         \
        "\"config\":{\"Env\":[\"PATH=/bin\",\"A=1\"],\"Labels\":{\"z\":\"1\"}},"                   \
        "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"%s\"]},"                                  \
        "\"history\":[{\"created_by\":\"base\"}]}"

/* A Docker schema2 image tagged "b" in a layout at dir: one layer of a
 * Docker media type with a field kiln does not know. */
static void make_base(const char *dir)
{
        struct kiln_error err = KILN_ERROR_INIT;
        struct oci_layout *l = oci_layout_open(dir, true, &err);
        struct oci_digest ld, cd, md;
        struct oci_descriptor d = {.media_type = DOCKER_MT_MANIFEST};
        char config[1024], manifest[2048];

        assert_non_null(l);
        assert_int_equal(oci_layout_put_blob_buffer(l, BASE_LAYER, strlen(BASE_LAYER), &ld, &err),
                         0);
        snprintf(config, sizeof(config), BASE_CONFIG, ld.str);
        assert_int_equal(oci_layout_put_blob_buffer(l, config, strlen(config), &cd, &err), 0);
        snprintf(manifest, sizeof(manifest),
                 "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":\"%s\","
                 "\"digest\":\"%s\",\"size\":%zu},\"layers\":[{\"mediaType\":\"%s\","
                 "\"digest\":\"%s\",\"size\":%zu,\"x-extra\":1}]}",
                 DOCKER_MT_MANIFEST, DOCKER_MT_CONFIG, cd.str, strlen(config), DOCKER_MT_LAYER_TAR,
                 ld.str, strlen(BASE_LAYER));
        assert_int_equal(oci_layout_put_blob_buffer(l, manifest, strlen(manifest), &md, &err), 0);
        d.digest = md;
        d.size = (int64_t)strlen(manifest);
        assert_int_equal(oci_layout_tag(l, "b", &d, &err), 0);
        oci_layout_free(l);
}

/* ---- tests ---- */

static void test_scratch_image_has_exact_config_and_manifest(void **state)
{
        char *dir = make_tmpdir();
        struct kiln_error err = KILN_ERROR_INIT;
        struct oci_platform plat = {.os = "linux", .architecture = "arm64", .variant = "v8"};
        struct oci_image_edit *e = oci_image_edit_new(&plat, &err);
        struct oci_store *st = oci_layout_store_new(dir, "v1", true, &err);
        struct oci_descriptor d, md;
        struct oci_digest diff;
        struct oci_image img = {0};
        char want[1024], *config;

        (void)state;
        assert_non_null(e);
        assert_non_null(st);
        layer_desc("layer one", &d, &diff);
        assert_int_equal(oci_image_edit_add_layer(e, &d, &diff,
                                                  &(struct oci_history){.dated = true,
                                                                        .created_by = "/opt",
                                                                        .comment = "kiln append"},
                                                  &err),
                         0);
        assert_int_equal(oci_image_edit_write(e, st, (const char *const[]){NULL}, 1, &md, &err), 0);
        assert_string_equal(md.media_type, OCI_MT_MANIFEST);
        config = read_config(dir, &md);
        snprintf(want, sizeof(want),
                 "{\"architecture\":\"arm64\",\"variant\":\"v8\",\"os\":\"linux\",\"config\":{},"
                 "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"%s\"]},"
                 "\"history\":[{\"created\":\"1970-01-01T00:00:00Z\",\"created_by\":\"/opt\","
                 "\"comment\":\"kiln append\"}],\"created\":\"1970-01-01T00:00:00Z\"}",
                 diff.str);
        assert_string_equal(config, want);
        free(config);
        /* the place's tag names it, and what it names reads back whole */
        assert_int_equal(oci_image_load(st, "v1", NULL, &img, &err), 0);
        assert_string_equal(img.top.desc.digest.str, md.digest.str);
        assert_int_equal(img.m->n_layers, 1);
        assert_string_equal(img.m->layers[0].digest.str, d.digest.str);
        assert_string_equal(img.m->config.media_type, OCI_MT_CONFIG);
        assert_null(img.m->annotations);
        oci_image_release(&img);
        oci_image_edit_free(e);
        oci_store_free(st);
        kiln_rm_rf(dir);
        free(dir);
}

static void test_image_from_a_store_keeps_base_and_copies_its_layers(void **state)
{
        char *src_dir = make_tmpdir(), *dst_dir = make_tmpdir();
        struct kiln_error err = KILN_ERROR_INIT;
        struct oci_store *src, *dst;
        struct oci_image_edit *e;
        struct oci_descriptor md;
        struct oci_image img = {0};
        json_t *c, *cfg;
        const json_t *now;

        (void)state;
        make_base(src_dir);
        src = oci_layout_store_new(src_dir, "b", false, &err);
        dst = oci_layout_store_new(dst_dir, "out", true, &err);
        assert_non_null(src);
        assert_non_null(dst);
        e = oci_image_edit_load(src, NULL, NULL, &err);
        assert_non_null(e);
        /* Env: in place for a name it has, appended for a new one */
        assert_int_equal(oci_image_edit_set_env(e, "A=2", &err), 0);
        assert_int_equal(oci_image_edit_set_env(e, "B=3", &err), 0);
        assert_int_equal(oci_image_edit_set_env(e, "=x", &err), -1);
        assert_non_null(strstr(err.msg, "invalid environment variable '=x'"));
        /* Labels sorted whatever the order they came in */
        assert_int_equal(oci_image_edit_set_label(e, "b", "2", &err), 0);
        assert_int_equal(oci_image_edit_set_label(e, "a", "1", &err), 0);
        assert_int_equal(oci_image_edit_set_field(e, "Cmd", json_pack("[s]", "sh"), &err), 0);
        assert_int_equal(oci_image_edit_set_field(e, "User", NULL, &err), -1);
        assert_non_null(strstr(err.msg, "'User'"));
        assert_int_equal(
            oci_image_edit_add_history(e, &(struct oci_history){.created_by = "kiln config"}, &err),
            0);
        now = oci_image_edit_config(e);
        assert_non_null(json_object_get(now, "container")); /* kept unless dropped */
        assert_int_equal(oci_image_edit_write(e, dst, (const char *const[]){NULL}, 1, &md, &err),
                         0);
        /* the base's layer was copied from src: dst holds the whole image */
        assert_int_equal(oci_image_load(dst, "out", NULL, &img, &err), 0);
        assert_int_equal(img.m->n_layers, 1);
        /* its descriptor as the base wrote it: Docker type, unknown field kept */
        assert_string_equal(img.m->layers[0].media_type, DOCKER_MT_LAYER_TAR);
        assert_non_null(json_object_get(img.m->layers[0].json, "x-extra"));
        {
                struct oci_reader *r = dst->ops->open_blob(dst, &img.m->layers[0], &err);
                assert_non_null(r);
                oci_reader_free(r);
        }
        c = img.config;
        cfg = json_object_get(c, "config");
        assert_string_equal(json_string_value(json_array_get(json_object_get(cfg, "Env"), 1)),
                            "A=2");
        assert_string_equal(json_string_value(json_array_get(json_object_get(cfg, "Env"), 2)),
                            "B=3");
        {
                char *labels =
                    json_dumps(json_object_get(cfg, "Labels"), JSON_COMPACT | JSON_PRESERVE_ORDER);
                assert_string_equal(labels, "{\"a\":\"1\",\"b\":\"2\",\"z\":\"1\"}");
                free(labels);
        }
        /* no SOURCE_DATE_EPOCH: the base's date stays */
        assert_string_equal(json_string_value(json_object_get(c, "created")),
                            "2020-01-02T03:04:05Z");
        assert_int_equal(json_array_size(json_object_get(c, "history")), 2);
        assert_true(json_is_true(
            json_object_get(json_array_get(json_object_get(c, "history"), 1), "empty_layer")));
        oci_image_release(&img);
        oci_image_edit_free(e);
        oci_store_free(src);
        oci_store_free(dst);
        kiln_rm_rf(src_dir);
        kiln_rm_rf(dst_dir);
        free(src_dir);
        free(dst_dir);
}

static void test_drop_docker_and_set_time(void **state)
{
        char *src_dir = make_tmpdir(), *dst_dir = make_tmpdir();
        struct kiln_error err = KILN_ERROR_INIT;
        struct oci_store *src, *dst;
        struct oci_image base = {0}, img = {0};
        struct oci_image_edit *e;
        struct oci_descriptor md;

        (void)state;
        make_base(src_dir);
        src = oci_layout_store_new(src_dir, "b", false, &err);
        dst = oci_layout_store_new(dst_dir, NULL, true, &err);
        assert_int_equal(oci_image_load(src, NULL, NULL, &base, &err), 0);
        e = oci_image_edit_new_from(&base, &err);
        oci_image_release(&base); /* the edit holds what it needs */
        assert_non_null(e);
        oci_image_edit_set_time(e, 1700000000);
        assert_string_equal(oci_image_edit_time_text(e), "2023-11-14T22:13:20Z");
        oci_image_edit_drop_docker(e);
        assert_null(json_object_get(oci_image_edit_config(e), "container"));
        assert_null(json_object_get(oci_image_edit_config(e), "container_config"));
        assert_int_equal(oci_image_edit_write(e, dst, NULL, 0, &md, &err), 0);
        /* unnamed: nothing in index.json; the base's layer not copied (no store) */
        assert_int_equal(oci_image_load(dst, md.digest.str, NULL, &img, &err), 0);
        assert_string_equal(img.m->layers[0].media_type, OCI_MT_LAYER);
        assert_null(json_object_get(img.m->layers[0].json, "x-extra"));
        assert_string_equal(json_string_value(json_object_get(img.config, "created")),
                            "2023-11-14T22:13:20Z");
        {
                bool have = true;
                assert_int_equal(dst->ops->has_blob(dst, &img.m->layers[0], &have, &err), 0);
                assert_false(have);
        }
        {
                struct oci_layout *l = oci_layout_open(dst_dir, false, &err);
                struct oci_index *x = NULL;
                const struct oci_descriptor *got;
                assert_int_equal(oci_layout_resolve(l, NULL, &x, &got, &err), -1);
                oci_index_free(x);
                oci_layout_free(l);
        }
        oci_image_release(&img);
        oci_image_edit_free(e);
        oci_store_free(src);
        oci_store_free(dst);
        kiln_rm_rf(src_dir);
        kiln_rm_rf(dst_dir);
        free(src_dir);
        free(dst_dir);
}

static void test_source_date_epoch_rules(void **state)
{
        static const struct {
                const char *s;
                int rc;
                bool set;
                int64_t v;
        } cases[] = {
            {NULL, 0, false, 0},
            {"", 0, false, 0},
            {"0", 0, true, 0},
            {"1700000000", 0, true, 1700000000},
            {"0001", 0, true, 1},
            {"253402300799", 0, true, 253402300799LL},
            {"253402300800", -1, false, 0},
            {"99999999999999999999999999", -1, false, 0},
            {"-1", -1, false, 0},
            {"+1", -1, false, 0},
            {" 1", -1, false, 0},
            {"1 ", -1, false, 0},
            {"1.5", -1, false, 0},
            {"12x", -1, false, 0},
            {"0x10", -1, false, 0},
        };
        (void)state;
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                struct kiln_error err = KILN_ERROR_INIT;
                int64_t v = -7;
                bool set = !cases[i].set;
                int rc = oci_source_date_epoch_parse(cases[i].s, &v, &set, &err);
                assert_int_equal(rc, cases[i].rc);
                if (rc == 0) {
                        assert_int_equal(set, cases[i].set);
                        assert_int_equal(v, cases[i].v);
                } else {
                        assert_int_equal(err.code, KILN_E_USAGE);
                        assert_non_null(strstr(err.msg, "invalid SOURCE_DATE_EPOCH '"));
                        assert_int_equal(v, -7); /* never written on failure */
                }
        }
}

static void test_malformed_source_date_epoch_refuses_every_edit(void **state)
{
        struct kiln_error err = KILN_ERROR_INIT;

        (void)state;
        setenv("SOURCE_DATE_EPOCH", "yesterday", 1);
        assert_null(oci_image_edit_new(NULL, &err));
        assert_string_equal(err.msg,
                            "invalid SOURCE_DATE_EPOCH 'yesterday': not a number of seconds since "
                            "1970-01-01");
        kiln_error_clear(&err);
        assert_null(oci_image_edit_new_artifact("application/x", &err));
        assert_non_null(strstr(err.msg, "SOURCE_DATE_EPOCH"));
        /* set and valid: the image and its dated history take it, over the base's */
        setenv("SOURCE_DATE_EPOCH", "86400", 1);
        {
                struct oci_image_edit *e = oci_image_edit_new(NULL, &err);
                assert_non_null(e);
                assert_int_equal(oci_image_edit_time(e), 86400);
                assert_string_equal(oci_image_edit_time_text(e), "1970-01-02T00:00:00Z");
                oci_image_edit_free(e);
        }
        unsetenv("SOURCE_DATE_EPOCH");
}

static void test_source_date_epoch_replaces_base_date(void **state)
{
        char *src_dir = make_tmpdir(), *dst_dir = make_tmpdir();
        struct kiln_error err = KILN_ERROR_INIT;
        struct oci_store *src, *dst;
        struct oci_image_edit *e;
        struct oci_descriptor md, d;
        struct oci_digest diff;
        struct oci_image img = {0};
        json_t *h;

        (void)state;
        make_base(src_dir);
        src = oci_layout_store_new(src_dir, "b", false, &err);
        dst = oci_layout_store_new(dst_dir, "v", true, &err);
        setenv("SOURCE_DATE_EPOCH", "1700000000", 1);
        e = oci_image_edit_load(src, NULL, NULL, &err);
        unsetenv("SOURCE_DATE_EPOCH");
        assert_non_null(e);
        layer_desc("new layer", &d, &diff);
        assert_int_equal(
            dst->ops->put_blob(dst, &d, oci_reader_from_buffer("new layer", 9, &err), &err), 0);
        assert_int_equal(
            oci_image_edit_add_layer(
                e, &d, &diff, &(struct oci_history){.dated = true, .created_by = "/x"}, &err),
            0);
        assert_int_equal(oci_image_edit_write(e, dst, (const char *const[]){NULL}, 1, &md, &err),
                         0);
        assert_int_equal(oci_image_load(dst, NULL, NULL, &img, &err), 0);
        assert_string_equal(json_string_value(json_object_get(img.config, "created")),
                            "2023-11-14T22:13:20Z");
        h = json_array_get(json_object_get(img.config, "history"), 1);
        assert_string_equal(json_string_value(json_object_get(h, "created")),
                            "2023-11-14T22:13:20Z");
        assert_int_equal(
            json_array_size(json_object_get(json_object_get(img.config, "rootfs"), "diff_ids")), 2);
        oci_image_release(&img);
        oci_image_edit_free(e);
        oci_store_free(src);
        oci_store_free(dst);
        kiln_rm_rf(src_dir);
        kiln_rm_rf(dst_dir);
        free(src_dir);
        free(dst_dir);
}

static void test_write_order_config_manifest_tag(void **state)
{
        char *dir = make_tmpdir();
        struct kiln_error err = KILN_ERROR_INIT;
        struct oci_store *inner = oci_layout_store_new(dir, "v1", true, &err);
        struct rec_store rec;
        struct oci_image_edit *e = oci_image_edit_new(NULL, &err);
        struct oci_descriptor md, md2;
        char want[256];

        (void)state;
        assert_non_null(inner);
        assert_non_null(e);
        rec_init(&rec, inner);
        assert_int_equal(oci_image_edit_write(
                             e, &rec.base, (const char *const[]){NULL, "extra", OCI_EDIT_BY_DIGEST},
                             3, &md, &err),
                         0);
        snprintf(want, sizeof(want), "blob %s;manifest -;tag -;tag extra;tag %s", OCI_MT_CONFIG,
                 md.digest.str);
        assert_string_equal(rec.log, want);
        /* again: everything is there and named: nothing is put, no tag moves
         * except by digest (an index entry the store keeps once) */
        rec.log[0] = '\0';
        assert_int_equal(
            oci_image_edit_write(e, &rec.base, (const char *const[]){NULL, "extra"}, 2, &md2, &err),
            0);
        assert_string_equal(md2.digest.str, md.digest.str);
        assert_string_equal(rec.log, "");
        oci_image_edit_free(e);
        oci_store_free(inner);
        kiln_rm_rf(dir);
        free(dir);
}

static void test_failed_manifest_put_leaves_no_tag(void **state)
{
        static const char *const fails[] = {"blob", "manifest", "tag"};
        (void)state;
        for (size_t i = 0; i < ARRAY_SIZE(fails); i++) {
                char *dir = make_tmpdir();
                struct kiln_error err = KILN_ERROR_INIT;
                struct oci_store *inner = oci_layout_store_new(dir, "v1", true, &err);
                struct oci_image_edit *e = oci_image_edit_new(NULL, &err);
                struct rec_store rec;
                struct oci_descriptor md = {.size = -5};
                struct oci_index *x = NULL;
                const struct oci_descriptor *got;
                struct oci_layout *l;

                assert_non_null(inner);
                rec_init(&rec, inner);
                rec.fail = fails[i];
                assert_int_equal(
                    oci_image_edit_write(e, &rec.base, (const char *const[]){NULL}, 1, &md, &err),
                    -1);
                assert_int_equal(md.size, -5); /* not written on failure */
                /* what failed is the last thing asked: nothing after it */
                assert_non_null(strstr(err.msg, fails[i]));
                if (i == 0)
                        assert_null(strstr(rec.log, "manifest"));
                if (i <= 1)
                        assert_null(strstr(rec.log, "tag"));
                l = oci_layout_open(dir, false, &err);
                assert_int_equal(oci_layout_resolve(l, "v1", &x, &got, &err), -1);
                assert_int_equal(err.code, KILN_E_NOT_FOUND);
                oci_index_free(x);
                oci_layout_free(l);
                oci_image_edit_free(e);
                oci_store_free(inner);
                kiln_rm_rf(dir);
                free(dir);
        }
}

static void test_artifact_with_subject_and_sorted_annotations(void **state)
{
        char *dir = make_tmpdir();
        struct kiln_error err = KILN_ERROR_INIT;
        struct oci_store *st = oci_layout_store_new(dir, "image-tag", true, &err);
        struct oci_image_edit *e = oci_image_edit_new_artifact("application/x-test", &err);
        struct oci_descriptor subject = {.media_type = OCI_MT_MANIFEST, .size = 3};
        struct oci_descriptor d, md;
        struct oci_digest diff;
        json_t *ann = json_pack("{s:s, s:s}", "z.key", "1", "a.key", "2");
        json_t *bad = json_pack("{s:i}", "n", 1);
        char *mbuf, want[1024];

        (void)state;
        assert_non_null(e);
        oci_digest_of_buffer("abc", 3, &subject.digest);
        layer_desc("{\"doc\":1}", &d, &diff);
        d.media_type = "application/spdx+json";
        assert_int_equal(
            st->ops->put_blob(st, &d, oci_reader_from_buffer("{\"doc\":1}", 9, &err), &err), 0);
        assert_int_equal(oci_image_edit_add_layer(e, &d, NULL, NULL, &err), 0);
        assert_int_equal(oci_image_edit_set_subject(e, &subject, &err), 0);
        assert_int_equal(oci_image_edit_annotate_all(e, ann, &err), 0);
        assert_int_equal(oci_image_edit_annotate(e, "m.key", "3", &err), 0);
        assert_int_equal(oci_image_edit_annotate_all(e, bad, &err), -1);
        assert_non_null(strstr(err.msg, "invalid annotation 'n': not a string"));
        /* an artifact has no config to edit */
        assert_int_equal(oci_image_edit_set_env(e, "A=1", &err), -1);
        assert_int_equal(
            oci_image_edit_write(e, st, (const char *const[]){OCI_EDIT_BY_DIGEST}, 1, &md, &err),
            0);
        mbuf = read_blob(dir, &md.digest);
        snprintf(
            want, sizeof(want),
            "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"artifactType\":\"application/x-test\","
            "\"config\":{\"mediaType\":\"%s\",\"digest\":\"sha256:"
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a\",\"size\":2},"
            "\"layers\":[{\"mediaType\":\"application/spdx+json\",\"digest\":\"%s\","
            "\"size\":9}],\"subject\":{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":3},"
            "\"annotations\":{\"a.key\":\"2\",\"m.key\":\"3\",\"z.key\":\"1\"}}",
            OCI_MT_MANIFEST, OCI_MT_EMPTY, d.digest.str, OCI_MT_MANIFEST, subject.digest.str);
        assert_string_equal(mbuf, want);
        free(mbuf);
        /* recorded by digest, not under the place's tag */
        {
                struct oci_layout *l = oci_layout_open(dir, false, &err);
                struct oci_index *x = NULL;
                const struct oci_descriptor *got;
                assert_int_equal(oci_layout_resolve(l, "image-tag", &x, &got, &err), -1);
                assert_int_equal(oci_layout_resolve(l, NULL, &x, &got, &err), 0);
                assert_string_equal(got->digest.str, md.digest.str);
                oci_index_free(x);
                oci_layout_free(l);
        }
        json_decref(ann);
        json_decref(bad);
        oci_image_edit_free(e);
        oci_store_free(st);
        kiln_rm_rf(dir);
        free(dir);
}

static void test_clear_layers_and_merge_config(void **state)
{
        struct kiln_error err = KILN_ERROR_INIT;
        struct oci_image_edit *e = oci_image_edit_new(NULL, &err);
        struct oci_descriptor d;
        struct oci_digest diff;
        json_t *fields = json_pack("{s:[s], s:{s:s, s:s}, s:s}", "Cmd", "bash", "Labels", "y", "1",
                                   "b", "2", "WorkingDir", "/app");
        const json_t *c;
        char *dump;

        (void)state;
        assert_non_null(e);
        layer_desc("x", &d, &diff);
        assert_int_equal(oci_image_edit_set_label(e, "x", "0", &err), 0);
        assert_int_equal(
            oci_image_edit_add_layer(e, &d, &diff, &(struct oci_history){.created_by = "a"}, &err),
            0);
        /* an image's layer needs its diffID */
        assert_int_equal(oci_image_edit_add_layer(e, &d, NULL, NULL, &err), -1);
        oci_image_edit_clear_layers(e);
        assert_int_equal(oci_image_edit_merge_config(e, fields, &err), 0);
        c = oci_image_edit_config(e);
        dump = json_dumps(json_object_get(c, "config"), JSON_COMPACT | JSON_PRESERVE_ORDER);
        assert_string_equal(dump, "{\"Labels\":{\"b\":\"2\",\"x\":\"0\",\"y\":\"1\"},"
                                  "\"Cmd\":[\"bash\"],\"WorkingDir\":\"/app\"}");
        free(dump);
        assert_int_equal(json_array_size(json_object_get(c, "history")), 0);
        assert_int_equal(json_array_size(json_object_get(json_object_get(c, "rootfs"), "diff_ids")),
                         0);
        json_decref(fields);
        oci_image_edit_free(e);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup(test_scratch_image_has_exact_config_and_manifest, setup_no_sde),
            cmocka_unit_test_setup(test_image_from_a_store_keeps_base_and_copies_its_layers,
                                   setup_no_sde),
            cmocka_unit_test_setup(test_drop_docker_and_set_time, setup_no_sde),
            cmocka_unit_test(test_source_date_epoch_rules),
            cmocka_unit_test(test_malformed_source_date_epoch_refuses_every_edit),
            cmocka_unit_test_setup(test_source_date_epoch_replaces_base_date, setup_no_sde),
            cmocka_unit_test_setup(test_write_order_config_manifest_tag, setup_no_sde),
            cmocka_unit_test_setup(test_failed_manifest_put_leaves_no_tag, setup_no_sde),
            cmocka_unit_test_setup(test_artifact_with_subject_and_sorted_annotations, setup_no_sde),
            cmocka_unit_test_setup(test_clear_layers_and_merge_config, setup_no_sde),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
