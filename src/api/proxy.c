/*
 * DESIGN
 * A `struct proxy` lives in the request's arena and walks the route plan one attempt at a
 * time. Nothing reaches the client until an attempt has produced a usable answer: for a
 * stream, the first complete SSE event of a 2xx response; otherwise the whole 2xx body
 * (checked to be JSON). Until then every retryable failure — connect error, timeout, 429,
 * 5xx, a broken or garbled response — moves on to the next target. Once bytes have been
 * sent, a failure can only end the stream with an SSE error event, never silently.
 *
 * Usage: streams are asked for include_usage upstream; the usage chunk is read for the log
 * and dropped from the client's stream unless the client asked for it.
 *
 * Translating providers (anthropic, bedrock) hand us OpenAI chunks through a sink instead
 * of SSE bytes; from there on the path is the same. Retries: a pass over the plan fails
 * over at once; when a whole pass failed, the next pass (up to retry.retries) starts after
 * an exponential backoff with full jitter, or after the upstream's Retry-After when every
 * failure was a 429 that named one (a Retry-After beyond max_retry_after_ms ends retrying).
 * One event timer per request serves both the first-byte timeout and the backoff.
 */
#include "api/proxy.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "app.h"
#include "cost/cost.h"
#include "guard/guard.h"
#include "guard/scrub.h"
#include "http/server.h"
#include "http/sse.h"
#include "obs/log.h"
#include "providers/provider.h"
#include "route/router.h"
#include "store/ledger.h"
#include "util/arena.h"
#include "util/clock.h"

#define MAX_ERROR_BODY      (64u << 10) /* we keep this much of an upstream error body */
#define MAX_ATTEMPTS_LOGGED 16

struct attempt {
    const char *backend;
    const char *model;
    long status;
    char error[160];
    bool timeout;
    long retry_after; /* seconds, from a 429; -1 when none */
    bool unfit;       /* the provider could not express the request (a 4xx at build) */
    bool auth;        /* the upstream refused our credentials (401/403) */
    char code[24];    /* the upstream's error code of a 429 ("engine_busy"), or "" */
};

struct proxy {
    struct app *app;
    struct http_request *req;
    const struct model_conf *model;
    const struct openai_request *oreq; /* the validated client request, arena */
    bool stream;
    bool client_wants_usage;
    struct route_plan plan;
    struct route_request route;
    size_t attempt;             /* index into plan.order of the current attempt */
    int round;                  /* pass over the plan: 0, then one per retry */
    size_t round_first_attempt; /* n_attempts when this pass began */
    bool attempt_live;          /* router_begin called, router_report not yet */
    struct event *timer;        /* first-byte timeout, or the backoff before a retry */
    bool backing_off;
    struct provider_request pr;        /* the current attempt's, for translation */
    struct provider_stream *translate; /* the current attempt's translator, or NULL */
    uint64_t attempt_first_byte_ns;
    struct err unfit_err; /* the first build-time 4xx, answered if every target said so */
    long chunks;          /* content chunks forwarded: an estimate when usage never came */
    struct attempt attempts[MAX_ATTEMPTS_LOGGED];
    size_t n_attempts;
    struct upstream_call *call;
    struct backend *backend;
    const struct target_conf *target;
    uint64_t attempt_start_ns;
    struct evbuffer *resp; /* non-stream answer or error body; owned */
    size_t held;           /* bytes of resp counted in app->buffered_bytes */
    enum { HOLD_OK, HOLD_TOO_LARGE, HOLD_NO_ROOM } hold; /* why on_data stopped holding */
    struct evbuffer *out;  /* stream events framed from the current upstream read; owned */
    struct sse_parser sse;
    bool committed;     /* the response head went to the client */
    bool saw_done;      /* upstream sent data: [DONE] */
    bool stream_failed; /* we aborted the upstream mid-stream */
    char stream_error[200];
    uint64_t first_byte_ns;
    long long prompt_tokens, completion_tokens, total_tokens, cached_tokens;
    bool finished;
    bool accounted;     /* account() ran: usage and cost below are final */
    struct usage usage; /* what is billed: provider counts, or an estimate */
    double cost_usd;    /* valid when cost_known */
    bool cost_known;
    const struct principal *who; /* request arena */
    char customer[128];          /* x-stratus-customer or `user`, read once */
    struct admission adm;        /* budget hold and TPM charge, settled in finish() */
};

static void next_attempt(struct proxy *p);
static void plan_exhausted(struct proxy *p);
static const struct upstream_callbacks callbacks;

/* ---- logging ------------------------------------------------------------------------ */

static double ms_since(uint64_t start_ns, uint64_t now_ns)
{
    return (double)(now_ns - start_ns) / 1e6;
}

static void log_request(const struct http_request *req, int status, const char *model,
                        const struct proxy *p, const char *error)
{
    if (!req->log) return;
    struct log_line l;
    uint64_t now = clock_now_ns();
    log_begin(&l, status >= 500 ? "warn" : "info", "request");
    log_str(&l, "id", req->request_id);
    log_str(&l, "method", req->method);
    log_str(&l, "path", req->path);
    log_str(&l, "model", model);
    log_str(&l, "backend", p && p->backend ? p->backend->conf->name : NULL);
    log_str(&l, "target_model", p && p->target ? p->target->model : NULL);
    log_int(&l, "status", status);
    log_bool(&l, "stream", p ? p->stream : false);
    log_ms(&l, "latency_ms", ms_since(req->start_ns, now));
    log_ms(&l, "ttfb_ms", p && p->first_byte_ns ? ms_since(req->start_ns, p->first_byte_ns) : -1);
    if (p && p->accounted && p->usage.prompt >= 0) {
        log_int(&l, "prompt_tokens", p->usage.prompt);
        log_int(&l, "completion_tokens", p->usage.completion);
        log_int(&l, "total_tokens", p->usage.prompt + p->usage.completion);
        log_int(&l, "cached_tokens", p->usage.cached > 0 ? p->usage.cached : 0);
        log_bool(&l, "usage_estimated", p->usage.estimated);
    } else {
        log_null(&l, "prompt_tokens");
        log_null(&l, "completion_tokens");
        log_null(&l, "total_tokens");
    }
    if (p && p->accounted && p->cost_known)
        log_double(&l, "cost_usd", p->cost_usd);
    else
        log_null(&l, "cost_usd");
    log_int(&l, "attempts", p ? (long long)p->n_attempts : 0);
    log_str(&l, "route", p ? p->plan.policy : NULL);
    log_str(&l, "route_reason", p && p->plan.reason[0] ? p->plan.reason : NULL);
    log_str(&l, "error", error);
    log_end(&l);
}

