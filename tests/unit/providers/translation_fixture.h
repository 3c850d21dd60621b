/* What the translation tests share (test_anthropic.c, aws/test_bedrock.c, test_messages.c):
 * an arena per group, a request parsed into the request model, JSON compared as documents,
 * an answer translated and stripped of its timestamp, and a conversation that uses every
 * feature (system prompt, image, tool call, tool result, tools, stop, sampling).
 * Header-only: each test binary is one translation unit. */
#ifndef STRATUS_TEST_TRANSLATION_FIXTURE_H
#define STRATUS_TEST_TRANSLATION_FIXTURE_H

#include <jansson.h>
#include <string.h>

#include "openai/request.h"
#include "util/arena.h"
#include "util/err.h"

static struct arena *arena;

static inline int setup(void **state)
{
    (void)state;
    arena = arena_new(0);
    return arena ? 0 : -1;
}

static inline int teardown(void **state)
{
    (void)state;
    arena_free(arena);
    return 0;
}

static inline struct openai_request parse(const char *body)
{
    struct openai_request r;
    struct err e;
    if (openai_parse_request(OPENAI_CHAT, body, strlen(body), arena, &r, &e) != 0)
        fail_msg("parse: %s", e.msg);
    return r;
}

static inline void assert_json(json_t *doc, const char *expected)
{
    json_t *want = json_loads(expected, 0, NULL);
    assert_non_null(want);
    if (!json_equal(doc, want)) {
        char *got = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
        fail_msg("got %s", got);
    }
    json_decref(want);
}

/* A provider's answer translator run on `body`; its "created" (the clock) removed. */
static inline json_t *translate_answer(char *(*fn)(const char *, size_t, const char *,
                                                   struct arena *, size_t *, struct err *),
                                       const char *body)
{
    struct err e;
    size_t len;
    char *out = fn(body, strlen(body), "target", arena, &len, &e);
    if (out == NULL) fail_msg("%s", e.msg);
    json_t *doc = json_loadb(out, len, 0, NULL);
    assert_non_null(doc);
    json_object_del(doc, "created");
    return doc;
}

#define TOOLS_CONVERSATION                                                                         \
    "{\"model\":\"m\",\"max_tokens\":50,\"temperature\":0.2,\"top_p\":0.9,\"stop\":\"END\","       \
    "\"messages\":["                                                                               \
    "{\"role\":\"system\",\"content\":\"Be brief.\"},"                                             \
    "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"What is this?\"},"              \
    "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,iVBORw0K\"}}]},"       \
    "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call_1\",\"type\":"        \
    "\"function\",\"function\":{\"name\":\"weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}" \
    "\"}}]},"                                                                                      \
    "{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":\"22C\"}],"                        \
    "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"weather\",\"description\":\"w\","  \
    "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}}}],"     \
    "\"tool_choice\":\"required\"}"

#endif
