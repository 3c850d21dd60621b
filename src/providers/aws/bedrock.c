/*
 * DESIGN: AWS Bedrock's Converse / ConverseStream behind the OpenAI surface, in one file:
 * request and answer translation (the message blocks come from ../messages.c, shared with
 * Anthropic), the ConverseStream translator, and the provider ops. Every call is signed
 * (SigV4, sigv4.c) over the exact bytes we send, so the headers are per request and live in
 * the request arena. The model id goes into the path percent-encoded (ids and ARNs hold ':'
 * and '/'); the signer encodes that path once more, which is AWS's canonical form for every
 * service but S3. Streams are AWS event-stream frames (eventstream.c, both CRCs checked)
 * whose JSON events become OpenAI chunks through ../chunk.c.
 */
#include "providers/aws/bedrock.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "providers/aws/sigv4.h"
#include "providers/messages.h"
#include "providers/provider.h"
#include "util/arena.h"

/* ---- requests ------------------------------------------------------------------------- */

char *bedrock_request_body(const struct openai_request *r, struct arena *arena, size_t *len,
                           struct err *err)
{
    struct messages_request m;
    if (messages_prepare(MESSAGES_BEDROCK, r, &m, err) != 0) return NULL;
    json_t *req = m.req, *messages = m.messages, *system = m.system, *out = json_object();
    json_object_set_new(out, "messages", messages);
    if (json_array_size(system))
        json_object_set_new(out, "system", system);
    else
        json_decref(system);
    json_t *inference = json_object(), *v;
    if ((v = messages_max_tokens(req))) json_object_set(inference, "maxTokens", v);
    if ((v = json_object_get(req, "temperature")) && json_is_number(v))
        json_object_set(inference, "temperature", v);
    if ((v = json_object_get(req, "top_p")) && json_is_number(v))
        json_object_set(inference, "topP", v);
    if ((v = messages_stop_list(json_object_get(req, "stop"))))
        json_object_set_new(inference, "stopSequences", v);
    if (json_object_size(inference))
        json_object_set_new(out, "inferenceConfig", inference);
    else
        json_decref(inference);

    json_t *tools = json_object_get(req, "tools");
    if (json_is_array(tools) && json_array_size(tools)) {
        json_t *ts = json_array();
        size_t k;
        json_t *t;
        json_array_foreach(tools, k, t)
        {
            json_t *fn = json_object_get(t, "function");
            json_t *params = json_object_get(fn, "parameters");
            json_t *spec = json_pack("{s:O?, s:{s:o}}", "name", json_object_get(fn, "name"),
                                     "inputSchema", "json",
                                     json_is_object(params) ? json_incref(params)
                                                            : json_pack("{s:s}", "type", "object"));
            json_t *desc = json_object_get(fn, "description");
            if (json_is_string(desc)) json_object_set(spec, "description", desc);
            json_array_append_new(ts, json_pack("{s:o}", "toolSpec", spec));
        }
        json_t *config = json_pack("{s:o}", "tools", ts);
        json_t *tc = json_object_get(req, "tool_choice");
        const char *tcs = json_string_value(tc);
        if (tcs && strcmp(tcs, "required") == 0)
            json_object_set_new(config, "toolChoice", json_pack("{s:{}}", "any"));
        else if (tcs && strcmp(tcs, "auto") == 0)
            json_object_set_new(config, "toolChoice", json_pack("{s:{}}", "auto"));
        else if (json_is_object(tc))
            json_object_set_new(
                config, "toolChoice",
                json_pack("{s:{s:O?}}", "tool", "name",
                          json_object_get(json_object_get(tc, "function"), "name")));
        json_object_set_new(out, "toolConfig", config);
    }
    json_decref(req);
    return messages_dump(out, arena, len, err);
}

/* ---- answers ------------------------------------------------------------------------ */

/* ---- answers -------------------------------------------------------------------------- */

