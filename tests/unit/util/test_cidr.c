/* Unit tests for src/util/cidr.c: parsing, matching (IPv4-mapped IPv6 too), formatting. */
#include "unit/cmocka_all.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "util/cidr.h"

static struct cidr block(const char *s)
{
    struct cidr c;
    const char *why = NULL;
    assert_int_equal(cidr_parse(s, &c, &why), 0);
    return c;
}

static bool in(const char *cidr, const char *addr)
{
    struct cidr c = block(cidr);
    uint8_t a[16];
    assert_int_equal(cidr_parse_addr(addr, strlen(addr), a), 0);
    return cidr_contains(&c, a);
}

static void test_cidr_parse_accepts_blocks_and_bare_addresses(void **state)
{
    (void)state;
    char text[CIDR_TEXT_SIZE];
    const char *cases[][2] = {
        {"10.0.0.0/8", "10.0.0.0/8"},
        {"127.0.0.1", "127.0.0.1/32"},
        {"0.0.0.0/0", "0.0.0.0/0"},
        {"::1", "::1/128"},
        {"::1/128", "::1/128"},
        {"fd00::/8", "fd00::/8"},
        {"::/0", "::/0"},
        {"2001:db8::/32", "2001:db8::/32"},
        {"192.168.1.128/25", "192.168.1.128/25"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct cidr c = block(cases[i][0]);
        cidr_format(&c, text);
        assert_string_equal(text, cases[i][1]);
    }
    assert_int_equal(block("10.0.0.0/8").bits, 104); /* IPv4 held mapped: +96 */
}

static void test_cidr_parse_refuses_what_is_not_a_block(void **state)
{
    (void)state;
    const char *bad[] = {"",
                         "10.0.0.0/",
                         "10.0.0.0/33",
                         "::1/129",
                         "10.0.0.1/8",
                         "10.0.0.0/-1",
                         "10.0.0.0/08",
                         "10.1",
                         "300.0.0.1",
                         "localhost",
                         "10.0.0.0/8/8",
                         "fe80::1%lo",
                         " 10.0.0.0/8",
                         "10.0.0.0/8 ",
                         "::1/1x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct cidr c;
        const char *why = NULL;
        assert_int_equal(cidr_parse(bad[i], &c, &why), -1);
        assert_non_null(why);
    }
}

static void test_cidr_contains_ipv4_ipv6_and_mapped(void **state)
{
    (void)state;
    assert_true(in("10.0.0.0/8", "10.255.1.2"));
    assert_false(in("10.0.0.0/8", "11.0.0.1"));
    assert_true(in("192.168.1.128/25", "192.168.1.200"));
    assert_false(in("192.168.1.128/25", "192.168.1.127"));
    assert_true(in("127.0.0.1", "127.0.0.1"));
    assert_false(in("127.0.0.1", "127.0.0.2"));
    assert_true(in("0.0.0.0/0", "8.8.8.8"));
    assert_false(in("0.0.0.0/0", "::1")); /* an IPv4 block never matches a real IPv6 address */
    assert_true(in("::1/128", "::1"));
    assert_false(in("::1/128", "::2"));
    assert_true(in("fd00::/8", "fd12:3456::1"));
    assert_true(in("2001:db8::/33", "2001:db8:7fff::1"));
    assert_false(in("2001:db8::/33", "2001:db8:8000::1"));
    /* An IPv4 client on a dual-stack socket arrives as ::ffff:a.b.c.d: IPv4 rules hold. */
    assert_true(in("10.0.0.0/8", "::ffff:10.1.2.3"));
    assert_true(in("::ffff:10.0.0.0/104", "10.1.2.3"));
    assert_true(in("::/0", "10.1.2.3"));
}

static void test_cidr_addresses_from_text_and_sockets(void **state)
{
    (void)state;
    uint8_t a[16];
    char text[CIDR_TEXT_SIZE];
    assert_int_equal(cidr_parse_addr(" [::1] ", 7, a), 0);
    cidr_format_addr(a, text);
    assert_string_equal(text, "::1");
    assert_int_equal(cidr_parse_addr("10.0.0.1,junk", 8, a), 0); /* only `len` bytes */
    cidr_format_addr(a, text);
    assert_string_equal(text, "10.0.0.1");
    assert_int_equal(cidr_parse_addr("::ffff:10.0.0.1", 15, a), 0);
    cidr_format_addr(a, text);
    assert_string_equal(text, "10.0.0.1"); /* mapped addresses print as IPv4 */
    assert_int_equal(cidr_parse_addr("", 0, a), -1);
    assert_int_equal(cidr_parse_addr("1.2.3.4:80", 10, a), -1);
    assert_int_equal(cidr_parse_addr("unknown", 7, a), -1);

    struct sockaddr_in s4 = {.sin_family = AF_INET};
    inet_pton(AF_INET, "192.0.2.5", &s4.sin_addr);
    assert_int_equal(cidr_from_sockaddr((struct sockaddr *)&s4, a), 0);
    cidr_format_addr(a, text);
    assert_string_equal(text, "192.0.2.5");
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, "2001:db8::5", &s6.sin6_addr);
    assert_int_equal(cidr_from_sockaddr((struct sockaddr *)&s6, a), 0);
    cidr_format_addr(a, text);
    assert_string_equal(text, "2001:db8::5");
    struct sockaddr un = {.sa_family = AF_UNIX};
    assert_int_equal(cidr_from_sockaddr(&un, a), -1);
    assert_int_equal(cidr_from_sockaddr(NULL, a), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cidr_parse_accepts_blocks_and_bare_addresses),
        cmocka_unit_test(test_cidr_parse_refuses_what_is_not_a_block),
        cmocka_unit_test(test_cidr_contains_ipv4_ipv6_and_mapped),
        cmocka_unit_test(test_cidr_addresses_from_text_and_sockets),
    };
    return cmocka_run_group_tests_name("src/util/cidr.c", tests, NULL, NULL);
}
