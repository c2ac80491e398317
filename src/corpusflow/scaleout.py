"""Ingest on a cluster: input files parsed, and batches chunked, embedded and written to a
Milvus server, on the workers; the state stays with the run that hands the work out.

The driving process (the Prefect flow) keeps the state layer (state.py) and the run's order:
1. `read_deferred`: the sources are walked as a local run walks them, but a changed file (its
   fingerprint differs) is not read there: it becomes a `Deferred` marker, and groups of
   markers are parsed by `parse_files` on the workers; each file's items are put back in
   its place, so screening (rejects, duplicates, counts) sees the stream a local run sees.
2. `Batches`: each batch's stored sources are looked up and journaled (`begin`) *before* a
   worker writes, `run_batch` plans (chunks what changed), embeds, upserts and deletes the
   stale chunk ids on a worker, and its `BatchDone` (the Stored records, the counts, the
   rejects) is settled by the driver. A kill leaves only journaled sources to re-read.
Chunk ids are deterministic and upserts idempotent: a retried worker rewrites the same rows.
Workers open the Milvus server the driver uses (a Milvus Lite file opens in one process).
"""

from __future__ import annotations

import os
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from corpusflow.chunking import ChunkerSpec
from corpusflow.config import Env, Params
from corpusflow.context import Context
from corpusflow.ids import input_key, project_root, set_project_root
from corpusflow.ingestion import Ingestion
from corpusflow.inputs import Inputs
from corpusflow.memo import NO_MEMO
from corpusflow.models import Document, IngestResult, PipelineError, Reject, SourceItem
from corpusflow.sources.extract import extract as extract_items
from corpusflow.state import Stored
from corpusflow.store import is_local_uri

FILES_PER_TASK = 8  # input files parsed by one worker task
Submit = Callable[[Any], Any]  # work item -> something with .result()


def server_uri(ctx: Context) -> str:
    """The Milvus server the workers write to; a Milvus Lite file is refused in one line."""
    uri = ctx.env.milvus_uri or ctx.params.milvus.uri
    if is_local_uri(uri):
        raise PipelineError(
            f"task_runner=dask needs a Milvus server (milvus.uri or MILVUS_URI = http://HOST:"
            f"19530), not the Milvus Lite file {uri}: a Lite file opens in one process only"
        )
    return uri


def worker_params(ctx: Context) -> Params:
    """The run's params as the workers need them: the server the driver writes to."""
    milvus = ctx.params.milvus.model_copy(update={"uri": server_uri(ctx)})
    return ctx.params.model_copy(update={"milvus": milvus})


# ----------------------------------------------------------------------------------------
# 1. parsing on the workers
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Deferred:
    """A changed input file left for a worker to parse."""

    path: str
    source_type: str


@dataclass
class ParseJob:
    """Some input files to parse, with the run's sources (walked as the driver walked them)."""

    params: Params
    root: str | None  # the project root file and CSV ids are relative to
    transcripts: list[str]
    articles: list[str]
    files: list[str]


def item_input(item: Any) -> str:
    """The input file an item came from (a document's origin, a reject's source)."""
    if isinstance(item, Document):
        return Inputs.input_of(item)
    return input_key(item.source) if getattr(item, "source", "") else ""


def parse_files(job: ParseJob) -> list[SourceItem]:
    """On a worker: the items of `job.files`, read by the sources themselves (every other file
    of the walk is skipped unread: its items reached the driver in its own walk)."""
    set_project_root(Path(job.root) if job.root else None)
    wanted = {input_key(p) for p in job.files}

    def only_mine(path: Path, source_type: str) -> list[Any] | None:
        return None if input_key(path) in wanted else []

    items = extract_items(job.params, job.transcripts, job.articles, (), skip=only_mine)
    return [item for item in items if item_input(item) in wanted]


