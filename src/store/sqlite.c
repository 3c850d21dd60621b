/*
 * DESIGN: SQLite in WAL mode with synchronous=NORMAL: a committed batch survives a process
 * crash (kill -9); only an OS crash can lose the last transactions. Appends reuse one
 * prepared statement inside one transaction per batch.
 */
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/schema.h"
#include "store/store.h"

struct store {
    sqlite3 *db;
    sqlite3_stmt *insert;
    sqlite3_stmt *upsert;        /* one rollup line; prepared on first use */
    sqlite3_stmt *margin_upsert; /* one margin rollup line; prepared on first use */
    struct rollup_batch batch;   /* a batch's folded lines */
};

static int sqlite_read_v9(struct store *s, struct ledger_cursor *at, int64_t to_ms,
                          struct ledger_row *out, size_t cap, char *why, size_t size);
static int add_rollups(struct store *s, const struct rollup_line *lines, size_t n, char *why,
                       size_t size);
static int add_margin_rollups(struct store *s, char *why, size_t size);

static int exec(struct store *s, const char *sql, char *why, size_t size)
{
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) == SQLITE_OK) return 0;
    snprintf(why, size, "sqlite: %s", msg ? msg : sqlite3_errmsg(s->db));
    sqlite3_free(msg);
    return -1;
}

static int fail(struct store *s, sqlite3_stmt *q, char *why, size_t size)
{
    snprintf(why, size, "sqlite: %s", sqlite3_errmsg(s->db));
    sqlite3_finalize(q);
    return -1;
}

static int migrate(struct store *s, char *why, size_t size)
{
    if (exec(s,
             "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
             "applied_at TEXT NOT NULL)",
             why, size))
        return -1;
    for (size_t i = 0; i < sizeof schema_migrations / sizeof schema_migrations[0]; i++) {
        const struct migration *m = &schema_migrations[i];
        sqlite3_stmt *q = NULL;
        int done = 0;
        if (sqlite3_prepare_v2(s->db, "SELECT 1 FROM schema_migrations WHERE version = ?", -1, &q,
                               NULL) != SQLITE_OK)
            goto fail;
        sqlite3_bind_int(q, 1, m->version);
        done = sqlite3_step(q) == SQLITE_ROW;
        sqlite3_finalize(q);
        if (done) continue;
        char sql[8192], record[160];
        migration_sql(m, "INTEGER PRIMARY KEY", sql,
                      sizeof sql); /* no sqlite_sequence write per row */
        snprintf(record, sizeof record,
                 "INSERT INTO schema_migrations (version, applied_at) VALUES (%d, "
                 "strftime('%%Y-%%m-%%dT%%H:%%M:%%SZ', 'now'))",
                 m->version);
        if (exec(s, "BEGIN IMMEDIATE", why, size)) return -1;
        if (exec(s, sql, why, size) ||
            (m->version == ROLLUP_BACKFILL_VERSION &&
             rollup_backfill(s, sqlite_read_v9, add_rollups, NULL, why, size)) ||
            exec(s, record, why, size)) {
            exec(s, "ROLLBACK", why + strlen(why), 0);
            return -1;
        }
        if (exec(s, "COMMIT", why, size)) return -1;
    }
    return 0;
fail:
    snprintf(why, size, "sqlite: %s", sqlite3_errmsg(s->db));
    return -1;
}

static void sqlite_close(struct store *s)
{
    if (s == NULL) return;
    sqlite3_finalize(s->insert);
    sqlite3_finalize(s->upsert);
    sqlite3_finalize(s->margin_upsert);
    sqlite3_close(s->db);
    rollup_batch_free(&s->batch);
    free(s);
}

