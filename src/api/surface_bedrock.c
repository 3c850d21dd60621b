/*
 * DESIGN: see surface_bedrock.h.
 * Why one file of ~1,500 lines: an inbound API is one file (docs/architecture.md,
 * "Extending"), and its request, answer and stream translations share the private JSON-text
 * writer and scan readers below. That writer has a near twin in surface_anthropic.c; a shared
 * one in util/ would take ~130 lines off each (not done).
 *
 * A Bedrock body is scanned into jsmn tokens (util/json_scan, strict and bounded like any
 * OpenAI body) and re-told as the OpenAI chat body it means, written as text: JSON string
 * values are copied as the client escaped them (a string's raw text between its quotes is
 * valid JSON string text in both formats), so nothing is unescaped, re-escaped or held in a
 * DOM. That body then goes through openai_parse_request like any client's — every check and
 * limit of the request model applies unchanged. Our own checks only name Bedrock's fields
 * where a type is wrong, so the client learns which of *its* fields to fix.
 *
 * Answers come back as OpenAI JSON (whole) or chat.completion.chunks (streams), scanned the
 * same way and written back in Bedrock's shapes, strings again copied verbatim; a tool
 * call's arguments (JSON text inside a string) are unescaped once to become an object. Each
 * chunk becomes zero or more event-stream frames; frames queue in one evbuffer and leave
 * together at flush, one write per upstream read, as the OpenAI surface does.
 */
#include "api/surface_bedrock.h"

#include <event2/buffer.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/credential.h"
#include "http/server.h"
#include "providers/aws/eventstream.h"
#include "util/arena.h"
#include "util/clock.h"
#include "util/json_scan.h"
#include "util/json_text.h"

/* ---- errors ------------------------------------------------------------------------- */

