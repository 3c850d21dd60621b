/*
 * DESIGN: see surface_anthropic.h.
 * Why one file of ~1,600 lines: an inbound API is one file (docs/architecture.md,
 * "Extending"), and its request, answer and stream translations share the private JSON-text
 * writer and scan readers below. That writer has a near twin in surface_bedrock.c; a shared
 * one in util/ would take ~130 lines off each (not done).
 *
 * The request side re-tells the Anthropic body as the OpenAI chat body it means and hands that
 * to openai_parse_request, so admission, routing, every provider and the ledger see one
 * request model and nothing below api/ learns a second format. Checks that Anthropic makes and
 * OpenAI does not (max_tokens required, temperature 0..1, unknown top-level fields) happen
 * here, with Anthropic's field paths in the message.
 *
 * No JSON document is built on the way (a jansson round trip cost more than everything else
 * the request does): the body is scanned into jsmn tokens (util/json_scan) within the request
 * model's limits, strictly, and the OpenAI body is written as text. A strictly scanned
 * string's raw bytes are valid JSON string text in both formats, so values are copied as they
 * were written, never decoded and re-escaped; only a tool call's arguments (a string holding
 * JSON on one side, an object on the other) change form.
 *
 * The answer side never sees the target's own format: translating providers already turned
 * it into OpenAI data (route/call.h), so one translation (OpenAI → Anthropic) serves every
 * backend, the same way: a strict scan of the answer or chunk, the Message or events written
 * as text. Streams keep a little state: OpenAI deltas are flat, Anthropic's live in numbered
 * content blocks that must be opened and closed in order. Errors and count_tokens (neither
 * on the hot path) still use jansson.
 */
#include <event2/buffer.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/surface_anthropic.h"

#include "api/credential.h"
#include "api/respond.h"
#include "app.h"
#include "generation.h"
#include "guard/guard.h"
#include "http/server.h"
#include "util/arena.h"
#include "util/json_scan.h"
#include "util/json_text.h"

/* ---- errors ----------------------------------------------------------------------------- */

/* Anthropic's error type for an HTTP status (its documented table; the SDKs pick their
 * exception class from the status, some clients from this string). */
static const char *error_type(int status)
{
    switch (status) {
    case 400:
        return "invalid_request_error";
    case 401:
        return "authentication_error";
    case 402:
        return "billing_error";
    case 403:
        return "permission_error";
    case 404:
        return "not_found_error";
    case 413:
        return "request_too_large";
    case 429:
        return "rate_limit_error";
    case 503:
    case 529:
        return "overloaded_error";
    case 504:
        return "timeout_error";
    default:
        return status >= 500 ? "api_error" : "invalid_request_error";
    }
}

