/*
 * DESIGN: routing is a small static table (path → methods → handler); a path that exists
 * with another method answers 405 with Allow, anything else 404. Bodies are validated
 * against a per-endpoint table of known fields and their JSON types: unknown fields pass
 * through untouched (providers add fields faster than gateways do), known fields with the
 * wrong type are refused here with the field's name instead of an opaque upstream error.
 */
#include "api/openai.h"

#include <event2/buffer.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/admin.h"
#include "api/proxy.h"
#include "obs/record.h"
#include "app.h"
#include "guard/guard.h"
#include "http/server.h"
#include "providers/provider.h"
#include "util/arena.h"

enum kind {
    K_STRING,
    K_BOOL,
    K_INT,
    K_NUMBER,
    K_ARRAY,
    K_OBJECT,
    K_STRING_OR_ARRAY,
    K_STRING_OR_OBJECT
};

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
    {"model", K_STRING, true},    {"prompt", K_STRING_OR_ARRAY, true},
    {"stream", K_BOOL, false},    {"stream_options", K_OBJECT, false},
    {"max_tokens", K_INT, false}, {"n", K_INT, false},
    {"seed", K_INT, false},       {"temperature", K_NUMBER, false},
    {"top_p", K_NUMBER, false},   {"stop", K_STRING_OR_ARRAY, false},
    {"user", K_STRING, false},    {NULL, 0, false},
};

static const struct field_rule embedding_rules[] = {
    {"model", K_STRING, true},
    {"input", K_STRING_OR_ARRAY, true},
    {"encoding_format", K_STRING, false},
    {"dimensions", K_INT, false},
    {"user", K_STRING, false},
    {NULL, 0, false},
};

#define MAX_RULES 32

static int value_of(const struct field_rule *rules, const int *values, const char *name)
{
    for (size_t k = 0; rules[k].name; k++)
        if (strcmp(rules[k].name, name) == 0) return values[k];
    return -1;
}

static const char *kind_name(enum kind k)
{
    switch (k) {
    case K_STRING:
        return "a string";
    case K_BOOL:
        return "a boolean";
    case K_INT:
        return "an integer";
    case K_NUMBER:
        return "a number";
    case K_ARRAY:
        return "an array";
    case K_OBJECT:
        return "an object";
    case K_STRING_OR_ARRAY:
        return "a string or an array";
    case K_STRING_OR_OBJECT:
        return "a string or an object";
    }
    return "?";
}

static bool has_duplicate_key(const struct json_scan *s, struct err *err)
{
    int keys[256], n = 0;
    int i = 1;
    for (int m = 0; m < json_scan_size(s, 0) && i < s->n; m++) {
        const jsmntok_t *k = &s->tok[i];
        size_t len = (size_t)(k->end - k->start);
        for (int j = 0; j < n; j++) {
            const jsmntok_t *o = &s->tok[keys[j]];
            if ((size_t)(o->end - o->start) == len &&
                memcmp(s->js + o->start, s->js + k->start, len) == 0) {
                err_set(err, 400, "invalid_request_error", "invalid_json",
                        "request body has the key \"%.*s\" more than once",
                        (int)(len > 64 ? 64 : len), s->js + k->start);
                return true;
            }
        }
        if (n < 256) keys[n++] = i;
        i = json_scan_skip(s, i + 1);
    }
    return false;
}

static bool kind_matches(enum kind k, const struct json_scan *s, int i)
{
    switch (k) {
    case K_STRING:
        return json_scan_is_string(s, i);
    case K_BOOL:
        return json_scan_is_bool(s, i);
    case K_INT:
        return json_scan_is_integer(s, i);
    case K_NUMBER:
        return json_scan_is_number(s, i);
    case K_ARRAY:
        return json_scan_is_array(s, i);
    case K_OBJECT:
        return json_scan_is_object(s, i);
    case K_STRING_OR_ARRAY:
        return json_scan_is_string(s, i) || json_scan_is_array(s, i);
    case K_STRING_OR_OBJECT:
        return json_scan_is_string(s, i) || json_scan_is_object(s, i);
    }
    return false;
}

