/*
 * DESIGN: every translated chunk is built here, so Anthropic and Bedrock streams cannot drift
 * apart in shape (key order, the null finish_reason, the empty choices of the usage chunk).
 * Chunks are real jansson documents dumped compact: deltas carry upstream text that needs
 * JSON escaping, and the cost is small next to parsing the upstream event that caused them.
 */
#include "providers/chunk.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "util/json_text.h"

int chunk_emit(const struct chunk_head *h, json_t *delta, const char *finish, json_t *usage,
               chunk_sink sink, void *ud, struct err *err)
{
    json_t *choices = json_array();
    if (delta)
        json_array_append_new(choices, json_pack("{s:i, s:o, s:s?}", "index", 0, "delta", delta,
                                                 "finish_reason", finish));
    json_t *chunk =
        json_pack("{s:s, s:s, s:I, s:s, s:o}", "id", h->id, "object", "chat.completion.chunk",
                  "created", (json_int_t)h->created, "model", h->model, "choices", choices);
    if (usage) json_object_set_new(chunk, "usage", usage);
    char *text = chunk ? json_dumps(chunk, JSON_COMPACT | JSON_TEXT_REALS) : NULL;
    json_decref(chunk);
    if (text == NULL) return err_oom(err);
    int rc = sink(ud, text, strlen(text));
    free(text);
    return rc == 0 ? 0 : err_set(err, 499, "server_error", "stopped", "stopped");
}

json_t *chunk_usage(long input, long output, long cached)
{
    json_t *u = json_pack("{s:I, s:I, s:I}", "prompt_tokens", (json_int_t)(input + cached),
                          "completion_tokens", (json_int_t)output, "total_tokens",
                          (json_int_t)(input + cached + output));
    if (cached)
        json_object_set_new(u, "prompt_tokens_details",
                            json_pack("{s:I}", "cached_tokens", (json_int_t)cached));
    return u;
}
