/*
 * DESIGN: options are --name value pairs parsed against a per-command table; key settings
 * go through the same JSON validation as POST /admin/keys (guard/keyjson), so the CLI and
 * the API accept exactly the same things and say the same errors.
 */
#include "cli/commands.h"

#include <curl/curl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config/config.h"
#include "cost/compare.h"
#include "cost/margin.h"
#include "cost/cost.h"
#include "cost/prices.h"
#include "cost/report.h"
#include "guard/awskeys.h"
#include "guard/keyjson.h"
#include "guard/keys.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/json_text.h"

#define DEFAULT_CONFIG "config/stratus.yaml"

int cli_parse_opts(const char *cmd, int argc, char **argv, int from, struct cli_opt *opts,
                   const char **pos)
{
    for (int i = from; i < argc; i++) {
        struct cli_opt *o = NULL;
        for (struct cli_opt *p = opts; p->name; p++)
            if (strcmp(p->name, argv[i]) == 0) o = p;
        if (o == NULL && argv[i][0] != '-' && pos && *pos == NULL) {
            *pos = argv[i];
            continue;
        }
        if (o == NULL) {
            fprintf(stderr, "%s: unexpected argument '%s'\n", cmd, argv[i]);
            return 2;
        }
        if (o->flag) {
            o->value = "1";
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "%s: %s needs a value\n", cmd, o->name);
            return 2;
        }
        o->value = argv[++i];
    }
    return 0;
}

const char *cli_opt(const struct cli_opt *opts, const char *name)
{
    for (const struct cli_opt *p = opts; p->name; p++)
        if (strcmp(p->name, name) == 0) return p->value;
    return NULL;
}

int cli_load_config(const char *path, struct config **out)
{
    struct config_error ce;
    char buf[1024];
    memset(&ce, 0, sizeof ce);
    *out = config_load(path ? path : DEFAULT_CONFIG, &ce);
    if (*out == NULL) {
        fprintf(stderr, "%s\n", config_error_format(&ce, buf, sizeof buf));
        return 2;
    }
    return 0;
}

int cli_open_store(const struct config *cfg, struct store_handle *s)
{
    char why[600];
    if (store_open(cfg->store.url, cfg->store.base_dir, cfg->store.password.value, s, why,
                   sizeof why) != 0) {
        fprintf(stderr, "store: %s\n", why);
        return 1;
    }
    return 0;
}

int cli_open(const char *config_path, struct config **cfg, struct store_handle *s)
{
    int rc = cli_load_config(config_path, cfg);
    if (rc != 0) return rc;
    if (cli_open_store(*cfg, s) != 0) {
        config_free(*cfg);
        *cfg = NULL;
        return 1;
    }
    return 0;
}

/* Prints `doc` (taken) as one compact JSON line. */
static void print_json(json_t *doc)
{
    char *out = doc ? json_dumps(doc, JSON_COMPACT | JSON_TEXT_SUMS) : NULL;
    puts(out ? out : "null");
    free(out);
    json_decref(doc);
}

/* ---- keys --------------------------------------------------------------------------- */