static int invalid_type(struct err *err, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int invalid_type(struct err *err, const char *param, const char *fmt, ...)
{
    va_list ap;
    err_param(err, 400, param, "%s", "");
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    err->code = "invalid_type";
    return -1;
}

static int check_messages(const struct json_scan *s, int messages, struct err *err)
{
    if (json_scan_size(s, messages) == 0)
        return invalid_type(err, "messages", "\"messages\" must contain at least one message");
    int i = messages + 1;
    for (int k = 0; k < json_scan_size(s, messages); k++) {
        if (!json_scan_is_object(s, i))
            return invalid_type(err, "messages", "\"messages[%d]\" must be an object, got %s", k,
                                json_scan_type_name(s, i));
        if (!json_scan_is_string(s, json_scan_get(s, i, "role")))
            return invalid_type(err, "messages", "\"messages[%d].role\" must be a string", k);
        i = json_scan_skip(s, i);
    }
    return 0;
}

/* The precise reason text for a body that is not JSON comes from jansson (line, column);
 * this only runs on the error path. */
static int malformed(const char *body, size_t len, struct err *err)
{
    json_error_t jerr;
    json_t *j = json_loadb(body, len, JSON_DECODE_ANY, &jerr);
    if (j != NULL) {
        json_decref(j);
        return err_set(err, 400, "invalid_request_error", "invalid_json",
                       "request body is not valid JSON");
    }
    return err_set(err, 400, "invalid_request_error", "invalid_json",
                   "request body is not valid JSON: %s at line %d column %d", jerr.text, jerr.line,
                   jerr.column);
}

static char *string_value(const struct json_scan *s, int i, struct arena *a)
{
    const char *p = s->js + s->tok[i].start;
    size_t n = (size_t)(s->tok[i].end - s->tok[i].start);
    if (memchr(p, '\\', n) == NULL) return arena_strndup(a, p, n);
    /* Escapes are rare in model names; let jansson decode them. */
    json_t *j = json_loadb(p - 1, n + 2, JSON_DECODE_ANY, NULL);
    char *out = json_is_string(j) ? arena_strdup(a, json_string_value(j)) : NULL;
    json_decref(j);
    return out;
}

int openai_parse_request(enum openai_endpoint endpoint, const char *body, size_t len,
                         struct arena *arena, struct openai_request *out, struct err *err)
{
    struct json_scan *s = &out->scan;
    bool oom = false;
    memset(out, 0, sizeof *out);
    out->endpoint = endpoint;
    out->stream_options_tok = -1;
    if (len == 0)
        return err_set(err, 400, "invalid_request_error", "invalid_json",
                       "request body is empty; expected a JSON object");
    if (json_scan_parse(s, body, len, arena, &oom) != 0)
        return oom ? err_oom(err) : malformed(body, len, err);
    if (!json_scan_is_object(s, 0))
        return err_set(err, 400, "invalid_request_error", "invalid_json",
                       "request body must be a JSON object, got %s", json_scan_type_name(s, 0));
    const struct field_rule *rules = endpoint == OPENAI_CHAT          ? chat_rules
                                     : endpoint == OPENAI_COMPLETIONS ? completion_rules
                                                                      : embedding_rules;
    /* Duplicate keys are refused: we would route on one "model" while the upstream, reading
     * the last one, could be sent another. */
    if (has_duplicate_key(s, err)) return -1;
    /* One pass over the body's members finds every field the rules name. */
    const char *names[MAX_RULES];
    int values[MAX_RULES];
    size_t n_rules = 0;
    for (const struct field_rule *r = rules; r->name; r++) names[n_rules++] = r->name;
    json_scan_members(s, 0, names, n_rules, values);
    for (size_t k = 0; k < n_rules; k++) {
        const struct field_rule *r = &rules[k];
        int v = values[k];
        if (v < 0 || (json_scan_is_null(s, v) && !r->required)) {
            if (!r->required) continue;
            err_param(err, 400, r->name, "missing required field \"%s\"", r->name);
            err->code = "missing_field";
            return -1;
        }
        if (!kind_matches(r->kind, s, v))
            return invalid_type(err, r->name, "\"%s\" must be %s, got %s", r->name,
                                kind_name(r->kind), json_scan_type_name(s, v));
    }
    /* Every rule table starts with model, then the endpoint's required input. */
    if (endpoint == OPENAI_CHAT && check_messages(s, values[1], err) != 0) return -1;
    out->model_tok = values[0];
    out->model = string_value(s, out->model_tok, arena);
    if (out->model == NULL) return err_oom(err);
    out->stream = json_scan_is_true(s, value_of(rules, values, "stream"));
    int so = value_of(rules, values, "stream_options");
    out->stream_options_tok = so;
    if (json_scan_is_object(s, so)) {
        int iu = json_scan_get(s, so, "include_usage");
        if (iu >= 0 && !json_scan_is_bool(s, iu) && !json_scan_is_null(s, iu))
            return invalid_type(err, "stream_options",
                                "\"stream_options.include_usage\" must be a boolean, got %s",
                                json_scan_type_name(s, iu));
        out->want_usage = json_scan_is_true(s, iu);
    }
    return 0;
}

const char *openai_endpoint_path(enum openai_endpoint endpoint)
{
    switch (endpoint) {
    case OPENAI_CHAT:
        return "chat/completions";
    case OPENAI_COMPLETIONS:
        return "completions";
    case OPENAI_EMBEDDINGS:
        return "embeddings";
    }
    return "?";
}

/* ---- handlers ---------------------------------------------------------------------- */

void api_log(const struct http_request *req, int status, const char *error)
{
    record_request(NULL, &(struct request_record){.req = req, .status = status, .error = error});
}

void api_respond_json(struct http_request *req, int status, json_t *doc)
{
    char *s = doc ? json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(12)) : NULL;
    json_decref(doc);
    if (s == NULL) {
        struct err e;
        err_oom(&e);
        api_log(req, 500, e.msg);
        http_respond_error(req, &e);
        return;
    }
    api_log(req, status, NULL);
    http_respond(req, status, "application/json", s, strlen(s));
    free(s);
}

