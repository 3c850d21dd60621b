/*
 * DESIGN: see surface_bedrock.h. A Bedrock body is read with jansson (it is translated, not
 * forwarded, so a DOM is the simple tool) into an OpenAI chat body that then goes through
 * openai_parse_request like any client's — every check and limit of the request model
 * applies unchanged. Our own checks only name Bedrock's fields where a type is wrong, so the
 * client learns which of *its* fields to fix.
 *
 * Answers come back as OpenAI JSON (whole) or chat.completion.chunks (streams); each chunk
 * is parsed and becomes zero or more event-stream frames. Frames queue in one evbuffer and
 * leave together at flush, one write per upstream read, as the OpenAI surface does.
 */
#include "api/surface_bedrock.h"

#include <event2/buffer.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/credential.h"
#include "http/server.h"
#include "providers/aws/eventstream.h"
#include "util/arena.h"
#include "util/clock.h"

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

/* ---- requests: Bedrock → OpenAI ----------------------------------------------------- */

/* The field's value if it has the wanted type; `what` names it for the error. Absent is
 * fine (NULL, 0) unless `required`. */
static int get_field(json_t *obj, const char *key, int type, bool required, json_t **out,
                     struct err *err, const char *what)
{
    static const char *const names[] = {
        [JSON_OBJECT] = "an object",   [JSON_ARRAY] = "a list",  [JSON_STRING] = "a string",
        [JSON_INTEGER] = "an integer", [JSON_REAL] = "a number", [JSON_TRUE] = "a boolean",
    };
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (v == NULL || json_is_null(v)) {
        if (required) return invalid(err, "%s is required", what);
        return 0;
    }
    bool ok = json_typeof(v) == (json_type)type || (type == JSON_REAL && json_is_integer(v)) ||
              (type == JSON_TRUE && json_is_boolean(v));
    if (!ok) return invalid(err, "%s must be %s", what, names[type]);
    *out = v;
    return 0;
}

#define FIELD(obj, key, type, req, out, ...)                                                       \
    do {                                                                                           \
        char what_[160];                                                                           \
        snprintf(what_, sizeof what_, __VA_ARGS__);                                                \
        if (get_field(obj, key, type, req, out, err, what_) != 0) return -1;                       \
    } while (0)

/* Appends `s` to a growing text (joined system blocks, assistant text). */
static int append_text(json_t **acc, const char *s, const char *sep)
{
    if (*acc == NULL) {
        *acc = json_string(s);
        return *acc ? 0 : -1;
    }
    const char *old = json_string_value(*acc);
    size_t a = strlen(old), b = strlen(s), c = strlen(sep);
    char *joined = malloc(a + b + c + 1);
    if (joined == NULL) return -1;
    memcpy(joined, old, a);
    memcpy(joined + a, sep, c);
    memcpy(joined + a + c, s, b + 1);
    int rc = json_string_set(*acc, joined);
    free(joined);
    return rc;
}

/* One OpenAI tool call from a tool-use block: the input object becomes the arguments text. */
static json_t *tool_call(const char *id, const char *name, json_t *input)
{
    char *args = input ? json_dumps(input, JSON_COMPACT | JSON_ENCODE_ANY) : strdup("{}");
    json_t *tc = args ? json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", id, "type", "function",
                                  "function", "name", name, "arguments", args)
                      : NULL;
    free(args);
    return tc;
}

/* A message being built: its text parts (and images), tool calls, and tool results. */
struct pending {
    json_t *parts; /* [{type:text|image_url, ...}] */
    bool has_image;
    json_t *calls;   /* assistant tool_calls */
    json_t *results; /* role:tool messages, which OpenAI wants before the user's text */
};

static void pending_free(struct pending *p)
{
    json_decref(p->parts);
    json_decref(p->calls);
    json_decref(p->results);
}

static int add_part_text(struct pending *p, const char *text)
{
    return json_array_append_new(p->parts, json_pack("{s:s, s:s}", "type", "text", "text", text));
}

static int add_part_image(struct pending *p, const char *media_type, const char *b64)
{
    char *url = malloc(strlen(media_type) + strlen(b64) + 16);
    if (url == NULL) return -1;
    sprintf(url, "data:%s;base64,%s", media_type, b64);
    int rc = json_array_append_new(
        p->parts, json_pack("{s:s, s:{s:s}}", "type", "image_url", "image_url", "url", url));
    free(url);
    p->has_image = true;
    return rc;
}

