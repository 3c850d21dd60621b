/*
 * cli/route_live — `stratus route explain --url URL --model M`: the same table as the
 * offline explain (route/explain.h), but from a running gateway's GET /admin/routes, so
 * breakers, latency estimates, requests in flight, engine load and each target's last error
 * are the gateway's own, followed by a "live" block with those figures.
 *
 * The master key: auth.master_key of the config given with --config, else the
 * STRATUS_MASTER_KEY environment variable; never a command-line argument (argv is visible
 * to every user in ps and lands in shell history). No key at all: no Authorization header
 * (a gateway without auth).
 *
 * Thread: main thread; blocking (a CLI command).
 */
#ifndef STRATUS_CLI_ROUTE_LIVE_H
#define STRATUS_CLI_ROUTE_LIVE_H

#include <stdbool.h>
#include <stdio.h>

#include "route/explain.h"

struct live_opts {
    const char *url;    /* the gateway's base URL ("http://127.0.0.1:8080"); borrowed */
    const char *key;    /* the master key, or NULL */
    const char *cacert; /* PEM file to trust for https, or NULL */
    bool json;          /* print the gateway's JSON answer as it came */
};

/** Prints the live explanation of `o->model` to `out`. @return 0, 1 (the gateway refused,
 *  answered something unreadable or is unreachable; said on `err_out`), or 2 (no such
 *  model in the running config). */
int route_explain_live(const struct live_opts *l, const struct explain_opts *o, FILE *out,
                       FILE *err_out);

#endif
