/*
 * DESIGN: translation builds real documents with jansson — the shapes differ too much for
 * text splicing. The client's body was already validated by the API layer (types of the
 * fields we read), so a failure here is either something the target cannot express (400,
 * naming the field) or memory. Both providers share the walk over OpenAI messages; only
 * the block constructors differ, so they live side by side here.
 */
#include "providers/messages.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "util/arena.h"

enum dialect { ANTHROPIC, BEDROCK };

/* Copies a jansson document's compact text into the arena. Steals `doc`. */
static char *dump_to_arena(json_t *doc, struct arena *arena, size_t *len, struct err *err)
{
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (text == NULL) {
        err_oom(err);
        return NULL;
    }
    size_t n = strlen(text);
    char *out = arena_strndup(arena, text, n);
    free(text);
    if (out == NULL) {
        err_oom(err);
        return NULL;
    }
    *len = n;
    return out;
}

static int bad(struct err *err, const char *fmt, const char *a, size_t i)
{
    char where[96];
    snprintf(where, sizeof where, "messages[%zu]", i);
    err_set(err, 400, "invalid_request_error", "unsupported_by_target", fmt, where, a);
    return -1;
}

/* "data:image/png;base64,AAAA" → media type and payload. */
static bool data_url(const char *url, char *media, size_t cap, const char **data)
{
    if (strncmp(url, "data:", 5) != 0) return false;
    const char *semi = strchr(url + 5, ';');
    const char *comma = strchr(url + 5, ',');
    if (semi == NULL || comma == NULL || semi > comma) return false;
    if ((size_t)(comma - semi) != 7 || strncmp(semi, ";base64", 7) != 0) return false;
    size_t ml = (size_t)(semi - (url + 5));
    if (ml == 0 || ml >= cap) return false;
    memcpy(media, url + 5, ml);
    media[ml] = '\0';
    *data = comma + 1;
    return true;
}

static json_t *text_block(enum dialect d, const char *text)
{
    return d == ANTHROPIC ? json_pack("{s:s, s:s}", "type", "text", "text", text)
                          : json_pack("{s:s}", "text", text);
}

/* An OpenAI image_url part → an image block. */
static json_t *image_block(enum dialect d, json_t *part, size_t i, struct err *err)
{
    json_t *iu = json_object_get(part, "image_url");
    const char *url =
        json_is_string(iu) ? json_string_value(iu) : json_string_value(json_object_get(iu, "url"));
    if (url == NULL) {
        bad(err, "%s: image_url needs a url%s", "", i);
        return NULL;
    }
    char media[64];
    const char *data = NULL;
    bool inline_data = data_url(url, media, sizeof media, &data);
    if (d == ANTHROPIC) {
        if (inline_data)
            return json_pack("{s:s, s:{s:s, s:s, s:s}}", "type", "image", "source", "type",
                             "base64", "media_type", media, "data", data);
        if (strncmp(url, "https://", 8) == 0 || strncmp(url, "http://", 7) == 0)
            return json_pack("{s:s, s:{s:s, s:s}}", "type", "image", "source", "type", "url", "url",
                             url);
        bad(err, "%s: image url must be a data: or http(s) URL%s", "", i);
        return NULL;
    }
    if (!inline_data) {
        bad(err, "%s: Bedrock takes images inline only; send a data: URL (base64)%s", "", i);
        return NULL;
    }
    const char *fmt = strncmp(media, "image/", 6) == 0 ? media + 6 : "";
    if (strcmp(fmt, "jpg") == 0) fmt = "jpeg";
    if (strcmp(fmt, "png") && strcmp(fmt, "jpeg") && strcmp(fmt, "gif") && strcmp(fmt, "webp")) {
        bad(err, "%s: image type '%s' is not one Bedrock takes (png, jpeg, gif, webp)", media, i);
        return NULL;
    }
    return json_pack("{s:{s:s, s:{s:s}}}", "image", "format", fmt, "source", "bytes", data);
}