char *bedrock_response_body(const char *body, size_t body_len, const char *target_model,
                            struct arena *arena, size_t *len, struct err *err)
{
    json_t *doc = json_loadb(body, body_len, 0, NULL);
    json_t *content =
        json_object_get(json_object_get(json_object_get(doc, "output"), "message"), "content");
    if (!json_is_object(doc) || !json_is_array(content)) {
        json_decref(doc);
        err_set(err, 502, "upstream_error", "bad_upstream_response",
                "the answer is not a Bedrock Converse response");
        return NULL;
    }
    json_t *texts = json_array(), *calls = json_array();
    size_t k;
    json_t *b;
    json_array_foreach(content, k, b)
    {
        json_t *text = json_object_get(b, "text"), *use = json_object_get(b, "toolUse");
        if (json_is_string(text)) {
            json_array_append(texts, text);
        } else if (json_is_object(use)) {
            json_array_append_new(calls, messages_tool_call(json_object_get(use, "toolUseId"),
                                                            json_object_get(use, "name"),
                                                            json_object_get(use, "input")));
        }
    }
    json_t *u = json_object_get(doc, "usage");
    long in = (long)json_integer_value(json_object_get(u, "inputTokens"));
    long cached = (long)json_integer_value(json_object_get(u, "cacheReadInputTokens"));
    long outt = (long)json_integer_value(json_object_get(u, "outputTokens"));
    const char *finish =
        messages_finish_reason(json_string_value(json_object_get(doc, "stopReason")));
    json_decref(doc);
    char id[64];
    snprintf(id, sizeof id, "chatcmpl-bedrock-%lx", (unsigned long)time(NULL));
    return messages_completion(id, target_model, texts, calls, finish,
                               chunk_usage(in, outt, cached), arena, len, err);
}

/* ---- ConverseStream ----------------------------------------------------------------- */

/* ---- ConverseStream ------------------------------------------------------------------- */

void bedrock_stream_init(struct bedrock_stream *s, const char *model, long created)
{
    memset(s, 0, sizeof *s);
    s->created = created;
    s->tool_index = -1;
    snprintf(s->id, sizeof s->id, "chatcmpl-bedrock-%lx", (unsigned long)created);
    snprintf(s->model, sizeof s->model, "%s", model ? model : "");
}

static int emit(struct bedrock_stream *s, json_t *delta, const char *finish, json_t *usage,
                chunk_sink cb, void *ud, struct err *err)
{
    struct chunk_head h = {s->id, s->model, s->created};
    return chunk_emit(&h, delta, finish, usage, cb, ud, err);
}

static bool is_type(const char *a, const char *b)
{
    return a && strcmp(a, b) == 0;
}

int bedrock_stream_event(struct bedrock_stream *s, const struct aws_event *ev, chunk_sink cb,
                         void *ud, struct err *err)
{
    json_t *d = json_loadb((const char *)ev->payload, ev->payload_len, 0, NULL);
    if (ev->message_type && strcmp(ev->message_type, "event") != 0) {
        const char *type = ev->exception_type ? ev->exception_type : "error";
        const char *msg = json_string_value(json_object_get(d, "message"));
        if (msg == NULL) msg = json_string_value(json_object_get(d, "Message"));
        int status = strstr(type, "hrottling") ? 429
                     : strstr(type, "navailable") || strstr(type, "verloaded") ||
                             strstr(type, "modelStreamError") || strstr(type, "internalServer")
                         ? 503
                         : 502;
        err_set(err, status, "upstream_error", status == 502 ? "upstream_error" : "upstream_busy",
                "Bedrock %s: %s", type, msg ? msg : "(no message)");
        json_decref(d);
        return -1;
    }
    if (!json_is_object(d)) {
        json_decref(d);
        return err_set(err, 502, "upstream_error", "bad_upstream_stream",
                       "Bedrock sent a %s event that is not JSON",
                       ev->event_type ? ev->event_type : "(untyped)");
    }
    int rc = 0;
    const char *t = ev->event_type;
    if (is_type(t, "messageStart")) {
        rc = emit(s, json_pack("{s:s, s:s}", "role", "assistant", "content", ""), NULL, NULL, cb,
                  ud, err);
    } else if (is_type(t, "contentBlockStart")) {
        json_t *use = json_object_get(json_object_get(d, "start"), "toolUse");
        if (json_is_object(use)) {
            s->tool_index = s->tools_seen++;
            rc = emit(s,
                      json_pack("{s:[{s:i, s:O?, s:s, s:{s:O?, s:s}}]}", "tool_calls", "index",
                                s->tool_index, "id", json_object_get(use, "toolUseId"), "type",
                                "function", "function", "name", json_object_get(use, "name"),
                                "arguments", ""),
                      NULL, NULL, cb, ud, err);
        }
    } else if (is_type(t, "contentBlockDelta")) {
        json_t *delta = json_object_get(d, "delta");
        json_t *text = json_object_get(delta, "text");
        json_t *input = json_object_get(json_object_get(delta, "toolUse"), "input");
        if (json_is_string(text))
            rc = emit(s, json_pack("{s:O}", "content", text), NULL, NULL, cb, ud, err);
        else if (json_is_string(input) && s->tool_index >= 0)
            rc = emit(s,
                      json_pack("{s:[{s:i, s:{s:O}}]}", "tool_calls", "index", s->tool_index,
                                "function", "arguments", input),
                      NULL, NULL, cb, ud, err);
    } else if (is_type(t, "contentBlockStop")) {
        s->tool_index = -1;
    } else if (is_type(t, "messageStop")) {
        s->stopped = true;
        rc = emit(s, json_object(),
                  messages_finish_reason(json_string_value(json_object_get(d, "stopReason"))), NULL,
                  cb, ud, err);
    } else if (is_type(t, "metadata")) {
        json_t *u = json_object_get(d, "usage");
        s->input_tokens = (long)json_integer_value(json_object_get(u, "inputTokens"));
        s->output_tokens = (long)json_integer_value(json_object_get(u, "outputTokens"));
        s->cache_read_tokens = (long)json_integer_value(json_object_get(u, "cacheReadInputTokens"));
        s->done = true;
        rc =
            emit(s, NULL, NULL,
                 chunk_usage(s->input_tokens, s->output_tokens, s->cache_read_tokens), cb, ud, err);
    }
    json_decref(d);
    return rc;
}

