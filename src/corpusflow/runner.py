"""How a run's batches move through its stages (ingestion.Ingestion): one after another, or
overlapped so the model is never idle.

Overlapped, three threads share the work: one screens the items and plans each batch
(parsing and chunking), this thread embeds, one loads (Milvus upsert, stale deletes, the
journal). Queues between them hold at most DEPTH batches, so memory stays bounded; batches
are loaded in the order they were planned, each journaled as in the serial run, so ids,
counts and crash safety are the same (tests/integration/test_pipelined.py).
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any, TypeVar

from corpusflow.ingestion import Ingestion
from corpusflow.models import Document, IngestResult, SourceItem

DEPTH = 2  # batches waiting between two stages
_DONE = object()  # end of a queue's stream
T = TypeVar("T")


def batched(items: Iterable[T], n: int) -> Iterator[list[T]]:
    it = iter(items)
    while batch := list(islice(it, n)):
        yield batch


def run_serial(run: Ingestion, items: Iterable[SourceItem]) -> IngestResult:
    """Plan, embed and load each batch in turn."""
    for batch in batched(run.screen(items), run.ctx.params.ingest.batch_documents):
        plan = run.plan(batch)
        run.load(plan, run.embed(plan))
    return run.finish()


class _Stages:
    """The two helper threads, their queues, and the first failure of any of them."""

    def __init__(self, run: Ingestion, items: Iterable[SourceItem]):
        self.run, self.items = run, items
        self.planned: queue.Queue[Any] = queue.Queue(DEPTH)
        self.embedded: queue.Queue[Any] = queue.Queue(DEPTH)
        self.stop = threading.Event()
        self.error: BaseException | None = None
        # each thread runs in a copy of the caller's context: callbacks (a Prefect run
        # logger, a progress bar) see the run they belong to
        self.threads = [
            threading.Thread(
                target=contextvars.copy_context().run,
                args=(self._guard, body),
                name=f"corpusflow-{body.__name__[1:]}",
            )
            for body in (self._prepare, self._write)
        ]

    def _guard(self, body: Any) -> None:
        try:
            body()
        except BaseException as exc:  # handed to the run's thread, raised there
            self.fail(exc)

    def fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        self.stop.set()

    def put(self, q: queue.Queue[Any], item: Any) -> bool:
        """Block until there is room or the run stops; False when it stopped."""
        while not self.stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def get(self, q: queue.Queue[Any]) -> Any:
        """The next item, or _DONE once the run stops."""
        while not self.stop.is_set():
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                continue
        return _DONE

    def _documents(self) -> Iterator[Document]:
        """Screened documents. Each item is read and parsed without the run's lock (the
        sources' skip callback takes it for the state lookup) and screened holding it
        (screening records what it meets in the state the loader settles)."""
        for item in self.items:
            with self.run.lock:
                docs = list(self.run.screen((item,)))
            yield from docs

    def _prepare(self) -> None:
        size = self.run.ctx.params.ingest.batch_documents
        for batch in batched(self._documents(), size):
            if not self.put(self.planned, self.run.plan(batch)):
                return
        self.put(self.planned, _DONE)

    def _write(self) -> None:
        while (item := self.get(self.embedded)) is not _DONE:
            self.run.load(*item)

    def embed_all(self) -> None:
        """This thread's stage: embed planned batches until the planner is done."""
        while (plan := self.get(self.planned)) is not _DONE:
            vectors = self.run.embed(plan)
            if not self.put(self.embedded, (plan, vectors)):
                return
        self.put(self.embedded, _DONE)


def run_pipelined(run: Ingestion, items: Iterable[SourceItem]) -> IngestResult:
    """Plan batch k+1 and load batch k-1 while batch k is embedded; finish after the last
    load. The first failure in any stage stops the others and is raised here, after every
    thread has ended (no write happens after this returns)."""
    stages = _Stages(run, items)
    for thread in stages.threads:
        thread.start()
    try:
        stages.embed_all()
    except BaseException as exc:
        stages.fail(exc)
    finally:
        for thread in stages.threads:
            thread.join()
    if stages.error is not None:
        raise stages.error
    return run.finish()
