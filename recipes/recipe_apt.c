/* apt sources read the way apt reads them (docs/security.md, "apt
 * sources"): dists/SUITE/InRelease (or Release + Release.gpg) verified
 * with Debian's gpgv against a keyring, the Packages files checked against
 * the Release's SHA256 and size; the .deb files are then checked against
 * the Packages' SHA256 (recipe_deb.c).  The transport is not trusted, so
 * plain http needs no flag.
 *
 * A source whose mirror is a local directory and which names no keyring
 * is the recipe's own files, read as given (like a 'local' source). */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "io.h"
#include "recipe_internal.h"
#include "stage.h"
#include "util.h"

/* apt's Acquire::Max-FutureTime: a Release dated later than this is not
 * valid yet */
#define MAX_FUTURE_S 10
#define KEYRING_MAX (4u * 1024 * 1024)

static bool is_url(const char *s)
{
        return strstr(s, "://") && !str_has_prefix(s, "file://");
}

/* ---- dates: RFC 2822 as Release files write them ---- */

/* days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
 * days_from_civil) */
static long long days_from_civil(long long y, unsigned m, unsigned d)
{
        y -= m <= 2;
        long long era = (y >= 0 ? y : y - 399) / 400;
        unsigned yoe = (unsigned)(y - era * 400);
        unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
        unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097 + (long long)doe - 719468;
}

/* "Sat, 04 Dec 2026 17:00:00 UTC" (UTC, GMT, Z or +HHMM) -> seconds */
int recipe_apt_date_parse(const char *s, long long *ret)
{
        static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
        char mon[4] = "", zone[8] = "";
        unsigned d, y, hh, mm, ss;
        const char *m;
        long long off = 0;

        if (strchr(s, ','))
                s = strchr(s, ',') + 1;
        if (sscanf(s, " %u %3s %u %u:%u:%u %7s", &d, mon, &y, &hh, &mm, &ss, zone) != 7)
                return -1;
        m = strlen(mon) == 3 ? strstr(months, mon) : NULL;
        if (!m || (m - months) % 3 || d < 1 || d > 31 || hh > 23 || mm > 59 || ss > 60)
                return -1;
        if ((zone[0] == '+' || zone[0] == '-') && strlen(zone) == 5 &&
            strspn(zone + 1, "0123456789") == 4) {
                off = ((zone[1] - '0') * 10 + (zone[2] - '0')) * 3600 +
                      ((zone[3] - '0') * 10 + (zone[4] - '0')) * 60;
                if (zone[0] == '-')
                        off = -off;
        } else if (strcmp(zone, "UTC") && strcmp(zone, "GMT") && strcmp(zone, "Z")) {
                return -1;
        }
        *ret = days_from_civil(y, (unsigned)((m - months) / 3 + 1), d) * 86400 + hh * 3600 +
               mm * 60 + ss - off;
        return 0;
}

/* apt's checks of the Release's Date and Valid-Until against the clock */
static int check_dates(const char *release, const char *what, time_t now, struct kiln_error *err)
{
        _cleanup_free_ char *date = recipe_control_field(release, "Date");
        _cleanup_free_ char *until = recipe_control_field(release, "Valid-Until");
        long long t;

        if (!date || recipe_apt_date_parse(date, &t) < 0)
                return kiln_error_set(err, KILN_E_INVALID, "%s: the Release has %s Date", what,
                                      date ? "an unreadable" : "no");
        if (t > (long long)now + MAX_FUTURE_S)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "%s: the Release is not valid yet (Date: %s)", what, date);
        if (!until)
                return 0;
        if (recipe_apt_date_parse(until, &t) < 0)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "%s: the Release has an unreadable Valid-Until '%s'", what,
                                      until);
        if (t < (long long)now)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "%s: the Release is expired (Valid-Until: %s)", what, until);
        return 0;
}

/* ---- keyrings ---- */

/* ASCII armor (RFC 4880 section 6) -> the binary packets, for gpgv,
 * which reads binary keyrings only.  Every armored block is decoded. */
