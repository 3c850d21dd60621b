/*
 * DESIGN
 * libcurl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION) and when to call it back
 * (CURLMOPT_TIMERFUNCTION); we turn those into libevent events, following curl's
 * multi-event example but with the state in `struct upstream` instead of globals.
 *
 * libcurl forbids removing handles from inside its callbacks. Everything that ends a call
 * therefore happens outside them: finished transfers are collected after
 * curl_multi_socket_action() returns, and a cancel requested while curl is running is queued
 * and applied right after it returns.
 */
#include "providers/upstream.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POOL_MAX 256

struct upstream {
    struct event_base *loop;
    CURLM *multi;
    struct event *timer;
    int running;
    bool in_curl; /* inside curl_multi_socket_action */
    size_t active;
    CURL *pool[POOL_MAX]; /* idle easy handles, reused to save their setup */
    size_t pool_len;
    struct upstream_call *cancelled; /* queued while in_curl */
    struct upstream_call *calls;     /* all live calls, for upstream_free */
    char proxy[512];                 /* from the environment at start, read once */
    char no_proxy[512];
};

struct upstream_call {
    struct upstream *u;
    CURL *easy;
    const struct upstream_callbacks *cb;
    void *ud;
    long status;
    long retry_after;
    bool paused;
    bool cancelled;
    bool stopped_by_owner; /* on_data returned -1 */
    bool one_off;          /* not returned to the pool (probes set unusual options) */
    char errbuf[CURL_ERROR_SIZE];
    struct upstream_call *next_cancelled;
    struct upstream_call *prev, *next;
};

struct sock_watch {
    struct event ev; /* embedded: re-armed in place, never reallocated per change */
    short kind;      /* what ev watches now */
    bool added;
};

static void check_done(struct upstream *u);
static size_t on_body(char *p, size_t size, size_t n, void *ud);
static size_t on_header(char *p, size_t size, size_t n, void *ud);

/* Options that never change are set once per easy handle; a pooled handle keeps them, so
 * starting a call only sets what differs per request. */
static CURL *easy_new(struct upstream *u)
{
    CURL *e = curl_easy_init();
    if (e == NULL) return NULL;
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    if (u->proxy[0])
        curl_easy_setopt(e, CURLOPT_PROXY, u->proxy);
    else
        curl_easy_setopt(e, CURLOPT_PROXY, ""); /* no per-request proxy env lookups */
    if (u->no_proxy[0]) curl_easy_setopt(e, CURLOPT_NOPROXY, u->no_proxy);
    return e;
}

static void call_release(struct upstream_call *c)
{
    struct upstream *u = c->u;
    curl_multi_remove_handle(u->multi, c->easy);
    if (u->pool_len < POOL_MAX && !c->one_off && !c->paused) {
        u->pool[u->pool_len++] = c->easy;
    } else {
        curl_easy_cleanup(c->easy);
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        u->calls = c->next;
    if (c->next) c->next->prev = c->prev;
    u->active--;
    free(c);
}

static void socket_action(struct upstream *u, curl_socket_t fd, int flags)
{
    u->in_curl = true;
    curl_multi_socket_action(u->multi, fd, flags, &u->running);
    u->in_curl = false;
    while (u->cancelled) {
        struct upstream_call *c = u->cancelled;
        u->cancelled = c->next_cancelled;
        call_release(c);
    }
    check_done(u);
}

static void on_socket_event(evutil_socket_t fd, short what, void *ud)
{
    struct upstream *u = ud;
    int flags = (what & EV_READ ? CURL_CSELECT_IN : 0) | (what & EV_WRITE ? CURL_CSELECT_OUT : 0);
    socket_action(u, fd, flags);
}

static void on_timer(evutil_socket_t fd, short what, void *ud)
{
    (void)fd;
    (void)what;
    socket_action(ud, CURL_SOCKET_TIMEOUT, 0);
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *ud, void *sockp)
{
    struct upstream *u = ud;
    struct sock_watch *w = sockp;
    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (w) {
            if (w->added) event_del(&w->ev);
            free(w);
            curl_multi_assign(u->multi, fd, NULL);
        }
        return 0;
    }
    short kind =
        EV_PERSIST | (what & CURL_POLL_IN ? EV_READ : 0) | (what & CURL_POLL_OUT ? EV_WRITE : 0);
    if (w == NULL) {
        w = calloc(1, sizeof *w);
        if (w == NULL) return -1;
        curl_multi_assign(u->multi, fd, w);
    } else if (w->added && w->kind == kind) {
        return 0; /* unchanged: no epoll_ctl */
    } else if (w->added) {
        event_del(&w->ev);
    }
    event_assign(&w->ev, u->loop, fd, kind, on_socket_event, u);
    w->kind = kind;
    w->added = event_add(&w->ev, NULL) == 0;
    return w->added ? 0 : -1;
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *ud)
{
    struct upstream *u = ud;
    (void)multi;
    if (timeout_ms < 0) return evtimer_del(u->timer);
    /* 0 ms fires on the next loop turn: never call back into curl from here. */
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    return evtimer_add(u->timer, &tv);
}

