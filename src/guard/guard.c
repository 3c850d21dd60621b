/*
 * Why one file of ~810 lines: admission is one decision over one in-memory state — the key
 * table, the customer tiers, the rate-limit buckets and the budget book are swapped and read
 * together on the loop thread, and splitting them would spread that state's invariants over
 * files that all reach into `struct guard`. The pieces with their own data (ratelimit,
 * budget, awskeys, sigv4_verify, keys) are modules of their own already.
 *
 * DESIGN: everything here runs on the loop thread and is in memory: a request is admitted
 * without a database round trip. The store is touched at start (keys, budget seeds) and by
 * refresh jobs on the store-jobs thread, whose results are swapped in on the loop thread.
 */
#include "guard/guard.h"

#include <event2/event.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "guard/awskeys.h"
#include "guard/ratelimit.h"
#include "guard/sigv4_verify.h"
#include "http/request.h"
#include "obs/log.h"
#include "store/jobs.h"
#include "util/clock.h"

#define LIMIT_BUCKETS 256
#define SEED_LINES    20000 /* biggest spenders per scope seeded at start */

struct key_limits {
    struct key_limits *next;
    char id[32];
    struct gcra rpm, tpm;
};

struct refresh_job {
    struct guard *guard; /* NULL once the guard is gone */
    struct key_record *records;
    int n;
    struct customer_record *customers;
    int n_customers;
    char why[300];
};

struct guard {
    const struct config *cfg;
    bool auth;
    char master_hash[65];
    unsigned char aws_key[AWSKEY_KEY_SIZE]; /* seals keys' SigV4 secrets (awskeys.h) */
    struct key_table *keys;
    struct customer_record *customers; /* sorted by customer (strcmp) for bsearch */
    size_t n_customers;
    struct key_limits *limits[LIMIT_BUCKETS];
    struct budget_book *book;
    struct shared *shared; /* NULL without store.redis */
    struct store_jobs *jobs;
    struct event *refresh_timer;
    struct refresh_job *refreshing; /* the job out, or NULL */
    int64_t (*now_ms)(void);
    uint64_t redis_fallbacks; /* admissions decided locally though store.redis is set */
};

/* ---- key refresh -------------------------------------------------------------------- */

static void refresh_run(struct store_handle *store, void *ud)
{
    struct refresh_job *j = ud;
    j->n = store->ops->key_list(store->db, &j->records, j->why, sizeof j->why);
    if (j->n >= 0)
        j->n_customers = store->ops->customer_list(store->db, &j->customers, j->why, sizeof j->why);
}

static void refresh_done(void *ud)
{
    struct refresh_job *j = ud;
    struct guard *g = j->guard;
    if (g == NULL) { /* the guard stopped while this was out */
        free(j->records);
        free(j->customers);
        free(j);
        return;
    }
    g->refreshing = NULL;
    if (j->n < 0)
        log_msg("warn", "keys_refresh_failed", "keeping the previous keys: %s", j->why);
    else
        guard_replace_keys(g, j->records, (size_t)j->n);
    if (j->n >= 0 && j->n_customers < 0)
        log_msg("warn", "customers_refresh_failed", "keeping the previous customer tiers: %s",
                j->why);
    else if (j->n >= 0)
        guard_replace_customers(g, j->customers, (size_t)j->n_customers);
    else
        free(j->customers);
    free(j);
}

/* One refresh at a time: a tick that finds one still out skips (the next tick comes). */
static void schedule_refresh(struct guard *g)
{
    if (g->jobs == NULL || g->refreshing) return;
    struct refresh_job *j = calloc(1, sizeof *j);
    if (j == NULL) return;
    j->guard = g;
    if (store_jobs_submit(g->jobs, refresh_run, refresh_done, j) != 0) {
        free(j);
        return;
    }
    g->refreshing = j;
}

static void on_refresh_timer(evutil_socket_t fd, short what, void *ud)
{
    (void)fd;
    (void)what;
    schedule_refresh(ud);
}

void guard_replace_keys(struct guard *g, struct key_record *records, size_t n)
{
    struct key_table *t = key_table_new(records, n);
    if (t == NULL) return; /* the periodic refresh will catch up */
    key_table_free(g->keys);
    g->keys = t;
}