static void handle_health(struct app *app, struct http_request *req, const struct principal *who)
{
    (void)app;
    (void)who;
    static const char body[] = "{\"status\":\"ok\"}";
    api_log(req, 200, NULL);
    http_respond(req, 200, "application/json", body, sizeof body - 1);
}

static void handle_ready(struct app *app, struct http_request *req, const struct principal *who)
{
    (void)who;
    json_t *list = json_array();
    for (size_t i = 0; i < app->n_backends; i++) {
        struct backend *b = &app->backends[i];
        json_t *o = json_pack("{s:s, s:b}", "name", b->conf->name, "ready", b->ready);
        if (b->load.valid)
            json_object_set_new(o, "engine",
                                json_pack("{s:i, s:i, s:i, s:f, s:f}", "slots", b->load.slots,
                                          "busy_slots", b->load.busy_slots, "queue_depth",
                                          b->load.queue_depth, "tokens_per_s", b->load.tokens_per_s,
                                          "ttft_ms", b->load.ttft_ms));
        if (!b->ready) {
            json_object_set_new(o, "reason", json_string(b->not_ready_reason));
        }
        json_array_append_new(list, o);
    }
    /* Ready means every model group can be served now by at least one of its targets; a
     * backend nobody runs (the default config lists llama-server and Ollama as options)
     * only matters if a group depends on it alone. */
    json_t *models = json_array();
    bool serving = !app->stopping;
    for (size_t i = 0; i < app->cfg->n_models; i++) {
        const struct model_conf *m = &app->cfg->models[i];
        size_t usable = 0;
        for (size_t t = 0; t < m->n_targets; t++)
            usable += app_backend(app, m->targets[t].backend_index)->ready;
        json_t *o = json_pack("{s:s, s:b, s:i}", "name", m->name, "ready", usable > 0,
                              "usable_targets", (json_int_t)usable);
        if (usable == 0) {
            serving = false;
            json_object_set_new(o, "reason", json_string("no target's backend is ready"));
        }
        json_array_append_new(models, o);
    }
    json_t *doc = json_pack("{s:s, s:o, s:o}", "status", serving ? "ready" : "not_ready", "models",
                            models, "backends", list);
    api_respond_json(req, serving ? 200 : 503, doc);
}

