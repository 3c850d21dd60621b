/*
 * DESIGN
 * An invocation is a small fan-out over route/call: each input element becomes an OpenAI
 * chat request (the lingua franca every provider already translates), started at once so
 * a batch reaches the engine together; one admission covers them all and each ends in its
 * own ledger row, so the money path is the one every other request takes. Each element's
 * chat request goes through the input guards and prompt limits a model request gets
 * (guard/content.h, guard_check_prompt) before admission. The answer is composed only when
 * every element has ended, in the input's order.
 *
 * How a classify score is computed depends on what the answering target could report
 * (see function.h); the result says which with score_source, never pretending a generated
 * label is a probability.
 *
 * Why one file of ~850 lines: one invocation is read top to bottom here — input and template,
 * guards, admission, fan-out, scoring, the answer and its ledger rows — and every step shares
 * the invocation/element state below; the doors' own wire shapes live in surface_lambda.c.
 */
#include "api/function.h"

#include <ctype.h>
#include <event2/buffer.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/credential.h"
#include "app.h"
#include "generation.h"
#include "guard/content.h"
#include "guard/guard.h"
#include "guard/sigv4_verify.h"
#include "http/server.h"
#include "obs/record.h"
#include "route/call.h"
#include "util/arena.h"
#include "util/clock.h"
#include "util/json_schema.h"
#include "util/json_text.h"

/* ---- pure parts (unit-tested) ------------------------------------------------------- */

char *function_fill_template(const char *template, const json_t *input, char *missing,
                             size_t missing_cap, struct err *err)
{
    size_t cap = strlen(template) + 64, len = 0;
    char *out = malloc(cap);
    if (out == NULL) goto oom;
    for (const char *p = template; *p;) {
        const char *open = strstr(p, "{{");
        const char *close = open ? strstr(open + 2, "}}") : NULL;
        size_t lit = open && close ? (size_t)(open - p) : strlen(p);
        const char *value = NULL;
        char *owned = NULL;
        size_t vlen = 0;
        if (open && close) {
            const char *a = open + 2, *b = close;
            while (a < b && *a == ' ') a++;
            while (b > a && b[-1] == ' ') b--;
            char field[128];
            snprintf(field, sizeof field, "%.*s", (int)(b - a), a);
            const json_t *v = json_object_get(input, field);
            if (v == NULL) {
                free(out);
                snprintf(missing, missing_cap, "%s", field);
                err_set(err, 400, "invalid_request_error", "missing_field",
                        "input is missing field '%s' (the template uses {{%s}})", field, field);
                return NULL;
            }
            if (json_is_string(v)) {
                value = json_string_value(v);
                vlen = json_string_length(v);
            } else if (!json_is_null(v)) {
                if ((owned = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_TEXT_REALS)) ==
                    NULL) {
                    free(out);
                    goto oom;
                }
                value = owned;
                vlen = strlen(owned);
            }
        }
        if (len + lit + vlen + 1 > cap) {
            cap = (len + lit + vlen + 1) * 2;
            char *grown = realloc(out, cap);
            if (grown == NULL) {
                free(owned);
                free(out);
                goto oom;
            }
            out = grown;
        }
        memcpy(out + len, p, lit);
        len += lit;
        if (vlen) memcpy(out + len, value, vlen);
        len += vlen;
        free(owned);
        p = open && close ? close + 2 : p + lit;
    }
    out[len] = '\0';
    return out;
oom:
    err_oom(err);
    return NULL;
}

size_t function_normalise(const double *logprobs, size_t n, double *out)
{
    size_t best = 0;
    double max = logprobs[0], sum = 0;
    for (size_t i = 1; i < n; i++)
        if (logprobs[i] > max) max = logprobs[i];
    for (size_t i = 0; i < n; i++) sum += out[i] = exp(logprobs[i] - max);
    for (size_t i = 0; i < n; i++) {
        out[i] /= sum;
        if (out[i] > out[best]) best = i;
    }
    return best;
}

/* ---- one invocation ----------------------------------------------------------------- */

struct invocation;

struct element {
    struct invocation *inv;
    struct openai_request request;
    struct call_request rq; /* borrowed by the call for its life */
    struct call *call;
    bool private_only; /* the input guards pinned it to private targets */
    char guard[200];   /* what the input guards found: the element's ledger row */
    bool done;
    int status; /* 200, or the failure's */
    char *answer;
    size_t answer_len;
    struct err err;
};