/* The pending message(s) onto `messages`: tool results first, then the message itself. */
static int flush_pending(struct pending *p, const char *role, json_t *messages)
{
    if (json_array_extend(messages, p->results) != 0) return -1;
    json_t *content;
    size_t n = json_array_size(p->parts);
    if (p->has_image) {
        content = json_incref(p->parts);
    } else if (n > 0) { /* text only: one string, which every OpenAI-speaking server reads */
        json_t *acc = NULL;
        for (size_t i = 0; i < n; i++)
            if (append_text(&acc,
                            json_string_value(json_object_get(json_array_get(p->parts, i), "text")),
                            "") != 0) {
                json_decref(acc);
                return -1;
            }
        content = acc;
    } else if (strcmp(role, "assistant") == 0 && json_array_size(p->calls) > 0) {
        content = json_null();
    } else {
        return 0; /* only tool results */
    }
    json_t *m = json_pack("{s:s, s:o}", "role", role, "content", content);
    if (m && json_array_size(p->calls) > 0) json_object_set(m, "tool_calls", p->calls);
    return m ? json_array_append_new(messages, m) : -1;
}

static int tool_result_message(struct pending *p, const char *id, const char *text)
{
    return json_array_append_new(p->results, json_pack("{s:s, s:s, s:s}", "role", "tool",
                                                       "tool_call_id", id, "content", text));
}

/* Converse: one content block of message i. */
static int converse_block(json_t *b, size_t i, size_t j, bool user, struct pending *p,
                          struct err *err)
{
    json_t *v;
    if (!json_is_object(b))
        return invalid(err, "messages[%zu].content[%zu] must be an object", i, j);
    if (json_object_get(b, "text")) {
        FIELD(b, "text", JSON_STRING, true, &v, "messages[%zu].content[%zu].text", i, j);
        return add_part_text(p, json_string_value(v)) ? err_oom(err) : 0;
    }
    if (json_object_get(b, "image")) {
        json_t *img, *fmt, *src, *bytes;
        FIELD(b, "image", JSON_OBJECT, true, &img, "messages[%zu].content[%zu].image", i, j);
        FIELD(img, "format", JSON_STRING, true, &fmt, "messages[%zu].content[%zu].image.format", i,
              j);
        FIELD(img, "source", JSON_OBJECT, true, &src, "messages[%zu].content[%zu].image.source", i,
              j);
        FIELD(src, "bytes", JSON_STRING, true, &bytes,
              "messages[%zu].content[%zu].image.source.bytes (base64)", i, j);
        char media[48];
        snprintf(media, sizeof media, "image/%s", json_string_value(fmt));
        return add_part_image(p, media, json_string_value(bytes)) ? err_oom(err) : 0;
    }
    if (json_object_get(b, "toolUse")) {
        json_t *tu, *id, *name, *input;
        if (user)
            return invalid(err,
                           "messages[%zu].content[%zu].toolUse: only an assistant "
                           "message may use a tool",
                           i, j);
        FIELD(b, "toolUse", JSON_OBJECT, true, &tu, "messages[%zu].content[%zu].toolUse", i, j);
        FIELD(tu, "toolUseId", JSON_STRING, true, &id,
              "messages[%zu].content[%zu].toolUse.toolUseId", i, j);
        FIELD(tu, "name", JSON_STRING, true, &name, "messages[%zu].content[%zu].toolUse.name", i,
              j);
        input = json_object_get(tu, "input");
        return json_array_append_new(
                   p->calls, tool_call(json_string_value(id), json_string_value(name), input))
                   ? err_oom(err)
                   : 0;
    }
    if (json_object_get(b, "toolResult")) {
        json_t *tr, *id, *content;
        if (!user)
            return invalid(err,
                           "messages[%zu].content[%zu].toolResult: only a user "
                           "message may carry a tool result",
                           i, j);
        FIELD(b, "toolResult", JSON_OBJECT, true, &tr, "messages[%zu].content[%zu].toolResult", i,
              j);
        FIELD(tr, "toolUseId", JSON_STRING, true, &id,
              "messages[%zu].content[%zu].toolResult.toolUseId", i, j);
        FIELD(tr, "content", JSON_ARRAY, true, &content,
              "messages[%zu].content[%zu].toolResult.content", i, j);
        json_t *text = NULL;
        for (size_t k = 0; k < json_array_size(content); k++) {
            json_t *c = json_array_get(content, k), *t;
            if (!json_is_object(c))
                return invalid(err,
                               "messages[%zu].content[%zu].toolResult.content[%zu] must "
                               "be an object",
                               i, j, k);
            char *dumped = NULL;
            if (json_object_get(c, "json")) {
                dumped = json_dumps(json_object_get(c, "json"), JSON_COMPACT | JSON_ENCODE_ANY);
            } else {
                if (get_field(c, "text", JSON_STRING, true, &t, err, "toolResult content text") !=
                    0) {
                    json_decref(text);
                    return invalid(err,
                                   "messages[%zu].content[%zu].toolResult.content[%zu] "
                                   "must be {\"text\": string} or {\"json\": …}",
                                   i, j, k);
                }
                dumped = strdup(json_string_value(t));
            }
            int rc = dumped ? append_text(&text, dumped, "\n") : -1;
            free(dumped);
            if (rc != 0) {
                json_decref(text);
                return err_oom(err);
            }
        }
        int rc = tool_result_message(p, json_string_value(id), text ? json_string_value(text) : "");
        json_decref(text);
        return rc ? err_oom(err) : 0;
    }
    if (json_object_get(b, "cachePoint")) return 0; /* a hint to Bedrock's cache: nothing to do */
    const char *kind = json_object_iter_key(json_object_iter(b));
    return invalid(err,
                   "messages[%zu].content[%zu]: content block '%s' is not supported "
                   "(text, image, toolUse, toolResult are)",
                   i, j, kind ? kind : "{}");
}

