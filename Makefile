# The two commands of the README: `make run` (set up, install the starter model if none, serve) and
# `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN = $(VENV)/bin

.PHONY: setup run test lint bench bench-latency bench-generalisation bench-service bench-safety starter-model clean

setup: $(VENV)/.installed

# torch is pinned to the CPU build on this disk; everything that depends on it is installed in the
# same pip command, otherwise pip resolves a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# The service on http://127.0.0.1:8000 (API docs at /docs), on an SQLite store in data/.
run: setup
	$(BIN)/haggler starter-model --if-missing
	$(BIN)/haggler serve

test: setup
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: bench-latency bench-generalisation bench-service

# The service under wrk: 50 external-seller negotiations in flight, training off vs on.
bench-service: setup
	$(BIN)/haggler starter-model --if-missing
	$(BIN)/haggler bench-service

# The agent's in-process decision latency for one observation (median and p99).
bench-latency: setup
	$(BIN)/haggler bench-latency

# Leave one seller family out, every family in turn, 3 training seeds: the agent against the best
# rules and the type oracle on the families it never saw, the limit-inferring seller, the online
# stream at the default settings and the starter recipe over 5 seeds (models cached in
# models/bench/generalisation; ~1 hour on 2 cores without them). Output in bench-results/.
bench-generalisation: setup
	mkdir -p bench-results
	$(BIN)/haggler bench-generalisation --jobs 2 --json bench-results/generalisation.json

# Reproduces the starter model shipped in the package (`haggler starter-model` installs it).
starter-model: setup
	$(BIN)/haggler train --seed 0 --model src/haggler/data/starter_model.pth

# Safe online learning: the seller-shift and poisoning benchmarks (3 seeds each; pretrained models
# are cached in models/bench/safety; ~25 minutes with cached models, an hour more without), then
# the off-policy honesty, A/A stopping-rule and rollback-monitor simulations.
bench-safety: setup
	$(BIN)/haggler starter-model --if-missing
	$(BIN)/haggler bench-safety shift --jobs 2
	$(BIN)/haggler bench-safety poisoning --jobs 2
	$(BIN)/haggler bench-ope --target candidate
	$(BIN)/haggler bench-ab
	$(BIN)/haggler bench-rollback

clean:
	rm -rf $(VENV)
