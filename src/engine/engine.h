/*
 * engine — local inference on llama.cpp with continuous batching, on a thread of its own.
 *
 * One engine holds one model, loaded once and kept warm, and one llama_context with
 * `parallel` sequence slots. Jobs (a prompt plus sampling settings) are submitted from the
 * event-loop thread; the engine thread admits them into free slots between decode steps,
 * decodes every active sequence in one llama_batch per step (each slot is a seq_id), samples
 * each sequence with its own sampler chain, and sends text back to the loop thread. A job
 * leaves its slot when it finishes or is cancelled.
 *
 * Scheduling (chunked prefill): each step holds one token of every generating sequence,
 * then at most `prefill_chunk` prompt tokens, given to the prompts in slots oldest
 * submission first. A long prompt is decoded over several steps, each of which also
 * advances every running stream, and a newcomer's prompt is not shared out with every other
 * prompt that arrived with it: prompts get their first tokens one after the other, which
 * keeps the mean time to first token down and staggers the streams.
 *
 * Prompt-prefix cache (on unless opts.prefix_cache is false): a slot's KV cells are kept
 * after its job ends, together with the tokens they hold. A new prompt takes the free slot
 * whose tokens share the longest prefix with it (engine/prefix decides; none → the least
 * recently used slot), the cells past that prefix are removed, and only the rest of the
 * prompt is decoded. Off, a slot's cells are removed as soon as its job ends.
 *
 * Text never splits a UTF-8 character, and stop strings are matched across token
 * boundaries (text that may be the start of a stop string is held back until decided).
 *
 * llama.h rules relied on: a context must not outlive its model; a sampler chain owns the
 * samplers added to it; llama_batch_init pairs with llama_batch_free; llama_decode and the
 * samplers are used from the engine thread only.
 *
 * Thread: engine_new/submit/cancel/stats/free on the event-loop thread; callbacks run there.
 */
#ifndef STRATUS_ENGINE_H
#define STRATUS_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

struct event_base;
struct engine;
struct engine_job;

struct engine_opts {
    const char *model_path;
    int parallel;     /* sequences decoded together (slots); default 4 */
    int threads;      /* llama.cpp threads; default: physical cores */
    int ctx_per_slot; /* context tokens per sequence; default 4096 (capped by the model) */
    int max_queue;    /* jobs waiting for a slot beyond which submit fails with 429; default 64 */
    int batch_size;   /* tokens per decode step; default 512 */
    /* prompt tokens per decode step, over all prompts being prefilled (oldest first);
     * default ENGINE_DEFAULT_PREFILL_CHUNK; >= batch_size: as many as the step has room for */
    int prefill_chunk;
    bool prefix_cache; /* reuse a finished slot's KV cache for a shared prompt prefix; true */
};

#define ENGINE_DEFAULT_PREFILL_CHUNK 64

struct engine_opts engine_default_opts(void);

struct engine_sampling {
    float temperature; /* <= 0: greedy */
    float top_p;       /* 1 = off */
    int top_k;         /* 0 = off */
    float min_p;       /* 0 = off */
    float presence_penalty, frequency_penalty;
    uint32_t seed;
    int max_tokens;          /* <= 0: until the context is full */
    const char *const *stop; /* borrowed until the job ends */
    size_t n_stop;
    bool json; /* constrain output to JSON (response_format json_object) */
    /* Constrain output to this GBNF grammar (root rule "root"; engine/schema_grammar makes
     * one from a JSON Schema) instead; copied at submit. NULL: none. */
    const char *grammar;
    /* Log-probabilities of the sampled tokens under the model (before temperature and
     * truncation, as OpenAI reports them): -1 off, else how many alternatives each token
     * carries (0..ENGINE_MAX_TOP_LOGPROBS). */
    int top_logprobs;
    /* End-of-generation tokens are never sampled (a logit bias of -inf on each): generation
     * runs to max_tokens, a stop string or the end of the context. As llama-server's. */
    bool ignore_eos;
    /* OpenAI's logit_bias: added to each named token's logit before sampling (-100 bans a
     * token, 100 all but forces it); copied at submit. A token the vocabulary does not have
     * fails the submit with 400. */
    const struct engine_bias *logit_bias;
    size_t n_logit_bias;
};

struct engine_bias {
    int32_t token;
    float bias;
};

#define ENGINE_MAX_TOP_LOGPROBS 20

/* One generated token with its log-probability and the most likely alternatives. */
struct engine_logprob {
    char token[64]; /* the token's text (raw bytes, not always valid UTF-8) */
    int token_len;
    float logprob;
    int n_top;
    struct {
        char token[64];
        int token_len;
        float logprob;
    } top[ENGINE_MAX_TOP_LOGPROBS];
};

struct engine_sampling engine_default_sampling(void);

enum engine_event_kind {
    ENGINE_TEXT,
    ENGINE_DONE,
    ENGINE_FAILED,
    ENGINE_EMBEDDINGS,
    ENGINE_SCORES
};

