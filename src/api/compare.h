/*
 * api/compare — GET /admin/cost/compare: cloud against local (cost/compare.h), for the
 * dashboard and anything else holding the master key; the same figures as
 * `stratus cost compare`.
 *
 * Query (all optional): tokens_per_month (100M; "750k", "2.5B" or a number),
 * output_share (0..1, 0.25), model and local (one pair; without them every model group
 * with a priced cloud target, priced as its first, against every local backend with `cost:`),
 * local_tokens_per_s (default: the engine's measured throughput when it has one; 0 leaves
 * capacity unchecked). Anything else is a 400 naming it.
 *
 * 200 {object: "cost_comparison", tokens_per_month, output_share, data: [{model, local,
 * cloud: {usd_month, input, output, source, catalogue_date}, local_cost: {usd_month,
 * usd_hour, watts, kwh_price, hardware_price, lifetime_months, tokens_per_s,
 * capacity_tokens_month, machines, fleet_usd_month}, break_even_tokens_month, cheaper:
 * "local"|"cloud"}]}; 400 for a pair that cannot be compared (the reason named).
 * Thread: event-loop thread only; reads the generation the request holds.
 */
#ifndef STRATUS_API_COMPARE_H
#define STRATUS_API_COMPARE_H

struct app;
struct http_request;
struct principal;

void admin_cost_compare(struct app *app, struct http_request *req, const struct principal *who);

#endif
