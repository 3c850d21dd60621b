/*
 * DESIGN
 * Glue, one request: parse (the surface) → admit (guard) → call (route/call) → respond (the
 * surface) → settle and record. Each stage is a module with its own rules; this file only
 * passes what one stage produced to the next and makes sure every request ends exactly
 * once — answered, refused or abandoned by its client — with its budget hold settled, one
 * ledger row and one log line (obs/record).
 */
#include "api/proxy.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/cache.h"
#include "app.h"
#include "generation.h"
#include "guard/content.h"
#include "guard/guard.h"
#include "http/server.h"
#include "obs/record.h"
#include "obs/span.h"
#include "obs/trace_exporter.h"
#include "obs/traceparent.h"
#include "providers/provider.h"
#include "route/call.h"
#include "store/ledger.h"
#include "util/arena.h"
#include "util/clock.h"

/* A request's tracing (obs/traceparent.h); `traced` when it carries a trace context. */
struct request_trace {
    bool traced;
    struct trace_context tc;
    char traceparent[TRACEPARENT_LINE_LEN + 1]; /* the header line sent upstream */
    const char *tracestate;                     /* the client's line, passed on; or NULL */
    char trace_id[33];
};

struct proxy {
    struct exchange x; /* what the surface sees */
    const struct surface_ops *surface;
    struct app *app;
    struct generation *gen;         /* the config this request runs on (held by api_handle) */
    struct cache_ticket *cache;     /* looked up, then filled on a miss; NULL: not cacheable */
    struct ledger_wait durable;     /* store.durable: the answer's end waits for its row */
    const char *cache_state;        /* "hit", "miss", "bypass", or NULL */
    const struct model_conf *model; /* the group that serves it: the tier's route_to, if any */
    const struct model_conf *asked; /* the group asked for (what the key must allow) */
    const char *model_name;         /* as asked for (found or not), for the record */
    const struct tier_conf *tier;   /* the request's customer tier (docs/tiers.md); NULL: none */
    const struct principal *who;
    char customer[128]; /* x-stratus-customer or `user`, read once */
    struct call_request call;
    struct admission adm;     /* budget hold and TPM charge, settled in finish() */
    struct output_guard *out; /* output guards; NULL when off */
    char input_guard[200];    /* what the input guards found, names only */
    char guard[256];          /* input_guard plus the output's findings: header and ledger */
    bool finished;
    struct request_trace trace;
};

static void copy_field(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

/* The customer a request is for: x-stratus-customer, else the OpenAI `user` field. */
static void customer_of(const struct http_request *req, const struct openai_request *r, char *out,
                        size_t cap)
{
    const char *h = http_request_header(req, "x-stratus-customer");
    out[0] = '\0';
    if (h) {
        copy_field(out, cap, h);
        return;
    }
    if (r == NULL) return;
    int u = json_scan_get(&r->scan, 0, "user");
    if (!json_scan_is_string(&r->scan, u)) return;
    const jsmntok_t *t = &r->scan.tok[u];
    json_t *v = json_loadb(r->scan.js + t->start - 1, (size_t)(t->end - t->start) + 2,
                           JSON_DECODE_ANY, NULL);
    copy_field(out, cap, json_string_value(v));
    json_decref(v);
}

/* ---- tracing ------------------------------------------------------------------------ */

/* tracestate is opaque to us; passed on only when it cannot break the upstream's request
 * (the W3C limit of 512 characters, visible ASCII and spaces). */
static bool tracestate_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 512) return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] > 0x7e) return false;
    return true;
}

/* The request's trace context, from the client's traceparent or new. With export off and no
 * traceparent this is a header lookup and nothing more. */
static void trace_begin(struct app *app, const struct http_request *req, struct request_trace *t)
{
    const char *h = http_request_header(req, "traceparent");
    if (app->traces == NULL && h == NULL) return;
    if (trace_context_begin(&t->tc, h, app->traces != NULL, app->cfg->observability.sample) == 0)
        return;
    t->traced = true;
    trace_context_header(&t->tc, t->traceparent);
    trace_hex(t->tc.trace_id, 16, t->trace_id);
    const char *ts = http_request_header(req, "tracestate");
    if (ts && t->tc.has_parent && tracestate_ok(ts))
        t->tracestate = arena_printf(req->arena, "tracestate: %s", ts);
}

