# DVC pipeline (issue #4, docs/dvc.md). Stage commands call `corpusflow`, so the venv's bin
# goes first on PATH; DVC_NO_ANALYTICS comes from the Makefile's exports, and the committed
# .dvc/config turns analytics and update checks off as well.
.PHONY: dvc-repro dvc-status dvc-dag dvc-metrics dvc-push dvc-pull test-dvc

DVC_ENV = test -x $(BIN)/python || $(MAKE) install
DVC_RUN = PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc
LOOPBACK_ONLY = $(wildcard ../shared/tools/loopback-only)

# rebuild what changed (the load stage always syncs Milvus: ~2 s when nothing changed)
dvc-repro:
	@$(DVC_ENV)
	$(DVC_RUN) repro

dvc-status:
	@$(DVC_ENV)
	$(DVC_RUN) status

dvc-dag:
	@$(DVC_ENV)
	$(DVC_RUN) dag

dvc-metrics:
	@$(DVC_ENV)
	$(DVC_RUN) metrics show

# every committed version's outputs to the default remote (~/.local/share/corpusflow/dvc-remote)
dvc-push:
	@$(DVC_ENV)
	$(DVC_RUN) push --all-commits

dvc-pull:
	@$(DVC_ENV)
	$(DVC_RUN) pull

# the DVC tests alone, with no network but loopback
test-dvc:
	@$(DVC_ENV)
	$(LOOPBACK_ONLY) $(BIN)/python -m pytest tests/test_dvc.py -q
