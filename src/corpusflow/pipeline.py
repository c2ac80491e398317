"""The steps as plain functions, and their result counts.

CLI commands, Prefect tasks and DVC stages all call these; no step logic lives elsewhere.
Data flows one way: sources -> documents -> chunks -> embeddings -> Milvus -> snapshot.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any, get_args

from corpusflow.chunking import Chunker, ChunkerSpec, resolve_spec
from corpusflow.config import Env, Params
from corpusflow.embedding import Embedder, make_embedder
from corpusflow.embedding.cache import EmbeddingCache
from corpusflow.inputs import Inputs
from corpusflow.memo import NO_MEMO, Memo
from corpusflow.models import (
    Chunk,
    Document,
    Reject,
    Skipped,
    SourceItem,
    SourceType,
    Unchanged,
)
from corpusflow.state import MIXED, MODEL, StateTable, Stored
from corpusflow.store import (
    SCALAR_FIELDS,
    VARCHAR_FIELDS,
    MilvusStore,
    StoreError,
    is_local_uri,
    physical_name,
)

Progress = Callable[[str, int], None]  # (what, how many more): "documents", "embedded", or
# "to embed" (texts not in the cache, announced before they are embedded: a total)
SOURCE_TYPES = get_args(SourceType)
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
    _states: list[StateTable] = field(default_factory=list)
    _memo: Memo | None = None

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

    def memo(self) -> Memo:
        """Parsed documents and chunk lists kept by what they derive from (memo.py)."""
        if self._memo is None:
            self._memo = Memo(self.params.ingest.state)
        return self._memo

    def state_of(self, physical: str, writable: bool = True) -> StateTable:
        """The local record of `physical`, checked against Milvus (rebuilt if it differs)."""
        table = StateTable(self.params.ingest.state, self.store, physical, writable=writable)
        self._states.append(table)
        table.verify()
        return table

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
        while self._states:
            self._states.pop().close()
        if self._memo is not None:
            self._memo.close()
            self._memo = None
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
    skip: Any = None,
) -> Iterator[SourceItem]:
    """All sources as one stream of Documents, Rejects, Skipped and Unchanged, in a stable
    order. `skip(path, source_type)` may answer Unchanged for a file not to be read."""
    from corpusflow.sources.articles import iter_articles
    from corpusflow.sources.transcripts import iter_transcripts

    if transcripts:
        yield from iter_transcripts(transcripts, skip=skip)
    if articles:
        src = params.sources
        yield from iter_articles(articles, src.columns, by_file=src.columns_by_file, skip=skip)
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
    if progress and todo:
        progress("to embed", len(todo))
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
    skipped_inputs: int = 0  # files met that are not inputs (a README among transcripts)
    skipped_files: list[dict[str, str]] = field(default_factory=list)
    alias_moved: bool = False
    embedding_usage: dict[str, Any] = field(default_factory=dict)
    by_type: dict[str, dict[str, int]] = field(default_factory=dict)
    rejects_file: str = ""
    duplicates_file: str = ""
    seconds: float = 0.0

    def count(self, source_type: str, key: str, n: int = 1) -> None:
        bucket = self.by_type.setdefault(
            source_type,
            {
                "inputs": 0,
                "documents": 0,
                "unchanged": 0,
                "duplicates": 0,
                "rejected": 0,
                "skipped": 0,
            },
        )
        bucket[key] += n

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def duplicates_path(rejects: str | Path) -> Path:
    """Duplicates are listed beside the rejects: data/rejects.jsonl -> data/duplicates.jsonl."""
    return Path(rejects).with_name("duplicates.jsonl")


class RejectLog:
    """Appends rejects to data/rejects.jsonl (one JSON object a line, with the run id); the
    same writer lists skipped duplicates, with where they were first seen, beside it."""

    def __init__(self, path: str | Path, run_id: str, enabled: bool = True):
        self.path, self.run_id, self.enabled = Path(path), run_id, enabled
        self.items: list[Reject | Skipped] = []

    def add(self, reject: Reject | Skipped) -> None:
        self.items.append(reject)
        if not self.enabled:
            return
        from corpusflow.versioning.lineage import append_jsonl  # a torn last line stays apart

        entry = {"run_id": self.run_id, "time": datetime.now(UTC).isoformat(), **asdict(reject)}
        append_jsonl(self.path, entry)


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


@dataclass
class BatchPlan:
    """What one batch of documents needs: chunks to (re)write, stale ids to delete after,
    and the stored state each touched source will have once the batch is loaded."""

    writes: list[tuple[Document, Chunk, int]] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    settled: list[Stored] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)  # input of each planned document

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
        inputs: Inputs | None = None,
        duplicates: RejectLog | None = None,
    ):
        self.result, self.rejects, self.on_reject = result, rejects, on_reject
        self.inputs, self.duplicates = inputs, duplicates
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
        if self.inputs is not None:
            self.inputs.rejected(item)
        if self.on_reject:
            self.on_reject(item)

    def _duplicate(self, item: Skipped) -> None:
        self.result.duplicates += 1
        self.result.count(item.source_type, "inputs")
        self.result.count(item.source_type, "duplicates")
        if self.duplicates is not None:
            self.duplicates.add(item)
        if self.inputs is not None:
            self.inputs.duplicate(item)

    def _skip(self, item: Skipped) -> None:
        """A file that is not an input: counted and listed, never an error."""
        self.result.skipped_inputs += 1
        self.result.count(item.source_type, "inputs")
        self.result.count(item.source_type, "skipped")
        self.result.skipped_files.append({"source": item.source, "reason": item.reason})

    def _unchanged(self, item: Unchanged) -> None:
        r = self.result
        r.documents += item.documents
        r.unchanged_documents += item.documents
        r.chunks += item.chunks
        r.skipped += item.chunks
        for key in ("inputs", "documents", "unchanged"):
            r.count(item.source_type, key, item.documents)

    def screen(self, items: Iterable[SourceItem]) -> Iterator[Document]:
        """Documents to process: rejects logged, duplicates counted, each source id once."""
        hashes: dict[str, str] = {}
        for item in items:
            if isinstance(item, Reject):
                self.reject(item)
            elif isinstance(item, Skipped):
                (self._duplicate if item.duplicate else self._skip)(item)
            elif isinstance(item, Unchanged):
                self._unchanged(item)
            elif item.source_id in hashes or (
                self.inputs is not None and self.inputs.met_unchanged(item.source_id)
            ):
                first = self.seen.get(item.source_id, "an unchanged input")
                if hashes.get(item.source_id) == item.content_hash:
                    why = f"duplicate of {first}"
                    self._duplicate(Skipped(item.origin, item.source_type, why, "", item.source_id))
                else:
                    why = f"duplicate source id {item.source_id} with different content"
                    self.reject(Reject(item.origin, item.source_type, f"{why} (first: {first})"))
            elif reason := _oversized_field(item):
                self.reject(Reject(item.origin, item.source_type, reason, source_id=item.source_id))
            else:
                hashes[item.source_id] = item.content_hash
                self.seen[item.source_id] = item.origin
                self.result.count(item.source_type, "inputs")
                if self.inputs is not None:
                    self.inputs.document(item)
                yield item


class Ingestion:
    """One ingest run, in steps a CLI, a Prefect flow or a DVC stage can drive.

    `screen` turns source items into unique documents (rejects and duplicates counted),
    `plan` compares a batch with the stored state, `load` upserts a planned batch and only
    then deletes its stale chunks, `finish` applies `full` cleanup and moves the alias.
    The stored state is the local record manager (`state.StateTable`), verified against
    Milvus when the run starts. A kill at any point leaves a state the next run completes.
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
        if not dry_run:
            ctx.store.ensure_collection(self.target, ctx.embedder.dimension)
            self.exists = True
        self.state = ctx.state_of(self.target, writable=not dry_run) if self.exists else None
        if self.state is not None:
            self.state.note_model(self.result.model)
        self.memo = ctx.memo() if not dry_run else NO_MEMO  # a dry run creates no file
        self.inputs = (
            Inputs(self.state, self.spec.digest, params.sources, self.memo) if self.state else None
        )
        self.chunker = Chunker(self.spec, ctx.embedder.count_tokens)
        rejects = RejectLog(params.ingest.rejects, self.result.run_id, enabled=not dry_run)
        dups_file = duplicates_path(params.ingest.rejects)
        dups = RejectLog(dups_file, self.result.run_id, enabled=not dry_run)
        self.result.duplicates_file = str(dups_file)
        self.screener = Screener(self.result, rejects, on_reject, self.inputs, dups)
        self.screen, self.reject = self.screener.screen, self.screener.reject
        self.embed_counts = EmbedCounts()

    def extract(
        self,
        transcripts: Sequence[str] = (),
        articles: Sequence[str] = (),
        youtube: Sequence[str] = (),
    ) -> Iterator[SourceItem]:
        """The sources as items; files whose fingerprint is unchanged are not read."""
        skip = self.inputs.skip if self.inputs is not None else None
        return extract(self.ctx.params, transcripts, articles, youtube, skip=skip)

    # --- per batch ---------------------------------------------------------------------
    def plan(self, batch: Sequence[Document]) -> BatchPlan:
        """Compare documents with their stored state; chunk only the ones that changed."""
        r, spec = self.result, self.spec
        stored = self.state.lookup([d.source_id for d in batch]) if self.state else {}
        plan = BatchPlan()
        cut: list[tuple[str, str, list[Chunk]]] = []  # chunked now: kept for next time
        for doc in batch:
            old = stored.get(doc.source_id)
            plan.inputs.append(self.inputs.input_of(doc) if self.inputs else "")
            if old and old.doc_hash == doc.content_hash and old.chunker == spec.digest:
                if plan.inputs[-1] != old.input:
                    self.state.set_input([doc.source_id], plan.inputs[-1])
                r.documents += 1
                r.unchanged_documents += 1
                r.count(doc.source_type, "documents")
                r.count(doc.source_type, "unchanged")
                r.chunks += old.n_chunks
                r.skipped += old.n_chunks
                continue
            chunks = self.memo.chunks(doc.content_hash, spec.digest)
            if chunks is None:
                chunks = self.chunker.split(doc)
                cut.append((doc.content_hash, spec.digest, chunks))
            if not chunks:
                why = "no text left to index"
                self.reject(Reject(doc.origin, doc.source_type, why, source_id=doc.source_id), True)
                if self.inputs is not None:
                    self.inputs.impure_input(plan.inputs[-1])
                continue
            r.documents += 1
            r.count(doc.source_type, "documents")
            r.chunks += len(chunks)
            existing = set(old.ids) if old else set()
            for chunk in chunks:
                if chunk.id in existing:
                    r.updated += 1
                else:
                    r.added += 1
                plan.writes.append((doc, chunk, len(chunks)))
            current = {c.id for c in chunks}
            plan.stale.extend(i for i in (old.ids if old else ()) if i not in current)
            plan.settled.append(
                Stored(
                    doc.source_id,
                    doc.source_type,
                    doc.content_hash,
                    spec.digest,
                    len(chunks),
                    tuple(c.id for c in chunks),
                    plan.inputs[-1],
                )
            )
        self.memo.put_chunks(cut)
        if self.progress:
            self.progress("documents", len(batch))
        return plan

    def load(self, plan: BatchPlan, vectors: Sequence[list[float]]) -> None:
        """Upsert the batch, then delete its stale chunks (never before); the stored state
        is journaled around both, so a kill leaves only this batch to re-read."""
        if self.dry_run:
            self.result.deleted += len(plan.stale)
            return
        ctx, model, run_id = self.ctx, self.ctx.embedder.model_id, self.result.run_id
        rows = [
            _record(doc, chunk, n, vec, self.spec, model, run_id)
            for (doc, chunk, n), vec in zip(plan.writes, vectors, strict=True)
        ]
        if self.state is not None and plan.settled:
            self.state.begin(s.source_id for s in plan.settled)
        self.result.upserted += ctx.store.upsert(self.target, rows, ctx.params.milvus.batch_size)
        self.result.deleted += ctx.store.delete_ids(self.target, plan.stale)
        if self.state is not None:
            self.state.settle(plan.settled)
        if self.inputs is not None:
            self.inputs.loaded(plan.inputs)

    def embed(self, plan: BatchPlan, embed_fn: EmbedFn | None = None) -> list[list[float]]:
        if self.dry_run:
            return []
        return embed_texts(self.ctx, plan.texts, self.embed_counts, self.progress, embed_fn)

    # --- end of run --------------------------------------------------------------------
    def finish(self) -> IngestResult:
        """`full` cleanup, carry other sources over after a model change, move the alias."""
        r = self.result  # self.ctx.store opens Milvus: only where it is needed
        if self.inputs is not None:
            self.inputs.close()
        if self.state is not None:
            self.state.see(self.screener.seen)
            self.state.see(self.screener.protected)
        if r.cleanup == "full" and self.state is not None:
            r.deleted += self._remove(list(self.state.unseen()))
        if self.previous != self.target and not self.dry_run:
            if self.previous is not None and r.cleanup != "full":
                self._migrate()
            self.ctx.store.point_alias(self.target)
            r.alias_moved = True
        if self.state is not None:
            self.state.release()
        r.embedded, r.cache_hits = self.embed_counts.embedded, self.embed_counts.cache_hits
        usage = getattr(self.ctx.embedder, "usage", None)
        if usage is not None:  # remote providers report tokens and estimated cost
            r.embedding_usage = usage()
        r.seconds = round(time.monotonic() - self.started, 3)
        return r

    def _remove(self, sources: Sequence[Stored]) -> int:
        """Delete whole stored sources (journaled like a batch); the number of chunks."""
        ids = [i for s in sources for i in s.ids]
        if self.dry_run or not ids:
            return len(ids)
        self.state.begin(s.source_id for s in sources)
        self.ctx.store.delete_ids(self.target, ids)
        self.state.settle([], removed=[s.source_id for s in sources])
        return len(ids)

    def _migrate(self) -> None:
        """After a model change, make the target match the previous collection for every
        source not in this run: copy (re-embedding from the cache where possible) what it
        lacks or holds in another version, delete what the previous one no longer has."""
        ctx, state = self.ctx, self.state
        before = ctx.state_of(self.previous, writable=False)
        copy: dict[str, Stored] = {}
        kept: set[str] = set()
        for old in before.all_sources():
            if state.seen(old.source_id):
                continue
            kept.add(old.source_id)
            mine = state.lookup([old.source_id]).get(old.source_id)
            if mine is None or mine.doc_hash != old.doc_hash or old.doc_hash == MIXED:
                copy[old.source_id] = old
        state.see(kept)
        self.result.deleted += self._remove(list(state.unseen()))
        if copy:
            self.result.migrated = self._copy(copy)
            self.result.upserted += self.result.migrated

    def _copy(self, sources: dict[str, Stored]) -> int:
        """Copy the rows of `sources` from the previous collection, with this run's vectors."""
        ctx, model = self.ctx, self.ctx.embedder.model_id
        old = self.state.lookup(list(sources))
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

        self.state.begin(sources)
        for row in ctx.store.iter_rows(self.previous, list(SCALAR_FIELDS)):
            if row["source_id"] in sources:
                batch.append(row)
                if len(batch) >= ctx.params.milvus.batch_size:
                    moved += flush()
        if batch:
            moved += flush()
        stale = [i for sid, s in old.items() for i in s.ids if i not in set(sources[sid].ids)]
        ctx.store.delete_ids(self.target, stale)
        self.state.settle(sources.values())
        return moved

    def run(self, items: Iterable[SourceItem]) -> IngestResult:
        for batch in _batched(self.screen(items), self.ctx.params.ingest.batch_documents):
            plan = self.plan(batch)
            self.load(plan, self.embed(plan))
        return self.finish()


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