static struct store *sqlite_open(const char *path, char *why, size_t size)
{
    struct store *s = calloc(1, sizeof *s);
    if (s == NULL) {
        snprintf(why, size, "out of memory");
        return NULL;
    }
    if (sqlite3_open_v2(path, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        snprintf(why, size, "sqlite %s: %s", path, s->db ? sqlite3_errmsg(s->db) : "cannot open");
        sqlite_close(s);
        return NULL;
    }
    sqlite3_busy_timeout(s->db, 5000); /* a CLI reading while the gateway writes */
    if (exec(s, "PRAGMA journal_mode=WAL", why, size) ||
        exec(s, "PRAGMA synchronous=NORMAL", why, size) || migrate(s, why, size)) {
        char more[400];
        snprintf(more, sizeof more, "%s", why);
        snprintf(why, size, "%s: %s", path, more);
        sqlite_close(s);
        return NULL;
    }
    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO requests (" LEDGER_COLUMNS
                           ") VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                           -1, &s->insert, NULL) != SQLITE_OK) {
        snprintf(why, size, "sqlite %s: %s", path, sqlite3_errmsg(s->db));
        sqlite_close(s);
        return NULL;
    }
    return s;
}

static void bind_count(sqlite3_stmt *q, int i, int64_t v)
{
    if (v < 0)
        sqlite3_bind_null(q, i);
    else
        sqlite3_bind_int64(q, i, v);
}

static int sqlite_append(struct store *s, const struct ledger_row *rows, size_t n, char *why,
                         size_t size)
{
    if (exec(s, "BEGIN", why, size)) return -1;
    for (size_t i = 0; i < n; i++) {
        const struct ledger_row *r = &rows[i];
        sqlite3_stmt *q = s->insert;
        sqlite3_reset(q);
        sqlite3_bind_int64(q, 1, r->ts_ms);
        sqlite3_bind_text(q, 2, r->request_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 3, r->key_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 4, r->team, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 5, r->customer, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 6, r->model, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 7, r->backend, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 8, r->target_model, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 9, r->endpoint, -1, SQLITE_STATIC);
        sqlite3_bind_int(q, 10, r->status);
        sqlite3_bind_int(q, 11, r->stream);
        bind_count(q, 12, r->prompt_tokens);
        bind_count(q, 13, r->completion_tokens);
        bind_count(q, 14, r->cached_tokens);
        sqlite3_bind_int(q, 15, r->estimated);
        if (r->cost_known)
            sqlite3_bind_double(q, 16, r->cost_usd);
        else
            sqlite3_bind_null(q, 16);
        sqlite3_bind_double(q, 17, r->latency_ms);
        if (r->ttft_ms >= 0)
            sqlite3_bind_double(q, 18, r->ttft_ms);
        else
            sqlite3_bind_null(q, 18);
        sqlite3_bind_text(q, 19, r->route, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 20, r->guard, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 21, r->cache, -1, SQLITE_STATIC);
        if (r->saved_usd >= 0)
            sqlite3_bind_double(q, 22, r->saved_usd);
        else
            sqlite3_bind_null(q, 22);
        sqlite3_bind_text(q, 23, r->tier, -1, SQLITE_STATIC);
        if (r->revenue_known)
            sqlite3_bind_double(q, 24, r->revenue_usd);
        else
            sqlite3_bind_null(q, 24);
        if (r->margin_known)
            sqlite3_bind_double(q, 25, r->margin_usd);
        else
            sqlite3_bind_null(q, 25);
        if (sqlite3_step(q) != SQLITE_DONE) {
            snprintf(why, size, "sqlite insert: %s", sqlite3_errmsg(s->db));
            sqlite3_reset(q);
            exec(s, "ROLLBACK", why + strlen(why), 0);
            return -1;
        }
    }
    sqlite3_reset(s->insert);
    if (rollup_batch_fold(&s->batch, rows, n, why, size) != 0 ||
        add_rollups(s, s->batch.lines, s->batch.n_lines, why, size) != 0 ||
        add_margin_rollups(s, why, size) != 0) {
        exec(s, "ROLLBACK", why + strlen(why), 0);
        return -1;
    }
    return exec(s, "COMMIT", why, size);
}

/* The batch's margin lines (rollup.h), inside the append's transaction. */
static int add_margin_rollups(struct store *s, char *why, size_t size)
{
    size_t m = s->batch.n_margin;
    if (s->margin_upsert == NULL &&
        sqlite3_prepare_v2(s->db,
                           "INSERT INTO margin_rollups (" MARGIN_ROLLUP_COLUMNS
                           ") VALUES (?,?,?,?,?,?,?,?,?,?,?)" MARGIN_ROLLUP_UPSERT_TAIL,
                           -1, &s->margin_upsert, NULL) != SQLITE_OK) {
        snprintf(why, size, "sqlite margin rollups: %s", sqlite3_errmsg(s->db));
        return -1;
    }
    sqlite3_stmt *q = s->margin_upsert;
    for (size_t i = 0; i < m; i++) {
        const struct margin_rollup_line *l = &s->batch.margin[i];
        sqlite3_reset(q);
        sqlite3_bind_int64(q, 1, l->span_ms);
        sqlite3_bind_int64(q, 2, l->bucket_ms);
        sqlite3_bind_text(q, 3, margin_dim_name(l->dim), -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 4, l->value, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 5, l->requests);
        sqlite3_bind_double(q, 6, l->revenue_usd);
        sqlite3_bind_double(q, 7, l->cost_usd);
        sqlite3_bind_double(q, 8, l->margin_usd);
        sqlite3_bind_int64(q, 9, l->unpriced);
        sqlite3_bind_int64(q, 10, l->unknown_revenue);
        sqlite3_bind_int64(q, 11, l->unknown_cost);
        if (sqlite3_step(q) != SQLITE_DONE) {
            snprintf(why, size, "sqlite margin rollups: %s", sqlite3_errmsg(s->db));
            sqlite3_reset(q);
            return -1;
        }
    }
    sqlite3_reset(q);
    return 0;
}

static int add_rollups(struct store *s, const struct rollup_line *lines, size_t n, char *why,
                       size_t size)
{
    if (s->upsert == NULL &&
        sqlite3_prepare_v2(s->db,
                           "INSERT INTO rollups (" ROLLUP_COLUMNS
                           ") VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)" ROLLUP_UPSERT_TAIL,
                           -1, &s->upsert, NULL) != SQLITE_OK) {
        snprintf(why, size, "sqlite rollups: %s", sqlite3_errmsg(s->db));
        return -1;
    }
    sqlite3_stmt *q = s->upsert;
    for (size_t i = 0; i < n; i++) {
        const struct rollup_line *l = &lines[i];
        sqlite3_reset(q);
        sqlite3_bind_int64(q, 1, l->span_ms);
        sqlite3_bind_int64(q, 2, l->bucket_ms);
        sqlite3_bind_text(q, 3, rollup_dim_name(l->dim), -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 4, l->value, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 5, l->requests);
        sqlite3_bind_int64(q, 6, l->errors);
        sqlite3_bind_int64(q, 7, l->prompt_tokens);
        sqlite3_bind_int64(q, 8, l->completion_tokens);
        sqlite3_bind_int64(q, 9, l->cached_tokens);
        sqlite3_bind_double(q, 10, l->cost_usd);
        sqlite3_bind_int64(q, 11, l->unknown_cost);
        sqlite3_bind_int64(q, 12, l->estimated);
        sqlite3_bind_double(q, 13, l->latency_ms);
        sqlite3_bind_double(q, 14, l->ttft_ms);
        sqlite3_bind_int64(q, 15, l->ttft_count);
        sqlite3_bind_double(q, 16, l->saved_usd);
        sqlite3_bind_int64(q, 17, l->cache_hits);
        if (sqlite3_step(q) != SQLITE_DONE) {
            snprintf(why, size, "sqlite rollups: %s", sqlite3_errmsg(s->db));
            sqlite3_reset(q);
            return -1;
        }
    }
    sqlite3_reset(q);
    return 0;
}

static void column_text(sqlite3_stmt *q, int i, char *out, size_t cap);

static int64_t column_count(sqlite3_stmt *q, int i)
{
    return sqlite3_column_type(q, i) == SQLITE_NULL ? -1 : sqlite3_column_int64(q, i);
}

/* `v9`: only migration 9's columns (the rollup backfill runs before later ones exist). */
static int read_rows(struct store *s, struct ledger_cursor *at, int64_t to_ms,
                     struct ledger_row *out, size_t cap, char *why, size_t size, bool v9)
{
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(
            s->db,
            v9 ? "SELECT id, " LEDGER_COLUMNS_V9 " FROM requests WHERE ts_ms >= ?1 AND "
                 "(ts_ms > ?1 OR id > ?2) AND ts_ms < ?3 ORDER BY ts_ms, id LIMIT ?4"
               : "SELECT id, " LEDGER_COLUMNS " FROM requests WHERE ts_ms >= ?1 AND "
                 "(ts_ms > ?1 OR id > ?2) AND ts_ms < ?3 ORDER BY ts_ms, id LIMIT ?4",
            -1, &q, NULL) != SQLITE_OK) {
        snprintf(why, size, "sqlite: %s", sqlite3_errmsg(s->db));
        return -1;
    }
    sqlite3_bind_int64(q, 1, at->ts_ms);
    sqlite3_bind_int64(q, 2, at->id);
    sqlite3_bind_int64(q, 3, to_ms);
    sqlite3_bind_int64(q, 4, (sqlite3_int64)cap);
    size_t n = 0;
    int rc;
    while (n < cap && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        struct ledger_row *r = &out[n++];
        memset(r, 0, sizeof *r);
        at->id = sqlite3_column_int64(q, 0);
        r->ts_ms = at->ts_ms = sqlite3_column_int64(q, 1);
        column_text(q, 2, r->request_id, sizeof r->request_id);
        column_text(q, 3, r->key_id, sizeof r->key_id);
        column_text(q, 4, r->team, sizeof r->team);
        column_text(q, 5, r->customer, sizeof r->customer);
        column_text(q, 6, r->model, sizeof r->model);
        column_text(q, 7, r->backend, sizeof r->backend);
        column_text(q, 8, r->target_model, sizeof r->target_model);
        column_text(q, 9, r->endpoint, sizeof r->endpoint);
        r->status = sqlite3_column_int(q, 10);
        r->stream = sqlite3_column_int(q, 11) != 0;
        r->prompt_tokens = column_count(q, 12);
        r->completion_tokens = column_count(q, 13);
        r->cached_tokens = column_count(q, 14);
        r->estimated = sqlite3_column_int(q, 15) != 0;
        r->cost_known = sqlite3_column_type(q, 16) != SQLITE_NULL;
        r->cost_usd = sqlite3_column_double(q, 16);
        r->latency_ms = sqlite3_column_double(q, 17);
        r->ttft_ms = sqlite3_column_type(q, 18) == SQLITE_NULL ? -1 : sqlite3_column_double(q, 18);
        column_text(q, 19, r->route, sizeof r->route);
        column_text(q, 20, r->guard, sizeof r->guard);
        column_text(q, 21, r->cache, sizeof r->cache);
        r->saved_usd =
            sqlite3_column_type(q, 22) == SQLITE_NULL ? -1 : sqlite3_column_double(q, 22);
        if (v9) continue;
        column_text(q, 23, r->tier, sizeof r->tier);
        r->revenue_known = sqlite3_column_type(q, 24) != SQLITE_NULL;
        r->revenue_usd = sqlite3_column_double(q, 24);
        r->margin_known = sqlite3_column_type(q, 25) != SQLITE_NULL;
        r->margin_usd = sqlite3_column_double(q, 25);
    }
    if (n < cap && rc != SQLITE_DONE) return fail(s, q, why, size);
    sqlite3_finalize(q);
    return (int)n;
}