static int invalid(struct err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A 400 naming the client's field; the error writer sends it as ValidationException. */
static int invalid(struct err *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    err_set(err, 400, "invalid_request_error", "validation_error", "%s", "");
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return -1;
}

const char *bedrock_exception(const struct err *e, int *status)
{
    *status = e->status;
    /* Auth refusals are named by what went wrong, as AWS names them. */
    if (e->code && strcmp(e->code, "invalid_signature") == 0) {
        *status = 403;
        return "InvalidSignatureException";
    }
    if (e->code && strcmp(e->code, "incomplete_signature") == 0) {
        *status = 400;
        return "IncompleteSignatureException";
    }
    switch (e->status) {
    case 400:
        return "ValidationException";
    case 401: /* AWS answers an unknown or missing credential with 403 */
        *status = 403;
        return "UnrecognizedClientException";
    case 403:
        return "AccessDeniedException";
    case 404:
        return "ResourceNotFoundException";
    case 408:
    case 504:
        return "ModelTimeoutException";
    case 429:
        return "ThrottlingException";
    case 502: /* the model's backend failed or answered garbage */
        *status = 424;
        return "ModelErrorException";
    case 503:
        return "ServiceUnavailableException";
    default:
        if (e->status >= 500) {
            *status = 500;
            return "InternalServerException";
        }
        *status = 400;
        return "ValidationException";
    }
}

/* ---- the path ------------------------------------------------------------------------ */

static const struct {
    const char *suffix;
    enum bedrock_op op;
} ops[] = {
    {"/converse", BEDROCK_CONVERSE},
    {"/converse-stream", BEDROCK_CONVERSE_STREAM},
    {"/invoke", BEDROCK_INVOKE},
    {"/invoke-with-response-stream", BEDROCK_INVOKE_STREAM},
};

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int bedrock_route(const char *path, struct arena *a, enum bedrock_op *op, const char **model_id,
                  struct err *err)
{
    if (strncmp(path, "/model/", 7) != 0)
        return err_set(err, 404, "invalid_request_error", "not_found", "no such operation: %s",
                       path);
    const char *id = path + 7, *slash = strrchr(id, '/');
    size_t n = slash ? (size_t)(slash - id) : 0;
    size_t i = 0;
    for (; slash && i < sizeof ops / sizeof ops[0]; i++)
        if (strcmp(slash, ops[i].suffix) == 0) break;
    if (n == 0 || slash == NULL || i == sizeof ops / sizeof ops[0])
        return err_set(err, 404, "invalid_request_error", "not_found", "no such operation: %s",
                       path);
    char *out = arena_alloc(a, n + 1);
    if (out == NULL) return err_oom(err);
    size_t w = 0;
    for (size_t r = 0; r < n; r++) {
        if (id[r] != '%') {
            out[w++] = id[r];
            continue;
        }
        int hi = r + 2 < n ? hexval(id[r + 1]) : -1, lo = r + 2 < n ? hexval(id[r + 2]) : -1;
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
            return invalid(err, "modelId has a bad percent escape");
        out[w++] = (char)(hi << 4 | lo);
        r += 2;
    }
    out[w] = '\0';
    if (strncmp(out, "arn:", 4) == 0)
        return invalid(err, "model ARNs are not supported: use the stratus model group name "
                            "as the modelId");
    *op = ops[i].op;
    *model_id = out;
    return 0;
}

/* ---- JSON text out -------------------------------------------------------------------- */

/* A JSON text being written: in an arena (the request body the model borrows) or malloc'd
 * (answers, frame payloads). Appends do not fail one by one: running out of memory sets
 * `oom`, which the writer checks once at the end. */
struct text {
    char *p;
    size_t len, cap;
    struct arena *arena; /* NULL: p is malloc'd, the caller frees it */
    bool oom;
};

/* Room for n more bytes and a NUL. */
static bool room(struct text *t, size_t n)
{
    if (t->len + n < t->cap) return true;
    if (t->oom) return false;
    size_t cap = t->cap ? t->cap : 256;
    while (cap <= t->len + n) {
        if (cap > SIZE_MAX / 4) {
            t->oom = true;
            return false;
        }
        cap *= 2;
    }
    char *p;
    if (t->arena) {
        if ((p = arena_alloc(t->arena, cap)) != NULL && t->len) memcpy(p, t->p, t->len);
    } else {
        p = realloc(t->p, cap);
    }
    if (p == NULL) {
        t->oom = true;
        return false;
    }
    t->p = p;
    t->cap = cap;
    return true;
}

static void put(struct text *t, const char *s, size_t n)
{
    if (!room(t, n)) return;
    memcpy(t->p + t->len, s, n);
    t->len += n;
}

/* A string literal (its length known at compile time); put_s for any other string. */
#define PUT(t, lit) put(t, "" lit, sizeof(lit) - 1)

static void put_s(struct text *t, const char *s)
{
    put(t, s, strlen(s));
}

static void put_int(struct text *t, long long v)
{
    char b[24], *e = b + sizeof b, *p = e;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do *--p = (char)('0' + u % 10);
    while ((u /= 10) != 0);
    if (v < 0) *--p = '-';
    put(t, p, (size_t)(e - p));
}

/* Any bytes as the contents of a JSON string (json_text: invalid UTF-8 becomes U+FFFD). */
static void put_escaped(struct text *t, const char *s, size_t n)
{
    size_t need = json_escape(NULL, 0, s, n);
    if (!room(t, need)) return;
    json_escape(t->p + t->len, need + 1, s, n);
    t->len += need;
}

/* The raw text of token i: a string's escaped contents (no quotes), any other value whole. */
static void put_raw(struct text *t, const struct json_scan *s, int i)
{
    put(t, s->js + s->tok[i].start, (size_t)(s->tok[i].end - s->tok[i].start));
}

/* String token i with its quotes, exactly as the client wrote it. */
static void put_str(struct text *t, const struct json_scan *s, int i)
{
    put(t, s->js + s->tok[i].start - 1, (size_t)(s->tok[i].end - s->tok[i].start) + 2);
}

static size_t raw_len(const struct json_scan *s, int i)
{
    return (size_t)(s->tok[i].end - s->tok[i].start);
}

/* The JSON text of value i (checked JSON) as the contents of a JSON string, compact as
 * json_dumps(JSON_COMPACT) writes it: whitespace between tokens dropped, every quote and
 * backslash escaped once more. The strings inside keep their own escapes. */
static void put_as_string(struct text *t, const struct json_scan *s, int i)
{
    bool str = s->tok[i].type == JSMN_STRING;
    const char *p = s->js + s->tok[i].start - str, *end = s->js + s->tok[i].end + str;
    bool in = false;
    while (p < end) {
        const char *run = p;
        if (in)
            while (run < end && *run != '"' && *run != '\\') run++;
        else
            while (run < end && *run != '"' && *run != ' ' && *run != '\t' && *run != '\n' &&
                   *run != '\r')
                run++;
        put(t, p, (size_t)(run - p));
        if ((p = run) == end) break;
        if (*p == '"') {
            PUT(t, "\\\"");
            in = !in;
            p++;
        } else if (*p == '\\') { /* in a string: the escape and the character it escapes */
            PUT(t, "\\\\");
            if (p[1] == '"' || p[1] == '\\') PUT(t, "\\");
            put(t, p + 1, 1);
            p += 2;
        } else {
            p++; /* whitespace between tokens */
        }
    }
}

/* ---- requests: Bedrock → OpenAI ----------------------------------------------------- */

/* The same bounds the request model puts on an OpenAI body (openai/request.h). */
static const struct json_scan_limits body_limits = {
    .max_tokens = OPENAI_MAX_JSON_VALUES,
    .max_depth = OPENAI_MAX_DEPTH,
    .max_members = OPENAI_MAX_OBJECT_MEMBERS,
};

/* What a field must be; the names are what the client's SDK calls them. */
enum want { W_OBJECT, W_LIST, W_STRING, W_INTEGER, W_NUMBER };

static bool is(const struct json_scan *s, int v, enum want w)
{
    switch (w) {
    case W_OBJECT:
        return json_scan_is_object(s, v);
    case W_LIST:
        return json_scan_is_array(s, v);
    case W_STRING:
        return json_scan_is_string(s, v);
    case W_INTEGER:
        return json_scan_is_integer(s, v);
    case W_NUMBER:
        return json_scan_is_number(s, v);
    }
    return false;
}

static int field(const struct json_scan *s, int v, enum want w, bool required, int *out,
                 struct err *err, const char *fmt, ...) __attribute__((format(printf, 7, 8)));

/* Member value v (-1 when absent) if it has the wanted type, else -1 in *out; JSON null is
 * absent. Absent is fine unless `required`. fmt names the field, formatted only for the
 * error. @return 0, or -1 with err. */
static int field(const struct json_scan *s, int v, enum want w, bool required, int *out,
                 struct err *err, const char *fmt, ...)
{
    static const char *const names[] = {"an object", "a list", "a string", "an integer",
                                        "a number"};
    *out = -1;
    bool absent = v < 0 || json_scan_is_null(s, v);
    if ((absent && !required) || (!absent && is(s, v, w))) {
        if (!absent) *out = v;
        return 0;
    }
    char what[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (absent) return invalid(err, "%s is required", what);
    return invalid(err, "%s must be %s", what, names[w]);
}

/* Needs `s` and `err` in scope; returns -1 from the caller on a refusal. */
#define FIELD(v, w, req, out, ...)                                                                 \
    do {                                                                                           \
        if (field(s, v, w, req, out, err, __VA_ARGS__) != 0) return -1;                            \
    } while (0)

#define MEMBERS(obj, keys, out) json_scan_members(s, obj, keys, sizeof(keys) / sizeof(keys[0]), out)

/* One translation: the client's body (scanned) and the OpenAI body being written. */
struct tr {
    const struct json_scan *s;
    struct arena *arena;
    struct text o;
    int messages;    /* messages written so far */
    struct blk *blk; /* one message's content blocks, reused; arena */
    size_t blk_cap;
};

/* Whether string token i, unescaped, is `lit` (the raw text nearly always settles it). */
static bool str_is(struct tr *t, int i, const char *lit)
{
    const struct json_scan *s = t->s;
    if (json_scan_string_is(s, i, lit)) return true;
    if (!json_scan_is_string(s, i) || memchr(s->js + s->tok[i].start, '\\', raw_len(s, i)) == NULL)
        return false;
    char *u = json_scan_string_dup(s, i, t->arena);
    return u && strcmp(u, lit) == 0;
}

/* A content block checked and remembered, written once its whole message is known. */
enum blk_kind { B_SKIP, B_TEXT, B_IMAGE, B_TOOL_USE, B_TOOL_RESULT };
struct blk {
    enum blk_kind kind;
    int a, b, c; /* TEXT: a text. IMAGE: a format (c: Converse, "image/" goes first) or
                  * media type, b base64 data. TOOL_USE: a id, b name, c input (-1: none).
                  * TOOL_RESULT: a id, b content (-1: none), c 1 for Anthropic's shape. */
};

static struct blk *blocks(struct tr *t, size_t n)
{
    if (t->blk == NULL || n > t->blk_cap) {
        size_t cap = n < 16 ? 16 : n;
        struct blk *b = arena_calloc(t->arena, cap, sizeof *b);
        if (b == NULL) return NULL;
        t->blk = b;
        t->blk_cap = cap;
    }
    return t->blk;
}

/* Converse: content block j of message i. */
static int converse_block(struct tr *t, int b, size_t i, size_t j, bool user, struct blk *out,
                          struct err *err)
{
    static const char *const keys[] = {"text", "image", "toolUse", "toolResult", "cachePoint"};
    const struct json_scan *s = t->s;
    int m[5];
    if (!json_scan_is_object(s, b))
        return invalid(err, "messages[%zu].content[%zu] must be an object", i, j);
    MEMBERS(b, keys, m);
    if (m[0] >= 0) {
        out->kind = B_TEXT;
        FIELD(m[0], W_STRING, true, &out->a, "messages[%zu].content[%zu].text", i, j);
        return 0;
    }
    if (m[1] >= 0) {
        static const char *const ik[] = {"format", "source"};
        int img, src, im[2];
        FIELD(m[1], W_OBJECT, true, &img, "messages[%zu].content[%zu].image", i, j);
        MEMBERS(img, ik, im);
        FIELD(im[0], W_STRING, true, &out->a, "messages[%zu].content[%zu].image.format", i, j);
        FIELD(im[1], W_OBJECT, true, &src, "messages[%zu].content[%zu].image.source", i, j);
        FIELD(json_scan_get(s, src, "bytes"), W_STRING, true, &out->b,
              "messages[%zu].content[%zu].image.source.bytes (base64)", i, j);
        out->kind = B_IMAGE;
        out->c = 1;
        return 0;
    }
    if (m[2] >= 0) {
        static const char *const uk[] = {"toolUseId", "name", "input"};
        int tu, um[3];
        if (user)
            return invalid(err,
                           "messages[%zu].content[%zu].toolUse: only an assistant "
                           "message may use a tool",
                           i, j);
        FIELD(m[2], W_OBJECT, true, &tu, "messages[%zu].content[%zu].toolUse", i, j);
        MEMBERS(tu, uk, um);
        FIELD(um[0], W_STRING, true, &out->a, "messages[%zu].content[%zu].toolUse.toolUseId", i, j);
        FIELD(um[1], W_STRING, true, &out->b, "messages[%zu].content[%zu].toolUse.name", i, j);
        out->kind = B_TOOL_USE;
        out->c = um[2];
        return 0;
    }
    if (m[3] >= 0) {
        static const char *const rk[] = {"toolUseId", "content"};
        int tr, rm[2];
        if (!user)
            return invalid(err,
                           "messages[%zu].content[%zu].toolResult: only a user "
                           "message may carry a tool result",
                           i, j);
        FIELD(m[3], W_OBJECT, true, &tr, "messages[%zu].content[%zu].toolResult", i, j);
        MEMBERS(tr, rk, rm);
        FIELD(rm[0], W_STRING, true, &out->a, "messages[%zu].content[%zu].toolResult.toolUseId", i,
              j);
        FIELD(rm[1], W_LIST, true, &out->b, "messages[%zu].content[%zu].toolResult.content", i, j);
        int c = out->b + 1;
        for (int k = 0; k < json_scan_size(s, out->b); k++, c = json_scan_skip(s, c)) {
            if (!json_scan_is_object(s, c))
                return invalid(err,
                               "messages[%zu].content[%zu].toolResult.content[%d] must "
                               "be an object",
                               i, j, k);
            if (json_scan_get(s, c, "json") < 0 &&
                !json_scan_is_string(s, json_scan_get(s, c, "text")))
                return invalid(err,
                               "messages[%zu].content[%zu].toolResult.content[%d] "
                               "must be {\"text\": string} or {\"json\": …}",
                               i, j, k);
        }
        out->kind = B_TOOL_RESULT;
        out->c = 0;
        return 0;
    }
    if (m[4] >= 0) { /* a hint to Bedrock's cache: nothing to do */
        out->kind = B_SKIP;
        return 0;
    }
    const char *kind = json_scan_size(s, b) > 0 ? json_scan_string_dup(s, b + 1, t->arena) : NULL;
    return invalid(err,
                   "messages[%zu].content[%zu]: content block '%s' is not supported "
                   "(text, image, toolUse, toolResult are)",
                   i, j, kind ? kind : "{}");
}

/* InvokeModel (Anthropic on Bedrock): content block j of message i. */
static int anthropic_block(struct tr *t, int b, size_t i, size_t j, bool user, struct blk *out,
                           struct err *err)
{
    static const char *const keys[] = {"type", "text",        "source",  "id",
                                       "name", "tool_use_id", "content", "input"};
    const struct json_scan *s = t->s;
    int m[8], type;
    if (!json_scan_is_object(s, b))
        return invalid(err, "messages[%zu].content[%zu] must be an object", i, j);
    MEMBERS(b, keys, m);
    FIELD(m[0], W_STRING, true, &type, "messages[%zu].content[%zu].type", i, j);
    if (str_is(t, type, "text")) {
        out->kind = B_TEXT;
        FIELD(m[1], W_STRING, true, &out->a, "messages[%zu].content[%zu].text", i, j);
        return 0;
    }
    if (str_is(t, type, "image")) {
        static const char *const sk[] = {"media_type", "data"};
        int src, sm[2];
        FIELD(m[2], W_OBJECT, true, &src, "messages[%zu].content[%zu].source", i, j);
        MEMBERS(src, sk, sm);
        FIELD(sm[0], W_STRING, true, &out->a, "messages[%zu].content[%zu].source.media_type", i, j);
        FIELD(sm[1], W_STRING, true, &out->b, "messages[%zu].content[%zu].source.data", i, j);
        out->kind = B_IMAGE;
        out->c = 0;
        return 0;
    }
    if (str_is(t, type, "tool_use")) {
        if (user)
            return invalid(err,
                           "messages[%zu].content[%zu]: only an assistant message "
                           "may use a tool",
                           i, j);
        FIELD(m[3], W_STRING, true, &out->a, "messages[%zu].content[%zu].id", i, j);
        FIELD(m[4], W_STRING, true, &out->b, "messages[%zu].content[%zu].name", i, j);
        out->kind = B_TOOL_USE;
        out->c = m[7];
        return 0;
    }
    if (str_is(t, type, "tool_result")) {
        int content = m[6];
        if (!user)
            return invalid(err,
                           "messages[%zu].content[%zu]: only a user message may "
                           "carry a tool result",
                           i, j);
        FIELD(m[5], W_STRING, true, &out->a, "messages[%zu].content[%zu].tool_use_id", i, j);
        if (json_scan_is_array(s, content)) {
            int c = content + 1;
            for (int k = 0; k < json_scan_size(s, content); k++, c = json_scan_skip(s, c))
                if (!json_scan_is_string(s, json_scan_get(s, c, "text")))
                    return invalid(err,
                                   "messages[%zu].content[%zu].content[%d].text must be "
                                   "a string",
                                   i, j, k);
        } else if (content >= 0 && !json_scan_is_string(s, content)) {
            return invalid(err, "messages[%zu].content[%zu].content must be a string or a list", i,
                           j);
        }
        out->kind = B_TOOL_RESULT;
        out->b = content;
        out->c = 1;
        return 0;
    }
    char *name = json_scan_string_dup(s, type, t->arena);
    return invalid(err,
                   "messages[%zu].content[%zu].type '%s' is not supported (text, image, "
                   "tool_use, tool_result are)",
                   i, j, name ? name : "?");
}

/* The separator before the next message of the messages list. */
static void next_message(struct tr *t)
{
    if (t->messages++) PUT(&t->o, ",");
}

/* A tool result's text: Converse joins its text and json parts, Anthropic its text parts,
 * one per line; a json part is its compact JSON text. */
static void put_result_text(struct tr *t, const struct blk *b)
{
    const struct json_scan *s = t->s;
    if (b->b < 0) return;
    if (json_scan_is_string(s, b->b)) {
        put_raw(&t->o, s, b->b);
        return;
    }
    int c = b->b + 1;
    for (int k = 0; k < json_scan_size(s, b->b); k++, c = json_scan_skip(s, c)) {
        if (k) PUT(&t->o, "\\n");
        int js = b->c ? -1 : json_scan_get(s, c, "json");
        if (js >= 0)
            put_as_string(&t->o, s, js);
        else
            put_raw(&t->o, s, json_scan_get(s, c, "text"));
    }
}

/* A message's checked blocks as OpenAI messages: its tool results first (role tool, which
 * OpenAI wants before the user's text), then the message: one string when it is only text
 * (which every OpenAI-speaking server reads), parts when it has an image, null content when
 * an assistant only calls tools; and its tool calls. */
static void put_message(struct tr *t, const struct blk *bl, size_t n, bool user)
{
    const struct json_scan *s = t->s;
    struct text *o = &t->o;
    size_t texts = 0, images = 0, calls = 0;
    for (size_t k = 0; k < n; k++) {
        texts += bl[k].kind == B_TEXT;
        images += bl[k].kind == B_IMAGE;
        calls += bl[k].kind == B_TOOL_USE;
        if (bl[k].kind != B_TOOL_RESULT) continue;
        next_message(t);
        PUT(o, "{\"role\":\"tool\",\"tool_call_id\":");
        put_str(o, s, bl[k].a);
        PUT(o, ",\"content\":\"");
        put_result_text(t, &bl[k]);
        PUT(o, "\"}");
    }
    if (texts + images == 0 && (user || calls == 0)) return; /* only tool results */
    next_message(t);
    put_s(o, user ? "{\"role\":\"user\",\"content\":" : "{\"role\":\"assistant\",\"content\":");
    if (images) {
        PUT(o, "[");
        bool first = true;
        for (size_t k = 0; k < n; k++) {
            if (bl[k].kind != B_TEXT && bl[k].kind != B_IMAGE) continue;
            if (!first) PUT(o, ",");
            first = false;
            if (bl[k].kind == B_TEXT) {
                PUT(o, "{\"type\":\"text\",\"text\":");
                put_str(o, s, bl[k].a);
                PUT(o, "}");
                continue;
            }
            PUT(o, "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:");
            if (bl[k].c) PUT(o, "image/");
            put_raw(o, s, bl[k].a);
            PUT(o, ";base64,");
            put_raw(o, s, bl[k].b);
            PUT(o, "\"}}");
        }
        PUT(o, "]");
    } else if (texts) {
        PUT(o, "\"");
        for (size_t k = 0; k < n; k++)
            if (bl[k].kind == B_TEXT) put_raw(o, s, bl[k].a);
        PUT(o, "\"");
    } else {
        PUT(o, "null");
    }
    if (calls) {
        PUT(o, ",\"tool_calls\":[");
        bool first = true;
        for (size_t k = 0; k < n; k++) {
            if (bl[k].kind != B_TOOL_USE) continue;
            if (!first) PUT(o, ",");
            first = false;
            PUT(o, "{\"id\":");
            put_str(o, s, bl[k].a);
            PUT(o, ",\"type\":\"function\",\"function\":{\"name\":");
            put_str(o, s, bl[k].b);
            PUT(o, ",\"arguments\":\"");
            if (bl[k].c >= 0)
                put_as_string(o, s, bl[k].c);
            else
                PUT(o, "{}");
            PUT(o, "\"}}");
        }
        PUT(o, "]");
    }
    PUT(o, "}");
}

/* The messages list (checked a list) into OpenAI messages. */
static int put_messages(struct tr *t, int list, bool converse, struct err *err)
{
    static const char *const keys[] = {"role", "content"};
    const struct json_scan *s = t->s;
    if (json_scan_size(s, list) == 0) return invalid(err, "messages must not be empty");
    int m = list + 1;
    for (size_t i = 0; i < (size_t)json_scan_size(s, list); i++, m = json_scan_skip(s, m)) {
        int mm[2], role, content;
        if (!json_scan_is_object(s, m)) return invalid(err, "messages[%zu] must be an object", i);
        MEMBERS(m, keys, mm);
        FIELD(mm[0], W_STRING, true, &role, "messages[%zu].role", i);
        bool user = str_is(t, role, "user");
        if (!user && !str_is(t, role, "assistant"))
            return invalid(err, "messages[%zu].role must be 'user' or 'assistant'", i);
        size_t n;
        struct blk *bl;
        if (converse) {
            FIELD(mm[1], W_LIST, true, &content, "messages[%zu].content", i);
        } else if (json_scan_is_string(s, (content = mm[1]))) {
            if ((bl = blocks(t, 1)) == NULL) return err_oom(err);
            bl[0] = (struct blk){.kind = B_TEXT, .a = content};
            put_message(t, bl, 1, user);
            continue;
        } else if (!json_scan_is_array(s, content)) {
            return invalid(err, "messages[%zu].content must be a string or a list of blocks", i);
        }
        n = (size_t)json_scan_size(s, content);
        if ((bl = blocks(t, n)) == NULL) return err_oom(err);
        int b = content + 1;
        for (size_t j = 0; j < n; j++, b = json_scan_skip(s, b)) {
            bl[j] = (struct blk){.kind = B_SKIP, .a = -1, .b = -1, .c = -1};
            if ((converse ? converse_block(t, b, i, j, user, &bl[j], err)
                          : anthropic_block(t, b, i, j, user, &bl[j], err)) != 0)
                return -1;
        }
        put_message(t, bl, n, user);
    }
    return 0;
}

/* A system message of the text blocks in list `sys`, one per line: Converse's
 * [{text}|{cachePoint}] or Anthropic's [{type: text, text}]. */
static int put_system_blocks(struct tr *t, int sys, bool converse, struct err *err)
{
    const struct json_scan *s = t->s;
    int b = sys + 1, joined = 0;
    for (int i = 0; i < json_scan_size(s, sys); i++, b = json_scan_skip(s, b)) {
        if (converse && !json_scan_is_object(s, b))
            return invalid(err, "system[%d] must be an object", i);
        if (converse && json_scan_get(s, b, "cachePoint") >= 0) continue;
        int text = json_scan_get(s, b, "text");
        if (!json_scan_is_string(s, text))
            return invalid(err, "system[%d].text must be a string", i);
        if (joined++ == 0) {
            next_message(t);
            PUT(&t->o, "{\"role\":\"system\",\"content\":\"");
        } else {
            PUT(&t->o, "\\n");
        }
        put_raw(&t->o, s, text);
    }
    if (joined) PUT(&t->o, "\"}");
    return 0;
}

/* A list of strings (stop sequences) checked and, when not empty, written as "stop". */
static int put_stop(struct tr *t, int list, const char *name, struct err *err)
{
    const struct json_scan *s = t->s;
    int e = list + 1;
    for (int k = 0; k < json_scan_size(s, list); k++, e = json_scan_skip(s, e))
        if (!json_scan_is_string(s, e)) return invalid(err, "%s[%d] must be a string", name, k);
    if (json_scan_size(s, list) == 0) return 0;
    PUT(&t->o, ",\"stop\":");
    put_raw(&t->o, s, list);
    return 0;
}

/* An optional number or integer member copied under its OpenAI name. */
static void put_option(struct tr *t, const char *key, int v)
{
    if (v < 0) return;
    PUT(&t->o, ",\"");
    put(&t->o, key, strlen(key));
    PUT(&t->o, "\":");
    put_raw(&t->o, t->s, v);
}

/* One OpenAI function tool. */
static void put_tool(struct tr *t, int name, int desc, int schema)
{
    PUT(&t->o, "{\"type\":\"function\",\"function\":{\"name\":");
    put_str(&t->o, t->s, name);
    if (desc >= 0) {
        PUT(&t->o, ",\"description\":");
        put_str(&t->o, t->s, desc);
    }
    PUT(&t->o, ",\"parameters\":");
    put_raw(&t->o, t->s, schema);
    PUT(&t->o, "}}");
}

static void put_named_choice(struct tr *t, int name)
{
    PUT(&t->o, ",\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":");
    put_str(&t->o, t->s, name);
    PUT(&t->o, "}}");
}

/* Converse: system and messages, then inferenceConfig and toolConfig. */
static int converse_request(struct tr *t, struct err *err)
{
    static const char *const keys[] = {"system", "messages", "inferenceConfig", "toolConfig"};
    const struct json_scan *s = t->s;
    int m[4], sys, list, cfg, tc;
    MEMBERS(0, keys, m);
    FIELD(m[0], W_LIST, false, &sys, "system");
    if (sys >= 0 && put_system_blocks(t, sys, true, err) != 0) return -1;
    FIELD(m[1], W_LIST, true, &list, "messages");
    if (put_messages(t, list, true, err) != 0) return -1;
    PUT(&t->o, "]");

    FIELD(m[2], W_OBJECT, false, &cfg, "inferenceConfig");
    if (cfg >= 0) {
        static const char *const ck[] = {"maxTokens", "temperature", "topP", "stopSequences"};
        int c[4], v;
        MEMBERS(cfg, ck, c);
        FIELD(c[0], W_INTEGER, false, &v, "inferenceConfig.maxTokens");
        put_option(t, "max_tokens", v);
        FIELD(c[1], W_NUMBER, false, &v, "inferenceConfig.temperature");
        put_option(t, "temperature", v);
        FIELD(c[2], W_NUMBER, false, &v, "inferenceConfig.topP");
        put_option(t, "top_p", v);
        FIELD(c[3], W_LIST, false, &v, "inferenceConfig.stopSequences");
        if (v >= 0 && put_stop(t, v, "inferenceConfig.stopSequences", err) != 0) return -1;
    }
    FIELD(m[3], W_OBJECT, false, &tc, "toolConfig");
    if (tc < 0) return 0;
    static const char *const tk[] = {"tools", "toolChoice"};
    int tm[2], tools, choice;
    MEMBERS(tc, tk, tm);
    FIELD(tm[0], W_LIST, true, &tools, "toolConfig.tools");
    PUT(&t->o, ",\"tools\":[");
    int e = tools + 1, written = 0;
    for (int i = 0; i < json_scan_size(s, tools); i++, e = json_scan_skip(s, e)) {
        static const char *const sk[] = {"name", "description", "inputSchema"};
        int spec, sm[3], name, desc, schema, js;
        if (!json_scan_is_object(s, e))
            return invalid(err, "toolConfig.tools[%d] must be an object", i);
        if (json_scan_get(s, e, "cachePoint") >= 0) continue;
        FIELD(json_scan_get(s, e, "toolSpec"), W_OBJECT, true, &spec,
              "toolConfig.tools[%d].toolSpec", i);
        MEMBERS(spec, sk, sm);
        FIELD(sm[0], W_STRING, true, &name, "toolConfig.tools[%d].toolSpec.name", i);
        FIELD(sm[1], W_STRING, false, &desc, "toolConfig.tools[%d].toolSpec.description", i);
        FIELD(sm[2], W_OBJECT, true, &schema, "toolConfig.tools[%d].toolSpec.inputSchema", i);
        FIELD(json_scan_get(s, schema, "json"), W_OBJECT, true, &js,
              "toolConfig.tools[%d].toolSpec.inputSchema.json", i);
        if (written++) PUT(&t->o, ",");
        put_tool(t, name, desc, js);
    }
    PUT(&t->o, "]");
    FIELD(tm[1], W_OBJECT, false, &choice, "toolConfig.toolChoice");
    if (choice < 0) return 0;
    static const char *const ck[] = {"auto", "any", "tool"};
    int cm[3];
    MEMBERS(choice, ck, cm);
    if (cm[0] >= 0) {
        PUT(&t->o, ",\"tool_choice\":\"auto\"");
    } else if (cm[1] >= 0) {
        PUT(&t->o, ",\"tool_choice\":\"required\"");
    } else if (cm[2] >= 0) {
        int name;
        if (!json_scan_is_object(s, cm[2]))
            return invalid(err, "toolConfig.toolChoice.tool must be an object");
        FIELD(json_scan_get(s, cm[2], "name"), W_STRING, true, &name,
              "toolConfig.toolChoice.tool.name");
        put_named_choice(t, name);
    } else {
        return invalid(err, "toolConfig.toolChoice must be one of auto, any, tool");
    }
    return 0;
}

/* InvokeModel: an Anthropic Messages body as Bedrock takes it (anthropic_version in the
 * body, the model in the path). Its options are checked first, written last. */
static int anthropic_request(struct tr *t, struct err *err)
{
    static const char *const keys[] = {
        "anthropic_version", "max_tokens", "temperature", "top_p", "top_k",
        "stop_sequences",    "system",     "messages",    "tools", "tool_choice"};
    const struct json_scan *s = t->s;
    int m[10], v, max_tokens, temperature, top_p, stop, list, tools, choice;
    MEMBERS(0, keys, m);
    FIELD(m[0], W_STRING, true, &v, "anthropic_version");
    FIELD(m[1], W_INTEGER, true, &max_tokens, "max_tokens");
    FIELD(m[2], W_NUMBER, false, &temperature, "temperature");
    FIELD(m[3], W_NUMBER, false, &top_p, "top_p");
    FIELD(m[4], W_INTEGER, false, &v, "top_k"); /* checked; OpenAI has no top_k */
    FIELD(m[5], W_LIST, false, &stop, "stop_sequences");
    int e = stop + 1;
    for (int k = 0; stop >= 0 && k < json_scan_size(s, stop); k++, e = json_scan_skip(s, e))
        if (!json_scan_is_string(s, e))
            return invalid(err, "stop_sequences[%d] must be a string", k);

    int sys = m[6];
    if (json_scan_is_string(s, sys)) {
        next_message(t);
        PUT(&t->o, "{\"role\":\"system\",\"content\":");
        put_str(&t->o, s, sys);
        PUT(&t->o, "}");
    } else if (json_scan_is_array(s, sys)) {
        if (put_system_blocks(t, sys, false, err) != 0) return -1;
    } else if (sys >= 0 && !json_scan_is_null(s, sys)) {
        return invalid(err, "system must be a string or a list of text blocks");
    }
    FIELD(m[7], W_LIST, true, &list, "messages");
    if (put_messages(t, list, false, err) != 0) return -1;
    PUT(&t->o, "]");

    FIELD(m[8], W_LIST, false, &tools, "tools");
    if (tools >= 0 && json_scan_size(s, tools) > 0) {
        static const char *const tk[] = {"name", "description", "input_schema"};
        PUT(&t->o, ",\"tools\":[");
        e = tools + 1;
        for (int i = 0; i < json_scan_size(s, tools); i++, e = json_scan_skip(s, e)) {
            int tm[3], name, desc, schema;
            if (!json_scan_is_object(s, e)) return invalid(err, "tools[%d] must be an object", i);
            MEMBERS(e, tk, tm);
            FIELD(tm[0], W_STRING, true, &name, "tools[%d].name", i);
            FIELD(tm[1], W_STRING, false, &desc, "tools[%d].description", i);
            FIELD(tm[2], W_OBJECT, true, &schema, "tools[%d].input_schema", i);
            if (i) PUT(&t->o, ",");
            put_tool(t, name, desc, schema);
        }
        PUT(&t->o, "]");
    }
    FIELD(m[9], W_OBJECT, false, &choice, "tool_choice");
    if (choice >= 0) {
        int type;
        FIELD(json_scan_get(s, choice, "type"), W_STRING, true, &type, "tool_choice.type");
        if (str_is(t, type, "auto")) {
            PUT(&t->o, ",\"tool_choice\":\"auto\"");
        } else if (str_is(t, type, "none")) {
            PUT(&t->o, ",\"tool_choice\":\"none\"");
        } else if (str_is(t, type, "any")) {
            PUT(&t->o, ",\"tool_choice\":\"required\"");
        } else if (str_is(t, type, "tool")) {
            int name;
            FIELD(json_scan_get(s, choice, "name"), W_STRING, true, &name, "tool_choice.name");
            put_named_choice(t, name);
        } else {
            return invalid(err, "tool_choice.type must be auto, any, tool or none");
        }
    }
    put_option(t, "max_tokens", max_tokens);
    put_option(t, "temperature", temperature);
    put_option(t, "top_p", top_p);
    if (stop >= 0 && put_stop(t, stop, "stop_sequences", err) != 0) return -1;
    return 0;
}

/* Why a body is not JSON we read, as jansson words it (error paths only): the scan is
 * stricter than nothing and exactly as strict as jansson, so jansson names the fault. */
static int not_json(const char *body, size_t len, const struct json_scan_fault *f, struct err *err)
{
    switch (f->status) {
    case JSON_SCAN_OOM:
        return err_oom(err);
    case JSON_SCAN_TOO_MANY_TOKENS:
    case JSON_SCAN_TOO_DEEP:
    case JSON_SCAN_TOO_MANY_MEMBERS:
        return invalid(err,
                       "the body is beyond the gateway's limits (%d JSON values, %d levels of "
                       "nesting, %d keys in an object)",
                       OPENAI_MAX_JSON_VALUES, OPENAI_MAX_DEPTH, OPENAI_MAX_OBJECT_MEMBERS);
    default:
        break;
    }
    json_error_t je;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (j == NULL)
        return invalid(err, "the body is not valid JSON: %s (at byte %d)", je.text, je.position);
    json_decref(j);
    return invalid(err, "the body is not valid JSON: %s (at byte %zu)",
                   f->why && f->why[0] ? f->why : "refused", f->offset);
}

int bedrock_translate_request(enum bedrock_op op, const char *model_id, const char *body,
                              size_t len, struct arena *a, char **out, size_t *out_len,
                              struct err *err)
{
    struct json_scan s;
    struct json_scan_fault f;
    if (json_scan_parse_checked(&s, body, len, a, &body_limits, &f) != 0)
        return not_json(body, len, &f, err);
    if (!json_scan_is_object(&s, 0)) return invalid(err, "the body must be a JSON object");
    /* Strings are copied as the client escaped them, so the body rarely grows by much. */
    struct tr t = {.s = &s, .arena = a, .o = {.arena = a}};
    if (!room(&t.o, len + 256)) return err_oom(err);
    PUT(&t.o, "{\"model\":\"");
    put_escaped(&t.o, model_id, strlen(model_id));
    PUT(&t.o, "\",\"messages\":[");
    bool converse = op == BEDROCK_CONVERSE || op == BEDROCK_CONVERSE_STREAM;
    if ((converse ? converse_request(&t, err) : anthropic_request(&t, err)) != 0) return -1;
    if (op == BEDROCK_CONVERSE_STREAM || op == BEDROCK_INVOKE_STREAM) PUT(&t.o, ",\"stream\":true");
    PUT(&t.o, "}");
    if (t.o.oom) return err_oom(err);
    t.o.p[t.o.len] = '\0';
    *out = t.o.p;
    *out_len = t.o.len;
    return 0;
}

/* ---- answers: OpenAI → Bedrock ------------------------------------------------------ */

/* Answers come from our own providers, but their strings are copied verbatim, so they get
 * the same strict scan as a client's body: whatever we copy is valid JSON text. */
static int scan_answer(struct json_scan *s, const char *json, size_t len, struct arena *a)
{
    struct json_scan_fault f;
    return json_scan_parse_checked(s, json, len, a, &body_limits, &f);
}

static const char *stop_reason(const char *finish)
{
    if (finish == NULL) return "end_turn";
    if (strcmp(finish, "length") == 0) return "max_tokens";
    if (strcmp(finish, "tool_calls") == 0 || strcmp(finish, "function_call") == 0)
        return "tool_use";
    if (strcmp(finish, "content_filter") == 0) return "content_filtered";
    return "end_turn";
}

/* Bedrock's stop reason for finish_reason token i (-1, or not a string: end_turn). */
static const char *stop_reason_of(const struct json_scan *s, int i, struct arena *a)
{
    return stop_reason(json_scan_is_string(s, i) ? json_scan_string_dup(s, i, a) : NULL);
}

/* A string member's raw text, or `fallback` (raw JSON string contents) when it is not one. */
static void put_str_or(struct text *t, const struct json_scan *s, int i, const char *fallback)
{
    PUT(t, "\"");
    if (json_scan_is_string(s, i))
        put_raw(t, s, i);
    else
        put(t, fallback, strlen(fallback));
    PUT(t, "\"");
}

static long long integer_or_zero(const struct json_scan *s, int i)
{
    long long v = 0;
    return json_scan_integer(s, i, &v) ? v : 0;
}

/* A tool call's arguments text (token i) as an object: the model's malformed arguments are
 * {}. The text is unescaped once and, when it is a JSON object, copied as it is. */
static void put_tool_input(struct text *t, const struct json_scan *s, int i, struct arena *a)
{
    char *args = json_scan_is_string(s, i) ? json_scan_string_dup(s, i, a) : NULL;
    struct json_scan in;
    if (args && scan_answer(&in, args, strlen(args), a) == 0 && json_scan_is_object(&in, 0))
        put(t, args, strlen(args));
    else
        PUT(t, "{}");
}

char *bedrock_translate_answer(enum bedrock_op op, const char *model_id, const char *json,
                               size_t len, long latency_ms)
{
    static const char *const root_keys[] = {"id", "choices", "usage"};
    static const char *const choice_keys[] = {"message", "finish_reason"};
    static const char *const msg_keys[] = {"content", "tool_calls"};
    static const char *const call_keys[] = {"id", "function"};
    static const char *const fn_keys[] = {"name", "arguments"};
    static const char *const usage_keys[] = {"prompt_tokens", "completion_tokens"};
    struct arena *a = arena_new(4096);
    struct json_scan sc, *s = &sc;
    struct text o = {0};
    char *res = NULL;
    int r[3], c[2], m[2], u[2];
    if (a == NULL || scan_answer(s, json, len, a) != 0) goto out;
    MEMBERS(0, root_keys, r);
    int choice = json_scan_is_array(s, r[1]) && json_scan_size(s, r[1]) > 0 ? r[1] + 1 : -1;
    MEMBERS(choice, choice_keys, c);
    if (!json_scan_is_object(s, c[0])) goto out;
    MEMBERS(c[0], msg_keys, m);
    MEMBERS(r[2], usage_keys, u);
    int text = json_scan_is_string(s, m[0]) ? m[0] : -1;
    int calls = json_scan_is_array(s, m[1]) ? m[1] : -1;
    int n_calls = calls >= 0 ? json_scan_size(s, calls) : 0;
    long long in = integer_or_zero(s, u[0]), outn = integer_or_zero(s, u[1]);
    const char *stop = stop_reason_of(s, c[1], a);
    bool converse = op == BEDROCK_CONVERSE || op == BEDROCK_CONVERSE_STREAM;
    if (!room(&o, len + 256)) goto out;
    if (converse) {
        PUT(&o, "{\"output\":{\"message\":{\"role\":\"assistant\",\"content\":[");
    } else {
        PUT(&o, "{\"id\":");
        put_str_or(&o, s, r[0], "msg_stratus");
        PUT(&o, ",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"");
        put_escaped(&o, model_id, strlen(model_id));
        PUT(&o, "\",\"content\":[");
    }
    bool first = true;
    if (text >= 0 && (raw_len(s, text) > 0 || n_calls == 0)) {
        put_s(&o, converse ? "{\"text\":" : "{\"type\":\"text\",\"text\":");
        put_str(&o, s, text);
        PUT(&o, "}");
        first = false;
    }
    int call = calls + 1;
    for (int i = 0; i < n_calls; i++, call = json_scan_skip(s, call)) {
        int cm[2], fm[2];
        MEMBERS(call, call_keys, cm);
        MEMBERS(cm[1], fn_keys, fm);
        if (!first) PUT(&o, ",");
        first = false;
        put_s(&o, converse ? "{\"toolUse\":{\"toolUseId\":" : "{\"type\":\"tool_use\",\"id\":");
        put_str_or(&o, s, cm[0], "");
        PUT(&o, ",\"name\":");
        put_str_or(&o, s, fm[0], "");
        PUT(&o, ",\"input\":");
        put_tool_input(&o, s, fm[1], a);
        put_s(&o, converse ? "}}" : "}");
    }
    if (converse) {
        PUT(&o, "]}},\"stopReason\":\"");
        put(&o, stop, strlen(stop));
        PUT(&o, "\",\"usage\":{\"inputTokens\":");
        put_int(&o, in);
        PUT(&o, ",\"outputTokens\":");
        put_int(&o, outn);
        PUT(&o, ",\"totalTokens\":");
        put_int(&o, (long long)((unsigned long long)in + (unsigned long long)outn));
        PUT(&o, "},\"metrics\":{\"latencyMs\":");
        put_int(&o, (int)latency_ms);
        PUT(&o, "}}");
    } else {
        PUT(&o, "],\"stop_reason\":\"");
        put(&o, stop, strlen(stop));
        PUT(&o, "\",\"stop_sequence\":null,\"usage\":{\"input_tokens\":");
        put_int(&o, in);
        PUT(&o, ",\"output_tokens\":");
        put_int(&o, outn);
        PUT(&o, "}}");
    }
    if (o.oom) goto out;
    o.p[o.len] = '\0';
    res = o.p;
    o.p = NULL;
out:
    free(o.p);
    arena_free(a);
    return res;
}

/* ---- streams -------------------------------------------------------------------------- */

/* One chunk's or one ending's frames: the payload being written (json), the base64 of an
 * Anthropic event (b64), and where frames go. Both texts are reused frame after frame. */
struct frames {
    struct evbuffer *out;
    struct text json, b64;
};

static void frames_free(struct frames *f)
{
    free(f->json.p);
    free(f->b64.p);
}

/* One frame of payload p (then emptied): the three headers every event of ours has. The
 * message is encoded straight into the evbuffer's space. @return 1, or -1. */
static int frame(struct evbuffer *out, const char *kind, const char *type, struct text *p)
{
    if (p->oom) return -1;
    bool exception = strcmp(kind, "exception") == 0;
    struct aws_event_header h[3] = {
        {exception ? ":exception-type" : ":event-type", type},
        {":content-type", "application/json"},
        {":message-type", kind},
    };
    const char *payload = p->p ? p->p : "";
    size_t len = p->len;
    p->len = 0;
    size_t need = aws_eventstream_encode(h, 3, payload, len, NULL, 0);
    struct evbuffer_iovec v;
    if (need == 0 || evbuffer_reserve_space(out, (ev_ssize_t)need, &v, 1) != 1 ||
        aws_eventstream_encode(h, 3, payload, len, v.iov_base, v.iov_len) != need)
        return -1;
    v.iov_len = need;
    return evbuffer_commit_space(out, &v, 1) == 0 ? 1 : -1;
}

static bool invoke_stream(const struct bedrock_state *st)
{
    return st->op == BEDROCK_INVOKE_STREAM;
}

/* The event in f->json as this stream sends it: a Converse event of `type`, or (Invoke)
 * an Anthropic stream event, base64 in a `chunk` event. @return 1, or -1. */
static int emit(const struct bedrock_state *st, struct frames *f, const char *type)
{
    if (!invoke_stream(st)) return frame(f->out, "event", type, &f->json);
    if (f->json.oom) return -1;
    size_t n = f->json.len;
    f->json.len = 0;
    f->b64.len = 0;
    PUT(&f->b64, "{\"bytes\":\"");
    if (!room(&f->b64, 4 * ((n + 2) / 3) + 2)) return -1;
    f->b64.len +=
        (size_t)EVP_EncodeBlock((unsigned char *)f->b64.p + f->b64.len,
                                (const unsigned char *)(f->json.p ? f->json.p : ""), (int)n);
    PUT(&f->b64, "\"}");
    return frame(f->out, "event", "chunk", &f->b64);
}

static int close_block(struct bedrock_state *st, struct frames *f)
{
    if (st->block < 0) return 0;
    int idx = st->block;
    st->block = -1;
    if (invoke_stream(st)) {
        PUT(&f->json, "{\"type\":\"content_block_stop\",\"index\":");
    } else {
        PUT(&f->json, "{\"contentBlockIndex\":");
    }
    put_int(&f->json, idx);
    PUT(&f->json, "}");
    return emit(st, f, "contentBlockStop");
}

/* A text delta: `text` is raw JSON string contents (n bytes). */
static int text_delta(struct bedrock_state *st, struct frames *f, const char *text, size_t n)
{
    int k = 0, rc;
    if (st->block >= 0 && st->block_tool) {
        if ((rc = close_block(st, f)) < 0) return -1;
        k += rc;
    }
    if (st->block < 0) {
        st->block = st->blocks++;
        st->block_tool = false;
        /* Converse opens a text block with its first delta; Anthropic announces it. */
        if (invoke_stream(st)) {
            PUT(&f->json, "{\"type\":\"content_block_start\",\"index\":");
            put_int(&f->json, st->block);
            PUT(&f->json, ",\"content_block\":{\"type\":\"text\",\"text\":\"\"}}");
            if (emit(st, f, "contentBlockStart") < 0) return -1;
            k++;
        }
    }
    if (invoke_stream(st)) {
        PUT(&f->json, "{\"type\":\"content_block_delta\",\"index\":");
        put_int(&f->json, st->block);
        PUT(&f->json, ",\"delta\":{\"type\":\"text_delta\",\"text\":\"");
    } else {
        PUT(&f->json, "{\"contentBlockIndex\":");
        put_int(&f->json, st->block);
        PUT(&f->json, ",\"delta\":{\"text\":\"");
    }
    put(&f->json, text, n);
    PUT(&f->json, "\"}}");
    rc = emit(st, f, "contentBlockDelta");
    return rc < 0 ? -1 : k + rc;
}

/* One entry of a delta's tool_calls (token tc). */
static int tool_delta(struct bedrock_state *st, struct frames *f, const struct json_scan *s, int tc)
{
    static const char *const keys[] = {"index", "id", "function"};
    static const char *const fn_keys[] = {"name", "arguments"};
    int k = 0, rc, m[3], fm[2];
    MEMBERS(tc, keys, m);
    MEMBERS(m[2], fn_keys, fm);
    long long index = integer_or_zero(s, m[0]);
    int id = json_scan_is_string(s, m[1]) ? m[1] : -1;
    int args = json_scan_is_string(s, fm[1]) ? fm[1] : -1;
    bool fresh = st->block < 0 || !st->block_tool || (id >= 0 && raw_len(s, id) > 0) ||
                 index != st->tool_index;
    if (fresh) {
        if ((rc = close_block(st, f)) < 0) return -1;
        k += rc;
        st->block = st->blocks++;
        st->block_tool = true;
        st->tool_index = (int)index;
        if (invoke_stream(st)) {
            PUT(&f->json, "{\"type\":\"content_block_start\",\"index\":");
            put_int(&f->json, st->block);
            PUT(&f->json, ",\"content_block\":{\"type\":\"tool_use\",\"id\":");
            put_str_or(&f->json, s, id, "");
            PUT(&f->json, ",\"name\":");
            put_str_or(&f->json, s, fm[0], "");
            PUT(&f->json, ",\"input\":{}}}");
        } else {
            PUT(&f->json, "{\"contentBlockIndex\":");
            put_int(&f->json, st->block);
            PUT(&f->json, ",\"start\":{\"toolUse\":{\"toolUseId\":");
            put_str_or(&f->json, s, id, "");
            PUT(&f->json, ",\"name\":");
            put_str_or(&f->json, s, fm[0], "");
            PUT(&f->json, "}}}");
        }
        if ((rc = emit(st, f, "contentBlockStart")) < 0) return -1;
        k += rc;
    }
    if (args >= 0 && raw_len(s, args) > 0) {
        if (invoke_stream(st)) {
            PUT(&f->json, "{\"type\":\"content_block_delta\",\"index\":");
            put_int(&f->json, st->block);
            PUT(&f->json, ",\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":");
            put_str(&f->json, s, args);
            PUT(&f->json, "}}");
        } else {
            PUT(&f->json, "{\"contentBlockIndex\":");
            put_int(&f->json, st->block);
            PUT(&f->json, ",\"delta\":{\"toolUse\":{\"input\":");
            put_str(&f->json, s, args);
            PUT(&f->json, "}}}");
        }
        if ((rc = emit(st, f, "contentBlockDelta")) < 0) return -1;
        k += rc;
    }
    return k;
}

int bedrock_stream_chunk(struct bedrock_state *st, const char *json, size_t len,
                         struct evbuffer *out)
{
    static const char *const root_keys[] = {"id", "choices"};
    static const char *const choice_keys[] = {"delta", "finish_reason"};
    static const char *const delta_keys[] = {"content", "tool_calls"};
    struct arena *a = arena_new(2048);
    struct json_scan sc, *s = &sc;
    struct frames f = {.out = out};
    int n = 0, rc = -1, r[2], c[2], d[2];
    if (a == NULL || scan_answer(s, json, len, a) != 0) goto out;
    MEMBERS(0, root_keys, r);
    if (!st->message_started) {
        st->message_started = true;
        if (invoke_stream(st)) {
            PUT(&f.json, "{\"type\":\"message_start\",\"message\":{\"id\":");
            put_str_or(&f.json, s, r[0], "msg_stratus");
            PUT(&f.json, ",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"");
            if (st->model_id) put_escaped(&f.json, st->model_id, strlen(st->model_id));
            PUT(&f.json, "\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,"
                         "\"usage\":{\"input_tokens\":0,\"output_tokens\":0}}}");
        } else {
            PUT(&f.json, "{\"role\":\"assistant\"}");
        }
        if ((rc = emit(st, &f, "messageStart")) < 0) goto out;
        n += rc;
    }
    int choice = json_scan_is_array(s, r[1]) && json_scan_size(s, r[1]) > 0 ? r[1] + 1 : -1;
    MEMBERS(choice, choice_keys, c);
    MEMBERS(c[0], delta_keys, d);
    rc = 0;
    if (json_scan_is_string(s, d[0]) && raw_len(s, d[0]) > 0) {
        if ((rc = text_delta(st, &f, s->js + s->tok[d[0]].start, raw_len(s, d[0]))) < 0) goto out;
        n += rc;
    }
    if (json_scan_is_array(s, d[1])) {
        int tc = d[1] + 1;
        for (int i = 0; i < json_scan_size(s, d[1]); i++, tc = json_scan_skip(s, tc)) {
            if ((rc = tool_delta(st, &f, s, tc)) < 0) goto out;
            n += rc;
        }
    }
    if (json_scan_is_string(s, c[1])) st->stop_reason = stop_reason_of(s, c[1], a);
out:
    frames_free(&f);
    arena_free(a);
    return rc < 0 ? -1 : n;
}

int bedrock_stream_end(struct bedrock_state *st, long long input_tokens, long long output_tokens,
                       long latency_ms, const char *error, struct evbuffer *out)
{
    struct frames f = {.out = out};
    int rc = -1;
    if (error) {
        PUT(&f.json, "{\"message\":\"");
        put_escaped(&f.json, error, strlen(error));
        PUT(&f.json, "\"}");
        rc = frame(out, "exception", "modelStreamErrorException", &f.json);
        goto out;
    }
    if (input_tokens < 0) input_tokens = 0;
    if (output_tokens < 0) output_tokens = 0;
    const char *stop = st->stop_reason ? st->stop_reason : "end_turn";
    if (close_block(st, &f) < 0) goto out;
    if (invoke_stream(st)) {
        PUT(&f.json, "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"");
        put(&f.json, stop, strlen(stop));
        PUT(&f.json, "\",\"stop_sequence\":null},\"usage\":{\"input_tokens\":");
        put_int(&f.json, input_tokens);
        PUT(&f.json, ",\"output_tokens\":");
        put_int(&f.json, output_tokens);
        PUT(&f.json, "}}");
        if (emit(st, &f, "messageDelta") < 0) goto out;
        PUT(&f.json, "{\"type\":\"message_stop\",\"amazon-bedrock-invocationMetrics\":"
                     "{\"inputTokenCount\":");
        put_int(&f.json, input_tokens);
        PUT(&f.json, ",\"outputTokenCount\":");
        put_int(&f.json, output_tokens);
        PUT(&f.json, ",\"invocationLatency\":");
        put_int(&f.json, (int)latency_ms);
        PUT(&f.json, ",\"firstByteLatency\":");
        put_int(&f.json, (int)latency_ms);
        PUT(&f.json, "}}");
        rc = emit(st, &f, "messageStop");
        goto out;
    }
    PUT(&f.json, "{\"stopReason\":\"");
    put(&f.json, stop, strlen(stop));
    PUT(&f.json, "\"}");
    if (frame(out, "event", "messageStop", &f.json) < 0) goto out;
    PUT(&f.json, "{\"usage\":{\"inputTokens\":");
    put_int(&f.json, input_tokens);
    PUT(&f.json, ",\"outputTokens\":");
    put_int(&f.json, output_tokens);
    PUT(&f.json, ",\"totalTokens\":");
    put_int(&f.json,
            (long long)((unsigned long long)input_tokens + (unsigned long long)output_tokens));
    PUT(&f.json, "},\"metrics\":{\"latencyMs\":");
    put_int(&f.json, (int)latency_ms);
    PUT(&f.json, "}}");
    rc = frame(out, "event", "metadata", &f.json);
out:
    frames_free(&f);
    return rc < 0 ? -1 : 0;
}

/* ---- the surface ---------------------------------------------------------------------- */

static long latency_ms(const struct http_request *req)
{
    return (long)((clock_now_ns() - req->start_ns) / 1000000);
}

/* AWS clients log and report this id with every answer and error. */
static void request_id_header(struct http_request *req)
{
    http_add_header(req, "x-amzn-RequestId", req->request_id);
}

static void free_state(void *ud)
{
    struct bedrock_state *st = ud;
    if (st->out) evbuffer_free(st->out);
}

static struct evbuffer *out_buffer(struct exchange *x)
{
    struct bedrock_state *st = x->state;
    if (st->out == NULL && (st->out = evbuffer_new()) != NULL &&
        arena_on_free(x->req->arena, free_state, st) != 0) {
        evbuffer_free(st->out);
        st->out = NULL;
    }
    return st->out;
}

static int bedrock_parse(struct exchange *x, enum openai_endpoint endpoint, struct err *err)
{
    struct http_request *req = x->req;
    struct bedrock_state *st = x->state;
    st->block = -1;
    if (bedrock_route(req->path, req->arena, &st->op, &st->model_id, err) != 0) return -1;
    struct openai_request *r = arena_alloc(req->arena, sizeof *r);
    if (r == NULL) return err_oom(err);
    size_t len = evbuffer_get_length(req->body), n = 0;
    const char *bytes = len ? (const char *)evbuffer_pullup(req->body, -1) : "";
    char *body = NULL;
    if (bedrock_translate_request(st->op, st->model_id, bytes, len, req->arena, &body, &n, err) !=
            0 ||
        openai_parse_request(endpoint, body, n, req->arena, r, err) != 0) {
        if (err->status == 400) err->code = "validation_error";
        return -1;
    }
    x->request = r;
    return 0;
}

static void bedrock_start(struct exchange *x, int status)
{
    request_id_header(x->req);
    http_stream_start(x->req, status, "application/vnd.amazon.eventstream");
}

static int bedrock_chunk(struct exchange *x, const struct call_chunk *ch)
{
    struct evbuffer *out = out_buffer(x);
    if (out == NULL) return -1;
    int n = bedrock_stream_chunk(x->state, ch->json, ch->len, out);
    return n < 0 ? -1 : n > 0;
}

static int bedrock_flush(struct exchange *x)
{
    struct bedrock_state *st = x->state;
    size_t len = st->out ? evbuffer_get_length(st->out) : 0;
    if (len == 0) return 0;
    int rc = http_stream_write(x->req, (const char *)evbuffer_pullup(st->out, -1), len);
    evbuffer_drain(st->out, len);
    return rc;
}

static void bedrock_end(struct exchange *x, const char *error)
{
    struct evbuffer *out = out_buffer(x);
    const struct call_info *in = x->call ? call_info(x->call) : NULL;
    if (out &&
        bedrock_stream_end(x->state, in ? in->usage.prompt : 0, in ? in->usage.completion : 0,
                           latency_ms(x->req), error, out) == 0)
        bedrock_flush(x);
    http_stream_end(x->req);
}

static void bedrock_error(struct exchange *x, const struct call_failure *f)
{
    int status;
    const char *type = bedrock_exception(&f->err, &status);
    if (f->retry_after >= 0) {
        char v[24];
        snprintf(v, sizeof v, "%ld", f->retry_after);
        http_add_header(x->req, "Retry-After", v);
    }
    request_id_header(x->req);
    http_add_header(x->req, "x-amzn-ErrorType", type);
    json_t *doc = json_pack("{s:s}", "message", f->err.msg);
    char *body = doc ? json_dumps(doc, JSON_COMPACT | JSON_TEXT_REALS) : NULL;
    json_decref(doc);
    if (body == NULL) {
        http_respond(x->req, 500, "application/json", "{\"message\":\"out of memory\"}", 27);
        return;
    }
    http_respond(x->req, status, "application/json", body, strlen(body));
    free(body);
}

static void bedrock_body(struct exchange *x, int status, const char *json, size_t len)
{
    struct bedrock_state *st = x->state;
    char *s = bedrock_translate_answer(st->op, st->model_id, json, len, latency_ms(x->req));
    if (s == NULL) {
        struct err e;
        err_set(&e, 502, "upstream_error", "bad_response",
                "the model's answer could not be translated to Bedrock's shape");
        struct call_failure f = surface_failure(&e);
        bedrock_error(x, &f);
        return;
    }
    request_id_header(x->req);
    http_respond(x->req, status, "application/json", s, strlen(s));
    free(s);
}

const struct surface_ops surface_bedrock = {
    .name = "bedrock",
    .state_size = sizeof(struct bedrock_state),
    .sigv4 = true,
    .credential = credential_bearer,
    .parse = bedrock_parse,
    .start = bedrock_start,
    .chunk = bedrock_chunk,
    .flush = bedrock_flush,
    .end = bedrock_end,
    .body = bedrock_body,
    .error = bedrock_error,
};