static int customer_cmp(const void *a, const void *b)
{
    return strcmp(((const struct customer_record *)a)->customer,
                  ((const struct customer_record *)b)->customer);
}

void guard_replace_customers(struct guard *g, struct customer_record *records, size_t n)
{
    /* Sorted here, not by the store: PostgreSQL orders by its collation, bsearch by bytes. */
    if (n > 1) qsort(records, n, sizeof *records, customer_cmp);
    free(g->customers);
    g->customers = records;
    g->n_customers = n;
}

const struct tier_conf *guard_tier(const struct guard *g, const struct config *cfg,
                                   const struct principal *who, const char *customer)
{
    if (cfg == NULL || cfg->n_tiers == 0) return NULL;
    const struct tier_conf *t = NULL;
    if (who && who->kind == PRINCIPAL_KEY) t = config_find_tier(cfg, who->key.tier);
    if (t == NULL && g && customer && customer[0] && g->n_customers) {
        struct customer_record probe;
        snprintf(probe.customer, sizeof probe.customer, "%s", customer);
        const struct customer_record *c =
            bsearch(&probe, g->customers, g->n_customers, sizeof probe, customer_cmp);
        if (c) t = config_find_tier(cfg, c->tier);
    }
    if (t == NULL) t = config_customer_tier(cfg, customer); /* the config's static map */
    return t ? t : config_default_tier(cfg);
}

/* ---- start-up ----------------------------------------------------------------------- */

/* The Redis counter of one budget in the period containing `now`. */
static void counter_name(char out[SHARED_COUNTER_SIZE], enum budget_scope scope,
                         enum budget_period period, const char *name, int64_t now)
{
    snprintf(out, SHARED_COUNTER_SIZE, "stratus:budget:%s:%c:%lld:%s", budget_scope_name(scope),
             period == BUDGET_DAILY ? 'd' : 'm', (long long)budget_period_start(period, now), name);
}

static int64_t counter_ttl(enum budget_period period, int64_t now)
{
    return budget_period_end(period, now) - now + 86400000;
}

/* Whether any budget counts spend of `scope` per `period`: a scope nobody budgets needs no
 * seed (and start-up reads nothing for it). */
static bool budgeted(const struct guard *g, const struct key_record *keys, size_t n_keys,
                     enum budget_scope scope, enum budget_period period)
{
    if (scope == BUDGET_SCOPE_KEY) {
        for (size_t i = 0; i < n_keys; i++)
            if (keys[i].budget_usd > 0 && keys[i].budget_period == period &&
                keys[i].revoked_ms == 0)
                return true;
        return false;
    }
    for (size_t i = 0; i < g->cfg->n_budgets; i++)
        if (g->cfg->budgets[i].scope == scope && g->cfg->budgets[i].period == period) return true;
    for (size_t i = 0; scope == BUDGET_SCOPE_CUSTOMER && i < g->cfg->n_tiers; i++)
        if (g->cfg->tiers[i].budget.limit_usd > 0 && g->cfg->tiers[i].budget.period == period)
            return true;
    return false;
}

static int seed_budgets(struct guard *g, struct store_handle *store, const struct key_record *keys,
                        size_t n_keys, struct err *err)
{
    static const enum spend_group groups[] = {SPEND_BY_KEY, SPEND_BY_TEAM, SPEND_BY_CUSTOMER};
    static const enum budget_scope scopes[] = {BUDGET_SCOPE_KEY, BUDGET_SCOPE_TEAM,
                                               BUDGET_SCOPE_CUSTOMER};
    struct spend_line *lines = NULL;
    int64_t now = g->now_ms();
    char why[300];
    for (int p = BUDGET_DAILY; p <= BUDGET_MONTHLY; p++) {
        int64_t from = budget_period_start((enum budget_period)p, now);
        for (size_t k = 0; k < 3; k++) {
            if (!budgeted(g, keys, n_keys, scopes[k], (enum budget_period)p)) continue;
            int n = store->ops->spend(store->db, groups[k], 0, from, now + 86400000, &lines,
                                      SEED_LINES, why, sizeof why);
            if (n < 0) {
                free(lines);
                return err_set(err, 500, "server_error", NULL, "budgets: %s", why);
            }
            for (int i = 0; i < n; i++) {
                if (lines[i].group[0] == '\0') continue;
                if (budget_book_seed(g->book, scopes[k], (enum budget_period)p, lines[i].group,
                                     lines[i].cost_usd, now) != 0) {
                    free(lines);
                    return err_oom(err);
                }
                char counter[SHARED_COUNTER_SIZE];
                counter_name(counter, scopes[k], (enum budget_period)p, lines[i].group, now);
                if (g->shared && shared_seed(g->shared, counter, lines[i].cost_usd,
                                             counter_ttl((enum budget_period)p, now)) != 0) {
                    free(lines);
                    return err_set(err, 500, "server_error", NULL,
                                   "store.redis: cannot seed budget counters");
                }
            }
        }
    }
    free(lines);
    return 0;
}

