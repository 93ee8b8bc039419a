# The two commands: `make run` (the back office on its embedded stack) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The exact versions and hashes of every dependency (docs/operations.md, "Reproducible installs"): installs
# take them from here, `make lock` writes them from pyproject.toml.
LOCK := requirements/dev.lock
RUNTIME_LOCK := requirements/runtime.lock
UV := uv==0.13.9
COMPILE = $(BIN)/uv pip compile pyproject.toml --quiet --generate-hashes --universal --python-version 3.11

.PHONY: run test check lint typecheck bench clean-data lock

# Plain pip, nothing else needed: the lock's packages (hash-checked), then the project itself without
# resolving anything again.
$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# Re-resolves after a change to pyproject.toml, keeping the pins that still fit;
# `make lock LOCK_ARGS=--upgrade` moves every package to its newest allowed release.
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(UV)
	$(COMPILE) $(LOCK_ARGS) --extra dev -o $(LOCK)
	$(COMPILE) $(LOCK_ARGS) -o $(RUNTIME_LOCK)

run: $(STAMP)
	$(BIN)/backoffice dev

test: $(STAMP)
	$(BIN)/python -m pytest

# The fast tier, for every change: lint, types and the tests that need no Temporal dev server (a few minutes).
check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -m "not stack" --deselect tests/test_code_quality.py

# Performance figures on the embedded stack, every one in one run (docs/performance.md). BENCH_ARGS picks
# some: --parts 1,2,3,4,5,6,7 = (1) baseline workflows/s, (2) orders/s and the ratio to (1), (3) intake at
# 50/s alone and while the worker drains, (4) one order's events/activities/provider calls, (5) worker RSS
# with orders waiting in refill windows, (6) orders/s with one and two workers, (7) polling cost;
# e.g. BENCH_ARGS="--parts 5 --waiting 2000". `bench/throughput.py --help` lists every option.
bench: $(STAMP)
	$(BIN)/python bench/throughput.py $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

# Deletes every order, key and workflow of the local stack.
clean-data:
	rm -rf .data