static int converse_messages(json_t *in, json_t *messages, struct err *err)
{
    json_t *list, *sys;
    FIELD(in, "system", JSON_ARRAY, false, &sys, "system");
    json_t *system = NULL;
    for (size_t i = 0; sys && i < json_array_size(sys); i++) {
        json_t *b = json_array_get(sys, i), *t;
        if (!json_is_object(b)) return invalid(err, "system[%zu] must be an object", i);
        if (json_object_get(b, "cachePoint")) continue;
        if (get_field(b, "text", JSON_STRING, true, &t, err, "") != 0)
            return invalid(err, "system[%zu].text must be a string", i);
        if (append_text(&system, json_string_value(t), "\n") != 0) return err_oom(err);
    }
    if (system && json_array_append_new(
                      messages, json_pack("{s:s, s:o}", "role", "system", "content", system)) != 0)
        return err_oom(err);
    FIELD(in, "messages", JSON_ARRAY, true, &list, "messages");
    if (json_array_size(list) == 0) return invalid(err, "messages must not be empty");
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *m = json_array_get(list, i), *role, *content;
        if (!json_is_object(m)) return invalid(err, "messages[%zu] must be an object", i);
        FIELD(m, "role", JSON_STRING, true, &role, "messages[%zu].role", i);
        bool user = strcmp(json_string_value(role), "user") == 0;
        if (!user && strcmp(json_string_value(role), "assistant") != 0)
            return invalid(err, "messages[%zu].role must be 'user' or 'assistant'", i);
        FIELD(m, "content", JSON_ARRAY, true, &content, "messages[%zu].content", i);
        struct pending p = {json_array(), false, json_array(), json_array()};
        int rc = p.parts && p.calls && p.results ? 0 : err_oom(err);
        for (size_t j = 0; rc == 0 && j < json_array_size(content); j++)
            rc = converse_block(json_array_get(content, j), i, j, user, &p, err);
        if (rc == 0 && flush_pending(&p, user ? "user" : "assistant", messages) != 0)
            rc = err_oom(err);
        pending_free(&p);
        if (rc != 0) return -1;
    }
    return 0;
}

static int converse_options(json_t *in, json_t *out, struct err *err)
{
    json_t *cfg, *v, *tc;
    FIELD(in, "inferenceConfig", JSON_OBJECT, false, &cfg, "inferenceConfig");
    if (cfg) {
        FIELD(cfg, "maxTokens", JSON_INTEGER, false, &v, "inferenceConfig.maxTokens");
        if (v) json_object_set(out, "max_tokens", v);
        FIELD(cfg, "temperature", JSON_REAL, false, &v, "inferenceConfig.temperature");
        if (v) json_object_set(out, "temperature", v);
        FIELD(cfg, "topP", JSON_REAL, false, &v, "inferenceConfig.topP");
        if (v) json_object_set(out, "top_p", v);
        FIELD(cfg, "stopSequences", JSON_ARRAY, false, &v, "inferenceConfig.stopSequences");
        for (size_t i = 0; v && i < json_array_size(v); i++)
            if (!json_is_string(json_array_get(v, i)))
                return invalid(err, "inferenceConfig.stopSequences[%zu] must be a string", i);
        if (v && json_array_size(v)) json_object_set(out, "stop", v);
    }
    FIELD(in, "toolConfig", JSON_OBJECT, false, &tc, "toolConfig");
    if (tc == NULL) return 0;
    json_t *tools_in, *choice, *tools = json_array();
    if (tools == NULL || json_object_set_new(out, "tools", tools) != 0) return err_oom(err);
    FIELD(tc, "tools", JSON_ARRAY, true, &tools_in, "toolConfig.tools");
    for (size_t i = 0; i < json_array_size(tools_in); i++) {
        json_t *t = json_array_get(tools_in, i), *spec, *name, *desc, *schema, *js;
        if (!json_is_object(t)) return invalid(err, "toolConfig.tools[%zu] must be an object", i);
        if (json_object_get(t, "cachePoint")) continue;
        FIELD(t, "toolSpec", JSON_OBJECT, true, &spec, "toolConfig.tools[%zu].toolSpec", i);
        FIELD(spec, "name", JSON_STRING, true, &name, "toolConfig.tools[%zu].toolSpec.name", i);
        FIELD(spec, "description", JSON_STRING, false, &desc,
              "toolConfig.tools[%zu].toolSpec.description", i);
        FIELD(spec, "inputSchema", JSON_OBJECT, true, &schema,
              "toolConfig.tools[%zu].toolSpec.inputSchema", i);
        FIELD(schema, "json", JSON_OBJECT, true, &js,
              "toolConfig.tools[%zu].toolSpec.inputSchema.json", i);
        json_t *fn = json_pack("{s:O, s:O}", "name", name, "parameters", js);
        if (fn && desc) json_object_set(fn, "description", desc);
        if (fn == NULL || json_array_append_new(tools, json_pack("{s:s, s:o}", "type", "function",
                                                                 "function", fn)) != 0)
            return err_oom(err);
    }
    FIELD(tc, "toolChoice", JSON_OBJECT, false, &choice, "toolConfig.toolChoice");
    if (choice == NULL) return 0;
    json_t *named;
    if (json_object_get(choice, "auto")) {
        json_object_set_new(out, "tool_choice", json_string("auto"));
    } else if (json_object_get(choice, "any")) {
        json_object_set_new(out, "tool_choice", json_string("required"));
    } else if ((named = json_object_get(choice, "tool")) != NULL) {
        json_t *name;
        if (!json_is_object(named))
            return invalid(err, "toolConfig.toolChoice.tool must be an object");
        FIELD(named, "name", JSON_STRING, true, &name, "toolConfig.toolChoice.tool.name");
        json_object_set_new(
            out, "tool_choice",
            json_pack("{s:s, s:{s:O}}", "type", "function", "function", "name", name));
    } else {
        return invalid(err, "toolConfig.toolChoice must be one of auto, any, tool");
    }
    return 0;
}

