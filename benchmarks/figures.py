"""The seven figures of `make bench`, each a ratio of two measurements taken in the same run.

Every function returns a `Figure` whose value is computed from what it just measured; the
notes for a missed goal are written from the same measurements (stage breakdowns).
"""

from __future__ import annotations

import functools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import (
    BIN,
    REPO,
    Stages,
    Timer,
    child_env,
    close_context,
    make_context,
    now,
    r3,
    rate,
    release_milvus_lite,
    stage_timing,
    timed_iter,
)
from benchmarks.corpus import Corpus, documents_for_chunks, generate, pick_edits
from benchmarks.fake_embedder import HASH_MODEL_ID, HashEmbedder

HASH_NOTE = f"hash embedder ({HASH_MODEL_ID}, MiniLM's tokenizer): the model is not the point"
MINILM = "MiniLM (sentence-transformers/all-MiniLM-L6-v2, CPU)"
FIG1_GROUPS = 4


@dataclass(frozen=True)
class Sizes:
    """How big each measurement is; `QUICK` is a smoke test, not a result."""

    minilm_chunks: int = 300  # figure 1 (real model: ~18-20 chunks/s on 2 cores)
    load_chunks: int = 3000  # figures 2, 5, 7
    openai_chunks: int = 1500  # figure 3, corpusflow's side
    book_chunks: int = 150  # figure 3, the book's side (~57 ms a chunk)
    noop_chunks: int = 1000  # figure 4
    memory_chunks: int = 600  # figure 6 at 1x (10x is ten times this)
    latency: float = 0.05  # figure 3: seconds the server adds to every request
    cli_runs: int = 3  # figure 4: fresh processes, the median counts


QUICK = Sizes(
    minilm_chunks=40,
    load_chunks=400,
    openai_chunks=300,
    book_chunks=20,
    noop_chunks=300,
    memory_chunks=100,
    cli_runs=1,
)


@dataclass
class Figure:
    """One line of the table."""

    id: int
    name: str
    value: float | None
    unit: str
    goal: str  # e.g. ">= 0.9"
    embedder: str
    measurements: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    extra_ok: bool = True  # other conditions of the goal (e.g. embeds == 0)

    @property
    def met(self) -> bool | None:
        """Whether the value meets the goal (and the other conditions); None if unmeasured."""
        if self.value is None:
            return None
        op, target = self.goal.split()[:2]
        bound = float(target)
        ok = self.value >= bound if op == ">=" else self.value <= bound
        return ok and self.extra_ok

    def to_dict(self) -> dict[str, Any]:
        """The figure as JSON-ready data, `met` included."""
        out = asdict(self)
        out["met"] = self.met
        return out


@dataclass
class Bench:
    """The scratch directory, the sizes, and what later figures reuse from earlier ones."""

    work: Path
    sizes: Sizes
    minilm_rate: float | None = None  # raw MiniLM chunks/s, from figure 1
    load: dict[str, Any] = field(default_factory=dict)  # the figure-2 corpus and its run
    log: Callable[[str], None] = print


def timed_ingest(ctx: Any, items: Iterable[Any], embedder: Any = None) -> tuple[Any, float, Stages]:
    """`pipeline.ingest(ctx, items)` on the clock, with a per-stage breakdown."""
    from corpusflow.pipeline import ingest

    stages = Stages()
    with stage_timing(stages, embedder):
        started = now()
        result = ingest(ctx, timed_iter(items, stages))
        seconds = now() - started
    return result, seconds, stages


def _extract(ctx: Any, corpus: Corpus) -> Iterable[Any]:
    from corpusflow.pipeline import extract

    transcripts, articles = corpus.inputs()
    return extract(ctx.params, transcripts, articles)


def _documents(ctx: Any, corpus: Corpus) -> list[Any]:
    from corpusflow.models import Document

    return [d for d in _extract(ctx, corpus) if isinstance(d, Document)]


def _share(stages: dict[str, float], total: float, *names: str) -> str:
    parts = [f"{n} {stages.get(n, 0.0):.2f} s ({stages.get(n, 0.0) / total:.0%})" for n in names]
    return ", ".join(parts)


