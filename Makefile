# The two commands of the README: `make run` (set up, train a starter model if none, serve) and
# `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN = $(VENV)/bin

.PHONY: setup run test lint bench bench-latency bench-agent bench-service bench-safety clean

setup: $(VENV)/.installed

# torch is pinned to the CPU build on this disk; everything that depends on it is installed in the
# same pip command, otherwise pip resolves a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# The service on http://127.0.0.1:8000 (API docs at /docs), on an SQLite store in data/.
run: setup
	$(BIN)/haggler train --if-missing
	$(BIN)/haggler serve

test: setup
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: bench-latency bench-agent bench-service

# The service under wrk: 50 external-seller negotiations in flight, training off vs on.
bench-service: setup
	$(BIN)/haggler train --if-missing
	$(BIN)/haggler bench-service

# The agent's in-process decision latency for one observation (median and p99).
bench-latency: setup
	$(BIN)/haggler bench-latency

# Three 5-minute trainings (seeds 0-2), then all of them against every baseline on the same
# held-out negotiations: per-model tables and the mean and spread across seeds (~20 minutes).
BENCH_DIR ?= models/bench
BENCH_SECONDS ?= 300
BENCH_EPISODES ?= 11000
bench-agent: setup
	for seed in 0 1 2; do \
		$(BIN)/haggler train --quiet --seed $$seed --seconds $(BENCH_SECONDS) --model $(BENCH_DIR)/seed$$seed.pth || exit 1; \
	done
	$(BIN)/haggler evaluate --episodes $(BENCH_EPISODES) \
		--model $(BENCH_DIR)/seed0.pth --model $(BENCH_DIR)/seed1.pth --model $(BENCH_DIR)/seed2.pth

# Safe online learning: the seller-shift and poisoning benchmarks (3 seeds each; pretrained models
# are cached in models/bench/safety; ~25 minutes with cached models, an hour more without), then
# the off-policy honesty, A/A stopping-rule and rollback-monitor simulations.
bench-safety: setup
	$(BIN)/haggler train --if-missing
	$(BIN)/haggler bench-safety shift --jobs 2
	$(BIN)/haggler bench-safety poisoning --jobs 2
	$(BIN)/haggler bench-ope --target candidate
	$(BIN)/haggler bench-ab
	$(BIN)/haggler bench-rollback

clean:
	rm -rf $(VENV)
