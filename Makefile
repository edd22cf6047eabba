# strait: replication gateway for hybrid and multi-cloud PostgreSQL.
#
#   make            build straitd and straitctl
#   make test       install dependencies, check tests/programs.txt and the
#                   layering, build, run unit (ASan+UBSan), fuzz-corpus replay
#                   and integration tests
#   make check-layers  check every #include against the layering rule and
#                   every function's length (under 100 lines)
#   make demo       install dependencies, build, run two sites on this machine
#   make fuzz       run every libFuzzer target for FUZZ_TIME seconds each
#   make big        the integration tests too large for make test (900 MiB values)
#   make matrix     the replication, sync and failover suites for each pair of
#                   PostgreSQL versions in MATRIX_PAIRS (source:target)
#   make deps       install build and test dependencies from Debian's packages

VERSION := $(shell cat VERSION)

CC      ?= cc
CLANG   ?= clang
CFLAGS  ?= -O2 -g
PYTHON  ?= /usr/bin/python3
PYTEST_ARGS ?=
FUZZ_TIME ?= 60
# Separate build trees (make BUILD=build-x) let several builds run side by side.
BUILD   ?= build
export STRAIT_BUILD := $(abspath $(BUILD))

PG_INCLUDE := $(shell pg_config --includedir 2>/dev/null || echo /usr/include/postgresql)

WARNINGS := -Wall -Wextra -Werror -Wmissing-prototypes -Wstrict-prototypes \
	-Wshadow -Wformat=2 -Wimplicit-fallthrough -Werror=vla -Wno-format-nonliteral
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE -pthread -DSTRAIT_VERSION='"$(VERSION)"' \
	-I. -I$(PG_INCLUDE) $(WARNINGS) -MMD -MP
LDLIBS := -pthread -lpq -lssl -lcrypto -lzstd -levent_openssl -levent -lyaml -lmnl -lm

SAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -DSTRAIT_TEST_HOOKS \
	-fno-sanitize-recover=all
FUZZ_FLAGS := -O1 -g -fsanitize=fuzzer-no-link,address,undefined \
	-fno-sanitize-recover=all -DSTRAIT_FUZZING

ifeq ($(V),1)
Q :=
else
Q := @
endif

