/*
 * app — the daemon's context: the event loop and everything hanging off it. daemon.c builds
 * one and passes it explicitly to the API layer; nothing in stratus is global.
 * Thread: the event-loop thread owns everything here.
 */
#ifndef STRATUS_APP_H
#define STRATUS_APP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "providers/provider.h"
#include "route/call.h"

struct event_base;
struct event;
struct http_server;
struct tls_ctx;
struct upstream;
struct router;
struct backend;
struct supervisor;
struct store_jobs;
struct guard;
struct content_guard;

struct app {
    struct event_base *loop;        /* owned */
    struct config *cfg;             /* owned; immutable while serving */
    struct http_server *server;     /* the first listener's: servers[0] */
    struct http_server *servers[8]; /* owned: one per listener (config listen:) */
    size_t n_servers;
    struct tls_ctx *tls;           /* owned; NULL without a tls: section; reloaded on SIGHUP */
    struct upstream *upstream;     /* owned */
    struct router *router;         /* owned */
    struct ledger *ledger;         /* owned: one row per request, written off the loop */
    struct store_jobs *jobs;       /* owned: admin and refresh store calls, off the loop */
    struct guard *guard;           /* owned: keys, rate limits, budgets */
    struct content_guard *content; /* owned: guards (deny rules, PII) */
    struct supervisor *supervisor; /* owned; NULL without local backends */
    struct backend *backends;      /* owned array, parallel to cfg->backends */
    size_t n_backends;
    struct event *probe_timer;                  /* owned: periodic reachability probes */
    struct event *sig_term, *sig_int, *sig_hup; /* owned */
    struct event *stop_timer;                   /* owned: checks drain progress / grace deadline */
    bool stopping;
    uint64_t stop_deadline_ns;
    size_t probes_running;
    unsigned probe_tick;
    size_t buffered_bytes; /* upstream answers held whole right now (limits.max_buffered_bytes) */
    struct call_env call_env; /* what every request's attempts need, borrowed from above */
};

/** The runtime backend for a target (by the target's backend index). Borrowed. */
static inline struct backend *app_backend(struct app *app, size_t backend_index)
{
    return &app->backends[backend_index];
}

#endif
