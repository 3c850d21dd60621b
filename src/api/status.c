#include "api/status.h"

#include <jansson.h>

#include "api/respond.h"
#include "app.h"
#include "generation.h"
#include "http/server.h"

void status_health(struct app *app, struct http_request *req, const struct principal *who)
{
    (void)app;
    (void)who;
    static const char body[] = "{\"status\":\"ok\"}";
    api_log(req, 200, NULL);
    http_respond(req, 200, "application/json", body, sizeof body - 1);
}

void status_ready(struct app *app, struct http_request *req, const struct principal *who)
{
    (void)who;
    const struct generation *g = app->gen;
    json_t *list = json_array();
    for (size_t i = 0; i < g->cfg->n_backends; i++) {
        const struct backend *b = g->backends[i];
        json_t *o = json_pack("{s:s, s:b}", "name", b->conf->name, "ready", b->ready);
        if (b->load.valid) json_object_set_new(o, "engine", status_engine_json(b));
        if (!b->ready) {
            json_object_set_new(o, "reason", json_string(b->not_ready_reason));
        }
        json_array_append_new(list, o);
    }
    /* Ready means every model group can be served now by at least one of its targets; a
     * backend nobody runs (the default config lists llama-server and Ollama as options)
     * only matters if a group depends on it alone. */
    json_t *models = json_array();
    bool serving = !app->stopping;
    for (size_t i = 0; i < g->cfg->n_models; i++) {
        const struct model_conf *m = &g->cfg->models[i];
        size_t usable = 0;
        for (size_t t = 0; t < m->n_targets; t++)
            usable += g->backends[m->targets[t].backend_index]->ready;
        json_t *o = json_pack("{s:s, s:b, s:i}", "name", m->name, "ready", usable > 0,
                              "usable_targets", (json_int_t)usable);
        if (usable == 0) {
            serving = false;
            json_object_set_new(o, "reason", json_string("no target's backend is ready"));
        }
        json_array_append_new(models, o);
    }
    json_t *doc = json_pack("{s:s, s:o, s:o}", "status", serving ? "ready" : "not_ready", "models",
                            models, "backends", list);
    api_respond_json(req, serving ? 200 : 503, doc);
}

json_t *status_engine_json(const struct backend *b)
{
    if (!b->load.valid) return NULL;
    json_t *e = json_pack("{s:i, s:i, s:i, s:f, s:f, s:I, s:I, s:I}", "slots", b->load.slots,
                          "busy_slots", b->load.busy_slots, "queue_depth", b->load.queue_depth,
                          "tokens_per_s", b->load.tokens_per_s, "ttft_ms", b->load.ttft_ms,
                          "prompt_tokens_total", (json_int_t)b->load.prompt_tokens,
                          "prefix_tokens_reused", (json_int_t)b->load.prefix_tokens_reused,
                          "prefix_hits", (json_int_t)b->load.prefix_hits);
    json_object_set_new(e, "queue_ms_avg", json_real(b->load.queue_ms_avg));
    json_object_set_new(e, "prefill_ms_avg", json_real(b->load.prefill_ms_avg));
    json_object_set_new(e, "decode_ms_avg", json_real(b->load.decode_ms_avg));
    return e;
}
