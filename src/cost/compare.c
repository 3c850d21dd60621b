/* DESIGN: one computation for the CLI and the admin API, so the dashboard's break-even and
 * `stratus cost compare` can never disagree. */
#include "cost/compare.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cost/cost.h"
#include "cost/prices.h"

double cost_parse_volume(const char *s)
{
    char *end = NULL;
    double v = strtod(s, &end);
    if (end == s || !(v > 0)) return -1;
    if (*end == 'k' || *end == 'K')
        v *= 1e3, end++;
    else if (*end == 'M' || *end == 'm')
        v *= 1e6, end++;
    else if (*end == 'B' || *end == 'b' || *end == 'G')
        v *= 1e9, end++;
    return *end == '\0' ? v : -1;
}

int cost_compare(const struct config *cfg, const struct cost_compare_query *q,
                 struct cost_compare *out, char *why, size_t why_size)
{
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < cfg->n_backends; i++)
        if (strcmp(cfg->backends[i].name, q->local) == 0) out->tco = &cfg->backends[i].tco;
    if (out->tco == NULL || !out->tco->set) { /* only self-hosted backends take cost: */
        snprintf(why, why_size,
                 "'%s' is not a local backend with cost: { watts, kwh_price, hardware_price, "
                 "lifetime_months } in %s",
                 q->local, cfg->path);
        return -1;
    }
    /* The cloud price: a configured target's (by alias or upstream name), else the catalogue. */
    struct price p = {0};
    for (size_t i = 0; i < cfg->n_models && !p.set; i++)
        for (size_t j = 0; j < cfg->models[i].n_targets && !p.set; j++) {
            const struct target_conf *t = &cfg->models[i].targets[j];
            if (cfg->backends[t->backend_index].tco.set || !t->price.set) continue;
            if (strcmp(cfg->models[i].name, q->model) == 0 || strcmp(t->model, q->model) == 0) {
                p = t->price;
                out->cloud_source = t->price.source == PRICE_CONFIG ? "config" : "catalogue";
            }
        }
    const struct model_price *mp = p.set ? NULL : prices_lookup(cfg->prices, q->model);
    if (mp) {
        p = (struct price){.set = true,
                           .source = PRICE_CATALOGUE,
                           .input = mp->input,
                           .output = mp->output,
                           .cached_input = mp->cached_input};
        out->cloud_source = "catalogue";
    }
    if (!p.set) {
        snprintf(why, why_size, "no price for '%s' in %s or the catalogue", q->model, cfg->path);
        return -1;
    }
    out->cloud = p;
    if (strcmp(out->cloud_source, "catalogue") == 0 && cfg->prices)
        out->catalogue_date = cfg->prices->date;
    double volume = q->tokens_per_month, share = q->output_share;
    struct usage month = {.prompt = (long long)(volume * (1 - share)),
                          .completion = (long long)(volume * share),
                          .cached = -1};
    out->cloud_usd_month = cost_usd(&p, &month);
    out->local_usd_hour = cost_tco_per_hour(out->tco);
    out->local_usd_month = out->local_usd_hour * COST_HOURS_PER_MONTH;
    double per_token = out->cloud_usd_month / volume; /* $ per token in the cloud */
    out->break_even_tokens = per_token > 0 ? out->local_usd_month / per_token : INFINITY;
    out->machines = 1;
    if (q->local_tokens_per_s > 0) {
        out->capacity_tokens_month = q->local_tokens_per_s * COST_HOURS_PER_MONTH * 3600;
        out->machines = (int)ceil(volume / out->capacity_tokens_month);
    }
    out->local_fleet_usd_month = out->machines * out->local_usd_month;
    out->local_cheaper = out->local_fleet_usd_month < out->cloud_usd_month;
    return 0;
}
