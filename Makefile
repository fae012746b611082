# strata — two commands: `make demo` (main job) and `make test` (the test suite).
# Both bootstrap torch 2.11.0 from PyPI into ~/.cache/strata once, then build against it.
SHELL := /bin/bash
VENV := $(shell ./scripts/bootstrap-torch.sh)
PYTHON := $(VENV)/bin/python
export LIBTORCH := $(shell $(PYTHON) -c 'import torch,os;print(os.path.dirname(torch.__file__))')
export LIBTORCH_BYPASS_VERSION_CHECK := 1
export STRATA_PYTHON := $(PYTHON)
CARGO ?= cargo
STRATA := target/release/strata

.PHONY: all build demo lint test test-full bench docs clean
all: build

build:
	$(CARGO) build --release --bin strata

# The main job: a 4-stage GCNII pipeline across worker processes on loopback. Cora when the
# shared datasets are present, else the karate club embedded in the binary.
demo: build
	@mkdir -p target/demo
	@if $(STRATA) data path cora >/dev/null 2>&1; then args="--dataset cora --layers 32 --epochs 200"; \
	else args="--dataset karate --layers 16 --chunks 4 --epochs 100"; fi; \
	echo "$(STRATA) launch $$args --stages 4 --json target/demo/pipeline.json"; \
	$(STRATA) launch $$args --stages 4 --json target/demo/pipeline.json

# Formatting and lints are part of the suite: rustfmt.toml's style, and clippy with every
# warning an error (all targets: tests and benches too).
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

# The e2e tests run the `strata` binary, so it is built first.
# Tests that need ../shared/graphs (or network namespaces) fail here instead of skipping.
# The fuzz tests run last, on their own, so their case counts are printed.
FUZZ := survive_mutated_files survives_mutated_files fuzzed_streams
test: lint build
	STRATA_REQUIRE_TEST_DATA=1 $(CARGO) test --release --workspace -- $(addprefix --skip ,$(FUZZ))
	STRATA_REQUIRE_TEST_DATA=1 $(CARGO) test --release -p strata-graph --test fuzz_readers -- --nocapture
	$(CARGO) test --release -p strata-pipe --lib -- fuzzed_streams --nocapture

test-full: build
	STRATA_REQUIRE_TEST_DATA=1 STRATA_FULL=1 $(CARGO) test --release --workspace -- --include-ignored --nocapture

# docs/cli.md from the argument parser and docs/schemas/ from the report types (a test fails
# when either is out of date).
docs:
	STRATA_UPDATE_DOCS=1 $(CARGO) test --release -p strata-cli --bin strata -- the_cli_reference_is_up_to_date the_report_schemas_are_up_to_date

bench: build
	./scripts/bench.sh

clean:
	$(CARGO) clean
