/*
 * DESIGN
 * `stratus engine` — one process per local model. It loads the model once, then serves the
 * OpenAI wire format (the same one the gateway already proxies) on a UNIX socket that only
 * its owner can open, so the gateway reaches it through its ordinary `openai` provider code
 * path. Requests become engine jobs; engine events become SSE chunks or one JSON answer.
 * GET /health answers once the model is loaded; GET /stats reports slots, queue and speed
 * for routing and the cost model, where requests' time went (queue, prefill, decode), and
 * what the prompt-prefix cache saved.
 * Why one file of ~850 lines: it is the one translation between the OpenAI wire format and
 * engine jobs and events (request fields in, chunks, answers and logprob shapes out) for
 * every endpoint the worker serves; split, each half would need the other's job context.
 */
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <signal.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "openai/request.h"
#include "engine/engine.h"
#include "engine/schema_grammar.h"
#include "engine/worker.h"
#include "http/server.h"
#include "http/tls.h"
#include "obs/log.h"
#include "util/arena.h"
#include "util/json_text.h"

struct worker {
    struct event_base *loop;
    struct engine *engine;
    struct http_server *server; /* the UNIX socket (supervised) */
    struct http_server *tcp;    /* --listen (remote engine) */
    struct tls_ctx *tls;        /* its TLS, or NULL */
    const char *model_name;
    const char *token; /* NULL: no token asked */
    unsigned long long next_id;
};

/* The caller on the TCP listener holds the engine's token (compared in constant time). */
static bool authorised(const struct worker *w, const struct http_request *req)
{
    if (w->token == NULL) return true;
    const char *h = http_request_header(req, "authorization");
    size_t want = strlen(w->token);
    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0) return false;
    h += 7;
    return strlen(h) == want && CRYPTO_memcmp(h, w->token, want) == 0;
}

struct job_ctx {
    struct worker *w;
    struct http_request *req;
    struct engine_job *job;
    bool chat, stream, want_usage, started;
    char id[40];
    long created;
    struct evbuffer *text; /* non-stream: the whole answer */
    json_t *body;          /* owned */
    bool logprobs;         /* the client asked for them */
    json_t *lp;            /* owned; non-stream: every token's entry (chat) or the legacy
                            * completions object's arrays */
    size_t text_offset;    /* completions: bytes of text before the next token */
    char *grammar;         /* owned: response_format json_schema's grammar, or NULL */
};

/* A token's text as a JSON string: its bytes when they are valid UTF-8 (a token may hold
 * part of a character), else the ASCII kept and the rest as U+FFFD. */
static json_t *token_text(const char *p, int n)
{
    json_t *v = json_stringn(p, (size_t)n);
    if (v) return v;
    char buf[64 * 3 + 1];
    size_t w = 0;
    for (int i = 0; i < n; i++) {
        if ((unsigned char)p[i] < 0x80) {
            buf[w++] = p[i];
        } else {
            memcpy(buf + w, "\xEF\xBF\xBD", 3);
            w += 3;
        }
    }
    return json_stringn(buf, w);
}

static json_t *token_bytes(const char *p, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_integer((unsigned char)p[i]));
    return a;
}

/* Chat's shape: {token, logprob, bytes, top_logprobs:[{token, logprob, bytes}]}. */
static json_t *chat_logprob(const struct engine_logprob *lp)
{
    json_t *top = json_array();
    for (int k = 0; k < lp->n_top; k++)
        json_array_append_new(top, json_pack("{s:o, s:f, s:o}", "token",
                                             token_text(lp->top[k].token, lp->top[k].token_len),
                                             "logprob", (double)lp->top[k].logprob, "bytes",
                                             token_bytes(lp->top[k].token, lp->top[k].token_len)));
    return json_pack("{s:o, s:f, s:o, s:o}", "token", token_text(lp->token, lp->token_len),
                     "logprob", (double)lp->logprob, "bytes", token_bytes(lp->token, lp->token_len),
                     "top_logprobs", top);
}

/* Completions' legacy shape: parallel arrays of tokens, their logprobs, {token: logprob}
 * alternatives and each token's offset in the text. */
static json_t *legacy_logprobs(void)
{
    return json_pack("{s:[], s:[], s:[], s:[]}", "tokens", "token_logprobs", "top_logprobs",
                     "text_offset");
}

