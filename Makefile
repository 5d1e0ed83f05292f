# Levain: `make demo` and `make test` are the two commands a new machine needs
# (Debian 12, as root). Both install what is missing first (Tools/install-deps.sh).
SHELL := /bin/bash
export PATH := /opt/swift/usr/bin:$(PATH)

SWIFT      ?= swift
# Release binaries link the Swift runtime statically: faster start, and a
# jail needs no Swift libraries.
RELEASE    := $(SWIFT) build -c release --static-swift-stdlib
DEBUG      := $(SWIFT) build
BIN_DIR    := .build/release
DEBUG_DIR  := .build/debug
# CI fuzzes the protocol parser this long in `make test`.
FUZZ_SECONDS ?= 60
# Tests that measure time or CPU share: they run after the others, one at a
# time, so the rest of the suite does not starve what they measure (on a
# 2-core CI machine a parallel run left a busy loop 7% of a core, and a
# proxy's 500 ms head timer fired before it had read the bytes sent at once;
# the shutdown test saw no request answered in the 4 s between its grace and
# the exit).
TIMING_TESTS := LimitTests|EgressLimitsTests/(headTimeout|idleTunnel)|TimeoutTests|ShutdownTests

.PHONY: all deps build debug demo test test-unit test-jail bench fuzz install clean policies

all: build

deps:
	@Tools/install-deps.sh

build: deps
	$(RELEASE)

debug: deps
	$(DEBUG)

# The main job: an untrusted Python program tries to escape and to starve
# the machine inside a jail, then does real work; the report shows what was
# contained and what the run used.
demo: build
	@Tools/demo.sh $(BIN_DIR)/levain

# Every test: unit tests (policy parser, seccomp compiler, cgroup drivers)
# and, as root, the jail tests with the hostile-payload suite.
test: deps
	@Tools/python-venv.sh >/dev/null
	$(DEBUG)
	LEVAIN_BIN=$(CURDIR)/$(DEBUG_DIR)/levain $(SWIFT) test --parallel --num-workers 2 --skip '$(TIMING_TESTS)'
	LEVAIN_BIN=$(CURDIR)/$(DEBUG_DIR)/levain $(SWIFT) test --skip-build --no-parallel --filter '$(TIMING_TESTS)'
	LEVAIN_BIN=$(CURDIR)/$(DEBUG_DIR)/levain Tools/python-client-tests.sh
	@Tools/check-leftovers.sh
	SWIFT=$(SWIFT) python3 Tools/check-architecture.py
	Tools/fuzz/run.sh $(FUZZ_SECONDS)

# The protocol decoder and message parser under libFuzzer (Tools/fuzz).
fuzz:
	Tools/fuzz/run.sh $(FUZZ_SECONDS)

bench: deps
	@Tools/install-deps.sh --bench
	$(RELEASE)
	python3 benchmarks/table.py --bin $(BIN_DIR)
	$(BIN_DIR)/levain-log-bench --rounds 3

# Regenerate the compiled-in copies of policies/ after editing them.
policies:
	Tools/embed-policies.sh

install: build
	install -D -m 0755 $(BIN_DIR)/levain $(DESTDIR)/usr/local/bin/levain
	install -D -m 0755 $(BIN_DIR)/levain-ctl $(DESTDIR)/usr/local/bin/levain-ctl
	install -D -m 0755 $(BIN_DIR)/levain-harness $(DESTDIR)/usr/local/bin/levain-harness

clean:
	rm -rf .build
