/*
 * obs/traceparent — W3C Trace Context (https://www.w3.org/TR/trace-context/): reading a
 * client's `traceparent`, deciding a request's trace and span ids and whether it is
 * sampled, and writing the header sent upstream.
 *
 * Ids come from OpenSSL's CSPRNG (RAND_bytes): a trace id is an identifier others may
 * correlate on, so it must not be guessable from the previous one.
 *
 * Thread: any (no state beyond OpenSSL's RNG, which is thread-safe).
 * Ownership: every buffer is the caller's.
 */
#ifndef STRATUS_TRACEPARENT_H
#define STRATUS_TRACEPARENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* "traceparent: 00-" + 32 + "-" + 16 + "-" + 2: the header line sent upstream. */
#define TRACEPARENT_LEN      55
#define TRACEPARENT_LINE_LEN (sizeof "traceparent: " - 1 + TRACEPARENT_LEN)

/* One request's place in a trace. */
struct trace_context {
    uint8_t trace_id[16];
    uint8_t span_id[8];   /* this request's span (the upstream call's parent) */
    uint8_t parent_id[8]; /* the client's span; all zero when the trace began here */
    bool has_parent;
    bool sampled;   /* the flag sent upstream: the trace is being recorded somewhere */
    bool recording; /* this gateway exports the span (sampled and export on) */
};

/**
 * Parses a `traceparent` value per the W3C rules: version 00 is exactly 55 characters,
 * lowercase hex, trace id and parent id not all zero; a later version (not ff) is read by
 * its first 55 characters when the 56th is absent or '-'.
 * @return 0 with the ids and flags filled, or -1 (invalid: the caller starts a new trace).
 */
int traceparent_parse(const char *value, uint8_t trace_id[16], uint8_t parent_id[8],
                      uint8_t *flags);

/** Writes "00-<trace>-<span>-<flags>" (TRACEPARENT_LEN characters + NUL) into `out`. */
void traceparent_format(const uint8_t trace_id[16], const uint8_t span_id[8], uint8_t flags,
                        char out[TRACEPARENT_LEN + 1]);

/** Lowercase hex of `n` bytes into `out` (2n + 1 bytes). */
void trace_hex(const uint8_t *bytes, size_t n, char *out);

/**
 * Whether a new trace with this id is sampled at `ratio` (0..1): the trace id's low 63 bits
 * against ratio × 2^63, as OpenTelemetry's TraceIdRatioBased sampler does, so every service
 * using the same ratio agrees on the same traces.
 */
bool trace_sampled_by_ratio(const uint8_t trace_id[16], double ratio);

/**
 * Begins a request's trace context from the client's `traceparent` (may be NULL).
 *
 *  - exporting (spans go to a collector): a valid client header continues its trace (its
 *    span becomes the parent, its sampled flag decides: parent-based sampling); otherwise a
 *    new trace, sampled at `ratio`. The request gets a new span id either way.
 *  - not exporting: a valid client header is passed through unchanged (span_id = the
 *    client's parent id, so the upstream's spans hang off the client's); without one there
 *    is nothing to propagate.
 *
 * @return 1 when the request carries a trace context (propagate it), 0 when it carries none
 *         (not exporting, no valid header; or the RNG failed — then the request runs untraced).
 */
int trace_context_begin(struct trace_context *tc, const char *traceparent, bool exporting,
                        double ratio);

/** The header line "traceparent: 00-…" for the upstream call, into `out`. */
void trace_context_header(const struct trace_context *tc, char out[TRACEPARENT_LINE_LEN + 1]);

#endif
