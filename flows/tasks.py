"""Prefect tasks over the public run API: one task run per *batch*, never per chunk.

Every task drives the same steps as the CLI (`Ingestion.extract/screen/plan/embed/load/finish`,
`pipeline.snapshot/version`); the only logic here is orchestration: retries for the steps that
touch a network or a lock, per-batch caching scoped to the flow run (flows/accounting.py), and
handing the work to a Dask cluster (flows/cluster.py, corpusflow.scaleout).

Threading: the embedding cache and the state are SQLite opened in the flow's thread, so every
task that touches `Context` is *called* (runs inline in the flow thread), never `.submit()`-ed;
only the worker tasks of flows/cluster.py are submitted, with plain data.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict
from itertools import chain
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext
from prefect.tasks import exponential_backoff

from corpusflow import pipeline
from corpusflow.config import ConfigError, Embedding
from corpusflow.embedding import Embedder, make_embedder
from corpusflow.embedding.base import EmbeddingError
from corpusflow.ids import hash_value
from corpusflow.models import Document, Reject, SourceItem
from corpusflow.pipeline import Context, Ingestion, PipelineError
from corpusflow.store import MilvusLockedError, StoreError, is_local_uri
from flows.accounting import add, batch_cache_key, changes, counted_once, counters
from flows.artifacts import RunProgress

# ----------------------------------------------------------------------------------------
# retry policy: retry what a network or a lock can cause, fail fast on the user's mistakes
# ----------------------------------------------------------------------------------------
PERMANENT: tuple[type[BaseException], ...] = (
    ConfigError,
    PipelineError,
    TypeError,
    ValueError,  # includes pydantic's ValidationError and UnicodeError
    KeyError,
    AttributeError,
    AssertionError,
    NotImplementedError,
    ImportError,
)
# EmbeddingError is transient only when an endpoint call failed ("... at URL failed after ..."),
# and not for a missing or refused key; a missing local model or a bad input is permanent.
_TRANSIENT_EMBEDDING = re.compile(r" at \S+ failed ")
_PERMANENT_EMBEDDING = re.compile(r"OPENAI_API_KEY")


def _exception(state: Any) -> BaseException | None:
    try:
        exc = state.result(raise_on_failure=False)
    except Exception as err:  # the state could not be resolved: judge that error
        return err
    return exc if isinstance(exc, BaseException) else None


def is_transient(exc: BaseException | None) -> bool:
    """Worth retrying: a lock, a server, an endpoint or a connection; not a user error."""
    if exc is None or isinstance(exc, PERMANENT) and not isinstance(exc, OSError):
        return False
    if isinstance(exc, EmbeddingError):
        text = str(exc)
        return bool(_TRANSIENT_EMBEDDING.search(text)) and not _PERMANENT_EMBEDDING.search(text)
    return True


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """`retry_condition_fn` for the tasks that talk to Milvus, an endpoint or YouTube."""
    return is_transient(_exception(state))


class Rejects:
    """The run's rejects as the flow sees them (its `on_reject`): kept for the summary and
    the artifact, each logged as a warning of the flow run. A plain object, not a list:
    Prefect rebuilds collections it finds in task parameters, and this one must be shared."""

    def __init__(self, logger: Any = None):
        self.items: list[Reject] = []
        self.logger = logger

    def __call__(self, reject: Reject) -> None:
        self.items.append(reject)
        if self.logger is not None:
            self.logger.warning(reject.line())


# ----------------------------------------------------------------------------------------
# opening Milvus: wait (bounded) for a Milvus Lite lock held by another process
# ----------------------------------------------------------------------------------------
class MilvusOpenFailed(PipelineError):
    """A local Milvus Lite database failed to open for another reason than a lock: retrying
    would not help (PipelineError is permanent for the retry policy)."""


def milvus_wait_delays(wait_seconds: float) -> list[float]:
    """Backoff delays (1, 2, 4, ... capped at 15 s) that add up to about `wait_seconds`."""
    delays: list[float] = []
    delay = 1.0
    while sum(delays) < wait_seconds:
        delays.append(min(delay, 15.0, wait_seconds - sum(delays)))
        delay *= 2
    return delays


@task(
    name="open-milvus",
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=8,
    retry_delay_seconds=milvus_wait_delays(120),
    retry_condition_fn=retry_if_transient,
)
def open_ingestion(
    ctx: Context,
    cleanup: str | None,
    dry_run: bool,
    run_id: str,
    on_reject: Rejects | None = None,
    progress: pipeline.Progress | None = None,
) -> Ingestion:
    """Open the store and the target collection (the step the Milvus Lite lock blocks: its
    MilvusLockedError is transient, so the task waits for the lock with backoff)."""
    uri = ctx.env.milvus_uri or ctx.params.milvus.uri
    try:
        return Ingestion(
            ctx,
            cleanup=cleanup,
            dry_run=dry_run,
            progress=progress,
            on_reject=on_reject,
            run_id=run_id,
        )
    except MilvusLockedError:
        raise  # retried with backoff
    except StoreError as exc:
        if is_local_uri(uri):
            raise MilvusOpenFailed(str(exc)) from None  # no lock: retrying will not help
        raise  # a server that is down or restarting: transient, retried with backoff


# ----------------------------------------------------------------------------------------
# sources: unchanged files are not read (fingerprints); the rest is screened as it is read
# ----------------------------------------------------------------------------------------
class YouTubeUnavailable(Exception):
    """Some videos failed for network reasons: retry the fetch (a transient error)."""


_NETWORK_REJECT = re.compile(
    r"^network error|RequestBlocked|IpBlocked|YouTubeRequestFailed|TooManyRequests|timed? ?out",
    re.IGNORECASE,
)


@task(
    name="fetch-youtube",
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=5),
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_if_transient,
)
def fetch_youtube(run: Ingestion, youtube: Sequence[str]) -> list[SourceItem]:
    """Fetch live YouTube transcripts. The source turns every failure into a Reject; those that
    look like the network's fault are retried with backoff, and on the last attempt they stay
    rejects so that the rest of the run goes on."""
    items = list(run.extract((), (), youtube))
    flaky = [i for i in items if isinstance(i, Reject) and _NETWORK_REJECT.search(i.reason)]
    ctx = TaskRunContext.get()
    last_attempt = ctx is None or ctx.task_run.run_count > ctx.task.retries
    if flaky and not last_attempt:
        raise YouTubeUnavailable(f"{len(flaky)} video(s) failed: {flaky[0].reason}")
    return items


@task(name="read-sources", cache_policy=NO_CACHE, persist_result=False)
def read_sources(
    run: Ingestion,
    transcripts: Sequence[str],
    articles: Sequence[str],
    fetched: Sequence[SourceItem] = (),
    cluster: Any = None,
) -> list[Document]:
    """The documents to process: files whose fingerprint is unchanged are not read (counted
    unchanged), the others parsed here or on the Dask workers (`cluster`), then screened
    with the fetched YouTube items (rejects logged, duplicates counted, each id once)."""
    if cluster is None:
        files = run.extract(transcripts, articles, ())
    else:
        files = cluster.read(run, transcripts, articles)
    return list(run.screen(chain(files, fetched)))


# ----------------------------------------------------------------------------------------
# the run's stages, one wrapper: retried on transient errors, counted once
# ----------------------------------------------------------------------------------------
@task(cache_policy=NO_CACHE, persist_result=False, retries=3, retry_jitter_factor=0.5,
      retry_condition_fn=retry_if_transient)  # fmt: skip
def _stage(run: Ingestion, stage: str, args: tuple, rejects: Rejects | None = None) -> Any:
    """`run.<stage>(*args)`; a failed attempt leaves the run's counts as they were."""
    with counted_once(run, rejects):
        return getattr(run, stage)(*args)


