/*
 * DESIGN: one rule per schema node (r0, r1, …), built depth-first into one evbuffer-free
 * growing string; the primitive rules are shared and appended once at the end. Literal
 * JSON (enum/const values, property names) is written by jansson and then quoted for
 * GBNF, so no JSON text is produced by hand.
 */
#include "engine/schema_grammar.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/json_text.h"

/* Whitespace is bounded so a weak model cannot wander off into spaces (as the JSON grammar
 * in engine.c). */
static const char primitives[] =
    "ws ::= [ \\t\\n]{0,8}\n"
    "string ::= \"\\\"\" ( [^\"\\\\\\x7F\\x00-\\x1F] | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" "
    "[0-9a-fA-F]{4} ) )* \"\\\"\" ws\n"
    "number ::= \"-\"? ( \"0\" | [1-9] [0-9]{0,15} ) ( \".\" [0-9]{1,16} )? ( [eE] [-+]? "
    "[0-9]{1,3} )? ws\n"
    "integer ::= \"-\"? ( \"0\" | [1-9] [0-9]{0,15} ) ws\n"
    "boolean ::= ( \"true\" | \"false\" ) ws\n"
    "null ::= \"null\" ws\n"
    "value ::= object | array | string | number | boolean | null\n"
    "object ::= \"{\" ws ( string \":\" ws value ( \",\" ws string \":\" ws value )* )? \"}\" ws\n"
    "array ::= \"[\" ws ( value ( \",\" ws value )* )? \"]\" ws\n";

struct gen {
    char *out;
    size_t len, cap;
    int next; /* the next rule number */
    bool failed;
    char *why;
    size_t why_cap;
};

