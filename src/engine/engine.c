/*
 * DESIGN
 * Why one file of ~1,500 lines: the engine thread's decode loop, the job lifecycle and the
 * loop-thread side share one struct under one lock discipline, which is easier to check in
 * one place than across files.
 *
 * Two threads share a small, mutex-protected surface: the queue of jobs waiting for a slot,
 * each job's cancel flag, and an outbox of events. Everything about llama.cpp — the context,
 * the batch, sampler chains, token buffers — belongs to the engine thread alone, so decode
 * steps run without holding the lock. The loop thread is woken for the outbox with
 * event_active() (libevent built with pthreads support), never by polling.
 *
 * A job's memory is released by the loop thread only, after the engine thread has sent its
 * final event (DONE, FAILED, or a silent RELEASED for cancelled jobs): no job is freed while
 * the other thread may still touch it.
 *
 * Each decode step first gives every generating slot its one next token, then adds at most
 * opts.prefill_chunk prompt tokens (chunked prefill), all of them to the prompt submitted
 * first until it is fed, then to the next: a long prompt joining cannot stall streams that
 * are already running (it spans several steps, each of which advances them), and prompts
 * that arrive together reach their first tokens one after the other instead of all at the
 * end of one long step. Decoding prompts together saves nothing on a CPU, where a step
 * costs about the same per token whatever mixes in it (bench/sched/step_cost: a step's time
 * grows with its tokens, and decode tokens plus a prompt chunk in one batch cost what the
 * two cost apart), so serving them in order lowers the median time to first token, and the
 * streams they start, staggered, let the next newcomers share steps with running streams
 * rather than wait for a whole wave of prompts. One llama_batch still holds everything in
 * the step (llama.cpp splits it into n_ubatch-sized pieces itself).
 *
 * Engine time: each step's wall time (llama_decode plus the sampling after it) is split
 * between the jobs in its batch by the tokens each contributed, so the shares add up to the
 * time the engine was busy stepping and a local request is priced from what it used (see
 * cost.h), from its first request on. Jobs that end in a step are finished only after the
 * step is charged, so their share of it is in their totals.
 *
 * Prompt-prefix cache: each slot mirrors its KV cells in `cache[slot]` (position i holds
 * tokens[i]), written as tokens enter a batch. The mirror is only trusted between decode
 * steps; a failed decode forgets it (and the cells) for every slot that was in the batch.
 * Slots keep separate KV streams (kv_unified off), so what an idle slot keeps never takes
 * cells from a busy one, and a slot is always taken whole: copying a prefix out of a busy
 * slot (llama_memory_seq_cp) would copy that slot's entire stream across, which is left
 * out. Scoring and embeddings run on contexts of their own and never touch these cells.
 */
#include "engine/engine.h"

#include <errno.h>
#include <math.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <llama.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/prefix.h"
#include "obs/log.h"
#include "util/clock.h"

/* Our own JSON grammar (GBNF) for response_format json_object: an object at the root,
 * bounded whitespace so a weak model cannot wander off into spaces. */
static const char json_grammar[] =
    "root   ::= object\n"
    "value  ::= object | array | string | number | (\"true\" | \"false\" | \"null\") ws\n"
    "object ::= \"{\" ws ( string \":\" ws value ( \",\" ws string \":\" ws value )* )? \"}\" ws\n"
    "array  ::= \"[\" ws ( value ( \",\" ws value )* )? \"]\" ws\n"
    "string ::= \"\\\"\" ( [^\"\\\\\\x7F\\x00-\\x1F] | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" "
    "[0-9a-fA-F]{4} ) )* \"\\\"\" ws\n"
    "number ::= \"-\"? ( \"0\" | [1-9] [0-9]{0,15} ) ( \".\" [0-9]{1,16} )? ( [eE] [-+]? "
    "[0-9]{1,3} )? ws\n"
    "ws     ::= [ \\t\\n]{0,8}\n";

enum msg_kind { MSG_TEXT, MSG_DONE, MSG_FAILED, MSG_RELEASED, MSG_EMBEDDINGS, MSG_SCORES };

struct msg {
    struct msg *next;
    struct engine_job *job;
    enum msg_kind kind;
    char *text; /* owned */
    size_t len;
    const char *finish_reason;
    int prompt_tokens, completion_tokens, cached_tokens;
    double ttft_ms;
    double queue_ms, prefill_ms, decode_ms, engine_ms; /* see struct engine_event */
    struct err err;
    float *vectors; /* owned; MSG_EMBEDDINGS */
    size_t n_vectors;
    int dim;
    struct engine_logprob *logprobs; /* owned; MSG_TEXT */
    size_t n_logprobs;
    double *scores; /* owned; MSG_SCORES */
    size_t n_prompts, n_labels;
};

struct engine_job {
    struct engine *e;
    engine_event_cb cb;
    void *ud;
    struct engine_job *next; /* queue link */
    bool cancelled;          /* under e->mu */
    /* engine thread only: */
    llama_token *prompt;
    int n_prompt, n_fed, n_generated;
    int n_reused; /* prompt tokens whose KV cells the slot held already */
    int slot;
    llama_token last;
    bool want_logits_now;
    int batch_index;
    struct llama_sampler *chain;
    struct engine_sampling s;
    char **stop;
    size_t n_stop, max_stop;
    char *pending;
    size_t pending_len, pending_cap;
    char *grammar;          /* owned copy of s.grammar */
    llama_logit_bias *bias; /* owned copy of s.logit_bias */
    uint64_t submit_ns, first_token_ns;
    uint64_t slot_ns; /* when it took a slot (side jobs: when their work began) */
    /* engine time: tokens put in the current step's batch, and the step time charged so far */
    int step_prompt, step_generated;
    double prefill_ns, decode_ns;
    const char *ending; /* set in a step: finish with this reason once the step is charged */
    /* logprobs of generated tokens not sent yet; lp_end[i] = where entry i's text ends in
     * the job's text stream, so an entry leaves with the event that carries its text */
    struct engine_logprob *lp;
    size_t *lp_end;
    size_t n_lp, cap_lp;
    size_t text_total, text_emitted; /* bytes appended to / sent from `pending` */
    /* embedding and scoring jobs: each input's (prompt's) tokens */
    llama_token **inputs;
    int *input_len;
    size_t n_inputs;
    /* scoring jobs: each label's tokens after each prompt (prompt i, label l at
     * i * n_labels + l: how a label tokenises can depend on the text before it) */
    llama_token **labels;
    int *label_len;
    size_t n_labels;
};

/* What one slot's KV cells hold: tokens[i] at position i, for i < n. */
struct slot_cache {
    llama_token *tokens; /* owned */
    int n, cap;
    uint64_t last_used; /* e->use_clock when a job last left or took the slot */
};

struct engine {
    struct engine_opts opts;
    struct llama_model *model;
    const struct llama_vocab *vocab;
    struct llama_context *ctx;
    struct llama_batch batch;
    int ctx_per_slot;
    llama_logit_bias *eog_bias; /* owned: -inf for every end-of-generation token (ignore_eos) */
    int n_eog;
    char *template_text; /* owned copy of the model's chat template, or NULL */
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    struct engine_job *queue_head, *queue_tail; /* under mu */
    int queue_len;                              /* under mu */
    struct engine_job *embed_head, *embed_tail; /* under mu */
    struct llama_context *embed_ctx;            /* engine thread; made on first use */
    struct engine_job *score_head, *score_tail; /* under mu */
    struct llama_context *score_ctx;            /* engine thread; made on first use */
    struct msg *outbox_head, *outbox_tail;      /* under mu */
    struct event notify;                        /* loop thread: drains the outbox */
    struct engine_job **slots;                  /* engine thread */
    struct slot_cache *cache;                   /* engine thread: one per slot */
    struct prefix_slot *pick;                   /* engine thread: take_slot's scratch */
    uint64_t use_clock;                         /* engine thread: orders slots by last use */
    /* stats, under mu */
    int busy;
    uint64_t tokens_total;
    double ttft_avg;
    uint64_t window_start_ns, window_tokens;
    double tokens_per_s;
    uint64_t last_token_ns;
    uint64_t prompt_tokens, prefix_reused, prefix_hits;
    uint64_t requests_done;
    double queue_ms_total, prefill_ms_total, decode_ms_total;
    double queue_ms_avg, prefill_ms_avg, decode_ms_avg;
};

/* Physical cores (distinct physical id/core id pairs in /proc/cpuinfo): llama.cpp runs best
 * with one thread per core; hyper-threads and oversubscription slow it down. */
static long physical_cores(void)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    long pairs[1024], n = 0, phys = 0, core = -1;
    char line[256];
    if (f == NULL) return sysconf(_SC_NPROCESSORS_ONLN);
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "physical id : %ld", &phys) == 1) continue;
        if (sscanf(line, "core id : %ld", &core) == 1) {
            long key = phys * 100000 + core;
            bool seen = false;
            for (long i = 0; i < n; i++) seen |= pairs[i] == key;
            if (!seen && n < 1024) pairs[n++] = key;
        }
    }
    fclose(f);
    return n > 0 ? n : sysconf(_SC_NPROCESSORS_ONLN);
}

