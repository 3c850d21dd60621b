/*
 * DESIGN: export reads keyset pages through the store's `read` (any store, bounded memory);
 * import validates the whole file first, then appends in batches through `append`, so the
 * rollups stay equal to the rows exactly as with the gateway's own writes. One row format
 * both ways (JSONL), so export | import round-trips.
 */
#include "cli/ledger.h"

#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "config/config.h"
#include "cost/report.h"
#include "store/rollup.h"
#include "store/store.h"
#include "util/clock.h"

#define IMPORT_ROWS 1000 /* rows per transaction on import */

static const char *const columns[] = {"ts",
                                      "ts_ms",
                                      "request_id",
                                      "key_id",
                                      "team",
                                      "customer",
                                      "model",
                                      "backend",
                                      "target_model",
                                      "endpoint",
                                      "status",
                                      "stream",
                                      "prompt_tokens",
                                      "completion_tokens",
                                      "cached_tokens",
                                      "estimated",
                                      "cost_usd",
                                      "latency_ms",
                                      "ttft_ms",
                                      "route",
                                      "guard",
                                      "cache",
                                      "saved_usd",
                                      "tier",
                                      "revenue_usd",
                                      "margin_usd"};
#define N_COLUMNS (sizeof columns / sizeof columns[0])

static json_t *count_json(int64_t v)
{
    return v < 0 ? json_null() : json_integer(v);
}

static json_t *row_json(const struct ledger_row *r)
{
    char at[32];
    clock_iso8601(r->ts_ms, at, sizeof at);
    json_t *o = json_object();
    json_object_set_new(o, "ts", json_string(at));
    json_object_set_new(o, "ts_ms", json_integer(r->ts_ms));
    const char *text[] = {r->request_id, r->key_id,  r->team,         r->customer,
                          r->model,      r->backend, r->target_model, r->endpoint};
    for (size_t i = 0; i < 8; i++) json_object_set_new(o, columns[2 + i], json_string(text[i]));
    json_object_set_new(o, "status", json_integer(r->status));
    json_object_set_new(o, "stream", json_boolean(r->stream));
    json_object_set_new(o, "prompt_tokens", count_json(r->prompt_tokens));
    json_object_set_new(o, "completion_tokens", count_json(r->completion_tokens));
    json_object_set_new(o, "cached_tokens", count_json(r->cached_tokens));
    json_object_set_new(o, "estimated", json_boolean(r->estimated));
    json_object_set_new(o, "cost_usd", r->cost_known ? json_real(r->cost_usd) : json_null());
    json_object_set_new(o, "latency_ms", json_real(r->latency_ms));
    json_object_set_new(o, "ttft_ms", r->ttft_ms >= 0 ? json_real(r->ttft_ms) : json_null());
    json_object_set_new(o, "route", json_string(r->route));
    json_object_set_new(o, "guard", json_string(r->guard));
    json_object_set_new(o, "cache", json_string(r->cache));
    json_object_set_new(o, "saved_usd", r->saved_usd >= 0 ? json_real(r->saved_usd) : json_null());
    json_object_set_new(o, "tier", json_string(r->tier));
    json_object_set_new(o, "revenue_usd",
                        r->revenue_known ? json_real(r->revenue_usd) : json_null());
    json_object_set_new(o, "margin_usd", r->margin_known ? json_real(r->margin_usd) : json_null());
    return o;
}

/* One CSV line: the JSONL object's values in column order, null as an empty field. */
static void row_csv(FILE *out, const struct ledger_row *r)
{
    json_t *o = row_json(r);
    for (size_t i = 0; i < N_COLUMNS; i++) {
        json_t *v = json_object_get(o, columns[i]);
        if (i) fputc(',', out);
        if (json_is_string(v)) {
            report_csv_field(out, json_string_value(v), false);
        } else if (json_is_integer(v)) {
            fprintf(out, "%lld", (long long)json_integer_value(v));
        } else if (json_is_real(v)) {
            fprintf(out, "%.15g", json_real_value(v));
        } else if (json_is_boolean(v)) {
            fputs(json_is_true(v) ? "true" : "false", out);
        }
    }
    fputs("\r\n", out);
    json_decref(o);
}

static int export_rows(struct store_handle *s, int64_t from, int64_t to, bool csv)
{
    struct ledger_row *rows = malloc(LEDGER_PAGE_ROWS * sizeof *rows);
    if (rows == NULL) {
        fprintf(stderr, "stratus ledger export: out of memory\n");
        return 1;
    }
    if (csv) {
        for (size_t i = 0; i < N_COLUMNS; i++) printf("%s%s", i ? "," : "", columns[i]);
        fputs("\r\n", stdout);
    }
    struct ledger_cursor at = {from, -1};
    char why[400];
    int n;
    do {
        if ((n = s->ops->read(s->db, &at, to, rows, LEDGER_PAGE_ROWS, why, sizeof why)) < 0) {
            fprintf(stderr, "stratus ledger export: %s\n", why);
            free(rows);
            return 1;
        }
        for (int i = 0; i < n; i++) {
            if (csv) {
                row_csv(stdout, &rows[i]);
                continue;
            }
            json_t *o = row_json(&rows[i]);
            json_dumpf(o, stdout, JSON_COMPACT | JSON_REAL_PRECISION(15));
            fputc('\n', stdout);
            json_decref(o);
        }
    } while (n == LEDGER_PAGE_ROWS);
    free(rows);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "stratus ledger export: cannot write the output\n");
        return 1;
    }
    return 0;
}