/* Names the trace in the log line and hands the span to the exporter. */
static void trace_end(struct app *app, const struct config *cfg, struct request_trace *t,
                      struct request_record *r)
{
    if (!t->traced) return;
    r->trace_id = t->trace_id;
    if (!t->tc.recording) return;
    struct span s;
    span_fill(&s, r, &t->tc, cfg, clock_now_ns(), clock_wall_ns());
    trace_exporter_submit(app->traces, &s);
}

/* ---- the end of a request ----------------------------------------------------------- */

/* What the guards found so far, for x-stratus-guard and the ledger (names only). */
static const char *guard_summary(struct proxy *p)
{
    pii_kinds k = output_guard_kinds(p->out);
    char names[120];
    if (k == 0) return snprintf(p->guard, sizeof p->guard, "%s", p->input_guard), p->guard;
    snprintf(p->guard, sizeof p->guard, "%s%soutput-pii:%s", p->input_guard,
             p->input_guard[0] ? ", " : "", pii_kinds_format(k, "+", names, sizeof names));
    return p->guard;
}

static void add_guard_header(struct proxy *p)
{
    const char *g = guard_summary(p);
    if (g[0]) http_add_header(p->x.req, "x-stratus-guard", g);
}

static void release_answer(void *ud)
{
    struct proxy *p = ud;
    http_request_release_end(p->x.req);
}

/* `code`: the error's code (metrics count refusals by it), or NULL. */
static void finish(struct proxy *p, int status, const char *error, const char *code)
{
    if (p->finished) return;
    p->finished = true;
    struct request_record r = {
        .req = p->x.req,
        .surface = p->surface->name,
        .status = status,
        .error = error,
        .error_code = code,
        .model = p->model_name,
        .model_known = p->model != NULL,
        .endpoint = p->x.request ? openai_endpoint_path(p->x.request->endpoint) : NULL,
        .who = p->who,
        .customer = p->customer,
        .stream = p->x.request && p->x.request->stream,
        .guard = guard_summary(p),
        .cache = p->cache_state,
        .tier = p->tier,
    };
    if (p->x.call) {
        const struct call_info *in = call_info(p->x.call);
        long long tokens =
            in->usage.prompt >= 0
                ? in->usage.prompt + (in->usage.completion > 0 ? in->usage.completion : 0)
                : -1;
        guard_settle(p->app->guard, &p->adm, in->cost_known, in->cost_usd, tokens);
        record_set_call(&r, in);
    }
    trace_end(p->app, p->gen->cfg, &p->trace, &r);
    /* store.durable: what the answer still sends waits until its row is committed, so a
     * client never holds a complete answer the ledger could lose. */
    bool durable = p->app->cfg->store.durable && status != 499;
    if (durable) http_request_hold_end(p->x.req);
    uint64_t seq = record_request(&p->app->record_to, &r);
    if (durable) {
        if (seq)
            ledger_when_written(p->app->ledger, seq, &p->durable, release_answer, p);
        else
            http_request_release_end(p->x.req); /* the row was dropped (queue full): logged */
    }
}

/* Refused before any target was tried. */
static void refuse(struct proxy *p, const struct err *e)
{
    finish(p, e->status, e->msg, e->code);
    struct call_failure f = surface_failure(e);
    p->surface->error(&p->x, &f);
}

static void add_target_headers(struct proxy *p)
{
    const struct call_info *in = call_info(p->x.call);
    char route[400];
    call_route_header(p->x.call, route, sizeof route);
    http_add_header(p->x.req, "x-stratus-backend", in->backend);
    http_add_header(p->x.req, "x-stratus-model", in->target_model);
    http_add_header(p->x.req, "x-stratus-route", route);
}

/* ---- what the call reports ---------------------------------------------------------- */

static void on_start(void *ud, struct call *c, int status)
{
    struct proxy *p = ud;
    p->x.call = c;
    add_target_headers(p);
    add_guard_header(p); /* a stream's: what was found before its head went out */
    p->surface->start(&p->x, status);
}

