/*
 * schema — the ledger's tables and migrations, shared by every store. A migration is SQL
 * that runs once, in order, recorded in schema_migrations(version). `%ID%` in it is the
 * store's auto-increment primary key type.
 * Internal to src/store.
 */
#ifndef STRATUS_STORE_SCHEMA_H
#define STRATUS_STORE_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "store/rollup.h"
#include "store/store.h"

struct migration {
    int version;
    const char *sql; /* one or more statements separated by ';' */
};

/* struct margin_line's figures over raw rows, as SQL (the margin query's raw branches and
 * migration 10's backfill; rollup_fold_margin is the same rule in C). */
#define MARGIN_FIGURES_SQL                                                                         \
    "COUNT(*), SUM(COALESCE(revenue_usd, 0)), SUM(COALESCE(cost_usd, 0)), "                        \
    "SUM(COALESCE(margin_usd, 0)), SUM(CASE WHEN tier = '' THEN 1 ELSE 0 END), "                   \
    "SUM(CASE WHEN tier <> '' AND revenue_usd IS NULL THEN 1 ELSE 0 END), "                        \
    "SUM(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END)"

#define MARGIN_BACKFILL(span, col)                                                                 \
    ";INSERT INTO margin_rollups SELECT " span ", (ts_ms / " span ") * " span ", '" col "', " col  \
    ", " MARGIN_FIGURES_SQL " FROM requests GROUP BY 2, 4"

