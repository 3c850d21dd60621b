/*
 * DESIGN: bodies are validated against a per-endpoint table of known fields, their JSON
 * types and OpenAI's documented ranges: unknown fields pass through untouched (providers add
 * fields faster than gateways do), known fields that are wrong are refused here with the
 * field's name instead of an opaque upstream error. The scan itself (util/json_scan) is
 * strict, linear and bounded, so no body can hold the event loop.
 */
#include "openai/request.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    bool ranged;     /* K_INT / K_NUMBER: must lie in [min, max] (else any value that fits) */
    double min, max; /* OpenAI's documented bounds where it has them */
};

/* max_tokens has no documented maximum (it depends on the model): any positive int64 is
 * passed on, and a key's TPM limit refuses what it could never allow. */
#define INT64_TOP     9223372036854775807.0
#define RANGE(lo, hi) .ranged = true, .min = (lo), .max = (hi)
#define ANY           .ranged = false

static const struct field_rule chat_rules[] = {
    {"model", K_STRING, true, ANY},
    {"messages", K_ARRAY, true, ANY},
    {"stream", K_BOOL, false, ANY},
    {"stream_options", K_OBJECT, false, ANY},
    {"max_tokens", K_INT, false, RANGE(1, INT64_TOP)},
    {"max_completion_tokens", K_INT, false, RANGE(1, INT64_TOP)},
    {"n", K_INT, false, RANGE(1, 128)},
    {"seed", K_INT, false, ANY},
    {"temperature", K_NUMBER, false, RANGE(0, 2)},
    {"top_p", K_NUMBER, false, RANGE(0, 1)},
    {"presence_penalty", K_NUMBER, false, RANGE(-2, 2)},
    {"frequency_penalty", K_NUMBER, false, RANGE(-2, 2)},
    {"logprobs", K_BOOL, false, ANY},
    {"top_logprobs", K_INT, false, RANGE(0, 20)},
    {"stop", K_STRING_OR_ARRAY, false, ANY},
    {"user", K_STRING, false, ANY},
    {"tools", K_ARRAY, false, ANY},
    {"tool_choice", K_STRING_OR_OBJECT, false, ANY},
    {"response_format", K_OBJECT, false, ANY},
    {"logit_bias", K_OBJECT, false, ANY},
    {"ignore_eos", K_BOOL, false, ANY}, /* llama-server's, the local engine's */
    {NULL, 0, false, ANY},
};

static const struct field_rule completion_rules[] = {
    {"model", K_STRING, true, ANY},
    {"prompt", K_STRING_OR_ARRAY, true, ANY},
    {"stream", K_BOOL, false, ANY},
    {"stream_options", K_OBJECT, false, ANY},
    {"max_tokens", K_INT, false, RANGE(1, INT64_TOP)},
    {"n", K_INT, false, RANGE(1, 128)},
    {"best_of", K_INT, false, RANGE(1, 20)},
    {"seed", K_INT, false, ANY},
    {"temperature", K_NUMBER, false, RANGE(0, 2)},
    {"top_p", K_NUMBER, false, RANGE(0, 1)},
    {"presence_penalty", K_NUMBER, false, RANGE(-2, 2)},
    {"frequency_penalty", K_NUMBER, false, RANGE(-2, 2)},
    {"logprobs", K_INT, false, RANGE(0, 5)},
    {"echo", K_BOOL, false, ANY},
    {"suffix", K_STRING, false, ANY},
    {"stop", K_STRING_OR_ARRAY, false, ANY},
    {"user", K_STRING, false, ANY},
    {"logit_bias", K_OBJECT, false, ANY},
    {"ignore_eos", K_BOOL, false, ANY},
    {NULL, 0, false, ANY},
};

static const struct field_rule embedding_rules[] = {
    {"model", K_STRING, true, ANY},
    {"input", K_STRING_OR_ARRAY, true, ANY},
    {"encoding_format", K_STRING, false, ANY},
    {"dimensions", K_INT, false, RANGE(1, INT64_TOP)},
    {"user", K_STRING, false, ANY},
    {NULL, 0, false, ANY},
};

#define MAX_RULES 32

static const struct json_scan_limits body_limits = {
    .max_tokens = OPENAI_MAX_JSON_VALUES,
    .max_depth = OPENAI_MAX_DEPTH,
    .max_members = OPENAI_MAX_OBJECT_MEMBERS,
};

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

