/*
 * DESIGN: see surface_anthropic.h. The request side re-tells the Anthropic body as the OpenAI
 * chat body it means and hands that to openai_parse_request, so admission, routing, every
 * provider and the ledger see one request model and nothing below api/ learns a second
 * format. The cost is one jansson document per request; the body is first scanned within the
 * request model's limits (util/json_scan) so a hostile body cannot make that document huge.
 * Checks that Anthropic makes and OpenAI does not (max_tokens required, temperature 0..1,
 * unknown top-level fields) happen here, with Anthropic's field paths in the message.
 *
 * The answer side never sees the target's own format: translating providers already turned
 * it into OpenAI data (route/call.h), so one translation (OpenAI → Anthropic) serves every
 * backend. Streams keep a little state: OpenAI deltas are flat, Anthropic's live in numbered
 * content blocks that must be opened and closed in order.
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
#include "guard/guard.h"
#include "http/server.h"
#include "util/arena.h"
#include "util/json_scan.h"

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
    char *s = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
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

static const struct top_field top_fields[] = {
    {"model", USE, true},
    {"messages", USE, true},
    {"max_tokens", USE, false},
    {"system", USE, true},
    {"metadata", USE, false},
    {"stop_sequences", USE, false},
    {"stream", USE, false},
    {"temperature", USE, false},
    {"top_p", USE, false},
    {"top_k", IGNORE, false}, /* OpenAI has no top_k; strict targets would refuse it */
    {"tools", USE, true},
    {"tool_choice", USE, true},
    {"thinking", USE, true}, /* "disabled" only: see translate() */
    {"output_config", USE, true},
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
    for (size_t i = 0; i < sizeof top_fields / sizeof top_fields[0]; i++)
        if (strcmp(top_fields[i].name, name) == 0) return &top_fields[i];
    return NULL;
}

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "a list";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "?";
}

static const char *block_type(const json_t *b)
{
    return json_string_value(json_object_get(b, "type"));
}

/* A tool_result's content as the text of an OpenAI tool message (text blocks joined). */
static int tool_result_text(json_t *content, const char *path, struct err *err, json_t **out)
{
    if (content == NULL || json_is_null(content)) {
        *out = json_string("");
        return 0;
    }
    if (json_is_string(content)) {
        *out = json_incref(content);
        return 0;
    }
    if (!json_is_array(content))
        return bad(err, "%s.content: Input should be a valid string or list", path);
    size_t total = 0, k;
    json_t *b;
    json_array_foreach(content, k, b)
    {
        const char *t = block_type(b);
        if (t == NULL || strcmp(t, "text") != 0 || !json_is_string(json_object_get(b, "text")))
            return bad(err,
                       "%s.content.%zu: only text blocks are supported in a tool_result by this "
                       "gateway (its targets take tool output as text)",
                       path, k);
        total += json_string_length(json_object_get(b, "text")) + 1;
    }
    char *s = malloc(total + 1), *p = s;
    if (s == NULL) return err_oom(err);
    json_array_foreach(content, k, b)
    {
        json_t *t = json_object_get(b, "text");
        if (k) *p++ = '\n';
        memcpy(p, json_string_value(t), json_string_length(t));
        p += json_string_length(t);
    }
    *out = json_stringn(s, (size_t)(p - s));
    free(s);
    return *out ? 0 : err_oom(err);
}

/* An image block as an OpenAI image_url part: base64 becomes a data: URL, a url source
 * stays a URL (whether the target can fetch it is the target's business). */
static json_t *image_part(json_t *b, const char *path, struct err *err)
{
    json_t *src = json_object_get(b, "source");
    const char *st = block_type(src);
    if (!json_is_object(src) || st == NULL) {
        bad(err, "%s.source: Input should be an object with a type", path);
        return NULL;
    }
    char *url = NULL;
    if (strcmp(st, "base64") == 0) {
        const char *mt = json_string_value(json_object_get(src, "media_type"));
        json_t *data = json_object_get(src, "data");
        if (mt == NULL || !json_is_string(data)) {
            bad(err, "%s.source: a base64 source needs string media_type and data", path);
            return NULL;
        }
        size_t n = strlen(mt) + json_string_length(data) + 16;
        if ((url = malloc(n)) == NULL) {
            err_oom(err);
            return NULL;
        }
        snprintf(url, n, "data:%s;base64,%s", mt, json_string_value(data));
    } else if (strcmp(st, "url") == 0 && json_is_string(json_object_get(src, "url"))) {
        url = strdup(json_string_value(json_object_get(src, "url")));
        if (url == NULL) {
            err_oom(err);
            return NULL;
        }
    } else {
        bad(err, "%s.source.type: '%s' is not supported by this gateway (base64, url)", path, st);
        return NULL;
    }
    json_t *part = json_pack("{s:s, s:{s:s}}", "type", "image_url", "image_url", "url", url);
    free(url);
    if (part == NULL) err_oom(err);
    return part;
}