static void legacy_add(json_t *o, const struct engine_logprob *lp, size_t *offset)
{
    json_array_append_new(json_object_get(o, "tokens"), token_text(lp->token, lp->token_len));
    json_array_append_new(json_object_get(o, "token_logprobs"), json_real(lp->logprob));
    json_t *top = json_object();
    for (int k = 0; k < lp->n_top; k++) {
        json_t *t = token_text(lp->top[k].token, lp->top[k].token_len);
        json_object_set_new(top, json_string_value(t), json_real(lp->top[k].logprob));
        json_decref(t);
    }
    json_array_append_new(json_object_get(o, "top_logprobs"), top);
    json_array_append_new(json_object_get(o, "text_offset"), json_integer((json_int_t)*offset));
    *offset += (size_t)lp->token_len;
}

/* The logprobs an event carries, in the endpoint's shape. */
static json_t *event_logprobs(struct job_ctx *c, const struct engine_event *ev)
{
    if (c->chat) {
        json_t *content = json_array();
        for (size_t i = 0; i < ev->n_logprobs; i++)
            json_array_append_new(content, chat_logprob(&ev->logprobs[i]));
        return json_pack("{s:o, s:n}", "content", content, "refusal");
    }
    json_t *o = legacy_logprobs();
    for (size_t i = 0; i < ev->n_logprobs; i++) legacy_add(o, &ev->logprobs[i], &c->text_offset);
    return o;
}

static void send_json(struct http_request *req, int status, json_t *doc)
{
    char *s = json_dumps(doc, JSON_COMPACT | JSON_TEXT_REALS);
    json_decref(doc);
    if (s == NULL) {
        struct err e;
        err_oom(&e);
        http_respond_error(req, &e);
        return;
    }
    http_respond(req, status, "application/json", s, strlen(s));
    free(s);
}

static void sse_json(struct http_request *req, json_t *doc)
{
    char *s = json_dumps(doc, JSON_COMPACT | JSON_TEXT_REALS);
    json_decref(doc);
    if (s == NULL) return;
    http_stream_write2(req, "data: ", 6, s, strlen(s));
    http_stream_write(req, "\n\n", 2);
    free(s);
}

/* Where a generation's time went (ms, rounded to the µs by the engine), as llama-server's
 * "timings": the gateway prices a local request from engine_ms (cost.h). */
static json_t *timings(const struct engine_event *ev)
{
    return json_pack("{s:f, s:f, s:f, s:f, s:f}", "queue_ms", ev->queue_ms, "prefill_ms",
                     ev->prefill_ms, "decode_ms", ev->decode_ms, "engine_ms", ev->engine_ms,
                     "ttft_ms", ev->ttft_ms);
}

/* The same for embeddings and scoring: no tokens generated, so no prefill/decode split. */
static json_t *side_timings(const struct engine_event *ev)
{
    return json_pack("{s:f, s:f}", "queue_ms", ev->queue_ms, "engine_ms", ev->engine_ms);
}

static json_t *chunk(struct job_ctx *c, json_t *delta_or_text, const char *finish)
{
    json_t *choice = c->chat ? json_pack("{s:i, s:o}", "index", 0, "delta", delta_or_text)
                             : json_pack("{s:i, s:o}", "index", 0, "text", delta_or_text);
    json_object_set_new(choice, "finish_reason", finish ? json_string(finish) : json_null());
    return json_pack("{s:s, s:s, s:i, s:s, s:[o]}", "id", c->id, "object",
                     c->chat ? "chat.completion.chunk" : "text_completion", "created",
                     (json_int_t)c->created, "model", c->w->model_name, "choices", choice);
}

/* The head of a stream: status, then (chat) the assistant-role chunk OpenAI sends first. */
static void start_stream(struct job_ctx *c)
{
    if (c->started) return;
    c->started = true;
    http_stream_start(c->req, 200, "text/event-stream");
    if (c->chat)
        sse_json(c->req,
                 chunk(c, json_pack("{s:s, s:s}", "role", "assistant", "content", ""), NULL));
}

