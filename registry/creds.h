/* registry/creds.h: registry credentials in docker's config.json.
 *
 * The file is REGISTRY_AUTH_FILE, or an explicit --authfile, or
 * ${DOCKER_CONFIG:-~/.docker}/config.json.  Lookup order for a host:
 * credHelpers[host], then credsStore, then auths[host].auth (base64
 * "user:password"; an "identitytoken" is used as an OAuth2 refresh token).
 * A helper is `docker-credential-NAME get|store|erase`, NAME limited to
 * [A-Za-z0-9_.-], run with a timeout.  Writes keep every unknown key and
 * replace the file atomically with mode 0600.
 *
 * Secrets never go into an error message.
 */
#ifndef KILN_REGISTRY_CREDS_H
#define KILN_REGISTRY_CREDS_H

#include <stdbool.h>

#include "error.h"

struct reg_creds {
        char *username;
        char *password;
        char *identity_token; /* OAuth2 refresh token, or NULL */
};

void reg_creds_release(struct reg_creds *c);

/* The config file to use, in a new string. */
char *reg_authfile_path(const char *authfile);

/* The key used for host in "auths" ("docker.io" is stored as docker's
 * "https://index.docker.io/v1/"). */
const char *reg_auth_key(const char *host);

/* Finds credentials for host; *ret_found false (and ret untouched) when none. */
int reg_creds_lookup(const char *authfile, const char *host, struct reg_creds *ret,
                     bool *ret_found, struct kiln_error *err);
int reg_creds_store(const char *authfile, const char *host, const char *username,
                    const char *password, struct kiln_error *err);
int reg_creds_erase(const char *authfile, const char *host, bool *ret_found,
                    struct kiln_error *err);

/* Exposed for the unit tests: the helper name check and base64 auth decode. */
bool reg_helper_name_valid(const char *name);
int reg_auth_decode(const char *b64, struct reg_creds *ret, struct kiln_error *err);

#endif
