/*
 * DESIGN: the policy is plain data (two CIDR lists) and these are pure functions, so the
 * HTTP/1.1 and HTTP/2 front doors apply exactly the same rule and tests need no sockets.
 */
#include "http/access.h"

#include <string.h>

enum access_verdict access_classify(const struct access_policy *p, const uint8_t *peer)
{
    if (p == NULL || peer == NULL) return ACCESS_ALLOW;
    if (p->n_trust_proxy && cidr_list_contains(p->trust_proxy, p->n_trust_proxy, peer))
        return ACCESS_PER_REQUEST;
    return access_allowed(p, peer) ? ACCESS_ALLOW : ACCESS_DENY;
}

bool access_allowed(const struct access_policy *p, const uint8_t client[16])
{
    return p == NULL || !p->allow_set || cidr_list_contains(p->allow, p->n_allow, client);
}

int access_xff_client(const struct access_policy *p, const uint8_t peer[16], const char *const *xff,
                      size_t n_xff, uint8_t client[16])
{
    memcpy(client, peer, 16);
    /* Right to left over the headers, then over each header's comma list. */
    for (size_t h = n_xff; h-- > 0;) {
        const char *v = xff[h];
        size_t end = strlen(v);
        for (;;) {
            size_t start = end;
            while (start > 0 && v[start - 1] != ',') start--;
            size_t len = end - start;
            const char *s = v + start;
            while (len > 0 && (*s == ' ' || *s == '\t')) s++, len--;
            if (len > 0) { /* "a,,b" and trailing commas: empty entries are skipped */
                uint8_t a[16];
                if (cidr_parse_addr(s, len, a) != 0) return -1;
                memcpy(client, a, 16);
                if (!cidr_list_contains(p->trust_proxy, p->n_trust_proxy, a)) return 0;
            }
            if (start == 0) break;
            end = start - 1;
        }
    }
    return 0;
}

int access_refuse(const uint8_t client[16], struct err *e)
{
    char text[CIDR_TEXT_SIZE];
    cidr_format_addr(client, text);
    return err_set(e, 403, "permission_error", "ip_not_allowed",
                   "client address %s is not allowed (access.allow)", text);
}
