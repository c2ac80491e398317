"""The steps as plain functions, and their result counts.

CLI commands, Prefect tasks and DVC stages all call these; no step logic lives elsewhere.
Data flows one way: sources -> documents -> chunks -> embeddings -> Milvus -> snapshot.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

from corpusflow.chunking import Chunker, ChunkerSpec, resolve_spec
from corpusflow.config import Env, Params
from corpusflow.embedding import Embedder, make_embedder
from corpusflow.embedding.cache import EmbeddingCache
from corpusflow.models import Chunk, Document, Reject, Skipped, SourceItem
from corpusflow.store import (
    SCALAR_FIELDS,
    VARCHAR_FIELDS,
    MilvusStore,
    StoreError,
    is_local_uri,
    physical_name,
)

Progress = Callable[[str, int], None]  # (what, how many more) — "documents" or "embedded"
SNAPSHOT_FIELDS = [f for f in SCALAR_FIELDS if f != "run_id"]  # run ids are provenance, not data
SEARCH_FIELDS = [f for f in SCALAR_FIELDS if f not in ("run_id", "doc_hash", "chunker")]
EMBED_BATCH = 64  # texts per model call between cache commits: bounds work lost to a kill


class PipelineError(Exception):
    """A user-facing failure of a step: one clear line, no traceback."""


def new_run_id() -> str:
    """Sortable and unique: UTC time plus random hex (never uuid4: ids stay meaningful)."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


# ----------------------------------------------------------------------------------------
# context: what every step needs, built cheaply (no model load, no heavy import)
# ----------------------------------------------------------------------------------------
@dataclass
class Context:
    params: Params
    env: Env = field(default_factory=Env.from_environ)
    _embedder: Embedder | None = None
    _store: MilvusStore | None = None
    _cache: EmbeddingCache | None = None

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = make_embedder(self.params.embedding, self.env)
        return self._embedder

    @property
    def store(self) -> MilvusStore:
        if self._store is None:
            uri = self.env.milvus_uri or self.params.milvus.uri
            self._store = MilvusStore(
                uri, self.params.milvus.collection, self.env.milvus_token, self.params.milvus.index
            )
        return self._store

    def lite_file_missing(self) -> bool:
        """True when Milvus is a local Milvus Lite file that does not exist (yet)."""
        uri = self.env.milvus_uri or self.params.milvus.uri
        return is_local_uri(uri) and not Path(uri).exists()

    @property
    def cache(self) -> EmbeddingCache:
        if self._cache is None:
            self._cache = EmbeddingCache(self.params.ingest.cache)
        return self._cache

    @property
    def cache_model_key(self) -> str:
        return f"{self.embedder.model_id}@{self.embedder.dimension}"

    @property
    def target(self) -> str:
        """The physical collection for the configured model."""
        emb = self.embedder
        return physical_name(self.params.milvus.collection, emb.model_id, emb.dimension)

    def chunker_spec(self) -> ChunkerSpec:
        emb = self.embedder
        max_tokens = emb.max_tokens if self.params.chunking.mode == "tokens" else None
        return resolve_spec(self.params.chunking, emb.model_id, max_tokens)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._cache is not None:
            self._cache.close()
            self._cache = None


# ----------------------------------------------------------------------------------------
# extract
# ----------------------------------------------------------------------------------------
def extract(
    params: Params,
    transcripts: Sequence[str] = (),
    articles: Sequence[str] = (),
    youtube: Sequence[str] = (),
) -> Iterator[SourceItem]:
    """All sources as one stream of Documents, Rejects and Skipped, in a stable order."""
    from corpusflow.sources.articles import iter_articles
    from corpusflow.sources.transcripts import iter_transcripts

    if transcripts:
        yield from iter_transcripts(transcripts)
    if articles:
        yield from iter_articles(articles, params.sources.columns)
    if youtube:
        from corpusflow.sources.youtube import fetch_youtube

        yield from fetch_youtube(youtube, params.sources.youtube_languages)


# ----------------------------------------------------------------------------------------
# embed (through the cache)
# ----------------------------------------------------------------------------------------
@dataclass
class EmbedCounts:
    embedded: int = 0
    cache_hits: int = 0


EmbedFn = Callable[[list[str]], list[list[float]]]


