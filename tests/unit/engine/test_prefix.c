/* Unit tests for src/engine/prefix.c: how much of a prompt a slot's KV cache keeps and which
 * free slot a prompt takes. (That reuse leaves answers unchanged and shows in /stats:
 * tests/integration/prefix.test.mjs.) */
#include "unit/cmocka_all.h"

#include "engine/prefix.h"

#define N(a) ((int)(sizeof(a) / sizeof(a)[0]))

static void test_prefix_common_and_reusable(void **state)
{
    (void)state;
    const int32_t a[] = {1, 2, 3, 4, 5}, b[] = {1, 2, 3, 9}, c[] = {7};
    assert_int_equal(prefix_common(a, N(a), b, N(b)), 3);
    assert_int_equal(prefix_common(a, N(a), c, N(c)), 0);
    assert_int_equal(prefix_common(a, 0, b, N(b)), 0);
    assert_int_equal(prefix_common(a, N(a), a, N(a)), 5);
    /* A diverging prompt keeps the common part. */
    assert_int_equal(prefix_reusable(a, N(a), b, N(b)), 3);
    /* The same prompt again, or one the cache covers wholly: its last token is decoded
     * again, so there are logits to sample from. */
    assert_int_equal(prefix_reusable(a, N(a), a, N(a)), 4);
    assert_int_equal(prefix_reusable(a, N(a), a, 3), 2);
    /* A prompt that extends the cache (the next turn of a chat) keeps all of it. */
    const int32_t longer[] = {1, 2, 3, 4, 5, 6, 7};
    assert_int_equal(prefix_reusable(a, N(a), longer, N(longer)), 5);
    assert_int_equal(prefix_reusable(NULL, 0, a, N(a)), 0);
    assert_int_equal(prefix_reusable(a, N(a), a, 1), 0);
}

static void test_prefix_pick_longest_match_among_free_slots(void **state)
{
    (void)state;
    const int32_t sys_a[] = {1, 10, 11, 12, 13, 20, 21}, sys_b[] = {2, 30, 31, 32, 33, 40};
    const int32_t prompt[] = {1, 10, 11, 12, 13, 50, 51};
    struct prefix_slot slots[] = {
        {sys_b, N(sys_b), 5, false},
        {sys_a, N(sys_a), 9, false},
        {NULL, 0, 0, false},
    };
    int reuse = -1;
    assert_int_equal(prefix_pick(slots, N(slots), prompt, N(prompt), &reuse), 1);
    assert_int_equal(reuse, 5);
    /* The best slot is busy: the next best free one (here none matches → LRU, the empty
     * one), and its own reuse. */
    slots[1].busy = true;
    assert_int_equal(prefix_pick(slots, N(slots), prompt, N(prompt), &reuse), 2);
    assert_int_equal(reuse, 0);
    /* Everything busy. */
    slots[0].busy = slots[2].busy = true;
    assert_int_equal(prefix_pick(slots, N(slots), prompt, N(prompt), &reuse), -1);
    assert_int_equal(reuse, 0);
}

static void test_prefix_pick_ties_and_misses_go_to_the_least_recently_used(void **state)
{
    (void)state;
    const int32_t x[] = {1, 2, 3, 4}, y[] = {1, 2, 3, 8}, z[] = {5, 6};
    const int32_t prompt[] = {1, 2, 3, 7};
    struct prefix_slot slots[] = {{x, N(x), 8, false}, {y, N(y), 3, false}, {z, N(z), 1, false}};
    int reuse = -1;
    /* x and y keep 3 tokens each: the older of the two, y. */
    assert_int_equal(prefix_pick(slots, N(slots), prompt, N(prompt), &reuse), 1);
    assert_int_equal(reuse, 3);
    /* No slot shares anything: the least recently used. */
    const int32_t other[] = {9, 9};
    assert_int_equal(prefix_pick(slots, N(slots), other, N(other), &reuse), 2);
    assert_int_equal(reuse, 0);
}

static void test_prefix_pick_prefers_a_slot_next_to_busy_ones(void **state)
{
    (void)state;
    const int32_t a[] = {5, 6}, b[] = {7, 8};
    const int32_t prompt[] = {1, 2, 3};
    int reuse = -1;
    /* Busy 0 and 2; free 1 (used last), 3 (next to 2) and 4 (used first). Without a match
     * the free slot between two busy ones wins over older ones: one run of busy slots. */
    struct prefix_slot slots[] = {{NULL, 0, 9, true},
                                  {a, N(a), 7, false},
                                  {NULL, 0, 8, true},
                                  {b, N(b), 5, false},
                                  {NULL, 0, 1, false}};
    assert_int_equal(prefix_pick(slots, N(slots), prompt, N(prompt), &reuse), 1);
    assert_int_equal(reuse, 0);
    /* With slot 1 busy too, slot 3 extends the run rather than slot 4 starting another. */
    slots[1].busy = true;
    assert_int_equal(prefix_pick(slots, N(slots), prompt, N(prompt), &reuse), 3);
    /* A real match still comes first, wherever it is. */
    const int32_t c[] = {1, 2, 3, 4};
    slots[4] = (struct prefix_slot){c, N(c), 1, false};
    assert_int_equal(prefix_pick(slots, N(slots), prompt, N(prompt), &reuse), 4);
    assert_int_equal(reuse, 2);
}

static void test_prefix_pick_a_thin_match_does_not_evict_a_long_cache(void **state)
{
    (void)state;
    /* Slot 0 holds a 100-token conversation that shares only its first 3 tokens (the chat
     * template's head) with the prompt; slot 1, older, holds something unrelated. Taking
     * slot 0 would save 3 tokens and destroy 97: the prompt goes to slot 1. */
    int32_t conv[100], prompt[20];
    for (int i = 0; i < 100; i++) conv[i] = 1000 + i;
    for (int i = 0; i < 20; i++) prompt[i] = i < 3 ? 1000 + i : 5000 + i;
    const int32_t unrelated[] = {7, 7, 7};
    struct prefix_slot slots[] = {{conv, 100, 50, false}, {unrelated, 3, 10, false}};
    int reuse = -1;
    assert_int_equal(prefix_pick(slots, N(slots), prompt, N(prompt), &reuse), 1);
    assert_int_equal(reuse, 0);
    /* A tenth of what it holds is enough: 10 of 100 shared tokens count as a match. */
    for (int i = 3; i < 10; i++) prompt[i] = 1000 + i;
    assert_int_equal(prefix_pick(slots, N(slots), prompt, N(prompt), &reuse), 0);
    assert_int_equal(reuse, 10);
    /* When the thin match is the only free slot, what it shares is still kept. */
    for (int i = 3; i < 10; i++) prompt[i] = 5000 + i;
    slots[1].busy = true;
    assert_int_equal(prefix_pick(slots, N(slots), prompt, N(prompt), &reuse), 0);
    assert_int_equal(reuse, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prefix_common_and_reusable),
        cmocka_unit_test(test_prefix_pick_longest_match_among_free_slots),
        cmocka_unit_test(test_prefix_pick_ties_and_misses_go_to_the_least_recently_used),
        cmocka_unit_test(test_prefix_pick_prefers_a_slot_next_to_busy_ones),
        cmocka_unit_test(test_prefix_pick_a_thin_match_does_not_evict_a_long_cache),
    };
    return cmocka_run_group_tests_name("src/engine/prefix.c", tests, NULL, NULL);
}