static int keys_create(struct config *cfg, struct cli_opt *o, bool as_json)
{
    json_t *body = json_object();
    static const char *const text_opts[][2] = {{"--name", "name"},
                                               {"--team", "team"},
                                               {"--budget-period", "budget_period"},
                                               {"--on-exhausted", "on_exhausted"},
                                               {"--expires-in", "expires_in"},
                                               {"--tier", "tier"}};
    for (size_t i = 0; i < sizeof text_opts / sizeof text_opts[0]; i++)
        if (cli_opt(o, text_opts[i][0]))
            json_object_set_new(body, text_opts[i][1], json_string(cli_opt(o, text_opts[i][0])));
    static const char *const number_opts[][2] = {{"--budget-usd", "budget_usd"},
                                                 {"--budget-soft", "budget_soft"},
                                                 {"--rpm", "rpm"},
                                                 {"--tpm", "tpm"},
                                                 {"--max-prompt-tokens", "max_prompt_tokens"}};
    for (size_t i = 0; i < sizeof number_opts / sizeof number_opts[0]; i++) {
        const char *v = cli_opt(o, number_opts[i][0]);
        if (v == NULL) continue;
        json_t *n = json_loads(v, JSON_DECODE_ANY, NULL);
        if (!json_is_number(n)) {
            json_decref(n);
            json_decref(body);
            fprintf(stderr, "stratus keys create: %s must be a number, got '%s'\n",
                    number_opts[i][0], v);
            return 2;
        }
        json_object_set_new(body, number_opts[i][1], n);
    }
    if (cli_opt(o, "--models")) {
        json_t *list = json_array();
        char *copy = strdup(cli_opt(o, "--models")), *save = NULL;
        for (char *m = strtok_r(copy, ",", &save); m; m = strtok_r(NULL, ",", &save))
            json_array_append_new(list, json_string(m));
        free(copy);
        json_object_set_new(body, "models", list);
    }
    if (cli_opt(o, "--allowed-cidrs")) {
        json_t *list = json_array();
        char *copy = strdup(cli_opt(o, "--allowed-cidrs")), *save = NULL;
        for (char *m = strtok_r(copy, ",", &save); m; m = strtok_r(NULL, ",", &save))
            json_array_append_new(list, json_string(m));
        free(copy);
        json_object_set_new(body, "allowed_cidrs", list);
    }
    struct key_record k;
    memset(&k, 0, sizeof k);
    struct err e;
    err_clear(&e);
    int64_t now = clock_wall_ms();
    int rc = key_from_json(body, cfg, now, &k, &e);
    json_decref(body);
    if (rc != 0) {
        /* The API's field names, said as the CLI's options. */
        fprintf(stderr, "stratus keys create: %s\n", e.msg);
        return 2;
    }
    char secret[KEY_SECRET_SIZE], aws_secret[AWSKEY_SECRET_SIZE] = "";
    if (keys_mint(&k, secret, now) != 0) {
        fprintf(stderr, "stratus keys create: the random source failed\n");
        return 1;
    }
    if (cli_opt(o, "--aws")) { /* SigV4 credentials, sealed under the master key (awskeys.h) */
        const char *master = cfg->auth.master_key.value;
        unsigned char seal[AWSKEY_KEY_SIZE];
        if (master == NULL) {
            fprintf(stderr, "stratus keys create: --aws needs auth.master_key in the config "
                            "(the AWS secret is sealed under it)\n");
            return 2;
        }
        if (awskeys_derive(master, strlen(master), seal) != 0 ||
            awskeys_mint(&k, seal, aws_secret) != 0) {
            fprintf(stderr, "stratus keys create: could not make AWS credentials\n");
            return 1;
        }
        explicit_bzero(seal, sizeof seal);
    }
    struct store_handle s;
    if (cli_open_store(cfg, &s) != 0) return 1;
    char why[400];
    rc = s.ops->key_insert(s.db, &k, why, sizeof why);
    store_close(&s);
    if (rc != 0) {
        fprintf(stderr, "stratus keys create: %s\n", why);
        return 1;
    }
    if (as_json) {
        json_t *doc = key_to_json(&k, now);
        json_object_set_new(doc, "key", json_string(secret));
        if (aws_secret[0])
            json_object_set_new(doc, "aws_secret_access_key", json_string(aws_secret));
        print_json(doc);
    } else {
        printf("created %s%s%s%s\n", k.id, k.team[0] ? " (team " : "", k.team,
               k.team[0] ? ")" : "");
        printf("key: %s\n", secret);
        if (aws_secret[0]) {
            printf("aws_access_key_id: %s\n", k.aws_key_id);
            printf("aws_secret_access_key: %s\n", aws_secret);
        }
        printf("This is the only time the key is shown: store it now.\n");
    }
    explicit_bzero(secret, sizeof secret);
    explicit_bzero(aws_secret, sizeof aws_secret);
    return 0;
}

