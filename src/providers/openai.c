/*
 * DESIGN: any OpenAI-compatible server (OpenAI, vLLM, llama-server, Ollama...). The request
 * is the client's JSON with "model" rewritten, so fields we don't know pass through
 * untouched. Static headers are built once per backend, not per request.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "providers/provider.h"
#include "util/arena.h"

static void free_json_string(void *p)
{
    free(p);
}

char *openai_body_for_target(json_t *body, const char *target_model, bool stream,
                             struct arena *arena, size_t *len, struct err *err)
{
    if (json_object_set_new(body, "model", json_string(target_model)) != 0) {
        err_oom(err);
        return NULL;
    }
    if (stream) {
        json_t *so = json_object_get(body, "stream_options");
        if (!json_is_object(so)) {
            so = json_object();
            if (so == NULL || json_object_set_new(body, "stream_options", so) != 0) {
                err_oom(err);
                return NULL;
            }
        }
        if (json_object_set_new(so, "include_usage", json_true()) != 0) {
            err_oom(err);
            return NULL;
        }
    }
    char *s = json_dumps(body, JSON_COMPACT);
    if (s == NULL || arena_on_free(arena, free_json_string, s) != 0) {
        free(s);
        err_oom(err);
        return NULL;
    }
    *len = strlen(s);
    return s;
}

static int openai_init(struct backend *b, struct err *err)
{
    struct curl_slist *h = NULL, *t;
    h = curl_slist_append(h, "Content-Type: application/json");
    /* No "Expect: 100-continue" round trip for large bodies. */
    if (h && (t = curl_slist_append(h, "Expect:"))) h = t;
    else goto oom;
    if (b->conf->api_key.value) {
        size_t n = strlen(b->conf->api_key.value) + 32;
        char *line = malloc(n);
        if (line == NULL) goto oom;
        snprintf(line, n, "Authorization: Bearer %s", b->conf->api_key.value);
        t = curl_slist_append(h, line);
        memset(line, 0, n); /* don't leave the key in freed heap */
        free(line);
        if (t == NULL) goto oom;
        h = t;
    }
    b->headers = h;
    return 0;
oom:
    curl_slist_free_all(h);
    return err_oom(err);
}

static int openai_build(struct backend *b, const struct provider_request *pr, struct arena *arena,
                        struct upstream_request *out, struct err *err)
{
    size_t len = 0;
    char *body = openai_body_for_target(pr->body, pr->target_model, pr->stream, arena, &len, err);
    if (body == NULL) return -1;
    char *url = arena_printf(arena, "%s/%s", b->conf->base_url, pr->endpoint);
    if (url == NULL) return err_oom(err);
    *out = (struct upstream_request){
        .url = url,
        .headers = b->headers,
        .body = body,
        .body_len = len,
        .timeout_ms = b->conf->timeout_ms,
        .connect_timeout_ms = b->conf->connect_timeout_ms,
    };
    return 0;
}

const struct provider_ops provider_openai = {
    .type = "openai",
    .init = openai_init,
    .build = openai_build,
    .destroy = NULL,
};
