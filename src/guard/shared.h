/*
 * guard/shared — rate limits and budget counters shared by every instance, in Redis
 * (`store.redis`). One Lua script per admission checks the key's RPM and TPM (GCRA on the
 * Redis server's clock) and every budget that applies, and only if all pass stores the new
 * arrival times and adds the reservation to each budget counter — atomically, so two
 * gateways admitting at once cannot both take the last of a budget. A second script
 * settles: adds (real cost - reservation) and gives back unused tokens.
 *
 * Counters are named stratus:budget:<scope>:<d|m>:<period start ms>:<name> and expire a
 * day after their period; rate-limit state stratus:rl:<key id>:<rpm|tpm>. At start each
 * instance seeds the counters of the current periods from the ledger with SET NX, so the
 * first instance up (or a Redis restart) starts from what the ledger knows.
 *
 * Connection: checked synchronously at start (a gateway configured for Redis that cannot
 * reach it does not start); then hiredis async on the loop, reconnecting every second if
 * it drops. While it is down, calls fail and the guard falls back to its in-process
 * counters (limits then hold per instance) and says so in the log.
 * Thread: event-loop thread only.
 */
#ifndef STRATUS_GUARD_SHARED_H
#define STRATUS_GUARD_SHARED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "guard/ratelimit.h"
#include "util/err.h"

struct event_base;
struct shared;

#define SHARED_MAX_BUDGETS  3
#define SHARED_COUNTER_SIZE 256

struct shared_budget {
    char counter[SHARED_COUNTER_SIZE];
    double limit_usd, soft;
    bool local_only; /* on_exhausted: local_only */
    int64_t ttl_ms;  /* until a day after the period ends */
};

struct shared_ask {
    char key_id[32]; /* "" without a key: no rate limits */
    int64_t rpm, tpm, tokens;
    double reserve_usd;
    struct shared_budget budgets[SHARED_MAX_BUDGETS];
    int n_budgets;
};

enum shared_status {
    SHARED_ADMITTED = 0,
    SHARED_RPM_LIMITED,
    SHARED_TPM_LIMITED,
    SHARED_BUDGET_REJECTED,
};

struct shared_answer {
    enum shared_status status;
    struct gcra_result rpm, tpm;
    int mode;    /* enum route_budget */
    int budget;  /* index of the budget that decided (rejected or tightest), -1 none */
    double used; /* that budget's spent + reserved before this request */
};

/** `answer` NULL: Redis failed or is down (fall back). Called exactly once. */
typedef void (*shared_admit_cb)(const struct shared_answer *answer, void *ud);

/** Connects to `url` (redis://[:PASSWORD@]HOST[:PORT]); `password` (may be NULL) overrides
 *  the URL's (store.redis_password). NULL with `err` when it cannot. */
struct shared *shared_new(struct event_base *loop, const char *url, const char *password,
                          struct err *err);

/** Closes the connection; pending callbacks are called with NULL first. NULL-safe. */
void shared_free(struct shared *s);

/** Seeds a counter with `usd` unless it exists (start-up only: blocking, on the
 *  connection shared_new checked with). @return 0 or -1. */
int shared_seed(struct shared *s, const char *counter, double usd, int64_t ttl_ms);

/** Start-up is over: closes the blocking connection. */
void shared_seed_done(struct shared *s);

/** Runs the admission script. @return 0 (cb will be called), -1 when not connected. */
int shared_admit(struct shared *s, const struct shared_ask *ask, shared_admit_cb cb, void *ud);

/** Settles one admission: adds `delta_usd` to each counter and `token_delta` tokens to the
 *  key's TPM state. Fire and forget. */
void shared_settle(struct shared *s, const struct shared_ask *ask, double delta_usd,
                   int64_t token_delta);

bool shared_connected(const struct shared *s);

/* ---- plain values (the response cache's shared entries) --------------------------------- */

struct shared_get;

/** `value` NULL: no such key, or Redis failed. Borrowed for the call. */
typedef void (*shared_get_cb)(const char *value, size_t len, void *ud);

/** GET `key`; `cb` runs once with the answer unless cancelled first. @return the pending
 *  call, or NULL when it could not be sent (down, out of memory): then `cb` never runs. */
struct shared_get *shared_get(struct shared *s, const char *key, shared_get_cb cb, void *ud);

/** The asker went away: `cb` will not run. */
void shared_get_cancel(struct shared_get *g);

/** SET `key` to `value` for `ttl_ms`, not waiting for the answer (a failure only means the
 *  other instances miss). */
void shared_set(struct shared *s, const char *key, const char *value, size_t len, int64_t ttl_ms);

#endif
