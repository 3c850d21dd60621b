/*
 * libFuzzer target for src/config/config.c: arbitrary bytes as a YAML configuration. Every
 * input is either a config (which must free cleanly) or an error that names a position
 * inside the input and a non-empty message.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config_error e;
    struct config *c = config_load_string((const char *)data, size, "fuzz.yaml", &e);
    if (c == NULL) {
        if (e.msg[0] == '\0' || e.line < 0 || e.col < 0) abort();
        return 0;
    }
    config_free(c);
    return 0;
}
