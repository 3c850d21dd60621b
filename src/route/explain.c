/*
 * DESIGN: explain builds the same runtime pieces the gateway builds (backends, router), so
 * what it prints is what the router decides, not a re-implementation of it. Probes are
 * blocking curl easy calls: a CLI has nothing else to do meanwhile.
 */
#include "route/explain.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

#include "providers/provider.h"
#include "route/router.h"
#include "util/clock.h"

/* Fills b->ready / not_ready_reason; sets b->probed only for what it can judge exactly. */
static void probe(struct backend *b, long timeout_ms)
{
    const struct backend_conf *c = b->conf;
    if (b->ops->inspect) {
        b->probed = b->ops->inspect(b);
        return;
    }
    CURL *e = curl_easy_init();
    if (e == NULL) {
        snprintf(b->not_ready_reason, sizeof b->not_ready_reason, "cannot probe (no memory)");
        return;
    }
    uint64_t t0 = clock_now_ns();
    curl_easy_setopt(e, CURLOPT_URL, c->base_url);
    curl_easy_setopt(e, CURLOPT_CONNECT_ONLY, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(e);
    double ms = (double)(clock_now_ns() - t0) / 1e6;
    b->ready = rc == CURLE_OK;
    if (b->ready)
        snprintf(b->not_ready_reason, sizeof b->not_ready_reason, "reachable (%.0f ms)", ms);
    else
        snprintf(b->not_ready_reason, sizeof b->not_ready_reason, "unreachable: %s",
                 curl_easy_strerror(rc));
    curl_easy_cleanup(e);
}

void route_explain_print_head(FILE *out, const struct explain_head *h)
{
    fprintf(out, "model '%s': route %s, %zu target%s\n", h->model, h->policy, h->n_targets,
            h->n_targets == 1 ? "" : "s");
    fprintf(out,
            "  retries %d (backoff %ld ms, cap %ld ms); breaker: %d failures in %ld ms → "
            "cooldown %ld ms\n",
            h->retries, h->backoff_ms, h->max_backoff_ms, h->failures, h->window_ms,
            h->cooldown_ms);
    fprintf(out, "  request: %s, ~%ld prompt tokens, %ld output tokens\n\n", h->endpoint_path,
            h->prompt_tokens, h->output_tokens);
    fprintf(out, "  %-4s %-24s %-22s %-9s %-44s %s\n", "plan", "target", "backend", "breaker",
            "health", "score");
}

void route_explain_print_line(FILE *out, const struct explain_line *l)
{
    char rank[16], bname[96];
    if (l->rank)
        snprintf(rank, sizeof rank, "%d", l->rank);
    else
        snprintf(rank, sizeof rank, "-");
    snprintf(bname, sizeof bname, "%s (%s)", l->backend, l->type);
    fprintf(out, "  %-4s %-24s %-22s %-9s %-44s %s%s%s\n", rank, l->target, bname, l->state,
            l->health, l->score, l->skipped ? " — skipped: " : "", l->skipped ? l->skipped : "");
}

void route_explain_print_plan(FILE *out, const char *const *backends, const char *const *models,
                              size_t n, const char *policy, const char *reason)
{
    if (n == 0) return;
    fprintf(out, "\nchosen: %s / %s\nwhy: %s; %s\n", backends[0], models[0], policy, reason);
    if (n > 1) {
        fprintf(out, "failover order:");
        for (size_t i = 1; i < n; i++)
            fprintf(out, "%s %s/%s", i > 1 ? "," : "", backends[i], models[i]);
        fprintf(out, "\n");
    }
}

int route_explain(const struct config *cfg, const struct explain_opts *o, FILE *out, FILE *err_out)
{
    const struct model_conf *m = config_find_model(cfg, o->model);
    if (m == NULL) {
        fprintf(err_out, "stratus route explain: no model '%s' in %s (models:", o->model,
                cfg->path);
        for (size_t i = 0; i < cfg->n_models; i++)
            fprintf(err_out, "%s %s", i ? "," : "", cfg->models[i].name);
        fprintf(err_out, ")\n");
        return 2;
    }
    int rc = 2;
    struct err e;
    err_clear(&e);
    struct backend *backends = calloc(cfg->n_backends ? cfg->n_backends : 1, sizeof *backends);
    struct backend **table = calloc(cfg->n_backends ? cfg->n_backends : 1, sizeof *table);
    size_t n_init = 0;
    struct router *r = NULL;
    size_t *order = calloc(m->n_targets, sizeof *order);
    struct route_explain_row *rows = calloc(m->n_targets, sizeof *rows);
    const char **names = calloc(m->n_targets, sizeof *names),
               **models = calloc(m->n_targets, sizeof *models);
    if (backends == NULL || table == NULL || order == NULL || rows == NULL || names == NULL ||
        models == NULL)
        goto out;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    for (; n_init < cfg->n_backends; n_init++) {
        table[n_init] = &backends[n_init];
        if (backend_init(&backends[n_init], &cfg->backends[n_init], &e) != 0) {
            fprintf(err_out, "stratus route explain: %s\n", e.msg);
            goto out;
        }
    }
    /* Probe only the backends this group uses. */
    for (size_t i = 0; i < m->n_targets; i++) {
        struct backend *b = &backends[m->targets[i].backend_index];
        if (b->not_ready_reason[0] == '\0' || strcmp(b->not_ready_reason, "not probed yet") == 0)
            probe(b, o->probe_timeout_ms > 0 ? o->probe_timeout_ms : 2000);
    }
    if ((r = router_new(cfg, table, &e)) == NULL) goto out;
    struct route_request rq = {
        .endpoint = o->endpoint,
        .prompt_tokens = o->prompt_tokens > 0 ? o->prompt_tokens : 1000,
        .output_tokens = o->max_tokens > 0 ? o->max_tokens : m->expected_output_tokens,
    };
    struct route_plan plan = {.order = order};
    if (router_explain(r, m, &rq, &plan, rows, &e) != 0) {
        fprintf(err_out, "stratus route explain: %s\n", e.msg);
        goto out;
    }
    struct explain_head head = {.model = m->name,
                                .policy = route_policy_name(m->route),
                                .n_targets = m->n_targets,
                                .retries = m->retry.retries,
                                .failures = m->cooldown.failures,
                                .backoff_ms = m->retry.backoff_ms,
                                .max_backoff_ms = m->retry.max_backoff_ms,
                                .window_ms = m->cooldown.window_ms,
                                .cooldown_ms = m->cooldown.duration_ms,
                                .endpoint_path = openai_endpoint_path(o->endpoint),
                                .prompt_tokens = rq.prompt_tokens,
                                .output_tokens = rq.output_tokens};
    route_explain_print_head(out, &head);
    for (size_t i = 0; i < m->n_targets; i++) {
        const struct route_explain_row *row = &rows[i];
        const struct target_conf *t = &m->targets[row->target];
        const struct backend *b = &backends[t->backend_index];
        struct explain_line line = {.rank = row->rank,
                                    .target = t->model,
                                    .backend = b->conf->name,
                                    .type = backend_type_name(b->conf->type),
                                    .state = row->state,
                                    .health = b->not_ready_reason,
                                    .score = row->score,
                                    .skipped = row->skipped};
        route_explain_print_line(out, &line);
    }
    for (size_t i = 0; i < plan.n; i++) {
        names[i] = backends[m->targets[plan.order[i]].backend_index].conf->name;
        models[i] = m->targets[plan.order[i]].model;
    }
    route_explain_print_plan(out, names, models, plan.n, plan.policy, plan.reason);
    const struct backend *cb = &backends[m->targets[plan.order[0]].backend_index];
    if (!cb->ready && !backend_self_hosted(cb))
        fprintf(out, "note: %s is %s now; a request would fail over\n", cb->conf->name,
                cb->not_ready_reason);
    rc = 0;
out:
    if (rc != 0 && e.msg[0] == '\0') fprintf(err_out, "stratus route explain: out of memory\n");
    router_free(r);
    for (size_t i = 0; i < n_init; i++) backend_destroy(&backends[i]);
    free(backends);
    free(table);
    free(order);
    free(rows);
    free(names);
    free(models);
    curl_global_cleanup();
    return rc;
}