/* InvokeModel (Anthropic on Bedrock): one content block of message i. */
static int anthropic_block(json_t *b, size_t i, size_t j, bool user, struct pending *p,
                           struct err *err)
{
    json_t *type, *v;
    if (!json_is_object(b))
        return invalid(err, "messages[%zu].content[%zu] must be an object", i, j);
    FIELD(b, "type", JSON_STRING, true, &type, "messages[%zu].content[%zu].type", i, j);
    const char *t = json_string_value(type);
    if (strcmp(t, "text") == 0) {
        FIELD(b, "text", JSON_STRING, true, &v, "messages[%zu].content[%zu].text", i, j);
        return add_part_text(p, json_string_value(v)) ? err_oom(err) : 0;
    }
    if (strcmp(t, "image") == 0) {
        json_t *src, *media, *data;
        FIELD(b, "source", JSON_OBJECT, true, &src, "messages[%zu].content[%zu].source", i, j);
        FIELD(src, "media_type", JSON_STRING, true, &media,
              "messages[%zu].content[%zu].source.media_type", i, j);
        FIELD(src, "data", JSON_STRING, true, &data, "messages[%zu].content[%zu].source.data", i,
              j);
        return add_part_image(p, json_string_value(media), json_string_value(data)) ? err_oom(err)
                                                                                    : 0;
    }
    if (strcmp(t, "tool_use") == 0) {
        json_t *id, *name;
        if (user)
            return invalid(err,
                           "messages[%zu].content[%zu]: only an assistant message "
                           "may use a tool",
                           i, j);
        FIELD(b, "id", JSON_STRING, true, &id, "messages[%zu].content[%zu].id", i, j);
        FIELD(b, "name", JSON_STRING, true, &name, "messages[%zu].content[%zu].name", i, j);
        return json_array_append_new(p->calls,
                                     tool_call(json_string_value(id), json_string_value(name),
                                               json_object_get(b, "input")))
                   ? err_oom(err)
                   : 0;
    }
    if (strcmp(t, "tool_result") == 0) {
        json_t *id, *content = json_object_get(b, "content"), *text = NULL;
        if (!user)
            return invalid(err,
                           "messages[%zu].content[%zu]: only a user message may "
                           "carry a tool result",
                           i, j);
        FIELD(b, "tool_use_id", JSON_STRING, true, &id, "messages[%zu].content[%zu].tool_use_id", i,
              j);
        if (json_is_string(content)) {
            text = json_incref(content);
        } else if (json_is_array(content)) {
            for (size_t k = 0; k < json_array_size(content); k++) {
                json_t *s = json_object_get(json_array_get(content, k), "text");
                if (!json_is_string(s)) {
                    json_decref(text);
                    return invalid(err,
                                   "messages[%zu].content[%zu].content[%zu].text must be "
                                   "a string",
                                   i, j, k);
                }
                if (append_text(&text, json_string_value(s), "\n") != 0) {
                    json_decref(text);
                    return err_oom(err);
                }
            }
        } else if (content != NULL) {
            return invalid(err, "messages[%zu].content[%zu].content must be a string or a list", i,
                           j);
        }
        int rc = tool_result_message(p, json_string_value(id), text ? json_string_value(text) : "");
        json_decref(text);
        return rc ? err_oom(err) : 0;
    }
    return invalid(err,
                   "messages[%zu].content[%zu].type '%s' is not supported (text, image, "
                   "tool_use, tool_result are)",
                   i, j, t);
}

