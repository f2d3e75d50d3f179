#include "creds.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "io.h"
#include "json.h"
#include "util.h"

#define AUTHFILE_MAX (1024 * 1024)
#define HELPER_OUT_MAX (64 * 1024)
#define HELPER_TIMEOUT_MS 10000

void reg_creds_release(struct reg_creds *c)
{
        if (!c)
                return;
        if (c->password)
                memset(c->password, 0, strlen(c->password));
        free(c->username);
        free(c->password);
        free(c->identity_token);
        memset(c, 0, sizeof(*c));
}

char *reg_authfile_path(const char *authfile)
{
        const char *e;

        if (authfile && *authfile)
                return strdup(authfile);
        e = getenv("REGISTRY_AUTH_FILE");
        if (e && *e)
                return strdup(e);
        e = getenv("DOCKER_CONFIG");
        if (e && *e)
                return kiln_strdupf("%s/config.json", e);
        e = getenv("HOME");
        return kiln_strdupf("%s/.docker/config.json", e && *e ? e : ".");
}

const char *reg_auth_key(const char *host)
{
        if (!strcmp(host, "docker.io"))
                return "https://index.docker.io/v1/";
        return host;
}

/* "https://index.docker.io/v1/" -> "docker.io"; "http://h:5000/x" -> "h:5000" */
static void normalize_key(const char *key, char *out, size_t outlen)
{
        const char *p = key;
        size_t n;

        if (!strncasecmp(p, "https://", 8))
                p += 8;
        else if (!strncasecmp(p, "http://", 7))
                p += 7;
        n = strcspn(p, "/");
        if (n >= outlen)
                n = outlen - 1;
        memcpy(out, p, n);
        out[n] = '\0';
        if (!strcmp(out, "index.docker.io") || !strcmp(out, "registry-1.docker.io"))
                snprintf(out, outlen, "docker.io");
}

bool reg_helper_name_valid(const char *name)
{
        if (!name || !*name || strlen(name) > 64 || name[0] == '.')
                return false;
        for (const char *p = name; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                      (*p >= '0' && *p <= '9') || *p == '_' || *p == '.' || *p == '-'))
                        return false;
        return true;
}

int reg_auth_decode(const char *b64, struct reg_creds *ret, struct kiln_error *err)
{
        size_t len = strlen(b64);
        _cleanup_free_ unsigned char *out = NULL;
        int n;
        char *colon;

        if (len == 0 || len > 8192 || len % 4)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid 'auth' entry in the credentials file: not base64");
        out = malloc(len + 1);
        if (!out)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        n = EVP_DecodeBlock(out, (const unsigned char *)b64, (int)len);
        if (n < 0)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid 'auth' entry in the credentials file: not base64");
        /* EVP_DecodeBlock counts the padding as zero bytes */
        if (len >= 1 && b64[len - 1] == '=')
                n--;
        if (len >= 2 && b64[len - 2] == '=')
                n--;
        out[n] = '\0';
        if (memchr(out, '\0', (size_t)n))
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid 'auth' entry in the credentials file: NUL byte");
        colon = strchr((char *)out, ':');
        if (!colon)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid 'auth' entry in the credentials file: no ':'");
        *colon = '\0';
        ret->username = strdup((char *)out);
        ret->password = strdup(colon + 1);
        memset(out, 0, (size_t)n);
        if (!ret->username || !ret->password) {
                reg_creds_release(ret);
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        return 0;
}

static char *auth_encode(const char *user, const char *pass)
{
        _cleanup_free_ char *plain = kiln_strdupf("%s:%s", user, pass);
        char *out;
        size_t n;

        if (!plain)
                return NULL;
        n = strlen(plain);
        out = malloc(4 * ((n + 2) / 3) + 1);
        if (out)
                EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)plain, (int)n);
        memset(plain, 0, n);
        return out;
}

