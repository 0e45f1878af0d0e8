# rein - build, test, benchmark. `make help` lists the targets.
#
# Sources are found by wildcard: a new file under src/ joins librein, a new tests/test_*.c becomes
# a test program, a new cli/*.c joins the `rein` program. No list to keep in step by hand.

CC      ?= cc
OPT     ?= -O2
CFLAGS  ?= $(OPT) -g
WARN     = -std=c11 -Wall -Wextra -Wshadow -Wmissing-prototypes -Wno-unused-parameter
CPPFLAGS = -Iinclude -Isrc -D_GNU_SOURCE
LDLIBS   = -lpcre2-8 -lcjson -lsqlite3 -lm -lpthread
BUILD   ?= build

ifeq ($(SAN),1)
  CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDFLAGS += -fsanitize=address,undefined
endif
# `make BLAS=openblas BUILD=build-blas`: OpenBLAS does the f32 matrix products, for comparison. It
# gives up what rein's kernel guarantees (the same sums whatever the batch, BF16 products), so
# test_model_ref's batch-versus-alone check does not hold under it.
ifeq ($(BLAS),openblas)
  CPPFLAGS += -DREIN_USE_OPENBLAS
  LDLIBS   += -lopenblas
endif

LIB_SRC   := $(shell find src -name '*.c' | sort)
LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_SRC   := $(wildcard cli/*.c)
CLI_OBJ   := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_SRC  := $(wildcard tests/test_*.c)
TEST_BIN  := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TEST_UTIL := $(BUILD)/tests/testutil.o
BENCH_SRC := $(wildcard bench/bench_*.c)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
BENCH_UTIL := $(BUILD)/bench/benchutil.o

MODEL := models/SmolLM2-135M-Instruct.Q4_1.gguf

.PHONY: all lib rein tests test test-unit asan bench model deps demo clean help format
.DEFAULT_GOAL := all
.SECONDARY:

all: rein tests

lib: $(BUILD)/librein.a
rein: $(BUILD)/rein
	@ln -sf $(BUILD)/rein rein
tests: $(TEST_BIN)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(WARN) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/librein.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/rein: $(CLI_OBJ) $(BUILD)/librein.a
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/librein.a $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(TEST_UTIL) $(BUILD)/librein.a
	$(CC) $(LDFLAGS) -o $@ $< $(TEST_UTIL) $(BUILD)/librein.a $(LDLIBS)

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(BENCH_UTIL) $(BUILD)/librein.a
	$(CC) $(LDFLAGS) -o $@ $< $(BENCH_UTIL) $(BUILD)/librein.a $(LDLIBS)

deps:
	@scripts/install-deps.sh

model: $(MODEL)
$(MODEL):
	@scripts/fetch-model.sh

# The README's test command: installs what it needs, fetches the model, builds, runs every test.
test: deps
	@$(MAKE) --no-print-directory model
	@$(MAKE) --no-print-directory all
	@scripts/run-tests.sh $(BUILD) $(TEST_BIN)

# Unit tests under AddressSanitizer and UndefinedBehaviorSanitizer, in a build folder of their own.
asan:
	@$(MAKE) --no-print-directory BUILD=build-asan SAN=1 OPT=-O1 tests rein
	@ASAN_OPTIONS=detect_leaks=1 scripts/run-tests.sh build-asan $(TEST_BIN:$(BUILD)/%=build-asan/%)

# The benchmark compares weight types: F32 and Q8_0 files derived from the downloaded Q4_1 one.
BENCH_MODELS := models/SmolLM2-135M-Instruct.F32.gguf models/SmolLM2-135M-Instruct.Q8_0.gguf
models/SmolLM2-135M-Instruct.F32.gguf: $(MODEL) | $(BUILD)/rein
	$(BUILD)/rein export -m $(MODEL) --type f32 --out $@
models/SmolLM2-135M-Instruct.Q8_0.gguf: $(MODEL) | $(BUILD)/rein
	$(BUILD)/rein export -m $(MODEL) --type q8_0 --out $@

bench: deps
	@$(MAKE) --no-print-directory model
	@$(MAKE) --no-print-directory rein $(BENCH_BIN)
	@$(MAKE) --no-print-directory $(BENCH_MODELS)
	@for b in $(BENCH_BIN); do $$b || exit 1; done

# The README's main job.
demo: deps
	@$(MAKE) --no-print-directory model
	@$(MAKE) --no-print-directory rein
	@scripts/demo.sh

format:
	clang-format -i $$(find include src cli tests bench -name '*.[ch]')

clean:
	rm -rf build build-asan rein

help:
	@echo "make          build librein, the rein program and the tests"
	@echo "make demo     install what is needed, fetch the default model, run the main job"
	@echo "make test     install what is needed, fetch the model, build and run every test"
	@echo "make asan     the tests under AddressSanitizer + UBSan"
	@echo "make bench    benchmarks (figures and ratios against peers; not tests)"
	@echo "make model    download the default model into models/ and check its sha256"

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