/* OpenAI message content (string or parts) → blocks appended to `blocks`. */
static int content_blocks(enum dialect d, json_t *content, json_t *blocks, bool images_ok, size_t i,
                          struct err *err)
{
    if (json_is_null(content) || content == NULL) return 0;
    if (json_is_string(content)) {
        if (json_string_length(content) > 0)
            json_array_append_new(blocks, text_block(d, json_string_value(content)));
        return 0;
    }
    if (!json_is_array(content)) return bad(err, "%s: content must be a string or a list%s", "", i);
    size_t k;
    json_t *part;
    json_array_foreach(content, k, part)
    {
        const char *type = json_string_value(json_object_get(part, "type"));
        if (type && strcmp(type, "text") == 0) {
            const char *text = json_string_value(json_object_get(part, "text"));
            if (text == NULL) return bad(err, "%s: a text part needs a string 'text'%s", "", i);
            if (*text) json_array_append_new(blocks, text_block(d, text));
        } else if (type && strcmp(type, "image_url") == 0 && images_ok) {
            json_t *img = image_block(d, part, i, err);
            if (img == NULL) return -1;
            json_array_append_new(blocks, img);
        } else {
            return bad(err, "%s: content part type '%s' is not supported by this target",
                       type ? type : "(none)", i);
        }
    }
    return 0;
}

/* Plain text of a content value (string, or text parts joined with newlines). */
static char *content_text(json_t *content)
{
    if (json_is_string(content)) return strdup(json_string_value(content));
    size_t cap = 1, k;
    json_t *part;
    json_array_foreach(content, k, part)
    {
        const char *t = json_string_value(json_object_get(part, "text"));
        if (t) cap += strlen(t) + 1;
    }
    char *out = calloc(1, cap);
    if (out == NULL) return NULL;
    json_array_foreach(content, k, part)
    {
        const char *t = json_string_value(json_object_get(part, "text"));
        if (t == NULL) continue;
        if (*out) strcat(out, "\n");
        strcat(out, t);
    }
    return out;
}

/* Assistant tool_calls → tool_use / toolUse blocks. */
static int tool_use_blocks(enum dialect d, json_t *calls, json_t *blocks, size_t i, struct err *err)
{
    size_t k;
    json_t *call;
    json_array_foreach(calls, k, call)
    {
        json_t *fn = json_object_get(call, "function");
        const char *id = json_string_value(json_object_get(call, "id"));
        const char *name = json_string_value(json_object_get(fn, "name"));
        const char *args = json_string_value(json_object_get(fn, "arguments"));
        if (id == NULL || name == NULL)
            return bad(err, "%s: tool_calls need an id and function.name%s", "", i);
        json_t *input = args && *args ? json_loads(args, JSON_DECODE_ANY, NULL) : json_object();
        if (!json_is_object(input)) {
            json_decref(input);
            return bad(err, "%s: tool call '%s' has arguments that are not a JSON object", name, i);
        }
        json_t *b = d == ANTHROPIC ? json_pack("{s:s, s:s, s:s, s:o}", "type", "tool_use", "id", id,
                                               "name", name, "input", input)
                                   : json_pack("{s:{s:s, s:s, s:o}}", "toolUse", "toolUseId", id,
                                               "name", name, "input", input);
        json_array_append_new(blocks, b);
    }
    return 0;
}

static json_t *tool_result_block(enum dialect d, json_t *msg, size_t i, struct err *err)
{
    const char *id = json_string_value(json_object_get(msg, "tool_call_id"));
    if (id == NULL) {
        bad(err, "%s: a tool message needs tool_call_id%s", "", i);
        return NULL;
    }
    char *text = content_text(json_object_get(msg, "content"));
    if (text == NULL) {
        err_oom(err);
        return NULL;
    }
    json_t *b = d == ANTHROPIC ? json_pack("{s:s, s:s, s:s}", "type", "tool_result", "tool_use_id",
                                           id, "content", text)
                               : json_pack("{s:{s:s, s:[{s:s}]}}", "toolResult", "toolUseId", id,
                                           "content", "text", text);
    free(text);
    return b;
}

/* Walks the OpenAI messages into `out_messages` (user/assistant turns, consecutive turns of
 * one role merged, as both APIs want alternation) and `system` (text blocks). */
