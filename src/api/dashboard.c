/*
 * DESIGN: the assets are static bytes in the binary (api/dashboard_assets.h), so an answer
 * is a header lookup and one copy; no file is read and nothing is compressed per request.
 * The security headers go on every answer, the 304s and 404s included, so no path under
 * /dashboard can be framed or sniffed whatever it returns.
 */
#include "api/dashboard.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/dashboard_assets.h"
#include "api/respond.h"
#include "http/request.h"
#include "util/err.h"

/* 'self' only: the page loads its own script and style and calls its own origin's API.
 * No 'unsafe-inline' anywhere: the HTML has no inline script, style attribute or handler. */
static const char csp[] = "default-src 'none'; script-src 'self'; style-src 'self'; "
                          "img-src 'self' data:; connect-src 'self'; base-uri 'none'; "
                          "form-action 'self'; frame-ancestors 'none'";

static void security_headers(struct http_request *req)
{
    http_add_header(req, "Content-Security-Policy", csp);
    http_add_header(req, "X-Frame-Options", "DENY");
    http_add_header(req, "Referrer-Policy", "no-referrer");
    http_add_header(req, "X-Content-Type-Options", "nosniff");
    http_add_header(req, "Cross-Origin-Opener-Policy", "same-origin");
}

/* Whether an Accept-Encoding style list accepts `token` ("gzip", "gzip;q=0.5": yes;
 * "gzip;q=0": no). */
static bool accepts(const char *header, const char *token)
{
    size_t n = strlen(token);
    for (const char *p = header; p && *p; p = strchr(p, ',')) {
        p += strspn(p, " ,");
        if (strncasecmp(p, token, n) != 0 || (p[n] && !strchr(",; ", p[n]))) continue;
        const char *q = p + n + strspn(p + n, " ;");
        return strncasecmp(q, "q=", 2) != 0 || strtod(q + 2, NULL) > 0;
    }
    return false;
}

static void serve(struct http_request *req, const char *name)
{
    const struct dashboard_asset *a = NULL;
    for (size_t i = 0; i < dashboard_n_assets; i++)
        if (strcmp(dashboard_assets[i].name, name) == 0) a = &dashboard_assets[i];
    security_headers(req);
    if (a == NULL) {
        struct err e;
        err_set(&e, 404, "invalid_request_error", "not_found",
                "no dashboard file '%.100s' (the page is GET /dashboard)", name);
        api_log(req, e.status, e.msg);
        http_respond_error(req, &e);
        return;
    }
    http_add_header(req, "ETag", a->etag);
    http_add_header(req, "Cache-Control", "no-cache");
    http_add_header(req, "Vary", "Accept-Encoding");
    const char *match = http_request_header(req, "If-None-Match");
    if (match && strstr(match, a->etag)) {
        api_log(req, 304, NULL);
        http_respond(req, 304, NULL, NULL, 0);
        return;
    }
    bool gz = accepts(http_request_header(req, "Accept-Encoding"), "gzip");
    if (gz) http_add_header(req, "Content-Encoding", "gzip");
    api_log(req, 200, NULL);
    http_respond(req, 200, a->content_type, (const char *)(gz ? a->gz : a->body),
                 gz ? a->gz_len : a->len);
}

void dashboard_page(struct app *app, struct http_request *req, const struct principal *who)
{
    (void)app;
    (void)who;
    serve(req, "index.html");
}

void dashboard_asset(struct app *app, struct http_request *req, const struct principal *who)
{
    (void)app;
    (void)who;
    serve(req, req->path + strlen("/dashboard/"));
}