static int dearmor(const char *buf, const char *what, const char *dest, struct kiln_error *err)
{
        _cleanup_free_ char *b64 = malloc(strlen(buf) + 1);
        _cleanup_free_ unsigned char *bin = NULL;
        size_t n = 0, out = 0;
        const char *p = buf;

        if (!b64)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        bin = malloc(strlen(buf) + 4);
        if (!bin)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        while ((p = strstr(p, "-----BEGIN PGP PUBLIC KEY BLOCK-----"))) {
                const char *body = strstr(p, "\n\n"), *crlf = strstr(p, "\r\n\r\n"), *end;
                int k;
                if (crlf && (!body || crlf < body))
                        body = crlf + 2;
                end = body ? strstr(body, "-----END PGP PUBLIC KEY BLOCK-----") : NULL;
                if (!end)
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "invalid keyring '%s': an armored block has no end",
                                              what);
                n = 0;
                for (const char *l = body + 1; l < end;) {
                        const char *nl = memchr(l, '\n', (size_t)(end - l));
                        size_t len = nl ? (size_t)(nl - l) : (size_t)(end - l);
                        if (*l == '=')
                                break; /* the CRC-24 line */
                        for (size_t i = 0; i < len; i++)
                                if (!isspace((unsigned char)l[i]))
                                        b64[n++] = l[i];
                        l += len + 1;
                }
                if (n % 4)
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "invalid keyring '%s': bad base64 in armor", what);
                k = EVP_DecodeBlock(bin + out, (const unsigned char *)b64, (int)n);
                if (k < 0)
                        return kiln_error_set(err, KILN_E_INVALID,
                                              "invalid keyring '%s': bad base64 in armor", what);
                /* EVP_DecodeBlock counts the '=' padding as zero bytes */
                k -= (n && b64[n - 1] == '=') + (n > 1 && b64[n - 2] == '=');
                out += (size_t)k;
                p = end + 1;
        }
        if (!out)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "invalid keyring '%s': no public key block", what);
        return kiln_write_file_atomic(dest, bin, out, 0600, err);
}

struct keys {
        char **paths; /* absolute, binary keyrings for gpgv */
        size_t n;
        const char *scratch;
};

static void keys_release(struct keys *k)
{
        for (size_t i = 0; i < k->n; i++)
                free(k->paths[i]);
        free(k->paths);
}

