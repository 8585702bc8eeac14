# The two commands of the README: `make run` (set up, train a starter model if none, run) and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN = $(VENV)/bin

.PHONY: setup run test lint bench clean

setup: $(VENV)/.installed

# torch is pinned to the CPU build on this disk; everything that depends on it is installed in the
# same pip command, otherwise pip resolves a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

run: setup
	$(BIN)/haggler train --if-missing
	$(BIN)/haggler evaluate --episodes 1000

test: setup
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy

bench: setup
	$(BIN)/haggler bench-latency

clean:
	rm -rf $(VENV)