static int sqlite_read(struct store *s, struct ledger_cursor *at, int64_t to_ms,
                       struct ledger_row *out, size_t cap, char *why, size_t size)
{
    return read_rows(s, at, to_ms, out, cap, why, size, false);
}

static int sqlite_read_v9(struct store *s, struct ledger_cursor *at, int64_t to_ms,
                          struct ledger_row *out, size_t cap, char *why, size_t size)
{
    return read_rows(s, at, to_ms, out, cap, why, size, true);
}

static int64_t sqlite_retain(struct store *s, int64_t rows_before, int64_t rollups_before,
                             int64_t limit, char *why, size_t size)
{
    static const char *const sql[3] = {
        "DELETE FROM requests WHERE id IN (SELECT id FROM requests WHERE ts_ms < ?1 ORDER BY "
        "ts_ms LIMIT ?2)",
        "DELETE FROM rollups WHERE rowid IN (SELECT rowid FROM rollups WHERE span_ms IN "
        "(3600000, 86400000) AND dim IN " ROLLUP_DIM_LIST " AND bucket_ms < ?1 LIMIT ?2)",
        "DELETE FROM margin_rollups WHERE rowid IN (SELECT rowid FROM margin_rollups WHERE "
        "bucket_ms < ?1 LIMIT ?2)"};
    const int64_t before[3] = {rows_before, rollups_before, rollups_before};
    int64_t deleted = 0;
    if (exec(s, "BEGIN IMMEDIATE", why, size)) return -1;
    for (int i = 0; i < 3; i++) {
        if (before[i] <= 0) continue;
        sqlite3_stmt *q = NULL;
        if (sqlite3_prepare_v2(s->db, sql[i], -1, &q, NULL) != SQLITE_OK ||
            (sqlite3_bind_int64(q, 1, before[i]), sqlite3_bind_int64(q, 2, limit),
             sqlite3_step(q)) != SQLITE_DONE) {
            snprintf(why, size, "sqlite retention: %s", sqlite3_errmsg(s->db));
            sqlite3_finalize(q);
            exec(s, "ROLLBACK", why + strlen(why), 0);
            return -1;
        }
        sqlite3_finalize(q);
        int64_t n = sqlite3_changes(s->db);
        if (n > deleted) deleted = n; /* "< limit: nothing older left" must hold for both */
        if (i == 0 && n > 0) {
            char mark[160];
            snprintf(mark, sizeof mark,
                     "UPDATE ledger_retention SET rows_before_ms = MAX(rows_before_ms, %lld)",
                     (long long)rows_before);
            if (exec(s, mark, why, size)) {
                exec(s, "ROLLBACK", why + strlen(why), 0);
                return -1;
            }
        }
    }
    return exec(s, "COMMIT", why, size) ? -1 : deleted;
}

