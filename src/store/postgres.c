/*
 * DESIGN: PostgreSQL through libpq, for several gateway instances sharing one ledger. The
 * same schema and migrations as SQLite (BIGSERIAL ids); a migration runs under an advisory
 * lock so two instances starting together do not both apply it. A batch is one COPY (one
 * round trip, one transaction); a broken connection is reset once and the batch retried.
 */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/schema.h"
#include "store/store.h"

#define MIGRATION_LOCK 7477323 /* pg_advisory_lock key: "stratus" schema changes */

struct store {
    PGconn *conn;
};

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
        char q[128], sql[4096];
        snprintf(q, sizeof q, "SELECT 1 FROM schema_migrations WHERE version = %d", m->version);
        PGresult *r = PQexec(s->conn, q);
        if ((rc = ok(r, s, why, size, "migration check")) == 0 && PQntuples(r) == 0) {
            migration_sql(m, "BIGSERIAL PRIMARY KEY", sql, sizeof sql);
            snprintf(q, sizeof q, "INSERT INTO schema_migrations (version) VALUES (%d)",
                     m->version);
            rc = exec(s, "BEGIN", why, size) || exec(s, sql, why, size) || exec(s, q, why, size) ||
                         exec(s, "COMMIT", why, size)
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

/* One COPY per batch: one round trip instead of one per row, and PostgreSQL's fastest
 * load path. COPY is a statement of its own, so the batch is atomic without BEGIN. */
static int append_once(struct store *s, const struct ledger_row *rows, size_t n, char *why,
                       size_t size)
{
    struct buf b = {0};
    for (size_t i = 0; i < n; i++) {
        const struct ledger_row *r = &rows[i];
        char ts[24], status[16], stream[4], pt[24], ct[24], cached[24], est[4], cost[40], lat[40],
            ttft[40], saved[40];
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
        };
        for (int c = 0; c < LEDGER_N_COLUMNS; c++) copy_field(&b, v[c], c == LEDGER_N_COLUMNS - 1);
    }
    if (b.oom) {
        free(b.data);
        snprintf(why, size, "out of memory");
        return -1;
    }
    PGresult *r = PQexec(s->conn, "COPY requests (" LEDGER_COLUMNS ") FROM STDIN");
    if (PQresultStatus(r) != PGRES_COPY_IN) {
        ok(r, s, why, size, "copy");
        PQclear(r);
        free(b.data);
        return -1;
    }
    PQclear(r);
    int sent = PQputCopyData(s->conn, b.data, (int)b.len);
    free(b.data);
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
                    int64_t to_ms, struct spend_line *lines, size_t cap, char *why, size_t size)
{
    char sql[900], from[24], to[24];
    spend_query_sql(sql, sizeof sql, by, bucket_ms, "$1::bigint", "$2::bigint");
    snprintf(from, sizeof from, "%lld", (long long)from_ms);
    snprintf(to, sizeof to, "%lld", (long long)to_ms);
    const char *v[2] = {from, to};
    PGresult *r = PQexecParams(s->conn, sql, 2, NULL, v, NULL, NULL, 0);
    if (ok(r, s, why, size, "spend")) {
        PQclear(r);
        return -1;
    }
    size_t n = (size_t)PQntuples(r);
    if (n > cap) n = cap;
    for (size_t i = 0; i < n; i++) {
        struct spend_line *l = &lines[i];
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
                                    max_prompt};
    PGresult *r =
        params_retry(s,
                     "INSERT INTO api_keys (" KEY_COLUMNS
                     ") VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18)",
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

const struct store_ops store_postgres = {
    .scheme = "postgres",
    .open = pg_open,
    .append = pg_append,
    .spend = pg_spend,
    .key_insert = pg_key_insert,
    .key_revoke = pg_key_revoke,
    .key_list = pg_key_list,
    .count = pg_count,
    .close = pg_close,
};