/* Loads the config file; a missing file is an empty object. */
static json_t *load_config(const char *path, struct kiln_error *err)
{
        _cleanup_free_ char *buf = NULL;
        size_t len;
        json_t *j;

        if (kiln_read_file(path, AUTHFILE_MAX, &buf, &len, err) < 0) {
                if (err && err->code == KILN_E_NOT_FOUND) {
                        kiln_error_clear(err);
                        return json_object();
                }
                return NULL;
        }
        if (len == 0)
                return json_object();
        j = oci_json_parse(buf, len, path, err);
        if (j && !json_is_object(j)) {
                json_decref(j);
                kiln_error_set(err, KILN_E_INVALID, "invalid credentials file '%s': not an object",
                               path);
                return NULL;
        }
        return j;
}

/* Runs `docker-credential-NAME verb`, feeding input, reading at most
 * HELPER_OUT_MAX bytes of output within HELPER_TIMEOUT_MS. */
static int run_helper(const char *name, const char *verb, const char *input, char **ret_out,
                      struct kiln_error *err)
{
        int in[2] = {-1, -1}, out[2] = {-1, -1};
        _cleanup_free_ char *prog = NULL;
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        pid_t pid;
        int status, rc = -1;
        struct timespec start, now;

        if (!reg_helper_name_valid(name))
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid credential helper name '%s': allowed are [A-Za-z0-9_.-]",
                                      name);
        prog = kiln_strdupf("docker-credential-%s", name);
        buf = malloc(HELPER_OUT_MAX + 1);
        if (!prog || !buf)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (pipe(in) < 0 || pipe(out) < 0) {
                kiln_error_set_errno(err, KILN_E_IO, errno, "cannot run credential helper '%s'",
                                     prog);
                goto out;
        }
        pid = fork();
        if (pid < 0) {
                kiln_error_set_errno(err, KILN_E_IO, errno, "cannot run credential helper '%s'",
                                     prog);
                goto out;
        }
        if (pid == 0) {
                int devnull = open("/dev/null", O_WRONLY);
                dup2(in[0], 0);
                dup2(out[1], 1);
                if (devnull >= 0)
                        dup2(devnull, 2);
                close(in[1]);
                close(out[0]);
                execlp(prog, prog, verb, (char *)NULL);
                _exit(127);
        }
        close(in[0]);
        in[0] = -1;
        close(out[1]);
        out[1] = -1;
        {
                /* inputs are small (a host name, a short JSON); a pipe buffer holds them */
                size_t il = strlen(input);
                struct sigaction sa = {0}, old;
                sa.sa_handler = SIG_IGN;
                sigaction(SIGPIPE, &sa, &old);
                if (write(in[1], input, il) != (ssize_t)il) {
                        /* the helper may exit early; its status says what happened */
                }
                sigaction(SIGPIPE, &old, NULL);
                close(in[1]);
                in[1] = -1;
        }
        clock_gettime(CLOCK_MONOTONIC, &start);
        for (;;) {
                struct pollfd pfd = {.fd = out[0], .events = POLLIN};
                long left;
                ssize_t n;
                clock_gettime(CLOCK_MONOTONIC, &now);
                left = HELPER_TIMEOUT_MS - ((now.tv_sec - start.tv_sec) * 1000 +
                                            (now.tv_nsec - start.tv_nsec) / 1000000);
                if (left <= 0 || poll(&pfd, 1, (int)left) == 0) {
                        kill(pid, SIGKILL);
                        waitpid(pid, NULL, 0);
                        kiln_error_set(err, KILN_E_AUTH,
                                       "credential helper '%s' did not answer within %d s", prog,
                                       HELPER_TIMEOUT_MS / 1000);
                        goto out;
                }
                n = read(out[0], buf + len, HELPER_OUT_MAX - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                len += (size_t)n;
                if (len == HELPER_OUT_MAX) {
                        kill(pid, SIGKILL);
                        waitpid(pid, NULL, 0);
                        kiln_error_set(err, KILN_E_LIMIT,
                                       "credential helper '%s' printed more than %d bytes", prog,
                                       HELPER_OUT_MAX);
                        goto out;
                }
        }
        buf[len] = '\0';
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                /* the helper's output may hold a secret: do not show it */
                if (!strcmp(verb, "get") && strstr(buf, "credentials not found")) {
                        *ret_out = NULL;
                        rc = 0;
                        goto out;
                }
                kiln_error_set(err, KILN_E_AUTH, "credential helper '%s %s' failed (exit %d)",
                               prog, verb, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
                goto out;
        }
        *ret_out = steal_ptr(&buf);
        rc = 0;
out:
        for (int i = 0; i < 2; i++) {
                if (in[i] >= 0)
                        close(in[i]);
                if (out[i] >= 0)
                        close(out[i]);
        }
        return rc;
}