# ----------------------------------------------------------------------------------------
# 1. pipeline efficiency with the real model
# ----------------------------------------------------------------------------------------
def figure1(b: Bench) -> Figure:
    """Four sub-corpora, measured raw/pipeline in ABBA order so drift hits both sides alike."""
    from corpusflow.chunking import Chunker
    from corpusflow.config import Embedding
    from corpusflow.embedding.local import LocalEmbedder

    model = LocalEmbedder(Embedding())
    per_group = documents_for_chunks(b.sizes.minilm_chunks / FIG1_GROUPS)
    corpora = [
        generate(b.work / f"f1-corpus-{g}", per_group, seed=100 + g) for g in range(FIG1_GROUPS)
    ]
    probe = make_context(b.work / "f1-probe", model)
    chunker = Chunker(probe.chunker_spec(), model.count_tokens)
    texts = [
        list(dict.fromkeys(c.text for d in _documents(probe, corpus) for c in chunker.split(d)))
        for corpus in corpora
    ]
    close_context(probe)
    total = sum(len(t) for t in texts)
    b.log(f"  figure 1: {total} chunks in {FIG1_GROUPS} groups, loading MiniLM")
    with Timer() as load:
        model.embed(texts[0][:8])  # load the weights and run a first forward pass
    ctx = make_context(b.work / "f1-run", model)
    raw_s, pipe_s = [0.0] * FIG1_GROUPS, [0.0] * FIG1_GROUPS
    cpu = {"raw": 0.0, "pipe": 0.0}  # process CPU time: what other processes cannot steal
    stages, chunks, embedded, documents = Stages(), 0, 0, 0
    for g, corpus in enumerate(corpora):
        for side in ("raw", "pipe") if g % 2 == 0 else ("pipe", "raw"):
            started_cpu = time.process_time()
            if side == "raw":
                with Timer() as t:
                    model.embed(texts[g])
                raw_s[g] = t.seconds
            else:
                result, pipe_s[g], st = timed_ingest(ctx, _extract(ctx, corpus), model)
                chunks, embedded = chunks + result.chunks, embedded + result.embedded
                documents += result.documents
                for name, sec in st.seconds.items():
                    stages.add(name, sec)
                for name, calls in st.calls.items():
                    stages.calls[name] += calls - 1
            cpu[side] += time.process_time() - started_cpu
    close_context(ctx)
    raw, seconds = sum(raw_s), sum(pipe_s)
    raw_rate, pipe_rate = rate(total, raw), rate(chunks, seconds)
    b.minilm_rate = raw_rate
    breakdown = stages.report(seconds)
    value = pipe_rate / raw_rate
    model_s = breakdown.get("model", 0.0)
    overhead = seconds - model_s
    neutral = raw / (raw + overhead)
    fig = Figure(
        1,
        "Pipeline efficiency: ingest ÷ raw embedder (chunks/s)",
        r3(value),
        "ratio",
        ">= 0.90",
        MINILM,
        {
            "chunks": chunks,
            "embedded": embedded,
            "documents": documents,
            "groups": FIG1_GROUPS,
            "order": "ABBA: raw,ingest / ingest,raw / raw,ingest / ingest,raw",
            "model_load_seconds": r3(load.seconds),
            "raw_embed_seconds_by_group": [r3(x) for x in raw_s],
            "ingest_seconds_by_group": [r3(x) for x in pipe_s],
            "raw_chunks_per_s": r3(raw_rate),
            "ingest_chunks_per_s": r3(pipe_rate),
            "cpu_seconds": {"raw": r3(cpu["raw"]), "ingest": r3(cpu["pipe"])},
            "cpu_ratio": r3(cpu["raw"] / cpu["pipe"]),
            "ingest_stages_seconds": breakdown,
            "model_calls_in_ingest": stages.calls.get("model", 0),
            "corpus": [c.summary() for c in corpora],
        },
        extra_ok=embedded == total,
    )
    fig.note = (
        f"ingest {seconds:.1f} s, of which model calls {model_s:.1f} s (raw embedder: "
        f"{raw:.1f} s for the same texts); the rest "
        + _share(breakdown, seconds, "chunk", "milvus create/load", "extract", "milvus upsert")
        + ". Model load excluded from both sides. In process CPU time, which other "
        f"processes cannot steal, the ratio is {cpu['raw'] / cpu['pipe']:.2f}."
    )
    spread = [x / y for x, y in zip(raw_s, pipe_s, strict=True)]
    noisy = max(spread) - min(spread) > 0.2
    fig.measurements["raw_over_ingest_by_group"] = [r3(x) for x in spread]
    fig.measurements["model_neutral_ratio"] = r3(neutral)
    fig.note += (
        f" With the model as fast inside as alone (the pipeline's own {overhead:.1f} s on top "
        f"of the raw {raw:.1f} s) the ratio is {neutral:.2f}."
    )
    if noisy:
        fig.note += (
            f" Wall times were noisy (raw/ingest per group {min(spread):.2f}-"
            f"{max(spread):.2f}; 1-minute load average {os.getloadavg()[0]:.1f} on "
            f"{os.cpu_count()} CPUs, shared with other work)."
        )
    if not fig.met and noisy and neutral >= 0.9:
        fig.note += (
            " Missed in wall time only, by less than the machine's noise: the pipeline's "
            "own work is within the goal (model-neutral and CPU-time ratios above). "
            "Memoising token counting (figure 2) would widen the margin."
        )
    elif not fig.met:
        slower = model_s - raw
        fig.note += (
            f" Missed: the model ran {slower:+.1f} s slower inside the pipeline than alone "
            f"({stages.calls.get('model', 0)} calls of <= 64 texts, interleaved with other "
            f"work; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs: other "
            "processes share them), and parsing + chunking run serially with it. Closing "
            "it: memoise token counting (figure 2), and overlap parse/chunk/upsert with the "
            "model calls (torch releases the GIL)."
        )
    return fig


# ----------------------------------------------------------------------------------------
# 2. load path: rebuild from the embedding cache vs a bare upsert loop
# ----------------------------------------------------------------------------------------
BATCH_SIZES = (100, 250, 500, 1000, 2000)


