"""`corpusflow search` in a fresh process: wall time, and where it goes (issue #19).

    .venv/bin/python -m benchmarks.search_latency [--runs 5] [--json]

Ingests the sample corpus (data/raw) once into a scratch directory through the CLI, then
times `corpusflow search` in fresh processes. Import time is the sum of the top-level
imports that `python -X importtime` reports for one such search (that run is slower than a
plain one; its share is what counts). It also times loading the model both ways in fresh
processes: the light load corpusflow uses (torch + safetensors + tokenizers) and
sentence-transformers. A benchmark reports; it never fails on a time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import BIN, REPO, child_env, machine_info, offline_environ

QUERY = "how do I keep a wild yeast starter alive"
PARAMS = """\
sources:
  transcripts: [data/raw/transcripts]
  articles: [data/raw/articles/articles.csv]
comet:
  mode: disabled
"""
LOAD_LIGHT = (
    "from corpusflow.embedding.local import LocalEmbedder; from corpusflow.config import "
    "Embedding; LocalEmbedder(Embedding()).embed(['warm up'])"
)
LOAD_ST = (
    "from sentence_transformers import SentenceTransformer; "
    "from corpusflow.embedding.local import shipped_model_path; "
    "SentenceTransformer(str(shipped_model_path()), device='cpu').encode(['warm up'])"
)


def _timed(cmd: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=child_env())
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} failed: {out.stderr.strip()[-500:]}")
    return seconds, out


def _workdir(root: Path) -> Path:
    """The sample corpus, ingested through the CLI (its model load is not measured)."""
    (root / "params.yaml").write_text(PARAMS)
    shutil.copytree(REPO / "data" / "raw", root / "data" / "raw")
    _timed([str(BIN / "corpusflow"), "ingest"], root)
    return root


def _imports(root: Path) -> dict[str, Any]:
    """Top-level import times (importtime's cumulative column at depth 0) of one search."""
    cmd = [sys.executable, "-X", "importtime", "-m", "corpusflow", "search", QUERY, "-k", "3"]
    wall, out = _timed(cmd, root)
    top: dict[str, float] = {}
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = (part.strip() for part in line[len("import time:") :].split("|"))
        if cumulative.isdigit() and not line.split("|")[2].startswith("  "):
            top[name] = top.get(name, 0.0) + int(cumulative) / 1e6
    total = sum(top.values())
    heaviest = sorted(top.items(), key=lambda kv: -kv[1])[:6]
    return {
        "instrumented_wall_s": round(wall, 3),
        "import_s": round(total, 3),
        "import_share": round(total / wall, 3) if wall else None,
        "heaviest": {name: round(s, 3) for name, s in heaviest},
    }


def _stats(samples: list[float]) -> dict[str, float]:
    return {
        "median_s": round(statistics.median(samples), 3),
        "min_s": round(min(samples), 3),
        "max_s": round(max(samples), 3),
        "runs": len(samples),
    }


def measure(runs: int) -> dict[str, Any]:
    offline_environ()
    with tempfile.TemporaryDirectory(prefix="corpusflow-search-bench-") as tmp:
        root = _workdir(Path(tmp))
        search = [str(BIN / "corpusflow"), "search", QUERY, "-k", "3"]
        walls = [_timed(search, root)[0] for _ in range(runs)]
        imports = _imports(root)
        light, st = [], []
        for _ in range(max(1, runs // 2)):  # interleaved, so both see the same machine load
            light.append(_timed([sys.executable, "-c", LOAD_LIGHT], root)[0])
            st.append(_timed([sys.executable, "-c", LOAD_ST], root)[0])
    return {
        "search_fresh_process": _stats(walls),
        "imports": imports,
        "model_load_fresh_process": {"light": _stats(light), "sentence_transformers": _stats(st)},
        "machine": machine_info(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh-process searches to time")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    result = measure(max(1, args.runs))
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
        return 0
    s, imp = result["search_fresh_process"], result["imports"]
    load = result["model_load_fresh_process"]
    print(
        f"search, fresh process: median {s['median_s']} s (min {s['min_s']}, max {s['max_s']}, "
        f"{s['runs']} runs)"
    )
    print(
        f"importing: {imp['import_s']} s of {imp['instrumented_wall_s']} s under -X importtime "
        f"({imp['import_share']:.0%}); heaviest: "
        + ", ".join(f"{k} {v} s" for k, v in imp["heaviest"].items())
    )
    print(
        f"model load + one text, fresh process: light {load['light']['median_s']} s, "
        f"sentence-transformers {load['sentence_transformers']['median_s']} s"
    )
    print(f"load average at start: {result['machine']['loadavg_at_start']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