struct engine_opts engine_default_opts(void)
{
    long cores = physical_cores();
    return (struct engine_opts){
        .parallel = 4,
        .threads = cores > 0 ? (int)cores : 1,
        .ctx_per_slot = 4096,
        .max_queue = 64,
        .batch_size = 512,
        .prefill_chunk = ENGINE_DEFAULT_PREFILL_CHUNK,
        .prefix_cache = true,
    };
}

struct engine_sampling engine_default_sampling(void)
{
    return (struct engine_sampling){
        .temperature = 1.0f, .top_p = 1.0f, .seed = 0xC0FFEE, .top_logprobs = -1};
}

/* ---- loop thread: delivering events ------------------------------------------------ */

static void job_free(struct engine_job *j)
{
    if (j == NULL) return;
    free(j->prompt);
    for (size_t i = 0; i < j->n_stop; i++) free(j->stop[i]);
    free(j->stop);
    free(j->pending);
    free(j->grammar);
    free(j->bias);
    for (size_t i = 0; i < j->n_inputs; i++) free(j->inputs[i]);
    free(j->inputs);
    free(j->input_len);
    for (size_t i = 0; j->labels && i < j->n_inputs * j->n_labels; i++) free(j->labels[i]);
    free(j->labels);
    free(j->label_len);
    free(j->lp);
    free(j->lp_end);
    if (j->chain) llama_sampler_free(j->chain);
    free(j);
}

static void on_notify(evutil_socket_t fd, short what, void *ud)
{
    struct engine *e = ud;
    (void)fd;
    (void)what;
    pthread_mutex_lock(&e->mu);
    struct msg *m = e->outbox_head;
    e->outbox_head = e->outbox_tail = NULL;
    pthread_mutex_unlock(&e->mu);
    while (m) {
        struct msg *next = m->next;
        struct engine_job *j = m->job;
        pthread_mutex_lock(&e->mu);
        bool cancelled = j->cancelled;
        pthread_mutex_unlock(&e->mu);
        if (!cancelled && m->kind != MSG_RELEASED) {
            struct engine_event ev = {
                .kind = m->kind == MSG_TEXT         ? ENGINE_TEXT
                        : m->kind == MSG_DONE       ? ENGINE_DONE
                        : m->kind == MSG_EMBEDDINGS ? ENGINE_EMBEDDINGS
                        : m->kind == MSG_SCORES     ? ENGINE_SCORES
                                                    : ENGINE_FAILED,
                .text = m->text,
                .len = m->len,
                .finish_reason = m->finish_reason,
                .prompt_tokens = m->prompt_tokens,
                .completion_tokens = m->completion_tokens,
                .cached_tokens = m->cached_tokens,
                .ttft_ms = m->ttft_ms,
                .queue_ms = m->queue_ms,
                .prefill_ms = m->prefill_ms,
                .decode_ms = m->decode_ms,
                .engine_ms = m->engine_ms,
                .err = m->err,
                .vectors = m->vectors,
                .n_vectors = m->n_vectors,
                .dim = m->dim,
                .logprobs = m->logprobs,
                .n_logprobs = m->n_logprobs,
                .scores = m->scores,
                .n_prompts = m->n_prompts,
                .n_labels = m->n_labels,
            };
            j->cb(j, &ev, j->ud);
        }
        if (m->kind != MSG_TEXT) job_free(j); /* final: the engine thread is done with it */
        free(m->text);
        free(m->vectors);
        free(m->logprobs);
        free(m->scores);
        free(m);
        m = next;
    }
}

/* ---- engine thread ------------------------------------------------------------------ */

static void post(struct engine *e, struct msg *m)
{
    pthread_mutex_lock(&e->mu);
    if (e->outbox_tail)
        e->outbox_tail->next = m;
    else
        e->outbox_head = m;
    e->outbox_tail = m;
    pthread_mutex_unlock(&e->mu);
    event_active(&e->notify, EV_TIMEOUT, 0);
}

