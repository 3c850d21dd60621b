/*
 * store/rollup — the ledger's aggregate tables, folded in memory from a batch of rows.
 *
 * Every batch of rows a store appends also adds to table `rollups`, in the same transaction:
 * one line per (span, dimension, bucket, value) holding sums — requests, errors (status >=
 * 400), tokens, cost, latency and so on. A span is an hour (3,600,000 ms) or a UTC day
 * (86,400,000 ms); bucket_ms is a multiple of it. The dimensions are what reports and
 * budgets group by, one at a time: model, key, team, customer, backend, target (model) and
 * route. Each row adds to one line per dimension and span, so a dimension's lines per
 * bucket are its distinct values, not the product of all of them (2,000 customers × 50 keys
 * × 6 models would be nearly a line per request). Reports and budget seeds read these lines
 * instead of raw rows: their cost depends on the hours and groups in a range, not on how
 * many requests the ledger holds.
 *
 * The route column holds the route's class, not its text: "latency; lowest ttfb up (12.0
 * ms); after 2 failed attempts" becomes "latency; lowest ttfb up; after failover"
 * (rollup_route_class), or every request would be a line of its own.
 *
 * Thread: pure functions over caller memory.
 */
#ifndef STRATUS_STORE_ROLLUP_H
#define STRATUS_STORE_ROLLUP_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define ROLLUP_HOUR_MS 3600000LL
#define ROLLUP_DAY_MS  86400000LL

/* Rows a backfill or an export reads per query (keyset pages, bounded memory). */
#define LEDGER_PAGE_ROWS 4096

/* The dimensions, in the order of enum spend_group, then the target model. */
enum rollup_dim {
    ROLLUP_MODEL,
    ROLLUP_KEY,
    ROLLUP_TEAM,
    ROLLUP_CUSTOMER,
    ROLLUP_BACKEND,
    ROLLUP_ROUTE,
    ROLLUP_TARGET,
    ROLLUP_DIMS
};

/* Every dimension's name as an SQL list (retention walks the primary key by them). */
#define ROLLUP_DIM_LIST "('model', 'key', 'team', 'customer', 'backend', 'route', 'target')"

/** The dimension's name in column `dim` ("model", "key", …): the spend group names. */
const char *rollup_dim_name(enum rollup_dim d);

/* One line of table `rollups`, or what a batch adds to one. */
struct rollup_line {
    int64_t span_ms, bucket_ms;
    enum rollup_dim dim;
    char value[160];
    int64_t requests, errors;
    int64_t prompt_tokens, completion_tokens, cached_tokens; /* unknown counts add 0 */
    double cost_usd;                                         /* known costs only */
    int64_t unknown_cost;                                    /* requests whose cost is unknown */
    int64_t estimated;                                       /* requests with estimated usage */
    double latency_ms;                                       /* sum */
    double ttft_ms; /* sum over requests that sent a byte */
    int64_t ttft_count;
    double saved_usd; /* cache hits: what their answers cost when made */
    int64_t cache_hits;
};

/* The columns of table `rollups`, key first (ROLLUP_N_KEY of them), in struct order. */
#define ROLLUP_COLUMNS                                                                             \
    "span_ms, bucket_ms, dim, value, requests, errors, prompt_tokens, completion_tokens, "         \
    "cached_tokens, cost_usd, unknown_cost, estimated, latency_ms, ttft_ms, ttft_count, "          \
    "saved_usd, cache_hits"
#define ROLLUP_N_COLUMNS 17
#define ROLLUP_N_KEY     4

/* The upsert's conflict target and what it adds (the same SQL for SQLite and PostgreSQL). */
#define ROLLUP_UPSERT_TAIL                                                                         \
    " ON CONFLICT (span_ms, dim, bucket_ms, value) DO UPDATE SET requests = rollups.requests + "   \
    "excluded.requests, "                                                                          \
    "errors = rollups.errors + excluded.errors, "                                                  \
    "prompt_tokens = rollups.prompt_tokens + excluded.prompt_tokens, "                             \
    "completion_tokens = rollups.completion_tokens + excluded.completion_tokens, "                 \
    "cached_tokens = rollups.cached_tokens + excluded.cached_tokens, "                             \
    "cost_usd = rollups.cost_usd + excluded.cost_usd, "                                            \
    "unknown_cost = rollups.unknown_cost + excluded.unknown_cost, "                                \
    "estimated = rollups.estimated + excluded.estimated, "                                         \
    "latency_ms = rollups.latency_ms + excluded.latency_ms, "                                      \
    "ttft_ms = rollups.ttft_ms + excluded.ttft_ms, "                                               \
    "ttft_count = rollups.ttft_count + excluded.ttft_count, "                                      \
    "saved_usd = rollups.saved_usd + excluded.saved_usd, "                                         \
    "cache_hits = rollups.cache_hits + excluded.cache_hits"

/* ---- margin rollups (docs/tiers.md) --------------------------------------------------
 * What tiers charge, in table `margin_rollups`: per (span, dim, bucket, value) with dim
 * "tier" or "customer", the sums the margin report reads (struct margin_line's figures).
 * Written with the rows, in the same transaction, like `rollups`; a separate table because
 * its figures and dimensions are not the spend report's. */
enum margin_dim { MARGIN_DIM_TIER, MARGIN_DIM_CUSTOMER, MARGIN_DIMS };

