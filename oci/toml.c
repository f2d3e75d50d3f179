/* The TOML subset of registries.conf, pyproject.toml and pylock.toml (see
 * toml.h); TOML v1.0.0 for the parts it reads. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "toml.h"
#include "util.h"

#define KEY_MAX 256
#define PATH_MAX_PARTS 16
#define ARRAY_DEPTH_MAX 8

struct cur {
        const char *p, *end;
        const char *file;
        unsigned line;
        struct kiln_error *err;
};

static int fail(struct cur *c, const char *what)
{
        return kiln_error_set(c->err, KILN_E_INVALID, "%s:%u: %s", c->file, c->line, what);
}

static void skip_ws(struct cur *c)
{
        while (c->p < c->end && (*c->p == ' ' || *c->p == '\t'))
                c->p++;
}

static bool at_eol(struct cur *c)
{
        return c->p == c->end || *c->p == '\n' || *c->p == '#' ||
               (*c->p == '\r' && c->p + 1 < c->end && c->p[1] == '\n');
}

/* After a value or a header: spaces, an optional comment, then the end of
 * the line (consumed). */
static int end_line(struct cur *c)
{
        skip_ws(c);
        if (c->p < c->end && *c->p == '#') {
                while (c->p < c->end && *c->p != '\n') {
                        unsigned char ch = (unsigned char)*c->p;
                        if (ch < 0x20 && ch != '\t' && ch != '\r')
                                return fail(c, "control character in a comment");
                        c->p++;
                }
        }
        if (c->p < c->end && *c->p == '\r')
                c->p++;
        if (c->p == c->end)
                return 0;
        if (*c->p != '\n')
                return fail(c, "expected the end of the line");
        c->p++;
        c->line++;
        return 0;
}

/* Spaces, comments and newlines inside an array. */
static int skip_ws_nl(struct cur *c)
{
        for (;;) {
                skip_ws(c);
                if (c->p == c->end)
                        return 0;
                if (*c->p == '#' || *c->p == '\n' || *c->p == '\r') {
                        if (end_line(c) < 0)
                                return -1;
                        continue;
                }
                return 0;
        }
}

