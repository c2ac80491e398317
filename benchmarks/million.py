"""1M chunks: cached vectors -> Milvus Lite -> snapshot, and the same load into the Milvus
2.3.5 standalone beside it (issue 13, acceptance 2).

    python -m benchmarks.million [--chunks 1000000] [--server lite|standalone|both|none]
        [--out benchmarks/results/million.json] [--work DIR]

`--server none --work DIR` only prepares DIR (corpus and cache, about half an hour at 1M);
a later run with the same --work reuses it, so only the measured steps need a quiet machine.

A corpus of about --chunks chunks (`benchmarks.corpus`); its embedding cache is filled first,
without any ingest: the documents stream through corpusflow's own extraction, screening and
chunker (the chunk texts a real run embeds), and hash vectors go into the project's default
cache file under MiniLM's cache key, PREFILL_TEXTS per transaction (timed apart, not part of
the figure). Then, each a fresh `corpusflow` process under `benchmarks.launcher` (wall
seconds, peak RSS): `ingest` (cold; it must embed nothing, which checks the prefill), `stats`
(records must equal the chunks), `snapshot --no-version`. Figure: ingest + snapshot seconds
and the larger peak RSS, against 15 min and 4 GiB. The standalone half loads the same corpus
from the same cache file into a Milvus 2.3.5 server (tests/milvus_servers.py); it needs a
loopback-only network namespace (../shared/tools/loopback-only) and is skipped, with the
reason in the result, without one. Progress goes to stderr; what is measured is kept in
OUT's .partial.json as each step ends, so a run that dies keeps it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import (
    BIN,
    Timer,
    child_env,
    launch,
    machine_info,
    offline_environ,
    partial_keeper,
    peak_rss_kib,
    write_result,
)
from benchmarks.corpus import documents_for_chunks, generate
from benchmarks.fake_embedder import hash_vectors
from benchmarks.growth import _params

GOAL_SECONDS = 900.0  # ingest + snapshot, 15 min
GOAL_GIB = 4.0  # peak RSS of the larger of the two processes
PREFILL_TEXTS = 2_000  # chunk texts per cache transaction: bounds the prefill's memory
PREPARED = "prepared.json"  # in --work: the corpus and cache are ready
HEARTBEAT_S = 60.0  # a progress line at least this often while a step runs
KIB_PER_GIB = 1024 * 1024
STEPS = (("ingest", ("ingest",)), ("stats", ("stats",)), ("snapshot", ("snapshot", "--no-version")))


class PrefillError(RuntimeError):
    """The cache does not hold every chunk text: the figure would include the model."""


def _say(message: str) -> None:
    print(f"[million {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _step(name: str, status: Callable[[], str] = lambda: "") -> Iterator[Timer]:
    """Say when a step starts, every HEARTBEAT_S while it runs (with `status()`), and its
    seconds when it ends: a 20-minute run can be watched."""
    _say(f"{name} ...")
    stop, started = threading.Event(), time.perf_counter()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            _say(f"{name}: {time.perf_counter() - started:.0f} s so far {status()}".rstrip())

    thread = threading.Thread(target=beat, name=f"heartbeat-{name}", daemon=True)
    thread.start()
    timer = Timer()
    try:
        with timer:
            yield timer
    finally:
        stop.set()
        thread.join()
        _say(f"{name}: {timer.seconds:.1f} s {status()}".rstrip())


def _project(root: Path, corpus: Path, cache: Path | None = None) -> None:
    """params.yaml of a project over `corpus` (growth's); `cache` replaces the default cache."""
    root.mkdir(parents=True, exist_ok=True)
    _params(root, corpus)
    if cache is not None:
        file = root / "params.yaml"
        params = yaml.safe_load(file.read_text(encoding="utf-8"))
        params["ingest"] = {"cache": str(cache)}
        file.write_text(yaml.safe_dump(params), encoding="utf-8")


def chunk_texts(root: Path) -> tuple[Iterator[str], str, int, Path]:
    """Every chunk text a `corpusflow ingest` in `root` embeds, streamed: its params.yaml's
    sources through corpusflow's extraction, screening and chunker, with the CLI's own
    embedder (MiniLM's tokenizer; the model is never loaded). Also the cache key, the
    dimension and the cache file that run reads."""
    from corpusflow.chunking import Chunker
    from corpusflow.config import LOCAL_MODEL_ID, Env, load_params
    from corpusflow.context import Context
    from corpusflow.models import IngestResult
    from corpusflow.screening import RejectLog, Screener
    from corpusflow.sources.extract import extract

    params = load_params(root / "params.yaml")
    ctx = Context(params, env=Env())
    embedder = ctx.embedder
    if embedder.model_id != LOCAL_MODEL_ID:
        raise PrefillError(f"the project embeds with {embedder.model_id}, not {LOCAL_MODEL_ID}")
    chunker = Chunker.for_embedder(ctx.chunker_spec(), embedder)
    result = IngestResult("prefill", params.milvus.collection, "", embedder.model_id, "none")
    screener = Screener(result, RejectLog(root / "unused.jsonl", "prefill", enabled=False))
    items = extract(params, params.sources.transcripts, params.sources.articles)

    def texts() -> Iterator[str]:
        for doc in screener.screen(items):
            for chunk in chunker.split(doc):
                yield chunk.text

    return texts(), ctx.cache_model_key, embedder.dimension, root / params.ingest.cache


def prefill(root: Path) -> dict[str, Any]:
    """Hash vectors (`hash_vectors`) for every chunk text into root's embedding cache
    through `EmbeddingCache.put_many`, PREFILL_TEXTS per transaction; no Milvus is touched."""
    from corpusflow.embedding.cache import EmbeddingCache
    from corpusflow.ids import sha256_text
    from corpusflow.runner import batched

    texts, key, dimension, path = chunk_texts(root)
    done = [0]
    cache = EmbeddingCache(path)
    try:
        with _step("prefill", lambda: f"({done[0]:,} chunks)") as timer:
            for batch in batched(texts, PREFILL_TEXTS):
                vectors = hash_vectors(batch, dimension)
                hashes = [sha256_text(t) for t in batch]
                cache.put_many(key, list(zip(hashes, vectors, strict=True)))
                done[0] += len(batch)
        rows = cache.count(key)
    finally:
        cache.close()
    return {
        "chunks": done[0],
        "cache_rows": rows,  # distinct texts: a few chunks share one
        "cache_key": key,
        "cache_bytes": path.stat().st_size,
        "seconds": round(timer.seconds, 3),
        "rows_per_s": round(done[0] / timer.seconds, 1),
        "peak_rss_kib": peak_rss_kib(),  # this process, tokenizer and corpus reader included
    }


def _figures(report: dict[str, Any]) -> dict[str, Any]:
    """One process's launcher figures, and its peak RSS in GiB."""
    launcher = report["launcher"]
    return {
        "seconds": launcher["seconds"],
        "cpu_seconds": launcher["cpu_seconds"],
        "peak_rss_kib": launcher["maxrss_kib"],
        "peak_rss_gib": round(launcher["maxrss_kib"] / KIB_PER_GIB, 3),
    }


def _check(step: str, report: dict[str, Any], chunks: int) -> None:
    """The counts each step must show; a prefill that missed texts fails loudly."""
    if step == "ingest" and report["embedded"] != 0:
        raise PrefillError(
            f"the cold ingest embedded {report['embedded']} texts: the prefill missed them"
        )
    got = {"ingest": "upserted", "stats": "records", "snapshot": "records"}[step]
    if report[got] != chunks:
        raise RuntimeError(f"{step}: {got} = {report[got]}, expected {chunks} chunks")


def measure(
    label: str, root: Path, chunks: int, env: dict[str, str], keep: Callable[[dict], None]
) -> dict[str, Any]:
    """ingest, stats, snapshot in fresh processes; `keep(half)` after each step."""
    half: dict[str, Any] = {}
    for step, args in STEPS:
        with _step(f"{label} {step}"):
            report = launch([str(BIN / "corpusflow"), *args, "--json"], root, env)
        half[step] = _figures(report)
        if step == "ingest":
            half[step]["rows_per_s"] = round(report["upserted"] / half[step]["seconds"], 1)
            half[step]["result"] = {
                k: report[k] for k in ("chunks", "upserted", "embedded", "cache_hits", "rejected")
            }
        if step == "snapshot":  # the same rows in either server: the same bytes
            half[step]["sha256"] = report["sha256"]
            half[step]["bytes"] = Path(root, report["path"]).stat().st_size
        keep(half)
        _check(step, report, chunks)
    total_s = half["ingest"]["seconds"] + half["snapshot"]["seconds"]
    peak = max(half["ingest"]["peak_rss_kib"], half["snapshot"]["peak_rss_kib"])
    half["total"] = {
        "seconds": round(total_s, 3),
        "peak_rss_kib": peak,
        "peak_rss_gib": round(peak / KIB_PER_GIB, 3),
        "within_15_min": total_s <= GOAL_SECONDS,
        "within_4_gib": peak / KIB_PER_GIB <= GOAL_GIB,
    }
    keep(half)
    return half


def standalone(work: Path, root: Path, chunks: int, keep: Callable[[dict], None]) -> dict[str, Any]:
    """The same steps against a Milvus 2.3.5 standalone on 127.0.0.1 (stopped by its PID);
    the server's own peak RSS is recorded beside the client's."""
    from tests.milvus_servers import STANDALONE_VERSION, StandaloneServer

    server = StandaloneServer(work / "standalone-data")
    half: dict[str, Any] = {"server": {"version": STANDALONE_VERSION}}
    try:
        with _step("standalone start") as timer:
            server.start()
        half["server"]["start_s"] = round(timer.seconds, 3)
        env = {**child_env(), "MILVUS_URI": server.uri, "MILVUS_TOKEN": server.token}
        half.update(measure("standalone", root, chunks, env, lambda h: keep({**half, **h})))
        half["server"]["peak_rss_kib"] = peak_rss_kib(server.pid) if server.pid else None
    finally:
        with _step("standalone stop"):
            server.stop()
    return half


def standalone_skip() -> str | None:
    """Why the standalone half cannot run here (said in one line), or None."""
    from tests.milvus_servers import standalone_unavailable

    reason = standalone_unavailable()
    if reason:
        hint = "to include it, run this under ../shared/tools/loopback-only"
        _say(f"standalone half skipped ({reason}); {hint}")
    return reason


def prepare(work: Path, chunks: int, seed: int) -> dict[str, Any]:
    """The corpus and the prefilled cache in `work` (not part of the figure), or what an
    earlier `--server none` run prepared there: the untimed hour can run on a busy machine
    and the measured steps later on a quiet one."""
    done = work / PREPARED
    if done.exists():
        prepared = json.loads(done.read_text(encoding="utf-8"))
        if prepared["chunks_requested"] != chunks or prepared["seed"] != seed:
            raise SystemExit(f"{done}: prepared for other --chunks/--seed; use a new --work")
        _say(f"reusing the corpus and cache prepared in {work}")
        return prepared["result"]
    documents = documents_for_chunks(chunks)
    with _step(f"corpus ({documents:,} documents)") as timer:
        corpus = generate(work / "corpus", documents, seed=seed)
    summary = {**corpus.summary(), "root": str(corpus.root), "seconds": round(timer.seconds, 3)}
    result: dict[str, Any] = {"corpus": summary}
    _project(work / "lite", corpus.root)
    result["prefill"] = prefill(work / "lite")
    record = {"chunks_requested": chunks, "seed": seed, "result": result}
    done.write_text(json.dumps(record, sort_keys=True), encoding="utf-8")
    return result


def run(work: Path, chunks: int, server: str, seed: int, keep: Callable[..., None]) -> dict:
    """Corpus and prefill (`prepare`), then each half; `keep(**result)` after every step."""
    from corpusflow.config import Ingest

    result: dict[str, Any] = {"chunks_requested": chunks, "machine": machine_info()}
    result["goals"] = {"seconds": GOAL_SECONDS, "peak_rss_gib": GOAL_GIB}
    reason = standalone_skip() if server in ("standalone", "both") else None
    lite_root, server_root = work / "lite", work / "standalone"
    result.update(prepare(work, chunks, seed))
    keep(**result)
    if server == "none":
        return result
    chunks = result["chunks"] = result["prefill"]["chunks"]
    if server in ("lite", "both"):
        result["lite"] = measure(
            "lite", lite_root, chunks, child_env(), lambda h: keep(**result, lite=h)
        )
    if server in ("standalone", "both"):
        if reason:
            result["standalone"] = {"skipped": reason}
        else:  # the same corpus, and the same cache file
            corpus_root = Path(result["corpus"]["root"])
            _project(server_root, corpus_root, cache=lite_root / Ingest().cache)
            result["standalone"] = standalone(
                work, server_root, chunks, lambda h: keep(**result, standalone=h)
            )
    digests = [result.get(h, {}).get("snapshot", {}).get("sha256") for h in ("lite", "standalone")]
    if all(digests):
        result["snapshots_identical"] = digests[0] == digests[1]
    result["work_bytes"] = _disk_bytes(work)  # scratch space a run of this size needs
    keep(**result)
    return result


def _disk_bytes(folder: Path) -> int:
    """Bytes of the files under `folder` (symlinks not followed)."""
    return sum(
        os.lstat(os.path.join(top, name)).st_size
        for top, _, files in os.walk(folder)
        for name in files
    )


@contextlib.contextmanager
def _work_dir(keep: str | None) -> Iterator[Path]:
    """--work DIR (kept afterwards; it must be empty), else a temporary directory."""
    if keep is None:
        with tempfile.TemporaryDirectory(prefix="corpusflow-million-") as tmp:
            yield Path(tmp)
        return
    path = Path(keep)
    if path.exists() and any(path.iterdir()) and not (path / PREPARED).exists():
        print(f"--work {path}: not empty and not prepared; give a new directory", file=sys.stderr)
        raise SystemExit(2)
    path.mkdir(parents=True, exist_ok=True)
    yield path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=1_000_000)
    parser.add_argument(
        "--server", choices=("lite", "standalone", "both", "none"), default="both",
        help="none: only prepare --work (corpus, cache) for a later measured run",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", default="benchmarks/results/million.json")
    parser.add_argument("--work", default=None, help="work here and keep it (default: a temp dir)")
    args = parser.parse_args(argv)
    offline_environ()
    partial, keep = partial_keeper(args.out)

    with _work_dir(args.work) as work:
        started = time.perf_counter()
        result = run(work, args.chunks, args.server, args.seed, keep)
        result["wall_s"] = round(time.perf_counter() - started, 1)
    partial.unlink(missing_ok=True)
    write_result(args.out, result, sort_keys=True)
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
