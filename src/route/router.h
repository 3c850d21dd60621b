/*
 * router — decides, per request, the order in which a model group's targets are tried.
 *
 * A policy turns a model group into an ordered plan; the proxy walks the plan, failing over
 * to the next entry on retryable failures, and reports each outcome back with
 * router_report() so stateful policies (latency, cooldowns — later) can learn. Only
 * `priority` exists in this version: the configured order.
 *
 * Thread: event-loop thread only.
 */
#ifndef STRATUS_ROUTER_H
#define STRATUS_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "util/err.h"

struct router;

enum route_outcome {
    ROUTE_OK,       /* the target answered */
    ROUTE_FAILED,   /* retryable failure: connect, 5xx, 429, timeout */
    ROUTE_REJECTED, /* the target rejected the request (4xx): not its health's fault */
};

struct route_plan {
    size_t *order;      /* indices into model->targets, best first; arena or caller memory */
    size_t n;           /* entries in order (<= model->n_targets) */
    const char *policy; /* static: "priority" */
    const char *reason; /* static: why this order */
};

/** @return an *owned* router for `cfg` (borrowed; must outlive the router), or NULL. */
struct router *router_new(const struct config *cfg, struct err *err);

/**
 * Fills `plan` for `model`. `plan->order` must have room for model->n_targets entries.
 * @return 0, or -1 with `err` (503 when no target can be tried).
 */
int router_plan(struct router *r, const struct model_conf *model, struct route_plan *plan,
                struct err *err);

/** Records how a target did (latency in microseconds to the first byte, 0 if none). */
void router_report(struct router *r, const struct model_conf *model, size_t target,
                   enum route_outcome outcome, uint64_t latency_us);

/** NULL-safe. */
void router_free(struct router *r);

#endif