/* ---- import ------------------------------------------------------------------------------ */

static int text_field(json_t *o, const char *k, char *out, size_t cap, bool required, char *why,
                      size_t size)
{
    json_t *v = json_object_get(o, k);
    if (v == NULL && !required) {
        out[0] = '\0';
        return 0;
    }
    if (v == NULL) {
        snprintf(why, size, "missing '%s'", k);
        return -1;
    }
    if (!json_is_string(v) || strlen(json_string_value(v)) >= cap) {
        snprintf(why, size, "'%s' must be a string of at most %zu bytes", k, cap - 1);
        return -1;
    }
    snprintf(out, cap, "%s", json_string_value(v));
    return 0;
}

/* A count or amount: absent or null → `none`; else a number >= 0. */
static int number_field(json_t *o, const char *k, double none, double *out, char *why, size_t size)
{
    json_t *v = json_object_get(o, k);
    if (v == NULL || json_is_null(v)) {
        *out = none;
        return 0;
    }
    if (!json_is_number(v) || !(json_number_value(v) >= 0) || json_number_value(v) > 9e15) {
        snprintf(why, size, "'%s' must be a number >= 0 or null", k);
        return -1;
    }
    *out = json_number_value(v);
    return 0;
}

static int parse_row(const char *line, struct ledger_row *r, char *why, size_t size)
{
    json_error_t je;
    json_t *o = json_loads(line, 0, &je);
    memset(r, 0, sizeof *r);
    if (!json_is_object(o)) {
        snprintf(why, size, "not a JSON object (%s)", o ? "another JSON value" : je.text);
        json_decref(o);
        return -1;
    }
    double ts, status, pt, ct, cached, cost, latency, ttft, saved, revenue;
    /* tier, revenue_usd and margin_usd came with migration 10: optional, so files exported
     * before still import. */
    const char *texts[] = {"request_id",   "key_id",   "team",  "customer", "model", "backend",
                           "target_model", "endpoint", "route", "guard",    "cache", "tier"};
    char *dest[] = {r->request_id,   r->key_id,   r->team,  r->customer, r->model, r->backend,
                    r->target_model, r->endpoint, r->route, r->guard,    r->cache, r->tier};
    size_t caps[] = {sizeof r->request_id,   sizeof r->key_id,   sizeof r->team,
                     sizeof r->customer,     sizeof r->model,    sizeof r->backend,
                     sizeof r->target_model, sizeof r->endpoint, sizeof r->route,
                     sizeof r->guard,        sizeof r->cache,    sizeof r->tier};
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof texts / sizeof texts[0]; i++)
        rc = text_field(o, texts[i], dest[i], caps[i], i < 8, why, size);
    if (rc == 0 && (!json_is_integer(json_object_get(o, "ts_ms")) ||
                    json_integer_value(json_object_get(o, "ts_ms")) < 0)) {
        snprintf(why, size, "'ts_ms' must be an integer >= 0 (milliseconds since the epoch)");
        rc = -1;
    }
    if (rc == 0 && (number_field(o, "status", 0, &status, why, size) ||
                    number_field(o, "prompt_tokens", -1, &pt, why, size) ||
                    number_field(o, "completion_tokens", -1, &ct, why, size) ||
                    number_field(o, "cached_tokens", -1, &cached, why, size) ||
                    number_field(o, "cost_usd", -1, &cost, why, size) ||
                    number_field(o, "latency_ms", 0, &latency, why, size) ||
                    number_field(o, "ttft_ms", -1, &ttft, why, size) ||
                    number_field(o, "saved_usd", -1, &saved, why, size) ||
                    number_field(o, "revenue_usd", -1, &revenue, why, size)))
        rc = -1;
    /* A margin may be negative (cost above revenue): any finite number, or null. */
    json_t *margin = json_object_get(o, "margin_usd");
    if (rc == 0 && margin && !json_is_null(margin) &&
        (!json_is_number(margin) || !(fabs(json_number_value(margin)) <= 9e15))) {
        snprintf(why, size, "'margin_usd' must be a number or null");
        rc = -1;
    }
    if (rc == 0) {
        ts = (double)json_integer_value(json_object_get(o, "ts_ms"));
        r->ts_ms = (int64_t)ts;
        r->status = (int)status;
        r->stream = json_is_true(json_object_get(o, "stream"));
        r->estimated = json_is_true(json_object_get(o, "estimated"));
        r->prompt_tokens = (int64_t)pt;
        r->completion_tokens = (int64_t)ct;
        r->cached_tokens = (int64_t)cached;
        r->cost_known = cost >= 0;
        r->cost_usd = cost >= 0 ? cost : 0;
        r->latency_ms = latency;
        r->ttft_ms = ttft;
        r->saved_usd = saved;
        r->revenue_known = revenue >= 0;
        r->revenue_usd = revenue >= 0 ? revenue : 0;
        r->margin_known = margin && json_is_number(margin);
        r->margin_usd = r->margin_known ? json_number_value(margin) : 0;
    }
    json_decref(o);
    return rc;
}

