/*
 * DESIGN: holds are plain counters (one thread). The app holds the current generation;
 * api_handle adds a hold per request through the request arena's cleanup, the daemon one
 * per probe out. A backend's holds count the generations listing it, so a backend left out
 * of a new config lives until the last request of the old one ends.
 */
#include "generation.h"

#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "engine/supervisor.h"
#include "guard/content.h"
#include "guard/deny.h"
#include "http/server.h"
#include "obs/log.h"
#include "providers/provider.h"
#include "route/router.h"
#include "util/arena.h"

static void backend_hold(struct backend *b)
{
    b->holds++;
}

/* The last holder stops the backend's worker, if any, and frees it. */
static void backend_release(struct app *app, struct backend *b)
{
    if (b == NULL || --b->holds > 0) return;
    if (b->ops && b->ops->supervised) supervisor_remove(app->supervisor, b);
    backend_destroy(b);
    free(b);
}

/* The backend of `prev` this configured backend can be, or NULL. A supervised backend is
 * shared when its worker would be started the same way; any other is built again. */
static struct backend *shareable(const struct generation *prev, const struct backend_conf *c)
{
    if (prev == NULL) return NULL;
    for (size_t i = 0; i < prev->cfg->n_backends; i++) {
        struct backend *b = prev->backends[i];
        if (strcmp(b->conf->name, c->name) != 0 || b->conf->type != c->type) continue;
        return b->ops->supervised && supervisor_same_worker(b->conf, c) ? b : NULL;
    }
    return NULL;
}

/* A rebuilt remote backend keeps what its predecessor's probes found until its own report,
 * so /ready and the router do not see it flicker through "not probed yet". */
static void carry_probe_state(const struct generation *prev, struct backend *b)
{
    if (prev == NULL || b->ops->supervised) return;
    for (size_t i = 0; i < prev->cfg->n_backends; i++) {
        const struct backend *o = prev->backends[i];
        if (strcmp(o->conf->name, b->conf->name) != 0 || o->conf->type != b->conf->type ||
            strcmp(o->conf->base_url, b->conf->base_url) != 0)
            continue;
        b->ready = o->ready;
        b->probed = o->probed;
        b->load = o->load;
        memcpy(b->not_ready_reason, o->not_ready_reason, sizeof b->not_ready_reason);
        return;
    }
}

/* Said at every build, so a reload that adds such a rule says so too. */
static void log_unfiltered_rules(const struct content_guard *g, const struct guards_conf *c)
{
    const struct deny *d = content_guard_deny(g);
    for (size_t i = 0; d && i < deny_n_unfiltered(d); i++) {
        struct log_line l;
        const char *why;
        size_t r = deny_unfiltered(d, i, &why);
        log_begin(&l, "warn", "guard_rule_unfiltered");
        log_str(&l, "rule", c->deny[r].name);
        log_str(&l, "reason", why);
        log_str(&l, "message",
                "Hyperscan cannot prefilter this deny rule: its PCRE2 pattern runs over "
                "every text");
        log_end(&l);
    }
}

static void generation_free(struct app *app, struct generation *g)
{
    if (g == NULL) return;
    router_free(g->router);
    content_guard_free(g->content);
    if (g->backends)
        for (size_t i = 0; i < g->cfg->n_backends; i++)
            if (g->backends[i]) backend_release(app, g->backends[i]);
    free(g->backends);
    free(g->fresh);
    if (g->owns_cfg) config_free(g->cfg);
    free(g);
}