void proxy_log_simple(const struct http_request *req, int status, const char *model,
                      const char *error)
{
    log_request(req, status, model, NULL, error);
}

/* ---- helpers ------------------------------------------------------------------------ */

static void read_usage(struct proxy *p, const struct json_scan *s, int usage)
{
    long long v;
    if (!json_scan_is_object(s, usage)) return;
    int details = json_scan_get(s, usage, "prompt_tokens_details");
    if (json_scan_is_object(s, details) &&
        json_scan_integer(s, json_scan_get(s, details, "cached_tokens"), &v))
        p->cached_tokens = v;
    if (json_scan_integer(s, json_scan_get(s, usage, "prompt_tokens"), &v)) p->prompt_tokens = v;
    if (json_scan_integer(s, json_scan_get(s, usage, "completion_tokens"), &v))
        p->completion_tokens = v;
    if (json_scan_integer(s, json_scan_get(s, usage, "total_tokens"), &v))
        p->total_tokens = v;
    else if (p->prompt_tokens >= 0 && p->completion_tokens >= 0)
        p->total_tokens = p->prompt_tokens + p->completion_tokens;
}

/* Settles what this request consumed and what it cost, once. Provider counts when there are
 * any; otherwise, if a target produced something (a stream cut short, a client that left),
 * an estimate — prompt from the body's size, completion from the chunks seen — flagged as
 * such; a request no target answered consumed nothing. */
static void account(struct proxy *p)
{
    if (p->accounted) return;
    p->accounted = true;
    p->usage = (struct usage){.prompt = -1, .completion = -1, .cached = -1};
    if (p->prompt_tokens >= 0 || p->completion_tokens >= 0) {
        p->usage.prompt = p->prompt_tokens > 0 ? p->prompt_tokens : 0;
        p->usage.completion = p->completion_tokens > 0 ? p->completion_tokens : 0;
        p->usage.cached = p->cached_tokens;
    } else if (p->committed || p->chunks > 0 || (p->attempt_live && p->first_byte_ns == 0)) {
        p->usage.prompt = (long long)(p->oreq->scan.len / 4);
        p->usage.completion = p->chunks; /* ~one token per content chunk */
        p->usage.estimated = true;
    } else {
        p->cost_known = true; /* nothing was served, nothing is billed */
        p->cost_usd = 0;
        return;
    }
    struct price price;
    if (p->target && cost_target_price(p->target, p->backend, &price)) {
        p->cost_known = true;
        p->cost_usd = cost_usd(&price, &p->usage);
    }
}

static void add_cost_header(struct proxy *p)
{
    char v[40];
    if (p->cost_known)
        snprintf(v, sizeof v, "%.8f", p->cost_usd);
    else
        snprintf(v, sizeof v, "unknown");
    http_add_header(p->req, "x-stratus-cost-usd", v);
}

/* Scans an upstream JSON document into the request arena. */
static bool scan_json(struct proxy *p, const char *bytes, size_t len, struct json_scan *s)
{
    bool oom;
    return json_scan_parse(s, bytes, len, p->req->arena, &oom) == 0 && json_scan_is_object(s, 0);
}

static void add_target_headers(struct proxy *p)
{
    char route[400];
    size_t failed = p->n_attempts ? p->n_attempts - 1 : 0;
    if (failed)
        snprintf(route, sizeof route, "%s; %s; after %zu failed attempt%s", p->plan.policy,
                 p->plan.reason, failed, failed == 1 ? "" : "s");
    else
        snprintf(route, sizeof route, "%s; %s", p->plan.policy, p->plan.reason);
    http_add_header(p->req, "x-stratus-backend", p->backend->conf->name);
    http_add_header(p->req, "x-stratus-model", p->target->model);
    http_add_header(p->req, "x-stratus-route", route);
}

/* Tells the router how the current attempt ended; once per attempt. */
static void report(struct proxy *p, enum route_outcome outcome, long retry_after)
{
    if (!p->attempt_live) return;
    p->attempt_live = false;
    if (p->timer && !p->backing_off) evtimer_del(p->timer);
    uint64_t ttfb_us =
        p->attempt_first_byte_ns ? (p->attempt_first_byte_ns - p->attempt_start_ns) / 1000 : 0;
    router_report(p->app->router, p->model, p->plan.order[p->attempt], outcome, ttfb_us,
                  retry_after);
}

