/*
 * engine/worker — the `stratus engine` process: one local model behind the OpenAI wire
 * format on an owner-only UNIX socket, supervised by the gateway.
 * Thread: runs its own event loop on the calling (main) thread.
 */
#ifndef STRATUS_ENGINE_WORKER_H
#define STRATUS_ENGINE_WORKER_H

#include "engine/engine.h"

struct engine_worker_opts {
    struct engine_opts engine;
    const char *socket_path;
    const char *model_name; /* reported in answers' "model" */
};

/** Loads the model, serves until SIGTERM/SIGINT. @return process exit code (0, or 1 when
 *  the model cannot be loaded — the message names the file). */
int engine_worker_main(const struct engine_worker_opts *opts);

#endif