static int anthropic_request(json_t *in, json_t *out, struct err *err)
{
    json_t *v, *sys, *list, *messages = json_object_get(out, "messages");
    FIELD(in, "anthropic_version", JSON_STRING, true, &v, "anthropic_version");
    FIELD(in, "max_tokens", JSON_INTEGER, true, &v, "max_tokens");
    json_object_set(out, "max_tokens", v);
    FIELD(in, "temperature", JSON_REAL, false, &v, "temperature");
    if (v) json_object_set(out, "temperature", v);
    FIELD(in, "top_p", JSON_REAL, false, &v, "top_p");
    if (v) json_object_set(out, "top_p", v);
    FIELD(in, "top_k", JSON_INTEGER, false, &v, "top_k"); /* checked; OpenAI has no top_k */
    FIELD(in, "stop_sequences", JSON_ARRAY, false, &v, "stop_sequences");
    for (size_t i = 0; v && i < json_array_size(v); i++)
        if (!json_is_string(json_array_get(v, i)))
            return invalid(err, "stop_sequences[%zu] must be a string", i);
    if (v && json_array_size(v)) json_object_set(out, "stop", v);

    sys = json_object_get(in, "system");
    json_t *system = NULL;
    if (json_is_string(sys)) {
        system = json_incref(sys);
    } else if (json_is_array(sys)) {
        for (size_t i = 0; i < json_array_size(sys); i++) {
            json_t *t = json_object_get(json_array_get(sys, i), "text");
            if (!json_is_string(t)) {
                json_decref(system);
                return invalid(err, "system[%zu].text must be a string", i);
            }
            if (append_text(&system, json_string_value(t), "\n") != 0) {
                json_decref(system);
                return err_oom(err);
            }
        }
    } else if (sys && !json_is_null(sys)) {
        return invalid(err, "system must be a string or a list of text blocks");
    }
    if (system && json_array_append_new(
                      messages, json_pack("{s:s, s:o}", "role", "system", "content", system)) != 0)
        return err_oom(err);

    FIELD(in, "messages", JSON_ARRAY, true, &list, "messages");
    if (json_array_size(list) == 0) return invalid(err, "messages must not be empty");
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *m = json_array_get(list, i), *role, *content;
        if (!json_is_object(m)) return invalid(err, "messages[%zu] must be an object", i);
        FIELD(m, "role", JSON_STRING, true, &role, "messages[%zu].role", i);
        bool user = strcmp(json_string_value(role), "user") == 0;
        if (!user && strcmp(json_string_value(role), "assistant") != 0)
            return invalid(err, "messages[%zu].role must be 'user' or 'assistant'", i);
        content = json_object_get(m, "content");
        struct pending p = {json_array(), false, json_array(), json_array()};
        int rc = p.parts && p.calls && p.results ? 0 : err_oom(err);
        if (rc == 0 && json_is_string(content)) {
            rc = add_part_text(&p, json_string_value(content)) ? err_oom(err) : 0;
        } else if (rc == 0 && json_is_array(content)) {
            for (size_t j = 0; rc == 0 && j < json_array_size(content); j++)
                rc = anthropic_block(json_array_get(content, j), i, j, user, &p, err);
        } else if (rc == 0) {
            rc = invalid(err, "messages[%zu].content must be a string or a list of blocks", i);
        }
        if (rc == 0 && flush_pending(&p, user ? "user" : "assistant", messages) != 0)
            rc = err_oom(err);
        pending_free(&p);
        if (rc != 0) return -1;
    }

    FIELD(in, "tools", JSON_ARRAY, false, &v, "tools");
    if (v && json_array_size(v)) {
        json_t *tools = json_array();
        if (tools == NULL || json_object_set_new(out, "tools", tools) != 0) return err_oom(err);
        for (size_t i = 0; i < json_array_size(v); i++) {
            json_t *t = json_array_get(v, i), *name, *desc, *schema;
            if (!json_is_object(t)) return invalid(err, "tools[%zu] must be an object", i);
            FIELD(t, "name", JSON_STRING, true, &name, "tools[%zu].name", i);
            FIELD(t, "description", JSON_STRING, false, &desc, "tools[%zu].description", i);
            FIELD(t, "input_schema", JSON_OBJECT, true, &schema, "tools[%zu].input_schema", i);
            json_t *fn = json_pack("{s:O, s:O}", "name", name, "parameters", schema);
            if (fn && desc) json_object_set(fn, "description", desc);
            if (fn == NULL ||
                json_array_append_new(
                    tools, json_pack("{s:s, s:o}", "type", "function", "function", fn)) != 0)
                return err_oom(err);
        }
    }
    json_t *choice, *type;
    FIELD(in, "tool_choice", JSON_OBJECT, false, &choice, "tool_choice");
    if (choice) {
        FIELD(choice, "type", JSON_STRING, true, &type, "tool_choice.type");
        const char *t = json_string_value(type);
        if (strcmp(t, "auto") == 0 || strcmp(t, "none") == 0) {
            json_object_set_new(out, "tool_choice", json_string(t));
        } else if (strcmp(t, "any") == 0) {
            json_object_set_new(out, "tool_choice", json_string("required"));
        } else if (strcmp(t, "tool") == 0) {
            json_t *name;
            FIELD(choice, "name", JSON_STRING, true, &name, "tool_choice.name");
            json_object_set_new(
                out, "tool_choice",
                json_pack("{s:s, s:{s:O}}", "type", "function", "function", "name", name));
        } else {
            return invalid(err, "tool_choice.type must be auto, any, tool or none");
        }
    }
    return 0;
}

