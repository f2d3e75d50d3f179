/* The dpkg database a debs layer carries on a base that has one
 * (docs/recipes.md, "The dpkg database"): /var/lib/dpkg/status with the
 * base's stanzas, those of the debs layers below and the layer's own, and
 * for each of the layer's packages /var/lib/dpkg/info/PKG.list (PKG:ARCH
 * for Multi-Arch: same), .md5sums, .conffiles and the maintainer scripts,
 * as dpkg --unpack leaves them.  No script runs: a package with a postinst
 * is "install ok unpacked" (a later dpkg --configure -a configures it),
 * one without is "install ok installed".
 *
 * Triggers (deb-triggers(5)), as dpkg --unpack records them: each new
 * package's "interest" directives join /var/lib/dpkg/triggers/File (file
 * triggers) or triggers/NAME (explicit ones), replacing its earlier ones;
 * its "activate" directives, and the file triggers of installed packages
 * whose paths it ships files under, are written to triggers/Unincorp,
 * which dpkg reads at its next run, so `dpkg --configure -a` (the
 * layer's configure step, or the user's) runs them: libc-bin's ldconfig
 * among others.  A package a configure step below already configured
 * is "installed" and its activations were run there. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io.h"
#include "json.h"
#include "model.h"
#include "recipe_internal.h"
#include "stage.h"
#include "util.h"

#define STATUS_MAX (64u * 1024 * 1024)

#define TRIGGERS_MAX (16u * 1024 * 1024)

struct recipe_dpkg {
        json_t *order;   /* keys in status order */
        json_t *stanzas; /* "name:arch" -> stanza text ending in one "\n" */
        /* triggers/File, in order: {"path", "pkg" ("NAME" or "NAME/noawait"),
         * "own": a package of the layer itself, not configured yet} */
        json_t *file_interests;
        json_t *explicit;         /* trigger name -> ["NAME" or "NAME/noawait", ...] */
        json_t *explicit_changed; /* trigger name -> true: its file is written */
        json_t *activated;        /* trigger name -> true: for Unincorp */
        char *unincorp;           /* the base's Unincorp */
        bool file_changed;
};

void recipe_dpkg_free(struct recipe_dpkg *db)
{
        if (!db)
                return;
        json_decref(db->order);
        json_decref(db->stanzas);
        json_decref(db->file_interests);
        json_decref(db->explicit);
        json_decref(db->explicit_changed);
        json_decref(db->activated);
        free(db->unincorp);
        free(db);
}

/* ---- triggers ---- */

/* "NAME" or "NAME/noawait" names the package NAME */
static bool entry_is(const char *entry, const char *pkg)
{
        size_t n = strlen(pkg);

        return !strncmp(entry, pkg, n) && (entry[n] == '\0' || entry[n] == '/');
}

/* triggers/File: "PATH NAME[/noawait]" lines */
static int load_file_interests(struct recipe_dpkg *db, const char *path, struct kiln_error *err)
{
        _cleanup_free_ char *buf = NULL;
        size_t len;

        if (access(path, F_OK) < 0)
                return 0;
        if (kiln_read_file(path, TRIGGERS_MAX, &buf, &len, err) < 0)
                return -1;
        for (char *l = buf, *nl; l && *l; l = nl) {
                char *sp;
                nl = strchr(l, '\n');
                if (nl)
                        *nl++ = '\0';
                sp = strchr(l, ' ');
                if (!sp || l[0] != '/')
                        continue;
                *sp = '\0';
                json_array_append_new(db->file_interests, json_pack("{s:s, s:s, s:b}", "path", l,
                                                                    "pkg", sp + 1, "own", 0));
        }
        return 0;
}

/* triggers/NAME: one "NAME[/noawait]" line per interested package */
static int load_explicit(struct recipe_dpkg *db, const char *dir, const char *name,
                         struct kiln_error *err)
{
        _cleanup_free_ char *path = kiln_strdupf("%s/%s", dir, name);
        _cleanup_free_ char *buf = NULL;
        json_t *list = json_array();
        size_t len;

