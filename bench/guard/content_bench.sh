#!/usr/bin/env bash
# Builds bench/guard/content_bench.c against the library (make bench-bins) and runs it.
set -euo pipefail
cd "$(dirname "$0")/../.."
make -s -j"$(nproc)" bench-bins >/dev/null
build/bench/content_bench "$@"