static int convert_messages(enum dialect d, json_t *messages, json_t *out_messages, json_t *system,
                            struct err *err)
{
    size_t i;
    json_t *msg;
    json_array_foreach(messages, i, msg)
    {
        const char *role = json_string_value(json_object_get(msg, "role"));
        json_t *content = json_object_get(msg, "content");
        if (role == NULL) return bad(err, "%s: role is missing%s", "", i);
        if (strcmp(role, "system") == 0 || strcmp(role, "developer") == 0) {
            if (content_blocks(d, content, system, false, i, err)) return -1;
            continue;
        }
        const char *out_role;
        json_t *blocks = json_array();
        int rc = 0;
        if (strcmp(role, "user") == 0) {
            out_role = "user";
            rc = content_blocks(d, content, blocks, true, i, err);
        } else if (strcmp(role, "assistant") == 0) {
            out_role = "assistant";
            rc = content_blocks(d, content, blocks, false, i, err);
            json_t *calls = json_object_get(msg, "tool_calls");
            if (rc == 0 && json_is_array(calls)) rc = tool_use_blocks(d, calls, blocks, i, err);
        } else if (strcmp(role, "tool") == 0) {
            out_role = "user";
            json_t *b = tool_result_block(d, msg, i, err);
            if (b == NULL)
                rc = -1;
            else
                json_array_append_new(blocks, b);
        } else {
            json_decref(blocks);
            return bad(err, "%s: role '%s' is not supported by this target", role, i);
        }
        if (rc != 0) {
            json_decref(blocks);
            return -1;
        }
        if (json_array_size(blocks) == 0) { /* an empty turn: both APIs refuse those */
            json_decref(blocks);
            continue;
        }
        size_t n = json_array_size(out_messages);
        json_t *last = n ? json_array_get(out_messages, n - 1) : NULL;
        const char *last_role = json_string_value(json_object_get(last, "role"));
        if (last_role && strcmp(last_role, out_role) == 0) {
            json_array_extend(json_object_get(last, "content"), blocks);
            json_decref(blocks);
        } else {
            json_array_append_new(out_messages,
                                  json_pack("{s:s, s:o}", "role", out_role, "content", blocks));
        }
    }
    if (json_array_size(out_messages) == 0)
        return err_set(err, 400, "invalid_request_error", "unsupported_by_target",
                       "messages: the target needs at least one user or assistant message");
    return 0;
}

static json_t *stop_list(json_t *stop)
{
    if (json_is_string(stop)) return json_pack("[O]", stop);
    if (json_is_array(stop) && json_array_size(stop) > 0) return json_incref(stop);
    return NULL;
}

static json_t *load_request(const struct openai_request *r, struct err *err)
{
    json_t *req = json_loadb(r->scan.js, r->scan.len, 0, NULL);
    if (!json_is_object(req)) {
        json_decref(req);
        err_set(err, 400, "invalid_request_error", "invalid_json", "request body is not JSON");
        return NULL;
    }
    if (!json_is_array(json_object_get(req, "messages"))) {
        json_decref(req);
        err_set(err, 400, "invalid_request_error", "missing_field",
                "messages: a list is required for this target");
        return NULL;
    }
    return req;
}

static json_t *max_tokens_of(json_t *req)
{
    json_t *m = json_object_get(req, "max_completion_tokens");
    if (!json_is_integer(m)) m = json_object_get(req, "max_tokens");
    return json_is_integer(m) ? m : NULL;
}

