/*
 * DESIGN: parsing is strict and allocation-free (the header comes from anyone); a header
 * that breaks any rule is ignored as a whole, as the W3C text asks, rather than repaired.
 */
#include "obs/traceparent.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1; /* uppercase is invalid in traceparent */
}

/* `n` bytes from 2n lowercase hex characters. @return false on any other character. */
static bool unhex(const char *s, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0) return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

static bool all_zero(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i]) return false;
    return true;
}

int traceparent_parse(const char *v, uint8_t trace_id[16], uint8_t parent_id[8], uint8_t *flags)
{
    uint8_t version, t[16], p[8], f;
    if (v == NULL) return -1;
    size_t len = strnlen(v, TRACEPARENT_LEN + 1);
    if (len < TRACEPARENT_LEN || !unhex(v, &version, 1) || version == 0xff) return -1;
    if (version == 0 && len != TRACEPARENT_LEN) return -1;
    if (len > TRACEPARENT_LEN && v[TRACEPARENT_LEN] != '-') return -1; /* a future version */
    if (v[2] != '-' || v[35] != '-' || v[52] != '-') return -1;
    if (!unhex(v + 3, t, 16) || !unhex(v + 36, p, 8) || !unhex(v + 53, &f, 1)) return -1;
    if (all_zero(t, 16) || all_zero(p, 8)) return -1;
    memcpy(trace_id, t, 16);
    memcpy(parent_id, p, 8);
    *flags = f;
    return 0;
}

void trace_hex(const uint8_t *bytes, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * n] = '\0';
}

void traceparent_format(const uint8_t trace_id[16], const uint8_t span_id[8], uint8_t flags,
                        char out[TRACEPARENT_LEN + 1])
{
    char t[33], s[17], f[3];
    trace_hex(trace_id, 16, t);
    trace_hex(span_id, 8, s);
    trace_hex(&flags, 1, f);
    snprintf(out, TRACEPARENT_LEN + 1, "00-%s-%s-%s", t, s, f);
}

bool trace_sampled_by_ratio(const uint8_t trace_id[16], double ratio)
{
    if (ratio >= 1) return true;
    if (!(ratio > 0)) return false;
    uint64_t low = 0;
    for (int i = 8; i < 16; i++) low = low << 8 | trace_id[i];
    return (low >> 1) < (uint64_t)(ratio * 9223372036854775808.0); /* 2^63 */
}

/* A non-zero random id (all zero is "invalid" in the spec). */
static bool random_id(uint8_t *out, size_t n)
{
    for (int tries = 0; tries < 4; tries++)
        if (RAND_bytes(out, (int)n) == 1 && !all_zero(out, n)) return true;
    return false;
}

int trace_context_begin(struct trace_context *tc, const char *traceparent, bool exporting,
                        double ratio)
{
    uint8_t flags = 0;
    memset(tc, 0, sizeof *tc);
    bool valid =
        traceparent && traceparent_parse(traceparent, tc->trace_id, tc->parent_id, &flags) == 0;
    if (!exporting) {
        if (!valid) return 0;
        /* Invisible: the upstream's span hangs off the client's, as if we were not here. */
        memcpy(tc->span_id, tc->parent_id, 8);
        tc->has_parent = true;
        tc->sampled = flags & 1;
        return 1;
    }
    if (valid) {
        tc->has_parent = true;
        tc->sampled = flags & 1; /* parent-based: the client decided */
    } else {
        memset(tc->parent_id, 0, sizeof tc->parent_id);
        if (!random_id(tc->trace_id, 16)) return 0;
        tc->sampled = trace_sampled_by_ratio(tc->trace_id, ratio);
    }
    if (!random_id(tc->span_id, 8)) return 0;
    tc->recording = tc->sampled;
    return 1;
}

void trace_context_header(const struct trace_context *tc, char out[TRACEPARENT_LINE_LEN + 1])
{
    char v[TRACEPARENT_LEN + 1];
    traceparent_format(tc->trace_id, tc->span_id, tc->sampled ? 1 : 0, v);
    snprintf(out, TRACEPARENT_LINE_LEN + 1, "traceparent: %s", v);
}