struct invocation {
    struct app *app;
    struct generation *gen; /* the config this invocation runs on (held by api_handle) */
    struct http_request *req;
    const struct function_door *door;
    const struct function_conf *fn;
    const struct model_conf *model; /* the group that serves it: the tier's route_to, if any */
    const struct model_conf *asked; /* the function's own group (what a key must allow) */
    const struct tier_conf *tier;   /* the caller's customer tier (docs/tiers.md), or NULL */
    struct principal who;
    bool authenticated; /* `who` is filled */
    char customer[128];
    bool batch;
    struct element *elements;
    size_t n, n_done;
    bool starting, finished;
    struct admission adm;
    long prompt_estimate, output_estimate;
    char guard[256]; /* what the input guards found, all elements: header, refusal's row */
};

static void door_fail(struct invocation *inv, const struct err *e, bool function_error,
                      const char *raw)
{
    inv->door->fail(inv->req, e, function_error, raw);
}

/* Refused before any call: one ledger row for the request, like any refused model call. */
static void refuse(struct invocation *inv, const struct err *e, bool function_error)
{
    inv->finished = true;
    record_request(&inv->app->record_to, &(struct request_record){
                                             .req = inv->req,
                                             .surface = inv->door->name,
                                             .status = e->status,
                                             .error = e->msg,
                                             .error_code = e->code,
                                             .model = inv->fn ? inv->fn->model : NULL,
                                             .model_known = inv->fn != NULL,
                                             .endpoint = "functions/invoke",
                                             .who = inv->authenticated ? &inv->who : NULL,
                                             .customer = inv->customer,
                                             .guard = inv->guard,
                                             .tier = inv->tier,
                                         });
    door_fail(inv, e, function_error, NULL);
}

/* The chat request one input element becomes. @return 0, or -1 with `err`. */
static int build_request(struct invocation *inv, const json_t *input, struct element *el,
                         struct err *err)
{
    const struct function_conf *fn = inv->fn;
    if (!json_is_object(input))
        return err_param(err, 400, "input",
                         "function input must be a JSON object (or an array of objects), got %s",
                         json_is_array(input)    ? "an array"
                         : json_is_string(input) ? "a string"
                         : json_is_number(input) ? "a number"
                                                 : "another JSON value");
    char missing[128] = "";
    char *user = function_fill_template(fn->template, input, missing, sizeof missing, err);
    if (user == NULL) {
        if (missing[0]) err->param = arena_strdup(inv->req->arena, missing); /* lives as long */
        return -1;
    }
    json_t *messages = json_array();
    char *system = NULL;
    if (fn->kind == FUNCTION_CLASSIFY) {
        /* Every backend gets told the answer space; the engine scores it exactly anyway. */
        size_t cap = (fn->system ? strlen(fn->system) : 0) + 64;
        for (size_t i = 0; i < fn->n_labels; i++) cap += strlen(fn->labels[i]) + 2;
        system = malloc(cap);
        if (system) {
            size_t w = (size_t)snprintf(system, cap, "%s%sAnswer with exactly one of: ",
                                        fn->system ? fn->system : "", fn->system ? "\n" : "");
            for (size_t i = 0; i < fn->n_labels; i++)
                w += (size_t)snprintf(system + w, cap - w, "%s%s", i ? ", " : "", fn->labels[i]);
            snprintf(system + w, cap - w, ".");
        }
    }
    const char *sys = system ? system : fn->system;
    if (sys)
        json_array_append_new(messages, json_pack("{s:s, s:s}", "role", "system", "content", sys));
    json_array_append_new(messages, json_pack("{s:s, s:s}", "role", "user", "content", user));
    free(user);
    free(system);
    json_t *body = json_pack("{s:s, s:o, s:i, s:b}", "model", fn->model, "messages", messages,
                             "temperature", 0, "stream", 0);
    if (body && fn->kind == FUNCTION_CLASSIFY) {
        json_t *labels = json_array();
        for (size_t i = 0; i < fn->n_labels; i++)
            json_array_append_new(labels, json_string(fn->labels[i]));
        json_object_set_new(body, "stratus_labels", labels);
        json_object_set_new(body, "logprobs", json_true());
        json_object_set_new(body, "top_logprobs", json_integer(20));
        json_object_set_new(body, "max_tokens", json_integer(16));
    } else if (body) {
        json_object_set_new(body, "max_tokens", json_integer(fn->max_tokens));
    }
    if (body && fn->kind == FUNCTION_JSON) {
        json_t *schema = json_loads(fn->schema, 0, NULL);
        json_object_set_new(body, "response_format",
                            json_pack("{s:s, s:{s:s, s:o, s:b}}", "type", "json_schema",
                                      "json_schema", "name", fn->name, "schema",
                                      schema ? schema : json_object(), "strict", 1));
    }
    char *text = body ? json_dumps(body, JSON_COMPACT | JSON_TEXT_REALS) : NULL;
    json_decref(body);
    char *copy = text ? arena_strdup(inv->req->arena, text) : NULL;
    free(text);
    if (copy == NULL) return err_oom(err);
    if (openai_parse_request(OPENAI_CHAT, copy, strlen(copy), inv->req->arena, &el->request, err) !=
        0)
        return -1;
    inv->output_estimate += fn->kind == FUNCTION_CLASSIFY ? 16 : fn->max_tokens;
    return 0;
}

