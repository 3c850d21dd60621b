/*
 * DESIGN: routing is a small static table (path → methods → handler or surface); a path that
 * exists with another method answers 405 with Allow, anything else 404. A new inbound API is
 * one surface file plus its lines here.
 */
#include "api/dispatch.h"

#include <stdio.h>
#include <string.h>

#include "api/admin.h"
#include "api/backends.h"
#include "api/compare.h"
#include "api/credential.h"
#include "api/dashboard.h"
#include "api/function.h"
#include "api/metrics.h"
#include "api/proxy.h"
#include "api/respond.h"
#include "api/routes.h"
#include "api/status.h"
#include "api/surface_anthropic.h"
#include "api/surface_bedrock.h"
#include "api/surface_lambda.h"
#include "api/surface_openai.h"
#include "app.h"
#include "generation.h"
#include "guard/guard.h"
#include "guard/sigv4_verify.h"
#include "http/server.h"
#include "util/arena.h"

static void reply_error(struct http_request *req, const struct err *e)
{
    api_log(req, e->status, e->msg);
    http_respond_error(req, e);
}

enum access { OPEN, API, ADMIN }; /* who may call: anyone, any key, the master key */

/* A model endpoint is a surface (its wire format) and the endpoint in the request model;
 * anything else is a handler. A handler with a surface (a model API's side endpoint, like
 * count_tokens) takes the credential from the surface's place and refuses in its shape. */
struct route {
    const char *path;
    const char *method;
    enum access access;
    bool prefix; /* path is a prefix ("/admin/keys/" + id) */
    /* A '*' in path stands for one non-empty segment without '/': "/model/" id "/invoke" */
    void (*handle)(struct app *app, struct http_request *req, const struct principal *who);
    const struct surface_ops *surface;
    enum openai_endpoint endpoint;
};

static const struct route routes[] = {
    {"/health", "GET", OPEN, false, status_health, NULL, 0},
    {"/ready", "GET", OPEN, false, status_ready, NULL, 0},
    {"/metrics", "GET", OPEN, false, metrics_handle, NULL, 0}, /* metrics.auth: it asks */
    {"/v1/models", "GET", API, false, openai_list_models, NULL, 0},
    {"/v1/chat/completions", "POST", API, false, NULL, &surface_openai, OPENAI_CHAT},
    {"/v1/completions", "POST", API, false, NULL, &surface_openai, OPENAI_COMPLETIONS},
    {"/v1/embeddings", "POST", API, false, NULL, &surface_openai, OPENAI_EMBEDDINGS},
    {"/v1/messages", "POST", API, false, NULL, &surface_anthropic, OPENAI_CHAT},
    {"/v1/messages/count_tokens", "POST", API, false, anthropic_count_tokens, &surface_anthropic,
     0},
    /* functions: their doors authenticate with their own API's credential and shapes */
    {"/v1/functions/", "POST", OPEN, true, function_route, NULL, 0},
    {"/2015-03-31/functions/", "POST", OPEN, true, lambda_route, NULL, 0},
    {"/endpoints/", "POST", OPEN, true, sagemaker_route, NULL, 0},
    {"/model/*/converse", "POST", API, false, NULL, &surface_bedrock, OPENAI_CHAT},
    {"/model/*/converse-stream", "POST", API, false, NULL, &surface_bedrock, OPENAI_CHAT},
    {"/model/*/invoke", "POST", API, false, NULL, &surface_bedrock, OPENAI_CHAT},
    {"/model/*/invoke-with-response-stream", "POST", API, false, NULL, &surface_bedrock,
     OPENAI_CHAT},
    {"/admin/keys", "POST", ADMIN, false, admin_create_key, NULL, 0},
    {"/admin/keys", "GET", ADMIN, false, admin_list_keys, NULL, 0},
    {"/admin/keys/", "DELETE", ADMIN, true, admin_revoke_key, NULL, 0},
    {"/admin/spend", "GET", ADMIN, false, admin_spend, NULL, 0},
    {"/admin/customers", "GET", ADMIN, false, admin_list_customers, NULL, 0},
    {"/admin/customers", "POST", ADMIN, false, admin_set_customer, NULL, 0},
    {"/admin/customers/", "DELETE", ADMIN, true, admin_remove_customer, NULL, 0},
    {"/admin/reload", "POST", ADMIN, false, admin_reload, NULL, 0},
    {"/admin/routes", "GET", ADMIN, false, admin_routes, NULL, 0},
    {"/admin/backends", "GET", ADMIN, false, admin_backends, NULL, 0},
    {"/admin/budgets", "GET", ADMIN, false, admin_budgets, NULL, 0},
    {"/admin/cost/compare", "GET", ADMIN, false, admin_cost_compare, NULL, 0},
    /* the page and its files hold no data: open; every figure comes from the admin API */
    {"/dashboard", "GET", OPEN, false, dashboard_page, NULL, 0},
    {"/dashboard/", "GET", OPEN, true, dashboard_asset, NULL, 0},
};

