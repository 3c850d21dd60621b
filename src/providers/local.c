/*
 * DESIGN: a local backend is a `stratus engine` worker speaking the OpenAI wire format on a
 * private UNIX socket, so this provider is the OpenAI one with a different transport: the
 * same body rewriting, the path on "localhost", and CURLOPT_UNIX_SOCKET_PATH. Supervision
 * (start, restart, readiness) lives in engine/supervisor.c.
 */
#include <curl/curl.h>
#include <stdio.h>

#include "providers/provider.h"
#include "util/arena.h"

static int local_init(struct backend *b, struct err *err)
{
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    struct curl_slist *t = h ? curl_slist_append(h, "Expect:") : NULL;
    if (t == NULL) {
        curl_slist_free_all(h);
        return err_oom(err);
    }
    b->headers = t;
    return 0;
}

static int local_build(struct backend *b, const struct provider_request *pr, struct arena *arena,
                       struct upstream_request *out, struct err *err)
{
    if (b->unix_socket == NULL)
        return err_set(err, 503, "upstream_error", "engine_not_running",
                       "local backend '%s' has no running engine", b->conf->name);
    size_t len = 0;
    char *body = openai_body_for_target(pr->request, pr->target_model, arena, &len, err);
    if (body == NULL) return -1;
    char *url = arena_printf(arena, "%s/%s", b->conf->base_url,
                             openai_endpoint_path(pr->request->endpoint));
    if (url == NULL) return err_oom(err);
    *out = (struct upstream_request){
        .url = url,
        .headers = b->headers,
        .body = body,
        .body_len = len,
        .timeout_ms = b->conf->timeout_ms,
        .connect_timeout_ms = b->conf->connect_timeout_ms,
        .unix_socket = b->unix_socket,
    };
    return 0;
}

const struct provider_ops provider_local = {
    .type = "local",
    .init = local_init,
    .build = local_build,
    .destroy = NULL,
};
