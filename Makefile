# stratus — GNU Make + pkg-config.
#   make            release build  -> build/stratus
#   make debug      -O0 -g         -> build/debug/stratus
#   make asan       ASan+UBSan     -> build/asan/stratus
#   make run        deps, build, serve config/stratus.yaml
#   make test       deps, build, every test (unit + integration, release and ASan, valgrind)
#   make bench      bench/overhead (see BENCHMARKS.md)
#   make verify-packaging   Dockerfile, compose, Helm chart, systemd unit (root, slow)

PKGS    := libevent libevent_pthreads libcurl jansson yaml-0.1 openssl sqlite3 libpq hiredis libnghttp2 libpcre2-8 libhs
CC      ?= cc
VERSION := $(shell cat VERSION 2>/dev/null || echo 0.0.0)

WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter -Wno-format-truncation
BASE_CFLAGS = -std=c11 -D_GNU_SOURCE -DSTRATUS_VERSION='"$(VERSION)"' -Isrc $(WARN) -MMD -MP \
          $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
BASE_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lhttp_parser -lz -lpthread -lm

MODE ?= release
ifeq ($(MODE),release)
  OUT    := build
  CFLAGS_MODE := -O2 -g
endif
ifeq ($(MODE),debug)
  OUT    := build/debug
  CFLAGS_MODE := -O0 -g3
endif
ifeq ($(MODE),asan)
  OUT    := build/asan
  CFLAGS_MODE := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
  LDFLAGS_MODE := -fsanitize=address,undefined
endif

SRC      := $(shell find src -name '*.c' | sort) $(OUT)/gen/prices_builtin.c \
            $(OUT)/gen/dashboard_assets.c
# The local inference engine needs llama.cpp: the system's (pkg-config llama) or the one
# scripts/build-llama caches outside the repository (make deps runs it). Without it the
# engine is left out of the build and `type: local` backends are refused.
LLAMA_CACHE_PREFIX := $(or $(STRATUS_CACHE),$(HOME)/.cache/stratus)/llama-0.5.0-de3ff815
LLAMA_PREFIX ?= $(shell pkg-config --variable=prefix llama 2>/dev/null || \
                  (test -f $(LLAMA_CACHE_PREFIX)/.complete && echo $(LLAMA_CACHE_PREFIX)))
ENGINE_SRC := src/engine/engine.c src/engine/worker.c
ifeq ($(LLAMA_PREFIX),)
  SRC := $(filter-out $(ENGINE_SRC),$(SRC))
else
  BASE_CFLAGS += -DSTRATUS_HAVE_ENGINE -I$(LLAMA_PREFIX)/include
  BASE_LIBS += -L$(LLAMA_PREFIX)/lib -Wl,-rpath,$(LLAMA_PREFIX)/lib -lllama -lggml -lggml-base
endif
LIB_SRC  := $(filter-out src/main.c,$(SRC))
OBJ      := $(SRC:%.c=$(OUT)/obj/%.o)
LIB_OBJ  := $(LIB_SRC:%.c=$(OUT)/obj/%.o)
UNIT_SRC := $(shell find tests/unit -name 'test_*.c' 2>/dev/null | sort)
UNIT_BIN := $(patsubst tests/unit/%.c,$(OUT)/tests/%,$(UNIT_SRC))
HDR_SRC  := $(shell find src -name '*.h' | sort)
ifeq ($(LLAMA_PREFIX),)
  HDR_SRC := $(filter-out src/engine/engine.h src/engine/worker.h,$(HDR_SRC))
endif

.PHONY: models fuzz all debug asan run test test-unit test-integration test-asan deps clean format bench check-format headers verify-packaging
.DEFAULT_GOAL := all

all: $(OUT)/stratus

