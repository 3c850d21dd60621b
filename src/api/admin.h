/*
 * api/admin — the management API (master key only, see guard):
 *   POST   /admin/keys        make a key; the secret is in this answer only (201)
 *   GET    /admin/keys        every key, never a secret or hash
 *   DELETE /admin/keys/{id}   revoke (200), 404 for no such live key
 *   GET    /admin/spend?group_by=model|key|team|customer|backend|route&from=&to=&anomaly_factor=
 *          &bucket=hour|day&top=N&format=json|csv   (CSV also for Accept: text/csv)
 *          (route: why requests went where they did, the reasons without their live figures)
 * Store calls run as store jobs; the loop never waits on the database.
 * Thread: event-loop thread.
 */
#ifndef STRATUS_API_ADMIN_H
#define STRATUS_API_ADMIN_H

struct app;
struct http_request;
struct principal;

void admin_create_key(struct app *app, struct http_request *req, const struct principal *who);
void admin_list_keys(struct app *app, struct http_request *req, const struct principal *who);
void admin_revoke_key(struct app *app, struct http_request *req, const struct principal *who);
void admin_spend(struct app *app, struct http_request *req, const struct principal *who);
/* The customer → tier table (docs/tiers.md): GET /admin/customers, POST /admin/customers
 * {"customer","tier"} (an upsert; the tier must be configured), DELETE /admin/customers/ID.
 * The guard has each change before the answer leaves. */
void admin_list_customers(struct app *app, struct http_request *req, const struct principal *who);
void admin_set_customer(struct app *app, struct http_request *req, const struct principal *who);
void admin_remove_customer(struct app *app, struct http_request *req, const struct principal *who);

/** POST /admin/reload: reads the config file again and makes it current (app_reload).
 *  200 {object: "reload", generation, changed, restart_needed, engines: {kept, started,
 *  stopped}}, or the config error (400 invalid_config, "FILE:LINE:COL: …"). */
void admin_reload(struct app *app, struct http_request *req, const struct principal *who);

#endif