static void copy_field(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

/* The customer a request is for: x-stratus-customer, else the OpenAI `user` field. */
static void customer_of(const struct http_request *req, const struct openai_request *oreq,
                        char *out, size_t cap)
{
    const char *h = http_request_header(req, "x-stratus-customer");
    out[0] = '\0';
    if (h) {
        copy_field(out, cap, h);
        return;
    }
    if (oreq == NULL) return;
    int u = json_scan_get(&oreq->scan, 0, "user");
    if (!json_scan_is_string(&oreq->scan, u)) return;
    const jsmntok_t *t = &oreq->scan.tok[u];
    json_t *v = json_loadb(oreq->scan.js + t->start - 1, (size_t)(t->end - t->start) + 2,
                           JSON_DECODE_ANY, NULL);
    copy_field(out, cap, json_string_value(v));
    json_decref(v);
}

static int64_t wall_ms_at(uint64_t mono_ns)
{
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    int64_t now_ms = (int64_t)wall.tv_sec * 1000 + wall.tv_nsec / 1000000;
    return now_ms - (int64_t)((clock_now_ns() - mono_ns) / 1000000);
}

static void principal_fields(const struct principal *who, struct ledger_row *r)
{
    if (who == NULL) return;
    if (who->kind == PRINCIPAL_KEY) {
        copy_field(r->key_id, sizeof r->key_id, who->key.id);
        copy_field(r->team, sizeof r->team, who->key.team);
    } else if (who->kind == PRINCIPAL_MASTER) {
        copy_field(r->key_id, sizeof r->key_id, "master");
    }
}

void proxy_record(struct app *app, const struct http_request *req, const struct principal *who,
                  const struct openai_request *oreq, const char *model, int status)
{
    if (app->ledger == NULL) return;
    struct ledger_row r = {.status = status,
                           .prompt_tokens = -1,
                           .completion_tokens = -1,
                           .cached_tokens = -1,
                           .cost_known = true,
                           .ttft_ms = -1};
    r.ts_ms = wall_ms_at(req->start_ns);
    copy_field(r.request_id, sizeof r.request_id, req->request_id);
    copy_field(r.model, sizeof r.model, model);
    const char *path = strncmp(req->path, "/v1/", 4) == 0 ? req->path + 4 : req->path;
    copy_field(r.endpoint, sizeof r.endpoint, oreq ? openai_endpoint_path(oreq->endpoint) : path);
    customer_of(req, oreq, r.customer, sizeof r.customer);
    principal_fields(who, &r);
    r.latency_ms = (double)(clock_now_ns() - req->start_ns) / 1e6;
    ledger_append(app->ledger, &r);
}

/* The request's ledger row: what it asked for, where it went, what it cost. */
static void record(struct proxy *p, int status)
{
    if (p->app->ledger == NULL) return;
    const struct http_request *req = p->req;
    struct ledger_row r = {.status = status};
    r.ts_ms = wall_ms_at(req->start_ns);
    copy_field(r.request_id, sizeof r.request_id, req->request_id);
    copy_field(r.model, sizeof r.model, p->model->name);
    copy_field(r.backend, sizeof r.backend,
               p->backend && p->n_attempts ? p->backend->conf->name : NULL);
    copy_field(r.target_model, sizeof r.target_model, p->target ? p->target->model : NULL);
    copy_field(r.endpoint, sizeof r.endpoint, openai_endpoint_path(p->oreq->endpoint));
    copy_field(r.customer, sizeof r.customer, p->customer);
    principal_fields(p->who, &r);
    r.stream = p->stream;
    r.prompt_tokens = p->usage.prompt;
    r.completion_tokens = p->usage.completion;
    r.cached_tokens = p->usage.cached;
    r.estimated = p->usage.estimated;
    r.cost_known = p->cost_known;
    r.cost_usd = p->cost_usd;
    uint64_t now = clock_now_ns();
    r.latency_ms = (double)(now - req->start_ns) / 1e6;
    r.ttft_ms = p->first_byte_ns ? (double)(p->first_byte_ns - req->start_ns) / 1e6 : -1;
    snprintf(r.route, sizeof r.route, "%s; %s", p->plan.policy ? p->plan.policy : "",
             p->plan.reason);
    ledger_append(p->app->ledger, &r);
}

static void finish(struct proxy *p, int status, const char *error)
{
    account(p);
    long long tokens = p->usage.prompt >= 0
                           ? p->usage.prompt + (p->usage.completion > 0 ? p->usage.completion : 0)
                           : -1;
    guard_settle(p->app->guard, &p->adm, p->cost_known, p->cost_usd, tokens);
    record(p, status);
    p->finished = true;
    log_request(p->req, status, p->model->name, p, error);
}

static struct attempt *current_attempt(struct proxy *p)
{
    size_t i = p->n_attempts ? p->n_attempts - 1 : 0;
    return &p->attempts[i < MAX_ATTEMPTS_LOGGED ? i : MAX_ATTEMPTS_LOGGED - 1];
}

/* Records why the current attempt failed and moves on. */
static void attempt_failed(struct proxy *p, long status, bool timeout, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void attempt_failed(struct proxy *p, long status, bool timeout, const char *fmt, ...)
{
    struct attempt *a = current_attempt(p);
    a->status = status;
    a->timeout = timeout;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->error, sizeof a->error, fmt, ap);
    va_end(ap);
    secrets_scrub_str(p->app->cfg, a->error); /* upstream words may quote our credentials */
    report(p, ROUTE_FAILED, status == 429 ? a->retry_after : -1);
    if (p->call) { /* a timeout: the transfer is still running */
        upstream_cancel(p->call);
    }
    p->call = NULL;
    p->attempt++;
    next_attempt(p);
}

/* How many different targets the attempts went to (a retry may revisit one). */
static size_t distinct_targets(const struct proxy *p)
{
    size_t n = 0, logged = p->n_attempts < MAX_ATTEMPTS_LOGGED ? p->n_attempts : MAX_ATTEMPTS_LOGGED;
    for (size_t i = 0; i < logged; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = p->attempts[j].backend == p->attempts[i].backend &&
                   p->attempts[j].model == p->attempts[i].model;
        n += !seen;
    }
    return p->n_attempts > logged ? n + (p->n_attempts - logged) : n;
}

static void respond_all_failed(struct proxy *p)
{
    /* No target could even express the request: that is the client's 4xx, not a 502. */
    bool all_unfit = p->n_attempts > 0 && p->n_attempts <= MAX_ATTEMPTS_LOGGED;
    for (size_t i = 0; all_unfit && i < p->n_attempts; i++) all_unfit = p->attempts[i].unfit;
    if (all_unfit) {
        finish(p, p->unfit_err.status, p->unfit_err.msg);
        http_respond_error(p->req, &p->unfit_err);
        return;
    }
    bool timeout = p->n_attempts > 0 && current_attempt(p)->timeout;
    int status = timeout ? 504 : 502;
    /* Every target said "too many requests": so do we, with the soonest Retry-After, so
     * clients back off instead of treating a busy fleet as a broken one. */
    bool all_busy = p->n_attempts > 0 && p->n_attempts <= MAX_ATTEMPTS_LOGGED;
    long retry = -1;
    for (size_t i = 0; all_busy && i < p->n_attempts; i++) {
        all_busy = p->attempts[i].status == 429;
        long r = p->attempts[i].retry_after;
        if (r >= 0 && (retry < 0 || r < retry)) retry = r;
    }
    const char *type = "upstream_error", *code = timeout ? "upstream_timeout" : "upstream_failed";
    bool all_auth = p->n_attempts > 0 && p->n_attempts <= MAX_ATTEMPTS_LOGGED;
    for (size_t i = 0; all_auth && i < p->n_attempts; i++) all_auth = p->attempts[i].auth;
    if (all_auth) code = "upstream_auth_failed";
    bool engines_busy = all_busy;
    for (size_t i = 0; engines_busy && i < p->n_attempts; i++)
        engines_busy = strcmp(p->attempts[i].code, "engine_busy") == 0;
    if (all_busy) {
        status = 429;
        type = "rate_limit_error";
        code = engines_busy ? "engine_busy" : "upstream_rate_limited";
        char ra[24];
        snprintf(ra, sizeof ra, "%ld", retry >= 0 ? retry : 1);
        http_add_header(p->req, "Retry-After", ra);
    }
    json_t *attempts = json_array();
    char summary[400];
    size_t targets = distinct_targets(p), n;
    if (targets == p->n_attempts)
        n = (size_t)snprintf(summary, sizeof summary, "all %zu target%s failed: ", targets,
                             targets == 1 ? "" : "s");
    else
        n = (size_t)snprintf(summary, sizeof summary, "all %zu attempts on %zu target%s failed: ",
                             p->n_attempts, targets, targets == 1 ? "" : "s");
    for (size_t i = 0; i < p->n_attempts && i < MAX_ATTEMPTS_LOGGED; i++) {
        const struct attempt *a = &p->attempts[i];
        json_t *o = json_pack("{s:s, s:s, s:s}", "backend", a->backend, "model", a->model, "error",
                              a->error);
        if (a->status)
            json_object_set_new(o, "status", json_integer(a->status));
        else
            json_object_set_new(o, "status", json_null());
        json_array_append_new(attempts, o);
        if (n < sizeof summary)
            n += (size_t)snprintf(summary + n, sizeof summary - n, "%s%s: %s", i ? "; " : "",
                                  a->backend, a->error);
    }
    json_t *doc = json_pack("{s:{s:s, s:s, s:s, s:n, s:o}}", "error", "message", summary, "type",
                            type, "code", code, "param", "attempts", attempts);
    char *s = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    finish(p, status, summary);
    if (s == NULL) {
        struct err e;
        err_set(&e, status, type, code, "%s", summary);
        http_respond_error(p->req, &e);
        return;
    }
    http_respond(p->req, status, "application/json", s, strlen(s));
    free(s);
}

/* ---- streaming ---------------------------------------------------------------------- */

static void commit_stream(struct proxy *p)
{
    if (p->committed) return;
    p->committed = true;
    p->first_byte_ns = clock_now_ns();
    add_target_headers(p);
    http_stream_start(p->req, 200, "text/event-stream");
}

/* Queues an event for the client. Events from one upstream read leave together, as one
 * chunk, when the read has been framed (flush_events). */
static int forward(struct proxy *p, const char *ev, size_t len)
{
    if (evbuffer_add(p->out, ev, len) != 0 || evbuffer_add(p->out, "\n\n", 2) != 0) return -1;
    return 0;
}

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

/* One OpenAI chunk's data (`ev` is the whole raw event when it came as SSE, else NULL):
 * queued for the client, or read for usage and dropped. Returns 0, or -1 (out of memory). */
static int on_chunk(struct proxy *p, const char *data, size_t dlen, const char *ev, size_t len)
{
    if (dlen == 6 && memcmp(data, "[DONE]", 6) == 0) {
        p->saw_done = true;
        return forward(p, "data: [DONE]", 12);
    }
    /* A pass-through event is checked before it is forwarded: garbage from the upstream
     * must end the stream truthfully, not reach the client as if it were a chunk. */
    if (ev && !json_scan_check(data, dlen)) {
        snprintf(p->stream_error, sizeof p->stream_error, "upstream '%s' sent an event that is not JSON",
                 p->backend->conf->name);
        return -1;
    }
    if (has_content(data, dlen)) p->chunks++;
    /* Only chunks that mention usage are parsed; content chunks pass through untouched. */
    struct json_scan chunk;
    if (has_usage_object(data, dlen) && scan_json(p, data, dlen, &chunk)) {
        int usage = json_scan_get(&chunk, 0, "usage");
        if (json_scan_is_object(&chunk, usage)) {
            read_usage(p, &chunk, usage);
            int choices = json_scan_get(&chunk, 0, "choices");
            bool empty =
                !json_scan_is_array(&chunk, choices) || json_scan_size(&chunk, choices) == 0;
            if (empty && !p->client_wants_usage) return 0;
            if (p->client_wants_usage) {
                /* The stream's cost travels in its usage chunk (headers left long ago). */
                account(p);
                char cost[48];
                if (p->cost_known)
                    snprintf(cost, sizeof cost, "\"cost_usd\":%.8f,", p->cost_usd);
                else
                    snprintf(cost, sizeof cost, "\"cost_usd\":null,");
                size_t at = (size_t)chunk.tok[usage].start + 1; /* just inside its '{' */
                bool empty_usage = json_scan_size(&chunk, usage) == 0;
                if (empty_usage) cost[strlen(cost) - 1] = '\0';
                if (evbuffer_add(p->out, "data: ", 6) != 0 || evbuffer_add(p->out, data, at) != 0 ||
                    evbuffer_add(p->out, cost, strlen(cost)) != 0)
                    return -1;
                return forward(p, data + at, dlen - at);
            }
        }
    }
    if (ev) return forward(p, ev, len);
    if (evbuffer_add(p->out, "data: ", 6) != 0) return -1;
    return forward(p, data, dlen);
}

/* One upstream SSE event from an OpenAI-speaking provider. */
static int on_event(void *ud, const char *ev, size_t len)
{
    struct proxy *p = ud;
    const char *data;
    size_t dlen;
    int lines = sse_event_data(&p->sse, ev, len, &data, &dlen);
    if (lines < 0) return -1;
    if (lines == 0) return 0; /* comments and keep-alives carry nothing for the client */
    return on_chunk(p, data, dlen, ev, len);
}

/* One chunk from a translating provider. */
static int on_translated_chunk(void *ud, const char *json, size_t len)
{
    return on_chunk(ud, json, len, NULL, 0);
}

/* Sends what the last upstream read produced. @return 0, 1 (client slow), -1 (gone). */
static int flush_events(struct proxy *p)
{
    size_t len = evbuffer_get_length(p->out);
    if (len == 0) return 0;
    commit_stream(p);
    int rc = http_stream_write(p->req, (const char *)evbuffer_pullup(p->out, -1), len);
    evbuffer_drain(p->out, len);
    return rc;
}

static void end_stream_with_error(struct proxy *p, const char *message)
{
    char scrubbed[300], esc[400], line[600];
    snprintf(scrubbed, sizeof scrubbed, "%s", message);
    secrets_scrub_str(p->app->cfg, scrubbed);
    message = scrubbed;
    json_escape(esc, sizeof esc, message, strlen(message));
    int n = snprintf(line, sizeof line,
                     "data: {\"error\":{\"message\":\"%s\",\"type\":\"upstream_error\","
                     "\"code\":\"stream_interrupted\",\"param\":null}}\n\n",
                     esc);
    http_stream_write(p->req, line, (size_t)n);
    http_stream_end(p->req);
    finish(p, 200, message);
}

/* ---- upstream callbacks ------------------------------------------------------------- */

/* Gives back what this attempt's held answer counted against limits.max_buffered_bytes. */
static void release_held(struct proxy *p)
{
    p->app->buffered_bytes -= p->held;
    p->held = 0;
    if (p->resp) evbuffer_drain(p->resp, evbuffer_get_length(p->resp));
}

/* Holds a non-stream answer (or an error body) whole, within its own cap and the process's
 * budget for held answers. @return 0, or -1 to stop the transfer (p->hold says why). */
static int hold(struct proxy *p, long status, const char *data, size_t n)
{
    const struct limits_conf *lim = &p->app->cfg->limits;
    bool ok = status >= 200 && status < 300;
    size_t have = evbuffer_get_length(p->resp);
    if (!ok && have + n > MAX_ERROR_BODY) {
        if (have >= MAX_ERROR_BODY) return 0; /* error bodies: keep the head, drop the rest */
        n = MAX_ERROR_BODY - have;
    }
    if (ok && have + n > lim->max_response_bytes) {
        p->hold = HOLD_TOO_LARGE;
        snprintf(p->stream_error, sizeof p->stream_error,
                 "upstream answer exceeds limits.max_response_bytes (%zu bytes)",
                 lim->max_response_bytes);
        return -1;
    }
    if (p->app->buffered_bytes + n > lim->max_buffered_bytes) {
        p->hold = HOLD_NO_ROOM;
        snprintf(p->stream_error, sizeof p->stream_error,
                 "the gateway holds limits.max_buffered_bytes (%zu bytes) of answers already",
                 lim->max_buffered_bytes);
        return -1;
    }
    if (evbuffer_add(p->resp, data, n) != 0) {
        snprintf(p->stream_error, sizeof p->stream_error, "out of memory");
        return -1;
    }
    p->held += n;
    p->app->buffered_bytes += n;
    return 0;
}

static int on_data(struct upstream_call *call, const char *data, size_t n, void *ud)
{
    struct proxy *p = ud;
    long status = upstream_call_status(call);
    if (p->attempt_first_byte_ns == 0) {
        p->attempt_first_byte_ns = clock_now_ns();
        if (p->timer) evtimer_del(p->timer); /* the first-byte timeout is met */
    }
    if (status < 200 || status >= 300 || !p->stream) return hold(p, status, data, n);
    struct err e;
    err_clear(&e);
    int rc;
    if (p->translate) {
        rc = p->backend->ops->stream_feed(p->translate, data, n, on_translated_chunk, p, &e);
        if (rc == 0 && !p->saw_done && p->backend->ops->stream_complete(p->translate)) {
            p->saw_done = true;
            rc = forward(p, "data: [DONE]", 12);
        }
    } else {
        rc = sse_parser_feed(&p->sse, data, n, on_event, p, &e);
    }
    int sent = flush_events(p); /* what was framed before a failure still goes out */
    if (rc != 0) {
        if (p->stream_error[0] == '\0') /* on_chunk may have said why already */
            snprintf(p->stream_error, sizeof p->stream_error, "%s",
                     e.msg[0] ? e.msg : "out of memory");
        return -1;
    }
    return sent < 0 ? -1 : sent;
}

static void on_client_drain(struct http_request *req, void *ud)
{
    struct proxy *p = ud;
    (void)req;
    if (p->call) upstream_resume(p->call);
}

static void on_client_abort(struct http_request *req, void *ud)
{
    struct proxy *p = ud;
    (void)req;
    if (p->call) {
        upstream_cancel(p->call);
        p->call = NULL;
    }
    report(p, ROUTE_CANCELLED, -1);
    if (p->timer) evtimer_del(p->timer);
    p->backing_off = false;
    if (!p->finished) finish(p, 499, "client closed the connection");
}

static void deliver_json(struct proxy *p, long status)
{
    size_t len = evbuffer_get_length(p->resp);
    const char *bytes = len ? (const char *)evbuffer_pullup(p->resp, -1) : "";
    const struct provider_ops *ops = p->backend->ops;
    if (ops->translate_response) {
        struct err e;
        err_clear(&e);
        char *out = NULL;
        size_t out_len = 0;
        if (ops->translate_response(&p->pr, bytes, len, p->req->arena, &out, &out_len, &e) != 0) {
            attempt_failed(p, status, false, "HTTP %ld: %s", status, e.msg);
            return;
        }
        bytes = out;
        len = out_len;
    }
    struct json_scan doc;
    if (!scan_json(p, bytes, len, &doc)) {
        attempt_failed(p, status, false, "HTTP %ld with a body that is not a JSON object", status);
        return;
    }
    read_usage(p, &doc, json_scan_get(&doc, 0, "usage"));
    report(p, ROUTE_OK, -1);
    account(p);
    add_cost_header(p);
    p->first_byte_ns = clock_now_ns();
    add_target_headers(p);
    finish(p, (int)status, NULL);
    http_respond(p->req, (int)status, "application/json", bytes, len);
}

/* A 4xx other than 429: the request itself is wrong; every target would say the same. */
static void pass_through_error(struct proxy *p, long status)
{
    size_t len = evbuffer_get_length(p->resp);
    char *bytes = len ? (char *)evbuffer_pullup(p->resp, -1) : "";
    secrets_scrub(p->app->cfg, bytes, len); /* the body goes to the client and the log */
    json_t *doc = p->backend->ops->error_message ? NULL : json_loadb(bytes, len, 0, NULL);
    report(p, ROUTE_REJECTED, -1);
    add_target_headers(p);
    if (p->backend->ops->error_message) {
        /* Another provider's error shape: re-told as an OpenAI error, its words kept. */
        char msg[400];
        p->backend->ops->error_message(bytes, len, msg, sizeof msg);
        struct err e;
        err_set(&e, (int)status, "invalid_request_error", "upstream_rejected", "backend '%s' rejected the request (HTTP %ld): %s",
                p->backend->conf->name, status, msg[0] ? msg : "no message");
        finish(p, (int)status, e.msg);
        http_respond_error(p->req, &e);
    } else if (json_is_object(json_object_get(doc, "error"))) {
        const char *msg =
            json_string_value(json_object_get(json_object_get(doc, "error"), "message"));
        finish(p, (int)status, msg ? msg : "upstream rejected the request");
        http_respond(p->req, (int)status, "application/json", bytes, len);
    } else {
        struct err e;
        err_set(&e, (int)status, "invalid_request_error", "upstream_rejected",
                "backend '%s' rejected the request with HTTP %ld", p->backend->conf->name, status);
        finish(p, (int)status, e.msg);
        http_respond_error(p->req, &e);
    }
    json_decref(doc);
}

/* The upstream's own words about a failure, from the held error body: ": <message>" (or ""),
 * bounded, and its OpenAI-style error.code when it has one. They help whoever reads the
 * summary; the message is scrubbed later with the rest of the attempt's text. */
static void upstream_error(struct proxy *p, char *detail, size_t cap, char *code, size_t code_cap)
{
    size_t len = evbuffer_get_length(p->resp);
    const char *body = len ? (const char *)evbuffer_pullup(p->resp, -1) : "";
    detail[0] = code[0] = '\0';
    if (p->backend->ops->error_message) {
        char msg[110];
        p->backend->ops->error_message(body, len, msg, sizeof msg);
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

/* An answer the gateway would not hold. Too large: another target or a retry would only
 * download the same size again, so this ends the request (502). No room: the gateway is
 * saturated right now, not the upstream; the client may come back shortly (503). */
static void respond_unheld(struct proxy *p, long status)
{
    struct err e;
    current_attempt(p)->status = status;
    snprintf(current_attempt(p)->error, sizeof current_attempt(p)->error, "%s", p->stream_error);
    report(p, p->hold == HOLD_TOO_LARGE ? ROUTE_REJECTED : ROUTE_CANCELLED, -1);
    release_held(p);
    if (p->hold == HOLD_TOO_LARGE) {
        err_set(&e, 502, "upstream_error", "upstream_response_too_large",
                "backend '%s' answered more than limits.max_response_bytes (%zu bytes)",
                p->backend->conf->name, p->app->cfg->limits.max_response_bytes);
    } else {
        err_set(&e, 503, "server_error", "gateway_overloaded",
                "the gateway is holding its limit of buffered answers "
                "(limits.max_buffered_bytes = %zu bytes); retry shortly",
                p->app->cfg->limits.max_buffered_bytes);
        http_add_header(p->req, "Retry-After", "1");
    }
    finish(p, e.status, e.msg);
    http_respond_error(p->req, &e);
}

static void on_done(enum upstream_result result, long status, long retry_after, const char *message,
                    void *ud)
{
    struct proxy *p = ud;
    p->call = NULL;
    if (p->committed) {
        /* Mid-stream: the client already has a 200; end it truthfully. */
        size_t pending = p->translate ? p->backend->ops->stream_pending(p->translate)
                                      : sse_parser_pending(&p->sse);
        if (result == UPSTREAM_OK && p->saw_done && pending == 0) {
            report(p, ROUTE_OK, -1);
            http_stream_end(p->req);
            finish(p, 200, NULL);
            return;
        }
        char why[300];
        if (result == UPSTREAM_OK)
            snprintf(why, sizeof why, "upstream '%s' ended the stream before [DONE]",
                     p->backend->conf->name);
        else if (result == UPSTREAM_ABORTED)
            snprintf(why, sizeof why, "stream from '%s' aborted: %s", p->backend->conf->name,
                     p->stream_error);
        else
            snprintf(why, sizeof why, "stream from '%s' broke: %s", p->backend->conf->name,
                     message);
        report(p, ROUTE_FAILED, -1);
        end_stream_with_error(p, why);
        return;
    }
    switch (result) {
    case UPSTREAM_CONNECT:
        attempt_failed(p, 0, false, "connect failed: %s", message);
        return;
    case UPSTREAM_TIMEOUT:
        attempt_failed(p, status, true, "timed out after %ld ms", p->backend->conf->timeout_ms);
        return;
    case UPSTREAM_BROKEN:
        attempt_failed(p, status, false, "connection broke: %s", message);
        return;
    case UPSTREAM_ABORTED:
        if (p->hold != HOLD_OK) {
            respond_unheld(p, status);
            return;
        }
        attempt_failed(p, status, false, "%s", p->stream_error);
        return;
    case UPSTREAM_OK:
        break;
    }
    char detail[120], code[sizeof current_attempt(p)->code];
    if (status == 429) {
        upstream_error(p, detail, sizeof detail, code, sizeof code);
        if (p->n_attempts <= MAX_ATTEMPTS_LOGGED) {
            current_attempt(p)->retry_after = retry_after;
            copy_field(current_attempt(p)->code, sizeof current_attempt(p)->code, code);
        }
        if (retry_after >= 0)
            attempt_failed(p, status, false, "HTTP 429 (rate limited, retry after %ld s)%s",
                           retry_after, detail);
        else
            attempt_failed(p, status, false, "HTTP 429 (rate limited)%s", detail);
        return;
    }
    if (status >= 500 || status < 200) {
        upstream_error(p, detail, sizeof detail, code, sizeof code);
        attempt_failed(p, status, false, "HTTP %ld%s", status, detail);
        return;
    }
    if (status == 401 || status == 403) {
        /* The upstream refused *our* credentials: the client's key is not at fault, and the
         * body may echo what we sent, so it is never repeated. Another target may still
         * serve; the breaker keeps this one aside. */
        if (p->n_attempts <= MAX_ATTEMPTS_LOGGED) current_attempt(p)->auth = true;
        attempt_failed(p, status, false,
                       "backend '%s' refused the gateway's credentials (HTTP %ld); check its "
                       "api_key",
                       p->backend->conf->name, status);
        return;
    }
    if (status >= 300) {
        pass_through_error(p, status);
        return;
    }
    if (!p->stream) {
        deliver_json(p, status);
        return;
    }
    /* A 2xx stream that ended before any complete event: nothing was sent, so fail over. */
    size_t pending =
        p->translate ? p->backend->ops->stream_pending(p->translate) : sse_parser_pending(&p->sse);
    attempt_failed(p, status, false, "stream ended before any event%s",
                   pending ? " (garbled data)" : "");
}

static const struct upstream_callbacks callbacks = {
    .on_data = on_data,
    .on_done = on_done,
};

/* ---- attempts ----------------------------------------------------------------------- */

/* No target can take the request. A 503 (every engine loading or down) is temporary. */
static void refuse_plan(struct proxy *p, const struct err *e)
{
    if (e->status == 503) http_add_header(p->req, "Retry-After", "1");
    finish(p, e->status, e->msg);
    http_respond_error(p->req, e);
}

static void on_timer(evutil_socket_t fd, short what, void *ud)
{
    struct proxy *p = ud;
    (void)fd, (void)what;
    if (p->backing_off) {
        p->backing_off = false;
        struct err e;
        err_clear(&e);
        if (router_plan(p->app->router, p->model, &p->route, &p->plan, &e) != 0) {
            refuse_plan(p, &e);
            return;
        }
        p->attempt = 0;
        p->round_first_attempt = p->n_attempts;
        next_attempt(p);
        return;
    }
    if (p->call && p->attempt_first_byte_ns == 0)
        attempt_failed(p, 0, true, "no first byte within %ld ms",
                       p->backend->conf->first_byte_timeout_ms);
}

static void next_attempt(struct proxy *p)
{
    while (p->attempt < p->plan.n) {
        struct err e;
        err_clear(&e);
        const struct target_conf *t = &p->model->targets[p->plan.order[p->attempt]];
        p->target = t;
        p->backend = app_backend(p->app, t->backend_index);
        if (p->n_attempts < MAX_ATTEMPTS_LOGGED) {
            p->attempts[p->n_attempts] = (struct attempt){
                .backend = p->backend->conf->name, .model = t->model, .retry_after = -1};
        }
        p->n_attempts++;
        release_held(p);
        p->hold = HOLD_OK;
        evbuffer_drain(p->out, evbuffer_get_length(p->out));
        sse_parser_reset(&p->sse);
        p->saw_done = false;
        p->stream_error[0] = '\0';
        p->attempt_first_byte_ns = 0;
        p->translate = NULL;
        p->pr = (struct provider_request){.request = p->oreq, .target_model = t->model};
        struct upstream_request ur;
        p->attempt_start_ns = clock_now_ns();
        const struct provider_ops *ops = p->backend->ops;
        bool built = ops->build(p->backend, &p->pr, p->req->arena, &ur, &e) == 0;
        if (built && p->stream && ops->stream_open &&
            (p->translate = ops->stream_open(&p->pr, p->req->arena)) == NULL) {
            err_oom(&e);
            built = false;
        }
        if (built && (p->call = upstream_start(p->app->upstream, &ur, &callbacks, p, &e)) != NULL) {
            router_begin(p->app->router, p->model, p->plan.order[p->attempt]);
            p->attempt_live = true;
            long fbt = p->backend->conf->first_byte_timeout_ms;
            if (fbt > 0 && p->timer) {
                struct timeval tv = {fbt / 1000, (fbt % 1000) * 1000};
                evtimer_add(p->timer, &tv);
            }
            return;
        }
        struct attempt *a = current_attempt(p);
        snprintf(a->error, sizeof a->error, "%s", e.msg);
        if (e.status >= 400 && e.status < 500) {
            a->unfit = true;
            a->status = e.status;
            if (p->unfit_err.status == 0) p->unfit_err = e;
        }
        p->attempt++;
    }
    plan_exhausted(p);
}

/* Every target of this pass failed: retry after a backoff, or give the client the news. */
static void plan_exhausted(struct proxy *p)
{
    const struct retry_conf *rc = &p->model->retry;
    size_t first = p->round_first_attempt, last = p->n_attempts;
    bool any_retryable = false, all_429_with_wait = last > first;
    long wait_s = -1;
    for (size_t i = first; i < last && i < MAX_ATTEMPTS_LOGGED; i++) {
        const struct attempt *a = &p->attempts[i];
        if (!a->unfit) any_retryable = true;
        if (a->status != 429 || a->retry_after < 0)
            all_429_with_wait = false;
        else if (wait_s < 0 || a->retry_after < wait_s)
            wait_s = a->retry_after;
    }
    if (last >= MAX_ATTEMPTS_LOGGED) all_429_with_wait = false, any_retryable = false;
    if (p->round >= rc->retries || !any_retryable || p->timer == NULL ||
        (all_429_with_wait && wait_s * 1000 > rc->max_retry_after_ms)) {
        respond_all_failed(p);
        return;
    }
    /* Full jitter: uniform in [0, min(cap, base * 2^round)]. */
    long ceiling = rc->backoff_ms << (p->round < 20 ? p->round : 20);
    if (ceiling > rc->max_backoff_ms || ceiling < 0) ceiling = rc->max_backoff_ms;
    long delay = ceiling > 0 ? (long)(clock_now_ns() % (uint64_t)(ceiling + 1)) : 0;
    if (all_429_with_wait && wait_s * 1000 > delay) delay = wait_s * 1000;
    p->round++;
    p->backing_off = true;
    struct timeval tv = {delay / 1000, (delay % 1000) * 1000};
    evtimer_add(p->timer, &tv);
}

static void release_proxy(void *ud)
{
    struct proxy *p = ud;
    if (p->call) upstream_cancel(p->call);
    report(p, ROUTE_CANCELLED, -1);
    guard_cancel(p->app->guard, &p->adm);
    if (p->timer) event_free(p->timer);
    release_held(p);
    if (p->resp) evbuffer_free(p->resp);
    if (p->out) evbuffer_free(p->out);
    sse_parser_free(&p->sse);
}

/* Admission's answer (at once, or when Redis replies): route and go, or refuse. */
static void on_admitted(void *ud, int rc, const struct err *refusal)
{
    struct proxy *p = ud;
    struct err e;
    err_clear(&e);
    if (p->finished) return; /* the client left while Redis was asked */
    if (rc != 0) {
        p->finished = true;
        proxy_record(p->app, p->req, p->who, p->oreq, p->model->name, refusal->status);
        log_request(p->req, refusal->status, p->model->name, NULL, refusal->msg);
        http_respond_error(p->req, refusal);
        return;
    }
    p->route.budget = p->adm.mode;
    p->route.budget_why = p->adm.why;
    if (router_plan(p->app->router, p->model, &p->route, &p->plan, &e) != 0) {
        refuse_plan(p, &e);
        return;
    }
    next_attempt(p);
}

/* The most this request can cost on any target of the group: what a budget reserves. */
static double worst_case_cost(struct app *app, const struct model_conf *m, long prompt, long output)
{
    double worst = 0;
    for (size_t i = 0; i < m->n_targets; i++) {
        struct price price;
        const struct target_conf *t = &m->targets[i];
        if (!cost_target_price(t, app_backend(app, t->backend_index), &price)) continue;
        struct usage u = {.prompt = prompt, .completion = output, .cached = -1};
        double usd = cost_usd(&price, &u);
        if (usd > worst) worst = usd;
    }
    return worst;
}

void proxy_start(struct app *app, struct http_request *req, const struct model_conf *model,
                 const struct openai_request *oreq, const struct principal *who)
{
    struct arena *a = req->arena;
    struct proxy *p = arena_calloc(a, 1, sizeof *p);
    size_t *order = arena_calloc(a, model->n_targets, sizeof *order);
    struct evbuffer *resp = evbuffer_new(), *out = evbuffer_new();
    struct event *timer = p ? evtimer_new(app->loop, on_timer, p) : NULL;
    struct err e;
    err_clear(&e);
    if (p == NULL || order == NULL || resp == NULL || out == NULL || timer == NULL ||
        arena_on_free(a, release_proxy, p) != 0) {
        if (resp) evbuffer_free(resp);
        if (out) evbuffer_free(out);
        if (timer) event_free(timer);
        err_oom(&e);
        proxy_log_simple(req, 500, model->name, e.msg);
        http_respond_error(req, &e);
        return;
    }
    p->app = app;
    p->req = req;
    p->model = model;
    p->oreq = oreq;
    p->who = who;
    p->resp = resp;
    p->out = out;
    p->timer = timer;
    p->prompt_tokens = p->completion_tokens = p->total_tokens = p->cached_tokens = -1;
    sse_parser_init(&p->sse, 0);
    p->stream = oreq->stream;
    p->client_wants_usage = oreq->want_usage;
    p->plan.order = order;
    long long max_tokens = 0;
    const struct json_scan *s = &oreq->scan;
    if (!json_scan_integer(s, json_scan_get(s, 0, "max_completion_tokens"), &max_tokens))
        json_scan_integer(s, json_scan_get(s, 0, "max_tokens"), &max_tokens);
    p->route = (struct route_request){
        .endpoint = oreq->endpoint,
        .prompt_tokens = (long)(s->len / 4), /* ~4 bytes a token: good enough to rank */
        .output_tokens = max_tokens > 0 ? (long)max_tokens : model->expected_output_tokens,
    };
    customer_of(req, oreq, p->customer, sizeof p->customer);
    double reserve = worst_case_cost(app, model, p->route.prompt_tokens, p->route.output_tokens);
    http_request_set_callbacks(req, on_client_abort, on_client_drain, p);
    guard_admit(app->guard, req, who, model, p->customer, p->route.prompt_tokens,
                p->route.output_tokens, reserve, &p->adm, on_admitted, p);
}