struct engine_event {
    enum engine_event_kind kind;
    const char *text; /* ENGINE_TEXT: whole UTF-8 characters; borrowed for the callback */
    size_t len;
    const char *finish_reason; /* ENGINE_DONE: "stop" or "length" */
    int prompt_tokens, completion_tokens;
    int cached_tokens; /* ENGINE_DONE: prompt tokens whose KV cells were reused */
    double ttft_ms;    /* submit → first token */
    /* Where the job's time went, in ms rounded to the microsecond. queue_ms: submit → taking
     * a slot (embeddings, scoring: → their work starting). prefill_ms / decode_ms (ENGINE_DONE):
     * its share of each decode step's wall time (decode plus sampling), split between the
     * sequences in the batch by the tokens each put in it — prompt tokens to prefill, its
     * one generated token to decode. engine_ms = prefill + decode; for embeddings and
     * scoring, the wall time of their own decode work (scoring jobs decoded together share
     * it by tokens). Summed over requests, engine_ms is the engine's busy time: what a local
     * request costs (cost.h). */
    double queue_ms, prefill_ms, decode_ms, engine_ms;
    const float *vectors; /* ENGINE_EMBEDDINGS: n_vectors × dim floats, unit length */
    size_t n_vectors;
    int dim;
    /* ENGINE_TEXT with top_logprobs >= 0: the tokens whose text this event carries (a token
     * whose text a stop string swallowed has none). */
    const struct engine_logprob *logprobs;
    size_t n_logprobs;
    /* ENGINE_SCORES: n_prompts × n_labels log-probabilities, row-major. */
    const double *scores;
    size_t n_prompts, n_labels;
    struct err err; /* ENGINE_FAILED */
};

/* Called on the event-loop thread. After ENGINE_DONE or ENGINE_FAILED the job is gone. */
typedef void (*engine_event_cb)(struct engine_job *job, const struct engine_event *ev, void *ud);

struct engine_stats {
    int slots, busy_slots, queue_depth;
    double tokens_per_s; /* generation rate over the last few seconds */
    double ttft_ms;      /* moving average */
    uint64_t tokens_generated;
    /* prompt-prefix cache: prompt tokens admitted to slots, how many of them were not
     * decoded because a slot's KV cache held them already, and how many prompts reused any */
    uint64_t prompt_tokens, prefix_tokens_reused, prefix_hits;
    /* generation requests that finished (not cancelled) and where their time went, as each
     * one's ENGINE_DONE reports it (ms): totals since the engine started, and moving
     * averages over recent requests (each new request weighs 1/5) */
    uint64_t requests_done;
    double queue_ms_total, prefill_ms_total, decode_ms_total;
    double queue_ms_avg, prefill_ms_avg, decode_ms_avg;
};

/** Loads the model (blocking; run it before serving) and starts the engine thread.
 *  `loop` must have been created after evthread_use_pthreads().
 *  @return an *owned* engine, or NULL with `err` naming the file and the reason. */
struct engine *engine_new(struct event_base *loop, const struct engine_opts *opts, struct err *err);

/** Applies the model's chat template (ChatML if it has none) to role/content pairs.
 *  @return a malloc'd prompt (caller frees), or NULL with `err`. */
char *engine_chat_prompt(struct engine *e, const char *const *roles, const char *const *contents,
                         size_t n, struct err *err);

/** Queues a prompt. The prompt is tokenised here, so a prompt longer than a slot's context
 *  fails now with 400 naming both numbers; a full queue fails with 429.
 *  @return the job (owned by the engine), or NULL with `err`. */
struct engine_job *engine_submit(struct engine *e, const char *prompt, size_t len,
                                 const struct engine_sampling *s, engine_event_cb cb, void *ud,
                                 struct err *err);

/** Queues embedding work: one mean-pooled, unit-length vector per input, computed on the
 *  engine thread between decode steps. The answer is one ENGINE_EMBEDDINGS event (or
 *  ENGINE_FAILED). `inputs` are copied. An input longer than the context fails now (400). */
struct engine_job *engine_submit_embeddings(struct engine *e, const char *const *inputs, size_t n,
                                            engine_event_cb cb, void *ud, struct err *err);

/** Queues scoring work: for each prompt, the log-probability that the model continues it
 *  with each label's tokens (the sum over the label's tokens, teacher-forced: nothing is
 *  sampled). Each prompt is decoded once and shared by all its labels' sequences in the KV
 *  cache, and every scoring job waiting when the engine thread gets to them is decoded in
 *  the same batches, so scoring N labels of M prompts costs about one pass over the M
 *  prompts plus the label tokens. The answer is one ENGINE_SCORES event (or ENGINE_FAILED).
 *  Inputs are copied. A label with no tokens, or a prompt plus labels longer than the
 *  context, fails now (400). */
struct engine_job *engine_submit_scores(struct engine *e, const char *const *prompts,
                                        size_t n_prompts, const char *const *labels,
                                        size_t n_labels, engine_event_cb cb, void *ud,
                                        struct err *err);

/** The client is gone: no more callbacks; the slot is freed before the next decode step. */
void engine_cancel(struct engine_job *job);

void engine_get_stats(struct engine *e, struct engine_stats *out);

/** Stops the thread, fails queued jobs quietly and frees everything. NULL-safe. */
void engine_free(struct engine *e);

#endif
