/* The checks of a recipe's "validate" object run inside the image: the
 * Python program (recipes/validate_checks.py, built in) and the reader of
 * its output. */
#include "recipe_validate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "recipe_internal.h"
#include "util.h"

#define MARK "\x1ekiln-check "
#define LINE_MAX_LEN 8192

int recipe_validate_script(const json_t *spec, const char *gpu_skip, char ***ret_argv,
                           struct kiln_error *err)
{
        const char *py = json_string_value(json_object_get(spec, "python"));
        _cleanup_free_ char *js = json_dumps(spec, JSON_COMPACT);
        const char *args[6];
        size_t size = sizeof(char *) * 7, n = ARRAY_SIZE(args);
        char **argv, *p;

        if (!js)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        args[0] = py && *py ? py : "python3";
        args[1] = "-B"; /* the upper directory is thrown away: no .pyc */
        args[2] = "-c";
        args[3] = recipe_embedded_validate_checks_py;
        args[4] = js;
        args[5] = gpu_skip ? gpu_skip : "";
        for (size_t i = 0; i < n; i++)
                size += strlen(args[i]) + 1;
        argv = malloc(size);
        if (!argv)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory");
        p = (char *)(argv + 7);
        for (size_t i = 0; i < n; i++) {
                size_t l = strlen(args[i]) + 1;
                memcpy(p, args[i], l);
                argv[i] = p;
                p += l;
        }
        argv[n] = NULL;
        *ret_argv = argv;
        return 0;
}

struct recipe_validate_reader {
        const json_t *checks;
        size_t n;
        bool *done;
        long running; /* the check begun and not reported, or -1 */
        bool python_seen, source_done;
        const char *source;
        struct recipe_validate_report rep;
        char line[LINE_MAX_LEN];
        size_t len;
        bool overlong;
        char last[512]; /* the program's last line of its own */
};

struct recipe_validate_reader *recipe_validate_reader_new(const json_t *spec,
                                                          const struct recipe_validate_report *rep,
                                                          struct kiln_error *err)
{
        struct recipe_validate_reader *rd = calloc(1, sizeof(*rd));

        if (!rd) {
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        rd->checks = json_object_get(spec, "checks");
        rd->n = json_array_size(rd->checks);
        rd->done = calloc(rd->n + 1, sizeof(*rd->done));
        if (!rd->done) {
                free(rd);
                kiln_error_set(err, KILN_E_NOMEM, "out of memory");
                return NULL;
        }
        rd->running = -1;
        rd->source = json_string_value(json_object_get(spec, "source"));
        rd->rep = *rep;
        return rd;
}

static void say(struct recipe_validate_reader *rd, const char *name, enum recipe_check_state st,
                const char *detail)
{
        if (rd->rep.check)
                rd->rep.check(rd->rep.ctx, name, st, detail);
}

static const char *check_name(const struct recipe_validate_reader *rd, size_t i)
{
        return json_string_value(json_object_get(json_array_get(rd->checks, i), "name"));
}

/* One "\x1ekiln-check {...}" line. */
static void on_record(struct recipe_validate_reader *rd, const char *js)
{
        _cleanup_json_ json_t *j = json_loads(js, 0, NULL);
        json_int_t i = json_integer_value(json_object_get(j, "i"));
        const char *st = json_string_value(json_object_get(j, "state"));
        const char *detail = json_string_value(json_object_get(j, "detail"));
        enum recipe_check_state s;

        if (!j || !st || !json_is_integer(json_object_get(j, "i")))
                return;
        if (!strcmp(st, "begin")) {
                if (i >= 0 && (size_t)i < rd->n)
                        rd->running = (long)i;
                return;
        }
        s = !strcmp(st, "ok") ? RECIPE_CHECK_OK
            : !strcmp(st, "skip") ? RECIPE_CHECK_SKIP
                                  : RECIPE_CHECK_FAIL;
        if (i == -1 && !rd->python_seen) {
                rd->python_seen = true;
                say(rd, "python", s, detail ? detail : "");
        } else if (i == -2 && rd->source && !rd->source_done) {
                rd->source_done = true;
                say(rd, "source", s, detail ? detail : "");
        } else if (i >= 0 && (size_t)i < rd->n && !rd->done[i]) {
                rd->done[i] = true;
                rd->running = -1;
                say(rd, check_name(rd, (size_t)i), s, detail ? detail : "");
        }
}

static void on_line(struct recipe_validate_reader *rd)
{
        rd->line[rd->len] = '\0';
        if (!rd->overlong && str_has_prefix(rd->line, MARK)) {
                on_record(rd, rd->line + strlen(MARK));
        } else if (rd->len) {
                size_t n = rd->len;
                while (n && (rd->line[n - 1] == '\r' || rd->line[n - 1] == ' '))
                        n--;
                if (n)
                        snprintf(rd->last, sizeof(rd->last), "%.*s", (int)n, rd->line);
        }
        rd->len = 0;
        rd->overlong = false;
}

void recipe_validate_reader_feed(struct recipe_validate_reader *rd, const char *buf, size_t len)
{
        for (size_t i = 0; i < len; i++) {
                if (buf[i] == '\n') {
                        on_line(rd);
                } else if (rd->len + 1 < sizeof(rd->line)) {
                        rd->line[rd->len++] = buf[i];
                } else {
                        rd->overlong = true;
                }
        }
}

void recipe_validate_reader_finish(struct recipe_validate_reader *rd, int status, const char *why)
{
        char ended[700];
        bool blamed = false;

        if (rd->len)
                on_line(rd);
        if (status < 0)
                snprintf(ended, sizeof(ended), "%s", why ? why : "the program did not start");
        else if (status > 128)
                snprintf(ended, sizeof(ended), "exit status %d (signal %d)%s%s", status,
                         status - 128, *rd->last ? ": " : "", rd->last);
        else
                snprintf(ended, sizeof(ended), "exit status %d%s%s", status,
                         *rd->last ? ": " : "", rd->last);
        if (!rd->python_seen) {
                rd->python_seen = true;
                blamed = true;
                say(rd, "python", RECIPE_CHECK_FAIL, ended);
        }
        if (rd->running >= 0 && !rd->done[rd->running]) {
                char d[800];
                snprintf(d, sizeof(d), "python died during this check: %s", ended);
                rd->done[rd->running] = true;
                blamed = true;
                say(rd, check_name(rd, (size_t)rd->running), RECIPE_CHECK_FAIL, d);
        }
        rd->running = -1;
        for (size_t i = 0; i < rd->n; i++)
                if (!rd->done[i]) {
                        rd->done[i] = true;
                        say(rd, check_name(rd, i), RECIPE_CHECK_SKIP,
                            "not checked: python did not get this far");
                }
        if (rd->source && !rd->source_done) {
                rd->source_done = true;
                say(rd, "source", RECIPE_CHECK_SKIP, "not checked: python did not get this far");
        }
        if (status != 0 && !blamed)
                say(rd, "checker", RECIPE_CHECK_FAIL, ended);
}

void recipe_validate_reader_free(struct recipe_validate_reader *rd)
{
        if (!rd)
                return;
        free(rd->done);
        free(rd);
}