/* ---- answers ------------------------------------------------------------------------ */

/* The probabilities of the labels from the first answer token's alternatives: each
 * alternative's probability goes to the labels it begins (shared when several), case and
 * blanks ignored. @return false when no alternative begins any label. */
static bool first_token_scores(const struct function_conf *fn, const json_t *top, double *p)
{
    double total = 0;
    for (size_t l = 0; l < fn->n_labels; l++) p[l] = 0;
    size_t i;
    const json_t *alt;
    json_array_foreach(top, i, alt)
    {
        const char *t = json_string_value(json_object_get(alt, "token"));
        const json_t *lp = json_object_get(alt, "logprob");
        if (t == NULL || !json_is_number(lp)) continue;
        while (*t == ' ') t++;
        size_t tl = strlen(t);
        while (tl && t[tl - 1] == ' ') tl--;
        if (tl == 0) continue;
        size_t begins = 0;
        for (size_t l = 0; l < fn->n_labels; l++) begins += strncasecmp(fn->labels[l], t, tl) == 0;
        for (size_t l = 0; begins && l < fn->n_labels; l++)
            if (strncasecmp(fn->labels[l], t, tl) == 0) {
                p[l] += exp(json_number_value(lp)) / (double)begins;
                total += exp(json_number_value(lp)) / (double)begins;
            }
    }
    if (total <= 0) return false;
    for (size_t l = 0; l < fn->n_labels; l++) p[l] /= total;
    return true;
}

/* The label a generated answer names: the label it starts with (case and blanks ignored,
 * the longest when several match). @return its index, or -1. */
static long generated_label(const struct function_conf *fn, const char *text)
{
    while (*text == ' ' || *text == '\n' || *text == '"' || *text == '\'') text++;
    long best = -1;
    for (size_t l = 0; l < fn->n_labels; l++) {
        size_t n = strlen(fn->labels[l]);
        if (strncasecmp(text, fn->labels[l], n) == 0 && (best < 0 || n > strlen(fn->labels[best])))
            best = (long)l;
    }
    return best;
}

/* One element's result object, or NULL with `err` (and *raw: the model's text when it was
 * not a valid answer). */
