/* Unit tests for src/providers/aws/eventstream.c: framing, both CRCs, split reads. */
#include "unit/cmocka_all.h"

#include <stdio.h>
#include <string.h>
#include <zlib.h>

#include "providers/aws/eventstream.h"

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static size_t string_header(uint8_t *p, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value), i = 0;
    p[i++] = (uint8_t)nl;
    memcpy(p + i, name, nl);
    i += nl;
    p[i++] = 7;
    p[i++] = (uint8_t)(vl >> 8);
    p[i++] = (uint8_t)vl;
    memcpy(p + i, value, vl);
    return i + vl;
}

/* Encodes one message the way AWS does; returns its length. */
static size_t encode(uint8_t *out, const char *event_type, const char *payload)
{
    uint8_t headers[256];
    size_t hl = 0;
    hl += string_header(headers + hl, ":event-type", event_type);
    hl += string_header(headers + hl, ":content-type", "application/json");
    hl += string_header(headers + hl, ":message-type", "event");
    /* A non-string header the decoder must skip by its size: "x-s", type 3 (short) = 7. */
    headers[hl++] = 3;
    memcpy(headers + hl, "x-s", 3);
    hl += 3;
    headers[hl++] = 3;
    headers[hl++] = 0;
    headers[hl++] = 7;
    size_t pl = strlen(payload), total = 12 + hl + pl + 4;
    put32(out, (uint32_t)total);
    put32(out + 4, (uint32_t)hl);
    put32(out + 8, (uint32_t)crc32(0L, out, 8));
    memcpy(out + 12, headers, hl);
    memcpy(out + 12 + hl, payload, pl);
    put32(out + total - 4, (uint32_t)crc32(0L, out, (uInt)(total - 4)));
    return total;
}

struct seen {
    char types[8][64];
    char payloads[8][128];
    int n;
};

static int collect(void *ud, const struct aws_event *ev)
{
    struct seen *s = ud;
    assert_true(s->n < 8);
    snprintf(s->types[s->n], sizeof s->types[0], "%s", ev->event_type ? ev->event_type : "-");
    assert_string_equal(ev->message_type, "event");
    snprintf(s->payloads[s->n], sizeof s->payloads[0], "%.*s", (int)ev->payload_len,
             (const char *)ev->payload);
    s->n++;
    return 0;
}

static int seen_exception(void *ud, const struct aws_event *ev)
{
    assert_string_equal(ev->message_type, "exception");
    snprintf(ud, 64, "%s", ev->exception_type ? ev->exception_type : "-");
    return 0;
}

static size_t two_messages(uint8_t *buf)
{
    size_t n = encode(buf, "contentBlockDelta", "{\"delta\":{\"text\":\"Hi\"}}");
    n += encode(buf + n, "metadata", "{\"usage\":{\"inputTokens\":3,\"outputTokens\":1}}");
    return n;
}

static void test_aws_eventstream_feed_decodes_whole_and_split_messages(void **state)
{
    (void)state;
    uint8_t buf[1024];
    size_t n = two_messages(buf);
    for (size_t piece = 1; piece <= n; piece = piece < 8 ? piece + 1 : piece * 2) {
        struct aws_eventstream d;
        struct seen s = {0};
        struct err e;
        aws_eventstream_init(&d, 0);
        for (size_t at = 0; at < n; at += piece)
            assert_int_equal(aws_eventstream_feed(&d, buf + at, n - at < piece ? n - at : piece,
                                                  collect, &s, &e),
                             0);
        assert_int_equal(s.n, 2);
        assert_string_equal(s.types[0], "contentBlockDelta");
        assert_string_equal(s.payloads[0], "{\"delta\":{\"text\":\"Hi\"}}");
        assert_string_equal(s.types[1], "metadata");
        assert_int_equal(aws_eventstream_pending(&d), 0);
        aws_eventstream_free(&d);
    }
}

static void expect_broken(uint8_t *buf, size_t n, const char *why)
{
    struct aws_eventstream d;
    struct seen s = {0};
    struct err e;
    aws_eventstream_init(&d, 0);
    assert_int_equal(aws_eventstream_feed(&d, buf, n, collect, &s, &e), -1);
    assert_int_equal(e.status, 502);
    if (strstr(e.msg, why) == NULL) fail_msg("'%s' lacks '%s'", e.msg, why);
    aws_eventstream_free(&d);
}

static void test_aws_eventstream_feed_rejects_bad_crcs_and_lengths(void **state)
{
    (void)state;
    uint8_t buf[1024];
    size_t n = two_messages(buf);
    buf[9] ^= 1; /* prelude CRC */
    expect_broken(buf, n, "prelude CRC");
    n = two_messages(buf);
    buf[20] ^= 1; /* a header byte: message CRC no longer matches */
    expect_broken(buf, n, "message CRC");
    n = two_messages(buf);
    put32(buf, 8); /* total shorter than any message; prelude CRC recomputed */
    put32(buf + 8, (uint32_t)crc32(0L, buf, 8));
    expect_broken(buf, n, "length");
}