        if (!path || !list) {
                json_decref(list);
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        if (kiln_read_file(path, TRIGGERS_MAX, &buf, &len, err) < 0) {
                json_decref(list);
                return -1;
        }
        for (char *l = buf, *nl; l && *l; l = nl) {
                nl = strchr(l, '\n');
                if (nl)
                        *nl++ = '\0';
                if (*l)
                        json_array_append_new(list, json_string(l));
        }
        json_object_set_new(db->explicit, name, list);
        return 0;
}

/* The base's triggers directory, next to its status file. */
static int load_triggers(struct recipe_dpkg *db, const char *status_path, struct kiln_error *err)
{
        _cleanup_free_ char *admin = kiln_dirname(status_path);
        _cleanup_free_ char *dir = admin ? kiln_strdupf("%s/triggers", admin) : NULL;
        _cleanup_free_ char *file = dir ? kiln_strdupf("%s/File", dir) : NULL;
        _cleanup_free_ char *unincorp = dir ? kiln_strdupf("%s/Unincorp", dir) : NULL;
        DIR *d;
        struct dirent *e;
        size_t len;
        int rc = 0;

        if (!file || !unincorp)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (load_file_interests(db, file, err) < 0)
                return -1;
        if (access(unincorp, F_OK) == 0 &&
            kiln_read_file(unincorp, TRIGGERS_MAX, &db->unincorp, &len, err) < 0)
                return -1;
        d = opendir(dir);
        while (d && rc == 0 && (e = readdir(d))) {
                /* File, Unincorp, Lock and dpkg's temporary NAME.new are not interests */
                if (e->d_name[0] == '.' || !strcmp(e->d_name, "File") ||
                    !strcmp(e->d_name, "Unincorp") || !strcmp(e->d_name, "Lock") ||
                    str_has_suffix(e->d_name, ".new"))
                        continue;
                rc = load_explicit(db, dir, e->d_name, err);
        }
        if (d)
                closedir(d);
        return rc;
}

/* dpkg's unpack: the package's earlier interests go, its new ones come. */
static void interests_drop(struct recipe_dpkg *db, const char *pkg)
{
        const char *name;
        json_t *list, *v;
        size_t i;

        for (i = json_array_size(db->file_interests); i-- > 0;)
                if (entry_is(json_string_value(
                                 json_object_get(json_array_get(db->file_interests, i), "pkg")),
                             pkg)) {
                        json_array_remove(db->file_interests, i);
                        db->file_changed = true;
                }
        json_object_foreach(db->explicit, name, list)
        {
                for (i = json_array_size(list); i-- > 0;) {
                        v = json_array_get(list, i);
                        if (entry_is(json_string_value(v), pkg)) {
                                json_array_remove(list, i);
                                json_object_set_new(db->explicit_changed, name, json_true());
                        }
                }
        }
}

static int interest_add(struct recipe_dpkg *db, const char *pkg, const char *trig, bool noawait,
                        bool own)
{
        _cleanup_free_ char *entry = kiln_strdupf("%s%s", pkg, noawait ? "/noawait" : "");
        json_t *list;

        if (!entry)
                return -1;
        if (trig[0] == '/') {
                db->file_changed = true;
                return json_array_append_new(
                    db->file_interests,
                    json_pack("{s:s, s:s, s:b}", "path", trig, "pkg", entry, "own", own));
        }
        list = json_object_get(db->explicit, trig);
        if (!list) {
                list = json_array();
                if (!list || json_object_set_new(db->explicit, trig, list) < 0)
                        return -1;
        }
        json_object_set_new(db->explicit_changed, trig, json_true());
        return json_array_append_new(list, json_string(entry));
}

/* A trigger name as deb-triggers(5) allows it: no blanks, no '/' in an
 * explicit one's name (it is a file name), no ".." */
static bool trigger_name_ok(const char *t)
{
        if (!*t || strpbrk(t, " \t") || strstr(t, ".."))
                return false;
        return t[0] == '/' || (!strchr(t, '/') && t[0] != '.');
}

/* The package's triggers control file: interests recorded, activations
 * noted with activate. */
static int triggers_ci(struct recipe_dpkg *db, const struct recipe_deb_member *ci, const char *pkg,
                       bool own, bool activate, struct kiln_error *err)
{
        _cleanup_free_ char *buf = strndup(ci->data, ci->len);

        if (!buf)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        for (char *l = buf, *nl; l && *l; l = nl) {
                char *cmd = l, *trig;
                nl = strchr(l, '\n');
                if (nl)
                        *nl++ = '\0';
                while (*cmd == ' ' || *cmd == '\t')
                        cmd++;
                if (!*cmd || *cmd == '#')
                        continue;
                trig = cmd + strcspn(cmd, " \t");
                if (*trig)
                        *trig++ = '\0';
                trig += strspn(trig, " \t");
                trig[strcspn(trig, " \t\r")] = '\0';
                if (!trigger_name_ok(trig))
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "invalid package '%s': triggers names '%s'", pkg,
                                              trig);
                /* deb-triggers(5): "-await" is what the plain form means */
                if (!strcmp(cmd, "interest") || !strcmp(cmd, "interest-await") ||
                    !strcmp(cmd, "interest-noawait")) {
                        if (interest_add(db, pkg, trig, !strcmp(cmd, "interest-noawait"), own) < 0)
                                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                } else if (!strcmp(cmd, "activate") || !strcmp(cmd, "activate-await") ||
                           !strcmp(cmd, "activate-noawait")) {
                        if (activate)
                                json_object_set_new(db->activated, trig, json_true());
                } else {
                        return kiln_error_set(
                            err, KILN_E_INVALID,
                            "invalid package '%s': unknown triggers directive '%s'", pkg, cmd);
                }
        }
        return 0;
}

