/*
 * obs/metrics — the gateway's Prometheus metrics.
 *
 * Two kinds of figures:
 *   - per request, counted when a request is recorded (metrics_count_request): requests by
 *     surface/model/backend/status, duration and time-to-first-token histograms, token
 *     usage, cost by model/backend/team and by customer (the first `max_customers`
 *     customers get their own series, later ones share customer="other"), attempts and
 *     failovers, refusals by error code, guard hits;
 *   - state, read at scrape time from whoever owns it (router, backends, ledger, guard,
 *     process) and written through the same exposition writer by the caller (api/metrics).
 *
 * Label values that come from clients are never used as they are: an unknown model is
 * counted as model="" (the model label names configured groups only), a customer beyond the
 * cap as "other", so a client cannot grow the series without bound.
 *
 * Exposition: the Prometheus text format 0.0.4, or OpenMetrics 1.0 (counters' TYPE lines
 * without the _total suffix, "# EOF" at the end) when the scraper asks for it.
 *
 * Thread: event-loop thread only (counting is plain arithmetic: no locks on the hot path).
 * Ownership: metrics_new returns an owned registry; strings given to it are copied.
 */
#ifndef STRATUS_METRICS_H
#define STRATUS_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct metrics;

/** @return an *owned* registry, or NULL when out of memory. */
struct metrics *metrics_new(int max_customers);

/** NULL-safe. */
void metrics_free(struct metrics *m);

/* One finished model request, as obs/record describes it. Strings borrowed for the call. */
struct metrics_request {
    const char *surface;         /* "openai", "anthropic", "bedrock", "functions", … */
    const char *model;           /* a configured group's name, or NULL (unknown, refused early) */
    const char *backend;         /* the backend that answered last, or NULL */
    const char *team, *customer; /* NULL or "" when none */
    int status;                  /* what the client got */
    const char *error_code;      /* the error's code (e.g. "rate_limit_exceeded"), or NULL */
    double duration_s;           /* arrival to end */
    double ttft_s;               /* arrival to first byte; < 0 when nothing was sent */
    long long input_tokens;      /* -1: unknown */
    long long output_tokens;     /* -1: unknown */
    bool cost_known;
    double cost_usd;
    size_t attempts;   /* upstream attempts made */
    const char *guard; /* guards that fired: "deny:rule, pii:email, …", or NULL */
    const char *cache; /* the response cache: "hit", "miss", "bypass", or NULL */
    double saved_usd;  /* a hit: what the answer cost when it was made */
};

/** Counts one finished request. Out of memory drops that request's new series (counted in
 *  stratus_metrics_series_dropped_total), never the process. */
void metrics_count_request(struct metrics *m, const struct metrics_request *r);

/** Time to first token at `backend` over every model group: the median and 95th percentile
 *  estimated from the TTFT histogram buckets (linear within a bucket, as Prometheus'
 *  histogram_quantile does; a quantile past the last bound reads as that bound). The
 *  dashboard's backend table; the exposition has the buckets themselves.
 *  @return requests observed (0: *p50_s and *p95_s untouched). */
uint64_t metrics_ttft(const struct metrics *m, const char *backend, double *p50_s, double *p95_s);

/* ---- exposition ------------------------------------------------------------------------ */

enum metrics_format { METRICS_PROMETHEUS = 0, METRICS_OPENMETRICS };

struct metrics_out;

/** A writer for one scrape. @return *owned* (metrics_out_take or metrics_out_free), or NULL. */
struct metrics_out *metrics_out_new(enum metrics_format format);

/** Starts a family. `type`: "counter" (name without "_total": it is added to samples),
 *  "gauge" or "histogram". */
void metrics_family(struct metrics_out *o, const char *name, const char *type, const char *help);

/** Continues family `name` in a later part of a streamed exposition (no HELP/TYPE). */
void metrics_family_continue(struct metrics_out *o, const char *name, const char *type);

/** One sample of the current family: `suffix` is appended to its name ("_total" is added for
 *  counters by the writer; histograms pass "_bucket", "_sum", "_count"). `labels`: name,
 *  value pairs, NULL-terminated (may be NULL); values are escaped. */
void metrics_sample(struct metrics_out *o, const char *suffix, const char *const *labels,
                    double value);

/** Writes the per-request families. */
void metrics_render(const struct metrics *m, struct metrics_out *o);

/** Ends the exposition and hands over the text (*owned*, free()); NULL when out of memory
 *  at any point. Frees the writer. */
char *metrics_out_take(struct metrics_out *o, size_t *len);

/** As metrics_out_take, for a part that more text follows (no OpenMetrics "# EOF"). */
char *metrics_out_take_part(struct metrics_out *o, size_t *len);

/** NULL-safe. */
void metrics_out_free(struct metrics_out *o);

/** The Content-Type of `format`'s exposition. */
const char *metrics_content_type(enum metrics_format format);

#endif