static const struct migration schema_migrations[] = {
    {1, "CREATE TABLE requests ("
        " id %ID%,"
        " ts_ms BIGINT NOT NULL,"
        " request_id TEXT NOT NULL,"
        " key_id TEXT NOT NULL,"
        " team TEXT NOT NULL,"
        " customer TEXT NOT NULL,"
        " model TEXT NOT NULL,"
        " backend TEXT NOT NULL,"
        " target_model TEXT NOT NULL,"
        " endpoint TEXT NOT NULL,"
        " status INTEGER NOT NULL,"
        " stream INTEGER NOT NULL,"
        " prompt_tokens BIGINT,"
        " completion_tokens BIGINT,"
        " cached_tokens BIGINT,"
        " estimated INTEGER NOT NULL,"
        " cost_usd DOUBLE PRECISION,"
        " latency_ms DOUBLE PRECISION NOT NULL,"
        " ttft_ms DOUBLE PRECISION,"
        " route TEXT NOT NULL);"
        "CREATE INDEX requests_ts ON requests (ts_ms);"
        "CREATE INDEX requests_key ON requests (key_id, ts_ms);"
        "CREATE INDEX requests_team ON requests (team, ts_ms);"
        "CREATE INDEX requests_customer ON requests (customer, ts_ms)"},
    {2, "CREATE TABLE api_keys ("
        " id TEXT PRIMARY KEY,"
        " hash TEXT NOT NULL UNIQUE,"
        " name TEXT NOT NULL,"
        " team TEXT NOT NULL,"
        " models TEXT NOT NULL,"
        " budget_usd DOUBLE PRECISION NOT NULL,"
        " budget_period INTEGER NOT NULL,"
        " budget_soft DOUBLE PRECISION NOT NULL,"
        " on_exhausted INTEGER NOT NULL,"
        " rpm BIGINT NOT NULL,"
        " tpm BIGINT NOT NULL,"
        " created_ms BIGINT NOT NULL,"
        " expires_ms BIGINT NOT NULL,"
        " revoked_ms BIGINT NOT NULL)"},
    /* Every report and budget seed reads a time range (requests_ts); the per-column indexes
     * made each insert update four more B-trees for queries nobody runs. */
    {3, "DROP INDEX IF EXISTS requests_key;"
        "DROP INDEX IF EXISTS requests_team;"
        "DROP INDEX IF EXISTS requests_customer"},
    /* SigV4 credentials of a virtual key (guard/awskeys.h): the secret is stored sealed. */
    {4, "ALTER TABLE api_keys ADD COLUMN aws_key_id TEXT NOT NULL DEFAULT '';"
        "ALTER TABLE api_keys ADD COLUMN aws_secret_sealed TEXT NOT NULL DEFAULT ''"},
    /* Where a virtual key may be used from (guard: 403 ip_not_allowed elsewhere). */
    {5, "ALTER TABLE api_keys ADD COLUMN allowed_cidrs TEXT NOT NULL DEFAULT ''"},
    /* What the guards found in a request (guard/content.h): rule and kind names only. */
    {6, "ALTER TABLE requests ADD COLUMN guard TEXT NOT NULL DEFAULT ''"},
    /* A virtual key's own prompt size limit (guard: 400 prompt_too_long above it). */
    {7, "ALTER TABLE api_keys ADD COLUMN max_prompt_tokens BIGINT NOT NULL DEFAULT 0"},
    /* The response cache: "hit", "miss", "bypass" or "" (not cacheable), and what a hit
     * would have cost (its cost_usd is 0). */
    {8, "ALTER TABLE requests ADD COLUMN cache TEXT NOT NULL DEFAULT '';"
        "ALTER TABLE requests ADD COLUMN saved_usd DOUBLE PRECISION"},
    /* Aggregates per hour and day and dimension (store/rollup.h), kept in the rows'
     * transaction. The primary key leads with (span_ms, dim, bucket_ms): reports, budget
     * seeds and retention read one dimension's time range. */
    {9, "CREATE TABLE rollups ("
        " span_ms BIGINT NOT NULL,"
        " bucket_ms BIGINT NOT NULL,"
        " dim TEXT NOT NULL,"
        " value TEXT NOT NULL,"
        " requests BIGINT NOT NULL,"
        " errors BIGINT NOT NULL,"
        " prompt_tokens BIGINT NOT NULL,"
        " completion_tokens BIGINT NOT NULL,"
        " cached_tokens BIGINT NOT NULL,"
        " cost_usd DOUBLE PRECISION NOT NULL,"
        " unknown_cost BIGINT NOT NULL,"
        " estimated BIGINT NOT NULL,"
        " latency_ms DOUBLE PRECISION NOT NULL,"
        " ttft_ms DOUBLE PRECISION NOT NULL,"
        " ttft_count BIGINT NOT NULL,"
        " saved_usd DOUBLE PRECISION NOT NULL,"
        " cache_hits BIGINT NOT NULL,"
        " PRIMARY KEY (span_ms, dim, bucket_ms, value));"
        /* Raw rows older than rows_before_ms may have been deleted (reports read their hours
         * from rollups then): set by retention. */
        "CREATE TABLE ledger_retention (id INTEGER PRIMARY KEY, rows_before_ms BIGINT NOT NULL);"
        "INSERT INTO ledger_retention (id, rows_before_ms) VALUES (1, 0)"},
    /* Customer tiers (docs/tiers.md): a key's tier, the customer → tier table, and each
     * request's tier with what the customer is charged for it and what is left after cost
     * (both NULL without a tier; margin also NULL when the cost is unknown). */
    {10, "ALTER TABLE api_keys ADD COLUMN tier TEXT NOT NULL DEFAULT '';"
         "CREATE TABLE customers (customer TEXT PRIMARY KEY, tier TEXT NOT NULL,"
         " updated_ms BIGINT NOT NULL);"
         "ALTER TABLE requests ADD COLUMN tier TEXT NOT NULL DEFAULT '';"
         "ALTER TABLE requests ADD COLUMN revenue_usd DOUBLE PRECISION;"
         "ALTER TABLE requests ADD COLUMN margin_usd DOUBLE PRECISION;"
         /* The margin report's aggregates (rollup.h), folded from the rows already there. */
         "CREATE TABLE margin_rollups ("
         " span_ms BIGINT NOT NULL,"
         " bucket_ms BIGINT NOT NULL,"
         " dim TEXT NOT NULL,"
         " value TEXT NOT NULL,"
         " requests BIGINT NOT NULL,"
         " revenue_usd DOUBLE PRECISION NOT NULL,"
         " cost_usd DOUBLE PRECISION NOT NULL,"
         " margin_usd DOUBLE PRECISION NOT NULL,"
         " unpriced BIGINT NOT NULL,"
         " unknown_revenue BIGINT NOT NULL,"
         " unknown_cost BIGINT NOT NULL,"
         " PRIMARY KEY (span_ms, dim, bucket_ms, value))" MARGIN_BACKFILL("3600000", "tier")
             MARGIN_BACKFILL("3600000", "customer") MARGIN_BACKFILL("86400000", "tier")
                 MARGIN_BACKFILL("86400000", "customer")},
};