/* One user turn: tool results become OpenAI tool messages (first: they answer the previous
 * assistant turn's calls, and OpenAI wants them right after it), the rest one user message. */
static int user_turn(json_t *content, const char *path, json_t *out, struct err *err)
{
    json_t *parts = json_array(), *tools = json_array();
    int rc = -1;
    size_t k;
    json_t *b;
    char bp[64];
    json_array_foreach(content, k, b)
    {
        snprintf(bp, sizeof bp, "%s.%zu", path, k);
        const char *t = block_type(b);
        if (!json_is_object(b) || t == NULL) {
            bad(err, "%s: Input should be a content block (an object with a type)", bp);
            goto out;
        }
        if (strcmp(t, "text") == 0) {
            json_t *text = json_object_get(b, "text");
            if (!json_is_string(text)) {
                bad(err, "%s.text: Input should be a valid string", bp);
                goto out;
            }
            json_array_append_new(parts, json_pack("{s:s, s:O}", "type", "text", "text", text));
        } else if (strcmp(t, "image") == 0) {
            json_t *part = image_part(b, bp, err);
            if (part == NULL) goto out;
            json_array_append_new(parts, part);
        } else if (strcmp(t, "tool_result") == 0) {
            json_t *id = json_object_get(b, "tool_use_id"), *text = NULL;
            if (!json_is_string(id)) {
                bad(err, "%s.tool_use_id: Field required (a string)", bp);
                goto out;
            }
            if (tool_result_text(json_object_get(b, "content"), bp, err, &text) != 0) goto out;
            /* OpenAI tool messages have no error flag; the text says it instead. */
            if (json_is_true(json_object_get(b, "is_error"))) {
                char *s = malloc(json_string_length(text) + 8);
                if (s == NULL) {
                    json_decref(text);
                    err_oom(err);
                    goto out;
                }
                memcpy(s, "Error: ", 7);
                memcpy(s + 7, json_string_value(text), json_string_length(text));
                json_t *t2 = json_stringn(s, json_string_length(text) + 7);
                free(s);
                json_decref(text);
                text = t2;
            }
            json_array_append_new(tools, json_pack("{s:s, s:O, s:o}", "role", "tool",
                                                   "tool_call_id", id, "content", text));
        } else {
            bad(err, "%s.type: '%s' blocks are not supported by this gateway in user turns", bp, t);
            goto out;
        }
    }
    json_array_extend(out, tools);
    if (json_array_size(parts) == 1 && strcmp(block_type(json_array_get(parts, 0)), "text") == 0)
        json_array_append_new(out, json_pack("{s:s, s:O}", "role", "user", "content",
                                             json_object_get(json_array_get(parts, 0), "text")));
    else if (json_array_size(parts) > 0)
        json_array_append_new(out, json_pack("{s:s, s:O}", "role", "user", "content", parts));
    rc = 0;
out:
    json_decref(parts);
    json_decref(tools);
    return rc;
}

/* One assistant turn: text joined, tool_use blocks as tool_calls with their input as the
 * arguments string. Thinking blocks are earlier answers' reasoning; no target here takes
 * them back, so they are left out. */
static int assistant_turn(json_t *content, const char *path, json_t *out, struct err *err)
{
    json_t *calls = json_array(), *msg = NULL;
    struct evbuffer *text = evbuffer_new();
    int rc = -1;
    size_t k;
    json_t *b;
    char bp[64];
    if (calls == NULL || text == NULL) {
        err_oom(err);
        goto out;
    }
    json_array_foreach(content, k, b)
    {
        snprintf(bp, sizeof bp, "%s.%zu", path, k);
        const char *t = block_type(b);
        if (!json_is_object(b) || t == NULL) {
            bad(err, "%s: Input should be a content block (an object with a type)", bp);
            goto out;
        }
        if (strcmp(t, "text") == 0) {
            json_t *s = json_object_get(b, "text");
            if (!json_is_string(s)) {
                bad(err, "%s.text: Input should be a valid string", bp);
                goto out;
            }
            evbuffer_add(text, json_string_value(s), json_string_length(s));
        } else if (strcmp(t, "tool_use") == 0) {
            json_t *id = json_object_get(b, "id"), *name = json_object_get(b, "name");
            json_t *input = json_object_get(b, "input");
            if (!json_is_string(id) || !json_is_string(name) || !json_is_object(input)) {
                bad(err, "%s: a tool_use block needs a string id and name and an object input", bp);
                goto out;
            }
            char *args = json_dumps(input, JSON_COMPACT);
            if (args == NULL) {
                err_oom(err);
                goto out;
            }
            json_array_append_new(calls, json_pack("{s:O, s:s, s:{s:O, s:s}}", "id", id, "type",
                                                   "function", "function", "name", name,
                                                   "arguments", args));
            free(args);
        } else if (strcmp(t, "thinking") != 0 && strcmp(t, "redacted_thinking") != 0) {
            bad(err, "%s.type: '%s' blocks are not supported by this gateway in assistant turns",
                bp, t);
            goto out;
        }
    }
    size_t n = evbuffer_get_length(text);
    msg = json_pack("{s:s}", "role", "assistant");
    if (msg == NULL) {
        err_oom(err);
        goto out;
    }
    json_object_set_new(msg, "content",
                        n || !json_array_size(calls)
                            ? json_stringn(n ? (const char *)evbuffer_pullup(text, -1) : "", n)
                            : json_null());
    if (json_array_size(calls)) json_object_set(msg, "tool_calls", calls);
    json_array_append(out, msg);
    rc = 0;
out:
    if (text) evbuffer_free(text);
    json_decref(calls);
    json_decref(msg);
    return rc;
}

