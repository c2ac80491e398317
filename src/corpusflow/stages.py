"""The DVC stages' work (`corpusflow stage ...`, commands in corpusflow.cli.stage).

Each stage drives the same pipeline objects a CLI ingest or a Prefect flow drives
(pipeline.extract, Ingestion.screen, Chunker/chunker_spec, embed_texts, Ingestion,
pipeline.snapshot); this module only reads and writes the files between them. Files that
other stages depend on are deterministic (canonical JSON, no times, no run ids), so a stage
that reruns on unchanged input changes nothing downstream; durations go only into
data/work/runs/, never into the metrics under metrics/pipeline/. See docs/dvc.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from corpusflow.files import write_json, write_lines

if TYPE_CHECKING:
    from corpusflow.config import Params
    from corpusflow.models import Document, Reject, Skipped
    from corpusflow.pipeline import Context

WORK = Path("data/work")
DOCUMENTS = WORK / "documents.jsonl"
REJECTS = WORK / "rejects.json"  # JSON, not JSONL: DVC warns about empty outputs
CHUNKS = WORK / "chunks.jsonl"
EMBEDDINGS = WORK / "embeddings.json"
LOADED = WORK / "load.json"
METRICS = Path("metrics/pipeline")  # counts that describe the data: DVC metrics
PLOTS = Path("metrics/plots")  # the same counts as rows, for `dvc plots`
RUNS = WORK / "runs"  # what describes one run (seconds, embedded, cache hits): not metrics
EMBED_SLICE = 2048  # texts handed to Context.embed_texts at once: bounds the vectors held in memory


# ----------------------------------------------------------------------------------------
# files between stages: canonical JSON, written atomically
# ----------------------------------------------------------------------------------------
def _canonical(value: Any) -> str:
    from corpusflow.ids import canonical_json

    return canonical_json(value)


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as src:
        for line in src:
            if line.strip():
                yield json.loads(line)


def document_line(doc: Document) -> str:
    return _canonical({**asdict(doc), "content_hash": doc.content_hash}) + "\n"


def read_documents(path: Path = DOCUMENTS) -> Iterator[Document]:
    """Documents back from documents.jsonl, each checked against its recorded hash."""
    from corpusflow.models import Document, Segment
    from corpusflow.pipeline import PipelineError

    for row in _read_jsonl(path):
        recorded = row.pop("content_hash")
        segments = tuple(Segment(*s) for s in row.pop("segments"))
        doc = Document(**row, segments=segments)
        if doc.content_hash != recorded:
            raise PipelineError(
                f"{path}: {doc.source_id} does not match its recorded hash; "
                "the file was edited or written by another version (run `dvc repro -f`)"
            )
        yield doc


def write_side_items(path: Path, items: list[Reject | Skipped]) -> None:
    """Rejects and skipped duplicates, in stream order, tagged with their kind."""
    from corpusflow.models import Reject

    rows = [{"kind": "reject" if isinstance(i, Reject) else "skipped", **asdict(i)} for i in items]
    write_json(path, {"count": len(rows), "items": rows})


def read_side_items(path: Path = REJECTS) -> Iterator[Reject | Skipped]:
    """Rejects and skipped duplicates recorded by extract, to be replayed through screen."""
    from corpusflow.models import Reject, Skipped

    for row in json.loads(path.read_text(encoding="utf-8"))["items"]:
        kind = row.pop("kind")
        yield Reject(**row) if kind == "reject" else Skipped(**row)


# ----------------------------------------------------------------------------------------
# the stage functions (the CLI commands, cli/stage.py, only add timing, metrics and lines)
# ----------------------------------------------------------------------------------------
def _screening(params: Params, on_reject: Callable[[Reject], None]):
    """pipeline.Screener without a Milvus connection: extract must not need the store."""
    from corpusflow.pipeline import IngestResult, RejectLog, Screener

    result = IngestResult(
        run_id="extract",
        collection=params.milvus.collection,
        physical_collection="",
        model=params.embedding.model,
        cleanup=params.ingest.cleanup,
        rejects_file=str(REJECTS),
    )
    return Screener(result, RejectLog(str(REJECTS), "extract", enabled=False), on_reject)


def _by_type(by_type: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """Per-source-type counts that describe the data, not this run ("unchanged" varies)."""
    keep = ("inputs", "documents", "duplicates", "rejected", "skipped")
    return {t: {k: c.get(k, 0) for k in keep} for t, c in sorted(by_type.items())}


def reason_kind(reason: str) -> str:
    """A reject reason without its particulars (paths, ids, numbers): one bar per kind."""
    import re

    head = re.split(r"[:(]", reason, maxsplit=1)[0].strip()
    return re.sub(r"\S*[/\d]\S*", "…", head) or "other"


def extract_stage(
    params: Params, documents: Path = DOCUMENTS, rejects: Path = REJECTS
) -> dict[str, Any]:
    """Sources named in params -> unique, valid Documents (documents.jsonl) plus every
    Reject and skipped duplicate (rejects.json), screened exactly as an ingest would."""
    from corpusflow import pipeline
    from corpusflow.models import Reject, Skipped

    side: list[Reject | Skipped] = []

    def on_reject(item: Reject) -> None:
        side.append(item)
        typer.echo(item.line(), err=True)

    def tap(items: Iterable[Any]) -> Iterator[Any]:
        for item in items:
            if isinstance(item, Skipped):
                side.append(item)
            yield item

    src = params.sources
    screen = _screening(params, on_reject)
    items = tap(pipeline.extract(params, src.transcripts, src.articles, src.youtube))
    per_type: dict[str, int] = {}

    def lines() -> Iterator[str]:
        for doc in screen.screen(items):
            per_type[doc.source_type] = per_type.get(doc.source_type, 0) + 1
            yield document_line(doc)

    n = write_lines(documents, lines())
    write_side_items(rejects, side)
    r = screen.result
    for source_type, count in per_type.items():
        r.count(source_type, "documents", count)
    reasons: dict[str, int] = {}
    for item in side:
        if isinstance(item, Reject):
            reasons[reason_kind(item.reason)] = reasons.get(reason_kind(item.reason), 0) + 1
    return {
        "documents": n,
        "rejected": r.rejected,
        "duplicates": r.duplicates,
        "by_type": _by_type(r.by_type),
        "by_reason": dict(sorted(reasons.items())),
    }


def chunk_stage(ctx: Context, documents: Path = DOCUMENTS, chunks: Path = CHUNKS) -> dict[str, Any]:
    """Documents -> chunks.jsonl with the chunker an ingest uses (same spec, same ids)."""
    from corpusflow.chunking import Chunker

    spec = ctx.chunker_spec()
    chunker = Chunker.for_embedder(spec, ctx.embedder)
    by_type: dict[str, dict[str, int]] = {}
    empty = 0

    def lines() -> Iterator[str]:
        nonlocal empty
        for doc in read_documents(documents):
            pieces = chunker.split(doc)
            bucket = by_type.setdefault(doc.source_type, {"documents": 0, "chunks": 0})
            bucket["documents"] += 1
            bucket["chunks"] += len(pieces)
            empty += not pieces
            for chunk in pieces:
                extra = {
                    "source_type": doc.source_type,
                    "doc_hash": doc.content_hash,
                    "n_chunks": len(pieces),
                    "chunker": spec.digest,
                }
                yield _canonical({**asdict(chunk), **extra}) + "\n"

    n = write_lines(chunks, lines())
    return {
        "chunks": n,
        "documents": sum(b["documents"] for b in by_type.values()),
        "empty_documents": empty,
        "chunk_size": spec.chunk_size,
        "chunk_overlap": spec.chunk_overlap,
        "by_type": dict(sorted(by_type.items())),
    }


def _hashes_digest(hashes: Iterable[str]) -> str:
    from corpusflow.ids import sha256_text

    return sha256_text("".join(h + "\n" for h in sorted(set(hashes))))


def embed_stage(ctx: Context, chunks: Path = CHUNKS, out: Path = EMBEDDINGS) -> dict[str, Any]:
    """Every chunk text into the persistent embedding cache (Context.embed_texts: cached
    texts are not embedded again); embeddings.json says which model and which texts."""
    from corpusflow.pipeline import EmbedCounts

    texts = [row["text"] for row in _read_jsonl(chunks)]
    hashes = [row["text_hash"] for row in _read_jsonl(chunks)]
    counts = EmbedCounts()
    for i in range(0, len(texts), EMBED_SLICE):
        ctx.embed_texts(texts[i : i + EMBED_SLICE], counts)
    write_json(
        out,
        {
            "model": ctx.cache_model_key,
            "texts": len(texts),
            "unique_texts": len(set(hashes)),
            "text_hashes_sha256": _hashes_digest(hashes),
        },
    )
    return {
        "texts": len(texts),
        "unique_texts": len(set(hashes)),
        "embedded": counts.embedded,
        "cache_hits": counts.cache_hits,
    }


def collection_fingerprint(ctx: Context, physical: str) -> dict[str, Any]:
    """What the collection holds, as ids and document hashes: equal state, equal digest.

    run ids, vectors and times are left out on purpose (they differ between equal builds).
    """
    from corpusflow.ids import sha256_text

    rows = sorted(
        (r["id"], r["doc_hash"], r["source_id"])
        for r in ctx.store.iter_rows(physical, ["id", "doc_hash", "source_id"])
    )
    return {
        "records": len(rows),
        "sources": len({sid for _, _, sid in rows}),
        "fingerprint": sha256_text("".join(f"{i} {h}\n" for i, h, _ in rows)),
        "ids": {i for i, _, _ in rows},
    }


def load_stage(
    ctx: Context,
    documents: Path = DOCUMENTS,
    rejects: Path = REJECTS,
    chunks: Path = CHUNKS,
    out: Path = LOADED,
    cleanup: str = "full",
) -> tuple[dict[str, Any], Any]:
    """Sync Milvus with the documents: an idempotent Ingestion (unchanged sources cost a
    state lookup, vectors come from the cache), then record the collection's fingerprint.

    `full` cleanup by default, so the collection is a function of data/raw and params (a
    source removed from data/raw leaves Milvus too, as a fresh rebuild would have it).
    Returns (load.json content, the IngestResult).
    """
    from itertools import chain

    from corpusflow.pipeline import Ingestion, PipelineError

    run = Ingestion(ctx, cleanup=cleanup)
    run.screener.rejects.enabled = False  # extract recorded them in data/work/rejects.json
    result = run.run(chain(read_side_items(rejects), read_documents(documents)))
    state = collection_fingerprint(ctx, run.target)
    expected = {row["id"] for row in _read_jsonl(chunks)}
    missing = expected - state["ids"]
    if missing:
        raise PipelineError(
            f"{len(missing)} chunks of {chunks} are not in {run.target} after the load: "
            "the chunk stage and the load disagree (run `dvc repro -f`)"
        )
    if ctx.store.alias_target() != run.target:
        raise PipelineError(f"alias {ctx.params.milvus.collection} does not point at {run.target}")
    info = {
        "collection": ctx.params.milvus.collection,
        "physical_collection": run.target,
        "model": ctx.cache_model_key,
        "chunker": run.spec.digest,
        "records": state["records"],
        "sources": state["sources"],
        # records of sources rejected this run are kept (never deleted for a bad input)
        "kept_from_rejected_sources": len(state["ids"] - expected),
        "fingerprint": state["fingerprint"],
    }
    write_json(out, info)
    return info, result


def snapshot_stage(ctx: Context, out: str | None = None) -> dict[str, Any]:
    """pipeline.snapshot (query vectors come from the cache): canonical, deterministic bytes;
    then pipeline.version, the versioning step every snapshot ends with (producer: this DVC
    stage, and the experiment under `dvc exp run`)."""
    from corpusflow import pipeline
    from corpusflow.snapshot import read_head

    res = pipeline.snapshot(ctx, out)
    snap = read_head(res.path)
    return {
        "records": res.records,
        "kilobytes": round(Path(res.path).stat().st_size / 1024, 1),
        "queries": {name: len(hits) for name, hits in sorted(snap["queries"].items())},
        "sha256": res.sha256,
        "path": res.path,
        "versions": pipeline.version(ctx, res),
    }
