/*
 * DESIGN: each policy is a function filling a plan from the model group; the router looks
 * the policy up once per request. Stateful policies will keep per-target state in
 * `struct router` (indexed by model and target), which router_report feeds.
 */
#include "route/router.h"

#include <stdlib.h>

struct router {
    const struct config *cfg;
    uint64_t reports; /* outcomes seen; per-target health arrives with the stateful policies */
};

typedef int (*policy_plan_fn)(struct router *r, const struct model_conf *m,
                              struct route_plan *plan);

static int plan_priority(struct router *r, const struct model_conf *m, struct route_plan *plan)
{
    (void)r;
    for (size_t i = 0; i < m->n_targets; i++) plan->order[i] = i;
    plan->n = m->n_targets;
    plan->policy = "priority";
    plan->reason = "configured order";
    return 0;
}

static policy_plan_fn policy_for(enum route_policy p)
{
    switch (p) {
    case ROUTE_PRIORITY:
        return plan_priority;
    }
    return NULL;
}

struct router *router_new(const struct config *cfg, struct err *err)
{
    struct router *r = calloc(1, sizeof *r);
    if (r == NULL) {
        err_oom(err);
        return NULL;
    }
    r->cfg = cfg;
    return r;
}

int router_plan(struct router *r, const struct model_conf *model, struct route_plan *plan,
                struct err *err)
{
    policy_plan_fn fn = policy_for(model->route);
    if (fn == NULL)
        return err_set(err, 500, "server_error", NULL, "model '%s': unknown route policy",
                       model->name);
    if (fn(r, model, plan) != 0 || plan->n == 0)
        return err_set(err, 503, "upstream_error", "no_target",
                       "model '%s' has no target available", model->name);
    return 0;
}

void router_report(struct router *r, const struct model_conf *model, size_t target,
                   enum route_outcome outcome, uint64_t latency_us)
{
    (void)model;
    (void)target;
    (void)outcome;
    (void)latency_us;
    r->reports++;
}

void router_free(struct router *r)
{
    free(r);
}