char *anthropic_request_body(const struct openai_request *r, const char *target_model,
                             long default_max_tokens, struct arena *arena, size_t *len,
                             struct err *err)
{
    json_t *req = load_request(r, err);
    if (req == NULL) return NULL;
    json_t *out = json_object(), *messages = json_array(), *system = json_array();
    if (convert_messages(ANTHROPIC, json_object_get(req, "messages"), messages, system, err)) {
        json_decref(messages);
        json_decref(system);
        json_decref(out);
        json_decref(req);
        return NULL;
    }
    json_object_set_new(out, "model", json_string(target_model));
    json_object_set_new(out, "messages", messages);
    if (json_array_size(system))
        json_object_set_new(out, "system", system);
    else
        json_decref(system);
    json_t *mt = max_tokens_of(req);
    json_object_set_new(out, "max_tokens",
                        mt ? json_incref(mt) : json_integer((json_int_t)default_max_tokens));
    json_t *v;
    if ((v = json_object_get(req, "temperature")) && json_is_number(v))
        json_object_set(out, "temperature", v);
    if ((v = json_object_get(req, "top_p")) && json_is_number(v)) json_object_set(out, "top_p", v);
    if ((v = stop_list(json_object_get(req, "stop"))))
        json_object_set_new(out, "stop_sequences", v);
    if (json_is_true(json_object_get(req, "stream")))
        json_object_set_new(out, "stream", json_true());
    if ((v = json_object_get(req, "user")) && json_is_string(v))
        json_object_set_new(out, "metadata", json_pack("{s:O}", "user_id", v));

    json_t *tools = json_object_get(req, "tools");
    if (json_is_array(tools) && json_array_size(tools)) {
        json_t *ts = json_array();
        size_t k;
        json_t *t;
        json_array_foreach(tools, k, t)
        {
            json_t *fn = json_object_get(t, "function");
            json_t *params = json_object_get(fn, "parameters");
            json_t *tool =
                json_pack("{s:O?, s:o}", "name", json_object_get(fn, "name"), "input_schema",
                          json_is_object(params) ? json_incref(params)
                                                 : json_pack("{s:s}", "type", "object"));
            json_t *desc = json_object_get(fn, "description");
            if (json_is_string(desc)) json_object_set(tool, "description", desc);
            json_array_append_new(ts, tool);
        }
        json_object_set_new(out, "tools", ts);
        json_t *tc = json_object_get(req, "tool_choice");
        json_t *choice = NULL;
        const char *tcs = json_string_value(tc);
        if (tcs && strcmp(tcs, "required") == 0)
            choice = json_pack("{s:s}", "type", "any");
        else if (tcs && strcmp(tcs, "none") == 0)
            choice = json_pack("{s:s}", "type", "none");
        else if (tcs && strcmp(tcs, "auto") == 0)
            choice = json_pack("{s:s}", "type", "auto");
        else if (json_is_object(tc))
            choice = json_pack("{s:s, s:O?}", "type", "tool", "name",
                               json_object_get(json_object_get(tc, "function"), "name"));
        if (json_is_false(json_object_get(req, "parallel_tool_calls"))) {
            if (choice == NULL) choice = json_pack("{s:s}", "type", "auto");
            json_object_set_new(choice, "disable_parallel_tool_use", json_true());
        }
        if (choice) json_object_set_new(out, "tool_choice", choice);
    }
    json_decref(req);
    return dump_to_arena(out, arena, len, err);
}

char *bedrock_request_body(const struct openai_request *r, struct arena *arena, size_t *len,
                           struct err *err)
{
    json_t *req = load_request(r, err);
    if (req == NULL) return NULL;
    json_t *out = json_object(), *messages = json_array(), *system = json_array();
    if (convert_messages(BEDROCK, json_object_get(req, "messages"), messages, system, err)) {
        json_decref(messages);
        json_decref(system);
        json_decref(out);
        json_decref(req);
        return NULL;
    }
    json_object_set_new(out, "messages", messages);
    if (json_array_size(system))
        json_object_set_new(out, "system", system);
    else
        json_decref(system);
    json_t *inference = json_object(), *v;
    if ((v = max_tokens_of(req))) json_object_set(inference, "maxTokens", v);
    if ((v = json_object_get(req, "temperature")) && json_is_number(v))
        json_object_set(inference, "temperature", v);
    if ((v = json_object_get(req, "top_p")) && json_is_number(v))
        json_object_set(inference, "topP", v);
    if ((v = stop_list(json_object_get(req, "stop"))))
        json_object_set_new(inference, "stopSequences", v);
    if (json_object_size(inference))
        json_object_set_new(out, "inferenceConfig", inference);
    else
        json_decref(inference);

