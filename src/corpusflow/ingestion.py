"""One ingest run in stages a CLI, a Prefect flow or a DVC stage can drive: screen the items,
plan each batch against the stored state, embed what the plan writes, load it, finish.

The stages are the run API: `plan` returns a BatchPlan, the checkpoint one step hands to
the next; `runner.py` moves batches through them one after another or overlapped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corpusflow.chunking import Chunker, ChunkerSpec
from corpusflow.context import Context, new_run_id
from corpusflow.embedding.cached import EmbedCounts, EmbedFn, Progress
from corpusflow.ids import forget_resolved_paths
from corpusflow.inputs import Inputs
from corpusflow.memo import NO_MEMO
from corpusflow.models import Chunk, Document, IngestResult, Reject, SourceItem
from corpusflow.screening import RejectLog, Screener, duplicates_path
from corpusflow.sources.extract import extract
from corpusflow.state import MIXED, Stored
from corpusflow.store import SCALAR_FIELDS


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
        forget_resolved_paths()  # inputs are resolved afresh each run
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
        rejects = RejectLog(params.ingest.rejects, self.result.run_id, enabled=not dry_run)
        dups_file = duplicates_path(params.ingest.rejects)
        dups = RejectLog(dups_file, self.result.run_id, enabled=not dry_run)
        self.result.duplicates_file = str(dups_file)
        self.screener = Screener(self.result, rejects, on_reject, self.inputs, dups)
        self.screen, self.reject = self.screener.screen, self.screener.reject
        self._batch_parts()

    def _batch_parts(self) -> None:
        """What `plan`, `embed` and `load` derive from ctx and spec: also called by a run
        that sets ctx, spec, target, result, state, inputs and memo itself (scaleout)."""
        self.chunker = Chunker.for_embedder(self.spec, self.ctx.embedder)
        self.embed_counts = EmbedCounts()
        # the stored state and the input tracker are shared by the stages; when they overlap
        # (runner.run_pipelined) each touches them only while holding this lock
        self.lock = threading.RLock()

    def extract(
        self,
        transcripts: Sequence[str] = (),
        articles: Sequence[str] = (),
        youtube: Sequence[str] = (),
    ) -> Iterator[SourceItem]:
        """The sources as items; files whose fingerprint is unchanged are not read."""
        skip = self._skip if self.inputs is not None else None
        return extract(self.ctx.params, transcripts, articles, youtube, skip=skip)

    def _skip(self, path: Path, source_type: str) -> list[Any] | None:
        """`Inputs.skip` under the run's lock: the loader settles inputs meanwhile."""
        with self.lock:
            return self.inputs.skip(path, source_type)

    # --- per batch ---------------------------------------------------------------------
    def plan(self, batch: Sequence[Document]) -> BatchPlan:
        """Compare documents with their stored state; chunk only the ones that changed."""
        with self.lock:
            stored = self.state.lookup([d.source_id for d in batch]) if self.state else {}
        plan = BatchPlan()
        cut: list[tuple[str, str, list[Chunk]]] = []  # chunked now: kept for next time
        for doc in batch:
            old = stored.get(doc.source_id)
            plan.inputs.append(self.inputs.input_of(doc) if self.inputs else "")
            if old and old.doc_hash == doc.content_hash and old.chunker == self.spec.digest:
                self._unchanged(doc, old, plan.inputs[-1])
                continue
            chunks = self.memo.chunks(doc.content_hash, self.spec.digest)
            if chunks is None:
                chunks = self.chunker.split(doc)
                cut.append((doc.content_hash, self.spec.digest, chunks))
            if chunks:
                self._changed(plan, doc, chunks, old)
                continue
            why = "no text left to index"
            with self.lock:
                self.reject(Reject(doc.origin, doc.source_type, why, source_id=doc.source_id), True)
                if self.inputs is not None:
                    self.inputs.impure_input(plan.inputs[-1])
        self.memo.put_chunks(cut)
        if self.progress:
            self.progress("documents", len(batch))
        return plan

    def _unchanged(self, doc: Document, old: Stored, input: str) -> None:
        r = self.result
        if input != old.input:
            with self.lock:
                self.state.set_input([doc.source_id], input)
        r.documents += 1
        r.unchanged_documents += 1
        r.count(doc.source_type, "documents")
        r.count(doc.source_type, "unchanged")
        r.chunks += old.n_chunks
        r.skipped += old.n_chunks

    def _changed(self, plan: BatchPlan, doc: Document, chunks: list[Chunk], old: Stored | None):
        r, n = self.result, len(chunks)
        r.documents += 1
        r.count(doc.source_type, "documents")
        r.chunks += n
        existing = set(old.stored_ids) if old else set()
        for chunk in chunks:
            if chunk.id in existing:
                r.updated += 1
            else:
                r.added += 1
            plan.writes.append((doc, chunk, n))
        current = {c.id for c in chunks}
        plan.stale.extend(i for i in (old.ids if old else ()) if i not in current)
        ids = tuple(c.id for c in chunks)
        plan.settled.append(
            Stored(doc.source_id, doc.source_type, doc.content_hash, self.spec.digest, n, ids,
                   plan.inputs[-1])
        )  # fmt: skip

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
            with self.lock:
                self.state.begin(plan.settled)
        self.result.upserted += ctx.store.upsert(self.target, rows, ctx.params.milvus.batch_size)
        self.result.deleted += ctx.store.delete_ids(self.target, plan.stale)
        with self.lock:
            if self.state is not None:
                self.state.settle(plan.settled)
            if self.inputs is not None:
                self.inputs.loaded(plan.inputs)

    def embed(self, plan: BatchPlan, embed_fn: EmbedFn | None = None) -> list[list[float]]:
        if self.dry_run:
            return []
        return self.ctx.embed_texts(plan.texts, self.embed_counts, self.progress, embed_fn)

    # --- end of run --------------------------------------------------------------------
    def finish(self) -> IngestResult:
        """`full` cleanup, carry other sources over after a model change, move the alias."""
        r = self.result  # self.ctx.store opens Milvus: only where it is needed
        if self.inputs is not None:
            self.inputs.close()
        if self.state is not None:
            self.state.see(self.screener.seen)
            self.state.see(self.screener.protected)
            self.state.resolve_doubt()
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
        self.state.begin(sources)
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
            vectors = ctx.embed_texts([r["text"] for r in batch], self.embed_counts, self.progress)
            rows = [
                dict(r, vector=v, model=model, run_id=self.result.run_id)
                for r, v in zip(batch, vectors, strict=True)
            ]
            n = ctx.store.upsert(self.target, rows, ctx.params.milvus.batch_size)
            batch.clear()
            return n

        self.state.begin(sources.values())
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
        """Every batch through plan -> embed -> load, then finish; overlapped when
        `ingest.pipelined` (the default), else one after another: same ids and counts."""
        from corpusflow import runner

        drive = runner.run_pipelined if self.ctx.params.ingest.pipelined else runner.run_serial
        return drive(self, items)