def embed_texts(
    ctx: Context,
    texts: Sequence[str],
    counts: EmbedCounts,
    progress: Progress | None = None,
    embed_fn: EmbedFn | None = None,
) -> list[list[float]]:
    """Vectors for `texts` in order: cached ones are reused, the rest embedded in batches,
    each batch committed to the cache before the next (a killed run resumes from there).
    `embed_fn` replaces the local call, e.g. to run the model on a Dask cluster."""
    from corpusflow.ids import sha256_text

    key = ctx.cache_model_key
    hashes = [sha256_text(t) for t in texts]
    known = ctx.cache.get_many(key, hashes)
    counts.cache_hits += sum(1 for h in hashes if h in known)
    missing: dict[str, str] = {}
    for h, t in zip(hashes, texts, strict=False):
        if h not in known:
            missing.setdefault(h, t)
    todo = list(missing.items())
    batches = getattr(ctx.embedder, "embed_batches", None)
    if embed_fn is None and batches is not None and todo:
        # A remote embedder packs requests to the API's limits and runs them concurrently;
        # each finished request is committed to the cache as it arrives.
        for indexes, vectors in batches([t for _, t in todo]):
            done = [(todo[i][0], v) for i, v in zip(indexes, vectors, strict=True)]
            ctx.cache.put_many(key, done)
            known.update(done)
            counts.embedded += len(done)
            if progress:
                progress("embedded", len(done))
        todo = []
    for i in range(0, len(todo), EMBED_BATCH):
        part = todo[i : i + EMBED_BATCH]
        vectors = (embed_fn or ctx.embedder.embed)([t for _, t in part])
        ctx.cache.put_many(key, [(h, v) for (h, _), v in zip(part, vectors, strict=False)])
        known.update({h: v for (h, _), v in zip(part, vectors, strict=False)})
        counts.embedded += len(part)
        if progress:
            progress("embedded", len(part))
    return [known[h] for h in hashes]


# ----------------------------------------------------------------------------------------
# ingest = extract -> chunk -> embed -> load (+ stale cleanup), streamed in batches
# ----------------------------------------------------------------------------------------
@dataclass
class IngestResult:
    run_id: str
    collection: str
    physical_collection: str
    model: str
    cleanup: str
    dry_run: bool = False
    documents: int = 0
    unchanged_documents: int = 0
    chunks: int = 0
    embedded: int = 0
    cache_hits: int = 0
    upserted: int = 0
    added: int = 0
    updated: int = 0
    skipped: int = 0
    deleted: int = 0
    migrated: int = 0
    rejected: int = 0
    duplicates: int = 0
    alias_moved: bool = False
    embedding_usage: dict[str, Any] = field(default_factory=dict)
    by_type: dict[str, dict[str, int]] = field(default_factory=dict)
    rejects_file: str = ""
    seconds: float = 0.0

    def count(self, source_type: str, key: str, n: int = 1) -> None:
        bucket = self.by_type.setdefault(
            source_type,
            {"inputs": 0, "documents": 0, "unchanged": 0, "duplicates": 0, "rejected": 0},
        )
        bucket[key] += n

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RejectLog:
    """Appends rejects to data/rejects.jsonl (one JSON object a line, with the run id)."""

    def __init__(self, path: str, run_id: str, enabled: bool = True):
        self.path, self.run_id, self.enabled = Path(path), run_id, enabled
        self.items: list[Reject] = []

    def add(self, reject: Reject) -> None:
        self.items.append(reject)
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        entry = {"run_id": self.run_id, "time": datetime.now(UTC).isoformat(), **asdict(reject)}
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n")


def _batched(items: Iterable[Document], n: int) -> Iterator[list[Document]]:
    it = iter(items)
    while batch := list(islice(it, n)):
        yield batch


def _oversized_field(doc: Document) -> str | None:
    for name in ("source_id", "title", "author", "url", "published"):
        size = len(getattr(doc, name).encode("utf-8"))
        if size > VARCHAR_FIELDS[name]:
            return f"{name} is {size} bytes in UTF-8, over Milvus' limit of {VARCHAR_FIELDS[name]}"
    return None


