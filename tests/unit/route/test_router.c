/* Unit tests for src/route/router.c: the order targets are tried in. */
#include "unit/cmocka_all.h"

#include <string.h>

#include "route/router.h"

static void test_router_plan_priority_keeps_configured_order(void **state)
{
    (void)state;
    struct target_conf targets[3] = {{.model = "a"}, {.model = "b"}, {.model = "c"}};
    struct model_conf m = {
        .name = "chat", .route = ROUTE_PRIORITY, .targets = targets, .n_targets = 3};
    struct config cfg = {.models = &m, .n_models = 1};
    struct err e;
    struct router *r = router_new(&cfg, &e);
    assert_non_null(r);
    size_t order[3];
    struct route_plan plan = {.order = order};
    assert_int_equal(router_plan(r, &m, &plan, &e), 0);
    assert_int_equal(plan.n, 3);
    assert_int_equal(order[0], 0);
    assert_int_equal(order[1], 1);
    assert_int_equal(order[2], 2);
    assert_string_equal(plan.policy, "priority");
    /* A failure report does not reorder a priority plan: failover is the proxy's walk. */
    router_report(r, &m, 0, ROUTE_FAILED, 0);
    assert_int_equal(router_plan(r, &m, &plan, &e), 0);
    assert_int_equal(order[0], 0);
    router_free(r);
}

static void test_router_plan_fails_without_targets(void **state)
{
    (void)state;
    struct model_conf m = {
        .name = "empty", .route = ROUTE_PRIORITY, .targets = NULL, .n_targets = 0};
    struct config cfg = {.models = &m, .n_models = 1};
    struct err e;
    struct router *r = router_new(&cfg, &e);
    struct route_plan plan = {.order = NULL};
    assert_int_equal(router_plan(r, &m, &plan, &e), -1);
    assert_int_equal(e.status, 503);
    assert_non_null(strstr(e.msg, "empty"));
    router_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_router_plan_priority_keeps_configured_order),
        cmocka_unit_test(test_router_plan_fails_without_targets),
    };
    return cmocka_run_group_tests_name("src/route/router.c", tests, NULL, NULL);
}
