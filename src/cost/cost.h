/*
 * cost — what a request cost, in USD: token usage × the target's price, or, on a local
 * engine priced by its TCO, the engine time the request used × that TCO per hour.
 *
 * Prices come from the config (`price:`), the catalogue (prices.h), or — for a local
 * backend with `cost:` — its total cost of ownership:
 *
 *   USD per hour = watts / 1000 × kwh_price  +  hardware_price / (lifetime_months × 730)
 *
 * A local request is charged for the engine time it used: its `engine_ms` (the engine
 * reports it per request, its share of each decode step it was in, split by tokens; see
 * engine.h) × USD per hour / 3,600,000. Those shares add up to the engine's busy time, so
 * the requests of an hour of busy engine cost that hour; idle time is charged to nobody.
 * Known from the first request.
 *
 * When the engine does not report engine_ms (an older remote engine), and for routing and
 * `cost compare`, the TCO becomes a price per output token from the engine's measured
 * generation throughput (all slots together, over wall-clock time while it is busy, prompt
 * processing included — which is why input tokens are priced at 0):
 *
 *   USD per 1M output tokens = USD per hour / (tokens_per_s × 3600) × 1e6
 *
 * unknown until the engine has measured anything.
 *
 * A request's cost: (prompt − cached) × input + cached × cached_input + completion × output,
 * per 1M. Unknown price → unknown cost (never 0).
 *
 * Thread: any; pure functions.
 */
#ifndef STRATUS_COST_H
#define STRATUS_COST_H

#include <stdbool.h>

#include "config/config.h"

#define COST_HOURS_PER_MONTH 730.0 /* 8760 / 12: an average month */

struct usage {
    long long prompt, completion, cached; /* -1 when unknown */
    bool estimated; /* no provider/engine count: estimated from bytes and chunks */
};

/** USD per hour of a local backend's hardware and power. */
double cost_tco_per_hour(const struct tco_conf *t);

/** The price of target `t` now: its configured or catalogue price, else — for a local TCO
 *  target — from its backend's `tco` and measured output `tokens_per_s` (0: not measured).
 *  @return false when unknown. */
bool cost_target_price(const struct target_conf *t, const struct tco_conf *tco, double tokens_per_s,
                       struct price *out);

/** What a request that used `engine_ms` of engine time cost on target `t`, when `t` is
 *  priced by its backend's TCO (no `price:` of its own, `tco` set) and the engine reported
 *  its time (`engine_ms` >= 0; -1: not reported).
 *  @return false when that does not apply: price the request with cost_target_price. */
bool cost_engine_time_usd(const struct target_conf *t, const struct tco_conf *tco, double engine_ms,
                          double *usd);

/** USD for `u` at `p`; a negative count counts as 0. */
double cost_usd(const struct price *p, const struct usage *u);

struct tier_conf;

/** What a customer of `tier` is charged for a request (docs/tiers.md): per_request plus
 *  prompt × input + completion × output per 1M (cached prompt tokens at the full input
 *  price: the tier has no cached price). A failed request (`status` >= 400) is charged 0.
 *  @return false when it cannot be known: the tier prices tokens and the usage is unknown
 *  (`prompt` < 0). */
bool cost_tier_revenue(const struct tier_conf *tier, int status, long long prompt,
                       long long completion, double *usd);

#endif
