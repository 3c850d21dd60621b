/*
 * api/routes — GET /admin/routes: what the router of the current generation knows now, per
 * model group and target — breaker, faded latency estimate, requests in flight, attempts by
 * outcome, the last error — beside the backend's health and engine load, the target's
 * price, and the plan a request would get (rank, policy score, why a target is skipped), as
 * `stratus route explain` prints it. Master key only (api/dispatch.c).
 *
 * Query (all optional): model=NAME (one group; 404 model_not_found otherwise), and what the
 * plan is made for: endpoint=chat|completions|embeddings (chat), prompt_tokens=N (1000),
 * max_tokens=N (the group's expected_output_tokens). Any other parameter is a 400 naming it.
 *
 * 200 {object: "routes", generation, request: {endpoint, prompt_tokens}, models: [{name,
 * route, retry: {...}, breaker: {...}, output_tokens, targets: [{index, backend, type,
 * model, breaker, state, cooldown_left_ms, latency_ewma_ms, in_flight, ok, failed,
 * rejected, last_error, since_last_failure_ms, ready, reason, engine, price: {input,
 * output, source}, rank, score, skipped}], plan: [{rank, target, backend, model}], policy,
 * reason | plan_error: {status, code, message}}]}
 *
 * Planning for the answer changes nothing a request would see (router_explain).
 * Thread: event-loop thread only; reads the generation current when the request started.
 */
#ifndef STRATUS_API_ROUTES_H
#define STRATUS_API_ROUTES_H

struct app;
struct http_request;
struct principal;

void admin_routes(struct app *app, struct http_request *req, const struct principal *who);

#endif