/* Where raw rows are complete from: retention deleted what was before (rollup_plan). */
static int64_t kept_from(struct store *s)
{
    sqlite3_stmt *q = NULL;
    int64_t from = 0;
    if (sqlite3_prepare_v2(s->db, "SELECT rows_before_ms FROM ledger_retention", -1, &q, NULL) ==
            SQLITE_OK &&
        sqlite3_step(q) == SQLITE_ROW)
        from = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return from;
}

static int sqlite_spend(struct store *s, enum spend_group by, int64_t bucket_ms, int64_t from_ms,
                        int64_t to_ms, struct spend_line **lines, size_t max, char *why,
                        size_t size)
{
    char sql[SPEND_QUERY_SIZE];
    spend_query_sql(sql, sizeof sql, by, bucket_ms, "?%d");
    struct rollup_plan plan;
    rollup_plan(from_ms, to_ms, bucket_ms, kept_from(s), &plan);
    int64_t params[SPEND_QUERY_PARAMS];
    spend_query_params(&plan, params);
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(s->db, sql, -1, &q, NULL) != SQLITE_OK) {
        snprintf(why, size, "sqlite: %s", sqlite3_errmsg(s->db));
        return -1;
    }
    for (int i = 0; i < SPEND_QUERY_PARAMS; i++) sqlite3_bind_int64(q, i + 1, params[i]);
    size_t n = 0, cap = 0;
    int rc;
    while (n < max && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        struct spend_line *l = spend_lines_at(lines, &cap, n++);
        if (l == NULL) {
            snprintf(why, size, "out of memory");
            sqlite3_finalize(q);
            return -1;
        }
        const unsigned char *g = sqlite3_column_text(q, 0);
        snprintf(l->group, sizeof l->group, "%s", g ? (const char *)g : "");
        l->requests = sqlite3_column_int64(q, 1);
        l->prompt_tokens = sqlite3_column_int64(q, 2);
        l->completion_tokens = sqlite3_column_int64(q, 3);
        l->cost_usd = sqlite3_column_double(q, 4);
        l->unknown_cost = sqlite3_column_int64(q, 5);
        l->estimated = sqlite3_column_int64(q, 6);
        l->bucket_ms = sqlite3_column_int64(q, 7);
        l->other_groups = 0;
    }
    if (n < max && rc != SQLITE_DONE) return fail(s, q, why, size);
    sqlite3_finalize(q);
    return (int)n;
}

