/*
 * cost/report — spend reports over the ledger: totals grouped by model, key, team, customer
 * or backend for a time range — optionally as a time series (hour or day buckets) and cut
 * to the top N groups with the rest as "other" — plus the month-end projection and the
 * anomaly flag; as JSON, CSV or a table.
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

/* A report fetches every line its range holds (no silent cut); past this many lines it
 * fails and asks for a narrower range or a coarser bucket. */
#define SPEND_REPORT_MAX_LINES 200000

enum spend_bucket { SPEND_BUCKET_NONE = 0, SPEND_BUCKET_HOUR, SPEND_BUCKET_DAY };

/* What a report covers. */
struct spend_query {
    enum spend_group by;
    enum spend_bucket bucket; /* a time series: one line per (UTC hour or day) × group */
    int top;                  /* keep the `top` groups with the largest cost over the whole
                                 range and sum the rest into one "other" line (per bucket);
                                 0 keeps every group */
    int64_t from_ms, to_ms, now_ms;
    double anomaly_factor; /* <= 0: 3 */
};

struct spend_report {
    enum spend_group by;
    enum spend_bucket bucket;
    int top;
    int64_t from_ms, to_ms, now_ms;
    /* by group over the range, biggest cost first ("other" last); without buckets these
     * are the report's lines */
    struct spend_line *groups;
    int n_groups;
    /* with buckets: by bucket (oldest first), then cost within it ("other" last); only
     * buckets with requests appear. Without buckets: the same array as `groups`. */
    struct spend_line *lines;
    int n;
    struct spend_line total;
    double month_to_date_usd, trailing_daily_usd, projected_month_usd;
    double last_hour_usd, trailing_hourly_usd, anomaly_factor;
    bool anomaly;
};

/** Fills `out` (free with spend_report_free, also after a failure). @return 0, -1 with
 *  `why` (the store failed, out of memory), or -2 with `why` (more lines than
 *  SPEND_REPORT_MAX_LINES: the caller asked for too much). */
int spend_report_build(struct store_handle *store, const struct spend_query *q,
                       struct spend_report *out, char *why, size_t why_size);

void spend_report_free(struct spend_report *r);

/** "hour", "day" → the enum; "" and "none" → SPEND_BUCKET_NONE. @return -1 if none. */
int spend_bucket_parse(const char *s);
const char *spend_bucket_name(enum spend_bucket b); /* "hour", "day" or "none" */
int64_t spend_bucket_ms(enum spend_bucket b);       /* 0 for none */

/** Orders lines by bucket (oldest first), then cost (largest first), then group name (byte
 *  order): the same order whatever order the store returned them in. */
void spend_lines_sort(struct spend_line *lines, int n);

/**
 * Top-N: lines whose group is not among the first `top` groups of `ranked` (lines by group,
 * biggest first; may be `lines` itself) are summed into one "other" line per bucket, placed
 * after that bucket's kept lines, its other_groups counting the lines folded. `lines` must
 * be sorted (spend_lines_sort) and are rewritten in place (never more lines than before).
 * @return the new count, or -1 when out of memory (`lines` unchanged then).
 */
int spend_lines_top(struct spend_line *lines, int n, const struct spend_line *ranked, int n_ranked,
                    int top);

/** The report as a JSON document (a new reference), or NULL on OOM. */
json_t *spend_report_json(const struct spend_report *r);

/** The report's lines as CSV (RFC 4180: a header row, CRLF line ends, fields with a comma,
 *  quote, CR or LF quoted with quotes doubled; a group name starting with = + - @ or a tab
 *  gets a leading ' so spreadsheets show it as text instead of running it as a formula).
 *  No total row. @return a malloc'd NUL-terminated string (length in *len), or NULL on OOM. */
char *spend_report_csv(const struct spend_report *r, size_t *len);

/** Writes one CSV field (RFC 4180: quoted when it holds a comma, quote, CR or LF, quotes
 *  doubled); with `text`, a leading = + - @ tab or CR gets a ' (spreadsheets show it as
 *  text instead of running it). */
void report_csv_field(FILE *f, const char *s, bool text);

/** The report as an aligned table for people. */
void spend_report_print(const struct spend_report *r, FILE *out);

/**
 * Parses a time for reports: "7d", "12h", "30m" (that long before `now_ms`), a date
 * "2026-11-01" (UTC midnight), "2026-11-01T12:00:00Z", or milliseconds since the epoch.
 * @return 0, or -1 when it is none of these.
 */
int report_parse_time(const char *s, int64_t now_ms, int64_t *out_ms);

#endif
