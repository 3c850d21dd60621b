/*
 * api/metrics — GET /metrics: the Prometheus exposition of everything the gateway counts
 * (obs/metrics: per-request series) and of the state others own, read at scrape time:
 * routing targets (breaker, latency estimate, in flight, attempts), backends and engines
 * (ready, slots, queue, tokens/s), budgets, the ledger's queue, Redis fallbacks, listeners,
 * config reloads and the process (memory, descriptors, CPU, uptime, build).
 *
 * Open by default (like /health); `metrics: { auth: true }` asks for the master key. The
 * OpenMetrics format is served to scrapers that ask for it in Accept.
 * Thread: event-loop thread.
 */
#ifndef STRATUS_API_METRICS_H
#define STRATUS_API_METRICS_H

struct app;
struct http_request;
struct principal;

void metrics_handle(struct app *app, struct http_request *req, const struct principal *who);

#endif
