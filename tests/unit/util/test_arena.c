/* Unit tests for src/util/arena.c. */
#include "unit/cmocka_all.h"

#include <string.h>

#include "util/arena.h"

static int cleanup_order[4];
static int cleanup_count;

static void record(void *ud)
{
    cleanup_order[cleanup_count++] = *(int *)ud;
}

static void test_arena_alloc_grows_and_aligns(void **state)
{
    (void)state;
    struct arena *a = arena_new(256);
    for (int i = 0; i < 1000; i++) {
        char *p = arena_alloc(a, (size_t)(i % 97) + 1);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 16, 0);
        memset(p, 0xab, (size_t)(i % 97) + 1);
    }
    char *big = arena_alloc(a, 1 << 20);
    assert_non_null(big);
    memset(big, 1, 1 << 20);
    assert_string_equal(arena_printf(a, "%s-%d", "x", 42), "x-42");
    assert_string_equal(arena_strndup(a, "hello", 3), "hel");
    arena_free(a);
}

static void test_arena_free_runs_cleanups_last_in_first_out(void **state)
{
    (void)state;
    static int one = 1, two = 2, three = 3;
    cleanup_count = 0;
    struct arena *a = arena_new(64);
    arena_on_free(a, record, &one);
    arena_on_free(a, record, &two);
    arena_on_free(a, record, &three);
    arena_free(a);
    assert_int_equal(cleanup_count, 3);
    assert_int_equal(cleanup_order[0], 3);
    assert_int_equal(cleanup_order[2], 1);
    arena_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arena_alloc_grows_and_aligns),
        cmocka_unit_test(test_arena_free_runs_cleanups_last_in_first_out),
    };
    return cmocka_run_group_tests_name("src/util/arena.c", tests, NULL, NULL);
}
