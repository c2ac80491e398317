"""Streaming latency: from a transcript's write into a watched directory to its chunks being
searchable, minus the time its run spent embedding (issue 18, goal <= 5 s here).

    .venv/bin/python -m benchmarks.streaming [--files 5] [--out benchmarks/results/streaming.json]

The `watch` flow (flows/watch.py) runs in this process under a temporary Prefect API
(prefect_test_harness) with the real MiniLM, against a milvus-lite gRPC server on 127.0.0.1,
so this process can query the collection while the flow writes. Each file is written once its
predecessor's run has completed; the clock stops when a query for its source id answers.
Prints one JSON object; never fails on a time (a benchmark, not a test).
"""

from __future__ import annotations

import argparse
import contextvars
import json
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.common import BIN, machine_info, offline_environ

WORDS = ("river lantern harvest copper meadow signal orchard glacier harbor ember canyon "
         "thistle beacon quarry willow compass").split()  # fmt: skip


def text_for(i: int, sentences: int = 40) -> str:
    """A distinct transcript of a few chunks (about 1,000 words)."""
    return " ".join(
        f"Part {i}.{n}: the {WORDS[(i + n) % len(WORDS)]} and the "
        f"{WORDS[(i * 3 + n) % len(WORDS)]} were described at length by speaker {i} "
        f"in segment {n} of this recording."
        for n in range(sentences)
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout: float, what: str, every: float = 0.02) -> float:
    """Poll `condition` until truthy; returns the monotonic time it first was."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        threading.Event().wait(every)
    return time.monotonic()


def start_milvus_lite(data_dir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "milvus-lite"), "server", "--data-dir", str(data_dir),
         "--host", "127.0.0.1", "--port", str(port)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip

    def answers() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_for(answers, 60, "milvus-lite server", every=0.1)
    return proc, f"http://127.0.0.1:{port}"


def measure(root: Path, files: int) -> dict[str, Any]:
    import os

    import flows.watch  # noqa: F401  (imported before the chdir below)
    import yaml
    from prefect.testing.utilities import prefect_test_harness

    from corpusflow.store import MilvusStore

    proc, uri = start_milvus_lite(root / "milvus.db")
    os.environ["MILVUS_URI"] = uri
    inbox = root / "inbox"
    inbox.mkdir()
    (inbox / "seed.txt").write_text(text_for(0))  # the catch-up run loads the model
    params = {
        "sources": {"transcripts": [str(inbox)]},
        "ingest": {"rejects": str(root / "rejects.jsonl"), "cache": str(root / "cache.sqlite")},
        "comet": {"mode": "disabled"},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    os.chdir(root)
    try:
        with prefect_test_harness(server_startup_timeout=120):
            return _run(root, inbox, files, uri, MilvusStore)
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def _run(root: Path, inbox: Path, files: int, uri: str, store_cls: Any) -> dict[str, Any]:
    from flows.watch import watch

    outcome: dict[str, Any] = {}

    def run() -> None:
        outcome["state"] = watch(params_file=str(root / "params.yaml"), max_runs=files,
                                 return_state=True)  # fmt: skip

    thread = threading.Thread(target=contextvars.copy_context().run, args=(run,), daemon=True)
    thread.start()
    store = store_cls(uri, "corpusflow")

    def found(source_id: str) -> bool:
        target = store.alias_target()
        return bool(target) and any(store.iter_rows(target, ["id"], f'source_id == "{source_id}"'))

    wait_for(lambda: found("file:inbox/seed.txt"), 300, "the catch-up run", every=0.1)
    written: list[float] = []
    searchable: list[float] = []
    for i in range(1, files + 1):
        path = inbox / f"file-{i}.txt"
        path.write_text(text_for(i))
        written.append(time.monotonic())
        searchable.append(wait_for(lambda p=path: found(f"file:inbox/{p.name}"), 120, path.name))
        if i < files:  # the next file lands once this run has finished (one change set each)
            wait_for(lambda i=i: _runs_done(i), 120, f"run {i}", every=0.05)
    thread.join(timeout=120)
    store.close()
    runs = outcome["state"].result()["runs"]
    embed = [r["seconds"]["embed"] for r in runs]
    latency = [s - w for s, w in zip(searchable, written, strict=True)]
    net = [lat - e for lat, e in zip(latency, embed, strict=True)]
    return {
        "files": files,
        "chunks_per_file": [r["chunks"] for r in runs],
        "embedded_per_file": [r["embedded"] for r in runs],
        "write_to_searchable_s": [round(x, 3) for x in latency],
        "embed_s": embed,
        "latency_minus_embed_s": [round(x, 3) for x in net],
        "latency_minus_embed_median_s": round(statistics.median(net), 3),
        "latency_minus_embed_max_s": round(max(net), 3),
        "goal_s": 5.0,
    }


def _runs_done(n: int) -> bool:
    """`n` change-set runs (plus the catch-up) of the watch flow have completed."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )

    with get_client(sync_client=True) as client:
        done = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["ingest"])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=["COMPLETED"]))
            ),
        )
    return len(done) >= n + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out.resolve() if args.out else None  # measure() changes directory
    offline_environ()
    with tempfile.TemporaryDirectory(prefix="corpusflow-streaming-") as tmp:
        result = {"streaming": measure(Path(tmp), args.files), "machine": machine_info()}
    text = json.dumps(result, indent=2, sort_keys=True)
    print(text)
    if out:
        out.write_text(text + "\n")


if __name__ == "__main__":
    main()
