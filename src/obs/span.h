/*
 * obs/span — one request as an OpenTelemetry span: filled on the loop from the request's
 * record (obs/record.h) and trace context (obs/traceparent.h), encoded as an OTLP/HTTP
 * JSON export request (opentelemetry-proto ExportTraceServiceRequest, JSON mapping) by the
 * exporter's thread.
 *
 * A span is a flat, fixed-size copy: it outlives the request (it waits in the exporter's
 * queue), so it holds no pointer into the request's arena or the config. Attribute names
 * follow the OpenTelemetry GenAI and HTTP semantic conventions where they exist
 * (gen_ai.*, server.address, http.response.status_code, error.type); what is ours is
 * under stratus.* (docs/observability.md lists them).
 *
 * Thread: any; span_fill reads the record and config it is given (borrowed for the call).
 */
#ifndef STRATUS_SPAN_H
#define STRATUS_SPAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct request_record;
struct trace_context;

struct span {
    uint8_t trace_id[16], span_id[8], parent_id[8];
    bool has_parent;
    uint64_t start_unix_ns, end_unix_ns; /* wall clock */
    int http_status;
    char http_method[8];
    char url_path[128];
    char request_id[72];
    char operation[24]; /* gen_ai.operation.name: chat, text_completion, embeddings */
    char request_model[128], response_model[128];
    char provider[24];    /* gen_ai.provider.name: openai, anthropic, aws.bedrock, … */
    char server_url[256]; /* the backend's base URL: server.address/port, read when encoded */
    char backend[64];
    char route_policy[32], route_reason[160];
    long long input_tokens, output_tokens; /* -1: unknown */
    bool usage_estimated;
    bool cost_known;
    double cost_usd;
    int attempts;
    bool stream;
    char error_type[32]; /* "" when it went well */
    char error_msg[200]; /* the status description of an ERROR span */
};

/**
 * Fills `out` for the finished request `r` in trace `tc`, at monotonic `now_ns` = wall
 * clock `now_unix_ns` (the start is derived from the request's arrival). `cfg` (may be
 * NULL) names the backend's type and URL.
 */
void span_fill(struct span *out, const struct request_record *r, const struct trace_context *tc,
               const struct config *cfg, uint64_t now_ns, uint64_t now_unix_ns);

/**
 * The OTLP/HTTP JSON body exporting `n` spans for a service (`service_name`, resource
 * attribute service.name; `service_version`).
 * @return an *owned* NUL-terminated string (free()), or NULL when out of memory.
 */
char *span_export_json(const struct span *spans, size_t n, const char *service_name,
                       const char *service_version);

#endif
