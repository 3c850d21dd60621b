/*
 * upstream — outbound HTTP calls on the event loop: libcurl's multi interface driven by
 * libevent through curl_multi_socket_action(), so one thread runs every client connection
 * and every upstream transfer. Connections to upstreams are kept alive and reused by the
 * multi handle's connection cache; easy handles are pooled.
 *
 * A call reports, in order: on_data (zero or more times, body bytes as they arrive; the
 * status is known from the first call on), then on_done exactly once — unless the owner
 * cancels it first, after which no callback runs at all.
 *
 * Thread: event-loop thread only.
 */
#ifndef STRATUS_UPSTREAM_H
#define STRATUS_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>

#include "util/err.h"

struct event_base;
struct curl_slist;
struct upstream;
struct upstream_call;

struct upstream_request {
    const char *url;                  /* borrowed until upstream_start returns */
    const struct curl_slist *headers; /* borrowed for the call's lifetime */
    const char *body;                 /* POSTed; borrowed for the call's lifetime */
    size_t body_len;
    long timeout_ms; /* whole transfer; 0 = none */
    long connect_timeout_ms;
    bool connect_only;       /* TCP (+TLS) connect then done: reachability probes */
    bool get;                /* GET instead of POST (health probes) */
    const char *unix_socket; /* connect to this UNIX socket instead of the URL host */
    const char *ca_file;     /* PEM file of the CAs to trust for https; NULL: the system's */
    bool native;             /* the body is the client's own (passthrough): see call_info */
};

/* Why a call ended. */
enum upstream_result {
    UPSTREAM_OK = 0,  /* transfer complete (any HTTP status) */
    UPSTREAM_CONNECT, /* could not connect / resolve */
    UPSTREAM_TIMEOUT, /* timeout_ms or connect_timeout_ms elapsed */
    UPSTREAM_BROKEN,  /* connection reset, truncated response, protocol error */
    UPSTREAM_ABORTED, /* on_data asked to stop */
};

struct upstream_callbacks {
    /** Body bytes (borrowed for the call), always fully consumed. @return 0 go on, 1 pause
     *  receiving after these bytes (resume with upstream_resume), -1 stop the transfer
     *  (on_done follows with UPSTREAM_ABORTED). */
    int (*on_data)(struct upstream_call *call, const char *p, size_t n, void *ud);
    /** The call ended with HTTP `status` (0 if none arrived); `message` is a short human
     *  description (borrowed for the call). The call is already released: a failover may
     *  start the next call from here. */
    void (*on_done)(enum upstream_result result, long status, long retry_after, const char *message,
                    void *ud);
};

/** @return an *owned* upstream client (free with upstream_free), or NULL with `err`. */
struct upstream *upstream_new(struct event_base *loop, struct err *err);

/** Cancels every call still running (no callbacks) and frees. NULL-safe. */
void upstream_free(struct upstream *u);

/**
 * Starts a call. `cb` and `ud` are borrowed for the call's lifetime.
 * @return the call (owned by the upstream; valid until on_done returns or upstream_cancel),
 *         or NULL with `err` filled.
 */
struct upstream_call *upstream_start(struct upstream *u, const struct upstream_request *r,
                                     const struct upstream_callbacks *cb, void *ud,
                                     struct err *err);

/** HTTP status of the response (0 before the head arrived). */
long upstream_call_status(const struct upstream_call *call);

/** Retry-After of the response in seconds (-1 when absent). */
long upstream_call_retry_after(const struct upstream_call *call);

/** Resumes a call paused by on_data returning 1. */
void upstream_resume(struct upstream_call *call);

/** Stops a call now: the upstream connection is closed and no callback runs after this. */
void upstream_cancel(struct upstream_call *call);

/** Calls running now. */
size_t upstream_active(const struct upstream *u);

#endif
