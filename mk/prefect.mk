# Prefect: local server + `local` process work pool + deployments + worker (docs/prefect.md).
# Included by the Makefile (`-include mk/*.mk`); BIN and the offline exports come from there.
#
#   make prefect-up        start server (127.0.0.1:$(PREFECT_PORT)), work pool, deploy, worker
#   make prefect-run       prefect deployment run 'ingest/local' --watch (starts the stack if needed)
#   make prefect-status    which parts run (exit 0, also when stopped)
#   make prefect-deploy    re-register prefect.yaml's deployments
#   make prefect-down      stop the worker, then the server
#   make prefect-test      the flow, streaming, Dask and end-to-end tests only
#   make prefect-bench     streaming latency: file write -> searchable, minus embedding
#   make prefect-clean     stop, then remove data/prefect (Prefect's database, logs, results)
#
# PREFECT_RUN_ARGS passes parameters, e.g.
#   make prefect-run PREFECT_RUN_ARGS="-p cleanup=full -p dry_run=true"

PREFECT_PORT ?= 4200
PREFECT_RUN_ARGS ?=
PREFECT_STACK = PREFECT_PORT=$(PREFECT_PORT) CORPUSFLOW_BIN=$(abspath $(BIN)) \
	scripts/prefect-stack.sh

.PHONY: prefect-up prefect-down prefect-status prefect-deploy prefect-run prefect-env \
	prefect-test prefect-bench prefect-clean

prefect-up: install
	$(PREFECT_STACK) start

prefect-down:
	$(PREFECT_STACK) stop

prefect-status:
	$(PREFECT_STACK) status

prefect-deploy: install
	$(PREFECT_STACK) deploy

prefect-env:
	@$(PREFECT_STACK) env

prefect-run: install
	$(PREFECT_STACK) running || $(PREFECT_STACK) start
	eval "$$($(PREFECT_STACK) env)" && \
		$(BIN)/prefect deployment run 'ingest/local' $(PREFECT_RUN_ARGS) --watch

prefect-test: install
	$(BIN)/python -m pytest -q tests/integration/test_flows.py tests/integration/test_streaming.py \
		tests/integration/test_dask.py tests/e2e/test_prefect_e2e.py

prefect-bench:
	@test -x $(BIN)/python || $(MAKE) install
	$(BIN)/python -m benchmarks.streaming

prefect-clean: prefect-down
	rm -rf data/prefect
