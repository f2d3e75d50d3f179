/* Registry names and the hosts that serve them; containers-registries.conf. */
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hosts.h"
#include "toml.h"
#include "util.h"

#define HUB_API_HOST "registry-1.docker.io"
#define CONF_FILE_MAX (1024 * 1024)
#define CONF_DROPINS_MAX 256

const char *reg_host_api(const char *host)
{
        /* docker.io itself answers /v2/ with a redirect page, not the API;
         * docker and containers/image connect to registry-1.docker.io */
        if (host && (!strcasecmp(host, "docker.io") || !strcasecmp(host, "index.docker.io")))
                return HUB_API_HOST;
        return host;
}

bool reg_host_is_hub(const char *host)
{
        return host && (!strcasecmp(host, "docker.io") || !strcasecmp(host, "index.docker.io") ||
                        !strcasecmp(host, HUB_API_HOST));
}

/* ---- testing knobs ---- */

static pthread_once_t knobs_once = PTHREAD_ONCE_INIT;
static struct curl_slist *knob_connect_to, *knob_resolve;

static struct curl_slist *split_list(const char *v)
{
        struct curl_slist *l = NULL;
        _cleanup_free_ char *s = v ? strdup(v) : NULL;
        char *save = NULL;

        if (!s)
                return NULL;
        for (char *t = strtok_r(s, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
                struct curl_slist *n = curl_slist_append(l, t);
                if (!n)
                        break;
                l = n;
        }
        return l;
}

static void knobs_read(void)
{
        knob_connect_to = split_list(getenv("KILN_TEST_CONNECT_TO"));
        knob_resolve = split_list(getenv("KILN_TEST_RESOLVE"));
}

void reg_hosts_test_setopt(void *curl)
{
        pthread_once(&knobs_once, knobs_read);
        if (!knob_connect_to && !knob_resolve)
                return;
        if (knob_connect_to)
                curl_easy_setopt(curl, CURLOPT_CONNECT_TO, knob_connect_to);
        if (knob_resolve)
                curl_easy_setopt(curl, CURLOPT_RESOLVE, knob_resolve);
        /* the names lead to local test servers: no proxy in between */
        curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
}

/* Docker Hub's RateLimit headers (docs.docker.com, "Docker Hub pull usage
 * and limits"): "COUNT;w=SECONDS", as in the IETF RateLimit header draft. */
int reg_ratelimit_parse(const char *value, long *ret_count, long *ret_window_s)
{
        const char *p = value;
        long n = 0, w = 0;

        if (!p || *p < '0' || *p > '9')
                return -1;
        for (; *p >= '0' && *p <= '9'; p++) {
                if (n > 100000000L)
                        return -1;
                n = n * 10 + (*p - '0');
        }
        while (*p == ' ')
                p++;
        if (*p == ';') {
                p++;
                while (*p == ' ')
                        p++;
                if (p[0] != 'w' || p[1] != '=' || p[2] < '0' || p[2] > '9')
                        return -1;
                for (p += 2; *p >= '0' && *p <= '9'; p++) {
                        if (w > 100000000L)
                                return -1;
                        w = w * 10 + (*p - '0');
                }
                while (*p == ' ')
                        p++;
        }
        if (*p)
                return -1;
        *ret_count = n;
        *ret_window_s = w;
        return 0;
}

/* ---- containers-registries.conf(5) ---- */

static void conf_registry_release(struct reg_conf_registry *r)
{
        free(r->prefix);
        free(r->location);
        free(r->host);
        for (size_t i = 0; i < r->n_mirrors; i++) {
                free(r->mirrors[i].location);
                free(r->mirrors[i].host);
        }
        free(r->mirrors);
        free(r->file);
        memset(r, 0, sizeof(*r));
}

void reg_conf_release(struct reg_conf *conf)
{
        if (!conf)
                return;
        for (size_t i = 0; i < conf->n; i++)
                conf_registry_release(&conf->regs[i]);
        free(conf->regs);
        conf->regs = NULL;
        conf->n = 0;
}

static int conf_bool(json_t *t, const char *key, bool *ret, const char *file, size_t idx,
                     struct kiln_error *err)
{
        json_t *v = json_object_get(t, key);

        if (!v)
                return 0;
        if (!json_is_boolean(v))
                return kiln_error_set(err, KILN_E_INVALID,
                                      "%s: [[registry]] %zu: '%s' must be true or false", file,
                                      idx + 1, key);
        *ret = json_is_true(v);
        return 0;
}

static int conf_string(json_t *t, const char *key, char **ret, const char *file, size_t idx,
                       struct kiln_error *err)
{
        json_t *v = json_object_get(t, key);

