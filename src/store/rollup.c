/*
 * DESIGN: a batch is folded through an open-addressing table of the lines made so far (a row
 * adds to 14 lines, most of them shared with its neighbours), then only the distinct lines
 * are sorted — into the lock order the header promises. Values are copied with memcpy, not
 * printf: the fold runs on every batch the writer commits.
 */
#include "store/rollup.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void rollup_route_class(const char *route, char *out, size_t cap)
{
    if (cap == 0) return;
    char text[256];
    snprintf(text, sizeof text, "%s", route ? route : "");
    char *after = strstr(text, "; after "), *paren;
    if (after) *after = '\0';
    if ((paren = strstr(text, " (")) != NULL) *paren = '\0';
    size_t len = strlen(text);
    if (len >= 2 && strcmp(text + len - 2, "; ") == 0) text[len - 2] = '\0'; /* no reason */
    if (after)
        snprintf(out, cap, "%.140s; after failover", text);
    else
        snprintf(out, cap, "%s", text);
}

static const char *const dim_names[ROLLUP_DIMS] = {"model",   "key",   "team",  "customer",
                                                   "backend", "route", "target"};

const char *rollup_dim_name(enum rollup_dim d)
{
    return (unsigned)d < ROLLUP_DIMS ? dim_names[d] : "model";
}

/* `text` cut to fit `cap` bytes with its terminator. */
static void copy_value(char *out, size_t cap, const char *text)
{
    size_t n = strnlen(text, cap - 1);
    memcpy(out, text, n);
    out[n] = '\0';
}

static void line_figures(struct rollup_line *l, const struct ledger_row *r)
{
    l->requests = 1;
    l->errors = r->status >= 400;
    l->prompt_tokens = r->prompt_tokens > 0 ? r->prompt_tokens : 0;
    l->completion_tokens = r->completion_tokens > 0 ? r->completion_tokens : 0;
    l->cached_tokens = r->cached_tokens > 0 ? r->cached_tokens : 0;
    l->cost_usd = r->cost_known ? r->cost_usd : 0;
    l->unknown_cost = !r->cost_known;
    l->estimated = r->estimated;
    l->latency_ms = r->latency_ms;
    l->ttft_ms = r->ttft_ms >= 0 ? r->ttft_ms : 0;
    l->ttft_count = r->ttft_ms >= 0;
    l->saved_usd = r->saved_usd >= 0 ? r->saved_usd : 0;
    l->cache_hits = strcmp(r->cache, "hit") == 0;
}

static int compare_keys(const void *a, const void *b)
{
    const struct rollup_line *x = a, *y = b;
    if (x->span_ms != y->span_ms) return x->span_ms < y->span_ms ? -1 : 1;
    if (x->dim != y->dim) return x->dim < y->dim ? -1 : 1;
    if (x->bucket_ms != y->bucket_ms) return x->bucket_ms < y->bucket_ms ? -1 : 1;
    return strcmp(x->value, y->value);
}

static void add_figures(struct rollup_line *to, const struct rollup_line *l)
{
    to->requests += l->requests;
    to->errors += l->errors;
    to->prompt_tokens += l->prompt_tokens;
    to->completion_tokens += l->completion_tokens;
    to->cached_tokens += l->cached_tokens;
    to->cost_usd += l->cost_usd;
    to->unknown_cost += l->unknown_cost;
    to->estimated += l->estimated;
    to->latency_ms += l->latency_ms;
    to->ttft_ms += l->ttft_ms;
    to->ttft_count += l->ttft_count;
    to->saved_usd += l->saved_usd;
    to->cache_hits += l->cache_hits;
}

static uint64_t key_hash(int64_t span, int dim, int64_t bucket, const char *value)
{
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)span ^ ((uint64_t)dim << 56) ^ (uint64_t)bucket;
    for (const unsigned char *c = (const unsigned char *)value; *c; c++)
        h = (h ^ *c) * 1099511628211ULL;
    return h ^ (h >> 29);
}

