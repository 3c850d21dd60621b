/*
 * libFuzzer target for src/http/h2.c: arbitrary bytes after the HTTP/2 client preface, fed to
 * a connection on a socketpair whose handler answers, streams or holds requests by path. The
 * frames themselves are nghttp2's to parse; what is fuzzed is our side of it — streams made,
 * limits counted, answers mapped, resets and closes with requests in flight — for memory
 * errors, leaks and a counter (requests in handlers) that does not return to zero.
 */
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/h2.h"

static void handle(struct http_request *req, void *ud)
{
    (void)ud;
    if (strcmp(req->path, "/h") == 0) return; /* held: aborted when the connection goes */
    if (strcmp(req->path, "/s") == 0) {
        http_stream_start(req, 200, "text/event-stream");
        for (int i = 0; i < 40; i++) http_stream_write(req, "data: x\n\n", 9);
        http_stream_end(req);
        return;
    }
    http_add_header(req, "X-Len", "1");
    http_respond(req, 200, "text/plain", "ok", 2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct event_base *loop;
    if (loop == NULL) loop = event_base_new();
    struct http_core core = {.loop = loop,
                             .opts = {.max_body_bytes = 4096,
                                      .max_header_bytes = 2048,
                                      .header_timeout_ms = 1000,
                                      .body_timeout_ms = 1000,
                                      .idle_timeout_ms = 1000,
                                      .max_connections = 10},
                             .handler = handle,
                             .id_state = 1};
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0) return 0;
    struct evbuffer *in = evbuffer_new();
    evbuffer_add(in, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", H2_PREFACE_LEN);
    evbuffer_add(in, data, size);
    struct err e;
    if (h2_conn_start(&core, sv[0], NULL, in, NULL, ACCESS_ALLOW, &e) != 0) abort();
    evbuffer_free(in);
    char sink[65536];
    for (int i = 0; i < 16; i++) {
        event_base_loop(loop, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        while (read(sv[1], sink, sizeof sink) > 0) {
        }
    }
    h2_free_all(&core);
    close(sv[1]);
    if (core.n_conns != 0 || core.n_active != 0) abort();
    return 0;
}
