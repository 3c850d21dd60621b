/*
 * engine/supervisor — runs one `stratus engine` worker process per local backend: starts
 * them at boot, restarts a crashed worker with exponential backoff, and stops them at
 * shutdown. Each worker listens on a UNIX socket inside a private (0700) run directory;
 * the socket path is published in the backend (`backend->unix_socket`). Readiness is not
 * decided here: the gateway's probes ask the worker's /stats.
 * Thread: event-loop thread only.
 */
#ifndef STRATUS_SUPERVISOR_H
#define STRATUS_SUPERVISOR_H

#include <stdbool.h>
#include <sys/types.h>

#include "util/err.h"

struct event_base;
struct backend;
struct backend_conf;
struct supervisor;

/** @param exe  the stratus binary to run as `exe engine …` (borrowed). @return *owned*. */
struct supervisor *supervisor_new(struct event_base *loop, const char *exe, struct err *err);

/** Starts a worker for `b` (borrowed; must outlive the supervisor). */
int supervisor_add(struct supervisor *s, struct backend *b, struct err *err);

/** Stops the worker for `b` (SIGTERM; reaped later, never restarted) and forgets `b`,
 *  which the caller may free right after. For a backend no request can reach any more. */
void supervisor_remove(struct supervisor *s, struct backend *b);

/** Whether `a` and `b` start the same worker (model file, name, parallel, threads, context,
 *  queue, prefix cache, prefill chunk): a reload keeps a running worker only when they do. */
bool supervisor_same_worker(const struct backend_conf *a, const struct backend_conf *b);

/** Whether the worker for `b` is running (process alive; the model may still be loading). */
bool supervisor_running(const struct supervisor *s, const struct backend *b);

/** SIGTERM every worker, wait up to `grace_ms`, then SIGKILL; no restarts afterwards. */
void supervisor_stop(struct supervisor *s, long grace_ms);

/** Stops what still runs, removes the run directory, frees. NULL-safe. */
void supervisor_free(struct supervisor *s);

#endif