STAGES = {
    name: _stage.with_options(name=name,
                              retry_delay_seconds=exponential_backoff(backoff_factor=backoff))
    for name, backoff in (("plan", 2), ("embed", 5), ("load", 2), ("finish", 2))
}  # fmt: skip


def stage(name: str, run: Ingestion, *args: Any, rejects: Rejects | None = None) -> Any:
    """Run one stage of the run API as its task: plan (reads Milvus, chunks what changed),
    embed (through the cache: a retry resumes from the last committed model call), load
    (upsert, then delete stale chunks: idempotent), finish (cleanup, migration, alias)."""
    return STAGES[name](run, name, args, rejects)


@task(
    name="ingest-batch",
    task_run_name="ingest-batch-{index}",
    cache_key_fn=batch_cache_key,
    result_serializer="json",
    persist_result=True,
)
def ingest_batch(
    run: Ingestion,
    batch: Sequence[Document],
    index: int,
    rejects: Rejects,
    progress: RunProgress | None = None,
) -> dict[str, Any]:
    """plan -> embed -> load for one batch. Returns what the batch added to the run's counts
    and its rejects: that small JSON is what the per-flow-run cache keeps, never vectors."""
    before, seen = counters(run), len(rejects.items)
    plan = stage("plan", run, batch, rejects=rejects)
    with progress.embedding(len(batch), len(plan.texts)) if progress else nullcontext():
        vectors = stage("embed", run, plan, rejects=rejects)
    stage("load", run, plan, vectors, rejects=rejects)
    return {"counts": changes(before, run), "rejects": [asdict(r) for r in rejects.items[seen:]]}