static int stop_cb(void *ud, const struct aws_event *ev)
{
    (void)ev;
    (*(int *)ud)++;
    return 1;
}

static void test_aws_eventstream_feed_stops_when_the_callback_says_so(void **state)
{
    (void)state;
    uint8_t buf[1024];
    size_t n = two_messages(buf);
    struct aws_eventstream d;
    struct err e;
    int calls = 0;
    aws_eventstream_init(&d, 0);
    assert_int_equal(aws_eventstream_feed(&d, buf, n, stop_cb, &calls, &e), -1);
    assert_int_equal(calls, 1);
    aws_eventstream_free(&d);
}

static void test_aws_eventstream_pending_reports_truncation(void **state)
{
    (void)state;
    uint8_t buf[1024];
    size_t n = two_messages(buf);
    struct aws_eventstream d;
    struct seen s = {0};
    struct err e;
    aws_eventstream_init(&d, 0);
    assert_int_equal(aws_eventstream_feed(&d, buf, n - 5, collect, &s, &e), 0);
    assert_int_equal(s.n, 1);
    assert_true(aws_eventstream_pending(&d) > 0);
    aws_eventstream_free(&d);
}

/* The encoder's output is what the decoder (and so AWS's format) expects: same bytes as
 * the hand-built reference, and a round trip through the decoder one byte at a time. */
static void test_aws_eventstream_encode_round_trips_through_the_decoder(void **state)
{
    (void)state;
    const struct aws_event_header h[3] = {
        {":event-type", "contentBlockDelta"},
        {":content-type", "application/json"},
        {":message-type", "event"},
    };
    const char *payload = "{\"delta\":{\"text\":\"Hi\"}}";
    uint8_t buf[256];
    size_t need = aws_eventstream_encode(h, 3, payload, strlen(payload), NULL, 0);
    assert_true(need > 16);
    assert_int_equal(aws_eventstream_encode(h, 3, payload, strlen(payload), buf, sizeof buf), need);
    /* The reference message adds one short header (7 bytes): the rest is identical. */
    uint8_t ref[256];
    size_t rn = encode(ref, "contentBlockDelta", payload);
    assert_int_equal(rn, need + 7);
    assert_memory_equal(buf + 12, ref + 12, need - 16 - strlen(payload));
    struct aws_eventstream d;
    struct seen s = {0};
    struct err e;
    aws_eventstream_init(&d, 0);
    for (size_t i = 0; i < need; i++)
        assert_int_equal(aws_eventstream_feed(&d, buf + i, 1, collect, &s, &e), 0);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.types[0], "contentBlockDelta");
    assert_string_equal(s.payloads[0], payload);
    assert_int_equal(aws_eventstream_pending(&d), 0);
    /* One flipped payload bit: the message CRC the encoder wrote no longer matches. */
    buf[need - 6] ^= 1;
    assert_int_equal(aws_eventstream_feed(&d, buf, need, collect, &s, &e), -1);
    assert_non_null(strstr(e.msg, "message CRC"));
    aws_eventstream_free(&d);
}

static void test_aws_eventstream_encode_exception_frame_and_limits(void **state)
{
    (void)state;
    const struct aws_event_header h[3] = {
        {":exception-type", "modelStreamErrorException"},
        {":content-type", "application/json"},
        {":message-type", "exception"},
    };
    uint8_t buf[256];
    size_t n = aws_eventstream_encode(h, 3, "{}", 2, buf, sizeof buf);
    assert_true(n > 0 && n <= sizeof buf);
    struct aws_eventstream d;
    struct err e;
    aws_eventstream_init(&d, 0);
    char type[64] = "";
    assert_int_equal(aws_eventstream_feed(&d, buf, n, seen_exception, type, &e), 0);
    assert_string_equal(type, "modelStreamErrorException");
    aws_eventstream_free(&d);
    /* Too small a buffer: nothing written, the size needed returned. */
    uint8_t small[8] = {0};
    assert_int_equal(aws_eventstream_encode(h, 3, "{}", 2, small, sizeof small), n);
    assert_int_equal(small[0], 0);
    /* An empty header name cannot be encoded. */
    const struct aws_event_header bad[1] = {{"", "x"}};
    assert_int_equal(aws_eventstream_encode(bad, 1, NULL, 0, buf, sizeof buf), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aws_eventstream_feed_decodes_whole_and_split_messages),
        cmocka_unit_test(test_aws_eventstream_feed_rejects_bad_crcs_and_lengths),
        cmocka_unit_test(test_aws_eventstream_feed_stops_when_the_callback_says_so),
        cmocka_unit_test(test_aws_eventstream_pending_reports_truncation),
        cmocka_unit_test(test_aws_eventstream_encode_round_trips_through_the_decoder),
        cmocka_unit_test(test_aws_eventstream_encode_exception_frame_and_limits),
    };
    return cmocka_run_group_tests_name("src/providers/aws/eventstream.c", tests, NULL, NULL);
}