static int sqlite_key_insert(struct store *s, const struct key_record *k, char *why, size_t size)
{
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO api_keys (" KEY_COLUMNS
                           ") VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                           -1, &q, NULL) != SQLITE_OK)
        return fail(s, q, why, size);
    sqlite3_bind_text(q, 1, k->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, k->hash, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, k->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 4, k->team, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 5, k->models, -1, SQLITE_STATIC);
    sqlite3_bind_double(q, 6, k->budget_usd);
    sqlite3_bind_int(q, 7, (int)k->budget_period);
    sqlite3_bind_double(q, 8, k->budget_soft);
    sqlite3_bind_int(q, 9, (int)k->on_exhausted);
    sqlite3_bind_int64(q, 10, k->rpm);
    sqlite3_bind_int64(q, 11, k->tpm);
    sqlite3_bind_int64(q, 12, k->created_ms);
    sqlite3_bind_int64(q, 13, k->expires_ms);
    sqlite3_bind_int64(q, 14, k->revoked_ms);
    sqlite3_bind_text(q, 15, k->aws_key_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 16, k->aws_secret_sealed, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 17, k->allowed_cidrs, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 18, k->max_prompt_tokens);
    sqlite3_bind_text(q, 19, k->tier, -1, SQLITE_STATIC);
    if (sqlite3_step(q) != SQLITE_DONE) return fail(s, q, why, size);
    sqlite3_finalize(q);
    return 0;
}

static int sqlite_key_revoke(struct store *s, const char *id, int64_t ts_ms, char *why, size_t size)
{
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "UPDATE api_keys SET revoked_ms = ? WHERE id = ? AND revoked_ms = 0", -1,
                           &q, NULL) != SQLITE_OK)
        return fail(s, q, why, size);
    sqlite3_bind_int64(q, 1, ts_ms);
    sqlite3_bind_text(q, 2, id, -1, SQLITE_STATIC);
    if (sqlite3_step(q) != SQLITE_DONE) return fail(s, q, why, size);
    sqlite3_finalize(q);
    return sqlite3_changes(s->db) > 0 ? 1 : 0;
}