static void on_event(struct engine_job *job, const struct engine_event *ev, void *ud)
{
    struct job_ctx *c = ud;
    (void)job;
    if (ev->kind == ENGINE_FAILED) {
        c->job = NULL;
        if (c->started) {
            sse_json(c->req, json_pack("{s:{s:s, s:s, s:s}}", "error", "message", ev->err.msg,
                                       "type", "server_error", "code", "engine_failed"));
            http_stream_end(c->req);
        } else {
            http_respond_error(c->req, &ev->err);
        }
        return;
    }
    if (ev->kind == ENGINE_TEXT) {
        if (!c->stream) {
            evbuffer_add(c->text, ev->text, ev->len);
            for (size_t i = 0; c->logprobs && i < ev->n_logprobs; i++) {
                if (c->chat)
                    json_array_append_new(c->lp, chat_logprob(&ev->logprobs[i]));
                else
                    legacy_add(c->lp, &ev->logprobs[i], &c->text_offset);
            }
            return;
        }
        start_stream(c);
        json_t *piece = json_stringn(ev->text, ev->len);
        json_t *doc = chunk(c, c->chat ? json_pack("{s:o}", "content", piece) : piece, NULL);
        if (c->logprobs)
            json_object_set_new(json_array_get(json_object_get(doc, "choices"), 0), "logprobs",
                                event_logprobs(c, ev));
        sse_json(c->req, doc);
        return;
    }
    /* ENGINE_DONE */
    c->job = NULL;
    /* cached_tokens as OpenAI reports prompt caching: prompt tokens the KV cache held. */
    json_t *usage = json_pack("{s:i, s:i, s:i, s:{s:i}}", "prompt_tokens", ev->prompt_tokens,
                              "completion_tokens", ev->completion_tokens, "total_tokens",
                              ev->prompt_tokens + ev->completion_tokens, "prompt_tokens_details",
                              "cached_tokens", ev->cached_tokens);
    if (c->stream) {
        start_stream(c);
        sse_json(c->req, chunk(c, c->chat ? json_object() : json_string(""), ev->finish_reason));
        if (c->want_usage)
            sse_json(c->req,
                     json_pack("{s:s, s:s, s:i, s:s, s:[], s:o, s:o}", "id", c->id, "object",
                               c->chat ? "chat.completion.chunk" : "text_completion", "created",
                               (json_int_t)c->created, "model", c->w->model_name, "choices",
                               "usage", usage, "timings", timings(ev)));
        else
            json_decref(usage);
        http_stream_write(c->req, "data: [DONE]\n\n", 14);
        http_stream_end(c->req);
        return;
    }
    size_t n = evbuffer_get_length(c->text);
    json_t *text = json_stringn(n ? (const char *)evbuffer_pullup(c->text, -1) : "", n);
    json_t *choice =
        c->chat ? json_pack("{s:i, s:{s:s, s:o}, s:s}", "index", 0, "message", "role", "assistant",
                            "content", text, "finish_reason", ev->finish_reason)
                : json_pack("{s:i, s:o, s:s}", "index", 0, "text", text, "finish_reason",
                            ev->finish_reason);
    if (c->logprobs && c->chat) {
        json_object_set_new(choice, "logprobs",
                            json_pack("{s:O, s:n}", "content", c->lp, "refusal"));
    } else if (c->logprobs) {
        json_object_set(choice, "logprobs", c->lp);
    } else {
        json_object_set_new(choice, "logprobs", json_null());
    }
    json_t *doc = json_pack("{s:s, s:s, s:i, s:s, s:[o], s:o, s:o}", "id", c->id, "object",
                            c->chat ? "chat.completion" : "text_completion", "created",
                            (json_int_t)c->created, "model", c->w->model_name, "choices", choice,
                            "usage", usage, "timings", timings(ev));
    send_json(c->req, 200, doc);
}

static void on_abort(struct http_request *req, void *ud)
{
    struct job_ctx *c = ud;
    (void)req;
    if (c->job) engine_cancel(c->job); /* frees the slot before the next decode step */
    c->job = NULL;
}

static void release_ctx(void *ud)
{
    struct job_ctx *c = ud;
    if (c->job) engine_cancel(c->job);
    if (c->text) evbuffer_free(c->text);
    json_decref(c->body);
    json_decref(c->lp);
    free(c->grammar);
}

static double num(const json_t *o, const char *k, double dflt)
{
    const json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : dflt;
}

/* An integer setting as the engine's int: beyond it means "no limit" anyway (max_tokens may
 * be anything up to 2^63 - 1; a cast wrapped 2^32 to 0, which the engine reads as
 * unlimited). */
static int clamp_int(double v, int lo, int hi)
{
    return v != v || v < lo ? lo : v > hi ? hi : (int)v;
}

