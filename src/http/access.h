/*
 * http/access — who may talk to the gateway at all, and who the client is (`access:`).
 *
 *   allow        client CIDRs; a peer outside them gets 403 ip_not_allowed to its first
 *                request, before any body byte is read, and the connection closes. Not set:
 *                everyone (auth and the loopback-only default without auth still apply).
 *   trust_proxy  peers whose X-Forwarded-For is believed. The client is then the right-most
 *                address in X-Forwarded-For that is not itself in trust_proxy (walking from
 *                the right, as each trusted proxy appended the address it saw); from any
 *                other peer the header is ignored and the peer is the client.
 *
 * The verdict on a peer is made once, at accept (access_classify): allowed, refused, or — for
 * a trusted proxy, which carries many clients — decided per request from its head
 * (access_resolve). Per-key CIDRs (guard) then apply to the client address found here.
 * Thread: any; no state (the policy is borrowed, read-only).
 */
#ifndef STRATUS_HTTP_ACCESS_H
#define STRATUS_HTTP_ACCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/cidr.h"
#include "util/err.h"

/* The `access:` lists, borrowed from the config for the server's life. */
struct access_policy {
    const struct cidr *allow; /* NULL / 0 with allow_set false: everyone */
    size_t n_allow;
    bool allow_set;
    const struct cidr *trust_proxy;
    size_t n_trust_proxy;
};

enum access_verdict {
    ACCESS_ALLOW = 0,   /* the peer is the client and may talk */
    ACCESS_DENY,        /* the peer is the client and may not: 403 to its first request */
    ACCESS_PER_REQUEST, /* a trusted proxy: each request's X-Forwarded-For decides */
};

/** The verdict for a connection from `peer` (NULL: not an IP socket, e.g. UNIX → allowed). */
enum access_verdict access_classify(const struct access_policy *p, const uint8_t *peer);

/**
 * The client behind a trusted proxy `peer`: walks `xff` (the X-Forwarded-For values in the
 * order received, combined as one comma list) from the right, skipping addresses in
 * trust_proxy; the first one not in it is the client. No header, or every address trusted:
 * the left-most address seen (the peer itself when there is none).
 * @return 0 with `client` set, or -1 when an entry it reached is not an IP address.
 */
int access_xff_client(const struct access_policy *p, const uint8_t peer[16], const char *const *xff,
                      size_t n_xff, uint8_t client[16]);

/** Whether `client` may talk under `allow` (true when allow is not set). */
bool access_allowed(const struct access_policy *p, const uint8_t client[16]);

/** The 403 a refused address gets: permission_error / ip_not_allowed, naming `client`. */
int access_refuse(const uint8_t client[16], struct err *e);

#endif
