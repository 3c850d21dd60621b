/*
 * generation — one loaded configuration and what serving it takes: the config, a backend
 * per configured backend, the router, the content guards and the attempt environment.
 *
 * A reload (SIGHUP, POST /admin/reload, `stratus reload`) builds the next generation beside
 * the current one and swaps it in between two requests. Every request holds the generation
 * current when it started until it ends, so in-flight requests finish on the config they
 * began with while new ones see the new config at once; a generation is freed when the last
 * request holding it ends. Backends are shared between generations where that matters: a
 * local engine whose worker settings did not change keeps its worker process (and its warm
 * model), one whose settings changed gets a new worker while the old one finishes what it
 * has. Remote backends are built again (their keys may have been rotated) and start from
 * what the old ones' probes knew; the router starts from the old one's breakers and
 * latency estimates.
 *
 * Sections read once at start (listeners, TLS paths, limits, store, auth, budgets) stay with
 * the process: the running config (struct app's cfg) is generation 1's and is never freed
 * before shutdown.
 *
 * Thread: event-loop thread only.
 */
#ifndef STRATUS_GENERATION_H
#define STRATUS_GENERATION_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"
#include "route/call.h"
#include "util/err.h"

struct app;
struct arena;
struct backend;
struct router;
struct content_guard;

struct generation {
    unsigned long number; /* 1 at start, then one more per reload */
    unsigned holds;       /* the app's (while current) + one per request + one per probe */
    struct config *cfg;   /* owned unless it is the app's own (generation 1) */
    bool owns_cfg;
    struct backend **backends;     /* cfg->n_backends entries, each held by this generation */
    bool *fresh;                   /* per backend: built for this generation (not shared) */
    struct router *router;         /* owned */
    struct content_guard *content; /* owned */
    struct call_env call_env;      /* what every request's attempts need, borrowed from here */
};

/**
 * Builds a generation for `cfg` (owned when `owns_cfg`, freed with the generation — also on
 * failure). Backends that `prev` (may be NULL) has and that need no new object are shared;
 * nothing is started and nothing in `prev` changes until generation_commit.
 * @return the generation with one hold (the caller's), or NULL with `err`.
 */
struct generation *generation_build(struct app *app, struct config *cfg, bool owns_cfg,
                                    const struct generation *prev, struct err *err);

/** Starts the workers of the generation's fresh local backends. @return 0, or -1 with
 *  `err` (nothing is left running then). */
int generation_start(struct app *app, struct generation *g, struct err *err);

/** Makes `g` current: shared backends now read g's config, listeners g's access lists, and
 *  the previous generation loses the app's hold (freed once its requests end). Takes over
 *  the caller's hold on `g`. */
void generation_commit(struct app *app, struct generation *g);

/** One more holder. @return g. */
struct generation *generation_hold(struct generation *g);

/** Drops a hold; the last one frees the generation and every backend only it held
 *  (stopping their workers). NULL-safe. */
void generation_release(struct app *app, struct generation *g);

/** Holds the app's current generation until `arena` is freed (a request's).
 *  @return it, or NULL when out of memory. */
struct generation *generation_hold_for(struct app *app, struct arena *arena);

#endif