static void money(double usd, char *out, size_t cap)
{
    if (usd > 0)
        snprintf(out, cap, "$%.2f", usd);
    else
        snprintf(out, cap, "-");
}

static int keys_list(struct config *cfg, bool as_json)
{
    struct store_handle s;
    if (cli_open_store(cfg, &s) != 0) return 1;
    struct key_record *keys = NULL;
    char why[400];
    int n = s.ops->key_list(s.db, &keys, why, sizeof why);
    store_close(&s);
    if (n < 0) {
        fprintf(stderr, "stratus keys list: %s\n", why);
        return 1;
    }
    int64_t now = clock_wall_ms();
    if (as_json) {
        json_t *data = json_array();
        for (int i = 0; i < n; i++) json_array_append_new(data, key_to_json(&keys[i], now));
        print_json(json_pack("{s:s, s:o}", "object", "list", "data", data));
    } else {
        printf("%-20s %-8s %-16s %-12s %-10s %-24s %12s %7s %9s %s\n", "ID", "STATUS", "NAME",
               "TEAM", "TIER", "MODELS", "BUDGET", "RPM", "TPM", "FROM");
        for (int i = 0; i < n; i++) {
            const struct key_record *k = &keys[i];
            char budget[40], rpm[24], tpm[24];
            money(k->budget_usd, budget, sizeof budget);
            if (k->budget_usd > 0)
                snprintf(budget + strlen(budget), sizeof budget - strlen(budget), "/%s",
                         k->budget_period == BUDGET_DAILY ? "day" : "month");
            snprintf(rpm, sizeof rpm, k->rpm ? "%lld" : "-", (long long)k->rpm);
            snprintf(tpm, sizeof tpm, k->tpm ? "%lld" : "-", (long long)k->tpm);
            const char *status = k->revoked_ms                           ? "revoked"
                                 : k->expires_ms && now >= k->expires_ms ? "expired"
                                                                         : "active";
            printf("%-20s %-8s %-16.16s %-12.12s %-10.10s %-24.24s %12s %7s %9s %s\n", k->id,
                   status, k->name[0] ? k->name : "-", k->team[0] ? k->team : "-",
                   k->tier[0] ? k->tier : "-", k->models[0] ? k->models : "(all)", budget, rpm, tpm,
                   k->allowed_cidrs[0] ? k->allowed_cidrs : "(any)");
        }
    }
    free(keys);
    return 0;
}

static int keys_revoke(struct config *cfg, const char *id)
{
    struct store_handle s;
    if (cli_open_store(cfg, &s) != 0) return 1;
    char why[400];
    int rc = s.ops->key_revoke(s.db, id, clock_wall_ms(), why, sizeof why);
    store_close(&s);
    if (rc < 0) {
        fprintf(stderr, "stratus keys revoke: %s\n", why);
        return 1;
    }
    if (rc == 0) {
        fprintf(stderr, "stratus keys revoke: no live key with id '%s'\n", id);
        return 1;
    }
    printf("revoked %s\n", id);
    return 0;
}