static void add(struct gen *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(struct gen *g, const char *fmt, ...)
{
    if (g->failed) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (g->len + (size_t)n + 1 > g->cap) {
        size_t cap = (g->len + (size_t)n + 1) * 2;
        char *grown = realloc(g->out, cap);
        if (grown == NULL) {
            g->failed = true;
            snprintf(g->why, g->why_cap, "out of memory");
            return;
        }
        g->out = grown;
        g->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(g->out + g->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    g->len += (size_t)n;
}

static int unsupported(struct gen *g, const char *what)
{
    if (!g->failed) snprintf(g->why, g->why_cap, "the schema uses %s", what);
    g->failed = true;
    return -1;
}

/* `text` as a GBNF string literal. */
static void add_literal(struct gen *g, const char *text)
{
    add(g, "\"");
    for (const char *c = text; *c; c++) {
        if (*c == '"' || *c == '\\')
            add(g, "\\%c", *c);
        else if (*c == '\n')
            add(g, "\\n");
        else
            add(g, "%c", *c);
    }
    add(g, "\"");
}

/* A JSON value, exactly, followed by whitespace. Numbers as the schema wrote them (15
 * digits: `const: 0.1` must not demand "0.10000000000000001" from the model). */
static void add_json_literal(struct gen *g, const json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_TEXT_REALS);
    if (text == NULL) {
        unsupported(g, "a value that cannot be written");
        return;
    }
    add_literal(g, text);
    add(g, " ws");
    free(text);
}

static int rule(struct gen *g, const json_t *s, int depth);

/* The right-hand side for one type name. */
static int type_body(struct gen *g, const json_t *s, const char *type, int depth)
{
    if (strcmp(type, "string") == 0 || strcmp(type, "number") == 0 ||
        strcmp(type, "integer") == 0 || strcmp(type, "boolean") == 0 || strcmp(type, "null") == 0) {
        add(g, "%s", type);
        return 0;
    }
    if (strcmp(type, "array") == 0) {
        const json_t *items = json_object_get(s, "items");
        int item = json_is_object(items) ? rule(g, items, depth + 1) : -2;
        if (item == -1) return -1;
        char name[16], more[32];
        snprintf(name, sizeof name, item >= 0 ? "r%d" : "value", item);
        /* minItems/maxItems bound the repetition: a model that never stops listing would
         * otherwise run to max_tokens with an unfinished array. */
        const json_t *mn = json_object_get(s, "minItems"), *mx = json_object_get(s, "maxItems");
        json_int_t min =
            json_is_integer(mn) && json_integer_value(mn) > 0 ? json_integer_value(mn) : 0;
        json_int_t max =
            json_is_integer(mx) && json_integer_value(mx) >= 0 ? json_integer_value(mx) : -1;
        if (max >= 0 && min > max) return unsupported(g, "minItems above maxItems");
        if (max == 0) {
            add(g, "\"[\" ws \"]\" ws");
            return 0;
        }
        json_int_t lo = min > 0 ? min - 1 : 0;
        if (max < 0)
            snprintf(more, sizeof more, lo ? "{%lld,}" : "*", (long long)lo);
        else
            snprintf(more, sizeof more, "{%lld,%lld}", (long long)lo, (long long)(max - 1));
        add(g, "\"[\" ws %s%s ( \",\" ws %s )%s %s\"]\" ws", min ? "" : "( ", name, name, more,
            min ? "" : ")? ");
        return 0;
    }
    if (strcmp(type, "object") == 0) {
        const json_t *props = json_object_get(s, "properties");
        if (!json_is_object(props) || json_object_size(props) == 0) {
            add(g, "object");
            return 0;
        }
        /* Children first (their rule numbers), then this sequence. */
        size_t n = json_object_size(props), i = 0;
        int *kids = calloc(n, sizeof *kids);
        const char **keys = calloc(n, sizeof *keys);
        if (kids == NULL || keys == NULL) {
            free(kids);
            free(keys);
            return unsupported(g, "more than memory allows");
        }
        const char *key;
        const json_t *sub;
        json_object_foreach((json_t *)props, key, sub)
        {
            keys[i] = key;
            kids[i] = json_is_object(sub) ? rule(g, sub, depth + 1) : -2;
            if (kids[i++] == -1) break;
        }
        if (!g->failed) {
            add(g, "\"{\" ws ");
            for (i = 0; i < n; i++) {
                json_t *k = json_string(keys[i]);
                if (i) add(g, " \",\" ws ");
                add_json_literal(g, k);
                json_decref(k);
                if (kids[i] >= 0)
                    add(g, " \":\" ws r%d", kids[i]);
                else
                    add(g, " \":\" ws value");
            }
            add(g, " \"}\" ws");
        }
        free(kids);
        free(keys);
        return g->failed ? -1 : 0;
    }
    return unsupported(g, "an unknown type");
}

/* Writes rule r<n> for schema `s` (after any rules it needs). @return n, or -1. */
static int rule(struct gen *g, const json_t *s, int depth)
{
    static const char *const not_covered[] = {
        "$ref", "allOf", "oneOf", "not", "patternProperties", "pattern", "format", "if", NULL};
    if (depth > 32) return unsupported(g, "nesting deeper than 32");
    for (const char *const *k = not_covered; *k; k++)
        if (json_object_get(s, *k)) return unsupported(g, *k);
    int self = g->next++;
    /* Alternatives are built as separate rules first, so one line holds this rule. */
    const json_t *any = json_object_get(s, "anyOf");
    const json_t *types = json_object_get(s, "type");
    const json_t *en = json_object_get(s, "enum"), *cn = json_object_get(s, "const");
    int *alts = NULL;
    size_t n_alts = 0;
    if (json_is_array(any) && cn == NULL && en == NULL) {
        n_alts = json_array_size(any);
        alts = calloc(n_alts ? n_alts : 1, sizeof *alts);
        if (alts == NULL) return unsupported(g, "more than memory allows");
        for (size_t i = 0; i < n_alts; i++) {
            const json_t *a = json_array_get(any, i);
            if (!json_is_object(a) || (alts[i] = rule(g, a, depth + 1)) < 0) {
                free(alts);
                return g->failed ? -1 : unsupported(g, "an anyOf entry that is not a schema");
            }
        }
    }
    /* Object and array bodies may need child rules too: write them into a scratch
     * generator sharing the numbering, then this rule, then the scratch. */
    struct gen body = {.next = g->next, .why = g->why, .why_cap = g->why_cap};
    struct gen *saved = g;
    g = &body;
    if (cn) {
        add_json_literal(g, cn);
    } else if (json_is_array(en)) {
        size_t i;
        const json_t *v;
        json_array_foreach(en, i, v)
        {
            if (i) add(g, " | ");
            add_json_literal(g, v);
        }
        if (json_array_size(en) == 0) unsupported(g, "an empty enum");
    } else if (alts) {
        for (size_t i = 0; i < n_alts; i++) add(g, "%sr%d", i ? " | " : "", alts[i]);
        if (n_alts == 0) unsupported(g, "an empty anyOf");
    } else if (json_is_string(types)) {
        type_body(g, s, json_string_value(types), depth);
    } else if (json_is_array(types) && json_array_size(types) > 0) {
        size_t i;
        const json_t *t;
        json_array_foreach(types, i, t)
        {
            if (!json_is_string(t)) {
                unsupported(g, "a type list with a non-string entry");
                break;
            }
            add(g, "%s( ", i ? " | " : "");
            type_body(g, s, json_string_value(t), depth);
            add(g, " )");
        }
    } else {
        add(g, "value"); /* no constraint */
    }
    free(alts);
    g = saved;
    if (body.failed) {
        g->failed = true;
        free(body.out);
        return -1;
    }
    /* body.out holds, in order: the child rules' lines, then this rule's right-hand side —
     * children were appended to `body` as full lines before the right-hand side started. */
    g->next = body.next;
    const char *rhs = body.out ? body.out : "";
    const char *last_nl = strrchr(rhs, '\n');
    size_t child_len = last_nl ? (size_t)(last_nl - rhs) + 1 : 0;
    add(g, "%.*s", (int)child_len, rhs);
    add(g, "r%d ::= %s\n", self, rhs + child_len);
    free(body.out);
    return g->failed ? -1 : self;
}

char *schema_grammar(const json_t *schema, char *why, size_t cap)
{
    struct gen g = {.why = why, .why_cap = cap};
    if (!json_is_object(schema)) {
        snprintf(why, cap, "the schema is not an object");
        return NULL;
    }
    int root = rule(&g, schema, 0);
    if (root < 0 || g.failed) {
        free(g.out);
        return NULL;
    }
    add(&g, "root ::= r%d\n%s", root, primitives);
    if (g.failed) {
        free(g.out);
        return NULL;
    }
    return g.out;
}
