# DVC pipeline (issue #4, docs/dvc.md). Stage commands call `corpusflow`, so the venv's bin
# goes first on PATH; DVC_NO_ANALYTICS comes from the Makefile's exports, and the committed
# .dvc/config turns analytics and update checks off as well.
.PHONY: dvc-repro dvc-status dvc-dag dvc-metrics dvc-plots dvc-exp-show dvc-lock dvc-push dvc-pull \
	test-dvc

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

# the plots of the last DVC_PLOT_REVS commits that changed dvc.lock, and the workspace, side by
# side (chunks per source type, rejects per reason, snapshot size): dvc_plots/index.html
DVC_PLOT_REVS ?= 5
dvc-plots:
	@$(DVC_ENV)
	$(DVC_RUN) plots diff $$(git log -n $(DVC_PLOT_REVS) --format=%h -- dvc.lock | tac) workspace

# `dvc exp show` with the columns that tell experiments apart (docs/dvc.md)
DVC_EXP_COLUMNS ?= ^(Experiment|Created|chunking\.chunk_size|rejected|chunks|records|kilobytes)$$
dvc-exp-show:
	@$(DVC_ENV)
	$(DVC_RUN) exp show --drop '.*' --keep '$(DVC_EXP_COLUMNS)' --no-pager

# Refresh dvc.lock and metrics/ from a clean `dvc repro` of this checkout's files, run in a
# scratch copy (nothing stale from here: no Milvus, no DVC cache, no data/work), offline
# (no COMET_API_KEY, no MILVUS_URI). The embedding cache is copied in, so nothing is embedded
# that was embedded before. Then commit dvc.lock and metrics/ (`dvc status` shows the result).
dvc-lock:
	@$(DVC_ENV)
	@set -eu; here="$(CURDIR)"; tmp=$$(mktemp -d "$${TMPDIR:-/tmp}/corpusflow-dvc-lock.XXXXXX"); \
	trap 'rm -rf "$$tmp"' EXIT; \
	git ls-files -z --cached --others --exclude-standard \
		| tar --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -xf - -C "$$tmp"; \
	for f in data/embedding-cache.sqlite*; do [ -e "$$f" ] && cp "$$f" "$$tmp/data/"; done; \
	cd "$$tmp" && git init -q && git add -A \
		&& git -c user.name=dvc-lock -c user.email=dvc-lock@localhost commit -qm scratch \
		&& env -u COMET_API_KEY -u MILVUS_URI -u MILVUS_TOKEN DVC_SITE_CACHE_DIR="$$tmp/.site" \
			PATH="$$here/$(BIN):$$PATH" "$$here/$(BIN)/dvc" repro --quiet; \
	cp "$$tmp/dvc.lock" "$$here/dvc.lock"; rm -rf "$$here/metrics"; cp -r "$$tmp/metrics" "$$here/"; \
	echo "dvc.lock and metrics/ refreshed from a clean dvc repro; commit them"

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
	$(LOOPBACK_ONLY) $(BIN)/python -m pytest tests/e2e/test_dvc.py -q