    json_t *tools = json_object_get(req, "tools");
    if (json_is_array(tools) && json_array_size(tools)) {
        json_t *ts = json_array();
        size_t k;
        json_t *t;
        json_array_foreach(tools, k, t)
        {
            json_t *fn = json_object_get(t, "function");
            json_t *params = json_object_get(fn, "parameters");
            json_t *spec = json_pack("{s:O?, s:{s:o}}", "name", json_object_get(fn, "name"),
                                     "inputSchema", "json",
                                     json_is_object(params) ? json_incref(params)
                                                            : json_pack("{s:s}", "type", "object"));
            json_t *desc = json_object_get(fn, "description");
            if (json_is_string(desc)) json_object_set(spec, "description", desc);
            json_array_append_new(ts, json_pack("{s:o}", "toolSpec", spec));
        }
        json_t *config = json_pack("{s:o}", "tools", ts);
        json_t *tc = json_object_get(req, "tool_choice");
        const char *tcs = json_string_value(tc);
        if (tcs && strcmp(tcs, "required") == 0)
            json_object_set_new(config, "toolChoice", json_pack("{s:{}}", "any"));
        else if (tcs && strcmp(tcs, "auto") == 0)
            json_object_set_new(config, "toolChoice", json_pack("{s:{}}", "auto"));
        else if (json_is_object(tc))
            json_object_set_new(
                config, "toolChoice",
                json_pack("{s:{s:O?}}", "tool", "name",
                          json_object_get(json_object_get(tc, "function"), "name")));
        json_object_set_new(out, "toolConfig", config);
    }
    json_decref(req);
    return dump_to_arena(out, arena, len, err);
}

/* ---- answers ------------------------------------------------------------------------ */

static const char *finish_reason_for(const char *stop)
{
    if (stop == NULL) return "stop";
    if (strcmp(stop, "max_tokens") == 0) return "length";
    if (strcmp(stop, "tool_use") == 0) return "tool_calls";
    if (strcmp(stop, "guardrail_intervened") == 0 || strcmp(stop, "content_filtered") == 0 ||
        strcmp(stop, "refusal") == 0)
        return "content_filter";
    return "stop";
}

static char *completion(const char *id, const char *model, json_t *text_parts, json_t *calls,
                        const char *finish, json_t *usage, struct arena *arena, size_t *len,
                        struct err *err)
{
    json_t *message = json_pack("{s:s, s:n}", "role", "assistant", "refusal");
    if (json_array_size(text_parts)) {
        size_t cap = 1, k;
        json_t *t;
        json_array_foreach(text_parts, k, t) cap += json_string_length(t);
        char *joined = calloc(1, cap);
        if (joined) json_array_foreach(text_parts, k, t) strcat(joined, json_string_value(t));
        json_object_set_new(message, "content", joined ? json_string(joined) : json_null());
        free(joined);
    } else {
        json_object_set_new(message, "content", json_null());
    }
    if (json_array_size(calls)) json_object_set(message, "tool_calls", calls);
    json_t *doc = json_pack("{s:s, s:s, s:I, s:s, s:[{s:i, s:o, s:n, s:s}], s:o}", "id", id,
                            "object", "chat.completion", "created", (json_int_t)time(NULL), "model",
                            model, "choices", "index", 0, "message", message, "logprobs",
                            "finish_reason", finish, "usage", usage);
    json_decref(text_parts);
    json_decref(calls);
    return dump_to_arena(doc, arena, len, err);
}

static char *not_an_answer(struct err *err, const char *what)
{
    err_set(err, 502, "upstream_error", "bad_upstream_response", "%s", what);
    return NULL;
}