def _record(
    doc: Document,
    chunk: Chunk,
    n_chunks: int,
    vector: list[float],
    spec: ChunkerSpec,
    model: str,
    run_id: str,
) -> dict[str, Any]:
    return {
        "id": chunk.id,
        "source_id": doc.source_id,
        "source_type": doc.source_type,
        "title": doc.title,
        "author": doc.author,
        "url": doc.url,
        "published": doc.published,
        "text": chunk.text,
        "text_hash": chunk.text_hash,
        "doc_hash": doc.content_hash,
        "chunker": spec.digest,
        "model": model,
        "run_id": run_id,
        "chunk_index": chunk.chunk_index,
        "n_chunks": n_chunks,
        "start_char": chunk.start_char,
        "start_seconds": chunk.start_seconds,
        "end_seconds": chunk.end_seconds,
        "vector": vector,
    }


def _is_current(row: dict[str, Any], doc: Document, spec: ChunkerSpec, n_chunks: int) -> bool:
    return (
        row["doc_hash"] == doc.content_hash
        and row["chunker"] == spec.digest
        and row["n_chunks"] == n_chunks
    )


@dataclass
class BatchPlan:
    """What one batch of documents needs: chunks to (re)write, and stale ids to delete after."""

    writes: list[tuple[Document, Chunk, int]] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)

    @property
    def texts(self) -> list[str]:
        return [chunk.text for _, chunk, _ in self.writes]


class Screener:
    """Turns source items into unique documents: rejects logged, duplicates counted.

    Used by every ingest, and alone by the DVC extract stage (no Milvus needed).
    """

    def __init__(
        self,
        result: IngestResult,
        rejects: RejectLog,
        on_reject: Callable[[Reject], None] | None = None,
    ):
        self.result, self.rejects, self.on_reject = result, rejects, on_reject
        self.seen: dict[str, str] = {}  # source id -> origin, to catch duplicates across inputs
        self.protected: set[str] = set()  # rejected this run: `full` cleanup must keep them

    def reject(self, item: Reject, input_counted: bool = False) -> None:
        self.rejects.add(item)
        self.result.rejected += 1
        if not input_counted:
            self.result.count(item.source_type, "inputs")
        self.result.count(item.source_type, "rejected")
        if item.source_id:
            self.protected.add(item.source_id)
        if self.on_reject:
            self.on_reject(item)

    def _duplicate(self, source_type: str) -> None:
        self.result.duplicates += 1
        self.result.count(source_type, "inputs")
        self.result.count(source_type, "duplicates")

    def screen(self, items: Iterable[SourceItem]) -> Iterator[Document]:
        """Documents to process: rejects logged, duplicates counted, each source id once."""
        hashes: dict[str, str] = {}
        for item in items:
            if isinstance(item, Reject):
                self.reject(item)
            elif isinstance(item, Skipped):
                self._duplicate(item.source_type)
            elif item.source_id in hashes:
                if hashes[item.source_id] == item.content_hash:
                    self._duplicate(item.source_type)
                else:
                    first = self.seen[item.source_id]
                    why = f"duplicate source id {item.source_id} with different content"
                    self.reject(Reject(item.origin, item.source_type, f"{why} (first: {first})"))
            elif reason := _oversized_field(item):
                self.reject(Reject(item.origin, item.source_type, reason, source_id=item.source_id))
            else:
                hashes[item.source_id] = item.content_hash
                self.seen[item.source_id] = item.origin
                self.result.count(item.source_type, "inputs")
                yield item


