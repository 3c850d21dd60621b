/*
 * DESIGN
 * Why one file of ~900 lines: every function here reads and writes one `struct call`, the
 * state machine of a request's attempts; split, that struct and its invariants (one report
 * per attempt, one terminal callback) would have to be shared through a private header.
 *
 * A `struct call` lives in the request's arena and walks the route plan one attempt at a
 * time (see call.h for the rules). One event timer per call serves both the first-byte
 * timeout and the backoff before a retry. Upstream bytes arrive through upstream.h's
 * callbacks: a stream is framed (SSE, or the provider's own framing through its
 * translator) into OpenAI chunks for the sink, and the chunks framed from one upstream read
 * are flushed together; anything else is held whole until the transfer ends.
 *
 * Usage: streams are asked for include_usage upstream; the chunk that carries usage is read
 * here (only chunks that mention a usage object are parsed at all) and handed to the sink
 * flagged, so a surface can drop it or put the cost on it. The local engine puts
 * "timings" beside usage (in the body, and in the chunk that carries usage); its engine_ms
 * prices a TCO target (cost.h).
 */
#include "route/call.h"

#include <curl/curl.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "config/scrub.h"
#include "http/sse.h"
#include "providers/provider.h"
#include "util/arena.h"
#include "util/clock.h"

#define MAX_ERROR_BODY      (64u << 10) /* we keep this much of an upstream error body */
#define MAX_ATTEMPTS_LOGGED 16

struct call {
    const struct call_env *env;
    const struct call_sink *sink;
    void *ud;
    struct arena *arena;
    const struct openai_request *request;
    const struct model_conf *model;
    struct route_request route;
    struct route_plan plan;
    struct call_info info;
    bool stream;
    bool no_native;                   /* call_request.translate_answers */
    const char *const *trace_headers; /* call_request.trace_headers */
    /* the attempt walk */
    size_t attempt;             /* index into plan.order of the current attempt */
    int round;                  /* pass over the plan: 0, then one per retry */
    size_t round_first_attempt; /* attempts made when this pass began */
    bool attempt_live;          /* router_begin called, router_report not yet */
    struct event *timer;        /* first-byte timeout, or the backoff before a retry */
    bool backing_off;
    struct call_attempt attempts[MAX_ATTEMPTS_LOGGED];
    struct err unfit_err; /* the first build-time 4xx, answered if every target said so */
    /* the current attempt */
    struct backend *backend;
    const struct target_conf *target;
    struct provider_request pr;        /* for translation */
    struct provider_stream *translate; /* its translator, or NULL */
    struct upstream_call *upstream;
    uint64_t attempt_start_ns, attempt_first_byte_ns;
    struct evbuffer *held; /* non-stream answer or error body; owned */
    size_t held_counted;   /* bytes of `held` counted in env->buffered_bytes */
    enum { HOLD_OK, HOLD_TOO_LARGE, HOLD_NO_ROOM } hold;
    struct sse_parser sse;
    size_t queued; /* chunks the sink queued from the current upstream read */
    bool committed;
    bool saw_done;
    char stream_error[200];
    /* usage as the upstream reported it (-1: not reported) */
    long long prompt_tokens, completion_tokens, cached_tokens;
    double engine_ms; /* the engine time the local engine reported using (-1: none) */
    long chunks;      /* content chunks forwarded: an estimate when usage never came */
    bool finished;
};

static void next_attempt(struct call *c);
static void plan_exhausted(struct call *c);
static const struct upstream_callbacks upstream_callbacks;

/* ---- small helpers ------------------------------------------------------------------- */

