/* A project's own pyproject.toml ([project], PEP 621) and its editable
 * install (PEP 660), as `pip install -e DIR[extras]` leaves it: see
 * project.h. */
#include <archive.h>
#include <archive_entry.h>
#include <stdio.h>
#include <string.h>

#include "digest.h"
#include "io.h"
#include "project.h"
#include "recipe_internal.h"
#include "toml.h"
#include "util.h"

#define PYPROJECT_MAX (1024u * 1024)

void recipe_pyproject_release(struct recipe_pyproject *pp)
{
        if (!pp)
                return;
        json_decref(pp->doc);
        free(pp->name);
        free(pp->version);
        memset(pp, 0, sizeof(*pp));
}

static bool string_array(const json_t *a)
{
        size_t i;
        const json_t *v;

        if (!a)
                return true;
        if (!json_is_array(a))
                return false;
        json_array_foreach(a, i, v)
                if (!json_is_string(v))
                        return false;
        return true;
}

int recipe_pyproject_read(const char *dir, struct recipe_pyproject *ret, struct kiln_error *err)
{
        _cleanup_free_ char *path = kiln_strdupf("%s/pyproject.toml", dir);
        _cleanup_free_ char *buf = NULL;
        struct recipe_pyproject pp = {0};
        const json_t *proj, *v, *opt;
        const char *key;
        size_t len;

        if (!path)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (kiln_read_file(path, PYPROJECT_MAX, &buf, &len, err) < 0)
                return -1;
        pp.doc = oci_toml_parse(buf, len, path, err);
        if (!pp.doc)
                return -1;
        oci_digest_of_buffer(buf, len, &pp.digest);
        proj = json_object_get(pp.doc, "project");
        if (!json_is_object(proj) || !json_is_string(json_object_get(proj, "name"))) {
                recipe_pyproject_release(&pp);
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid pyproject '%s': no [project] table with a name",
                                      path);
        }
        opt = json_object_get(proj, "optional-dependencies");
        if (!string_array(json_object_get(proj, "dependencies")) || (opt && !json_is_object(opt))) {
                recipe_pyproject_release(&pp);
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid pyproject '%s': dependencies must be arrays of strings",
                                      path);
        }
        json_object_foreach((json_t *)(uintptr_t)opt, key, v)
                if (!string_array(v)) {
                        recipe_pyproject_release(&pp);
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "invalid pyproject '%s': optional-dependencies '%s' must be an array of strings",
                                              path, key);
                }
        pp.project = proj;
        pp.name = strdup(json_string_value(json_object_get(proj, "name")));
        /* a dynamic version needs the build backend, which kiln does not run */
        v = json_object_get(proj, "version");
        pp.version = strdup(json_is_string(v) ? json_string_value(v) : "0");
        if (!pp.name || !pp.version) {
                recipe_pyproject_release(&pp);
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        *ret = pp;
        return 0;
}

/* dependencies, then optional-dependencies[extra] for each extra */
int recipe_pyproject_requirements(const struct recipe_pyproject *pp, const char *const *extras,
                                  size_t n_extras, const char *what,
                                  struct recipe_requirements *ret, struct kiln_error *err)
{
        struct recipe_requirements out = {0};
        const json_t *opt = json_object_get(pp->project, "optional-dependencies");
        _cleanup_free_ char *self = strdup(pp->name);

        if (!self)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        recipe_pep503_normalize(self);
        for (size_t e = 0; e <= n_extras; e++) {
                const json_t *list = e == 0 ? json_object_get(pp->project, "dependencies") : NULL;
                const json_t *v;
                size_t i;

                if (e > 0) {
                        list = json_object_get(opt, extras[e - 1]);
                        if (!list) {
                                recipe_requirements_release(&out);
                                return kiln_error_set(err, KILN_E_INVALID,
                                                      "project '%s' in '%s' has no extra '%s'",
                                                      pp->name, what, extras[e - 1]);
                        }
                }
                json_array_foreach(list, i, v) {
                        struct recipe_requirement *ni = realloc(out.items, (out.n + 1) * sizeof(*ni));
                        if (!ni) {
                                recipe_requirements_release(&out);
                                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        }
                        out.items = ni;
                        if (recipe_requirement_parse(json_string_value(v), &out.items[out.n], err) <
                            0) {
                                recipe_requirements_release(&out);
                                kiln_error_prefix(err, "pyproject '%s'", what);
                                return -1;
                        }
                        /* "proj[other]" inside proj's own extras: its deps are listed here too */
                        if (!strcmp(out.items[out.n].name, self)) {
                                recipe_requirement_release(&out.items[out.n]);
                                continue;
                        }
                        out.n++;
                }
        }
        *ret = out;
        return 0;
}