/* OpenAI's logit_bias: {"token id": bias -100..100} into `out` (up to `max`). */
static int read_logit_bias(json_t *body, struct engine_sampling *s, struct engine_bias *out,
                           size_t max, struct err *err)
{
    const json_t *lb = json_object_get(body, "logit_bias");
    if (lb == NULL || json_is_null(lb)) return 0;
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)lb, key, v)
    {
        char *end = NULL;
        long id = strtol(key, &end, 10);
        double bias = json_number_value(v);
        if (end == key || *end != '\0' || id < 0 || id > INT32_MAX)
            return err_param(err, 400, "logit_bias",
                             "logit_bias keys must be token ids (integers), not '%s'", key);
        if (!json_is_number(v) || bias < -100 || bias > 100)
            return err_param(err, 400, "logit_bias",
                             "logit_bias values must be numbers from -100 to 100");
        if (s->n_logit_bias == max)
            return err_param(err, 400, "logit_bias", "logit_bias holds at most %zu tokens", max);
        out[s->n_logit_bias++] = (struct engine_bias){.token = (int32_t)id, .bias = (float)bias};
    }
    s->logit_bias = out;
    return 0;
}

/* `*grammar` receives a malloc'd grammar the caller frees after submitting (or NULL). */
static int read_sampling(json_t *body, struct engine_sampling *s, const char **stops,
                         size_t max_stops, char **grammar, struct err *err)
{
    *s = engine_default_sampling();
    s->temperature = (float)num(body, "temperature", 1.0);
    s->top_p = (float)num(body, "top_p", 1.0);
    s->top_k = clamp_int(num(body, "top_k", 0), 0, INT_MAX);
    s->min_p = (float)num(body, "min_p", 0);
    s->presence_penalty = (float)num(body, "presence_penalty", 0);
    s->frequency_penalty = (float)num(body, "frequency_penalty", 0);
    const json_t *seed = json_object_get(body, "seed");
    if (json_is_integer(seed)) s->seed = (uint32_t)json_integer_value(seed);
    const json_t *mt = json_object_get(body, "max_completion_tokens");
    if (!json_is_integer(mt)) mt = json_object_get(body, "max_tokens");
    s->max_tokens = json_is_integer(mt) ? clamp_int((double)json_integer_value(mt), 1, INT_MAX) : 0;
    s->ignore_eos = json_is_true(json_object_get(body, "ignore_eos")); /* llama-server's */
    const json_t *stop = json_object_get(body, "stop");
    if (json_is_string(stop)) {
        stops[0] = json_string_value(stop);
        s->n_stop = 1;
    } else if (json_is_array(stop)) {
        size_t i;
        const json_t *v;
        json_array_foreach(stop, i, v)
        {
            if (!json_is_string(v) || s->n_stop == max_stops)
                return err_param(err, 400, "stop", "\"stop\" must be a string or up to %zu strings",
                                 max_stops);
            stops[s->n_stop++] = json_string_value(v);
        }
    }
    s->stop = stops;
    /* chat: logprobs true (+ top_logprobs 0..20); completions: logprobs = alternatives 0..5 */
    const json_t *lp = json_object_get(body, "logprobs");
    if (json_is_true(lp)) {
        const json_t *top = json_object_get(body, "top_logprobs");
        s->top_logprobs = json_is_integer(top) ? clamp_int((double)json_integer_value(top), 0,
                                                           ENGINE_MAX_TOP_LOGPROBS)
                                               : 0;
    } else if (json_is_integer(lp)) {
        s->top_logprobs = clamp_int((double)json_integer_value(lp), 0, ENGINE_MAX_TOP_LOGPROBS);
    }
    const json_t *rf = json_object_get(body, "response_format");
    const char *rft = json_string_value(json_object_get(rf, "type"));
    if (rft && strcmp(rft, "json_schema") == 0) {
        /* The schema becomes the grammar; one the converter does not cover is held to any
         * JSON object (the gateway checks the schema either way). */
        char why[160];
        const json_t *schema = json_object_get(json_object_get(rf, "json_schema"), "schema");
        if ((*grammar = schema_grammar(schema, why, sizeof why)) != NULL)
            s->grammar = *grammar;
        else
            s->json = true;
    } else if (rft && strcmp(rft, "json_object") == 0) {
        s->json = true;
    } else if (rft && strcmp(rft, "text") != 0)
        return err_param(
            err, 400, "response_format",
            "response_format type '%s' is not supported by local models (text, json_object, "
            "json_schema)",
            rft);
    return 0;
}

/* A scoring request's answer: a chat completion whose content is the most likely label, with
 * every label's log-probability in "stratus_label_logprobs" (the request's order). */
