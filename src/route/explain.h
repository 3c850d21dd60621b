/*
 * explain — `stratus route explain`: how a model group would route a request right now,
 * from a config file, without running the gateway.
 *
 * Each backend is probed once (TCP+TLS connect for remote ones; the model file for local
 * ones, whose engines this command does not start), then the router plans a request and
 * every target is printed with its health, the policy's score and its place in the plan,
 * followed by the choice and the reason — the same text a live response carries in
 * `x-stratus-route`.
 *
 * Thread: main thread; blocking (a CLI command).
 */
#ifndef STRATUS_ROUTE_EXPLAIN_H
#define STRATUS_ROUTE_EXPLAIN_H

#include <stdio.h>

#include "openai/request.h"
#include "config/config.h"

struct explain_opts {
    const char *model;             /* the model group, as clients name it */
    enum openai_endpoint endpoint; /* default chat */
    long prompt_tokens;            /* estimate used by the cost policy; default 1000 */
    long max_tokens;               /* 0: the group's expected_output_tokens */
    long probe_timeout_ms;         /* per backend; default 2000 */
};

/** Prints the explanation to `out`. @return 0, or 2 (unknown model, no target) with a
 *  message on `err_out`. `cfg` is borrowed. */
int route_explain(const struct config *cfg, const struct explain_opts *o, FILE *out, FILE *err_out);

/* The table's pieces, shared with `route explain --url` (cli/route_live.c), which fills
 * them from a running gateway's GET /admin/routes so both print the same thing. Every
 * string is borrowed for the call. */
struct explain_head {
    const char *model, *policy;
    size_t n_targets;
    int retries, failures;
    long backoff_ms, max_backoff_ms, window_ms, cooldown_ms;
    const char *endpoint_path;
    long prompt_tokens, output_tokens;
};
struct explain_line {
    int rank; /* 0: not in the plan */
    const char *target, *backend, *type, *state, *health, *score;
    const char *skipped; /* or NULL */
};
void route_explain_print_head(FILE *out, const struct explain_head *h);
void route_explain_print_line(FILE *out, const struct explain_line *l);
/** "chosen: …", "why: …" and the failover order; `backends`/`models` in plan order. */
void route_explain_print_plan(FILE *out, const char *const *backends, const char *const *models,
                              size_t n, const char *policy, const char *reason);

#endif
