/*
 * guard — who may call, what they may use, how fast and for how much.
 *
 *   guard_authenticate  the key a request carried (its surface finds it: for OpenAI and
 *                       the admin API, Authorization: Bearer — api/credential.c) → master
 *                       or virtual key principal, or 401 (missing, unknown, revoked,
 *                       expired) / 403 (admin with a virtual key). Without auth.master_key
 *                       every caller is "open".
 *   guard_admit         for one model request: the key's model list (403), its RPM and TPM
 *                       (429 rate_limit_exceeded, Retry-After, x-ratelimit-* headers), then
 *                       budgets of key, team and customer (429 budget_exceeded with the
 *                       reset time, or a routing mode: soft → local targets first, then the
 *                       cheapest; exhausted with local_only → local targets only). Reserves
 *                       worst-case cost. With store.redis the counters are Redis's (one
 *                       script, answered asynchronously); without, this instance's.
 *   guard_settle        when the request ends: the real cost and tokens replace what
 *                       admission reserved.
 *
 * Keys live in the store; the guard keeps a snapshot and re-reads it every auth.refresh_ms
 * on the store-jobs thread (and at once after a change made through this instance), so a
 * key made or revoked by the CLI or another instance takes effect within refresh_ms.
 * Thread: event-loop thread only. Ownership: the guard borrows cfg, loop and jobs.
 */
#ifndef STRATUS_GUARD_H
#define STRATUS_GUARD_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "guard/awskeys.h"
#include "guard/budget.h"
#include "guard/keys.h"
#include "guard/shared.h"
#include "route/router.h"
#include "util/err.h"

struct event_base;
struct store_handle;
struct store_jobs;
struct guard;
struct admit_pending;

enum principal_kind {
    PRINCIPAL_OPEN = 0, /* auth is off */
    PRINCIPAL_MASTER,
    PRINCIPAL_KEY,
};

struct principal {
    enum principal_kind kind;
    struct key_record key; /* a copy (PRINCIPAL_KEY): snapshots may change mid-request */
};

/* A response header admission wants sent (x-ratelimit-*, Retry-After). */
struct admit_header {
    const char *name; /* static */
    char value[24];
};
#define ADMIT_MAX_HEADERS 8

/* What admission decided and holds; lives with the request (its arena). */
struct admission {
    /* Headers for the response, admitted or refused: the caller adds them. */
    struct admit_header headers[ADMIT_MAX_HEADERS];
    size_t n_headers;
    enum route_budget mode;
    char why[160];
    /* in-process counters */
    struct budget_hold hold;
    bool held;
    /* Redis counters: the ask holds the counter names for settling */
    bool shared;
    struct shared_ask ask;
    struct admit_pending *pending; /* a Redis call out; NULL otherwise */
    /* what applies, kept for the reason text and settling */
    struct budget_conf key_rule;
    struct budget_applies applies[BUDGET_MAX_RULES];
    size_t n_applies;
    char customer[128];
    double reserve_usd;
    char key_id[32];
    int64_t tpm_limit, tokens_charged; /* to correct the key's TPM at the end */
    bool settled;
};

/* rc 0: admitted (adm filled); -1: refused with `err` (403/429 and their headers on req). */
typedef void (*guard_admit_cb)(void *ud, int rc, const struct err *err);

/**
 * Builds the guard: loads keys and seeds budget counters from `store` (a handle used here
 * only, at start-up, before `jobs` takes over refreshes). @return an owned guard, or NULL
 * with `err`.
 */
struct guard *guard_new(const struct config *cfg, struct event_base *loop,
                        struct store_handle *store, struct store_jobs *jobs, struct err *err);

/** NULL-safe. Stops the refresh timer. */
void guard_free(struct guard *g);

bool guard_auth_enabled(const struct guard *g);

/** Who holds `secret` (the key the request's surface carried; NULL or empty when none): the
 *  master key, a live virtual key, or — without auth — anyone. @return 0 with `out` filled,
 *  or -1 with `err` (401 missing/unknown/revoked/expired, 403 a virtual key on /admin).
 *  `admin`: an /admin call. */
int guard_authenticate(struct guard *g, const char *secret, size_t len, bool admin,
                       struct principal *out, struct err *err);

struct http_request;

/** Who signed `req` with SigV4 (guard/sigv4_verify.h): the live virtual key whose access
 *  key id the signature names, when the signature is right and within 5 minutes — or,
 *  without auth, anyone. @return 0 with `out` filled, or -1 with `err`: 400
 *  incomplete_signature, 401 unrecognized_client (no such access key id) or
 *  invalid_api_key (revoked, expired), 403 invalid_signature. */
int guard_authenticate_sigv4(struct guard *g, const struct http_request *req, struct principal *out,
                             struct err *err);

