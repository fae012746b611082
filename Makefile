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

.PHONY: all build demo test test-full bench clean
all: build

build:
	$(CARGO) build --release --bin strata

# Until pipelined training lands, the demo trains a deep GCNII in one process on the embedded graph.
demo: build
	@mkdir -p target/demo
	$(STRATA) train --dataset karate --model gcnii --layers 16 --epochs 100 --seeds 3 \
		--json target/demo/report.json --plot target/demo/curves.svg

# The e2e tests run the `strata` binary, so it is built first.
test: build
	$(CARGO) test --release --workspace

test-full: build
	STRATA_FULL=1 $(CARGO) test --release --workspace -- --include-ignored --nocapture

bench: build
	./scripts/bench.sh

clean:
	$(CARGO) clean
