/* DESIGN: the SQL every store shares; columns are chosen from a fixed list, never from user
 * text. */
#include "store/schema.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const group_columns[] = {"model",    "key_id",  "team",
                                            "customer", "backend", "route"};

const char *spend_group_column(enum spend_group g)
{
    return (unsigned)g < sizeof group_columns / sizeof group_columns[0] ? group_columns[g]
                                                                        : "model";
}

/* The five parts of a report, in the order of struct rollup_plan's ranges (its ten numbers
 * are the parameters): raw rows at both ends, hour lines at both ends, day lines between. */
static const struct {
    bool raw;
    int64_t span;
} parts[] = {
    {true, 0}, {true, 0}, {false, ROLLUP_HOUR_MS}, {false, ROLLUP_HOUR_MS}, {false, ROLLUP_DAY_MS}};

/* One branch of the spend query: `table`'s rows in [p(a), p(b)), as the columns the outer
 * query sums. Raw rows count one request each; rollup lines carry their sums. */
static size_t branch(char *out, size_t size, enum spend_group by, int64_t bucket_ms, bool raw,
                     int64_t span_ms, const char *placeholder, int a, int b)
{
    char bucket[96] = "0", from[24], to[24];
    const char *ts = raw ? "ts_ms" : "bucket_ms";
    if (bucket_ms > 0)
        snprintf(bucket, sizeof bucket, "(%s / %lld) * %lld", ts, (long long)bucket_ms,
                 (long long)bucket_ms);
    snprintf(from, sizeof from, placeholder, a);
    snprintf(to, sizeof to, placeholder, b);
    if (raw)
        return (size_t)snprintf(
            out, size,
            "SELECT %s AS g, %s AS b, 1 AS n, COALESCE(prompt_tokens, 0) AS pt, "
            "COALESCE(completion_tokens, 0) AS ct, COALESCE(cost_usd, 0) AS usd, "
            "CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END AS unk, estimated AS "
            "est FROM requests WHERE ts_ms >= %s AND ts_ms < %s",
            spend_group_column(by), bucket, from, to);
    /* enum spend_group and enum rollup_dim share their first values */
    return (size_t)snprintf(out, size,
                            "SELECT value, %s, requests, prompt_tokens, completion_tokens, "
                            "cost_usd, unknown_cost, estimated FROM rollups WHERE span_ms = %lld "
                            "AND dim = '%s' AND bucket_ms >= %s AND bucket_ms < %s",
                            bucket, (long long)span_ms, rollup_dim_name((enum rollup_dim)by), from,
                            to);
}

void spend_query_sql(char *out, size_t size, enum spend_group by, int64_t bucket_ms,
                     const char *placeholder)
{
    size_t w = (size_t)snprintf(out, size,
                                "SELECT g, SUM(n), SUM(pt), SUM(ct), SUM(usd), SUM(unk), SUM(est), "
                                "b FROM (");
    /* In the order of struct rollup_plan's ranges: the parameters are its ten numbers. */
    for (int i = 0; i < 5 && w < size; i++) {
        if (i > 0) w += (size_t)snprintf(out + w, size - w, " UNION ALL ");
        if (w < size)
            w += branch(out + w, size - w, by, bucket_ms, parts[i].raw, parts[i].span, placeholder,
                        2 * i + 1, 2 * i + 2);
    }
    if (w < size) snprintf(out + w, size - w, ") AS u GROUP BY g, b ORDER BY 8, 5 DESC, 1");
}

/* One branch of the margin query, as spend's branch(): raw rows one request each, margin
 * rollup lines with their sums. */
static size_t margin_branch(char *out, size_t size, bool by_customer, bool raw, int64_t span_ms,
                            const char *placeholder, int a, int b)
{
    char from[24], to[24];
    snprintf(from, sizeof from, placeholder, a);
    snprintf(to, sizeof to, placeholder, b);
    if (raw)
        return (size_t)snprintf(
            out, size,
            "SELECT %s AS g, 1 AS n, COALESCE(revenue_usd, 0) AS rev, COALESCE(cost_usd, 0) AS "
            "usd, COALESCE(margin_usd, 0) AS mar, CASE WHEN tier = '' THEN 1 ELSE 0 END AS unp, "
            "CASE WHEN tier <> '' AND revenue_usd IS NULL THEN 1 ELSE 0 END AS urev, CASE WHEN "
            "cost_usd IS NULL THEN 1 ELSE 0 END AS uusd FROM requests WHERE ts_ms >= %s AND "
            "ts_ms < %s",
            by_customer ? "customer" : "tier", from, to);
    return (size_t)snprintf(out, size,
                            "SELECT value, requests, revenue_usd, cost_usd, margin_usd, unpriced, "
                            "unknown_revenue, unknown_cost FROM margin_rollups WHERE span_ms = "
                            "%lld AND dim = '%s' AND bucket_ms >= %s AND bucket_ms < %s",
                            (long long)span_ms,
                            margin_dim_name(by_customer ? MARGIN_DIM_CUSTOMER : MARGIN_DIM_TIER),
                            from, to);
}

void margin_query_sql(char *out, size_t size, bool by_customer, const char *placeholder)
{
    size_t w = (size_t)snprintf(out, size,
                                "SELECT g, SUM(n), SUM(rev), SUM(usd), SUM(mar), SUM(unp), "
                                "SUM(urev), SUM(uusd) FROM (");
    /* struct rollup_plan's ranges, as in spend_query_sql: parameters 1..10, the limit 11. */
    for (int i = 0; i < 5 && w < size; i++) {
        if (i > 0) w += (size_t)snprintf(out + w, size - w, " UNION ALL ");
        if (w < size)
            w += margin_branch(out + w, size - w, by_customer, parts[i].raw, parts[i].span,
                               placeholder, 2 * i + 1, 2 * i + 2);
    }
    char limit[24];
    snprintf(limit, sizeof limit, placeholder, SPEND_QUERY_PARAMS + 1);
    if (w < size)
        snprintf(out + w, size - w, ") AS u GROUP BY g ORDER BY 3 DESC, 1 LIMIT %s", limit);
}

struct spend_line *spend_lines_at(struct spend_line **lines, size_t *cap, size_t n)
{
    if (n >= *cap) {
        size_t more = *cap ? *cap * 2 : 256;
        struct spend_line *grown = realloc(*lines, more * sizeof *grown);
        if (grown == NULL) return NULL;
        *lines = grown;
        *cap = more;
    }
    return &(*lines)[n];
}

void spend_query_params(const struct rollup_plan *p, int64_t out[SPEND_QUERY_PARAMS])
{
    const int64_t v[SPEND_QUERY_PARAMS] = {
        p->raw[0][0],  p->raw[0][1],  p->raw[1][0],  p->raw[1][1], p->hour[0][0],
        p->hour[0][1], p->hour[1][0], p->hour[1][1], p->day[0],    p->day[1]};
    memcpy(out, v, sizeof v);
}

_Static_assert((int)SPEND_BY_MODEL == (int)ROLLUP_MODEL && (int)SPEND_BY_KEY == (int)ROLLUP_KEY &&
                   (int)SPEND_BY_TEAM == (int)ROLLUP_TEAM &&
                   (int)SPEND_BY_CUSTOMER == (int)ROLLUP_CUSTOMER &&
                   (int)SPEND_BY_BACKEND == (int)ROLLUP_BACKEND &&
                   (int)SPEND_BY_ROUTE == (int)ROLLUP_ROUTE,
               "a spend group reads the rollup dimension of the same number");
