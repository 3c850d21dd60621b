/*
 * DESIGN: the answer is built on the loop from state the loop owns (router, backends), in
 * one pass over the groups; nothing here waits on anything. The plan comes from
 * router_explain, the same code that routes requests, so what this shows is what the next
 * request gets, not a re-telling of the policy. Parameters are checked strictly: an admin
 * tool that silently ignores a misspelt `prompt_token` shows a plan for something else.
 */
#include "api/routes.h"

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "api/respond.h"
#include "api/status.h"
#include "app.h"
#include "cost/cost.h"
#include "generation.h"
#include "http/server.h"
#include "providers/provider.h"
#include "route/router.h"

static void fail(struct http_request *req, const struct err *e)
{
    api_log(req, e->status, e->msg);
    http_respond_error(req, e);
}

static const char *breaker_name(enum route_breaker b)
{
    return b == ROUTE_BREAKER_OPEN ? "open" : b == ROUTE_BREAKER_HALF_OPEN ? "half-open" : "closed";
}

static const char *price_source_name(enum price_source s)
{
    switch (s) {
    case PRICE_CONFIG:
        return "config";
    case PRICE_CATALOGUE:
        return "catalogue";
    case PRICE_LOCAL_TCO:
        return "local_tco";
    case PRICE_UNKNOWN:
        break;
    }
    return "unknown";
}

/* A JSON string, or null for "" (and for text that is not UTF-8, which jansson refuses). */
static json_t *text_or_null(const char *s)
{
    json_t *v = s && s[0] ? json_string(s) : NULL;
    return v ? v : json_null();
}

static json_t *target_json(const struct generation *g, const struct model_conf *m, size_t i,
                           const struct route_explain_row *row)
{
    const struct target_conf *t = &m->targets[i];
    const struct backend *b = g->backends[t->backend_index];
    struct route_target_stats st;
    router_target_stats(g->router, m, i, &st);
    json_t *o = json_pack(
        "{s:I, s:s, s:s, s:s, s:s, s:s, s:I, s:o, s:i, s:I, s:I, s:I, s:o, s:o, s:b, s:o}", "index",
        (json_int_t)i, "backend", b->conf->name, "type", backend_type_name(b->conf->type), "model",
        t->model, "breaker", breaker_name(st.breaker), "state", row ? row->state : "ok",
        "cooldown_left_ms", (json_int_t)st.cooldown_left_ms, "latency_ewma_ms",
        st.latency_ewma_ms > 0 ? json_real(st.latency_ewma_ms) : json_null(), "in_flight",
        st.in_flight, "ok", (json_int_t)st.ok, "failed", (json_int_t)st.failed, "rejected",
        (json_int_t)st.rejected, "last_error", text_or_null(st.last_error), "since_last_failure_ms",
        st.since_last_failure_ms ? json_integer((json_int_t)st.since_last_failure_ms) : json_null(),
        "ready", b->ready, "reason", text_or_null(b->not_ready_reason));
    if (o == NULL) return NULL;
    json_t *engine = status_engine_json(b);
    json_object_set_new(o, "engine", engine ? engine : json_null());
    struct price p;
    bool known = cost_target_price(t, &b->conf->tco, backend_tokens_per_s(b), &p);
    json_object_set_new(o, "price",
                        json_pack("{s:o, s:o, s:s}", "input",
                                  known ? json_real(p.input) : json_null(), "output",
                                  known ? json_real(p.output) : json_null(), "source",
                                  price_source_name(p.source)));
    json_object_set_new(o, "rank", row && row->rank ? json_integer(row->rank) : json_null());
    json_object_set_new(o, "score", text_or_null(row ? row->score : NULL));
    json_object_set_new(o, "skipped", text_or_null(row ? row->skipped : NULL));
    return o;
}

static json_t *model_json(struct generation *g, const struct model_conf *m,
                          const struct route_request *base, size_t *order,
                          struct route_explain_row *rows)
{
    struct route_request rq = *base;
    if (rq.output_tokens <= 0) rq.output_tokens = m->expected_output_tokens;
    struct route_plan plan = {.order = order};
    struct err e;
    err_clear(&e);
    bool planned = router_explain(g->router, m, &rq, &plan, rows, &e) == 0;
    json_t *o = json_pack("{s:s, s:s, s:I, s:{s:i, s:I, s:I}, s:{s:i, s:I, s:I, s:I}}", "name",
                          m->name, "route", route_policy_name(m->route), "output_tokens",
                          (json_int_t)rq.output_tokens, "retry", "retries", m->retry.retries,
                          "backoff_ms", (json_int_t)m->retry.backoff_ms, "max_backoff_ms",
                          (json_int_t)m->retry.max_backoff_ms, "breaker", "failures",
                          m->cooldown.failures, "window_ms", (json_int_t)m->cooldown.window_ms,
                          "cooldown_ms", (json_int_t)m->cooldown.duration_ms, "max_cooldown_ms",
                          (json_int_t)m->cooldown.max_duration_ms);
    json_t *targets = json_array(), *list = json_array();
    if (o == NULL || targets == NULL || list == NULL) goto oom;
    /* router_explain fills rows even when it refuses the plan (every target skipped). */
    for (size_t i = 0; i < m->n_targets; i++)
        if (json_array_append_new(targets, target_json(g, m, i, &rows[i])) != 0) goto oom;
    for (size_t i = 0; planned && i < plan.n; i++) {
        const struct target_conf *t = &m->targets[plan.order[i]];
        if (json_array_append_new(list, json_pack("{s:i, s:I, s:s, s:s}", "rank", (int)i + 1,
                                                  "target", (json_int_t)plan.order[i], "backend",
                                                  g->backends[t->backend_index]->conf->name,
                                                  "model", t->model)) != 0)
            goto oom;
    }
    json_object_set_new(o, "targets", targets);
    json_object_set_new(o, "plan", list);
    if (planned) {
        json_object_set_new(o, "policy", json_string(plan.policy));
        json_object_set_new(o, "reason", text_or_null(plan.reason));
    } else {
        json_object_set_new(
            o, "plan_error",
            json_pack("{s:i, s:s?, s:s}", "status", e.status, "code", e.code, "message", e.msg));
    }
    return o;
oom:
    json_decref(o);
    json_decref(targets);
    json_decref(list);
    return NULL;
}

