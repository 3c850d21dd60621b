/*
 * aws/eventstream — the AWS event-stream binary framing: an incremental decoder for what
 * Bedrock's ConverseStream (and other AWS streaming APIs) answer with, and an encoder for
 * the streams stratus answers with itself (the inbound Bedrock runtime, api/surface_bedrock).
 *
 * A message is: prelude (total length, headers length, CRC32 of those 8 bytes), headers,
 * payload, and a CRC32 of everything before it. Bytes arrive in arbitrary pieces; the
 * decoder buffers only an incomplete message and hands each complete, CRC-checked message
 * to a callback. Both CRCs are verified; any framing error stops the stream with a message
 * (a corrupted or hostile upstream must not be half-trusted).
 *
 * Thread: a decoder belongs to one thread.
 */
#ifndef STRATUS_AWS_EVENTSTREAM_H
#define STRATUS_AWS_EVENTSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

/* One decoded message; every pointer is borrowed for the duration of the callback. */
struct aws_event {
    const char *event_type;     /* ":event-type" header, or NULL */
    const char *message_type;   /* ":message-type": "event", "exception", "error"; or NULL */
    const char *exception_type; /* ":exception-type" or ":error-code", or NULL */
    const uint8_t *payload;
    size_t payload_len;
};

typedef int (*aws_event_cb)(void *ud, const struct aws_event *ev);

struct aws_eventstream {
    uint8_t *buf; /* owned: an incomplete message */
    size_t len, cap;
    size_t max_message; /* larger messages are an error; default 16 MiB */
};

void aws_eventstream_init(struct aws_eventstream *d, size_t max_message);

/** Feeds bytes. @return 0, or -1 when the callback returned non-zero or the framing is
 *  broken (then `err` says how: bad prelude CRC, bad message CRC, bad lengths, bad header). */
int aws_eventstream_feed(struct aws_eventstream *d, const uint8_t *data, size_t n, aws_event_cb cb,
                         void *ud, struct err *err);

/** Bytes of an incomplete message still held (non-zero at the end = truncated stream). */
size_t aws_eventstream_pending(const struct aws_eventstream *d);

void aws_eventstream_free(struct aws_eventstream *d);

/* One header to encode: a string value (type 7), the only kind our answers need. */
struct aws_event_header {
    const char *name;  /* 1..255 bytes */
    const char *value; /* up to 65535 bytes */
};

/**
 * Encodes one message (prelude, its CRC, the headers, the payload, the message CRC; CRC32
 * is zlib's) into `out` when it fits `cap`.
 * @return the message's length (write nothing when it exceeds `cap`: call again with that
 *  much room), or 0 when a header name or value is too long for the format.
 * Thread: any; no state.
 */
size_t aws_eventstream_encode(const struct aws_event_header *headers, size_t n_headers,
                              const void *payload, size_t payload_len, uint8_t *out, size_t cap);

#endif