def _capture_upserts(ctx: Any) -> list[dict[str, Any]]:
    """Record every row the run upserts (to replay them in the bare loop)."""
    rows: list[dict[str, Any]] = []
    store = ctx.store
    original = store.upsert

    def upsert(name: str, batch: Sequence[dict[str, Any]], batch_size: int = 500) -> int:
        rows.extend(batch)
        return original(name, batch, batch_size)

    store.upsert = upsert
    return rows


def bare_upsert(db: Path, rows: list[dict[str, Any]], dimension: int) -> dict[int, float]:
    """Seconds to upsert `rows` with a bare `client.upsert` loop, per batch size.

    Each size gets a fresh collection with corpusflow's schema and index (created off the
    clock); only the loop is timed.
    """
    from corpusflow.store import MilvusStore

    store = MilvusStore(str(db), "bare")
    out: dict[int, float] = {}
    try:
        for size in BATCH_SIZES:
            name = f"bare_{size}"
            store.ensure_collection(name, dimension)
            client = store.client
            started = now()
            for i in range(0, len(rows), size):
                client.upsert(name, rows[i : i + size])
            out[size] = now() - started
            stored = store.count(name)
            if stored != len(rows):
                raise RuntimeError(f"bare upsert stored {stored} of {len(rows)} rows")
    finally:
        store.close()
        release_milvus_lite(str(db))
    return out


def chunk_compare(
    docs: Sequence[Any], spec: Any, count: Callable[[str], int], rounds: int = 2
) -> tuple[float, float, bool]:
    """Seconds to chunk `docs` with `count` as is and memoised (best of `rounds`, alternated),
    and whether both give the same chunk ids."""
    from corpusflow.chunking import Chunker

    plain_s, memo_s = float("inf"), float("inf")
    ids: dict[str, list[str]] = {}
    for _ in range(rounds):
        for label in ("plain", "memo"):
            fn = count if label == "plain" else functools.lru_cache(maxsize=1 << 16)(count)
            chunker = Chunker(spec, fn)
            started = now()
            ids[label] = [c.id for d in docs for c in chunker.split(d)]
            took = now() - started
            if label == "plain":
                plain_s = min(plain_s, took)
            else:
                memo_s = min(memo_s, took)
    return plain_s, memo_s, ids["plain"] == ids["memo"]


def prepare_load_corpus(b: Bench) -> None:
    """The corpus of figures 2, 5 and 7 and its first full ingest (the full-run time of 5)."""
    if b.load:
        return
    docs = documents_for_chunks(b.sizes.load_chunks)
    corpus = generate(b.work / "load-corpus", docs, seed=2)
    embedder = HashEmbedder()
    ctx = make_context(b.work / "load-a", embedder)
    captured = _capture_upserts(ctx)
    result, seconds, stages = timed_ingest(ctx, _extract(ctx, corpus), embedder)
    close_context(ctx)
    b.load = {
        "corpus": corpus,
        "root": b.work / "load-a",
        "rows": captured,
        "full_result": result,
        "full_seconds": seconds,
        "full_stages": stages.report(seconds),
        "full_model_seconds": stages.seconds.get("model", 0.0),
    }
    b.log(f"  load corpus: {result.chunks} chunks ingested in {seconds:.1f} s")