static int invalid(struct err *err, const char *code, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int invalid(struct err *err, const char *code, const char *param, const char *fmt, ...)
{
    va_list ap;
    err_param(err, 400, param, "%s", "");
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    err->code = code;
    return -1;
}

#define invalid_type(err, param, ...)  invalid(err, "invalid_type", param, __VA_ARGS__)
#define invalid_value(err, param, ...) invalid(err, "invalid_value", param, __VA_ARGS__)

/* The raw text of token i for a message, cut at 40 bytes. */
static int token_text(const struct json_scan *s, int i, const char **p)
{
    *p = s->js + s->tok[i].start;
    int n = s->tok[i].end - s->tok[i].start;
    return n > 40 ? 40 : n;
}

/* A known field's value against its rule's range (its type already matched). */
static int check_range(const struct field_rule *r, const struct json_scan *s, int v,
                       struct err *err)
{
    if (!r->ranged || json_scan_is_null(s, v)) return 0;
    const char *text;
    int n = token_text(s, v, &text);
    long long i = 0;
    double d = 0;
    bool read = r->kind == K_INT ? json_scan_integer(s, v, &i) : json_scan_number(s, v, &d);
    if (r->kind == K_INT) d = (double)i;
    if (read && d >= r->min && d <= r->max) return 0;
    if (r->kind == K_INT && r->max == INT64_TOP)
        return invalid_value(err, r->name, "\"%s\" must be at least %.0f, got %.*s", r->name,
                             r->min, n, text);
    return invalid_value(err, r->name, "\"%s\" must be %s from %g to %g, got %.*s", r->name,
                         r->kind == K_INT ? "an integer" : "a number", r->min, r->max, n, text);
}

/* logit_bias maps token ids to a bias from -100 to 100. */
static int check_logit_bias(const struct json_scan *s, int obj, struct err *err)
{
    if (!json_scan_is_object(s, obj)) return 0;
    int i = obj + 1;
    for (int m = 0; m < json_scan_size(s, obj); m++) {
        double d;
        const char *key;
        int kn = token_text(s, i, &key);
        if (!json_scan_number(s, i + 1, &d) || d < -100 || d > 100)
            return invalid_value(err, "logit_bias",
                                 "\"logit_bias.%.*s\" must be a number from -100 to 100", kn, key);
        i = json_scan_skip(s, i + 1);
    }
    return 0;
}

static int check_messages(const struct json_scan *s, int messages, struct err *err)
{
    if (json_scan_size(s, messages) == 0)
        return invalid_type(err, "messages", "\"messages\" must contain at least one message");
    if (json_scan_size(s, messages) > OPENAI_MAX_MESSAGES)
        return invalid(err, "array_above_max_length", "messages",
                       "\"messages\" has %d messages; this gateway takes at most %d per request",
                       json_scan_size(s, messages), OPENAI_MAX_MESSAGES);
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

static int check_inputs(const struct json_scan *s, int input, struct err *err)
{
    if (json_scan_is_array(s, input) && json_scan_size(s, input) > OPENAI_MAX_EMBEDDING_INPUTS)
        return invalid(err, "array_above_max_length", "input",
                       "\"input\" has %d entries; at most %d are allowed per request",
                       json_scan_size(s, input), OPENAI_MAX_EMBEDDING_INPUTS);
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

/* err.param must be static: the rule's own name when the path starts at a known field. */
static const char *param_of(const struct field_rule *rules, const char *path)
{
    size_t n = strcspn(path, ".[");
    for (const struct field_rule *r = rules; r->name; r++)
        if (strlen(r->name) == n && strncmp(r->name, path, n) == 0) return r->name;
    return NULL;
}

/* A checked scan's refusal as the 400 a client can act on: which limit, or which field. */
static int scan_refused(const struct field_rule *rules, const struct json_scan *s,
                        const struct json_scan_fault *f, const char *body, size_t len,
                        struct err *err)
{
    char path[160];
    const char *text;
    int n;
    switch (f->status) {
    case JSON_SCAN_OOM:
        return err_oom(err);
    case JSON_SCAN_TOO_MANY_TOKENS:
        return err_set(err, 400, "invalid_request_error", "json_too_large",
                       "request body has more than %d JSON keys and values (the gateway's limit "
                       "per request)",
                       OPENAI_MAX_JSON_VALUES);
    case JSON_SCAN_TOO_DEEP:
        return err_set(err, 400, "invalid_request_error", "json_too_deep",
                       "request body nests arrays and objects more than %d deep (the gateway's "
                       "limit per request)",
                       OPENAI_MAX_DEPTH);
    case JSON_SCAN_TOO_MANY_MEMBERS:
        json_scan_path(s, f->tok, path, sizeof path);
        return invalid(err, "json_too_large", param_of(rules, path),
                       "%s%s%s has %d keys; an object may have at most %d (the gateway's limit)",
                       path[0] ? "\"" : "the request body", path, path[0] ? "\"" : "",
                       json_scan_size(s, f->tok), OPENAI_MAX_OBJECT_MEMBERS);
    case JSON_SCAN_BAD_STRING:
        json_scan_path(s, f->tok, path, sizeof path);
        return invalid_value(err, param_of(rules, path),
                             "\"%s\" is not a valid JSON string: %s (at byte %zu of the body)",
                             path, f->why, f->offset);
    case JSON_SCAN_BAD_NUMBER:
        json_scan_path(s, f->tok, path, sizeof path);
        n = token_text(s, f->tok, &text);
        return invalid_value(err, param_of(rules, path),
                             "\"%s\" is out of range: %.*s%s does not fit a 64-bit integer or a "
                             "double",
                             path, n, text, n == 40 ? "..." : "");
    case JSON_SCAN_DUPLICATE_KEY:
        n = token_text(s, f->tok, &text);
        if (f->container <= 0) /* a member of the body itself */
            return err_set(err, 400, "invalid_request_error", "invalid_json",
                           "request body has the key \"%.*s\" more than once", n, text);
        json_scan_path(s, f->container, path, sizeof path);
        return err_set(err, 400, "invalid_request_error", "invalid_json",
                       "\"%s\" has the key \"%.*s\" more than once", path, n, text);
    case JSON_SCAN_INVALID:
    case JSON_SCAN_OK:
        break;
    }
    return malformed(body, len, err);
}

/* Every known field: present when required, of its documented type and range. */
static int check_fields(const struct field_rule *rules, const struct json_scan *s,
                        const int *values, struct err *err)
{
    for (size_t k = 0; rules[k].name; k++) {
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
        if (check_range(r, s, v, err) != 0) return -1;
    }
    return 0;
}

int openai_parse_request(enum openai_endpoint endpoint, const char *body, size_t len,
                         struct arena *arena, struct openai_request *out, struct err *err)
{
    struct json_scan *s = &out->scan;
    struct json_scan_fault fault;
    memset(out, 0, sizeof *out);
    out->endpoint = endpoint;
    out->stream_options_tok = -1;
    out->labels_tok = -1;
    const struct field_rule *rules = endpoint == OPENAI_CHAT          ? chat_rules
                                     : endpoint == OPENAI_COMPLETIONS ? completion_rules
                                                                      : embedding_rules;
    if (len == 0)
        return err_set(err, 400, "invalid_request_error", "invalid_json",
                       "request body is empty; expected a JSON object");
    /* Strict and bounded: duplicate keys are refused (we would route on one "model" while
     * the upstream, reading the last one, could be sent another), and so is anything a
     * jansson reader further on would refuse. */
    if (json_scan_parse_checked(s, body, len, arena, &body_limits, &fault) != 0)
        return scan_refused(rules, s, &fault, body, len, err);
    if (!json_scan_is_object(s, 0))
        return err_set(err, 400, "invalid_request_error", "invalid_json",
                       "request body must be a JSON object, got %s", json_scan_type_name(s, 0));
    /* One pass over the body's members finds every field the rules name. */
    const char *names[MAX_RULES];
    int values[MAX_RULES];
    size_t n_rules = 0;
    for (const struct field_rule *r = rules; r->name; r++) names[n_rules++] = r->name;
    json_scan_members(s, 0, names, n_rules, values);
    if (check_fields(rules, s, values, err) != 0) return -1;
    /* Every rule table starts with model, then the endpoint's required input. */
    if (endpoint == OPENAI_CHAT && check_messages(s, values[1], err) != 0) return -1;
    if (endpoint == OPENAI_EMBEDDINGS && check_inputs(s, values[1], err) != 0) return -1;
    if (check_logit_bias(s, value_of(rules, values, "logit_bias"), err) != 0) return -1;
    out->model_tok = values[0];
    out->model = json_scan_string_dup(s, out->model_tok, arena);
    if (out->model == NULL) return err_oom(err);
    out->stream = json_scan_is_true(s, value_of(rules, values, "stream"));
    int so = value_of(rules, values, "stream_options");
    out->stream_options_tok = so;
    out->labels_tok = json_scan_get(s, 0, "stratus_labels");
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
