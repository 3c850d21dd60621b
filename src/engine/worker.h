/*
 * engine/worker — the `stratus engine` process: one local model behind the OpenAI wire
 * format on an owner-only UNIX socket, supervised by the gateway — or, as a remote engine,
 * on a TCP address (TLS optional) that gateways on other machines reach with a shared token.
 * Thread: runs its own event loop on the calling (main) thread.
 */
#ifndef STRATUS_ENGINE_WORKER_H
#define STRATUS_ENGINE_WORKER_H

#include "engine/engine.h"

struct engine_worker_opts {
    struct engine_opts engine;
    const char *socket_path; /* the supervised form; NULL with `listen` */
    const char *listen;      /* "HOST:PORT": a remote engine; NULL without */
    const char *token;       /* required as "Authorization: Bearer …" on every call but /health
                                (borrowed; the value, resolved by the caller); NULL: none */
    const char *tls_cert, *tls_key; /* file:/env: references: https on `listen` */
    const char *model_name;         /* reported in answers' "model" */
};

/** Loads the model, serves until SIGTERM/SIGINT. @return process exit code (0, or 1 when
 *  the model cannot be loaded — the message names the file). */
int engine_worker_main(const struct engine_worker_opts *opts);

#endif
