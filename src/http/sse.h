/*
 * sse — Server-Sent Events framing, for reading upstream streams.
 *
 * An upstream stream arrives in arbitrary pieces: an event can be split across reads and a
 * read can hold several events. sse_parser_feed() finds complete events (ended by a blank
 * line; "\n" and "\r\n" line endings) and hands each one, raw, to a callback — without
 * copying when the event lies inside one read. Incomplete tails are kept until more bytes
 * arrive. Thread: a parser belongs to one thread.
 */
#ifndef STRATUS_SSE_H
#define STRATUS_SSE_H

#include <stddef.h>

#include "util/err.h"

struct sse_parser {
    char *buf; /* owned: bytes of an incomplete event */
    size_t len, cap;
    size_t scanned;   /* bytes of buf already searched for a boundary */
    size_t max_event; /* larger events are an error (a garbled or hostile upstream) */
    char *scratch;    /* owned: joined multi-line data */
    size_t scratch_cap;
};

/**
 * Called once per complete event with its raw text (lines, without the blank line that ends
 * it). `ev` is borrowed for the duration of the call. Return 0 to go on, -1 to stop feeding
 * (sse_parser_feed then returns -1 too).
 */
typedef int (*sse_event_cb)(void *ud, const char *ev, size_t len);

/** Initialises `p`; `max_event` 0 means 4 MiB. */
void sse_parser_init(struct sse_parser *p, size_t max_event);

/** Feeds bytes. @return 0, or -1 when the callback stopped or an event exceeded max_event
 *  (then `err` says so). */
int sse_parser_feed(struct sse_parser *p, const char *data, size_t n, sse_event_cb cb, void *ud,
                    struct err *err);

/** Bytes held for an incomplete event (a stream ending with some is truncated). */
size_t sse_parser_pending(const struct sse_parser *p);

/**
 * Extracts the event's data: the values of its "data:" lines joined by "\n".
 * @param data set to bytes *borrowed* from `ev` (one line) or from the parser (several),
 *        valid until the next call on `p`.
 * @return number of data lines (0: none, *data NULL), or -1 on OOM.
 */
int sse_event_data(struct sse_parser *p, const char *ev, size_t len, const char **data,
                   size_t *dlen);

/** Finds a field ("event", "id") of the event. @return 1 found (value borrowed from ev), 0 no. */
int sse_event_field(const char *ev, size_t len, const char *field, const char **value,
                    size_t *vlen);

/** Resets to empty (before a retry). */
void sse_parser_reset(struct sse_parser *p);

/** Frees owned buffers; the struct may be re-initialised. */
void sse_parser_free(struct sse_parser *p);

#endif