/* Reads `path` line by line; with `rows` NULL only checks. @return rows, or -1 (printed). */
static long import_pass(const char *path, struct store_handle *s, struct ledger_row *rows)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "stratus ledger import: cannot open %s\n", path);
        return -1;
    }
    char *line = NULL, why[400];
    size_t cap = 0, batch = 0;
    long lineno = 0, count = 0;
    ssize_t len;
    struct ledger_row one;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (strspn(line, " \t\r\n") == (size_t)len) continue; /* blank lines are fine */
        struct ledger_row *r = rows ? &rows[batch] : &one;
        if (parse_row(line, r, why, sizeof why) != 0) {
            fprintf(stderr, "stratus ledger import: %s:%ld: %s; nothing imported\n", path, lineno,
                    why);
            count = -1;
            break;
        }
        count++;
        if (rows && ++batch == IMPORT_ROWS) {
            if (s->ops->append(s->db, rows, batch, why, sizeof why) != 0) goto failed;
            batch = 0;
        }
    }
    if (count >= 0 && rows && batch > 0 && s->ops->append(s->db, rows, batch, why, sizeof why) != 0)
        goto failed;
    free(line);
    fclose(f);
    return count;
failed:
    fprintf(stderr, "stratus ledger import: %s (rows before line %ld were imported)\n", why,
            lineno);
    free(line);
    fclose(f);
    return -1;
}

int cli_ledger(int argc, char **argv)
{
    const char *sub = argc > 2 ? argv[2] : "";
    bool is_export = strcmp(sub, "export") == 0, is_import = strcmp(sub, "import") == 0;
    if (!is_export && !is_import) {
        fprintf(stderr, "usage: stratus ledger export [--since T] [--until T] [--format "
                        "csv|jsonl] [--config FILE]\n"
                        "       stratus ledger import FILE.jsonl [--config FILE]\n");
        return 2;
    }
    struct cli_opt o[] = {{"--config", NULL, false},
                          {"--since", NULL, false},
                          {"--until", NULL, false},
                          {"--format", NULL, false},
                          {NULL, NULL, false}};
    const char *file = NULL;
    int rc = cli_parse_opts(is_export ? "stratus ledger export" : "stratus ledger import", argc,
                            argv, 3, o, is_import ? &file : NULL);
    if (rc) return rc;
    int64_t now = clock_wall_ms(), from = 0, to = now + 1;
    const char *format = cli_opt(o, "--format") ? cli_opt(o, "--format") : "jsonl";
    if (is_export) {
        if (report_parse_time(cli_opt(o, "--since") ? cli_opt(o, "--since") : "30d", now, &from) ||
            (cli_opt(o, "--until") && report_parse_time(cli_opt(o, "--until"), now, &to))) {
            fprintf(stderr, "stratus ledger export: --since/--until take 7d, 12h, 30m, "
                            "2026-11-01, 2026-11-01T00:00:00Z or epoch milliseconds\n");
            return 2;
        }
        if (strcmp(format, "csv") != 0 && strcmp(format, "jsonl") != 0) {
            fprintf(stderr, "stratus ledger export: --format is csv or jsonl\n");
            return 2;
        }
    } else if (file == NULL || cli_opt(o, "--since") || cli_opt(o, "--until") ||
               cli_opt(o, "--format")) {
        fprintf(stderr, "stratus ledger import: takes one FILE (JSONL, as export writes it) and "
                        "--config\n");
        return 2;
    }
    struct config *cfg = NULL;
    struct store_handle s;
    if ((rc = cli_open(cli_opt(o, "--config"), &cfg, &s)) != 0) return rc;
    if (is_export) {
        rc = export_rows(&s, from, to, strcmp(format, "csv") == 0);
    } else {
        struct ledger_row *rows = malloc(IMPORT_ROWS * sizeof *rows);
        long n = rows == NULL ? -1 : import_pass(file, &s, NULL);
        if (n >= 0) n = import_pass(file, &s, rows);
        if (n >= 0) fprintf(stderr, "stratus ledger import: %ld rows imported\n", n);
        rc = n >= 0 ? 0 : 1;
        free(rows);
    }
    store_close(&s);
    config_free(cfg);
    return rc;
}
