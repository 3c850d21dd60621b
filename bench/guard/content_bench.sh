#!/usr/bin/env bash
# Builds bench/guard/content_bench.c against the release objects and runs it.
set -euo pipefail
cd "$(dirname "$0")/../.."
make -s -j"$(nproc)" all >/dev/null
objs=$(find build/obj -name '*.o' ! -path '*/main.o' | sort)
flags=$(pkg-config --cflags --libs libevent libevent_pthreads libcurl jansson yaml-0.1 openssl sqlite3 libpq hiredis libnghttp2 libpcre2-8)
llama=$(grep -o -- '-L[^ ]*llama[^ ]*/lib' <(make -pn 2>/dev/null | grep '^BASE_LIBS') | head -1 || true)
cc -std=c11 -D_GNU_SOURCE -O2 -Isrc -o build/content_bench bench/guard/content_bench.c $objs $flags \
   -lhttp_parser -lz -lpthread -lm ${LLAMA_LIBS:-$(make -s -pn 2>/dev/null | sed -n 's/^BASE_LIBS = .*-lm //p' | head -1)} 2>/dev/null || \
cc -std=c11 -D_GNU_SOURCE -O2 -Isrc -o build/content_bench bench/guard/content_bench.c $objs $flags \
   -lhttp_parser -lz -lpthread -lm -L"$HOME/.cache/stratus/llama-0.5.0-de3ff815/lib" \
   -Wl,-rpath,"$HOME/.cache/stratus/llama-0.5.0-de3ff815/lib" -lllama -lggml -lggml-base
build/content_bench
