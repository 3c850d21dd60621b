/*
 * DESIGN: span_fill runs on the loop for every sampled request, so it only copies (no
 * allocation, no URL parsing); everything that costs — the URL's host, the JSON — is left to
 * span_export_json on the exporter's thread. The JSON is built with jansson: the OTLP JSON
 * mapping wants 64-bit integers as strings and ids as hex (not base64, unlike proto3's
 * default), which is easy to get wrong by hand.
 */
#include "obs/span.h"

#include <curl/curl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "http/server.h"
#include "obs/record.h"
#include "obs/traceparent.h"
#include "util/utf8.h"

static void copy_field(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

static const char *operation_of(const char *endpoint)
{
    if (endpoint == NULL) return "";
    if (strcmp(endpoint, "chat/completions") == 0) return "chat";
    if (strcmp(endpoint, "completions") == 0) return "text_completion";
    if (strcmp(endpoint, "embeddings") == 0) return "embeddings";
    return "";
}

/* gen_ai.provider.name's well-known values where the convention has one. */
static const char *provider_of(enum backend_type t)
{
    switch (t) {
    case BACKEND_OPENAI:
        return "openai";
    case BACKEND_ANTHROPIC:
        return "anthropic";
    case BACKEND_BEDROCK:
        return "aws.bedrock";
    case BACKEND_LOCAL:
        return "stratus.local";
    }
    return "";
}

static const struct backend_conf *find_backend(const struct config *cfg, const char *name)
{
    for (size_t i = 0; cfg && name && i < cfg->n_backends; i++)
        if (strcmp(cfg->backends[i].name, name) == 0) return &cfg->backends[i];
    return NULL;
}

void span_fill(struct span *s, const struct request_record *r, const struct trace_context *tc,
               const struct config *cfg, uint64_t now_ns, uint64_t now_unix_ns)
{
    const struct http_request *req = r->req;
    memset(s, 0, sizeof *s);
    memcpy(s->trace_id, tc->trace_id, sizeof s->trace_id);
    memcpy(s->span_id, tc->span_id, sizeof s->span_id);
    memcpy(s->parent_id, tc->parent_id, sizeof s->parent_id);
    s->has_parent = tc->has_parent;
    s->end_unix_ns = now_unix_ns;
    s->start_unix_ns = now_unix_ns - (now_ns > req->start_ns ? now_ns - req->start_ns : 0);
    s->http_status = r->status;
    copy_field(s->http_method, sizeof s->http_method, req->method);
    copy_field(s->url_path, sizeof s->url_path, req->path);
    copy_field(s->request_id, sizeof s->request_id, req->request_id);
    const char *path = strncmp(req->path, "/v1/", 4) == 0 ? req->path + 4 : req->path;
    copy_field(s->operation, sizeof s->operation, operation_of(r->endpoint ? r->endpoint : path));
    copy_field(s->request_model, sizeof s->request_model, r->model);
    s->attempts = (int)r->attempts;
    s->stream = r->stream;
    if (r->attempts) {
        copy_field(s->backend, sizeof s->backend, r->backend);
        copy_field(s->response_model, sizeof s->response_model, r->target_model);
        const struct backend_conf *b = find_backend(cfg, r->backend);
        if (b) {
            copy_field(s->provider, sizeof s->provider, provider_of(b->type));
            if (b->base_url)
                copy_field(s->server_url, sizeof s->server_url, b->base_url);
            else if (b->type == BACKEND_BEDROCK && b->region)
                snprintf(s->server_url, sizeof s->server_url,
                         "https://bedrock-runtime.%s.amazonaws.com", b->region);
        }
    }
    copy_field(s->route_policy, sizeof s->route_policy, r->route_policy);
    copy_field(s->route_reason, sizeof s->route_reason, r->route_reason);
    bool usage = r->accounted && r->usage.prompt >= 0;
    s->input_tokens = usage ? r->usage.prompt : -1;
    s->output_tokens = usage ? r->usage.completion : -1;
    s->usage_estimated = usage && r->usage.estimated;
    s->cost_known = r->accounted && r->cost_known;
    s->cost_usd = s->cost_known ? r->cost_usd : 0;
    /* error.type: the status code for a failed request (the HTTP convention's choice, low
     * cardinality); a stream that broke after its 200 says so. */
    if (r->status >= 400)
        snprintf(s->error_type, sizeof s->error_type, "%d", r->status);
    else if (r->error)
        copy_field(s->error_type, sizeof s->error_type, "stream_interrupted");
    if (r->status >= 500 || (r->status < 400 && r->error))
        copy_field(s->error_msg, sizeof s->error_msg, r->error);
}

/* ---- OTLP JSON ---------------------------------------------------------------------- */

/* {"key": k, "value": {<type>: v}}; the value is stolen. */
static int add_attr(json_t *attrs, const char *key, const char *type, json_t *v)
{
    json_t *a = json_pack("{s:s, s:{s:o}}", "key", key, "value", type, v);
    return a ? json_array_append_new(attrs, a) : -1;
}

/* A JSON string of `v`, whose fixed-size copy may have cut a character in two (or whose
 * upstream text was never UTF-8): jansson refuses such bytes, so they become '?'. */
static json_t *text(const char *v)
{
    char buf[256];
    size_t n = strlen(v), w = 0;
    for (size_t i = 0; i < n && w + 4 < sizeof buf;) {
        size_t k = utf8_sequence((const unsigned char *)v + i, n - i);
        if (k == 0) {
            buf[w++] = '?';
            i++;
            continue;
        }
        memcpy(buf + w, v + i, k);
        w += k;
        i += k;
    }
    return json_stringn(buf, w);
}

static int add_str(json_t *attrs, const char *key, const char *v)
{
    if (v == NULL || v[0] == '\0') return 0; /* absent rather than empty */
    return add_attr(attrs, key, "stringValue", text(v));
}

static int add_int(json_t *attrs, const char *key, long long v)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%lld", v); /* int64 is a string in the proto3 JSON mapping */
    return add_attr(attrs, key, "intValue", json_string(buf));
}