static int translate_messages(json_t *messages, json_t *out, struct err *err)
{
    if (!json_is_array(messages))
        return bad(err, "messages: Input should be a valid list, got %s", type_name(messages));
    if (json_array_size(messages) == 0)
        return bad(err, "messages: at least one message is required");
    size_t i;
    json_t *m;
    json_array_foreach(messages, i, m)
    {
        char path[48];
        snprintf(path, sizeof path, "messages.%zu", i);
        if (!json_is_object(m)) return bad(err, "%s: Input should be an object", path);
        const char *key;
        json_t *v;
        json_object_foreach(m, key, v)
        {
            if (strcmp(key, "role") != 0 && strcmp(key, "content") != 0)
                return bad(err, "%s.%s: Extra inputs are not permitted", path, key);
        }
        const char *role = json_string_value(json_object_get(m, "role"));
        if (role == NULL || (strcmp(role, "user") != 0 && strcmp(role, "assistant") != 0))
            return bad(err, "%s.role: Input should be 'user' or 'assistant'", path);
        json_t *content = json_object_get(m, "content");
        if (json_is_string(content)) {
            json_array_append_new(out, json_pack("{s:s, s:O}", "role", role, "content", content));
            continue;
        }
        if (!json_is_array(content))
            return bad(err, "%s.content: Input should be a valid string or list, got %s", path,
                       content ? type_name(content) : "nothing");
        strcat(path, ".content");
        if ((strcmp(role, "user") == 0 ? user_turn : assistant_turn)(content, path, out, err) != 0)
            return -1;
    }
    return 0;
}

static int translate_system(json_t *system, json_t *out, struct err *err)
{
    if (system == NULL) return 0;
    if (json_is_string(system)) {
        if (json_string_length(system))
            json_array_append_new(out,
                                  json_pack("{s:s, s:O}", "role", "system", "content", system));
        return 0;
    }
    if (!json_is_array(system))
        return bad(err, "system: Input should be a valid string or list, got %s",
                   type_name(system));
    json_t *parts = json_array();
    size_t k;
    json_t *b;
    json_array_foreach(system, k, b)
    {
        const char *t = block_type(b);
        json_t *text = json_object_get(b, "text");
        if (t == NULL || strcmp(t, "text") != 0 || !json_is_string(text)) {
            json_decref(parts);
            return bad(err, "system.%zu: Input should be a text block", k);
        }
        json_array_append_new(parts, json_pack("{s:s, s:O}", "type", "text", "text", text));
    }
    if (json_array_size(parts))
        json_array_append_new(out, json_pack("{s:s, s:o}", "role", "system", "content", parts));
    else
        json_decref(parts);
    return 0;
}