/* The caller, from the credential where this route's API carries it (the surface's place
 * for model APIs, a bearer token for the rest). Without auth nothing is asked. */
static int authenticate(struct app *app, struct http_request *req, const struct route *r,
                        struct principal *who, struct err *e)
{
    const char *key = NULL;
    size_t len = 0;
    if (r->surface && r->surface->sigv4 && sigv4_is_signed(req)) {
        if (guard_authenticate_sigv4(app->guard, req, who, e) != 0) return -1;
        return guard_check_client(who, req, e);
    }
    if (guard_auth_enabled(app->guard)) {
        int (*credential)(const struct http_request *, const char **, size_t *, struct err *) =
            r->surface ? r->surface->credential : credential_bearer;
        if (credential(req, &key, &len, e) != 0) return -1;
    }
    if (guard_authenticate(app->guard, key, len, r->access == ADMIN, who, e) != 0) return -1;
    return guard_check_client(who, req, e); /* the key's allowed_cidrs */
}

/* Whether `r` serves `path`: exactly, by prefix, or around one '*' segment. */
static bool matches(const struct route *r, const char *path)
{
    const char *star = strchr(r->path, '*');
    size_t n = strlen(path);
    if (star) {
        size_t p = (size_t)(star - r->path), s = strlen(star + 1);
        return n > p + s && strncmp(r->path, path, p) == 0 && strcmp(path + n - s, star + 1) == 0 &&
               memchr(path + p, '/', n - p - s) == NULL;
    }
    if (!r->prefix) return strcmp(r->path, path) == 0;
    return strncmp(r->path, path, strlen(r->path)) == 0 && path[strlen(r->path)] != '\0';
}

void api_handle(struct http_request *req, void *ud)
{
    struct app *app = ud;
    struct err e;
    err_clear(&e);
    /* The request runs on the config current now, whatever a reload does meanwhile. */
    if (generation_hold_for(app, req->arena) == NULL) {
        err_oom(&e);
        reply_error(req, &e);
        return;
    }
    const struct route *path_match = NULL;
    char allow[64] = "";
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        const struct route *r = &routes[i];
        if (!matches(r, req->path)) continue;
        path_match = r;
        if (strcmp(r->method, req->method) == 0) {
            struct principal *who = arena_calloc(req->arena, 1, sizeof *who);
            if (who == NULL) {
                err_oom(&e);
                break;
            }
            if (r->access != OPEN && authenticate(app, req, r, who, &e) != 0) {
                if (r->access == API) { /* a model request: it gets a ledger row too */
                    /* ...and the refusal in its API's shape (OpenAI's: http_respond_error) */
                    proxy_record_refusal(app, req, NULL, e.status, e.msg);
                    struct exchange x = {.req = req};
                    struct call_failure f = surface_failure(&e);
                    if (r->surface)
                        r->surface->error(&x, &f);
                    else
                        http_respond_error(req, &e);
                    return;
                }
                break;
            }
            if (r->handle)
                r->handle(app, req, who);
            else
                proxy_handle(app, req, r->surface, r->endpoint, who);
            return;
        }
        size_t n = strlen(allow);
        snprintf(allow + n, sizeof allow - n, "%s%s%s", n ? ", " : "", r->method,
                 strcmp(r->method, "GET") == 0 ? ", HEAD" : ""); /* HEAD is served as GET */
    }
    if (e.status) {
        /* authentication failed or out of memory: already in e */
    } else if (path_match) {
        http_add_header(req, "Allow", allow);
        err_set(&e, 405, "invalid_request_error", "method_not_allowed",
                "method %s is not allowed on %s; use %s", req->method, req->path, allow);
    } else {
        err_set(&e, 404, "invalid_request_error", "not_found", "no such endpoint: %s %s",
                req->method, req->path);
    }
    reply_error(req, &e);
}