int bedrock_translate_request(enum bedrock_op op, const char *model_id, const char *body,
                              size_t len, struct arena *a, char **out, size_t *out_len,
                              struct err *err)
{
    int rc = -1;
    json_error_t je;
    json_t *in = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je), *o = NULL;
    char *text = NULL;
    if (in == NULL) {
        invalid(err, "the body is not valid JSON: %s (at byte %d)", je.text, je.position);
        goto out;
    }
    if (!json_is_object(in)) {
        invalid(err, "the body must be a JSON object");
        goto out;
    }
    o = json_pack("{s:s, s:[]}", "model", model_id, "messages");
    if (o == NULL) {
        err_oom(err);
        goto out;
    }
    bool converse = op == BEDROCK_CONVERSE || op == BEDROCK_CONVERSE_STREAM;
    if (converse ? converse_messages(in, json_object_get(o, "messages"), err) != 0 ||
                       converse_options(in, o, err) != 0
                 : anthropic_request(in, o, err) != 0)
        goto out;
    if (op == BEDROCK_CONVERSE_STREAM || op == BEDROCK_INVOKE_STREAM)
        json_object_set_new(o, "stream", json_true());
    text = json_dumps(o, JSON_COMPACT);
    size_t n = text ? strlen(text) : 0;
    if (text == NULL || (*out = arena_strndup(a, text, n)) == NULL) {
        err_oom(err);
        goto out;
    }
    *out_len = n;
    rc = 0;
out:
    free(text);
    json_decref(in);
    json_decref(o);
    return rc;
}

/* ---- answers: OpenAI → Bedrock ------------------------------------------------------ */

static const char *or_default(const char *s, const char *fallback)
{
    return s ? s : fallback;
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

/* A tool call's arguments text as an object (a model's malformed arguments: {}). */
static json_t *tool_input(json_t *fn)
{
    const char *args = json_string_value(json_object_get(fn, "arguments"));
    json_t *input = args ? json_loads(args, JSON_DECODE_ANY, NULL) : NULL;
    if (!json_is_object(input)) {
        json_decref(input);
        input = json_object();
    }
    return input;
}

char *bedrock_translate_answer(enum bedrock_op op, const char *model_id, const char *json,
                               size_t len, long latency_ms)
{
    json_t *doc = json_loadb(json, len, 0, NULL), *ans = NULL;
    char *s = NULL;
    json_t *choice = json_array_get(json_object_get(doc, "choices"), 0);
    json_t *msg = json_object_get(choice, "message");
    if (!json_is_object(msg)) goto out;
    const char *text = json_string_value(json_object_get(msg, "content"));
    json_t *calls = json_object_get(msg, "tool_calls");
    json_t *usage = json_object_get(doc, "usage");
    json_int_t in = json_integer_value(json_object_get(usage, "prompt_tokens"));
    json_int_t outn = json_integer_value(json_object_get(usage, "completion_tokens"));
    const char *stop = stop_reason(json_string_value(json_object_get(choice, "finish_reason")));
    json_t *content = json_array();
    bool converse = op == BEDROCK_CONVERSE || op == BEDROCK_CONVERSE_STREAM;
    if (text && (*text || json_array_size(calls) == 0))
        json_array_append_new(content, converse
                                           ? json_pack("{s:s}", "text", text)
                                           : json_pack("{s:s, s:s}", "type", "text", "text", text));
    for (size_t i = 0; i < json_array_size(calls); i++) {
        json_t *c = json_array_get(calls, i), *fn = json_object_get(c, "function");
        const char *id = json_string_value(json_object_get(c, "id"));
        const char *name = json_string_value(json_object_get(fn, "name"));
        json_t *b = converse
                        ? json_pack("{s:{s:s, s:s, s:o}}", "toolUse", "toolUseId", id ? id : "",
                                    "name", name ? name : "", "input", tool_input(fn))
                        : json_pack("{s:s, s:s, s:s, s:o}", "type", "tool_use", "id", id ? id : "",
                                    "name", name ? name : "", "input", tool_input(fn));
        json_array_append_new(content, b);
    }
    if (converse)
        ans = json_pack("{s:{s:{s:s, s:o}}, s:s, s:{s:I, s:I, s:I}, s:{s:i}}", "output", "message",
                        "role", "assistant", "content", content, "stopReason", stop, "usage",
                        "inputTokens", in, "outputTokens", outn, "totalTokens", in + outn,
                        "metrics", "latencyMs", (int)latency_ms);
    else
        ans = json_pack("{s:s, s:s, s:s, s:s, s:o, s:s, s:n, s:{s:I, s:I}}", "id",
                        or_default(json_string_value(json_object_get(doc, "id")), "msg_stratus"),
                        "type", "message", "role", "assistant", "model", model_id, "content",
                        content, "stop_reason", stop, "stop_sequence", "usage", "input_tokens", in,
                        "output_tokens", outn);
    if (ans) s = json_dumps(ans, JSON_COMPACT);
out:
    json_decref(ans);
    json_decref(doc);
    return s;
}

/* ---- streams -------------------------------------------------------------------------- */

/* One frame: the three headers every event of ours has, then `payload` (taken). */
static int frame(struct evbuffer *out, const char *kind, const char *type, json_t *payload)
{
    int rc = -1;
    char *p = payload ? json_dumps(payload, JSON_COMPACT) : NULL;
    json_decref(payload);
    if (p == NULL) return -1;
    bool exception = strcmp(kind, "exception") == 0;
    struct aws_event_header h[3] = {
        {exception ? ":exception-type" : ":event-type", type},
        {":content-type", "application/json"},
        {":message-type", kind},
    };
    size_t len = strlen(p);
    size_t need = aws_eventstream_encode(h, 3, p, len, NULL, 0);
    uint8_t *buf = need ? malloc(need) : NULL;
    if (buf && aws_eventstream_encode(h, 3, p, len, buf, need) == need)
        rc = evbuffer_add(out, buf, need) == 0 ? 1 : -1;
    free(buf);
    free(p);
    return rc;
}

/* An Anthropic stream event, base64 in a `chunk` event (InvokeModelWithResponseStream). */
static int chunk_frame(struct evbuffer *out, json_t *event)
{
    char *p = event ? json_dumps(event, JSON_COMPACT) : NULL;
    json_decref(event);
    if (p == NULL) return -1;
    size_t n = strlen(p);
    char *b64 = malloc(4 * ((n + 2) / 3) + 1);
    int rc = -1;
    if (b64) {
        EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)p, (int)n);
        rc = frame(out, "event", "chunk", json_pack("{s:s}", "bytes", b64));
    }
    free(b64);
    free(p);
    return rc;
}