static void copy_field(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

static struct call_attempt *current_attempt(struct call *c)
{
    size_t i = c->info.attempts ? c->info.attempts - 1 : 0;
    return &c->attempts[i < MAX_ATTEMPTS_LOGGED ? i : MAX_ATTEMPTS_LOGGED - 1];
}

static bool all_logged(const struct call *c)
{
    return c->info.attempts > 0 && c->info.attempts <= MAX_ATTEMPTS_LOGGED;
}

static const char *backend_name(const struct call *c)
{
    return c->backend->conf->name;
}

/* Scans an upstream JSON document into the call's arena. */
static bool scan_json(struct call *c, const char *bytes, size_t len, struct json_scan *s)
{
    bool oom;
    return json_scan_parse(s, bytes, len, c->arena, &oom) == 0 && json_scan_is_object(s, 0);
}

/* Reads usage (object `usage` of document `s`) and, beside it, the local engine's
 * timings.engine_ms. */
static void read_usage(struct call *c, const struct json_scan *s, int usage)
{
    long long v;
    if (!json_scan_is_object(s, usage)) return;
    int timings = json_scan_get(s, 0, "timings");
    double ms;
    if (json_scan_is_object(s, timings) &&
        json_scan_number(s, json_scan_get(s, timings, "engine_ms"), &ms) && ms >= 0)
        c->engine_ms = ms;
    int details = json_scan_get(s, usage, "prompt_tokens_details");
    if (json_scan_is_object(s, details) &&
        json_scan_integer(s, json_scan_get(s, details, "cached_tokens"), &v))
        c->cached_tokens = v;
    if (json_scan_integer(s, json_scan_get(s, usage, "prompt_tokens"), &v)) c->prompt_tokens = v;
    if (json_scan_integer(s, json_scan_get(s, usage, "completion_tokens"), &v))
        c->completion_tokens = v;
}

/* Settles what this request consumed and what it cost, once. Provider counts when there are
 * any; otherwise, if a target produced something (a stream cut short, a client that left
 * mid-stream), an estimate — prompt from the body's size, completion from the chunks seen —
 * flagged as such; a request nothing was received for is billed nothing. */
static void account(struct call *c)
{
    struct call_info *in = &c->info;
    if (in->accounted) return;
    in->accounted = true;
    in->usage = (struct usage){.prompt = -1, .completion = -1, .cached = -1};
    if (c->prompt_tokens >= 0 || c->completion_tokens >= 0) {
        in->usage.prompt = c->prompt_tokens > 0 ? c->prompt_tokens : 0;
        in->usage.completion = c->completion_tokens > 0 ? c->completion_tokens : 0;
        in->usage.cached = c->cached_tokens;
    } else if (c->committed || c->chunks > 0) {
        in->usage.prompt = (long long)(c->request->scan.len / 4);
        in->usage.completion = c->chunks; /* ~one token per content chunk */
        in->usage.estimated = true;
    } else {
        in->cost_known = true; /* nothing was served, nothing is billed */
        in->cost_usd = 0;
        return;
    }
    struct price price;
    if (c->target &&
        cost_engine_time_usd(c->target, &c->backend->conf->tco, c->engine_ms, &in->cost_usd)) {
        in->cost_known = true; /* what the engine time it used costs */
    } else if (c->target && cost_target_price(c->target, &c->backend->conf->tco,
                                              backend_tokens_per_s(c->backend), &price)) {
        in->cost_known = true;
        in->cost_usd = cost_usd(&price, &in->usage);
    }
}

/* Tells the router how the current attempt ended; once per attempt. */
static void report(struct call *c, enum route_outcome outcome, long retry_after)
{
    if (!c->attempt_live) return;
    c->attempt_live = false;
    if (c->timer && !c->backing_off) evtimer_del(c->timer);
    uint64_t ttfb_us =
        c->attempt_first_byte_ns ? (c->attempt_first_byte_ns - c->attempt_start_ns) / 1000 : 0;
    router_report(c->env->router, c->model, c->plan.order[c->attempt], outcome, ttfb_us,
                  retry_after);
}

/* Gives the router the current attempt's failure text (scrubbed here) for /admin/routes. */
static void note_failure(struct call *c, const char *text)
{
    char scrubbed[300]; /* scrubbed whole, then cut: a cut could hide half a secret */
    if (!c->attempt_live) return;
    copy_field(scrubbed, sizeof scrubbed, text);
    secrets_scrub_str(c->env->cfg, scrubbed);
    router_note_error(c->env->router, c->model, c->plan.order[c->attempt], scrubbed);
}

/* ---- terminal outcomes ---------------------------------------------------------------- */

static void deliver_failure(struct call *c, struct call_failure *f)
{
    c->finished = true;
    account(c);
    c->sink->fail(c->ud, c, f);
}

static void fail_with(struct call *c, const struct err *e, long retry_after)
{
    struct call_failure f = {.err = *e, .retry_after = retry_after};
    deliver_failure(c, &f);
}

/* How many different targets the attempts went to (a retry may revisit one). */
static size_t distinct_targets(const struct call *c)
{
    size_t logged = c->info.attempts < MAX_ATTEMPTS_LOGGED ? c->info.attempts : MAX_ATTEMPTS_LOGGED;
    size_t n = 0;
    for (size_t i = 0; i < logged; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = c->attempts[j].backend == c->attempts[i].backend &&
                   c->attempts[j].model == c->attempts[i].model;
        n += !seen;
    }
    return c->info.attempts > logged ? n + (c->info.attempts - logged) : n;
}

static void fail_all(struct call *c)
{
    /* No target could even express the request: that is the client's 4xx, not a 502. */
    bool all_unfit = all_logged(c), all_busy = all_logged(c), all_auth = all_logged(c);
    bool engines_busy = all_logged(c);
    long retry = -1;
    for (size_t i = 0; i < c->info.attempts && i < MAX_ATTEMPTS_LOGGED; i++) {
        const struct call_attempt *a = &c->attempts[i];
        all_unfit = all_unfit && a->unfit;
        all_busy = all_busy && a->status == 429;
        all_auth = all_auth && a->auth;
        engines_busy = engines_busy && strcmp(a->code, "engine_busy") == 0;
        if (a->retry_after >= 0 && (retry < 0 || a->retry_after < retry)) retry = a->retry_after;
    }
    if (all_unfit) {
        fail_with(c, &c->unfit_err, -1);
        return;
    }
    bool timeout = c->info.attempts > 0 && current_attempt(c)->timeout;
    struct call_failure f = {.retry_after = -1};
    int status = timeout ? 504 : 502;
    const char *type = "upstream_error", *code = timeout ? "upstream_timeout" : "upstream_failed";
    if (all_auth) code = "upstream_auth_failed";
    /* Every target said "too many requests": so do we, with the soonest Retry-After, so
     * clients back off instead of treating a busy fleet as a broken one. */
    if (all_busy) {
        status = 429;
        type = "rate_limit_error";
        code = engines_busy ? "engine_busy" : "upstream_rate_limited";
        f.retry_after = retry >= 0 ? retry : 1;
    }
    char summary[400];
    size_t targets = distinct_targets(c), n;
    if (targets == c->info.attempts)
        n = (size_t)snprintf(summary, sizeof summary, "all %zu target%s failed: ", targets,
                             targets == 1 ? "" : "s");
    else
        n = (size_t)snprintf(summary, sizeof summary,
                             "all %zu attempts on %zu target%s failed: ", c->info.attempts, targets,
                             targets == 1 ? "" : "s");
    for (size_t i = 0; i < c->info.attempts && i < MAX_ATTEMPTS_LOGGED; i++) {
        const struct call_attempt *a = &c->attempts[i];
        if (n < sizeof summary)
            n += (size_t)snprintf(summary + n, sizeof summary - n, "%s%s: %s", i ? "; " : "",
                                  a->backend, a->error);
    }
    err_set(&f.err, status, type, code, "%s", summary);
    f.attempts = c->attempts;
    f.n_attempts = c->info.attempts < MAX_ATTEMPTS_LOGGED ? c->info.attempts : MAX_ATTEMPTS_LOGGED;
    deliver_failure(c, &f);
}

/* An answer the gateway would not hold. Too large: another target or a retry would only
 * download the same size again, so this ends the request (502). No room: the gateway is
 * saturated right now, not the upstream; the client may come back shortly (503). */
static void fail_unheld(struct call *c, long status)
{
    struct err e;
    const struct limits_conf *lim = &c->env->cfg->limits;
    current_attempt(c)->status = status;
    copy_field(current_attempt(c)->error, sizeof current_attempt(c)->error, c->stream_error);
    report(c, c->hold == HOLD_TOO_LARGE ? ROUTE_REJECTED : ROUTE_CANCELLED, -1);
    if (c->hold == HOLD_TOO_LARGE) {
        err_set(&e, 502, "upstream_error", "upstream_response_too_large",
                "backend '%s' answered more than limits.max_response_bytes (%zu bytes)",
                backend_name(c), lim->max_response_bytes);
        fail_with(c, &e, -1);
    } else {
        err_set(&e, 503, "server_error", "gateway_overloaded",
                "the gateway is holding its limit of buffered answers "
                "(limits.max_buffered_bytes = %zu bytes); retry shortly",
                lim->max_buffered_bytes);
        fail_with(c, &e, 1);
    }
}

/* No target can take the request. A 503 (every engine loading or down) is temporary. */
static void fail_plan(struct call *c, const struct err *e)
{
    fail_with(c, e, e->status == 503 ? 1 : -1);
}

static void end_stream(struct call *c, const char *error)
{
    char scrubbed[300];
    if (error) {
        copy_field(scrubbed, sizeof scrubbed, error);
        secrets_scrub_str(c->env->cfg, scrubbed);
        error = scrubbed;
    }
    c->finished = true;
    account(c);
    c->sink->end(c->ud, c, error);
}

/* Records why the current attempt failed and moves on. */
static void attempt_failed(struct call *c, long status, bool timeout, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void attempt_failed(struct call *c, long status, bool timeout, const char *fmt, ...)
{
    struct call_attempt *a = current_attempt(c);
    a->status = status;
    a->timeout = timeout;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->error, sizeof a->error, fmt, ap);
    va_end(ap);
    secrets_scrub_str(c->env->cfg, a->error); /* upstream words may quote our credentials */
    if (c->attempt_live)
        router_note_error(c->env->router, c->model, c->plan.order[c->attempt], a->error);
    report(c, ROUTE_FAILED, status == 429 ? a->retry_after : -1);
    if (c->upstream) { /* a timeout: the transfer is still running */
        c->env->transport->cancel(c->upstream);
        c->upstream = NULL;
    }
    c->attempt++;
    next_attempt(c);
}

/* ---- holding whole answers ---------------------------------------------------------- */

/* Gives back what the held answer counted against limits.max_buffered_bytes. */
static void release_held(struct call *c)
{
    *c->env->buffered_bytes -= c->held_counted;
    c->held_counted = 0;
    if (c->held) evbuffer_drain(c->held, evbuffer_get_length(c->held));
}

/* Holds a non-stream answer (or an error body) whole, within its own cap and the process's
 * budget for held answers. @return 0, or -1 to stop the transfer (c->hold says why). */
static int hold(struct call *c, long status, const char *data, size_t n)
{
    const struct limits_conf *lim = &c->env->cfg->limits;
    bool ok = status >= 200 && status < 300;
    size_t have = evbuffer_get_length(c->held);
    if (!ok && have + n > MAX_ERROR_BODY) {
        if (have >= MAX_ERROR_BODY) return 0; /* error bodies: keep the head, drop the rest */
        n = MAX_ERROR_BODY - have;
    }
    if (ok && have + n > lim->max_response_bytes) {
        c->hold = HOLD_TOO_LARGE;
        snprintf(c->stream_error, sizeof c->stream_error,
                 "upstream answer exceeds limits.max_response_bytes (%zu bytes)",
                 lim->max_response_bytes);
        return -1;
    }
    if (*c->env->buffered_bytes + n > lim->max_buffered_bytes) {
        c->hold = HOLD_NO_ROOM;
        snprintf(c->stream_error, sizeof c->stream_error,
                 "the gateway holds limits.max_buffered_bytes (%zu bytes) of answers already",
                 lim->max_buffered_bytes);
        return -1;
    }
    if (evbuffer_add(c->held, data, n) != 0) {
        snprintf(c->stream_error, sizeof c->stream_error, "out of memory");
        return -1;
    }
    c->held_counted += n;
    *c->env->buffered_bytes += n;
    return 0;
}

static const char *held_bytes(struct call *c, size_t *len)
{
    *len = evbuffer_get_length(c->held);
    return *len ? (const char *)evbuffer_pullup(c->held, -1) : "";
}

/* The upstream's own words about a failure, from the held error body: ": <message>" (or ""),
 * bounded, and its OpenAI-style error.code when it has one. They help whoever reads the
 * summary; the message is scrubbed with the rest of the attempt's text. */
static void upstream_error(struct call *c, char *detail, size_t cap, char *code, size_t code_cap)
{
    size_t len;
    const char *body = held_bytes(c, &len);
    detail[0] = code[0] = '\0';
    if (c->backend->ops->error_message) {
        char msg[110];
        c->backend->ops->error_message(body, len, msg, sizeof msg);
        if (msg[0]) snprintf(detail, cap, ": %s", msg);
        return;
    }
    json_t *doc = len ? json_loadb(body, len, 0, NULL) : NULL;
    json_t *error = json_object_get(doc, "error");
    const char *m = json_string_value(json_object_get(error, "message"));
    if (m) snprintf(detail, cap, ": %.100s", m);
    copy_field(code, code_cap, json_string_value(json_object_get(error, "code")));
    json_decref(doc);
}

/* ---- streams ------------------------------------------------------------------------ */

/* Whether a chunk carries a usage *object*. With include_usage every chunk says
 * "usage":null; only the final one has numbers, and only that one is worth parsing. */
static bool has_usage_object(const char *data, size_t len)
{
    const char *end = data + len, *p = data;
    while ((p = memmem(p, (size_t)(end - p), "\"usage\"", 7)) != NULL) {
        p += 7;
        while (p < end && (*p == ' ' || *p == ':' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
        if (p < end && *p == '{') return true;
    }
    return false;
}

/* Whether a chunk carries generated content: a non-empty "content" string or tool calls
 * (the role chunk's "content":"" and the finish chunk do not count). */
static bool has_content(const char *data, size_t len)
{
    const char *end = data + len, *q = data;
    while ((q = memmem(q, (size_t)(end - q), "\"content\":\"", 11)) != NULL) {
        q += 11;
        if (q < end && *q != '"') return true;
    }
    return memmem(data, len, "\"tool_calls\"", 12) != NULL;
}

/* Whether an event's data has the shape of a chat.completion.chunk: one JSON object, "{…}"
 * (surrounding whitespace allowed). Not a full JSON check: that costs ~1,000 instructions
 * per chunk (jsmn), a tenth of a whole streamed request's, on every chunk of every stream;
 * this catches what breaks upstream streams in practice — text, HTML, a cut line — and the
 * chunks that carry usage are parsed in full below anyway. */
static bool object_shaped(const char *data, size_t len)
{
    while (len > 0 && (data[len - 1] == ' ' || data[len - 1] == '\t' || data[len - 1] == '\r' ||
                       data[len - 1] == '\n'))
        len--;
    size_t i = 0;
    while (i < len && (data[i] == ' ' || data[i] == '\t' || data[i] == '\r' || data[i] == '\n'))
        i++;
    return len - i >= 2 && data[i] == '{' && data[len - 1] == '}';
}

/* One OpenAI chunk's data. `checked`: it was produced by our own translator (known JSON);
 * pass-through data is checked first — garbage from an upstream must end the stream
 * truthfully, not reach the client as if it were a chunk. @return 0, or -1 (why in
 * stream_error, or out of memory). */
static int on_chunk(struct call *c, const char *data, size_t len, bool checked)
{
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        c->saw_done = true;
        c->queued++; /* the sink writes it when the stream ends, but it is an answer */
        return 0;
    }
    if (!checked && !object_shaped(data, len)) {
        snprintf(c->stream_error, sizeof c->stream_error,
                 "upstream '%s' sent an event that is not a JSON object", backend_name(c));
        return -1;
    }
    if (has_content(data, len)) c->chunks++;
    struct call_chunk ch = {.json = data, .len = len};
    struct json_scan s;
    if (has_usage_object(data, len)) {
        if (!scan_json(c, data, len, &s)) {
            snprintf(c->stream_error, sizeof c->stream_error,
                     "upstream '%s' sent a usage event that is not JSON", backend_name(c));
            return -1;
        }
        int usage = json_scan_get(&s, 0, "usage");
        if (json_scan_is_object(&s, usage)) {
            read_usage(c, &s, usage);
            account(c); /* the stream's cost travels in its usage chunk */
            int choices = json_scan_get(&s, 0, "choices");
            ch.usage_only = !json_scan_is_array(&s, choices) || json_scan_size(&s, choices) == 0;
            ch.usage_at = (size_t)s.tok[usage].start + 1;
            ch.usage_empty = json_scan_size(&s, usage) == 0;
        }
    }
    int rc = c->sink->chunk(c->ud, c, &ch);
    if (rc < 0) return -1;
    c->queued += (size_t)rc;
    return 0;
}

/* One upstream SSE event from an OpenAI-speaking provider. */
static int on_sse_event(void *ud, const char *ev, size_t len)
{
    struct call *c = ud;
    const char *data;
    size_t dlen;
    int lines = sse_event_data(&c->sse, ev, len, &data, &dlen);
    if (lines < 0) return -1;
    if (lines == 0) return 0; /* comments and keep-alives carry nothing for the client */
    return on_chunk(c, data, dlen, false);
}

/* One chunk from a translating provider. */
static int on_translated_chunk(void *ud, const char *json, size_t len)
{
    return on_chunk(ud, json, len, true);
}

/* Sends what the last upstream read produced. @return 0, 1 (client slow), -1 (gone). */
static int flush_chunks(struct call *c)
{
    if (c->queued == 0) return 0;
    c->queued = 0;
    if (!c->committed) {
        c->committed = true;
        c->info.first_byte_ns = clock_now_ns();
        c->sink->start(c->ud, c, 200);
    }
    return c->sink->flush(c->ud, c);
}

/* ---- upstream callbacks ------------------------------------------------------------- */

static int on_data(struct upstream_call *call, const char *data, size_t n, void *ud)
{
    struct call *c = ud;
    long status = c->env->transport->status(call);
    if (c->attempt_first_byte_ns == 0) {
        c->attempt_first_byte_ns = clock_now_ns();
        if (c->timer) evtimer_del(c->timer); /* the first-byte timeout is met */
    }
    if (status < 200 || status >= 300 || !c->stream) return hold(c, status, data, n);
    struct err e;
    err_clear(&e);
    int rc;
    const struct provider_ops *ops = c->backend->ops;
    if (c->info.native) { /* the client's API: its bytes go as they came */
        if (c->sink->raw(c->ud, c, data, n) != 0) return -1;
        c->queued++;
    }
    if (c->translate) {
        rc = ops->stream_feed(c->translate, data, n, on_translated_chunk, c, &e);
        if (rc == 0 && !c->saw_done && ops->stream_complete(c->translate)) {
            c->saw_done = true;
            c->queued++;
        }
    } else {
        rc = sse_parser_feed(&c->sse, data, n, on_sse_event, c, &e);
    }
    int sent = flush_chunks(c); /* what was framed before a failure still goes out */
    if (rc != 0) {
        if (c->stream_error[0] == '\0') /* on_chunk may have said why already */
            copy_field(c->stream_error, sizeof c->stream_error, e.msg[0] ? e.msg : "out of memory");
        return -1;
    }
    return sent < 0 ? -1 : sent;
}

/* A whole 2xx answer: translated if need be, checked, accounted, delivered. */
static void deliver_body(struct call *c, long status)
{
    size_t len;
    const char *bytes = held_bytes(c, &len);
    const struct provider_ops *ops = c->backend->ops;
    if (c->info.native) {
        c->info.native_answer = bytes;
        c->info.native_answer_len = len;
    }
    if (ops->translate_response) {
        struct err e;
        err_clear(&e);
        char *out = NULL;
        size_t out_len = 0;
        if (ops->translate_response(&c->pr, bytes, len, c->arena, &out, &out_len, &e) != 0) {
            attempt_failed(c, status, false, "HTTP %ld: %s", status, e.msg);
            return;
        }
        bytes = out;
        len = out_len;
    }
    struct json_scan doc;
    if (!scan_json(c, bytes, len, &doc)) {
        attempt_failed(c, status, false, "HTTP %ld with a body that is not a JSON object", status);
        return;
    }
    read_usage(c, &doc, json_scan_get(&doc, 0, "usage"));
    report(c, ROUTE_OK, -1);
    c->info.first_byte_ns = clock_now_ns();
    c->finished = true;
    account(c);
    c->sink->body(c->ud, c, (int)status, bytes, len);
}

/* A 4xx other than 401/403/429: the request itself is wrong; every target would say so. */
static void reject(struct call *c, long status)
{
    size_t len;
    char *bytes = (char *)held_bytes(c, &len);
    secrets_scrub(c->env->cfg, bytes, len); /* the body goes to the client and the log */
    report(c, ROUTE_REJECTED, -1);
    struct call_failure f = {.retry_after = -1, .from_target = true};
    const char *name = backend_name(c);
    if (c->backend->ops->error_message) {
        /* Another provider's error shape: re-told as an OpenAI error, its words kept. */
        char msg[400];
        c->backend->ops->error_message(bytes, len, msg, sizeof msg);
        err_set(&f.err, (int)status, "invalid_request_error", "upstream_rejected",
                "backend '%s' rejected the request (HTTP %ld): %s", name, status,
                msg[0] ? msg : "no message");
        deliver_failure(c, &f);
        return;
    }
    json_t *doc = json_loadb(bytes, len, 0, NULL);
    json_t *error = json_object_get(doc, "error");
    if (json_is_object(error)) {
        const char *msg = json_string_value(json_object_get(error, "message"));
        err_set(&f.err, (int)status, "invalid_request_error", "upstream_rejected", "%s",
                msg ? msg : "upstream rejected the request");
        f.raw = bytes;
        f.raw_len = len;
    } else {
        err_set(&f.err, (int)status, "invalid_request_error", "upstream_rejected",
                "backend '%s' rejected the request with HTTP %ld", name, status);
    }
    json_decref(doc);
    deliver_failure(c, &f);
}

static void on_done(enum upstream_result result, long status, long retry_after, const char *message,
                    void *ud)
{
    struct call *c = ud;
    c->upstream = NULL;
    if (c->committed) {
        /* Mid-stream: the client already has a 200; end it truthfully. */
        const struct provider_ops *ops = c->backend->ops;
        size_t pending =
            c->translate ? ops->stream_pending(c->translate) : sse_parser_pending(&c->sse);
        if (result == UPSTREAM_OK && c->saw_done && pending == 0) {
            report(c, ROUTE_OK, -1);
            end_stream(c, NULL);
            return;
        }
        char why[300];
        if (result == UPSTREAM_OK)
            snprintf(why, sizeof why, "upstream '%s' ended the stream before [DONE]",
                     backend_name(c));
        else if (result == UPSTREAM_ABORTED)
            snprintf(why, sizeof why, "stream from '%s' aborted: %s", backend_name(c),
                     c->stream_error);
        else
            snprintf(why, sizeof why, "stream from '%s' broke: %s", backend_name(c), message);
        note_failure(c, why);
        report(c, ROUTE_FAILED, -1);
        end_stream(c, why);
        return;
    }
    switch (result) {
    case UPSTREAM_CONNECT:
        attempt_failed(c, 0, false, "connect failed: %s", message);
        return;
    case UPSTREAM_TIMEOUT:
        attempt_failed(c, status, true, "timed out after %ld ms", c->backend->conf->timeout_ms);
        return;
    case UPSTREAM_BROKEN:
        attempt_failed(c, status, false, "connection broke: %s", message);
        return;
    case UPSTREAM_ABORTED:
        if (c->hold != HOLD_OK)
            fail_unheld(c, status);
        else
            attempt_failed(c, status, false, "%s", c->stream_error);
        return;
    case UPSTREAM_OK:
        break;
    }
    char detail[120], code[sizeof current_attempt(c)->code];
    if (status == 429) {
        upstream_error(c, detail, sizeof detail, code, sizeof code);
        if (c->info.attempts <= MAX_ATTEMPTS_LOGGED) {
            current_attempt(c)->retry_after = retry_after;
            copy_field(current_attempt(c)->code, sizeof current_attempt(c)->code, code);
        }
        if (retry_after >= 0)
            attempt_failed(c, status, false, "HTTP 429 (rate limited, retry after %ld s)%s",
                           retry_after, detail);
        else
            attempt_failed(c, status, false, "HTTP 429 (rate limited)%s", detail);
        return;
    }
    if (status >= 500 || status < 200) {
        upstream_error(c, detail, sizeof detail, code, sizeof code);
        attempt_failed(c, status, false, "HTTP %ld%s", status, detail);
        return;
    }
    if (status == 401 || status == 403) {
        /* The upstream refused *our* credentials: the client's key is not at fault, and the
         * body may echo what we sent, so it is never repeated. Another target may still
         * serve; the breaker keeps this one aside. */
        if (c->info.attempts <= MAX_ATTEMPTS_LOGGED) current_attempt(c)->auth = true;
        attempt_failed(c, status, false,
                       "backend '%s' refused the gateway's credentials (HTTP %ld); check its "
                       "api_key",
                       backend_name(c), status);
        return;
    }
    if (status >= 300) {
        reject(c, status);
        return;
    }
    if (!c->stream) {
        deliver_body(c, status);
        return;
    }
    /* A 2xx stream that ended before any complete event: nothing was sent, so fail over. */
    size_t pending =
        c->translate ? c->backend->ops->stream_pending(c->translate) : sse_parser_pending(&c->sse);
    attempt_failed(c, status, false, "stream ended before any event%s",
                   pending ? " (garbled data)" : "");
}

static const struct upstream_callbacks upstream_callbacks = {
    .on_data = on_data,
    .on_done = on_done,
};

static struct upstream_call *transport_start(void *ctx, const struct upstream_request *r,
                                             const struct upstream_callbacks *cb, void *ud,
                                             struct err *err)
{
    return upstream_start(ctx, r, cb, ud, err);
}

const struct call_transport call_transport_upstream = {
    .start = transport_start,
    .cancel = upstream_cancel,
    .resume = upstream_resume,
    .status = upstream_call_status,
};

/* ---- attempts ----------------------------------------------------------------------- */

static void on_timer(evutil_socket_t fd, short what, void *ud)
{
    struct call *c = ud;
    (void)fd, (void)what;
    if (c->backing_off) {
        c->backing_off = false;
        struct err e;
        err_clear(&e);
        if (router_plan(c->env->router, c->model, &c->route, &c->plan, &e) != 0) {
            fail_plan(c, &e);
            return;
        }
        c->attempt = 0;
        c->round_first_attempt = c->info.attempts;
        next_attempt(c);
        return;
    }
    if (c->upstream && c->attempt_first_byte_ns == 0)
        attempt_failed(c, 0, true, "no first byte within %ld ms",
                       c->backend->conf->first_byte_timeout_ms);
}

/* Resets what the previous attempt left and makes attempt number `info.attempts`. */
static void begin_attempt(struct call *c, const struct target_conf *t)
{
    c->target = t;
    c->backend = c->env->backends[t->backend_index];
    c->info.backend = c->backend->conf->name;
    c->info.target_model = t->model;
    if (c->info.attempts < MAX_ATTEMPTS_LOGGED)
        c->attempts[c->info.attempts] = (struct call_attempt){
            .backend = c->backend->conf->name, .model = t->model, .retry_after = -1};
    c->info.attempts++;
    release_held(c);
    c->hold = HOLD_OK;
    sse_parser_reset(&c->sse);
    c->queued = 0;
    c->saw_done = false;
    c->stream_error[0] = '\0';
    c->attempt_first_byte_ns = 0;
    c->translate = NULL;
    c->info.native = false;
    c->pr = (struct provider_request){.request = c->request, .target_model = t->model};
    c->attempt_start_ns = clock_now_ns();
}

/* Puts the trace context in front of the provider's headers. The provider's list is shared
 * by every request to its backend, so it is not appended to: two nodes from the arena point
 * at it instead (libcurl only reads the list, for as long as the transfer runs). */
static bool add_trace_headers(struct call *c, struct upstream_request *ur)
{
    const struct curl_slist *next = ur->headers;
    for (int i = 1; i >= 0; i--) {
        if (c->trace_headers[i] == NULL) continue;
        struct curl_slist *node = arena_alloc(c->arena, sizeof *node);
        if (node == NULL) return false;
        node->data = (char *)c->trace_headers[i]; /* libcurl never writes to it */
        node->next = (struct curl_slist *)next;
        next = node;
    }
    ur->headers = next;
    return true;
}

static void next_attempt(struct call *c)
{
    while (c->attempt < c->plan.n) {
        struct err e;
        err_clear(&e);
        begin_attempt(c, &c->model->targets[c->plan.order[c->attempt]]);
        struct upstream_request ur;
        const struct provider_ops *ops = c->backend->ops;
        ur = (struct upstream_request){0};
        bool built = ops->build(c->backend, &c->pr, c->arena, &ur, &e) == 0;
        if (built && c->trace_headers[0] && !add_trace_headers(c, &ur)) {
            err_oom(&e);
            built = false;
        }
        c->info.native = built && ur.native && c->sink->raw && !c->no_native;
        if (built && c->stream && ops->stream_open &&
            (c->translate = ops->stream_open(&c->pr, c->arena)) == NULL) {
            err_oom(&e);
            built = false;
        }
        if (built && (c->upstream = c->env->transport->start(c->env->transport_ctx, &ur,
                                                             &upstream_callbacks, c, &e)) != NULL) {
            router_begin(c->env->router, c->model, c->plan.order[c->attempt]);
            c->attempt_live = true;
            long fbt = c->backend->conf->first_byte_timeout_ms;
            if (fbt > 0) {
                struct timeval tv = {fbt / 1000, (fbt % 1000) * 1000};
                evtimer_add(c->timer, &tv);
            }
            return;
        }
        struct call_attempt *a = current_attempt(c);
        copy_field(a->error, sizeof a->error, e.msg);
        if (e.status >= 400 && e.status < 500) {
            a->unfit = true;
            a->status = e.status;
            if (c->unfit_err.status == 0) c->unfit_err = e;
        }
        c->attempt++;
    }
    plan_exhausted(c);
}

/* Every target of this pass failed: retry after a backoff, or give the client the news. */
static void plan_exhausted(struct call *c)
{
    const struct retry_conf *rc = &c->model->retry;
    size_t first = c->round_first_attempt, last = c->info.attempts;
    bool any_retryable = false, all_429_with_wait = last > first;
    long wait_s = -1;
    for (size_t i = first; i < last && i < MAX_ATTEMPTS_LOGGED; i++) {
        const struct call_attempt *a = &c->attempts[i];
        if (!a->unfit) any_retryable = true;
        if (a->status != 429 || a->retry_after < 0)
            all_429_with_wait = false;
        else if (wait_s < 0 || a->retry_after < wait_s)
            wait_s = a->retry_after;
    }
    if (last >= MAX_ATTEMPTS_LOGGED) all_429_with_wait = false, any_retryable = false;
    if (c->round >= rc->retries || !any_retryable ||
        (all_429_with_wait && wait_s * 1000 > rc->max_retry_after_ms)) {
        fail_all(c);
        return;
    }
    /* Full jitter: uniform in [0, min(cap, base * 2^round)]. */
    long ceiling = rc->backoff_ms << (c->round < 20 ? c->round : 20);
    if (ceiling > rc->max_backoff_ms || ceiling < 0) ceiling = rc->max_backoff_ms;
    long delay = ceiling > 0 ? (long)(clock_now_ns() % (uint64_t)(ceiling + 1)) : 0;
    if (all_429_with_wait && wait_s * 1000 > delay) delay = wait_s * 1000;
    c->round++;
    c->backing_off = true;
    struct timeval tv = {delay / 1000, (delay % 1000) * 1000};
    evtimer_add(c->timer, &tv);
}

/* ---- lifecycle ---------------------------------------------------------------------- */

static void release_call(void *ud)
{
    struct call *c = ud;
    call_cancel(c);
    release_held(c);
    if (c->timer) event_free(c->timer);
    if (c->held) evbuffer_free(c->held);
    sse_parser_free(&c->sse);
}

/* What every call knows from its start: where it reports, and what it answers. */
static void call_bind(struct call *c, const struct call_env *env, const struct call_request *rq,
                      const struct call_sink *sink, void *ud, struct arena *arena)
{
    c->env = env;
    c->sink = sink;
    c->ud = ud;
    c->arena = arena;
    c->request = rq->request;
    c->model = rq->model;
    c->stream = rq->request->stream;
}

struct call *call_start(const struct call_env *env, const struct call_request *rq,
                        const struct call_sink *sink, void *ud, struct arena *arena)
{
    struct call *c = arena_calloc(arena, 1, sizeof *c);
    size_t *order = arena_calloc(arena, rq->model->n_targets, sizeof *order);
    if (c == NULL || order == NULL) return NULL;
    c->held = evbuffer_new();
    c->timer = evtimer_new(env->loop, on_timer, c);
    sse_parser_init(&c->sse, 0);
    if (c->held == NULL || c->timer == NULL || arena_on_free(arena, release_call, c) != 0) {
        if (c->held) evbuffer_free(c->held);
        if (c->timer) event_free(c->timer);
        sse_parser_free(&c->sse);
        return NULL;
    }
    call_bind(c, env, rq, sink, ud, arena);
    c->route = rq->route;
    c->no_native = rq->translate_answers;
    c->trace_headers = rq->trace_headers;
    c->plan.order = order;
    c->info.plan = &c->plan;
    c->prompt_tokens = c->completion_tokens = c->cached_tokens = -1;
    c->engine_ms = -1;
    struct err e;
    err_clear(&e);
    if (router_plan(env->router, c->model, &c->route, &c->plan, &e) != 0)
        fail_plan(c, &e);
    else
        next_attempt(c);
    return c;
}

struct call *call_replay(const struct call_env *env, const struct call_request *rq,
                         const struct call_replay_answer *a, const struct call_sink *sink, void *ud,
                         struct arena *arena)
{
    struct call *c = arena_calloc(arena, 1, sizeof *c);
    if (c == NULL) return NULL;
    call_bind(c, env, rq, sink, ud, arena);
    c->plan.policy = "cache";
    snprintf(c->plan.reason, sizeof c->plan.reason, "%s", a->reason ? a->reason : "cache hit");
    c->finished = true; /* nothing to cancel, time out or account */
    c->info = (struct call_info){.backend = a->backend,
                                 .target_model = a->target_model,
                                 .plan = &c->plan,
                                 .first_byte_ns = clock_now_ns(),
                                 .accounted = true,
                                 .usage = a->usage,
                                 .cost_known = true,
                                 .cost_usd = 0,
                                 .cached = true,
                                 .saved_usd = a->saved_usd};
    if (!c->stream || a->body) {
        sink->body(ud, c, 200, a->body ? a->body : "{}", a->body ? a->body_len : 2);
        return c;
    }
    sink->start(ud, c, 200);
    const char *error = NULL;
    for (size_t i = 0; i < a->n_chunks && error == NULL; i++)
        if (sink->chunk(ud, c, &a->chunks[i]) < 0) error = "out of memory";
    if (error == NULL && sink->flush(ud, c) < 0) error = "the client went away";
    sink->end(ud, c, error);
    return c;
}

const struct call_info *call_info(const struct call *c)
{
    return &c->info;
}

void call_resume(struct call *c)
{
    if (c->upstream) c->env->transport->resume(c->upstream);
}

void call_cancel(struct call *c)
{
    if (c->upstream) {
        c->env->transport->cancel(c->upstream);
        c->upstream = NULL;
    }
    report(c, ROUTE_CANCELLED, -1);
    if (c->timer) evtimer_del(c->timer);
    c->backing_off = false;
    if (!c->finished) {
        c->finished = true;
        account(c);
    }
}

void call_route_header(const struct call *c, char *out, size_t cap)
{
    size_t failed = c->info.attempts ? c->info.attempts - 1 : 0;
    if (failed)
        snprintf(out, cap, "%s; %s; after %zu failed attempt%s", c->plan.policy, c->plan.reason,
                 failed, failed == 1 ? "" : "s");
    else
        snprintf(out, cap, "%s; %s", c->plan.policy, c->plan.reason);
}