static void put_utf8(char *out, size_t *n, uint32_t cp)
{
        if (cp < 0x80) {
                out[(*n)++] = (char)cp;
        } else if (cp < 0x800) {
                out[(*n)++] = (char)(0xC0 | (cp >> 6));
                out[(*n)++] = (char)(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
                out[(*n)++] = (char)(0xE0 | (cp >> 12));
                out[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                out[(*n)++] = (char)(0x80 | (cp & 0x3F));
        } else {
                out[(*n)++] = (char)(0xF0 | (cp >> 18));
                out[(*n)++] = (char)(0x80 | ((cp >> 12) & 0x3F));
                out[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                out[(*n)++] = (char)(0x80 | (cp & 0x3F));
        }
}

static int unicode_escape(struct cur *c, int digits, char *out, size_t *n)
{
        uint32_t cp = 0;

        for (int i = 0; i < digits; i++, c->p++) {
                char h = c->p < c->end ? *c->p : '\0';
                cp <<= 4;
                if (h >= '0' && h <= '9')
                        cp |= (uint32_t)(h - '0');
                else if (h >= 'a' && h <= 'f')
                        cp |= (uint32_t)(h - 'a' + 10);
                else if (h >= 'A' && h <= 'F')
                        cp |= (uint32_t)(h - 'A' + 10);
                else
                        return fail(c, "invalid \\u escape");
        }
        if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
                return fail(c, "\\u escape is not a Unicode scalar value");
        put_utf8(out, n, cp);
        return 0;
}

static bool at_triple(const struct cur *c, char q)
{
        return c->end - c->p >= 3 && c->p[0] == q && c->p[1] == q && c->p[2] == q;
}

/* A basic ("...") or literal ('...') string, on one line or, between
 * triple quotes, over several (a newline right after the opening quotes
 * is dropped; in a basic one a backslash at the end of a line joins it to
 * the next non-blank text); *ret is new. */
static int parse_string(struct cur *c, char **ret)
{
        char q = *c->p;
        bool multi = at_triple(c, q);
        const char *start;
        _cleanup_free_ char *out = NULL;
        size_t n = 0;

        c->p += multi ? 3 : 1;
        if (multi && c->p < c->end && *c->p == '\n') {
                c->p++;
                c->line++;
        } else if (multi && c->end - c->p >= 2 && c->p[0] == '\r' && c->p[1] == '\n') {
                c->p += 2;
                c->line++;
        }
        start = c->p;
        out = malloc((size_t)(c->end - start) + 1);
        if (!out)
                return kiln_error_set(c->err, KILN_E_NOMEM, "out of memory");
        for (;;) {
                unsigned char ch;
                if (c->p == c->end || (!multi && *c->p == '\n'))
                        return fail(c, "unterminated string");
                ch = (unsigned char)*c->p;
                if (multi && at_triple(c, q)) {
                        c->p += 3;
                        /* up to two more quotes belong to the string */
                        for (int k = 0; k < 2 && c->p < c->end && *c->p == q; k++)
                                out[n++] = *c->p++;
                        break;
                }
                if (!multi && ch == (unsigned char)q) {
                        c->p++;
                        break;
                }
                if (multi && (ch == '\n' || (ch == '\r' && c->p + 1 < c->end && c->p[1] == '\n'))) {
                        if (ch == '\r')
                                c->p++;
                        out[n++] = '\n';
                        c->p++;
                        c->line++;
                        continue;
                }
                if ((ch < 0x20 && ch != '\t') || ch == 0x7F)
                        return fail(c, "control character in a string");
                if (q == '"' && ch == '\\') {
                        char e = ++c->p < c->end ? *c->p++ : '\0';
                        if (multi && (e == ' ' || e == '\t' || e == '\n' || e == '\r')) {
                                /* line-ending backslash: trim to the next text */
                                const char *r = c->p - 1;
                                bool nl = false;
                                while (r < c->end && (*r == ' ' || *r == '\t' || *r == '\n' ||
                                                      *r == '\r')) {
                                        if (*r == '\n') {
                                                nl = true;
                                                c->line++;
                                        }
                                        r++;
                                }
                                if (!nl)
                                        return fail(c, "invalid escape in a string");
                                c->p = r;
                                continue;
                        }
                        switch (e) {
                        case 'b': out[n++] = '\b'; break;
                        case 't': out[n++] = '\t'; break;
                        case 'n': out[n++] = '\n'; break;
                        case 'f': out[n++] = '\f'; break;
                        case 'r': out[n++] = '\r'; break;
                        case '"': out[n++] = '"'; break;
                        case '\\': out[n++] = '\\'; break;
                        case 'u':
                                if (unicode_escape(c, 4, out, &n) < 0)
                                        return -1;
                                break;
                        case 'U':
                                if (unicode_escape(c, 8, out, &n) < 0)
                                        return -1;
                                break;
                        default: return fail(c, "invalid escape in a string");
                        }
                        continue;
                }
                out[n++] = (char)ch;
                c->p++;
        }
        out[n] = '\0';
        *ret = steal_ptr(&out);
        return 0;
}

static bool bare_key_char(char ch)
{
        return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
               ch == '_' || ch == '-';
}

/* One key part: bare, "basic" or 'literal'. */
static int parse_key_part(struct cur *c, char **ret)
{
        const char *s = c->p;

        if (c->p < c->end && (*c->p == '"' || *c->p == '\'')) {
                if (at_triple(c, *c->p))
                        return fail(c, "a key cannot be a multi-line string");
                return parse_string(c, ret);
        }
        while (c->p < c->end && bare_key_char(*c->p))
                c->p++;
        if (c->p == s)
                return fail(c, "expected a key");
        *ret = strndup(s, (size_t)(c->p - s));
        return *ret ? 0 : kiln_error_set(c->err, KILN_E_NOMEM, "out of memory");
}

struct path {
        char *part[PATH_MAX_PARTS];
        size_t n;
};

static void path_release(struct path *p)
{
        for (size_t i = 0; i < p->n; i++)
                free(p->part[i]);
        p->n = 0;
}

/* a.b."c d": parts separated by dots, spaces allowed around them. */
static int parse_path(struct cur *c, struct path *ret)
{
        ret->n = 0;
        for (;;) {
                skip_ws(c);
                if (ret->n == PATH_MAX_PARTS)
                        return fail(c, "key has too many parts");
                if (parse_key_part(c, &ret->part[ret->n]) < 0)
                        return -1;
                ret->n++;
                skip_ws(c);
                if (c->p < c->end && *c->p == '.') {
                        c->p++;
                        continue;
                }
                return 0;
        }
}

static json_t *parse_value(struct cur *c, int depth);

static json_t *parse_array(struct cur *c, int depth)
{
        json_t *a = json_array();

        if (!a)
                return kiln_error_set(c->err, KILN_E_NOMEM, "out of memory"), NULL;
        if (depth > ARRAY_DEPTH_MAX) {
                fail(c, "arrays nested too deep");
                goto bad;
        }
        c->p++; /* [ */
        for (;;) {
                json_t *v;
                if (skip_ws_nl(c) < 0)
                        goto bad;
                if (c->p < c->end && *c->p == ']') {
                        c->p++;
                        return a;
                }
                v = parse_value(c, depth + 1);
                if (!v || json_array_append_new(a, v) < 0)
                        goto bad;
                if (skip_ws_nl(c) < 0)
                        goto bad;
                if (c->p < c->end && *c->p == ',') {
                        c->p++;
                        continue;
                }
                if (c->p < c->end && *c->p == ']') {
                        c->p++;
                        return a;
                }
                fail(c, "expected ',' or ']' in an array");
                goto bad;
        }
bad:
        json_decref(a);
        return NULL;
}

static int assign(struct cur *c, json_t *table, int depth);

/* { key = value, ... } on one line (TOML 1.0) */
static json_t *parse_inline_table(struct cur *c, int depth)
{
        json_t *t = json_object();

        if (!t)
                return kiln_error_set(c->err, KILN_E_NOMEM, "out of memory"), NULL;
        if (depth > ARRAY_DEPTH_MAX) {
                fail(c, "tables nested too deep");
                goto bad;
        }
        c->p++; /* { */
        skip_ws(c);
        if (c->p < c->end && *c->p == '}') {
                c->p++;
                return t;
        }
        for (;;) {
                if (assign(c, t, depth + 1) < 0)
                        goto bad;
                skip_ws(c);
                if (c->p < c->end && *c->p == ',') {
                        c->p++;
                        continue;
                }
                if (c->p < c->end && *c->p == '}') {
                        c->p++;
                        return t;
                }
                fail(c, "expected ',' or '}' in an inline table");
                goto bad;
        }
bad:
        json_decref(t);
        return NULL;
}

static bool isdigit4(const char *p)
{
        for (int i = 0; i < 4; i++)
                if (p[i] < '0' || p[i] > '9')
                        return false;
        return true;
}

/* 1979-05-27, 1979-05-27T07:32:00Z, 1979-05-27 07:32:00.5-07:00: kept as
 * text (RFC 3339 as TOML writes it) */
static json_t *parse_datetime(struct cur *c)
{
        const char *s = c->p;

        while (c->p < c->end && ((*c->p >= '0' && *c->p <= '9') || *c->p == '-' || *c->p == ':' ||
                                 *c->p == '.' || *c->p == '+' || *c->p == 'T' || *c->p == 't' ||
                                 *c->p == 'Z' || *c->p == 'z' ||
                                 (*c->p == ' ' && c->p + 1 < c->end && c->p[1] >= '0' &&
                                  c->p[1] <= '9' && c->p - s == 10)))
                c->p++;
        if (c->p - s < 10 || s[7] != '-' || (c->p - s > 10 && c->p - s < 19))
                return fail(c, "invalid date-time"), NULL;
        return json_stringn(s, (size_t)(c->p - s));
}

static json_t *parse_integer(struct cur *c)
{
        const char *s = c->p;
        long long v = 0;
        bool neg = false;

        if (*c->p == '+' || *c->p == '-')
                neg = *c->p++ == '-';
        if (c->p == c->end || *c->p < '0' || *c->p > '9')
                return fail(c, "unsupported value (strings, booleans, integers, date-times, arrays and tables only)"),
                       NULL;
        if (*c->p == '0' && c->p + 1 < c->end && c->p[1] >= '0' && c->p[1] <= '9')
                return fail(c, "leading zeros in an integer"), NULL;
        while (c->p < c->end && ((*c->p >= '0' && *c->p <= '9') || *c->p == '_')) {
                if (*c->p != '_') {
                        if (v > (INT64_MAX - 9) / 10)
                                return fail(c, "integer out of range"), NULL;
                        v = v * 10 + (*c->p - '0');
                } else if (c->p == s || c->p + 1 == c->end || c->p[1] < '0' || c->p[1] > '9') {
                        return fail(c, "misplaced '_' in an integer"), NULL;
                }
                c->p++;
        }
        if (c->p < c->end && !at_eol(c) && *c->p != ' ' && *c->p != '\t' && *c->p != ',' &&
            *c->p != ']' && *c->p != '}')
                return fail(c, "unsupported value (strings, booleans, integers, date-times, arrays and tables only)"),
                       NULL;
        return json_integer(neg ? -v : v);
}

static json_t *parse_value(struct cur *c, int depth)
{
        if (c->p == c->end || at_eol(c))
                return fail(c, "missing value"), NULL;
        if (*c->p == '"' || *c->p == '\'') {
                char *s = NULL;
                json_t *v;
                if (parse_string(c, &s) < 0)
                        return NULL;
                v = json_string(s);
                free(s);
                if (!v)
                        fail(c, "string is not valid UTF-8");
                return v;
        }
        if (*c->p == '[')
                return parse_array(c, depth);
        if (*c->p == '{')
                return parse_inline_table(c, depth);
        if (c->end - c->p >= 5 && isdigit4(c->p) && c->p[4] == '-')
                return parse_datetime(c);
        if (c->end - c->p >= 4 && !memcmp(c->p, "true", 4) &&
            (c->p + 4 == c->end || !bare_key_char(c->p[4]))) {
                c->p += 4;
                return json_true();
        }
        if (c->end - c->p >= 5 && !memcmp(c->p, "false", 5) &&
            (c->p + 5 == c->end || !bare_key_char(c->p[5]))) {
                c->p += 5;
                return json_false();
        }
        return parse_integer(c);
}

/* The table that path names below root, created as needed; the last
 * element of an array of tables stands for the array. */
static json_t *descend(struct cur *c, json_t *t, const struct path *p, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                json_t *next = json_object_get(t, p->part[i]);
                if (!next) {
                        next = json_object();
                        if (!next || json_object_set_new(t, p->part[i], next) < 0)
                                return kiln_error_set(c->err, KILN_E_NOMEM, "out of memory"), NULL;
                } else if (json_is_array(next) && json_array_size(next) &&
                           json_is_object(json_array_get(next, json_array_size(next) - 1))) {
                        next = json_array_get(next, json_array_size(next) - 1);
                } else if (!json_is_object(next)) {
                        char m[KEY_MAX + 40];
                        snprintf(m, sizeof(m), "'%.*s' is not a table", KEY_MAX, p->part[i]);
                        return fail(c, m), NULL;
                }
                t = next;
        }
        return t;
}

static json_t *header(struct cur *c, json_t *root)
{
        bool array = c->p + 1 < c->end && c->p[1] == '[';
        struct path p = {0};
        json_t *parent, *t = NULL, *cur;

        c->p += array ? 2 : 1;
        if (parse_path(c, &p) < 0)
                goto out;
        if (c->p >= c->end || *c->p != ']' || (array && (c->p + 1 >= c->end || c->p[1] != ']'))) {
                fail(c, array ? "expected ']]'" : "expected ']'");
                goto out;
        }
        c->p += array ? 2 : 1;
        if (!(parent = descend(c, root, &p, p.n - 1)))
                goto out;
        cur = json_object_get(parent, p.part[p.n - 1]);
        if (array) {
                if (!cur) {
                        cur = json_array();
                        if (!cur || json_object_set_new(parent, p.part[p.n - 1], cur) < 0) {
                                kiln_error_set(c->err, KILN_E_NOMEM, "out of memory");
                                goto out;
                        }
                } else if (!json_is_array(cur)) {
                        fail(c, "array of tables redefines a key");
                        goto out;
                }
                t = json_object();
                if (!t || json_array_append_new(cur, t) < 0) {
                        kiln_error_set(c->err, KILN_E_NOMEM, "out of memory");
                        t = NULL;
                }
        } else if (!cur) {
                t = json_object();
                if (!t || json_object_set_new(parent, p.part[p.n - 1], t) < 0) {
                        kiln_error_set(c->err, KILN_E_NOMEM, "out of memory");
                        t = NULL;
                }
        } else if (json_is_object(cur)) {
                t = cur;
        } else {
                fail(c, "table redefines a key");
        }
        if (t && end_line(c) < 0)
                t = NULL;
out:
        path_release(&p);
        return t;
}

/* key = value into table (the line's end is the caller's) */
static int assign(struct cur *c, json_t *table, int depth)
{
        struct path p = {0};
        json_t *t, *v = NULL;
        int rc = -1;

        skip_ws(c);
        if (parse_path(c, &p) < 0)
                goto out;
        if (c->p >= c->end || *c->p != '=') {
                fail(c, "expected '=' after a key");
                goto out;
        }
        c->p++;
        skip_ws(c);
        if (!(t = descend(c, table, &p, p.n - 1)))
                goto out;
        if (json_object_get(t, p.part[p.n - 1])) {
                char m[KEY_MAX + 40];
                snprintf(m, sizeof(m), "duplicate key '%.*s'", KEY_MAX, p.part[p.n - 1]);
                fail(c, m);
                goto out;
        }
        if (!(v = parse_value(c, depth)))
                goto out;
        if (json_object_set_new(t, p.part[p.n - 1], v) < 0) {
                v = NULL;
                kiln_error_set(c->err, KILN_E_NOMEM, "out of memory");
                goto out;
        }
        v = NULL;
        rc = 0;
out:
        json_decref(v);
        path_release(&p);
        return rc;
}

static int key_value(struct cur *c, json_t *table)
{
        if (assign(c, table, 0) < 0)
                return -1;
        return end_line(c);
}

json_t *oci_toml_parse(const char *text, size_t len, const char *file, struct kiln_error *err)
{
        struct cur c = {.p = text, .end = text + len, .file = file, .line = 1, .err = err};
        json_t *root = json_object(), *table = root;

        if (!root)
                return kiln_error_set(err, KILN_E_NOMEM, "out of memory"), NULL;
        if (memchr(text, '\0', len)) {
                c.line = 1;
                for (const char *q = text; *q; q++)
                        c.line += *q == '\n';
                fail(&c, "NUL byte");
                goto bad;
        }
        while (c.p < c.end) {
                skip_ws(&c);
                if (at_eol(&c)) {
                        if (end_line(&c) < 0)
                                goto bad;
                        continue;
                }
                if (*c.p == '[') {
                        table = header(&c, root);
                        if (!table)
                                goto bad;
                        continue;
                }
                if (key_value(&c, table) < 0)
                        goto bad;
        }
        return root;
bad:
        json_decref(root);
        return NULL;
}
