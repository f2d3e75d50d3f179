/* The dpkg database a debs layer carries on a base that has one
 * (docs/recipes.md, "The dpkg database"): /var/lib/dpkg/status with the
 * base's stanzas, those of the debs layers below and the layer's own, and
 * for each of the layer's packages /var/lib/dpkg/info/PKG.list (PKG:ARCH
 * for Multi-Arch: same), .md5sums, .conffiles and the maintainer scripts,
 * as dpkg --unpack leaves them.  No script runs: a package with a postinst
 * is "install ok unpacked" (a later dpkg --configure -a configures it),
 * one without is "install ok installed". */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io.h"
#include "recipe_internal.h"
#include "stage.h"
#include "util.h"

#define STATUS_MAX (64u * 1024 * 1024)

struct recipe_dpkg {
        json_t *order;   /* keys in status order */
        json_t *stanzas; /* "name:arch" -> stanza text ending in one "\n" */
};

void recipe_dpkg_free(struct recipe_dpkg *db)
{
        if (!db)
                return;
        json_decref(db->order);
        json_decref(db->stanzas);
        free(db);
}

static char *stanza_key(const char *stanza)
{
        _cleanup_free_ char *name = recipe_control_field(stanza, "Package");
        _cleanup_free_ char *arch = recipe_control_field(stanza, "Architecture");

        return name ? kiln_strdupf("%s:%s", name, arch ? arch : "") : NULL;
}

static int put(struct recipe_dpkg *db, const char *stanza, struct kiln_error *err)
{
        _cleanup_free_ char *key = stanza_key(stanza);

        if (!key)
                return kiln_error_set(err, KILN_E_INVALID, "a dpkg status stanza has no Package");
        if (!json_object_get(db->stanzas, key))
                json_array_append_new(db->order, json_string(key));
        return json_object_set_new(db->stanzas, key, json_string(stanza)) < 0
                   ? kiln_error_set(err, KILN_E_NOMEM, "out of memory")
                   : 0;
}

int recipe_dpkg_status_path(const char *base_root, char **ret)
{
        struct stat st;
        char *p;

        *ret = NULL;
        if (!base_root)
                return 0;
        p = kiln_strdupf("%s/var/lib/dpkg/status", base_root);
        if (!p)
                return -1;
        if (stat(p, &st) == 0 && S_ISREG(st.st_mode))
                *ret = p;
        else
                free(p);
        return 0;
}

