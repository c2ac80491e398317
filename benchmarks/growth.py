"""Growth: does a run cost what changed, not what is stored? (issue 13, acceptance 1)

    python -m benchmarks.growth [--documents N] [--scale 10] [--out FILE]

At N and scale×N documents (transcripts and articles from `benchmarks.corpus`), with every
vector already in the embedding cache (the hash embedder filled it under MiniLM's model id,
so the model is never the cost), each step a fresh `corpusflow` process as a user runs it:
cold ingest, no-op rerun (median of 3), `stats` (median of 3), `snapshot`; at scale×N also
1% of documents edited (only those files rewritten). Peak RSS is each process's VmHWM.
The load path is compared in this process: corpusflow's ingest from the cache into an empty
Milvus Lite against a bare `client.upsert` loop of the same rows, same schema and index.
The same steps again with the collection behind `milvus-lite server` (the same engine in a
process of its own) give the corpusflow process's own peak RSS. Prints one JSON object and
writes it to --out.
"""

from __future__ import annotations

import argparse
import contextlib
import filecmp
import json
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import (
    BIN,
    child_env,
    close_context,
    make_context,
    offline_environ,
    partial_keeper,
    write_result,
)
from benchmarks.corpus import generate, pick_edits

RUNS = 3


def _params(root: Path, corpus: Path) -> None:
    params = {
        "sources": {
            "transcripts": [str(corpus / "transcripts")],
            "articles": [str(corpus / "articles")],
        },
        "comet": {"mode": "disabled"},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")


MILVUS_URI: dict[str, str] = {}  # set while a `milvus-lite server` holds the collection


def _cli(root: Path, *args: str) -> tuple[float, int, dict[str, Any]]:
    """Seconds, peak RSS (KiB) and JSON output of one fresh `corpusflow` process."""
    cmd = [sys.executable, "-m", "benchmarks.launcher", str(BIN / "corpusflow"), *args, "--json"]
    started = time.perf_counter()
    env = {**child_env(), **MILVUS_URI}
    out = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if out.returncode != 0:
        raise RuntimeError(f"corpusflow {' '.join(args)} failed: {out.stderr[-2000:]}")
    lines = out.stdout.strip().splitlines()
    peak = json.loads(lines[-1])["launcher"]["maxrss_kib"]
    return seconds, peak, json.loads(lines[-2]) if len(lines) > 1 else {}


def _prefill(root: Path, corpus: Path, scratch: str) -> int:
    """Fill root's embedding cache with hash vectors under MiniLM's id (throwaway Milvus)."""
    from benchmarks.fake_embedder import HashEmbedder
    from corpusflow.config import LOCAL_MODEL_ID
    from corpusflow.pipeline import ingest

    ctx = make_context(
        root / scratch,
        HashEmbedder(model_id=LOCAL_MODEL_ID),
        ingest={"cache": str(root / "data" / "embedding-cache.sqlite")},
    )
    try:
        result = ingest(
            ctx, sources=([str(corpus / "transcripts")], [str(corpus / "articles")], ())
        )
    finally:
        close_context(ctx)
    shutil.rmtree(root / scratch, ignore_errors=True)
    return result.chunks


def _apply_edits(corpus: Path, documents: int, seed: int) -> int:
    """Rewrite only the files that 1% of edited documents change; the number of files."""
    with tempfile.TemporaryDirectory() as tmp:
        generate(tmp, documents, seed=seed, edits=pick_edits(documents, 0.01, seed))
        changed = 0
        for new in Path(tmp).rglob("*"):
            old = corpus / new.relative_to(tmp)
            if new.is_file() and not filecmp.cmp(new, old, shallow=False):
                shutil.copyfile(new, old)
                changed += 1
    return changed


@contextlib.contextmanager
def lite_server(data_dir: Path) -> Iterator[None]:
    """`milvus-lite server` on 127.0.0.1 for the CLI runs (their RSS is then corpusflow's
    own: embedded Milvus Lite keeps every segment of an open collection in memory)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [str(BIN / "milvus-lite"), "server", "--data-dir", str(data_dir)]
    proc = subprocess.Popen(
        cmd + ["--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("milvus-lite server did not start")
            time.sleep(0.1)
        MILVUS_URI["MILVUS_URI"] = f"http://127.0.0.1:{port}"
        yield
    finally:
        MILVUS_URI.clear()
        proc.send_signal(signal.SIGINT)  # its Ctrl-C path closes the database
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:  # it may wait on idle connections: end it
            proc.kill()
            proc.wait()


def measure(
    work: Path, documents: int, seed: int, edit: bool, server: bool = False
) -> dict[str, Any]:
    root = work / f"n{documents}"
    corpus = root / "corpus"
    generate(corpus, documents, seed=seed)
    _params(root, corpus)
    chunks = _prefill(root, corpus, "prefill")
    if not server:
        return _steps(root, corpus, documents, seed, edit, chunks)
    with lite_server(root / "lite-server"):
        return _steps(root, corpus, documents, seed, edit, chunks)


def _steps(
    root: Path, corpus: Path, documents: int, seed: int, edit: bool, chunks: int
) -> dict[str, Any]:
    if edit:  # the edited texts are in the cache too: the edit run embeds nothing new
        with tempfile.TemporaryDirectory() as tmp:
            generate(tmp, documents, seed=seed, edits=pick_edits(documents, 0.01, seed))
            _prefill(root, Path(tmp), "prefill-edit")
    out: dict[str, Any] = {"documents": documents, "chunks": chunks}
    out["cold_s"], out["cold_peak_kib"], cold = _cli(root, "ingest")
    assert cold["embedded"] == 0, cold
    noops = [_cli(root, "ingest") for _ in range(RUNS)]
    assert all(r[2]["upserted"] == 0 for r in noops)
    out["noop_s"] = statistics.median(r[0] for r in noops)
    stats = [_cli(root, "stats") for _ in range(RUNS)]
    out["stats_s"] = statistics.median(r[0] for r in stats)
    assert stats[0][2]["records"] == chunks, stats[0][2]
    out["snapshot_s"], out["snapshot_peak_kib"], _ = _cli(root, "snapshot", "--no-version")
    if edit:
        out["edited_files"] = _apply_edits(corpus, documents, seed)
        out["edit_s"], _, edited = _cli(root, "ingest")
        out["edit_result"] = {k: edited[k] for k in ("added", "updated", "deleted", "embedded")}
    return out


def load_path(work: Path, documents: int, seed: int) -> dict[str, Any]:
    """corpusflow's load from the cache vs a bare upsert of the same rows (in this process)."""
    from benchmarks.fake_embedder import HashEmbedder
    from benchmarks.figures import _capture_upserts, bare_upsert
    from corpusflow.pipeline import ingest

    corpus = work / f"n{documents}" / "corpus"
    src = ([str(corpus / "transcripts")], [str(corpus / "articles")], ())
    embedder = HashEmbedder()
    # the second run rebuilds into an empty Milvus with the same local caches (as after
    # `rm -r data/milvus.db`): vectors, parsed documents and chunk lists are all known
    local = {"cache": str(work / "lc.sqlite"), "state": str(work / "ls.sqlite")}
    warm = make_context(work / "load-warm", embedder, ingest=local)
    rows = _capture_upserts(warm)
    ingest(warm, sources=src)
    close_context(warm)
    ctx = make_context(work / "load-cold", embedder, ingest=local)
    started = time.perf_counter()
    result = ingest(ctx, sources=src)
    ours = time.perf_counter() - started
    close_context(ctx)
    bare = min(bare_upsert(work / "bare.db", rows, 384).values())
    return {"rows": len(rows), "corpusflow_s": ours, "bare_s": bare, "embedded": result.embedded}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=300)
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", default="benchmarks/results/growth.json")
    args = parser.parse_args(argv)
    offline_environ()
    partial, keep = partial_keeper(args.out)

    with tempfile.TemporaryDirectory(prefix="corpusflow-growth-") as tmp:
        work = Path(tmp)
        small = measure(work, args.documents, args.seed, edit=False)
        keep(n=small)
        large = measure(work, args.documents * args.scale, args.seed, edit=True)
        keep(n=small, **{"10n": large})
        load = load_path(work, args.documents * args.scale, args.seed)
        keep(n=small, load=load, **{"10n": large})
        client = {}
        for label, n in (("n", args.documents), ("10n", args.documents * args.scale)):
            shutil.rmtree(work / f"n{n}", ignore_errors=True)
            client[label] = measure(work, n, args.seed, edit=False, server=True)
    partial.unlink(missing_ok=True)
    ratios = {
        "noop_10n_over_n": large["noop_s"] / small["noop_s"],
        "edit_1pct_over_cold_10n": large["edit_s"] / large["cold_s"],
        "bare_over_corpusflow_load": load["bare_s"] / load["corpusflow_s"],
        "ingest_peak_10n_over_n": large["cold_peak_kib"] / small["cold_peak_kib"],
        "snapshot_peak_10n_over_n": large["snapshot_peak_kib"] / small["snapshot_peak_kib"],
        "stats_10n_over_n": large["stats_s"] / small["stats_s"],
        "client_ingest_peak_10n_over_n": client["10n"]["cold_peak_kib"]
        / client["n"]["cold_peak_kib"],
        "client_snapshot_peak_10n_over_n": client["10n"]["snapshot_peak_kib"]
        / client["n"]["snapshot_peak_kib"],
    }
    result = {
        "n": small,
        "10n": large,
        "load": load,
        "lite_server": client,
        "ratios": {k: round(v, 3) for k, v in ratios.items()},
    }
    write_result(args.out, result, sort_keys=True)
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
