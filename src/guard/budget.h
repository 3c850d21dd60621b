/*
 * guard/budget — live spend counters for budgets (per key, team, customer; daily or
 * monthly, UTC) and the admission rule that keeps them from being overrun under
 * concurrency.
 *
 * Admission reserves the request's worst-case cost (estimated prompt tokens + max_tokens at
 * the group's highest prices) on every budget that applies; the reservation counts as spent
 * until the request ends and budget_settle() swaps it for the real cost. A budget admits a
 * request while spent + reserved is below its limit, so however many requests race, the
 * overshoot is at most one request's reservation (when real cost <= reservation).
 *
 *   used >= limit          → exhausted: reject (429 with the reset time) or, with
 *                            on_exhausted: local_only, route to local targets only
 *   used >= soft * limit   → routing prefers the cheapest (local) target
 *
 * Counters start from the ledger's sums for the current period (budget_book_seed), so a
 * restart does not reset a budget. Several instances sharing one budget need shared
 * counters (Redis); each in-process book only knows its own instance's requests.
 * Thread: no locking; the loop thread owns a book.
 */
#ifndef STRATUS_GUARD_BUDGET_H
#define STRATUS_GUARD_BUDGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "route/router.h"

#define BUDGET_MAX_RULES 3 /* key, team, customer */

struct budget_book;
struct budget_entry;

/* One budget applying to a request: the rule and whose counter (the real team/customer
 * name, also for "*" rules). */
struct budget_applies {
    const struct budget_conf *rule;
    const char *name;
};

/* What admission held; settle it exactly once. */
struct budget_hold {
    struct budget_entry *entries[BUDGET_MAX_RULES];
    size_t n;
    double amount;
};

struct budget_verdict {
    bool reject;            /* 429 budget_exceeded */
    enum route_budget mode; /* how routing should bend */
    char why[160];          /* "team 'ml' spent $9.80 of $10.00 (daily)" — the tightest */
    int64_t reset_ms;       /* wall clock, when the rejecting budget's period ends */
};

/* The largest amount a counter takes in one step: a request for 2^63 tokens prices at
 * ~1e13 dollars, and counters must stay finite and exact to the cent around it. */
#define BUDGET_MAX_USD 1e9

/** `usd` as an amount counters can hold: NaN and anything above BUDGET_MAX_USD become
 *  BUDGET_MAX_USD (a cost nobody can tell holds the most, never nothing), negatives 0. */
double budget_clamp_usd(double usd);

struct budget_book *budget_book_new(void);
void budget_book_free(struct budget_book *b);

/** Adds `usd` already spent in the period containing `now_ms` (from the ledger).
 *  @return 0, or -1 on OOM. */
int budget_book_seed(struct budget_book *b, enum budget_scope scope, enum budget_period period,
                     const char *name, double usd, int64_t now_ms);

/**
 * Decides on a request under `n` budgets (n <= BUDGET_MAX_RULES) and, unless rejected,
 * reserves `reserve_usd` on each into `hold`. @return 0, or -1 on OOM.
 */
int budget_admit(struct budget_book *b, const struct budget_applies *applies, size_t n,
                 double reserve_usd, int64_t now_ms, struct budget_verdict *verdict,
                 struct budget_hold *hold);

/** The reason text for a budget at `used` dollars: "team 'ml' spent $9.8000 of its $10.00
 *  daily budget" when it refused, else "team 'ml' at 85% of its $10.00 daily budget". */
void budget_describe(const struct budget_applies *a, double used, bool refused, char *out,
                     size_t cap);

/** Replaces the hold's reservation with `actual_usd`. */
void budget_settle(struct budget_hold *hold, double actual_usd);

/** Spent + reserved now on one counter (tests, /admin). */
double budget_used(struct budget_book *b, enum budget_scope scope, enum budget_period period,
                   const char *name, int64_t now_ms);

/** Start of the UTC day or month containing `ms`, and of the next one. */
int64_t budget_period_start(enum budget_period p, int64_t ms);
int64_t budget_period_end(enum budget_period p, int64_t ms);

#endif