/** Whether `who` may act from `req`'s client address (http/access.h sets it): a virtual
 *  key with allowed_cidrs is refused anywhere else. Call right after authentication.
 *  @return 0, or -1 with `err`: 403 permission_error ip_not_allowed. */
int guard_check_client(const struct principal *who, const struct http_request *req,
                       struct err *err);

/** Whether a prompt of `prompt_tokens` — the estimate routing and the budget reserve use
 *  (route_request.prompt_tokens: body bytes / 4) — fits the smaller of the model group's
 *  and the key's max_prompt_tokens (0 on either: no limit there). Call before admission,
 *  so a refused prompt reserves nothing and reaches no target. Thread: any.
 *  @return 0, or -1 with `err`: 400 invalid_request_error prompt_too_long naming the
 *  limit, where it comes from and the estimate. */
int guard_check_prompt(const struct principal *who, const struct model_conf *model,
                       long prompt_tokens, struct err *err);

/** Gives `rec` SigV4 credentials sealed under this guard's master key (awskeys_mint).
 *  @return 0 with the secret (shown once) in `secret`, or -1 (auth off, random source). */
int guard_mint_aws(const struct guard *g, struct key_record *rec, char secret[AWSKEY_SECRET_SIZE]);

/**
 * Admits a request for `model`. `prompt_tokens`/`output_tokens` are the estimates routing
 * uses; `reserve_usd` its worst-case cost (held on every budget that applies). Puts
 * x-ratelimit-* headers in adm->headers when the key has limits, Retry-After on a 429.
 * `done` is called exactly once: before this returns (in-process counters) or when Redis
 * answers — unless guard_cancel() comes first. `tier` (may be NULL; borrowed for the call)
 * is the request's (guard_tier): its budget applies to a customer no `budgets:` entry names.
 */
void guard_admit(struct guard *g, const struct principal *who, const struct model_conf *model,
                 const struct tier_conf *tier, const char *customer, long prompt_tokens,
                 long output_tokens, double reserve_usd, struct admission *adm, guard_admit_cb done,
                 void *ud);

/** The request is going away: a Redis answer still out is dropped (and what it reserved is
 *  given back). Safe to call in any state. */
void guard_cancel(struct guard *g, struct admission *adm);

/** Settles `adm` with what the request really cost (`cost_known` false: counted as 0) and
 *  used. Once per admitted request. */
void guard_settle(struct guard *g, struct admission *adm, bool cost_known, double cost_usd,
                  long long tokens);

/** The current key snapshot (borrowed until the next refresh). */
const struct key_table *guard_keys(const struct guard *g);

/** Swaps in a fresh snapshot of every key (`records` taken over), as read by an admin job
 *  right after a change, so the change holds for the next request. */
void guard_replace_keys(struct guard *g, struct key_record *records, size_t n);

/** Swaps in a fresh customer → tier table (`records` taken over, also NULL with n 0), as read
 *  by the periodic refresh or by an admin job right after a change. Loop thread. */
void guard_replace_customers(struct guard *g, struct customer_record *records, size_t n);

/** The customer tier of a request (docs/tiers.md): the key's `tier`, else the tier the
 *  customer table gives `customer` (x-stratus-customer, else `user`), else the config's
 *  `customers:` map's, else `cfg`'s default
 *  tier, else NULL (no tier: nothing is checked or charged). A name `cfg` no longer has
 *  counts as none at that step. Borrowed from `cfg`. Loop thread. */
const struct tier_conf *guard_tier(const struct guard *g, const struct config *cfg,
                                   const struct principal *who, const char *customer);

/** Clock override for tests: wall-clock ms. NULL restores the real clock. */
void guard_set_clock(struct guard *g, int64_t (*now_ms)(void));

/** Admissions decided on this instance's own counters although store.redis is configured
 *  (Redis down or unreachable): limits were then per instance. */
uint64_t guard_redis_fallbacks(const struct guard *g);

struct shared;
/** The Redis connection (store.redis), or NULL without one. Borrowed. */
struct shared *guard_shared(struct guard *g);

/* One budget as it stands (metrics, dashboards). Strings borrowed for the callback. */
struct guard_budget {
    const char *scope, *name, *period; /* "team", "ml"; "key", "key_…"; "daily"/"monthly" */
    double limit_usd, used_usd;        /* used: spent + reserved by requests in flight */
    int64_t resets_at_ms;              /* wall clock: the period's end */
};

/** Calls `each` for every budget with a counter of its own: the config's team and customer
 *  budgets (not "*" ones: a counter per customer) and keys' budgets. */
void guard_each_budget(struct guard *g, void (*each)(void *ud, const struct guard_budget *b),
                       void *ud);

#endif