static int translate_tools(json_t *tools, json_t *choice, json_t *out, struct err *err)
{
    if (tools == NULL) return 0;
    if (!json_is_array(tools))
        return bad(err, "tools: Input should be a valid list, got %s", type_name(tools));
    json_t *fns = json_array();
    size_t k;
    json_t *t;
    json_array_foreach(tools, k, t)
    {
        const char *type = block_type(t);
        json_t *name = json_object_get(t, "name"), *schema = json_object_get(t, "input_schema");
        json_t *desc = json_object_get(t, "description");
        if (type && strcmp(type, "custom") != 0) {
            json_decref(fns);
            return bad(err,
                       "tools.%zu.type: '%s' is an Anthropic server tool; this gateway serves "
                       "only client tools (name, description, input_schema)",
                       k, type);
        }
        if (!json_is_string(name) || !json_is_object(schema) || (desc && !json_is_string(desc))) {
            json_decref(fns);
            return bad(err, "tools.%zu: a tool needs a string name and an object input_schema", k);
        }
        json_t *fn = json_pack("{s:O, s:O}", "name", name, "parameters", schema);
        if (desc) json_object_set(fn, "description", desc);
        json_array_append_new(fns, json_pack("{s:s, s:o}", "type", "function", "function", fn));
    }
    if (json_array_size(fns) == 0) {
        json_decref(fns);
        return 0;
    }
    json_object_set_new(out, "tools", fns);
    if (choice == NULL) return 0;
    const char *ct = block_type(choice);
    if (!json_is_object(choice) || ct == NULL)
        return bad(err, "tool_choice: Input should be an object with a type");
    if (strcmp(ct, "auto") == 0)
        json_object_set_new(out, "tool_choice", json_string("auto"));
    else if (strcmp(ct, "any") == 0)
        json_object_set_new(out, "tool_choice", json_string("required"));
    else if (strcmp(ct, "none") == 0)
        json_object_set_new(out, "tool_choice", json_string("none"));
    else if (strcmp(ct, "tool") == 0 && json_is_string(json_object_get(choice, "name")))
        json_object_set_new(out, "tool_choice",
                            json_pack("{s:s, s:{s:O}}", "type", "function", "function", "name",
                                      json_object_get(choice, "name")));
    else
        return bad(err, "tool_choice.type: Input should be 'auto', 'any', 'tool' (with a name) "
                        "or 'none'");
    if (json_is_true(json_object_get(choice, "disable_parallel_tool_use")))
        json_object_set_new(out, "parallel_tool_calls", json_false());
    return 0;
}

static int number_in(json_t *v, const char *name, double lo, double hi, struct err *err)
{
    if (!json_is_number(v))
        return bad(err, "%s: Input should be a valid number, got %s", name, type_name(v));
    double d = json_number_value(v);
    if (d < lo || d > hi)
        return bad(err, "%s: Input should be between %g and %g, got %g", name, lo, hi, d);
    return 0;
}

/* The whole body (an object) as an OpenAI chat body: a new reference, or NULL with `err`. */
static json_t *translate(json_t *in, bool counting, struct err *err)
{
    json_t *out = json_object(), *messages = json_array(), *v;
    const char *key;
    if (out == NULL || messages == NULL) {
        err_oom(err);
        goto fail;
    }
    json_object_foreach(in, key, v)
    {
        const struct top_field *f = top_field(key);
        if (f == NULL || (counting && !f->counts)) {
            bad(err, "%s: Extra inputs are not permitted", key);
            goto fail;
        }
        if (f->use == REFUSE) {
            bad(err, "%s: this gateway does not support it (its targets cannot provide it)", key);
            goto fail;
        }
    }
    json_t *model = json_object_get(in, "model");
    if (model == NULL) {
        bad(err, "model: Field required");
        goto fail;
    }
    if (!json_is_string(model) || json_string_length(model) == 0) {
        bad(err, "model: Input should be a non-empty string");
        goto fail;
    }
    json_object_set(out, "model", model);
    json_t *mt = json_object_get(in, "max_tokens");
    if (!counting) {
        if (mt == NULL) {
            bad(err, "max_tokens: Field required");
            goto fail;
        }
        if (!json_is_integer(mt) || json_integer_value(mt) < 1) {
            bad(err, "max_tokens: Input should be an integer of at least 1");
            goto fail;
        }
        json_object_set(out, "max_tokens", mt);
    }
    if (translate_system(json_object_get(in, "system"), messages, err) != 0) goto fail;
    if (!json_object_get(in, "messages")) {
        bad(err, "messages: Field required");
        goto fail;
    }
    if (translate_messages(json_object_get(in, "messages"), messages, err) != 0) goto fail;
    json_object_set(out, "messages", messages);
    if ((v = json_object_get(in, "stream"))) {
        if (!json_is_boolean(v)) {
            bad(err, "stream: Input should be a valid boolean");
            goto fail;
        }
        json_object_set(out, "stream", v);
    }
    if ((v = json_object_get(in, "temperature"))) {
        if (number_in(v, "temperature", 0, 1, err) != 0) goto fail;
        json_object_set(out, "temperature", v);
    }
    if ((v = json_object_get(in, "top_p"))) {
        if (number_in(v, "top_p", 0, 1, err) != 0) goto fail;
        json_object_set(out, "top_p", v);
    }
    if ((v = json_object_get(in, "top_k")) && (!json_is_integer(v) || json_integer_value(v) < 0)) {
        bad(err, "top_k: Input should be a non-negative integer");
        goto fail;
    }
    if ((v = json_object_get(in, "stop_sequences"))) {
        size_t k;
        json_t *s;
        if (!json_is_array(v)) {
            bad(err, "stop_sequences: Input should be a valid list, got %s", type_name(v));
            goto fail;
        }
        json_array_foreach(v, k, s)
        {
            if (!json_is_string(s) || json_string_length(s) == 0) {
                bad(err, "stop_sequences.%zu: Input should be a non-empty string", k);
                goto fail;
            }
        }
        if (json_array_size(v)) json_object_set(out, "stop", v);
    }
    if ((v = json_object_get(in, "metadata"))) {
        json_t *user = json_object_get(v, "user_id");
        if (!json_is_object(v) || (user && !json_is_string(user) && !json_is_null(user))) {
            bad(err, "metadata: Input should be an object with a string user_id");
            goto fail;
        }
        if (json_is_string(user)) json_object_set(out, "user", user);
    }
    if ((v = json_object_get(in, "thinking"))) {
        const char *t = block_type(v);
        if (t == NULL || strcmp(t, "disabled") != 0) {
            bad(err, "thinking: extended thinking is not supported by this gateway (its targets "
                     "return no thinking blocks); leave it out or send {\"type\":\"disabled\"}");
            goto fail;
        }
    }
    if ((v = json_object_get(in, "output_config"))) {
        json_t *fmt = json_object_get(v, "format");
        if (!json_is_object(v) || (fmt && !json_is_null(fmt) && !json_is_object(fmt))) {
            bad(err, "output_config: Input should be an object (effort, format)");
            goto fail;
        }
        if (json_is_object(fmt)) {
            const char *ft = block_type(fmt);
            json_t *schema = json_object_get(fmt, "schema");
            if (ft == NULL || strcmp(ft, "json_schema") != 0 || !json_is_object(schema)) {
                bad(err, "output_config.format: Input should be {\"type\":\"json_schema\", "
                         "\"schema\":{...}}");
                goto fail;
            }
            json_object_set_new(out, "response_format",
                                json_pack("{s:s, s:{s:s, s:O, s:b}}", "type", "json_schema",
                                          "json_schema", "name", "output", "schema", schema,
                                          "strict", 1));
        }
        /* effort is a hint about how hard to think: no target here takes it */
    }
    if (translate_tools(json_object_get(in, "tools"), json_object_get(in, "tool_choice"), out,
                        err) != 0)
        goto fail;
    json_decref(messages);
    return out;
fail:
    json_decref(out);
    json_decref(messages);
    return NULL;
}

