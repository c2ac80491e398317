# Benchmarks (issue #9): `make bench` measures; it never fails on a time (benchmarks are not tests).
# Offline env vars come from the Makefile's exports. Results: benchmarks/results/*.json.
# Needs only an installed venv (no reinstall: it must also run offline, under loopback-only).
# Run it on a quiet machine: every figure is a ratio of two measurements taken in one run.
.PHONY: bench bench-quick bench-docs bench-figures bench-growth bench-resume bench-search \
	bench-streaming bench-peers bench-peers-quick bench-peer-venvs bench-million

BENCH_VENV = test -x $(BIN)/python || $(MAKE) install

# the seven figures, then state growth and resume after kill -9 (issue 13), search latency (19),
# streaming latency (18)
bench: bench-figures bench-growth bench-resume bench-search bench-streaming

bench-figures:
	@$(BENCH_VENV)
	$(BIN)/python -m benchmarks.run

bench-growth:
	@$(BENCH_VENV)
	$(BIN)/python -m benchmarks.growth --out benchmarks/results/growth.json

bench-resume:
	@$(BENCH_VENV)
	$(BIN)/python -m benchmarks.resume --out benchmarks/results/resume.json

# 1M chunks, cached vectors -> Milvus Lite -> snapshot, and into Milvus 2.3.5 standalone
# (issue 13, acceptance 2). Not part of `make bench`: about 3 hours on 2 cores at today's rates,
# ~25 GB of scratch. The standalone half needs `../shared/tools/loopback-only make bench-million`.
bench-million:
	@$(BENCH_VENV)
	$(BIN)/python -m benchmarks.million --out benchmarks/results/million.json

bench-search:
	@$(BENCH_VENV)
	$(BIN)/python -m benchmarks.search_latency --json > benchmarks/results/search.json

bench-streaming:
	@$(BENCH_VENV)
	$(BIN)/python -m benchmarks.streaming --out benchmarks/results/streaming.json

# a smoke test of the harness at tiny sizes (numbers meaningless; writes nothing tracked)
bench-quick:
	@$(BENCH_VENV)
	$(BIN)/python -m benchmarks.run --quick --out /tmp/corpusflow-bench-quick.json
	$(BIN)/python -m benchmarks.growth --documents 30 --scale 3 --out /tmp/corpusflow-growth-quick.json
	$(BIN)/python -m benchmarks.resume --documents 40 --out /tmp/corpusflow-resume-quick.json

# a full run that also rewrites the generated table in docs/benchmarks.md
bench-docs:
	@$(BENCH_VENV)
	$(BIN)/python -m benchmarks.run --write-docs

# Side by side with LangChain index() and LlamaIndex IngestionPipeline (issue 17). Each peer
# gets its own venv under .bench-venvs/ (never the project's, never `make test`), built once:
# torch==2.13.0 first (unpinned, pip pulls a multi-GB CUDA build), then its pins. Needs the
# package registry the first time only.
PEER_VENVS := .bench-venvs
PEERS := langchain llamaindex
PEER_STAMPS := $(foreach p,$(PEERS),$(PEER_VENVS)/$(p)/.installed-stamp)

$(PEER_VENVS)/%/.installed-stamp: benchmarks/peer_runners/requirements-%.txt
	rm -rf $(PEER_VENVS)/$*
	$(PYTHON) -m venv $(PEER_VENVS)/$*
	$(PEER_VENVS)/$*/bin/pip install -q torch==2.13.0
	$(PEER_VENVS)/$*/bin/pip install -q -r $<
	touch $@

bench-peer-venvs: $(PEER_STAMPS)

bench-peers: bench-peer-venvs
	@$(BENCH_VENV)
	$(BIN)/python -m benchmarks.peers --venvs $(PEER_VENVS) --out benchmarks/results/peers.json

# 40 articles, one round: checks the harness end to end (numbers meaningless, nothing tracked)
bench-peers-quick: bench-peer-venvs
	@$(BENCH_VENV)
	$(BIN)/python -m benchmarks.peers --venvs $(PEER_VENVS) --quick --out /tmp/corpusflow-peers-quick.json
