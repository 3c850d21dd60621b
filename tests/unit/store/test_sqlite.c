/* Unit tests for src/store with a real SQLite file: URLs, migrations that run once, ledger
 * rows (NULL for unknown tokens and cost), spend sums per group and time window, keys. */
#include "unit/cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "cost/report.h"
#include "store/ledger.h"
#include "store/store.h"

static char dir[64];

static struct store_handle open_store(void)
{
    struct store_handle h;
    char why[300];
    if (store_open("sqlite://ledger.db", dir, NULL, &h, why, sizeof why) != 0) fail_msg("%s", why);
    return h;
}

static int setup(void **state)
{
    (void)state;
    strcpy(dir, "/tmp/stratus-store-XXXXXX");
    assert_non_null(mkdtemp(dir));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char path[128];
    const char *files[] = {"ledger.db", "ledger.db-wal", "ledger.db-shm"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
    return 0;
}

static struct ledger_row row(int64_t ts, const char *model, const char *team, long long prompt,
                             long long completion, bool cost_known, double cost)
{
    struct ledger_row r = {.ts_ms = ts,
                           .status = 200,
                           .prompt_tokens = prompt,
                           .completion_tokens = completion,
                           .cached_tokens = -1,
                           .cost_known = cost_known,
                           .cost_usd = cost,
                           .ttft_ms = -1};
    snprintf(r.request_id, sizeof r.request_id, "req_%lld", (long long)ts);
    snprintf(r.model, sizeof r.model, "%s", model);
    snprintf(r.team, sizeof r.team, "%s", team);
    snprintf(r.endpoint, sizeof r.endpoint, "chat/completions");
    return r;
}

static void test_urls_and_errors(void **state)
{
    (void)state;
    struct store_handle h;
    char why[300];
    assert_int_equal(store_open("mysql://x", dir, NULL, &h, why, sizeof why), -1);
    assert_non_null(strstr(why, "mysql"));
    assert_int_equal(store_open("sqlite://", dir, NULL, &h, why, sizeof why), -1);
    assert_non_null(strstr(why, "no file name"));
    assert_int_equal(spend_group_parse("team"), SPEND_BY_TEAM);
    assert_int_equal(spend_group_parse("nope"), -1);
    assert_string_equal(spend_group_name(SPEND_BY_BACKEND), "backend");
}

static void test_rows_sum_by_group_within_the_window(void **state)
{
    (void)state;
    struct store_handle h = open_store();
    struct ledger_row rows[] = {
        row(1000, "chat", "ml", 10, 5, true, 0.5), row(2000, "chat", "ml", 20, 5, true, 0.25),
        row(3000, "embed", "web", 7, -1, false, 0), /* unknown cost and completion */
        row(9000, "chat", "ml", 1, 1, true, 100),   /* outside the window below */
    };
    char why[300];
    assert_int_equal(h.ops->append(h.db, rows, 4, why, sizeof why), 0);
    assert_int_equal(h.ops->count(h.db), 4);
    struct spend_line *lines = NULL;
    int n = h.ops->spend(h.db, SPEND_BY_MODEL, 0, 0, 5000, &lines, 8, why, sizeof why);
    assert_int_equal(n, 2);
    assert_string_equal(lines[0].group, "chat"); /* biggest spend first */
    assert_int_equal(lines[0].requests, 2);
    assert_int_equal(lines[0].prompt_tokens, 30);
    assert_int_equal(lines[0].completion_tokens, 10);
    assert_true(lines[0].cost_usd > 0.7499 && lines[0].cost_usd < 0.7501);
    assert_string_equal(lines[1].group, "embed");
    assert_int_equal(lines[1].unknown_cost, 1);
    n = h.ops->spend(h.db, SPEND_BY_TEAM, 0, 0, 10000, &lines, 8, why, sizeof why);
    assert_int_equal(n, 2);
    assert_string_equal(lines[0].group, "ml");
    assert_int_equal(lines[0].requests, 3);
    free(lines);
    store_close(&h);
    /* Reopened: migrations do not run twice and the rows are still there. */
    h = open_store();
    assert_int_equal(h.ops->count(h.db), 4);
    store_close(&h);
}

static void test_keys_insert_revoke_list(void **state)
{
    (void)state;
    struct store_handle h = open_store();
    char why[300];
    struct key_record k = {.rpm = 60, .tpm = 1000, .created_ms = 5};
    strcpy(k.id, "key_0123456789abcdef");
    strcpy(k.hash, "ab");
    strcpy(k.team, "ml");
    assert_int_equal(h.ops->key_insert(h.db, &k, why, sizeof why), 0);
    assert_int_equal(h.ops->key_insert(h.db, &k, why, sizeof why), -1); /* same id */
    assert_int_equal(h.ops->key_revoke(h.db, "key_0123456789abcdef", 7, why, sizeof why), 1);
    assert_int_equal(h.ops->key_revoke(h.db, "key_0123456789abcdef", 8, why, sizeof why), 0);
    assert_int_equal(h.ops->key_revoke(h.db, "key_missing", 8, why, sizeof why), 0);
    struct key_record *list = NULL;
    assert_int_equal(h.ops->key_list(h.db, &list, why, sizeof why), 1);
    assert_string_equal(list[0].team, "ml");
    assert_int_equal(list[0].rpm, 60);
    assert_int_equal(list[0].revoked_ms, 7);
    assert_string_equal(list[0].tier, "");
    free(list);
    /* Migration 10: a key keeps its customer tier (docs/tiers.md). */
    struct key_record t = {.created_ms = 9};
    strcpy(t.id, "key_00000000000000aa");
    strcpy(t.hash, "cd");
    strcpy(t.tier, "premium");
    assert_int_equal(h.ops->key_insert(h.db, &t, why, sizeof why), 0);
    assert_int_equal(h.ops->key_list(h.db, &list, why, sizeof why), 2);
    assert_string_equal(list[1].id, "key_00000000000000aa");
    assert_string_equal(list[1].tier, "premium");
    free(list);
    store_close(&h);
}

/* Migration 10's customers table: set is an upsert, remove says whether one was there. */
static void test_customers_set_list_remove(void **state)
{
    (void)state;
    struct store_handle h = open_store();
    char why[300];
    struct customer_record *list = NULL;
    assert_int_equal(h.ops->customer_list(h.db, &list, why, sizeof why), 0);
    free(list);
    struct customer_record c = {.updated_ms = 5};
    strcpy(c.customer, "globex");
    strcpy(c.tier, "free");
    assert_int_equal(h.ops->customer_set(h.db, &c, why, sizeof why), 0);
    strcpy(c.customer, "acme");
    assert_int_equal(h.ops->customer_set(h.db, &c, why, sizeof why), 0);
    strcpy(c.tier, "premium");
    c.updated_ms = 6;
    assert_int_equal(h.ops->customer_set(h.db, &c, why, sizeof why), 0); /* acme again */
    assert_int_equal(h.ops->customer_list(h.db, &list, why, sizeof why), 2);
    assert_string_equal(list[0].customer, "acme");
    assert_string_equal(list[0].tier, "premium");
    assert_int_equal(list[0].updated_ms, 6);
    assert_string_equal(list[1].customer, "globex");
    assert_string_equal(list[1].tier, "free");
    free(list);
    assert_int_equal(h.ops->customer_remove(h.db, "acme", why, sizeof why), 1);
    assert_int_equal(h.ops->customer_remove(h.db, "acme", why, sizeof why), 0);
    assert_int_equal(h.ops->customer_list(h.db, &list, why, sizeof why), 1);
    assert_string_equal(list[0].customer, "globex");
    free(list);
    store_close(&h);
}

static void test_the_ledger_writer_commits_everything_at_stop(void **state)
{
    (void)state;
    struct store_handle h = open_store();
    int64_t before = h.ops->count(h.db);
    store_close(&h);
    h = open_store();
    struct ledger *l = ledger_start(h, 1000, 16, 1);
    assert_non_null(l);
    for (int i = 0; i < 100; i++) {
        struct ledger_row r = row(20000 + i, "chat", "", 1, 1, true, 0.001);
        assert_int_equal(ledger_append(l, &r, NULL), 0);
    }
    ledger_stop(l); /* writes every queued row, closes the store */
    h = open_store();
    assert_int_equal(h.ops->count(h.db), before + 100);
    store_close(&h);
}

#define H 3600000LL

static void test_spend_buckets_by_utc_hour_within_the_window(void **state)
{
    (void)state;
    struct store_handle h = open_store();
    int64_t t0 = 1000 * H; /* an hour boundary */
    struct ledger_row rows[] = {
        row(t0 + 10, "m-a", "x", 1, 1, true, 1.0),
        row(t0 + H - 1, "m-a", "x", 1, 1, true, 2.0),
        row(t0 + 20, "m-b", "x", 1, 1, true, 0.5),
        row(t0 + H, "m-b", "x", 1, 1, true, 4.0),
        row(t0 + 2 * H + 5, "m-a", "x", 1, 1, true, 8),
        row(t0 + 3 * H, "m-a", "x", 1, 1, true, 16),
    };
    char why[300];
    assert_int_equal(h.ops->append(h.db, rows, 6, why, sizeof why), 0);
    struct spend_line *lines = NULL;
    /* [t0, t0 + 3H): the row at t0 + 3H is outside; hour t0+1H has only m-b */
    int n = h.ops->spend(h.db, SPEND_BY_MODEL, H, t0, t0 + 3 * H, &lines, 8, why, sizeof why);
    assert_int_equal(n, 4);
    assert_true(lines[0].bucket_ms == t0 && strcmp(lines[0].group, "m-a") == 0);
    assert_int_equal(lines[0].requests, 2);
    assert_true(lines[0].cost_usd > 2.999 && lines[0].cost_usd < 3.001);
    assert_true(lines[1].bucket_ms == t0 && strcmp(lines[1].group, "m-b") == 0);
    assert_true(lines[2].bucket_ms == t0 + H && strcmp(lines[2].group, "m-b") == 0);
    assert_true(lines[3].bucket_ms == t0 + 2 * H && strcmp(lines[3].group, "m-a") == 0);
    /* the report on top: top=1 folds m-b into "other" in each bucket it appears in */
    struct spend_query q = {.by = SPEND_BY_MODEL,
                            .bucket = SPEND_BUCKET_HOUR,
                            .top = 1,
                            .from_ms = t0,
                            .to_ms = t0 + 3 * H,
                            .now_ms = t0 + 3 * H};
    struct spend_report r;
    assert_int_equal(spend_report_build(&h, &q, &r, why, sizeof why), 0);
    assert_int_equal(r.n_groups, 2); /* m-a (11), other = m-b (4.5) */
    assert_string_equal(r.groups[0].group, "m-a");
    assert_string_equal(r.groups[1].group, "other");
    assert_int_equal(r.groups[1].other_groups, 1);
    assert_int_equal(r.n, 4);
    assert_string_equal(r.lines[1].group, "other");
    assert_true(r.lines[2].bucket_ms == t0 + H && strcmp(r.lines[2].group, "other") == 0);
    assert_int_equal(r.total.requests, 5);
    spend_report_free(&r);
    free(lines);
    store_close(&h);
}

/* Retention deletes in batches of at most `limit`, only rows older than the cut, keeps
 * their rollups, and moves where reports trust raw rows from. Reading pages walks every
 * row once, oldest first. */
static void test_retention_batches_and_paged_reads(void **state)
{
    (void)state;
    struct store_handle h = open_store();
    char why[300];
    int64_t base = 3 * 86400000LL; /* day 3 of 1970: alone in this file's ledger */
    struct ledger_row rows[10];
    for (int i = 0; i < 10; i++) rows[i] = row(base + i * 1000, "ret", "t", 1, 1, true, 1);
    assert_int_equal(h.ops->append(h.db, rows, 10, why, sizeof why), 0);
    struct ledger_row page[4];
    struct ledger_cursor at = {base, -1};
    int n, total = 0;
    int64_t last = 0;
    while ((n = h.ops->read(h.db, &at, base + 10000, page, 4, why, sizeof why)) > 0) {
        for (int i = 0; i < n; i++) {
            assert_true(page[i].ts_ms >= last);
            last = page[i].ts_ms;
        }
        total += n;
        if (n < 4) break;
    }
    assert_int_equal(total, 10);
    int64_t before = h.ops->count(h.db), deleted = 0, k;
    /* rows older than base + 6000 (six of ours, and the older tests' rows), three a batch */
    while ((k = h.ops->retain(h.db, base + 6000, 0, 3, why, sizeof why)) == 3) deleted += k;
    assert_true(k >= 0 && k < 3);
    deleted += k;
    assert_true(deleted >= 6);
    assert_int_equal(h.ops->count(h.db), before - deleted);
    at = (struct ledger_cursor){0, -1};
    assert_int_equal(h.ops->read(h.db, &at, base + 10000, page, 4, why, sizeof why), 4);
    assert_int_equal(page[0].ts_ms, base + 6000);
    /* the day's total still counts all ten (its hour lines, as the rows' hour was cut) */
    struct spend_line *lines = NULL;
    n = h.ops->spend(h.db, SPEND_BY_MODEL, 0, base, base + 86400000LL, &lines, 4, why, sizeof why);
    assert_int_equal(n, 1);
    assert_int_equal(lines[0].requests, 10);
    free(lines);
    store_close(&h);
}

/* Migration 10's ledger columns survive a write and a read; no tier reads back as unknown. */
static void test_tier_revenue_margin_columns_round_trip(void **state)
{
    (void)state;
    struct store_handle h = open_store();
    char why[300];
    struct ledger_row rows[2] = {row(7000, "chat", "", 10, 5, true, 0.02),
                                 row(7001, "chat", "", 10, 5, false, 0)};
    strcpy(rows[0].tier, "premium");
    rows[0].revenue_known = rows[0].margin_known = true;
    rows[0].revenue_usd = 0.015;
    rows[0].margin_usd = -0.005;
    rows[0].saved_usd = rows[1].saved_usd = -1;
    assert_int_equal(h.ops->append(h.db, rows, 2, why, sizeof why), 0);
    struct ledger_cursor at = {7000, -1};
    struct ledger_row back[2];
    assert_int_equal(h.ops->read(h.db, &at, 7002, back, 2, why, sizeof why), 2);
    assert_string_equal(back[0].tier, "premium");
    assert_true(back[0].revenue_known && back[0].revenue_usd == 0.015);
    assert_true(back[0].margin_known && back[0].margin_usd == -0.005);
    assert_string_equal(back[1].tier, "");
    assert_false(back[1].revenue_known);
    assert_false(back[1].margin_known);
    store_close(&h);
}

/* The margin report reads margin rollups for whole hours and days: still right after
 * retention deleted the raw rows under them. */
static void test_margin_reads_rollups_after_retention(void **state)
{
    (void)state;
    struct store_handle h = open_store();
    char why[300];
    const int64_t base = 20000 * 86400000LL; /* a day boundary, long ago */
    struct ledger_row rows[6];
    const double revenue[6] = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6};
    for (int i = 0; i < 6; i++) {
        rows[i] = row(base + i * 5 * H + 7, "chat", "", 10, 5, true, 0.05);
        snprintf(rows[i].customer, sizeof rows[i].customer, "%s", i % 2 ? "odd" : "even");
        snprintf(rows[i].tier, sizeof rows[i].tier, "%s", i < 4 ? "gold" : "");
        rows[i].revenue_known = rows[i].margin_known = i < 4;
        rows[i].revenue_usd = i < 4 ? revenue[i] : 0;
        rows[i].margin_usd = i < 4 ? revenue[i] - 0.05 : 0;
        rows[i].saved_usd = -1;
    }
    assert_int_equal(h.ops->append(h.db, rows, 6, why, sizeof why), 0);
    for (int pass = 0; pass < 2; pass++) {
        struct margin_line *l = NULL;
        int n = h.ops->margin(h.db, false, base, base + 2 * 86400000LL, &l, 10, why, sizeof why);
        assert_int_equal(n, 2);
        assert_string_equal(l[0].group, "gold");
        assert_int_equal(l[0].requests, 4);
        assert_true(fabs(l[0].revenue_usd - 1.0) < 1e-12);
        assert_true(fabs(l[0].margin_usd - 0.8) < 1e-12);
        assert_true(fabs(l[0].cost_usd - 0.2) < 1e-12);
        assert_string_equal(l[1].group, "");
        assert_int_equal(l[1].unpriced, 2);
        free(l);
        /* By customer, from the middle of an hour: the raw row before it is not counted. */
        n = h.ops->margin(h.db, true, base + 8, base + 2 * 86400000LL, &l, 10, why, sizeof why);
        assert_int_equal(n, 2);
        int64_t total = l[0].requests + l[1].requests;
        free(l);
        /* Before retention the ragged start is exact; after it, read from its whole hour. */
        assert_int_equal(total, pass == 0 ? 5 : 6);
        /* Now delete the raw rows: the same figures come from margin rollups. */
        /* (other tests' old rows go too: the file is shared) */
        if (pass == 0)
            assert_true(h.ops->retain(h.db, base + 2 * 86400000LL, 0, 1000, why, sizeof why) >= 6);
    }
    store_close(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_urls_and_errors),
        cmocka_unit_test(test_rows_sum_by_group_within_the_window),
        cmocka_unit_test(test_keys_insert_revoke_list),
        cmocka_unit_test(test_customers_set_list_remove),
        cmocka_unit_test(test_tier_revenue_margin_columns_round_trip),
        cmocka_unit_test(test_margin_reads_rollups_after_retention),
        cmocka_unit_test(test_the_ledger_writer_commits_everything_at_stop),
        cmocka_unit_test(test_spend_buckets_by_utc_hour_within_the_window),
        cmocka_unit_test(test_retention_batches_and_paged_reads),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