/* The body as a document, after the same bounded scan the request model makes (a body of
 * millions of tiny values would otherwise become millions of jansson nodes). */
static json_t *load_body(struct http_request *req, struct arena *a, struct err *err)
{
    size_t len = evbuffer_get_length(req->body);
    const char *bytes = len ? (const char *)evbuffer_pullup(req->body, -1) : "";
    if (len == 0) {
        bad(err, "request body is empty; expected a JSON object");
        return NULL;
    }
    static const struct json_scan_limits lim = {
        .max_tokens = OPENAI_MAX_JSON_VALUES,
        .max_depth = OPENAI_MAX_DEPTH,
        .max_members = OPENAI_MAX_OBJECT_MEMBERS,
    };
    struct json_scan s;
    struct json_scan_fault f;
    json_error_t jerr;
    if (json_scan_parse_checked(&s, bytes, len, a, &lim, &f) != 0) {
        if (f.status == JSON_SCAN_OOM) {
            err_oom(err);
        } else if (f.status == JSON_SCAN_TOO_MANY_TOKENS || f.status == JSON_SCAN_TOO_DEEP ||
                   f.status == JSON_SCAN_TOO_MANY_MEMBERS) {
            bad(err,
                "request body is beyond the gateway's limits (%d values, %d levels of "
                "nesting, %d keys in an object)",
                OPENAI_MAX_JSON_VALUES, OPENAI_MAX_DEPTH, OPENAI_MAX_OBJECT_MEMBERS);
        } else if (f.status == JSON_SCAN_DUPLICATE_KEY) {
            bad(err, "request body has a key twice in one object (at byte %zu)", f.offset);
        } else {
            json_t *j = json_loadb(bytes, len, 0, &jerr);
            if (j == NULL)
                bad(err, "request body is not valid JSON: %s at line %d column %d", jerr.text,
                    jerr.line, jerr.column);
            else
                bad(err, "request body is not valid JSON (%s at byte %zu)",
                    f.why && f.why[0] ? f.why : "refused", f.offset);
            json_decref(j);
        }
        return NULL;
    }
    json_t *doc = json_loadb(bytes, len, JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL) {
        bad(err, "request body is not valid JSON: %s", jerr.text);
        return NULL;
    }
    if (!json_is_object(doc)) {
        bad(err, "request body must be a JSON object, got %s", type_name(doc));
        json_decref(doc);
        return NULL;
    }
    return doc;
}