static int on_chunk(void *ud, struct call *c, const struct call_chunk *chunk)
{
    struct proxy *p = ud;
    p->x.call = c;
    if (p->cache) cache_collect_chunk(p->cache, chunk); /* as made: guards run on replays too */
    if (p->out == NULL) return p->surface->chunk(&p->x, chunk);
    char *json = NULL;
    size_t len = 0;
    if (output_guard_chunk(p->out, chunk->json, chunk->len, &json, &len) != 0) return -1;
    if (json == NULL) return p->surface->chunk(&p->x, chunk);
    struct call_chunk ch = *chunk;
    ch.json = json;
    ch.len = len;
    if (ch.usage_at) { /* the usage object moved with the rewrite */
        const char *u = strstr(json, "\"usage\":{");
        ch.usage_at = u ? (size_t)(u - json) + strlen("\"usage\":{") : 0;
    }
    int rc = p->surface->chunk(&p->x, &ch);
    free(json);
    return rc;
}

static int on_raw(void *ud, struct call *c, const char *bytes, size_t len)
{
    struct proxy *p = ud;
    p->x.call = c;
    if (p->cache) cache_abandon(p->cache); /* a target's own bytes: not an OpenAI answer */
    return p->surface->raw ? p->surface->raw(&p->x, bytes, len) : -1;
}

static int on_flush(void *ud, struct call *c)
{
    struct proxy *p = ud;
    (void)c;
    return p->surface->flush(&p->x);
}

static void on_body(void *ud, struct call *c, int status, const char *json, size_t len)
{
    struct proxy *p = ud;
    p->x.call = c;
    const struct call_info *in = call_info(c);
    if (p->cache && status == 200) cache_store(p->app->cache, p->cache, in, json, len);
    char *rewritten = NULL;
    size_t rewritten_len = 0;
    struct err e;
    err_clear(&e);
    if (output_guard_body(p->out, json, len, &rewritten, &rewritten_len, &e) != 0) {
        add_target_headers(p);
        add_guard_header(p);
        finish(p, e.status, e.msg, e.code);
        struct call_failure f = surface_failure(&e);
        p->surface->error(&p->x, &f);
        return;
    }
    if (rewritten) {
        json = rewritten;
        len = rewritten_len;
    }
    char cost[40];
    if (in->cost_known)
        snprintf(cost, sizeof cost, "%.8f", in->cost_usd);
    else
        snprintf(cost, sizeof cost, "unknown");
    http_add_header(p->x.req, "x-stratus-cost-usd", cost);
    add_target_headers(p);
    add_guard_header(p);
    finish(p, status, NULL, NULL);
    p->surface->body(&p->x, status, json, len);
    free(rewritten);
}

static void on_end(void *ud, struct call *c, const char *error)
{
    struct proxy *p = ud;
    p->x.call = c;
    char why[200];
    if (output_guard_blocked(p->out)) {
        char names[120];
        snprintf(why, sizeof why,
                 "guard_blocked: the answer contained personal data or secrets (%s); the rest "
                 "was withheld",
                 pii_kinds_format(output_guard_kinds(p->out), ", ", names, sizeof names));
        error = why;
    } else if (p->out && error == NULL) {
        /* Text a choice still held (its stream ended without a finish_reason). */
        char *json = NULL;
        size_t len = 0;
        if (output_guard_stream_end(p->out, &json, &len) != 0) {
            error = "out of memory";
        } else if (json) {
            struct call_chunk ch = {.json = json, .len = len};
            if (p->surface->chunk(&p->x, &ch) < 0 || p->surface->flush(&p->x) < 0)
                error = "out of memory";
            free(json);
        }
    }
    if (p->cache && error == NULL) cache_store(p->app->cache, p->cache, call_info(c), NULL, 0);
    finish(p, 200, error, error ? "stream_interrupted" : NULL);
    p->surface->end(&p->x, error);
}

static void on_fail(void *ud, struct call *c, const struct call_failure *f)
{
    struct proxy *p = ud;
    p->x.call = c;
    if (f->from_target) add_target_headers(p);
    finish(p, f->err.status, f->err.msg, f->err.code);
    p->surface->error(&p->x, f);
}

static const struct call_sink sink = {
    .start = on_start,
    .chunk = on_chunk,
    .raw = on_raw,
    .flush = on_flush,
    .body = on_body,
    .end = on_end,
    .fail = on_fail,
};

