/*
 * DESIGN: jsmn in strict mode, its implementation compiled into this file only. Tokens grow
 * by resuming the same parser (jsmn supports continuing after JSMN_ERROR_NOMEM), so a
 * typical chat body is indexed in one pass with one arena allocation.
 */
#define JSMN_STATIC
#define JSMN_STRICT
#include <jsmn.h>

#include "util/json_scan.h"

#include <stdlib.h>
#include <string.h>

#include "util/arena.h"

/* jsmn's strict mode checks only a primitive's first character; "tru" or "1.2.3" must not
 * pass for JSON here, so each primitive is checked against the JSON grammar. */
static bool primitive_valid(const char *p, size_t n)
{
    if (n == 4 && (memcmp(p, "true", 4) == 0 || memcmp(p, "null", 4) == 0)) return true;
    if (n == 5 && memcmp(p, "false", 5) == 0) return true;
    size_t i = 0;
    if (i < n && p[i] == '-') i++;
    if (i >= n) return false;
    if (p[i] == '0')
        i++;
    else if (p[i] >= '1' && p[i] <= '9')
        while (i < n && p[i] >= '0' && p[i] <= '9') i++;
    else
        return false;
    if (i < n && p[i] == '.') {
        i++;
        size_t d = i;
        while (i < n && p[i] >= '0' && p[i] <= '9') i++;
        if (i == d) return false;
    }
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        i++;
        if (i < n && (p[i] == '+' || p[i] == '-')) i++;
        size_t d = i;
        while (i < n && p[i] >= '0' && p[i] <= '9') i++;
        if (i == d) return false;
    }
    return i == n;
}

int json_scan_parse(struct json_scan *s, const char *js, size_t len, struct arena *arena, bool *oom)
{
    jsmn_parser p;
    unsigned cap = 128;
    jsmntok_t *tok = arena_alloc(arena, cap * sizeof *tok);
    *oom = false;
    if (tok == NULL) {
        *oom = true;
        return -1;
    }
    jsmn_init(&p);
    int n;
    while ((n = jsmn_parse(&p, js, len, tok, cap)) == JSMN_ERROR_NOMEM) {
        jsmntok_t *bigger = arena_alloc(arena, cap * 4 * sizeof *tok);
        if (bigger == NULL) {
            *oom = true;
            return -1;
        }
        memcpy(bigger, tok, cap * sizeof *tok);
        tok = bigger;
        cap *= 4;
    }
    if (n < 1) return -1;
    for (int i = 0; i < n; i++)
        if (tok[i].type == JSMN_PRIMITIVE &&
            !primitive_valid(js + tok[i].start, (size_t)(tok[i].end - tok[i].start)))
            return -1;
    /* jsmn accepts a sequence of values; a body is exactly one. */
    if (json_scan_skip(&(struct json_scan){js, len, tok, n}, 0) != n) return -1;
    for (size_t k = (size_t)tok[0].end; k < len; k++)
        if (js[k] != ' ' && js[k] != '\n' && js[k] != '\r' && js[k] != '\t') return -1;
    s->js = js;
    s->len = len;
    s->tok = tok;
    s->n = n;
    return 0;
}

int json_scan_skip(const struct json_scan *s, int i)
{
    int end = s->tok[i].end;
    int j = i + 1;
    while (j < s->n && s->tok[j].start < end) j++;
    return j;
}

int json_scan_get(const struct json_scan *s, int obj, const char *key)
{
    if (obj < 0 || obj >= s->n || s->tok[obj].type != JSMN_OBJECT) return -1;
    size_t klen = strlen(key);
    int i = obj + 1;
    for (int m = 0; m < s->tok[obj].size && i < s->n; m++) {
        const jsmntok_t *k = &s->tok[i];
        if (k->type == JSMN_STRING && (size_t)(k->end - k->start) == klen &&
            memcmp(s->js + k->start, key, klen) == 0)
            return i + 1;
        i = json_scan_skip(s, i + 1); /* past the value */
    }
    return -1;
}

