/*
 * api/dashboard — GET /dashboard: the embedded web dashboard (page, style, script).
 *
 *   GET /dashboard          the page (index.html)
 *   GET /dashboard/NAME     one of its assets (dashboard.css, dashboard.js); 404 otherwise
 *
 * Open, like /health: the files hold no data. Every figure the page shows comes from the
 * JSON admin endpoints (/admin/spend, /admin/backends, /admin/budgets, /admin/keys,
 * /admin/cost/compare, /admin/routes), which the script calls with the master key the
 * operator typed into its login form (kept in sessionStorage, sent as a Bearer header,
 * never in a URL).
 *
 * Every answer carries a strict Content-Security-Policy (same-origin only, no inline script
 * or style, no framing), X-Frame-Options DENY, Referrer-Policy no-referrer and
 * X-Content-Type-Options nosniff; an ETag with Cache-Control no-cache (a reload revalidates:
 * 304 when unchanged, so a new binary's page is never stale), and the gzip copy when the
 * browser accepts gzip.
 * Thread: event-loop thread only.
 */
#ifndef STRATUS_API_DASHBOARD_H
#define STRATUS_API_DASHBOARD_H

struct app;
struct http_request;
struct principal;

void dashboard_page(struct app *app, struct http_request *req, const struct principal *who);
void dashboard_asset(struct app *app, struct http_request *req, const struct principal *who);

#endif
