/* Unit tests for src/store/cache.c: the bounded LRU map under the response cache. */
#include "unit/cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/cache.h"
#include "util/arena.h"

static void key_of(unsigned n, uint8_t key[CACHE_KEY_SIZE])
{
    memset(key, 0, CACHE_KEY_SIZE);
    /* Low bits collide on purpose (slot = first 8 bytes): probe runs and shifts get tested. */
    key[0] = (uint8_t)(n % 4);
    memcpy(key + 8, &n, sizeof n);
}

static bool get(struct lru_cache *c, unsigned n, int64_t now, const char **value, size_t *len)
{
    uint8_t key[CACHE_KEY_SIZE];
    key_of(n, key);
    struct arena *a = arena_new(256);
    const void *v = NULL;
    bool hit = lru_cache_get(c, key, now, a, &v, len);
    static char copy[256];
    if (hit) memcpy(copy, v, *len < sizeof copy ? *len : sizeof copy);
    *value = copy;
    arena_free(a);
    return hit;
}

static void put(struct lru_cache *c, unsigned n, const char *value, int64_t expires)
{
    uint8_t key[CACHE_KEY_SIZE];
    key_of(n, key);
    assert_true(lru_cache_put(c, key, value, strlen(value) + 1, expires));
}

static void test_put_get_replace_expire(void **state)
{
    (void)state;
    struct lru_cache *c = lru_cache_new(10000);
    const char *v;
    size_t len;
    put(c, 1, "one", 1000);
    assert_true(get(c, 1, 500, &v, &len));
    assert_string_equal(v, "one");
    put(c, 1, "uno", 1000); /* replaced, not added */
    assert_true(get(c, 1, 500, &v, &len));
    assert_string_equal(v, "uno");
    assert_false(get(c, 2, 500, &v, &len));
    assert_false(get(c, 1, 1000, &v, &len)); /* expired at its time, and dropped */
    struct lru_cache_stats s;
    lru_cache_stats(c, &s);
    assert_int_equal(s.entries, 0);
    assert_int_equal(s.bytes, 0);
    assert_int_equal(s.expired, 1);
    lru_cache_free(c);
}

static void test_least_recently_used_goes_first_and_bytes_stay_bounded(void **state)
{
    (void)state;
    char big[200];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    /* Each entry costs its 200 bytes + key + overhead (~330): room for three. */
    struct lru_cache *c = lru_cache_new(1000);
    put(c, 1, big, 1 << 30);
    put(c, 2, big, 1 << 30);
    put(c, 3, big, 1 << 30);
    const char *v;
    size_t len;
    assert_true(get(c, 1, 0, &v, &len)); /* 1 is now the most recent: 2 is the oldest */
    put(c, 4, big, 1 << 30);
    assert_false(get(c, 2, 0, &v, &len));
    assert_true(get(c, 1, 0, &v, &len));
    assert_true(get(c, 3, 0, &v, &len));
    assert_true(get(c, 4, 0, &v, &len));
    struct lru_cache_stats s;
    lru_cache_stats(c, &s);
    assert_true(s.bytes <= 1000);
    assert_int_equal(s.evictions, 1);
    /* Larger than the whole cap: refused, nothing evicted for it. */
    char huge[2000];
    memset(huge, 'y', sizeof huge - 1);
    huge[sizeof huge - 1] = '\0';
    uint8_t key[CACHE_KEY_SIZE];
    key_of(9, key);
    assert_false(lru_cache_put(c, key, huge, sizeof huge, 1 << 30));
    assert_true(get(c, 1, 0, &v, &len));
    lru_cache_free(c);
}

/* Many puts, gets and expiries against a plain array model: deletion by backward shift must
 * never lose an entry that is still there. */
static void test_random_operations_match_a_model(void **state)
{
    (void)state;
    enum { KEYS = 300 };
    struct lru_cache *c = lru_cache_new(1u << 30); /* no eviction: only expiry removes */
    int64_t expires[KEYS] = {0};
    unsigned seed = 12345;
    for (int step = 0; step < 20000; step++) {
        seed = seed * 1103515245u + 12345u;
        unsigned k = (seed >> 8) % KEYS;
        int64_t now = step;
        if ((seed >> 20) % 3 == 0) {
            char value[32];
            snprintf(value, sizeof value, "v%u", k);
            expires[k] = now + 1 + (int64_t)((seed >> 4) % 200);
            put(c, k, value, expires[k]);
        } else {
            const char *v;
            size_t len;
            bool hit = get(c, k, now, &v, &len);
            assert_int_equal(hit, expires[k] > now);
            if (hit) {
                char want[32];
                snprintf(want, sizeof want, "v%u", k);
                assert_string_equal(v, want);
            }
            if (!hit) expires[k] = 0;
        }
    }
    lru_cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get_replace_expire),
        cmocka_unit_test(test_least_recently_used_goes_first_and_bytes_stay_bounded),
        cmocka_unit_test(test_random_operations_match_a_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
