/*
 * DESIGN: fork + exec of our own binary (the engine is a subcommand), stderr inherited so
 * the worker's JSON log lines join the gateway's. SIGCHLD arrives through libevent (a
 * signal event), and every exit is reaped with waitpid(WNOHANG). A crash schedules a
 * restart after 250 ms, doubling up to 30 s; a worker that stayed up for a minute starts
 * the backoff over. Requests meanwhile fail over to the model group's next target, because
 * connecting to a missing socket is an ordinary connect error.
 */
#include "engine/supervisor.h"

#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "obs/log.h"
#include "providers/provider.h"
#include "util/clock.h"

#define MAX_WORKERS 64

struct worker_proc {
    struct supervisor *s;
    struct backend *b;
    pid_t pid;
    int restarts;
    bool missing_logged; /* the missing model file was reported (once per absence) */
    uint64_t started_ns;
    struct event *restart_timer;
    bool retired; /* supervisor_remove: b is gone; the process is only waited for */
};

struct supervisor {
    struct event_base *loop;
    char *exe;
    char run_dir[64];
    struct event *sigchld;
    struct worker_proc workers[MAX_WORKERS];
    int n;
    unsigned next_socket; /* socket names are never reused: a stopping worker may hold one */
    bool stopping;
};

/* Starts the worker again after a backoff (250 ms doubling to 30 s). @return the delay. */
static long schedule_restart(struct worker_proc *w)
{
    if (clock_now_ns() - w->started_ns > 60ull * 1000000000ull) w->restarts = 0;
    long delay = 250L << (w->restarts < 7 ? w->restarts : 7);
    if (delay > 30000) delay = 30000;
    w->restarts++;
    struct timeval tv = {delay / 1000, (delay % 1000) * 1000};
    evtimer_add(w->restart_timer, &tv);
    return delay;
}

/* A worker without its model file can only exit, and the user would read "connect failed"
 * or an exit code. Checked before each start, so the reason names the file and how to get
 * it; the check repeats on the restart schedule, so the engine starts once the file exists. */
static bool model_file_missing(struct worker_proc *w)
{
    const char *path = w->b->conf->model_path;
    if (access(path, R_OK) == 0) {
        w->missing_logged = false;
        return false;
    }
    int e = errno;
    /* The demo models are build products (the default config points at one). */
    const char *hint = strstr(path, "build/models/") ? " (run make models)" : "";
    snprintf(w->b->not_ready_reason, sizeof w->b->not_ready_reason, "model file %s: %s%s", path,
             strerror(e), hint);
    w->b->ready = false;
    if (!w->missing_logged) {
        w->missing_logged = true;
        struct log_line l;
        log_begin(&l, "warn", "engine_model_missing");
        log_str(&l, "backend", w->b->conf->name);
        log_str(&l, "model_path", path);
        log_str(&l, "message", w->b->not_ready_reason);
        log_end(&l);
    }
    return true;
}

static void spawn(struct worker_proc *w)
{
    const struct backend_conf *c = w->b->conf;
    if (model_file_missing(w)) {
        schedule_restart(w);
        return;
    }
    char parallel[16], threads[16], ctx[16], queue[16], chunk[16];
    snprintf(parallel, sizeof parallel, "%d", c->parallel);
    snprintf(threads, sizeof threads, "%d", c->threads);
    snprintf(ctx, sizeof ctx, "%d", c->ctx_size);
    snprintf(queue, sizeof queue, "%d", c->max_queue);
    snprintf(chunk, sizeof chunk, "%d", c->prefill_chunk);
    char *argv[] = {w->s->exe,
                    "engine",
                    "--model",
                    c->model_path,
                    "--socket",
                    w->b->unix_socket,
                    "--name",
                    c->name,
                    "--parallel",
                    parallel,
                    "--ctx",
                    ctx,
                    "--max-queue",
                    queue,
                    "--prefix-cache",
                    c->no_prefix_cache ? "off" : "on",
                    "--prefill-chunk",
                    chunk, /* 0: the engine's default */
                    c->threads > 0 ? "--threads" : NULL,
                    threads,
                    NULL};
    pid_t gateway = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        /* Child: default signal dispositions, then become the worker. */
        signal(SIGPIPE, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        /* A worker never outlives its gateway, even one killed with SIGKILL. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        /* The gateway died before prctl took effect. Compared with its pid, not with 1: in a
         * container the gateway itself may be pid 1. */
        if (getppid() != gateway) _exit(0);
        execv(w->s->exe, argv);
        _exit(127);
    }
    if (pid < 0) {
        log_msg("error", "engine_spawn_failed", "backend '%s': fork: %s", c->name, strerror(errno));
        return;
    }
    w->pid = pid;
    w->started_ns = clock_now_ns();
    /* Until its /stats answers (the gateway's probe), a started worker is loading. */
    snprintf(w->b->not_ready_reason, sizeof w->b->not_ready_reason, "loading model");
    struct log_line l;
    log_begin(&l, "info", "engine_started");
    log_str(&l, "backend", c->name);
    log_int(&l, "pid", pid);
    log_str(&l, "model_path", c->model_path);
    log_end(&l);
}