int cli_keys(int argc, char **argv)
{
    const char *sub = argc > 2 ? argv[2] : "";
    struct cli_opt o[] = {{"--config", NULL, false},
                          {"--name", NULL, false},
                          {"--team", NULL, false},
                          {"--models", NULL, false},
                          {"--budget-usd", NULL, false},
                          {"--budget-period", NULL, false},
                          {"--budget-soft", NULL, false},
                          {"--on-exhausted", NULL, false},
                          {"--rpm", NULL, false},
                          {"--tpm", NULL, false},
                          {"--expires-in", NULL, false},
                          {"--aws", NULL, true},
                          {"--allowed-cidrs", NULL, false},
                          {"--max-prompt-tokens", NULL, false},
                          {"--tier", NULL, false},
                          {"--json", NULL, true},
                          {NULL, NULL, false}};
    const char *id = NULL;
    bool create = strcmp(sub, "create") == 0, list = strcmp(sub, "list") == 0,
         revoke = strcmp(sub, "revoke") == 0;
    if (!create && !list && !revoke) {
        fprintf(stderr, "stratus keys: expected create, list or revoke\n");
        return 2;
    }
    int rc = cli_parse_opts("stratus keys", argc, argv, 3, o, revoke ? &id : NULL);
    if (rc) return rc;
    if (!create)
        for (size_t i = 1; i < 12; i++)
            if (o[i].value) {
                fprintf(stderr, "stratus keys %s: %s is for 'keys create'\n", sub, o[i].name);
                return 2;
            }
    if (revoke && id == NULL) {
        fprintf(stderr, "stratus keys revoke: which key? (stratus keys revoke KEY_ID)\n");
        return 2;
    }
    struct config *cfg = NULL;
    if ((rc = cli_load_config(cli_opt(o, "--config"), &cfg)) != 0) return rc;
    bool as_json = cli_opt(o, "--json") != NULL;
    rc = create ? keys_create(cfg, o, as_json)
         : list ? keys_list(cfg, as_json)
                : keys_revoke(cfg, id);
    config_free(cfg);
    return rc;
}

/* ---- customers (docs/tiers.md) --------------------------------------------------------
 * Written straight to the store, like keys: a running gateway has the change at its next
 * key refresh (auth.refresh_ms). */

static int customers_list(struct config *cfg, bool as_json)
{
    struct store_handle s;
    if (cli_open_store(cfg, &s) != 0) return 1;
    struct customer_record *list = NULL;
    char why[400];
    int n = s.ops->customer_list(s.db, &list, why, sizeof why);
    store_close(&s);
    if (n < 0) {
        fprintf(stderr, "stratus customers list: %s\n", why);
        return 1;
    }
    json_t *data = as_json ? json_array() : NULL;
    if (!as_json) printf("%-32s %-16s %s\n", "CUSTOMER", "TIER", "UPDATED");
    for (int i = 0; i < n; i++) {
        char when[32];
        clock_iso8601(list[i].updated_ms, when, sizeof when);
        /* A tier the config no longer has: such a customer gets the default tier now. */
        bool known = config_find_tier(cfg, list[i].tier) != NULL;
        if (as_json)
            json_array_append_new(data, json_pack("{s:s, s:s, s:s, s:b}", "customer",
                                                  list[i].customer, "tier", list[i].tier,
                                                  "updated_at", when, "configured", known));
        else
            printf("%-32s %-16s %s%s\n", list[i].customer, list[i].tier, when,
                   known ? "" : "  (tier not in the config: the default applies)");
    }
    if (as_json) print_json(json_pack("{s:s, s:o}", "object", "list", "data", data));
    free(list);
    return 0;
}