/* "1000" → 1000; -1 for anything that is not a positive integer of sane size. */
static long positive(const char *v)
{
    char *end = NULL;
    long n = strtol(v, &end, 10);
    return v[0] && end && *end == '\0' && n > 0 && n <= 100000000 ? n : -1;
}

/* Reads the query into `model` (borrowed from `q`) and `rq`. @return 0, or -1 with `e`. */
static int read_query(struct evkeyvalq *q, const char **model, struct route_request *rq,
                      struct err *e)
{
    for (struct evkeyval *kv = q->tqh_first; kv; kv = kv->next.tqe_next) {
        const char *k = kv->key, *v = kv->value;
        if (strcmp(k, "model") == 0) {
            *model = v;
        } else if (strcmp(k, "endpoint") == 0) {
            if (strcmp(v, "chat") == 0)
                rq->endpoint = OPENAI_CHAT;
            else if (strcmp(v, "completions") == 0)
                rq->endpoint = OPENAI_COMPLETIONS;
            else if (strcmp(v, "embeddings") == 0)
                rq->endpoint = OPENAI_EMBEDDINGS;
            else
                return err_param(e, 400, "endpoint",
                                 "endpoint must be chat, completions or embeddings (got '%.64s')",
                                 v);
        } else if (strcmp(k, "prompt_tokens") == 0 || strcmp(k, "max_tokens") == 0) {
            long n = positive(v);
            bool prompt = k[0] == 'p';
            if (n < 0)
                return err_param(e, 400, prompt ? "prompt_tokens" : "max_tokens",
                                 "%s must be a positive integer (got '%.64s')", k, v);
            if (prompt)
                rq->prompt_tokens = n;
            else
                rq->output_tokens = n;
        } else {
            return err_set(e, 400, "invalid_request_error", "invalid_query",
                           "unknown parameter '%.64s': GET /admin/routes takes model, endpoint, "
                           "prompt_tokens and max_tokens",
                           k);
        }
    }
    return 0;
}

void admin_routes(struct app *app, struct http_request *req, const struct principal *who)
{
    (void)who;
    struct generation *g = app->gen; /* the one this request holds (api_handle) */
    const struct config *cfg = g->cfg;
    struct err e;
    err_clear(&e);
    struct evkeyvalq q; /* initialised by the parser, even for "" */
    if (evhttp_parse_query_str(req->query ? req->query : "", &q) != 0) {
        err_set(&e, 400, "invalid_request_error", "invalid_query",
                "malformed query string: use model=…&endpoint=…&prompt_tokens=…&max_tokens=…");
        fail(req, &e);
        return;
    }
    const char *name = NULL;
    struct route_request rq = {.endpoint = OPENAI_CHAT, .prompt_tokens = 1000};
    const struct model_conf *only = NULL;
    size_t most = 1;
    json_t *models = NULL, *doc = NULL;
    size_t *order = NULL;
    struct route_explain_row *rows = NULL;
    if (read_query(&q, &name, &rq, &e) != 0) goto out;
    if (name && (only = config_find_model(cfg, name)) == NULL) {
        err_set(&e, 404, "invalid_request_error", "model_not_found",
                "no model group '%.100s' in the running config (GET /v1/models lists them)", name);
        goto out;
    }
    for (size_t i = 0; i < cfg->n_models; i++)
        if (cfg->models[i].n_targets > most) most = cfg->models[i].n_targets;
    order = calloc(most, sizeof *order);
    rows = calloc(most, sizeof *rows);
    models = json_array();
    if (order == NULL || rows == NULL || models == NULL) goto oom;
    for (size_t i = 0; i < cfg->n_models; i++) {
        const struct model_conf *m = &cfg->models[i];
        if (only && m != only) continue;
        if (json_array_append_new(models, model_json(g, m, &rq, order, rows)) != 0) goto oom;
    }
    doc = json_pack("{s:s, s:I, s:{s:s, s:I}, s:O}", "object", "routes", "generation",
                    (json_int_t)g->number, "request", "endpoint", openai_endpoint_path(rq.endpoint),
                    "prompt_tokens", (json_int_t)rq.prompt_tokens, "models", models);
    if (doc == NULL) goto oom;
    goto out;
oom:
    err_oom(&e);
out:
    evhttp_clear_headers(&q);
    json_decref(models);
    free(order);
    free(rows);
    if (e.status)
        fail(req, &e);
    else
        api_respond_json(req, 200, doc);
}
