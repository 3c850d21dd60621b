/*
 * DESIGN: AWS Bedrock's Converse / ConverseStream behind the OpenAI surface. Every call is
 * signed (SigV4, aws/sigv4.c) over the exact bytes we send, so the headers are per request and
 * live in the request arena. The model id goes into the path percent-encoded (ids and ARNs
 * hold ':' and '/'); the signer encodes that path once more, which is AWS's canonical form
 * for every service but S3. Streams are AWS event-stream frames (aws/eventstream.c, both
 * CRCs checked) whose JSON events translate.c turns into OpenAI chunks.
 */
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "providers/aws/eventstream.h"
#include "providers/provider.h"
#include "providers/aws/sigv4.h"
#include "providers/messages.h"
#include "util/arena.h"

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