static enum upstream_result classify(CURLcode rc, const struct upstream_call *c)
{
    switch (rc) {
    case CURLE_OK:
        return UPSTREAM_OK;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_SSL_CONNECT_ERROR:
        return UPSTREAM_CONNECT;
    case CURLE_OPERATION_TIMEDOUT:
        return UPSTREAM_TIMEOUT;
    case CURLE_WRITE_ERROR:
        return c->stopped_by_owner ? UPSTREAM_ABORTED : UPSTREAM_BROKEN;
    default:
        return UPSTREAM_BROKEN;
    }
}

static void check_done(struct upstream *u)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(u->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE) continue;
        struct upstream_call *c = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
        CURLcode rc = msg->data.result;
        if (c == NULL) continue;
        if (c->status == 0) curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &c->status);
        enum upstream_result r = classify(rc, c);
        const char *text = c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc);
        /* Release first so a failover started from on_done can reuse this easy handle. */
        const struct upstream_callbacks *cb = c->cb;
        void *ud = c->ud;
        long status = c->status, retry_after = c->retry_after;
        char message[CURL_ERROR_SIZE];
        strncpy(message, rc == CURLE_OK ? "ok" : text, sizeof message - 1);
        message[sizeof message - 1] = '\0';
        call_release(c);
        cb->on_done(r, status, retry_after, message, ud);
    }
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct upstream_call *c = ud;
    size_t len = size * n;
    if (c->cancelled) return 0;
    if (c->status == 0) curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &c->status);
    int rc = c->cb->on_data(c, p, len, c->ud);
    if (rc < 0) {
        c->stopped_by_owner = true;
        return 0;
    }
    if (rc == 1) {
        /* The bytes are consumed; only further receiving pauses (a slow client). */
        c->paused = true;
        curl_easy_pause(c->easy, CURLPAUSE_RECV);
    }
    return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    struct upstream_call *c = ud;
    size_t len = size * n;
    static const char ra[] = "retry-after:";
    if (len > sizeof ra - 1 && strncasecmp(p, ra, sizeof ra - 1) == 0) {
        char tmp[32];
        size_t vl = len - (sizeof ra - 1);
        if (vl >= sizeof tmp) vl = sizeof tmp - 1;
        memcpy(tmp, p + sizeof ra - 1, vl);
        tmp[vl] = '\0';
        char *end;
        long v = strtol(tmp, &end, 10);
        /* HTTP-date form is rare from LLM APIs; treat it as "retry soon". */
        c->retry_after = end != tmp && v >= 0 ? v : 1;
    }
    return len;
}