static json_t *element_result(struct invocation *inv, struct element *el, struct err *err,
                              char **raw)
{
    const struct function_conf *fn = inv->fn;
    json_t *doc = json_loadb(el->answer, el->answer_len, 0, NULL);
    const json_t *choice = json_array_get(json_object_get(doc, "choices"), 0);
    const char *content =
        json_string_value(json_object_get(json_object_get(choice, "message"), "content"));
    json_t *result = NULL;
    if (content == NULL) {
        err_set(err, 502, "upstream_error", "invalid_output", "the model gave no text answer");
        goto out;
    }
    if (fn->kind == FUNCTION_CLASSIFY) {
        double p[FUNCTION_MAX_LABELS];
        const char *source = "logprobs";
        const json_t *lps = json_object_get(doc, "stratus_label_logprobs");
        bool ok = json_array_size(lps) == fn->n_labels;
        if (ok) {
            double lp[FUNCTION_MAX_LABELS];
            for (size_t l = 0; l < fn->n_labels; l++) {
                const json_t *v = json_array_get(lps, l);
                ok &= json_is_number(v);
                lp[l] = json_number_value(v);
            }
            if (ok) function_normalise(lp, fn->n_labels, p);
        }
        if (!ok) {
            const json_t *first =
                json_array_get(json_object_get(json_object_get(choice, "logprobs"), "content"), 0);
            ok = first_token_scores(fn, json_object_get(first, "top_logprobs"), p);
        }
        if (!ok) {
            long l = generated_label(fn, content);
            if (l < 0) {
                err_set(err, 502, "upstream_error", "invalid_output",
                        "the model's answer names none of the labels");
                *raw = strdup(content);
                goto out;
            }
            for (size_t k = 0; k < fn->n_labels; k++) p[k] = (long)k == l ? 1 : 0;
            source = "generated";
        }
        size_t best = 0;
        json_t *scores = json_object();
        for (size_t l = 0; l < fn->n_labels; l++) {
            if (p[l] > p[best]) best = l;
            json_object_set_new(scores, fn->labels[l], json_real(p[l]));
        }
        result = json_pack("{s:s, s:f, s:o, s:s}", "label", fn->labels[best], "score", p[best],
                           "scores", scores, "score_source", source);
    } else if (fn->kind == FUNCTION_JSON) {
        json_error_t jerr;
        json_t *out = json_loads(content, JSON_DECODE_ANY, &jerr);
        json_t *schema = json_loads(fn->schema, 0, NULL);
        char why[300];
        if (out == NULL) {
            err_set(err, 502, "upstream_error", "invalid_output",
                    "the model's output is not JSON: %s", jerr.text);
        } else if (!json_schema_check(schema, out, why, sizeof why)) {
            err_set(err, 502, "upstream_error", "invalid_output",
                    "the model's output does not match the schema: %s", why);
        } else {
            result = json_pack("{s:O}", "output", out);
        }
        json_decref(out);
        json_decref(schema);
        if (result == NULL) *raw = strdup(content);
    } else {
        result = json_pack("{s:s}", "output", content);
    }
    if (result) {
        const struct call_info *in = call_info(el->call);
        json_object_set_new(result, "model", json_string(in->target_model));
        json_object_set_new(result, "backend", json_string(in->backend));
        json_object_set_new(result, "cost_usd",
                            in->cost_known ? json_real(in->cost_usd) : json_null());
        json_object_set_new(
            result, "usage",
            json_pack("{s:I, s:I}", "prompt_tokens", (json_int_t)in->usage.prompt,
                      "completion_tokens",
                      (json_int_t)(in->usage.completion > 0 ? in->usage.completion : 0)));
        json_object_set_new(result, "latency_ms",
                            json_real((double)(clock_now_ns() - inv->req->start_ns) / 1e6));
    }
out:
    json_decref(doc);
    return result;
}

static json_t *error_object(const struct err *e, const char *raw)
{
    json_t *o = json_pack("{s:{s:s, s:s, s:s}}", "error", "message", e->msg, "type", e->type,
                          "code", e->code ? e->code : "error");
    if (raw) json_object_set_new(json_object_get(o, "error"), "raw", json_string(raw));
    return o;
}

static void settle_and_record(struct invocation *inv, int client_status)
{
    double cost = 0;
    bool known = true;
    long long tokens = 0;
    for (size_t i = 0; i < inv->n; i++) {
        struct element *el = &inv->elements[i];
        if (el->call == NULL) continue;
        const struct call_info *in = call_info(el->call);
        known &= in->cost_known;
        if (in->cost_known) cost += in->cost_usd;
        if (in->usage.prompt > 0) tokens += in->usage.prompt;
        if (in->usage.completion > 0) tokens += in->usage.completion;
    }
    guard_settle(inv->app->guard, &inv->adm, known, cost, tokens);
    for (size_t i = 0; i < inv->n; i++) {
        struct element *el = &inv->elements[i];
        struct request_record r = {
            .req = inv->req,
            .status = client_status == 499 && !el->done ? 499 : el->status,
            .error = client_status == 499 && !el->done ? "client closed the connection"
                     : el->status == 200               ? NULL
                                                       : el->err.msg,
            .surface = inv->door->name,
            .error_code = client_status == 499 && !el->done ? "client_closed"
                          : el->status == 200               ? NULL
                                                            : el->err.code,
            .model = inv->fn->model,
            .model_known = true,
            .endpoint = "functions/invoke",
            .who = &inv->who,
            .customer = inv->customer,
            .guard = el->guard,
            .tier = inv->tier,
        };
        if (el->call) record_set_call(&r, call_info(el->call));
        record_request(&inv->app->record_to, &r);
    }
}