static void on_scores(struct engine_job *job, const struct engine_event *ev, void *ud)
{
    struct job_ctx *c = ud;
    (void)job;
    c->job = NULL;
    if (ev->kind != ENGINE_SCORES) {
        http_respond_error(c->req, &ev->err);
        return;
    }
    json_t *labels = json_object_get(c->body, "stratus_labels");
    json_t *lps = json_array();
    size_t best = 0;
    for (size_t l = 0; l < ev->n_labels; l++) {
        json_array_append_new(lps, json_real(ev->scores[l]));
        if (ev->scores[l] > ev->scores[best]) best = l;
    }
    json_t *choice =
        json_pack("{s:i, s:{s:s, s:O}, s:s, s:n}", "index", 0, "message", "role", "assistant",
                  "content", json_array_get(labels, best), "finish_reason", "stop", "logprobs");
    send_json(c->req, 200,
              json_pack("{s:s, s:s, s:i, s:s, s:[o], s:{s:i, s:i, s:i}, s:o, s:o}", "id", c->id,
                        "object", "chat.completion", "created", (json_int_t)c->created, "model",
                        c->w->model_name, "choices", choice, "usage", "prompt_tokens",
                        ev->prompt_tokens, "completion_tokens", 0, "total_tokens",
                        ev->prompt_tokens, "stratus_label_logprobs", lps, "timings",
                        side_timings(ev)));
}

/* `stratus_labels` (the gateway's functions ask it): score the labels after the prompt
 * instead of generating. */
static void submit_scores(struct worker *w, struct job_ctx *c, const char *prompt, json_t *labels)
{
    struct err e;
    err_clear(&e);
    size_t n = json_array_size(labels);
    const char **texts = arena_calloc(c->req->arena, n ? n : 1, sizeof *texts);
    if (texts == NULL) {
        err_oom(&e);
        http_respond_error(c->req, &e);
        return;
    }
    for (size_t i = 0; i < n; i++)
        if ((texts[i] = json_string_value(json_array_get(labels, i))) == NULL) {
            err_param(&e, 400, "stratus_labels", "stratus_labels must be an array of strings");
            http_respond_error(c->req, &e);
            return;
        }
    if (c->stream) {
        err_param(&e, 400, "stratus_labels", "scoring labels cannot be streamed");
        http_respond_error(c->req, &e);
        return;
    }
    http_request_set_callbacks(c->req, on_abort, NULL, c);
    c->job = engine_submit_scores(w->engine, &prompt, 1, texts, n, on_scores, c, &e);
    if (c->job == NULL) http_respond_error(c->req, &e);
}