static void on_restart(evutil_socket_t fd, short what, void *ud)
{
    struct worker_proc *w = ud;
    (void)fd;
    (void)what;
    if (!w->s->stopping && w->pid == 0) spawn(w);
}

static void on_sigchld(evutil_socket_t sig, short what, void *ud)
{
    struct supervisor *s = ud;
    (void)sig;
    (void)what;
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (int i = 0; i < s->n; i++) {
            struct worker_proc *w = &s->workers[i];
            if (w->pid != pid) continue;
            w->pid = 0;
            if (w->retired) {
                log_msg("info", "engine_stopped", "retired engine worker %d exited", (int)pid);
                break;
            }
            w->b->ready = false;
            char why[64];
            if (WIFEXITED(status))
                snprintf(why, sizeof why, "exit code %d", WEXITSTATUS(status));
            else
                snprintf(why, sizeof why, "signal %d", WTERMSIG(status));
            if (s->stopping) break;
            snprintf(w->b->not_ready_reason, sizeof w->b->not_ready_reason,
                     "engine exited (%s); restarting", why);
            long delay = schedule_restart(w);
            struct log_line l;
            log_begin(&l, "warn", "engine_exited");
            log_str(&l, "backend", w->b->conf->name);
            log_int(&l, "pid", pid);
            log_str(&l, "reason", why);
            log_int(&l, "restart_in_ms", delay);
            log_end(&l);
        }
    }
}

struct supervisor *supervisor_new(struct event_base *loop, const char *exe, struct err *err)
{
    struct supervisor *s = calloc(1, sizeof *s);
    if (s == NULL) {
        err_oom(err);
        return NULL;
    }
    s->loop = loop;
    s->exe = strdup(exe);
    const char *tmp = getenv("TMPDIR");
    snprintf(s->run_dir, sizeof s->run_dir, "%s/stratus-XXXXXX",
             tmp && *tmp && strlen(tmp) < 30 ? tmp : "/tmp");
    if (s->exe == NULL || mkdtemp(s->run_dir) == NULL) { /* mkdtemp makes it 0700 */
        err_set(err, 500, "server_error", NULL, "cannot create a run directory: %s",
                strerror(errno));
        s->run_dir[0] = '\0';
        supervisor_free(s);
        return NULL;
    }
    s->sigchld = evsignal_new(loop, SIGCHLD, on_sigchld, s);
    if (s->sigchld == NULL || event_add(s->sigchld, NULL) != 0) {
        err_set(err, 500, "server_error", NULL, "cannot watch worker processes");
        supervisor_free(s);
        return NULL;
    }
    return s;
}

