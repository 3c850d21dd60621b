/*
 * mock_upstream — the fastest OpenAI-compatible upstream we can put beside the gateway in a
 * benchmark, so that the numbers measure the gateway, not the mock. Single thread, epoll,
 * HTTP/1.1 keep-alive with pipelining, no allocation per request.
 *
 * POST with "stream":true in the body → an SSE stream (role chunk, 5 content chunks, finish
 * chunk, usage chunk when stream_options.include_usage is asked for, [DONE]) with
 * Content-Length framing; any other POST → a ~400-byte chat.completion with usage.
 * This is a benchmark tool, not product code: it trusts its client (wrk or a gateway).
 *
 * usage: mock_upstream PORT
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF 65536

struct conn {
    int fd;
    size_t len;
    char in[BUF];
};

static char json_resp[2048], sse_resp[4096], sse_usage_resp[4096], fail_resp[512];
static size_t json_len, sse_len, sse_usage_len, fail_len;

static size_t build(char *out, size_t cap, const char *type, const char *body)
{
    return (size_t)snprintf(out, cap,
                            "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                            "Connection: keep-alive\r\n\r\n%s",
                            type, strlen(body), body);
}

static void prepare(void)
{
    static char body[3072];
    build(json_resp, sizeof json_resp, "application/json",
          "{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion\",\"created\":1700000000,"
          "\"model\":\"bench-model\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
          "\"content\":\"This is a benchmark answer from the mock upstream, about sixty tokens "
          "long in spirit if not in fact.\"},\"logprobs\":null,\"finish_reason\":\"stop\"}],"
          "\"usage\":{\"prompt_tokens\":260,\"completion_tokens\":24,\"total_tokens\":284},"
          "\"system_fingerprint\":\"fp_bench\"}");
    json_len = strlen(json_resp);
    static const char fail_body[] =
        "{\"error\":{\"message\":\"mock failure\",\"type\":\"server_error\"}}";
    fail_len = (size_t)snprintf(fail_resp, sizeof fail_resp,
                                "HTTP/1.1 500 Internal Server Error\r\nContent-Type: "
                                "application/json\r\nContent-Length: %zu\r\nConnection: "
                                "keep-alive\r\n\r\n%s",
                                strlen(fail_body), fail_body);
    for (int with_usage = 0; with_usage < 2; with_usage++) {
        size_t n = 0;
        const char *u = with_usage ? ",\"usage\":null" : "";
        n += (size_t)snprintf(
            body + n, sizeof body - n,
            "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,"
            "\"model\":\"bench-model\",\"choices\":[{\"index\":0,\"delta\":{\"role\":"
            "\"assistant\",\"content\":\"\"},\"finish_reason\":null}]%s}\n\n",
            u);
        for (int i = 0; i < 5; i++)
            n += (size_t)snprintf(
                body + n, sizeof body - n,
                "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,"
                "\"model\":\"bench-model\",\"choices\":[{\"index\":0,\"delta\":{"
                "\"content\":\"token%d \"},\"finish_reason\":null}]%s}\n\n",
                i, u);
        n += (size_t)snprintf(
            body + n, sizeof body - n,
            "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,"
            "\"model\":\"bench-model\",\"choices\":[{\"index\":0,\"delta\":{},"
            "\"finish_reason\":\"stop\"}]%s}\n\n",
            u);
        if (with_usage)
            n += (size_t)snprintf(
                body + n, sizeof body - n,
                "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,"
                "\"model\":\"bench-model\",\"choices\":[],\"usage\":{\"prompt_tokens\":"
                "260,\"completion_tokens\":5,\"total_tokens\":265}}\n\n");
        snprintf(body + n, sizeof body - n, "data: [DONE]\n\n");
        if (with_usage)
            sse_usage_len = build(sse_usage_resp, sizeof sse_usage_resp, "text/event-stream", body);
        else
            sse_len = build(sse_resp, sizeof sse_resp, "text/event-stream", body);
    }
}

/* Answers every complete request in c->in; returns -1 when the connection should close. */
static int serve(struct conn *c)
{
    char out[BUF];
    size_t olen = 0, at = 0;
    for (;;) {
        char *head_end = memmem(c->in + at, c->len - at, "\r\n\r\n", 4);
        if (head_end == NULL) break;
        size_t head_len = (size_t)(head_end - (c->in + at)) + 4;
        size_t body_len = 0;
        char *cl = memmem(c->in + at, head_len, "Content-Length:", 15);
        if (cl == NULL) cl = memmem(c->in + at, head_len, "content-length:", 15);
        if (cl) body_len = strtoul(cl + 15, NULL, 10);
        if (c->len - at < head_len + body_len) break;
        const char *body = c->in + at + head_len;
        const char *resp = json_resp;
        size_t rlen = json_len;
        if (memmem(body, body_len, "\"model\":\"fail-500\"", 18)) {
            resp = fail_resp; /* bench/route: a target that fails, for failover cost */
            rlen = fail_len;
        } else if (memmem(body, body_len, "\"stream\":true", 13) ||
                   memmem(body, body_len, "\"stream\": true", 14)) {
            bool usage = memmem(body, body_len, "\"include_usage\":true", 20) != NULL;
            resp = usage ? sse_usage_resp : sse_resp;
            rlen = usage ? sse_usage_len : sse_len;
        }
        if (olen + rlen > sizeof out) break;
        memcpy(out + olen, resp, rlen);
        olen += rlen;
        at += head_len + body_len;
    }
    if (at) {
        memmove(c->in, c->in + at, c->len - at);
        c->len -= at;
    }
    size_t sent = 0;
    while (sent < olen) {
        ssize_t w = send(c->fd, out + sent, olen - sent, MSG_NOSIGNAL);
        if (w <= 0) return -1; /* a benchmark client that cannot take 64 KiB is broken */
        sent += (size_t)w;
    }
    return c->len == sizeof c->in ? -1 : 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    prepare();
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)atoi(argv[1])),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) || listen(lfd, 4096)) {
        perror("mock_upstream: bind/listen");
        return 1;
    }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c == NULL) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct conn *nc = calloc(1, sizeof *nc);
                    nc->fd = fd;
                    struct epoll_event e2 = {.events = EPOLLIN, .data.ptr = nc};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e2);
                }
                continue;
            }
            ssize_t r = recv(c->fd, c->in + c->len, sizeof c->in - c->len, 0);
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN) continue;
                close(c->fd);
                free(c);
                continue;
            }
            c->len += (size_t)r;
            if (serve(c) < 0) {
                close(c->fd);
                free(c);
            }
        }
    }
}
