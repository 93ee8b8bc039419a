# The two commands: `make run` (the back office on its embedded stack) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test check lint typecheck bench clean-data

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

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

# Performance figures on the embedded stack (docs/performance.md); e.g. BENCH_ARGS="--waiting 2000".
bench: $(STAMP)
	$(BIN)/python bench/throughput.py $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

# Deletes every order, key and workflow of the local stack.
clean-data:
	rm -rf .data