struct guard *guard_new(const struct config *cfg, struct event_base *loop,
                        struct store_handle *store, struct store_jobs *jobs, struct err *err)
{
    struct guard *g = calloc(1, sizeof *g);
    if (g == NULL) {
        err_oom(err);
        return NULL;
    }
    g->cfg = cfg;
    g->jobs = jobs;
    g->now_ms = clock_wall_ms;
    g->auth = cfg->auth.master_key.value != NULL;
    if (g->auth) {
        keys_hash(cfg->auth.master_key.value, strlen(cfg->auth.master_key.value), g->master_hash);
        if (awskeys_derive(cfg->auth.master_key.value, strlen(cfg->auth.master_key.value),
                           g->aws_key) != 0) {
            err_set(err, 500, "server_error", NULL, "OpenSSL has no HKDF");
            goto fail;
        }
    }
    if ((g->book = budget_book_new()) == NULL) {
        err_oom(err);
        goto fail;
    }
    char why[300];
    struct key_record *records = NULL;
    int n = store->ops->key_list(store->db, &records, why, sizeof why);
    if (n < 0) {
        err_set(err, 500, "server_error", NULL, "keys: %s", why);
        goto fail;
    }
    if ((g->keys = key_table_new(records, (size_t)n)) == NULL) {
        err_oom(err);
        goto fail;
    }
    struct customer_record *customers = NULL;
    int n_customers = store->ops->customer_list(store->db, &customers, why, sizeof why);
    if (n_customers < 0) {
        err_set(err, 500, "server_error", NULL, "customers: %s", why);
        goto fail;
    }
    guard_replace_customers(g, customers, (size_t)n_customers);
    if (cfg->store.redis && loop &&
        (g->shared = shared_new(loop, cfg->store.redis, cfg->store.redis_password.value, err)) ==
            NULL)
        goto fail;
    if (seed_budgets(g, store, records, (size_t)n, err) != 0) goto fail; /* records: the table's */
    if (g->shared) shared_seed_done(g->shared);
    if (loop && jobs) {
        g->refresh_timer = event_new(loop, -1, EV_PERSIST, on_refresh_timer, g);
        if (g->refresh_timer == NULL) {
            err_oom(err);
            goto fail;
        }
        struct timeval tv = {cfg->auth.refresh_ms / 1000, (cfg->auth.refresh_ms % 1000) * 1000};
        event_add(g->refresh_timer, &tv);
    }
    return g;
fail:
    guard_free(g);
    return NULL;
}

void guard_free(struct guard *g)
{
    if (g == NULL) return;
    if (g->refresh_timer) event_free(g->refresh_timer);
    if (g->refreshing) g->refreshing->guard = NULL; /* its done() frees it */
    shared_free(g->shared); /* answers still out are dropped (their requests are gone) */
    key_table_free(g->keys);
    free(g->customers);
    budget_book_free(g->book);
    for (size_t i = 0; i < LIMIT_BUCKETS; i++) {
        struct key_limits *l = g->limits[i];
        while (l) {
            struct key_limits *next = l->next;
            free(l);
            l = next;
        }
    }
    free(g);
}

bool guard_auth_enabled(const struct guard *g)
{
    return g && g->auth;
}

const struct key_table *guard_keys(const struct guard *g)
{
    return g->keys;
}

void guard_set_clock(struct guard *g, int64_t (*now_ms)(void))
{
    g->now_ms = now_ms ? now_ms : clock_wall_ms;
}

/* ---- authentication ----------------------------------------------------------------- */