/* ---- the editable wheel (PEP 660) ---- */

static int zip_add(struct archive *a, const char *path, const char *data, size_t len,
                   struct kiln_error *err)
{
        struct archive_entry *e = archive_entry_new();
        int rc = 0;

        if (!e)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        archive_entry_set_pathname(e, path);
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        archive_entry_set_size(e, (la_int64_t)len);
        archive_entry_set_mtime(e, 315532800, 0); /* 1980-01-01: the zip epoch */
        if (archive_write_header(a, e) != ARCHIVE_OK ||
            (len && archive_write_data(a, data, len) != (la_ssize_t)len))
                rc = kiln_error_set(err, KILN_E_IO, "cannot write '%s': %s", path,
                                    archive_error_string(a));
        archive_entry_free(e);
        return rc;
}

/* METADATA (core metadata 2.1) from [project] */
static char *metadata_text(const struct recipe_pyproject *pp)
{
        const json_t *proj = pp->project, *opt = json_object_get(proj, "optional-dependencies");
        const json_t *v, *list;
        const char *key;
        size_t i, cap = 4096, n = 0;
        char *out = malloc(cap);

#define ADD(...)                                                                                   \
        do {                                                                                       \
                int w_ = snprintf(out + n, cap - n, __VA_ARGS__);                                  \
                while (w_ >= 0 && (size_t)w_ >= cap - n) {                                         \
                        char *no_ = realloc(out, cap * 2);                                         \
                        if (!no_) {                                                                \
                                free(out);                                                         \
                                return NULL;                                                       \
                        }                                                                          \
                        out = no_;                                                                 \
                        cap *= 2;                                                                  \
                        w_ = snprintf(out + n, cap - n, __VA_ARGS__);                              \
                }                                                                                  \
                n += (size_t)(w_ > 0 ? w_ : 0);                                                    \
        } while (0)
        if (!out)
                return NULL;
        ADD("Metadata-Version: 2.1\nName: %s\nVersion: %s\n", pp->name, pp->version);
        if ((v = json_object_get(proj, "description")) && json_is_string(v) &&
            !strchr(json_string_value(v), '\n'))
                ADD("Summary: %s\n", json_string_value(v));
        if ((v = json_object_get(proj, "requires-python")) && json_is_string(v))
                ADD("Requires-Python: %s\n", json_string_value(v));
        json_array_foreach(json_object_get(proj, "dependencies"), i, v)
                ADD("Requires-Dist: %s\n", json_string_value(v));
        json_object_foreach((json_t *)(uintptr_t)opt, key, list) {
                ADD("Provides-Extra: %s\n", key);
                json_array_foreach(list, i, v) {
                        const char *d = json_string_value(v);
                        const char *semi = strchr(d, ';');
                        if (semi)
                                ADD("Requires-Dist: %.*s; (%s) and extra == \"%s\"\n",
                                    (int)(semi - d), d, semi + 1, key);
                        else
                                ADD("Requires-Dist: %s; extra == \"%s\"\n", d, key);
                }
        }
#undef ADD
        return out;
}

/* entry_points.txt from [project.scripts], [project.gui-scripts] and
 * [project.entry-points.GROUP] */
static char *entry_points_text(const struct recipe_pyproject *pp)
{
        static const char *const groups[][2] = {{"scripts", "console_scripts"},
                                                {"gui-scripts", "gui_scripts"}};
        const json_t *eps = json_object_get(pp->project, "entry-points"), *t, *v;
        _cleanup_free_ char *out = strdup("");
        const char *key, *name;

        for (size_t g = 0; out && g < ARRAY_SIZE(groups); g++) {
                t = json_object_get(pp->project, groups[g][0]);
                if (!json_object_size(t))
                        continue;
                char *o2 = kiln_strdupf("%s[%s]\n", out, groups[g][1]);
                free(out);
                out = o2;
                json_object_foreach((json_t *)(uintptr_t)t, name, v) {
                        if (!out || !json_is_string(v))
                                continue;
                        o2 = kiln_strdupf("%s%s = %s\n", out, name, json_string_value(v));
                        free(out);
                        out = o2;
                }
        }
        json_object_foreach((json_t *)(uintptr_t)eps, key, t) {
                char *o2;
                if (!out)
                        break;
                o2 = kiln_strdupf("%s[%s]\n", out, key);
                free(out);
                out = o2;
                json_object_foreach((json_t *)(uintptr_t)t, name, v) {
                        if (!out || !json_is_string(v))
                                continue;
                        o2 = kiln_strdupf("%s%s = %s\n", out, name, json_string_value(v));
                        free(out);
                        out = o2;
                }
        }
        return steal_ptr(&out);
}

