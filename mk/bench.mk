# Benchmarks (issue #9): `make bench` measures; it never fails on a time (benchmarks are not tests).
# Offline env vars come from the Makefile's exports. Results: benchmarks/results/*.json.
# Needs only an installed venv (no reinstall: it must also run offline, under loopback-only).
# Run it on a quiet machine: every figure is a ratio of two measurements taken in one run.
.PHONY: bench bench-quick bench-docs bench-figures bench-growth bench-resume bench-search bench-streaming

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