/* Every element has ended: settle, record, answer. */
static void complete(struct invocation *inv)
{
    if (inv->finished) return;
    inv->finished = true;
    json_t *results = json_array();
    size_t failed = 0;
    struct err first_err;
    char *first_raw = NULL;
    err_clear(&first_err);
    for (size_t i = 0; i < inv->n; i++) {
        struct element *el = &inv->elements[i];
        char *raw = NULL;
        json_t *r = NULL;
        if (el->status == 200 && (r = element_result(inv, el, &el->err, &raw)) == NULL)
            el->status = el->err.status;
        if (r == NULL) {
            r = error_object(&el->err, raw);
            if (failed++ == 0) {
                first_err = el->err;
                first_raw = raw;
                raw = NULL;
            }
        }
        free(raw);
        json_array_append_new(results, r);
    }
    settle_and_record(inv, 200);
    if (!inv->batch && failed == 0) {
        const struct call_info *in = call_info(inv->elements[0].call);
        char cost[40];
        snprintf(cost, sizeof cost, in->cost_known ? "%.8f" : "unknown", in->cost_usd);
        http_add_header(inv->req, "x-stratus-backend", in->backend);
        http_add_header(inv->req, "x-stratus-model", in->target_model);
        http_add_header(inv->req, "x-stratus-cost-usd", cost);
    }
    if (failed == inv->n) { /* nothing to show: the (first) error, in the door's shape */
        door_fail(inv, &first_err, first_err.status != 429, first_raw);
    } else {
        char *text = json_dumps(inv->batch ? results : json_array_get(results, 0),
                                JSON_COMPACT | JSON_TEXT_REALS);
        if (text)
            inv->door->answer(inv->req, text, strlen(text));
        else {
            struct err e;
            err_oom(&e);
            door_fail(inv, &e, false, NULL);
        }
        free(text);
    }
    free(first_raw);
    json_decref(results);
}

static void element_ended(struct element *el, int status)
{
    el->done = true;
    el->status = status;
    struct invocation *inv = el->inv;
    if (++inv->n_done == inv->n && !inv->starting) complete(inv);
}

static void on_start(void *ud, struct call *c, int status)
{
    (void)ud, (void)c, (void)status; /* never streamed */
}

static int on_chunk(void *ud, struct call *c, const struct call_chunk *chunk)
{
    (void)ud, (void)c, (void)chunk;
    return -1;
}

static int on_flush(void *ud, struct call *c)
{
    (void)ud, (void)c;
    return -1;
}

static void on_body(void *ud, struct call *c, int status, const char *json, size_t len)
{
    struct element *el = ud;
    el->call = c;
    el->answer = arena_strndup(el->inv->req->arena, json, len);
    el->answer_len = len;
    if (el->answer == NULL) err_oom(&el->err);
    element_ended(el, el->answer ? status : 500);
}

static void on_end(void *ud, struct call *c, const char *error)
{
    struct element *el = ud;
    el->call = c;
    err_set(&el->err, 502, "upstream_error", "stream_interrupted", "%s",
            error ? error : "the upstream streamed an answer that was not asked for");
    element_ended(el, 502);
}

static void on_fail(void *ud, struct call *c, const struct call_failure *f)
{
    struct element *el = ud;
    el->call = c;
    el->err = f->err;
    if (f->retry_after >= 0 && el->inv->n == 1) {
        char v[24];
        snprintf(v, sizeof v, "%ld", f->retry_after);
        http_add_header(el->inv->req, "Retry-After", v);
    }
    element_ended(el, f->err.status);
}

static const struct call_sink sink = {
    .start = on_start,
    .chunk = on_chunk,
    .flush = on_flush,
    .body = on_body,
    .end = on_end,
    .fail = on_fail,
};

static void on_client_abort(struct http_request *req, void *ud)
{
    struct invocation *inv = ud;
    (void)req;
    if (inv->finished) return;
    inv->finished = true;
    for (size_t i = 0; i < inv->n; i++)
        if (inv->elements[i].call && !inv->elements[i].done) call_cancel(inv->elements[i].call);
    settle_and_record(inv, 499);
}

