/*
 * DESIGN: see surface_openai.h. Parsing is openai_parse_request; a whole answer goes out byte
 * for byte. Chunks are framed into a buffer and leave together at flush, one write per
 * upstream read.
 */
#include <event2/buffer.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "api/surface_openai.h"

#include "api/credential.h"
#include "api/respond.h"
#include "app.h"
#include "generation.h"
#include "guard/guard.h"
#include "http/server.h"
#include "util/arena.h"
#include "util/json_text.h"

static void free_state(void *ud)
{
    struct openai_state *st = ud;
    if (st->out) evbuffer_free(st->out);
}

static int openai_parse(struct exchange *x, enum openai_endpoint endpoint, struct err *err)
{
    struct http_request *req = x->req;
    struct openai_request *r = arena_alloc(req->arena, sizeof *r);
    if (r == NULL) return err_oom(err);
    size_t len = evbuffer_get_length(req->body);
    const char *bytes = len ? (const char *)evbuffer_pullup(req->body, -1) : "";
    if (openai_parse_request(endpoint, bytes, len, req->arena, r, err) != 0) return -1;
    x->request = r;
    return 0;
}

static void openai_start(struct exchange *x, int status)
{
    http_stream_start(x->req, status, "text/event-stream");
}

/* The stream's chunk buffer, made with its first chunk (chunks are queued before the head
 * goes out: the first complete event decides that the stream starts). */
static struct evbuffer *out_buffer(struct exchange *x)
{
    struct openai_state *st = x->state;
    if (st->out == NULL && (st->out = evbuffer_new()) != NULL &&
        arena_on_free(x->req->arena, free_state, st) != 0) {
        evbuffer_free(st->out);
        st->out = NULL;
    }
    return st->out;
}

/* One SSE event from `n` pieces of payload: "data: <pieces>\n\n", a payload with newlines
 * getting one data: line per line (SSE framing). @return 1, or -1 when out of memory. */