int cli_customers(int argc, char **argv)
{
    const char *sub = argc > 2 ? argv[2] : "";
    struct cli_opt o[] = {{"--config", NULL, false},
                          {"--tier", NULL, false},
                          {"--json", NULL, true},
                          {NULL, NULL, false}};
    bool list = strcmp(sub, "list") == 0, set = strcmp(sub, "set") == 0,
         remove = strcmp(sub, "remove") == 0;
    if (!list && !set && !remove) {
        fprintf(stderr, "stratus customers: expected list, set ID --tier T or remove ID\n");
        return 2;
    }
    const char *id = NULL;
    int rc = cli_parse_opts("stratus customers", argc, argv, 3, o, list ? NULL : &id);
    if (rc) return rc;
    if (!list && (id == NULL || id[0] == '\0')) {
        fprintf(stderr, "stratus customers %s: which customer? (stratus customers %s ID%s)\n", sub,
                sub, set ? " --tier T" : "");
        return 2;
    }
    if (set && cli_opt(o, "--tier") == NULL) {
        fprintf(stderr, "stratus customers set: --tier T is required\n");
        return 2;
    }
    if (!set && cli_opt(o, "--tier")) {
        fprintf(stderr, "stratus customers %s: --tier is for 'customers set'\n", sub);
        return 2;
    }
    struct config *cfg = NULL;
    if ((rc = cli_load_config(cli_opt(o, "--config"), &cfg)) != 0) return rc;
    if (list) {
        rc = customers_list(cfg, cli_opt(o, "--json") != NULL);
        config_free(cfg);
        return rc;
    }
    struct customer_record c = {.updated_ms = clock_wall_ms()};
    if (strlen(id) >= sizeof c.customer) {
        fprintf(stderr, "stratus customers %s: the id is longer than %zu characters\n", sub,
                sizeof c.customer - 1);
        config_free(cfg);
        return 2;
    }
    snprintf(c.customer, sizeof c.customer, "%s", id);
    if (set) {
        const char *tier = cli_opt(o, "--tier");
        if (config_find_tier(cfg, tier) == NULL) {
            fprintf(stderr, "stratus customers set: tier '%s' is not configured\n", tier);
            config_free(cfg);
            return 2;
        }
        snprintf(c.tier, sizeof c.tier, "%s", tier);
    }
    struct store_handle s;
    if (cli_open_store(cfg, &s) != 0) {
        config_free(cfg);
        return 1;
    }
    char why[400];
    rc = set ? s.ops->customer_set(s.db, &c, why, sizeof why)
             : s.ops->customer_remove(s.db, c.customer, why, sizeof why);
    store_close(&s);
    config_free(cfg);
    if (rc < 0) {
        fprintf(stderr, "stratus customers %s: %s\n", sub, why);
        return 1;
    }
    if (remove && rc == 0) {
        fprintf(stderr, "stratus customers remove: no customer '%s'\n", c.customer);
        return 1;
    }
    if (set)
        printf("customer %s: tier %s\n", c.customer, c.tier);
    else
        printf("removed %s\n", c.customer);
    return 0;
}

/* ---- spend -------------------------------------------------------------------------- */

