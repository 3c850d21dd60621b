/*
 * Translation overhead per request, in-process: what the gateway does to a chat request and
 * its answer for each provider type, with no network.
 *   openai    — splice "model" into the client's body + scan the answer (passthrough)
 *   anthropic — OpenAI → Messages request, Messages answer → chat.completion
 *   bedrock   — OpenAI → Converse request, SigV4 signature, Converse answer → chat.completion
 * plus per-chunk cost of stream translation. Usage: build/bench/translate_bench [iterations]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "openai/request.h"
#include "providers/anthropic.h"
#include "providers/aws/bedrock.h"
#include "providers/aws/sigv4.h"
#include "providers/provider.h"
#include "util/arena.h"
#include "util/clock.h"

static const char *REQUEST =
    "{\"model\":\"chat\",\"max_tokens\":256,\"temperature\":0.7,\"messages\":["
    "{\"role\":\"system\",\"content\":\"You are a helpful assistant that answers briefly and "
    "precisely, citing sources when you can.\"},"
    "{\"role\":\"user\",\"content\":\"Summarise the following text in three bullet points: "
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt "
    "ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation "
    "ullamco laboris nisi ut aliquip ex ea commodo consequat. Duis aute irure dolor in "
    "reprehenderit in voluptate velit esse cillum dolore eu fugiat nulla pariatur.\"},"
    "{\"role\":\"assistant\",\"content\":\"Sure - which format do you prefer?\"},"
    "{\"role\":\"user\",\"content\":\"Markdown bullets, please.\"}]}";

static const char *OPENAI_ANSWER =
    "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":1700000000,\"model\":"
    "\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":"
    "\"- Lorem ipsum dolor sit amet\\n- Ut enim ad minim veniam\\n- Duis aute irure dolor\"},"
    "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":120,\"completion_tokens\":25,"
    "\"total_tokens\":145}}";

static const char *ANTHROPIC_ANSWER =
    "{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude\","
    "\"content\":[{\"type\":\"text\",\"text\":\"- Lorem ipsum dolor sit amet\\n- Ut enim ad "
    "minim veniam\\n- Duis aute irure dolor\"}],\"stop_reason\":\"end_turn\",\"stop_sequence\":"
    "null,\"usage\":{\"input_tokens\":120,\"output_tokens\":25}}";

static const char *BEDROCK_ANSWER =
    "{\"output\":{\"message\":{\"role\":\"assistant\",\"content\":[{\"text\":\"- Lorem ipsum "
    "dolor sit amet\\n- Ut enim ad minim veniam\\n- Duis aute irure dolor\"}]}},\"stopReason\":"
    "\"end_turn\",\"usage\":{\"inputTokens\":120,\"outputTokens\":25,\"totalTokens\":145},"
    "\"metrics\":{\"latencyMs\":300}}";

enum kind { OPENAI, ANTHROPIC, BEDROCK };

static int one(enum kind k)
{
    struct arena *a = arena_new(0);
    struct openai_request r;
    struct err e;
    size_t len;
    int rc = -1;
    if (openai_parse_request(OPENAI_CHAT, REQUEST, strlen(REQUEST), a, &r, &e) != 0) goto out;
    if (k == OPENAI) {
        if (openai_body_for_target(&r, "gpt-4o-mini", false, a, &len, &e) == NULL) goto out;
        struct json_scan s;
        bool oom;
        if (json_scan_parse(&s, OPENAI_ANSWER, strlen(OPENAI_ANSWER), a, &oom) != 0) goto out;
    } else if (k == ANTHROPIC) {
        if (anthropic_request_body(&r, "claude", 4096, a, &len, &e) == NULL) goto out;
        if (anthropic_response_body(ANTHROPIC_ANSWER, strlen(ANTHROPIC_ANSWER), "claude", a, &len,
                                    &e) == NULL)
            goto out;
    } else {
        char *body = bedrock_request_body(&r, a, &len, &e);
        if (body == NULL) goto out;
        struct sigv4_credentials c = {"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                                      NULL};
        struct sigv4_header h[] = {{"content-type", "application/json"}};
        struct sigv4_request sr = {.method = "POST",
                                   .host = "bedrock-runtime.us-east-1.amazonaws.com",
                                   .path =
                                       "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse",
                                   .headers = h,
                                   .n_headers = 1,
                                   .payload = body,
                                   .payload_len = len,
                                   .region = "us-east-1",
                                   .service = "bedrock",
                                   .now = 1700000000};
        struct sigv4_result sig;
        if (sigv4_sign(&c, &sr, &sig, &e) != 0) goto out;
        if (bedrock_response_body(BEDROCK_ANSWER, strlen(BEDROCK_ANSWER), "claude", a, &len, &e) ==
            NULL)
            goto out;
    }
    rc = 0;
out:
    arena_free(a);
    return rc;
}

static int sink(void *ud, const char *json, size_t len)
{
    (void)json;
    *(size_t *)ud += len;
    return 0;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 100000;
    const char *names[] = {"openai (passthrough)", "anthropic", "bedrock (incl. SigV4)"};
    double us[3];
    for (int k = 0; k < 3; k++) {
        for (long i = 0; i < n / 10; i++) one((enum kind)k); /* warm up */
        uint64_t t0 = clock_now_ns();
        for (long i = 0; i < n; i++)
            if (one((enum kind)k) != 0) {
                fprintf(stderr, "%s failed\n", names[k]);
                return 1;
            }
        us[k] = (double)(clock_now_ns() - t0) / (double)n / 1000.0;
    }
    printf("| provider | µs per request (request + answer) | vs passthrough |\n|---|---:|---:|\n");
    for (int k = 0; k < 3; k++)
        printf("| %s | %.2f | %+.2f µs |\n", names[k], us[k], us[k] - us[0]);

    /* Streams: one text delta event → one OpenAI chunk. */
    struct anthropic_stream as;
    struct err e;
    size_t bytes = 0;
    const char *delta = "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
                        "\"text_delta\",\"text\":\" hello\"}}";
    anthropic_stream_init(&as, 1700000000);
    uint64_t t0 = clock_now_ns();
    for (long i = 0; i < n * 5; i++)
        anthropic_stream_event(&as, "content_block_delta", 19, delta, strlen(delta), sink, &bytes,
                               &e);
    double a_ns = (double)(clock_now_ns() - t0) / (double)(n * 5);
    struct bedrock_stream bs;
    bedrock_stream_init(&bs, "m", 1700000000);
    const char *bdelta =
        "{\"contentBlockIndex\":0,\"delta\":{\"text\":\" hello\"},\"p\":\"abcdef\"}";
    struct aws_event ev = {.event_type = "contentBlockDelta",
                           .message_type = "event",
                           .payload = (const uint8_t *)bdelta,
                           .payload_len = strlen(bdelta)};
    t0 = clock_now_ns();
    for (long i = 0; i < n * 5; i++) bedrock_stream_event(&bs, &ev, sink, &bytes, &e);
    double b_ns = (double)(clock_now_ns() - t0) / (double)(n * 5);
    printf("\n| stream translation | µs per event |\n|---|---:|\n| openai (passthrough) | 0 "
           "(bytes forwarded as they are) |\n| anthropic SSE event → chunk | %.2f |\n| bedrock "
           "event-stream message → chunk | %.2f |\n",
           a_ns / 1000.0, b_ns / 1000.0);
    return bytes == 0;
}