static bool invoke_stream(const struct bedrock_state *st)
{
    return st->op == BEDROCK_INVOKE_STREAM;
}

static int close_block(struct bedrock_state *st, struct evbuffer *out)
{
    if (st->block < 0) return 0;
    int idx = st->block;
    st->block = -1;
    if (invoke_stream(st))
        return chunk_frame(out,
                           json_pack("{s:s, s:i}", "type", "content_block_stop", "index", idx));
    return frame(out, "event", "contentBlockStop", json_pack("{s:i}", "contentBlockIndex", idx));
}

static int text_delta(struct bedrock_state *st, const char *text, struct evbuffer *out)
{
    int n = 0, rc;
    if (st->block >= 0 && st->block_tool) {
        if ((rc = close_block(st, out)) < 0) return -1;
        n += rc;
    }
    if (st->block < 0) {
        st->block = st->blocks++;
        st->block_tool = false;
        /* Converse opens a text block with its first delta; Anthropic announces it. */
        if (invoke_stream(st)) {
            if (chunk_frame(out, json_pack("{s:s, s:i, s:{s:s, s:s}}", "type",
                                           "content_block_start", "index", st->block,
                                           "content_block", "type", "text", "text", "")) < 0)
                return -1;
            n++;
        }
    }
    rc = invoke_stream(st)
             ? chunk_frame(out, json_pack("{s:s, s:i, s:{s:s, s:s}}", "type", "content_block_delta",
                                          "index", st->block, "delta", "type", "text_delta", "text",
                                          text))
             : frame(out, "event", "contentBlockDelta",
                     json_pack("{s:i, s:{s:s}}", "contentBlockIndex", st->block, "delta", "text",
                               text));
    return rc < 0 ? -1 : n + rc;
}