int recipe_dpkg_load(const char *status_path, struct recipe_dpkg **ret, struct kiln_error *err)
{
        struct recipe_dpkg *db = calloc(1, sizeof(*db));
        _cleanup_free_ char *buf = NULL;
        size_t len;

        if (!db || !(db->order = json_array()) || !(db->stanzas = json_object())) {
                recipe_dpkg_free(db);
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        if (kiln_read_file(status_path, STATUS_MAX, &buf, &len, err) < 0) {
                recipe_dpkg_free(db);
                kiln_error_prefix(err, "the base's dpkg status");
                return -1;
        }
        for (char *p = buf; p && *p;) {
                char *end = p;
                while (*end && !(end[0] == '\n' && end[1] == '\n'))
                        end++;
                if (*end)
                        end[1] = '\0';
                while (*p == '\n')
                        p++;
                if (*p && put(db, p, err) < 0) {
                        recipe_dpkg_free(db);
                        return -1;
                }
                p = *end ? end + 2 : NULL;
        }
        *ret = db;
        return 0;
}

static const struct recipe_deb_member *member(const struct recipe_deb_meta *m, const char *name)
{
        for (size_t i = 0; i < m->n_members; i++)
                if (!strcmp(m->members[i].name, name))
                        return &m->members[i];
        return NULL;
}

/* The control file with Status after Package and Conffiles at the end
 * (dpkg's own order of fields does not matter to its parser). */
static char *status_stanza(const struct recipe_deb_meta *m, bool installed)
{
        const char *c = m->control, *pl = strstr(c, "Package:");
        size_t cl = strlen(c), conf_len = m->conffiles ? strlen(m->conffiles) : 0;
        const char *state = installed ? "installed" : "unpacked";
        char *out, *o;
        const char *eol;

        while (cl && c[cl - 1] == '\n')
                cl--;
        if (!pl || (pl != c && pl[-1] != '\n'))
                return NULL;
        eol = strchr(pl, '\n');
        eol = eol ? eol + 1 : c + cl;
        out = malloc(cl + conf_len * 2 + 64);
        if (!out)
                return NULL;
        o = out;
        memcpy(o, c, (size_t)(eol - c));
        o += eol - c;
        if (eol == c + cl)
                *o++ = '\n';
        o += sprintf(o, "Status: install ok %s\n", state);
        if (eol < c + cl) {
                memcpy(o, eol, (size_t)(c + cl - eol));
                o += c + cl - eol;
                *o++ = '\n';
        }
        if (conf_len) {
                o += sprintf(o, "Conffiles:\n");
                for (const char *l = m->conffiles; *l;) {
                        const char *nl = strchr(l, '\n'), *sp = nl;
                        while (sp > l && *sp != ' ')
                                sp--;
                        /* dpkg --unpack: a new conffile's hash is "newconffile" */
                        o += sprintf(o, "%.*s %.*s\n", (int)(sp - l), l,
                                     installed ? (int)(nl - sp - 1) : 11,
                                     installed ? sp + 1 : "newconffile");
                        l = nl + 1;
                }
        }
        *o = '\0';
        return out;
}

/* info/BASE.NAME files of the package (BASE: PKG, or PKG:ARCH for
 * Multi-Arch: same, as dpkg names them) */
static int write_info(const struct recipe_deb_meta *m, const char *root, const char *base,
                      struct kiln_error *err)
{
        _cleanup_free_ char *dir = kiln_strdupf("%s/var/lib/dpkg/info", root);
        _cleanup_free_ char *list = NULL;

        if (!dir)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (recipe_mkdir_p(dir, err) < 0)
                return -1;
        list = kiln_strdupf("%s/%s.list", dir, base);
        if (!list || kiln_write_file_atomic(list, m->list ? m->list : "",
                                            m->list ? strlen(m->list) : 0, 0644, err) < 0)
                return list ? -1 : kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        for (size_t i = 0; i < m->n_members; i++) {
                _cleanup_free_ char *f = kiln_strdupf("%s/%s.%s", dir, base, m->members[i].name);
                mode_t mode = m->members[i].mode & 0111 ? 0755 : 0644;
                if (!f)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                if (kiln_write_file_atomic(f, m->members[i].data, m->members[i].len, mode, err) < 0)
                        return -1;
        }
        return 0;
}

int recipe_dpkg_add(struct recipe_dpkg *db, const struct recipe_deb_meta *m, const char *root,
                    struct kiln_error *err)
{
        bool installed = !member(m, "postinst");
        _cleanup_free_ char *stanza = status_stanza(m, installed);
        _cleanup_free_ char *name = recipe_control_field(m->control, "Package");
        _cleanup_free_ char *arch = recipe_control_field(m->control, "Architecture");
        _cleanup_free_ char *ma = recipe_control_field(m->control, "Multi-Arch");
        _cleanup_free_ char *base = NULL;

        if (!stanza || !name || !*name || strchr(name, '/') || name[0] == '.' || !arch ||
            strchr(arch, '/'))
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid package '%s': bad Package or Architecture",
                                      name ? name : "?");
        if (put(db, stanza, err) < 0)
                return -1;
        if (!root)
                return 0;
        base = ma && !strcmp(ma, "same") ? kiln_strdupf("%s:%s", name, arch) : strdup(name);
        if (!base)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        return write_info(m, root, base, err);
}

int recipe_dpkg_write(const struct recipe_dpkg *db, const char *root, struct kiln_error *err)
{
        _cleanup_free_ char *dir = kiln_strdupf("%s/var/lib/dpkg", root);
        _cleanup_free_ char *path = kiln_strdupf("%s/var/lib/dpkg/status", root);
        char *buf = NULL;
        size_t len = 0;
        size_t i;
        json_t *k;
        FILE *f;
        int rc;

        if (!dir || !path)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (recipe_mkdir_p(dir, err) < 0)
                return -1;
        f = open_memstream(&buf, &len);
        if (!f)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        json_array_foreach(db->order, i, k)
        {
                const char *s =
                    json_string_value(json_object_get(db->stanzas, json_string_value(k)));
                size_t n = strlen(s);
                while (n && s[n - 1] == '\n')
                        n--;
                fprintf(f, "%.*s\n\n", (int)n, s);
        }
        fclose(f);
        rc = buf ? kiln_write_file_atomic(path, buf, len, 0644, err)
                 : kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        free(buf);
        return rc;
}