void json_scan_members(const struct json_scan *s, int obj, const char *const *keys, size_t n,
                       int *out)
{
    for (size_t k = 0; k < n; k++) out[k] = -1;
    if (obj < 0 || obj >= s->n || s->tok[obj].type != JSMN_OBJECT) return;
    int i = obj + 1;
    for (int m = 0; m < s->tok[obj].size && i < s->n; m++) {
        const jsmntok_t *t = &s->tok[i];
        size_t len = (size_t)(t->end - t->start);
        for (size_t k = 0; k < n; k++)
            if (out[k] < 0 && strncmp(keys[k], s->js + t->start, len) == 0 &&
                keys[k][len] == '\0') {
                out[k] = i + 1;
                break;
            }
        i = json_scan_skip(s, i + 1);
    }
}

static bool valid(const struct json_scan *s, int i)
{
    return i >= 0 && i < s->n;
}

bool json_scan_is_object(const struct json_scan *s, int i)
{
    return valid(s, i) && s->tok[i].type == JSMN_OBJECT;
}

bool json_scan_is_array(const struct json_scan *s, int i)
{
    return valid(s, i) && s->tok[i].type == JSMN_ARRAY;
}

bool json_scan_is_string(const struct json_scan *s, int i)
{
    return valid(s, i) && s->tok[i].type == JSMN_STRING;
}

static char first_char(const struct json_scan *s, int i)
{
    return s->js[s->tok[i].start];
}

bool json_scan_is_bool(const struct json_scan *s, int i)
{
    return valid(s, i) && s->tok[i].type == JSMN_PRIMITIVE &&
           (first_char(s, i) == 't' || first_char(s, i) == 'f');
}

bool json_scan_is_true(const struct json_scan *s, int i)
{
    return valid(s, i) && s->tok[i].type == JSMN_PRIMITIVE && first_char(s, i) == 't';
}

bool json_scan_is_null(const struct json_scan *s, int i)
{
    return valid(s, i) && s->tok[i].type == JSMN_PRIMITIVE && first_char(s, i) == 'n';
}

bool json_scan_is_number(const struct json_scan *s, int i)
{
    if (!valid(s, i) || s->tok[i].type != JSMN_PRIMITIVE) return false;
    char c = first_char(s, i);
    return c == '-' || (c >= '0' && c <= '9');
}

bool json_scan_is_integer(const struct json_scan *s, int i)
{
    if (!json_scan_is_number(s, i)) return false;
    for (int k = s->tok[i].start; k < s->tok[i].end; k++) {
        char c = s->js[k];
        if (c == '.' || c == 'e' || c == 'E') return false;
    }
    return true;
}

bool json_scan_integer(const struct json_scan *s, int i, long long *out)
{
    if (!json_scan_is_integer(s, i)) return false;
    char buf[32];
    int n = s->tok[i].end - s->tok[i].start;
    if (n <= 0 || n >= (int)sizeof buf) return false;
    memcpy(buf, s->js + s->tok[i].start, (size_t)n);
    buf[n] = '\0';
    *out = strtoll(buf, NULL, 10);
    return true;
}

bool json_scan_string_is(const struct json_scan *s, int i, const char *lit)
{
    if (!json_scan_is_string(s, i)) return false;
    size_t n = strlen(lit);
    return (size_t)(s->tok[i].end - s->tok[i].start) == n &&
           memcmp(s->js + s->tok[i].start, lit, n) == 0;
}

const char *json_scan_type_name(const struct json_scan *s, int i)
{
    if (!valid(s, i)) return "nothing";
    switch (s->tok[i].type) {
    case JSMN_OBJECT:
        return "object";
    case JSMN_ARRAY:
        return "array";
    case JSMN_STRING:
        return "string";
    case JSMN_PRIMITIVE:
        if (json_scan_is_bool(s, i)) return "boolean";
        if (json_scan_is_null(s, i)) return "null";
        return json_scan_is_integer(s, i) ? "integer" : "number";
    default:
        return "?";
    }
}

bool json_scan_check(const char *js, size_t len)
{
    /* A scratch arena sized for a typical stream chunk: one allocation, freed at once. */
    struct arena *a = arena_new(4096);
    if (a == NULL) return false;
    struct json_scan s;
    bool oom;
    bool ok = json_scan_parse(&s, js, len, a, &oom) == 0;
    arena_free(a);
    return ok;
}