static size_t utf8_complete_prefix(const char *s, size_t n)
{
    /* Back up over at most 3 continuation bytes to the last lead byte; keep it only if its
     * sequence is complete. */
    size_t i = n, back = 0;
    while (i > 0 && back < 4 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) {
        i--;
        back++;
    }
    if (i == 0) return back ? 0 : n;
    unsigned char lead = (unsigned char)s[i - 1];
    size_t need = lead < 0x80             ? 1
                  : (lead & 0xE0) == 0xC0 ? 2
                  : (lead & 0xF0) == 0xE0 ? 3
                  : (lead & 0xF8) == 0xF0 ? 4
                                          : 1;
    return back + 1 >= need ? n : i - 1;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when s starts an invalid one. */
static size_t utf8_sequence(const unsigned char *s, size_t n)
{
    size_t len = s[0] < 0x80             ? 1
                 : (s[0] & 0xE0) == 0xC0 ? 2
                 : (s[0] & 0xF0) == 0xE0 ? 3
                 : (s[0] & 0xF8) == 0xF0 ? 4
                                         : 0;
    if (len == 0 || len > n) return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    uint32_t cp = len == 1   ? s[0]
                  : len == 2 ? (s[0] & 0x1Fu)
                  : len == 3 ? (s[0] & 0x0Fu)
                             : (s[0] & 0x07u);
    for (size_t i = 1; i < len; i++) cp = (cp << 6) | (s[i] & 0x3Fu);
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0; /* overlong, surrogate */
    return len;
}

/* Sends the first n pending bytes as text. Tokens can carry raw bytes (byte-fallback
 * vocabularies) that do not form valid UTF-8 together; each invalid byte becomes U+FFFD so
 * clients always get valid UTF-8 text. */
static void emit_text(struct engine *e, struct engine_job *j, size_t n)
{
    if (n == 0) return;
    struct msg *m = calloc(1, sizeof *m);
    char *t = malloc(n * 3);
    if (m == NULL || t == NULL) {
        free(m);
        free(t);
        return;
    }
    const unsigned char *p = (const unsigned char *)j->pending;
    size_t w = 0;
    for (size_t i = 0; i < n;) {
        size_t len = utf8_sequence(p + i, n - i);
        if (len == 0) {
            memcpy(t + w, "\xEF\xBF\xBD", 3);
            w += 3;
            i++;
        } else {
            memcpy(t + w, p + i, len);
            w += len;
            i += len;
        }
    }
    memmove(j->pending, j->pending + n, j->pending_len - n);
    j->pending_len -= n;
    j->text_emitted += n;
    /* The logprob entries whose text is now wholly sent travel with it. */
    size_t k = 0;
    while (k < j->n_lp && j->lp_end[k] <= j->text_emitted) k++;
    if (k > 0 && (m->logprobs = malloc(k * sizeof *m->logprobs)) != NULL) {
        memcpy(m->logprobs, j->lp, k * sizeof *m->logprobs);
        m->n_logprobs = k;
        memmove(j->lp, j->lp + k, (j->n_lp - k) * sizeof *j->lp);
        memmove(j->lp_end, j->lp_end + k, (j->n_lp - k) * sizeof *j->lp_end);
        j->n_lp -= k;
    }
    m->job = j;
    m->kind = MSG_TEXT;
    m->text = t;
    m->len = w;
    post(e, m);
}

/* ---- prompt-prefix cache (engine thread) ---- */

/* Removes a slot's cells and forgets what they held. */
static void cache_forget(struct engine *e, int slot)
{
    llama_memory_seq_rm(llama_get_memory(e->ctx), slot, -1, -1);
    e->cache[slot].n = 0;
}

/* A job left `slot` between decode steps. With the prefix cache its cells stay for the next
 * prompt that shares their prefix; without, they are removed at once. */
static void release_slot(struct engine *e, int slot)
{
    e->slots[slot] = NULL;
    if (e->opts.prefix_cache)
        e->cache[slot].last_used = ++e->use_clock;
    else
        cache_forget(e, slot);
}

/* Notes that token `t` enters `slot`'s cells at `pos`. The mirror only ever grows by one
 * position at a time: after a failed allocation it stops short, and the cells it does not
 * name are never reused (taking the slot removes everything past the reused prefix). */
static void cache_put(struct engine *e, int slot, int pos, llama_token t)
{
    struct slot_cache *c = &e->cache[slot];
    if (!e->opts.prefix_cache || pos != c->n) return;
    if (c->n == c->cap) {
        int cap = c->cap ? c->cap * 2 : 256;
        llama_token *grown = realloc(c->tokens, (size_t)cap * sizeof *grown);
        if (grown == NULL) return;
        c->tokens = grown;
        c->cap = cap;
    }
    c->tokens[c->n++] = t;
}

/* Gives `j` a free slot, keeping the cells of the longest prefix it shares with what a free
 * slot holds. @return the slot, or -1 when none is free. */
static int take_slot(struct engine *e, struct engine_job *j)
{
    int i = -1, reuse = 0;
    if (!e->opts.prefix_cache) {
        for (int k = 0; k < e->opts.parallel && i < 0; k++)
            if (e->slots[k] == NULL) i = k;
        return i;
    }
    for (int k = 0; k < e->opts.parallel; k++)
        e->pick[k] = (struct prefix_slot){.tokens = e->cache[k].tokens,
                                          .n_tokens = e->cache[k].n,
                                          .last_used = e->cache[k].last_used,
                                          .busy = e->slots[k] != NULL};
    i = prefix_pick(e->pick, e->opts.parallel, j->prompt, j->n_prompt, &reuse);
    if (i < 0) return -1;
    /* The cells past the shared prefix go. A memory that cannot drop part of a sequence
     * (recurrent models) or no longer holds the prefix's start (a sliding window) starts the
     * slot over; so does one that holds fewer cells than the mirror says. */
    llama_memory_t mem = llama_get_memory(e->ctx);
    if (reuse > 0 &&
        (llama_memory_seq_pos_min(mem, i) != 0 || llama_memory_seq_pos_max(mem, i) < reuse - 1 ||
         !llama_memory_seq_rm(mem, i, reuse, -1)))
        reuse = 0;
    if (reuse == 0) llama_memory_seq_rm(mem, i, -1, -1);
    e->cache[i].n = reuse;
    e->cache[i].last_used = ++e->use_clock;
    j->n_fed = j->n_reused = reuse;
    return i;
}

/* Nanoseconds as milliseconds rounded to the microsecond: finer is clock noise, and a
 * rounded figure prints short in JSON. */
static double ms_us(double ns)
{
    return round(ns / 1e3) / 1e3;
}

static void finish(struct engine *e, struct engine_job *j, const char *reason)
{
    /* Whatever is left is final text; an incomplete UTF-8 tail can never complete. */
    emit_text(e, j, utf8_complete_prefix(j->pending, j->pending_len));
    struct msg *m = calloc(1, sizeof *m);
    if (m == NULL) return;
    m->job = j;
    m->kind = MSG_DONE;
    m->finish_reason = reason;
    m->prompt_tokens = j->n_prompt;
    m->completion_tokens = j->n_generated;
    m->cached_tokens = j->n_reused;
    m->ttft_ms = j->first_token_ns ? ms_us((double)(j->first_token_ns - j->submit_ns)) : -1;
    m->queue_ms = ms_us((double)(j->slot_ns - j->submit_ns));
    m->prefill_ms = ms_us(j->prefill_ns);
    m->decode_ms = ms_us(j->decode_ns);
    m->engine_ms = ms_us(j->prefill_ns + j->decode_ns);
    release_slot(e, j->slot);
    pthread_mutex_lock(&e->mu);
    e->busy--;
    e->requests_done++;
    e->queue_ms_total += m->queue_ms;
    e->prefill_ms_total += m->prefill_ms;
    e->decode_ms_total += m->decode_ms;
    bool first = e->requests_done == 1;
    e->queue_ms_avg = first ? m->queue_ms : e->queue_ms_avg * 0.8 + m->queue_ms * 0.2;
    e->prefill_ms_avg = first ? m->prefill_ms : e->prefill_ms_avg * 0.8 + m->prefill_ms * 0.2;
    e->decode_ms_avg = first ? m->decode_ms : e->decode_ms_avg * 0.8 + m->decode_ms * 0.2;
    pthread_mutex_unlock(&e->mu);
    post(e, m);
}

/* Appends a token's text; emits what is decided; returns true when a stop string ended it. */
static bool take_piece(struct engine *e, struct engine_job *j, const char *piece, size_t n)
{
    if (j->pending_len + n > j->pending_cap) {
        size_t cap = (j->pending_len + n) * 2 + 64;
        char *p = realloc(j->pending, cap);
        if (p == NULL) return false;
        j->pending = p;
        j->pending_cap = cap;
    }
    memcpy(j->pending + j->pending_len, piece, n);
    j->pending_len += n;
    j->text_total += n;
    for (size_t k = 0; k < j->n_stop; k++) {
        const char *hit = memmem(j->pending, j->pending_len, j->stop[k], strlen(j->stop[k]));
        if (hit) {
            j->pending_len = (size_t)(hit - j->pending);
            return true;
        }
    }
    size_t ok = utf8_complete_prefix(j->pending, j->pending_len);
    /* Hold back a tail that could still become a stop string. */
    size_t hold = 0;
    for (size_t k = 0; k < j->n_stop; k++) {
        size_t sl = strlen(j->stop[k]);
        for (size_t h = sl - 1; h > hold; h--)
            if (h <= ok && memcmp(j->pending + ok - h, j->stop[k], h) == 0) {
                hold = h;
                break;
            }
    }
    emit_text(e, j, ok - hold);
    return false;
}

/* log(sum(exp(row))), computed stably. */
static double log_sum_exp(const float *row, int n)
{
    float max = row[0];
    for (int i = 1; i < n; i++)
        if (row[i] > max) max = row[i];
    double sum = 0;
    for (int i = 0; i < n; i++) sum += exp((double)row[i] - max);
    return max + log(sum);
}

static void copy_piece(const struct llama_vocab *vocab, llama_token t, char *out, int *len)
{
    int n = llama_token_to_piece(vocab, t, out, 64, 0, false);
    *len = n > 0 ? n : 0;
}

/* Keeps the logprob of the token just sampled (from the raw logits, as OpenAI reports them)
 * and its most likely alternatives, until the text it produced is sent. */
static void note_logprob(struct engine *e, struct engine_job *j, llama_token t, size_t piece_len)
{
    const float *row = llama_get_logits_ith(e->ctx, j->batch_index);
    if (row == NULL) return;
    if (j->n_lp == j->cap_lp) {
        size_t cap = j->cap_lp ? j->cap_lp * 2 : 16;
        struct engine_logprob *lp = realloc(j->lp, cap * sizeof *lp);
        if (lp == NULL) return;
        j->lp = lp;
        size_t *end = realloc(j->lp_end, cap * sizeof *end);
        if (end == NULL) return;
        j->lp_end = end;
        j->cap_lp = cap;
    }
    int n_vocab = llama_vocab_n_tokens(e->vocab);
    double lse = log_sum_exp(row, n_vocab);
    struct engine_logprob *lp = &j->lp[j->n_lp];
    memset(lp, 0, sizeof *lp);
    copy_piece(e->vocab, t, lp->token, &lp->token_len);
    lp->logprob = (float)(row[t] - lse);
    /* The n best, by insertion into a short sorted list. */
    int want = j->s.top_logprobs, n = 0;
    llama_token best[ENGINE_MAX_TOP_LOGPROBS];
    for (int v = 0; v < n_vocab && want > 0; v++) {
        if (n == want && row[v] <= row[best[n - 1]]) continue;
        int at = n < want ? n++ : n - 1;
        while (at > 0 && row[best[at - 1]] < row[v]) {
            best[at] = best[at - 1];
            at--;
        }
        best[at] = v;
    }
    lp->n_top = n;
    for (int k = 0; k < n; k++) {
        copy_piece(e->vocab, best[k], lp->top[k].token, &lp->top[k].token_len);
        lp->top[k].logprob = (float)(row[best[k]] - lse);
    }
    j->lp_end[j->n_lp++] = j->text_total + piece_len;
}

/* `bias`: s->n_logit_bias entries (the job's copy of s->logit_bias). */
static struct llama_sampler *make_chain(struct engine *e, const struct engine_sampling *s,
                                        const llama_logit_bias *bias, struct err *err)
{
    struct llama_sampler *c = llama_sampler_chain_init(llama_sampler_chain_default_params());
    if (c == NULL) {
        err_oom(err);
        return NULL;
    }
    /* ignore_eos: a grammar decides where its output ends (once complete it allows only the
     * end of generation), so it is left alone there. */
    if (s->ignore_eos && !s->json && !s->grammar && e->n_eog > 0)
        llama_sampler_chain_add(c, llama_sampler_init_logit_bias(llama_vocab_n_tokens(e->vocab),
                                                                 e->n_eog, e->eog_bias));
    if (s->n_logit_bias > 0)
        llama_sampler_chain_add(c, llama_sampler_init_logit_bias(llama_vocab_n_tokens(e->vocab),
                                                                 (int32_t)s->n_logit_bias, bias));
    if (s->json || s->grammar) {
        struct llama_sampler *g =
            llama_sampler_init_grammar(e->vocab, s->grammar ? s->grammar : json_grammar, "root");
        if (g == NULL) {
            llama_sampler_free(c);
            err_set(err, 500, "server_error", NULL, "cannot build the output grammar");
            return NULL;
        }
        llama_sampler_chain_add(c, g);
    }
    if (s->presence_penalty != 0 || s->frequency_penalty != 0)
        llama_sampler_chain_add(c, llama_sampler_init_penalties(llama_vocab_n_tokens(e->vocab), 64,
                                                                1.0f, s->frequency_penalty,
                                                                s->presence_penalty));
    if (s->temperature <= 0) {
        llama_sampler_chain_add(c, llama_sampler_init_greedy());
        return c;
    }
    if (s->top_k > 0) llama_sampler_chain_add(c, llama_sampler_init_top_k(s->top_k));
    if (s->top_p > 0 && s->top_p < 1)
        llama_sampler_chain_add(c, llama_sampler_init_top_p(s->top_p, 1));
    if (s->min_p > 0) llama_sampler_chain_add(c, llama_sampler_init_min_p(s->min_p, 1));
    llama_sampler_chain_add(c, llama_sampler_init_temp(s->temperature));
    llama_sampler_chain_add(c, llama_sampler_init_dist(s->seed));
    return c;
}

/* Tells the loop thread it may free a cancelled job (silently). Called with mu held. */
static void post_released_locked(struct engine *e, struct engine_job *j)
{
    struct msg *m = calloc(1, sizeof *m);
    if (m == NULL) return; /* the job leaks rather than being freed while in use */
    m->job = j;
    m->kind = MSG_RELEASED;
    if (e->outbox_tail)
        e->outbox_tail->next = m;
    else
        e->outbox_head = m;
    e->outbox_tail = m;
    event_active(&e->notify, EV_TIMEOUT, 0);
}

/* Moves queued jobs into free slots; releases cancelled ones. Called with mu held (the
 * slot and cache state it touches is the engine thread's, which is the caller). */
static void admit(struct engine *e)
{
    for (int i = 0; i < e->opts.parallel; i++) {
        struct engine_job *j = e->slots[i];
        if (j && j->cancelled) {
            release_slot(e, i); /* between steps: the cells hold what the mirror says */
            e->busy--;
            post_released_locked(e, j);
        }
    }
    while (e->queue_head) {
        struct engine_job *j = e->queue_head;
        int i = j->cancelled ? -1 : take_slot(e, j);
        if (i < 0 && !j->cancelled) break; /* every slot is busy */
        e->queue_head = j->next;
        if (e->queue_head == NULL) e->queue_tail = NULL;
        e->queue_len--;
        j->next = NULL;
        if (j->cancelled) {
            post_released_locked(e, j);
            continue;
        }
        j->slot = i;
        j->slot_ns = clock_now_ns();
        e->slots[i] = j;
        e->busy++;
        e->prompt_tokens += (uint64_t)j->n_prompt;
        e->prefix_reused += (uint64_t)j->n_reused;
        if (j->n_reused > 0) e->prefix_hits++;
    }
}

static void record_tokens(struct engine *e, int n)
{
    uint64_t now = clock_now_ns();
    pthread_mutex_lock(&e->mu);
    e->tokens_total += (uint64_t)n;
    /* Throughput while busy: an idle gap restarts the window instead of diluting it. */
    if (e->window_start_ns == 0 || now - e->last_token_ns > 1000000000ull) {
        double busy = (double)(e->last_token_ns - e->window_start_ns) / 1e9;
        if (e->window_start_ns && busy >= 0.2 && e->window_tokens > 0)
            e->tokens_per_s = (double)e->window_tokens / busy; /* a short burst still counts */
        e->window_start_ns = now;
        e->window_tokens = 0;
    }
    e->last_token_ns = now;
    e->window_tokens += (uint64_t)n;
    double secs = (double)(now - e->window_start_ns) / 1e9;
    if (secs >= 2.0) {
        e->tokens_per_s = (double)e->window_tokens / secs;
        e->window_start_ns = now;
        e->window_tokens = 0;
    }
    pthread_mutex_unlock(&e->mu);
}

/* Charges a step's wall time `ns` to the jobs in its batch of `n_tokens` tokens, in
 * proportion to the tokens each put in it: a long prompt joining pays for the work its
 * prompt adds, a stream pays one token's share. */
static void charge_step(struct engine *e, uint64_t ns, int n_tokens)
{
    for (int i = 0; i < e->opts.parallel; i++) {
        struct engine_job *j = e->slots[i];
        if (j == NULL) continue;
        j->prefill_ns += (double)ns * j->step_prompt / n_tokens;
        j->decode_ns += (double)ns * j->step_generated / n_tokens;
        j->step_prompt = j->step_generated = 0;
    }
}

static void step(struct engine *e)
{
    struct llama_batch *b = &e->batch;
    b->n_tokens = 0;
    int budget = e->opts.batch_size;
    for (int i = 0; i < e->opts.parallel; i++)
        if (e->slots[i]) e->slots[i]->batch_index = -1; /* nothing to sample unless set below */
    /* Generating slots first: one token each. */
    for (int i = 0; i < e->opts.parallel && budget > 0; i++) {
        struct engine_job *j = e->slots[i];
        if (j == NULL) continue;
        if (j->chain == NULL) {
            struct err err;
            err_clear(&err);
            j->chain = make_chain(e, &j->s, j->bias, &err);
            if (j->chain == NULL) {
                struct msg *m = calloc(1, sizeof *m);
                release_slot(e, i);
                pthread_mutex_lock(&e->mu);
                e->busy--;
                pthread_mutex_unlock(&e->mu);
                if (m) {
                    m->job = j;
                    m->kind = MSG_FAILED;
                    m->err = err;
                    post(e, m);
                }
                continue;
            }
        }
        if (j->n_fed < j->n_prompt) continue;
        j->step_generated = 1;
        budget--;
    }
    /* Then at most prefill_chunk prompt tokens, to the prompt submitted first until it is
     * fed, then to the next. */
    int chunk = budget < e->opts.prefill_chunk ? budget : e->opts.prefill_chunk;
    while (chunk > 0) {
        struct engine_job *j = NULL;
        for (int k = 0; k < e->opts.parallel; k++) {
            struct engine_job *c = e->slots[k];
            if (c && c->chain && c->n_fed < c->n_prompt && c->step_prompt == 0 &&
                (j == NULL || c->submit_ns < j->submit_ns))
                j = c;
        }
        if (j == NULL) break;
        j->step_prompt = j->n_prompt - j->n_fed < chunk ? j->n_prompt - j->n_fed : chunk;
        chunk -= j->step_prompt;
    }
    /* The batch lists each slot's tokens together, in slot order: with one KV stream per
     * slot, llama.cpp runs a step as one graph per run of consecutive slots (taking as many
     * tokens from each as the run's shortest has), so this order, and slots taken next to
     * busy ones (prefix_pick), keep a step to as few graphs as its mix allows. */
    for (int i = 0; i < e->opts.parallel; i++) {
        struct engine_job *j = e->slots[i];
        if (j == NULL) continue;
        if (j->step_generated) {
            int k = b->n_tokens++;
            b->token[k] = j->last;
            b->pos[k] = j->n_prompt + j->n_generated - 1;
            b->n_seq_id[k] = 1;
            b->seq_id[k][0] = i;
            b->logits[k] = 1;
            cache_put(e, i, b->pos[k], j->last);
            j->batch_index = k;
        }
        for (int n = 0; n < j->step_prompt; n++) {
            int k = b->n_tokens++;
            b->token[k] = j->prompt[j->n_fed];
            b->pos[k] = j->n_fed;
            b->n_seq_id[k] = 1;
            b->seq_id[k][0] = i;
            b->logits[k] = 0;
            cache_put(e, i, j->n_fed, j->prompt[j->n_fed]);
            j->n_fed++;
            if (j->n_fed == j->n_prompt) {
                b->logits[k] = 1; /* the first generated token comes from here */
                j->batch_index = k;
            }
        }
    }
    if (b->n_tokens == 0) return;
    uint64_t start_ns = clock_now_ns();
    int rc = llama_decode(e->ctx, *b);
    if (rc != 0) {
        charge_step(e, clock_now_ns() - start_ns, b->n_tokens);
        /* The KV cache is full or decoding failed: end every sequence that was in the batch
         * honestly (one whose prompt was only partly fed could not continue either). What
         * their cells hold is no longer known, so none of it is reused. */
        for (int k = 0; k < b->n_tokens; k++) {
            int i = b->seq_id[k][0];
            if (e->slots[i]) finish(e, e->slots[i], "length");
            cache_forget(e, i);
        }
        return;
    }
    int produced = 0;
    for (int i = 0; i < e->opts.parallel; i++) {
        struct engine_job *j = e->slots[i];
        if (j == NULL || j->batch_index < 0) continue;
        llama_token t = llama_sampler_sample(j->chain, e->ctx, j->batch_index);
        produced++;
        if (j->first_token_ns == 0) {
            j->first_token_ns = clock_now_ns();
            double ttft = (double)(j->first_token_ns - j->submit_ns) / 1e6;
            pthread_mutex_lock(&e->mu);
            e->ttft_avg = e->ttft_avg == 0 ? ttft : e->ttft_avg * 0.8 + ttft * 0.2;
            pthread_mutex_unlock(&e->mu);
        }
        if (llama_vocab_is_eog(e->vocab, t)) {
            j->ending = "stop";
            continue;
        }
        j->n_generated++;
        j->last = t;
        char piece[256];
        int n = llama_token_to_piece(e->vocab, t, piece, sizeof piece, 0, false);
        if (j->s.top_logprobs >= 0) note_logprob(e, j, t, n > 0 ? (size_t)n : 0);
        if (n > 0 && take_piece(e, j, piece, (size_t)n)) {
            j->ending = "stop";
            continue;
        }
        bool full = j->n_prompt + j->n_generated >= e->ctx_per_slot;
        if ((j->s.max_tokens > 0 && j->n_generated >= j->s.max_tokens) || full)
            j->ending = "length";
    }
    charge_step(e, clock_now_ns() - start_ns, b->n_tokens);
    for (int i = 0; i < e->opts.parallel; i++)
        if (e->slots[i] && e->slots[i]->ending) finish(e, e->slots[i], e->slots[i]->ending);
    record_tokens(e, produced);
}

/* Embeddings use a second context (same weights) configured for mean pooling; generation
 * pauses for the few milliseconds this takes. */
static void run_embeddings(struct engine *e, struct engine_job *j)
{
    struct msg *m = calloc(1, sizeof *m);
    if (m == NULL) return;
    m->job = j;
    m->kind = MSG_FAILED;
    if (e->embed_ctx == NULL) {
        struct llama_context_params cp = llama_context_default_params();
        cp.n_ctx = (uint32_t)e->ctx_per_slot;
        cp.n_batch = cp.n_ubatch = (uint32_t)e->ctx_per_slot;
        cp.n_seq_max = 1;
        cp.n_threads = cp.n_threads_batch = e->opts.threads;
        cp.embeddings = true;
        cp.pooling_type = LLAMA_POOLING_TYPE_MEAN;
        cp.no_perf = true;
        e->embed_ctx = llama_init_from_model(e->model, cp);
    }
    uint64_t start_ns = clock_now_ns(); /* a first use's context setup is not its work */
    int dim = llama_model_n_embd(e->model);
    float *out = e->embed_ctx ? malloc(j->n_inputs * (size_t)dim * sizeof *out) : NULL;
    struct llama_batch b = llama_batch_init(e->ctx_per_slot, 0, 1);
    if (out == NULL) {
        err_set(&m->err, 500, "server_error", "embeddings_failed", "cannot set up embeddings");
        goto done;
    }
    for (size_t i = 0; i < j->n_inputs; i++) {
        llama_memory_clear(llama_get_memory(e->embed_ctx), true);
        b.n_tokens = j->input_len[i];
        for (int k = 0; k < b.n_tokens; k++) {
            b.token[k] = j->inputs[i][k];
            b.pos[k] = k;
            b.n_seq_id[k] = 1;
            b.seq_id[k][0] = 0;
            b.logits[k] = 1;
        }
        const float *v =
            llama_decode(e->embed_ctx, b) == 0 ? llama_get_embeddings_seq(e->embed_ctx, 0) : NULL;
        if (v == NULL) {
            err_set(&m->err, 500, "server_error", "embeddings_failed", "embedding input %zu failed",
                    i);
            free(out);
            out = NULL;
            goto done;
        }
        double norm = 0;
        for (int d = 0; d < dim; d++) norm += (double)v[d] * v[d];
        norm = norm > 0 ? sqrt(norm) : 1;
        for (int d = 0; d < dim; d++) out[i * (size_t)dim + (size_t)d] = (float)(v[d] / norm);
    }
    m->kind = MSG_EMBEDDINGS;
    m->vectors = out;
    m->n_vectors = j->n_inputs;
    m->dim = dim;
    for (size_t i = 0; i < j->n_inputs; i++) m->prompt_tokens += j->input_len[i];
    m->queue_ms = ms_us((double)(start_ns - j->submit_ns));
    m->engine_ms = ms_us((double)(clock_now_ns() - start_ns));
done:
    llama_batch_free(b);
    post(e, m);
}

/* ---- scoring ---- */

/* Scoring runs on a third context over the same weights: one sequence per (prompt, label)
 * pair, the prompt's cells shared by all of its labels' sequences (a unified KV cache lets
 * one cell belong to several sequences), so each prompt is decoded once. */
#define SCORE_MAX_SEQ 64
#define SCORE_BATCH   512

/* One prompt of one job, as the packer sees it. */
struct score_item {
    struct engine_job *job;
    size_t input;
    double *row; /* the job's scores for this prompt: n_labels log-probabilities */
};

/* What one batch position's logits are for: the next token of a prompt (label < 0: the
 * first token of every label) or of label `label`, whose token `next` follows. */
struct score_out {
    int item, label, next;
};

struct score_batch {
    struct llama_batch b;
    struct score_out out[SCORE_BATCH];
};

/* Decodes what is in the batch and adds each output's log-probability to its label. */
static int score_flush(struct engine *e, struct score_batch *sb, struct score_item *items)
{
    if (sb->b.n_tokens == 0) return 0;
    if (llama_decode(e->score_ctx, sb->b) != 0) return -1;
    int n_vocab = llama_vocab_n_tokens(e->vocab);
    for (int k = 0; k < sb->b.n_tokens; k++) {
        if (!sb->b.logits[k]) continue;
        const struct score_out *o = &sb->out[k];
        const float *row = llama_get_logits_ith(e->score_ctx, k);
        if (row == NULL) return -1;
        double lse = log_sum_exp(row, n_vocab);
        struct score_item *it = &items[o->item];
        if (o->label < 0) {
            size_t base = it->input * it->job->n_labels;
            for (size_t l = 0; l < it->job->n_labels; l++)
                it->row[l] += row[it->job->labels[base + l][0]] - lse;
        } else {
            it->row[o->label] += row[o->next] - lse;
        }
    }
    sb->b.n_tokens = 0;
    return 0;
}

static int score_push(struct engine *e, struct score_batch *sb, struct score_item *items,
                      llama_token token, int pos, int seq0, int n_seq, struct score_out out,
                      bool logits)
{
    if (sb->b.n_tokens == SCORE_BATCH && score_flush(e, sb, items) != 0) return -1;
    int k = sb->b.n_tokens++;
    sb->b.token[k] = token;
    sb->b.pos[k] = pos;
    sb->b.n_seq_id[k] = n_seq;
    for (int s = 0; s < n_seq; s++) sb->b.seq_id[k][s] = seq0 + s;
    sb->b.logits[k] = logits;
    sb->out[k] = out;
    return 0;
}

/* Cells one prompt and its labels take: the prompt once, each label but its last token. */
static int score_cells(const struct engine_job *j, size_t input)
{
    int cells = j->input_len[input];
    for (size_t l = 0; l < j->n_labels; l++) cells += j->label_len[input * j->n_labels + l] - 1;
    return cells;
}

/* Scores items[0..n) in one group: they fit the context and the sequence limit. */
static int score_group(struct engine *e, struct score_batch *sb, struct score_item *items, size_t n)
{
    llama_memory_clear(llama_get_memory(e->score_ctx), true);
    int seq = 0;
    int *first_seq = calloc(n, sizeof *first_seq);
    if (first_seq == NULL) return -1;
    /* The tokens every prompt of the group starts with (the chat template, a function's
     * system prompt and template head) are decoded once, in cells shared by every
     * sequence; each prompt keeps at least its last token to itself (its logits). */
    const llama_token *p0 = items[0].job->inputs[items[0].input];
    int common = items[0].job->input_len[items[0].input] - 1;
    for (size_t i = 0; i < n; i++) {
        first_seq[i] = seq;
        seq += (int)items[i].job->n_labels;
        const llama_token *p = items[i].job->inputs[items[i].input];
        int len = items[i].job->input_len[items[i].input], k = 0;
        while (k < common && k < len - 1 && p[k] == p0[k]) k++;
        common = k;
    }
    if (n < 2) common = 0; /* nothing to share */
    for (int k = 0; k < common; k++)
        if (score_push(e, sb, items, p0[k], k, 0, seq, (struct score_out){0, -1, 0}, false) != 0)
            goto fail;
    /* Then each prompt's own tokens (a label's tokens need its prompt's cells), then every
     * label. */
    for (size_t i = 0; i < n; i++) {
        struct engine_job *j = items[i].job;
        const llama_token *p = j->inputs[items[i].input];
        int len = j->input_len[items[i].input];
        for (int k = common; k < len; k++)
            if (score_push(e, sb, items, p[k], k, first_seq[i], (int)j->n_labels,
                           (struct score_out){(int)i, -1, 0}, k == len - 1) != 0)
                goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        struct engine_job *j = items[i].job;
        int at = j->input_len[items[i].input];
        for (size_t l = 0; l < j->n_labels; l++) {
            const llama_token *t = j->labels[items[i].input * j->n_labels + l];
            int len = j->label_len[items[i].input * j->n_labels + l];
            for (int k = 0; k + 1 < len; k++)
                if (score_push(e, sb, items, t[k], at + k, first_seq[i] + (int)l, 1,
                               (struct score_out){(int)i, (int)l, t[k + 1]}, true) != 0)
                    goto fail;
        }
    }
    if (score_flush(e, sb, items) != 0) goto fail;
    free(first_seq);
    return 0;
fail:
    free(first_seq);
    sb->b.n_tokens = 0;
    return -1;
}

/* `engine_ns`: the job's share of the scoring work's wall time; `start_ns`: when it began. */
static void post_scores(struct engine *e, struct engine_job *j, double *scores, bool ok,
                        uint64_t start_ns, double engine_ns)
{
    struct msg *m = calloc(1, sizeof *m);
    if (m == NULL) {
        free(scores);
        return;
    }
    m->job = j;
    if (ok) {
        m->kind = MSG_SCORES;
        m->scores = scores;
        m->n_prompts = j->n_inputs;
        m->n_labels = j->n_labels;
        for (size_t i = 0; i < j->n_inputs; i++)
            m->prompt_tokens += score_cells(j, i); /* every token read, labels included */
        m->queue_ms = ms_us((double)(start_ns - j->submit_ns));
        m->engine_ms = ms_us(engine_ns);
    } else {
        free(scores);
        m->kind = MSG_FAILED;
        err_set(&m->err, 500, "server_error", "scoring_failed", "the engine could not score");
    }
    post(e, m);
}

/* Scores every job taken from the queue together: their prompts are packed into groups
 * that fit the scoring context, each group decoded in shared batches. */
static void run_scores(struct engine *e, struct engine_job **jobs, size_t n_jobs)
{
    size_t n_items = 0;
    for (size_t i = 0; i < n_jobs; i++) n_items += jobs[i]->n_inputs;
    struct score_item *items = calloc(n_items ? n_items : 1, sizeof *items);
    double **rows = calloc(n_jobs, sizeof *rows);
    struct score_batch *sb = calloc(1, sizeof *sb);
    bool ok = items && rows && sb;
    if (ok && e->score_ctx == NULL) {
        struct llama_context_params cp = llama_context_default_params();
        cp.n_ctx = (uint32_t)e->ctx_per_slot;
        cp.n_batch = cp.n_ubatch = SCORE_BATCH;
        cp.n_seq_max = SCORE_MAX_SEQ;
        cp.kv_unified = true;
        cp.n_threads = cp.n_threads_batch = e->opts.threads;
        cp.no_perf = true;
        e->score_ctx = llama_init_from_model(e->model, cp);
    }
    ok = ok && e->score_ctx != NULL;
    if (ok) sb->b = llama_batch_init(SCORE_BATCH, 0, SCORE_MAX_SEQ);
    size_t at = 0;
    for (size_t i = 0; ok && i < n_jobs; i++) {
        rows[i] = calloc(jobs[i]->n_inputs * jobs[i]->n_labels, sizeof **rows);
        if (rows[i] == NULL) ok = false;
        for (size_t p = 0; ok && p < jobs[i]->n_inputs; p++)
            items[at++] = (struct score_item){jobs[i], p, rows[i] + p * jobs[i]->n_labels};
    }
    int capacity = e->score_ctx ? (int)llama_n_ctx(e->score_ctx) : 0;
    uint64_t start_ns = clock_now_ns();
    for (size_t start = 0; ok && start < n_items;) {
        size_t end = start;
        int cells = 0, seqs = 0;
        while (end < n_items) {
            const struct score_item *it = &items[end];
            int c = score_cells(it->job, it->input), s = (int)it->job->n_labels;
            if (end > start && (cells + c > capacity || seqs + s > SCORE_MAX_SEQ)) break;
            cells += c;
            seqs += s;
            end++;
        }
        if (score_group(e, sb, items + start, end - start) != 0) ok = false;
        start = end;
    }
    /* The jobs shared the batches: each is charged by the cells (tokens) it put in them. */
    double ns = (double)(clock_now_ns() - start_ns), cells = 0;
    for (size_t i = 0; i < n_jobs; i++)
        for (size_t p = 0; p < jobs[i]->n_inputs; p++) cells += score_cells(jobs[i], p);
    for (size_t i = 0; i < n_jobs; i++) {
        double mine = 0;
        for (size_t p = 0; p < jobs[i]->n_inputs; p++) mine += score_cells(jobs[i], p);
        post_scores(e, jobs[i], rows ? rows[i] : NULL, ok, start_ns,
                    cells > 0 ? ns * mine / cells : 0);
    }
    if (sb && sb->b.token) llama_batch_free(sb->b);
    free(sb);
    free(rows);
    free(items);
}

static void *engine_thread(void *ud)
{
    struct engine *e = ud;
    pthread_mutex_lock(&e->mu);
    while (!e->stop) {
        admit(e);
        if (e->embed_head) {
            struct engine_job *j = e->embed_head;
            e->embed_head = j->next;
            if (e->embed_head == NULL) e->embed_tail = NULL;
            j->next = NULL;
            if (j->cancelled) {
                post_released_locked(e, j);
                continue;
            }
            pthread_mutex_unlock(&e->mu);
            run_embeddings(e, j);
            pthread_mutex_lock(&e->mu);
            continue;
        }
        if (e->score_head) {
            /* Every scoring job waiting now goes into the same batches. */
            size_t n = 0, cap = 0;
            struct engine_job **jobs = NULL;
            while (e->score_head) {
                struct engine_job *j = e->score_head;
                e->score_head = j->next;
                j->next = NULL;
                if (j->cancelled) {
                    post_released_locked(e, j);
                    continue;
                }
                if (n == cap) {
                    struct engine_job **grown = realloc(jobs, (cap ? cap * 2 : 8) * sizeof *jobs);
                    if (grown == NULL) { /* keep it queued for the next round */
                        j->next = e->score_head;
                        e->score_head = j;
                        break;
                    }
                    jobs = grown;
                    cap = cap ? cap * 2 : 8;
                }
                jobs[n++] = j;
            }
            if (e->score_head == NULL) e->score_tail = NULL;
            pthread_mutex_unlock(&e->mu);
            run_scores(e, jobs, n);
            free(jobs);
            pthread_mutex_lock(&e->mu);
            continue;
        }
        if (e->busy == 0) {
            pthread_cond_wait(&e->cv, &e->mu);
            continue;
        }
        pthread_mutex_unlock(&e->mu);
        step(e);
        pthread_mutex_lock(&e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

/* ---- public ------------------------------------------------------------------------- */

static void on_load_progress_log(float progress, void *ud)
{
    int *last = ud;
    int pct = (int)(progress * 100);
    if (pct >= *last + 25 || (pct == 100 && *last != 100)) {
        *last = pct;
        struct log_line l;
        log_begin(&l, "info", "model_loading");
        log_int(&l, "percent", pct);
        log_end(&l);
    }
}

static bool on_load_progress(float progress, void *ud)
{
    on_load_progress_log(progress, ud);
    return true;
}

/* llama.cpp's own chatter (tensor shapes, buffer sizes) is not for operators; its warnings
 * and errors become our JSON log lines. */
static void on_llama_log(enum ggml_log_level level, const char *text, void *ud)
{
    (void)ud;
    if (level != GGML_LOG_LEVEL_WARN && level != GGML_LOG_LEVEL_ERROR) return;
    size_t n = strlen(text);
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r')) n--;
    if (n == 0) return;
    struct log_line l;
    log_begin(&l, level == GGML_LOG_LEVEL_ERROR ? "error" : "warn", "llama");
    log_strn(&l, "message", text, n);
    log_end(&l);
}

static int check_model_file(const char *path, struct err *err)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return err_set(err, 500, "server_error", "model_not_loadable", "model file %s: %s", path,
                       strerror(errno));
    if (!S_ISREG(st.st_mode))
        return err_set(err, 500, "server_error", "model_not_loadable",
                       "model file %s is not a regular file", path);
    FILE *f = fopen(path, "rb");
    char magic[4] = {0};
    size_t n = f ? fread(magic, 1, 4, f) : 0;
    if (f) fclose(f);
    if (n != 4 || memcmp(magic, "GGUF", 4) != 0)
        return err_set(err, 500, "server_error", "model_not_loadable",
                       "model file %s is not a GGUF file", path);
    return 0;
}

struct engine *engine_new(struct event_base *loop, const struct engine_opts *opts, struct err *err)
{
    struct engine *e = calloc(1, sizeof *e);
    if (e == NULL) {
        err_oom(err);
        return NULL;
    }
    e->opts = *opts;
    struct engine_opts d = engine_default_opts();
    if (e->opts.parallel <= 0) e->opts.parallel = d.parallel;
    if (e->opts.threads <= 0) e->opts.threads = d.threads;
    if (e->opts.ctx_per_slot <= 0) e->opts.ctx_per_slot = d.ctx_per_slot;
    if (e->opts.max_queue <= 0) e->opts.max_queue = d.max_queue;
    if (e->opts.batch_size <= 0) e->opts.batch_size = d.batch_size;
    if (e->opts.prefill_chunk <= 0) e->opts.prefill_chunk = d.prefill_chunk;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    event_assign(&e->notify, loop, -1, 0, on_notify, e);
    if (check_model_file(opts->model_path, err) != 0) goto fail;

    llama_log_set(on_llama_log, NULL);
    llama_backend_init();
    int last = -100;
    struct llama_model_params mp = llama_model_default_params();
    mp.progress_callback = on_load_progress;
    mp.progress_callback_user_data = &last;
    e->model = llama_model_load_from_file(opts->model_path, mp);
    if (e->model == NULL) {
        err_set(err, 500, "server_error", "model_not_loadable",
                "model file %s could not be loaded (corrupt or unsupported GGUF)",
                opts->model_path);
        goto fail;
    }
    e->vocab = llama_model_get_vocab(e->model);
    const char *tmpl = llama_model_chat_template(e->model, NULL);
    if (tmpl) e->template_text = strdup(tmpl);
    int n_vocab = llama_vocab_n_tokens(e->vocab);
    for (llama_token t = 0; t < n_vocab; t++) e->n_eog += llama_vocab_is_eog(e->vocab, t);
    e->eog_bias = calloc((size_t)(e->n_eog ? e->n_eog : 1), sizeof *e->eog_bias);
    if (e->eog_bias == NULL) {
        err_oom(err);
        goto fail;
    }
    for (llama_token t = 0, k = 0; t < n_vocab; t++)
        if (llama_vocab_is_eog(e->vocab, t))
            e->eog_bias[k++] = (llama_logit_bias){.token = t, .bias = -INFINITY};

    struct llama_context_params cp = llama_context_default_params();
    cp.n_seq_max = (uint32_t)e->opts.parallel;
    cp.n_ctx = (uint32_t)(e->opts.parallel * e->opts.ctx_per_slot);
    cp.n_batch = (uint32_t)e->opts.batch_size;
    cp.n_ubatch = (uint32_t)e->opts.batch_size;
    cp.n_threads = e->opts.threads;
    cp.n_threads_batch = e->opts.threads;
    /* One KV stream per slot (llama.cpp's default, stated because the prefix cache relies on
     * it): the cells an idle slot keeps for reuse never take room from a busy slot. */
    cp.kv_unified = false;
    cp.no_perf = true;
    e->ctx = llama_init_from_model(e->model, cp);
    if (e->ctx == NULL) {
        err_set(err, 500, "server_error", "model_not_loadable",
                "cannot create a context for %s (%d slots x %d tokens)", opts->model_path,
                e->opts.parallel, e->opts.ctx_per_slot);
        goto fail;
    }
    e->ctx_per_slot = (int)llama_n_ctx_seq(e->ctx);
    e->batch = llama_batch_init(e->opts.batch_size, 0, 1);
    e->slots = calloc((size_t)e->opts.parallel, sizeof *e->slots);
    e->cache = calloc((size_t)e->opts.parallel, sizeof *e->cache);
    e->pick = calloc((size_t)e->opts.parallel, sizeof *e->pick);
    if (e->slots == NULL || e->cache == NULL || e->pick == NULL) {
        err_oom(err);
        goto fail;
    }
    if (pthread_create(&e->thread, NULL, engine_thread, e) != 0) {
        err_set(err, 500, "server_error", NULL, "cannot start the engine thread");
        goto fail;
    }
    e->thread_started = true;
    return e;
fail:
    engine_free(e);
    return NULL;
}

char *engine_chat_prompt(struct engine *e, const char *const *roles, const char *const *contents,
                         size_t n, struct err *err)
{
    struct llama_chat_message *msgs = calloc(n ? n : 1, sizeof *msgs);
    if (msgs == NULL) {
        err_oom(err);
        return NULL;
    }
    size_t total = 64;
    for (size_t i = 0; i < n; i++) {
        msgs[i].role = roles[i];
        msgs[i].content = contents[i];
        total += strlen(roles[i]) + strlen(contents[i]) + 32;
    }
    /* The model's own template, else ChatML (what most instruction-tuned GGUFs use). */
    const char *tmpl = e->template_text ? e->template_text : "chatml";
    char *buf = NULL;
    int32_t need = (int32_t)(total * 2);
    for (int attempt = 0; attempt < 2; attempt++) {
        free(buf);
        buf = malloc((size_t)need + 1);
        if (buf == NULL) break;
        int32_t got = llama_chat_apply_template(tmpl, msgs, n, true, buf, need);
        if (got < 0 && e->template_text) {
            tmpl = "chatml"; /* a template llama.cpp cannot run: fall back */
            got = llama_chat_apply_template(tmpl, msgs, n, true, buf, need);
        }
        if (got < 0) {
            free(buf);
            free(msgs);
            err_set(err, 400, "invalid_request_error", "chat_template",
                    "the model's chat template cannot format these messages");
            return NULL;
        }
        if (got <= need) {
            buf[got] = '\0';
            free(msgs);
            return buf;
        }
        need = got;
    }
    free(buf);
    free(msgs);
    err_oom(err);
    return NULL;
}

struct engine_job *engine_submit(struct engine *e, const char *prompt, size_t len,
                                 const struct engine_sampling *s, engine_event_cb cb, void *ud,
                                 struct err *err)
{
    struct engine_job *j = calloc(1, sizeof *j);
    if (j == NULL) {
        err_oom(err);
        return NULL;
    }
    j->e = e;
    j->cb = cb;
    j->ud = ud;
    j->s = *s;
    j->slot = -1;
    j->submit_ns = clock_now_ns();
    int cap = (int)len + 16;
    j->prompt = malloc((size_t)cap * sizeof *j->prompt);
    if (j->prompt == NULL) goto oom;
    int n = llama_tokenize(e->vocab, prompt, (int32_t)len, j->prompt, cap, true, true);
    if (n < 0) {
        cap = -n;
        llama_token *p = realloc(j->prompt, (size_t)cap * sizeof *p);
        if (p == NULL) goto oom;
        j->prompt = p;
        n = llama_tokenize(e->vocab, prompt, (int32_t)len, j->prompt, cap, true, true);
    }
    if (n <= 0) {
        err_set(err, 400, "invalid_request_error", "empty_prompt", "the prompt has no tokens");
        job_free(j);
        return NULL;
    }
    if (n >= e->ctx_per_slot) {
        err_set(err, 400, "invalid_request_error", "context_length_exceeded",
                "the prompt has %d tokens but the context holds %d per request", n,
                e->ctx_per_slot);
        err->param = "messages";
        job_free(j);
        return NULL;
    }
    j->n_prompt = n;
    if (s->n_stop) {
        j->stop = calloc(s->n_stop, sizeof *j->stop);
        if (j->stop == NULL) goto oom;
        for (size_t i = 0; i < s->n_stop; i++) {
            if (s->stop[i][0] == '\0') continue;
            if ((j->stop[j->n_stop] = strdup(s->stop[i])) == NULL) goto oom;
            j->n_stop++;
        }
    }
    j->s.stop = NULL;
    if (s->grammar && (j->s.grammar = j->grammar = strdup(s->grammar)) == NULL) goto oom;
    if (s->n_logit_bias > 0) {
        int n_vocab = llama_vocab_n_tokens(e->vocab);
        if ((j->bias = calloc(s->n_logit_bias, sizeof *j->bias)) == NULL) goto oom;
        for (size_t i = 0; i < s->n_logit_bias; i++) {
            if (s->logit_bias[i].token < 0 || s->logit_bias[i].token >= n_vocab) {
                err_param(err, 400, "logit_bias",
                          "logit_bias names token %d; this model's tokens are 0 to %d",
                          (int)s->logit_bias[i].token, n_vocab - 1);
                job_free(j);
                return NULL;
            }
            j->bias[i] =
                (llama_logit_bias){.token = s->logit_bias[i].token, .bias = s->logit_bias[i].bias};
        }
    }
    j->s.logit_bias = NULL;
    pthread_mutex_lock(&e->mu);
    if (e->queue_len >= e->opts.max_queue && e->busy >= e->opts.parallel) {
        pthread_mutex_unlock(&e->mu);
        err_set(err, 429, "rate_limit_error", "engine_busy",
                "all %d slots are busy and %d requests are queued; retry shortly", e->opts.parallel,
                e->queue_len);
        job_free(j);
        return NULL;
    }
    if (e->queue_tail)
        e->queue_tail->next = j;
    else
        e->queue_head = j;
    e->queue_tail = j;
    e->queue_len++;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    return j;
oom:
    job_free(j);
    err_oom(err);
    return NULL;
}

/* Queues work the engine thread does between decode steps (embeddings, scoring) and wakes
 * it. */
static void side_enqueue(struct engine *e, struct engine_job **head, struct engine_job **tail,
                         struct engine_job *j)
{
    pthread_mutex_lock(&e->mu);
    if (*tail)
        (*tail)->next = j;
    else
        *head = j;
    *tail = j;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

struct engine_job *engine_submit_embeddings(struct engine *e, const char *const *inputs, size_t n,
                                            engine_event_cb cb, void *ud, struct err *err)
{
    struct engine_job *j = calloc(1, sizeof *j);
    if (j == NULL) goto oom;
    j->e = e;
    j->cb = cb;
    j->ud = ud;
    j->slot = -1;
    j->submit_ns = clock_now_ns();
    j->inputs = calloc(n ? n : 1, sizeof *j->inputs);
    j->input_len = calloc(n ? n : 1, sizeof *j->input_len);
    if (j->inputs == NULL || j->input_len == NULL) goto oom;
    for (size_t i = 0; i < n; i++) {
        int len = (int)strlen(inputs[i]), cap = len + 16;
        j->inputs[i] = malloc((size_t)cap * sizeof **j->inputs);
        if (j->inputs[i] == NULL) goto oom;
        j->n_inputs++;
        int t = llama_tokenize(e->vocab, inputs[i], len, j->inputs[i], cap, true, false);
        if (t <= 0 || t > e->ctx_per_slot) {
            if (t == 0)
                err_set(err, 400, "invalid_request_error", "empty_input", "input %zu is empty", i);
            else
                err_set(err, 400, "invalid_request_error", "context_length_exceeded",
                        "input %zu has more tokens than the context holds (%d)", i,
                        e->ctx_per_slot);
            err->param = "input";
            job_free(j);
            return NULL;
        }
        j->input_len[i] = t;
    }
    side_enqueue(e, &e->embed_head, &e->embed_tail, j);
    return j;
oom:
    job_free(j);
    err_oom(err);
    return NULL;
}

/* Tokens of `text` (no BOS unless `bos`) into a new array. @return the count, -1 on OOM. */
static int tokenize_copy(const struct llama_vocab *vocab, const char *text, bool bos,
                         llama_token **out)
{
    int len = (int)strlen(text), cap = len + 16;
    *out = malloc((size_t)cap * sizeof **out);
    if (*out == NULL) return -1;
    int n = llama_tokenize(vocab, text, len, *out, cap, bos, bos);
    return n < 0 ? 0 : n; /* cap bounds the tokens of any text (one per byte at most) */
}

/* A label's tokens as they follow `prompt`: the tail of the tokenised prompt + label when
 * the prompt's own tokens are its prefix (a tokenizer that marks the start of a text, such
 * as SentencePiece's leading space, tokenises a word differently alone); else the label
 * alone. @return the count (0: none), -1 on OOM. */
static int label_tokens(const struct llama_vocab *vocab, const char *prompt,
                        const llama_token *prompt_tokens, int n_prompt, const char *label,
                        llama_token **out)
{
    size_t pl = strlen(prompt), ll = strlen(label);
    char *joined = malloc(pl + ll + 1);
    llama_token *all = NULL;
    if (joined == NULL) return -1;
    memcpy(joined, prompt, pl);
    memcpy(joined + pl, label, ll + 1);
    int n = tokenize_copy(vocab, joined, true, &all);
    free(joined);
    if (n < 0) return -1;
    if (n > n_prompt && memcmp(all, prompt_tokens, (size_t)n_prompt * sizeof *all) == 0) {
        memmove(all, all + n_prompt, (size_t)(n - n_prompt) * sizeof *all);
        *out = all;
        return n - n_prompt;
    }
    free(all);
    return tokenize_copy(vocab, label, false, out);
}

struct engine_job *engine_submit_scores(struct engine *e, const char *const *prompts,
                                        size_t n_prompts, const char *const *labels,
                                        size_t n_labels, engine_event_cb cb, void *ud,
                                        struct err *err)
{
    if (n_prompts == 0 || n_labels == 0 || n_labels > SCORE_MAX_SEQ) {
        err_set(err, 400, "invalid_request_error", "invalid_labels",
                "scoring needs at least one prompt and 1 to %d labels", SCORE_MAX_SEQ);
        return NULL;
    }
    struct engine_job *j = calloc(1, sizeof *j);
    if (j == NULL) goto oom;
    j->e = e;
    j->cb = cb;
    j->ud = ud;
    j->slot = -1;
    j->submit_ns = clock_now_ns();
    j->inputs = calloc(n_prompts, sizeof *j->inputs);
    j->input_len = calloc(n_prompts, sizeof *j->input_len);
    j->labels = calloc(n_prompts * n_labels, sizeof *j->labels);
    j->label_len = calloc(n_prompts * n_labels, sizeof *j->label_len);
    if (!j->inputs || !j->input_len || !j->labels || !j->label_len) goto oom;
    j->n_labels = n_labels;
    for (size_t i = 0; i < n_prompts; i++) {
        j->n_inputs++;
        int n = tokenize_copy(e->vocab, prompts[i], true, &j->inputs[i]);
        if (n < 0) goto oom;
        j->input_len[i] = n;
        if (n == 0) {
            err_set(err, 400, "invalid_request_error", "empty_prompt", "prompt %zu has no tokens",
                    i);
            goto refuse;
        }
        for (size_t l = 0; l < n_labels; l++) {
            size_t at = i * n_labels + l;
            int got =
                label_tokens(e->vocab, prompts[i], j->inputs[i], n, labels[l], &j->labels[at]);
            if (got < 0) goto oom;
            if (got == 0) {
                err_set(err, 400, "invalid_request_error", "invalid_labels",
                        "label '%s' has no tokens for this model", labels[l]);
                goto refuse;
            }
            j->label_len[at] = got;
        }
        if (score_cells(j, i) > e->ctx_per_slot) {
            err_set(err, 400, "invalid_request_error", "context_length_exceeded",
                    "prompt %zu and its labels need %d tokens but the context holds %d", i,
                    score_cells(j, i), e->ctx_per_slot);
            goto refuse;
        }
    }
    side_enqueue(e, &e->score_head, &e->score_tail, j);
    return j;
oom:
    err_oom(err);
refuse:
    job_free(j);
    return NULL;
}

void engine_cancel(struct engine_job *job)
{
    struct engine *e = job->e;
    pthread_mutex_lock(&e->mu);
    job->cancelled = true;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

void engine_get_stats(struct engine *e, struct engine_stats *out)
{
    pthread_mutex_lock(&e->mu);
    out->slots = e->opts.parallel;
    out->busy_slots = e->busy;
    out->queue_depth = e->queue_len;
    out->tokens_per_s = e->tokens_per_s;
    out->ttft_ms = e->ttft_avg;
    out->tokens_generated = e->tokens_total;
    out->prompt_tokens = e->prompt_tokens;
    out->prefix_tokens_reused = e->prefix_reused;
    out->prefix_hits = e->prefix_hits;
    out->requests_done = e->requests_done;
    /* to the microsecond, as each request's figures (ms_us) */
    out->queue_ms_total = round(e->queue_ms_total * 1e3) / 1e3;
    out->prefill_ms_total = round(e->prefill_ms_total * 1e3) / 1e3;
    out->decode_ms_total = round(e->decode_ms_total * 1e3) / 1e3;
    out->queue_ms_avg = round(e->queue_ms_avg * 1e3) / 1e3;
    out->prefill_ms_avg = round(e->prefill_ms_avg * 1e3) / 1e3;
    out->decode_ms_avg = round(e->decode_ms_avg * 1e3) / 1e3;
    pthread_mutex_unlock(&e->mu);
}

void engine_free(struct engine *e)
{
    if (e == NULL) return;
    if (e->thread_started) {
        pthread_mutex_lock(&e->mu);
        e->stop = true;
        pthread_cond_signal(&e->cv);
        pthread_mutex_unlock(&e->mu);
        pthread_join(e->thread, NULL);
    }
    event_del(&e->notify);
    /* Jobs in slots, in the queue, and messages not yet delivered. */
    struct msg *m = e->outbox_head;
    while (m) {
        struct msg *next = m->next;
        if (m->kind != MSG_TEXT) {
            for (int i = 0; e->slots && i < e->opts.parallel; i++)
                if (e->slots[i] == m->job) e->slots[i] = NULL;
            job_free(m->job);
        }
        free(m->text);
        free(m->vectors);
        free(m->logprobs);
        free(m->scores);
        free(m);
        m = next;
    }
    for (int i = 0; e->slots && i < e->opts.parallel; i++) job_free(e->slots[i]);
    for (struct engine_job *j = e->queue_head, *next; j; j = next) {
        next = j->next;
        job_free(j);
    }
    for (struct engine_job *j = e->embed_head, *next; j; j = next) {
        next = j->next;
        job_free(j);
    }
    for (struct engine_job *j = e->score_head, *next; j; j = next) {
        next = j->next;
        job_free(j);
    }
    if (e->embed_ctx) llama_free(e->embed_ctx);
    if (e->score_ctx) llama_free(e->score_ctx);
    free(e->slots);
    for (int i = 0; e->cache && i < e->opts.parallel; i++) free(e->cache[i].tokens);
    free(e->cache);
    free(e->pick);
    if (e->batch.token) llama_batch_free(e->batch);
    if (e->ctx) llama_free(e->ctx);
    if (e->model) llama_model_free(e->model);
    free(e->template_text);
    free(e->eog_bias);
    pthread_cond_destroy(&e->cv);
    pthread_mutex_destroy(&e->mu);
    free(e);
}