static void handle_generate(struct worker *w, struct http_request *req, bool chat)
{
    struct err e;
    err_clear(&e);
    struct openai_request oreq;
    size_t len = evbuffer_get_length(req->body);
    const char *bytes = len ? (const char *)evbuffer_pullup(req->body, -1) : "";
    if (openai_parse_request(chat ? OPENAI_CHAT : OPENAI_COMPLETIONS, bytes, len, req->arena, &oreq,
                             &e) != 0) {
        http_respond_error(req, &e);
        return;
    }
    struct job_ctx *c = arena_calloc(req->arena, 1, sizeof *c);
    if (c == NULL || arena_on_free(req->arena, release_ctx, c) != 0) {
        err_oom(&e);
        http_respond_error(req, &e);
        return;
    }
    c->w = w;
    c->req = req;
    c->chat = chat;
    c->stream = oreq.stream;
    c->want_usage = oreq.want_usage;
    c->created = (long)time(NULL);
    snprintf(c->id, sizeof c->id, "%s-%llu", chat ? "chatcmpl" : "cmpl", ++w->next_id);
    json_error_t jerr;
    c->body = json_loadb(bytes, len, 0, &jerr);
    if (c->body == NULL) { /* openai_parse_request lets through only what jansson reads */
        err_set(&e, 400, "invalid_request_error", "invalid_json", "request body: %s", jerr.text);
        http_respond_error(req, &e);
        return;
    }
    c->text = evbuffer_new();
    if (c->text == NULL) {
        err_oom(&e);
        http_respond_error(req, &e);
        return;
    }
    const char *stops[16];
    struct engine_bias biases[1024];
    struct engine_sampling s;
    if (read_sampling(c->body, &s, stops, 16, &c->grammar, &e) != 0 ||
        read_logit_bias(c->body, &s, biases, sizeof biases / sizeof biases[0], &e) != 0) {
        http_respond_error(req, &e);
        return;
    }
    c->logprobs = s.top_logprobs >= 0;
    if (c->logprobs && (c->lp = chat ? json_array() : legacy_logprobs()) == NULL) {
        err_oom(&e);
        http_respond_error(req, &e);
        return;
    }
    json_t *labels = json_object_get(c->body, "stratus_labels");
    if (labels && !chat) {
        err_param(&e, 400, "stratus_labels", "stratus_labels is for chat completions only");
        http_respond_error(req, &e);
        return;
    }
    char *prompt = NULL;
    if (chat) {
        json_t *msgs = json_object_get(c->body, "messages");
        size_t n = json_array_size(msgs);
        const char **roles = arena_calloc(req->arena, n + 1, sizeof *roles);
        const char **contents = arena_calloc(req->arena, n + 1, sizeof *contents);
        if (!roles || !contents) {
            err_oom(&e);
            http_respond_error(req, &e);
            return;
        }
        for (size_t i = 0; i < n; i++) {
            json_t *m = json_array_get(msgs, i);
            roles[i] = json_string_value(json_object_get(m, "role"));
            json_t *content = json_object_get(m, "content");
            if (json_is_string(content)) {
                contents[i] = json_string_value(content);
            } else if (json_is_array(content)) { /* text parts only */
                struct evbuffer *b = evbuffer_new();
                size_t k;
                json_t *part;
                json_array_foreach(content, k, part)
                {
                    const char *t = json_string_value(json_object_get(part, "text"));
                    if (t) evbuffer_add(b, t, strlen(t));
                }
                size_t bl = evbuffer_get_length(b);
                contents[i] =
                    arena_strndup(req->arena, bl ? (char *)evbuffer_pullup(b, -1) : "", bl);
                evbuffer_free(b);
            } else {
                contents[i] = "";
            }
        }
        prompt = engine_chat_prompt(w->engine, roles, contents, n, &e);
        if (prompt && labels) {
            submit_scores(w, c, prompt, labels);
            free(prompt);
            return;
        }
    } else {
        json_t *p = json_object_get(c->body, "prompt");
        const char *t =
            json_is_string(p) ? json_string_value(p) : json_string_value(json_array_get(p, 0));
        if (t == NULL) {
            err_param(&e, 400, "prompt", "\"prompt\" must be a string (or an array of one string)");
        } else if ((prompt = strdup(t)) == NULL) {
            err_oom(&e);
        }
    }
    if (prompt == NULL) {
        http_respond_error(req, &e);
        return;
    }
    http_request_set_callbacks(req, on_abort, NULL, c);
    c->job = engine_submit(w->engine, prompt, strlen(prompt), &s, on_event, c, &e);
    free(prompt);
    if (c->job == NULL) {
        if (e.status == 429) http_add_header(req, "Retry-After", "1");
        http_respond_error(req, &e);
    }
}

struct embed_ctx {
    struct http_request *req;
    struct engine_job *job;
    bool base64;
    const char *model;
};

static void on_embed_abort(struct http_request *req, void *ud)
{
    struct embed_ctx *c = ud;
    (void)req;
    if (c->job) engine_cancel(c->job);
    c->job = NULL;
}

static void on_embeddings(struct engine_job *job, const struct engine_event *ev, void *ud)
{
    struct embed_ctx *c = ud;
    (void)job;
    c->job = NULL;
    if (ev->kind != ENGINE_EMBEDDINGS) {
        http_respond_error(c->req, &ev->err);
        return;
    }
    json_t *data = json_array();
    for (size_t i = 0; i < ev->n_vectors; i++) {
        const float *v = ev->vectors + i * (size_t)ev->dim;
        json_t *emb;
        if (c->base64) {
            /* OpenAI's base64 format: the float32 array's little-endian bytes. */
            size_t bytes = (size_t)ev->dim * sizeof(float);
            unsigned char *b64 = malloc(4 * ((bytes + 2) / 3) + 1);
            if (b64 == NULL) break;
            EVP_EncodeBlock(b64, (const unsigned char *)v, (int)bytes);
            emb = json_string((const char *)b64);
            free(b64);
        } else {
            emb = json_array();
            for (int d = 0; d < ev->dim; d++) json_array_append_new(emb, json_real(v[d]));
        }
        json_array_append_new(data, json_pack("{s:s, s:I, s:o}", "object", "embedding", "index",
                                              (json_int_t)i, "embedding", emb));
    }
    send_json(c->req, 200,
              json_pack("{s:s, s:o, s:s, s:{s:i, s:i}, s:o}", "object", "list", "data", data,
                        "model", c->model, "usage", "prompt_tokens", ev->prompt_tokens,
                        "total_tokens", ev->prompt_tokens, "timings", side_timings(ev)));
}