static int tool_delta(struct bedrock_state *st, json_t *tc, struct evbuffer *out)
{
    int n = 0, rc;
    json_t *fn = json_object_get(tc, "function");
    json_int_t index = json_integer_value(json_object_get(tc, "index"));
    const char *id = json_string_value(json_object_get(tc, "id"));
    const char *name = json_string_value(json_object_get(fn, "name"));
    const char *args = json_string_value(json_object_get(fn, "arguments"));
    bool fresh = st->block < 0 || !st->block_tool || (id && *id) || index != st->tool_index;
    if (fresh) {
        if ((rc = close_block(st, out)) < 0) return -1;
        n += rc;
        st->block = st->blocks++;
        st->block_tool = true;
        st->tool_index = (int)index;
        rc = invoke_stream(st)
                 ? chunk_frame(out, json_pack("{s:s, s:i, s:{s:s, s:s, s:s, s:{}}}", "type",
                                              "content_block_start", "index", st->block,
                                              "content_block", "type", "tool_use", "id",
                                              id ? id : "", "name", name ? name : "", "input"))
                 : frame(out, "event", "contentBlockStart",
                         json_pack("{s:i, s:{s:{s:s, s:s}}}", "contentBlockIndex", st->block,
                                   "start", "toolUse", "toolUseId", id ? id : "", "name",
                                   name ? name : ""));
        if (rc < 0) return -1;
        n += rc;
    }
    if (args && *args) {
        rc = invoke_stream(st)
                 ? chunk_frame(out, json_pack("{s:s, s:i, s:{s:s, s:s}}", "type",
                                              "content_block_delta", "index", st->block, "delta",
                                              "type", "input_json_delta", "partial_json", args))
                 : frame(out, "event", "contentBlockDelta",
                         json_pack("{s:i, s:{s:{s:s}}}", "contentBlockIndex", st->block, "delta",
                                   "toolUse", "input", args));
        if (rc < 0) return -1;
        n += rc;
    }
    return n;
}

int bedrock_stream_chunk(struct bedrock_state *st, const char *json, size_t len,
                         struct evbuffer *out)
{
    json_t *doc = json_loadb(json, len, 0, NULL);
    if (doc == NULL) return -1;
    int n = 0, rc = 0;
    if (!st->message_started) {
        st->message_started = true;
        rc = invoke_stream(st)
                 ? chunk_frame(out,
                               json_pack("{s:s, s:{s:s, s:s, s:s, s:s, s:[], s:n, s:n, "
                                         "s:{s:i, s:i}}}",
                                         "type", "message_start", "message", "id",
                                         or_default(json_string_value(json_object_get(doc, "id")),
                                                    "msg_stratus"),
                                         "type", "message", "role", "assistant", "model",
                                         st->model_id ? st->model_id : "", "content", "stop_reason",
                                         "stop_sequence", "usage", "input_tokens", 0,
                                         "output_tokens", 0))
                 : frame(out, "event", "messageStart", json_pack("{s:s}", "role", "assistant"));
        if (rc < 0) goto out;
        n += rc;
    }
    json_t *choice = json_array_get(json_object_get(doc, "choices"), 0);
    json_t *delta = json_object_get(choice, "delta");
    const char *text = json_string_value(json_object_get(delta, "content"));
    if (text && *text) {
        if ((rc = text_delta(st, text, out)) < 0) goto out;
        n += rc;
    }
    json_t *calls = json_object_get(delta, "tool_calls");
    for (size_t i = 0; i < json_array_size(calls); i++) {
        if ((rc = tool_delta(st, json_array_get(calls, i), out)) < 0) goto out;
        n += rc;
    }
    const char *finish = json_string_value(json_object_get(choice, "finish_reason"));
    if (finish) st->stop_reason = stop_reason(finish);
out:
    json_decref(doc);
    return rc < 0 ? -1 : n;
}

int bedrock_stream_end(struct bedrock_state *st, long long input_tokens, long long output_tokens,
                       long latency_ms, const char *error, struct evbuffer *out)
{
    if (error)
        return frame(out, "exception", "modelStreamErrorException",
                     json_pack("{s:s}", "message", error)) < 0
                   ? -1
                   : 0;
    if (input_tokens < 0) input_tokens = 0;
    if (output_tokens < 0) output_tokens = 0;
    const char *stop = st->stop_reason ? st->stop_reason : "end_turn";
    if (close_block(st, out) < 0) return -1;
    if (invoke_stream(st)) {
        if (chunk_frame(out, json_pack("{s:s, s:{s:s, s:n}, s:{s:I, s:I}}", "type", "message_delta",
                                       "delta", "stop_reason", stop, "stop_sequence", "usage",
                                       "input_tokens", (json_int_t)input_tokens, "output_tokens",
                                       (json_int_t)output_tokens)) < 0)
            return -1;
        return chunk_frame(out, json_pack("{s:s, s:{s:I, s:I, s:i, s:i}}", "type", "message_stop",
                                          "amazon-bedrock-invocationMetrics", "inputTokenCount",
                                          (json_int_t)input_tokens, "outputTokenCount",
                                          (json_int_t)output_tokens, "invocationLatency",
                                          (int)latency_ms, "firstByteLatency", (int)latency_ms)) < 0
                   ? -1
                   : 0;
    }
    if (frame(out, "event", "messageStop", json_pack("{s:s}", "stopReason", stop)) < 0) return -1;
    return frame(out, "event", "metadata",
                 json_pack("{s:{s:I, s:I, s:I}, s:{s:i}}", "usage", "inputTokens",
                           (json_int_t)input_tokens, "outputTokens", (json_int_t)output_tokens,
                           "totalTokens", (json_int_t)(input_tokens + output_tokens), "metrics",
                           "latencyMs", (int)latency_ms)) < 0
               ? -1
               : 0;
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
    char *body = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
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
