# Every target bootstraps .venv first and reinstalls only when pyproject.toml changed.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench bench-quick clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/prioritize simulate examples/prioritize.toml

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

# make bench ARGS="--json bench/results/run.json" passes options through
bench: $(STAMP)
	$(BIN)/python bench/core.py $(ARGS)

bench-quick: $(STAMP)
	$(BIN)/python bench/core.py --quick

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