static void column_text(sqlite3_stmt *q, int i, char *out, size_t cap)
{
    const unsigned char *t = sqlite3_column_text(q, i);
    snprintf(out, cap, "%s", t ? (const char *)t : "");
}

static int sqlite_key_list(struct store *s, struct key_record **out, char *why, size_t size)
{
    sqlite3_stmt *q = NULL;
    *out = NULL;
    if (sqlite3_prepare_v2(s->db, "SELECT " KEY_COLUMNS " FROM api_keys ORDER BY created_ms, id",
                           -1, &q, NULL) != SQLITE_OK)
        return fail(s, q, why, size);
    size_t n = 0, cap = 0;
    struct key_record *keys = NULL;
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            struct key_record *more = realloc(keys, ncap * sizeof *keys);
            if (more == NULL) {
                free(keys);
                sqlite3_finalize(q);
                snprintf(why, size, "out of memory");
                return -1;
            }
            keys = more;
            cap = ncap;
        }
        struct key_record *k = &keys[n++];
        memset(k, 0, sizeof *k);
        column_text(q, 0, k->id, sizeof k->id);
        column_text(q, 1, k->hash, sizeof k->hash);
        column_text(q, 2, k->name, sizeof k->name);
        column_text(q, 3, k->team, sizeof k->team);
        column_text(q, 4, k->models, sizeof k->models);
        k->budget_usd = sqlite3_column_double(q, 5);
        k->budget_period = (enum budget_period)sqlite3_column_int(q, 6);
        k->budget_soft = sqlite3_column_double(q, 7);
        k->on_exhausted = (enum budget_exhausted)sqlite3_column_int(q, 8);
        k->rpm = sqlite3_column_int64(q, 9);
        k->tpm = sqlite3_column_int64(q, 10);
        k->created_ms = sqlite3_column_int64(q, 11);
        k->expires_ms = sqlite3_column_int64(q, 12);
        k->revoked_ms = sqlite3_column_int64(q, 13);
        column_text(q, 14, k->aws_key_id, sizeof k->aws_key_id);
        column_text(q, 15, k->aws_secret_sealed, sizeof k->aws_secret_sealed);
        column_text(q, 16, k->allowed_cidrs, sizeof k->allowed_cidrs);
        k->max_prompt_tokens = sqlite3_column_int64(q, 17);
        column_text(q, 18, k->tier, sizeof k->tier);
    }
    if (rc != SQLITE_DONE) {
        free(keys);
        return fail(s, q, why, size);
    }
    sqlite3_finalize(q);
    *out = keys;
    return (int)n;
}

static int64_t sqlite_count(struct store *s)
{
    sqlite3_stmt *q = NULL;
    int64_t n = -1;
    if (sqlite3_prepare_v2(s->db, "SELECT COUNT(*) FROM requests", -1, &q, NULL) == SQLITE_OK &&
        sqlite3_step(q) == SQLITE_ROW)
        n = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return n;
}

static int sqlite_customer_set(struct store *s, const struct customer_record *c, char *why,
                               size_t size)
{
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO customers (customer, tier, updated_ms) VALUES (?,?,?) "
                           "ON CONFLICT (customer) DO UPDATE SET tier = excluded.tier, "
                           "updated_ms = excluded.updated_ms",
                           -1, &q, NULL) != SQLITE_OK)
        return fail(s, q, why, size);
    sqlite3_bind_text(q, 1, c->customer, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, c->tier, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 3, c->updated_ms);
    if (sqlite3_step(q) != SQLITE_DONE) return fail(s, q, why, size);
    sqlite3_finalize(q);
    return 0;
}

