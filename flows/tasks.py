"""Prefect tasks over the corpusflow steps: thin wrappers, one task run per *batch*.

A task run costs 15-45 ms, so nothing here runs per chunk. Every task calls the same step
functions as the CLI (`pipeline.extract`, `Ingestion.screen/plan/embed/load/finish`,
`pipeline.snapshot`); the only logic here is orchestration: retries for the steps that touch
a network or a lock, per-batch caching scoped to the flow run, and the Dask model call.

Threading: the embedding cache is SQLite opened in the flow's thread, so every task that
touches `Context` is *called* (runs inline in the flow thread), never `.submit()`-ed. Only
`embed_on_worker` is submitted, to a Dask cluster, and it touches nothing but the model.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext
from prefect.tasks import exponential_backoff

from corpusflow import pipeline
from corpusflow.config import ConfigError, Embedding, Env, Params
from corpusflow.embedding import Embedder, make_embedder
from corpusflow.embedding.base import EmbeddingError
from corpusflow.ids import hash_value
from corpusflow.models import Document, Reject, SourceItem
from corpusflow.pipeline import BatchPlan, Context, Ingestion, PipelineError
from corpusflow.store import MilvusLockedError, StoreError, is_local_uri
from flows.accounting import BatchCounts, Counters, batch_cache_key, counted_once
from flows.artifacts import RunProgress

DASK_TEXTS_PER_TASK = 16  # texts per model call on a Dask worker: spreads a batch over workers


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


# ----------------------------------------------------------------------------------------
# sources
# ----------------------------------------------------------------------------------------
@task(name="extract-files", cache_policy=NO_CACHE, persist_result=False)
def extract_files(
    params: Params, transcripts: Sequence[str], articles: Sequence[str]
) -> list[SourceItem]:
    """Parse local transcripts and CSV articles (no network, no retries)."""
    return list(pipeline.extract(params, transcripts, articles, ()))


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
def fetch_youtube(params: Params, youtube: Sequence[str]) -> list[SourceItem]:
    """Fetch live YouTube transcripts. The source turns every failure into a Reject; those that
    look like the network's fault are retried with backoff, and on the last attempt they stay
    rejects so that the rest of the run goes on."""
    items = list(pipeline.extract(params, (), (), youtube))
    flaky = [i for i in items if isinstance(i, Reject) and _NETWORK_REJECT.search(i.reason)]
    ctx = TaskRunContext.get()
    last_attempt = ctx is None or ctx.task_run.run_count > ctx.task.retries
    if flaky and not last_attempt:
        raise YouTubeUnavailable(f"{len(flaky)} video(s) failed: {flaky[0].reason}")
    return items


# ----------------------------------------------------------------------------------------
# opening Milvus: wait (bounded) for a Milvus Lite lock held by another process
# ----------------------------------------------------------------------------------------
class MilvusLocked(StoreError):
    """The Milvus Lite database is open in another process (a CLI run, another flow run)."""


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
    on_reject: Callable[[Reject], None] | None = None,
    progress: pipeline.Progress | None = None,
) -> Ingestion:
    """Open the store and the target collection (the step the Milvus Lite lock blocks)."""
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
    except MilvusLockedError as exc:
        raise MilvusLocked(f"{exc}; waiting for it") from None  # retried with backoff
    except StoreError as exc:
        if is_local_uri(uri):
            raise MilvusOpenFailed(str(exc)) from None  # no lock: retrying will not help
        raise  # a server that is down or restarting: transient, retried with backoff


@task(name="screen", cache_policy=NO_CACHE, persist_result=False)
def screen(run: Ingestion, items: Sequence[SourceItem]) -> list[Document]:
    """Rejects logged, duplicates counted, each source id once."""
    return list(run.screen(items))


# ----------------------------------------------------------------------------------------
# per batch: plan -> embed -> load, as one cached unit
# ----------------------------------------------------------------------------------------
def _step_options(backoff: float) -> dict[str, Any]:
    return {
        "cache_policy": NO_CACHE,
        "persist_result": False,
        "retries": 3,
        "retry_delay_seconds": exponential_backoff(backoff_factor=backoff),
        "retry_jitter_factor": 0.5,
        "retry_condition_fn": retry_if_transient,
    }


@task(name="plan", **_step_options(2))
def plan_batch(run: Ingestion, batch: Sequence[Document]) -> BatchPlan:
    """Compare with the stored state (reads Milvus) and chunk what changed."""
    with counted_once(run):
        return run.plan(batch)


@task(name="embed", **_step_options(5))
def embed_batch(
    run: Ingestion, plan: BatchPlan, embed_fn: pipeline.EmbedFn | None = None
) -> list[list[float]]:
    """Vectors through the cache; only missing texts reach the model (or the endpoint).
    Each model call's vectors are committed to the cache, so a retry resumes from there."""
    with counted_once(run):
        return run.embed(plan, embed_fn)


