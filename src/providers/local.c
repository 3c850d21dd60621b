/*
 * DESIGN: a local backend is a `stratus engine` worker speaking the OpenAI wire format on a
 * private UNIX socket, so this provider is the OpenAI one with a different transport: the
 * same body rewriting, the path on "localhost", and CURLOPT_UNIX_SOCKET_PATH. Supervision
 * (start, restart, why it is down) lives in engine/supervisor.c; the probe here asks the
 * worker's /stats, which answers once the model is loaded and reports the engine's load.
 *
 * A remote engine (`type: local` with `url:`) is the same worker listening on TCP on another
 * machine (`stratus engine --listen`): no supervision here, the URL instead of the socket,
 * its token as a Bearer header, and the same /stats probe — so readiness, least-busy routing
 * on its slots and queue, and failover work as for an engine started here.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

static void local_probe(const struct backend *b, struct upstream_request *out)
{
    *out = (struct upstream_request){
        .url = "http://localhost/stats",
        .connect_timeout_ms = b->conf->connect_timeout_ms,
        .timeout_ms = 2000,
        .get = true,
        .unix_socket = b->unix_socket,
    };
}

/* Ready when /stats answers (the model is loaded). Until then the worker is loading or
 * restarting, and the supervisor has already said why in not_ready_reason. */
static void local_probe_read(struct backend *b, enum upstream_result result, long status,
                             const char *body, size_t len)
{
    b->ready = result == UPSTREAM_OK && status == 200;
    if (!b->ready) return;
    b->not_ready_reason[0] = '\0';
    json_t *j = json_loadb(body, len, 0, NULL);
    struct backend_load *l = &b->load;
    l->valid = json_is_object(j);
    if (l->valid) {
        l->slots = (int)json_integer_value(json_object_get(j, "slots"));
        l->busy_slots = (int)json_integer_value(json_object_get(j, "busy_slots"));
        l->queue_depth = (int)json_integer_value(json_object_get(j, "queue_depth"));
        l->tokens_per_s = json_number_value(json_object_get(j, "tokens_per_s"));
        l->ttft_ms = json_number_value(json_object_get(j, "ttft_ms"));
        l->prompt_tokens = (uint64_t)json_integer_value(json_object_get(j, "prompt_tokens_total"));
        l->prefix_tokens_reused =
            (uint64_t)json_integer_value(json_object_get(j, "prefix_tokens_reused"));
        l->prefix_hits = (uint64_t)json_integer_value(json_object_get(j, "prefix_hits"));
        l->queue_ms_avg = json_number_value(json_object_get(j, "queue_ms_avg"));
        l->prefill_ms_avg = json_number_value(json_object_get(j, "prefill_ms_avg"));
        l->decode_ms_avg = json_number_value(json_object_get(j, "decode_ms_avg"));
    }
    json_decref(j);
}

/* Without a running gateway: a missing model file is certain; a present one is no proof. */
static bool local_inspect(struct backend *b)
{
    const struct backend_conf *c = b->conf;
    struct stat st;
    if (stat(c->model_path, &st) != 0)
        snprintf(b->not_ready_reason, sizeof b->not_ready_reason, "model file %s missing",
                 c->model_path);
    else
        snprintf(b->not_ready_reason, sizeof b->not_ready_reason,
                 "model file present (%.1f MB); engine starts with the gateway",
                 (double)st.st_size / 1e6);
    b->ready = access(c->model_path, R_OK) == 0;
    return !b->ready;
}

/* ---- a remote engine ---------------------------------------------------------------- */

static int remote_init(struct backend *b, struct err *err)
{
    if (provider_openai.init(b, err) != 0) return -1; /* the token becomes the Bearer header */
    /* base_url is the engine's root + "/v1"; /stats sits at its root. */
    size_t n = strlen(b->conf->base_url) - 2; /* keep the "/" before "v1" */
    char *stats = malloc(n + 6);
    if (stats == NULL) return err_oom(err);
    snprintf(stats, n + 6, "%.*sstats", (int)n, b->conf->base_url);
    b->state = stats;
    snprintf(b->not_ready_reason, sizeof b->not_ready_reason, "not probed yet");
    return 0;
}

static void remote_destroy(struct backend *b)
{
    free(b->state);
    b->state = NULL;
}

static int remote_build(struct backend *b, const struct provider_request *pr, struct arena *arena,
                        struct upstream_request *out, struct err *err)
{
    if (openai_upstream_request(b, pr, arena, out, err) != 0) return -1;
    out->ca_file = b->conf->tls_ca;
    return 0;
}

static void remote_probe(const struct backend *b, struct upstream_request *out)
{
    *out = (struct upstream_request){
        .url = b->state,
        .headers = b->headers,
        .connect_timeout_ms = b->conf->connect_timeout_ms,
        .timeout_ms = 2000,
        .get = true,
        .ca_file = b->conf->tls_ca,
    };
}

/* As an engine started here, and the reasons a remote one gives. */
static void remote_probe_read(struct backend *b, enum upstream_result result, long status,
                              const char *body, size_t len)
{
    local_probe_read(b, result, status, body, len);
    if (b->ready) return;
    if (result != UPSTREAM_OK)
        snprintf(b->not_ready_reason, sizeof b->not_ready_reason, "remote engine %s unreachable",
                 (const char *)b->state);
    else if (status == 401)
        snprintf(b->not_ready_reason, sizeof b->not_ready_reason,
                 "remote engine refused our token (401)");
    else
        snprintf(b->not_ready_reason, sizeof b->not_ready_reason,
                 "remote engine answered %ld (loading?)", status);
}

/* Without a running gateway there is nothing certain to say: probe it. */
static bool remote_inspect(struct backend *b)
{
    (void)b;
    return false;
}

const struct provider_ops provider_local_remote = {
    .type = "local",
    .self_hosted = true,
    .supervised = false,
    .init = remote_init,
    .build = remote_build,
    .probe = remote_probe,
    .probe_read = remote_probe_read,
    .inspect = remote_inspect,
    .destroy = remote_destroy,
};

const struct provider_ops provider_local = {
    .type = "local",
    .self_hosted = true,
    .supervised = true,
    .init = local_init,
    .build = local_build,
    .probe = local_probe,
    .probe_read = local_probe_read,
    .inspect = local_inspect,
    .destroy = NULL,
};