static void handle_models(struct app *app, struct http_request *req, const struct principal *who)
{
    json_t *data = json_array();
    for (size_t i = 0; i < app->cfg->n_models; i++)
        if (who->kind != PRINCIPAL_KEY || key_allows_model(&who->key, app->cfg->models[i].name))
            json_array_append_new(data, json_pack("{s:s, s:s, s:i, s:s}", "id",
                                                  app->cfg->models[i].name, "object", "model",
                                                  "created", 0, "owned_by", "stratus"));
    api_respond_json(req, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

static void reply_error(struct http_request *req, const struct err *e)
{
    api_log(req, e->status, e->msg);
    http_respond_error(req, e);
}

enum access { OPEN, API, ADMIN }; /* who may call: anyone, any key, the master key */

/* A model endpoint is a surface (its wire format) and the endpoint in the request model;
 * anything else is a handler. */
struct route {
    const char *path;
    const char *method;
    enum access access;
    bool prefix; /* path is a prefix ("/admin/keys/" + id) */
    void (*handle)(struct app *app, struct http_request *req, const struct principal *who);
    const struct surface_ops *surface;
    enum openai_endpoint endpoint;
};

static const struct route routes[] = {
    {"/health", "GET", OPEN, false, handle_health, NULL, 0},
    {"/ready", "GET", OPEN, false, handle_ready, NULL, 0},
    {"/v1/models", "GET", API, false, handle_models, NULL, 0},
    {"/v1/chat/completions", "POST", API, false, NULL, &surface_openai, OPENAI_CHAT},
    {"/v1/completions", "POST", API, false, NULL, &surface_openai, OPENAI_COMPLETIONS},
    {"/v1/embeddings", "POST", API, false, NULL, &surface_openai, OPENAI_EMBEDDINGS},
    {"/admin/keys", "POST", ADMIN, false, admin_create_key, NULL, 0},
    {"/admin/keys", "GET", ADMIN, false, admin_list_keys, NULL, 0},
    {"/admin/keys/", "DELETE", ADMIN, true, admin_revoke_key, NULL, 0},
    {"/admin/spend", "GET", ADMIN, false, admin_spend, NULL, 0},
};

void api_handle(struct http_request *req, void *ud)
{
    struct app *app = ud;
    struct err e;
    err_clear(&e);
    const struct route *path_match = NULL;
    char allow[64] = "";
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        const struct route *r = &routes[i];
        bool match = r->prefix ? strncmp(r->path, req->path, strlen(r->path)) == 0 &&
                                     req->path[strlen(r->path)] != '\0'
                               : strcmp(r->path, req->path) == 0;
        if (!match) continue;
        path_match = r;
        if (strcmp(r->method, req->method) == 0) {
            struct principal *who = arena_calloc(req->arena, 1, sizeof *who);
            if (who == NULL) {
                err_oom(&e);
                break;
            }
            if (r->access != OPEN &&
                guard_authenticate(app->guard, req, r->access == ADMIN, who, &e) != 0) {
                if (r->access == API) { /* a model request: it gets a ledger row too */
                    proxy_record_refusal(app, req, NULL, e.status, e.msg);
                    http_respond_error(req, &e);
                    return;
                }
                break;
            }
            if (r->surface)
                proxy_handle(app, req, r->surface, r->endpoint, who);
            else
                r->handle(app, req, who);
            return;
        }
        size_t n = strlen(allow);
        snprintf(allow + n, sizeof allow - n, "%s%s", n ? ", " : "", r->method);
    }
    if (e.status) {
        /* authentication failed or out of memory: already in e */
    } else if (path_match) {
        http_add_header(req, "Allow", allow);
        err_set(&e, 405, "invalid_request_error", "method_not_allowed",
                "method %s is not allowed on %s; use %s", req->method, req->path, allow);
    } else {
        err_set(&e, 404, "invalid_request_error", "not_found", "no such endpoint: %s %s",
                req->method, req->path);
    }
    reply_error(req, &e);
}
