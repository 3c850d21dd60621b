/*
 * make-model — writes a small llama-architecture GGUF with deterministic pseudo-random
 * weights, taking the tokenizer from a vocab-only GGUF (llama.cpp ships several). The text
 * such a model produces is gibberish, but it exercises every part of local inference —
 * tokenizer, chat template, batching, sampling — with a real llama.cpp, and the same command
 * always writes the same bytes, so tests can check tokens and determinism.
 *
 *   make-model --vocab ggml-vocab-llama-spm.gguf --out tiny.gguf [--preset tiny|bench]
 *              [--embd N] [--layers N] [--heads N] [--ff N] [--ctx N] [--seed N]
 */
#include <ggml.h>
#include <gguf.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ChatML, the format most instruction-tuned GGUFs use; llama.cpp recognises it. */
static const char chatml[] =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}";

static uint64_t rng_state;

static float next_uniform(void)
{
    /* splitmix64: deterministic across platforms, good enough for weights */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return (float)((z >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static struct ggml_tensor *tensor(struct ggml_context *g, struct gguf_context *out,
                                  const char *name, int64_t ne0, int64_t ne1, float scale,
                                  float constant)
{
    struct ggml_tensor *t = ne1 > 0 ? ggml_new_tensor_2d(g, GGML_TYPE_F32, ne0, ne1)
                                    : ggml_new_tensor_1d(g, GGML_TYPE_F32, ne0);
    ggml_set_name(t, name);
    float *d = t->data;
    int64_t n = ne0 * (ne1 > 0 ? ne1 : 1);
    for (int64_t i = 0; i < n; i++) d[i] = scale != 0 ? next_uniform() * scale : constant;
    gguf_add_tensor(out, t);
    return t;
}

static void usage(void)
{
    fprintf(
        stderr,
        "usage: make-model --vocab VOCAB.gguf --out OUT.gguf [--preset tiny|bench]\n"
        "                  [--embd N] [--layers N] [--heads N] [--ff N] [--ctx N] [--seed N]\n");
}

int main(int argc, char **argv)
{
    const char *vocab_path = NULL, *out_path = NULL;
    long embd = 64, layers = 2, heads = 4, ff = 256, ctx = 4096, seed = 42;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL) {
            usage();
            return 2;
        }
        i++;
        if (strcmp(k, "--vocab") == 0)
            vocab_path = v;
        else if (strcmp(k, "--out") == 0)
            out_path = v;
        else if (strcmp(k, "--embd") == 0)
            embd = atol(v);
        else if (strcmp(k, "--layers") == 0)
            layers = atol(v);
        else if (strcmp(k, "--heads") == 0)
            heads = atol(v);
        else if (strcmp(k, "--ff") == 0)
            ff = atol(v);
        else if (strcmp(k, "--ctx") == 0)
            ctx = atol(v);
        else if (strcmp(k, "--seed") == 0)
            seed = atol(v);
        else if (strcmp(k, "--preset") == 0 && strcmp(v, "tiny") == 0) {
            embd = 64, layers = 2, heads = 4, ff = 256;
        } else if (strcmp(k, "--preset") == 0 && strcmp(v, "bench") == 0) {
            embd = 768, layers = 12, heads = 12, ff = 2048; /* ~134M parameters with the 32k vocabulary */
        } else {
            usage();
            return 2;
        }
    }
    if (vocab_path == NULL || out_path == NULL || embd <= 0 || layers <= 0 || heads <= 0 ||
        embd % heads != 0 || ff <= 0 || ctx <= 0) {
        usage();
        return 2;
    }
    rng_state = (uint64_t)seed;
    struct gguf_init_params vp = {.no_alloc = true, .ctx = NULL};
    struct gguf_context *vocab = gguf_init_from_file(vocab_path, vp);
    if (vocab == NULL) {
        fprintf(stderr, "make-model: cannot read %s as GGUF\n", vocab_path);
        return 1;
    }
    int64_t tok_key = gguf_find_key(vocab, "tokenizer.ggml.tokens");
    if (tok_key < 0) {
        fprintf(stderr, "make-model: %s has no tokenizer\n", vocab_path);
        gguf_free(vocab);
        return 1;
    }
    int64_t n_vocab = (int64_t)gguf_get_arr_n(vocab, tok_key);

    struct gguf_context *out = gguf_init_empty();
    gguf_set_kv(out, vocab); /* tokenizer.* and the rest; the model keys are overridden below */
    gguf_free(vocab);
    gguf_set_val_str(out, "general.architecture", "llama");
    gguf_set_val_str(out, "general.name", "stratus demo model (random weights)");
    gguf_set_val_u32(out, "general.file_type", 0); /* all F32 */
    gguf_set_val_u32(out, "llama.context_length", (uint32_t)ctx);
    gguf_set_val_u32(out, "llama.embedding_length", (uint32_t)embd);
    gguf_set_val_u32(out, "llama.block_count", (uint32_t)layers);
    gguf_set_val_u32(out, "llama.feed_forward_length", (uint32_t)ff);
    gguf_set_val_u32(out, "llama.attention.head_count", (uint32_t)heads);
    gguf_set_val_u32(out, "llama.attention.head_count_kv", (uint32_t)heads);
    gguf_set_val_f32(out, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    gguf_set_val_u32(out, "llama.rope.dimension_count", (uint32_t)(embd / heads));
    gguf_set_val_u32(out, "llama.vocab_size", (uint32_t)n_vocab);
    gguf_set_val_str(out, "tokenizer.chat_template", chatml);

    size_t n_floats =
        (size_t)(2 * n_vocab * embd + embd + layers * (2 * embd + 4 * embd * embd + 3 * embd * ff));
    struct ggml_init_params gp = {
        .mem_size =
            n_floats * sizeof(float) + (size_t)(layers * 9 + 3) * ggml_tensor_overhead() + 1024,
        .mem_buffer = NULL,
        .no_alloc = false,
    };
    struct ggml_context *g = ggml_init(gp);
    if (g == NULL) {
        fprintf(stderr, "make-model: out of memory\n");
        gguf_free(out);
        return 1;
    }
    /* Small weights keep activations tame; norms start at 1. */
    float w = 0.5f / (float)embd;
    tensor(g, out, "token_embd.weight", embd, n_vocab, 0.05f, 0);
    tensor(g, out, "output_norm.weight", embd, 0, 0, 1.0f);
    tensor(g, out, "output.weight", embd, n_vocab, 0.05f, 0);
    char name[64];
    for (long l = 0; l < layers; l++) {
#define T(suffix, a, b, scale, c)                                                                  \
    snprintf(name, sizeof name, "blk.%ld." suffix, l);                                             \
    tensor(g, out, name, a, b, scale, c)
        T("attn_norm.weight", embd, 0, 0, 1.0f);
        T("attn_q.weight", embd, embd, w * 8, 0);
        T("attn_k.weight", embd, embd, w * 8, 0);
        T("attn_v.weight", embd, embd, w * 8, 0);
        T("attn_output.weight", embd, embd, w * 8, 0);
        T("ffn_norm.weight", embd, 0, 0, 1.0f);
        T("ffn_gate.weight", embd, ff, w * 8, 0);
        T("ffn_up.weight", embd, ff, w * 8, 0);
        T("ffn_down.weight", ff, embd, w * 8, 0);
#undef T
    }
    bool ok = gguf_write_to_file(out, out_path, false);
    gguf_free(out);
    ggml_free(g);
    if (!ok) {
        fprintf(stderr, "make-model: cannot write %s\n", out_path);
        return 1;
    }
    printf("%s: %lld-token vocab, %ld-wide, %ld layers, %.1fM parameters\n", out_path,
           (long long)n_vocab, embd, layers, (double)n_floats / 1e6);
    return 0;
}
