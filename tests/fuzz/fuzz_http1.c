/*
 * libFuzzer target for src/http/server.c's HTTP/1.1 side: arbitrary bytes as a client's
 * whole conversation (request heads, chunked or sized bodies, pipelined requests, garbage)
 * on a connection to a real listener (a UNIX socket), whose handler answers, streams or
 * holds requests by path. What is checked besides memory errors and leaks: every
 * connection is gone once the client has closed and the loop has run (nothing stays
 * counted, nothing stays held).
 */
#include <event2/event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "http/server.h"

static void handle(struct http_request *req, void *ud)
{
    (void)ud;
    if (strcmp(req->path, "/h") == 0) return; /* held: aborted when the client goes */
    if (strcmp(req->path, "/s") == 0) {
        http_stream_start(req, 200, "text/event-stream");
        for (int i = 0; i < 40; i++) http_stream_write(req, "data: x\n\n", 9);
        http_stream_end(req);
        return;
    }
    http_add_header(req, "X-Len", "1");
    http_respond(req, 200, "text/plain", "ok", 2);
}

static struct event_base *loop;
static struct http_server *server;
static char path[108];

static void cleanup(void)
{
    http_server_free(server);
    event_base_free(loop);
    unlink(path);
}

static void setup(void)
{
    loop = event_base_new();
    const char *tmp = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/fuzz-http1-%d.sock", tmp && *tmp ? tmp : "/tmp", (int)getpid());
    struct http_server_opts o = {.max_body_bytes = 4096,
                                 .max_header_bytes = 2048,
                                 .header_timeout_ms = 1000,
                                 .body_timeout_ms = 1000,
                                 .idle_timeout_ms = 1000,
                                 .max_connections = 16};
    struct err e;
    server = http_server_new_unix(loop, path, o, handle, NULL, &e);
    if (server == NULL) {
        fprintf(stderr, "fuzz_http1: %s\n", e.msg);
        abort();
    }
    atexit(cleanup);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (loop == NULL) setup();
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, path, strlen(path) + 1);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) abort();
    /* Written in two pieces (split at a byte the input chooses): a parser must not care. */
    size_t split = size ? data[0] % (size + 1) : 0;
    char sink[65536];
    /* MSG_NOSIGNAL: the server may close first (a refused head), as a real client sees. */
    if (send(fd, data, split, MSG_NOSIGNAL) < 0) {
    }
    for (int i = 0; i < 4; i++) event_base_loop(loop, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    if (size > split && send(fd, data + split, size - split, MSG_NOSIGNAL) < 0) {
    }
    for (int i = 0; i < 12; i++) {
        event_base_loop(loop, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        struct timeval tv = {0, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ssize_t n;
        do n = recv(fd, sink, sizeof sink, MSG_DONTWAIT);
        while (n > 0);
    }
    close(fd);
    for (int i = 0; i < 64 && http_server_connections(server) != 0; i++)
        event_base_loop(loop, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    if (http_server_connections(server) != 0 || http_server_active_requests(server) != 0) {
        fprintf(stderr, "fuzz_http1: a connection or request outlived its client\n");
        abort();
    }
    return 0;
}