static int add_server(json_t *attrs, const char *url)
{
    if (url[0] == '\0') return 0;
    CURLU *u = curl_url();
    char *host = NULL, *port = NULL;
    int rc = 0;
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
        rc = add_str(attrs, "server.address", host);
        if (rc == 0 && curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK)
            rc = add_int(attrs, "server.port", strtoll(port, NULL, 10));
    }
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return rc;
}

static json_t *span_json(const struct span *s)
{
    char trace[33], id[17], parent[17], start[24], end[24], name[200];
    trace_hex(s->trace_id, 16, trace);
    trace_hex(s->span_id, 8, id);
    trace_hex(s->parent_id, 8, parent);
    snprintf(start, sizeof start, "%" PRIu64, s->start_unix_ns);
    snprintf(end, sizeof end, "%" PRIu64, s->end_unix_ns);
    /* The GenAI convention's span name, "{operation} {model}"; the HTTP one otherwise. */
    if (s->operation[0] && s->request_model[0])
        snprintf(name, sizeof name, "%s %s", s->operation, s->request_model);
    else
        snprintf(name, sizeof name, "%s %s", s->http_method, s->url_path);
    json_t *attrs = json_array();
    json_t *j = json_pack("{s:s, s:s, s:s, s:i, s:s, s:s}", "traceId", trace, "spanId", id, "name",
                          name, "kind", 2 /* SPAN_KIND_SERVER */, "startTimeUnixNano", start,
                          "endTimeUnixNano", end);
    if (attrs == NULL || j == NULL) goto oom;
    if (s->has_parent && json_object_set_new(j, "parentSpanId", json_string(parent)) != 0) goto oom;
    int rc = add_str(attrs, "gen_ai.operation.name", s->operation) |
             add_str(attrs, "gen_ai.request.model", s->request_model) |
             add_str(attrs, "gen_ai.response.model", s->response_model) |
             add_str(attrs, "gen_ai.provider.name", s->provider) |
             add_server(attrs, s->server_url) |
             add_str(attrs, "http.request.method", s->http_method) |
             add_str(attrs, "url.path", s->url_path) |
             add_int(attrs, "http.response.status_code", s->http_status) |
             add_str(attrs, "error.type", s->error_type) |
             add_str(attrs, "stratus.request_id", s->request_id) |
             add_str(attrs, "stratus.backend", s->backend) |
             add_str(attrs, "stratus.route.policy", s->route_policy) |
             add_str(attrs, "stratus.route.reason", s->route_reason) |
             add_int(attrs, "stratus.attempts", s->attempts) |
             add_attr(attrs, "stratus.stream", "boolValue", json_boolean(s->stream));
    if (s->input_tokens >= 0)
        rc |= add_int(attrs, "gen_ai.usage.input_tokens", s->input_tokens) |
              add_int(attrs, "gen_ai.usage.output_tokens",
                      s->output_tokens > 0 ? s->output_tokens : 0) |
              add_attr(attrs, "stratus.usage.estimated", "boolValue",
                       json_boolean(s->usage_estimated));
    if (s->cost_known)
        rc |= add_attr(attrs, "stratus.cost_usd", "doubleValue", json_real(s->cost_usd));
    if (rc != 0) goto oom;
    /* Status: ERROR for what the server got wrong (5xx, a broken stream); a 4xx is the
     * client's and stays UNSET on a server span, as the HTTP convention says. */
    json_t *status = s->http_status >= 500 || (s->http_status < 400 && s->error_type[0])
                         ? json_pack("{s:i, s:o}", "code", 2, "message", text(s->error_msg))
                         : json_object();
    if (status == NULL || json_object_set_new(j, "status", status) != 0 ||
        json_object_set_new(j, "attributes", attrs) != 0) {
        attrs = NULL;
        goto oom;
    }
    return j;
oom:
    json_decref(attrs);
    json_decref(j);
    return NULL;
}

char *span_export_json(const struct span *spans, size_t n, const char *service_name,
                       const char *service_version)
{
    char *out = NULL;
    json_t *list = json_array();
    json_t *root = json_pack(
        "{s:[{s:{s:[{s:s, s:{s:s}}, {s:s, s:{s:s}}]}, s:[{s:{s:s, s:s}, s:o}]}]}", "resourceSpans",
        "resource", "attributes", "key", "service.name", "value", "stringValue", service_name,
        "key", "service.version", "value", "stringValue", service_version, "scopeSpans", "scope",
        "name", "stratus", "version", service_version, "spans", json_incref(list));
    if (list == NULL || root == NULL) goto out;
    for (size_t i = 0; i < n; i++) {
        json_t *s = span_json(&spans[i]);
        if (s == NULL || json_array_append_new(list, s) != 0) goto out;
    }
    out = json_dumps(root, JSON_COMPACT);
out:
    json_decref(list);
    json_decref(root);
    return out;
}