/* Folds the dimensions [first, end) of `n` rows into `out` (distinct lines, sorted). */
static size_t fold(const struct ledger_row *rows, size_t n, struct rollup_line *out, int first,
                   int end)
{
    if (n == 0) return 0;
    size_t slots = 64;
    while (slots < 2 * n * (size_t)(end - first) * 2) slots *= 2;
    uint32_t *table = calloc(slots, sizeof *table); /* line index + 1; 0 = empty */
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const struct ledger_row *r = &rows[i];
        struct rollup_line figures = {0};
        line_figures(&figures, r);
        char route[sizeof out->value];
        if (first <= ROLLUP_ROUTE && ROLLUP_ROUTE < end)
            rollup_route_class(r->route, route, sizeof route);
        const char *values[ROLLUP_DIMS] = {r->model,   r->key_id, r->team,        r->customer,
                                           r->backend, route,     r->target_model};
        for (int span = 0; span < 2; span++) {
            int64_t span_ms = span ? ROLLUP_DAY_MS : ROLLUP_HOUR_MS;
            int64_t bucket = r->ts_ms / span_ms * span_ms;
            for (int d = first; d < end; d++) {
                char value[sizeof out->value];
                copy_value(value, sizeof value, values[d]);
                struct rollup_line *l = NULL;
                if (table) {
                    size_t at = key_hash(span_ms, d, bucket, value) & (slots - 1);
                    for (; table[at]; at = (at + 1) & (slots - 1)) {
                        struct rollup_line *c = &out[table[at] - 1];
                        if (c->span_ms == span_ms && c->dim == (enum rollup_dim)d &&
                            c->bucket_ms == bucket && strcmp(c->value, value) == 0) {
                            l = c;
                            break;
                        }
                    }
                    if (l == NULL) table[at] = (uint32_t)(m + 1);
                }
                if (l) { /* a line this batch has already */
                    add_figures(l, &figures);
                    continue;
                }
                l = &out[m++]; /* a new line (every row makes its own without a table) */
                *l = figures;
                l->span_ms = span_ms;
                l->bucket_ms = bucket;
                l->dim = (enum rollup_dim)d;
                memcpy(l->value, value, strlen(value) + 1);
            }
        }
    }
    free(table);
    qsort(out, m, sizeof *out, compare_keys);
    if (table != NULL) return m;
    size_t w = 0; /* out of memory for the table: merge equal neighbours instead */
    for (size_t i = 1; i < m; i++) {
        if (compare_keys(&out[w], &out[i]) == 0)
            add_figures(&out[w], &out[i]);
        else if (++w != i)
            out[w] = out[i];
    }
    return w + 1;
}

size_t rollup_fold(const struct ledger_row *rows, size_t n, struct rollup_line *out)
{
    return fold(rows, n, out, 0, ROLLUP_DIMS);
}

static int64_t floor_to(int64_t ms, int64_t span)
{
    return ms / span * span; /* report times are never negative */
}

static int64_t ceil_to(int64_t ms, int64_t span)
{
    int64_t f = floor_to(ms, span);
    return f == ms ? ms : f + span;
}

void rollup_plan(int64_t from, int64_t to, int64_t bucket_ms, int64_t kept_from_ms,
                 struct rollup_plan *p)
{
    memset(p, 0, sizeof *p);
    if (from < 0) from = 0;
    if (to < from) to = from;
    /* Raw rows before kept_from_ms may have been deleted: such an end takes its whole hour
     * from the hour lines instead. */
    int64_t h1 =
        from < kept_from_ms ? floor_to(from, ROLLUP_HOUR_MS) : ceil_to(from, ROLLUP_HOUR_MS);
    int64_t h2 = floor_to(to, ROLLUP_HOUR_MS) < kept_from_ms ? ceil_to(to, ROLLUP_HOUR_MS)
                                                             : floor_to(to, ROLLUP_HOUR_MS);
    if (h1 >= h2) {
        p->raw[0][0] = from;
        p->raw[0][1] = to;
        return;
    }
    p->raw[0][0] = from;
    p->raw[0][1] = h1 > from ? h1 : from;
    p->raw[1][0] = h2 < to ? h2 : to;
    p->raw[1][1] = to;
    int64_t d1 = ceil_to(h1, ROLLUP_DAY_MS), d2 = floor_to(h2, ROLLUP_DAY_MS);
    if (bucket_ms == ROLLUP_HOUR_MS || d1 >= d2) d1 = d2 = h2;
    p->hour[0][0] = h1;
    p->hour[0][1] = d1;
    p->hour[1][0] = d2;
    p->hour[1][1] = h2;
    p->day[0] = d1;
    p->day[1] = d2;
}