static int anthropic_parse(struct exchange *x, enum openai_endpoint endpoint, struct err *err)
{
    struct arena *a = x->req->arena;
    json_t *in = load_body(x->req, a, err), *chat = in ? translate(in, false, err) : NULL;
    json_decref(in);
    if (chat == NULL) return -1;
    char *text = json_dumps(chat, JSON_COMPACT);
    json_decref(chat);
    size_t len = text ? strlen(text) : 0;
    char *body = text ? arena_strndup(a, text, len) : NULL; /* the model borrows it */
    free(text);
    struct openai_request *r = body ? arena_alloc(a, sizeof *r) : NULL;
    if (r == NULL) return err_oom(err);
    if (openai_parse_request(endpoint, body, len, a, r, err) != 0) return -1;
    x->request = r;
    return 0;
}

/* ---- answers: OpenAI → Anthropic --------------------------------------------------------- */

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
 * the request's own stop sequences; otherwise the answer simply ended (end_turn). */
static const char *matched_stop(const struct exchange *x, json_t *choice)
{
    const char *finish = json_string_value(json_object_get(choice, "finish_reason"));
    const char *said = json_string_value(json_object_get(choice, "stop_reason"));
    if (finish == NULL || strcmp(finish, "stop") != 0 || said == NULL || said[0] == '\0')
        return NULL;
    const struct json_scan *sc = &x->request->scan;
    int stop = json_scan_get(sc, 0, "stop");
    if (!json_scan_is_array(sc, stop)) return NULL;
    int i = stop + 1;
    for (int k = 0; k < json_scan_size(sc, stop); k++, i = json_scan_skip(sc, i))
        if (json_scan_string_is(sc, i, said)) return said;
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

/* The usage the gateway accounted (what the ledger and the cost say), else the answer's. */
static void usage_of(const struct exchange *x, json_t *usage, long long *in, long long *out,
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
    if (*in < 0 && json_is_object(usage)) {
        *in = json_integer_value(json_object_get(usage, "prompt_tokens"));
        *out = json_integer_value(json_object_get(usage, "completion_tokens"));
        *cached = json_integer_value(
            json_object_get(json_object_get(usage, "prompt_tokens_details"), "cached_tokens"));
    }
    if (*in < 0) *in = 0;
    if (*out < 0) *out = 0;
    if (*cached > *in) *cached = *in;
}

/* Anthropic's input_tokens leave out what was read from a cache (counted apart); OpenAI's
 * prompt_tokens include it. */
static json_t *usage_json(long long in, long long out, long long cached)
{
    json_t *u = json_pack("{s:I, s:I}", "input_tokens", (json_int_t)(in - cached), "output_tokens",
                          (json_int_t)out);
    if (cached > 0) json_object_set_new(u, "cache_read_input_tokens", json_integer(cached));
    return u;
}

static json_t *text_of(json_t *content)
{
    if (json_is_string(content)) return json_incref(content);
    if (!json_is_array(content)) return NULL;
    /* content parts (some servers answer that way): their text joined */
    struct evbuffer *b = evbuffer_new();
    size_t k;
    json_t *p;
    json_array_foreach(content, k, p)
    {
        json_t *t = json_object_get(p, "text");
        if (json_is_string(t)) evbuffer_add(b, json_string_value(t), json_string_length(t));
    }
    size_t n = b ? evbuffer_get_length(b) : 0;
    json_t *s = n ? json_stringn((const char *)evbuffer_pullup(b, -1), n) : NULL;
    if (b) evbuffer_free(b);
    return s;
}

/* A chat.completion as a Message; NULL with `err` when it cannot be one. */
static char *message_json(const struct exchange *x, const char *json, size_t len, struct err *err)
{
    json_t *doc = json_loadb(json, len, 0, NULL), *msg = NULL, *content = json_array();
    char *s = NULL;
    json_t *choice = json_array_get(json_object_get(doc, "choices"), 0);
    json_t *m = json_object_get(choice, "message");
    if (!json_is_object(m)) {
        err_set(err, 502, "upstream_error", "bad_upstream_response",
                "the target's answer has no message");
        goto out;
    }
    json_t *text = text_of(json_object_get(m, "content"));
    if (text && json_string_length(text))
        json_array_append_new(content, json_pack("{s:s, s:o}", "type", "text", "text", text));
    else
        json_decref(text);
    size_t k;
    json_t *tc;
    json_array_foreach(json_object_get(m, "tool_calls"), k, tc)
    {
        json_t *fn = json_object_get(tc, "function");
        const char *args = json_string_value(json_object_get(fn, "arguments"));
        json_t *input = args && args[0] ? json_loads(args, 0, NULL) : json_object();
        if (!json_is_object(input)) {
            /* Anthropic's input is an object; handing over something else would break the
             * client's tool dispatch later and further from the cause. */
            json_decref(input);
            err_set(err, 502, "upstream_error", "bad_upstream_response",
                    "the target called tool %zu with arguments that are not a JSON object", k);
            goto out;
        }
        const char *id = json_string_value(json_object_get(tc, "id"));
        char idbuf[64];
        if (id == NULL) snprintf(idbuf, sizeof idbuf, "toolu_%zu", k);
        const char *name = json_string_value(json_object_get(fn, "name"));
        json_array_append_new(content,
                              json_pack("{s:s, s:s, s:s, s:o}", "type", "tool_use", "id",
                                        id ? id : idbuf, "name", name ? name : "", "input", input));
    }
    char idbuf[96];
    message_id(json_string_value(json_object_get(doc, "id")), idbuf, sizeof idbuf);
    long long in, out, cached;
    usage_of(x, json_object_get(doc, "usage"), &in, &out, &cached);
    const char *stop = matched_stop(x, choice);
    msg = json_pack("{s:s, s:s, s:s, s:s, s:O, s:s, s:s?, s:o}", "id", idbuf, "type", "message",
                    "role", "assistant", "model", x->request->model, "content", content,
                    "stop_reason",
                    stop ? "stop_sequence"
                         : stop_reason(json_string_value(json_object_get(choice, "finish_reason"))),
                    "stop_sequence", stop, "usage", usage_json(in, out, cached));
    if (msg == NULL || (s = json_dumps(msg, JSON_COMPACT)) == NULL) err_oom(err);
out:
    json_decref(doc);
    json_decref(msg);
    json_decref(content);
    return s;
}

static void anthropic_body(struct exchange *x, int status, const char *json, size_t len)
{
    struct err e;
    err_clear(&e);
    char *s = message_json(x, json, len, &e);
    if (s == NULL) {
        respond_error(x->req, e.status, e.msg, NULL);
        return;
    }
    http_respond(x->req, status, "application/json", s, strlen(s));
    free(s);
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

/* "event: <type>\ndata: <doc>\n\n"; `doc` is taken. @return 0, or -1 out of memory. */
static int event(struct evbuffer *out, const char *type, json_t *doc)
{
    char *s = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (s == NULL) return -1;
    int rc = evbuffer_add_printf(out, "event: %s\ndata: %s\n\n", type, s) < 0 ? -1 : 0;
    free(s);
    return rc;
}

static int close_block(struct anthropic_state *st, struct evbuffer *out)
{
    if (!st->open) return 0;
    st->open = false;
    return event(out, "content_block_stop",
                 json_pack("{s:s, s:i}", "type", "content_block_stop", "index", st->blocks - 1));
}

static int open_block(struct anthropic_state *st, struct evbuffer *out, json_t *block, int tool)
{
    if (close_block(st, out) != 0) {
        json_decref(block);
        return -1;
    }
    st->open = true;
    st->open_tool = tool;
    return event(out, "content_block_start",
                 json_pack("{s:s, s:i, s:o}", "type", "content_block_start", "index", st->blocks++,
                           "content_block", block));
}

static int message_start(struct exchange *x, struct evbuffer *out, const char *upstream_id)
{
    struct anthropic_state *st = x->state;
    st->started = true;
    message_id(upstream_id, st->id, sizeof st->id);
    /* The prompt's token count is known only when the upstream's usage arrives at the end:
     * 0 here, the real count in message_delta (the SDKs take it from there). */
    return event(out, "message_start",
                 json_pack("{s:s, s:{s:s, s:s, s:s, s:s, s:[], s:n, s:n, s:{s:i, s:i}}}", "type",
                           "message_start", "message", "id", st->id, "type", "message", "role",
                           "assistant", "model", x->request->model, "content", "stop_reason",
                           "stop_sequence", "usage", "input_tokens", 0, "output_tokens", 0));
}

static int tool_delta(struct anthropic_state *st, struct evbuffer *out, json_t *tc)
{
    json_t *fn = json_object_get(tc, "function");
    int index = (int)json_integer_value(json_object_get(tc, "index"));
    if (!st->open || st->open_tool != index) {
        const char *id = json_string_value(json_object_get(tc, "id"));
        const char *name = json_string_value(json_object_get(fn, "name"));
        char idbuf[48];
        snprintf(idbuf, sizeof idbuf, "toolu_%d", index);
        if (open_block(st, out,
                       json_pack("{s:s, s:s, s:s, s:{}}", "type", "tool_use", "id", id ? id : idbuf,
                                 "name", name ? name : "", "input"),
                       index) != 0)
            return -1;
    }
    json_t *args = json_object_get(fn, "arguments");
    if (!json_is_string(args) || json_string_length(args) == 0) return 0;
    return event(out, "content_block_delta",
                 json_pack("{s:s, s:i, s:{s:s, s:O}}", "type", "content_block_delta", "index",
                           st->blocks - 1, "delta", "type", "input_json_delta", "partial_json",
                           args));
}

static int anthropic_chunk(struct exchange *x, const struct call_chunk *ch)
{
    struct anthropic_state *st = x->state;
    json_t *doc = json_loadb(ch->json, ch->len, 0, NULL);
    json_t *usage = json_object_get(doc, "usage");
    if (json_is_object(usage)) { /* kept for when there is no call to ask (unit tests) */
        st->have_usage = true;
        st->prompt = json_integer_value(json_object_get(usage, "prompt_tokens"));
        st->completion = json_integer_value(json_object_get(usage, "completion_tokens"));
    }
    if (ch->usage_only) {
        json_decref(doc);
        return 0; /* the counts go out in message_delta */
    }
    struct evbuffer *out = out_buffer(x);
    int rc = out ? 0 : -1;
    if (rc == 0 && !st->started)
        rc = message_start(x, out, json_string_value(json_object_get(doc, "id")));
    json_t *choice = json_array_get(json_object_get(doc, "choices"), 0);
    json_t *delta = json_object_get(choice, "delta");
    json_t *text = json_object_get(delta, "content");
    if (rc == 0 && json_is_string(text) && json_string_length(text)) {
        if (!st->open || st->open_tool != -1)
            rc = open_block(st, out, json_pack("{s:s, s:s}", "type", "text", "text", ""), -1);
        if (rc == 0)
            rc = event(out, "content_block_delta",
                       json_pack("{s:s, s:i, s:{s:s, s:O}}", "type", "content_block_delta", "index",
                                 st->blocks - 1, "delta", "type", "text_delta", "text", text));
    }
    size_t k;
    json_t *tc;
    json_array_foreach(json_object_get(delta, "tool_calls"), k, tc)
    {
        if (rc == 0) rc = tool_delta(st, out, tc);
    }
    const char *finish = json_string_value(json_object_get(choice, "finish_reason"));
    if (finish) snprintf(st->finish, sizeof st->finish, "%s", finish);
    const char *stop = matched_stop(x, choice);
    if (stop && (st->stop_sequence = arena_strdup(x->req->arena, stop)) == NULL) rc = -1;
    json_decref(doc);
    return rc == 0 ? 1 : -1;
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
static int stream_close(struct exchange *x, struct evbuffer *out)
{
    struct anthropic_state *st = x->state;
    int rc = st->started ? 0 : message_start(x, out, NULL);
    if (rc == 0) rc = close_block(st, out);
    long long in = 0, outt = 0, cached = 0;
    json_t *u = st->have_usage ? json_pack("{s:I, s:I}", "prompt_tokens", (json_int_t)st->prompt,
                                           "completion_tokens", (json_int_t)st->completion)
                               : NULL;
    usage_of(x, u, &in, &outt, &cached);
    json_decref(u);
    json_t *usage = usage_json(in, outt, cached);
    if (rc == 0)
        rc = event(out, "message_delta",
                   json_pack("{s:s, s:{s:s, s:s?}, s:o}", "type", "message_delta", "delta",
                             "stop_reason",
                             st->stop_sequence ? "stop_sequence"
                                               : stop_reason(st->finish[0] ? st->finish : NULL),
                             "stop_sequence", st->stop_sequence, "usage", usage));
    else
        json_decref(usage);
    if (rc == 0) rc = event(out, "message_stop", json_pack("{s:s}", "type", "message_stop"));
    return rc;
}

static void anthropic_end(struct exchange *x, const char *error)
{
    struct evbuffer *out = out_buffer(x);
    if (out == NULL) {
        http_stream_end(x->req);
        return;
    }
    if (error == NULL) {
        if (stream_close(x, out) != 0) /* no memory for the close: say so, as an error */
            error = "out of memory";
    }
    if (error != NULL) {
        /* what was queued goes first, then Anthropic's stream error event */
        json_t *e = json_pack("{s:s, s:{s:s, s:s}}", "type", "error", "error", "type", "api_error",
                              "message", error);
        if (event(out, "error", e) != 0)
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
        char *s = json_dumps(tools, JSON_COMPACT);
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
    err_clear(&e);
    json_t *in = load_body(req, req->arena, &e), *chat = in ? translate(in, true, &e) : NULL;
    json_decref(in);
    if (chat == NULL) {
        count_refuse(req, &e);
        return;
    }
    const char *model = json_string_value(json_object_get(chat, "model"));
    if (config_find_model(app->cfg, model) == NULL) {
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
    .flush = anthropic_flush,
    .end = anthropic_end,
    .body = anthropic_body,
    .error = anthropic_error,
};