/* ---- the provider --------------------------------------------------------------------- */

struct provider_stream {
    struct aws_eventstream decoder;
    struct bedrock_stream translator;
    chunk_sink sink;
    void *sink_ud;
    struct err *err;
};

struct bedrock_state {
    char host[256]; /* host[:port] of base_url: signed, and sent as Host */
};

static int bedrock_init(struct backend *b, struct err *err)
{
    struct bedrock_state *st = calloc(1, sizeof *st);
    if (st == NULL) return err_oom(err);
    const char *u = b->conf->base_url;
    const char *h = strstr(u, "://");
    h = h ? h + 3 : u;
    size_t n = strcspn(h, "/");
    if (n == 0 || n >= sizeof st->host) {
        free(st);
        return err_set(err, 500, "server_error", NULL, "backend '%s': base_url has no host",
                       b->conf->name);
    }
    memcpy(st->host, h, n);
    st->host[n] = '\0';
    b->state = st;
    return 0;
}

static void bedrock_destroy(struct backend *b)
{
    free(b->state);
    b->state = NULL;
}

static bool chat_only(enum openai_endpoint endpoint)
{
    return endpoint == OPENAI_CHAT;
}

/* RFC 3986 unreserved characters stay; everything else is %XX. */
static char *encode_segment(struct arena *arena, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *out = arena_alloc(arena, n * 3 + 1), *w = out;
    if (out == NULL) return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || *p == '.' || *p == '~') {
            *w++ = (char)*p;
        } else {
            *w++ = '%';
            *w++ = hex[*p >> 4];
            *w++ = hex[*p & 15];
        }
    }
    *w = '\0';
    return out;
}

static void free_headers(void *ud)
{
    curl_slist_free_all(ud);
}

static int append(struct curl_slist **h, struct arena *arena, const char *name, const char *value)
{
    char *line = arena_printf(arena, "%s: %s", name, value);
    struct curl_slist *t = line ? curl_slist_append(*h, line) : NULL;
    if (t == NULL) return -1;
    *h = t;
    return 0;
}

static int bedrock_build(struct backend *b, const struct provider_request *pr, struct arena *arena,
                         struct upstream_request *out, struct err *err)
{
    const struct backend_conf *c = b->conf;
    const struct bedrock_state *st = b->state;
    size_t len = 0;
    char *body = bedrock_request_body(pr->request, arena, &len, err);
    if (body == NULL) return -1;
    char *model = encode_segment(arena, pr->target_model);
    if (model == NULL) return err_oom(err);
    const char *base_path = strstr(c->base_url, "://");
    base_path = base_path ? strchr(base_path + 3, '/') : NULL;
    char *path = arena_printf(arena, "%s/model/%s/%s", base_path ? base_path : "", model,
                              pr->request->stream ? "converse-stream" : "converse");
    char *url = path ? arena_printf(arena, "%.*s%s",
                                    (int)(base_path ? (size_t)(base_path - c->base_url)
                                                    : strlen(c->base_url)),
                                    c->base_url, path)
                     : NULL;
    if (url == NULL) return err_oom(err);

