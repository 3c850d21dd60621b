/*
 * DESIGN: PostgreSQL through libpq, for several gateway instances sharing one ledger. The
 * same schema and migrations as SQLite (BIGSERIAL ids); a migration runs under an advisory
 * lock so two instances starting together do not both apply it. A batch is one COPY (one
 * round trip, one transaction); a broken connection is reset once and the batch retried.
 */
#include <libpq-fe.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/schema.h"
#include "store/store.h"

#define MIGRATION_LOCK 7477323 /* pg_advisory_lock key: "stratus" schema changes */

struct store {
    PGconn *conn;
    struct rollup_batch batch; /* a batch's folded lines */
};

static int pg_read_v9(struct store *s, struct ledger_cursor *at, int64_t to_ms,
                      struct ledger_row *out, size_t cap, char *why, size_t size);
static int add_rollups(struct store *s, const struct rollup_line *lines, size_t n, char *why,
                       size_t size);
static int add_margin_rollups(struct store *s, char *why, size_t size);

/* A growing byte buffer for one COPY batch. */
struct buf {
    char *data;
    size_t len, cap;
    bool oom;
};

static void buf_add(struct buf *b, const char *p, size_t n)
{
    if (b->oom) return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16384;
        while (cap < b->len + n) cap *= 2;
        char *d = realloc(b->data, cap);
        if (d == NULL) {
            b->oom = true;
            return;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static int ok(PGresult *r, struct store *s, char *why, size_t size, const char *what)
{
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return 0;
    snprintf(why, size, "postgres %s: %s", what, PQerrorMessage(s->conn));
    size_t n = strlen(why);
    while (n > 0 && (why[n - 1] == '\n' || why[n - 1] == ' ')) why[--n] = '\0';
    return -1;
}

static int exec(struct store *s, const char *sql, char *why, size_t size)
{
    PGresult *r = PQexec(s->conn, sql);
    int rc = ok(r, s, why, size, "exec");
    PQclear(r);
    return rc;
}

static int migrate(struct store *s, char *why, size_t size)
{
    char lock[96];
    snprintf(lock, sizeof lock, "SELECT pg_advisory_lock(%d)", MIGRATION_LOCK);
    if (exec(s, lock, why, size)) return -1;
    int rc = exec(s,
                  "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                  "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
                  why, size);
    for (size_t i = 0; rc == 0 && i < sizeof schema_migrations / sizeof schema_migrations[0]; i++) {
        const struct migration *m = &schema_migrations[i];
        char q[128], sql[8192];
        snprintf(q, sizeof q, "SELECT 1 FROM schema_migrations WHERE version = %d", m->version);
        PGresult *r = PQexec(s->conn, q);
        if ((rc = ok(r, s, why, size, "migration check")) == 0 && PQntuples(r) == 0) {
            migration_sql(m, "BIGSERIAL PRIMARY KEY", sql, sizeof sql);
            snprintf(q, sizeof q, "INSERT INTO schema_migrations (version) VALUES (%d)",
                     m->version);
            rc = exec(s, "BEGIN", why, size) || exec(s, sql, why, size) ||
                         (m->version == ROLLUP_BACKFILL_VERSION &&
                          rollup_backfill(s, pg_read_v9, add_rollups, exec, why, size)) ||
                         exec(s, q, why, size) || exec(s, "COMMIT", why, size)
                     ? -1
                     : 0;
            if (rc) exec(s, "ROLLBACK", why + strlen(why), 0);
        }
        PQclear(r);
    }
    snprintf(lock, sizeof lock, "SELECT pg_advisory_unlock(%d)", MIGRATION_LOCK);
    char ignore[8];
    exec(s, lock, ignore, sizeof ignore);
    return rc;
}

static void pg_close(struct store *s)
{
    if (s == NULL) return;
    PQfinish(s->conn);
    rollup_batch_free(&s->batch);
    free(s);
}

static struct store *pg_open(const char *url, char *why, size_t size)
{
    struct store *s = calloc(1, sizeof *s);
    if (s == NULL) {
        snprintf(why, size, "out of memory");
        return NULL;
    }
    s->conn = PQconnectdb(url);
    if (PQstatus(s->conn) != CONNECTION_OK) {
        /* libpq's message may quote the URL's password: say only what failed. */
        const char *m = PQerrorMessage(s->conn);
        const char *line = strstr(m, "FATAL:");
        snprintf(why, size, "postgres: cannot connect: %.200s", line ? line : m);
        size_t n = strlen(why);
        while (n > 0 && (why[n - 1] == '\n' || why[n - 1] == ' ')) why[--n] = '\0';
        pg_close(s);
        return NULL;
    }
    char ignore[8];
    exec(s, "SET client_min_messages = warning", ignore, sizeof ignore);
    if (migrate(s, why, size)) {
        pg_close(s);
        return NULL;
    }
    return s;
}

/* COPY text format: backslash, tab, newline and carriage return escaped; NULL is \N. */
static void copy_text(struct buf *b, const char *v)
{
    for (const char *c = v; *c; c++) {
        switch (*c) {
        case '\\':
            buf_add(b, "\\\\", 2);
            break;
        case '\t':
            buf_add(b, "\\t", 2);
            break;
        case '\n':
            buf_add(b, "\\n", 2);
            break;
        case '\r':
            buf_add(b, "\\r", 2);
            break;
        default:
            buf_add(b, c, 1);
        }
    }
}

static void copy_field(struct buf *b, const char *v, bool last)
{
    if (v == NULL)
        buf_add(b, "\\N", 2);
    else
        copy_text(b, v);
    buf_add(b, last ? "\n" : "\t", 1);
}

/* Sends `b` (taken: freed here) through `copy` (a COPY … FROM STDIN). */
static int copy_in(struct store *s, const char *copy, struct buf *b, char *why, size_t size)
{
    if (b->oom) {
        free(b->data);
        snprintf(why, size, "out of memory");
        return -1;
    }
    PGresult *r = PQexec(s->conn, copy);
    if (PQresultStatus(r) != PGRES_COPY_IN) {
        ok(r, s, why, size, "copy");
        PQclear(r);
        free(b->data);
        return -1;
    }
    PQclear(r);
    int sent = b->len ? PQputCopyData(s->conn, b->data, (int)b->len) : 1;
    free(b->data);
    if (PQputCopyEnd(s->conn, sent == 1 ? NULL : "send failed") != 1) {
        snprintf(why, size, "postgres copy: %s", PQerrorMessage(s->conn));
        return -1;
    }
    int rc = 0;
    while ((r = PQgetResult(s->conn)) != NULL) {
        if (rc == 0 && ok(r, s, why, size, "copy") != 0) rc = -1;
        PQclear(r);
    }
    return rc;
}

/* One COPY per batch: one round trip instead of one per row, and PostgreSQL's fastest
 * load path. */
static int copy_rows(struct store *s, const struct ledger_row *rows, size_t n, char *why,
                     size_t size)
{
    struct buf b = {0};
    for (size_t i = 0; i < n; i++) {
        const struct ledger_row *r = &rows[i];
        char ts[24], status[16], stream[4], pt[24], ct[24], cached[24], est[4], cost[40], lat[40],
            ttft[40], saved[40], revenue[40], margin[40];
        snprintf(ts, sizeof ts, "%lld", (long long)r->ts_ms);
        snprintf(status, sizeof status, "%d", r->status);
        snprintf(stream, sizeof stream, "%d", r->stream);
        snprintf(pt, sizeof pt, "%lld", (long long)r->prompt_tokens);
        snprintf(ct, sizeof ct, "%lld", (long long)r->completion_tokens);
        snprintf(cached, sizeof cached, "%lld", (long long)r->cached_tokens);
        snprintf(est, sizeof est, "%d", r->estimated);
        snprintf(cost, sizeof cost, "%.17g", r->cost_usd);
        snprintf(lat, sizeof lat, "%.3f", r->latency_ms);
        snprintf(ttft, sizeof ttft, "%.3f", r->ttft_ms);
        snprintf(saved, sizeof saved, "%.17g", r->saved_usd);
        snprintf(revenue, sizeof revenue, "%.17g", r->revenue_usd);
        snprintf(margin, sizeof margin, "%.17g", r->margin_usd);
        const char *v[LEDGER_N_COLUMNS] = {
            ts,
            r->request_id,
            r->key_id,
            r->team,
            r->customer,
            r->model,
            r->backend,
            r->target_model,
            r->endpoint,
            status,
            stream,
            r->prompt_tokens < 0 ? NULL : pt,
            r->completion_tokens < 0 ? NULL : ct,
            r->cached_tokens < 0 ? NULL : cached,
            est,
            r->cost_known ? cost : NULL,
            lat,
            r->ttft_ms < 0 ? NULL : ttft,
            r->route,
            r->guard,
            r->cache,
            r->saved_usd < 0 ? NULL : saved,
            r->tier,
            r->revenue_known ? revenue : NULL,
            r->margin_known ? margin : NULL,
        };
        for (int c = 0; c < LEDGER_N_COLUMNS; c++) copy_field(&b, v[c], c == LEDGER_N_COLUMNS - 1);
    }
    return copy_in(s, "COPY requests (" LEDGER_COLUMNS ") FROM STDIN", &b, why, size);
}

/* The rows and what they add to rollups, in one transaction. */
static int append_once(struct store *s, const struct ledger_row *rows, size_t n, char *why,
                       size_t size)
{
    if (rollup_batch_fold(&s->batch, rows, n, why, size) != 0) return -1;
    if (exec(s, "BEGIN", why, size)) return -1;
    if (copy_rows(s, rows, n, why, size) ||
        add_rollups(s, s->batch.lines, s->batch.n_lines, why, size) ||
        add_margin_rollups(s, why, size) || exec(s, "COMMIT", why, size)) {
        char ignore[8];
        exec(s, "ROLLBACK", ignore, sizeof ignore);
        return -1;
    }
    return 0;
}

/* A batch's lines go in by COPY into a temporary table, then one constant statement empties
 * it into rollups in key order (the same lock order in every instance): a statement
 * PostgreSQL plans once per connection instead of a VALUES list of thousands of parameters
 * per batch (measured: 13,000 → 20,000 rows/s). The DELETE … RETURNING replaces ON COMMIT
 * DELETE ROWS, whose truncate at every commit cost more than the rows (8,400 → 10,000 rows/s
 * with margin rollups, BENCHMARKS.md). */
static int add_rollups(struct store *s, const struct rollup_line *lines, size_t n, char *why,
                       size_t size)
{
    if (n == 0) return 0;
    struct buf b = {0};
    for (size_t i = 0; i < n; i++) {
        const struct rollup_line *l = &lines[i];
        char t[ROLLUP_N_COLUMNS][40];
        snprintf(t[0], 40, "%lld", (long long)l->span_ms);
        snprintf(t[1], 40, "%lld", (long long)l->bucket_ms);
        const int64_t counts[] = {l->requests, l->errors, l->prompt_tokens, l->completion_tokens,
                                  l->cached_tokens};
        for (int c = 0; c < 5; c++) snprintf(t[4 + c], 40, "%lld", (long long)counts[c]);
        snprintf(t[9], 40, "%.17g", l->cost_usd);
        snprintf(t[10], 40, "%lld", (long long)l->unknown_cost);
        snprintf(t[11], 40, "%lld", (long long)l->estimated);
        snprintf(t[12], 40, "%.17g", l->latency_ms);
        snprintf(t[13], 40, "%.17g", l->ttft_ms);
        snprintf(t[14], 40, "%lld", (long long)l->ttft_count);
        snprintf(t[15], 40, "%.17g", l->saved_usd);
        snprintf(t[16], 40, "%lld", (long long)l->cache_hits);
        for (int c = 0; c < ROLLUP_N_COLUMNS; c++)
            copy_field(&b,
                       c == 2   ? rollup_dim_name(l->dim)
                       : c == 3 ? l->value
                                : t[c],
                       c == ROLLUP_N_COLUMNS - 1);
    }
    if (exec(s, "CREATE TEMP TABLE IF NOT EXISTS rollup_batch (LIKE rollups)", why, size) ||
        copy_in(s, "COPY rollup_batch (" ROLLUP_COLUMNS ") FROM STDIN", &b, why, size))
        return -1;
    return exec(s,
                "WITH batch AS (DELETE FROM rollup_batch RETURNING *) INSERT INTO rollups "
                "(" ROLLUP_COLUMNS ") SELECT " ROLLUP_COLUMNS
                " FROM batch ORDER BY span_ms, dim, bucket_ms, value" ROLLUP_UPSERT_TAIL,
                why, size);
}

/* The batch's margin lines (s->batch.margin), the way add_rollups does its lines. */
static int add_margin_rollups(struct store *s, char *why, size_t size)
{
    size_t n = s->batch.n_margin;
    if (n == 0) return 0;
    struct buf b = {0};
    for (size_t i = 0; i < n; i++) {
        const struct margin_rollup_line *l = &s->batch.margin[i];
        char t[MARGIN_ROLLUP_N_COLUMNS][40];
        snprintf(t[0], 40, "%lld", (long long)l->span_ms);
        snprintf(t[1], 40, "%lld", (long long)l->bucket_ms);
        snprintf(t[4], 40, "%lld", (long long)l->requests);
        snprintf(t[5], 40, "%.17g", l->revenue_usd);
        snprintf(t[6], 40, "%.17g", l->cost_usd);
        snprintf(t[7], 40, "%.17g", l->margin_usd);
        snprintf(t[8], 40, "%lld", (long long)l->unpriced);
        snprintf(t[9], 40, "%lld", (long long)l->unknown_revenue);
        snprintf(t[10], 40, "%lld", (long long)l->unknown_cost);
        for (int c = 0; c < MARGIN_ROLLUP_N_COLUMNS; c++)
            copy_field(&b,
                       c == 2   ? margin_dim_name(l->dim)
                       : c == 3 ? l->value
                                : t[c],
                       c == MARGIN_ROLLUP_N_COLUMNS - 1);
    }
    if (exec(s, "CREATE TEMP TABLE IF NOT EXISTS margin_batch (LIKE margin_rollups)", why, size) ||
        copy_in(s, "COPY margin_batch (" MARGIN_ROLLUP_COLUMNS ") FROM STDIN", &b, why, size))
        return -1;
    return exec(s,
                "WITH batch AS (DELETE FROM margin_batch RETURNING *) INSERT INTO margin_rollups "
                "(" MARGIN_ROLLUP_COLUMNS ") SELECT " MARGIN_ROLLUP_COLUMNS
                " FROM batch ORDER BY span_ms, dim, bucket_ms, value" MARGIN_ROLLUP_UPSERT_TAIL,
                why, size);
}

static int64_t text_count(PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? -1 : atoll(PQgetvalue(r, row, col));
}

static void text_copy(PGresult *r, int row, int col, char *out, size_t cap)
{
    snprintf(out, cap, "%s", PQgetvalue(r, row, col));
}

#define READ_WHERE                                                                                 \
    " FROM requests WHERE ts_ms >= $1::bigint AND (ts_ms > $1::bigint OR id > $2::bigint) AND "    \
    "ts_ms < $3::bigint ORDER BY ts_ms, id LIMIT $4::bigint"

/* `v9`: only migration 9's columns (the rollup backfill runs before later ones exist). */
static int read_rows(struct store *s, struct ledger_cursor *at, int64_t to_ms,
                     struct ledger_row *out, size_t cap, char *why, size_t size, bool v9)
{
    char from[24], id[24], to[24], limit[24];
    snprintf(from, sizeof from, "%lld", (long long)at->ts_ms);
    snprintf(id, sizeof id, "%lld", (long long)at->id);
    snprintf(to, sizeof to, "%lld", (long long)to_ms);
    snprintf(limit, sizeof limit, "%zu", cap);
    const char *v[4] = {from, id, to, limit};
    PGresult *r = PQexecParams(s->conn,
                               v9 ? "SELECT id, " LEDGER_COLUMNS_V9 READ_WHERE
                                  : "SELECT id, " LEDGER_COLUMNS READ_WHERE,
                               4, NULL, v, NULL, NULL, 0);
    if (ok(r, s, why, size, "read")) {
        PQclear(r);
        return -1;
    }
    int n = PQntuples(r);
    for (int i = 0; i < n; i++) {
        struct ledger_row *w = &out[i];
        memset(w, 0, sizeof *w);
        at->id = atoll(PQgetvalue(r, i, 0));
        w->ts_ms = at->ts_ms = atoll(PQgetvalue(r, i, 1));
        text_copy(r, i, 2, w->request_id, sizeof w->request_id);
        text_copy(r, i, 3, w->key_id, sizeof w->key_id);
        text_copy(r, i, 4, w->team, sizeof w->team);
        text_copy(r, i, 5, w->customer, sizeof w->customer);
        text_copy(r, i, 6, w->model, sizeof w->model);
        text_copy(r, i, 7, w->backend, sizeof w->backend);
        text_copy(r, i, 8, w->target_model, sizeof w->target_model);
        text_copy(r, i, 9, w->endpoint, sizeof w->endpoint);
        w->status = atoi(PQgetvalue(r, i, 10));
        w->stream = atoi(PQgetvalue(r, i, 11)) != 0;
        w->prompt_tokens = text_count(r, i, 12);
        w->completion_tokens = text_count(r, i, 13);
        w->cached_tokens = text_count(r, i, 14);
        w->estimated = atoi(PQgetvalue(r, i, 15)) != 0;
        w->cost_known = !PQgetisnull(r, i, 16);
        w->cost_usd = atof(PQgetvalue(r, i, 16));
        w->latency_ms = atof(PQgetvalue(r, i, 17));
        w->ttft_ms = PQgetisnull(r, i, 18) ? -1 : atof(PQgetvalue(r, i, 18));
        text_copy(r, i, 19, w->route, sizeof w->route);
        text_copy(r, i, 20, w->guard, sizeof w->guard);
        text_copy(r, i, 21, w->cache, sizeof w->cache);
        w->saved_usd = PQgetisnull(r, i, 22) ? -1 : atof(PQgetvalue(r, i, 22));
        if (v9) continue;
        text_copy(r, i, 23, w->tier, sizeof w->tier);
        w->revenue_known = !PQgetisnull(r, i, 24);
        w->revenue_usd = atof(PQgetvalue(r, i, 24));
        w->margin_known = !PQgetisnull(r, i, 25);
        w->margin_usd = atof(PQgetvalue(r, i, 25));
    }
    PQclear(r);
    return n;
}

static int pg_read(struct store *s, struct ledger_cursor *at, int64_t to_ms, struct ledger_row *out,
                   size_t cap, char *why, size_t size)
{
    return read_rows(s, at, to_ms, out, cap, why, size, false);
}

static int pg_read_v9(struct store *s, struct ledger_cursor *at, int64_t to_ms,
                      struct ledger_row *out, size_t cap, char *why, size_t size)
{
    return read_rows(s, at, to_ms, out, cap, why, size, true);
}

static int64_t pg_retain(struct store *s, int64_t rows_before, int64_t rollups_before,
                         int64_t limit, char *why, size_t size)
{
    /* One statement per table, each atomic; the rows' also moves the mark reports read. */
    static const char *const sql[3] = {
        "WITH gone AS (DELETE FROM requests WHERE id IN (SELECT id FROM requests WHERE ts_ms < "
        "$1::bigint ORDER BY ts_ms LIMIT $2::bigint) RETURNING 1), mark AS (UPDATE "
        "ledger_retention SET rows_before_ms = GREATEST(rows_before_ms, $1::bigint) WHERE "
        "EXISTS (SELECT 1 FROM gone)) SELECT COUNT(*) FROM gone",
        "DELETE FROM rollups WHERE ctid IN (SELECT ctid FROM rollups WHERE span_ms IN (3600000, "
        "86400000) AND dim IN " ROLLUP_DIM_LIST " AND bucket_ms < $1::bigint LIMIT $2::bigint)",
        "DELETE FROM margin_rollups WHERE ctid IN (SELECT ctid FROM margin_rollups WHERE "
        "bucket_ms < $1::bigint LIMIT $2::bigint)"};
    const int64_t before[3] = {rows_before, rollups_before, rollups_before};
    int64_t deleted = 0;
    for (int i = 0; i < 3; i++) {
        if (before[i] <= 0) continue;
        char b[24], l[24];
        snprintf(b, sizeof b, "%lld", (long long)before[i]);
        snprintf(l, sizeof l, "%lld", (long long)limit);
        const char *v[2] = {b, l};
        PGresult *r = PQexecParams(s->conn, sql[i], 2, NULL, v, NULL, NULL, 0);
        if (ok(r, s, why, size, "retention")) {
            PQclear(r);
            if (PQstatus(s->conn) != CONNECTION_OK) PQreset(s->conn);
            return -1;
        }
        int64_t n = atoll(i == 0 ? PQgetvalue(r, 0, 0) : PQcmdTuples(r));
        PQclear(r);
        if (n > deleted) deleted = n; /* "< limit: nothing older left" must hold for both */
    }
    return deleted;
}

/* Where raw rows are complete from: retention deleted what was before (rollup_plan). */
static int64_t kept_from(struct store *s)
{
    PGresult *r = PQexec(s->conn, "SELECT rows_before_ms FROM ledger_retention");
    int64_t from = 0;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        from = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    return from;
}

static int pg_append(struct store *s, const struct ledger_row *rows, size_t n, char *why,
                     size_t size)
{
    if (append_once(s, rows, n, why, size) == 0) return 0;
    if (PQstatus(s->conn) == CONNECTION_OK) return -1;
    PQreset(s->conn); /* the server restarted or the connection dropped: once more */
    if (PQstatus(s->conn) != CONNECTION_OK) return -1;
    return append_once(s, rows, n, why, size);
}

static int pg_spend(struct store *s, enum spend_group by, int64_t bucket_ms, int64_t from_ms,
                    int64_t to_ms, struct spend_line **lines, size_t max, char *why, size_t size)
{
    char sql[SPEND_QUERY_SIZE], text[SPEND_QUERY_PARAMS][24];
    const char *v[SPEND_QUERY_PARAMS];
    spend_query_sql(sql, sizeof sql, by, bucket_ms, "$%d::bigint");
    struct rollup_plan plan;
    rollup_plan(from_ms, to_ms, bucket_ms, kept_from(s), &plan);
    int64_t params[SPEND_QUERY_PARAMS];
    spend_query_params(&plan, params);
    for (int i = 0; i < SPEND_QUERY_PARAMS; i++) {
        snprintf(text[i], sizeof text[i], "%lld", (long long)params[i]);
        v[i] = text[i];
    }
    PGresult *r = PQexecParams(s->conn, sql, SPEND_QUERY_PARAMS, NULL, v, NULL, NULL, 0);
    if (ok(r, s, why, size, "spend")) {
        PQclear(r);
        return -1;
    }
    size_t n = (size_t)PQntuples(r), cap = 0;
    if (n > max) n = max;
    for (size_t i = 0; i < n; i++) {
        struct spend_line *l = spend_lines_at(lines, &cap, i);
        if (l == NULL) {
            PQclear(r);
            snprintf(why, size, "out of memory");
            return -1;
        }
        snprintf(l->group, sizeof l->group, "%s", PQgetvalue(r, (int)i, 0));
        l->requests = atoll(PQgetvalue(r, (int)i, 1));
        l->prompt_tokens = atoll(PQgetvalue(r, (int)i, 2));
        l->completion_tokens = atoll(PQgetvalue(r, (int)i, 3));
        l->cost_usd = atof(PQgetvalue(r, (int)i, 4));
        l->unknown_cost = atoll(PQgetvalue(r, (int)i, 5));
        l->estimated = atoll(PQgetvalue(r, (int)i, 6));
        l->bucket_ms = atoll(PQgetvalue(r, (int)i, 7));
        l->other_groups = 0;
    }
    PQclear(r);
    return (int)n;
}

/* Admin calls are rare: a dropped connection is reset and the call tried once more. */
static PGresult *params_retry(struct store *s, const char *sql, int n, const char *const *v)
{
    PGresult *r = PQexecParams(s->conn, sql, n, NULL, v, NULL, NULL, 0);
    if (PQstatus(s->conn) == CONNECTION_OK) return r;
    PQclear(r);
    PQreset(s->conn);
    return PQexecParams(s->conn, sql, n, NULL, v, NULL, NULL, 0);
}

static int pg_key_insert(struct store *s, const struct key_record *k, char *why, size_t size)
{
    char budget[40], period[8], soft[40], exhausted[8], rpm[24], tpm[24], created[24], expires[24],
        revoked[24], max_prompt[24];
    snprintf(budget, sizeof budget, "%.17g", k->budget_usd);
    snprintf(period, sizeof period, "%d", (int)k->budget_period);
    snprintf(soft, sizeof soft, "%.17g", k->budget_soft);
    snprintf(exhausted, sizeof exhausted, "%d", (int)k->on_exhausted);
    snprintf(rpm, sizeof rpm, "%lld", (long long)k->rpm);
    snprintf(tpm, sizeof tpm, "%lld", (long long)k->tpm);
    snprintf(created, sizeof created, "%lld", (long long)k->created_ms);
    snprintf(expires, sizeof expires, "%lld", (long long)k->expires_ms);
    snprintf(revoked, sizeof revoked, "%lld", (long long)k->revoked_ms);
    snprintf(max_prompt, sizeof max_prompt, "%lld", (long long)k->max_prompt_tokens);
    const char *v[KEY_N_COLUMNS] = {k->id,
                                    k->hash,
                                    k->name,
                                    k->team,
                                    k->models,
                                    budget,
                                    period,
                                    soft,
                                    exhausted,
                                    rpm,
                                    tpm,
                                    created,
                                    expires,
                                    revoked,
                                    k->aws_key_id,
                                    k->aws_secret_sealed,
                                    k->allowed_cidrs,
                                    max_prompt,
                                    k->tier};
    PGresult *r = params_retry(
        s,
        "INSERT INTO api_keys (" KEY_COLUMNS
        ") VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19)",
        KEY_N_COLUMNS, v);
    int rc = ok(r, s, why, size, "key insert");
    PQclear(r);
    return rc;
}

static int pg_key_revoke(struct store *s, const char *id, int64_t ts_ms, char *why, size_t size)
{
    char ts[24];
    snprintf(ts, sizeof ts, "%lld", (long long)ts_ms);
    const char *v[2] = {ts, id};
    PGresult *r = params_retry(
        s, "UPDATE api_keys SET revoked_ms = $1 WHERE id = $2 AND revoked_ms = 0", 2, v);
    int rc = ok(r, s, why, size, "key revoke");
    if (rc == 0) rc = atoi(PQcmdTuples(r)) > 0 ? 1 : 0;
    PQclear(r);
    return rc;
}

static int pg_key_list(struct store *s, struct key_record **out, char *why, size_t size)
{
    *out = NULL;
    PGresult *r =
        params_retry(s, "SELECT " KEY_COLUMNS " FROM api_keys ORDER BY created_ms, id", 0, NULL);
    if (ok(r, s, why, size, "key list")) {
        PQclear(r);
        return -1;
    }
    int n = PQntuples(r);
    struct key_record *keys = calloc(n ? (size_t)n : 1, sizeof *keys);
    if (keys == NULL) {
        PQclear(r);
        snprintf(why, size, "out of memory");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        struct key_record *k = &keys[i];
        snprintf(k->id, sizeof k->id, "%s", PQgetvalue(r, i, 0));
        snprintf(k->hash, sizeof k->hash, "%s", PQgetvalue(r, i, 1));
        snprintf(k->name, sizeof k->name, "%s", PQgetvalue(r, i, 2));
        snprintf(k->team, sizeof k->team, "%s", PQgetvalue(r, i, 3));
        snprintf(k->models, sizeof k->models, "%s", PQgetvalue(r, i, 4));
        k->budget_usd = atof(PQgetvalue(r, i, 5));
        k->budget_period = (enum budget_period)atoi(PQgetvalue(r, i, 6));
        k->budget_soft = atof(PQgetvalue(r, i, 7));
        k->on_exhausted = (enum budget_exhausted)atoi(PQgetvalue(r, i, 8));
        k->rpm = atoll(PQgetvalue(r, i, 9));
        k->tpm = atoll(PQgetvalue(r, i, 10));
        k->created_ms = atoll(PQgetvalue(r, i, 11));
        k->expires_ms = atoll(PQgetvalue(r, i, 12));
        k->revoked_ms = atoll(PQgetvalue(r, i, 13));
        snprintf(k->aws_key_id, sizeof k->aws_key_id, "%s", PQgetvalue(r, i, 14));
        snprintf(k->aws_secret_sealed, sizeof k->aws_secret_sealed, "%s", PQgetvalue(r, i, 15));
        snprintf(k->allowed_cidrs, sizeof k->allowed_cidrs, "%s", PQgetvalue(r, i, 16));
        k->max_prompt_tokens = atoll(PQgetvalue(r, i, 17));
        snprintf(k->tier, sizeof k->tier, "%s", PQgetvalue(r, i, 18));
    }
    PQclear(r);
    *out = keys;
    return n;
}

static int64_t pg_count(struct store *s)
{
    PGresult *r = PQexec(s->conn, "SELECT COUNT(*) FROM requests");
    int64_t n = PQresultStatus(r) == PGRES_TUPLES_OK ? atoll(PQgetvalue(r, 0, 0)) : -1;
    PQclear(r);
    return n;
}

static int pg_customer_set(struct store *s, const struct customer_record *c, char *why, size_t size)
{
    char updated[24];
    snprintf(updated, sizeof updated, "%lld", (long long)c->updated_ms);
    const char *v[3] = {c->customer, c->tier, updated};
    PGresult *r = params_retry(s,
                               "INSERT INTO customers (customer, tier, updated_ms) VALUES "
                               "($1, $2, $3::bigint) ON CONFLICT (customer) DO UPDATE SET tier = "
                               "EXCLUDED.tier, updated_ms = EXCLUDED.updated_ms",
                               3, v);
    int rc = ok(r, s, why, size, "customer set");
    PQclear(r);
    return rc;
}

static int pg_customer_remove(struct store *s, const char *customer, char *why, size_t size)
{
    const char *v[1] = {customer};
    PGresult *r = params_retry(s, "DELETE FROM customers WHERE customer = $1", 1, v);
    int rc = ok(r, s, why, size, "customer remove");
    if (rc == 0) rc = atoi(PQcmdTuples(r)) > 0 ? 1 : 0;
    PQclear(r);
    return rc;
}

static int pg_customer_list(struct store *s, struct customer_record **out, char *why, size_t size)
{
    *out = NULL;
    PGresult *r = params_retry(
        s, "SELECT customer, tier, updated_ms FROM customers ORDER BY customer", 0, NULL);
    if (ok(r, s, why, size, "customer list")) {
        PQclear(r);
        return -1;
    }
    int n = PQntuples(r);
    struct customer_record *list = n ? calloc((size_t)n, sizeof *list) : NULL;
    if (n && list == NULL) {
        PQclear(r);
        snprintf(why, size, "out of memory");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        snprintf(list[i].customer, sizeof list[i].customer, "%s", PQgetvalue(r, i, 0));
        snprintf(list[i].tier, sizeof list[i].tier, "%s", PQgetvalue(r, i, 1));
        list[i].updated_ms = atoll(PQgetvalue(r, i, 2));
    }
    PQclear(r);
    *out = list;
    return n;
}

static int pg_margin(struct store *s, bool by_customer, int64_t from_ms, int64_t to_ms,
                     struct margin_line **lines, size_t max, char *why, size_t size)
{
    char sql[MARGIN_QUERY_SIZE], text[SPEND_QUERY_PARAMS + 1][24];
    margin_query_sql(sql, sizeof sql, by_customer, "$%d::bigint");
    struct rollup_plan plan;
    rollup_plan(from_ms, to_ms, 0, kept_from(s), &plan);
    int64_t params[SPEND_QUERY_PARAMS];
    spend_query_params(&plan, params);
    const char *v[SPEND_QUERY_PARAMS + 1];
    for (int i = 0; i < SPEND_QUERY_PARAMS; i++) {
        snprintf(text[i], sizeof text[i], "%lld", (long long)params[i]);
        v[i] = text[i];
    }
    snprintf(text[SPEND_QUERY_PARAMS], sizeof text[0], "%zu", max);
    v[SPEND_QUERY_PARAMS] = text[SPEND_QUERY_PARAMS];
    *lines = NULL;
    PGresult *r = params_retry(s, sql, SPEND_QUERY_PARAMS + 1, v);
    if (ok(r, s, why, size, "margin")) {
        PQclear(r);
        return -1;
    }
    int n = PQntuples(r);
    struct margin_line *out = calloc(n ? (size_t)n : 1, sizeof *out);
    if (out == NULL) {
        PQclear(r);
        snprintf(why, size, "out of memory");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        struct margin_line *l = &out[i];
        snprintf(l->group, sizeof l->group, "%s", PQgetvalue(r, i, 0));
        l->requests = atoll(PQgetvalue(r, i, 1));
        l->revenue_usd = atof(PQgetvalue(r, i, 2));
        l->cost_usd = atof(PQgetvalue(r, i, 3));
        l->margin_usd = atof(PQgetvalue(r, i, 4));
        l->unpriced = atoll(PQgetvalue(r, i, 5));
        l->unknown_revenue = atoll(PQgetvalue(r, i, 6));
        l->unknown_cost = atoll(PQgetvalue(r, i, 7));
    }
    PQclear(r);
    *lines = out;
    return n;
}

const struct store_ops store_postgres = {
    .scheme = "postgres",
    .open = pg_open,
    .append = pg_append,
    .read = pg_read,
    .retain = pg_retain,
    .spend = pg_spend,
    .key_insert = pg_key_insert,
    .key_revoke = pg_key_revoke,
    .key_list = pg_key_list,
    .customer_set = pg_customer_set,
    .customer_remove = pg_customer_remove,
    .customer_list = pg_customer_list,
    .margin = pg_margin,
    .count = pg_count,
    .close = pg_close,
};