/* File triggers the package's files activate: the interests of packages
 * already there whose path is one of the files or a directory above one
 * (dpkg's trig_path_activate). */
static void file_activations(struct recipe_dpkg *db, const char *list)
{
        json_t *fi;
        size_t i;

        json_array_foreach(db->file_interests, i, fi)
        {
                const char *ip = json_string_value(json_object_get(fi, "path"));
                size_t n = strlen(ip);
                if (json_is_true(json_object_get(fi, "own")) || json_object_get(db->activated, ip))
                        continue;
                for (const char *l = list; l && *l;) {
                        const char *nl = strchr(l, '\n');
                        size_t len = nl ? (size_t)(nl - l) : strlen(l);
                        if (len >= n && !strncmp(l, ip, n) && (len == n || l[n] == '/')) {
                                json_object_set_new(db->activated, ip, json_true());
                                break;
                        }
                        l = nl ? nl + 1 : NULL;
                }
        }
}

static int write_triggers(const struct recipe_dpkg *db, const char *root, struct kiln_error *err)
{
        _cleanup_free_ char *dir = kiln_strdupf("%s/var/lib/dpkg/triggers", root);
        const char *name;
        json_t *v;
        size_t i;

        if (!dir)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (!db->file_changed && !json_object_size(db->explicit_changed) &&
            !json_object_size(db->activated))
                return 0;
        if (recipe_mkdir_p(dir, err) < 0)
                return -1;
        if (db->file_changed) {
                _cleanup_free_ char *path = kiln_strdupf("%s/File", dir);
                char *buf = NULL;
                size_t len = 0;
                FILE *f = open_memstream(&buf, &len);
                int rc;
                if (!f || !path) {
                        if (f)
                                fclose(f);
                        free(buf);
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                }
                json_array_foreach(db->file_interests, i, v)
                    fprintf(f, "%s %s\n", json_string_value(json_object_get(v, "path")),
                            json_string_value(json_object_get(v, "pkg")));
                fclose(f);
                rc = kiln_write_file_atomic(path, buf ? buf : "", len, 0644, err);
                free(buf);
                if (rc < 0)
                        return -1;
        }
        json_object_foreach(db->explicit_changed, name, v)
        {
                _cleanup_free_ char *path = kiln_strdupf("%s/%s", dir, name);
                json_t *list = json_object_get(db->explicit, name), *e;
                char *buf = NULL;
                size_t len = 0, k;
                FILE *f = open_memstream(&buf, &len);
                int rc;
                if (!f || !path) {
                        if (f)
                                fclose(f);
                        free(buf);
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                }
                json_array_foreach(list, k, e) fprintf(f, "%s\n", json_string_value(e));
                fclose(f);
                /* empty when its last interested package dropped its interest:
                 * it must still hide the base's list (dpkg reads it as none) */
                rc = kiln_write_file_atomic(path, buf ? buf : "", len, 0644, err);
                free(buf);
                if (rc < 0)
                        return -1;
        }
        if (json_object_size(db->activated)) {
                _cleanup_free_ char *path = kiln_strdupf("%s/Unincorp", dir);
                _cleanup_json_ json_t *sorted = oci_json_sorted_object(db->activated);
                char *buf = NULL;
                size_t len = 0;
                FILE *f = open_memstream(&buf, &len);
                int rc;
                if (!f || !path || !sorted) {
                        if (f)
                                fclose(f);
                        free(buf);
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                }
                if (db->unincorp)
                        fputs(db->unincorp, f);
                /* dpkg-trigger --no-await's form: the trigger and "-" (no awaiter) */
                json_object_foreach(sorted, name, v) fprintf(f, "%s -\n", name);
                fclose(f);
                rc = kiln_write_file_atomic(path, buf ? buf : "", len, 0644, err);
                free(buf);
                if (rc < 0)
                        return -1;
        }
        return 0;
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

        if (!db || !(db->order = json_array()) || !(db->stanzas = json_object()) ||
            !(db->file_interests = json_array()) || !(db->explicit = json_object()) ||
            !(db->explicit_changed = json_object()) || !(db->activated = json_object())) {
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
        if (load_triggers(db, status_path, err) < 0) {
                recipe_dpkg_free(db);
                kiln_error_prefix(err, "the base's dpkg triggers");
                return -1;
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
                    unsigned flags, struct kiln_error *err)
{
        bool configured = flags & RECIPE_DPKG_CONFIGURED;
        bool installed = configured || !member(m, "postinst");
        const struct recipe_deb_member *ci = member(m, "triggers");
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
        /* before its own interests join: a package does not trigger itself here */
        if (!configured)
                file_activations(db, m->list);
        interests_drop(db, name);
        if (ci && triggers_ci(db, ci, name, flags & RECIPE_DPKG_OWN, !configured, err) < 0)
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
        return rc < 0 ? -1 : write_triggers(db, root, err);
}
