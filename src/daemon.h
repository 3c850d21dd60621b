/*
 * daemon — `stratus serve`: builds the app (config, loop, backends, router, store, guard,
 * engines, HTTP server), runs the loop until SIGTERM/SIGINT and the drain finish, and tears
 * everything down in order. The composition root: the one place that knows every floor.
 * Thread: the calling thread becomes the event-loop thread.
 */
#ifndef STRATUS_DAEMON_H
#define STRATUS_DAEMON_H

struct config;

/**
 * Runs the gateway. Takes ownership of `cfg` (also on failure). `listen` overrides cfg's
 * listen address when not NULL.
 * @return process exit code: 0 after a clean shutdown, 1 when start-up failed.
 */
int app_run(struct config *cfg, const char *listen);

#endif
