/*
 * util/cidr — IP addresses and CIDR blocks, IPv4 and IPv6 alike.
 *
 * Every address is held as 16 bytes: an IPv4 address as its IPv4-mapped IPv6 form
 * (::ffff:a.b.c.d), so "10.0.0.0/8" matches a client that reached an IPv6 socket as
 * ::ffff:10.1.2.3 as well as one on an IPv4 socket. An IPv4 block's prefix is stored plus 96.
 * Text is parsed with inet_pton only (no DNS, no octal or short forms like "10.1").
 * Thread: any; no state.
 */
#ifndef STRATUS_UTIL_CIDR_H
#define STRATUS_UTIL_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sockaddr;

/* Long enough for any address cidr_format_addr writes, and for a block with "/128". */
#define CIDR_TEXT_SIZE 56

struct cidr {
    uint8_t addr[16]; /* host bits cleared */
    uint8_t bits;     /* 0..128, on the mapped form (an IPv4 /8 is 104) */
};

/**
 * Parses "10.0.0.0/8", "::1/128", "fd00::/8" or a bare address (a /32 or /128). Bits set
 * below the prefix ("10.0.0.1/8") are refused: such a typo would allow more than it says.
 * @return 0, or -1 with `why` (static text) set.
 */
int cidr_parse(const char *s, struct cidr *out, const char **why);

/** Parses a bare address of `len` bytes (no prefix; brackets around IPv6 allowed, blanks
 *  around it skipped). @return 0, or -1 when it is not an address. */
int cidr_parse_addr(const char *s, size_t len, uint8_t out[16]);

/** The address of a connected IPv4 or IPv6 socket's peer. @return 0, or -1 (another family). */
int cidr_from_sockaddr(const struct sockaddr *sa, uint8_t out[16]);

/** Whether `addr` lies in `c`. */
bool cidr_contains(const struct cidr *c, const uint8_t addr[16]);

/** Whether `addr` lies in any of the `n` blocks. */
bool cidr_list_contains(const struct cidr *list, size_t n, const uint8_t addr[16]);

/** Writes `addr` as text: dotted quad for an IPv4-mapped address, else RFC 5952 IPv6. */
void cidr_format_addr(const uint8_t addr[16], char out[CIDR_TEXT_SIZE]);

/** Writes `c` as "10.0.0.0/8" or "fd00::/8". */
void cidr_format(const struct cidr *c, char out[CIDR_TEXT_SIZE]);

#endif