int supervisor_add(struct supervisor *s, struct backend *b, struct err *err)
{
    /* A retired worker's slot is taken again once its process is gone (reloads). */
    struct worker_proc *w = NULL;
    for (int i = 0; i < s->n && w == NULL; i++)
        if (s->workers[i].retired && s->workers[i].pid == 0) w = &s->workers[i];
    if (w == NULL && s->n == MAX_WORKERS)
        return err_set(err, 500, "server_error", NULL, "at most %d local backends", MAX_WORKERS);
    bool fresh = w == NULL;
    if (fresh) w = &s->workers[s->n];
    char path[128];
    snprintf(path, sizeof path, "%s/engine-%u.sock", s->run_dir, s->next_socket);
    char *socket = strdup(path);
    if (fresh) w->restart_timer = evtimer_new(s->loop, on_restart, w);
    if (socket == NULL || w->restart_timer == NULL) {
        free(socket);
        if (fresh && w->restart_timer) event_free(w->restart_timer);
        if (fresh) w->restart_timer = NULL;
        return err_oom(err);
    }
    s->next_socket++;
    free(b->unix_socket);
    b->unix_socket = socket;
    w->s = s;
    w->b = b;
    w->restarts = 0;
    w->missing_logged = false;
    w->retired = false;
    snprintf(b->not_ready_reason, sizeof b->not_ready_reason, "loading model");
    if (fresh) s->n++;
    spawn(w);
    return 0;
}

void supervisor_remove(struct supervisor *s, struct backend *b)
{
    if (s == NULL) return;
    for (int i = 0; i < s->n; i++) {
        struct worker_proc *w = &s->workers[i];
        if (w->retired || w->b != b) continue;
        evtimer_del(w->restart_timer);
        if (b->unix_socket) unlink(b->unix_socket); /* nobody connects to it again */
        if (w->pid > 0) {
            struct log_line l;
            log_begin(&l, "info", "engine_stopping");
            log_str(&l, "backend", b->conf->name);
            log_int(&l, "pid", w->pid);
            log_str(&l, "message", "its settings changed or it left the config");
            log_end(&l);
            kill(w->pid, SIGTERM);
        }
        w->retired = true;
        w->b = NULL;
        return;
    }
}

bool supervisor_running(const struct supervisor *s, const struct backend *b)
{
    for (int i = 0; i < s->n; i++)
        if (!s->workers[i].retired && s->workers[i].b == b) return s->workers[i].pid > 0;
    return false;
}

void supervisor_stop(struct supervisor *s, long grace_ms)
{
    if (s == NULL) return;
    s->stopping = true;
    for (int i = 0; i < s->n; i++) {
        evtimer_del(s->workers[i].restart_timer);
        if (s->workers[i].pid > 0) kill(s->workers[i].pid, SIGTERM);
    }
    uint64_t deadline = clock_now_ns() + (uint64_t)grace_ms * 1000000u;
    for (;;) {
        bool any = false;
        for (int i = 0; i < s->n; i++) {
            struct worker_proc *w = &s->workers[i];
            if (w->pid <= 0) continue;
            if (waitpid(w->pid, NULL, WNOHANG) == w->pid)
                w->pid = 0;
            else
                any = true;
        }
        if (!any) break;
        if (clock_now_ns() >= deadline) {
            for (int i = 0; i < s->n; i++)
                if (s->workers[i].pid > 0) {
                    kill(s->workers[i].pid, SIGKILL);
                    waitpid(s->workers[i].pid, NULL, 0);
                    s->workers[i].pid = 0;
                }
            break;
        }
        usleep(10000); /* shutdown only: the loop has stopped serving */
    }
}

void supervisor_free(struct supervisor *s)
{
    if (s == NULL) return;
    supervisor_stop(s, 2000);
    for (int i = 0; i < s->n; i++) {
        if (s->workers[i].restart_timer) event_free(s->workers[i].restart_timer);
        if (!s->workers[i].retired && s->workers[i].b && s->workers[i].b->unix_socket)
            unlink(s->workers[i].b->unix_socket);
    }
    if (s->sigchld) event_free(s->sigchld);
    if (s->run_dir[0]) rmdir(s->run_dir);
    free(s->exe);
    free(s);
}

/* Everything spawn() passes on the worker's command line. */
bool supervisor_same_worker(const struct backend_conf *a, const struct backend_conf *b)
{
    return a->type == b->type && strcmp(a->name, b->name) == 0 && a->model_path && b->model_path &&
           strcmp(a->model_path, b->model_path) == 0 && a->parallel == b->parallel &&
           a->threads == b->threads && a->ctx_size == b->ctx_size && a->max_queue == b->max_queue &&
           a->no_prefix_cache == b->no_prefix_cache && a->prefill_chunk == b->prefill_chunk;
}