int cli_spend(int argc, char **argv)
{
    struct cli_opt o[] = {{"--config", NULL, false},
                          {"--by", NULL, false},
                          {"--since", NULL, false},
                          {"--until", NULL, false},
                          {"--anomaly-factor", NULL, false},
                          {"--bucket", NULL, false},
                          {"--top", NULL, false},
                          {"--json", NULL, true},
                          {"--csv", NULL, true},
                          {"--margin", NULL, true},
                          {NULL, NULL, false}};
    int rc = cli_parse_opts("stratus spend", argc, argv, 2, o, NULL);
    if (rc) return rc;
    /* Revenue and margin (docs/tiers.md): --by tier, or --by customer --margin. */
    bool by_tier = cli_opt(o, "--by") && strcmp(cli_opt(o, "--by"), "tier") == 0;
    bool margin = by_tier || cli_opt(o, "--margin");
    int by = by_tier              ? SPEND_BY_CUSTOMER
             : cli_opt(o, "--by") ? spend_group_parse(cli_opt(o, "--by"))
                                  : SPEND_BY_MODEL;
    if (by < 0) {
        fprintf(stderr,
                "stratus spend: --by is model, key, team, customer, backend, route or tier\n");
        return 2;
    }
    if (margin && by != SPEND_BY_CUSTOMER) {
        fprintf(stderr, "stratus spend: --margin groups by tier or customer only\n");
        return 2;
    }
    if (margin && (cli_opt(o, "--bucket") || cli_opt(o, "--top") || cli_opt(o, "--csv"))) {
        fprintf(stderr, "stratus spend: a margin report has no --bucket, --top or --csv\n");
        return 2;
    }
    int64_t now = clock_wall_ms(), from, to = now + 1;
    if (report_parse_time(cli_opt(o, "--since") ? cli_opt(o, "--since") : "30d", now, &from) != 0 ||
        (cli_opt(o, "--until") && report_parse_time(cli_opt(o, "--until"), now, &to) != 0)) {
        fprintf(stderr, "stratus spend: --since/--until take 7d, 12h, 30m, 2026-11-01, "
                        "2026-11-01T00:00:00Z or epoch milliseconds\n");
        return 2;
    }
    double factor = cli_opt(o, "--anomaly-factor") ? atof(cli_opt(o, "--anomaly-factor")) : 3;
    if (!(factor > 0)) {
        fprintf(stderr, "stratus spend: --anomaly-factor must be a positive number\n");
        return 2;
    }
    int bucket = spend_bucket_parse(cli_opt(o, "--bucket"));
    char *end = NULL;
    long top = cli_opt(o, "--top") ? strtol(cli_opt(o, "--top"), &end, 10) : 0;
    if (bucket < 0 ||
        (cli_opt(o, "--top") && (end == cli_opt(o, "--top") || *end || top < 1 || top > 1000))) {
        fprintf(stderr, "stratus spend: --bucket is hour or day; --top is 1 to 1000\n");
        return 2;
    }
    if (cli_opt(o, "--json") && cli_opt(o, "--csv")) {
        fprintf(stderr, "stratus spend: --json or --csv, not both\n");
        return 2;
    }
    struct config *cfg = NULL;
    struct store_handle s;
    if ((rc = cli_open(cli_opt(o, "--config"), &cfg, &s)) != 0) return rc;
    if (margin) {
        struct margin_report m;
        char why[400];
        struct margin_query mq = {
            .by_customer = !by_tier, .from_ms = from, .to_ms = to, .now_ms = now};
        rc = margin_report_build(&s, &mq, &m, why, sizeof why);
        if (rc != 0)
            fprintf(stderr, "stratus spend: %s\n", why);
        else if (cli_opt(o, "--json"))
            print_json(margin_report_json(&m));
        else
            margin_report_print(&m, stdout);
        margin_report_free(&m);
        store_close(&s);
        config_free(cfg);
        return rc != 0 ? 1 : 0;
    }
    struct spend_report r;
    char why[400];
    struct spend_query q = {.by = (enum spend_group)by,
                            .bucket = (enum spend_bucket)bucket,
                            .top = (int)top,
                            .from_ms = from,
                            .to_ms = to,
                            .now_ms = now,
                            .anomaly_factor = factor};
    rc = spend_report_build(&s, &q, &r, why, sizeof why);
    char *csv = NULL;
    size_t csv_len = 0;
    if (rc != 0) {
        fprintf(stderr, "stratus spend: %s\n", why);
        rc = 1;
    } else if (cli_opt(o, "--json")) {
        print_json(spend_report_json(&r));
    } else if (cli_opt(o, "--csv")) {
        if ((csv = spend_report_csv(&r, &csv_len)) == NULL) {
            fprintf(stderr, "stratus spend: out of memory\n");
            rc = 1;
        } else {
            fwrite(csv, 1, csv_len, stdout);
            free(csv);
        }
    } else {
        spend_report_print(&r, stdout);
    }
    spend_report_free(&r);
    store_close(&s);
    config_free(cfg);
    return rc;
}

/* ---- cost compare ------------------------------------------------------------------- */