        if (!v)
                return 0;
        if (!json_is_string(v) || strchr(json_string_value(v), ' '))
                return kiln_error_set(err, KILN_E_INVALID,
                                      "%s: [[registry]] %zu: '%s' must be a registry name", file,
                                      idx + 1, key);
        if (!*json_string_value(v))
                return 0; /* "" is unset, as containers/image reads it */
        *ret = strdup(json_string_value(v));
        return *ret ? 0 : kiln_error_set(err, KILN_E_NOMEM, "out of memory");
}

static int conf_mirrors(json_t *t, struct reg_conf_registry *r, const char *file, size_t idx,
                        struct kiln_error *err)
{
        json_t *ms = json_object_get(t, "mirror"), *m;
        size_t i;

        if (!ms)
                return 0;
        if (!json_is_array(ms))
                return kiln_error_set(err, KILN_E_INVALID,
                                      "%s: [[registry]] %zu: 'mirror' must be [[registry.mirror]] tables",
                                      file, idx + 1);
        r->mirrors = calloc(json_array_size(ms) + 1, sizeof(*r->mirrors));
        if (!r->mirrors)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        json_array_foreach(ms, i, m) {
                /* counted at once: a failure below leaves it to conf_registry_release */
                struct reg_conf_mirror *x = &r->mirrors[r->n_mirrors++];
                if (!json_is_object(m))
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "%s: [[registry]] %zu: 'mirror' must be [[registry.mirror]] tables",
                                              file, idx + 1);
                if (conf_string(m, "location", &x->location, file, idx, err) < 0 ||
                    conf_bool(m, "insecure", &x->insecure, file, idx, err) < 0)
                        return -1;
                if (!x->location)
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "%s: [[registry]] %zu: a mirror without a location",
                                              file, idx + 1);
                x->host = strndup(x->location, strcspn(x->location, "/"));
                if (!x->host)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        return 0;
}

static int conf_add(struct reg_conf *conf, struct reg_conf_registry *r, struct kiln_error *err)
{
        struct reg_conf_registry *n;

        for (size_t i = 0; i < conf->n; i++)
                if (!strcmp(conf->regs[i].prefix, r->prefix)) {
                        conf_registry_release(&conf->regs[i]);
                        conf->regs[i] = *r;
                        return 0;
                }
        n = realloc(conf->regs, (conf->n + 1) * sizeof(*n));
        if (!n)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        conf->regs = n;
        conf->regs[conf->n++] = *r;
        return 0;
}

static int conf_registry(struct reg_conf *conf, json_t *t, const char *file, size_t idx,
                         struct kiln_error *err)
{
        struct reg_conf_registry r = {0};

        if (!json_is_object(t)) {
                kiln_error_set(err, KILN_E_INVALID, "%s: 'registry' must be [[registry]] tables",
                               file);
                goto fail;
        }
        if (conf_string(t, "prefix", &r.prefix, file, idx, err) < 0 ||
            conf_string(t, "location", &r.location, file, idx, err) < 0 ||
            conf_bool(t, "insecure", &r.insecure, file, idx, err) < 0 ||
            conf_bool(t, "blocked", &r.blocked, file, idx, err) < 0 ||
            conf_mirrors(t, &r, file, idx, err) < 0)
                goto fail;
        if (!r.prefix && !r.location) {
                kiln_error_set(err, KILN_E_INVALID,
                               "%s: [[registry]] %zu: neither a prefix nor a location", file,
                               idx + 1);
                goto fail;
        }
        if (r.prefix && !strncmp(r.prefix, "*.", 2) && r.location) {
                kiln_error_set(err, KILN_E_INVALID,
                               "%s: [[registry]] %zu: a wildcard prefix '%s' cannot have a location",
                               file, idx + 1, r.prefix);
                goto fail;
        }
        if (!r.prefix && !(r.prefix = strdup(r.location)))
                goto nomem;
        r.host = strndup(r.location ? r.location : r.prefix,
                         strcspn(r.location ? r.location : r.prefix, "/"));
        if (!r.host)
                goto nomem;
        if (!(r.file = strdup(file)))
                goto nomem;
        if (conf_add(conf, &r, err) < 0)
                goto fail;
        return 0;
nomem:
        kiln_error_set(err, KILN_E_NOMEM, "out of memory");
fail:
        conf_registry_release(&r);
        return -1;
}

int reg_conf_parse(struct reg_conf *conf, const char *text, size_t len, const char *file,
                   struct kiln_error *err)
{
        json_t *doc = oci_toml_parse(text, len, file, err), *regs, *t;
        size_t i;
        int rc = -1;

        if (!doc)
                return -1;
        if (json_object_get(doc, "unqualified-search-registries"))
                conf->search_ignored = true;
        regs = json_object_get(doc, "registry");
        if (regs && !json_is_array(regs)) {
                kiln_error_set(err, KILN_E_INVALID, "%s: 'registry' must be [[registry]] tables",
                               file);
                goto out;
        }
        json_array_foreach(regs, i, t) {
                if (conf_registry(conf, t, file, i, err) < 0)
                        goto out;
        }
        rc = 0;
out:
        json_decref(doc);
        return rc;
}