static int sqlite_customer_remove(struct store *s, const char *customer, char *why, size_t size)
{
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(s->db, "DELETE FROM customers WHERE customer = ?", -1, &q, NULL) !=
        SQLITE_OK)
        return fail(s, q, why, size);
    sqlite3_bind_text(q, 1, customer, -1, SQLITE_STATIC);
    if (sqlite3_step(q) != SQLITE_DONE) return fail(s, q, why, size);
    sqlite3_finalize(q);
    return sqlite3_changes(s->db) > 0 ? 1 : 0;
}

static int sqlite_customer_list(struct store *s, struct customer_record **out, char *why,
                                size_t size)
{
    sqlite3_stmt *q = NULL;
    *out = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT customer, tier, updated_ms FROM customers ORDER BY customer", -1,
                           &q, NULL) != SQLITE_OK)
        return fail(s, q, why, size);
    size_t n = 0, cap = 0;
    struct customer_record *list = NULL;
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            struct customer_record *more = realloc(list, ncap * sizeof *list);
            if (more == NULL) {
                free(list);
                sqlite3_finalize(q);
                snprintf(why, size, "out of memory");
                return -1;
            }
            list = more;
            cap = ncap;
        }
        struct customer_record *c = &list[n++];
        column_text(q, 0, c->customer, sizeof c->customer);
        column_text(q, 1, c->tier, sizeof c->tier);
        c->updated_ms = sqlite3_column_int64(q, 2);
    }
    if (rc != SQLITE_DONE) {
        free(list);
        return fail(s, q, why, size);
    }
    sqlite3_finalize(q);
    *out = list;
    return (int)n;
}

static int sqlite_margin(struct store *s, bool by_customer, int64_t from_ms, int64_t to_ms,
                         struct margin_line **lines, size_t max, char *why, size_t size)
{
    char sql[MARGIN_QUERY_SIZE];
    margin_query_sql(sql, sizeof sql, by_customer, "?%d");
    struct rollup_plan plan;
    rollup_plan(from_ms, to_ms, 0, kept_from(s), &plan);
    int64_t params[SPEND_QUERY_PARAMS];
    spend_query_params(&plan, params);
    sqlite3_stmt *q = NULL;
    *lines = NULL;
    if (sqlite3_prepare_v2(s->db, sql, -1, &q, NULL) != SQLITE_OK) return fail(s, q, why, size);
    for (int i = 0; i < SPEND_QUERY_PARAMS; i++) sqlite3_bind_int64(q, i + 1, params[i]);
    sqlite3_bind_int64(q, SPEND_QUERY_PARAMS + 1, (sqlite3_int64)max);
    size_t n = 0;
    int rc;
    struct margin_line *out = calloc(max ? max : 1, sizeof *out);
    if (out == NULL) {
        sqlite3_finalize(q);
        snprintf(why, size, "out of memory");
        return -1;
    }
    *lines = out;
    while (n < max && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        struct margin_line *l = &out[n++];
        column_text(q, 0, l->group, sizeof l->group);
        l->requests = sqlite3_column_int64(q, 1);
        l->revenue_usd = sqlite3_column_double(q, 2);
        l->cost_usd = sqlite3_column_double(q, 3);
        l->margin_usd = sqlite3_column_double(q, 4);
        l->unpriced = sqlite3_column_int64(q, 5);
        l->unknown_revenue = sqlite3_column_int64(q, 6);
        l->unknown_cost = sqlite3_column_int64(q, 7);
    }
    if (n < max && rc != SQLITE_DONE) return fail(s, q, why, size);
    sqlite3_finalize(q);
    return (int)n;
}

const struct store_ops store_sqlite = {
    .scheme = "sqlite",
    .open = sqlite_open,
    .append = sqlite_append,
    .read = sqlite_read,
    .retain = sqlite_retain,
    .spend = sqlite_spend,
    .key_insert = sqlite_key_insert,
    .key_revoke = sqlite_key_revoke,
    .key_list = sqlite_key_list,
    .customer_set = sqlite_customer_set,
    .customer_remove = sqlite_customer_remove,
    .customer_list = sqlite_customer_list,
    .margin = sqlite_margin,
    .count = sqlite_count,
    .close = sqlite_close,
};