int cli_cost(int argc, char **argv)
{
    if (argc < 3 || strcmp(argv[2], "compare") != 0) {
        fprintf(stderr, "stratus cost: expected 'compare'\n");
        return 2;
    }
    struct cli_opt o[] = {{"--config", NULL, false},
                          {"--tokens-per-month", NULL, false},
                          {"--model", NULL, false},
                          {"--local", NULL, false},
                          {"--output-share", NULL, false},
                          {"--local-tokens-per-s", NULL, false},
                          {NULL, NULL, false}};
    int rc = cli_parse_opts("stratus cost compare", argc, argv, 3, o, NULL);
    if (rc) return rc;
    double volume =
        cli_opt(o, "--tokens-per-month") ? cost_parse_volume(cli_opt(o, "--tokens-per-month")) : -1;
    double share = cli_opt(o, "--output-share") ? atof(cli_opt(o, "--output-share")) : 0.25;
    double tps = cli_opt(o, "--local-tokens-per-s") ? atof(cli_opt(o, "--local-tokens-per-s")) : 0;
    if (volume <= 0 || cli_opt(o, "--model") == NULL || cli_opt(o, "--local") == NULL) {
        fprintf(stderr, "stratus cost compare: --tokens-per-month N (e.g. 100M), --model M and "
                        "--local BACKEND are required\n");
        return 2;
    }
    if (!(share >= 0 && share <= 1) || (cli_opt(o, "--local-tokens-per-s") && !(tps > 0))) {
        fprintf(stderr, "stratus cost compare: --output-share is 0..1, --local-tokens-per-s > 0\n");
        return 2;
    }
    struct config *cfg = NULL;
    if ((rc = cli_load_config(cli_opt(o, "--config"), &cfg)) != 0) return rc;
    rc = 2;
    struct cost_compare_query q = {.model = cli_opt(o, "--model"),
                                   .local = cli_opt(o, "--local"),
                                   .tokens_per_month = volume,
                                   .output_share = share,
                                   .local_tokens_per_s = tps};
    struct cost_compare c;
    char why[512];
    if (cost_compare(cfg, &q, &c, why, sizeof why) != 0) {
        fprintf(stderr, "stratus cost compare: %s\n", why);
        goto out;
    }
    printf("volume          %.0f tokens/month (%.0f%% input, %.0f%% output)\n", volume,
           (1 - share) * 100, share * 100);
    printf("cloud  %-24s $%.2f/month  ($%.4f in, $%.4f out per 1M; %s%s%s)\n", q.model,
           c.cloud_usd_month, c.cloud.input, c.cloud.output, c.cloud_source,
           c.catalogue_date ? " dated " : "", c.catalogue_date ? c.catalogue_date : "");
    printf("local  %-24s $%.2f/month  ($%.4f/hour: %.0f W at $%.3f/kWh + $%.0f over %.0f months)\n",
           q.local, c.local_usd_month, c.local_usd_hour, c.tco->watts, c.tco->kwh_price,
           c.tco->hardware_price, c.tco->lifetime_months);
    printf("break-even      %.0f tokens/month (%.1fM): above it one local machine is cheaper\n",
           c.break_even_tokens, c.break_even_tokens / 1e6);
    if (tps > 0) {
        printf("capacity        %.1f tokens/s = %.1fM tokens/month per machine; %d machine%s "
               "needed → local $%.2f/month\n",
               tps, c.capacity_tokens_month / 1e6, c.machines, c.machines == 1 ? "" : "s",
               c.local_fleet_usd_month);
        printf("verdict         %s\n", c.local_cheaper ? "local is cheaper" : "cloud is cheaper");
    } else {
        printf("verdict         %s (pass --local-tokens-per-s to check one machine keeps up)\n",
               c.local_cheaper ? "local is cheaper" : "cloud is cheaper");
    }
    rc = 0;
out:
    config_free(cfg);
    return rc;
}

/* ---- reload --------------------------------------------------------------------------- */

struct answer {
    char buf[8192];
    size_t len;
};

static size_t on_answer(char *p, size_t size, size_t n, void *ud)
{
    struct answer *a = ud;
    size_t take = size * n;
    if (take > sizeof a->buf - 1 - a->len) take = sizeof a->buf - 1 - a->len;
    memcpy(a->buf + a->len, p, take);
    a->len += take;
    a->buf[a->len] = '\0';
    return size * n;
}

/* The running gateway's address from its config: the first listener, plain preferred; a
 * wildcard address is reached on loopback. */
static void gateway_url(const struct config *cfg, char *out, size_t size, bool *tls)
{
    const struct listen_conf *l = &cfg->listeners[0];
    for (size_t i = 0; i < cfg->n_listeners; i++)
        if (!cfg->listeners[i].tls) {
            l = &cfg->listeners[i];
            break;
        }
    const char *host = l->host;
    if (strcmp(host, "0.0.0.0") == 0) host = "127.0.0.1";
    if (strcmp(host, "::") == 0) host = "::1";
    bool v6 = strchr(host, ':') != NULL;
    *tls = l->tls;
    snprintf(out, size, "%s://%s%s%s:%d", l->tls ? "https" : "http", v6 ? "[" : "", host,
             v6 ? "]" : "", l->port);
}

