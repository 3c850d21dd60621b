# stratus — GNU Make + pkg-config.
#   make            release build  -> build/stratus
#   make debug      -O0 -g         -> build/debug/stratus
#   make asan       ASan+UBSan     -> build/asan/stratus
#   make run        deps, build, serve config/stratus.yaml
#   make test       deps, build, every test (unit + integration, release and ASan, valgrind)
#   make bench      bench/overhead (see BENCHMARKS.md)

PKGS    := libevent libevent_pthreads libcurl jansson yaml-0.1 openssl
CC      ?= cc
VERSION := $(shell cat VERSION 2>/dev/null || echo 0.0.0)

WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter -Wno-format-truncation
BASE_CFLAGS = -std=c11 -D_GNU_SOURCE -DSTRATUS_VERSION='"$(VERSION)"' -Isrc $(WARN) -MMD -MP \
          $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
BASE_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lhttp_parser -lpthread -lm

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

SRC      := $(shell find src -name '*.c' | sort)
LIB_SRC  := $(filter-out src/main.c,$(SRC))
OBJ      := $(SRC:%.c=$(OUT)/obj/%.o)
LIB_OBJ  := $(LIB_SRC:%.c=$(OUT)/obj/%.o)
UNIT_SRC := $(shell find tests/unit -name 'test_*.c' 2>/dev/null | sort)
UNIT_BIN := $(patsubst tests/unit/%.c,$(OUT)/tests/%,$(UNIT_SRC))
HDR_SRC  := $(shell find src -name '*.h' | sort)

.PHONY: fuzz all debug asan run test test-unit test-integration test-asan deps clean format bench check-format headers
.DEFAULT_GOAL := all

all: $(OUT)/stratus

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

# Every public header must compile on its own (catches missing includes).
headers:
	@mkdir -p $(OUT)/headers
	@for h in $(HDR_SRC); do \
	    printf '#include "%s"\n' "$${h#src/}" > $(OUT)/headers/one.c; \
	    $(CC) $(BASE_CFLAGS) -fsyntax-only $(OUT)/headers/one.c || exit 1; \
	done

# libFuzzer targets (clang): build/fuzz/<name>; scripts/run-tests fuzz runs each briefly.
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(FUZZ_SRC))
FUZZ_LIB := src/http/sse.c src/util/err.c src/util/arena.c src/util/json_scan.c src/api/openai.c \
            src/providers/openai.c src/obs/log.c src/api/proxy.c src/http/server.c src/route/router.c \
            src/providers/registry.c src/providers/upstream.c src/config/config.c src/app.c
build/fuzz/%: tests/fuzz/%.c $(FUZZ_LIB)
	@mkdir -p $(dir $@)
	@echo "  FUZZ $@"
	@clang -std=c11 -D_GNU_SOURCE -DSTRATUS_VERSION='"$(VERSION)"' -Isrc -g -O1 \
	    -fsanitize=fuzzer,address,undefined $(shell pkg-config --cflags $(PKGS)) -o $@ $< $(FUZZ_LIB) \
	    $(BASE_LIBS)
fuzz: $(FUZZ_BIN)

debug:
	$(MAKE) MODE=debug all
asan:
	$(MAKE) MODE=asan all unit-bins

deps:
	@./scripts/install-deps

run: deps
	$(MAKE) all
	./build/stratus serve --config config/stratus.yaml

test: deps
	@./scripts/run-tests

test-unit: all unit-bins
	@./scripts/run-tests unit

test-asan: deps
	@./scripts/run-tests asan

bench: deps all
	./bench/overhead/run

format:
	clang-format -i $(SRC) $(HDR_SRC) $(shell find tests bench -name '*.c' -o -name '*.h')

check-format:
	clang-format --dry-run -Werror $(SRC) $(HDR_SRC)

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
