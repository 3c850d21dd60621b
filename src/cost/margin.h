/*
 * cost/margin — revenue, cost and margin per customer tier or per customer over a time range
 * (docs/tiers.md), with each customer's month-end projection:
 *
 *   projection: month-to-date + (the trailing 7 days / 7) × days left in the month (UTC),
 *               for revenue, cost and margin alike (the spend report's rule)
 *
 * Read from table margin_rollups between raw rows at the ragged ends (store/rollup.h), so a
 * report costs the hours of its range, not its rows.
 *
 * Runs store queries: call it off the event loop (store jobs) or from the CLI.
 * Ownership: the report owns its lines; free with margin_report_free.
 */
#ifndef STRATUS_COST_MARGIN_H
#define STRATUS_COST_MARGIN_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

#include "store/store.h"

/* Past this many groups a report fails and asks for a narrower range. */
#define MARGIN_REPORT_MAX_LINES 100000

struct margin_query {
    bool by_customer; /* else by tier */
    int64_t from_ms, to_ms, now_ms;
};

/* A month-end projection of one line (by customer only). */
struct margin_projection {
    double revenue_usd, cost_usd, margin_usd;
};

struct margin_report {
    struct margin_query query;
    struct margin_line *lines; /* biggest revenue first */
    size_t n;
    struct margin_projection *projected; /* by customer: one per line; else NULL */
    struct margin_line total;            /* the sums of every line ("group" empty) */
};

/** Builds the report. @return 0; -1 with `why` (store error), -2 with `why` when the range
 *  holds more than MARGIN_REPORT_MAX_LINES groups. `r` is always safe to free. */
int margin_report_build(struct store_handle *s, const struct margin_query *q,
                        struct margin_report *r, char *why, size_t why_size);

/** The report as JSON (owned by the caller): {"object":"margin_report","group_by",…,
 *  "data":[{group, requests, revenue_usd, cost_usd, margin_usd, margin_share, …}],
 *  "total":{…}}. */
json_t *margin_report_json(const struct margin_report *r);

/** The report as a table. */
void margin_report_print(const struct margin_report *r, FILE *out);

/** NULL-safe on the report's members; the report itself is the caller's. */
void margin_report_free(struct margin_report *r);

#endif