class Ingestion:
    """One ingest run, in steps a CLI, a Prefect flow or a DVC stage can drive.

    `screen` turns source items into unique documents (rejects and duplicates counted),
    `plan` compares a batch with the stored state, `load` upserts a planned batch and only
    then deletes its stale chunks, `finish` applies `full` cleanup and moves the alias.
    A kill at any point leaves a state the next run completes.
    """

    def __init__(
        self,
        ctx: Context,
        *,
        cleanup: str | None = None,
        dry_run: bool = False,
        progress: Progress | None = None,
        on_reject: Callable[[Reject], None] | None = None,
        run_id: str | None = None,
    ):
        self.ctx, self.dry_run, self.progress = ctx, dry_run, progress
        self.started = time.monotonic()
        params = ctx.params
        self.spec = ctx.chunker_spec()
        self.target = ctx.target
        # a dry run against a Milvus Lite file that does not exist yet must not create it
        untouched = dry_run and ctx.lite_file_missing()
        self.previous = None if untouched else ctx.store.alias_target()
        self.result = IngestResult(
            run_id=run_id or new_run_id(),
            collection=params.milvus.collection,
            physical_collection=self.target,
            model=ctx.embedder.model_id,
            cleanup=cleanup or params.ingest.cleanup,
            dry_run=dry_run,
            rejects_file=params.ingest.rejects,
        )
        self.exists = not untouched and ctx.store.has(self.target)
        # A collection this run created holds nothing but this run's own writes (sources are
        # unique within a run), so its stored state need not be queried per batch.
        self.created = False
        if not dry_run:
            self.created = ctx.store.ensure_collection(self.target, ctx.embedder.dimension)
            self.exists = True
        self.chunker = Chunker(self.spec, ctx.embedder.count_tokens)
        rejects = RejectLog(params.ingest.rejects, self.result.run_id, enabled=not dry_run)
        self.screener = Screener(self.result, rejects, on_reject)
        self.screen, self.reject = self.screener.screen, self.screener.reject
        self.embed_counts = EmbedCounts()

    # --- per batch ---------------------------------------------------------------------
    def plan(self, batch: Sequence[Document]) -> BatchPlan:
        """Compare documents with their stored records; chunk only the ones that changed."""
        r, spec = self.result, self.spec
        state = (
            self.ctx.store.state_of(self.target, [d.source_id for d in batch])
            if self.exists and not self.created
            else {}
        )
        plan = BatchPlan()
        for doc in batch:
            rows = state.get(doc.source_id, [])
            if rows and all(_is_current(row, doc, spec, len(rows)) for row in rows):
                r.documents += 1
                r.unchanged_documents += 1
                r.count(doc.source_type, "documents")
                r.count(doc.source_type, "unchanged")
                r.chunks += len(rows)
                r.skipped += len(rows)
                continue
            chunks = self.chunker.split(doc)
            if not chunks:
                why = "no text left to index"
                self.reject(Reject(doc.origin, doc.source_type, why, source_id=doc.source_id), True)
                continue
            r.documents += 1
            r.count(doc.source_type, "documents")
            r.chunks += len(chunks)
            existing = {row["id"]: row for row in rows}
            for chunk in chunks:
                row = existing.get(chunk.id)
                if row is not None and _is_current(row, doc, spec, len(chunks)):
                    r.skipped += 1
                    continue
                if row is None:
                    r.added += 1
                else:
                    r.updated += 1
                plan.writes.append((doc, chunk, len(chunks)))
            current = {c.id for c in chunks}
            plan.stale.extend(i for i in existing if i not in current)
        if self.progress:
            self.progress("documents", len(batch))
        return plan

    def load(self, plan: BatchPlan, vectors: Sequence[list[float]]) -> None:
        """Upsert the batch, then delete its stale chunks (never before)."""
        if self.dry_run:
            self.result.deleted += len(plan.stale)
            return
        ctx, model, run_id = self.ctx, self.ctx.embedder.model_id, self.result.run_id
        rows = [
            _record(doc, chunk, n, vec, self.spec, model, run_id)
            for (doc, chunk, n), vec in zip(plan.writes, vectors, strict=True)
        ]
        self.result.upserted += ctx.store.upsert(self.target, rows, ctx.params.milvus.batch_size)
        self.result.deleted += ctx.store.delete_ids(self.target, plan.stale)

    def embed(self, plan: BatchPlan, embed_fn: EmbedFn | None = None) -> list[list[float]]:
        if self.dry_run:
            return []
        return embed_texts(self.ctx, plan.texts, self.embed_counts, self.progress, embed_fn)

    # --- end of run --------------------------------------------------------------------
    def finish(self) -> IngestResult:
        """`full` cleanup, carry other sources over after a model change, move the alias."""
        r, ctx = self.result, self.ctx  # ctx.store opens Milvus: only where it is needed
        if r.cleanup == "full" and self.exists:
            store = ctx.store
            keep = set(self.screener.seen) | self.screener.protected
            gone = [
                row["id"]
                for row in store.iter_rows(self.target, ["id", "source_id"])
                if row["source_id"] not in keep
            ]
            r.deleted += len(gone) if self.dry_run else store.delete_ids(self.target, gone)
        if self.previous != self.target and not self.dry_run:
            if self.previous is not None and r.cleanup != "full":
                r.migrated = self._migrate(set(self.screener.seen) | self.screener.protected)
                r.upserted += r.migrated
            ctx.store.point_alias(self.target)
            r.alias_moved = True
        r.embedded, r.cache_hits = self.embed_counts.embedded, self.embed_counts.cache_hits
        usage = getattr(self.ctx.embedder, "usage", None)
        if usage is not None:  # remote providers report tokens and estimated cost
            r.embedding_usage = usage()
        r.seconds = round(time.monotonic() - self.started, 3)
        return r

    def _migrate(self, done: set[str]) -> int:
        """Copy sources not in this run from the old model's collection, re-embedding their
        chunk texts with the new model (from the cache where possible)."""
        ctx, model = self.ctx, self.ctx.embedder.model_id
        moved = 0
        batch: list[dict[str, Any]] = []

        def flush() -> int:
            vectors = embed_texts(ctx, [r["text"] for r in batch], self.embed_counts, self.progress)
            rows = [
                dict(r, vector=v, model=model, run_id=self.result.run_id)
                for r, v in zip(batch, vectors, strict=True)
            ]
            n = ctx.store.upsert(self.target, rows, ctx.params.milvus.batch_size)
            batch.clear()
            return n

        for row in ctx.store.iter_rows(self.previous, list(SCALAR_FIELDS)):
            if row["source_id"] in done:
                continue
            batch.append(row)
            if len(batch) >= ctx.params.milvus.batch_size:
                moved += flush()
        if batch:
            moved += flush()
        return moved

    def run(self, items: Iterable[SourceItem]) -> IngestResult:
        for batch in _batched(self.screen(items), self.ctx.params.ingest.batch_documents):
            plan = self.plan(batch)
            self.load(plan, self.embed(plan))
        return self.finish()


