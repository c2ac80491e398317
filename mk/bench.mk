# Benchmarks (issue #9): `make bench` measures; it never fails on a time (benchmarks are not tests).
# Offline env vars come from the Makefile's exports. Results: benchmarks/results/latest.json.
# Needs only an installed venv (no reinstall: it must also run offline, under loopback-only).
.PHONY: bench bench-quick bench-docs

BENCH_VENV = test -x $(BIN)/python || $(MAKE) install

bench:
	@$(BENCH_VENV)
	$(BIN)/python -m benchmarks.run

# a smoke test of the harness at tiny sizes (numbers meaningless; writes nothing tracked)
bench-quick:
	@$(BENCH_VENV)
	$(BIN)/python -m benchmarks.run --quick --out /tmp/corpusflow-bench-quick.json

# a full run that also rewrites the generated table in docs/benchmarks.md
bench-docs:
	@$(BENCH_VENV)
	$(BIN)/python -m benchmarks.run --write-docs
