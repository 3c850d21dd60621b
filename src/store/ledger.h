/*
 * ledger — one row per request, written off the event loop.
 *
 * The loop thread calls ledger_append(), which copies the row into a bounded in-memory queue
 * and returns at once; a writer thread takes whatever is queued (up to `batch_size` rows)
 * and appends it to the store in one transaction, then the next batch. A short batch
 * lingers a few milliseconds (store.flush_ms) for company, so under load rows go in large
 * transactions and at idle within flush_ms. When the queue
 * is full the row is dropped, counted (`dropped`) and logged — never silently. A store
 * error (database down) keeps the rows queued and retries every second.
 *
 * ledger_stop() (SIGTERM) writes every queued row before it returns: 0 rows lost on a clean
 * stop. On kill -9 only rows not yet committed are lost: at most the batch being written
 * plus what queued behind it during that write or linger (tests/integration/ledger.test.mjs
 * measures it).
 *
 * With `store.durable`, an answer waits for its row: ledger_append gives the row's sequence
 * number and ledger_when_written calls back on the loop once that row is committed, so a
 * gateway killed at any moment has a row for every answer a client received.
 *
 * Retention (ledger_retain) runs on the writer thread too, in small delete batches between
 * writes: raw rows age out, their hours and days live on in rollups (store/rollup.h).
 *
 * Thread: ledger_append/ledger_stats from one thread (the loop); the writer is internal.
 * Ownership: the ledger owns the store handle it is given.
 */
#ifndef STRATUS_LEDGER_H
#define STRATUS_LEDGER_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

struct event_base;
struct ledger;

struct ledger_stats {
    uint64_t appended; /* rows accepted into the queue */
    uint64_t written;  /* rows committed to the store */
    uint64_t dropped;  /* rows refused because the queue was full */
    uint64_t batches;  /* transactions committed */
    uint64_t errors;   /* failed store writes (retried) */
    uint64_t retained; /* raw rows and rollup lines deleted by retention */
    size_t queued;     /* rows waiting now */
};

/** Starts the writer over `store` (taken over). A batch shorter than `batch_size` waits up
 *  to `linger_ms` for more rows before it is written (group commit; 0 = write at once).
 *  @return the ledger, or NULL (OOM/thread). */
struct ledger *ledger_start(struct store_handle store, size_t queue_size, size_t batch_size,
                            long linger_ms);

/* Rows (and rollup lines) retention deletes per transaction: short enough that a write
 * queued behind it waits milliseconds, not seconds. */
#define LEDGER_RETAIN_BATCH 2000

/**
 * Retention: the writer deletes raw rows older than `rows_days` and rollup lines older
 * than `rollups_days` (0: keep them), first `first_ms` from now, then every `every_ms`, in
 * batches of LEDGER_RETAIN_BATCH between (never instead of) writes. Call from the loop
 * thread before traffic; without a call nothing is deleted.
 */
void ledger_retain(struct ledger *l, double rows_days, double rollups_days, long every_ms,
                   long first_ms);

/** Queues a copy of `row`; *seq (may be NULL) gets its sequence number (rows commit in that
 *  order). @return 0, or -1 when the queue is full (counted and logged; *seq = 0). */
int ledger_append(struct ledger *l, const struct ledger_row *row, uint64_t *seq);

/* One wait for a row's commit; caller memory, valid until called back or cancelled. */
struct ledger_wait {
    uint64_t seq;
    void (*written)(void *ud);
    void *ud;
    struct ledger_wait *next, **prev;
};

/** Lets the loop hear about commits (once, after ledger_start, from the loop thread).
 *  @return 0, or -1 when out of memory. */
int ledger_watch(struct ledger *l, struct event_base *loop);

/** Calls written(ud) on the loop once row `seq` is committed — at once when it already is.
 *  Needs ledger_watch. */
void ledger_when_written(struct ledger *l, uint64_t seq, struct ledger_wait *w,
                         void (*written)(void *ud), void *ud);

/** The waiter went away: it is not called. NULL-safe; idempotent. */
void ledger_wait_cancel(struct ledger_wait *w);

void ledger_stats(struct ledger *l, struct ledger_stats *out);

/** Writes everything queued, stops the writer, closes the store, frees. NULL-safe. */
void ledger_stop(struct ledger *l);

#endif