/* ---- the client's side -------------------------------------------------------------- */

static void on_client_drain(struct http_request *req, void *ud)
{
    struct proxy *p = ud;
    (void)req;
    if (p->x.call) call_resume(p->x.call);
}

static void on_client_abort(struct http_request *req, void *ud)
{
    struct proxy *p = ud;
    (void)req;
    if (p->x.call) call_cancel(p->x.call);
    cache_cancel(p->cache);
    finish(p, 499, "client closed the connection", "client_closed");
}

static void release_proxy(void *ud)
{
    struct proxy *p = ud;
    guard_cancel(p->app->guard, &p->adm);
    ledger_wait_cancel(&p->durable);
}

static void start_call(struct proxy *p)
{
    struct call *c = call_start(&p->gen->call_env, &p->call, &sink, p, p->x.req->arena);
    if (c == NULL) {
        struct err e;
        err_oom(&e);
        refuse(p, &e);
        return;
    }
    p->x.call = c;
}

/* The response cache's answer (at once, or when Redis replies): replay it, or ask a target
 * and keep what it answers. */
static void on_cache_found(void *ud, const struct call_replay_answer *answer)
{
    struct proxy *p = ud;
    if (p->finished) return;
    p->cache_state = answer ? "hit" : "miss";
    http_add_header(p->x.req, "x-stratus-cache", p->cache_state);
    if (answer == NULL) {
        start_call(p);
        return;
    }
    p->cache = NULL; /* nothing to keep from a replay */
    struct call *c = call_replay(&p->gen->call_env, &p->call, answer, &sink, p, p->x.req->arena);
    if (c == NULL && !p->finished) {
        struct err e;
        err_oom(&e);
        refuse(p, &e);
    }
}

/* Admission's answer (at once, or when Redis replies): go, or refuse. */
static void on_admitted(void *ud, int rc, const struct err *refusal)
{
    struct proxy *p = ud;
    if (p->finished) return; /* the client left while Redis was asked */
    for (size_t i = 0; i < p->adm.n_headers; i++)
        http_add_header(p->x.req, p->adm.headers[i].name, p->adm.headers[i].value);
    if (rc != 0) {
        refuse(p, refusal);
        return;
    }
    p->call.route.budget = p->adm.mode;
    p->call.route.budget_why = p->adm.why;
    if (p->cache_state) http_add_header(p->x.req, "x-stratus-cache", p->cache_state); /* bypass */
    if (p->cache) {
        cache_lookup(p->app->cache, p->cache, on_cache_found, p);
        return;
    }
    start_call(p);
}

/* What the policies and the budget reserve go by: the prompt from the body's size (~4 bytes
 * a token: good enough to rank and to hold), the output from max_tokens or the group's
 * expectation. */
static struct route_request route_estimate(const struct openai_request *r,
                                           const struct model_conf *m)
{
    long long max_tokens = 0;
    const struct json_scan *s = &r->scan;
    if (!json_scan_integer(s, json_scan_get(s, 0, "max_completion_tokens"), &max_tokens))
        json_scan_integer(s, json_scan_get(s, 0, "max_tokens"), &max_tokens);
    return (struct route_request){
        .endpoint = r->endpoint,
        .prompt_tokens = (long)(s->len / 4),
        .output_tokens = max_tokens > 0 ? (long)max_tokens : m->expected_output_tokens,
    };
}

/* The guards on the request's text, and the privacy header; sets what the call sends (the
 * request stripped of control characters, when any were found), how it routes and whether
 * its answers are rewritten. @return 0, or -1 with `e` (400 guard_blocked). */
static int guard_content(struct proxy *p, struct err *e)
{
    const char *h = http_request_header(p->x.req, "x-stratus-privacy");
    if (h && strcasecmp(h, "local") != 0)
        return err_set(e, 400, "invalid_request_error", "invalid_header",
                       "x-stratus-privacy must be 'local' (or absent)");
    struct input_verdict v;
    int rc = content_guard_input(p->gen->content, &p->x.request, h != NULL, p->x.req->arena, &v, e);
    snprintf(p->input_guard, sizeof p->input_guard, "%s", v.fired);
    if (rc != 0) return -1;
    p->call.request = p->x.request;
    p->call.route = route_estimate(p->x.request, p->model); /* of what goes upstream */
    p->call.route.tier = p->tier;
    p->call.route.private_only = v.private_only;
    bool oom;
    p->out = output_guard_new(p->gen->content, p->x.req->arena, &oom);
    if (oom) return err_oom(e);
    p->call.translate_answers = output_guard_rewrites(p->out);
    return 0;
}

