/*
 * bench/sched/step_cost — what one decode step costs on this machine, with the engine's
 * context settings (8 sequences, n_batch = n_ubatch = 512, one KV stream per sequence):
 * 7 running sequences' next tokens, a C-token prompt chunk of an eighth, and both in one
 * llama_batch; and four streams' next tokens in neighbouring slots against the same in every
 * other slot. The minimum of REPS runs of each is printed (the minimum is what the step
 * costs; anything above it is another process's time), so it can be read on a busy machine.
 * usage: step_cost MODEL.gguf [THREADS] [REPS]
 */
#include <llama.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void add(struct llama_batch *b, llama_token t, int pos, int seq, bool logits)
{
    int k = b->n_tokens++;
    b->token[k] = t;
    b->pos[k] = pos;
    b->n_seq_id[k] = 1;
    b->seq_id[k][0] = seq;
    b->logits[k] = logits;
}

static void quiet(enum ggml_log_level level, const char *text, void *ud)
{
    (void)level;
    (void)text;
    (void)ud;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: step_cost MODEL.gguf [THREADS] [REPS]\n");
        return 2;
    }
    int threads = argc > 2 ? atoi(argv[2]) : 2, reps = argc > 3 ? atoi(argv[3]) : 5;
    enum { SEQS = 8, CTX = 64 };
    llama_log_set(quiet, NULL);
    llama_backend_init();
    struct llama_model *m = llama_model_load_from_file(argv[1], llama_model_default_params());
    if (m == NULL) return 1;
    struct llama_context_params cp = llama_context_default_params();
    cp.n_seq_max = SEQS;
    cp.n_ctx = SEQS * 2048;
    cp.n_batch = cp.n_ubatch = 512;
    cp.n_threads = cp.n_threads_batch = threads;
    cp.kv_unified = false;
    struct llama_context *ctx = llama_init_from_model(m, cp);
    if (ctx == NULL) return 1;
    llama_memory_t mem = llama_get_memory(ctx);
    int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(m));
    struct llama_batch b = llama_batch_init(512, 0, 1);
    static const int chunks[] = {8, 16, 32, 64, 128, 256, 505};
    printf("{\"threads\":%d,\"reps\":%d,\"rows\":[\n", threads, reps);
    for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
        int chunk = chunks[c];
        double best[3] = {1e9, 1e9, 1e9}; /* decode 7, prompt chunk, both together */
        for (int r = 0; r < reps; r++) {
            /* 7 sequences with CTX tokens of context each (not timed). */
            llama_memory_clear(mem, true);
            b.n_tokens = 0;
            for (int s = 0; s < SEQS - 1; s++)
                for (int p = 0; p < CTX; p++) add(&b, (s * 131 + p * 7) % n_vocab, p, s, false);
            llama_decode(ctx, b);
            for (int what = 0; what < 3; what++) {
                b.n_tokens = 0;
                if (what != 1)
                    for (int s = 0; s < SEQS - 1; s++)
                        add(&b, (s * 17 + 5) % n_vocab, CTX, s, true);
                if (what != 0)
                    for (int p = 0; p < chunk; p++)
                        add(&b, (p * 13 + 3) % n_vocab, p, SEQS - 1, p == chunk - 1);
                double t0 = now_ms();
                if (llama_decode(ctx, b) != 0) return 1;
                double ms = now_ms() - t0;
                if (ms < best[what]) best[what] = ms;
                /* undo the step: the next one starts from the same cells */
                for (int s = 0; s < SEQS - 1; s++) llama_memory_seq_rm(mem, s, CTX, -1);
                llama_memory_seq_rm(mem, SEQS - 1, -1, -1);
            }
        }
        printf("{\"chunk\":%d,\"decode7_ms\":%.1f,\"chunk_ms\":%.1f,\"separate_ms\":%.1f,"
               "\"mixed_ms\":%.1f}%s\n",
               chunk, best[0], best[1], best[0] + best[1], best[2],
               c + 1 < sizeof chunks / sizeof chunks[0] ? "," : "");
        fflush(stdout);
    }
    /* Four streams' next tokens in slots 0-3, then in slots 0, 2, 4, 6: llama.cpp runs a
     * step over separate KV streams as one graph per run of consecutive slots. */
    double four[2] = {1e9, 1e9};
    for (int r = 0; r < reps; r++) {
        llama_memory_clear(mem, true);
        b.n_tokens = 0;
        for (int s = 0; s < SEQS; s++)
            for (int p = 0; p < CTX; p++) add(&b, (s * 131 + p * 7) % n_vocab, p, s, false);
        llama_decode(ctx, b);
        for (int spread = 0; spread < 2; spread++) {
            b.n_tokens = 0;
            for (int k = 0; k < 4; k++)
                add(&b, (k * 17 + 5) % n_vocab, CTX, spread ? 2 * k : k, true);
            double t0 = now_ms();
            if (llama_decode(ctx, b) != 0) return 1;
            double ms = now_ms() - t0;
            if (ms < four[spread]) four[spread] = ms;
            for (int s = 0; s < SEQS; s++) llama_memory_seq_rm(mem, s, CTX, -1);
        }
    }
    printf("],\"four_streams\":{\"slots_0_to_3_ms\":%.1f,\"slots_0_2_4_6_ms\":%.1f}}\n", four[0],
           four[1]);
    llama_batch_free(b);
    llama_free(ctx);
    llama_model_free(m);
    return 0;
}