static void handle_embeddings(struct worker *w, struct http_request *req)
{
    struct err e;
    err_clear(&e);
    struct openai_request oreq;
    size_t len = evbuffer_get_length(req->body);
    const char *bytes = len ? (const char *)evbuffer_pullup(req->body, -1) : "";
    if (openai_parse_request(OPENAI_EMBEDDINGS, bytes, len, req->arena, &oreq, &e) != 0) {
        http_respond_error(req, &e);
        return;
    }
    json_error_t jerr;
    json_t *body = json_loadb(bytes, len, 0, &jerr);
    if (body == NULL) { /* openai_parse_request lets through only what jansson reads */
        err_set(&e, 400, "invalid_request_error", "invalid_json", "request body: %s", jerr.text);
        http_respond_error(req, &e);
        return;
    }
    json_t *input = json_object_get(body, "input");
    size_t n = json_is_array(input) ? json_array_size(input) : 1;
    const char **inputs = arena_calloc(req->arena, n ? n : 1, sizeof *inputs);
    struct embed_ctx *c = arena_calloc(req->arena, 1, sizeof *c);
    if (body == NULL || inputs == NULL || c == NULL) {
        json_decref(body);
        err_oom(&e);
        http_respond_error(req, &e);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_is_array(input) ? json_array_get(input, i) : input;
        const char *t = json_string_value(v);
        if (t == NULL || (inputs[i] = arena_strdup(req->arena, t)) == NULL) {
            json_decref(body);
            err_param(&e, 400, "input", "\"input\" must be a string or an array of strings");
            http_respond_error(req, &e);
            return;
        }
    }
    const char *fmt = json_string_value(json_object_get(body, "encoding_format"));
    c->base64 = fmt && strcmp(fmt, "base64") == 0;
    json_decref(body);
    if (n == 0) {
        err_param(&e, 400, "input", "\"input\" must not be empty");
        http_respond_error(req, &e);
        return;
    }
    c->req = req;
    c->model = w->model_name;
    http_request_set_callbacks(req, on_embed_abort, NULL, c);
    c->job = engine_submit_embeddings(w->engine, inputs, n, on_embeddings, c, &e);
    if (c->job == NULL) http_respond_error(req, &e);
}

static void handle(struct http_request *req, void *ud)
{
    struct worker *w = ud;
    struct err e;
    err_clear(&e);
    if (strcmp(req->method, "GET") == 0 && strcmp(req->path, "/health") == 0) {
        http_respond(req, 200, "application/json", "{\"status\":\"ok\"}", 15);
    } else if (strcmp(req->method, "GET") == 0 && strcmp(req->path, "/stats") == 0) {
        struct engine_stats st;
        engine_get_stats(w->engine, &st);
        json_t *doc =
            json_pack("{s:i, s:i, s:i, s:f, s:f, s:I}", "slots", st.slots, "busy_slots",
                      st.busy_slots, "queue_depth", st.queue_depth, "tokens_per_s", st.tokens_per_s,
                      "ttft_ms", st.ttft_ms, "tokens_generated", (json_int_t)st.tokens_generated);
        json_object_set_new(doc, "prompt_tokens_total", json_integer((json_int_t)st.prompt_tokens));
        json_object_set_new(doc, "prefix_tokens_reused",
                            json_integer((json_int_t)st.prefix_tokens_reused));
        json_object_set_new(doc, "prefix_hits", json_integer((json_int_t)st.prefix_hits));
        /* Where finished requests' time went (ms): totals and recent averages. */
        json_object_set_new(doc, "requests_completed", json_integer((json_int_t)st.requests_done));
        json_object_set_new(doc, "queue_ms_total", json_real(st.queue_ms_total));
        json_object_set_new(doc, "prefill_ms_total", json_real(st.prefill_ms_total));
        json_object_set_new(doc, "decode_ms_total", json_real(st.decode_ms_total));
        json_object_set_new(doc, "queue_ms_avg", json_real(st.queue_ms_avg));
        json_object_set_new(doc, "prefill_ms_avg", json_real(st.prefill_ms_avg));
        json_object_set_new(doc, "decode_ms_avg", json_real(st.decode_ms_avg));
        send_json(req, 200, doc);
    } else if (strcmp(req->method, "POST") == 0 && strcmp(req->path, "/v1/chat/completions") == 0) {
        handle_generate(w, req, true);
    } else if (strcmp(req->method, "POST") == 0 && strcmp(req->path, "/v1/completions") == 0) {
        handle_generate(w, req, false);
    } else if (strcmp(req->method, "POST") == 0 && strcmp(req->path, "/v1/embeddings") == 0) {
        handle_embeddings(w, req);
    } else {
        err_set(&e, 404, "invalid_request_error", "not_found", "no such endpoint: %s %s",
                req->method, req->path);
        http_respond_error(req, &e);
    }
}

