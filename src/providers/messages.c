/*
 * DESIGN: translation builds real documents with jansson — the shapes differ too much for
 * text splicing. The client's body was already validated by the API layer (types of the
 * fields we read), so a failure here is either something the target cannot express (400,
 * naming the field) or memory. Anthropic and Bedrock both want content blocks and strict
 * user/assistant alternation, so the walk over OpenAI messages is written once; only the
 * block constructors differ by dialect, and they sit side by side so a reader sees both
 * wire shapes of one OpenAI construct together.
 */
#include "providers/messages.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/arena.h"
#include "util/json_text.h"

char *messages_dump(json_t *doc, struct arena *arena, size_t *len, struct err *err)
{
    char *text = doc ? json_dumps(doc, JSON_COMPACT | JSON_TEXT_REALS) : NULL;
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

static json_t *text_block(enum messages_dialect d, const char *text)
{
    return d == MESSAGES_ANTHROPIC ? json_pack("{s:s, s:s}", "type", "text", "text", text)
                                   : json_pack("{s:s}", "text", text);
}

/* An OpenAI image_url part → an image block. */
static json_t *image_block(enum messages_dialect d, json_t *part, size_t i, struct err *err)
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
    if (d == MESSAGES_ANTHROPIC) {
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
static int content_blocks(enum messages_dialect d, json_t *content, json_t *blocks, bool images_ok,
                          size_t i, struct err *err)
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
static int tool_use_blocks(enum messages_dialect d, json_t *calls, json_t *blocks, size_t i,
                           struct err *err)
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
        json_t *b = d == MESSAGES_ANTHROPIC
                        ? json_pack("{s:s, s:s, s:s, s:o}", "type", "tool_use", "id", id, "name",
                                    name, "input", input)
                        : json_pack("{s:{s:s, s:s, s:o}}", "toolUse", "toolUseId", id, "name", name,
                                    "input", input);
        json_array_append_new(blocks, b);
    }
    return 0;
}

static json_t *tool_result_block(enum messages_dialect d, json_t *msg, size_t i, struct err *err)
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
    json_t *b = d == MESSAGES_ANTHROPIC ? json_pack("{s:s, s:s, s:s}", "type", "tool_result",
                                                    "tool_use_id", id, "content", text)
                                        : json_pack("{s:{s:s, s:[{s:s}]}}", "toolResult",
                                                    "toolUseId", id, "content", "text", text);
    free(text);
    return b;
}

int messages_convert(enum messages_dialect d, json_t *messages, json_t *out_messages,
                     json_t *system, struct err *err)
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

json_t *messages_stop_list(json_t *stop)
{
    if (json_is_string(stop)) return json_pack("[O]", stop);
    if (json_is_array(stop) && json_array_size(stop) > 0) return json_incref(stop);
    return NULL;
}

/* The client's validated chat body as a document; NULL with `err` (400) when it is not an
 * object or has no `messages` list. */
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

int messages_prepare(enum messages_dialect d, const struct openai_request *r,
                     struct messages_request *out, struct err *err)
{
    json_t *req = load_request(r, err);
    if (req == NULL) return -1;
    json_t *messages = json_array(), *system = json_array();
    if (messages == NULL || system == NULL ||
        messages_convert(d, json_object_get(req, "messages"), messages, system, err) != 0) {
        if (messages == NULL || system == NULL) err_oom(err);
        json_decref(messages);
        json_decref(system);
        json_decref(req);
        return -1;
    }
    *out = (struct messages_request){.req = req, .messages = messages, .system = system};
    return 0;
}

json_t *messages_max_tokens(json_t *req)
{
    json_t *m = json_object_get(req, "max_completion_tokens");
    if (!json_is_integer(m)) m = json_object_get(req, "max_tokens");
    return json_is_integer(m) ? m : NULL;
}

/* ---- answers ------------------------------------------------------------------------ */

const char *messages_finish_reason(const char *stop)
{
    if (stop == NULL) return "stop";
    if (strcmp(stop, "max_tokens") == 0) return "length";
    if (strcmp(stop, "tool_use") == 0) return "tool_calls";
    if (strcmp(stop, "guardrail_intervened") == 0 || strcmp(stop, "content_filtered") == 0 ||
        strcmp(stop, "refusal") == 0)
        return "content_filter";
    return "stop";
}

json_t *messages_tool_call(json_t *id, json_t *name, json_t *input)
{
    char *args = json_dumps(input, JSON_COMPACT | JSON_ENCODE_ANY | JSON_TEXT_REALS);
    json_t *call = json_pack("{s:O?, s:s, s:{s:O?, s:s}}", "id", id, "type", "function", "function",
                             "name", name, "arguments", args ? args : "{}");
    free(args);
    return call;
}

char *messages_completion(const char *id, const char *model, json_t *text_parts, json_t *calls,
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
    return messages_dump(doc, arena, len, err);
}
