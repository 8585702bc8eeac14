# The two commands of the README: `make run` (set up, install the starter model if none, serve) and
# `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN = $(VENV)/bin

.PHONY: setup run test lint bench bench-latency bench-generalisation bench-service bench-safety bench-page-load bench-scale starter-model vendor clean

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
# stream at the default settings against every family (from the model that never saw it) and the
# starter recipe over 5 seeds (models cached in models/bench/generalisation; ~1.5 hours on 2 cores
# without them). Output in bench-results/.
bench-generalisation: setup
	mkdir -p bench-results
	$(BIN)/haggler bench-generalisation --jobs 2 --stream-family all \
		--json bench-results/generalisation.json

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

# The dashboard in headless Chromium (/usr/bin/chromium) against a real server on a fresh store:
# time from navigation start until every chart is drawn with data, cold and warm cache.
bench-page-load: setup
	$(BIN)/haggler bench-page-load

# Reads, turns and the learner with 10k, 100k and 1M negotiations in a temporary SQLite store
# (filled fast with copies of negotiations played for real; ~15 minutes, ~5 GB of disk at 1M).
# For PostgreSQL, a database it may wipe: $(BIN)/haggler bench-scale --database-url postgresql://...
bench-scale: setup
	$(BIN)/haggler bench-scale

# The charting library the pages load, vendored in the package (nothing is downloaded when the app
# runs): plotly.js's basic bundle (scatter, bar, pie; 1.2 MB against 4.8 MB for the whole library),
# fetched with npm at a pinned version and checked against the pinned hash of its tarball, with its
# licence, and a gzip copy the app sends to browsers that accept it (~390 kB). One line is added
# on top, V8's explicit compile hint: Chrome (136 and later) compiles the library on a background
# thread while it loads, not on the main thread as the page first calls it (dashboard first load,
# cold cache, 12 paired loads in Chromium 156: median 848 ms against 990 ms without it).
PLOTLY_PACKAGE = plotly.js-basic-dist-min
PLOTLY_VERSION = 4.1.1
PLOTLY_INTEGRITY = sha512-1oNF8PeQx2hv/y7tqEVWKD3JGwn/MGEMQ8mL9HUwsaqG9FGy/OU5FHUHvzqbqxN4mnwZGI9abTiE775C4kkjMQ==
VENDOR = src/haggler/web/vendor

vendor:
	rm -rf build/vendor
	mkdir -p build/vendor $(VENDOR)
	test "$$(npm view $(PLOTLY_PACKAGE)@$(PLOTLY_VERSION) dist.integrity)" = "$(PLOTLY_INTEGRITY)"
	cd build/vendor && npm pack --silent $(PLOTLY_PACKAGE)@$(PLOTLY_VERSION)
	test "sha512-$$(openssl dgst -sha512 -binary build/vendor/$(PLOTLY_PACKAGE)-$(PLOTLY_VERSION).tgz | base64 -w0)" = "$(PLOTLY_INTEGRITY)"
	tar -xzf build/vendor/$(PLOTLY_PACKAGE)-$(PLOTLY_VERSION).tgz -C build/vendor
	{ printf '//# allFunctionsCalledOnLoad\n'; cat build/vendor/package/plotly-basic.min.js; } > $(VENDOR)/plotly-basic.min.js
	cp build/vendor/package/LICENSE $(VENDOR)/plotly-basic.LICENSE
	gzip -9 -n -c $(VENDOR)/plotly-basic.min.js > $(VENDOR)/plotly-basic.min.js.gz

clean:
	rm -rf $(VENV)
