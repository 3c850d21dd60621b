/*
 * DESIGN: without a pair the answer is every (model group with a priced cloud target, local
 * backend) pair of the running config, so the dashboard needs no second call to learn what
 * can be compared.
 * A live engine's measured throughput is the default capacity: the figure the local price
 * itself is computed from (cost.h).
 */
#include "api/compare.h"

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "api/respond.h"
#include "app.h"
#include "cost/compare.h"
#include "generation.h"
#include "http/server.h"
#include "providers/provider.h"

static json_t *pair_json(const struct cost_compare_query *q, const struct cost_compare *c)
{
    const struct tco_conf *t = c->tco;
    return json_pack(
        "{s:s, s:s, s:{s:f, s:f, s:f, s:s, s:o}, s:{s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:i, "
        "s:f}, s:o, s:s}",
        "model", q->model, "local", q->local, "cloud", "usd_month", c->cloud_usd_month, "input",
        c->cloud.input, "output", c->cloud.output, "source", c->cloud_source, "catalogue_date",
        c->catalogue_date ? json_string(c->catalogue_date) : json_null(), "local_cost", "usd_month",
        c->local_usd_month, "usd_hour", c->local_usd_hour, "watts", t->watts, "kwh_price",
        t->kwh_price, "hardware_price", t->hardware_price, "lifetime_months", t->lifetime_months,
        "tokens_per_s", q->local_tokens_per_s, "capacity_tokens_month", c->capacity_tokens_month,
        "machines", c->machines, "fleet_usd_month", c->local_fleet_usd_month,
        "break_even_tokens_month",
        isfinite(c->break_even_tokens) ? json_real(c->break_even_tokens) : json_null(), "cheaper",
        c->local_cheaper ? "local" : "cloud");
}

/* Compares one pair into `data`; the local default throughput is its engine's. */
static int add_pair(const struct generation *g, struct cost_compare_query q, double tps_given,
                    json_t *data, struct err *e)
{
    q.local_tokens_per_s = tps_given;
    for (size_t i = 0; tps_given < 0 && i < g->cfg->n_backends; i++)
        if (strcmp(g->cfg->backends[i].name, q.local) == 0)
            q.local_tokens_per_s = backend_tokens_per_s(g->backends[i]);
    if (q.local_tokens_per_s < 0) q.local_tokens_per_s = 0;
    struct cost_compare c;
    char why[400];
    if (cost_compare(g->cfg, &q, &c, why, sizeof why) != 0)
        return err_set(e, 400, "invalid_request_error", "cannot_compare", "%s", why);
    if (json_array_append_new(data, pair_json(&q, &c)) != 0) return err_oom(e), -1;
    return 0;
}

/* Whether model group `m` has a priced cloud target (one cost/compare can price). */
static bool priced_in_cloud(const struct config *cfg, const struct model_conf *m)
{
    for (size_t j = 0; j < m->n_targets; j++)
        if (!cfg->backends[m->targets[j].backend_index].tco.set && m->targets[j].price.set)
            return true;
    return false;
}

void admin_cost_compare(struct app *app, struct http_request *req, const struct principal *who)
{
    (void)who;
    const struct generation *g = app->gen; /* the one this request holds (api_handle) */
    const struct config *cfg = g->cfg;
    struct err e;
    err_clear(&e);
    json_t *data = json_array();
    struct cost_compare_query q = {.tokens_per_month = 100e6, .output_share = 0.25};
    double tps = -1;     /* -1: the engine's measured throughput */
    struct evkeyvalq qs; /* initialised by the parser, even for "" */
    if (evhttp_parse_query_str(req->query ? req->query : "", &qs) != 0) {
        err_set(&e, 400, "invalid_request_error", "invalid_query",
                "malformed query string: use tokens_per_month=…&model=…&local=…");
        goto out;
    }
    for (struct evkeyval *kv = qs.tqh_first; kv; kv = kv->next.tqe_next) {
        const char *k = kv->key, *v = kv->value;
        char *end = NULL;
        if (strcmp(k, "model") == 0) {
            q.model = v;
        } else if (strcmp(k, "local") == 0) {
            q.local = v;
        } else if (strcmp(k, "tokens_per_month") == 0) {
            if ((q.tokens_per_month = cost_parse_volume(v)) <= 0) {
                err_param(&e, 400, k,
                          "tokens_per_month must be a volume such as 100M, 750k or "
                          "2.5B (got '%.64s')",
                          v);
                break;
            }
        } else if (strcmp(k, "output_share") == 0) {
            q.output_share = strtod(v, &end);
            if (end == v || *end || !(q.output_share >= 0 && q.output_share <= 1)) {
                err_param(&e, 400, k, "output_share must be a number from 0 to 1 (got '%.64s')", v);
                break;
            }
        } else if (strcmp(k, "local_tokens_per_s") == 0) {
            tps = strtod(v, &end);
            if (end == v || *end || !(tps >= 0)) {
                err_param(&e, 400, k, "local_tokens_per_s must be a number >= 0 (got '%.64s')", v);
                break;
            }
        } else {
            err_set(&e, 400, "invalid_request_error", "invalid_query",
                    "unknown parameter '%.64s': GET /admin/cost/compare takes tokens_per_month, "
                    "output_share, model, local and local_tokens_per_s",
                    k);
            break;
        }
    }
    if (e.status) goto out;
    if (data == NULL) {
        err_oom(&e);
        goto out;
    }
    if ((q.model == NULL) != (q.local == NULL)) {
        err_set(&e, 400, "invalid_request_error", "invalid_query",
                "give both model and local (one pair), or neither (every pair)");
    } else if (q.model) {
        add_pair(g, q, tps, data, &e);
    } else {
        for (size_t b = 0; b < cfg->n_backends && !e.status; b++) {
            if (!cfg->backends[b].tco.set) continue;
            q.local = cfg->backends[b].name;
            for (size_t i = 0; i < cfg->n_models && !e.status; i++) {
                if (!priced_in_cloud(cfg, &cfg->models[i])) continue;
                q.model = cfg->models[i].name; /* priced as its first priced cloud target */
                add_pair(g, q, tps, data, &e);
            }
        }
    }
out:
    evhttp_clear_headers(&qs);
    if (e.status) {
        json_decref(data);
        api_log(req, e.status, e.msg);
        http_respond_error(req, &e);
        return;
    }
    api_respond_json(req, 200,
                     json_pack("{s:s, s:f, s:f, s:o}", "object", "cost_comparison",
                               "tokens_per_month", q.tokens_per_month, "output_share",
                               q.output_share, "data", data));
}