def read_deferred(
    run: Ingestion,
    transcripts: Sequence[str],
    articles: Sequence[str],
    submit: Submit,
    files_per_task: int = FILES_PER_TASK,
) -> list[SourceItem]:
    """The run's file items in a local run's order; unchanged files are answered by their
    fingerprints (not read), changed ones parsed on the workers, `files_per_task` a task."""

    def defer(path: Path, source_type: str) -> list[Any]:
        found = run.inputs.skip(path, source_type) if run.inputs is not None else None
        return [Deferred(str(path), source_type)] if found is None else found

    params = run.ctx.params
    walked = list(extract_items(params, transcripts, articles, (), skip=defer))
    files = [item.path for item in walked if isinstance(item, Deferred)]
    root = project_root()
    futures = [
        submit(ParseJob(params, str(root) if root else None, list(transcripts), list(articles),
                        files[i : i + files_per_task]))
        for i in range(0, len(files), files_per_task)
    ]  # fmt: skip
    parsed: dict[str, list[SourceItem]] = {}
    for future in futures:
        for item in future.result():
            parsed.setdefault(item_input(item), []).append(item)
    out: list[SourceItem] = []
    for item in walked:
        out.extend(parsed.get(input_key(item.path), []) if isinstance(item, Deferred) else [item])
    return out


# ----------------------------------------------------------------------------------------
# 2. batches on the workers
# ----------------------------------------------------------------------------------------
@dataclass
class BatchJob:
    """One batch of documents for a worker, with the stored state of their sources."""

    params: Params
    root: str | None
    run_id: str
    target: str
    spec: ChunkerSpec
    dry_run: bool
    documents: list[Document]
    stored: dict[str, Stored]


@dataclass
class BatchDone:
    """What a worker did with a batch, for the driver to settle and count."""

    counts: dict[str, Any]  # the worker's IngestResult.to_dict(): what the batch added
    embed: dict[str, int]  # its embedding counts
    settled: list[Stored] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)  # input of each planned document
    moved: list[tuple[str, str]] = field(default_factory=list)  # (source id, new input)
    rejects: list[Reject] = field(default_factory=list)
    impure: list[str] = field(default_factory=list)  # inputs that gave a reject


class _GivenState:
    """The stored state of one batch's sources, as the driver looked it up."""

    def __init__(self, stored: dict[str, Stored], done: BatchDone):
        self.stored, self.done = stored, done

    def lookup(self, source_ids: Sequence[str]) -> dict[str, Stored]:
        return {s: self.stored[s] for s in source_ids if s in self.stored}

    def set_input(self, source_ids: Sequence[str], input: str) -> None:
        self.done.moved.extend((s, input) for s in source_ids)

    def begin(self, source_ids: Iterable[str]) -> None:
        """Journaled by the driver before the job was handed out."""

    def settle(self, written: Iterable[Stored], removed: Iterable[str] = ()) -> None:
        self.done.settled.extend(written)


class _HandedInputs:
    """What the planning step tells the run's input tracker, kept for the driver."""

    input_of = staticmethod(Inputs.input_of)

    def __init__(self, done: BatchDone):
        self.done = done

    def impure_input(self, input: str) -> None:
        self.done.impure.append(input)

    def loaded(self, inputs: Iterable[str]) -> None:
        self.done.inputs.extend(inputs)


class WorkerRun(Ingestion):
    """The per-batch steps of an Ingestion (`plan`, `embed`, `load`) on a worker: the stored
    state comes with the job, and what the state and the input tracker would be told is
    collected in a BatchDone for the driver, which alone writes the state."""

    def __init__(self, ctx: Context, job: BatchJob):
        self.ctx, self.dry_run, self.progress = ctx, job.dry_run, None
        self.spec, self.target = job.spec, job.target
        self.result = IngestResult(job.run_id, "", job.target, ctx.embedder.model_id, "")
        self.done = BatchDone({}, {})
        self.state, self.inputs = _GivenState(job.stored, self.done), _HandedInputs(self.done)
        self.memo = NO_MEMO
        self._batch_parts()

    def reject(self, item: Reject, input_counted: bool = False) -> None:
        """Counted and logged by the driver (`Ingestion.reject`), not here."""
        self.done.rejects.append(item)


_EMBEDDERS: dict[str, Any] = {}  # per worker process: the model loads once


