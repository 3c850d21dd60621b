/*
 * cost/report — spend reports over the ledger: totals grouped by model, key, team, customer
 * or backend for a time range, plus the month-end projection and the anomaly flag.
 *
 *   projection: month-to-date spend + (spend over the trailing 7 days / 7) × days left in
 *               the month (UTC)
 *   anomaly:    spend in the last hour > factor × the mean hourly spend over the 7 days
 *               before it (factor 3 by default); never flagged on an empty history
 *
 * Runs store queries: call it off the event loop (store jobs) or from the CLI.
 * Ownership: the report owns its lines; free with spend_report_free.
 */
#ifndef STRATUS_COST_REPORT_H
#define STRATUS_COST_REPORT_H

#include <stdbool.h>
#include <jansson.h>
#include <stdio.h>

#include "store/store.h"

#define SPEND_REPORT_MAX_LINES 1000

struct spend_report {
    enum spend_group by;
    int64_t from_ms, to_ms, now_ms;
    struct spend_line *lines;
    int n;
    struct spend_line total;
    double month_to_date_usd, trailing_daily_usd, projected_month_usd;
    double last_hour_usd, trailing_hourly_usd, anomaly_factor;
    bool anomaly;
};

/** Fills `out`. @return 0, or -1 with `why`. */
int spend_report_build(struct store_handle *store, enum spend_group by, int64_t from_ms,
                       int64_t to_ms, int64_t now_ms, double anomaly_factor,
                       struct spend_report *out, char *why, size_t why_size);

void spend_report_free(struct spend_report *r);

/** The report as a JSON document (a new reference), or NULL on OOM. */
json_t *spend_report_json(const struct spend_report *r);

/** The report as an aligned table for people. */
void spend_report_print(const struct spend_report *r, FILE *out);

/**
 * Parses a time for reports: "7d", "12h", "30m" (that long before `now_ms`), a date
 * "2026-11-01" (UTC midnight), "2026-11-01T12:00:00Z", or milliseconds since the epoch.
 * @return 0, or -1 when it is none of these.
 */
int report_parse_time(const char *s, int64_t now_ms, int64_t *out_ms);

#endif
