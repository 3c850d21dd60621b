/*
 * app — the daemon's context: the event loop and everything hanging off it. daemon.c builds
 * one and passes it explicitly to the API layer; nothing in stratus is global.
 *
 * What a reload replaces (models, backends, router, guards, functions, access) lives in the
 * current generation (generation.h), not here: a request reads app->gen once, when it
 * starts (api_handle holds that generation for the request's life), and uses that
 * generation's config, router and backends to its end — never app->gen again.
 * Thread: the event-loop thread owns everything here.
 */
#ifndef STRATUS_APP_H
#define STRATUS_APP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "obs/record.h"
#include "providers/provider.h"
#include "route/call.h"
#include "util/err.h"

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
struct generation;
struct response_cache;
struct probe;
struct trace_exporter;
struct config_refresh;

struct app {
    struct event_base *loop;        /* owned */
    struct config *cfg;             /* owned: the config read at start (generation 1's), whose
                                       start-only sections (listen, store, auth, budgets,
                                       limits, tls paths) the process keeps; immutable */
    struct generation *gen;         /* the current one (one hold); see generation.h */
    char exe[4096];                 /* this binary, for engine workers */
    struct http_server *server;     /* the first listener's: servers[0] */
    struct http_server *servers[8]; /* owned: one per listener (config listen:) */
    size_t n_servers;
    struct tls_ctx *tls;           /* owned; NULL without a tls: section; reloaded on SIGHUP */
    struct upstream *upstream;     /* owned */
    struct ledger *ledger;         /* owned: one row per request, written off the loop */
    struct metrics *metrics;       /* owned: what GET /metrics counts per request */
    struct response_cache *cache;  /* owned: the response cache; NULL without cache: */
    struct record_sinks record_to; /* where finished model requests go: ledger + metrics */
    uint64_t started_wall_ms;      /* process start, wall clock */
    uint64_t reloads_ok, reloads_failed;
    struct trace_exporter *traces;  /* owned: spans to the OTLP collector; NULL: export off */
    struct store_jobs *jobs;        /* owned: admin and refresh store calls, off the loop */
    struct guard *guard;            /* owned: keys, rate limits, budgets */
    struct config_refresh *refresh; /* owned: re-resolves secrets on a schedule (refresh.h) */
    struct supervisor *supervisor;  /* owned; NULL until a local backend is configured */
    struct event *probe_timer;      /* owned: periodic reachability probes */
    struct event *sig_term, *sig_int, *sig_hup; /* owned */
    struct event *stop_timer;                   /* owned: checks drain progress / grace deadline */
    bool stopping;
    uint64_t stop_deadline_ns;
    size_t probes_running;
    struct probe *probes; /* owned: those out, linked (freed at shutdown if still out) */
    unsigned probe_tick;
    size_t buffered_bytes; /* upstream answers held whole right now (limits.max_buffered_bytes) */
};

/* What a reload did (app_reload). */
struct reload_result {
    unsigned long generation; /* the one now current */
    char changed[200];        /* reloadable sections whose text changed, ", "-joined */
    char restart_needed[200]; /* start-only sections that changed: kept until a restart */
    int engines_kept, engines_started, engines_stopped;
};

/**
 * Reads the config file again and makes it current (see generation.h). An invalid file
 * changes nothing: -1 with `err` (400, the message "FILE:LINE:COL: ..."; 500 when
 * something could not be built), and the log says why. Also re-reads the TLS certificate.
 * @return 0 with `out` filled.
 */
int app_reload(struct app *app, struct reload_result *out, struct err *err);

#endif