def figure2(b: Bench) -> Figure:
    """Rebuild into an empty Milvus Lite from the cache vs a bare upsert loop of its rows."""
    prepare_load_corpus(b)
    corpus, rows = b.load["corpus"], b.load["rows"]
    embedder = HashEmbedder()
    ctx = make_context(
        b.work / "load-b", embedder, ingest={"cache": str(b.load["root"] / "cache.sqlite")}
    )
    result, seconds, stages = timed_ingest(ctx, _extract(ctx, corpus), embedder)
    close_context(ctx)
    bare = bare_upsert(b.work / "load-bare" / "milvus.db", rows, embedder.dimension)
    best_size = min(bare, key=lambda k: bare[k])
    best = bare[best_size]
    pipe_rate, bare_rate = rate(result.upserted, seconds), rate(len(rows), best)
    breakdown = stages.report(seconds)

    # what-if (src unchanged): chunk the same documents with a memoised token counter,
    # alternating with the plain one (best of two each), and check the chunks are identical
    probe = make_context(b.work / "load-probe", embedder)
    docs = _documents(probe, corpus)
    spec = probe.chunker_spec()
    close_context(probe)
    plain_s, memo_s, same = chunk_compare(docs, spec, embedder.count_tokens)
    chunk_in_run = stages.seconds.get("chunk", 0.0)
    state_in_run = stages.seconds.get("milvus state query", 0.0)
    projected = seconds - chunk_in_run * (1 - memo_s / plain_s) - state_in_run
    memo_ratio = rate(result.upserted, projected) / bare_rate
    after = {
        "parsing (extract)": breakdown.get("extract", 0.0),
        "chunking": chunk_in_run * memo_s / plain_s,
        "the upserts": breakdown.get("milvus upsert", 0.0),
    }
    largest = max(after, key=lambda k: after[k])

    value = pipe_rate / bare_rate
    fig = Figure(
        2,
        "Load path: rebuild from cache ÷ bare upsert loop (rows/s)",
        r3(value),
        "ratio",
        ">= 0.80",
        HASH_NOTE,
        {
            "rows": len(rows),
            "rebuild_seconds": r3(seconds),
            "rebuild_rows_per_s": r3(pipe_rate),
            "rebuild_embedded": result.embedded,
            "rebuild_cache_hits": result.cache_hits,
            "rebuild_stages_seconds": breakdown,
            "bare_seconds_by_batch_size": {k: r3(v) for k, v in bare.items()},
            "bare_best_batch_size": best_size,
            "bare_rows_per_s": r3(bare_rate),
            "pipeline_batch_size": 500,
            "whatif_chunking_seconds": {
                "plain": r3(plain_s),
                "memoised_count_tokens": r3(memo_s),
                "identical_chunks": same,
            },
            "projected_with_memo_and_no_state_query_on_new_collection": {
                "rebuild_seconds": r3(projected),
                "ratio": r3(memo_ratio),
            },
            "corpus": corpus.summary(),
        },
        extra_ok=result.embedded == 0,
    )
    upsert_s = breakdown.get("milvus upsert", 0.0)
    fig.note = (
        f"of the {seconds:.1f} s rebuild, Milvus upsert took {upsert_s:.1f} s "
        f"(bare best: {best:.1f} s at batch {best_size}); "
        + _share(breakdown, seconds, "chunk", "extract", "milvus state query", "cache read")
        + "."
    )
    if not fig.met:
        fig.note += (
            " Missed because a rebuild re-parses and re-chunks every document before it "
            "upserts: chunking calls the tokenizer once per word-level split "
            f"(~{stages.seconds.get('chunk', 0) / max(result.chunks, 1) * 1000:.1f} ms a chunk). "
            f"A memoised token counter chunks the same documents {plain_s / memo_s:.1f}x "
            f"faster (identical chunks: {same}); with it and no state queries in a "
            f"collection the run created, the rebuild would take ~{projected:.1f} s, ratio "
            f"{memo_ratio:.2f} (projected from this run's stages); the largest cost is then "
            f"{largest}. Closing it fully "
            "needs the rebuild to skip parse+chunk (cache chunk lists by content hash and "
            "chunker digest) and to overlap what remains with the upserts."
        )
    return fig


# ----------------------------------------------------------------------------------------
# 7. snapshot export vs a bare query_iterator
# ----------------------------------------------------------------------------------------
def figure7(b: Bench) -> Figure:
    """`snapshot()` vs a bare `query_iterator` over the same collection, alternated."""
    import corpusflow.snapshot as snapmod
    from corpusflow.pipeline import SNAPSHOT_FIELDS, snapshot

    prepare_load_corpus(b)
    ctx = make_context(b.load["root"], HashEmbedder())
    physical = ctx.store.alias_target()
    ctx.store.load(physical)
    client = ctx.store.client

    def bare() -> int:
        it = client.query_iterator(
            physical, batch_size=1000, filter="", output_fields=list(SNAPSHOT_FIELDS)
        )
        n = 0
        try:
            while batch := it.next():
                n += len(batch)
        finally:
            it.close()
        return n

    write_seconds: list[float] = []
    original = snapmod.write_snapshot

    def timed_write(*args: Any, **kwargs: Any) -> Any:
        t = now()
        try:
            return original(*args, **kwargs)
        finally:
            write_seconds.append(now() - t)

    bare_times, snap_times, rows, records = [], [], 0, 0
    snapmod.write_snapshot = timed_write
    try:
        for _ in range(3):  # alternate, keep the best of each: drift hits both alike
            with Timer() as t:
                rows = bare()
            bare_times.append(t.seconds)
            with Timer() as t:
                res = snapshot(ctx, out=str(b.work / "snapshot" / "snapshot.json"))
            snap_times.append(t.seconds)
            records = res.records
    finally:
        snapmod.write_snapshot = original
        close_context(ctx)
    bare_best, snap_best = min(bare_times), min(snap_times)
    value = rate(records, snap_best) / rate(rows, bare_best)
    write_best = min(write_seconds) if write_seconds else 0.0
    fig = Figure(
        7,
        "Snapshot export ÷ bare query_iterator (rows/s)",
        r3(value),
        "ratio",
        ">= 0.80",
        HASH_NOTE,
        {
            "rows": rows,
            "records": records,
            "bare_seconds": [r3(x) for x in bare_times],
            "snapshot_seconds": [r3(x) for x in snap_times],
            "bare_rows_per_s": r3(rate(rows, bare_best)),
            "snapshot_rows_per_s": r3(rate(records, snap_best)),
            "snapshot_write_seconds": [r3(x) for x in write_seconds],
        },
        extra_ok=records == rows,
    )
    read_s = snap_best - write_best
    fig.note = (
        f"snapshot {snap_best:.2f} s = reading {read_s:.2f} s + sorting and writing "
        f"canonical JSON {write_best:.2f} s; bare read {bare_best:.2f} s."
    )
    if not fig.met:
        if write_best >= read_s - bare_best:
            fig.note += (
                " Missed on the write side: sorting and canonical JSON (sort_keys per "
                "record) run after the read, serially. Closing it: encode records while "
                "reading (in a second thread) and sort only the ids."
            )
        else:
            fig.note += (
                " Missed on the read side: the store's reader does more than the bare "
                "iterator (alias and load checks, per-row NaN -> None mapping); at this "
                "size fixed costs dominate. Closing it: map rows per batch, not per row."
            )
    return fig