# The price catalogue, compiled in (used when no prices.yaml sits next to the config).
$(OUT)/gen/prices_builtin.c: config/prices.yaml
	@mkdir -p $(dir $@)
	@{ echo '/* generated from config/prices.yaml by the Makefile */'; \
	   echo '#include <stddef.h>'; \
	   echo 'const char prices_builtin[] = {'; \
	   od -An -v -tx1 $< | sed -e 's/ \([0-9a-f][0-9a-f]\)/0x\1,/g'; \
	   echo '0x00};'; \
	   echo 'const size_t prices_builtin_len = sizeof prices_builtin - 1;'; } > $@

# The dashboard's page, style and script (web/dashboard/), compiled in with gzip copies.
DASHBOARD_ASSETS := $(sort $(wildcard web/dashboard/*))
$(OUT)/gen/dashboard_assets.c: $(DASHBOARD_ASSETS) scripts/embed-assets
	@mkdir -p $(dir $@)
	@scripts/embed-assets $@ $(DASHBOARD_ASSETS)

$(OUT)/obj/$(OUT)/gen/%.o: $(OUT)/gen/%.c
	@mkdir -p $(dir $@)
	@$(CC) -std=c11 -Isrc -c $< -o $@

$(OUT)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC  $<"
	@$(CC) $(BASE_CFLAGS) $(CFLAGS_MODE) $(CFLAGS) -c $< -o $@

$(OUT)/stratus: $(OBJ)
	@echo "  LD  $@"
	@$(CC) $(LDFLAGS_MODE) $(LDFLAGS) -o $@ $^ $(BASE_LIBS)

$(OUT)/tests/%: tests/unit/%.c $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(CFLAGS_MODE) $(CFLAGS) -Itests -o $@ $< $(LIB_OBJ) \
	    $(LDFLAGS_MODE) $(BASE_LIBS) -lcmocka

unit-bins: $(UNIT_BIN)

# In-process microbenchmarks (bench/route/run runs them).
$(OUT)/bench/%: bench/route/%.c $(LIB_OBJ)
	@mkdir -p $(dir $@)
	@echo "  CC  $@"
	@$(CC) $(BASE_CFLAGS) $(CFLAGS_MODE) $(CFLAGS) -o $@ $< $(LIB_OBJ) $(LDFLAGS_MODE) $(BASE_LIBS)
$(OUT)/bench/%: bench/guard/%.c $(LIB_OBJ)
	@mkdir -p $(dir $@)
	@echo "  CC  $@"
	@$(CC) $(BASE_CFLAGS) $(CFLAGS_MODE) $(CFLAGS) -o $@ $< $(LIB_OBJ) $(LDFLAGS_MODE) $(BASE_LIBS)
$(OUT)/bench/%: bench/parse/%.c $(LIB_OBJ)
	@mkdir -p $(dir $@)
	@echo "  CC  $@"
	@$(CC) $(BASE_CFLAGS) $(CFLAGS_MODE) $(CFLAGS) -o $@ $< $(LIB_OBJ) $(LDFLAGS_MODE) $(BASE_LIBS)
# The same benchmark against the scanner as it was before issue #9 (jsmn without parent
# links), from the same json_scan.c with one macro: bench/parse/run compares the two.
QUADRATIC_SRC := src/util/json_scan.c src/util/arena.c src/util/utf8.c
$(OUT)/bench/parse_bench_quadratic: bench/parse/parse_bench.c $(QUADRATIC_SRC) src/util/json_scan.h
	@mkdir -p $(dir $@)
	@echo "  CC  $@"
	@$(CC) $(BASE_CFLAGS) $(CFLAGS_MODE) $(CFLAGS) -DJSON_SCAN_QUADRATIC -o $@ $< \
	    $(QUADRATIC_SRC) $(LDFLAGS_MODE) -lm
bench-bins: $(OUT)/bench/route_bench $(OUT)/bench/translate_bench $(OUT)/bench/ledger_bench \
	$(OUT)/bench/parse_bench $(OUT)/bench/parse_bench_quadratic $(OUT)/bench/content_bench

# Every public header must compile on its own (catches missing includes), and includes run
# one way through src/ (scripts/check-includes.mjs; docs/architecture.md "Floors").
headers:
	@node scripts/check-includes.mjs >/dev/null || node scripts/check-includes.mjs
	@mkdir -p $(OUT)/headers
	@for h in $(HDR_SRC); do \
	    printf '#include "%s"\n' "$${h#src/}" > $(OUT)/headers/one.c; \
	    $(CC) $(filter-out -MMD -MP,$(BASE_CFLAGS)) -fsyntax-only $(OUT)/headers/one.c || exit 1; \
	done

# libFuzzer targets (clang): build/fuzz/<name>; scripts/run-tests fuzz runs each briefly.
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(FUZZ_SRC))
# The library is compiled once for every target (-fsanitize=fuzzer-no-link: instrumented,
# without libFuzzer's main), then each target links against those objects.
FUZZ_FLAGS := $(filter-out -MMD -MP,$(BASE_CFLAGS)) -Wno-error -Wno-unknown-warning-option -g -O1
FUZZ_OBJ := $(LIB_SRC:%.c=build/fuzz/obj/%.o)
build/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@clang $(FUZZ_FLAGS) -MMD -MP -fsanitize=fuzzer-no-link,address,undefined -c -o $@ $<
-include $(FUZZ_OBJ:.o=.d)
build/fuzz/%: tests/fuzz/%.c $(FUZZ_OBJ)
	@mkdir -p $(dir $@)
	@echo "  FUZZ $@"
	@clang $(FUZZ_FLAGS) -fsanitize=fuzzer,address,undefined -o $@ $< $(FUZZ_OBJ) $(BASE_LIBS)
fuzz: $(FUZZ_BIN)

debug:
	$(MAKE) MODE=debug all
asan:
	$(MAKE) MODE=asan all unit-bins

deps:
	@./scripts/install-deps

run: deps
	$(MAKE) all models
	./build/stratus serve --config config/stratus.yaml

# Demo models: tiny llama-architecture GGUFs with random weights (tools/make-model), made
# from a vocab-only GGUF that ships with llama.cpp. Gibberish text, real inference.
VOCAB := $(LLAMA_PREFIX)/share/stratus/ggml-vocab-llama-spm.gguf
$(OUT)/make-model: tools/make-model/make_model.c
	@mkdir -p $(dir $@)
	@echo "  CC  $@"
	@$(CC) -std=c11 -O2 -Wall -Wextra -Werror -I$(LLAMA_PREFIX)/include -o $@ $< \
	    -L$(LLAMA_PREFIX)/lib -Wl,-rpath,$(LLAMA_PREFIX)/lib -lggml -lggml-base
build/models/tiny.gguf: $(OUT)/make-model
	@mkdir -p $(dir $@)
	@$(OUT)/make-model --vocab $(VOCAB) --out $@ --preset tiny >/dev/null
build/models/bench.gguf: $(OUT)/make-model
	@mkdir -p $(dir $@)
	@$(OUT)/make-model --vocab $(VOCAB) --out $@ --preset bench >/dev/null
models: build/models/tiny.gguf

test: deps
	@./scripts/run-tests

test-unit: all unit-bins
	@./scripts/run-tests unit

test-asan: deps
	@./scripts/run-tests asan

bench: deps all
	./bench/overhead/run

# The Dockerfile, compose file, Helm chart and systemd unit, verified as far as this machine
# allows (root; slow: builds the image with podman). Not part of `make test`. docs/deploy.md.
verify-packaging:
	./scripts/verify-packaging

format:
	clang-format -i $(filter src/%,$(SRC)) $(HDR_SRC) $(shell find tests bench -name '*.c' -o -name '*.h')

check-format:
	clang-format --dry-run -Werror $(filter src/%,$(SRC)) $(HDR_SRC)

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