def ingest(
    ctx: Context,
    items: Iterable[SourceItem],
    *,
    cleanup: str | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
    on_reject: Callable[[Reject], None] | None = None,
    run_id: str | None = None,
) -> IngestResult:
    """Bring the collection in line with `items`, touching only what changed.

    A source whose every record carries the same content hash, chunker hash and chunk
    count is skipped without chunking or embedding; a changed one is re-chunked, only
    texts the cache lacks are embedded, and its stale chunks go after the upsert.
    """
    run = Ingestion(
        ctx, cleanup=cleanup, dry_run=dry_run, progress=progress, on_reject=on_reject, run_id=run_id
    )
    return run.run(items)


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
            vector = embed_texts(ctx, [q.query], EmbedCounts())[0]  # cached: no model load
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
    """Version a written snapshot: its DVC identity (md5 and address in the default remote)
    and a Comet artifact version (or a pending one, offline) plus a lineage ledger entry.

    A versioning failure is reported in the result, not raised: the data is already loaded
    and the snapshot written; `corpusflow comet sync` catches up later.
    """
    from corpusflow.versioning import comet, dvc

    out: dict[str, Any] = {}
    try:
        out["dvc"] = dict(dvc.snapshot_version_info(snap.path), path=snap.path)
    except Exception as exc:  # not a DVC project, remote misconfigured: say so, go on
        out["dvc"] = {"error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}
    if ctx.params.comet.mode == "disabled":
        out["comet"] = {"mode": "disabled"}
        return out
    dvc_info = out["dvc"] if "md5" in out["dvc"] else None
    try:
        out["comet"] = comet.log_snapshot(ctx, snap, result, dvc=dvc_info)
    except Exception as exc:
        out["comet"] = {"error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}
    return out


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
    """What the collection holds, by source type, and which model built it."""
    physical = ctx.store.alias_target()
    if physical is None:
        return {"collection": ctx.params.milvus.collection, "exists": False, "records": 0}
    by_type: dict[str, int] = {}
    sources: set[str] = set()
    models: set[str] = set()
    for row in ctx.store.iter_rows(physical, ["source_type", "source_id", "model"]):
        by_type[row["source_type"]] = by_type.get(row["source_type"], 0) + 1
        sources.add(row["source_id"])
        models.add(row["model"])
    return {
        "collection": ctx.params.milvus.collection,
        "exists": True,
        "physical_collection": physical,
        "records": sum(by_type.values()),
        "sources": len(sources),
        "by_source_type": dict(sorted(by_type.items())),
        "models": sorted(models),
    }


__all__ = [
    "Context",
    "IngestResult",
    "PipelineError",
    "StoreError",
    "deep_link",
    "embed_texts",
    "extract",
    "ingest",
    "search",
    "snapshot",
    "stats",
]
