/*
 * DESIGN: routing is a small static table (path → methods → handler); a path that exists
 * with another method answers 405 with Allow, anything else 404. Bodies are validated
 * against a per-endpoint table of known fields and their JSON types: unknown fields pass
 * through untouched (providers add fields faster than gateways do), known fields with the
 * wrong type are refused here with the field's name instead of an opaque upstream error.
 */
#include "api/openai.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <string.h>

#include "api/proxy.h"
#include "app.h"
#include "http/server.h"
#include "providers/provider.h"

enum kind { K_STRING, K_BOOL, K_INT, K_NUMBER, K_ARRAY, K_OBJECT, K_STRING_OR_ARRAY,
            K_STRING_OR_OBJECT };

struct field_rule {
    const char *name;
    enum kind kind;
    bool required;
};

static const struct field_rule chat_rules[] = {
    {"model", K_STRING, true},
    {"messages", K_ARRAY, true},
    {"stream", K_BOOL, false},
    {"stream_options", K_OBJECT, false},
    {"max_tokens", K_INT, false},
    {"max_completion_tokens", K_INT, false},
    {"n", K_INT, false},
    {"seed", K_INT, false},
    {"temperature", K_NUMBER, false},
    {"top_p", K_NUMBER, false},
    {"presence_penalty", K_NUMBER, false},
    {"frequency_penalty", K_NUMBER, false},
    {"stop", K_STRING_OR_ARRAY, false},
    {"user", K_STRING, false},
    {"tools", K_ARRAY, false},
    {"tool_choice", K_STRING_OR_OBJECT, false},
    {"response_format", K_OBJECT, false},
    {"logit_bias", K_OBJECT, false},
    {NULL, 0, false},
};

static const struct field_rule completion_rules[] = {
    {"model", K_STRING, true},
    {"prompt", K_STRING_OR_ARRAY, true},
    {"stream", K_BOOL, false},
    {"stream_options", K_OBJECT, false},
    {"max_tokens", K_INT, false},
    {"n", K_INT, false},
    {"seed", K_INT, false},
    {"temperature", K_NUMBER, false},
    {"top_p", K_NUMBER, false},
    {"stop", K_STRING_OR_ARRAY, false},
    {"user", K_STRING, false},
    {NULL, 0, false},
};

static const struct field_rule embedding_rules[] = {
    {"model", K_STRING, true},
    {"input", K_STRING_OR_ARRAY, true},
    {"encoding_format", K_STRING, false},
    {"dimensions", K_INT, false},
    {"user", K_STRING, false},
    {NULL, 0, false},
};

static const char *kind_name(enum kind k)
{
    switch (k) {
    case K_STRING: return "a string";
    case K_BOOL: return "a boolean";
    case K_INT: return "an integer";
    case K_NUMBER: return "a number";
    case K_ARRAY: return "an array";
    case K_OBJECT: return "an object";
    case K_STRING_OR_ARRAY: return "a string or an array";
    case K_STRING_OR_OBJECT: return "a string or an object";
    }
    return "?";
}

static const char *json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "number";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

static bool kind_matches(enum kind k, const json_t *v)
{
    switch (k) {
    case K_STRING: return json_is_string(v);
    case K_BOOL: return json_is_boolean(v);
    case K_INT: return json_is_integer(v);
    case K_NUMBER: return json_is_number(v);
    case K_ARRAY: return json_is_array(v);
    case K_OBJECT: return json_is_object(v);
    case K_STRING_OR_ARRAY: return json_is_string(v) || json_is_array(v);
    case K_STRING_OR_OBJECT: return json_is_string(v) || json_is_object(v);
    }
    return false;
}

static int check_messages(const json_t *messages, struct err *err)
{
    if (json_array_size(messages) == 0)
        return err_param(err, 400, "messages", "\"messages\" must contain at least one message");
    size_t i;
    const json_t *m;
    json_array_foreach(messages, i, m)
    {
        if (!json_is_object(m))
            return err_param(err, 400, "messages",
                             "\"messages[%zu]\" must be an object, got %s", i, json_type_name(m));
        const json_t *role = json_object_get(m, "role");
        if (!json_is_string(role))
            return err_param(err, 400, "messages", "\"messages[%zu].role\" must be a string", i);
    }
    return 0;
}

json_t *openai_parse_request(enum openai_endpoint endpoint, const char *body, size_t len,
                             struct err *err)
{
    json_error_t jerr;
    if (len == 0) {
        err_set(err, 400, "invalid_request_error", "invalid_json",
                "request body is empty; expected a JSON object");
        return NULL;
    }
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        err_set(err, 400, "invalid_request_error", "invalid_json",
                "request body is not valid JSON: %s at line %d column %d", jerr.text, jerr.line,
                jerr.column);
        return NULL;
    }
    if (!json_is_object(root)) {
        err_set(err, 400, "invalid_request_error", "invalid_json",
                "request body must be a JSON object, got %s", json_type_name(root));
        json_decref(root);
        return NULL;
    }
    const struct field_rule *rules = endpoint == OPENAI_CHAT          ? chat_rules
                                     : endpoint == OPENAI_COMPLETIONS ? completion_rules
                                                                      : embedding_rules;
    for (const struct field_rule *r = rules; r->name; r++) {
        const json_t *v = json_object_get(root, r->name);
        if (v == NULL || (json_is_null(v) && !r->required)) {
            if (!r->required) continue;
            err_param(err, 400, r->name, "missing required field \"%s\"", r->name);
            err->code = "missing_field";
            goto fail;
        }
        if (!kind_matches(r->kind, v)) {
            err_param(err, 400, r->name, "\"%s\" must be %s, got %s", r->name, kind_name(r->kind),
                      json_type_name(v));
            err->code = "invalid_type";
            goto fail;
        }
    }
    if (endpoint == OPENAI_CHAT && check_messages(json_object_get(root, "messages"), err) != 0) {
        err->code = "invalid_type";
        goto fail;
    }
    const json_t *so = json_object_get(root, "stream_options");
    if (json_is_object(so)) {
        const json_t *iu = json_object_get(so, "include_usage");
        if (iu && !json_is_boolean(iu) && !json_is_null(iu)) {
            err_param(err, 400, "stream_options",
                      "\"stream_options.include_usage\" must be a boolean, got %s",
                      json_type_name(iu));
            err->code = "invalid_type";
            goto fail;
        }
    }
    return root;
