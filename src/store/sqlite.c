/*
 * DESIGN: SQLite in WAL mode with synchronous=NORMAL: a committed batch survives a process
 * crash (kill -9); only an OS crash can lose the last transactions. Appends reuse one
 * prepared statement inside one transaction per batch.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/schema.h"
#include "store/store.h"

struct store {
    sqlite3 *db;
    sqlite3_stmt *insert;
};

static int exec(struct store *s, const char *sql, char *why, size_t size)
{
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) == SQLITE_OK) return 0;
    snprintf(why, size, "sqlite: %s", msg ? msg : sqlite3_errmsg(s->db));
    sqlite3_free(msg);
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
        char sql[4096], record[160];
        migration_sql(m, "INTEGER PRIMARY KEY", sql,
                      sizeof sql); /* no sqlite_sequence write per row */
        snprintf(record, sizeof record,
                 "INSERT INTO schema_migrations (version, applied_at) VALUES (%d, "
                 "strftime('%%Y-%%m-%%dT%%H:%%M:%%SZ', 'now'))",
                 m->version);
        if (exec(s, "BEGIN IMMEDIATE", why, size)) return -1;
        if (exec(s, sql, why, size) || exec(s, record, why, size)) {
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
    sqlite3_close(s->db);
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
                           ") VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
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
        if (sqlite3_step(q) != SQLITE_DONE) {
            snprintf(why, size, "sqlite insert: %s", sqlite3_errmsg(s->db));
            sqlite3_reset(q);
            exec(s, "ROLLBACK", why + strlen(why), 0);
            return -1;
        }
    }
    sqlite3_reset(s->insert);
    return exec(s, "COMMIT", why, size);
}

static int sqlite_spend(struct store *s, enum spend_group by, int64_t bucket_ms, int64_t from_ms,
                        int64_t to_ms, struct spend_line *lines, size_t cap, char *why, size_t size)
{
    char sql[900];
    spend_query_sql(sql, sizeof sql, by, bucket_ms, "?1", "?2");
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(s->db, sql, -1, &q, NULL) != SQLITE_OK) {
        snprintf(why, size, "sqlite: %s", sqlite3_errmsg(s->db));
        return -1;
    }
    sqlite3_bind_int64(q, 1, from_ms);
    sqlite3_bind_int64(q, 2, to_ms);
    size_t n = 0;
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW && n < cap) {
        struct spend_line *l = &lines[n++];
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
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        snprintf(why, size, "sqlite: %s", sqlite3_errmsg(s->db));
        sqlite3_finalize(q);
        return -1;
    }
    sqlite3_finalize(q);
    return (int)n;
}

static int fail(struct store *s, sqlite3_stmt *q, char *why, size_t size)
{
    snprintf(why, size, "sqlite: %s", sqlite3_errmsg(s->db));
    sqlite3_finalize(q);
    return -1;
}

static int sqlite_key_insert(struct store *s, const struct key_record *k, char *why, size_t size)
{
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO api_keys (" KEY_COLUMNS
                           ") VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
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

const struct store_ops store_sqlite = {
    .scheme = "sqlite",
    .open = sqlite_open,
    .append = sqlite_append,
    .spend = sqlite_spend,
    .key_insert = sqlite_key_insert,
    .key_revoke = sqlite_key_revoke,
    .key_list = sqlite_key_list,
    .count = sqlite_count,
    .close = sqlite_close,
};