int recipe_editable_wheel_write(const struct recipe_pyproject *pp, const char *image_path,
                                const char *dest, char **ret_file, struct kiln_error *err)
{
        _cleanup_free_ char *dist = strdup(pp->name), *meta = metadata_text(pp);
        _cleanup_free_ char *eps = entry_points_text(pp), *pth = kiln_strdupf("%s\n", image_path);
        _cleanup_free_ char *record = NULL, *file = NULL, *direct = NULL;
        struct {
                char *path;
                const char *data;
        } ent[6] = {{0}};
        const char wheel[] = "Wheel-Version: 1.0\nGenerator: kiln\nRoot-Is-Purelib: true\n"
                             "Tag: py3-none-any\n";
        size_t n = 0;
        struct archive *a = NULL;
        int rc = -1;

        {
                /* PEP 610: how pip records an editable install of a directory */
                _cleanup_free_ char *url = kiln_strdupf("file://%s", image_path);
                json_t *j = url ? json_pack("{s:s, s:{s:b}}", "url", url, "dir_info", "editable", 1)
                                : NULL;
                direct = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
                json_decref(j);
        }
        if (!dist || !meta || !eps || !pth || !direct)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        /* PEP 427: the distribution part of names has '_' for runs of -_. */
        recipe_pep503_normalize(dist);
        for (char *p = dist; *p; p++)
                if (*p == '-')
                        *p = '_';
        /* setuptools' name for the path file of an editable install */
        ent[n].path = kiln_strdupf("__editable__.%s-%s.pth", dist, pp->version);
        ent[n++].data = pth;
        ent[n].path = kiln_strdupf("%s-%s.dist-info/METADATA", dist, pp->version);
        ent[n++].data = meta;
        ent[n].path = kiln_strdupf("%s-%s.dist-info/WHEEL", dist, pp->version);
        ent[n++].data = wheel;
        ent[n].path = kiln_strdupf("%s-%s.dist-info/direct_url.json", dist, pp->version);
        ent[n++].data = direct;
        if (*eps) {
                ent[n].path = kiln_strdupf("%s-%s.dist-info/entry_points.txt", dist, pp->version);
                ent[n++].data = eps;
        }
        record = strdup("");
        for (size_t i = 0; i < n && record; i++) {
                struct oci_digest d;
                char h[64], *r2;
                if (!ent[i].path)
                        goto nomem;
                oci_digest_of_buffer(ent[i].data, strlen(ent[i].data), &d);
                recipe_record_hash(&d, h, sizeof(h));
                r2 = kiln_strdupf("%s%s,%s,%zu\n", record, ent[i].path, h, strlen(ent[i].data));
                free(record);
                record = r2;
        }
        ent[n].path = kiln_strdupf("%s-%s.dist-info/RECORD", dist, pp->version);
        if (!record || !ent[n].path)
                goto nomem;
        {
                char *r2 = kiln_strdupf("%s%s,,\n", record, ent[n].path);
                free(record);
                record = r2;
                if (!record)
                        goto nomem;
        }
        ent[n++].data = record;
        file = kiln_strdupf("%s/%s-%s-0.editable-py3-none-any.whl", dest, dist, pp->version);
        a = archive_write_new();
        if (!file || !a)
                goto nomem;
        if (archive_write_set_format_zip(a) != ARCHIVE_OK ||
            archive_write_open_filename(a, file) != ARCHIVE_OK) {
                kiln_error_set(err, KILN_E_IO, "cannot write '%s': %s", file,
                               archive_error_string(a));
                goto out;
        }
        for (size_t i = 0; i < n; i++)
                if (zip_add(a, ent[i].path, ent[i].data, strlen(ent[i].data), err) < 0)
                        goto out;
        if (archive_write_close(a) != ARCHIVE_OK) {
                kiln_error_set(err, KILN_E_IO, "cannot write '%s': %s", file,
                               archive_error_string(a));
                goto out;
        }
        *ret_file = steal_ptr(&file);
        rc = 0;
        goto out;
nomem:
        kiln_error_set(err, KILN_E_NOMEM, "out of memory");
out:
        if (a)
                archive_write_free(a);
        for (size_t i = 0; i < ARRAY_SIZE(ent); i++)
                free(ent[i].path);
        return rc;
}