    const char *accept =
        pr->request->stream ? "application/vnd.amazon.eventstream" : "application/json";
    struct sigv4_header signed_headers[] = {{"content-type", "application/json"}};
    struct sigv4_credentials creds = {
        .access_key_id = c->aws_access_key_id.value,
        .secret_access_key = c->aws_secret_access_key.value,
        .session_token = c->aws_session_token.value,
    };
    struct sigv4_request sr = {
        .method = "POST",
        .host = st->host,
        .path = path,
        .headers = signed_headers,
        .n_headers = 1,
        .payload = body,
        .payload_len = len,
        .region = c->region,
        .service = "bedrock",
        .now = time(NULL),
    };
    struct sigv4_result sig;
    if (sigv4_sign(&creds, &sr, &sig, err) != 0) return -1;
    struct curl_slist *h = NULL;
    if (append(&h, arena, "Host", st->host) ||
        append(&h, arena, "Content-Type", "application/json") ||
        append(&h, arena, "Accept", accept) || append(&h, arena, "X-Amz-Date", sig.amz_date) ||
        (creds.session_token && append(&h, arena, "X-Amz-Security-Token", creds.session_token)) ||
        append(&h, arena, "Authorization", sig.authorization) || append(&h, arena, "Expect", "") ||
        arena_on_free(arena, free_headers, h) != 0) {
        curl_slist_free_all(h);
        return err_oom(err);
    }
    /* "Expect: " with an empty value is curl's way to drop the header. */
    for (struct curl_slist *p = h; p; p = p->next)
        if (strcmp(p->data, "Expect: ") == 0) p->data[6] = '\0';
    *out = (struct upstream_request){
        .url = url,
        .headers = h,
        .body = body,
        .body_len = len,
        .timeout_ms = c->timeout_ms,
        .connect_timeout_ms = c->connect_timeout_ms,
    };
    return 0;
}

static int bedrock_translate(const struct provider_request *pr, const char *body, size_t len,
                             struct arena *arena, char **out, size_t *out_len, struct err *err)
{
    *out = bedrock_response_body(body, len, pr->target_model, arena, out_len, err);
    return *out ? 0 : -1;
}

static void stream_release(void *ud)
{
    struct provider_stream *st = ud;
    aws_eventstream_free(&st->decoder);
}

static struct provider_stream *bedrock_stream_open(const struct provider_request *pr,
                                                   struct arena *arena)
{
    struct provider_stream *st = arena_calloc(arena, 1, sizeof *st);
    if (st == NULL) return NULL;
    aws_eventstream_init(&st->decoder, 0);
    if (arena_on_free(arena, stream_release, st) != 0) return NULL;
    bedrock_stream_init(&st->translator, pr->target_model, (long)time(NULL));
    return st;
}

static int on_message(void *ud, const struct aws_event *ev)
{
    struct provider_stream *st = ud;
    return bedrock_stream_event(&st->translator, ev, st->sink, st->sink_ud, st->err);
}

static int bedrock_stream_feed(struct provider_stream *st, const char *bytes, size_t n,
                               chunk_sink sink, void *ud, struct err *err)
{
    st->sink = sink;
    st->sink_ud = ud;
    st->err = err;
    return aws_eventstream_feed(&st->decoder, (const uint8_t *)bytes, n, on_message, st, err);
}

static bool bedrock_stream_complete(const struct provider_stream *st)
{
    return st->translator.done;
}

static size_t bedrock_stream_pending(const struct provider_stream *st)
{
    return aws_eventstream_pending(&st->decoder);
}

/* Bedrock errors: {"message": "..."} (or "Message"), type in x-amzn-errortype. */
static void bedrock_error_message(const char *body, size_t len, char *out, size_t cap)
{
    json_t *doc = json_loadb(body, len, 0, NULL);
    const char *msg = json_string_value(json_object_get(doc, "message"));
    if (msg == NULL) msg = json_string_value(json_object_get(doc, "Message"));
    snprintf(out, cap, "%s", msg ? msg : "");
    json_decref(doc);
}

const struct provider_ops provider_bedrock = {
    .type = "bedrock",
    .init = bedrock_init,
    .supports = chat_only,
    .build = bedrock_build,
    .translate_response = bedrock_translate,
    .stream_open = bedrock_stream_open,
    .stream_feed = bedrock_stream_feed,
    .stream_complete = bedrock_stream_complete,
    .stream_pending = bedrock_stream_pending,
    .error_message = bedrock_error_message,
    .destroy = bedrock_destroy,
};
