/* kiln login HOST -u USER --password-stdin: checks the credentials against
 * the registry, then saves them (see registry/creds.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmd_registry.h"
#include "creds.h"
#include "util.h"

#define PASSWORD_MAX 4096

static char *read_password(void)
{
        char *buf = malloc(PASSWORD_MAX + 2);
        size_t n;

        if (!buf)
                return NULL;
        n = fread(buf, 1, PASSWORD_MAX + 1, stdin);
        if (n > PASSWORD_MAX) {
                memset(buf, 0, PASSWORD_MAX + 2);
                free(buf);
                return NULL;
        }
        buf[n] = '\0';
        while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
                buf[--n] = '\0';
        return buf;
}

int cmd_login(struct cli_args *a)
{
        struct kiln_error err = KILN_ERROR_INIT;
        const char *user = cli_arg(a, 'u'), *host;
        char *pass = NULL;
        bool pass_stdin = cli_flag(a, 'P');
        struct reg_client *c;
        struct reg_options o;
        int rc;

        if (a->argc != 1)
                return cli_usage("login", "expected one HOST");
        host = a->argv[0];
        if (!strcmp(host, "index.docker.io") || !strcmp(host, "registry-1.docker.io"))
                host = "docker.io";
        if (!user || !*user)
                return cli_usage("login", "missing --username");
        /* NGC takes API keys only, under this fixed user name; anything else
         * fails later with a bare 401 */
        if (!strcmp(host, "nvcr.io") && strcmp(user, "$oauthtoken"))
                return cli_usage("login",
                                 "nvcr.io takes the user name '$oauthtoken' and an NGC API key as the password, not user '%s'",
                                 user);
        if (!pass_stdin)
                return cli_usage("login", "the password is read with --password-stdin only");
        pass = read_password();
        if (!pass || !*pass) {
                free(pass);
                kiln_error_set(&err, KILN_E_USAGE, "no password on standard input");
                return cli_fail(&err);
        }
        o = a->reg;
        o.username = user;
        o.password = pass;
        o.force_oauth = true;
        c = reg_client_new(host, NULL, &o, false, &err);
        rc = c ? reg_client_ping(c, &err) : -1;
        reg_client_free(c);
        if (rc == 0)
                rc = reg_creds_store(a->reg.authfile, host, user, pass, &err);
        memset(pass, 0, strlen(pass));
        free(pass);
        if (rc < 0) {
                kiln_error_prefix(&err, "login to '%s'", host);
                return cli_fail(&err);
        }
        printf("login succeeded for '%s'\n", host);
        return EXIT_OK;
}
