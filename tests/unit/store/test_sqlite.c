/* Unit tests for src/store with a real SQLite file: URLs, migrations that run once, ledger
 * rows (NULL for unknown tokens and cost), spend sums per group and time window, keys. */
#include "unit/cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/ledger.h"
#include "store/store.h"

static char dir[64];

static struct store_handle open_store(void)
{
    struct store_handle h;
    char why[300];
    if (store_open("sqlite://ledger.db", dir, &h, why, sizeof why) != 0) fail_msg("%s", why);
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
    assert_int_equal(store_open("mysql://x", dir, &h, why, sizeof why), -1);
    assert_non_null(strstr(why, "mysql"));
    assert_int_equal(store_open("sqlite://", dir, &h, why, sizeof why), -1);
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
    struct spend_line lines[8];
    int n = h.ops->spend(h.db, SPEND_BY_MODEL, 0, 5000, lines, 8, why, sizeof why);
    assert_int_equal(n, 2);
    assert_string_equal(lines[0].group, "chat"); /* biggest spend first */
    assert_int_equal(lines[0].requests, 2);
    assert_int_equal(lines[0].prompt_tokens, 30);
    assert_int_equal(lines[0].completion_tokens, 10);
    assert_true(lines[0].cost_usd > 0.7499 && lines[0].cost_usd < 0.7501);
    assert_string_equal(lines[1].group, "embed");
    assert_int_equal(lines[1].unknown_cost, 1);
    n = h.ops->spend(h.db, SPEND_BY_TEAM, 0, 10000, lines, 8, why, sizeof why);
    assert_int_equal(n, 2);
    assert_string_equal(lines[0].group, "ml");
    assert_int_equal(lines[0].requests, 3);
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
        assert_int_equal(ledger_append(l, &r), 0);
    }
    ledger_stop(l); /* writes every queued row, closes the store */
    h = open_store();
    assert_int_equal(h.ops->count(h.db), before + 100);
    store_close(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_urls_and_errors),
        cmocka_unit_test(test_rows_sum_by_group_within_the_window),
        cmocka_unit_test(test_keys_insert_revoke_list),
        cmocka_unit_test(test_the_ledger_writer_commits_everything_at_stop),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
