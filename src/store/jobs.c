/*
 * DESIGN: a mutex-guarded list in, a mutex-guarded list out, and one libevent event the
 * worker activates (thread-safe with evthread pthreads) to have the loop call the `done`
 * callbacks. A singly linked FIFO is enough: admin traffic is a few calls a second.
 */
#include "store/jobs.h"

#include <event2/event.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

struct job {
    store_job_run_fn run;
    store_job_done_fn done;
    void *ud;
    struct job *next;
};

struct job_list {
    struct job *head, *tail;
};

struct store_jobs {
    struct store_handle store;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    struct job_list todo, finished;
    bool stopping;
    struct event *notify; /* loop thread: runs finished jobs' `done` */
};

static void push(struct job_list *l, struct job *j)
{
    j->next = NULL;
    if (l->tail)
        l->tail->next = j;
    else
        l->head = j;
    l->tail = j;
}

static struct job *take_all(struct job_list *l)
{
    struct job *h = l->head;
    l->head = l->tail = NULL;
    return h;
}

static void *worker(void *arg)
{
    struct store_jobs *j = arg;
    pthread_mutex_lock(&j->mu);
    for (;;) {
        while (j->todo.head == NULL && !j->stopping) pthread_cond_wait(&j->wake, &j->mu);
        struct job *job = j->todo.head;
        if (job == NULL) break; /* stopping and nothing left */
        j->todo.head = job->next;
        if (j->todo.head == NULL) j->todo.tail = NULL;
        pthread_mutex_unlock(&j->mu);
        job->run(&j->store, job->ud);
        pthread_mutex_lock(&j->mu);
        push(&j->finished, job);
        event_active(j->notify, EV_TIMEOUT, 0);
    }
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

static void run_done(struct store_jobs *j)
{
    pthread_mutex_lock(&j->mu);
    struct job *job = take_all(&j->finished);
    pthread_mutex_unlock(&j->mu);
    while (job) {
        struct job *next = job->next;
        if (job->done) job->done(job->ud);
        free(job);
        job = next;
    }
}

static void on_notify(evutil_socket_t fd, short what, void *ud)
{
    (void)fd;
    (void)what;
    run_done(ud);
}

struct store_jobs *store_jobs_start(struct event_base *loop, struct store_handle store)
{
    struct store_jobs *j = calloc(1, sizeof *j);
    if (j == NULL) {
        store_close(&store);
        return NULL;
    }
    j->store = store;
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->wake, NULL);
    j->notify = event_new(loop, -1, 0, on_notify, j);
    if (j->notify == NULL || pthread_create(&j->thread, NULL, worker, j) != 0) {
        if (j->notify) event_free(j->notify);
        pthread_cond_destroy(&j->wake);
        pthread_mutex_destroy(&j->mu);
        store_close(&j->store);
        free(j);
        return NULL;
    }
    return j;
}

int store_jobs_submit(struct store_jobs *j, store_job_run_fn run, store_job_done_fn done, void *ud)
{
    struct job *job = calloc(1, sizeof *job);
    if (job == NULL) return -1;
    job->run = run;
    job->done = done;
    job->ud = ud;
    pthread_mutex_lock(&j->mu);
    push(&j->todo, job);
    pthread_cond_signal(&j->wake);
    pthread_mutex_unlock(&j->mu);
    return 0;
}

void store_jobs_stop(struct store_jobs *j)
{
    if (j == NULL) return;
    pthread_mutex_lock(&j->mu);
    j->stopping = true;
    pthread_cond_signal(&j->wake);
    pthread_mutex_unlock(&j->mu);
    pthread_join(j->thread, NULL);
    run_done(j); /* owners free what their jobs carried */
    event_free(j->notify);
    pthread_cond_destroy(&j->wake);
    pthread_mutex_destroy(&j->mu);
    store_close(&j->store);
    free(j);
}