struct margin_rollup_line {
    int64_t span_ms, bucket_ms;
    enum margin_dim dim;
    char value[160];
    int64_t requests;
    double revenue_usd, cost_usd, margin_usd; /* known figures only */
    int64_t unpriced, unknown_revenue, unknown_cost;
};

#define MARGIN_ROLLUP_COLUMNS                                                                      \
    "span_ms, bucket_ms, dim, value, requests, revenue_usd, cost_usd, margin_usd, unpriced, "      \
    "unknown_revenue, unknown_cost"
#define MARGIN_ROLLUP_N_COLUMNS 11

#define MARGIN_ROLLUP_UPSERT_TAIL                                                                  \
    " ON CONFLICT (span_ms, dim, bucket_ms, value) DO UPDATE SET requests = "                      \
    "margin_rollups.requests + excluded.requests, "                                                \
    "revenue_usd = margin_rollups.revenue_usd + excluded.revenue_usd, "                            \
    "cost_usd = margin_rollups.cost_usd + excluded.cost_usd, "                                     \
    "margin_usd = margin_rollups.margin_usd + excluded.margin_usd, "                               \
    "unpriced = margin_rollups.unpriced + excluded.unpriced, "                                     \
    "unknown_revenue = margin_rollups.unknown_revenue + excluded.unknown_revenue, "                \
    "unknown_cost = margin_rollups.unknown_cost + excluded.unknown_cost"

/* Lines a row adds to: one per margin dimension and span. */
#define MARGIN_LINES_PER_ROW (2 * MARGIN_DIMS)

/** "tier", "customer". */
const char *margin_dim_name(enum margin_dim d);

/** Folds `n` rows into margin lines (`out` holds MARGIN_LINES_PER_ROW × n), summing rows
 *  that share a line, sorted by key (span, dim, bucket, value): the lock order.
 *  @return the number of lines. */
size_t rollup_fold_margin(const struct ledger_row *rows, size_t n, struct margin_rollup_line *out);

/* Lines a row adds to: one per dimension and span. */
#define ROLLUP_LINES_PER_ROW (2 * ROLLUP_DIMS)

/**
 * Folds `n` rows into lines — each row into its hour's and its day's, per dimension —
 * summing rows that share a line. `out` holds at least ROLLUP_LINES_PER_ROW × n lines. The lines
 * come out in one total order of their keys, so two writers upserting overlapping batches lock rows
 * in the same order (no deadlock on PostgreSQL). @return the number of lines.
 */
size_t rollup_fold(const struct ledger_row *rows, size_t n, struct rollup_line *out);

/* What a store folds a batch into, grown to the largest batch seen and kept between batches
 * (one per store; the writer thread's). */
struct rollup_batch {
    struct rollup_line *lines;
    size_t n_lines, cap_lines;
    struct margin_rollup_line *margin;
    size_t n_margin, cap_margin;
};

/** Folds `n` rows into b->lines (rollup_fold) and b->margin (rollup_fold_margin), growing
 *  them first. @return 0, or -1 with `why` ("out of memory"). */
int rollup_batch_fold(struct rollup_batch *b, const struct ledger_row *rows, size_t n, char *why,
                      size_t size);

/** Frees what `b` holds. */
void rollup_batch_free(struct rollup_batch *b);

/* A store's page reader (its ops->read) and its rollup writer (inside an open transaction). */
typedef int (*rollup_read_cb)(struct store *s, struct ledger_cursor *at, int64_t to_ms,
                              struct ledger_row *out, size_t cap, char *why, size_t why_size);
typedef int (*rollup_add_cb)(struct store *s, const struct rollup_line *lines, size_t n, char *why,
                             size_t why_size);
typedef int (*rollup_exec_cb)(struct store *s, const char *sql, char *why, size_t why_size);

/** Folds every raw row into rollups inside the caller's transaction (migration 9 on a
 *  ledger that has rows), from pages of LEDGER_PAGE_ROWS rows (bounded memory). With
 *  `exec` (PostgreSQL: hash aggregation beats a million upserts) the plain-column
 *  dimensions are INSERT … SELECT … GROUP BY in the database and only the route class is
 *  folded here; without (SQLite sorts to group: folding here is faster), every dimension.
 *  @return 0, or -1 with `why`. */
int rollup_backfill(struct store *s, rollup_read_cb read, rollup_add_cb add, rollup_exec_cb exec,
                    char *why, size_t why_size);

/** The class of a route text (see above) into `out` (always terminated). */
void rollup_route_class(const char *route, char *out, size_t cap);

/**
 * How a report over [from_ms, to_ms) is read: raw rows at the ragged ends, hour lines
 * between, day lines for whole days in the middle (none when `bucket_ms` is an hour: a day
 * line cannot be split into hour buckets). Raw rows are complete only from `kept_from_ms`
 * on (retention deleted older ones; 0 when it never ran): an end before that is read from
 * its whole hour instead — rounded out to the hour, the only inexactness retention brings.
 * Each pair is a half-open range, empty when its start >= its end.
 */
struct rollup_plan {
    int64_t raw[2][2];  /* [from, h1), [h2, to) */
    int64_t hour[2][2]; /* [h1, d1), [d2, h2) */
    int64_t day[2];     /* [d1, d2) */
};

void rollup_plan(int64_t from_ms, int64_t to_ms, int64_t bucket_ms, int64_t kept_from_ms,
                 struct rollup_plan *out);

#endif