# ----------------------------------------------------------------------------------------
# 5. incremental: 1 % of the documents changed
# ----------------------------------------------------------------------------------------
def extract_profile(corpus: Corpus) -> dict[str, dict[str, float]]:
    """Parsing cost per document by input format (each transcript file parsed on its own)."""
    from corpusflow.config import Params
    from corpusflow.pipeline import extract

    params = Params()
    seconds: dict[str, float] = {}
    counts: dict[str, int] = {}
    for path in corpus.transcript_files:
        kind = "youtube .vtt" if path.name.endswith("].en.vtt") else path.suffix
        started = now()
        n = sum(1 for _ in extract(params, [str(path)]))
        seconds[kind] = seconds.get(kind, 0.0) + now() - started
        counts[kind] = counts.get(kind, 0) + n
    started = now()
    n = sum(1 for _ in extract(params, (), [str(p) for p in corpus.articles]))
    seconds["csv article"], counts["csv article"] = now() - started, n
    return {
        kind: {
            "documents": counts[kind],
            "ms_per_document": r3(seconds[kind] * 1000 / counts[kind]),
        }
        for kind in sorted(seconds)
        if counts[kind]
    }


def figure5(b: Bench) -> Figure:
    """Re-run after editing 1 % of the documents vs the first full run."""
    prepare_load_corpus(b)
    corpus: Corpus = b.load["corpus"]
    edits = pick_edits(corpus.documents, 0.01, seed=5)
    generate(corpus.root, corpus.documents, corpus.seed, edits=edits)
    embedder = HashEmbedder()
    ctx = make_context(b.load["root"], embedder)
    result, seconds, stages = timed_ingest(ctx, _extract(ctx, corpus), embedder)
    close_context(ctx)
    full = b.load["full_seconds"]
    changed = result.documents - result.unchanged_documents
    value = seconds / full
    breakdown = stages.report(seconds)
    m: dict[str, Any] = {
        "documents": result.documents,
        "edited_documents": len(edits),
        "changed_documents_seen": changed,
        "embedded": result.embedded,
        "added": result.added,
        "deleted": result.deleted,
        "upserted": result.upserted,
        "incremental_seconds": r3(seconds),
        "incremental_stages_seconds": breakdown,
        "full_seconds": r3(full),
        "full_stages_seconds": b.load["full_stages"],
        "extract_ms_per_document_by_format": extract_profile(corpus),
    }
    if b.minilm_rate:  # the same runs with MiniLM's measured rate in place of the hash model
        full_r = b.load["full_result"]
        proj_full = full - b.load["full_model_seconds"] + full_r.embedded / b.minilm_rate
        proj_inc = seconds - stages.seconds.get("model", 0.0) + result.embedded / b.minilm_rate
        m["projected_with_minilm"] = {
            "minilm_chunks_per_s": r3(b.minilm_rate),
            "full_seconds": r3(proj_full),
            "incremental_seconds": r3(proj_inc),
            "ratio": r3(proj_inc / proj_full),
        }
    fig = Figure(
        5,
        "Incremental: 1% of documents changed ÷ full run (time)",
        r3(value),
        "ratio",
        "<= 0.05",
        HASH_NOTE,
        m,
        extra_ok=changed == len(edits),
    )
    fig.note = (
        f"{changed} of {result.documents} documents changed, {result.embedded} chunks "
        f"embedded; the {seconds:.2f} s went to "
        + _share(breakdown, seconds, "extract", "milvus state query", "chunk", "milvus open")
        + "."
    )
    if "projected_with_minilm" in m:
        projected = m["projected_with_minilm"]["ratio"]
        fig.note += f" With MiniLM's measured rate the ratio would be {projected:.3f}."
    if not fig.met:
        prof = m["extract_ms_per_document_by_format"]
        costs = ", ".join(f"{k} {v['ms_per_document']:.1f}" for k, v in prof.items())
        fig.note += (
            " Missed with the hash embedder: the full run is cheap, while an incremental run "
            "still parses every file and queries the state of every document. Parsing, ms a "
            f"document: {costs}. Closing it: skip unchanged files before parsing (a per-file "
            "fingerprint: path, size, mtime -> content hash and source ids, kept beside the "
            "embedding cache), and a faster WebVTT reader than webvtt-py."
        )
    return fig


# ----------------------------------------------------------------------------------------
# 4. no-op re-run through the CLI
# ----------------------------------------------------------------------------------------
def _params_yaml(root: Path, corpus: Corpus) -> Path:
    import yaml

    transcripts, articles = corpus.inputs()
    params = {
        "sources": {"transcripts": transcripts, "articles": articles},
        "milvus": {"uri": str(root / "milvus.db")},
        "ingest": {"cache": str(root / "cache.sqlite"), "rejects": str(root / "rejects.jsonl")},
        "snapshot": {"out": str(root / "snapshots" / "snapshot.json")},
    }
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return path