static int keys_add(struct keys *k, const char *path, struct kiln_error *err)
{
        _cleanup_free_ char *buf = NULL;
        char *abs = NULL, **np;
        size_t len;
        const char *s;

        if (kiln_read_file(path, KEYRING_MAX, &buf, &len, err) < 0) {
                kiln_error_prefix(err, "keyring");
                return -1;
        }
        for (s = buf; s < buf + len && isspace((unsigned char)*s); s++)
                ;
        if (str_has_prefix(s, "-----BEGIN PGP")) {
                abs = kiln_strdupf("%s/k%zu.gpg", k->scratch, k->n);
                if (!abs)
                        return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                if (dearmor(buf, path, abs, err) < 0) {
                        free(abs);
                        return -1;
                }
        } else {
                abs = realpath(path, NULL);
                if (!abs)
                        return kiln_error_set_errno(err, KILN_E_IO, errno, "cannot resolve '%s'",
                                                    path);
        }
        np = realloc(k->paths, (k->n + 1) * sizeof(*np));
        if (!np) {
                free(abs);
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        k->paths = np;
        k->paths[k->n++] = abs;
        return 0;
}

static bool keyring_name(const char *name)
{
        /* debian-archive-removed-keys.gpg and the like hold keys that are
         * no longer trusted */
        return (str_has_suffix(name, ".gpg") || str_has_suffix(name, ".asc")) &&
               !strstr(name, "removed");
}

static int keys_add_dir(struct keys *k, const char *dir, struct kiln_error *err)
{
        struct dirent **ents = NULL;
        int n = scandir(dir, &ents, NULL, alphasort), rc = 0;

        for (int i = 0; i < n; i++) {
                if (rc == 0 && keyring_name(ents[i]->d_name)) {
                        _cleanup_free_ char *f = kiln_strdupf("%s/%s", dir, ents[i]->d_name);
                        struct stat st;
                        if (!f)
                                rc = kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        else if (stat(f, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0)
                                rc = keys_add(k, f, err);
                }
                free(ents[i]);
        }
        free(ents);
        return rc;
}

/* Signed-By of the base's deb822 sources: keyring paths in the image */
static int keys_add_signed_by(struct keys *k, const char *root, struct kiln_error *err)
{
        _cleanup_free_ char *dir = kiln_strdupf("%s/etc/apt/sources.list.d", root);
        struct dirent **ents = NULL;
        int n = dir ? scandir(dir, &ents, NULL, alphasort) : -1, rc = 0;

        for (int i = 0; i < n; i++) {
                _cleanup_free_ char *f = NULL, *buf = NULL;
                size_t len;
                if (rc == 0 && str_has_suffix(ents[i]->d_name, ".sources") &&
                    (f = kiln_strdupf("%s/%s", dir, ents[i]->d_name)) &&
                    kiln_read_file(f, KEYRING_MAX, &buf, &len, NULL) == 0) {
                        for (const char *p = buf; (p = strstr(p, "Signed-By:")); p++) {
                                _cleanup_free_ char *v = recipe_control_field(p, "Signed-By");
                                _cleanup_free_ char *in = NULL;
                                struct stat st;
                                if (!v || v[0] != '/' || strstr(v, ".."))
                                        continue; /* inline keys are not read */
                                in = kiln_strdupf("%s%s", root, v);
                                if (in && stat(in, &st) == 0 && S_ISREG(st.st_mode))
                                        rc = keys_add(k, in, err);
                                if (rc)
                                        break;
                        }
                }
                free(ents[i]);
        }
        free(ents);
        return rc;
}

/* The recipe's keyring, or every keyring the base trusts. */
static int keys_collect(const struct recipe_plan *p, const struct recipe_stage_opts *o,
                        const char *keyring, const char *what, struct keys *k,
                        struct kiln_error *err)
{
        static const char *const dirs[] = {"etc/apt/trusted.gpg.d", "usr/share/keyrings",
                                           "etc/apt/keyrings"};

        if (keyring) {
                _cleanup_free_ char *path = recipe_resolve_input(p, keyring, err);
                return path ? keys_add(k, path, err) : -1;
        }
        if (o->base_root) {
                _cleanup_free_ char *legacy = kiln_strdupf("%s/etc/apt/trusted.gpg", o->base_root);
                struct stat st;
                for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
                        _cleanup_free_ char *d = kiln_strdupf("%s/%s", o->base_root, dirs[i]);
                        if (!d || keys_add_dir(k, d, err) < 0)
                                return d ? -1 : kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                }
                if (legacy && stat(legacy, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 &&
                    keys_add(k, legacy, err) < 0)
                        return -1;
                if (keys_add_signed_by(k, o->base_root, err) < 0)
                        return -1;
        }
        if (k->n == 0)
                return kiln_error_set(err, KILN_E_INVALID,
                                      "%s: no keyring to check the Release against: name one with "
                                      "'keyring' (the base image trusts none)",
                                      what);
        return 0;
}

static int copy_file(const char *src, const char *dst, struct kiln_error *err);

/* ---- gpgv ---- */

/* The verdict on gpgv's --status-fd lines (gnupg doc/DETAILS), as apt's
 * gpgv method reaches it: good when some key signed it and no signature
 * is bad; a missing key alone is not bad when another key is good. */
int recipe_apt_gpgv_verdict(const char *status, int exit_status, const char *what,
                            struct kiln_error *err)
{
        char nopub[64] = "", expired[64] = "", revoked[64] = "", bad[64] = "";
        bool good = false, valid = false;

        for (const char *l = status; l && *l;) {
                const char *nl = strchr(l, '\n');
                char kw[32] = "", arg[64] = "";
                if (sscanf(l, "[GNUPG:] %31s %63s", kw, arg) >= 1) {
                        if (!strcmp(kw, "GOODSIG"))
                                good = true;
                        else if (!strcmp(kw, "VALIDSIG"))
                                valid = true;
                        else if (!strcmp(kw, "NO_PUBKEY"))
                                snprintf(nopub, sizeof(nopub), "%s", arg);
                        else if (!strcmp(kw, "EXPKEYSIG"))
                                snprintf(expired, sizeof(expired), "%s", arg);
                        else if (!strcmp(kw, "REVKEYSIG"))
                                snprintf(revoked, sizeof(revoked), "%s", arg);
                        else if (!strcmp(kw, "BADSIG") || !strcmp(kw, "ERRSIG"))
                                snprintf(bad, sizeof(bad), "%s", arg);
                }
                l = nl ? nl + 1 : NULL;
        }
        /* ERRSIG comes with NO_PUBKEY when the key is only missing */
        if (*bad && !strcmp(bad, nopub))
                bad[0] = '\0';
        if (*bad)
                return kiln_error_set(err, KILN_E_DIGEST, "%s: bad signature by key %s", what, bad);
        if (good && valid && !*expired && !*revoked)
                return 0;
        if (*revoked)
                return kiln_error_set(err, KILN_E_DIGEST, "%s: signed by the revoked key %s", what,
                                      revoked);
        if (*expired)
                return kiln_error_set(err, KILN_E_DIGEST, "%s: signed by the expired key %s", what,
                                      expired);
        if (*nopub)
                return kiln_error_set(err, KILN_E_DIGEST,
                                      "%s: signed by key %s, which the keyring does not hold", what,
                                      nopub);
        return kiln_error_set(err, KILN_E_DIGEST, "%s: no valid signature (gpgv status %d)", what,
                              exit_status);
}

/* Verifies signed (InRelease, or Release.gpg for the detached data) and
 * leaves the signed text in out. */
static int gpgv_verify(const struct keys *k, const char *signed_file, const char *data,
                       const char *out, const char *what, struct kiln_error *err)
{
        size_t n = 0;
        const char **argv = calloc(2 * k->n + 10, sizeof(char *));
        _cleanup_free_ char *status = NULL;
        int st = 0;

        if (!argv)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        argv[n++] = "gpgv";
        /* an empty home: no default trustedkeys.kbx of the user's */
        argv[n++] = "--homedir";
        argv[n++] = k->scratch;
        argv[n++] = "--status-fd";
        argv[n++] = "1";
        for (size_t i = 0; i < k->n; i++) {
                argv[n++] = "--keyring";
                argv[n++] = k->paths[i];
        }
        if (!data) {
                argv[n++] = "--output";
                argv[n++] = out;
        }
        argv[n++] = signed_file;
        if (data)
                argv[n++] = data;
        if (recipe_run_output(argv, NULL, &status, &st, err) < 0) {
                free(argv);
                kiln_error_prefix(err, "%s", what);
                return -1;
        }
        free(argv);
        if (recipe_apt_gpgv_verdict(status, st, what, err) < 0)
                return -1;
        if (data)
                return copy_file(data, out, err);
        return 0;
}

/* ---- the Release and its indexes ---- */

/* dst (new) gets src's bytes: a hard link where it can */
static int copy_file(const char *src, const char *dst, struct kiln_error *err)
{
        _cleanup_free_ char *buf = NULL;
        size_t len;

        if (link(src, dst) == 0)
                return 0;
        if (kiln_read_file(src, RECIPE_APT_INDEX_MAX, &buf, &len, err) < 0)
                return -1;
        return kiln_write_file_atomic(dst, buf, len, 0644, err);
}

/* The SHA256 line for name: " HEX SIZE NAME" */
static bool release_entry(const char *release, const char *name, char hex[65], long long *ret_size)
{
        const char *p = strstr(release, "\nSHA256:");

        if (!p)
                return false;
        p = strchr(p + 1, '\n');
        while (p && p[1] == ' ') {
                char h[65] = "", nm[512] = "";
                long long size;
                p++;
                if (sscanf(p, " %64s %lld %511s", h, &size, nm) == 3 && !strcmp(nm, name) &&
                    strlen(h) == 64) {
                        for (int i = 0; i < 64; i++)
                                hex[i] = (char)tolower((unsigned char)h[i]);
                        hex[64] = '\0';
                        *ret_size = size;
                        return true;
                }
                p = strchr(p, '\n');
        }
        return false;
}

static char *cache_path(const struct recipe_stage_opts *o, const char *hex, const char *suffix)
{
        return o->cache_dir ? kiln_strdupf("%s/apt/by-hash/%s%s", o->cache_dir, hex, suffix) : NULL;
}

/* Keeps a verified file under CACHE/apt/by-hash/HEX (a copy). */
static void cache_keep(const struct recipe_stage_opts *o, const char *file, const char *hex,
                       const char *suffix)
{
        _cleanup_free_ char *dest = cache_path(o, hex, suffix);
        _cleanup_free_ char *dir = dest ? kiln_dirname(dest) : NULL;

        if (dest && dir && access(dest, F_OK) != 0 && kiln_mkdir_p(dir, 0755, NULL) == 0)
                copy_file(file, dest, NULL);
}

struct src {
        const struct recipe_plan *p;
        const struct recipe_stage_opts *o;
        const char *mdir;  /* the mirror: URL or local directory */
        const char *suite; /* dists/SUITE */
        char what[300];    /* "apt source 'MIRROR' suite 'SUITE'" */
};

/* MIRROR/dists/SUITE/name: fetched (not kept: the Release says whether it
 * is current) or the local file. */
static char *dist_file(const struct src *s, const char *name, int64_t max, struct kiln_error *err)
{
        _cleanup_free_ char *u = kiln_strdupf("%s/dists/%s/%s", s->mdir, s->suite, name);

        if (!u) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        if (!is_url(s->mdir)) {
                if (access(u, F_OK) != 0) {
                        kiln_error_set_errno(err, KILN_E_NOT_FOUND, errno, "cannot read '%s'", u);
                        return NULL;
                }
                return steal_ptr(&u);
        }
        return recipe_input_file_as(s->p, s->o, u, false, max, true, err);
}

/* The Releases this process fetched (mirror and suite -> digest): the
 * layer key and the staging of a layer read the same one, fetched once. */
static pthread_mutex_t seen_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
        char *what;
        char hex[65];
} seen[64];

static bool seen_get(const char *what, char hex[65])
{
        bool hit = false;

        pthread_mutex_lock(&seen_lock);
        for (size_t i = 0; i < ARRAY_SIZE(seen) && seen[i].what && !hit; i++)
                if (!strcmp(seen[i].what, what)) {
                        memcpy(hex, seen[i].hex, 65);
                        hit = true;
                }
        pthread_mutex_unlock(&seen_lock);
        return hit;
}

static void seen_put(const char *what, const char hex[65])
{
        pthread_mutex_lock(&seen_lock);
        for (size_t i = 0; i < ARRAY_SIZE(seen); i++) {
                if (seen[i].what && strcmp(seen[i].what, what))
                        continue;
                if (!seen[i].what)
                        seen[i].what = strdup(what);
                if (seen[i].what)
                        memcpy(seen[i].hex, hex, 65);
                break;
        }
        pthread_mutex_unlock(&seen_lock);
}

/* The verified Release text, and the digest of the signed file it came
 * from.  A Release pinned by the lock is read from the cache when there
 * (its dates were checked when it was locked); one this process already
 * fetched is read from the cache too, and checked again. */
static int release_get(const struct src *s, const struct keys *k, const char *pin, char **ret_text,
                       char ret_hex[65], struct kiln_error *err)
{
        char seen_hex[65];
        _cleanup_free_ char *seen_pin = NULL;
        bool recheck = false;

        if (!pin && seen_get(s->what, seen_hex) &&
            (seen_pin = kiln_strdupf("sha256:%s", seen_hex))) {
                pin = seen_pin;
                recheck = true;
        }
        _cleanup_free_ char *in = NULL, *rel = NULL, *sig = NULL, *pinned = NULL;
        _cleanup_free_ char *out = kiln_strdupf("%s/Release", k->scratch);
        char hex[65];
        size_t len;
        bool from_cache = false;

        if (!out)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        if (pin && str_has_prefix(pin, "sha256:") && (pinned = cache_path(s->o, pin + 7, "")) &&
            access(pinned, F_OK) == 0) {
                _cleanup_free_ char *psig = cache_path(s->o, pin + 7, ".gpg");
                from_cache = true;
                if (psig && access(psig, F_OK) == 0) {
                        rel = steal_ptr(&pinned);
                        sig = steal_ptr(&psig);
                } else {
                        in = steal_ptr(&pinned);
                }
        } else {
                struct kiln_error e2 = {0};
                in = dist_file(s, "InRelease", RECIPE_APT_RELEASE_MAX, &e2);
                if (!in && e2.code != KILN_E_NOT_FOUND) {
                        *err = e2;
                        return -1;
                }
                if (!in) {
                        /* the older pair: Release and its detached signature */
                        rel = dist_file(s, "Release", RECIPE_APT_RELEASE_MAX, err);
                        if (!rel) {
                                kiln_error_prefix(err, "%s: no InRelease", s->what);
                                return -1;
                        }
                        sig = dist_file(s, "Release.gpg", RECIPE_APT_RELEASE_MAX, err);
                        if (!sig) {
                                kiln_error_set(
                                    err, KILN_E_DIGEST,
                                    "%s: the Release is not signed (no InRelease or Release.gpg)",
                                    s->what);
                                return -1;
                        }
                }
        }
        if (recipe_sha256_file(in ? in : rel, hex, err) < 0)
                return -1;
        if (pin && !from_cache && strcmp(pin + 7, hex) && s->o->locked)
                return kiln_error_set(
                    err, KILN_E_INVALID,
                    "%s: the Release is sha256:%s but the lock pins %s: run kiln lock", s->what,
                    hex, pin);
        if (gpgv_verify(k, in ? in : sig, in ? NULL : rel, out, s->what, err) < 0 ||
            kiln_read_file(out, RECIPE_APT_RELEASE_MAX, ret_text, &len, err) < 0)
                return -1;
        /* a pinned Release was checked for freshness when it was locked */
        if ((!from_cache || recheck) && check_dates(*ret_text, s->what, time(NULL), err) < 0) {
                free(*ret_text);
                *ret_text = NULL;
                return -1;
        }
        if (!from_cache) {
                cache_keep(s->o, in ? in : rel, hex, "");
                if (sig)
                        cache_keep(s->o, sig, hex, ".gpg");
                seen_put(s->what, hex);
        }
        memcpy(ret_hex, hex, 65);
        return 0;
}

/* One index the Release lists: from the cache by its digest, or fetched
 * and checked against the Release's size and SHA256. */
static char *index_get(const struct src *s, const char *release, const char *name,
                       struct kiln_error *err)
{
        _cleanup_free_ char *cached = NULL, *file = NULL;
        char hex[65], got[65];
        long long size;
        struct stat st;

        if (!release_entry(release, name, hex, &size)) {
                kiln_error_set(err, KILN_E_NOT_FOUND, "%s: the Release lists no '%s'", s->what,
                               name);
                return NULL;
        }
        cached = cache_path(s->o, hex, "");
        if (cached && stat(cached, &st) == 0 && st.st_size == size &&
            recipe_sha256_file(cached, got, NULL) == 0 && !strcmp(got, hex))
                return steal_ptr(&cached);
        file = dist_file(s, name, RECIPE_APT_INDEX_MAX, err);
        if (!file)
                return NULL;
        if (stat(file, &st) < 0 || st.st_size != size) {
                kiln_error_set(err, KILN_E_DIGEST,
                               "%s: '%s' is %lld bytes but the Release says %lld", s->what, name,
                               (long long)st.st_size, size);
                return NULL;
        }
        if (recipe_sha256_file(file, got, err) < 0)
                return NULL;
        if (strcmp(got, hex)) {
                kiln_error_set(err, KILN_E_DIGEST,
                               "%s: sha256 mismatch for '%s': the Release says %s, got %s", s->what,
                               name, hex, got);
                return NULL;
        }
        cache_keep(s->o, file, hex, "");
        return steal_ptr(&file);
}

void recipe_apt_index_release(struct recipe_apt_index *x)
{
        for (size_t i = 0; i < x->n; i++)
                free(x->files[i]);
        free(x->files);
        free(x->mirror);
        free(x->release);
        memset(x, 0, sizeof(*x));
}

static int add_file(struct recipe_apt_index *x, char *file, struct kiln_error *err)
{
        char **nf;

        if (!file)
                return -1;
        nf = realloc(x->files, (x->n + 1) * sizeof(*nf));
        if (!nf) {
                free(file);
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        x->files = nf;
        x->files[x->n++] = file;
        return 0;
}

/* "dists/SUITE/REST" -> SUITE and REST */
static int split_index(const char *index, const char *what, char **ret_suite, const char **ret_rest,
                       struct kiln_error *err)
{
        const char *s = index + strlen("dists/"), *slash;

        if (!str_has_prefix(index, "dists/") || !(slash = strchr(s, '/')) || slash == s ||
            !slash[1] || strstr(index, ".."))
                return kiln_error_set(err, KILN_E_INVALID,
                                      "%s: cannot check index '%s' against a Release: it is not "
                                      "under dists/SUITE/ (give 'suite' and 'components')",
                                      what, index);
        *ret_suite = strndup(s, (size_t)(slash - s));
        *ret_rest = slash + 1;
        return *ret_suite ? 0 : kiln_error_set(err, KILN_E_NOMEM, "out of memory");
}

/* COMPONENT/binary-ARCH/Packages, in apt's order of preference */
static char *component_index(const struct src *s, const char *release, const char *component,
                             const char *arch, struct kiln_error *err)
{
        static const char *const ext[] = {".xz", ".gz", ""};
        char hex[65];
        long long size;

        for (size_t i = 0; i < ARRAY_SIZE(ext); i++) {
                _cleanup_free_ char *name =
                    kiln_strdupf("%s/binary-%s/Packages%s", component, arch, ext[i]);
                if (!name) {
                        kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                        return NULL;
                }
                if (release_entry(release, name, hex, &size))
                        return index_get(s, release, name, err);
        }
        kiln_error_set(err, KILN_E_NOT_FOUND,
                       "%s: the Release lists no Packages for component '%s' and '%s'", s->what,
                       component, arch);
        return NULL;
}

/* A local mirror without a keyring: the index as the recipe names it. */
static int unverified(const struct recipe_plan *p, const struct recipe_stage_opts *o,
                      const json_t *source, const char *arch, struct recipe_apt_index *x,
                      struct kiln_error *err)
{
        const char *index = json_string_value(json_object_get(source, "index"));
        const char *suite = json_string_value(json_object_get(source, "suite"));
        const json_t *c;
        size_t i;

        if (index) {
                _cleanup_free_ char *iu = index[0] == '/' || strstr(index, "://")
                                              ? strdup(index)
                                              : kiln_strdupf("%s/%s", x->mirror, index);
                return iu ? add_file(x,
                                     recipe_input_file(p, o, iu, false, RECIPE_APT_INDEX_MAX, err),
                                     err)
                          : kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        }
        json_array_foreach(json_object_get(source, "components"), i, c)
        {
                static const char *const ext[] = {".xz", ".gz", ""};
                char *found = NULL;
                for (size_t k = 0; !found && k < ARRAY_SIZE(ext); k++) {
                        char *f = kiln_strdupf("%s/dists/%s/%s/binary-%s/Packages%s", x->mirror,
                                               suite, json_string_value(c), arch, ext[k]);
                        if (f && access(f, F_OK) == 0)
                                found = f;
                        else
                                free(f);
                }
                if (!found)
                        return kiln_error_set(
                            err, KILN_E_NOT_FOUND,
                            "no Packages index for component '%s' and '%s' in '%s/dists/%s'",
                            json_string_value(c), arch, x->mirror, suite);
                if (add_file(x, found, err) < 0)
                        return -1;
        }
        return 0;
}

int recipe_apt_index_open(const struct recipe_plan *p, const struct recipe_stage_opts *o,
                          const json_t *source, const char *arch, const char *pin,
                          struct recipe_apt_index *ret, struct kiln_error *err)
{
        const char *mirror = json_string_value(json_object_get(source, "mirror"));
        const char *index = json_string_value(json_object_get(source, "index"));
        const json_t *kv = json_object_get(source, "keyring");
        const char *keyring = json_string_value(kv ? kv : json_object_get(source, "signed_by"));
        struct recipe_apt_index x = {0};
        struct keys k = {0};
        struct src s = {.p = p, .o = o};
        _cleanup_free_ char *suite = NULL, *text = NULL, *scratch = NULL;
        const char *rest = NULL;
        char hex[65];
        int rc = -1;

        if (keyring && !*keyring)
                keyring = NULL; /* "": the base's, as when absent (a variable's default) */
        if (json_object_get(source, "arch"))
                arch = json_string_value(json_object_get(source, "arch"));
        /* the mirror is a base: local dir, or a URL files are fetched from */
        x.mirror = is_url(mirror) ? strdup(mirror) : recipe_resolve_input(p, mirror, err);
        if (!x.mirror)
                return -1;
        while (strlen(x.mirror) > 1 && x.mirror[strlen(x.mirror) - 1] == '/')
                x.mirror[strlen(x.mirror) - 1] = '\0';
        if (!is_url(mirror) && !keyring) {
                if (unverified(p, o, source, arch, &x, err) < 0)
                        goto out;
                *ret = x;
                return 0;
        }
        s.mdir = x.mirror;
        snprintf(s.what, sizeof(s.what), "apt source '%s'", mirror);
        if (index) {
                if (split_index(index, s.what, &suite, &rest, err) < 0)
                        goto out;
        } else if (!(suite = strdup(json_string_value(json_object_get(source, "suite"))))) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto out;
        }
        s.suite = suite;
        snprintf(s.what, sizeof(s.what), "apt source '%s' suite '%s'", mirror, suite);
        {
                const char *tmp = o->cache_dir ? o->cache_dir : getenv("TMPDIR");
                scratch = kiln_strdupf("%s/kiln-apt-XXXXXX", tmp && *tmp ? tmp : "/tmp");
                if (o->cache_dir && kiln_mkdir_p(o->cache_dir, 0755, err) < 0)
                        goto out;
                if (!scratch || !mkdtemp(scratch)) {
                        kiln_error_set_errno(err, KILN_E_IO, errno,
                                             "cannot create a directory for gpgv");
                        goto out;
                }
                k.scratch = scratch;
        }
        if (keys_collect(p, o, keyring, s.what, &k, err) < 0 ||
            release_get(&s, &k, pin, &text, hex, err) < 0)
                goto out;
        x.release = kiln_strdupf("sha256:%s", hex);
        if (!x.release) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                goto out;
        }
        if (rest) {
                if (add_file(&x, index_get(&s, text, rest, err), err) < 0)
                        goto out;
        } else {
                const json_t *c;
                size_t i;
                json_array_foreach(json_object_get(source, "components"), i, c)
                {
                        if (add_file(&x, component_index(&s, text, json_string_value(c), arch, err),
                                     err) < 0)
                                goto out;
                }
        }
        *ret = x;
        memset(&x, 0, sizeof(x));
        rc = 0;
out:
        if (scratch)
                kiln_rm_rf(scratch);
        keys_release(&k);
        recipe_apt_index_release(&x);
        return rc;
}