void proxy_handle(struct app *app, struct http_request *req, const struct surface_ops *surface,
                  enum openai_endpoint endpoint, const struct principal *who)
{
    struct arena *a = req->arena;
    struct proxy *p = arena_calloc(a, 1, sizeof *p);
    void *state = surface->state_size ? arena_calloc(a, 1, surface->state_size) : NULL;
    if (p == NULL || (surface->state_size && state == NULL) ||
        arena_on_free(a, release_proxy, p) != 0) {
        struct err e;
        err_oom(&e);
        record_request(NULL, &(struct request_record){.req = req, .status = 500, .error = e.msg});
        http_respond_error(req, &e);
        return;
    }
    p->x = (struct exchange){.req = req, .state = state};
    p->surface = surface;
    p->app = app;
    p->gen = app->gen;
    p->who = who;
    trace_begin(app, req, &p->trace);
    struct err e;
    err_clear(&e);
    if (surface->parse(&p->x, endpoint, &e) != 0) {
        customer_of(req, NULL, p->customer, sizeof p->customer);
        refuse(p, &e);
        return;
    }
    customer_of(req, p->x.request, p->customer, sizeof p->customer);
    p->model_name = p->x.request->model;
    p->model = config_find_model(p->gen->cfg, p->model_name);
    if (p->model == NULL) {
        err_param(&e, 404, "model", "model '%s' does not exist; GET /v1/models lists the models",
                  p->model_name);
        e.code = "model_not_found";
        refuse(p, &e);
        return;
    }
    p->asked = p->model;
    p->tier = guard_tier(app->guard, p->gen->cfg, who, p->customer);
    if (p->tier && !tier_allows_model(p->tier, p->model->name)) {
        err_set(&e, 403, "permission_error", "model_not_allowed_for_tier",
                "tier '%s' may not use model '%s'", p->tier->name, p->model->name);
        e.param = "model";
        refuse(p, &e);
        return;
    }
    /* route_to was checked against this same config: found (the test is only defensive). */
    if (p->tier && p->tier->route_to) {
        const struct model_conf *to = config_find_model(p->gen->cfg, p->tier->route_to);
        if (to) p->model = to;
    }
    p->call = (struct call_request){
        .request = p->x.request,
        .model = p->model,
        .trace_headers = {p->trace.traced ? p->trace.traceparent : NULL, p->trace.tracestate}};
    if (guard_content(p, &e) != 0 ||
        guard_check_prompt(who, p->model, p->call.route.prompt_tokens, &e) != 0) {
        add_guard_header(p);
        refuse(p, &e);
        return;
    }
    /* A local_only tier is never served a stored answer: a cloud target may have made it. */
    if (p->tier && p->tier->local_only && app->cache)
        p->cache_state = "bypass";
    else if (cache_consider(app->cache, p->model, p->call.request, req, who, req->arena,
                            &p->cache) == CACHE_BYPASS)
        p->cache_state = "bypass";
    double reserve = router_worst_case_cost(p->gen->router, p->model, &p->call.route);
    http_request_set_callbacks(req, on_client_abort, on_client_drain, p);
    guard_admit(app->guard, who, p->asked, p->tier, p->customer, p->call.route.prompt_tokens,
                p->call.route.output_tokens, reserve, &p->adm, on_admitted, p);
}

void proxy_record_refusal(struct app *app, const struct http_request *req,
                          const struct principal *who, int status, const char *error)
{
    char customer[128];
    customer_of(req, NULL, customer, sizeof customer);
    struct request_trace t = {0};
    trace_begin(app, req, &t);
    struct request_record r = {
        .req = req,
        .status = status,
        .error = error,
        .who = who,
        .customer = customer,
    };
    trace_end(app, app->gen->cfg, &t, &r);
    record_request(&app->record_to, &r);
}