static int bad(struct err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(struct err *e, const char *fmt, ...)
{
    va_list ap;
    err_set(e, 400, "invalid_request_error", "invalid_request", "%s", "");
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return -1;
}

/* The error document; the all-failed case also lists what was tried, as the OpenAI surface
 * does (an extra member: the SDKs read only type and message). */
static char *error_json(int status, const char *message, const struct call_failure *f)
{
    json_t *e = json_pack("{s:s, s:s}", "type", error_type(status), "message", message);
    if (f && f->n_attempts && e) {
        json_t *attempts = json_array();
        for (size_t i = 0; i < f->n_attempts; i++) {
            const struct call_attempt *a = &f->attempts[i];
            json_t *o = json_pack("{s:s, s:s, s:s}", "backend", a->backend, "model", a->model,
                                  "error", a->error);
            json_object_set_new(o, "status", a->status ? json_integer(a->status) : json_null());
            json_array_append_new(attempts, o);
        }
        json_object_set_new(e, "attempts", attempts);
    }
    json_t *doc = e ? json_pack("{s:s, s:o}", "type", "error", "error", e) : NULL;
    char *s = doc ? json_dumps(doc, JSON_COMPACT | JSON_TEXT_REALS) : NULL;
    json_decref(doc);
    return s;
}

/* When even the error document cannot be built (no memory), a fixed one still goes out. */
static void respond_error(struct http_request *req, int status, const char *message,
                          const struct call_failure *f)
{
    static const char oom[] =
        "{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"out of memory\"}}";
    char *body = error_json(status, message, f);
    if (body == NULL) {
        http_respond(req, 500, "application/json", oom, sizeof oom - 1);
        return;
    }
    http_respond(req, status, "application/json", body, strlen(body));
    free(body);
}

static void anthropic_error(struct exchange *x, const struct call_failure *f)
{
    if (f->retry_after >= 0) {
        char v[24];
        snprintf(v, sizeof v, "%ld", f->retry_after);
        http_add_header(x->req, "Retry-After", v);
    }
    /* An OpenAI-speaking upstream's own 4xx: its message, in this API's shape. */
    json_t *raw = f->raw ? json_loadb(f->raw, f->raw_len, 0, NULL) : NULL;
    const char *m = json_string_value(json_object_get(json_object_get(raw, "error"), "message"));
    respond_error(x->req, f->err.status, m ? m : f->err.msg, f);
    json_decref(raw);
}

/* ---- the credential ------------------------------------------------------------------- */

static void trim(const char **p, size_t *n)
{
    while (*n && (**p == ' ' || **p == '\t')) (*p)++, (*n)--;
    while (*n && ((*p)[*n - 1] == ' ' || (*p)[*n - 1] == '\t')) (*n)--;
}

/* Anthropic's SDKs send `x-api-key` (an API key) or `Authorization: Bearer` (an auth token);
 * the gateway's keys may come either way. Two different ones would leave open which one was
 * checked, so that is refused like two Authorization headers are. */
static int anthropic_credential(const struct http_request *req, const char **key, size_t *len,
                                struct err *err)
{
    const char *x = NULL;
    size_t n = 0;
    for (size_t i = 0; i < req->n_headers; i++)
        if (strcasecmp(req->headers[i].name, "x-api-key") == 0) {
            x = req->headers[i].value;
            n++;
        }
    if (n > 1)
        return err_set(err, 400, "invalid_request_error", "duplicate_header",
                       "the request has %zu x-api-key headers; send exactly one", n);
    if (credential_bearer(req, key, len, err) != 0) return -1;
    size_t xl = x ? strlen(x) : 0;
    if (x) trim(&x, &xl);
    if (xl == 0) return 0; /* the bearer token, or none */
    if (*key && (*len != xl || memcmp(*key, x, xl) != 0))
        return err_set(err, 400, "invalid_request_error", "ambiguous_credential",
                       "x-api-key and Authorization carry different keys; send one of them");
    *key = x;
    *len = xl;
    return 0;
}

/* ---- JSON text out ------------------------------------------------------------------------ */

/* JSON text being written, in an arena. It grows by doubling; an outgrown block stays in the
 * arena until the request ends (a translation is about as long as its input, so little is
 * left behind). Once out of memory, writes are dropped and `oom` tells the caller. */
struct out {
    struct arena *arena;
    char *p;
    size_t len, cap;
    bool oom;
};

static void out_init(struct out *o, struct arena *a, size_t cap)
{
    *o = (struct out){.arena = a};
    if (cap && (o->p = arena_alloc(a, cap)) != NULL) o->cap = cap;
}

/* Room for n more bytes. */
static bool reserve(struct out *o, size_t n)
{
    if (o->len + n <= o->cap) return true;
    if (o->oom) return false;
    size_t cap = o->cap ? o->cap : 256;
    while (cap < o->len + n) cap *= 2;
    char *p = arena_alloc(o->arena, cap);
    if (p == NULL) {
        o->oom = true;
        return false;
    }
    if (o->len) memcpy(p, o->p, o->len);
    o->p = p;
    o->cap = cap;
    return true;
}

static void put(struct out *o, const char *s, size_t n)
{
    if (!reserve(o, n)) return;
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

#define PUT(o, lit) put((o), "" lit, sizeof(lit) - 1)

static void put_int(struct out *o, long long v)
{
    char b[24];
    int n = snprintf(b, sizeof b, "%lld", v);
    put(o, b, (size_t)n);
}

/* `n` bytes of C text as a JSON string (escaped; bytes that are not UTF-8 become U+FFFD). */
static void put_str(struct out *o, const char *s, size_t n)
{
    size_t need = json_escape(NULL, 0, s, n);
    PUT(o, "\"");
    if (reserve(o, need + 1)) {
        json_escape(o->p + o->len, need + 1, s, n);
        o->len += need;
    }
    PUT(o, "\"");
}

static size_t tok_len(const struct json_scan *s, int i)
{
    return (size_t)(s->tok[i].end - s->tok[i].start);
}

/* Token i's text as it is: a strictly scanned string's raw bytes are already JSON text, so a
 * string value moves from one format to the other without being decoded and re-escaped. */
static void put_tok(struct out *o, const struct json_scan *s, int i)
{
    bool str = s->tok[i].type == JSMN_STRING;
    put(o, s->js + s->tok[i].start - str, tok_len(s, i) + 2 * str);
}

/* A string token's raw text without its quotes (to join strings inside one JSON string). */
static void put_inner(struct out *o, const struct json_scan *s, int i)
{
    put(o, s->js + s->tok[i].start, tok_len(s, i));
}

/* Raw JSON string text escaped once more, as the inside of a string holding JSON text. */
static void put_escaped(struct out *o, const char *p, size_t n)
{
    size_t from = 0;
    for (size_t k = 0; k < n; k++)
        if (p[k] == '"' || p[k] == '\\') {
            put(o, p + from, k - from);
            put(o, p[k] == '"' ? "\\\"" : "\\\\", 2);
            from = k + 1;
        }
    put(o, p + from, n - from);
}

/* Value token i as compact JSON text (whitespace between tokens dropped, as json_dumps
 * would write it), or with `quoted` that text escaped as the inside of a JSON string (OpenAI's
 * tool-call arguments are a string holding JSON). Depth is bounded by the scan's limits.
 * @return the token after i and its children. */
static int put_compact(struct out *o, const struct json_scan *s, int i, bool quoted)
{
    const jsmntok_t *t = &s->tok[i];
    if (t->type == JSMN_STRING) {
        if (!quoted) {
            put_tok(o, s, i);
        } else {
            PUT(o, "\\\"");
            put_escaped(o, s->js + t->start, tok_len(s, i));
            PUT(o, "\\\"");
        }
        return i + 1;
    }
    if (t->type != JSMN_OBJECT && t->type != JSMN_ARRAY) {
        put_inner(o, s, i); /* true, false, null, a number */
        return i + 1;
    }
    bool object = t->type == JSMN_OBJECT;
    put(o, object ? "{" : "[", 1);
    int j = i + 1;
    for (int m = 0; m < t->size && j < s->n; m++) {
        if (m) PUT(o, ",");
        if (object) {
            j = put_compact(o, s, j, quoted);
            PUT(o, ":");
        }
        j = put_compact(o, s, j, quoted);
    }
    put(o, object ? "}" : "]", 1);
    return j;
}

/* ---- reading a scan --------------------------------------------------------------------- */

static const struct json_scan_limits scan_limits = {
    .max_tokens = OPENAI_MAX_JSON_VALUES,
    .max_depth = OPENAI_MAX_DEPTH,
    .max_members = OPENAI_MAX_OBJECT_MEMBERS,
};

/* String token i unescaped (in `a`), or NULL when it is not a string (or no memory). */
static char *str_dup(const struct json_scan *s, int i, struct arena *a)
{
    return json_scan_string_dup(s, i, a);
}

/* Whether token i is a string that unescaped is `lit`. The raw bytes settle it unless the
 * string has escapes ("t\u0065xt" is "text" to every JSON reader). */
static bool str_is(const struct json_scan *s, int i, const char *lit, struct arena *a)
{
    if (!json_scan_is_string(s, i)) return false;
    const char *p = s->js + s->tok[i].start;
    size_t n = tok_len(s, i), k = strlen(lit);
    if (memchr(p, '\\', n) == NULL) return n == k && memcmp(p, lit, k) == 0;
    const char *d = str_dup(s, i, a);
    return d && strcmp(d, lit) == 0;
}

/* The "type" string of object token b, or -1 (not an object, no string type). */
static int type_of(const struct json_scan *s, int b)
{
    int t = json_scan_get(s, b, "type");
    return json_scan_is_string(s, t) ? t : -1;
}

/* An integer member as jansson's json_integer_value reads it: 0 when it is not one. */
static long long int_of(const struct json_scan *s, int i)
{
    long long v;
    return json_scan_integer(s, i, &v) ? v : 0;
}

/* The first element of an array token, or -1. */
static int first_of(const struct json_scan *s, int arr)
{
    return json_scan_is_array(s, arr) && json_scan_size(s, arr) > 0 ? arr + 1 : -1;
}

/* ---- requests: Anthropic Messages → OpenAI chat ------------------------------------------ */

/* What the surface does with a top-level field of a Messages body. */
enum use {
    USE,    /* translated */
    IGNORE, /* a hint about how or where to serve that no target here takes */
    REFUSE, /* a feature this gateway cannot provide: 400 rather than a silently other answer */
};

struct top_field {
    const char *name;
    enum use use;
    bool counts; /* also accepted by count_tokens */
};

/* Indexes into top_fields, which json_scan_members fills in one pass over the body. */
enum {
    F_MODEL,
    F_MESSAGES,
    F_MAX_TOKENS,
    F_SYSTEM,
    F_METADATA,
    F_STOP_SEQUENCES,
    F_STREAM,
    F_TEMPERATURE,
    F_TOP_P,
    F_TOP_K,
    F_TOOLS,
    F_TOOL_CHOICE,
    F_THINKING,
    F_OUTPUT_CONFIG,
    N_TOP_FIELDS = 24,
};

static const struct top_field top_fields[N_TOP_FIELDS] = {
    [F_MODEL] = {"model", USE, true},
    [F_MESSAGES] = {"messages", USE, true},
    [F_MAX_TOKENS] = {"max_tokens", USE, false},
    [F_SYSTEM] = {"system", USE, true},
    [F_METADATA] = {"metadata", USE, false},
    [F_STOP_SEQUENCES] = {"stop_sequences", USE, false},
    [F_STREAM] = {"stream", USE, false},
    [F_TEMPERATURE] = {"temperature", USE, false},
    [F_TOP_P] = {"top_p", USE, false},
    [F_TOP_K] = {"top_k", IGNORE, false}, /* OpenAI has no top_k; strict targets would refuse it */
    [F_TOOLS] = {"tools", USE, true},
    [F_TOOL_CHOICE] = {"tool_choice", USE, true},
    [F_THINKING] = {"thinking", USE, true}, /* "disabled" only: see translate() */
    [F_OUTPUT_CONFIG] = {"output_config", USE, true},
    {"service_tier", IGNORE, false},
    {"speed", IGNORE, true},
    {"inference_geo", IGNORE, false},
    {"cache_control", IGNORE, true},
    {"container", REFUSE, false},
    {"mcp_servers", REFUSE, true},
    {"context_management", REFUSE, true},
    {"diagnostics", REFUSE, false},
    {"user_profile_id", REFUSE, false},
    {"workspace_id", REFUSE, false},
};

static const struct top_field *top_field(const char *name)
{
    for (size_t i = 0; i < N_TOP_FIELDS; i++)
        if (strcmp(top_fields[i].name, name) == 0) return &top_fields[i];
    return NULL;
}

static const char *type_name(const struct json_scan *s, int i)
{
    if (json_scan_is_object(s, i)) return "an object";
    if (json_scan_is_array(s, i)) return "a list";
    if (json_scan_is_string(s, i)) return "a string";
    if (json_scan_is_integer(s, i)) return "an integer";
    if (json_scan_is_number(s, i)) return "a number";
    if (json_scan_is_bool(s, i)) return "a boolean";
    return json_scan_is_null(s, i) ? "null" : "?";
}

/* One translation: the scanned Messages body in, the OpenAI chat body out. */
struct tx {
    const struct json_scan *s;
    struct arena *arena;
    struct err *err;
    struct out body; /* the OpenAI chat body */
    int messages;    /* OpenAI messages written so far */
    struct out a, b; /* scratch for one turn (parts and tool messages; text and calls) */
};

/* A string token unescaped for a message (error paths only); "" when out of memory. */
static const char *decoded(struct tx *t, int i)
{
    const char *d = str_dup(t->s, i, t->arena);
    return d ? d : "";
}

static bool is(struct tx *t, int i, const char *lit)
{
    return str_is(t->s, i, lit, t->arena);
}

/* The next OpenAI message begins. */
static void message(struct tx *t)
{
    if (t->messages++) PUT(&t->body, ",");
}

/* n messages written to `list`, each after a comma, go into the body's messages. */
static void messages_from(struct tx *t, const struct out *list, int n)
{
    if (n == 0) return;
    size_t skip = t->messages == 0; /* the first message has no comma before it */
    put(&t->body, list->p + skip, list->len - skip);
    t->messages += n;
}

/* A tool_result's content as the text of an OpenAI tool message (text blocks joined by
 * newlines), written inside the string already open in `o`. */
static int tool_result_text(struct tx *t, int content, const char *path, struct out *o)
{
    const struct json_scan *s = t->s;
    if (content < 0 || json_scan_is_null(s, content)) return 0;
    if (json_scan_is_string(s, content)) {
        put_inner(o, s, content);
        return 0;
    }
    if (!json_scan_is_array(s, content))
        return bad(t->err, "%s.content: Input should be a valid string or list", path);
    int b = content + 1;
    for (int k = 0; k < json_scan_size(s, content); k++, b = json_scan_skip(s, b)) {
        int str = json_scan_get(s, b, "text");
        if (!is(t, type_of(s, b), "text") || !json_scan_is_string(s, str))
            return bad(t->err,
                       "%s.content.%d: only text blocks are supported in a tool_result by this "
                       "gateway (its targets take tool output as text)",
                       path, k);
        if (k) PUT(o, "\\n");
        put_inner(o, s, str);
    }
    return 0;
}

/* An image block as an OpenAI image_url part (after a comma, into `o`): base64 becomes a
 * data: URL, a url source stays a URL (whether the target can fetch it is its business). */
static int image_part(struct tx *t, int b, const char *path, struct out *o)
{
    const struct json_scan *s = t->s;
    int src = json_scan_get(s, b, "source"), st = type_of(s, src);
    if (st < 0) return bad(t->err, "%s.source: Input should be an object with a type", path);
    if (is(t, st, "base64")) {
        int mt = json_scan_get(s, src, "media_type"), data = json_scan_get(s, src, "data");
        if (!json_scan_is_string(s, mt) || !json_scan_is_string(s, data))
            return bad(t->err, "%s.source: a base64 source needs string media_type and data", path);
        PUT(o, ",{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:");
        put_inner(o, s, mt);
        PUT(o, ";base64,");
        put_inner(o, s, data);
        PUT(o, "\"}}");
        return 0;
    }
    int url = json_scan_get(s, src, "url");
    if (is(t, st, "url") && json_scan_is_string(s, url)) {
        PUT(o, ",{\"type\":\"image_url\",\"image_url\":{\"url\":");
        put_tok(o, s, url);
        PUT(o, "}}");
        return 0;
    }
    return bad(t->err, "%s.source.type: '%s' is not supported by this gateway (base64, url)", path,
               decoded(t, st));
}

/* One user turn: tool results become OpenAI tool messages (first: they answer the previous
 * assistant turn's calls, and OpenAI wants them right after it), the rest one user message. */
static int user_turn(struct tx *t, int content, const char *path)
{
    const struct json_scan *s = t->s;
    struct out *parts = &t->a, *tools = &t->b;
    parts->len = tools->len = 0;
    int n_parts = 0, n_tools = 0, only_text = -1; /* the text when the first part is text */
    char bp[64];
    int b = content + 1;
    for (int k = 0; k < json_scan_size(s, content); k++, b = json_scan_skip(s, b)) {
        snprintf(bp, sizeof bp, "%s.%d", path, k);
        int ty = type_of(s, b);
        if (ty < 0)
            return bad(t->err, "%s: Input should be a content block (an object with a type)", bp);
        if (is(t, ty, "text")) {
            int str = json_scan_get(s, b, "text");
            if (!json_scan_is_string(s, str))
                return bad(t->err, "%s.text: Input should be a valid string", bp);
            if (n_parts++ == 0) only_text = str;
            PUT(parts, ",{\"type\":\"text\",\"text\":");
            put_tok(parts, s, str);
            PUT(parts, "}");
        } else if (is(t, ty, "image")) {
            if (image_part(t, b, bp, parts) != 0) return -1;
            n_parts++;
        } else if (is(t, ty, "tool_result")) {
            int id = json_scan_get(s, b, "tool_use_id");
            if (!json_scan_is_string(s, id))
                return bad(t->err, "%s.tool_use_id: Field required (a string)", bp);
            PUT(tools, ",{\"role\":\"tool\",\"tool_call_id\":");
            put_tok(tools, s, id);
            PUT(tools, ",\"content\":\"");
            /* OpenAI tool messages have no error flag; the text says it instead. */
            if (json_scan_is_true(s, json_scan_get(s, b, "is_error"))) PUT(tools, "Error: ");
            if (tool_result_text(t, json_scan_get(s, b, "content"), bp, tools) != 0) return -1;
            PUT(tools, "\"}");
            n_tools++;
        } else {
            return bad(t->err,
                       "%s.type: '%s' blocks are not supported by this gateway in user turns", bp,
                       decoded(t, ty));
        }
    }
    messages_from(t, tools, n_tools);
    if (n_parts == 0) return 0;
    message(t);
    PUT(&t->body, "{\"role\":\"user\",\"content\":");
    if (n_parts == 1 && only_text >= 0) {
        put_tok(&t->body, s, only_text);
    } else {
        PUT(&t->body, "[");
        put(&t->body, parts->p + 1, parts->len - 1);
        PUT(&t->body, "]");
    }
    PUT(&t->body, "}");
    return 0;
}

/* One assistant turn: text joined, tool_use blocks as tool_calls with their input as the
 * arguments string. Thinking blocks are earlier answers' reasoning; no target here takes
 * them back, so they are left out. */
static int assistant_turn(struct tx *t, int content, const char *path)
{
    const struct json_scan *s = t->s;
    struct out *joined = &t->a, *calls = &t->b;
    joined->len = calls->len = 0;
    int n_calls = 0;
    char bp[64];
    int b = content + 1;
    for (int k = 0; k < json_scan_size(s, content); k++, b = json_scan_skip(s, b)) {
        snprintf(bp, sizeof bp, "%s.%d", path, k);
        int ty = type_of(s, b);
        if (ty < 0)
            return bad(t->err, "%s: Input should be a content block (an object with a type)", bp);
        if (is(t, ty, "text")) {
            int str = json_scan_get(s, b, "text");
            if (!json_scan_is_string(s, str))
                return bad(t->err, "%s.text: Input should be a valid string", bp);
            put_inner(joined, s, str);
        } else if (is(t, ty, "tool_use")) {
            int id = json_scan_get(s, b, "id"), name = json_scan_get(s, b, "name");
            int input = json_scan_get(s, b, "input");
            if (!json_scan_is_string(s, id) || !json_scan_is_string(s, name) ||
                !json_scan_is_object(s, input))
                return bad(t->err,
                           "%s: a tool_use block needs a string id and name and an object input",
                           bp);
            PUT(calls, ",{\"id\":");
            put_tok(calls, s, id);
            PUT(calls, ",\"type\":\"function\",\"function\":{\"name\":");
            put_tok(calls, s, name);
            PUT(calls, ",\"arguments\":\"");
            put_compact(calls, s, input, true);
            PUT(calls, "\"}}");
            n_calls++;
        } else if (!is(t, ty, "thinking") && !is(t, ty, "redacted_thinking")) {
            return bad(t->err,
                       "%s.type: '%s' blocks are not supported by this gateway in assistant turns",
                       bp, decoded(t, ty));
        }
    }
    message(t);
    PUT(&t->body, "{\"role\":\"assistant\",\"content\":");
    if (joined->len || n_calls == 0) {
        PUT(&t->body, "\"");
        put(&t->body, joined->p, joined->len);
        PUT(&t->body, "\"");
    } else {
        PUT(&t->body, "null");
    }
    if (n_calls) {
        PUT(&t->body, ",\"tool_calls\":[");
        put(&t->body, calls->p + 1, calls->len - 1);
        PUT(&t->body, "]");
    }
    PUT(&t->body, "}");
    return 0;
}

static int translate_messages(struct tx *t, int messages)
{
    const struct json_scan *s = t->s;
    if (!json_scan_is_array(s, messages))
        return bad(t->err, "messages: Input should be a valid list, got %s",
                   type_name(s, messages));
    if (json_scan_size(s, messages) == 0)
        return bad(t->err, "messages: at least one message is required");
    int m = messages + 1;
    for (int i = 0; i < json_scan_size(s, messages); i++, m = json_scan_skip(s, m)) {
        char path[48];
        snprintf(path, sizeof path, "messages.%d", i);
        if (!json_scan_is_object(s, m)) return bad(t->err, "%s: Input should be an object", path);
        int role = -1, content = -1, key = m + 1;
        for (int k = 0; k < json_scan_size(s, m); k++, key = json_scan_skip(s, key + 1)) {
            if (is(t, key, "role"))
                role = key + 1;
            else if (is(t, key, "content"))
                content = key + 1;
            else
                return bad(t->err, "%s.%s: Extra inputs are not permitted", path, decoded(t, key));
        }
        bool user = is(t, role, "user");
        if (!user && !is(t, role, "assistant"))
            return bad(t->err, "%s.role: Input should be 'user' or 'assistant'", path);
        if (json_scan_is_string(s, content)) {
            message(t);
            if (user)
                PUT(&t->body, "{\"role\":\"user\",\"content\":");
            else
                PUT(&t->body, "{\"role\":\"assistant\",\"content\":");
            put_tok(&t->body, s, content);
            PUT(&t->body, "}");
            continue;
        }
        if (!json_scan_is_array(s, content))
            return bad(t->err, "%s.content: Input should be a valid string or list, got %s", path,
                       content >= 0 ? type_name(s, content) : "nothing");
        strcat(path, ".content");
        if ((user ? user_turn : assistant_turn)(t, content, path) != 0) return -1;
    }
    return 0;
}

static int translate_system(struct tx *t, int system)
{
    const struct json_scan *s = t->s;
    if (system < 0) return 0;
    if (json_scan_is_string(s, system)) {
        if (tok_len(s, system)) {
            message(t);
            PUT(&t->body, "{\"role\":\"system\",\"content\":");
            put_tok(&t->body, s, system);
            PUT(&t->body, "}");
        }
        return 0;
    }
    if (!json_scan_is_array(s, system))
        return bad(t->err, "system: Input should be a valid string or list, got %s",
                   type_name(s, system));
    struct out *parts = &t->a;
    parts->len = 0;
    int b = system + 1;
    for (int k = 0; k < json_scan_size(s, system); k++, b = json_scan_skip(s, b)) {
        int str = json_scan_get(s, b, "text");
        if (!is(t, type_of(s, b), "text") || !json_scan_is_string(s, str))
            return bad(t->err, "system.%d: Input should be a text block", k);
        PUT(parts, ",{\"type\":\"text\",\"text\":");
        put_tok(parts, s, str);
        PUT(parts, "}");
    }
    if (parts->len) {
        message(t);
        PUT(&t->body, "{\"role\":\"system\",\"content\":[");
        put(&t->body, parts->p + 1, parts->len - 1);
        PUT(&t->body, "]}");
    }
    return 0;
}

static int translate_tools(struct tx *t, int tools, int choice)
{
    const struct json_scan *s = t->s;
    struct out *o = &t->body;
    if (tools < 0) return 0;
    if (!json_scan_is_array(s, tools))
        return bad(t->err, "tools: Input should be a valid list, got %s", type_name(s, tools));
    if (json_scan_size(s, tools) == 0) return 0;
    PUT(o, ",\"tools\":[");
    int tl = tools + 1;
    for (int k = 0; k < json_scan_size(s, tools); k++, tl = json_scan_skip(s, tl)) {
        int type = type_of(s, tl);
        if (type >= 0 && !is(t, type, "custom"))
            return bad(t->err,
                       "tools.%d.type: '%s' is an Anthropic server tool; this gateway serves "
                       "only client tools (name, description, input_schema)",
                       k, decoded(t, type));
        int name = json_scan_get(s, tl, "name"), schema = json_scan_get(s, tl, "input_schema");
        int desc = json_scan_get(s, tl, "description");
        if (!json_scan_is_string(s, name) || !json_scan_is_object(s, schema) ||
            (desc >= 0 && !json_scan_is_string(s, desc)))
            return bad(t->err, "tools.%d: a tool needs a string name and an object input_schema",
                       k);
        if (k) PUT(o, ",");
        PUT(o, "{\"type\":\"function\",\"function\":{\"name\":");
        put_tok(o, s, name);
        PUT(o, ",\"parameters\":");
        put_tok(o, s, schema);
        if (desc >= 0) {
            PUT(o, ",\"description\":");
            put_tok(o, s, desc);
        }
        PUT(o, "}}");
    }
    PUT(o, "]");
    if (choice < 0) return 0;
    int ct = type_of(s, choice), name = json_scan_get(s, choice, "name");
    if (ct < 0) return bad(t->err, "tool_choice: Input should be an object with a type");
    if (is(t, ct, "auto")) {
        PUT(o, ",\"tool_choice\":\"auto\"");
    } else if (is(t, ct, "any")) {
        PUT(o, ",\"tool_choice\":\"required\"");
    } else if (is(t, ct, "none")) {
        PUT(o, ",\"tool_choice\":\"none\"");
    } else if (is(t, ct, "tool") && json_scan_is_string(s, name)) {
        PUT(o, ",\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":");
        put_tok(o, s, name);
        PUT(o, "}}");
    } else {
        return bad(t->err, "tool_choice.type: Input should be 'auto', 'any', 'tool' (with a name) "
                           "or 'none'");
    }
    if (json_scan_is_true(s, json_scan_get(s, choice, "disable_parallel_tool_use")))
        PUT(o, ",\"parallel_tool_calls\":false");
    return 0;
}

/* A number token's value; the checked scan has made sure it fits a double. */
static double number_value(struct tx *t, int i)
{
    double d = 0;
    if (json_scan_number(t->s, i, &d)) return d;
    char *c = arena_strndup(t->arena, t->s->js + t->s->tok[i].start, tok_len(t->s, i));
    return c ? strtod(c, NULL) : 0; /* longer than json_scan_number reads */
}

/* A sampling field within [lo, hi], copied as it was written. */
static int number_in(struct tx *t, int v, const char *name, double lo, double hi)
{
    if (v < 0) return 0;
    if (!json_scan_is_number(t->s, v))
        return bad(t->err, "%s: Input should be a valid number, got %s", name, type_name(t->s, v));
    double d = number_value(t, v);
    if (d < lo || d > hi)
        return bad(t->err, "%s: Input should be between %g and %g, got %g", name, lo, hi, d);
    PUT(&t->body, ",\"");
    put(&t->body, name, strlen(name));
    PUT(&t->body, "\":");
    put_tok(&t->body, t->s, v);
    return 0;
}

/* The first top-level field refused, in the body's order, as Anthropic reports it. */
static int refused_field(struct tx *t, bool counting)
{
    const struct json_scan *s = t->s;
    int key = 1;
    for (int m = 0; m < json_scan_size(s, 0); m++, key = json_scan_skip(s, key + 1)) {
        const char *name = decoded(t, key);
        const struct top_field *f = top_field(name);
        if (f == NULL || (counting && !f->counts))
            return bad(t->err, "%s: Extra inputs are not permitted", name);
        if (f->use == REFUSE)
            return bad(t->err,
                       "%s: this gateway does not support it (its targets cannot provide it)",
                       name);
    }
    return bad(t->err, "request body: a field is not permitted");
}

/* The whole body (an object) as an OpenAI chat body in t->body. @return 0, or -1 with err. */
static int translate(struct tx *t, bool counting)
{
    const struct json_scan *s = t->s;
    struct out *o = &t->body;
    const char *names[N_TOP_FIELDS];
    int v[N_TOP_FIELDS], known = 0;
    bool refuse = false;
    for (size_t k = 0; k < N_TOP_FIELDS; k++) names[k] = top_fields[k].name;
    json_scan_members(s, 0, names, N_TOP_FIELDS, v);
    for (size_t k = 0; k < N_TOP_FIELDS; k++)
        if (v[k] >= 0) {
            known++; /* no key twice: the checked scan refused those */
            if (top_fields[k].use == REFUSE || (counting && !top_fields[k].counts)) refuse = true;
        }
    if (refuse || known != json_scan_size(s, 0)) return refused_field(t, counting);
    int model = v[F_MODEL], mt = v[F_MAX_TOKENS], x;
    if (model < 0) return bad(t->err, "model: Field required");
    if (!json_scan_is_string(s, model) || tok_len(s, model) == 0)
        return bad(t->err, "model: Input should be a non-empty string");
    PUT(o, "{\"model\":");
    put_tok(o, s, model);
    if (!counting) {
        long long n;
        if (mt < 0) return bad(t->err, "max_tokens: Field required");
        if (!json_scan_integer(s, mt, &n) || n < 1)
            return bad(t->err, "max_tokens: Input should be an integer of at least 1");
        PUT(o, ",\"max_tokens\":");
        put_tok(o, s, mt);
    }
    PUT(o, ",\"messages\":[");
    if (translate_system(t, v[F_SYSTEM]) != 0) return -1;
    if (v[F_MESSAGES] < 0) return bad(t->err, "messages: Field required");
    if (translate_messages(t, v[F_MESSAGES]) != 0) return -1;
    PUT(o, "]");
    if ((x = v[F_STREAM]) >= 0) {
        if (!json_scan_is_bool(s, x)) return bad(t->err, "stream: Input should be a valid boolean");
        PUT(o, ",\"stream\":");
        put_tok(o, s, x);
    }
    if (number_in(t, v[F_TEMPERATURE], "temperature", 0, 1) != 0) return -1;
    if (number_in(t, v[F_TOP_P], "top_p", 0, 1) != 0) return -1;
    if ((x = v[F_TOP_K]) >= 0 && (!json_scan_is_integer(s, x) || int_of(s, x) < 0))
        return bad(t->err, "top_k: Input should be a non-negative integer");
    if ((x = v[F_STOP_SEQUENCES]) >= 0) {
        if (!json_scan_is_array(s, x))
            return bad(t->err, "stop_sequences: Input should be a valid list, got %s",
                       type_name(s, x));
        int e = x + 1;
        for (int k = 0; k < json_scan_size(s, x); k++, e = json_scan_skip(s, e))
            if (!json_scan_is_string(s, e) || tok_len(s, e) == 0)
                return bad(t->err, "stop_sequences.%d: Input should be a non-empty string", k);
        if (json_scan_size(s, x)) {
            PUT(o, ",\"stop\":");
            put_tok(o, s, x);
        }
    }
    if ((x = v[F_METADATA]) >= 0) {
        int user = json_scan_get(s, x, "user_id");
        if (!json_scan_is_object(s, x) ||
            (user >= 0 && !json_scan_is_string(s, user) && !json_scan_is_null(s, user)))
            return bad(t->err, "metadata: Input should be an object with a string user_id");
        if (json_scan_is_string(s, user)) {
            PUT(o, ",\"user\":");
            put_tok(o, s, user);
        }
    }
    if ((x = v[F_THINKING]) >= 0 && !is(t, type_of(s, x), "disabled"))
        return bad(t->err, "thinking: extended thinking is not supported by this gateway (its "
                           "targets return no thinking blocks); leave it out or send "
                           "{\"type\":\"disabled\"}");
    if ((x = v[F_OUTPUT_CONFIG]) >= 0) {
        int fmt = json_scan_get(s, x, "format");
        if (!json_scan_is_object(s, x) ||
            (fmt >= 0 && !json_scan_is_null(s, fmt) && !json_scan_is_object(s, fmt)))
            return bad(t->err, "output_config: Input should be an object (effort, format)");
        if (json_scan_is_object(s, fmt)) {
            int schema = json_scan_get(s, fmt, "schema");
            if (!is(t, type_of(s, fmt), "json_schema") || !json_scan_is_object(s, schema))
                return bad(t->err,
                           "output_config.format: Input should be {\"type\":\"json_schema\", "
                           "\"schema\":{...}}");
            PUT(o, ",\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":"
                   "\"output\",\"schema\":");
            put_tok(o, s, schema);
            PUT(o, ",\"strict\":true}}");
        }
        /* effort is a hint about how hard to think: no target here takes it */
    }
    if (translate_tools(t, v[F_TOOLS], v[F_TOOL_CHOICE]) != 0) return -1;
    PUT(o, "}");
    return 0;
}

/* The body scanned within the request model's limits: strict JSON (every string copied into
 * the translation is valid JSON text), no key twice, bounded in size and depth. */
static int load_body(struct http_request *req, struct arena *a, struct json_scan *s,
                     struct err *err)
{
    size_t len = evbuffer_get_length(req->body);
    const char *bytes = len ? (const char *)evbuffer_pullup(req->body, -1) : "";
    if (len == 0) return bad(err, "request body is empty; expected a JSON object");
    struct json_scan_fault f;
    if (json_scan_parse_checked(s, bytes, len, a, &scan_limits, &f) != 0) {
        if (f.status == JSON_SCAN_OOM) return err_oom(err);
        if (f.status == JSON_SCAN_TOO_MANY_TOKENS || f.status == JSON_SCAN_TOO_DEEP ||
            f.status == JSON_SCAN_TOO_MANY_MEMBERS)
            return bad(err,
                       "request body is beyond the gateway's limits (%d values, %d levels of "
                       "nesting, %d keys in an object)",
                       OPENAI_MAX_JSON_VALUES, OPENAI_MAX_DEPTH, OPENAI_MAX_OBJECT_MEMBERS);
        if (f.status == JSON_SCAN_DUPLICATE_KEY)
            return bad(err, "request body has a key twice in one object (at byte %zu)", f.offset);
        /* the precise reason (line, column) comes from jansson, on this error path only */
        json_error_t jerr;
        json_t *j = json_loadb(bytes, len, 0, &jerr);
        if (j == NULL)
            bad(err, "request body is not valid JSON: %s at line %d column %d", jerr.text,
                jerr.line, jerr.column);
        else
            bad(err, "request body is not valid JSON (%s at byte %zu)",
                f.why && f.why[0] ? f.why : "refused", f.offset);
        json_decref(j);
        return -1;
    }
    if (!json_scan_is_object(s, 0))
        return bad(err, "request body must be a JSON object, got %s", type_name(s, 0));
    return 0;
}

/* Scans and translates the request's body into t (t->body: the OpenAI chat body, arena). */
static int translate_body(struct http_request *req, bool counting, struct json_scan *s,
                          struct tx *t, struct err *err)
{
    struct arena *a = req->arena;
    if (load_body(req, a, s, err) != 0) return -1;
    *t = (struct tx){.s = s, .arena = a, .err = err};
    out_init(&t->body, a, s->len + s->len / 4 + 256);
    out_init(&t->a, a, 0);
    out_init(&t->b, a, 0);
    if (translate(t, counting) != 0) return -1;
    if (t->body.oom || t->a.oom || t->b.oom) return err_oom(err);
    return 0;
}

static int anthropic_parse(struct exchange *x, enum openai_endpoint endpoint, struct err *err)
{
    struct arena *a = x->req->arena;
    struct json_scan s;
    struct tx t;
    if (translate_body(x->req, false, &s, &t, err) != 0) return -1;
    struct openai_request *r = arena_alloc(a, sizeof *r);
    if (r == NULL) return err_oom(err);
    /* the model borrows t.body, which lives in the request arena */
    if (openai_parse_request(endpoint, t.body.p, t.body.len, a, r, err) != 0) return -1;
    /* An Anthropic target gets the client's own body (passthrough): nothing is lost to a
     * translation there and back (stop_sequence, cache counts, citations, new fields). */
    int m = json_scan_get(&s, 0, "model");
    if (m > 0) {
        r->native_dialect = DIALECT_ANTHROPIC;
        r->native_body = s.js;
        r->native_len = s.len;
        r->native_model_at = (size_t)s.tok[m].start - 1;
        r->native_model_len = (size_t)(s.tok[m].end - s.tok[m].start) + 2;
    }
    x->request = r;
    return 0;
}

/* ---- answers: OpenAI → Anthropic --------------------------------------------------------- */

/* An answer or chunk from the target, scanned strictly (as jansson would read it), so every
 * string copied from it into the client's answer is valid JSON text.
 * @return 0, 1 when it is not a JSON object, -1 out of memory. */
static int scan_answer(struct json_scan *s, const char *json, size_t len, struct arena *a)
{
    struct json_scan_fault f;
    if (json_scan_parse_checked(s, json, len, a, &scan_limits, &f) != 0)
        return f.status == JSON_SCAN_OOM ? -1 : 1;
    return json_scan_is_object(s, 0) ? 0 : 1;
}

static const char *stop_reason(const char *finish)
{
    if (finish == NULL) return "end_turn";
    if (strcmp(finish, "length") == 0) return "max_tokens";
    if (strcmp(finish, "tool_calls") == 0 || strcmp(finish, "function_call") == 0)
        return "tool_use";
    if (strcmp(finish, "content_filter") == 0) return "refusal";
    return "end_turn";
}

/* The stop sequence that ended the answer, when the target says which: OpenAI's API does not,
 * vLLM puts the matched string in the choice's `stop_reason`. Believed only when it is one of
 * the request's own stop sequences; otherwise the answer simply ended (end_turn).
 * @return it unescaped (in `a`), or NULL. */
static const char *matched_stop(const struct exchange *x, const struct json_scan *s, int choice,
                                struct arena *a)
{
    int said = json_scan_get(s, choice, "stop_reason");
    if (!str_is(s, json_scan_get(s, choice, "finish_reason"), "stop", a) ||
        !json_scan_is_string(s, said) || tok_len(s, said) == 0)
        return NULL;
    const char *d = str_dup(s, said, a);
    const struct json_scan *sc = &x->request->scan;
    int stop = json_scan_get(sc, 0, "stop");
    if (d == NULL || !json_scan_is_array(sc, stop)) return NULL;
    int i = stop + 1;
    for (int k = 0; k < json_scan_size(sc, stop); k++, i = json_scan_skip(sc, i))
        if (str_is(sc, i, d, a)) return d;
    return NULL;
}

/* msg_ + the upstream's id without OpenAI's prefix; an Anthropic target's id is kept as is. */
static void message_id(const char *upstream, char *out, size_t cap)
{
    if (upstream == NULL || upstream[0] == '\0') upstream = "stratus";
    if (strncmp(upstream, "msg_", 4) == 0) {
        snprintf(out, cap, "%s", upstream);
        return;
    }
    if (strncmp(upstream, "chatcmpl-", 9) == 0) upstream += 9;
    snprintf(out, cap, "msg_%s", upstream);
}

/* The counts an OpenAI usage object holds (0 for each one missing). */
struct counts {
    bool have;
    long long prompt, completion, cached;
};

static struct counts counts_of(const struct json_scan *s, int usage)
{
    if (!json_scan_is_object(s, usage)) return (struct counts){0};
    int details = json_scan_get(s, usage, "prompt_tokens_details");
    return (struct counts){
        .have = true,
        .prompt = int_of(s, json_scan_get(s, usage, "prompt_tokens")),
        .completion = int_of(s, json_scan_get(s, usage, "completion_tokens")),
        .cached = int_of(s, json_scan_get(s, details, "cached_tokens")),
    };
}

/* The usage the gateway accounted (what the ledger and the cost say), else the answer's. */
static void usage_of(const struct exchange *x, struct counts c, long long *in, long long *out,
                     long long *cached)
{
    *in = *out = -1;
    *cached = 0;
    if (x->call) {
        const struct call_info *ci = call_info(x->call);
        if (ci->accounted && ci->usage.prompt >= 0) {
            *in = ci->usage.prompt;
            *out = ci->usage.completion;
            *cached = ci->usage.cached > 0 ? ci->usage.cached : 0;
        }
    }
    if (*in < 0 && c.have) {
        *in = c.prompt;
        *out = c.completion;
        *cached = c.cached;
    }
    if (*in < 0) *in = 0;
    if (*out < 0) *out = 0;
    if (*cached > *in) *cached = *in;
}

/* Anthropic's usage; its input_tokens leave out what was read from a cache (counted apart),
 * OpenAI's prompt_tokens include it. */
static void put_usage(struct out *o, const struct exchange *x, struct counts c)
{
    long long in, out, cached;
    usage_of(x, c, &in, &out, &cached);
    PUT(o, "{\"input_tokens\":");
    put_int(o, in - cached);
    PUT(o, ",\"output_tokens\":");
    put_int(o, out);
    if (cached > 0) {
        PUT(o, ",\"cache_read_input_tokens\":");
        put_int(o, cached);
    }
    PUT(o, "}");
}

/* The message's text as a text block (after `,` when not the first): a string, or content
 * parts' texts joined (some servers answer that way); nothing when it is empty. */
static void put_text_block(struct out *o, const struct json_scan *s, int content)
{
    size_t mark = o->len;
    PUT(o, "{\"type\":\"text\",\"text\":\"");
    size_t start = o->len;
    if (json_scan_is_string(s, content)) {
        put_inner(o, s, content);
    } else if (json_scan_is_array(s, content)) {
        int p = content + 1;
        for (int k = 0; k < json_scan_size(s, content); k++, p = json_scan_skip(s, p)) {
            int str = json_scan_get(s, p, "text");
            if (json_scan_is_string(s, str)) put_inner(o, s, str);
        }
    }
    if (o->len == start) {
        o->len = mark; /* no text: no block */
        return;
    }
    PUT(o, "\"}");
}

/* A tool call's arguments (a string holding JSON) as the tool_use block's input object. */
static int put_input(struct out *o, const struct json_scan *s, int args, size_t k, struct arena *a,
                     struct err *err)
{
    if (!json_scan_is_string(s, args) || tok_len(s, args) == 0) {
        PUT(o, "{}");
        return 0;
    }
    const char *json = str_dup(s, args, a); /* the one value that must be decoded */
    struct json_scan in = {0};
    int rc = json ? scan_answer(&in, json, strlen(json), a) : -1;
    if (rc < 0) return err_oom(err);
    if (rc > 0)
        /* Anthropic's input is an object; handing over something else would break the
         * client's tool dispatch later and further from the cause. */
        return err_set(err, 502, "upstream_error", "bad_upstream_response",
                       "the target called tool %zu with arguments that are not a JSON object", k);
    put_compact(o, &in, 0, false);
    return 0;
}

/* A chat.completion as a Message in `o` (request arena); -1 with `err` when it cannot be one. */
static int message_json(const struct exchange *x, const char *json, size_t len, struct out *o,
                        struct err *err)
{
    struct arena *a = x->req->arena;
    struct json_scan s = {0};
    int rc = scan_answer(&s, json, len, a);
    if (rc < 0) return err_oom(err);
    int choice = rc == 0 ? first_of(&s, json_scan_get(&s, 0, "choices")) : -1;
    int m = json_scan_get(&s, choice, "message");
    if (!json_scan_is_object(&s, m))
        return err_set(err, 502, "upstream_error", "bad_upstream_response",
                       "the target's answer has no message");
    char idbuf[96];
    message_id(str_dup(&s, json_scan_get(&s, 0, "id"), a), idbuf, sizeof idbuf);
    out_init(o, a, len + 256);
    PUT(o, "{\"id\":");
    put_str(o, idbuf, strlen(idbuf));
    PUT(o, ",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
    put_tok(o, &x->request->scan, x->request->model_tok);
    PUT(o, ",\"content\":[");
    size_t content_at = o->len;
    put_text_block(o, &s, json_scan_get(&s, m, "content"));
    int calls = json_scan_get(&s, m, "tool_calls"), tc = calls + 1;
    for (int k = 0; json_scan_is_array(&s, calls) && k < json_scan_size(&s, calls);
         k++, tc = json_scan_skip(&s, tc)) {
        int fn = json_scan_get(&s, tc, "function"), id = json_scan_get(&s, tc, "id");
        int name = json_scan_get(&s, fn, "name");
        if (o->len != content_at) PUT(o, ",");
        PUT(o, "{\"type\":\"tool_use\",\"id\":");
        if (json_scan_is_string(&s, id)) {
            put_tok(o, &s, id);
        } else {
            PUT(o, "\"toolu_");
            put_int(o, k);
            PUT(o, "\"");
        }
        PUT(o, ",\"name\":");
        if (json_scan_is_string(&s, name))
            put_tok(o, &s, name);
        else
            PUT(o, "\"\"");
        PUT(o, ",\"input\":");
        if (put_input(o, &s, json_scan_get(&s, fn, "arguments"), (size_t)k, a, err) != 0) return -1;
        PUT(o, "}");
    }
    const char *stop = matched_stop(x, &s, choice, a);
    PUT(o, "],\"stop_reason\":\"");
    const char *reason =
        stop ? "stop_sequence"
             : stop_reason(str_dup(&s, json_scan_get(&s, choice, "finish_reason"), a));
    put(o, reason, strlen(reason));
    PUT(o, "\",\"stop_sequence\":");
    if (stop)
        put_str(o, stop, strlen(stop));
    else
        PUT(o, "null");
    PUT(o, ",\"usage\":");
    put_usage(o, x, counts_of(&s, json_scan_get(&s, 0, "usage")));
    PUT(o, "}");
    return o->oom ? err_oom(err) : 0;
}

static void anthropic_body(struct exchange *x, int status, const char *json, size_t len)
{
    struct err e;
    struct out o;
    err_clear(&e);
    const struct call_info *in = x->call ? call_info(x->call) : NULL;
    if (in && in->native_answer) { /* an Anthropic target's own Message, as it came */
        http_respond(x->req, status, "application/json", in->native_answer, in->native_answer_len);
        return;
    }
    if (message_json(x, json, len, &o, &e) != 0) {
        respond_error(x->req, e.status, e.msg, NULL);
        return;
    }
    http_respond(x->req, status, "application/json", o.p, o.len);
}

/* ---- streams ----------------------------------------------------------------------------- */

static void free_state(void *ud)
{
    struct anthropic_state *st = ud;
    if (st->out) evbuffer_free(st->out);
}

static struct evbuffer *out_buffer(struct exchange *x)
{
    struct anthropic_state *st = x->state;
    if (st->out == NULL && (st->out = evbuffer_new()) != NULL &&
        arena_on_free(x->req->arena, free_state, st) != 0) {
        evbuffer_free(st->out);
        st->out = NULL;
    }
    return st->out;
}

/* "event: <type>\ndata: " — the event's JSON and "\n\n" follow. */
static void event(struct out *o, const char *type)
{
    PUT(o, "event: ");
    put(o, type, strlen(type));
    PUT(o, "\ndata: ");
}

static void close_block(struct anthropic_state *st, struct out *o)
{
    if (!st->open) return;
    st->open = false;
    event(o, "content_block_stop");
    PUT(o, "{\"type\":\"content_block_stop\",\"index\":");
    put_int(o, st->blocks - 1);
    PUT(o, "}\n\n");
}

/* Opens the next block: its content_block (an object) and "}\n\n" follow. */
static void open_block(struct anthropic_state *st, struct out *o, int tool)
{
    close_block(st, o);
    st->open = true;
    st->open_tool = tool;
    event(o, "content_block_start");
    PUT(o, "{\"type\":\"content_block_start\",\"index\":");
    put_int(o, st->blocks++);
    PUT(o, ",\"content_block\":");
}

/* A content_block_delta for the open block: its delta's members follow, then "}}\n\n". */
static void block_delta(struct anthropic_state *st, struct out *o, const char *type)
{
    event(o, "content_block_delta");
    PUT(o, "{\"type\":\"content_block_delta\",\"index\":");
    put_int(o, st->blocks - 1);
    PUT(o, ",\"delta\":{\"type\":\"");
    put(o, type, strlen(type));
    PUT(o, "\",");
}

static void message_start(struct exchange *x, struct out *o, const char *upstream_id)
{
    struct anthropic_state *st = x->state;
    st->started = true;
    message_id(upstream_id, st->id, sizeof st->id);
    /* The prompt's token count is known only when the upstream's usage arrives at the end:
     * 0 here, the real count in message_delta (the SDKs take it from there). */
    event(o, "message_start");
    PUT(o, "{\"type\":\"message_start\",\"message\":{\"id\":");
    put_str(o, st->id, strlen(st->id));
    PUT(o, ",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
    put_tok(o, &x->request->scan, x->request->model_tok);
    PUT(o, ",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":"
           "{\"input_tokens\":0,\"output_tokens\":0}}}\n\n");
}

static void tool_delta(struct anthropic_state *st, struct out *o, const struct json_scan *s, int tc)
{
    int fn = json_scan_get(s, tc, "function");
    int index = (int)int_of(s, json_scan_get(s, tc, "index"));
    if (!st->open || st->open_tool != index) {
        int id = json_scan_get(s, tc, "id"), name = json_scan_get(s, fn, "name");
        open_block(st, o, index);
        PUT(o, "{\"type\":\"tool_use\",\"id\":");
        if (json_scan_is_string(s, id)) {
            put_tok(o, s, id);
        } else {
            PUT(o, "\"toolu_");
            put_int(o, index);
            PUT(o, "\"");
        }
        PUT(o, ",\"name\":");
        if (json_scan_is_string(s, name))
            put_tok(o, s, name);
        else
            PUT(o, "\"\"");
        PUT(o, ",\"input\":{}}}\n\n");
    }
    int args = json_scan_get(s, fn, "arguments");
    if (!json_scan_is_string(s, args) || tok_len(s, args) == 0) return;
    block_delta(st, o, "input_json_delta");
    PUT(o, "\"partial_json\":");
    put_tok(o, s, args);
    PUT(o, "}}\n\n");
}

/* One chunk's events, written into `o` (the chunk's own scratch arena). */
static int chunk_events(struct exchange *x, const struct call_chunk *ch, struct arena *a,
                        struct out *o)
{
    struct anthropic_state *st = x->state;
    struct json_scan s = {0};
    int rc = scan_answer(&s, ch->json, ch->len, a);
    if (rc < 0) return -1;
    int doc = rc == 0 ? 0 : -1; /* a chunk that is not an object reads as an empty one */
    struct counts c = counts_of(&s, json_scan_get(&s, doc, "usage"));
    if (c.have) { /* kept for when there is no call to ask (unit tests) */
        st->have_usage = true;
        st->prompt = c.prompt;
        st->completion = c.completion;
    }
    if (ch->usage_only) return 0; /* the counts go out in message_delta */
    if (!st->started) message_start(x, o, str_dup(&s, json_scan_get(&s, doc, "id"), a));
    int choice = first_of(&s, json_scan_get(&s, doc, "choices"));
    int delta = json_scan_get(&s, choice, "delta");
    int text = json_scan_get(&s, delta, "content");
    if (json_scan_is_string(&s, text) && tok_len(&s, text)) {
        if (!st->open || st->open_tool != -1) {
            open_block(st, o, -1);
            PUT(o, "{\"type\":\"text\",\"text\":\"\"}}\n\n");
        }
        block_delta(st, o, "text_delta");
        PUT(o, "\"text\":");
        put_tok(o, &s, text);
        PUT(o, "}}\n\n");
    }
    int calls = json_scan_get(&s, delta, "tool_calls"), tc = calls + 1;
    for (int k = 0; json_scan_is_array(&s, calls) && k < json_scan_size(&s, calls);
         k++, tc = json_scan_skip(&s, tc))
        tool_delta(st, o, &s, tc);
    int finish = json_scan_get(&s, choice, "finish_reason");
    if (json_scan_is_string(&s, finish)) {
        const char *f = str_dup(&s, finish, a);
        if (f == NULL) return -1;
        snprintf(st->finish, sizeof st->finish, "%s", f);
    }
    const char *stop = matched_stop(x, &s, choice, a);
    if (stop && (st->stop_sequence = arena_strdup(x->req->arena, stop)) == NULL) return -1;
    return o->oom ? -1 : 1;
}

static int anthropic_raw(struct exchange *x, const char *bytes, size_t len)
{
    struct evbuffer *out = out_buffer(x);
    return out && evbuffer_add(out, bytes, len) == 0 ? 0 : -1;
}

static int anthropic_chunk(struct exchange *x, const struct call_chunk *ch)
{
    if (x->call && call_info(x->call)->native) return 0; /* its bytes went as they came */
    /* The chunk's scan and events live in a scratch arena of their own: a long stream must
     * not grow the request's arena chunk by chunk. */
    struct arena *a = arena_new(16384);
    struct evbuffer *out = ch->usage_only ? NULL : out_buffer(x);
    if (a == NULL || (!ch->usage_only && out == NULL)) {
        arena_free(a);
        return -1;
    }
    struct out o;
    out_init(&o, a, 1024);
    int rc = chunk_events(x, ch, a, &o);
    if (rc > 0 && o.len && evbuffer_add(out, o.p, o.len) != 0) rc = -1;
    arena_free(a);
    return rc;
}

static void anthropic_start(struct exchange *x, int status)
{
    http_stream_start(x->req, status, "text/event-stream");
}

static int anthropic_flush(struct exchange *x)
{
    struct anthropic_state *st = x->state;
    size_t len = st->out ? evbuffer_get_length(st->out) : 0;
    if (len == 0) return 0;
    int rc = http_stream_write(x->req, (const char *)evbuffer_pullup(st->out, -1), len);
    evbuffer_drain(st->out, len);
    return rc;
}

/* The closing events: the open block, the stop reason and the usage, message_stop. */
static void stream_close(struct exchange *x, struct out *o)
{
    struct anthropic_state *st = x->state;
    if (!st->started) message_start(x, o, NULL);
    close_block(st, o);
    event(o, "message_delta");
    PUT(o, "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"");
    const char *reason =
        st->stop_sequence ? "stop_sequence" : stop_reason(st->finish[0] ? st->finish : NULL);
    put(o, reason, strlen(reason));
    PUT(o, "\",\"stop_sequence\":");
    if (st->stop_sequence)
        put_str(o, st->stop_sequence, strlen(st->stop_sequence));
    else
        PUT(o, "null");
    PUT(o, "},\"usage\":");
    put_usage(o, x,
              (struct counts){
                  .have = st->have_usage, .prompt = st->prompt, .completion = st->completion});
    PUT(o, "}\n\n");
    event(o, "message_stop");
    PUT(o, "{\"type\":\"message_stop\"}\n\n");
}

static void anthropic_end(struct exchange *x, const char *error)
{
    struct evbuffer *out = out_buffer(x);
    if (out == NULL) {
        http_stream_end(x->req);
        return;
    }
    if (error == NULL && x->call && call_info(x->call)->native) {
        /* The target's own message_stop went out with its bytes. */
        anthropic_flush(x);
        http_stream_end(x->req);
        return;
    }
    struct out o;
    out_init(&o, x->req->arena, 1024);
    if (error == NULL) {
        stream_close(x, &o);
        if (o.oom) /* no memory for the close: say so, as an error */
            error = "out of memory";
        else
            evbuffer_add(out, o.p, o.len);
    }
    if (error != NULL) {
        /* what was queued goes first, then Anthropic's stream error event */
        o.len = 0;
        event(&o, "error");
        PUT(&o, "{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":");
        put_str(&o, error, strlen(error));
        PUT(&o, "}}\n\n");
        if (o.oom || evbuffer_add(out, o.p, o.len) != 0)
            evbuffer_add_printf(out, "event: error\ndata: {\"type\":\"error\",\"error\":{"
                                     "\"type\":\"api_error\",\"message\":\"stream broken\"}}\n\n");
    }
    anthropic_flush(x);
    http_stream_end(x->req);
}

/* ---- count_tokens ------------------------------------------------------------------------ */

/* A flat count per image: Anthropic's documented cost of an image at its size limit
 * (~1.15 megapixels ≈ 1,600 tokens); the pixels are not decoded here. */
#define IMAGE_TOKENS 1600

static size_t text_bytes(json_t *content, size_t *images)
{
    if (json_is_string(content)) return json_string_length(content);
    size_t n = 0, k;
    json_t *p;
    json_array_foreach(content, k, p)
    {
        json_t *t = json_object_get(p, "text");
        if (json_is_string(t))
            n += json_string_length(t);
        else if (json_object_get(p, "image_url"))
            (*images)++;
    }
    return n;
}

/* About 4 bytes a token over everything the model reads as text, the same rule the router
 * ranks and reserves budgets by; images at a flat rate. */
static long long estimate_tokens(json_t *chat)
{
    size_t bytes = 0, images = 0, k, j;
    json_t *m, *tc;
    json_array_foreach(json_object_get(chat, "messages"), k, m)
    {
        bytes += text_bytes(json_object_get(m, "content"), &images);
        json_array_foreach(json_object_get(m, "tool_calls"), j, tc)
        {
            json_t *fn = json_object_get(tc, "function");
            bytes += json_string_length(json_object_get(fn, "name")) +
                     json_string_length(json_object_get(fn, "arguments"));
        }
    }
    json_t *tools = json_object_get(chat, "tools");
    if (json_array_size(tools)) {
        char *s = json_dumps(tools, JSON_COMPACT | JSON_TEXT_REALS);
        bytes += s ? strlen(s) : 0;
        free(s);
    }
    return (long long)((bytes + 3) / 4 + images * IMAGE_TOKENS);
}

static void count_refuse(struct http_request *req, const struct err *e)
{
    api_log(req, e->status, e->msg);
    respond_error(req, e->status, e->msg, NULL);
}

void anthropic_count_tokens(struct app *app, struct http_request *req, const struct principal *who)
{
    struct err e;
    struct json_scan s;
    struct tx t;
    err_clear(&e);
    /* not on the hot path: the estimate walks a document of the translated body */
    json_t *chat = translate_body(req, true, &s, &t, &e) == 0
                       ? json_loadb(t.body.p, t.body.len, 0, NULL)
                       : NULL;
    if (chat == NULL) {
        if (e.status == 0) err_oom(&e);
        count_refuse(req, &e);
        return;
    }
    const char *model = json_string_value(json_object_get(chat, "model"));
    if (config_find_model(app->gen->cfg, model) == NULL) {
        err_set(&e, 404, "invalid_request_error", "model_not_found",
                "model: '%s' does not exist; GET /v1/models lists the models", model);
        count_refuse(req, &e);
    } else if (who->kind == PRINCIPAL_KEY && !key_allows_model(&who->key, model)) {
        err_set(&e, 403, "permission_error", "model_not_allowed", "this key may not use model '%s'",
                model);
        count_refuse(req, &e);
    } else {
        api_respond_json(req, 200,
                         json_pack("{s:I}", "input_tokens", (json_int_t)estimate_tokens(chat)));
    }
    json_decref(chat);
}

const struct surface_ops surface_anthropic = {
    .name = "anthropic",
    .state_size = sizeof(struct anthropic_state),
    .credential = anthropic_credential,
    .parse = anthropic_parse,
    .start = anthropic_start,
    .chunk = anthropic_chunk,
    .raw = anthropic_raw,
    .flush = anthropic_flush,
    .end = anthropic_end,
    .body = anthropic_body,
    .error = anthropic_error,
};