static int helper_get(const char *name, const char *host, struct reg_creds *ret, bool *ret_found,
                      struct kiln_error *err)
{
        _cleanup_free_ char *out = NULL;
        _cleanup_free_ char *input = kiln_strdupf("%s\n", host);
        _cleanup_json_ json_t *j = NULL;
        const char *u, *s;

        if (!input)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (run_helper(name, "get", input, &out, err) < 0)
                return -1;
        if (!out) {
                *ret_found = false;
                return 0;
        }
        j = json_loads(out, JSON_REJECT_DUPLICATES, NULL);
        memset(out, 0, strlen(out));
        u = json_string_value(json_object_get(j, "Username"));
        s = json_string_value(json_object_get(j, "Secret"));
        if (!u || !s)
                return kiln_error_set(err, KILN_E_AUTH,
                                      "credential helper 'docker-credential-%s' gave no Username/Secret",
                                      name);
        if (!strcmp(u, "<token>")) {
                ret->identity_token = strdup(s);
        } else {
                ret->username = strdup(u);
                ret->password = strdup(s);
        }
        *ret_found = true;
        return 0;
}

static json_t *find_auth(json_t *auths, const char *host)
{
        const char *key;
        json_t *v;
        char norm[256];

        if (!json_is_object(auths))
                return NULL;
        v = json_object_get(auths, host);
        if (v)
                return v;
        json_object_foreach(auths, key, v) {
                normalize_key(key, norm, sizeof(norm));
                if (!strcmp(norm, host))
                        return v;
        }
        return NULL;
}

int reg_creds_lookup(const char *authfile, const char *host, struct reg_creds *ret,
                     bool *ret_found, struct kiln_error *err)
{
        _cleanup_free_ char *path = reg_authfile_path(authfile);
        _cleanup_json_ json_t *cfg = NULL;
        const char *helper;
        json_t *a;
        struct reg_creds c = {0};

        *ret_found = false;
        if (!path)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        cfg = load_config(path, err);
        if (!cfg)
                return -1;
        helper = json_string_value(json_object_get(json_object_get(cfg, "credHelpers"), host));
        if (!helper)
                helper = json_string_value(json_object_get(cfg, "credsStore"));
        if (helper && *helper) {
                bool found = false;
                if (helper_get(helper, host, &c, &found, err) < 0)
                        return -1;
                if (found) {
                        *ret = c;
                        *ret_found = true;
                        return 0;
                }
        }
        a = find_auth(json_object_get(cfg, "auths"), host);
        if (!a)
                return 0;
        {
                const char *b64 = json_string_value(json_object_get(a, "auth"));
                const char *tok = json_string_value(json_object_get(a, "identitytoken"));
                if (b64 && *b64 && reg_auth_decode(b64, &c, err) < 0) {
                        kiln_error_prefix(err, "'%s'", path);
                        return -1;
                }
                if (tok && *tok) {
                        c.identity_token = strdup(tok);
                        if (!c.identity_token) {
                                reg_creds_release(&c);
                                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        }
                }
                if (!c.username && !c.identity_token)
                        return 0;
        }
        *ret = c;
        *ret_found = true;
        return 0;
}

