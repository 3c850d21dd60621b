#include "obs/record.h"

#include <stdio.h>
#include <string.h>

#include "guard/guard.h"
#include "http/server.h"
#include "obs/log.h"
#include "obs/metrics.h"
#include "route/call.h"
#include "store/ledger.h"
#include "util/clock.h"

static double ms_between(uint64_t from_ns, uint64_t to_ns)
{
    return (double)(to_ns - from_ns) / 1e6;
}

static void copy_field(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

static bool has_usage(const struct request_record *r)
{
    return r->accounted && r->usage.prompt >= 0;
}

static void log_line(const struct request_record *r, uint64_t now)
{
    const struct http_request *req = r->req;
    struct log_line l;
    log_begin(&l, r->status >= 500 ? "warn" : "info", "request");
    log_str(&l, "id", req->request_id);
    log_str(&l, "method", req->head ? "HEAD" : req->method); /* dispatched as GET */
    log_str(&l, "path", req->path);
    log_str(&l, "protocol", http_request_protocol(req));
    log_str(&l, "client", req->client[0] ? req->client : NULL);
    if (req->proxied) log_str(&l, "peer", req->peer); /* the trusted proxy it came through */
    log_str(&l, "model", r->model);
    log_str(&l, "backend", r->backend);
    log_str(&l, "target_model", r->target_model);
    log_int(&l, "status", r->status);
    log_bool(&l, "stream", r->stream);
    log_ms(&l, "latency_ms", ms_between(req->start_ns, now));
    log_ms(&l, "ttfb_ms", r->first_byte_ns ? ms_between(req->start_ns, r->first_byte_ns) : -1);
    if (has_usage(r)) {
        log_int(&l, "prompt_tokens", r->usage.prompt);
        log_int(&l, "completion_tokens", r->usage.completion);
        log_int(&l, "total_tokens", r->usage.prompt + r->usage.completion);
        log_int(&l, "cached_tokens", r->usage.cached > 0 ? r->usage.cached : 0);
        log_bool(&l, "usage_estimated", r->usage.estimated);
    } else {
        log_null(&l, "prompt_tokens");
        log_null(&l, "completion_tokens");
        log_null(&l, "total_tokens");
    }
    if (r->accounted && r->cost_known)
        log_double(&l, "cost_usd", r->cost_usd);
    else
        log_null(&l, "cost_usd");
    log_int(&l, "attempts", (long long)r->attempts);
    log_str(&l, "route", r->route_policy);
    log_str(&l, "route_reason", r->route_reason && r->route_reason[0] ? r->route_reason : NULL);
    log_str(&l, "error", r->error);
    if (r->guard && r->guard[0]) log_str(&l, "guard", r->guard);
    if (r->cache) log_str(&l, "cache", r->cache);
    if (r->trace_id) log_str(&l, "trace_id", r->trace_id); /* find the request's trace */
    log_end(&l);
}

void record_fill_row(const struct request_record *r, uint64_t now, int64_t now_wall_ms,
                     struct ledger_row *out)
{
    const struct http_request *req = r->req;
    struct ledger_row row = {.status = r->status, .stream = r->stream};
    row.ts_ms = now_wall_ms - (int64_t)((now - req->start_ns) / 1000000);
    copy_field(row.request_id, sizeof row.request_id, req->request_id);
    copy_field(row.model, sizeof row.model, r->model);
    copy_field(row.backend, sizeof row.backend, r->attempts ? r->backend : NULL);
    copy_field(row.target_model, sizeof row.target_model, r->target_model);
    const char *path = strncmp(req->path, "/v1/", 4) == 0 ? req->path + 4 : req->path;
    copy_field(row.endpoint, sizeof row.endpoint, r->endpoint ? r->endpoint : path);
    copy_field(row.customer, sizeof row.customer, r->customer);
    if (r->who && r->who->kind == PRINCIPAL_KEY) {
        copy_field(row.key_id, sizeof row.key_id, r->who->key.id);
        copy_field(row.team, sizeof row.team, r->who->key.team);
    } else if (r->who && r->who->kind == PRINCIPAL_MASTER) {
        copy_field(row.key_id, sizeof row.key_id, "master");
    }
    row.prompt_tokens = r->accounted ? r->usage.prompt : -1;
    row.completion_tokens = r->accounted ? r->usage.completion : -1;
    row.cached_tokens = r->accounted ? r->usage.cached : -1;
    row.estimated = r->accounted && r->usage.estimated;
    /* A request refused before routing was served nothing: it cost 0, known. */
    row.cost_known = r->accounted ? r->cost_known : true;
    row.cost_usd = r->accounted ? r->cost_usd : 0;
    row.latency_ms = ms_between(req->start_ns, now);
    row.ttft_ms = r->first_byte_ns ? ms_between(req->start_ns, r->first_byte_ns) : -1;
    copy_field(row.guard, sizeof row.guard, r->guard);
    copy_field(row.cache, sizeof row.cache, r->cache);
    row.saved_usd = r->cache && strcmp(r->cache, "hit") == 0 ? r->saved_usd : -1;
    if (r->route_policy)
        snprintf(row.route, sizeof row.route, "%s; %s", r->route_policy,
                 r->route_reason ? r->route_reason : "");
    if (r->tier) {
        copy_field(row.tier, sizeof row.tier, r->tier->name);
        row.revenue_known = cost_tier_revenue(r->tier, r->status, row.prompt_tokens,
                                              row.completion_tokens, &row.revenue_usd);
        row.margin_known = row.revenue_known && row.cost_known;
        row.margin_usd = row.margin_known ? row.revenue_usd - row.cost_usd : 0;
    }
    *out = row;
}

static void count(struct metrics *m, const struct request_record *r, const struct ledger_row *row,
                  uint64_t now)
{
    struct metrics_request mr = {
        .surface = r->surface,
        .model = r->model_known ? r->model : NULL,
        .backend = r->attempts ? r->backend : NULL, /* a cache hit asked no backend */
        .team = row->team,
        .customer = row->customer,
        .status = r->status,
        .error_code = r->error_code,
        .duration_s = (double)(now - r->req->start_ns) / 1e9,
        .ttft_s = r->first_byte_ns ? (double)(r->first_byte_ns - r->req->start_ns) / 1e9 : -1,
        .input_tokens = r->accounted ? r->usage.prompt : -1,
        .output_tokens = r->accounted ? r->usage.completion : -1,
        .cost_known = r->accounted && r->cost_known,
        .cost_usd = r->cost_usd,
        .attempts = r->attempts,
        .guard = r->guard,
        .cache = r->cache,
        .saved_usd = r->saved_usd,
    };
    metrics_count_request(m, &mr);
}

uint64_t record_request(const struct record_sinks *to, const struct request_record *r)
{
    uint64_t now = clock_now_ns(), seq = 0;
    if (to) {
        struct ledger_row row;
        record_fill_row(r, now, clock_wall_ms(), &row);
        if (to->ledger) ledger_append(to->ledger, &row, &seq);
        if (to->metrics) count(to->metrics, r, &row, now);
    }
    if (r->req->log) log_line(r, now);
    return seq;
}

void record_set_call(struct request_record *r, const struct call_info *in)
{
    r->backend = in->backend;
    r->target_model = in->target_model;
    r->attempts = in->attempts;
    r->route_policy = in->plan->policy;
    r->route_reason = in->plan->reason;
    r->first_byte_ns = in->first_byte_ns;
    r->accounted = in->accounted;
    r->usage = in->usage;
    r->cost_known = in->cost_known;
    r->cost_usd = in->cost_usd;
    r->saved_usd = in->cached ? in->saved_usd : 0;
}