#define SCHEMA_VERSION 10

/* After this migration's SQL, in its transaction: every existing row folded into rollups. */
#define ROLLUP_BACKFILL_VERSION 9

#define KEY_COLUMNS                                                                                \
    "id, hash, name, team, models, budget_usd, budget_period, budget_soft, on_exhausted, rpm, "    \
    "tpm, created_ms, expires_ms, revoked_ms, aws_key_id, aws_secret_sealed, allowed_cidrs, "      \
    "max_prompt_tokens, tier"
#define KEY_N_COLUMNS 19

/* The requests columns as of migration 9: what the rollup backfill (which runs inside
 * migration 9, before later columns exist) reads. */
#define LEDGER_COLUMNS_V9                                                                          \
    "ts_ms, request_id, key_id, team, customer, model, backend, target_model, endpoint, "          \
    "status, stream, prompt_tokens, completion_tokens, cached_tokens, estimated, cost_usd, "       \
    "latency_ms, ttft_ms, route, guard, cache, saved_usd"
#define LEDGER_N_COLUMNS_V9 22

/* The insert every store prepares; parameters in column order. */
#define LEDGER_COLUMNS   LEDGER_COLUMNS_V9 ", tier, revenue_usd, margin_usd"
#define LEDGER_N_COLUMNS 25

/** The migration's SQL with %ID% replaced by `id_type` into `out`. */
static inline void migration_sql(const struct migration *m, const char *id_type, char *out,
                                 size_t size)
{
    const char *at = m->sql;
    size_t w = 0;
    while (*at && w + 1 < size) {
        if (strncmp(at, "%ID%", 4) == 0) {
            for (const char *t = id_type; *t && w + 1 < size; t++) out[w++] = *t;
            at += 4;
        } else {
            out[w++] = *at++;
        }
    }
    out[w] = '\0';
}

const char *spend_group_column(enum spend_group g);

/** The margin query (struct margin_line's figures, in order, after the group), grouped by
 *  tier or customer, reading raw rows, margin hour lines and day lines as a rollup_plan says:
 *  parameters 1..10 are spend_query_params' values, 11 the row limit. `out` holds
 *  MARGIN_QUERY_SIZE bytes. */
#define MARGIN_QUERY_SIZE 3072
void margin_query_sql(char *out, size_t size, bool by_customer, const char *placeholder);
/* The spend query's parameters: struct rollup_plan's ten range ends, in order. */
#define SPEND_QUERY_PARAMS 10
#define SPEND_QUERY_SIZE   3072

/** The spend query grouped by `by` (and by bucket when `bucket_ms` > 0: its start is the
 *  eighth column, 0 without buckets), reading raw rows, hour lines and day lines as a
 *  rollup_plan says. `placeholder` is a printf format for parameter n ("?%d", "$%d::bigint");
 *  the parameters are spend_query_params' values. `out` holds SPEND_QUERY_SIZE bytes. */
void spend_query_sql(char *out, size_t size, enum spend_group by, int64_t bucket_ms,
                     const char *placeholder);
/** Room for line `n` of *lines (capacity *cap, grown by doubling). @return the line, or
 *  NULL when out of memory (*lines unchanged). */
struct spend_line *spend_lines_at(struct spend_line **lines, size_t *cap, size_t n);

void spend_query_params(const struct rollup_plan *p, int64_t out[SPEND_QUERY_PARAMS]);

#endif