static int save_config(const char *path, json_t *cfg, struct kiln_error *err)
{
        _cleanup_free_ char *dir = kiln_dirname(path);
        char *s;
        int rc;

        if (!dir)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (kiln_mkdir_p(dir, 0700, err) < 0)
                return -1;
        s = json_dumps(cfg, JSON_INDENT(8) | JSON_PRESERVE_ORDER);
        if (!s)
                return kiln_error_set(err, KILN_E_NOMEM, "cannot serialize '%s'", path);
        rc = kiln_write_file_atomic(path, s, strlen(s), 0600, err);
        memset(s, 0, strlen(s));
        free(s);
        return rc;
}

static const char *helper_for(json_t *cfg, const char *host)
{
        const char *h = json_string_value(json_object_get(json_object_get(cfg, "credHelpers"), host));
        if (!h)
                h = json_string_value(json_object_get(cfg, "credsStore"));
        return h && *h ? h : NULL;
}

int reg_creds_store(const char *authfile, const char *host, const char *username,
                    const char *password, struct kiln_error *err)
{
        _cleanup_free_ char *path = reg_authfile_path(authfile);
        _cleanup_json_ json_t *cfg = NULL;
        const char *helper;
        json_t *auths, *entry;
        char *enc;

        if (!path)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        cfg = load_config(path, err);
        if (!cfg)
                return -1;
        helper = helper_for(cfg, host);
        if (helper) {
                _cleanup_json_ json_t *in = json_pack("{ssssss}", "ServerURL", host, "Username",
                                                      username, "Secret", password);
                char *s = in ? json_dumps(in, JSON_COMPACT) : NULL;
                char *out = NULL;
                int rc;
                if (!s)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                rc = run_helper(helper, "store", s, &out, err);
                memset(s, 0, strlen(s));
                free(s);
                free(out);
                return rc;
        }
        auths = json_object_get(cfg, "auths");
        if (!json_is_object(auths)) {
                auths = json_object();
                if (!auths || json_object_set_new(cfg, "auths", auths) < 0)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        enc = auth_encode(username, password);
        if (!enc)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        entry = json_object_get(auths, reg_auth_key(host));
        if (!json_is_object(entry)) {
                entry = json_object();
                if (!entry || json_object_set_new(auths, reg_auth_key(host), entry) < 0) {
                        free(enc);
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                }
        }
        json_object_set_new(entry, "auth", json_string(enc));
        memset(enc, 0, strlen(enc));
        free(enc);
        return save_config(path, cfg, err);
}

int reg_creds_erase(const char *authfile, const char *host, bool *ret_found,
                    struct kiln_error *err)
{
        _cleanup_free_ char *path = reg_authfile_path(authfile);
        _cleanup_json_ json_t *cfg = NULL;
        const char *helper, *key;
        json_t *auths, *v;
        void *tmp;
        bool found = false;
        char norm[256];

        if (!path)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        cfg = load_config(path, err);
        if (!cfg)
                return -1;
        helper = helper_for(cfg, host);
        if (helper) {
                char *out = NULL;
                _cleanup_free_ char *input = kiln_strdupf("%s\n", host);
                if (!input)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                if (run_helper(helper, "erase", input, &out, err) < 0)
                        return -1;
                free(out);
                found = true;
        }
        auths = json_object_get(cfg, "auths");
        if (json_is_object(auths)) {
                json_object_foreach_safe(auths, tmp, key, v) {
                        normalize_key(key, norm, sizeof(norm));
                        if (!strcmp(norm, host) || !strcmp(key, host)) {
                                json_object_del(auths, key);
                                found = true;
                        }
                }
        }
        *ret_found = found;
        if (!found)
                return 0;
        return save_config(path, cfg, err);
}
