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
#include "util/json_text.h"

struct edit {
    size_t from, to;  /* replace bytes [from, to) of the original ... */
    const char *text; /* ... with this */
};

/* The bytes that removing the member whose value is token `v` takes: from its key's quote
 * through the comma after it, or from the comma before it when it is the last member. */
static struct edit cut_member(const struct json_scan *s, int v)
{
    size_t from = (size_t)s->tok[v - 1].start - 1, to = (size_t)s->tok[v].end;
    if (s->tok[v].type == JSMN_STRING) to++; /* a string token's end excludes its quote */
    size_t after = to;
    while (after < s->len && strchr(" \t\r\n", s->js[after])) after++;
    if (after < s->len && s->js[after] == ',') return (struct edit){from, after + 1, ""};
    size_t before = from;
    while (before > 0 && strchr(" \t\r\n", s->js[before - 1])) before--;
    if (before > 0 && s->js[before - 1] == ',') return (struct edit){before - 1, to, ""};
    return (struct edit){from, to, ""};
}

char *openai_body_for_target(const struct openai_request *request, const char *target_model,
                             bool keep_extensions, struct arena *arena, size_t *len,
                             struct err *err)
{
    const struct json_scan *s = &request->scan;
    struct edit edits[3];
    size_t n_edits = 0;

    /* "model": the string token's bytes exclude its quotes; replace quotes and all. */
    size_t mlen = strlen(target_model);
    char *quoted = arena_alloc(arena, mlen * 6 + 3);
    if (quoted == NULL) goto oom;
    quoted[0] = '"';
    size_t q = json_escape(quoted + 1, mlen * 6 + 1, target_model, mlen);
    memcpy(quoted + 1 + q, "\"", 2);
    const jsmntok_t *mt = &s->tok[request->model_tok];
    edits[n_edits++] = (struct edit){(size_t)mt->start - 1, (size_t)mt->end + 1, quoted};

    if (request->stream) {
        int so = request->stream_options_tok;
        if (so < 0) {
            size_t at = (size_t)s->tok[0].start + 1; /* right after the root '{' */
            edits[n_edits++] =
                (struct edit){at, at, "\"stream_options\":{\"include_usage\":true},"};
        } else if (!json_scan_is_object(s, so)) { /* null */
            edits[n_edits++] = (struct edit){(size_t)s->tok[so].start, (size_t)s->tok[so].end,
                                             "{\"include_usage\":true}"};
        } else {
            int iu = json_scan_get(s, so, "include_usage");
            if (iu >= 0) {
                edits[n_edits++] =
                    (struct edit){(size_t)s->tok[iu].start, (size_t)s->tok[iu].end, "true"};
            } else {
                size_t at = (size_t)s->tok[so].start + 1;
                edits[n_edits++] = (struct edit){at, at,
                                                 json_scan_size(s, so) ? "\"include_usage\":true,"
                                                                       : "\"include_usage\":true"};
            }
        }
    }
    if (!keep_extensions && request->labels_tok > 0)
        edits[n_edits++] = cut_member(s, request->labels_tok);
    for (size_t i = 1; i < n_edits; i++) /* in text order */
        for (size_t k = i; k > 0 && edits[k].from < edits[k - 1].from; k--) {
            struct edit t = edits[k];
            edits[k] = edits[k - 1];
            edits[k - 1] = t;
        }
    size_t total = s->len;
    for (size_t i = 0; i < n_edits; i++)
        total += strlen(edits[i].text) - (edits[i].to - edits[i].from);
    char *out = arena_alloc(arena, total + 1);
    if (out == NULL) goto oom;
    size_t w = 0, at = 0;
    for (size_t i = 0; i < n_edits; i++) {
        memcpy(out + w, s->js + at, edits[i].from - at);
        w += edits[i].from - at;
        size_t tl = strlen(edits[i].text);
        memcpy(out + w, edits[i].text, tl);
        w += tl;
        at = edits[i].to;
    }
    memcpy(out + w, s->js + at, s->len - at);
    w += s->len - at;
    out[w] = '\0';
    *len = w;
    return out;
oom:
    err_oom(err);
    return NULL;
}

static int openai_init(struct backend *b, struct err *err)
{
    struct curl_slist *h = NULL, *t;
    h = curl_slist_append(h, "Content-Type: application/json");
    /* No "Expect: 100-continue" round trip for large bodies. */
    if (h && (t = curl_slist_append(h, "Expect:")))
        h = t;
    else
        goto oom;
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

int openai_upstream_request(struct backend *b, const struct provider_request *pr,
                            struct arena *arena, struct upstream_request *out, struct err *err)
{
    size_t len = 0;
    char *body = openai_body_for_target(pr->request, pr->target_model, backend_self_hosted(b),
                                        arena, &len, err);
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
    };
    return 0;
}

const struct provider_ops provider_openai = {
    .type = "openai",
    .init = openai_init,
    .build = openai_upstream_request,
    .destroy = NULL,
};