static int frame(struct evbuffer *out, const char *const *parts, const size_t *lens, size_t n)
{
    int rc = evbuffer_add(out, "data: ", 6);
    for (size_t i = 0; i < n && rc == 0; i++) {
        const char *p = parts[i], *end = parts[i] + lens[i], *nl;
        while (rc == 0 && (nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
            rc = evbuffer_add(out, p, (size_t)(nl - p));
            if (rc == 0) rc = evbuffer_add(out, "\ndata: ", 7);
            p = nl + 1;
        }
        if (rc == 0 && end > p) rc = evbuffer_add(out, p, (size_t)(end - p));
    }
    if (rc == 0) rc = evbuffer_add(out, "\n\n", 2);
    return rc == 0 ? 1 : -1;
}

static int openai_chunk(struct exchange *x, const struct call_chunk *ch)
{
    bool wants_usage = x->request->want_usage;
    if (ch->usage_only && !wants_usage) return 0; /* we asked for it; the client did not */
    struct evbuffer *out = out_buffer(x);
    if (out == NULL) return -1;
    if (!wants_usage || ch->usage_at == 0) return frame(out, &ch->json, &ch->len, 1);
    /* The stream's cost travels in its usage chunk (headers left long ago): spliced in
     * just inside the usage object. */
    const struct call_info *in = call_info(x->call);
    char cost[48];
    const char *comma = ch->usage_empty ? "" : ",";
    if (in->cost_known)
        snprintf(cost, sizeof cost, "\"cost_usd\":%.8f%s", in->cost_usd, comma);
    else
        snprintf(cost, sizeof cost, "\"cost_usd\":null%s", comma);
    const char *parts[3] = {ch->json, cost, ch->json + ch->usage_at};
    size_t lens[3] = {ch->usage_at, strlen(cost), ch->len - ch->usage_at};
    return frame(out, parts, lens, 3);
}

static int openai_flush(struct exchange *x)
{
    struct openai_state *st = x->state;
    size_t len = st->out ? evbuffer_get_length(st->out) : 0;
    if (len == 0) return 0;
    int rc = http_stream_write(x->req, (const char *)evbuffer_pullup(st->out, -1), len);
    evbuffer_drain(st->out, len);
    return rc;
}

static void openai_end(struct exchange *x, const char *error)
{
    if (error == NULL) {
        http_stream_write(x->req, "data: [DONE]\n\n", 14);
    } else {
        char esc[400], line[600];
        json_escape(esc, sizeof esc, error, strlen(error));
        int n = snprintf(line, sizeof line,
                         "data: {\"error\":{\"message\":\"%s\",\"type\":\"upstream_error\","
                         "\"code\":\"stream_interrupted\",\"param\":null}}\n\n",
                         esc);
        http_stream_write(x->req, line, (size_t)n);
    }
    http_stream_end(x->req);
}

static void openai_body(struct exchange *x, int status, const char *json, size_t len)
{
    http_respond(x->req, status, "application/json", json, len);
}

/* The all-failed answer: the error plus every attempt, so a client can see what was tried. */
static char *attempts_body(const struct call_failure *f)
{
    json_t *attempts = json_array();
    for (size_t i = 0; i < f->n_attempts; i++) {
        const struct call_attempt *a = &f->attempts[i];
        json_t *o = json_pack("{s:s, s:s, s:s}", "backend", a->backend, "model", a->model, "error",
                              a->error);
        json_object_set_new(o, "status", a->status ? json_integer(a->status) : json_null());
        json_array_append_new(attempts, o);
    }
    json_t *doc = json_pack("{s:{s:s, s:s, s:s, s:n, s:o}}", "error", "message", f->err.msg, "type",
                            f->err.type, "code", f->err.code, "param", "attempts", attempts);
    char *s = doc ? json_dumps(doc, JSON_COMPACT | JSON_TEXT_REALS) : NULL;
    json_decref(doc);
    return s;
}

static void openai_error(struct exchange *x, const struct call_failure *f)
{
    if (f->retry_after >= 0) {
        char v[24];
        snprintf(v, sizeof v, "%ld", f->retry_after);
        http_add_header(x->req, "Retry-After", v);
    }
    if (f->raw) { /* an OpenAI-speaking upstream's own error: byte for byte */
        http_respond(x->req, f->err.status, "application/json", f->raw, f->raw_len);
        return;
    }
    char *body = f->n_attempts ? attempts_body(f) : NULL;
    if (body == NULL) {
        http_respond_error(x->req, &f->err);
        return;
    }
    http_respond(x->req, f->err.status, "application/json", body, strlen(body));
    free(body);
}

void openai_list_models(struct app *app, struct http_request *req, const struct principal *who)
{
    json_t *data = json_array();
    /* A customer tier's models list narrows the list too (x-stratus-customer names the
     * customer here: a GET has no `user` field). */
    const struct tier_conf *tier =
        guard_tier(app->guard, app->gen->cfg, who, http_request_header(req, "x-stratus-customer"));
    for (size_t i = 0; i < app->gen->cfg->n_models; i++)
        if ((who->kind != PRINCIPAL_KEY ||
             key_allows_model(&who->key, app->gen->cfg->models[i].name)) &&
            tier_allows_model(tier, app->gen->cfg->models[i].name))
            json_array_append_new(data, json_pack("{s:s, s:s, s:i, s:s}", "id",
                                                  app->gen->cfg->models[i].name, "object", "model",
                                                  "created", 0, "owned_by", "stratus"));
    api_respond_json(req, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

const struct surface_ops surface_openai = {
    .name = "openai",
    .state_size = sizeof(struct openai_state),
    .credential = credential_bearer,
    .parse = openai_parse,
    .start = openai_start,
    .chunk = openai_chunk,
    .flush = openai_flush,
    .end = openai_end,
    .body = openai_body,
    .error = openai_error,
};