static void release_invocation(void *ud)
{
    struct invocation *inv = ud;
    guard_cancel(inv->app->guard, &inv->adm);
}

static void on_admitted(void *ud, int rc, const struct err *refusal)
{
    struct invocation *inv = ud;
    if (inv->finished) return;
    for (size_t i = 0; i < inv->adm.n_headers; i++)
        http_add_header(inv->req, inv->adm.headers[i].name, inv->adm.headers[i].value);
    if (rc != 0) {
        refuse(inv, refusal, false);
        return;
    }
    struct call_env *env = &inv->gen->call_env;
    inv->starting = true;
    for (size_t i = 0; i < inv->n; i++) {
        struct element *el = &inv->elements[i];
        el->rq = (struct call_request){
            .request = &el->request,
            .model = inv->model,
            .route = {.endpoint = OPENAI_CHAT,
                      .prompt_tokens = (long)(el->request.scan.len / 4),
                      .output_tokens = inv->output_estimate / (long)inv->n,
                      .private_only = el->private_only,
                      .budget = inv->adm.mode,
                      .budget_why = inv->adm.why,
                      .tier = inv->tier},
        };
        struct call *c = call_start(env, &el->rq, &sink, el, inv->req->arena);
        if (c == NULL && !el->done) {
            err_oom(&el->err);
            element_ended(el, 500);
        } else if (c) {
            el->call = c;
        }
    }
    inv->starting = false;
    if (inv->n_done == inv->n) complete(inv);
}

/* What every model request gets before admission, per element: the input guards
 * (api/proxy.c's, on the chat request the input became: control characters stripped, deny
 * rules, PII and privacy pinning, x-stratus-privacy) and the prompt limits. Sums the
 * prompt estimate of what will be sent. @return 0, or -1 with `e`. */
static int guard_elements(struct invocation *inv, struct err *e)
{
    const char *h = http_request_header(inv->req, "x-stratus-privacy");
    if (h && strcasecmp(h, "local") != 0)
        return err_set(e, 400, "invalid_request_error", "invalid_header",
                       "x-stratus-privacy must be 'local' (or absent)");
    size_t at = 0;
    for (size_t i = 0; i < inv->n; i++) {
        struct element *el = &inv->elements[i];
        const struct openai_request *r = &el->request;
        struct input_verdict v;
        int rc = content_guard_input(inv->gen->content, &r, h != NULL, inv->req->arena, &v, e);
        if (r != &el->request) el->request = *r; /* stripped: a new model over a new body */
        snprintf(el->guard, sizeof el->guard, "%s", v.fired);
        if (v.fired[0] && at < sizeof inv->guard && inv->batch)
            at += (size_t)snprintf(inv->guard + at, sizeof inv->guard - at, "%sinput[%zu]: %s",
                                   at ? "; " : "", i, v.fired);
        else if (v.fired[0] && at < sizeof inv->guard)
            at += (size_t)snprintf(inv->guard + at, sizeof inv->guard - at, "%s", v.fired);
        long estimate = (long)(el->request.scan.len / 4);
        if (rc == 0) rc = guard_check_prompt(&inv->who, inv->model, estimate, e);
        if (rc != 0 && inv->batch && e->status == 400) {
            char msg[sizeof e->msg];
            snprintf(msg, sizeof msg, "input[%zu]: %s", i, e->msg);
            snprintf(e->msg, sizeof e->msg, "%s", msg);
        }
        if (rc != 0) return -1;
        el->private_only = v.private_only;
        inv->prompt_estimate += estimate;
    }
    return 0;
}

