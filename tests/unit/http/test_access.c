/* Unit tests for src/http/access.c: the verdict at accept and the X-Forwarded-For walk. */
#include "unit/cmocka_all.h"

#include <string.h>

#include "http/access.h"

static uint8_t *ip(const char *s)
{
    static uint8_t bufs[8][16];
    static size_t next;
    uint8_t *a = bufs[next++ % 8];
    assert_int_equal(cidr_parse_addr(s, strlen(s), a), 0);
    return a;
}

static struct cidr allow[2], trust[2];

static struct access_policy policy(void)
{
    const char *why;
    assert_int_equal(cidr_parse("10.0.0.0/8", &allow[0], &why), 0);
    assert_int_equal(cidr_parse("::1", &allow[1], &why), 0);
    assert_int_equal(cidr_parse("192.0.2.0/24", &trust[0], &why), 0);
    assert_int_equal(cidr_parse("2001:db8::1", &trust[1], &why), 0);
    return (struct access_policy){
        .allow = allow, .n_allow = 2, .allow_set = true, .trust_proxy = trust, .n_trust_proxy = 2};
}

/* The client X-Forwarded-For names, as text, from peer `peer`; "ERR" when malformed. */
static const char *walk(const struct access_policy *p, const char *peer, const char *const *xff,
                        size_t n)
{
    static char text[CIDR_TEXT_SIZE];
    uint8_t client[16];
    if (access_xff_client(p, ip(peer), xff, n, client) != 0) return "ERR";
    cidr_format_addr(client, text);
    return text;
}

static void test_access_classify_at_accept(void **state)
{
    (void)state;
    struct access_policy p = policy();
    assert_int_equal(access_classify(&p, ip("10.1.2.3")), ACCESS_ALLOW);
    assert_int_equal(access_classify(&p, ip("::ffff:10.1.2.3")), ACCESS_ALLOW);
    assert_int_equal(access_classify(&p, ip("::1")), ACCESS_ALLOW);
    assert_int_equal(access_classify(&p, ip("11.0.0.1")), ACCESS_DENY);
    assert_int_equal(access_classify(&p, ip("192.0.2.44")), ACCESS_PER_REQUEST);
    assert_int_equal(access_classify(&p, ip("2001:db8::1")), ACCESS_PER_REQUEST);
    assert_int_equal(access_classify(&p, NULL), ACCESS_ALLOW); /* UNIX socket */
    struct access_policy open = {0};
    assert_int_equal(access_classify(&open, ip("203.0.113.9")), ACCESS_ALLOW);
    assert_int_equal(access_classify(NULL, ip("203.0.113.9")), ACCESS_ALLOW);
    assert_true(access_allowed(&open, ip("203.0.113.9")));
    assert_false(access_allowed(&p, ip("203.0.113.9")));
}

static void test_access_xff_walks_from_the_right(void **state)
{
    (void)state;
    struct access_policy p = policy();
    const char *one[] = {"10.1.1.1"};
    assert_string_equal(walk(&p, "192.0.2.1", one, 1), "10.1.1.1");
    /* A client-written left part is never reached past an untrusted entry. */
    const char *spoof[] = {"6.6.6.6, 10.1.1.1"};
    assert_string_equal(walk(&p, "192.0.2.1", spoof, 1), "10.1.1.1");
    /* Trusted hops are skipped, in one header or across several (order kept). */
    const char *hops[] = {"10.2.2.2, 192.0.2.7 ,2001:db8::1"};
    assert_string_equal(walk(&p, "192.0.2.1", hops, 1), "10.2.2.2");
    const char *lines[] = {"10.3.3.3", "192.0.2.8"};
    assert_string_equal(walk(&p, "192.0.2.1", lines, 2), "10.3.3.3");
    /* Everything trusted: the left-most address seen. */
    const char *all[] = {"192.0.2.9, 192.0.2.8"};
    assert_string_equal(walk(&p, "192.0.2.1", all, 1), "192.0.2.9");
    /* No header: the peer. Empty entries are skipped. */
    assert_string_equal(walk(&p, "192.0.2.1", NULL, 0), "192.0.2.1");
    const char *empty[] = {" , ,10.4.4.4,"};
    assert_string_equal(walk(&p, "192.0.2.1", empty, 1), "10.4.4.4");
    const char *bracket[] = {"[2001:db8::99]"};
    assert_string_equal(walk(&p, "192.0.2.1", bracket, 1), "2001:db8::99");
    /* Garbage where the walk stops is an error; beyond the client it is never read. */
    const char *garbage[] = {"10.1.1.1, unknown"};
    assert_string_equal(walk(&p, "192.0.2.1", garbage, 1), "ERR");
    const char *ignored[] = {"junk, 10.1.1.1"};
    assert_string_equal(walk(&p, "192.0.2.1", ignored, 1), "10.1.1.1");
    const char *port[] = {"10.1.1.1:443"};
    assert_string_equal(walk(&p, "192.0.2.1", port, 1), "ERR");
}

static void test_access_refusal_names_the_address(void **state)
{
    (void)state;
    struct err e;
    err_clear(&e);
    assert_int_equal(access_refuse(ip("::ffff:203.0.113.9"), &e), -1);
    assert_int_equal(e.status, 403);
    assert_string_equal(e.type, "permission_error");
    assert_string_equal(e.code, "ip_not_allowed");
    assert_non_null(strstr(e.msg, "203.0.113.9"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_access_classify_at_accept),
        cmocka_unit_test(test_access_xff_walks_from_the_right),
        cmocka_unit_test(test_access_refusal_names_the_address),
    };
    return cmocka_run_group_tests_name("src/http/access.c", tests, NULL, NULL);
}