/* Reads path into conf; a missing file is skipped. */
static int conf_file(struct reg_conf *conf, const char *path, struct kiln_error *err)
{
        _cleanup_free_ char *buf = NULL;
        struct stat st;
        ssize_t got;
        size_t n = 0;
        int fd = open(path, O_RDONLY | O_CLOEXEC);

        if (fd < 0)
                return errno == ENOENT || errno == ENOTDIR
                               ? 0
                               : kiln_error_set_errno(err, KILN_E_IO, errno, "cannot read '%s'", path);
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > CONF_FILE_MAX) {
                close(fd);
                return kiln_error_set(err, KILN_E_INVALID,
                                      "cannot read '%s': not a regular file of at most %d bytes",
                                      path, CONF_FILE_MAX);
        }
        buf = malloc((size_t)st.st_size + 1);
        if (!buf) {
                close(fd);
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        while (n < (size_t)st.st_size &&
               (got = read(fd, buf + n, (size_t)st.st_size - n)) != 0) {
                if (got < 0 && errno == EINTR)
                        continue;
                if (got < 0) {
                        close(fd);
                        return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot read '%s'", path);
                }
                n += (size_t)got;
        }
        close(fd);
        buf[n] = '\0';
        return reg_conf_parse(conf, buf, n, path, err);
}

static int name_cmp(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The *.conf files of dir, in name order (containers/image reads drop-ins so). */
static int conf_dir(struct reg_conf *conf, const char *dir, struct kiln_error *err)
{
        char *names[CONF_DROPINS_MAX];
        size_t n = 0;
        struct dirent *e;
        DIR *d = opendir(dir);
        int rc = 0;

        if (!d)
                return 0;
        while ((e = readdir(d)) && n < CONF_DROPINS_MAX) {
                size_t l = strlen(e->d_name);
                if (e->d_name[0] == '.' || l < 6 || strcmp(e->d_name + l - 5, ".conf"))
                        continue;
                if (!(names[n] = kiln_strdupf("%s/%s", dir, e->d_name)))
                        break;
                n++;
        }
        closedir(d);
        qsort(names, n, sizeof(names[0]), name_cmp);
        for (size_t i = 0; i < n; i++) {
                if (rc == 0)
                        rc = conf_file(conf, names[i], err);
                free(names[i]);
        }
        return rc;
}

int reg_conf_load(struct reg_conf *conf, struct kiln_error *err)
{
        const char *env = getenv("CONTAINERS_REGISTRIES_CONF");
        const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
        _cleanup_free_ char *user_dir = NULL, *user_file = NULL, *user_d = NULL;
        struct stat st;

        if (env && *env)
                return conf_file(conf, env, err);
        if (xdg && *xdg)
                user_dir = kiln_strdupf("%s/containers", xdg);
        else if (home && *home)
                user_dir = kiln_strdupf("%s/.config/containers", home);
        if (user_dir) {
                user_file = kiln_strdupf("%s/registries.conf", user_dir);
                user_d = kiln_strdupf("%s/registries.conf.d", user_dir);
                if (!user_file || !user_d)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        /* the user's file replaces the system's; drop-ins of both are added */
        if (user_file && stat(user_file, &st) == 0) {
                if (conf_file(conf, user_file, err) < 0)
                        return -1;
        } else if (conf_file(conf, "/etc/containers/registries.conf", err) < 0) {
                return -1;
        }
        if (conf_dir(conf, "/etc/containers/registries.conf.d", err) < 0)
                return -1;
        return user_d ? conf_dir(conf, user_d, err) : 0;
}

/* containers/image sysregistriesv2 refMatchingPrefix: the length matched,
 * or -1. */
static long prefix_match(const char *name, const char *prefix)
{
        size_t pl = strlen(prefix), nl = strlen(name);

        if (!strncmp(prefix, "*.", 2)) {
                /* a host under the domain: "*.example.com" matches a.example.com/x */
                const char *host_end = name + strcspn(name, "/");
                const char *at = strstr(name, prefix + 1);
                const char *after;
                if (!at || at >= host_end)
                        return -1;
                after = at + pl - 1;
                if (*after && *after != ':' && *after != '/' && *after != '@')
                        return -1;
                return (long)(after - name);
        }
        if (nl < pl || strncmp(name, prefix, pl))
                return -1;
        if (nl == pl || name[pl] == ':' || name[pl] == '/' || name[pl] == '@')
                return (long)pl;
        return -1;
}

const struct reg_conf_registry *reg_conf_match(const struct reg_conf *conf, const char *name)
{
        const struct reg_conf_registry *best = NULL;
        long best_len = -1;

        for (size_t i = 0; conf && i < conf->n; i++) {
                long l = prefix_match(name, conf->regs[i].prefix);
                if (l > best_len) {
                        best_len = l;
                        best = &conf->regs[i];
                }
        }
        return best;
}

char *reg_conf_rewrite(const struct reg_conf_registry *r, const char *loc, const char *name)
{
        long l = prefix_match(name, r->prefix);

        if (!loc)
                loc = r->location;
        if (l < 0 || !loc || !strncmp(r->prefix, "*.", 2))
                return strdup(name);
        return kiln_strdupf("%s%s", loc, name + l);
}
