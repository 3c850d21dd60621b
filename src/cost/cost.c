/* DESIGN: pure arithmetic over config, engine time and a measured throughput; see cost.h. */
#include "cost/cost.h"

double cost_tco_per_hour(const struct tco_conf *t)
{
    return t->watts / 1000.0 * t->kwh_price +
           t->hardware_price / (t->lifetime_months * COST_HOURS_PER_MONTH);
}

bool cost_target_price(const struct target_conf *t, const struct tco_conf *tco, double tokens_per_s,
                       struct price *out)
{
    if (t->price.set) {
        *out = t->price;
        return true;
    }
    if (t->price.source == PRICE_LOCAL_TCO && tco && tco->set && tokens_per_s > 0) {
        double per_million = cost_tco_per_hour(tco) / (tokens_per_s * 3600.0) * 1e6;
        *out = (struct price){.set = true,
                              .source = PRICE_LOCAL_TCO,
                              .input = 0,
                              .output = per_million,
                              .cached_input = 0};
        return true;
    }
    *out = (struct price){.source = t->price.source};
    return false;
}

bool cost_engine_time_usd(const struct target_conf *t, const struct tco_conf *tco, double engine_ms,
                          double *usd)
{
    if (t->price.set || t->price.source != PRICE_LOCAL_TCO || tco == NULL || !tco->set ||
        engine_ms < 0)
        return false;
    *usd = engine_ms / 3.6e6 * cost_tco_per_hour(tco);
    return true;
}

bool cost_tier_revenue(const struct tier_conf *tier, int status, long long prompt,
                       long long completion, double *usd)
{
    *usd = 0;
    if (status >= 400) return true; /* a customer is not charged for an error */
    if (tier->token_price_set && prompt < 0) return false;
    double tokens = 0;
    if (tier->token_price_set)
        tokens = ((double)prompt * tier->price_input +
                  (double)(completion > 0 ? completion : 0) * tier->price_output) /
                 1e6;
    *usd = tier->price_per_request + tokens;
    return true;
}

double cost_usd(const struct price *p, const struct usage *u)
{
    double prompt = u->prompt > 0 ? (double)u->prompt : 0;
    double cached = u->cached > 0 ? (double)u->cached : 0;
    double completion = u->completion > 0 ? (double)u->completion : 0;
    if (cached > prompt) cached = prompt;
    return ((prompt - cached) * p->input + cached * p->cached_input + completion * p->output) / 1e6;
}
