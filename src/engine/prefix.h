/*
 * engine/prefix — the prompt-prefix cache's decisions, kept apart from llama.cpp so they can
 * be tested on their own: how many of a prompt's tokens a slot's KV cache already holds, and
 * which free slot a new prompt should take.
 *
 * A slot's cache is the list of tokens its KV cells hold, position by position (position i
 * holds tokens[i]). A prompt can keep the cells of the longest common prefix and decodes
 * only the rest.
 *
 * Thread: any; no state.
 */
#ifndef STRATUS_ENGINE_PREFIX_H
#define STRATUS_ENGINE_PREFIX_H

#include <stdbool.h>
#include <stdint.h>

/* A slot as the picker sees it. Tokens are llama_token values (int32_t in llama.h). */
struct prefix_slot {
    const int32_t *tokens; /* what its KV cache holds (borrowed); NULL when n_tokens is 0 */
    int n_tokens;
    uint64_t last_used; /* larger = used more recently; 0 = never */
    bool busy;          /* serving a request: not a candidate */
};

/** @return the length of the longest common prefix of a[0..na) and b[0..nb). */
int prefix_common(const int32_t *a, int na, const int32_t *b, int nb);

/** How many of `prompt`'s tokens a slot holding `cached` keeps: the common prefix, but never
 *  the whole prompt — its last token is decoded again so that there are logits to sample
 *  the first new token from. */
int prefix_reusable(const int32_t *cached, int n_cached, const int32_t *prompt, int n_prompt);

/** Picks the free slot for `prompt`: the one that keeps the most of it, counting a slot's
 *  match only when it keeps at least a tenth of what the slot holds (taking a slot
 *  destroys the rest of its cache, so a few shared template tokens must not evict a long
 *  conversation); ties, and no match, go to the slot with the most busy neighbours
 *  (fewer runs of busy slots, fewer graphs a step), then to the least recently used (an
 *  empty slot first). @param reuse  set to how many tokens the picked slot keeps.
 *  @return the slot's index, or -1 when every slot is busy. */
int prefix_pick(const struct prefix_slot *slots, int n_slots, const int32_t *prompt, int n_prompt,
                int *reuse);

#endif
