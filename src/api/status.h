/*
 * api/status — GET /health (the process runs) and GET /ready (every model group has a
 * usable target now; the body lists every group and backend, ready or not, and why).
 * Thread: event-loop thread only.
 */
#ifndef STRATUS_API_STATUS_H
#define STRATUS_API_STATUS_H

struct app;
struct http_request;
struct principal;

void status_health(struct app *app, struct http_request *req, const struct principal *who);
void status_ready(struct app *app, struct http_request *req, const struct principal *who);

struct backend;
struct json_t;

/** A self-hosted backend's last load figures as JSON (*owned*), or NULL when it reported
 *  none: {slots, busy_slots, queue_depth, tokens_per_s, ttft_ms}. /ready and /admin/routes. */
struct json_t *status_engine_json(const struct backend *b);

#endif