NOOP_IMPORTS = (
    "corpusflow.cli",
    "corpusflow.pipeline",
    "corpusflow.store",
    "corpusflow.sources.transcripts",
    "corpusflow.sources.articles",
    "pymilvus",
    "milvus_lite.server_manager",
)


def import_costs(cwd: Path, top: int = 8) -> dict[str, float]:
    """Seconds to import what a no-op ingest imports, by top-level module (-X importtime)."""
    code = "; ".join(f"import {m}" for m in NOOP_IMPORTS)
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        cwd=cwd,
        env=child_env(),
        capture_output=True,
        text=True,
    )
    costs: dict[str, float] = {}
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|", 2)
        if name.startswith(" ") and not name.startswith("  "):  # a top-level import
            try:
                costs[name.strip()] = int(cumulative) / 1e6
            except ValueError:
                continue
    ranked = sorted(costs.items(), key=lambda kv: -kv[1])
    out = {k: r3(v) for k, v in ranked[:top]}
    out["total"] = r3(sum(costs.values()))
    return out


def figure4(b: Bench) -> Figure:
    """A fresh `corpusflow ingest` process on an ingested corpus: wall time, no work."""
    from corpusflow.config import LOCAL_MODEL_ID, Env, load_params
    from corpusflow.pipeline import Context, extract

    corpus = generate(b.work / "f4-corpus", documents_for_chunks(b.sizes.noop_chunks), seed=4)
    root = b.work / "f4"
    # Ingest once under MiniLM's model id (vectors from the hash embedder, chunks identical:
    # same tokenizer) so the CLI's real configuration finds every document current.
    ctx = make_context(root, HashEmbedder(model_id=LOCAL_MODEL_ID))
    first = timed_ingest(ctx, _extract(ctx, corpus))[0]
    close_context(ctx)
    params = _params_yaml(root, corpus)
    cli = [str(BIN / "corpusflow"), "ingest", "--params", str(params), "--json"]
    walls, outputs = [], []
    for _ in range(b.sizes.cli_runs):
        started = now()
        proc = subprocess.run(cli, cwd=root, env=child_env(), capture_output=True, text=True)
        walls.append(now() - started)
        if proc.returncode != 0:
            raise RuntimeError(f"corpusflow ingest failed: {proc.stderr.strip()[-500:]}")
        outputs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    with Timer() as help_t:
        subprocess.run(
            [str(BIN / "corpusflow"), "--help"], cwd=root, env=child_env(), capture_output=True
        )
    imports = import_costs(root)
    # the same no-op in this process: fresh Context on the real config, real LocalEmbedder
    ctx = Context(load_params(params), env=Env())
    src = ctx.params.sources
    with Timer() as inproc:
        again = timed_ingest(ctx, extract(ctx.params, src.transcripts, src.articles))
    embedder = ctx.embedder
    model_loaded = "_model" in vars(embedder)
    close_context(ctx)
    result, _, stages = again
    wall = statistics.median(walls)
    last = outputs[-1]
    no_work = all(o["embedded"] == 0 and o["upserted"] == 0 for o in outputs)
    breakdown = stages.report(inproc.seconds)
    fig = Figure(
        4,
        "No-op re-run, fresh `corpusflow ingest` process (s)",
        r3(wall),
        "s",
        "<= 3.0",
        "MiniLM config (model never loaded on a no-op)",
        {
            "chunks": first.chunks,
            "documents": first.documents,
            "cli_wall_seconds": [r3(x) for x in walls],
            "cli_reported_seconds": [o["seconds"] for o in outputs],
            "cli_embedded": last["embedded"],
            "cli_upserted": last["upserted"],
            "cli_skipped": last["skipped"],
            "cli_help_wall_seconds": r3(help_t.seconds),
            "cli_outside_ingest_seconds": r3(
                wall - statistics.median([o["seconds"] for o in outputs])
            ),
            "import_seconds_by_module": imports,
            "in_process_seconds": r3(inproc.seconds),
            "in_process_stages_seconds": breakdown,
            "in_process_embedded": result.embedded,
            "in_process_upserted": result.upserted,
            "model_loaded": model_loaded,
            "corpus": corpus.summary(),
        },
        extra_ok=no_work and result.embedded == 0 and result.upserted == 0 and not model_loaded,
    )
    reported = statistics.median([o["seconds"] for o in outputs])
    heavy = ", ".join(f"{k} {v:.2f} s" for k, v in list(imports.items())[:4] if k != "total")
    fig.note = (
        f"embeds = {last['embedded']}, upserts = {last['upserted']}, model not loaded. "
        f"CLI {wall:.2f} s = {wall - reported:.2f} s interpreter + CLI start, then "
        f"{reported:.2f} s in ingest (cold: it imports Milvus and the parsers and starts "
        f"Milvus Lite). Importing what a no-op needs costs {imports['total']:.2f} s ({heavy}); "
        f"the same no-op warm in-process {inproc.seconds:.2f} s: "
        + _share(breakdown, inproc.seconds, "extract", "milvus state query")
        + ". Ingested once with the hash embedder under MiniLM's model id (same tokenizer, "
        "so the same chunks)."
    )
    if not fig.met:
        fig.note += (
            " Missed: a no-op pays for imports (pymilvus pulls pandas; chunking imports "
            "langchain at module load though a no-op never chunks) and still parses every "
            "file. Closing it: import langchain_text_splitters inside Chunker, skip "
            "unchanged files by fingerprint before parsing."
        )
    return fig