char *anthropic_response_body(const char *body, size_t body_len, const char *target_model,
                              struct arena *arena, size_t *len, struct err *err)
{
    json_t *doc = json_loadb(body, body_len, 0, NULL);
    json_t *content = json_object_get(doc, "content");
    if (!json_is_object(doc) || !json_is_array(content)) {
        json_decref(doc);
        return not_an_answer(err, "the answer is not an Anthropic message");
    }
    json_t *texts = json_array(), *calls = json_array();
    size_t k;
    json_t *b;
    json_array_foreach(content, k, b)
    {
        const char *type = json_string_value(json_object_get(b, "type"));
        if (type && strcmp(type, "text") == 0 && json_is_string(json_object_get(b, "text"))) {
            json_array_append(texts, json_object_get(b, "text"));
        } else if (type && strcmp(type, "tool_use") == 0) {
            char *args = json_dumps(json_object_get(b, "input"), JSON_COMPACT | JSON_ENCODE_ANY);
            json_array_append_new(calls, json_pack("{s:O?, s:s, s:{s:O?, s:s}}", "id",
                                                   json_object_get(b, "id"), "type", "function",
                                                   "function", "name", json_object_get(b, "name"),
                                                   "arguments", args ? args : "{}"));
            free(args);
        }
    }
    json_t *u = json_object_get(doc, "usage");
    long in = (long)json_integer_value(json_object_get(u, "input_tokens")) +
              (long)json_integer_value(json_object_get(u, "cache_creation_input_tokens"));
    long cached = (long)json_integer_value(json_object_get(u, "cache_read_input_tokens"));
    long outt = (long)json_integer_value(json_object_get(u, "output_tokens"));
    const char *id = json_string_value(json_object_get(doc, "id"));
    const char *model = json_string_value(json_object_get(doc, "model"));
    char idbuf[160], modelbuf[200];
    snprintf(idbuf, sizeof idbuf, "%s", id ? id : "chatcmpl-anthropic");
    snprintf(modelbuf, sizeof modelbuf, "%s", model ? model : target_model);
    const char *finish = finish_reason_for(json_string_value(json_object_get(doc, "stop_reason")));
    json_decref(doc);
    return completion(idbuf, modelbuf, texts, calls, finish, chunk_usage(in, outt, cached), arena,
                      len, err);
}

char *bedrock_response_body(const char *body, size_t body_len, const char *target_model,
                            struct arena *arena, size_t *len, struct err *err)
{
    json_t *doc = json_loadb(body, body_len, 0, NULL);
    json_t *content =
        json_object_get(json_object_get(json_object_get(doc, "output"), "message"), "content");
    if (!json_is_object(doc) || !json_is_array(content)) {
        json_decref(doc);
        return not_an_answer(err, "the answer is not a Bedrock Converse response");
    }
    json_t *texts = json_array(), *calls = json_array();
    size_t k;
    json_t *b;
    json_array_foreach(content, k, b)
    {
        json_t *text = json_object_get(b, "text"), *use = json_object_get(b, "toolUse");
        if (json_is_string(text)) {
            json_array_append(texts, text);
        } else if (json_is_object(use)) {
            char *args = json_dumps(json_object_get(use, "input"), JSON_COMPACT | JSON_ENCODE_ANY);
            json_array_append_new(calls,
                                  json_pack("{s:O?, s:s, s:{s:O?, s:s}}", "id",
                                            json_object_get(use, "toolUseId"), "type", "function",
                                            "function", "name", json_object_get(use, "name"),
                                            "arguments", args ? args : "{}"));
            free(args);
        }
    }
    json_t *u = json_object_get(doc, "usage");
    long in = (long)json_integer_value(json_object_get(u, "inputTokens"));
    long cached = (long)json_integer_value(json_object_get(u, "cacheReadInputTokens"));
    long outt = (long)json_integer_value(json_object_get(u, "outputTokens"));
    const char *finish = finish_reason_for(json_string_value(json_object_get(doc, "stopReason")));
    json_decref(doc);
    char id[64];
    snprintf(id, sizeof id, "chatcmpl-bedrock-%lx", (unsigned long)time(NULL));
    return completion(id, target_model, texts, calls, finish, chunk_usage(in, outt, cached), arena,
                      len, err);
}

/* ---- ConverseStream ----------------------------------------------------------------- */

void bedrock_stream_init(struct bedrock_stream *s, const char *model, long created)
{
    memset(s, 0, sizeof *s);
    s->created = created;
    s->tool_index = -1;
    snprintf(s->id, sizeof s->id, "chatcmpl-bedrock-%lx", (unsigned long)created);
    snprintf(s->model, sizeof s->model, "%s", model ? model : "");
}