/* The raw column each dimension but the route reads. */
static const char *const dim_columns[ROLLUP_DIMS] = {"model",   "key_id", "team",        "customer",
                                                     "backend", NULL,     "target_model"};

/* What rollup_fold computes, as one INSERT … SELECT … GROUP BY for a dimension that is a
 * plain column (line_figures' rules in SQL; the upgrade test checks both against the rows). */
static void backfill_sql(char *out, size_t size, int64_t span, enum rollup_dim dim)
{
    snprintf(out, size,
             "INSERT INTO rollups (" ROLLUP_COLUMNS
             ") SELECT %lld, (ts_ms / %lld) * %lld, '%s', %s, "
             "COUNT(*), SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END), "
             "SUM(COALESCE(prompt_tokens, 0)), SUM(COALESCE(completion_tokens, 0)), "
             "SUM(COALESCE(cached_tokens, 0)), SUM(COALESCE(cost_usd, 0)), "
             "SUM(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END), SUM(estimated), SUM(latency_ms), "
             "SUM(COALESCE(ttft_ms, 0)), SUM(CASE WHEN ttft_ms IS NULL THEN 0 ELSE 1 END), "
             "SUM(COALESCE(saved_usd, 0)), SUM(CASE WHEN cache = 'hit' THEN 1 ELSE 0 END) "
             "FROM requests GROUP BY 2, 4",
             (long long)span, (long long)span, (long long)span, dim_names[dim], dim_columns[dim]);
}

int rollup_backfill(struct store *s, rollup_read_cb read, rollup_add_cb add, rollup_exec_cb exec,
                    char *why, size_t size)
{
    /* Plain columns: the database aggregates (one pass each, no row leaves it) when it is
     * one that hashes groups well; else every dimension is folded here. */
    for (int span = 0; exec && span < 2; span++)
        for (int d = 0; d < ROLLUP_DIMS; d++) {
            if (d == ROLLUP_ROUTE) continue;
            char sql[1200];
            backfill_sql(sql, sizeof sql, span ? ROLLUP_DAY_MS : ROLLUP_HOUR_MS,
                         (enum rollup_dim)d);
            if (exec(s, sql, why, size) != 0) return -1;
        }
    /* The route class is computed here: its lines come from pages of rows. */
    struct ledger_row *rows = malloc(LEDGER_PAGE_ROWS * sizeof *rows);
    struct rollup_line *lines = malloc(ROLLUP_LINES_PER_ROW * LEDGER_PAGE_ROWS * sizeof *lines);
    int rc = 0;
    if (rows == NULL || lines == NULL) {
        snprintf(why, size, "out of memory");
        rc = -1;
    }
    struct ledger_cursor at = {0, -1};
    while (rc == 0) {
        int n = read(s, &at, INT64_MAX, rows, LEDGER_PAGE_ROWS, why, size);
        if (n < 0) {
            rc = -1;
            break;
        }
        size_t m = exec ? fold(rows, (size_t)n, lines, ROLLUP_ROUTE, ROLLUP_ROUTE + 1)
                        : fold(rows, (size_t)n, lines, 0, ROLLUP_DIMS);
        if (m > 0 && add(s, lines, m, why, size) != 0) rc = -1;
        if (n < LEDGER_PAGE_ROWS) break;
    }
    free(rows);
    free(lines);
    return rc;
}

/* ---- margin rollups ---- */

static const char *const margin_dim_names[MARGIN_DIMS] = {"tier", "customer"};

