"""The `ingest` flow on a Dask cluster (`task_runner="dask"`): files parsed, and batches chunked,
embedded and written to the Milvus server, by Prefect tasks on the workers; the flow keeps
the state and settles each batch (corpusflow.scaleout says how, and why it is crash-safe).

The worker tasks get plain data (a ParseJob or a BatchJob) and return plain data; they
retry transient failures, and a retried batch rewrites the same rows (deterministic ids).
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext

from corpusflow import scaleout
from corpusflow.models import Document, SourceItem
from corpusflow.pipeline import Ingestion
from flows.accounting import add, difference
from flows.artifacts import RunProgress
from flows.tasks import retry_if_transient

_ON_WORKER = {
    "cache_policy": NO_CACHE,
    "persist_result": False,  # documents and vectors never go to Prefect's result storage
    "retries": 2,
    "retry_delay_seconds": [2, 10],
    "retry_condition_fn": retry_if_transient,
}


@task(name="parse-files", **_ON_WORKER)
def parse_on_worker(job: scaleout.ParseJob) -> list[SourceItem]:
    """Parse a group of changed input files (on a worker; the files on shared storage)."""
    return scaleout.parse_files(job)


@task(name="batch-on-worker", **_ON_WORKER)
def batch_on_worker(job: scaleout.BatchJob) -> scaleout.BatchDone:
    """Chunk what changed, embed, upsert, delete stale chunks (on a worker)."""
    return scaleout.run_batch(job)


def add_done(run: Ingestion, done: scaleout.BatchDone) -> None:
    """A worker's counts (its fresh IngestResult and embedding counts) added to the run's."""
    add(run, difference({}, {"result": done.counts, "embed": done.embed}))


class Cluster:
    """What the flow hands to the workers, through a started DaskTaskRunner."""

    def __init__(self, runner: Any, window: int):
        self.runner, self.window = runner, window

    def read(self, run: Ingestion, transcripts: Sequence[str], articles: Sequence[str]) -> list:
        """The run's file items: unchanged files by fingerprint, changed ones parsed there."""
        return scaleout.read_deferred(
            run, transcripts, articles, lambda job: self._submit(parse_on_worker, job)
        )

    def load(
        self, run: Ingestion, batches: Sequence[Sequence[Document]], progress: RunProgress | None
    ) -> None:
        """Every batch on the workers, `window` at a time, settled in order by the flow."""
        done = progress.batch_done if progress else None
        submit = lambda job: self._submit(batch_on_worker, job)  # noqa: E731
        scaleout.Batches(run, submit, add_done, self.window, done).run_all(batches)

    def _submit(self, worker_task: Any, job: Any) -> Any:
        """Submit from outside the calling task's run context: prefect-dask ships the current
        TaskRunContext (with that task's parameters: the Ingestion, SQLite handles) to the
        worker, which cannot be pickled and is not needed there. The flow run context stays,
        so the worker tasks still show up under the flow run."""

        def submit() -> Any:
            TaskRunContext.__var__.set(None)
            return self.runner.submit(worker_task, {"job": job})

        return contextvars.copy_context().run(submit)


@contextmanager
def dask_cluster(kind: str, address: str | None, n_workers: int = 2) -> Iterator[Cluster | None]:
    """None for the default (everything in the flow process); else a Cluster on a
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
        threads = sum(runner.client.nthreads().values()) or 1
        yield Cluster(runner, window=2 * threads)  # one batch running, one waiting, per thread