/* The TCP listener (a remote engine): the token on every call but /health (probes of load
 * balancers and orchestrators); the UNIX socket, reachable only by its owner, asks none. */
static void handle_remote(struct http_request *req, void *ud)
{
    struct worker *w = ud;
    bool health = strcmp(req->method, "GET") == 0 && strcmp(req->path, "/health") == 0;
    if (health || authorised(w, req)) {
        handle(req, ud);
        return;
    }
    struct err e;
    err_set(&e, 401, "invalid_request_error", "invalid_api_key",
            "this engine needs its token: Authorization: Bearer <token>");
    http_respond_error(req, &e);
}

static void on_signal(evutil_socket_t sig, short what, void *ud)
{
    (void)sig;
    (void)what;
    event_base_loopbreak(ud);
}

int engine_worker_main(const struct engine_worker_opts *o)
{
    struct worker w = {.model_name = o->model_name ? o->model_name : "local"};
    struct err e;
    err_clear(&e);
    int rc = 1;
    struct event *sig_term = NULL, *sig_int = NULL;
    signal(SIGPIPE, SIG_IGN);
    evthread_use_pthreads(); /* the engine thread wakes the loop */
    w.loop = event_base_new();
    if (w.loop == NULL) return 1;
    uint64_t t0 = (uint64_t)time(NULL);
    w.engine = engine_new(w.loop, &o->engine, &e);
    if (w.engine == NULL) {
        log_msg("error", "model_failed", "%s", e.msg);
        goto out;
    }
    struct http_server_opts so = {.max_body_bytes = 64u << 20,
                                  .max_header_bytes = 64u << 10,
                                  .header_timeout_ms = 10000,
                                  .body_timeout_ms = 60000,
                                  .idle_timeout_ms = 600000,
                                  .max_connections = 4096};
    w.token = o->token;
    if (o->socket_path &&
        (w.server = http_server_new_unix(w.loop, o->socket_path, so, handle, &w, &e)) == NULL) {
        log_msg("error", "engine_failed", "%s", e.msg);
        goto out;
    }
    if (o->listen) {
        char *host = NULL;
        int port = 0;
        const char *why = NULL;
        if (config_parse_listen(o->listen, &host, &port, &why) != 0) {
            log_msg("error", "engine_failed", "--listen %s: %s", o->listen, why);
            goto out;
        }
        if (o->tls_cert && (w.tls = tls_ctx_new(o->tls_cert, o->tls_key, NULL, &e)) == NULL) {
            log_msg("error", "engine_failed", "%s", e.msg);
            free(host);
            goto out;
        }
        so.tls = w.tls;
        w.tcp = http_server_new(w.loop, host, port, so, handle_remote, &w, &e);
        free(host);
        if (w.tcp == NULL) {
            log_msg("error", "engine_failed", "%s", e.msg);
            goto out;
        }
    }
    sig_term = evsignal_new(w.loop, SIGTERM, on_signal, w.loop);
    sig_int = evsignal_new(w.loop, SIGINT, on_signal, w.loop);
    event_add(sig_term, NULL);
    event_add(sig_int, NULL);
    struct log_line l;
    log_begin(&l, "info", "engine_ready");
    log_str(&l, "model", o->engine.model_path);
    log_str(&l, "socket", o->socket_path);
    if (w.tcp) {
        log_str(&l, "address", http_server_address(w.tcp));
        log_bool(&l, "tls", w.tls != NULL);
        log_bool(&l, "token", w.token != NULL);
    }
    log_int(&l, "load_seconds", (long long)((uint64_t)time(NULL) - t0));
    log_end(&l);
    event_base_dispatch(w.loop);
    rc = 0;
out:
    http_server_free(w.server);
    http_server_free(w.tcp);
    tls_ctx_free(w.tls);
    engine_free(w.engine);
    if (sig_term) event_free(sig_term);
    if (sig_int) event_free(sig_int);
    event_base_free(w.loop);
    if (o->socket_path) unlink(o->socket_path);
    return rc;
}