/* A live key, or why not (401 revoked / expired). */
static int live(struct guard *g, const struct key_record *k, struct err *err)
{
    char when[32];
    if (k->revoked_ms) {
        clock_iso8601(k->revoked_ms, when, sizeof when);
        return err_set(err, 401, "invalid_request_error", "invalid_api_key",
                       "API key %s was revoked at %s", k->id, when);
    }
    if (k->expires_ms && g->now_ms() >= k->expires_ms) {
        clock_iso8601(k->expires_ms, when, sizeof when);
        return err_set(err, 401, "invalid_request_error", "invalid_api_key",
                       "API key %s expired at %s", k->id, when);
    }
    return 0;
}

int guard_authenticate_sigv4(struct guard *g, const struct http_request *req, struct principal *out,
                             struct err *err)
{
    memset(out, 0, sizeof *out);
    if (!g->auth) return 0;
    struct sigv4_presented p;
    if (sigv4_parse(req, &p, err) != 0) return -1;
    const struct key_record *k = NULL;
    for (size_t i = 0; i < key_table_size(g->keys) && k == NULL; i++) {
        const struct key_record *c = key_table_at(g->keys, i);
        if (c->aws_key_id[0] && strcmp(c->aws_key_id, p.key_id) == 0) k = c;
    }
    if (k == NULL)
        return err_set(err, 401, "invalid_request_error", "unrecognized_client",
                       "The security token included in the request is invalid: no key has "
                       "access key id %.24s",
                       p.key_id);
    if (live(g, k, err) != 0) return -1;
    char secret[AWSKEY_SECRET_SIZE];
    if (awskeys_open(k, g->aws_key, secret) != 0)
        return err_set(err, 403, "permission_error", "invalid_signature",
                       "the AWS secret of key %s does not open under this master key; issue "
                       "a new one",
                       k->id);
    int rc = sigv4_verify(req, &p, secret, (time_t)(g->now_ms() / 1000), err);
    OPENSSL_cleanse(secret, sizeof secret);
    if (rc != 0) return -1;
    out->kind = PRINCIPAL_KEY;
    out->key = *k;
    return 0;
}

int guard_check_client(const struct principal *who, const struct http_request *req, struct err *err)
{
    if (who->kind != PRINCIPAL_KEY) return 0;
    if (key_allows_client(&who->key, req->client[0] ? req->client_ip : NULL)) return 0;
    return err_set(err, 403, "permission_error", "ip_not_allowed",
                   "API key %s may not be used from %s (its allowed_cidrs: %s)", who->key.id,
                   req->client[0] ? req->client : "this connection", who->key.allowed_cidrs);
}

int guard_check_prompt(const struct principal *who, const struct model_conf *model,
                       long prompt_tokens, struct err *err)
{
    long limit = model->max_prompt_tokens;
    bool key = false;
    if (who && who->kind == PRINCIPAL_KEY && who->key.max_prompt_tokens > 0 &&
        (limit == 0 || who->key.max_prompt_tokens < limit)) {
        limit = (long)who->key.max_prompt_tokens;
        key = true;
    }
    if (limit == 0 || prompt_tokens <= limit) return 0;
    char from[96];
    if (key)
        snprintf(from, sizeof from, "API key %s", who->key.id);
    else
        snprintf(from, sizeof from, "model '%.64s'", model->name);
    return err_set(err, 400, "invalid_request_error", "prompt_too_long",
                   "the prompt is ~%ld tokens (estimated as request bytes / 4), over the "
                   "max_prompt_tokens limit of %ld set for %s",
                   prompt_tokens, limit, from);
}

int guard_mint_aws(const struct guard *g, struct key_record *rec, char secret[AWSKEY_SECRET_SIZE])
{
    return g->auth ? awskeys_mint(rec, g->aws_key, secret) : -1;
}

/* How many Authorization headers the request carries. */
int guard_authenticate(struct guard *g, const char *secret, size_t len, bool admin,
                       struct principal *out, struct err *err)
{
    memset(out, 0, sizeof *out);
    if (!g->auth) return 0;
    if (secret == NULL || len == 0)
        return err_set(err, 401, "invalid_request_error", "missing_api_key",
                       "no API key: send Authorization: Bearer <key>");
    char hash[65];
    keys_hash(secret, len, hash);
    if (CRYPTO_memcmp(hash, g->master_hash, 64) == 0) {
        out->kind = PRINCIPAL_MASTER;
        return 0;
    }
    const struct key_record *k = key_table_find_hash(g->keys, hash);
    if (k == NULL)
        return err_set(err, 401, "invalid_request_error", "invalid_api_key",
                       "invalid API key (keys start with " KEY_SECRET_PREFIX ")");
    if (live(g, k, err) != 0) return -1;
    if (admin)
        return err_set(err, 403, "permission_error", "admin_only",
                       "admin endpoints need the master key; %s is a virtual key", k->id);
    out->kind = PRINCIPAL_KEY;
    out->key = *k;
    return 0;
}