def _worker_context(params: Params) -> Context:
    """A Context for one job: the driver's Milvus server, this process's model, and an
    embedding cache in the worker's own directory (SQLite is not for shared storage)."""
    from corpusflow.embedding import make_embedder
    from corpusflow.ids import hash_value

    env = Env.from_environ().model_copy(update={"milvus_uri": params.milvus.uri})
    key = hash_value(params.embedding.model_dump(mode="json"))
    if key not in _EMBEDDERS:
        _EMBEDDERS[key] = make_embedder(params.embedding, env)
    folder = Path(tempfile.gettempdir()) / f"corpusflow-worker-{os.getpid()}"
    ingest = params.ingest.model_copy(update={"cache": str(folder / "embedding-cache.sqlite")})
    return Context(params.model_copy(update={"ingest": ingest}), env, _embedder=_EMBEDDERS[key])


def run_batch(job: BatchJob) -> BatchDone:
    """On a worker: plan (chunk what changed), embed, upsert, then delete stale chunks."""
    set_project_root(Path(job.root) if job.root else None)
    ctx = _worker_context(job.params)
    try:
        run = WorkerRun(ctx, job)
        plan = run.plan(job.documents)
        run.load(plan, run.embed(plan))
        run.done.counts, run.done.embed = run.result.to_dict(), asdict(run.embed_counts)
        return run.done
    finally:
        ctx.close()


def _current(stored: Stored | None, doc: Document, spec: ChunkerSpec) -> bool:
    """The stored source is this document, cut this way: planning will not write it."""
    if stored is None:
        return False
    return (stored.doc_hash, stored.chunker) == (doc.content_hash, spec.digest)


def _drain(inflight: Iterable[tuple[Any, Any, Any]]) -> None:
    """Wait for handed-out batches to end, whatever their outcome: they stay journaled
    (pending), so the next run re-reads their sources from Milvus."""
    for _, _, future in inflight:
        try:
            future.result()
        except Exception:  # the first failure is the one raised
            pass


class Batches:
    """Hands batches to the workers, at most `window` at once, and settles each in order:
    journaled before a worker writes it, settled (state, inputs, rejects, counts) after."""

    def __init__(self, run: Ingestion, submit: Submit, add: Callable[[Ingestion, BatchDone], None],
                 window: int = 4, done: Callable[[int], None] | None = None):  # fmt: skip
        self.run, self.submit, self.add, self.window, self.on_done = run, submit, add, window, done
        self.params = worker_params(run.ctx)
        root = project_root()
        self.root = str(root) if root else None

    def run_all(self, batches: Iterable[Sequence[Document]]) -> int:
        """Every batch through the workers; returns how many were handed out."""
        inflight: deque[tuple[BatchJob, list[str], Any]] = deque()
        count = 0
        try:
            for batch in batches:
                job, journaled = self._journal(batch)
                inflight.append((job, journaled, self.submit(job)))
                count += 1
                if len(inflight) >= self.window:
                    self._settle(*inflight.popleft())
            while inflight:
                self._settle(*inflight.popleft())
        except BaseException:
            _drain(inflight)  # no worker may still write once the run has failed
            raise
        return count

    def _journal(self, batch: Sequence[Document]) -> tuple[BatchJob, list[str]]:
        run, ids = self.run, [d.source_id for d in batch]
        stored = run.state.lookup(ids) if run.state is not None else {}
        changed = [d.source_id for d in batch if not _current(stored.get(d.source_id), d, run.spec)]
        if run.state is not None and changed and not run.dry_run:
            run.state.begin(changed)  # before the worker writes: a kill leaves these to re-read
        job = BatchJob(self.params, self.root, run.result.run_id, run.target, run.spec,
                       run.dry_run, list(batch), stored)  # fmt: skip
        return job, changed

    def _settle(self, job: BatchJob, journaled: list[str], future: Any) -> None:
        done: BatchDone = future.result()
        run = self.run
        if run.state is not None:
            for source_id, input in done.moved:
                run.state.set_input([source_id], input)
            run.state.settle(done.settled, pending=journaled)
        for item in done.rejects:
            run.reject(item, True)
        if run.inputs is not None:
            for key in done.impure:
                run.inputs.impure_input(key)
        self.add(run, done)
        if run.inputs is not None:
            run.inputs.loaded(done.inputs)
        if self.on_done:
            self.on_done(len(job.documents))