struct generation *generation_build(struct app *app, struct config *cfg, bool owns_cfg,
                                    const struct generation *prev, struct err *err)
{
    struct generation *g = calloc(1, sizeof *g);
    if (g == NULL) {
        if (owns_cfg) config_free(cfg);
        err_oom(err);
        return NULL;
    }
    g->cfg = cfg;
    g->owns_cfg = owns_cfg;
    g->holds = 1;
    g->number = prev ? prev->number + 1 : 1;
    size_t n = cfg->n_backends ? cfg->n_backends : 1;
    g->backends = calloc(n, sizeof *g->backends);
    g->fresh = calloc(n, sizeof *g->fresh);
    if (g->backends == NULL || g->fresh == NULL) goto oom;
    for (size_t i = 0; i < cfg->n_backends; i++) {
        struct backend *b = shareable(prev, &cfg->backends[i]);
        if (b == NULL) {
            if ((b = calloc(1, sizeof *b)) == NULL) goto oom;
            if (backend_init(b, &cfg->backends[i], err) != 0) {
                backend_destroy(b);
                free(b);
                goto fail;
            }
            carry_probe_state(prev, b);
            g->fresh[i] = true;
        }
        backend_hold(b);
        g->backends[i] = b;
    }
    if ((g->router = router_new(cfg, g->backends, err)) == NULL) goto fail;
    if (prev) router_inherit(g->router, prev->router);
    if ((g->content = content_guard_new(&cfg->guards, err)) == NULL) goto fail;
    log_unfiltered_rules(g->content, &cfg->guards);
    g->call_env = (struct call_env){.loop = app->loop,
                                    .router = g->router,
                                    .transport = &call_transport_upstream,
                                    .transport_ctx = app->upstream,
                                    .backends = g->backends,
                                    .cfg = cfg,
                                    .buffered_bytes = &app->buffered_bytes};
    return g;
oom:
    err_oom(err);
fail:
    /* Fresh backends of a failed build were never supervised: releasing frees them. */
    generation_free(app, g);
    return NULL;
}

int generation_start(struct app *app, struct generation *g, struct err *err)
{
    for (size_t i = 0; i < g->cfg->n_backends; i++) {
        struct backend *b = g->backends[i];
        if (!g->fresh[i] || !b->ops->supervised) continue;
        if (app->supervisor == NULL &&
            (app->supervisor = supervisor_new(app->loop, app->exe, err)) == NULL)
            goto undo;
        if (supervisor_add(app->supervisor, b, err) != 0) goto undo;
    }
    return 0;
undo:
    /* Workers started for this generation stop with it (generation_release → remove). */
    return -1;
}

void generation_commit(struct app *app, struct generation *g)
{
    /* A shared backend's settings are equal in both configs; from now on it reads the one
     * that lives as long as it may. */
    for (size_t i = 0; i < g->cfg->n_backends; i++)
        if (!g->fresh[i]) g->backends[i]->conf = &g->cfg->backends[i];
    struct access_policy access = {.allow = g->cfg->access.allow,
                                   .n_allow = g->cfg->access.n_allow,
                                   .allow_set = g->cfg->access.allow_set,
                                   .trust_proxy = g->cfg->access.trust_proxy,
                                   .n_trust_proxy = g->cfg->access.n_trust_proxy};
    struct generation *old = app->gen;
    app->gen = g;
    if (old) /* the first generation's policy is the servers' already */
        for (size_t i = 0; i < app->n_servers; i++)
            http_server_set_access(app->servers[i], &access);
    generation_release(app, old);
}

struct generation *generation_hold(struct generation *g)
{
    g->holds++;
    return g;
}

void generation_release(struct app *app, struct generation *g)
{
    if (g == NULL || --g->holds > 0) return;
    generation_free(app, g);
}

struct request_hold {
    struct app *app;
    struct generation *gen;
};

static void release_request_hold(void *ud)
{
    struct request_hold *h = ud;
    generation_release(h->app, h->gen);
}

struct generation *generation_hold_for(struct app *app, struct arena *arena)
{
    struct request_hold *h = arena_alloc(arena, sizeof *h);
    if (h == NULL) return NULL;
    h->app = app;
    h->gen = app->gen;
    if (arena_on_free(arena, release_request_hold, h) != 0) return NULL;
    return generation_hold(app->gen);
}