struct upstream *upstream_new(struct event_base *loop, struct err *err)
{
    struct upstream *u = calloc(1, sizeof *u);
    if (u == NULL) {
        err_oom(err);
        return NULL;
    }
    u->loop = loop;
    /* libcurl would consult the proxy variables on every request; read them once. */
    const char *envs[] = {"https_proxy", "HTTPS_PROXY", "http_proxy", "all_proxy", "ALL_PROXY"};
    for (size_t i = 0; i < sizeof envs / sizeof envs[0] && !u->proxy[0]; i++) {
        const char *v = getenv(envs[i]);
        if (v && *v) snprintf(u->proxy, sizeof u->proxy, "%s", v);
    }
    const char *np = getenv("no_proxy");
    if (np == NULL || *np == '\0') np = getenv("NO_PROXY");
    if (np && *np) snprintf(u->no_proxy, sizeof u->no_proxy, "%s", np);
    u->multi = curl_multi_init();
    u->timer = evtimer_new(loop, on_timer, u);
    if (u->multi == NULL || u->timer == NULL) {
        err_set(err, 500, "server_error", NULL, "cannot initialise libcurl");
        upstream_free(u);
        return NULL;
    }
    curl_multi_setopt(u->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(u->multi, CURLMOPT_SOCKETDATA, u);
    curl_multi_setopt(u->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(u->multi, CURLMOPT_TIMERDATA, u);
    /* Keep enough idle connections per upstream for a busy gateway. */
    curl_multi_setopt(u->multi, CURLMOPT_MAXCONNECTS, 1024L);
    return u;
}

void upstream_free(struct upstream *u)
{
    if (u == NULL) return;
    while (u->calls) call_release(u->calls);
    for (size_t i = 0; i < u->pool_len; i++) curl_easy_cleanup(u->pool[i]);
    if (u->multi) curl_multi_cleanup(u->multi);
    if (u->timer) event_free(u->timer);
    free(u);
}

struct upstream_call *upstream_start(struct upstream *u, const struct upstream_request *r,
                                     const struct upstream_callbacks *cb, void *ud, struct err *err)
{
    struct upstream_call *c = calloc(1, sizeof *c);
    if (c == NULL) {
        err_oom(err);
        return NULL;
    }
    c->one_off = r->connect_only || r->get;
    c->easy = !c->one_off && u->pool_len ? u->pool[--u->pool_len] : easy_new(u);
    if (c->easy == NULL) {
        free(c);
        err_set(err, 500, "server_error", NULL, "cannot create an upstream request");
        return NULL;
    }
    c->u = u;
    c->cb = cb;
    c->ud = ud;
    c->retry_after = -1;
    CURL *e = c->easy;
    curl_easy_setopt(e, CURLOPT_URL, r->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, c);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, r->timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, r->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
    curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, r->unix_socket); /* NULL clears a pooled one */
    curl_easy_setopt(e, CURLOPT_CAINFO, r->ca_file);               /* NULL: the default again */
    if (r->connect_only) {
        curl_easy_setopt(e, CURLOPT_CONNECT_ONLY, 1L);
    } else if (r->get) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body ? r->body : "");
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(r->body ? r->body_len : 0));
    }
    CURLMcode mc = curl_multi_add_handle(u->multi, e);
    if (mc != CURLM_OK) {
        curl_easy_cleanup(e);
        free(c);
        err_set(err, 500, "server_error", NULL, "cannot start upstream request: %s",
                curl_multi_strerror(mc));
        return NULL;
    }
    c->next = u->calls;
    if (u->calls) u->calls->prev = c;
    u->calls = c;
    u->active++;
    return c;
}

long upstream_call_status(const struct upstream_call *call)
{
    return call->status;
}

long upstream_call_retry_after(const struct upstream_call *call)
{
    return call->retry_after;
}

void upstream_resume(struct upstream_call *call)
{
    if (!call->paused || call->cancelled) return;
    call->paused = false;
    curl_easy_pause(call->easy, CURLPAUSE_CONT);
}

void upstream_cancel(struct upstream_call *call)
{
    if (call == NULL || call->cancelled) return;
    call->cancelled = true;
    struct upstream *u = call->u;
    if (u->in_curl) {
        call->next_cancelled = u->cancelled;
        u->cancelled = call;
    } else {
        call_release(call);
    }
}

size_t upstream_active(const struct upstream *u)
{
    return u->active;
}
