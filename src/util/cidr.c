/*
 * DESIGN: one representation (16 bytes, IPv4 mapped) makes matching a prefix compare over
 * bytes with no family cases, and the same list serves IPv4 and IPv6 listeners.
 */
#include "util/cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

static const uint8_t v4_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static bool is_v4(const uint8_t a[16])
{
    return memcmp(a, v4_prefix, 12) == 0;
}

/* inet_pton on a copy (it needs a NUL); `v4` says which family parsed. */
static int pton(const char *s, size_t len, uint8_t out[16], bool *v4)
{
    char buf[INET6_ADDRSTRLEN + 1];
    if (len == 0 || len >= sizeof buf) return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    struct in_addr a4;
    if (inet_pton(AF_INET, buf, &a4) == 1) {
        memcpy(out, v4_prefix, 12);
        memcpy(out + 12, &a4, 4);
        *v4 = true;
        return 0;
    }
    struct in6_addr a6;
    if (inet_pton(AF_INET6, buf, &a6) == 1) {
        memcpy(out, &a6, 16);
        *v4 = false;
        return 0;
    }
    return -1;
}

int cidr_parse_addr(const char *s, size_t len, uint8_t out[16])
{
    while (len > 0 && (*s == ' ' || *s == '\t')) s++, len--;
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t')) len--;
    if (len >= 2 && s[0] == '[' && s[len - 1] == ']') s++, len -= 2;
    bool v4;
    return pton(s, len, out, &v4);
}

int cidr_parse(const char *s, struct cidr *out, const char **why)
{
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    bool v4 = false;
    memset(out, 0, sizeof *out);
    if (pton(s, alen, out->addr, &v4) != 0) {
        *why = "not an IPv4 or IPv6 address";
        return -1;
    }
    int max = v4 ? 32 : 128, bits = max;
    if (slash) {
        const char *p = slash + 1;
        if (*p == '\0' || strlen(p) > 3 || strspn(p, "0123456789") != strlen(p) ||
            (p[0] == '0' && p[1] != '\0')) {
            *why = "the prefix length after '/' must be a number";
            return -1;
        }
        bits = 0;
        for (; *p; p++) bits = bits * 10 + (*p - '0');
        if (bits > max) {
            *why =
                v4 ? "an IPv4 prefix length is at most 32" : "an IPv6 prefix length is at most 128";
            return -1;
        }
    }
    out->bits = (uint8_t)(v4 ? bits + 96 : bits);
    for (int i = out->bits; i < 128; i++) {
        if (out->addr[i / 8] & (0x80 >> (i % 8))) {
            *why = "address has bits set beyond the prefix length (write the network address)";
            return -1;
        }
    }
    return 0;
}

int cidr_from_sockaddr(const struct sockaddr *sa, uint8_t out[16])
{
    if (sa == NULL) return -1;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a4 = (const struct sockaddr_in *)sa;
        memcpy(out, v4_prefix, 12);
        memcpy(out + 12, &a4->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        return 0;
    }
    return -1;
}

bool cidr_contains(const struct cidr *c, const uint8_t addr[16])
{
    size_t whole = c->bits / 8;
    if (memcmp(c->addr, addr, whole) != 0) return false;
    unsigned rest = c->bits % 8;
    if (rest == 0) return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (addr[whole] & mask) == c->addr[whole];
}

bool cidr_list_contains(const struct cidr *list, size_t n, const uint8_t addr[16])
{
    for (size_t i = 0; i < n; i++)
        if (cidr_contains(&list[i], addr)) return true;
    return false;
}

void cidr_format_addr(const uint8_t addr[16], char out[CIDR_TEXT_SIZE])
{
    if (is_v4(addr) ? inet_ntop(AF_INET, addr + 12, out, CIDR_TEXT_SIZE) == NULL
                    : inet_ntop(AF_INET6, addr, out, CIDR_TEXT_SIZE) == NULL)
        snprintf(out, CIDR_TEXT_SIZE, "?");
}

void cidr_format(const struct cidr *c, char out[CIDR_TEXT_SIZE])
{
    bool v4 = is_v4(c->addr) && c->bits >= 96;
    cidr_format_addr(c->addr, out);
    size_t n = strlen(out);
    snprintf(out + n, CIDR_TEXT_SIZE - n, "/%d", v4 ? c->bits - 96 : c->bits);
}
