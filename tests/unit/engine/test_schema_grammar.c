/* Unit tests for src/engine/schema_grammar.c: the GBNF written for a JSON Schema. (That
 * llama.cpp accepts and follows it: tests/integration/functions.test.mjs.) */
#include "unit/cmocka_all.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "engine/schema_grammar.h"

static char *grammar_of(const char *schema, char *why, size_t cap)
{
    json_t *s = json_loads(schema, 0, NULL);
    assert_non_null(s);
    char *g = schema_grammar(s, why, cap);
    json_decref(s);
    return g;
}

/* The line of rule `name` ("r1 ::= …"), for assertions. */
static const char *line_of(const char *g, const char *name, char *out, size_t cap)
{
    char head[32];
    snprintf(head, sizeof head, "%s ::= ", name);
    const char *at = strstr(g, head);
    if (at == NULL) fail_msg("no rule %s in:\n%s", name, g);
    const char *end = strchr(at, '\n');
    snprintf(out, cap, "%.*s", (int)(end - at), at);
    return out;
}

static void test_schema_grammar_object_with_enum_and_types(void **state)
{
    (void)state;
    char why[160], line[512];
    char *g =
        grammar_of("{\"type\":\"object\",\"properties\":{\"label\":{\"enum\":[\"spam\",\"ham\"]},"
                   "\"score\":{\"type\":\"number\"},\"tags\":{\"type\":\"array\",\"items\":"
                   "{\"type\":\"string\"}},\"note\":{\"type\":[\"string\",\"null\"]}}}",
                   why, sizeof why);
    assert_non_null(g);
    assert_string_equal(line_of(g, "root", line, sizeof line), "root ::= r0");
    /* Every property, in the schema's order, with its own rule. */
    assert_string_equal(line_of(g, "r0", line, sizeof line),
                        "r0 ::= \"{\" ws \"\\\"label\\\"\" ws \":\" ws r1 \",\" ws "
                        "\"\\\"score\\\"\" ws \":\" ws r2 \",\" ws \"\\\"tags\\\"\" ws \":\" ws "
                        "r3 \",\" ws \"\\\"note\\\"\" ws \":\" ws r5 \"}\" ws");
    assert_string_equal(line_of(g, "r1", line, sizeof line),
                        "r1 ::= \"\\\"spam\\\"\" ws | \"\\\"ham\\\"\" ws");
    assert_string_equal(line_of(g, "r2", line, sizeof line), "r2 ::= number");
    assert_string_equal(line_of(g, "r3", line, sizeof line),
                        "r3 ::= \"[\" ws ( r4 ( \",\" ws r4 )* )? \"]\" ws");
    assert_string_equal(line_of(g, "r4", line, sizeof line), "r4 ::= string");
    assert_string_equal(line_of(g, "r5", line, sizeof line), "r5 ::= ( string ) | ( null )");
    assert_non_null(strstr(g, "\nvalue ::= "));
    free(g);
}

static void test_schema_grammar_literals_anyof_and_open_values(void **state)
{
    (void)state;
    char why[160], line[512];
    char *g = grammar_of("{\"anyOf\":[{\"const\":\"a\\\"b\"},{\"type\":\"integer\"},{}]}", why,
                         sizeof why);
    assert_non_null(g);
    assert_string_equal(line_of(g, "r0", line, sizeof line), "r0 ::= r1 | r2 | r3");
    /* A quote inside a literal is escaped twice: once for JSON, once for GBNF. */
    assert_string_equal(line_of(g, "r1", line, sizeof line), "r1 ::= \"\\\"a\\\\\\\"b\\\"\" ws");
    assert_string_equal(line_of(g, "r2", line, sizeof line), "r2 ::= integer");
    assert_string_equal(line_of(g, "r3", line, sizeof line), "r3 ::= value");
    free(g);
    /* A number literal reads as the schema wrote it, not as its 17-digit double. */
    g = grammar_of("{\"enum\":[0.1,0.7]}", why, sizeof why);
    assert_non_null(g);
    assert_non_null(strstr(g, "\"0.1\" ws"));
    assert_non_null(strstr(g, "\"0.7\" ws"));
    assert_null(strstr(g, "0.1000"));
    free(g);
    /* minItems / maxItems bound the repetition. */
    const struct {
        const char *schema, *rule;
    } arrays[] = {
        {"{\"type\":\"array\",\"maxItems\":3}",
         "r0 ::= \"[\" ws ( value ( \",\" ws value ){0,2} )? \"]\" ws"},
        {"{\"type\":\"array\",\"minItems\":2}",
         "r0 ::= \"[\" ws value ( \",\" ws value ){1,} \"]\" ws"},
        {"{\"type\":\"array\",\"minItems\":1,\"maxItems\":1}",
         "r0 ::= \"[\" ws value ( \",\" ws value ){0,0} \"]\" ws"},
        {"{\"type\":\"array\",\"maxItems\":0}", "r0 ::= \"[\" ws \"]\" ws"},
        {"{\"type\":\"array\"}", "r0 ::= \"[\" ws ( value ( \",\" ws value )* )? \"]\" ws"},
    };
    for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++) {
        g = grammar_of(arrays[i].schema, why, sizeof why);
        assert_non_null(g);
        assert_string_equal(line_of(g, "r0", line, sizeof line), arrays[i].rule);
        free(g);
    }
}

static void test_schema_grammar_says_what_it_does_not_cover(void **state)
{
    (void)state;
    char why[160];
    const struct {
        const char *schema, *why;
    } cases[] = {
        {"{\"$ref\":\"#/defs/x\"}", "the schema uses $ref"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"oneOf\":[]}}}", "the schema uses oneOf"},
        {"{\"type\":\"string\",\"pattern\":\"^a\"}", "the schema uses pattern"},
        {"{\"enum\":[]}", "the schema uses an empty enum"},
        {"{\"type\":\"tuple\"}", "the schema uses an unknown type"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *g = grammar_of(cases[i].schema, why, sizeof why);
        if (g != NULL) fail_msg("%s: a grammar was made:\n%s", cases[i].schema, g);
        assert_string_equal(why, cases[i].why);
    }
    json_t *notobj = json_string("x");
    assert_null(schema_grammar(notobj, why, sizeof why));
    json_decref(notobj);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schema_grammar_object_with_enum_and_types),
        cmocka_unit_test(test_schema_grammar_literals_anyof_and_open_values),
        cmocka_unit_test(test_schema_grammar_says_what_it_does_not_cover),
    };
    return cmocka_run_group_tests_name("src/engine/schema_grammar.c", tests, NULL, NULL);
}
