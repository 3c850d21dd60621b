/*
 * DESIGN: the router keeps its figures per routing target (model group × backend), while an
 * operator watching a dashboard asks "is this backend healthy": the table folds targets into
 * their backend with the pessimistic reading (worst breaker, slowest EWMA), so one bad route
 * is never averaged away. /admin/routes has the per-target detail.
 */
#include "api/backends.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/respond.h"
#include "api/status.h"
#include "app.h"
#include "generation.h"
#include "guard/guard.h"
#include "http/server.h"
#include "obs/metrics.h"
#include "providers/provider.h"
#include "route/router.h"

struct fold {
    enum route_breaker breaker;
    int targets, open, in_flight;
    double ewma_ms;
    uint64_t ok, failed, since_failure_ms;
    const char *last_error; /* borrowed from the router for this call */
};

static const char *breaker_name(enum route_breaker b)
{
    return b == ROUTE_BREAKER_OPEN ? "open" : b == ROUTE_BREAKER_HALF_OPEN ? "half-open" : "closed";
}

static int severity(enum route_breaker b)
{
    return b == ROUTE_BREAKER_OPEN ? 2 : b == ROUTE_BREAKER_HALF_OPEN ? 1 : 0;
}

static json_t *null_or(json_t *v)
{
    return v ? v : json_null();
}

static json_t *backend_json(struct app *app, const struct generation *g, size_t bi,
                            const struct fold *f)
{
    const struct backend *b = g->backends[bi];
    double p50 = 0, p95 = 0;
    uint64_t n = metrics_ttft(app->metrics, b->conf->name, &p50, &p95);
    json_t *ttft = n ? json_pack("{s:f, s:f, s:I}", "p50_ms", p50 * 1000, "p95_ms", p95 * 1000,
                                 "requests", (json_int_t)n)
                     : NULL;
    json_t *o = json_pack(
        "{s:s, s:s, s:b, s:o, s:s, s:i, s:i, s:o, s:i, s:I, s:I, s:o, s:o, s:o}", "name",
        b->conf->name, "type", backend_type_name(b->conf->type), "ready", b->ready, "reason",
        null_or(b->not_ready_reason[0] ? json_string(b->not_ready_reason) : NULL), "breaker",
        breaker_name(f->breaker), "targets", f->targets, "open_targets", f->open, "latency_ewma_ms",
        f->ewma_ms > 0 ? json_real(f->ewma_ms) : json_null(), "in_flight", f->in_flight, "ok",
        (json_int_t)f->ok, "failed", (json_int_t)f->failed, "last_error",
        null_or(f->last_error && f->last_error[0] ? json_string(f->last_error) : NULL), "ttft",
        null_or(ttft), "engine", null_or(status_engine_json(b)));
    return o;
}

void admin_backends(struct app *app, struct http_request *req, const struct principal *who)
{
    (void)who;
    const struct generation *g = app->gen; /* the one this request holds (api_handle) */
    const struct config *cfg = g->cfg;
    struct fold *folds = calloc(cfg->n_backends ? cfg->n_backends : 1, sizeof *folds);
    json_t *data = json_array();
    if (folds == NULL || data == NULL) goto oom;
    for (size_t i = 0; i < cfg->n_models; i++) {
        const struct model_conf *m = &cfg->models[i];
        for (size_t t = 0; t < m->n_targets; t++) {
            struct route_target_stats st;
            router_target_stats(g->router, m, t, &st);
            struct fold *f = &folds[m->targets[t].backend_index];
            f->targets++;
            f->open += st.breaker == ROUTE_BREAKER_OPEN;
            if (severity(st.breaker) > severity(f->breaker)) f->breaker = st.breaker;
            if (st.latency_ewma_ms > f->ewma_ms) f->ewma_ms = st.latency_ewma_ms;
            f->in_flight += st.in_flight;
            f->ok += st.ok;
            f->failed += st.failed;
            if (st.since_last_failure_ms &&
                (f->since_failure_ms == 0 || st.since_last_failure_ms < f->since_failure_ms)) {
                f->since_failure_ms = st.since_last_failure_ms;
                f->last_error = st.last_error;
            }
        }
    }
    for (size_t i = 0; i < cfg->n_backends; i++)
        if (json_array_append_new(data, backend_json(app, g, i, &folds[i])) != 0) goto oom;
    free(folds);
    api_respond_json(req, 200,
                     json_pack("{s:s, s:I, s:o}", "object", "list", "generation",
                               (json_int_t)g->number, "data", data));
    return;
oom:
    free(folds);
    json_decref(data);
    struct err e;
    err_oom(&e);
    api_log(req, e.status, e.msg);
    http_respond_error(req, &e);
}

static void budget_json(void *ud, const struct guard_budget *b)
{
    char when[32] = "";
    time_t t = (time_t)(b->resets_at_ms / 1000);
    struct tm tm;
    if (gmtime_r(&t, &tm)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    double remaining = b->limit_usd - b->used_usd;
    json_array_append_new(ud, json_pack("{s:s, s:s, s:s, s:f, s:f, s:f, s:s, s:I}", "scope",
                                        b->scope, "name", b->name, "period", b->period, "limit_usd",
                                        b->limit_usd, "used_usd", b->used_usd, "remaining_usd",
                                        remaining > 0 ? remaining : 0, "resets_at", when,
                                        "resets_at_ms", (json_int_t)b->resets_at_ms));
}

void admin_budgets(struct app *app, struct http_request *req, const struct principal *who)
{
    (void)who;
    json_t *data = json_array();
    if (data) guard_each_budget(app->guard, budget_json, data);
    api_respond_json(req, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}
