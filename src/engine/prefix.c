/*
 * DESIGN
 * Slot choice is a linear scan: `parallel` is small (at most 256) and each comparison stops
 * at the first differing token, so choosing costs far less than decoding one token.
 *
 * Why a tenth: what a slot holds is lost when another prompt takes it (only the common
 * prefix survives). Requiring the match to keep at least 10 % of the slot's tokens bounds
 * that loss against the gain (llama.cpp's server uses the same kind of similarity floor),
 * while a shared system prompt followed by a long earlier answer still counts.
 *
 * Why next to busy slots: slots are separate KV streams, and llama.cpp computes a step as
 * one graph per run of consecutive busy slots; four streams in slots 0, 2, 4, 6 cost about
 * 2.7 times what they cost in slots 0–3 on the bench model (bench/sched/step_cost). So
 * among equally good candidates the one that joins or bridges runs of busy slots wins, and
 * only then the least recently used.
 */
#include "engine/prefix.h"

#include <stddef.h>

int prefix_common(const int32_t *a, int na, const int32_t *b, int nb)
{
    int n = na < nb ? na : nb, i = 0;
    while (i < n && a[i] == b[i]) i++;
    return i;
}

int prefix_reusable(const int32_t *cached, int n_cached, const int32_t *prompt, int n_prompt)
{
    if (n_prompt <= 0 || n_cached <= 0) return 0;
    int k = prefix_common(cached, n_cached, prompt, n_prompt);
    return k < n_prompt ? k : n_prompt - 1;
}

int prefix_pick(const struct prefix_slot *slots, int n_slots, const int32_t *prompt, int n_prompt,
                int *reuse)
{
    int best = -1, best_score = -1, best_reuse = 0, best_near = 0;
    for (int i = 0; i < n_slots; i++) {
        const struct prefix_slot *s = &slots[i];
        if (s->busy) continue;
        int keep = prefix_reusable(s->tokens, s->n_tokens, prompt, n_prompt);
        int score = keep > 0 && (int64_t)keep * 10 >= s->n_tokens ? keep : 0;
        int near = (i > 0 && slots[i - 1].busy) + (i + 1 < n_slots && slots[i + 1].busy);
        if (score > best_score ||
            (score == best_score &&
             (near > best_near || (near == best_near && s->last_used < slots[best].last_used)))) {
            best = i;
            best_score = score;
            best_reuse = keep;
            best_near = near;
        }
    }
    if (reuse) *reuse = best >= 0 ? best_reuse : 0;
    return best;
}
