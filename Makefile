# Every target bootstraps .venv first and reinstalls only when pyproject.toml changed.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint services bench bench-quick clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# A real uvicorn server overloaded 4×, with priorities and with plain FIFO (about 45 s);
# the HTML report goes to build/ (`prioritize simulate` is the virtual-time version).
demo: $(STAMP)
	mkdir -p build
	$(BIN)/prioritize demo --report build/prioritize-demo.html

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy

# The servers the tests start for themselves (Redis) must be installed; this installs
# what is missing (apt-get, as root), and under CI=true fails if it cannot.
services:
	scripts/ensure-services

test: lint services
	$(BIN)/pytest

# Every benchmark, one after the other; ARGS go to each (--quick for a smoke run),
# JSON_DIR=dir also writes dir/<name>.json per benchmark.
BENCHES := core aio executor queues adaptive http jobs llm db
bench: $(STAMP)
	@for b in $(BENCHES); do \
	  if [ -f bench/$$b.py ]; then \
	    echo "== bench/$$b.py"; \
	    $(BIN)/python bench/$$b.py $(ARGS) $(if $(JSON_DIR),--json $(JSON_DIR)/$$b.json) || exit 1; \
	  fi; \
	done

bench-quick:
	$(MAKE) bench ARGS=--quick

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
