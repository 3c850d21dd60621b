/*
 * cost/compare — cloud against local: what a month of tokens costs at a cloud price (the
 * config's or the catalogue's) and on one self-hosted machine (its TCO: power plus the
 * hardware written off), and the monthly volume where the two meet.
 *
 *   cloud USD/month = volume × ((1 − output_share) × input + output_share × output) / 1M
 *   local USD/month = USD per hour (cost.h) × 730 (the machine on around the clock)
 *   break-even      = local USD/month ÷ cloud USD per token: above it the machine is cheaper
 *
 * With a measured (or given) throughput it also says how many machines that volume needs
 * and what they cost. `stratus cost compare` prints it; GET /admin/cost/compare answers it.
 * Thread: any; pure functions over a config the caller holds.
 */
#ifndef STRATUS_COST_COMPARE_H
#define STRATUS_COST_COMPARE_H

#include <stdbool.h>

#include "config/config.h"

struct cost_compare_query {
    const char *model;         /* a model group, a target's model or a catalogue name */
    const char *local;         /* a backend with `cost:` */
    double tokens_per_month;   /* > 0 */
    double output_share;       /* 0..1: the share of the volume that is output tokens */
    double local_tokens_per_s; /* one machine's throughput; 0: capacity not checked */
};

struct cost_compare {
    struct price cloud;         /* the cloud price used */
    const char *cloud_source;   /* "config" or "catalogue" (static) */
    const char *catalogue_date; /* borrowed from the config's catalogue; NULL if not from it */
    const struct tco_conf *tco; /* borrowed from the config */
    double cloud_usd_month, local_usd_hour, local_usd_month, break_even_tokens;
    double capacity_tokens_month; /* one machine's, when local_tokens_per_s > 0; else 0 */
    int machines;                 /* needed for the volume; 1 when capacity is not checked */
    double local_fleet_usd_month; /* machines × local_usd_month */
    bool local_cheaper;
};

/** Fills `out`. @return 0, or -1 with `why` (the local backend has no `cost:`, no price for
 *  the model anywhere). */
int cost_compare(const struct config *cfg, const struct cost_compare_query *q,
                 struct cost_compare *out, char *why, size_t why_size);

/** "100M", "2.5B", "750k", "1000000" → tokens; -1 when it is not a positive volume. */
double cost_parse_volume(const char *s);

#endif
