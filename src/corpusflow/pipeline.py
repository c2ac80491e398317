"""The public pipeline API: one entry point per step, and the types they return.

CLI commands, Prefect flows and DVC stages call these; no step logic lives elsewhere.
Data flows one way: sources -> documents -> chunks -> embeddings -> Milvus -> snapshot.
The step modules behind them: sources/ (extract), screening.py, ingestion.py (the run's
stages) and runner.py (how batches move through them), embedding/, store.py, snapshot.py,
versioning/. See docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, get_args

from corpusflow.context import Context, new_run_id
from corpusflow.embedding.cached import EMBED_BATCH, EmbedCounts, EmbedFn, Progress
from corpusflow.ingestion import BatchPlan, Ingestion
from corpusflow.models import IngestResult, PipelineError, Reject, SourceItem, SourceType
from corpusflow.screening import RejectLog, Screener, duplicates_path
from corpusflow.sources.extract import extract
from corpusflow.state import MODEL, StateTable
from corpusflow.store import SCALAR_FIELDS, StoreError

SOURCE_TYPES = get_args(SourceType)
SNAPSHOT_FIELDS = [f for f in SCALAR_FIELDS if f != "run_id"]  # run ids are provenance, not data
SEARCH_FIELDS = [f for f in SCALAR_FIELDS if f not in ("run_id", "doc_hash", "chunker")]


def ingest(
    ctx: Context,
    items: Iterable[SourceItem] | None = None,
    *,
    sources: tuple[Sequence[str], Sequence[str], Sequence[str]] = ((), (), ()),
    track: Callable[[Iterable[SourceItem]], Iterable[SourceItem]] | None = None,
    cleanup: str | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
    on_reject: Callable[[Reject], None] | None = None,
    run_id: str | None = None,
) -> IngestResult:
    """Bring the collection in line with `items` (or with `sources`: transcripts, articles,
    youtube, read so that unchanged files are not parsed), touching only what changed.
    `track` wraps the item stream (the CLI's progress bar).

    A source whose every record carries the same content hash, chunker hash and chunk
    count is skipped without chunking or embedding; a changed one is re-chunked, only
    texts the cache lacks are embedded, and its stale chunks go after the upsert.
    """
    run = Ingestion(
        ctx, cleanup=cleanup, dry_run=dry_run, progress=progress, on_reject=on_reject, run_id=run_id
    )
    items = run.extract(*sources) if items is None else items
    return run.run(track(items) if track is not None else items)


# ----------------------------------------------------------------------------------------
# snapshot, search, stats
# ----------------------------------------------------------------------------------------
def _require_collection(ctx: Context) -> str:
    physical = ctx.store.alias_target()
    if physical is None:
        raise PipelineError(
            f"collection {ctx.params.milvus.collection!r} does not exist yet: "
            "run `corpusflow ingest` first"
        )
    ctx.store.load(physical)
    return physical


def snapshot(ctx: Context, out: str | None = None, run_id: str | None = None):
    """Write every record (no vectors) plus the named queries as canonical JSON."""
    from corpusflow.snapshot import by_id, round_score, write_snapshot

    physical = _require_collection(ctx)
    snap = ctx.params.snapshot
    # read lazily: the writer sorts externally, so memory does not grow with the collection
    records = ctx.store.iter_rows(physical, SNAPSHOT_FIELDS) if snap.include_all else iter(())
    queries: dict[str, Any] = {}
    for q in snap.queries:
        if q.query:
            vector = ctx.embed_texts([q.query], EmbedCounts())[0]  # cached: no model load
            hits = ctx.store.search(physical, vector, q.top_k, SNAPSHOT_FIELDS, q.filter or "")
            queries[q.name] = [dict(h.record, score=round_score(h.score)) for h in hits]
        else:
            queries[q.name] = by_id(ctx.store.iter_rows(physical, SNAPSHOT_FIELDS, q.filter or ""))
    header = {"collection": ctx.params.milvus.collection, "physical_collection": physical}
    manifest = {
        "created_at": datetime.now(UTC).isoformat(),
        "run_id": run_id or new_run_id(),
        "collection": ctx.params.milvus.collection,
        "physical_collection": physical,
        "params_hash": ctx.params.digest(),
    }
    return write_snapshot(out or snap.out, header, records, queries, manifest)


def version(ctx: Context, snap: Any, result: IngestResult | None = None) -> dict[str, Any]:
    """Version a written snapshot (versioning.step: the one step the CLI, the Prefect flow
    and the DVC snapshot stage share): its DVC address, one ledger version and one Comet
    artifact version per distinct sha256. Failures are reported in the result, not raised:
    the data is already loaded and the snapshot written; `corpusflow comet sync` catches up.
    """
    from corpusflow.versioning.step import version_snapshot

    return version_snapshot(ctx.params, snap.path, result=result)


def deep_link(url: str, seconds: float | None) -> str:
    """A URL that opens the video at the chunk's moment (`&t=123s` for YouTube)."""
    if not url or seconds is None:
        return url
    t = int(seconds)
    if "youtube.com/watch" in url or "youtu.be/" in url:
        return f"{url}{'&' if '?' in url else '?'}t={t}s"
    return f"{url}#t={t}"


def search(ctx: Context, query: str, k: int = 5, filter: str = "") -> list[dict[str, Any]]:
    """Semantic search through the alias; transcript hits deep-link to their moment."""
    physical = _require_collection(ctx)
    vector = ctx.embedder.embed([query])[0]
    hits = ctx.store.search(physical, vector, k, SEARCH_FIELDS, filter)
    out = []
    for h in hits:
        rec = dict(h.record)
        rec["url"] = deep_link(rec.get("url", ""), rec.get("start_seconds"))
        out.append({"score": round(h.score, 6), **rec})
    return out


def stats(ctx: Context) -> dict[str, Any]:
    """What the collection holds: documents and chunks by source type, and which model built
    it; no row is read. The local state answers when it provably matches Milvus (markers and
    exact row count: no collection load); otherwise Milvus counts (a document is its chunk 0)."""
    from corpusflow.store import literal

    physical = ctx.store.alias_target()
    if physical is None:
        return {"collection": ctx.params.milvus.collection, "exists": False, "records": 0}
    store = ctx.store
    table = StateTable(ctx.params.ingest.state, store, physical, writable=False)
    try:
        by_type = table.by_type() if table.matches() else None
    finally:
        table.close()
    if by_type is None:
        by_type = {}
        for source_type in SOURCE_TYPES:
            of_type = f"source_type == {literal(source_type)}"
            chunks = store.count(physical, of_type)
            if chunks:
                documents = store.count(physical, f"{of_type} and chunk_index == 0")
                by_type[source_type] = {"documents": documents, "chunks": chunks}
    records = sum(t["chunks"] for t in by_type.values())
    models = store.properties(physical).get(MODEL)
    if models is None and records:  # a collection no run of this version wrote
        models = store.first(physical, ["model"])["model"]
    return {
        "collection": ctx.params.milvus.collection,
        "exists": True,
        "physical_collection": physical,
        "records": records,
        "sources": sum(t["documents"] for t in by_type.values()),
        "by_source_type": by_type,
        "models": [models] if models else [],
    }


__all__ = [
    "EMBED_BATCH",
    "SEARCH_FIELDS",
    "SNAPSHOT_FIELDS",
    "SOURCE_TYPES",
    "BatchPlan",
    "Context",
    "EmbedCounts",
    "EmbedFn",
    "IngestResult",
    "Ingestion",
    "PipelineError",
    "Progress",
    "RejectLog",
    "Screener",
    "StoreError",
    "deep_link",
    "duplicates_path",
    "extract",
    "ingest",
    "new_run_id",
    "search",
    "snapshot",
    "stats",
    "version",
]