static int emit_chunk(struct bedrock_stream *s, json_t *delta, const char *finish, json_t *usage,
                      chunk_sink cb, void *ud, struct err *err)
{
    struct chunk_head h = {s->id, s->model, s->created};
    return chunk_emit(&h, delta, finish, usage, cb, ud, err);
}

static bool is_type(const char *a, const char *b)
{
    return a && strcmp(a, b) == 0;
}

int bedrock_stream_event(struct bedrock_stream *s, const struct aws_event *ev, chunk_sink cb,
                         void *ud, struct err *err)
{
    json_t *d = json_loadb((const char *)ev->payload, ev->payload_len, 0, NULL);
    if (ev->message_type && strcmp(ev->message_type, "event") != 0) {
        const char *type = ev->exception_type ? ev->exception_type : "error";
        const char *msg = json_string_value(json_object_get(d, "message"));
        if (msg == NULL) msg = json_string_value(json_object_get(d, "Message"));
        int status = strstr(type, "hrottling") ? 429
                     : strstr(type, "navailable") || strstr(type, "verloaded") ||
                             strstr(type, "modelStreamError") || strstr(type, "internalServer")
                         ? 503
                         : 502;
        err_set(err, status, "upstream_error", status == 502 ? "upstream_error" : "upstream_busy",
                "Bedrock %s: %s", type, msg ? msg : "(no message)");
        json_decref(d);
        return -1;
    }
    if (!json_is_object(d)) {
        json_decref(d);
        return err_set(err, 502, "upstream_error", "bad_upstream_stream",
                       "Bedrock sent a %s event that is not JSON",
                       ev->event_type ? ev->event_type : "(untyped)");
    }
    int rc = 0;
    const char *t = ev->event_type;
    if (is_type(t, "messageStart")) {
        rc = emit_chunk(s, json_pack("{s:s, s:s}", "role", "assistant", "content", ""), NULL, NULL,
                        cb, ud, err);
    } else if (is_type(t, "contentBlockStart")) {
        json_t *use = json_object_get(json_object_get(d, "start"), "toolUse");
        if (json_is_object(use)) {
            s->tool_index = s->tools_seen++;
            rc =
                emit_chunk(s,
                           json_pack("{s:[{s:i, s:O?, s:s, s:{s:O?, s:s}}]}", "tool_calls", "index",
                                     s->tool_index, "id", json_object_get(use, "toolUseId"), "type",
                                     "function", "function", "name", json_object_get(use, "name"),
                                     "arguments", ""),
                           NULL, NULL, cb, ud, err);
        }
    } else if (is_type(t, "contentBlockDelta")) {
        json_t *delta = json_object_get(d, "delta");
        json_t *text = json_object_get(delta, "text");
        json_t *input = json_object_get(json_object_get(delta, "toolUse"), "input");
        if (json_is_string(text))
            rc = emit_chunk(s, json_pack("{s:O}", "content", text), NULL, NULL, cb, ud, err);
        else if (json_is_string(input) && s->tool_index >= 0)
            rc = emit_chunk(s,
                            json_pack("{s:[{s:i, s:{s:O}}]}", "tool_calls", "index", s->tool_index,
                                      "function", "arguments", input),
                            NULL, NULL, cb, ud, err);
    } else if (is_type(t, "contentBlockStop")) {
        s->tool_index = -1;
    } else if (is_type(t, "messageStop")) {
        s->stopped = true;
        rc = emit_chunk(s, json_object(),
                        finish_reason_for(json_string_value(json_object_get(d, "stopReason"))),
                        NULL, cb, ud, err);
    } else if (is_type(t, "metadata")) {
        json_t *u = json_object_get(d, "usage");
        s->input_tokens = (long)json_integer_value(json_object_get(u, "inputTokens"));
        s->output_tokens = (long)json_integer_value(json_object_get(u, "outputTokens"));
        s->cache_read_tokens = (long)json_integer_value(json_object_get(u, "cacheReadInputTokens"));
        s->done = true;
        rc = emit_chunk(s, NULL, NULL,
                        chunk_usage(s->input_tokens, s->output_tokens, s->cache_read_tokens), cb,
                        ud, err);
    }
    json_decref(d);
    return rc;
}