fail:
    json_decref(root);
    return NULL;
}

const char *openai_endpoint_path(enum openai_endpoint endpoint)
{
    switch (endpoint) {
    case OPENAI_CHAT: return "chat/completions";
    case OPENAI_COMPLETIONS: return "completions";
    case OPENAI_EMBEDDINGS: return "embeddings";
    }
    return "?";
}

/* ---- handlers ---------------------------------------------------------------------- */

static void respond_json(struct http_request *req, int status, json_t *doc)
{
    char *s = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (s == NULL) {
        struct err e;
        err_oom(&e);
        proxy_log_simple(req, 500, NULL, e.msg);
        http_respond_error(req, &e);
        return;
    }
    proxy_log_simple(req, status, NULL, NULL);
    http_respond(req, status, "application/json", s, strlen(s));
    free(s);
}

static void handle_health(struct app *app, struct http_request *req)
{
    (void)app;
    static const char body[] = "{\"status\":\"ok\"}";
    proxy_log_simple(req, 200, NULL, NULL);
    http_respond(req, 200, "application/json", body, sizeof body - 1);
}

static void handle_ready(struct app *app, struct http_request *req)
{
    json_t *list = json_array();
    bool all = true;
    for (size_t i = 0; i < app->n_backends; i++) {
        struct backend *b = &app->backends[i];
        json_t *o = json_pack("{s:s, s:b}", "name", b->conf->name, "ready", b->ready);
        if (!b->ready) {
            all = false;
            json_object_set_new(o, "reason", json_string(b->not_ready_reason));
        }
        json_array_append_new(list, o);
    }
    if (app->stopping) all = false;
    json_t *doc = json_pack("{s:s, s:o}", "status", all ? "ready" : "not_ready", "backends", list);
    respond_json(req, all ? 200 : 503, doc);
}

static void handle_models(struct app *app, struct http_request *req)
{
    json_t *data = json_array();
    for (size_t i = 0; i < app->cfg->n_models; i++)
        json_array_append_new(data, json_pack("{s:s, s:s, s:i, s:s}", "id",
                                              app->cfg->models[i].name, "object", "model",
                                              "created", 0, "owned_by", "stratus"));
    respond_json(req, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

static void reply_error(struct http_request *req, const struct err *e, const char *model)
{
    proxy_log_simple(req, e->status, model, e->msg);
    http_respond_error(req, e);
}

static void handle_proxy(struct app *app, struct http_request *req, enum openai_endpoint ep)
{
    struct err e;
    err_clear(&e);
    size_t len = evbuffer_get_length(req->body);
    const char *bytes = len ? (const char *)evbuffer_pullup(req->body, -1) : "";
    json_t *body = openai_parse_request(ep, bytes, len, &e);
    if (body == NULL) {
        reply_error(req, &e, NULL);
        return;
    }
    const char *name = json_string_value(json_object_get(body, "model"));
    const struct model_conf *model = config_find_model(app->cfg, name);
    if (model == NULL) {
        err_param(&e, 404, "model", "model '%s' does not exist; GET /v1/models lists the models",
                  name);
        e.code = "model_not_found";
        reply_error(req, &e, name);
        json_decref(body);
        return;
    }
    proxy_start(app, req, model, ep, body);
}

static void handle_chat(struct app *app, struct http_request *req)
{
    handle_proxy(app, req, OPENAI_CHAT);
}

static void handle_completions(struct app *app, struct http_request *req)
{
    handle_proxy(app, req, OPENAI_COMPLETIONS);
}

static void handle_embeddings(struct app *app, struct http_request *req)
{
    handle_proxy(app, req, OPENAI_EMBEDDINGS);
}

struct route {
    const char *path;
    const char *method;
    void (*handle)(struct app *app, struct http_request *req);
};

static const struct route routes[] = {
    {"/health", "GET", handle_health},
    {"/ready", "GET", handle_ready},
    {"/v1/models", "GET", handle_models},
    {"/v1/chat/completions", "POST", handle_chat},
    {"/v1/completions", "POST", handle_completions},
    {"/v1/embeddings", "POST", handle_embeddings},
};

void api_handle(struct http_request *req, void *ud)
{
    struct app *app = ud;
    struct err e;
    err_clear(&e);
    const struct route *path_match = NULL;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (strcmp(routes[i].path, req->path) != 0) continue;
        path_match = &routes[i];
        if (strcmp(routes[i].method, req->method) == 0) {
            routes[i].handle(app, req);
            return;
        }
    }
    if (path_match) {
        http_add_header(req, "Allow", path_match->method);
        err_set(&e, 405, "invalid_request_error", "method_not_allowed",
                "method %s is not allowed on %s; use %s", req->method, req->path,
                path_match->method);
    } else {
        err_set(&e, 404, "invalid_request_error", "not_found", "no such endpoint: %s %s",
                req->method, req->path);
    }
    reply_error(req, &e, NULL);
}
