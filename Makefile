# corpusflow: `make run` sets everything up and runs the main job; `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

# Offline-first: no telemetry, no hub downloads (docs/architecture.md, decision 4). The same
# list as corpusflow.OFFLINE_ENV (src/corpusflow/__init__.py), checked by tests/unit/test_offline_env.py.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export COMET_ERROR_TRACKING_ENABLE := false
export COMET_DISABLE_ANNOUNCEMENT := true
export COMET_DISABLE_AUTO_LOGGING := 1
export COMET_LOGGING_CONSOLE := WARNING
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export DVC_NO_ANALYTICS := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install run test test-fast lint clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c requirements.lock -e '.[test]'
	touch $@

run: install
	$(BIN)/corpusflow ingest
	$(BIN)/corpusflow snapshot
	$(BIN)/corpusflow search "how do I keep a wild yeast starter alive" -k 3

lint: install
	$(BIN)/ruff check src tests flows benchmarks

test: install lint
	$(BIN)/python -m pytest -q

# tests/unit only: no Milvus, no model, no server, no subprocess (tests/conftest.py holds
# every unit test to that); under a minute. `make test` runs unit, integration and e2e.
test-fast:
	@test -x $(BIN)/python || $(MAKE) install
	$(BIN)/python -m pytest -q tests/unit

# Extra targets owned by their features (prefect server/worker, dvc, bench).
-include mk/*.mk

clean:
	rm -rf data/milvus.db data/embedding-cache.sqlite* data/state.sqlite* data/rejects.jsonl data/snapshots