# The layers (DESIGN.md, "Build and layout"): config and common at the bottom,
# tunnel and replicator on them, the gateway's folders on top.
GATEWAY    := relay stream cluster verify witness daemon
MODULES    := common config tunnel replicator $(addprefix gateway/,$(GATEWAY))
# The two programs' main()s live in the daemon's folder.
MAIN_DIR   := gateway/daemon
MAIN_SRCS  := $(MAIN_DIR)/straitd.c $(MAIN_DIR)/straitctl.c
LIB_SRCS   := $(filter-out $(MAIN_SRCS),$(wildcard $(addsuffix /*.c,$(MODULES))))
UNIT_SRCS  := $(wildcard tests/unit/test_*.c)
FUZZ_SRCS  := $(wildcard tests/fuzz/fuzz_*.c)
TOOL_SRCS  := $(wildcard tests/tools/*.c)

LIB_OBJS   := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
SAN_OBJS   := $(LIB_SRCS:%.c=$(BUILD)/san/%.o)
FUZZ_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/fuzzobj/%.o)
UNIT_BINS  := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_BINS  := $(FUZZ_SRCS:tests/fuzz/%.c=$(BUILD)/fuzz/%)
TOOL_BINS  := $(TOOL_SRCS:tests/tools/%.c=$(BUILD)/tools/%)

# Objects of the sanitizer and tool builds are intermediate to make: keep them.
.SECONDARY:

.PHONY: all tools clean deps test check-layers unit fuzz-replay fuzz integration big matrix demo bench bench-sync chaos install

all: $(BUILD)/straitd $(BUILD)/straitctl

# Drivers that integration tests use to exercise one module against real servers.
tools: $(TOOL_BINS)

$(BUILD)/straitd: $(BUILD)/obj/$(MAIN_DIR)/straitd.o $(BUILD)/libstrait.a
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/straitctl: $(BUILD)/obj/$(MAIN_DIR)/straitctl.o $(BUILD)/libstrait.a
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/libstrait.a: $(LIB_OBJS)
	@echo "  AR      $@"
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS) $(BASE_CFLAGS) -c -o $@ $<

$(BUILD)/tools/%: $(BUILD)/obj/tests/tools/%.o $(BUILD)/libstrait.a
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Sanitizer build of the library and the unit tests.
$(BUILD)/san/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC san  $<"
	$(Q)$(CC) $(SAN_FLAGS) $(BASE_CFLAGS) -c -o $@ $<

$(BUILD)/libstrait-san.a: $(SAN_OBJS)
	$(Q)rm -f $@ && ar rcs $@ $^

# The integration suite runs the sanitizer builds of the programs: a memory
# error or a leak in the daemon fails the test that caused it.
SAN_PROGS := $(BUILD)/asan/straitd $(BUILD)/asan/straitctl \
	$(TOOL_SRCS:tests/tools/%.c=$(BUILD)/asan/tools/%)

$(BUILD)/asan/%: $(BUILD)/san/$(MAIN_DIR)/%.o $(BUILD)/libstrait-san.a
	@mkdir -p $(dir $@)
	@echo "  LD san  $@"
	$(Q)$(CC) $(SAN_FLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/asan/tools/%: $(BUILD)/san/tests/tools/%.o $(BUILD)/libstrait-san.a
	@mkdir -p $(dir $@)
	@echo "  LD san  $@"
	$(Q)$(CC) $(SAN_FLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/san/tests/unit/%.o $(BUILD)/libstrait-san.a
	@mkdir -p $(dir $@)
	@echo "  LD san  $@"
	$(Q)$(CC) $(SAN_FLAGS) -o $@ $^ -lcmocka $(LDLIBS)

# libFuzzer builds (clang).
$(BUILD)/fuzzobj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC fuzz $<"
	$(Q)$(CLANG) $(FUZZ_FLAGS) $(BASE_CFLAGS) -c -o $@ $<

$(BUILD)/libstrait-fuzz.a: $(FUZZ_OBJS)
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/fuzz/%: $(BUILD)/fuzzobj/tests/fuzz/%.o $(BUILD)/libstrait-fuzz.a
	@mkdir -p $(dir $@)
	@echo "  LD fuzz $@"
	$(Q)$(CLANG) $(FUZZ_FLAGS) -fsanitize=fuzzer -o $@ $^ $(LDLIBS)

deps:
	$(Q)./tests/install-deps.sh

unit: $(UNIT_BINS)
	$(Q)set -e; for t in $(UNIT_BINS); do \
		echo "== $$t"; ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
		STRAIT_SOURCE_DIR=$(CURDIR) $$t; done

# Replays every fuzz corpus once under ASan/UBSan: a crash found before stays fixed.
fuzz-replay: $(FUZZ_BINS)
	$(Q)set -e; for f in $(FUZZ_BINS); do \
		name=$${f#$(BUILD)/fuzz/fuzz_}; corpus=tests/fuzz/corpus/$$name; \
		echo "== replay $$name ($$(ls $$corpus | wc -l) inputs)"; \
		$$f -runs=0 $$corpus/* >/dev/null 2>$(BUILD)/fuzz/$$name.replay.log || \
			{ cat $(BUILD)/fuzz/$$name.replay.log; exit 1; }; done

fuzz: $(FUZZ_BINS)
	$(Q)set -e; for f in $(FUZZ_BINS); do \
		name=$${f#$(BUILD)/fuzz/fuzz_}; corpus=tests/fuzz/corpus/$$name; \
		mkdir -p $(BUILD)/fuzz/new-$$name; \
		echo "== fuzz $$name for $(FUZZ_TIME)s"; \
		$$f -max_total_time=$(FUZZ_TIME) -print_final_stats=1 \
			$(BUILD)/fuzz/new-$$name $$corpus 2>&1 | tail -n 12; done

# Tests run in PYTEST_WORKERS processes (pytest-xdist): most of a test's time
# is spent waiting on servers and links, so two share this 2-core machine
# well; the harness hands out ports, namespaces and interface names that
# several runs at once never share. PYTEST_WORKERS=1 runs them one by one.
PYTEST_WORKERS ?= 2
PYTEST_PAR = $(if $(filter-out 0 1,$(PYTEST_WORKERS)),-n $(PYTEST_WORKERS) --dist load)
integration: all tools $(SAN_PROGS)
	$(Q)STRAIT_BUILD=$(abspath $(BUILD))/asan STRAIT_PLAIN_BUILD=$(abspath $(BUILD)) \
		ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
		$(PYTHON) -m pytest -q -p no:cacheprovider --durations=15 -m "$(PYTEST_MARK)" $(PYTEST_PAR) \
		$(PYTEST_ARGS) tests/integration

# The replication, initial sync and failover suites once per pair of server
# versions (source:target, builds of tests/postgres-versions.txt; README
# lists the pairs): the first server a test starts runs the source's version,
# the others the target's. A summary line per pair; fails if any pair did.
MATRIX_PAIRS ?= 13:17 17:13 14:18 18:14
MATRIX_TESTS ?= (test_replication or test_initial_sync or test_failover) and not test_wan
matrix: all tools $(SAN_PROGS)
	$(Q)failed=; for p in $(MATRIX_PAIRS); do \
		s=$${p%%:*}; t=$${p##*:}; echo "== PostgreSQL $$s -> $$t"; \
		if STRAIT_TEST_SOURCE_VERSION=$$s STRAIT_TEST_TARGET_VERSION=$$t \
			$(MAKE) --no-print-directory integration \
			PYTEST_ARGS="-k '$(MATRIX_TESTS)' $(PYTEST_ARGS)"; \
		then echo "== PostgreSQL $$s -> $$t: passed"; \
		else echo "== PostgreSQL $$s -> $$t: FAILED"; failed="$$failed $$s:$$t"; fi; done; \
	test -z "$$failed" || { echo "failed pairs:$$failed"; exit 1; }

# The integration tests too large for make test (values near PostgreSQL's 1 GB limit).
PYTEST_MARK ?= not big
big:
	$(Q)$(MAKE) --no-print-directory integration PYTEST_MARK=big PYTEST_WORKERS=1

# The layering rule (DESIGN.md, "Build and layout"): the checker's own
# self-test, then every include of the tree.
check-layers:
	$(Q)$(PYTHON) tests/check_layers.py --self-test
	$(Q)$(PYTHON) tests/check_layers.py
	$(Q)$(PYTHON) tests/check_function_length.py --self-test
	$(Q)$(PYTHON) tests/check_function_length.py

test: deps
	$(Q)$(PYTHON) tests/check_programs.py
	$(Q)$(MAKE) --no-print-directory check-layers
	$(Q)$(MAKE) --no-print-directory all
	$(Q)$(MAKE) --no-print-directory unit
	$(Q)$(MAKE) --no-print-directory fuzz-replay
	$(Q)$(MAKE) --no-print-directory integration

demo: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)$(PYTHON) tests/demo.py

# Strait against PostgreSQL's native logical replication, side by side (root, ~15 min).
bench: deps
	$(Q)$(MAKE) --no-print-directory all tools
	$(Q)STRAIT_BUILD=$(abspath $(BUILD)) $(PYTHON) tests/bench/bench.py --out $(BUILD)/bench

# The initial sync at scale beside native's, 2 and 4 table-sync workers (root, ~18 min).
bench-sync: deps
	$(Q)$(MAKE) --no-print-directory all tools
	$(Q)STRAIT_BUILD=$(abspath $(BUILD)) $(PYTHON) tests/bench/bench.py --reps 0 \
		--phases manytables,bigtable --scale 1 --out $(BUILD)/bench-sync

# Faults under a ledger load, round after round (root; CHAOS_ROUNDS, CHAOS_SEED;
# CHAOS_SITES=3: one stream to two sites; CHAOS_VIA=1 with it: the second
# through the first, streams[].via; CHAOS_APPLY_WORKERS: the sinks' parallel
# apply, 1 for one session).
CHAOS_ROUNDS ?= 20
CHAOS_SEED ?=
CHAOS_SITES ?= 2
CHAOS_VIA ?=
CHAOS_APPLY_WORKERS ?= 3
chaos: deps
	$(Q)$(MAKE) --no-print-directory all tools $(SAN_PROGS)
	$(Q)STRAIT_BUILD=$(abspath $(BUILD))/asan ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
		$(PYTHON) tests/chaos/chaos.py --rounds $(CHAOS_ROUNDS) --sites $(CHAOS_SITES) \
		--apply-workers $(CHAOS_APPLY_WORKERS) \
		$(if $(CHAOS_VIA),--via) $(if $(CHAOS_SEED),--seed $(CHAOS_SEED))

clean:
	rm -rf $(BUILD)

-include packaging/packaging.mk
-include $(shell find $(BUILD) -name '*.d' -type f 2>/dev/null)
