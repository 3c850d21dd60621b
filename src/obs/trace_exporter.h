/*
 * obs/trace_exporter — sends finished spans to an OpenTelemetry collector over OTLP/HTTP
 * (JSON encoding, POST to observability.otlp_endpoint) from a thread of its own, so the
 * event loop never waits on the collector.
 *
 * The loop hands a span over with trace_exporter_submit: one memcpy into a bounded ring
 * under a mutex. When the ring is full the span is dropped and counted — tracing must never
 * slow or break serving. The thread sends up to batch_size spans per request, a short batch
 * after waiting flush_ms for company; a failed export (connection error, timeout, 429, 5xx)
 * is retried with backoff (0.25 s, 0.5 s, 1 s), then its spans are counted as failed and
 * logged (at most a line per 10 s). A 4xx other than 429 is not retried: the collector
 * refuses what we send.
 *
 * Loss bound: spans still queued when the process is killed -9 are lost (at most
 * queue_size). On a clean stop trace_exporter_free sends what is queued within about 2 s.
 *
 * Thread: submit and stats from any thread; new and free from one (the daemon's).
 * Ownership: the exporter copies what it keeps (config strings included).
 */
#ifndef STRATUS_TRACE_EXPORTER_H
#define STRATUS_TRACE_EXPORTER_H

#include <stdbool.h>
#include <stdint.h>

#include "util/err.h"

struct observability_conf;
struct span;
struct trace_exporter;

struct trace_exporter_stats {
    uint64_t queued;   /* waiting now */
    uint64_t exported; /* accepted by the collector */
    uint64_t dropped;  /* refused at submit: the queue was full */
    uint64_t failed;   /* given up on after the retries (or refused by the collector) */
};

/**
 * Starts the exporter thread for `conf` (otlp_endpoint set; read only during the call).
 * libcurl must already be initialised (curl_global_init).
 * @return an *owned* exporter (trace_exporter_free), or NULL with `err` (500).
 */
struct trace_exporter *trace_exporter_new(const struct observability_conf *conf,
                                          const char *service_version, struct err *err);

/** Queues a copy of `s`. @return true, or false when the queue is full (counted as dropped). */
bool trace_exporter_submit(struct trace_exporter *x, const struct span *s);

/** The counters so far. */
struct trace_exporter_stats trace_exporter_stats(struct trace_exporter *x);

/** Sends what is queued (giving up after about 2 s), stops the thread, frees. NULL-safe. */
void trace_exporter_free(struct trace_exporter *x);

#endif
