/*
 * api/backends — the live backend table and the budgets, as JSON for the dashboard and the
 * CLI. Master key only (api/dispatch.c).
 *
 * GET /admin/backends: one entry per backend of the current generation —
 *   {name, type, ready, reason, breaker (the worst over its routing targets: closed,
 *   half-open, open), open_targets, targets, latency_ewma_ms (the highest of its measured
 *   targets: what the slowest route sees; null unmeasured), in_flight (summed), ok, failed,
 *   last_error (its targets' most recent), ttft: {p50_ms, p95_ms, requests} (estimated from
 *   /metrics' TTFT histograms since start; null when metrics are off or it served nothing),
 *   engine: {slots, busy_slots, queue_depth, tokens_per_s, ttft_ms} | null}
 *   — a backend is "down" for an operator when !ready or its breaker is open.
 *
 * GET /admin/budgets: {object: "list", data: [{scope, name, period, limit_usd, used_usd
 *   (spent plus what requests in flight reserved), remaining_usd (never below 0), resets_at
 *   (ISO 8601 UTC), resets_at_ms}]} — every budget with a counter of its own, as
 *   guard_each_budget sees it.
 *
 * Both are read from state the loop owns; nothing waits.
 * Thread: event-loop thread only.
 */
#ifndef STRATUS_API_BACKENDS_H
#define STRATUS_API_BACKENDS_H

struct app;
struct http_request;
struct principal;

void admin_backends(struct app *app, struct http_request *req, const struct principal *who);
void admin_budgets(struct app *app, struct http_request *req, const struct principal *who);

#endif
