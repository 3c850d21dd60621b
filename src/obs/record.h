/*
 * obs/record — what one finished request leaves behind: its JSON log line and its ledger
 * row, filled from one description, so the two can never disagree.
 *
 * Every request to the API writes a log line (when log.requests is on); those that reached
 * the model API (refused ones included: bad key, bad body, unknown model, limits) also write
 * a ledger row. The caller describes the request once, at its end, in a request_record.
 *
 * Thread: event-loop thread (ledger_append is thread-safe; the log batches per loop turn).
 * Ownership: everything in a request_record is borrowed for the call.
 */
#ifndef STRATUS_RECORD_H
#define STRATUS_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cost/cost.h"

struct http_request;
struct ledger;
struct metrics;
struct principal;

/* Where finished requests go: the ledger (a row) and the metrics (counts); either NULL. */
struct record_sinks {
    struct ledger *ledger;
    struct metrics *metrics;
};

struct request_record {
    const struct http_request *req; /* id, method, path, arrival time, log switch */
    const char *surface;            /* the inbound API ("openai", "bedrock", …), or NULL */
    int status;                     /* what the client got (499: it left first) */
    const char *error;              /* why it failed, or NULL */
    const char *error_code;         /* its code ("rate_limit_exceeded", …), or NULL */
    const char *model;              /* the model group asked for, or NULL */
    bool model_known;               /* `model` is a configured group (else a client's word) */
    const char *endpoint;           /* "chat/completions" …; NULL: the path after /v1/ */
    const struct principal *who;    /* NULL before authentication */
    const char *customer;           /* NULL or "" when none */
    bool stream;
    /* Where it went; NULL/0 when no target was tried. */
    const char *backend, *target_model;
    size_t attempts;
    const char *route_policy, *route_reason;
    uint64_t first_byte_ns; /* monotonic; 0 when nothing was sent */
    /* What it used and cost; accounted false: never settled (refused before routing). */
    bool accounted;
    struct usage usage; /* -1 fields: unknown */
    bool cost_known;
    double cost_usd;
    const char *guard;    /* guards that fired (names only), or NULL */
    const char *trace_id; /* the request's W3C trace id (32 hex), or NULL: logged */
    const char *cache;    /* the response cache: "hit", "miss", "bypass", or NULL */
    double saved_usd;     /* a hit: what the answer cost when it was made (record_set_call) */
    const struct tier_conf *tier; /* the customer tier (docs/tiers.md), or NULL: none */
};

struct ledger_row;

struct call_info;

/** Copies where a call went and what it used and cost (`in`, borrowed) into `r`. */
void record_set_call(struct request_record *r, const struct call_info *in);

/** The ledger row for `r`, at monotonic `now` (ns) = wall clock `now_wall_ms`. */
void record_fill_row(const struct request_record *r, uint64_t now, int64_t now_wall_ms,
                     struct ledger_row *out);

/** Writes the log line (if r->req->log) and, when `to` is not NULL, the ledger row and the
 *  request's metrics. @return the row's ledger sequence number (ledger_when_written), 0
 *  when no row was queued. */
uint64_t record_request(const struct record_sinks *to, const struct request_record *r);

#endif