const char *margin_dim_name(enum margin_dim d)
{
    return (unsigned)d < MARGIN_DIMS ? margin_dim_names[d] : "tier";
}

/* The same key order as compare_keys, for the same lock-order reason. */
static int compare_margin_keys(const void *a, const void *b)
{
    const struct margin_rollup_line *x = a, *y = b;
    if (x->span_ms != y->span_ms) return x->span_ms < y->span_ms ? -1 : 1;
    if (x->dim != y->dim) return x->dim < y->dim ? -1 : 1;
    if (x->bucket_ms != y->bucket_ms) return x->bucket_ms < y->bucket_ms ? -1 : 1;
    return strcmp(x->value, y->value);
}

/* A batch holds a few hundred rows: sorting its 4 lines per row and merging neighbours is
 * simpler than the hash table the spend fold needs for its 14 per row, and fast enough. */
size_t rollup_fold_margin(const struct ledger_row *rows, size_t n, struct margin_rollup_line *out)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const struct ledger_row *r = &rows[i];
        const char *values[MARGIN_DIMS] = {r->tier, r->customer};
        for (int span = 0; span < 2; span++) {
            int64_t span_ms = span ? ROLLUP_DAY_MS : ROLLUP_HOUR_MS;
            for (int d = 0; d < MARGIN_DIMS; d++) {
                struct margin_rollup_line *l = &out[m++];
                l->span_ms = span_ms;
                l->bucket_ms = r->ts_ms / span_ms * span_ms;
                l->dim = (enum margin_dim)d;
                copy_value(l->value, sizeof l->value, values[d]);
                l->requests = 1;
                l->revenue_usd = r->revenue_known ? r->revenue_usd : 0;
                l->cost_usd = r->cost_known ? r->cost_usd : 0;
                l->margin_usd = r->margin_known ? r->margin_usd : 0;
                l->unpriced = r->tier[0] == '\0';
                l->unknown_revenue = r->tier[0] != '\0' && !r->revenue_known;
                l->unknown_cost = !r->cost_known;
            }
        }
    }
    if (m == 0) return 0;
    qsort(out, m, sizeof *out, compare_margin_keys);
    size_t w = 0;
    for (size_t i = 1; i < m; i++) {
        if (compare_margin_keys(&out[w], &out[i]) == 0) {
            out[w].requests += out[i].requests;
            out[w].revenue_usd += out[i].revenue_usd;
            out[w].cost_usd += out[i].cost_usd;
            out[w].margin_usd += out[i].margin_usd;
            out[w].unpriced += out[i].unpriced;
            out[w].unknown_revenue += out[i].unknown_revenue;
            out[w].unknown_cost += out[i].unknown_cost;
        } else {
            out[++w] = out[i];
        }
    }
    return w + 1;
}

int rollup_batch_fold(struct rollup_batch *b, const struct ledger_row *rows, size_t n, char *why,
                      size_t size)
{
    if (n > b->cap_lines / ROLLUP_LINES_PER_ROW) {
        struct rollup_line *more = realloc(b->lines, ROLLUP_LINES_PER_ROW * n * sizeof *more);
        if (more == NULL) goto oom;
        b->lines = more;
        b->cap_lines = ROLLUP_LINES_PER_ROW * n;
    }
    if (n > b->cap_margin / MARGIN_LINES_PER_ROW) {
        struct margin_rollup_line *more =
            realloc(b->margin, MARGIN_LINES_PER_ROW * n * sizeof *more);
        if (more == NULL) goto oom;
        b->margin = more;
        b->cap_margin = MARGIN_LINES_PER_ROW * n;
    }
    b->n_lines = rollup_fold(rows, n, b->lines);
    b->n_margin = rollup_fold_margin(rows, n, b->margin);
    return 0;
oom:
    snprintf(why, size, "out of memory");
    return -1;
}

void rollup_batch_free(struct rollup_batch *b)
{
    free(b->lines);
    free(b->margin);
    memset(b, 0, sizeof *b);
}