def run_batch(
    run: Ingestion,
    batch: Sequence[Document],
    index: int,
    rejects: Rejects,
    progress: RunProgress | None = None,
) -> bool:
    """Run `ingest_batch`; when a retried flow run finds it in the cache, add its counts and
    rejects to the run (they were not seen this time). Returns whether it was cached."""
    state = ingest_batch(run, batch, index, rejects, progress, return_state=True)
    done = state.result()
    cached = state.name == "Cached"
    if cached:
        add(run, done["counts"])
        earlier = [Reject(**fields) for fields in done["rejects"]]
        rejects.items.extend(earlier)
        if run.state is not None:  # `full` cleanup keeps what was rejected this run
            run.state.see(r.source_id for r in earlier if r.source_id)
    if progress:
        progress.batch_done(len(batch))
    return cached


def load_batches(
    run: Ingestion,
    batches: Sequence[Sequence[Document]],
    rejects: Rejects,
    progress: RunProgress | None = None,
    cluster: Any = None,
) -> int:
    """Every batch through plan -> embed -> load, here or on the Dask workers; returns how
    many came from the cache of a retried flow run."""
    if cluster is not None:
        cluster.load(run, batches, progress)
        return 0
    return sum(run_batch(run, b, i, rejects, progress) for i, b in enumerate(batches))


# ----------------------------------------------------------------------------------------
# end of run
# ----------------------------------------------------------------------------------------
def finish(run: Ingestion, rejects: Rejects | None = None) -> pipeline.IngestResult:
    """`full` cleanup, migration after a model change, and the alias move."""
    return stage("finish", run, rejects=rejects)


@task(name="snapshot", cache_policy=NO_CACHE, persist_result=False, retries=3,
      retry_delay_seconds=exponential_backoff(backoff_factor=2),
      retry_condition_fn=retry_if_transient)  # fmt: skip
def snapshot(ctx: Context, run_id: str) -> Any:
    """Canonical JSON of the collection and the named queries (pipeline.snapshot)."""
    return pipeline.snapshot(ctx, None, run_id=run_id)


@task(name="version", cache_policy=NO_CACHE, persist_result=False)
def version(ctx: Context, snap: Any, result: pipeline.IngestResult) -> dict[str, str]:
    """pipeline.version: DVC identity, Comet artifact version and lineage entry. A failure
    is reported in the artifact, not fatal: the data is already loaded."""
    logger = get_run_logger()
    versions = pipeline.version(ctx, snap, result)
    for name, value in versions.items():
        if isinstance(value, dict) and "error" in value:
            logger.warning("%s versioning failed: %s", name, value["error"])
    return {name: _describe(value) for name, value in versions.items()}


def _describe(value: Any) -> str:
    if value is None:
        return "logged"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items() if v is not None)
    return str(value)


# ----------------------------------------------------------------------------------------
# the flow process's model: loaded once per process
# ----------------------------------------------------------------------------------------
_LOCAL_EMBEDDERS: dict[str, Embedder] = {}


def local_embedder(settings: Embedding) -> Embedder | None:
    """The flow process's embedder for a *local* model, shared by the flow runs of one
    process (`serve`, tests): the model loads once, not once per run. None for remote
    providers, whose embedders count tokens and cost per run and must start fresh."""
    if settings.provider != "local":
        return None
    key = hash_value(settings.model_dump(mode="json"))
    if key not in _LOCAL_EMBEDDERS:
        _LOCAL_EMBEDDERS[key] = make_embedder(settings)
    return _LOCAL_EMBEDDERS[key]