int cli_reload(int argc, char **argv)
{
    struct cli_opt o[] = {{"--config", NULL, false},
                          {"--url", NULL, false},
                          {"--cacert", NULL, false},
                          {"--json", NULL, true},
                          {NULL, NULL, false}};
    if (cli_parse_opts("stratus reload", argc, argv, 2, o, NULL) != 0) return 2;
    /* The file is checked here first, so a typo is reported to whoever ran the command
     * with its position, not only in the gateway's log. */
    struct config *cfg = NULL;
    int rc = cli_load_config(cli_opt(o, "--config"), &cfg);
    if (rc != 0) return rc;
    char url[600], auth[600];
    bool tls = false;
    if (cli_opt(o, "--url"))
        snprintf(url, sizeof url, "%s", cli_opt(o, "--url"));
    else
        gateway_url(cfg, url, sizeof url, &tls);
    size_t n = strlen(url);
    while (n > 0 && url[n - 1] == '/') url[--n] = '\0';
    snprintf(url + n, sizeof url - n, "/admin/reload");
    const char *key = cfg->auth.master_key.value;
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", key ? key : "");
    /* A self-signed certificate given as file: is the one to trust by default. */
    const char *cacert = cli_opt(o, "--cacert");
    if (cacert == NULL && tls && cfg->tls.cert && strncmp(cfg->tls.cert, "file:", 5) == 0)
        cacert = cfg->tls.cert + 5;

    struct answer a = {.len = 0};
    long status = 0;
    CURL *c = curl_easy_init();
    struct curl_slist *headers = key ? curl_slist_append(NULL, auth) : NULL;
    if (c == NULL) {
        fprintf(stderr, "stratus reload: out of memory\n");
        config_free(cfg);
        return 1;
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_answer);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &a);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 60000L);
    if (cacert) curl_easy_setopt(c, CURLOPT_CAINFO, cacert);
    CURLcode cr = curl_easy_perform(c);
    if (cr == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    curl_slist_free_all(headers);
    config_free(cfg);
    if (cr != CURLE_OK) {
        fprintf(stderr,
                "stratus reload: %s: %s (is the gateway running? --url says where; "
                "kill -HUP <pid> also reloads)\n",
                url, curl_easy_strerror(cr));
        return 1;
    }
    json_error_t je;
    json_t *doc = json_loadb(a.buf, a.len, 0, &je);
    if (cli_opt(o, "--json")) {
        puts(a.buf);
    } else if (status == 200 && doc) {
        printf("reloaded: generation %lld",
               (long long)json_integer_value(json_object_get(doc, "generation")));
        json_t *changed = json_object_get(doc, "changed"),
               *restart = json_object_get(doc, "restart_needed");
        size_t i;
        json_t *v;
        printf("; changed:");
        if (json_array_size(changed) == 0) printf(" nothing");
        json_array_foreach(changed, i, v) printf("%s %s", i ? "," : "", json_string_value(v));
        json_t *eng = json_object_get(doc, "engines");
        printf("; engines kept %lld, started %lld, stopped %lld\n",
               (long long)json_integer_value(json_object_get(eng, "kept")),
               (long long)json_integer_value(json_object_get(eng, "started")),
               (long long)json_integer_value(json_object_get(eng, "stopped")));
        if (json_array_size(restart) > 0) {
            printf("restart needed for:");
            json_array_foreach(restart, i, v) printf("%s %s", i ? "," : "", json_string_value(v));
            printf(" (read at start only; their running values stay)\n");
        }
    } else {
        const char *msg =
            json_string_value(json_object_get(json_object_get(doc, "error"), "message"));
        fprintf(stderr, "stratus reload: HTTP %ld: %s\n", status, msg ? msg : a.buf);
    }
    json_decref(doc);
    return status == 200 ? 0 : 1;
}