void function_invoke(struct app *app, struct http_request *req, const struct function_door *door,
                     const char *name)
{
    struct err e;
    err_clear(&e);
    struct invocation *inv = arena_calloc(req->arena, 1, sizeof *inv);
    if (inv == NULL || arena_on_free(req->arena, release_invocation, inv) != 0) {
        err_oom(&e);
        door->fail(req, &e, false, NULL);
        return;
    }
    *inv = (struct invocation){.app = app, .gen = app->gen, .req = req, .door = door};
    const char *customer = http_request_header(req, "x-stratus-customer");
    snprintf(inv->customer, sizeof inv->customer, "%s", customer ? customer : "");

    /* Who is calling, from this API's credential. */
    const char *key = NULL;
    size_t key_len = 0;
    int rc;
    if (door->sigv4 && guard_auth_enabled(app->guard) && sigv4_is_signed(req))
        rc = guard_authenticate_sigv4(app->guard, req, &inv->who, &e);
    else if (guard_auth_enabled(app->guard) && door->credential(req, &key, &key_len, &e) != 0)
        rc = -1;
    else
        rc = guard_authenticate(app->guard, key, key_len, false, &inv->who, &e);
    if (rc == 0) rc = guard_check_client(&inv->who, req, &e); /* the key's allowed_cidrs */
    if (rc != 0) {
        refuse(inv, &e, false);
        return;
    }
    inv->authenticated = true;
    inv->fn = config_find_function(inv->gen->cfg, name);
    if (inv->fn == NULL) {
        err_set(&e, 404, "invalid_request_error", "function_not_found",
                "function '%s' does not exist (functions: in the config lists them)", name);
        refuse(inv, &e, false);
        return;
    }
    inv->model = config_find_model(inv->gen->cfg, inv->fn->model);
    /* A key's model list may name the function itself or its model group. */
    if (inv->who.kind == PRINCIPAL_KEY && !key_allows_model(&inv->who.key, inv->fn->name) &&
        !key_allows_model(&inv->who.key, inv->fn->model)) {
        err_set(&e, 403, "permission_error", "model_not_allowed",
                "this key may not call function '%s'", inv->fn->name);
        refuse(inv, &e, false);
        return;
    }
    /* Customer tiers as on the model API: the function or its group must be allowed, and
     * route_to moves the calls to that group. */
    inv->asked = inv->model;
    inv->tier = guard_tier(app->guard, inv->gen->cfg, &inv->who, inv->customer);
    if (inv->tier && !tier_allows_model(inv->tier, inv->fn->name) &&
        !tier_allows_model(inv->tier, inv->fn->model)) {
        err_set(&e, 403, "permission_error", "model_not_allowed_for_tier",
                "tier '%s' may not call function '%s' (model '%s')", inv->tier->name, inv->fn->name,
                inv->fn->model);
        refuse(inv, &e, false);
        return;
    }
    if (inv->tier && inv->tier->route_to) {
        const struct model_conf *to = config_find_model(inv->gen->cfg, inv->tier->route_to);
        if (to) inv->model = to;
    }

    /* The input: an object, or an array of them (a batch). */
    size_t len = evbuffer_get_length(req->body);
    if (len > FUNCTION_MAX_INPUT_BYTES) {
        err_set(&e, 413, "invalid_request_error", "input_too_large",
                "function input is %zu bytes; at most %u are read", len, FUNCTION_MAX_INPUT_BYTES);
        refuse(inv, &e, false);
        return;
    }
    json_error_t jerr;
    json_t *input = len ? json_loadb((const char *)evbuffer_pullup(req->body, -1), len,
                                     JSON_REJECT_DUPLICATES, &jerr)
                        : NULL;
    if (input == NULL) {
        err_set(&e, 400, "invalid_request_error", "invalid_json",
                "function input must be a JSON object: %s",
                len ? jerr.text : "the request body is empty");
        refuse(inv, &e, true);
        return;
    }
    inv->batch = json_is_array(input);
    inv->n = inv->batch ? json_array_size(input) : 1;
    if (inv->batch && (inv->n == 0 || inv->n > FUNCTION_MAX_BATCH)) {
        json_decref(input);
        err_param(&e, 400, "input", "a batch holds 1 to %d inputs, got %zu", FUNCTION_MAX_BATCH,
                  inv->n);
        refuse(inv, &e, true);
        return;
    }
    inv->elements = arena_calloc(req->arena, inv->n, sizeof *inv->elements);
    if (inv->elements == NULL) {
        json_decref(input);
        err_oom(&e);
        refuse(inv, &e, false);
        return;
    }
    for (size_t i = 0; i < inv->n; i++) {
        inv->elements[i].inv = inv;
        if (build_request(inv, inv->batch ? json_array_get(input, i) : input, &inv->elements[i],
                          &e) != 0) {
            json_decref(input);
            if (inv->batch && e.status == 400) {
                char msg[sizeof e.msg];
                snprintf(msg, sizeof msg, "input[%zu]: %s", i, e.msg);
                snprintf(e.msg, sizeof e.msg, "%s", msg);
            }
            refuse(inv, &e, true);
            return;
        }
    }
    json_decref(input);
    int guarded = guard_elements(inv, &e);
    if (inv->guard[0]) http_add_header(req, "x-stratus-guard", inv->guard);
    if (guarded != 0) {
        refuse(inv, &e, e.status == 400);
        return;
    }
    struct route_request estimate = {.endpoint = OPENAI_CHAT,
                                     .prompt_tokens = inv->prompt_estimate,
                                     .output_tokens = inv->output_estimate};
    double reserve = router_worst_case_cost(inv->gen->router, inv->model, &estimate);
    http_request_set_callbacks(req, on_client_abort, NULL, inv);
    /* A key allowed the function by name may use its model group for it: admission checks
     * limits and budgets as that key, not the group name against its list. */
    struct principal *as = &inv->who;
    if (inv->who.kind == PRINCIPAL_KEY && key_allows_model(&inv->who.key, inv->fn->name)) {
        as = arena_alloc(req->arena, sizeof *as);
        if (as == NULL) {
            err_oom(&e);
            refuse(inv, &e, false);
            return;
        }
        *as = inv->who;
        as->key.models[0] = '\0';
    }
    guard_admit(app->guard, as, inv->asked, inv->tier, inv->customer, inv->prompt_estimate,
                inv->output_estimate, reserve, &inv->adm, on_admitted, inv);
}

