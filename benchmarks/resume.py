"""Resume after kill -9: how fast a rerun skips what a killed first ingest stored (issue 13,
acceptance 3).

    python -m benchmarks.resume [--documents 17000] [--out benchmarks/results/resume.json]

A corpus of about 100k chunks (`benchmarks.corpus`, every vector already in the embedding
cache under MiniLM's id, so the model is not the cost); a first `corpusflow ingest` killed
with SIGKILL once half of the chunks are upserted; then a rerun, and no-op reruns after it.
Each is a fresh process. The rerun's skip rate is the chunks it skipped before it began to plan
the first batch it had to write (S), over the seconds from its start to that moment. The no-op
rate is over the same S chunks: S over the seconds from a no-op's start to the moment it had
skipped S (median of 3), so both count one process start and the same inputs in the same order.
Figure: skip rate ÷ that no-op rate (goal ≥ 0.8). Reported beside it, as before: the no-op's
whole-corpus rate (all chunks over its whole run), whose inputs are not the rerun's (the stored
half is the walk's first half, the other half has different chunks per input). The rerun must
end with exactly the corpus' chunks stored.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import BIN, child_env, offline_environ, write_result
from benchmarks.corpus import generate
from benchmarks.growth import _params, _prefill

# Runs `corpusflow` with three hooks: SIGKILL once RESUME_KILL_ROWS rows are upserted; the
# time and skipped chunks when the first plan that writes anything began (RESUME_MARK); the
# time when RESUME_REACH chunks had been skipped (written to RESUME_MARK).
CHILD = """
import json, os, signal, sys, time
from corpusflow.ingestion import Ingestion
from corpusflow.store import MilvusStore
kill_rows = int(os.environ.get("RESUME_KILL_ROWS", "0"))
mark = os.environ.get("RESUME_MARK")
upsert, plan, done = MilvusStore.upsert, Ingestion.plan, [0, False]
def counting_upsert(self, name, rows, *args, **kwargs):
    n = upsert(self, name, rows, *args, **kwargs)
    done[0] += len(rows)
    if kill_rows and done[0] >= kill_rows:
        os.kill(os.getpid(), signal.SIGKILL)
    return n
def marking_plan(self, batch):
    began, skipped = time.time(), self.result.skipped
    p = plan(self, batch)
    if mark and p.writes and not done[1]:
        done[1] = True
        with open(mark, "w") as f:
            json.dump({"time": began, "skipped": skipped}, f)
    return p
reach = int(os.environ.get("RESUME_REACH", "0"))
def reaching(skip):
    def wrapped(self, *args):
        skip(self, *args)
        if reach and self.result.skipped >= reach and not done[1]:
            done[1] = True
            with open(mark, "w") as f:
                json.dump({"time": time.time(), "skipped": self.result.skipped}, f)
    return wrapped
from corpusflow.screening import Screener
Screener._unchanged = reaching(Screener._unchanged)
Ingestion._unchanged = reaching(Ingestion._unchanged)
MilvusStore.upsert, Ingestion.plan = counting_upsert, marking_plan
from corpusflow.cli import main
sys.argv = ["corpusflow", *sys.argv[1:]]
main()
"""


def _run(root: Path, *args: str, **env: str) -> tuple[float, int, dict[str, Any]]:
    """Wall seconds (from the start of the process), exit code and JSON output."""
    started = time.time()
    out = subprocess.run(
        [str(BIN / "python"), str(root / "child.py"), *args, "--json"],
        cwd=root, env={**child_env(), **env}, capture_output=True, text=True,
    )  # fmt: skip
    seconds = time.time() - started
    body = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else {}
    if out.returncode not in (0, -9):
        raise RuntimeError(f"corpusflow {' '.join(args)} failed: {out.stderr[-2000:]}")
    return seconds, out.returncode, {"started": started, **body}


def measure(work: Path, documents: int, seed: int) -> dict[str, Any]:
    root = work / "project"
    corpus = root / "corpus"
    generate(corpus, documents, seed=seed)
    _params(root, corpus)
    (root / "child.py").write_text(CHILD, encoding="utf-8")
    chunks = _prefill(root, corpus, "prefill")
    killed_s, code, _ = _run(root, "ingest", RESUME_KILL_ROWS=str(chunks // 2))
    if code != -9:
        raise RuntimeError("the first ingest ended before it was killed")
    mark = root / "mark.json"
    rerun_s, _, rerun = _run(root, "ingest", RESUME_MARK=str(mark))
    # no batch left to write (the kill came after the last upsert): all of it was skipping
    ended = {"time": rerun["started"] + rerun_s, "skipped": rerun.get("skipped", 0)}
    first_write = json.loads(mark.read_text()) if mark.exists() else ended
    skip_s = first_write["time"] - rerun["started"]
    noops, reached = [], []
    for i in range(3):
        reach = root / f"reach-{i}.json"
        seconds, _, noop = _run(root, "ingest", RESUME_MARK=str(reach),
                                RESUME_REACH=str(first_write["skipped"]))  # fmt: skip
        noops.append(seconds)
        reached.append(json.loads(reach.read_text())["time"] - noop["started"])
    _, _, stats = _run(root, "stats")
    skip_rate = first_write["skipped"] / skip_s
    noop_rate = first_write["skipped"] / statistics.median(reached)
    whole_rate = chunks / statistics.median(noops)
    return {
        "documents": documents,
        "chunks": chunks,
        "killed_after_s": round(killed_s, 3),
        "rerun_s": round(rerun_s, 3),
        "rerun": {k: rerun[k] for k in ("upserted", "skipped", "deleted", "embedded")},
        "skipped_before_first_write": first_write["skipped"],
        "seconds_to_first_write": round(skip_s, 3),
        "noop_s": [round(s, 3) for s in noops],
        "noop_s_to_the_same_chunks": [round(s, 3) for s in reached],
        "stored_after_rerun": stats["records"],
        "skip_rate_chunks_per_s": round(skip_rate, 1),
        "noop_rate_chunks_per_s": round(noop_rate, 1),
        "skip_rate_over_noop_rate": round(skip_rate / noop_rate, 3),
        "noop_whole_corpus_rate_chunks_per_s": round(whole_rate, 1),
        "skip_rate_over_noop_whole_corpus_rate": round(skip_rate / whole_rate, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=17_000)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", default="benchmarks/results/resume.json")
    args = parser.parse_args(argv)
    offline_environ()
    with tempfile.TemporaryDirectory(prefix="corpusflow-resume-") as tmp:
        result = measure(Path(tmp), args.documents, args.seed)
    if result["stored_after_rerun"] != result["chunks"]:
        stored = result["stored_after_rerun"]
        print(f"stored {stored} of {result['chunks']} chunks", file=sys.stderr)
    write_result(args.out, result, sort_keys=True)
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0 if result["stored_after_rerun"] == result["chunks"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