# ----------------------------------------------------------------------------------------
# 6. memory: 10x the corpus in a fresh process
# ----------------------------------------------------------------------------------------
def _child_peak(
    root: Path, corpus: Corpus, *extra: str, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Ingest `corpus` in a fresh process started by `benchmarks.launcher`; its peak RSS."""
    transcripts, articles = corpus.inputs()
    cmd = [sys.executable, "-m", "benchmarks.launcher"]
    cmd += [sys.executable, "-m", "benchmarks.child", "--root", str(root), *extra]
    for t in transcripts:
        cmd += ["--transcripts", t]
    for a in articles:
        cmd += ["--articles", a]
    proc = subprocess.run(
        cmd, cwd=REPO, env={**child_env(), **(env or {})}, capture_output=True, text=True
    )
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    launcher = next((x["launcher"] for x in lines if "launcher" in x), None)
    report = next((x for x in lines if "launcher" not in x), None)
    if proc.returncode != 0 or launcher is None or report is None:
        raise RuntimeError(f"benchmarks.child failed: {proc.stderr.strip()[-800:]}")
    report["ru_maxrss_kib"] = launcher["maxrss_kib"]
    return report


def figure6(b: Bench) -> Figure:
    """Peak RSS of a process ingesting 10x the corpus vs 1x."""
    docs = documents_for_chunks(b.sizes.memory_chunks)
    small = generate(b.work / "f6-1x", docs, seed=6)
    large = generate(b.work / "f6-10x", docs * 10, seed=6)
    b.log(f"  figure 6: {docs} and {docs * 10} documents, one process each")
    one = _child_peak(b.work / "f6-1x-run", small)
    ten = _child_peak(b.work / "f6-10x-run", large)

    def mib(r: dict[str, Any], key: str = "ru_maxrss_kib") -> float:
        return r[key] / 1024

    def ratio(key: str = "ru_maxrss_kib") -> float:
        return ten[key] / one[key]

    close = "peak_before_close_kib"
    fig = Figure(
        6,
        "Memory: peak RSS at 10x corpus ÷ at 1x",
        r3(ratio()),
        "ratio",
        "<= 1.5",
        HASH_NOTE,
        {
            "runs": {"1x": one, "10x": ten},
            "ratio_peak_before_close": r3(ratio(close)),
            "chunks_ratio": r3(ten["chunks"] / max(one["chunks"], 1)),
        },
    )
    fig.note = (
        f"peak {mib(one):.0f} MiB for {one['chunks']} chunks, {mib(ten):.0f} MiB for "
        f"{ten['chunks']} ({mib(one, 'rss_before_ingest_kib'):.0f} MiB before the ingest "
        f"starts). Until the store is closed the peaks are {mib(one, close):.0f} and "
        f"{mib(ten, close):.0f} MiB (ratio {ratio(close):.2f}); Milvus Lite runs inside the "
        "process and keeps every segment of an open collection in memory (its segment "
        "cache), then flushes and builds its index at close: that share grows with the "
        "collection and moves to the server with a server URI (or `milvus-lite server`)."
    )
    return fig


# ----------------------------------------------------------------------------------------
# 3. corpusflow vs the book's loop, against a server with 50 ms latency per request
# ----------------------------------------------------------------------------------------
class LatencyServer:
    """`benchmarks.latency_server` in a subprocess; context manager yielding its URL."""

    def __init__(self, latency: float, dim: int = 384) -> None:
        self.latency, self.dim = latency, dim
        self.proc: subprocess.Popen[str] | None = None
        self.url = self.impl = self.why = ""

    def __enter__(self) -> LatencyServer:
        cmd = [
            sys.executable, "-m", "benchmarks.latency_server",
            "--latency", str(self.latency), "--dim", str(self.dim),
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, env=child_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError("the latency server did not start")
        info = json.loads(line)
        self.url, self.impl, self.why = info["url"], info["impl"], info.get("why", "")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.stdin.close()  # type: ignore[union-attr]
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                self.proc.wait(10)


def _openai_available() -> str | None:
    """Why figure 3 cannot run, or None."""
    try:
        import corpusflow.embedding.openai  # noqa: F401
    except Exception as exc:  # absent or broken: report, don't crash the other figures
        return f"corpusflow.embedding.openai does not import: {type(exc).__name__}: {exc}"
    return None


# What corpusflow imports on its first ingest, imported before figure 3's clock as the book's
# loop imports openai and pymilvus before its own, and as any figure run earlier in the same
# `make bench` leaves them: both clocks time the loop, not the interpreter's imports.
FIRST_INGEST_IMPORTS = (
    "pymilvus", "milvus_lite", "httpcore2", "corpusflow.splitter",
    "corpusflow.sources.transcripts", "corpusflow.sources.articles",
)  # fmt: skip


def _import_first_ingest() -> float:
    """Seconds to import FIRST_INGEST_IMPORTS (0 when an earlier figure did)."""
    import importlib

    from corpusflow.milvus_uri import lite_defaults

    lite_defaults()  # as the store does, before milvus_lite is first imported
    with Timer() as t:
        for name in FIRST_INGEST_IMPORTS:
            importlib.import_module(name)
    return t.seconds


def figure3(b: Bench) -> Figure:
    """corpusflow vs one request and one insert per chunk, against a +50 ms server."""
    from benchmarks.book import book_loop, response_decode_cost
    from corpusflow.chunking import Chunker

    why = _openai_available()
    if why:
        return Figure(
            3, "corpusflow ÷ book loop, 50 ms server (chunks/s)", None, "x", ">= 50",
            "OpenAI-compatible provider", note=f"not measurable yet: {why}",
        )  # fmt: skip
    s = b.sizes
    corpus = generate(b.work / "f3-corpus", documents_for_chunks(s.openai_chunks), seed=3)
    settings: dict[str, dict[str, Any]] = {
        "embedding": {"provider": "openai", "model": "text-embedding-3-small", "dimensions": 384},
        "chunking": {"mode": "characters"},  # 1000 characters, 50 overlap: the book's splitter
    }
    with LatencyServer(s.latency) as server:
        settings["embedding"]["base_url"] = server.url
        ctx = make_context(b.work / "f3-cf", None, **settings)
        embedder = ctx.embedder
        imports = _import_first_ingest()
        result, seconds, stages = timed_ingest(ctx, _extract(ctx, corpus), embedder)
        requests = getattr(embedder, "requests", None)
        close_context(ctx)

        # the book: the same chunk texts, in corpus order, first `book_chunks` of them
        probe = make_context(b.work / "f3-probe", None, **settings)
        chunker = Chunker(probe.chunker_spec(), len)
        chunks: list[tuple[str, str, str]] = []
        for doc in _documents(probe, corpus):
            chunks.extend((c.id, c.source_id, c.text) for c in chunker.split(doc))
            if len(chunks) >= s.book_chunks:
                break
        close_context(probe)
        book = book_loop(server.url, chunks[: s.book_chunks], b.work / "f3-book" / "milvus.db")
        decode = response_decode_cost(server.url, inputs=min(256, result.chunks))
    cf_rate = rate(result.chunks, seconds)
    book_rate = rate(book["chunks"], book["seconds"])
    breakdown = stages.report(seconds)
    value = cf_rate / book_rate
    d384 = decode["384"]
    saved = (
        result.chunks
        * (d384["float_client_cpu_ms_per_input"] - d384["base64_client_cpu_ms_per_input"])
        / 1000
    )
    fig = Figure(
        3,
        "corpusflow ÷ book loop, 50 ms server (chunks/s)",
        round(value, 1),
        "x",
        ">= 50",
        f"OpenAI-compatible provider -> {server.impl} (+{s.latency * 1000:.0f} ms/request)",
        {
            "server": server.impl,
            "server_note": server.why,
            "latency_seconds": s.latency,
            "corpusflow_chunks": result.chunks,
            "corpusflow_seconds": r3(seconds),
            "corpusflow_chunks_per_s": r3(cf_rate),
            "corpusflow_requests": requests,
            "corpusflow_stages_seconds": breakdown,
            "imports_before_clock_seconds": r3(imports),
            "ratio_with_imports_in_clock": round(
                rate(result.chunks, seconds + imports) / book_rate, 1
            ),
            "book": book,
            "book_chunks_per_s": r3(book_rate),
            "response_decode_cost": decode,
            "projected_base64_client_cpu_saved_seconds": r3(saved),
            "corpus": corpus.summary(),
        },
        extra_ok=result.embedded == result.chunks and book["stored"] == book["chunks"],
    )
    fig.note = (
        f"book: {book['seconds'] / book['chunks'] * 1000:.0f} ms a chunk "
        f"({book['embed_request_seconds'] / book['chunks'] * 1000:.0f} ms request + "
        f"{book['insert_seconds'] / book['chunks'] * 1000:.1f} ms insert), measured on "
        f"{book['chunks']} chunks; corpusflow {result.chunks} chunks in {seconds:.1f} s with "
        f"{requests} request{'s' if requests != 1 else ''}: "
        + _share(breakdown, seconds, "model", "extract", "milvus upsert", "milvus state query")
        + f". Imports before the clock, as the book's: {imports:.2f} s; with them on "
        f"corpusflow's clock the ratio is {fig.measurements['ratio_with_imports_in_clock']}x."
    )
    if not fig.met:
        fig.note += (
            " Missed: with the requests packed, concurrent, in base64 and overlapped with "
            "planning and loading (the pipelined run), the 50 ms no longer matters; what is "
            "left is parsing on the planner thread and opening Milvus Lite, sharing 2 cores "
            "with the stub server and Milvus Lite's in-process server."
        )
    return fig


FIGURES: dict[int, Callable[[Bench], Figure]] = {
    1: figure1,
    2: figure2,
    3: figure3,
    4: figure4,
    5: figure5,
    6: figure6,
    7: figure7,
}
ORDER = (1, 2, 7, 5, 4, 6, 3)  # 5 edits the corpus 7 reads; 2 builds what 5 and 7 use