/* ---- the doors' paths ---- */

/* Percent-decodes `in` into `out`. @return false on a bad escape or when it does not fit. */
static bool url_decode(const char *in, size_t n, char *out, size_t cap)
{
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        if (c == '%') {
            unsigned v;
            if (i + 2 >= n || !isxdigit((unsigned char)in[i + 1]) ||
                !isxdigit((unsigned char)in[i + 2]) || sscanf(in + i + 1, "%2x", &v) != 1)
                return false;
            c = (char)v;
            i += 2;
        }
        if (c == '\0' || w + 1 >= cap) return false;
        out[w++] = c;
    }
    out[w] = '\0';
    return true;
}

const char *function_name_in_path(const char *path, const char *prefix, const char *suffix,
                                  char *out, size_t cap)
{
    size_t pl = strlen(prefix), sl = strlen(suffix), len = strlen(path);
    if (len <= pl + sl || strncmp(path, prefix, pl) != 0 || strcmp(path + len - sl, suffix) != 0 ||
        memchr(path + pl, '/', len - pl - sl))
        return NULL;
    return url_decode(path + pl, len - pl - sl, out, cap) ? out : NULL;
}

/* ---- stratus's own door ------------------------------------------------------------- */

static void native_answer(struct http_request *req, const char *json, size_t len)
{
    http_respond(req, 200, "application/json", json, len);
}

static void native_fail(struct http_request *req, const struct err *e, bool function_error,
                        const char *raw)
{
    (void)function_error;
    json_t *doc = error_object(e, raw);
    json_object_set_new(json_object_get(doc, "error"), "param",
                        e->param ? json_string(e->param) : json_null());
    char *text = json_dumps(doc, JSON_COMPACT | JSON_TEXT_REALS);
    json_decref(doc);
    if (text == NULL) {
        http_respond_error(req, e);
        return;
    }
    http_respond(req, e->status, "application/json", text, strlen(text));
    free(text);
}

static const struct function_door door_native = {
    .name = "functions",
    .credential = credential_bearer,
    .answer = native_answer,
    .fail = native_fail,
};

void function_route(struct app *app, struct http_request *req, const struct principal *who)
{
    (void)who; /* the door authenticates: the route is open */
    char name[96];
    if (function_name_in_path(req->path, "/v1/functions/", "/invoke", name, sizeof name) == NULL) {
        struct err e;
        err_set(&e, 404, "invalid_request_error", "not_found",
                "no such endpoint: %s %s (functions: POST /v1/functions/{name}/invoke)",
                req->method, req->path);
        record_request(NULL, &(struct request_record){.req = req, .status = 404, .error = e.msg});
        native_fail(req, &e, false, NULL);
        return;
    }
    function_invoke(app, req, &door_native, name);
}