@task(name="load", **_step_options(2))
def load_batch(run: Ingestion, plan: BatchPlan, vectors: list[list[float]]) -> int:
    """Upsert, then delete the batch's stale chunks (upserts are idempotent: safe to retry)."""
    with counted_once(run):
        run.load(plan, vectors)
    return len(plan.writes)


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
    embed_fn: pipeline.EmbedFn | None = None,
    progress: RunProgress | None = None,
) -> dict[str, Any]:
    """plan -> embed -> load for one batch. Returns what the batch added to the run's counts:
    that small JSON is what the per-flow-run cache keeps, never vectors."""
    before = Counters.of(run)
    plan = plan_batch(run, batch)
    with progress.embedding(len(batch), len(plan.texts)) if progress else nullcontext():
        vectors = embed_batch(run, plan, embed_fn)
    load_batch(run, plan, vectors)
    return BatchCounts.between(before, run).to_json()


def run_batch(
    run: Ingestion,
    batch: Sequence[Document],
    index: int,
    embed_fn: pipeline.EmbedFn | None,
    progress: RunProgress | None = None,
) -> tuple[BatchCounts, bool]:
    """Run `ingest_batch`; when a retried flow run finds it in the cache, add its counts to
    the run (they were not counted this time). Returns the batch's counts and whether cached."""
    state = ingest_batch(run, batch, index, embed_fn, progress, return_state=True)
    delta = BatchCounts.from_json(state.result())
    cached = state.name == "Cached"
    if cached:
        delta.apply(run)
    if progress:
        progress.batch_done(len(batch))
    return delta, cached


# ----------------------------------------------------------------------------------------
# end of run
# ----------------------------------------------------------------------------------------
@task(name="finish", cache_policy=NO_CACHE, persist_result=False, retries=3,
      retry_delay_seconds=exponential_backoff(backoff_factor=2),
      retry_condition_fn=retry_if_transient)  # fmt: skip
def finish(run: Ingestion) -> pipeline.IngestResult:
    """`full` cleanup, migration after a model change, and the alias move."""
    with counted_once(run):
        return run.finish()


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
# the model call on Dask: built once per worker process, vectors back to the flow
# ----------------------------------------------------------------------------------------
_WORKER_EMBEDDERS: dict[str, Embedder] = {}  # in Dask worker processes
_LOCAL_EMBEDDERS: dict[str, Embedder] = {}  # in the flow's process


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


def worker_embedder(settings: dict[str, Any]) -> Embedder:
    """The embedder for these settings, built once per (Dask worker) process. Secrets come
    from the worker's own environment, never through task parameters."""
    key = hash_value(settings)
    if key not in _WORKER_EMBEDDERS:
        embedding = Embedding.model_validate(settings)
        _WORKER_EMBEDDERS[key] = make_embedder(embedding, Env.from_environ())
    return _WORKER_EMBEDDERS[key]


@task(
    name="embed-on-worker",
    cache_policy=NO_CACHE,
    persist_result=False,  # vectors are never persisted by Prefect: the SQLite cache has them
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_if_transient,
)
def embed_on_worker(texts: list[str], settings: dict[str, Any]) -> list[list[float]]:
    return worker_embedder(settings).embed(texts)


class DaskEmbed:
    """An `embed_fn` for pipeline.embed_texts: splits each model call into parts, runs them
    on the Dask cluster at once and returns the vectors in order."""

    def __init__(self, runner: Any, settings: dict[str, Any], per_task: int = DASK_TEXTS_PER_TASK):
        self.runner, self.settings, self.per_task = runner, settings, per_task
        self.calls = 0

    def __call__(self, texts: list[str]) -> list[list[float]]:
        parts = [texts[i : i + self.per_task] for i in range(0, len(texts), self.per_task)]
        futures = [self._submit({"texts": part, "settings": self.settings}) for part in parts]
        self.calls += len(futures)
        vectors: list[list[float]] = []
        for future in futures:
            vectors.extend(future.result())
        return vectors

    def _submit(self, parameters: dict[str, Any]) -> Any:
        """Submit from outside the calling task's run context: prefect-dask ships the
        current TaskRunContext (with that task's parameters: the Ingestion, a SQLite cache)
        to the worker, which cannot be pickled and is not needed there. The flow run context
        stays, so the model calls still show up under the flow run."""

        def submit() -> Any:
            TaskRunContext.__var__.set(None)
            return self.runner.submit(embed_on_worker, parameters)

        return contextvars.copy_context().run(submit)


@contextmanager
def model_runner(
    kind: str, address: str | None, settings: Embedding, n_workers: int = 2
) -> Iterator[DaskEmbed | None]:
    """None for the default (the model runs in the flow process); a DaskEmbed on a
    DaskTaskRunner connected to `address`, or on a LocalCluster on 127.0.0.1."""
    if kind == "thread":
        yield None
        return
    from prefect_dask import DaskTaskRunner

    if address:
        runner = DaskTaskRunner(address=address)
    else:
        runner = DaskTaskRunner(
            cluster_kwargs={
                "n_workers": n_workers,
                "threads_per_worker": 1,
                "processes": True,
                "host": "127.0.0.1",
                "dashboard_address": None,
            }
        )
    with runner:
        yield DaskEmbed(runner, settings.model_dump(mode="json"))
