/* Unit tests for src/guard: keys (mint, hash, lookup, model lists, JSON settings), GCRA rate
 * limits, budget admission under concurrency and UTC periods; and report time parsing. */
#include "unit/cmocka_all.h"

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cost/report.h"
#include "guard/budget.h"
#include "guard/guard.h"
#include "guard/keyjson.h"
#include "guard/keys.h"
#include "guard/ratelimit.h"
#include "store/store.h"

#define T_2026_11_29 1795910400000LL /* 2026-11-29T00:00:00Z */

static void test_keys_mint_hash_and_find(void **state)
{
    (void)state;
    struct key_record recs[3];
    char secrets[3][KEY_SECRET_SIZE];
    memset(recs, 0, sizeof recs);
    for (int i = 0; i < 3; i++) assert_int_equal(keys_mint(&recs[i], secrets[i], 1000 + i), 0);
    assert_int_equal(strncmp(secrets[0], "sk-stratus-", 11), 0);
    assert_int_equal(strlen(secrets[0]), 11 + 43);
    assert_int_equal(strncmp(recs[0].id, "key_", 4), 0);
    assert_int_equal(strlen(recs[0].id), 20);
    assert_string_not_equal(secrets[0], secrets[1]);
    char hex[65];
    keys_hash(secrets[1], strlen(secrets[1]), hex);
    assert_string_equal(hex, recs[1].hash);
    /* Known vector: SHA-256("abc"). */
    keys_hash("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    char id1[32];
    strcpy(id1, recs[1].id);
    struct key_record *copy = malloc(sizeof recs);
    memcpy(copy, recs, sizeof recs);
    struct key_table *t = key_table_new(copy, 3);
    assert_non_null(t);
    const struct key_record *k = key_table_find(t, secrets[1], strlen(secrets[1]));
    assert_non_null(k);
    assert_string_equal(k->id, id1);
    assert_null(key_table_find(t, secrets[1], strlen(secrets[1]) - 1)); /* one byte short */
    assert_null(key_table_find(t, "sk-stratus-nope", 15));
    assert_ptr_equal(key_table_by_id(t, id1), k);
    assert_int_equal(key_table_size(t), 3);
    key_table_free(t);
}

static void test_key_allows_model_matches_whole_names(void **state)
{
    (void)state;
    struct key_record k;
    memset(&k, 0, sizeof k);
    assert_true(key_allows_model(&k, "anything")); /* empty list: all */
    strcpy(k.models, "chat,chat-large");
    assert_true(key_allows_model(&k, "chat"));
    assert_true(key_allows_model(&k, "chat-large"));
    assert_false(key_allows_model(&k, "cha"));
    assert_false(key_allows_model(&k, "chat-l"));
    assert_false(key_allows_model(&k, "embed"));
}

static void test_key_from_json_validates_fields(void **state)
{
    (void)state;
    struct model_conf models[1] = {{.name = "chat"}};
    struct config cfg = {.models = models, .n_models = 1};
    struct key_record k;
    struct err e;
    memset(&k, 0, sizeof k);
    json_t *ok = json_loads("{\"team\":\"ml\",\"models\":[\"chat\"],\"budget_usd\":5,"
                            "\"budget_period\":\"daily\",\"on_exhausted\":\"local_only\","
                            "\"rpm\":10,\"tpm\":1000,\"expires_in\":\"2h\","
                            "\"max_prompt_tokens\":4000}",
                            0, NULL);
    assert_int_equal(key_from_json(ok, &cfg, 1000, &k, &e), 0);
    json_decref(ok);
    assert_string_equal(k.team, "ml");
    assert_string_equal(k.models, "chat");
    assert_true(k.budget_usd == 5);
    assert_int_equal(k.budget_period, BUDGET_DAILY);
    assert_int_equal(k.on_exhausted, BUDGET_LOCAL_ONLY);
    assert_int_equal(k.rpm, 10);
    assert_int_equal(k.max_prompt_tokens, 4000);
    json_t *shown = key_to_json(&k, 0);
    assert_int_equal(json_integer_value(json_object_get(shown, "max_prompt_tokens")), 4000);
    json_decref(shown);
    assert_int_equal(k.expires_ms, 1000 + 2 * 3600000);
    static const char *const bad[][2] = {
        {"{\"models\":[\"nope\"]}", "model 'nope' is not configured"},
        {"{\"rpm\":-1}", "\"rpm\" must be a non-negative integer"},
        {"{\"rpm\":1.5}", "\"rpm\" must be a non-negative integer"},
        {"{\"max_prompt_tokens\":-5}", "\"max_prompt_tokens\" must be a non-negative integer"},
        {"{\"max_prompt_tokens\":\"9\"}", "\"max_prompt_tokens\" must be a non-negative integer"},
        {"{\"budget_usd\":\"5\"}", "\"budget_usd\" must be a non-negative number"},
        {"{\"budget_period\":\"weekly\"}", "\"budget_period\" must be \"daily\" or \"monthly\""},
        {"{\"expires_in\":\"soon\"}", "\"expires_in\" must be a duration"},
        {"{\"team\":\"a,b\"}", "must not contain control characters or commas"},
        {"{\"colour\":\"red\"}", "unknown field \"colour\""},
        {"[]", "request body must be a JSON object"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *j = json_loads(bad[i][0], JSON_DECODE_ANY, NULL);
        memset(&k, 0, sizeof k);
        err_clear(&e);
        assert_int_equal(key_from_json(j, &cfg, 0, &k, &e), -1);
        assert_int_equal(e.status, 400);
        if (strstr(e.msg, bad[i][1]) == NULL) fail_msg("%s → %s", bad[i][0], e.msg);
        json_decref(j);
    }
    /* "tier" must name a configured tier: a typo would otherwise mean "no tier". */
    struct tier_conf tiers[1] = {{.name = "gold"}};
    cfg.tiers = tiers;
    cfg.n_tiers = 1;
    json_t *tj = json_loads("{\"tier\":\"gold\"}", 0, NULL);
    memset(&k, 0, sizeof k);
    assert_int_equal(key_from_json(tj, &cfg, 0, &k, &e), 0);
    json_decref(tj);
    assert_string_equal(k.tier, "gold");
    shown = key_to_json(&k, 0);
    assert_string_equal(json_string_value(json_object_get(shown, "tier")), "gold");
    json_decref(shown);
    memset(&k, 0, sizeof k);
    shown = key_to_json(&k, 0);
    assert_true(json_is_null(json_object_get(shown, "tier")));
    json_decref(shown);
    static const char *const bad_tier[][2] = {
        {"{\"tier\":\"silver\"}", "tier 'silver' is not configured (tiers: gold)"},
        {"{\"tier\":5}", "\"tier\" must be a string"},
    };
    for (size_t i = 0; i < 2; i++) {
        json_t *j = json_loads(bad_tier[i][0], 0, NULL);
        memset(&k, 0, sizeof k);
        err_clear(&e);
        assert_int_equal(key_from_json(j, &cfg, 0, &k, &e), -1);
        assert_int_equal(e.status, 400);
        if (strstr(e.msg, bad_tier[i][1]) == NULL) fail_msg("%s → %s", bad_tier[i][0], e.msg);
        json_decref(j);
    }
    assert_int_equal(key_parse_duration("30d"), 30LL * 86400000);
    assert_int_equal(key_parse_duration("0d"), -1);
    assert_int_equal(key_parse_duration("5"), -1);
}

static void test_guard_check_prompt_smaller_limit_applies(void **state)
{
    (void)state;
    struct model_conf m = {.name = "chat", .max_prompt_tokens = 1000};
    struct principal key = {.kind = PRINCIPAL_KEY};
    snprintf(key.key.id, sizeof key.key.id, "key_abc");
    struct principal master = {.kind = PRINCIPAL_MASTER};
    struct err e;
    err_clear(&e);
    /* the model's limit: at it passes, above it refuses naming limit, source and count */
    assert_int_equal(guard_check_prompt(&master, &m, 1000, &e), 0);
    assert_int_equal(guard_check_prompt(&master, &m, 1001, &e), -1);
    assert_int_equal(e.status, 400);
    assert_string_equal(e.code, "prompt_too_long");
    assert_non_null(strstr(e.msg, "~1001 tokens"));
    assert_non_null(strstr(e.msg, "limit of 1000 set for model 'chat'"));
    /* a key's smaller limit wins; a larger one does not lift the model's */
    key.key.max_prompt_tokens = 500;
    assert_int_equal(guard_check_prompt(&key, &m, 600, &e), -1);
    assert_non_null(strstr(e.msg, "limit of 500 set for API key key_abc"));
    key.key.max_prompt_tokens = 5000;
    assert_int_equal(guard_check_prompt(&key, &m, 1001, &e), -1);
    assert_non_null(strstr(e.msg, "limit of 1000 set for model 'chat'"));
    /* no model limit: the key's alone; neither: anything goes */
    m.max_prompt_tokens = 0;
    assert_int_equal(guard_check_prompt(&key, &m, 5000, &e), 0);
    assert_int_equal(guard_check_prompt(&key, &m, 5001, &e), -1);
    key.key.max_prompt_tokens = 0;
    assert_int_equal(guard_check_prompt(&key, &m, 100000000, &e), 0);
    assert_int_equal(guard_check_prompt(NULL, &m, 100000000, &e), 0);
}

static void test_gcra_burst_then_steady_rate(void **state)
{
    (void)state;
    struct gcra g = {0};
    struct gcra_result r;
    int64_t now = 5000000000LL;
    for (int i = 0; i < 60; i++) {
        gcra_take(&g, 60, 1, now, &r);
        assert_true(r.allowed);
        assert_int_equal(r.remaining, 59 - i);
    }
    gcra_take(&g, 60, 1, now, &r); /* the burst is spent */
    assert_false(r.allowed);
    assert_int_equal(r.retry_after_ms, 1000); /* one per second at 60/min */
    gcra_take(&g, 60, 1, now + 999000, &r);
    assert_false(r.allowed);
    gcra_take(&g, 60, 1, now + 1000000, &r);
    assert_true(r.allowed);
    /* Tokens: a charge larger than the whole limit can never pass. */
    struct gcra t = {0};
    gcra_take(&t, 1000, 1500, now, &r);
    assert_false(r.allowed);
    assert_true(r.never);
    /* Charged 800 up front, used 100: 700 come back. */
    gcra_take(&t, 1000, 800, now, &r);
    assert_true(r.allowed);
    gcra_take(&t, 1000, 800, now, &r);
    assert_false(r.allowed);
    gcra_adjust(&t, 1000, 100 - 800, now);
    gcra_take(&t, 1000, 800, now, &r);
    assert_true(r.allowed);
    /* No limit: always allowed. */
    gcra_take(&g, 0, 1, now, &r);
    assert_true(r.allowed);
}

static void test_budget_periods_are_utc_days_and_months(void **state)
{
    (void)state;
    int64_t noon = T_2026_11_29 + 12 * 3600000LL;
    assert_int_equal(budget_period_start(BUDGET_DAILY, noon), T_2026_11_29);
    assert_int_equal(budget_period_end(BUDGET_DAILY, noon), T_2026_11_29 + 86400000LL);
    assert_int_equal(budget_period_start(BUDGET_MONTHLY, noon), 1793491200000LL); /* Nov 1 */
    assert_int_equal(budget_period_end(BUDGET_MONTHLY, noon), 1796083200000LL);   /* Dec 1 */
    int64_t dec31 = 1798675200000LL + 3600000LL; /* 2026-12-31T01:00Z */
    assert_int_equal(budget_period_end(BUDGET_MONTHLY, dec31), 1798761600000LL); /* 2027-01-01 */
}

/* 64 requests race for a $1 budget, each reserving $0.125 and really costing $0.10: they
 * are admitted while spent + reserved < $1, so at most one reservation goes over. */
static void test_budget_race_overshoot_is_at_most_one_reservation(void **state)
{
    (void)state;
    struct budget_book *b = budget_book_new();
    struct budget_conf rule = {.scope = BUDGET_SCOPE_TEAM,
                               .name = "ml",
                               .limit_usd = 1.0,
                               .period = BUDGET_DAILY,
                               .soft = 0.75};
    struct budget_applies a = {&rule, "ml"};
    struct budget_hold holds[64];
    struct budget_verdict v;
    int admitted = 0, rejected = 0;
    for (int i = 0; i < 64; i++) { /* all admitted before any finishes */
        assert_int_equal(budget_admit(b, &a, 1, 0.125, T_2026_11_29, &v, &holds[admitted]), 0);
        if (v.reject)
            rejected++;
        else
            admitted++;
    }
    assert_int_equal(admitted, 8);
    assert_int_equal(rejected, 56);
    assert_non_null(strstr(v.why, "team 'ml' spent $1.0000 of its $1.00 daily budget"));
    assert_int_equal(v.reset_ms, T_2026_11_29 + 86400000LL);
    for (int i = 0; i < admitted; i++) budget_settle(&holds[i], 0.10);
    double used = budget_used(b, BUDGET_SCOPE_TEAM, BUDGET_DAILY, "ml", T_2026_11_29);
    assert_true(used < 1.0 + 0.125 + 1e-9);
    assert_true(used > 0.79 && used < 0.81);
    /* 0.80 spent, past the 0.75 soft threshold: cheapest first, not rejected. */
    struct budget_hold h;
    assert_int_equal(budget_admit(b, &a, 1, 0.10, T_2026_11_29, &v, &h), 0);
    assert_false(v.reject);
    assert_int_equal(v.mode, ROUTE_BUDGET_SOFT);
    budget_settle(&h, 0.25); /* 1.05: over */
    assert_int_equal(budget_admit(b, &a, 1, 0.10, T_2026_11_29, &v, &h), 0);
    assert_true(v.reject);
    /* local_only instead of rejecting. */
    rule.on_exhausted = BUDGET_LOCAL_ONLY;
    assert_int_equal(budget_admit(b, &a, 1, 0.10, T_2026_11_29, &v, &h), 0);
    assert_false(v.reject);
    assert_int_equal(v.mode, ROUTE_BUDGET_LOCAL_ONLY);
    budget_settle(&h, 0);
    /* The next day starts from zero. */
    rule.on_exhausted = BUDGET_REJECT;
    assert_int_equal(budget_admit(b, &a, 1, 0.10, T_2026_11_29 + 86400000LL, &v, &h), 0);
    assert_false(v.reject);
    assert_int_equal(v.mode, ROUTE_BUDGET_NONE);
    budget_settle(&h, 0.1);
    /* Seeds (the ledger's sums at start) count as spent. */
    assert_int_equal(
        budget_book_seed(b, BUDGET_SCOPE_CUSTOMER, BUDGET_MONTHLY, "acme", 7.5, T_2026_11_29), 0);
    assert_true(budget_used(b, BUDGET_SCOPE_CUSTOMER, BUDGET_MONTHLY, "acme", T_2026_11_29) == 7.5);
    budget_book_free(b);
}

/* Charges and usage at the ends of int64 (max_tokens 2^63 - 1, an upstream reporting any
 * count): arrival times saturate instead of wrapping into credit. */
static void test_gcra_saturates_huge_and_negative_charges(void **state)
{
    (void)state;
    int64_t now = 5000000000LL;
    struct gcra_result r;
    struct gcra t = {0};
    gcra_take(&t, 100, INT64_MAX, now, &r);
    assert_false(r.allowed);
    assert_true(r.never);
    assert_int_equal(t.tat_us, 0); /* nothing taken */
    /* Usage reported far beyond anything: the key is in debt, not in credit. */
    gcra_take(&t, 100, 10, now, &r);
    assert_true(r.allowed);
    gcra_adjust(&t, 100, INT64_MAX, now);
    assert_true(t.tat_us > now);
    gcra_take(&t, 100, 1, now + 3600000000LL, &r); /* an hour later: still in debt */
    assert_false(r.allowed);
    assert_true(r.retry_after_ms > 0);
    /* A negative charge gives no credit. */
    struct gcra u = {0};
    gcra_take(&u, 60, 60, now, &r);
    assert_true(r.allowed);
    gcra_take(&u, 60, -1000, now, &r);
    gcra_take(&u, 60, 1, now, &r);
    assert_false(r.allowed);
    /* The largest limit and charge: allowed, with a sane remainder. */
    struct gcra w = {0};
    gcra_take(&w, INT64_MAX, INT64_MAX, now, &r);
    assert_true(r.allowed);
    assert_true(r.remaining >= 0);
}

/* A reservation or cost that is not a finite amount (a worst case priced from 2^63 tokens,
 * a NaN from a broken price) must leave counters finite: one NaN and a budget never
 * refuses again. */
static void test_budget_counters_stay_finite(void **state)
{
    (void)state;
    struct budget_book *b = budget_book_new();
    struct budget_conf rule = {.scope = BUDGET_SCOPE_KEY,
                               .name = "k",
                               .limit_usd = 10.0,
                               .period = BUDGET_DAILY,
                               .soft = 0.8};
    struct budget_applies a = {&rule, "k"};
    struct budget_hold h;
    struct budget_verdict v;
    assert_int_equal(budget_admit(b, &a, 1, INFINITY, T_2026_11_29, &v, &h), 0);
    assert_false(v.reject);
    assert_true(isfinite(budget_used(b, BUDGET_SCOPE_KEY, BUDGET_DAILY, "k", T_2026_11_29)));
    budget_settle(&h, 1.25);
    assert_true(budget_used(b, BUDGET_SCOPE_KEY, BUDGET_DAILY, "k", T_2026_11_29) == 1.25);
    assert_int_equal(budget_admit(b, &a, 1, NAN, T_2026_11_29, &v, &h), 0);
    budget_settle(&h, NAN);
    double used = budget_used(b, BUDGET_SCOPE_KEY, BUDGET_DAILY, "k", T_2026_11_29);
    assert_true(isfinite(used));
    assert_true(used >= 10.0); /* a cost nobody can tell counts as the most, not as nothing */
    assert_int_equal(budget_admit(b, &a, 1, 0.01, T_2026_11_29, &v, &h), 0);
    assert_true(v.reject);
    assert_true(budget_clamp_usd(-1) == 0);
    assert_true(budget_clamp_usd(1e300) == BUDGET_MAX_USD);
    budget_book_free(b);
}

static void test_report_parse_time_forms(void **state)
{
    (void)state;
    int64_t now = T_2026_11_29 + 5000, out = 0;
    assert_int_equal(report_parse_time("7d", now, &out), 0);
    assert_int_equal(out, now - 7 * 86400000LL);
    assert_int_equal(report_parse_time("12h", now, &out), 0);
    assert_int_equal(out, now - 12 * 3600000LL);
    assert_int_equal(report_parse_time("2026-11-29", now, &out), 0);
    assert_int_equal(out, T_2026_11_29);
    assert_int_equal(report_parse_time("2026-11-29T01:00:00Z", now, &out), 0);
    assert_int_equal(out, T_2026_11_29 + 3600000LL);
    assert_int_equal(report_parse_time("1795910400000", now, &out), 0);
    assert_int_equal(out, T_2026_11_29);
    assert_int_equal(report_parse_time("yesterday", now, &out), -1);
    assert_int_equal(report_parse_time("2026-11-29 junk", now, &out), -1);
    assert_int_equal(report_parse_time("", now, &out), -1);
}

/* docs/tiers.md's resolution order: the key's tier, else the customer table's, else the
 * default tier, else none; a name the config no longer has counts as none at its step. */
static void test_guard_tier_resolution_order(void **state)
{
    (void)state;
    char dir[] = "/tmp/stratus-tier-XXXXXX", why[300];
    assert_non_null(mkdtemp(dir));
    struct store_handle h;
    if (store_open("sqlite://t.db", dir, NULL, &h, why, sizeof why) != 0) fail_msg("%s", why);
    struct customer_record c[] = {
        {"acme", "premium", 1}, {"globex", "gone", 1}, {"initech", "standard", 1}};
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(h.ops->customer_set(h.db, &c[i], why, sizeof why), 0);
    struct tier_conf tiers[] = {
        {.name = "free", .is_default = true}, {.name = "standard"}, {.name = "premium"}};
    struct config cfg = {.tiers = tiers, .n_tiers = 3, .auth.refresh_ms = 2000};
    struct err e;
    err_clear(&e);
    struct guard *g = guard_new(&cfg, NULL, &h, NULL, &e);
    if (g == NULL) fail_msg("%s", e.msg);
    struct principal key = {.kind = PRINCIPAL_KEY};
    assert_ptr_equal(guard_tier(g, &cfg, &key, "acme"), &tiers[2]);    /* the table */
    assert_ptr_equal(guard_tier(g, &cfg, &key, "initech"), &tiers[1]); /* the table */
    assert_ptr_equal(guard_tier(g, &cfg, &key, "globex"), &tiers[0]);  /* unknown: default */
    assert_ptr_equal(guard_tier(g, &cfg, &key, "nobody"), &tiers[0]);  /* not listed */
    assert_ptr_equal(guard_tier(g, &cfg, &key, ""), &tiers[0]);        /* no customer */
    strcpy(key.key.tier, "standard");
    assert_ptr_equal(guard_tier(g, &cfg, &key, "acme"), &tiers[1]); /* the key's wins */
    strcpy(key.key.tier, "removed");
    assert_ptr_equal(guard_tier(g, &cfg, &key, "acme"), &tiers[2]); /* then the table's */
    tiers[0].is_default = false;
    assert_null(guard_tier(g, &cfg, &key, "nobody")); /* no default: no tier */
    /* The config's customers: map comes after the admin table, before the default. */
    struct customer_conf map[] = {{.customer = "acme", .tier = 0}, {.customer = "zz", .tier = 1}};
    cfg.customers = map;
    cfg.n_customers = 2;
    key.key.tier[0] = '\0';
    assert_ptr_equal(guard_tier(g, &cfg, &key, "acme"), &tiers[2]); /* the table's wins */
    assert_ptr_equal(guard_tier(g, &cfg, &key, "zz"), &tiers[1]);   /* the map's */
    cfg.customers = NULL;
    cfg.n_customers = 0;
    struct config none = {0};
    assert_null(guard_tier(g, &none, &key, "acme")); /* no tiers: section at all */
    /* A replaced table holds at once (what an admin change does). */
    struct customer_record *fresh = calloc(1, sizeof *fresh);
    assert_non_null(fresh);
    *fresh = (struct customer_record){"nobody", "premium", 2};
    guard_replace_customers(g, fresh, 1);
    assert_ptr_equal(guard_tier(g, &cfg, &key, "nobody"), &tiers[2]);
    assert_null(guard_tier(g, &cfg, &key, "acme"));
    guard_free(g);
    store_close(&h);
    char path[128];
    const char *files[] = {"t.db", "t.db-wal", "t.db-shm"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys_mint_hash_and_find),
        cmocka_unit_test(test_key_allows_model_matches_whole_names),
        cmocka_unit_test(test_key_from_json_validates_fields),
        cmocka_unit_test(test_guard_check_prompt_smaller_limit_applies),
        cmocka_unit_test(test_gcra_burst_then_steady_rate),
        cmocka_unit_test(test_budget_periods_are_utc_days_and_months),
        cmocka_unit_test(test_budget_race_overshoot_is_at_most_one_reservation),
        cmocka_unit_test(test_gcra_saturates_huge_and_negative_charges),
        cmocka_unit_test(test_budget_counters_stay_finite),
        cmocka_unit_test(test_report_parse_time_forms),
        cmocka_unit_test(test_guard_tier_resolution_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
