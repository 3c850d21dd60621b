/*
 * DESIGN: a local backend is a `stratus engine` worker speaking the OpenAI wire format on a
 * private UNIX socket, so this provider is the OpenAI one with a different transport: the
 * same body rewriting, the path on "localhost", and CURLOPT_UNIX_SOCKET_PATH. Supervision
 * (start, restart, readiness) lives in engine/supervisor.c.
 */
#include "providers/provider.h"
#include "util/arena.h"

static int local_init(struct backend *b, struct err *err)
{
    return provider_openai.init(b, err); /* same headers; a local backend has no key */
}

static int local_build(struct backend *b, const struct provider_request *pr, struct arena *arena,
                       struct upstream_request *out, struct err *err)
{
    if (b->unix_socket == NULL)
        return err_set(err, 503, "upstream_error", "engine_not_running",
                       "local backend '%s' has no running engine", b->conf->name);
    if (openai_upstream_request(b, pr, arena, out, err) != 0) return -1;
    out->unix_socket = b->unix_socket;
    return 0;
}

const struct provider_ops provider_local = {
    .type = "local",
    .init = local_init,
    .build = local_build,
    .destroy = NULL,
};
