/*
 * config/refresh — picks up rotated secrets: every `secrets.refresh_s` seconds a thread of
 * its own loads the running config's text again (which resolves every secret reference,
 * remote ones over HTTP, off the event loop) and, when a secret's value differs from the
 * running one, hands the loaded config to the loop, which makes it current the way a
 * reload does (in-flight requests finish on the config they started with).
 *
 * A load that fails (a store unreachable, a secret deleted) changes nothing: the running
 * values stay, and the failure is logged — once per reason and at most every 10 minutes —
 * by reference and reason, never by value.
 *
 * Thread: config_refresh_new/track/free on the loop thread; `cb` runs there too.
 */
#ifndef STRATUS_CONFIG_REFRESH_H
#define STRATUS_CONFIG_REFRESH_H

#include <event2/event.h>

#include "config/config.h"
#include "util/err.h"

struct config_refresh;

/** A config whose secrets changed; the callee *takes ownership*. Loop thread. */
typedef void (*config_refresh_cb)(struct config *fresh, void *ud);

/** The file loaded for config_refresh_reload_file: `cfg` (callee *takes ownership*), or NULL
 *  with `error` ("FILE:LINE:COL: message"). Loop thread. */
typedef void (*config_refresh_file_cb)(struct config *cfg, const char *error, void *ud);

/** Starts the thread (idle until config_refresh_track). @return *owned*, or NULL with err. */
struct config_refresh *config_refresh_new(struct event_base *loop, config_refresh_cb cb,
                                          config_refresh_file_cb file_cb, void *ud,
                                          struct err *err);

/** Loads the running config's file on the thread (SIGHUP: remote secret stores may take
 *  up to their timeouts) and hands the result to `file_cb`. Loop thread. */
void config_refresh_reload_file(struct config_refresh *r);

/** What runs now: its text, path, interval and secrets (copied; `running` is not kept).
 *  A load started before this call and finishing after it is dropped. */
void config_refresh_track(struct config_refresh *r, const struct config *running);

/** Stops and joins the thread (an HTTP call in progress finishes first, within its timeout);
 *  frees `r`. NULL-safe. */
void config_refresh_free(struct config_refresh *r);

/* Counters for /metrics, read on the loop thread. */
struct config_refresh_stats {
    unsigned long checks;   /* loads that completed */
    unsigned long changed;  /* of those, with a changed secret */
    unsigned long failures; /* loads that failed */
};
void config_refresh_stats(struct config_refresh *r, struct config_refresh_stats *out);

#endif
