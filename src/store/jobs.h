/*
 * store/jobs — store calls the event loop must not wait for (admin key changes, key
 * refreshes, spend reports) run on one worker thread with a store handle of its own.
 *
 * store_jobs_submit() queues a job: `run` is called on the worker thread with the store,
 * then `done` on the loop thread. Jobs run one at a time, in order.
 *
 * Thread: submit/stop from the loop thread. Ownership: the jobs runner owns its store
 * handle; `ud` stays the caller's and must live until `done` has run.
 */
#ifndef STRATUS_STORE_JOBS_H
#define STRATUS_STORE_JOBS_H

#include "store/store.h"

struct event_base;
struct store_jobs;

typedef void (*store_job_run_fn)(struct store_handle *store, void *ud);
typedef void (*store_job_done_fn)(void *ud);

/** Starts the worker over `store` (taken over, also on failure). `loop` must have been
 *  created after evthread_use_pthreads(). @return the runner, or NULL (OOM, thread). */
struct store_jobs *store_jobs_start(struct event_base *loop, struct store_handle store);

/** Queues a job. @return 0, or -1 when out of memory (nothing is called then). */
int store_jobs_submit(struct store_jobs *j, store_job_run_fn run, store_job_done_fn done, void *ud);

/** Runs what is queued, calls every pending `done`, stops the worker, closes the store and
 *  frees. NULL-safe. */
void store_jobs_stop(struct store_jobs *j);

#endif