/* ---- admission ---------------------------------------------------------------------- */

static struct key_limits *limits_of(struct guard *g, const char *id)
{
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *c = (const unsigned char *)id; *c; c++)
        h = (h ^ *c) * 1099511628211ull;
    struct key_limits **slot = &g->limits[h % LIMIT_BUCKETS], *l = *slot;
    while (l && strcmp(l->id, id) != 0) l = l->next;
    if (l) return l;
    if ((l = calloc(1, sizeof *l)) == NULL) return NULL;
    snprintf(l->id, sizeof l->id, "%s", id);
    l->next = *slot;
    *slot = l;
    return l;
}

/* Decimal digits of v (>= 0) into out; returns the length. printf is most of the cost of
 * these headers otherwise. */
static size_t put_int(char *out, int64_t v)
{
    char tmp[24];
    size_t n = 0;
    do tmp[n++] = (char)('0' + v % 10);
    while ((v /= 10) > 0);
    for (size_t i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
    out[n] = '\0';
    return n;
}

/* A header admission wants on the response, whatever the answer. */
static void add_header(struct admission *adm, const char *name, const char *value)
{
    if (adm->n_headers == ADMIT_MAX_HEADERS) return;
    struct admit_header *h = &adm->headers[adm->n_headers++];
    h->name = name;
    snprintf(h->value, sizeof h->value, "%s", value);
}

static void ratelimit_headers(struct admission *adm, bool tokens, const struct gcra_result *r)
{
    bool requests = !tokens;
    char v[40];
    put_int(v, r->limit > 0 ? r->limit : 0);
    add_header(adm, requests ? "x-ratelimit-limit-requests" : "x-ratelimit-limit-tokens", v);
    put_int(v, r->remaining > 0 ? r->remaining : 0);
    add_header(adm, requests ? "x-ratelimit-remaining-requests" : "x-ratelimit-remaining-tokens",
               v);
    int64_t ms = r->reset_ms > 0 ? r->reset_ms : 0;
    size_t n = put_int(v, ms / 1000); /* seconds with milliseconds: "1.250s" */
    v[n++] = '.';
    v[n++] = (char)('0' + ms % 1000 / 100);
    v[n++] = (char)('0' + ms % 100 / 10);
    v[n++] = (char)('0' + ms % 10);
    v[n++] = 's';
    v[n] = '\0';
    add_header(adm, requests ? "x-ratelimit-reset-requests" : "x-ratelimit-reset-tokens", v);
}

static void retry_after(struct admission *adm, int64_t ms)
{
    char v[24];
    snprintf(v, sizeof v, "%lld", (long long)((ms + 999) / 1000 > 0 ? (ms + 999) / 1000 : 1));
    add_header(adm, "Retry-After", v);
}

/* The config budget for `name` in `scope`: its own entry, else the "*" one. */
static const struct budget_conf *rule_for(const struct config *cfg, enum budget_scope scope,
                                          enum budget_period period, const char *name)
{
    const struct budget_conf *star = NULL;
    for (size_t i = 0; i < cfg->n_budgets; i++) {
        const struct budget_conf *b = &cfg->budgets[i];
        if (b->scope != scope || b->period != period) continue;
        if (strcmp(b->name, name) == 0) return b;
        if (strcmp(b->name, "*") == 0) star = b;
    }
    return star;
}

/* The budgets that apply to this request, into adm->applies. */
static void collect_budgets(struct guard *g, const struct key_record *k,
                            const struct tier_conf *tier, struct admission *adm)
{
    adm->n_applies = 0;
    if (k && k->budget_usd > 0) {
        adm->key_rule = (struct budget_conf){
            .scope = BUDGET_SCOPE_KEY,
            .limit_usd = k->budget_usd,
            .period = k->budget_period,
            .soft = k->budget_soft > 0 ? k->budget_soft : 0.8,
            .on_exhausted = k->on_exhausted,
        };
        adm->applies[adm->n_applies++] = (struct budget_applies){&adm->key_rule, k->id};
    }
    /* One rule per scope; daily wins when both periods are configured (it runs out first). A
     * customer no `budgets:` entry names gets its tier's budget (docs/tiers.md). */
    const char *team = k ? k->team : "";
    for (int s = BUDGET_SCOPE_TEAM; s <= BUDGET_SCOPE_CUSTOMER; s++) {
        const char *name = s == BUDGET_SCOPE_TEAM ? team : adm->customer;
        if (name[0] == '\0') continue;
        const struct budget_conf *r = rule_for(g->cfg, (enum budget_scope)s, BUDGET_DAILY, name);
        if (r == NULL) r = rule_for(g->cfg, (enum budget_scope)s, BUDGET_MONTHLY, name);
        if (r == NULL && s == BUDGET_SCOPE_CUSTOMER && tier && tier->budget.limit_usd > 0)
            r = &tier->budget;
        if (r) adm->applies[adm->n_applies++] = (struct budget_applies){r, name};
    }
}

static int rate_limited(struct admission *adm, const struct key_record *k, bool tokens,
                        const struct gcra_result *r, int64_t charged, struct err *err)
{
    if (tokens && r->never)
        return err_set(err, 429, "tokens", "rate_limit_exceeded",
                       "request needs ~%lld tokens (prompt estimate + max_tokens), more than key "
                       "%s's whole limit of %lld tokens per minute",
                       (long long)charged, k->id, (long long)k->tpm);
    retry_after(adm, r->retry_after_ms);
    return err_set(err, 429, tokens ? "tokens" : "requests", "rate_limit_exceeded",
                   "rate limit reached for key %s: %lld %s per minute; retry in %.1f s", k->id,
                   (long long)(tokens ? k->tpm : k->rpm), tokens ? "tokens" : "requests",
                   (double)r->retry_after_ms / 1000.0);
}

static int budget_rejected(struct guard *g, struct admission *adm, const char *why,
                           int64_t reset_ms, struct err *err)
{
    char reset[32];
    clock_iso8601(reset_ms, reset, sizeof reset);
    retry_after(adm, reset_ms - g->now_ms());
    return err_set(err, 429, "insufficient_quota", "budget_exceeded",
                   "budget exceeded: %s; it resets at %s", why, reset);
}

/* In-process admission: this instance's counters. */
static int admit_locally(struct guard *g, const struct key_record *k, struct admission *adm,
                         struct err *err)
{
    int64_t now_us = (int64_t)(clock_now_ns() / 1000);
    struct key_limits *l = NULL;
    struct gcra saved_rpm = {0}, saved_tpm = {0};
    if (k && (k->rpm > 0 || k->tpm > 0)) {
        if ((l = limits_of(g, k->id)) == NULL) return err_oom(err);
        saved_rpm = l->rpm;
        saved_tpm = l->tpm;
        struct gcra_result rr = {0}, tr = {0};
        if (k->rpm > 0) {
            gcra_take(&l->rpm, k->rpm, 1, now_us, &rr);
            ratelimit_headers(adm, false, &rr);
            if (!rr.allowed) return rate_limited(adm, k, false, &rr, 1, err);
        }
        if (k->tpm > 0) {
            gcra_take(&l->tpm, k->tpm, adm->tokens_charged, now_us, &tr);
            ratelimit_headers(adm, true, &tr);
            if (!tr.allowed) {
                l->rpm = saved_rpm; /* a refused request does not use up a request */
                return rate_limited(adm, k, true, &tr, adm->tokens_charged, err);
            }
            adm->tpm_limit = k->tpm;
        }
    }
    if (adm->n_applies == 0) return 0;
    struct budget_verdict v;
    if (budget_admit(g->book, adm->applies, adm->n_applies, adm->reserve_usd, g->now_ms(), &v,
                     &adm->hold) != 0)
        return err_oom(err);
    if (v.reject) {
        if (l) { /* refused: as if it never came (as the Redis script does) */
            l->rpm = saved_rpm;
            l->tpm = saved_tpm;
        }
        adm->tpm_limit = 0;
        return budget_rejected(g, adm, v.why, v.reset_ms, err);
    }
    adm->held = true;
    adm->mode = v.mode;
    snprintf(adm->why, sizeof adm->why, "%s", v.why);
    return 0;
}

struct admit_pending {
    struct guard *guard;
    const struct key_record *key; /* in the request's principal (arena) */
    struct admission *adm;        /* NULL once cancelled */
    struct shared_ask ask;        /* a copy: settles a cancelled admission */
    guard_admit_cb done;
    void *ud;
};

static void on_shared_answer(const struct shared_answer *a, void *ud)
{
    struct admit_pending *p = ud;
    struct admission *adm = p->adm;
    struct guard *g = p->guard;
    if (adm == NULL) { /* the request is gone: give back what the script reserved */
        if (a && a->status == SHARED_ADMITTED && g)
            shared_settle(g->shared, &p->ask, -p->ask.reserve_usd, -p->ask.tokens);
        free(p);
        return;
    }
    adm->pending = NULL;
    struct err e;
    err_clear(&e);
    int rc = 0;
    const struct key_record *k = p->key;
    if (a == NULL) {
        rc = admit_locally(g, k, adm, &e); /* Redis down: this instance's counters */
    } else {
        struct gcra_result rr = a->rpm, tr = a->tpm;
        rr.limit = k ? k->rpm : 0;
        tr.limit = k ? k->tpm : 0;
        if (k && k->rpm > 0) ratelimit_headers(adm, false, &rr);
        if (k && k->tpm > 0 && a->status != SHARED_RPM_LIMITED) ratelimit_headers(adm, true, &tr);
        if (a->status == SHARED_RPM_LIMITED) {
            rc = rate_limited(adm, k, false, &rr, 1, &e);
        } else if (a->status == SHARED_TPM_LIMITED) {
            rc = rate_limited(adm, k, true, &tr, adm->tokens_charged, &e);
        } else if (a->status == SHARED_BUDGET_REJECTED && a->budget >= 0 &&
                   (size_t)a->budget < adm->n_applies) {
            char why[160];
            budget_describe(&adm->applies[a->budget], a->used, true, why, sizeof why);
            rc = budget_rejected(
                g, adm, why, budget_period_end(adm->applies[a->budget].rule->period, g->now_ms()),
                &e);
        } else {
            adm->shared = true;
            adm->tpm_limit = k ? k->tpm : 0;
            adm->mode = (enum route_budget)a->mode;
            if (a->mode != ROUTE_BUDGET_NONE && a->budget >= 0 &&
                (size_t)a->budget < adm->n_applies)
                budget_describe(&adm->applies[a->budget], a->used, false, adm->why,
                                sizeof adm->why);
        }
    }
    guard_admit_cb done = p->done;
    void *done_ud = p->ud;
    free(p);
    done(done_ud, rc, &e);
}

/* What a request is charged against TPM up front: prompt estimate + max_tokens, saturating
 * (max_tokens may be anything up to 2^63 - 1; a wrapped sum once read as a tiny charge). */
static int64_t tokens_asked(long prompt_tokens, long output_tokens)
{
    int64_t p = prompt_tokens > 0 ? prompt_tokens : 0, o = output_tokens > 0 ? output_tokens : 0;
    return p > INT64_MAX - o ? INT64_MAX : p + o;
}

void guard_admit(struct guard *g, const struct principal *who, const struct model_conf *model,
                 const struct tier_conf *tier, const char *customer, long prompt_tokens,
                 long output_tokens, double reserve_usd, struct admission *adm, guard_admit_cb done,
                 void *ud)
{
    memset(adm, 0, sizeof *adm);
    struct err e;
    err_clear(&e);
    const struct key_record *k = who->kind == PRINCIPAL_KEY ? &who->key : NULL;
    if (k && !key_allows_model(k, model->name)) {
        err_set(&e, 403, "permission_error", "model_not_allowed",
                "API key %s may not use model '%s' (allowed: %s)", k->id, model->name, k->models);
        done(ud, -1, &e);
        return;
    }
    snprintf(adm->customer, sizeof adm->customer, "%s", customer ? customer : "");
    adm->reserve_usd = budget_clamp_usd(reserve_usd);
    adm->tokens_charged = tokens_asked(prompt_tokens, output_tokens);
    if (k) snprintf(adm->key_id, sizeof adm->key_id, "%s", k->id);
    collect_budgets(g, k, tier, adm);
    bool limits = k && (k->rpm > 0 || k->tpm > 0);
    if (g->shared && (limits || adm->n_applies > 0) && shared_connected(g->shared)) {
        struct admit_pending *p = calloc(1, sizeof *p);
        if (p) {
            struct shared_ask *ask = &adm->ask;
            snprintf(ask->key_id, sizeof ask->key_id, "%s", adm->key_id);
            ask->rpm = k ? k->rpm : 0;
            ask->tpm = k ? k->tpm : 0;
            ask->tokens = adm->tokens_charged;
            ask->reserve_usd = adm->reserve_usd;
            int64_t now = g->now_ms();
            for (size_t i = 0; i < adm->n_applies; i++) {
                const struct budget_conf *r = adm->applies[i].rule;
                struct shared_budget *b = &ask->budgets[ask->n_budgets++];
                counter_name(b->counter, r->scope, r->period, adm->applies[i].name, now);
                b->limit_usd = r->limit_usd;
                b->soft = r->soft;
                b->local_only = r->on_exhausted == BUDGET_LOCAL_ONLY;
                b->ttl_ms = counter_ttl(r->period, now);
            }
            *p = (struct admit_pending){
                .guard = g, .key = k, .adm = adm, .ask = *ask, .done = done, .ud = ud};
            if (shared_admit(g->shared, ask, on_shared_answer, p) == 0) {
                adm->pending = p;
                return;
            }
            free(p);
        }
    }
    if (g->shared && (limits || adm->n_applies > 0)) g->redis_fallbacks++; /* down, or no memory */
    int rc = admit_locally(g, k, adm, &e);
    done(ud, rc, &e);
}

struct shared *guard_shared(struct guard *g)
{
    return g->shared;
}

uint64_t guard_redis_fallbacks(const struct guard *g)
{
    return g->redis_fallbacks;
}

void guard_each_budget(struct guard *g, void (*each)(void *ud, const struct guard_budget *b),
                       void *ud)
{
    int64_t now = g->now_ms();
    for (size_t i = 0; i < g->cfg->n_budgets; i++) {
        const struct budget_conf *r = &g->cfg->budgets[i];
        if (strcmp(r->name, "*") == 0) continue; /* one counter per customer: unbounded */
        each(ud, &(struct guard_budget){
                     .scope = budget_scope_name(r->scope),
                     .name = r->name,
                     .period = budget_period_name(r->period),
                     .limit_usd = r->limit_usd,
                     .used_usd = budget_used(g->book, r->scope, r->period, r->name, now),
                     .resets_at_ms = budget_period_end(r->period, now),
                 });
    }
    for (size_t i = 0; g->keys && i < key_table_size(g->keys); i++) {
        const struct key_record *k = key_table_at(g->keys, i);
        if (k->budget_usd <= 0) continue;
        each(ud,
             &(struct guard_budget){
                 .scope = "key",
                 .name = k->id,
                 .period = budget_period_name(k->budget_period),
                 .limit_usd = k->budget_usd,
                 .used_usd = budget_used(g->book, BUDGET_SCOPE_KEY, k->budget_period, k->id, now),
                 .resets_at_ms = budget_period_end(k->budget_period, now),
             });
    }
}

void guard_cancel(struct guard *g, struct admission *adm)
{
    (void)g;
    if (adm->pending) {
        adm->pending->adm = NULL;
        adm->pending = NULL;
    }
}

void guard_settle(struct guard *g, struct admission *adm, bool cost_known, double cost_usd,
                  long long tokens)
{
    if (adm->settled) return;
    adm->settled = true;
    double actual = cost_known ? budget_clamp_usd(cost_usd) : 0;
    if (adm->held) {
        budget_settle(&adm->hold, actual);
        adm->held = false;
    }
    int64_t token_delta = tokens >= 0 ? tokens - adm->tokens_charged : 0;
    if (adm->shared) {
        shared_settle(g->shared, &adm->ask, actual - adm->reserve_usd, token_delta);
        return;
    }
    if (adm->tpm_limit > 0 && tokens >= 0) {
        struct key_limits *l = limits_of(g, adm->key_id);
        if (l) gcra_adjust(&l->tpm, adm->tpm_limit, token_delta, (int64_t)(clock_now_ns() / 1000));
    }
}
